//! pmp-core against OpenSSL, the same workloads in one process and one run, with the ratio
//! of each (pmp-core ÷ OpenSSL, higher is better for pmp-core).
//!
//! OpenSSL runs through the `openssl` crate (EVP, OpenSSL 3 on Debian): key schedules set up
//! once, one field at a time, as a C program would. pmp-core runs through its public API:
//! the software HSM for translations (one field with `translate`, a batch of 64 records with
//! `translate_batch`), the primitives for the rest. Every pmp-core result is checked
//! against OpenSSL's once before timing.
//!
//! Each side runs in alternating rounds (so that load from other processes hits both
//! alike) and the best round counts. `PMP_PEERS_ROUND_MS` sets the length of a round
//! (default 300 ms), `PMP_PEERS_ROUNDS` their number per side (default 5).
//!
//! Run: `cargo bench --bench peers` (see docs/benchmarks.md).

use std::hint::black_box;
use std::io::Read;
use std::time::{Duration, Instant};

use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use pmp_core::hsm::{CipherSpec, Hsm, KeyHandle, KeySpec, PinSpec, SoftHsm, TranslateItem};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::pinblock::{self, Pan, Pin, PinBlockFormat};
use pmp_core::{Algorithm, MacAlgorithm, Padding, SecretKey, TdesBackend};

/// One side of a translation: algorithm, clear key (for OpenSSL), HSM handle, IV.
type Side<'a> = (Algorithm, &'a [u8], &'a KeyHandle, &'a [u8]);

/// Records per `translate_batch` call and fields per record.
const RECORDS: usize = 64;
const FIELDS: usize = 10;
const FIELD_LEN: usize = 32;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Units per second of `f` (which does `units` units per call), best of the rounds; the two
/// sides alternate round by round.
fn compare(
    pmp: &mut dyn FnMut(),
    pmp_units: f64,
    ossl: &mut dyn FnMut(),
    ossl_units: f64,
) -> (f64, f64) {
    let round = Duration::from_millis(env_num("PMP_PEERS_ROUND_MS", 300));
    let rounds = env_num("PMP_PEERS_ROUNDS", 5);
    let once = |f: &mut dyn FnMut(), units: f64| -> f64 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < round {
            f();
            n += 1;
        }
        n as f64 * units / start.elapsed().as_secs_f64()
    };
    // Warm-up (caches, lazily expanded key schedules, page faults).
    pmp();
    ossl();
    let (mut best_p, mut best_o) = (0f64, 0f64);
    for _ in 0..rounds {
        best_p = best_p.max(once(pmp, pmp_units));
        best_o = best_o.max(once(ossl, ossl_units));
    }
    (best_p, best_o)
}

struct Table {
    rows: Vec<(String, String, f64, f64)>,
}

impl Table {
    fn row(&mut self, name: &str, unit: &str, (p, o): (f64, f64)) {
        println!(
            "{name:<46} {:>12} {:>12} {unit:<10} {:>6.2}x",
            fmt(p),
            fmt(o),
            p / o
        );
        self.rows.push((name.into(), unit.into(), p, o));
    }
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// A key with odd parity (TDES), from a fixed seed, formed in the HSM from two components
/// so that the bench knows its clear value for the OpenSSL side.
fn key_bytes(alg: Algorithm, len: usize, seed: u8) -> Vec<u8> {
    let mut k: Vec<u8> = (0..len as u8)
        .map(|i| i.wrapping_mul(0x3B).wrapping_add(seed.wrapping_mul(0x95)) ^ 0x5A)
        .collect();
    if alg == Algorithm::Tdes {
        pmp_core::set_odd_parity(&mut k);
    }
    k
}

fn form(hsm: &SoftHsm, label: &str, alg: Algorithm, usage: KeyUsage, key: &[u8]) -> KeyHandle {
    let c1: Vec<u8> = key.iter().map(|b| b ^ 0xA5).collect();
    let c2 = vec![0xA5u8; key.len()];
    let spec = KeySpec::new(label, alg, key.len(), usage, ModeOfUse::B);
    hsm.form_key_from_components(&spec, &[&c1, &c2], &[], None)
        .unwrap_or_else(|e| panic!("forming {label}: {e}"))
        .handle
}

/// OpenSSL's cipher for a pmp key (2-key TDES as K1||K2||K1 with DES-EDE3).
fn ossl_cipher(alg: Algorithm, key: &[u8], cbc: bool) -> (&'static CipherRef, Vec<u8>) {
    match (alg, key.len(), cbc) {
        (Algorithm::Tdes, 16, _) => {
            let k = [key, &key[..8]].concat();
            let c = if cbc {
                Cipher::des_ede3_cbc()
            } else {
                Cipher::des_ede3_ecb()
            };
            (c, k)
        }
        (Algorithm::Tdes, _, true) => (Cipher::des_ede3_cbc(), key.to_vec()),
        (Algorithm::Tdes, _, false) => (Cipher::des_ede3_ecb(), key.to_vec()),
        (Algorithm::Aes, 16, true) => (Cipher::aes_128_cbc(), key.to_vec()),
        (Algorithm::Aes, _, true) => (Cipher::aes_256_cbc(), key.to_vec()),
        (Algorithm::Aes, 16, false) => (Cipher::aes_128_ecb(), key.to_vec()),
        (Algorithm::Aes, _, false) => (Cipher::aes_256_ecb(), key.to_vec()),
    }
}

/// An EVP context with the key set once; `run` re-initialises only the IV per message.
struct Evp {
    ctx: CipherCtx,
    decrypt: bool,
}

impl Evp {
    fn new(alg: Algorithm, key: &[u8], cbc: bool, decrypt: bool) -> Self {
        let (cipher, k) = ossl_cipher(alg, key, cbc);
        let mut ctx = CipherCtx::new().unwrap();
        if decrypt {
            ctx.decrypt_init(Some(cipher), Some(&k), None).unwrap();
        } else {
            ctx.encrypt_init(Some(cipher), Some(&k), None).unwrap();
        }
        ctx.set_padding(false);
        Evp { ctx, decrypt }
    }

    fn run(&mut self, iv: Option<&[u8]>, input: &[u8], out: &mut [u8]) -> usize {
        if self.decrypt {
            self.ctx.decrypt_init(None, None, iv).unwrap();
        } else {
            self.ctx.encrypt_init(None, None, iv).unwrap();
        }
        let n = self.ctx.cipher_update(input, Some(out)).unwrap();
        n + self.ctx.cipher_final(&mut out[n..]).unwrap()
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("pmp-bench-peers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hsm = SoftHsm::create_with_test_lmk(&dir).expect("key store");
    let mut table = Table { rows: Vec::new() };

    println!(
        "pmp-core vs {} | TDES backend: {} | {} cores",
        openssl::version::version(),
        TdesBackend::active(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<46} {:>12} {:>12} {:<10} {:>7}",
        "workload", "pmp-core", "OpenSSL", "unit", "ratio"
    );

    // Keys: TK (2-key TDES, issuer transport), a second TDES key, two AES-128 keys.
    let tk = key_bytes(Algorithm::Tdes, 16, 1);
    let tk2 = key_bytes(Algorithm::Tdes, 16, 2);
    let ak = key_bytes(Algorithm::Aes, 16, 3);
    let ak2 = key_bytes(Algorithm::Aes, 16, 4);
    let h_tk = form(&hsm, "TK", Algorithm::Tdes, KeyUsage::D0, &tk);
    let h_tk2 = form(&hsm, "TK2", Algorithm::Tdes, KeyUsage::D0, &tk2);
    let h_ak = form(&hsm, "AK", Algorithm::Aes, KeyUsage::D0, &ak);
    let h_ak2 = form(&hsm, "AK2", Algorithm::Aes, KeyUsage::D0, &ak2);
    let iv8 = [0x11u8; 8];
    let iv16 = [0x22u8; 16];

    // Field translations, CBC, no padding (the fields are whole blocks).
    let cases: [(&str, Side<'_>, Side<'_>); 3] = [
        (
            "TDES->AES",
            (Algorithm::Tdes, &tk, &h_tk, &iv8),
            (Algorithm::Aes, &ak, &h_ak, &iv16),
        ),
        (
            "TDES->TDES",
            (Algorithm::Tdes, &tk, &h_tk, &iv8),
            (Algorithm::Tdes, &tk2, &h_tk2, &iv8),
        ),
        (
            "AES->AES",
            (Algorithm::Aes, &ak, &h_ak, &iv16),
            (Algorithm::Aes, &ak2, &h_ak2, &iv16),
        ),
    ];
    for (name, (fa, fk, fh, fiv), (ta, tkey, th, tiv)) in cases {
        let from = CipherSpec::cbc(fh, fiv, Padding::None);
        let to = CipherSpec::cbc(th, tiv, Padding::None);
        // RECORDS × FIELDS distinct ciphertexts under `from`.
        let mut enc = Evp::new(fa, fk, true, false);
        let fields: Vec<Vec<u8>> = (0..RECORDS * FIELDS)
            .map(|i| {
                let clear: Vec<u8> = (0..FIELD_LEN).map(|j| (i * 7 + j) as u8).collect();
                let mut ct = vec![0u8; FIELD_LEN + 32];
                let n = enc.run(Some(fiv), &clear, &mut ct);
                ct.truncate(n);
                ct
            })
            .collect();
        let mut dec = Evp::new(fa, fk, true, true);
        let mut reenc = Evp::new(ta, tkey, true, false);
        let mut scratch = vec![0u8; FIELD_LEN + 32];
        let mut out = vec![0u8; FIELD_LEN + 32];
        let mut ossl_field = |ct: &[u8], out: &mut [u8]| -> usize {
            let n = dec.run(Some(fiv), ct, &mut scratch);
            reenc.run(Some(tiv), &scratch[..n], out)
        };
        let items: Vec<TranslateItem<'_>> = fields
            .iter()
            .map(|ct| TranslateItem { from, to, data: ct })
            .collect();
        // Check pmp-core against OpenSSL once.
        let mut batch_out = Vec::new();
        let ends = hsm
            .translate_batch(&items, &mut batch_out)
            .expect("translate_batch");
        let mut start = 0;
        for (ct, &end) in fields.iter().zip(&ends) {
            let n = ossl_field(ct, &mut out);
            assert_eq!(
                &batch_out[start..end],
                &out[..n],
                "{name}: pmp-core and OpenSSL differ"
            );
            start = end;
        }

        let single = &fields[0];
        let mut pmp_out = vec![0u8; FIELD_LEN + 32];
        let r = compare(
            &mut || {
                black_box(
                    hsm.translate(&from, &to, black_box(single), &mut pmp_out)
                        .unwrap(),
                );
            },
            1.0,
            &mut || {
                black_box(ossl_field(black_box(single), &mut out));
            },
            1.0,
        );
        table.row(&format!("translate 1 field 32 B {name}"), "fields/s", r);

        let r = compare(
            &mut || {
                batch_out.clear();
                black_box(
                    hsm.translate_batch(black_box(&items), &mut batch_out)
                        .unwrap(),
                );
            },
            RECORDS as f64,
            &mut || {
                for ct in &fields {
                    black_box(ossl_field(black_box(ct), &mut out));
                }
            },
            RECORDS as f64,
        );
        table.row(
            &format!("record 10x32 B {name}, translate_batch x64"),
            "records/s",
            r,
        );
        // pmp-core one field at a time: the `Hsm` trait's default `translate_batch` (what
        // the software HSM did before it batched), against OpenSSL too.
        let r = compare(
            &mut || {
                batch_out.clear();
                for ct in &fields {
                    let at = batch_out.len();
                    batch_out.resize(at + ct.len() + 32, 0);
                    let n = hsm
                        .translate(&from, &to, black_box(ct), &mut batch_out[at..])
                        .unwrap();
                    batch_out.truncate(at + n);
                }
                black_box(&batch_out);
            },
            RECORDS as f64,
            &mut || {
                for ct in &fields {
                    black_box(ossl_field(black_box(ct), &mut out));
                }
            },
            RECORDS as f64,
        );
        table.row(
            &format!("record 10x32 B {name}, item by item x64"),
            "records/s",
            r,
        );
    }

    // Whole-file CBC decryption (2-key TDES), 4 MiB, one thread, and through the HSM's
    // decrypting reader (which may use both cores).
    {
        const LEN: usize = 4 << 20;
        let clear: Vec<u8> = (0..LEN).map(|i| (i * 31 + 7) as u8).collect();
        let mut enc = Evp::new(Algorithm::Tdes, &tk, true, false);
        let mut file = vec![0u8; LEN + 16];
        let n = enc.run(Some(&iv8), &clear, &mut file);
        file.truncate(n);
        let cipher = SecretKey::new(Algorithm::Tdes, &tk).unwrap().cipher();
        let mut buf = file.clone();
        cipher.decrypt_cbc(&iv8, &mut buf).unwrap();
        assert_eq!(buf, clear, "whole-file decryption differs");
        let mut dec = Evp::new(Algorithm::Tdes, &tk, true, true);
        let mut out = vec![0u8; LEN + 16];
        let mb = LEN as f64 / 1e6;
        let r = compare(
            &mut || {
                buf.copy_from_slice(&file);
                cipher.decrypt_cbc(&iv8, black_box(&mut buf)).unwrap();
            },
            mb,
            &mut || {
                black_box(dec.run(Some(&iv8), black_box(&file), &mut out));
            },
            mb,
        );
        table.row("TDES-CBC decrypt 4 MiB, 1 thread", "MB/s", r);
        let spec = CipherSpec::cbc(&h_tk, &iv8, Padding::None);
        let mut sink = vec![0u8; 64 << 10];
        let r = compare(
            &mut || {
                let mut rd = hsm
                    .decrypting_reader(&spec, Box::new(std::io::Cursor::new(&file[..])))
                    .unwrap();
                while rd.read(&mut sink).unwrap() > 0 {}
            },
            mb,
            &mut || {
                black_box(dec.run(Some(&iv8), black_box(&file), &mut out));
            },
            mb,
        );
        table.row("TDES-CBC decrypt 4 MiB, HSM reader", "MB/s", r);
    }

    // KCVs of TDES keys (key setup included on both sides: a KCV is per key).
    {
        let keys: Vec<Vec<u8>> = (0..64u8)
            .map(|s| key_bytes(Algorithm::Tdes, 16, s))
            .collect();
        let ossl_kcv = |k: &[u8]| -> [u8; 3] {
            let mut e = Evp::new(Algorithm::Tdes, k, false, false);
            // The openssl crate wants room for one more block than the input.
            let mut out = [0u8; 16];
            e.run(None, &[0u8; 8], &mut out);
            [out[0], out[1], out[2]]
        };
        for k in &keys {
            let kcv = SecretKey::new(Algorithm::Tdes, k).unwrap().kcv();
            assert_eq!(kcv.as_bytes(), &ossl_kcv(k), "KCV differs");
        }
        let r = compare(
            &mut || {
                for k in &keys {
                    black_box(SecretKey::new(Algorithm::Tdes, black_box(k)).unwrap().kcv());
                }
            },
            keys.len() as f64,
            &mut || {
                for k in &keys {
                    black_box(ossl_kcv(black_box(k)));
                }
            },
            keys.len() as f64,
        );
        table.row("KCV of a 2-key TDES key", "KCVs/s", r);
    }

    // PIN block translation ISO 0 (TDES) -> ISO 0 (TDES), another key.
    {
        let pk1 = key_bytes(Algorithm::Tdes, 16, 9);
        let pk2 = key_bytes(Algorithm::Tdes, 16, 10);
        let h1 = form(&hsm, "PK1", Algorithm::Tdes, KeyUsage::P0, &pk1);
        let h2 = form(&hsm, "PK2", Algorithm::Tdes, KeyUsage::P0, &pk2);
        let pan = Pan::new("4111111111111111").unwrap();
        let pin = Pin::new("1234").unwrap();
        let mut block = *pinblock::encode(PinBlockFormat::Iso0, &pin, Some(&pan)).unwrap();
        SecretKey::new(Algorithm::Tdes, &pk1)
            .unwrap()
            .cipher()
            .encrypt_ecb(&mut block)
            .unwrap();
        let from = PinSpec {
            key: &h1,
            format: PinBlockFormat::Iso0,
        };
        let to = PinSpec {
            key: &h2,
            format: PinBlockFormat::Iso0,
        };
        // OpenSSL: decrypt, remove the PAN field, check the format, put it back, encrypt.
        let pan_field: [u8; 8] = [0, 0, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11];
        let mut d = Evp::new(Algorithm::Tdes, &pk1, false, true);
        let mut e = Evp::new(Algorithm::Tdes, &pk2, false, false);
        let mut ossl_pin = |b: &[u8]| -> [u8; 8] {
            let mut clear = [0u8; 16];
            d.run(None, b, &mut clear);
            let mut p = [0u8; 8];
            for i in 0..8 {
                p[i] = clear[i] ^ pan_field[i];
            }
            let len = usize::from(p[0] & 0x0F);
            assert!(p[0] >> 4 == 0 && (4..=12).contains(&len), "bad PIN block");
            for i in 0..8 {
                p[i] ^= pan_field[i];
            }
            let mut out = [0u8; 16];
            e.run(None, &p, &mut out);
            let mut block = [0u8; 8];
            block.copy_from_slice(&out[..8]);
            block
        };
        let got = hsm.translate_pin(&from, &to, &pan, &block).unwrap();
        assert_eq!(got, ossl_pin(&block), "PIN translation differs");
        let r = compare(
            &mut || {
                black_box(
                    hsm.translate_pin(&from, &to, &pan, black_box(&block))
                        .unwrap(),
                );
            },
            1.0,
            &mut || {
                black_box(ossl_pin(black_box(&block)));
            },
            1.0,
        );
        table.row("PIN block ISO 0 -> ISO 0 (TDES)", "PINs/s", r);
    }

    // MACs over 4 KiB messages.
    {
        const LEN: usize = 4096;
        let msg: Vec<u8> = (0..LEN).map(|i| (i * 13) as u8).collect();
        let mb = LEN as f64 / 1e6;
        // Retail MAC (ISO 9797-1 algorithm 3): single DES CBC-MAC under K1, then the last
        // block decrypted under K2 and encrypted under K1. OpenSSL 3 keeps single DES in
        // its legacy provider.
        let legacy = openssl::provider::Provider::try_load(None, "legacy", true);
        let mk = key_bytes(Algorithm::Tdes, 16, 11);
        let mac_key = SecretKey::new(Algorithm::Tdes, &mk).unwrap();
        match legacy {
            Ok(_provider) => {
                let des = |k: &[u8], cipher: &CipherRef, decrypt: bool| {
                    let mut ctx = CipherCtx::new().unwrap();
                    if decrypt {
                        ctx.decrypt_init(Some(cipher), Some(k), None).unwrap();
                    } else {
                        ctx.encrypt_init(Some(cipher), Some(k), None).unwrap();
                    }
                    ctx.set_padding(false);
                    ctx
                };
                let mut cbc1 = des(&mk[..8], Cipher::des_cbc(), false);
                let mut d2 = des(&mk[8..], Cipher::des_ecb(), true);
                let mut e1 = des(&mk[..8], Cipher::des_ecb(), false);
                let mut out = vec![0u8; LEN + 8];
                let mut ossl_retail = |m: &[u8]| -> [u8; 8] {
                    cbc1.encrypt_init(None, None, Some(&[0u8; 8])).unwrap();
                    let n = cbc1.cipher_update(m, Some(&mut out)).unwrap();
                    let mut last = [0u8; 8];
                    last.copy_from_slice(&out[n - 8..n]);
                    let mut t = [0u8; 16];
                    d2.decrypt_init(None, None, None).unwrap();
                    d2.cipher_update(&last, Some(&mut t)).unwrap();
                    let mut u = [0u8; 16];
                    e1.encrypt_init(None, None, None).unwrap();
                    e1.cipher_update(&t[..8], Some(&mut u)).unwrap();
                    let mut tag = [0u8; 8];
                    tag.copy_from_slice(&u[..8]);
                    tag
                };
                let tag =
                    pmp_core::mac(MacAlgorithm::Retail, &mac_key, Padding::None, &msg).unwrap();
                assert_eq!(tag.as_bytes(), &ossl_retail(&msg), "retail MAC differs");
                let r = compare(
                    &mut || {
                        black_box(
                            pmp_core::mac(
                                MacAlgorithm::Retail,
                                &mac_key,
                                Padding::None,
                                black_box(&msg),
                            )
                            .unwrap(),
                        );
                    },
                    mb,
                    &mut || {
                        black_box(ossl_retail(black_box(&msg)));
                    },
                    mb,
                );
                table.row("retail MAC (ISO 9797-1 alg. 3), 4 KiB", "MB/s", r);
            }
            Err(e) => println!("retail MAC: skipped, OpenSSL legacy provider not loaded ({e})"),
        }

        let ck = key_bytes(Algorithm::Aes, 16, 12);
        let cmac_key = SecretKey::new(Algorithm::Aes, &ck).unwrap();
        let pkey = PKey::cmac(&openssl::symm::Cipher::aes_128_cbc(), &ck).unwrap();
        let ossl_cmac = |m: &[u8]| -> Vec<u8> {
            let mut s = Signer::new_without_digest(&pkey).unwrap();
            s.update(m).unwrap();
            s.sign_to_vec().unwrap()
        };
        let tag = pmp_core::cmac(&cmac_key, &msg).unwrap();
        assert_eq!(tag.as_bytes(), &ossl_cmac(&msg)[..], "CMAC differs");
        let r = compare(
            &mut || {
                black_box(pmp_core::cmac(&cmac_key, black_box(&msg)).unwrap());
            },
            mb,
            &mut || {
                black_box(ossl_cmac(black_box(&msg)));
            },
            mb,
        );
        table.row("AES-128 CMAC, 4 KiB", "MB/s", r);
    }

    drop(hsm);
    let _ = std::fs::remove_dir_all(&dir);
    println!("({} rows; ratio = pmp-core / OpenSSL)", table.rows.len());
}
