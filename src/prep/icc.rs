//! EMV offline data authentication at data preparation: the ICC public-key certificate
//! (EMV Book 2 §6.4, Table 14), the signed static application data of SDA (Book 2 §5.4,
//! Table 7), the static data to be authenticated (Book 3 §10.3), and the recovery checks a
//! terminal makes (used by the tests and by anyone checking a production file).
//!
//! Pure functions: no key, no HSM. The message built here is signed by the issuer's private
//! key inside the HSM ([`Hsm::sign_emv_recovery`](crate::hsm::Hsm::sign_emv_recovery)); the
//! field layouts are in `docs/profile.md` ("Offline data authentication").
//!
//! ```
//! use pmp_core::prep::icc::{self, IccCertificateFields};
//! use pmp_core::rsa::{RsaExponent, RsaPrivateKey};
//!
//! let issuer = RsaPrivateKey::generate(1024, RsaExponent::Three).unwrap();
//! let card = RsaPrivateKey::generate(1024, RsaExponent::Three).unwrap();
//! let fields = IccCertificateFields {
//!     pan: icc::pan_field("4761739001010119").unwrap(),
//!     expiry: icc::expiry_mmyy(b"2712").unwrap(),
//!     serial: [0x00, 0x00, 0x01],
//! };
//! let static_data = [0x5A, 0x08, 0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x01, 0x19];
//! let cert = icc::icc_certificate(issuer.len(), &fields, &card.public_key(), &static_data).unwrap();
//! assert_eq!(cert.message.len(), 128);
//! assert_eq!(cert.remainder.len(), 42); // 128 - (128 - 42)
//! let signed = issuer.private_op(&cert.message).unwrap();
//! let got = icc::recover_icc_certificate(
//!     &issuer.public_key(), &signed, &cert.remainder, &[0x03], Some(&static_data),
//! ).unwrap();
//! assert_eq!(got.modulus, card.public_key().modulus());
//! assert!(icc::recover_icc_certificate(
//!     &issuer.public_key(), &signed, &cert.remainder, &[0x03], Some(&static_data[..9]),
//! ).is_err());
//! ```

use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::dgi;
use crate::rsa::RsaPublicKey;
use crate::{Error, Result};

/// The header of every EMV message in recovery format (Book 2 annex A2.1).
pub const HEADER: u8 = 0x6A;
/// The trailer of every EMV message in recovery format.
pub const TRAILER: u8 = 0xBC;
/// The pad byte of certificates and signed data.
pub const PAD: u8 = 0xBB;
/// Certificate format of an ICC public-key certificate (Table 14).
pub const ICC_CERTIFICATE_FORMAT: u8 = 0x04;
/// Signed data format of SDA's signed static application data (Table 7).
pub const SIGNED_STATIC_DATA_FORMAT: u8 = 0x03;
/// Hash algorithm indicator: SHA-1.
pub const HASH_SHA1: u8 = 0x01;
/// Public-key algorithm indicator: RSA.
pub const PK_RSA: u8 = 0x01;

/// The smallest modulus of an issuer key (Book 2: 1024 bits), in bytes.
pub const MIN_KEY_BYTES: usize = 128;
/// The largest modulus EMV allows (1984 bits), in bytes.
pub const MAX_KEY_BYTES: usize = 248;

/// Bytes of an ICC certificate that are not the ICC modulus: header, format, PAN (10),
/// expiry (2), serial (3), two algorithm indicators, two lengths, hash (20), trailer.
pub const ICC_CERTIFICATE_OVERHEAD: usize = 42;
/// Bytes of SDA's signed static data that are not padding: header, format, hash algorithm,
/// DAC (2), hash (20), trailer.
pub const SIGNED_STATIC_DATA_OVERHEAD: usize = 26;
/// Bytes of an issuer certificate that are not the issuer modulus (Book 2 Table 6): its
/// remainder holds the last `N_I − (N_CA − 36)` bytes.
pub const ISSUER_CERTIFICATE_OVERHEAD: usize = 36;

/// The fields of one card's certificate besides its key. Debug never shows the PAN.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IccCertificateFields {
    /// The application PAN, packed two digits per byte and padded on the right with `F` to
    /// 10 bytes ([`pan_field`]).
    pub pan: [u8; 10],
    /// The certificate expiry, `MM YY` in BCD ([`expiry_mmyy`]).
    pub expiry: [u8; 2],
    /// The certificate serial number (binary), unique per certificate the issuer key signs.
    pub serial: [u8; 3],
}

impl core::fmt::Debug for IccCertificateFields {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IccCertificateFields")
            .field("pan", &"<redacted>")
            .field("expiry", &hex::encode_upper(self.expiry))
            .field("serial", &hex::encode_upper(self.serial))
            .finish()
    }
}

/// A certificate's message to sign and the ICC remainder.
#[derive(Clone, PartialEq, Eq)]
pub struct IccCertificate {
    /// The message in recovery format, `N_I` bytes: `6A 04 … hash BC`. It holds the PAN in
    /// clear, so it is wiped on drop.
    pub message: Zeroizing<Vec<u8>>,
    /// The ICC public-key remainder (tag `9F48`): the modulus's last `N_ICC − (N_I − 42)`
    /// bytes; empty when the whole modulus fits in the certificate.
    pub remainder: Vec<u8>,
}

impl core::fmt::Debug for IccCertificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IccCertificate")
            .field("message_len", &self.message.len())
            .field("remainder_len", &self.remainder.len())
            .finish()
    }
}

/// The PAN field of an ICC certificate: the digits (12 to 19 ASCII digits) packed two per
/// byte, padded on the right with `F` to 10 bytes.
pub fn pan_field(pan: &str) -> Result<[u8; 10]> {
    let d = pan.as_bytes();
    if !(12..=19).contains(&d.len()) || !d.iter().all(u8::is_ascii_digit) {
        return Err(Error::invalid("PAN", "12 to 19 decimal digits"));
    }
    let mut out = [0xFFu8; 10];
    for (i, c) in d.iter().enumerate() {
        let v = c - b'0';
        let b = &mut out[i / 2];
        *b = if i % 2 == 0 {
            (v << 4) | 0x0F
        } else {
            (*b & 0xF0) | v
        };
    }
    Ok(out)
}

/// The certificate expiry `MMYY` (BCD) from a card expiry `YYMM` (ASCII digits, as XOF
/// orders carry it).
pub fn expiry_mmyy(yymm: &[u8]) -> Result<[u8; 2]> {
    if yymm.len() != 4 || !yymm.iter().all(u8::is_ascii_digit) {
        return Err(Error::invalid("expiry", "must be YYMM"));
    }
    let n = |i: usize| yymm[i] - b'0';
    let mm = n(2) * 10 + n(3);
    if !(1..=12).contains(&mm) {
        return Err(Error::invalid("expiry", "has a month outside 01-12"));
    }
    Ok([(n(2) << 4) | n(3), (n(0) << 4) | n(1)])
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn check_issuer_len(n_i: usize) -> Result<()> {
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&n_i) {
        return Err(Error::invalid(
            "issuer key",
            format!("a modulus of {n_i} bytes; EMV allows 128 to 248"),
        ));
    }
    Ok(())
}

/// Builds the ICC public-key certificate's message to sign with an issuer key of `n_i`
/// bytes (Book 2 §6.4, Table 14):
///
/// `6A 04 PAN(10) MMYY(2) serial(3) 01 01 N_ICC len(e) modulus-part(N_I − 42) hash(20) BC`,
///
/// the modulus part being the modulus's leftmost `N_I − 42` bytes, or the whole modulus
/// padded on the right with `BB` when it is shorter, and the hash SHA-1 over the fields
/// from the format to the modulus part, then the ICC remainder, the ICC exponent and the
/// static data to be authenticated. Refused when the ICC modulus is longer than the
/// issuer's.
pub fn icc_certificate(
    n_i: usize,
    fields: &IccCertificateFields,
    icc: &RsaPublicKey,
    static_data: &[u8],
) -> Result<IccCertificate> {
    check_issuer_len(n_i)?;
    let n_icc = icc.len();
    if n_icc > n_i {
        return Err(Error::invalid(
            "ICC key",
            format!("a modulus of {n_icc} bytes is longer than the issuer key's ({n_i})"),
        ));
    }
    let room = n_i - ICC_CERTIFICATE_OVERHEAD;
    let modulus = icc.modulus();
    let exponent = icc.exponent().bytes();
    let (part, remainder) = modulus.split_at(n_icc.min(room));
    let mut m = Zeroizing::new(Vec::with_capacity(n_i));
    m.extend_from_slice(&[HEADER, ICC_CERTIFICATE_FORMAT]);
    m.extend_from_slice(&fields.pan);
    m.extend_from_slice(&fields.expiry);
    m.extend_from_slice(&fields.serial);
    m.extend_from_slice(&[HASH_SHA1, PK_RSA, n_icc as u8, exponent.len() as u8]);
    m.extend_from_slice(part);
    m.resize(n_i - 21, PAD);
    let hash = sha1(&[&m[1..], remainder, exponent, static_data]);
    m.extend_from_slice(&hash);
    m.push(TRAILER);
    debug_assert_eq!(m.len(), n_i);
    Ok(IccCertificate {
        message: m,
        remainder: remainder.to_vec(),
    })
}

/// Builds SDA's signed static application data message (tag `93`) to sign with an issuer
/// key of `n_i` bytes (Book 2 §5.4, Table 7): `6A 03 01 DAC(2) BB…(N_I − 26) hash(20) BC`,
/// the hash SHA-1 over the fields from the format to the pad, then the static data to be
/// authenticated.
pub fn signed_static_data(n_i: usize, dac: [u8; 2], static_data: &[u8]) -> Result<Vec<u8>> {
    check_issuer_len(n_i)?;
    let mut m = Vec::with_capacity(n_i);
    m.extend_from_slice(&[HEADER, SIGNED_STATIC_DATA_FORMAT, HASH_SHA1]);
    m.extend_from_slice(&dac);
    m.resize(n_i - 21, PAD);
    let hash = sha1(&[&m[1..], static_data]);
    m.extend_from_slice(&hash);
    m.push(TRAILER);
    Ok(m)
}

/// The part of a record DGI that enters the static data to be authenticated (Book 3
/// §10.3): for SFIs 1 to 10 the record template's value (without `70` and its length), for
/// SFIs 11 to 30 the whole record template. `record` is the record DGI's data (`70 L …`);
/// the DGI number's first byte is the SFI.
pub fn static_data_part(dgi_id: u16, record: &[u8]) -> Result<&[u8]> {
    if !dgi::is_record(dgi_id) {
        return Err(Error::invalid(
            "static data",
            format!("DGI {dgi_id:04X} is not a record"),
        ));
    }
    let sfi = (dgi_id >> 8) as u8;
    if sfi > 10 {
        return Ok(record);
    }
    let (tag, len, head) = read_tl(record)
        .ok_or_else(|| Error::invalid("static data", "a record is not one 70 template"))?;
    if tag != [0x70] || head + len != record.len() {
        return Err(Error::invalid(
            "static data",
            "a record is not one 70 template",
        ));
    }
    Ok(&record[head..])
}

/// Reads a BER tag and length at the start of `b`: (tag, value length, bytes of tag and
/// length).
pub(crate) fn read_tl(b: &[u8]) -> Option<(&[u8], usize, usize)> {
    let first = *b.first()?;
    let mut t = 1;
    if first & 0x1F == 0x1F {
        loop {
            let x = *b.get(t)?;
            t += 1;
            if x & 0x80 == 0 {
                break;
            }
            if t > 3 {
                return None;
            }
        }
    }
    let l0 = *b.get(t)?;
    let (len, n) = match l0 {
        0..=0x7F => (l0 as usize, 1),
        0x81 => (*b.get(t + 1)? as usize, 2),
        0x82 => ((*b.get(t + 1)? as usize) << 8 | *b.get(t + 2)? as usize, 3),
        _ => return None,
    };
    if b.len() < t + n + len {
        return None;
    }
    Some((&b[..t], len, t + n))
}

/// Finds the value of `tag` among the data objects `objects` (one level, no recursion into
/// templates); `None` when absent or when `objects` is not a sequence of data objects.
pub fn find_tag<'a>(objects: &'a [u8], tag: &[u8]) -> Option<&'a [u8]> {
    let mut rest = objects;
    while !rest.is_empty() {
        let (t, len, head) = read_tl(rest)?;
        if t == tag {
            return Some(&rest[head..head + len]);
        }
        rest = &rest[head + len..];
    }
    None
}

/// What a terminal recovers from an ICC public-key certificate. Debug never shows the PAN.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveredIccCertificate {
    /// The PAN field (`F`-padded).
    pub pan: [u8; 10],
    /// The expiry, `MMYY` in BCD.
    pub expiry: [u8; 2],
    /// The serial number.
    pub serial: [u8; 3],
    /// The ICC modulus (the certificate's part and the remainder).
    pub modulus: Vec<u8>,
    /// The hash the certificate carries (checked equal to the recomputed one).
    pub hash: [u8; 20],
}

impl core::fmt::Debug for RecoveredIccCertificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecoveredIccCertificate")
            .field("pan", &"<redacted>")
            .field("expiry", &hex::encode_upper(self.expiry))
            .field("serial", &hex::encode_upper(self.serial))
            .field("modulus_len", &self.modulus.len())
            .finish()
    }
}

fn bad_cert(reason: impl Into<String>) -> Error {
    Error::Integrity {
        what: "ICC public-key certificate".into(),
        reason: reason.into(),
    }
}

/// Recovers an ICC public-key certificate with the issuer's public key and checks it as a
/// terminal does (Book 2 §6.4 steps 1 to 7 and 10): length, trailer `BC`, header `6A`,
/// format `04`, the hash over the fields, `remainder`, `exponent` and `static_data`,
/// hash algorithm `01`, key algorithm `01`, and that the remainder and exponent have the
/// lengths the certificate states. The PAN and expiry are returned for the caller to
/// compare. `static_data: None` skips the hash check (for a published certificate whose
/// static data is not known); the hash is returned either way.
pub fn recover_icc_certificate(
    issuer: &RsaPublicKey,
    certificate: &[u8],
    remainder: &[u8],
    exponent: &[u8],
    static_data: Option<&[u8]>,
) -> Result<RecoveredIccCertificate> {
    let n_i = issuer.len();
    if certificate.len() != n_i {
        return Err(bad_cert(format!(
            "{} bytes; the issuer key has {n_i}",
            certificate.len()
        )));
    }
    let m = issuer.public_op(certificate)?;
    if m[n_i - 1] != TRAILER {
        return Err(bad_cert("trailer is not BC"));
    }
    if m[0] != HEADER {
        return Err(bad_cert("header is not 6A"));
    }
    if m[1] != ICC_CERTIFICATE_FORMAT {
        return Err(bad_cert("format is not 04"));
    }
    let hash: [u8; 20] = m[n_i - 21..n_i - 1].try_into().expect("20 bytes");
    if let Some(sd) = static_data
        && sha1(&[&m[1..n_i - 21], remainder, exponent, sd]) != hash
    {
        return Err(bad_cert("hash does not match"));
    }
    if m[17] != HASH_SHA1 {
        return Err(bad_cert("hash algorithm is not 01 (SHA-1)"));
    }
    if m[18] != PK_RSA {
        return Err(bad_cert("public-key algorithm is not 01 (RSA)"));
    }
    let n_icc = m[19] as usize;
    if m[20] as usize != exponent.len() {
        return Err(bad_cert(
            "the exponent's length differs from the stated one",
        ));
    }
    let room = n_i - ICC_CERTIFICATE_OVERHEAD;
    let part = &m[21..21 + room];
    let modulus = if n_icc > room {
        if remainder.len() != n_icc - room {
            return Err(bad_cert(
                "the remainder's length does not complete the modulus",
            ));
        }
        [part, remainder].concat()
    } else {
        if !remainder.is_empty() || part[n_icc..].iter().any(|&b| b != PAD) {
            return Err(bad_cert(
                "a modulus that fits is padded with BB and has no remainder",
            ));
        }
        part[..n_icc].to_vec()
    };
    Ok(RecoveredIccCertificate {
        pan: m[2..12].try_into().expect("10 bytes"),
        expiry: [m[12], m[13]],
        serial: [m[14], m[15], m[16]],
        modulus,
        hash,
    })
}

/// Recovers SDA's signed static application data with the issuer's public key and checks
/// it (Book 2 §5.4): length, trailer, header, format `03`, hash algorithm `01`, the `BB`
/// pad and the hash over the static data (skipped for `static_data: None`). Returns the
/// data authentication code and the hash.
pub fn recover_signed_static_data(
    issuer: &RsaPublicKey,
    signed: &[u8],
    static_data: Option<&[u8]>,
) -> Result<([u8; 2], [u8; 20])> {
    let bad = |r: &str| Error::Integrity {
        what: "signed static application data".into(),
        reason: r.into(),
    };
    let n_i = issuer.len();
    if signed.len() != n_i {
        return Err(bad("its length is not the issuer key's"));
    }
    let m = issuer.public_op(signed)?;
    if m[n_i - 1] != TRAILER || m[0] != HEADER || m[1] != SIGNED_STATIC_DATA_FORMAT {
        return Err(bad("header, format or trailer is wrong"));
    }
    if m[2] != HASH_SHA1 || m[5..n_i - 21].iter().any(|&b| b != PAD) {
        return Err(bad("hash algorithm or pad is wrong"));
    }
    let hash: [u8; 20] = m[n_i - 21..n_i - 1].try_into().expect("20 bytes");
    if let Some(sd) = static_data
        && sha1(&[&m[1..n_i - 21], sd]) != hash
    {
        return Err(bad("hash does not match"));
    }
    Ok(([m[3], m[4]], hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_pan() {
        let fields = IccCertificateFields {
            pan: pan_field("4761739001010119").unwrap(),
            expiry: [0x12, 0x30],
            serial: [0, 0, 1],
        };
        let shown = format!("{fields:?}");
        assert!(!shown.contains("71") && !shown.contains("4761"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("1230"),
            "{shown}"
        );
    }

    #[test]
    fn pan_and_expiry_fields() {
        assert_eq!(
            hex::encode_upper(pan_field("4761739001010119").unwrap()),
            "4761739001010119FFFF"
        );
        assert_eq!(
            hex::encode_upper(pan_field("1234567890123456789").unwrap()),
            "1234567890123456789F"
        );
        assert!(pan_field("12345678901").is_err());
        assert!(pan_field("12345678901234567890").is_err());
        assert!(pan_field("4761A39001010119").is_err());
        assert_eq!(expiry_mmyy(b"2712").unwrap(), [0x12, 0x27]);
        assert!(expiry_mmyy(b"2713").is_err());
        assert!(expiry_mmyy(b"271").is_err());
    }

    #[test]
    fn static_data_follows_the_sfi_rule() {
        let rec = [0x70, 0x03, 0x5F, 0x34, 0x00];
        assert_eq!(static_data_part(0x0101, &rec).unwrap(), &rec[2..]);
        assert_eq!(static_data_part(0x0A10, &rec).unwrap(), &rec[2..]);
        assert_eq!(static_data_part(0x0B01, &rec).unwrap(), &rec[..]);
        assert!(static_data_part(0x9104, &rec).is_err());
        assert!(static_data_part(0x0101, &rec[..4]).is_err());
    }

    #[test]
    fn find_tag_walks_one_level() {
        let objs = hex::decode("82025C00940408010100").unwrap();
        assert_eq!(find_tag(&objs, &[0x82]).unwrap(), [0x5C, 0x00]);
        assert_eq!(find_tag(&objs, &[0x94]).unwrap(), [8, 1, 1, 0]);
        assert!(find_tag(&objs, &[0x9F, 0x4A]).is_none());
        assert!(find_tag(&objs[..5], &[0x94]).is_none());
    }
}
