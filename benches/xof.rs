//! Issue 5 benchmark: XOF write, and read-and-verify (every record MAC, the chain, the
//! trailer, through `SoftHsm`), next to a bare `quick-xml` event loop over the same bytes.
//! The ratio read+verify / bare loop is the codec's overhead (parsing into records,
//! validation, canonical MAC input, AES-CMAC in the HSM).
//!
//! The file: 20,000 records of 3 attributes (32-byte AES-CBC, 16-byte AES-ECB, 40-byte
//! TDES-CBC ciphertexts), about 530 bytes a record. Records/s = bytes/s ÷ bytes per record,
//! both printed at the start.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pmp_core::hsm::{Hsm, KeyInfo, KeySpec, SoftHsm};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::xof::{Attribute, Header, KeyRef, Reader, Record, Writer};
use pmp_core::{Algorithm, Mode, Padding};

const RECORDS: u64 = 20_000;

fn key_ref(k: &KeyInfo) -> KeyRef {
    KeyRef {
        label: k.spec.label.clone(),
        usage: k.spec.usage,
        algorithm: k.spec.algorithm,
        kcv: k.kcv,
    }
}

fn attr(
    name: &str,
    key: &str,
    mode: Mode,
    block: usize,
    padding: Padding,
    len: usize,
) -> Attribute {
    Attribute {
        name: name.into(),
        key: key.into(),
        mode,
        iv: (mode == Mode::Cbc).then(|| vec![0x5A; block]),
        padding,
        ciphertext: vec![0xA5; len],
    }
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("pmp-bench-xof-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hsm = SoftHsm::create_with_test_lmk(&dir).expect("store");
    let g = |label: &str, alg, len, usage, mode| {
        hsm.generate_key(&KeySpec::new(label, alg, len, usage, mode))
            .expect("key")
    };
    let mac = g("XOF-MAC", Algorithm::Aes, 32, KeyUsage::M6, ModeOfUse::C);
    let dka = g("DK-AES", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B);
    let dkt = g("DK-TDES", Algorithm::Tdes, 16, KeyUsage::D0, ModeOfUse::B);
    let header = Header {
        order_id: "ORD-BENCH".into(),
        issuer: "Bench Bank".into(),
        product: "VISA-CLASSIC".into(),
        created: "2025-01-31T12:00:00Z".into(),
        keys: vec![key_ref(&dka), key_ref(&dkt), key_ref(&mac)],
        mac_key: "XOF-MAC".into(),
        test: false,
    };
    let mut rec = Record {
        seq: 0,
        issuer_id: String::new(),
        attributes: vec![
            attr("PAN", "DK-AES", Mode::Cbc, 16, Padding::Iso9797M2, 32),
            attr("NAME", "DK-AES", Mode::Ecb, 16, Padding::Pkcs7, 16),
            attr("TRACK2", "DK-TDES", Mode::Cbc, 8, Padding::None, 40),
        ],
    };
    let write = |rec: &mut Record, cap: usize| {
        let mut w = Writer::new(Vec::with_capacity(cap), &header, &hsm, &mac.handle).unwrap();
        for s in 1..=RECORDS {
            rec.seq = s;
            rec.issuer_id.clear();
            rec.issuer_id.push_str("CARD-");
            rec.issuer_id.push_str(&s.to_string());
            w.write_record(rec).unwrap();
        }
        w.finish().unwrap().0
    };
    let file = write(&mut rec, 0);
    let bytes = file.len() as u64;
    eprintln!(
        "xof bench file: {RECORDS} records, {bytes} bytes, {:.1} bytes/record",
        bytes as f64 / RECORDS as f64
    );

    let mut g = c.benchmark_group("xof");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    g.bench_function("write", |b| {
        b.iter(|| black_box(write(&mut rec, file.len()).len()))
    });
    g.bench_function("read_and_verify", |b| {
        b.iter(|| {
            let mut r = Reader::new(&file[..], &hsm).unwrap();
            let mut n = 0usize;
            while let Some(rec) = r.next_record().unwrap() {
                n += rec.attributes.len();
            }
            black_box(n)
        })
    });
    g.bench_function("bare_quick_xml_loop", |b| {
        b.iter(|| {
            let mut r = quick_xml::Reader::from_reader(&file[..]);
            let mut buf = Vec::with_capacity(4096);
            let mut n = 0usize;
            loop {
                buf.clear();
                match r.read_event_into(&mut buf).unwrap() {
                    quick_xml::events::Event::Eof => break,
                    _ => n += 1,
                }
            }
            black_box(n)
        })
    });
    g.finish();
    drop(hsm);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
