//! The cryptographic primitives: pure functions over clear key bytes held in [`SecretKey`].
//!
//! Everything above this folder (key blocks, PIN blocks, the HSM backends) is built on these
//! modules; they depend on nothing of pmp-core but [`Error`](crate::Error). Inside the folder
//! the dependencies run one way, without cycles:
//!
//! `rng`, `key` (algorithm, [`SecretKey`]) → `cipher` (block modes, padding) → `mac`
//! (ISO 9797-1 algorithms 1 and 3, CMAC) → `kcv` → `keys` (parity, weak keys, components,
//! key generation).
//!
//! The public items are re-exported at the crate root (`pmp_core::SecretKey`, ...).

pub(crate) mod cipher;
pub(crate) mod kcv;
pub(crate) mod key;
pub(crate) mod keys;
pub(crate) mod mac;
pub(crate) mod rng;
pub mod rsa;
pub(crate) mod tdes;
