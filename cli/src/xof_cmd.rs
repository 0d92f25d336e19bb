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
        /// The key store (or token) holding the file's MAC key.
        #[command(flatten)]
        backend: hsm_cmd::BackendArgs,
        /// The label of the key that must MAC the file: a file naming another MAC key is
        /// refused. Without it, any key of the store that may MAC an XOF (AES, M6, not
        /// exportable) is accepted.
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
        XofCommand::Verify {
            backend,
            mac_key,
            file,
        } => {
            let hsm = hsm_cmd::open_backend(&backend)?;
            let n = match &mac_key {
                Some(label) => xof::verify_file_with_key(&file, &*hsm, label)?,
                None => xof::verify_file(&file, &*hsm)?,
            };
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
