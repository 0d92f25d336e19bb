//! Issue 15 through the CLI: degenerate components refused by `keystore init` and `key
//! components`; on a production store the sensitive commands refused without two officers
//! (naming the missing authorisation) and run with them, passphrases from the environment;
//! `key import` refuses a KEK block unless its usage is named; `xof verify` expects the
//! store's own MAC key.

mod common;

use std::process::{Command, Output};

use common::TempDir;

const LMK: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF,\
                   0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F1";

fn pmp(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pmp"));
    c.args(args)
        .env_remove("PMP_LMK_COMPONENTS")
        .env("PMP_LMK_COMPONENTS", LMK)
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run pmp")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

const C1: &str = "0123456789ABCDEFFEDCBA98765432100123456789ABCDEFFEDCBA9876543210";
const C2: &str = "A7C4E2F01B3D596187A9CBED0214365A3F5E7D9CB8A1C2E4D6F1082A4C6E8B0D";
const OFFICERS: [(&str, &str); 2] = [
    ("PMP_PASSPHRASE_ALICE", "alice correct horse"),
    ("PMP_PASSPHRASE_BOB", "bob battery staple"),
];

#[test]
fn identical_or_zero_lmk_components_are_refused() {
    let d = TempDir::new("lmk");
    let zero = "00".repeat(32);
    for comps in [[C1, C1], [C1, zero.as_str()]] {
        let o = pmp(
            &[
                "keystore",
                "init",
                "--dir",
                d.s(),
                "--lmk-component",
                comps[0],
                "--lmk-component",
                comps[1],
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        assert!(
            err(&o).contains("identical") || err(&o).contains("all zero"),
            "{}",
            err(&o)
        );
        assert!(!err(&o).contains(C1));
    }
}

/// A production store with officers alice and bob.
fn store(name: &str) -> TempDir {
    let d = TempDir::new(name);
    let o = pmp(
        &[
            "keystore",
            "init",
            "--dir",
            d.s(),
            "--lmk-component",
            &LMK[..64],
            "--lmk-component",
            LMK[65..].trim(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    for id in ["alice", "bob"] {
        let o = pmp(
            &["keystore", "enrol-officer", "--dir", d.s(), "--id", id],
            &OFFICERS,
        );
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    }
    d
}

fn components(d: &TempDir, label: &str, usage: &str, mode: &str, officers: bool) -> Output {
    let mut a = vec![
        "key",
        "components",
        "--dir",
        d.s(),
        "--label",
        label,
        "--usage",
        usage,
        "--algorithm",
        "aes",
        "--mode",
        mode,
        "--component",
        C1,
        "--component",
        C2,
    ];
    if officers {
        a.extend(["--officer", "alice", "--officer", "bob"]);
    }
    pmp(&a, &OFFICERS)
}

#[test]
fn sensitive_commands_need_two_officers() {
    let d = store("dual");
    // Identical components: refused, whoever authorises.
    let o = pmp(
        &[
            "key",
            "components",
            "--dir",
            d.s(),
            "--label",
            "Z",
            "--usage",
            "K0",
            "--algorithm",
            "aes",
            "--mode",
            "E",
            "--component",
            C1,
            "--component",
            C1,
            "--officer",
            "alice",
            "--officer",
            "bob",
        ],
        &OFFICERS,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("identical"), "{}", err(&o));
    // A KEK of one's own: refused without officers, and two-way even with them.
    let o = components(&d, "MY-KEK", "K0", "E", false);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("'form-key'"), "{}", err(&o));
    let o = components(&d, "MY-KEK", "K0", "B", true);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("one zone"), "{}", err(&o));
    // A wrong passphrase is refused.
    let o = pmp(
        &[
            "key",
            "components",
            "--dir",
            d.s(),
            "--label",
            "ZMK",
            "--usage",
            "K0",
            "--algorithm",
            "aes",
            "--mode",
            "E",
            "--component",
            C1,
            "--component",
            C2,
            "--officer",
            "alice",
            "--officer",
            "bob",
        ],
        &[OFFICERS[0], ("PMP_PASSPHRASE_BOB", "not the passphrase")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("officer 'bob'"), "{}", err(&o));
    // The authorised pair forms ZMK-prod (export zone) and issues an exportable key.
    let o = components(&d, "ZMK-PROD", "K0", "E", true);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let generate = |officers: bool| {
        let mut a = vec![
            "key",
            "generate",
            "--dir",
            d.s(),
            "--label",
            "PTK",
            "--usage",
            "P0",
            "--algorithm",
            "aes",
            "--bits",
            "256",
            "--exportable",
        ];
        if officers {
            a.extend(["--officer", "alice", "--officer", "bob"]);
        }
        pmp(&a, &OFFICERS)
    };
    let o = generate(false);
    assert!(err(&o).contains("'generate-exportable'"), "{}", err(&o));
    assert_eq!(generate(true).status.code(), Some(0));
    let export = |officers: bool| {
        let mut a = vec![
            "key",
            "export",
            "--dir",
            d.s(),
            "--label",
            "PTK",
            "--kek",
            "ZMK-PROD",
        ];
        if officers {
            a.extend(["--officer", "alice", "--officer", "bob"]);
        }
        pmp(&a, &OFFICERS)
    };
    let o = export(false);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("'export'"), "{}", err(&o));
    let o = export(true);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let block = String::from_utf8_lossy(&o.stdout).trim().to_string();
    // Deleting needs officers too.
    let o = pmp(&["key", "delete", "--dir", d.s(), "--label", "PTK"], &[]);
    assert!(err(&o).contains("'delete-key'"), "{}", err(&o));
    // The audit log names both officers.
    let log = std::fs::read_to_string(d.path().join("audit.log")).unwrap();
    assert!(
        log.contains("op=export key=PTK kek=ZMK-PROD activity=export auth=alice+bob"),
        "{log}"
    );
    let _ = block;
}

#[test]
fn key_import_refuses_a_kek_block_unless_named_and_xof_verify_expects_the_store_key() {
    let d = store("imp");
    let o = components(&d, "ZMK-ISSUER", "K0", "D", true);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // The issuer's ZMK (its clear value: C1 xor C2) wraps a K0 block.
    let zmk: Vec<u8> = hex::decode(C1)
        .unwrap()
        .iter()
        .zip(hex::decode(C2).unwrap())
        .map(|(a, b)| a ^ b)
        .collect();
    let zmk = pmp_core::SecretKey::new(pmp_core::Algorithm::Aes, &zmk).unwrap();
    let k = pmp_core::SecretKey::generate(pmp_core::Algorithm::Aes, 32).unwrap();
    let h = pmp_core::keyblock::Header::new(
        pmp_core::keyblock::Version::D,
        pmp_core::keyblock::KeyUsage::K0,
        pmp_core::keyblock::KeyAlgorithm::Aes,
        pmp_core::keyblock::ModeOfUse::E,
        pmp_core::keyblock::Exportability::N,
    );
    let block = pmp_core::keyblock::wrap(&zmk, &h, &k, None).unwrap();
    let imp = |extra: &[&str]| {
        let mut a = vec![
            "key",
            "import",
            "--dir",
            d.s(),
            "--label",
            "MY-K0",
            "--kek",
            "ZMK-ISSUER",
            "--block",
            &block,
        ];
        a.extend(extra);
        pmp(&a, &OFFICERS)
    };
    let o = imp(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("--usage K0"), "{}", err(&o));
    let o = imp(&["--usage", "D0,P0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("usage K0"), "{}", err(&o));
    let o = imp(&["--usage", "K0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("'import-kek'"), "{}", err(&o));
    // xof verify without --mac-key: the store has no XOF MAC key.
    let xof = std::path::PathBuf::from(format!("{}.xof", d.s()));
    std::fs::write(&xof, "<?xml version=\"1.0\"?><xof version=\"1\"></xof>").unwrap();
    let o = pmp(
        &["xof", "verify", "--dir", d.s(), xof.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("no XOF MAC key"), "{}", err(&o));
    let _ = std::fs::remove_file(&xof);
}
