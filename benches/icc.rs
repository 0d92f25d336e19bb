//! ICC RSA key generation and data preparation with ICC keys, beside OpenSSL, in one run.
//!
//! Part 1, keys/s on one thread at 1024, 1152 and 1408 bits with exponents 3 and 65537:
//! - `SoftHsm::generate_icc_rsa_key` with `use_pool: false` (generation, CRT parts, their
//!   encryption under an AES KTK — what `pmp prep` pays per card without a pool);
//! - the bare `pmp_core::rsa::RsaPrivateKey::generate` (the `rsa` crate 0.10);
//! - OpenSSL's `Rsa::generate_with_e` (the `openssl` crate; OpenSSL 3 on Debian);
//!
//! each side in alternating rounds of a fixed time (so load from other processes hits all
//! alike); the key counts of all rounds are pooled, since key generation time varies widely
//! from key to key. Ratios are pmp-core ÷ OpenSSL (higher is better for pmp-core).
//!
//! Part 2, `pmp_core::prep::run` cards/s (all cores) on a DDA profile with 1024-bit ICC
//! keys (exponent 3), the keys taken from a pool filled beforehand, then generated in line,
//! and the same cards with a profile without ICC keys.
//!
//! Run: `cargo bench --bench icc` (`PMP_ICC_ROUND_MS`, default 1500: a side's round;
//! `PMP_ICC_ROUNDS`, default 3; `PMP_ICC_CARDS`, default 300). See docs/benchmarks.md.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openssl::bn::BigNum;
use openssl::rsa::Rsa;
use pmp_core::hsm::rsa::{IccRsaRequest, RsaKeySpec};
use pmp_core::hsm::{CipherSpec, Hsm, KeySpec, SoftHsm};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::prep::profile::Profile;
use pmp_core::prep::{self, Options};
use pmp_core::rsa::{RsaExponent, RsaPrivateKey};
use pmp_core::xof::{self, Attribute, KeyRef};
use pmp_core::{Algorithm, Mode, Padding};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!("pmp-bench-icc-{}", hex::encode(r)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn store(dir: &Path) -> SoftHsm {
    let hsm = SoftHsm::create_with_test_lmk(dir).unwrap();
    let t = |l: &str, u, m| KeySpec::new(l, Algorithm::Aes, 32, u, m).exportable();
    for (l, u, m) in [
        ("KTK", KeyUsage::K0, ModeOfUse::B),
        ("PTK", KeyUsage::P0, ModeOfUse::B),
        ("MTK", KeyUsage::M6, ModeOfUse::C),
        ("DTK", KeyUsage::D0, ModeOfUse::B),
    ] {
        hsm.generate_key(&t(l, u, m)).unwrap();
    }
    hsm.generate_key(&KeySpec::new(
        "DKEP",
        Algorithm::Aes,
        32,
        KeyUsage::D0,
        ModeOfUse::B,
    ))
    .unwrap();
    hsm.generate_key(&KeySpec::new(
        "XOF-MAC",
        Algorithm::Aes,
        32,
        KeyUsage::M6,
        ModeOfUse::C,
    ))
    .unwrap();
    hsm.generate_rsa_key(&RsaKeySpec {
        label: "ISS".into(),
        bits: 1408,
        exponent: RsaExponent::Three,
        usage: KeyUsage::S0,
    })
    .unwrap();
    hsm
}

fn write_xof(hsm: &SoftHsm, n: usize, path: &Path) {
    let kr = |label: &str| {
        let i = hsm.key_info(&hsm.find_key(label).unwrap()).unwrap();
        KeyRef {
            label: i.spec.label,
            usage: i.spec.usage,
            algorithm: i.spec.algorithm,
            kcv: i.kcv,
        }
    };
    let header = xof::Header {
        order_id: "BENCH".into(),
        issuer: "Bench Bank".into(),
        product: "PROD".into(),
        created: "2025-03-01T09:30:00Z".into(),
        keys: vec![kr("DKEP"), kr("XOF-MAC")],
        mac_key: "XOF-MAC".into(),
        test: false,
    };
    let mac = hsm.find_key("XOF-MAC").unwrap();
    let dk = hsm.find_key("DKEP").unwrap();
    let mut w = xof::Writer::new(Vec::new(), &header, hsm, &mac).unwrap();
    for i in 0..n {
        let pan = format!("4761739{:09}", i);
        let mut attributes = Vec::new();
        for (name, v) in [("PAN", pan.as_str()), ("EXPIRY", "2912")] {
            let iv = [7u8; 16];
            let mut ct = vec![0u8; v.len() + 16];
            let k = hsm
                .encrypt(
                    &CipherSpec::cbc(&dk, &iv, Padding::Iso9797M2),
                    v.as_bytes(),
                    &mut ct,
                )
                .unwrap();
            ct.truncate(k);
            attributes.push(Attribute {
                name: name.into(),
                key: "DKEP".into(),
                mode: Mode::Cbc,
                iv: Some(iv.to_vec()),
                padding: Padding::Iso9797M2,
                ciphertext: ct,
            });
        }
        w.write_record(&xof::Record {
            seq: i as u64 + 1,
            issuer_id: format!("B{i:06}"),
            attributes,
        })
        .unwrap();
    }
    std::fs::write(path, w.finish().unwrap().0).unwrap();
}

fn profile(oda: bool) -> String {
    let icc = if oda {
        format!(
            r#"<icc-rsa bits="1024" exponent="3" issuer-key="ISS" issuer-certificate="{}" issuer-exponent="03" ca-index="92"/>
  <dgi id="0201"><tag id="90" content="issuer-certificate"/><tag id="8F" content="ca-index"/></dgi>
  <dgi id="0202"><tag id="9F46" content="icc-certificate"/><tag id="9F47" content="icc-exponent"/><tag id="9F48" content="icc-remainder"/></dgi>
  <dgi id="8201" content="icc-rsa-crt"/><dgi id="8202" content="icc-rsa-crt"/><dgi id="8203" content="icc-rsa-crt"/>
  <dgi id="8204" content="icc-rsa-crt"/><dgi id="8205" content="icc-rsa-crt"/>"#,
            "5A".repeat(248)
        )
    } else {
        String::new()
    };
    let oda_attr = if oda { r#" oda="true""# } else { "" };
    format!(
        r#"<profile format="pmp-profile-1" name="BENCH" product="PROD">
  <keys ktk="KTK" ptk="PTK" mtk="MTK" dtk="DTK" xof-mac-key="XOF-MAC"/>
  {icc}
  <dgi id="0101"{oda_attr}><tag id="5A" from="PAN" format="cn"/><tag id="5F24" from="EXPIRY" format="yymm-end-of-month"/></dgi>
</profile>"#
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("icc: bench");
        return;
    }
    let round = Duration::from_millis(env_num("PMP_ICC_ROUND_MS", 1500));
    let rounds = env_num("PMP_ICC_ROUNDS", 3);
    let cards = env_num("PMP_ICC_CARDS", 300) as usize;
    let dir = TempDir::new();
    let hsm = store(&dir.path("ks"));
    let ktk = hsm.find_key("KTK").unwrap();

    println!(
        "ICC RSA key generation, keys/s on one thread ({rounds} rounds of {} ms per side)",
        round.as_millis()
    );
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "bits / e", "SoftHsm", "rsa crate", "OpenSSL", "HSM/OSSL", "rsa/OSSL"
    );
    for bits in [1024u32, 1152, 1408] {
        for e in [RsaExponent::Three, RsaExponent::F4] {
            let mut n = [0u64; 3];
            let mut t = [Duration::ZERO; 3];
            let bn = BigNum::from_u32(e.value()).unwrap();
            let mut sides: [Box<dyn FnMut()>; 3] = [
                Box::new(|| {
                    black_box(
                        hsm.generate_icc_rsa_key(&IccRsaRequest {
                            bits,
                            exponent: e,
                            ktk: &ktk,
                            padding: Padding::Iso9797M2,
                            use_pool: false,
                        })
                        .unwrap(),
                    );
                }),
                Box::new(|| {
                    black_box(RsaPrivateKey::generate(bits, e).unwrap());
                }),
                Box::new(|| {
                    black_box(Rsa::generate_with_e(bits, &bn).unwrap());
                }),
            ];
            for _ in 0..rounds {
                for (i, f) in sides.iter_mut().enumerate() {
                    let start = Instant::now();
                    loop {
                        f();
                        n[i] += 1;
                        if start.elapsed() >= round {
                            break;
                        }
                    }
                    t[i] += start.elapsed();
                }
            }
            let rate = |i: usize| n[i] as f64 / t[i].as_secs_f64();
            println!(
                "{:<16} {:>12.1} {:>12.1} {:>12.1} {:>10.2} {:>10.2}",
                format!("{bits} / {}", e.value()),
                rate(0),
                rate(1),
                rate(2),
                rate(0) / rate(2),
                rate(1) / rate(2)
            );
        }
    }

    // The issuer's signature per card: SoftHsm's sign_emv_recovery (blinded, checked raw
    // private operation of the rsa crate) beside OpenSSL's raw private operation.
    println!();
    let iss = hsm.find_key("ISS").unwrap();
    let ossl_key = Rsa::generate_with_e(1408, &BigNum::from_u32(3).unwrap()).unwrap();
    let mut m = vec![0x5Au8; 176];
    m[0] = 0x6A;
    m[1] = 0x04;
    m[175] = 0xBC;
    let mut sig = vec![0u8; 176];
    let mut n = [0u64; 2];
    let mut t = [Duration::ZERO; 2];
    for _ in 0..rounds {
        let start = Instant::now();
        while start.elapsed() < round {
            black_box(hsm.sign_emv_recovery(&iss, &m).unwrap());
            n[0] += 1;
        }
        t[0] += start.elapsed();
        let start = Instant::now();
        while start.elapsed() < round {
            ossl_key
                .private_encrypt(&m, &mut sig, openssl::rsa::Padding::NONE)
                .unwrap();
            black_box(&sig);
            n[1] += 1;
        }
        t[1] += start.elapsed();
    }
    let (a, b) = (
        n[0] as f64 / t[0].as_secs_f64(),
        n[1] as f64 / t[1].as_secs_f64(),
    );
    println!(
        "issuer signature, 1408 bits, one thread: SoftHsm sign_emv_recovery {a:.0}/s, OpenSSL raw private op {b:.0}/s, ratio {:.2}",
        a / b
    );

    println!();
    println!("pmp prep, {cards} cards, DDA profile (1024-bit ICC keys, e=3, 1408-bit issuer key)");
    write_xof(&hsm, cards, &dir.path("order.xof"));
    let dda = Profile::parse(&profile(true)).unwrap();
    let plain = Profile::parse(&profile(false)).unwrap();
    let start = Instant::now();
    hsm.fill_icc_key_pool(1024, RsaExponent::Three, cards as u64)
        .unwrap();
    let fill = start.elapsed();
    println!(
        "  pool fill ({cards} keys, one call):  {:>8.1} keys/s",
        cards as f64 / fill.as_secs_f64()
    );
    for (what, profile, pool) in [
        ("with the pool", &dda, true),
        ("generated in line", &dda, false),
        ("no ICC keys (baseline)", &plain, true),
    ] {
        let out = dir.path("production.xml");
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(dir.path("production.rejects.txt"));
        let s = prep::run_files(
            &hsm,
            profile,
            &dir.path("order.xof"),
            &out,
            None,
            &Options {
                icc_use_pool: pool,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(s.prepared as usize, cards);
        println!(
            "  {what:<24} {:>8.1} cards/s on {} workers (ICC keys: {} from the pool, {} in line)",
            s.cards_per_second(),
            s.workers,
            s.icc_keys_from_pool,
            s.icc_keys_in_line
        );
    }
}
