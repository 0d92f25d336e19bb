//! The bureau's main job end to end on the software HSM, with synthetic data: the engine
//! of `pmp demo`, and the data generator that the tests and the benchmark reuse.
//!
//! [`Cards`] generates realistic, deterministic card records (Luhn-valid PANs, names,
//! expiry, service code, track 2 equivalent data, PINs, addresses) with a few deliberately
//! bad ones ([`Defect`]). [`IssuerSide`] plays the issuer: it holds the issuer's clear
//! keys (test keys only), writes the card file in any [`Scenario`] (layout × encryption)
//! with PIN blocks encrypted under its PIN key, and encrypts the file or its fields under
//! TK_issuer. [`run`] is the whole demo: key ceremony, issuer keys imported as TR-31 key
//! blocks with their KCVs, DKeps, product and issuer file, import, XOF verification,
//! transport keys for production.
//!
//! 2-key TDES is used for the issuer's keys because that is what issuers still send; NIST
//! SP 800-131A allows it for decrypting legacy data only, so the bureau imports TK_issuer
//! and the issuer PIN key with mode of use `D` (decrypt only). Everything the bureau makes
//! is AES-256: DKeps, the bureau PIN key (ISO 9564 format 4), the XOF MAC key, the zone
//! master keys and the transport keys.
//!
//! ```
//! use pmp_core::demo::Cards;
//! let cards: Vec<_> = Cards::new(1, 100).collect();
//! assert_eq!(cards.len(), 100);
//! assert!(cards.iter().filter(|c| c.defect.is_none()).all(|c| pmp_core::order::validate::luhn_ok(c.pan.as_bytes())));
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::hierarchy;
use crate::hsm::{Hsm, KeyInfo, KeySpec, SoftHsm};
use crate::import::{self, Summary};
use crate::keyblock::{self, Exportability, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use crate::pinblock::{self, Pan, Pin, PinBlockFormat};
use crate::{Algorithm, Error, Mode, Padding, Result, SecretKey};

/// A deliberate defect in a generated record (so that the reject report has content).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// The PAN's check digit is wrong.
    BadLuhn,
    /// The expiry month is 13.
    BadExpiry,
    /// The name holds a character outside the embossing set.
    BadName,
    /// The PAN is missing.
    MissingPan,
    /// The PIN block is garbage.
    BadPinBlock,
}

/// One synthetic card record (test data; never real card data).
#[derive(Clone, PartialEq, Eq)]
pub struct Card {
    /// The issuer's record id.
    pub id: String,
    /// The PAN.
    pub pan: String,
    /// Expiry, `YYMM`.
    pub expiry: String,
    /// Service code.
    pub service_code: String,
    /// Cardholder name (embossing).
    pub name: String,
    /// Track 2 equivalent data (`PAN D YYMM SVC discretionary`).
    pub track2: String,
    /// The PIN.
    pub pin: String,
    /// Address line.
    pub address: String,
    /// City.
    pub city: String,
    /// Post code.
    pub postcode: String,
    /// The record's deliberate defect, if any.
    pub defect: Option<Defect>,
}

impl core::fmt::Debug for Card {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Card")
            .field("id", &self.id)
            .field("defect", &self.defect)
            .finish_non_exhaustive()
    }
}

/// A deterministic generator of card records: the same seed gives the same cards. One
/// About one record in 25 has a [`Defect`] (records 7, 31, 53, 79 of every 100, and record
/// 250 of every 500).
#[derive(Clone, Debug)]
pub struct Cards {
    state: u64,
    next: u64,
    n: u64,
}

const FIRST: [&str; 16] = [
    "JOHN", "MARY", "AHMED", "LI", "SOFIA", "PIERRE", "ANNA", "KWAME", "YUKI", "CARLOS", "EMMA",
    "OLEG", "FATIMA", "LUCAS", "NORA", "RAJ",
];
const LAST: [&str; 16] = [
    "SMITH",
    "O'NEIL",
    "MUELLER",
    "DUPONT",
    "NAKAMURA",
    "GARCIA",
    "NOWAK",
    "OKAFOR",
    "ROSSI",
    "VAN DER BERG",
    "SILVA",
    "KOWALSKI",
    "HANSEN",
    "BROWN-LEE",
    "PETROV",
    "SINGH",
];
const STREETS: [&str; 8] = [
    "High Street",
    "Rue de la Paix",
    "Main St",
    "Baker Street",
    "Hauptstrasse",
    "Via Roma",
    "Elm Avenue",
    "Station Road",
];
const CITIES: [&str; 8] = [
    "London", "Paris", "Berlin", "Rome", "Madrid", "Warsaw", "Oslo", "Lisbon",
];
const BINS: [&str; 4] = ["411111", "550000", "400005", "522222"];

impl Cards {
    /// `n` cards from `seed`.
    pub fn new(seed: u64, n: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            next: 0,
            n,
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: test data only, not for keys.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + (self.rand() % 10) as u8))
            .collect()
    }
}

impl Iterator for Cards {
    type Item = Card;

    fn next(&mut self) -> Option<Card> {
        if self.next >= self.n {
            return None;
        }
        self.next += 1;
        let k = self.next;
        let bin = BINS[(self.rand() % 4) as usize];
        let body = format!("{bin}{}", self.digits(9));
        let check = crate::order::validate::luhn_digit(body.as_bytes());
        let mut pan = format!("{body}{}", char::from(check));
        let mut expiry = format!("{:02}{:02}", 27 + self.rand() % 5, 1 + self.rand() % 12);
        let service_code = ["201", "101", "221", "206"][(self.rand() % 4) as usize].to_string();
        let mut name = format!(
            "{} {}",
            FIRST[(self.rand() % 16) as usize],
            LAST[(self.rand() % 16) as usize]
        );
        let track2 = format!(
            "{pan}D{expiry}{service_code}{}{}",
            self.digits(5),
            "0".repeat(3)
        );
        let pin_len = 4 + (self.rand() % 3) as usize;
        let pin = self.digits(pin_len);
        let address = format!(
            "{} {}, Flat {}",
            1 + self.rand() % 200,
            STREETS[(self.rand() % 8) as usize],
            1 + self.rand() % 30
        );
        let city = CITIES[(self.rand() % 8) as usize].to_string();
        let postcode = self.digits(5);
        let defect = match k % 100 {
            7 => Some(Defect::BadLuhn),
            31 => Some(Defect::BadExpiry),
            53 => Some(Defect::BadName),
            79 => Some(Defect::BadPinBlock),
            _ if k % 500 == 250 => Some(Defect::MissingPan),
            _ => None,
        };
        match defect {
            Some(Defect::BadLuhn) => {
                let last = pan.pop().map_or(0, |c| c as u8 - b'0');
                pan.push(char::from(b'0' + (last + 1) % 10));
            }
            Some(Defect::BadExpiry) => expiry = format!("{}13", &expiry[..2]),
            Some(Defect::BadName) => name = format!("{name}_#1"),
            Some(Defect::MissingPan) => pan.clear(),
            _ => {}
        }
        Some(Card {
            id: format!("C{k:09}"),
            pan,
            expiry,
            service_code,
            name,
            track2,
            pin,
            address,
            city,
            postcode,
            defect,
        })
    }
}

/// The issuer layout of a [`Scenario`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutChoice {
    /// CSV with a header row, quoting and a trailer with the count.
    Delimited,
    /// Fixed-width lines and a trailer with the count.
    Fixed,
    /// `<cards count="N"><card>...</card></cards>`.
    Xml,
}

/// How a generated issuer file is laid out and encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The layout.
    pub layout: LayoutChoice,
    /// Whole-file encryption under TK_issuer (CBC, IV in the first block, PKCS#7).
    pub whole_file: bool,
    /// PAN and track 2 individually encrypted (hex, CBC with a zero IV, ISO 9797-1 M2).
    pub per_field: bool,
    /// TK_issuer's algorithm (2-key TDES or AES-128).
    pub tk_algorithm: Algorithm,
    /// The DKeps' algorithm (AES-256 or 2-key TDES).
    pub dkep_algorithm: Algorithm,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            layout: LayoutChoice::Delimited,
            whole_file: true,
            per_field: false,
            tk_algorithm: Algorithm::Tdes,
            dkep_algorithm: Algorithm::Aes,
        }
    }
}

/// The attribute classes and their DKeps.
pub const DKEP_CLASSES: [&str; 5] = ["PAN", "TRACK", "NAME", "CARD", "ADDRESS"];

/// Key labels used by the demo, the tests and the benchmark.
pub mod labels {
    /// TK_issuer for data.
    pub const TK: &str = "DEMOBANK-TK-DATA";
    /// The issuer PIN key.
    pub const ISSUER_PIN: &str = "DEMOBANK-TK-PIN";
    /// The bureau PIN key.
    pub const BUREAU_PIN: &str = "BUREAU-PIN";
    /// The XOF MAC key.
    pub const XOF_MAC: &str = "XOF-MAC";
    /// ZMK shared with the issuer.
    pub const ZMK_ISSUER: &str = "ZMK-DEMOBANK";
    /// ZMK shared with production.
    pub const ZMK_PROD: &str = "ZMK-PROD";
}

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

fn field_widths(s: &Scenario) -> [(&'static str, usize); 10] {
    let enc = |plain: usize| {
        if s.per_field {
            2 * Padding::Iso9797M2.padded_len(plain, s.tk_algorithm.block_size())
        } else {
            plain
        }
    };
    [
        ("card_id", 10),
        ("pan", enc(19)),
        ("expiry", 4),
        ("service_code", 3),
        ("name", 26),
        ("track2", enc(37)),
        ("pin_block", 16),
        ("address1", 40),
        ("city", 20),
        ("postcode", 10),
    ]
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
            Algorithm::Aes,
            &[c1.expose_secret(), c2.expose_secret()],
            &[Some(c1.kcv()), Some(c2.kcv())],
            None,
        )?;
        let clear_zmk = crate::combine_components(
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

    /// The product (`pmp-product-1` XML) for this scenario, with the KCVs of the issuer's
    /// keys.
    pub fn product_xml(&self) -> String {
        let s = &self.scenario;
        let layout = match s.layout {
            LayoutChoice::Delimited => {
                r#"<layout kind="delimited" separator="," quote="&quot;" header="true" record-id="card_id">"#.to_string()
            }
            LayoutChoice::Fixed => r#"<layout kind="fixed" record-id="card_id">"#.to_string(),
            LayoutChoice::Xml => {
                r#"<layout kind="xml" root="cards" record="card" record-id="card_id">"#.to_string()
            }
        };
        let mut x = String::new();
        x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x.push_str("<!-- pmp demo product: generated by `pmp demo` -->\n");
        x.push_str(
            "<product format=\"pmp-product-1\" name=\"DEMO-VISA-CLASSIC\" issuer=\"DEMOBANK\">\n",
        );
        x.push_str("  <keys>\n");
        x.push_str(&format!(
            "    <transport-key label=\"{}\" kcv=\"{}\"/>\n",
            labels::TK,
            self.tk.kcv()
        ));
        x.push_str(&format!(
            "    <issuer-pin-key label=\"{}\" kcv=\"{}\" format=\"0\"/>\n",
            labels::ISSUER_PIN,
            self.pin_key.kcv()
        ));
        x.push_str(&format!(
            "    <bureau-pin-key label=\"{}\" format=\"4\"/>\n",
            labels::BUREAU_PIN
        ));
        x.push_str(&format!("    <mac-key label=\"{}\"/>\n", labels::XOF_MAC));
        x.push_str("  </keys>\n  ");
        x.push_str(&layout);
        x.push('\n');
        if s.whole_file {
            let c = match s.tk_algorithm {
                Algorithm::Tdes => "tdes-cbc",
                Algorithm::Aes => "aes-cbc",
            };
            x.push_str(&format!(
                "    <file-encryption cipher=\"{c}\" iv=\"prefix\" padding=\"pkcs7\"/>\n"
            ));
        }
        if s.per_field {
            x.push_str("    <field-encryption mode=\"cbc\" iv=\"zero\" padding=\"2\"/>\n");
        }
        x.push_str(match s.layout {
            LayoutChoice::Delimited => "    <count trailer=\"TRL\" column=\"2\"/>\n",
            LayoutChoice::Fixed => "    <count trailer=\"TRL\" start=\"4\" length=\"9\"/>\n",
            LayoutChoice::Xml => "    <count root-attribute=\"count\"/>\n",
        });
        x.push_str("  </layout>\n  <fields>\n");
        let enc = if s.per_field {
            " encrypted=\"true\""
        } else {
            ""
        };
        let mut pos = 1;
        let widths = field_widths(s);
        let mut at = |name: &str| -> String {
            if s.layout != LayoutChoice::Fixed {
                return String::new();
            }
            let w = widths
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, w)| *w);
            let r = format!(" start=\"{pos}\" length=\"{w}\"");
            pos += w;
            r
        };
        let f = [
            format!(
                "<field name=\"card_id\" required=\"true\"{}/>",
                at("card_id")
            ),
            format!(
                "<field name=\"pan\" required=\"true\" check=\"pan\"{enc} attribute=\"PAN\" dkep=\"DKEP-PAN\"{}/>",
                at("pan")
            ),
            format!(
                "<field name=\"expiry\" required=\"true\" check=\"yymm\" attribute=\"EXPIRY\" dkep=\"DKEP-CARD\"{}/>",
                at("expiry")
            ),
            format!(
                "<field name=\"service_code\" required=\"true\" check=\"service-code\" attribute=\"SERVICE_CODE\" dkep=\"DKEP-CARD\"{}/>",
                at("service_code")
            ),
            format!(
                "<field name=\"name\" required=\"true\" check=\"name\" max-length=\"26\" attribute=\"NAME\" dkep=\"DKEP-NAME\"{}/>",
                at("name")
            ),
            format!(
                "<field name=\"track2\" required=\"true\"{enc} attribute=\"TRACK2\" dkep=\"DKEP-TRACK\"{}/>",
                at("track2")
            ),
            format!(
                "<field name=\"pin_block\" required=\"true\" role=\"pin-block\" pan-field=\"pan\" attribute=\"PIN_BLOCK\"{}/>",
                at("pin_block")
            ),
            format!(
                "<field name=\"address1\" attribute=\"ADDRESS1\" dkep=\"DKEP-ADDRESS\"{}/>",
                at("address1")
            ),
            format!(
                "<field name=\"city\" attribute=\"CITY\" dkep=\"DKEP-ADDRESS\"{}/>",
                at("city")
            ),
            format!(
                "<field name=\"postcode\" attribute=\"POSTCODE\" dkep=\"DKEP-ADDRESS\"{}/>",
                at("postcode")
            ),
        ];
        for line in f {
            x.push_str("    ");
            x.push_str(&line);
            x.push('\n');
        }
        x.push_str("  </fields>\n</product>\n");
        x
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
            crate::fill_random(&mut iv)?;
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
        }
        Ok(n)
    }
}

/// CBC encryption with PKCS#7 padding as a `Write` (the issuer's side of whole-file
/// encryption).
struct CbcWriter<'a> {
    cipher: crate::BlockCipher,
    iv: Vec<u8>,
    buf: Zeroizing<Vec<u8>>,
    out: &'a mut dyn Write,
}

impl<'a> CbcWriter<'a> {
    fn new(key: &SecretKey, iv: Vec<u8>, out: &'a mut dyn Write) -> Self {
        Self {
            cipher: key.cipher(),
            iv,
            buf: Zeroizing::new(Vec::with_capacity(64 * 1024)),
            out,
        }
    }

    fn flush_blocks(&mut self, all: bool) -> Result<()> {
        let bs = self.iv.len();
        let n = if all {
            self.buf.len()
        } else {
            self.buf.len() / bs * bs
        };
        if n == 0 {
            return Ok(());
        }
        self.cipher.encrypt_cbc(&self.iv, &mut self.buf[..n])?;
        self.iv.copy_from_slice(&self.buf[n - bs..n]);
        self.out
            .write_all(&self.buf[..n])
            .map_err(|e| Error::io("issuer file", e))?;
        self.buf.drain(..n);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let bs = self.iv.len();
        let len = self.buf.len();
        self.buf.resize(Padding::Pkcs7.padded_len(len, bs), 0);
        Padding::Pkcs7.pad(&mut self.buf, len, bs)?;
        self.flush_blocks(true)?;
        self.out.flush().map_err(|e| Error::io("issuer file", e))
    }
}

impl Write for CbcWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 60 * 1024 {
            self.flush_blocks(false).map_err(std::io::Error::other)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The bureau's own keys for a scenario: DKeps, the bureau PIN key (AES-256, format 4)
/// and the XOF MAC key (AES-256, M6, mode C).
pub fn bureau_keys(hsm: &dyn Hsm, dkep_algorithm: Algorithm) -> Result<Vec<KeyInfo>> {
    let mut keys = Vec::new();
    for class in DKEP_CLASSES {
        let len = if dkep_algorithm == Algorithm::Aes {
            32
        } else {
            16
        };
        keys.push(hsm.generate_key(&KeySpec::new(
            &format!("DKEP-{class}"),
            dkep_algorithm,
            len,
            KeyUsage::D0,
            ModeOfUse::B,
        ))?);
    }
    keys.push(hsm.generate_key(&KeySpec::new(
        labels::BUREAU_PIN,
        Algorithm::Aes,
        32,
        KeyUsage::P0,
        ModeOfUse::B,
    ))?);
    keys.push(hsm.generate_key(&KeySpec::new(
        labels::XOF_MAC,
        Algorithm::Aes,
        32,
        KeyUsage::M6,
        ModeOfUse::C,
    ))?);
    Ok(keys)
}

/// Reads the XOF back through the HSM and compares every attribute with the cards the
/// issuer sent: each data attribute is decrypted under its DKep and compared; defective
/// cards must be absent. No HSM call returns a clear PIN, so each PIN block is translated
/// (bureau PIN key, ISO 4) to a temporary check key formed here from components the
/// verifier knows, decoded with that key and compared with the card's PIN; the check key is
/// deleted afterwards. Returns the number of records compared.
pub fn verify_against(
    hsm: &dyn Hsm,
    xof_path: &Path,
    cards: impl Iterator<Item = Card>,
) -> Result<u64> {
    let f = std::fs::File::open(xof_path).map_err(|e| Error::io(xof_path, e))?;
    let mut r = crate::xof::Reader::new(std::io::BufReader::new(f), hsm)?;
    let mismatch = |what: String| Error::Integrity {
        what: xof_path.display().to_string(),
        reason: what,
    };
    // A PIN check key whose clear value only this function knows (the XOR of two random
    // components), so the PIN blocks can be checked end to end.
    let check_key = SecretKey::generate(Algorithm::Aes, 16)?;
    let c1 = SecretKey::generate(Algorithm::Aes, 16)?;
    let c2: Zeroizing<Vec<u8>> = Zeroizing::new(
        c1.expose_secret()
            .iter()
            .zip(check_key.expose_secret())
            .map(|(a, b)| a ^ b)
            .collect(),
    );
    let mut tag = [0u8; 6];
    crate::fill_random(&mut tag)?;
    let check_label = format!("VERIFY-PIN-{}", hex::encode_upper(tag));
    let check = hsm
        .form_key_from_components(
            &crate::hsm::KeySpec::new(
                &check_label,
                Algorithm::Aes,
                16,
                crate::keyblock::KeyUsage::P0,
                crate::keyblock::ModeOfUse::E,
            ),
            &[c1.expose_secret(), &c2],
            &[],
            Some(&check_key.kcv()),
        )?
        .handle;
    let result = compare_records(hsm, &mut r, cards, &check, &check_key, &mismatch);
    let deleted = hsm.delete_key(&check);
    let n = result?;
    deleted?;
    if r.next_record()?.is_some() {
        return Err(mismatch("more records than expected".into()));
    }
    Ok(n)
}

fn compare_records(
    hsm: &dyn Hsm,
    r: &mut crate::xof::Reader<'_, std::io::BufReader<std::fs::File>>,
    cards: impl Iterator<Item = Card>,
    check: &crate::hsm::KeyHandle,
    check_key: &SecretKey,
    mismatch: &dyn Fn(String) -> Error,
) -> Result<u64> {
    let mut n = 0;
    for c in cards.filter(|c| c.defect.is_none()) {
        let rec = r
            .next_record()?
            .ok_or_else(|| mismatch(format!("record {} is missing", c.id)))?;
        if rec.issuer_id != c.id {
            return Err(mismatch(format!(
                "expected record {}, found {}",
                c.id, rec.issuer_id
            )));
        }
        let expected: [(&str, &str); 9] = [
            ("PAN", &c.pan),
            ("EXPIRY", &c.expiry),
            ("SERVICE_CODE", &c.service_code),
            ("NAME", &c.name),
            ("TRACK2", &c.track2),
            ("PIN_BLOCK", ""),
            ("ADDRESS1", &c.address),
            ("CITY", &c.city),
            ("POSTCODE", &c.postcode),
        ];
        if rec.attributes.len() != expected.len() {
            return Err(mismatch(format!("record {}: wrong attribute count", c.id)));
        }
        for (a, (name, value)) in rec.attributes.iter().zip(expected) {
            if a.name != name {
                return Err(mismatch(format!(
                    "record {}: attribute {} out of order",
                    c.id, a.name
                )));
            }
            if name == "PIN_BLOCK" {
                if a.ciphertext.len() != 16 || a.key != labels::BUREAU_PIN {
                    return Err(mismatch(format!("record {}: PIN block", c.id)));
                }
                let pan = crate::pinblock::Pan::new(&c.pan)?;
                let bureau = hsm.find_key(&a.key)?;
                let moved = hsm.translate_pin(
                    &crate::hsm::PinSpec {
                        key: &bureau,
                        format: crate::pinblock::PinBlockFormat::Iso4,
                    },
                    &crate::hsm::PinSpec {
                        key: check,
                        format: crate::pinblock::PinBlockFormat::Iso4,
                    },
                    &pan,
                    &a.ciphertext,
                )?;
                let pin = crate::pinblock::decode_iso4(check_key, &moved, &pan)?;
                if pin.expose_secret() != c.pin {
                    return Err(mismatch(format!("record {}: PIN differs", c.id)));
                }
                continue;
            }
            let key = hsm.find_key(&a.key)?;
            let mut out = Zeroizing::new(vec![0u8; a.ciphertext.len()]);
            let spec = crate::hsm::CipherSpec {
                key: &key,
                mode: a.mode,
                iv: a.iv.as_deref(),
                padding: a.padding,
            };
            let m = hsm.decrypt(&spec, &a.ciphertext, &mut out)?;
            if out[..m] != *value.as_bytes() {
                return Err(mismatch(format!(
                    "record {}: attribute {} differs",
                    c.id, name
                )));
            }
        }
        n += 1;
    }
    Ok(n)
}

/// What [`run`] did.
#[derive(Debug)]
pub struct DemoSummary {
    /// The output directory.
    pub dir: PathBuf,
    /// The keys in the store after the demo.
    pub keys: Vec<KeyInfo>,
    /// The import's summary.
    pub import: Summary,
    /// Records verified by XOF MACs (`xof::verify_file_with_key`, the product's MAC key).
    pub xof_verified: u64,
    /// Records whose every attribute was decrypted and compared with the issuer's data.
    pub round_trip: u64,
    /// The transport keys issued for production (TR-31 blocks under ZMK-prod).
    pub transport: hierarchy::TransportKeys,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The files and directories a demo directory holds (the only ones `run` may replace).
pub const DEMO_ENTRIES: [&str; 7] = [
    "keystore",
    "product.xml",
    "issuer-cards.csv.enc",
    "order.xof",
    "rejects.txt",
    "transport-keys.txt",
    ".pmp-demo",
];

/// Prepares `dir`: creates it, or clears a previous demo's files; refuses a non-empty
/// directory that is not a demo directory (no user data is ever removed).
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let entries: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        if !entries.iter().any(|e| e == ".pmp-demo") {
            return Err(Error::AlreadyExists(format!(
                "{} is not empty and is not a previous demo directory: choose another --out",
                dir.display()
            )));
        }
        if let Some(other) = entries.iter().find(|e| !DEMO_ENTRIES.contains(&e.as_str())) {
            return Err(Error::AlreadyExists(format!(
                "{} holds '{other}', which the demo did not write: choose another --out",
                dir.display()
            )));
        }
        for e in DEMO_ENTRIES {
            let p = dir.join(e);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(|err| Error::io(&p, err))?;
            } else if p.exists() {
                std::fs::remove_file(&p).map_err(|err| Error::io(&p, err))?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::write(
        dir.join(".pmp-demo"),
        "pmp demo directory: `pmp demo` may replace it\n",
    )
    .map_err(|e| Error::io(dir, e))
}

/// Runs the demo in `dir` with `cards` cards. See the [module documentation](self).
pub fn run(dir: &Path, cards: u64, opts: &import::Options<'_>) -> Result<DemoSummary> {
    prepare_dir(dir)?;
    let ks = dir.join("keystore");
    let hsm = SoftHsm::create_with_test_lmk(&ks)?;
    // Issuer: keys arrive as key blocks under the ZMK from the ceremony.
    let scenario = Scenario::default();
    let issuer = IssuerSide::new(scenario)?;
    issuer.send_keys(&hsm)?;
    bureau_keys(&hsm, scenario.dkep_algorithm)?;
    let product_path = dir.join("product.xml");
    std::fs::write(&product_path, issuer.product_xml()).map_err(|e| Error::io(&product_path, e))?;
    let product = crate::order::product::Product::load(&product_path)?;
    let seed = 20_250_101;
    let in_path = dir.join("issuer-cards.csv.enc");
    {
        let f = std::fs::File::create(&in_path).map_err(|e| Error::io(&in_path, e))?;
        let mut w = std::io::BufWriter::new(f);
        issuer.write_file(Cards::new(seed, cards), &mut w)?;
        w.flush().map_err(|e| Error::io(&in_path, e))?;
    }
    drop(issuer); // the issuer's clear keys go
    let xof_path = dir.join("order.xof");
    let rej_path = dir.join("rejects.txt");
    let summary = import::import_file(&hsm, &product, &in_path, &xof_path, Some(&rej_path), opts)?;
    let xof_verified = crate::xof::verify_file_with_key(&xof_path, &hsm, labels::XOF_MAC)?;
    let round_trip = verify_against(&hsm, &xof_path, Cards::new(seed, cards))?;
    // Data prep: transport keys for production, exported under ZMK-prod.
    let c1 = SecretKey::generate(Algorithm::Aes, 32)?;
    let c2 = SecretKey::generate(Algorithm::Aes, 32)?;
    let zmk_prod = hierarchy::zmk_ceremony(
        &hsm,
        labels::ZMK_PROD,
        Algorithm::Aes,
        &[c1.expose_secret(), c2.expose_secret()],
        &[Some(c1.kcv()), Some(c2.kcv())],
        None,
    )?;
    let transport =
        hierarchy::issue_transport_keys(&hsm, &zmk_prod.handle, "PROD1", Algorithm::Aes, 32)?;
    let tk_path = dir.join("transport-keys.txt");
    let mut t = String::from(
        "# Transport keys for production: TR-31 version D key blocks under ZMK-PROD, with KCVs\n",
    );
    for (name, k) in [
        ("KTK", &transport.ktk),
        ("PTK", &transport.ptk),
        ("MTK", &transport.mtk),
    ] {
        t.push_str(&format!(
            "{name} label={} kcv={} block={}\n",
            k.info.spec.label, k.info.kcv, k.block
        ));
    }
    std::fs::write(&tk_path, t).map_err(|e| Error::io(&tk_path, e))?;
    hsm.flush_audit()?;
    Ok(DemoSummary {
        dir: dir.to_path_buf(),
        keys: hsm.list_keys()?,
        import: summary,
        xof_verified,
        round_trip,
        transport,
        files: vec![ks, product_path, in_path, xof_path, rej_path, tk_path],
    })
}
