//! The AVX2 backend: 256 lanes in a `__m256i` (four independent 64-lane matrices, one per
//! 64-bit word), the same circuits and rounds as the portable core.
//!
//! The only `unsafe` is calling AVX2 intrinsics. [`tdes`] checks that the CPU has AVX2
//! before it enters the `#[target_feature(enable = "avx2")]` function, and an [`Avx2`]
//! value exists only inside that function, so every intrinsic below runs on a CPU that
//! has the instructions.

use core::arch::x86_64::{
    __m256i, _mm_cvtsi64_si128, _mm256_and_si256, _mm256_andnot_si256, _mm256_loadu_si256,
    _mm256_or_si256, _mm256_set1_epi64x, _mm256_sll_epi64, _mm256_srl_epi64, _mm256_storeu_si256,
    _mm256_xor_si256,
};
use core::ops::{BitAnd, BitOr, BitXor, Not};

use super::bitslice::{DesRoundKeys, Lanes, tdes as tdes_generic};

/// Four 64-bit words of lanes.
#[derive(Clone, Copy)]
pub(super) struct Avx2(__m256i);

impl BitAnd for Avx2 {
    type Output = Self;
    #[inline(always)]
    fn bitand(self, o: Self) -> Self {
        // SAFETY: an Avx2 value exists only on a CPU with AVX2 (see the module doc).
        Avx2(unsafe { _mm256_and_si256(self.0, o.0) })
    }
}

impl BitOr for Avx2 {
    type Output = Self;
    #[inline(always)]
    fn bitor(self, o: Self) -> Self {
        // SAFETY: an Avx2 value exists only on a CPU with AVX2 (see the module doc).
        Avx2(unsafe { _mm256_or_si256(self.0, o.0) })
    }
}

impl BitXor for Avx2 {
    type Output = Self;
    #[inline(always)]
    fn bitxor(self, o: Self) -> Self {
        // SAFETY: an Avx2 value exists only on a CPU with AVX2 (see the module doc).
        Avx2(unsafe { _mm256_xor_si256(self.0, o.0) })
    }
}

impl Not for Avx2 {
    type Output = Self;
    #[inline(always)]
    fn not(self) -> Self {
        self ^ Avx2::splat(u64::MAX)
    }
}

impl Lanes for Avx2 {
    const QWORDS: usize = 4;

    #[inline(always)]
    fn andnot(self, other: Self) -> Self {
        // SAFETY: an Avx2 value exists only on a CPU with AVX2 (see the module doc).
        // _mm256_andnot_si256(a, b) is !a & b.
        Avx2(unsafe { _mm256_andnot_si256(other.0, self.0) })
    }

    #[inline(always)]
    fn splat(x: u64) -> Self {
        // SAFETY: only called inside `tdes_avx2`, after AVX2 was detected.
        Avx2(unsafe { _mm256_set1_epi64x(x as i64) })
    }

    #[inline(always)]
    fn shr<const N: u32>(self) -> Self {
        // SAFETY: an Avx2 value exists only on a CPU with AVX2 (see the module doc). The
        // count is a constant; the compiler turns this into an immediate shift.
        Avx2(unsafe { _mm256_srl_epi64(self.0, _mm_cvtsi64_si128(i64::from(N))) })
    }

    #[inline(always)]
    fn shl<const N: u32>(self) -> Self {
        // SAFETY: as for `shr`.
        Avx2(unsafe { _mm256_sll_epi64(self.0, _mm_cvtsi64_si128(i64::from(N))) })
    }

    #[inline(always)]
    fn load(src: &[u64]) -> Self {
        let src = &src[..4];
        // SAFETY: AVX2 is present (only called inside `tdes_avx2`); `src` is four readable
        // u64 (32 bytes, the slice bound above is checked); loadu has no alignment need.
        Avx2(unsafe { _mm256_loadu_si256(src.as_ptr().cast::<__m256i>()) })
    }

    #[inline(always)]
    fn store(self, dst: &mut [u64]) {
        let dst = &mut dst[..4];
        // SAFETY: AVX2 is present (an Avx2 value exists); `dst` is four writable u64
        // (checked above); storeu has no alignment need.
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast::<__m256i>(), self.0) }
    }
}

/// The pass compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
unsafe fn tdes_avx2(blocks: &mut [u64], ks: &[DesRoundKeys; 3], decrypt: bool) {
    tdes_generic::<Avx2>(blocks, ks, decrypt);
}

/// One pass of 256 blocks. Panics if the CPU lacks AVX2 (the caller chose a backend that
/// [`super::TdesBackend::is_available`] confirmed).
pub(super) fn tdes(blocks: &mut [u64], ks: &[DesRoundKeys; 3], decrypt: bool) {
    assert!(
        std::arch::is_x86_feature_detected!("avx2"),
        "TDES AVX2 backend on a CPU without AVX2"
    );
    // SAFETY: AVX2 was detected just above.
    unsafe { tdes_avx2(blocks, ks, decrypt) }
}
