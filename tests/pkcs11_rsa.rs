//! Issuer RSA key pairs on a throw-away SoftHSMv2 token that this test creates itself
//! (as `tests/pkcs11.rs` does, in its own directory). What the token holds is read back
//! through python-pkcs11 (`scripts/pkcs11_attributes.py`), and signatures are opened with
//! Python's own integers (`pow(s, e, n)`), not through pmp-core.
//!
//! Needs SoftHSMv2 (`apt-get install softhsm2`) and a python with python-pkcs11
//! (`PMP_PKCS11_PYTHON`; `.ci/run` makes one).
#![cfg(feature = "pkcs11")]

#[path = "common/softhsm.rs"]
mod softhsm;

use std::process::Command;
use std::sync::OnceLock;

use softhsm::{PIN, Row, Setup, assert_flags, python};

use pmp_core::hsm::rsa::{IccRsaRequest, RsaKeyInfo, RsaKeySpec};
use pmp_core::hsm::{Capability, CipherSpec, Hsm, KeyOrigin, KeySpec, Pkcs11Config, Pkcs11Hsm};
use pmp_core::keyblock::{self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use pmp_core::rsa::{RsaExponent, RsaPrivateKey};
use pmp_core::{Algorithm, Error, Padding, SecretKey};

const TOKEN: &str = "pmp-rsa";
const LOGOUT_TOKEN: &str = "pmp-rsa-logout";
/// Creates the tokens once per test process, before the module is initialised (SoftHSMv2
/// reads `SOFTHSM2_CONF` in `C_Initialize`); every test calls this first.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    // A second token for the test that logs out (the login belongs to the process and the
    // token: it would log the other tests out too).
    SETUP.get_or_init(|| softhsm::create_tokens("pkcs11-rsa-token", &[TOKEN, LOGOUT_TOKEN]))
}

fn open_token(token: &str, fallback: bool) -> Pkcs11Hsm {
    let s = setup();
    Pkcs11Hsm::open(&Pkcs11Config::new(&s.module, token, PIN).with_host_key_fallback(fallback))
        .expect("open the token")
}

fn open() -> Pkcs11Hsm {
    open_token(TOKEN, false)
}

fn label(name: &str) -> String {
    let mut r = [0u8; 3];
    pmp_core::fill_random(&mut r).expect("rng");
    format!("{name}{}", hex::encode(r))
}

fn spec(label: &str, bits: u32, exponent: RsaExponent) -> RsaKeySpec {
    RsaKeySpec {
        label: label.to_string(),
        bits,
        exponent,
        usage: KeyUsage::S0,
    }
}

/// Every key object on `token` as python-pkcs11 reads it.
fn objects_seen_by_python_pkcs11(token: &str) -> Vec<Row> {
    softhsm::objects_seen_by_python_pkcs11(setup(), token)
}

/// The objects of class `class` labelled `label`.
fn rows_of<'a>(rows: &'a [Row], class: &str, label: &str) -> Vec<&'a Row> {
    rows.iter()
        .filter(|r| {
            r.get("class").map(String::as_str) == Some(class)
                && r.get("label").map(String::as_str) == Some(label)
        })
        .collect()
}

fn one_of<'a>(rows: &'a [Row], class: &str, label: &str) -> &'a Row {
    match rows_of(rows, class, label).as_slice() {
        [r] => r,
        other => panic!(
            "{} {class} objects labelled '{label}': {rows:?}",
            other.len()
        ),
    }
}

/// `signature^e mod n` computed by Python's own integers, as `len(n)` bytes in hex.
fn recover_in_python(modulus_hex: &str, exponent_hex: &str, signature: &[u8]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(
            "import sys\n\
             n, e, s = (int(x, 16) for x in sys.argv[1:4])\n\
             print(pow(s, e, n).to_bytes(len(sys.argv[1]) // 2, 'big').hex().upper())",
        )
        .args([modulus_hex, exponent_hex, &hex::encode_upper(signature)])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A message in the EMV recovery format for an `n`-byte modulus: `6A`, format `04`, random
/// body, `BC`.
fn recovery_message(n: usize) -> Vec<u8> {
    let mut m = vec![0u8; n];
    pmp_core::fill_random(&mut m).expect("rng");
    m[0] = 0x6A;
    m[1] = 0x04;
    m[n - 1] = 0xBC;
    m
}

/// The key pair's halves as python-pkcs11 reads them: one private and one public object
/// with the label and tag, protected as docs/pkcs11.md says, and the public numbers
/// `rsa_key_info` reports.
fn check_on_token(rows: &[Row], info: &RsaKeyInfo) {
    let l = &info.spec.label;
    let e_hex = match info.spec.exponent {
        RsaExponent::Three => "03",
        RsaExponent::F4 => "010001",
    };
    let id = format!("pmp1:rsa:S0:S:{}:{e_hex}", info.spec.bits);
    let private = one_of(rows, "private", l);
    let public = one_of(rows, "public", l);
    assert_eq!(private["id"], id);
    assert_eq!(public["id"], id);
    assert_flags(
        private,
        &[
            ("token", true),
            ("private", true),
            ("sensitive", true),
            ("always_sensitive", true),
            ("extractable", false),
            ("never_extractable", true),
            ("modifiable", false),
            ("local", true),
            ("sign", true),
            ("sign_recover", false),
            ("decrypt", false),
            ("unwrap", false),
            ("derive", false),
        ],
    );
    assert_flags(
        public,
        &[
            ("token", true),
            ("private", true),
            ("modifiable", false),
            ("local", true),
            ("verify", true),
            ("verify_recover", false),
            ("encrypt", false),
            ("wrap", false),
            ("derive", false),
        ],
    );
    // The public numbers as the token holds them equal what pmp-core reports.
    let modulus = hex::encode_upper(info.public.modulus());
    assert_eq!(public["modulus"], modulus, "modulus of '{l}'");
    assert_eq!(
        private["modulus"], modulus,
        "modulus in the private key '{l}'"
    );
    let token_e = hex::decode(&public["public_exponent"]).expect("hex");
    let start = token_e
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(token_e.len());
    assert_eq!(hex::encode_upper(&token_e[start..]), e_hex.to_uppercase());
    // Exactly the asked number of bits: the top bit of the top byte set.
    assert_eq!(
        modulus.len() * 4,
        info.spec.bits as usize,
        "length of '{l}'"
    );
    assert!(info.public.modulus()[0] >= 0x80, "top bit of '{l}'");
}

/// The EMV lengths and both exponents: 1024 (the shortest), 1032 (not a multiple of 16 or
/// 64: SoftHSMv2 2.6.1 on OpenSSL 3 generates it exactly), 1408, 1984 (the longest).
#[test]
fn pairs_generated_on_the_token_are_sensitive_and_sign_only() {
    let hsm = open();
    let mut made = Vec::new();
    for (bits, e) in [
        (1024, RsaExponent::Three),
        (1032, RsaExponent::Three),
        (1408, RsaExponent::F4),
        (1984, RsaExponent::F4),
    ] {
        let info = hsm
            .generate_rsa_key(&spec(&label(&format!("gen{bits}-")), bits, e))
            .unwrap_or_else(|err| panic!("{bits} bits, e = {e}: {err}"));
        assert_eq!(info.spec.bits, bits);
        assert_eq!(info.spec.exponent, e);
        assert_eq!(info.spec.usage, KeyUsage::S0);
        assert_eq!(hsm.rsa_key_info(&info.handle).expect("info"), info);
        assert_eq!(
            hsm.key_origin(&info.handle).expect("origin"),
            KeyOrigin::Generated
        );
        made.push(info);
    }
    let rows = objects_seen_by_python_pkcs11(TOKEN);
    for info in &made {
        check_on_token(&rows, info);
    }
    for info in made {
        hsm.delete_key(&info.handle).expect("delete");
    }
}

/// A signature made on the token opens, with the public key read by python-pkcs11 and
/// Python's integers, to the message; messages not in the recovery format are refused
/// although raw RSA on the token would sign them.
#[test]
fn recovery_signatures_open_with_the_token_public_key() {
    let hsm = open();
    for (bits, e) in [(1024, RsaExponent::Three), (1408, RsaExponent::F4)] {
        let info = hsm
            .generate_rsa_key(&spec(&label("sig-"), bits, e))
            .expect("generate");
        let n = (bits / 8) as usize;
        let rows = objects_seen_by_python_pkcs11(TOKEN);
        let public = one_of(&rows, "public", &info.spec.label);
        for _ in 0..3 {
            let m = recovery_message(n);
            let s = hsm.sign_emv_recovery(&info.handle, &m).expect("sign");
            assert_eq!(s.len(), n);
            assert_eq!(
                recover_in_python(&public["modulus"], &public["public_exponent"], &s),
                hex::encode_upper(&m),
                "{bits} bits, e = {e}"
            );
        }
        // Formats the token would sign but the key must not (no raw RSA oracle).
        let good = recovery_message(n);
        let mut bad_header = good.clone();
        bad_header[0] = 0x6B;
        let mut bad_trailer = good.clone();
        bad_trailer[n - 1] = 0xBD;
        let mut short = good[..n - 1].to_vec();
        short[n - 2] = 0xBC;
        let mut long = good.clone();
        long.insert(1, 0x00);
        let mut format = good.clone();
        format[1] = 0x05;
        for (what, m) in [
            ("format", format),
            ("header", bad_header),
            ("trailer", bad_trailer),
            ("short", short),
            ("long", long),
            ("empty", Vec::new()),
        ] {
            match hsm.sign_emv_recovery(&info.handle, &m) {
                Err(Error::Invalid { .. }) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
        hsm.delete_key(&info.handle).expect("delete");
    }
}

/// A pair is found by label by another instance, listed among the RSA keys (not among the
/// symmetric ones), holds its label against both kinds of key, and is deleted whole.
#[test]
fn pairs_are_found_listed_and_deleted() {
    let hsm = open();
    let l = label("find-");
    let info = hsm
        .generate_rsa_key(&spec(&l, 1024, RsaExponent::F4))
        .expect("generate");

    let other = open();
    let h = other.find_key(&l).expect("found by another instance");
    assert_eq!(other.rsa_key_info(&h).expect("info").public, info.public);
    assert_eq!(other.rsa_key_info(&h).expect("info").spec, info.spec);
    assert!(
        other
            .list_rsa_keys()
            .expect("list")
            .iter()
            .any(|k| k.spec.label == l && k.public == info.public)
    );
    assert!(
        !other
            .list_keys()
            .expect("list")
            .iter()
            .any(|k| k.spec.label == l)
    );
    assert!(matches!(
        other.generate_rsa_key(&info.spec),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        other.generate_key(&KeySpec::new(
            &l,
            Algorithm::Aes,
            16,
            KeyUsage::D0,
            ModeOfUse::B
        )),
        Err(Error::AlreadyExists(_))
    ));
    // An RSA handle is no symmetric key, and the reverse.
    assert!(matches!(other.key_info(&h), Err(Error::Policy(_))));
    let mut out = [0u8; 32];
    assert!(matches!(
        other.encrypt(&CipherSpec::ecb(&h, Padding::Pkcs7), b"x", &mut out),
        Err(Error::Policy(_))
    ));
    let dk = other
        .generate_key(&KeySpec::new(
            &label("dk-"),
            Algorithm::Aes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .expect("DK");
    assert!(matches!(
        other.rsa_key_info(&dk.handle),
        Err(Error::Policy(_))
    ));
    assert!(matches!(
        other.sign_emv_recovery(&dk.handle, &recovery_message(128)),
        Err(Error::Policy(_))
    ));
    other.delete_key(&dk.handle).expect("delete DK");

    other.delete_key(&h).expect("delete");
    let rows = objects_seen_by_python_pkcs11(TOKEN);
    assert!(
        rows_of(&rows, "private", &l).is_empty(),
        "private half left"
    );
    assert!(rows_of(&rows, "public", &l).is_empty(), "public half left");
    assert!(matches!(other.find_key(&l), Err(Error::NotFound(_))));
    // The first instance still holds a handle: the pair is gone from the token.
    assert!(matches!(
        hsm.delete_key(&info.handle),
        Err(Error::NotFound(_))
    ));
}

/// Usage, length and exponent are checked before the token is asked.
#[test]
fn specs_outside_emv_are_refused() {
    let hsm = open();
    let l = label("bad-");
    let mut s = spec(&l, 1024, RsaExponent::Three);
    s.usage = KeyUsage::D0;
    assert!(matches!(hsm.generate_rsa_key(&s), Err(Error::Policy(_))));
    for bits in [1016, 1028, 1992, 2048] {
        assert!(
            matches!(
                hsm.generate_rsa_key(&spec(&l, bits, RsaExponent::Three)),
                Err(Error::Invalid { .. })
            ),
            "{bits} bits"
        );
    }
    assert!(matches!(
        hsm.generate_rsa_key(&spec("bad label", 1024, RsaExponent::Three)),
        Err(Error::Invalid { .. })
    ));
    let rows = objects_seen_by_python_pkcs11(TOKEN);
    assert!(rows_of(&rows, "private", &l).is_empty());
    assert!(rows_of(&rows, "public", &l).is_empty());
}

/// RSA key pairs are offered; ICC key pairs, the pool and (without the operator's host key
/// fallback) RSA key-block import are not, each refused naming what is missing.
#[test]
fn capabilities_offer_issuer_keys_only() {
    let hsm = open();
    let caps = hsm.capabilities();
    assert!(caps.supports(Capability::RsaKeys));
    assert!(!caps.supports(Capability::IccRsaKeys));
    assert!(!caps.supports(Capability::IccKeyPool));
    assert!(!caps.supports(Capability::RsaKeyBlockImport));
    let ktk = hsm
        .generate_key(
            &KeySpec::new(
                &label("ktk-"),
                Algorithm::Aes,
                32,
                KeyUsage::K0,
                ModeOfUse::E,
            )
            .exportable(),
        )
        .expect("KTK");
    let req = IccRsaRequest {
        bits: 1024,
        exponent: RsaExponent::Three,
        ktk: &ktk.handle,
        padding: Padding::Iso9797M2,
        use_pool: false,
    };
    assert!(matches!(
        hsm.generate_icc_rsa_key(&req),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        hsm.fill_icc_key_pool(1024, RsaExponent::Three, 1),
        Err(Error::Unsupported(_))
    ));
    assert!(hsm.icc_key_pool().expect("pool").is_empty());
    match hsm.import_rsa_key_block(&label("imp-"), &ktk.handle, "D0000S0RS00N0000") {
        Err(Error::Unsupported(m)) => assert!(m.contains("RSA key blocks"), "{m}"),
        other => panic!("{other:?}"),
    }
    hsm.delete_key(&ktk.handle).expect("delete");
}

/// A lost login (device reset, idle timeout) is restored: the pair's handle is looked up
/// again and signs, reports and deletes as before. On a token of its own (the login belongs
/// to the process and the token).
#[test]
fn a_lost_login_is_restored_for_rsa_keys() {
    let hsm = open_token(LOGOUT_TOKEN, false);
    let info = hsm
        .generate_rsa_key(&spec(&label("rel-"), 1024, RsaExponent::Three))
        .expect("generate");
    for _ in 0..2 {
        hsm.logout().expect("logout");
        let m = recovery_message(128);
        let s = hsm
            .sign_emv_recovery(&info.handle, &m)
            .expect("sign after the login was lost");
        assert_eq!(info.public.public_op(&s).expect("open"), m);
    }
    hsm.logout().expect("logout");
    assert_eq!(hsm.rsa_key_info(&info.handle).expect("info"), info);
    hsm.logout().expect("logout");
    // Deleting searches the token by label: without the login that search finds nothing,
    // which must not pass for "already gone".
    hsm.delete_key(&info.handle)
        .expect("delete after the login was lost");
    let dk = hsm
        .generate_key(&KeySpec::new(
            &label("rel-dk-"),
            Algorithm::Aes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .expect("DK");
    hsm.logout().expect("logout");
    hsm.delete_key(&dk.handle)
        .expect("delete a symmetric key after the login was lost");
    let rows = objects_seen_by_python_pkcs11(LOGOUT_TOKEN);
    for class in ["private", "public"] {
        assert!(rows_of(&rows, class, &info.spec.label).is_empty());
    }
    assert!(rows_of(&rows, "secret", &dk.spec.label).is_empty());
}

/// Forms a KEK on the token from two components whose XOR is `kek` (so that it has its
/// TR-31 binding keys there).
fn form_kek(hsm: &Pkcs11Hsm, label: &str, kek: &SecretKey) -> pmp_core::hsm::KeyHandle {
    let c1 = SecretKey::generate(kek.algorithm(), kek.len()).expect("c1");
    let c2: Vec<u8> = c1
        .expose_secret()
        .iter()
        .zip(kek.expose_secret())
        .map(|(a, b)| a ^ b)
        .collect();
    let spec = KeySpec::new(
        label,
        kek.algorithm(),
        kek.len(),
        KeyUsage::K0,
        ModeOfUse::D,
    );
    hsm.form_key_from_components(&spec, &[c1.expose_secret(), &c2], &[], Some(&kek.kcv()))
        .expect("form the KEK")
        .handle
}

/// With the operator's host key fallback an R key block (PKCS#1 DER payload) under a KEK
/// on the token becomes a token key pair that signs as the key in the block does; the
/// token says it was not generated there. A tampered block is the opaque error and leaves
/// nothing on the token.
#[test]
fn r_key_blocks_import_with_the_host_key_fallback() {
    let hsm = open_token(TOKEN, true);
    assert!(hsm.capabilities().supports(Capability::RsaKeyBlockImport));
    for (version, kek_alg, kek_len, bits, e) in [
        (Version::D, Algorithm::Aes, 32, 1152, RsaExponent::Three),
        (Version::B, Algorithm::Tdes, 24, 1024, RsaExponent::F4),
    ] {
        let kbpk = SecretKey::generate(kek_alg, kek_len).expect("KBPK");
        let kek = form_kek(&hsm, &label("rkek-"), &kbpk);
        let key = RsaPrivateKey::generate(bits, e).expect("host key");
        let der = key.to_pkcs1_der().expect("DER");
        let header = Header::new(
            version,
            KeyUsage::S0,
            KeyAlgorithm::Rsa,
            ModeOfUse::S,
            Exportability::N,
        );
        let block = keyblock::wrap_asymmetric(&kbpk, &header, &der, None).expect("wrap");

        // Tampered: the opaque error, nothing stored.
        let bad_label = label("rbad-");
        let mut bad = block.clone().into_bytes();
        let i = bad.len() - 40;
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        match hsm.import_rsa_key_block(&bad_label, &kek, std::str::from_utf8(&bad).unwrap()) {
            Err(Error::Crypto) => {}
            other => panic!("tampered {version:?} block: {other:?}"),
        }

        let l = label("rimp-");
        let info = hsm.import_rsa_key_block(&l, &kek, &block).expect("import");
        assert_eq!(info.public, key.public_key());
        assert_eq!(info.spec.bits, bits);
        assert_eq!(info.spec.exponent, e);
        assert_eq!(
            hsm.key_origin(&info.handle).expect("origin"),
            KeyOrigin::Unknown
        );

        let rows = objects_seen_by_python_pkcs11(TOKEN);
        assert!(rows_of(&rows, "private", &bad_label).is_empty());
        assert!(rows_of(&rows, "public", &bad_label).is_empty());
        let private = one_of(&rows, "private", &l);
        assert_flags(
            private,
            &[
                ("sensitive", true),
                ("extractable", false),
                ("modifiable", false),
                ("local", false),
                ("always_sensitive", false),
                ("never_extractable", false),
                ("sign", true),
                ("sign_recover", false),
                ("decrypt", false),
                ("unwrap", false),
                ("derive", false),
            ],
        );
        let public = one_of(&rows, "public", &l);
        assert_eq!(
            public["modulus"],
            hex::encode_upper(key.public_key().modulus())
        );
        let m = recovery_message(info.public.len());
        let s = hsm.sign_emv_recovery(&info.handle, &m).expect("sign");
        assert_eq!(
            recover_in_python(&public["modulus"], &public["public_exponent"], &s),
            hex::encode_upper(&m)
        );
        // The same private operation as the key in the block (RSA signing is deterministic).
        assert_eq!(key.private_op(&m).expect("host signature"), s);

        // The label is now taken.
        assert!(matches!(
            hsm.import_rsa_key_block(&l, &kek, &block),
            Err(Error::AlreadyExists(_))
        ));
        hsm.delete_key(&info.handle).expect("delete");
        hsm.delete_key(&kek).expect("delete KEK");
    }
}

/// A public key object someone else put on the token under a pair's label and tag (another
/// modulus) is not taken for the pair's public half: a fresh instance still finds the pair,
/// deleting it leaves that object alone, and the label stays taken while it is there.
#[test]
fn a_stray_public_object_is_not_taken_for_the_pair() {
    let hsm = open();
    let l = label("stray-");
    let info = hsm
        .generate_rsa_key(&spec(&l, 1024, RsaExponent::Three))
        .expect("generate");
    let s = setup();
    // An odd 1024-bit number with the top bit set, from Python's own random source.
    let plant = Command::new(python())
        .env("SOFTHSM2_CONF", &s.conf)
        .arg("-c")
        .arg(
            "import os, sys, secrets\n\
             import pkcs11\n\
             from pkcs11 import Attribute, ObjectClass, KeyType\n\
             n = secrets.randbits(1024) | (1 << 1023) | 1\n\
             lib = pkcs11.lib(sys.argv[1])\n\
             token = lib.get_token(token_label=sys.argv[2])\n\
             with token.open(user_pin=sys.argv[3], rw=True) as session:\n\
             \x20   session.create_object({\n\
             \x20       Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,\n\
             \x20       Attribute.TOKEN: True, Attribute.PRIVATE: True,\n\
             \x20       Attribute.LABEL: sys.argv[4], Attribute.ID: sys.argv[5].encode(),\n\
             \x20       Attribute.MODULUS: n.to_bytes(128, 'big'), Attribute.PUBLIC_EXPONENT: b'\\x03'})\n",
        )
        .arg(&s.module)
        .args([TOKEN, PIN, &l, "pmp1:rsa:S0:S:1024:03"])
        .output()
        .expect("python3");
    assert!(
        plant.status.success(),
        "{}",
        String::from_utf8_lossy(&plant.stderr)
    );
    let rows = objects_seen_by_python_pkcs11(TOKEN);
    assert_eq!(rows_of(&rows, "public", &l).len(), 2);

    let other = open();
    let h = other.find_key(&l).expect("the pair is still found");
    assert_eq!(other.rsa_key_info(&h).expect("info").public, info.public);
    let m = recovery_message(128);
    let sig = other.sign_emv_recovery(&h, &m).expect("sign");
    assert_eq!(info.public.public_op(&sig).expect("open"), m);
    other.delete_key(&h).expect("delete");
    let rows = objects_seen_by_python_pkcs11(TOKEN);
    assert!(rows_of(&rows, "private", &l).is_empty());
    let left = rows_of(&rows, "public", &l);
    assert_eq!(left.len(), 1, "the stray object stays");
    assert_ne!(left[0]["modulus"], hex::encode_upper(info.public.modulus()));
    assert!(matches!(other.find_key(&l), Err(Error::NotFound(_))));
    assert!(matches!(
        other.generate_rsa_key(&spec(&l, 1024, RsaExponent::Three)),
        Err(Error::AlreadyExists(_))
    ));
}

/// Threads sign with two pairs at once (sessions from the pool, no key management lock).
#[test]
fn threads_sign_at_once() {
    let hsm = open();
    let keys: Vec<RsaKeyInfo> = [(1024, RsaExponent::Three), (1152, RsaExponent::F4)]
        .into_iter()
        .map(|(bits, e)| {
            hsm.generate_rsa_key(&spec(&label("thr-"), bits, e))
                .expect("generate")
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (hsm, key) = (&hsm, &keys[t % 2]);
            scope.spawn(move || {
                for _ in 0..10 {
                    let m = recovery_message(key.public.len());
                    let s = hsm.sign_emv_recovery(&key.handle, &m).expect("sign");
                    assert_eq!(key.public.public_op(&s).expect("open"), m);
                }
            });
        }
    });
    for k in keys {
        hsm.delete_key(&k.handle).expect("delete");
    }
}
