//! A dudect-style constant-time check of the bitsliced TDES core (Reparaz, Balasch,
//! Verbauwhede, "Dude, is my code constant time?", DATE 2017): time many calls on two
//! classes of secret input, interleaved at random, and compare the two timing
//! distributions with Welch's t-test, also after cropping the slow tail at several
//! percentiles. |t| above 4.5 is taken as evidence of a timing difference.
//!
//! Ignored by default (it measures timing, it takes a while and it wants a quiet machine):
//!
//! ```text
//! cargo test --release -p pmp-core --test tdes_ct -- --ignored --nocapture
//! ```
//!
//! `PMP_CT_SAMPLES` sets the number of measurements per check (default 200 000). As a
//! control that the method can see a leak on this machine, the same check runs on OpenSSL's
//! table-based TDES (EVP, through the `openssl` crate), which is known not to be constant
//! time (openssl/openssl#19555); its result is printed, not asserted.

use std::hint::black_box;
use std::time::Instant;

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use pmp_core::{Tdes, TdesBackend};

/// Welch's t statistic of two samples, from running sums.
#[derive(Default, Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }
    fn var(&self) -> f64 {
        if self.n > 1.0 {
            self.m2 / (self.n - 1.0)
        } else {
            0.0
        }
    }
}

fn welch(a: &Moments, b: &Moments) -> f64 {
    let se = (a.var() / a.n + b.var() / b.n).sqrt();
    if se == 0.0 {
        0.0
    } else {
        (a.mean - b.mean) / se
    }
}

/// splitmix64, seeded from the OS.
struct Rng(u64);
impl Rng {
    fn new() -> Self {
        let mut s = [0u8; 8];
        pmp_core::fill_random(&mut s).unwrap();
        Rng(u64::from_le_bytes(s))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Runs `measure(class, index)` for randomly interleaved classes and returns the largest
/// |t| over the crops (all samples, and those below the 50th..99.9th percentile of the
/// pooled timings).
fn dudect(samples: usize, mut measure: impl FnMut(usize, usize) -> u64) -> f64 {
    let mut rng = Rng::new();
    let mut times: Vec<(usize, u64)> = Vec::with_capacity(samples);
    for i in 0..samples {
        let class = (rng.next() & 1) as usize;
        times.push((class, measure(class, i)));
    }
    // Drop the first 1% (warm-up).
    let times = &times[samples / 100..];
    let mut sorted: Vec<u64> = times.iter().map(|t| t.1).collect();
    sorted.sort_unstable();
    let mut crops = vec![u64::MAX];
    for p in [0.5, 0.75, 0.9, 0.95, 0.99, 0.999] {
        crops.push(sorted[((sorted.len() as f64) * p) as usize]);
    }
    let mut worst = 0f64;
    for crop in crops {
        let mut m = [Moments::default(); 2];
        for &(c, t) in times {
            if t <= crop {
                m[c].push(t as f64);
            }
        }
        let t = welch(&m[0], &m[1]);
        println!(
            "    crop <= {:>10}: n = {:>7}/{:>7}, means {:>9.1} / {:>9.1} ns, t = {t:>7.2}",
            if crop == u64::MAX {
                "all".to_string()
            } else {
                format!("{crop} ns")
            },
            m[0].n,
            m[1].n,
            m[0].mean,
            m[1].mean
        );
        worst = worst.max(t.abs());
    }
    worst
}

fn samples() -> usize {
    std::env::var("PMP_CT_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

#[test]
#[ignore = "timing measurement, run by hand (see the module doc)"]
fn bitsliced_tdes_timing_does_not_depend_on_the_data_or_the_key() {
    let n = samples();
    let mut rng = Rng::new();
    let mut worst = Vec::new();
    for backend in TdesBackend::ALL.into_iter().filter(|b| b.is_available()) {
        let lanes = backend.lanes();
        // Data: all-zero blocks (class 0) against fresh random blocks (class 1), one key.
        let key: Vec<u8> = (0..24).map(|_| rng.next() as u8).collect();
        let tdes = Tdes::new(&key)
            .unwrap()
            .with_backend(backend)
            .unwrap()
            .always_bitsliced();
        let inputs: Vec<Vec<u8>> = (0..1024)
            .map(|_| (0..8 * lanes).map(|_| rng.next() as u8).collect())
            .collect();
        let zero = vec![0u8; 8 * lanes];
        let mut buf = vec![0u8; 8 * lanes];
        tdes.encrypt_ecb(&mut buf).unwrap();
        println!("{backend}: fixed vs random plaintext ({lanes} blocks per call)");
        let t = dudect(n, |class, i| {
            buf.copy_from_slice(if class == 0 { &zero } else { &inputs[i % 1024] });
            let start = Instant::now();
            tdes.encrypt_ecb(black_box(&mut buf)).unwrap();
            start.elapsed().as_nanos() as u64
        });
        worst.push((format!("{backend} data"), t));

        // Key: one fixed key (class 0) against a fresh random key (class 1), the same
        // plaintext. Before each measurement (outside the timed part) a new schedule is
        // made and expanded for either class, so that both use memory alike and only the
        // key values differ. (Pools of prepared schedules, one fixed against many random,
        // measure where the schedules sit in memory and caches, not the key.)
        let fixed_key: Vec<u8> = (0..24).map(|_| rng.next() as u8).collect();
        let random_keys: Vec<Vec<u8>> = (0..1024)
            .map(|_| (0..24).map(|_| rng.next() as u8).collect())
            .collect();
        let data = inputs[0].clone();
        println!("{backend}: fixed vs random key");
        let t = dudect(n, |class, i| {
            let k = if class == 0 {
                &fixed_key
            } else {
                &random_keys[i % 1024]
            };
            let t = Tdes::new(k)
                .unwrap()
                .with_backend(backend)
                .unwrap()
                .always_bitsliced();
            buf.copy_from_slice(&data);
            t.encrypt_ecb(&mut buf).unwrap();
            buf.copy_from_slice(&data);
            let start = Instant::now();
            t.encrypt_ecb(black_box(&mut buf)).unwrap();
            start.elapsed().as_nanos() as u64
        });
        worst.push((format!("{backend} key"), t));
    }

    // The control: OpenSSL TDES-ECB on one block, fixed vs random plaintext.
    let key: Vec<u8> = (0..24).map(|_| rng.next() as u8).collect();
    let mut ctx = CipherCtx::new().unwrap();
    ctx.encrypt_init(Some(Cipher::des_ede3_ecb()), Some(&key), None)
        .unwrap();
    ctx.set_padding(false);
    let inputs: Vec<[u8; 8]> = (0..1024).map(|_| rng.next().to_le_bytes()).collect();
    let mut out = [0u8; 16];
    println!("control, OpenSSL TDES-ECB: fixed vs random plaintext (1 block per call)");
    let control = dudect(n, |class, i| {
        let input = if class == 0 {
            [0u8; 8]
        } else {
            inputs[i % 1024]
        };
        let start = Instant::now();
        ctx.cipher_update(black_box(&input), Some(&mut out))
            .unwrap();
        start.elapsed().as_nanos() as u64
    });
    println!("control |t| = {control:.2} (above 4.5: the method sees OpenSSL's table lookups)");

    for (what, t) in &worst {
        println!("{what}: max |t| = {t:.2}");
    }
    for (what, t) in worst {
        assert!(t < 4.5, "{what}: |t| = {t:.2}, a timing difference");
    }
}
