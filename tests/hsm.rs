//! The software HSM: the conformance suite, key-store and audit-log tampering, LMK
//! handling, concurrency, and the key hierarchy flow.

use std::path::PathBuf;
use std::sync::Arc;

use pmp_core::hierarchy;
use pmp_core::hsm::{CipherSpec, Hsm, KeySpec, LmkComponent, LmkSource, SoftHsm, conformance};
use pmp_core::keyblock::{self, KeyUsage, ModeOfUse, UnwrapPolicy, Version};
use pmp_core::{Algorithm, Error, Kcv, Padding, SecretKey};

/// A fresh directory under the target dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!("pmp-test-{name}-{}", hex::encode(r)));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn components() -> Vec<LmkComponent> {
    // Two AES-256 LMK components (test values, not secret).
    let c1 =
        hex::decode("00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF").unwrap();
    let c2 =
        hex::decode("0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F1").unwrap();
    let k1 = SecretKey::new(Algorithm::Aes, &c1).unwrap().kcv();
    vec![
        LmkComponent::new(&c1, Some(k1)),
        LmkComponent::new(&c2, None),
    ]
}

#[test]
fn soft_hsm_passes_the_conformance_suite() {
    let dir = TempDir::new("conf");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let report = conformance::run_all(&hsm);
    // The software HSM offers everything the suite checks: nothing may be left out.
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.backend(), "softhsm");
    for check in [
        "known-keys",
        "data.known-answer/AES-32",
        "kcv.cross-check/TDES",
        "translate.known-answer",
        "export-import/B",
        "pin.round-trip/ISO-4",
        "mac.known-answer/Retail",
        "policy-matrix",
        "policy-matrix.success-with-valid-input",
        "rsa.keys",
        "rsa.key-block-import",
        "rsa.icc-keys",
        "rsa.icc-keys.known-answer",
        "rsa.pool",
    ] {
        assert!(report.has_run(check), "{check} did not run: {report}");
    }
    assert!(hsm.capabilities().is_test());
    hsm.verify_audit().unwrap();
}

#[test]
fn keys_persist_and_reopen_with_the_same_kcvs() {
    let dir = TempDir::new("persist");
    let kcv = {
        let hsm = SoftHsm::init(&dir.0, LmkSource::Components(components())).unwrap();
        assert!(!hsm.is_test());
        hsm.require_production().unwrap();
        hsm.generate_key(&KeySpec::new(
            "DK",
            Algorithm::Aes,
            32,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .unwrap()
        .kcv
    };
    // Production store: the LMK is not on disk.
    assert!(!dir.0.join("lmk.test").exists());
    let shown = format!("{:?}", components());
    assert!(
        !shown.contains("00112233") && !shown.contains("0F1E2D3C"),
        "{shown}"
    );
    let hsm = SoftHsm::open(&dir.0, LmkSource::Components(components())).unwrap();
    let h = hsm.find_key("DK").unwrap();
    assert_eq!(hsm.key_info(&h).unwrap().kcv, kcv);
    drop(hsm);
    // Wrong components: refused by the recorded LMK KCV.
    let mut c2 =
        hex::decode("0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F1").unwrap();
    c2[0] ^= 0x02;
    let mut wrong = components();
    wrong[1] = LmkComponent::new(&c2, None);
    assert!(matches!(
        SoftHsm::open(&dir.0, LmkSource::Components(wrong)),
        Err(Error::KcvMismatch { .. })
    ));
    // A TEST LMK is refused for a production store, and vice versa.
    assert!(SoftHsm::open(&dir.0, LmkSource::Test).is_err());
    let tdir = TempDir::new("testlmk");
    let t = SoftHsm::create_with_test_lmk(&tdir.0).unwrap();
    assert!(matches!(t.require_production(), Err(Error::Policy(_))));
    // Re-initialising an existing store is refused.
    assert!(SoftHsm::init(&dir.0, LmkSource::Test).is_err());
}

#[test]
fn a_changed_key_file_is_detected() {
    let dir = TempDir::new("tamper");
    {
        let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
        hsm.generate_key(&KeySpec::new(
            "A",
            Algorithm::Aes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .unwrap();
        hsm.generate_key(&KeySpec::new(
            "B",
            Algorithm::Aes,
            16,
            KeyUsage::P0,
            ModeOfUse::B,
        ))
        .unwrap();
    }
    let a = dir.0.join("keys/A.kb");
    let b = dir.0.join("keys/B.kb");
    let original = std::fs::read_to_string(&a).unwrap();
    // 1. Flip the mode of use in the header (B -> D): the MAC no longer verifies.
    let mut t = original.clone().into_bytes();
    t[8] = if t[8] == b'B' { b'D' } else { b'B' };
    std::fs::write(&a, &t).unwrap();
    let e = SoftHsm::open(&dir.0, LmkSource::Test).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
    assert!(
        e.to_string().contains("A.kb"),
        "the error names the file: {e}"
    );
    // 2. Swap two files (rename B's block to A): the bound label differs.
    std::fs::write(&a, std::fs::read(&b).unwrap()).unwrap();
    let e = SoftHsm::open(&dir.0, LmkSource::Test).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
    // Restored: opens again.
    std::fs::write(&a, original).unwrap();
    SoftHsm::open(&dir.0, LmkSource::Test).unwrap();
}

#[test]
fn audit_log_detects_changed_removed_and_reordered_entries() {
    let dir = TempDir::new("audit");
    {
        let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
        for l in ["A", "B", "C"] {
            hsm.generate_key(&KeySpec::new(
                l,
                Algorithm::Aes,
                16,
                KeyUsage::D0,
                ModeOfUse::B,
            ))
            .unwrap();
        }
        let h = hsm.find_key("A").unwrap();
        let mut out = [0u8; 32];
        hsm.encrypt(&CipherSpec::ecb(&h, Padding::Pkcs7), b"x", &mut out)
            .unwrap();
    }
    let log = dir.0.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&"00".repeat(16)), "no zero chain");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() >= 5,
        "init, 3 generates, a usage summary: {text}"
    );
    assert!(text.contains("op=usage what=encrypt key=A"));
    let v = pmp_core::hsm::verify_audit_log(&dir.0, LmkSource::Test).unwrap();
    assert_eq!(v.entries as usize, lines.len());

    let check = |lines: Vec<String>, expect_line: usize| {
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        let e = pmp_core::hsm::verify_audit_log(&dir.0, LmkSource::Test).unwrap_err();
        assert!(
            e.to_string().contains(&format!("line {expect_line}")),
            "{e}"
        );
    };
    let own: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    // Changed: one character of the text.
    let mut c = own.clone();
    c[2] = c[2].replace("key=B", "key=X");
    check(c, 3);
    // Removed.
    let mut r = own.clone();
    r.remove(1);
    check(r, 2);
    // Reordered.
    let mut o = own.clone();
    o.swap(1, 2);
    check(o, 2);
    // Restored.
    std::fs::write(&log, text).unwrap();
    pmp_core::hsm::verify_audit_log(&dir.0, LmkSource::Test).unwrap();
}

#[test]
fn audit_log_has_no_secrets() {
    let dir = TempDir::new("nosecret");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let c1 = hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap();
    let c2 = hex::decode("3B6F9C2A5D8E1F47A2C4E6F8091B3D5F").unwrap();
    hsm.form_key_from_components(
        &KeySpec::new("ZMK", Algorithm::Tdes, 16, KeyUsage::K0, ModeOfUse::B),
        &[&c1, &c2],
        &[],
        None,
    )
    .unwrap();
    drop(hsm);
    let log = std::fs::read_to_string(dir.0.join("audit.log")).unwrap();
    let lmk = std::fs::read_to_string(dir.0.join("lmk.test")).unwrap();
    for secret in [
        hex::encode_upper(&c1),
        hex::encode_upper(&c2),
        lmk.trim().to_string(),
    ] {
        assert!(
            !log.to_uppercase().contains(&secret[..16]),
            "secret found in the audit log"
        );
    }
    assert!(log.contains("op=form-from-components key=ZMK"));
}

#[test]
fn many_threads_translate_on_one_hsm() {
    let dir = TempDir::new("threads");
    let hsm = Arc::new(SoftHsm::create_with_test_lmk(&dir.0).unwrap());
    let a = key(&*hsm, "A", Algorithm::Tdes, 16, KeyUsage::D0, ModeOfUse::B);
    let b = key(&*hsm, "B", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B);
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let (hsm, a, b) = (hsm.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    let msg = format!("thread {t} field {i}");
                    let mut ct = [0u8; 64];
                    let n = hsm
                        .encrypt(
                            &CipherSpec::ecb(&a, Padding::Iso9797M2),
                            msg.as_bytes(),
                            &mut ct,
                        )
                        .unwrap();
                    let mut out = [0u8; 64];
                    let m = hsm
                        .translate(
                            &CipherSpec::ecb(&a, Padding::Iso9797M2),
                            &CipherSpec::ecb(&b, Padding::Iso9797M2),
                            &ct[..n],
                            &mut out,
                        )
                        .unwrap();
                    let mut pt = [0u8; 64];
                    let k = hsm
                        .decrypt(&CipherSpec::ecb(&b, Padding::Iso9797M2), &out[..m], &mut pt)
                        .unwrap();
                    assert_eq!(&pt[..k], msg.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    hsm.verify_audit().unwrap();
    let log = std::fs::read_to_string(dir.0.join("audit.log")).unwrap();
    assert!(
        log.contains("op=usage what=translate-from key=A kcv="),
        "{log}"
    );
    assert!(
        log.contains("count=1600"),
        "8 threads x 200 translations counted: {log}"
    );
}

/// The flow of `docs/workflow.md` and `docs/key-hierarchy.md`: issuer ZMK from components, TK_issuer imported, DKeps,
/// KTK/PTK/MTK issued under a production ZMK from known components — checked by unwrapping
/// the exported blocks with the known ZMK — and imported on the production side.
#[test]
fn key_hierarchy_flow() {
    let dir = TempDir::new("hier");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    // Issuer zone: a 2-key TDES ZMK from two components (the issuer's counterpart is TDES).
    let zi1 = hex::decode("89B07B35A1B3F47E89B07B35A1B3F47E").unwrap();
    let zi2 = hex::decode("F4CB6B3B8C2ACE8C1001D16A3DAD5B40").unwrap();
    let mut zmk_i_clear: Vec<u8> = zi1.iter().zip(&zi2).map(|(a, b)| a ^ b).collect();
    pmp_core::set_odd_parity(&mut zmk_i_clear);
    let zmk_i_clear = SecretKey::new(Algorithm::Tdes, &zmk_i_clear).unwrap();
    let zmk_i = hierarchy::zmk_ceremony(
        &hsm,
        "ZMK-ISSUER",
        hierarchy::Zone::Import,
        Algorithm::Tdes,
        &[&zi1, &zi2],
        &[],
        Some(&zmk_i_clear.kcv()),
    )
    .unwrap();
    // The issuer wraps its TK (D0) under the ZMK as a version B block.
    let tk = SecretKey::generate(Algorithm::Tdes, 16).unwrap();
    let header = keyblock::Header::new(
        Version::B,
        KeyUsage::D0,
        keyblock::KeyAlgorithm::Tdes,
        ModeOfUse::B,
        keyblock::Exportability::N,
    );
    let block = keyblock::wrap(&zmk_i_clear, &header, &tk, None).unwrap();
    let wrong = Kcv::from_hex("123456").unwrap();
    assert!(matches!(
        hierarchy::import_issuer_key(&hsm, "TK-ISSUER", &zmk_i.handle, &block, &wrong),
        Err(Error::KcvMismatch { .. })
    ));
    assert!(
        hsm.find_key("TK-ISSUER").is_err(),
        "a refused import leaves nothing"
    );
    let tk_info =
        hierarchy::import_issuer_key(&hsm, "TK-ISSUER", &zmk_i.handle, &block, &tk.kcv()).unwrap();
    assert_eq!(tk_info.spec.usage, KeyUsage::D0);
    // DKeps.
    let dkeps = hierarchy::generate_dkeps(&hsm, &["PAN", "TRACK2", "NAME"]).unwrap();
    assert!(
        dkeps
            .iter()
            .all(|k| k.spec.algorithm == Algorithm::Aes && k.spec.len == 32)
    );
    let dk = &dkeps[0].handle;
    assert!(
        hsm.export_key_block(dk, &zmk_i.handle).is_err(),
        "DKeps never leave"
    );
    // Production zone: AES-256 ZMK from three components.
    let zp: Vec<Vec<u8>> = (0..3)
        .map(|_| {
            SecretKey::generate(Algorithm::Aes, 32)
                .unwrap()
                .expose_secret()
                .to_vec()
        })
        .collect();
    let zp_clear: Vec<u8> = (0..32).map(|i| zp[0][i] ^ zp[1][i] ^ zp[2][i]).collect();
    let zp_clear = SecretKey::new(Algorithm::Aes, &zp_clear).unwrap();
    let zp_refs: Vec<&[u8]> = zp.iter().map(|c| c.as_slice()).collect();
    let kcvs: Vec<Option<Kcv>> = zp
        .iter()
        .map(|c| Some(SecretKey::new(Algorithm::Aes, c).unwrap().kcv()))
        .collect();
    let zmk_p = hierarchy::zmk_ceremony(
        &hsm,
        "ZMK-PROD",
        hierarchy::Zone::Export,
        Algorithm::Aes,
        &zp_refs,
        &kcvs,
        Some(&zp_clear.kcv()),
    )
    .unwrap();
    let tks =
        hierarchy::issue_transport_keys(&hsm, &zmk_p.handle, "LINE1", Algorithm::Aes, 32).unwrap();
    for (issued, usage) in [
        (&tks.ktk, KeyUsage::K0),
        (&tks.ptk, KeyUsage::P0),
        (&tks.mtk, KeyUsage::M6),
    ] {
        let (h, clear) =
            keyblock::unwrap(&zp_clear, &issued.block, &UnwrapPolicy::default()).unwrap();
        assert_eq!(h.version, Version::D);
        assert_eq!(h.usage, usage);
        assert_eq!(clear.kcv(), issued.info.kcv);
    }
    // Production side: a second HSM with the same ZMK-prod.
    let pdir = TempDir::new("prod");
    let prod = SoftHsm::create_with_test_lmk(&pdir.0).unwrap();
    let zmk_pp = hierarchy::zmk_ceremony(
        &prod,
        "ZMK-PROD",
        hierarchy::Zone::Import,
        Algorithm::Aes,
        &zp_refs,
        &kcvs,
        Some(&zp_clear.kcv()),
    )
    .unwrap();
    let bad = [
        (tks.ktk.block.as_str(), &tks.ktk.info.kcv),
        (tks.ptk.block.as_str(), &tks.mtk.info.kcv),
        (tks.mtk.block.as_str(), &tks.mtk.info.kcv),
    ];
    assert!(hierarchy::import_transport_keys(&prod, &zmk_pp.handle, "LINE1", bad).is_err());
    assert!(prod.find_key("LINE1-KTK").is_err(), "all or nothing");
    let got = hierarchy::import_transport_keys(
        &prod,
        &zmk_pp.handle,
        "LINE1",
        [
            (tks.ktk.block.as_str(), &tks.ktk.info.kcv),
            (tks.ptk.block.as_str(), &tks.ptk.info.kcv),
            (tks.mtk.block.as_str(), &tks.mtk.info.kcv),
        ],
    )
    .unwrap();
    assert_eq!(got[2].kcv, tks.mtk.info.kcv);
    // A MAC made at prep verifies at production.
    let data = b"record 1";
    let tag = hsm
        .generate_mac(
            &tks.mtk.info.handle,
            pmp_core::MacAlgorithm::CmacAes,
            Padding::None,
            data,
        )
        .unwrap();
    prod.verify_mac(
        &got[2].handle,
        pmp_core::MacAlgorithm::CmacAes,
        Padding::None,
        data,
        tag.as_bytes(),
    )
    .unwrap();
}

#[test]
fn one_instance_per_store() {
    let dir = TempDir::new("lock");
    let first = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let e = SoftHsm::open(&dir.0, LmkSource::Test).unwrap_err();
    assert!(matches!(e, Error::Policy(_)), "{e}");
    assert!(e.to_string().contains("open in another process"), "{e}");
    drop(first);
    SoftHsm::open(&dir.0, LmkSource::Test).unwrap();
}

#[test]
fn translate_failures_after_decryption_reveal_nothing() {
    let dir = TempDir::new("oracle");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let a = key(&hsm, "A", Algorithm::Aes, 16, KeyUsage::D0, ModeOfUse::B);
    let b = key(&hsm, "B", Algorithm::Aes, 16, KeyUsage::D0, ModeOfUse::B);
    // 5 bytes of plaintext under PKCS#7, translated to "no padding": the target cannot take
    // it, and the error must not say how long the plaintext was.
    let mut ct = [0u8; 16];
    hsm.encrypt(&CipherSpec::ecb(&a, Padding::Pkcs7), b"12345", &mut ct)
        .unwrap();
    let mut out = [0u8; 16];
    let e = hsm
        .translate(
            &CipherSpec::ecb(&a, Padding::Pkcs7),
            &CipherSpec::ecb(&b, Padding::None),
            &ct,
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(e, Error::Crypto), "{e}");
    // The output capacity is checked before decrypting, from the ciphertext length alone.
    let mut small = [0u8; 8];
    let e = hsm
        .translate(
            &CipherSpec::ecb(&a, Padding::Pkcs7),
            &CipherSpec::ecb(&b, Padding::Pkcs7),
            &ct,
            &mut small,
        )
        .unwrap_err();
    assert!(matches!(e, Error::BufferTooSmall { needed: 32, .. }), "{e}");
}

#[test]
fn a_k1_eq_k3_kek_is_two_key_strength() {
    let dir = TempDir::new("k1k3");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let two = SecretKey::generate(Algorithm::Tdes, 16).unwrap();
    let mut k = two.expose_secret().to_vec();
    k.extend_from_slice(&two.expose_secret()[..8]); // K1 K2 K1
    let c1 = SecretKey::generate(Algorithm::Tdes, 24).unwrap();
    let c2: Vec<u8> = c1
        .expose_secret()
        .iter()
        .zip(&k)
        .map(|(a, b)| a ^ b)
        .collect();
    let kek = hsm
        .form_key_from_components(
            &KeySpec::new("KEK", Algorithm::Tdes, 24, KeyUsage::K0, ModeOfUse::B),
            &[c1.expose_secret(), &c2],
            &[],
            None,
        )
        .unwrap()
        .handle;
    let three = hsm
        .generate_key(
            &KeySpec::new("K3", Algorithm::Tdes, 24, KeyUsage::D0, ModeOfUse::B).exportable(),
        )
        .unwrap()
        .handle;
    let e = hsm.export_key_block(&three, &kek).unwrap_err();
    assert!(
        matches!(e, Error::Policy(_)),
        "a 3-key TDES key is not exported under an 80-bit KEK: {e}"
    );
    // Control: a real 3-key KEK exports it.
    let kek3 = key(
        &hsm,
        "KEK3",
        Algorithm::Tdes,
        24,
        KeyUsage::K0,
        ModeOfUse::B,
    );
    hsm.export_key_block(&three, &kek3).unwrap();
}

/// Generates a non-exportable key and returns its handle.
fn key(
    hsm: &dyn Hsm,
    label: &str,
    alg: Algorithm,
    len: usize,
    usage: KeyUsage,
    mode: ModeOfUse,
) -> pmp_core::hsm::KeyHandle {
    hsm.generate_key(&KeySpec::new(label, alg, len, usage, mode))
        .unwrap()
        .handle
}

/// A ZMK formed in `hsm` from two random components, and its clear value (the XOR), as
/// both sides of a key ceremony know it.
fn known_zmk(hsm: &SoftHsm, alg: Algorithm, len: usize) -> (SecretKey, pmp_core::hsm::KeyInfo) {
    let zmk = SecretKey::generate(alg, len).unwrap();
    let c1 = SecretKey::generate(alg, len).unwrap();
    let c2: Vec<u8> = c1
        .expose_secret()
        .iter()
        .zip(zmk.expose_secret())
        .map(|(a, b)| a ^ b)
        .collect();
    let z = hierarchy::zmk_ceremony(
        hsm,
        "ZMK",
        hierarchy::Zone::Import,
        alg,
        &[c1.expose_secret(), &c2],
        &[],
        None,
    )
    .unwrap();
    (zmk, z)
}

#[test]
fn a_refused_import_stores_nothing_and_is_not_logged_as_imported() {
    let dir = TempDir::new("impcheck");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let (zmk, z) = known_zmk(&hsm, Algorithm::Aes, 32);
    let k = SecretKey::generate(Algorithm::Aes, 16).unwrap();
    let h = keyblock::Header::new(
        Version::D,
        KeyUsage::K0,
        keyblock::KeyAlgorithm::Aes,
        ModeOfUse::B,
        keyblock::Exportability::N,
    );
    let block = keyblock::wrap(&zmk, &h, &k, None).unwrap();
    // Usage K0 is not an issuer transport key; and a wrong KCV.
    assert!(matches!(
        hierarchy::import_issuer_key(&hsm, "TK", &z.handle, &block, &k.kcv()),
        Err(Error::Policy(_))
    ));
    let wrong = Kcv::from_hex("00000000").unwrap();
    let e = hsm
        .import_key_block_checked(
            "TK",
            &z.handle,
            &block,
            &pmp_core::hsm::ImportCheck {
                kcv: Some(&wrong),
                usages: &[],
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::KcvMismatch { .. }), "{e}");
    assert!(hsm.find_key("TK").is_err());
    assert!(!dir.0.join("keys/TK.kb").exists());
    drop(hsm);
    let log = std::fs::read_to_string(dir.0.join("audit.log")).unwrap();
    assert!(
        !log.lines()
            .any(|l| l.contains("op=import key=TK") && l.contains("outcome=ok")),
        "{log}"
    );
    assert!(
        Kcv::from_hex("0000").is_err(),
        "a 2-byte KCV is too weak a check"
    );
}

#[test]
fn an_imported_tdes_key_with_even_parity_is_adjusted_not_refused() {
    let dir = TempDir::new("parity");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let (zmk, z) = known_zmk(&hsm, Algorithm::Tdes, 16);
    // A key as a counterpart may send it: every byte with even parity.
    let mut k = SecretKey::generate(Algorithm::Tdes, 16)
        .unwrap()
        .expose_secret()
        .to_vec();
    k.iter_mut().for_each(|b| *b ^= 1);
    assert!(!pmp_core::has_odd_parity(&k));
    let key = SecretKey::new(Algorithm::Tdes, &k).unwrap();
    let h = keyblock::Header::new(
        Version::B,
        KeyUsage::D0,
        keyblock::KeyAlgorithm::Tdes,
        ModeOfUse::B,
        keyblock::Exportability::N,
    );
    let block = keyblock::wrap(&zmk, &h, &key, None).unwrap();
    let info = hsm.import_key_block("TK", &z.handle, &block).unwrap();
    assert_eq!(info.kcv, key.kcv(), "parity bits do not change the KCV");
}
