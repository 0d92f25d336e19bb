//! Products (order profiles): what an issuer's file looks like and what becomes of each of
//! its fields. The file format (`pmp-product-1`, XML) is specified with a full example in
//! `docs/product.md`.
//!
//! A product names
//! - the keys: the issuer's transport key for data (TK_issuer, D0) with the KCV the issuer
//!   sent, the issuer PIN key and the bureau PIN key (each with its ISO 9564 format), and
//!   the XOF MAC key;
//! - the issuer layout ([`Layout`]): delimited, fixed-width or XML; how the whole file is
//!   encrypted (none, TDES-CBC, AES-CBC; IV; padding); how individually encrypted fields
//!   are encrypted; where the issuer's declared record count is;
//! - the fields ([`FieldSpec`]): where each one is, whether it is required, its check, and
//!   the XOF attribute and DKep it becomes.
//!
//! The parser is strict: unknown elements or attributes, a DOCTYPE, a missing key and
//! inconsistent settings are refused with the element named.
//!
//! ```
//! let xml = r#"<product format="pmp-product-1" name="P1" issuer="BANK">
//!   <keys><mac-key label="XOF-MAC"/></keys>
//!   <layout kind="delimited" separator=";" record-id="id"/>
//!   <fields>
//!     <field name="id"/>
//!     <field name="pan" required="true" check="pan" attribute="PAN" dkep="DKEP-PAN"/>
//!   </fields>
//! </product>"#;
//! let p = pmp_core::order::product::Product::parse(xml).unwrap();
//! assert_eq!(p.fields.len(), 2);
//! assert_eq!(p.dkep_labels(), vec!["DKEP-PAN"]);
//! ```

use std::path::Path;

use quick_xml::events::BytesStart;

use crate::order::encoding::Encoding;
use crate::order::validate::{Charset, Check};
use crate::pinblock::PinBlockFormat;
use crate::xml::{self, Content, XmlError};
use crate::{Algorithm, Error, Kcv, Mode, Padding, Result};

/// The format identifier a product file declares.
pub const FORMAT: &str = "pmp-product-1";

/// A key named by a product: its label in the HSM and, optionally, the KCV it must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyName {
    /// The label in the HSM.
    pub label: String,
    /// The expected KCV (the issuer sends it with the key); checked before any record is
    /// read.
    pub kcv: Option<Kcv>,
}

/// A PIN key named by a product, with the PIN block format used under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinKey {
    /// The key.
    pub key: KeyName,
    /// The ISO 9564-1 format of PIN blocks under it.
    pub format: PinBlockFormat,
}

/// The keys of a product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// TK_issuer for data (whole-file and per-field encryption).
    pub transport: Option<KeyName>,
    /// The issuer PIN key and format.
    pub issuer_pin: Option<PinKey>,
    /// The bureau PIN key and format.
    pub bureau_pin: Option<PinKey>,
    /// The XOF MAC key (AES, M6).
    pub mac: KeyName,
}

/// Where the record's IV comes from for whole-file CBC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IvSource {
    /// A fixed IV written in the product (hex; `zero` is all zeros).
    Fixed(Vec<u8>),
    /// The first cipher block of the file is the IV.
    Prefix,
}

/// Whole-file encryption under TK_issuer (CBC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEncryption {
    /// TDES or AES (the key's algorithm must match).
    pub algorithm: Algorithm,
    /// The IV.
    pub iv: IvSource,
    /// The padding of the file's last block.
    pub padding: Padding,
}

/// Encryption of individually encrypted fields (hex ciphertext under TK_issuer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldEncryption {
    /// ECB or CBC.
    pub mode: Mode,
    /// The IV for CBC (the same for every field: the issuer's convention).
    pub iv: Option<Vec<u8>>,
    /// The padding of each field.
    pub padding: Padding,
}

/// The kind of issuer file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutKind {
    /// One record per line, fields split by `separator`, optionally quoted (RFC 4180
    /// style: a quote inside a quoted field is doubled). With `header`, the first line
    /// names the columns and fields are found by name; otherwise by position.
    Delimited {
        /// The separator byte.
        separator: u8,
        /// The quote byte, if quoting is used.
        quote: Option<u8>,
        /// Whether the first line is a header row.
        header: bool,
    },
    /// One record per line, each field at a fixed position (`start`, `length`; trailing
    /// spaces removed).
    Fixed,
    /// One element per record, found by its path from the root element
    /// (`record-path="CARDGEN/PRODUCT/CARDHOLDER"`, or the older `root` and `record` for a
    /// record element directly inside the root); each field a [`FieldPath`] inside it.
    /// Elements off the record path are skipped. Names match by local name, or by
    /// `prefix:name` as written when the step has a prefix.
    Xml {
        /// The element names from the root element to the record element.
        record_path: Vec<String>,
    },
}

/// Where a field is inside an XML record: the element path relative to the record element
/// (`CARD/PAN`), and optionally an attribute of that element (`@UID` for an attribute of
/// the record element itself, `CARD/@type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    /// Element names below the record element (empty: the record element itself).
    pub elements: Vec<String>,
    /// The attribute, for `.../@name`.
    pub attribute: Option<String>,
}

/// Whether `n` is an element or attribute name as paths write it: an XML name, with at most
/// one `prefix:`.
fn is_xml_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.matches(':').count() <= 1
        && !n.starts_with(':')
        && !n.ends_with(':')
        && !n.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        && n.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(c, '_' | '-' | '.' | ':')
                || (!c.is_ascii() && !c.is_whitespace())
        })
}

/// The local part of a name (after its `prefix:`, if any).
pub(crate) fn local(n: &str) -> &str {
    n.rsplit_once(':').map_or(n, |(_, l)| l)
}

/// Parses a slash path of element names (`A/B/C`).
fn element_path(p: &str) -> Option<Vec<String>> {
    let steps: Vec<String> = p.split('/').map(str::to_string).collect();
    steps.iter().all(|s| is_xml_name(s)).then_some(steps)
}

impl FieldPath {
    /// Parses a `column` of an XML layout: `PAN`, `CARD/PAN`, `@UID`, `CARD/@type`.
    pub fn parse(column: &str) -> Option<Self> {
        let (elements, attribute) = match column.rsplit_once('@') {
            Some((head, attr)) => {
                if !is_xml_name(attr) {
                    return None;
                }
                let head = match head {
                    "" => Vec::new(),
                    h => element_path(h.strip_suffix('/')?)?,
                };
                (head, Some(attr.to_string()))
            }
            None => (element_path(column)?, None),
        };
        Some(Self {
            elements,
            attribute,
        })
    }

    /// Whether the field is read from an attribute.
    pub fn is_attribute(&self) -> bool {
        self.attribute.is_some()
    }
}

impl core::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.elements.join("/"))?;
        if let Some(a) = &self.attribute {
            if !self.elements.is_empty() {
                f.write_str("/")?;
            }
            write!(f, "@{a}")?;
        }
        Ok(())
    }
}

/// What to do when a mapped column or XML path is in no record of the file (a typo in the
/// product, or data the issuer did not send).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AbsentFields {
    /// Stop the file (the default): a typo never drops data silently.
    #[default]
    Error,
    /// For optional fields only: import, and name the field with a warning in the summary.
    /// A required field absent from the whole file still stops it.
    Warn,
}

/// Where the issuer's declared record count is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountSpec {
    /// A trailer line, the last line of the file, recognised by its first field (delimited)
    /// or its first bytes (fixed) being `marker`; the count is in column `column` (1-based,
    /// delimited) or at `start`/`length` (fixed).
    Trailer {
        /// The marker.
        marker: String,
        /// Delimited: the count's column (1-based).
        column: usize,
        /// Fixed: the count's first byte (1-based).
        start: usize,
        /// Fixed: the count's length.
        length: usize,
    },
    /// An attribute of the root element (XML layouts).
    RootAttribute(String),
    /// The text of an element anywhere in the file, before or after the records, by its
    /// path from the root element (`CARDGEN/CARDSUM/NO_OF_CARDS`; XML layouts).
    Element(Vec<String>),
}

/// The issuer layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Delimited, fixed or XML.
    pub kind: LayoutKind,
    /// The name of the field holding the issuer's record id.
    pub record_id: String,
    /// Whole-file encryption, if any.
    pub file_encryption: Option<FileEncryption>,
    /// How individually encrypted fields are encrypted (required when any field is).
    pub field_encryption: Option<FieldEncryption>,
    /// The declared count, if the layout has one.
    pub count: Option<CountSpec>,
    /// The longest record (line or element) accepted, in bytes of UTF-8 text.
    pub max_record_bytes: usize,
    /// The file's character encoding (line layouts; an XML file says its own).
    pub encoding: Encoding,
    /// Fixed-width layouts: the first line is a header, starting with this marker.
    pub header_marker: Option<String>,
    /// A mapped column or XML path in no record of the file: an error, or a warning.
    pub absent_fields: AbsentFields,
}

/// What a field is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A data field: becomes an XOF attribute when `attribute` is set.
    Data,
    /// An ISO 9564 PIN block in hex under the issuer PIN key, translated to the bureau PIN
    /// key with the PAN of field `pan_field`.
    PinBlock {
        /// The field holding the PAN.
        pan_field: String,
    },
}

/// One field of the issuer layout and what becomes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// The field's name (also its column header or XML element name unless `column` says
    /// otherwise).
    pub name: String,
    /// The column header, or for XML layouts the path inside the record ([`FieldPath`]).
    pub column: String,
    /// XML layouts: `column` as a path.
    pub path: Option<FieldPath>,
    /// Fixed layouts: first character (1-based) and length in characters.
    pub position: Option<(usize, usize)>,
    /// The fewest characters a present value may have (`min-length`, or `length`).
    pub min_length: Option<usize>,
    /// The most characters a present value may have (`max-length`, or `length`).
    pub max_length: Option<usize>,
    /// Whether a record without it is rejected.
    pub required: bool,
    /// The content check on the clear value.
    pub check: Option<Check>,
    /// Whether the field is hex ciphertext under TK_issuer.
    pub encrypted: bool,
    /// Data or PIN block.
    pub role: Role,
    /// The XOF attribute it becomes (none: read and checked, not written).
    pub attribute: Option<String>,
    /// The DKep label that protects the attribute (data fields).
    pub dkep: Option<String>,
}

/// A product (order profile). See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// The product's name (goes into the XOF header).
    pub name: String,
    /// The issuer's name (goes into the XOF header).
    pub issuer: String,
    /// The keys.
    pub keys: Keys,
    /// The issuer layout.
    pub layout: Layout,
    /// The fields, in order.
    pub fields: Vec<FieldSpec>,
}

/// Bytes of a product file.
const MAX_PRODUCT_BYTES: usize = 1024 * 1024;

/// The product file's rules for the strict reader: the whole file is in memory already
/// (at most [`MAX_PRODUCT_BYTES`]), so one event may take all of it; comments skipped; no
/// DOCTYPE, processing instruction, CDATA or reference in text; elements no deeper than
/// the format's `product/layout/count` and `product/fields/field`.
const XML_RULES: xml::Rules = xml::Rules {
    event_bytes: MAX_PRODUCT_BYTES,
    max_depth: 3,
    comments: true,
    processing_instructions: false,
    text_references: false,
    cdata: false,
};

/// A parsed element: name and attributes.
struct Elem {
    name: String,
    attrs: Vec<(String, String)>,
    used: Vec<bool>,
}

impl Elem {
    fn new(e: &BytesStart<'_>) -> Result<Self> {
        let name = e.name().as_ref().to_string();
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|err| bad(&name, &format!("malformed attribute ({err})")))?;
            let key = a.key.as_ref().to_string();
            let value = xml::attribute_value(&a)
                .map_err(|err| bad(&name, &format!("attribute {key}: {err}")))?
                .into_owned();
            if attrs.iter().any(|(k, _)| *k == key) {
                return Err(bad(&name, &format!("attribute {key} given twice")));
            }
            attrs.push((key, value));
        }
        let used = vec![false; attrs.len()];
        Ok(Self { name, attrs, used })
    }

    fn get(&mut self, key: &str) -> Option<String> {
        let i = self.attrs.iter().position(|(k, _)| k == key)?;
        self.used[i] = true;
        Some(self.attrs[i].1.clone())
    }

    fn req(&mut self, key: &str) -> Result<String> {
        self.get(key)
            .ok_or_else(|| bad(&self.name, &format!("attribute {key} is required")))
    }

    fn bool(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.get(key).as_deref() {
            None => Ok(default),
            Some("true" | "yes" | "1") => Ok(true),
            Some("false" | "no" | "0") => Ok(false),
            Some(_) => Err(bad(&self.name, &format!("{key} must be true or false"))),
        }
    }

    fn usize(&mut self, key: &str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| bad(&self.name, &format!("{key} must be a number")))
            })
            .transpose()
    }

    fn done(&self) -> Result<()> {
        match self.used.iter().position(|u| !u) {
            Some(i) => Err(bad(
                &self.name,
                &format!("unknown attribute {}", self.attrs[i].0),
            )),
            None => Ok(()),
        }
    }
}

fn bad(element: &str, reason: &str) -> Error {
    Error::invalid("product", format!("<{element}>: {reason}"))
}

fn key_name(e: &mut Elem) -> Result<KeyName> {
    let label = e.req("label")?;
    let kcv = e.get("kcv").map(|k| Kcv::from_hex(&k)).transpose()?;
    Ok(KeyName { label, kcv })
}

fn pin_key(e: &mut Elem) -> Result<PinKey> {
    let key = key_name(e)?;
    let f = e.req("format")?;
    let format = f
        .parse::<u8>()
        .ok()
        .and_then(PinBlockFormat::from_number)
        .filter(|f| *f != PinBlockFormat::Iso2)
        .ok_or_else(|| bad(&e.name, "format must be 0, 1, 3 or 4"))?;
    Ok(PinKey { key, format })
}

fn hex_attr(e: &mut Elem, key: &str) -> Result<Option<Vec<u8>>> {
    e.get(key)
        .map(|v| hex::decode(v.trim()).map_err(|_| bad(&e.name, &format!("{key} must be hex"))))
        .transpose()
}

fn one_byte(e: &mut Elem, key: &str) -> Result<Option<u8>> {
    match e.get(key) {
        None => Ok(None),
        Some(v) => match v.as_str() {
            "\\t" | "tab" => Ok(Some(b'\t')),
            "none" | "" => Ok(None),
            s if s.len() == 1 && s.is_ascii() => Ok(Some(s.as_bytes()[0])),
            _ => Err(bad(
                &e.name,
                &format!("{key} must be one ASCII character, tab or none"),
            )),
        },
    }
}

fn padding(e: &mut Elem) -> Result<Padding> {
    match e.get("padding") {
        None => Ok(Padding::Pkcs7),
        Some(p) => p
            .parse()
            .map_err(|_| bad(&e.name, "padding must be none, 1, 2 or pkcs7")),
    }
}

impl Product {
    /// Reads and parses a product file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|e| match e {
            Error::Invalid { field, reason } => Error::Invalid {
                field,
                reason: format!("{}: {reason}", path.display()),
            },
            e => e,
        })
    }

    /// Parses a product file's text.
    pub fn parse(xml: &str) -> Result<Self> {
        if xml.len() > MAX_PRODUCT_BYTES {
            return Err(bad("product", "file larger than 1 MiB"));
        }
        let mut r = xml::StrictReader::new(xml.as_bytes(), XML_RULES);
        let mut buf = Vec::new();
        let mut path: Vec<String> = Vec::new();
        let mut product: Option<(String, String)> = None;
        let mut keys = (None, None, None, None);
        let mut layout: Option<LayoutAttrs> = None;
        let mut file_enc = None;
        let mut field_enc = None;
        let mut count = None;
        let mut fields: Vec<FieldSpec> = Vec::new();
        // Elements that may occur at most once: a second one would silently replace the
        // first (a second <layout> or <keys> after review, say).
        let mut seen: Vec<String> = Vec::new();
        loop {
            let ev = r.next(&mut buf).map_err(|e| {
                let at = path.last().map_or("product", String::as_str);
                match e {
                    XmlError::Refused(r) => bad(at, &r.to_string()),
                    XmlError::Malformed { error, .. } => {
                        bad("product", &format!("not well-formed XML: {error}"))
                    }
                    XmlError::TooLarge { .. } | XmlError::Io(_) => {
                        bad("product", "file larger than 1 MiB")
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
                let parent = path.last().map(String::as_str).unwrap_or("");
                if !(parent == "fields" && e.name == "field") {
                    let key = format!("{parent}/{}", e.name);
                    if seen.contains(&key) {
                        return Err(bad(&e.name, "given more than once"));
                    }
                    seen.push(key);
                }
                match (parent, e.name.as_str()) {
                    ("", "product") => {
                        let f = e.req("format")?;
                        if f != FORMAT {
                            return Err(bad("product", &format!("format must be {FORMAT}")));
                        }
                        product = Some((e.req("name")?, e.req("issuer")?));
                    }
                    ("product", "keys" | "fields") => {}
                    ("keys", "transport-key") => keys.0 = Some(key_name(&mut e)?),
                    ("keys", "issuer-pin-key") => keys.1 = Some(pin_key(&mut e)?),
                    ("keys", "bureau-pin-key") => keys.2 = Some(pin_key(&mut e)?),
                    ("keys", "mac-key") => keys.3 = Some(key_name(&mut e)?),
                    ("product", "layout") => layout = Some(parse_layout(&mut e)?),
                    ("layout", "file-encryption") => {
                        let alg = match e.req("cipher")?.as_str() {
                            "tdes-cbc" => Algorithm::Tdes,
                            "aes-cbc" => Algorithm::Aes,
                            _ => return Err(bad(&e.name, "cipher must be tdes-cbc or aes-cbc")),
                        };
                        let iv = match e.req("iv")?.as_str() {
                            "prefix" => IvSource::Prefix,
                            "zero" => IvSource::Fixed(vec![0; alg.block_size()]),
                            _ => IvSource::Fixed(hex_attr(&mut e, "iv")?.unwrap_or_default()),
                        };
                        if let IvSource::Fixed(v) = &iv
                            && v.len() != alg.block_size()
                        {
                            return Err(bad(&e.name, "the IV must be one cipher block"));
                        }
                        let padding = padding(&mut e)?;
                        if padding == Padding::Iso9797M1 {
                            return Err(bad(&e.name, "padding 1 cannot be removed from a file"));
                        }
                        if padding == Padding::None {
                            return Err(bad(
                                &e.name,
                                "padding none is refused: the padding is the only integrity check of a CBC file",
                            ));
                        }
                        file_enc = Some(FileEncryption {
                            algorithm: alg,
                            iv,
                            padding,
                        });
                    }
                    ("layout", "field-encryption") => {
                        let mode: Mode = e.req("mode")?.parse()?;
                        let iv = match e.get("iv").as_deref() {
                            None => None,
                            Some("zero") => Some(Vec::new()),
                            Some(_) => hex_attr(&mut e, "iv")?,
                        };
                        if (mode == Mode::Cbc) != iv.is_some() {
                            return Err(bad(&e.name, "CBC needs an iv, ECB takes none"));
                        }
                        let padding = padding(&mut e)?;
                        if padding == Padding::None {
                            return Err(bad(
                                &e.name,
                                "padding none is refused: the padding is the only integrity check of an encrypted field",
                            ));
                        }
                        field_enc = Some(FieldEncryption { mode, iv, padding });
                    }
                    ("layout", "count") => {
                        count = Some(if let Some(a) = e.get("root-attribute") {
                            CountSpec::RootAttribute(a)
                        } else if let Some(p) = e.get("element") {
                            CountSpec::Element(element_path(&p).ok_or_else(|| {
                                bad(&e.name, "element must be a slash path of element names")
                            })?)
                        } else {
                            CountSpec::Trailer {
                                marker: e.req("trailer")?,
                                column: e.usize("column")?.unwrap_or(2),
                                start: e.usize("start")?.unwrap_or(0),
                                length: e.usize("length")?.unwrap_or(0),
                            }
                        });
                    }
                    ("fields", "field") => fields.push(parse_field(&mut e)?),
                    (p, n) => {
                        return Err(bad(
                            n,
                            &format!(
                                "unexpected element{}",
                                if p.is_empty() {
                                    String::new()
                                } else {
                                    format!(" inside <{p}>")
                                }
                            ),
                        ));
                    }
                }
                e.done()?;
                if !empty {
                    path.push(e.name);
                }
                continue;
            }
            match ev {
                Content::End(_) => {
                    path.pop();
                }
                Content::Eof => break,
                Content::Decl(_) | Content::Skipped => {}
                Content::Text(t) if t.trim().is_empty() => {}
                _ => {
                    return Err(bad(
                        path.last().map_or("product", String::as_str),
                        "unexpected content",
                    ));
                }
            }
        }
        let (name, issuer) = product.ok_or_else(|| bad("product", "missing"))?;
        let l = layout.ok_or_else(|| bad("layout", "missing"))?;
        if matches!(l.kind, LayoutKind::Xml { .. }) {
            for f in &mut fields {
                f.path = Some(FieldPath::parse(&f.column).ok_or_else(|| {
                    bad(
                        "field",
                        &format!(
                            "{}: column '{}' is not a path of element names (CARD/PAN), with optionally an attribute last (@UID, CARD/@type)",
                            f.name, f.column
                        ),
                    )
                })?);
            }
        }
        // Fill in a zero IV's length now that the algorithm of TK_issuer is not known
        // here: `zero` for field encryption means one block of the key's size, resolved at
        // import time (an empty IV stands for it).
        let p = Product {
            name,
            issuer,
            keys: Keys {
                transport: keys.0,
                issuer_pin: keys.1,
                bureau_pin: keys.2,
                mac: keys.3.ok_or_else(|| bad("mac-key", "missing"))?,
            },
            layout: Layout {
                kind: l.kind,
                record_id: l.record_id,
                file_encryption: file_enc,
                field_encryption: field_enc,
                count,
                max_record_bytes: l.max_record_bytes,
                encoding: l.encoding,
                header_marker: l.header_marker,
                absent_fields: l.absent_fields,
            },
            fields,
        };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<()> {
        let f = |n: &str, r: &str| Err(bad(n, r));
        if self.fields.is_empty() {
            return f("fields", "no field");
        }
        // Every attribute of a record goes into one XOF record: no more than XOF v1 allows.
        let attributes = self.fields.iter().filter(|f| f.attribute.is_some()).count();
        if attributes > crate::xof::limits::MAX_ATTRIBUTES {
            return f(
                "fields",
                &format!(
                    "{attributes} fields produce an attribute, but an XOF v1 record holds at most {}",
                    crate::xof::limits::MAX_ATTRIBUTES
                ),
            );
        }
        for (i, fs) in self.fields.iter().enumerate() {
            if self.fields[..i].iter().any(|o| o.name == fs.name) {
                return f("field", &format!("field {} is defined twice", fs.name));
            }
            if let Some(a) = &fs.attribute {
                if !crate::label::is_valid(a) {
                    return f(
                        "field",
                        &format!(
                            "attribute name of {} must be 1-64 of A-Z a-z 0-9 . _ -",
                            fs.name
                        ),
                    );
                }
                if self.fields[..i]
                    .iter()
                    .any(|o| o.attribute.as_ref() == Some(a))
                {
                    return f("field", &format!("attribute {a} is produced twice"));
                }
            }
            match (&fs.role, &fs.attribute, &fs.dkep) {
                (Role::Data, Some(_), None) => {
                    return f("field", &format!("{}: an attribute needs a dkep", fs.name));
                }
                (Role::Data, None, Some(_)) => {
                    return f(
                        "field",
                        &format!("{}: a dkep without an attribute", fs.name),
                    );
                }
                (Role::PinBlock { pan_field }, _, _) => {
                    if fs.dkep.is_some() {
                        return f(
                            "field",
                            &format!(
                                "{}: a PIN block goes under the bureau PIN key, not a dkep",
                                fs.name
                            ),
                        );
                    }
                    if fs.attribute.is_none() {
                        return f(
                            "field",
                            &format!("{}: a PIN block needs an attribute", fs.name),
                        );
                    }
                    if fs.encrypted {
                        return f(
                            "field",
                            &format!(
                                "{}: a PIN block is already encrypted (drop encrypted=)",
                                fs.name
                            ),
                        );
                    }
                    if !self.fields.iter().any(|o| o.name == *pan_field) {
                        return f(
                            "field",
                            &format!("{}: pan field {pan_field} is not defined", fs.name),
                        );
                    }
                    if self.keys.issuer_pin.is_none() || self.keys.bureau_pin.is_none() {
                        return f(
                            "keys",
                            "a PIN block field needs issuer-pin-key and bureau-pin-key",
                        );
                    }
                }
                _ => {}
            }
            if let Some(Check::Track2 {
                pan_field,
                expiry_field,
            }) = &fs.check
            {
                for (what, other) in [("pan-field", pan_field), ("expiry-field", expiry_field)] {
                    if *other == fs.name || !self.fields.iter().any(|o| o.name == *other) {
                        return f(
                            "field",
                            &format!("{}: {what} {other} is not another defined field", fs.name),
                        );
                    }
                }
            }
            if fs
                .path
                .as_ref()
                .is_some_and(|p| p.elements.is_empty() && p.attribute.is_none())
            {
                return f("field", &format!("{}: column is empty", fs.name));
            }
            if fs.encrypted && self.layout.field_encryption.is_none() {
                return f(
                    "layout",
                    &format!(
                        "field {} is encrypted: <field-encryption> is required",
                        fs.name
                    ),
                );
            }
            if fs.encrypted && self.keys.transport.is_none() {
                return f("keys", "encrypted fields need a transport-key");
            }
            if matches!(self.layout.kind, LayoutKind::Fixed) != fs.position.is_some() {
                return f(
                    "field",
                    &format!(
                        "{}: start and length are for fixed layouts, and required there",
                        fs.name
                    ),
                );
            }
            // Two fields reading the same bytes: one value would go out twice (possibly a
            // checked field copied to an unchecked attribute).
            match fs.position {
                Some((s, l)) => {
                    if s.checked_add(l)
                        .is_none_or(|end| end - 1 > self.layout.max_record_bytes)
                    {
                        return f(
                            "field",
                            &format!("{}: start + length - 1 exceeds max-record-bytes", fs.name),
                        );
                    }
                    if let Some(o) = self.fields[..i]
                        .iter()
                        .find(|o| o.position.is_some_and(|(os, ol)| os < s + l && s < os + ol))
                    {
                        return f(
                            "field",
                            &format!("{} overlaps {} (start/length)", fs.name, o.name),
                        );
                    }
                }
                None => {
                    if let (Some(p), LayoutKind::Xml { .. }) = (&fs.path, &self.layout.kind)
                        && let Some(o) = self.fields.iter().find(|o| {
                            o.path.as_ref().is_some_and(|q| {
                                q.attribute.is_none()
                                    && q.elements.len() < p.elements.len()
                                    && p.elements.starts_with(&q.elements)
                                    && !q.elements.is_empty()
                            })
                        })
                    {
                        return f(
                            "field",
                            &format!(
                                "{} reads the text of {}, which holds element {} of field {}: a field's element holds only text",
                                o.name, o.column, fs.column, fs.name
                            ),
                        );
                    }
                    if let Some(o) = self.fields[..i].iter().find(|o| o.column == fs.column) {
                        return f(
                            "field",
                            &format!(
                                "{} and {} read the same column/element {}",
                                o.name, fs.name, fs.column
                            ),
                        );
                    }
                }
            }
        }
        let id = self
            .fields
            .iter()
            .find(|f| f.name == self.layout.record_id)
            .ok_or_else(|| bad("layout", "record-id names no field"))?;
        if id.encrypted || id.attribute.is_some() {
            return f(
                "layout",
                "the record-id field is written in clear to the XOF and reject report: it may not be encrypted or an attribute",
            );
        }
        if self.layout.file_encryption.is_some() && self.keys.transport.is_none() {
            return f("keys", "file encryption needs a transport-key");
        }
        match (&self.layout.kind, &self.layout.count) {
            (LayoutKind::Xml { .. }, Some(CountSpec::Trailer { .. })) => {
                return f(
                    "count",
                    "XML layouts give the count as element or root-attribute",
                );
            }
            (LayoutKind::Xml { record_path }, Some(CountSpec::Element(path))) => {
                if path.first().map(|r| local(r)) != record_path.first().map(|r| local(r)) {
                    return f(
                        "count",
                        "the count element's path starts at the root element, as record-path does",
                    );
                }
                if path.starts_with(record_path) {
                    return f("count", "the count element may not be inside a record");
                }
            }
            (
                LayoutKind::Delimited { .. } | LayoutKind::Fixed,
                Some(CountSpec::RootAttribute(_) | CountSpec::Element(_)),
            ) => {
                return f("count", "line layouts give the count in a trailer line");
            }
            (LayoutKind::Fixed, Some(CountSpec::Trailer { start, length, .. }))
                if *start == 0
                    || *length == 0
                    || *length > 19
                    || start.saturating_add(*length) - 1 > self.layout.max_record_bytes =>
            {
                return f(
                    "count",
                    "fixed layouts need start and length (1..19) within max-record-bytes",
                );
            }
            (LayoutKind::Delimited { .. }, Some(CountSpec::Trailer { column: 0, .. })) => {
                return f("count", "column is 1-based");
            }
            _ => {}
        }
        Ok(())
    }

    /// The index of the record-id field.
    pub fn record_id_index(&self) -> Option<usize> {
        self.field_index(&self.layout.record_id)
    }

    /// The distinct DKep labels the product uses, in order of first use.
    pub fn dkep_labels(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for f in &self.fields {
            if let Some(d) = &f.dkep
                && !v.contains(&d.as_str())
            {
                v.push(d);
            }
        }
        v
    }

    /// The index of the field named `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// The attributes of `<layout>`.
struct LayoutAttrs {
    kind: LayoutKind,
    record_id: String,
    max_record_bytes: usize,
    encoding: Encoding,
    header_marker: Option<String>,
    absent_fields: AbsentFields,
}

fn parse_layout(e: &mut Elem) -> Result<LayoutAttrs> {
    let kind = match e.req("kind")?.as_str() {
        "delimited" => LayoutKind::Delimited {
            separator: one_byte(e, "separator")?.unwrap_or(b','),
            quote: match e.get("quote") {
                None => Some(b'"'),
                Some(q) if q == "none" => None,
                Some(q) if q.len() == 1 && q.is_ascii() => Some(q.as_bytes()[0]),
                Some(_) => return Err(bad(&e.name, "quote must be one ASCII character or none")),
            },
            header: e.bool("header", true)?,
        },
        "fixed" => LayoutKind::Fixed,
        "xml" => {
            let record_path = match (e.get("record-path"), e.get("root"), e.get("record")) {
                (Some(p), None, None) => element_path(&p).ok_or_else(|| {
                    bad(&e.name, "record-path must be a slash path of element names")
                })?,
                (None, Some(root), Some(record)) => {
                    let p = vec![root, record];
                    if !p.iter().all(|n| is_xml_name(n)) {
                        return Err(bad(&e.name, "root and record must be element names"));
                    }
                    p
                }
                _ => {
                    return Err(bad(
                        &e.name,
                        "an xml layout needs record-path (or root and record, not both)",
                    ));
                }
            };
            if record_path.len() < 2 {
                return Err(bad(
                    &e.name,
                    "record-path goes from the root element to the record element (at least two names)",
                ));
            }
            LayoutKind::Xml { record_path }
        }
        _ => return Err(bad(&e.name, "kind must be delimited, fixed or xml")),
    };
    if let LayoutKind::Delimited {
        separator, quote, ..
    } = &kind
        && (Some(*separator) == *quote || matches!(separator, b'\r' | b'\n'))
    {
        return Err(bad(
            &e.name,
            "separator must differ from the quote and newline",
        ));
    }
    let record_id = e.req("record-id")?;
    let max = e.usize("max-record-bytes")?.unwrap_or(64 * 1024);
    if !(16..=1024 * 1024).contains(&max) {
        return Err(bad(&e.name, "max-record-bytes must be 16 to 1048576"));
    }
    let encoding = match e.get("encoding") {
        None => Encoding::Utf8,
        Some(_) if matches!(kind, LayoutKind::Xml { .. }) => {
            return Err(bad(
                &e.name,
                "an XML file declares its own encoding (byte order mark or XML declaration): drop encoding=",
            ));
        }
        Some(l) => Encoding::from_label(&l).ok_or_else(|| {
            bad(
                &e.name,
                "encoding must be UTF-8, UTF-16, UTF-16LE, UTF-16BE, ISO-8859-1, windows-1252 or IBM037",
            )
        })?,
    };
    let header_marker = e.get("header-marker");
    if header_marker.is_some() && kind != LayoutKind::Fixed {
        return Err(bad(&e.name, "header-marker is for fixed layouts"));
    }
    if header_marker.as_deref() == Some("") {
        return Err(bad(&e.name, "header-marker may not be empty"));
    }
    let absent_fields = match e.get("absent-fields").as_deref() {
        None | Some("error") => AbsentFields::Error,
        Some("warn") => AbsentFields::Warn,
        Some(_) => return Err(bad(&e.name, "absent-fields must be error or warn")),
    };
    Ok(LayoutAttrs {
        kind,
        record_id,
        max_record_bytes: max,
        encoding,
        header_marker,
        absent_fields,
    })
}

fn parse_field(e: &mut Elem) -> Result<FieldSpec> {
    let name = e.req("name")?;
    let column = e.get("column").unwrap_or_else(|| name.clone());
    let start = e.usize("start")?;
    let length = e.usize("length")?;
    let mut min = e.usize("min-length")?;
    let mut max = e.usize("max-length")?;
    // `start` with `length`: a fixed-width position. `length` alone: the exact length.
    let position = match (start, length) {
        (None, None) => None,
        (Some(s), Some(l)) if s >= 1 && l >= 1 => Some((s, l)),
        (None, Some(l)) => {
            if min.is_some() || max.is_some() {
                return Err(bad(
                    &e.name,
                    &format!("{name}: length (exact) or min-length/max-length, not both"),
                ));
            }
            (min, max) = (Some(l), Some(l));
            None
        }
        _ => {
            return Err(bad(
                &e.name,
                &format!("{name}: start (1-based) and length go together"),
            ));
        }
    };
    let charset = match e.get("charset").as_deref() {
        None => None,
        Some("ascii") => Some(Charset::Ascii),
        Some("latin") => Some(Charset::Latin),
        Some(_) => {
            return Err(bad(
                &e.name,
                &format!("{name}: charset must be ascii or latin"),
            ));
        }
    };
    let check = match e.get("check").as_deref() {
        None => None,
        Some("pan") => Some(Check::Pan),
        Some("yymm") => Some(Check::Expiry),
        Some("service-code") => Some(Check::ServiceCode),
        Some("name") => {
            // ISO/IEC 7813 track 1 holds 2 to 26 characters of name.
            min = min.or(Some(2));
            max = max.or(Some(26));
            Some(Check::Name {
                charset: charset.unwrap_or_default(),
            })
        }
        Some("digits") => Some(Check::Digits),
        Some("track2") => Some(Check::Track2 {
            pan_field: e.req("pan-field")?,
            expiry_field: e.req("expiry-field")?,
        }),
        Some(_) => {
            return Err(bad(
                &e.name,
                &format!("{name}: check must be pan, yymm, service-code, name, digits or track2"),
            ));
        }
    };
    if charset.is_some() && !matches!(check, Some(Check::Name { .. })) {
        return Err(bad(
            &e.name,
            &format!("{name}: charset goes with check=\"name\""),
        ));
    }
    if let (Some(a), Some(b)) = (min, max)
        && a > b
    {
        return Err(bad(
            &e.name,
            &format!("{name}: min-length is over max-length"),
        ));
    }
    let role = match e.get("role").as_deref() {
        None | Some("data") => Role::Data,
        Some("pin-block") => {
            if matches!(check, Some(Check::Track2 { .. })) {
                return Err(bad(&e.name, &format!("{name}: a PIN block is not track 2")));
            }
            Role::PinBlock {
                pan_field: e.req("pan-field")?,
            }
        }
        Some(_) => {
            return Err(bad(
                &e.name,
                &format!("{name}: role must be data or pin-block"),
            ));
        }
    };
    Ok(FieldSpec {
        required: e.bool("required", false)?,
        encrypted: e.bool("encrypted", false)?,
        attribute: e.get("attribute"),
        dkep: e.get("dkep"),
        name,
        column,
        path: None,
        position,
        min_length: min,
        max_length: max,
        check,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<product format="pmp-product-1" name="VISA" issuer="BANK">
  <keys>
    <transport-key label="TK" kcv="ABCDEF"/>
    <issuer-pin-key label="IPK" format="0"/>
    <bureau-pin-key label="BPK" format="4"/>
    <mac-key label="MAC"/>
  </keys>
  <layout kind="delimited" separator="tab" quote="none" header="false" record-id="id">
    <file-encryption cipher="tdes-cbc" iv="prefix" padding="pkcs7"/>
    <field-encryption mode="cbc" iv="zero" padding="2"/>
    <count trailer="TRL" column="3"/>
  </layout>
  <fields>
    <field name="id"/>
    <field name="pan" required="true" check="pan" encrypted="true" attribute="PAN" dkep="DK1"/>
    <field name="name" check="name" max-length="20" attribute="NAME" dkep="DK2"/>
    <field name="pin" role="pin-block" pan-field="pan" attribute="PIN_BLOCK"/>
  </fields>
</product>"#;

    #[test]
    fn parses_a_full_product() {
        let p = Product::parse(FULL).unwrap();
        assert_eq!(p.name, "VISA");
        assert_eq!(
            p.keys.bureau_pin.as_ref().unwrap().format,
            PinBlockFormat::Iso4
        );
        assert_eq!(
            p.layout.kind,
            LayoutKind::Delimited {
                separator: b'\t',
                quote: None,
                header: false
            }
        );
        assert_eq!(
            p.layout.file_encryption.as_ref().unwrap().iv,
            IvSource::Prefix
        );
        assert_eq!(
            p.fields[2].check,
            Some(Check::Name {
                charset: Charset::Ascii
            })
        );
        assert_eq!(
            (p.fields[2].min_length, p.fields[2].max_length),
            (Some(2), Some(20))
        );
        assert_eq!(p.dkep_labels(), vec!["DK1", "DK2"]);
        assert!(matches!(
            p.layout.count,
            Some(CountSpec::Trailer { column: 3, .. })
        ));
    }

    #[test]
    fn refuses_bad_products() {
        let cases = [
            (FULL.replace("pmp-product-1", "v2"), "format"),
            (FULL.replace("<keys>", "<!DOCTYPE x><keys>"), "DOCTYPE"),
            (FULL.replace("<keys>", "<?pi x?><keys>"), "processing instructions"),
            (FULL.replace("<keys>", "<keys>&amp;"), "references"),
            (FULL.replace("<keys>", "<keys><![CDATA[x]]>"), "CDATA"),
            (FULL.replace("<field name=\"id\"/>", "<field name=\"id\"><x/></field>"), "nests deeper than 3"),
            (FULL.replace("check=\"pan\"", "check=\"foo\""), "check"),
            (FULL.replace("dkep=\"DK2\"", ""), "needs a dkep"),
            (
                FULL.replace(
                    "<field-encryption mode=\"cbc\" iv=\"zero\" padding=\"2\"/>",
                    "",
                ),
                "field-encryption",
            ),
            (
                FULL.replace("record-id=\"id\"", "record-id=\"nope\""),
                "record-id",
            ),
            (FULL.replace("<mac-key label=\"MAC\"/>", ""), "mac-key"),
            (
                FULL.replace("pan-field=\"pan\"", "pan-field=\"x\""),
                "pan field",
            ),
            (
                FULL.replace(
                    "<field name=\"id\"/>",
                    "<field name=\"id\" colour=\"red\"/>",
                ),
                "unknown attribute colour",
            ),
            (
                FULL.replace("<fields>", "<fields><bogus/>"),
                "unexpected element",
            ),
            (
                FULL.replace("attribute=\"NAME\"", "attribute=\"PAN\""),
                "twice",
            ),
            (
                FULL.replace(
                    "iv=\"prefix\" padding=\"pkcs7\"",
                    "iv=\"prefix\" padding=\"none\"",
                ),
                "padding none is refused",
            ),
            (
                FULL.replace("iv=\"zero\" padding=\"2\"", "iv=\"zero\" padding=\"none\""),
                "padding none is refused",
            ),
            (
                FULL.replace("<keys>", "<keys><mac-key label=\"OTHER\"/>"),
                "more than once",
            ),
            (
                FULL.replace("<fields>", "<keys><mac-key label=\"OTHER\"/></keys><fields>"),
                "more than once",
            ),
            (
                FULL.replace(
                    "<count trailer=\"TRL\" column=\"3\"/>",
                    "<count trailer=\"TRL\" column=\"3\"/><count trailer=\"X\"/>",
                ),
                "more than once",
            ),
            (
                FULL.replace(
                    "<count trailer=\"TRL\" column=\"3\"/>",
                    "<count trailer=\"TRL\" column=\"3\"/><file-encryption cipher=\"aes-cbc\" iv=\"zero\"/>",
                ),
                "more than once",
            ),
            (
                FULL.replace(
                    "</product>",
                    "<layout kind=\"xml\" root=\"a\" record=\"b\" record-id=\"id\"/></product>",
                ),
                "more than once",
            ),
            (
                FULL.replace("<field name=\"name\"", "<field name=\"name\" column=\"pan\""),
                "same column",
            ),
        ];
        for (xml, want) in cases {
            let e = Product::parse(&xml).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        // XML layouts: record paths, field paths, the count element.
        let xml = |layout: &str, fields: &str| {
            Product::parse(&format!(
                r#"<product format="pmp-product-1" name="P" issuer="B"><keys><mac-key label="M"/></keys>
                {layout}<fields><field name="id" column="@UID"/>{fields}</fields></product>"#
            ))
        };
        let nested = r#"<layout kind="xml" record-path="CARDGEN/PRODUCT/CARD" record-id="id"><count element="CARDGEN/CARDSUM/NO_OF_CARDS"/></layout>"#;
        let p = xml(
            nested,
            r#"<field name="pan" column="CARD/PAN"/><field name="t" column="CARD/@type"/><field name="a" column="c:X/Y/Z"/>"#,
        )
        .unwrap();
        assert_eq!(
            p.layout.kind,
            LayoutKind::Xml {
                record_path: vec!["CARDGEN".into(), "PRODUCT".into(), "CARD".into()]
            }
        );
        assert_eq!(
            p.layout.count,
            Some(CountSpec::Element(vec![
                "CARDGEN".into(),
                "CARDSUM".into(),
                "NO_OF_CARDS".into()
            ]))
        );
        let path = |i: usize| p.fields[i].path.clone().unwrap();
        assert_eq!(
            path(0),
            FieldPath {
                elements: vec![],
                attribute: Some("UID".into())
            }
        );
        assert_eq!(path(1).elements, ["CARD", "PAN"]);
        assert_eq!(path(2).attribute.as_deref(), Some("type"));
        assert_eq!(path(3).to_string(), "c:X/Y/Z");
        let old = xml(
            r#"<layout kind="xml" root="cards" record="card" record-id="id"/>"#,
            "",
        )
        .unwrap();
        assert_eq!(
            old.layout.kind,
            LayoutKind::Xml {
                record_path: vec!["cards".into(), "card".into()]
            }
        );
        for (layout, fields, want) in [
            (
                r#"<layout kind="xml" record-path="CARD" record-id="id"/>"#,
                "",
                "at least two names",
            ),
            (
                r#"<layout kind="xml" record-path="A//B" record-id="id"/>"#,
                "",
                "record-path must be",
            ),
            (
                r#"<layout kind="xml" record-path="A/B" root="A" record="B" record-id="id"/>"#,
                "",
                "not both",
            ),
            (
                r#"<layout kind="xml" record-path="A/B" record-id="id" encoding="ISO-8859-1"/>"#,
                "",
                "declares its own encoding",
            ),
            (
                r#"<layout kind="xml" record-path="A/B" record-id="id"><count element="X/N"/></layout>"#,
                "",
                "starts at the root",
            ),
            (
                r#"<layout kind="xml" record-path="A/B" record-id="id"><count element="A/B/N"/></layout>"#,
                "",
                "inside a record",
            ),
            (
                r#"<layout kind="xml" record-path="A/B" record-id="id"><count trailer="T"/></layout>"#,
                "",
                "element or root-attribute",
            ),
            (nested, r#"<field name="x" column="CARD/"/>"#, "not a path"),
            (nested, r#"<field name="x" column="CARD/@"/>"#, "not a path"),
            (nested, r#"<field name="x" column="A B"/>"#, "not a path"),
            (nested, r#"<field name="x" column="@a/b"/>"#, "not a path"),
            (
                nested,
                r#"<field name="x" column="CARD"/><field name="y" column="CARD/PAN"/>"#,
                "holds only text",
            ),
            (
                nested,
                r#"<field name="x" column="CARD/PAN"/><field name="y" column="CARD/PAN"/>"#,
                "same column",
            ),
            (
                nested,
                r#"<field name="x" check="name" charset="greek"/>"#,
                "charset must be",
            ),
            (
                nested,
                r#"<field name="x" charset="latin"/>"#,
                "goes with check",
            ),
            (
                nested,
                r#"<field name="x" length="3" max-length="4"/>"#,
                "not both",
            ),
            (
                nested,
                r#"<field name="x" min-length="5" max-length="4"/>"#,
                "over max-length",
            ),
            (
                nested,
                r#"<field name="x" check="track2" pan-field="id"/>"#,
                "expiry-field is required",
            ),
        ] {
            let e = xml(layout, fields).unwrap_err().to_string();
            assert!(e.contains(want), "{layout} {fields}: {e}");
        }
        let delimited = |attrs: &str| {
            Product::parse(&format!(
                r#"<product format="pmp-product-1" name="P" issuer="B"><keys><mac-key label="M"/></keys>
                <layout kind="delimited" record-id="id" {attrs}/><fields><field name="id"/></fields></product>"#
            ))
        };
        assert_eq!(
            delimited(r#"encoding="latin1""#).unwrap().layout.encoding,
            Encoding::Iso8859_1
        );
        assert_eq!(
            delimited(r#"absent-fields="warn""#)
                .unwrap()
                .layout
                .absent_fields,
            AbsentFields::Warn
        );
        for (attrs, want) in [
            (r#"encoding="EBCDIC-500""#, "encoding must be"),
            (r#"header-marker="HDR""#, "for fixed layouts"),
            (r#"absent-fields="ignore""#, "error or warn"),
        ] {
            let e = delimited(attrs).unwrap_err().to_string();
            assert!(e.contains(want), "{attrs}: {e}");
        }
        // Fixed layouts: positions may not overlap, nor pass max-record-bytes (so that
        // start + length cannot overflow).
        let fixed = |fields: &str, count: &str| {
            Product::parse(&format!(
                r#"<product format="pmp-product-1" name="P" issuer="B"><keys><mac-key label="M"/></keys>
                <layout kind="fixed" record-id="id" max-record-bytes="100">{count}</layout>
                <fields>{fields}</fields></product>"#
            ))
        };
        let id = r#"<field name="id" start="1" length="4"/>"#;
        assert!(
            fixed(
                &format!(r#"{id}<field name="a" start="5" length="96"/>"#),
                ""
            )
            .is_ok()
        );
        for (fields, count, want) in [
            (r#"<field name="a" start="4" length="2"/>"#, "", "overlaps"),
            (r#"<field name="a" start="1" length="4"/>"#, "", "overlaps"),
            (
                r#"<field name="a" start="5" length="97"/>"#,
                "",
                "max-record-bytes",
            ),
            (
                r#"<field name="a" start="18446744073709551615" length="18446744073709551615"/>"#,
                "",
                "max-record-bytes",
            ),
            (
                "",
                r#"<count trailer="T" start="18446744073709551615" length="5"/>"#,
                "max-record-bytes",
            ),
        ] {
            let e = fixed(&format!("{id}{fields}"), count)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{fields}{count}: {e}");
        }
    }
}
