//! `pmp prep` (XOF order → production file, `docs/production.md`) and `pmp production
//! verify` (the production side's check).
//!
//! `pmp prep` prints a summary on stdout (first line: `read=N prepared=N rejected=N`) and a
//! progress bar on stderr when stderr is a terminal. Nothing secret is printed: key labels
//! and KCVs, counts, reasons and paths only.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use pmp_core::prep::{self, Options, Summary, production::ReadOptions, profile::Profile};
use serde_json::json;

use crate::output::{self, Reporter};
use crate::{CliError, CliResult, hsm_cmd};

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
    /// Replace an existing production file or reject report.
    #[arg(long)]
    force: bool,
    /// Accept a TEST order (test="true") on a production key store.
    #[arg(long)]
    allow_test: bool,
    /// Generate every card's ICC RSA key pair in line, leaving the key store's pool alone.
    #[arg(long)]
    no_icc_pool: bool,
    /// The first ICC certificate serial number (0 to 16777215; the card of XOF sequence
    /// number s gets START + s - 1). Default: a random start per run, printed in the summary.
    #[arg(long, value_name = "START")]
    icc_serial_start: Option<u32>,
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
        /// Accept a TEST production file (test="true") on a production key store.
        #[arg(long)]
        allow_test: bool,
    },
}

/// A prep summary as JSON (`docs/cli-json.md`).
pub fn prep_json(s: &Summary) -> serde_json::Value {
    json!({
        "order_id": s.order_id,
        "read": s.read,
        "prepared": s.prepared,
        "rejected": s.rejected,
        "elapsed_seconds": s.elapsed.as_secs_f64(),
        "cards_per_second": s.cards_per_second(),
        "workers": s.workers,
        "keys": s.keys.iter().map(output::key_json).collect::<Vec<_>>(),
        "icc_keys_from_pool": s.icc_keys_from_pool,
        "icc_keys_in_line": s.icc_keys_in_line,
        "icc_serial_first": s.icc_serial_first,
        "rejects_by_reason": s
            .reasons
            .iter()
            .map(|(r, n)| (r.code().to_string(), json!(n)))
            .collect::<serde_json::Map<_, _>>(),
    })
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
    if s.icc_keys_from_pool + s.icc_keys_in_line > 0 {
        println!(
            "  ICC keys: {} from the pool, {} generated in line",
            s.icc_keys_from_pool, s.icc_keys_in_line
        );
    }
    if let Some(first) = s.icc_serial_first {
        println!(
            "  ICC certificate serials: from {first:06X} (the card of XOF seq s has {first:06X} + s - 1)"
        );
    }
    if !s.reasons.is_empty() {
        println!("  rejects by reason:");
        for (r, n) in &s.reasons {
            println!("    {:<18} {n}", r.code());
        }
    }
}

/// Runs `pmp prep`.
pub fn run_prep(args: PrepArgs) -> CliResult {
    let rejects = args
        .rejects
        .clone()
        .unwrap_or_else(|| prep::default_rejects_path(&args.out));
    if !args.force {
        for (flag, path) in [("--out", &args.out), ("--rejects", &rejects)] {
            if path.exists() {
                return Err(CliError::rejected(format!(
                    "{flag} {}: the file exists; give --force to replace it, or choose another name",
                    path.display()
                )));
            }
        }
    }
    let hsm = hsm_cmd::open(&args.dir)?;
    let profile = Profile::load(&args.profile)?;
    let reporter = Reporter::new("prep", None);
    let progress = |n: u64| reporter.update(0, n);
    let opts = Options {
        workers: args.workers,
        progress: Some(&progress),
        allow_test: args.allow_test,
        icc_use_pool: !args.no_icc_pool,
        icc_serial_start: args.icc_serial_start,
        ..Options::default()
    };
    let r = prep::run_files(
        &hsm,
        &profile,
        &args.input,
        &args.out,
        Some(&rejects),
        &opts,
    );
    reporter.finish();
    let s = r?;
    output::result(
        || {
            print_prep(&s);
            println!("  production:   {}", args.out.display());
            println!("  rejects:      {}", rejects.display());
        },
        || {
            let mut v = prep_json(&s);
            v["production"] = json!(args.out.display().to_string());
            v["rejects"] = json!(rejects.display().to_string());
            v
        },
    );
    Ok(())
}

/// Runs `pmp production ...`.
pub fn run_production(args: ProductionArgs) -> CliResult {
    match args.command {
        ProductionCommand::Verify {
            dir,
            input,
            mac_key,
            allow_test,
        } => {
            let hsm = hsm_cmd::open(&dir)?;
            let opts = ReadOptions {
                mac_key: mac_key.as_deref(),
                allow_test,
            };
            let n = prep::production::verify_file_with(&input, &hsm, &opts)?;
            output::result(
                || println!("{n}"),
                || {
                    json!({
                        "file": input.display().to_string(),
                        "verified": true,
                        "cards": n,
                    })
                },
            );
            Ok(())
        }
    }
}
