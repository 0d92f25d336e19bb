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

use pmp_core::hsm::{
    Capability, CipherSpec, Hsm, KeySpec, PinSpec, Pkcs11Config, Pkcs11Hsm, TranslateItem,
};
use pmp_core::keyblock::{self, KeyUsage, ModeOfUse, UnwrapPolicy, Version};
use pmp_core::pinblock::{self, Pan, Pin, PinBlockFormat};
use pmp_core::{Algorithm, Error, Kcv, MacAlgorithm, Mode, Padding, SecretKey};

const TOKEN: &str = "pmp-test";
const LOGOUT_TOKEN: &str = "pmp-test-logout";
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
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pkcs11-token");
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
        // A second token for the test that logs out (the login belongs to the process
        // and the token: it would log the other tests out too).
        for label in [TOKEN, LOGOUT_TOKEN] {
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
    // The slot of the token (`--token-label` picks the first token with `--login`).
    let slots = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &s.conf)
        .arg("--module")
        .arg(&s.module)
        .arg("--list-token-slots")
        .output()
        .expect("pkcs11-tool (apt-get install opensc)");
    let slots = String::from_utf8_lossy(&slots.stdout).to_string();
    let mut slot = None;
    let mut current = None;
    for line in slots.lines() {
        if let Some(rest) = line.strip_prefix("Slot ") {
            current = rest
                .split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(id, _)| id.to_string());
        } else if line
            .trim()
            .strip_prefix("token label")
            .map(|r| r.trim_start_matches([' ', ':']).trim())
            == Some(TOKEN)
        {
            slot = current.clone();
        }
    }
    let slot = slot.unwrap_or_else(|| panic!("pkcs11-tool does not list token {TOKEN}: {slots}"));
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &s.conf)
        .args(["--module"])
        .arg(&s.module)
        .args([
            "--slot",
            &slot,
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

/// The attributes of every secret key on the token as python-pkcs11 reads them
/// (`scripts/pkcs11_attributes.py`), by label: `name -> true/false` and `id`.
fn attributes_seen_by_python_pkcs11() -> Vec<std::collections::BTreeMap<String, String>> {
    let s = setup();
    let python = std::env::var_os("PMP_PKCS11_PYTHON").unwrap_or_else(|| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pkcs11_attributes.py");
    let out = Command::new(&python)
        .env("SOFTHSM2_CONF", &s.conf)
        .env("PMP_PKCS11_PIN", PIN)
        .arg(script)
        .arg(&s.module)
        .arg(TOKEN)
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

fn row_of<'a>(
    rows: &'a [std::collections::BTreeMap<String, String>],
    label: &str,
    id_prefix: &str,
) -> &'a std::collections::BTreeMap<String, String> {
    rows.iter()
        .find(|r| {
            r.get("label").map(String::as_str) == Some(label) && r["id"].starts_with(id_prefix)
        })
        .unwrap_or_else(|| panic!("no object '{label}' ({id_prefix}) on the token: {rows:?}"))
}

fn assert_flags(row: &std::collections::BTreeMap<String, String>, want: &[(&str, bool)]) {
    for (name, value) in want {
        assert_eq!(
            row.get(*name).map(String::as_str),
            Some(if *value { "true" } else { "false" }),
            "{name} of '{}'",
            row["label"]
        );
    }
}

#[test]
fn dkeps_on_the_token_are_sensitive_and_not_extractable() {
    let hsm = open(false);
    let p = prefix("att");
    let classes = [format!("{p}PAN"), format!("{p}NAME")];
    let class_refs: Vec<&str> = classes.iter().map(String::as_str).collect();
    let dkeps = pmp_core::hierarchy::generate_dkeps(&hsm, &class_refs).expect("DKeps");
    let mtk_v = hsm
        .generate_key(&KeySpec::new(
            &format!("{p}-mv"),
            Algorithm::Aes,
            16,
            KeyUsage::M6,
            ModeOfUse::V,
        ))
        .expect("MAC verify key");
    let ktk = hsm
        .generate_key(
            &KeySpec::new(
                &format!("{p}-ktk"),
                Algorithm::Aes,
                32,
                KeyUsage::K0,
                ModeOfUse::E,
            )
            .exportable(),
        )
        .expect("exportable KEK");

    let rows = attributes_seen_by_python_pkcs11();
    for d in &dkeps {
        let row = row_of(&rows, &d.spec.label, "pmp1:key:");
        assert_eq!(row["id"], format!("pmp1:key:D0:B:N:A:32:{}", d.kcv));
        assert_flags(
            row,
            &[
                ("token", true),
                ("private", true),
                ("sensitive", true),
                ("always_sensitive", true),
                ("extractable", false),
                ("never_extractable", true),
                ("modifiable", false),
                ("encrypt", true),
                ("decrypt", true),
                ("sign", false),
                ("verify", false),
                ("wrap", false),
                ("unwrap", false),
                ("derive", false),
            ],
        );
    }
    assert_flags(
        row_of(&rows, &mtk_v.spec.label, "pmp1:key:M6:V:"),
        &[
            ("sign", false),
            ("verify", true),
            ("encrypt", false),
            ("decrypt", false),
            ("modifiable", false),
            ("extractable", false),
        ],
    );
    // Exportable: extractable, but only by a trusted (security-officer) wrapping key.
    assert_flags(
        row_of(&rows, &ktk.spec.label, "pmp1:key:K0:E:E:"),
        &[
            ("sensitive", true),
            ("extractable", true),
            ("wrap_with_trusted", true),
            ("wrap", true),
            ("unwrap", false),
            ("modifiable", false),
        ],
    );

    // OpenSC's view agrees on the DKeps.
    let seen = objects_seen_by_opensc();
    for d in &dkeps {
        let (_, block) = seen
            .iter()
            .find(|(l, _)| *l == d.spec.label)
            .unwrap_or_else(|| {
                let labels: Vec<&String> = seen.iter().map(|(l, _)| l).collect();
                panic!("pkcs11-tool lists the DKep '{}': {labels:?}", d.spec.label)
            });
        assert!(block.contains("Usage:      encrypt, decrypt\n"), "{block}");
        assert!(
            block.contains("Access:     sensitive, always sensitive, never extractable"),
            "{block}"
        );
    }
    for k in dkeps.iter().chain([&mtk_v, &ktk]) {
        hsm.delete_key(&k.handle).expect("delete");
    }
}

#[test]
fn capabilities_say_what_runs_where() {
    let strict = open(false).capabilities();
    let lenient = open(true).capabilities();
    for c in [&strict, &lenient] {
        assert_eq!(c.backend(), "pkcs11");
        assert!(c.is_test(), "a SoftHSMv2 token holds test keys");
        assert!(c.supports(Capability::KeyAlgorithm(Algorithm::Aes)));
        assert!(c.supports(Capability::KeyAlgorithm(Algorithm::Tdes)));
        assert!(c.supports(Capability::Mac(MacAlgorithm::CmacAes)));
        assert!(c.supports(Capability::PolicyInDevice));
        assert!(c.supports(Capability::HostPinFallback));
        // SoftHSMv2 2.6.1 has no CBC unwrap: translation runs through the host.
        assert!(!c.supports(Capability::TranslateInDevice));
        assert!(c.supports(Capability::HostTranslateFallback));
        assert!(!c.supports(Capability::InBoundaryFileImport));
        // No DES3_MAC / AES_MAC mechanism, and cryptoki does not name DES3_CMAC.
        for m in [
            MacAlgorithm::Retail,
            MacAlgorithm::CbcTdes,
            MacAlgorithm::CbcAes,
            MacAlgorithm::CmacTdes,
        ] {
            assert!(!c.supports(Capability::Mac(m)), "{m:?}");
        }
    }
    for v in [Version::B, Version::D] {
        assert!(!strict.supports(Capability::ImportKeyBlock(v)));
        assert!(!strict.supports(Capability::ExportKeyBlock(v)));
        assert!(lenient.supports(Capability::ImportKeyBlock(v)));
        assert!(lenient.supports(Capability::ExportKeyBlock(v)));
    }
    assert!(!strict.supports(Capability::HostKeyFallback));
    assert!(lenient.supports(Capability::HostKeyFallback));
}

#[test]
fn key_exchange_needs_the_operators_consent() {
    let hsm = open(false);
    let p = prefix("cns");
    let zmk = SecretKey::generate(Algorithm::Aes, 32).expect("zmk");
    let kek = form(
        &hsm,
        &KeySpec::new(
            &format!("{p}-zmk"),
            Algorithm::Aes,
            32,
            KeyUsage::K0,
            ModeOfUse::B,
        ),
        &zmk,
    );
    let key = SecretKey::generate(Algorithm::Aes, 16).expect("key");
    let header = keyblock::Header::new(
        Version::D,
        KeyUsage::D0,
        keyblock::KeyAlgorithm::Aes,
        ModeOfUse::B,
        keyblock::Exportability::N,
    );
    let block = keyblock::wrap(&zmk, &header, &key, None).expect("wrap");
    let r = hsm.import_key_block(&format!("{p}-imp"), &kek, &block);
    assert!(
        matches!(r, Err(Error::Unsupported(ref m)) if m.contains("import of key blocks")),
        "{r:?}"
    );
    assert!(hsm.find_key(&format!("{p}-imp")).is_err());
    let ex = hsm
        .generate_key(
            &KeySpec::new(
                &format!("{p}-ex"),
                Algorithm::Aes,
                16,
                KeyUsage::D0,
                ModeOfUse::B,
            )
            .exportable(),
        )
        .expect("exportable");
    assert!(matches!(
        hsm.export_key_block(&ex.handle, &kek),
        Err(Error::Unsupported(_))
    ));
    // The same KEK, opened by an operator who allows the fallback, imports.
    let lenient = open(true);
    let kek2 = lenient.find_key(&format!("{p}-zmk")).expect("find");
    let info = lenient
        .import_key_block(&format!("{p}-imp"), &kek2, &block)
        .expect("import with the fallback");
    assert_eq!(info.kcv, key.kcv());
    for l in ["zmk", "ex", "imp"] {
        let h = lenient.find_key(&format!("{p}-{l}")).expect("find");
        lenient
            .delete_key(&h)
            .unwrap_or_else(|e| panic!("delete {l}: {e}"));
    }
}

/// Every version B and D example of TR-31:2018 annex A and X9.143 §8 (tests/data), imported
/// under its KBPK formed on the token: the key's KCV as published; one altered character
/// refused with the opaque error and nothing stored.
#[test]
fn tr31_annex_blocks_import_on_the_token() {
    let hsm = open(true);
    let p = prefix("ann");
    let mut n = 0;
    for (i, v) in common::load("tr31_annex.txt").iter().enumerate() {
        let block = v.get("Block");
        if !block.starts_with('B') && !block.starts_with('D') {
            continue;
        }
        let kbpk_bytes = v.hex("KBPK");
        let alg = if block.starts_with('D') {
            Algorithm::Aes
        } else {
            Algorithm::Tdes
        };
        let mut kb = kbpk_bytes.clone();
        if alg == Algorithm::Tdes {
            pmp_core::set_odd_parity(&mut kb);
        }
        let kbpk = SecretKey::new(alg, &kb).expect("KBPK");
        let spec = KeySpec::new(
            &format!("{p}-kbpk{i}"),
            alg,
            kb.len(),
            KeyUsage::K1,
            ModeOfUse::D,
        );
        let kek = form(&hsm, &spec, &kbpk);
        let key = SecretKey::new(
            keyblock::inspect(block)
                .expect("header")
                .algorithm
                .to_pmp()
                .expect("alg"),
            &v.hex("Key"),
        )
        .expect("key");
        let info = hsm
            .import_key_block(&format!("{p}-k{i}"), &kek, block)
            .unwrap_or_else(|e| panic!("{}: {e}", v.get("Source")));
        let want = match v.opt("KCV") {
            Some(k) => Kcv::from_hex(k).expect("kcv"),
            None => key.kcv(),
        };
        assert!(want.matches(&info.kcv), "{}: KCV", v.get("Source"));
        // One character of the MAC changed: refused, nothing stored.
        let mut t = block.as_bytes().to_vec();
        let last = t.len() - 1;
        t[last] = if t[last] == b'0' { b'1' } else { b'0' };
        let t = String::from_utf8(t).expect("ascii");
        assert!(matches!(
            hsm.import_key_block(&format!("{p}-t{i}"), &kek, &t),
            Err(Error::Crypto)
        ));
        assert!(hsm.find_key(&format!("{p}-t{i}")).is_err());
        hsm.delete_key(&info.handle).expect("delete");
        hsm.delete_key(&kek).expect("delete");
        n += 1;
    }
    assert!(n >= 4, "the annex holds B and D examples ({n})");
}

/// Generated keys of every size report the KCV of the value that comes out in an export,
/// checked by unwrapping the block on the host with the clear ZMK.
#[test]
fn generated_keys_export_with_the_kcv_they_report() {
    let hsm = open(true);
    let p = prefix("kcv");
    let zmk = SecretKey::generate(Algorithm::Aes, 32).expect("zmk");
    let kek = form(
        &hsm,
        &KeySpec::new(
            &format!("{p}-zmk"),
            Algorithm::Aes,
            32,
            KeyUsage::K0,
            ModeOfUse::B,
        ),
        &zmk,
    );
    let tzmk = SecretKey::generate(Algorithm::Tdes, 24).expect("tdes zmk");
    let tkek = form(
        &hsm,
        &KeySpec::new(
            &format!("{p}-tzmk"),
            Algorithm::Tdes,
            24,
            KeyUsage::K0,
            ModeOfUse::B,
        ),
        &tzmk,
    );
    for (alg, len) in [
        (Algorithm::Tdes, 16),
        (Algorithm::Tdes, 24),
        (Algorithm::Aes, 16),
        (Algorithm::Aes, 24),
        (Algorithm::Aes, 32),
    ] {
        let info = hsm
            .generate_key(
                &KeySpec::new(
                    &format!("{p}-{alg}{len}"),
                    alg,
                    len,
                    KeyUsage::D0,
                    ModeOfUse::B,
                )
                .exportable(),
            )
            .expect("generate");
        let block = hsm.export_key_block(&info.handle, &kek).expect("export D");
        let (h, clear) = keyblock::unwrap(&zmk, &block, &UnwrapPolicy::default()).expect("unwrap");
        assert_eq!(h.version, Version::D);
        assert_eq!(clear.kcv(), info.kcv, "{alg} {len}");
        assert_eq!(clear.len(), len);
        if alg == Algorithm::Tdes {
            // Version B under a TDES KEK: the TDES-CMAC binding runs on the token too.
            let block = hsm.export_key_block(&info.handle, &tkek).expect("export B");
            let (h, clear) =
                keyblock::unwrap(&tzmk, &block, &UnwrapPolicy::default()).expect("unwrap B");
            assert_eq!(h.version, Version::B);
            assert_eq!(clear.kcv(), info.kcv, "{alg} {len} under TDES");
        }
        hsm.delete_key(&info.handle).expect("delete");
    }
    hsm.delete_key(&kek).expect("delete");
    hsm.delete_key(&tkek).expect("delete");
}

/// The transport-key issuance of data prep and the import on the production side, both on
/// the token; the blocks checked on the host with the clear ZMK-prod.
#[test]
fn transport_keys_issue_and_import_on_the_token() {
    let hsm = open(true);
    let p = prefix("tk");
    let c1 = SecretKey::generate(Algorithm::Aes, 32).expect("c1");
    let c2 = SecretKey::generate(Algorithm::Aes, 32).expect("c2");
    let zmk_clear: Vec<u8> = c1
        .expose_secret()
        .iter()
        .zip(c2.expose_secret())
        .map(|(a, b)| a ^ b)
        .collect();
    let zmk_clear = SecretKey::new(Algorithm::Aes, &zmk_clear).expect("zmk");
    let zmk = pmp_core::hierarchy::zmk_ceremony(
        &hsm,
        &format!("{p}-ZMK"),
        pmp_core::hierarchy::Zone::Export,
        Algorithm::Aes,
        &[c1.expose_secret(), c2.expose_secret()],
        &[Some(c1.kcv()), Some(c2.kcv())],
        Some(&zmk_clear.kcv()),
    )
    .expect("ceremony");
    let t = pmp_core::hierarchy::issue_transport_keys(&hsm, &zmk.handle, &p, Algorithm::Aes, 32)
        .expect("issue");
    for (k, usage) in [
        (&t.ktk, KeyUsage::K0),
        (&t.ptk, KeyUsage::P0),
        (&t.mtk, KeyUsage::M6),
    ] {
        let (h, clear) =
            keyblock::unwrap(&zmk_clear, &k.block, &UnwrapPolicy::default()).expect("unwrap");
        assert_eq!(h.usage, usage);
        assert_eq!(clear.kcv(), k.info.kcv);
    }
    // The production side's copy of ZMK-prod, formed from the same components in the
    // import zone (a KEK exports or imports, never both).
    let zmk_in = pmp_core::hierarchy::zmk_ceremony(
        &hsm,
        &format!("{p}-ZMK-IN"),
        pmp_core::hierarchy::Zone::Import,
        Algorithm::Aes,
        &[c1.expose_secret(), c2.expose_secret()],
        &[Some(c1.kcv()), Some(c2.kcv())],
        Some(&zmk_clear.kcv()),
    )
    .expect("ceremony at production");
    let imported = pmp_core::hierarchy::import_transport_keys(
        &hsm,
        &zmk_in.handle,
        &format!("{p}-prod"),
        [
            (&t.ktk.block, &t.ktk.info.kcv),
            (&t.ptk.block, &t.ptk.info.kcv),
            (&t.mtk.block, &t.mtk.info.kcv),
        ],
    )
    .expect("import at production");
    assert_eq!(imported[0].kcv, t.ktk.info.kcv);
    assert_eq!(imported[2].kcv, t.mtk.info.kcv);
    for k in hsm.list_keys().expect("list") {
        if k.spec.label.starts_with(&p) {
            hsm.delete_key(&k.handle).expect("delete");
        }
    }
}

/// Eight threads share one token: translations, MACs and PIN translations, each checked
/// against the host computation with the formed keys' clear values.
#[test]
fn threads_share_the_token() {
    let hsm = open(false);
    let p = prefix("thr");
    let ka = SecretKey::generate(Algorithm::Tdes, 16).expect("a");
    let kb = SecretKey::generate(Algorithm::Aes, 32).expect("b");
    let km = SecretKey::generate(Algorithm::Aes, 16).expect("m");
    let kp = SecretKey::generate(Algorithm::Tdes, 16).expect("p");
    let a = form(
        &hsm,
        &KeySpec::new(
            &format!("{p}-a"),
            Algorithm::Tdes,
            16,
            KeyUsage::D0,
            ModeOfUse::D,
        ),
        &ka,
    );
    let b = form(
        &hsm,
        &KeySpec::new(
            &format!("{p}-b"),
            Algorithm::Aes,
            32,
            KeyUsage::D0,
            ModeOfUse::B,
        ),
        &kb,
    );
    let m = form(
        &hsm,
        &KeySpec::new(
            &format!("{p}-m"),
            Algorithm::Aes,
            16,
            KeyUsage::M6,
            ModeOfUse::C,
        ),
        &km,
    );
    let pk = form(
        &hsm,
        &KeySpec::new(
            &format!("{p}-p"),
            Algorithm::Tdes,
            16,
            KeyUsage::P0,
            ModeOfUse::B,
        ),
        &kp,
    );
    let pan = Pan::new("4111111111111111").expect("pan");
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let (hsm, a, b, m, pk, ka, kb, km, kp, pan) =
                (&hsm, &a, &b, &m, &pk, &ka, &kb, &km, &kp, &pan);
            s.spawn(move || {
                for i in 0..100u32 {
                    let msg = format!("thread {t} record {i} 5413330089020011");
                    let iv_a = [t; 8];
                    let iv_b = [i as u8; 16];
                    let mut ct = [0u8; 64];
                    let n = ka
                        .cipher()
                        .encrypt(
                            Mode::Cbc,
                            Some(&iv_a),
                            Padding::Iso9797M2,
                            msg.as_bytes(),
                            &mut ct,
                        )
                        .expect("host");
                    let mut out = [0u8; 80];
                    let k = hsm
                        .translate(
                            &CipherSpec::cbc(a, &iv_a, Padding::Iso9797M2),
                            &CipherSpec::cbc(b, &iv_b, Padding::Pkcs7),
                            &ct[..n],
                            &mut out,
                        )
                        .expect("translate");
                    let mut want = [0u8; 80];
                    let w = kb
                        .cipher()
                        .encrypt(
                            Mode::Cbc,
                            Some(&iv_b),
                            Padding::Pkcs7,
                            msg.as_bytes(),
                            &mut want,
                        )
                        .expect("host");
                    assert_eq!(&out[..k], &want[..w]);
                    let tag = hsm
                        .generate_mac(m, MacAlgorithm::CmacAes, Padding::None, msg.as_bytes())
                        .expect("mac");
                    assert_eq!(tag, pmp_core::cmac(km, msg.as_bytes()).expect("host cmac"));
                    let pin = Pin::new(&format!("{:04}", i)).expect("pin");
                    let mut blk =
                        pinblock::encode(PinBlockFormat::Iso0, &pin, Some(pan)).expect("enc");
                    kp.cipher().encrypt_ecb(&mut blk[..]).expect("host");
                    let spec = PinSpec {
                        key: pk,
                        format: PinBlockFormat::Iso0,
                    };
                    let to = PinSpec {
                        key: pk,
                        format: PinBlockFormat::Iso3,
                    };
                    let out = hsm.translate_pin(&spec, &to, pan, &blk[..]).expect("pin");
                    let mut c = out.clone();
                    kp.cipher().decrypt_ecb(&mut c).expect("host");
                    assert!(
                        pinblock::decode(PinBlockFormat::Iso3, &c, Some(pan)).expect("decode")
                            == pin
                    );
                }
            });
        }
    });
    for h in [a, b, m, pk] {
        hsm.delete_key(&h).expect("delete");
    }
}

/// A lost login (device reset, network HSM idle timeout) is restored by the next call.
#[test]
fn a_lost_login_is_restored() {
    let s = setup();
    let hsm = Pkcs11Hsm::open(&Pkcs11Config::new(&s.module, LOGOUT_TOKEN, PIN)).expect("open");
    let p = prefix("rel");
    let k = SecretKey::generate(Algorithm::Aes, 16).expect("k");
    let h = form(
        &hsm,
        &KeySpec::new(
            &format!("{p}-k"),
            Algorithm::Aes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ),
        &k,
    );
    let mut want = [0u8; 32];
    let w = k
        .cipher()
        .encrypt(
            Mode::Ecb,
            None,
            Padding::Pkcs7,
            b"after the reset",
            &mut want,
        )
        .expect("host");
    for _ in 0..2 {
        hsm.logout().expect("logout");
        let mut out = [0u8; 32];
        let n = hsm
            .encrypt(
                &CipherSpec::ecb(&h, Padding::Pkcs7),
                b"after the reset",
                &mut out,
            )
            .expect("encrypt after the login was lost");
        assert_eq!(&out[..n], &want[..w]);
    }
    hsm.delete_key(&h).expect("delete");
}

/// Keys made by one instance are found, with their attributes and KCV, by another.
#[test]
fn keys_are_read_back_from_the_token() {
    let hsm = open(false);
    let p = prefix("rb");
    let made = hsm
        .generate_key(&KeySpec::new(
            &format!("{p}-x"),
            Algorithm::Tdes,
            24,
            KeyUsage::P0,
            ModeOfUse::E,
        ))
        .expect("generate");
    let other = open(false);
    let h = other
        .find_key(&made.spec.label)
        .expect("found by another instance");
    let info = other.key_info(&h).expect("info");
    assert_eq!(info.spec, made.spec);
    assert_eq!(info.kcv, made.kcv);
    assert!(matches!(
        other.generate_key(&made.spec),
        Err(Error::AlreadyExists(_))
    ));
    other.delete_key(&h).expect("delete");
}

/// Operations the token cannot do are refused with a message naming the capability, after
/// the policy (a refused cell stays a policy refusal).
#[test]
fn missing_mechanisms_are_reported() {
    let hsm = open(false);
    let p = prefix("mis");
    let k = hsm
        .generate_key(&KeySpec::new(
            &format!("{p}-r"),
            Algorithm::Tdes,
            16,
            KeyUsage::M3,
            ModeOfUse::C,
        ))
        .expect("retail key");
    let r = hsm.generate_mac(&k.handle, MacAlgorithm::Retail, Padding::Iso9797M1, b"x");
    assert!(
        matches!(r, Err(Error::Unsupported(ref m)) if m.contains("Retail")),
        "{r:?}"
    );
    let r = hsm.generate_mac(&k.handle, MacAlgorithm::CmacAes, Padding::None, b"x");
    assert!(matches!(r, Err(Error::Policy(_))), "{r:?}");
    // A batch still translates all or nothing through the host fallback.
    let d = SecretKey::generate(Algorithm::Aes, 16).expect("d");
    let h = form(
        &hsm,
        &KeySpec::new(
            &format!("{p}-d"),
            Algorithm::Aes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ),
        &d,
    );
    let mut ct = [0u8; 32];
    let n = d
        .cipher()
        .encrypt(Mode::Ecb, None, Padding::Iso9797M2, b"field", &mut ct)
        .expect("host");
    let spec = CipherSpec::ecb(&h, Padding::Iso9797M2);
    let mut bad = ct;
    bad[n - 1] ^= 1;
    let items = [
        TranslateItem {
            from: spec,
            to: spec,
            data: &ct[..n],
        },
        TranslateItem {
            from: spec,
            to: spec,
            data: &bad[..n],
        },
    ];
    let mut out = vec![7u8; 2];
    assert!(hsm.translate_batch(&items, &mut out).is_err());
    assert_eq!(out, vec![7u8; 2]);
    hsm.delete_key(&k.handle).expect("delete");
    hsm.delete_key(&h).expect("delete");
}

/// The bureau's main job on the token: the issuer's keys arrive (ZMK ceremony, TK_issuer
/// and PIN key as key blocks), the bureau's DKeps and XOF MAC key are generated, the
/// issuer file is imported into an XOF, the XOF verifies (header, record MAC chain,
/// trailer) and every attribute decrypts to what the issuer sent. The same job on the
/// software HSM gives the throughput beside it (printed, not asserted).
#[test]
fn issuer_import_end_to_end_on_the_token() {
    use pmp_core::import;
    use pmp_demo::{self as demo, Cards, IssuerSide, Scenario, labels};
    let cards = std::env::var("PMP_PKCS11_IMPORT_CARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500u64);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pkcs11-import");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let soft = pmp_core::hsm::SoftHsm::create_with_test_lmk(&dir.join("keystore")).expect("soft");
    let token = open(true);
    let mut rates = Vec::new();
    for (name, hsm) in [
        ("pkcs11", &token as &dyn Hsm),
        ("softhsm", &soft as &dyn Hsm),
    ] {
        let scenario = Scenario::default();
        let issuer = IssuerSide::new(scenario).expect("issuer");
        issuer
            .send_keys(hsm)
            .expect("issuer keys arrive under the ZMK");
        demo::bureau_keys(hsm, scenario.dkep_algorithm).expect("bureau keys");
        let product_path = dir.join(format!("{name}-product.xml"));
        std::fs::write(&product_path, issuer.product_xml()).expect("product");
        let product = pmp_core::order::product::Product::load(&product_path).expect("load");
        let input = dir.join(format!("{name}-issuer.enc"));
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&input).expect("create"));
            issuer
                .write_file(Cards::new(7, cards), &mut w)
                .expect("issuer file");
            std::io::Write::flush(&mut w).expect("flush");
        }
        let xof = dir.join(format!("{name}-order.xof"));
        let rejects = dir.join(format!("{name}-rejects.txt"));
        let summary = import::import_file(
            hsm,
            &product,
            &input,
            &xof,
            Some(&rejects),
            &import::Options::default(),
        )
        .expect("import");
        assert_eq!(summary.read, cards, "{name}: every record read");
        assert_eq!(
            summary.written + summary.rejected,
            summary.read,
            "{name}: accounted for"
        );
        assert!(summary.written > 0);
        let verified =
            pmp_core::xof::verify_file_with_key(&xof, hsm, labels::XOF_MAC).expect("XOF verifies");
        assert_eq!(verified, summary.written);
        let compared =
            demo::verify_against(hsm, &xof, Cards::new(7, cards)).expect("attributes round-trip");
        assert_eq!(compared, summary.written);
        rates.push(format!(
            "{name}: {} records in {:.2} s = {:.0} records/s ({} workers)",
            summary.read,
            summary.elapsed.as_secs_f64(),
            summary.records_per_second(),
            summary.workers
        ));
    }
    println!("import throughput: {}", rates.join("; "));
    // The DKeps on the token, read by an independent PKCS#11 client: sensitive, never
    // extractable, unmodifiable.
    let rows = attributes_seen_by_python_pkcs11();
    for class in demo::DKEP_CLASSES {
        let row = row_of(&rows, &format!("DKEP-{class}"), "pmp1:key:D0:");
        assert_flags(
            row,
            &[
                ("sensitive", true),
                ("extractable", false),
                ("never_extractable", true),
                ("modifiable", false),
            ],
        );
    }
}

/// The conformance suite of every backend (`pmp_core::hsm::conformance`) on the token, with
/// the operator's consent to key-block exchange through host memory (so the suite can bring
/// in keys whose clear value it knows and run its known-answer checks). Every check passes
/// or is left out for a capability the backend reports missing; the left-out checks are
/// printed and asserted one by one.
#[test]
fn conformance_suite_on_the_token() {
    use pmp_core::hsm::conformance;
    conformance_without_the_host_key_fallback();
    let hsm = open(true);
    let caps = hsm.capabilities();
    let report = conformance::run_all(&hsm);
    println!("{report}");
    let got: Vec<(&str, Capability)> = report
        .skipped()
        .iter()
        .map(|s| (s.check.as_str(), s.missing))
        .collect();
    for s in report.skipped() {
        assert!(
            !caps.supports(s.missing),
            "{}: left out for {} that the backend reports",
            s.check,
            s.missing
        );
        assert!(
            s.reason.contains("pkcs11") && s.reason.contains(&s.missing.to_string()),
            "the reason names the backend and what it lacks: {}",
            s.reason
        );
    }
    // SoftHSMv2 2.6.1 (see docs/pkcs11.md): of the MACs only AES-CMAC (no CKM_DES3_MAC /
    // CKM_AES_MAC for the CBC-MACs and the retail MAC, and cryptoki does not name
    // CKM_DES3_CMAC). Translation runs through the host (no CBC unwrap), which the backend
    // reports as HostTranslateFallback: the translation checks run on that.
    use MacAlgorithm::{CbcAes, CbcTdes, CmacTdes, Retail};
    let mac = Capability::Mac;
    let mut want = vec![
        ("mac.round-trip/Retail", mac(Retail)),
        ("mac.known-answer/Retail", mac(Retail)),
        ("mac.round-trip/CbcTdes", mac(CbcTdes)),
        ("mac.known-answer/CbcTdes", mac(CbcTdes)),
        ("mac.round-trip/CbcAes", mac(CbcAes)),
        ("mac.known-answer/CbcAes", mac(CbcAes)),
        ("mac.round-trip/CmacTdes", mac(CmacTdes)),
        ("mac.known-answer/CmacTdes", mac(CmacTdes)),
        ("policy-matrix/MacGenerate(Retail)", mac(Retail)),
        ("policy-matrix/MacGenerate(CbcTdes)", mac(CbcTdes)),
        ("policy-matrix/MacGenerate(CbcAes)", mac(CbcAes)),
        ("policy-matrix/MacGenerate(CmacTdes)", mac(CmacTdes)),
        ("policy-matrix/MacVerify(Retail)", mac(Retail)),
        ("policy-matrix/MacVerify(CbcTdes)", mac(CbcTdes)),
        ("policy-matrix/MacVerify(CbcAes)", mac(CbcAes)),
        ("policy-matrix/MacVerify(CmacTdes)", mac(CmacTdes)),
        // EMV ICC master-key derivation is not offered on PKCS#11 (docs/production.md).
        ("policy-matrix/DeriveIccKey", Capability::IccKeyDerivation),
    ];
    // The RSA checks (src/hsm/conformance/rsa.rs), left out for what the token does not
    // offer, each for the first capability it lacks.
    let lacks = |c: Capability| (!caps.supports(c)).then_some(c);
    let rsa_skips = [
        ("rsa.keys", lacks(Capability::RsaKeys)),
        ("rsa.key-block-import", lacks(Capability::RsaKeyBlockImport)),
        ("rsa.icc-keys", lacks(Capability::IccRsaKeys)),
        ("rsa.icc-keys.known-answer", lacks(Capability::IccRsaKeys)),
        (
            "rsa.pool",
            lacks(Capability::IccRsaKeys).or(lacks(Capability::IccKeyPool)),
        ),
    ];
    want.extend(
        rsa_skips
            .into_iter()
            .filter_map(|(check, c)| c.map(|c| (check, c))),
    );
    assert_eq!(got, want, "{report}");
    // Known keys work on the token (components and host-made blocks): every known-answer
    // check of what the token offers ran, and so did the whole key exchange.
    for check in [
        "known-keys",
        "translate.round-trip",
        "translate.known-answer",
        "data.known-answer/TDES-16",
        "data.known-answer/AES-32",
        "components",
        "export-import/D",
        "export-import/B",
        "export-import.refusals",
        "export-import.known-answer",
        "pin.round-trip",
        "pin.round-trip/ISO-4",
        "mac.known-answer/CmacAes",
        "policy-matrix",
        "policy-matrix.success-with-valid-input",
    ] {
        assert!(report.has_run(check), "{check}: {report}");
    }
    assert!(
        hsm.list_keys()
            .unwrap()
            .iter()
            .all(|k| !k.spec.label.starts_with("conf")),
        "the suite cleans up"
    );
}

/// The suite on the token without the operator's consent to key-block exchange through
/// host memory: no key blocks in or out, hence no keys whose clear value the suite knows.
/// Every check passes or is left out for a capability the backend reports missing (printed,
/// and each reason names it); key exchange and the known-answer checks are among them.
/// (Called by `conformance_suite_on_the_token`: the two runs share the token and its
/// clean-up check, so they run one after the other.)
fn conformance_without_the_host_key_fallback() {
    use pmp_core::hsm::conformance;
    let hsm = open(false);
    let caps = hsm.capabilities();
    let report = conformance::run_all(&hsm);
    println!("{report}");
    for s in report.skipped() {
        assert!(
            !caps.supports(s.missing),
            "{}: left out for {} that the backend reports",
            s.check,
            s.missing
        );
        assert!(
            s.reason.contains("pkcs11") && s.reason.contains(&s.missing.to_string()),
            "the reason names the backend and what it lacks: {}",
            s.reason
        );
    }
    let missing = |check: &str| report.skipped_check(check).map(|s| s.missing);
    let d = Some(Capability::ImportKeyBlock(Version::D));
    assert_eq!(missing("known-keys"), d, "{report}");
    assert_eq!(missing("data.known-answer/AES-32"), d, "{report}");
    assert_eq!(
        missing("export-import/D"),
        Some(Capability::ExportKeyBlock(Version::D)),
        "{report}"
    );
    assert_eq!(missing("policy-matrix/Unwrap"), d, "{report}");
    for check in [
        "capabilities",
        "key-management",
        "data.round-trip/TDES-16",
        "data.round-trip/AES-32",
        "kcv.cross-check/AES",
        "translate.round-trip",
        "components",
        "pin.refusals",
        "mac.round-trip/CmacAes",
        "policy-matrix",
    ] {
        assert!(report.has_run(check), "{check}: {report}");
    }
}
