//! # pmp-core
//!
//! The security core of a payment-card personalization bureau. An issuer's card-order file
//! arrives encrypted under its transport key TK_issuer; pmp-core re-encrypts every attribute
//! under the bureau's own data keys (DKeps) into the bureau's order format (XOF), keeps every
//! key inside an HSM named by handles, and issues the transport keys KTK / PTK / MTK for the
//! production line. The C API ([`ffi`], `include/pmp.h`) and the `pmp` command-line tool are
//! thin shells over this library.
//!
//! ## Where to start
//!
//! | to … | start at |
//! |---|---|
//! | hold keys and use them by handle | the [`hsm::Hsm`] trait; [`hsm::SoftHsm`], the built-in software HSM (key store under an LMK, audit log) |
//! | run the key ceremony, import the issuer's keys, make DKeps, issue and import transport keys | [`hierarchy`] |
//! | turn an issuer file into an XOF | [`import::import_file`], with an order profile [`order::product::Product`] |
//! | read, verify or write an XOF | [`xof::Reader`], [`xof::verify_file`], [`xof::Writer`] |
//! | TR-31 / X9.143 key blocks, ISO 9564 PIN blocks | [`keyblock`], [`pinblock`] |
//! | ciphers, MACs, KCVs, key hygiene, components | the crate root: [`SecretKey`], [`BlockCipher`], [`mac()`], [`kcv()`], [`check_key_hygiene`], [`combine_components`] |
//! | call it from C | [`ffi`] and `include/pmp.h` |
//!
//! Runnable examples: `examples/bureau_flow.rs` (the key flow, `cargo run --example
//! bureau_flow`) and `examples/c/bureau_flow.c` (the same from C, `make -C examples/c run`);
//! `pmp demo` runs the whole job on a software HSM with a TEST LMK.
//!
//! ## Documents in the repository
//!
//! - `ARCHITECTURE.md`: the layers and where each thing lives; read it first.
//! - `docs/workflow.md`: issuer file → import → XOF → data preparation → production, and who
//!   holds which key.
//! - `docs/key-hierarchy.md`: the keys, their usages, and the rules every key obeys.
//! - `docs/threat-model.md`: what is protected against whom, and the known limits — the
//!   software HSM is host code in the caller's process, not a separate device.
//! - `docs/xof.md` (the XOF format) and `docs/product.md` (order profiles).
//!
//! ```
//! use pmp_core::{Algorithm, SecretKey};
//! let key = SecretKey::from_hex(Algorithm::Aes, "1E89AC67E4B0D6EA892F94CC50FCFF90").unwrap();
//! // Source: tests/data/kcv.txt (psec 1.3.0 / pyca cryptography).
//! assert_eq!(key.kcv().to_string(), "91E9C43E5F");
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod primitives;
mod xml;

pub mod ffi;
pub mod hierarchy;
pub mod hsm;
pub mod import;
pub mod keyblock;
pub mod label;
pub mod order;
pub mod pinblock;
pub mod prep;
pub mod xof;

pub use crate::error::{Error, Result};
pub use crate::primitives::cipher::{BlockCipher, Mode, Padding};
pub use crate::primitives::kcv::{Kcv, kcv};
pub use crate::primitives::key::{Algorithm, SecretKey, wipe};
pub use crate::primitives::keys::{
    check_key_hygiene, combine_components, has_odd_parity, set_odd_parity,
};
pub use crate::primitives::mac::{MacAlgorithm, MacTag, cmac, mac, verify_mac};
pub use crate::primitives::rng::fill_random;
pub use crate::primitives::rsa;
pub use crate::primitives::tdes::{CbcChain, Tdes, TdesBackend};

/// The version of pmp-core (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
