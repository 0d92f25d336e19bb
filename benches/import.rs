//! Issue 6 benchmark: importing N issuer records into an XOF through `SoftHsm`, next to the
//! bound set by the raw cipher work of the same records with the `des` / `aes` / `cbc` /
//! `cmac` crates alone (one thread, no parsing, no HSM, no XML).
//!
//! Cases:
//! - `tdes-file/aes-dkeps`: whole file 2-key TDES-CBC under TK_issuer, 8 data attributes
//!   re-encrypted under AES-256 DKeps (CBC, random IV, ISO 9797-1 M2), PIN block ISO 0
//!   (TDES) → ISO 4 (AES), XOF record CMAC.
//! - `tdes-field/tdes-dkeps`: clear file, PAN and track 2 individually encrypted (hex,
//!   TDES-CBC) and translated, the PAN also decrypted for its Luhn check and the PIN
//!   block; other attributes encrypted under 2-key TDES DKeps.
//!
//! The bound per record: the file's TDES-CBC decryption (share of the bytes), the CBC
//! encryption of every attribute at its padded length (and the decryption of the
//! individually encrypted fields), the PIN block (one TDES block, two AES blocks) and one
//! AES-CMAC over the record's ciphertexts. `workers` = 1 and 2 give the per-core figure and
//! the 2-core scaling.
//!
//! Before criterion, a scaling pass runs each case in alternating rounds
//! (`PMP_IMPORT_ROUNDS`, default 7, of `PMP_IMPORT_RECORDS`, default 20 000, records each),
//! so that load from other processes hits every configuration alike: `workers` = 1 and 2
//! on all cores, and `workers` = 1 with the whole process on one core (`taskset -a -p`,
//! util-linux; the row is left out where `taskset` is missing). `workers` = 1 is one thread
//! (the calling thread) doing everything — read, decrypt, transform, MAC chain, write — so
//! it keeps one core busy; the one-core row then differs from it only by the other
//! processes' share. It prints per configuration the best and the median
//! round, the ratios, the process CPU time per record (all threads),
//! the cores it kept busy on average (CPU time / wall time: on a machine shared
//! with other work the scheduler's fair share, not the thread count, can set it) and the
//! load average before and after. `PMP_IMPORT_SCALING_ONLY=1` stops after
//! it.

use std::hint::black_box;
use std::io::Cursor;
use std::time::{Duration, Instant};

use aes::Aes256;
use cipher::{
    BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit,
    KeyInit, array::Array,
};
use cmac::{Cmac, Mac};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use des::TdesEde2;
use pmp_core::hsm::SoftHsm;
use pmp_core::import::{self, Options};
use pmp_core::order::product::Product;
use pmp_core::{Algorithm, Padding};
use pmp_demo::{self as demo, Cards, IssuerSide, LayoutChoice, Scenario};

const N: u64 = 5_000;

fn cbc_dec<D: BlockModeDecrypt>(mut d: D, buf: &mut [u8]) {
    let (blocks, _) = Array::slice_as_chunks_mut(buf);
    d.decrypt_blocks(blocks);
}

fn cbc_enc<E: BlockModeEncrypt>(mut e: E, buf: &mut [u8]) {
    let (blocks, _) = Array::slice_as_chunks_mut(buf);
    e.encrypt_blocks(blocks);
}

/// The plaintext lengths of each valid card's data attributes and of its encrypted fields.
fn attribute_lengths(seed: u64) -> Vec<[usize; 8]> {
    Cards::new(seed, N)
        .filter(|c| c.defect.is_none())
        .map(|c| {
            [
                c.pan.len(),
                c.expiry.len(),
                c.service_code.len(),
                c.name.len(),
                c.track2.len(),
                c.address.len(),
                c.city.len(),
                c.postcode.len(),
            ]
        })
        .collect()
}

/// The raw cipher work of one import with the crates alone.
fn bound(file_bytes: usize, lens: &[[usize; 8]], per_field: bool, dkep_aes: bool) {
    let tdes = TdesEde2::new_from_slice(&[0x13; 16]).unwrap();
    let aes = Aes256::new_from_slice(&[0x37; 32]).unwrap();
    let mac_key = Cmac::<Aes256>::new_from_slice(&[0x55; 32]).unwrap();
    let iv8 = [0u8; 8];
    let iv16 = [0u8; 16];
    let mut buf = vec![0u8; 256];
    if !per_field {
        let mut file = vec![0u8; file_bytes / 8 * 8];
        cbc_dec(
            cbc::Decryptor::<&TdesEde2>::inner_iv_slice_init(&tdes, &iv8).unwrap(),
            &mut file,
        );
        black_box(&file);
    }
    let mut macced = Vec::with_capacity(512);
    for rec in lens {
        macced.clear();
        for (i, &len) in rec.iter().enumerate() {
            if per_field && (i == 0 || i == 4) {
                // The issuer's ciphertext: decrypted (translate source).
                let n = Padding::Iso9797M2.padded_len(len, 8);
                cbc_dec(
                    cbc::Decryptor::<&TdesEde2>::inner_iv_slice_init(&tdes, &iv8).unwrap(),
                    &mut buf[..n],
                );
            }
            if dkep_aes {
                let n = Padding::Iso9797M2.padded_len(len, 16);
                cbc_enc(
                    cbc::Encryptor::<&Aes256>::inner_iv_slice_init(&aes, &iv16).unwrap(),
                    &mut buf[..n],
                );
                macced.extend_from_slice(&buf[..n]);
            } else {
                let n = Padding::Iso9797M2.padded_len(len, 8);
                cbc_enc(
                    cbc::Encryptor::<&TdesEde2>::inner_iv_slice_init(&tdes, &iv8).unwrap(),
                    &mut buf[..n],
                );
                macced.extend_from_slice(&buf[..n]);
            }
        }
        // PIN block: ISO 0 under TDES → ISO 4 under AES (decipher + two AES blocks).
        let mut b8 = Array::from([0u8; 8]);
        tdes.decrypt_block(&mut b8);
        let mut b16 = Array::from([0u8; 16]);
        aes.encrypt_block(&mut b16);
        aes.encrypt_block(&mut b16);
        macced.extend_from_slice(&b16);
        let mut m = mac_key.clone();
        m.update(&macced);
        black_box(m.finalize());
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process's CPU time so far, all threads (Linux `/proc/self/stat`, in clock ticks of
/// 10 ms); `None` elsewhere.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The process's CPU affinity list as `taskset` prints it (`0,1`), if `taskset` runs.
fn affinity() -> Option<String> {
    let out = std::process::Command::new("taskset")
        .args(["-c", "-p", &std::process::id().to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.rsplit(": ").next()?.trim().to_string())
        .filter(|l| out.status.success() && !l.is_empty())
}

/// Sets the CPU affinity of every thread of the process (threads started later inherit
/// the calling thread's); `false` if `taskset` failed.
fn set_affinity(cpus: &str) -> bool {
    // `taskset -a` fails when a thread it lists ends before it gets to it (an import's
    // threads are just ending): try again.
    (0..20).any(|_| {
        let ok = std::process::Command::new("taskset")
            .args(["-a", "-c", "-p", cpus, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            std::thread::sleep(Duration::from_millis(10));
        }
        ok
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Workers 1 and 2 on all cores and workers 1 on one core, in alternating rounds on one
/// case; prints each configuration's best and median round, the ratios and the CPU time
/// per record.
fn scaling(name: &str, hsm: &SoftHsm, product: &Product, file: &[u8], n: u64) {
    let rounds = env_or("PMP_IMPORT_ROUNDS", 7).max(1);
    let load_before = load_average();
    let all = affinity();
    let one = all
        .as_deref()
        .and_then(|l| l.split([',', '-']).next())
        .map(str::to_string);
    // (label, workers, cpus)
    let mut configs = vec![
        ("workers=1, all cores", 1usize, None),
        ("workers=2, all cores", 2, None),
    ];
    if let (Some(_), Some(one)) = (&all, &one) {
        configs.push(("workers=1, one core", 1, Some(one.clone())));
    }
    let mut rate: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut cpu = vec![Duration::ZERO; configs.len()];
    let mut wall = vec![Duration::ZERO; configs.len()];
    for _ in 0..rounds {
        for (side, (_, workers, cpus)) in configs.iter().enumerate() {
            if let Some(c) = cpus
                && !set_affinity(c)
            {
                continue;
            }
            let opts = Options {
                workers: *workers,
                ..Options::default()
            };
            let c0 = process_cpu();
            let t0 = Instant::now();
            let (s, _, _) = import::import(
                hsm,
                product,
                Cursor::new(file),
                std::io::sink(),
                std::io::sink(),
                &opts,
            )
            .unwrap();
            let t = t0.elapsed();
            if let (Some(a), Some(b)) = (c0, process_cpu()) {
                cpu[side] += b - a;
                wall[side] += t;
            }
            if cpus.is_some() {
                assert!(set_affinity(all.as_deref().unwrap_or_default()));
            }
            assert_eq!(s.read, n);
            rate[side].push(n as f64 / t.as_secs_f64());
        }
    }
    println!(
        "scaling {name}: {rounds} rounds of {n} records, load average {load_before} before, {} after",
        load_average()
    );
    let mut best = Vec::new();
    let mut median = Vec::new();
    for (side, (label, _, _)) in configs.iter().enumerate() {
        let v = &mut rate[side];
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let (b, m) = (v[v.len() - 1], v[v.len() / 2]);
        best.push(b);
        median.push(m);
        println!(
            "  {label:<22} best {b:>7.0} records/s, median {m:>7.0}; CPU {:.1} us/record (all threads), {:.2} cores busy",
            cpu[side].as_secs_f64() * 1e6 / (n * v.len() as u64) as f64,
            cpu[side].as_secs_f64() / wall[side].as_secs_f64().max(1e-9)
        );
    }
    println!(
        "  workers 2/1 (all cores): best {:.2}x, median {:.2}x",
        best[1] / best[0],
        median[1] / median[0]
    );
    if best.len() > 2 {
        println!(
            "  two cores (workers=2) / one core (workers=1): best {:.2}x, median {:.2}x",
            best[1] / best[2],
            median[1] / median[2]
        );
    }
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("pmp-bench-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut g = c.benchmark_group("import");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    let cases = [
        (
            "tdes-file/aes-dkeps",
            Scenario {
                layout: LayoutChoice::Delimited,
                whole_file: true,
                per_field: false,
                tk_algorithm: Algorithm::Tdes,
                dkep_algorithm: Algorithm::Aes,
            },
        ),
        (
            "tdes-field/tdes-dkeps",
            Scenario {
                layout: LayoutChoice::Delimited,
                whole_file: false,
                per_field: true,
                tk_algorithm: Algorithm::Tdes,
                dkep_algorithm: Algorithm::Tdes,
            },
        ),
    ];
    for (i, (name, scenario)) in cases.into_iter().enumerate() {
        let hsm = SoftHsm::create_with_test_lmk(&dir.join(format!("ks{i}"))).unwrap();
        let issuer = IssuerSide::new(scenario).unwrap();
        issuer.send_keys(&hsm).unwrap();
        demo::bureau_keys(&hsm, scenario.dkep_algorithm).unwrap();
        let product = Product::parse(&issuer.product_xml()).unwrap();
        let n = env_or("PMP_IMPORT_RECORDS", 20_000);
        let mut big = Vec::new();
        issuer.write_file(Cards::new(3, n), &mut big).unwrap();
        scaling(name, &hsm, &product, &big, n);
        drop(big);
        if std::env::var_os("PMP_IMPORT_SCALING_ONLY").is_some() {
            continue;
        }
        let mut file = Vec::new();
        issuer.write_file(Cards::new(3, N), &mut file).unwrap();
        for workers in [1, 2] {
            g.bench_function(format!("{name}/workers={workers}"), |b| {
                b.iter(|| {
                    let opts = Options {
                        workers,
                        ..Options::default()
                    };
                    let (s, _, _) = import::import(
                        &hsm,
                        &product,
                        Cursor::new(&file[..]),
                        std::io::sink(),
                        std::io::sink(),
                        &opts,
                    )
                    .unwrap();
                    assert_eq!(s.read, N);
                })
            });
        }
        let lens = attribute_lengths(3);
        let bytes = file.len();
        g.bench_function(format!("{name}/raw-cipher-bound"), |b| {
            b.iter(|| {
                bound(
                    bytes,
                    &lens,
                    scenario.per_field,
                    scenario.dkep_algorithm == Algorithm::Aes,
                )
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
