//! `pmp`: the pmp-core command-line tool for operators, key ceremonies and scripts.
//!
//! Output contract: the result on the first line of stdout (uppercase hex where it is
//! bytes). Exit status 0 on success, 1 when the input is rejected, 2 for a usage error.
//! Errors are one line on stderr and never repeat a key or a PIN.

mod hsm_cmd;
mod import_cmd;
mod keyblock_cmd;
mod output;
mod pinblock_cmd;
mod prep_cmd;
mod rsa_cmd;
mod store;
mod usage_error;
mod xof_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use pmp_core::{Algorithm, MacAlgorithm, Padding, SecretKey};
use zeroize::Zeroizing;

/// pmp — the security core of a card personalization bureau, from the command line.
///
/// Commands that take or print clear keys (kcv, mac, pinblock, keyblock) are key-ceremony
/// and test tools: run them on a trusted workstation, never on production secrets in a
/// shared shell history.
#[derive(Parser)]
#[command(name = "pmp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print the result as one JSON document on stdout instead of the human text (schema:
    /// docs/cli-json.md). Errors stay one line on stderr.
    #[arg(long, global = true)]
    json: bool,
    /// Report the progress of long commands (import, xof verify) as plain lines on stderr
    /// (percent, records, rate), for logs; without it a bar is drawn on a terminal only.
    #[arg(long, global = true)]
    progress: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Key check value of a clear key: TDES = 3 bytes of E(K, 0^8); AES = 5 bytes of
    /// CMAC(K, 0^16) (X9.24-1:2017). Prints the KCV in uppercase hex.
    Kcv {
        /// Key algorithm.
        #[arg(long, value_enum)]
        algorithm: KeyAlg,
        /// Clear key in hex (TDES: 16 or 24 bytes; AES: 16, 24 or 32 bytes).
        #[arg(long)]
        key: String,
    },
    /// MAC of hex data under a clear key (test tool). Prints the full-block MAC in
    /// uppercase hex.
    Mac {
        /// retail = ISO/IEC 9797-1 alg. 3 (16-byte TDES key); cbc-tdes / cbc-aes = alg. 1;
        /// cmac-tdes / cmac-aes = NIST SP 800-38B.
        #[arg(long, value_enum)]
        algorithm: MacAlg,
        /// Clear key in hex.
        #[arg(long)]
        key: String,
        /// Data in hex (may be empty).
        #[arg(long, allow_hyphen_values = true)]
        data: String,
        /// ISO/IEC 9797-1 padding method for retail and cbc-* (default 1). CMAC pads itself.
        #[arg(long, value_parser = ["1", "2"])]
        padding: Option<String>,
    },
    /// ISO 9564-1 PIN blocks (test tool: prints clear PINs and clear blocks).
    Pinblock(pinblock_cmd::PinblockArgs),
    /// TR-31 / ANSI X9.143 key blocks. wrap and unwrap take and print clear keys: they are
    /// key-ceremony and test tools. inspect shows header fields only.
    Keyblock(keyblock_cmd::KeyblockArgs),
    /// Create a software-HSM key store.
    Keystore(hsm_cmd::KeystoreArgs),
    /// Key management in a software-HSM key store (--dir) or on a PKCS#11 token
    /// (--pkcs11-module, --token; PIN in PMP_PKCS11_PIN). No command prints a clear key.
    Key(hsm_cmd::KeyArgs),
    /// Verify a key store's audit log.
    Audit(hsm_cmd::AuditArgs),
    /// The pool of ICC RSA key pairs (generated ahead, under the LMK) that `pmp prep` takes
    /// from.
    IccKeys(rsa_cmd::IccKeysArgs),
    /// XOF order files: verify (MACs, chain, trailer) or inspect (structure, counts).
    Xof(xof_cmd::XofArgs),
    /// Import an issuer's card file into an XOF order: every attribute re-encrypted under
    /// its DKep inside the HSM, rejects reported, counts reconciled (docs/product.md).
    Import(import_cmd::ImportArgs),
    /// The bureau's main job end to end on the built-in software HSM with a TEST LMK (or
    /// on a PKCS#11 token): keys, product, issuer file, import, XOF verification,
    /// transport keys.
    Demo(import_cmd::DemoArgs),
    /// Data preparation: an XOF order (verified while read) into a production file under
    /// the transport keys KTK / PTK / DTK, MACed under the MTK (docs/production.md).
    Prep(prep_cmd::PrepArgs),
    /// Production files: verify (KCVs, MACs, chain, count) on the production key store.
    Production(prep_cmd::ProductionArgs),
}

/// A key algorithm on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum KeyAlg {
    /// Triple DES.
    Tdes,
    /// AES.
    Aes,
}

impl From<KeyAlg> for Algorithm {
    fn from(a: KeyAlg) -> Self {
        match a {
            KeyAlg::Tdes => Algorithm::Tdes,
            KeyAlg::Aes => Algorithm::Aes,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum MacAlg {
    Retail,
    CbcTdes,
    CbcAes,
    CmacTdes,
    CmacAes,
}

impl From<MacAlg> for MacAlgorithm {
    fn from(a: MacAlg) -> Self {
        match a {
            MacAlg::Retail => MacAlgorithm::Retail,
            MacAlg::CbcTdes => MacAlgorithm::CbcTdes,
            MacAlg::CbcAes => MacAlgorithm::CbcAes,
            MacAlg::CmacTdes => MacAlgorithm::CmacTdes,
            MacAlg::CmacAes => MacAlgorithm::CmacAes,
        }
    }
}

/// A failure of a command: exit status and one line for stderr.
#[derive(Debug)]
pub struct CliError {
    code: u8,
    message: String,
}

impl CliError {
    /// Rejected input (exit 1).
    pub fn rejected(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    /// Usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<pmp_core::Error> for CliError {
    fn from(e: pmp_core::Error) -> Self {
        // pmp-core errors never carry secret values.
        CliError::rejected(e.to_string())
    }
}

/// The usage error of `--json` on a command that has no JSON output.
fn no_json(command: &str) -> CliError {
    CliError::usage(format!(
        "--json: `pmp {command}` has no JSON output (see docs/cli-json.md for the commands that do)"
    ))
}

/// Result of a command.
pub type CliResult = Result<(), CliError>;

/// Decodes a hex argument; the error names the flag and the first character that is not
/// a hex digit with its position, never the value.
pub fn hex_arg(flag: &str, value: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let value = value.trim();
    if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        let shown = if c.is_ascii_graphic() {
            format!("'{c}'")
        } else {
            format!("U+{:04X}", u32::from(c))
        };
        return Err(CliError::rejected(format!(
            "{flag}: character {} ({shown}) is not a hex digit (0-9, A-F)",
            i + 1
        )));
    }
    if !value.len().is_multiple_of(2) {
        return Err(CliError::rejected(format!(
            "{flag}: {} hex digits; bytes take two digits each, so the count must be even",
            value.len()
        )));
    }
    hex::decode(value)
        .map(Zeroizing::new)
        .map_err(|_| CliError::rejected(format!("{flag}: not a hex string")))
}

/// Checks a new key label against the one label rule (`pmp_core::label`), naming the
/// first character that breaks it. Labels are not secret: the message repeats it.
pub fn label_arg(flag: &str, value: &str) -> Result<(), CliError> {
    use pmp_core::label;
    if label::is_valid(value) {
        return Ok(());
    }
    let why = if value.is_empty() {
        "it is empty".to_string()
    } else if value.len() > label::MAX_LEN {
        format!("it has {} characters", value.len())
    } else {
        let (i, c) = value
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or((0, '?'));
        format!("character {} ({c:?}) is not allowed", i + 1)
    };
    Err(CliError::rejected(format!(
        "{flag} {value:?}: {why}; a label is {} (for example ZMK-PROD or DKEP_PAN.v2)",
        label::RULE
    )))
}

/// A clear key from a hex argument.
pub fn key_arg(flag: &str, algorithm: Algorithm, value: &str) -> Result<SecretKey, CliError> {
    let bytes = hex_arg(flag, value)?;
    SecretKey::new(algorithm, &bytes).map_err(|e| CliError::rejected(format!("{flag}: {e}")))
}

fn run(cli: Cli) -> CliResult {
    output::set(output::Mode {
        json: cli.json,
        progress: cli.progress,
    });
    match cli.command {
        Command::Kcv { algorithm, key } => {
            let key = key_arg("--key", algorithm.into(), &key)?;
            let kcv = key.kcv().to_string();
            output::result(|| println!("{kcv}"), || serde_json::json!({"kcv": kcv}));
            Ok(())
        }
        Command::Mac {
            algorithm,
            key,
            data,
            padding,
        } => {
            let alg: MacAlgorithm = algorithm.into();
            let padding_arg = padding.clone();
            let padding = match padding.as_deref() {
                None | Some("1") => Padding::Iso9797M1,
                Some(_) => Padding::Iso9797M2,
            };
            if !alg.takes_padding() && padding_arg.is_some() {
                eprintln!("pmp: note: CMAC pads by itself (NIST SP 800-38B); --padding is ignored");
            }
            let key = key_arg("--key", alg.key_algorithm(), &key)?;
            let data = hex_arg("--data", &data)?;
            let tag = pmp_core::mac(alg, &key, padding, &data)?;
            let tag = hex::encode_upper(tag.as_bytes());
            output::result(|| println!("{tag}"), || serde_json::json!({"mac": tag}));
            Ok(())
        }
        Command::Pinblock(_) if cli.json => Err(no_json("pinblock")),
        Command::Pinblock(args) => pinblock_cmd::run(args),
        Command::Keyblock(args) => keyblock_cmd::run(args),
        Command::Keystore(args) => hsm_cmd::run_keystore(args),
        Command::Key(args) => hsm_cmd::run_key(args),
        Command::Audit(args) => hsm_cmd::run_audit(args),
        Command::IccKeys(args) => rsa_cmd::run_icc_keys(args),
        Command::Xof(args) => xof_cmd::run(args),
        Command::Import(args) => import_cmd::run_import(args),
        Command::Demo(args) => import_cmd::run_demo(args),
        Command::Prep(args) => prep_cmd::run_prep(args),
        Command::Production(args) => prep_cmd::run_production(args),
    }
}

fn main() -> ExitCode {
    let cli: Cli = usage_error::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmp: error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
