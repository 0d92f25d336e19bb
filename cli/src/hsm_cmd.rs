//! `pmp keystore`, `pmp key` and `pmp audit`: the software HSM's key store from the shell.
//!
//! A store with a TEST LMK opens by itself; a store with a production LMK needs its
//! components in the environment variable `PMP_LMK_COMPONENTS` (comma-separated hex).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use pmp_core::hsm::{Hsm, ImportCheck, KeySpec, LmkComponent, LmkSource, SoftHsm};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::{Algorithm, Kcv};
use zeroize::{Zeroize, Zeroizing};

use crate::{CliError, CliResult, KeyAlg, hex_arg};

/// `pmp keystore ...`
#[derive(Args)]
pub struct KeystoreArgs {
    #[command(subcommand)]
    command: KeystoreCommand,
}

#[derive(Subcommand)]
enum KeystoreCommand {
    /// Create a key store: with a generated TEST LMK (development) or a production LMK
    /// from 2 or 3 AES-256 components (key ceremony; the LMK is never written to disk).
    Init {
        /// The key store directory.
        #[arg(long)]
        dir: PathBuf,
        /// Generate a TEST LMK (kept in DIR/lmk.test; refused where production is required).
        #[arg(long, conflicts_with = "lmk_component")]
        test_lmk: bool,
        /// An LMK component in hex (32 bytes), 2 or 3 times.
        #[arg(long = "lmk-component", num_args = 1)]
        lmk_component: Vec<String>,
    },
}

/// `pmp key ...`
#[derive(Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Form a key from 2 or 3 clear components (key ceremony). Prints the KCV.
    Components {
        /// The key store directory.
        #[arg(long)]
        dir: PathBuf,
        /// A new, unique label.
        #[arg(long)]
        label: String,
        /// TR-31 key usage (K0, K1, D0, P0, M1, M3, M6, ...).
        #[arg(long)]
        usage: String,
        /// Key algorithm.
        #[arg(long, value_enum)]
        algorithm: KeyAlg,
        /// A clear component in hex, 2 or 3 times.
        #[arg(long, num_args = 1)]
        component: Vec<String>,
        /// Expected KCV of the resulting key; the key is refused (nothing stored) when it differs.
        #[arg(long)]
        kcv: Option<String>,
        /// TR-31 mode of use (default: B, or C for MAC keys).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Generate a random key. Prints the KCV.
    Generate {
        /// The key store directory.
        #[arg(long)]
        dir: PathBuf,
        /// A new, unique label.
        #[arg(long)]
        label: String,
        /// TR-31 key usage.
        #[arg(long)]
        usage: String,
        /// Key algorithm.
        #[arg(long, value_enum)]
        algorithm: KeyAlg,
        /// Key size in bits (TDES: 128 or 192; AES: 128, 192 or 256).
        #[arg(long, value_parser = ["128", "192", "256"])]
        bits: String,
        /// TR-31 mode of use (default: B, or C for MAC keys).
        #[arg(long)]
        mode: Option<String>,
        /// Allow export under a key-encryption key (exportability E).
        #[arg(long)]
        exportable: bool,
    },
    /// Import a TR-31 key block under a key-encryption key. Prints the KCV.
    Import {
        /// The key store directory.
        #[arg(long)]
        dir: PathBuf,
        /// A new, unique label.
        #[arg(long)]
        label: String,
        /// Label of the key-encryption key (K0/K1).
        #[arg(long)]
        kek: String,
        /// The key block.
        #[arg(long)]
        block: String,
        /// The KCV the sender gave with the key (hex); checked before anything is stored:
        /// a key that differs is refused and nothing is imported.
        #[arg(long)]
        kcv: Option<String>,
    },
    /// Export a key as a TR-31 key block under a key-encryption key. Prints the block.
    Export {
        /// The key store directory.
        #[arg(long)]
        dir: PathBuf,
        /// Label of the key to export (must be exportable).
        #[arg(long)]
        label: String,
        /// Label of the key-encryption key (K0/K1, at least as strong).
        #[arg(long)]
        kek: String,
    },
    /// List the keys: label, usage, algorithm, mode, exportability, KCV.
    List {
        /// The key store directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// `pmp audit ...`
#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the audit log's chain: exit 0 when intact, 1 naming the first bad entry.
    Verify {
        /// The key store directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Opens the store in `dir` (TEST LMK, or production components from the environment).
pub fn open(dir: &Path) -> Result<SoftHsm, CliError> {
    SoftHsm::open(dir, LmkSource::Auto).map_err(CliError::from)
}

fn usage_arg(s: &str) -> Result<KeyUsage, CliError> {
    s.parse::<KeyUsage>()
        .map_err(|e| CliError::rejected(format!("--usage: {e}")))
}

fn mode_arg(mode: Option<&str>, usage: KeyUsage) -> Result<ModeOfUse, CliError> {
    match mode {
        Some(m) => m
            .parse::<ModeOfUse>()
            .map_err(|e| CliError::rejected(format!("--mode: {e}"))),
        None => Ok(if usage.as_str().starts_with('M') {
            ModeOfUse::C
        } else {
            ModeOfUse::B
        }),
    }
}

/// Decodes 2 or 3 hex components and wipes the argument strings. (The process's argument
/// vector itself is visible to the OS while the command runs: that is the contract's
/// `--component HEX` flag; run ceremonies on a dedicated workstation.)
fn components_arg(mut values: Vec<String>) -> Result<Vec<Zeroizing<Vec<u8>>>, CliError> {
    let decoded = if (2..=3).contains(&values.len()) {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| hex_arg(&format!("component {}", i + 1), v))
            .collect()
    } else {
        Err(CliError::usage(format!(
            "give 2 or 3 components, not {}",
            values.len()
        )))
    };
    values.iter_mut().for_each(Zeroize::zeroize);
    decoded
}

/// Runs `pmp keystore ...`.
pub fn run_keystore(args: KeystoreArgs) -> CliResult {
    match args.command {
        KeystoreCommand::Init {
            dir,
            test_lmk,
            lmk_component,
        } => {
            let source = if test_lmk {
                LmkSource::Test
            } else if lmk_component.is_empty() {
                return Err(CliError::usage(
                    "give --test-lmk or 2 to 3 --lmk-component values",
                ));
            } else {
                LmkSource::Components(
                    components_arg(lmk_component)?
                        .into_iter()
                        .map(|c| LmkComponent::new(&c, None))
                        .collect(),
                )
            };
            let hsm = SoftHsm::init(&dir, source)?;
            println!(
                "key store created in {} (LMK {})",
                dir.display(),
                if hsm.is_test() { "TEST" } else { "PRODUCTION" }
            );
            Ok(())
        }
    }
}

/// Runs `pmp key ...`.
pub fn run_key(args: KeyArgs) -> CliResult {
    match args.command {
        KeyCommand::Components {
            dir,
            label,
            usage,
            algorithm,
            component,
            kcv,
            mode,
        } => {
            let usage = usage_arg(&usage)?;
            let mode = mode_arg(mode.as_deref(), usage)?;
            let comps = components_arg(component)?;
            let expected = kcv
                .as_deref()
                .map(Kcv::from_hex)
                .transpose()
                .map_err(|e| CliError::rejected(format!("--kcv: {e}")))?;
            let hsm = open(&dir)?;
            let alg: Algorithm = algorithm.into();
            let spec = KeySpec::new(&label, alg, comps[0].len(), usage, mode);
            let parts: Vec<&[u8]> = comps.iter().map(|c| c.as_slice()).collect();
            let info = hsm.form_key_from_components(&spec, &parts, &[], expected.as_ref())?;
            println!("{}", info.kcv);
            Ok(())
        }
        KeyCommand::Generate {
            dir,
            label,
            usage,
            algorithm,
            bits,
            mode,
            exportable,
        } => {
            let usage = usage_arg(&usage)?;
            let mode = mode_arg(mode.as_deref(), usage)?;
            let alg: Algorithm = algorithm.into();
            let len = bits.parse::<usize>().unwrap_or(0) / 8;
            if !alg.valid_key_len(len) {
                return Err(CliError::rejected(format!(
                    "--bits: {bits} is not a {alg} key size"
                )));
            }
            let hsm = open(&dir)?;
            let mut spec = KeySpec::new(&label, alg, len, usage, mode);
            if exportable {
                spec = spec.exportable();
            }
            let info = hsm.generate_key(&spec)?;
            println!("{}", info.kcv);
            Ok(())
        }
        KeyCommand::Import {
            dir,
            label,
            kek,
            block,
            kcv,
        } => {
            let expected = kcv
                .as_deref()
                .map(Kcv::from_hex)
                .transpose()
                .map_err(|e| CliError::rejected(format!("--kcv: {e}")))?;
            let hsm = open(&dir)?;
            let kek = hsm.find_key(&kek)?;
            let info = hsm.import_key_block_checked(
                &label,
                &kek,
                &block,
                &ImportCheck {
                    kcv: expected.as_ref(),
                    usages: &[],
                },
            )?;
            println!("{}", info.kcv);
            Ok(())
        }
        KeyCommand::Export { dir, label, kek } => {
            let hsm = open(&dir)?;
            let key = hsm.find_key(&label)?;
            let kek = hsm.find_key(&kek)?;
            println!("{}", hsm.export_key_block(&key, &kek)?);
            Ok(())
        }
        KeyCommand::List { dir } => {
            let hsm = open(&dir)?;
            for k in hsm.list_keys()? {
                println!(
                    "{} usage={} algorithm={} bits={} mode={:?} exportability={:?} kcv={}",
                    k.spec.label,
                    k.spec.usage,
                    k.spec.algorithm,
                    k.spec.len * 8,
                    k.spec.mode_of_use,
                    k.spec.exportability,
                    k.kcv
                );
            }
            Ok(())
        }
    }
}

/// Runs `pmp audit ...`.
pub fn run_audit(args: AuditArgs) -> CliResult {
    match args.command {
        AuditCommand::Verify { dir } => {
            let v = pmp_core::hsm::verify_audit_log(&dir, LmkSource::Auto)?;
            println!("audit log intact: {} entries", v.entries);
            Ok(())
        }
    }
}
