//! XOF v1: the bureau's internal XML order file (specified in `docs/xof.md`).
//!
//! One XOF file holds one issuer order: a header (order, issuer, product, creation time
//! and the list of keys the file refers to, by label, usage, algorithm and KCV — never key
//! material), one `record` per card whose attributes are each encrypted under a bureau
//! data key (DKep), and a trailer. Integrity: an AES-CMAC key (TR-31 usage M6, not
//! exportable: a bureau-internal key, never a transport key) held in the HSM MACs the
//! header, each record (chained to the previous record's MAC) and the trailer (record count
//! and the last chain value), so that a removed, duplicated, reordered, altered or appended
//! record, a dropped last record and a truncated file are detected.
//!
//! [`Writer`] and [`Reader`] stream one record at a time on `quick-xml` with buffers that
//! are reused: memory does not depend on the size of the file. The reader is a strict pull
//! parser for hostile input: no DOCTYPE, no entity beyond the XML predefined ones and
//! character references, no comments, processing instructions or CDATA, hard caps on the
//! size of one element, of one record, on attribute counts and on nesting depth; bad UTF-8
//! and unknown versions are refused. Errors name the source, the line and the record.
//!
//! ```
//! use pmp_core::hsm::{Hsm, KeySpec, SoftHsm};
//! use pmp_core::keyblock::{KeyUsage, ModeOfUse};
//! use pmp_core::xof::{self, Attribute, Header, KeyRef, Record};
//! use pmp_core::{Algorithm, Mode, Padding};
//!
//! let dir = std::env::temp_dir().join(format!("pmp-doc-xof-{}", std::process::id()));
//! let hsm = SoftHsm::create_with_test_lmk(&dir).unwrap();
//! let mk = hsm.generate_key(&KeySpec::new("XOF-MAC", Algorithm::Aes, 32, KeyUsage::M6, ModeOfUse::C)).unwrap();
//! let dk = hsm.generate_key(&KeySpec::new("DK-PAN", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B)).unwrap();
//! let key_ref = |k: &pmp_core::hsm::KeyInfo| KeyRef {
//!     label: k.spec.label.clone(), usage: k.spec.usage, algorithm: k.spec.algorithm, kcv: k.kcv };
//! let header = Header {
//!     order_id: "ORD-1".into(), issuer: "BANK1".into(), product: "VISA-CLASSIC".into(),
//!     created: "2025-01-31T12:00:00Z".into(), keys: vec![key_ref(&dk), key_ref(&mk)],
//!     mac_key: "XOF-MAC".into(), test: hsm.is_test(),
//! };
//! let mut w = xof::Writer::new(Vec::new(), &header, &hsm, &mk.handle).unwrap();
//! w.write_record(&Record { seq: 1, issuer_id: "C-0001".into(), attributes: vec![Attribute {
//!     name: "PAN".into(), key: "DK-PAN".into(), mode: Mode::Cbc, iv: Some(vec![0; 16]),
//!     padding: Padding::Iso9797M2, ciphertext: vec![0xAB; 32] }] }).unwrap();
//! let (file, n) = w.finish().unwrap();
//! assert_eq!(n, 1);
//!
//! let mut r = xof::Reader::new(&file[..], &hsm).unwrap();
//! assert_eq!(r.header().order_id, "ORD-1");
//! assert_eq!(r.next_record().unwrap().unwrap().issuer_id, "C-0001");
//! assert!(r.next_record().unwrap().is_none()); // trailer verified
//! # drop(hsm); std::fs::remove_dir_all(&dir).ok();
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::hsm::{Hsm, KeyInfo};
use crate::keyblock::{Exportability, KeyUsage};
use crate::{Algorithm, Error, Kcv, Mode, Padding, Result};

pub(crate) mod canon;
pub(crate) mod read;
pub(crate) mod write;

pub use read::{ReadOptions, Reader};
pub use write::Writer;

/// The XOF version this module writes and the only one it reads.
pub const VERSION: &str = "1";

/// Hard limits of XOF v1 (`docs/xof.md` §7). A file beyond any of them is refused.
pub mod limits {
    /// Bytes in one XML event (a tag with its attributes, or one text node).
    pub const MAX_EVENT_BYTES: usize = 256 * 1024;
    /// Bytes of one `record` element, from its start tag to its end tag.
    pub const MAX_RECORD_BYTES: u64 = 1024 * 1024;
    /// `attr` elements in one record.
    pub const MAX_ATTRIBUTES: usize = 256;
    /// XML attributes on one element.
    pub const MAX_XML_ATTRIBUTES: usize = 8;
    /// Element nesting depth (`xof` = 1, `header`/`record`/`trailer` = 2, `key`/`attr` = 3).
    pub const MAX_DEPTH: usize = 3;
    /// `key` entries in the header.
    pub const MAX_KEYS: usize = 256;
    /// Bytes of one attribute's ciphertext.
    pub const MAX_CIPHERTEXT: usize = 64 * 1024;
    /// Bytes of a free-text field (order id, issuer, product, issuer record id).
    pub const MAX_TEXT: usize = 256;
    /// Bytes of a key label or an attribute name.
    // A literal (checked below against the label rule) so that cbindgen writes it to pmp.h.
    pub const MAX_NAME: usize = 64;
    const _: () = assert!(MAX_NAME == crate::label::MAX_LEN);
}

/// One entry of the header's key list: a key the file refers to. Never key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    /// The key's label in the HSM.
    pub label: String,
    /// Its TR-31 key usage (D0 for a DKep, M6 for the MAC key, ...).
    pub usage: KeyUsage,
    /// TDES or AES.
    pub algorithm: Algorithm,
    /// Its key check value.
    pub kcv: Kcv,
}

/// The XOF header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The bureau's order id (unique per order).
    pub order_id: String,
    /// The issuer.
    pub issuer: String,
    /// The product (order profile).
    pub product: String,
    /// Creation time, RFC 3339 in UTC (`2025-01-31T12:00:00Z`, fractional seconds allowed).
    pub created: String,
    /// Every key the file refers to, the MAC key included.
    pub keys: Vec<KeyRef>,
    /// The label of the MAC key (AES, usage M6, not exportable); it is also in `keys`.
    pub mac_key: String,
    /// The TEST marker (`test="true"`, covered by the header MAC): the order was made on
    /// an HSM with a TEST LMK, for development and tests only. A reader on a production
    /// HSM refuses such an order unless [`ReadOptions::allow_test`] says otherwise.
    pub test: bool,
}

impl Header {
    /// The key list entry labelled `label`.
    pub fn key(&self, label: &str) -> Option<&KeyRef> {
        self.keys.iter().find(|k| k.label == label)
    }
}

/// One encrypted data attribute of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute's name (`PAN`, `TRACK2`, ...).
    pub name: String,
    /// The label of the key that encrypts it (in the header's key list).
    pub key: String,
    /// ECB or CBC.
    pub mode: Mode,
    /// The IV: one block for CBC, `None` for ECB.
    pub iv: Option<Vec<u8>>,
    /// The padding of the plaintext: none (the plaintext is whole blocks), ISO/IEC 9797-1
    /// method 2 or PKCS#7 — never method 1, whose length is not recoverable.
    pub padding: Padding,
    /// The ciphertext (whole blocks of the key's algorithm).
    pub ciphertext: Vec<u8>,
}

impl Attribute {
    /// The attribute as a borrowed view (what the checks and the MAC input take).
    pub(crate) fn view(&self) -> AttrRef<'_> {
        AttrRef {
            name: &self.name,
            key: &self.key,
            mode: self.mode,
            iv: self.iv.as_deref(),
            padding: self.padding,
            ciphertext: &self.ciphertext,
        }
    }
}

/// An [`Attribute`] by reference: what a writer formats and MACs without the owned copy
/// (the import's workers build records from their buffers this way).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttrRef<'a> {
    pub(crate) name: &'a str,
    pub(crate) key: &'a str,
    pub(crate) mode: Mode,
    pub(crate) iv: Option<&'a [u8]>,
    pub(crate) padding: Padding,
    pub(crate) ciphertext: &'a [u8],
}

/// One card record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Sequence number, 1-based, consecutive.
    pub seq: u64,
    /// The issuer's id of the record.
    pub issuer_id: String,
    /// The encrypted attributes, in order (the order is covered by the MAC).
    pub attributes: Vec<Attribute>,
}

/// What [`inspect_file`] reports: structure only, no cryptography.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The XOF version.
    pub version: String,
    /// The header (its MAC is not checked).
    pub header: Header,
    /// Records read.
    pub records: u64,
    /// Record count declared by the trailer.
    pub trailer_records: u64,
    /// Attributes read, all records together.
    pub attributes: u64,
    /// Attributes per attribute name.
    pub attributes_by_name: BTreeMap<String, u64>,
    /// Attributes per key label.
    pub attributes_by_key: BTreeMap<String, u64>,
}

/// Reads and verifies a whole XOF file through `hsm`: the MAC key's policy (AES, M6, not
/// exportable) and KCV, the header MAC, every record MAC and the chain, the trailer. Returns
/// the record count. A caller that knows which key must MAC the file uses
/// [`verify_file_with_key`].
pub fn verify_file(path: &Path, hsm: &dyn Hsm) -> Result<u64> {
    verify(path, hsm, None)
}

/// As [`verify_file`], and the file must be MACed under the key labelled `mac_key`: a file
/// whose header names another key is refused with [`Error::Policy`].
pub fn verify_file_with_key(path: &Path, hsm: &dyn Hsm, mac_key: &str) -> Result<u64> {
    verify(path, hsm, Some(mac_key))
}

fn verify(path: &Path, hsm: &dyn Hsm, mac_key: Option<&str>) -> Result<u64> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let input = std::io::BufReader::with_capacity(64 * 1024, f);
    let mut r = Reader::open(input, hsm, &path.display().to_string(), mac_key)?;
    while r.next_record()?.is_some() {}
    Ok(r.records())
}

/// The store's XOF MAC key: the one key of `hsm` that may verify an XOF (AES, M6, mode C or
/// V, not exportable, generated in the HSM — or any origin on TEST keys). What `pmp xof verify` expects by default, so
/// that the key is taken from the store, never from the file alone. No such key, or more
/// than one, is [`Error::Policy`] naming them (name the key explicitly then).
pub fn store_mac_key(hsm: &dyn Hsm) -> Result<String> {
    let mut found = Vec::new();
    for k in hsm.list_keys()? {
        let s = &k.spec;
        if s.algorithm == Algorithm::Aes
            && s.usage == KeyUsage::M6
            && s.exportability == Exportability::N
            && matches!(
                s.mode_of_use,
                crate::keyblock::ModeOfUse::C | crate::keyblock::ModeOfUse::V
            )
            && (hsm.key_origin(&k.handle)?.is_generated() || hsm.capabilities().is_test())
        {
            found.push(s.label.clone());
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::Policy(
            "the key store holds no XOF MAC key (AES, M6, mode C or V, not exportable, generated in the HSM)".into(),
        )),
        _ => Err(Error::Policy(format!(
            "the key store holds several XOF MAC keys ({}): name the expected one",
            found.join(", ")
        ))),
    }
}

/// The XOF MAC key policy (`docs/xof.md` §3): the key must be AES with usage M6 and **not
/// exportable** (`N`). An exportable key (such as the MAC transport key MTK, which leaves
/// the bureau under ZMK-prod) is known outside the bureau, and whoever holds it could forge
/// a file; only a key that never leaves the bureau's HSM may MAC an XOF.
///
/// And the key must have been **generated in this HSM** ([`Hsm::key_origin`]): a key formed
/// from components or imported under a KEK — even one marked non-exportable by whoever
/// wrapped it — has a value known outside the HSM, so it can neither MAC an XOF nor be
/// trusted as the key that did. A backend that does not record origins is refused. A
/// backend on TEST keys (a TEST-LMK store, whose every key is readable on disk) waives the
/// origin rule, so that known-answer vectors with stated MAC keys (`docs/xof.md` §8) can
/// be checked.
pub(crate) fn check_mac_key_policy(hsm: &dyn Hsm, info: &KeyInfo) -> Result<()> {
    let s = &info.spec;
    let origin = hsm.key_origin(&info.handle)?;
    let why = if s.algorithm != Algorithm::Aes || s.usage != KeyUsage::M6 {
        format!("it is {} {}, not AES M6 (CMAC)", s.algorithm, s.usage)
    } else if s.exportability != Exportability::N {
        format!(
            "it is exportable ({}): only a key that never leaves the bureau's HSM (exportability N) may MAC an XOF",
            s.exportability.as_char()
        )
    } else if !origin.is_generated() && !hsm.capabilities().is_test() {
        format!(
            "its origin is {origin}: only a key generated in this HSM (whose value was never outside it) may MAC an XOF"
        )
    } else {
        return Ok(());
    };
    Err(Error::Policy(format!(
        "XOF MAC key '{}' refused: {why}",
        s.label
    )))
}

/// Reads a whole XOF file for its header, key list and counts, checking its structure and
/// limits but no MAC and decrypting nothing.
pub fn inspect_file(path: &Path) -> Result<Inspection> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let input = std::io::BufReader::with_capacity(64 * 1024, f);
    read::inspect(input, &path.display().to_string())
}

// ---- shared validation (writer and reader) ----

pub(crate) fn check_name(s: &str) -> std::result::Result<(), &'static str> {
    if crate::label::is_valid(s) {
        Ok(())
    } else {
        Err(crate::label::RULE)
    }
}

pub(crate) fn check_text(s: &str) -> std::result::Result<(), &'static str> {
    if s.is_empty() || s.len() > limits::MAX_TEXT {
        return Err("must be 1 to 256 bytes");
    }
    if s.chars().any(char::is_control) {
        return Err("may not hold control characters");
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS[.f+]Z`.
pub(crate) fn check_created(s: &str) -> std::result::Result<(), &'static str> {
    const MSG: &str = "must be RFC 3339 in UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z)";
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 32 || b[b.len() - 1] != b'Z' {
        return Err(MSG);
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0'));
    let shape = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return Err(MSG);
    }
    let frac = &b[19..b.len() - 1];
    if !frac.is_empty()
        && (frac[0] != b'.' || frac.len() < 2 || !frac[1..].iter().all(u8::is_ascii_digit))
    {
        return Err(MSG);
    }
    let ok = (1..=12).contains(&num(5..7))
        && (1..=31).contains(&num(8..10))
        && num(11..13) <= 23
        && num(14..16) <= 59
        && num(17..19) <= 60;
    if ok { Ok(()) } else { Err(MSG) }
}

/// Checks a header; the error is a reason string.
pub(crate) fn check_header(h: &Header) -> std::result::Result<(), String> {
    let f = |field: &str, r: std::result::Result<(), &'static str>| {
        r.map_err(|e| format!("header {field} {e}"))
    };
    f("order-id", check_text(&h.order_id))?;
    f("issuer", check_text(&h.issuer))?;
    f("product", check_text(&h.product))?;
    f("created", check_created(&h.created))?;
    f("mac-key", check_name(&h.mac_key))?;
    if h.keys.is_empty() || h.keys.len() > limits::MAX_KEYS {
        return Err(format!(
            "the key list must hold 1 to {} keys",
            limits::MAX_KEYS
        ));
    }
    for (i, k) in h.keys.iter().enumerate() {
        f("key label", check_name(&k.label))?;
        if h.keys[..i].iter().any(|o| o.label == k.label) {
            return Err(format!("key '{}' is listed twice", k.label));
        }
        let want = match k.algorithm {
            Algorithm::Tdes => 3,
            Algorithm::Aes => 5,
        };
        if k.kcv.as_bytes().len() != want {
            return Err(format!(
                "key '{}': a {} KCV has {want} bytes",
                k.label, k.algorithm
            ));
        }
    }
    match h.key(&h.mac_key) {
        None => Err(format!("MAC key '{}' is not in the key list", h.mac_key)),
        Some(k) if k.usage != KeyUsage::M6 || k.algorithm != Algorithm::Aes => Err(format!(
            "MAC key '{}' must be AES with usage M6 (CMAC), not {} {}",
            k.label, k.algorithm, k.usage
        )),
        Some(_) => Ok(()),
    }
}

/// Checks one attribute against the header's key list; the error is a reason string.
pub(crate) fn check_attribute(h: &Header, a: &AttrRef<'_>) -> std::result::Result<(), String> {
    check_name(a.name).map_err(|e| format!("attribute name {e}"))?;
    let Some(k) = h.key(a.key) else {
        return Err(format!(
            "attribute {}: key '{}' is not in the key list",
            a.name, a.key
        ));
    };
    if a.key == h.mac_key {
        return Err(format!(
            "attribute {}: the MAC key may not encrypt data",
            a.name
        ));
    }
    let block = k.algorithm.block_size();
    match (a.mode, a.iv) {
        (Mode::Ecb, None) => {}
        (Mode::Ecb, Some(_)) => {
            return Err(format!("attribute {}: ECB takes no IV", a.name));
        }
        (Mode::Cbc, Some(iv)) if iv.len() == block => {}
        (Mode::Cbc, _) => {
            return Err(format!(
                "attribute {}: CBC needs an IV of {block} bytes",
                a.name
            ));
        }
    }
    if a.padding == Padding::Iso9797M1 {
        return Err(format!(
            "attribute {}: padding method 1 hides the plaintext length (use none, 2 or pkcs7)",
            a.name
        ));
    }
    let n = a.ciphertext.len();
    if n == 0 || !n.is_multiple_of(block) || n > limits::MAX_CIPHERTEXT {
        return Err(format!(
            "attribute {}: ciphertext must be 1 to {} whole {block}-byte blocks",
            a.name,
            limits::MAX_CIPHERTEXT / block
        ));
    }
    Ok(())
}

pub(crate) fn padding_name(p: Padding) -> &'static str {
    match p {
        Padding::None => "none",
        Padding::Iso9797M1 => "1",
        Padding::Iso9797M2 => "2",
        Padding::Pkcs7 => "pkcs7",
    }
}

pub(crate) fn parse_padding(s: &str) -> Option<Padding> {
    match s {
        "none" => Some(Padding::None),
        "2" => Some(Padding::Iso9797M2),
        "pkcs7" => Some(Padding::Pkcs7),
        _ => None,
    }
}

pub(crate) fn parse_mode(s: &str) -> Option<Mode> {
    match s {
        "ECB" => Some(Mode::Ecb),
        "CBC" => Some(Mode::Cbc),
        _ => None,
    }
}
