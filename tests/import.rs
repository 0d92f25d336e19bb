//! The import pipeline: every layout × encryption mode round-trips through the XOF, the
//! reject report accounts for every bad record, counts reconcile, bad files fail cleanly
//! with no output, output order is preserved under parallelism, and the demo runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

use pmp_core::hsm::{Capabilities, CipherSpec, Hsm, KeyHandle, KeyInfo, KeySpec, SoftHsm};
use pmp_core::import::{self, Options};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::order::product::Product;
use pmp_core::{Algorithm, Error, Padding};
use pmp_demo::{self as demo, Cards, IssuerSide, LayoutChoice, Scenario};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!("pmp-import-{name}-{}", hex::encode(r)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Setup {
    dir: TempDir,
    hsm: SoftHsm,
    issuer: IssuerSide,
    product: Product,
}

fn setup(name: &str, scenario: Scenario) -> Setup {
    let dir = TempDir::new(name);
    let hsm = SoftHsm::create_with_test_lmk(&dir.0.join("ks")).unwrap();
    let issuer = IssuerSide::new(scenario).unwrap();
    issuer.send_keys(&hsm).unwrap();
    demo::bureau_keys(&hsm, scenario.dkep_algorithm).unwrap();
    let product = Product::parse(&issuer.product_xml()).unwrap();
    Setup {
        dir,
        hsm,
        issuer,
        product,
    }
}

fn write_issuer_file(s: &Setup, cards: Cards) -> PathBuf {
    let p = s.dir.0.join("in.dat");
    let mut f = std::fs::File::create(&p).unwrap();
    s.issuer.write_file(cards, &mut f).unwrap();
    p
}

fn defects(seed: u64, n: u64) -> u64 {
    Cards::new(seed, n).filter(|c| c.defect.is_some()).count() as u64
}

fn outputs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "ks" && n != "in.dat")
        .collect();
    v.sort();
    v
}

fn run_scenario(name: &str, scenario: Scenario, n: u64, workers: usize) {
    let s = setup(name, scenario);
    let input = write_issuer_file(&s, Cards::new(7, n));
    let out = s.dir.0.join("order.xof");
    let opts = Options {
        workers,
        batch: 7,
        ..Options::default()
    };
    let sum = import::import_file(&s.hsm, &s.product, &input, &out, None, &opts)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let bad = defects(7, n);
    assert_eq!(sum.read, n, "{name}");
    assert_eq!(sum.declared, Some(n), "{name}");
    assert_eq!(sum.rejected, bad, "{name}");
    assert_eq!(sum.written, n - bad, "{name}");
    assert_eq!(pmp_core::xof::verify_file(&out, &s.hsm).unwrap(), n - bad);
    assert_eq!(
        demo::verify_against(&s.hsm, &out, Cards::new(7, n)).unwrap(),
        n - bad,
        "{name}"
    );
    // The reject report: one line per rejected record, comments, never a value.
    let rej = std::fs::read_to_string(import::default_rejects_path(&out)).unwrap();
    let lines: Vec<&str> = rej.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len() as u64, bad, "{name}");
    let expected: Vec<(String, [String; 6])> = Cards::new(7, n)
        .filter_map(|c| {
            c.defect.map(|d| {
                let (field, reason) = match d {
                    // An individually encrypted PAN: every failure after decryption is one
                    // reason, so the report is no padding oracle.
                    demo::Defect::BadLuhn if scenario.per_field => ("pan", "field-decrypt"),
                    demo::Defect::BadLuhn => ("pan", "pan-luhn"),
                    demo::Defect::BadExpiry => ("expiry", "expiry-format"),
                    demo::Defect::BadName => ("name", "name-charset"),
                    demo::Defect::MissingPan => ("pan", "missing"),
                    demo::Defect::BadPinBlock => ("pin_block", "pin-block"),
                };
                (
                    format!("id={} field={field} reason={reason}", c.id),
                    [
                        c.pan.clone(),
                        c.name.clone(),
                        c.track2.clone(),
                        c.address.clone(),
                        c.city.clone(),
                        c.postcode.clone(),
                    ],
                )
            })
        })
        .collect();
    for (line, (want, values)) in lines.iter().zip(&expected) {
        assert!(line.starts_with("record="), "{line}");
        assert!(line.ends_with(want.as_str()), "{name}: {line} vs {want}");
        // No value of a rejected card (PAN, name, track 2, address) is in the report.
        for v in values.iter().filter(|v| v.len() >= 4) {
            assert!(
                !rej.contains(v.as_str()),
                "{name}: a value is in the report"
            );
        }
    }
}

fn sc(layout: LayoutChoice, whole: bool, per_field: bool, tk: Algorithm) -> Scenario {
    Scenario {
        layout,
        whole_file: whole,
        per_field,
        tk_algorithm: tk,
        dkep_algorithm: Algorithm::Aes,
    }
}

#[test]
fn every_layout_and_encryption_mode_round_trips() {
    for layout in [
        LayoutChoice::Delimited,
        LayoutChoice::Fixed,
        LayoutChoice::Xml,
        LayoutChoice::ProcessorXml {
            totals_after: false,
        },
    ] {
        for (mode, scenario) in [
            ("clear", sc(layout, false, false, Algorithm::Tdes)),
            ("tdes-file", sc(layout, true, false, Algorithm::Tdes)),
            ("aes-file", sc(layout, true, false, Algorithm::Aes)),
            ("tdes-field", sc(layout, false, true, Algorithm::Tdes)),
            ("aes-file+field", sc(layout, true, true, Algorithm::Aes)),
        ] {
            run_scenario(&format!("{layout:?}-{mode}"), scenario, 83, 2);
        }
    }
}

#[test]
fn a_processor_file_with_its_totals_after_the_records_round_trips() {
    run_scenario(
        "processor-totals-after",
        sc(
            LayoutChoice::ProcessorXml { totals_after: true },
            true,
            false,
            Algorithm::Tdes,
        ),
        120,
        2,
    );
}

#[test]
fn tdes_dkeps_work_too() {
    let mut s = sc(LayoutChoice::Delimited, false, true, Algorithm::Tdes);
    s.dkep_algorithm = Algorithm::Tdes;
    run_scenario("tdes-dkeps", s, 50, 1);
}

#[test]
fn parallel_output_keeps_the_file_order() {
    for workers in [1, 2, 4] {
        run_scenario(
            &format!("order-{workers}"),
            sc(LayoutChoice::Delimited, true, false, Algorithm::Tdes),
            600,
            workers,
        );
    }
}

fn expect_clean_failure(s: &Setup, input: &Path, product: &Product) -> Error {
    let out = s.dir.0.join("order.xof");
    let e = import::import_file(&s.hsm, product, input, &out, None, &Options::default())
        .expect_err("the import must fail");
    assert!(
        outputs(&s.dir.0).is_empty(),
        "left: {:?}",
        outputs(&s.dir.0)
    );
    e
}

#[test]
fn a_wrong_transport_key_stops_the_file() {
    let s = setup("wrong-tk", Scenario::default());
    let input = write_issuer_file(&s, Cards::new(1, 40));
    // The product says another KCV: refused before reading.
    let mut p = s.product.clone();
    p.keys.transport.as_mut().unwrap().kcv = Some(pmp_core::Kcv::from_hex("000000").unwrap());
    assert!(matches!(
        expect_clean_failure(&s, &input, &p),
        Error::KcvMismatch { .. }
    ));
    // The file is encrypted under another key (the KCV in the product is the HSM's): the
    // final padding does not verify, or the clear text is not a valid file.
    let other = IssuerSide::new(Scenario::default()).unwrap();
    let mut f = std::fs::File::create(&input).unwrap();
    other.write_file(Cards::new(1, 40), &mut f).unwrap();
    drop(f);
    // Almost always the final padding fails; in the rare case that the garbage's last block
    // happens to be valid padding, the garbage is not a valid issuer file.
    match expect_clean_failure(&s, &input, &s.product) {
        Error::Integrity { what, reason } => {
            assert_eq!(what, "issuer file");
            assert!(reason.contains("final padding"), "{reason}");
        }
        Error::Invalid { field, reason } => assert_eq!(field, "issuer file", "{reason}"),
        e => panic!("unexpected error: {e:?}"),
    }
}

fn assert_padding_failure(e: Error) {
    match e {
        Error::Integrity { what, reason } => {
            assert_eq!(what, "issuer file");
            assert!(
                reason.contains("final padding") && reason.contains("wrong key"),
                "{reason}"
            );
        }
        e => panic!("expected a padding failure, got {e:?}"),
    }
}

#[test]
fn bad_padding_and_truncation_stop_the_file() {
    let s = setup("trunc", Scenario::default());
    let input = write_issuer_file(&s, Cards::new(1, 40));
    let full = std::fs::read(&input).unwrap();
    // Not a whole number of blocks.
    std::fs::write(&input, &full[..full.len() - 3]).unwrap();
    let e = expect_clean_failure(&s, &input, &s.product);
    assert!(!matches!(e, Error::KcvMismatch { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("truncated") && e.contains("block"), "{e}");
    // Cut at a block boundary: the new last block is text (it ends in a newline, 0x0A,
    // which is no PKCS#7 padding of an 8-byte block): the final padding stops it.
    std::fs::write(&input, &full[..full.len() - 8]).unwrap();
    assert_padding_failure(expect_clean_failure(&s, &input, &s.product));
    // The last byte of the second-to-last block altered: CBC flips the same bits in the
    // padding byte (pad ^ 0x5A > 8): a bad padding, deterministically.
    let mut bad = full.clone();
    let at = full.len() - 8 - 1;
    bad[at] ^= 0x5A;
    std::fs::write(&input, &bad).unwrap();
    assert_padding_failure(expect_clean_failure(&s, &input, &s.product));
    // Shorter than the IV.
    std::fs::write(&input, &full[..5]).unwrap();
    match expect_clean_failure(&s, &input, &s.product) {
        Error::Invalid { field, reason } => {
            assert_eq!(field, "encrypted file");
            assert!(reason.contains("shorter than its IV"), "{reason}");
        }
        e => panic!("unexpected error: {e:?}"),
    }
}

#[test]
fn counts_must_reconcile() {
    let s = setup(
        "count",
        sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
    );
    let input = write_issuer_file(&s, Cards::new(1, 30));
    let text = std::fs::read_to_string(&input).unwrap();
    std::fs::write(&input, text.replace("TRL,30", "TRL,31")).unwrap();
    let e = expect_clean_failure(&s, &input, &s.product).to_string();
    assert!(e.contains("declares 31"), "{e}");
    // A record removed in transit.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(5);
    std::fs::write(&input, lines.join("\n")).unwrap();
    expect_clean_failure(&s, &input, &s.product);
    // The trailer lost.
    std::fs::write(&input, text.replace("TRL,30\n", "")).unwrap();
    let e = expect_clean_failure(&s, &input, &s.product).to_string();
    assert!(e.contains("trailer"), "{e}");
}

#[test]
fn decrypting_reader_round_trips_at_every_length() {
    use std::io::Read;
    let dir = TempDir::new("reader");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0.join("ks")).unwrap();
    for (alg, len) in [(Algorithm::Tdes, 16), (Algorithm::Aes, 32)] {
        let k = hsm
            .generate_key(&KeySpec::new(
                &format!("K-{alg}"),
                alg,
                len,
                KeyUsage::D0,
                ModeOfUse::B,
            ))
            .unwrap();
        let bs = alg.block_size();
        let iv = vec![0x11u8; bs];
        for n in [0, 1, 7, 8, 15, 16, 17, 65535, 65536, 65537, 200_000] {
            let msg: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            for padding in [Padding::Pkcs7, Padding::Iso9797M2] {
                let mut ct = vec![0u8; padding.padded_len(n, bs)];
                let m = hsm
                    .encrypt(&CipherSpec::cbc(&k.handle, &iv, padding), &msg, &mut ct)
                    .unwrap();
                let spec = CipherSpec::cbc(&k.handle, &iv, padding);
                let mut r = hsm
                    .decrypting_reader(&spec, Box::new(std::io::Cursor::new(ct[..m].to_vec())))
                    .unwrap();
                let mut out = Vec::new();
                r.read_to_end(&mut out).unwrap();
                assert_eq!(out, msg, "{alg} {n} {padding:?}");
                // Truncated by one byte: an error, never silent.
                let mut r = hsm
                    .decrypting_reader(&spec, Box::new(std::io::Cursor::new(ct[..m - 1].to_vec())))
                    .unwrap();
                let mut out = Vec::new();
                assert!(r.read_to_end(&mut out).is_err());
            }
        }
    }
}

#[test]
fn demo_runs_end_to_end() {
    let dir = TempDir::new("demo");
    let out = dir.0.join("demo");
    let s = demo::run(&out, 150, demo::Backend::SoftHsm, &Options::default()).unwrap();
    assert_eq!(s.import.read, 150);
    assert_eq!(s.import.rejected, defects(20_250_101, 150));
    assert_eq!(s.xof_verified, s.import.written);
    assert_eq!(s.round_trip, s.import.written);
    let hsm = SoftHsm::open(&out.join("keystore"), pmp_core::hsm::LmkSource::Auto).unwrap();
    assert_eq!(
        pmp_core::xof::verify_file(&out.join("order.xof"), &hsm).unwrap(),
        s.import.written
    );
    let rej = std::fs::read_to_string(out.join("rejects.txt")).unwrap();
    assert_eq!(
        rej.lines().filter(|l| !l.starts_with('#')).count() as u64,
        s.import.rejected
    );
    // A second run replaces a previous demo; a directory with other files is refused.
    demo::run(&out, 10, demo::Backend::SoftHsm, &Options::default()).unwrap();
    std::fs::write(out.join("mine.txt"), "user data").unwrap();
    assert!(demo::run(&out, 10, demo::Backend::SoftHsm, &Options::default()).is_err());
    assert!(out.join("mine.txt").exists());
}

#[test]
fn an_unbalanced_quote_stops_the_file() {
    let s = setup(
        "quote",
        sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
    );
    // Without a declared count there is no trailer to miss: only the open quote itself can
    // tell that the rest of the file was swallowed into one field.
    let mut p = s.product.clone();
    p.layout.count = None;
    let input = write_issuer_file(&s, Cards::new(1, 30));
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.pop(); // the trailer
    // From record 5 on, the rest of the file is one open quoted field (the quotes that the
    // later lines had are dropped: they would close and reopen it).
    for l in &mut lines[5..] {
        l.retain(|c| c != '"');
    }
    lines[5].insert(0, '"');
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let e = expect_clean_failure(&s, &input, &p).to_string();
    assert!(e.contains("quoted field"), "{e}");
}

#[test]
fn outputs_that_are_one_file_or_the_input_are_refused() {
    let s = setup(
        "paths",
        sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
    );
    let input = write_issuer_file(&s, Cards::new(1, 20));
    let original = std::fs::read(&input).unwrap();
    let d = &s.dir.0;
    let run = |out: PathBuf, rejects: Option<PathBuf>| {
        let e = import::import_file(
            &s.hsm,
            &s.product,
            &input,
            &out,
            rejects.as_deref(),
            &Options::default(),
        )
        .expect_err("must be refused")
        .to_string();
        assert_eq!(std::fs::read(&input).unwrap(), original, "{e}");
        assert!(outputs(d).is_empty(), "{e}: left {:?}", outputs(d));
        e
    };
    // The same file under two spellings.
    let e = run(d.join("a.xof"), Some(d.join(".").join("a.xof")));
    assert!(e.contains("different files"), "{e}");
    let e = run(d.join("a.xof"), Some(d.join("ks").join("..").join("a.xof")));
    assert!(e.contains("different files"), "{e}");
    // Either output onto the input.
    let e = run(d.join(".").join("in.dat"), None);
    assert!(e.contains("replace the input"), "{e}");
    let e = run(
        d.join("a.xof"),
        Some(d.join("ks").join("..").join("in.dat")),
    );
    assert!(e.contains("replace the input"), "{e}");
    #[cfg(unix)]
    {
        // Through a symlinked directory.
        let link = d.join("ks-link");
        std::os::unix::fs::symlink(d, &link).unwrap();
        let out = link.join("in.dat");
        let e = import::import_file(&s.hsm, &s.product, &input, &out, None, &Options::default())
            .expect_err("must be refused")
            .to_string();
        assert!(e.contains("replace the input"), "{e}");
        assert_eq!(std::fs::read(&input).unwrap(), original);
        std::fs::remove_file(&link).unwrap();
    }
}

#[test]
fn a_failed_second_rename_takes_the_first_back() {
    let s = setup(
        "rename",
        sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
    );
    let input = write_issuer_file(&s, Cards::new(1, 20));
    let d = &s.dir.0;
    // The XOF's name is taken by a non-empty directory: its rename fails after the reject
    // report's succeeded.
    let out = d.join("order.xof");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("x"), "x").unwrap();
    let opts = Options::default();
    assert!(import::import_file(&s.hsm, &s.product, &input, &out, None, &opts).is_err());
    let rejects = import::default_rejects_path(&out);
    assert!(!rejects.exists(), "left: {:?}", outputs(d));
    assert_eq!(outputs(d), vec!["order.xof".to_string()]);
    // An existing report is put back as it was.
    std::fs::write(&rejects, "previous report").unwrap();
    assert!(import::import_file(&s.hsm, &s.product, &input, &out, None, &opts).is_err());
    assert_eq!(
        std::fs::read_to_string(&rejects).unwrap(),
        "previous report"
    );
    let mut left = outputs(d);
    left.sort();
    assert_eq!(left, vec!["order.rejects.txt", "order.xof"]);
}

#[test]
fn a_read_failure_is_reported_as_itself_whichever_worker_meets_it() {
    // The parser fails once, in the middle of the file; asked again it would find a later,
    // misleading error ("the file ends inside the root element"). With many workers taking
    // turns at the input, the first failure must still be the one reported, every time.
    let s = setup(
        "read-fails",
        sc(LayoutChoice::Xml, false, false, Algorithm::Tdes),
    );
    let input = write_issuer_file(&s, Cards::new(1, 200));
    let mut text = std::fs::read_to_string(&input).unwrap();
    let at = text.match_indices("<card>").nth(150).unwrap().0;
    text.insert_str(at, &format!("<!--{}-->", "x".repeat(8192)));
    std::fs::write(&input, text).unwrap();
    let mut product = s.product.clone();
    product.layout.max_record_bytes = 4096;
    let out = s.dir.0.join("order.xof");
    for round in 0..20 {
        let opts = Options {
            workers: 4,
            batch: 1,
            ..Options::default()
        };
        let e = import::import_file(&s.hsm, &product, &input, &out, None, &opts)
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("max-record-bytes"), "round {round}: {e}");
        assert!(
            outputs(&s.dir.0).is_empty(),
            "left: {:?}",
            outputs(&s.dir.0)
        );
    }
}

#[test]
fn hostile_xml_events_fail_fast_without_buffering() {
    let s = setup(
        "xml-big",
        sc(LayoutChoice::Xml, false, false, Algorithm::Tdes),
    );
    let input = write_issuer_file(&s, Cards::new(1, 10));
    let text = std::fs::read_to_string(&input).unwrap();
    let at = text.find("<card>").unwrap();
    let big = "x".repeat(20 << 20);
    for (what, insert) in [
        ("comment", format!("<!--{big}-->")),
        ("text", big.clone()),
        ("whitespace", " ".repeat(20 << 20)),
        (
            "field",
            format!("<card><card_id>X1</card_id><name>{big}</name></card>"),
        ),
    ] {
        let mut bad = text.clone();
        bad.insert_str(at, &insert);
        std::fs::write(&input, bad).unwrap();
        let t = std::time::Instant::now();
        let e = expect_clean_failure(&s, &input, &s.product).to_string();
        assert!(e.contains("max-record-bytes"), "{what}: {e}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(3),
            "{what}: {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn a_delimited_line_over_the_limit_stops_the_file() {
    let s = setup(
        "line-big",
        sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
    );
    let input = write_issuer_file(&s, Cards::new(1, 10));
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[3].push_str(&"x".repeat(70_000));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let e = expect_clean_failure(&s, &input, &s.product).to_string();
    assert!(e.contains("longer than max-record-bytes (65536)"), "{e}");
}

#[test]
fn per_field_failures_after_decryption_share_one_reason() {
    let s = setup(
        "oracle",
        sc(LayoutChoice::Delimited, false, true, Algorithm::Tdes),
    );
    let n = 83;
    let input = write_issuer_file(&s, Cards::new(7, n));
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let pan_col = lines[0].split(',').position(|c| c == "pan").unwrap();
    // Alter the last ciphertext block of a good record's PAN: bad padding (or, rarely,
    // garbage that decrypts) — the same reason as a PAN that decrypts but fails Luhn.
    let good: Vec<u64> = Cards::new(7, n)
        .zip(1u64..)
        .filter(|(c, _)| c.defect.is_none())
        .map(|(_, k)| k)
        .collect();
    let mut altered = None;
    for &k in &good {
        let l = &mut lines[k as usize];
        // The fields before the PAN are never quoted; the rest of the line stays as it is.
        let mut cells: Vec<String> = l.splitn(pan_col + 2, ',').map(str::to_string).collect();
        if cells[..=pan_col].iter().any(|c| c.contains('"')) {
            continue;
        }
        let pan = &mut cells[pan_col];
        let last = pan.pop().unwrap();
        pan.push(if last == '0' { '1' } else { '0' });
        *l = cells.join(",");
        altered = Some(k);
        break;
    }
    let altered = altered.unwrap();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = s.dir.0.join("order.xof");
    let sum =
        import::import_file(&s.hsm, &s.product, &input, &out, None, &Options::default()).unwrap();
    assert_eq!(sum.rejected, defects(7, n) + 1);
    let rej = std::fs::read_to_string(import::default_rejects_path(&out)).unwrap();
    let pan_lines: Vec<&str> = rej
        .lines()
        .filter(|l| l.contains("field=pan ") && !l.ends_with("reason=missing"))
        .collect();
    assert!(pan_lines.len() >= 2, "{rej}");
    assert!(
        pan_lines
            .iter()
            .any(|l| l.starts_with(&format!("record={altered} "))),
        "{rej}"
    );
    for l in &pan_lines {
        assert!(l.ends_with("reason=field-decrypt"), "{l}");
    }
    for code in ["pan-luhn", "pan-length", "pan-not-digits"] {
        assert!(!rej.contains(code), "{rej}");
    }
}

/// Delegates to a `SoftHsm`; `encrypt` panics on its `panic_at`-th call and sleeps on its
/// first for `stall` (counting the calls made meanwhile).
#[derive(Debug)]
struct Faulty {
    inner: SoftHsm,
    calls: std::sync::atomic::AtomicU64,
    panic_at: u64,
    /// The MAC call that panics (the record MAC chain, which runs under the output lock).
    mac_panic_at: u64,
    mac_calls: std::sync::atomic::AtomicU64,
    stall: std::time::Duration,
    during_stall: std::sync::atomic::AtomicU64,
}

impl Hsm for Faulty {
    fn capabilities(&self) -> pmp_core::hsm::Capabilities {
        self.inner.capabilities()
    }
    fn generate_key(&self, spec: &KeySpec) -> pmp_core::Result<pmp_core::hsm::KeyInfo> {
        self.inner.generate_key(spec)
    }
    fn form_key_from_components(
        &self,
        spec: &KeySpec,
        components: &[&[u8]],
        component_kcvs: &[Option<pmp_core::Kcv>],
        expected_kcv: Option<&pmp_core::Kcv>,
    ) -> pmp_core::Result<pmp_core::hsm::KeyInfo> {
        self.inner
            .form_key_from_components(spec, components, component_kcvs, expected_kcv)
    }
    fn import_key_block_checked(
        &self,
        label: &str,
        kek: &pmp_core::hsm::KeyHandle,
        block: &str,
        check: &pmp_core::hsm::ImportCheck<'_>,
    ) -> pmp_core::Result<pmp_core::hsm::KeyInfo> {
        self.inner
            .import_key_block_checked(label, kek, block, check)
    }
    fn export_key_block(
        &self,
        key: &pmp_core::hsm::KeyHandle,
        kek: &pmp_core::hsm::KeyHandle,
    ) -> pmp_core::Result<String> {
        self.inner.export_key_block(key, kek)
    }
    fn key_info(&self, key: &pmp_core::hsm::KeyHandle) -> pmp_core::Result<pmp_core::hsm::KeyInfo> {
        self.inner.key_info(key)
    }
    fn find_key(&self, label: &str) -> pmp_core::Result<pmp_core::hsm::KeyHandle> {
        self.inner.find_key(label)
    }
    fn list_keys(&self) -> pmp_core::Result<Vec<pmp_core::hsm::KeyInfo>> {
        self.inner.list_keys()
    }
    fn key_origin(
        &self,
        key: &pmp_core::hsm::KeyHandle,
    ) -> pmp_core::Result<pmp_core::hsm::KeyOrigin> {
        self.inner.key_origin(key)
    }
    fn delete_key(&self, key: &pmp_core::hsm::KeyHandle) -> pmp_core::Result<()> {
        self.inner.delete_key(key)
    }
    fn encrypt(
        &self,
        spec: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> pmp_core::Result<usize> {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.calls.fetch_add(1, SeqCst) + 1;
        if n == self.panic_at {
            panic!("injected fault in a worker");
        }
        if n == 1 && !self.stall.is_zero() {
            let before = self.calls.load(SeqCst);
            std::thread::sleep(self.stall);
            self.during_stall
                .store(self.calls.load(SeqCst) - before, SeqCst);
        }
        self.inner.encrypt(spec, data, out)
    }
    fn decrypt(
        &self,
        spec: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> pmp_core::Result<usize> {
        self.inner.decrypt(spec, data, out)
    }
    fn translate(
        &self,
        from: &CipherSpec<'_>,
        to: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> pmp_core::Result<usize> {
        self.inner.translate(from, to, data, out)
    }
    fn translate_pin(
        &self,
        from: &pmp_core::hsm::PinSpec<'_>,
        to: &pmp_core::hsm::PinSpec<'_>,
        pan: &pmp_core::pinblock::Pan,
        block: &[u8],
    ) -> pmp_core::Result<Vec<u8>> {
        self.inner.translate_pin(from, to, pan, block)
    }
    fn generate_mac(
        &self,
        key: &pmp_core::hsm::KeyHandle,
        alg: pmp_core::MacAlgorithm,
        padding: Padding,
        data: &[u8],
    ) -> pmp_core::Result<pmp_core::MacTag> {
        let n = self
            .mac_calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if n == self.mac_panic_at {
            panic!("injected fault in the MAC chain");
        }
        self.inner.generate_mac(key, alg, padding, data)
    }
    fn verify_mac(
        &self,
        key: &pmp_core::hsm::KeyHandle,
        alg: pmp_core::MacAlgorithm,
        padding: Padding,
        data: &[u8],
        mac: &[u8],
    ) -> pmp_core::Result<()> {
        self.inner.verify_mac(key, alg, padding, data, mac)
    }
}

fn faulty(s: Setup, panic_at: u64, stall_ms: u64) -> (TempDir, Faulty, Product, IssuerSide) {
    (
        s.dir,
        Faulty {
            inner: s.hsm,
            calls: Default::default(),
            panic_at,
            mac_panic_at: u64::MAX,
            mac_calls: Default::default(),
            stall: std::time::Duration::from_millis(stall_ms),
            during_stall: Default::default(),
        },
        s.product,
        s.issuer,
    )
}

#[test]
fn a_worker_panic_is_an_error_with_no_output() {
    let s = setup(
        "panic",
        sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
    );
    let input = write_issuer_file(&s, Cards::new(1, 60));
    let (dir, hsm, product, _) = faulty(s, 40, 0);
    let out = dir.0.join("order.xof");
    let opts = Options {
        workers: 2,
        batch: 3,
        ..Options::default()
    };
    let e = import::import_file(&hsm, &product, &input, &out, None, &opts)
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("panicked"), "{e}");
    assert!(outputs(&dir.0).is_empty(), "left: {:?}", outputs(&dir.0));
}

#[test]
fn a_panic_while_writing_is_an_error_with_no_output() {
    // The MAC chain and the writes run under the output lock, on whichever worker's turn it
    // is: a panic there must stop the others waiting for their turn, not hang them.
    for workers in [1, 2, 3] {
        let s = setup(
            &format!("write-panic-{workers}"),
            sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
        );
        let input = write_issuer_file(&s, Cards::new(1, 60));
        let (dir, mut hsm, product, _) = faulty(s, u64::MAX, 0);
        hsm.mac_panic_at = 20;
        let out = dir.0.join("order.xof");
        let opts = Options {
            workers,
            batch: 3,
            ..Options::default()
        };
        let e = import::import_file(&hsm, &product, &input, &out, None, &opts)
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("panicked"), "{workers} workers: {e}");
        assert!(outputs(&dir.0).is_empty(), "left: {:?}", outputs(&dir.0));
    }
}

#[test]
fn the_workers_read_at_most_one_batch_each_ahead_of_the_writer() {
    let s = setup(
        "ahead",
        sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
    );
    let input = write_issuer_file(&s, Cards::new(1, 300));
    let (dir, hsm, product, _) = faulty(s, u64::MAX, 500);
    let out = dir.0.join("order.xof");
    let workers = 2;
    let opts = Options {
        workers,
        batch: 1,
        ..Options::default()
    };
    let sum = import::import_file(&hsm, &product, &input, &out, None, &opts).unwrap();
    use std::sync::atomic::Ordering::SeqCst;
    let per_record = hsm.calls.load(SeqCst) / sum.written;
    let during = hsm.during_stall.load(SeqCst);
    // While batch 0 stalls, each other worker transforms one batch and waits for its turn
    // to write it: at most `workers` batches are in flight (one batch's calls of slack).
    assert!(
        during <= workers as u64 * per_record,
        "{during} calls during the stall ({per_record} per record)"
    );
}

// ---------------------------------------------------------------- capabilities and limits

/// Delegates to a `SoftHsm` but answers `capabilities` with `caps` (the software HSM's set
/// with something taken away or a batch limit), and records the batch calls it gets.
#[derive(Debug)]
struct Restricted {
    inner: SoftHsm,
    caps: pmp_core::hsm::Capabilities,
    batch_calls: std::sync::atomic::AtomicU64,
    largest_batch: std::sync::atomic::AtomicUsize,
}

impl Restricted {
    fn new(inner: SoftHsm, f: impl FnOnce(Capabilities) -> Capabilities) -> Self {
        let caps = f(Capabilities::new("restricted (test)").with_all(inner.capabilities().iter()));
        Restricted {
            inner,
            caps,
            batch_calls: Default::default(),
            largest_batch: Default::default(),
        }
    }
}

impl Hsm for Restricted {
    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }
    fn generate_key(&self, spec: &KeySpec) -> pmp_core::Result<KeyInfo> {
        self.inner.generate_key(spec)
    }
    fn form_key_from_components(
        &self,
        spec: &KeySpec,
        components: &[&[u8]],
        component_kcvs: &[Option<pmp_core::Kcv>],
        expected_kcv: Option<&pmp_core::Kcv>,
    ) -> pmp_core::Result<KeyInfo> {
        self.inner
            .form_key_from_components(spec, components, component_kcvs, expected_kcv)
    }
    fn import_key_block_checked(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
        check: &pmp_core::hsm::ImportCheck<'_>,
    ) -> pmp_core::Result<KeyInfo> {
        self.inner
            .import_key_block_checked(label, kek, block, check)
    }
    fn export_key_block(&self, key: &KeyHandle, kek: &KeyHandle) -> pmp_core::Result<String> {
        self.inner.export_key_block(key, kek)
    }
    fn key_info(&self, key: &KeyHandle) -> pmp_core::Result<KeyInfo> {
        self.inner.key_info(key)
    }
    fn find_key(&self, label: &str) -> pmp_core::Result<KeyHandle> {
        self.inner.find_key(label)
    }
    fn list_keys(&self) -> pmp_core::Result<Vec<KeyInfo>> {
        self.inner.list_keys()
    }
    fn key_origin(
        &self,
        key: &pmp_core::hsm::KeyHandle,
    ) -> pmp_core::Result<pmp_core::hsm::KeyOrigin> {
        self.inner.key_origin(key)
    }
    fn delete_key(&self, key: &KeyHandle) -> pmp_core::Result<()> {
        self.inner.delete_key(key)
    }
    fn encrypt(
        &self,
        spec: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> pmp_core::Result<usize> {
        self.inner.encrypt(spec, data, out)
    }
    fn decrypt(
        &self,
        spec: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> pmp_core::Result<usize> {
        self.inner.decrypt(spec, data, out)
    }
    fn translate(
        &self,
        from: &CipherSpec<'_>,
        to: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> pmp_core::Result<usize> {
        self.inner.translate(from, to, data, out)
    }
    fn translate_batch(
        &self,
        items: &[pmp_core::hsm::TranslateItem<'_>],
        out: &mut Vec<u8>,
    ) -> pmp_core::Result<Vec<usize>> {
        use std::sync::atomic::Ordering::SeqCst;
        self.batch_calls.fetch_add(1, SeqCst);
        self.largest_batch.fetch_max(items.len(), SeqCst);
        self.inner.translate_batch(items, out)
    }
    fn translate_pin(
        &self,
        from: &pmp_core::hsm::PinSpec<'_>,
        to: &pmp_core::hsm::PinSpec<'_>,
        pan: &pmp_core::pinblock::Pan,
        block: &[u8],
    ) -> pmp_core::Result<Vec<u8>> {
        self.inner.translate_pin(from, to, pan, block)
    }
    fn generate_mac(
        &self,
        key: &KeyHandle,
        alg: pmp_core::MacAlgorithm,
        padding: Padding,
        data: &[u8],
    ) -> pmp_core::Result<pmp_core::MacTag> {
        self.inner.generate_mac(key, alg, padding, data)
    }
    fn verify_mac(
        &self,
        key: &KeyHandle,
        alg: pmp_core::MacAlgorithm,
        padding: Padding,
        data: &[u8],
        mac: &[u8],
    ) -> pmp_core::Result<()> {
        self.inner.verify_mac(key, alg, padding, data, mac)
    }
}

/// A reader of `data` that counts the bytes it hands out and, when `fail_at` is set, fails
/// with `TimedOut` once it has handed out that many.
struct Feed<'a> {
    data: Vec<u8>,
    at: usize,
    fail_at: Option<usize>,
    read: &'a AtomicUsize,
}

impl std::io::Read for Feed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let end = self.fail_at.unwrap_or(self.data.len()).min(self.data.len());
        if self.at == end && self.fail_at.is_some() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "injected input failure",
            ));
        }
        let n = buf.len().min(end - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        self.read.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        Ok(n)
    }
}

/// A writer that only counts the bytes written to it.
struct Watch<'a>(&'a AtomicUsize);

impl std::io::Write for Watch<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .fetch_add(buf.len(), std::sync::atomic::Ordering::SeqCst);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn what_the_backend_lacks_is_refused_by_name_before_any_input_or_output() {
    use pmp_core::hsm::Capability as C;
    use pmp_core::pinblock::PinBlockFormat;
    let per_field = sc(LayoutChoice::Delimited, false, true, Algorithm::Tdes);
    let clear = sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes);
    // (scenario, what is taken away, words the refusal must hold besides the capability)
    let cases = [
        (per_field, C::TranslateInDevice, "field 'pan'"),
        (
            Scenario::default(),
            C::KeyAlgorithm(Algorithm::Tdes),
            "whole-file",
        ),
        (clear, C::KeyAlgorithm(Algorithm::Tdes), "transport key"),
        (clear, C::PinFormat(PinBlockFormat::Iso4), "bureau PIN key"),
        (clear, C::Mac(pmp_core::MacAlgorithm::CmacAes), "MAC"),
        (
            clear,
            C::Kcv(pmp_core::hsm::KcvMethod::TdesEncryptZeros),
            "KCV",
        ),
    ];
    for (k, (scenario, lacking, words)) in cases.into_iter().enumerate() {
        let s = setup(&format!("caps-{k}"), scenario);
        let input = write_issuer_file(&s, Cards::new(3, 20));
        let data = std::fs::read(&input).unwrap();
        let hsm = Restricted::new(s.hsm, |c| c.without(lacking));
        let check = |e: Error| {
            let Error::Unsupported(m) = e else {
                panic!("{lacking}: expected Unsupported, got {e:?}")
            };
            assert!(m.contains(&lacking.to_string()), "{m}");
            assert!(m.contains("restricted (test)"), "{m}");
            assert!(m.contains(words), "{lacking}: {m}");
        };
        // The streaming API: not one byte read, not one byte written.
        let (read, xof_bytes, rej_bytes) = Default::default();
        let feed = Feed {
            data: data.clone(),
            at: 0,
            fail_at: None,
            read: &read,
        };
        let e = import::import(
            &hsm,
            &s.product,
            feed,
            Watch(&xof_bytes),
            Watch(&rej_bytes),
            &Options::default(),
        )
        .map(|_| ())
        .expect_err("must be refused");
        check(e);
        for (what, n) in [
            ("read", &read),
            ("xof", &xof_bytes),
            ("rejects", &rej_bytes),
        ] {
            assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 0, "{what}");
        }
        // The file API: no output left, the input as it was.
        let out = s.dir.0.join("order.xof");
        let e = import::import_file(&hsm, &s.product, &input, &out, None, &Options::default())
            .expect_err("must be refused");
        check(e);
        assert!(
            outputs(&s.dir.0).is_empty(),
            "left: {:?}",
            outputs(&s.dir.0)
        );
        assert_eq!(std::fs::read(&input).unwrap(), data);
    }
    // Only what the product needs is asked for: without translation inside the device, a
    // product with no individually encrypted field imports.
    let s = setup("caps-ok", clear);
    let input = write_issuer_file(&s, Cards::new(3, 20));
    let hsm = Restricted::new(s.hsm, |c| c.without(C::TranslateInDevice));
    let out = s.dir.0.join("order.xof");
    let sum =
        import::import_file(&hsm, &s.product, &input, &out, None, &Options::default()).unwrap();
    assert_eq!(sum.written + sum.rejected, 20);
    assert_eq!(pmp_core::xof::verify_file(&out, &hsm).unwrap(), sum.written);
}

/// A backend without translation in the device that offers the host fallbacks instead
/// (as `Pkcs11Hsm` on SoftHSMv2 does): the per-field import runs and its summary states
/// both fallbacks; the software HSM's summary states none.
#[test]
fn host_fallbacks_are_accepted_and_stated_in_the_summary() {
    use pmp_core::hsm::Capability as C;
    let per_field = sc(LayoutChoice::Delimited, false, true, Algorithm::Tdes);
    // (name, the fallbacks offered, the summary's list: PIN first, as the plan checks the
    // PIN keys before the fields)
    for (name, fallbacks, stated) in [
        ("host-none", vec![], vec![]),
        (
            "host-translate",
            vec![C::HostTranslateFallback],
            vec![C::HostTranslateFallback],
        ),
        (
            "host-both",
            vec![C::HostTranslateFallback, C::HostPinFallback],
            vec![C::HostPinFallback, C::HostTranslateFallback],
        ),
    ] {
        let s = setup(name, per_field);
        let input = write_issuer_file(&s, Cards::new(3, 20));
        let out = s.dir.0.join("order.xof");
        let sum = if fallbacks.is_empty() {
            import::import_file(&s.hsm, &s.product, &input, &out, None, &Options::default())
                .unwrap()
        } else {
            let hsm = Restricted::new(s.hsm, |c| {
                c.without(C::TranslateInDevice).with_all(fallbacks.clone())
            });
            let sum =
                import::import_file(&hsm, &s.product, &input, &out, None, &Options::default())
                    .unwrap();
            assert_eq!(pmp_core::xof::verify_file(&out, &hsm).unwrap(), sum.written);
            sum
        };
        assert_eq!(sum.written + sum.rejected, 20, "{name}");
        assert_eq!(sum.host_fallbacks, stated, "{name}");
    }
}

#[test]
fn hsm_batch_calls_respect_max_batch_items() {
    // Per-field encryption: the PAN and track 2 of each record are translated in the HSM.
    let scenario = sc(LayoutChoice::Delimited, false, true, Algorithm::Tdes);
    let n = 40;
    // Without a limit, one call carries the fields of all the records of a worker batch
    // (the default batch of 256 records holds all 40).
    for limit in [None, Some(1)] {
        let s = setup("batch", scenario);
        let input = write_issuer_file(&s, Cards::new(5, n));
        let hsm = Restricted::new(s.hsm, |c| match limit {
            Some(l) => c.with_max_batch_items(l),
            None => c,
        });
        let out = s.dir.0.join("order.xof");
        let sum =
            import::import_file(&hsm, &s.product, &input, &out, None, &Options::default()).unwrap();
        assert_eq!(sum.written, n - defects(5, n));
        let largest = limit.unwrap_or(2 * sum.written as usize);
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(hsm.largest_batch.load(SeqCst), largest, "{limit:?}");
        // Two fields per written record, `largest` per call.
        assert!(hsm.batch_calls.load(SeqCst) >= sum.written * 2 / largest as u64);
        assert_eq!(
            demo::verify_against(&hsm, &out, Cards::new(5, n)).unwrap(),
            sum.written
        );
    }
}

#[test]
fn a_translated_field_that_does_not_decrypt_is_rejected_by_name() {
    let s = setup(
        "track2",
        sc(LayoutChoice::Delimited, false, true, Algorithm::Tdes),
    );
    let n = 30;
    let input = write_issuer_file(&s, Cards::new(7, n));
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let col = lines[0].split(',').position(|c| c == "track2").unwrap();
    let mut altered = None;
    for (c, k) in Cards::new(7, n).zip(1usize..) {
        let l = &mut lines[k];
        let mut cells: Vec<String> = l.splitn(col + 2, ',').map(str::to_string).collect();
        if c.defect.is_some() || cells[..=col].iter().any(|c| c.contains('"')) {
            continue;
        }
        // Track 2 has no check: it is only translated, never decrypted on the host. The
        // last byte of its second-to-last block flipped by 0x5A: CBC flips the same bits of
        // the last clear byte, which under ISO 9797-1 method 2 is 0x80 or 0x00 — neither
        // stays valid padding, so the translation fails deterministically.
        let mut ct = hex::decode(&cells[col]).unwrap();
        let at = ct.len() - 8 - 1;
        ct[at] ^= 0x5A;
        cells[col] = hex::encode_upper(&ct);
        *l = cells.join(",");
        altered = Some(k);
        break;
    }
    let altered = altered.unwrap();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = s.dir.0.join("order.xof");
    let sum =
        import::import_file(&s.hsm, &s.product, &input, &out, None, &Options::default()).unwrap();
    assert_eq!(sum.rejected, defects(7, n) + 1);
    let rej = std::fs::read_to_string(import::default_rejects_path(&out)).unwrap();
    let line = rej
        .lines()
        .find(|l| l.starts_with(&format!("record={altered} ")))
        .unwrap_or_else(|| panic!("{rej}"));
    assert!(
        line.ends_with("field=track2 reason=field-decrypt"),
        "{line}"
    );
}

#[test]
fn a_failure_to_read_the_input_is_reported_as_the_inputs() {
    for (name, scenario) in [
        (
            "clear",
            sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
        ),
        ("xml", sc(LayoutChoice::Xml, false, false, Algorithm::Tdes)),
        ("whole-file", Scenario::default()),
    ] {
        let s = setup(&format!("input-{name}"), scenario);
        let input = write_issuer_file(&s, Cards::new(3, 50));
        let data = std::fs::read(&input).unwrap();
        // At the start (for an encrypted file: inside the IV) and in the middle.
        for fail_at in [0, 3, data.len() / 2] {
            let read = AtomicUsize::new(0);
            let feed = Feed {
                data: data.clone(),
                at: 0,
                fail_at: Some(fail_at),
                read: &read,
            };
            let e = import::import(
                &s.hsm,
                &s.product,
                feed,
                Vec::new(),
                Vec::new(),
                &Options::default(),
            )
            .map(|_| ())
            .expect_err("must fail");
            match e {
                Error::Io { path, source } => {
                    assert_eq!(path, "reading the issuer file", "{name} {fail_at}");
                    assert_eq!(source.kind(), std::io::ErrorKind::TimedOut);
                    assert_eq!(source.to_string(), "injected input failure");
                }
                e => panic!("{name} {fail_at}: expected the input's I/O error, got {e:?}"),
            }
        }
        // A file that cannot be read (a directory opens, but does not read, on Linux): the
        // error names the input, and nothing is left.
        #[cfg(target_os = "linux")]
        {
            let dir_input = s.dir.0.join("in.dat");
            std::fs::remove_file(&dir_input).unwrap();
            std::fs::create_dir(&dir_input).unwrap();
            let out = s.dir.0.join("order.xof");
            match import::import_file(
                &s.hsm,
                &s.product,
                &dir_input,
                &out,
                None,
                &Options::default(),
            ) {
                Err(Error::Io { path, .. }) => assert_eq!(path, dir_input.display().to_string()),
                r => panic!("{name}: expected an I/O error naming the input, got {r:?}"),
            }
            assert!(
                outputs(&s.dir.0).is_empty(),
                "left: {:?}",
                outputs(&s.dir.0)
            );
        }
    }
}

/// A clear delimited product with `n` data attributes (`A1`..`An`) under one AES DKep.
fn wide_product(n: usize) -> String {
    let mut x = String::from(
        r#"<product format="pmp-product-1" name="WIDE" issuer="TEST">
  <keys><mac-key label="WIDE-MAC"/></keys>
  <layout kind="delimited" header="true" record-id="id"/>
  <fields>
    <field name="id" required="true"/>
"#,
    );
    for i in 1..=n {
        x.push_str(&format!(
            "    <field name=\"f{i}\" attribute=\"A{i}\" dkep=\"WIDE-DK\"/>\n"
        ));
    }
    x.push_str("  </fields>\n</product>\n");
    x
}

#[test]
fn a_record_holds_as_many_attributes_as_xof_allows() {
    let dir = TempDir::new("wide");
    let hsm = SoftHsm::create_with_test_lmk(&dir.0.join("ks")).unwrap();
    let dk = hsm
        .generate_key(&KeySpec::new(
            "WIDE-DK",
            Algorithm::Aes,
            32,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .unwrap();
    hsm.generate_key(&KeySpec::new(
        "WIDE-MAC",
        Algorithm::Aes,
        32,
        KeyUsage::M6,
        ModeOfUse::C,
    ))
    .unwrap();
    // More than the 32 the import once held, and exactly XOF v1's 256 (docs/xof.md §7).
    for n in [40, 256] {
        let product = Product::parse(&wide_product(n)).unwrap();
        let header: Vec<String> = (1..=n).map(|i| format!("f{i}")).collect();
        let mut file = format!("id,{}\n", header.join(","));
        for r in 1..=3 {
            let values: Vec<String> = (1..=n).map(|i| format!("v{r}-{i}")).collect();
            file.push_str(&format!("R{r},{}\n", values.join(",")));
        }
        let input = dir.0.join("in.dat");
        std::fs::write(&input, &file).unwrap();
        let out = dir.0.join("order.xof");
        let sum = import::import_file(&hsm, &product, &input, &out, None, &Options::default())
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!((sum.written, sum.rejected), (3, 0), "{n}");
        let f = std::io::BufReader::new(std::fs::File::open(&out).unwrap());
        let mut r = pmp_core::xof::Reader::new(f, &hsm).unwrap();
        let mut seen = 0;
        while let Some(rec) = r.next_record().unwrap() {
            seen += 1;
            assert_eq!(rec.attributes.len(), n);
            // The last attribute decrypts under the DKep to the value in the file.
            let a = rec.attributes.last().unwrap();
            let mut clear = vec![0u8; a.ciphertext.len()];
            let m = hsm
                .decrypt(
                    &CipherSpec::cbc(&dk.handle, a.iv.as_deref().unwrap(), a.padding),
                    &a.ciphertext,
                    &mut clear,
                )
                .unwrap();
            assert_eq!(&clear[..m], format!("v{seen}-{n}").as_bytes());
        }
        assert_eq!(seen, 3);
    }
    // One more than a record holds: the product is refused when it is read.
    let e = Product::parse(&wide_product(257)).unwrap_err().to_string();
    assert!(e.contains("257") && e.contains("at most 256"), "{e}");
}

#[test]
fn a_record_id_that_occurs_twice_is_imported_as_it_comes() {
    // Documented limit: telling a repeated id needs memory that grows with the file.
    let s = setup(
        "dup",
        sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
    );
    let n = 10;
    let input = write_issuer_file(&s, Cards::new(1, n));
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let good = Cards::new(1, n).position(|c| c.defect.is_none()).unwrap() + 1;
    lines.insert(good + 1, lines[good]);
    let text = lines
        .join("\n")
        .replace(&format!("TRL,{n}"), &format!("TRL,{}", n + 1));
    std::fs::write(&input, text + "\n").unwrap();
    let out = s.dir.0.join("order.xof");
    let sum =
        import::import_file(&s.hsm, &s.product, &input, &out, None, &Options::default()).unwrap();
    assert_eq!(sum.read, n + 1);
    assert_eq!(sum.written, n + 1 - defects(1, n));
    assert_eq!(
        pmp_core::xof::verify_file(&out, &s.hsm).unwrap(),
        sum.written
    );
}

/// Imports `n` generated records (environment `PMP_LARGE_RECORDS`, default 200,000) in
/// `scenario` and checks that every record is accounted for: read = declared, every record
/// written or rejected (the reject report has one line per reject), the XOF's MAC chain
/// holds the written ones. Prints records/s; peak memory is measured from outside
/// (`/usr/bin/time -v`, docs/product.md gives the figures).
fn large(name: &str, scenario: Scenario) {
    let n: u64 = std::env::var("PMP_LARGE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let s = setup(name, scenario);
    let input = write_issuer_file(&s, Cards::new(11, n));
    let out = s.dir.0.join("order.xof");
    let sum = import::import_file(&s.hsm, &s.product, &input, &out, None, &Options::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let bad = defects(11, n);
    assert_eq!((sum.read, sum.declared), (n, Some(n)), "{name}");
    assert_eq!((sum.written, sum.rejected), (n - bad, bad), "{name}");
    let rej = std::fs::read_to_string(import::default_rejects_path(&out)).unwrap();
    assert_eq!(
        rej.lines().filter(|l| !l.starts_with('#')).count() as u64,
        bad,
        "{name}"
    );
    assert_eq!(pmp_core::xof::verify_file(&out, &s.hsm).unwrap(), n - bad);
    println!(
        "{name}: {n} records, {} input bytes, {:.3} s, {:.0} records/s on {} workers",
        sum.bytes,
        sum.elapsed.as_secs_f64(),
        sum.records_per_second(),
        sum.workers
    );
}

#[test]
#[ignore = "large: run in release, one at a time (cargo test --release --test import -- --ignored --exact NAME)"]
fn large_processor_file_clear() {
    large(
        "processor-clear",
        sc(
            LayoutChoice::ProcessorXml {
                totals_after: false,
            },
            false,
            false,
            Algorithm::Tdes,
        ),
    );
}

#[test]
#[ignore = "large: run in release, one at a time"]
fn large_processor_file_tdes() {
    large(
        "processor-tdes",
        sc(
            LayoutChoice::ProcessorXml { totals_after: true },
            true,
            false,
            Algorithm::Tdes,
        ),
    );
}

#[test]
#[ignore = "large: run in release, one at a time"]
fn large_flat_file_clear() {
    large(
        "flat-clear",
        sc(LayoutChoice::Delimited, false, false, Algorithm::Tdes),
    );
}

#[test]
#[ignore = "large: run in release, one at a time"]
fn large_flat_file_tdes() {
    large(
        "flat-tdes",
        sc(LayoutChoice::Delimited, true, false, Algorithm::Tdes),
    );
}
