//! The software HSM's RSA keys: issuer key pairs (generate, import as an X9.143 key block of
//! algorithm R, sign in the EMV recovery format), persistence and tamper evidence, ICC key
//! pairs with their CRT parts under a KTK, and the ICC key pool.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use pmp_core::hsm::rsa::{IccRsaRequest, RsaKeySpec};
use pmp_core::hsm::{Capability, Hsm, KeySpec, LmkSource, SoftHsm};
use pmp_core::keyblock::{self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use pmp_core::rsa::{RsaExponent, RsaPrivateKey, RsaPublicKey};
use pmp_core::{Algorithm, Error, Padding, SecretKey};

/// A fresh directory under the temporary dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        TempDir(std::env::temp_dir().join(format!("pmp-rsa-{name}-{}", hex::encode(r))))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec(label: &str, bits: u32, exponent: RsaExponent) -> RsaKeySpec {
    RsaKeySpec {
        label: label.into(),
        bits,
        exponent,
        usage: KeyUsage::S0,
    }
}

fn emv_message(len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    pmp_core::fill_random(&mut m).unwrap();
    m[0] = 0x6A;
    m[1] = 0x04; // format 04 (ICC public-key certificate); keeps the message below the modulus
    m[len - 1] = 0xBC;
    m
}

/// Imports a KTK of known value through components, so the test can decrypt on the host.
fn known_ktk(hsm: &SoftHsm, label: &str, alg: Algorithm, clear: &[u8]) -> pmp_core::hsm::KeyHandle {
    let mut c2 = vec![0u8; clear.len()];
    pmp_core::fill_random(&mut c2).unwrap();
    let c1: Vec<u8> = clear.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
    let spec = KeySpec {
        label: label.into(),
        algorithm: alg,
        len: clear.len(),
        usage: KeyUsage::K0,
        mode_of_use: ModeOfUse::E,
        exportability: Exportability::N,
    };
    hsm.form_key_from_components(&spec, &[&c1, &c2], &[None, None], None)
        .unwrap()
        .handle
}

#[test]
fn soft_hsm_claims_the_rsa_capabilities() {
    let dir = TempDir::new("caps");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let caps = hsm.capabilities();
    for c in [
        Capability::RsaKeys,
        Capability::RsaKeyBlockImport,
        Capability::IccRsaKeys,
        Capability::IccKeyPool,
    ] {
        assert!(caps.supports(c), "{c}");
    }
}

#[test]
fn generated_keys_have_the_asked_length_and_exponent_sign_and_persist() {
    let dir = TempDir::new("gen");
    let mut made = Vec::new();
    {
        let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
        for (label, bits, e) in [
            ("ISS-1024", 1024, RsaExponent::Three),
            ("ISS-1032", 1032, RsaExponent::F4),
            ("ISS-1408", 1408, RsaExponent::F4),
            ("ISS-1984", 1984, RsaExponent::Three),
        ] {
            let info = hsm.generate_rsa_key(&spec(label, bits, e)).unwrap();
            assert_eq!(info.public.bits(), bits, "{label}");
            assert_eq!(info.public.len() * 8, bits as usize);
            assert!(info.public.modulus()[0] & 0x80 != 0, "full-length modulus");
            assert_eq!(info.public.exponent(), e);
            assert_eq!(info.spec.usage, KeyUsage::S0);
            assert_eq!(
                hsm.key_origin(&info.handle).unwrap(),
                pmp_core::hsm::KeyOrigin::Generated
            );
            // The signature recovers with the public key alone (independent of the HSM).
            let m = emv_message(info.public.len());
            let s = hsm.sign_emv_recovery(&info.handle, &m).unwrap();
            assert_eq!(info.public.public_op(&s).unwrap(), m);
            made.push(info);
        }
        assert_eq!(hsm.list_rsa_keys().unwrap().len(), 4);
        assert!(
            hsm.list_keys().unwrap().is_empty(),
            "RSA keys are not symmetric keys"
        );
    }
    let hsm = SoftHsm::open(&dir.0, LmkSource::Test).unwrap();
    let listed = hsm.list_rsa_keys().unwrap();
    assert_eq!(listed.len(), 4);
    for info in &made {
        let h = hsm.find_key(&info.spec.label).unwrap();
        let again = hsm.rsa_key_info(&h).unwrap();
        assert_eq!(again.public, info.public);
        assert_eq!(again.spec, info.spec);
        let m = emv_message(info.public.len());
        let s = hsm.sign_emv_recovery(&h, &m).unwrap();
        assert_eq!(info.public.public_op(&s).unwrap(), m);
    }
    // Deleting works for RSA labels too, and survives a reopen.
    let h = hsm.find_key("ISS-1032").unwrap();
    hsm.delete_key(&h).unwrap();
    assert!(matches!(hsm.find_key("ISS-1032"), Err(Error::NotFound(_))));
    drop(hsm);
    let hsm = SoftHsm::open(&dir.0, LmkSource::Test).unwrap();
    assert_eq!(hsm.list_rsa_keys().unwrap().len(), 3);
    assert!(hsm.verify_audit().is_ok());
}

#[test]
fn bad_specs_and_bad_messages_are_refused() {
    let dir = TempDir::new("refuse");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    for bits in [1016, 1028, 1992] {
        assert!(
            hsm.generate_rsa_key(&spec("BAD", bits, RsaExponent::Three))
                .is_err(),
            "{bits}"
        );
    }
    let mut s = spec("BAD", 1024, RsaExponent::Three);
    s.usage = KeyUsage::D0;
    assert!(matches!(hsm.generate_rsa_key(&s), Err(Error::Policy(_))));

    let info = hsm
        .generate_rsa_key(&spec("ISS", 1024, RsaExponent::Three))
        .unwrap();
    // One label space: a symmetric key may not take an RSA key's label, nor the reverse.
    let sym = KeySpec {
        label: "ISS".into(),
        algorithm: Algorithm::Aes,
        len: 16,
        usage: KeyUsage::D0,
        mode_of_use: ModeOfUse::B,
        exportability: Exportability::N,
    };
    assert!(matches!(
        hsm.generate_key(&sym),
        Err(Error::AlreadyExists(_))
    ));
    let sym = KeySpec {
        label: "DATA".into(),
        ..sym
    };
    let data = hsm.generate_key(&sym).unwrap().handle;
    assert!(matches!(
        hsm.generate_rsa_key(&spec("DATA", 1024, RsaExponent::Three)),
        Err(Error::AlreadyExists(_))
    ));

    let n = info.public.len();
    let good = emv_message(n);
    let mut wrong_header = good.clone();
    wrong_header[0] = 0x6B;
    let mut wrong_trailer = good.clone();
    wrong_trailer[n - 1] = 0xBD;
    let mut wrong_format = good.clone();
    wrong_format[1] = 0x02;
    for (what, m) in [
        ("format", &wrong_format[..]),
        ("short", &good[..n - 1]),
        ("long", &[good.clone(), vec![0xBC]].concat()[..]),
        ("header", &wrong_header[..]),
        ("trailer", &wrong_trailer[..]),
    ] {
        let e = hsm.sign_emv_recovery(&info.handle, m).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{what}: {e}");
    }
    // A symmetric key's handle cannot sign, and an RSA key cannot encrypt.
    assert!(hsm.sign_emv_recovery(&data, &good).is_err());
    let mut out = [0u8; 32];
    let e = hsm
        .encrypt(
            &pmp_core::hsm::CipherSpec {
                key: &info.handle,
                mode: pmp_core::Mode::Ecb,
                iv: None,
                padding: Padding::None,
            },
            &[0u8; 16],
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(e, Error::Policy(_)), "{e}");
    assert!(hsm.key_info(&info.handle).is_err());
    // Secrets are not in Debug.
    let dbg = format!("{info:?} {hsm:?}");
    assert!(!dbg.to_lowercase().contains("private"), "{dbg}");
}

#[test]
fn a_tampered_rsa_key_file_stops_the_open() {
    let dir = TempDir::new("tamper");
    {
        let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
        hsm.generate_rsa_key(&spec("ISS", 1024, RsaExponent::Three))
            .unwrap();
    }
    let path = dir.0.join("keys").join("ISS.kb");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with('D'));
    assert_eq!(&text[5..8], "S0R", "usage S0, algorithm R");
    assert_eq!(&text[8..9], "S", "mode S");
    // Flip one hex digit of the encrypted payload.
    let mut b = text.into_bytes();
    let i = b.len() / 2;
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, &b).unwrap();
    match SoftHsm::open(&dir.0, LmkSource::Test) {
        Err(Error::Integrity { what, .. }) => assert!(what.ends_with("ISS.kb"), "{what}"),
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

/// The host side: decrypt the five parts under the known KTK and check they are the
/// private key of the modulus.
fn check_crt_under_ktk(
    public: &RsaPublicKey,
    parts: &[Vec<u8>; 5],
    ktk: &SecretKey,
    padding: Padding,
) {
    let half = public.len().div_ceil(2);
    let clear: Vec<Vec<u8>> = parts
        .iter()
        .map(|c| {
            let mut b = c.clone();
            ktk.cipher().decrypt_ecb(&mut b).unwrap();
            match padding {
                Padding::None => assert_eq!(b.len(), half),
                Padding::Iso9797M2 => {
                    assert_eq!(b[half], 0x80, "ISO 9797-1 method 2 after the part");
                    assert!(b[half + 1..].iter().all(|&x| x == 0));
                }
                _ => unreachable!(),
            }
            b.truncate(half);
            b
        })
        .collect();
    let (qinv, dq, dp, q, p) = (&clear[0], &clear[1], &clear[2], &clear[3], &clear[4]);
    // Rebuild the key from p and q (independently of the parts under test) and compare.
    let key = RsaPrivateKey::from_primes(p, q, public.exponent()).unwrap();
    assert_eq!(&key.public_key(), public, "p × q is the modulus");
    let want = key.crt_parts().unwrap();
    assert_eq!(&want.dp[..], &dp[..], "d mod (p − 1)");
    assert_eq!(&want.dq[..], &dq[..], "d mod (q − 1)");
    assert_eq!(&want.qinv[..], &qinv[..], "q⁻¹ mod p");
    // And the parts sign: m^dp, m^dq recombined by Garner = the private operation, checked
    // with the public key only.
    let m = emv_message(public.len());
    let s = key.private_op(&m).unwrap();
    assert_eq!(public.public_op(&s).unwrap(), m);
}

#[test]
fn icc_keys_come_with_their_crt_parts_under_the_ktk() {
    let dir = TempDir::new("icc");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let tdes = hex::decode("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF").unwrap();
    let ktk = known_ktk(&hsm, "KTK", Algorithm::Tdes, &tdes);
    let ktk_clear = SecretKey::new(Algorithm::Tdes, &tdes).unwrap();
    // 1024 bits: halves of 64 bytes, whole TDES blocks; 1032 bits: 65 bytes, padded.
    for (bits, e, padding) in [
        (1024, RsaExponent::Three, Padding::None),
        (1032, RsaExponent::F4, Padding::Iso9797M2),
    ] {
        let icc = hsm
            .generate_icc_rsa_key(&IccRsaRequest {
                bits,
                exponent: e,
                ktk: &ktk,
                padding,
                use_pool: true,
            })
            .unwrap();
        assert!(!icc.from_pool, "the pool is empty: generated in line");
        assert_eq!(icc.public.bits(), bits);
        check_crt_under_ktk(&icc.public, &icc.crt_under_ktk, &ktk_clear, padding);
        let dbg = format!("{icc:?}");
        assert!(
            !dbg.contains(&hex::encode_upper(&icc.crt_under_ktk[0])),
            "{dbg}"
        );
    }
    // No padding with 65-byte parts: refused, naming the length.
    let e = hsm
        .generate_icc_rsa_key(&IccRsaRequest {
            bits: 1032,
            exponent: RsaExponent::Three,
            ktk: &ktk,
            padding: Padding::None,
            use_pool: false,
        })
        .unwrap_err();
    assert!(e.to_string().contains("65 bytes"), "{e}");
    // A KTK that may not wrap (a data key) is refused.
    let dkey = hsm
        .generate_key(&KeySpec {
            label: "DK".into(),
            algorithm: Algorithm::Aes,
            len: 16,
            usage: KeyUsage::D0,
            mode_of_use: ModeOfUse::B,
            exportability: Exportability::N,
        })
        .unwrap()
        .handle;
    assert!(
        hsm.generate_icc_rsa_key(&IccRsaRequest {
            bits: 1024,
            exponent: RsaExponent::Three,
            ktk: &dkey,
            padding: Padding::None,
            use_pool: false,
        })
        .is_err()
    );
}

#[test]
fn the_pool_hands_each_pair_out_once_and_survives_a_reopen() {
    let dir = TempDir::new("pool");
    let aes = hex::decode("00112233445566778899AABBCCDDEEFF").unwrap();
    let modulus_seen;
    {
        let hsm = Arc::new(SoftHsm::create_with_test_lmk(&dir.0).unwrap());
        let level = hsm.fill_icc_key_pool(1024, RsaExponent::Three, 6).unwrap();
        assert_eq!(level.available, 6);
        assert_eq!(hsm.icc_key_pool().unwrap(), vec![level]);
        let ktk = known_ktk(&hsm, "KTK", Algorithm::Aes, &aes);
        let ktk_clear = SecretKey::new(Algorithm::Aes, &aes).unwrap();
        // Two threads take three pairs each: six different moduli, all from the pool.
        let taken: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let hsm = hsm.clone();
                    let ktk = ktk.clone();
                    s.spawn(move || {
                        (0..3)
                            .map(|_| {
                                hsm.generate_icc_rsa_key(&IccRsaRequest {
                                    bits: 1024,
                                    exponent: RsaExponent::Three,
                                    ktk: &ktk,
                                    padding: Padding::None,
                                    use_pool: true,
                                })
                                .unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let moduli: HashSet<Vec<u8>> = taken.iter().map(|k| k.public.modulus().to_vec()).collect();
        assert_eq!(moduli.len(), 6, "no pair handed out twice");
        assert!(taken.iter().all(|k| k.from_pool));
        check_crt_under_ktk(
            &taken[0].public,
            &taken[0].crt_under_ktk,
            &ktk_clear,
            Padding::None,
        );
        assert_eq!(hsm.icc_key_pool().unwrap()[0].available, 0);
        // Empty: generated in line.
        let k = hsm
            .generate_icc_rsa_key(&IccRsaRequest {
                bits: 1024,
                exponent: RsaExponent::Three,
                ktk: &ktk,
                padding: Padding::None,
                use_pool: true,
            })
            .unwrap();
        assert!(!k.from_pool);
        modulus_seen = moduli;
        hsm.fill_icc_key_pool(1024, RsaExponent::Three, 2).unwrap();
    }
    // Reopen: the level is kept, the old files are gone, and new pairs are new.
    let hsm = SoftHsm::open(&dir.0, LmkSource::Test).unwrap();
    assert_eq!(hsm.icc_key_pool().unwrap()[0].available, 2);
    let files = std::fs::read_dir(dir.0.join("icc-pool").join("1024-3"))
        .unwrap()
        .count();
    assert_eq!(files, 2, "taken pairs leave no file behind");
    let ktk = hsm.find_key("KTK").unwrap();
    let k = hsm
        .generate_icc_rsa_key(&IccRsaRequest {
            bits: 1024,
            exponent: RsaExponent::Three,
            ktk: &ktk,
            padding: Padding::None,
            use_pool: true,
        })
        .unwrap();
    assert!(k.from_pool);
    assert!(!modulus_seen.contains(k.public.modulus()));
}

#[test]
fn a_tampered_pool_entry_is_an_integrity_error() {
    let dir = TempDir::new("pooltamper");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    hsm.fill_icc_key_pool(1024, RsaExponent::F4, 1).unwrap();
    let folder = dir.0.join("icc-pool").join("1024-65537");
    let path = std::fs::read_dir(&folder)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut b = std::fs::read(&path).unwrap();
    let i = b.len() / 2;
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, &b).unwrap();
    let aes = [0x11u8; 16];
    let ktk = known_ktk(&hsm, "KTK", Algorithm::Aes, &aes);
    let e = hsm
        .generate_icc_rsa_key(&IccRsaRequest {
            bits: 1024,
            exponent: RsaExponent::F4,
            ktk: &ktk,
            padding: Padding::None,
            use_pool: true,
        })
        .unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
}

#[test]
fn an_r_key_block_imports_under_a_kek() {
    let dir = TempDir::new("import");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let kek_clear =
        hex::decode("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6").unwrap();
    let mut c2 = vec![0u8; 32];
    pmp_core::fill_random(&mut c2).unwrap();
    let c1: Vec<u8> = kek_clear.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
    let kek = hsm
        .form_key_from_components(
            &KeySpec {
                label: "ZMK".into(),
                algorithm: Algorithm::Aes,
                len: 32,
                usage: KeyUsage::K0,
                mode_of_use: ModeOfUse::D,
                exportability: Exportability::N,
            },
            &[&c1, &c2],
            &[None, None],
            None,
        )
        .unwrap()
        .handle;
    let kbpk = SecretKey::new(Algorithm::Aes, &kek_clear).unwrap();
    let key = RsaPrivateKey::generate(1152, RsaExponent::Three).unwrap();
    let der = key.to_pkcs1_der().unwrap();
    let header = Header::new(
        Version::D,
        KeyUsage::S0,
        KeyAlgorithm::Rsa,
        ModeOfUse::S,
        Exportability::N,
    );
    let block = keyblock::wrap_asymmetric(&kbpk, &header, &der, None).unwrap();
    let info = hsm.import_rsa_key_block("ISS-IMP", &kek, &block).unwrap();
    assert_eq!(info.public, key.public_key());
    assert_eq!(info.spec.bits, 1152);
    let m = emv_message(info.public.len());
    let s = hsm.sign_emv_recovery(&info.handle, &m).unwrap();
    assert_eq!(key.public_key().public_op(&s).unwrap(), m);
    // A flipped bit in the block: the opaque crypto error.
    let mut bad = block.clone().into_bytes();
    let i = bad.len() - 40;
    bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
    let e = hsm
        .import_rsa_key_block("ISS-BAD", &kek, std::str::from_utf8(&bad).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::Crypto), "{e}");
    // Usage other than S0 is refused.
    let d0 = Header::new(
        Version::D,
        KeyUsage::Other(*b"S1"),
        KeyAlgorithm::Rsa,
        ModeOfUse::S,
        Exportability::N,
    );
    if let Ok(b) = keyblock::wrap_asymmetric(&kbpk, &d0, &der, None) {
        assert!(hsm.import_rsa_key_block("ISS-S1", &kek, &b).is_err());
    }
}

#[test]
fn a_pool_file_put_back_after_its_pair_was_taken_is_never_handed_out_again() {
    let dir = TempDir::new("putback");
    let folder = dir.0.join("icc-pool").join("1024-3");
    let first;
    let saved;
    {
        let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
        hsm.fill_icc_key_pool(1024, RsaExponent::Three, 2).unwrap();
        let path = folder.join("000000000000.kb");
        saved = std::fs::read(&path).unwrap();
        let ktk = known_ktk(&hsm, "KTK", Algorithm::Aes, &[0x22; 16]);
        let k = hsm
            .generate_icc_rsa_key(&IccRsaRequest {
                bits: 1024,
                exponent: RsaExponent::Three,
                ktk: &ktk,
                padding: Padding::None,
                use_pool: true,
            })
            .unwrap();
        first = k.public.modulus().to_vec();
        assert!(!path.exists(), "the taken pair's file is removed");
        // An attacker (or a restored backup) puts the file back.
        std::fs::write(&path, &saved).unwrap();
    }
    let hsm = SoftHsm::open(&dir.0, LmkSource::Test).unwrap();
    assert!(
        !folder.join("000000000000.kb").exists(),
        "a file below the cursor is removed on open"
    );
    assert_eq!(hsm.icc_key_pool().unwrap()[0].available, 1);
    let ktk = hsm.find_key("KTK").unwrap();
    let req = IccRsaRequest {
        bits: 1024,
        exponent: RsaExponent::Three,
        ktk: &ktk,
        padding: Padding::None,
        use_pool: true,
    };
    let k = hsm.generate_icc_rsa_key(&req).unwrap();
    assert!(k.from_pool);
    assert_ne!(k.public.modulus(), &first[..]);
    // A pool file renamed to the next sequence number does not verify (the number is bound).
    drop(hsm);
    {
        let hsm = SoftHsm::open(&dir.0, LmkSource::Test).unwrap();
        hsm.fill_icc_key_pool(1024, RsaExponent::Three, 1).unwrap();
    }
    // The one file left is the next to be taken: replace it with the old pair's file.
    let next = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .collect::<Vec<_>>();
    assert_eq!(next.len(), 1, "{next:?}");
    std::fs::write(&next[0], &saved).unwrap();
    let hsm = SoftHsm::open(&dir.0, LmkSource::Test).unwrap();
    let ktk = hsm.find_key("KTK").unwrap();
    let e = hsm
        .generate_icc_rsa_key(&IccRsaRequest { ktk: &ktk, ..req })
        .unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
}

#[test]
fn signing_is_counted_in_the_audit_log_and_no_prime_is_stored_in_clear() {
    let dir = TempDir::new("audit");
    let kbpk_clear = [0x5Au8; 32];
    let key = RsaPrivateKey::generate(1024, RsaExponent::Three).unwrap();
    let parts = key.crt_parts().unwrap();
    {
        let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
        let mut c2 = [0u8; 32];
        pmp_core::fill_random(&mut c2).unwrap();
        let c1: Vec<u8> = kbpk_clear.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
        let kek = hsm
            .form_key_from_components(
                &KeySpec {
                    label: "ZMK".into(),
                    algorithm: Algorithm::Aes,
                    len: 32,
                    usage: KeyUsage::K0,
                    mode_of_use: ModeOfUse::D,
                    exportability: Exportability::N,
                },
                &[&c1, &c2],
                &[None, None],
                None,
            )
            .unwrap()
            .handle;
        let header = Header::new(
            Version::D,
            KeyUsage::S0,
            KeyAlgorithm::Rsa,
            ModeOfUse::N,
            Exportability::N,
        );
        let kbpk = SecretKey::new(Algorithm::Aes, &kbpk_clear).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        let block = keyblock::wrap_asymmetric(&kbpk, &header, &der, None).unwrap();
        let info = hsm.import_rsa_key_block("ISS", &kek, &block).unwrap();
        assert_eq!(
            hsm.key_origin(&info.handle).unwrap(),
            pmp_core::hsm::KeyOrigin::Imported { kek: "ZMK".into() }
        );
        for _ in 0..3 {
            let m = emv_message(128);
            hsm.sign_emv_recovery(&info.handle, &m).unwrap();
        }
        assert!(hsm.sign_emv_recovery(&info.handle, &[0u8; 128]).is_err());
        hsm.flush_audit().unwrap();
    }
    let log = std::fs::read_to_string(dir.0.join("audit.log")).unwrap();
    assert!(log.contains("op=import-rsa key=ISS kek=ZMK"), "{log}");
    assert!(
        log.contains("op=usage what=rsa-sign key=ISS sha1=") && log.contains("count=3"),
        "{log}"
    );
    assert!(log.contains("op=rsa-sign key=ISS outcome=refused"), "{log}");
    for root in [dir.0.clone(), dir.0.join("keys")] {
        for f in std::fs::read_dir(root).unwrap().flatten() {
            if f.path().is_file() {
                let data = std::fs::read(f.path()).unwrap();
                let text = String::from_utf8_lossy(&data).to_uppercase();
                for prime in [&parts.p, &parts.q] {
                    assert!(!text.contains(&hex::encode_upper(&prime[..])));
                    assert!(!data.windows(prime.len()).any(|w| w == &prime[..]));
                }
            }
        }
    }
}

#[test]
fn the_x9143_example_rsa_key_is_refused_for_its_length() {
    // ANSI X9.143:2021 example 8.5 carries a 2048-bit key: the block verifies (see
    // tests/keyblock.rs), and the HSM refuses a length EMV does not allow.
    let dir = TempDir::new("x9143");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let kbpk = hex::decode("FA36E44278DB3AB5F298F9F7DA8F1F88").unwrap();
    let mut c2 = vec![0u8; 16];
    pmp_core::fill_random(&mut c2).unwrap();
    let c1: Vec<u8> = kbpk.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
    let kek = hsm
        .form_key_from_components(
            &KeySpec {
                label: "KEK".into(),
                algorithm: Algorithm::Aes,
                len: 16,
                usage: KeyUsage::K0,
                mode_of_use: ModeOfUse::D,
                exportability: Exportability::N,
            },
            &[&c1, &c2],
            &[None, None],
            None,
        )
        .unwrap()
        .handle;
    let block = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/x9143_8_5.txt"),
    )
    .unwrap();
    let block = block
        .lines()
        .find_map(|l| l.strip_prefix("Block = "))
        .unwrap();
    let e = hsm.import_rsa_key_block("X9143", &kek, block).unwrap_err();
    assert!(e.to_string().contains("1984"), "{e}");
    assert!(hsm.list_rsa_keys().unwrap().is_empty());
}

#[test]
fn pairs_reserved_and_not_handed_out_return_to_the_pool_on_close() {
    let dir = TempDir::new("giveback");
    let first;
    {
        let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
        hsm.fill_icc_key_pool(1024, RsaExponent::F4, 5).unwrap();
        let ktk = known_ktk(&hsm, "KTK", Algorithm::Aes, &[0x33; 16]);
        let k = hsm
            .generate_icc_rsa_key(&IccRsaRequest {
                bits: 1024,
                exponent: RsaExponent::F4,
                ktk: &ktk,
                padding: Padding::None,
                use_pool: true,
            })
            .unwrap();
        assert!(k.from_pool);
        first = k.public.modulus().to_vec();
        assert_eq!(hsm.icc_key_pool().unwrap()[0].available, 4);
    }
    let hsm = SoftHsm::open(&dir.0, LmkSource::Test).unwrap();
    assert_eq!(hsm.icc_key_pool().unwrap()[0].available, 4);
    let files = std::fs::read_dir(dir.0.join("icc-pool").join("1024-65537"))
        .unwrap()
        .count();
    assert_eq!(files, 4);
    let ktk = hsm.find_key("KTK").unwrap();
    let mut seen = HashSet::from([first]);
    for _ in 0..4 {
        let k = hsm
            .generate_icc_rsa_key(&IccRsaRequest {
                bits: 1024,
                exponent: RsaExponent::F4,
                ktk: &ktk,
                padding: Padding::None,
                use_pool: true,
            })
            .unwrap();
        assert!(k.from_pool);
        assert!(seen.insert(k.public.modulus().to_vec()), "handed out twice");
    }
    assert_eq!(hsm.icc_key_pool().unwrap()[0].available, 0);
    drop(hsm);
    let log = std::fs::read_to_string(dir.0.join("audit.log")).unwrap();
    assert!(
        log.contains("op=icc-pool-return count=4 outcome=ok"),
        "{log}"
    );
}
