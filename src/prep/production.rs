//! The production file (version 1, XML; specified in `docs/production.md`): what data
//! preparation hands to the production line for one order.
//!
//! A header names the order, the issuer, the product, the profile, the creation time and
//! every key the file refers to (label, TR-31 usage, algorithm, KCV — never key material);
//! one `card` per card holds its DGIs in card order, each in clear (constants, KCVs) or
//! encrypted under a transport key: the ICC master keys under the KTK (K0, ECB, no
//! padding), the ICC RSA CRT parts under the KTK (ECB, padding as the profile says), the card PIN under the PTK (P0, ECB), cardholder data under the DTK (D0, CBC
//! with a fresh IV, ISO/IEC 9797-1 padding method 2). The header, every card (chained to the
//! card before it) and the trailer (card count) are AES-CMAC'd under the MAC transport key
//! MTK, exactly as the XOF is under its MAC key, so a lost, repeated, reordered, altered or
//! appended card, a dropped last card and a truncated file are each detected.
//!
//! [`Writer`] writes one card at a time; the reader ([`Reader`], [`verify_file`]) is a
//! strict streaming pull parser built on the XOF reader's pieces, with its hostile-input
//! rules and limits.

use crate::hsm::KeyInfo;
use crate::keyblock::KeyUsage;
use crate::xof::KeyRef;
use crate::{Algorithm, Error, Mode, Padding, Result};

mod canon;
mod read;
mod write;

pub use crate::xof::ReadOptions;
pub use read::{Reader, verify_file, verify_file_with};
pub use write::Writer;

/// The production-file version this module writes and the only one it reads.
pub const VERSION: &str = "1";

/// Hard limits of a production file (`docs/production.md` §7). A file beyond any of them is
/// refused.
pub mod limits {
    /// Bytes in one XML event (a tag with its attributes, or one text node): the XOF's.
    pub const MAX_EVENT_BYTES: usize = crate::xof::limits::MAX_EVENT_BYTES;
    /// Bytes of one `card` element, from its start tag to its end tag.
    pub const MAX_CARD_BYTES: u64 = 1024 * 1024;
    /// `dgi` elements in one card.
    pub const MAX_DGIS: usize = 256;
    /// XML attributes on one element: the XOF's.
    pub const MAX_XML_ATTRIBUTES: usize = crate::xof::limits::MAX_XML_ATTRIBUTES;
    /// Element nesting depth (`production` 1, `header`/`card`/`trailer` 2, `key`/`dgi` 3):
    /// the XOF's.
    pub const MAX_DEPTH: usize = crate::xof::limits::MAX_DEPTH;
    /// `key` entries in the header.
    pub const MAX_KEYS: usize = 16;
    /// Bytes of one DGI's data (what a CPS DGI length can state).
    pub const MAX_DGI_DATA: usize = 0xFFFF;
}

/// The production file's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The bureau's order id (from the XOF).
    pub order_id: String,
    /// The issuer (from the XOF).
    pub issuer: String,
    /// The product (from the XOF).
    pub product: String,
    /// The application profile's name.
    pub profile: String,
    /// Creation time, RFC 3339 in UTC.
    pub created: String,
    /// Every key the file refers to, the MAC key included.
    pub keys: Vec<KeyRef>,
    /// The label of the MAC key (the MTK: AES, usage M6); it is also in `keys`.
    pub mac_key: String,
    /// The TEST marker (`test="true"`, covered by the header MAC): prepared from a TEST
    /// order or on a data-prep HSM with a TEST LMK, for development and tests only. A
    /// reader on a production HSM refuses such a file unless told otherwise
    /// ([`ReadOptions::allow_test`]).
    pub test: bool,
}

impl Header {
    /// The key list entry labelled `label`.
    pub fn key(&self, label: &str) -> Option<&KeyRef> {
        self.keys.iter().find(|k| k.label == label)
    }
}

/// How an encrypted DGI is encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protection {
    /// The label of the transport key (in the header's key list).
    pub key: String,
    /// ECB (keys and PIN blocks) or CBC (cardholder data).
    pub mode: Mode,
    /// The IV for CBC, one block of the key's algorithm.
    pub iv: Option<Vec<u8>>,
    /// None, or ISO/IEC 9797-1 method 2.
    pub padding: Padding,
}

/// One DGI of a card: its number and its data (the DGI's value without its number and
/// length), in clear or encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dgi {
    /// The DGI number.
    pub id: u16,
    /// How `data` is encrypted; `None` for a DGI in clear.
    pub protection: Option<Protection>,
    /// The data (ciphertext when protected).
    pub data: Vec<u8>,
}

/// One card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Card {
    /// Sequence number, 1-based, consecutive (the XOF record's).
    pub seq: u64,
    /// The issuer's id of the card's record.
    pub id: String,
    /// The DGIs in card order.
    pub dgis: Vec<Dgi>,
}

/// The MAC key of a production file: AES with usage M6 (CMAC). Unlike the XOF's, it is a
/// transport key (the MTK) and exportable by design: it is shared with the production line.
pub(crate) fn check_mac_key(info: &KeyInfo) -> Result<()> {
    let s = &info.spec;
    if s.algorithm != Algorithm::Aes || s.usage != KeyUsage::M6 {
        return Err(Error::Policy(format!(
            "production MAC key '{}' refused: it is {} {}, not AES M6 (CMAC)",
            s.label, s.algorithm, s.usage
        )));
    }
    Ok(())
}

pub(crate) fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Ecb => "ecb",
        Mode::Cbc => "cbc",
    }
}

pub(crate) fn parse_mode(s: &str) -> Option<Mode> {
    match s {
        "ecb" => Some(Mode::Ecb),
        "cbc" => Some(Mode::Cbc),
        _ => None,
    }
}

pub(crate) fn padding_name(p: Padding) -> &'static str {
    match p {
        Padding::Iso9797M2 => "2",
        _ => "none",
    }
}

pub(crate) fn parse_padding(s: &str) -> Option<Padding> {
    match s {
        "none" => Some(Padding::None),
        "2" => Some(Padding::Iso9797M2),
        _ => None,
    }
}

/// Checks a header; the error is a reason string.
pub(crate) fn check_header(h: &Header) -> std::result::Result<(), String> {
    let f = |field: &str, r: std::result::Result<(), &'static str>| {
        r.map_err(|e| format!("header {field} {e}"))
    };
    f("order-id", crate::xof::check_text(&h.order_id))?;
    f("issuer", crate::xof::check_text(&h.issuer))?;
    f("product", crate::xof::check_text(&h.product))?;
    f("profile", crate::xof::check_name(&h.profile))?;
    f("created", crate::xof::check_created(&h.created))?;
    f("mac-key", crate::xof::check_name(&h.mac_key))?;
    if h.keys.is_empty() || h.keys.len() > limits::MAX_KEYS {
        return Err(format!(
            "the key list must hold 1 to {} keys",
            limits::MAX_KEYS
        ));
    }
    for (i, k) in h.keys.iter().enumerate() {
        f("key label", crate::xof::check_name(&k.label))?;
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
        if !matches!(
            k.usage,
            KeyUsage::K0 | KeyUsage::P0 | KeyUsage::D0 | KeyUsage::M6
        ) {
            return Err(format!(
                "key '{}': usage {} is not a transport key's (K0, P0, D0, M6)",
                k.label, k.usage
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

/// Checks one DGI against the header's key list and the separation rules: a K0 key (KTK)
/// and a P0 key (PTK) encrypt in ECB (the KTK's ICC RSA CRT parts may be padded with
/// method 2), a D0 key (DTK) in CBC with padding method 2; the MAC
/// key encrypts nothing. The error is a reason string.
pub(crate) fn check_dgi(h: &Header, d: &Dgi) -> std::result::Result<(), String> {
    let id = d.id;
    let n = d.data.len();
    if n == 0 || n > limits::MAX_DGI_DATA {
        return Err(format!(
            "DGI {id:04X}: data must be 1 to {} bytes",
            limits::MAX_DGI_DATA
        ));
    }
    let Some(p) = &d.protection else {
        return Ok(());
    };
    let Some(k) = h.key(&p.key) else {
        return Err(format!(
            "DGI {id:04X}: key '{}' is not in the key list",
            p.key
        ));
    };
    let bs = k.algorithm.block_size();
    let rule = match k.usage {
        KeyUsage::K0 => p.mode == Mode::Ecb,
        KeyUsage::P0 => p.mode == Mode::Ecb,
        KeyUsage::D0 => p.mode == Mode::Cbc && p.padding == Padding::Iso9797M2,
        _ => false,
    };
    if !rule {
        return Err(format!(
            "DGI {id:04X}: a {} key encrypts only {} (key '{}')",
            k.usage,
            match k.usage {
                KeyUsage::K0 => "keys, in ECB",
                KeyUsage::P0 => "PIN blocks, in ECB",
                KeyUsage::D0 => "data, in CBC with padding 2",
                _ => "nothing here",
            },
            p.key
        ));
    }
    match (p.mode, &p.iv) {
        (Mode::Ecb, None) => {}
        (Mode::Ecb, Some(_)) => return Err(format!("DGI {id:04X}: ECB takes no IV")),
        (Mode::Cbc, Some(iv)) if iv.len() == bs => {}
        (Mode::Cbc, _) => return Err(format!("DGI {id:04X}: CBC needs an IV of {bs} bytes")),
    }
    if !n.is_multiple_of(bs) {
        return Err(format!(
            "DGI {id:04X}: encrypted data must be whole {bs}-byte blocks"
        ));
    }
    Ok(())
}

/// Checks a card (the DGIs and their count, no repeated DGI); the error is a reason.
pub(crate) fn check_card(h: &Header, c: &Card) -> std::result::Result<(), String> {
    crate::xof::check_text(&c.id).map_err(|e| format!("card id {e}"))?;
    if c.dgis.len() > limits::MAX_DGIS {
        return Err(format!("more than {} DGIs", limits::MAX_DGIS));
    }
    for (i, d) in c.dgis.iter().enumerate() {
        check_dgi(h, d)?;
        if c.dgis[..i].iter().any(|o| o.id == d.id) {
            return Err(format!("DGI {:04X} appears twice", d.id));
        }
    }
    Ok(())
}
