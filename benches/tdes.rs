//! The bitsliced TDES core on its own: one pass per backend, batch sizes around the
//! small-batch threshold, next to the RustCrypto `des` crate one block at a time. Used to
//! choose `Tdes::SMALL_BATCH` and to see what each backend gains.

use std::hint::black_box;
use std::time::Duration;

use cipher::{BlockCipherEncrypt, KeyInit, array::Array};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use des::TdesEde2;
use pmp_core::{CbcChain, Tdes, TdesBackend};

fn bench(c: &mut Criterion) {
    let key = [0x13u8; 16];
    let mut g = c.benchmark_group("tdes_ecb_encrypt");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    for n in [1usize, 2, 4, 8, 16, 64, 256, 512, 4096] {
        let mut buf = vec![0x42u8; 8 * n];
        g.throughput(Throughput::Bytes(8 * n as u64));
        let des = TdesEde2::new_from_slice(&key).unwrap();
        g.bench_function(format!("des_crate/{n}"), |b| {
            b.iter(|| {
                let (blocks, _) = Array::slice_as_chunks_mut(&mut buf);
                des.encrypt_blocks(blocks);
                black_box(&buf);
            })
        });
        for backend in TdesBackend::ALL.into_iter().filter(|b| b.is_available()) {
            let t = Tdes::new(&key)
                .unwrap()
                .with_backend(backend)
                .unwrap()
                .always_bitsliced();
            g.bench_function(format!("{backend}/{n}"), |b| {
                b.iter(|| t.encrypt_ecb(black_box(&mut buf)).unwrap())
            });
        }
    }
    g.finish();

    // CBC encryption of many 32-byte fields, one per lane.
    let mut g = c.benchmark_group("tdes_cbc_encrypt_32B_fields");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    for fields in [1usize, 4, 10, 64, 640] {
        let mut data = vec![[0x42u8; 32]; fields];
        let iv = [0u8; 8];
        g.throughput(Throughput::Elements(fields as u64));
        for backend in TdesBackend::ALL.into_iter().filter(|b| b.is_available()) {
            let t = Tdes::new(&key).unwrap().with_backend(backend).unwrap();
            for (name, t) in [("auto", t.clone()), ("bitsliced", t.always_bitsliced())] {
                g.bench_function(format!("{backend}/{name}/{fields}"), |b| {
                    b.iter(|| {
                        let mut chains: Vec<CbcChain<'_>> = data
                            .iter_mut()
                            .map(|d| CbcChain { iv: &iv, data: d })
                            .collect();
                        t.encrypt_cbc_chains(&mut chains).unwrap()
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
