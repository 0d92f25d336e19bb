//! Application profiles (`pmp-profile-1`, XML; specified in `docs/profile.md`): how data
//! preparation turns one XOF record into a card's DGIs.
//!
//! A profile names the product whose XOF orders it prepares, the transport keys (KTK, PTK,
//! MTK, DTK), how the ICC master keys are derived (option, the three IMKs, where the PAN and
//! PSN are), and the DGIs in order: record DGIs and other DGIs made of data objects (each
//! from an XOF attribute in a format, or a constant), constant DGIs, and the DGIs whose
//! content data preparation computes (`icc-master-keys`, `icc-master-key-kcvs`,
//! `pin-block`).
//!
//! The parser is strict: unknown elements or attributes, a repeated attribute, a DOCTYPE,
//! processing instructions, CDATA or text, a repeated DGI and inconsistent settings are
//! refused with the element named.
//!
//! ```
//! let xml = r#"<profile format="pmp-profile-1" name="P" product="PROD">
//!   <keys ktk="KTK" ptk="PTK" mtk="MTK" dtk="DTK"/>
//!   <dgi id="0101"><tag id="5A" from="PAN" format="cn"/></dgi>
//!   <dgi id="9010" value="0303"/>
//! </profile>"#;
//! let p = pmp_core::prep::profile::Profile::parse(xml).unwrap();
//! assert_eq!(p.dgis.len(), 2);
//! ```

use std::path::Path;

use quick_xml::events::BytesStart;

use super::dgi::{self, Format};
use crate::hsm::emv::{IccDerivation, Psn};
use crate::pinblock::PinBlockFormat;
use crate::xml::{self, Content, XmlError};
use crate::{Error, Result};

/// The format identifier a profile declares.
pub const FORMAT: &str = "pmp-profile-1";

/// The largest profile file accepted.
pub const MAX_PROFILE_BYTES: usize = 1024 * 1024;

/// DGIs in one profile, at most.
pub const MAX_DGIS: usize = 256;

/// Data objects in one DGI, at most.
pub const MAX_TAGS: usize = 64;

/// The transport keys a profile prepares under, by label in the data-prep HSM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileKeys {
    /// Key transport key (K0): the ICC master keys (DGI `icc-master-keys`).
    pub ktk: String,
    /// PIN transport key (P0, exportable): the card PIN block (DGI `pin-block`).
    pub ptk: String,
    /// MAC transport key (AES, M6): the production file's MACs.
    pub mtk: String,
    /// Data transport key (D0): DGIs that carry cardholder data.
    pub dtk: String,
    /// The XOF MAC key the order must be MACed under (pinned); when absent, any XOF MAC key
    /// that passes the XOF's key policy (AES, M6, not exportable).
    pub xof_mac_key: Option<String>,
}

/// How the ICC master keys are derived (`<icc-keys>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IccKeys {
    /// Option A, B, C or auto.
    pub option: IccDerivation,
    /// IMK-AC (E0), IMK-SMI (E2), IMK-SMC (E1): labels in the data-prep HSM.
    pub imks: [String; 3],
    /// The XOF attribute holding the PAN.
    pub pan: String,
    /// The XOF attribute holding the PSN, if any.
    pub psn: Option<String>,
    /// The PSN when the record has none.
    pub psn_default: Option<Psn>,
}

/// Where a data object's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagSource {
    /// A clear XOF attribute, encoded in `format`.
    Attribute {
        /// The XOF attribute's name.
        name: String,
        /// The value format.
        format: Format,
        /// The fixed length in bytes (`n` and `cn` only).
        length: Option<usize>,
        /// The value (before encoding) when the record lacks the attribute; without it
        /// such a record is rejected.
        default: Option<String>,
    },
    /// A constant value.
    Constant(Vec<u8>),
}

/// One data object of a DGI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagSpec {
    /// The BER tag, 1 to 3 bytes.
    pub tag: Vec<u8>,
    /// Its value.
    pub source: TagSource,
}

/// What a DGI holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DgiContent {
    /// Data objects (inside a record template `70` for a record DGI).
    Tags(Vec<TagSpec>),
    /// A constant value (the DGI's data as it is).
    Value(Vec<u8>),
    /// MK-AC || MK-SMI || MK-SMC under the KTK.
    IccMasterKeys,
    /// The KCVs of the three ICC master keys, in clear.
    IccMasterKeyKcvs,
    /// The card's PIN, ISO 9564-1 format 2, under the PTK.
    PinBlock {
        /// The XOF attribute holding the bureau PIN block.
        from: String,
        /// Its ISO 9564-1 format; `None`: format 4 under an AES bureau PIN key, format 0
        /// under a TDES one.
        format: Option<PinBlockFormat>,
        /// The XOF attribute holding the PAN (for formats 0, 3 and 4).
        pan: String,
    },
}

/// One DGI of the profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DgiSpec {
    /// The DGI number.
    pub id: u16,
    /// What it holds.
    pub content: DgiContent,
}

impl DgiSpec {
    /// Whether the DGI carries data from the XOF (cardholder data: encrypted under the DTK).
    pub fn carries_card_data(&self) -> bool {
        matches!(&self.content, DgiContent::Tags(t)
            if t.iter().any(|t| matches!(t.source, TagSource::Attribute { .. })))
    }
}

/// An application profile. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name.
    pub name: String,
    /// The product (order profile) whose XOF orders it prepares: the XOF header's product.
    pub product: String,
    /// The transport keys.
    pub keys: ProfileKeys,
    /// ICC master-key derivation, when the profile has an `icc-master-keys` or
    /// `icc-master-key-kcvs` DGI.
    pub icc: Option<IccKeys>,
    /// The DGIs, in card order.
    pub dgis: Vec<DgiSpec>,
}

/// The profile's rules for the one strict XML guard: the whole file is in memory already
/// (at most [`MAX_PROFILE_BYTES`]), so one event may take all of it; comments skipped; no
/// DOCTYPE, processing instruction, CDATA or reference in text; elements no deeper than
/// `profile/dgi/tag`.
const XML_RULES: xml::Rules = xml::Rules {
    event_bytes: MAX_PROFILE_BYTES,
    max_depth: 3,
    comments: true,
    processing_instructions: false,
    text_references: false,
    cdata: false,
};

/// An element's attributes, each to be used exactly once.
struct Elem {
    name: String,
    attrs: Vec<(String, String, bool)>,
}

fn bad(element: &str, reason: impl core::fmt::Display) -> Error {
    Error::invalid("profile", format!("<{element}>: {reason}"))
}

impl Elem {
    fn new(e: &BytesStart<'_>) -> Result<Self> {
        let name = e.name().as_ref().to_string();
        let mut attrs: Vec<(String, String, bool)> = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|err| bad(&name, format!("malformed attribute ({err})")))?;
            let key = a.key.as_ref().to_string();
            let value = xml::attribute_value(&a)
                .map_err(|err| bad(&name, format!("attribute {key}: {err}")))?
                .into_owned();
            if attrs.iter().any(|(k, _, _)| *k == key) {
                return Err(bad(&name, format!("attribute {key} given twice")));
            }
            attrs.push((key, value, false));
        }
        Ok(Self { name, attrs })
    }

    fn get(&mut self, key: &str) -> Option<String> {
        let a = self.attrs.iter_mut().find(|(k, _, _)| k == key)?;
        a.2 = true;
        Some(a.1.clone())
    }

    fn req(&mut self, key: &str) -> Result<String> {
        self.get(key)
            .ok_or_else(|| bad(&self.name, format!("attribute {key} is required")))
    }

    fn label(&mut self, key: &str) -> Result<String> {
        let v = self.req(key)?;
        self.check_label(key, &v)?;
        Ok(v)
    }

    fn check_label(&self, key: &str, v: &str) -> Result<()> {
        if crate::label::is_valid(v) {
            Ok(())
        } else {
            Err(bad(&self.name, format!("{key}: {}", crate::label::RULE)))
        }
    }

    fn hex(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get(key)
            .map(|v| {
                hex::decode(&v)
                    .ok()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad(&self.name, format!("{key} must be hex bytes")))
            })
            .transpose()
    }

    fn done(&self) -> Result<()> {
        match self.attrs.iter().find(|a| !a.2) {
            Some((k, _, _)) => Err(bad(&self.name, format!("unknown attribute {k}"))),
            None => Ok(()),
        }
    }
}

fn parse_dgi_id(e: &mut Elem) -> Result<u16> {
    let v = e.req("id")?;
    let mut b = [0u8; 2];
    if v.len() != 4 || hex::decode_to_slice(&v, &mut b).is_err() {
        return Err(bad(&e.name, "id must be 4 hex digits"));
    }
    Ok(u16::from_be_bytes(b))
}

fn parse_tag(e: &mut Elem) -> Result<TagSpec> {
    let tag = e
        .hex("id")?
        .ok_or_else(|| bad(&e.name, "attribute id is required"))?;
    dgi::check_tag(&tag).map_err(|r| bad(&e.name, format!("id: {r}")))?;
    if tag == [0x70] {
        return Err(bad(
            &e.name,
            "70 is the record template: it is added, not listed",
        ));
    }
    let source = match (e.get("from"), e.hex("value")?) {
        (Some(name), None) => {
            e.check_label("from", &name)?;
            let f = e.req("format")?;
            let format = Format::parse(&f).ok_or_else(|| {
                bad(
                    &e.name,
                    "format must be cn, n, ans, b, track2 or yymm-end-of-month",
                )
            })?;
            let length = match e.get("length") {
                None => None,
                Some(l) => Some(
                    l.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=dgi::MAX_LEN).contains(n))
                        .ok_or_else(|| bad(&e.name, "length must be a number of bytes"))?,
                ),
            };
            if length.is_some() && !matches!(format, Format::N | Format::Cn) {
                return Err(bad(&e.name, "length is for formats n and cn"));
            }
            let default = e.get("default");
            if let Some(d) = &default {
                let mut scratch = zeroize::Zeroizing::new(Vec::new());
                format
                    .encode(d.as_bytes(), length, &mut scratch)
                    .map_err(|r| bad(&e.name, format!("default {r}")))?;
            }
            TagSource::Attribute {
                name,
                format,
                length,
                default,
            }
        }
        (None, Some(v)) => TagSource::Constant(v),
        _ => return Err(bad(&e.name, "give either from (with format) or value")),
    };
    Ok(TagSpec { tag, source })
}

impl Profile {
    /// Reads and parses a profile file.
    pub fn load(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.len() > MAX_PROFILE_BYTES as u64 {
            return Err(bad("profile", "file larger than 1 MiB"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|e| match e {
            Error::Invalid { field, reason } => Error::Invalid {
                field,
                reason: format!("{}: {reason}", path.display()),
            },
            e => e,
        })
    }

    /// Parses a profile's text.
    pub fn parse(xml: &str) -> Result<Self> {
        if xml.len() > MAX_PROFILE_BYTES {
            return Err(bad("profile", "file larger than 1 MiB"));
        }
        let mut r = xml::StrictReader::new(xml.as_bytes(), XML_RULES);
        let mut buf = Vec::new();
        let mut path: Vec<String> = Vec::new();
        let mut head: Option<(String, String)> = None;
        let mut keys: Option<ProfileKeys> = None;
        let mut icc: Option<IccKeys> = None;
        let mut dgis: Vec<DgiSpec> = Vec::new();
        let mut open_tags: Option<Vec<TagSpec>> = None;
        loop {
            let ev = r.next(&mut buf).map_err(|e| {
                let at = path.last().map_or("profile", String::as_str);
                match e {
                    XmlError::Refused(r) => bad(at, r),
                    XmlError::Malformed {
                        truncated: true, ..
                    } => bad(
                        at,
                        "not well-formed XML: the file ends inside the element (truncated)",
                    ),
                    XmlError::Malformed { error, .. } => {
                        bad(at, format!("not well-formed XML: {error}"))
                    }
                    XmlError::TooLarge { .. } | XmlError::Io(_) => {
                        bad("profile", "file larger than 1 MiB")
                    }
                }
            })?;
            let (start, empty) = match &ev {
                Content::Start(s) => (Some(s), false),
                Content::Empty(s) => (Some(s), true),
                _ => (None, false),
            };
            if let Some(s) = start {
                let mut e = Elem::new(s)?;
                let parent = path.last().map_or("", String::as_str);
                match (parent, e.name.as_str()) {
                    ("", "profile") if head.is_none() => {
                        if e.req("format")? != FORMAT {
                            return Err(bad("profile", format!("format must be {FORMAT}")));
                        }
                        let name = e.label("name")?;
                        let product = e.req("product")?;
                        crate::xof::check_text(&product)
                            .map_err(|r| bad("profile", format!("product {r}")))?;
                        head = Some((name, product));
                    }
                    ("profile", "keys") if keys.is_none() => {
                        keys = Some(ProfileKeys {
                            ktk: e.label("ktk")?,
                            ptk: e.label("ptk")?,
                            mtk: e.label("mtk")?,
                            dtk: e.label("dtk")?,
                            xof_mac_key: match e.get("xof-mac-key") {
                                Some(v) => {
                                    e.check_label("xof-mac-key", &v)?;
                                    Some(v)
                                }
                                None => None,
                            },
                        });
                    }
                    ("profile", "icc-keys") if icc.is_none() => {
                        let option = e
                            .req("option")?
                            .parse::<IccDerivation>()
                            .map_err(|_| bad(&e.name, "option must be A, B, C or auto"))?;
                        let imks = [e.label("imk-ac")?, e.label("imk-smi")?, e.label("imk-smc")?];
                        let pan = e.label("pan")?;
                        let psn = match e.get("psn") {
                            Some(v) => {
                                e.check_label("psn", &v)?;
                                Some(v)
                            }
                            None => None,
                        };
                        let psn_default = e
                            .get("psn-default")
                            .map(|v| Psn::parse(&v))
                            .transpose()
                            .map_err(|_| bad(&e.name, "psn-default must be 00 to 99"))?;
                        icc = Some(IccKeys {
                            option,
                            imks,
                            pan,
                            psn,
                            psn_default,
                        });
                    }
                    ("profile", "dgi") => {
                        if dgis.len() >= MAX_DGIS {
                            return Err(bad("dgi", format!("more than {MAX_DGIS} DGIs")));
                        }
                        let id = parse_dgi_id(&mut e)?;
                        if dgis.iter().any(|d| d.id == id) {
                            return Err(bad("dgi", format!("DGI {id:04X} is given twice")));
                        }
                        let content = match (e.get("content"), e.hex("value")?) {
                            (None, None) if !empty => {
                                open_tags = Some(Vec::new());
                                DgiContent::Tags(Vec::new())
                            }
                            (None, None) => {
                                return Err(bad(
                                    "dgi",
                                    format!("DGI {id:04X} needs tags, a value or a content"),
                                ));
                            }
                            (None, Some(v)) if empty => DgiContent::Value(v),
                            (Some(c), None) if empty => match c.as_str() {
                                "icc-master-keys" => DgiContent::IccMasterKeys,
                                "icc-master-key-kcvs" => DgiContent::IccMasterKeyKcvs,
                                "pin-block" => {
                                    let from = e.get("from").unwrap_or_else(|| "PIN_BLOCK".into());
                                    e.check_label("from", &from)?;
                                    let format = e
                                        .get("pin-format")
                                        .map(|f| {
                                            f.parse::<u8>()
                                                .ok()
                                                .and_then(PinBlockFormat::from_number)
                                                .filter(|f| *f != PinBlockFormat::Iso2)
                                                .ok_or_else(|| {
                                                    bad("dgi", "pin-format must be 0, 1, 3 or 4")
                                                })
                                        })
                                        .transpose()?;
                                    let pan = match e.get("pan") {
                                        Some(p) => {
                                            e.check_label("pan", &p)?;
                                            p
                                        }
                                        None => String::new(),
                                    };
                                    DgiContent::PinBlock { from, format, pan }
                                }
                                _ => {
                                    return Err(bad(
                                        "dgi",
                                        "content must be icc-master-keys, icc-master-key-kcvs or pin-block",
                                    ));
                                }
                            },
                            _ => {
                                return Err(bad(
                                    "dgi",
                                    format!(
                                        "DGI {id:04X}: give tags, or value, or content (value and content on an empty element)"
                                    ),
                                ));
                            }
                        };
                        if !matches!(content, DgiContent::Tags(_)) && dgi::is_record(id) {
                            return Err(bad(
                                "dgi",
                                format!("DGI {id:04X} is a record: it holds data objects (<tag>)"),
                            ));
                        }
                        if dgis.iter().any(|d| {
                            !matches!(d.content, DgiContent::Tags(_) | DgiContent::Value(_))
                                && core::mem::discriminant(&d.content)
                                    == core::mem::discriminant(&content)
                        }) {
                            return Err(bad(
                                "dgi",
                                format!("DGI {id:04X}: this content is given twice"),
                            ));
                        }
                        dgis.push(DgiSpec { id, content });
                    }
                    ("dgi", "tag") if open_tags.is_some() => {
                        let t = parse_tag(&mut e)?;
                        let tags = open_tags.as_mut().expect("checked");
                        if tags.len() >= MAX_TAGS {
                            return Err(bad("tag", format!("more than {MAX_TAGS} tags in a DGI")));
                        }
                        if tags.iter().any(|o| o.tag == t.tag) {
                            return Err(bad(
                                "tag",
                                format!(
                                    "tag {} is given twice in one DGI",
                                    hex::encode_upper(&t.tag)
                                ),
                            ));
                        }
                        tags.push(t);
                    }
                    (p, n) => {
                        let why =
                            if matches!((p, n), ("", "profile") | ("profile", "keys" | "icc-keys"))
                            {
                                "given more than once".to_string()
                            } else if p.is_empty() {
                                "unexpected element (the root is <profile>)".to_string()
                            } else {
                                format!("unexpected element inside <{p}>")
                            };
                        return Err(bad(n, why));
                    }
                }
                e.done()?;
                if !empty {
                    path.push(e.name);
                }
                if empty && path.is_empty() {
                    return Err(bad("profile", "holds no keys and no DGI"));
                }
                continue;
            }
            match ev {
                Content::End(end) => {
                    if end.name().as_ref() == "dgi"
                        && let Some(tags) = open_tags.take()
                    {
                        if tags.is_empty() {
                            return Err(bad("dgi", "a DGI with an end tag holds <tag> elements"));
                        }
                        if let Some(d) = dgis.last_mut() {
                            d.content = DgiContent::Tags(tags);
                        }
                    }
                    path.pop();
                }
                Content::Eof if path.is_empty() => break,
                Content::Eof => {
                    return Err(bad(
                        path.last().map_or("profile", String::as_str),
                        "not well-formed XML: the file ends inside the element (truncated)",
                    ));
                }
                Content::Decl(_) | Content::Skipped => {}
                Content::Text(t) if t.trim().is_empty() => {}
                _ => {
                    return Err(bad(
                        path.last().map_or("profile", String::as_str),
                        "unexpected text or reference",
                    ));
                }
            }
        }
        let (name, product) = head.ok_or_else(|| bad("profile", "missing"))?;
        let keys = keys.ok_or_else(|| bad("keys", "missing"))?;
        let mut p = Profile {
            name,
            product,
            keys,
            icc,
            dgis,
        };
        p.check()?;
        Ok(p)
    }

    fn check(&mut self) -> Result<()> {
        if self.dgis.is_empty() {
            return Err(bad("profile", "no DGI"));
        }
        let needs_icc = self.dgis.iter().any(|d| {
            matches!(
                d.content,
                DgiContent::IccMasterKeys | DgiContent::IccMasterKeyKcvs
            )
        });
        match (&self.icc, needs_icc) {
            (None, true) => {
                return Err(bad(
                    "icc-keys",
                    "missing: icc-master-keys and icc-master-key-kcvs need it",
                ));
            }
            (Some(_), false) => {
                return Err(bad(
                    "icc-keys",
                    "given, but no DGI has content icc-master-keys or icc-master-key-kcvs",
                ));
            }
            _ => {}
        }
        let default_pan = self.icc.as_ref().map(|i| i.pan.clone());
        for d in &mut self.dgis {
            if let DgiContent::PinBlock { pan, .. } = &mut d.content
                && pan.is_empty()
            {
                *pan = default_pan.clone().unwrap_or_else(|| "PAN".to_string());
            }
        }
        Ok(())
    }

    /// The distinct XOF attributes the profile reads.
    pub fn attributes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for d in &self.dgis {
            match &d.content {
                DgiContent::Tags(tags) => {
                    for t in tags {
                        if let TagSource::Attribute { name, .. } = &t.source
                            && !v.contains(&name.as_str())
                        {
                            v.push(name);
                        }
                    }
                }
                DgiContent::PinBlock { from, pan, .. } => {
                    for s in [from, pan] {
                        if !v.contains(&s.as_str()) {
                            v.push(s);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(i) = &self.icc {
            for s in std::iter::once(&i.pan).chain(i.psn.as_ref()) {
                if !v.contains(&s.as_str()) {
                    v.push(s);
                }
            }
        }
        v
    }
}
