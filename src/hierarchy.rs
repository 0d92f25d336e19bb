//! The bureau's key hierarchy (`docs/key-hierarchy.md`) as library functions over any [`Hsm`].
//!
//! | step | function | keys |
//! |---|---|---|
//! | key ceremony, issuer and production zones | [`zmk_ceremony`] | ZMK-issuer (K0, mode D: imports only), ZMK-prod (K0, mode E: exports only), from 2–3 components with KCVs |
//! | the issuer's transport key arrives | [`import_issuer_key`] | TK_issuer (D0) or the issuer PIN key (P0), under ZMK-issuer |
//! | the issuer's EMV master keys arrive | [`import_issuer_master_keys`] | IMK-AC (E0), IMK-SMI (E2), IMK-SMC (E1), mode X, under ZMK-issuer |
//! | the bureau's data keys | [`generate_dkeps`] | one DKep per attribute class (AES-256, D0, mode B, never exportable) |
//! | data prep issues transport keys | [`issue_transport_keys`] | KTK (K0, mode E), PTK (P0), MTK (M6 CMAC, mode C), DTK (D0), exported under ZMK-prod with KCVs |
//! | production imports them | [`import_transport_keys`] | the same (KTK, PTK, MTK and optionally DTK), KCVs checked |
//!
//! Keys the bureau creates for itself default to AES (`docs/key-hierarchy.md`). Where a counterpart
//! still needs 2-key TDES (issuer TKs, legacy production lines) the caller picks it; NIST
//! SP 800-131A allows 2-key TDES only to process legacy data.
//!
//! KEK zones: a ZMK belongs to one zone ([`Zone`]) — the issuer zone's ZMK only imports
//! (mode D), the production zone's only exports (mode E) — so that whoever knows an issuer's
//! ZMK cannot have the bureau export a key under it, and nothing can be imported under
//! ZMK-prod. On the production site, the ZMK that receives the transport keys is an
//! [`Zone::Import`] ZMK. Forming a ZMK and importing a KEK (the KTK) are sensitive
//! activities that need a dual-control authorisation on a production key store
//! ([`Hsm::authorise`]).
//!
//! Simplification: the transport keys are exported with mode of use B / C (both
//! directions); a production HSM that must only *verify* MTK MACs should import the MTK
//! with mode V — the block's mode is then narrowed on the receiving side by policy, which
//! this version does not yet automate.

use crate::hsm::{Hsm, ImportCheck, KeyHandle, KeyInfo, KeySpec};
use crate::keyblock::{KeyUsage, ModeOfUse};
use crate::{Algorithm, Error, Kcv, Result};

/// The zone of a zone master key: which way keys travel under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// Keys arrive under it (an issuer's ZMK at the bureau; ZMK-prod at the production
    /// site): mode D, unwrap only.
    Import,
    /// Keys leave under it (ZMK-prod at the bureau): mode E, wrap only.
    Export,
}

impl Zone {
    /// The TR-31 mode of use of a ZMK of this zone.
    pub fn mode_of_use(self) -> ModeOfUse {
        match self {
            Zone::Import => ModeOfUse::D,
            Zone::Export => ModeOfUse::E,
        }
    }
}

/// Forms a zone master key (K0, mode D or E as `zone` says, not exportable) from 2 or 3
/// clear components, each with an optional KCV, and checks the result against
/// `expected_kcv` when given.
pub fn zmk_ceremony(
    hsm: &dyn Hsm,
    label: &str,
    zone: Zone,
    algorithm: Algorithm,
    components: &[&[u8]],
    component_kcvs: &[Option<Kcv>],
    expected_kcv: Option<&Kcv>,
) -> Result<KeyInfo> {
    let len = components.first().map_or(0, |c| c.len());
    let spec = KeySpec::new(label, algorithm, len, KeyUsage::K0, zone.mode_of_use());
    hsm.form_key_from_components(&spec, components, component_kcvs, expected_kcv)
}

/// Imports an issuer key (TK_issuer, D0; or the issuer PIN key, P0) from a key block under
/// the issuer's ZMK, and checks its KCV against the one the issuer sent separately.
pub fn import_issuer_key(
    hsm: &dyn Hsm,
    label: &str,
    zmk: &KeyHandle,
    block: &str,
    expected_kcv: &Kcv,
) -> Result<KeyInfo> {
    hsm.import_key_block_checked(
        label,
        zmk,
        block,
        &ImportCheck {
            kcv: Some(expected_kcv),
            usages: &[KeyUsage::D0, KeyUsage::P0],
        },
    )
}

/// Imports the issuer's EMV master keys IMK-AC, IMK-SMI and IMK-SMC (in that order) from
/// key blocks under the issuer's ZMK, each with the KCV the issuer sent separately: the
/// usages must be E0, E2 and E1 and the mode of use X (a derivation key only derives).
/// Labels are given per key. All or nothing: on a refusal the keys of this call imported
/// so far are deleted again.
pub fn import_issuer_master_keys(
    hsm: &dyn Hsm,
    zmk: &KeyHandle,
    keys: [(&str, &str, &Kcv); 3],
) -> Result<[KeyInfo; 3]> {
    use crate::hsm::emv::IccKeyRole;
    let mut done: Vec<KeyInfo> = Vec::with_capacity(3);
    for ((label, block, kcv), role) in keys.iter().zip(IccKeyRole::all()) {
        let r = hsm
            .import_key_block_checked(
                label,
                zmk,
                block,
                &ImportCheck {
                    kcv: Some(kcv),
                    usages: &[role.usage()],
                },
            )
            .and_then(|info| {
                if info.spec.mode_of_use == ModeOfUse::X {
                    Ok(info)
                } else {
                    let _ = hsm.delete_key(&info.handle);
                    Err(Error::Policy(format!(
                        "{} '{label}' has mode of use {:?}: an issuer master key only derives (X)",
                        role.name(),
                        info.spec.mode_of_use
                    )))
                }
            });
        match r {
            Ok(info) => done.push(info),
            Err(e) => {
                for k in &done {
                    let _ = hsm.delete_key(&k.handle);
                }
                return Err(e);
            }
        }
    }
    done.try_into()
        .map_err(|_| Error::invalid("issuer master keys", "a key is missing"))
}

/// Generates one DKep per attribute class: AES-256, D0, mode B, not exportable. Labels are
/// `DKEP-<class>`.
pub fn generate_dkeps(hsm: &dyn Hsm, classes: &[&str]) -> Result<Vec<KeyInfo>> {
    classes
        .iter()
        .map(|class| {
            hsm.generate_key(&KeySpec::new(
                &format!("DKEP-{class}"),
                Algorithm::Aes,
                32,
                KeyUsage::D0,
                ModeOfUse::B,
            ))
        })
        .collect()
}

/// A transport key issued for production: what the HSM holds, and the key block (under
/// ZMK-prod) with the KCV that goes to the production side.
#[derive(Clone, Debug)]
pub struct IssuedKey {
    /// The key at data prep.
    pub info: KeyInfo,
    /// The TR-31 key block under ZMK-prod.
    pub block: String,
}

/// KTK, PTK, MTK and DTK as issued.
#[derive(Clone, Debug)]
pub struct TransportKeys {
    /// Key transport key (K0, mode E: at data prep it only encrypts — the card's ICC master
    /// keys, DGI 8000; the production side is to use it for decryption only, a narrowing
    /// on import that is not automated yet).
    pub ktk: IssuedKey,
    /// PIN transport key (P0): encrypts card PIN blocks for production.
    pub ptk: IssuedKey,
    /// MAC transport key (M6, CMAC): MACs the production file.
    pub mtk: IssuedKey,
    /// Data transport key (D0): encrypts cardholder data for production — a K0 key never
    /// encrypts data.
    pub dtk: IssuedKey,
}

/// Generates KTK (K0, mode E), PTK, MTK and DTK (labels `<prefix>-KTK`, `-PTK`, `-MTK`,
/// `-DTK`) of `algorithm` and `len`, exportable, and exports each under `zmk_prod` (version
/// D for an AES ZMK, B for a TDES one). On a production store this needs an authorisation
/// for generating exportable keys and exporting.
pub fn issue_transport_keys(
    hsm: &dyn Hsm,
    zmk_prod: &KeyHandle,
    prefix: &str,
    algorithm: Algorithm,
    len: usize,
) -> Result<TransportKeys> {
    let issue = |name: &str, usage: KeyUsage, mode: ModeOfUse| -> Result<IssuedKey> {
        let spec =
            KeySpec::new(&format!("{prefix}-{name}"), algorithm, len, usage, mode).exportable();
        let info = hsm.generate_key(&spec)?;
        let block = hsm.export_key_block(&info.handle, zmk_prod)?;
        Ok(IssuedKey { info, block })
    };
    Ok(TransportKeys {
        ktk: issue("KTK", KeyUsage::K0, ModeOfUse::E)?,
        ptk: issue("PTK", KeyUsage::P0, ModeOfUse::B)?,
        mtk: issue("MTK", KeyUsage::M6, ModeOfUse::C)?,
        dtk: issue("DTK", KeyUsage::D0, ModeOfUse::B)?,
    })
}

/// Production side: imports KTK, PTK and MTK — and the DTK when four blocks are given — in
/// that order under its ZMK-prod, checks each KCV against the one data prep sent, and
/// refuses a block whose usage is not the expected one — each checked before the key is
/// stored. All or nothing: on a refusal the keys of this call imported so far are deleted
/// again. `N` is 3 or 4.
pub fn import_transport_keys<const N: usize>(
    hsm: &dyn Hsm,
    zmk_prod: &KeyHandle,
    prefix: &str,
    blocks: [(&str, &Kcv); N],
) -> Result<[KeyInfo; N]> {
    if !(3..=4).contains(&N) {
        return Err(Error::invalid(
            "transport keys",
            "give KTK, PTK and MTK blocks, and optionally the DTK's",
        ));
    }
    let expected = [
        ("KTK", KeyUsage::K0),
        ("PTK", KeyUsage::P0),
        ("MTK", KeyUsage::M6),
        ("DTK", KeyUsage::D0),
    ];
    let mut done: Vec<KeyInfo> = Vec::new();
    for ((block, kcv), (name, usage)) in blocks.iter().zip(expected) {
        let label = format!("{prefix}-{name}");
        let r = hsm.import_key_block_checked(
            &label,
            zmk_prod,
            block,
            &ImportCheck {
                kcv: Some(kcv),
                usages: &[usage],
            },
        );
        match r {
            Ok(info) => done.push(info),
            Err(e) => {
                for k in &done {
                    let _ = hsm.delete_key(&k.handle);
                }
                return Err(e);
            }
        }
    }
    done.try_into()
        .map_err(|_| Error::invalid("transport keys", "a key is missing"))
}
