//! The production-file pull reader: strict, one card at a time, over buffers it owns and
//! clears every iteration. Built on the XOF reader's pieces (`xof::read`, over the one
//! strict XML guard `crate::xml`): the same rules and per-event byte budget, the same
//! attribute handling and error context, the same limits.

use std::io::BufRead;

use crate::hsm::{Hsm, KeyHandle};
use crate::keyblock::KeyUsage;
use crate::xml::Content as Event;
use crate::xof::canon::Mac16;
use crate::xof::read::{
    Ctx, RULES, Xml, decode_hex_into, each_attr, is_ws, name_is, parse_mac, parse_u64, read_event,
    set, unexpected,
};
use crate::xof::{KeyRef, ReadOptions};
use crate::{Algorithm, Error, Kcv, MacAlgorithm, Padding, Result};

use super::limits::{MAX_CARD_BYTES, MAX_DGI_DATA, MAX_DGIS, MAX_EVENT_BYTES, MAX_KEYS};
use super::{
    Card, Dgi, Header, Protection, VERSION, canon, check_dgi, check_header, check_mac_key,
    parse_mode, parse_padding,
};

enum Item {
    Card,
    Trailer { count: u64, mac: Mac16 },
}

struct Parser<R> {
    xml: Xml<R>,
    buf: Vec<u8>,
    hex: Vec<u8>,
    ctx: Ctx,
    header: Header,
    header_mac: Mac16,
    header_line: u64,
    card: Card,
    card_mac: Mac16,
    card_line: u64,
    pool: Vec<Dgi>,
}

fn parse_id(s: &str) -> Option<u16> {
    let mut b = [0u8; 2];
    (s.len() == 4)
        .then(|| hex::decode_to_slice(s, &mut b).ok())
        .flatten()
        .map(|()| u16::from_be_bytes(b))
}

impl<R: BufRead> Parser<R> {
    fn new(input: R, name: &str) -> Self {
        Self {
            xml: Xml::new(input, RULES),
            buf: Vec::with_capacity(4096),
            hex: Vec::with_capacity(256),
            ctx: Ctx {
                name: name.to_string(),
                line: 1,
                record: None,
                unit: "card",
            },
            header: Header {
                order_id: String::new(),
                issuer: String::new(),
                product: String::new(),
                profile: String::new(),
                created: String::new(),
                keys: Vec::new(),
                mac_key: String::new(),
                test: false,
            },
            header_mac: [0; 16],
            header_line: 1,
            card: Card::default(),
            card_mac: [0; 16],
            card_line: 1,
            pool: Vec::new(),
        }
    }

    fn read_header(&mut self) -> Result<()> {
        let mut first = true;
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Event::Decl(d) if first => {
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
                Event::Text(t) if is_ws(t) => {}
                Event::Start(e) if name_is(e, "production") => {
                    let mut version = None;
                    each_attr(e, &self.ctx, |k, v| {
                        Ok(k == "version" && {
                            version = Some(v.into_owned());
                            true
                        })
                    })?;
                    match version.as_deref() {
                        None => {
                            return Err(self.ctx.err("<production> has no version attribute"));
                        }
                        Some(VERSION) => break,
                        Some(v) => {
                            return Err(Error::Unsupported(format!(
                                "production file version {:?} in {}: this reader reads version {VERSION}",
                                v.chars().take(16).collect::<String>(),
                                self.ctx.what_at(self.ctx.line)
                            )));
                        }
                    }
                }
                ev => return Err(unexpected(ev, &self.ctx, "<production version=\"1\">")),
            }
            first = false;
        }

        let mut mac = None;
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Event::Text(t) if is_ws(t) => {}
                Event::Start(e) if name_is(e, "header") => {
                    self.header_line = self.ctx.line;
                    let h = &mut self.header;
                    let mut seen = 0u8;
                    each_attr(e, &self.ctx, |k, v| {
                        let (bit, dst) = match k {
                            "order-id" => (1, &mut h.order_id),
                            "issuer" => (2, &mut h.issuer),
                            "product" => (4, &mut h.product),
                            "profile" => (8, &mut h.profile),
                            "created" => (16, &mut h.created),
                            "mac-key" => (32, &mut h.mac_key),
                            "test" => {
                                if v != "true" {
                                    return Err(self
                                        .ctx
                                        .err("header test must be true when present"));
                                }
                                h.test = true;
                                return Ok(true);
                            }
                            "mac" => {
                                mac = Some(parse_mac(&v).ok_or_else(|| {
                                    self.ctx.err("header mac must be 32 hex digits")
                                })?);
                                seen |= 64;
                                return Ok(true);
                            }
                            _ => return Ok(false),
                        };
                        set(dst, &v);
                        seen |= bit;
                        Ok(true)
                    })?;
                    if seen != 127 {
                        return Err(self.ctx.err(
                            "<header> needs order-id, issuer, product, profile, created, mac-key and mac",
                        ));
                    }
                    break;
                }
                ev => return Err(unexpected(ev, &self.ctx, "<header>")),
            }
        }
        self.header_mac = mac.unwrap_or_default();

        let mut in_key = false;
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Event::Text(t) if is_ws(t) => {}
                Event::End(e) if in_key && e.name().as_ref() == "key" => in_key = false,
                Event::Start(e) | Event::Empty(e) if !in_key && name_is(e, "key") => {
                    in_key = matches!(ev, Event::Start(_));
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
                                    ctx.err("key usage must be a TR-31 code (K0, P0, D0, M6)")
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
                Event::End(e) if !in_key && e.name().as_ref() == "header" => break,
                ev => return Err(unexpected(ev, &self.ctx, "<key/> or </header>")),
            }
        }
        check_header(&self.header).map_err(|r| Error::Integrity {
            what: self.ctx.what_at(self.header_line),
            reason: r,
        })
    }

    fn next_item(&mut self) -> Result<Item> {
        self.ctx.record = None;
        let card_start;
        let empty;
        loop {
            let before = self.xml.position();
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Event::Text(t) if is_ws(t) => {}
                Event::Start(e) | Event::Empty(e) if name_is(e, "trailer") => {
                    let is_start = matches!(ev, Event::Start(_));
                    let (mut count, mut mac) = (None, None);
                    let ctx = &self.ctx;
                    each_attr(e, ctx, |k, v| {
                        match k {
                            "cards" => {
                                count = Some(parse_u64(&v).ok_or_else(|| {
                                    ctx.err("trailer cards must be a decimal count")
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
                        return Err(self.ctx.err("<trailer> needs cards and mac"));
                    };
                    if is_start {
                        self.expect_end("trailer")?;
                    }
                    return Ok(Item::Trailer { count, mac });
                }
                Event::Start(e) | Event::Empty(e) if name_is(e, "card") => {
                    empty = matches!(ev, Event::Empty(_));
                    card_start = before;
                    self.card_line = self.ctx.line;
                    let c = &mut self.card;
                    let (mut seq, mut id, mut mac) = (None, false, None);
                    let ctx = &self.ctx;
                    each_attr(e, ctx, |k, v| {
                        match k {
                            "seq" => {
                                seq =
                                    Some(parse_u64(&v).ok_or_else(|| {
                                        ctx.err("card seq must be a decimal number")
                                    })?)
                            }
                            "id" => {
                                set(&mut c.id, &v);
                                id = true;
                            }
                            "mac" => {
                                mac = Some(
                                    parse_mac(&v)
                                        .ok_or_else(|| ctx.err("card mac must be 32 hex digits"))?,
                                )
                            }
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    let (Some(seq), true, Some(mac)) = (seq, id, mac) else {
                        return Err(self.ctx.err("<card> needs seq, id and mac"));
                    };
                    self.card.seq = seq;
                    self.card_mac = mac;
                    self.ctx.record = Some(seq);
                    crate::xof::check_text(&self.card.id)
                        .map_err(|e| self.ctx.err(format!("card id {e}")))?;
                    break;
                }
                ev => return Err(unexpected(ev, &self.ctx, "<card> or <trailer>")),
            }
        }

        self.pool.append(&mut self.card.dgis);
        if empty {
            return Ok(Item::Card);
        }
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            if self.xml.position() - card_start > MAX_CARD_BYTES {
                return Err(Error::Integrity {
                    what: self.ctx.what_at(self.card_line),
                    reason: format!("card larger than {MAX_CARD_BYTES} bytes"),
                });
            }
            match &ev {
                Event::Text(t) if is_ws(t) => {}
                Event::End(e) if e.name().as_ref() == "card" => break,
                Event::Start(e) | Event::Empty(e) if name_is(e, "dgi") => {
                    let is_start = matches!(ev, Event::Start(_));
                    if self.card.dgis.len() >= MAX_DGIS {
                        return Err(self.ctx.err(format!("more than {MAX_DGIS} DGIs in a card")));
                    }
                    let mut d = self.pool.pop().unwrap_or(Dgi {
                        id: 0,
                        protection: None,
                        data: Vec::new(),
                    });
                    let mut p = d.protection.take().unwrap_or(Protection {
                        key: String::new(),
                        mode: crate::Mode::Ecb,
                        iv: None,
                        padding: Padding::None,
                    });
                    let mut iv_buf = p.iv.take().unwrap_or_default();
                    let (mut id, mut key, mut mode, mut padding, mut iv) =
                        (None, false, false, false, false);
                    let ctx = &self.ctx;
                    each_attr(e, ctx, |k, v| {
                        match k {
                            "id" => {
                                id = Some(
                                    parse_id(&v)
                                        .ok_or_else(|| ctx.err("dgi id must be 4 hex digits"))?,
                                )
                            }
                            "key" => {
                                set(&mut p.key, &v);
                                key = true;
                            }
                            "mode" => {
                                p.mode = parse_mode(&v)
                                    .ok_or_else(|| ctx.err("dgi mode must be ecb or cbc"))?;
                                mode = true;
                            }
                            "padding" => {
                                p.padding = parse_padding(&v)
                                    .ok_or_else(|| ctx.err("dgi padding must be none or 2"))?;
                                padding = true;
                            }
                            "iv" => {
                                if !decode_hex_into(v.as_bytes(), &mut iv_buf) {
                                    return Err(ctx.err("dgi iv must be hex"));
                                }
                                iv = true;
                            }
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    let Some(id) = id else {
                        return Err(self.ctx.err("<dgi> needs id"));
                    };
                    d.id = id;
                    d.protection = match (key, mode, padding, iv) {
                        (false, false, false, false) => None,
                        (true, true, true, _) => {
                            p.iv = iv.then_some(iv_buf);
                            Some(p)
                        }
                        _ => {
                            return Err(self.ctx.err(format!(
                                "DGI {id:04X}: an encrypted DGI has key, mode and padding (and iv for cbc); a clear one none of them"
                            )));
                        }
                    };
                    let line = self.ctx.line;
                    if is_start {
                        self.read_hex_text()?;
                    } else {
                        self.hex.clear();
                    }
                    let hex = self.hex.trim_ascii();
                    if hex.len() > 2 * MAX_DGI_DATA || !decode_hex_into(hex, &mut d.data) {
                        return Err(self.ctx.err(format!("DGI {id:04X}: data must be hex")));
                    }
                    self.ctx.line = line;
                    check_dgi(&self.header, &d).map_err(|r| self.ctx.err(r))?;
                    if self.card.dgis.iter().any(|o| o.id == d.id) {
                        return Err(self.ctx.err(format!("DGI {id:04X} appears twice")));
                    }
                    self.card.dgis.push(d);
                }
                ev => return Err(unexpected(ev, &self.ctx, "<dgi> or </card>")),
            }
        }
        Ok(Item::Card)
    }

    fn read_hex_text(&mut self) -> Result<()> {
        self.hex.clear();
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Event::Text(t) => {
                    if self.hex.len() + t.len() > MAX_EVENT_BYTES {
                        return Err(self.ctx.err("dgi data too long"));
                    }
                    self.hex.extend_from_slice(t.as_bytes());
                }
                Event::End(e) if e.name().as_ref() == "dgi" => return Ok(()),
                ev => return Err(unexpected(ev, &self.ctx, "hex text or </dgi>")),
            }
        }
    }

    fn expect_end(&mut self, name: &str) -> Result<()> {
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Event::Text(t) if is_ws(t) => {}
                Event::End(e) if e.name().as_ref() == name => return Ok(()),
                ev => return Err(unexpected(ev, &self.ctx, &format!("</{name}>"))),
            }
        }
    }

    fn finish_document(&mut self) -> Result<()> {
        self.ctx.record = None;
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Event::Text(t) if is_ws(t) => {}
                Event::End(e) if e.name().as_ref() == "production" => break,
                Event::Eof => {
                    return Err(self
                        .ctx
                        .err("the file ends before </production> (truncated)"));
                }
                _ => return Err(self.ctx.err("content after the trailer")),
            }
        }
        loop {
            let ev = read_event(&mut self.xml, &mut self.buf, &mut self.ctx)?;
            match &ev {
                Event::Text(t) if is_ws(t) => {}
                Event::Eof => return Ok(()),
                _ => return Err(self.ctx.err("content after the end of the document")),
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Cards,
    Done,
    Failed,
}

/// Reads and verifies a production file, one card at a time, on the production side.
///
/// [`open`](Reader::open) reads the header and checks every listed key against the HSM:
/// it must be there under its label with the listed usage, algorithm and KCV (a wrong or
/// missing transport key stops the file before any card is read). The MAC key must be AES
/// M6 (and, when the caller names one, that label); the header MAC is verified.
/// [`next_card`](Reader::next_card) verifies each card's MAC chained to the previous one,
/// and at the trailer the count and the trailer MAC; it returns `None` only after a
/// verified trailer and the end of the document. After an error the reader stays failed.
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
            .field("cards", &self.count)
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

impl<'h, R: BufRead> Reader<'h, R> {
    /// Reads and verifies the header of `input` (named `name` in errors); with `mac_key`,
    /// the header must name that MAC key.
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

    /// As [`open`](Reader::open) with every option: the expected MAC key, and whether a
    /// TEST-marked file is accepted on a production HSM (refused by default).
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
                "{name} names '{}' as its MAC key, but its MAC key must be '{want}'",
                h.mac_key
            )));
        }
        let mut key = None;
        for k in &h.keys {
            let handle = hsm.find_key(&k.label).map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "key '{}' named by {name} is not in the HSM",
                    k.label
                )),
                e => e,
            })?;
            let info = hsm.key_info(&handle)?;
            if info.spec.usage != k.usage || info.spec.algorithm != k.algorithm {
                return Err(Error::Policy(format!(
                    "key '{}' is {} {} in the HSM, {name} lists it as {} {}",
                    k.label, info.spec.algorithm, info.spec.usage, k.algorithm, k.usage
                )));
            }
            k.kcv
                .check(&info.kcv, format!("key '{}' of {name}", k.label))?;
            if k.label == h.mac_key {
                check_mac_key(&info)?;
                key = Some(handle);
            }
        }
        let key = key.expect("check_header: the MAC key is listed");
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
                "{name} is a TEST production file (test=\"true\": prepared from a TEST order or under a TEST LMK) and this HSM is a production one; TEST files are for development and tests only"
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
            state: State::Cards,
        })
    }

    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.p.header
    }

    /// Cards verified so far (the total once `next_card` has returned `None`).
    pub fn cards(&self) -> u64 {
        self.count
    }

    /// The next verified card, or `None` after the verified trailer. The card is borrowed
    /// from the reader's buffers and overwritten by the next call.
    pub fn next_card(&mut self) -> Result<Option<&Card>> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => {
                return Err(Error::Integrity {
                    what: self.p.ctx.name.clone(),
                    reason: "reading stopped at an earlier error".into(),
                });
            }
            State::Cards => {}
        }
        match self.step() {
            Ok(true) => Ok(Some(&self.p.card)),
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

    fn step(&mut self) -> Result<bool> {
        let p = &mut self.p;
        match p.next_item()? {
            Item::Card => {
                let what = || p.ctx.what_at(p.card_line);
                let want = self.count + 1;
                if p.card.seq != want {
                    return Err(Error::Integrity {
                        what: what(),
                        reason: format!(
                            "card seq {} where {want} was expected (a card is missing, duplicated or out of order)",
                            p.card.seq
                        ),
                    });
                }
                canon::card_input(
                    &mut self.mac_in,
                    &p.header_mac,
                    &self.chain,
                    p.card.seq,
                    &p.card.id,
                    &p.card.dgis,
                );
                mac_check(
                    self.hsm.verify_mac(
                        &self.key,
                        MacAlgorithm::CmacAes,
                        Padding::None,
                        &self.mac_in,
                        &p.card_mac,
                    ),
                    what,
                    "card MAC does not verify",
                )?;
                self.chain = p.card_mac;
                self.count = want;
                Ok(true)
            }
            Item::Trailer { count, mac } => {
                let what = || format!("{} line {} (trailer)", p.ctx.name, p.ctx.line);
                if count != self.count {
                    return Err(Error::Integrity {
                        what: what(),
                        reason: format!(
                            "the trailer declares {count} cards but {} were read (cards lost or added)",
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

/// Reads and verifies a whole production file through `hsm` (the production HSM holding
/// the imported transport keys): every listed key's usage, algorithm and KCV, the header
/// MAC, every card MAC and the chain, the count and the trailer MAC. Returns the card
/// count. With `mac_key`, the file must be MACed under that label.
pub fn verify_file(path: &std::path::Path, hsm: &dyn Hsm, mac_key: Option<&str>) -> Result<u64> {
    verify_file_with(
        path,
        hsm,
        &ReadOptions {
            mac_key,
            allow_test: false,
        },
    )
}

/// [`verify_file`] with every option (a TEST-marked file on a production HSM is refused
/// unless `opts.allow_test`).
pub fn verify_file_with(
    path: &std::path::Path,
    hsm: &dyn Hsm,
    opts: &ReadOptions<'_>,
) -> Result<u64> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let input = std::io::BufReader::with_capacity(64 * 1024, f);
    let mut r = Reader::open_with(input, hsm, &path.display().to_string(), opts)?;
    while r.next_card()?.is_some() {}
    Ok(r.cards())
}
