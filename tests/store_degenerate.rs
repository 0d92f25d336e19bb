//! Degenerate keys are refused everywhere (issue 15): an all-zero key, an all-zero
//! component, two identical components — for AES as for TDES, through
//! `combine_components`, the software HSM's `form_key_from_components` and the production
//! LMK of `SoftHsm::init`.

use pmp_core::hsm::{Hsm, KeySpec, LmkComponent, LmkSource, SoftHsm};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::{Algorithm, Error, check_key_hygiene, combine_components};

struct TempDir(std::path::PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        TempDir(std::env::temp_dir().join(format!("pmp-degen-{name}-{}", hex::encode(r))))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn weak(r: pmp_core::Result<impl std::fmt::Debug>, why: &str) {
    match r {
        Err(Error::WeakKey(w)) => assert_eq!(w, why),
        other => panic!("expected WeakKey({why:?}), got {other:?}"),
    }
}

// Arbitrary component values (no vector needed: the property is that they are refused).
const A: &str = "0123456789ABCDEFFEDCBA98765432100123456789ABCDEFFEDCBA9876543210";
const B: &str = "A7C4E2F01B3D596187A9CBED0214365A3F5E7D9CB8A1C2E4D6F1082A4C6E8B0D";

#[test]
fn all_zero_keys_are_refused_for_aes_and_tdes() {
    weak(
        check_key_hygiene(Algorithm::Aes, &[0u8; 32]),
        "the key is all zero",
    );
    weak(
        check_key_hygiene(Algorithm::Aes, &[0u8; 16]),
        "the key is all zero",
    );
    // 01..01 is the all-zero TDES key with odd parity.
    weak(
        check_key_hygiene(Algorithm::Tdes, &[1u8; 16]),
        "the key is all zero",
    );
    // A one-bit AES key is not degenerate.
    let mut k = [0u8; 32];
    k[31] = 1;
    check_key_hygiene(Algorithm::Aes, &k).unwrap();
}

#[test]
fn zero_and_identical_components_are_refused() {
    let a = hex::decode(A).unwrap();
    let b = hex::decode(B).unwrap();
    for (alg, len) in [
        (Algorithm::Aes, 32),
        (Algorithm::Aes, 16),
        (Algorithm::Tdes, 16),
    ] {
        let (a, b) = (&a[..len], &b[..len]);
        let zero = vec![0u8; len];
        weak(
            combine_components(alg, &[(a, None), (a, None)]),
            "two key components are identical",
        );
        weak(
            combine_components(alg, &[(a, None), (b, None), (a, None)]),
            "two key components are identical",
        );
        weak(
            combine_components(alg, &[(a, None), (&zero, None)]),
            "a key component is all zero",
        );
        // Different, non-zero components form a key.
        combine_components(alg, &[(a, None), (b, None)]).unwrap();
    }
    // TDES: components differing only in parity bits are identical.
    let a16 = hex::decode(&A[..32]).unwrap();
    let mut a_flipped = a16.clone();
    a_flipped.iter_mut().for_each(|x| *x ^= 1);
    weak(
        combine_components(Algorithm::Tdes, &[(&a16, None), (&a_flipped, None)]),
        "two key components are identical",
    );
}

#[test]
fn the_hsm_refuses_degenerate_components_and_stores_nothing() {
    let dir = TempDir::new("form");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let a = hex::decode(A).unwrap();
    let spec = KeySpec::new("K", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B);
    weak(
        hsm.form_key_from_components(&spec, &[&a, &a], &[], None),
        "two key components are identical",
    );
    weak(
        hsm.form_key_from_components(&spec, &[&a, &[0u8; 32]], &[], None),
        "a key component is all zero",
    );
    assert!(hsm.list_keys().unwrap().is_empty());
}

#[test]
fn a_production_lmk_from_identical_or_zero_components_is_refused() {
    let a = hex::decode(A).unwrap();
    for (comps, why) in [
        (vec![&a[..], &a[..]], "two key components are identical"),
        (vec![&a[..], &[0u8; 32][..]], "a key component is all zero"),
    ] {
        let dir = TempDir::new("lmk");
        let src = LmkSource::Components(comps.iter().map(|c| LmkComponent::new(c, None)).collect());
        weak(SoftHsm::init(&dir.0, src), why);
    }
}
