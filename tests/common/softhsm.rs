//! Throw-away SoftHSMv2 tokens for the PKCS#11 tests (`tests/pkcs11.rs`,
//! `tests/pkcs11_rsa.rs`; included with `#[path]`), and python-pkcs11's view of what a token
//! holds (`scripts/pkcs11_attributes.py`), the independent reader of token attributes.
//!
//! Needs SoftHSMv2 (`apt-get install softhsm2`; `PMP_PKCS11_MODULE` names the module when it
//! is not in a Debian location) and a python with python-pkcs11 (`PMP_PKCS11_PYTHON`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// The user PIN of every test token.
pub const PIN: &str = "1234";
/// The security officer PIN of every test token.
pub const SO_PIN: &str = "12345678";

/// The module and the `softhsm2.conf` of a test process's tokens.
pub struct Setup {
    pub module: PathBuf,
    pub conf: PathBuf,
}

/// The SoftHSMv2 module: `PMP_PKCS11_MODULE`, or the first Debian location that exists.
pub fn module_path() -> PathBuf {
    if let Some(m) = std::env::var_os("PMP_PKCS11_MODULE") {
        return m.into();
    }
    for p in [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!(
        "SoftHSMv2 not found: install it (apt-get install softhsm2 opensc) or set PMP_PKCS11_MODULE"
    );
}

/// Creates fresh tokens labelled `labels` in `CARGO_TARGET_TMPDIR/<dir_name>` (its own
/// `softhsm2.conf` and token directory) and points `SOFTHSM2_CONF` at them. Call it once per
/// test process, from a `OnceLock` that every test goes through first: `SOFTHSM2_CONF` must
/// be set while no other thread runs test code and before the module is initialised
/// (SoftHSMv2 reads it in `C_Initialize`).
pub fn create_tokens(dir_name: &str, labels: &[&str]) -> Setup {
    let module = module_path();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir_name);
    let _ = std::fs::remove_dir_all(&dir);
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
    for label in labels {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", PIN])
            .output()
            .expect("softhsm2-util (apt-get install softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // SAFETY of the environment: the caller runs this inside a OnceLock that every test
    // waits on, so no other thread of this process runs test code yet, and the module is
    // not initialised yet.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    Setup { module, conf }
}

/// The python that has python-pkcs11 (`PMP_PKCS11_PYTHON`, else `python3`).
pub fn python() -> std::ffi::OsString {
    std::env::var_os("PMP_PKCS11_PYTHON").unwrap_or_else(|| "python3".into())
}

/// One key object as python-pkcs11 reads it: `class` (`secret`, `private`, `public`),
/// `label`, `id`, the flags as `true` / `false` / `null`, an RSA object's `modulus` and
/// `public_exponent` in hex.
pub type Row = BTreeMap<String, String>;

/// Every key object on `token` as python-pkcs11 reads it.
pub fn objects_seen_by_python_pkcs11(setup: &Setup, token: &str) -> Vec<Row> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pkcs11_attributes.py");
    let out = Command::new(python())
        .env("SOFTHSM2_CONF", &setup.conf)
        .env("PMP_PKCS11_PIN", PIN)
        .arg(script)
        .arg(&setup.module)
        .arg(token)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{script}: {} (needs python-pkcs11: pip install python-pkcs11==0.10.1, or set \
         PMP_PKCS11_PYTHON to a python that has it)",
        String::from_utf8_lossy(&out.stderr)
    );
    // One flat JSON object a line: "key": value, values are strings, true, false or null.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let body = line.trim().trim_start_matches('{').trim_end_matches('}');
            body.split(", \"")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("\": ")?;
                    Some((
                        k.trim_matches('"').to_string(),
                        v.trim_matches('"').to_string(),
                    ))
                })
                .collect()
        })
        .collect()
}

/// Asserts the flags of `row` (`name`, expected value).
pub fn assert_flags(row: &Row, want: &[(&str, bool)]) {
    for (name, value) in want {
        assert_eq!(
            row.get(*name).map(String::as_str),
            Some(if *value { "true" } else { "false" }),
            "{name} of {} '{}'",
            row.get("class").map_or("object", String::as_str),
            row["label"]
        );
    }
}
