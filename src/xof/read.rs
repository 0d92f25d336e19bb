//! The XOF pull reader: a strict, schema-driven parser on `quick-xml` events, one record
//! at a time, over buffers it owns and clears every iteration.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::BufRead;

use quick_xml::events::BytesStart;

use crate::hsm::{Hsm, KeyHandle};
use crate::keyblock::KeyUsage;
use crate::xml::{self, Content, XmlError, short_name as show};
use crate::{Algorithm, Error, Kcv, MacAlgorithm, Padding, Result};

use super::canon::{self, Mac16};
use super::limits::{
    MAX_ATTRIBUTES, MAX_DEPTH, MAX_EVENT_BYTES, MAX_KEYS, MAX_RECORD_BYTES, MAX_XML_ATTRIBUTES,
};
use super::{
    Attribute, Header, Inspection, KeyRef, Record, VERSION, check_attribute, check_header,
    check_mac_key_policy, check_text, parse_mode, parse_padding,
};

/// Distinct attribute names [`inspect`] counts before it gives up.
const MAX_INSPECT_NAMES: usize = 4096;

/// The strict XML reader under the XOF rules: one event at most [`MAX_EVENT_BYTES`], depth
/// at most [`MAX_DEPTH`], no DOCTYPE, comment, processing instruction, CDATA or reference
/// in text.
pub(crate) type Xml<R> = xml::StrictReader<R>;

/// The XOF's XML rules; the production-file reader reads under them too.
pub(crate) const RULES: xml::Rules = xml::Rules {
    event_bytes: MAX_EVENT_BYTES,
    max_depth: MAX_DEPTH,
    comments: false,
    processing_instructions: false,
    text_references: false,
    cdata: false,
};

/// Where the parser is, for error messages.
pub(crate) struct Ctx {
    pub(crate) name: String,
    pub(crate) line: u64,
    pub(crate) record: Option<u64>,
    /// What `record` counts in messages: `record` here, `card` in a production file.
    pub(crate) unit: &'static str,
}

impl Ctx {
    pub(crate) fn what_at(&self, line: u64) -> String {
        match self.record {
            Some(seq) => format!("{} line {line} ({} {seq})", self.name, self.unit),
            None => format!("{} line {line}", self.name),
        }
    }

    pub(crate) fn err(&self, reason: impl Into<String>) -> Error {
        Error::Integrity {
            what: self.what_at(self.line),
            reason: reason.into(),
        }
    }
}

/// Reads one event into `buf` (cleared first) with a fresh byte budget.
pub(crate) fn read_event<'b, R: BufRead>(
    xml: &mut Xml<R>,
    buf: &'b mut Vec<u8>,
    ctx: &mut Ctx,
) -> Result<Content<'b>> {
    ctx.line = xml.line();
    xml.next(buf).map_err(|e| match e {
        XmlError::TooLarge { .. } => ctx.err(format!(
            "an element or text node is larger than {MAX_EVENT_BYTES} bytes"
        )),
        XmlError::Refused(r) => ctx.err(r.to_string()),
        XmlError::Io(source) => Error::Io {
            path: ctx.name.clone(),
            source,
        },
        XmlError::Malformed {
            error: quick_xml::Error::Encoding(_),
            ..
        } => ctx.err("not valid UTF-8"),
        XmlError::Malformed {
            truncated: true, ..
        } => ctx.err("the file ends inside an element (truncated)"),
        XmlError::Malformed { error, .. } => ctx.err(format!("malformed XML: {error}")),
    })
}

pub(crate) fn is_ws(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The error for an event that has no place here (what [`RULES`] refuse never gets here).
pub(crate) fn unexpected(ev: &Content<'_>, ctx: &Ctx, expected: &str) -> Error {
    match &ev {
        Content::Decl(_) => ctx.err("an XML declaration is allowed only at the start"),
        Content::Text(_) => ctx.err(format!("unexpected text (expected {expected})")),
        // CData: refused by RULES before it gets here.
        Content::Char(_) | Content::CData(_) | Content::Skipped => {
            ctx.err(format!("unexpected content (expected {expected})"))
        }
        Content::Start(e) | Content::Empty(e) => ctx.err(format!(
            "unexpected element <{}> (expected {expected})",
            show(e.name().as_ref())
        )),
        Content::End(e) => ctx.err(format!(
            "unexpected end tag </{}> (expected {expected})",
            show(e.name().as_ref())
        )),
        Content::Eof => ctx.err(format!(
            "the file ends before the trailer (truncated; expected {expected})"
        )),
    }
}

/// Calls `f(name, value)` for each XML attribute of `e` (values unescaped: predefined
/// entities and character references only). `f` returns `false` for an unknown name.
pub(crate) fn each_attr<'a>(
    e: &'a BytesStart<'_>,
    ctx: &Ctx,
    mut f: impl FnMut(&str, Cow<'a, str>) -> Result<bool>,
) -> Result<()> {
    let elem = show(e.name().as_ref());
    if e.attributes().with_checks(false).count() > MAX_XML_ATTRIBUTES {
        return Err(ctx.err(format!(
            "<{elem}> has more than {MAX_XML_ATTRIBUTES} attributes"
        )));
    }
    for a in e.attributes() {
        let a = a.map_err(|x| ctx.err(format!("malformed attribute on <{elem}>: {x}")))?;
        let key = a.key.as_ref();
        let v = xml::attribute_value(&a)
            .map_err(|x| ctx.err(format!("attribute {} on <{elem}>: {x}", show(key))))?;
        if !f(key, v)? {
            return Err(ctx.err(format!("unknown attribute '{}' on <{elem}>", show(key))));
        }
    }
    Ok(())
}

pub(crate) fn set(dst: &mut String, v: &str) {
    dst.clear();
    dst.push_str(v);
}

pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn parse_mac(s: &str) -> Option<Mac16> {
    let mut m = [0u8; 16];
    hex::decode_to_slice(s, &mut m).ok().map(|()| m)
}

pub(crate) fn decode_hex_into(s: &[u8], out: &mut Vec<u8>) -> bool {
    if !s.len().is_multiple_of(2) {
        return false;
    }
    out.clear();
    out.resize(s.len() / 2, 0);
    hex::decode_to_slice(s, out).is_ok()
}

pub(crate) fn name_is(e: &BytesStart<'_>, n: &str) -> bool {
    e.name().as_ref() == n
}

/// What the parser found after a record or at the trailer.
pub(crate) enum Item {
    /// A record, in [`Parser::record`], with its MAC in [`Parser::record_mac`].
    Record,
    /// The trailer.
    Trailer { count: u64, mac: Mac16 },
}

/// The structural parser shared by [`Reader`] and [`inspect`]: no cryptography.
pub(crate) struct Parser<R> {
    xml: Xml<R>,
    buf: Vec<u8>,
    hex: Vec<u8>,
    ctx: Ctx,
    header: Header,
    header_mac: Mac16,
    header_line: u64,
    record: Record,
    record_mac: Mac16,
    record_line: u64,
    pool: Vec<Attribute>,
}

impl<R: BufRead> Parser<R> {
    fn new(input: R, name: &str) -> Self {
        let xml = Xml::new(input, RULES);
        Self {
            xml,
            buf: Vec::with_capacity(4096),
            hex: Vec::with_capacity(256),
            ctx: Ctx {
                name: name.to_string(),
                line: 1,
                record: None,
                unit: "record",
            },
            header: Header {
                order_id: String::new(),
                issuer: String::new(),
                product: String::new(),
                created: String::new(),
                keys: Vec::new(),
                mac_key: String::new(),
                test: false,
            },
            header_mac: [0; 16],
            header_line: 1,
            record: Record::default(),
            record_mac: [0; 16],
            record_line: 1,
            pool: Vec::new(),
        }
    }

    /// Reads the prolog, the root element and the header, and checks the header.
    fn read_header(&mut self) -> Result<()> {
        // Prolog: an optional XML declaration, then the root element.
        let mut first = true;
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Content::Decl(d) if first => {
                    let v = d
                        .version()
                        .map_err(|e| self.ctx.err(format!("XML declaration: {e}")))?;
                    if v != "1.0" {
                        return Err(self.ctx.err("the XML version must be 1.0"));
                    }
                    if let Some(enc) = d.encoding() {
                        let enc = enc.map_err(|e| self.ctx.err(format!("XML declaration: {e}")))?;
                        if !enc.eq_ignore_ascii_case("UTF-8") {
                            return Err(self.ctx.err("the encoding must be UTF-8"));
                        }
                    }
                }
                Content::Text(t) if is_ws(t) => {}
                Content::Start(e) if name_is(e, "xof") => {
                    let mut version = None;
                    each_attr(e, &self.ctx, |k, v| {
                        Ok(k == "version" && {
                            version = Some(v.into_owned());
                            true
                        })
                    })?;
                    match version.as_deref() {
                        None => return Err(self.ctx.err("<xof> has no version attribute")),
                        Some(VERSION) => break,
                        Some(v) => {
                            return Err(Error::Unsupported(format!(
                                "XOF version {:?} in {}: this reader reads version {VERSION}",
                                v.chars().take(16).collect::<String>(),
                                self.ctx.what_at(self.ctx.line)
                            )));
                        }
                    }
                }
                ev => return Err(unexpected(ev, &self.ctx, "<xof version=\"1\">")),
            }
            first = false;
        }

        // <header ...>
        let mut mac = None;
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Content::Text(t) if is_ws(t) => {}
                Content::Start(e) if name_is(e, "header") => {
                    self.header_line = self.ctx.line;
                    let h = &mut self.header;
                    let mut seen = 0u8;
                    each_attr(e, &self.ctx, |k, v| {
                        let (bit, dst) = match k {
                            "order-id" => (1, &mut h.order_id),
                            "issuer" => (2, &mut h.issuer),
                            "product" => (4, &mut h.product),
                            "created" => (8, &mut h.created),
                            "mac-key" => (16, &mut h.mac_key),
                            "mac" => {
                                mac = Some(parse_mac(&v).ok_or_else(|| {
                                    self.ctx.err("header mac must be 32 hex digits")
                                })?);
                                seen |= 32;
                                return Ok(true);
                            }
                            "test" => {
                                if v != "true" {
                                    return Err(self.ctx.err(
                                        "header test must be \"true\" when present (omit it for production)",
                                    ));
                                }
                                h.test = true;
                                return Ok(true);
                            }
                            _ => return Ok(false),
                        };
                        set(dst, &v);
                        seen |= bit;
                        Ok(true)
                    })?;
                    if seen != 63 {
                        return Err(self.ctx.err(
                            "<header> needs order-id, issuer, product, created, mac-key and mac",
                        ));
                    }
                    break;
                }
                ev => return Err(unexpected(ev, &self.ctx, "<header>")),
            }
        }
        self.header_mac = mac.unwrap_or_default();

        // <key .../> ... </header>
        let mut in_key = false;
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Content::Text(t) if is_ws(t) => {}
                Content::End(e) if in_key && e.name().as_ref() == "key" => in_key = false,
                Content::Start(e) | Content::Empty(e) if !in_key && name_is(e, "key") => {
                    in_key = matches!(ev, Content::Start(_));
                    if self.header.keys.len() >= MAX_KEYS {
                        return Err(self
                            .ctx
                            .err(format!("more than {MAX_KEYS} keys in the header")));
                    }
                    let (mut label, mut usage, mut alg, mut kcv) = (None, None, None, None);
                    let ctx = &self.ctx;
                    each_attr(e, ctx, |k, v| {
                        match k {
                            "label" => label = Some(v.into_owned()),
                            "usage" => {
                                usage = Some(v.parse::<KeyUsage>().map_err(|_| {
                                    ctx.err("key usage must be a TR-31 code (D0, M6, ...)")
                                })?)
                            }
                            "algorithm" => {
                                alg = Some(match &*v {
                                    "AES" => Algorithm::Aes,
                                    "TDES" => Algorithm::Tdes,
                                    _ => return Err(ctx.err("key algorithm must be AES or TDES")),
                                })
                            }
                            "kcv" => {
                                kcv = Some(Kcv::from_hex(&v).map_err(|_| {
                                    ctx.err("key kcv must be 3 (TDES) or 5 (AES) bytes in hex")
                                })?)
                            }
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    match (label, usage, alg, kcv) {
                        (Some(label), Some(usage), Some(algorithm), Some(kcv)) => {
                            self.header.keys.push(KeyRef {
                                label,
                                usage,
                                algorithm,
                                kcv,
                            })
                        }
                        _ => {
                            return Err(self
                                .ctx
                                .err("<key> needs label, usage, algorithm and kcv"));
                        }
                    }
                }
                Content::End(e) if !in_key && e.name().as_ref() == "header" => break,
                ev => return Err(unexpected(ev, &self.ctx, "<key/> or </header>")),
            }
        }
        check_header(&self.header).map_err(|r| Error::Integrity {
            what: self.ctx.what_at(self.header_line),
            reason: r,
        })
    }

    /// Reads the next record or the trailer.
    fn next_item(&mut self) -> Result<Item> {
        self.ctx.record = None;
        let record_start;
        let empty;
        loop {
            let before = self.xml.position();
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Content::Text(t) if is_ws(t) => {}
                Content::Start(e) | Content::Empty(e) if name_is(e, "trailer") => {
                    let is_start = matches!(ev, Content::Start(_));
                    let (mut count, mut mac) = (None, None);
                    let ctx = &self.ctx;
                    each_attr(e, ctx, |k, v| {
                        match k {
                            "records" => {
                                count = Some(parse_u64(&v).ok_or_else(|| {
                                    ctx.err("trailer records must be a decimal count")
                                })?)
                            }
                            "mac" => {
                                mac =
                                    Some(parse_mac(&v).ok_or_else(|| {
                                        ctx.err("trailer mac must be 32 hex digits")
                                    })?)
                            }
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    let (Some(count), Some(mac)) = (count, mac) else {
                        return Err(self.ctx.err("<trailer> needs records and mac"));
                    };
                    if is_start {
                        self.expect_end("trailer")?;
                    }
                    return Ok(Item::Trailer { count, mac });
                }
                Content::Start(e) | Content::Empty(e) if name_is(e, "record") => {
                    empty = matches!(ev, Content::Empty(_));
                    record_start = before;
                    self.record_line = self.ctx.line;
                    let r = &mut self.record;
                    let (mut seq, mut issuer, mut mac) = (None, false, None);
                    let ctx = &self.ctx;
                    each_attr(e, ctx, |k, v| {
                        match k {
                            "seq" => {
                                seq = Some(parse_u64(&v).ok_or_else(|| {
                                    ctx.err("record seq must be a decimal number")
                                })?)
                            }
                            "issuer-id" => {
                                set(&mut r.issuer_id, &v);
                                issuer = true;
                            }
                            "mac" => {
                                mac =
                                    Some(parse_mac(&v).ok_or_else(|| {
                                        ctx.err("record mac must be 32 hex digits")
                                    })?)
                            }
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    let (Some(seq), true, Some(mac)) = (seq, issuer, mac) else {
                        return Err(self.ctx.err("<record> needs seq, issuer-id and mac"));
                    };
                    self.record.seq = seq;
                    self.record_mac = mac;
                    self.ctx.record = Some(seq);
                    check_text(&self.record.issuer_id)
                        .map_err(|e| self.ctx.err(format!("issuer-id {e}")))?;
                    break;
                }
                ev => return Err(unexpected(ev, &self.ctx, "<record> or <trailer>")),
            }
        }

        // Recycle the previous record's attributes (their buffers are reused).
        self.pool.append(&mut self.record.attributes);
        if empty {
            return Ok(Item::Record);
        }
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            if self.xml.position() - record_start > MAX_RECORD_BYTES {
                return Err(Error::Integrity {
                    what: self.ctx.what_at(self.record_line),
                    reason: format!("record larger than {MAX_RECORD_BYTES} bytes"),
                });
            }
            match &ev {
                Content::Text(t) if is_ws(t) => {}
                Content::End(e) if e.name().as_ref() == "record" => break,
                Content::Start(e) | Content::Empty(e) if name_is(e, "attr") => {
                    let is_start = matches!(ev, Content::Start(_));
                    if self.record.attributes.len() >= MAX_ATTRIBUTES {
                        return Err(self
                            .ctx
                            .err(format!("more than {MAX_ATTRIBUTES} attributes in a record")));
                    }
                    let mut a = self.pool.pop().unwrap_or_else(|| Attribute {
                        name: String::new(),
                        key: String::new(),
                        mode: crate::Mode::Ecb,
                        iv: None,
                        padding: Padding::None,
                        ciphertext: Vec::new(),
                    });
                    let mut iv_buf = a.iv.take().unwrap_or_default();
                    let (mut has_iv, mut seen) = (false, 0u8);
                    let ctx = &self.ctx;
                    each_attr(e, ctx, |k, v| {
                        match k {
                            "name" => {
                                set(&mut a.name, &v);
                                seen |= 1;
                            }
                            "key" => {
                                set(&mut a.key, &v);
                                seen |= 2;
                            }
                            "mode" => {
                                a.mode = parse_mode(&v)
                                    .ok_or_else(|| ctx.err("attr mode must be ECB or CBC"))?;
                                seen |= 4;
                            }
                            "padding" => {
                                a.padding = parse_padding(&v).ok_or_else(|| {
                                    ctx.err("attr padding must be none, 2 or pkcs7")
                                })?;
                                seen |= 8;
                            }
                            "iv" => {
                                if !decode_hex_into(v.as_bytes(), &mut iv_buf) {
                                    return Err(ctx.err("attr iv must be hex"));
                                }
                                has_iv = true;
                            }
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    if seen != 15 {
                        return Err(self.ctx.err("<attr> needs name, key, mode and padding"));
                    }
                    a.iv = has_iv.then_some(iv_buf);
                    let line = self.ctx.line;
                    if is_start {
                        self.read_hex_text()?;
                    } else {
                        self.hex.clear();
                    }
                    let hex = self.hex.trim_ascii();
                    if !decode_hex_into(hex, &mut a.ciphertext) {
                        return Err(self.ctx.err("attr ciphertext must be hex"));
                    }
                    self.ctx.line = line;
                    check_attribute(&self.header, &a.view()).map_err(|r| self.ctx.err(r))?;
                    if self.record.attributes.iter().any(|o| o.name == a.name) {
                        return Err(self.ctx.err(format!("attribute {} appears twice", a.name)));
                    }
                    self.record.attributes.push(a);
                }
                ev => return Err(unexpected(ev, &self.ctx, "<attr> or </record>")),
            }
        }
        Ok(Item::Record)
    }

    /// Collects the text of an `attr` element into `self.hex`, up to `</attr>`.
    fn read_hex_text(&mut self) -> Result<()> {
        self.hex.clear();
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Content::Text(t) => {
                    if self.hex.len() + t.len() > MAX_EVENT_BYTES {
                        return Err(self.ctx.err("attr ciphertext too long"));
                    }
                    self.hex.extend_from_slice(t.as_bytes());
                }
                Content::End(e) if e.name().as_ref() == "attr" => return Ok(()),
                ev => return Err(unexpected(ev, &self.ctx, "hex text or </attr>")),
            }
        }
    }

    /// Expects only whitespace, then `</name>`.
    fn expect_end(&mut self, name: &str) -> Result<()> {
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Content::Text(t) if is_ws(t) => {}
                Content::End(e) if e.name().as_ref() == name => return Ok(()),
                ev => return Err(unexpected(ev, &self.ctx, &format!("</{name}>"))),
            }
        }
    }

    /// After the trailer: `</xof>`, then nothing but whitespace.
    fn finish_document(&mut self) -> Result<()> {
        self.ctx.record = None;
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Content::Text(t) if is_ws(t) => {}
                Content::End(e) if e.name().as_ref() == "xof" => break,
                Content::Eof => {
                    return Err(self.ctx.err("the file ends before </xof> (truncated)"));
                }
                _ => return Err(self.ctx.err("content after the trailer")),
            }
        }
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Content::Text(t) if is_ws(t) => {}
                Content::Eof => return Ok(()),
                _ => return Err(self.ctx.err("content after the end of the document")),
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Records,
    Done,
    Failed,
}

/// Reads and verifies an XOF file, one record at a time.
///
/// [`new`](Reader::new) reads the header, finds the MAC key by label through
/// [`Hsm::find_key`], checks that it may MAC an XOF (AES, usage M6, not exportable: an
/// exportable key such as the transport key MTK is known outside the bureau, so its holder
/// could forge a file), checks its KCV against the key list and verifies the header MAC.
/// The label comes from the file: a caller that knows which key must MAC it passes it to
/// [`with_mac_key`](Reader::with_mac_key), and a file naming another key is refused. [`next_record`](Reader::next_record) verifies each record's
/// MAC (chained to the previous one) through [`Hsm::verify_mac`] (key mode C or V), and at
/// the trailer the record count and the trailer MAC; it returns `None` only after a
/// verified trailer and the end of the document. After an error the reader stays failed.
///
/// A record handed out has passed its MAC, but the file is whole only once `None` is
/// returned: a consumer that must not act on a partial file stages its output until then.
pub struct Reader<'h, R: BufRead> {
    p: Parser<R>,
    hsm: &'h dyn Hsm,
    key: KeyHandle,
    chain: Mac16,
    count: u64,
    mac_in: Vec<u8>,
    state: State,
}

impl<R: BufRead> core::fmt::Debug for Reader<'_, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reader")
            .field("source", &self.p.ctx.name)
            .field("order_id", &self.p.header.order_id)
            .field("records", &self.count)
            .finish_non_exhaustive()
    }
}

fn mac_check(r: Result<()>, what: impl FnOnce() -> String, reason: &str) -> Result<()> {
    match r {
        Err(Error::Crypto) => Err(Error::Integrity {
            what: what(),
            reason: reason.to_string(),
        }),
        other => other,
    }
}

/// What a [`Reader`] accepts beyond its defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions<'a> {
    /// The label of the key that must MAC the file: a header naming any other key is
    /// refused with [`Error::Policy`].
    pub mac_key: Option<&'a str>,
    /// Accept a TEST-marked order (`test="true"`) on a production HSM (refused by default:
    /// an order made under a TEST LMK must not reach production by mistake).
    pub allow_test: bool,
}

impl<'h, R: BufRead> Reader<'h, R> {
    /// Reads and verifies the header of `input`; errors name the source `"XOF input"`.
    pub fn new(input: R, hsm: &'h dyn Hsm) -> Result<Self> {
        Self::named(input, hsm, "XOF input")
    }

    /// As [`new`](Reader::new), with errors naming `name` (a file name, say).
    pub fn named(input: R, hsm: &'h dyn Hsm, name: &str) -> Result<Self> {
        Self::open(input, hsm, name, None)
    }

    /// As [`new`](Reader::new), and the file must be MACed under the key labelled
    /// `mac_key`: a header naming any other key is refused with [`Error::Policy`].
    pub fn with_mac_key(input: R, hsm: &'h dyn Hsm, mac_key: &str) -> Result<Self> {
        Self::open(input, hsm, "XOF input", Some(mac_key))
    }

    /// Reads and verifies the header: errors name the source `name`; with `mac_key`, the
    /// header must name that MAC key. A TEST-marked order on a production HSM is refused.
    pub fn open(input: R, hsm: &'h dyn Hsm, name: &str, mac_key: Option<&str>) -> Result<Self> {
        Self::open_with(
            input,
            hsm,
            name,
            &ReadOptions {
                mac_key,
                allow_test: false,
            },
        )
    }

    /// As [`open`](Reader::open), with every option: the expected MAC key, and whether a
    /// TEST-marked order is accepted on a production HSM.
    pub fn open_with(
        input: R,
        hsm: &'h dyn Hsm,
        name: &str,
        opts: &ReadOptions<'_>,
    ) -> Result<Self> {
        let mac_key = opts.mac_key;
        let mut p = Parser::new(input, name);
        p.read_header()?;
        let h = &p.header;
        if let Some(want) = mac_key
            && h.mac_key != want
        {
            return Err(Error::Policy(format!(
                "{name} names '{}' as its MAC key, but its XOF MAC key must be '{want}'",
                h.mac_key
            )));
        }
        let key = hsm.find_key(&h.mac_key).map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!(
                "XOF MAC key '{}' named by {} is not in the HSM",
                h.mac_key, name
            )),
            e => e,
        })?;
        let info = hsm.key_info(&key)?;
        let listed = h.key(&h.mac_key).expect("checked by check_header");
        check_mac_key_policy(hsm, &info)?;
        listed.kcv.check(
            &info.kcv,
            format!("XOF MAC key '{}' of {}", h.mac_key, name),
        )?;
        let mut mac_in = Vec::with_capacity(1024);
        canon::header_input(&mut mac_in, VERSION, h);
        mac_check(
            hsm.verify_mac(
                &key,
                MacAlgorithm::CmacAes,
                Padding::None,
                &mac_in,
                &p.header_mac,
            ),
            || format!("{} line {} (header)", name, p.header_line),
            "header MAC does not verify",
        )?;
        if h.test && !opts.allow_test && !hsm.capabilities().is_test() {
            return Err(Error::Policy(format!(
                "{name} is a TEST order (test=\"true\": made under a TEST LMK) and this HSM is a production one; TEST orders are for development and tests only"
            )));
        }
        let chain = p.header_mac;
        Ok(Self {
            p,
            hsm,
            key,
            chain,
            count: 0,
            mac_in,
            state: State::Records,
        })
    }

    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.p.header
    }

    /// Records verified so far (the total once `next_record` has returned `None`).
    pub fn records(&self) -> u64 {
        self.count
    }

    /// The next verified record, or `None` after the verified trailer. The record is
    /// borrowed from the reader's buffers and overwritten by the next call.
    pub fn next_record(&mut self) -> Result<Option<&Record>> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => {
                return Err(Error::Integrity {
                    what: self.p.ctx.name.clone(),
                    reason: "reading stopped at an earlier error".into(),
                });
            }
            State::Records => {}
        }
        match self.step() {
            Ok(true) => Ok(Some(&self.p.record)),
            Ok(false) => {
                self.state = State::Done;
                Ok(None)
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    /// One item: `true` for a verified record, `false` for the verified end.
    fn step(&mut self) -> Result<bool> {
        let p = &mut self.p;
        match p.next_item()? {
            Item::Record => {
                let what = || p.ctx.what_at(p.record_line);
                let want = self.count + 1;
                if p.record.seq != want {
                    return Err(Error::Integrity {
                        what: what(),
                        reason: format!(
                            "record seq {} where {want} was expected (a record is missing, duplicated or out of order)",
                            p.record.seq
                        ),
                    });
                }
                canon::record_input(
                    &mut self.mac_in,
                    &p.header_mac,
                    &self.chain,
                    p.record.seq,
                    &p.record.issuer_id,
                    &p.record.attributes,
                );
                mac_check(
                    self.hsm.verify_mac(
                        &self.key,
                        MacAlgorithm::CmacAes,
                        Padding::None,
                        &self.mac_in,
                        &p.record_mac,
                    ),
                    what,
                    "record MAC does not verify",
                )?;
                self.chain = p.record_mac;
                self.count = want;
                Ok(true)
            }
            Item::Trailer { count, mac } => {
                let what = || format!("{} line {} (trailer)", p.ctx.name, p.ctx.line);
                if count != self.count {
                    return Err(Error::Integrity {
                        what: what(),
                        reason: format!(
                            "the trailer declares {count} records but {} were read (records lost or added)",
                            self.count
                        ),
                    });
                }
                canon::trailer_input(&mut self.mac_in, &p.header_mac, &self.chain, count);
                mac_check(
                    self.hsm.verify_mac(
                        &self.key,
                        MacAlgorithm::CmacAes,
                        Padding::None,
                        &self.mac_in,
                        &mac,
                    ),
                    what,
                    "trailer MAC does not verify",
                )?;
                p.finish_document()?;
                Ok(false)
            }
        }
    }
}

/// Structure, limits and counts of an XOF stream; no cryptography.
pub(crate) fn inspect<R: BufRead>(input: R, name: &str) -> Result<Inspection> {
    let mut p = Parser::new(input, name);
    p.read_header()?;
    let mut records = 0u64;
    let mut attributes = 0u64;
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_key: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        match p.next_item()? {
            Item::Record => {
                records += 1;
                for a in &p.record.attributes {
                    attributes += 1;
                    if let Some(n) = by_name.get_mut(&a.name) {
                        *n += 1;
                    } else if by_name.len() < MAX_INSPECT_NAMES {
                        by_name.insert(a.name.clone(), 1);
                    } else {
                        return Err(p.ctx.err(format!(
                            "more than {MAX_INSPECT_NAMES} distinct attribute names"
                        )));
                    }
                    // Keys are bounded by the key list.
                    match by_key.get_mut(&a.key) {
                        Some(n) => *n += 1,
                        None => {
                            by_key.insert(a.key.clone(), 1);
                        }
                    }
                }
            }
            Item::Trailer { count, .. } => {
                p.finish_document()?;
                return Ok(Inspection {
                    version: VERSION.to_string(),
                    header: p.header,
                    records,
                    trailer_records: count,
                    attributes,
                    attributes_by_name: by_name,
                    attributes_by_key: by_key,
                });
            }
        }
    }
}
