//! The bitsliced TDES core (`pmp_core::Tdes`): known answers on every backend this machine
//! has, and differential tests against the RustCrypto `des` crate (an independent
//! table-based implementation) on random keys, IVs and data, for every batch size from 1
//! to the widest lane count + 1, every lane position, and each SIMD backend against the
//! portable one.

mod common;

use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit, array::Array};
use des::{TdesEde2, TdesEde3};
use pmp_core::{CbcChain, Tdes, TdesBackend};

/// The backends this machine can run (the portable one always).
fn backends() -> Vec<TdesBackend> {
    let all: Vec<_> = TdesBackend::ALL
        .into_iter()
        .filter(|b| b.is_available())
        .collect();
    for b in TdesBackend::ALL {
        if !b.is_available() {
            eprintln!("note: TDES backend {b} not available on this CPU, not tested");
        }
    }
    all
}

/// Every way to run a key: each backend, bitsliced for every size and with the default
/// small-batch fallback.
fn variants(key: &[u8]) -> Vec<(String, Tdes)> {
    let mut out = Vec::new();
    for b in backends() {
        let t = Tdes::new(key).unwrap().with_backend(b).unwrap();
        out.push((format!("{b}"), t.clone()));
        out.push((format!("{b}/always-bitsliced"), t.always_bitsliced()));
    }
    out
}

/// splitmix64: a small deterministic generator, seeded per test and printed on failure.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Self, u64) {
        let mut s = [0u8; 8];
        pmp_core::fill_random(&mut s).unwrap();
        let seed = u64::from_le_bytes(s);
        (Rng(seed), seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The oracle: the `des` crate, one block at a time.
enum Oracle {
    Two(TdesEde2),
    Three(TdesEde3),
}

impl Oracle {
    fn new(key: &[u8]) -> Self {
        match key.len() {
            16 => Oracle::Two(TdesEde2::new_from_slice(key).unwrap()),
            _ => Oracle::Three(TdesEde3::new_from_slice(key).unwrap()),
        }
    }
    fn block(&self, b: &mut [u8], decrypt: bool) {
        let a: &mut Array<u8, _> = b.try_into().unwrap();
        match (self, decrypt) {
            (Oracle::Two(c), false) => c.encrypt_block(a),
            (Oracle::Two(c), true) => c.decrypt_block(a),
            (Oracle::Three(c), false) => c.encrypt_block(a),
            (Oracle::Three(c), true) => c.decrypt_block(a),
        }
    }
    fn ecb(&self, buf: &mut [u8], decrypt: bool) {
        for b in buf.chunks_exact_mut(8) {
            self.block(b, decrypt);
        }
    }
    fn cbc_encrypt(&self, iv: &[u8], buf: &mut [u8]) {
        let mut prev = iv.to_vec();
        for b in buf.chunks_exact_mut(8) {
            b.iter_mut().zip(&prev).for_each(|(x, p)| *x ^= p);
            self.block(b, false);
            prev.copy_from_slice(b);
        }
    }
    fn cbc_decrypt(&self, iv: &[u8], buf: &mut [u8]) {
        let mut prev = iv.to_vec();
        for b in buf.chunks_exact_mut(8) {
            let ct = b.to_vec();
            self.block(b, true);
            b.iter_mut().zip(&prev).for_each(|(x, p)| *x ^= p);
            prev = ct;
        }
    }
}

/// Compares without printing the data (clear text, and too long to read): names the first
/// block that differs.
#[track_caller]
fn same(got: &[u8], want: &[u8], what: impl std::fmt::Display) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}: first difference in block {} (byte {i})", i / 8);
    }
}

#[track_caller]
fn same_chains(got: &[Vec<u8>], want: &[Vec<u8>], what: impl std::fmt::Display) {
    assert_eq!(got.len(), want.len(), "{what}: chain count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        same(g, w, format!("{what}, chain {i}"));
    }
}

fn random_key(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.next() & 1 == 0 { 16 } else { 24 };
    rng.bytes(len)
}

/// The widest lane count of the backends here, the largest batch one pass takes.
fn widest() -> usize {
    backends().iter().map(|b| b.lanes()).max().unwrap()
}

#[test]
fn sp800_20_known_answers_every_backend() {
    let vectors = common::load("tdes-kat.txt");
    assert_eq!(vectors.len(), 171);
    for v in &vectors {
        let k1 = v.hex("Key");
        let key = [k1.clone(), k1.clone(), k1].concat();
        let (pt, ct) = (v.hex("Plaintext"), v.hex("Ciphertext"));
        for (name, t) in variants(&key) {
            let mut buf = pt.clone();
            t.encrypt_ecb(&mut buf).unwrap();
            assert_eq!(buf, ct, "{} encrypt, {name}", v.get("Example"));
            t.decrypt_ecb(&mut buf).unwrap();
            assert_eq!(buf, pt, "{} decrypt, {name}", v.get("Example"));
        }
    }
}

#[test]
fn variable_plaintext_table_in_one_batch() {
    // SP 800-20 Table A.1 shares one key: its 64 blocks go through one pass together, so
    // each lane position of a 64-lane pass meets one known answer.
    let vectors: Vec<_> = common::load("tdes-kat.txt")
        .into_iter()
        .filter(|v| v.get("Example").contains("Table A.1"))
        .collect();
    assert_eq!(vectors.len(), 64);
    let key = [0x01u8; 24];
    let pt: Vec<u8> = vectors.iter().flat_map(|v| v.hex("Plaintext")).collect();
    let ct: Vec<u8> = vectors.iter().flat_map(|v| v.hex("Ciphertext")).collect();
    for (name, t) in variants(&key) {
        let mut buf = pt.clone();
        t.encrypt_ecb(&mut buf).unwrap();
        assert_eq!(buf, ct, "{name}");
        t.decrypt_ecb(&mut buf).unwrap();
        assert_eq!(buf, pt, "{name}");
        // Inverse permutation test: encrypting the ciphertexts with this key (K1 = K2 =
        // K3, a weak key: E = D) gives the plaintexts back.
        let mut buf = ct.clone();
        t.encrypt_ecb(&mut buf).unwrap();
        assert_eq!(buf, pt, "invperm, {name}");
    }
}

/// The CAVP and SP 800-67 vectors of `file` through ECB, CBC decryption (all blocks side
/// by side) and CBC encryption as a chain; returns how many were checked.
fn check_cipher_file(file: &str) -> usize {
    let vectors = common::load(file);
    for v in &vectors {
        let key = v.hex("Key");
        let (pt, ct) = (v.hex("Plaintext"), v.hex("Ciphertext"));
        // The 24-byte keying-option-2 keys also run as their 16-byte form.
        let mut keys = vec![key.clone()];
        if key[..8] == key[16..] {
            keys.push(key[..16].to_vec());
        }
        for key in keys {
            for (name, t) in variants(&key) {
                let what = format!("{} ({} key bytes), {name}", v.get("Example"), key.len());
                let mut buf = pt.clone();
                match v.get("Mode") {
                    "ECB" => {
                        t.encrypt_ecb(&mut buf).unwrap();
                        assert_eq!(buf, ct, "{what}");
                        t.decrypt_ecb(&mut buf).unwrap();
                    }
                    _ => {
                        let iv = v.hex("IV");
                        t.encrypt_cbc(&iv, &mut buf).unwrap();
                        assert_eq!(buf, ct, "{what}");
                        t.decrypt_cbc(&iv, &mut buf).unwrap();
                    }
                }
                assert_eq!(buf, pt, "{what}");
            }
        }
    }
    vectors.len()
}

#[test]
fn cavp_multi_block_vectors_every_backend() {
    assert_eq!(check_cipher_file("tdes-cbc-mmt3.txt"), 20);
    assert_eq!(check_cipher_file("tdes.txt"), 9);
}

#[test]
fn ecb_every_batch_size_matches_des_crate() {
    let (mut rng, seed) = Rng::seeded();
    let top = widest() + 1;
    for n in 1..=top {
        let key = random_key(&mut rng);
        let oracle = Oracle::new(&key);
        let pt = rng.bytes(8 * n);
        let mut want = pt.clone();
        oracle.ecb(&mut want, false);
        for (name, t) in variants(&key) {
            let mut buf = pt.clone();
            t.encrypt_ecb(&mut buf).unwrap();
            same(&buf, &want, format!("seed {seed:#x}: {n} blocks, {name}"));
            t.decrypt_ecb(&mut buf).unwrap();
            same(&buf, &pt, format!("seed {seed:#x}: {n} blocks, {name}"));
        }
    }
}

#[test]
fn cbc_decrypt_every_batch_size_matches_des_crate() {
    let (mut rng, seed) = Rng::seeded();
    let top = widest() + 1;
    for n in 1..=top {
        let key = random_key(&mut rng);
        let oracle = Oracle::new(&key);
        let iv = rng.bytes(8);
        let ct = rng.bytes(8 * n);
        let mut want = ct.clone();
        oracle.cbc_decrypt(&iv, &mut want);
        for (name, t) in variants(&key) {
            let mut buf = ct.clone();
            t.decrypt_cbc(&iv, &mut buf).unwrap();
            same(&buf, &want, format!("seed {seed:#x}: {n} blocks, {name}"));
        }
    }
}

/// `count` chains of random lengths (0 to `max_blocks` blocks) and random IVs.
fn random_chains(rng: &mut Rng, count: usize, max_blocks: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..count)
        .map(|_| {
            let blocks = rng.below(max_blocks + 1);
            (rng.bytes(8), rng.bytes(8 * blocks))
        })
        .collect()
}

fn run_chains(t: &Tdes, chains: &[(Vec<u8>, Vec<u8>)], decrypt: bool) -> Vec<Vec<u8>> {
    let mut data: Vec<Vec<u8>> = chains.iter().map(|(_, d)| d.clone()).collect();
    let mut cs: Vec<CbcChain<'_>> = chains
        .iter()
        .zip(data.iter_mut())
        .map(|((iv, _), d)| CbcChain { iv, data: d })
        .collect();
    if decrypt {
        t.decrypt_cbc_chains(&mut cs).unwrap();
    } else {
        t.encrypt_cbc_chains(&mut cs).unwrap();
    }
    drop(cs);
    data
}

#[test]
fn cbc_chains_every_chain_count_match_des_crate() {
    let (mut rng, seed) = Rng::seeded();
    let top = widest() + 1;
    // Every chain count from 1 to the widest lane count + 1 (so the lanes fill, overflow,
    // and free lanes take the next chain), with lengths of 0 to 5 blocks.
    for count in 1..=top {
        let key = random_key(&mut rng);
        let oracle = Oracle::new(&key);
        let chains = random_chains(&mut rng, count, 5);
        let want_enc: Vec<Vec<u8>> = chains
            .iter()
            .map(|(iv, d)| {
                let mut d = d.clone();
                oracle.cbc_encrypt(iv, &mut d);
                d
            })
            .collect();
        let want_dec: Vec<Vec<u8>> = chains
            .iter()
            .map(|(iv, d)| {
                let mut d = d.clone();
                oracle.cbc_decrypt(iv, &mut d);
                d
            })
            .collect();
        for (name, t) in variants(&key) {
            same_chains(
                &run_chains(&t, &chains, false),
                &want_enc,
                format!("seed {seed:#x}: {count} chains encrypted, {name}"),
            );
            same_chains(
                &run_chains(&t, &chains, true),
                &want_dec,
                format!("seed {seed:#x}: {count} chains decrypted, {name}"),
            );
        }
    }
}

#[test]
fn long_and_short_chains_mixed() {
    // Chains of very different lengths: a lane that finishes early takes the next chain
    // while its neighbours continue.
    let (mut rng, seed) = Rng::seeded();
    let key = random_key(&mut rng);
    let oracle = Oracle::new(&key);
    let mut chains = random_chains(&mut rng, 700, 3);
    for i in (0..chains.len()).step_by(97) {
        let blocks = 40 + rng.below(40);
        chains[i].1 = rng.bytes(8 * blocks);
    }
    let want: Vec<Vec<u8>> = chains
        .iter()
        .map(|(iv, d)| {
            let mut d = d.clone();
            oracle.cbc_encrypt(iv, &mut d);
            d
        })
        .collect();
    for (name, t) in variants(&key) {
        same_chains(
            &run_chains(&t, &chains, false),
            &want,
            format!("seed {seed:#x}, {name}"),
        );
    }
}

#[test]
fn every_lane_is_independent_of_the_others() {
    // Change the block at one lane position of a full pass: only that output changes, and
    // it is the des crate's answer; for every lane position of the widest pass.
    let (mut rng, seed) = Rng::seeded();
    let key = random_key(&mut rng);
    let oracle = Oracle::new(&key);
    for b in backends() {
        let t = Tdes::new(&key).unwrap().with_backend(b).unwrap();
        let n = b.lanes();
        let pt = rng.bytes(8 * n);
        let mut base = pt.clone();
        t.encrypt_ecb(&mut base).unwrap();
        for lane in 0..n {
            let mut p = pt.clone();
            p[8 * lane] ^= 0x80;
            let mut want = p[8 * lane..8 * lane + 8].to_vec();
            oracle.block(&mut want, false);
            t.encrypt_ecb(&mut p).unwrap();
            for other in 0..n {
                let got = &p[8 * other..8 * other + 8];
                if other == lane {
                    assert_eq!(got, want, "seed {seed:#x}: {b}, lane {lane}");
                } else {
                    assert_eq!(
                        got,
                        &base[8 * other..8 * other + 8],
                        "seed {seed:#x}: {b}, lane {lane} changed lane {other}"
                    );
                }
            }
        }
    }
}

#[test]
fn simd_backends_match_the_portable_one() {
    let (mut rng, seed) = Rng::seeded();
    for _ in 0..4 {
        let key = random_key(&mut rng);
        let n = 1 + rng.below(3 * 512);
        let data = rng.bytes(8 * n);
        let iv = rng.bytes(8);
        let portable = Tdes::new(&key)
            .unwrap()
            .with_backend(TdesBackend::Portable)
            .unwrap();
        let mut want_ecb = data.clone();
        portable.encrypt_ecb(&mut want_ecb).unwrap();
        let mut want_cbc = data.clone();
        portable.decrypt_cbc(&iv, &mut want_cbc).unwrap();
        for b in backends() {
            let t = Tdes::new(&key).unwrap().with_backend(b).unwrap();
            let mut got = data.clone();
            t.encrypt_ecb(&mut got).unwrap();
            same(
                &got,
                &want_ecb,
                format!("seed {seed:#x}: {b} ECB, {n} blocks"),
            );
            let mut got = data.clone();
            t.decrypt_cbc(&iv, &mut got).unwrap();
            same(
                &got,
                &want_cbc,
                format!("seed {seed:#x}: {b} CBC decrypt, {n} blocks"),
            );
        }
    }
}

#[test]
fn bad_lengths_are_refused_before_anything_changes() {
    let t = Tdes::new(&[0x13; 16]).unwrap().always_bitsliced();
    let mut buf = [0u8; 12];
    assert!(t.encrypt_ecb(&mut buf).is_err());
    assert!(t.decrypt_cbc(&[0; 8], &mut [0u8; 16][..9]).is_err());
    assert!(Tdes::new(&[0; 8]).is_err());
    // A batch with one bad chain changes no chain.
    let (mut a, mut b) = ([7u8; 16], [7u8; 12]);
    let mut chains = [
        CbcChain {
            iv: &[0; 8],
            data: &mut a,
        },
        CbcChain {
            iv: &[0; 8],
            data: &mut b,
        },
    ];
    let err = t.encrypt_cbc_chains(&mut chains).unwrap_err().to_string();
    assert!(err.contains("chain 1"), "{err}");
    assert_eq!(a, [7u8; 16]);
    let mut chains = [CbcChain {
        iv: &[0; 16],
        data: &mut a,
    }];
    let err = t.decrypt_cbc_chains(&mut chains).unwrap_err().to_string();
    assert!(err.contains("IV"), "{err}");
    assert_eq!(a, [7u8; 16]);
}

#[test]
fn forced_backend_is_the_active_one() {
    // CI runs the suite once per backend the machine has, with PMP_TDES_BACKEND set: make
    // sure the setting took (a typo or an unavailable backend would silently fall back).
    match std::env::var(TdesBackend::ENV) {
        Ok(v) => {
            let b: TdesBackend = v.parse().unwrap();
            assert!(b.is_available(), "{v} is not available on this CPU");
            assert_eq!(TdesBackend::active(), b);
            assert_eq!(Tdes::new(&[0x13; 16]).unwrap().backend(), b);
        }
        Err(_) => assert_eq!(TdesBackend::active(), TdesBackend::best()),
    }
    let d = format!("{:?}", Tdes::new(&[0x13; 16]).unwrap());
    assert!(!d.contains("13") && !d.contains("19"), "{d}");
}
