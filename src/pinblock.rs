//! ISO 9564-1 PIN blocks: formats 0, 1, 2, 3 (8-byte clear blocks, enciphered under a TDES
//! or AES key by the caller) and 4 (AES, 16 bytes, enciphered here with the PAN field).
//!
//! | format | control | fill after the PIN | XOR with |
//! |---|---|---|---|
//! | 0 | `0` | `F` | PAN field: `0000` + 12 rightmost PAN digits excluding the check digit |
//! | 1 | `1` | random `0`–`F` (transaction fill) | — |
//! | 2 | `2` | `F` (ICC offline PIN only) | — |
//! | 3 | `3` | random `A`–`F` | PAN field as format 0 |
//! | 4 | `4` | `A` to 16 nibbles, then 8 random bytes | see below |
//!
//! Format 4 (ISO 9564-1:2017): the plaintext PIN field (16 bytes, above) is enciphered under
//! the AES key, XORed with the plaintext PAN field (`M` = PAN length − 12, the PAN digits,
//! zero fill to 32 nibbles), and enciphered again. [`encipher_iso4`] / [`decipher_iso4`] work
//! on a prepared [`BlockCipher`] so that an HSM can run them inside its boundary;
//! [`encode_iso4`] / [`decode_iso4`] take a [`SecretKey`].
//!
//! Errors about the caller's clear inputs (a PIN that is not 4–12 digits, a PAN that is not
//! 12–19 digits, a block of the wrong length) name the field and the rule, never the value.
//! A block that does not decode (wrong control nibble, PIN length, non-digit, wrong fill)
//! is the opaque [`Error::Crypto`]: such a block has usually just been deciphered, and a
//! specific error would be a format oracle.
//!
//! ```
//! use pmp_core::pinblock::{self, Pan, Pin, PinBlockFormat};
//! let pin = Pin::new("1234").unwrap();
//! let pan = Pan::new("4111111111111111").unwrap();
//! let block = pinblock::encode(PinBlockFormat::Iso0, &pin, Some(&pan)).unwrap();
//! assert_eq!(hex::encode_upper(&block[..]), "041225EEEEEEEEEE");
//! let back = pinblock::decode(PinBlockFormat::Iso0, &block[..], Some(&pan)).unwrap();
//! assert_eq!(back, pin);
//!
//! // Format 4 (AES).
//! let key = pmp_core::SecretKey::new(pmp_core::Algorithm::Aes, &[0x42; 16]).unwrap();
//! let block = pinblock::encode_iso4(&key, &pin, &pan).unwrap();
//! assert_eq!(pinblock::decode_iso4(&key, &block, &pan).unwrap(), pin);
//! ```

use core::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::primitives::cipher::BlockCipher;
use crate::primitives::key::{Algorithm, SecretKey};
use crate::primitives::rng::fill_random;
use crate::{Error, Result};

/// An ISO 9564-1 PIN block format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinBlockFormat {
    /// Format 0 (ANSI X9.8): PIN XOR PAN, `F` fill.
    Iso0,
    /// Format 1: no PAN, random (transaction) fill.
    Iso1,
    /// Format 2: no PAN, `F` fill; for ICC offline PIN only.
    Iso2,
    /// Format 3: PIN XOR PAN, random fill `A`–`F`.
    Iso3,
    /// Format 4: AES, 16 bytes, PIN field and PAN field enciphered together.
    Iso4,
}

impl PinBlockFormat {
    /// The format number, 0 to 4.
    pub const fn number(self) -> u8 {
        match self {
            PinBlockFormat::Iso0 => 0,
            PinBlockFormat::Iso1 => 1,
            PinBlockFormat::Iso2 => 2,
            PinBlockFormat::Iso3 => 3,
            PinBlockFormat::Iso4 => 4,
        }
    }

    /// The format with number `n`.
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            0 => Some(PinBlockFormat::Iso0),
            1 => Some(PinBlockFormat::Iso1),
            2 => Some(PinBlockFormat::Iso2),
            3 => Some(PinBlockFormat::Iso3),
            4 => Some(PinBlockFormat::Iso4),
            _ => None,
        }
    }

    /// Whether the format binds the PIN to the PAN (formats 0, 3 and 4).
    pub const fn needs_pan(self) -> bool {
        matches!(
            self,
            PinBlockFormat::Iso0 | PinBlockFormat::Iso3 | PinBlockFormat::Iso4
        )
    }

    /// The block length in bytes: 8 for formats 0–3, 16 for format 4.
    pub const fn block_len(self) -> usize {
        match self {
            PinBlockFormat::Iso4 => 16,
            _ => 8,
        }
    }
}

impl fmt::Display for PinBlockFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ISO 9564-1 format {}", self.number())
    }
}

impl core::str::FromStr for PinBlockFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let t = t
            .strip_prefix("iso")
            .or_else(|| t.strip_prefix("ISO"))
            .unwrap_or(t);
        let t = t.strip_prefix('-').unwrap_or(t);
        match t {
            "0" => Ok(PinBlockFormat::Iso0),
            "1" => Ok(PinBlockFormat::Iso1),
            "2" => Ok(PinBlockFormat::Iso2),
            "3" => Ok(PinBlockFormat::Iso3),
            "4" => Ok(PinBlockFormat::Iso4),
            _ => Err(Error::invalid(
                "PIN block format",
                "expected 0, 1, 2, 3 or 4",
            )),
        }
    }
}

/// Translation policy between formats (ISO 9564-1 §9.3 and common HSM practice):
/// a block in format 0, 3 or 4 never becomes format 1 (that would strip its binding to the
/// PAN), and format 2 (ICC offline PIN only) is neither a source nor a target.
pub fn check_translation(from: PinBlockFormat, to: PinBlockFormat) -> Result<()> {
    use PinBlockFormat::*;
    match (from, to) {
        (Iso2, _) | (_, Iso2) => Err(Error::Policy(
            "format 2 is for ICC offline PIN only and is not translated".into(),
        )),
        (Iso0 | Iso3 | Iso4, Iso1) => Err(Error::Policy(format!(
            "a format {} PIN block never becomes format 1",
            from.number()
        ))),
        _ => Ok(()),
    }
}

/// A PIN: 4 to 12 decimal digits. Zeroized on drop; `Debug` prints `Pin(****)`.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Shortest PIN allowed by ISO 9564-1.
    pub const MIN_LEN: usize = 4;
    /// Longest PIN allowed by ISO 9564-1.
    pub const MAX_LEN: usize = 12;

    /// Validates and copies a PIN. The error never repeats the value.
    pub fn new(digits: &str) -> Result<Self> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::invalid("PIN", "must be 4 to 12 decimal digits"));
        }
        let mut s = Zeroizing::new(String::with_capacity(Self::MAX_LEN));
        s.push_str(digits);
        Ok(Self(s))
    }

    /// The PIN digits. Whoever calls this takes responsibility for not letting them escape.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The number of digits (4 to 12).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a PIN has at least 4 digits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn digit(&self, i: usize) -> u8 {
        self.0.as_bytes()[i] - b'0'
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

impl PartialEq for Pin {
    /// Constant-time in the digits (the length is not secret-grade).
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}
impl Eq for Pin {}

/// A primary account number: 12 to 19 decimal digits (the Luhn check is the issuer-input
/// layer's business, not the PIN block's). Zeroized on drop; `Debug` masks all but the last
/// 4 digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(Zeroizing<String>);

impl Pan {
    /// Validates and copies a PAN. The error never repeats the value.
    pub fn new(digits: &str) -> Result<Self> {
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid("PAN", "must be 12 to 19 decimal digits"));
        }
        Ok(Self(Zeroizing::new(digits.to_owned())))
    }

    /// The PAN digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 8-byte PAN field of formats 0 and 3: `0000` then the 12 rightmost digits
    /// excluding the check digit (left-padded with zeros for a 12-digit PAN).
    pub fn field_iso0(&self) -> [u8; 8] {
        let d = &self.0.as_bytes()[..self.0.len() - 1];
        let d = &d[d.len().saturating_sub(12)..];
        let mut nib = [0u8; 16];
        for (slot, &b) in nib[16 - d.len()..].iter_mut().zip(d) {
            *slot = b - b'0';
        }
        pack(&nib)
    }

    /// The 16-byte plaintext PAN field of format 4: `M` (length − 12), the digits, zeros.
    pub fn field_iso4(&self) -> [u8; 16] {
        let mut nib = [0u8; 32];
        nib[0] = (self.0.len() - 12) as u8;
        for (slot, b) in nib[1..].iter_mut().zip(self.0.bytes()) {
            *slot = b - b'0';
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(nib.chunks_exact(2)) {
            *o = (pair[0] << 4) | pair[1];
        }
        out
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "Pan({}{})", "*".repeat(n - 4), &self.0[n - 4..])
    }
}

impl core::str::FromStr for Pan {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Pan::new(s)
    }
}

fn pack(nib: &[u8; 16]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (o, pair) in out.iter_mut().zip(nib.chunks_exact(2)) {
        *o = (pair[0] << 4) | pair[1];
    }
    out
}

fn nibble(block: &[u8], i: usize) -> u8 {
    let b = block[i / 2];
    if i.is_multiple_of(2) {
        b >> 4
    } else {
        b & 0x0F
    }
}

/// Random nibbles in `lo..=15`, unbiased (rejection sampling).
fn random_nibbles(out: &mut [u8], lo: u8) -> Result<()> {
    let span = 16 - lo;
    // Largest multiple of `span` below 256: bytes at or above it are redrawn.
    let limit = 256 - 256 % u16::from(span);
    let mut pool = Zeroizing::new([0u8; 32]);
    let mut used = pool.len();
    for slot in out.iter_mut() {
        loop {
            if used == pool.len() {
                fill_random(&mut pool[..])?;
                used = 0;
            }
            let r = pool[used];
            used += 1;
            if u16::from(r) < limit {
                *slot = lo + r % span;
                break;
            }
        }
    }
    Ok(())
}

fn require_pan(format: PinBlockFormat, pan: Option<&Pan>) -> Result<&Pan> {
    pan.ok_or_else(|| Error::invalid("PAN", format!("format {} needs the PAN", format.number())))
}

/// Encodes a clear 8-byte PIN block in format 0, 1, 2 or 3. `pan` is required for formats
/// 0 and 3 and ignored otherwise. Formats 1 and 3 draw fresh random fill on every call.
pub fn encode(format: PinBlockFormat, pin: &Pin, pan: Option<&Pan>) -> Result<Zeroizing<[u8; 8]>> {
    let fill_lo = match format {
        PinBlockFormat::Iso0 | PinBlockFormat::Iso2 => 0xF,
        PinBlockFormat::Iso1 => 0x0,
        PinBlockFormat::Iso3 => 0xA,
        PinBlockFormat::Iso4 => {
            return Err(Error::invalid(
                "PIN block format",
                "format 4 is enciphered: use encode_iso4",
            ));
        }
    };
    let pan_field = if format.needs_pan() {
        Some(require_pan(format, pan)?.field_iso0())
    } else {
        None
    };
    let mut nib = Zeroizing::new([0u8; 16]);
    nib[0] = format.number();
    nib[1] = pin.len() as u8;
    for i in 0..pin.len() {
        nib[2 + i] = pin.digit(i);
    }
    let fill = &mut nib[2 + pin.len()..];
    if fill_lo == 0xF {
        fill.fill(0xF);
    } else {
        random_nibbles(fill, fill_lo)?;
    }
    let mut block = Zeroizing::new(pack(&nib));
    if let Some(p) = pan_field {
        for (b, q) in block.iter_mut().zip(p) {
            *b ^= q;
        }
    }
    Ok(block)
}

/// Reads control nibble, length and digits from `nib_src` (16 nibbles) and checks the fill
/// nibbles `2 + N .. fill_end` with `fill_ok`. Any fault is [`Error::Crypto`].
fn parse_pin_field(
    field: &[u8],
    control: u8,
    fill_end: usize,
    fill_ok: impl Fn(u8) -> bool,
) -> Result<Pin> {
    if nibble(field, 0) != control {
        return Err(Error::Crypto);
    }
    let n = usize::from(nibble(field, 1));
    if !(Pin::MIN_LEN..=Pin::MAX_LEN).contains(&n) {
        return Err(Error::Crypto);
    }
    let mut s = Zeroizing::new(String::with_capacity(Pin::MAX_LEN));
    for i in 2..2 + n {
        let d = nibble(field, i);
        if d > 9 {
            return Err(Error::Crypto);
        }
        s.push(char::from(b'0' + d));
    }
    if !(2 + n..fill_end).all(|i| fill_ok(nibble(field, i))) {
        return Err(Error::Crypto);
    }
    Ok(Pin(s))
}

/// Decodes a clear 8-byte PIN block in format 0, 1, 2 or 3. `pan` is required for formats
/// 0 and 3 and ignored otherwise. A block that does not decode is [`Error::Crypto`].
pub fn decode(format: PinBlockFormat, block: &[u8], pan: Option<&Pan>) -> Result<Pin> {
    if format == PinBlockFormat::Iso4 {
        return Err(Error::invalid(
            "PIN block format",
            "format 4 is enciphered: use decode_iso4",
        ));
    }
    if block.len() != 8 {
        return Err(Error::invalid("PIN block", "formats 0 to 3 are 8 bytes"));
    }
    let mut clear = Zeroizing::new([0u8; 8]);
    clear.copy_from_slice(block);
    if format.needs_pan() {
        let p = require_pan(format, pan)?.field_iso0();
        for (b, q) in clear.iter_mut().zip(p) {
            *b ^= q;
        }
    }
    let control = format.number();
    match format {
        PinBlockFormat::Iso0 | PinBlockFormat::Iso2 => {
            parse_pin_field(&clear[..], control, 16, |x| x == 0xF)
        }
        PinBlockFormat::Iso1 => parse_pin_field(&clear[..], control, 16, |_| true),
        _ => parse_pin_field(&clear[..], control, 16, |x| x >= 0xA),
    }
}

/// The 16-byte plaintext PIN field of format 4: `4`, N, the PIN, `A` fill to 16 nibbles,
/// then 8 random bytes.
pub fn iso4_pin_field(pin: &Pin) -> Result<Zeroizing<[u8; 16]>> {
    let mut nib = Zeroizing::new([0xAu8; 16]);
    nib[0] = 4;
    nib[1] = pin.len() as u8;
    for i in 0..pin.len() {
        nib[2 + i] = pin.digit(i);
    }
    let mut field = Zeroizing::new([0u8; 16]);
    field[..8].copy_from_slice(&pack(&nib));
    fill_random(&mut field[8..])?;
    Ok(field)
}

/// Decodes a plaintext format 4 PIN field (checks the control nibble, the length, the
/// digits and the `A` fill; the random half is not checked). Any fault is [`Error::Crypto`].
pub fn decode_iso4_pin_field(field: &[u8]) -> Result<Pin> {
    if field.len() != 16 {
        return Err(Error::invalid("PIN field", "format 4 fields are 16 bytes"));
    }
    parse_pin_field(field, 4, 16, |x| x == 0xA)
}

fn require_aes(cipher: &BlockCipher) -> Result<()> {
    if cipher.algorithm() == Algorithm::Aes {
        Ok(())
    } else {
        Err(Error::invalid("key", "format 4 needs an AES key"))
    }
}

/// Enciphers a format 4 PIN block with a prepared AES cipher:
/// `E(K, E(K, PIN field) XOR PAN field)`.
pub fn encipher_iso4(cipher: &BlockCipher, pin: &Pin, pan: &Pan) -> Result<[u8; 16]> {
    require_aes(cipher)?;
    let mut block = iso4_pin_field(pin)?;
    cipher.encrypt_block(&mut block[..])?;
    for (b, q) in block.iter_mut().zip(pan.field_iso4()) {
        *b ^= q;
    }
    cipher.encrypt_block(&mut block[..])?;
    Ok(*block)
}

/// Deciphers a format 4 PIN block with a prepared AES cipher and decodes the PIN. A wrong
/// key, a wrong PAN or a malformed block are all [`Error::Crypto`].
pub fn decipher_iso4(cipher: &BlockCipher, block: &[u8], pan: &Pan) -> Result<Pin> {
    require_aes(cipher)?;
    if block.len() != 16 {
        return Err(Error::invalid("PIN block", "format 4 blocks are 16 bytes"));
    }
    let mut buf = Zeroizing::new([0u8; 16]);
    buf.copy_from_slice(block);
    cipher.decrypt_block(&mut buf[..])?;
    for (b, q) in buf.iter_mut().zip(pan.field_iso4()) {
        *b ^= q;
    }
    cipher.decrypt_block(&mut buf[..])?;
    let pin = decode_iso4_pin_field(&buf[..]);
    buf.zeroize();
    pin
}

/// Enciphers a format 4 PIN block under an AES key.
pub fn encode_iso4(key: &SecretKey, pin: &Pin, pan: &Pan) -> Result<[u8; 16]> {
    encipher_iso4(&key.cipher(), pin, pan)
}

/// Deciphers and decodes a format 4 PIN block under an AES key.
pub fn decode_iso4(key: &SecretKey, block: &[u8], pan: &Pan) -> Result<Pin> {
    decipher_iso4(&key.cipher(), block, pan)
}
