//! The import plan: what the product asks of the backend, checked against its capabilities
//! up front, and every key the product names looked up once (KCV and usage checked), so
//! that the workers only follow the plan.

use std::collections::BTreeMap;

use crate::hsm::{Capabilities, Capability, CipherSpec, Hsm, KcvMethod, KeyHandle, KeyInfo};
use crate::keyblock::KeyUsage;
use crate::order::product::{KeyName, PinKey, Product, Role};
use crate::order::validate::Check;
use crate::pinblock::PinBlockFormat;
use crate::xof::KeyRef;
use crate::{Algorithm, Error, MacAlgorithm, Mode, Padding, Result};

/// The MAC algorithm of XOF v1 (header, record and trailer MACs).
const XOF_MAC: MacAlgorithm = MacAlgorithm::CmacAes;

/// What becomes of one field, resolved against the HSM.
pub(super) struct FieldPlan {
    pub(super) name: String,
    pub(super) required: bool,
    pub(super) check: Option<Check>,
    /// Length bounds in characters.
    pub(super) min_length: Option<usize>,
    pub(super) max_length: Option<usize>,
    /// `check="track2"`: the PAN and expiry fields it must agree with.
    pub(super) track2: Option<(usize, usize)>,
    pub(super) encrypted: bool,
    /// The clear value is needed on the host (a check, or the PAN of a PIN block).
    pub(super) need_clear: bool,
    pub(super) out: Out,
    /// The index of its attribute in [`Plan::attribute_names`], if it has one.
    pub(super) attribute_slot: Option<usize>,
}

/// The attribute a field becomes, if any.
pub(super) enum Out {
    None,
    Data {
        attribute: String,
        key: KeyHandle,
        label: String,
        block: usize,
        /// This attribute's 16-byte slot in the record's random IVs.
        iv_slot: usize,
    },
    Pin {
        attribute: String,
        pan: usize,
    },
}

/// Everything the workers need, resolved once.
pub(super) struct Plan<'h> {
    pub(super) hsm: &'h dyn Hsm,
    pub(super) fields: Vec<FieldPlan>,
    /// The index of the record-id field.
    pub(super) id: usize,
    pub(super) tk: Option<KeyHandle>,
    pub(super) tk_block: usize,
    pub(super) field_mode: Mode,
    pub(super) field_iv: Option<Vec<u8>>,
    pub(super) field_padding: Padding,
    pub(super) issuer_pin: Option<(KeyHandle, PinBlockFormat)>,
    pub(super) bureau_pin: Option<(KeyHandle, PinBlockFormat, String)>,
    /// Data attributes per record (one random IV each).
    pub(super) data_attributes: usize,
    /// Every attribute a record may carry, in field order.
    pub(super) attribute_names: Vec<String>,
    /// The most items one [`Hsm::translate_batch`] call may carry.
    pub(super) max_batch_items: usize,
    /// The keys the XOF header lists (DKeps, the bureau PIN key, the MAC key).
    pub(super) keys: Vec<KeyInfo>,
    /// The XOF MAC key.
    pub(super) mac: KeyInfo,
    /// TK_issuer, when the product names one.
    pub(super) transport: Option<KeyInfo>,
    /// The host fallbacks this import uses (clear values in host memory).
    pub(super) host_fallbacks: Vec<Capability>,
}

/// `caps.require(c)`, with what needs `c` said first.
fn require(caps: &Capabilities, c: Capability, why: impl FnOnce() -> String) -> Result<()> {
    caps.require(c).map_err(|e| match e {
        Error::Unsupported(m) => Error::Unsupported(format!("{}: {m}", why())),
        e => e,
    })
}

/// Refuses, before any key is looked up or any byte read, what the product needs and the
/// backend does not offer; returns the host fallbacks the import will use (clear values in
/// host memory), for the summary to state.
fn check_capabilities(caps: &Capabilities, p: &Product) -> Result<Vec<Capability>> {
    let mut host = Vec::new();
    let product = || format!("product '{}'", p.name);
    require(caps, Capability::Mac(XOF_MAC), || {
        format!("{}: the XOF's record MACs", product())
    })?;
    require(caps, Capability::KeyAlgorithm(Algorithm::Aes), || {
        format!("{}: the XOF MAC key (AES-CMAC)", product())
    })?;
    if let Some(fe) = &p.layout.file_encryption {
        require(caps, Capability::KeyAlgorithm(fe.algorithm), || {
            format!(
                "{}: the whole-file {}-CBC decryption",
                product(),
                fe.algorithm
            )
        })?;
    }
    if p.fields
        .iter()
        .any(|f| matches!(f.role, Role::PinBlock { .. }))
    {
        for (role, k) in [
            ("issuer", &p.keys.issuer_pin),
            ("bureau", &p.keys.bureau_pin),
        ] {
            if let Some(k) = k {
                require(caps, Capability::PinFormat(k.format), || {
                    format!(
                        "{}: PIN translation with the {role} PIN key '{}' ({})",
                        product(),
                        k.key.label,
                        k.format
                    )
                })?;
            }
        }
        if caps.supports(Capability::HostPinFallback) {
            host.push(Capability::HostPinFallback);
        }
    }
    // An individually encrypted field that becomes an attribute is translated TK_issuer →
    // DKep inside the device. Without that, the only way is to decrypt it to the host and
    // encrypt it again: the import does that only where the backend offers it as
    // `HostTranslateFallback` (and the summary says so), never silently.
    if let Some(f) = p
        .fields
        .iter()
        .find(|f| f.encrypted && f.attribute.is_some())
    {
        if !caps.supports(Capability::TranslateInDevice)
            && caps.supports(Capability::HostTranslateFallback)
        {
            host.push(Capability::HostTranslateFallback);
        } else {
            require(caps, Capability::TranslateInDevice, || {
                format!(
                    "{}: field '{}' is translated from the transport key to its DKep with the \
                     clear value kept in the device (the backend offers no data translation \
                     through host memory either)",
                    product(),
                    f.name
                )
            })?;
        }
    }
    Ok(host)
}

/// The KCV method the backend must use for the product's KCV of a key of `a` to compare.
fn kcv_method(a: Algorithm) -> KcvMethod {
    match a {
        Algorithm::Tdes => KcvMethod::TdesEncryptZeros,
        Algorithm::Aes => KcvMethod::AesCmac,
    }
}

/// Looks up the key `label` (the `role` it plays for the import) and checks that the
/// backend offers its algorithm and, when the product gives a KCV, its KCV method and the
/// KCV itself.
fn find_checked(
    hsm: &dyn Hsm,
    caps: &Capabilities,
    label: &str,
    kcv: Option<&crate::Kcv>,
    role: &str,
) -> Result<KeyInfo> {
    let h = hsm
        .find_key(label)
        .map_err(|_| Error::NotFound(format!("{role} '{label}' is not in the key store")))?;
    let info = hsm.key_info(&h)?;
    let a = info.spec.algorithm;
    require(caps, Capability::KeyAlgorithm(a), || {
        format!("{role} '{label}' is a {a} key")
    })?;
    if let Some(kcv) = kcv {
        require(caps, Capability::Kcv(kcv_method(a)), || {
            format!("the KCV the product gives for {role} '{label}'")
        })?;
        kcv.check(&info.kcv, format!("{role} '{label}'"))?;
    }
    Ok(info)
}

fn find_named(hsm: &dyn Hsm, caps: &Capabilities, k: &KeyName, role: &str) -> Result<KeyInfo> {
    find_checked(hsm, caps, &k.label, k.kcv.as_ref(), role)
}

/// A key as the XOF header lists it.
pub(super) fn key_ref(k: &KeyInfo) -> KeyRef {
    KeyRef {
        label: k.spec.label.clone(),
        usage: k.spec.usage,
        algorithm: k.spec.algorithm,
        kcv: k.kcv,
    }
}

impl<'h> Plan<'h> {
    /// Checks the backend's capabilities against the product, then resolves every key.
    /// Reads no input and writes no output.
    pub(super) fn new(hsm: &'h dyn Hsm, p: &Product) -> Result<Self> {
        let caps = hsm.capabilities();
        let host_fallbacks = check_capabilities(&caps, p)?;
        let tk = p
            .keys
            .transport
            .as_ref()
            .map(|k| find_named(hsm, &caps, k, "transport key"))
            .transpose()?;
        if let Some(tk) = &tk
            && tk.spec.usage != KeyUsage::D0
        {
            return Err(Error::Policy(format!(
                "transport key '{}' must have usage D0, not {}",
                tk.spec.label, tk.spec.usage
            )));
        }
        if let (Some(fe), Some(tk)) = (&p.layout.file_encryption, &tk)
            && fe.algorithm != tk.spec.algorithm
        {
            return Err(Error::invalid(
                "product",
                format!(
                    "the file is {}-CBC but transport key '{}' is {}",
                    fe.algorithm, tk.spec.label, tk.spec.algorithm
                ),
            ));
        }
        let mac = find_named(hsm, &caps, &p.keys.mac, "XOF MAC key")?;
        let pin = |k: &Option<PinKey>, role| {
            k.as_ref()
                .map(|k| find_named(hsm, &caps, &k.key, role).map(|i| (i, k.format)))
                .transpose()
        };
        let ipk = pin(&p.keys.issuer_pin, "issuer PIN key")?;
        let bpk = pin(&p.keys.bureau_pin, "bureau PIN key")?;
        let mut keys: Vec<KeyInfo> = Vec::new();
        let mut dkeps: BTreeMap<&str, KeyInfo> = BTreeMap::new();
        for label in p.dkep_labels() {
            let info = find_checked(hsm, &caps, label, None, "DKep")?;
            if info.spec.usage != KeyUsage::D0 {
                return Err(Error::Policy(format!(
                    "DKep '{label}' must have usage D0, not {}",
                    info.spec.usage
                )));
            }
            keys.push(info.clone());
            dkeps.insert(label, info);
        }
        let has_pin = p
            .fields
            .iter()
            .any(|f| matches!(f.role, Role::PinBlock { .. }));
        if has_pin && let Some((b, _)) = &bpk {
            keys.push(b.clone());
        }
        keys.push(mac.clone());
        // Fields whose clear value another field needs: the PAN of a PIN block, the PAN
        // and expiry a track 2 is compared with.
        let mut pans: Vec<&str> = p
            .fields
            .iter()
            .filter_map(|f| match &f.role {
                Role::PinBlock { pan_field } => Some(pan_field.as_str()),
                Role::Data => None,
            })
            .collect();
        for f in &p.fields {
            if let Some(Check::Track2 {
                pan_field,
                expiry_field,
            }) = &f.check
            {
                pans.push(pan_field);
                pans.push(expiry_field);
            }
        }
        let index = |name: &str| p.field_index(name).unwrap_or_default();
        let tk_block = tk.as_ref().map_or(8, |t| t.spec.algorithm.block_size());
        let mut data_attributes = 0;
        let mut attributes = 0;
        let fields = p
            .fields
            .iter()
            .map(|f| {
                let out = match (&f.role, &f.attribute) {
                    (_, None) => Out::None,
                    (Role::Data, Some(a)) => {
                        let d = &dkeps[f.dkep.as_deref().unwrap_or_default()];
                        data_attributes += 1;
                        Out::Data {
                            attribute: a.clone(),
                            key: d.handle.clone(),
                            label: d.spec.label.clone(),
                            block: d.spec.algorithm.block_size(),
                            iv_slot: data_attributes - 1,
                        }
                    }
                    (Role::PinBlock { pan_field }, Some(a)) => Out::Pin {
                        attribute: a.clone(),
                        pan: p.field_index(pan_field).unwrap_or_default(),
                    },
                };
                FieldPlan {
                    name: f.name.clone(),
                    required: f.required,
                    check: f.check.clone(),
                    min_length: f.min_length,
                    max_length: f.max_length,
                    track2: match &f.check {
                        Some(Check::Track2 {
                            pan_field,
                            expiry_field,
                        }) => Some((index(pan_field), index(expiry_field))),
                        _ => None,
                    },
                    encrypted: f.encrypted,
                    need_clear: f.check.is_some()
                        || f.min_length.is_some()
                        || f.max_length.is_some()
                        || pans.contains(&f.name.as_str()),
                    out,
                    attribute_slot: f.attribute.as_ref().map(|_| {
                        attributes += 1;
                        attributes - 1
                    }),
                }
            })
            .collect();
        let (field_mode, field_iv, field_padding) = match &p.layout.field_encryption {
            Some(fe) => (
                fe.mode,
                fe.iv.as_ref().map(|iv| {
                    if iv.is_empty() {
                        vec![0; tk_block]
                    } else {
                        iv.clone()
                    }
                }),
                fe.padding,
            ),
            None => (Mode::Ecb, None, Padding::None),
        };
        if let Some(iv) = &field_iv
            && iv.len() != tk_block
        {
            return Err(Error::invalid(
                "product",
                "the field-encryption IV must be one block of the transport key's cipher",
            ));
        }
        Ok(Plan {
            hsm,
            fields,
            id: p
                .field_index(&p.layout.record_id)
                .ok_or_else(|| Error::invalid("product", "record-id names no field"))?,
            tk: tk.as_ref().map(|t| t.handle.clone()),
            tk_block,
            field_mode,
            field_iv,
            field_padding,
            issuer_pin: ipk.map(|(i, f)| (i.handle, f)),
            bureau_pin: bpk.map(|(i, f)| (i.handle.clone(), f, i.spec.label)),
            data_attributes,
            attribute_names: p
                .fields
                .iter()
                .filter_map(|f| f.attribute.clone())
                .collect(),
            max_batch_items: caps.max_batch_items().max(1),
            keys,
            mac,
            transport: tk,
            host_fallbacks,
        })
    }

    /// How individually encrypted fields are encrypted under TK_issuer.
    pub(super) fn tk_spec(&self) -> Option<CipherSpec<'_>> {
        self.tk.as_ref().map(|k| CipherSpec {
            key: k,
            mode: self.field_mode,
            iv: self.field_iv.as_deref(),
            padding: self.field_padding,
        })
    }
}
