//! # pmp-demo
//!
//! The bureau's main job end to end on the software HSM, with synthetic data: the engine
//! of `pmp demo`, and the data generator and issuer simulator that the tests and the
//! benchmarks of pmp-core reuse. This crate is **not** part of the library a bureau
//! deploys: it holds the issuer's clear keys and forms a PIN check key from components it
//! chose so that it can decode PINs and compare them, which only test tooling may do.
//!
//! - [`Cards`] (`cards.rs`) generates realistic, deterministic card records (Luhn-valid
//!   PANs, names, expiry, service code, track 2 equivalent data, PINs, addresses) with a
//!   few deliberately bad ones ([`Defect`]).
//! - [`IssuerSide`] (`issuer_sim.rs`, `product.rs`, `cbc_writer.rs`) plays the issuer: it
//!   holds the issuer's clear keys (test keys only), sends them as TR-31 key blocks, writes
//!   the product and the card file in any [`Scenario`] (`scenario.rs`: layout ×
//!   encryption) with PIN blocks encrypted under its PIN key, and encrypts the file or its
//!   fields under TK_issuer.
//! - [`bureau_keys`] (`bureau.rs`) generates the bureau's own keys; [`labels`] names them.
//! - [`verify_against`] (`verify.rs`) reads an XOF back and compares every attribute and
//!   PIN with the cards the issuer sent.
//! - [`run`] (`run.rs`) is the whole demo: key ceremony, issuer keys imported as TR-31 key
//!   blocks with their KCVs, DKeps, product and issuer file, import, XOF verification,
//!   transport keys for production.
//!
//! 2-key TDES is used for the issuer's keys because that is what issuers still send; NIST
//! SP 800-131A allows it for decrypting legacy data only, so the bureau imports TK_issuer
//! and the issuer PIN key with mode of use `D` (decrypt only). Everything the bureau makes
//! is AES-256: DKeps, the bureau PIN key (ISO 9564 format 4), the XOF MAC key, the zone
//! master keys and the transport keys.
//!
//! ```
//! use pmp_demo::Cards;
//! let cards: Vec<_> = Cards::new(1, 100).collect();
//! assert_eq!(cards.len(), 100);
//! assert!(cards.iter().filter(|c| c.defect.is_none()).all(|c| pmp_core::order::validate::luhn_ok(c.pan.as_bytes())));
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod bureau;
mod cards;
mod cbc_writer;
mod issuer_sim;
pub mod labels;
mod prep;
mod product;
mod run;
mod scenario;
mod verify;

pub use crate::bureau::{DKEP_CLASSES, bureau_keys};
pub use crate::cards::{Card, Cards, Defect};
pub use crate::issuer_sim::IssuerSide;
pub use crate::prep::{PROFILE, Production, prepare_and_verify, send_issuer_master_keys};
pub use crate::run::{Backend, DEMO_ENTRIES, DemoSummary, run};
pub use crate::scenario::{LayoutChoice, Scenario};
pub use crate::verify::verify_against;
