//! PIN block translation and MACs.

use super::Suite;
use crate::hsm::{Capability, KeySpec, PinSpec};
use crate::keyblock::{KeyUsage, ModeOfUse};
use crate::pinblock::{self, Pan, Pin, PinBlockFormat};
use crate::{Algorithm, Error, MacAlgorithm, Padding};

/// Refusals (need no valid block): a garbage block, format 0 → 1, a data key. Round trips
/// (need a block made on the host under a known PIN key): 0 → 3, 0 → 4, 0 → 0 decoded on
/// the host, and a wrong PAN giving the opaque error.
pub(super) fn pin_translation(s: &mut Suite<'_>) {
    let needs = [
        Capability::KeyAlgorithm(Algorithm::Tdes),
        Capability::PinFormat(PinBlockFormat::Iso0),
        Capability::PinFormat(PinBlockFormat::Iso3),
    ];
    let refusals = s.can_run("pin.refusals", &needs);
    let round_trip = s.can_run_known("pin.round-trip", &needs);
    let iso4 = s.can_run_known(
        "pin.round-trip/ISO-4",
        &[
            needs[0],
            needs[1],
            needs[2],
            Capability::PinFormat(PinBlockFormat::Iso4),
        ],
    );
    if !refusals {
        return;
    }
    let hsm = s.hsm;
    let pan = Pan::new("4111111111111111").expect("pan");
    let pin = Pin::new("1234").expect("pin");
    let p0 = |what: &str, alg| KeySpec::new(&s.label(what), alg, 16, KeyUsage::P0, ModeOfUse::B);
    let t = s.make(&p0("pt", Algorithm::Tdes)).expect("make a PIN key");
    let iso = |key, format| PinSpec { key, format };
    let from = iso(&t.handle, PinBlockFormat::Iso0);
    let to3 = iso(&t.handle, PinBlockFormat::Iso3);

    // Refusals.
    assert!(
        matches!(
            hsm.translate_pin(&from, &to3, &pan, &[0u8; 8]),
            Err(Error::Crypto)
        ),
        "a block that does not decode gives the opaque error"
    );
    assert!(
        matches!(
            hsm.translate_pin(&from, &to3, &pan, &[0u8; 7]),
            Err(Error::Crypto)
        ),
        "a block of the wrong length gives the opaque error"
    );
    let to1 = iso(&t.handle, PinBlockFormat::Iso1);
    assert!(
        matches!(
            hsm.translate_pin(&from, &to1, &pan, &[0u8; 8]),
            Err(Error::Policy(_))
        ),
        "format 0 never becomes format 1"
    );
    let d = s
        .generate(&KeySpec::new(
            &s.label("pd"),
            Algorithm::Tdes,
            16,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .expect("generate");
    assert!(
        matches!(
            hsm.translate_pin(&iso(&d.handle, PinBlockFormat::Iso0), &to3, &pan, &[0u8; 8]),
            Err(Error::Policy(_))
        ),
        "a data key cannot take part"
    );

    // Round trips from a block made on the host.
    let Some(kt) = t.clear.as_ref().filter(|_| round_trip) else {
        return;
    };
    let mut b0 = pinblock::encode(PinBlockFormat::Iso0, &pin, Some(&pan)).expect("encode");
    kt.cipher().encrypt_ecb(&mut b0[..]).expect("host encrypt");
    for format in [PinBlockFormat::Iso3, PinBlockFormat::Iso0] {
        let out = hsm
            .translate_pin(&from, &iso(&t.handle, format), &pan, &b0[..])
            .expect("translate pin");
        let mut c = out.clone();
        kt.cipher().decrypt_ecb(&mut c).expect("host decrypt");
        let got = pinblock::decode(format, &c, Some(&pan)).expect("decode");
        assert!(got == pin, "PIN survives translation to format {format:?}");
    }
    let other = Pan::new("5500000000000004").expect("pan");
    assert!(
        matches!(
            hsm.translate_pin(&from, &to3, &other, &b0[..]),
            Err(Error::Crypto)
        ),
        "a wrong PAN gives the opaque error"
    );
    if iso4 {
        let a = s.make(&p0("pa", Algorithm::Aes)).expect("make");
        let ka = a.clear.as_ref().expect("a known key");
        let out = hsm
            .translate_pin(&from, &iso(&a.handle, PinBlockFormat::Iso4), &pan, &b0[..])
            .expect("translate pin to format 4");
        let got = pinblock::decode_iso4(ka, &out, &pan).expect("decode 4");
        assert!(got == pin, "PIN survives translation to format 4");
    }
}

/// Per MAC algorithm, under a key generated (or, with known keys, imported) with mode C:
/// generate then verify, a 4-byte truncation verifies, a 3-byte one or a changed tag or text
/// does not; with known keys, the HSM's tag equals the host's.
pub(super) fn macs(s: &mut Suite<'_>) {
    let hsm = s.hsm;
    for (alg, usage, len) in [
        (MacAlgorithm::Retail, KeyUsage::M3, 16),
        (MacAlgorithm::CbcTdes, KeyUsage::M1, 16),
        (MacAlgorithm::CbcAes, KeyUsage::M1, 32),
        (MacAlgorithm::CmacTdes, KeyUsage::M6, 24),
        (MacAlgorithm::CmacAes, KeyUsage::M6, 16),
    ] {
        let needs = [Capability::Mac(alg)];
        if !s.can_run(format!("mac.round-trip/{alg:?}"), &needs) {
            s.can_run(format!("mac.known-answer/{alg:?}"), &needs);
            continue;
        }
        let key = s
            .make(&KeySpec::new(
                &s.label(&format!("mac-{alg:?}")),
                alg.key_algorithm(),
                len,
                usage,
                ModeOfUse::C,
            ))
            .expect("make a MAC key");
        let h = &key.handle;
        let data = b"record 000001 PAN 4111111111111111";
        let tag = hsm
            .generate_mac(h, alg, Padding::Iso9797M2, data)
            .expect("mac");
        hsm.verify_mac(h, alg, Padding::Iso9797M2, data, tag.as_bytes())
            .expect("verify");
        hsm.verify_mac(h, alg, Padding::Iso9797M2, data, &tag.as_bytes()[..4])
            .expect("verify a 4-byte truncation");
        let refused = |mac: &[u8], data: &[u8]| {
            matches!(
                hsm.verify_mac(h, alg, Padding::Iso9797M2, data, mac),
                Err(Error::Crypto)
            )
        };
        assert!(refused(&tag.as_bytes()[..3], data), "{alg:?}: 3 bytes");
        let mut bad = tag.as_bytes().to_vec();
        bad[0] ^= 1;
        assert!(refused(&bad, data), "{alg:?}: a changed tag");
        assert!(
            refused(tag.as_bytes(), b"record 000002"),
            "{alg:?}: other data"
        );
        match &key.clear {
            Some(k) => {
                let want = crate::primitives::mac::mac(alg, k, Padding::Iso9797M2, data)
                    .expect("host mac");
                assert_eq!(tag, want, "{alg:?}: HSM and host agree");
                s.ran(format!("mac.known-answer/{alg:?}"));
            }
            None => {
                s.can_run_known(format!("mac.known-answer/{alg:?}"), &needs);
            }
        }
    }
}
