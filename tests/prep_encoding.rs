//! DGI / TLV / CPS encoding and the value formats, against vectors built by hand from the
//! rules (BER-TLV as EMV Book 3 annex B says; the CPS DGI length rule; EMV data formats cn,
//! n, ans, b; track 2 equivalent data; expiry YYMMDD). Each expected value is written out
//! in the comment beside it.

use pmp_core::prep::dgi::{self, Format};
use zeroize::Zeroizing;

fn enc(f: Format, v: &str, len: Option<usize>) -> Result<String, &'static str> {
    let mut out = Zeroizing::new(Vec::new());
    f.encode(v.as_bytes(), len, &mut out)?;
    Ok(hex::encode_upper(&out[..]))
}

#[test]
fn value_formats() {
    // cn: digits two per byte, left-aligned, F fill.
    assert_eq!(
        enc(Format::Cn, "4111111111111111", None).unwrap(),
        "4111111111111111"
    );
    assert_eq!(
        enc(Format::Cn, "4000001234567890123", None).unwrap(),
        "4000001234567890123F"
    );
    assert_eq!(enc(Format::Cn, "123", Some(4)).unwrap(), "123FFFFF");
    // n: BCD right-aligned, zero fill on the left.
    assert_eq!(enc(Format::N, "00", None).unwrap(), "00");
    assert_eq!(enc(Format::N, "123", None).unwrap(), "0123");
    assert_eq!(enc(Format::N, "96", Some(2)).unwrap(), "0096");
    assert_eq!(enc(Format::N, "840", Some(2)).unwrap(), "0840");
    assert!(enc(Format::N, "12345", Some(2)).is_err());
    assert!(enc(Format::N, "12a", None).is_err());
    assert!(enc(Format::Cn, "", None).is_err());
    // ans: the ASCII bytes.
    assert_eq!(
        enc(Format::Ans, "DOE/JOHN", None).unwrap(),
        "444F452F4A4F484E"
    );
    assert!(enc(Format::Ans, "tab\there", None).is_err());
    // b: hex as is.
    assert_eq!(enc(Format::B, "5C00", None).unwrap(), "5C00");
    assert!(enc(Format::B, "5C0", None).is_err());
    assert!(enc(Format::B, "ZZ", None).is_err());
    // track2: digits, D separator (= accepted), F fill to whole bytes.
    assert_eq!(
        enc(Format::Track2, "4111111111111111D2512101123450000", None).unwrap(),
        "4111111111111111D2512101123450000F"
    );
    assert_eq!(
        enc(Format::Track2, "4111111111111111=251210112345", None).unwrap(),
        "4111111111111111D251210112345F"
    );
    assert!(enc(Format::Track2, "4111111111111111", None).is_err());
    assert!(enc(Format::Track2, "41D11D", None).is_err());
    assert!(enc(Format::Track2, "41D1X", None).is_err());
    // yymm-end-of-month: YYMMDD with the last day (2000-2099; leap years every fourth).
    assert_eq!(enc(Format::YymmEndOfMonth, "2502", None).unwrap(), "250228");
    assert_eq!(enc(Format::YymmEndOfMonth, "2402", None).unwrap(), "240229");
    assert_eq!(enc(Format::YymmEndOfMonth, "0002", None).unwrap(), "000229");
    assert_eq!(enc(Format::YymmEndOfMonth, "2404", None).unwrap(), "240430");
    assert_eq!(enc(Format::YymmEndOfMonth, "2512", None).unwrap(), "251231");
    assert_eq!(enc(Format::YymmEndOfMonth, "3101", None).unwrap(), "310131");
    assert!(enc(Format::YymmEndOfMonth, "2513", None).is_err());
    assert!(enc(Format::YymmEndOfMonth, "2500", None).is_err());
    assert!(enc(Format::YymmEndOfMonth, "251", None).is_err());
}

#[test]
fn errors_never_repeat_the_value() {
    let mut out = Zeroizing::new(Vec::new());
    let e = Format::Cn
        .encode(b"4111X11111111111", None, &mut out)
        .unwrap_err();
    assert!(!e.contains("4111"));
}

#[test]
fn ber_tags() {
    for ok in ["5A", "57", "5F20", "9F08", "BF0C", "9F8101", "DF8101"] {
        dgi::check_tag(&hex::decode(ok).unwrap()).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // 9F alone announces more; 5A00: 5A announces none; 9F8181: the last byte continues;
    // four bytes; 00 and FF.
    for bad in ["9F", "5A00", "9F8181", "9F818101", "00", "FF", ""] {
        assert!(dgi::check_tag(&hex::decode(bad).unwrap()).is_err(), "{bad}");
    }
}

#[test]
fn ber_lengths_and_objects() {
    let l = |n: usize| {
        let mut v = Vec::new();
        dgi::push_ber_len(&mut v, n).unwrap();
        hex::encode_upper(v)
    };
    assert_eq!(l(0), "00");
    assert_eq!(l(127), "7F");
    assert_eq!(l(128), "8180");
    assert_eq!(l(255), "81FF");
    assert_eq!(l(256), "820100");
    assert_eq!(l(65535), "82FFFF");
    assert!(dgi::push_ber_len(&mut Vec::new(), 65536).is_err());
    // 5F34 01 00 (PSN 00); 9F08 02 0096.
    assert_eq!(
        hex::encode_upper(dgi::tlv(&[0x5F, 0x34], &[0]).unwrap()),
        "5F340100"
    );
    let long = dgi::tlv(&[0x9F, 0x46], &[0xAB; 200]).unwrap();
    assert_eq!(hex::encode_upper(&long[..4]), "9F4681C8");
    assert_eq!(long.len(), 2 + 2 + 200);
    assert!(dgi::tlv(&[0x9F], &[1]).is_err());
}

#[test]
fn records_and_dgi_frames() {
    // DGI 0101 = SFI 1 record 1: 70 L (57 L track2 || 5F20 L name).
    let mut objs = Vec::new();
    dgi::push_tlv(
        &mut objs,
        &[0x57],
        &hex::decode("4111111111111111D2512101").unwrap(),
    )
    .unwrap();
    dgi::push_tlv(&mut objs, &[0x5F, 0x20], b"DOE/JOHN").unwrap();
    let rec = dgi::record_template(&objs).unwrap();
    // 57 0C 4111111111111111D2512101 | 5F20 08 444F452F4A4F484E: 14 + 11 = 25 = 0x19.
    assert_eq!(
        hex::encode_upper(&rec),
        "7019570C4111111111111111D25121015F2008444F452F4A4F484E"
    );
    assert_eq!(
        hex::encode_upper(dgi::frame(0x0101, &rec).unwrap()),
        "01011B7019570C4111111111111111D25121015F2008444F452F4A4F484E"
    );
    // CPS: one length byte up to 254, then FF and two bytes.
    let f = dgi::frame(0x8000, &[0; 254]).unwrap();
    assert_eq!(hex::encode_upper(&f[..3]), "8000FE");
    let f = dgi::frame(0x8000, &[0; 255]).unwrap();
    assert_eq!(hex::encode_upper(&f[..5]), "8000FF00FF");
    let f = dgi::frame(0x8201, &[0; 0x1234]).unwrap();
    assert_eq!(hex::encode_upper(&f[..5]), "8201FF1234");
    assert!(dgi::frame(0x8201, &vec![0; 65536]).is_err());
    assert_eq!(
        hex::encode_upper(dgi::frame(0x9010, &[3, 3]).unwrap()),
        "9010020303"
    );
}

#[test]
fn record_dgi_numbers() {
    for (id, rec) in [
        (0x0101, true),
        (0x0102, true),
        (0x1E10, true),
        (0x0210, true),
        (0x0100, false),
        (0x0111, false),
        (0x1F01, false),
        (0x0001, false),
        (0x8000, false),
        (0x9000, false),
        (0x8010, false),
        (0x9010, false),
        (0x9102, false),
    ] {
        assert_eq!(dgi::is_record(id), rec, "{id:04X}");
    }
}
