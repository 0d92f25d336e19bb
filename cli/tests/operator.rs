//! The operator's contract (issue 17): input refused up front with a message that says what
//! is valid, errors that say what is wrong and what to do, the TEST LMK visible, outputs
//! not overwritten, machine-readable output. Each test pins the key words of a message.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{pmp, stderr, stdout};

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
    let o = pmp(&["key", "list", "--dir", &dir]);
    assert_eq!(stdout(&o), "", "nothing stored under a refused label");
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

    // A tampered key block in key import names the KEK and the block. The KEK is an
    // import-zone one (mode D: ZMK-PROD only exports) formed from stated components; the
    // block is made with the key-ceremony test tool under the same key.
    let (c1, c2) = (
        "0123456789ABCDEFFEDCBA9876543210",
        "3B6F9C2A5D8E1F47A2C4E6F8091B3D5F",
    );
    let o = pmp(&[
        "key",
        "components",
        "--dir",
        &ks,
        "--label",
        "ZMK-IN",
        "--usage",
        "K0",
        "--mode",
        "D",
        "--algorithm",
        "tdes",
        "--component",
        c1,
        "--component",
        c2,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut kbpk: Vec<u8> = hex::decode(c1)
        .unwrap()
        .iter()
        .zip(hex::decode(c2).unwrap())
        .map(|(a, b)| a ^ b)
        .collect();
    pmp_core::set_odd_parity(&mut kbpk);
    let o = pmp(&[
        "keyblock",
        "wrap",
        "--kbpk",
        &hex::encode_upper(&kbpk),
        "--header",
        "B0000D0TD00N0000",
        "--key",
        "89ABCDEF01234567FEDCBA9876543210",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let block = stdout(&o).trim().to_string();
    let mut bytes = block.clone().into_bytes();
    let i = bytes.len() - 3;
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(bytes).unwrap();
    let o = pmp(&[
        "key", "import", "--dir", &ks, "--label", "DK-BACK", "--kek", "ZMK-IN", "--block",
        &tampered,
    ]);
    refused(&o, &["does not verify", "KEK ZMK-IN", &block[..16], "KCV"]);
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

fn json_of(o: &Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    let text = stdout(o);
    assert_eq!(
        text.lines().count(),
        1,
        "one JSON document on one line: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn import_args<'a>(ks: &'a str, product: &'a str, input: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "import",
        "--dir",
        ks,
        "--product",
        product,
        "--in",
        input,
        "--out",
        out,
    ]
}

#[test]
fn outputs_are_not_overwritten_and_order_ids_are_unique() {
    let t = TempDir::new("force");
    let d = demo(&t, "5");
    let ks = format!("{d}/keystore");
    let product = format!("{d}/product.xml");
    let input = format!("{d}/issuer-cards.csv.enc");
    let out = t.s("order.xof");
    let mut args = import_args(&ks, &product, &input, &out);
    args.push("--json");
    let first = json_of(&pmp(&args));
    let before = std::fs::read(&out).unwrap();
    // Again: refused, nothing touched.
    let o = pmp(&args);
    refused(&o, &["--out", "exists", "--force"]);
    assert_eq!(std::fs::read(&out).unwrap(), before, "the XOF is untouched");
    // A reject report in the way is refused too.
    let out2 = t.s("second.xof");
    std::fs::write(t.join("second.rejects.txt"), "keep me").unwrap();
    let o = pmp(&import_args(&ks, &product, &input, &out2));
    refused(&o, &["--rejects", "second.rejects.txt", "exists"]);
    assert!(!t.join("second.xof").exists());
    // With --force: replaced, and a new order id (the two runs are within seconds; the
    // ids differ by their random suffix even within one second).
    args.push("--force");
    let second = json_of(&pmp(&args));
    assert_ne!(first["order_id"], second["order_id"]);
    assert_ne!(std::fs::read(&out).unwrap(), before);
    let id = first["order_id"].as_str().unwrap();
    assert!(id.starts_with("DEMO-VISA-CLASSIC-"), "{id}");
    let suffix = id.rsplit('-').next().unwrap();
    assert!(
        suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
}

#[test]
fn progress_lines_for_logs() {
    let t = TempDir::new("progress");
    let d = demo(&t, "5");
    let ks = format!("{d}/keystore");
    let product = format!("{d}/product.xml");
    let input = format!("{d}/issuer-cards.csv.enc");
    let out = t.s("order.xof");
    let mut args = import_args(&ks, &product, &input, &out);
    args.push("--progress");
    let o = pmp(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = stderr(&o);
    let last = e.lines().rfind(|l| l.starts_with("pmp: progress: import "));
    let last = last.unwrap_or_else(|| panic!("no progress line: {e}"));
    assert!(
        last.contains("100%") && last.contains("5 records") && last.contains("records/s"),
        "{last}"
    );
    let summary = stdout(&o);
    assert!(
        summary.starts_with("read=5 written="),
        "human summary unchanged"
    );
    let written = summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix("written="))
        .unwrap()
        .to_string();
    let o = pmp(&["xof", "verify", "--dir", &ks, "--progress", &out]);
    let e = stderr(&o);
    assert!(
        e.lines()
            .any(|l| l.starts_with("pmp: progress: xof verify 100%")),
        "{e}"
    );
    assert_eq!(stdout(&o), format!("{written}\n"), "human output unchanged");
}

#[test]
fn json_output_parses_for_every_command_that_has_it() {
    let t = TempDir::new("json");
    // kcv and mac: known answers (tests/data/kcv.txt, psec 1.3.0 / pyca; ISO/IEC 9797-1
    // annex B, MAC algorithm 3).
    let v = json_of(&pmp(&[
        "kcv",
        "--algorithm",
        "tdes",
        "--key",
        "D9EA0251738F3EF10885642FAB7AC2F8",
        "--json",
    ]));
    assert_eq!(v["kcv"], "B53005");
    let v = json_of(&pmp(&[
        "mac",
        "--json",
        "--algorithm",
        "retail",
        "--key",
        "0123456789ABCDEFFEDCBA9876543210",
        "--data",
        "4E6F77206973207468652074696D6520666F7220616C6C20",
    ]));
    assert_eq!(v["mac"], "A1C72E74EA3FA9B6");

    let ks = t.s("ks");
    let v = json_of(&pmp(&[
        "--json",
        "keystore",
        "init",
        "--dir",
        &ks,
        "--test-lmk",
    ]));
    assert_eq!(
        (v["lmk"].as_str(), v["test"].as_bool()),
        (Some("TEST"), Some(true))
    );
    // ZMK from two components: the KCV from the XOR computed here.
    let c1 = "0123456789ABCDEFFEDCBA9876543210";
    let c2 = "3B6F9C2A5D8E1F47A2C4E6F8091B3D5F";
    let mut x: Vec<u8> = hex::decode(c1)
        .unwrap()
        .iter()
        .zip(hex::decode(c2).unwrap())
        .map(|(a, b)| a ^ b)
        .collect();
    pmp_core::set_odd_parity(&mut x);
    let zmk_kcv = pmp_core::SecretKey::new(pmp_core::Algorithm::Tdes, &x)
        .unwrap()
        .kcv()
        .to_string();
    let v = json_of(&pmp(&[
        "key",
        "components",
        "--json",
        "--dir",
        &ks,
        "--label",
        "ZMK",
        "--usage",
        "K0",
        "--algorithm",
        "tdes",
        "--component",
        c1,
        "--component",
        c2,
    ]));
    assert_eq!(v["kcv"], zmk_kcv.as_str());
    assert_eq!(
        (v["label"].as_str(), v["usage"].as_str(), v["bits"].as_u64()),
        (Some("ZMK"), Some("K0"), Some(128))
    );
    let g = [
        "key",
        "generate",
        "--json",
        "--dir",
        &ks,
        "--label",
        "PTK",
        "--usage",
        "P0",
        "--algorithm",
        "tdes",
        "--bits",
        "128",
        "--exportable",
    ];
    let v = json_of(&pmp(&g));
    assert_eq!(
        (v["mode"].as_str(), v["exportability"].as_str()),
        (Some("B"), Some("E"))
    );
    let ptk_kcv = v["kcv"].as_str().unwrap().to_string();
    let v = json_of(&pmp(&[
        "key", "export", "--json", "--dir", &ks, "--label", "PTK", "--kek", "ZMK",
    ]));
    let block = v["block"].as_str().unwrap().to_string();
    assert_eq!(v["kcv"], ptk_kcv.as_str());
    // The exported block unwraps under the ZMK computed here, to the KCV generate gave.
    let zmk = pmp_core::SecretKey::new(pmp_core::Algorithm::Tdes, &x).unwrap();
    let (_, k) = pmp_core::keyblock::unwrap(&zmk, &block, &Default::default()).unwrap();
    assert_eq!(k.kcv().to_string(), ptk_kcv);
    let v = json_of(&pmp(&[
        "key", "import", "--json", "--dir", &ks, "--label", "PTK2", "--kek", "ZMK", "--block",
        &block,
    ]));
    assert_eq!(v["kcv"], ptk_kcv.as_str());
    let v = json_of(&pmp(&["key", "list", "--json", "--dir", &ks]));
    let labels: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["PTK", "PTK2", "ZMK"]);
    assert_eq!(v["test"], true);
    let v = json_of(&pmp(&["audit", "verify", "--json", "--dir", &ks]));
    assert_eq!(v["intact"], true);
    assert!(v["entries"].as_u64().unwrap() >= 4, "{v}");
    let v = json_of(&pmp(&["keyblock", "inspect", "--json", "--block", &block]));
    assert_eq!(
        (v["key_usage"].as_str(), v["exportability"].as_str()),
        (Some("P0"), Some("E"))
    );
    assert_eq!(v["length"].as_u64(), Some(block.len() as u64));
    let v = json_of(&pmp(&[
        "keyblock",
        "wrap",
        "--json",
        "--kbpk",
        "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        "--header",
        "D0000D0AB00N0000",
        "--key",
        "00112233445566778899AABBCCDDEEFF",
    ]));
    assert!(v["block"].as_str().unwrap().starts_with("D0"), "{v}");

    // demo, import, xof verify, xof inspect.
    let out = t.s("pmp-demo");
    let v = json_of(&pmp(&["demo", "--json", "--cards", "5", "--out", &out]));
    assert_eq!(v["import"]["read"], 5);
    assert!(
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["label"] == "ZMK-PROD"),
        "{v}"
    );
    assert_eq!(v["test"], true);
    let dks = format!("{out}/keystore");
    let xof = t.s("again.xof");
    let v = json_of(&pmp(&[
        "import",
        "--json",
        "--dir",
        &dks,
        "--product",
        &format!("{out}/product.xml"),
        "--in",
        &format!("{out}/issuer-cards.csv.enc"),
        "--out",
        &xof,
    ]));
    let (read, written, rejected) = (
        v["read"].as_u64().unwrap(),
        v["written"].as_u64().unwrap(),
        v["rejected"].as_u64().unwrap(),
    );
    assert_eq!((read, written + rejected), (5, 5));
    assert_eq!(v["test"], true);
    assert!(
        v["rejects_by_reason"].is_object() && v["order_id"].is_string(),
        "{v}"
    );
    let vv = json_of(&pmp(&["xof", "verify", "--json", "--dir", &dks, &xof]));
    assert_eq!(
        (
            vv["verified"].as_bool(),
            vv["records"].as_u64(),
            vv["test"].as_bool()
        ),
        (Some(true), Some(written), Some(true))
    );
    assert_eq!(vv["order_id"], v["order_id"]);
    let vi = json_of(&pmp(&["xof", "inspect", "--json", &xof]));
    assert_eq!(
        (vi["records"].as_u64(), vi["trailer_records"].as_u64()),
        (Some(written), Some(written))
    );
    assert_eq!(vi["macs_verified"], false);
    assert!(
        vi["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["label"] == "XOF-MAC")
    );

    // Commands that print clear secrets have no JSON output: a usage error.
    let o = pmp(&[
        "pinblock", "encode", "--json", "--format", "1", "--pin", "1234",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn the_demo_closing_hints_run_as_printed() {
    let t = TempDir::new("hints");
    let o = Command::new(env!("CARGO_BIN_EXE_pmp"))
        .args(["demo", "--cards", "5", "--out", "my demo"])
        .current_dir(&t.0)
        .env_remove("PMP_LMK_COMPONENTS")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let hints: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Check it yourself:")
        .skip(1)
        .filter(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert_eq!(hints.len(), 4, "{text}");
    // The PATH of the test has no `pmp` that is this binary: the hints name its path.
    let me = std::fs::canonicalize(env!("CARGO_BIN_EXE_pmp")).unwrap();
    assert!(hints[0].starts_with(me.to_str().unwrap()), "{}", hints[0]);
    for h in hints {
        let r = Command::new("sh")
            .arg("-c")
            .arg(h)
            .current_dir(&t.0)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(0), "{h}: {}", stderr(&r));
    }
    assert!(text.contains("cargo install --path cli"), "{text}");
}
