//! The import pipeline: an issuer's card file (encrypted under TK_issuer) in, an XOF order
//! out with every attribute under its DKep, and a reject report — nothing lost.
//!
//! Steps, for a [`Product`]:
//! 1. **Plan.** What the product needs is checked against the backend's
//!    [`capabilities`](Hsm::capabilities) and refused up front, by name, when the backend
//!    lacks it: the key algorithms, the XOF's MAC (AES-CMAC), the PIN block formats of a PIN
//!    translation, the KCV method of a KCV the product gives, and translation inside the
//!    device for individually encrypted fields (a backend without
//!    [`Capability::TranslateInDevice`](crate::hsm::Capability::TranslateInDevice) is
//!    refused, not served by decrypting on the host). Then every key the product names is
//!    looked up and its KCV checked against the product (a wrong TK_issuer stops the import
//!    before anything is read). Nothing is read or written before the plan stands.
//! 2. **Read.** The file is streamed: whole-file decryption by the HSM
//!    through [`Hsm::decrypting_reader`] (SoftHsm: with its cached key schedule; the
//!    trait's default: chunks through [`Hsm::decrypt`]) into wiped buffers, then the
//!    layout's parser ([`issuer`](crate::order::issuer)), a batch of records at a time. The clear
//!    file is parsed by host code in this process: a whole-file-encrypted file is in clear
//!    in the importing process's memory (in wiped buffers), not only inside the HSM. Only
//!    per-field-encrypted fields are translated TK_issuer → DKep without ever leaving the
//!    HSM in clear (those that need a check, or are the PAN of a PIN block, are also
//!    decrypted once on the host for it).
//! 3. **Translate.** Each record of the batch becomes an XOF
//!    record or a reject: checks ([`validate`](crate::order::validate)), per-field ciphertext
//!    translated TK_issuer → DKep with [`Hsm::translate_batch`] (one call for the fields
//!    of a whole batch of records, split to the backend's
//!    [`max_batch_items`](crate::hsm::Capabilities::max_batch_items)),
//!    clear fields encrypted under their DKep with [`Hsm::encrypt`] (CBC, a fresh random IV
//!    per attribute, ISO 9797-1 padding method 2 so the length is recoverable), PIN blocks
//!    translated from the issuer PIN key to the bureau PIN key with [`Hsm::translate_pin`].
//!    Clear values live only in zeroizing buffers. The random IVs of a batch come from one
//!    call to the OS. The worker also formats each record's XOF XML and its canonical MAC
//!    input and makes the checks [`xof::Writer`](crate::xof::Writer) makes, so that the
//!    serial part of the import stays small.
//! 4. **Write.** The batches are written in file order: records to the XOF (only each
//!    record's seq and its MAC, chained to the previous record's, as
//!    [`xof::Writer`](crate::xof::Writer) does, are added here), rejects to the report.
//!
//! Threads: [`Options::workers`] threads (all cores by default: the calling thread and
//! `pmp-import-w1`, ...), each running all four steps on one batch at a time. A worker
//! takes the input lock, reads (and decrypts) the next batch and notes its number,
//! releases it; transforms the batch; waits for the batch's turn (batches are written
//! strictly in file order), writes it under the output lock; then reads the next. Reading
//! and writing are serial (whichever worker holds the lock runs them) and cost a few
//! microseconds per record; the rest runs in parallel (see `docs/benchmarks.md` for the
//! split measured). `workers: 1` is one thread doing everything. At most `workers` batches
//! are in memory: a worker that has transformed its batch waits for its turn rather than
//! read more. The first failure stops every worker; a panic in one becomes an error.
//!
//! **Nothing lost.** Every data record of the file is counted once as read and ends as
//! exactly one XOF record or one reject line (`record=N id=ID field=NAME reason=CODE`,
//! never a value); the totals must reconcile (`read = written + rejected`) and, when the
//! layout declares a count, equal it. Anything that makes the file untrustworthy — a KCV
//! mismatch, a bad final padding (wrong key or altered file), a truncated file, a count
//! that does not reconcile, malformed structure — stops the import with an error, and
//! [`import_file`] then leaves no output: both files are written to temporary files in the
//! target directory and renamed only when everything succeeded.
//!
//! [`dry_run`] does all of it — every record read, checked, translated and counted, the
//! totals reconciled — into [`std::io::sink`]: the way to try a new product on a real file.
//! The [`Summary`] lists per attribute how many written records carry it, and warns of
//! optional fields that are in no record of the file (`absent-fields="warn"`; by default
//! such a field stops the file).
//!
//! Not detected here: an issuer record id that occurs twice (it would need memory that
//! grows with the file); such records are imported as they are. The XOF's record MAC chain
//! detects a record duplicated after import.
//!
//! Limits: a record has as many attributes as the product's fields produce; the product
//! parser refuses more than XOF v1 allows ([`xof::limits::MAX_ATTRIBUTES`](crate::xof::limits::MAX_ATTRIBUTES)).
//!
//! Inside (private modules): `plan` (capabilities, key lookup), `transform` (one record),
//! `pipeline` (the threads), `output` (temporary files and renames), `clock` (UTC time
//! stamps).
//!
//! ```no_run
//! use pmp_core::{hsm::{LmkSource, SoftHsm}, import, order::product::Product};
//! # fn main() -> pmp_core::Result<()> {
//! let hsm = SoftHsm::open("keystore".as_ref(), LmkSource::Auto)?;
//! let product = Product::load("product.xml".as_ref())?;
//! let s = import::import_file(&hsm, &product, "cards.enc".as_ref(), "order.xof".as_ref(),
//!                             None, &import::Options::default())?;
//! println!("{} read, {} written, {} rejected", s.read, s.written, s.rejected);
//! # Ok(()) }
//! ```

pub(crate) mod clock;
pub(crate) mod output;
pub use output::{check_output_paths, recover_outputs};
mod pipeline;
mod plan;
mod transform;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::hsm::{Hsm, KeyInfo};
use crate::order::product::Product;
use crate::order::validate::Reason;
use crate::{Error, Result};

/// Progress as reported to [`Options::progress`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input file read so far.
    pub bytes: u64,
    /// Records processed (written or rejected) so far.
    pub records: u64,
}

/// Import options.
pub struct Options<'a> {
    /// The XOF order id; default `<product>-<UTC timestamp>-<6 random hex digits>` (unique
    /// even for two imports within one second).
    pub order_id: Option<String>,
    /// Threads, each running the whole loop on a batch at a time (read and decrypt under
    /// the input lock, translate, write in file order under the output lock); 0 = the
    /// number of cores. The calling thread is one of them: `workers: 1` is the calling
    /// thread alone, there is no separate reader or writer thread.
    pub workers: usize,
    /// Records per batch handed to a worker. The encrypted fields of a batch's records go
    /// to the HSM together, in `translate_batch` calls of at most the backend's
    /// `max_batch_items`.
    pub batch: usize,
    /// Called after each batch is written, in file order, on the worker thread that wrote
    /// it (under the output lock: keep it short).
    pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            order_id: None,
            workers: 0,
            batch: 256,
            progress: None,
        }
    }
}

impl core::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Options")
            .field("order_id", &self.order_id)
            .field("workers", &self.workers)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// One rejected record, as written to the report. Never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The record's number in the file (1-based, data records only).
    pub number: u64,
    /// The issuer's record id, when it could be read.
    pub id: Option<String>,
    /// The field at fault (`-` for the record as a whole).
    pub field: String,
    /// Why.
    pub reason: Reason,
}

impl Reject {
    /// The report line: `record=N id=ID field=NAME reason=CODE`.
    pub fn line(&self) -> String {
        format!(
            "record={} id={} field={} reason={}",
            self.number,
            self.id.as_deref().unwrap_or("-"),
            self.field,
            self.reason
        )
    }
}

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The XOF order id.
    pub order_id: String,
    /// Data records read from the issuer file.
    pub read: u64,
    /// Records written to the XOF.
    pub written: u64,
    /// Records rejected.
    pub rejected: u64,
    /// The issuer's declared count, if the layout has one (it equals `read`).
    pub declared: Option<u64>,
    /// Rejects per reason.
    pub reasons: BTreeMap<Reason, u64>,
    /// Input bytes read.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Worker threads used.
    pub workers: usize,
    /// The keys the XOF refers to (DKeps, bureau PIN key, MAC key).
    pub keys: Vec<KeyInfo>,
    /// The TK_issuer, when the product names one.
    pub transport_key: Option<KeyInfo>,
    /// Per XOF attribute the product produces, in field order: how many records written
    /// carry it (an optional field's attribute is absent from records without the field).
    pub attributes: Vec<(String, u64)>,
    /// Warnings for the operator: optional fields that are in no record of the file (with
    /// `absent-fields="warn"`; otherwise such a file fails).
    pub warnings: Vec<String>,
    /// A dry run ([`dry_run`]): nothing was written.
    pub dry_run: bool,
    /// The host fallbacks the import ran on, because the backend offers no way to keep the
    /// clear values in the device: [`Capability::HostTranslateFallback`] (fields translated
    /// from TK_issuer to their DKep through host memory) and [`Capability::HostPinFallback`]
    /// (PIN blocks translated through host memory). Empty when everything stayed in the
    /// device.
    ///
    /// [`Capability::HostTranslateFallback`]: crate::hsm::Capability::HostTranslateFallback
    /// [`Capability::HostPinFallback`]: crate::hsm::Capability::HostPinFallback
    pub host_fallbacks: Vec<crate::hsm::Capability>,
}

impl Summary {
    /// Records per second.
    pub fn records_per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.read as f64 / s } else { 0.0 }
    }
}

/// Where [`import_file`] writes the reject report when it is given none:
/// `<out stem>.rejects.txt` beside `out`.
pub fn default_rejects_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "order".into());
    out.with_file_name(format!("{stem}.rejects.txt"))
}

/// Imports the issuer file `input` into the XOF `out` and the reject report `rejects`
/// (default: [`default_rejects_path`]). The plan (capabilities, keys) is checked before
/// anything is opened for writing. Both outputs are written to temporary files in their
/// directories and renamed at the end only on success; on any error neither exists
/// afterwards (an existing file of the same name is left as it was; if the XOF's rename
/// fails after the report's, the report's is taken back). Outputs are compared by canonical
/// parent directory and file name: the XOF and the report must be different files, and
/// neither may be the input. A failure to read the input is [`Error::Io`] naming `input`.
pub fn import_file(
    hsm: &dyn Hsm,
    product: &Product,
    input: &Path,
    out: &Path,
    rejects: Option<&Path>,
    opts: &Options<'_>,
) -> Result<Summary> {
    let rejects = rejects.map_or_else(|| default_rejects_path(out), Path::to_path_buf);
    let plan = plan::Plan::new(hsm, product)?;
    let f = fs::File::open(input).map_err(|e| Error::io(input, e))?;
    let outputs = output::Outputs::create(input, out, &rejects)?;
    let (xof_w, rej_w) = outputs.writers()?;
    let (summary, xof_w, rej_w) =
        pipeline::run(&plan, product, f, xof_w, rej_w, opts).map_err(|e| e.into_error(input))?;
    outputs.commit(xof_w, rej_w)?;
    Ok(summary)
}

/// A dry run of [`import_file`]: reads, decrypts, parses, checks, translates and reconciles
/// the whole file exactly as an import does — every record written or rejected, the counts
/// reconciled, every failure an error — but writes no XOF and no reject report (both go to
/// [`std::io::sink`]). The way to try a new product on a real file.
pub fn dry_run(
    hsm: &dyn Hsm,
    product: &Product,
    input: &Path,
    opts: &Options<'_>,
) -> Result<Summary> {
    let plan = plan::Plan::new(hsm, product)?;
    let f = fs::File::open(input).map_err(|e| Error::io(input, e))?;
    let (mut summary, _, _) =
        pipeline::run(&plan, product, f, std::io::sink(), std::io::sink(), opts)
            .map_err(|e| e.into_error(input))?;
    summary.dry_run = true;
    Ok(summary)
}

/// The streaming import: reads the issuer file from `input`, writes the XOF to `xof_out`
/// and the reject report to `rejects_out`, and returns the summary with both writers. The
/// plan is checked first: a refusal reads nothing from `input` and writes nothing. On a
/// later error the writers hold partial output: [`import_file`] discards it. A failure to
/// read `input` is [`Error::Io`] (path `reading the issuer file`). The writers are `Send`:
/// each worker thread writes its own batches, in file order.
pub fn import<R, W, J>(
    hsm: &dyn Hsm,
    product: &Product,
    input: R,
    xof_out: W,
    rejects_out: J,
    opts: &Options<'_>,
) -> Result<(Summary, W, J)>
where
    R: Read + Send,
    W: Write + Send,
    J: Write + Send,
{
    let plan = plan::Plan::new(hsm, product)?;
    pipeline::run(&plan, product, input, xof_out, rejects_out, opts)
        .map_err(|e| e.into_error("reading the issuer file"))
}

/// Why an import stopped. Typed, so that a failure to read the input can be reported
/// against the input's name, which only the caller of the pipeline knows.
#[derive(Debug)]
enum Failure {
    /// Reading the issuer's input failed (the input's own I/O error, however the
    /// decrypting reader or the parser reported it).
    Input(std::io::Error),
    /// Anything else.
    Other(Error),
}

impl Failure {
    /// The error to report, with `input` naming the issuer's input.
    fn into_error(self, input: impl AsRef<Path>) -> Error {
        match self {
            Failure::Input(e) => Error::io(input, e),
            Failure::Other(e) => e,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}
