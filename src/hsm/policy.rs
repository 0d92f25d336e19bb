//! Key usage and mode-of-use policy: which operation each key may take part in.
//!
//! The table (TR-31 / ANSI X9.143 key usages and modes of use):
//!
//! | operation | usage | modes of use |
//! |---|---|---|
//! | encrypt data, translate target | D0 | B, E |
//! | decrypt data, translate source | D0 | B, D |
//! | PIN block decipher (translate source) | P0 | B, D |
//! | PIN block encipher (translate target) | P0 | B, E |
//! | MAC generate | M0/M1 (CBC-MAC TDES), M1 (CBC-MAC AES), M3 (retail), M5/M6 (CMAC) | C, G |
//! | MAC verify | as for generate | C, V |
//! | wrap a key for export | K0, K1 | B, E |
//! | unwrap an imported key | K0, K1 | B, D |
//! | derive EMV ICC master keys | E0, E1, E2 | X |
//!
//! A derivation key (E0/E1/E2, mode X) only derives: no other row names those usages. The
//! EMV derivation returns its keys under a KTK (the `Wrap` row) and a card PIN block goes
//! under a PIN transport key ([`check_card_pin_key`]: the `PinEncrypt` row, exportable).
//!
//! Everything else is refused with [`Error::Policy`].

use crate::keyblock::{Exportability, KeyUsage, ModeOfUse};
use crate::{Error, MacAlgorithm, Result};

/// An operation a key can take part in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Encrypt data (also the target side of a translation).
    Encrypt,
    /// Decrypt data (also the source side of a translation).
    Decrypt,
    /// Decipher a PIN block (source of a PIN translation).
    PinDecrypt,
    /// Encipher a PIN block (target of a PIN translation).
    PinEncrypt,
    /// Generate a MAC with this algorithm.
    MacGenerate(MacAlgorithm),
    /// Verify a MAC with this algorithm.
    MacVerify(MacAlgorithm),
    /// Wrap another key for export.
    Wrap,
    /// Unwrap a key being imported.
    Unwrap,
    /// Derive EMV ICC master keys (an issuer master key).
    DeriveIccKey,
}

impl Operation {
    /// Every operation, for exhaustive policy tests.
    pub const ALL: [Operation; 17] = [
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::PinDecrypt,
        Operation::PinEncrypt,
        Operation::MacGenerate(MacAlgorithm::Retail),
        Operation::MacGenerate(MacAlgorithm::CbcTdes),
        Operation::MacGenerate(MacAlgorithm::CbcAes),
        Operation::MacGenerate(MacAlgorithm::CmacTdes),
        Operation::MacGenerate(MacAlgorithm::CmacAes),
        Operation::MacVerify(MacAlgorithm::Retail),
        Operation::MacVerify(MacAlgorithm::CbcTdes),
        Operation::MacVerify(MacAlgorithm::CbcAes),
        Operation::MacVerify(MacAlgorithm::CmacTdes),
        Operation::MacVerify(MacAlgorithm::CmacAes),
        Operation::Wrap,
        Operation::Unwrap,
        Operation::DeriveIccKey,
    ];
}

fn mac_usage_ok(alg: MacAlgorithm, usage: KeyUsage) -> bool {
    match alg {
        MacAlgorithm::Retail => usage == KeyUsage::M3,
        MacAlgorithm::CbcTdes => matches!(usage, KeyUsage::M0 | KeyUsage::M1),
        MacAlgorithm::CbcAes => usage == KeyUsage::M1,
        MacAlgorithm::CmacTdes | MacAlgorithm::CmacAes => {
            matches!(usage, KeyUsage::M5 | KeyUsage::M6)
        }
    }
}

/// Whether a key of `usage` and `mode` may take part in `op`.
pub fn permits(op: Operation, usage: KeyUsage, mode: ModeOfUse) -> bool {
    use ModeOfUse as M;
    match op {
        Operation::Encrypt => usage == KeyUsage::D0 && matches!(mode, M::B | M::E),
        Operation::Decrypt => usage == KeyUsage::D0 && matches!(mode, M::B | M::D),
        Operation::PinDecrypt => usage == KeyUsage::P0 && matches!(mode, M::B | M::D),
        Operation::PinEncrypt => usage == KeyUsage::P0 && matches!(mode, M::B | M::E),
        Operation::MacGenerate(alg) => mac_usage_ok(alg, usage) && matches!(mode, M::C | M::G),
        Operation::MacVerify(alg) => mac_usage_ok(alg, usage) && matches!(mode, M::C | M::V),
        Operation::Wrap => {
            matches!(usage, KeyUsage::K0 | KeyUsage::K1) && matches!(mode, M::B | M::E)
        }
        Operation::Unwrap => {
            matches!(usage, KeyUsage::K0 | KeyUsage::K1) && matches!(mode, M::B | M::D)
        }
        Operation::DeriveIccKey => {
            matches!(usage, KeyUsage::E0 | KeyUsage::E1 | KeyUsage::E2) && mode == M::X
        }
    }
}

/// The target of a card PIN block (ISO format 2, [`Hsm::translate_pin_for_card`]): a PIN
/// key that may encipher ([`Operation::PinEncrypt`]) and is **exportable** — a PIN
/// *transport* key on its way to production. A format 2 block carries no PAN and always
/// enciphers the same PIN to the same block under one key; it is made only for loading a
/// card, so it only ever goes under a key that leaves for the production line, never under
/// one of the bureau's own keys.
///
/// [`Hsm::translate_pin_for_card`]: super::Hsm::translate_pin_for_card
pub fn check_card_pin_key(
    label: &str,
    usage: KeyUsage,
    mode: ModeOfUse,
    exportability: Exportability,
) -> Result<()> {
    check(Operation::PinEncrypt, label, usage, mode)?;
    if exportability == Exportability::N {
        return Err(Error::Policy(format!(
            "key '{label}' is not exportable: a format 2 PIN block for a card goes only under a PIN transport key (PTK)"
        )));
    }
    Ok(())
}

/// [`permits`] as a `Result`, naming the key and the operation.
pub fn check(op: Operation, label: &str, usage: KeyUsage, mode: ModeOfUse) -> Result<()> {
    if permits(op, usage, mode) {
        Ok(())
    } else {
        Err(Error::Policy(format!(
            "key '{label}' (usage {usage}, mode {mode:?}) may not be used for {op:?}"
        )))
    }
}
