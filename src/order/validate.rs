//! Field validation for issuer input: PAN (digits, 12–19, Luhn), expiry (`YYMM`), service
//! code (ISO/IEC 7813), cardholder name (character set), digits, track 2 equivalent data
//! (format, and the same PAN and expiry as the record's own fields), length in characters.
//!
//! Every check works on bytes and returns a [`Reason`] — a fixed, value-free code that goes
//! into the reject report (`reason=pan-luhn`), so that no PAN, name or date is ever written
//! there.
//!
//! ```
//! use pmp_core::order::validate::{self, Charset, Check, Reason};
//! assert!(validate::luhn_ok(b"4111111111111111"));
//! assert_eq!(Check::Pan.run(b"4111111111111112"), Err(Reason::PanLuhn));
//! assert_eq!(Check::Expiry.run(b"2713"), Err(Reason::ExpiryFormat));
//! assert_eq!(Check::ServiceCode.run(b"201"), Ok(()));
//! assert_eq!(Check::Name { charset: Charset::Ascii }.run(b"DOE/JOHN"), Ok(()));
//! assert_eq!(Check::Name { charset: Charset::Latin }.run("ÉLODIE & CIE".as_bytes()), Ok(()));
//! assert_eq!(validate::track2_matches(b"4111111111111111D29122011234", Some(b"4111111111111111"), Some(b"2912")), Ok(()));
//! ```

use core::fmt;

/// Why a record was rejected. Value-free: the text is a fixed code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A required field is missing or empty.
    Missing,
    /// The PAN holds a non-digit.
    PanDigits,
    /// The PAN is not 12 to 19 digits long.
    PanLength,
    /// The PAN's Luhn check digit is wrong.
    PanLuhn,
    /// The expiry date is not `YYMM` with a month 01–12.
    ExpiryFormat,
    /// The service code is not three digits valid under ISO/IEC 7813.
    ServiceCode,
    /// The name holds a character outside the allowed set.
    NameCharset,
    /// The name is too short or too long.
    NameLength,
    /// A field is longer than its layout allows, or not valid UTF-8 where text is needed.
    FieldFormat,
    /// An individually encrypted field is not even-length hex of whole cipher blocks.
    CiphertextFormat,
    /// An individually encrypted field did not decrypt (bad padding under the issuer key),
    /// or its clear value failed its check: after decryption every failure is this one
    /// reason, so that the report is no padding oracle.
    FieldDecrypt,
    /// The PIN block did not translate (malformed hex, wrong length, or a PIN block that
    /// does not decode under the issuer PIN key and PAN).
    PinBlock,
    /// The record has the wrong number of fields (delimited layouts).
    FieldCount,
    /// The record id is missing, too long or holds characters that XOF does not allow.
    RecordId,
    /// A field is shorter than its `min-length` or longer than its `max-length` (in
    /// characters; a name field says `name-length` instead).
    FieldLength,
    /// The field's element or attribute occurs more than once in the record (XML layouts):
    /// never silently the first one.
    FieldRepeated,
    /// Track 2 equivalent data is not `PAN`, a separator (`=` or `D`), `YYMM`, a service
    /// code and discretionary digits.
    Track2Format,
    /// Track 2 equivalent data carries another PAN or expiry date than the record's PAN and
    /// expiry fields (or one of those is absent).
    Track2Mismatch,
    // No reason for a record id that occurs twice in the file: telling needs memory that
    // grows with the file, and the import streams in bounded memory. Such records are
    // imported as they come.
}

impl Reason {
    /// The reason's code as written in the reject report.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::PanDigits => "pan-not-digits",
            Reason::PanLength => "pan-length",
            Reason::PanLuhn => "pan-luhn",
            Reason::ExpiryFormat => "expiry-format",
            Reason::ServiceCode => "service-code",
            Reason::NameCharset => "name-charset",
            Reason::NameLength => "name-length",
            Reason::FieldFormat => "field-format",
            Reason::CiphertextFormat => "ciphertext-format",
            Reason::FieldDecrypt => "field-decrypt",
            Reason::PinBlock => "pin-block",
            Reason::FieldCount => "field-count",
            Reason::RecordId => "record-id",
            Reason::FieldLength => "field-length",
            Reason::FieldRepeated => "field-repeated",
            Reason::Track2Format => "track2-format",
            Reason::Track2Mismatch => "track2-mismatch",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The characters a name may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Charset {
    /// The embossing set: `A–Z a–z 0–9`, space and `. - ' /`.
    #[default]
    Ascii,
    /// The embossing set, `&`, and the letters of ISO-8859-1 in upper and lower case
    /// (U+00C0–U+00FF except `×` and `÷`: `É Ü Ë Ñ Ç ß ø` ...).
    Latin,
}

impl Charset {
    /// Whether `c` is in the set.
    pub fn allows(self, c: char) -> bool {
        let ascii = c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '\'' | '/');
        match self {
            Charset::Ascii => ascii,
            Charset::Latin => {
                ascii || c == '&' || (('\u{C0}'..='\u{FF}').contains(&c) && c != '×' && c != '÷')
            }
        }
    }
}

/// A content check on a field's clear value. Lengths (`min-length`, `max-length`) are not
/// part of the check: they apply to every field ([`check_length`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Digits only, 12 to 19 of them, Luhn check digit (ISO/IEC 7812-1).
    Pan,
    /// `YYMM`, month 01 to 12.
    Expiry,
    /// Three digits; first digit 1, 2, 5, 6, 7 or 9; second 0, 2 or 4; third 0 to 7
    /// (ISO/IEC 7813).
    ServiceCode,
    /// Every character in `charset` (the length is the field's `min-length`/`max-length`,
    /// 2 to 26 by default: ISO/IEC 7813 track 1).
    Name {
        /// The characters allowed.
        charset: Charset,
    },
    /// Digits only (the length is the field's `length` or `min-length`/`max-length`).
    Digits,
    /// Track 2 equivalent data ([`check_track2`]); the import also compares its PAN and
    /// expiry with the named fields of the same record ([`track2_matches`]).
    Track2 {
        /// The field holding the PAN.
        pan_field: String,
        /// The field holding the expiry date.
        expiry_field: String,
    },
}

impl Check {
    /// Runs the check on one value (for [`Check::Track2`], its format only).
    pub fn run(&self, v: &[u8]) -> Result<(), Reason> {
        match self {
            Check::Pan => check_pan(v),
            Check::Expiry => check_expiry(v),
            Check::ServiceCode => check_service_code(v),
            Check::Name { charset } => check_name_charset(v, *charset),
            Check::Digits => {
                if v.iter().all(u8::is_ascii_digit) {
                    Ok(())
                } else {
                    Err(Reason::FieldFormat)
                }
            }
            Check::Track2 { .. } => check_track2(v).map(|_| ()),
        }
    }

    /// The reason for a value outside the field's length bounds: `name-length` for a
    /// name, `field-length` otherwise.
    pub fn length_reason(check: Option<&Check>) -> Reason {
        match check {
            Some(Check::Name { .. }) => Reason::NameLength,
            _ => Reason::FieldLength,
        }
    }
}

/// The length of `v` in characters (UTF-8; `None` when `v` is not UTF-8).
pub fn char_len(v: &[u8]) -> Option<usize> {
    core::str::from_utf8(v).ok().map(|s| s.chars().count())
}

/// `min..=max` characters (either bound optional); `FieldFormat` when `v` is not UTF-8.
pub fn check_length(v: &[u8], min: Option<usize>, max: Option<usize>) -> Result<(), Reason> {
    let n = char_len(v).ok_or(Reason::FieldFormat)?;
    if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
        return Err(Reason::FieldLength);
    }
    Ok(())
}

/// The Luhn (mod 10) check over a string of ASCII digits (false for anything else).
pub fn luhn_ok(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    luhn_sum(digits).is_multiple_of(10)
}

fn luhn_sum(digits: &[u8]) -> u32 {
    digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum()
}

/// The Luhn check digit to append to `partial` (ASCII digits).
///
/// # Panics
///
/// If `partial` holds a byte that is not an ASCII digit (use [`checked_luhn_digit`] for
/// input that is not known to be digits).
pub fn luhn_digit(partial: &[u8]) -> u8 {
    checked_luhn_digit(partial).expect("luhn_digit: the input must be ASCII digits")
}

/// The Luhn check digit to append to `partial`, or `None` when it holds a non-digit.
pub fn checked_luhn_digit(partial: &[u8]) -> Option<u8> {
    if !partial.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Append a zero, and pick the digit that makes the sum a multiple of 10.
    let mut sum = 0u32;
    for (i, &d) in partial.iter().rev().enumerate() {
        let d = u32::from(d - b'0');
        sum += if i % 2 == 0 {
            let x = d * 2;
            if x > 9 { x - 9 } else { x }
        } else {
            d
        };
    }
    Some(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// PAN: digits, 12–19, Luhn.
pub fn check_pan(v: &[u8]) -> Result<(), Reason> {
    if !v.iter().all(u8::is_ascii_digit) {
        return Err(Reason::PanDigits);
    }
    if !(12..=19).contains(&v.len()) {
        return Err(Reason::PanLength);
    }
    if !luhn_sum(v).is_multiple_of(10) {
        return Err(Reason::PanLuhn);
    }
    Ok(())
}

/// Expiry: `YYMM`, month 01–12.
pub fn check_expiry(v: &[u8]) -> Result<(), Reason> {
    if v.len() != 4 || !v.iter().all(u8::is_ascii_digit) {
        return Err(Reason::ExpiryFormat);
    }
    let month = (v[2] - b'0') * 10 + (v[3] - b'0');
    if (1..=12).contains(&month) {
        Ok(())
    } else {
        Err(Reason::ExpiryFormat)
    }
}

/// Service code (ISO/IEC 7813): three digits, first in {1,2,5,6,7,9}, second in {0,2,4},
/// third in 0–7.
pub fn check_service_code(v: &[u8]) -> Result<(), Reason> {
    match v {
        [a, b, c]
            if matches!(a, b'1' | b'2' | b'5' | b'6' | b'7' | b'9')
                && matches!(b, b'0' | b'2' | b'4')
                && (b'0'..=b'7').contains(c) =>
        {
            Ok(())
        }
        _ => Err(Reason::ServiceCode),
    }
}

/// Name: embossing character set, `min..=max` bytes (ASCII set; see [`Check::Name`] for
/// the Latin set and lengths in characters).
pub fn check_name(v: &[u8], min: usize, max: usize) -> Result<(), Reason> {
    check_name_charset(v, Charset::Ascii)?;
    if v.len() < min || v.len() > max {
        return Err(Reason::NameLength);
    }
    Ok(())
}

/// Name: every character in `charset` (UTF-8; anything else is `name-charset`).
pub fn check_name_charset(v: &[u8], charset: Charset) -> Result<(), Reason> {
    let ok = match charset {
        // Fast path, and bytes: a non-ASCII byte is outside the set either way.
        Charset::Ascii => v
            .iter()
            .all(|&b| charset.allows(char::from(b)) && b.is_ascii()),
        Charset::Latin => {
            core::str::from_utf8(v).is_ok_and(|s| s.chars().all(|c| charset.allows(c)))
        }
    };
    if ok { Ok(()) } else { Err(Reason::NameCharset) }
}

/// The parts of track 2 equivalent data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Track2<'a> {
    /// The PAN (12 to 19 digits).
    pub pan: &'a [u8],
    /// The expiry date, `YYMM`.
    pub expiry: &'a [u8],
    /// The service code (three digits, ISO/IEC 7813).
    pub service_code: &'a [u8],
}

/// Track 2 equivalent data (ISO/IEC 7813 track 2 as EMV tag 57 carries it): the PAN (12 to
/// 19 digits), the field separator `=` (or `D`, its hex nibble in tag 57), the expiry date
/// `YYMM`, the service code, then discretionary digits; optionally within the start and end
/// sentinels `;` and `?`, or padded with one `F` (tag 57's odd-length padding).
pub fn check_track2(v: &[u8]) -> Result<Track2<'_>, Reason> {
    let bad = Reason::Track2Format;
    let mut v = v;
    if let Some(rest) = v.strip_prefix(b";") {
        v = rest.strip_suffix(b"?").ok_or(bad)?;
    } else if let Some(rest) = v.strip_suffix(b"F").or_else(|| v.strip_suffix(b"f")) {
        v = rest;
    }
    let sep = v
        .iter()
        .position(|&b| b == b'=' || b == b'D' || b == b'd')
        .ok_or(bad)?;
    let (pan, rest) = (&v[..sep], &v[sep + 1..]);
    if !(12..=19).contains(&pan.len()) || !pan.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    if rest.len() < 7 || !rest.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let (expiry, service_code) = (&rest[..4], &rest[4..7]);
    check_expiry(expiry).map_err(|_| bad)?;
    check_service_code(service_code).map_err(|_| bad)?;
    Ok(Track2 {
        pan,
        expiry,
        service_code,
    })
}

/// Track 2 equivalent data well formed ([`check_track2`], else `track2-format`) and
/// carrying the record's PAN and expiry (else `track2-mismatch`, also when either field is
/// absent).
pub fn track2_matches(
    track2: &[u8],
    pan: Option<&[u8]>,
    expiry: Option<&[u8]>,
) -> Result<(), Reason> {
    let t = check_track2(track2)?;
    match (pan, expiry) {
        (Some(p), Some(e)) if p == t.pan && e == t.expiry => Ok(()),
        _ => Err(Reason::Track2Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        for pan in [
            "4111111111111111",
            "5500005555555559",
            "378282246310005",
            "6011111111111117",
            "4000056655665556",
        ] {
            assert!(luhn_ok(pan.as_bytes()), "{pan}");
            let (body, _) = pan.split_at(pan.len() - 1);
            assert_eq!(luhn_digit(body.as_bytes()), *pan.as_bytes().last().unwrap());
        }
        assert!(!luhn_ok(b"4111111111111112"));
        assert!(!luhn_ok(b""));
        assert!(!luhn_ok(b"41x1"));
        // A non-digit (below or above '0'..'9') is refused, never an underflow.
        assert_eq!(checked_luhn_digit(b"411111111111111"), Some(b'1'));
        assert_eq!(checked_luhn_digit(b"4111 1111"), None);
        assert_eq!(checked_luhn_digit(b"41x1"), None);
        assert!(
            std::panic::catch_unwind(|| luhn_digit(b"4/11"))
                .unwrap_err()
                .downcast_ref::<String>()
                .is_some_and(|m| m.contains("ASCII digits"))
        );
    }

    #[test]
    fn pan_rules() {
        assert_eq!(check_pan(b"4111111111111111"), Ok(()));
        assert_eq!(check_pan(b"41111111111 1111"), Err(Reason::PanDigits));
        assert_eq!(check_pan(b"42"), Err(Reason::PanLength));
        assert_eq!(check_pan(b"41111111111111111111"), Err(Reason::PanLength));
        assert_eq!(check_pan(b"4111111111111112"), Err(Reason::PanLuhn));
    }

    #[test]
    fn expiry_service_code_name() {
        assert_eq!(check_expiry(b"2912"), Ok(()));
        assert_eq!(check_expiry(b"2900"), Err(Reason::ExpiryFormat));
        assert_eq!(check_expiry(b"291"), Err(Reason::ExpiryFormat));
        assert_eq!(check_expiry(b"29A1"), Err(Reason::ExpiryFormat));
        assert_eq!(check_service_code(b"101"), Ok(()));
        assert_eq!(check_service_code(b"221"), Ok(()));
        assert_eq!(check_service_code(b"301"), Err(Reason::ServiceCode));
        assert_eq!(check_service_code(b"218"), Err(Reason::ServiceCode));
        assert_eq!(check_service_code(b"21"), Err(Reason::ServiceCode));
        assert_eq!(check_name(b"MR J. O'NEIL-SMITH", 2, 26), Ok(()));
        assert_eq!(check_name(b"J\xc3\xb6RG", 2, 26), Err(Reason::NameCharset));
        assert_eq!(check_name(b"A", 2, 26), Err(Reason::NameLength));
        assert_eq!(check_name(&[b'A'; 27], 2, 26), Err(Reason::NameLength));
        assert_eq!(check_name(b"A<B", 2, 26), Err(Reason::NameCharset));
    }

    #[test]
    fn latin_names() {
        let latin = Check::Name {
            charset: Charset::Latin,
        };
        let ascii = Check::Name {
            charset: Charset::Ascii,
        };
        for ok in [
            "ÉMILE ÜBERSCHÄR",
            "ZOË BRONTË",
            "NUÑEZ & CIA",
            "FRANÇOIS-ØYSTEIN",
            "ß ÿ À Ö Ø ö ø",
        ] {
            assert_eq!(latin.run(ok.as_bytes()), Ok(()), "{ok}");
            assert_eq!(ascii.run(ok.as_bytes()), Err(Reason::NameCharset), "{ok}");
        }
        // × (U+00D7) and ÷ (U+00F7) are the two non-letters in U+00C0..U+00FF; Œ (U+0152)
        // is not in ISO-8859-1; a digit and the ASCII punctuation stay allowed.
        for bad in ["A×B", "A÷B", "ŒUVRE", "A_B", "A<B", "A\u{0}B"] {
            assert_eq!(latin.run(bad.as_bytes()), Err(Reason::NameCharset), "{bad}");
        }
        assert_eq!(latin.run(b"MR J. O'NEIL/2"), Ok(()));
        assert_eq!(latin.run(b"\xC9"), Err(Reason::NameCharset), "not UTF-8");
        assert_eq!(ascii.run(b"DOE & SON"), Err(Reason::NameCharset));
    }

    #[test]
    fn lengths_are_characters() {
        assert_eq!(check_length("ÉÉÉ".as_bytes(), Some(3), Some(3)), Ok(()));
        assert_eq!(
            check_length("ÉÉÉÉ".as_bytes(), None, Some(3)),
            Err(Reason::FieldLength)
        );
        assert_eq!(check_length(b"12", Some(3), None), Err(Reason::FieldLength));
        assert_eq!(check_length(b"\xff", None, None), Err(Reason::FieldFormat));
        assert_eq!(
            Check::length_reason(Some(&Check::Name {
                charset: Charset::Latin
            })),
            Reason::NameLength
        );
        assert_eq!(
            Check::length_reason(Some(&Check::Digits)),
            Reason::FieldLength
        );
        assert_eq!(Check::length_reason(None), Reason::FieldLength);
    }

    #[test]
    fn track2() {
        let pan = b"4111111111111111";
        for ok in [
            "4111111111111111=29122011234500000",
            "4111111111111111D2912201",
            ";4111111111111111=2912201?",
            "4111111111111111D291220112F",
        ] {
            assert_eq!(
                track2_matches(ok.as_bytes(), Some(pan), Some(b"2912")),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "4111111111111111",           // no separator
            "4111111111111111X2912201",   // another separator
            "4111111111111111=2913201",   // month 13
            "4111111111111111=291230",    // no complete service code
            "4111111111111111=2912301",   // service code first digit 3
            "41111111111=2912201",        // an 11-digit PAN
            "4111111111111111=29122A1",   // a letter in the service code
            ";4111111111111111=2912201",  // start sentinel without end sentinel
            "4111111111111111=2912201FF", // more than one pad
        ] {
            assert_eq!(
                track2_matches(bad.as_bytes(), Some(pan), Some(b"2912")),
                Err(Reason::Track2Format),
                "{bad}"
            );
        }
        let t2 = b"4111111111111111D2912201";
        assert_eq!(
            track2_matches(t2, Some(b"5500005555555559"), Some(b"2912")),
            Err(Reason::Track2Mismatch)
        );
        assert_eq!(
            track2_matches(t2, Some(pan), Some(b"2911")),
            Err(Reason::Track2Mismatch)
        );
        assert_eq!(
            track2_matches(t2, None, Some(b"2912")),
            Err(Reason::Track2Mismatch)
        );
        assert_eq!(
            track2_matches(t2, Some(pan), None),
            Err(Reason::Track2Mismatch)
        );
    }
}
