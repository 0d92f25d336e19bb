//! The HSM's EMV operations on SoftHsm: ICC master keys derived inside the HSM and returned
//! only under the KTK (checked against `tests/data/emv.txt` by decrypting with the clear
//! test KTK), card PIN blocks (ISO format 2) under a PTK, and the policy rows.

mod common;

use std::path::PathBuf;

use pmp_core::hsm::emv::{IccDerivation, IccKeyRequest, IccMethod, Psn};
use pmp_core::hsm::policy::{Operation, permits};
use pmp_core::hsm::{Capability, Hsm, KeyHandle, KeySpec, PinSpec, SoftHsm};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::pinblock::{self, Pan, Pin, PinBlockFormat};
use pmp_core::{Algorithm, Error, SecretKey};

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        TempDir(std::env::temp_dir().join(format!("pmp-test-{name}-{}", hex::encode(r))))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stores a known clear key (as two components) with the given attributes.
fn known(hsm: &SoftHsm, spec: KeySpec, clear: &[u8]) -> KeyHandle {
    let c2: Vec<u8> = (0..clear.len())
        .map(|i| (i as u8).wrapping_mul(37) | 1)
        .collect();
    let c1: Vec<u8> = clear.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
    hsm.form_key_from_components(&spec, &[&c1, &c2], &[], None)
        .unwrap()
        .handle
}

const IMK: &str = "0123456789ABCDEFFEDCBA9876543210";
const KTK: &str = "1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A";

fn imks(hsm: &SoftHsm, alg: Algorithm, clear: &[u8], prefix: &str) -> [KeyHandle; 3] {
    let mk = |name: &str, usage| {
        known(
            hsm,
            KeySpec::new(
                &format!("{prefix}-{name}"),
                alg,
                clear.len(),
                usage,
                ModeOfUse::X,
            ),
            clear,
        )
    };
    [
        mk("AC", KeyUsage::E0),
        mk("SMI", KeyUsage::E2),
        mk("SMC", KeyUsage::E1),
    ]
}

fn ktk(hsm: &SoftHsm, label: &str) -> (KeyHandle, SecretKey) {
    let clear = hex::decode(KTK).unwrap();
    let h = known(
        hsm,
        KeySpec::new(label, Algorithm::Aes, 32, KeyUsage::K0, ModeOfUse::B).exportable(),
        &clear,
    );
    (h, SecretKey::new(Algorithm::Aes, &clear).unwrap())
}

#[test]
fn icc_master_keys_come_out_only_under_the_ktk_and_match_the_vectors() {
    let dir = TempDir::new("emv-derive");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    assert!(hsm.capabilities().supports(Capability::IccKeyDerivation));
    let (ktk, ktk_clear) = ktk(&hsm, "KTK");
    let tdes = imks(&hsm, Algorithm::Tdes, &hex::decode(IMK).unwrap(), "T");
    let mut checked = 0;
    for v in common::load("emv.txt") {
        let method = v.get("Method");
        let handles = if method == "C" {
            let h = imks(&hsm, Algorithm::Aes, &v.hex("IMK"), &format!("A{}", v.line));
            Some(h)
        } else if v.get("IMK") == IMK {
            None
        } else {
            continue;
        };
        let hs = handles.as_ref().unwrap_or(&tdes);
        let pan = Pan::new(v.get("PAN")).unwrap();
        let out = hsm.derive_icc_master_keys(&IccKeyRequest {
            imks: [&hs[0], &hs[1], &hs[2]],
            derivation: v.get("Option").parse().unwrap(),
            pan: &pan,
            psn: Psn::parse(v.get("PSN")).unwrap(),
            ktk: &ktk,
        });
        if v.get("IMK").len() == 48 {
            // Three AES-192 keys (72 bytes) do not fill whole AES blocks: refused, named.
            assert!(
                matches!(out, Err(Error::Invalid { field: "KTK", .. })),
                "{out:?}"
            );
            continue;
        }
        let out = out.unwrap();
        let want = v.get("ICC_MK");
        assert_eq!(out.encrypted.len(), 3 * want.len() / 2);
        assert!(!hex::encode_upper(&out.encrypted).contains(want));
        let mut clear = out.encrypted.clone();
        ktk_clear.cipher().decrypt_ecb(&mut clear).unwrap();
        // The three IMKs are equal here, so the three ICC master keys are too.
        assert_eq!(hex::encode_upper(&clear), want.repeat(3), "line {}", v.line);
        if let Some(k) = v.opt("KCV") {
            for kcv in &out.kcvs {
                assert_eq!(kcv.to_string(), k);
            }
        }
        let m = match method {
            "A" => IccMethod::A,
            "B" => IccMethod::B,
            _ => IccMethod::C,
        };
        assert_eq!(out.method, m);
        assert!(!format!("{out:?}").contains(&want[..8]));
        checked += 1;
    }
    assert!(checked >= 8, "{checked}");
}

#[test]
fn the_three_imks_give_three_different_keys_in_order() {
    let dir = TempDir::new("emv-order");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let (ktk, ktk_clear) = ktk(&hsm, "KTK");
    // IMK-AC is the vector's IMK; SMI and SMC differ.
    let ac = known(
        &hsm,
        KeySpec::new("AC", Algorithm::Tdes, 16, KeyUsage::E0, ModeOfUse::X),
        &hex::decode(IMK).unwrap(),
    );
    let [_, smi, smc] = imks(
        &hsm,
        Algorithm::Tdes,
        &hex::decode("F1E0D3C2B5A49786F1E0D3C2B5A4978C").unwrap(),
        "O",
    );
    let pan = Pan::new("12345678901234567").unwrap();
    let out = hsm
        .derive_icc_master_keys(&IccKeyRequest {
            imks: [&ac, &smi, &smc],
            derivation: IccDerivation::A,
            pan: &pan,
            psn: Psn::new(45).unwrap(),
            ktk: &ktk,
        })
        .unwrap();
    let mut clear = out.encrypted.clone();
    ktk_clear.cipher().decrypt_ecb(&mut clear).unwrap();
    // tests/data/emv.txt (pyemv): IMK 0123..3210, PAN 12345678901234567, PSN 45, Option A.
    assert_eq!(
        hex::encode_upper(&clear[..16]),
        "946DC1A8C78A624519BC4645CB073737"
    );
    assert_eq!(out.kcvs[0].to_string(), "FF089D");
    assert_eq!(&clear[16..32], &clear[32..48]);
    assert_ne!(&clear[..16], &clear[16..32]);
}

#[test]
fn derivation_policy() {
    let dir = TempDir::new("emv-policy");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    let (ktk, _) = ktk(&hsm, "KTK");
    let [ac, smi, smc] = imks(&hsm, Algorithm::Tdes, &hex::decode(IMK).unwrap(), "P");
    let pan = Pan::new("4111111111111111").unwrap();
    let req = |imks: [&KeyHandle; 3], ktk: &KeyHandle| {
        hsm.derive_icc_master_keys(&IccKeyRequest {
            imks,
            derivation: IccDerivation::Auto,
            pan: &pan,
            psn: Psn::new(0).unwrap(),
            ktk,
        })
    };
    req([&ac, &smi, &smc], &ktk).unwrap();
    // Roles swapped: IMK-SMC (E1) as IMK-AC.
    assert!(matches!(
        req([&smc, &smi, &ac], &ktk),
        Err(Error::Policy(_))
    ));
    // A data key as the KTK.
    let dk = hsm
        .generate_key(&KeySpec::new(
            "DK",
            Algorithm::Aes,
            32,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .unwrap();
    assert!(matches!(
        req([&ac, &smi, &smc], &dk.handle),
        Err(Error::Policy(_))
    ));
    // An E0 key without mode X does not derive.
    let n = hsm
        .generate_key(&KeySpec::new(
            "E0N",
            Algorithm::Tdes,
            16,
            KeyUsage::E0,
            ModeOfUse::N,
        ))
        .unwrap();
    assert!(matches!(
        req([&n.handle, &smi, &smc], &ktk),
        Err(Error::Policy(_))
    ));
    // AES ICC keys never go under a TDES KTK.
    let tktk = hsm
        .generate_key(&KeySpec::new(
            "TKTK",
            Algorithm::Tdes,
            16,
            KeyUsage::K0,
            ModeOfUse::B,
        ))
        .unwrap();
    let [a1, a2, a3] = imks(&hsm, Algorithm::Aes, &[7u8; 16], "AES");
    assert!(matches!(
        req([&a1, &a2, &a3], &tktk.handle),
        Err(Error::Policy(_))
    ));
    req([&a1, &a2, &a3], &ktk).unwrap();
    // A derivation key does nothing else.
    let mut out = [0u8; 64];
    let spec = pmp_core::hsm::CipherSpec::ecb(&ac, pmp_core::Padding::None);
    assert!(matches!(
        hsm.encrypt(&spec, &[0; 8], &mut out),
        Err(Error::Policy(_))
    ));
    assert!(matches!(
        hsm.decrypt(&spec, &[0; 8], &mut out),
        Err(Error::Policy(_))
    ));
    assert!(matches!(
        hsm.generate_mac(
            &ac,
            pmp_core::MacAlgorithm::Retail,
            pmp_core::Padding::Iso9797M1,
            b"x"
        ),
        Err(Error::Policy(_))
    ));
    hsm.verify_audit().unwrap();
}

#[test]
fn derivation_row_of_the_policy_table() {
    // Written from the rule (a derivation key is E0, E1 or E2 with mode X, and does nothing
    // else), not from `permits`.
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
        U::E0,
        U::E1,
        U::E2,
    ];
    let modes = [M::B, M::C, M::D, M::E, M::G, M::N, M::S, M::V, M::X];
    for u in usages {
        for m in modes {
            let derive = matches!(u, U::E0 | U::E1 | U::E2) && m == M::X;
            assert_eq!(permits(Operation::DeriveIccKey, u, m), derive, "{u} {m:?}");
            if matches!(u, U::E0 | U::E1 | U::E2) {
                for op in Operation::ALL {
                    if op != Operation::DeriveIccKey {
                        assert!(!permits(op, u, m), "{op:?} with {u} {m:?}");
                    }
                }
            }
        }
    }
}

fn tdes_pin_key(hsm: &SoftHsm, label: &str, clear: &[u8], exportable: bool) -> KeyHandle {
    let spec = KeySpec::new(label, Algorithm::Tdes, 16, KeyUsage::P0, ModeOfUse::B);
    known(
        hsm,
        if exportable { spec.exportable() } else { spec },
        clear,
    )
}

#[test]
fn card_pin_blocks_are_format_2_under_the_ptk_only() {
    let dir = TempDir::new("emv-pin");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0).unwrap();
    assert!(hsm.capabilities().supports(Capability::CardPin));
    let bureau_clear = hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap();
    let bureau = tdes_pin_key(&hsm, "BUREAU-PIN", &bureau_clear, false);
    let ptk_clear = hex::decode("89ABCDEF0123456776543210FEDCBA98").unwrap();
    let ptk = tdes_pin_key(&hsm, "PTK", &ptk_clear, true);
    let pan = Pan::new("4111111111111111").unwrap();
    let pin = Pin::new("1234").unwrap();
    let mut block = pinblock::encode(PinBlockFormat::Iso0, &pin, Some(&pan)).unwrap();
    let bureau_key = SecretKey::new(Algorithm::Tdes, &bureau_clear).unwrap();
    bureau_key.cipher().encrypt_ecb(&mut block[..]).unwrap();
    let from = PinSpec {
        key: &bureau,
        format: PinBlockFormat::Iso0,
    };
    let out = hsm
        .translate_pin_for_card(&from, &ptk, &pan, &block[..])
        .unwrap();
    assert_eq!(out.len(), 8);
    let mut clear = out.clone();
    SecretKey::new(Algorithm::Tdes, &ptk_clear)
        .unwrap()
        .cipher()
        .decrypt_ecb(&mut clear)
        .unwrap();
    // ISO 9564-1 format 2: control 2, length 4, the digits, F fill (by hand).
    assert_eq!(hex::encode_upper(&clear), "241234FFFFFFFFFF");

    // An AES PTK: the 8-byte block padded with ISO/IEC 9797-1 method 2 to one AES block.
    let aes_ptk_clear = [0x42u8; 32];
    let aes_ptk = known(
        &hsm,
        KeySpec::new("PTK-AES", Algorithm::Aes, 32, KeyUsage::P0, ModeOfUse::B).exportable(),
        &aes_ptk_clear,
    );
    let out = hsm
        .translate_pin_for_card(&from, &aes_ptk, &pan, &block[..])
        .unwrap();
    let mut clear = out.clone();
    SecretKey::new(Algorithm::Aes, &aes_ptk_clear)
        .unwrap()
        .cipher()
        .decrypt_ecb(&mut clear)
        .unwrap();
    assert_eq!(
        hex::encode_upper(&clear),
        "241234FFFFFFFFFF8000000000000000"
    );

    // Not towards a key that stays in the bureau.
    let other = tdes_pin_key(&hsm, "OTHER", &ptk_clear, false);
    assert!(matches!(
        hsm.translate_pin_for_card(&from, &other, &pan, &block[..]),
        Err(Error::Policy(_))
    ));
    // Format 2 is never a source, here or in translate_pin.
    let from2 = PinSpec {
        key: &bureau,
        format: PinBlockFormat::Iso2,
    };
    assert!(matches!(
        hsm.translate_pin_for_card(&from2, &ptk, &pan, &block[..]),
        Err(Error::Policy(_))
    ));
    let to_ptk = PinSpec {
        key: &ptk,
        format: PinBlockFormat::Iso0,
    };
    assert!(hsm.translate_pin(&from2, &to_ptk, &pan, &out).is_err());
    // A block under another key, or a wrong PAN for format 0: the opaque error.
    let mut bad = block.to_vec();
    bad[0] ^= 1;
    assert!(matches!(
        hsm.translate_pin_for_card(&from, &ptk, &pan, &bad),
        Err(Error::Crypto)
    ));
    hsm.verify_audit().unwrap();
}

#[test]
fn transport_keys_include_the_dtk_and_imks_import_only_for_derivation() {
    use pmp_core::hierarchy;
    use pmp_core::keyblock::{self, Exportability, Header, KeyAlgorithm, Version};
    let d1 = TempDir::new("emv-hier-prep");
    let d2 = TempDir::new("emv-hier-prod");
    let prep = SoftHsm::create_with_test_lmk(&d1.0).unwrap();
    let prod = SoftHsm::create_with_test_lmk(&d2.0).unwrap();
    let zmk_clear = [0x4Cu8; 32];
    let zspec = KeySpec::new("ZMK", Algorithm::Aes, 32, KeyUsage::K0, ModeOfUse::B);
    let zp = known(&prep, zspec.clone(), &zmk_clear);
    let zq = known(&prod, zspec, &zmk_clear);
    let tks = hierarchy::issue_transport_keys(&prep, &zp, "LINE1", Algorithm::Aes, 32).unwrap();
    assert_eq!(tks.dtk.info.spec.label, "LINE1-DTK");
    assert_eq!(tks.dtk.info.spec.usage, KeyUsage::D0);
    let got = hierarchy::import_transport_keys(
        &prod,
        &zq,
        "LINE1",
        [
            (tks.ktk.block.as_str(), &tks.ktk.info.kcv),
            (tks.ptk.block.as_str(), &tks.ptk.info.kcv),
            (tks.mtk.block.as_str(), &tks.mtk.info.kcv),
            (tks.dtk.block.as_str(), &tks.dtk.info.kcv),
        ],
    )
    .unwrap();
    assert_eq!(got[3].kcv, tks.dtk.info.kcv);
    assert_eq!(got[3].spec.usage, KeyUsage::D0);

    // IMKs as TR-31 blocks under the issuer's ZMK: E0/E2/E1 with mode X.
    let zmk_key = SecretKey::new(Algorithm::Aes, &zmk_clear).unwrap();
    let imk = SecretKey::from_hex(Algorithm::Tdes, IMK).unwrap();
    let block = |usage, mode| {
        let h = Header::new(
            Version::D,
            usage,
            KeyAlgorithm::Tdes,
            mode,
            Exportability::N,
        );
        keyblock::wrap(&zmk_key, &h, &imk, None).unwrap()
    };
    let (b0, b2, b1) = (
        block(KeyUsage::E0, ModeOfUse::X),
        block(KeyUsage::E2, ModeOfUse::X),
        block(KeyUsage::E1, ModeOfUse::X),
    );
    let kcv = imk.kcv();
    // Swapped usages are refused, and nothing of the call stays.
    assert!(
        hierarchy::import_issuer_master_keys(
            &prep,
            &zp,
            [("AC", &b0, &kcv), ("SMI", &b1, &kcv), ("SMC", &b2, &kcv)]
        )
        .is_err()
    );
    assert!(prep.find_key("AC").is_err());
    // Mode N is refused after the usage check, and nothing stays.
    let n = block(KeyUsage::E1, ModeOfUse::N);
    assert!(matches!(
        hierarchy::import_issuer_master_keys(
            &prep,
            &zp,
            [("AC", &b0, &kcv), ("SMI", &b2, &kcv), ("SMC", &n, &kcv)]
        ),
        Err(Error::Policy(_))
    ));
    assert!(prep.find_key("AC").is_err() && prep.find_key("SMC").is_err());
    let imks = hierarchy::import_issuer_master_keys(
        &prep,
        &zp,
        [("AC", &b0, &kcv), ("SMI", &b2, &kcv), ("SMC", &b1, &kcv)],
    )
    .unwrap();
    assert_eq!(imks[0].spec.usage, KeyUsage::E0);
    assert_eq!(imks[2].spec.usage, KeyUsage::E1);
}
