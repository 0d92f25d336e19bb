//! Block cipher modes (ECB, CBC) and paddings for TDES and AES.
//!
//! AES is RustCrypto's `aes` with the `cbc` mode. TDES is [`Tdes`]: the bitsliced,
//! constant-time core of this crate for batches (ECB over several blocks, CBC decryption,
//! many CBC messages at once with [`BlockCipher::encrypt_cbc_chains`]), the RustCrypto
//! `des` crate for a single block or a single CBC encryption (sequential by nature). All
//! operations work in place on caller buffers.
//!
//! Paddings: ISO/IEC 9797-1 method 1 (zeros; the empty message becomes one zero block),
//! method 2 (0x80 then zeros, always at least one byte) and PKCS#7 (RFC 5652 §6.3).
//!
//! ```
//! use pmp_core::{Algorithm, SecretKey, Mode, Padding};
//! let key = SecretKey::new(Algorithm::Aes, &[7; 16]).unwrap();
//! let cipher = key.cipher();
//! let msg = b"PAN=4111111111111111";
//! let mut buf = [0u8; 32];
//! let n = cipher.encrypt(Mode::Cbc, Some(&[0; 16]), Padding::Iso9797M2, msg, &mut buf).unwrap();
//! let mut out = [0u8; 32];
//! let m = cipher.decrypt(Mode::Cbc, Some(&[0; 16]), Padding::Iso9797M2, &buf[..n], &mut out).unwrap();
//! assert_eq!(&out[..m], msg);
//! ```

use core::fmt;

use crate::primitives::key::{Algorithm, SecretKey};
use crate::primitives::tdes::{CbcChain, Tdes};
use crate::{Error, Result};
use aes::{Aes128, Aes192, Aes256};
use cipher::array::Array;
use cipher::{
    BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit,
    KeyInit,
};

/// A block cipher mode of operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Electronic codebook. No IV.
    Ecb,
    /// Cipher block chaining. IV of one block.
    Cbc,
}

impl core::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ecb" => Ok(Mode::Ecb),
            "cbc" => Ok(Mode::Cbc),
            _ => Err(Error::invalid("cipher mode", "expected ECB or CBC")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Ecb => "ECB",
            Mode::Cbc => "CBC",
        })
    }
}

/// A padding method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding: the input must already be a whole number of blocks.
    None,
    /// ISO/IEC 9797-1 padding method 1: zero bytes up to a block boundary; an empty message
    /// becomes one zero block. Not removable: the caller keeps the length.
    Iso9797M1,
    /// ISO/IEC 9797-1 padding method 2: one 0x80 byte, then zeros up to a block boundary.
    Iso9797M2,
    /// PKCS#7 (RFC 5652 §6.3): N bytes of value N, 1 ≤ N ≤ block size.
    Pkcs7,
}

impl Padding {
    /// The padded length of a `msg_len`-byte message for blocks of `block` bytes.
    pub const fn padded_len(self, msg_len: usize, block: usize) -> usize {
        match self {
            Padding::None => msg_len,
            Padding::Iso9797M1 => {
                if msg_len == 0 {
                    block
                } else {
                    msg_len.div_ceil(block) * block
                }
            }
            Padding::Iso9797M2 | Padding::Pkcs7 => (msg_len / block + 1) * block,
        }
    }

    /// Pads in place: `buf[..msg_len]` holds the message; the padding is written after it.
    /// Returns the padded length.
    pub fn pad(self, buf: &mut [u8], msg_len: usize, block: usize) -> Result<usize> {
        let total = self.padded_len(msg_len, block);
        if self == Padding::None && !msg_len.is_multiple_of(block) {
            return Err(Error::invalid(
                "data length",
                format!(
                    "{msg_len} bytes is not a multiple of the {block}-byte block and no padding was asked for"
                ),
            ));
        }
        if buf.len() < total {
            return Err(Error::BufferTooSmall {
                needed: total,
                got: buf.len(),
            });
        }
        let tail = &mut buf[msg_len..total];
        match self {
            Padding::None => {}
            Padding::Iso9797M1 => tail.fill(0),
            Padding::Iso9797M2 => {
                tail.fill(0);
                tail[0] = 0x80;
            }
            Padding::Pkcs7 => {
                let n = u8::try_from(total - msg_len)
                    .map_err(|_| Error::invalid("block size", "too large"))?;
                tail.fill(n);
            }
        }
        Ok(total)
    }

    /// The message length of a padded buffer. Method 1 cannot be removed and returns the
    /// whole length. A malformed padding is the opaque [`Error::Crypto`].
    pub fn unpad(self, buf: &[u8], block: usize) -> Result<usize> {
        if buf.is_empty() || !buf.len().is_multiple_of(block) {
            return match self {
                Padding::None if buf.is_empty() => Ok(0),
                _ => Err(Error::Crypto),
            };
        }
        match self {
            Padding::None | Padding::Iso9797M1 => Ok(buf.len()),
            Padding::Iso9797M2 => {
                let last = &buf[buf.len() - block..];
                match last.iter().rposition(|&b| b != 0) {
                    Some(i) if last[i] == 0x80 => Ok(buf.len() - block + i),
                    _ => Err(Error::Crypto),
                }
            }
            Padding::Pkcs7 => {
                let n = usize::from(buf[buf.len() - 1]);
                if n == 0 || n > block || buf[buf.len() - n..].iter().any(|&b| usize::from(b) != n)
                {
                    Err(Error::Crypto)
                } else {
                    Ok(buf.len() - n)
                }
            }
        }
    }
}

impl core::str::FromStr for Padding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "0" => Ok(Padding::None),
            "1" | "iso9797-1" | "iso9797-m1" | "m1" => Ok(Padding::Iso9797M1),
            "2" | "iso9797-2" | "iso9797-m2" | "m2" | "iso7816" => Ok(Padding::Iso9797M2),
            "pkcs7" => Ok(Padding::Pkcs7),
            _ => Err(Error::invalid("padding", "expected none, 1, 2 or pkcs7")),
        }
    }
}

/// A prepared block cipher (key schedule) for a TDES or AES key. `Debug` shows no key
/// material; the schedule is zeroized on drop.
#[derive(Clone)]
pub enum BlockCipher {
    /// 2-key TDES (keying option 2).
    Tdes2(Tdes),
    /// 3-key TDES (keying option 1).
    Tdes3(Tdes),
    /// AES-128.
    Aes128(Aes128),
    /// AES-192.
    Aes192(Aes192),
    /// AES-256.
    Aes256(Aes256),
}

impl fmt::Debug for BlockCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockCipher::Tdes2(_) => "BlockCipher::Tdes2 { .. }",
            BlockCipher::Tdes3(_) => "BlockCipher::Tdes3 { .. }",
            BlockCipher::Aes128(_) => "BlockCipher::Aes128 { .. }",
            BlockCipher::Aes192(_) => "BlockCipher::Aes192 { .. }",
            BlockCipher::Aes256(_) => "BlockCipher::Aes256 { .. }",
        })
    }
}

/// Runs `$tdes` with `$t` bound to the [`Tdes`] key, or `$aes` with `$c` bound to the
/// RustCrypto AES cipher, whatever its size.
macro_rules! with_cipher {
    ($self:expr, $t:ident => $tdes:expr, $c:ident => $aes:expr) => {
        match $self {
            BlockCipher::Tdes2($t) | BlockCipher::Tdes3($t) => $tdes,
            BlockCipher::Aes128($c) => $aes,
            BlockCipher::Aes192($c) => $aes,
            BlockCipher::Aes256($c) => $aes,
        }
    };
}

fn ecb_encrypt<C: BlockCipherEncrypt>(c: &C, buf: &mut [u8]) {
    let (blocks, rest) = Array::slice_as_chunks_mut(buf);
    debug_assert!(rest.is_empty());
    c.encrypt_blocks(blocks);
}

fn ecb_decrypt<C: BlockCipherDecrypt>(c: &C, buf: &mut [u8]) {
    let (blocks, rest) = Array::slice_as_chunks_mut(buf);
    debug_assert!(rest.is_empty());
    c.decrypt_blocks(blocks);
}

fn cbc_encrypt<C: BlockCipherEncrypt>(c: &C, iv: &[u8], buf: &mut [u8]) -> Result<()> {
    let mut enc = cbc::Encryptor::<&C>::inner_iv_slice_init(c, iv)
        .map_err(|_| Error::invalid("IV", "length differs from the block size"))?;
    let (blocks, _) = Array::slice_as_chunks_mut(buf);
    enc.encrypt_blocks(blocks);
    Ok(())
}

fn cbc_decrypt<C: BlockCipherDecrypt>(c: &C, iv: &[u8], buf: &mut [u8]) -> Result<()> {
    let mut dec = cbc::Decryptor::<&C>::inner_iv_slice_init(c, iv)
        .map_err(|_| Error::invalid("IV", "length differs from the block size"))?;
    let (blocks, _) = Array::slice_as_chunks_mut(buf);
    dec.decrypt_blocks(blocks);
    Ok(())
}

impl BlockCipher {
    /// The key schedule of `key`.
    pub fn new(key: &SecretKey) -> Self {
        let k = key.expose_secret();
        // Lengths were validated when the SecretKey was made, so these cannot fail.
        match (key.algorithm(), k.len()) {
            (Algorithm::Tdes, 16) => BlockCipher::Tdes2(Tdes::new(k).expect("16-byte key")),
            (Algorithm::Tdes, _) => BlockCipher::Tdes3(Tdes::new(k).expect("24-byte key")),
            (Algorithm::Aes, 16) => {
                BlockCipher::Aes128(Aes128::new_from_slice(k).expect("16-byte key"))
            }
            (Algorithm::Aes, 24) => {
                BlockCipher::Aes192(Aes192::new_from_slice(k).expect("24-byte key"))
            }
            (Algorithm::Aes, _) => {
                BlockCipher::Aes256(Aes256::new_from_slice(k).expect("32-byte key"))
            }
        }
    }

    /// The algorithm family.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            BlockCipher::Tdes2(_) | BlockCipher::Tdes3(_) => Algorithm::Tdes,
            _ => Algorithm::Aes,
        }
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> usize {
        self.algorithm().block_size()
    }

    fn check_blocks(&self, len: usize) -> Result<()> {
        let b = self.block_size();
        if len.is_multiple_of(b) {
            Ok(())
        } else {
            Err(Error::invalid(
                "data length",
                format!("{len} bytes is not a multiple of the {b}-byte block"),
            ))
        }
    }

    /// Encrypts whole blocks in place in ECB mode.
    pub fn encrypt_ecb(&self, buf: &mut [u8]) -> Result<()> {
        self.check_blocks(buf.len())?;
        with_cipher!(self, t => t.encrypt_ecb(buf), c => {
            ecb_encrypt(c, buf);
            Ok(())
        })
    }

    /// Decrypts whole blocks in place in ECB mode.
    pub fn decrypt_ecb(&self, buf: &mut [u8]) -> Result<()> {
        self.check_blocks(buf.len())?;
        with_cipher!(self, t => t.decrypt_ecb(buf), c => {
            ecb_decrypt(c, buf);
            Ok(())
        })
    }

    /// Encrypts whole blocks in place in CBC mode with `iv` (one block).
    pub fn encrypt_cbc(&self, iv: &[u8], buf: &mut [u8]) -> Result<()> {
        self.check_blocks(buf.len())?;
        self.check_iv(iv)?;
        with_cipher!(self, t => t.encrypt_cbc(iv, buf), c => cbc_encrypt(c, iv, buf))
    }

    /// Decrypts whole blocks in place in CBC mode with `iv` (one block).
    pub fn decrypt_cbc(&self, iv: &[u8], buf: &mut [u8]) -> Result<()> {
        self.check_blocks(buf.len())?;
        self.check_iv(iv)?;
        with_cipher!(self, t => t.decrypt_cbc(iv, buf), c => cbc_decrypt(c, iv, buf))
    }

    /// Encrypts many independent CBC messages in place, each with its own IV. For TDES
    /// they run side by side in the lanes of the bitsliced core (one message per lane);
    /// for AES one after the other. Every length and IV is checked before anything is
    /// encrypted.
    pub fn encrypt_cbc_chains(&self, chains: &mut [CbcChain<'_>]) -> Result<()> {
        self.check_chains(chains)?;
        with_cipher!(self, t => t.encrypt_cbc_chains(chains), c => {
            for ch in chains.iter_mut() {
                cbc_encrypt(c, ch.iv, ch.data)?;
            }
            Ok(())
        })
    }

    /// Decrypts many independent CBC messages in place, each with its own IV. For TDES
    /// every block of every message is decrypted side by side. Every length and IV is
    /// checked before anything is decrypted.
    pub fn decrypt_cbc_chains(&self, chains: &mut [CbcChain<'_>]) -> Result<()> {
        self.check_chains(chains)?;
        with_cipher!(self, t => t.decrypt_cbc_chains(chains), c => {
            for ch in chains.iter_mut() {
                cbc_decrypt(c, ch.iv, ch.data)?;
            }
            Ok(())
        })
    }

    fn check_iv(&self, iv: &[u8]) -> Result<()> {
        if iv.len() == self.block_size() {
            Ok(())
        } else {
            Err(Error::invalid("IV", "length differs from the block size"))
        }
    }

    fn check_chains(&self, chains: &[CbcChain<'_>]) -> Result<()> {
        let b = self.block_size();
        for (i, c) in chains.iter().enumerate() {
            if c.iv.len() != b {
                return Err(Error::invalid(
                    "IV",
                    format!("chain {i}: {} bytes, the block is {b}", c.iv.len()),
                ));
            }
            if !c.data.len().is_multiple_of(b) {
                return Err(Error::invalid(
                    "data length",
                    format!(
                        "chain {i}: {} bytes is not a multiple of the {b}-byte block",
                        c.data.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Encrypts whole blocks in place in `mode` (`iv` required for CBC, refused for ECB).
    pub fn encrypt_blocks(&self, mode: Mode, iv: Option<&[u8]>, buf: &mut [u8]) -> Result<()> {
        match (mode, iv) {
            (Mode::Ecb, None) => self.encrypt_ecb(buf),
            (Mode::Cbc, Some(iv)) => self.encrypt_cbc(iv, buf),
            (Mode::Ecb, Some(_)) => Err(Error::invalid("IV", "ECB takes no IV")),
            (Mode::Cbc, None) => Err(Error::invalid("IV", "CBC needs an IV")),
        }
    }

    /// Decrypts whole blocks in place in `mode` (`iv` required for CBC, refused for ECB).
    pub fn decrypt_blocks(&self, mode: Mode, iv: Option<&[u8]>, buf: &mut [u8]) -> Result<()> {
        match (mode, iv) {
            (Mode::Ecb, None) => self.decrypt_ecb(buf),
            (Mode::Cbc, Some(iv)) => self.decrypt_cbc(iv, buf),
            (Mode::Ecb, Some(_)) => Err(Error::invalid("IV", "ECB takes no IV")),
            (Mode::Cbc, None) => Err(Error::invalid("IV", "CBC needs an IV")),
        }
    }

    /// Pads `msg` and encrypts it into `out`; returns the ciphertext length.
    pub fn encrypt(
        &self,
        mode: Mode,
        iv: Option<&[u8]>,
        padding: Padding,
        msg: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let bs = self.block_size();
        let n = padding.padded_len(msg.len(), bs);
        if out.len() < n {
            return Err(Error::BufferTooSmall {
                needed: n,
                got: out.len(),
            });
        }
        out[..msg.len()].copy_from_slice(msg);
        padding.pad(out, msg.len(), bs)?;
        self.encrypt_blocks(mode, iv, &mut out[..n])?;
        Ok(n)
    }

    /// Decrypts `ct` into `out` and removes the padding; returns the plaintext length.
    /// A bad padding is the opaque [`Error::Crypto`]; `out` is wiped in that case.
    pub fn decrypt(
        &self,
        mode: Mode,
        iv: Option<&[u8]>,
        padding: Padding,
        ct: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        self.check_blocks(ct.len())?;
        if out.len() < ct.len() {
            return Err(Error::BufferTooSmall {
                needed: ct.len(),
                got: out.len(),
            });
        }
        let out = &mut out[..ct.len()];
        out.copy_from_slice(ct);
        self.decrypt_blocks(mode, iv, out)?;
        match padding.unpad(out, self.block_size()) {
            Ok(n) => Ok(n),
            Err(e) => {
                crate::primitives::key::wipe(out);
                Err(e)
            }
        }
    }

    /// Encrypts one block in place (ECB). `block` must be exactly one block long.
    pub fn encrypt_block(&self, block: &mut [u8]) -> Result<()> {
        if block.len() != self.block_size() {
            return Err(Error::invalid(
                "block",
                "length differs from the block size",
            ));
        }
        self.encrypt_ecb(block)
    }

    /// Decrypts one block in place (ECB). `block` must be exactly one block long.
    pub fn decrypt_block(&self, block: &mut [u8]) -> Result<()> {
        if block.len() != self.block_size() {
            return Err(Error::invalid(
                "block",
                "length differs from the block size",
            ));
        }
        self.decrypt_ecb(block)
    }
}

impl SecretKey {
    /// A prepared cipher (key schedule) for this key.
    pub fn cipher(&self) -> BlockCipher {
        BlockCipher::new(self)
    }
}
