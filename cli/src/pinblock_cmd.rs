//! `pmp pinblock encode|decode`.

use clap::{Args, Subcommand};

use crate::CliResult;

/// ISO 9564-1 PIN block commands.
#[derive(Args)]
pub struct PinblockArgs {
    #[command(subcommand)]
    command: PinblockCommand,
}

#[derive(Subcommand)]
enum PinblockCommand {
    /// Encode a PIN: prints the clear block (formats 0-3) or the AES-enciphered block
    /// (format 4, --key required), in uppercase hex.
    Encode {
        /// ISO 9564-1 format.
        #[arg(long, value_parser = ["0", "1", "2", "3", "4"])]
        format: String,
        /// The PIN, 4 to 12 digits.
        #[arg(long)]
        pin: String,
        /// The PAN (formats 0, 3 and 4), 12 to 19 digits.
        #[arg(long)]
        pan: Option<String>,
        /// AES key in hex (format 4).
        #[arg(long)]
        key: Option<String>,
    },
    /// Decode a PIN block: prints the PIN.
    Decode {
        /// ISO 9564-1 format.
        #[arg(long, value_parser = ["0", "1", "2", "3", "4"])]
        format: String,
        /// The block in hex (8 bytes for formats 0-3, 16 bytes for format 4).
        #[arg(long)]
        block: String,
        /// The PAN (formats 0, 3 and 4), 12 to 19 digits.
        #[arg(long)]
        pan: Option<String>,
        /// AES key in hex (format 4).
        #[arg(long)]
        key: Option<String>,
    },
}

pub fn run(args: PinblockArgs) -> CliResult {
    match args.command {
        PinblockCommand::Encode { .. } | PinblockCommand::Decode { .. } => {
            Err(crate::CliError::rejected("pinblock: not built yet"))
        }
    }
}
