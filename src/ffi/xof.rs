//! XOF files (the bureau's internal order format, `docs/xof.md`): verification.

use std::ffi::c_char;

use super::boundary::{OutPtr, ffi_call, input_opt_str, input_path};
use super::hsm::{hsm_arg, pmp_hsm};
use super::pmp_status;

/// Reads and verifies the whole XOF file at `path` through the HSM: the header MAC and the
/// MAC key's KCV, every record MAC and their chain, the trailer's count and MAC. Memory does
/// not depend on the file size. On success writes the number of records to `*out_records`.
///
/// Only a non-exportable AES M6 key may MAC an XOF (`PMP_STATUS_POLICY` otherwise); to pin
/// the expected MAC key as well, use [`pmp_xof_verify_with_key`].
///
/// Returns `PMP_STATUS_IO` when the file cannot be read, `PMP_STATUS_NOT_FOUND` when the HSM
/// lacks the file's MAC key, and `PMP_STATUS_INTEGRITY_FAILURE` when the file does not verify:
/// a MAC mismatch (a record altered, removed, duplicated, reordered or appended; another key
/// under the MAC key's label), a truncated, malformed or hostile file (DOCTYPE, limits). The
/// last error names the file, the line and the record.
///
/// # Safety
///
/// `hsm` must be a live handle; `path` NUL-terminated UTF-8; `out_records` must point to a
/// writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_xof_verify(
    hsm: *const pmp_hsm,
    path: *const c_char,
    out_records: *mut u64,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, path, out) = unsafe {
            (
                hsm_arg(hsm)?,
                input_path(path, "path")?,
                OutPtr::new(out_records, "out_records")?,
            )
        };
        let records = crate::xof::verify_file(path, hsm.hsm())?;
        out.write(records);
        Ok(())
    })
}

/// [`pmp_xof_verify`], and the file must be MACed under the key labelled `mac_key` (the
/// one the caller's configuration names): a file naming any other key is refused with
/// `PMP_STATUS_POLICY`. `mac_key` NULL behaves as `pmp_xof_verify`.
///
/// # Safety
///
/// As for `pmp_xof_verify`; `mac_key` is NULL or NUL-terminated UTF-8.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_xof_verify_with_key(
    hsm: *const pmp_hsm,
    path: *const c_char,
    mac_key: *const c_char,
    out_records: *mut u64,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, path, mac_key, out) = unsafe {
            (
                hsm_arg(hsm)?,
                input_path(path, "path")?,
                input_opt_str(mac_key, "mac_key")?,
                OutPtr::new(out_records, "out_records")?,
            )
        };
        let records = match mac_key {
            Some(label) => crate::xof::verify_file_with_key(path, hsm.hsm(), label)?,
            None => crate::xof::verify_file(path, hsm.hsm())?,
        };
        out.write(records);
        Ok(())
    })
}
