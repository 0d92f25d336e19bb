//! ICC RSA keys and EMV certificates at data preparation: the certificate and SDA signed
//! data against an independent construction (tests/data/icc_cert_kat.txt, made by
//! scripts/icc_cert_kat.py), recovery of a real certificate published by openemv/emv-utils
//! (tests/data/icc_cert_openemv.txt), tamper checks, and every profile refusal of
//! `<icc-rsa>`, `icc-rsa-crt`, `oda` and the tag contents.

mod common;

use std::collections::BTreeMap;

use pmp_core::Error;
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
                assert_eq!(cert.message, v.hex("Message"), "line {}", v.line);
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
