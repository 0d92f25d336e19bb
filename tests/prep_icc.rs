//! ICC RSA keys and EMV certificates at data preparation: the certificate and SDA signed
//! data against an independent construction (tests/data/icc_cert_kat.txt, made by
//! scripts/icc_cert_kat.py), recovery of a real certificate published by openemv/emv-utils
//! (tests/data/icc_cert_openemv.txt), tamper checks, and every profile refusal of
//! `<icc-rsa>`, `icc-rsa-crt`, `oda` and the tag contents.

mod common;

use std::collections::BTreeMap;

use pmp_core::Error;
use pmp_core::hsm::Hsm;
use pmp_core::prep::icc::{self, IccCertificateFields};
use pmp_core::prep::profile::{DgiContent, Profile, TagContent, TagSource};
use pmp_core::rsa::{RsaExponent, RsaPrivateKey, RsaPublicKey};
use pmp_core::{Padding, rsa};

/// The fixed keys of tests/data/icc_kat_keys.txt, by name.
fn kat_keys() -> BTreeMap<String, RsaPrivateKey> {
    common::load("icc_kat_keys.txt")
        .into_iter()
        .map(|v| {
            let e = RsaExponent::from_value(v.get("E").parse().unwrap()).unwrap();
            let p = hex::decode(format!(
                "{:0>1$}",
                v.get("P"),
                v.get("P").len().div_ceil(2) * 2
            ))
            .unwrap();
            let q = hex::decode(format!(
                "{:0>1$}",
                v.get("Q"),
                v.get("Q").len().div_ceil(2) * 2
            ))
            .unwrap();
            (
                v.get("Key").to_string(),
                RsaPrivateKey::from_primes(&p, &q, e).unwrap(),
            )
        })
        .collect()
}

fn kat_static_data(head: &common::Vector) -> Vec<u8> {
    // docs/profile.md: SFI 1-10 records by value, SFI 11-30 whole, then the AIP.
    let mut sd = Vec::new();
    sd.extend_from_slice(icc::static_data_part(0x0101, &head.hex("Record0101")).unwrap());
    sd.extend_from_slice(icc::static_data_part(0x0201, &head.hex("Record0201")).unwrap());
    sd.extend_from_slice(icc::static_data_part(0x0B01, &head.hex("Record0B01")).unwrap());
    sd.extend_from_slice(&head.hex("Aip"));
    assert_eq!(sd, head.hex("StaticData"));
    sd
}

#[test]
fn certificates_match_the_independent_construction() {
    let keys = kat_keys();
    let vectors = common::load("icc_cert_kat.txt");
    let static_data = kat_static_data(&vectors[0]);
    let mut seen = 0;
    for v in &vectors[1..] {
        let issuer = &keys[v.get("Issuer")];
        match v.get("Kind") {
            "icc-certificate" => {
                let card = keys[v.get("Icc")].public_key();
                let fields = IccCertificateFields {
                    pan: icc::pan_field(v.get("Pan")).unwrap(),
                    expiry: icc::expiry_mmyy(v.get("Expiry").as_bytes()).unwrap(),
                    serial: v.hex("Serial").try_into().unwrap(),
                };
                let cert =
                    icc::icc_certificate(issuer.len(), &fields, &card, &static_data).unwrap();
                assert_eq!(*cert.message, v.hex("Message"), "line {}", v.line);
                assert_eq!(cert.remainder, v.hex("Remainder"), "line {}", v.line);
                let signed = issuer.private_op(&cert.message).unwrap();
                assert_eq!(signed, v.hex("Certificate"), "line {}", v.line);

                // Recovery: the terminal's checks pass, and give the card's key back.
                let got = icc::recover_icc_certificate(
                    &issuer.public_key(),
                    &signed,
                    &cert.remainder,
                    card.exponent().bytes(),
                    Some(&static_data),
                )
                .unwrap();
                assert_eq!(got.modulus, card.modulus());
                assert_eq!(got.pan, fields.pan);
                assert_eq!(got.expiry, fields.expiry);
                assert_eq!(got.serial, fields.serial);

                // A tampered record (one bit of the static data) fails the hash, as do a
                // changed remainder or exponent and a changed certificate.
                for i in [0, static_data.len() / 2, static_data.len() - 1] {
                    let bad = common::flip(&static_data, i);
                    let e = icc::recover_icc_certificate(
                        &issuer.public_key(),
                        &signed,
                        &cert.remainder,
                        card.exponent().bytes(),
                        Some(&bad),
                    )
                    .unwrap_err();
                    assert!(e.to_string().contains("hash does not match"), "{e}");
                }
                if !cert.remainder.is_empty() {
                    assert!(
                        icc::recover_icc_certificate(
                            &issuer.public_key(),
                            &signed,
                            &common::flip(&cert.remainder, 3),
                            card.exponent().bytes(),
                            Some(&static_data),
                        )
                        .is_err()
                    );
                }
                assert!(
                    icc::recover_icc_certificate(
                        &issuer.public_key(),
                        &signed,
                        &cert.remainder,
                        &[0x05],
                        Some(&static_data),
                    )
                    .is_err()
                );
                assert!(
                    icc::recover_icc_certificate(
                        &issuer.public_key(),
                        &common::flip(&signed, 40),
                        &cert.remainder,
                        card.exponent().bytes(),
                        Some(&static_data),
                    )
                    .is_err()
                );
                seen += 1;
            }
            "signed-static-data" => {
                let dac: [u8; 2] = v.hex("Dac").try_into().unwrap();
                let m = icc::signed_static_data(issuer.len(), dac, &static_data).unwrap();
                assert_eq!(m, v.hex("Message"));
                let signed = issuer.private_op(&m).unwrap();
                assert_eq!(signed, v.hex("Signed"));
                let (got, _) = icc::recover_signed_static_data(
                    &issuer.public_key(),
                    &signed,
                    Some(&static_data),
                )
                .unwrap();
                assert_eq!(got, dac);
                let bad = common::flip(&static_data, 7);
                assert!(
                    icc::recover_signed_static_data(&issuer.public_key(), &signed, Some(&bad))
                        .is_err()
                );
                seen += 1;
            }
            k => panic!("unknown kind {k}"),
        }
    }
    assert_eq!(seen, 4);
}

#[test]
fn a_real_certificate_recovers() {
    let v = &common::load("icc_cert_openemv.txt")[0];
    let issuer = RsaPublicKey::new(
        &v.hex("IssuerModulus"),
        RsaExponent::from_bytes(&v.hex("IssuerExponent")).unwrap(),
    )
    .unwrap();
    let got = icc::recover_icc_certificate(
        &issuer,
        &v.hex("IccCertificate"),
        &v.hex("IccRemainder"),
        &v.hex("IccExponent"),
        None,
    )
    .unwrap();
    assert_eq!(got.pan.to_vec(), v.hex("Pan"));
    assert_eq!(got.expiry.to_vec(), v.hex("Expiry"));
    assert_eq!(got.serial.to_vec(), v.hex("Serial"));
    assert_eq!(got.modulus, v.hex("IccModulus"));
    assert_eq!(got.hash.to_vec(), v.hex("IccHash"));
    // The PAN field is what pan_field makes of the card's PAN.
    assert_eq!(got.pan, icc::pan_field("4761739001010119").unwrap());
    // A one-bit change of the certificate no longer recovers.
    assert!(
        icc::recover_icc_certificate(
            &issuer,
            &common::flip(&v.hex("IccCertificate"), 175),
            &v.hex("IccRemainder"),
            &v.hex("IccExponent"),
            None,
        )
        .is_err()
    );
    // Its remainder must complete the modulus.
    assert!(
        icc::recover_icc_certificate(
            &issuer,
            &v.hex("IccCertificate"),
            &v.hex("IccRemainder")[1..],
            &v.hex("IccExponent"),
            None,
        )
        .is_err()
    );
    let (dac, hash) =
        icc::recover_signed_static_data(&issuer, &v.hex("SignedStaticData"), None).unwrap();
    assert_eq!(dac.to_vec(), v.hex("Dac"));
    assert_eq!(hash.to_vec(), v.hex("SsadHash"));
}

#[test]
fn certificate_lengths_are_checked() {
    let issuer = RsaPrivateKey::generate(1024, RsaExponent::Three).unwrap();
    let card = RsaPrivateKey::generate(1032, RsaExponent::Three).unwrap();
    let fields = IccCertificateFields {
        pan: icc::pan_field("4111111111111111").unwrap(),
        expiry: [0x12, 0x30],
        serial: [0, 0, 1],
    };
    // N_ICC > N_I is refused.
    let e = icc::icc_certificate(issuer.len(), &fields, &card.public_key(), b"").unwrap_err();
    assert!(e.to_string().contains("longer than the issuer key"), "{e}");
    assert!(icc::icc_certificate(127, &fields, &issuer.public_key(), b"").is_err());
    assert!(icc::icc_certificate(249, &fields, &issuer.public_key(), b"").is_err());
    // N_ICC = N_I: 42 bytes of remainder.
    let c = icc::icc_certificate(issuer.len(), &fields, &issuer.public_key(), b"").unwrap();
    assert_eq!(c.remainder.len(), 42);
    assert_eq!(c.remainder, issuer.public_key().modulus()[86..]);
    let _ = rsa::EMV_MAX_BITS;
}

// ---- profiles ----

const ISSUER_CERT_128: &str = "11111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111";

fn profile(icc_rsa: &str, dgis: &str) -> String {
    format!(
        r#"<profile format="pmp-profile-1" name="P" product="PROD">
  <keys ktk="KTK" ptk="PTK" mtk="MTK" dtk="DTK"/>
  {icc_rsa}
  {dgis}
</profile>"#
    )
}

fn icc_rsa(extra: &str) -> String {
    format!(
        r#"<icc-rsa bits="1024" exponent="3" issuer-key="ISS-RSA" issuer-certificate="{}" issuer-remainder="2222" issuer-exponent="03" ca-index="92" {extra}/>"#,
        &ISSUER_CERT_128[..256]
    )
}

const DDA_DGIS: &str = r#"
  <dgi id="0101" oda="true"><tag id="5A" from="PAN" format="cn"/><tag id="5F24" from="EXPIRY" format="yymm-end-of-month"/></dgi>
  <dgi id="0102" oda="true"><tag id="9F4A" value="82"/><tag id="8F" content="ca-index"/><tag id="9F32" content="issuer-exponent"/></dgi>
  <dgi id="0201"><tag id="90" content="issuer-certificate"/><tag id="92" content="issuer-remainder"/></dgi>
  <dgi id="0202"><tag id="9F46" content="icc-certificate"/><tag id="9F47" content="icc-exponent"/><tag id="9F48" content="icc-remainder"/></dgi>
  <dgi id="9104" value="82025C00940808010200"/>
  <dgi id="8201" content="icc-rsa-crt"/><dgi id="8202" content="icc-rsa-crt"/><dgi id="8203" content="icc-rsa-crt"/>
  <dgi id="8204" content="icc-rsa-crt"/><dgi id="8205" content="icc-rsa-crt"/>"#;

fn refused(xml: &str, needle: &str) {
    match Profile::parse(xml) {
        Err(Error::Invalid { reason, .. }) => {
            assert!(reason.contains(needle), "'{reason}' lacks '{needle}'")
        }
        other => panic!("expected a refusal with '{needle}', got {other:?}"),
    }
}

#[test]
fn a_dda_profile_parses() {
    let p = Profile::parse(&profile(&icc_rsa(""), DDA_DGIS)).unwrap();
    let r = p.icc_rsa.as_ref().unwrap();
    assert_eq!(r.bits, 1024);
    assert_eq!(r.exponent, RsaExponent::Three);
    assert_eq!(r.issuer_key, "ISS-RSA");
    assert_eq!(r.issuer_certificate.len(), 128);
    assert_eq!(r.issuer_remainder, [0x22, 0x22]);
    assert_eq!(r.issuer_exponent, [0x03]);
    assert_eq!(r.ca_index, 0x92);
    assert_eq!(r.dac, None);
    assert_eq!((r.pan.as_str(), r.expiry.as_str()), ("PAN", "EXPIRY"));
    assert!(p.needs_icc_key() && p.needs_icc_certificate());
    assert!(!p.needs_signed_static_data());
    assert_eq!(
        p.dgis
            .iter()
            .filter(|d| d.oda)
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        [0x0101, 0x0102]
    );
    for (i, id) in (0x8201..=0x8205).enumerate() {
        let d = p.dgis.iter().find(|d| d.id == id).unwrap();
        assert_eq!(
            d.content,
            DgiContent::IccRsaCrt {
                part: i,
                padding: Padding::Iso9797M2
            }
        );
    }
    let DgiContent::Tags(t) = &p.dgis[3].content else {
        panic!()
    };
    assert_eq!(t[0].source, TagSource::Content(TagContent::IccCertificate));
    // 9F4A lists 82: the AIP from the value DGI 9104.
    assert_eq!(p.static_data_aip().unwrap(), Some(vec![0x5C, 0x00]));
    // The ICC certificate's PAN and expiry are read from the XOF.
    assert!(p.attributes().contains(&"EXPIRY"));
    // padding="none" is accepted (checked against the KTK at run time).
    let none = DDA_DGIS.replace(
        r#"<dgi id="8203" content="icc-rsa-crt"/>"#,
        r#"<dgi id="8203" content="icc-rsa-crt" padding="none"/>"#,
    );
    refused(
        &profile(&icc_rsa(""), &none),
        "DGIs 8201 to 8205 have one padding setting",
    );
    let all_none = DDA_DGIS.replace(
        r#"content="icc-rsa-crt"/>"#,
        r#"content="icc-rsa-crt" padding="none"/>"#,
    );
    let p = Profile::parse(&profile(&icc_rsa(""), &all_none)).unwrap();
    assert!(p.dgis.iter().any(|d| d.content
        == DgiContent::IccRsaCrt {
            part: 4,
            padding: Padding::None
        }));
}

#[test]
fn an_sda_profile_parses() {
    let dgis = r#"
  <dgi id="0101" oda="true"><tag id="5A" from="PAN" format="cn"/></dgi>
  <dgi id="0201"><tag id="93" content="signed-static-data"/><tag id="8F" content="ca-index"/><tag id="90" content="issuer-certificate"/></dgi>"#;
    let p = Profile::parse(&profile(&icc_rsa(r#"dac="DAC0""#), dgis)).unwrap();
    assert_eq!(p.icc_rsa.as_ref().unwrap().dac, Some([0xDA, 0xC0]));
    assert!(p.needs_signed_static_data());
    assert!(!p.needs_icc_key());
    assert!(!p.needs_icc_certificate());
    assert!(!p.attributes().contains(&"EXPIRY"));
    refused(&profile(&icc_rsa(""), dgis), "dac=");
}

#[test]
fn icc_rsa_profiles_are_refused() {
    let ok = icc_rsa("");
    // CRT DGIs, tag contents or oda without <icc-rsa>.
    refused(
        &profile("", DDA_DGIS),
        "<icc-rsa>: missing: DGI 8201 (icc-rsa-crt)",
    );
    refused(
        &profile(
            "",
            r#"<dgi id="0101"><tag id="9F46" content="icc-certificate"/></dgi>"#,
        ),
        "<icc-rsa>: missing: tag content icc-certificate",
    );
    refused(
        &profile(
            "",
            r#"<dgi id="0101" oda="true"><tag id="5A" from="PAN" format="cn"/></dgi>"#,
        ),
        "DGI 0101 is marked oda",
    );
    // <icc-rsa> that nothing uses.
    refused(
        &profile(&ok, r#"<dgi id="9010" value="0303"/>"#),
        "given, but no DGI is icc-rsa-crt",
    );
    // bits that are not an EMV length; exponents.
    for bits in ["1016", "1028", "1992", "2048", "x"] {
        refused(
            &profile(
                &ok.replace(r#"bits="1024""#, &format!(r#"bits="{bits}""#)),
                DDA_DGIS,
            ),
            "bits must be an EMV modulus length",
        );
    }
    refused(
        &profile(&ok.replace(r#"exponent="3""#, r#"exponent="17""#), DDA_DGIS),
        "exponent must be 3 or 65537",
    );
    refused(
        &profile(
            &ok.replace(r#"issuer-exponent="03""#, r#"issuer-exponent="11""#),
            DDA_DGIS,
        ),
        "issuer-exponent must be 03 or 010001",
    );
    // Issuer certificate lengths: 128..=248 bytes; the remainder must fit.
    let short = ok.replace(&ISSUER_CERT_128[..256], &ISSUER_CERT_128[..254]);
    refused(
        &profile(&short, DDA_DGIS),
        "issuer-certificate has 127 bytes",
    );
    let long = ok.replace(&ISSUER_CERT_128[..256], &"11".repeat(249));
    refused(
        &profile(&long, DDA_DGIS),
        "issuer-certificate has 249 bytes",
    );
    let big_rem = ok.replace(
        r#"issuer-remainder="2222""#,
        &format!(r#"issuer-remainder="{}""#, "33".repeat(157)),
    );
    refused(&profile(&big_rem, DDA_DGIS), "longer than 248 bytes");
    refused(
        &profile(
            &ok.replace(r#"ca-index="92""#, r#"ca-index="9292""#),
            DDA_DGIS,
        ),
        "ca-index must be one byte",
    );
    refused(
        &profile(&ok.replace(r#"issuer-key="ISS-RSA""#, ""), DDA_DGIS),
        "issuer-key is required",
    );
    refused(
        &profile(
            &ok.replace(r#"ca-index="92""#, r#"ca-index="92" serial="1""#),
            DDA_DGIS,
        ),
        "unknown attribute serial",
    );
    refused(
        &profile(&format!("{ok}{ok}"), DDA_DGIS),
        "given more than once",
    );
    // icc-rsa-crt outside 8201..8205, incomplete, bad padding.
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(r#"<dgi id="8205""#, r#"<dgi id="8206""#),
        ),
        "icc-rsa-crt is for DGIs 8201 to 8205",
    );
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(r#"<dgi id="8205" content="icc-rsa-crt"/>"#, ""),
        ),
        "give all five CRT DGIs",
    );
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(
                r#"<dgi id="8205" content="icc-rsa-crt"/>"#,
                r#"<dgi id="8205" content="icc-rsa-crt" padding="1"/>"#,
            ),
        ),
        "padding must be none or 2",
    );
    // oda on a non-record DGI, or with a bad value.
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(r#"<dgi id="9104""#, r#"<dgi id="9104" oda="true""#),
        ),
        "oda is for record DGIs",
    );
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(
                r#"<dgi id="0101" oda="true""#,
                r#"<dgi id="0101" oda="yes""#,
            ),
        ),
        "oda must be true or false",
    );
    // A per-card ODA value inside an oda record: circular.
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(r#"<dgi id="0202">"#, r#"<dgi id="0202" oda="true">"#),
        ),
        "DGI 0202 is marked oda and holds icc-certificate",
    );
    // A content in the wrong tag, an unknown content, content with value.
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(r#"<tag id="9F46" content"#, r#"<tag id="9F45" content"#),
        ),
        "content icc-certificate belongs in tag 9F46, not 9F45",
    );
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(r#"content="icc-exponent""#, r#"content="icc-modulus""#),
        ),
        "content must be one of icc-certificate",
    );
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(
                r#"content="icc-exponent""#,
                r#"content="icc-exponent" value="03""#,
            ),
        ),
        "give one of from, value or content",
    );
    // No oda record while a certificate is asked for.
    refused(
        &profile(&ok, &DDA_DGIS.replace(r#" oda="true""#, "")),
        "no record DGI is marked oda",
    );
    // 9F4A: only 82, a constant, with a constant AIP somewhere.
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(
                r#"<tag id="9F4A" value="82"/>"#,
                r#"<tag id="9F4A" value="8295"/>"#,
            ),
        ),
        "may list only the AIP",
    );
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(
                r#"<tag id="9F4A" value="82"/>"#,
                r#"<tag id="9F4A" from="SDA_LIST" format="b"/>"#,
            ),
        ),
        "9F4A (static data authentication tag list) must be a constant value",
    );
    refused(
        &profile(
            &ok,
            &DDA_DGIS.replace(r#"<dgi id="9104" value="82025C00940808010200"/>"#, ""),
        ),
        "no DGI holds a constant tag 82",
    );
    // dac without signed-static-data.
    refused(
        &profile(&icc_rsa(r#"dac="DAC0""#), DDA_DGIS),
        "dac is given",
    );
    refused(
        &profile(&icc_rsa(r#"dac="DA""#), DDA_DGIS),
        "dac must be two bytes",
    );
}

// ---- the run, on SoftHsm ----

mod run {
    use std::path::{Path, PathBuf};

    use pmp_core::hsm::rsa::RsaKeySpec;
    use pmp_core::hsm::{CipherSpec, Hsm, KeySpec, SoftHsm};
    use pmp_core::keyblock::{KeyUsage, ModeOfUse};
    use pmp_core::prep::icc;
    use pmp_core::prep::profile::Profile;
    use pmp_core::prep::{self, Options};
    use pmp_core::rsa::{RsaExponent, RsaPrivateKey, RsaPublicKey};
    use pmp_core::xof::{self, Attribute, KeyRef};
    use pmp_core::{Algorithm, Error, Mode, Padding, SecretKey};

    pub struct TempDir(PathBuf);
    impl TempDir {
        pub fn new(name: &str) -> Self {
            let mut r = [0u8; 6];
            pmp_core::fill_random(&mut r).unwrap();
            let p = std::env::temp_dir().join(format!("pmp-test-{name}-{}", hex::encode(r)));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        pub fn path(&self, f: &str) -> PathBuf {
            self.0.join(f)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    // Test keys only.
    const KTK: &str = "1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A";
    const DTK: &str = "3D3D3D3D3D3D3D3D3D3D3D3D3D3D3D3D4E4E4E4E4E4E4E4E4E4E4E4E4E4E4E4E";

    fn known(hsm: &SoftHsm, spec: KeySpec, clear_hex: &str) {
        let clear = hex::decode(clear_hex).unwrap();
        let c2: Vec<u8> = (0..clear.len())
            .map(|i| (i as u8).wrapping_mul(37) | 1)
            .collect();
        let c1: Vec<u8> = clear.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
        hsm.form_key_from_components(&spec, &[&c1, &c2], &[], None)
            .unwrap();
    }

    /// The data-prep store: transport keys, a DKep, the XOF MAC key, issuer RSA keys
    /// ISS-1024 and ISS-1152 (exponent 3).
    pub fn store(dir: &Path) -> SoftHsm {
        let hsm = SoftHsm::create_with_test_lmk(dir).unwrap();
        let t = |l: &str, u, m| KeySpec::new(l, Algorithm::Aes, 32, u, m).exportable();
        known(&hsm, t("KTK", KeyUsage::K0, ModeOfUse::B), KTK);
        known(&hsm, t("DTK", KeyUsage::D0, ModeOfUse::B), DTK);
        for (l, u, m) in [
            ("PTK", KeyUsage::P0, ModeOfUse::B),
            ("MTK", KeyUsage::M6, ModeOfUse::C),
        ] {
            hsm.generate_key(&t(l, u, m)).unwrap();
        }
        hsm.generate_key(&KeySpec::new(
            "DKEP",
            Algorithm::Aes,
            32,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .unwrap();
        hsm.generate_key(&KeySpec::new(
            "XOF-MAC",
            Algorithm::Aes,
            32,
            KeyUsage::M6,
            ModeOfUse::C,
        ))
        .unwrap();
        for (l, bits) in [("ISS-1024", 1024), ("ISS-1152", 1152)] {
            hsm.generate_rsa_key(&RsaKeySpec {
                label: l.into(),
                bits,
                exponent: RsaExponent::Three,
                usage: KeyUsage::S0,
            })
            .unwrap();
        }
        hsm
    }

    pub struct Card {
        pub pan: String,
        pub expiry: String,
    }

    pub fn cards(n: usize) -> Vec<Card> {
        (0..n)
            .map(|i| Card {
                pan: format!("47617390010101{:02}", 10 + i),
                expiry: format!("{:02}{:02}", 27 + i % 5, 1 + i % 12),
            })
            .collect()
    }

    pub fn write_xof(hsm: &SoftHsm, cards: &[Card], path: &Path) {
        let kr = |label: &str| {
            let i = hsm.key_info(&hsm.find_key(label).unwrap()).unwrap();
            KeyRef {
                label: i.spec.label,
                usage: i.spec.usage,
                algorithm: i.spec.algorithm,
                kcv: i.kcv,
            }
        };
        let header = xof::Header {
            order_id: "ORD-ICC".into(),
            issuer: "Example Bank".into(),
            product: "PROD".into(),
            created: "2025-03-01T09:30:00Z".into(),
            keys: vec![kr("DKEP"), kr("XOF-MAC")],
            mac_key: "XOF-MAC".into(),
            test: false,
        };
        let mac = hsm.find_key("XOF-MAC").unwrap();
        let dk = hsm.find_key("DKEP").unwrap();
        let mut w = xof::Writer::new(Vec::new(), &header, hsm, &mac).unwrap();
        for (i, c) in cards.iter().enumerate() {
            let mut attributes = Vec::new();
            for (name, v) in [("PAN", &c.pan), ("EXPIRY", &c.expiry)] {
                let iv = [i as u8; 16];
                let mut ct = vec![0u8; v.len() + 16];
                let n = hsm
                    .encrypt(
                        &CipherSpec::cbc(&dk, &iv, Padding::Iso9797M2),
                        v.as_bytes(),
                        &mut ct,
                    )
                    .unwrap();
                ct.truncate(n);
                attributes.push(Attribute {
                    name: name.into(),
                    key: "DKEP".into(),
                    mode: Mode::Cbc,
                    iv: Some(iv.to_vec()),
                    padding: Padding::Iso9797M2,
                    ciphertext: ct,
                });
            }
            w.write_record(&xof::Record {
                seq: i as u64 + 1,
                issuer_id: format!("C-{:04}", i + 1),
                attributes,
            })
            .unwrap();
        }
        std::fs::write(path, w.finish().unwrap().0).unwrap();
    }

    /// A DDA profile for issuer key `issuer` with ICC keys of `bits`: records 0101 (PAN,
    /// expiry) and 0B01 (9F4A, 8F) authenticated, the issuer constants in 0201, the ICC
    /// certificate in 0202, the AIP in DGI 9104, SDA's 93 in 0203, the CRT DGIs.
    pub fn profile(issuer: &RsaPublicKey, bits: u32, extra: &str) -> String {
        let mut cert = vec![0x5Au8; n_ca(issuer)];
        cert[0] = 0x11;
        format!(
            r#"<profile format="pmp-profile-1" name="P-ICC" product="PROD">
  <keys ktk="KTK" ptk="PTK" mtk="MTK" dtk="DTK" xof-mac-key="XOF-MAC"/>
  <icc-rsa bits="{bits}" exponent="3" issuer-key="{}" issuer-certificate="{}" issuer-exponent="03" ca-index="92" dac="DAC0" {extra}/>
  <dgi id="0101" oda="true"><tag id="5A" from="PAN" format="cn"/><tag id="5F24" from="EXPIRY" format="yymm-end-of-month"/></dgi>
  <dgi id="0B01" oda="true"><tag id="9F4A" value="82"/><tag id="8F" content="ca-index"/></dgi>
  <dgi id="0201"><tag id="90" content="issuer-certificate"/><tag id="92" content="issuer-remainder"/><tag id="9F32" content="issuer-exponent"/></dgi>
  <dgi id="0202"><tag id="9F46" content="icc-certificate"/><tag id="9F47" content="icc-exponent"/><tag id="9F48" content="icc-remainder"/></dgi>
  <dgi id="0203"><tag id="93" content="signed-static-data"/></dgi>
  <dgi id="9104" value="82027C00940C08010100580101010801020010020200"/>
  <dgi id="8201" content="icc-rsa-crt"/><dgi id="8202" content="icc-rsa-crt"/><dgi id="8203" content="icc-rsa-crt"/>
  <dgi id="8204" content="icc-rsa-crt"/><dgi id="8205" content="icc-rsa-crt"/>
</profile>"#,
            if issuer.len() == 128 {
                "ISS-1024"
            } else {
                "ISS-1152"
            },
            hex::encode_upper(&cert)
        )
    }

    /// The CA key length of the test profiles: 176 bytes (1408 bits), where the issuer
    /// modulus fits in its certificate (no remainder).
    pub fn n_ca(issuer: &RsaPublicKey) -> usize {
        176.max(issuer.len() + 36)
    }

    /// Each card's DGIs: id -> (attributes, data).
    pub fn dgis(file: &str) -> Vec<Vec<(String, String, Vec<u8>)>> {
        let mut cards = Vec::new();
        for line in file.lines() {
            let l = line.trim();
            if l.starts_with("<card ") {
                cards.push(Vec::new());
            } else if let Some(rest) = l.strip_prefix("<dgi id=\"") {
                let id = rest[..4].to_string();
                let (attrs, tail) = rest[5..].split_once('>').unwrap();
                let hexdata = tail.strip_suffix("</dgi>").unwrap();
                cards.last_mut().unwrap().push((
                    id,
                    attrs.trim().to_string(),
                    hex::decode(hexdata).unwrap(),
                ));
            }
        }
        cards
    }

    fn decrypt(key: &str, mode: Mode, iv: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
        let k = SecretKey::from_hex(Algorithm::Aes, key).unwrap();
        let mut buf = data.to_vec();
        k.cipher().decrypt_blocks(mode, iv, &mut buf).unwrap();
        // ISO/IEC 9797-1 method 2.
        let end = buf.iter().rposition(|&b| b != 0).unwrap();
        assert_eq!(buf[end], 0x80);
        buf.truncate(end);
        buf
    }

    /// One card's clear DGIs (DTK- and KTK-encrypted ones decrypted), by id.
    pub fn clear(card: &[(String, String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
        card.iter()
            .map(|(id, attrs, data)| {
                let clear = if attrs.contains("key=\"DTK\"") {
                    let i = attrs.find("iv=\"").unwrap() + 4;
                    let iv = hex::decode(&attrs[i..i + 32]).unwrap();
                    decrypt(DTK, Mode::Cbc, Some(&iv), data)
                } else if attrs.contains("key=\"KTK\"") {
                    assert!(attrs.contains("mode=\"ecb\" padding=\"2\""), "{attrs}");
                    decrypt(KTK, Mode::Ecb, None, data)
                } else {
                    assert!(attrs.is_empty(), "{id}: {attrs}");
                    data.clone()
                };
                (id.clone(), clear)
            })
            .collect()
    }

    pub fn get<'a>(c: &'a [(String, Vec<u8>)], id: &str) -> &'a [u8] {
        &c.iter().find(|(i, _)| i == id).unwrap().1
    }

    /// The value of `tag` inside record `rec` (`70 L …`).
    pub fn field<'a>(rec: &'a [u8], tag: &[u8]) -> Option<&'a [u8]> {
        icc::find_tag(icc::static_data_part(0x0101, rec).unwrap(), tag)
    }

    pub struct Checked {
        pub serial: [u8; 3],
    }

    /// Checks one card as a terminal would, plus the private key: returns its serial.
    pub fn check_card(
        issuer: &RsaPublicKey,
        c: &[(String, Vec<u8>)],
        card: &Card,
        bits: u32,
    ) -> Checked {
        let r0101 = get(c, "0101");
        let r0b01 = get(c, "0B01");
        // Static data: SFI 1 by value, SFI 11 whole, then the AIP (9F4A lists 82).
        let mut sd = r0101[2..].to_vec();
        sd.extend_from_slice(r0b01);
        sd.extend_from_slice(&[0x7C, 0x00]);
        let r0202 = get(c, "0202");
        let cert = field(r0202, &[0x9F, 0x46]).unwrap();
        assert_eq!(cert.len(), issuer.len(), "9F46 has N_I bytes");
        let exp = field(r0202, &[0x9F, 0x47]).unwrap();
        assert_eq!(exp, [0x03]);
        let n_icc = bits as usize / 8;
        let rem_len = n_icc.saturating_sub(issuer.len() - 42);
        let rem = field(r0202, &[0x9F, 0x48]).unwrap_or(&[]);
        assert_eq!(rem.len(), rem_len, "9F48 length");
        let got = icc::recover_icc_certificate(issuer, cert, rem, exp, Some(&sd)).unwrap();
        assert_eq!(got.pan, icc::pan_field(&card.pan).unwrap());
        assert_eq!(
            got.expiry,
            icc::expiry_mmyy(card.expiry.as_bytes()).unwrap()
        );
        assert_eq!(got.modulus.len(), n_icc);
        // A tampered record no longer matches the certificate's hash.
        let mut bad = sd.clone();
        bad[3] ^= 0x01;
        assert!(icc::recover_icc_certificate(issuer, cert, rem, exp, Some(&bad)).is_err());
        // SDA's signed static data over the same static data.
        let ssad = field(get(c, "0203"), &[0x93]).unwrap();
        let (dac, _) = icc::recover_signed_static_data(issuer, ssad, Some(&sd)).unwrap();
        assert_eq!(dac, [0xDA, 0xC0]);
        assert!(icc::recover_signed_static_data(issuer, ssad, Some(&bad)).is_err());
        // Issuer constants.
        let r0201 = get(c, "0201");
        assert_eq!(field(r0201, &[0x90]).unwrap().len(), n_ca(issuer));
        assert!(
            field(r0201, &[0x92]).is_none(),
            "an empty remainder is left out"
        );
        assert_eq!(field(r0201, &[0x9F, 0x32]).unwrap(), [0x03]);
        assert_eq!(field(r0b01, &[0x8F]).unwrap(), [0x92]);
        // The CRT parts (each half the modulus) are the private key of the certified modulus.
        let half = n_icc.div_ceil(2);
        let parts: Vec<&[u8]> = ["8201", "8202", "8203", "8204", "8205"]
            .iter()
            .map(|id| get(c, id))
            .collect();
        for p in &parts {
            assert_eq!(p.len(), half);
        }
        let key = RsaPrivateKey::from_primes(parts[4], parts[3], RsaExponent::Three).unwrap();
        assert_eq!(key.public_key().modulus(), got.modulus.as_slice());
        let crt = key.crt_parts().unwrap();
        assert_eq!(crt.qinv.as_slice(), parts[0]);
        assert_eq!(crt.dq.as_slice(), parts[1]);
        assert_eq!(crt.dp.as_slice(), parts[2]);
        Checked { serial: got.serial }
    }

    pub fn run(
        hsm: &SoftHsm,
        dir: &TempDir,
        profile: &str,
        opts: &Options<'_>,
    ) -> pmp_core::Result<(prep::Summary, String)> {
        let p = Profile::parse(profile).unwrap();
        let out = dir.path("production.xml");
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(dir.path("production.rejects.txt"));
        let s = prep::run_files(hsm, &p, &dir.path("order.xof"), &out, None, opts)?;
        let n = prep::production::verify_file(&out, hsm, Some("MTK")).unwrap();
        assert_eq!(n, s.prepared);
        Ok((s, std::fs::read_to_string(&out).unwrap()))
    }

    pub fn issuer(hsm: &SoftHsm, label: &str) -> RsaPublicKey {
        hsm.rsa_key_info(&hsm.find_key(label).unwrap())
            .unwrap()
            .public
    }

    pub fn is_invalid(e: &Error, needle: &str) -> bool {
        e.to_string().contains(needle)
    }
}

#[test]
fn cards_get_certified_keys_from_the_pool_then_in_line() {
    use pmp_core::prep::Options;
    let dir = run::TempDir::new("prep-icc");
    let hsm = run::store(&dir.path("ks"));
    let cards = run::cards(5);
    run::write_xof(&hsm, &cards, &dir.path("order.xof"));
    let issuer = run::issuer(&hsm, "ISS-1024");
    let level = hsm.fill_icc_key_pool(1024, RsaExponent::Three, 3).unwrap();
    assert_eq!(level.available, 3);
    let (s, file) = run::run(
        &hsm,
        &dir,
        &run::profile(&issuer, 1024, ""),
        &Options {
            workers: 2,
            batch: 2,
            icc_serial_start: Some(0xFF_FFFE),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!((s.read, s.prepared, s.rejected), (5, 5, 0));
    assert_eq!((s.icc_keys_from_pool, s.icc_keys_in_line), (3, 2));
    assert_eq!(s.icc_serial_first, Some(0xFF_FFFE));
    let mut serials = Vec::new();
    for (card, dg) in cards.iter().zip(run::dgis(&file)) {
        // DGI order is the profile's.
        let ids: Vec<&str> = dg.iter().map(|(i, _, _)| i.as_str()).collect();
        assert_eq!(
            ids,
            [
                "0101", "0B01", "0201", "0202", "0203", "9104", "8201", "8202", "8203", "8204",
                "8205"
            ]
        );
        // CRT parts: 64 bytes padded with method 2 to 80 under the AES KTK.
        for (id, _, data) in &dg[6..] {
            assert_eq!(data.len(), 80, "DGI {id}");
        }
        let clear = run::clear(&dg);
        serials.push(run::check_card(&issuer, &clear, card, 1024).serial);
    }
    // Serials: START + seq - 1 modulo 2^24, distinct in the run.
    assert_eq!(
        serials,
        [
            [0xFF, 0xFF, 0xFE],
            [0xFF, 0xFF, 0xFF],
            [0, 0, 0],
            [0, 0, 1],
            [0, 0, 2]
        ]
    );

    // Without the pool, every key is generated in line (the pool is empty now anyway, so
    // fill it again to see it left alone).
    hsm.fill_icc_key_pool(1024, RsaExponent::Three, 2).unwrap();
    let (s, file) = run::run(
        &hsm,
        &dir,
        &run::profile(&issuer, 1024, ""),
        &Options {
            icc_use_pool: false,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!((s.icc_keys_from_pool, s.icc_keys_in_line), (0, 5));
    assert_eq!(
        hsm.icc_key_pool()
            .unwrap()
            .iter()
            .map(|l| l.available)
            .sum::<u64>(),
        2
    );
    // A random serial start: still five distinct serials.
    let mut serials = Vec::new();
    for (card, dg) in cards.iter().zip(run::dgis(&file)) {
        serials.push(run::check_card(&issuer, &run::clear(&dg), card, 1024).serial);
    }
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 5);
}

#[test]
fn a_remainder_and_unpadded_parts() {
    use pmp_core::prep::Options;
    let dir = run::TempDir::new("prep-icc-1152");
    let hsm = run::store(&dir.path("ks"));
    let cards = run::cards(2);
    run::write_xof(&hsm, &cards, &dir.path("order.xof"));
    // Issuer 1152 bits (144 bytes) with ICC 1152: a remainder of 42 bytes.
    let issuer = run::issuer(&hsm, "ISS-1152");
    let (s, file) = run::run(
        &hsm,
        &dir,
        &run::profile(&issuer, 1152, ""),
        &Options::default(),
    )
    .unwrap();
    assert_eq!((s.icc_keys_from_pool, s.icc_keys_in_line), (0, 2));
    for (card, dg) in cards.iter().zip(run::dgis(&file)) {
        run::check_card(&issuer, &run::clear(&dg), card, 1152);
    }
    // 72-byte parts are not whole AES blocks: padding="none" is refused before any output.
    let p = run::profile(&issuer, 1152, "").replace(
        r#"content="icc-rsa-crt"/>"#,
        r#"content="icc-rsa-crt" padding="none"/>"#,
    );
    let e = run::run(&hsm, &dir, &p, &Options::default()).unwrap_err();
    assert!(run::is_invalid(&e, "not whole blocks of the KTK"), "{e}");
    assert!(!dir.path("production.xml").exists());
}

#[test]
fn the_issuer_key_is_checked_before_any_card() {
    use pmp_core::prep::Options;
    let dir = run::TempDir::new("prep-icc-refuse");
    let hsm = run::store(&dir.path("ks"));
    run::write_xof(&hsm, &run::cards(1), &dir.path("order.xof"));
    let issuer = run::issuer(&hsm, "ISS-1024");
    let base = run::profile(&issuer, 1024, "");
    let cases = [
        // ICC keys longer than the issuer key.
        (
            base.replace(r#"bits="1024""#, r#"bits="1152""#),
            "fewer than the ICC keys' 1152",
        ),
        // The issuer exponent is not the key's.
        (
            base.replace(r#"issuer-exponent="03""#, r#"issuer-exponent="010001""#),
            "is not the exponent of the issuer key",
        ),
        // A remainder where the issuer modulus fits in its certificate.
        (
            base.replace(r#"ca-index="92""#, r#"ca-index="92" issuer-remainder="AA""#),
            "issuer-remainder has 1 bytes",
        ),
        // A certificate shorter than the issuer key (N_I > N_CA).
        (
            run::profile(&run::issuer(&hsm, "ISS-1152"), 1024, "").replace(
                &format!("11{}", "5A".repeat(179)),
                &format!("11{}", "5A".repeat(127)),
            ),
            "EMV needs N_I <= N_CA",
        ),
        // An issuer key that is not there.
        (
            base.replace(r#"issuer-key="ISS-1024""#, r#"issuer-key="ISS-NONE""#),
            "issuer RSA key 'ISS-NONE'",
        ),
    ];
    for (p, needle) in cases {
        let e = run::run(&hsm, &dir, &p, &Options::default()).unwrap_err();
        assert!(run::is_invalid(&e, needle), "'{e}' lacks '{needle}'");
        assert!(!dir.path("production.xml").exists());
    }
    // A symmetric key named as the issuer key.
    let e = run::run(
        &hsm,
        &dir,
        &base.replace(r#"issuer-key="ISS-1024""#, r#"issuer-key="DKEP""#),
        &Options::default(),
    )
    .unwrap_err();
    assert!(!dir.path("production.xml").exists(), "{e}");
}

/// Delegates to a `SoftHsm` (with its RSA key lookups and signatures) but answers
/// `capabilities` without `missing`, and leaves the ICC key pair generation to the trait's
/// default (which refuses).
#[derive(Debug)]
struct Without {
    inner: pmp_core::hsm::SoftHsm,
    missing: pmp_core::hsm::Capability,
}

mod without {
    use pmp_core::hsm::rsa::RsaKeyInfo;
    use pmp_core::hsm::{
        Capabilities, CipherSpec, Hsm, ImportCheck, KeyHandle, KeyInfo, KeySpec, PinSpec,
    };
    use pmp_core::pinblock::Pan;
    use pmp_core::{Kcv, MacAlgorithm, MacTag, Padding, Result};

    impl Hsm for super::Without {
        fn capabilities(&self) -> Capabilities {
            let inner = self.inner.capabilities();
            Capabilities::new("without (test)")
                .with_all(inner.iter().filter(|c| *c != self.missing))
                .with_test_keys(inner.is_test())
        }
        fn generate_key(&self, spec: &KeySpec) -> Result<KeyInfo> {
            self.inner.generate_key(spec)
        }
        fn form_key_from_components(
            &self,
            spec: &KeySpec,
            components: &[&[u8]],
            component_kcvs: &[Option<Kcv>],
            expected_kcv: Option<&Kcv>,
        ) -> Result<KeyInfo> {
            self.inner
                .form_key_from_components(spec, components, component_kcvs, expected_kcv)
        }
        fn import_key_block_checked(
            &self,
            label: &str,
            kek: &KeyHandle,
            block: &str,
            check: &ImportCheck<'_>,
        ) -> Result<KeyInfo> {
            self.inner
                .import_key_block_checked(label, kek, block, check)
        }
        fn export_key_block(&self, key: &KeyHandle, kek: &KeyHandle) -> Result<String> {
            self.inner.export_key_block(key, kek)
        }
        fn key_info(&self, key: &KeyHandle) -> Result<KeyInfo> {
            self.inner.key_info(key)
        }
        fn find_key(&self, label: &str) -> Result<KeyHandle> {
            self.inner.find_key(label)
        }
        fn list_keys(&self) -> Result<Vec<KeyInfo>> {
            self.inner.list_keys()
        }
        fn delete_key(&self, key: &KeyHandle) -> Result<()> {
            self.inner.delete_key(key)
        }
        fn encrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
            self.inner.encrypt(spec, data, out)
        }
        fn decrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
            self.inner.decrypt(spec, data, out)
        }
        fn translate(
            &self,
            from: &CipherSpec<'_>,
            to: &CipherSpec<'_>,
            data: &[u8],
            out: &mut [u8],
        ) -> Result<usize> {
            self.inner.translate(from, to, data, out)
        }
        fn translate_pin(
            &self,
            from: &PinSpec<'_>,
            to: &PinSpec<'_>,
            pan: &Pan,
            block: &[u8],
        ) -> Result<Vec<u8>> {
            self.inner.translate_pin(from, to, pan, block)
        }
        fn generate_mac(
            &self,
            key: &KeyHandle,
            alg: MacAlgorithm,
            padding: Padding,
            data: &[u8],
        ) -> Result<MacTag> {
            self.inner.generate_mac(key, alg, padding, data)
        }
        fn verify_mac(
            &self,
            key: &KeyHandle,
            alg: MacAlgorithm,
            padding: Padding,
            data: &[u8],
            mac: &[u8],
        ) -> Result<()> {
            self.inner.verify_mac(key, alg, padding, data, mac)
        }
        fn rsa_key_info(&self, key: &KeyHandle) -> Result<RsaKeyInfo> {
            self.inner.rsa_key_info(key)
        }
        fn sign_emv_recovery(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>> {
            self.inner.sign_emv_recovery(key, message)
        }
    }
}

#[test]
fn a_backend_without_rsa_keys_or_icc_key_pairs_is_refused_up_front() {
    use pmp_core::hsm::Capability;
    use pmp_core::prep::{self, Options};
    for missing in [Capability::IccRsaKeys, Capability::RsaKeys] {
        let dir = run::TempDir::new("prep-icc-caps");
        let inner = run::store(&dir.path("ks"));
        run::write_xof(&inner, &run::cards(1), &dir.path("order.xof"));
        let issuer = run::issuer(&inner, "ISS-1024");
        let hsm = Without { inner, missing };
        let p = Profile::parse(&run::profile(&issuer, 1024, "")).unwrap();
        let out = dir.path("production.xml");
        let e = prep::run_files(
            &hsm,
            &p,
            &dir.path("order.xof"),
            &out,
            None,
            &Options::default(),
        )
        .unwrap_err();
        // The plan's refusal (the capability named), not the trait default's.
        assert!(
            matches!(&e, Error::Unsupported(m) if m.contains("the without (test) backend does not offer")),
            "{missing:?}: {e}"
        );
        assert!(!out.exists());
    }
}
