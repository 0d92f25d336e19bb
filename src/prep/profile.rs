//! Application profiles (`pmp-profile-1`, XML; specified in `docs/profile.md`): how data
//! preparation turns one XOF record into a card's DGIs.
//!
//! A profile names the product whose XOF orders it prepares, the transport keys (KTK, PTK,
//! MTK, DTK), how the ICC master keys are derived (option, the three IMKs, where the PAN and
//! PSN are), and the DGIs in order: record DGIs and other DGIs made of data objects (each
//! from an XOF attribute in a format, or a constant), constant DGIs, and the DGIs whose
//! content data preparation computes (`icc-master-keys`, `icc-master-key-kcvs`,
//! `pin-block`).
//!
//! The parser is strict: unknown elements or attributes, a repeated attribute, a DOCTYPE,
//! processing instructions, CDATA or text, a repeated DGI and inconsistent settings are
//! refused with the element named.
//!
//! ```
//! let xml = r#"<profile format="pmp-profile-1" name="P" product="PROD">
//!   <keys ktk="KTK" ptk="PTK" mtk="MTK" dtk="DTK"/>
//!   <dgi id="0101"><tag id="5A" from="PAN" format="cn"/></dgi>
//!   <dgi id="9010" value="0303"/>
//! </profile>"#;
//! let p = pmp_core::prep::profile::Profile::parse(xml).unwrap();
//! assert_eq!(p.dgis.len(), 2);
//! ```

use std::path::Path;

use quick_xml::events::BytesStart;

use super::dgi::{self, Format};
use crate::hsm::emv::{IccDerivation, Psn};
use crate::pinblock::PinBlockFormat;
use crate::rsa::{RsaExponent, check_emv_bits};
use crate::xml::{self, Content, XmlError};
use crate::{Error, Padding, Result};

/// The format identifier a profile declares.
pub const FORMAT: &str = "pmp-profile-1";

/// The largest profile file accepted.
pub const MAX_PROFILE_BYTES: usize = 1024 * 1024;

/// DGIs in one profile, at most.
pub const MAX_DGIS: usize = 256;

/// Data objects in one DGI, at most.
pub const MAX_TAGS: usize = 64;

/// The transport keys a profile prepares under, by label in the data-prep HSM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileKeys {
    /// Key transport key (K0): the ICC master keys (DGI `icc-master-keys`).
    pub ktk: String,
    /// PIN transport key (P0, exportable): the card PIN block (DGI `pin-block`).
    pub ptk: String,
    /// MAC transport key (AES, M6): the production file's MACs.
    pub mtk: String,
    /// Data transport key (D0): DGIs that carry cardholder data.
    pub dtk: String,
    /// The XOF MAC key the order must be MACed under (pinned); when absent, any XOF MAC key
    /// that passes the XOF's key policy (AES, M6, not exportable).
    pub xof_mac_key: Option<String>,
}

/// How the ICC master keys are derived (`<icc-keys>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IccKeys {
    /// Option A, B, C or auto.
    pub option: IccDerivation,
    /// IMK-AC (E0), IMK-SMI (E2), IMK-SMC (E1): labels in the data-prep HSM.
    pub imks: [String; 3],
    /// The XOF attribute holding the PAN.
    pub pan: String,
    /// The XOF attribute holding the PSN, if any.
    pub psn: Option<String>,
    /// The PSN when the record has none.
    pub psn_default: Option<Psn>,
}

/// The card's RSA key pair and its EMV certificates (`<icc-rsa>`): what offline data
/// authentication (SDA, DDA, CDA) needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IccRsa {
    /// The ICC modulus length in bits (a multiple of 8 from 1024 to 1984).
    pub bits: u32,
    /// The ICC public exponent.
    pub exponent: RsaExponent,
    /// The issuer's RSA key (usage S0) in the data-prep HSM: signs the ICC certificates.
    pub issuer_key: String,
    /// The issuer public-key certificate from the scheme CA (tag `90`), `N_CA` bytes.
    pub issuer_certificate: Vec<u8>,
    /// The issuer public-key remainder (tag `92`); empty when the issuer modulus fits in
    /// its certificate.
    pub issuer_remainder: Vec<u8>,
    /// The issuer public exponent as the card carries it (tag `9F32`): `03` or `010001`.
    pub issuer_exponent: Vec<u8>,
    /// The CA public-key index (tag `8F`).
    pub ca_index: u8,
    /// The data authentication code of SDA's signed static data (`signed-static-data`).
    pub dac: Option<[u8; 2]>,
    /// The XOF attribute holding the PAN (ASCII digits).
    pub pan: String,
    /// The XOF attribute holding the card's expiry (`YYMM`): the certificate's expiry.
    pub expiry: String,
}

/// Per-card or per-issuer values of offline data authentication a `<tag>` can hold
/// (`content="…"`), each bound to its EMV tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TagContent {
    /// The ICC public-key certificate (`9F46`), signed per card with the issuer key.
    IccCertificate,
    /// The ICC public exponent (`9F47`).
    IccExponent,
    /// The ICC public-key remainder (`9F48`); the data object is left out when empty.
    IccRemainder,
    /// The issuer public-key certificate (`90`), from `<icc-rsa>`.
    IssuerCertificate,
    /// The issuer public-key remainder (`92`); left out when empty.
    IssuerRemainder,
    /// The issuer public exponent (`9F32`).
    IssuerExponent,
    /// The CA public-key index (`8F`).
    CaIndex,
    /// SDA's signed static application data (`93`), signed per card with the issuer key.
    SignedStaticData,
}

impl TagContent {
    const ALL: [TagContent; 8] = [
        TagContent::IccCertificate,
        TagContent::IccExponent,
        TagContent::IccRemainder,
        TagContent::IssuerCertificate,
        TagContent::IssuerRemainder,
        TagContent::IssuerExponent,
        TagContent::CaIndex,
        TagContent::SignedStaticData,
    ];

    /// The name used in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            TagContent::IccCertificate => "icc-certificate",
            TagContent::IccExponent => "icc-exponent",
            TagContent::IccRemainder => "icc-remainder",
            TagContent::IssuerCertificate => "issuer-certificate",
            TagContent::IssuerRemainder => "issuer-remainder",
            TagContent::IssuerExponent => "issuer-exponent",
            TagContent::CaIndex => "ca-index",
            TagContent::SignedStaticData => "signed-static-data",
        }
    }

    /// The EMV tag the content belongs in.
    pub fn tag(self) -> &'static [u8] {
        match self {
            TagContent::IccCertificate => &[0x9F, 0x46],
            TagContent::IccExponent => &[0x9F, 0x47],
            TagContent::IccRemainder => &[0x9F, 0x48],
            TagContent::IssuerCertificate => &[0x90],
            TagContent::IssuerRemainder => &[0x92],
            TagContent::IssuerExponent => &[0x9F, 0x32],
            TagContent::CaIndex => &[0x8F],
            TagContent::SignedStaticData => &[0x93],
        }
    }

    /// Whether the value is made per card from the static data or the ICC key (so it may
    /// not sit in a record that is itself authenticated).
    pub fn per_card(self) -> bool {
        matches!(
            self,
            TagContent::IccCertificate
                | TagContent::IccExponent
                | TagContent::IccRemainder
                | TagContent::SignedStaticData
        )
    }

    /// Whether the value comes from the card's ICC key pair.
    pub fn needs_icc_key(self) -> bool {
        matches!(
            self,
            TagContent::IccCertificate | TagContent::IccExponent | TagContent::IccRemainder
        )
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Where a data object's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagSource {
    /// A clear XOF attribute, encoded in `format`.
    Attribute {
        /// The XOF attribute's name.
        name: String,
        /// The value format.
        format: Format,
        /// The fixed length in bytes (`n` and `cn` only).
        length: Option<usize>,
        /// The value (before encoding) when the record lacks the attribute; without it
        /// such a record is rejected.
        default: Option<String>,
    },
    /// A constant value.
    Constant(Vec<u8>),
    /// A value of offline data authentication (`<icc-rsa>`).
    Content(TagContent),
}

/// One data object of a DGI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagSpec {
    /// The BER tag, 1 to 3 bytes.
    pub tag: Vec<u8>,
    /// Its value.
    pub source: TagSource,
}

/// What a DGI holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DgiContent {
    /// Data objects (inside a record template `70` for a record DGI).
    Tags(Vec<TagSpec>),
    /// A constant value (the DGI's data as it is).
    Value(Vec<u8>),
    /// MK-AC || MK-SMI || MK-SMC under the KTK.
    IccMasterKeys,
    /// The KCVs of the three ICC master keys, in clear.
    IccMasterKeyKcvs,
    /// One CRT part of the card's ICC private key under the KTK (ECB): DGI 8201
    /// (`q⁻¹ mod p`), 8202 (`d mod (q−1)`), 8203 (`d mod (p−1)`), 8204 (`q`), 8205 (`p`).
    IccRsaCrt {
        /// The part's index in DGI order (0 for 8201 … 4 for 8205).
        part: usize,
        /// Padding before encryption: none (the part must be whole blocks of the KTK) or
        /// ISO/IEC 9797-1 method 2 (`80 00…`).
        padding: Padding,
    },
    /// The card's PIN, ISO 9564-1 format 2, under the PTK.
    PinBlock {
        /// The XOF attribute holding the bureau PIN block.
        from: String,
        /// Its ISO 9564-1 format; `None`: format 4 under an AES bureau PIN key, format 0
        /// under a TDES one.
        format: Option<PinBlockFormat>,
        /// The XOF attribute holding the PAN (for formats 0, 3 and 4).
        pan: String,
    },
}

/// One DGI of the profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DgiSpec {
    /// The DGI number.
    pub id: u16,
    /// What it holds.
    pub content: DgiContent,
    /// Whether the record enters the static data to be authenticated (`oda="true"`).
    pub oda: bool,
}

impl DgiSpec {
    /// Whether the DGI carries data from the XOF or made per card (cardholder data, and the
    /// ICC certificate that recovers to the PAN: encrypted under the DTK).
    pub fn carries_card_data(&self) -> bool {
        matches!(&self.content, DgiContent::Tags(t)
        if t.iter().any(|t| match t.source {
            TagSource::Attribute { .. } => true,
            TagSource::Content(c) => c.per_card(),
            TagSource::Constant(_) => false,
        }))
    }

    /// The per-card contents among its tags.
    pub fn contents(&self) -> impl Iterator<Item = TagContent> + '_ {
        let tags: &[TagSpec] = match &self.content {
            DgiContent::Tags(t) => t,
            _ => &[],
        };
        tags.iter().filter_map(|t| match t.source {
            TagSource::Content(c) => Some(c),
            _ => None,
        })
    }
}

/// An application profile. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name.
    pub name: String,
    /// The product (order profile) whose XOF orders it prepares: the XOF header's product.
    pub product: String,
    /// The transport keys.
    pub keys: ProfileKeys,
    /// ICC master-key derivation, when the profile has an `icc-master-keys` or
    /// `icc-master-key-kcvs` DGI.
    pub icc: Option<IccKeys>,
    /// ICC RSA keys and certificates, when the profile has `icc-rsa-crt` DGIs or offline
    /// data authentication tags.
    pub icc_rsa: Option<IccRsa>,
    /// The DGIs, in card order.
    pub dgis: Vec<DgiSpec>,
}

/// The profile's rules for the one strict XML guard: the whole file is in memory already
/// (at most [`MAX_PROFILE_BYTES`]), so one event may take all of it; comments skipped; no
/// DOCTYPE, processing instruction, CDATA or reference in text; elements no deeper than
/// `profile/dgi/tag`.
const XML_RULES: xml::Rules = xml::Rules {
    event_bytes: MAX_PROFILE_BYTES,
    max_depth: 3,
    comments: true,
    processing_instructions: false,
    text_references: false,
    cdata: false,
};

/// An element's attributes, each to be used exactly once.
struct Elem {
    name: String,
    attrs: Vec<(String, String, bool)>,
}

fn bad(element: &str, reason: impl core::fmt::Display) -> Error {
    Error::invalid("profile", format!("<{element}>: {reason}"))
}

impl Elem {
    fn new(e: &BytesStart<'_>) -> Result<Self> {
        let name = e.name().as_ref().to_string();
        let mut attrs: Vec<(String, String, bool)> = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|err| bad(&name, format!("malformed attribute ({err})")))?;
            let key = a.key.as_ref().to_string();
            let value = xml::attribute_value(&a)
                .map_err(|err| bad(&name, format!("attribute {key}: {err}")))?
                .into_owned();
            if attrs.iter().any(|(k, _, _)| *k == key) {
                return Err(bad(&name, format!("attribute {key} given twice")));
            }
            attrs.push((key, value, false));
        }
        Ok(Self { name, attrs })
    }

    fn get(&mut self, key: &str) -> Option<String> {
        let a = self.attrs.iter_mut().find(|(k, _, _)| k == key)?;
        a.2 = true;
        Some(a.1.clone())
    }

    fn req(&mut self, key: &str) -> Result<String> {
        self.get(key)
            .ok_or_else(|| bad(&self.name, format!("attribute {key} is required")))
    }

    fn label(&mut self, key: &str) -> Result<String> {
        let v = self.req(key)?;
        self.check_label(key, &v)?;
        Ok(v)
    }

    fn check_label(&self, key: &str, v: &str) -> Result<()> {
        if crate::label::is_valid(v) {
            Ok(())
        } else {
            Err(bad(&self.name, format!("{key}: {}", crate::label::RULE)))
        }
    }

    fn hex(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get(key)
            .map(|v| {
                hex::decode(&v)
                    .ok()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad(&self.name, format!("{key} must be hex bytes")))
            })
            .transpose()
    }

    fn done(&self) -> Result<()> {
        match self.attrs.iter().find(|a| !a.2) {
            Some((k, _, _)) => Err(bad(&self.name, format!("unknown attribute {k}"))),
            None => Ok(()),
        }
    }
}

fn parse_dgi_id(e: &mut Elem) -> Result<u16> {
    let v = e.req("id")?;
    let mut b = [0u8; 2];
    if v.len() != 4 || hex::decode_to_slice(&v, &mut b).is_err() {
        return Err(bad(&e.name, "id must be 4 hex digits"));
    }
    Ok(u16::from_be_bytes(b))
}

fn parse_tag(e: &mut Elem) -> Result<TagSpec> {
    let tag = e
        .hex("id")?
        .ok_or_else(|| bad(&e.name, "attribute id is required"))?;
    dgi::check_tag(&tag).map_err(|r| bad(&e.name, format!("id: {r}")))?;
    if tag == [0x70] {
        return Err(bad(
            &e.name,
            "70 is the record template: it is added, not listed",
        ));
    }
    if let Some(c) = e.get("content") {
        let c = TagContent::parse(&c).ok_or_else(|| {
            bad(
                &e.name,
                format!(
                    "content must be one of {}",
                    TagContent::ALL.map(TagContent::as_str).join(", ")
                ),
            )
        })?;
        if tag != c.tag() {
            return Err(bad(
                &e.name,
                format!(
                    "content {} belongs in tag {}, not {}",
                    c.as_str(),
                    hex::encode_upper(c.tag()),
                    hex::encode_upper(&tag)
                ),
            ));
        }
        if e.get("from").is_some() || e.get("value").is_some() {
            return Err(bad(&e.name, "give one of from, value or content"));
        }
        return Ok(TagSpec {
            tag,
            source: TagSource::Content(c),
        });
    }
    let source = match (e.get("from"), e.hex("value")?) {
        (Some(name), None) => {
            e.check_label("from", &name)?;
            let f = e.req("format")?;
            let format = Format::parse(&f).ok_or_else(|| {
                bad(
                    &e.name,
                    "format must be cn, n, ans, b, track2 or yymm-end-of-month",
                )
            })?;
            let length = match e.get("length") {
                None => None,
                Some(l) => Some(
                    l.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=dgi::MAX_LEN).contains(n))
                        .ok_or_else(|| bad(&e.name, "length must be a number of bytes"))?,
                ),
            };
            if length.is_some() && !matches!(format, Format::N | Format::Cn) {
                return Err(bad(&e.name, "length is for formats n and cn"));
            }
            let default = e.get("default");
            if let Some(d) = &default {
                let mut scratch = zeroize::Zeroizing::new(Vec::new());
                format
                    .encode(d.as_bytes(), length, &mut scratch)
                    .map_err(|r| bad(&e.name, format!("default {r}")))?;
            }
            TagSource::Attribute {
                name,
                format,
                length,
                default,
            }
        }
        (None, Some(v)) => TagSource::Constant(v),
        _ => return Err(bad(&e.name, "give either from (with format) or value")),
    };
    Ok(TagSpec { tag, source })
}

fn parse_icc_rsa(e: &mut Elem) -> Result<IccRsa> {
    let bits = e
        .req("bits")?
        .parse::<u32>()
        .ok()
        .filter(|b| check_emv_bits(*b).is_ok())
        .ok_or_else(|| {
            bad(
                &e.name,
                "bits must be an EMV modulus length: a multiple of 8 from 1024 to 1984",
            )
        })?;
    let exponent = e
        .req("exponent")?
        .parse::<u64>()
        .ok()
        .and_then(|v| RsaExponent::from_value(v).ok())
        .ok_or_else(|| bad(&e.name, "exponent must be 3 or 65537"))?;
    let issuer_key = e.label("issuer-key")?;
    let issuer_certificate = e
        .hex("issuer-certificate")?
        .ok_or_else(|| bad(&e.name, "attribute issuer-certificate is required"))?;
    let n_ca = issuer_certificate.len();
    if !(crate::prep::icc::MIN_KEY_BYTES..=crate::prep::icc::MAX_KEY_BYTES).contains(&n_ca) {
        return Err(bad(
            &e.name,
            format!(
                "issuer-certificate has {n_ca} bytes; a CA key (and so the certificate) has 128 to 248"
            ),
        ));
    }
    let issuer_remainder = e.hex("issuer-remainder")?.unwrap_or_default();
    // The issuer modulus is at most 248 bytes and its certificate holds N_CA − 36 of them.
    let room = n_ca - crate::prep::icc::ISSUER_CERTIFICATE_OVERHEAD;
    if room + issuer_remainder.len() > crate::prep::icc::MAX_KEY_BYTES {
        return Err(bad(
            &e.name,
            format!(
                "issuer-remainder of {} bytes with a certificate of {n_ca} makes an issuer key longer than 248 bytes",
                issuer_remainder.len()
            ),
        ));
    }
    let issuer_exponent = e
        .hex("issuer-exponent")?
        .ok_or_else(|| bad(&e.name, "attribute issuer-exponent is required"))?;
    if !matches!(issuer_exponent.as_slice(), [0x03] | [0x01, 0x00, 0x01]) {
        return Err(bad(&e.name, "issuer-exponent must be 03 or 010001"));
    }
    let ca_index = match e.hex("ca-index")?.as_deref() {
        Some(&[i]) => i,
        _ => return Err(bad(&e.name, "ca-index must be one byte in hex")),
    };
    let dac = match e.get("dac") {
        None => None,
        Some(v) => {
            let mut d = [0u8; 2];
            hex::decode_to_slice(&v, &mut d)
                .map_err(|_| bad(&e.name, "dac must be two bytes in hex"))?;
            Some(d)
        }
    };
    let attr = |e: &mut Elem, key: &str| -> Result<String> {
        match e.get(key) {
            Some(v) => {
                e.check_label(key, &v)?;
                Ok(v)
            }
            None => Ok(String::new()),
        }
    };
    let pan = attr(e, "pan")?;
    let expiry = attr(e, "expiry")?;
    Ok(IccRsa {
        bits,
        exponent,
        issuer_key,
        issuer_certificate,
        issuer_remainder,
        issuer_exponent,
        ca_index,
        dac,
        pan,
        expiry: if expiry.is_empty() {
            "EXPIRY".into()
        } else {
            expiry
        },
    })
}

impl Profile {
    /// Reads and parses a profile file.
    pub fn load(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.len() > MAX_PROFILE_BYTES as u64 {
            return Err(bad("profile", "file larger than 1 MiB"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|e| match e {
            Error::Invalid { field, reason } => Error::Invalid {
                field,
                reason: format!("{}: {reason}", path.display()),
            },
            e => e,
        })
    }

    /// Parses a profile's text.
    pub fn parse(xml: &str) -> Result<Self> {
        if xml.len() > MAX_PROFILE_BYTES {
            return Err(bad("profile", "file larger than 1 MiB"));
        }
        let mut r = xml::StrictReader::new(xml.as_bytes(), XML_RULES);
        let mut buf = Vec::new();
        let mut path: Vec<String> = Vec::new();
        let mut head: Option<(String, String)> = None;
        let mut keys: Option<ProfileKeys> = None;
        let mut icc: Option<IccKeys> = None;
        let mut icc_rsa: Option<IccRsa> = None;
        let mut dgis: Vec<DgiSpec> = Vec::new();
        let mut open_tags: Option<Vec<TagSpec>> = None;
        loop {
            let ev = r.next(&mut buf).map_err(|e| {
                let at = path.last().map_or("profile", String::as_str);
                match e {
                    XmlError::Refused(r) => bad(at, r),
                    XmlError::Malformed {
                        truncated: true, ..
                    } => bad(
                        at,
                        "not well-formed XML: the file ends inside the element (truncated)",
                    ),
                    XmlError::Malformed { error, .. } => {
                        bad(at, format!("not well-formed XML: {error}"))
                    }
                    XmlError::TooLarge { .. } | XmlError::Io(_) => {
                        bad("profile", "file larger than 1 MiB")
                    }
                }
            })?;
            let (start, empty) = match &ev {
                Content::Start(s) => (Some(s), false),
                Content::Empty(s) => (Some(s), true),
                _ => (None, false),
            };
            if let Some(s) = start {
                let mut e = Elem::new(s)?;
                let parent = path.last().map_or("", String::as_str);
                match (parent, e.name.as_str()) {
                    ("", "profile") if head.is_none() => {
                        if e.req("format")? != FORMAT {
                            return Err(bad("profile", format!("format must be {FORMAT}")));
                        }
                        let name = e.label("name")?;
                        let product = e.req("product")?;
                        crate::xof::check_text(&product)
                            .map_err(|r| bad("profile", format!("product {r}")))?;
                        head = Some((name, product));
                    }
                    ("profile", "keys") if keys.is_none() => {
                        keys = Some(ProfileKeys {
                            ktk: e.label("ktk")?,
                            ptk: e.label("ptk")?,
                            mtk: e.label("mtk")?,
                            dtk: e.label("dtk")?,
                            xof_mac_key: match e.get("xof-mac-key") {
                                Some(v) => {
                                    e.check_label("xof-mac-key", &v)?;
                                    Some(v)
                                }
                                None => None,
                            },
                        });
                    }
                    ("profile", "icc-keys") if icc.is_none() => {
                        let option = e
                            .req("option")?
                            .parse::<IccDerivation>()
                            .map_err(|_| bad(&e.name, "option must be A, B, C or auto"))?;
                        let imks = [e.label("imk-ac")?, e.label("imk-smi")?, e.label("imk-smc")?];
                        let pan = e.label("pan")?;
                        let psn = match e.get("psn") {
                            Some(v) => {
                                e.check_label("psn", &v)?;
                                Some(v)
                            }
                            None => None,
                        };
                        let psn_default = e
                            .get("psn-default")
                            .map(|v| Psn::parse(&v))
                            .transpose()
                            .map_err(|_| bad(&e.name, "psn-default must be 00 to 99"))?;
                        icc = Some(IccKeys {
                            option,
                            imks,
                            pan,
                            psn,
                            psn_default,
                        });
                    }
                    ("profile", "icc-rsa") if icc_rsa.is_none() => {
                        icc_rsa = Some(parse_icc_rsa(&mut e)?);
                    }
                    ("profile", "dgi") => {
                        if dgis.len() >= MAX_DGIS {
                            return Err(bad("dgi", format!("more than {MAX_DGIS} DGIs")));
                        }
                        let id = parse_dgi_id(&mut e)?;
                        if dgis.iter().any(|d| d.id == id) {
                            return Err(bad("dgi", format!("DGI {id:04X} is given twice")));
                        }
                        let content = match (e.get("content"), e.hex("value")?) {
                            (None, None) if !empty => {
                                open_tags = Some(Vec::new());
                                DgiContent::Tags(Vec::new())
                            }
                            (None, None) => {
                                return Err(bad(
                                    "dgi",
                                    format!("DGI {id:04X} needs tags, a value or a content"),
                                ));
                            }
                            (None, Some(v)) if empty => DgiContent::Value(v),
                            (Some(c), None) if empty => match c.as_str() {
                                "icc-rsa-crt" => {
                                    if !(0x8201..=0x8205).contains(&id) {
                                        return Err(bad(
                                            "dgi",
                                            format!(
                                                "DGI {id:04X}: icc-rsa-crt is for DGIs 8201 to 8205 (the DGI number says which CRT part)"
                                            ),
                                        ));
                                    }
                                    let padding = match e.get("padding").as_deref() {
                                        None | Some("2") => Padding::Iso9797M2,
                                        Some("none") => Padding::None,
                                        Some(_) => {
                                            return Err(bad(
                                                "dgi",
                                                format!("DGI {id:04X}: padding must be none or 2"),
                                            ));
                                        }
                                    };
                                    DgiContent::IccRsaCrt {
                                        part: usize::from(id - 0x8201),
                                        padding,
                                    }
                                }
                                "icc-master-keys" => DgiContent::IccMasterKeys,
                                "icc-master-key-kcvs" => DgiContent::IccMasterKeyKcvs,
                                "pin-block" => {
                                    let from = e.get("from").unwrap_or_else(|| "PIN_BLOCK".into());
                                    e.check_label("from", &from)?;
                                    let format = e
                                        .get("pin-format")
                                        .map(|f| {
                                            f.parse::<u8>()
                                                .ok()
                                                .and_then(PinBlockFormat::from_number)
                                                .filter(|f| *f != PinBlockFormat::Iso2)
                                                .ok_or_else(|| {
                                                    bad("dgi", "pin-format must be 0, 1, 3 or 4")
                                                })
                                        })
                                        .transpose()?;
                                    let pan = match e.get("pan") {
                                        Some(p) => {
                                            e.check_label("pan", &p)?;
                                            p
                                        }
                                        None => String::new(),
                                    };
                                    DgiContent::PinBlock { from, format, pan }
                                }
                                _ => {
                                    return Err(bad(
                                        "dgi",
                                        "content must be icc-master-keys, icc-master-key-kcvs, pin-block or icc-rsa-crt",
                                    ));
                                }
                            },
                            _ => {
                                return Err(bad(
                                    "dgi",
                                    format!(
                                        "DGI {id:04X}: give tags, or value, or content (value and content on an empty element)"
                                    ),
                                ));
                            }
                        };
                        let oda = match e.get("oda").as_deref() {
                            None | Some("false") => false,
                            Some("true") if dgi::is_record(id) => true,
                            Some("true") => {
                                return Err(bad(
                                    "dgi",
                                    format!(
                                        "DGI {id:04X}: oda is for record DGIs (0101 to 1E10); only records are authenticated"
                                    ),
                                ));
                            }
                            Some(_) => {
                                return Err(bad(
                                    "dgi",
                                    format!("DGI {id:04X}: oda must be true or false"),
                                ));
                            }
                        };
                        if !matches!(content, DgiContent::Tags(_)) && dgi::is_record(id) {
                            return Err(bad(
                                "dgi",
                                format!("DGI {id:04X} is a record: it holds data objects (<tag>)"),
                            ));
                        }
                        if dgis.iter().any(|d| {
                            !matches!(
                                d.content,
                                DgiContent::Tags(_)
                                    | DgiContent::Value(_)
                                    | DgiContent::IccRsaCrt { .. }
                            ) && core::mem::discriminant(&d.content)
                                == core::mem::discriminant(&content)
                        }) {
                            return Err(bad(
                                "dgi",
                                format!("DGI {id:04X}: this content is given twice"),
                            ));
                        }
                        dgis.push(DgiSpec { id, content, oda });
                    }
                    ("dgi", "tag") if open_tags.is_some() => {
                        let t = parse_tag(&mut e)?;
                        let tags = open_tags.as_mut().expect("checked");
                        if tags.len() >= MAX_TAGS {
                            return Err(bad("tag", format!("more than {MAX_TAGS} tags in a DGI")));
                        }
                        if tags.iter().any(|o| o.tag == t.tag) {
                            return Err(bad(
                                "tag",
                                format!(
                                    "tag {} is given twice in one DGI",
                                    hex::encode_upper(&t.tag)
                                ),
                            ));
                        }
                        tags.push(t);
                    }
                    (p, n) => {
                        let why = if matches!(
                            (p, n),
                            ("", "profile") | ("profile", "keys" | "icc-keys" | "icc-rsa")
                        ) {
                            "given more than once".to_string()
                        } else if p.is_empty() {
                            "unexpected element (the root is <profile>)".to_string()
                        } else {
                            format!("unexpected element inside <{p}>")
                        };
                        return Err(bad(n, why));
                    }
                }
                e.done()?;
                if !empty {
                    path.push(e.name);
                }
                if empty && path.is_empty() {
                    return Err(bad("profile", "holds no keys and no DGI"));
                }
                continue;
            }
            match ev {
                Content::End(end) => {
                    if end.name().as_ref() == "dgi"
                        && let Some(tags) = open_tags.take()
                    {
                        if tags.is_empty() {
                            return Err(bad("dgi", "a DGI with an end tag holds <tag> elements"));
                        }
                        if let Some(d) = dgis.last_mut() {
                            d.content = DgiContent::Tags(tags);
                        }
                    }
                    path.pop();
                }
                Content::Eof if path.is_empty() => break,
                Content::Eof => {
                    return Err(bad(
                        path.last().map_or("profile", String::as_str),
                        "not well-formed XML: the file ends inside the element (truncated)",
                    ));
                }
                Content::Decl(_) | Content::Skipped => {}
                Content::Text(t) if t.trim().is_empty() => {}
                _ => {
                    return Err(bad(
                        path.last().map_or("profile", String::as_str),
                        "unexpected text or reference",
                    ));
                }
            }
        }
        let (name, product) = head.ok_or_else(|| bad("profile", "missing"))?;
        let keys = keys.ok_or_else(|| bad("keys", "missing"))?;
        let mut p = Profile {
            name,
            product,
            keys,
            icc,
            icc_rsa,
            dgis,
        };
        p.check()?;
        Ok(p)
    }

    fn check(&mut self) -> Result<()> {
        if self.dgis.is_empty() {
            return Err(bad("profile", "no DGI"));
        }
        let needs_icc = self.dgis.iter().any(|d| {
            matches!(
                d.content,
                DgiContent::IccMasterKeys | DgiContent::IccMasterKeyKcvs
            )
        });
        match (&self.icc, needs_icc) {
            (None, true) => {
                return Err(bad(
                    "icc-keys",
                    "missing: icc-master-keys and icc-master-key-kcvs need it",
                ));
            }
            (Some(_), false) => {
                return Err(bad(
                    "icc-keys",
                    "given, but no DGI has content icc-master-keys or icc-master-key-kcvs",
                ));
            }
            _ => {}
        }
        self.check_icc_rsa()?;
        let default_pan = self.icc.as_ref().map(|i| i.pan.clone());
        for d in &mut self.dgis {
            if let DgiContent::PinBlock { pan, .. } = &mut d.content
                && pan.is_empty()
            {
                *pan = default_pan.clone().unwrap_or_else(|| "PAN".to_string());
            }
        }
        Ok(())
    }

    fn check_icc_rsa(&mut self) -> Result<()> {
        let crt: Vec<&DgiSpec> = self
            .dgis
            .iter()
            .filter(|d| matches!(d.content, DgiContent::IccRsaCrt { .. }))
            .collect();
        let first_content = self.dgis.iter().find_map(|d| d.contents().next());
        let oda = self.dgis.iter().find(|d| d.oda);
        let Some(rsa) = &mut self.icc_rsa else {
            if let Some(d) = crt.first() {
                return Err(bad(
                    "icc-rsa",
                    format!(
                        "missing: DGI {:04X} (icc-rsa-crt) needs the card's RSA key pair",
                        d.id
                    ),
                ));
            }
            if let Some(c) = first_content {
                return Err(bad(
                    "icc-rsa",
                    format!("missing: tag content {} needs it", c.as_str()),
                ));
            }
            if let Some(d) = oda {
                return Err(bad(
                    "icc-rsa",
                    format!(
                        "missing: DGI {:04X} is marked oda, but nothing is signed without <icc-rsa>",
                        d.id
                    ),
                ));
            }
            return Ok(());
        };
        if !crt.is_empty() {
            if crt.len() != 5 {
                return Err(bad(
                    "dgi",
                    "icc-rsa-crt: give all five CRT DGIs 8201 to 8205 (a card needs the whole private key)",
                ));
            }
            let paddings: Vec<Padding> = crt
                .iter()
                .filter_map(|d| match d.content {
                    DgiContent::IccRsaCrt { padding, .. } => Some(padding),
                    _ => None,
                })
                .collect();
            if paddings.iter().any(|p| *p != paddings[0]) {
                return Err(bad(
                    "dgi",
                    "icc-rsa-crt: DGIs 8201 to 8205 have one padding setting",
                ));
            }
        }
        for d in &self.dgis {
            if let Some(c) = d.contents().find(|c| c.per_card())
                && d.oda
            {
                return Err(bad(
                    "dgi",
                    format!(
                        "DGI {:04X} is marked oda and holds {} (tag {}), which is made from the authenticated data: circular",
                        d.id,
                        c.as_str(),
                        hex::encode_upper(c.tag())
                    ),
                ));
            }
        }
        let contents: Vec<TagContent> = self.dgis.iter().flat_map(|d| d.contents()).collect();
        if crt.is_empty() && contents.is_empty() {
            return Err(bad(
                "icc-rsa",
                "given, but no DGI is icc-rsa-crt and no tag holds one of its contents",
            ));
        }
        if contents.contains(&TagContent::SignedStaticData) && rsa.dac.is_none() {
            return Err(bad(
                "icc-rsa",
                "signed-static-data needs the data authentication code: give dac=\"HEX\" (2 bytes)",
            ));
        }
        if rsa.dac.is_some() && !contents.contains(&TagContent::SignedStaticData) {
            return Err(bad(
                "icc-rsa",
                "dac is given, but no tag has content signed-static-data",
            ));
        }
        let signs = contents
            .iter()
            .any(|c| matches!(c, TagContent::IccCertificate | TagContent::SignedStaticData));
        if signs && oda.is_none() {
            return Err(bad(
                "icc-rsa",
                "a certificate or signed data is asked for, but no record DGI is marked oda=\"true\"",
            ));
        }
        if rsa.pan.is_empty() {
            rsa.pan = self
                .icc
                .as_ref()
                .map_or_else(|| "PAN".to_string(), |i| i.pan.clone());
        }
        self.static_data_aip()?;
        Ok(())
    }

    /// Whether a card needs an ICC RSA key pair (`icc-rsa-crt` DGIs, or ICC key tags).
    pub fn needs_icc_key(&self) -> bool {
        self.dgis.iter().any(|d| {
            matches!(d.content, DgiContent::IccRsaCrt { .. })
                || d.contents().any(TagContent::needs_icc_key)
        })
    }

    /// Whether a card gets an ICC public-key certificate (tag content `icc-certificate`).
    pub fn needs_icc_certificate(&self) -> bool {
        self.dgis
            .iter()
            .any(|d| d.contents().any(|c| c == TagContent::IccCertificate))
    }

    /// Whether a card gets SDA's signed static data (tag content `signed-static-data`).
    pub fn needs_signed_static_data(&self) -> bool {
        self.dgis
            .iter()
            .any(|d| d.contents().any(|c| c == TagContent::SignedStaticData))
    }

    /// Whether the static data to be authenticated ends with the AIP, and its value: `9F4A`
    /// (the static data authentication tag list, a constant) listing `82`; the AIP is the
    /// constant tag `82` of a DGI (a `<tag>`, or among the data objects of a `value` DGI
    /// such as the GPO response DGI 9104). EMV allows only the AIP in the list.
    pub fn static_data_aip(&self) -> Result<Option<Vec<u8>>> {
        let mut list: Option<&[u8]> = None;
        let mut aip: Option<Vec<u8>> = None;
        for d in &self.dgis {
            match &d.content {
                DgiContent::Tags(tags) => {
                    for t in tags {
                        match (&t.tag[..], &t.source) {
                            ([0x9F, 0x4A], TagSource::Constant(v)) => list = Some(v),
                            ([0x9F, 0x4A], _) => {
                                return Err(bad(
                                    "tag",
                                    format!(
                                        "DGI {:04X}: 9F4A (static data authentication tag list) must be a constant value",
                                        d.id
                                    ),
                                ));
                            }
                            ([0x82], TagSource::Constant(v)) if aip.is_none() => {
                                aip = Some(v.clone())
                            }
                            _ => {}
                        }
                    }
                }
                DgiContent::Value(v) if aip.is_none() => {
                    aip = crate::prep::icc::find_tag(v, &[0x82]).map(<[u8]>::to_vec);
                }
                _ => {}
            }
        }
        match list {
            None => Ok(None),
            Some([0x82]) => match aip {
                Some(a) => Ok(Some(a)),
                None => Err(bad(
                    "tag",
                    "9F4A lists the AIP (82), but no DGI holds a constant tag 82",
                )),
            },
            Some(_) => Err(bad(
                "tag",
                "9F4A (static data authentication tag list) may list only the AIP: 82",
            )),
        }
    }

    /// The distinct XOF attributes the profile reads.
    pub fn attributes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for d in &self.dgis {
            match &d.content {
                DgiContent::Tags(tags) => {
                    for t in tags {
                        if let TagSource::Attribute { name, .. } = &t.source
                            && !v.contains(&name.as_str())
                        {
                            v.push(name);
                        }
                    }
                }
                DgiContent::PinBlock { from, pan, .. } => {
                    for s in [from, pan] {
                        if !v.contains(&s.as_str()) {
                            v.push(s);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(r) = &self.icc_rsa
            && self.needs_icc_certificate()
        {
            for s in [&r.pan, &r.expiry] {
                if !v.contains(&s.as_str()) {
                    v.push(s);
                }
            }
        }
        if let Some(i) = &self.icc {
            for s in std::iter::once(&i.pan).chain(i.psn.as_ref()) {
                if !v.contains(&s.as_str()) {
                    v.push(s);
                }
            }
        }
        v
    }
}
