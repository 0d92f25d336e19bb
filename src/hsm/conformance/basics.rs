//! Capabilities, key management, data round trips, KCVs and the whole-file reader.

use std::io::Read;

use super::Suite;
use crate::hsm::{Capability, CipherSpec, KcvMethod, KeySpec};
use crate::keyblock::{KeyUsage, ModeOfUse};
use crate::{Algorithm, Error, Padding};

pub(super) fn capabilities(s: &mut Suite<'_>) {
    let c = &s.caps;
    assert!(!c.backend().is_empty(), "a backend has a name");
    assert!(
        c.supports(Capability::KeyAlgorithm(Algorithm::Aes)),
        "AES is required"
    );
    assert!(c.max_batch_items() >= 1, "a batch takes at least one item");
    s.ran("capabilities");
}

pub(super) fn key_management(s: &mut Suite<'_>) {
    let hsm = s.hsm;
    let label = s.label("km");
    let spec = KeySpec::new(&label, Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B);
    let info = hsm.generate_key(&spec).expect("generate");
    assert_eq!(info.spec, spec);
    assert_eq!(info.kcv.as_bytes().len(), 5, "AES KCV is 5 bytes");
    let h = hsm.find_key(&label).expect("find");
    assert_eq!(h, info.handle);
    assert_eq!(hsm.key_info(&h).expect("info").kcv, info.kcv);
    assert!(
        hsm.list_keys()
            .expect("list")
            .iter()
            .any(|k| k.spec.label == label)
    );
    assert!(
        matches!(hsm.generate_key(&spec), Err(Error::AlreadyExists(_))),
        "a label is unique"
    );
    let bad = KeySpec::new(
        "bad label/../x",
        Algorithm::Aes,
        16,
        KeyUsage::D0,
        ModeOfUse::B,
    );
    assert!(hsm.generate_key(&bad).is_err(), "labels are restricted");
    hsm.delete_key(&h).expect("delete");
    assert!(matches!(hsm.find_key(&label), Err(Error::NotFound(_))));
    assert!(matches!(hsm.key_info(&h), Err(Error::NotFound(_))));
    s.ran("key-management");
}

/// Encrypt then decrypt in every mode and padding; one CBC block against ECB of the block
/// XOR the IV; method-2 padding against the same bytes padded here and encrypted without
/// padding; and, for a known key, the HSM against the host's cipher.
pub(super) fn data_round_trips(s: &mut Suite<'_>) {
    let hsm = s.hsm;
    for (alg, len) in [
        (Algorithm::Tdes, 16),
        (Algorithm::Tdes, 24),
        (Algorithm::Aes, 16),
        (Algorithm::Aes, 32),
    ] {
        let name = format!("{alg}-{len}");
        if !s.can_run(
            format!("data.round-trip/{name}"),
            &[Capability::KeyAlgorithm(alg)],
        ) {
            continue;
        }
        let spec = KeySpec::new(
            &s.label(&format!("rt-{name}")),
            alg,
            len,
            KeyUsage::D0,
            ModeOfUse::B,
        );
        let key = s.make(&spec).expect("make a data key");
        let h = &key.handle;
        let bs = alg.block_size();
        let iv = vec![0x5A; bs];
        let msg = b"5413330089020011=2512201";
        for padding in [Padding::Iso9797M2, Padding::Pkcs7, Padding::Iso9797M1] {
            for spec in [
                CipherSpec::ecb(h, padding),
                CipherSpec::cbc(h, &iv, padding),
            ] {
                let mut ct = [0u8; 64];
                let n = hsm.encrypt(&spec, msg, &mut ct).expect("encrypt");
                // Methods 2 and PKCS#7 always add at least one byte; method 1 only fills
                // the last block.
                let want_len = match padding {
                    Padding::Iso9797M1 => msg.len().next_multiple_of(bs),
                    _ => (msg.len() / bs + 1) * bs,
                };
                assert_eq!(n, want_len, "{name} {padding:?}: ciphertext length");
                if let Some(clear) = &key.clear {
                    let mut want = [0u8; 64];
                    let m = clear
                        .cipher()
                        .encrypt(spec.mode, spec.iv, padding, msg, &mut want)
                        .expect("host encrypt");
                    assert_eq!(
                        &ct[..n],
                        &want[..m],
                        "HSM and host agree ({name} {:?} {padding:?})",
                        spec.mode
                    );
                }
                let mut pt = [0u8; 64];
                let k = hsm.decrypt(&spec, &ct[..n], &mut pt).expect("decrypt");
                if padding == Padding::Iso9797M1 {
                    assert_eq!(&pt[..msg.len()], msg);
                    assert!(pt[msg.len()..k].iter().all(|b| *b == 0));
                } else {
                    assert_eq!(&pt[..k], msg);
                }
            }
        }
        // Method 2 pads with 0x80 then zeros (ISO/IEC 9797-1): the same bytes padded here
        // and encrypted without padding give the same ciphertext.
        let mut padded = msg.to_vec();
        padded.push(0x80);
        padded.resize(padded.len().next_multiple_of(bs), 0);
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        let na = hsm
            .encrypt(&CipherSpec::ecb(h, Padding::Iso9797M2), msg, &mut a)
            .expect("encrypt");
        let nb = hsm
            .encrypt(&CipherSpec::ecb(h, Padding::None), &padded, &mut b)
            .expect("encrypt");
        assert_eq!(&a[..na], &b[..nb], "{name}: method 2 padding");
        // The first CBC block is the ECB encryption of the first block XOR the IV.
        let first: Vec<u8> = msg[..bs].iter().zip(&iv).map(|(m, v)| m ^ v).collect();
        let nc = hsm
            .encrypt(&CipherSpec::cbc(h, &iv, Padding::None), &padded, &mut a)
            .expect("encrypt");
        hsm.encrypt(&CipherSpec::ecb(h, Padding::None), &first, &mut b)
            .expect("encrypt");
        assert_eq!(nc, padded.len());
        assert_eq!(&a[..bs], &b[..bs], "{name}: CBC against ECB");
        assert_ne!(
            &a[..bs],
            &msg[..bs],
            "{name}: the ciphertext is not the text"
        );
        let mut small = [0u8; 4];
        assert!(
            matches!(
                hsm.encrypt(
                    &CipherSpec::ecb(h, Padding::Pkcs7),
                    b"0123456789",
                    &mut small
                ),
                Err(Error::BufferTooSmall { .. })
            ),
            "a short output buffer is reported"
        );
        if key.clear.is_some() {
            s.ran(format!("data.known-answer/{name}"));
        } else {
            s.can_run_known(format!("data.known-answer/{name}"), &[]);
        }
    }
}

/// Recomputes each algorithm's KCV through the HSM's own encryption under a generated data
/// key: TDES, the first 3 bytes of E(K, 0^8); AES, the first 5 bytes of CMAC(K, 0^16),
/// which for one whole zero block is E(K, K1) with the subkey K1 = dbl(E(K, 0^16)) (NIST
/// SP 800-38B §6.1).
pub(super) fn kcv_cross_checks(s: &mut Suite<'_>) {
    let hsm = s.hsm;
    for (alg, len, method, kcv_len) in [
        (Algorithm::Tdes, 16, KcvMethod::TdesEncryptZeros, 3),
        (Algorithm::Aes, 16, KcvMethod::AesCmac, 5),
    ] {
        if !s.can_run(
            format!("kcv.cross-check/{alg}"),
            &[Capability::KeyAlgorithm(alg), Capability::Kcv(method)],
        ) {
            continue;
        }
        let spec = KeySpec::new(
            &s.label(&format!("kcv-{alg}")),
            alg,
            len,
            KeyUsage::D0,
            ModeOfUse::B,
        );
        let info = hsm.generate_key(&spec).expect("generate");
        let ecb = CipherSpec::ecb(&info.handle, Padding::None);
        let bs = alg.block_size();
        let mut e0 = [0u8; 16];
        hsm.encrypt(&ecb, &[0u8; 16][..bs], &mut e0)
            .expect("encrypt zeros");
        let want = match method {
            KcvMethod::AesCmac => {
                let k1 = dbl(&e0);
                let mut t = [0u8; 16];
                hsm.encrypt(&ecb, &k1, &mut t).expect("encrypt K1");
                t
            }
            _ => e0,
        };
        assert_eq!(info.kcv.as_bytes().len(), kcv_len, "{alg} KCV length");
        assert_eq!(
            info.kcv.as_bytes(),
            &want[..kcv_len],
            "{alg} KCV recomputed"
        );
    }
}

/// Doubling in GF(2^128) with the polynomial x^128 + x^7 + x^2 + x + 1 (NIST SP 800-38B
/// §5.3: shift left by one bit, XOR 0x87 into the last byte when the top bit was set).
fn dbl(l: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (l[i] << 1) | l.get(i + 1).map_or(0, |n| n >> 7);
    }
    if l[0] & 0x80 != 0 {
        out[15] ^= 0x87;
    }
    out
}

/// A file larger than one read chunk encrypted with `encrypt` in CBC comes back whole from
/// [`Hsm::decrypting_reader`](crate::hsm::Hsm::decrypting_reader); a truncated file is
/// refused.
pub(super) fn file_reader(s: &mut Suite<'_>) {
    let hsm = s.hsm;
    let spec = KeySpec::new(
        &s.label("file"),
        Algorithm::Aes,
        16,
        KeyUsage::D0,
        ModeOfUse::B,
    );
    let h = hsm.generate_key(&spec).expect("generate").handle;
    let iv = [7u8; 16];
    let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let cbc = CipherSpec::cbc(&h, &iv, Padding::Iso9797M2);
    let mut ct = vec![0u8; msg.len() + 16];
    let n = hsm.encrypt(&cbc, &msg, &mut ct).expect("encrypt");
    ct.truncate(n);
    let mut back = Vec::new();
    hsm.decrypting_reader(&cbc, Box::new(std::io::Cursor::new(ct.clone())))
        .expect("reader")
        .read_to_end(&mut back)
        .expect("read");
    assert!(back == msg, "the file comes back whole");
    let cut = ct[..ct.len() - 3].to_vec();
    let mut sink = Vec::new();
    let refused = match hsm.decrypting_reader(&cbc, Box::new(std::io::Cursor::new(cut))) {
        Err(_) => true,
        Ok(mut r) => r.read_to_end(&mut sink).is_err(),
    };
    assert!(refused, "a truncated file is refused");
    s.ran("data.file-reader");
}

#[cfg(test)]
mod tests {
    /// RFC 4493 §4 (the NIST SP 800-38B AES-128 example), subkey generation: L = AES-128(K,
    /// 0^128) = 7df76b0c..., K1 = fbeed618..., K2 = f7ddac30....
    #[test]
    fn doubling_gives_the_rfc_4493_subkeys() {
        let hex16 = |s: &str| -> [u8; 16] { hex::decode(s).unwrap().try_into().unwrap() };
        let l = hex16("7df76b0c1ab899b33e42f047b91b546f");
        let k1 = hex16("fbeed618357133667c85e08f7236a8de");
        let k2 = hex16("f7ddac306ae266ccf90bc11ee46d513b");
        assert_eq!(super::dbl(&l), k1);
        assert_eq!(super::dbl(&k1), k2);
    }
}
