//! The conformance suite every [`Hsm`] backend's tests run: `run_all(&hsm)`.
//!
//! It panics (like an assertion) at the first behaviour that differs from the contract of
//! the trait. Keys it creates carry a random label prefix, so it can run against a store
//! that already holds keys; it deletes what it created.
//!
//! Where a check needs to know a key's clear value (to build a valid PIN block or key block
//! to feed the HSM), the key is formed from clear components chosen here — the way a key
//! ceremony gives both sides the same key.

use super::policy::Operation;
use super::{CipherSpec, Hsm, KeyHandle, KeySpec, PinSpec, TranslateItem};
use crate::keyblock::{self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use crate::pinblock::{self, Pan, Pin, PinBlockFormat};
use crate::{Algorithm, Error, Kcv, MacAlgorithm, Padding, SecretKey};

/// Runs every check against `hsm`.
pub fn run_all(hsm: &dyn Hsm) {
    let p = prefix();
    capabilities(hsm);
    key_management(hsm, &p);
    data_round_trips(hsm, &p);
    translation(hsm, &p);
    components(hsm, &p);
    export_import(hsm, &p);
    pin_translation(hsm, &p);
    macs(hsm, &p);
    usage_matrix(hsm, &p);
    cleanup(hsm, &p);
}

fn prefix() -> String {
    let mut r = [0u8; 4];
    crate::fill_random(&mut r).expect("rng");
    format!("conf{}", hex::encode(r))
}

fn cleanup(hsm: &dyn Hsm, p: &str) {
    for k in hsm.list_keys().expect("list") {
        if k.spec.label.starts_with(p) {
            hsm.delete_key(&k.handle).expect("delete");
        }
    }
}

/// Random bytes with (for TDES) odd parity, that pass key hygiene.
fn clear_key(alg: Algorithm, len: usize) -> SecretKey {
    SecretKey::generate(alg, len).expect("generate clear key")
}

/// Forms a key in the HSM from two components whose XOR is `key`; returns its handle.
fn form(hsm: &dyn Hsm, spec: &KeySpec, key: &SecretKey) -> crate::Result<KeyHandle> {
    let c1 = clear_key(spec.algorithm, spec.len);
    let c2: Vec<u8> = c1
        .expose_secret()
        .iter()
        .zip(key.expose_secret())
        .map(|(a, b)| a ^ b)
        .collect();
    hsm.form_key_from_components(spec, &[c1.expose_secret(), &c2], &[], Some(&key.kcv()))
        .map(|i| i.handle)
}

fn capabilities(hsm: &dyn Hsm) {
    let c = hsm.capabilities();
    assert!(!c.backend().is_empty());
    assert!(
        c.supports(super::Capability::KeyAlgorithm(Algorithm::Aes)),
        "AES is required"
    );
}

fn key_management(hsm: &dyn Hsm, p: &str) {
    let label = format!("{p}-km");
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
}

fn data_round_trips(hsm: &dyn Hsm, p: &str) {
    for (alg, len) in [
        (Algorithm::Tdes, 16),
        (Algorithm::Tdes, 24),
        (Algorithm::Aes, 16),
        (Algorithm::Aes, 32),
    ] {
        let key = clear_key(alg, len);
        let spec = KeySpec::new(
            &format!("{p}-rt-{alg}-{len}"),
            alg,
            len,
            KeyUsage::D0,
            ModeOfUse::B,
        );
        let h = form(hsm, &spec, &key).expect("form");
        let iv = vec![0x5A; alg.block_size()];
        for padding in [Padding::Iso9797M2, Padding::Pkcs7, Padding::Iso9797M1] {
            for spec in [
                CipherSpec::ecb(&h, padding),
                CipherSpec::cbc(&h, &iv, padding),
            ] {
                let msg = b"5413330089020011=2512201";
                let mut ct = [0u8; 64];
                let n = hsm.encrypt(&spec, msg, &mut ct).expect("encrypt");
                // Independent check with the clear key.
                let mut want = [0u8; 64];
                let m = key
                    .cipher()
                    .encrypt(spec.mode, spec.iv, padding, msg, &mut want)
                    .expect("host encrypt");
                assert_eq!(
                    &ct[..n],
                    &want[..m],
                    "HSM and host agree ({alg} {:?} {padding:?})",
                    spec.mode
                );
                let mut pt = [0u8; 64];
                let k = hsm.decrypt(&spec, &ct[..n], &mut pt).expect("decrypt");
                if padding == Padding::Iso9797M1 {
                    assert_eq!(&pt[..msg.len()], msg);
                } else {
                    assert_eq!(&pt[..k], msg);
                }
            }
        }
        let mut small = [0u8; 4];
        assert!(
            matches!(
                hsm.encrypt(
                    &CipherSpec::ecb(&h, Padding::Pkcs7),
                    b"0123456789",
                    &mut small
                ),
                Err(Error::BufferTooSmall { .. })
            ),
            "a short output buffer is reported"
        );
    }
}

fn translation(hsm: &dyn Hsm, p: &str) {
    let ka = clear_key(Algorithm::Tdes, 16);
    let kb = clear_key(Algorithm::Aes, 16);
    let a = form(
        hsm,
        &KeySpec::new(
            &format!("{p}-tr-a"),
            Algorithm::Tdes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ),
        &ka,
    )
    .expect("form a");
    let b = form(
        hsm,
        &KeySpec::new(
            &format!("{p}-tr-b"),
            Algorithm::Aes,
            16,
            KeyUsage::D0,
            ModeOfUse::E,
        ),
        &kb,
    )
    .expect("form b");
    let msg = b"JOHN Q PUBLIC/MR";
    let iv_a = [1u8; 8];
    let iv_b = [2u8; 16];
    let mut ct = [0u8; 32];
    let n = ka
        .cipher()
        .encrypt(
            crate::Mode::Cbc,
            Some(&iv_a),
            Padding::Iso9797M2,
            msg,
            &mut ct,
        )
        .expect("host");
    let from = CipherSpec::cbc(&a, &iv_a, Padding::Iso9797M2);
    let to = CipherSpec::cbc(&b, &iv_b, Padding::Iso9797M2);
    let mut out = [0u8; 48];
    let m = hsm
        .translate(&from, &to, &ct[..n], &mut out)
        .expect("translate");
    let mut pt = [0u8; 48];
    let k = kb
        .cipher()
        .decrypt(
            crate::Mode::Cbc,
            Some(&iv_b),
            Padding::Iso9797M2,
            &out[..m],
            &mut pt,
        )
        .expect("host decrypt");
    assert_eq!(&pt[..k], msg);
    // The target key (mode E) cannot decrypt: translating backwards is refused.
    assert!(matches!(
        hsm.translate(&to, &from, &out[..m], &mut pt),
        Err(Error::Policy(_))
    ));
    // Batch: all or nothing.
    let items = [
        TranslateItem {
            from,
            to,
            data: &ct[..n],
        },
        TranslateItem {
            from,
            to,
            data: &ct[..n],
        },
    ];
    let mut buf = vec![9u8; 3];
    let ends = hsm.translate_batch(&items, &mut buf).expect("batch");
    assert_eq!(ends, vec![3 + m, 3 + 2 * m]);
    assert_eq!(&buf[3..3 + m], &out[..m]);
    let mut bad = ct;
    bad[n - 1] ^= 0xFF; // breaks the padding of the second item
    let items = [
        TranslateItem {
            from,
            to,
            data: &ct[..n],
        },
        TranslateItem {
            from,
            to,
            data: &bad[..n],
        },
    ];
    let mut buf = vec![9u8; 3];
    assert!(hsm.translate_batch(&items, &mut buf).is_err());
    assert_eq!(
        buf,
        vec![9u8; 3],
        "a failed batch leaves the output as it was"
    );
}

fn components(hsm: &dyn Hsm, p: &str) {
    let c1 = hex::decode("0123456789ABCDEFFEDCBA9876543210").expect("hex");
    let c2 = hex::decode("3B6F9C2A5D8E1F47A2C4E6F8091B3D5F").expect("hex");
    let k1 = SecretKey::new(Algorithm::Tdes, &c1).expect("key").kcv();
    let k2 = SecretKey::new(Algorithm::Tdes, &c2).expect("key").kcv();
    let mut x: Vec<u8> = c1.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
    crate::set_odd_parity(&mut x);
    let want = SecretKey::new(Algorithm::Tdes, &x).expect("key").kcv();
    let spec = KeySpec::new(
        &format!("{p}-cmp"),
        Algorithm::Tdes,
        16,
        KeyUsage::K0,
        ModeOfUse::B,
    );
    let wrong = Kcv::from_hex("000000").expect("kcv");
    assert!(matches!(
        hsm.form_key_from_components(&spec, &[&c1, &c2], &[Some(k2), Some(k1)], None),
        Err(Error::KcvMismatch { .. })
    ));
    assert!(matches!(
        hsm.form_key_from_components(&spec, &[&c1, &c2], &[Some(k1), Some(k2)], Some(&wrong)),
        Err(Error::KcvMismatch { .. })
    ));
    assert!(
        hsm.find_key(&spec.label).is_err(),
        "nothing stored after a refusal"
    );
    let info = hsm
        .form_key_from_components(&spec, &[&c1, &c2], &[Some(k1), Some(k2)], Some(&want))
        .expect("components");
    assert_eq!(info.kcv, want);
    // Equal components XOR to zero: refused.
    let spec2 = KeySpec::new(
        &format!("{p}-cmp0"),
        Algorithm::Tdes,
        16,
        KeyUsage::K0,
        ModeOfUse::B,
    );
    assert!(
        hsm.form_key_from_components(&spec2, &[&c1, &c1], &[], None)
            .is_err()
    );
}

fn export_import(hsm: &dyn Hsm, p: &str) {
    let zmk = clear_key(Algorithm::Aes, 32);
    let kek = form(
        hsm,
        &KeySpec::new(
            &format!("{p}-zmk"),
            Algorithm::Aes,
            32,
            KeyUsage::K0,
            ModeOfUse::B,
        ),
        &zmk,
    )
    .expect("zmk");
    let spec = KeySpec::new(
        &format!("{p}-ktk"),
        Algorithm::Aes,
        16,
        KeyUsage::D0,
        ModeOfUse::B,
    )
    .exportable();
    let ktk = hsm.generate_key(&spec).expect("generate");
    let block = hsm.export_key_block(&ktk.handle, &kek).expect("export");
    let (header, clear) = keyblock::unwrap(
        &zmk,
        &block,
        &keyblock::UnwrapPolicy {
            allow_legacy: false,
        },
    )
    .expect("unwrap independently");
    assert_eq!(header.version, Version::D);
    assert_eq!(header.usage, KeyUsage::D0);
    assert_eq!(
        clear.kcv(),
        ktk.kcv,
        "exported key has the KCV the HSM reports"
    );
    let imported = hsm
        .import_key_block(&format!("{p}-ktk2"), &kek, &block)
        .expect("import");
    assert_eq!(imported.kcv, ktk.kcv);
    assert_eq!(imported.spec.usage, KeyUsage::D0);
    // Not exportable.
    let ne = hsm
        .generate_key(&KeySpec::new(
            &format!("{p}-ne"),
            Algorithm::Aes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .expect("generate");
    assert!(matches!(
        hsm.export_key_block(&ne.handle, &kek),
        Err(Error::Policy(_))
    ));
    // A weaker KEK.
    let weak = hsm
        .generate_key(&KeySpec::new(
            &format!("{p}-weak"),
            Algorithm::Tdes,
            16,
            KeyUsage::K0,
            ModeOfUse::B,
        ))
        .expect("generate");
    let strong = hsm
        .generate_key(
            &KeySpec::new(
                &format!("{p}-strong"),
                Algorithm::Aes,
                32,
                KeyUsage::D0,
                ModeOfUse::B,
            )
            .exportable(),
        )
        .expect("generate");
    assert!(hsm.export_key_block(&strong.handle, &weak.handle).is_err());
    // A data key is not a KEK.
    assert!(matches!(
        hsm.export_key_block(&ktk.handle, &strong.handle),
        Err(Error::Policy(_))
    ));
    // Tampered block: refused, nothing stored.
    let mut t = block.into_bytes();
    let i = t.len() - 3;
    t[i] = if t[i] == b'0' { b'1' } else { b'0' };
    let t = String::from_utf8(t).expect("ascii");
    assert!(
        hsm.import_key_block(&format!("{p}-tamp"), &kek, &t)
            .is_err()
    );
    assert!(hsm.find_key(&format!("{p}-tamp")).is_err());
}

fn pin_translation(hsm: &dyn Hsm, p: &str) {
    let pan = Pan::new("4111111111111111").expect("pan");
    let pin = Pin::new("1234").expect("pin");
    let kt = clear_key(Algorithm::Tdes, 16);
    let ka = clear_key(Algorithm::Aes, 16);
    let t = form(
        hsm,
        &KeySpec::new(
            &format!("{p}-pt"),
            Algorithm::Tdes,
            16,
            KeyUsage::P0,
            ModeOfUse::B,
        ),
        &kt,
    )
    .expect("form");
    let a = form(
        hsm,
        &KeySpec::new(
            &format!("{p}-pa"),
            Algorithm::Aes,
            16,
            KeyUsage::P0,
            ModeOfUse::B,
        ),
        &ka,
    )
    .expect("form");
    let mut b0 = pinblock::encode(PinBlockFormat::Iso0, &pin, Some(&pan)).expect("encode");
    kt.cipher().encrypt_ecb(&mut b0[..]).expect("enc");
    let from = PinSpec {
        key: &t,
        format: PinBlockFormat::Iso0,
    };
    for (key, format) in [
        (&t, PinBlockFormat::Iso3),
        (&a, PinBlockFormat::Iso4),
        (&t, PinBlockFormat::Iso0),
    ] {
        let to = PinSpec { key, format };
        let out = hsm
            .translate_pin(&from, &to, &pan, &b0[..])
            .expect("translate pin");
        let got = if format == PinBlockFormat::Iso4 {
            pinblock::decode_iso4(&ka, &out, &pan).expect("decode 4")
        } else {
            let mut c = out.clone();
            kt.cipher().decrypt_ecb(&mut c).expect("dec");
            pinblock::decode(format, &c, Some(&pan)).expect("decode")
        };
        assert!(got == pin, "PIN survives translation to format {format:?}");
    }
    // 0 -> 1 is refused by policy.
    let to1 = PinSpec {
        key: &t,
        format: PinBlockFormat::Iso1,
    };
    assert!(hsm.translate_pin(&from, &to1, &pan, &b0[..]).is_err());
    // A wrong PAN, a garbage block: the same opaque error.
    let other = Pan::new("5500000000000004").expect("pan");
    let to3 = PinSpec {
        key: &t,
        format: PinBlockFormat::Iso3,
    };
    let e1 = hsm.translate_pin(&from, &to3, &other, &b0[..]);
    assert!(
        matches!(e1, Err(Error::Crypto)),
        "wrong PAN gives the generic error"
    );
    assert!(matches!(
        hsm.translate_pin(&from, &to3, &pan, &[0u8; 8]),
        Err(Error::Crypto)
    ));
    // A data key cannot take part.
    let d = hsm
        .generate_key(&KeySpec::new(
            &format!("{p}-pd"),
            Algorithm::Tdes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .expect("gen");
    let from_d = PinSpec {
        key: &d.handle,
        format: PinBlockFormat::Iso0,
    };
    assert!(matches!(
        hsm.translate_pin(&from_d, &to3, &pan, &b0[..]),
        Err(Error::Policy(_))
    ));
}

fn macs(hsm: &dyn Hsm, p: &str) {
    for (alg, usage, len) in [
        (MacAlgorithm::Retail, KeyUsage::M3, 16),
        (MacAlgorithm::CbcTdes, KeyUsage::M1, 16),
        (MacAlgorithm::CbcAes, KeyUsage::M1, 32),
        (MacAlgorithm::CmacTdes, KeyUsage::M6, 24),
        (MacAlgorithm::CmacAes, KeyUsage::M6, 16),
    ] {
        let k = clear_key(alg.key_algorithm(), len);
        let h = form(
            hsm,
            &KeySpec::new(
                &format!("{p}-mac-{alg}"),
                alg.key_algorithm(),
                len,
                usage,
                ModeOfUse::C,
            ),
            &k,
        )
        .expect("form");
        let data = b"record 000001 PAN 4111111111111111";
        let tag = hsm
            .generate_mac(&h, alg, Padding::Iso9797M2, data)
            .expect("mac");
        let want =
            crate::primitives::mac::mac(alg, &k, Padding::Iso9797M2, data).expect("host mac");
        assert_eq!(tag, want, "{alg}: HSM and host agree");
        hsm.verify_mac(&h, alg, Padding::Iso9797M2, data, tag.as_bytes())
            .expect("verify");
        let mut bad = tag.as_bytes().to_vec();
        bad[0] ^= 1;
        assert!(matches!(
            hsm.verify_mac(&h, alg, Padding::Iso9797M2, data, &bad),
            Err(Error::Crypto)
        ));
        assert!(matches!(
            hsm.verify_mac(
                &h,
                alg,
                Padding::Iso9797M2,
                b"record 000002",
                tag.as_bytes()
            ),
            Err(Error::Crypto)
        ));
    }
}

/// The cells of operation × usage × mode of use that must succeed, written by hand from
/// the rules (`docs/key-hierarchy.md` and the table in the doc comment of `policy.rs`) and independent
/// of [`policy::permits`](super::policy::permits), which is the code under test: a wrong row
/// there must fail this suite, not be copied into it. Each row: an operation, the usages
/// and the modes of use allowed for it (every usage with every mode of the row).
const ALLOWED: &[(Operation, &[KeyUsage], &[ModeOfUse])] = {
    use KeyUsage::{D0, K0, K1, M0, M1, M3, M5, M6, P0};
    use MacAlgorithm::{CbcAes, CbcTdes, CmacAes, CmacTdes, Retail};
    use ModeOfUse::{B, C, D, E, G, V};
    use Operation::{
        Decrypt, Encrypt, MacGenerate, MacVerify, PinDecrypt, PinEncrypt, Unwrap, Wrap,
    };
    &[
        (Encrypt, &[D0], &[B, E]),
        (Decrypt, &[D0], &[B, D]),
        (PinDecrypt, &[P0], &[B, D]),
        (PinEncrypt, &[P0], &[B, E]),
        (MacGenerate(Retail), &[M3], &[C, G]),
        (MacGenerate(CbcTdes), &[M0, M1], &[C, G]),
        (MacGenerate(CbcAes), &[M1], &[C, G]),
        (MacGenerate(CmacTdes), &[M5, M6], &[C, G]),
        (MacGenerate(CmacAes), &[M5, M6], &[C, G]),
        (MacVerify(Retail), &[M3], &[C, V]),
        (MacVerify(CbcTdes), &[M0, M1], &[C, V]),
        (MacVerify(CbcAes), &[M1], &[C, V]),
        (MacVerify(CmacTdes), &[M5, M6], &[C, V]),
        (MacVerify(CmacAes), &[M5, M6], &[C, V]),
        (Wrap, &[K0, K1], &[B, E]),
        (Unwrap, &[K0, K1], &[B, D]),
    ]
};

/// Whether [`ALLOWED`] allows the cell.
fn expected_allowed(op: Operation, usage: KeyUsage, mode: ModeOfUse) -> bool {
    ALLOWED
        .iter()
        .any(|(o, u, m)| *o == op && u.contains(&usage) && m.contains(&mode))
}

/// Walks operation × usage × mode of use: exactly the cells of [`ALLOWED`] succeed; every
/// other cell is refused with [`Error::Policy`] (or the key cannot even be created with
/// that usage and mode). Then checks the rules of `docs/key-hierarchy.md` one by one.
fn usage_matrix(hsm: &dyn Hsm, p: &str) {
    use KeyUsage as U;
    use ModeOfUse as M;
    let usages = [
        U::D0,
        U::P0,
        U::K0,
        U::K1,
        U::M0,
        U::M1,
        U::M3,
        U::M5,
        U::M6,
        U::B0,
    ];
    let modes = [M::B, M::C, M::D, M::E, M::G, M::N, M::S, M::V, M::X];
    // The table names each operation once, and only the usages and modes walked here.
    for op in Operation::ALL {
        assert_eq!(
            ALLOWED.iter().filter(|(o, _, _)| *o == op).count(),
            1,
            "{op:?} in ALLOWED"
        );
    }
    assert!(ALLOWED.iter().all(|(_, us, ms)| {
        us.iter().all(|u| usages.contains(u)) && ms.iter().all(|m| modes.contains(m))
    }));

    let pan = Pan::new("4111111111111111").expect("pan");
    let pin = Pin::new("987654").expect("pin");
    // Partners the operations need: a TDES PIN key and an exportable AES key.
    let pin_partner_key = clear_key(Algorithm::Tdes, 16);
    let pin_partner = form(
        hsm,
        &KeySpec::new(
            &format!("{p}-mx-pp"),
            Algorithm::Tdes,
            16,
            KeyUsage::P0,
            ModeOfUse::B,
        ),
        &pin_partner_key,
    )
    .expect("partner");
    let exportable = hsm
        .generate_key(
            &KeySpec::new(
                &format!("{p}-mx-ex"),
                Algorithm::Aes,
                16,
                KeyUsage::D0,
                ModeOfUse::B,
            )
            .exportable(),
        )
        .expect("exportable");
    let mut n = 0u32;
    // One cell: `None` when the key cannot be created, else the operation's result.
    let mut cell = |usage: KeyUsage, mode: ModeOfUse, op: Operation| {
        let (alg, len) = match op {
            Operation::MacGenerate(a) | Operation::MacVerify(a) => (a.key_algorithm(), 16),
            Operation::PinDecrypt | Operation::PinEncrypt => (Algorithm::Tdes, 16),
            Operation::Wrap | Operation::Unwrap => (Algorithm::Aes, 32),
            _ => (Algorithm::Aes, 16),
        };
        n += 1;
        let clear = clear_key(alg, len);
        let label = format!("{p}-mx-{n}");
        let spec = KeySpec::new(&label, alg, len, usage, mode);
        let h = match form(hsm, &spec, &clear) {
            Ok(h) => h,
            Err(e) => return (None, Some(e)),
        };
        let r = attempt(
            hsm,
            op,
            &h,
            &clear,
            &pin_partner,
            &pin_partner_key,
            &exportable.handle,
            &pan,
            &pin,
            &label,
        );
        hsm.delete_key(&h).expect("delete");
        (Some(r), None)
    };
    let refused = |r: &Option<crate::Result<()>>| matches!(r, None | Some(Err(Error::Policy(_))));

    let mut allowed = 0;
    for usage in usages {
        for mode in modes {
            for op in Operation::ALL {
                let want = expected_allowed(op, usage, mode);
                let (r, create_err) = cell(usage, mode, op);
                if want {
                    allowed += 1;
                    assert!(
                        matches!(r, Some(Ok(()))),
                        "{op:?} with {usage} / {mode:?} should succeed: {r:?} {create_err:?}"
                    );
                } else {
                    assert!(
                        refused(&r),
                        "{op:?} with {usage} / {mode:?} should be refused by policy: {r:?}"
                    );
                }
            }
        }
    }
    // Encrypt, decrypt, PIN decipher, PIN encipher: 1 usage x 2 modes each; wrap, unwrap:
    // 2 usages x 2 modes each; MAC generate and verify: (1 + 2 + 1 + 2 + 2) usages over the
    // five algorithms x 2 modes each.
    assert_eq!(allowed, 4 * 2 + 2 * 4 + 2 * 8 * 2);

    // The rules of `docs/key-hierarchy.md`, each on its own.
    for mode in modes {
        // A PIN key never decrypts data (nor encrypts it).
        assert!(
            refused(&cell(U::P0, mode, Operation::Decrypt).0),
            "a P0 / {mode:?} key decrypted data"
        );
        assert!(
            refused(&cell(U::P0, mode, Operation::Encrypt).0),
            "a P0 / {mode:?} key encrypted data"
        );
        // A data key never wraps (nor unwraps) keys.
        assert!(
            refused(&cell(U::D0, mode, Operation::Wrap).0),
            "a D0 / {mode:?} key wrapped a key"
        );
        assert!(
            refused(&cell(U::D0, mode, Operation::Unwrap).0),
            "a D0 / {mode:?} key unwrapped a key"
        );
    }
    // A MAC-verify (mode V) key never generates, whatever its usage and algorithm, and it
    // does verify (so the refusals above are not a key that cannot work at all).
    for usage in [U::M0, U::M1, U::M3, U::M5, U::M6] {
        for alg in [
            MacAlgorithm::Retail,
            MacAlgorithm::CbcTdes,
            MacAlgorithm::CbcAes,
            MacAlgorithm::CmacTdes,
            MacAlgorithm::CmacAes,
        ] {
            assert!(
                refused(&cell(usage, M::V, Operation::MacGenerate(alg)).0),
                "a {usage} / V key generated a {alg:?} MAC"
            );
        }
    }
    assert!(matches!(
        cell(U::M6, M::V, Operation::MacVerify(MacAlgorithm::CmacAes)).0,
        Some(Ok(()))
    ));
    assert!(matches!(
        cell(U::M3, M::V, Operation::MacVerify(MacAlgorithm::Retail)).0,
        Some(Ok(()))
    ));
}

#[allow(clippy::too_many_arguments)]
fn attempt(
    hsm: &dyn Hsm,
    op: Operation,
    h: &KeyHandle,
    clear: &SecretKey,
    pin_partner: &KeyHandle,
    pin_partner_key: &SecretKey,
    exportable: &KeyHandle,
    pan: &Pan,
    pin: &Pin,
    label: &str,
) -> crate::Result<()> {
    let mut out = [0u8; 64];
    match op {
        Operation::Encrypt => hsm
            .encrypt(&CipherSpec::ecb(h, Padding::None), &[0u8; 16], &mut out)
            .map(drop),
        Operation::Decrypt => hsm
            .decrypt(&CipherSpec::ecb(h, Padding::None), &[0u8; 16], &mut out)
            .map(drop),
        Operation::PinDecrypt => {
            let mut b = pinblock::encode(PinBlockFormat::Iso0, pin, Some(pan))?;
            clear.cipher().encrypt_ecb(&mut b[..])?;
            let from = PinSpec {
                key: h,
                format: PinBlockFormat::Iso0,
            };
            let to = PinSpec {
                key: pin_partner,
                format: PinBlockFormat::Iso0,
            };
            hsm.translate_pin(&from, &to, pan, &b[..]).map(drop)
        }
        Operation::PinEncrypt => {
            let mut b = pinblock::encode(PinBlockFormat::Iso0, pin, Some(pan))?;
            pin_partner_key.cipher().encrypt_ecb(&mut b[..])?;
            let from = PinSpec {
                key: pin_partner,
                format: PinBlockFormat::Iso0,
            };
            let to = PinSpec {
                key: h,
                format: PinBlockFormat::Iso0,
            };
            hsm.translate_pin(&from, &to, pan, &b[..]).map(drop)
        }
        Operation::MacGenerate(alg) => hsm
            .generate_mac(h, alg, Padding::Iso9797M1, b"data")
            .map(drop),
        Operation::MacVerify(alg) => {
            let tag = crate::primitives::mac::mac(alg, clear, Padding::Iso9797M1, b"data")?;
            hsm.verify_mac(h, alg, Padding::Iso9797M1, b"data", tag.as_bytes())
        }
        Operation::Wrap => hsm.export_key_block(exportable, h).map(drop),
        Operation::Unwrap => {
            let k = clear_key(Algorithm::Aes, 16);
            let header = Header::new(
                Version::D,
                KeyUsage::D0,
                KeyAlgorithm::Aes,
                ModeOfUse::B,
                Exportability::N,
            );
            let block = keyblock::wrap(clear, &header, &k, None)?;
            let info = hsm.import_key_block(&format!("{label}-imp"), h, &block)?;
            hsm.delete_key(&info.handle)
        }
    }
}
