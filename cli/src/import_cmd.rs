//! `pmp import` (issuer file → XOF) and `pmp demo` (the bureau's main job end to end on
//! the built-in software HSM with a TEST LMK, or on a PKCS#11 token).
//!
//! Both print a summary on stdout (first line: `read=N written=N rejected=N`), and a
//! progress bar on stderr when stderr is a terminal. Nothing secret is printed: key labels
//! and KCVs, counts, reasons and paths only.

use std::path::PathBuf;

use clap::Args;
use pmp_core::import::{self, Options, Progress, Summary};
use pmp_core::order::product::Product;

use serde_json::json;

use crate::output::{self, Reporter};
use crate::{CliError, CliResult, hsm_cmd};

/// `pmp import`
#[derive(Args)]
pub struct ImportArgs {
    /// The key store or token (TK_issuer, PIN keys, DKeps and the XOF MAC key).
    #[command(flatten)]
    backend: hsm_cmd::BackendArgs,
    /// The product (order profile) file, `pmp-product-1` XML (docs/product.md).
    #[arg(long)]
    product: PathBuf,
    /// The issuer's card file (encrypted as the product says).
    #[arg(long = "in")]
    input: PathBuf,
    /// The XOF order file to write.
    #[arg(long, required_unless_present = "dry_run")]
    out: Option<PathBuf>,
    /// The reject report (default: ORDER.rejects.txt beside the XOF).
    #[arg(long, conflicts_with = "dry_run")]
    rejects: Option<PathBuf>,
    /// Read, decrypt, parse, check and reconcile the whole file and print the summary and
    /// the rejects by reason, writing no XOF and no reject report: the way to try a new
    /// product on a real file.
    #[arg(long)]
    dry_run: bool,
    /// The XOF order id (default: PRODUCT-TIMESTAMP-RANDOM, unique per import).
    #[arg(long)]
    order_id: Option<String>,
    /// Worker threads; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Replace the XOF and the reject report when they exist (refused otherwise).
    #[arg(long)]
    force: bool,
}

/// `pmp demo`
#[derive(Args)]
pub struct DemoArgs {
    /// Number of cards in the generated issuer file.
    #[arg(long, default_value_t = 1000)]
    cards: u64,
    /// Output directory (created; a previous demo directory is replaced; any other
    /// non-empty directory is refused).
    #[arg(long, default_value = "pmp-demo")]
    out: PathBuf,
    /// Run the demo on this PKCS#11 module's token instead of a fresh software HSM (with
    /// --token; the user PIN from PMP_PKCS11_PIN). The token must not hold the demo's key
    /// labels yet; key-block import and export through host memory is allowed for the
    /// demo's own keys where the token has no mechanism for them.
    #[arg(long, value_name = "PATH", requires = "token")]
    pkcs11_module: Option<PathBuf>,
    /// The label of the token in the PKCS#11 module.
    #[arg(long, value_name = "LABEL", requires = "pkcs11_module")]
    token: Option<String>,
}

/// The import summary as JSON (docs/cli-json.md, `import`).
fn import_json(s: &Summary) -> serde_json::Value {
    json!({
        "order_id": s.order_id,
        "read": s.read,
        "written": s.written,
        "rejected": s.rejected,
        "declared": s.declared,
        "elapsed_seconds": s.elapsed.as_secs_f64(),
        "records_per_second": s.records_per_second(),
        "workers": s.workers,
        "rejects_by_reason": s
            .reasons
            .iter()
            .map(|(r, n)| (r.code().to_string(), json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "records_per_attribute": s
            .attributes
            .iter()
            .map(|(a, n)| (a.clone(), json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "warnings": s.warnings,
        "dry_run": s.dry_run,
    })
}

fn print_import(s: &Summary) {
    println!(
        "read={} written={} rejected={}{}",
        s.read,
        s.written,
        s.rejected,
        if s.dry_run { " (dry run)" } else { "" }
    );
    println!("  order:        {}", s.order_id);
    if let Some(d) = s.declared {
        println!("  declared:     {d} (reconciled)");
    }
    println!(
        "  time:         {:.3} s, {:.0} records/s on {} worker(s)",
        s.elapsed.as_secs_f64(),
        s.records_per_second(),
        s.workers
    );
    if !s.host_fallbacks.is_empty() {
        // The backend could not keep these clear values in the device (its capabilities say
        // so): the operator sees it on every run.
        let list: Vec<String> = s.host_fallbacks.iter().map(|c| c.to_string()).collect();
        println!("  on the host:  {}", list.join("; "));
    }
    if !s.reasons.is_empty() {
        println!("  rejects by reason:");
        for (r, n) in &s.reasons {
            println!("    {:<18} {n}", r.code());
        }
    }
    if !s.attributes.is_empty() {
        println!(
            "  records carrying each attribute (of {} written):",
            s.written
        );
        for (a, n) in &s.attributes {
            println!("    {a:<18} {n}");
        }
    }
    for w in &s.warnings {
        println!("  warning: {w}");
    }
}

/// Refuses outputs of `pmp import` that would replace the product file or land inside the
/// key store (a key file, the audit log): the store would be broken and a key lost.
fn check_import_outputs(
    args: &ImportArgs,
    out: &std::path::Path,
    rejects: &std::path::Path,
) -> CliResult {
    let mut protected: Vec<&std::path::Path> = vec![&args.product];
    if let Some(dir) = args.backend.dir() {
        protected.push(dir);
    }
    import::check_output_paths(out, rejects, &protected)?;
    Ok(())
}

/// Runs `pmp import`.
pub fn run_import(args: ImportArgs) -> CliResult {
    let Some(out) = args.out.clone().filter(|_| !args.dry_run) else {
        return run_dry_run(args);
    };
    let rejects = args
        .rejects
        .clone()
        .unwrap_or_else(|| import::default_rejects_path(&out));
    // Key-store files and the product are never outputs, not even with --force.
    check_import_outputs(&args, &out, &rejects)?;
    if !args.force {
        for (flag, path) in [("--out", &out), ("--rejects", &rejects)] {
            if path.exists() {
                return Err(CliError::rejected(format!(
                    "{flag} {}: the file exists; give --force to replace it, or choose another name",
                    path.display()
                )));
            }
        }
    }
    let hsm = hsm_cmd::open_backend(&args.backend)?;
    let product = Product::load(&args.product)?;
    let total = std::fs::metadata(&args.input).ok().map(|m| m.len());
    let reporter = Reporter::new("import", total);
    let progress = |p: Progress| reporter.update(p.bytes, p.records);
    let opts = Options {
        order_id: args.order_id,
        workers: args.workers,
        progress: Some(&progress),
        ..Options::default()
    };
    let r = import::import_file(&*hsm, &product, &args.input, &out, Some(&rejects), &opts);
    reporter.finish();
    let s = r?;
    output::result(
        || {
            print_import(&s);
            println!("  XOF:          {}", out.display());
            println!("  rejects:      {}", rejects.display());
        },
        || {
            let mut v = import_json(&s);
            v["xof"] = json!(out.display().to_string());
            v["rejects"] = json!(rejects.display().to_string());
            v["test"] = json!(hsm.capabilities().is_test());
            v
        },
    );
    Ok(())
}

/// Runs `pmp import --dry-run`: the whole import, nothing written.
fn run_dry_run(args: ImportArgs) -> CliResult {
    let hsm = hsm_cmd::open_backend(&args.backend)?;
    let product = Product::load(&args.product)?;
    let total = std::fs::metadata(&args.input).ok().map(|m| m.len());
    let reporter = Reporter::new("import", total);
    let progress = |p: Progress| reporter.update(p.bytes, p.records);
    let opts = Options {
        order_id: args.order_id,
        workers: args.workers,
        progress: Some(&progress),
        ..Options::default()
    };
    let r = import::dry_run(&*hsm, &product, &args.input, &opts);
    reporter.finish();
    let s = r?;
    output::result(
        || {
            print_import(&s);
            println!("  nothing written (dry run)");
        },
        || {
            let mut v = import_json(&s);
            v["test"] = json!(hsm.capabilities().is_test());
            v
        },
    );
    Ok(())
}

/// Runs `pmp demo`.
pub fn run_demo(args: DemoArgs) -> CliResult {
    // The demo's keys are its own: on a token, their key-block exchange may pass through
    // host memory where the token has no mechanism for it (the issuer's keys arrive as key
    // blocks, the transport keys leave as key blocks).
    let token = match (&args.pkcs11_module, &args.token) {
        (Some(module), Some(label)) => Some((
            hsm_cmd::open_pkcs11(module, label, Some(true))?,
            label.clone(),
        )),
        _ => None,
    };
    let backend = match &token {
        Some((hsm, label)) => {
            if !output::json() {
                println!(
                    "pmp demo: {} cards, PKCS#11 token '{label}' ({} keys), output in {}",
                    args.cards,
                    if hsm.capabilities().is_test() {
                        "TEST"
                    } else {
                        "device"
                    },
                    args.out.display()
                );
            }
            pmp_demo::Backend::Open(&**hsm)
        }
        None => {
            if !output::json() {
                println!(
                    "pmp demo: {} cards, software HSM with a TEST LMK, output in {}",
                    args.cards,
                    args.out.display()
                );
            }
            pmp_demo::Backend::SoftHsm
        }
    };
    let reporter = Reporter::new("demo import", None);
    let progress = |p: Progress| reporter.update(p.bytes, p.records);
    let opts = Options {
        progress: Some(&progress),
        ..Options::default()
    };
    let r = pmp_demo::run(&args.out, args.cards, backend, &opts);
    reporter.finish();
    let d = r?;
    if output::json() {
        let t = &d.transport;
        output::print_json(&json!({
            "dir": d.dir.display().to_string(),
            "test": true,
            "keys": d.keys.iter().map(output::key_json).collect::<Vec<_>>(),
            "import": import_json(&d.import),
            "xof_verified": d.xof_verified,
            "round_trip": d.round_trip,
            "transport_keys": {
                "ktk": output::key_json(&t.ktk.info),
                "ptk": output::key_json(&t.ptk.info),
                "mtk": output::key_json(&t.mtk.info),
                "dtk": output::key_json(&t.dtk.info),
            },
            "prep": d.production.as_ref().map(|p| crate::prep_cmd::prep_json(&p.prep)),
            "production_verified": d.production.as_ref().map(|p| p.verified),
            "files": d.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!();
    println!("Keys (label, algorithm, usage, mode, KCV):");
    for k in &d.keys {
        println!(
            "  {:<20} {:<4} {:>3} bits  {}  {:?}  {}",
            k.spec.label,
            k.spec.algorithm.to_string(),
            k.spec.len * 8,
            k.spec.usage,
            k.spec.mode_of_use,
            k.kcv
        );
    }
    println!();
    println!(
        "Import (issuer file TDES-CBC under TK_issuer -> XOF, attributes under AES-256 DKeps):"
    );
    print_import(&d.import);
    println!();
    println!(
        "XOF verified: {} records (MAC chain and trailer), {} records decrypted and compared with the issuer's data",
        d.xof_verified, d.round_trip
    );
    println!();
    println!("Transport keys issued for production (TR-31 version D under ZMK-PROD):");
    for (n, k) in [
        ("KTK", &d.transport.ktk),
        ("PTK", &d.transport.ptk),
        ("MTK", &d.transport.mtk),
        ("DTK", &d.transport.dtk),
    ] {
        println!("  {n} {:<12} KCV {}", k.info.spec.label, k.info.kcv);
    }
    println!();
    match &d.production {
        Some(p) => {
            println!(
                "Data preparation (XOF -> production file: ICC keys under the KTK, PIN under the PTK, cardholder data under the DTK, MACs under the MTK):"
            );
            crate::prep_cmd::print_prep(&p.prep);
            println!();
            println!(
                "Production key store (transport keys imported under its ZMK-PROD): {} cards verified (KCVs, MAC chain, count)",
                p.verified
            );
        }
        None => println!(
            "Data preparation left out: the {} backend offers no EMV key derivation or card PIN blocks",
            d.backend
        ),
    }
    println!();
    println!("Files:");
    for f in &d.files {
        println!("  {}", f.display());
    }
    println!();
    // Hints that work as printed: `pmp` when that is this binary on the PATH, else the
    // path of the running binary.
    let (pmp, installed) = pmp_command();
    let xof = quoted(&d.dir.join("order.xof").display().to_string());
    let keys = match (&args.pkcs11_module, &args.token) {
        (Some(module), Some(label)) => format!(
            "--pkcs11-module {} --token {}",
            quoted(&module.display().to_string()),
            quoted(label)
        ),
        _ => format!(
            "--dir {}",
            quoted(&d.dir.join("keystore").display().to_string())
        ),
    };
    let pin = if token.is_some() {
        "PMP_PKCS11_PIN=... "
    } else {
        ""
    };
    println!("Check it yourself:");
    println!("  {pin}{pmp} xof verify {keys} {xof}");
    println!("  {pmp} xof inspect {xof}");
    println!("  {pin}{pmp} key list {keys}");
    if d.production.is_some() {
        let line = d.dir.join("production-line").join("keystore");
        println!(
            "  {pmp} production verify --dir {} --in {}",
            quoted(&line.display().to_string()),
            quoted(&d.dir.join("production.xml").display().to_string())
        );
    }
    if !installed {
        println!("(to call it `pmp`: cargo install --path cli, from the source checkout)");
    }
    Ok(())
}

/// How to call this binary from a shell: `pmp` when the `pmp` found on the PATH is this
/// very file, else its full path; and whether it was `pmp`.
fn pmp_command() -> (String, bool) {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return ("pmp".to_string(), true);
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| std::fs::canonicalize(dir.join("pmp")).is_ok_and(|p| p == me))
    });
    if on_path {
        ("pmp".to_string(), true)
    } else {
        (quoted(&me.display().to_string()), false)
    }
}

/// A path as a POSIX shell word (single-quoted when it holds anything but safe characters).
fn quoted(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
