//! The XML layout: records found by their path from the root element, fields by their path
//! inside the record, matched on the stream of pull events — no document tree, memory
//! bounded by `max-record-bytes`.
//!
//! - Outside records, the reader keeps only how many of the open elements lie on the record
//!   path (and on the count element's path): any other element, however deep, is skipped
//!   as it streams by, with its text (summary blocks, product references, headers,
//!   trailers), except the count element's text.
//! - Inside a record, the fields' paths form a small tree (`Node`): each open element is
//!   either a node of it or unmapped (its whole sub-tree skipped). A node's attributes and
//!   text are the fields that end there. A field matched twice in one record rejects the
//!   record (`field-repeated`); a field element that holds an element rejects it
//!   (`field-format`).
//! - Names match by local name (`PAN` matches `PAN` and `c:PAN`), or, for a step written
//!   with a prefix (`c:PAN`), by that prefix and name exactly as the file writes them
//!   (prefixes are not resolved to namespace URIs).
//! - CDATA sections are text; comments and processing instructions are skipped; references
//!   in text are the five predefined entities and character references.

use zeroize::{Zeroize, Zeroizing};

use super::{
    Origin, Place, RawRecord, RecordSource, io_error, parse_count, structure, trim_ws, wipe,
};
use crate::order::encoding::TextReader;
use crate::order::product::{AbsentFields, CountSpec, Product, local};
use crate::order::validate::Reason;
use crate::xml::{self, Content, XmlError};
use crate::{Error, Result};

/// Slack over max-record-bytes for one event's markup (`<`, `>`, the look-ahead byte).
const EVENT_SLACK: usize = 64;

/// Element nesting depth allowed in an issuer XML file (at least what the product's paths
/// need).
const XML_DEPTH: usize = 64;

/// The longest declared count's text.
const COUNT_TEXT: usize = 64;

/// Whether the element or attribute `name` (as written in the file) matches `step` (as
/// written in the product): by local name, or exactly when the step has a prefix.
fn matches(step: &str, name: &str) -> bool {
    if step.contains(':') {
        step == name
    } else {
        step == local(name)
    }
}

/// A node of the fields' path tree: an element inside the record (node 0: the record
/// element itself).
#[derive(Default)]
struct Node {
    name: String,
    children: Vec<usize>,
    /// The field whose value is this element's text.
    text: Option<usize>,
    /// Fields that are attributes of this element: (attribute name, field).
    attrs: Vec<(String, usize)>,
}

/// The fields' paths as a tree rooted at the record element.
fn build_tree(p: &Product) -> Vec<Node> {
    let mut nodes = vec![Node::default()];
    for (i, f) in p.fields.iter().enumerate() {
        let Some(path) = &f.path else { continue };
        let mut at = 0;
        for step in &path.elements {
            at = match nodes[at].children.iter().find(|&&c| nodes[c].name == *step) {
                Some(&c) => c,
                None => {
                    nodes.push(Node {
                        name: step.clone(),
                        ..Node::default()
                    });
                    let c = nodes.len() - 1;
                    nodes[at].children.push(c);
                    c
                }
            };
        }
        match &path.attribute {
            Some(a) => nodes[at].attrs.push((a.clone(), i)),
            None => nodes[at].text = Some(i),
        }
    }
    nodes
}

/// The rules for the strict reader: no event longer than max-record-bytes (plus slack for
/// its markup), so that no hostile event is buffered whole; comments and processing
/// instructions skipped; references in text resolved (predefined entities and character
/// references only); CDATA as text; no DOCTYPE.
fn xml_rules(max_record_bytes: usize, depth: usize) -> xml::Rules {
    xml::Rules {
        event_bytes: max_record_bytes + EVENT_SLACK,
        max_depth: depth,
        comments: true,
        processing_instructions: true,
        text_references: true,
        cdata: true,
    }
}

#[derive(PartialEq, Eq)]
enum State {
    Prolog,
    InRoot,
    Done,
}

/// One event, classified, with the borrow of the event buffer ended. Text is in
/// `XmlSource::text`.
enum Ev {
    /// A start tag (`empty`: `<x/>`), its name in `XmlSource::name`; attributes read
    /// through `XmlSource::attrs`.
    Start {
        empty: bool,
    },
    End,
    Text,
    Eof,
    Other,
}

pub(super) struct XmlSource<'a> {
    r: xml::StrictReader<TextReader<'a>>,
    origin: Origin,
    buf: Zeroizing<Vec<u8>>,
    /// The last start tag's name.
    name: String,
    /// The last start tag's attributes that a field (or the root count) asked for:
    /// (name, value), values wiped after use.
    attr_values: Zeroizing<Vec<u8>>,
    attr_spans: Vec<(String, usize, usize)>,
    /// The last text event (text, CDATA, or a resolved reference).
    text: Zeroizing<Vec<u8>>,
    /// The value of the field element being read.
    value: Zeroizing<Vec<u8>>,
    record_path: Vec<String>,
    count_path: Option<Vec<String>>,
    count_attr: Option<String>,
    nodes: Vec<Node>,
    /// Per field: its name and column (for messages), whether it is required.
    field_names: Vec<(String, String, bool)>,
    absent_policy: AbsentFields,
    absent: Vec<usize>,
    /// Per field: the records in which it matched.
    hits: Vec<u64>,
    max: usize,
    /// The open elements' path, for messages.
    path: String,
    path_ends: Vec<usize>,
    /// Open elements, and how many of the outermost lie on the record / count path.
    depth: usize,
    on_record_path: usize,
    on_count_path: usize,
    count_text: Option<Zeroizing<Vec<u8>>>,
    declared: Option<u64>,
    number: u64,
    state: State,
}

impl<'a> XmlSource<'a> {
    pub(super) fn new(
        p: &Product,
        record_path: &[String],
        r: TextReader<'a>,
        origin: Origin,
    ) -> Self {
        let max = p.layout.max_record_bytes;
        let longest = p
            .fields
            .iter()
            .filter_map(|f| f.path.as_ref().map(|p| p.elements.len()))
            .max()
            .unwrap_or(0);
        let depth = XML_DEPTH.max(record_path.len() + longest + 1);
        Self {
            r: xml::StrictReader::new(r, xml_rules(max, depth)),
            origin,
            // At their maximum from the start (an event never exceeds max + slack): never
            // reallocated, so no unwiped copy is freed.
            buf: Zeroizing::new(Vec::with_capacity(max + EVENT_SLACK)),
            name: String::new(),
            attr_values: Zeroizing::new(Vec::with_capacity(max + EVENT_SLACK)),
            attr_spans: Vec::new(),
            text: Zeroizing::new(Vec::with_capacity(max + EVENT_SLACK)),
            value: Zeroizing::new(Vec::with_capacity(max + EVENT_SLACK)),
            record_path: record_path.to_vec(),
            count_path: match &p.layout.count {
                Some(CountSpec::Element(c)) => Some(c.clone()),
                _ => None,
            },
            count_attr: match &p.layout.count {
                Some(CountSpec::RootAttribute(a)) => Some(a.clone()),
                _ => None,
            },
            nodes: build_tree(p),
            field_names: p
                .fields
                .iter()
                .map(|f| (f.name.clone(), f.column.clone(), f.required))
                .collect(),
            absent_policy: p.layout.absent_fields,
            absent: Vec::new(),
            hits: vec![0; p.fields.len()],
            max,
            path: String::new(),
            path_ends: Vec::new(),
            depth: 0,
            on_record_path: 0,
            on_count_path: 0,
            count_text: None,
            declared: None,
            number: 0,
            state: State::Prolog,
        }
    }

    /// An error at the current line and element (and record, inside one).
    fn err(&self, in_record: bool, what: impl core::fmt::Display) -> Error {
        Place {
            origin: self.origin,
            line: self.r.line(),
            record: in_record.then_some(self.number),
            element: Some(&self.path),
        }
        .error(what)
    }

    fn push_path(&mut self) {
        if !self.path.is_empty() {
            self.path.push('/');
        }
        self.path_ends.push(self.path.len());
        if self.name.len() <= 32 {
            self.path.push_str(&self.name);
        } else {
            self.path.push_str(&xml::short_name(&self.name));
        }
    }

    fn pop_path(&mut self) {
        if let Some(at) = self.path_ends.pop() {
            self.path.truncate(at.saturating_sub(1));
            if at == 0 {
                self.path.clear();
            }
        }
    }

    /// The next event, classified; `want` is called on each attribute name of a start tag
    /// and says whether to keep its value (in `attr_values`).
    fn next(&mut self, in_record: bool, want: &dyn Fn(&Self, &str) -> bool) -> Result<Ev> {
        let mut buf = core::mem::take(&mut self.buf);
        wipe(&mut buf);
        let r = self.classify(&mut buf, in_record, want);
        self.buf = buf;
        r
    }

    fn classify(
        &mut self,
        buf: &mut Zeroizing<Vec<u8>>,
        in_record: bool,
        want: &dyn Fn(&Self, &str) -> bool,
    ) -> Result<Ev> {
        let ev = match self.r.next(buf) {
            Ok(ev) => ev,
            Err(XmlError::TooLarge { at }) => {
                return Err(self.err(
                    in_record,
                    format!(
                        "one XML event (text, tag, comment or whitespace) near byte {at} of the text is larger than max-record-bytes ({})",
                        self.max
                    ),
                ));
            }
            Err(XmlError::Refused(r)) => return Err(self.err(in_record, r)),
            Err(XmlError::Io(e)) => return Err(io_error(e, "reading the issuer file")),
            Err(XmlError::Malformed { error, truncated }) => {
                let what = if truncated {
                    format!("the file ends inside markup (truncated?): {error}")
                } else {
                    format!("not well-formed ({error})")
                };
                return Err(self.err(in_record, what));
            }
        };
        Ok(match ev {
            Content::Start(ref s) | Content::Empty(ref s) => {
                let empty = matches!(ev, Content::Empty(_));
                self.name.clear();
                self.name.push_str(s.name().as_ref());
                wipe(&mut self.attr_values);
                self.attr_spans.clear();
                for a in s.attributes() {
                    let a =
                        a.map_err(|e| self.err(in_record, format!("malformed attribute ({e})")))?;
                    let key: &str = a.key.as_ref();
                    if !want(self, key) {
                        continue;
                    }
                    let mut v = xml::attribute_value(&a)
                        .map_err(|e| self.err(in_record, format!("attribute {key}: {e}")))?;
                    let start = self.attr_values.len();
                    if start + v.len() > self.max {
                        return Err(
                            self.err(in_record, "attribute values larger than max-record-bytes")
                        );
                    }
                    self.attr_values.extend_from_slice(v.as_bytes());
                    if let std::borrow::Cow::Owned(o) = &mut v {
                        o.zeroize();
                    }
                    self.attr_spans
                        .push((key.to_string(), start, self.attr_values.len()));
                }
                Ev::Start { empty }
            }
            Content::End(_) => Ev::End,
            Content::Text(t) => {
                self.set_text(t.as_bytes());
                Ev::Text
            }
            Content::CData(c) => {
                self.set_text(c.as_bytes());
                Ev::Text
            }
            Content::Char(c) => {
                let mut tmp = [0u8; 4];
                let s = c.encode_utf8(&mut tmp);
                self.set_text(s.as_bytes());
                Ev::Text
            }
            Content::Eof => Ev::Eof,
            Content::Decl(_) | Content::Skipped => Ev::Other,
        })
    }

    fn set_text(&mut self, t: &[u8]) {
        wipe(&mut self.text);
        // An event is at most max + slack bytes, the buffer's capacity: no reallocation.
        self.text.extend_from_slice(t);
    }

    /// The value of attribute `name` of the last start tag, if kept.
    fn attr(&self, step: &str) -> Option<&[u8]> {
        self.attr_spans
            .iter()
            .find(|(k, _, _)| matches(step, k))
            .map(|&(_, a, b)| &self.attr_values[a..b])
    }

    /// Outside records: a start tag at `self.depth` (before it is counted). Returns whether
    /// it is a record element.
    fn enter(&mut self, empty: bool) -> Result<bool> {
        let d = self.depth;
        if self.state == State::Prolog {
            if !matches(&self.record_path[0], &self.name) {
                return Err(self.err(
                    false,
                    format!(
                        "the root element is <{}>, but record-path starts at <{}>",
                        xml::short_name(&self.name),
                        self.record_path[0]
                    ),
                ));
            }
            self.state = State::InRoot;
            if let Some(a) = &self.count_attr {
                let v = self.attr(a).map(<[u8]>::to_vec);
                self.declared = Some(match v {
                    Some(v) => parse_count(&v).map_err(|e| self.err(false, e))?,
                    None => {
                        return Err(self.err(
                            false,
                            format!("the root element has no declared count (attribute {a})"),
                        ));
                    }
                });
            }
        }
        self.push_path();
        if let Some(cp) = &self.count_path
            && self.on_count_path == d
            && d < cp.len()
            && matches(&cp[d], &self.name)
        {
            self.on_count_path += 1;
            if self.on_count_path == cp.len() {
                if self.declared.is_some() {
                    return Err(self.err(false, "the declared count is given twice"));
                }
                self.count_text = Some(Zeroizing::new(Vec::new()));
                if empty {
                    return Err(self.err(false, "the declared record count is empty"));
                }
            }
        }
        if self.on_record_path == d
            && d < self.record_path.len()
            && matches(&self.record_path[d], &self.name)
        {
            if d + 1 == self.record_path.len() {
                return Ok(true);
            }
            self.on_record_path += 1;
        }
        self.depth += 1;
        if empty {
            self.leave()?;
        }
        Ok(false)
    }

    /// Outside records: an end tag.
    fn leave(&mut self) -> Result<()> {
        if let (Some(cp), Some(t)) = (&self.count_path, &self.count_text)
            && self.depth == cp.len()
        {
            let n = parse_count(t).map_err(|e| self.err(false, e))?;
            self.declared = Some(n);
            self.count_text = None;
        }
        self.depth -= 1;
        self.on_record_path = self.on_record_path.min(self.depth);
        self.on_count_path = self.on_count_path.min(self.depth);
        self.pop_path();
        Ok(())
    }

    /// After the root element: only whitespace, comments and PIs; then the checks that need
    /// the whole file.
    fn finish(&mut self) -> Result<()> {
        loop {
            match self.next(false, &|_, _| false)? {
                Ev::Eof => break,
                Ev::Text if trim_ws(&self.text).is_empty() => {}
                Ev::Other => {}
                _ => return Err(self.err(false, "content after the root element")),
            }
        }
        self.state = State::Done;
        if let Some(cp) = &self.count_path
            && self.declared.is_none()
        {
            return Err(structure(format!(
                "the file has no {} element (the declared record count)",
                cp.join("/")
            )));
        }
        if self.number == 0 {
            return Ok(());
        }
        for (i, (name, column, required)) in self.field_names.iter().enumerate() {
            if self.hits[i] > 0 {
                continue;
            }
            if *required || self.absent_policy == AbsentFields::Error {
                return Err(structure(format!(
                    "field {name} ({column}) matches in none of the file's {} records: a typo in the product?{}",
                    self.number,
                    if *required {
                        ""
                    } else {
                        " (with absent-fields=\"warn\" an optional field may be absent)"
                    }
                )));
            }
            self.absent.push(i);
        }
        Ok(())
    }

    /// Reads one record, its start tag just read (attributes in `attr_spans`, its name on
    /// `path`).
    fn record(&mut self, empty: bool) -> Result<RawRecord> {
        self.number += 1;
        let fields = self.field_names.len();
        let mut rec = RawRecord::new(self.number, fields);
        let mut seen = vec![false; fields];
        let start = self.r.position();
        self.open(Some(0), &mut rec, &mut seen);
        if empty {
            self.close(Some(0), &mut rec, &mut seen);
            self.pop_path();
            return Ok(rec);
        }
        // The open elements inside the record: a node of the fields' tree, or unmapped
        // (its sub-tree skipped).
        let mut stack: Vec<Option<usize>> = vec![Some(0)];
        loop {
            if self.r.position() - start > self.max as u64 {
                return Err(self.err(true, "a record is larger than max-record-bytes"));
            }
            let top = stack.last().copied().flatten();
            match self.next(true, &|s: &Self, key: &str| want_attr(&s.nodes, top, key))? {
                Ev::Start { empty } => {
                    if let Some(f) = top.and_then(|t| self.nodes[t].text) {
                        // A field's element holds an element: its value is not text.
                        rec.flag(Reason::FieldFormat, Some(f));
                    }
                    let node = top.and_then(|t| {
                        self.nodes[t]
                            .children
                            .iter()
                            .copied()
                            .find(|&c| matches(&self.nodes[c].name, &self.name))
                    });
                    self.push_path();
                    self.open(node, &mut rec, &mut seen);
                    if empty {
                        self.close(node, &mut rec, &mut seen);
                        self.pop_path();
                    } else {
                        stack.push(node);
                    }
                }
                Ev::Text => {
                    if top.is_some_and(|t| self.nodes[t].text.is_some()) {
                        if self.value.len() + self.text.len() > self.max {
                            return Err(self.err(true, "a field is larger than max-record-bytes"));
                        }
                        self.value.extend_from_slice(&self.text);
                    }
                }
                Ev::End => {
                    let node = stack.pop().flatten();
                    self.close(node, &mut rec, &mut seen);
                    self.pop_path();
                    if stack.is_empty() {
                        return Ok(rec);
                    }
                }
                Ev::Eof => {
                    return Err(self.err(true, "the file ends inside a record (truncated?)"));
                }
                Ev::Other => {}
            }
        }
    }

    /// A start tag inside the record, of tree node `node`: its attribute fields; the
    /// start of its text field.
    fn open(&mut self, node: Option<usize>, rec: &mut RawRecord, seen: &mut [bool]) {
        let Some(n) = node else { return };
        for k in 0..self.nodes[n].attrs.len() {
            let f = self.nodes[n].attrs[k].1;
            let step = &self.nodes[n].attrs[k].0;
            let Some((a, b)) = self
                .attr_spans
                .iter()
                .find(|(key, _, _)| matches(step, key))
                .map(|&(_, a, b)| (a, b))
            else {
                continue;
            };
            if self.hit(rec, seen, f) {
                rec.set(f, trim_ws(&self.attr_values[a..b]));
            }
        }
        if self.nodes[n].text.is_some() {
            wipe(&mut self.value);
        }
    }

    /// An end tag inside the record, of tree node `node`: its text field's value.
    fn close(&mut self, node: Option<usize>, rec: &mut RawRecord, seen: &mut [bool]) {
        if let Some(f) = node.and_then(|n| self.nodes[n].text) {
            if self.hit(rec, seen, f) {
                rec.set(f, trim_ws(&self.value));
            }
            wipe(&mut self.value);
        }
    }

    /// A field matched in this record: counted once, `true` the first time; a second
    /// match rejects the record (`field-repeated`).
    fn hit(&mut self, rec: &mut RawRecord, seen: &mut [bool], f: usize) -> bool {
        if seen[f] {
            rec.flag(Reason::FieldRepeated, Some(f));
            // Neither value stands (not even as the record id in the reject report).
            rec.spans[f] = None;
            false
        } else {
            seen[f] = true;
            self.hits[f] += 1;
            true
        }
    }
}

/// Whether a start tag's attribute `key` is a field of the element it opens (whose parent
/// is node `top`; the tag's own node is not known yet, so every attribute name that any
/// child of `top` asks for is kept).
fn want_attr(nodes: &[Node], top: Option<usize>, key: &str) -> bool {
    let Some(t) = top else { return false };
    nodes[t]
        .children
        .iter()
        .any(|&c| nodes[c].attrs.iter().any(|(a, _)| matches(a, key)))
}

impl RecordSource for XmlSource<'_> {
    fn next_record(&mut self) -> Result<Option<RawRecord>> {
        if self.state == State::Done {
            return Ok(None);
        }
        loop {
            let in_root = self.state == State::InRoot;
            let ev = self.next(false, &|s: &Self, key: &str| {
                (s.state == State::Prolog
                    && s.count_attr.as_deref().is_some_and(|a| matches(a, key)))
                    || s.nodes[0].attrs.iter().any(|(a, _)| matches(a, key))
            })?;
            match ev {
                Ev::Start { empty } => {
                    if self.enter(empty)? {
                        let rec = self.record(empty)?;
                        return Ok(Some(rec));
                    }
                }
                Ev::End => {
                    self.leave()?;
                    if self.depth == 0 {
                        self.finish()?;
                        return Ok(None);
                    }
                }
                Ev::Text => {
                    if !in_root && !trim_ws(&self.text).is_empty() {
                        return Err(self.err(false, "text outside the root element"));
                    }
                    if let Some(t) = &mut self.count_text {
                        if t.len() + self.text.len() > COUNT_TEXT {
                            return Err(structure("the declared record count is not a number"));
                        }
                        t.extend_from_slice(&self.text);
                    }
                }
                Ev::Eof => {
                    return Err(match self.state {
                        State::Prolog => structure("the file is empty (no root element)"),
                        _ => self.err(false, "the file ends inside the root element (truncated?)"),
                    });
                }
                Ev::Other => {}
            }
        }
    }

    fn declared_count(&self) -> Option<u64> {
        self.declared
    }

    fn absent_fields(&self) -> Vec<usize> {
        self.absent.clone()
    }
}
