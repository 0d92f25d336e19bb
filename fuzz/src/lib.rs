//! Fuzz targets for every parser and decoder of pmp-core that reads outside input: TR-31
//! key blocks, ISO 9564-1 PIN blocks, the XOF reader, product files and each issuer layout
//! (delimited, fixed-width, XML).
//!
//! Each target is a function of arbitrary bytes that must never panic, hang or allocate
//! without bound: every outcome is `Ok` or an `Error`. They run two ways:
//! - `cargo run -p pmp-fuzz --bin fuzz-smoke -- [--seconds N] [TARGET...]` on the stable
//!   toolchain: the seed corpus in `fuzz/corpus/TARGET/`, then mutations of it for N
//!   seconds per target (not coverage-guided); CI runs it for a few seconds per target.
//! - `cargo +nightly fuzz run TARGET` (cargo-fuzz, libFuzzer, coverage-guided) with the
//!   entry points in `fuzz/fuzz_targets/` and the same corpus folders.
//!
//! The production-file reader and the profile parser are not on main yet: their targets
//! are to be added here with them.

use std::io::{BufReader, Cursor};
use std::path::PathBuf;
use std::sync::OnceLock;

use pmp_core::hsm::SoftHsm;
use pmp_core::keyblock::{self, UnwrapPolicy};
use pmp_core::order::issuer;
use pmp_core::order::product::Product;
use pmp_core::pinblock::{self, Pan, PinBlockFormat};
use pmp_core::{Algorithm, SecretKey};
use pmp_demo::{IssuerSide, LayoutChoice, Scenario};

/// The targets, by name (the folder names under `fuzz/corpus/`).
pub const TARGETS: &[&str] = &[
    "tr31",
    "pinblock",
    "xof",
    "product",
    "issuer_delimited",
    "issuer_fixed",
    "issuer_xml",
];

/// Records read from one issuer input at most (the inputs are small; this bounds a
/// target's time, not the reader's memory, which its own limits bound).
const MAX_RECORDS: usize = 10_000;

/// Runs the target `name` on `data`. Panics on an unknown name (a bug of the runner).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "tr31" => tr31(data),
        "pinblock" => pin_block(data),
        "xof" => xof(data),
        "product" => product(data),
        "issuer_delimited" => issuer_file(LayoutChoice::Delimited, data),
        "issuer_fixed" => issuer_file(LayoutChoice::Fixed, data),
        "issuer_xml" => issuer_file(LayoutChoice::Xml, data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// KBPKs of the seed blocks (tests/data/tr31.txt, generated with psec 1.3.0): a 2-key TDES
/// one for versions A/B/C and an AES-256 one for D, so a mutated block reaches the MAC
/// check and the decryption, not only the header parser.
fn kbpks() -> &'static [SecretKey; 2] {
    static K: OnceLock<[SecretKey; 2]> = OnceLock::new();
    K.get_or_init(|| {
        let hex = |s: &str| hex::decode(s).expect("hex literal");
        [
            SecretKey::new(Algorithm::Tdes, &hex("68527C1FD3ADD5322370C4C1DA76E01C"))
                .expect("TDES KBPK"),
            SecretKey::new(
                Algorithm::Aes,
                &hex("A19F1E9FCED92EFA69C8CB64EBD07BFA59C3A8304ABA991386CDD7A89A6EAB11"),
            )
            .expect("AES KBPK"),
        ]
    })
}

/// TR-31 / X9.143 key blocks: the header parser (`inspect`) and `unwrap` under both KBPKs.
pub fn tr31(data: &[u8]) {
    let Ok(block) = std::str::from_utf8(data) else {
        return;
    };
    let _ = keyblock::inspect(block);
    for kbpk in kbpks() {
        let _ = keyblock::unwrap(kbpk, block, &UnwrapPolicy::permissive());
    }
}

/// ISO 9564-1 PIN blocks: the first byte picks the format (0 to 4), the rest is the clear
/// block (formats 0 to 3) or the format 4 PIN field.
pub fn pin_block(data: &[u8]) {
    let Some((&selector, block)) = data.split_first() else {
        return;
    };
    let pan = Pan::new("4111111111111111").expect("a valid PAN");
    match selector % 5 {
        4 => {
            let _ = pinblock::decode_iso4_pin_field(block);
        }
        n => {
            let format = PinBlockFormat::from_number(n).expect("0 to 3");
            let _ = pinblock::decode(format, block, Some(&pan));
            let _ = pinblock::decode(format, block, None);
        }
    }
}

/// A software HSM with no keys, in a temporary folder, for the XOF reader (which stops at
/// the header's MAC key lookup) — the whole structure is read by `inspect_file` below.
static SCRATCH_HSM: OnceLock<(SoftHsm, PathBuf)> = OnceLock::new();

fn empty_hsm() -> &'static (SoftHsm, PathBuf) {
    SCRATCH_HSM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pmp-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let hsm = SoftHsm::create_with_test_lmk(&dir.join("ks")).expect("a scratch key store");
        (hsm, dir)
    })
}

/// Removes the scratch folder of the XOF target (call once at the end of a run).
pub fn cleanup() {
    if let Some((_, dir)) = SCRATCH_HSM.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The XOF reader: the structural reader with its limits (`inspect_file`, from a file) and
/// the verifying reader's header path (`Reader::new`).
pub fn xof(data: &[u8]) {
    let (hsm, dir) = empty_hsm();
    let path = dir.join(format!("input-{:?}.xof", std::thread::current().id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = pmp_core::xof::inspect_file(&path);
    }
    if let Ok(mut r) = pmp_core::xof::Reader::new(BufReader::new(Cursor::new(data)), hsm) {
        for _ in 0..MAX_RECORDS {
            match r.next_record() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
}

/// Product files (`pmp-product-1` XML).
pub fn product(data: &[u8]) {
    if let Ok(xml) = std::str::from_utf8(data) {
        let _ = Product::parse(xml);
    }
}

/// The demo's product for `layout` (clear file, no per-field encryption).
fn layout_product(layout: LayoutChoice) -> &'static Product {
    static P: OnceLock<[Product; 4]> = OnceLock::new();
    let products = P.get_or_init(|| {
        [
            LayoutChoice::Delimited,
            LayoutChoice::Fixed,
            LayoutChoice::Xml,
            LayoutChoice::ProcessorXml {
                totals_after: false,
            },
        ]
        .map(|layout| {
            let side = IssuerSide::new(Scenario {
                layout,
                whole_file: false,
                per_field: false,
                ..Scenario::default()
            })
            .expect("demo issuer");
            Product::parse(&side.product_xml()).expect("the demo's product parses")
        })
    });
    match layout {
        LayoutChoice::Delimited => &products[0],
        LayoutChoice::Fixed => &products[1],
        LayoutChoice::Xml => &products[2],
        LayoutChoice::ProcessorXml { .. } => &products[3],
    }
}

/// One issuer layout's reader over a clear file: every record until the end or an error.
pub fn issuer_file(layout: LayoutChoice, data: &[u8]) {
    let product = layout_product(layout);
    let Ok(mut source) = issuer::open(product, Box::new(Cursor::new(data.to_vec()))) else {
        return;
    };
    for _ in 0..MAX_RECORDS {
        match source.next_record() {
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let _ = source.declared_count();
}

/// The seed inputs the runner writes to `fuzz/corpus/` with `--write-seeds` (besides the
/// hand-made ones there): the demo's product files and a clear issuer file of each layout.
pub fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (target, layout) in [
        ("issuer_delimited", LayoutChoice::Delimited),
        ("issuer_fixed", LayoutChoice::Fixed),
        ("issuer_xml", LayoutChoice::Xml),
    ] {
        let side = IssuerSide::new(Scenario {
            layout,
            whole_file: false,
            per_field: false,
            ..Scenario::default()
        })
        .expect("demo issuer");
        let mut file = Vec::new();
        side.write_file(pmp_demo::Cards::new(3, 4), &mut file)
            .expect("demo issuer file");
        out.push((target, "demo-4-cards".to_owned(), file));
        out.push((
            "product",
            format!("demo-{target}.xml"),
            side.product_xml().into_bytes(),
        ));
    }
    out
}
