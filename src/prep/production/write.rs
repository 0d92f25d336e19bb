//! The production-file writer: header at `new`, one card per call, trailer at `finish`.

use std::io::Write;

use crate::hsm::{Hsm, KeyHandle};
use crate::xof::canon::Mac16;
use crate::xof::write::{mac16, push_attr, push_hex, push_hex_attr};
use crate::{Error, Result};

use super::{
    Card, Header, VERSION, canon, check_card, check_header, check_mac_key, limits, mode_name,
    padding_name,
};

/// Writes a production file. Each card is checked, MACed through [`Hsm::generate_mac`]
/// (AES-CMAC under the MTK, mode C or G) and written with one `write_all`. Nothing is final
/// until [`finish`](Writer::finish) writes the trailer: write to a temporary file and
/// rename it afterwards.
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
}

impl<W: Write> core::fmt::Debug for Writer<'_, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Writer")
            .field("order_id", &self.header.order_id)
            .field("cards", &self.count)
            .finish_non_exhaustive()
    }
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("production output", e)
}

impl<'h, W: Write> Writer<'h, W> {
    /// Checks `header`, checks that `mac_key` is the AES M6 key the header names (label,
    /// usage, algorithm, KCV), MACs the header and writes the prolog and the header.
    pub fn new(out: W, header: &Header, hsm: &'h dyn Hsm, mac_key: &KeyHandle) -> Result<Self> {
        check_header(header).map_err(|r| Error::Invalid {
            field: "production header",
            reason: r,
        })?;
        let info = hsm.key_info(mac_key)?;
        if info.spec.label != header.mac_key {
            return Err(Error::invalid(
                "production MAC key",
                format!(
                    "the header names '{}' but the key given is '{}'",
                    header.mac_key, info.spec.label
                ),
            ));
        }
        check_mac_key(&info)?;
        let listed = header
            .key(&header.mac_key)
            .expect("checked by check_header");
        listed.kcv.check(
            &info.kcv,
            format!("production MAC key '{}'", header.mac_key),
        )?;

        let mut mac_in = Vec::with_capacity(1024);
        canon::header_input(&mut mac_in, VERSION, header);
        let header_mac = mac16(hsm, mac_key, &mac_in)?;

        let mut xml = Vec::with_capacity(4096);
        xml.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<production");
        push_attr(&mut xml, "version", VERSION);
        xml.extend_from_slice(b">\n<header");
        push_attr(&mut xml, "order-id", &header.order_id);
        push_attr(&mut xml, "issuer", &header.issuer);
        push_attr(&mut xml, "product", &header.product);
        push_attr(&mut xml, "profile", &header.profile);
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
        })
    }

    /// Cards written so far.
    pub fn cards(&self) -> u64 {
        self.count
    }

    /// Checks, MACs and writes one card. `card.seq` must be the previous seq + 1 (the first
    /// is 1).
    pub fn write_card(&mut self, card: &Card) -> Result<()> {
        let bad = |reason: String| Error::Invalid {
            field: "production card",
            reason,
        };
        if card.seq != self.count + 1 {
            return Err(bad(format!(
                "seq {} where {} was expected",
                card.seq,
                self.count + 1
            )));
        }
        check_card(&self.header, card).map_err(|r| bad(format!("card {}: {r}", card.seq)))?;
        canon::card_input(
            &mut self.mac_in,
            &self.header_mac,
            &self.chain,
            card.seq,
            &card.id,
            &card.dgis,
        );
        let mac = mac16(self.hsm, &self.key, &self.mac_in)?;

        let x = &mut self.xml;
        x.clear();
        x.extend_from_slice(b"<card seq=\"");
        x.extend_from_slice(card.seq.to_string().as_bytes());
        x.push(b'"');
        push_attr(x, "id", &card.id);
        push_hex_attr(x, "mac", &mac);
        x.extend_from_slice(b">\n");
        for d in &card.dgis {
            x.extend_from_slice(b"  <dgi");
            push_hex_attr(x, "id", &d.id.to_be_bytes());
            if let Some(p) = &d.protection {
                push_attr(x, "key", &p.key);
                push_attr(x, "mode", mode_name(p.mode));
                if let Some(iv) = &p.iv {
                    push_hex_attr(x, "iv", iv);
                }
                push_attr(x, "padding", padding_name(p.padding));
            }
            x.push(b'>');
            push_hex(x, &d.data);
            x.extend_from_slice(b"</dgi>\n");
        }
        x.extend_from_slice(b"</card>\n");
        if x.len() as u64 > limits::MAX_CARD_BYTES {
            return Err(bad(format!(
                "card {}: larger than {} bytes",
                card.seq,
                limits::MAX_CARD_BYTES
            )));
        }
        self.out.write_all(x).map_err(io_err)?;
        self.chain = mac;
        self.count += 1;
        Ok(())
    }

    /// Writes the trailer (card count and the MAC over the chain), flushes, and returns the
    /// output and the card count.
    pub fn finish(mut self) -> Result<(W, u64)> {
        canon::trailer_input(&mut self.mac_in, &self.header_mac, &self.chain, self.count);
        let mac = mac16(self.hsm, &self.key, &self.mac_in)?;
        let x = &mut self.xml;
        x.clear();
        x.extend_from_slice(b"<trailer cards=\"");
        x.extend_from_slice(self.count.to_string().as_bytes());
        x.push(b'"');
        push_hex_attr(x, "mac", &mac);
        x.extend_from_slice(b"/>\n</production>\n");
        self.out.write_all(x).map_err(io_err)?;
        self.out.flush().map_err(io_err)?;
        Ok((self.out, self.count))
    }
}
