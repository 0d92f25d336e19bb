//! `pmp keyblock wrap|unwrap|inspect`.

use clap::{Args, Subcommand};

use pmp_core::keyblock::{self, Header, UnwrapPolicy};
use zeroize::Zeroizing;

use serde_json::json;

use crate::output;
use crate::{CliError, CliResult};

/// TR-31 / ANSI X9.143 key block commands.
#[derive(Args)]
pub struct KeyblockArgs {
    #[command(subcommand)]
    command: KeyblockCommand,
}

#[derive(Subcommand)]
enum KeyblockCommand {
    /// Wrap a clear key (key-ceremony and test tool).
    Wrap {
        /// Key block protection key in hex (TDES for versions A, B, C; AES for D).
        #[arg(long)]
        kbpk: String,
        /// The 16-character header (its length field is recomputed), optionally followed by
        /// optional blocks.
        #[arg(long)]
        header: String,
        /// The clear key in hex.
        #[arg(long)]
        key: String,
        /// Mask the key length: pad as if the key were N bytes long.
        #[arg(long)]
        masked_length: Option<usize>,
    },
    /// Unwrap a key block: prints the clear key, then the header fields, then the key's
    /// KCV (key-ceremony and test tool; accepts the legacy versions A and C).
    Unwrap {
        /// Key block protection key in hex.
        #[arg(long)]
        kbpk: String,
        /// The key block.
        #[arg(long)]
        block: String,
    },
    /// Show the header fields of a key block, without any key.
    Inspect {
        /// The key block.
        #[arg(long)]
        block: String,
    },
}

pub fn run(args: KeyblockArgs) -> CliResult {
    match args.command {
        KeyblockCommand::Wrap {
            kbpk,
            header,
            key,
            masked_length,
        } => {
            let header = Header::parse(header.trim_end_matches(['\r', '\n']))
                .map_err(|e| CliError::rejected(format!("--header: {e}")))?;
            let key_alg = header.algorithm.to_pmp().ok_or_else(|| {
                CliError::rejected(format!(
                    "--header: key algorithm {} ({}) is not supported; TDES (T) and AES (A) are",
                    header.algorithm,
                    header.algorithm.description()
                ))
            })?;
            let kbpk = crate::key_arg("--kbpk", header.version.kbpk_algorithm(), &kbpk)?;
            let key = crate::key_arg("--key", key_alg, &key)?;
            let block = keyblock::wrap(&kbpk, &header, &key, masked_length)?;
            output::result(|| println!("{block}"), || json!({"block": block}));
            Ok(())
        }
        KeyblockCommand::Unwrap { .. } if output::json() => Err(CliError::usage(
            "--json: `pmp keyblock unwrap` has no JSON output (it prints a clear key)",
        )),
        KeyblockCommand::Unwrap { kbpk, block } => {
            let block = block.trim();
            let header = keyblock::inspect(block)?;
            let kbpk = crate::key_arg("--kbpk", header.version.kbpk_algorithm(), &kbpk)?;
            // A test tool: legacy versions A and C are accepted here.
            let (header, key) = keyblock::unwrap(&kbpk, block, &UnwrapPolicy::permissive())?;
            let hex = Zeroizing::new(hex::encode_upper(key.expose_secret()));
            let mut out = format!("{}\n", hex.as_str());
            print_header(&mut out, &header, block.len());
            out.push_str(&format!("kcv: {}\n", key.kcv()));
            let out = Zeroizing::new(out);
            print!("{}", out.as_str());
            Ok(())
        }
        KeyblockCommand::Inspect { block } => {
            let block = block.trim();
            let header = keyblock::inspect(block)?;
            if output::json() {
                let h = &header;
                output::print_json(&json!({
                    "version": h.version.to_string(),
                    "length": block.len(),
                    "key_usage": h.usage.as_str(),
                    "algorithm": h.algorithm.to_string(),
                    "mode_of_use": h.mode_of_use.to_string(),
                    "key_version": h.key_version_str(),
                    "exportability": h.exportability.to_string(),
                    "optional_blocks": h.optional_blocks.iter()
                        .map(|b| json!({"id": b.id_str(), "data": b.data}))
                        .collect::<Vec<_>>(),
                }));
                return Ok(());
            }
            let mut out = String::new();
            print_header(&mut out, &header, block.len());
            print!("{out}");
            Ok(())
        }
    }
}

/// One `name: value` line per header field; descriptions go on `*_name` lines after the
/// code so that the value of each field line stays the bare code.
fn print_header(out: &mut String, h: &Header, len: usize) {
    let mut line = |k: &str, v: &str| {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push('\n');
    };
    line("version", &h.version.to_string());
    line("version_name", h.version.description());
    line("length", &format!("{len:04}"));
    line("key_usage", h.usage.as_str());
    line("key_usage_name", h.usage.description());
    line("algorithm", &h.algorithm.to_string());
    line("algorithm_name", h.algorithm.description());
    line("mode_of_use", &h.mode_of_use.to_string());
    line("mode_of_use_name", h.mode_of_use.description());
    line("key_version", h.key_version_str());
    line("exportability", &h.exportability.to_string());
    line("exportability_name", h.exportability.description());
    line("optional_blocks", &h.optional_blocks.len().to_string());
    for b in &h.optional_blocks {
        line(&format!("optional_block {}", b.id_str()), &b.data);
    }
}
