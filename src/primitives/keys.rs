//! DES key hygiene and key components.
//!
//! - Odd parity: every byte of a DES/TDES key has an odd number of set bits
//!   (FIPS 46-3 §"key"; ANSI X9.24-1). [`has_odd_parity`] checks, [`set_odd_parity`] adjusts.
//! - Weak and semi-weak DES keys (FIPS 74, NIST SP 800-67 §3.3.2), checked per 8-byte part
//!   with the `des` crate's table, which also lists the "possibly weak" keys.
//! - Degenerate TDES: K1 == K2 or K2 == K3 collapses to single DES and is refused
//!   (K1 == K3 is the ordinary 2-key TDES expressed in 24 bytes and is allowed).
//! - Degenerate keys, for AES as for TDES: an all-zero key (parity bits aside) is refused.
//! - Components: a key formed as the XOR of 2 or 3 clear components (key ceremony), each
//!   optionally checked against its KCV; a TDES result is parity-adjusted. An all-zero
//!   component and two identical components (whose XOR cancels) are refused, for AES as for
//!   TDES.
//!
//! ```
//! use pmp_core::{combine_components, Algorithm};
//! let c1 = hex::decode("0123456789ABCDEF0123456789ABCDEF").unwrap();
//! let c2 = hex::decode("FEDCBA9876543210FEDCBA9876543211").unwrap();
//! // Equal halves would be degenerate TDES: refused.
//! assert!(combine_components(Algorithm::Tdes, &[(&c1, None), (&c2, None)]).is_err());
//! ```

use zeroize::Zeroizing;

use crate::primitives::kcv::Kcv;
use crate::primitives::key::{Algorithm, SecretKey};
use crate::{Error, Result};

/// Whether every byte has odd parity.
pub fn has_odd_parity(key: &[u8]) -> bool {
    key.iter().all(|b| b.count_ones() % 2 == 1)
}

/// Sets the least significant bit of every byte so that the byte has odd parity.
pub fn set_odd_parity(key: &mut [u8]) {
    for b in key {
        *b = (*b & 0xFE) | u8::from((*b & 0xFE).count_ones() % 2 == 0);
    }
}

/// Key hygiene for a key that is being created or imported: no key may be all zero
/// (parity bits aside); TDES keys must also have odd parity, no weak or semi-weak DES part,
/// and neither K1 == K2 nor K2 == K3.
pub fn check_key_hygiene(algorithm: Algorithm, key: &[u8]) -> Result<()> {
    algorithm.check_key_len(key.len())?;
    if is_zero(algorithm, key) {
        return Err(Error::WeakKey("the key is all zero"));
    }
    if algorithm == Algorithm::Aes {
        return Ok(());
    }
    if !has_odd_parity(key) {
        return Err(Error::WeakKey("TDES key does not have odd parity"));
    }
    check_tdes_structure(key)
}

/// Whether `bytes` are all zero — for TDES the parity bits (each byte's lowest bit) aside,
/// so `01 01 ...` counts as zero. Runs over every byte (no early exit).
fn is_zero(algorithm: Algorithm, bytes: &[u8]) -> bool {
    let mask = match algorithm {
        Algorithm::Tdes => 0xFE,
        Algorithm::Aes => 0xFF,
    };
    bytes.iter().fold(0u8, |acc, b| acc | (b & mask)) == 0
}

/// The parity-independent TDES checks: weak parts and degenerate K1 == K2 / K2 == K3.
fn check_tdes_structure(key: &[u8]) -> Result<()> {
    let mut norm = Zeroizing::new([0u8; 24]);
    let norm = &mut norm[..key.len()];
    norm.copy_from_slice(key);
    set_odd_parity(norm);
    for part in norm.chunks_exact(8) {
        if des::weak_key_test(part).is_err() {
            return Err(Error::WeakKey("a DES part of the key is weak or semi-weak"));
        }
    }
    if norm[..8] == norm[8..16] {
        return Err(Error::WeakKey("K1 == K2 degenerates TDES to single DES"));
    }
    if norm.len() == 24 && norm[8..16] == norm[16..24] {
        return Err(Error::WeakKey("K2 == K3 degenerates TDES to single DES"));
    }
    Ok(())
}

/// Forms a key as the XOR of 2 or 3 clear components (key ceremony).
///
/// Each component may come with its KCV, checked before anything is combined (the error
/// names the component). A component that is all zero, or equal to another component, is
/// refused (for TDES parity bits aside): either would leave the key to fewer custodians than
/// the ceremony claims. A TDES result is parity-adjusted and must pass
/// [`check_key_hygiene`]; components themselves need not have odd parity.
pub fn combine_components(
    algorithm: Algorithm,
    components: &[(&[u8], Option<&Kcv>)],
) -> Result<SecretKey> {
    if !(2..=3).contains(&components.len()) {
        return Err(Error::invalid(
            "components",
            format!("{} given, 2 or 3 required", components.len()),
        ));
    }
    let len = components[0].0.len();
    algorithm.check_key_len(len)?;
    let mut acc = Zeroizing::new(vec![0u8; len]);
    for (i, (c, kcv)) in components.iter().enumerate() {
        if c.len() != len {
            return Err(Error::invalid(
                "components",
                format!(
                    "component {} is {} bytes, component 1 is {len}",
                    i + 1,
                    c.len()
                ),
            ));
        }
        if is_zero(algorithm, c) {
            return Err(Error::WeakKey("a key component is all zero"));
        }
        for (other, _) in &components[..i] {
            let mut diff = Zeroizing::new(vec![0u8; len]);
            for ((d, a), b) in diff.iter_mut().zip(c.iter()).zip(other.iter()) {
                *d = a ^ b;
            }
            if is_zero(algorithm, &diff) {
                return Err(Error::WeakKey("two key components are identical"));
            }
        }
        if let Some(expected) = kcv {
            let ck = SecretKey::new(algorithm, c)?;
            expected.check(&ck.kcv(), format!("component {}", i + 1))?;
        }
        for (a, b) in acc.iter_mut().zip(c.iter()) {
            *a ^= b;
        }
    }
    if algorithm == Algorithm::Tdes {
        set_odd_parity(&mut acc);
    }
    check_key_hygiene(algorithm, &acc)?;
    SecretKey::new(algorithm, &acc)
}

impl SecretKey {
    /// A fresh random key of `len` bytes; TDES keys get odd parity and are re-drawn until
    /// they pass [`check_key_hygiene`].
    pub fn generate(algorithm: Algorithm, len: usize) -> Result<Self> {
        algorithm.check_key_len(len)?;
        let mut bytes = zeroize::Zeroizing::new(vec![0u8; len]);
        loop {
            crate::primitives::rng::fill_random(&mut bytes)?;
            if algorithm == Algorithm::Tdes {
                set_odd_parity(&mut bytes);
            }
            if check_key_hygiene(algorithm, &bytes).is_ok() {
                return SecretKey::new(algorithm, &bytes);
            }
        }
    }
}
