//! RSA keys from the shell: the RSA side of `pmp key generate`, `key public`, `key list` and
//! `key import`, and `pmp icc-keys` (the pool of ICC key pairs) — all through the `Hsm`
//! trait, so they run on a software-HSM key store (`--dir`) or a PKCS#11 token.
//!
//! An RSA key is named by the SHA-1 of its modulus (40 hex digits) where a symmetric key
//! shows its KCV.

use clap::{Args, Subcommand};
use pmp_core::hsm::Hsm;
use pmp_core::hsm::rsa::{IccPoolLevel, RsaKeyInfo, RsaKeySpec};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::rsa::{RsaExponent, RsaPublicKey};
use serde_json::json;
use sha1::{Digest, Sha1};

use crate::hsm_cmd::{BackendArgs, open_backend};
use crate::output;
use crate::{CliError, CliResult};

/// The SHA-1 of the modulus, 40 uppercase hex digits.
pub fn fingerprint(public: &RsaPublicKey) -> String {
    hex::encode_upper(Sha1::digest(public.modulus()))
}

/// An RSA key's JSON description.
pub fn rsa_json(k: &RsaKeyInfo) -> serde_json::Value {
    json!({
        "label": k.spec.label,
        "usage": k.spec.usage.as_str(),
        "algorithm": "RSA",
        "bits": k.spec.bits,
        "exponent": k.spec.exponent.value(),
        "mode": "S",
        "sha1": fingerprint(&k.public),
    })
}

/// `--exponent 3|65537` (default 65537 is not assumed: the contract names it).
pub fn exponent_arg(e: Option<&str>) -> Result<RsaExponent, CliError> {
    let e = e.ok_or_else(|| CliError::usage("--algorithm rsa needs --exponent 3 or 65537"))?;
    e.parse::<u64>()
        .ok()
        .and_then(|v| RsaExponent::from_value(v).ok())
        .ok_or_else(|| CliError::rejected(format!("--exponent: {e}; EMV allows 3 or 65537")))
}

/// `--bits` of an RSA key: a multiple of 8 from 1024 to 1984.
pub fn bits_arg(bits: &str) -> Result<u32, CliError> {
    let b = bits
        .parse::<u32>()
        .map_err(|_| CliError::rejected(format!("--bits: {bits} is not a number of bits")))?;
    pmp_core::rsa::check_emv_bits(b).map_err(|e| CliError::rejected(format!("--bits: {e}")))?;
    Ok(b)
}

/// The RSA key's fingerprint on stdout (its JSON description with `--json`).
pub fn print_rsa_key(info: &RsaKeyInfo) {
    output::result(
        || println!("{}", fingerprint(&info.public)),
        || rsa_json(info),
    );
}

/// `pmp key generate --algorithm rsa`: checks the arguments before the backend is opened.
pub fn generate(
    backend: &BackendArgs,
    label: &str,
    usage: KeyUsage,
    bits: &str,
    exponent: Option<&str>,
    mode: Option<&str>,
    exportable: bool,
) -> CliResult {
    let bits = bits_arg(bits)?;
    let exponent = exponent_arg(exponent)?;
    if usage != KeyUsage::S0 {
        return Err(CliError::rejected(format!(
            "--usage {usage}: an RSA key is S0 (digital signature)"
        )));
    }
    if let Some(m) = mode
        && m.parse::<ModeOfUse>().ok() != Some(ModeOfUse::S)
    {
        return Err(CliError::rejected(format!(
            "--mode {m}: an RSA key signs only (mode S)"
        )));
    }
    if exportable {
        return Err(CliError::rejected(
            "--exportable: an RSA private key never leaves the HSM",
        ));
    }
    let hsm = open_backend(backend)?;
    let info = hsm.generate_rsa_key(&RsaKeySpec {
        label: label.to_string(),
        bits,
        exponent,
        usage,
    })?;
    print_rsa_key(&info);
    Ok(())
}

/// The RSA key labelled `label`, or an error naming what is there instead.
pub fn find_rsa(hsm: &dyn Hsm, backend: &BackendArgs, label: &str) -> Result<RsaKeyInfo, CliError> {
    let keys = hsm.list_rsa_keys()?;
    if let Some(k) = keys.iter().find(|k| k.spec.label == label) {
        return Ok(k.clone());
    }
    let hint = if keys.is_empty() {
        "it has no RSA key".to_string()
    } else {
        format!(
            "RSA keys: {}",
            keys.iter()
                .map(|k| k.spec.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(CliError::rejected(format!(
        "--label {label}: no RSA key with this label in {}; {hint}",
        backend.place()
    )))
}

/// `pmp key public`: `modulus=HEX` and `exponent=HEX` (uppercase; the exponent as EMV
/// writes it, `03` or `010001`).
pub fn public(backend: &BackendArgs, label: &str) -> CliResult {
    let hsm = open_backend(backend)?;
    let k = find_rsa(&*hsm, backend, label)?;
    let modulus = hex::encode_upper(k.public.modulus());
    let exponent = hex::encode_upper(k.public.exponent().bytes());
    output::result(
        || {
            println!("modulus={modulus}");
            println!("exponent={exponent}");
        },
        || {
            json!({
                "label": label,
                "bits": k.spec.bits,
                "modulus": modulus,
                "exponent": exponent,
                "sha1": fingerprint(&k.public),
            })
        },
    );
    Ok(())
}

/// `pmp key import` of an RSA key block (algorithm R): usage S0 only; no KCV (an RSA key
/// has none) and no officers (an issuer signing key is not a KEK).
pub fn import(
    backend: &BackendArgs,
    label: &str,
    kek_label: &str,
    block: &str,
    usage: Option<&str>,
    kcv: bool,
    officer: &[String],
) -> CliResult {
    if let Some(u) = usage
        && u.split(',').map(str::trim).any(|u| u != "S0")
    {
        return Err(CliError::rejected(format!(
            "--usage {u}: the key block carries an RSA key; S0 is the usage offered"
        )));
    }
    if kcv {
        return Err(CliError::usage(
            "--kcv: an RSA key has no KCV; compare the SHA-1 of the modulus this command prints",
        ));
    }
    if !officer.is_empty() {
        return Err(CliError::usage(
            "--officer: importing an RSA signing key needs no authorisation",
        ));
    }
    let hsm = open_backend(backend)?;
    let kek = crate::store::find_key(&*hsm, &backend.place(), "--kek", kek_label, |k| {
        matches!(k.spec.usage, KeyUsage::K0 | KeyUsage::K1)
    })?;
    let info = match hsm.import_rsa_key_block(label, &kek, block) {
        Err(pmp_core::Error::Crypto) => {
            return Err(CliError::rejected(format!(
                "--block {}...: the key block does not verify under the KEK {kek_label}: it \
                 was changed on the way, or made under another key-encryption key",
                block.get(..16).unwrap_or(block)
            )));
        }
        r => r?,
    };
    print_rsa_key(&info);
    Ok(())
}

/// The RSA lines of `pmp key list`.
pub fn list_lines(keys: &[RsaKeyInfo]) {
    for k in keys {
        println!(
            "{} usage={} algorithm=RSA bits={} exponent={} mode=S sha1={}",
            k.spec.label,
            k.spec.usage,
            k.spec.bits,
            k.spec.exponent,
            fingerprint(&k.public)
        );
    }
}

/// `pmp icc-keys ...`
#[derive(Args)]
pub struct IccKeysArgs {
    #[command(subcommand)]
    command: IccKeysCommand,
}

#[derive(Subcommand)]
enum IccKeysCommand {
    /// Generate ICC RSA key pairs into the pool (kept under the LMK) for `pmp prep`. Prints
    /// the pool's level after.
    Generate {
        #[command(flatten)]
        backend: BackendArgs,
        /// Modulus length in bits: a multiple of 8 from 1024 to 1984.
        #[arg(long)]
        bits: String,
        /// Public exponent: 3 or 65537.
        #[arg(long)]
        exponent: String,
        /// How many pairs to add.
        #[arg(long)]
        count: u64,
    },
    /// The pool's level per modulus length and exponent.
    Status {
        #[command(flatten)]
        backend: BackendArgs,
    },
}

fn level_line(l: &IccPoolLevel) {
    println!(
        "bits={} exponent={} available={}",
        l.bits, l.exponent, l.available
    );
}

fn level_json(l: &IccPoolLevel) -> serde_json::Value {
    json!({"bits": l.bits, "exponent": l.exponent.value(), "available": l.available})
}

/// Pairs added per call to the backend, so progress shows and an interruption keeps what
/// is done.
const STEP: u64 = 64;

/// Runs `pmp icc-keys ...`.
pub fn run_icc_keys(args: IccKeysArgs) -> CliResult {
    match args.command {
        IccKeysCommand::Generate {
            backend,
            bits,
            exponent,
            count,
        } => {
            let bits = bits_arg(&bits)?;
            let exponent = exponent_arg(Some(&exponent))?;
            if count == 0 {
                return Err(CliError::usage("--count: give at least 1"));
            }
            let hsm = open_backend(&backend)?;
            let progress = output::Reporter::new("icc-keys", Some(count));
            let start = std::time::Instant::now();
            let mut done = 0;
            let mut level = None;
            while done < count {
                let n = (count - done).min(STEP);
                level = Some(hsm.fill_icc_key_pool(bits, exponent, n)?);
                done += n;
                progress.update(done, done);
            }
            progress.finish();
            let level = level.expect("count > 0");
            let secs = start.elapsed().as_secs_f64();
            output::result(
                || level_line(&level),
                || {
                    let mut v = level_json(&level);
                    v["added"] = json!(count);
                    v["elapsed_seconds"] = json!(secs);
                    v["keys_per_second"] = json!(count as f64 / secs.max(1e-9));
                    v
                },
            );
            Ok(())
        }
        IccKeysCommand::Status { backend } => {
            let hsm = open_backend(&backend)?;
            let levels = hsm.icc_key_pool()?;
            output::result(
                || {
                    if levels.is_empty() {
                        println!("the ICC key pool is empty");
                    }
                    levels.iter().for_each(level_line);
                },
                || json!({"pool": levels.iter().map(level_json).collect::<Vec<_>>()}),
            );
            Ok(())
        }
    }
}
