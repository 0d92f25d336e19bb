//! Card data encoding for EMV personalisation (the GlobalPlatform / EMVCo Common
//! Personalization Specification, CPS): BER-TLV data objects, record templates, Data
//! Grouping Identifiers (DGIs), and the value formats of `docs/profile.md`.
//!
//! - A **data object** is `tag || length || value`. The tag is 1 to 3 bytes as BER says
//!   (first byte's low five bits `11111` announce more bytes; each further byte with its top
//!   bit set announces another). The length is BER: one byte up to 127, `81 xx` up to 255,
//!   `82 xx xx` up to 65,535.
//! - A DGI whose number is an SFI / record number — first byte `01`–`1E` (SFI 1 to 30),
//!   second byte `01`–`10` (record 1 to 16) — holds one record: its data objects inside the
//!   record template `70`. Any other DGI holds its data objects (or its fixed data) as they
//!   are.
//! - The CPS frame of a DGI is `DGI (2 bytes) || length || data`, the length one byte up to
//!   254 and `FF` followed by two bytes above.
//!
//! ```
//! use pmp_core::prep::dgi;
//! let obj = dgi::tlv(&[0x9F, 0x08], &[0x00, 0x96]).unwrap();
//! assert_eq!(hex::encode_upper(&obj), "9F08020096");
//! let rec = dgi::record_template(&obj).unwrap();
//! assert_eq!(hex::encode_upper(&rec), "70059F08020096");
//! assert_eq!(hex::encode_upper(dgi::frame(0x0102, &rec).unwrap()), "01020770059F08020096");
//! ```

use zeroize::Zeroizing;

use crate::{Error, Result};

/// The longest value a BER length (`82 xx xx`) or a CPS DGI length (`FF xx xx`) can state.
pub const MAX_LEN: usize = 0xFFFF;

/// Whether DGI `id` is an SFI / record number (`0101`–`1E10`): its data is a record
/// template `70`.
pub fn is_record(id: u16) -> bool {
    let [sfi, rec] = id.to_be_bytes();
    (0x01..=0x1E).contains(&sfi) && (0x01..=0x10).contains(&rec)
}

/// Checks that `tag` is one whole BER tag of 1 to 3 bytes.
pub fn check_tag(tag: &[u8]) -> core::result::Result<(), &'static str> {
    let Some((&first, rest)) = tag.split_first() else {
        return Err("a tag has 1 to 3 bytes");
    };
    if tag.len() > 3 {
        return Err("a tag has 1 to 3 bytes");
    }
    if first == 0x00 || first == 0xFF {
        return Err("00 and FF are not tags");
    }
    let more = first & 0x1F == 0x1F;
    match (more, rest) {
        (false, []) => Ok(()),
        (false, _) => Err("the first byte does not announce further tag bytes (low bits 11111)"),
        (true, []) => Err("the first byte announces further tag bytes"),
        (true, r) => {
            let (last, mid) = r.split_last().expect("not empty");
            if mid.iter().any(|b| b & 0x80 == 0) || last & 0x80 != 0 {
                Err("only the last tag byte has its top bit clear")
            } else {
                Ok(())
            }
        }
    }
}

/// Appends a BER length.
pub fn push_ber_len(out: &mut Vec<u8>, len: usize) -> Result<()> {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=MAX_LEN => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        _ => {
            return Err(Error::invalid(
                "data object",
                format!("{len} bytes is longer than a BER length can state (65,535)"),
            ));
        }
    }
    Ok(())
}

/// Appends the data object `tag || length || value`.
pub fn push_tlv(out: &mut Vec<u8>, tag: &[u8], value: &[u8]) -> Result<()> {
    check_tag(tag).map_err(|r| Error::invalid("tag", r))?;
    out.extend_from_slice(tag);
    push_ber_len(out, value.len())?;
    out.extend_from_slice(value);
    Ok(())
}

/// The data object `tag || length || value`.
pub fn tlv(tag: &[u8], value: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(tag.len() + 3 + value.len());
    push_tlv(&mut out, tag, value)?;
    Ok(out)
}

/// The record template `70 || length || objects`.
pub fn record_template(objects: &[u8]) -> Result<Vec<u8>> {
    tlv(&[0x70], objects)
}

/// The CPS frame of a DGI: `DGI || length || data`, the length one byte up to 254, else
/// `FF` and two bytes.
pub fn frame(id: u16, data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() + 5);
    out.extend_from_slice(&id.to_be_bytes());
    match data.len() {
        0..=0xFE => out.push(data.len() as u8),
        0xFF..=MAX_LEN => {
            out.push(0xFF);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        }
        n => {
            return Err(Error::invalid(
                "DGI",
                format!("{n} bytes is longer than a DGI length can state (65,535)"),
            ));
        }
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// How a tag's value is made from an XOF attribute's clear value (`docs/profile.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Compressed numeric: digits packed two per byte, left-aligned, padded with `F`.
    Cn,
    /// Numeric: digits in BCD, right-aligned, padded on the left with zeros.
    N,
    /// Alphanumeric special: the ASCII bytes (printable ASCII only).
    Ans,
    /// Binary: the value is hex and becomes the bytes it spells.
    B,
    /// Track 2 equivalent data: digits with the separator `D` (`=` accepted), packed two
    /// per byte, padded with `F`.
    Track2,
    /// An expiry `YYMM` becoming `YYMMDD` in BCD with the month's last day.
    YymmEndOfMonth,
}

impl Format {
    /// The name used in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Cn => "cn",
            Format::N => "n",
            Format::Ans => "ans",
            Format::B => "b",
            Format::Track2 => "track2",
            Format::YymmEndOfMonth => "yymm-end-of-month",
        }
    }

    /// Parses a profile name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cn" => Format::Cn,
            "n" => Format::N,
            "ans" => Format::Ans,
            "b" => Format::B,
            "track2" => Format::Track2,
            "yymm-end-of-month" => Format::YymmEndOfMonth,
            _ => return None,
        })
    }

    /// Encodes `value` (a clear XOF attribute value) into `out` (cleared first; a
    /// zeroizing buffer, since values are cardholder data). `length`: the fixed length in
    /// bytes for `n` and `cn` (the value must fit). The error says what is wrong, never the
    /// value.
    pub fn encode(
        self,
        value: &[u8],
        length: Option<usize>,
        out: &mut Zeroizing<Vec<u8>>,
    ) -> core::result::Result<(), &'static str> {
        out.clear();
        match self {
            Format::Cn | Format::N => {
                if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                    return Err("must be decimal digits");
                }
                let natural = value.len().div_ceil(2);
                let len = length.unwrap_or(natural);
                if value.len() > 2 * len {
                    return Err("has more digits than the tag's length holds");
                }
                let digits = value.iter().map(|d| d - b'0');
                if self == Format::Cn {
                    pack(out, digits, 2 * len, 0xF, false);
                } else {
                    pack(out, digits, 2 * len, 0x0, true);
                }
            }
            Format::Ans => {
                if value.is_empty() || !value.iter().all(|b| (0x20..=0x7E).contains(b)) {
                    return Err("must be printable ASCII");
                }
                out.extend_from_slice(value);
            }
            Format::B => {
                if value.is_empty() || !value.len().is_multiple_of(2) {
                    return Err("must be hex (an even number of digits)");
                }
                out.resize(value.len() / 2, 0);
                if hex::decode_to_slice(value, &mut out[..]).is_err() {
                    out.clear();
                    return Err("must be hex");
                }
            }
            Format::Track2 => {
                if value.len() < 2 || value.len() > 37 {
                    return Err("track 2 data holds 2 to 37 characters");
                }
                let mut seps = 0;
                for &c in value {
                    match c {
                        b'0'..=b'9' => {}
                        b'D' | b'd' | b'=' => seps += 1,
                        _ => return Err("track 2 data is digits and one separator D"),
                    }
                }
                if seps != 1 {
                    return Err("track 2 data has exactly one separator D");
                }
                let nibbles = value.iter().map(|&c| match c {
                    b'0'..=b'9' => c - b'0',
                    _ => 0xD,
                });
                pack(out, nibbles, value.len().div_ceil(2) * 2, 0xF, false);
            }
            Format::YymmEndOfMonth => {
                if value.len() != 4 || !value.iter().all(u8::is_ascii_digit) {
                    return Err("must be YYMM");
                }
                let yy = (value[0] - b'0') * 10 + (value[1] - b'0');
                let mm = (value[2] - b'0') * 10 + (value[3] - b'0');
                let dd = match mm {
                    1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                    4 | 6 | 9 | 11 => 30,
                    // Years 2000-2099: every fourth year is a leap year, 2000 included.
                    2 if yy.is_multiple_of(4) => 29,
                    2 => 28,
                    _ => return Err("has a month outside 01-12"),
                };
                out.extend_from_slice(&[
                    (value[0] - b'0') << 4 | (value[1] - b'0'),
                    (value[2] - b'0') << 4 | (value[3] - b'0'),
                    (dd / 10) << 4 | (dd % 10),
                ]);
            }
        }
        Ok(())
    }
}

/// Packs nibbles two per byte into `total` nibbles: `right` aligns them right (fill on the
/// left), else left (fill on the right).
fn pack(
    out: &mut Vec<u8>,
    nibbles: impl ExactSizeIterator<Item = u8>,
    total: usize,
    fill: u8,
    right: bool,
) {
    let n = nibbles.len();
    let pad = total - n;
    let lead = if right { pad } else { 0 };
    let mut hi: Option<u8> = None;
    let mut push = |v: u8| match hi.take() {
        Some(h) => out.push(h << 4 | v),
        None => hi = Some(v),
    };
    for _ in 0..lead {
        push(fill);
    }
    for v in nibbles {
        push(v);
    }
    for _ in 0..pad - lead {
        push(fill);
    }
}
