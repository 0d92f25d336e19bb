//! The operator's contract (issue 17): input refused up front with a message that says what
//! is valid, errors that say what is wrong and what to do, the TEST LMK visible, outputs
//! not overwritten, machine-readable output. Each test pins the key words of a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pmp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmp"))
        .args(args)
        .env_remove("PMP_LMK_COMPONENTS")
        .output()
        .expect("run pmp")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Asserts exit status 1 and that stderr holds every word of `words`.
#[track_caller]
fn refused(o: &Output, words: &[&str]) {
    let e = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {} stderr: {e}",
        stdout(o)
    );
    for w in words {
        assert!(e.contains(w), "{w:?} missing from: {e}");
    }
    // One error line, with the one prefix; anything else on stderr is a note or warning.
    assert_eq!(
        e.lines().filter(|l| l.starts_with("pmp: error: ")).count(),
        1,
        "one error line: {e}"
    );
    assert!(
        e.lines()
            .all(|l| ["pmp: error: ", "pmp: note: ", "pmp: warning: "]
                .iter()
                .any(|p| l.starts_with(p))),
        "one prefix per line: {e}"
    );
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!("pmp-op-{name}-{}", hex::encode(r)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    fn s(&self, p: &str) -> String {
        self.join(p).to_str().unwrap().to_string()
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn test_store(t: &TempDir) -> String {
    let dir = t.s("keystore");
    let o = pmp(&["keystore", "init", "--dir", &dir, "--test-lmk"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    dir
}

fn generate(dir: &str, label: &str, usage: &str, alg: &str, bits: &str) -> Output {
    pmp(&[
        "key",
        "generate",
        "--dir",
        dir,
        "--label",
        label,
        "--usage",
        usage,
        "--algorithm",
        alg,
        "--bits",
        bits,
    ])
}

fn exists(p: &Path) -> bool {
    p.exists()
}

#[test]
fn unknown_or_lowercase_tr31_codes_are_refused_listing_the_valid_ones() {
    let t = TempDir::new("codes");
    let dir = test_store(&t);
    for bad in ["k0", "KZ", "99"] {
        let o = generate(&dir, "X", bad, "tdes", "128");
        refused(&o, &["--usage", bad, "known:", "K0", "P0", "M6"]);
    }
    let o = generate(&dir, "X", "k0", "tdes", "128");
    refused(&o, &["upper-case: K0"]);
    let o = pmp(&[
        "key",
        "generate",
        "--dir",
        &dir,
        "--label",
        "X",
        "--usage",
        "D0",
        "--algorithm",
        "aes",
        "--bits",
        "128",
        "--mode",
        "b",
    ]);
    refused(&o, &["--mode", "B C D E G N"]);
    let o = pmp(&["key", "list", "--dir", &dir]);
    assert_eq!(stdout(&o), "", "nothing stored by a refused command");

    // keyblock wrap: a lower-case usage in the header, and an unknown one.
    let kbpk = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
    let key = "00112233445566778899AABBCCDDEEFF";
    for (header, words) in [
        (
            "D0000k0AB00E0000",
            &["--header", "position 5", "upper-case"][..],
        ),
        (
            "D0000K0aB00E0000",
            &["--header", "position 7", "upper-case"][..],
        ),
        ("D0000Q7AB00E0000", &["Q7", "known:", "K0"][..]),
    ] {
        let o = pmp(&[
            "keyblock", "wrap", "--kbpk", kbpk, "--header", header, "--key", key,
        ]);
        refused(&o, words);
        assert_eq!(stdout(&o), "", "no block emitted for {header}");
    }
}

#[test]
fn hex_errors_name_the_character_and_its_position() {
    // An even-length string with a bad digit (issue 17: it said "not an even-length hex
    // string").
    let o = pmp(&[
        "kcv",
        "--algorithm",
        "tdes",
        "--key",
        "0123456789ABCDEFFEDCBA987654321G",
    ]);
    refused(&o, &["--key", "character 32", "'G'", "not a hex digit"]);
    assert!(!stderr(&o).contains("0123456789"), "no key digits echoed");
    let o = pmp(&["kcv", "--algorithm", "tdes", "--key", "0123456789ABCDEF0"]);
    refused(&o, &["--key", "17 hex digits", "even"]);
    let o = pmp(&[
        "mac",
        "--algorithm",
        "cmac-aes",
        "--key",
        "00112233445566778899AABBCCDDEEFF",
        "--data",
        "00 11",
    ]);
    refused(&o, &["--data", "character 3"]);
}

#[test]
fn a_refused_label_is_explained() {
    let t = TempDir::new("label");
    let dir = test_store(&t);
    let o = generate(&dir, "MY KEY", "D0", "aes", "128");
    refused(
        &o,
        &["--label", "\"MY KEY\"", "character 3", "A-Z a-z 0-9 . _ -"],
    );
    let o = generate(&dir, "", "D0", "aes", "128");
    refused(&o, &["--label", "empty"]);
    assert!(!exists(&t.join("keystore/none")));
}

/// A demo directory (TEST store with the bureau's keys, product, issuer file, XOF).
fn demo(t: &TempDir, cards: &str) -> String {
    let out = t.s("pmp-demo");
    let o = pmp(&["demo", "--cards", cards, "--out", &out]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    out
}

#[test]
fn errors_guide_the_operator() {
    let t = TempDir::new("guide");
    let d = demo(&t, "5");
    let ks = format!("{d}/keystore");
    let xof = format!("{d}/order.xof");

    // --dir at the parent of the store: the store is named.
    let o = pmp(&["key", "list", "--dir", &d]);
    refused(
        &o,
        &["not a key store", "the key store is", "keystore", "--dir"],
    );
    assert!(
        !t.join("pmp-demo/lock").exists(),
        "nothing created in a non-store"
    );
    let o = pmp(&["key", "list", "--dir", &t.s("nowhere")]);
    refused(&o, &["no such directory", "pmp keystore init"]);

    // A store in use by another process: that process is named.
    {
        let _held = pmp_core::hsm::SoftHsm::open(
            &t.join("pmp-demo/keystore"),
            pmp_core::hsm::LmkSource::Auto,
        )
        .unwrap();
        let o = pmp(&["key", "list", "--dir", &ks]);
        let pid = format!("pid {}", std::process::id());
        refused(&o, &["another pmp process is using", &ks, &pid]);
    }

    // xof inspect / verify on something that is not an XOF.
    let product = format!("{d}/product.xml");
    for args in [
        vec!["xof", "inspect", &product],
        vec!["xof", "verify", "--dir", &ks, &product],
    ] {
        let o = pmp(&args);
        refused(&o, &["this is not an XOF file", "root element"]);
    }
    let o = pmp(&["xof", "inspect", &format!("{d}/issuer-cards.csv.enc")]);
    refused(&o, &["this is not an XOF file"]);

    // --mac-key naming a key the store does not have: a typo reads as a typo.
    let o = pmp(&["xof", "verify", "--dir", &ks, "--mac-key", "XOF-MAK", &xof]);
    refused(
        &o,
        &["--mac-key XOF-MAK", "no key with this label", "XOF-MAC"],
    );
    assert!(
        !stderr(&o).contains("PROD1-MTK"),
        "an exportable key does not fit"
    );

    // A tampered key block in key import names the KEK and the block.
    let o = pmp(&[
        "key",
        "export",
        "--dir",
        &ks,
        "--label",
        "PROD1-PTK",
        "--kek",
        "ZMK-PROD",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let block = stdout(&o).trim().to_string();
    let mut bytes = block.clone().into_bytes();
    let i = bytes.len() - 3;
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(bytes).unwrap();
    let o = pmp(&[
        "key", "import", "--dir", &ks, "--label", "PTK-BACK", "--kek", "ZMK-PROD", "--block",
        &tampered,
    ]);
    refused(
        &o,
        &["does not verify", "KEK ZMK-PROD", &block[..16], "KCV"],
    );
    let o = pmp(&[
        "key", "import", "--dir", &ks, "--label", "PTK-BACK", "--kek", "ZMK-PORD", "--block",
        &block,
    ]);
    refused(
        &o,
        &["--kek ZMK-PORD", "no key with this label", "ZMK-PROD"],
    );
}

#[test]
fn a_test_store_says_so_everywhere_and_its_orders_are_marked() {
    let t = TempDir::new("testlmk");
    let d = demo(&t, "5");
    let ks = format!("{d}/keystore");
    let xof = format!("{d}/order.xof");
    let says_test = |o: &Output, what: &str| {
        assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(o));
        assert!(
            stderr(o).contains("pmp: note: TEST key store") && stderr(o).contains(&ks),
            "{what}: {}",
            stderr(o)
        );
    };
    says_test(&pmp(&["key", "list", "--dir", &ks]), "key list");
    says_test(&generate(&ks, "NEW-DK", "D0", "aes", "256"), "key generate");
    says_test(&pmp(&["audit", "verify", "--dir", &ks]), "audit verify");
    let o = pmp(&["xof", "verify", "--dir", &ks, &xof]);
    says_test(&o, "xof verify");
    assert!(stderr(&o).contains("is a TEST order"), "{}", stderr(&o));
    let out = t.s("again.xof");
    let o = pmp(&[
        "import",
        "--dir",
        &ks,
        "--product",
        &format!("{d}/product.xml"),
        "--in",
        &format!("{d}/issuer-cards.csv.enc"),
        "--out",
        &out,
    ]);
    says_test(&o, "import");
    // The XOF of a TEST store carries the marker, and inspect reports it.
    for f in [&xof, &out] {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains(r#" test="true""#), "{f}");
    }
    let o = pmp(&["xof", "inspect", &xof]);
    assert!(stdout(&o).contains("\ntest: true\n"), "{}", stdout(&o));
}
