//! The RSA commands' contract: `pmp key generate --algorithm rsa`, `pmp key public`
//! (`modulus=HEX`, `exponent=HEX`), RSA keys in `pmp key list`, `pmp key import` of an
//! X9.143 block of algorithm R, and `pmp icc-keys generate|status`.

mod common;

use std::process::Output;

use common::{TempDir, pmp, stderr, stdout};

use sha1::{Digest, Sha1};

fn store(name: &str) -> TempDir {
    let d = TempDir::new(name);
    let o = pmp(&["keystore", "init", "--dir", d.s(), "--test-lmk"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    d
}

fn generate_rsa(d: &TempDir, label: &str, bits: &str, e: &str) -> Output {
    pmp(&[
        "key",
        "generate",
        "--dir",
        d.s(),
        "--label",
        label,
        "--algorithm",
        "rsa",
        "--bits",
        bits,
        "--exponent",
        e,
        "--usage",
        "S0",
    ])
}

/// `(modulus, exponent)` from `pmp key public`'s two lines.
fn public(d: &TempDir, label: &str) -> (Vec<u8>, String) {
    let o = pmp(&["key", "public", "--dir", d.s(), "--label", label]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let m = lines[0].strip_prefix("modulus=").expect("modulus line");
    let e = lines[1].strip_prefix("exponent=").expect("exponent line");
    assert_eq!(m, m.to_uppercase(), "uppercase hex");
    (hex::decode(m).unwrap(), e.to_string())
}

#[test]
fn rsa_keys_are_generated_shown_and_listed() {
    let d = store("gen");
    let o = generate_rsa(&d, "ISS-RSA", "1024", "3");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printed = stdout(&o).trim().to_string();
    let (modulus, e) = public(&d, "ISS-RSA");
    assert_eq!(modulus.len(), 128);
    assert!(modulus[0] & 0x80 != 0);
    assert_eq!(e, "03");
    // The fingerprint printed is the SHA-1 of the modulus (computed here with the sha1
    // crate from the modulus `key public` printed).
    assert_eq!(printed, hex::encode_upper(Sha1::digest(&modulus)));

    let o = generate_rsa(&d, "ISS-F4", "1032", "65537");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (modulus, e) = public(&d, "ISS-F4");
    assert_eq!((modulus.len(), e.as_str()), (129, "010001"));

    let o = pmp(&["key", "list", "--dir", d.s()]);
    let out = stdout(&o);
    assert!(
        out.contains("ISS-RSA usage=S0 algorithm=RSA bits=1024 exponent=3 mode=S sha1="),
        "{out}"
    );
    assert!(out.contains("ISS-F4 usage=S0 algorithm=RSA bits=1032 exponent=65537"));
    let o = pmp(&["--json", "key", "list", "--dir", d.s()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rsa_keys"][1]["label"], "ISS-RSA");
    assert_eq!(v["rsa_keys"][1]["sha1"], printed);
    assert_eq!(v["keys"].as_array().unwrap().len(), 0);
    let o = pmp(&[
        "--json",
        "key",
        "public",
        "--dir",
        d.s(),
        "--label",
        "ISS-RSA",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["exponent"], "03");
    assert_eq!(v["bits"], 1024);

    // Deleting by label works for an RSA key.
    let o = pmp(&["key", "delete", "--dir", d.s(), "--label", "ISS-F4"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = pmp(&["key", "public", "--dir", d.s(), "--label", "ISS-F4"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("ISS-RSA"),
        "names what is there: {}",
        stderr(&o)
    );
}

#[test]
fn bad_rsa_arguments_are_refused_with_their_flag() {
    let d = store("bad");
    for (bits, e, code, flag) in [
        ("1000", "3", 1, "--bits"),
        ("1028", "3", 1, "--bits"),
        ("2048", "65537", 1, "--bits"),
        ("1024", "17", 2, "--exponent"),
    ] {
        let o = generate_rsa(&d, "X", bits, e);
        assert_eq!(o.status.code(), Some(code), "{bits} {e}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
    }
    let o = pmp(&[
        "key",
        "generate",
        "--dir",
        d.s(),
        "--label",
        "X",
        "--algorithm",
        "rsa",
        "--bits",
        "1024",
        "--usage",
        "S0",
    ]);
    assert_eq!(o.status.code(), Some(2), "no --exponent: {}", stderr(&o));
    let o = pmp(&[
        "key",
        "generate",
        "--dir",
        d.s(),
        "--label",
        "X",
        "--algorithm",
        "rsa",
        "--bits",
        "1024",
        "--exponent",
        "3",
        "--usage",
        "D0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--usage"), "{}", stderr(&o));
    // `key public` of a symmetric key's label.
    let o = pmp(&[
        "key",
        "generate",
        "--dir",
        d.s(),
        "--label",
        "DK",
        "--algorithm",
        "aes",
        "--bits",
        "128",
        "--usage",
        "D0",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = pmp(&["key", "public", "--dir", d.s(), "--label", "DK"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no RSA key"), "{}", stderr(&o));
}

#[test]
fn an_r_key_block_imports_and_its_public_half_matches() {
    use pmp_core::keyblock::{
        self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, Version,
    };
    use pmp_core::rsa::{RsaExponent, RsaPrivateKey};
    use pmp_core::{Algorithm, SecretKey};
    let d = store("import");
    let c1 = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
    let c2 = "0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F1";
    let o = pmp(&[
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
    let key = RsaPrivateKey::generate(1024, RsaExponent::F4).unwrap();
    let header = Header::new(
        Version::D,
        KeyUsage::S0,
        KeyAlgorithm::Rsa,
        ModeOfUse::S,
        Exportability::N,
    );
    let der = key.to_pkcs1_der().unwrap();
    let block = keyblock::wrap_asymmetric(&kbpk, &header, &der, None).unwrap();
    let o = pmp(&[
        "key",
        "import",
        "--dir",
        d.s(),
        "--label",
        "ISS-IMP",
        "--kek",
        "ZMK",
        "--block",
        &block,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (modulus, e) = public(&d, "ISS-IMP");
    assert_eq!(modulus, key.public_key().modulus());
    assert_eq!(e, "010001");
    // A changed block: rejected, naming the block and the KEK, never key material.
    let mut bad = block.clone().into_bytes();
    let i = bad.len() - 40;
    bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    let o = pmp(&[
        "key",
        "import",
        "--dir",
        d.s(),
        "--label",
        "ISS-BAD",
        "--kek",
        "ZMK",
        "--block",
        &bad,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not verify under the KEK ZMK"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_icc_key_pool_fills_and_reports_its_level() {
    let d = store("pool");
    let o = pmp(&["icc-keys", "status", "--dir", d.s()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "the ICC key pool is empty");
    let o = pmp(&[
        "icc-keys",
        "generate",
        "--dir",
        d.s(),
        "--bits",
        "1024",
        "--exponent",
        "3",
        "--count",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "bits=1024 exponent=3 available=3");
    let o = pmp(&[
        "--json",
        "icc-keys",
        "generate",
        "--dir",
        d.s(),
        "--bits",
        "1024",
        "--exponent",
        "65537",
        "--count",
        "1",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["available"].as_u64(), v["added"].as_u64()),
        (Some(1), Some(1))
    );
    let o = pmp(&["icc-keys", "status", "--dir", d.s()]);
    assert_eq!(
        stdout(&o),
        "bits=1024 exponent=3 available=3\nbits=1024 exponent=65537 available=1\n"
    );
    let o = pmp(&[
        "icc-keys",
        "generate",
        "--dir",
        d.s(),
        "--bits",
        "1020",
        "--exponent",
        "3",
        "--count",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--bits"), "{}", stderr(&o));
}
