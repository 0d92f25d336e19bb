//! Triple DES on many blocks at once, bitsliced: constant time and faster than a table
//! implementation for batches.
//!
//! A bitsliced DES (Biham, FSE 1997) treats a machine word as many one-bit processors: the
//! blocks are transposed so that one word holds the same bit of 64 blocks (256 with AVX2,
//! 512 with AVX-512), and the S-boxes are computed by circuits of AND/OR/XOR/NOT gates
//! (`tdes/sbox.rs`, generated from the FIPS 46-3 tables by `scripts/gen-des-sboxes.py`).
//! E, P and the L/R swap are only a choice of words; IP and FP are folded into the
//! transposition; the key schedule is a selection of key bits, expanded once per key into
//! lane masks. There is no secret-dependent table lookup or branch anywhere: the
//! instructions executed depend only on the number of blocks, which is public.
//!
//! What runs in parallel: every block of an ECB batch (KCVs, PIN blocks), every block of a
//! CBC decryption (each needs only its own and the previous ciphertext block), and for CBC
//! encryption, which is sequential within a message, many independent messages side by
//! side, one per lane ([`Tdes::encrypt_cbc_chains`]).
//!
//! Backends ([`TdesBackend`]): the portable one (64 lanes in a `u64`, safe Rust) is always
//! built; AVX2 and AVX-512 are chosen at run time where the CPU has them. The environment
//! variable `PMP_TDES_BACKEND` (`portable`, `avx2`, `avx512`) forces one for the whole
//! process (tests and CI run the suite once per backend); [`Tdes::with_backend`] forces one
//! for a key.
//!
//! A bitsliced pass costs the same whatever the number of occupied lanes, so a handful of
//! blocks (one KCV, one short CBC message) is faster through the RustCrypto `des` crate's
//! single-block code; [`Tdes`] takes that path below [`Tdes::SMALL_BATCH`] blocks (or chains)
//! unless told otherwise ([`Tdes::always_bitsliced`]). The `des` crate is table-based;
//! its timing may depend on the data.
//!
//! ```
//! use pmp_core::{CbcChain, Tdes};
//! // NIST SP 800-67 Rev.1 B.1 (3-key TDES, ECB).
//! let key = hex::decode("0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123").unwrap();
//! let tdes = Tdes::new(&key).unwrap().always_bitsliced();
//! let mut buf = *b"The qufck brown fox jump";
//! tdes.encrypt_ecb(&mut buf).unwrap();
//! assert_eq!(hex::encode_upper(buf), "A826FD8CE53B855FCCE21C8112256FE668D5C05DD9B6B900");
//!
//! // Two independent CBC messages encrypted side by side.
//! let (mut a, mut b) = ([1u8; 16], [2u8; 8]);
//! let mut chains = [
//!     CbcChain { iv: &[0; 8], data: &mut a },
//!     CbcChain { iv: &[9; 8], data: &mut b },
//! ];
//! tdes.encrypt_cbc_chains(&mut chains).unwrap();
//! ```

mod bitslice;
mod sbox;
mod tables;
mod transpose;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512;

use core::fmt;
use std::sync::OnceLock;

use cipher::array::Array;
use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::{TdesEde2, TdesEde3};
use zeroize::{Zeroize, Zeroizing};

use self::bitslice::DesRoundKeys;
use self::tables::ROUND_KEY_FROM;
use crate::{Error, Result};

/// The widest lane count of any backend: the largest number of blocks in one pass.
const MAX_LANES: usize = 512;

/// Which implementation of the bitsliced core runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TdesBackend {
    /// 64 lanes in a `u64`, portable safe Rust. Always available.
    Portable,
    /// 256 lanes in an AVX2 register (x86-64 with AVX2).
    Avx2,
    /// 512 lanes in an AVX-512 register (x86-64 with AVX-512F).
    Avx512,
}

impl TdesBackend {
    /// The environment variable that forces a backend for the process: `portable`,
    /// `avx2` or `avx512`.
    pub const ENV: &str = "PMP_TDES_BACKEND";

    /// Every backend, narrowest first.
    pub const ALL: [TdesBackend; 3] = [
        TdesBackend::Portable,
        TdesBackend::Avx2,
        TdesBackend::Avx512,
    ];

    /// Whether this machine can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            TdesBackend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            TdesBackend::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            TdesBackend::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The number of blocks one pass processes.
    pub const fn lanes(self) -> usize {
        match self {
            TdesBackend::Portable => 64,
            TdesBackend::Avx2 => 256,
            TdesBackend::Avx512 => 512,
        }
    }

    /// The backend's name as [`TdesBackend::ENV`] takes it.
    pub const fn name(self) -> &'static str {
        match self {
            TdesBackend::Portable => "portable",
            TdesBackend::Avx2 => "avx2",
            TdesBackend::Avx512 => "avx512",
        }
    }

    /// The widest backend this machine can run.
    pub fn best() -> Self {
        *Self::ALL
            .iter()
            .rev()
            .find(|b| b.is_available())
            .unwrap_or(&TdesBackend::Portable)
    }

    /// The backend new [`Tdes`] keys use: the one [`TdesBackend::ENV`] names if it is set and
    /// available here, else [`TdesBackend::best`]. Read once per process.
    pub fn active() -> Self {
        static ACTIVE: OnceLock<TdesBackend> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            std::env::var(Self::ENV)
                .ok()
                .and_then(|v| v.parse::<TdesBackend>().ok())
                .filter(|b| b.is_available())
                .unwrap_or_else(TdesBackend::best)
        })
    }
}

impl fmt::Display for TdesBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for TdesBackend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "u64" => Ok(TdesBackend::Portable),
            "avx2" => Ok(TdesBackend::Avx2),
            "avx512" | "avx-512" => Ok(TdesBackend::Avx512),
            _ => Err(Error::invalid(
                "TDES backend",
                "expected portable, avx2 or avx512",
            )),
        }
    }
}

/// One CBC message of a batch: its IV (one 8-byte block for TDES) and its data, a whole
/// number of blocks, encrypted or decrypted in place.
pub struct CbcChain<'a> {
    /// The initialization vector.
    pub iv: &'a [u8],
    /// The data, replaced by its encryption or decryption.
    pub data: &'a mut [u8],
}

impl fmt::Debug for CbcChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The data may be clear text: only its length is shown.
        f.debug_struct("CbcChain")
            .field("data_len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// The `des` crate's cipher, for a few blocks.
#[derive(Clone)]
enum Single {
    Two(TdesEde2),
    Three(TdesEde3),
}

/// The round keys of K1, K2, K3 as lane masks, wiped on drop.
#[derive(Clone)]
struct SlicedKeys(Box<[DesRoundKeys; 3]>);

impl Drop for SlicedKeys {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A TDES key prepared for batches: the `des` crate's schedule for a few blocks and, built
/// on first use, the bitsliced round keys. `Debug` shows no key material; everything is
/// wiped on drop.
#[derive(Clone)]
pub struct Tdes {
    single: Single,
    /// K1 || K2 || K3 (K3 = K1 for a 2-key TDES key), kept to expand the round keys lazily.
    key: Zeroizing<[u8; 24]>,
    sliced: OnceLock<SlicedKeys>,
    backend: TdesBackend,
    small_batch: usize,
}

impl fmt::Debug for Tdes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tdes")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A block as a big-endian word (DES bit 1 is bit 63).
#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

fn check_len(what: &'static str, len: usize) -> Result<()> {
    if len.is_multiple_of(8) {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            format!("{len} bytes is not a multiple of the 8-byte TDES block"),
        ))
    }
}

fn check_chains(chains: &[CbcChain<'_>]) -> Result<()> {
    for (i, c) in chains.iter().enumerate() {
        if c.iv.len() != 8 {
            return Err(Error::invalid(
                "IV",
                format!("chain {i}: {} bytes, TDES needs 8", c.iv.len()),
            ));
        }
        if !c.data.len().is_multiple_of(8) {
            return Err(Error::invalid(
                "data length",
                format!(
                    "chain {i}: {} bytes is not a multiple of the 8-byte TDES block",
                    c.data.len()
                ),
            ));
        }
    }
    Ok(())
}

impl Tdes {
    /// Below this many blocks (ECB, CBC decryption) or chains (CBC encryption) a key uses
    /// the `des` crate's single-block code, unless [`Tdes::always_bitsliced`]: one
    /// bitsliced pass costs about as much as this many single blocks (measured with
    /// `benches/tdes.rs`: 7 to 10 on the portable and AVX2 backends).
    pub const SMALL_BATCH: usize = 8;

    /// Prepares a 2-key (16 bytes, K1 || K2) or 3-key (24 bytes) TDES key. Parity and weak
    /// keys are the caller's business (see [`check_key_hygiene`](crate::check_key_hygiene)).
    pub fn new(key: &[u8]) -> Result<Self> {
        let mut k = Zeroizing::new([0u8; 24]);
        let single = match key.len() {
            16 => {
                k[..16].copy_from_slice(key);
                k[16..].copy_from_slice(&key[..8]);
                Single::Two(TdesEde2::new_from_slice(key).map_err(|_| Error::Crypto)?)
            }
            24 => {
                k.copy_from_slice(key);
                Single::Three(TdesEde3::new_from_slice(key).map_err(|_| Error::Crypto)?)
            }
            len => {
                return Err(Error::KeyLength {
                    algorithm: "TDES",
                    len,
                    allowed: "16 or 24",
                });
            }
        };
        Ok(Tdes {
            single,
            key: k,
            sliced: OnceLock::new(),
            backend: TdesBackend::active(),
            small_batch: Self::SMALL_BATCH,
        })
    }

    /// The same key on another backend; an error if this machine cannot run it.
    pub fn with_backend(mut self, backend: TdesBackend) -> Result<Self> {
        if !backend.is_available() {
            return Err(Error::Unsupported(format!(
                "TDES backend {backend}: this CPU lacks the instructions"
            )));
        }
        self.backend = backend;
        Ok(self)
    }

    /// The same key, bitsliced for every batch size (constant time even for one block, at
    /// the cost of a full pass per block position).
    pub fn always_bitsliced(mut self) -> Self {
        self.small_batch = 0;
        self
    }

    /// The backend this key runs on.
    pub fn backend(&self) -> TdesBackend {
        self.backend
    }

    /// The number of blocks one bitsliced pass processes.
    pub fn lanes(&self) -> usize {
        self.backend.lanes()
    }

    fn round_keys(&self) -> &[DesRoundKeys; 3] {
        &self
            .sliced
            .get_or_init(|| {
                let mut ks = SlicedKeys(Box::new([[[0u64; 48]; 16]; 3]));
                for (d, rk) in ks.0.iter_mut().enumerate() {
                    let k = word(&self.key[8 * d..8 * d + 8]);
                    for (r, round) in rk.iter_mut().enumerate() {
                        for (j, m) in round.iter_mut().enumerate() {
                            let bit = (k >> (63 - ROUND_KEY_FROM[r][j])) & 1;
                            *m = 0u64.wrapping_sub(bit);
                        }
                    }
                }
                ks
            })
            .0
    }

    /// One bitsliced pass over `blocks` (at most `MAX_LANES`); a short batch is padded with
    /// zero blocks whose results are dropped.
    fn pass(&self, blocks: &mut [u64], decrypt: bool) {
        let ks = self.round_keys();
        let lanes = self.backend.lanes();
        debug_assert!(blocks.len() <= lanes);
        if blocks.len() == lanes {
            run(self.backend, blocks, ks, decrypt);
        } else {
            let mut buf = [0u64; MAX_LANES];
            buf[..blocks.len()].copy_from_slice(blocks);
            run(self.backend, &mut buf[..lanes], ks, decrypt);
            blocks.copy_from_slice(&buf[..blocks.len()]);
            buf.zeroize();
        }
    }

    /// Whole blocks through the `des` crate, one at a time.
    fn single(&self, buf: &mut [u8], decrypt: bool) {
        let (blocks, rest) = Array::slice_as_chunks_mut(buf);
        debug_assert!(rest.is_empty());
        match (&self.single, decrypt) {
            (Single::Two(c), false) => c.encrypt_blocks(blocks),
            (Single::Two(c), true) => c.decrypt_blocks(blocks),
            (Single::Three(c), false) => c.encrypt_blocks(blocks),
            (Single::Three(c), true) => c.decrypt_blocks(blocks),
        }
    }

    fn ecb(&self, buf: &mut [u8], decrypt: bool) -> Result<()> {
        check_len("data length", buf.len())?;
        if buf.len() / 8 < self.small_batch {
            self.single(buf, decrypt);
            return Ok(());
        }
        let lanes = self.backend.lanes();
        let mut w = [0u64; MAX_LANES];
        for part in buf.chunks_mut(8 * lanes) {
            let n = part.len() / 8;
            for (x, b) in w.iter_mut().zip(part.chunks_exact(8)) {
                *x = word(b);
            }
            self.pass(&mut w[..n], decrypt);
            for (x, b) in w.iter().zip(part.chunks_exact_mut(8)) {
                b.copy_from_slice(&x.to_be_bytes());
            }
        }
        w.zeroize();
        Ok(())
    }

    /// Encrypts whole blocks in place in ECB mode.
    pub fn encrypt_ecb(&self, buf: &mut [u8]) -> Result<()> {
        self.ecb(buf, false)
    }

    /// Decrypts whole blocks in place in ECB mode.
    pub fn decrypt_ecb(&self, buf: &mut [u8]) -> Result<()> {
        self.ecb(buf, true)
    }

    /// Encrypts whole blocks in place in CBC mode. One message is sequential: this is the
    /// `des` crate's single-block code unless [`Tdes::always_bitsliced`]; for many messages
    /// use [`Tdes::encrypt_cbc_chains`].
    pub fn encrypt_cbc(&self, iv: &[u8], buf: &mut [u8]) -> Result<()> {
        self.encrypt_cbc_chains(&mut [CbcChain { iv, data: buf }])
    }

    /// Decrypts whole blocks in place in CBC mode; all blocks are decrypted side by side.
    pub fn decrypt_cbc(&self, iv: &[u8], buf: &mut [u8]) -> Result<()> {
        self.decrypt_cbc_chains(&mut [CbcChain { iv, data: buf }])
    }

    /// Decrypts many CBC messages in place. Every block of every message is independent
    /// (P_i = D(C_i) ⊕ C_{i−1}), so they fill the lanes together. All lengths and IVs are
    /// checked before anything is decrypted.
    pub fn decrypt_cbc_chains(&self, chains: &mut [CbcChain<'_>]) -> Result<()> {
        check_chains(chains)?;
        let total: usize = chains.iter().map(|c| c.data.len() / 8).sum();
        if total < self.small_batch {
            for c in chains.iter_mut() {
                let mut prev = word(c.iv);
                for b in c.data.chunks_exact_mut(8) {
                    let ct = word(b);
                    self.single(b, true);
                    b.copy_from_slice(&(word(b) ^ prev).to_be_bytes());
                    prev = ct;
                }
            }
            return Ok(());
        }
        let lanes = self.backend.lanes();
        // For each block in the pass: the ciphertext, and the block it is XORed with.
        let mut ct = [0u64; MAX_LANES];
        let mut prev = [0u64; MAX_LANES];
        // Blocks are taken in order (chain, offset); `start` is where the pass began. The
        // block before (chain, offset > 0) is the one taken just before it, whose
        // ciphertext is `last` (it may already be overwritten in the buffer).
        let (mut chain, mut off) = (0usize, 0usize);
        let mut last = 0u64;
        loop {
            let start = (chain, off);
            let mut n = 0;
            while n < lanes && chain < chains.len() {
                let c = &chains[chain];
                if off == c.data.len() {
                    chain += 1;
                    off = 0;
                    continue;
                }
                ct[n] = word(&c.data[off..off + 8]);
                prev[n] = if off == 0 { word(c.iv) } else { last };
                last = ct[n];
                n += 1;
                off += 8;
            }
            if n == 0 {
                break;
            }
            self.pass(&mut ct[..n], true);
            // Write back in the same order; each block's predecessor was read above.
            let (mut ch, mut o) = start;
            for i in 0..n {
                while o == chains[ch].data.len() {
                    ch += 1;
                    o = 0;
                }
                chains[ch].data[o..o + 8].copy_from_slice(&(ct[i] ^ prev[i]).to_be_bytes());
                o += 8;
            }
        }
        ct.zeroize();
        prev.zeroize();
        last.zeroize();
        Ok(())
    }

    /// Encrypts many CBC messages in place, one message per lane: each pass encrypts the
    /// next block of up to [`Tdes::lanes`] messages, and a lane whose message is done takes
    /// the next one (longest messages first, so that the lanes run out together). When
    /// fewer than [`Tdes::SMALL_BATCH`] messages are left, they finish one block at a time.
    /// All lengths and IVs are checked before anything is encrypted.
    pub fn encrypt_cbc_chains(&self, chains: &mut [CbcChain<'_>]) -> Result<()> {
        check_chains(chains)?;
        let single_chain = |c: &mut CbcChain<'_>, from: usize, mut prev: u64| {
            for b in c.data[from..].chunks_exact_mut(8) {
                b.copy_from_slice(&(word(b) ^ prev).to_be_bytes());
                self.single(b, false);
                prev = word(b);
            }
        };
        if chains.len() < self.small_batch {
            for c in chains.iter_mut() {
                let iv = word(c.iv);
                single_chain(c, 0, iv);
            }
            return Ok(());
        }
        // The order depends on the lengths only, which are public.
        let mut order: Vec<usize> = (0..chains.len()).collect();
        order.sort_by_key(|&i| core::cmp::Reverse(chains[i].data.len()));
        let lanes = self.backend.lanes();
        // Per lane: the chain it works on (usize::MAX when idle), the offset of its next
        // block, and the previous ciphertext block (the IV at first).
        let mut lane_chain = [usize::MAX; MAX_LANES];
        let mut lane_off = [0usize; MAX_LANES];
        let mut lane_prev = [0u64; MAX_LANES];
        let mut x = [0u64; MAX_LANES];
        let mut next = 0usize;
        loop {
            let (mut top, mut active) = (0, 0);
            for l in 0..lanes {
                // Give an idle or finished lane the next chain that has data.
                while lane_chain[l] == usize::MAX || lane_off[l] == chains[lane_chain[l]].data.len()
                {
                    if next == order.len() {
                        lane_chain[l] = usize::MAX;
                        break;
                    }
                    lane_chain[l] = order[next];
                    lane_off[l] = 0;
                    lane_prev[l] = word(chains[order[next]].iv);
                    next += 1;
                }
                if lane_chain[l] != usize::MAX {
                    top = l + 1;
                    active += 1;
                }
            }
            if active == 0 {
                break;
            }
            if active < self.small_batch && next == order.len() {
                // The last few: a pass would be mostly empty.
                for l in 0..top {
                    if lane_chain[l] != usize::MAX {
                        single_chain(&mut chains[lane_chain[l]], lane_off[l], lane_prev[l]);
                    }
                }
                break;
            }
            for l in 0..top {
                x[l] = if lane_chain[l] == usize::MAX {
                    0
                } else {
                    let o = lane_off[l];
                    word(&chains[lane_chain[l]].data[o..o + 8]) ^ lane_prev[l]
                };
            }
            self.pass(&mut x[..top], false);
            for l in 0..top {
                if lane_chain[l] != usize::MAX {
                    let o = lane_off[l];
                    chains[lane_chain[l]].data[o..o + 8].copy_from_slice(&x[l].to_be_bytes());
                    lane_prev[l] = x[l];
                    lane_off[l] = o + 8;
                }
            }
        }
        x.zeroize();
        lane_prev.zeroize();
        Ok(())
    }
}

/// One pass of `backend.lanes()` blocks.
fn run(backend: TdesBackend, blocks: &mut [u64], ks: &[DesRoundKeys; 3], decrypt: bool) {
    match backend {
        #[cfg(target_arch = "x86_64")]
        TdesBackend::Avx2 => avx2::tdes(blocks, ks, decrypt),
        #[cfg(target_arch = "x86_64")]
        TdesBackend::Avx512 => avx512::tdes(blocks, ks, decrypt),
        _ => portable(blocks, ks, decrypt),
    }
}

/// The portable pass: 64 blocks in `u64` lanes.
#[inline(never)]
fn portable(blocks: &mut [u64], ks: &[DesRoundKeys; 3], decrypt: bool) {
    bitslice::tdes::<u64>(blocks, ks, decrypt);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `tests/data/des-sboxes.txt` (FIPS 46-3): `[sbox][row][column]`.
    fn fips_sboxes() -> [[[u8; 16]; 4]; 8] {
        let text = include_str!("../../tests/data/des-sboxes.txt");
        let mut t = [[[0u8; 16]; 4]; 8];
        let mut s = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(v) = line.strip_prefix("SBox = ") {
                s = v.parse::<usize>().unwrap() - 1;
            } else if let Some((k, v)) = line.split_once(" = ") {
                let r: usize = k.strip_prefix("Row").unwrap().parse().unwrap();
                let vals: Vec<u8> = v.split(' ').map(|x| x.parse().unwrap()).collect();
                t[s][r].copy_from_slice(&vals);
            }
        }
        t
    }

    #[test]
    fn sbox_circuits_match_fips_46_3_on_every_input() {
        let table = fips_sboxes();
        // Lane x of input bit k holds bit k of the six-bit input x (bit 1 most significant):
        // one 64-lane call covers all 64 inputs.
        let x: [u64; 6] = core::array::from_fn(|k| {
            (0..64u64).fold(0, |acc, x| acc | (((x >> (5 - k)) & 1) << x))
        });
        let circuits: [fn([u64; 6]) -> [u64; 4]; 8] = [
            sbox::s1,
            sbox::s2,
            sbox::s3,
            sbox::s4,
            sbox::s5,
            sbox::s6,
            sbox::s7,
            sbox::s8,
        ];
        for (s, f) in circuits.iter().enumerate() {
            let y = f(x);
            for input in 0..64usize {
                let row = ((input >> 4) & 2) | (input & 1);
                let col = (input >> 1) & 0xF;
                let want = table[s][row][col];
                let got = (0..4).fold(0u8, |acc, o| acc << 1 | ((y[o] >> input) & 1) as u8);
                assert_eq!(got, want, "S{} input {input:06b}", s + 1);
            }
        }
    }

    #[test]
    fn backend_names_round_trip() {
        for b in TdesBackend::ALL {
            assert_eq!(b.name().parse::<TdesBackend>().unwrap(), b);
        }
        assert!("sse".parse::<TdesBackend>().is_err());
        assert!(TdesBackend::Portable.is_available());
    }
}
