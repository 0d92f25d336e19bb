//! `pmp keystore`, `pmp key` and `pmp audit`: the software HSM's key store from the shell.
//!
//! A store with a TEST LMK opens by itself; a store with a production LMK needs its
//! components in the environment variable `PMP_LMK_COMPONENTS` (comma-separated hex).
//!
//! Dual control: on a production store the sensitive commands (`key components`, `key
//! import` of a KEK, `key export`, `key generate --exportable`, `key delete`, enrolling a
//! third officer) take `--officer ID` twice. Each officer's passphrase is read from the
//! environment variable `PMP_PASSPHRASE_<ID>` (the id upper-cased, other characters than
//! letters and digits as `_`) or, when that is not set, prompted for on standard error and
//! read as one line from standard input — never from the command line. The authorisation
//! covers the one activity of the command for at most five minutes and is ended when the
//! command ends. A TEST-LMK store waives it (its audit entries say so).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use pmp_core::hsm::{
    Activity, Hsm, ImportCheck, KeySpec, LmkComponent, LmkSource, Officer, SoftHsm,
};
use pmp_core::keyblock::{Exportability, KeyUsage, ModeOfUse};
use pmp_core::{Algorithm, Kcv};
use zeroize::{Zeroize, Zeroizing};

use serde_json::json;

use crate::output;
use crate::{CliError, CliResult, KeyAlg, hex_arg, label_arg};

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
    /// Enrol an officer for dual control: the passphrase (at least 12 bytes) comes from
    /// `PMP_PASSPHRASE_<ID>` or a prompt. The first two officers enrol freely; a third, or a
    /// new passphrase, needs two enrolled officers (--officer twice).
    EnrolOfficer {
        /// The key store directory.
        #[arg(long)]
        dir: PathBuf,
        /// The new officer's id.
        #[arg(long)]
        id: String,
        /// An authorising officer (twice), when two are already enrolled.
        #[arg(long, num_args = 1)]
        officer: Vec<String>,
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
        /// TR-31 mode of use (default: B, or C for MAC keys; a KEK on a production store must
        /// be D, imports only, or E, exports only).
        #[arg(long)]
        mode: Option<String>,
        /// An authorising officer (twice; dual control on a production store).
        #[arg(long, num_args = 1)]
        officer: Vec<String>,
    },
    /// Generate a random key (prints the KCV), or an RSA key pair (`--algorithm rsa
    /// --usage S0`; prints the SHA-1 of the modulus).
    Generate {
        #[command(flatten)]
        backend: BackendArgs,
        /// A new, unique label.
        #[arg(long)]
        label: String,
        /// TR-31 key usage (S0 for an RSA key).
        #[arg(long)]
        usage: String,
        /// Key algorithm.
        #[arg(long, value_enum)]
        algorithm: GenerateAlg,
        /// Key size in bits (TDES: 128 or 192; AES: 128, 192 or 256; RSA: a multiple of 8
        /// from 1024 to 1984).
        #[arg(long)]
        bits: String,
        /// RSA public exponent: 3 or 65537 (RSA only).
        #[arg(long, value_parser = ["3", "65537"])]
        exponent: Option<String>,
        /// TR-31 mode of use (default: B, or C for MAC keys, S for RSA).
        #[arg(long)]
        mode: Option<String>,
        /// Allow export under a key-encryption key (exportability E).
        #[arg(long)]
        exportable: bool,
        /// An authorising officer (twice; dual control on a production store, with
        /// --exportable).
        #[arg(long, num_args = 1)]
        officer: Vec<String>,
    },
    /// Import a TR-31 key block under a key-encryption key. Prints the KCV (for an RSA
    /// key block, algorithm R, usage S0: the SHA-1 of the modulus).
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
        /// The usages accepted, comma-separated (e.g. D0,P0). Default: any usage but a
        /// key-encryption key (K0, K1), which must be named here.
        #[arg(long)]
        usage: Option<String>,
        /// The KCV the sender gave separately; the key is refused when it differs.
        #[arg(long)]
        kcv: Option<String>,
        /// An authorising officer (twice; dual control on a production store, for a KEK).
        #[arg(long, num_args = 1)]
        officer: Vec<String>,
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
        /// An authorising officer (twice; dual control on a production store).
        #[arg(long, num_args = 1)]
        officer: Vec<String>,
    },
    /// Delete a key.
    Delete {
        #[command(flatten)]
        backend: BackendArgs,
        /// Label of the key to delete.
        #[arg(long)]
        label: String,
        /// An authorising officer (twice; dual control on a production store).
        #[arg(long, num_args = 1)]
        officer: Vec<String>,
    },
    /// List the keys: label, usage, algorithm, mode, exportability, KCV; then the RSA keys:
    /// label, usage, bits, exponent, mode, SHA-1 of the modulus.
    List {
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Print an RSA key's public half: `modulus=HEX` and `exponent=HEX` lines (for the
    /// certificate request to the scheme CA).
    Public {
        #[command(flatten)]
        backend: BackendArgs,
        /// Label of the RSA key.
        #[arg(long)]
        label: String,
    },
}

/// The algorithm of `pmp key generate`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum GenerateAlg {
    /// Triple DES.
    Tdes,
    /// AES.
    Aes,
    /// RSA (an EMV issuer key pair; --usage S0, --exponent).
    Rsa,
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

/// Opens the store in `dir` (TEST LMK, or production components from the environment),
/// with the operator's errors and the TEST note of [`crate::store::open`].
pub fn open(dir: &Path) -> Result<SoftHsm, CliError> {
    crate::store::open(dir)
}

/// A key's KCV on stdout (its JSON description with `--json`).
fn print_key(info: &pmp_core::hsm::KeyInfo) {
    output::result(|| println!("{}", info.kcv), || output::key_json(info));
}

/// Whether a key may wrap others (K0, K1).
fn is_kek(k: &pmp_core::hsm::KeyInfo) -> bool {
    matches!(k.spec.usage, KeyUsage::K0 | KeyUsage::K1)
}

/// The environment variable that may hold officer `id`'s passphrase.
fn passphrase_var(id: &str) -> String {
    let id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("PMP_PASSPHRASE_{id}")
}

/// Officer `id`'s passphrase: from `PMP_PASSPHRASE_<ID>`, else prompted for on standard
/// error and read as one line from standard input.
fn passphrase(id: &str) -> Result<Zeroizing<String>, CliError> {
    if let Ok(v) = std::env::var(passphrase_var(id)) {
        return Ok(Zeroizing::new(v));
    }
    eprint!("passphrase for officer {id}: ");
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::rejected(format!("reading the passphrase of officer {id}: {e}")))?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string());
    Ok(trimmed)
}

/// Dual control: with two `--officer` values, they authorise `activity` for this command
/// (five minutes at most). Without, nothing is asked: a production store then refuses the
/// sensitive operation itself, naming the missing authorisation.
fn authorise(hsm: &dyn Hsm, officers: &[String], activity: Activity) -> Result<(), CliError> {
    match officers.len() {
        0 => Ok(()),
        2 => {
            let p1 = passphrase(&officers[0])?;
            let p2 = passphrase(&officers[1])?;
            hsm.authorise(
                &Officer {
                    id: &officers[0],
                    passphrase: p1.as_bytes(),
                },
                &Officer {
                    id: &officers[1],
                    passphrase: p2.as_bytes(),
                },
                &[activity],
                std::time::Duration::from_secs(300),
            )?;
            Ok(())
        }
        n => Err(CliError::usage(format!(
            "give --officer twice (two different officers), not {n} times"
        ))),
    }
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

impl BackendArgs {
    /// The key store directory, when the keys are in a software-HSM store.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Where the keys are, for messages: the key store (with the command that lists it) or
    /// the token.
    pub fn place(&self) -> String {
        match (&self.dir, &self.token) {
            (Some(dir), _) => format!(
                "the key store {} (see `pmp key list --dir {}`)",
                dir.display(),
                dir.display()
            ),
            (None, Some(token)) => format!("the token {token}"),
            (None, None) => "the key store".to_string(),
        }
    }
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
            let lmk = if hsm.is_test() { "TEST" } else { "PRODUCTION" };
            output::result(
                || println!("key store created in {} (LMK {lmk})", dir.display()),
                || json!({"dir": dir.display().to_string(), "lmk": lmk, "test": hsm.is_test()}),
            );
            Ok(())
        }
        KeystoreCommand::EnrolOfficer { dir, id, officer } => {
            let hsm = open(&dir)?;
            authorise(&hsm, &officer, Activity::ManageOfficers)?;
            let p = passphrase(&id)?;
            let r = hsm.enrol_officer(&id, p.as_bytes());
            let _ = hsm.end_authorisation();
            r?;
            println!("officer {id} enrolled");
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
            officer,
        } => {
            label_arg("--label", &label)?;
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
            authorise(&*hsm, &officer, Activity::FormKey)?;
            let r = hsm.form_key_from_components(&spec, &parts, &[], expected.as_ref());
            let _ = hsm.end_authorisation();
            let info = r?;
            print_key(&info);
            Ok(())
        }
        KeyCommand::Generate {
            backend,
            label,
            usage,
            algorithm,
            bits,
            exponent,
            mode,
            exportable,
            officer,
        } => {
            label_arg("--label", &label)?;
            let usage = usage_arg(&usage)?;
            let alg = match algorithm {
                GenerateAlg::Rsa => {
                    return crate::rsa_cmd::generate(
                        &backend,
                        &label,
                        usage,
                        &bits,
                        exponent.as_deref(),
                        mode.as_deref(),
                        exportable,
                    );
                }
                GenerateAlg::Tdes => Algorithm::Tdes,
                GenerateAlg::Aes => Algorithm::Aes,
            };
            if exponent.is_some() {
                return Err(CliError::usage("--exponent is for --algorithm rsa only"));
            }
            let mode = mode_arg(mode.as_deref(), usage)?;
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
                authorise(&*hsm, &officer, Activity::GenerateExportable)?;
            }
            let r = hsm.generate_key(&spec);
            let _ = hsm.end_authorisation();
            let info = r?;
            print_key(&info);
            Ok(())
        }
        KeyCommand::Import {
            backend,
            label,
            kek,
            block,
            usage,
            kcv,
            officer,
        } => {
            label_arg("--label", &label)?;
            let block = block.trim();
            if pmp_core::keyblock::inspect(block)?.algorithm
                == pmp_core::keyblock::KeyAlgorithm::Rsa
            {
                return crate::rsa_cmd::import(
                    &backend,
                    &label,
                    &kek,
                    block,
                    usage.as_deref(),
                    kcv.is_some(),
                    &officer,
                );
            }
            // As in the library (hierarchy::import_issuer_key): the usages expected are
            // checked before anything is stored; a KEK only when named.
            let usages: Vec<KeyUsage> = match usage.as_deref() {
                Some(list) => list
                    .split(',')
                    .map(|u| usage_arg(u.trim()))
                    .collect::<Result<_, _>>()?,
                None => {
                    // Without --usage: whatever the block carries, unless it is a KEK.
                    let h = pmp_core::keyblock::inspect(block)?;
                    if matches!(h.usage, KeyUsage::K0 | KeyUsage::K1) {
                        return Err(CliError::rejected(format!(
                            "the key block carries a key-encryption key ({}): name the usage \
                             with --usage {} to import one (a sensitive activity)",
                            h.usage, h.usage
                        )));
                    }
                    vec![h.usage]
                }
            };
            let expected = kcv
                .as_deref()
                .map(Kcv::from_hex)
                .transpose()
                .map_err(|e| CliError::rejected(format!("--kcv: {e}")))?;
            let hsm = open_backend(&backend)?;
            let kek_label = kek;
            let kek = crate::store::find_key(&*hsm, &backend.place(), "--kek", &kek_label, is_kek)?;
            authorise(&*hsm, &officer, Activity::ImportKek)?;
            let r = hsm.import_key_block_checked(
                &label,
                &kek,
                block,
                &ImportCheck {
                    kcv: expected.as_ref(),
                    usages: &usages,
                },
            );
            let _ = hsm.end_authorisation();
            let info = match r {
                Err(pmp_core::Error::Crypto) => {
                    // Opaque on purpose in the library (no oracle); the operator still
                    // learns which block and which KEK, neither of them secret.
                    let kcv = hsm.key_info(&kek).map(|i| i.kcv.to_string());
                    return Err(CliError::rejected(format!(
                        "--block {}...: the key block does not verify under the KEK {kek_label} (KCV {}): it was changed on the way, or made under another key-encryption key; ask the sender to check the KEK's KCV and send the block again",
                        block.get(..16).unwrap_or(block),
                        kcv.as_deref().unwrap_or("unknown")
                    )));
                }
                r => r?,
            };
            print_key(&info);
            Ok(())
        }
        KeyCommand::Export {
            backend,
            label,
            kek,
            officer,
        } => {
            let hsm = open_backend(&backend)?;
            let key = crate::store::find_key(&*hsm, &backend.place(), "--label", &label, |k| {
                k.spec.exportability != Exportability::N
            })?;
            let kek_label = kek;
            let kek = crate::store::find_key(&*hsm, &backend.place(), "--kek", &kek_label, is_kek)?;
            authorise(&*hsm, &officer, Activity::Export)?;
            let r = hsm.export_key_block(&key, &kek);
            let _ = hsm.end_authorisation();
            let block = r?;
            output::result(
                || println!("{block}"),
                || {
                    let kcv = hsm.key_info(&key).map(|i| i.kcv.to_string()).ok();
                    json!({"label": label, "kek": kek_label, "block": block, "kcv": kcv})
                },
            );
            Ok(())
        }
        KeyCommand::Delete {
            backend,
            label,
            officer,
        } => {
            let hsm = open_backend(&backend)?;
            let key = crate::store::find_key(&*hsm, &backend.place(), "--label", &label, |_| true)?;
            authorise(&*hsm, &officer, Activity::DeleteKey)?;
            let r = hsm.delete_key(&key);
            let _ = hsm.end_authorisation();
            r?;
            println!("deleted {label}");
            Ok(())
        }
        KeyCommand::List { backend } => {
            let hsm = open_backend(&backend)?;
            let keys = hsm.list_keys()?;
            let rsa_keys = hsm.list_rsa_keys()?;
            if output::json() {
                output::print_json(&json!({
                    "dir": backend.dir.as_ref().map(|d| d.display().to_string()),
                    "token": backend.token,
                    "test": hsm.capabilities().is_test(),
                    "keys": keys.iter().map(output::key_json).collect::<Vec<_>>(),
                    "rsa_keys": rsa_keys.iter().map(crate::rsa_cmd::rsa_json).collect::<Vec<_>>(),
                }));
                return Ok(());
            }
            for k in keys {
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
            crate::rsa_cmd::list_lines(&rsa_keys);
            Ok(())
        }
        KeyCommand::Public { backend, label } => crate::rsa_cmd::public(&backend, &label),
    }
}

/// Runs `pmp audit ...`.
pub fn run_audit(args: AuditArgs) -> CliResult {
    match args.command {
        AuditCommand::Verify { dir } => {
            crate::store::check_is_store(&dir)?;
            if crate::store::looks_test(&dir) {
                crate::store::note_test(&dir);
            }
            let v = pmp_core::hsm::verify_audit_log(&dir, LmkSource::Auto)?;
            output::result(
                || println!("audit log intact: {} entries", v.entries),
                || json!({"dir": dir.display().to_string(), "intact": true, "entries": v.entries}),
            );
            Ok(())
        }
    }
}
