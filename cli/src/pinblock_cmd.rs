//! `pmp pinblock encode|decode`.

use clap::{Args, Subcommand};

use pmp_core::pinblock::{self, Pan, Pin, PinBlockFormat};
use pmp_core::{Algorithm, SecretKey};
use zeroize::Zeroizing;

use crate::{CliError, CliResult};

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

/// Parses the PIN, never echoing it.
fn pin_arg(value: &str) -> Result<Pin, CliError> {
    Pin::new(value).map_err(|_| CliError::rejected("--pin: must be 4 to 12 decimal digits"))
}

/// Parses the PAN where the format needs one; a missing one is a usage error. A PAN given
/// to a format that takes none (1, 2) is ignored with a note on stderr, so that scripts can
/// pass the same arguments for every format.
fn pan_arg(format: PinBlockFormat, value: Option<&str>) -> Result<Option<Pan>, CliError> {
    match (format.needs_pan(), value) {
        (true, Some(v)) => Pan::new(v)
            .map(Some)
            .map_err(|_| CliError::rejected("--pan: must be 12 to 19 decimal digits")),
        (true, None) => Err(CliError::usage(format!(
            "--pan is required for format {}",
            format.number()
        ))),
        (false, Some(_)) => {
            eprintln!(
                "pmp: note: format {} is not bound to a PAN; --pan is ignored",
                format.number()
            );
            Ok(None)
        }
        (false, None) => Ok(None),
    }
}

/// The AES key of format 4. Formats 0-3 are printed and read clear: a key given with them is
/// ignored with a note on stderr.
fn key_opt(format: PinBlockFormat, value: Option<&str>) -> Result<Option<SecretKey>, CliError> {
    match (format, value) {
        (PinBlockFormat::Iso4, Some(v)) => crate::key_arg("--key", Algorithm::Aes, v).map(Some),
        (PinBlockFormat::Iso4, None) => {
            Err(CliError::usage("--key (AES) is required for format 4"))
        }
        (_, Some(_)) => {
            eprintln!(
                "pmp: note: --key applies to format 4 only; format {} blocks are clear, the key is ignored",
                format.number()
            );
            Ok(None)
        }
        (_, None) => Ok(None),
    }
}

fn format_arg(value: &str) -> Result<PinBlockFormat, CliError> {
    value
        .parse()
        .map_err(|_| CliError::usage("--format: expected 0, 1, 2, 3 or 4"))
}

pub fn run(args: PinblockArgs) -> CliResult {
    match args.command {
        PinblockCommand::Encode {
            format,
            pin,
            pan,
            key,
        } => {
            let pin_text = Zeroizing::new(pin);
            let format = format_arg(&format)?;
            let pan = pan_arg(format, pan.as_deref())?;
            let key_text = key.map(Zeroizing::new);
            let key = key_opt(format, key_text.as_deref().map(String::as_str))?;
            let pin = pin_arg(&pin_text)?;
            let hex = match key {
                Some(key) => {
                    let pan = pan.as_ref().expect("format 4 has a PAN");
                    hex::encode_upper(pinblock::encode_iso4(&key, &pin, pan)?)
                }
                None => hex::encode_upper(&pinblock::encode(format, &pin, pan.as_ref())?[..]),
            };
            let hex = Zeroizing::new(hex);
            println!("{}", hex.as_str());
            Ok(())
        }
        PinblockCommand::Decode {
            format,
            block,
            pan,
            key,
        } => {
            let format = format_arg(&format)?;
            let pan = pan_arg(format, pan.as_deref())?;
            let key_text = key.map(Zeroizing::new);
            let key = key_opt(format, key_text.as_deref().map(String::as_str))?;
            let block = crate::hex_arg("--block", &block)?;
            if block.len() != format.block_len() {
                return Err(CliError::rejected(format!(
                    "--block: format {} blocks are {} bytes, {} given",
                    format.number(),
                    format.block_len(),
                    block.len()
                )));
            }
            let pin = match key {
                Some(key) => {
                    let pan = pan.as_ref().expect("format 4 has a PAN");
                    pinblock::decode_iso4(&key, &block, pan)
                }
                None => pinblock::decode(format, &block, pan.as_ref()),
            }
            .map_err(|e| match e {
                pmp_core::Error::Crypto => CliError::rejected(format!(
                    "--block: not a valid format {} PIN block{}",
                    format.number(),
                    if format == PinBlockFormat::Iso4 {
                        " (or wrong key or PAN)"
                    } else if format.needs_pan() {
                        " (or wrong PAN)"
                    } else {
                        ""
                    }
                )),
                other => other.into(),
            })?;
            println!("{}", pin.expose_secret());
            Ok(())
        }
    }
}
