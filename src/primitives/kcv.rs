//! Key check values.
//!
//! - TDES: the first 3 bytes of TDES-ECB(K, 0^8) (the classic KCV, ANSI X9.24-1).
//! - AES: the first 5 bytes of AES-CMAC(K, 0^16) (ASC X9.24-1:2017 for AES keys).
//!
//! ```
//! use pmp_core::{Algorithm, SecretKey};
//! // Source: tests/data/kcv.txt (psec 1.3.0).
//! let k = SecretKey::from_hex(Algorithm::Tdes, "D9EA0251738F3EF10885642FAB7AC2F8").unwrap();
//! assert_eq!(k.kcv().to_string(), "B53005");
//! ```

use core::fmt;

use subtle::ConstantTimeEq;

use crate::primitives::key::{Algorithm, SecretKey};
use crate::{Error, Result};

/// A key check value (3 bytes for TDES, 5 for AES). Not secret; displays as uppercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kcv {
    bytes: [u8; 5],
    len: u8,
}

impl Kcv {
    /// The KCV bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Parses a KCV in hex (3 to 5 bytes).
    pub fn from_hex(s: &str) -> Result<Self> {
        let v = hex::decode(s.trim())
            .map_err(|_| Error::invalid("KCV", "not an even-length hex string"))?;
        if !(3..=5).contains(&v.len()) {
            return Err(Error::invalid("KCV", "expected 3 to 5 bytes"));
        }
        let mut bytes = [0u8; 5];
        bytes[..v.len()].copy_from_slice(&v);
        Ok(Self {
            bytes,
            len: v.len() as u8,
        })
    }

    /// Whether `self` (possibly shorter, e.g. a 3-byte KCV given for an AES key) is a
    /// prefix of `actual`. Constant time in the bytes compared.
    pub fn matches(&self, actual: &Kcv) -> bool {
        self.len <= actual.len
            && bool::from(
                self.as_bytes()
                    .ct_eq(&actual.as_bytes()[..usize::from(self.len)]),
            )
    }

    /// Fails with [`Error::KcvMismatch`] naming `what` when `self` does not match `actual`.
    pub fn check(&self, actual: &Kcv, what: impl Into<String>) -> Result<()> {
        if self.matches(actual) {
            Ok(())
        } else {
            Err(Error::KcvMismatch {
                what: what.into(),
                expected: self.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}

impl fmt::Display for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.as_bytes()))
    }
}

impl fmt::Debug for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kcv({self})")
    }
}

/// The KCV of a key.
pub fn kcv(key: &SecretKey) -> Kcv {
    let mut bytes = [0u8; 5];
    let len = match key.algorithm() {
        Algorithm::Tdes => {
            let mut block = [0u8; 8];
            key.cipher()
                .encrypt_ecb(&mut block)
                .expect("one whole block");
            bytes[..3].copy_from_slice(&block[..3]);
            3
        }
        Algorithm::Aes => {
            let tag = crate::primitives::mac::cmac(key, &[0u8; 16]).expect("valid AES key");
            bytes.copy_from_slice(&tag.as_bytes()[..5]);
            5
        }
    };
    Kcv { bytes, len }
}

impl SecretKey {
    /// The key check value (see [`kcv`]).
    pub fn kcv(&self) -> Kcv {
        kcv(self)
    }
}
