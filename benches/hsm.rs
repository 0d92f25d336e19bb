//! Issue 4 benchmark: translating one 32-byte field through `SoftHsm` (TDES→TDES,
//! TDES→AES, AES→AES, CBC, no padding) next to the raw cost of the same block operations
//! with the `des` / `aes` / `cbc` crates directly. The ratio is the HSM layer's overhead
//! (policy checks, key lookup, scratch buffer, wiping, counters).

use std::hint::black_box;

use aes::Aes256;
use cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit, array::Array};
use criterion::{Criterion, criterion_group, criterion_main};
use des::TdesEde2;
use pmp_core::hsm::{CipherSpec, Hsm, KeySpec, SoftHsm};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::{Algorithm, Padding};

type TdesCbcEnc<'a> = cbc::Encryptor<&'a TdesEde2>;
type TdesCbcDec<'a> = cbc::Decryptor<&'a TdesEde2>;
type AesCbcEnc<'a> = cbc::Encryptor<&'a Aes256>;
type AesCbcDec<'a> = cbc::Decryptor<&'a Aes256>;

fn raw_decrypt<D: BlockModeDecrypt>(mut d: D, buf: &mut [u8]) {
    let (blocks, _) = Array::slice_as_chunks_mut(buf);
    d.decrypt_blocks(blocks);
}

fn raw_encrypt<E: BlockModeEncrypt>(mut e: E, buf: &mut [u8]) {
    let (blocks, _) = Array::slice_as_chunks_mut(buf);
    e.encrypt_blocks(blocks);
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("pmp-bench-hsm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hsm = SoftHsm::create_with_test_lmk(&dir).expect("store");
    let gen_key = |label: &str, alg, len| {
        hsm.generate_key(&KeySpec::new(label, alg, len, KeyUsage::D0, ModeOfUse::B))
            .expect("key")
            .handle
    };
    let t1 = gen_key("T1", Algorithm::Tdes, 16);
    let t2 = gen_key("T2", Algorithm::Tdes, 16);
    let a1 = gen_key("A1", Algorithm::Aes, 32);
    let a2 = gen_key("A2", Algorithm::Aes, 32);
    let field = [0x42u8; 32];
    let iv8 = [0u8; 8];
    let iv16 = [0u8; 16];

    let mut g = c.benchmark_group("translate_32B_field");
    for (name, from, to) in [
        (
            "tdes_to_tdes",
            CipherSpec::cbc(&t1, &iv8, Padding::None),
            CipherSpec::cbc(&t2, &iv8, Padding::None),
        ),
        (
            "tdes_to_aes",
            CipherSpec::cbc(&t1, &iv8, Padding::None),
            CipherSpec::cbc(&a1, &iv16, Padding::None),
        ),
        (
            "aes_to_aes",
            CipherSpec::cbc(&a1, &iv16, Padding::None),
            CipherSpec::cbc(&a2, &iv16, Padding::None),
        ),
    ] {
        let mut ct = [0u8; 32];
        hsm.encrypt(&from, &field, &mut ct).expect("encrypt");
        let mut out = [0u8; 32];
        g.bench_function(format!("softhsm/{name}"), |b| {
            b.iter(|| {
                hsm.translate(&from, &to, black_box(&ct), &mut out)
                    .expect("translate")
            })
        });
    }

    // Raw: the same CBC decrypt + encrypt with the RustCrypto crates on prepared key
    // schedules (what any implementation must do at least).
    let tk1 = TdesEde2::new_from_slice(&[0x13; 16]).expect("key");
    let tk2 = TdesEde2::new_from_slice(&[0x57; 16]).expect("key");
    let ak1 = Aes256::new_from_slice(&[0x13; 32]).expect("key");
    let ak2 = Aes256::new_from_slice(&[0x57; 32]).expect("key");
    g.bench_function("raw/tdes_to_tdes", |b| {
        b.iter(|| {
            let mut buf = black_box(field);
            raw_decrypt(TdesCbcDec::inner_iv_init(&tk1, &iv8.into()), &mut buf);
            raw_encrypt(TdesCbcEnc::inner_iv_init(&tk2, &iv8.into()), &mut buf);
            buf
        })
    });
    g.bench_function("raw/tdes_to_aes", |b| {
        b.iter(|| {
            let mut buf = black_box(field);
            raw_decrypt(TdesCbcDec::inner_iv_init(&tk1, &iv8.into()), &mut buf);
            raw_encrypt(AesCbcEnc::inner_iv_init(&ak1, &iv16.into()), &mut buf);
            buf
        })
    });
    g.bench_function("raw/aes_to_aes", |b| {
        b.iter(|| {
            let mut buf = black_box(field);
            raw_decrypt(AesCbcDec::inner_iv_init(&ak1, &iv16.into()), &mut buf);
            raw_encrypt(AesCbcEnc::inner_iv_init(&ak2, &iv16.into()), &mut buf);
            buf
        })
    });
    g.finish();
    drop(hsm);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
