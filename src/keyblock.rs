//! TR-31 / ANSI X9.143 key blocks: a typed header model, and wrap / unwrap for versions
//! A, B, C and D.
//!
//! Standards: ANSI X9.143:2022 (formerly ASC X9 TR-31:2018), whose version D binding is
//! also ISO 20038. A key block is `header ‖ hex(encrypted key data) ‖ hex(MAC)`:
//!
//! | version | binding | KBPK | encryption | MAC |
//! |---|---|---|---|---|
//! | `A`, `C` (legacy) | key variant: KBEK = KBPK ⊕ `45`…, KBAK = KBPK ⊕ `4D`… | TDES | TDES-CBC, IV = first 8 header characters | ISO 9797-1 alg. 1 (TDES CBC-MAC) over header ‖ ciphertext, 4 bytes |
//! | `B` | key derivation: KBEK, KBAK = TDES-CMAC(KBPK, counter ‖ usage ‖ 00 ‖ algorithm ‖ length) | TDES | TDES-CBC, IV = MAC | TDES-CMAC over header ‖ clear key data, 8 bytes |
//! | `D` | key derivation, as B with AES-CMAC | AES | AES-CBC, IV = MAC | AES-CMAC over header ‖ clear key data, 16 bytes |
//!
//! The clear key data is a 2-byte key length in bits, the key, and random padding up to a
//! whole number of cipher blocks; [`wrap`] can pad further to mask the key length.
//!
//! **Unwrap** checks the header structure, then the policy that needs no secret (legacy
//! versions, KBPK algorithm, header combinations), then verifies the MAC (in constant
//! time) before the key length or key bytes are looked at. Versions B and D MAC the clear
//! key data, so their payload is decrypted into a zeroizing buffer first and used only
//! after the MAC matches. Every cryptographic failure — wrong KBPK, altered header, key
//! data or MAC, a malformed encrypted part, a bad length inside the block — is the one
//! opaque [`Error::Crypto`].
//!
//! **Refused** (with [`Error::Policy`] or [`Error::Unsupported`]):
//! - a KBPK of the wrong algorithm for the version (D needs AES; A, B, C need TDES);
//! - an AES key in a version A, B or C block (a TDES binding cannot carry it);
//! - a wrapped key stronger than its KBPK (see [`strength_bits`]: 2-key TDES 80,
//!   3-key TDES 112, AES 128/192/256 bits);
//! - a mode of use meaningless for the usage ([`Header::check_combination`]);
//! - key algorithms other than TDES and AES (DES, RSA, EC, DSA, HMAC): parsed, not wrapped;
//! - versions A and C on unwrap unless [`UnwrapPolicy::allow_legacy`];
//! - on wrap, a TDES KBPK or key that is weak, semi-weak or degenerate (K1 = K2 or
//!   K2 = K3, single-DES strength). Parity is not enforced: the standard's own example keys
//!   do not have odd parity.
//!
//! ```
//! use pmp_core::keyblock::{self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse,
//!     UnwrapPolicy, Version};
//! use pmp_core::{Algorithm, SecretKey};
//!
//! // TR-31:2018 annex A.7.4 (version D): unwrap the published block.
//! let kbpk = SecretKey::from_hex(Algorithm::Aes,
//!     "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6").unwrap();
//! let block = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D2\
//!              07E2E417C07156A27E8E31DA05F7425509593D03A457DC34";
//! let (header, key) = keyblock::unwrap(&kbpk, block, &UnwrapPolicy::default()).unwrap();
//! assert_eq!(header.usage, KeyUsage::P0);
//! assert_eq!(hex::encode_upper(key.expose_secret()), "3F419E1CB7079442AA37474C2EFBF8B8");
//!
//! // Wrap it again (random padding: the block differs each time) and read it back.
//! let h = Header::new(Version::D, KeyUsage::P0, KeyAlgorithm::Aes, ModeOfUse::E,
//!     Exportability::E);
//! let again = keyblock::wrap(&kbpk, &h, &key, None).unwrap();
//! assert!(again.starts_with("D0112P0AE00E0000"));
//! assert_eq!(keyblock::unwrap(&kbpk, &again, &UnwrapPolicy::default()).unwrap().1, key);
//! ```

mod header;

use zeroize::Zeroizing;

pub use self::header::{
    Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, OptionalBlock, OptionalBlockKind,
    Version, known_usages,
};

use crate::primitives::cipher::Padding;
use crate::primitives::key::{Algorithm, SecretKey};
use crate::primitives::mac::{MacAlgorithm, cmac, mac};
use crate::{Error, Result};

/// What [`unwrap`] accepts beyond the rules of X9.143 it always enforces.
///
/// The default refuses the legacy variant-binding versions A and C, as the bureau's design
/// asks (keys are exchanged as B or D blocks; A and C only where a counterpart still
/// needs them). [`UnwrapPolicy::permissive`] accepts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwrapPolicy {
    /// Accept versions A and C (key variant binding, deprecated by X9.143).
    pub allow_legacy: bool,
}

impl UnwrapPolicy {
    /// Accepts every version pmp-core supports, legacy A and C included.
    pub const fn permissive() -> Self {
        UnwrapPolicy { allow_legacy: true }
    }
}

/// Security strength in bits of a TDES or AES key of `len` bytes, per NIST SP 800-57
/// Part 1 Rev. 5 §5.6.1: 2-key TDES 80, 3-key TDES 112, AES-128/192/256 as their size.
/// A KBPK must be at least as strong as the key it wraps.
pub const fn strength_bits(algorithm: Algorithm, len: usize) -> usize {
    match algorithm {
        Algorithm::Tdes if len >= 24 => 112,
        Algorithm::Tdes => 80,
        Algorithm::Aes => len * 8,
    }
}

/// [`strength_bits`] of an actual key: a 24-byte TDES key whose first and third parts are
/// the same DES key (parity ignored) is 2-key TDES, 80 bits.
pub fn key_strength_bits(key: &SecretKey) -> usize {
    let k = key.expose_secret();
    let k1_is_k3 = key.algorithm() == Algorithm::Tdes
        && k.len() == 24
        && k[..8]
            .iter()
            .zip(&k[16..])
            .all(|(a, b)| a & 0xFE == b & 0xFE);
    if k1_is_k3 {
        80
    } else {
        strength_bits(key.algorithm(), key.len())
    }
}

/// Wraps `key` under `kbpk` into a key block with `header` (its length is computed; any
/// `PB` padding block in it is replaced by one that aligns the header). With
/// `masked_len = Some(n)`, the key data is padded as if the key were `max(n, key length)`
/// bytes long, so the block does not reveal the key length.
pub fn wrap(
    kbpk: &SecretKey,
    header: &Header,
    key: &SecretKey,
    masked_len: Option<usize>,
) -> Result<String> {
    let v = header.version;
    check_kbpk_algorithm(v, kbpk)?;
    check_des_hygiene("key block protection key", kbpk)?;
    let key_alg = supported_algorithm(header)?;
    if key_alg != key.algorithm() {
        return Err(Error::invalid(
            "key",
            format!(
                "the header says algorithm {} ({key_alg}) but the key is {}",
                header.algorithm,
                key.algorithm()
            ),
        ));
    }
    check_version_carries(v, key_alg)?;
    if let KeyUsage::Other(_) = header.usage {
        // A block pmp-core makes carries a usage every receiver can act on.
        return Err(Error::invalid(
            "key usage",
            format!(
                "{} is not a known TR-31 key usage; known: {}",
                header.usage,
                known_usages()
            ),
        ));
    }
    header.check_combination()?;
    check_strength(kbpk, key)?;
    check_des_hygiene("key", key)?;
    seal(kbpk, header, key.expose_secret(), masked_len)
}

/// Wraps an asymmetric private key (X9.143 algorithm `R`, `E` or `S`, an asymmetric usage
/// such as `S0`) under `kbpk`: the payload is the key's DER (for RSA the PKCS#1
/// `RSAPrivateKey`, see [`unwrap_asymmetric`]) and its 2-byte length field counts the DER's
/// bits, as for a symmetric key. Versions B and D only. The block is longer than a
/// symmetric one (a 1984-bit RSA key makes about 2,400 characters); the 4-digit length
/// field bounds it at 9,999.
pub fn wrap_asymmetric(
    kbpk: &SecretKey,
    header: &Header,
    der: &[u8],
    masked_len: Option<usize>,
) -> Result<String> {
    check_asymmetric_header(header)?;
    check_kbpk_algorithm(header.version, kbpk)?;
    check_des_hygiene("key block protection key", kbpk)?;
    header.check_combination()?;
    if der.is_empty() {
        return Err(Error::invalid("asymmetric key", "empty DER"));
    }
    seal(kbpk, header, der, masked_len)
}

/// The algorithm and version checks of an asymmetric key block.
fn check_asymmetric_header(header: &Header) -> Result<()> {
    if !header.algorithm.is_asymmetric() {
        return Err(Error::invalid(
            "key block",
            format!(
                "algorithm {} ({}) is not asymmetric",
                header.algorithm,
                header.algorithm.description()
            ),
        ));
    }
    if header.version.is_legacy() {
        return Err(Error::Policy(format!(
            "an asymmetric key travels only in a version B or D key block, not {}",
            header.version
        )));
    }
    Ok(())
}

/// Encrypts and MACs `payload` (a key or a DER private key) with `header`: the common tail
/// of [`wrap`] and [`wrap_asymmetric`].
fn seal(
    kbpk: &SecretKey,
    header: &Header,
    payload: &[u8],
    masked_len: Option<usize>,
) -> Result<String> {
    let v = header.version;
    // The header, with a fresh padding block if the optional blocks need aligning.
    let bs = v.block_size();
    let mut h = header.clone();
    h.optional_blocks.retain(|b| &b.id != b"PB");
    let short = h.encoded_len() % bs;
    if short != 0 {
        let mut n = bs - short;
        if n < 4 {
            n += bs;
        }
        h.optional_blocks.push(OptionalBlock {
            id: *b"PB",
            data: "0".repeat(n - 4),
        });
    }

    // Clear key data: bit length, key, random padding.
    let shown_len = masked_len.unwrap_or(0).max(payload.len());
    if shown_len > 4096 {
        return Err(Error::invalid("masked length", "larger than 4096 bytes"));
    }
    let data_len = (2 + shown_len).div_ceil(bs) * bs;
    let total = h.encoded_len() + 2 * data_len + 2 * v.mac_len();
    let text = h.encode(total)?;
    let bits = u16::try_from(payload.len() * 8).map_err(|_| Error::invalid("key", "too long"))?;
    let mut data = Zeroizing::new(vec![0u8; data_len]);
    data[..2].copy_from_slice(&bits.to_be_bytes());
    data[2..2 + payload.len()].copy_from_slice(payload);
    crate::primitives::rng::fill_random(&mut data[2 + payload.len()..])?;

    let tag: Vec<u8> = match v {
        Version::A | Version::C => {
            let kbek = variant(kbpk, 0x45)?;
            let kbak = variant(kbpk, 0x4D)?;
            kbek.cipher()
                .encrypt_cbc(&text.as_bytes()[..8], &mut data)?;
            variant_mac(&kbak, &text, &data)?
        }
        Version::B | Version::D => {
            let kbek = derive(kbpk, KeyRole::Encryption)?;
            let kbak = derive(kbpk, KeyRole::Mac)?;
            let tag = derivation_mac(&kbak, &text, &data)?;
            kbek.cipher().encrypt_cbc(&tag, &mut data)?;
            tag
        }
    };
    let mut out = text;
    out.push_str(&hex::encode_upper(&*data));
    out.push_str(&hex::encode_upper(&tag));
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

/// Unwraps a key block: verifies it under `kbpk` and returns its header and the key.
///
/// Structural header errors name the position; policy refusals say why; every
/// cryptographic failure is [`Error::Crypto`]. See the [module documentation](self) for
/// the order of the checks.
pub fn unwrap(kbpk: &SecretKey, block: &str, policy: &UnwrapPolicy) -> Result<(Header, SecretKey)> {
    let (header, hlen) = parse_block(block)?;
    let v = header.version;
    if v.is_legacy() && !policy.allow_legacy {
        return Err(Error::Policy(format!(
            "key block version {v} (legacy key variant binding) is not accepted by this policy"
        )));
    }
    check_kbpk_algorithm(v, kbpk)?;
    let key_alg = supported_algorithm(&header)?;
    check_version_carries(v, key_alg)?;
    header.check_combination()?;
    let data = open(kbpk, block, &header, hlen)?;

    // Authentic from here on; a bad length inside is still the opaque error.
    let bits = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let len = bits / 8;
    if bits % 8 != 0 || len > data.len() - 2 || !key_alg.valid_key_len(len) {
        return Err(Error::Crypto);
    }
    let key = SecretKey::new(key_alg, &data[2..2 + len]).map_err(|_| Error::Crypto)?;
    check_strength(kbpk, &key)?;
    Ok((header, key))
}

/// Unwraps an asymmetric private key block (algorithm `R`, `E` or `S`; versions B and D):
/// verifies it under `kbpk` and returns its header and the payload, the private key's DER,
/// in a zeroizing buffer. The payload's 2-byte length field counts bits of the DER. For
/// RSA, X9.143 carries the private key as its ASN.1 DER encoding; callers parse it
/// ([`crate::rsa::RsaPrivateKey::from_der`] accepts PKCS#1 `RSAPrivateKey` and PKCS#8
/// `PrivateKeyInfo`). The same opaque [`Error::Crypto`] as [`unwrap`] for every
/// cryptographic failure.
pub fn unwrap_asymmetric(
    kbpk: &SecretKey,
    block: &str,
    policy: &UnwrapPolicy,
) -> Result<(Header, Zeroizing<Vec<u8>>)> {
    let _ = policy; // legacy versions never carry asymmetric keys here
    let (header, hlen) = parse_block(block)?;
    check_asymmetric_header(&header)?;
    check_kbpk_algorithm(header.version, kbpk)?;
    header.check_combination()?;
    let data = open(kbpk, block, &header, hlen)?;
    let bits = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let len = bits / 8;
    if bits % 8 != 0 || len == 0 || len > data.len() - 2 {
        return Err(Error::Crypto);
    }
    Ok((header, Zeroizing::new(data[2..2 + len].to_vec())))
}

/// Verifies the MAC and decrypts the key data of a parsed block (header `hlen` characters
/// long): the common middle of [`unwrap`] and [`unwrap_asymmetric`]. The result is the
/// clear key data (length field, payload, padding), authentic.
fn open(kbpk: &SecretKey, block: &str, header: &Header, hlen: usize) -> Result<Zeroizing<Vec<u8>>> {
    let v = header.version;
    // The encrypted part: whole cipher blocks of key data, then the MAC, all in hex.
    let text = &block[..hlen];
    let rest = &block.as_bytes()[hlen..];
    let bs = v.block_size();
    let mac_hex = 2 * v.mac_len();
    if rest.len() < mac_hex + 2 * bs || !(rest.len() - mac_hex).is_multiple_of(2 * bs) {
        return Err(Error::Crypto);
    }
    let (data_hex, tag_hex) = rest.split_at(rest.len() - mac_hex);
    let mut data = Zeroizing::new(hex::decode(data_hex).map_err(|_| Error::Crypto)?);
    let tag = hex::decode(tag_hex).map_err(|_| Error::Crypto)?;

    match v {
        Version::A | Version::C => {
            // MAC over the ciphertext: verified before anything is decrypted.
            let kbak = variant(kbpk, 0x4D)?;
            ct_verify(&variant_mac(&kbak, text, &data)?, &tag)?;
            let kbek = variant(kbpk, 0x45)?;
            kbek.cipher()
                .decrypt_cbc(&text.as_bytes()[..8], &mut data)?;
        }
        Version::B | Version::D => {
            // MAC over the clear data: decrypt into the zeroizing buffer, use nothing of it
            // until the MAC matches.
            let kbek = derive(kbpk, KeyRole::Encryption)?;
            kbek.cipher().decrypt_cbc(&tag, &mut data)?;
            let kbak = derive(kbpk, KeyRole::Mac)?;
            ct_verify(&derivation_mac(&kbak, text, &data)?, &tag)?;
        }
    }

    Ok(data)
}

/// Reads the header of a key block without any key or cryptography (for operators). The
/// length field must match the block's length.
pub fn inspect(block: &str) -> Result<Header> {
    parse_block(block).map(|(h, _)| h)
}

/// Parses the header of a whole block and checks the length field and header alignment.
pub(crate) fn parse_block(block: &str) -> Result<(Header, usize)> {
    let (header, hlen) = header::parse_prefix(block.as_bytes(), true)?;
    let declared: usize = block[1..5]
        .parse()
        .map_err(|_| header::herr(1, "the length field must be four decimal digits"))?;
    if declared != block.len() {
        return Err(header::herr(
            1,
            format!(
                "the length field says {declared} characters, the block has {}",
                block.len()
            ),
        ));
    }
    // X9.143 aligns the header on the cipher block (with a PB block); TR-31:2005 (A) did not.
    if header.version != Version::A && hlen % header.version.block_size() != 0 {
        return Err(header::herr(
            hlen,
            format!(
                "the header ({hlen} characters) is not a multiple of {} (missing padding block)",
                header.version.block_size()
            ),
        ));
    }
    Ok((header, hlen))
}

pub(crate) fn supported_algorithm(header: &Header) -> Result<Algorithm> {
    header.algorithm.to_pmp().ok_or_else(|| {
        Error::Unsupported(format!(
            "key algorithm {} ({}): pmp-core wraps TDES and AES keys only",
            header.algorithm,
            header.algorithm.description()
        ))
    })
}

fn check_kbpk_algorithm(v: Version, kbpk: &SecretKey) -> Result<()> {
    if kbpk.algorithm() == v.kbpk_algorithm() {
        Ok(())
    } else {
        Err(Error::Policy(format!(
            "a version {v} key block needs a {} key block protection key, not {}",
            v.kbpk_algorithm(),
            kbpk.algorithm()
        )))
    }
}

pub(crate) fn check_version_carries(v: Version, key_alg: Algorithm) -> Result<()> {
    if key_alg == Algorithm::Aes && v != Version::D {
        return Err(Error::Policy(format!(
            "a version {v} key block (TDES binding) cannot carry an AES key; use version D"
        )));
    }
    Ok(())
}

fn check_strength(kbpk: &SecretKey, key: &SecretKey) -> Result<()> {
    let p = key_strength_bits(kbpk);
    let k = key_strength_bits(key);
    if p >= k {
        Ok(())
    } else {
        Err(Error::Policy(format!(
            "the key block protection key ({}-bit strength) is weaker than the key it would \
             protect ({k}-bit strength)",
            p
        )))
    }
}

/// Weak, semi-weak and degenerate TDES keys, ignoring parity bits.
fn check_des_hygiene(what: &str, key: &SecretKey) -> Result<()> {
    if key.algorithm() != Algorithm::Tdes {
        return Ok(());
    }
    let mut b = Zeroizing::new(key.expose_secret().to_vec());
    crate::primitives::keys::set_odd_parity(&mut b);
    crate::primitives::keys::check_key_hygiene(Algorithm::Tdes, &b).map_err(|e| match e {
        Error::WeakKey(m) => Error::Policy(format!("{what} refused: {m}")),
        other => other,
    })
}

/// KBPK ⊕ a constant byte (the key variant binding of versions A and C).
fn variant(kbpk: &SecretKey, v: u8) -> Result<SecretKey> {
    let mut b = Zeroizing::new(kbpk.expose_secret().to_vec());
    b.iter_mut().for_each(|x| *x ^= v);
    SecretKey::new(kbpk.algorithm(), &b)
}

/// ISO 9797-1 MAC algorithm 1 (TDES CBC-MAC) over header ‖ ciphertext, first 4 bytes.
fn variant_mac(kbak: &SecretKey, header: &str, ct: &[u8]) -> Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(header.len() + ct.len());
    msg.extend_from_slice(header.as_bytes());
    msg.extend_from_slice(ct);
    let t = mac(MacAlgorithm::CbcTdes, kbak, Padding::Iso9797M1, &msg)?;
    Ok(t.as_bytes()[..4].to_vec())
}

/// CMAC (TDES for B, AES for D) over header ‖ clear key data, full block.
fn derivation_mac(kbak: &SecretKey, header: &str, clear: &[u8]) -> Result<Vec<u8>> {
    let mut msg = Zeroizing::new(Vec::with_capacity(header.len() + clear.len()));
    msg.extend_from_slice(header.as_bytes());
    msg.extend_from_slice(clear);
    Ok(cmac(kbak, &msg)?.as_bytes().to_vec())
}

fn ct_verify(computed: &[u8], received: &[u8]) -> Result<()> {
    use subtle::ConstantTimeEq;
    if computed.len() == received.len() && bool::from(computed.ct_eq(received)) {
        Ok(())
    } else {
        Err(Error::Crypto)
    }
}

#[derive(Clone, Copy)]
pub(crate) enum KeyRole {
    Encryption,
    Mac,
}

/// The key derivation of versions B and D (X9.143 §7.3): CMAC under the KBPK of the
/// 8-byte derivation data `counter ‖ usage (0000 enc / 0001 MAC) ‖ 00 ‖ algorithm ‖
/// length in bits`, one CMAC block per counter value, truncated to the KBPK length.
pub(crate) fn derive(kbpk: &SecretKey, role: KeyRole) -> Result<SecretKey> {
    let (alg_id, bits): (u8, u16) = match (kbpk.algorithm(), kbpk.len()) {
        (Algorithm::Tdes, 16) => (0, 128),
        (Algorithm::Tdes, _) => (1, 192),
        (Algorithm::Aes, 16) => (2, 128),
        (Algorithm::Aes, 24) => (3, 192),
        (Algorithm::Aes, _) => (4, 256),
    };
    let usage = match role {
        KeyRole::Encryption => 0,
        KeyRole::Mac => 1,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(48));
    let mut counter = 1u8;
    while out.len() < kbpk.len() {
        let [bh, bl] = bits.to_be_bytes();
        let d = [counter, 0, usage, 0, 0, alg_id, bh, bl];
        out.extend_from_slice(cmac(kbpk, &d)?.as_bytes());
        counter += 1;
    }
    out.truncate(kbpk.len());
    SecretKey::new(kbpk.algorithm(), &out)
}
