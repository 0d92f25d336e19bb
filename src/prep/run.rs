//! The data-preparation run: a verified XOF order in, a production file and a reject
//! report out, parallel over cores with the cards in order.
//!
//! The XOF is read through [`xof::Reader`] (header, every record MAC and the chain, the
//! trailer; with the profile's `xof-mac-key`, pinned to that key) one batch of records at a
//! time; worker threads prepare the cards of a batch through the [`Hsm`]; the caller's
//! thread writes them in order. Per card:
//! - the XOF attributes the profile reads are decrypted under their DKeps through
//!   [`Hsm::decrypt`] into wiped buffers (cardholder data is clear in this process while
//!   the card's DGIs are built; keys and PINs never are);
//! - the ICC master keys are derived inside the HSM and come back under the KTK
//!   ([`Hsm::derive_icc_master_keys`]), with their KCVs;
//! - the PIN block is translated inside the HSM to ISO format 2 under the PTK
//!   ([`Hsm::translate_pin_for_card`]);
//! - with `<icc-rsa>`: once the records marked `oda` are built, the card's ICC RSA key pair
//!   is made in the HSM ([`Hsm::generate_icc_rsa_key`], from the pool unless
//!   [`Options::icc_use_pool`] is false) and its CRT parts come back under the KTK; the ICC
//!   certificate and SDA's signed static data over the static data to be authenticated
//!   ([`super::icc`]) are signed with the issuer key ([`Hsm::sign_emv_recovery`]); then the
//!   DGIs that hold them are built;
//! - DGIs that carry cardholder data are encrypted under the DTK (CBC, a fresh random IV,
//!   padding method 2) through [`Hsm::encrypt`]; constants and KCVs stay clear.
//!
//! A card whose data does not fit the profile (an attribute missing, a value that its
//! format refuses, a PIN block that does not decode) is rejected — written to the reject
//! report with its XOF sequence number, id, the DGI and the reason, never a value. Any
//! other failure (a key missing or refused, the XOF failing its MACs) stops the run and
//! leaves no output.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::dgi;
use super::icc::{self, IccCertificateFields};
use super::production::{self, Card, Dgi, Protection};
use super::profile::{DgiContent, IccRsa, Profile, TagContent, TagSource, TagSpec};
use crate::hsm::emv::{IccKeyRequest, IccMasterKeys, Psn};
use crate::hsm::rsa::{IccRsaRequest, RsaKeyInfo};
use crate::hsm::{Capability, CipherSpec, Hsm, KeyHandle, KeyInfo, PinSpec};
use crate::import::output::Outputs;
use crate::keyblock::{KeyUsage, ModeOfUse};
use crate::pinblock::{Pan, PinBlockFormat};
use crate::rsa::RsaExponent;
use crate::xof::{self, KeyRef, Record};
use crate::{Algorithm, Error, MacAlgorithm, Mode, Padding, Result};

/// Options of a run.
pub struct Options<'a> {
    /// Worker threads; 0 = the number of cores.
    pub workers: usize,
    /// XOF records read per batch (shared among the workers).
    pub batch: usize,
    /// The production file's creation time (RFC 3339, UTC); default now.
    pub created: Option<String>,
    /// Called after each batch is written with the records read so far.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// Accept a TEST-marked XOF on a production HSM (refused by default).
    pub allow_test: bool,
    /// Take ICC key pairs from the HSM's pool when it has them (default); false generates
    /// every card's key pair in line.
    pub icc_use_pool: bool,
    /// The first ICC certificate serial number (the card of XOF sequence number `s` gets
    /// `start + s − 1` modulo 2^24); `None` draws a random start per run. An issuer that
    /// keeps its own serial sequence passes its next value (`docs/profile.md`).
    pub icc_serial_start: Option<u32>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            workers: 0,
            batch: 256,
            created: None,
            progress: None,
            allow_test: false,
            icc_use_pool: true,
            icc_serial_start: None,
        }
    }
}

impl core::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Options")
            .field("workers", &self.workers)
            .field("batch", &self.batch)
            .field("created", &self.created)
            .field("icc_use_pool", &self.icc_use_pool)
            .field("icc_serial_start", &self.icc_serial_start)
            .finish_non_exhaustive()
    }
}

/// Why a card was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// An attribute the profile reads is not in the record and has no default.
    MissingAttribute,
    /// A value does not fit its tag's format (or its encrypted form does not decrypt).
    BadValue,
    /// The PAN is not 12 to 19 digits.
    Pan,
    /// The PSN is not one or two digits.
    Psn,
    /// The PIN block does not decode (wrong format, PAN or key).
    PinBlock,
    /// The card's data is longer than a DGI or a card may hold.
    TooLong,
}

impl Reason {
    /// The code written to the reject report.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingAttribute => "missing-attribute",
            Reason::BadValue => "bad-value",
            Reason::Pan => "pan",
            Reason::Psn => "psn",
            Reason::PinBlock => "pin-block",
            Reason::TooLong => "too-long",
        }
    }
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.code())
    }
}

/// One rejected card. Never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The record's sequence number in the XOF.
    pub seq: u64,
    /// The issuer's id of the record.
    pub id: String,
    /// The DGI at fault (`None` for the card as a whole).
    pub dgi: Option<u16>,
    /// The XOF attribute at fault, if one.
    pub attribute: Option<String>,
    /// Why.
    pub reason: Reason,
}

impl Reject {
    /// The report line: `seq=N id=ID dgi=XXXX attribute=NAME reason=CODE`.
    pub fn line(&self) -> String {
        format!(
            "seq={} id={} dgi={} attribute={} reason={}",
            self.seq,
            self.id,
            self.dgi.map_or("-".to_string(), |d| format!("{d:04X}")),
            self.attribute.as_deref().unwrap_or("-"),
            self.reason
        )
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The order id (from the XOF).
    pub order_id: String,
    /// XOF records read (and verified).
    pub read: u64,
    /// Cards written to the production file.
    pub prepared: u64,
    /// Cards rejected.
    pub rejected: u64,
    /// Rejects per reason.
    pub reasons: BTreeMap<Reason, u64>,
    /// Wall time.
    pub elapsed: Duration,
    /// Worker threads used.
    pub workers: usize,
    /// The keys the production file refers to.
    pub keys: Vec<KeyInfo>,
    /// ICC key pairs taken from the HSM's pool.
    pub icc_keys_from_pool: u64,
    /// ICC key pairs generated in line (the pool was empty, or not used).
    pub icc_keys_in_line: u64,
    /// The first ICC certificate serial number of the run (the card of XOF sequence number
    /// `s` got `first + s − 1` modulo 2^24), when the profile makes certificates.
    pub icc_serial_first: Option<u32>,
}

impl Summary {
    /// Cards (records read) per second.
    pub fn cards_per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.read as f64 / s } else { 0.0 }
    }
}

/// The keys of a run, resolved and checked before any record is read.
struct Keys {
    ktk: KeyInfo,
    ptk: KeyInfo,
    mtk: KeyInfo,
    dtk: KeyInfo,
    imks: Option<[KeyHandle; 3]>,
    /// The issuer RSA key, when the profile has `<icc-rsa>`.
    issuer: Option<RsaKeyInfo>,
}

fn find(hsm: &dyn Hsm, role: &str, label: &str) -> Result<KeyInfo> {
    let h = hsm.find_key(label).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!("{role} '{label}' named by the profile")),
        e => e,
    })?;
    hsm.key_info(&h)
}

fn want_usage(info: &KeyInfo, role: &str, usage: KeyUsage) -> Result<()> {
    if info.spec.usage != usage {
        return Err(Error::Policy(format!(
            "{role} '{}' has usage {}, a {role} is {usage}",
            info.spec.label, info.spec.usage
        )));
    }
    Ok(())
}

impl Keys {
    fn resolve(hsm: &dyn Hsm, profile: &Profile) -> Result<Self> {
        let caps = hsm.capabilities();
        caps.require(Capability::Mac(MacAlgorithm::CmacAes))?;
        let k = &profile.keys;
        let ktk = find(hsm, "KTK", &k.ktk)?;
        let ptk = find(hsm, "PTK", &k.ptk)?;
        let mtk = find(hsm, "MTK", &k.mtk)?;
        let dtk = find(hsm, "DTK", &k.dtk)?;
        want_usage(&ktk, "KTK", KeyUsage::K0)?;
        want_usage(&ptk, "PTK", KeyUsage::P0)?;
        want_usage(&mtk, "MTK", KeyUsage::M6)?;
        want_usage(&dtk, "DTK", KeyUsage::D0)?;
        production::check_mac_key(&mtk)?;
        if !matches!(mtk.spec.mode_of_use, ModeOfUse::C | ModeOfUse::G) {
            return Err(Error::Policy(format!(
                "MTK '{}' (mode {:?}) may not generate MACs",
                mtk.spec.label, mtk.spec.mode_of_use
            )));
        }
        let labels = [&ktk, &ptk, &mtk, &dtk].map(|i| i.spec.label.as_str());
        for (i, l) in labels.iter().enumerate() {
            if labels[..i].contains(l) {
                return Err(Error::invalid(
                    "profile keys",
                    format!("'{l}' is named for two roles"),
                ));
            }
        }
        let imks = match &profile.icc {
            Some(icc) => {
                caps.require(Capability::IccKeyDerivation)?;
                let mut hs = Vec::with_capacity(3);
                for (label, role) in icc.imks.iter().zip(["IMK-AC", "IMK-SMI", "IMK-SMC"]) {
                    hs.push(find(hsm, role, label)?.handle);
                }
                Some([hs[0].clone(), hs[1].clone(), hs[2].clone()])
            }
            None => None,
        };
        if profile
            .dgis
            .iter()
            .any(|d| matches!(d.content, DgiContent::PinBlock { .. }))
        {
            caps.require(Capability::CardPin)?;
        }
        let issuer = match &profile.icc_rsa {
            Some(r) => Some(resolve_issuer(hsm, profile, r, &ktk)?),
            None => None,
        };
        Ok(Self {
            ktk,
            ptk,
            mtk,
            dtk,
            imks,
            issuer,
        })
    }

    fn key_refs(&self) -> Vec<KeyRef> {
        [&self.ktk, &self.ptk, &self.mtk, &self.dtk]
            .iter()
            .map(|i| KeyRef {
                label: i.spec.label.clone(),
                usage: i.spec.usage,
                algorithm: i.spec.algorithm,
                kcv: i.kcv,
            })
            .collect()
    }
}

/// Resolves and checks the issuer RSA key against `<icc-rsa>` before any record is read:
/// usage S0, exponent as the profile says, a modulus no shorter than the ICC keys, and the
/// issuer certificate and remainder consistent with it; the backend's capabilities; and
/// that unpadded CRT parts are whole blocks of the KTK.
fn resolve_issuer(
    hsm: &dyn Hsm,
    profile: &Profile,
    r: &IccRsa,
    ktk: &KeyInfo,
) -> Result<RsaKeyInfo> {
    let caps = hsm.capabilities();
    caps.require(Capability::RsaKeys)?;
    if profile.needs_icc_key() {
        caps.require(Capability::IccRsaKeys)?;
    }
    let h = hsm.find_key(&r.issuer_key).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!(
            "issuer RSA key '{}' named by the profile",
            r.issuer_key
        )),
        e => e,
    })?;
    let info = hsm.rsa_key_info(&h)?;
    if info.spec.usage != KeyUsage::S0 {
        return Err(Error::Policy(format!(
            "issuer RSA key '{}' has usage {}, an issuer key signing certificates is S0",
            r.issuer_key, info.spec.usage
        )));
    }
    let n_i = info.public.len();
    let bad = |reason: String| Error::invalid("profile", format!("<icc-rsa>: {reason}"));
    if info.public.bits() < r.bits {
        return Err(bad(format!(
            "the issuer key '{}' has {} bits, fewer than the ICC keys' {} (EMV: N_ICC <= N_I)",
            r.issuer_key,
            info.public.bits(),
            r.bits
        )));
    }
    if RsaExponent::from_bytes(&r.issuer_exponent)? != info.public.exponent() {
        return Err(bad(format!(
            "issuer-exponent {} is not the exponent of the issuer key '{}' ({})",
            hex::encode_upper(&r.issuer_exponent),
            r.issuer_key,
            info.public.exponent()
        )));
    }
    let n_ca = r.issuer_certificate.len();
    if n_i > n_ca {
        return Err(bad(format!(
            "the issuer key '{}' has {n_i} bytes, its certificate {n_ca}: EMV needs N_I <= N_CA",
            r.issuer_key
        )));
    }
    let room = n_ca - icc::ISSUER_CERTIFICATE_OVERHEAD;
    let want = n_i.saturating_sub(room);
    if r.issuer_remainder.len() != want {
        return Err(bad(format!(
            "issuer-remainder has {} bytes; an issuer key of {n_i} bytes under a certificate of {n_ca} has a remainder of {want}",
            r.issuer_remainder.len()
        )));
    }
    let half = (r.bits as usize / 8).div_ceil(2);
    let bs = ktk.spec.algorithm.block_size();
    for d in &profile.dgis {
        if let DgiContent::IccRsaCrt {
            padding: Padding::None,
            ..
        } = d.content
            && !half.is_multiple_of(bs)
        {
            return Err(bad(format!(
                "DGI {:04X}: a CRT part of a {}-bit key has {half} bytes, not whole blocks of the KTK ({bs}): give padding=\"2\"",
                d.id, r.bits
            )));
        }
    }
    Ok(info)
}

/// The XOF keys a run meets, by label: handle and algorithm. Filled from the XOF header
/// before any record is prepared.
struct XofKeys(HashMap<String, (KeyHandle, Algorithm)>);

impl XofKeys {
    fn resolve(hsm: &dyn Hsm, header: &xof::Header) -> Result<Self> {
        let mut m = HashMap::new();
        for k in &header.keys {
            if k.label == header.mac_key {
                continue;
            }
            let h = hsm.find_key(&k.label).map_err(|e| match e {
                Error::NotFound(_) => {
                    Error::NotFound(format!("key '{}' named by the XOF", k.label))
                }
                e => e,
            })?;
            let info = hsm.key_info(&h)?;
            k.kcv.check(&info.kcv, format!("XOF key '{}'", k.label))?;
            m.insert(k.label.clone(), (h, info.spec.algorithm));
        }
        Ok(Self(m))
    }

    fn get(&self, label: &str) -> Result<&(KeyHandle, Algorithm)> {
        self.0
            .get(label)
            .ok_or_else(|| Error::NotFound(format!("XOF key '{label}'")))
    }
}

/// One card's outcome.
enum Outcome {
    /// A card, and whether its ICC key pair came from the pool (`None`: it has none).
    Card(Card, Option<bool>),
    Rejected(Reject),
}

/// One card's values of offline data authentication, made once its static data is final.
#[derive(Default)]
struct OdaValues {
    icc_certificate: Vec<u8>,
    icc_exponent: Vec<u8>,
    icc_remainder: Vec<u8>,
    signed_static_data: Vec<u8>,
}

/// What a worker needs, shared.
struct Ctx<'a> {
    hsm: &'a dyn Hsm,
    profile: &'a Profile,
    keys: &'a Keys,
    xof_keys: &'a XofKeys,
    /// The attributes the profile decrypts (everything it reads but the PIN block).
    clear_attrs: Vec<&'a str>,
    /// The AIP, when the static data to be authenticated ends with it (`9F4A` lists `82`).
    aip: Option<Vec<u8>>,
    /// The first ICC certificate serial number.
    serial_start: u32,
    /// Take ICC key pairs from the pool.
    use_pool: bool,
}

/// Clear attribute values of one card, in one wiped buffer.
struct Clear<'r> {
    buf: Zeroizing<Vec<u8>>,
    spans: Vec<(&'r str, usize, usize)>,
}

impl Clear<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.spans
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|&(_, a, b)| &self.buf[a..b])
    }
}

impl Ctx<'_> {
    fn reject(
        rec: &Record,
        dgi: Option<u16>,
        attribute: Option<&str>,
        reason: Reason,
    ) -> Result<Outcome> {
        Ok(Outcome::Rejected(Reject {
            seq: rec.seq,
            id: rec.issuer_id.clone(),
            dgi,
            attribute: attribute.map(str::to_string),
            reason,
        }))
    }

    /// Prepares one card (its seq in the production file is set by the writer loop).
    fn prepare(&self, rec: &Record) -> Result<Outcome> {
        // Decrypt what the profile reads.
        let mut clear = Clear {
            buf: Zeroizing::new(Vec::with_capacity(512)),
            spans: Vec::with_capacity(self.clear_attrs.len()),
        };
        for a in &rec.attributes {
            if !self.clear_attrs.contains(&a.name.as_str()) {
                continue;
            }
            let (h, _) = self.xof_keys.get(&a.key)?;
            let spec = CipherSpec {
                key: h,
                mode: a.mode,
                iv: a.iv.as_deref(),
                padding: a.padding,
            };
            let at = clear.buf.len();
            clear.buf.resize(at + a.ciphertext.len(), 0);
            match self.hsm.decrypt(&spec, &a.ciphertext, &mut clear.buf[at..]) {
                Ok(n) => {
                    clear.buf.truncate(at + n);
                    let name = self
                        .clear_attrs
                        .iter()
                        .find(|n| **n == a.name)
                        .expect("filtered above");
                    clear.spans.push((name, at, at + n));
                }
                Err(Error::Crypto) => {
                    return Self::reject(rec, None, Some(&a.name), Reason::BadValue);
                }
                Err(e) => return Err(e),
            }
        }

        // PAN and PSN, when the card needs them.
        let icc = self.profile.icc.as_ref();
        let pan_attr = icc.map(|i| i.pan.as_str()).or_else(|| {
            self.profile.dgis.iter().find_map(|d| match &d.content {
                DgiContent::PinBlock { pan, .. } => Some(pan.as_str()),
                _ => None,
            })
        });
        let pan = match pan_attr {
            None => None,
            Some(name) => match clear.get(name) {
                None => return Self::reject(rec, None, Some(name), Reason::MissingAttribute),
                Some(v) => match core::str::from_utf8(v).ok().and_then(|s| Pan::new(s).ok()) {
                    Some(p) => Some(p),
                    None => return Self::reject(rec, None, Some(name), Reason::Pan),
                },
            },
        };

        let mut icc_keys: Option<IccMasterKeys> = None;
        // Built in two passes: first every DGI that does not depend on the static data to
        // be authenticated (the records marked oda among them, collected in profile order),
        // then the ICC key pair, certificate and signed data, then the DGIs holding them.
        let mut dgis: Vec<Option<Dgi>> = Vec::with_capacity(self.profile.dgis.len());
        let mut scratch = Zeroizing::new(Vec::with_capacity(64));
        let mut static_data = Zeroizing::new(Vec::new());
        for spec in &self.profile.dgis {
            let id = spec.id;
            match &spec.content {
                DgiContent::Value(v) => dgis.push(Some(Dgi {
                    id,
                    protection: None,
                    data: v.clone(),
                })),
                DgiContent::IccRsaCrt { .. } => dgis.push(None),
                DgiContent::Tags(_) if spec.contents().any(TagContent::per_card) => {
                    dgis.push(None);
                }
                DgiContent::Tags(tags) => {
                    let data = match self.tags_data(rec, id, tags, &clear, &mut scratch, None)? {
                        Ok(d) => d,
                        Err(o) => return Ok(o),
                    };
                    if spec.oda {
                        match icc::static_data_part(id, &data) {
                            Ok(part) => static_data.extend_from_slice(part),
                            Err(_) => return Self::reject(rec, Some(id), None, Reason::TooLong),
                        }
                    }
                    dgis.push(Some(self.tags_dgi(spec, data)?));
                }
                DgiContent::IccMasterKeys | DgiContent::IccMasterKeyKcvs => {
                    if icc_keys.is_none() {
                        let icc = icc.expect("checked by the profile");
                        let psn = match icc.psn.as_deref().and_then(|n| clear.get(n)) {
                            Some(v) => match core::str::from_utf8(v).ok().map(Psn::parse) {
                                Some(Ok(p)) => p,
                                _ => {
                                    return Self::reject(
                                        rec,
                                        None,
                                        icc.psn.as_deref(),
                                        Reason::Psn,
                                    );
                                }
                            },
                            None => match icc.psn_default {
                                Some(p) => p,
                                None => {
                                    return Self::reject(
                                        rec,
                                        None,
                                        Some(icc.psn.as_deref().unwrap_or("PSN")),
                                        Reason::MissingAttribute,
                                    );
                                }
                            },
                        };
                        let imks = self.keys.imks.as_ref().expect("resolved with the profile");
                        let pan = pan.as_ref().expect("icc-keys names the PAN");
                        icc_keys = Some(self.hsm.derive_icc_master_keys(&IccKeyRequest {
                            imks: [&imks[0], &imks[1], &imks[2]],
                            derivation: icc.option,
                            pan,
                            psn,
                            ktk: &self.keys.ktk.handle,
                        })?);
                    }
                    let k = icc_keys.as_ref().expect("set above");
                    if spec.content == DgiContent::IccMasterKeys {
                        dgis.push(Some(Dgi {
                            id,
                            protection: Some(Protection {
                                key: self.keys.ktk.spec.label.clone(),
                                mode: Mode::Ecb,
                                iv: None,
                                padding: Padding::None,
                            }),
                            data: k.encrypted.clone(),
                        }));
                    } else {
                        dgis.push(Some(Dgi {
                            id,
                            protection: None,
                            data: k.kcvs.iter().flat_map(|c| c.as_bytes().to_vec()).collect(),
                        }));
                    }
                }
                DgiContent::PinBlock { from, format, .. } => {
                    let Some(a) = rec.attributes.iter().find(|a| a.name == *from) else {
                        return Self::reject(rec, Some(id), Some(from), Reason::MissingAttribute);
                    };
                    let (h, alg) = self.xof_keys.get(&a.key)?;
                    let format = format.unwrap_or(match alg {
                        Algorithm::Aes => PinBlockFormat::Iso4,
                        Algorithm::Tdes => PinBlockFormat::Iso0,
                    });
                    let pan = pan.as_ref().expect("the PAN attribute is resolved above");
                    let r = self.hsm.translate_pin_for_card(
                        &PinSpec { key: h, format },
                        &self.keys.ptk.handle,
                        pan,
                        &a.ciphertext,
                    );
                    let data = match r {
                        Ok(d) => d,
                        Err(Error::Crypto) => {
                            return Self::reject(rec, Some(id), Some(from), Reason::PinBlock);
                        }
                        Err(e) => return Err(e),
                    };
                    let padding = if data.len() > 8 {
                        Padding::Iso9797M2
                    } else {
                        Padding::None
                    };
                    dgis.push(Some(Dgi {
                        id,
                        protection: Some(Protection {
                            key: self.keys.ptk.spec.label.clone(),
                            mode: Mode::Ecb,
                            iv: None,
                            padding,
                        }),
                        data,
                    }));
                }
            }
        }

        // Offline data authentication: the static data is final now.
        let mut oda = OdaValues::default();
        let mut icc_from_pool = None;
        let mut crt: Option<[Vec<u8>; 5]> = None;
        if let (Some(r), Some(issuer)) = (&self.profile.icc_rsa, &self.keys.issuer) {
            if let Some(aip) = &self.aip {
                static_data.extend_from_slice(aip);
            }
            let n_i = issuer.public.len();
            if self.profile.needs_icc_key() {
                let padding = self
                    .profile
                    .dgis
                    .iter()
                    .find_map(|d| match d.content {
                        DgiContent::IccRsaCrt { padding, .. } => Some(padding),
                        _ => None,
                    })
                    .unwrap_or(Padding::Iso9797M2);
                let key = self.hsm.generate_icc_rsa_key(&IccRsaRequest {
                    bits: r.bits,
                    exponent: r.exponent,
                    ktk: &self.keys.ktk.handle,
                    padding,
                    use_pool: self.use_pool,
                })?;
                icc_from_pool = Some(key.from_pool);
                oda.icc_exponent = key.public.exponent().bytes().to_vec();
                if self.profile.needs_icc_certificate() {
                    let Some(pan) = clear.get(&r.pan) else {
                        return Self::reject(rec, None, Some(&r.pan), Reason::MissingAttribute);
                    };
                    let Some(pan) = core::str::from_utf8(pan)
                        .ok()
                        .and_then(|p| icc::pan_field(p).ok())
                    else {
                        return Self::reject(rec, None, Some(&r.pan), Reason::Pan);
                    };
                    let Some(expiry) = clear.get(&r.expiry) else {
                        return Self::reject(rec, None, Some(&r.expiry), Reason::MissingAttribute);
                    };
                    let Ok(expiry) = icc::expiry_mmyy(expiry) else {
                        return Self::reject(rec, None, Some(&r.expiry), Reason::BadValue);
                    };
                    let fields = IccCertificateFields {
                        pan,
                        expiry,
                        serial: self.serial(rec.seq)?,
                    };
                    let cert = icc::icc_certificate(n_i, &fields, &key.public, &static_data)?;
                    oda.icc_certificate =
                        self.hsm.sign_emv_recovery(&issuer.handle, &cert.message)?;
                    oda.icc_remainder = cert.remainder;
                } else {
                    let room = n_i - icc::ICC_CERTIFICATE_OVERHEAD;
                    oda.icc_remainder = key.public.modulus()[key.public.len().min(room)..].to_vec();
                }
                crt = Some(key.crt_under_ktk);
            }
            if self.profile.needs_signed_static_data() {
                let dac = r.dac.expect("checked by the profile");
                let m = icc::signed_static_data(n_i, dac, &static_data)?;
                oda.signed_static_data = self.hsm.sign_emv_recovery(&issuer.handle, &m)?;
            }
        }

        // The DGIs that hold what was just made.
        let mut out = Vec::with_capacity(dgis.len());
        for (spec, d) in self.profile.dgis.iter().zip(dgis) {
            if let Some(d) = d {
                out.push(d);
                continue;
            }
            let id = spec.id;
            match &spec.content {
                DgiContent::IccRsaCrt { part, padding } => {
                    let crt = crt.as_ref().expect("made when the profile has CRT DGIs");
                    out.push(Dgi {
                        id,
                        protection: Some(Protection {
                            key: self.keys.ktk.spec.label.clone(),
                            mode: Mode::Ecb,
                            iv: None,
                            padding: *padding,
                        }),
                        data: crt[*part].clone(),
                    });
                }
                DgiContent::Tags(tags) => {
                    let data =
                        match self.tags_data(rec, id, tags, &clear, &mut scratch, Some(&oda))? {
                            Ok(d) => d,
                            Err(o) => return Ok(o),
                        };
                    out.push(self.tags_dgi(spec, data)?);
                }
                _ => unreachable!("only tag and CRT DGIs are deferred"),
            }
        }
        Ok(Outcome::Card(
            Card {
                seq: 0,
                id: rec.issuer_id.clone(),
                dgis: out,
            },
            icc_from_pool,
        ))
    }

    /// The certificate serial number of the card with XOF sequence number `seq`.
    fn serial(&self, seq: u64) -> Result<[u8; 3]> {
        if seq == 0 || seq > 1 << 24 {
            return Err(Error::invalid(
                "ICC certificate serial",
                "more than 2^24 cards in one run: serial numbers would repeat",
            ));
        }
        let s = (u64::from(self.serial_start) + seq - 1) & 0xFF_FFFF;
        let [_, a, b, c] = (s as u32).to_be_bytes();
        Ok([a, b, c])
    }

    /// The data of a DGI of data objects (`70` template around them for a record), or the
    /// card's reject. `oda` holds the per-card values of offline data authentication once
    /// they are made.
    fn tags_data(
        &self,
        rec: &Record,
        id: u16,
        tags: &[TagSpec],
        clear: &Clear<'_>,
        scratch: &mut Zeroizing<Vec<u8>>,
        oda: Option<&OdaValues>,
    ) -> Result<core::result::Result<Zeroizing<Vec<u8>>, Outcome>> {
        let reject = |attribute: Option<&str>, reason| {
            Self::reject(rec, Some(id), attribute, reason).map(Err)
        };
        let mut body = Zeroizing::new(Vec::with_capacity(512));
        for t in tags {
            let r = match &t.source {
                TagSource::Constant(v) => dgi::push_tlv(&mut body, &t.tag, v),
                TagSource::Content(c) => {
                    let r = self
                        .profile
                        .icc_rsa
                        .as_ref()
                        .expect("checked by the profile");
                    let v: &[u8] = match (c, oda) {
                        (TagContent::IssuerCertificate, _) => &r.issuer_certificate,
                        (TagContent::IssuerRemainder, _) => &r.issuer_remainder,
                        (TagContent::IssuerExponent, _) => &r.issuer_exponent,
                        (TagContent::CaIndex, _) => core::slice::from_ref(&r.ca_index),
                        (TagContent::IccCertificate, Some(o)) => &o.icc_certificate,
                        (TagContent::IccExponent, Some(o)) => &o.icc_exponent,
                        (TagContent::IccRemainder, Some(o)) => &o.icc_remainder,
                        (TagContent::SignedStaticData, Some(o)) => &o.signed_static_data,
                        (_, None) => unreachable!("per-card contents are built in the second pass"),
                    };
                    if v.is_empty() {
                        // An empty remainder: the data object is left out.
                        continue;
                    }
                    dgi::push_tlv(&mut body, &t.tag, v)
                }
                TagSource::Attribute {
                    name,
                    format,
                    length,
                    default,
                } => {
                    let v = match (clear.get(name), default) {
                        (Some(v), _) => v,
                        (None, Some(d)) => d.as_bytes(),
                        (None, None) => return reject(Some(name), Reason::MissingAttribute),
                    };
                    if format.encode(v, *length, scratch).is_err() {
                        return reject(Some(name), Reason::BadValue);
                    }
                    dgi::push_tlv(&mut body, &t.tag, scratch)
                }
            };
            if r.is_err() {
                return reject(None, Reason::TooLong);
            }
        }
        let data = if dgi::is_record(id) {
            match dgi::tlv(&[0x70], &body) {
                Ok(r) => Zeroizing::new(r),
                Err(_) => return reject(None, Reason::TooLong),
            }
        } else {
            body
        };
        if data.len() > production::limits::MAX_DGI_DATA - 16 {
            return reject(None, Reason::TooLong);
        }
        Ok(Ok(data))
    }

    /// A DGI of data objects as the production file carries it: under the DTK when it
    /// carries cardholder data, else clear.
    fn tags_dgi(&self, spec: &super::profile::DgiSpec, data: Zeroizing<Vec<u8>>) -> Result<Dgi> {
        if spec.carries_card_data() {
            self.encrypt_dtk(spec.id, &data)
        } else {
            Ok(Dgi {
                id: spec.id,
                protection: None,
                data: data.to_vec(),
            })
        }
    }

    /// A DGI of cardholder data under the DTK: CBC, a fresh random IV, padding method 2.
    fn encrypt_dtk(&self, id: u16, data: &[u8]) -> Result<Dgi> {
        let bs = self.keys.dtk.spec.algorithm.block_size();
        let mut iv = vec![0u8; bs];
        crate::fill_random(&mut iv)?;
        let mut out = vec![0u8; data.len() + bs];
        let n = self.hsm.encrypt(
            &CipherSpec::cbc(&self.keys.dtk.handle, &iv, Padding::Iso9797M2),
            data,
            &mut out,
        )?;
        out.truncate(n);
        Ok(Dgi {
            id,
            protection: Some(Protection {
                key: self.keys.dtk.spec.label.clone(),
                mode: Mode::Cbc,
                iv: Some(iv),
                padding: Padding::Iso9797M2,
            }),
            data: out,
        })
    }
}

/// Prepares the XOF `input` (named `name` in errors) into `out` (the production file) and
/// `rejects` (one line per rejected card). The outputs are complete only when this returns
/// `Ok`: callers write to temporary files and rename them on success ([`run_files`] does).
pub fn run<R: BufRead + Send, W: Write, J: Write>(
    hsm: &dyn Hsm,
    profile: &Profile,
    input: R,
    name: &str,
    out: W,
    mut rejects: J,
    opts: &Options<'_>,
) -> Result<(Summary, W, J)> {
    let start = Instant::now();
    let keys = Keys::resolve(hsm, profile)?;
    let reader = xof::Reader::open_with(
        input,
        hsm,
        name,
        &xof::ReadOptions {
            mac_key: profile.keys.xof_mac_key.as_deref(),
            allow_test: opts.allow_test,
        },
    )?;
    let xh = reader.header().clone();
    if xh.product != profile.product {
        return Err(Error::invalid(
            "XOF",
            format!(
                "{name} is an order for product '{}', the profile '{}' prepares '{}'",
                xh.product, profile.name, profile.product
            ),
        ));
    }
    let xof_keys = XofKeys::resolve(hsm, &xh)?;
    let header = production::Header {
        order_id: xh.order_id.clone(),
        issuer: xh.issuer.clone(),
        product: xh.product.clone(),
        profile: profile.name.clone(),
        created: opts
            .created
            .clone()
            .unwrap_or_else(|| crate::import::clock::now().extended),
        keys: keys.key_refs(),
        mac_key: keys.mtk.spec.label.clone(),
        // A TEST order, or TEST transport keys, make a TEST production file.
        test: xh.test || hsm.capabilities().is_test(),
    };
    let mut writer = production::Writer::new(out, &header, hsm, &keys.mtk.handle)?;
    let pin_from: Vec<&str> = profile
        .dgis
        .iter()
        .filter_map(|d| match &d.content {
            DgiContent::PinBlock { from, .. } => Some(from.as_str()),
            _ => None,
        })
        .collect();
    let serial_start = match opts.icc_serial_start {
        Some(s) if s > 0xFF_FFFF => {
            return Err(Error::invalid(
                "ICC certificate serial",
                format!("{s} does not fit in 3 bytes"),
            ));
        }
        Some(s) => s,
        None => {
            let mut b = [0u8; 4];
            crate::fill_random(&mut b[1..])?;
            u32::from_be_bytes(b)
        }
    };
    let ctx = Ctx {
        hsm,
        profile,
        keys: &keys,
        xof_keys: &xof_keys,
        clear_attrs: profile
            .attributes()
            .into_iter()
            .filter(|a| !pin_from.contains(a))
            .collect(),
        aip: match profile.icc_rsa {
            Some(_) => profile.static_data_aip()?,
            None => None,
        },
        serial_start,
        use_pool: opts.icc_use_pool,
    };
    let workers = match opts.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .max(1);
    let batch_len = opts.batch.max(1);
    let mut summary = Summary {
        order_id: xh.order_id.clone(),
        workers,
        keys: vec![
            keys.ktk.clone(),
            keys.ptk.clone(),
            keys.mtk.clone(),
            keys.dtk.clone(),
        ],
        icc_serial_first: profile.needs_icc_certificate().then_some(serial_start),
        ..Summary::default()
    };
    // Three stages, as in the import: this XOF reader on its own thread (it verifies as it
    // reads), `workers` threads preparing whole batches, and the caller's thread writing the
    // batches back in order. Channels are bounded (2 batches per worker), so memory does not
    // grow with the file; a failure anywhere stops every stage and nothing is committed.
    let (batch_tx, batch_rx) = mpsc::sync_channel::<(u64, Vec<Record>)>(2 * workers);
    let batch_rx = Arc::new(Mutex::new(batch_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, Result<Vec<Outcome>>)>(2 * workers);
    let ctx = &ctx;
    let written = std::thread::scope(|s| -> Result<()> {
        let mut reader = reader;
        let reading = s.spawn(move || -> Result<u64> {
            let mut n = 0u64;
            loop {
                let mut batch = Vec::with_capacity(batch_len);
                let mut end = false;
                while batch.len() < batch_len {
                    match reader.next_record()? {
                        Some(r) => batch.push(r.clone()),
                        None => {
                            end = true;
                            break;
                        }
                    }
                }
                if !batch.is_empty() {
                    if batch_tx.send((n, batch)).is_err() {
                        // The writer stopped: its error is the one reported.
                        return Ok(n);
                    }
                    n += 1;
                }
                if end {
                    return Ok(n);
                }
            }
        });
        let preparing: Vec<_> = (0..workers)
            .map(|_| {
                let rx = Arc::clone(&batch_rx);
                let tx = done_tx.clone();
                s.spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((i, batch)) = job else { break };
                        let r = batch.iter().map(|rec| ctx.prepare(rec)).collect();
                        if tx.send((i, r)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(batch_rx);
        drop(done_tx);
        let mut pending: BTreeMap<u64, Result<Vec<Outcome>>> = BTreeMap::new();
        let mut next = 0u64;
        let mut write = || -> Result<()> {
            for (i, r) in &done_rx {
                pending.insert(i, r);
                while let Some(r) = pending.remove(&next) {
                    for o in r? {
                        summary.read += 1;
                        match o {
                            Outcome::Card(mut c, icc_key) => {
                                c.seq = writer.cards() + 1;
                                writer.write_card(&c)?;
                                summary.prepared += 1;
                                match icc_key {
                                    Some(true) => summary.icc_keys_from_pool += 1,
                                    Some(false) => summary.icc_keys_in_line += 1,
                                    None => {}
                                }
                            }
                            Outcome::Rejected(r) => {
                                writeln!(rejects, "{}", r.line())
                                    .map_err(|e| Error::io("reject report", e))?;
                                summary.rejected += 1;
                                *summary.reasons.entry(r.reason).or_default() += 1;
                            }
                        }
                    }
                    next += 1;
                    if let Some(p) = opts.progress {
                        p(summary.read);
                    }
                }
            }
            Ok(())
        };
        let wrote = write();
        drop(done_rx);
        let read = reading.join();
        let panicked = preparing.into_iter().any(|h| h.join().is_err());
        wrote?;
        let batches = read.map_err(|_| panic_error())??;
        if panicked || next != batches {
            return Err(panic_error());
        }
        Ok(())
    });
    written?;
    let (out, n) = writer.finish()?;
    debug_assert_eq!(n, summary.prepared);
    rejects.flush().map_err(|e| Error::io("reject report", e))?;
    summary.elapsed = start.elapsed();
    Ok((summary, out, rejects))
}

/// A worker or reader thread panicked: nothing is written.
fn panic_error() -> Error {
    Error::Integrity {
        what: "data preparation".into(),
        reason: "a worker thread stopped; nothing was written".into(),
    }
}

/// The default reject report path: `<out stem>.rejects.txt` beside `out`.
pub fn default_rejects_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "production".into());
    out.with_file_name(format!("{stem}.rejects.txt"))
}

/// [`run`] over files: reads the XOF `input`, writes the production file `out` and the
/// reject report (`rejects`, default [`default_rejects_path`]) under temporary names and
/// renames them only on success; on any error neither output exists afterwards (an
/// existing file of the same name is left as it was). The outputs must be two different
/// files, neither of them the input.
pub fn run_files(
    hsm: &dyn Hsm,
    profile: &Profile,
    input: &Path,
    out: &Path,
    rejects: Option<&Path>,
    opts: &Options<'_>,
) -> Result<Summary> {
    let rejects = rejects.map_or_else(|| default_rejects_path(out), Path::to_path_buf);
    let f = fs::File::open(input).map_err(|e| Error::io(input, e))?;
    // The import's output transaction: temporary files beside the targets, renamed only
    // on success, the report's rename undone if the production file's fails.
    let outputs = Outputs::create(input, out, &rejects)?;
    let (prod_w, rej_w) = outputs.writers()?;
    let (summary, prod_w, rej_w) = run(
        hsm,
        profile,
        BufReader::with_capacity(256 * 1024, f),
        &input.display().to_string(),
        prod_w,
        rej_w,
        opts,
    )?;
    outputs.commit(prod_w, rej_w)?;
    Ok(summary)
}
