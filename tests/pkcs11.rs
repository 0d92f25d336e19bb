//! `Pkcs11Hsm` on a throw-away SoftHSMv2 token that this test creates itself (its own
//! `SOFTHSM2_CONF` and token directory under the temporary directory, initialised with
//! `softhsm2-util --init-token`). Token attributes are checked through `pkcs11-tool`
//! (OpenSC), not through pmp-core's own view.
//!
//! Needs SoftHSMv2 and OpenSC (`apt-get install softhsm2 opensc`); `PMP_PKCS11_MODULE`
//! names the module when it is not in a Debian location.
#![cfg(feature = "pkcs11")]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use pmp_core::hsm::{Capability, CipherSpec, Hsm, KeySpec, Pkcs11Config, Pkcs11Hsm, TranslateItem};
use pmp_core::keyblock::{self, KeyUsage, ModeOfUse, UnwrapPolicy, Version};
use pmp_core::{Algorithm, Error, Kcv, MacAlgorithm, Mode, Padding, SecretKey};

const TOKEN: &str = "pmp-test";
const PIN: &str = "1234";
const SO_PIN: &str = "12345678";

struct Setup {
    module: PathBuf,
    conf: PathBuf,
}

fn module_path() -> PathBuf {
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

/// Creates the token once per test process. Every test calls this first: `SOFTHSM2_CONF`
/// is set while the other test threads wait on the `OnceLock`, before the module is
/// initialised (SoftHSMv2 reads it in `C_Initialize`).
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let module = module_path();
        let dir = std::env::temp_dir().join(format!("pmp-pkcs11-test-{}", std::process::id()));
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
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--so-pin",
                SO_PIN,
                "--pin",
                PIN,
            ])
            .output()
            .expect("softhsm2-util (apt-get install softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SAFETY of the environment: no other thread of this process runs test code yet
        // (they wait on this OnceLock), and the module is not initialised yet.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        Setup { module, conf }
    })
}

fn open(fallback: bool) -> Pkcs11Hsm {
    let s = setup();
    Pkcs11Hsm::open(&Pkcs11Config::new(&s.module, TOKEN, PIN).with_host_key_fallback(fallback))
        .expect("open the token")
}

fn prefix(name: &str) -> String {
    let mut r = [0u8; 3];
    pmp_core::fill_random(&mut r).expect("rng");
    format!("{name}{}", hex::encode(r))
}

/// Forms a key on the token from two components whose XOR is `key`.
fn form(hsm: &dyn Hsm, spec: &KeySpec, key: &SecretKey) -> pmp_core::hsm::KeyHandle {
    let c1 = SecretKey::generate(spec.algorithm, spec.len).expect("c1");
    let c2: Vec<u8> = c1
        .expose_secret()
        .iter()
        .zip(key.expose_secret())
        .map(|(a, b)| a ^ b)
        .collect();
    hsm.form_key_from_components(spec, &[c1.expose_secret(), &c2], &[], Some(&key.kcv()))
        .expect("form")
        .handle
}

/// `pkcs11-tool --list-objects --type secrkey` on the test token: one block of lines per
/// object, keyed by label.
fn objects_seen_by_opensc() -> Vec<(String, String)> {
    let s = setup();
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &s.conf)
        .args(["--module"])
        .arg(&s.module)
        .args([
            "--token-label",
            TOKEN,
            "--login",
            "--pin",
            PIN,
            "--list-objects",
            "--type",
            "secrkey",
        ])
        .output()
        .expect("pkcs11-tool (apt-get install opensc)");
    assert!(
        out.status.success(),
        "pkcs11-tool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut objects = Vec::new();
    for block in text.split("Secret Key Object").skip(1) {
        let label = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("label:"))
            .map(|l| l.trim().to_string())
            .unwrap_or_default();
        objects.push((label, block.to_string()));
    }
    objects
}

#[test]
fn smoke_conformance() {
    let hsm = open(true);
    pmp_core::hsm::conformance::run_all(&hsm);
}
