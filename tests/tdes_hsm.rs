//! `SoftHsm::translate_batch` (the TDES work of all items under one key done side by side in
//! the bitsliced core) against `translate` one item at a time, which is the reference: the
//! same outputs for a mix of TDES and AES keys, CBC and ECB, paddings and lengths, and on a
//! failure the same error with `out` left as it was.

use pmp_core::hsm::{CipherSpec, Hsm, KeyHandle, KeySpec, SoftHsm, TranslateItem};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::{Algorithm, Error, Padding};

fn store() -> (SoftHsm, std::path::PathBuf) {
    let mut r = [0u8; 8];
    pmp_core::fill_random(&mut r).unwrap();
    let dir = std::env::temp_dir().join(format!("pmp-tdes-hsm-{}", hex::encode(r)));
    (SoftHsm::create_with_test_lmk(&dir).unwrap(), dir)
}

fn key(hsm: &SoftHsm, label: &str, alg: Algorithm, len: usize) -> KeyHandle {
    hsm.generate_key(&KeySpec::new(label, alg, len, KeyUsage::D0, ModeOfUse::B))
        .unwrap()
        .handle
}

struct Case {
    from: usize,
    to: usize,
    from_ecb: bool,
    to_ecb: bool,
    from_pad: Padding,
    to_pad: Padding,
    clear_len: usize,
}

#[test]
fn batch_equals_item_by_item() {
    let (hsm, dir) = store();
    let keys = [
        (key(&hsm, "T2", Algorithm::Tdes, 16), 8),
        (key(&hsm, "T3", Algorithm::Tdes, 24), 8),
        (key(&hsm, "A1", Algorithm::Aes, 16), 16),
        (key(&hsm, "T2B", Algorithm::Tdes, 16), 8),
    ];
    let ivs: Vec<Vec<u8>> = (0..400u32)
        .map(|i| (0..16).map(|j| (i * 17 + j) as u8).collect())
        .collect();
    let pads = [Padding::Iso9797M2, Padding::Pkcs7, Padding::Iso9797M1];
    // Mostly TDES-CBC -> TDES/AES-CBC (the import's shape, enough items to fill the lanes
    // several times), with ECB, AES sources and other paddings mixed in.
    let cases: Vec<Case> = (0..400usize)
        .map(|i| Case {
            from: if i % 7 == 0 { 2 } else { i % 2 },
            to: [3, 2, 1, 0][i % 4],
            from_ecb: i % 11 == 0,
            to_ecb: i % 13 == 0,
            from_pad: pads[i % 2],
            to_pad: pads[i % 3],
            clear_len: 1 + (i * 5) % 60,
        })
        .collect();
    let mut cts = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let clear: Vec<u8> = (0..c.clear_len).map(|j| (i + 3 * j) as u8).collect();
        let (k, bs) = &keys[c.from];
        let spec = if c.from_ecb {
            CipherSpec::ecb(k, c.from_pad)
        } else {
            CipherSpec::cbc(k, &ivs[i][..*bs], c.from_pad)
        };
        let mut ct = vec![0u8; clear.len() + 16];
        let n = hsm.encrypt(&spec, &clear, &mut ct).unwrap();
        ct.truncate(n);
        cts.push(ct);
    }
    let items: Vec<TranslateItem<'_>> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (fk, fbs) = &keys[c.from];
            let (tk, tbs) = &keys[c.to];
            TranslateItem {
                from: if c.from_ecb {
                    CipherSpec::ecb(fk, c.from_pad)
                } else {
                    CipherSpec::cbc(fk, &ivs[i][..*fbs], c.from_pad)
                },
                to: if c.to_ecb {
                    CipherSpec::ecb(tk, c.to_pad)
                } else {
                    CipherSpec::cbc(tk, &ivs[(i + 1) % 400][..*tbs], c.to_pad)
                },
                data: &cts[i],
            }
        })
        .collect();
    // Method 1 padding is not removable: its items keep the padded length, as translate
    // does.
    let mut out = vec![0xEEu8; 5];
    let ends = hsm.translate_batch(&items, &mut out).unwrap();
    assert_eq!(ends.len(), items.len());
    let mut at = 5;
    for (i, (it, &end)) in items.iter().zip(&ends).enumerate() {
        let mut want = vec![0u8; it.data.len() + 32];
        let n = hsm.translate(&it.from, &it.to, it.data, &mut want).unwrap();
        assert_eq!(&out[at..end], &want[..n], "item {i}");
        at = end;
    }
    assert_eq!(&out[..5], &[0xEE; 5]);
    drop(hsm);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_item_fails_the_batch_like_translate_does() {
    let (hsm, dir) = store();
    let t = key(&hsm, "T", Algorithm::Tdes, 16);
    let a = key(&hsm, "A", Algorithm::Aes, 16);
    let iv8 = [1u8; 8];
    let iv16 = [2u8; 16];
    let from = CipherSpec::cbc(&t, &iv8, Padding::Iso9797M2);
    let to = CipherSpec::cbc(&a, &iv16, Padding::Iso9797M2);
    let mut cts: Vec<Vec<u8>> = (0..40u8)
        .map(|i| {
            let mut ct = vec![0u8; 48];
            let n = hsm.encrypt(&from, &[i; 20], &mut ct).unwrap();
            ct.truncate(n);
            ct
        })
        .collect();
    // Item 17: random bytes, whose padding will not check (with overwhelming probability
    // for a 0x80-then-zeros padding: the last block decrypts to noise).
    cts[17] = (0..24u8)
        .map(|i| i.wrapping_mul(97).wrapping_add(13))
        .collect();
    let items: Vec<TranslateItem<'_>> = cts
        .iter()
        .map(|ct| TranslateItem { from, to, data: ct })
        .collect();
    let mut want = vec![0u8; 64];
    let expected = hsm.translate(&from, &to, &cts[17], &mut want).unwrap_err();
    assert!(matches!(expected, Error::Crypto), "{expected}");
    let mut out = vec![7u8; 3];
    let err = hsm.translate_batch(&items, &mut out).unwrap_err();
    assert!(matches!(err, Error::Crypto), "{err}");
    assert_eq!(out, [7u8; 3], "out restored");
    drop(hsm);
    let _ = std::fs::remove_dir_all(dir);
}
