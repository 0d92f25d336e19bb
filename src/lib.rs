//! # pmp-core
//!
//! The security core of a payment-card personalization bureau: TDES/AES primitives, MACs
//! and KCVs, ISO 9564 PIN blocks, TR-31 / ANSI X9.143 key blocks, and (in later layers) a
//! pluggable HSM, the XOF order format and the issuer import pipeline. A C API lives in the
//! `ffi` module and is described by `include/pmp.h`.
//!
//! Read `ARCHITECTURE.md` for the layers and the data flow.
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

pub mod demo;
pub mod ffi;
pub mod hierarchy;
pub mod hsm;
pub mod import;
pub mod keyblock;
pub mod label;
pub mod order;
pub mod pinblock;
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

/// The version of pmp-core (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
