//! Keys in and out of the HSM: forming from components, export and import of key blocks.

use super::{Known, Suite};
use crate::hsm::{Capability, CipherSpec, ImportCheck, KeySpec};
use crate::keyblock::{self, KeyUsage, ModeOfUse, Version};
use crate::{Algorithm, Error, Kcv, Padding, SecretKey};

/// Two fixed TDES components with their KCVs: a component KCV in the wrong order or a wrong
/// KCV of the result is refused and stores nothing; the right ones form the key whose KCV
/// the host computes from the XOR; equal components (XOR zero) are refused.
pub(super) fn components(s: &mut Suite<'_>) {
    if !s.can_run(
        "components",
        &[
            Capability::FormFromComponents,
            Capability::KeyAlgorithm(Algorithm::Tdes),
        ],
    ) {
        return;
    }
    let hsm = s.hsm;
    let c1 = hex::decode("0123456789ABCDEFFEDCBA9876543210").expect("hex");
    let c2 = hex::decode("3B6F9C2A5D8E1F47A2C4E6F8091B3D5F").expect("hex");
    let k1 = SecretKey::new(Algorithm::Tdes, &c1).expect("key").kcv();
    let k2 = SecretKey::new(Algorithm::Tdes, &c2).expect("key").kcv();
    let mut x: Vec<u8> = c1.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
    crate::set_odd_parity(&mut x);
    let want = SecretKey::new(Algorithm::Tdes, &x).expect("key").kcv();
    let spec = KeySpec::new(
        &s.label("cmp"),
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
        &s.label("cmp0"),
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

/// Export then import under a generated KEK, per key-block version (D under an AES KEK, B
/// under a TDES KEK); the refusals; and, with known keys, the exported block unwrapped on
/// the host.
pub(super) fn export_import(s: &mut Suite<'_>) {
    for (version, kek_alg, kek_len, key_alg) in [
        (Version::D, Algorithm::Aes, 32, Algorithm::Aes),
        (Version::B, Algorithm::Tdes, 24, Algorithm::Tdes),
    ] {
        if s.can_run(
            format!("export-import/{version:?}"),
            &[
                Capability::ExportKeyBlock(version),
                Capability::ImportKeyBlock(version),
                Capability::KeyAlgorithm(kek_alg),
                Capability::KeyAlgorithm(key_alg),
            ],
        ) {
            round_trip(s, version, (kek_alg, kek_len), key_alg);
        }
    }
    if s.can_run(
        "export-import.refusals",
        &[
            Capability::ExportKeyBlock(Version::D),
            Capability::ImportKeyBlock(Version::D),
            Capability::KeyAlgorithm(Algorithm::Tdes),
        ],
    ) {
        refusals(s);
    }
    if s.can_run_known(
        "export-import.known-answer",
        &[Capability::ExportKeyBlock(Version::D)],
    ) && let Ok(known) = &s.known
    {
        known_answer(s, known);
    }
}

fn round_trip(s: &mut Suite<'_>, version: Version, kek: (Algorithm, usize), key_alg: Algorithm) {
    let hsm = s.hsm;
    let v = format!("{version:?}");
    let kek = hsm
        .generate_key(&KeySpec::new(
            &s.label(&format!("ex-kek-{v}")),
            kek.0,
            kek.1,
            KeyUsage::K0,
            ModeOfUse::B,
        ))
        .expect("generate a KEK")
        .handle;
    let spec = KeySpec::new(
        &s.label(&format!("ex-key-{v}")),
        key_alg,
        16,
        KeyUsage::D0,
        ModeOfUse::B,
    )
    .exportable();
    let key = hsm.generate_key(&spec).expect("generate");
    let block = hsm.export_key_block(&key.handle, &kek).expect("export");
    let header = keyblock::inspect(&block).expect("a TR-31 block");
    assert_eq!(header.version, version, "key block version");
    assert_eq!(header.usage, KeyUsage::D0);
    assert_eq!(header.mode_of_use, ModeOfUse::B);

    // What the sender states with the block is checked before anything is stored.
    let label = s.label(&format!("ex-copy-{v}"));
    let wrong = Kcv::from_hex(if key_alg == Algorithm::Aes {
        "0000000000"
    } else {
        "000000"
    })
    .expect("kcv");
    assert!(matches!(
        hsm.import_key_block_checked(
            &label,
            &kek,
            &block,
            &ImportCheck {
                kcv: Some(&wrong),
                usages: &[],
            }
        ),
        Err(Error::KcvMismatch { .. })
    ));
    assert!(matches!(
        hsm.import_key_block_checked(
            &label,
            &kek,
            &block,
            &ImportCheck {
                kcv: None,
                usages: &[KeyUsage::P0],
            }
        ),
        Err(Error::Policy(_))
    ));
    assert!(
        hsm.find_key(&label).is_err(),
        "nothing stored after a refused import"
    );
    let copy = hsm
        .import_key_block_checked(
            &label,
            &kek,
            &block,
            &ImportCheck {
                kcv: Some(&key.kcv),
                usages: &[KeyUsage::D0],
            },
        )
        .expect("import");
    assert_eq!(copy.kcv, key.kcv, "the copy has the KCV of the original");
    assert_eq!(copy.spec.usage, KeyUsage::D0);
    assert_eq!(copy.spec.algorithm, key_alg);
    // The copy decrypts what the original encrypted: the same key, without its clear value.
    let iv = vec![3u8; key_alg.block_size()];
    let msg = b"exported and imported";
    let mut ct = [0u8; 48];
    let n = hsm
        .encrypt(
            &CipherSpec::cbc(&key.handle, &iv, Padding::Iso9797M2),
            msg,
            &mut ct,
        )
        .expect("encrypt under the original");
    let mut pt = [0u8; 48];
    let k = hsm
        .decrypt(
            &CipherSpec::cbc(&copy.handle, &iv, Padding::Iso9797M2),
            &ct[..n],
            &mut pt,
        )
        .expect("decrypt under the copy");
    assert_eq!(&pt[..k], msg);
}

fn refusals(s: &mut Suite<'_>) {
    let hsm = s.hsm;
    let generate = |what: &str, alg, len, usage, exportable: bool| {
        let spec = KeySpec::new(&s.label(what), alg, len, usage, ModeOfUse::B);
        let spec = if exportable { spec.exportable() } else { spec };
        hsm.generate_key(&spec).expect("generate").handle
    };
    let kek = generate("rf-kek", Algorithm::Aes, 32, KeyUsage::K0, false);
    let key = generate("rf-key", Algorithm::Aes, 16, KeyUsage::D0, true);
    // Not exportable.
    let ne = generate("rf-ne", Algorithm::Aes, 16, KeyUsage::D0, false);
    assert!(matches!(
        hsm.export_key_block(&ne, &kek),
        Err(Error::Policy(_))
    ));
    // A weaker KEK.
    let weak = generate("rf-weak", Algorithm::Tdes, 16, KeyUsage::K0, false);
    let strong = generate("rf-strong", Algorithm::Aes, 32, KeyUsage::D0, true);
    assert!(hsm.export_key_block(&strong, &weak).is_err());
    // A data key is not a KEK.
    assert!(matches!(
        hsm.export_key_block(&key, &strong),
        Err(Error::Policy(_))
    ));
    // Tampered block: refused, nothing stored.
    let block = hsm.export_key_block(&key, &kek).expect("export");
    let mut t = block.into_bytes();
    let i = t.len() - 3;
    t[i] = if t[i] == b'0' { b'1' } else { b'0' };
    let t = String::from_utf8(t).expect("ascii");
    let label = s.label("rf-tamp");
    assert!(hsm.import_key_block(&label, &kek, &t).is_err());
    assert!(hsm.find_key(&label).is_err());
}

/// A key exported under the suite's known KEK unwraps on the host to the key whose KCV the
/// HSM reports.
fn known_answer(s: &Suite<'_>, known: &Known) {
    let hsm = s.hsm;
    let spec = KeySpec::new(
        &s.label("ex-ktk"),
        Algorithm::Aes,
        16,
        KeyUsage::D0,
        ModeOfUse::B,
    )
    .exportable();
    let ktk = hsm.generate_key(&spec).expect("generate");
    let block = hsm
        .export_key_block(&ktk.handle, &known.kek)
        .expect("export");
    let (header, clear) = keyblock::unwrap(
        &known.kek_clear,
        &block,
        &keyblock::UnwrapPolicy {
            allow_legacy: false,
        },
    )
    .expect("unwrap on the host");
    assert_eq!(header.version, Version::D);
    assert_eq!(header.usage, KeyUsage::D0);
    assert_eq!(
        clear.kcv(),
        ktk.kcv,
        "exported key has the KCV the HSM reports"
    );
}
