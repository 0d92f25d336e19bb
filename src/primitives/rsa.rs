//! RSA as EMV uses it: key pairs of 1024 to 1984 bits (any multiple of 8) with public
//! exponent 3 or 65537, the raw private operation (for the EMV signature scheme with message
//! recovery, Book 2 annex A2.1), the raw public operation (to recover a certificate), and a
//! private key's CRT parts at their fixed EMV length.
//!
//! The arithmetic is the `rsa` crate 0.10 (RustCrypto) on `crypto-bigint`: constant-time
//! modular arithmetic, and every private operation blinded (base, exponent and CRT moduli,
//! fresh factors each time) and checked by re-encryption against CRT faults. The 0.9 line's
//! variable-time private operation (RUSTSEC-2023-0071, the Marvin attack) is not used.
//!
//! ```
//! use pmp_core::rsa::{RsaExponent, RsaPrivateKey};
//! let key = RsaPrivateKey::generate(1024, RsaExponent::Three).unwrap();
//! let public = key.public_key();
//! let mut message = vec![0x6A; 128];
//! message[127] = 0xBC;
//! let signature = key.private_op(&message).unwrap();
//! assert_eq!(public.public_op(&signature).unwrap(), message);
//! ```

use core::fmt;

use crypto_bigint::NonZero;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BoxedUint, PrivateKey};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// The smallest RSA modulus EMV allows, in bits.
pub const EMV_MIN_BITS: u32 = 1024;
/// The largest RSA modulus EMV allows (Book 2: 248 bytes), in bits.
pub const EMV_MAX_BITS: u32 = 1984;

/// Checks that `bits` is an EMV modulus length: a multiple of 8 from 1024 to 1984.
pub fn check_emv_bits(bits: u32) -> Result<()> {
    if !(EMV_MIN_BITS..=EMV_MAX_BITS).contains(&bits) || !bits.is_multiple_of(8) {
        return Err(Error::invalid(
            "RSA modulus length",
            format!("{bits} bits; EMV allows a multiple of 8 from 1024 to 1984"),
        ));
    }
    Ok(())
}

/// The public exponents EMV allows (Book 2 §5.1, §6.1): 3 and 2^16 + 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RsaExponent {
    /// 3 (`03`).
    Three,
    /// 65537 (`01 00 01`).
    F4,
}

impl RsaExponent {
    /// The exponent as a number.
    pub const fn value(self) -> u32 {
        match self {
            RsaExponent::Three => 3,
            RsaExponent::F4 => 65537,
        }
    }

    /// The exponent as EMV writes it (tags `9F32`, `9F47`): `03` or `01 00 01`.
    pub const fn bytes(self) -> &'static [u8] {
        match self {
            RsaExponent::Three => &[0x03],
            RsaExponent::F4 => &[0x01, 0x00, 0x01],
        }
    }

    /// The exponent from its value (3 or 65537).
    pub fn from_value(value: u64) -> Result<Self> {
        match value {
            3 => Ok(RsaExponent::Three),
            65537 => Ok(RsaExponent::F4),
            _ => Err(Error::invalid(
                "RSA public exponent",
                format!("{value}; EMV allows 3 or 65537"),
            )),
        }
    }

    /// The exponent from its big-endian bytes (leading zeros allowed: `03`, `000003`,
    /// `010001`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        match &bytes[start..] {
            [0x03] => Ok(RsaExponent::Three),
            [0x01, 0x00, 0x01] => Ok(RsaExponent::F4),
            _ => Err(Error::invalid(
                "RSA public exponent",
                format!("{}; EMV allows 03 or 010001", hex::encode_upper(bytes)),
            )),
        }
    }
}

impl fmt::Display for RsaExponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value())
    }
}

/// An RSA public key: the modulus (big-endian, no leading zero byte) and the exponent.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    modulus: Vec<u8>,
    exponent: RsaExponent,
}

impl RsaPublicKey {
    /// A public key from its modulus (big-endian; leading zero bytes are dropped) and
    /// exponent. The modulus must be odd and of an EMV length ([`check_emv_bits`]).
    pub fn new(modulus: &[u8], exponent: RsaExponent) -> Result<Self> {
        let start = modulus
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(modulus.len());
        let modulus = &modulus[start..];
        let bits = match modulus.first() {
            Some(&top) => (modulus.len() as u32 - 1) * 8 + (8 - top.leading_zeros()),
            None => 0,
        };
        if modulus.last().is_none_or(|b| b & 1 == 0) {
            return Err(Error::invalid("RSA modulus", "must be odd"));
        }
        check_emv_bits(bits.next_multiple_of(8))?;
        Ok(Self {
            modulus: modulus.to_vec(),
            exponent,
        })
    }

    /// The modulus, big-endian, with no leading zero byte.
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// The public exponent.
    pub fn exponent(&self) -> RsaExponent {
        self.exponent
    }

    /// The modulus length in bytes (`N_I` or `N_IC` in EMV Book 2).
    pub fn len(&self) -> usize {
        self.modulus.len()
    }

    /// Always false (a modulus has at least 128 bytes); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.modulus.is_empty()
    }

    /// The modulus length in bits, rounded up to a whole byte.
    pub fn bits(&self) -> u32 {
        self.modulus.len() as u32 * 8
    }

    /// The raw public operation `input^e mod n` (RSAVP1): recovers the message of an EMV
    /// signature or certificate. `input` must have the modulus's length and be less than
    /// it; the result has the modulus's length.
    pub fn public_op(&self, input: &[u8]) -> Result<Vec<u8>> {
        let key = self.to_rsa()?;
        let c = to_uint(input, &key.n().as_ref().clone(), self.len())?;
        let m = rsa::hazmat::rsa_encrypt(&key, &c).map_err(|_| Error::Crypto)?;
        Ok(to_fixed(&m, self.len()))
    }

    fn to_rsa(&self) -> Result<rsa::PublicKey> {
        let n = BoxedUint::from_be_slice_vartime(&self.modulus);
        rsa::PublicKey::new(n, BoxedUint::from(u64::from(self.exponent.value())))
            .map_err(|e| Error::invalid("RSA public key", e.to_string()))
    }
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("bits", &self.bits())
            .field("exponent", &self.exponent.value())
            .field("modulus", &hex::encode_upper(&self.modulus))
            .finish()
    }
}

/// A private key's CRT parts, each at the fixed length of half the modulus (rounded up;
/// leading zeros kept), in the order of EMV's DGIs 8201 to 8205. Zeroized on drop.
pub struct CrtParts {
    /// `q⁻¹ mod p` (DGI 8201).
    pub qinv: Zeroizing<Vec<u8>>,
    /// `d mod (q − 1)` (DGI 8202).
    pub dq: Zeroizing<Vec<u8>>,
    /// `d mod (p − 1)` (DGI 8203).
    pub dp: Zeroizing<Vec<u8>>,
    /// The prime `q` (DGI 8204).
    pub q: Zeroizing<Vec<u8>>,
    /// The prime `p` (DGI 8205).
    pub p: Zeroizing<Vec<u8>>,
}

impl CrtParts {
    /// The parts in DGI order 8201, 8202, 8203, 8204, 8205.
    pub fn in_dgi_order(&self) -> [&[u8]; 5] {
        [&self.qinv, &self.dq, &self.dp, &self.q, &self.p]
    }
}

impl fmt::Debug for CrtParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CrtParts({} bytes each, redacted)", self.p.len())
    }
}

/// An RSA private key in host memory (the software HSM's, under its LMK at rest). Zeroized
/// on drop by the `rsa` crate; never printed.
pub struct RsaPrivateKey {
    key: PrivateKey,
    exponent: RsaExponent,
}

impl RsaPrivateKey {
    /// Generates a key pair with a modulus of exactly `bits` bits (an EMV length) and the
    /// exponent, from the operating system's random source.
    pub fn generate(bits: u32, exponent: RsaExponent) -> Result<Self> {
        check_emv_bits(bits)?;
        let mut rng = getrandom::SysRng;
        let key = PrivateKey::new_with_exp(
            &mut rng,
            bits as usize,
            BoxedUint::from(u64::from(exponent.value())),
        )
        .map_err(|e| Error::invalid("RSA key generation", e.to_string()))?;
        if key.n().as_ref().bit_width() != bits {
            return Err(Error::invalid(
                "RSA key generation",
                format!(
                    "modulus of {} bits, not {bits}",
                    key.n().as_ref().bit_width()
                ),
            ));
        }
        Ok(Self { key, exponent })
    }

    /// A key from its primes `p` and `q` (big-endian) and exponent; `d` and the CRT parts
    /// are computed. The modulus must be of an EMV length.
    pub fn from_primes(p: &[u8], q: &[u8], exponent: RsaExponent) -> Result<Self> {
        let p = BoxedUint::from_be_slice_vartime(p);
        let q = BoxedUint::from_be_slice_vartime(q);
        let key = PrivateKey::from_p_q(p, q, BoxedUint::from(u64::from(exponent.value())))
            .map_err(|e| Error::invalid("RSA private key", e.to_string()))?;
        let bits = key.n().as_ref().bit_width();
        check_emv_bits(bits.next_multiple_of(8))?;
        Ok(Self { key, exponent })
    }

    /// The private key as the DER of a PKCS#1 `RSAPrivateKey` (RFC 8017 appendix A.1.2),
    /// in a zeroizing buffer: the payload of an X9.143 key block of algorithm `R`.
    pub fn to_pkcs1_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let doc = self
            .key
            .to_pkcs1_der()
            .map_err(|e| Error::invalid("RSA private key", e.to_string()))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// A private key from DER: a PKCS#1 `RSAPrivateKey` (RFC 8017 appendix A.1.2) or a
    /// PKCS#8 `PrivateKeyInfo` (RFC 5208) holding one. The key is checked (the primes'
    /// product is the modulus, `d` inverts `e`), its exponent must be 3 or 65537 and its
    /// modulus of an EMV length. A malformed or inconsistent key is [`Error::Crypto`]
    /// (it came out of a verified key block: no detail of secret bytes is given).
    pub fn from_der(der: &[u8]) -> Result<Self> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let mut key = PrivateKey::from_pkcs1_der(der)
            .or_else(|_| PrivateKey::from_pkcs8_der(der))
            .map_err(|_| {
                Error::invalid(
                    "RSA private key",
                    "not a PKCS#1 or PKCS#8 RSA private key (DER)",
                )
            })?;
        key.validate().map_err(|_| {
            Error::invalid("RSA private key", "inconsistent (the key does not check)")
        })?;
        if key.primes().len() != 2 {
            return Err(Error::invalid("RSA private key", "not a two-prime key"));
        }
        key.precompute().map_err(|_| {
            Error::invalid("RSA private key", "inconsistent (the key does not check)")
        })?;
        let exponent = RsaExponent::from_bytes(&key.e().to_be_bytes_trimmed_vartime())?;
        check_emv_bits(key.n().as_ref().bit_width().next_multiple_of(8))?;
        Ok(Self { key, exponent })
    }

    /// The public exponent.
    pub fn exponent(&self) -> RsaExponent {
        self.exponent
    }

    /// The public half.
    pub fn public_key(&self) -> RsaPublicKey {
        RsaPublicKey {
            modulus: self
                .key
                .n()
                .as_ref()
                .to_be_bytes_trimmed_vartime()
                .into_vec(),
            exponent: self.exponent,
        }
    }

    /// The modulus length in bytes.
    pub fn len(&self) -> usize {
        self.key.size()
    }

    /// Always false; for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The raw private operation `input^d mod n` (RSASP1), blinded and checked: the EMV
    /// signature of a message in recovery format. `input` must have the modulus's length
    /// and be less than it; the result has the modulus's length.
    pub fn private_op(&self, input: &[u8]) -> Result<Vec<u8>> {
        let n = self.key.n().as_ref().clone();
        let c = to_uint(input, &n, self.len())?;
        let mut rng = getrandom::SysRng;
        let m = rsa::hazmat::rsa_decrypt_and_check(&self.key, Some(&mut rng), &c)
            .map_err(|_| Error::Crypto)?;
        Ok(to_fixed(&m, self.len()))
    }

    /// The CRT parts, each `ceil(len / 2)` bytes with leading zeros kept.
    pub fn crt_parts(&self) -> Result<CrtParts> {
        let half = self.len().div_ceil(2);
        let primes = self.key.primes();
        if primes.len() != 2 {
            return Err(Error::invalid("RSA private key", "not a two-prime key"));
        }
        let p = primes[0].as_ref();
        let q = primes[1].as_ref();
        let d = self.key.d();
        let one = BoxedUint::one();
        let pm1 = p.wrapping_sub(&one);
        let qm1 = q.wrapping_sub(&one);
        let nz = |x: BoxedUint| {
            NonZero::new(x)
                .into_option()
                .ok_or_else(|| Error::invalid("RSA private key", "a prime is 1"))
        };
        let dp = d.rem(&nz(pm1)?);
        let dq = d.rem(&nz(qm1)?);
        let qinv = self
            .key
            .crt_coefficient()
            .ok_or_else(|| Error::invalid("RSA private key", "p and q not coprime"))?;
        let fixed = |x: &BoxedUint| -> Result<Zeroizing<Vec<u8>>> {
            if x.bit_width().div_ceil(8) as usize > half {
                return Err(Error::invalid(
                    "RSA private key",
                    "a CRT part is longer than half the modulus",
                ));
            }
            Ok(Zeroizing::new(to_fixed(x, half)))
        };
        Ok(CrtParts {
            qinv: fixed(&qinv)?,
            dq: fixed(&dq)?,
            dp: fixed(&dp)?,
            q: fixed(q)?,
            p: fixed(p)?,
        })
    }
}

impl fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RsaPrivateKey({} bits, e={}, redacted)",
            self.key.n().as_ref().bit_width(),
            self.exponent
        )
    }
}

/// `bytes` (exactly `len` of them) as an integer at the modulus's precision, refused when
/// not less than the modulus.
fn to_uint(bytes: &[u8], n: &BoxedUint, len: usize) -> Result<BoxedUint> {
    if bytes.len() != len {
        return Err(Error::invalid(
            "RSA input",
            format!("{} bytes; the modulus has {len}", bytes.len()),
        ));
    }
    let x = BoxedUint::from_be_slice(bytes, n.bits_precision())
        .map_err(|_| Error::invalid("RSA input", "does not fit the modulus"))?;
    if x >= *n {
        return Err(Error::invalid("RSA input", "not less than the modulus"));
    }
    Ok(x)
}

/// The value big-endian in exactly `len` bytes (leading zeros kept); the value must fit.
fn to_fixed(x: &BoxedUint, len: usize) -> Vec<u8> {
    let all = Zeroizing::new(x.to_be_bytes());
    let mut out = vec![0u8; len];
    if all.len() >= len {
        out.copy_from_slice(&all[all.len() - len..]);
    } else {
        out[len - all.len()..].copy_from_slice(&all);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crt_parts_rebuild_the_key_and_sign_round_trips() {
        for (bits, e) in [(1024, RsaExponent::Three), (1032, RsaExponent::F4)] {
            let key = RsaPrivateKey::generate(bits, e).unwrap();
            assert_eq!(key.public_key().bits(), bits);
            let parts = key.crt_parts().unwrap();
            let half = (bits as usize / 8).div_ceil(2);
            for part in parts.in_dgi_order() {
                assert_eq!(part.len(), half);
            }
            let again = RsaPrivateKey::from_primes(&parts.p, &parts.q, e).unwrap();
            assert_eq!(again.public_key(), key.public_key());
            let mut m = vec![0x55u8; key.len()];
            m[0] = 0x6A;
            let s = key.private_op(&m).unwrap();
            assert_eq!(key.public_key().public_op(&s).unwrap(), m);
        }
    }

    #[test]
    fn emv_lengths_and_exponents_are_checked() {
        assert!(check_emv_bits(1016).is_err());
        assert!(check_emv_bits(1028).is_err());
        assert!(check_emv_bits(1992).is_err());
        assert!(check_emv_bits(1984).is_ok());
        assert_eq!(
            RsaExponent::from_bytes(&[0, 1, 0, 1]).unwrap(),
            RsaExponent::F4
        );
        assert!(RsaExponent::from_value(17).is_err());
        let key = RsaPrivateKey::generate(1024, RsaExponent::Three).unwrap();
        let n = key.public_key();
        assert!(key.private_op(n.modulus()).is_err());
        assert!(key.private_op(&[1u8; 127]).is_err());
    }
}
