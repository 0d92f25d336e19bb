//! `pmp xof verify` and `pmp xof inspect`: XOF order files (`docs/xof.md`) from the shell.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use pmp_core::xof;

use pmp_core::Algorithm;
use pmp_core::keyblock::{Exportability, KeyUsage};

use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pmp_core::xof::ReadOptions;
use serde_json::json;

use crate::output::{self, Counting, Reporter};
use crate::{CliError, CliResult, hsm_cmd};

/// `pmp xof ...`
#[derive(Args)]
pub struct XofArgs {
    #[command(subcommand)]
    command: XofCommand,
}

#[derive(Subcommand)]
enum XofCommand {
    /// Verify an XOF file: header MAC and MAC key KCV, every record MAC and the chain, the
    /// trailer. Prints the record count (exit 0), or the first problem (exit 1).
    Verify {
        /// The key store (or token) holding the file's MAC key.
        #[command(flatten)]
        backend: hsm_cmd::BackendArgs,
        /// The label of the key that must MAC the file: a file naming another MAC key is
        /// refused. Without it, the store's one XOF MAC key (AES, M6, not exportable,
        /// generated in the HSM) is expected; a store with none or several is refused.
        #[arg(long, value_name = "LABEL")]
        mac_key: Option<String>,
        /// Accept an order marked TEST (made under a TEST LMK) on a production key store
        /// (refused by default).
        #[arg(long)]
        allow_test: bool,
        /// The XOF file.
        file: PathBuf,
    },
    /// Show an XOF file's header, key list and counts. Checks structure and limits only:
    /// verifies no MAC and decrypts nothing.
    Inspect {
        /// The XOF file.
        file: PathBuf,
    },
}

/// Runs `pmp xof ...`.
pub fn run(args: XofArgs) -> CliResult {
    match args.command {
        XofCommand::Verify {
            backend,
            mac_key,
            allow_test,
            file,
        } => {
            check_is_xof(&file)?;
            let hsm = hsm_cmd::open_backend(&backend)?;
            // The expected MAC key comes from the store, never from the file alone.
            let mac_key = match mac_key {
                Some(label) => {
                    crate::store::find_key(&*hsm, &backend.place(), "--mac-key", &label, |k| {
                        k.spec.usage == KeyUsage::M6
                            && k.spec.algorithm == Algorithm::Aes
                            && k.spec.exportability == Exportability::N
                    })?;
                    label
                }
                None => xof::store_mac_key(&*hsm)?,
            };
            let f = std::fs::File::open(&file)
                .map_err(|e| CliError::rejected(format!("{}: {e}", file.display())))?;
            let total = f.metadata().ok().map(|m| m.len());
            let read = Arc::new(AtomicU64::new(0));
            let input = BufReader::with_capacity(64 * 1024, Counting::new(f, read.clone()));
            let progress = Reporter::new("xof verify", total);
            let opts = ReadOptions {
                mac_key: Some(&mac_key),
                allow_test,
            };
            let verified = (|| {
                let mut r =
                    xof::Reader::open_with(input, &*hsm, &file.display().to_string(), &opts)?;
                let mut n = 0u64;
                while r.next_record()?.is_some() {
                    n += 1;
                    if n.is_multiple_of(1024) {
                        progress.update(read.load(Ordering::Relaxed), n);
                    }
                }
                progress.update(read.load(Ordering::Relaxed), n);
                Ok::<_, pmp_core::Error>((n, r.header().clone()))
            })();
            progress.finish();
            let (n, header) = verified?;
            if header.test {
                eprintln!(
                    "pmp: note: {} is a TEST order (test=\"true\": made under a TEST LMK), for development and tests only",
                    file.display()
                );
            }
            output::result(
                || println!("{n}"),
                || {
                    json!({
                        "file": file.display().to_string(),
                        "verified": true,
                        "records": n,
                        "order_id": header.order_id,
                        "issuer": header.issuer,
                        "product": header.product,
                        "mac_key": header.mac_key,
                        "test": header.test,
                    })
                },
            );
            Ok(())
        }
        XofCommand::Inspect { file } => {
            check_is_xof(&file)?;
            let i = xof::inspect_file(&file)?;
            let h = &i.header;
            if i.records != i.trailer_records {
                eprintln!(
                    "pmp: warning: the trailer declares {} records, {} read",
                    i.trailer_records, i.records
                );
            }
            if h.test {
                eprintln!(
                    "pmp: note: {} is a TEST order (test=\"true\": made under a TEST LMK)",
                    file.display()
                );
            }
            if output::json() {
                output::print_json(&json!({
                    "file": file.display().to_string(),
                    "version": i.version,
                    "order_id": h.order_id,
                    "issuer": h.issuer,
                    "product": h.product,
                    "created": h.created,
                    "mac_key": h.mac_key,
                    "test": h.test,
                    "keys": h.keys.iter().map(|k| json!({
                        "label": k.label,
                        "usage": k.usage.as_str(),
                        "algorithm": k.algorithm.to_string(),
                        "kcv": k.kcv.to_string(),
                    })).collect::<Vec<_>>(),
                    "records": i.records,
                    "trailer_records": i.trailer_records,
                    "attributes": i.attributes,
                    "attributes_by_name": i.attributes_by_name,
                    "attributes_by_key": i.attributes_by_key,
                    "macs_verified": false,
                }));
                return Ok(());
            }
            println!("version: {}", i.version);
            println!("order-id: {}", h.order_id);
            println!("issuer: {}", h.issuer);
            println!("product: {}", h.product);
            println!("created: {}", h.created);
            println!("mac-key: {}", h.mac_key);
            if h.test {
                println!("test: true");
            }
            for k in &h.keys {
                println!(
                    "key: {} usage={} algorithm={} kcv={}",
                    k.label, k.usage, k.algorithm, k.kcv
                );
            }
            println!("records: {}", i.records);
            println!("trailer-records: {}", i.trailer_records);
            println!("attributes: {}", i.attributes);
            for (name, n) in &i.attributes_by_name {
                println!("attribute: {name} {n}");
            }
            for (key, n) in &i.attributes_by_key {
                println!("attributes-under-key: {key} {n}");
            }
            println!("macs: not verified (use pmp xof verify)");
            Ok(())
        }
    }
}

/// Refuses, before any parsing, a file whose root element is not `xof` (a product file, an
/// issuer file, a file that is not XML): "this is not an XOF file" says more than the
/// strict reader's first complaint about it.
fn check_is_xof(file: &Path) -> Result<(), CliError> {
    let mut head = Vec::with_capacity(8192);
    let f = std::fs::File::open(file)
        .map_err(|e| CliError::rejected(format!("{}: {e}", file.display())))?;
    f.take(8192)
        .read_to_end(&mut head)
        .map_err(|e| CliError::rejected(format!("{}: {e}", file.display())))?;
    match root_element(&head) {
        Some(root) if root == "xof" => Ok(()),
        found => Err(CliError::rejected(format!(
            "{}: this is not an XOF file ({}); an XOF order file starts with <xof version=\"1\"> (made by `pmp import`)",
            file.display(),
            match found {
                Some(root) => format!("its root element is <{root}>"),
                None => "it does not start as an XML document".to_string(),
            }
        ))),
    }
}

/// The name of the first element of an XML document, skipping a byte order mark, the
/// declaration, comments, processing instructions, a DOCTYPE and whitespace.
fn root_element(b: &[u8]) -> Option<String> {
    let mut s = std::str::from_utf8(b)
        .unwrap_or_else(|e| std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""));
    s = s.strip_prefix('\u{feff}').unwrap_or(s);
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix("<?") {
            s = &r[r.find("?>")? + 2..];
        } else if let Some(r) = s.strip_prefix("<!--") {
            s = &r[r.find("-->")? + 3..];
        } else if let Some(r) = s.strip_prefix("<!") {
            s = &r[r.find('>')? + 1..];
        } else if let Some(r) = s.strip_prefix('<') {
            let end = r
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(r.len());
            return (end > 0).then(|| r[..end].to_string());
        } else {
            return None;
        }
    }
}
