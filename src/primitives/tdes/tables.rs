//! The DES permutations and key schedule of FIPS 46-3, and the index maps the bitsliced core
//! derives from them at compile time.
//!
//! Bits are numbered as in the standard: 1 is the most significant bit of the first byte.
//! Every map below is public, fixed data: the core only ever indexes with these constants.

/// Initial permutation IP: output bit `i` is input bit `IP[i]`.
const IP: [u8; 64] = [
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, //
    62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8, //
    57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, //
    61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];

/// Expansion E: the 48 S-box input bits taken from the 32 bits of R.
const E: [u8; 48] = [
    32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17, //
    16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1,
];

/// Permutation P of the S-box outputs: output bit `i` of f is S-box output bit `P[i]`.
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, //
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
];

/// Permuted choice 1: C0 || D0 from the 56 non-parity key bits.
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, //
    19, 11, 3, 60, 52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, //
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
];

/// Permuted choice 2: the 48 round-key bits from C || D.
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, //
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// Left rotations of C and D before each round.
const SHIFTS: [u8; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// Where the initial permutation takes its bits from, 0-based: `L0[j]` is input bit
/// `IP_FROM[j]`, `R0[j]` is input bit `IP_FROM[32 + j]` (IP folded into the load).
pub(super) const IP_FROM: [usize; 64] = {
    let mut t = [0usize; 64];
    let mut i = 0;
    while i < 64 {
        t[i] = IP[i] as usize - 1;
        i += 1;
    }
    t
};

/// Where the final permutation IP⁻¹ takes its bits from, 0-based, in the pre-output
/// R16 || L16 (FP folded into the store).
pub(super) const FP_FROM: [usize; 64] = {
    // IP⁻¹ maps input bit IP[i] to output position i; so output bit o of FP comes from the
    // position i with IP[i] == o + 1.
    let mut t = [0usize; 64];
    let mut i = 0;
    while i < 64 {
        t[IP[i] as usize - 1] = i;
        i += 1;
    }
    t
};

/// The R bit feeding each S-box input, 0-based.
pub(super) const E_FROM: [usize; 48] = {
    let mut t = [0usize; 48];
    let mut i = 0;
    while i < 48 {
        t[i] = E[i] as usize - 1;
        i += 1;
    }
    t
};

/// Where each S-box output bit lands in f (P folded into the XOR into L), 0-based:
/// S-box output bit `q` (0..32, four per S-box, most significant first) goes to f bit
/// `P_TO[q]`.
pub(super) const P_TO: [usize; 32] = {
    let mut t = [0usize; 32];
    let mut i = 0;
    while i < 32 {
        t[P[i] as usize - 1] = i;
        i += 1;
    }
    t
};

/// For each round, the key bit (0-based, 0..64, parity bits never used) behind each of the
/// 48 round-key bits: PC-1, the rotations and PC-2 composed, so the key schedule is a
/// selection of key bits.
pub(super) const ROUND_KEY_FROM: [[u8; 48]; 16] = {
    let mut t = [[0u8; 48]; 16];
    let mut shift = 0usize;
    let mut r = 0;
    while r < 16 {
        shift += SHIFTS[r] as usize;
        let mut j = 0;
        while j < 48 {
            // Position in C || D after `shift` left rotations of each 28-bit half.
            let p = PC2[j] as usize - 1;
            let src = if p < 28 {
                (p + shift) % 28
            } else {
                28 + (p - 28 + shift) % 28
            };
            t[r][j] = PC1[src] - 1;
            j += 1;
        }
        r += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations() {
        let mut seen = [false; 64];
        for &i in &IP_FROM {
            assert!(!seen[i]);
            seen[i] = true;
        }
        for o in 0..64 {
            assert_eq!(IP_FROM[FP_FROM[o]], o, "FP is the inverse of IP");
        }
        let mut seen = [false; 32];
        for &i in &P_TO {
            assert!(!seen[i]);
            seen[i] = true;
        }
    }

    #[test]
    fn round_keys_skip_parity_bits_and_use_each_key_bit() {
        let mut used = [0usize; 64];
        for rk in &ROUND_KEY_FROM {
            for &b in rk {
                assert_ne!(b % 8, 7, "parity bit {b} used");
                used[b as usize] += 1;
            }
        }
        // 16 rounds × 48 bits over the 56 key bits: each is used 12 to 15 times.
        for (b, &n) in used.iter().enumerate() {
            if b % 8 != 7 {
                assert!((12..=15).contains(&n), "key bit {b} used {n} times");
            }
        }
    }
}
