//! The HSM handle: `pmp_hsm_init`, `pmp_hsm_open`, `pmp_hsm_free` and what a caller may ask
//! of the backend itself (TEST keys or not, the software HSM's audit log).
//!
//! `pmp_hsm` holds any [`Hsm`] backend behind an `Arc<dyn Hsm>`; what only the software HSM
//! offers (its audit log) is reached through an `Option` beside it. A new backend arrives
//! as a new `pmp_hsm_open_*` function that builds a `pmp_hsm` over it; no existing C
//! signature changes, and every function that takes a `const pmp_hsm *` works with it
//! (`pmp_hsm_verify_audit` answers `PMP_STATUS_UNSUPPORTED` for a backend without that
//! audit log).

use std::ffi::c_char;
use std::sync::Arc;

use super::boundary::{
    FfiError, FfiResult, OutPtr, ffi_call, ffi_guard, input_bytes, input_opt_str, input_path,
    input_ref, input_slice, input_str,
};
use super::pmp_status;
use crate::Kcv;
use crate::hsm::{Activity, Hsm, LmkComponent, LmkComponents, LmkSource, Officer, SoftHsm};

/// An HSM session over one backend: today the built-in software HSM over a key-store
/// directory (`pmp_hsm_init`, `pmp_hsm_open`).
///
/// Released by `pmp_hsm_free`. One handle may be used from several threads at once (every
/// function taking a `const pmp_hsm *` is thread-safe), except that `pmp_hsm_free` must not
/// run concurrently with any other call on the same handle.
pub struct pmp_hsm {
    /// The backend, for every operation of the trait.
    hsm: Arc<dyn Hsm>,
    /// The same backend when it is the software HSM, for what only it offers (its audit
    /// log); `None` for any other backend.
    soft: Option<Arc<SoftHsm>>,
}

impl pmp_hsm {
    /// A handle over the software HSM. (A handle over another backend is
    /// `pmp_hsm { hsm: Arc::new(backend), soft: None }`.)
    fn soft(soft: SoftHsm) -> Self {
        let soft = Arc::new(soft);
        Self {
            hsm: soft.clone(),
            soft: Some(soft),
        }
    }

    /// A handle over a backend other than the software HSM (`pmp_hsm_open_pkcs11`).
    #[cfg_attr(not(feature = "pkcs11"), allow(dead_code))]
    pub(super) fn over(hsm: Arc<dyn Hsm>) -> Self {
        Self { hsm, soft: None }
    }

    /// The backend, for every operation of the trait.
    pub(super) fn hsm(&self) -> &dyn Hsm {
        &*self.hsm
    }
}

/// Borrows the HSM behind a `const pmp_hsm *` argument.
///
/// # Safety
///
/// Unless NULL, `ptr` must come from `pmp_hsm_init`/`pmp_hsm_open` and not be freed for `'a`.
pub(super) unsafe fn hsm_arg<'a>(ptr: *const pmp_hsm) -> FfiResult<&'a pmp_hsm> {
    // SAFETY: forwarded contract; a live `pmp_hsm` is an initialized Rust value.
    unsafe { input_ref(ptr, "hsm") }
}

/// One clear key component (key ceremony) with its optional KCV.
///
/// Used for LMK components (`pmp_lmk`) and for keys formed from components
/// (`pmp_key_form`). pmp-core copies the component into memory it wipes after use; the
/// caller should wipe its own copy.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_component {
    /// The component bytes.
    pub key: *const u8,
    /// Their number (16 or 24 for TDES; 16, 24 or 32 for AES; 32 for an LMK component).
    pub key_len: usize,
    /// The component's KCV as hex text ("B53005"), NUL-terminated, or NULL if none was
    /// given. When given, the component is refused unless it matches.
    pub kcv: *const c_char,
}

/// A production LMK given as 2 or 3 clear AES-256 components (XORed together).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_lmk {
    /// `count` components.
    pub components: *const pmp_component,
    /// 2 or 3.
    pub count: usize,
}

/// Reads `count` components into zeroizing copies with their parsed KCVs.
///
/// # Safety
///
/// `components` must point to `count` `pmp_component`s whose pointers follow the rules of
/// `pmp_component` (or be NULL with `count` 0).
pub(super) unsafe fn read_components(
    components: *const pmp_component,
    count: usize,
) -> FfiResult<LmkComponents> {
    // SAFETY: the caller's contract.
    let list = unsafe { input_slice(components, count, "components") }?;
    let mut out: LmkComponents = Vec::with_capacity(list.len());
    for c in list {
        // SAFETY: the caller's contract covers each component's pointers.
        let key = unsafe { input_bytes(c.key, c.key_len, "component key") }?;
        // SAFETY: as above.
        let kcv = unsafe { input_opt_str(c.kcv, "component kcv") }?
            .map(Kcv::from_hex)
            .transpose()?;
        out.push(LmkComponent::new(key, kcv));
    }
    Ok(out)
}

/// # Safety
///
/// As for `pmp_hsm_open`.
unsafe fn open_or_init(
    dir: *const c_char,
    lmk: *const pmp_lmk,
    out: *mut *mut pmp_hsm,
    create: bool,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety of pmp_hsm_open / pmp_hsm_init).
        let dir = unsafe { input_path(dir, "dir") }?;
        // SAFETY: as above.
        let out = unsafe { OutPtr::new(out, "out") }?;
        // SAFETY: as above; `pmp_lmk` is plain data.
        let source = match unsafe { lmk.as_ref() } {
            None => LmkSource::Test,
            Some(lmk) => {
                if lmk.count == 0 {
                    return Err(FfiError::invalid("lmk", "no LMK components given"));
                }
                // SAFETY: as above.
                LmkSource::Components(unsafe { read_components(lmk.components, lmk.count) }?)
            }
        };
        let soft = if create {
            SoftHsm::init(dir, source)?
        } else {
            SoftHsm::open(dir, source)?
        };
        out.write(Box::into_raw(Box::new(pmp_hsm::soft(soft))));
        Ok(())
    })
}

/// Creates a new software-HSM key store in the directory `dir` (created if missing; it must
/// not already hold a store) and opens it.
///
/// `lmk`: the production LMK as 2 or 3 AES-256 components, or NULL for a generated TEST LMK
/// (development only: kept in clear in `dir/lmk.test`, and the store is marked TEST).
/// On success `*out` is a new handle, to be released with `pmp_hsm_free`.
///
/// Returns `PMP_STATUS_INVALID_ARGUMENT` for an empty `dir` (never "the current
/// directory"), `PMP_STATUS_ALREADY_EXISTS` when `dir` holds a store, `PMP_STATUS_KCV_MISMATCH`
/// when a component does not match its KCV, `PMP_STATUS_IO` on a file-system error.
///
/// # Safety
///
/// `dir` must be a NUL-terminated UTF-8 string; `lmk` NULL or a valid `pmp_lmk` (see
/// `pmp_component`); `out` must point to a writable `pmp_hsm *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_hsm_init(
    dir: *const c_char,
    lmk: *const pmp_lmk,
    out: *mut *mut pmp_hsm,
) -> pmp_status {
    // SAFETY: the same contract.
    unsafe { open_or_init(dir, lmk, out, true) }
}

/// Opens the software-HSM key store in the directory `dir`, loading and verifying every key
/// and the audit log chain.
///
/// `lmk`: the store's production LMK components, or NULL for a store with a TEST LMK.
/// On success `*out` is a new handle, to be released with `pmp_hsm_free`.
///
/// Returns `PMP_STATUS_INVALID_ARGUMENT` for an empty `dir`, `PMP_STATUS_IO` when there is
/// no store in `dir`, `PMP_STATUS_POLICY` for a NULL
/// `lmk` on a store with a production LMK,
/// `PMP_STATUS_KCV_MISMATCH` for a wrong LMK, `PMP_STATUS_INTEGRITY_FAILURE` when a key
/// file or the audit log was altered.
///
/// # Safety
///
/// As for `pmp_hsm_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_hsm_open(
    dir: *const c_char,
    lmk: *const pmp_lmk,
    out: *mut *mut pmp_hsm,
) -> pmp_status {
    // SAFETY: the same contract.
    unsafe { open_or_init(dir, lmk, out, false) }
}

/// Releases a handle from `pmp_hsm_init`/`pmp_hsm_open`: pending audit entries are written
/// (a failure to write them is not reported: use `pmp_hsm_close` to see it) and key
/// material held in memory is wiped. `pmp_hsm_free(NULL)` does nothing.
///
/// # Safety
///
/// `hsm` must be NULL or a handle not yet freed, with no other call on it running or
/// starting afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_hsm_free(hsm: *mut pmp_hsm) {
    ffi_guard((), || {
        if !hsm.is_null() {
            // SAFETY: a non-NULL `hsm` came from Box::into_raw in `open_or_init` and is
            // released once (# Safety).
            drop(unsafe { Box::from_raw(hsm) });
        }
    });
}

/// Writes the pending audit entries, then releases the handle as `pmp_hsm_free` does. The
/// handle is released whatever the result; the status says whether the audit log holds
/// every entry: `PMP_STATUS_OK`, or `PMP_STATUS_IO` when they could not be written (disk
/// full...), with the last error naming the file. `pmp_hsm_close(NULL)` returns
/// `PMP_STATUS_OK`.
///
/// # Safety
///
/// As for `pmp_hsm_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_hsm_close(hsm: *mut pmp_hsm) -> pmp_status {
    if hsm.is_null() {
        return pmp_status::Ok;
    }
    // SAFETY: a non-NULL `hsm` came from Box::into_raw in `open_or_init` and is released
    // once, here (# Safety); taken before anything can fail so it is always released.
    let handle = unsafe { Box::from_raw(hsm) };
    ffi_call(move || {
        let flushed = match &handle.soft {
            Some(soft) => soft.flush_audit(),
            None => Ok(()),
        };
        drop(handle);
        flushed.map_err(FfiError::from)
    })
}

/// Whether the backend runs on TEST keys (for the software HSM: whether the store's LMK is a
/// TEST LMK): writes 1 (TEST) or 0 (production) to `*out_is_test`.
///
/// # Safety
///
/// `hsm` must be a live handle; `out_is_test` must point to a writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_hsm_is_test(hsm: *const pmp_hsm, out_is_test: *mut u32) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?;
        // SAFETY: as above.
        let out = unsafe { OutPtr::new(out_is_test, "out_is_test") }?;
        out.write(u32::from(hsm.hsm().capabilities().is_test()));
        Ok(())
    })
}

/// Writes pending audit entries, verifies the store's audit log chain, and writes the number
/// of entries that verified to `*out_entries`. Returns `PMP_STATUS_INTEGRITY_FAILURE` when a
/// line was removed, changed or reordered, and `PMP_STATUS_UNSUPPORTED` for a backend
/// other than the software HSM (which keeps no audit log of its own).
///
/// # Safety
///
/// `hsm` must be a live handle; `out_entries` must point to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_hsm_verify_audit(
    hsm: *const pmp_hsm,
    out_entries: *mut u64,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?;
        // SAFETY: as above.
        let out = unsafe { OutPtr::new(out_entries, "out_entries") }?;
        let verdict = match &hsm.soft {
            Some(soft) => soft.verify_audit()?,
            None => {
                return Err(crate::Error::Unsupported(format!(
                    "the {} backend keeps no audit log that pmp-core verifies",
                    hsm.hsm().capabilities().backend()
                ))
                .into());
            }
        };
        out.write(verdict.entries);
        Ok(())
    })
}

/// Dual control: two different officers, `officer1` and `officer2` (ids), each with a
/// passphrase of `pass1_len` / `pass2_len` bytes, authorise the activities named in
/// `activities` (comma-separated: `form-key`, `import-kek`, `export`,
/// `generate-exportable`, `decrypt-to-clear`, `delete-key`, `manage-officers`) on this
/// handle for `seconds` seconds (at most 12 hours), replacing any earlier authorisation.
/// The authorisation and every operation it permits are audited with both ids. A store
/// with a TEST LMK waives dual control (and its audit entries say so).
///
/// Returns `PMP_STATUS_POLICY` when an officer is not enrolled, a passphrase does not
/// verify or the two ids are the same; `PMP_STATUS_INVALID_ARGUMENT` for an unknown
/// activity or a validity out of range; `PMP_STATUS_UNSUPPORTED` for a backend without
/// dual control.
///
/// # Safety
///
/// `hsm` must be a live handle; `officer1`, `officer2` and `activities` NUL-terminated;
/// `pass1` / `pass2` must point to `pass1_len` / `pass2_len` readable bytes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn pmp_hsm_authorise(
    hsm: *const pmp_hsm,
    officer1: *const c_char,
    pass1: *const u8,
    pass1_len: usize,
    officer2: *const c_char,
    pass2: *const u8,
    pass2_len: usize,
    activities: *const c_char,
    seconds: u64,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, id1, p1, id2, p2, acts) = unsafe {
            (
                hsm_arg(hsm)?,
                input_str(officer1, "officer1")?,
                input_bytes(pass1, pass1_len, "pass1")?,
                input_str(officer2, "officer2")?,
                input_bytes(pass2, pass2_len, "pass2")?,
                input_str(activities, "activities")?,
            )
        };
        let acts = acts
            .split(',')
            .map(|a| Activity::from_name(a.trim()))
            .collect::<crate::Result<Vec<_>>>()?;
        hsm.hsm().authorise(
            &Officer {
                id: id1,
                passphrase: p1,
            },
            &Officer {
                id: id2,
                passphrase: p2,
            },
            &acts,
            std::time::Duration::from_secs(seconds),
        )?;
        Ok(())
    })
}

/// Ends the handle's current dual-control authorisation, if any.
///
/// # Safety
///
/// `hsm` must be a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_hsm_end_authorisation(hsm: *const pmp_hsm) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?;
        hsm.hsm().end_authorisation()?;
        Ok(())
    })
}

/// Enrols officer `id` with a passphrase of `pass_len` bytes (at least 12) in the software
/// HSM's store (its Argon2id hash is kept under the LMK). The first two officers enrol
/// freely; a further one, or a new passphrase, needs an authorisation for
/// `manage-officers`. Returns `PMP_STATUS_UNSUPPORTED` for another backend.
///
/// # Safety
///
/// `hsm` must be a live handle; `id` NUL-terminated; `pass` must point to `pass_len`
/// readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_hsm_enrol_officer(
    hsm: *const pmp_hsm,
    id: *const c_char,
    pass: *const u8,
    pass_len: usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, id, pass) = unsafe {
            (
                hsm_arg(hsm)?,
                input_str(id, "id")?,
                input_bytes(pass, pass_len, "pass")?,
            )
        };
        match &hsm.soft {
            Some(soft) => soft.enrol_officer(id, pass)?,
            None => {
                return Err(
                    crate::Error::Unsupported("officer enrolment in this backend".into()).into(),
                );
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsm::{Capabilities, CipherSpec, ImportCheck, KeyHandle, KeyInfo, KeySpec, PinSpec};
    use crate::pinblock::Pan;
    use crate::{Error, MacAlgorithm, MacTag, Padding, Result};

    /// A backend that is not the software HSM: it runs on TEST keys, holds no key and
    /// offers nothing else.
    #[derive(Debug)]
    struct Other;

    fn none<T>() -> Result<T> {
        Err(Error::Unsupported(
            "the other backend (test) does nothing".into(),
        ))
    }

    impl Hsm for Other {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new("other (test)").with_test_keys(true)
        }
        fn generate_key(&self, _: &KeySpec) -> Result<KeyInfo> {
            none()
        }
        fn form_key_from_components(
            &self,
            _: &KeySpec,
            _: &[&[u8]],
            _: &[Option<Kcv>],
            _: Option<&Kcv>,
        ) -> Result<KeyInfo> {
            none()
        }
        fn import_key_block_checked(
            &self,
            _: &str,
            _: &KeyHandle,
            _: &str,
            _: &ImportCheck<'_>,
        ) -> Result<KeyInfo> {
            none()
        }
        fn export_key_block(&self, _: &KeyHandle, _: &KeyHandle) -> Result<String> {
            none()
        }
        fn key_info(&self, _: &KeyHandle) -> Result<KeyInfo> {
            none()
        }
        fn find_key(&self, label: &str) -> Result<KeyHandle> {
            Err(Error::NotFound(format!("key '{label}'")))
        }
        fn list_keys(&self) -> Result<Vec<KeyInfo>> {
            Ok(Vec::new())
        }
        fn delete_key(&self, _: &KeyHandle) -> Result<()> {
            none()
        }
        fn encrypt(&self, _: &CipherSpec<'_>, _: &[u8], _: &mut [u8]) -> Result<usize> {
            none()
        }
        fn decrypt(&self, _: &CipherSpec<'_>, _: &[u8], _: &mut [u8]) -> Result<usize> {
            none()
        }
        fn translate(
            &self,
            _: &CipherSpec<'_>,
            _: &CipherSpec<'_>,
            _: &[u8],
            _: &mut [u8],
        ) -> Result<usize> {
            none()
        }
        fn translate_pin(
            &self,
            _: &PinSpec<'_>,
            _: &PinSpec<'_>,
            _: &Pan,
            _: &[u8],
        ) -> Result<Vec<u8>> {
            none()
        }
        fn generate_mac(
            &self,
            _: &KeyHandle,
            _: MacAlgorithm,
            _: Padding,
            _: &[u8],
        ) -> Result<MacTag> {
            none()
        }
        fn verify_mac(
            &self,
            _: &KeyHandle,
            _: MacAlgorithm,
            _: Padding,
            _: &[u8],
            _: &[u8],
        ) -> Result<()> {
            none()
        }
    }

    /// The existing C functions work on a handle over another backend: `pmp_hsm_is_test`
    /// reads its capabilities, key functions reach it, and the software HSM's audit check
    /// says it is not available.
    #[test]
    fn a_handle_over_another_backend_works_through_the_same_functions() {
        let h = Box::into_raw(Box::new(pmp_hsm {
            hsm: Arc::new(Other),
            soft: None,
        }));
        let mut is_test = 7u32;
        let mut entries = 7u64;
        // SAFETY: `h` is a live handle from Box::into_raw, the out-pointers are live locals,
        // the label is a NUL-terminated literal; `h` is freed once, last.
        unsafe {
            assert_eq!(pmp_hsm_is_test(h, &mut is_test), pmp_status::Ok);
            assert_eq!(is_test, 1);
            assert_eq!(
                pmp_hsm_verify_audit(h, &mut entries),
                pmp_status::Unsupported
            );
            assert_eq!(entries, 7, "nothing written on failure");
            assert_eq!(
                crate::ffi::pmp_key_delete(h, c"DK".as_ptr()),
                pmp_status::NotFound
            );
            pmp_hsm_free(h);
        }
    }

    /// Dual control through the C API: on a production store a deletion is refused until two
    /// enrolled officers authorise it; an unknown activity is an invalid argument; another
    /// backend does not offer it.
    #[test]
    fn dual_control_through_the_c_api() {
        let dir = std::env::temp_dir().join(format!(
            "pmp-ffi-dual-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let comps = [[0x3Cu8; 32], [0xA5u8; 32]]
            .iter()
            .map(|c| LmkComponent::new(c, None))
            .collect();
        let soft = SoftHsm::init(&dir, LmkSource::Components(comps)).unwrap();
        soft.generate_key(&KeySpec::new(
            "DK",
            crate::Algorithm::Aes,
            32,
            crate::keyblock::KeyUsage::D0,
            crate::keyblock::ModeOfUse::B,
        ))
        .unwrap();
        let h = Box::into_raw(Box::new(pmp_hsm::soft(soft)));
        let other = Box::into_raw(Box::new(pmp_hsm {
            hsm: Arc::new(Other),
            soft: None,
        }));
        let (a, b) = (b"alice passphrase", b"bob's passphrase");
        // SAFETY: `h` and `other` are live handles from Box::into_raw, strings are
        // NUL-terminated literals, passphrase pointers and lengths come from live arrays;
        // each handle is freed once, last.
        unsafe {
            assert_eq!(
                pmp_hsm_enrol_officer(h, c"alice".as_ptr(), a.as_ptr(), a.len()),
                pmp_status::Ok
            );
            assert_eq!(
                pmp_hsm_enrol_officer(h, c"bob".as_ptr(), b.as_ptr(), b.len()),
                pmp_status::Ok
            );
            assert_eq!(
                crate::ffi::pmp_key_delete(h, c"DK".as_ptr()),
                pmp_status::Policy
            );
            let auth = |acts: &std::ffi::CStr, pass_b: &[u8]| {
                pmp_hsm_authorise(
                    h,
                    c"alice".as_ptr(),
                    a.as_ptr(),
                    a.len(),
                    c"bob".as_ptr(),
                    pass_b.as_ptr(),
                    pass_b.len(),
                    acts.as_ptr(),
                    60,
                )
            };
            assert_eq!(auth(c"delete-key", b"wrong passphrase"), pmp_status::Policy);
            assert_eq!(auth(c"delete-everything", b), pmp_status::InvalidArgument);
            assert_eq!(auth(c"export, delete-key", b), pmp_status::Ok);
            assert_eq!(
                crate::ffi::pmp_key_delete(h, c"DK".as_ptr()),
                pmp_status::Ok
            );
            assert_eq!(pmp_hsm_end_authorisation(h), pmp_status::Ok);
            assert_eq!(
                pmp_hsm_authorise(
                    other,
                    c"alice".as_ptr(),
                    a.as_ptr(),
                    a.len(),
                    c"bob".as_ptr(),
                    b.as_ptr(),
                    b.len(),
                    c"export".as_ptr(),
                    60,
                ),
                pmp_status::Unsupported
            );
            pmp_hsm_free(h);
            pmp_hsm_free(other);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
