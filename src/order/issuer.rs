//! Issuer layouts: streaming readers for delimited, fixed-width and XML card files.
//!
//! Every reader pulls one record at a time ([`RecordSource::next_record`]) from a
//! [`WipingReader`] — a `BufRead` whose buffer is wiped before each refill and on drop —
//! into a [`RawRecord`] whose single data buffer is zeroized on drop. Memory depends on the
//! longest record, never on the size of the file.
//!
//! Why not the `csv` crate: it keeps copies of field bytes in internal buffers we cannot
//! wipe, and the clear text of an issuer file (PANs, names, track data) must not linger in
//! freed memory. The delimited reader here is a small RFC 4180-style reader (configurable
//! separator and quote, a doubled quote inside a quoted field, quoted fields may span
//! lines, CRLF or LF) over buffers we own and wipe.
//!
//! Structural problems of one record (wrong number of fields, a malformed quote within a
//! line) do not stop the file: the record carries a [`Reason`] and is rejected. Problems
//! that make the rest of the file unreadable (XML that is not well-formed, a header row
//! that lacks a required column, data after the trailer, a quoted field still open at the
//! end of the file) stop it with an error, and so does anything longer than
//! `max-record-bytes` (a line, an XML record, or any one XML event: text, tag, comment,
//! whitespace), as soon as the limit is passed and before it is buffered.
//!
//! ```
//! use pmp_core::order::issuer::{self, RecordSource};
//! use pmp_core::order::product::Product;
//! let p = Product::parse(r#"<product format="pmp-product-1" name="P" issuer="B">
//!   <keys><mac-key label="M"/></keys>
//!   <layout kind="delimited" record-id="id"><count trailer="T" column="2"/></layout>
//!   <fields><field name="id"/><field name="name"/></fields></product>"#).unwrap();
//! let file = "id,name\n1,\"DOE, JOHN\"\n2,ROE\nT,2\n";
//! let mut src = issuer::open(&p, Box::new(file.as_bytes())).unwrap();
//! let r = src.next_record().unwrap().unwrap();
//! assert_eq!(r.field(1), Some(&b"DOE, JOHN"[..]));
//! assert!(src.next_record().unwrap().is_some());
//! assert!(src.next_record().unwrap().is_none());
//! assert_eq!(src.declared_count(), Some(2));
//! ```

use std::io::{BufRead, Read};

use zeroize::{Zeroize, Zeroizing};

use crate::order::product::{CountSpec, LayoutKind, Product};
use crate::order::validate::Reason;
use crate::xml::{self, Content, XmlError};
use crate::{Error, Result};

/// Size of the wiping read buffer.
const BUF: usize = 64 * 1024;

/// A buffered reader whose buffer is wiped before every refill and on drop.
pub struct WipingReader<'a> {
    inner: Box<dyn Read + Send + 'a>,
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    filled: usize,
    /// Bytes consumed so far (for error positions).
    offset: u64,
}

impl<'a> WipingReader<'a> {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Read + Send + 'a>) -> Self {
        Self {
            inner,
            buf: Zeroizing::new(vec![0u8; BUF]),
            pos: 0,
            filled: 0,
            offset: 0,
        }
    }
}

impl core::fmt::Debug for WipingReader<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("WipingReader { .. }")
    }
}

/// `Read::read` for a reader whose `BufRead` side does the work (it wipes inside
/// `fill_buf`).
fn read_through_buffer(r: &mut impl BufRead, out: &mut [u8]) -> std::io::Result<usize> {
    let avail = r.fill_buf()?;
    let n = avail.len().min(out.len());
    out[..n].copy_from_slice(&avail[..n]);
    r.consume(n);
    Ok(n)
}

impl Read for WipingReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        read_through_buffer(self, out)
    }
}

impl BufRead for WipingReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos >= self.filled {
            self.buf[..self.filled].zeroize();
            self.pos = 0;
            self.filled = 0;
            loop {
                match self.inner.read(&mut self.buf[..]) {
                    Ok(n) => {
                        self.filled = n;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.filled);
        self.offset += amt as u64;
    }
}

/// One issuer record as read: the clear field values in one zeroizing buffer.
pub struct RawRecord {
    /// 1-based number of the record among the file's data records.
    pub number: u64,
    data: Zeroizing<Vec<u8>>,
    spans: Vec<Option<(usize, usize)>>,
    /// A structural problem that rejects the record as a whole.
    pub problem: Option<Reason>,
}

impl core::fmt::Debug for RawRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawRecord")
            .field("number", &self.number)
            .field("fields", &self.spans.len())
            .field("problem", &self.problem)
            .finish_non_exhaustive()
    }
}

impl RawRecord {
    fn new(number: u64, fields: usize) -> Self {
        Self {
            number,
            data: Zeroizing::new(Vec::new()),
            spans: vec![None; fields],
            problem: None,
        }
    }

    /// Stores the value of field `i` (trimmed of ASCII spaces and tabs; empty = absent).
    fn set(&mut self, i: usize, v: &[u8]) {
        let v = trim(v);
        if v.is_empty() {
            return;
        }
        let start = self.data.len();
        reserve_wiping(&mut self.data, v.len());
        self.data.extend_from_slice(v);
        self.spans[i] = Some((start, self.data.len()));
    }

    /// The clear value of field `i` (product field order), `None` when absent or empty.
    pub fn field(&self, i: usize) -> Option<&[u8]> {
        self.spans
            .get(i)
            .copied()
            .flatten()
            .map(|(a, b)| &self.data[a..b])
    }

    /// The number of fields (the product's field count).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the record has no field slots.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Wipes the used part of `v` and empties it, keeping its capacity. (`Vec::zeroize` wipes
/// the whole capacity: on a buffer sized for the longest record, that is the longest
/// record's worth of writes for every event or line, however short.)
fn wipe(v: &mut Vec<u8>) {
    let n = v.len();
    v[..n].zeroize();
    v.clear();
}

/// Grows a zeroizing vector without leaving a clear copy behind: when the capacity must
/// grow, the old contents are moved into a fresh allocation and the old one wiped.
fn reserve_wiping(v: &mut Zeroizing<Vec<u8>>, extra: usize) {
    if v.len() + extra > v.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity((v.len() + extra).max(64) * 2));
        bigger.extend_from_slice(v);
        v.zeroize();
        *v = bigger;
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t');
    let start = v.iter().position(|b| !is_space(b)).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// A streaming source of issuer records.
pub trait RecordSource: Send {
    /// The next data record, or `None` at the end of the file (after the trailer, if any).
    fn next_record(&mut self) -> Result<Option<RawRecord>>;

    /// The issuer's declared record count, once known (XML: after the root start tag;
    /// line layouts: after the trailer).
    fn declared_count(&self) -> Option<u64>;
}

/// Opens a record source for `product`'s layout over `input` (the clear file).
pub fn open<'a>(
    product: &Product,
    input: Box<dyn Read + Send + 'a>,
) -> Result<Box<dyn RecordSource + 'a>> {
    let r = WipingReader::new(input);
    Ok(match &product.layout.kind {
        LayoutKind::Delimited { .. } | LayoutKind::Fixed => Box::new(LineSource::new(product, r)?),
        LayoutKind::Xml { root, record } => Box::new(XmlSource::new(product, r, root, record)),
    })
}

fn structure(reason: impl Into<String>) -> Error {
    Error::invalid("issuer file", reason)
}

fn parse_count(v: &[u8]) -> Result<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(structure("the declared record count is not a number"));
    }
    Ok(v.iter().fold(0u64, |a, &d| a * 10 + u64::from(d - b'0')))
}

// ---------------------------------------------------------------- delimited and fixed

struct LineSource<'a> {
    r: WipingReader<'a>,
    kind: LayoutKind,
    fields: usize,
    /// Delimited: column index of each product field (`None`: not in the file).
    columns: Vec<Option<usize>>,
    /// Delimited with a header: the header's column count.
    header_cols: Option<usize>,
    /// Fixed: (start, length) of each field, 0-based.
    positions: Vec<(usize, usize)>,
    count: Option<CountSpec>,
    declared: Option<u64>,
    max: usize,
    line: Zeroizing<Vec<u8>>,
    cells: Zeroizing<Vec<u8>>,
    spans: Vec<(usize, usize)>,
    number: u64,
    done: bool,
    header_pending: bool,
    product_fields: Vec<(String, bool)>,
}

impl<'a> LineSource<'a> {
    fn new(p: &Product, r: WipingReader<'a>) -> Result<Self> {
        let header = matches!(p.layout.kind, LayoutKind::Delimited { header: true, .. });
        Ok(Self {
            r,
            kind: p.layout.kind.clone(),
            fields: p.fields.len(),
            columns: (0..p.fields.len()).map(Some).collect(),
            header_cols: None,
            positions: p
                .fields
                .iter()
                .map(|f| f.position.map_or((0, 0), |(s, l)| (s - 1, l)))
                .collect(),
            count: p.layout.count.clone(),
            declared: None,
            max: p.layout.max_record_bytes,
            // At their maximum from the start: a line never exceeds max-record-bytes and its
            // cells never exceed the line, so neither buffer is ever reallocated (a
            // reallocation would free an unwiped clear copy).
            line: Zeroizing::new(Vec::with_capacity(p.layout.max_record_bytes)),
            cells: Zeroizing::new(Vec::with_capacity(p.layout.max_record_bytes)),
            spans: Vec::new(),
            number: 0,
            done: false,
            header_pending: header,
            product_fields: p
                .fields
                .iter()
                .map(|f| (f.column.clone(), f.required))
                .collect(),
        })
    }

    fn quote(&self) -> Option<u8> {
        match self.kind {
            LayoutKind::Delimited { quote, .. } => quote,
            _ => None,
        }
    }

    /// Reads one logical line (a quoted newline does not end it) into `self.line`, without
    /// its line ending. Returns `false` at the end of the input. A line longer than
    /// max-record-bytes is an error as soon as the limit is passed (nothing more of it is
    /// read or buffered).
    fn read_line(&mut self) -> Result<bool> {
        let quote = self.quote();
        let sep = match self.kind {
            LayoutKind::Delimited { separator, .. } => Some(separator),
            _ => None,
        };
        wipe(&mut self.line);
        // RFC 4180 states: a quote opens a quoted field only at the start of a field; in a
        // quoted field a newline is data and a doubled quote is one quote.
        #[derive(Clone, Copy, PartialEq)]
        enum St {
            FieldStart,
            Unquoted,
            Quoted,
            QuoteInQuoted,
        }
        let mut st = St::FieldStart;
        let mut any = false;
        loop {
            let buf = self
                .r
                .fill_buf()
                .map_err(|e| io_error(e, "reading the issuer file"))?;
            if buf.is_empty() {
                if st == St::Quoted {
                    // A quoted field never closed: the rest of the file was swallowed into
                    // one field. The file's structure is lost, not just one record's.
                    wipe(&mut self.line);
                    return Err(structure(
                        "the file ends inside a quoted field (an unbalanced quote)",
                    ));
                }
                if !any {
                    return Ok(false);
                }
                break;
            }
            any = true;
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                let is_quote = Some(b) == quote;
                let is_sep = Some(b) == sep;
                st = match st {
                    St::Quoted if is_quote => St::QuoteInQuoted,
                    St::Quoted => St::Quoted,
                    St::QuoteInQuoted if is_quote => St::Quoted,
                    St::FieldStart if is_quote => St::Quoted,
                    _ if is_sep => St::FieldStart,
                    _ if b == b'\n' => {
                        end = Some(i);
                        break;
                    }
                    _ => St::Unquoted,
                };
            }
            let take = end.unwrap_or(buf.len());
            if self.line.len() + take > self.max {
                wipe(&mut self.line);
                return Err(structure(format!(
                    "a line near byte {} is longer than max-record-bytes ({})",
                    self.r.offset, self.max
                )));
            }
            self.line.extend_from_slice(&buf[..take]);
            match end {
                Some(e) => {
                    self.r.consume(e + 1);
                    break;
                }
                None => {
                    let n = buf.len();
                    self.r.consume(n);
                }
            }
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(true)
    }

    /// Splits `self.line` into cells (unquoted) in `self.cells` / `self.spans`. `false` when
    /// a quote is malformed.
    fn split(&mut self) -> bool {
        let (sep, quote) = match self.kind {
            LayoutKind::Delimited {
                separator, quote, ..
            } => (separator, quote),
            _ => return true,
        };
        wipe(&mut self.cells);
        self.spans.clear();
        let line = &self.line[..];
        let mut i = 0;
        loop {
            let start = self.cells.len();
            if quote.is_some() && line.get(i) == quote.as_ref() {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return false,
                        Some(&b) if Some(b) == quote => {
                            if line.get(i + 1) == quote.as_ref() {
                                self.cells.push(b);
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(&b) => {
                            self.cells.push(b);
                            i += 1;
                        }
                    }
                }
                self.spans.push((start, self.cells.len()));
                match line.get(i) {
                    None => return true,
                    Some(&b) if b == sep => i += 1,
                    Some(_) => return false,
                }
            } else {
                let end = line[i..]
                    .iter()
                    .position(|&b| b == sep)
                    .map_or(line.len(), |e| i + e);
                if quote.is_some() && line[i..end].iter().any(|b| Some(*b) == quote) {
                    return false;
                }
                self.cells.extend_from_slice(&line[i..end]);
                self.spans.push((start, self.cells.len()));
                if end == line.len() {
                    return true;
                }
                i = end + 1;
            }
        }
    }

    fn cell(&self, i: usize) -> Option<&[u8]> {
        self.spans.get(i).map(|&(a, b)| &self.cells[a..b])
    }

    fn read_header(&mut self) -> Result<()> {
        self.header_pending = false;
        if !self.read_line()? {
            return Err(structure("the file is empty (no header row)"));
        }
        if !self.split() {
            return Err(structure("the header row has a malformed quote"));
        }
        let names: Vec<String> = (0..self.spans.len())
            .map(|i| String::from_utf8_lossy(trim(self.cell(i).unwrap_or_default())).into_owned())
            .collect();
        for (k, (col, required)) in self.product_fields.iter().enumerate() {
            let idx = names.iter().position(|n| n == col);
            if idx.is_none() && *required {
                return Err(structure(format!(
                    "the header row has no column '{col}', which the product requires"
                )));
            }
            self.columns[k] = idx;
        }
        self.header_cols = Some(names.len());
        Ok(())
    }

    fn is_trailer(&self) -> bool {
        let Some(CountSpec::Trailer { marker, .. }) = &self.count else {
            return false;
        };
        match self.kind {
            LayoutKind::Fixed => self.line.starts_with(marker.as_bytes()),
            _ => self.cell(0).map(trim) == Some(marker.as_bytes()),
        }
    }

    fn trailer_count(&self) -> Result<u64> {
        match (&self.count, &self.kind) {
            (Some(CountSpec::Trailer { start, length, .. }), LayoutKind::Fixed) => {
                let s = start.saturating_sub(1);
                let e = s.saturating_add(*length);
                if self.line.len() < e {
                    return Err(structure("the trailer line is too short for its count"));
                }
                parse_count(&self.line[s..e])
            }
            (Some(CountSpec::Trailer { column, .. }), _) => parse_count(
                self.cell(column - 1)
                    .ok_or_else(|| structure("the trailer has no count column"))?,
            ),
            _ => Err(structure("no trailer expected")),
        }
    }
}

impl RecordSource for LineSource<'_> {
    fn next_record(&mut self) -> Result<Option<RawRecord>> {
        if self.done {
            return Ok(None);
        }
        if self.header_pending {
            self.read_header()?;
        }
        loop {
            if !self.read_line()? {
                self.done = true;
                if matches!(self.count, Some(CountSpec::Trailer { .. })) {
                    return Err(structure("the file ends without its trailer (truncated?)"));
                }
                return Ok(None);
            }
            if trim(&self.line).is_empty() {
                continue; // blank line
            }
            self.number += 1;
            let mut rec = RawRecord::new(self.number, self.fields);
            let split_ok = self.split();
            if split_ok && self.is_trailer() {
                self.number -= 1;
                self.declared = Some(self.trailer_count()?);
                // Only blank lines may follow.
                while self.read_line()? {
                    if !trim(&self.line).is_empty() {
                        return Err(structure("data after the trailer line"));
                    }
                }
                self.done = true;
                return Ok(None);
            }
            match self.kind {
                LayoutKind::Fixed => {
                    for (k, &(s, l)) in self.positions.iter().enumerate() {
                        if s < self.line.len() {
                            // The product bounds s + l by max-record-bytes; saturate anyway.
                            let e = s.saturating_add(l).min(self.line.len());
                            let v = &self.line[s..e];
                            rec.set(k, v);
                        }
                    }
                }
                _ => {
                    if !split_ok {
                        rec.problem = Some(Reason::FieldFormat);
                        return Ok(Some(rec));
                    }
                    let want = self.header_cols.unwrap_or(self.fields);
                    if self.spans.len() != want {
                        rec.problem = Some(Reason::FieldCount);
                        return Ok(Some(rec));
                    }
                    for k in 0..self.fields {
                        if let Some(c) = self.columns[k] {
                            let (a, b) = self.spans[c];
                            rec.set(k, &self.cells[a..b]);
                        }
                    }
                }
            }
            return Ok(Some(rec));
        }
    }

    fn declared_count(&self) -> Option<u64> {
        self.declared
    }
}

fn io_error(e: std::io::Error, what: &str) -> Error {
    // A decrypting reader reports its failures as a pmp-core error inside the io::Error.
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        if let Some(inner) = e.into_inner()
            && let Ok(err) = inner.downcast::<Error>()
        {
            return *err;
        }
        return structure(what.to_string());
    }
    Error::io(what, e)
}

// ---------------------------------------------------------------- XML

/// Slack over max-record-bytes for one event's markup (`<`, `>`, the look-ahead byte).
const EVENT_SLACK: usize = 64;

/// Element depth of the XML layout: the root, a record, a field.
const XML_DEPTH: usize = 3;

/// The XML layout's rules for the strict reader: no event longer than max-record-bytes
/// (plus slack for its markup), so that no hostile event is buffered whole; comments and
/// processing instructions skipped; references in text resolved (predefined entities and
/// character references only); no DOCTYPE, no CDATA.
fn xml_rules(max_record_bytes: usize) -> xml::Rules {
    xml::Rules {
        event_bytes: max_record_bytes + EVENT_SLACK,
        max_depth: XML_DEPTH,
        comments: true,
        processing_instructions: true,
        text_references: true,
    }
}

struct XmlSource<'a> {
    r: xml::StrictReader<WipingReader<'a>>,
    buf: Zeroizing<Vec<u8>>,
    /// The text of the last text event.
    text: Zeroizing<Vec<u8>>,
    root: Vec<u8>,
    record: Vec<u8>,
    /// Element name → product field index.
    names: Vec<(Vec<u8>, usize)>,
    count_attr: Option<Vec<u8>>,
    declared: Option<u64>,
    fields: usize,
    max: usize,
    number: u64,
    state: XmlState,
}

#[derive(PartialEq, Eq)]
enum XmlState {
    Prolog,
    InRoot,
    Done,
}

impl<'a> XmlSource<'a> {
    fn new(p: &Product, r: WipingReader<'a>, root: &str, record: &str) -> Self {
        let max = p.layout.max_record_bytes;
        let r = xml::StrictReader::new(r, xml_rules(max));
        Self {
            r,
            // At their maximum from the start (an event never exceeds max + slack): never
            // reallocated, so no unwiped copy is freed.
            buf: Zeroizing::new(Vec::with_capacity(max + EVENT_SLACK)),
            text: Zeroizing::new(Vec::with_capacity(max + EVENT_SLACK)),
            root: root.as_bytes().to_vec(),
            record: record.as_bytes().to_vec(),
            names: p
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.column.as_bytes().to_vec(), i))
                .collect(),
            count_attr: match &p.layout.count {
                Some(CountSpec::RootAttribute(a)) => Some(a.as_bytes().to_vec()),
                _ => None,
            },
            declared: None,
            fields: p.fields.len(),
            max: p.layout.max_record_bytes,
            number: 0,
            state: XmlState::Prolog,
        }
    }

    fn err(&self, what: &str) -> Error {
        structure(format!("XML at byte {}: {what}", self.r.position()))
    }

    /// The next event into `self.buf` (wiped first). Returns an owned-free classification
    /// so that the borrow of `buf` ends here.
    fn next(&mut self) -> Result<Ev> {
        let mut buf = core::mem::take(&mut self.buf);
        wipe(&mut buf);
        let r = self.classify(&mut buf);
        self.buf = buf;
        r
    }

    fn classify(&mut self, buf: &mut Zeroizing<Vec<u8>>) -> Result<Ev> {
        let ev = match self.r.next(buf) {
            Ok(ev) => ev,
            Err(XmlError::TooLarge { at }) => {
                return Err(structure(format!(
                    "XML near byte {at}: one XML event (text, tag, comment or whitespace) is larger than max-record-bytes ({})",
                    self.max
                )));
            }
            Err(XmlError::Refused(r)) => return Err(self.err(&r.to_string())),
            Err(XmlError::Io(e)) => return Err(io_error(e, "reading the issuer file")),
            Err(XmlError::Malformed { error, .. }) => {
                return Err(self.err(&format!("not well-formed ({error})")));
            }
        };
        Ok(match ev {
            Content::Start(s) => {
                let name = s.name().as_ref().as_bytes().to_vec();
                let mut count = None;
                if let Some(attr) = &self.count_attr
                    && name == self.root
                {
                    for a in s.attributes() {
                        let a = a.map_err(|_| self.err("malformed attribute"))?;
                        if a.key.as_ref().as_bytes() == attr.as_slice() {
                            count = Some(parse_count(a.value.as_bytes())?);
                        }
                    }
                }
                Ev::Start(name, count)
            }
            Content::Empty(s) => Ev::Empty(s.name().as_ref().as_bytes().to_vec()),
            Content::End(e) => Ev::End(e.name().as_ref().as_bytes().to_vec()),
            Content::Text(t) => {
                let t: &str = &t;
                wipe(&mut self.text);
                reserve_wiping(&mut self.text, t.len());
                self.text.extend_from_slice(t.as_bytes());
                if t.bytes().all(|b| b.is_ascii_whitespace()) {
                    Ev::Space
                } else {
                    Ev::Text
                }
            }
            Content::Char(c) => Ev::Ref(c),
            Content::Eof => Ev::Eof,
            Content::Decl(_) | Content::Skipped => {
                wipe(&mut self.text);
                Ev::Space
            }
        })
    }
}

enum Ev {
    Start(Vec<u8>, Option<u64>),
    Empty(Vec<u8>),
    End(Vec<u8>),
    /// Text (in `self.text`; references come as separate events).
    Text,
    Ref(char),
    Space,
    Eof,
}

impl RecordSource for XmlSource<'_> {
    fn next_record(&mut self) -> Result<Option<RawRecord>> {
        if self.state == XmlState::Prolog {
            loop {
                match self.next()? {
                    Ev::Start(n, count) if n == self.root => {
                        self.declared = count;
                        if self.count_attr.is_some() && count.is_none() {
                            return Err(self.err("the root element has no declared count"));
                        }
                        self.state = XmlState::InRoot;
                        break;
                    }
                    Ev::Space => {}
                    Ev::Eof => return Err(structure("the file is empty (no root element)")),
                    _ => return Err(self.err("expected the root element")),
                }
            }
        }
        if self.state == XmlState::Done {
            return Ok(None);
        }
        // Find the next record element.
        loop {
            match self.next()? {
                Ev::Start(n, _) if n == self.record => break,
                Ev::Empty(n) if n == self.record => {
                    self.number += 1;
                    return Ok(Some(RawRecord::new(self.number, self.fields)));
                }
                Ev::End(n) if n == self.root => {
                    loop {
                        match self.next()? {
                            Ev::Space => {}
                            Ev::Eof => break,
                            _ => return Err(self.err("content after the root element")),
                        }
                    }
                    self.state = XmlState::Done;
                    return Ok(None);
                }
                Ev::Space => {}
                Ev::Eof => {
                    return Err(structure(
                        "the XML file ends inside the root element (truncated?)",
                    ));
                }
                _ => return Err(self.err("expected a record element")),
            }
        }
        self.number += 1;
        let mut rec = RawRecord::new(self.number, self.fields);
        let start = self.r.position();
        let mut value: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(self.max));
        // Inside a record: child elements, one per field.
        loop {
            if self.r.position() - start > self.max as u64 {
                return Err(self.err("a record is larger than max-record-bytes"));
            }
            match self.next()? {
                Ev::Start(n, _) => {
                    let field = self.names.iter().find(|(k, _)| *k == n).map(|(_, i)| *i);
                    wipe(&mut value);
                    loop {
                        if self.r.position() - start > self.max as u64 {
                            return Err(self.err("a record is larger than max-record-bytes"));
                        }
                        match self.next()? {
                            Ev::Text | Ev::Space => {
                                if value.len() + self.text.len() > self.max {
                                    return Err(self.err("a field is larger than max-record-bytes"));
                                }
                                reserve_wiping(&mut value, self.text.len());
                                value.extend_from_slice(&self.text);
                            }
                            Ev::Ref(c) => {
                                let mut tmp = [0u8; 4];
                                let s = c.encode_utf8(&mut tmp);
                                if value.len() + s.len() > self.max {
                                    return Err(self.err("a field is larger than max-record-bytes"));
                                }
                                reserve_wiping(&mut value, s.len());
                                value.extend_from_slice(s.as_bytes());
                            }
                            Ev::End(e) if e == n => break,
                            Ev::Eof => {
                                return Err(structure(
                                    "the XML file ends inside a record (truncated?)",
                                ));
                            }
                            _ => return Err(self.err("a field element may hold only text")),
                        }
                    }
                    if let Some(i) = field {
                        let v = trim_ws(&value);
                        if rec.spans[i].is_some() {
                            rec.problem = Some(Reason::FieldFormat);
                        }
                        rec.set(i, v);
                    }
                }
                Ev::Empty(_) | Ev::Space => {}
                Ev::End(n) if n == self.record => return Ok(Some(rec)),
                Ev::Eof => return Err(structure("the XML file ends inside a record (truncated?)")),
                _ => return Err(self.err("unexpected content in a record")),
            }
        }
    }

    fn declared_count(&self) -> Option<u64> {
        self.declared
    }
}

fn trim_ws(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(layout: &str, fields: &str) -> Product {
        Product::parse(&format!(
            r#"<product format="pmp-product-1" name="P" issuer="B"><keys><mac-key label="M"/></keys>
            {layout}<fields>{fields}</fields></product>"#
        ))
        .unwrap()
    }

    type Parsed = (Vec<Vec<Option<String>>>, Vec<Option<Reason>>, Option<u64>);

    fn all(p: &Product, input: &str) -> Result<Parsed> {
        let mut src = open(p, Box::new(std::io::Cursor::new(input.as_bytes().to_vec())))?;
        let mut v = Vec::new();
        let mut probs = Vec::new();
        while let Some(r) = src.next_record()? {
            v.push(
                (0..r.len())
                    .map(|i| r.field(i).map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            );
            probs.push(r.problem);
        }
        Ok((v, probs, src.declared_count()))
    }

    #[test]
    fn delimited_with_quotes_header_and_trailer() {
        let p = product(
            r#"<layout kind="delimited" separator=";" record-id="id"><count trailer="TRL" column="2"/></layout>"#,
            r#"<field name="id"/><field name="name" column="Name"/><field name="x" column="absent"/>"#,
        );
        let input = "Name;id;other\r\n\"DOE; \"\"J\"\"\";1;z\r\n\r\n\"multi\nline\";2;z\nbad\"quote;3;z\nshort;4\nTRL;4\n\n";
        let (v, probs, declared) = all(&p, input).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(
            v[0],
            vec![Some("1".into()), Some("DOE; \"J\"".into()), None]
        );
        assert_eq!(v[1][1].as_deref(), Some("multi\nline"));
        assert_eq!(
            probs,
            vec![
                None,
                None,
                Some(Reason::FieldFormat),
                Some(Reason::FieldCount)
            ]
        );
        assert_eq!(declared, Some(4));
        // Truncated: no trailer.
        let e = all(&p, "Name;id;other\nA;1;z\n").unwrap_err().to_string();
        assert!(e.contains("trailer"), "{e}");
        // Data after the trailer.
        assert!(all(&p, "Name;id;other\nA;1;z\nTRL;1\nB;2;z\n").is_err());
        // An unbalanced quote swallows the rest of the file: a file-level error, even
        // without a trailer to miss.
        let p3 = product(
            r#"<layout kind="delimited" separator=";" record-id="id"/>"#,
            r#"<field name="id"/><field name="name" column="Name"/>"#,
        );
        let e = all(&p3, "Name;id\nA;1\n\"B;2\nC;3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("quoted field"), "{e}");
        // A required column missing from the header.
        let p2 = product(
            r#"<layout kind="delimited" record-id="id"/>"#,
            r#"<field name="id" required="true"/>"#,
        );
        assert!(
            all(&p2, "nope\n1\n")
                .unwrap_err()
                .to_string()
                .contains("no column 'id'")
        );
    }

    #[test]
    fn delimited_without_header_and_long_lines() {
        let p = product(
            r#"<layout kind="delimited" header="false" quote="none" separator="|" record-id="id" max-record-bytes="20"/>"#,
            r#"<field name="id"/><field name="v"/>"#,
        );
        let (v, probs, declared) = all(&p, "1|a\"b\n2|yy\n3|c").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0][1].as_deref(), Some("a\"b"));
        assert_eq!(probs, vec![None, None, None]);
        assert_eq!(v[2][1].as_deref(), Some("c"));
        assert_eq!(declared, None);
        // A line over the limit stops the file (it is not read to its end).
        let long = "x".repeat(50);
        let e = all(&p, &format!("1|a\n2|{long}\n3|c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than max-record-bytes (20)"), "{e}");
    }

    #[test]
    fn fixed_width() {
        let p = product(
            r#"<layout kind="fixed" record-id="id"><count trailer="99" start="3" length="6"/></layout>"#,
            r#"<field name="id" start="1" length="4"/><field name="pan" start="5" length="19"/><field name="name" start="24" length="10"/>"#,
        );
        let input = "00014111111111111111   DOE JOHN  \n00025500005555555559\n99000002\n";
        let (v, _, declared) = all(&p, input).unwrap();
        assert_eq!(
            v[0],
            vec![
                Some("0001".into()),
                Some("4111111111111111".into()),
                Some("DOE JOHN".into())
            ]
        );
        assert_eq!(v[1][2], None);
        assert_eq!(declared, Some(2));
    }

    #[test]
    fn xml_layout() {
        let p = product(
            r#"<layout kind="xml" root="cards" record="card" record-id="id"><count root-attribute="count"/></layout>"#,
            r#"<field name="id"/><field name="name" column="Name"/>"#,
        );
        let input = "<?xml version=\"1.0\"?>\n<cards count=\"2\">\n <card><id>1</id><Name> DOE &amp; SON&#33; </Name><extra>zz</extra></card>\n <card><id>2</id><Name/></card>\n</cards>\n";
        let (v, _, declared) = all(&p, input).unwrap();
        assert_eq!(v[0], vec![Some("1".into()), Some("DOE & SON!".into())]);
        assert_eq!(v[1], vec![Some("2".into()), None]);
        assert_eq!(declared, Some(2));
        for bad in [
            "<!DOCTYPE x><cards count=\"1\"></cards>",
            "<cards count=\"1\"><card><id>1</id>",
            "<cards><card/></cards>",
            "<cards count=\"1\"><card><id><b/></id></card></cards>",
            "<cards count=\"1\"><card><id>&foo;</id></card></cards>",
            "<cards count=\"1\"></cards><x/>",
        ] {
            assert!(all(&p, bad).is_err(), "{bad}");
        }
        // One event over max-record-bytes: a comment, a text node, whitespace between
        // records, character references — each an error, not buffered.
        let p = product(
            r#"<layout kind="xml" root="cards" record="card" record-id="id" max-record-bytes="100"/>"#,
            r#"<field name="id"/><field name="name"/>"#,
        );
        let big = "x".repeat(200);
        let sp = " ".repeat(200);
        let refs = "&#65;".repeat(150);
        for bad in [
            format!("<cards><!--{big}--><card><id>1</id></card></cards>"),
            format!("<cards><card><id>1</id><name>{big}</name></card></cards>"),
            format!("<cards><card><id>1</id></card>{sp}<card><id>2</id></card></cards>"),
            format!("<cards><card><id>1</id><name>{refs}</name></card></cards>"),
            format!("<cards><card {big}=\"1\"><id>1</id></card></cards>"),
        ] {
            let e = all(&p, &bad).unwrap_err().to_string();
            assert!(e.contains("max-record-bytes"), "{bad}: {e}");
        }
        let ok = "<cards><!-- short --><card><id>1</id><name>AB &#65;</name></card></cards>";
        assert_eq!(all(&p, ok).unwrap().0[0][1].as_deref(), Some("AB A"));
    }
}
