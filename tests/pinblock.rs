//! ISO 9564-1 PIN blocks: the vectors of `tests/data/pinblock.txt` (psec 1.3.0), round trips,
//! fill rules, malformed blocks (always the opaque `Error::Crypto`), input validation that
//! never repeats a PIN or PAN, and the translation policy.

mod common;

use common::load;
use pmp_core::pinblock::{
    self, Pan, Pin, PinBlockFormat, check_translation, decipher_iso4, decode, decode_iso4,
    decode_iso4_pin_field, encipher_iso4, encode, encode_iso4, iso4_pin_field,
};
use pmp_core::{Algorithm, Error, SecretKey};
use proptest::prelude::*;

fn nibbles(block: &[u8]) -> Vec<u8> {
    block.iter().flat_map(|b| [b >> 4, b & 0xF]).collect()
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[test]
fn vectors() {
    let vectors = load("pinblock.txt");
    let mut seen = [0usize; 5];
    for v in &vectors {
        let format: PinBlockFormat = v.get("Format").parse().unwrap();
        let pin = Pin::new(v.get("PIN")).unwrap();
        let pan = v.opt("PAN").map(|p| Pan::new(p).unwrap());
        let block = v.hex("Block");
        let at = format!("pinblock.txt line {}", v.line);
        seen[usize::from(format.number())] += 1;
        match format {
            PinBlockFormat::Iso4 => {
                let key = SecretKey::new(Algorithm::Aes, &v.hex("Key")).unwrap();
                let pan = pan.unwrap();
                assert_eq!(decode_iso4(&key, &block, &pan).unwrap(), pin, "{at}");
                // Our own encoding of the same PIN decodes back (fill is random).
                let again = encode_iso4(&key, &pin, &pan).unwrap();
                assert_eq!(decode_iso4(&key, &again, &pan).unwrap(), pin, "{at}");
            }
            _ => {
                assert_eq!(decode(format, &block, pan.as_ref()).unwrap(), pin, "{at}");
                if matches!(format, PinBlockFormat::Iso0 | PinBlockFormat::Iso2) {
                    let enc = encode(format, &pin, pan.as_ref()).unwrap();
                    assert_eq!(&enc[..], &block[..], "{at}: deterministic encode");
                }
            }
        }
    }
    assert_eq!(seen, [4, 0, 4, 4, 4]);
}

/// Format 1 has no psec vector: this block is composed by hand per ISO 9564-1 (control 1,
/// length 4, PIN 1234, fill nibbles ABCDEF0123, which format 1 leaves free).
#[test]
fn format1_by_hand() {
    let block = hex::decode("141234ABCDEF0123").unwrap();
    let pin = decode(PinBlockFormat::Iso1, &block, None).unwrap();
    assert_eq!(pin.expose_secret(), "1234");
}

/// ISO 9564-1 format 0 composed by hand: PIN field 041234FFFFFFFFFF, PAN 4111111111111111
/// gives PAN field 0000111111111111 (12 rightmost digits without the check digit).
#[test]
fn format0_by_hand_and_short_pan() {
    let pin = Pin::new("1234").unwrap();
    let pan = Pan::new("4111111111111111").unwrap();
    assert_eq!(hex::encode_upper(pan.field_iso0()), "0000111111111111");
    let b = encode(PinBlockFormat::Iso0, &pin, Some(&pan)).unwrap();
    assert_eq!(hex::encode_upper(&b[..]), "041225EEEEEEEEEE");
    // A 12-digit PAN has 11 digits without the check digit: left-padded with a zero.
    let pan12 = Pan::new("123456789012").unwrap();
    assert_eq!(hex::encode_upper(pan12.field_iso0()), "0000012345678901");
    // A 19-digit PAN: the 12 digits before the check digit.
    let pan19 = Pan::new("1234567890123456789").unwrap();
    assert_eq!(hex::encode_upper(pan19.field_iso0()), "0000789012345678");
    // Format 4 PAN field: M = length - 12, digits, zero fill.
    assert_eq!(
        hex::encode_upper(pan19.field_iso4()),
        "71234567890123456789000000000000"
    );
    assert_eq!(
        hex::encode_upper(pan12.field_iso4()),
        "01234567890120000000000000000000"
    );
}

#[test]
fn round_trips_and_fill_rules() {
    let pan = Pan::new("5413330089010434").unwrap();
    let key = SecretKey::new(Algorithm::Aes, &[0x5A; 32]).unwrap();
    for digits in ["0000", "1234", "987654", "12345678901", "999999999999"] {
        let pin = Pin::new(digits).unwrap();
        let n = digits.len();
        for format in [
            PinBlockFormat::Iso0,
            PinBlockFormat::Iso1,
            PinBlockFormat::Iso2,
            PinBlockFormat::Iso3,
        ] {
            let b = encode(format, &pin, Some(&pan)).unwrap();
            assert_eq!(decode(format, &b[..], Some(&pan)).unwrap(), pin);
            let clear = if format.needs_pan() {
                xor(&b[..], &pan.field_iso0())
            } else {
                b.to_vec()
            };
            let nib = nibbles(&clear);
            assert_eq!(nib[0], format.number());
            assert_eq!(usize::from(nib[1]), n);
            let fill = &nib[2 + n..];
            match format {
                PinBlockFormat::Iso0 | PinBlockFormat::Iso2 => {
                    assert!(fill.iter().all(|&x| x == 0xF))
                }
                PinBlockFormat::Iso3 => assert!(fill.iter().all(|&x| (0xA..=0xF).contains(&x))),
                _ => {}
            }
        }
        // Format 4: the PIN field, the enciphered block, and random fill each time.
        let field = iso4_pin_field(&pin).unwrap();
        let nib = nibbles(&field[..]);
        assert_eq!((nib[0], usize::from(nib[1])), (4, n));
        assert!(nib[2 + n..16].iter().all(|&x| x == 0xA));
        assert_eq!(decode_iso4_pin_field(&field[..]).unwrap(), pin);
        let b1 = encode_iso4(&key, &pin, &pan).unwrap();
        let b2 = encode_iso4(&key, &pin, &pan).unwrap();
        assert_ne!(b1, b2, "format 4 fill is random");
        assert_eq!(decode_iso4(&key, &b1, &pan).unwrap(), pin);
        assert_eq!(decipher_iso4(&key.cipher(), &b2, &pan).unwrap(), pin);
    }
    // Random fill: formats 1 and 3 differ between two encodings of a 4-digit PIN.
    let pin = Pin::new("1234").unwrap();
    for format in [PinBlockFormat::Iso1, PinBlockFormat::Iso3] {
        let a = encode(format, &pin, Some(&pan)).unwrap();
        let b = encode(format, &pin, Some(&pan)).unwrap();
        assert_ne!(a, b, "{format}: fill is random");
    }
}

#[test]
fn format3_fill_covers_a_to_f() {
    let pin = Pin::new("1234").unwrap();
    let mut seen = [false; 16];
    for _ in 0..50 {
        let b = encode(
            PinBlockFormat::Iso3,
            &pin,
            Some(&Pan::new("400000000000").unwrap()),
        )
        .unwrap();
        let clear = xor(&b[..], &Pan::new("400000000000").unwrap().field_iso0());
        for x in &nibbles(&clear)[6..] {
            seen[usize::from(*x)] = true;
        }
    }
    assert_eq!(&seen[10..], &[true; 6], "all of A-F appear");
    assert_eq!(
        &seen[..10],
        &[false; 10][..],
        "no digit appears in the fill"
    );
}

fn crypto<T: core::fmt::Debug>(r: pmp_core::Result<T>) -> bool {
    matches!(r, Err(Error::Crypto))
}

#[test]
fn malformed_blocks_are_opaque() {
    use PinBlockFormat::*;
    // Clear (PAN-free) blocks for formats 1 and 2, and the clear PIN field of 0/3 with the
    // all-zero-digit PAN 000000000000 (its PAN field is zero).
    let pan0 = Pan::new("0000000000000").unwrap();
    let cases: [(PinBlockFormat, &str); 16] = [
        (Iso0, "141234FFFFFFFFFF"), // wrong control
        (Iso0, "031234FFFFFFFFFF"), // length 3
        (Iso0, "0D1234FFFFFFFFFF"), // length 13
        (Iso0, "041A34FFFFFFFFFF"), // non-digit PIN nibble
        (Iso0, "041234FFFFFFFFFE"), // wrong fill
        (Iso0, "0412340000000000"), // wrong fill (zeros)
        (Iso1, "241234ABCDEF0123"), // wrong control
        (Iso1, "1F1234ABCDEF0123"), // length 15
        (Iso1, "14123BABCDEF0123"), // non-digit
        (Iso2, "241234FFFFFFFFAF"), // wrong fill
        (Iso2, "201234FFFFFFFFFF"), // length 0
        (Iso2, "3412345FFFFFFFFF"), // wrong control
        (Iso3, "341234ABCDEF0123"), // fill with digits
        (Iso3, "341234ABCDEFAB9C"), // one digit in the fill
        (Iso3, "041234ABCDEFABCD"), // wrong control
        (Iso3, "3C123456789012F1"), // 12 digits, fill F then 1: 1 is no format 3 fill
    ];
    for (format, hex_block) in &cases {
        let b = hex::decode(hex_block).unwrap();
        assert!(
            crypto(decode(*format, &b, Some(&pan0))),
            "{format} accepted {hex_block}"
        );
    }
    // The same 12-digit PIN with a proper fill decodes.
    let ok = hex::decode("3C123456789012FA").unwrap();
    assert_eq!(
        decode(Iso3, &ok, Some(&pan0)).unwrap().expose_secret(),
        "123456789012"
    );

    // Format 4: a wrong key, a wrong PAN, a flipped bit, a malformed PIN field.
    let key = SecretKey::new(Algorithm::Aes, &[0x11; 16]).unwrap();
    let other = SecretKey::new(Algorithm::Aes, &[0x12; 16]).unwrap();
    let pan = Pan::new("4000001234567899").unwrap();
    let pin = Pin::new("2468").unwrap();
    let b = encode_iso4(&key, &pin, &pan).unwrap();
    assert!(crypto(decode_iso4(&other, &b, &pan)));
    assert!(crypto(decode_iso4(
        &key,
        &b,
        &Pan::new("4000001234567898").unwrap()
    )));
    let mut flipped = b;
    flipped[0] ^= 0x80;
    assert!(crypto(decode_iso4(&key, &flipped, &pan)));
    for field in [
        "341234AAAAAAAAAA0000000000000000", // wrong control
        "431234AAAAAAAAAA0000000000000000", // length 3
        "44123BAAAAAAAAAA0000000000000000", // non-digit
        "441234AAAAAAAAAF0000000000000000", // wrong fill
        "441234FFFFFFFFFF0000000000000000", // F fill is not format 4
    ] {
        let f = hex::decode(field).unwrap();
        assert!(crypto(decode_iso4_pin_field(&f)), "accepted {field}");
        // Enciphered properly, such a field still fails after deciphering.
        let c = key.cipher();
        let mut blk = f.clone();
        c.encrypt_block(&mut blk).unwrap();
        for (x, y) in blk.iter_mut().zip(pan.field_iso4()) {
            *x ^= y;
        }
        c.encrypt_block(&mut blk).unwrap();
        assert!(crypto(decode_iso4(&key, &blk, &pan)));
    }
    assert!(
        decode_iso4_pin_field(&hex::decode("441234AAAAAAAAAA0123456789ABCDEF").unwrap()).is_ok()
    );
}

#[test]
fn caller_input_errors_name_the_field_not_the_value() {
    for bad in ["123", "1234567890123", "12a4", "", " 1234", "１２３４"] {
        let e = Pin::new(bad).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Invalid { field: "PIN", .. }), "{msg}");
        if !bad.is_empty() {
            assert!(!msg.contains(bad), "error repeats the PIN: {msg}");
        }
    }
    for bad in [
        "41111111111",
        "41111111111111111111",
        "4111-1111-1111-1111",
        "41111111111a",
    ] {
        let e = Pan::new(bad).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Invalid { field: "PAN", .. }), "{msg}");
        assert!(!msg.contains(bad) && !msg.contains("41111111111"), "{msg}");
    }
    let pin = Pin::new("1234").unwrap();
    // A missing PAN for formats 0 and 3 (not a crypto error: the caller's mistake).
    for f in [PinBlockFormat::Iso0, PinBlockFormat::Iso3] {
        assert!(matches!(encode(f, &pin, None), Err(Error::Invalid { .. })));
        assert!(matches!(
            decode(f, &[0; 8], None),
            Err(Error::Invalid { .. })
        ));
    }
    // Formats 1 and 2 need no PAN.
    encode(PinBlockFormat::Iso1, &pin, None).unwrap();
    encode(PinBlockFormat::Iso2, &pin, None).unwrap();
    // Wrong block lengths, format 4 through the 8-byte API, a TDES key for format 4.
    assert!(matches!(
        decode(PinBlockFormat::Iso2, &[0; 7], None),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        decode(PinBlockFormat::Iso2, &[0; 16], None),
        Err(Error::Invalid { .. })
    ));
    assert!(encode(PinBlockFormat::Iso4, &pin, None).is_err());
    assert!(decode(PinBlockFormat::Iso4, &[0; 8], None).is_err());
    let pan = Pan::new("4111111111111111").unwrap();
    let aes = SecretKey::new(Algorithm::Aes, &[1; 16]).unwrap();
    assert!(matches!(
        decode_iso4(&aes, &[0; 15], &pan),
        Err(Error::Invalid { .. })
    ));
    let tdes = SecretKey::from_hex(Algorithm::Tdes, "0123456789ABCDEFFEDCBA9876543210").unwrap();
    assert!(matches!(
        encode_iso4(&tdes, &pin, &pan),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        encipher_iso4(&tdes.cipher(), &pin, &pan),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn debug_hides_pin_and_masks_pan() {
    let pin = Pin::new("97531").unwrap();
    assert_eq!(format!("{pin:?}"), "Pin(****)");
    assert_eq!(format!("{pin:#?}"), "Pin(****)");
    let pan = Pan::new("4000001234567899").unwrap();
    let d = format!("{pan:?}");
    assert_eq!(d, "Pan(************7899)");
}

#[test]
fn formats_parse_and_number() {
    for n in 0..5u8 {
        let f: PinBlockFormat = n.to_string().parse().unwrap();
        assert_eq!(f.number(), n);
        assert_eq!(PinBlockFormat::from_number(n), Some(f));
        assert_eq!(format!("ISO-{n}").parse::<PinBlockFormat>().unwrap(), f);
    }
    assert!("5".parse::<PinBlockFormat>().is_err());
    assert!("".parse::<PinBlockFormat>().is_err());
    assert_eq!(PinBlockFormat::Iso4.block_len(), 16);
    assert_eq!(PinBlockFormat::Iso3.block_len(), 8);
}

#[test]
fn translation_policy() {
    use PinBlockFormat::*;
    for from in [Iso0, Iso3, Iso4] {
        assert!(matches!(
            check_translation(from, Iso1),
            Err(Error::Policy(_))
        ));
        for to in [Iso0, Iso3, Iso4] {
            check_translation(from, to).unwrap();
        }
    }
    for to in [Iso0, Iso1, Iso3, Iso4] {
        check_translation(Iso1, to).unwrap();
    }
    for f in [Iso0, Iso1, Iso3, Iso4] {
        assert!(check_translation(Iso2, f).is_err());
        assert!(check_translation(f, Iso2).is_err());
    }
}

fn pin_strategy() -> impl Strategy<Value = String> {
    "[0-9]{4,12}"
}

fn pan_strategy() -> impl Strategy<Value = String> {
    "[0-9]{12,19}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn clear_formats_round_trip(pin in pin_strategy(), pan in pan_strategy(), f in 0u8..4) {
        let format = PinBlockFormat::from_number(f).unwrap();
        let pin = Pin::new(&pin).unwrap();
        let pan = Pan::new(&pan).unwrap();
        let b = encode(format, &pin, Some(&pan)).unwrap();
        prop_assert_eq!(decode(format, &b[..], Some(&pan)).unwrap(), pin);
    }

    #[test]
    fn format4_round_trip(
        pin in pin_strategy(),
        pan in pan_strategy(),
        key in proptest::collection::vec(any::<u8>(), 32),
        klen in prop_oneof![Just(16usize), Just(24), Just(32)],
    ) {
        let key = SecretKey::new(Algorithm::Aes, &key[..klen]).unwrap();
        let pin = Pin::new(&pin).unwrap();
        let pan = Pan::new(&pan).unwrap();
        let b = pinblock::encode_iso4(&key, &pin, &pan).unwrap();
        prop_assert_eq!(pinblock::decode_iso4(&key, &b, &pan).unwrap(), pin);
    }

    #[test]
    fn decode_never_panics(block in proptest::collection::vec(any::<u8>(), 8), f in 0u8..4) {
        let format = PinBlockFormat::from_number(f).unwrap();
        let pan = Pan::new("4111111111111111").unwrap();
        match decode(format, &block, Some(&pan)) {
            Ok(pin) => prop_assert!((4..=12).contains(&pin.len())),
            Err(e) => prop_assert!(matches!(e, Error::Crypto)),
        }
    }
}
