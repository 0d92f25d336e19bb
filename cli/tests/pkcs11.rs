//! `pmp` on a PKCS#11 token (feature `pkcs11`): `pmp demo --pkcs11-module PATH --token
//! LABEL` on a fresh SoftHSMv2 token that this test creates itself (its own
//! `SOFTHSM2_CONF` and token directory, `softhsm2-util --init-token`), the PIN in
//! `PMP_PKCS11_PIN`; then the same token through the `--dir`-or-token flags of `pmp key
//! list` and `pmp xof verify`.
//!
//! Needs SoftHSMv2 (`apt-get install softhsm2`); `PMP_PKCS11_MODULE` names the module when
//! it is not in a Debian location.
#![cfg(feature = "pkcs11")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOKEN: &str = "pmp-cli-demo";
const PIN: &str = "1234";

fn module_path() -> PathBuf {
    if let Some(m) = std::env::var_os("PMP_PKCS11_MODULE") {
        return m.into();
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("SoftHSMv2 not found: apt-get install softhsm2, or set PMP_PKCS11_MODULE")
}

/// A fresh token in `dir`; returns its `SOFTHSM2_CONF`.
fn fresh_token(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("tokens")).expect("token dir");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .expect("softhsm2.conf");
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", TOKEN])
        .args(["--so-pin", "12345678", "--pin", PIN])
        .output()
        .expect("softhsm2-util (apt-get install softhsm2)");
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// `pmp ARGS` against the token configured by `conf`, with `pin` in `PMP_PKCS11_PIN`.
fn pmp(conf: &Path, pin: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pmp"));
    c.args(args)
        .env("SOFTHSM2_CONF", conf)
        .env_remove("PMP_PKCS11_PIN")
        .env_remove("PMP_PKCS11_HOST_KEY_FALLBACK");
    if let Some(p) = pin {
        c.env("PMP_PKCS11_PIN", p);
    }
    c.output().expect("run pmp")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The number after `key=` in the first line of `text` that holds it.
fn count(text: &str, key: &str) -> u64 {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in: {text}"))
}

/// The Done-when of issue 12: the demo completes on a fresh token, every record accounted
/// for and the XOF verified; the token's keys and the XOF are then reachable through the
/// token flags of the other commands.
#[test]
fn pmp_demo_runs_on_a_fresh_token() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-pkcs11");
    let conf = fresh_token(&dir);
    let module = module_path();
    let module = module.to_str().expect("module path");
    let out = dir.join("demo");
    let out_s = out.to_str().unwrap();
    let cards = 120;
    let demo = [
        "demo",
        "--cards",
        "120",
        "--out",
        out_s,
        "--pkcs11-module",
        module,
        "--token",
        TOKEN,
    ];

    // The PIN comes from the environment only: without it the demo is refused (exit 1,
    // naming the variable) before anything is written; there is no PIN flag (exit 2).
    let o = pmp(&conf, None, &demo);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("PMP_PKCS11_PIN"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.exists(), "nothing written before the token is open");
    let mut with_flag = demo.to_vec();
    with_flag.extend(["--pin", PIN]);
    assert_eq!(pmp(&conf, Some(PIN), &with_flag).status.code(), Some(2));
    // A wrong PIN: refused by the token.
    assert_eq!(pmp(&conf, Some("9999"), &demo).status.code(), Some(1));

    let o = pmp(&conf, Some(PIN), &demo);
    let text = stdout(&o);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains(&format!("PKCS#11 token '{TOKEN}'")), "{text}");
    let read = count(&text, "read=");
    let written = count(&text, "written=");
    let rejected = count(&text, "rejected=");
    assert_eq!(read, cards, "every card read");
    assert_eq!(written + rejected, read, "every record accounted for");
    assert!(written > 0 && rejected > 0, "the demo file has defects");
    assert!(
        text.contains(&format!("XOF verified: {written} records")),
        "{text}"
    );
    // SoftHSMv2 translates PIN blocks through host memory: the summary says so.
    assert!(
        text.contains("on the host:  PIN translation through host memory"),
        "{text}"
    );
    // No key store is written: the keys are on the token.
    assert!(!out.join("keystore").exists());

    // The other commands reach the same token.
    let xof = out.join("order.xof");
    let token = ["--pkcs11-module", module, "--token", TOKEN];
    let mut verify = vec!["xof", "verify"];
    verify.extend(token);
    verify.push(xof.to_str().unwrap());
    let o = pmp(&conf, Some(PIN), &verify);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o).trim(), written.to_string());
    let mut list = vec!["key", "list"];
    list.extend(token);
    let o = pmp(&conf, Some(PIN), &list);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let keys = stdout(&o);
    for label in ["DKEP-PAN", "XOF-MAC", "ZMK-PROD", "PROD1-KTK"] {
        assert!(
            keys.lines().any(|l| l.starts_with(&format!("{label} "))),
            "{label}: {keys}"
        );
    }
    // --dir and the token flags exclude each other (exit 2).
    let mut both = list.clone();
    both.extend(["--dir", out_s]);
    assert_eq!(pmp(&conf, Some(PIN), &both).status.code(), Some(2));
    // The demo's labels are taken now: a second demo on the same token is refused.
    let again = pmp(&conf, Some(PIN), &demo);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
