//! The one naming rule for key labels and XOF names.
//!
//! A key label in an HSM, a key label in an XOF key list, an XOF attribute name and a
//! product's names all follow the same rule: 1 to [`MAX_LEN`] characters of
//! `A–Z a–z 0–9 . _ -`. Keeping one rule means a name that is valid in one place is valid
//! everywhere it travels (product → XOF → HSM) and needs no quoting in files or logs.
//!
//! ```
//! assert!(pmp_core::label::is_valid("DKEP-PAN.v2"));
//! assert!(!pmp_core::label::is_valid("DKEP PAN"));
//! assert!(pmp_core::label::check("", "key label").is_err());
//! ```

use crate::{Error, Result};

/// The longest label, in characters (bytes: the rule is ASCII only).
pub const MAX_LEN: usize = 64;

/// The rule in words, for error messages.
pub const RULE: &str = "1 to 64 characters of A-Z a-z 0-9 . _ -";

/// Whether `s` follows the rule.
pub fn is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `Ok` when `s` follows the rule, else [`Error::Invalid`] naming `what` and the rule.
pub fn check(s: &str, what: &'static str) -> Result<()> {
    if is_valid(s) {
        Ok(())
    } else {
        Err(Error::invalid(what, RULE))
    }
}
