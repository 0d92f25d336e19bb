//! `pmp keystore`, `pmp key` and `pmp audit`: the software HSM's key store from the shell.
//!
//! A store with a TEST LMK opens by itself; a store with a production LMK needs its
//! components in the environment variable `PMP_LMK_COMPONENTS` (comma-separated hex).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use pmp_core::hsm::{Hsm, KeySpec, LmkComponent, LmkSource, SoftHsm};
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
        #[command(flatten)]
        backend: BackendArgs,
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
        #[command(flatten)]
        backend: BackendArgs,
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
        #[command(flatten)]
        backend: BackendArgs,
        /// A new, unique label.
        #[arg(long)]
        label: String,
        /// Label of the key-encryption key (K0/K1).
        #[arg(long)]
        kek: String,
        /// The key block.
        #[arg(long)]
        block: String,
    },
    /// Export a key as a TR-31 key block under a key-encryption key. Prints the block.
    Export {
        #[command(flatten)]
        backend: BackendArgs,
        /// Label of the key to export (must be exportable).
        #[arg(long)]
        label: String,
        /// Label of the key-encryption key (K0/K1, at least as strong).
        #[arg(long)]
        kek: String,
    },
    /// List the keys: label, usage, algorithm, mode, exportability, KCV.
    List {
        #[command(flatten)]
        backend: BackendArgs,
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

/// Where a command finds its keys: a software-HSM key store (`--dir`), or a PKCS#11 token
/// (`--pkcs11-module` and `--token`; the user PIN from the environment variable
/// `PMP_PKCS11_PIN`, never a flag).
#[derive(Args, Clone, Debug)]
pub struct BackendArgs {
    /// The software-HSM key store directory.
    #[arg(
        long,
        value_name = "KEYSTORE",
        required_unless_present = "pkcs11_module",
        conflicts_with_all = ["pkcs11_module", "token"]
    )]
    dir: Option<PathBuf>,
    /// A PKCS#11 module (.so) instead of --dir, with --token. The user PIN comes from
    /// PMP_PKCS11_PIN; PMP_PKCS11_HOST_KEY_FALLBACK=1 allows key-block import and export
    /// through host memory where the token has no mechanism for them (SoftHSMv2).
    #[arg(long, value_name = "PATH", requires = "token")]
    pkcs11_module: Option<PathBuf>,
    /// The label of the token in the PKCS#11 module.
    #[arg(long, value_name = "LABEL", requires = "pkcs11_module")]
    token: Option<String>,
}

/// Opens the backend the arguments name: the software HSM's store, or the PKCS#11 token.
pub fn open_backend(b: &BackendArgs) -> Result<Box<dyn Hsm>, CliError> {
    match (&b.dir, &b.pkcs11_module, &b.token) {
        (Some(dir), None, None) => Ok(Box::new(open(dir)?)),
        (None, Some(module), Some(token)) => open_pkcs11(module, token, None),
        _ => Err(CliError::usage(
            "give --dir KEYSTORE, or --pkcs11-module PATH and --token LABEL",
        )),
    }
}

/// Opens the token `token` of the PKCS#11 module `module`, the PIN from `PMP_PKCS11_PIN`;
/// `host_key_fallback` overrides `PMP_PKCS11_HOST_KEY_FALLBACK` when given.
#[cfg(feature = "pkcs11")]
pub fn open_pkcs11(
    module: &Path,
    token: &str,
    host_key_fallback: Option<bool>,
) -> Result<Box<dyn Hsm>, CliError> {
    use pmp_core::hsm::{Pkcs11Config, Pkcs11Hsm};
    let mut config = Pkcs11Config::from_env(module, token)?;
    if let Some(allowed) = host_key_fallback {
        config = config.with_host_key_fallback(allowed);
    }
    Ok(Box::new(Pkcs11Hsm::open(&config)?))
}

/// Without the `pkcs11` feature: refused, naming the feature.
#[cfg(not(feature = "pkcs11"))]
pub fn open_pkcs11(
    _module: &Path,
    _token: &str,
    _host_key_fallback: Option<bool>,
) -> Result<Box<dyn Hsm>, CliError> {
    Err(CliError::usage(
        "--pkcs11-module: this pmp was built without PKCS#11 support (build pmp-cli with --features pkcs11)",
    ))
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
            backend,
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
            let hsm = open_backend(&backend)?;
            let alg: Algorithm = algorithm.into();
            let spec = KeySpec::new(&label, alg, comps[0].len(), usage, mode);
            let parts: Vec<&[u8]> = comps.iter().map(|c| c.as_slice()).collect();
            let info = hsm.form_key_from_components(&spec, &parts, &[], expected.as_ref())?;
            println!("{}", info.kcv);
            Ok(())
        }
        KeyCommand::Generate {
            backend,
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
            let hsm = open_backend(&backend)?;
            let mut spec = KeySpec::new(&label, alg, len, usage, mode);
            if exportable {
                spec = spec.exportable();
            }
            let info = hsm.generate_key(&spec)?;
            println!("{}", info.kcv);
            Ok(())
        }
        KeyCommand::Import {
            backend,
            label,
            kek,
            block,
        } => {
            let hsm = open_backend(&backend)?;
            let kek = hsm.find_key(&kek)?;
            let info = hsm.import_key_block(&label, &kek, &block)?;
            println!("{}", info.kcv);
            Ok(())
        }
        KeyCommand::Export {
            backend,
            label,
            kek,
        } => {
            let hsm = open_backend(&backend)?;
            let key = hsm.find_key(&label)?;
            let kek = hsm.find_key(&kek)?;
            println!("{}", hsm.export_key_block(&key, &kek)?);
            Ok(())
        }
        KeyCommand::List { backend } => {
            let hsm = open_backend(&backend)?;
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
