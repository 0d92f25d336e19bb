//! `pmp keyblock wrap|unwrap|inspect`.

use clap::{Args, Subcommand};

use crate::CliResult;

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
        /// Key block protection key in hex.
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
    /// Unwrap a key block: prints the clear key, then the header fields (key-ceremony and
    /// test tool).
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
        KeyblockCommand::Wrap { .. }
        | KeyblockCommand::Unwrap { .. }
        | KeyblockCommand::Inspect { .. } => {
            Err(crate::CliError::rejected("keyblock: not built yet"))
        }
    }
}
