//! Issuer layouts: streaming readers for delimited, fixed-width and XML card files.
//!
//! Every reader pulls one record at a time ([`RecordSource::next_record`]) from a
//! [`WipingReader`] — a `BufRead` whose buffer is wiped before each refill and on drop —
//! through the file's character decoding ([`crate::order::encoding`], into
//! buffers wiped the same way) into a [`RawRecord`] whose single data buffer is zeroized on
//! drop. Memory depends on the longest record, never on the size of the file: an XML file
//! is read as a stream of events matched against the record path and the fields' paths
//! (`issuer/xml.rs`), never as a document tree.
//!
//! Why not the `csv` crate: it keeps copies of field bytes in internal buffers we cannot
//! wipe, and the clear text of an issuer file (PANs, names, track data) must not linger in
//! freed memory. The delimited reader here is a small RFC 4180-style reader (configurable
//! separator and quote, a doubled quote inside a quoted field, quoted fields may span
//! lines, CRLF or LF) over buffers we own and wipe.
//!
//! Structural problems of one record (wrong number of fields, a malformed quote within a
//! line, an XML field element given twice) do not stop the file: the record carries a
//! [`Reason`] and is rejected. Problems that make the rest of the file unreadable (XML that
//! is not well-formed, a header row that lacks a mapped column, data after the trailer, a
//! quoted field still open at the end of the file, text not valid in the file's encoding)
//! stop it with an error naming the line (of the decrypted text, for an encrypted file),
//! the record number and, for XML, the element path; and so does anything longer than
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

mod lines;
mod xml;

use std::io::{BufRead, Read};

use zeroize::{Zeroize, Zeroizing};

use crate::order::encoding::{self, TextReader};
use crate::order::product::{LayoutKind, Product};
use crate::order::validate::Reason;
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

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next `n` bytes (at most the buffer's 64 KiB) without consuming them; fewer only
    /// at the end of the input. Moves what is left to the front of the buffer and wipes the
    /// bytes it leaves behind.
    pub(crate) fn peek(&mut self, n: usize) -> std::io::Result<&[u8]> {
        let n = n.min(BUF);
        if self.filled - self.pos < n {
            let left = self.filled - self.pos;
            self.buf.copy_within(self.pos..self.filled, 0);
            self.buf[left..self.filled].zeroize();
            self.pos = 0;
            self.filled = left;
            while self.filled < n {
                match self.inner.read(&mut self.buf[self.filled..]) {
                    Ok(0) => break,
                    Ok(k) => self.filled += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let end = (self.pos + n).min(self.filled);
        Ok(&self.buf[self.pos..end])
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
    /// A structural problem that rejects the record.
    pub problem: Option<Reason>,
    /// The field the problem is in (product field order), when it is one field's.
    pub problem_field: Option<usize>,
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
            problem_field: None,
        }
    }

    /// Notes a problem (the first one stands).
    fn flag(&mut self, reason: Reason, field: Option<usize>) {
        if self.problem.is_none() {
            self.problem = Some(reason);
            self.problem_field = field;
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

    /// The issuer's declared record count, once known (XML: after the root start tag or
    /// the count element; line layouts: after the trailer).
    fn declared_count(&self) -> Option<u64>;

    /// After the last record: the optional fields the file never had (a delimited column
    /// absent from the header, an XML path that matched in no record), in field order.
    /// Only with `absent-fields="warn"`; otherwise such a field stops the file.
    fn absent_fields(&self) -> Vec<usize> {
        Vec::new()
    }
}

/// Where the text a reader parses comes from, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Origin {
    /// The issuer's file as it is.
    #[default]
    File,
    /// The clear text of a whole-file-encrypted file: positions are in the decrypted text,
    /// which the operator never sees, and messages say so.
    Decrypted,
}

/// Where a reader stands, for an error that stops the file.
struct Place<'p> {
    origin: Origin,
    line: u64,
    record: Option<u64>,
    element: Option<&'p str>,
}

impl Place<'_> {
    /// `issuer file: line L [of the decrypted text], record N, element A/B/C: what`.
    fn error(&self, what: impl core::fmt::Display) -> Error {
        let mut at = format!("line {}", self.line);
        if self.origin == Origin::Decrypted {
            at.push_str(" of the decrypted text");
        }
        if let Some(n) = self.record {
            at.push_str(&format!(", record {n}"));
        }
        if let Some(e) = self.element
            && !e.is_empty()
        {
            at.push_str(&format!(", element {e}"));
        }
        structure(format!("{at}: {what}"))
    }
}

/// Opens a record source for `product`'s layout over `input` (the clear file), decoding
/// its character encoding.
pub fn open<'a>(
    product: &Product,
    input: Box<dyn Read + Send + 'a>,
) -> Result<Box<dyn RecordSource + 'a>> {
    open_from(product, input, Origin::File)
}

/// [`open`], saying in error messages where the text comes from.
pub fn open_from<'a>(
    product: &Product,
    input: Box<dyn Read + Send + 'a>,
    origin: Origin,
) -> Result<Box<dyn RecordSource + 'a>> {
    let mut r = WipingReader::new(input);
    Ok(match &product.layout.kind {
        LayoutKind::Delimited { .. } | LayoutKind::Fixed => {
            let t = TextReader::new(r, product.layout.encoding)?;
            Box::new(lines::LineSource::new(product, t, origin)?)
        }
        LayoutKind::Xml { record_path } => {
            let enc = encoding::sniff_xml(&mut r)?;
            let t = TextReader::new(r, enc)?;
            Box::new(xml::XmlSource::new(product, record_path, t, origin))
        }
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

pub(crate) fn io_error(e: std::io::Error, what: &str) -> Error {
    // A decrypting or decoding reader reports its failures as a pmp-core error inside the
    // io::Error.
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

/// `v` without leading and trailing XML whitespace.
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
            r#"<layout kind="delimited" separator=";" record-id="id" absent-fields="warn"><count trailer="TRL" column="2"/></layout>"#,
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
        let mut src = open(&p, Box::new(input.as_bytes())).unwrap();
        while src.next_record().unwrap().is_some() {}
        assert_eq!(src.absent_fields(), [2]);
        // Without absent-fields="warn", a mapped column absent from the header stops the
        // file, naming the column, the field and the line.
        let strict = product(
            r#"<layout kind="delimited" separator=";" record-id="id"/>"#,
            r#"<field name="id"/><field name="city" column="cty"/>"#,
        );
        let e = all(&strict, "id;city\n1;Oslo\n").unwrap_err().to_string();
        assert!(
            e.contains("line 1: the header row has no column 'cty' (field city)"),
            "{e}"
        );
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
        assert!(
            e.contains("line 2, record 2: the line is longer than max-record-bytes (20)"),
            "{e}"
        );
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
    fn xml_skips_what_is_off_the_record_path_event_by_event() {
        let p = product(
            r#"<layout kind="xml" record-path="F/P/R" record-id="id" max-record-bytes="200"/>"#,
            r#"<field name="id" column="@id"/><field name="v" column="A/B"/>"#,
        );
        // A block of 20,000 elements (far more than max-record-bytes) before the records is
        // skipped as it streams; an R off the record path is no record; unmapped sub-trees
        // inside a record are skipped.
        let big = "<S><T>x</T></S>".repeat(20_000);
        let doc = format!(
            "<F><H>{big}</H><P><R id=\"1\"><A><B>v</B><C><D/></C></A></R><X><R id=\"no\"/></X><R id=\"2\"/></P></F>"
        );
        let (v, probs, _) = all(&p, &doc).unwrap();
        assert_eq!(
            v,
            [
                vec![Some("1".to_string()), Some("v".to_string())],
                vec![Some("2".to_string()), None]
            ]
        );
        assert_eq!(probs, [None, None]);
        // Nesting beyond 64 levels is refused, wherever it is.
        let deep = "<D>".repeat(70) + &"</D>".repeat(70);
        let e = all(&p, &format!("<F><P>{deep}</P></F>"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nests deeper than 64"), "{e}");
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
