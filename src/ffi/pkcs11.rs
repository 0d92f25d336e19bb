//! `pmp_hsm_open_pkcs11`: a `pmp_hsm` over a PKCS#11 token (`Pkcs11Hsm`, cargo feature
//! `pkcs11`).
//!
//! The function is in every build, so that the header does not depend on the features the
//! library was built with: without the feature it answers `PMP_STATUS_UNSUPPORTED` (and
//! the last error message names the feature).

use std::ffi::c_char;

use super::boundary::{OutPtr, ffi_call, input_str};
use super::hsm::pmp_hsm;
use super::pmp_status;

/// Opens the PKCS#11 token labelled `token_label` in the module (`.so`) `module_path` and
/// logs in as the user with `pin`. On success `*out` is a new handle, to be released with
/// `pmp_hsm_free`; every function that takes a `const pmp_hsm *` works with it (what the
/// token can do is reported by its capabilities; `pmp_hsm_verify_audit` answers
/// `PMP_STATUS_UNSUPPORTED`).
///
/// Key-block import and export through host memory, where the token has no mechanism for
/// them (SoftHSMv2), is allowed only when the environment variable
/// `PMP_PKCS11_HOST_KEY_FALLBACK` is `1` (the operator's decision). pmp-core copies the PIN
/// into memory it wipes; the caller should wipe its own copy.
///
/// Returns `PMP_STATUS_UNSUPPORTED` when the library was built without the `pkcs11` feature,
/// `PMP_STATUS_IO` when there is no file `module_path`, `PMP_STATUS_INVALID_ARGUMENT` when
/// it does not load as a PKCS#11 module, `PMP_STATUS_NOT_FOUND` when no token has that
/// label, `PMP_STATUS_POLICY` for a wrong PIN, and `PMP_STATUS_HSM_UNAVAILABLE` (retryable)
/// when the token fails or does not answer.
///
/// # Safety
///
/// `module_path`, `token_label` and `pin` must be NUL-terminated UTF-8 strings; `out` must
/// point to a writable `pmp_hsm *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_hsm_open_pkcs11(
    module_path: *const c_char,
    token_label: *const c_char,
    pin: *const c_char,
    out: *mut *mut pmp_hsm,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety above).
        let module = unsafe { input_str(module_path, "module_path") }?;
        // SAFETY: as above.
        let token = unsafe { input_str(token_label, "token_label") }?;
        // SAFETY: as above.
        let pin = unsafe { input_str(pin, "pin") }?;
        // SAFETY: as above.
        let out = unsafe { OutPtr::new(out, "out") }?;
        let handle = open(module, token, pin)?;
        out.write(Box::into_raw(Box::new(handle)));
        Ok(())
    })
}

#[cfg(feature = "pkcs11")]
fn open(module: &str, token: &str, pin: &str) -> crate::Result<pmp_hsm> {
    use crate::hsm::{HOST_KEY_FALLBACK_ENV, Pkcs11Config, Pkcs11Hsm};
    let fallback = std::env::var(HOST_KEY_FALLBACK_ENV).is_ok_and(|v| v == "1");
    let config = Pkcs11Config::new(module, token, pin).with_host_key_fallback(fallback);
    Ok(pmp_hsm::over(std::sync::Arc::new(Pkcs11Hsm::open(
        &config,
    )?)))
}

#[cfg(not(feature = "pkcs11"))]
fn open(_module: &str, _token: &str, _pin: &str) -> crate::Result<pmp_hsm> {
    Err(crate::Error::Unsupported(
        "this pmp-core was built without PKCS#11 support (cargo feature pkcs11)".into(),
    ))
}
