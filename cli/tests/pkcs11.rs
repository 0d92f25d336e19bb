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

/// The RSA commands on a token: `pmp key generate --algorithm rsa` makes the pair on the
/// token (its SHA-1 fingerprint printed), `pmp key public` prints the modulus and exponent
/// that python-pkcs11 reads from the token's public key object, `pmp key list` shows it,
/// and an R key block imports only with the operator's host key fallback.
#[test]
fn rsa_keys_on_the_token() {
    use pmp_core::keyblock::{
        self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, Version,
    };
    use pmp_core::rsa::{RsaExponent, RsaPrivateKey};
    use pmp_core::{Algorithm, SecretKey};

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-pkcs11-rsa");
    let conf = fresh_token(&dir);
    let module = module_path();
    let module = module.to_str().unwrap();
    let with_token = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--pkcs11-module", module, "--token", TOKEN].map(String::from));
        v
    };
    let run = |args: &[&str]| {
        let v = with_token(args);
        pmp(
            &conf,
            Some(PIN),
            &v.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();

    let o = run(&[
        "key",
        "generate",
        "--label",
        "ISS-RSA",
        "--algorithm",
        "rsa",
        "--bits",
        "1408",
        "--exponent",
        "65537",
        "--usage",
        "S0",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fingerprint = stdout(&o).trim().to_string();
    assert_eq!(fingerprint.len(), 40, "{fingerprint}");

    let o = run(&["key", "public", "--label", "ISS-RSA"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let modulus = lines[0].strip_prefix("modulus=").expect("modulus= line");
    assert_eq!(lines[1], "exponent=010001");
    assert_eq!(modulus.len(), 1408 / 4);

    // The token's own public key object, read by python-pkcs11, and the SHA-1 of its
    // modulus computed by Python's hashlib.
    let python = std::env::var_os("PMP_PKCS11_PYTHON").unwrap_or_else(|| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/pkcs11_attributes.py"
    );
    let listing = Command::new(&python)
        .env("SOFTHSM2_CONF", &conf)
        .env("PMP_PKCS11_PIN", PIN)
        .args([script, module, TOKEN])
        .output()
        .expect("python3");
    assert!(
        listing.status.success(),
        "{script}: {} (needs python-pkcs11; PMP_PKCS11_PYTHON)",
        String::from_utf8_lossy(&listing.stderr)
    );
    let listing = stdout(&listing);
    let public_row = listing
        .lines()
        .find(|l| l.contains("\"class\": \"public\"") && l.contains("\"label\": \"ISS-RSA\""))
        .unwrap_or_else(|| panic!("no public key object ISS-RSA: {listing}"));
    assert!(
        public_row.contains(&format!("\"modulus\": \"{modulus}\"")),
        "{public_row}"
    );
    let sha1 = Command::new(&python)
        .args([
            "-c",
            "import hashlib, sys; print(hashlib.sha1(bytes.fromhex(sys.argv[1])).hexdigest().upper())",
            modulus,
        ])
        .output()
        .expect("python3");
    assert_eq!(stdout(&sha1).trim(), fingerprint);

    let o = run(&["key", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list = stdout(&o);
    let line = list
        .lines()
        .find(|l| l.starts_with("ISS-RSA "))
        .unwrap_or_else(|| panic!("{list}"));
    for part in ["1408", "65537", &fingerprint] {
        assert!(line.contains(part), "{part}: {line}");
    }

    // Not an EMV length: refused before the token is asked.
    let o = run(&[
        "key",
        "generate",
        "--label",
        "ISS-BAD",
        "--algorithm",
        "rsa",
        "--bits",
        "1028",
        "--exponent",
        "3",
        "--usage",
        "S0",
    ]);
    assert_ne!(o.status.code(), Some(0));

    // An R key block under a KEK formed on the token from known components.
    let c1 = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
    let c2 = "0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F1";
    let o = run(&[
        "key",
        "components",
        "--label",
        "ZMK",
        "--usage",
        "K0",
        "--algorithm",
        "aes",
        "--mode",
        "D",
        "--component",
        c1,
        "--component",
        c2,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let kbpk: Vec<u8> = hex::decode(c1)
        .unwrap()
        .iter()
        .zip(hex::decode(c2).unwrap())
        .map(|(a, b)| a ^ b)
        .collect();
    let kbpk = SecretKey::new(Algorithm::Aes, &kbpk).unwrap();
    let key = RsaPrivateKey::generate(1024, RsaExponent::Three).unwrap();
    let header = Header::new(
        Version::D,
        KeyUsage::S0,
        KeyAlgorithm::Rsa,
        ModeOfUse::S,
        Exportability::N,
    );
    let block =
        keyblock::wrap_asymmetric(&kbpk, &header, &key.to_pkcs1_der().unwrap(), None).unwrap();
    let import = with_token(&[
        "key", "import", "--label", "ISS-IMP", "--kek", "ZMK", "--block", &block,
    ]);
    let import: Vec<&str> = import.iter().map(String::as_str).collect();
    // Without the operator's consent: refused, naming the capability.
    let o = pmp(&conf, Some(PIN), &import);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("RSA key blocks"), "{}", stderr(&o));
    // With it: imported, and its public half is the key's.
    let o = Command::new(env!("CARGO_BIN_EXE_pmp"))
        .args(&import)
        .env("SOFTHSM2_CONF", &conf)
        .env("PMP_PKCS11_PIN", PIN)
        .env("PMP_PKCS11_HOST_KEY_FALLBACK", "1")
        .output()
        .expect("run pmp");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["key", "public", "--label", "ISS-IMP"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "modulus={}\nexponent=03\n",
            hex::encode_upper(key.public_key().modulus())
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}
