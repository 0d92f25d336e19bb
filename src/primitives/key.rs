//! Secret keys: algorithm-tagged, zeroized on drop, never printed.
//!
//! A [`SecretKey`] holds the clear bytes of a TDES or AES key. It is the currency of the
//! pure primitives; the HSM layer keeps such keys inside its boundary and hands out handles.
//!
//! ```
//! use pmp_core::{Algorithm, SecretKey};
//! let key = SecretKey::new(Algorithm::Aes, &[0x11; 16]).unwrap();
//! assert_eq!(key.bits(), 128);
//! // Debug never shows key bytes.
//! assert!(!format!("{key:?}").contains("11"));
//! ```

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{Error, Result};

/// A block cipher family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Triple DES (TDEA), keying option 2 (16 bytes) or 1 (24 bytes). 64-bit block.
    Tdes,
    /// AES-128/192/256. 128-bit block.
    Aes,
}

impl Algorithm {
    /// The block size in bytes (8 for TDES, 16 for AES).
    pub const fn block_size(self) -> usize {
        match self {
            Algorithm::Tdes => 8,
            Algorithm::Aes => 16,
        }
    }

    /// Whether `len` is a valid key length in bytes for this algorithm.
    pub const fn valid_key_len(self, len: usize) -> bool {
        match self {
            Algorithm::Tdes => matches!(len, 16 | 24),
            Algorithm::Aes => matches!(len, 16 | 24 | 32),
        }
    }

    /// A short name ("TDES", "AES").
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Tdes => "TDES",
            Algorithm::Aes => "AES",
        }
    }

    pub(crate) fn check_key_len(self, len: usize) -> Result<()> {
        if self.valid_key_len(len) {
            Ok(())
        } else {
            Err(Error::KeyLength {
                algorithm: self.name(),
                len,
                allowed: match self {
                    Algorithm::Tdes => "16 or 24",
                    Algorithm::Aes => "16, 24 or 32",
                },
            })
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tdes" | "3des" | "des3" | "tdea" => Ok(Algorithm::Tdes),
            "aes" => Ok(Algorithm::Aes),
            _ => Err(Error::invalid("algorithm", "expected tdes or aes")),
        }
    }
}

/// The clear value of a TDES or AES key. Zeroized on drop; `Debug` shows no key bytes.
///
/// Construction checks only the length. Key hygiene (parity, weak keys, degenerate TDES
/// keys) is checked where a key is created or imported, with
/// [`check_key_hygiene`](crate::check_key_hygiene).
#[derive(Clone, ZeroizeOnDrop)]
pub struct SecretKey {
    #[zeroize(skip)]
    algorithm: Algorithm,
    bytes: Zeroizing<Vec<u8>>,
}

impl SecretKey {
    /// A key from its clear bytes (copied). Fails when the length does not suit `algorithm`.
    pub fn new(algorithm: Algorithm, bytes: &[u8]) -> Result<Self> {
        algorithm.check_key_len(bytes.len())?;
        Ok(Self {
            algorithm,
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// A key from hex (either case). The error never repeats the input.
    pub fn from_hex(algorithm: Algorithm, hex_str: &str) -> Result<Self> {
        let bytes = Zeroizing::new(
            hex::decode(hex_str.trim())
                .map_err(|_| Error::invalid("key", "not an even-length hex string"))?,
        );
        Self::new(algorithm, &bytes)
    }

    /// The algorithm of this key.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a key is never empty. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The key length in bits (TDES counts parity bits: 128 or 192).
    pub fn bits(&self) -> usize {
        self.bytes.len() * 8
    }

    /// The clear key bytes. **Key-ceremony and internal use only**: anything that calls this
    /// takes responsibility for not letting the bytes escape.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("algorithm", &self.algorithm)
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl PartialEq for SecretKey {
    /// Constant-time comparison of the key bytes.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.algorithm == other.algorithm && bool::from(self.bytes.ct_eq(&other.bytes))
    }
}
impl Eq for SecretKey {}

/// Wipes a byte buffer (re-exported helper so callers need not depend on `zeroize`).
pub fn wipe(buf: &mut [u8]) {
    buf.zeroize();
}
