//! Dual control for the software HSM: officers, their credentials, and the authorised
//! state.
//!
//! - **Officers** are enrolled with an id (a label) and a passphrase of at least
//!   [`MIN_PASSPHRASE`] bytes. The store keeps, per officer, a random 16-byte salt and the
//!   Argon2id hash of the passphrase (RFC 9106; the `argon2` crate's default parameters:
//!   version 0x13, 19 MiB, 2 passes, 1 lane, 32-byte output) in the manifest, which is MACed
//!   under the LMK: an officer cannot be added or changed without the LMK. The first two
//!   officers enrol freely (the key ceremony that creates the store); any later enrolment,
//!   or re-enrolment, is itself the sensitive activity `manage-officers`.
//! - **Authorisation**: two *different* enrolled officers, each by passphrase, authorise a
//!   list of activities for at most [`MAX_VALIDITY`]. It lives in the `SoftHsm` instance
//!   (a process), is replaced by the next one, ends on
//!   [`end_authorisation`](crate::hsm::Hsm::end_authorisation) or at its time limit, and is
//!   audited with both officers' ids, as is every operation it permits (`auth=A+B`).
//! - A **TEST-LMK store waives** dual control: every sensitive operation runs and its audit
//!   entry says `auth=waived-test-lmk`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::manifest::{Credential, Tag};
use crate::hsm::Activity;
use crate::{Error, Result};

/// The shortest passphrase an officer may have, in bytes.
pub(super) const MIN_PASSPHRASE: usize = 12;
/// The longest an authorisation may last.
pub(super) const MAX_VALIDITY: Duration = Duration::from_secs(12 * 3600);

/// The Argon2id hash of `passphrase` with `salt`.
pub(super) fn hash(passphrase: &[u8], salt: &Tag) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|_| Error::invalid("passphrase", "cannot be hashed (length out of range)"))?;
    Ok(out)
}

/// A fresh credential for `passphrase`.
pub(super) fn credential(passphrase: &[u8]) -> Result<Credential> {
    if passphrase.len() < MIN_PASSPHRASE {
        return Err(Error::invalid(
            "passphrase",
            format!("at least {MIN_PASSPHRASE} bytes"),
        ));
    }
    let mut salt = [0u8; 16];
    crate::fill_random(&mut salt)?;
    Ok(Credential {
        hash: hash(passphrase, &salt)?,
        salt,
    })
}

/// Whether `passphrase` matches `c` (constant-time comparison of the hashes).
pub(super) fn verify(c: &Credential, passphrase: &[u8]) -> Result<bool> {
    let h = hash(passphrase, &c.salt)?;
    Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
        &h[..],
        &c.hash[..],
    )))
}

struct Grant {
    activities: Vec<Activity>,
    until: Instant,
    officers: String,
}

/// The authorised state of one `SoftHsm` instance.
#[derive(Default)]
pub(super) struct Authority {
    grant: Mutex<Option<Grant>>,
}

impl Authority {
    /// Replaces the authorisation: `officers` (`A+B`) grant `activities` for `valid_for`.
    pub(super) fn grant(&self, officers: String, activities: &[Activity], valid_for: Duration) {
        *self.grant.lock().unwrap_or_else(|p| p.into_inner()) = Some(Grant {
            activities: activities.to_vec(),
            until: Instant::now() + valid_for,
            officers,
        });
    }

    /// Ends the authorisation.
    pub(super) fn end(&self) {
        *self.grant.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The officers (`A+B`) of a current authorisation covering `a`, or a policy refusal
    /// naming the missing authorisation.
    pub(super) fn check(&self, a: Activity, what: &str) -> Result<String> {
        let g = self.grant.lock().unwrap_or_else(|p| p.into_inner());
        let why = match &*g {
            Some(g) if g.until <= Instant::now() => "the authorisation has expired",
            Some(g) if !g.activities.contains(&a) => "the current authorisation does not cover it",
            Some(g) => return Ok(g.officers.clone()),
            None => "there is no authorisation",
        };
        Err(Error::Policy(format!(
            "{what} is the sensitive activity '{}' and {why}: it needs a dual-control \
             authorisation by two officers for '{}'",
            a.name(),
            a.name()
        )))
    }
}
