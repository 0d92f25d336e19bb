//! Data preparation: from a verified XOF order to the production file that the production
//! line's HSM checks and loads (specified in `docs/production.md`; profiles in
//! `docs/profile.md`).
//!
//! - [`profile`]: application profiles (`pmp-profile-1`): which DGIs a card gets and where
//!   each value comes from.
//! - [`dgi`]: BER-TLV, record templates, CPS DGI framing and the value formats.
//! - [`icc`]: the ICC public-key certificate, SDA's signed static data and the static data
//!   to be authenticated (EMV offline data authentication).
//! - ICC master-key derivation runs inside the HSM ([`crate::hsm::emv`],
//!   [`Hsm::derive_icc_master_keys`](crate::hsm::Hsm::derive_icc_master_keys)).

pub mod dgi;
pub mod icc;
pub mod production;
pub mod profile;
mod run;

pub use run::{Options, Reason, Reject, Summary, default_rejects_path, run, run_files};
