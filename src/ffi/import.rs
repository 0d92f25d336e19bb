//! The import pipeline (issuer file → XOF under the DKeps, with a reject report) for C.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, ThreadId};

use super::boundary::{
    FfiError, FfiResult, OutPtr, PlainData, ffi_call, input_bytes, input_opt_path, input_opt_str,
    input_path as path_arg,
};
use super::hsm::{hsm_arg, pmp_hsm};
use super::key::fill;
use super::pmp_status;
use crate::import::{self, Options, Progress, Summary};
use crate::order::product::Product;

/// The capacity of `pmp_import_summary.order_id`: an XOF order id (up to 256 bytes) and its
/// NUL.
pub const PMP_ORDER_ID_CAP: usize = 257;

/// A progress callback: `records_done` records of the issuer file have been processed
/// (written to the XOF or rejected); `user` is `pmp_import_options.user`. It runs only on the
/// thread that called `pmp_import_run`: after each batch that thread writes (with several
/// workers, other threads write the other batches, unreported) and once more at the end with
/// the final count, unless that count was just reported. It must return normally: a C++ exception thrown
/// through it, or a `longjmp` out of it, crosses Rust frames and is undefined behaviour.
pub type pmp_import_progress = Option<unsafe extern "C" fn(records_done: u64, user: *mut c_void)>;

/// The most worker threads `pmp_import_run` accepts (`pmp_import_options.workers`).
pub const PMP_MAX_WORKERS: u32 = 256;

/// Options of `pmp_import_run`: set `struct_size` to `sizeof(pmp_import_options)` and the
/// rest to zero for all defaults (or pass a NULL pointer).
///
/// `struct_size` lets the struct grow: a library reads only the first `struct_size` bytes
/// (fields beyond them take their defaults), and refuses a larger struct whose bytes beyond
/// the fields it knows are not all zero (`PMP_STATUS_UNSUPPORTED`: an option this library
/// does not have).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_import_options {
    /// `sizeof(pmp_import_options)` as the caller was compiled; 0 is refused.
    pub struct_size: usize,
    /// The XOF order id, NUL-terminated; NULL for `<product name>-<UTC time>`.
    pub order_id: *const c_char,
    /// Where to write the reject report; NULL for `<XOF file stem>.rejects.txt` beside the XOF.
    pub rejects_path: *const c_char,
    /// Worker threads translating records; 0 for one per core, at most `PMP_MAX_WORKERS`.
    pub workers: u32,
    /// Called after each batch of records is written, on the thread that called
    /// `pmp_import_run`, never concurrently; NULL for none. It must not free the HSM handle.
    pub progress: pmp_import_progress,
    /// Passed to `progress` as it is.
    pub user: *mut c_void,
}

/// What an import did. Plain data.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_import_summary {
    /// The XOF order id.
    pub order_id: [c_char; PMP_ORDER_ID_CAP],
    /// Data records read from the issuer file.
    pub read: u64,
    /// Records written to the XOF (`read = written + rejected`).
    pub written: u64,
    /// Records rejected (listed in the reject report, with the reason; never a value).
    pub rejected: u64,
    /// 1 when the issuer file declares a record count (then equal to `read`), else 0.
    pub has_declared: u32,
    /// The declared record count (0 when `has_declared` is 0).
    pub declared: u64,
    /// Bytes of the issuer file read.
    pub bytes: u64,
    /// Wall time in seconds.
    pub elapsed_seconds: f64,
    /// Worker threads used.
    pub workers: u32,
}

// SAFETY: #[repr(C)], fields of integers, a float and a `c_char` array.
unsafe impl PlainData for pmp_import_summary {}

/// Fills a zeroed summary (its padding stays zero).
fn summary_to_c(s: &Summary, out: &mut pmp_import_summary) -> FfiResult {
    out.read = s.read;
    out.written = s.written;
    out.rejected = s.rejected;
    out.has_declared = u32::from(s.declared.is_some());
    out.declared = s.declared.unwrap_or(0);
    out.bytes = s.bytes;
    out.elapsed_seconds = s.elapsed.as_secs_f64();
    out.workers = u32::try_from(s.workers).unwrap_or(u32::MAX);
    fill(&mut out.order_id, &s.order_id, "order id")
}

/// Reads the caller's options by their `struct_size` (see `pmp_import_options`); also used
/// for `pmp_prep_options` (`name` is the struct's C name, for messages).
///
/// # Safety
///
/// `options` NULL or pointing to `options->struct_size` readable bytes that begin with a
/// `T` prefix of that size; `T` is a `#[repr(C)]` options struct whose first field is
/// `struct_size: usize` and whose fields are plain data.
pub(super) unsafe fn read_options<T: Copy>(
    options: *const T,
    name: &'static str,
) -> FfiResult<Option<T>> {
    if options.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL; every caller's struct begins with `struct_size` (# Safety).
    let size = unsafe { options.cast::<usize>().read_unaligned() };
    let ours = size_of::<T>();
    // The first version of the struct with `struct_size` is this one: nothing smaller.
    if size < ours {
        return Err(FfiError::invalid(
            "options.struct_size",
            &format!("not sizeof({name}) (0 or too small: set it)"),
        ));
    }
    if size > ours {
        // SAFETY: the caller says `size` bytes are readable (# Safety).
        let tail = unsafe { input_bytes(options.cast::<u8>().add(ours), size - ours, "options") }?;
        if tail.iter().any(|&b| b != 0) {
            return Err(FfiError::new(
                pmp_status::Unsupported,
                "options: a field this version of the library does not know is set",
            ));
        }
    }
    // SAFETY: at least `ours` readable bytes holding a `T` (plain data).
    Ok(Some(unsafe { options.read() }))
}

/// The C progress callback with its user pointer, called only on the thread that called
/// `pmp_import_run`.
struct Callback {
    f: unsafe extern "C" fn(u64, *mut c_void),
    user: *mut c_void,
    thread: ThreadId,
    /// The count last reported (0: none yet).
    last: AtomicU64,
}

// SAFETY: `Callback` is shared with the pipeline's threads only through `call`, which
// touches `f` and `user` on the thread that created it (checked by thread id); other threads
// only read `thread`.
unsafe impl Sync for Callback {}

impl Callback {
    fn call(&self, p: Progress) {
        if thread::current().id() == self.thread {
            // SAFETY: `f` and `user` come from the caller's `pmp_import_options`, valid for
            // the call (# Safety of pmp_import_run); we are on the caller's thread.
            unsafe { (self.f)(p.records, self.user) }
            self.last.store(p.records, Ordering::Relaxed);
        }
    }

    /// At the end, on the caller's thread: the final count, unless it was just reported
    /// (the batches written by the other workers are not reported as they go).
    fn finish(&self, records: u64) {
        if self.last.load(Ordering::Relaxed) != records {
            self.call(Progress { bytes: 0, records });
        }
    }
}

/// Imports the issuer file `input_path` into the XOF file `xof_path` as the product file
/// `product_path` (`pmp-product-1` XML) says: every key the product names is checked in
/// the HSM (with its KCV) before anything is read; each field is translated from TK_issuer
/// to its DKep (or encrypted under it) inside the HSM; each record goes to the XOF or, with a
/// reason, to the reject report. Both output files are written to temporary files and
/// renamed only on success: on any error neither exists afterwards. A commit journal
/// (`.<XOF name>.pmp-commit`) makes the two renames one decision: after a kill between them
/// the next import into the same XOF path completes them first, and removes temporaries a
/// killed run left. Outputs are refused (`PMP_STATUS_INVALID_ARGUMENT`) inside a key-store
/// directory and over the product file, and empty paths are refused.
///
/// `options`: NULL or zero for the defaults (see `pmp_import_options`). On success writes the
/// counts to `*out_summary`.
///
/// Returns `PMP_STATUS_IO` for a file that cannot be read or written, `PMP_STATUS_NOT_FOUND`
/// for a key the product names that the HSM lacks, `PMP_STATUS_KCV_MISMATCH` when the HSM's
/// key differs from the product's KCV, `PMP_STATUS_INVALID_ARGUMENT` for a malformed product,
/// and `PMP_STATUS_INTEGRITY_FAILURE` for a file that does not decrypt (another key, bad
/// padding), a truncated file or counts that do not reconcile.
///
/// # Safety
///
/// `hsm` must be a live handle; `product_path`, `input_path`, `xof_path` NUL-terminated UTF-8;
/// `options` NULL or a valid `pmp_import_options` (its strings NULL or NUL-terminated, its
/// callback NULL or a function safe to call with `user` until the call returns);
/// `out_summary` must point to a writable `pmp_import_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_import_run(
    hsm: *const pmp_hsm,
    product_path: *const c_char,
    input_path: *const c_char,
    xof_path: *const c_char,
    options: *const pmp_import_options,
    out_summary: *mut pmp_import_summary,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, product_path, input, out_path, out) = unsafe {
            (
                hsm_arg(hsm)?,
                path_arg(product_path, "product_path")?,
                path_arg(input_path, "input_path")?,
                path_arg(xof_path, "xof_path")?,
                OutPtr::new(out_summary, "out_summary")?,
            )
        };
        // SAFETY: as above.
        let options = unsafe { read_options(options, "pmp_import_options") }?;
        let (order_id, rejects, workers, callback) = match options {
            None => (None, None, 0, None),
            Some(o) => (
                // SAFETY: as above, for the option strings.
                unsafe { input_opt_str(o.order_id, "options.order_id") }?,
                // SAFETY: as above.
                unsafe { input_opt_path(o.rejects_path, "options.rejects_path") }?,
                o.workers,
                o.progress.map(|f| Callback {
                    f,
                    user: o.user,
                    thread: thread::current().id(),
                    last: AtomicU64::new(0),
                }),
            ),
        };
        if workers > PMP_MAX_WORKERS {
            return Err(FfiError::invalid(
                "options.workers",
                "more than PMP_MAX_WORKERS (256)",
            ));
        }
        let report = |p: Progress| {
            if let Some(c) = &callback {
                c.call(p);
            }
        };
        let opts = Options {
            order_id: order_id.map(str::to_owned),
            workers: workers as usize,
            progress: Some(&report),
            ..Options::default()
        };
        // Outputs must not replace the product file (the key store is recognized by its
        // files in `import_file`).
        let default_rejects;
        let rejects_out = match rejects {
            Some(r) => r,
            None => {
                default_rejects = import::default_rejects_path(out_path);
                &default_rejects
            }
        };
        import::check_output_paths(out_path, rejects_out, &[product_path])?;
        let product = Product::load(product_path)?;
        let summary = import::import_file(hsm.hsm(), &product, input, out_path, rejects, &opts)?;
        if let Some(c) = &callback {
            c.finish(summary.read);
        }
        out.write_zeroed(|o| summary_to_c(&summary, o))
    })
}
