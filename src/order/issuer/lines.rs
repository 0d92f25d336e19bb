//! Delimited and fixed-width layouts: one record per (logical) line of UTF-8 text.

use std::io::BufRead;

use zeroize::Zeroizing;

use super::{Origin, Place, RawRecord, RecordSource, io_error, parse_count, structure, trim, wipe};
use crate::order::encoding::TextReader;
use crate::order::product::{AbsentFields, CountSpec, LayoutKind, Product};
use crate::order::validate::Reason;
use crate::{Error, Result};

pub(super) struct LineSource<'a> {
    r: TextReader<'a>,
    origin: Origin,
    /// Lines consumed so far; the current logical line started at `line_start`.
    lines: u64,
    line_start: u64,
    /// Fixed: the header line's marker, until the header is read.
    header_marker: Option<String>,
    absent_policy: AbsentFields,
    absent: Vec<usize>,
    /// Fixed: byte offsets of the current line's characters (non-ASCII lines only).
    chars: Vec<usize>,
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
    /// Per field: name, column, required.
    product_fields: Vec<(String, String, bool)>,
}

impl<'a> LineSource<'a> {
    pub(super) fn new(p: &Product, r: TextReader<'a>, origin: Origin) -> Result<Self> {
        let header = matches!(p.layout.kind, LayoutKind::Delimited { header: true, .. });
        Ok(Self {
            r,
            origin,
            lines: 0,
            line_start: 0,
            header_marker: p.layout.header_marker.clone(),
            absent_policy: p.layout.absent_fields,
            absent: Vec::new(),
            chars: Vec::new(),
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
                .map(|f| (f.name.clone(), f.column.clone(), f.required))
                .collect(),
        })
    }

    /// The number the line being read has as a data record (past the header; it may yet
    /// turn out to be the trailer).
    fn data_record(&self) -> Option<u64> {
        (!self.header_pending && self.header_marker.is_none()).then_some(self.number + 1)
    }

    /// An error at the current line (and record, when one is being read).
    fn err(&self, record: Option<u64>, what: impl core::fmt::Display) -> Error {
        Place {
            origin: self.origin,
            line: self.line_start,
            record,
            element: None,
        }
        .error(what)
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
        self.line_start = self.lines + 1;
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
                    return Err(self.err(
                        self.data_record(),
                        "the file ends inside a quoted field that starts on this line (an unbalanced quote)",
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
                return Err(self.err(
                    self.data_record(),
                    format!("the line is longer than max-record-bytes ({})", self.max),
                ));
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
        // Newlines inside quoted fields, and the one that ends the line.
        self.lines =
            self.line_start - 1 + self.line.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(true)
    }

    /// Fixed: the bytes of characters `s..s+l` (0-based) of the current line, cut short at
    /// its end; `None` when the line is not UTF-8.
    fn chars_at(&mut self, s: usize, l: usize) -> Option<(usize, usize)> {
        if self.line.is_ascii() {
            let a = s.min(self.line.len());
            return Some((a, s.saturating_add(l).min(self.line.len())));
        }
        if self.chars.is_empty() {
            let text = core::str::from_utf8(&self.line).ok()?;
            self.chars.extend(text.char_indices().map(|(i, _)| i));
            self.chars.push(self.line.len());
        }
        let n = self.chars.len() - 1;
        Some((self.chars[s.min(n)], self.chars[s.saturating_add(l).min(n)]))
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
        if let Some(marker) = self.header_marker.take() {
            // Fixed: the header line only has to be there.
            if !self.line.starts_with(marker.as_bytes()) {
                return Err(self.err(
                    None,
                    format!("the first line is not the header line (starting with {marker})"),
                ));
            }
            return Ok(());
        }
        if !self.split() {
            return Err(self.err(None, "the header row has a malformed quote"));
        }
        let names: Vec<String> = (0..self.spans.len())
            .map(|i| String::from_utf8_lossy(trim(self.cell(i).unwrap_or_default())).into_owned())
            .collect();
        for (k, (name, col, required)) in self.product_fields.iter().enumerate() {
            let idx = names.iter().position(|n| n == col);
            if idx.is_none() {
                if *required {
                    return Err(self.err(
                        None,
                        format!("the header row has no column '{col}', which the product requires (field {name})"),
                    ));
                }
                if self.absent_policy == AbsentFields::Error {
                    return Err(self.err(
                        None,
                        format!(
                            "the header row has no column '{col}' (field {name}): a typo in the product? (with absent-fields=\"warn\" an optional field may be absent)"
                        ),
                    ));
                }
                self.absent.push(k);
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
                    return Err(self.err(None, "the trailer line is too short for its count"));
                }
                parse_count(&self.line[s..e]).map_err(|e| self.err(None, e))
            }
            (Some(CountSpec::Trailer { column, .. }), _) => parse_count(
                self.cell(column - 1)
                    .ok_or_else(|| self.err(None, "the trailer has no count column"))?,
            )
            .map_err(|e| self.err(None, e)),
            _ => Err(structure("no trailer expected")),
        }
    }
}

impl RecordSource for LineSource<'_> {
    fn next_record(&mut self) -> Result<Option<RawRecord>> {
        if self.done {
            return Ok(None);
        }
        if self.header_pending || self.header_marker.is_some() {
            self.read_header()?;
        }
        loop {
            if !self.read_line()? {
                self.done = true;
                if matches!(self.count, Some(CountSpec::Trailer { .. })) {
                    return Err(self.err(
                        None,
                        format!(
                            "the file ends without its trailer after {} records (truncated?)",
                            self.number
                        ),
                    ));
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
                        return Err(self.err(None, "data after the trailer line"));
                    }
                }
                self.done = true;
                return Ok(None);
            }
            match self.kind {
                LayoutKind::Fixed => {
                    // Positions count characters (a byte each in a single-byte encoding).
                    self.chars.clear();
                    for k in 0..self.positions.len() {
                        let (s, l) = self.positions[k];
                        match self.chars_at(s, l) {
                            Some((a, b)) => {
                                let v = &self.line[a..b];
                                rec.set(k, v);
                            }
                            None => {
                                rec.flag(Reason::FieldFormat, None);
                                break;
                            }
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

    fn absent_fields(&self) -> Vec<usize> {
        self.absent.clone()
    }
}
