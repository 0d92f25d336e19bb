//! The bitsliced DES rounds, generic over the word that holds one bit of many blocks.
//!
//! A [`Lanes`] value holds one bit position of `64 × QWORDS` blocks side by side (bit `j` of
//! qword `k` belongs to one block). A block is 64 such values after the transposition; a
//! DES round is then fixed data movement (E, P, the L/R swap: array indices) and the
//! S-box circuits of [`super::sbox`], built of AND, OR, XOR, AND-NOT and NOT only. Nothing
//! here branches on or indexes by a secret: the instruction stream depends only on the
//! number of blocks, which is public.

use core::ops::{BitAnd, BitOr, BitXor, Not};

use super::sbox;
use super::tables::{E_FROM, FP_FROM, IP_FROM, P_TO};
use super::transpose::transpose64;

/// One bit of `64 × QWORDS` blocks: the operations the circuits and the transposition use.
pub(crate) trait Lanes:
    Copy + BitAnd<Output = Self> + BitOr<Output = Self> + BitXor<Output = Self> + Not<Output = Self>
{
    /// The number of 64-bit words in one value; the lane count is 64 times this.
    const QWORDS: usize;
    /// `self & !other`.
    fn andnot(self, other: Self) -> Self;
    /// Every 64-bit word set to `x`.
    fn splat(x: u64) -> Self;
    /// Every 64-bit word shifted right by `N`.
    fn shr<const N: u32>(self) -> Self;
    /// Every 64-bit word shifted left by `N`.
    fn shl<const N: u32>(self) -> Self;
    /// Loads `QWORDS` words.
    fn load(src: &[u64]) -> Self;
    /// Stores `QWORDS` words.
    fn store(self, dst: &mut [u64]);
}

impl Lanes for u64 {
    const QWORDS: usize = 1;
    #[inline(always)]
    fn andnot(self, other: Self) -> Self {
        self & !other
    }
    #[inline(always)]
    fn splat(x: u64) -> Self {
        x
    }
    #[inline(always)]
    fn shr<const N: u32>(self) -> Self {
        self >> N
    }
    #[inline(always)]
    fn shl<const N: u32>(self) -> Self {
        self << N
    }
    #[inline(always)]
    fn load(src: &[u64]) -> Self {
        src[0]
    }
    #[inline(always)]
    fn store(self, dst: &mut [u64]) {
        dst[0] = self;
    }
}

/// One DES key's round keys as lane masks: `[round][bit]` is all ones or all zeros.
pub(crate) type DesRoundKeys = [[u64; 48]; 16];

/// One round: `l ^= f(r, k)`, with E folded into the S-box input selection and P into
/// the output positions.
///
/// Always inlined in optimized builds: the SIMD backends depend on it, since only code
/// inlined into their `#[target_feature]` function is compiled for the wider registers.
/// Unoptimized builds keep it out of line, or the caller's stack frame (every temporary
/// of 16 rounds × 3 passes in its own slot) outgrows a test thread's stack.
#[cfg_attr(not(debug_assertions), inline(always))]
#[cfg_attr(debug_assertions, inline(never))]
fn round<L: Lanes>(l: &mut [L; 32], r: &[L; 32], k: &[u64; 48]) {
    macro_rules! sbox {
        ($n:literal, $f:path) => {{
            let b = 6 * $n;
            let x = [
                r[E_FROM[b]] ^ L::splat(k[b]),
                r[E_FROM[b + 1]] ^ L::splat(k[b + 1]),
                r[E_FROM[b + 2]] ^ L::splat(k[b + 2]),
                r[E_FROM[b + 3]] ^ L::splat(k[b + 3]),
                r[E_FROM[b + 4]] ^ L::splat(k[b + 4]),
                r[E_FROM[b + 5]] ^ L::splat(k[b + 5]),
            ];
            let y = $f(x);
            let q = 4 * $n;
            l[P_TO[q]] = l[P_TO[q]] ^ y[0];
            l[P_TO[q + 1]] = l[P_TO[q + 1]] ^ y[1];
            l[P_TO[q + 2]] = l[P_TO[q + 2]] ^ y[2];
            l[P_TO[q + 3]] = l[P_TO[q + 3]] ^ y[3];
        }};
    }
    sbox!(0, sbox::s1);
    sbox!(1, sbox::s2);
    sbox!(2, sbox::s3);
    sbox!(3, sbox::s4);
    sbox!(4, sbox::s5);
    sbox!(5, sbox::s6);
    sbox!(6, sbox::s7);
    sbox!(7, sbox::s8);
}

/// Sixteen rounds without IP/FP: on return `l`, `r` hold L16, R16. `decrypt` takes the
/// round keys in reverse order.
#[inline(always)]
fn des16<L: Lanes>(l: &mut [L; 32], r: &mut [L; 32], ks: &DesRoundKeys, decrypt: bool) {
    for i in 0..8 {
        let (a, b) = if decrypt {
            (15 - 2 * i, 14 - 2 * i)
        } else {
            (2 * i, 2 * i + 1)
        };
        round(l, r, &ks[a]);
        round(r, l, &ks[b]);
    }
}

/// TDES (EDE) on `64 × L::QWORDS` blocks in place. `blocks[i]` is a block read big-endian
/// (DES bit 1 is bit 63). `ks` are the round keys of K1, K2, K3. Encryption is
/// E(K3, D(K2, E(K1, x))), decryption its inverse.
#[inline(always)]
pub(crate) fn tdes<L: Lanes>(blocks: &mut [u64], ks: &[DesRoundKeys; 3], decrypt: bool) {
    let q = L::QWORDS;
    debug_assert_eq!(blocks.len(), 64 * q);
    let mut s: [L; 64] = core::array::from_fn(|i| L::load(&blocks[q * i..q * i + q]));
    // After the transposition s[p] holds DES bit p + 1 of every block.
    transpose64(&mut s);
    let mut l: [L; 32] = core::array::from_fn(|j| s[IP_FROM[j]]);
    let mut r: [L; 32] = core::array::from_fn(|j| s[IP_FROM[32 + j]]);
    // Between the three DES passes FP and IP cancel; the halves swap (the pre-output of
    // one pass is R16 || L16).
    if decrypt {
        des16(&mut l, &mut r, &ks[2], true);
        des16(&mut r, &mut l, &ks[1], false);
        des16(&mut l, &mut r, &ks[0], true);
    } else {
        des16(&mut l, &mut r, &ks[0], false);
        des16(&mut r, &mut l, &ks[1], true);
        des16(&mut l, &mut r, &ks[2], false);
    }
    for (o, x) in s.iter_mut().enumerate() {
        let p = FP_FROM[o];
        *x = if p < 32 { r[p] } else { l[p - 32] };
    }
    transpose64(&mut s);
    for (i, x) in s.iter().enumerate() {
        x.store(&mut blocks[q * i..q * i + q]);
    }
    // The state held clear or key-dependent data: overwrite it before it goes out of scope.
    let zero = L::splat(0);
    s = [zero; 64];
    l = [zero; 32];
    r = [zero; 32];
    core::hint::black_box((&s, &l, &r));
}
