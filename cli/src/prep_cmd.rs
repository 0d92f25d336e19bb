//! `pmp prep` (XOF order → production file, `docs/production.md`) and `pmp production
//! verify` (the production side's check).
//!
//! `pmp prep` prints a summary on stdout (first line: `read=N prepared=N rejected=N`) and a
//! progress bar on stderr when stderr is a terminal. Nothing secret is printed: key labels
//! and KCVs, counts, reasons and paths only.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pmp_core::prep::{self, Options, Summary, profile::Profile};

use crate::{CliResult, hsm_cmd};

/// `pmp prep`
#[derive(Args)]
pub struct PrepArgs {
    /// The data-prep key store (IMKs, KTK/PTK/MTK/DTK, the XOF's DKeps, bureau PIN key and
    /// MAC key).
    #[arg(long)]
    dir: PathBuf,
    /// The application profile, `pmp-profile-1` XML (docs/profile.md).
    #[arg(long)]
    profile: PathBuf,
    /// The XOF order file (verified while it is read).
    #[arg(long = "in")]
    input: PathBuf,
    /// The production file to write.
    #[arg(long)]
    out: PathBuf,
    /// The reject report (default: PRODUCTION.rejects.txt beside the production file).
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// `pmp production ...`
#[derive(Args)]
pub struct ProductionArgs {
    #[command(subcommand)]
    command: ProductionCommand,
}

#[derive(Subcommand)]
enum ProductionCommand {
    /// Verify a production file on the production key store: the listed keys' usages,
    /// algorithms and KCVs, the header MAC, every card MAC and the chain, the count and the
    /// trailer. Prints the card count (exit 0), or the first problem (exit 1).
    Verify {
        /// The production key store holding the imported KTK, PTK, MTK and DTK.
        #[arg(long)]
        dir: PathBuf,
        /// The production file.
        #[arg(long = "in")]
        input: PathBuf,
        /// The label of the key that must MAC the file (default: the MTK the file names).
        #[arg(long, value_name = "LABEL")]
        mac_key: Option<String>,
    },
}

/// Prints a prep summary.
pub fn print_prep(s: &Summary) {
    println!(
        "read={} prepared={} rejected={}",
        s.read, s.prepared, s.rejected
    );
    println!("  order:        {}", s.order_id);
    for k in &s.keys {
        println!(
            "  key:          {} {} {} KCV {}",
            k.spec.label, k.spec.algorithm, k.spec.usage, k.kcv
        );
    }
    println!(
        "  time:         {:.3} s, {:.0} cards/s on {} worker(s)",
        s.elapsed.as_secs_f64(),
        s.cards_per_second(),
        s.workers
    );
    if !s.reasons.is_empty() {
        println!("  rejects by reason:");
        for (r, n) in &s.reasons {
            println!("    {:<18} {n}", r.code());
        }
    }
}

/// Runs `pmp prep`.
pub fn run_prep(args: PrepArgs) -> CliResult {
    let hsm = hsm_cmd::open(&args.dir)?;
    let profile = Profile::load(&args.profile)?;
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    let progress = |n: u64| pb.set_message(format!("{n} cards"));
    let opts = Options {
        workers: args.workers,
        progress: Some(&progress),
        ..Options::default()
    };
    let rejects = args
        .rejects
        .clone()
        .unwrap_or_else(|| prep::default_rejects_path(&args.out));
    let r = prep::run_files(
        &hsm,
        &profile,
        &args.input,
        &args.out,
        Some(&rejects),
        &opts,
    );
    pb.finish_and_clear();
    let s = r?;
    print_prep(&s);
    println!("  production:   {}", args.out.display());
    println!("  rejects:      {}", rejects.display());
    Ok(())
}

/// Runs `pmp production ...`.
pub fn run_production(args: ProductionArgs) -> CliResult {
    match args.command {
        ProductionCommand::Verify {
            dir,
            input,
            mac_key,
        } => {
            let hsm = hsm_cmd::open(&dir)?;
            let n = prep::production::verify_file(&input, &hsm, mac_key.as_deref())?;
            println!("{n}");
            Ok(())
        }
    }
}
