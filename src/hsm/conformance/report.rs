//! What a run of the conformance suite checked and what it left out.

use core::fmt;

use crate::hsm::Capability;

/// The result of [`run_all`](super::run_all): the checks that ran and passed, and the
/// checks left out, each with the capability the backend lacks and what was left out. A
/// check that fails does not come back here: the suite panics at the first failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    backend: String,
    ran: Vec<String>,
    skipped: Vec<Skipped>,
}

/// A check the suite left out (in whole or in part), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The check's name (the list is in the [module documentation](super)).
    pub check: String,
    /// The capability the backend does not offer.
    pub missing: Capability,
    /// What was left out and why, in words.
    pub reason: String,
}

impl Report {
    pub(super) fn new(backend: &str) -> Self {
        Self {
            backend: backend.to_string(),
            ran: Vec::new(),
            skipped: Vec::new(),
        }
    }

    pub(super) fn ran(&mut self, check: String) {
        self.ran.push(check);
    }

    pub(super) fn skip(&mut self, check: String, missing: Capability, reason: String) {
        self.skipped.push(Skipped {
            check,
            missing,
            reason,
        });
    }

    /// The backend's name, as its capabilities give it.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The checks that ran and passed, in the order they ran.
    pub fn checks_run(&self) -> impl Iterator<Item = &str> {
        self.ran.iter().map(String::as_str)
    }

    /// Whether the check named `check` ran and passed.
    pub fn has_run(&self, check: &str) -> bool {
        self.ran.iter().any(|c| c == check)
    }

    /// The checks left out, in the order the suite met them.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Why the check named `check` was left out, if it was.
    pub fn skipped_check(&self, check: &str) -> Option<&Skipped> {
        self.skipped.iter().find(|s| s.check == check)
    }

    /// Whether nothing was left out.
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance of the {} backend: {} checks passed, {} left out",
            self.backend,
            self.ran.len(),
            self.skipped.len()
        )?;
        for s in &self.skipped {
            write!(f, "\n  {}: {}", s.check, s.reason)?;
        }
        Ok(())
    }
}
