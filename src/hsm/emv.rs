//! EMV ICC master-key derivation (EMV Book 2 annex A1.4), as pure functions over clear keys,
//! and the types of the HSM operation built on it ([`Hsm::derive_icc_master_keys`]).
//!
//! An issuer holds three issuer master keys (IMK-AC for application cryptograms, IMK-SMI
//! for secure-messaging integrity, IMK-SMC for secure-messaging confidentiality; TR-31
//! usages E0, E2, E1). Each card gets three ICC master keys derived from them and from the
//! card's PAN and PAN sequence number (PSN):
//!
//! - **Option A** (TDES): the digits `PAN || PSN`, the rightmost 16 of them (left-padded
//!   with zeros when fewer), packed as 8 bytes `Y`; the key is
//!   `TDES(IMK)[Y] || TDES(IMK)[Y xor FF..FF]` with odd parity set.
//! - **Option B** (TDES, for a PAN longer than 16 digits): `PAN || PSN` packed as BCD
//!   (one leading `0` digit when their count is odd) is hashed with SHA-1; `Y` is made of
//!   the hash's decimal digits from left to right (at most 16), completed when there are
//!   fewer than 16 with its letters `a`–`f` read as `0`–`5`, left to right; then as
//!   Option A. For a PAN of 16 digits or fewer Option B is Option A.
//! - **Option C** (AES, EMV Book E): `PAN || PSN` left-padded with zero digits to 32 digits
//!   (16 bytes) `Y`; a 16-byte IMK gives `AES(IMK)[Y]`; a 24- or 32-byte IMK gives the
//!   leftmost 24 or 32 bytes of `AES(IMK)[Y] || AES(IMK)[Y xor FF..FF]`.
//! - **auto** picks as EMV does: Option C for an AES IMK; for a TDES IMK Option A up to 16
//!   PAN digits and Option B above.
//!
//! ```
//! use pmp_core::hsm::emv::{derive_icc_master_key, IccDerivation, Psn};
//! use pmp_core::pinblock::Pan;
//! use pmp_core::{Algorithm, SecretKey};
//! let imk = SecretKey::from_hex(Algorithm::Tdes, "0123456789ABCDEFFEDCBA9876543210").unwrap();
//! let pan = Pan::new("12345678901234567").unwrap();
//! let mk = derive_icc_master_key(&imk, IccDerivation::A, &pan, Psn::new(1).unwrap()).unwrap();
//! // pyemv 1.5.0 (kd.derive_icc_mk_a docstring example).
//! assert_eq!(hex::encode_upper(mk.expose_secret()), "73AD54688CEF2934B0979857E3C719F1");
//! ```
//!
//! [`Hsm::derive_icc_master_keys`]: super::Hsm::derive_icc_master_keys

use core::fmt;

use sha1::{Digest, Sha1};
use zeroize::{Zeroize, Zeroizing};

use super::KeyHandle;
use crate::pinblock::Pan;
use crate::{Algorithm, BlockCipher, Error, Kcv, Result, SecretKey, set_odd_parity};

/// Which ICC master-key derivation to use (EMV Book 2 annex A1.4; Option C from EMV Book E).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IccDerivation {
    /// Option A (TDES IMK).
    A,
    /// Option B (TDES IMK; Option A for a PAN of 16 digits or fewer).
    B,
    /// Option C, the AES variant (AES IMK).
    C,
    /// As EMV chooses: C for an AES IMK, A for a TDES IMK and a PAN of up to 16 digits, B
    /// above.
    Auto,
}

/// The derivation actually applied to one card (`Auto` and `B` resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IccMethod {
    /// Option A.
    A,
    /// Option B (SHA-1 decimalisation).
    B,
    /// Option C (AES).
    C,
}

impl IccDerivation {
    /// The method for an IMK of `algorithm` and a PAN of `pan_digits` digits, or
    /// [`Error::Invalid`] when the option does not suit the IMK's algorithm.
    pub fn resolve(self, algorithm: Algorithm, pan_digits: usize) -> Result<IccMethod> {
        match (self, algorithm) {
            (IccDerivation::A, Algorithm::Tdes) => Ok(IccMethod::A),
            (IccDerivation::B | IccDerivation::Auto, Algorithm::Tdes) => Ok(if pan_digits > 16 {
                IccMethod::B
            } else {
                IccMethod::A
            }),
            (IccDerivation::C | IccDerivation::Auto, Algorithm::Aes) => Ok(IccMethod::C),
            (IccDerivation::C, Algorithm::Tdes) => Err(Error::invalid(
                "ICC key derivation",
                "option C is for AES issuer master keys; this IMK is TDES",
            )),
            (_, Algorithm::Aes) => Err(Error::invalid(
                "ICC key derivation",
                "options A and B are for TDES issuer master keys; this IMK is AES (option C or auto)",
            )),
        }
    }

    /// The name used in profiles: `A`, `B`, `C` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            IccDerivation::A => "A",
            IccDerivation::B => "B",
            IccDerivation::C => "C",
            IccDerivation::Auto => "auto",
        }
    }
}

impl core::str::FromStr for IccDerivation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "A" => Ok(IccDerivation::A),
            "B" => Ok(IccDerivation::B),
            "C" => Ok(IccDerivation::C),
            "auto" => Ok(IccDerivation::Auto),
            _ => Err(Error::invalid(
                "ICC key derivation option",
                "must be A, B, C or auto",
            )),
        }
    }
}

impl fmt::Display for IccMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IccMethod::A => "A",
            IccMethod::B => "B",
            IccMethod::C => "C",
        })
    }
}

/// A PAN sequence number: two decimal digits, `00` to `99` (EMV tag `5F34`, format n 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Psn(u8);

impl Psn {
    /// A PSN from its value, 0 to 99.
    pub fn new(value: u8) -> Result<Self> {
        if value <= 99 {
            Ok(Self(value))
        } else {
            Err(Error::invalid("PSN", "must be 00 to 99"))
        }
    }

    /// A PSN from its two digits (`"00"` to `"99"`); one digit is read with a leading zero.
    pub fn parse(digits: &str) -> Result<Self> {
        if !(1..=2).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid("PSN", "must be one or two decimal digits"));
        }
        Self::new(
            digits
                .parse()
                .map_err(|_| Error::invalid("PSN", "not a number"))?,
        )
    }

    /// The value, 0 to 99.
    pub fn value(self) -> u8 {
        self.0
    }

    fn digits(self) -> [u8; 2] {
        [self.0 / 10, self.0 % 10]
    }
}

/// The decimal digits (0–9 values) of `PAN || PSN`, in a zeroizing buffer.
fn pan_psn_digits(pan: &Pan, psn: Psn) -> Zeroizing<Vec<u8>> {
    let mut d = Zeroizing::new(Vec::with_capacity(21));
    d.extend(pan.as_str().bytes().map(|b| b - b'0'));
    d.extend_from_slice(&psn.digits());
    d
}

/// Packs `N` × 2 digit values into `N` bytes, right-aligned: missing leading digits are 0.
fn pack_right<const N: usize>(digits: &[u8]) -> [u8; N] {
    let mut nib = [0u8; 64];
    let take = digits.len().min(2 * N);
    nib[2 * N - take..2 * N].copy_from_slice(&digits[digits.len() - take..]);
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(nib[..2 * N].chunks_exact(2)) {
        *o = (pair[0] << 4) | pair[1];
    }
    nib.zeroize();
    out
}

/// Option A's `Y`: the rightmost 16 digits of `PAN || PSN`, zero-padded on the left.
pub fn option_a_input(pan: &Pan, psn: Psn) -> [u8; 8] {
    pack_right::<8>(&pan_psn_digits(pan, psn))
}

/// Option B's `Y` (for any PAN length; EMV applies it only above 16 digits): SHA-1 over
/// `PAN || PSN` in BCD (a leading zero digit when the count is odd), decimalised.
pub fn option_b_input(pan: &Pan, psn: Psn) -> [u8; 8] {
    let digits = pan_psn_digits(pan, psn);
    let mut bcd = Zeroizing::new([0u8; 11]);
    let n = digits.len().div_ceil(2);
    let packed = pack_right::<11>(&digits);
    bcd[..n].copy_from_slice(&packed[11 - n..]);
    let mut h = Sha1::new();
    h.update(&bcd[..n]);
    let mut hash: [u8; 20] = h.finalize().into();
    // The 40 hex digits of the hash, as nibble values.
    let mut nib = Zeroizing::new([0u8; 40]);
    for (i, b) in hash.iter().enumerate() {
        nib[2 * i] = b >> 4;
        nib[2 * i + 1] = b & 15;
    }
    hash.zeroize();
    let mut y = Zeroizing::new([0u8; 16]);
    let mut k = 0;
    for &d in nib.iter().filter(|&&d| d < 10) {
        if k == 16 {
            break;
        }
        y[k] = d;
        k += 1;
    }
    for &d in nib.iter().filter(|&&d| d >= 10) {
        if k == 16 {
            break;
        }
        y[k] = d - 10;
        k += 1;
    }
    // 40 nibbles always hold 16 of the two kinds together.
    pack_right::<8>(&y[..])
}

/// Option C's `Y`: `PAN || PSN` left-padded with zero digits to 32 digits (16 bytes).
pub fn option_c_input(pan: &Pan, psn: Psn) -> [u8; 16] {
    pack_right::<16>(&pan_psn_digits(pan, psn))
}

/// Derives one ICC master key from the clear IMK (see the [module documentation](self)).
/// A TDES IMK gives a 16-byte TDES key with odd parity; an AES IMK gives an AES key of the
/// IMK's length.
pub fn derive_icc_master_key(
    imk: &SecretKey,
    derivation: IccDerivation,
    pan: &Pan,
    psn: Psn,
) -> Result<SecretKey> {
    derive_with(&imk.cipher(), imk.len(), derivation, pan, psn)
}

/// [`derive_icc_master_key`] with the IMK's key schedule already expanded (an HSM keeps it
/// with the key); `imk_len` is the IMK's length in bytes.
pub(crate) fn derive_with(
    cipher: &BlockCipher,
    imk_len: usize,
    derivation: IccDerivation,
    pan: &Pan,
    psn: Psn,
) -> Result<SecretKey> {
    let method = derivation.resolve(cipher.algorithm(), pan.as_str().len())?;
    match method {
        IccMethod::A | IccMethod::B => {
            let y = if method == IccMethod::A {
                option_a_input(pan, psn)
            } else {
                option_b_input(pan, psn)
            };
            let mut z = Zeroizing::new([0u8; 16]);
            z[..8].copy_from_slice(&y);
            for (o, b) in z[8..].iter_mut().zip(y) {
                *o = !b;
            }
            cipher.encrypt_ecb(&mut z[..])?;
            set_odd_parity(&mut z[..]);
            SecretKey::new(Algorithm::Tdes, &z[..])
        }
        IccMethod::C => {
            let y = option_c_input(pan, psn);
            let mut z = Zeroizing::new([0u8; 32]);
            z[..16].copy_from_slice(&y);
            for (o, b) in z[16..].iter_mut().zip(y) {
                *o = !b;
            }
            let k = imk_len;
            let blocks = if k == 16 { 16 } else { 32 };
            cipher.encrypt_ecb(&mut z[..blocks])?;
            SecretKey::new(Algorithm::Aes, &z[..k])
        }
    }
}

/// Which issuer master key a derivation uses, with the TR-31 usage it must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IccKeyRole {
    /// Application cryptograms: IMK-AC, usage E0.
    Ac,
    /// Secure messaging for integrity: IMK-SMI, usage E2.
    Smi,
    /// Secure messaging for confidentiality: IMK-SMC, usage E1.
    Smc,
}

impl IccKeyRole {
    /// AC, SMI, SMC: the order of the keys in DGI 8000 and their KCVs in DGI 9000.
    pub fn all() -> [IccKeyRole; 3] {
        [IccKeyRole::Ac, IccKeyRole::Smi, IccKeyRole::Smc]
    }

    /// The TR-31 usage the issuer master key must have.
    pub fn usage(self) -> crate::keyblock::KeyUsage {
        use crate::keyblock::KeyUsage;
        match self {
            IccKeyRole::Ac => KeyUsage::E0,
            IccKeyRole::Smi => KeyUsage::E2,
            IccKeyRole::Smc => KeyUsage::E1,
        }
    }

    /// `IMK-AC`, `IMK-SMI`, `IMK-SMC`.
    pub fn name(self) -> &'static str {
        match self {
            IccKeyRole::Ac => "IMK-AC",
            IccKeyRole::Smi => "IMK-SMI",
            IccKeyRole::Smc => "IMK-SMC",
        }
    }
}

/// What [`Hsm::derive_icc_master_keys`](super::Hsm::derive_icc_master_keys) is asked.
#[derive(Clone, Copy, Debug)]
pub struct IccKeyRequest<'a> {
    /// IMK-AC (E0), IMK-SMI (E2), IMK-SMC (E1), in that order; mode of use X.
    pub imks: [&'a KeyHandle; 3],
    /// The derivation.
    pub derivation: IccDerivation,
    /// The card's PAN.
    pub pan: &'a Pan,
    /// The card's PAN sequence number.
    pub psn: Psn,
    /// The key transport key (K0, mode B or E) the keys are returned under.
    pub ktk: &'a KeyHandle,
}

/// The three ICC master keys of one card, encrypted under the KTK. Never key material in
/// clear.
#[derive(Clone, PartialEq, Eq)]
pub struct IccMasterKeys {
    /// `MK-AC || MK-SMI || MK-SMC` encrypted under the KTK in ECB without padding (the
    /// data of DGI 8000): 48 bytes for TDES keys.
    pub encrypted: Vec<u8>,
    /// The KCVs of MK-AC, MK-SMI and MK-SMC, in that order (DGI 9000): 3 bytes each for
    /// TDES keys (`E(K, 0^8)`), 5 for AES keys (CMAC, X9.24-1:2017).
    pub kcvs: [Kcv; 3],
    /// The derivation applied (`auto` and `B` resolved).
    pub method: IccMethod,
}

impl fmt::Debug for IccMasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IccMasterKeys")
            .field("encrypted_len", &self.encrypted.len())
            .field("kcvs", &self.kcvs)
            .field("method", &self.method)
            .finish()
    }
}
