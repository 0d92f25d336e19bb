//! Data preparation (XOF → production file, `docs/production.md`) and the production side's
//! check, for C.

use std::ffi::{c_char, c_void};

use super::boundary::{
    FfiError, FfiResult, OutPtr, PlainData, ffi_call, input_opt_path, input_opt_str,
    input_path as path_arg,
};
use super::hsm::{hsm_arg, pmp_hsm};
use super::import::{PMP_MAX_WORKERS, PMP_ORDER_ID_CAP, read_options};
use super::key::fill;
use super::pmp_status;
use crate::prep::{self, Options, Summary, production::ReadOptions, profile::Profile};

/// A progress callback: `cards_done` records of the XOF have been prepared or rejected;
/// `user` is `pmp_prep_options.user`. It runs only on the thread that called
/// `pmp_prep_run`, never concurrently, and must return normally (no C++ exception or
/// `longjmp` through it).
pub type pmp_prep_progress = Option<unsafe extern "C" fn(cards_done: u64, user: *mut c_void)>;

/// Options of `pmp_prep_run`: set `struct_size` to `sizeof(pmp_prep_options)` and the rest
/// to zero for all defaults (or pass a NULL pointer). `struct_size` lets the struct grow,
/// as for `pmp_import_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_prep_options {
    /// `sizeof(pmp_prep_options)` as the caller was compiled; 0 is refused.
    pub struct_size: usize,
    /// Where to write the reject report; NULL for `<production file stem>.rejects.txt`
    /// beside the production file.
    pub rejects_path: *const c_char,
    /// Worker threads preparing cards; 0 for one per core, at most `PMP_MAX_WORKERS`.
    pub workers: u32,
    /// 1 to accept a TEST-marked XOF on a production HSM (refused by default), else 0.
    pub allow_test: u32,
    /// Called after each batch of cards is written; NULL for none. It must not free the HSM
    /// handle.
    pub progress: pmp_prep_progress,
    /// Passed to `progress` as it is.
    pub user: *mut c_void,
}

/// What a data-preparation run did. Plain data.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_prep_summary {
    /// The order id (from the XOF).
    pub order_id: [c_char; PMP_ORDER_ID_CAP],
    /// XOF records read and verified.
    pub read: u64,
    /// Cards written to the production file (`read = prepared + rejected`).
    pub prepared: u64,
    /// Cards rejected (listed in the reject report with the DGI and reason; never a value).
    pub rejected: u64,
    /// Wall time in seconds.
    pub elapsed_seconds: f64,
    /// Worker threads used.
    pub workers: u32,
    /// 1 when the profile made ICC certificates, and `icc_serial_first` is the first serial
    /// number (the card of XOF sequence number s got `icc_serial_first + s - 1` modulo
    /// 2^24); else 0.
    pub has_icc_serial: u32,
    /// The run's first ICC certificate serial number (see `has_icc_serial`).
    pub icc_serial_first: u32,
    /// ICC RSA key pairs taken from the HSM's pool (ABI 3).
    pub icc_keys_from_pool: u64,
    /// ICC RSA key pairs generated in line, the pool being empty (ABI 3).
    pub icc_keys_in_line: u64,
}

// SAFETY: #[repr(C)], fields of integers, a float and a `c_char` array.
unsafe impl PlainData for pmp_prep_summary {}

/// Fills a zeroed summary (its padding stays zero).
fn summary_to_c(s: &Summary, out: &mut pmp_prep_summary) -> FfiResult {
    out.read = s.read;
    out.prepared = s.prepared;
    out.rejected = s.rejected;
    out.elapsed_seconds = s.elapsed.as_secs_f64();
    out.workers = u32::try_from(s.workers).unwrap_or(u32::MAX);
    out.has_icc_serial = u32::from(s.icc_serial_first.is_some());
    out.icc_serial_first = s.icc_serial_first.unwrap_or(0);
    out.icc_keys_from_pool = s.icc_keys_from_pool;
    out.icc_keys_in_line = s.icc_keys_in_line;
    fill(&mut out.order_id, &s.order_id, "order id")
}

/// The C progress callback with its user pointer.
struct Callback {
    f: unsafe extern "C" fn(u64, *mut c_void),
    user: *mut c_void,
}

// SAFETY: `prep::run` calls the progress function only on the thread that called it (the
// workers never do), so `f` and `user` are used on the caller's thread only.
unsafe impl Sync for Callback {}

/// Prepares the XOF order at `xof_path` with the application profile at `profile_path`
/// (`pmp-profile-1` XML) into the production file at `production_path`: the XOF is verified
/// while it is read (header, every record MAC and the chain, the trailer; with the
/// profile's `xof-mac-key`, pinned to that key); every key the profile names is checked
/// before any record is read; per card the ICC master keys are derived inside the HSM and
/// written under the KTK, the PIN block translated to format 2 under the PTK, cardholder
/// data encrypted under the DTK, and the card MACed under the MTK. A card whose data does not
/// fit goes to the reject report. Both outputs are written to temporary files and renamed
/// only on success: on any error neither exists afterwards.
///
/// `options`: NULL or zero (with `struct_size` set) for the defaults. On success writes the
/// counts to `*out_summary`.
///
/// Returns `PMP_STATUS_IO` for a file that cannot be read or written,
/// `PMP_STATUS_NOT_FOUND` for a key the profile or the XOF names that the HSM lacks,
/// `PMP_STATUS_POLICY` for a key with the wrong usage for its role (or an XOF MAC key other
/// than the pinned one, or a TEST order on a production HSM), `PMP_STATUS_INVALID_ARGUMENT`
/// for a malformed profile or an XOF of another product, `PMP_STATUS_UNSUPPORTED` for a
/// backend without EMV key derivation or card PIN blocks, and
/// `PMP_STATUS_INTEGRITY_FAILURE` for an XOF that does not verify.
///
/// # Safety
///
/// `hsm` must be a live handle; `profile_path`, `xof_path`, `production_path`
/// NUL-terminated UTF-8; `options` NULL or pointing to `options->struct_size` readable
/// bytes beginning with a `pmp_prep_options` (its string NULL or NUL-terminated, its
/// callback NULL or a function safe to call with `user` until the call returns);
/// `out_summary` must point to a writable `pmp_prep_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_prep_run(
    hsm: *const pmp_hsm,
    profile_path: *const c_char,
    xof_path: *const c_char,
    production_path: *const c_char,
    options: *const pmp_prep_options,
    out_summary: *mut pmp_prep_summary,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, profile_path, input, out_path, out) = unsafe {
            (
                hsm_arg(hsm)?,
                path_arg(profile_path, "profile_path")?,
                path_arg(xof_path, "xof_path")?,
                path_arg(production_path, "production_path")?,
                OutPtr::new(out_summary, "out_summary")?,
            )
        };
        // SAFETY: as above.
        let options = unsafe { read_options(options, "pmp_prep_options") }?;
        let (rejects, workers, allow_test, callback) = match options {
            None => (None, 0, false, None),
            Some(o) => (
                // SAFETY: as above, for the option string.
                unsafe { input_opt_path(o.rejects_path, "options.rejects_path") }?,
                o.workers,
                o.allow_test != 0,
                o.progress.map(|f| Callback { f, user: o.user }),
            ),
        };
        if workers > PMP_MAX_WORKERS {
            return Err(FfiError::invalid(
                "options.workers",
                "more than PMP_MAX_WORKERS (256)",
            ));
        }
        let report = |n: u64| {
            if let Some(c) = &callback {
                // SAFETY: `f` and `user` come from the caller's options, valid for the call
                // (# Safety); `prep::run` reports on the caller's thread only.
                unsafe { (c.f)(n, c.user) }
            }
        };
        let opts = Options {
            workers: workers as usize,
            progress: Some(&report),
            allow_test,
            ..Options::default()
        };
        let profile = Profile::load(profile_path)?;
        let summary = prep::run_files(hsm.hsm(), &profile, input, out_path, rejects, &opts)?;
        out.write_zeroed(|o| summary_to_c(&summary, o))
    })
}

/// Production side: reads and verifies the whole production file at `path` through the HSM
/// holding the imported transport keys: every listed key's usage, algorithm and KCV, the
/// header MAC, every card MAC and their chain, the trailer's count and MAC. With `mac_key`
/// (NULL for none) the file must be MACed under that label (`PMP_STATUS_POLICY` otherwise);
/// a TEST-marked file is refused on a production HSM. Memory does not depend on the file
/// size. On success writes the number of cards to `*out_cards`.
///
/// Returns `PMP_STATUS_IO` when the file cannot be read, `PMP_STATUS_NOT_FOUND` when the HSM
/// lacks a listed key, `PMP_STATUS_KCV_MISMATCH` when a key differs from the listed KCV, and
/// `PMP_STATUS_INTEGRITY_FAILURE` when the file does not verify (a MAC mismatch, a card
/// altered, removed, duplicated, reordered or appended, a truncated, malformed or hostile
/// file). The last error names the file, the line and the card.
///
/// # Safety
///
/// `hsm` must be a live handle; `path` NUL-terminated UTF-8; `mac_key` NULL or
/// NUL-terminated UTF-8; `out_cards` must point to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_production_verify(
    hsm: *const pmp_hsm,
    path: *const c_char,
    mac_key: *const c_char,
    out_cards: *mut u64,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, path, mac_key, out) = unsafe {
            (
                hsm_arg(hsm)?,
                path_arg(path, "path")?,
                input_opt_str(mac_key, "mac_key")?,
                OutPtr::new(out_cards, "out_cards")?,
            )
        };
        let opts = ReadOptions {
            mac_key,
            allow_test: false,
        };
        let cards = prep::production::verify_file_with(path, hsm.hsm(), &opts)?;
        out.write(cards);
        Ok(())
    })
}
