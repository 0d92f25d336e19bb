//! Application profiles (`pmp-profile-1`): the issue's example parses to what it says, and
//! every malformed or inconsistent profile is refused with the element named.

use pmp_core::Error;
use pmp_core::hsm::emv::{IccDerivation, Psn};
use pmp_core::prep::dgi::Format;
use pmp_core::prep::profile::{DgiContent, Profile, TagSource};

const EXAMPLE: &str = r#"<profile format="pmp-profile-1" name="VISA-CLASSIC-EMV" product="DEMO-VISA-CLASSIC">
  <keys ktk="PROD1-KTK" ptk="PROD1-PTK" mtk="PROD1-MTK" dtk="PROD1-DTK"/>
  <icc-keys option="A" imk-ac="IMK-AC" imk-smi="IMK-SMI" imk-smc="IMK-SMC"
            pan="PAN" psn="PAN_SEQ" psn-default="00"/>
  <dgi id="0101"><tag id="57" from="TRACK2" format="track2"/><tag id="5F20" from="NAME" format="ans"/></dgi>
  <dgi id="0102"><tag id="5A" from="PAN" format="cn"/><tag id="5F24" from="EXPIRY" format="yymm-end-of-month"/>
                 <tag id="5F34" from="PAN_SEQ" format="n" default="00"/><tag id="9F08" value="0096"/></dgi>
  <dgi id="8000" content="icc-master-keys"/>
  <dgi id="9000" content="icc-master-key-kcvs"/>
  <dgi id="8010" content="pin-block"/>
  <dgi id="9010" value="0303"/>
</profile>"#;

#[test]
fn the_example_parses() {
    let p = Profile::parse(EXAMPLE).unwrap();
    assert_eq!(p.name, "VISA-CLASSIC-EMV");
    assert_eq!(p.product, "DEMO-VISA-CLASSIC");
    assert_eq!(p.keys.ktk, "PROD1-KTK");
    assert_eq!(p.keys.dtk, "PROD1-DTK");
    assert_eq!(p.keys.xof_mac_key, None);
    let icc = p.icc.as_ref().unwrap();
    assert_eq!(icc.option, IccDerivation::A);
    assert_eq!(icc.imks, ["IMK-AC", "IMK-SMI", "IMK-SMC"]);
    assert_eq!(icc.psn.as_deref(), Some("PAN_SEQ"));
    assert_eq!(icc.psn_default, Some(Psn::new(0).unwrap()));
    let ids: Vec<u16> = p.dgis.iter().map(|d| d.id).collect();
    assert_eq!(ids, [0x0101, 0x0102, 0x8000, 0x9000, 0x8010, 0x9010]);
    let DgiContent::Tags(t) = &p.dgis[1].content else {
        panic!("0102")
    };
    assert_eq!(t.len(), 4);
    assert_eq!(t[1].tag, [0x5F, 0x24]);
    assert_eq!(
        t[2].source,
        TagSource::Attribute {
            name: "PAN_SEQ".into(),
            format: Format::N,
            length: None,
            default: Some("00".into())
        }
    );
    assert_eq!(t[3].source, TagSource::Constant(vec![0x00, 0x96]));
    assert!(p.dgis[0].carries_card_data());
    assert!(!p.dgis[3].carries_card_data());
    assert_eq!(
        p.dgis[4].content,
        DgiContent::PinBlock {
            from: "PIN_BLOCK".into(),
            format: None,
            pan: "PAN".into()
        }
    );
    assert_eq!(p.dgis[5].content, DgiContent::Value(vec![3, 3]));
    assert_eq!(
        p.attributes(),
        ["TRACK2", "NAME", "PAN", "EXPIRY", "PAN_SEQ", "PIN_BLOCK"]
    );
}

fn refused(xml: &str, needle: &str) {
    match Profile::parse(xml) {
        Err(Error::Invalid {
            field: "profile",
            reason,
        }) => {
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
        }
        other => panic!("expected a refusal naming {needle:?}: {other:?}"),
    }
}

fn with(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "{from}");
    EXAMPLE.replacen(from, to, 1)
}

#[test]
fn malformed_profiles_are_refused() {
    refused(
        &with("pmp-profile-1", "pmp-profile-2"),
        "format must be pmp-profile-1",
    );
    refused(
        &with(r#"ktk="PROD1-KTK""#, r#"ktk="PROD1-KTK" kek="X""#),
        "<keys>: unknown attribute kek",
    );
    refused(
        &with(r#"ktk="PROD1-KTK""#, ""),
        "<keys>: attribute ktk is required",
    );
    refused(
        &with(r#"ktk="PROD1-KTK""#, r#"ktk="BAD LABEL""#),
        "<keys>: ktk",
    );
    refused(
        &with("<dgi id=\"9010\"", "<extra/><dgi id=\"9010\""),
        "<extra>: unexpected element inside <profile>",
    );
    refused(
        &format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{EXAMPLE}"),
        "DOCTYPE",
    );
    refused(
        &with("<dgi id=\"9010\"", "<?pi x?><dgi id=\"9010\""),
        "processing instructions",
    );
    refused(
        &with(
            r#"<dgi id="9010" value="0303"/>"#,
            r#"<dgi id="9010">text</dgi>"#,
        ),
        "unexpected text",
    );
    refused(
        &with(r#"id="9010""#, r#"id="0101""#),
        "DGI 0101 is given twice",
    );
    refused(
        &with(
            r#"<dgi id="9010" value="0303"/>"#,
            r#"<dgi id="0103" value="0303"/>"#,
        ),
        "DGI 0103 is a record",
    );
    refused(
        &with(
            r#"id="9010" value="0303""#,
            r#"id="9010" value="0303" content="pin-block""#,
        ),
        "give tags, or value, or content",
    );
    refused(
        &with(r#"value="0303""#, r#"value="030""#),
        "value must be hex",
    );
    refused(
        &with(r#"id="9010""#, r#"id="901""#),
        "id must be 4 hex digits",
    );
    refused(
        &with(r#"format="ans""#, r#"format="an""#),
        "format must be cn, n, ans",
    );
    refused(&with(r#"<tag id="5F20""#, r#"<tag id="5F""#), "id: ");
    refused(
        &with(r#"<tag id="5F20""#, r#"<tag id="70""#),
        "record template",
    );
    refused(
        &with(r#"<tag id="5F20""#, r#"<tag id="57""#),
        "tag 57 is given twice",
    );
    refused(
        &with(r#"from="NAME" format="ans""#, r#"from="NAME" value="00""#),
        "either from",
    );
    refused(
        &with(r#"from="NAME" format="ans""#, r#"from="NAME""#),
        "attribute format is required",
    );
    refused(
        &with(r#"format="n" default="00""#, r#"format="n" default="0A""#),
        "default must be decimal digits",
    );
    refused(
        &with(r#"format="ans"/>"#, r#"format="ans" length="2"/>"#),
        "length is for formats n and cn",
    );
    refused(
        &with(r#"option="A""#, r#"option="D""#),
        "option must be A, B, C or auto",
    );
    refused(
        &with(r#"psn-default="00""#, r#"psn-default="100""#),
        "psn-default",
    );
    refused(
        &with(
            r#"content="icc-master-key-kcvs""#,
            r#"content="icc-master-keys""#,
        ),
        "content is given twice",
    );
    refused(
        &with(
            r#"content="pin-block""#,
            r#"content="pin-block" pin-format="2""#,
        ),
        "pin-format must be 0, 1, 3 or 4",
    );
    refused(
        &with(r#"content="pin-block""#, r#"content="pin""#),
        "content must be",
    );
    refused(
        &with(r#"option="A" "#, r#"option="A" option="B" "#),
        "duplicated attribute",
    );
    refused(
        &with(
            "<keys ",
            "<keys ktk=\"A\" ptk=\"B\" mtk=\"C\" dtk=\"D\"/><keys ",
        ),
        "<keys>: given more than once",
    );
    // icc-keys is needed exactly when a DGI holds ICC master keys or their KCVs.
    let no_icc = EXAMPLE
        .lines()
        .filter(|l| !l.contains("icc-keys") && !l.contains("pan=\"PAN\""))
        .collect::<Vec<_>>()
        .join("\n");
    refused(&no_icc, "<icc-keys>: missing");
    let no_mk = EXAMPLE
        .lines()
        .filter(|l| !l.contains("icc-master-key"))
        .collect::<Vec<_>>()
        .join("\n");
    refused(&no_mk, "<icc-keys>: given, but");
    refused(
        r#"<profile format="pmp-profile-1" name="P" product="X"><keys ktk="A" ptk="B" mtk="C" dtk="D"/></profile>"#,
        "no DGI",
    );
    refused(&"x".repeat(1024 * 1024 + 1), "larger than 1 MiB");
    refused(&with("</profile>", ""), "not well-formed");
}

#[test]
fn pin_block_options() {
    let p = Profile::parse(&with(
        r#"content="pin-block""#,
        r#"content="pin-block" from="PINB" pin-format="0" pan="PAN2""#,
    ))
    .unwrap();
    assert_eq!(
        p.dgis[4].content,
        DgiContent::PinBlock {
            from: "PINB".into(),
            format: Some(pmp_core::pinblock::PinBlockFormat::Iso0),
            pan: "PAN2".into()
        }
    );
}
