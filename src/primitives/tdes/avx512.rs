//! The AVX-512 backend: 512 lanes in a `__m512i` (eight independent 64-lane matrices, one
//! per 64-bit word), the same circuits and rounds as the portable core. The compiler fuses
//! chains of two logic operations of the circuits into `vpternlogq`.
//!
//! The only `unsafe` is calling AVX-512F intrinsics. [`tdes`] checks that the CPU has
//! AVX-512F before it enters the `#[target_feature(enable = "avx512f")]` function, and an
//! [`Avx512`] value exists only inside that function, so every intrinsic below runs on a
//! CPU that has the instructions.

use core::arch::x86_64::{
    __m512i, _mm512_and_si512, _mm512_andnot_si512, _mm512_loadu_si512, _mm512_or_si512,
    _mm512_set1_epi64, _mm512_slli_epi64, _mm512_srli_epi64, _mm512_storeu_si512, _mm512_xor_si512,
};
use core::ops::{BitAnd, BitOr, BitXor, Not};

use super::bitslice::{DesRoundKeys, Lanes, tdes as tdes_generic};

/// Eight 64-bit words of lanes.
#[derive(Clone, Copy)]
pub(super) struct Avx512(__m512i);

impl BitAnd for Avx512 {
    type Output = Self;
    #[inline(always)]
    fn bitand(self, o: Self) -> Self {
        // SAFETY: an Avx512 value exists only on a CPU with AVX-512F (see the module doc).
        Avx512(unsafe { _mm512_and_si512(self.0, o.0) })
    }
}

impl BitOr for Avx512 {
    type Output = Self;
    #[inline(always)]
    fn bitor(self, o: Self) -> Self {
        // SAFETY: an Avx512 value exists only on a CPU with AVX-512F (see the module doc).
        Avx512(unsafe { _mm512_or_si512(self.0, o.0) })
    }
}

impl BitXor for Avx512 {
    type Output = Self;
    #[inline(always)]
    fn bitxor(self, o: Self) -> Self {
        // SAFETY: an Avx512 value exists only on a CPU with AVX-512F (see the module doc).
        Avx512(unsafe { _mm512_xor_si512(self.0, o.0) })
    }
}

impl Not for Avx512 {
    type Output = Self;
    #[inline(always)]
    fn not(self) -> Self {
        self ^ Avx512::splat(u64::MAX)
    }
}

impl Lanes for Avx512 {
    const QWORDS: usize = 8;

    #[inline(always)]
    fn andnot(self, other: Self) -> Self {
        // SAFETY: an Avx512 value exists only on a CPU with AVX-512F (see the module doc).
        // _mm512_andnot_si512(a, b) is !a & b.
        Avx512(unsafe { _mm512_andnot_si512(other.0, self.0) })
    }

    #[inline(always)]
    fn splat(x: u64) -> Self {
        // SAFETY: only called inside `tdes_avx512`, after AVX-512F was detected.
        Avx512(unsafe { _mm512_set1_epi64(x as i64) })
    }

    #[inline(always)]
    fn shr<const N: u32>(self) -> Self {
        // SAFETY: an Avx512 value exists only on a CPU with AVX-512F (see the module doc).
        Avx512(unsafe { _mm512_srli_epi64::<N>(self.0) })
    }

    #[inline(always)]
    fn shl<const N: u32>(self) -> Self {
        // SAFETY: as for `shr`.
        Avx512(unsafe { _mm512_slli_epi64::<N>(self.0) })
    }

    #[inline(always)]
    fn load(src: &[u64]) -> Self {
        let src = &src[..8];
        // SAFETY: AVX-512F is present (only called inside `tdes_avx512`); `src` is eight
        // readable u64 (64 bytes, checked above); loadu has no alignment need.
        Avx512(unsafe { _mm512_loadu_si512(src.as_ptr().cast::<__m512i>()) })
    }

    #[inline(always)]
    fn store(self, dst: &mut [u64]) {
        let dst = &mut dst[..8];
        // SAFETY: AVX-512F is present (an Avx512 value exists); `dst` is eight writable
        // u64 (checked above); storeu has no alignment need.
        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast::<__m512i>(), self.0) }
    }
}

/// The pass compiled for AVX-512F.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn tdes_avx512(blocks: &mut [u64], ks: &[DesRoundKeys; 3], decrypt: bool) {
    tdes_generic::<Avx512>(blocks, ks, decrypt);
}

/// One pass of 512 blocks. Panics if the CPU lacks AVX-512F (the caller chose a backend
/// that [`super::TdesBackend::is_available`] confirmed).
pub(super) fn tdes(blocks: &mut [u64], ks: &[DesRoundKeys; 3], decrypt: bool) {
    assert!(
        std::arch::is_x86_feature_detected!("avx512f"),
        "TDES AVX-512 backend on a CPU without AVX-512F"
    );
    // SAFETY: AVX-512F was detected just above.
    unsafe { tdes_avx512(blocks, ks, decrypt) }
}
