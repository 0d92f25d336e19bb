//! Field validation for issuer input: PAN (digits, 12–19, Luhn), expiry (`YYMM`), service
//! code (ISO/IEC 7813), cardholder name (character set and length), required fields.
//!
//! Every check works on bytes and returns a [`Reason`] — a fixed, value-free code that goes
//! into the reject report (`reason=pan-luhn`), so that no PAN, name or date is ever written
//! there.
//!
//! ```
//! use pmp_core::order::validate::{self, Check, Reason};
//! assert!(validate::luhn_ok(b"4111111111111111"));
//! assert_eq!(Check::Pan.run(b"4111111111111112"), Err(Reason::PanLuhn));
//! assert_eq!(Check::Expiry.run(b"2713"), Err(Reason::ExpiryFormat));
//! assert_eq!(Check::ServiceCode.run(b"201"), Ok(()));
//! assert_eq!(Check::Name { min: 2, max: 26 }.run(b"DOE/JOHN"), Ok(()));
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
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A content check on a field's clear value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Digits only, 12 to 19 of them, Luhn check digit (ISO/IEC 7812-1).
    Pan,
    /// `YYMM`, month 01 to 12.
    Expiry,
    /// Three digits; first digit 1, 2, 5, 6, 7 or 9; second 0, 2 or 4; third 0 to 7
    /// (ISO/IEC 7813).
    ServiceCode,
    /// Embossing character set: `A–Z a–z 0–9`, space and `. - ' /`; length `min..=max`
    /// bytes (ISO/IEC 7813 track 1 allows 2 to 26).
    Name {
        /// Minimum length.
        min: usize,
        /// Maximum length.
        max: usize,
    },
    /// Digits only (any length).
    Digits,
}

impl Check {
    /// Runs the check.
    pub fn run(self, v: &[u8]) -> Result<(), Reason> {
        match self {
            Check::Pan => check_pan(v),
            Check::Expiry => check_expiry(v),
            Check::ServiceCode => check_service_code(v),
            Check::Name { min, max } => check_name(v, min, max),
            Check::Digits => {
                if v.iter().all(u8::is_ascii_digit) {
                    Ok(())
                } else {
                    Err(Reason::FieldFormat)
                }
            }
        }
    }
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

/// Name: embossing character set, `min..=max` bytes.
pub fn check_name(v: &[u8], min: usize, max: usize) -> Result<(), Reason> {
    if !v
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b'-' | b'\'' | b'/'))
    {
        return Err(Reason::NameCharset);
    }
    if v.len() < min || v.len() > max {
        return Err(Reason::NameLength);
    }
    Ok(())
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
}
