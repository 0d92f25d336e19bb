//! The import pipeline: an issuer's card file (encrypted under TK_issuer) in, an XOF order
//! out with every attribute under its DKep, and a reject report — nothing lost.
//!
//! Steps, for a [`Product`]:
//! 1. **Keys.** Every key the product names is looked up in the HSM and its KCV checked
//!    against the product (a wrong TK_issuer stops the import before anything is read).
//! 2. **Read.** One reader thread streams the file: whole-file decryption by the HSM
//!    through [`Hsm::decrypting_reader`] (SoftHsm: with its cached key schedule; the
//!    trait's default: chunks through [`Hsm::decrypt`]) into wiped buffers, then the
//!    layout's parser ([`issuer`]), in batches of records. The clear file is parsed by host
//!    code in this process: a whole-file-encrypted file is in clear in the importing
//!    process's memory (in wiped buffers), not only inside the HSM. Only per-field-encrypted
//!    fields that need no check (and are not the PAN of a PIN block) are translated
//!    TK_issuer → DKep without ever leaving the HSM in clear.
//! 3. **Translate.** Worker threads (all cores by default) turn each record into an XOF
//!    record or a reject: checks ([`validate`](crate::order::validate)), per-field ciphertext
//!    translated TK_issuer → DKep with [`Hsm::translate`], clear fields encrypted under
//!    their DKep with [`Hsm::encrypt`] (AES-CBC, a fresh random IV per attribute, ISO
//!    9797-1 padding method 2 so the length is recoverable), PIN blocks translated from
//!    the issuer PIN key to the bureau PIN key with [`Hsm::translate_pin`]. Clear values
//!    live only in zeroizing buffers.
//! 4. **Write.** The calling thread writes the results in file order: records to the XOF
//!    (through [`xof::Writer`], which MACs them), rejects to the report.
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
//! Not detected here: an issuer record id that occurs twice (it would need memory that
//! grows with the file); the XOF's record MAC chain detects duplication after import.
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

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::{Zeroize, Zeroizing};

use crate::hsm::{CipherSpec, Hsm, KeyHandle, KeyInfo, PinSpec};
use crate::keyblock::KeyUsage;
use crate::order::issuer::{self, RawRecord};
use crate::order::product::{IvSource, Product, Role};
use crate::order::validate::{Check, Reason};
use crate::pinblock::{Pan, PinBlockFormat};
use crate::xof::{self, Attribute, Header, KeyRef, Record};
use crate::{Error, Mode, Padding, Result};

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
    /// The XOF order id; default `<product>-<UTC timestamp>`.
    pub order_id: Option<String>,
    /// Worker threads; 0 = the number of cores.
    pub workers: usize,
    /// Records per batch handed to a worker.
    pub batch: usize,
    /// Called after each batch is written.
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
}

impl Summary {
    /// Records per second.
    pub fn records_per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.read as f64 / s } else { 0.0 }
    }
}

/// Where [`import_file`] wrote its outputs.
pub fn default_rejects_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "order".into());
    out.with_file_name(format!("{stem}.rejects.txt"))
}

/// Imports the issuer file `input` into the XOF `out` and the reject report `rejects`
/// (default: `<out stem>.rejects.txt` beside `out`). Both are written to temporary files in
/// their directories and renamed at the end only on success; on any error neither exists
/// afterwards (an existing file of the same name is left as it was; if the XOF's rename
/// fails after the report's, the report's is taken back). Outputs are compared by canonical
/// parent directory and file name: the XOF and the report must be different files, and
/// neither may be the input.
pub fn import_file(
    hsm: &dyn Hsm,
    product: &Product,
    input: &Path,
    out: &Path,
    rejects: Option<&Path>,
    opts: &Options<'_>,
) -> Result<Summary> {
    let rejects = rejects.map_or_else(|| default_rejects_path(out), Path::to_path_buf);
    let f = fs::File::open(input).map_err(|e| Error::io(input, e))?;
    check_output_paths(input, out, &rejects)?;
    let xof_tmp = TempFile::create(out)?;
    let rej_tmp = TempFile::create(&rejects)?;
    let (summary, xof_w, rej_w) = import(
        hsm,
        product,
        f,
        BufWriter::with_capacity(256 * 1024, xof_tmp.file()?),
        BufWriter::new(rej_tmp.file()?),
        opts,
    )
    .map_err(|e| match e {
        Error::Io { path, source } if path == "reading the issuer file" => Error::io(input, source),
        e => e,
    })?;
    for (w, t) in [(xof_w, &xof_tmp), (rej_w, &rej_tmp)] {
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&t.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&t.tmp, e))?;
    }
    // Two renames cannot be one atomic step: if the second fails, the first is undone (the
    // report's previous file, if any, is put back) so that no partial output is left.
    let previous = rej_tmp.keep_previous()?;
    if let Err(e) = rej_tmp.commit() {
        if let Some(bak) = &previous {
            let _ = fs::remove_file(bak);
        }
        return Err(e);
    }
    if let Err(e) = xof_tmp.commit() {
        let undo = match &previous {
            Some(bak) => fs::rename(bak, &rej_tmp.target),
            None => fs::remove_file(&rej_tmp.target),
        };
        if let Err(u) = undo {
            return Err(Error::invalid(
                "output",
                format!(
                    "writing {} failed ({e}) and the reject report {} could not be taken back ({u})",
                    out.display(),
                    rej_tmp.target.display()
                ),
            ));
        }
        return Err(e);
    }
    if let Some(bak) = previous {
        let _ = fs::remove_file(bak);
    }
    Ok(summary)
}

/// A path as the file system resolves it for writing: the canonical parent directory and
/// the file name (the name itself is not resolved: a rename replaces the directory entry).
fn output_identity(p: &Path) -> Result<PathBuf> {
    let name = p
        .file_name()
        .ok_or_else(|| Error::invalid("output", format!("{} is not a file name", p.display())))?;
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    Ok(dir.join(name))
}

/// Refuses outputs that are the same file as each other or as the input (`a.xof` and
/// `./a.xof`, `dir/../in.dat`, a symlinked directory): renaming onto the input would
/// destroy the issuer's file, and one output would silently replace the other.
fn check_output_paths(input: &Path, out: &Path, rejects: &Path) -> Result<()> {
    let o = output_identity(out)?;
    let r = output_identity(rejects)?;
    if o == r {
        return Err(Error::invalid(
            "output",
            "the XOF and the reject report must be different files",
        ));
    }
    let mut inputs = vec![output_identity(input)?];
    if let Ok(c) = fs::canonicalize(input) {
        inputs.push(c);
    }
    for (what, p) in [("the XOF", &o), ("the reject report", &r)] {
        let same_entry = inputs.contains(p);
        // A hard link or a symlink to the input under another name.
        let same_file =
            fs::canonicalize(p).is_ok_and(|c| inputs.contains(&c)) || same_inode(input, p);
        if same_entry || same_file {
            return Err(Error::invalid(
                "output",
                format!("{what} would replace the input file"),
            ));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// A temporary file beside its target, removed on drop unless committed.
struct TempFile {
    tmp: PathBuf,
    target: PathBuf,
    done: std::cell::Cell<bool>,
}

impl TempFile {
    fn create(target: &Path) -> Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| Error::invalid("output", "not a file name"))?
            .to_string_lossy();
        let mut r = [0u8; 6];
        crate::fill_random(&mut r)?;
        let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(r)));
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(Self {
            tmp,
            target: target.to_path_buf(),
            done: std::cell::Cell::new(false),
        })
    }

    fn file(&self) -> Result<fs::File> {
        fs::OpenOptions::new()
            .write(true)
            .open(&self.tmp)
            .map_err(|e| Error::io(&self.tmp, e))
    }

    /// When the target exists, a second name for it (a hard link, else a copy) beside it,
    /// so that a commit can be taken back.
    fn keep_previous(&self) -> Result<Option<PathBuf>> {
        if fs::symlink_metadata(&self.target).is_err() {
            return Ok(None);
        }
        let bak = self.tmp.with_extension("bak");
        if fs::hard_link(&self.target, &bak).is_err() {
            fs::copy(&self.target, &bak).map_err(|e| Error::io(&self.target, e))?;
        }
        Ok(Some(bak))
    }

    fn commit(&self) -> Result<()> {
        fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        self.done.set(true);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done.get() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

// ---------------------------------------------------------------- the plan

/// What becomes of one field, resolved against the HSM.
struct FieldPlan {
    name: String,
    required: bool,
    check: Option<Check>,
    encrypted: bool,
    /// The clear value is needed on the host (a check, or the PAN of a PIN block).
    need_clear: bool,
    out: Out,
}

enum Out {
    None,
    Data {
        attribute: String,
        key: KeyHandle,
        label: String,
        block: usize,
    },
    Pin {
        attribute: String,
        pan: usize,
    },
}

/// Everything the workers need, resolved once.
struct Plan<'h> {
    hsm: &'h dyn Hsm,
    fields: Vec<FieldPlan>,
    id: usize,
    tk: Option<KeyHandle>,
    tk_block: usize,
    field_mode: Mode,
    field_iv: Option<Vec<u8>>,
    field_padding: Padding,
    issuer_pin: Option<(KeyHandle, PinBlockFormat)>,
    bureau_pin: Option<(KeyHandle, PinBlockFormat, String)>,
}

fn find_checked(
    hsm: &dyn Hsm,
    name: &crate::order::product::KeyName,
    role: &str,
) -> Result<KeyInfo> {
    let h = hsm
        .find_key(&name.label)
        .map_err(|_| Error::NotFound(format!("{role} '{}' is not in the key store", name.label)))?;
    let info = hsm.key_info(&h)?;
    if let Some(kcv) = &name.kcv {
        kcv.check(&info.kcv, format!("{role} '{}'", name.label))?;
    }
    Ok(info)
}

fn key_ref(k: &KeyInfo) -> KeyRef {
    KeyRef {
        label: k.spec.label.clone(),
        usage: k.spec.usage,
        algorithm: k.spec.algorithm,
        kcv: k.kcv,
    }
}

impl<'h> Plan<'h> {
    fn new(
        hsm: &'h dyn Hsm,
        p: &Product,
    ) -> Result<(Self, Vec<KeyInfo>, KeyInfo, Option<KeyInfo>)> {
        let tk = p
            .keys
            .transport
            .as_ref()
            .map(|k| find_checked(hsm, k, "transport key"))
            .transpose()?;
        if let Some(tk) = &tk
            && tk.spec.usage != KeyUsage::D0
        {
            return Err(Error::Policy(format!(
                "transport key '{}' must have usage D0, not {}",
                tk.spec.label, tk.spec.usage
            )));
        }
        if let (Some(fe), Some(tk)) = (&p.layout.file_encryption, &tk)
            && fe.algorithm != tk.spec.algorithm
        {
            return Err(Error::invalid(
                "product",
                format!(
                    "the file is {}-CBC but transport key '{}' is {}",
                    fe.algorithm, tk.spec.label, tk.spec.algorithm
                ),
            ));
        }
        let mac = find_checked(hsm, &p.keys.mac, "XOF MAC key")?;
        let pin = |k: &Option<crate::order::product::PinKey>, role| {
            k.as_ref()
                .map(|k| find_checked(hsm, &k.key, role).map(|i| (i, k.format)))
                .transpose()
        };
        let ipk = pin(&p.keys.issuer_pin, "issuer PIN key")?;
        let bpk = pin(&p.keys.bureau_pin, "bureau PIN key")?;
        let mut keys: Vec<KeyInfo> = Vec::new();
        let mut dkeps: BTreeMap<&str, KeyInfo> = BTreeMap::new();
        for label in p.dkep_labels() {
            let h = hsm
                .find_key(label)
                .map_err(|_| Error::NotFound(format!("DKep '{label}' is not in the key store")))?;
            let info = hsm.key_info(&h)?;
            if info.spec.usage != KeyUsage::D0 {
                return Err(Error::Policy(format!(
                    "DKep '{label}' must have usage D0, not {}",
                    info.spec.usage
                )));
            }
            keys.push(info.clone());
            dkeps.insert(label, info);
        }
        let has_pin = p
            .fields
            .iter()
            .any(|f| matches!(f.role, Role::PinBlock { .. }));
        if has_pin && let Some((b, _)) = &bpk {
            keys.push(b.clone());
        }
        keys.push(mac.clone());
        let pans: Vec<&str> = p
            .fields
            .iter()
            .filter_map(|f| match &f.role {
                Role::PinBlock { pan_field } => Some(pan_field.as_str()),
                Role::Data => None,
            })
            .collect();
        let tk_block = tk.as_ref().map_or(8, |t| t.spec.algorithm.block_size());
        let fields = p
            .fields
            .iter()
            .map(|f| {
                let out = match (&f.role, &f.attribute) {
                    (_, None) => Out::None,
                    (Role::Data, Some(a)) => {
                        let d = &dkeps[f.dkep.as_deref().unwrap_or_default()];
                        Out::Data {
                            attribute: a.clone(),
                            key: d.handle.clone(),
                            label: d.spec.label.clone(),
                            block: d.spec.algorithm.block_size(),
                        }
                    }
                    (Role::PinBlock { pan_field }, Some(a)) => Out::Pin {
                        attribute: a.clone(),
                        pan: p.field_index(pan_field).unwrap_or_default(),
                    },
                };
                FieldPlan {
                    name: f.name.clone(),
                    required: f.required,
                    check: f.check,
                    encrypted: f.encrypted,
                    need_clear: f.check.is_some() || pans.contains(&f.name.as_str()),
                    out,
                }
            })
            .collect();
        let (field_mode, field_iv, field_padding) = match &p.layout.field_encryption {
            Some(fe) => (
                fe.mode,
                fe.iv.as_ref().map(|iv| {
                    if iv.is_empty() {
                        vec![0; tk_block]
                    } else {
                        iv.clone()
                    }
                }),
                fe.padding,
            ),
            None => (Mode::Ecb, None, Padding::None),
        };
        if let Some(iv) = &field_iv
            && iv.len() != tk_block
        {
            return Err(Error::invalid(
                "product",
                "the field-encryption IV must be one block of the transport key's cipher",
            ));
        }
        let plan = Plan {
            hsm,
            fields,
            id: p
                .field_index(&p.layout.record_id)
                .ok_or_else(|| Error::invalid("product", "record-id names no field"))?,
            tk: tk.as_ref().map(|t| t.handle.clone()),
            tk_block,
            field_mode,
            field_iv,
            field_padding,
            issuer_pin: ipk.map(|(i, f)| (i.handle, f)),
            bureau_pin: bpk.map(|(i, f)| (i.handle.clone(), f, i.spec.label)),
        };
        Ok((plan, keys, mac, tk))
    }

    fn tk_spec(&self) -> Option<CipherSpec<'_>> {
        self.tk.as_ref().map(|k| CipherSpec {
            key: k,
            mode: self.field_mode,
            iv: self.field_iv.as_deref(),
            padding: self.field_padding,
        })
    }

    /// One record → an XOF record (seq 0, set by the writer) or a reject. `Err` only for
    /// failures that are not the record's fault (HSM refusals by policy, RNG).
    fn process(&self, rec: &RawRecord, scratch: &mut Scratch) -> Result<Outcome> {
        let reject = |id: Option<String>, field: &str, reason| {
            Ok(Outcome::Rejected(Reject {
                number: rec.number,
                id,
                field: field.to_string(),
                reason,
            }))
        };
        let id = rec.field(self.id).and_then(|v| {
            (v.len() <= 64
                && v.iter().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/')
                }))
            .then(|| String::from_utf8_lossy(v).into_owned())
        });
        if let Some(reason) = rec.problem {
            return reject(id, "-", reason);
        }
        let Some(id) = id else {
            return reject(None, &self.fields[self.id].name, Reason::RecordId);
        };
        // Pass 1: presence, ciphertext shape, clear values where needed, checks.
        scratch.reset(self.fields.len());
        for (i, f) in self.fields.iter().enumerate() {
            let Some(v) = rec.field(i) else {
                if f.required {
                    return reject(Some(id), &f.name, Reason::Missing);
                }
                continue;
            };
            if f.encrypted {
                let at = scratch.ct.len();
                let n = v.len() / 2;
                if v.len() % 2 != 0 || n % self.tk_block != 0 {
                    return reject(Some(id), &f.name, Reason::CiphertextFormat);
                }
                scratch.ct.resize(at + n, 0);
                if hex::decode_to_slice(v, &mut scratch.ct[at..]).is_err() {
                    return reject(Some(id), &f.name, Reason::CiphertextFormat);
                }
                scratch.ct_span[i] = Some((at, scratch.ct.len()));
                if f.need_clear {
                    let ct = &scratch.ct[at..];
                    let start = scratch.clear.len();
                    scratch.clear.resize(start + ct.len(), 0);
                    let spec = self.tk_spec().expect("checked by the product");
                    match self.hsm.decrypt(&spec, ct, &mut scratch.clear[start..]) {
                        Ok(n) => {
                            scratch.clear.truncate(start + n);
                            scratch.clear_span[i] = Some((start, start + n));
                        }
                        Err(Error::Crypto) => {
                            return reject(Some(id), &f.name, Reason::FieldDecrypt);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            if let Some(check) = f.check {
                let clear = match scratch.clear_span[i] {
                    Some((a, b)) => &scratch.clear[a..b],
                    None => v,
                };
                if let Err(reason) = check.run(clear) {
                    // After decryption under TK_issuer, every failure is one reason: a
                    // report that told bad padding from a bad format (not digits, length,
                    // Luhn) would be a padding oracle on the issuer's ciphertext.
                    let reason = if f.encrypted {
                        Reason::FieldDecrypt
                    } else {
                        reason
                    };
                    return reject(Some(id), &f.name, reason);
                }
            }
        }
        // Pass 2: attributes.
        let mut attributes = Vec::with_capacity(self.fields.len());
        let n_ivs = self
            .fields
            .iter()
            .filter(|f| matches!(f.out, Out::Data { .. }))
            .count();
        let mut ivs = [0u8; 16 * 32];
        let ivs = if n_ivs * 16 <= ivs.len() {
            crate::fill_random(&mut ivs[..n_ivs * 16])?;
            &ivs[..n_ivs * 16]
        } else {
            return Err(Error::Unsupported(
                "more than 32 attributes in a record".into(),
            ));
        };
        let mut iv_at = 0;
        for (i, f) in self.fields.iter().enumerate() {
            let Some(v) = rec.field(i) else { continue };
            match &f.out {
                Out::None => {}
                Out::Data {
                    attribute,
                    key,
                    label,
                    block,
                } => {
                    let iv = &ivs[iv_at..iv_at + block];
                    iv_at += 16;
                    let to = CipherSpec::cbc(key, iv, Padding::Iso9797M2);
                    let r = if let Some((a, b)) = scratch.ct_span[i] {
                        let ct = &scratch.ct[a..b];
                        let mut out = vec![0u8; ct.len() + 2 * block];
                        let from = self.tk_spec().expect("checked by the product");
                        match self.hsm.translate(&from, &to, ct, &mut out) {
                            Ok(n) => {
                                out.truncate(n);
                                Ok(out)
                            }
                            Err(Error::Crypto) => {
                                return reject(Some(id), &f.name, Reason::FieldDecrypt);
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        let mut out = vec![0u8; Padding::Iso9797M2.padded_len(v.len(), *block)];
                        self.hsm.encrypt(&to, v, &mut out).map(|n| {
                            out.truncate(n);
                            out
                        })
                    };
                    attributes.push(Attribute {
                        name: attribute.clone(),
                        key: label.clone(),
                        mode: Mode::Cbc,
                        iv: Some(iv.to_vec()),
                        padding: Padding::Iso9797M2,
                        ciphertext: r?,
                    });
                }
                Out::Pin { attribute, pan } => {
                    let (Some((ik, ifmt)), Some((bk, bfmt, blabel))) =
                        (&self.issuer_pin, &self.bureau_pin)
                    else {
                        return Err(Error::invalid("product", "PIN keys missing"));
                    };
                    let pan_clear = match scratch.clear_span[*pan] {
                        Some((a, b)) => Some(&scratch.clear[a..b]),
                        None => rec.field(*pan),
                    };
                    let pan = match pan_clear
                        .and_then(|p| core::str::from_utf8(p).ok())
                        .and_then(|p| Pan::new(p).ok())
                    {
                        Some(p) => p,
                        None => return reject(Some(id), &f.name, Reason::PinBlock),
                    };
                    let mut block = [0u8; 16];
                    let n = v.len() / 2;
                    if v.len() != ifmt.block_len() * 2
                        || hex::decode_to_slice(v, &mut block[..n]).is_err()
                    {
                        return reject(Some(id), &f.name, Reason::PinBlock);
                    }
                    let r = self.hsm.translate_pin(
                        &PinSpec {
                            key: ik,
                            format: *ifmt,
                        },
                        &PinSpec {
                            key: bk,
                            format: *bfmt,
                        },
                        &pan,
                        &block[..n],
                    );
                    block.zeroize();
                    match r {
                        Ok(b) => attributes.push(Attribute {
                            name: attribute.clone(),
                            key: blabel.clone(),
                            mode: Mode::Ecb,
                            iv: None,
                            padding: Padding::None,
                            ciphertext: b,
                        }),
                        Err(Error::Crypto) => {
                            return reject(Some(id), &f.name, Reason::PinBlock);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(Outcome::Written(Record {
            seq: 0,
            issuer_id: id,
            attributes,
        }))
    }
}

/// Per-worker buffers, reused across records; the clear part is wiped after each record.
#[derive(Default)]
struct Scratch {
    ct: Vec<u8>,
    ct_span: Vec<Option<(usize, usize)>>,
    clear: Zeroizing<Vec<u8>>,
    clear_span: Vec<Option<(usize, usize)>>,
}

impl Scratch {
    fn reset(&mut self, n: usize) {
        self.ct.clear();
        self.clear.zeroize();
        self.clear.clear();
        self.ct_span.clear();
        self.ct_span.resize(n, None);
        self.clear_span.clear();
        self.clear_span.resize(n, None);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.clear.zeroize();
    }
}

enum Outcome {
    Written(Record),
    Rejected(Reject),
}

// ---------------------------------------------------------------- the pipeline

struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Batch = (u64, Vec<RawRecord>);
type Done = (u64, Result<Vec<Outcome>>);

/// The streaming import: reads the issuer file from `input`, writes the XOF to `xof_out`
/// and the reject report to `rejects_out`, and returns the summary with both writers. On
/// error the writers hold partial output: [`import_file`] discards it.
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
    W: Write,
    J: Write,
{
    let t0 = Instant::now();
    let (plan, keys, mac, tk) = Plan::new(hsm, product)?;
    let order_id = opts
        .order_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", product.name, utc_now().1));
    let header = Header {
        order_id: order_id.clone(),
        issuer: product.issuer.clone(),
        product: product.name.clone(),
        created: utc_now().0,
        keys: keys.iter().map(key_ref).collect(),
        mac_key: mac.spec.label.clone(),
    };
    let workers = if opts.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.workers
    };
    let batch = opts.batch.max(1);
    let bytes = Arc::new(AtomicU64::new(0));
    let counting = CountingReader {
        inner: input,
        count: bytes.clone(),
    };

    let mut xof = xof::Writer::new(xof_out, &header, hsm, &mac.handle)?;
    let mut rejects_out = rejects_out;
    let io = |e| Error::io("reject report", e);
    writeln!(
        rejects_out,
        "# pmp import reject report: order={order_id} product={} issuer={}",
        product.name, product.issuer
    )
    .map_err(io)?;
    writeln!(
        rejects_out,
        "# one line per rejected record: record=N id=ISSUER_ID field=NAME reason=CODE (values are never written)"
    )
    .map_err(io)?;

    let mut summary = Summary {
        order_id,
        workers,
        keys,
        transport_key: tk,
        ..Summary::default()
    };

    let result: Result<Option<u64>> = std::thread::scope(|s| {
        let in_flight = workers * 2;
        let (job_tx, job_rx) = sync_channel::<Batch>(in_flight);
        let (done_tx, done_rx) = sync_channel::<Done>(in_flight);
        // Permits bound the batches read but not yet written: a slow batch cannot make the
        // writer's `pending` grow while the reader runs ahead.
        let (permit_tx, permit_rx) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            let _ = permit_tx.send(());
        }
        let reader = s.spawn(|| read_batches(hsm, product, counting, batch, job_tx, permit_rx));
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..workers {
            let rx = job_rx.clone();
            let tx = done_tx.clone();
            let plan = &plan;
            s.spawn(move || work(plan, &rx, &tx));
        }
        drop(job_rx);
        drop(done_tx);
        let w = write_in_order(
            &done_rx,
            permit_tx,
            &mut xof,
            &mut rejects_out,
            &mut summary,
            opts.progress,
            &bytes,
        );
        drop(done_rx);
        let r = reader
            .join()
            .unwrap_or_else(|_| Err(Error::invalid("issuer file", "the reader thread panicked")));
        // A reader error explains a short write; report it first.
        let declared = r?;
        w?;
        Ok(declared)
    });
    let declared = result?;
    summary.declared = declared;
    summary.bytes = bytes.load(Ordering::Relaxed);
    if summary.read != summary.written + summary.rejected {
        return Err(Error::Integrity {
            what: "import".into(),
            reason: format!(
                "{} records read but {} written and {} rejected",
                summary.read, summary.written, summary.rejected
            ),
        });
    }
    if let Some(d) = declared
        && d != summary.read
    {
        return Err(Error::Integrity {
            what: "issuer file".into(),
            reason: format!(
                "the issuer declares {d} records but the file holds {} (records lost or added in transit)",
                summary.read
            ),
        });
    }
    let (xof_out, n) = xof.finish()?;
    debug_assert_eq!(n, summary.written);
    writeln!(
        rejects_out,
        "# totals: read={} written={} rejected={}{}",
        summary.read,
        summary.written,
        summary.rejected,
        declared.map_or(String::new(), |d| format!(" declared={d}"))
    )
    .map_err(io)?;
    rejects_out.flush().map_err(io)?;
    summary.elapsed = t0.elapsed();
    Ok((summary, xof_out, rejects_out))
}

/// The reader thread: decrypt (if the file is encrypted), parse, batch.
fn read_batches<R: Read + Send>(
    hsm: &dyn Hsm,
    product: &Product,
    mut input: CountingReader<R>,
    batch: usize,
    tx: SyncSender<Batch>,
    permits: Receiver<()>,
) -> Result<Option<u64>> {
    let clear: Box<dyn Read + Send + '_> = match &product.layout.file_encryption {
        None => Box::new(input),
        Some(fe) => {
            let tk_name = product.keys.transport.as_ref().ok_or_else(|| {
                Error::invalid("product", "file encryption needs a transport key")
            })?;
            let tk = hsm.find_key(&tk_name.label)?;
            let bs = fe.algorithm.block_size();
            let iv = match &fe.iv {
                IvSource::Fixed(iv) => iv.clone(),
                IvSource::Prefix => {
                    let mut iv = vec![0u8; bs];
                    input.read_exact(&mut iv).map_err(|_| {
                        Error::invalid("encrypted file", "shorter than its IV block (truncated?)")
                    })?;
                    iv
                }
            };
            let spec = CipherSpec::cbc(&tk, &iv, fe.padding);
            hsm.decrypting_reader(&spec, Box::new(input))?
        }
    };
    let mut src = issuer::open(product, clear)?;
    let mut idx = 0u64;
    let mut cur = Vec::with_capacity(batch);
    (|| {
        while let Some(rec) = src.next_record().map_err(explain_file_error)? {
            cur.push(rec);
            if cur.len() == batch {
                if permits.recv().is_err() || tx.send((idx, core::mem::take(&mut cur))).is_err() {
                    return Ok(None); // the writer stopped; its error is reported
                }
                idx += 1;
                cur.reserve(batch);
            }
        }
        if !cur.is_empty() && permits.recv().is_ok() {
            let _ = tx.send((idx, core::mem::take(&mut cur)));
        }
        Ok(src.declared_count())
    })()
}

/// Makes a whole-file decryption failure say what it means.
fn explain_file_error(e: Error) -> Error {
    match e {
        Error::Crypto => Error::Integrity {
            what: "issuer file".into(),
            reason: "whole-file decryption under the transport key failed at the final padding: wrong key, altered or truncated file".into(),
        },
        e => e,
    }
}

fn work(plan: &Plan<'_>, rx: &Mutex<Receiver<Batch>>, tx: &SyncSender<Done>) {
    let mut scratch = Scratch::default();
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        let Ok((idx, records)) = job else { return };
        // A panic (a bug, or a backend's) becomes an error for the whole import, which then
        // leaves no output; it must not re-panic out of the thread scope.
        let out: Result<Vec<Outcome>> =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                records
                    .iter()
                    .map(|r| plan.process(r, &mut scratch))
                    .collect()
            }))
            .unwrap_or_else(|_| {
                Err(Error::Integrity {
                    what: "import".into(),
                    reason: "a worker thread panicked while translating a batch of records".into(),
                })
            });
        drop(records);
        let failed = out.is_err();
        if tx.send((idx, out)).is_err() || failed {
            return;
        }
    }
}

fn write_in_order<W: Write, J: Write>(
    rx: &Receiver<Done>,
    permits: SyncSender<()>,
    xof: &mut xof::Writer<'_, W>,
    rejects: &mut J,
    summary: &mut Summary,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
    bytes: &AtomicU64,
) -> Result<()> {
    let mut pending: BTreeMap<u64, Vec<Outcome>> = BTreeMap::new();
    let mut next = 0u64;
    for (idx, out) in rx {
        pending.insert(idx, out?);
        while let Some(batch) = pending.remove(&next) {
            next += 1;
            for o in batch {
                summary.read += 1;
                match o {
                    Outcome::Written(mut r) => {
                        summary.written += 1;
                        r.seq = summary.written;
                        xof.write_record(&r)?;
                    }
                    Outcome::Rejected(j) => {
                        summary.rejected += 1;
                        *summary.reasons.entry(j.reason).or_default() += 1;
                        writeln!(rejects, "{}", j.line())
                            .map_err(|e| Error::io("reject report", e))?;
                    }
                }
            }
            // The batch is written: the reader may read one more.
            let _ = permits.try_send(());
            if let Some(f) = progress {
                f(Progress {
                    bytes: bytes.load(Ordering::Relaxed),
                    records: summary.read,
                });
            }
        }
    }
    if !pending.is_empty() {
        return Err(Error::Integrity {
            what: "import".into(),
            reason: "a batch of records was not processed".into(),
        });
    }
    Ok(())
}

/// Now in UTC: (`YYYY-MM-DDTHH:MM:SSZ`, `YYYYMMDDTHHMMSSZ`).
pub(crate) fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, public domain).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z"),
        format!("{y:04}{mo:02}{d:02}T{h:02}{m:02}{s:02}Z"),
    )
}
