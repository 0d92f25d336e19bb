//! RSA keys in the HSM for EMV offline data authentication: the types of the
//! [`Hsm`](super::Hsm) operations on them.
//!
//! - An **issuer RSA key** (TR-31 usage `S0`, mode `S`: it only signs) is generated in the
//!   HSM ([`Hsm::generate_rsa_key`](super::Hsm::generate_rsa_key)) or imported as an
//!   X9.143 key block of algorithm `R` under a KEK; its public half is readable
//!   ([`Hsm::rsa_key_info`](super::Hsm::rsa_key_info)) for the certificate request to the
//!   scheme CA. It signs only messages in the EMV recovery format (Book 2 annex A2.1:
//!   header `6A`, trailer `BC`, the modulus's length), so it is no raw decryption oracle
//!   ([`Hsm::sign_emv_recovery`](super::Hsm::sign_emv_recovery)).
//! - An **ICC key pair** is made per card
//!   ([`Hsm::generate_icc_rsa_key`](super::Hsm::generate_icc_rsa_key)), taken from a pool
//!   generated ahead when one is there; the private key leaves the HSM only as its CRT parts
//!   encrypted under the KTK, for DGIs 8201 to 8205.
//!
//! The arithmetic is [`crate::rsa`].

use core::fmt;

use super::KeyHandle;
use crate::Padding;
use crate::keyblock::KeyUsage;
use crate::rsa::{RsaExponent, RsaPublicKey};
use crate::{Error, Result};

/// What an RSA key pair is: label, modulus length, exponent, usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaKeySpec {
    /// Unique label in the HSM (the same label space as symmetric keys).
    pub label: String,
    /// Modulus length in bits: a multiple of 8 from 1024 to 1984.
    pub bits: u32,
    /// Public exponent.
    pub exponent: RsaExponent,
    /// TR-31 usage; `S0` (digital signature) is the one offered.
    pub usage: KeyUsage,
}

/// An RSA key pair as the HSM reports it: handle, attributes and public half. Never the
/// private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaKeyInfo {
    /// The handle for further operations.
    pub handle: KeyHandle,
    /// The attributes bound to the key.
    pub spec: RsaKeySpec,
    /// The public half.
    pub public: RsaPublicKey,
}

/// What [`Hsm::generate_icc_rsa_key`](super::Hsm::generate_icc_rsa_key) is asked.
#[derive(Clone, Copy, Debug)]
pub struct IccRsaRequest<'a> {
    /// Modulus length in bits (an EMV length).
    pub bits: u32,
    /// Public exponent.
    pub exponent: RsaExponent,
    /// The key transport key (K0, mode B or E) the CRT parts are returned under (ECB).
    pub ktk: &'a KeyHandle,
    /// Padding of each CRT part before encryption (schemes differ: none when the part is a
    /// whole number of blocks, or ISO/IEC 9797-1 method 2, `80 00…`).
    pub padding: Padding,
    /// Take the key pair from the pool when one of this length and exponent is there
    /// (else generate in line).
    pub use_pool: bool,
}

/// One card's ICC key pair: the public half in clear, the private key only as its CRT parts
/// encrypted under the KTK.
#[derive(Clone, PartialEq, Eq)]
pub struct IccRsaKey {
    /// The ICC public key (to certify).
    pub public: RsaPublicKey,
    /// The CRT parts in DGI order 8201 (`q⁻¹ mod p`), 8202 (`d mod (q−1)`), 8203
    /// (`d mod (p−1)`), 8204 (`q`), 8205 (`p`), each at half the modulus's length (leading
    /// zeros kept), padded as asked and encrypted under the KTK in ECB.
    pub crt_under_ktk: [Vec<u8>; 5],
    /// Whether the pair came from the pool (false: generated in line).
    pub from_pool: bool,
}

impl fmt::Debug for IccRsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IccRsaKey")
            .field("public", &self.public)
            .field(
                "crt_under_ktk_len",
                &self.crt_under_ktk.each_ref().map(Vec::len),
            )
            .field("from_pool", &self.from_pool)
            .finish()
    }
}

/// How many ICC key pairs of one length and exponent the pool holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IccPoolLevel {
    /// Modulus length in bits.
    pub bits: u32,
    /// Public exponent.
    pub exponent: RsaExponent,
    /// Key pairs available.
    pub available: u64,
}

/// Checks that `message` is in the EMV recovery format for a modulus of `len` bytes (Book 2
/// annex A2.1: the modulus's length, header `6A`, trailer `BC`) and of a format an issuer
/// signs (Book 2: `03` signed static application data, §5.4; `04` ICC public-key
/// certificate, §6.4, also used for the ICC PIN-encipherment certificate) — what every
/// backend checks before [`Hsm::sign_emv_recovery`](super::Hsm::sign_emv_recovery)
/// touches the key. So an issuer key in the HSM cannot be made to sign an issuer
/// certificate (format `02`, the CA's), dynamic data (`05`, the card's) or anything else.
pub fn check_recovery_format(message: &[u8], len: usize) -> Result<()> {
    let what = "EMV recovery-format message";
    if message.len() != len {
        return Err(Error::invalid(
            what,
            format!("{} bytes; the modulus has {len}", message.len()),
        ));
    }
    if message.first() != Some(&0x6A) {
        return Err(Error::invalid(what, "the header byte is not 6A"));
    }
    if message.last() != Some(&0xBC) {
        return Err(Error::invalid(what, "the trailer byte is not BC"));
    }
    match message.get(1) {
        Some(0x03 | 0x04) => Ok(()),
        Some(f) => Err(Error::invalid(
            what,
            format!(
                "format {f:02X} is not one an issuer key signs (03 signed static application \
                 data, 04 ICC public-key certificate)"
            ),
        )),
        None => Err(Error::invalid(what, "no format byte")),
    }
}

#[cfg(test)]
mod tests {
    use super::check_recovery_format;

    #[test]
    fn the_recovery_format_is_checked_in_length_header_and_trailer() {
        let mut m = vec![0x11u8; 128];
        m[0] = 0x6A;
        m[1] = 0x04;
        m[127] = 0xBC;
        assert!(check_recovery_format(&m, 128).is_ok());
        m[1] = 0x03;
        assert!(check_recovery_format(&m, 128).is_ok());
        for format in [0x00, 0x02, 0x05, 0x11] {
            m[1] = format;
            assert!(
                check_recovery_format(&m, 128).is_err(),
                "format {format:02X}"
            );
        }
        m[1] = 0x04;
        assert!(check_recovery_format(&m[..127], 128).is_err());
        assert!(check_recovery_format(&[], 128).is_err());
        m[0] = 0x6B;
        assert!(check_recovery_format(&m, 128).is_err());
        m[0] = 0x6A;
        m[127] = 0xBD;
        assert!(check_recovery_format(&m, 128).is_err());
    }
}
