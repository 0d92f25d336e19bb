//! The XOF writer: header at `new`, one record per call, trailer at `finish`.

use std::io::Write;

use crate::hsm::{Hsm, KeyHandle};
use crate::{Error, MacAlgorithm, Mode, Padding, Result};

use super::canon::{self, Mac16};
use super::{
    AttrRef, Attribute, Header, Record, VERSION, check_attribute, check_header,
    check_mac_key_policy, check_text, padding_name,
};

/// Writes an XOF file. Each record is formatted into reused buffers, MACed through
/// [`Hsm::generate_mac`] (AES-CMAC, key mode C or G) and written with two `write_all`
/// calls (its start tag, the rest); wrap a file in a `BufWriter` for fewer system calls. Nothing is final until
/// [`finish`](Writer::finish) writes the trailer: write to a temporary file and rename it
/// afterwards.
pub struct Writer<'h, W: Write> {
    out: W,
    hsm: &'h dyn Hsm,
    key: KeyHandle,
    header: Header,
    header_mac: Mac16,
    chain: Mac16,
    count: u64,
    xml: Vec<u8>,
    mac_in: Vec<u8>,
    /// [`write_record`](Writer::write_record)'s record, prepared.
    one: Prepared,
}

impl<W: Write> core::fmt::Debug for Writer<'_, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Writer")
            .field("order_id", &self.header.order_id)
            .field("records", &self.count)
            .finish_non_exhaustive()
    }
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("XOF output", e)
}

fn bad_record(reason: String) -> Error {
    Error::Invalid {
        field: "XOF record",
        reason,
    }
}

/// `n` in decimal, without an allocation.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Ecb => "ECB",
        Mode::Cbc => "CBC",
    }
}

/// Records formatted and checked ahead of their place in the file, for
/// [`Writer::write_prepared`]: per record, its XML without the `seq` and `mac` attributes
/// and its canonical MAC input without the part that depends on its place (tag, header MAC,
/// chain, seq). The import's worker threads prepare the records of a batch in one of
/// these, so that the writer thread only adds the seq, MACs and writes, in file order.
/// Reused: [`clear`](Prepared::clear) keeps the buffers.
#[derive(Default)]
pub(crate) struct Prepared {
    /// The records' XML pieces, one after the other.
    xml: Vec<u8>,
    /// The records' MAC input tails, one after the other.
    mac: Vec<u8>,
    records: Vec<PreparedRecord>,
}

struct PreparedRecord {
    /// ` issuer-id="…"` in `xml`.
    id: core::ops::Range<usize>,
    /// From the end of the start tag to the end of `</record>\n` in `xml`.
    body: core::ops::Range<usize>,
    /// `LP(issuer-id) || u32(n) || attributes` in `mac`.
    tail: core::ops::Range<usize>,
    /// Why the record cannot be written (its checks failed), without the `record N: `
    /// that the writer adds once it knows the seq.
    error: Option<String>,
}

impl Prepared {
    /// Empties the batch, keeping the buffers.
    pub(crate) fn clear(&mut self) {
        self.xml.clear();
        self.mac.clear();
        self.records.clear();
    }

    /// Checks and formats one record for `header` (the header of the writer that will
    /// write it): the checks of [`Writer::write_record`] but the seq's; a failure is kept
    /// and reported when the record is written. Returns the record's index.
    pub(crate) fn push(
        &mut self,
        header: &Header,
        issuer_id: &str,
        attrs: &[AttrRef<'_>],
    ) -> usize {
        let error = check_record(header, issuer_id, attrs).err();
        let (id, body, tail) = if error.is_some() {
            (0..0, 0..0, 0..0)
        } else {
            let x = &mut self.xml;
            let at = x.len();
            push_attr(x, "issuer-id", issuer_id);
            let id = at..x.len();
            let at = x.len();
            x.extend_from_slice(b">\n");
            for a in attrs {
                x.extend_from_slice(b"  <attr");
                push_attr(x, "name", a.name);
                push_attr(x, "key", a.key);
                push_attr(x, "mode", mode_name(a.mode));
                if let Some(iv) = a.iv {
                    push_hex_attr(x, "iv", iv);
                }
                push_attr(x, "padding", padding_name(a.padding));
                x.push(b'>');
                push_hex(x, a.ciphertext);
                x.extend_from_slice(b"</attr>\n");
            }
            x.extend_from_slice(b"</record>\n");
            let body = at..x.len();
            let at = self.mac.len();
            canon::record_tail(&mut self.mac, issuer_id, attrs.len());
            for a in attrs {
                canon::attribute(&mut self.mac, a);
            }
            (id, body, at..self.mac.len())
        };
        self.records.push(PreparedRecord {
            id,
            body,
            tail,
            error,
        });
        self.records.len() - 1
    }
}

/// A record's checks before its MAC, but its seq's (see [`Writer::write_record`]).
fn check_record(
    header: &Header,
    issuer_id: &str,
    attrs: &[AttrRef<'_>],
) -> core::result::Result<(), String> {
    check_text(issuer_id).map_err(|e| format!("issuer-id {e}"))?;
    if attrs.len() > super::limits::MAX_ATTRIBUTES {
        return Err(format!(
            "more than {} attributes",
            super::limits::MAX_ATTRIBUTES
        ));
    }
    for (i, a) in attrs.iter().enumerate() {
        check_attribute(header, a)?;
        if attrs[..i].iter().any(|o| o.name == a.name) {
            return Err(format!("attribute {} appears twice", a.name));
        }
    }
    Ok(())
}

pub(crate) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

pub(crate) fn push_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    out.extend_from_slice(quick_xml::escape::escape(value).as_bytes());
    out.push(b'"');
}

pub(crate) fn push_hex_attr(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    push_hex(out, value);
    out.push(b'"');
}

pub(crate) fn mac16(hsm: &dyn Hsm, key: &KeyHandle, data: &[u8]) -> Result<Mac16> {
    let tag = hsm.generate_mac(key, MacAlgorithm::CmacAes, Padding::None, data)?;
    tag.as_bytes()
        .try_into()
        .map_err(|_| Error::Unsupported("XOF needs a 16-byte AES-CMAC".into()))
}

impl<'h, W: Write> Writer<'h, W> {
    /// Checks `header`, checks that `mac_key` may MAC an XOF (AES, usage M6, not
    /// exportable; [`Error::Policy`] otherwise) and is the key the header names (label,
    /// usage, algorithm, KCV), MACs the header and writes the prolog and the header.
    pub fn new(out: W, header: &Header, hsm: &'h dyn Hsm, mac_key: &KeyHandle) -> Result<Self> {
        check_header(header).map_err(|r| Error::Invalid {
            field: "XOF header",
            reason: r,
        })?;
        let info = hsm.key_info(mac_key)?;
        if info.spec.label != header.mac_key {
            return Err(Error::invalid(
                "XOF MAC key",
                format!(
                    "the header names '{}' but the key given is '{}'",
                    header.mac_key, info.spec.label
                ),
            ));
        }
        check_mac_key_policy(hsm, &info)?;
        let listed = header
            .key(&header.mac_key)
            .expect("checked by check_header");
        if info.spec.usage != listed.usage || info.spec.algorithm != listed.algorithm {
            return Err(Error::invalid(
                "XOF MAC key",
                format!(
                    "'{}' is {} {} in the HSM, not AES M6",
                    info.spec.label, info.spec.algorithm, info.spec.usage
                ),
            ));
        }
        listed
            .kcv
            .check(&info.kcv, format!("XOF MAC key '{}'", header.mac_key))?;

        let mut mac_in = Vec::with_capacity(1024);
        canon::header_input(&mut mac_in, VERSION, header);
        let header_mac = mac16(hsm, mac_key, &mac_in)?;

        let mut xml = Vec::with_capacity(4096);
        xml.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xof");
        push_attr(&mut xml, "version", VERSION);
        xml.extend_from_slice(b">\n<header");
        push_attr(&mut xml, "order-id", &header.order_id);
        push_attr(&mut xml, "issuer", &header.issuer);
        push_attr(&mut xml, "product", &header.product);
        push_attr(&mut xml, "created", &header.created);
        push_attr(&mut xml, "mac-key", &header.mac_key);
        if header.test {
            push_attr(&mut xml, "test", "true");
        }
        push_hex_attr(&mut xml, "mac", &header_mac);
        xml.extend_from_slice(b">\n");
        for k in &header.keys {
            xml.extend_from_slice(b"  <key");
            push_attr(&mut xml, "label", &k.label);
            push_attr(&mut xml, "usage", k.usage.as_str());
            push_attr(&mut xml, "algorithm", k.algorithm.name());
            push_hex_attr(&mut xml, "kcv", k.kcv.as_bytes());
            xml.extend_from_slice(b"/>\n");
        }
        xml.extend_from_slice(b"</header>\n");
        let mut out = out;
        out.write_all(&xml).map_err(io_err)?;
        Ok(Self {
            out,
            hsm,
            key: mac_key.clone(),
            header: header.clone(),
            header_mac,
            chain: header_mac,
            count: 0,
            xml,
            mac_in,
            one: Prepared::default(),
        })
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.count
    }

    /// Checks, MACs and writes one record. `rec.seq` must be the previous seq + 1 (the
    /// first is 1); every attribute's key must be in the header's key list.
    pub fn write_record(&mut self, rec: &Record) -> Result<()> {
        if rec.seq != self.count + 1 {
            return Err(bad_record(format!(
                "seq {} where {} was expected",
                rec.seq,
                self.count + 1
            )));
        }
        let mut one = core::mem::take(&mut self.one);
        one.clear();
        let views: Vec<AttrRef<'_>> = rec.attributes.iter().map(Attribute::view).collect();
        one.push(&self.header, &rec.issuer_id, &views);
        let r = self.write_prepared(&one, 0);
        self.one = one;
        r
    }

    /// Writes record `i` of `batch` (prepared by [`Prepared::push`], possibly on another
    /// thread, against this writer's header) as the next record: adds its seq, MACs it
    /// chained to the previous record and writes it. Byte for byte what
    /// [`write_record`](Self::write_record) writes for the same record, and the same
    /// errors.
    pub(crate) fn write_prepared(&mut self, batch: &Prepared, i: usize) -> Result<()> {
        let seq = self.count + 1;
        let r = &batch.records[i];
        if let Some(reason) = &r.error {
            return Err(bad_record(format!("record {seq}: {reason}")));
        }
        self.mac_in.clear();
        canon::record_head(&mut self.mac_in, &self.header_mac, &self.chain, seq);
        self.mac_in.extend_from_slice(&batch.mac[r.tail.clone()]);
        let mac = mac16(self.hsm, &self.key, &self.mac_in)?;

        // The start tag here, the rest straight from the batch (one copy less).
        let x = &mut self.xml;
        x.clear();
        x.extend_from_slice(b"<record seq=\"");
        push_decimal(x, seq);
        x.push(b'"');
        x.extend_from_slice(&batch.xml[r.id.clone()]);
        push_hex_attr(x, "mac", &mac);
        let body = &batch.xml[r.body.clone()];
        if (x.len() + body.len()) as u64 > super::limits::MAX_RECORD_BYTES {
            return Err(bad_record(format!(
                "record {seq}: larger than {} bytes",
                super::limits::MAX_RECORD_BYTES
            )));
        }
        self.out.write_all(x).map_err(io_err)?;
        self.out.write_all(body).map_err(io_err)?;
        self.chain = mac;
        self.count += 1;
        Ok(())
    }

    /// Writes the trailer (record count and the MAC over the chain), flushes, and returns
    /// the output and the record count.
    pub fn finish(mut self) -> Result<(W, u64)> {
        canon::trailer_input(&mut self.mac_in, &self.header_mac, &self.chain, self.count);
        let mac = mac16(self.hsm, &self.key, &self.mac_in)?;
        let x = &mut self.xml;
        x.clear();
        x.extend_from_slice(b"<trailer records=\"");
        push_decimal(x, self.count);
        x.push(b'"');
        push_hex_attr(x, "mac", &mac);
        x.extend_from_slice(b"/>\n</xof>\n");
        self.out.write_all(x).map_err(io_err)?;
        self.out.flush().map_err(io_err)?;
        Ok((self.out, self.count))
    }
}
