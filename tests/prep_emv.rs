//! EMV ICC master-key derivation: known-answer vectors (`tests/data/emv.txt`, sources named
//! there) for Options A, B, C and auto, parity, and refusals.

mod common;

use pmp_core::hsm::emv::{
    IccDerivation, IccMethod, Psn, derive_icc_master_key, option_a_input, option_b_input,
    option_c_input,
};
use pmp_core::pinblock::Pan;
use pmp_core::{Algorithm, SecretKey, has_odd_parity};

fn method(s: &str) -> IccMethod {
    match s {
        "A" => IccMethod::A,
        "B" => IccMethod::B,
        "C" => IccMethod::C,
        _ => panic!("method {s}"),
    }
}

#[test]
fn icc_master_key_vectors() {
    let vectors = common::load("emv.txt");
    assert!(vectors.len() >= 18);
    let mut seen = std::collections::BTreeSet::new();
    for v in &vectors {
        let option: IccDerivation = v.get("Option").parse().unwrap();
        let imk_bytes = v.hex("IMK");
        let alg = if v.get("Method") == "C" {
            Algorithm::Aes
        } else {
            Algorithm::Tdes
        };
        let imk = SecretKey::new(alg, &imk_bytes).unwrap();
        let pan = Pan::new(v.get("PAN")).unwrap();
        let psn = Psn::parse(v.get("PSN")).unwrap();
        let want = method(v.get("Method"));
        assert_eq!(
            option.resolve(alg, v.get("PAN").len()).unwrap(),
            want,
            "line {}",
            v.line
        );
        let mk = derive_icc_master_key(&imk, option, &pan, psn).unwrap();
        assert_eq!(
            hex::encode_upper(mk.expose_secret()),
            v.get("ICC_MK"),
            "line {} ({})",
            v.line,
            v.get("Source")
        );
        assert_eq!(mk.algorithm(), alg);
        if alg == Algorithm::Tdes {
            assert!(has_odd_parity(mk.expose_secret()), "line {}", v.line);
        }
        if let Some(k) = v.opt("KCV") {
            assert_eq!(mk.kcv().to_string(), k, "line {}", v.line);
        }
        seen.insert((v.get("Method").to_string(), v.get("Source").to_string()));
    }
    // Every method is covered, and A and B by pyemv itself.
    for m in ["A", "B"] {
        assert!(seen.contains(&(m.to_string(), "pyemv".to_string())));
    }
    assert!(seen.contains(&("C".to_string(), "pyca-aes".to_string())));
}

#[test]
fn a_changed_input_changes_the_key() {
    let imk = SecretKey::from_hex(Algorithm::Tdes, "0123456789ABCDEFFEDCBA9876543210").unwrap();
    let pan = Pan::new("12345678901234567").unwrap();
    let base = derive_icc_master_key(&imk, IccDerivation::A, &pan, Psn::new(1).unwrap()).unwrap();
    let other_psn =
        derive_icc_master_key(&imk, IccDerivation::A, &pan, Psn::new(2).unwrap()).unwrap();
    assert_ne!(base, other_psn);
    let imk2 = SecretKey::from_hex(Algorithm::Tdes, "0123456789ABCDEFFEDCBA9876543211").unwrap();
    // Only a parity bit differs: same key.
    assert_eq!(
        base,
        derive_icc_master_key(&imk2, IccDerivation::A, &pan, Psn::new(1).unwrap()).unwrap()
    );
}

#[test]
fn derivation_inputs_by_hand() {
    // Option A: rightmost 16 digits of PAN || PSN ("12345678901234567" || "01").
    let pan = Pan::new("12345678901234567").unwrap();
    let psn = Psn::new(1).unwrap();
    assert_eq!(
        hex::encode_upper(option_a_input(&pan, psn)),
        "4567890123456701"
    );
    // A short PAN is left-padded with zeros: "123456789012" || "07" = 14 digits.
    let short = Pan::new("123456789012").unwrap();
    assert_eq!(
        hex::encode_upper(option_a_input(&short, Psn::new(7).unwrap())),
        "0012345678901207"
    );
    // Option C: 32 digits, zero-padded on the left.
    assert_eq!(
        hex::encode_upper(option_c_input(&pan, psn)),
        "0000000000000001234567890123456701"[2..]
    );
    // Option B: SHA-1 over the BCD bytes 01 23 45 67 89 01 23 45 67 01 (a leading 0 digit:
    // 19 digits) is 42018cced92658095af334207976ca56f2278dd6 (Python hashlib); its first 16
    // decimal digits, left to right, are Y.
    assert_eq!(
        hex::encode_upper(option_b_input(&pan, psn)),
        "4201892658095334"
    );
}

#[test]
fn options_that_do_not_suit_the_imk_are_refused() {
    let tdes = SecretKey::from_hex(Algorithm::Tdes, "0123456789ABCDEFFEDCBA9876543210").unwrap();
    let aes = SecretKey::new(Algorithm::Aes, &[0x11; 16]).unwrap();
    let pan = Pan::new("4111111111111111").unwrap();
    let psn = Psn::new(0).unwrap();
    assert!(derive_icc_master_key(&tdes, IccDerivation::C, &pan, psn).is_err());
    for o in [IccDerivation::A, IccDerivation::B] {
        assert!(derive_icc_master_key(&aes, o, &pan, psn).is_err());
    }
    assert!(Psn::new(100).is_err());
    assert!(Psn::parse("1A").is_err());
    assert!(Psn::parse("123").is_err());
    assert_eq!(Psn::parse("7").unwrap().value(), 7);
    assert!("a".parse::<IccDerivation>().is_err());
    assert_eq!(
        "auto".parse::<IccDerivation>().unwrap(),
        IccDerivation::Auto
    );
}
