//! Message authentication codes: ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC, TDES or AES),
//! algorithm 3 (the "retail MAC", 16-byte TDES key) and CMAC (NIST SP 800-38B, TDES or AES).
//!
//! Built on RustCrypto's `cbc-mac`, `retail-mac` and `cmac`; the ISO/IEC 9797-1 paddings
//! are fed to them as a tail, so nothing is copied or allocated. Verification compares in
//! constant time and accepts a MAC truncated to 4 bytes or more.
//!
//! ```
//! use pmp_core::{mac, verify_mac, Algorithm, MacAlgorithm, Padding, SecretKey};
//! // ISO/IEC 9797-1 annex B, MAC algorithm 3, padding method 1.
//! let key = SecretKey::from_hex(Algorithm::Tdes, "0123456789ABCDEFFEDCBA9876543210").unwrap();
//! let data = b"Now is the time for all ";
//! let tag = mac(MacAlgorithm::Retail, &key, Padding::Iso9797M1, data).unwrap();
//! assert_eq!(hex::encode_upper(tag.as_bytes()), "A1C72E74EA3FA9B6");
//! verify_mac(MacAlgorithm::Retail, &key, Padding::Iso9797M1, data, &tag.as_bytes()[..4]).unwrap();
//! ```

use core::fmt;

use aes::{Aes128, Aes192, Aes256};
use cbc_mac::CbcMac;
use cmac::{Cmac, KeyInit, Mac};
use des::{Des, TdesEde2, TdesEde3};
use retail_mac::RetailMac;
use subtle::ConstantTimeEq;

use crate::primitives::cipher::Padding;
use crate::primitives::key::{Algorithm, SecretKey};
use crate::{Error, Result};

/// A MAC algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    /// ISO/IEC 9797-1 MAC algorithm 3 with DES ("retail MAC", ANSI X9.19); 16-byte key.
    Retail,
    /// ISO/IEC 9797-1 MAC algorithm 1 with TDES (CBC-MAC, zero IV).
    CbcTdes,
    /// ISO/IEC 9797-1 MAC algorithm 1 with AES (CBC-MAC, zero IV).
    CbcAes,
    /// CMAC with TDES (NIST SP 800-38B).
    CmacTdes,
    /// CMAC with AES (NIST SP 800-38B, RFC 4493).
    CmacAes,
}

impl MacAlgorithm {
    /// The algorithm of the key this MAC takes.
    pub const fn key_algorithm(self) -> Algorithm {
        match self {
            MacAlgorithm::Retail | MacAlgorithm::CbcTdes | MacAlgorithm::CmacTdes => {
                Algorithm::Tdes
            }
            MacAlgorithm::CbcAes | MacAlgorithm::CmacAes => Algorithm::Aes,
        }
    }

    /// The full MAC length in bytes (one block).
    pub const fn output_len(self) -> usize {
        self.key_algorithm().block_size()
    }

    /// Whether the algorithm takes an ISO/IEC 9797-1 padding (CMAC pads by itself).
    pub const fn takes_padding(self) -> bool {
        !matches!(self, MacAlgorithm::CmacTdes | MacAlgorithm::CmacAes)
    }

    /// The name used by the CLI (`retail`, `cbc-tdes`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            MacAlgorithm::Retail => "retail",
            MacAlgorithm::CbcTdes => "cbc-tdes",
            MacAlgorithm::CbcAes => "cbc-aes",
            MacAlgorithm::CmacTdes => "cmac-tdes",
            MacAlgorithm::CmacAes => "cmac-aes",
        }
    }
}

impl fmt::Display for MacAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for MacAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "retail" => Ok(MacAlgorithm::Retail),
            "cbc-tdes" => Ok(MacAlgorithm::CbcTdes),
            "cbc-aes" => Ok(MacAlgorithm::CbcAes),
            "cmac-tdes" => Ok(MacAlgorithm::CmacTdes),
            "cmac-aes" => Ok(MacAlgorithm::CmacAes),
            _ => Err(Error::invalid(
                "MAC algorithm",
                "expected retail, cbc-tdes, cbc-aes, cmac-tdes or cmac-aes",
            )),
        }
    }
}

/// A computed MAC (one full block; truncate with `&tag.as_bytes()[..n]`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MacTag {
    bytes: [u8; 16],
    len: usize,
}

impl MacTag {
    pub(crate) fn from_slice(s: &[u8]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..s.len()].copy_from_slice(s);
        Self {
            bytes,
            len: s.len(),
        }
    }

    /// The MAC bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Constant-time comparison with `expected`, which may be truncated (4 bytes or more).
    pub fn verify(&self, expected: &[u8]) -> Result<()> {
        if expected.len() < 4 || expected.len() > self.len {
            return Err(Error::Crypto);
        }
        if bool::from(self.bytes[..expected.len()].ct_eq(expected)) {
            Ok(())
        } else {
            Err(Error::Crypto)
        }
    }
}

impl fmt::Debug for MacTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A MAC is not secret.
        write!(f, "MacTag({})", hex::encode_upper(self.as_bytes()))
    }
}

/// Feeds `data` and its ISO/IEC 9797-1 padding into `m`, without copying `data`.
fn feed_padded<M: Mac>(m: &mut M, padding: Padding, data: &[u8], block: usize) -> Result<()> {
    m.update(data);
    match padding {
        Padding::None => {
            if data.is_empty() || !data.len().is_multiple_of(block) {
                return Err(Error::invalid(
                    "data length",
                    format!(
                        "{} bytes is not a positive multiple of the {block}-byte block and no padding was asked for",
                        data.len()
                    ),
                ));
            }
        }
        // The MAC cores pad a partial last block with zeros (method 1); only the empty
        // message needs an explicit zero block.
        Padding::Iso9797M1 => {
            if data.is_empty() {
                m.update(&[0u8; 16][..block]);
            }
        }
        Padding::Iso9797M2 => {
            let mut tail = [0u8; 16];
            tail[0] = 0x80;
            let n = block - data.len() % block;
            m.update(&tail[..n]);
        }
        Padding::Pkcs7 => {
            return Err(Error::invalid(
                "padding",
                "MACs take ISO/IEC 9797-1 method 1 or 2",
            ));
        }
    }
    Ok(())
}

fn run<M: Mac + KeyInit>(
    key: &[u8],
    padding: Option<Padding>,
    data: &[u8],
    block: usize,
) -> Result<MacTag> {
    let mut m = <M as KeyInit>::new_from_slice(key).map_err(|_| Error::KeyLength {
        algorithm: "MAC",
        len: key.len(),
        allowed: "per algorithm",
    })?;
    match padding {
        Some(p) => feed_padded(&mut m, p, data, block)?,
        None => m.update(data),
    }
    Ok(MacTag::from_slice(&m.finalize().into_bytes()))
}

/// Computes a MAC. `padding` applies to the ISO/IEC 9797-1 algorithms (retail, CBC) and
/// must be [`Padding::None`] or method 1/2; CMAC ignores it (it has its own padding).
pub fn mac(alg: MacAlgorithm, key: &SecretKey, padding: Padding, data: &[u8]) -> Result<MacTag> {
    if key.algorithm() != alg.key_algorithm() {
        return Err(Error::invalid(
            "key",
            format!("{} needs a {} key", alg.name(), alg.key_algorithm()),
        ));
    }
    let k = key.expose_secret();
    let p = alg.takes_padding().then_some(padding);
    match (alg, k.len()) {
        (MacAlgorithm::Retail, 16) => run::<RetailMac<Des>>(k, p, data, 8),
        (MacAlgorithm::Retail, n) => Err(Error::KeyLength {
            algorithm: "retail MAC",
            len: n,
            allowed: "16",
        }),
        (MacAlgorithm::CbcTdes, 16) => run::<CbcMac<TdesEde2>>(k, p, data, 8),
        (MacAlgorithm::CbcTdes, _) => run::<CbcMac<TdesEde3>>(k, p, data, 8),
        (MacAlgorithm::CbcAes, 16) => run::<CbcMac<Aes128>>(k, p, data, 16),
        (MacAlgorithm::CbcAes, 24) => run::<CbcMac<Aes192>>(k, p, data, 16),
        (MacAlgorithm::CbcAes, _) => run::<CbcMac<Aes256>>(k, p, data, 16),
        (MacAlgorithm::CmacTdes, 16) => run::<Cmac<TdesEde2>>(k, p, data, 8),
        (MacAlgorithm::CmacTdes, _) => run::<Cmac<TdesEde3>>(k, p, data, 8),
        (MacAlgorithm::CmacAes, 16) => run::<Cmac<Aes128>>(k, p, data, 16),
        (MacAlgorithm::CmacAes, 24) => run::<Cmac<Aes192>>(k, p, data, 16),
        (MacAlgorithm::CmacAes, _) => run::<Cmac<Aes256>>(k, p, data, 16),
    }
}

/// Verifies a MAC in constant time. `expected` may be truncated to 4 bytes or more. Any
/// mismatch is the opaque [`Error::Crypto`].
pub fn verify_mac(
    alg: MacAlgorithm,
    key: &SecretKey,
    padding: Padding,
    data: &[u8],
    expected: &[u8],
) -> Result<()> {
    mac(alg, key, padding, data)?.verify(expected)
}

/// AES-CMAC or TDES-CMAC with the algorithm picked from the key (used by KCVs and TR-31).
pub fn cmac(key: &SecretKey, data: &[u8]) -> Result<MacTag> {
    let alg = match key.algorithm() {
        Algorithm::Tdes => MacAlgorithm::CmacTdes,
        Algorithm::Aes => MacAlgorithm::CmacAes,
    };
    mac(alg, key, Padding::None, data)
}
