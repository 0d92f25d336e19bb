//! The issuer simulator: the issuer's clear keys (test keys only), sent to the bureau as
//! TR-31 key blocks, and the card file written in any [`Scenario`].

use std::io::Write;

use pmp_core::hierarchy;
use pmp_core::hsm::{Hsm, KeyInfo};
use pmp_core::keyblock::{self, Exportability, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use pmp_core::pinblock::{self, Pan, Pin, PinBlockFormat};
use pmp_core::{Algorithm, Error, Mode, Padding, Result, SecretKey};
use zeroize::Zeroizing;

use crate::cards::{Card, Cards, Defect};
use crate::cbc_writer::CbcWriter;
use crate::labels;
use crate::scenario::{LayoutChoice, Scenario, field_widths};

/// The issuer's side (test keys in clear: this simulates the issuer, never the bureau).
pub struct IssuerSide {
    /// TK_issuer for data.
    pub tk: SecretKey,
    /// The issuer PIN key (2-key TDES, format 0).
    pub pin_key: SecretKey,
    /// The scenario.
    pub scenario: Scenario,
}

impl core::fmt::Debug for IssuerSide {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IssuerSide")
            .field("scenario", &self.scenario)
            .finish_non_exhaustive()
    }
}

impl IssuerSide {
    /// New random issuer keys for `scenario`.
    pub fn new(scenario: Scenario) -> Result<Self> {
        let len = match scenario.tk_algorithm {
            Algorithm::Tdes => 16,
            Algorithm::Aes => 16,
        };
        Ok(Self {
            tk: SecretKey::generate(scenario.tk_algorithm, len)?,
            pin_key: SecretKey::generate(Algorithm::Tdes, 16)?,
            scenario,
        })
    }

    /// Imports the issuer's keys into `hsm` the way they travel: TR-31 key blocks under a
    /// ZMK formed from two clear components (a key ceremony), each checked against the KCV
    /// the issuer sends. Both keys are decrypt-only (mode D). Returns (TK, PIN key).
    pub fn send_keys(&self, hsm: &dyn Hsm) -> Result<(KeyInfo, KeyInfo)> {
        let c1 = SecretKey::generate(Algorithm::Aes, 32)?;
        let c2 = SecretKey::generate(Algorithm::Aes, 32)?;
        let zmk = hierarchy::zmk_ceremony(
            hsm,
            labels::ZMK_ISSUER,
            hierarchy::Zone::Import,
            Algorithm::Aes,
            &[c1.expose_secret(), c2.expose_secret()],
            &[Some(c1.kcv()), Some(c2.kcv())],
            None,
        )?;
        let clear_zmk = pmp_core::combine_components(
            Algorithm::Aes,
            &[(c1.expose_secret(), None), (c2.expose_secret(), None)],
        )?;
        let block = |key: &SecretKey, usage| {
            let alg = match key.algorithm() {
                Algorithm::Tdes => KeyAlgorithm::Tdes,
                Algorithm::Aes => KeyAlgorithm::Aes,
            };
            let h = keyblock::Header::new(Version::D, usage, alg, ModeOfUse::D, Exportability::N);
            keyblock::wrap(&clear_zmk, &h, key, None)
        };
        let tk = hierarchy::import_issuer_key(
            hsm,
            labels::TK,
            &zmk.handle,
            &block(&self.tk, KeyUsage::D0)?,
            &self.tk.kcv(),
        )?;
        let pk = hierarchy::import_issuer_key(
            hsm,
            labels::ISSUER_PIN,
            &zmk.handle,
            &block(&self.pin_key, KeyUsage::P0)?,
            &self.pin_key.kcv(),
        )?;
        Ok((tk, pk))
    }

    /// The clear values of one card's fields as they go into the file (PIN block encrypted
    /// under the issuer PIN key; PAN and track 2 encrypted under TK_issuer when
    /// `per_field`).
    fn values(&self, c: &Card) -> Result<[Zeroizing<String>; 10]> {
        let s = &self.scenario;
        let field = |v: &str| -> Result<Zeroizing<String>> {
            if !s.per_field || v.is_empty() {
                return Ok(Zeroizing::new(v.to_string()));
            }
            let bs = s.tk_algorithm.block_size();
            let mut out = Zeroizing::new(vec![0u8; Padding::Iso9797M2.padded_len(v.len(), bs)]);
            let iv = vec![0u8; bs];
            let n = self.tk.cipher().encrypt(
                Mode::Cbc,
                Some(&iv),
                Padding::Iso9797M2,
                v.as_bytes(),
                &mut out,
            )?;
            Ok(Zeroizing::new(hex::encode_upper(&out[..n])))
        };
        let pin_block = if c.defect == Some(Defect::BadPinBlock) {
            "0123456789ABCDEF".to_string()
        } else {
            let pan_for_pin = if c.pan.len() >= 12 {
                c.pan.clone()
            } else {
                "4111111111111111".into()
            };
            let pan = Pan::new(&pan_for_pin)?;
            let mut b = pinblock::encode(PinBlockFormat::Iso0, &Pin::new(&c.pin)?, Some(&pan))?;
            self.pin_key.cipher().encrypt_ecb(&mut b[..])?;
            hex::encode_upper(&b[..])
        };
        Ok([
            Zeroizing::new(c.id.clone()),
            field(&c.pan)?,
            Zeroizing::new(c.expiry.clone()),
            Zeroizing::new(c.service_code.clone()),
            Zeroizing::new(c.name.clone()),
            field(&c.track2)?,
            Zeroizing::new(pin_block),
            Zeroizing::new(c.address.clone()),
            Zeroizing::new(c.city.clone()),
            Zeroizing::new(c.postcode.clone()),
        ])
    }

    /// Writes the issuer file for `cards` to `out` (encrypted as the scenario says).
    /// Returns the number of records.
    pub fn write_file(&self, cards: Cards, out: &mut dyn Write) -> Result<u64> {
        let s = self.scenario;
        if s.whole_file {
            let mut iv = vec![0u8; s.tk_algorithm.block_size()];
            pmp_core::fill_random(&mut iv)?;
            out.write_all(&iv)
                .map_err(|e| Error::io("issuer file", e))?;
            let mut enc = CbcWriter::new(&self.tk, iv, out);
            let n = self.write_body(cards, &mut enc)?;
            enc.finish()?;
            Ok(n)
        } else {
            self.write_body(cards, out)
        }
    }

    fn write_body(&self, cards: Cards, w: &mut dyn Write) -> Result<u64> {
        let s = self.scenario;
        let io = |e| Error::io("issuer file", e);
        let widths = field_widths(&s);
        let mut line = Zeroizing::new(String::new());
        let mut n = 0u64;
        let count = cards.clone().count();
        match s.layout {
            LayoutChoice::Delimited => {
                let header: Vec<&str> = widths.iter().map(|(n, _)| *n).collect();
                writeln!(w, "{}", header.join(",")).map_err(io)?;
            }
            LayoutChoice::Xml => {
                writeln!(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>").map_err(io)?;
                writeln!(w, "<cards count=\"{count}\">").map_err(io)?;
            }
            LayoutChoice::ProcessorXml { totals_after } => {
                writeln!(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>").map_err(io)?;
                writeln!(
                    w,
                    "<!-- card generation file, processor style (synthetic) -->"
                )
                .map_err(io)?;
                writeln!(w, "<CARDGEN>").map_err(io)?;
                writeln!(
                    w,
                    "  <HEADER><FILE_ID>DEMO-0001</FILE_ID><CREATED>2026-01-01T00:00:00Z</CREATED></HEADER>"
                )
                .map_err(io)?;
                if !totals_after {
                    write_totals(w, count)?;
                }
                writeln!(w, "  <PRODUCT CODE=\"DEMO-VISA-CLASSIC\">").map_err(io)?;
            }
            LayoutChoice::Fixed => {}
        }
        for c in cards {
            let v = self.values(&c)?;
            line.clear();
            match s.layout {
                LayoutChoice::Delimited => {
                    for (i, f) in v.iter().enumerate() {
                        if i > 0 {
                            line.push(',');
                        }
                        if f.contains([',', '"', '\n']) {
                            line.push('"');
                            line.push_str(&f.replace('"', "\"\""));
                            line.push('"');
                        } else {
                            line.push_str(f);
                        }
                    }
                    line.push('\n');
                }
                LayoutChoice::Fixed => {
                    for (f, (_, w)) in v.iter().zip(widths.iter()) {
                        let t: String = f.chars().take(*w).collect();
                        line.push_str(&format!("{t:<w$}"));
                    }
                    line.push('\n');
                }
                LayoutChoice::ProcessorXml { .. } => {
                    processor_record(&c, &v, &mut line);
                }
                LayoutChoice::Xml => {
                    line.push_str("  <card>");
                    for (f, (name, _)) in v.iter().zip(widths.iter()) {
                        line.push_str(&format!(
                            "<{name}>{}</{name}>",
                            quick_xml::escape::escape(f.as_str())
                        ));
                    }
                    line.push_str("</card>\n");
                }
            }
            w.write_all(line.as_bytes()).map_err(io)?;
            n += 1;
        }
        match s.layout {
            LayoutChoice::Delimited => writeln!(w, "TRL,{n}").map_err(io)?,
            LayoutChoice::Fixed => writeln!(w, "TRL{n:09}").map_err(io)?,
            LayoutChoice::Xml => writeln!(w, "</cards>").map_err(io)?,
            LayoutChoice::ProcessorXml { totals_after } => {
                writeln!(w, "  </PRODUCT>").map_err(io)?;
                if totals_after {
                    write_totals(w, count)?;
                }
                writeln!(w, "</CARDGEN>").map_err(io)?;
            }
        }
        Ok(n)
    }
}

/// The processor file's summary block with the declared total.
fn write_totals(w: &mut dyn Write, count: usize) -> Result<()> {
    writeln!(
        w,
        "  <CARDSUM><NO_OF_CARDS>{count}</NO_OF_CARDS><PRODUCT_REF>DEMO-VISA-CLASSIC</PRODUCT_REF></CARDSUM>"
    )
    .map_err(|e| Error::io("issuer file", e))
}

/// One `CARDHOLDER` record of the processor file: `v` are the card's values in field order
/// (as [`IssuerSide::values`] gives them). An empty value's element is left out, as
/// processors do.
fn processor_record(c: &Card, v: &[Zeroizing<String>; 10], line: &mut String) {
    let el = |line: &mut String, name: &str, value: &str| {
        if !value.is_empty() {
            line.push_str(&format!(
                "<{name}>{}</{name}>",
                quick_xml::escape::escape(value)
            ));
        }
    };
    line.push_str(&format!(
        "    <CARDHOLDER UID=\"{}\">\n",
        quick_xml::escape::escape(v[0].as_str())
    ));
    line.push_str("      <CARRIER>");
    el(line, "NAME", &v[4]);
    line.push_str("<ADDRESS>");
    // The address line as CDATA (it never holds "]]>").
    line.push_str(&format!("<ADD1><![CDATA[{}]]></ADD1>", v[7].as_str()));
    el(line, "CITY", &v[8]);
    el(line, "POSTCODE", &v[9]);
    line.push_str("</ADDRESS></CARRIER>\n");
    let kind = if c.pan.starts_with('5') {
        "CREDIT"
    } else {
        "DEBIT"
    };
    line.push_str(&format!("      <CARD type=\"{kind}\">"));
    el(line, "PAN", &v[1]);
    el(line, "EXPIRY", &v[2]);
    el(line, "SERVICE_CODE", &v[3]);
    line.push_str("<EMBOSS>");
    el(line, "LINE1", &v[4]);
    line.push_str("</EMBOSS>");
    el(line, "TRACK2", &v[5]);
    el(line, "PIN_BLOCK", &v[6]);
    line.push_str("</CARD>\n    </CARDHOLDER>\n");
}
