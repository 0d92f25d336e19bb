//! `pmp xof verify` and `pmp xof inspect`: XOF order files (`docs/xof.md`) from the shell.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use pmp_core::xof;

use crate::{CliResult, hsm_cmd};

/// `pmp xof ...`
#[derive(Args)]
pub struct XofArgs {
    #[command(subcommand)]
    command: XofCommand,
}

#[derive(Subcommand)]
enum XofCommand {
    /// Verify an XOF file: header MAC and MAC key KCV, every record MAC and the chain, the
    /// trailer. Prints the record count (exit 0), or the first problem (exit 1).
    Verify {
        /// The key store directory holding the file's MAC key.
        #[arg(long)]
        dir: PathBuf,
        /// The label of the key that must MAC the file: a file naming another MAC key is
        /// refused. Without it, the store's one XOF MAC key (AES, M6, not exportable,
        /// generated in the HSM) is expected; a store with none or several is refused.
        #[arg(long, value_name = "LABEL")]
        mac_key: Option<String>,
        /// The XOF file.
        file: PathBuf,
    },
    /// Show an XOF file's header, key list and counts. Checks structure and limits only:
    /// verifies no MAC and decrypts nothing.
    Inspect {
        /// The XOF file.
        file: PathBuf,
    },
}

/// Runs `pmp xof ...`.
pub fn run(args: XofArgs) -> CliResult {
    match args.command {
        XofCommand::Verify { dir, mac_key, file } => {
            let hsm = hsm_cmd::open(&dir)?;
            let label = match mac_key {
                Some(label) => label,
                None => xof::store_mac_key(&hsm)?,
            };
            let n = xof::verify_file_with_key(&file, &hsm, &label)?;
            println!("{n}");
            Ok(())
        }
        XofCommand::Inspect { file } => {
            let i = xof::inspect_file(&file)?;
            let h = &i.header;
            println!("version: {}", i.version);
            println!("order-id: {}", h.order_id);
            println!("issuer: {}", h.issuer);
            println!("product: {}", h.product);
            println!("created: {}", h.created);
            println!("mac-key: {}", h.mac_key);
            for k in &h.keys {
                println!(
                    "key: {} usage={} algorithm={} kcv={}",
                    k.label, k.usage, k.algorithm, k.kcv
                );
            }
            println!("records: {}", i.records);
            println!("trailer-records: {}", i.trailer_records);
            println!("attributes: {}", i.attributes);
            for (name, n) in &i.attributes_by_name {
                println!("attribute: {name} {n}");
            }
            for (key, n) in &i.attributes_by_key {
                println!("attributes-under-key: {key} {n}");
            }
            if i.records != i.trailer_records {
                eprintln!(
                    "pmp: warning: the trailer declares {} records, {} read",
                    i.trailer_records, i.records
                );
            }
            println!("macs: not verified (use pmp xof verify)");
            Ok(())
        }
    }
}
