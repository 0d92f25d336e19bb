//! The bureau's own keys for a demo or test scenario, generated inside the HSM.

use pmp_core::hsm::{Hsm, KeyInfo, KeySpec};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::{Algorithm, Result};

use crate::labels;

/// The attribute classes and their DKeps.
pub const DKEP_CLASSES: [&str; 5] = ["PAN", "TRACK", "NAME", "CARD", "ADDRESS"];

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
