//! The `pmp` command-line contract: first-line outputs, exit statuses (0 ok, 1 rejected
//! input, 2 usage), one-line errors that never echo a key or a PIN, and the key store flow.
//! Known answers come from `tests/data/` of pmp-core (sources named there).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{TempDir, pmp, stderr};

fn first_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn kcv_and_mac_known_answers() {
    // tests/data/kcv.txt (psec 1.3.0 / pyca).
    let o = pmp(&[
        "kcv",
        "--algorithm",
        "tdes",
        "--key",
        "D9EA0251738F3EF10885642FAB7AC2F8",
    ]);
    assert_eq!(
        (o.status.code(), first_line(&o).as_str()),
        (Some(0), "B53005")
    );
    let o = pmp(&[
        "kcv",
        "--algorithm",
        "aes",
        "--key",
        "1e89ac67e4b0d6ea892f94cc50fcff90",
    ]);
    assert_eq!(first_line(&o), "91E9C43E5F");
    // ISO/IEC 9797-1 annex B, MAC algorithm 3, padding method 1 (tests/data/mac.txt).
    let o = pmp(&[
        "mac",
        "--algorithm",
        "retail",
        "--key",
        "0123456789ABCDEFFEDCBA9876543210",
        "--data",
        "4E6F77206973207468652074696D6520666F7220616C6C20",
    ]);
    assert_eq!(first_line(&o), "A1C72E74EA3FA9B6");
}

#[test]
fn bad_input_exits_1_usage_errors_exit_2_and_secrets_are_not_echoed() {
    let key = "0123456789ABCDEFFEDCBA987654321"; // odd length
    let o = pmp(&["kcv", "--algorithm", "tdes", "--key", key]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !stderr(&o).contains(key) && stderr(&o).contains("--key"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1);
    let o = pmp(&[
        "kcv",
        "--algorithm",
        "aes",
        "--key",
        "00112233445566778899AABBCCDDEE",
    ]);
    assert_eq!(o.status.code(), Some(1), "15-byte AES key");
    let o = pmp(&["kcv", "--algorithm", "rc4", "--key", "00"]);
    assert_eq!(o.status.code(), Some(2));
    let o = pmp(&[
        "mac",
        "--algorithm",
        "cmac-aes",
        "--key",
        "00112233445566778899AABBCCDDEEFF",
        "--data",
        "00",
        "--padding",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "--padding is ignored for CMAC");
    // RFC 4493 / SP 800-38B would give the same tag without --padding.
    let plain = pmp(&[
        "mac",
        "--algorithm",
        "cmac-aes",
        "--key",
        "00112233445566778899AABBCCDDEEFF",
        "--data",
        "00",
    ]);
    assert_eq!(first_line(&o), first_line(&plain));
    let o = pmp(&[
        "pinblock",
        "encode",
        "--format",
        "0",
        "--pin",
        "123",
        "--pan",
        "4111111111111111",
    ]);
    assert_eq!(o.status.code(), Some(1), "3-digit PIN");
    assert!(!stderr(&o).contains("123 "), "{}", stderr(&o));
    let o = pmp(&["pinblock", "encode", "--format", "0", "--pin", "12345"]);
    assert_eq!(o.status.code(), Some(2), "format 0 needs a PAN");
}

#[test]
fn key_store_flow() {
    let d = TempDir::new("flow");
    let o = pmp(&["keystore", "init", "--dir", d.s(), "--test-lmk"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = pmp(&["keystore", "init", "--dir", d.s(), "--test-lmk"]);
    assert_eq!(o.status.code(), Some(1), "a store is not overwritten");
    // ZMK from two components. The expected KCV comes from outside pmp-core: K = c1 XOR c2
    // with odd parity = 3B4CD94CD525D3A85D195D617F4F0E4F, and its KCV, the first 3 bytes of
    // TDES-ECB(K, 0^8), is 03B3ED by both `openssl enc -des-ede -nopad` (OpenSSL 3.0.19)
    // and pyca/cryptography 48.0.0 (TripleDES, ECB).
    let c1 = "0123456789ABCDEFFEDCBA9876543210";
    let c2 = "3B6F9C2A5D8E1F47A2C4E6F8091B3D5F";
    let want = "03B3ED".to_owned();
    let base = [
        "key",
        "components",
        "--dir",
        d.s(),
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
    ];
    let mut wrong = base.to_vec();
    wrong.extend(["--kcv", "000000"]);
    let o = pmp(&wrong);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("KCV mismatch"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(c1) && !stderr(&o).contains(c2));
    let o = pmp(&["key", "list", "--dir", d.s()]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "",
        "nothing stored after a refused ceremony"
    );
    let mut right = base.to_vec();
    right.extend(["--kcv", &want]);
    let o = pmp(&right);
    assert_eq!(first_line(&o), want, "{}", stderr(&o));
    let o = pmp(&[
        "key",
        "generate",
        "--dir",
        d.s(),
        "--label",
        "PTK",
        "--usage",
        "P0",
        "--algorithm",
        "tdes",
        "--bits",
        "128",
        "--exportable",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ptk_kcv = first_line(&o);
    let o = pmp(&[
        "key",
        "generate",
        "--dir",
        d.s(),
        "--label",
        "PTK",
        "--usage",
        "P0",
        "--algorithm",
        "tdes",
        "--bits",
        "128",
    ]);
    assert_eq!(o.status.code(), Some(1), "labels are unique");
    let o = pmp(&[
        "key",
        "generate",
        "--dir",
        d.s(),
        "--label",
        "X",
        "--usage",
        "D0",
        "--algorithm",
        "tdes",
        "--bits",
        "256",
    ]);
    assert_eq!(o.status.code(), Some(1), "no 256-bit TDES");
    let o = pmp(&[
        "key",
        "export",
        "--dir",
        d.s(),
        "--label",
        "PTK",
        "--kek",
        "ZMK",
    ]);
    let block = first_line(&o);
    assert!(block.starts_with("B0") && block.contains("P0TB"), "{block}");
    // The block unwraps under the known ZMK with the KCV generate printed.
    // (The ZMK's value, c1 XOR c2 with odd parity, as worked out above.)
    let x = hex::decode("3B4CD94CD525D3A85D195D617F4F0E4F").unwrap();
    let zmk = pmp_core::SecretKey::new(pmp_core::Algorithm::Tdes, &x).unwrap();
    let (h, k) = pmp_core::keyblock::unwrap(&zmk, &block, &Default::default()).unwrap();
    assert_eq!(h.usage, pmp_core::keyblock::KeyUsage::P0);
    assert_eq!(k.kcv().to_string(), ptk_kcv);
    // Import it back under another label: same KCV. With the KCV the sender gave: a wrong
    // one is refused and nothing is stored; the right one imports.
    let import = |label: &str, kcv: Option<&str>| {
        let mut args = vec![
            "key",
            "import",
            "--dir",
            d.s(),
            "--label",
            label,
            "--kek",
            "ZMK",
            "--block",
            &block,
        ];
        if let Some(k) = kcv {
            args.extend(["--kcv", k]);
        }
        pmp(&args)
    };
    let o = import("PTK-WRONG", Some("000000"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("KCV mismatch"), "{}", stderr(&o));
    let o = import("PTK-BADHEX", Some("XYZ"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = pmp(&["key", "list", "--dir", d.s()]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("PTK-"),
        "nothing stored after a refused import"
    );
    let o = import("PTK2", Some(&ptk_kcv));
    assert_eq!(first_line(&o), ptk_kcv, "{}", stderr(&o));
    let o = pmp(&["key", "list", "--dir", d.s()]);
    let list = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(list.lines().count(), 3);
    assert!(
        list.lines()
            .any(|l| l.starts_with("PTK ") && l.contains("usage=P0") && l.contains(&ptk_kcv)),
        "{list}"
    );
    let o = pmp(&["audit", "verify", "--dir", d.s()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let log = d.path().join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(2);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let o = pmp(&["audit", "verify", "--dir", d.s()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("line 3"), "{}", stderr(&o));
}

#[test]
fn production_lmk_comes_from_the_environment() {
    let d = TempDir::new("prod");
    let c1 = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
    let c2 = "0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F1";
    let o = pmp(&[
        "keystore",
        "init",
        "--dir",
        d.s(),
        "--lmk-component",
        c1,
        "--lmk-component",
        c2,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!d.path().join("lmk.test").exists());
    let o = pmp(&["key", "list", "--dir", d.s()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("PMP_LMK_COMPONENTS"), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_pmp"))
        .args(["key", "list", "--dir", d.s()])
        .env("PMP_LMK_COMPONENTS", format!("{c1},{c2}"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_pmp"))
        .args(["key", "list", "--dir", d.s()])
        .env("PMP_LMK_COMPONENTS", format!("{c1},{c1}"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "wrong components refused");
    assert!(!stderr(&o).contains(c1));
}

#[test]
fn import_dry_run_writes_nothing() {
    let d = TempDir::new("dry-run");
    let demo = d.path().join("demo");
    let o = pmp(&["demo", "--cards", "60", "--out", demo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before: Vec<_> = std::fs::read_dir(&demo)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let ks = demo.join("keystore");
    let product = demo.join("product.xml");
    let input = demo.join("issuer-cards.csv.enc");
    let o = pmp(&[
        "import",
        "--dir",
        ks.to_str().unwrap(),
        "--product",
        product.to_str().unwrap(),
        "--in",
        input.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    // 60 generated cards, records 7, 31 and 53 defective (pmp_demo::Cards).
    assert_eq!(
        first_line(&o),
        "read=60 written=57 rejected=3 (dry run)",
        "{out}"
    );
    assert!(
        out.contains("rejects by reason:") && out.contains("pan-luhn"),
        "{out}"
    );
    assert!(
        out.contains("records carrying each attribute") && out.contains("PAN"),
        "{out}"
    );
    assert!(out.contains("nothing written (dry run)"), "{out}");
    let mut after: Vec<_> = std::fs::read_dir(&demo)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after, "a dry run writes no file");
    // --rejects makes no sense with --dry-run; --out is needed without it.
    let o = pmp(&[
        "import",
        "--dir",
        ks.to_str().unwrap(),
        "--product",
        product.to_str().unwrap(),
        "--in",
        input.to_str().unwrap(),
        "--dry-run",
        "--rejects",
        "r.txt",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = pmp(&[
        "import",
        "--dir",
        ks.to_str().unwrap(),
        "--product",
        product.to_str().unwrap(),
        "--in",
        input.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
}

/// A usage error never echoes what was typed in a value's place: a key given without its
/// flag, a stray PIN, a third component given positionally, a value refused by its flag's
/// list. (clap's own message printed "unexpected argument '<the key>' found".)
#[test]
fn usage_errors_never_echo_argument_values() {
    let key = "D9EA0251738F3EF10885642FAB7AC2F8";
    let pin = "493817";
    let component = "0F1E2D3C4B5A69788796A5B4C3D2E1F0";
    let d = TempDir::new("usage");
    let key_eq = format!("--key={key}");
    let k_eq = format!("--k={key}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["kcv", "--algorithm", "aes", key],
        vec![key],
        vec!["kcv", "--algorithm", key, "--key", "00"],
        vec!["kcv", "--algorithm", "aes", "--key", key, "--key", key],
        vec![
            "pinblock",
            "encode",
            "--format",
            "0",
            "--pin",
            "1234",
            "--pan",
            "4111111111111111",
            pin,
        ],
        vec![
            "key",
            "components",
            "--dir",
            d.s(),
            "--label",
            "ZMK",
            "--usage",
            "K0",
            "--algorithm",
            "tdes",
            "--component",
            key,
            component,
        ],
        vec!["kcv", "--algorithm", "aes", &key_eq, "--bogus"],
        vec!["kcv", "--algorithm", "aes", &k_eq],
    ];
    for args in &cases {
        let o = pmp(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        for secret in [key, pin, component] {
            assert!(!err.contains(secret), "{args:?} echoed a value: {err}");
        }
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    // A misspelled flag name is still named, with clap's suggestion.
    let o = pmp(&["kcv", "--algoritm", "aes", "--key", key]);
    let err = stderr(&o);
    assert!(
        err.contains("'--algoritm'") && err.contains("'--algorithm'"),
        "{err}"
    );
    assert!(!err.contains(key), "{err}");
}

/// `pmp import` refuses outputs that would replace a key-store file (the audit log, a key
/// block) or the product file; the store still opens and the product is unchanged. Then a
/// good import leaves no temporary or journal behind, and one after a killed run's leftovers
/// removes them.
#[test]
fn import_outputs_never_replace_the_key_store_or_the_product() {
    let d = TempDir::new("import-guard");
    let o = pmp(&["demo", "--cards", "12", "--out", d.s()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let store = d.path().join("keystore");
    let product = d.path().join("product.xml");
    let cards = d.path().join("issuer-cards.csv.enc");
    let key_file = std::fs::read_dir(store.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let before: Vec<(PathBuf, Vec<u8>)> =
        [store.join("audit.log"), key_file.clone(), product.clone()]
            .into_iter()
            .map(|p| {
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
    let import = |out: &std::path::Path, rejects: Option<&std::path::Path>| {
        let mut args = vec![
            "import".to_owned(),
            "--dir".to_owned(),
            store.to_str().unwrap().to_owned(),
            "--product".to_owned(),
            product.to_str().unwrap().to_owned(),
            "--in".to_owned(),
            cards.to_str().unwrap().to_owned(),
            "--out".to_owned(),
            out.to_str().unwrap().to_owned(),
        ];
        if let Some(r) = rejects {
            args.extend(["--rejects".to_owned(), r.to_str().unwrap().to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pmp(&args)
    };
    let good_out = d.path().join("new.xof");
    for (out, rejects) in [
        (store.join("audit.log"), None),
        (good_out.clone(), Some(key_file.clone())),
        (good_out.clone(), Some(store.join("keys/NEW.kb"))),
        (product.clone(), None),
        (good_out.clone(), Some(product.clone())),
        (store.join("order.xof"), None),
    ] {
        let o = import(&out, rejects.as_deref());
        assert_eq!(
            o.status.code(),
            Some(1),
            "{out:?} {rejects:?}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("would"), "{}", stderr(&o));
    }
    for (p, b) in &before {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{} changed", p.display());
    }
    assert!(!good_out.exists());
    let o = pmp(&["key", "list", "--dir", store.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "the store opens: {}", stderr(&o));

    // Leftovers of a killed run: a stale temporary of each output.
    let stale_xof = d.path().join(".new.xof.0123456789ab.tmp");
    let stale_rej = d.path().join(".new.rejects.txt.abcdef012345.tmp");
    std::fs::write(&stale_xof, b"partial").unwrap();
    std::fs::write(&stale_rej, b"partial").unwrap();
    let o = import(&good_out, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !stale_xof.exists() && !stale_rej.exists(),
        "stale temporaries removed"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".new."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn prep_and_production_verify() {
    let t = TempDir::new("prep");
    let o = pmp(&["demo", "--cards", "40", "--out", t.s()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let d = |f: &str| t.0.join(f).to_str().unwrap().to_string();
    // pmp prep again on the demo's data-prep store, XOF and profile.
    let out = d("again.xml");
    let o = pmp(&[
        "prep",
        "--dir",
        &d("keystore"),
        "--profile",
        &d("profile.xml"),
        "--in",
        &d("order.xof"),
        "--out",
        &out,
        "--workers",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let first = first_line(&o);
    let n: u64 = first
        .strip_prefix("read=")
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    assert_eq!(first, format!("read={n} prepared={n} rejected=0"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("cards/s"));
    assert!(t.0.join("again.rejects.txt").exists());
    // An existing output is replaced only with --force.
    let again = [
        "prep",
        "--dir",
        &d("keystore"),
        "--profile",
        &d("profile.xml"),
        "--in",
        &d("order.xof"),
        "--out",
        &out,
    ];
    let o = pmp(&again);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let mut forced = again.to_vec();
    forced.push("--force");
    assert_eq!(pmp(&forced).status.code(), Some(0));
    // The production side verifies it and prints the count.
    let o = pmp(&[
        "production",
        "verify",
        "--dir",
        &d("production-line/keystore"),
        "--in",
        &out,
    ]);
    assert_eq!(
        (o.status.code(), first_line(&o)),
        (Some(0), n.to_string()),
        "{}",
        stderr(&o)
    );
    let o = pmp(&[
        "production",
        "verify",
        "--dir",
        &d("production-line/keystore"),
        "--in",
        &out,
        "--mac-key",
        "PROD1-DTK",
    ]);
    assert_eq!(o.status.code(), Some(1));
    // One changed digit: exit 1, one line naming the card, nothing on stdout.
    let text = std::fs::read_to_string(&out).unwrap();
    let i = text.find("<dgi id=\"9010\">0303").unwrap() + "<dgi id=\"9010\">".len();
    let bad = d("bad.xml");
    std::fs::write(&bad, format!("{}0304{}", &text[..i], &text[i + 4..])).unwrap();
    let o = pmp(&[
        "production",
        "verify",
        "--dir",
        &d("production-line/keystore"),
        "--in",
        &bad,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let e = stderr(&o);
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("pmp: error:")).collect();
    assert_eq!(errors.len(), 1, "{e}");
    assert!(
        errors[0].contains("(card 1): card MAC does not verify"),
        "{e}"
    );
    // The data-prep store is not the production store: verifying there works too (same
    // keys), but a store without the transport keys refuses, naming the missing key.
    let empty = d("empty-ks");
    assert_eq!(
        pmp(&["keystore", "init", "--dir", &empty, "--test-lmk"])
            .status
            .code(),
        Some(0)
    );
    let o = pmp(&["production", "verify", "--dir", &empty, "--in", &out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("PROD1-KTK"), "{}", stderr(&o));
    // A failed prep leaves no output: the XOF's product is not the profile's.
    let profile = std::fs::read_to_string(d("profile.xml"))
        .unwrap()
        .replace("product=\"DEMO-VISA-CLASSIC\"", "product=\"OTHER\"");
    std::fs::write(d("other.xml"), profile).unwrap();
    let o = pmp(&[
        "prep",
        "--dir",
        &d("keystore"),
        "--profile",
        &d("other.xml"),
        "--in",
        &d("order.xof"),
        "--out",
        &d("none.xml"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!t.0.join("none.xml").exists() && !t.0.join("none.rejects.txt").exists());
}
