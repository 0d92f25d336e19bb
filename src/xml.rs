//! The strict XML guard that every XML parser in the crate reads through: the XOF reader
//! (`xof/read.rs`), the issuer XML layout (`order/issuer.rs`) and product files
//! (`order/product.rs`).
//!
//! quick-xml has no DTD support, but on its own it still
//! - buffers a whole event (a tag with its attributes, a text node, a comment) before
//!   returning it, so one hostile event can make it buffer the rest of the file;
//! - hands a DOCTYPE, CDATA, comments, processing instructions and entity references to
//!   the caller as events that each parser would have to remember to refuse.
//!
//! [`StrictReader`] closes both in one place:
//! - every event is read under a byte budget ([`Budget`]): the read fails as soon as the
//!   event passes the budget, before the extra bytes are buffered;
//! - every event is screened ([`screen`]) against the parser's [`Rules`]: a DOCTYPE (hence
//!   any entity declaration, internal or external) is always refused; CDATA, comments,
//!   processing instructions and references in text only where the parser allows them (the
//!   issuer XML layout takes CDATA as text; the XOF and product files refuse it), and then
//!   only the five predefined entities and character references; no element deeper than the
//!   parser's depth limit.
//!
//! Attribute values go through [`attribute_value`]: the same predefined entities and
//! character references, nothing else.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, Read};

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesCData, BytesDecl, BytesEnd, BytesRef, BytesStart, BytesText, Event};

/// What a parser lets through. Everything not named here (a DOCTYPE) is refused.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    /// Bytes one event may take from the input (a tag with its attributes, a text node, a
    /// comment, a run of whitespace).
    pub event_bytes: usize,
    /// Element nesting depth; the root element is at depth 1.
    pub max_depth: usize,
    /// Comments are skipped ([`Content::Skipped`]); otherwise refused.
    pub comments: bool,
    /// Processing instructions are skipped ([`Content::Skipped`]); otherwise refused.
    pub processing_instructions: bool,
    /// References in text are resolved ([`Content::Char`]): the five predefined entities
    /// and character references, any other entity refused. Otherwise every reference in
    /// text is refused (attribute values are [`attribute_value`]'s business).
    pub text_references: bool,
    /// CDATA sections are text ([`Content::CData`]); otherwise refused.
    pub cdata: bool,
}

/// One screened event: only what [`Rules`] let through.
#[derive(Debug)]
pub(crate) enum Content<'b> {
    /// An XML declaration (`<?xml ...?>`); where it may stand is the parser's business.
    Decl(BytesDecl<'b>),
    /// A start tag.
    Start(BytesStart<'b>),
    /// An empty-element tag (`<x/>`).
    Empty(BytesStart<'b>),
    /// An end tag.
    End(BytesEnd<'b>),
    /// Text (without references: those come as [`Content::Char`]).
    Text(BytesText<'b>),
    /// A reference in text, resolved (only with [`Rules::text_references`]).
    Char(char),
    /// A CDATA section's text, as it stands (only with [`Rules::cdata`]).
    CData(BytesCData<'b>),
    /// A comment or processing instruction that the rules allow: nothing to do.
    Skipped,
    /// The end of the input.
    Eof,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A document type declaration (and with it any entity declaration).
    DocType,
    /// A CDATA section.
    Cdata,
    /// A comment, where the rules allow none.
    Comment,
    /// A processing instruction, where the rules allow none.
    ProcessingInstruction,
    /// A reference in text, where the rules allow none.
    Reference,
    /// An entity other than the five predefined ones.
    Entity,
    /// A character reference that names no character.
    CharRef,
    /// An element deeper than the depth limit (name shortened for messages).
    TooDeep {
        /// The element's name, at most 32 characters.
        element: String,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::DocType => f.write_str("a DOCTYPE is not allowed"),
            Refused::Cdata => f.write_str("CDATA sections are not allowed"),
            Refused::Comment => f.write_str("comments are not allowed"),
            Refused::ProcessingInstruction => {
                f.write_str("processing instructions are not allowed")
            }
            Refused::Reference => {
                f.write_str("entity and character references are allowed only in attribute values")
            }
            Refused::Entity => f.write_str("only the predefined XML entities are allowed"),
            Refused::CharRef => f.write_str("bad character reference"),
            Refused::TooDeep { element, max } => {
                write!(f, "element <{element}> nests deeper than {max} levels")
            }
        }
    }
}

/// What stopped a read. Each parser words it with its own context (file, line, byte).
#[derive(Debug)]
pub(crate) enum XmlError {
    /// One event passed [`Rules::event_bytes`]; `at` is the input offset where it stopped.
    TooLarge {
        /// Bytes consumed from the input when the budget ran out.
        at: u64,
    },
    /// An event the rules refuse.
    Refused(Refused),
    /// Not well-formed XML; `truncated` when a syntax error meets the end of the input.
    Malformed {
        /// quick-xml's error.
        error: quick_xml::Error,
        /// The input ended inside markup.
        truncated: bool,
    },
    /// The input failed (the underlying reader's own error, unchanged).
    Io(io::Error),
}

// ---- the byte budget ----

/// A `BufRead` that lets one event consume at most its budget: quick-xml buffers a whole
/// event before returning it, so without this a single hostile event (a huge tag, text
/// node, comment or whitespace run) could make it buffer the rest of the input. Once the
/// budget is spent and input remains, `fill_buf` fails (and records where), before any
/// further byte reaches quick-xml's buffer. Also counts lines and bytes for messages.
struct Budget<R> {
    inner: R,
    left: usize,
    exceeded_at: Option<u64>,
    lines: u64,
    consumed: u64,
}

impl<R: BufRead> Budget<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            left: 0,
            exceeded_at: None,
            lines: 0,
            consumed: 0,
        }
    }

    /// A fresh budget for the next event.
    fn refill(&mut self, bytes: usize) {
        self.left = bytes;
    }

    fn at_eof(&mut self) -> bool {
        matches!(self.inner.fill_buf(), Ok(b) if b.is_empty())
    }
}

impl<R: BufRead> Read for Budget<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(out.len());
            out[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Budget<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.left == 0 {
            // The end of the input right at the budget is no excess.
            if self.inner.fill_buf()?.is_empty() {
                return Ok(&[]);
            }
            self.exceeded_at = Some(self.consumed);
            return Err(io::Error::other("XML event size limit"));
        }
        let left = self.left;
        let b = self.inner.fill_buf()?;
        Ok(&b[..b.len().min(left)])
    }

    fn consume(&mut self, amt: usize) {
        if let Ok(b) = self.inner.fill_buf() {
            let n = amt.min(b.len());
            self.lines += b[..n].iter().filter(|&&c| c == b'\n').count() as u64;
        }
        self.inner.consume(amt);
        self.left = self.left.saturating_sub(amt);
        self.consumed += amt as u64;
    }
}

// ---- the strict quick-xml configuration ----

/// Sets up a quick-xml reader strictly: end tags must match their start tags, no unmatched
/// end tag, no bare `&`, empty elements reported as such, text untrimmed (whitespace is
/// the parser's business).
pub(crate) fn strict<R>(mut xml: quick_xml::Reader<R>) -> quick_xml::Reader<R> {
    let c = xml.config_mut();
    c.trim_text(false);
    c.expand_empty_elements = false;
    c.check_end_names = true;
    c.allow_unmatched_ends = false;
    c.allow_dangling_amp = false;
    xml
}

// ---- screening ----

/// A name shortened to 32 characters for an error message.
pub(crate) fn short_name(name: &str) -> String {
    if name.chars().count() > 32 {
        format!("{}...", name.chars().take(32).collect::<String>())
    } else {
        name.to_string()
    }
}

/// A reference in text resolved to its character: one of the five predefined entities or
/// a character reference; anything else is refused.
pub(crate) fn resolve_reference(r: &BytesRef<'_>) -> Result<char, Refused> {
    if r.is_char_ref() {
        return r.resolve_char_ref().ok().flatten().ok_or(Refused::CharRef);
    }
    resolve_xml_entity(r)
        .and_then(|s| s.chars().next())
        .ok_or(Refused::Entity)
}

/// Screens one event against `rules`; `depth` is the current element depth (updated).
pub(crate) fn screen<'b>(
    ev: Event<'b>,
    rules: &Rules,
    depth: &mut usize,
) -> Result<Content<'b>, Refused> {
    let too_deep = |e: &BytesStart<'_>| Refused::TooDeep {
        element: short_name(e.name().as_ref()),
        max: rules.max_depth,
    };
    Ok(match ev {
        Event::Start(e) => {
            if *depth >= rules.max_depth {
                return Err(too_deep(&e));
            }
            *depth += 1;
            Content::Start(e)
        }
        Event::Empty(e) => {
            if *depth >= rules.max_depth {
                return Err(too_deep(&e));
            }
            Content::Empty(e)
        }
        Event::End(e) => {
            *depth = depth.saturating_sub(1);
            Content::End(e)
        }
        Event::Text(t) => Content::Text(t),
        Event::Decl(d) => Content::Decl(d),
        Event::Eof => Content::Eof,
        Event::DocType(_) => return Err(Refused::DocType),
        Event::CData(c) if rules.cdata => Content::CData(c),
        Event::CData(_) => return Err(Refused::Cdata),
        Event::Comment(_) if rules.comments => Content::Skipped,
        Event::Comment(_) => return Err(Refused::Comment),
        Event::PI(_) if rules.processing_instructions => Content::Skipped,
        Event::PI(_) => return Err(Refused::ProcessingInstruction),
        Event::GeneralRef(r) if rules.text_references => Content::Char(resolve_reference(&r)?),
        Event::GeneralRef(_) => return Err(Refused::Reference),
    })
}

/// An attribute's value, normalized as XML 1.0 says, with the five predefined entities
/// and character references expanded; any other entity is an error.
pub(crate) fn attribute_value<'a>(a: &Attribute<'a>) -> quick_xml::Result<Cow<'a, str>> {
    a.normalized_value_with(XmlVersion::Implicit1_0, 1, resolve_xml_entity)
}

// ---- the reader ----

/// A quick-xml reader set up by [`strict`], reading through a [`Budget`] refilled for
/// every event, each event screened by [`screen`].
pub(crate) struct StrictReader<R> {
    xml: quick_xml::Reader<Budget<R>>,
    rules: Rules,
    depth: usize,
}

impl<R: BufRead> StrictReader<R> {
    /// Reads `input` under `rules`.
    pub(crate) fn new(input: R, rules: Rules) -> Self {
        Self {
            xml: strict(quick_xml::Reader::from_reader(Budget::new(input))),
            rules,
            depth: 0,
        }
    }

    /// The next event into `buf` (cleared first), screened. After an error the reader
    /// should not be used again.
    pub(crate) fn next<'b>(&mut self, buf: &'b mut Vec<u8>) -> Result<Content<'b>, XmlError> {
        buf.clear();
        self.xml.get_mut().refill(self.rules.event_bytes);
        match self.xml.read_event_into(buf) {
            Ok(ev) => screen(ev, &self.rules, &mut self.depth).map_err(XmlError::Refused),
            Err(e) => Err(self.fault(e)),
        }
    }

    fn fault(&mut self, e: quick_xml::Error) -> XmlError {
        let input = self.xml.get_mut();
        if let Some(at) = input.exceeded_at {
            return XmlError::TooLarge { at };
        }
        match e {
            quick_xml::Error::Io(io) => XmlError::Io(
                std::sync::Arc::try_unwrap(io)
                    .unwrap_or_else(|a| io::Error::new(a.kind(), a.to_string())),
            ),
            error => {
                let truncated = matches!(error, quick_xml::Error::Syntax(_)) && input.at_eof();
                XmlError::Malformed { error, truncated }
            }
        }
    }

    /// Where the last event ended, in bytes from the start of the input.
    pub(crate) fn position(&self) -> u64 {
        self.xml.buffer_position()
    }

    /// The 1-based line of the next byte to read.
    pub(crate) fn line(&self) -> u64 {
        self.xml.get_ref().lines + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Rules = Rules {
        event_bytes: 64,
        max_depth: 3,
        comments: true,
        processing_instructions: true,
        text_references: true,
        cdata: true,
    };
    const NONE: Rules = Rules {
        comments: false,
        processing_instructions: false,
        text_references: false,
        cdata: false,
        ..ALL
    };

    /// Every event of `doc` in a short form, or the first error.
    fn events(doc: &str, rules: Rules) -> Result<Vec<String>, XmlError> {
        let mut r = StrictReader::new(doc.as_bytes(), rules);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let s = match r.next(&mut buf)? {
                Content::Decl(_) => "decl".to_string(),
                Content::Start(e) => format!("<{}>", e.name().as_ref()),
                Content::Empty(e) => format!("<{}/>", e.name().as_ref()),
                Content::End(e) => format!("</{}>", e.name().as_ref()),
                Content::Text(t) => format!("{:?}", &*t),
                Content::Char(c) => format!("&{c}"),
                Content::CData(c) => format!("cdata {:?}", &*c),
                Content::Skipped => "skip".to_string(),
                Content::Eof => return Ok(out),
            };
            assert!(
                buf.len() <= rules.event_bytes,
                "{s}: {} bytes buffered",
                buf.len()
            );
            out.push(s);
        }
    }

    fn refused(doc: &str, rules: Rules) -> Refused {
        match events(doc, rules) {
            Err(XmlError::Refused(r)) => r,
            other => panic!("{doc}: {other:?}"),
        }
    }

    #[test]
    fn reads_a_plain_document() {
        let doc = "<?xml version=\"1.0\"?>\n<a x=\"1\"><b>hi</b><c/></a>";
        assert_eq!(
            events(doc, NONE).unwrap(),
            [
                "decl", "\"\\n\"", "<a>", "<b>", "\"hi\"", "</b>", "<c/>", "</a>"
            ]
        );
    }

    #[test]
    fn doctype_is_always_refused_and_cdata_follows_the_rules() {
        for rules in [ALL, NONE] {
            assert_eq!(refused("<!DOCTYPE a><a/>", rules), Refused::DocType);
            assert_eq!(
                refused("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", rules),
                Refused::DocType
            );
        }
        assert_eq!(refused("<a><![CDATA[x]]></a>", NONE), Refused::Cdata);
        // CDATA as it stands: no reference is expanded inside it.
        assert_eq!(
            events("<a><![CDATA[x &amp; <y>]]></a>", ALL).unwrap(),
            ["<a>", "cdata \"x &amp; <y>\"", "</a>"]
        );
    }

    #[test]
    fn comments_pis_and_references_follow_the_rules() {
        assert_eq!(refused("<a><!-- c --></a>", NONE), Refused::Comment);
        assert_eq!(
            refused("<a><?pi x?></a>", NONE),
            Refused::ProcessingInstruction
        );
        assert_eq!(refused("<a>&amp;</a>", NONE), Refused::Reference);
        assert_eq!(refused("<a>&#65;</a>", NONE), Refused::Reference);
        assert_eq!(
            events(
                "<a><!-- c --><?pi x?>&lt;&amp;&gt;&quot;&apos;&#65;&#x42;</a>",
                ALL
            )
            .unwrap(),
            [
                "<a>", "skip", "skip", "&<", "&&", "&>", "&\"", "&'", "&A", "&B", "</a>"
            ]
        );
        assert_eq!(refused("<a>&nbsp;</a>", ALL), Refused::Entity);
        assert_eq!(refused("<a>&#0;</a>", ALL), Refused::CharRef);
        assert_eq!(refused("<a>&#xD800;</a>", ALL), Refused::CharRef);
    }

    #[test]
    fn depth_is_limited() {
        assert!(events("<a><b><c/></b></a>", NONE).is_ok());
        assert!(events("<a><b><c></c></b></a><d/>", NONE).is_ok());
        let deep = refused("<a><b><c><d/></c></b></a>", NONE);
        assert_eq!(
            deep,
            Refused::TooDeep {
                element: "d".into(),
                max: 3
            }
        );
        assert_eq!(deep.to_string(), "element <d> nests deeper than 3 levels");
        let long = "n".repeat(40);
        let Refused::TooDeep { element, .. } = refused(&format!("<a><b><c><{long}>"), NONE) else {
            panic!()
        };
        assert_eq!(element, format!("{}...", "n".repeat(32)));
    }

    #[test]
    fn an_event_over_the_budget_fails_before_it_is_buffered() {
        // Each kind of event just over and just within the 64-byte budget. A text node
        // needs one byte more: quick-xml reads the `<` after it within the same event.
        for (over, within) in [
            (
                format!("<a>{}</a>", "x".repeat(64)),
                format!("<a>{}</a>", "x".repeat(63)),
            ),
            (
                format!("<a>{}</a>", " ".repeat(64)),
                format!("<a>{}</a>", " ".repeat(63)),
            ),
            (
                format!("<a b=\"{}\"/>", "x".repeat(56)),
                format!("<a b=\"{}\"/>", "x".repeat(55)),
            ),
            (
                format!("<!--{}--><a/>", "x".repeat(58)),
                format!("<!--{}--><a/>", "x".repeat(57)),
            ),
        ] {
            assert!(
                matches!(events(&over, ALL), Err(XmlError::TooLarge { .. })),
                "{over}"
            );
            assert!(events(&within, ALL).is_ok(), "{within}");
        }
        // Where it stopped: after the 3 bytes of <a> and the 64-byte budget.
        let Err(XmlError::TooLarge { at }) = events(&format!("<a>{}", "x".repeat(1000)), ALL)
        else {
            panic!()
        };
        assert_eq!(at, 3 + 64);
        // The input may end exactly where the budget does.
        assert!(events(&format!("<a/>{}", " ".repeat(64)), ALL).is_ok());
    }

    #[test]
    fn malformed_and_truncated_input() {
        let truncated = |doc: &str| match events(doc, NONE) {
            Err(XmlError::Malformed { truncated, .. }) => truncated,
            other => panic!("{doc}: {other:?}"),
        };
        assert!(truncated("<a><b"));
        assert!(truncated("<a><!-"));
        assert!(!truncated("<a></b>"));
        let mut r = StrictReader::new(&b"<a>\xC3(</a>"[..], NONE);
        assert!(matches!(r.next(&mut Vec::new()), Ok(Content::Start(_))));
        assert!(matches!(
            r.next(&mut Vec::new()),
            Err(XmlError::Malformed {
                error: quick_xml::Error::Encoding(_),
                truncated: false
            })
        ));
    }

    #[test]
    fn counts_lines_and_positions() {
        let mut r = StrictReader::new(&b"<a>\n<b/>\n\n<c/></a>"[..], NONE);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        loop {
            let line = r.line();
            match r.next(&mut buf).unwrap() {
                Content::Eof => break,
                Content::Empty(e) => seen.push((e.name().as_ref().to_string(), line)),
                _ => {}
            }
        }
        assert_eq!(seen, [("b".to_string(), 2), ("c".to_string(), 4)]);
        assert_eq!(r.position(), "<a>\n<b/>\n\n<c/></a>".len() as u64);
    }

    #[test]
    fn attribute_values_expand_only_predefined_entities() {
        let value = |v: &str| {
            let tag = format!("a x=\"{v}\"");
            let e = BytesStart::from_content(tag.as_str(), 1);
            let a = e.attributes().next().unwrap().unwrap();
            attribute_value(&a).map(Cow::into_owned)
        };
        assert_eq!(value("&lt;&amp;&#65;\tb").unwrap(), "<&A b");
        assert!(value("&xxe;").is_err());
        assert!(value("&#0;").is_err());
    }
}
