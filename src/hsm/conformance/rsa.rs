//! RSA keys ([`crate::hsm::rsa`]): issuer key pairs, EMV signing, R key-block import, ICC
//! key pairs under a KTK and the pool. Every result is checked on the host with the public
//! key alone, or, for a KTK whose clear value the suite knows, by decrypting the CRT parts
//! and rebuilding the key from its primes.
//!
//! | check | needs |
//! |---|---|
//! | `rsa.keys` | RSA keys |
//! | `rsa.key-block-import` | R key-block import, known keys |
//! | `rsa.icc-keys` | ICC RSA keys |
//! | `rsa.icc-keys.known-answer` | ICC RSA keys, known keys |
//! | `rsa.pool` | ICC RSA keys, the pool |

use super::Suite;
use crate::hsm::rsa::{IccRsaRequest, RsaKeySpec};
use crate::hsm::{Capability, KeySpec};
use crate::keyblock::{self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use crate::rsa::{RsaExponent, RsaPrivateKey, RsaPublicKey};
use crate::{Algorithm, Error, Padding};

/// A message in the EMV recovery format for a modulus of `len` bytes.
fn recovery_message(len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    crate::fill_random(&mut m).expect("rng");
    m[0] = 0x6A;
    m[1] = 0x04;
    m[len - 1] = 0xBC;
    m
}

pub(super) fn rsa_keys(s: &mut Suite<'_>) {
    if !s.can_run("rsa.keys", &[Capability::RsaKeys]) {
        return;
    }
    let hsm = s.hsm;
    let spec = RsaKeySpec {
        label: s.label("rsa-iss"),
        bits: 1024,
        exponent: RsaExponent::Three,
        usage: KeyUsage::S0,
    };
    let info = hsm.generate_rsa_key(&spec).expect("generate an RSA key");
    assert_eq!(info.spec, spec);
    assert_eq!(info.public.bits(), 1024);
    assert_eq!(info.public.exponent(), RsaExponent::Three);
    let h = hsm.find_key(&spec.label).expect("find an RSA key by label");
    assert_eq!(
        hsm.rsa_key_info(&h).expect("rsa_key_info").public,
        info.public
    );
    assert!(
        hsm.list_rsa_keys()
            .expect("list RSA keys")
            .iter()
            .any(|k| k.spec.label == spec.label)
    );
    assert!(
        matches!(hsm.generate_rsa_key(&spec), Err(Error::AlreadyExists(_))),
        "an RSA label is unique"
    );
    let sym = KeySpec::new(&spec.label, Algorithm::Aes, 16, KeyUsage::D0, ModeOfUse::B);
    assert!(
        matches!(hsm.generate_key(&sym), Err(Error::AlreadyExists(_))),
        "RSA and symmetric keys share one label space"
    );
    for bad in [1016, 1028, 1992] {
        let b = RsaKeySpec {
            label: s.label("rsa-bad"),
            bits: bad,
            ..spec.clone()
        };
        assert!(
            hsm.generate_rsa_key(&b).is_err(),
            "{bad} bits is no EMV length"
        );
    }
    // Signing: the recovery format only, checked on the host with the public key.
    let m = recovery_message(info.public.len());
    let sig = hsm.sign_emv_recovery(&h, &m).expect("sign");
    assert_eq!(info.public.public_op(&sig).expect("recover"), m);
    let mut header = m.clone();
    header[0] = 0x6B;
    let mut trailer = m.clone();
    trailer[m.len() - 1] = 0xBD;
    let mut format = m.clone();
    format[1] = 0x02;
    for (what, bad) in [
        ("short", &m[..m.len() - 1]),
        ("header", &header[..]),
        ("trailer", &trailer[..]),
        ("format (02 is the CA's)", &format[..]),
    ] {
        assert!(
            hsm.sign_emv_recovery(&h, bad).is_err(),
            "a message with a wrong {what} is refused"
        );
    }
    hsm.delete_key(&h).expect("delete an RSA key");
    assert!(matches!(hsm.find_key(&spec.label), Err(Error::NotFound(_))));
}

pub(super) fn rsa_key_block_import(s: &mut Suite<'_>) {
    if !s.can_run_known("rsa.key-block-import", &[Capability::RsaKeyBlockImport]) {
        return;
    }
    let Ok(known) = &s.known else { return };
    let key = RsaPrivateKey::generate(1152, RsaExponent::F4).expect("host RSA key");
    let der = key.to_pkcs1_der().expect("DER");
    let header = Header::new(
        Version::D,
        KeyUsage::S0,
        KeyAlgorithm::Rsa,
        ModeOfUse::S,
        Exportability::N,
    );
    let block = keyblock::wrap_asymmetric(&known.kek_clear, &header, &der, None).expect("wrap");
    let label = s.label("rsa-imp");
    let info = s
        .hsm
        .import_rsa_key_block(&label, &known.kek, &block)
        .expect("import an R key block");
    assert_eq!(info.public, key.public_key(), "the key wrapped on the host");
    let m = recovery_message(info.public.len());
    let sig = s.hsm.sign_emv_recovery(&info.handle, &m).expect("sign");
    assert_eq!(key.public_key().public_op(&sig).expect("recover"), m);
    let mut bad = block.into_bytes();
    let i = bad.len() - 40;
    bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).expect("ASCII");
    assert!(
        s.hsm
            .import_rsa_key_block(&s.label("rsa-bad"), &known.kek, &bad)
            .is_err(),
        "a changed R block is refused"
    );
}

/// The five parts of `parts` decrypted under the host's `ktk` (ECB, no padding) rebuild the
/// private key of `public`.
fn check_crt(public: &RsaPublicKey, parts: &[Vec<u8>; 5], ktk: &crate::SecretKey) {
    let half = public.len().div_ceil(2);
    let clear: Vec<Vec<u8>> = parts
        .iter()
        .map(|c| {
            let mut b = c.clone();
            ktk.cipher()
                .decrypt_ecb(&mut b)
                .expect("decrypt a CRT part");
            assert_eq!(b.len(), half, "each part is half the modulus");
            b
        })
        .collect();
    let key = RsaPrivateKey::from_primes(&clear[4], &clear[3], public.exponent())
        .expect("p and q form a key");
    assert_eq!(&key.public_key(), public, "p × q is the certified modulus");
    let want = key.crt_parts().expect("CRT parts");
    assert_eq!(&want.qinv[..], &clear[0][..], "8201 is q⁻¹ mod p");
    assert_eq!(&want.dq[..], &clear[1][..], "8202 is d mod (q − 1)");
    assert_eq!(&want.dp[..], &clear[2][..], "8203 is d mod (p − 1)");
}

pub(super) fn icc_keys(s: &mut Suite<'_>) {
    if !s.can_run("rsa.icc-keys", &[Capability::IccRsaKeys]) {
        s.skip("rsa.icc-keys.known-answer", Capability::IccRsaKeys, "");
        return;
    }
    let ktk_spec = KeySpec::new(
        &s.label("rsa-ktk"),
        Algorithm::Aes,
        16,
        KeyUsage::K0,
        ModeOfUse::E,
    );
    let ktk = s.generate(&ktk_spec).expect("generate a KTK");
    let req = IccRsaRequest {
        bits: 1024,
        exponent: RsaExponent::Three,
        ktk: &ktk.handle,
        padding: Padding::None,
        use_pool: false,
    };
    let icc = s.hsm.generate_icc_rsa_key(&req).expect("an ICC key pair");
    assert!(!icc.from_pool);
    assert_eq!(icc.public.bits(), 1024);
    for part in &icc.crt_under_ktk {
        assert_eq!(part.len(), 64, "half of 128 bytes, whole AES blocks");
    }
    // 1032 bits: 65-byte parts are no whole number of blocks without padding.
    let odd = IccRsaRequest { bits: 1032, ..req };
    assert!(s.hsm.generate_icc_rsa_key(&odd).is_err());
    let padded = IccRsaRequest {
        padding: Padding::Iso9797M2,
        ..odd
    };
    let icc = s.hsm.generate_icc_rsa_key(&padded).expect("padded parts");
    assert!(icc.crt_under_ktk.iter().all(|p| p.len() == 80));
    // A data key is no KTK.
    let dk = s
        .generate(&KeySpec::new(
            &s.label("rsa-dk"),
            Algorithm::Aes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .expect("a data key");
    let bad = IccRsaRequest {
        ktk: &dk.handle,
        ..req
    };
    assert!(
        s.hsm.generate_icc_rsa_key(&bad).is_err(),
        "a D0 key is no KTK"
    );

    if !s.can_run_known("rsa.icc-keys.known-answer", &[Capability::IccRsaKeys]) {
        return;
    }
    let known_spec = KeySpec {
        label: s.label("rsa-ktk-known"),
        ..ktk_spec
    };
    let ktk = s.make(&known_spec).expect("a known KTK");
    let clear = ktk.clear.as_ref().expect("a known key");
    let icc = s
        .hsm
        .generate_icc_rsa_key(&IccRsaRequest {
            ktk: &ktk.handle,
            ..req
        })
        .expect("an ICC key pair");
    check_crt(&icc.public, &icc.crt_under_ktk, clear);
}

pub(super) fn pool(s: &mut Suite<'_>) {
    if !s.can_run(
        "rsa.pool",
        &[Capability::IccRsaKeys, Capability::IccKeyPool],
    ) {
        return;
    }
    let hsm = s.hsm;
    let (bits, e) = (1024, RsaExponent::F4);
    let level = |hsm: &dyn crate::hsm::Hsm| {
        hsm.icc_key_pool()
            .expect("pool level")
            .into_iter()
            .find(|l| l.bits == bits && l.exponent == e)
            .map_or(0, |l| l.available)
    };
    let before = level(hsm);
    let after = hsm.fill_icc_key_pool(bits, e, 2).expect("fill the pool");
    assert_eq!(after.available, before + 2);
    assert_eq!(level(hsm), before + 2);
    let ktk = s
        .generate(&KeySpec::new(
            &s.label("rsa-pool-ktk"),
            Algorithm::Aes,
            16,
            KeyUsage::K0,
            ModeOfUse::E,
        ))
        .expect("a KTK");
    let req = IccRsaRequest {
        bits,
        exponent: e,
        ktk: &ktk.handle,
        padding: Padding::None,
        use_pool: true,
    };
    let a = hsm.generate_icc_rsa_key(&req).expect("from the pool");
    let b = hsm.generate_icc_rsa_key(&req).expect("from the pool");
    assert!(a.from_pool && b.from_pool);
    assert_ne!(a.public, b.public, "a pair is handed out once");
    assert_eq!(level(hsm), before);
}
