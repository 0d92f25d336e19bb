//! Key management over a `pmp_hsm`: generate, form from components, import and export TR-31
//! key blocks, find, list, delete. Keys are named by their labels; no function returns key
//! material.

use std::ffi::c_char;

use super::boundary::{
    FfiError, FfiResult, OutBuf, OutPtr, PlainData, ffi_call, input_opt_str, input_ref, input_str,
    zeroed_with,
};
use super::hsm::{hsm_arg, pmp_component, pmp_hsm, read_components};
use super::{PMP_ALGORITHM_AES, PMP_ALGORITHM_TDES, algorithm_from_c, pmp_algorithm, pmp_status};
use crate::hsm::{Hsm, ImportCheck, KeyHandle, KeyInfo, KeySpec};
use crate::keyblock::{Exportability, KeyUsage, ModeOfUse};
use crate::{Algorithm, Kcv};

/// The capacity of `pmp_key_info.label`: a label of up to 64 characters and its NUL.
pub const PMP_LABEL_CAP: usize = 65;
/// The capacity of `pmp_key_info.kcv`: up to 10 hex digits (AES KCV) and the NUL.
pub const PMP_KCV_CAP: usize = 11;

/// The attributes of a key to create (`pmp_key_generate`, `pmp_key_form`). All strings are
/// NUL-terminated and none may be NULL.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_key_spec {
    /// A new label: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    pub label: *const c_char,
    /// `PMP_ALGORITHM_TDES` or `PMP_ALGORITHM_AES`.
    pub algorithm: pmp_algorithm,
    /// The key length in bytes: TDES 16 or 24, AES 16, 24 or 32.
    pub length: usize,
    /// The TR-31 key usage, two characters: "D0" data, "P0" PIN, "K0"/"K1" key encryption,
    /// "M0"/"M1"/"M3"/"M5"/"M6" MAC, ...
    pub usage: *const c_char,
    /// The TR-31 mode of use, one character: "B" both, "E" encrypt only, "D" decrypt only,
    /// "C" generate and verify, "G" generate only, "V" verify only, ...
    pub mode_of_use: *const c_char,
    /// The TR-31 exportability, one character: "N" never exported, "E" exportable under a
    /// key-encryption key, "S" sensitive.
    pub exportability: *const c_char,
}

/// What the HSM reports about a key: attributes and KCV, never key material. Plain data:
/// every string is NUL-terminated inside its array; the bytes after a string's NUL and the
/// struct's padding are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_key_info {
    /// The label.
    pub label: [c_char; PMP_LABEL_CAP],
    /// `PMP_ALGORITHM_TDES` or `PMP_ALGORITHM_AES`.
    pub algorithm: pmp_algorithm,
    /// The key length in bytes.
    pub length: usize,
    /// The TR-31 key usage ("D0").
    pub usage: [c_char; 3],
    /// The TR-31 mode of use ("B").
    pub mode_of_use: [c_char; 2],
    /// The TR-31 exportability ("N", "E" or "S").
    pub exportability: [c_char; 2],
    /// The key check value in upper-case hex: 6 digits for TDES, 10 for AES.
    pub kcv: [c_char; PMP_KCV_CAP],
}

/// Copies `s` and a NUL into `dst`, refusing what does not fit.
pub(super) fn fill<const N: usize>(
    dst: &mut [c_char; N],
    s: &str,
    what: &'static str,
) -> FfiResult {
    let bytes = s.as_bytes();
    if bytes.len() >= N || bytes.contains(&0) {
        return Err(FfiError::new(
            pmp_status::Unsupported,
            format!("{what} '{s}' does not fit pmp_key_info"),
        ));
    }
    for (d, &b) in dst.iter_mut().zip(bytes) {
        *d = b as c_char;
    }
    dst[bytes.len()] = 0;
    Ok(())
}

// SAFETY: #[repr(C)], fields of integers and `c_char` arrays.
unsafe impl PlainData for pmp_key_info {}

/// Fills `out`, a `pmp_key_info` that starts all-zero (`OutPtr::write_zeroed`,
/// `zeroed_with`): only fields are assigned, so its padding stays zero.
pub(super) fn key_info_to_c(info: &KeyInfo, out: &mut pmp_key_info) -> FfiResult {
    out.algorithm = match info.spec.algorithm {
        Algorithm::Tdes => PMP_ALGORITHM_TDES,
        Algorithm::Aes => PMP_ALGORITHM_AES,
    };
    out.length = info.spec.len;
    fill(&mut out.label, &info.spec.label, "label")?;
    fill(&mut out.usage, info.spec.usage.as_str(), "usage")?;
    fill(
        &mut out.mode_of_use,
        info.spec.mode_of_use.as_char().encode_utf8(&mut [0; 4]),
        "mode of use",
    )?;
    fill(
        &mut out.exportability,
        info.spec.exportability.as_char().encode_utf8(&mut [0; 4]),
        "exportability",
    )?;
    fill(&mut out.kcv, &info.kcv.to_string(), "KCV")
}

/// # Safety
///
/// `spec` must be NULL or point to a `pmp_key_spec` whose strings are NUL-terminated.
unsafe fn key_spec_from_c(spec: *const pmp_key_spec) -> FfiResult<KeySpec> {
    // SAFETY: the caller's contract.
    let spec = unsafe { input_ref(spec, "spec") }?;
    // SAFETY: as above, for each string.
    let (label, usage, mode, export) = unsafe {
        (
            input_str(spec.label, "spec.label")?,
            input_str(spec.usage, "spec.usage")?,
            input_str(spec.mode_of_use, "spec.mode_of_use")?,
            input_str(spec.exportability, "spec.exportability")?,
        )
    };
    let usage: KeyUsage = usage.parse()?;
    if matches!(usage, KeyUsage::Other(_)) {
        return Err(FfiError::invalid("spec.usage", "unknown TR-31 key usage"));
    }
    Ok(KeySpec {
        label: label.to_owned(),
        algorithm: algorithm_from_c(spec.algorithm)?,
        len: spec.length,
        usage,
        mode_of_use: mode.parse::<ModeOfUse>()?,
        exportability: export.parse::<Exportability>()?,
    })
}

/// # Safety
///
/// `kcv` NULL or NUL-terminated.
unsafe fn opt_kcv(kcv: *const c_char, argument: &'static str) -> FfiResult<Option<Kcv>> {
    // SAFETY: the caller's contract.
    Ok(unsafe { input_opt_str(kcv, argument) }?
        .map(Kcv::from_hex)
        .transpose()?)
}

/// Finds a key's handle by label.
///
/// # Safety
///
/// `label` NULL or NUL-terminated.
pub(super) unsafe fn key_arg(
    hsm: &dyn Hsm,
    label: *const c_char,
    argument: &'static str,
) -> FfiResult<KeyHandle> {
    // SAFETY: the caller's contract.
    let label = unsafe { input_str(label, argument) }?;
    Ok(hsm.find_key(label)?)
}

/// Generates a random key inside the HSM with the attributes of `spec` and writes what the
/// HSM reports about it (label, attributes, KCV) to `*out_info`.
///
/// Returns `PMP_STATUS_ALREADY_EXISTS` for a label in use, `PMP_STATUS_INVALID_ARGUMENT` for
/// a bad label, length or attribute, `PMP_STATUS_POLICY` for a mode of use meaningless for
/// the usage.
///
/// # Safety
///
/// `hsm` must be a live handle, `spec` a valid `pmp_key_spec` (NUL-terminated strings),
/// `out_info` a writable `pmp_key_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_key_generate(
    hsm: *const pmp_hsm,
    spec: *const pmp_key_spec,
    out_info: *mut pmp_key_info,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, spec, out) = unsafe {
            (
                hsm_arg(hsm)?,
                key_spec_from_c(spec)?,
                OutPtr::new(out_info, "out_info")?,
            )
        };
        let info = hsm.hsm().generate_key(&spec)?;
        out.write_zeroed(|o| key_info_to_c(&info, o))
    })
}

/// Forms a key as the XOR of 2 or 3 clear components (key ceremony) and stores it with the
/// attributes of `spec` (`spec->length` = the component length).
///
/// Each component with a KCV is checked against it; the resulting key is checked against
/// `expected_kcv` (hex, or NULL for no check). Nothing is stored when a check fails
/// (`PMP_STATUS_KCV_MISMATCH`). On success writes the key's info to `*out_info`.
///
/// # Safety
///
/// `hsm` must be a live handle, `spec` a valid `pmp_key_spec`, `components` an array of
/// `count` valid `pmp_component`s, `expected_kcv` NULL or NUL-terminated, `out_info` a
/// writable `pmp_key_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_key_form(
    hsm: *const pmp_hsm,
    spec: *const pmp_key_spec,
    components: *const pmp_component,
    count: usize,
    expected_kcv: *const c_char,
    out_info: *mut pmp_key_info,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, spec, components, expected, out) = unsafe {
            (
                hsm_arg(hsm)?,
                key_spec_from_c(spec)?,
                read_components(components, count)?,
                opt_kcv(expected_kcv, "expected_kcv")?,
                OutPtr::new(out_info, "out_info")?,
            )
        };
        let parts: Vec<&[u8]> = components.iter().map(|c| c.bytes()).collect();
        let kcvs: Vec<Option<Kcv>> = components.iter().map(|c| c.kcv().copied()).collect();
        let info = hsm
            .hsm()
            .form_key_from_components(&spec, &parts, &kcvs, expected.as_ref())?;
        out.write_zeroed(|o| key_info_to_c(&info, o))
    })
}

/// Imports a TR-31 / X9.143 key block (versions B and D) under the key-encryption key
/// labelled `kek` (usage K0 or K1, mode B or D) and stores it as `label`, with the
/// attributes the block carries.
///
/// `expected_kcv`: the KCV the sender gave separately (hex), or NULL. On a mismatch the key
/// is not kept and the call returns `PMP_STATUS_KCV_MISMATCH`. A block that does not verify
/// under `kek` gives `PMP_STATUS_CRYPTO_FAILURE`. On success writes the key's info to
/// `*out_info`.
///
/// # Safety
///
/// `hsm` must be a live handle; `label`, `kek`, `block` NUL-terminated strings;
/// `expected_kcv` NULL or NUL-terminated; `out_info` a writable `pmp_key_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_key_import(
    hsm: *const pmp_hsm,
    label: *const c_char,
    kek: *const c_char,
    block: *const c_char,
    expected_kcv: *const c_char,
    out_info: *mut pmp_key_info,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety), for each argument.
        let (hsm, label, block, expected, out) = unsafe {
            (
                hsm_arg(hsm)?,
                input_str(label, "label")?,
                input_str(block, "block")?,
                opt_kcv(expected_kcv, "expected_kcv")?,
                OutPtr::new(out_info, "out_info")?,
            )
        };
        let hsm = hsm.hsm();
        // SAFETY: as above.
        let kek = unsafe { key_arg(hsm, kek, "kek") }?;
        let info = hsm.import_key_block_checked(
            label,
            &kek,
            block,
            &ImportCheck {
                kcv: expected.as_ref(),
                usages: &[],
            },
        )?;
        out.write_zeroed(|o| key_info_to_c(&info, o))
    })
}

/// Exports the key labelled `label` as a TR-31 key block under the key-encryption key
/// labelled `kek` (version D under an AES KEK, B under a TDES KEK). Only keys created
/// exportable ("E") are exported (`PMP_STATUS_POLICY` otherwise).
///
/// Writes the block as a NUL-terminated string to `out`; `*out_written` is its length
/// without the NUL. When `out_cap` is too small: `PMP_STATUS_BUFFER_TOO_SMALL` and
/// `*out_written` = the capacity needed (with the NUL). A key block is never longer than
/// `PMP_KEY_BLOCK_CAP - 1` characters here.
///
/// # Safety
///
/// `hsm` must be a live handle; `label`, `kek` NUL-terminated strings; `out` must point to
/// `out_cap` writable bytes (or be NULL with `out_cap` 0), `out_written` to a writable
/// `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_key_export(
    hsm: *const pmp_hsm,
    label: *const c_char,
    kek: *const c_char,
    out: *mut c_char,
    out_cap: usize,
    out_written: *mut usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above.
        let (key, kek, out) = unsafe {
            (
                key_arg(hsm, label, "label")?,
                key_arg(hsm, kek, "kek")?,
                OutBuf::new(out.cast::<u8>(), out_cap, out_written, "out")?,
            )
        };
        let block = hsm.export_key_block(&key, &kek)?;
        out.write_c_str(&block)
    })
}

/// The capacity of a buffer that holds any key block pmp-core exports, with its NUL.
pub const PMP_KEY_BLOCK_CAP: usize = 256;

/// Writes what the HSM reports about the key labelled `label` (attributes and KCV) to
/// `*out_info`. Returns `PMP_STATUS_NOT_FOUND` when there is no such key.
///
/// # Safety
///
/// `hsm` must be a live handle, `label` NUL-terminated, `out_info` a writable `pmp_key_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_key_find(
    hsm: *const pmp_hsm,
    label: *const c_char,
    out_info: *mut pmp_key_info,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above.
        let (key, out) = unsafe {
            (
                key_arg(hsm, label, "label")?,
                OutPtr::new(out_info, "out_info")?,
            )
        };
        let info = hsm.key_info(&key)?;
        out.write_zeroed(|o| key_info_to_c(&info, o))
    })
}

/// Lists every key, sorted by label, into the caller's array `out` of `out_cap` entries;
/// `*out_written` is the number of keys written.
///
/// When the array is too small: `PMP_STATUS_BUFFER_TOO_SMALL`, nothing written to `out`,
/// and `*out_written` = the number of keys. `out = NULL, out_cap = 0` counts them: it
/// returns `PMP_STATUS_BUFFER_TOO_SMALL` with the count, even when the store is empty
/// (count 0), like every size query of this API.
///
/// # Safety
///
/// `hsm` must be a live handle; `out` must point to `out_cap` writable `pmp_key_info`s (or
/// be NULL with `out_cap` 0); `out_written` to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_key_list(
    hsm: *const pmp_hsm,
    out: *mut pmp_key_info,
    out_cap: usize,
    out_written: *mut usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let (hsm, out) = unsafe {
            (
                hsm_arg(hsm)?.hsm(),
                OutBuf::new(out, out_cap, out_written, "out")?,
            )
        };
        let list = hsm
            .list_keys()?
            .iter()
            .map(|info| zeroed_with(|o| key_info_to_c(info, o)))
            .collect::<FfiResult<Vec<_>>>()?;
        out.write_zeroed(&list)
    })
}

/// Deletes the key labelled `label` from the store. Returns `PMP_STATUS_NOT_FOUND` when
/// there is no such key.
///
/// # Safety
///
/// `hsm` must be a live handle, `label` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_key_delete(hsm: *const pmp_hsm, label: *const c_char) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above.
        let key = unsafe { key_arg(hsm, label, "label") }?;
        hsm.delete_key(&key)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_refuses_what_does_not_fit() {
        let mut a = [1 as c_char; 3];
        assert!(fill(&mut a, "D0", "usage").is_ok());
        assert_eq!(a, [b'D' as c_char, b'0' as c_char, 0]);
        assert!(fill(&mut a, "D0X", "usage").is_err());
    }
}
