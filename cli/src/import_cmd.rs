//! `pmp import` (issuer file → XOF) and `pmp demo` (the bureau's main job end to end on
//! the built-in software HSM with a TEST LMK).
//!
//! Both print a summary on stdout (first line: `read=N written=N rejected=N`), and a
//! progress bar on stderr when stderr is a terminal. Nothing secret is printed: key labels
//! and KCVs, counts, reasons and paths only.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pmp_core::import::{self, Options, Progress, Summary};
use pmp_core::order::product::Product;

use crate::{CliResult, hsm_cmd};

/// `pmp import`
#[derive(Args)]
pub struct ImportArgs {
    /// The key store directory (TK_issuer, PIN keys, DKeps and the XOF MAC key).
    #[arg(long)]
    dir: PathBuf,
    /// The product (order profile) file, `pmp-product-1` XML (docs/product.md).
    #[arg(long)]
    product: PathBuf,
    /// The issuer's card file (encrypted as the product says).
    #[arg(long = "in")]
    input: PathBuf,
    /// The XOF order file to write.
    #[arg(long, required_unless_present = "dry_run")]
    out: Option<PathBuf>,
    /// The reject report (default: ORDER.rejects.txt beside the XOF).
    #[arg(long, conflicts_with = "dry_run")]
    rejects: Option<PathBuf>,
    /// Read, decrypt, parse, check and reconcile the whole file and print the summary and
    /// the rejects by reason, writing no XOF and no reject report: the way to try a new
    /// product on a real file.
    #[arg(long)]
    dry_run: bool,
    /// The XOF order id (default: PRODUCT-TIMESTAMP).
    #[arg(long)]
    order_id: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// `pmp demo`
#[derive(Args)]
pub struct DemoArgs {
    /// Number of cards in the generated issuer file.
    #[arg(long, default_value_t = 1000)]
    cards: u64,
    /// Output directory (created; a previous demo directory is replaced; any other
    /// non-empty directory is refused).
    #[arg(long, default_value = "pmp-demo")]
    out: PathBuf,
}

fn bar(total: Option<u64>) -> ProgressBar {
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn print_import(s: &Summary) {
    println!(
        "read={} written={} rejected={}{}",
        s.read,
        s.written,
        s.rejected,
        if s.dry_run { " (dry run)" } else { "" }
    );
    println!("  order:        {}", s.order_id);
    if let Some(d) = s.declared {
        println!("  declared:     {d} (reconciled)");
    }
    println!(
        "  time:         {:.3} s, {:.0} records/s on {} worker(s)",
        s.elapsed.as_secs_f64(),
        s.records_per_second(),
        s.workers
    );
    if !s.reasons.is_empty() {
        println!("  rejects by reason:");
        for (r, n) in &s.reasons {
            println!("    {:<18} {n}", r.code());
        }
    }
    if !s.attributes.is_empty() {
        println!(
            "  records carrying each attribute (of {} written):",
            s.written
        );
        for (a, n) in &s.attributes {
            println!("    {a:<18} {n}");
        }
    }
    for w in &s.warnings {
        println!("  warning: {w}");
    }
}

/// Runs `pmp import`.
pub fn run_import(args: ImportArgs) -> CliResult {
    let hsm = hsm_cmd::open(&args.dir)?;
    let product = Product::load(&args.product)?;
    let total = std::fs::metadata(&args.input).ok().map(|m| m.len());
    let pb = bar(total);
    let progress = |p: Progress| {
        pb.set_position(p.bytes);
        pb.set_message(format!("{} records", p.records));
    };
    let opts = Options {
        order_id: args.order_id,
        workers: args.workers,
        progress: Some(&progress),
        ..Options::default()
    };
    let Some(out) = args.out.filter(|_| !args.dry_run) else {
        let r = import::dry_run(&hsm, &product, &args.input, &opts);
        pb.finish_and_clear();
        print_import(&r?);
        println!("  nothing written (dry run)");
        return Ok(());
    };
    let rejects = args
        .rejects
        .clone()
        .unwrap_or_else(|| import::default_rejects_path(&out));
    let r = import::import_file(&hsm, &product, &args.input, &out, Some(&rejects), &opts);
    pb.finish_and_clear();
    let s = r?;
    print_import(&s);
    println!("  XOF:          {}", out.display());
    println!("  rejects:      {}", rejects.display());
    Ok(())
}

/// Runs `pmp demo`.
pub fn run_demo(args: DemoArgs) -> CliResult {
    println!(
        "pmp demo: {} cards, software HSM with a TEST LMK, output in {}",
        args.cards,
        args.out.display()
    );
    let pb = bar(None);
    let progress = |p: Progress| pb.set_message(format!("importing: {} records", p.records));
    let opts = Options {
        progress: Some(&progress),
        ..Options::default()
    };
    let r = pmp_demo::run(&args.out, args.cards, &opts);
    pb.finish_and_clear();
    let d = r?;
    println!();
    println!("Keys (label, algorithm, usage, mode, KCV):");
    for k in &d.keys {
        println!(
            "  {:<20} {:<4} {:>3} bits  {}  {:?}  {}",
            k.spec.label,
            k.spec.algorithm.to_string(),
            k.spec.len * 8,
            k.spec.usage,
            k.spec.mode_of_use,
            k.kcv
        );
    }
    println!();
    println!(
        "Import (issuer file TDES-CBC under TK_issuer -> XOF, attributes under AES-256 DKeps):"
    );
    print_import(&d.import);
    println!();
    println!(
        "XOF verified: {} records (MAC chain and trailer), {} records decrypted and compared with the issuer's data",
        d.xof_verified, d.round_trip
    );
    println!();
    println!("Transport keys issued for production (TR-31 version D under ZMK-PROD):");
    for (n, k) in [
        ("KTK", &d.transport.ktk),
        ("PTK", &d.transport.ptk),
        ("MTK", &d.transport.mtk),
    ] {
        println!("  {n} {:<12} KCV {}", k.info.spec.label, k.info.kcv);
    }
    println!();
    println!("Files:");
    for f in &d.files {
        println!("  {}", f.display());
    }
    println!();
    println!(
        "Check it yourself: pmp xof verify --dir {} {}",
        d.dir.join("keystore").display(),
        d.dir.join("order.xof").display()
    );
    Ok(())
}
