//! The 64 × 64 bit-matrix transposition that turns 64 blocks into 64 bit slices and back.
//!
//! Six stages of delta swaps (exchange the off-diagonal sub-blocks of size 32, 16, ..., 1).
//! Each 64-bit word of a wider [`Lanes`] value is one row of its own matrix, so a value of
//! `QWORDS` words transposes `QWORDS` matrices at once. With row `i` = word `i` and bit 63
//! as column 0, the result has `out[p]` bit `63 − i` = `in[i]` bit `63 − p`: the
//! transposition is its own inverse.

use super::bitslice::Lanes;

/// One stage: swap the `J × J` off-diagonal sub-blocks in every `2J × 2J` block.
#[inline(always)]
fn stage<L: Lanes, const J: u32>(a: &mut [L; 64], mask: u64) {
    let m = L::splat(mask);
    let j = J as usize;
    let mut k = 0;
    while k < 64 {
        for i in k..k + j {
            let t = (a[i] ^ a[i + j].shr::<J>()) & m;
            a[i] = a[i] ^ t;
            a[i + j] = a[i + j] ^ t.shl::<J>();
        }
        k += 2 * j;
    }
}

/// Transposes the 64 × 64 bit matrix (or `QWORDS` of them) in place.
#[inline(always)]
pub(crate) fn transpose64<L: Lanes>(a: &mut [L; 64]) {
    stage::<L, 32>(a, 0x0000_0000_FFFF_FFFF);
    stage::<L, 16>(a, 0x0000_FFFF_0000_FFFF);
    stage::<L, 8>(a, 0x00FF_00FF_00FF_00FF);
    stage::<L, 4>(a, 0x0F0F_0F0F_0F0F_0F0F);
    stage::<L, 2>(a, 0x3333_3333_3333_3333);
    stage::<L, 1>(a, 0x5555_5555_5555_5555);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition() {
        // A pseudo-random matrix (xorshift, fixed seed): every bit checked against the
        // definition of the transposition.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let a: [u64; 64] = core::array::from_fn(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        });
        let mut t = a;
        transpose64(&mut t);
        for (p, tp) in t.iter().enumerate() {
            for (i, ai) in a.iter().enumerate() {
                assert_eq!((tp >> (63 - i)) & 1, (ai >> (63 - p)) & 1, "bit {p},{i}");
            }
        }
        transpose64(&mut t);
        assert_eq!(t, a);
    }
}
