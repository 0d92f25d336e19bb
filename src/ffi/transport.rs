//! Transport keys for production (`docs/key-hierarchy.md`): KTK, PTK, MTK and DTK issued at
//! data prep and exported under ZMK-prod, and imported on the production side.

use std::ffi::c_char;

use super::boundary::{FfiError, FfiResult, OutPtr, PlainData, ffi_call, input_ref, input_str};
use super::hsm::{hsm_arg, pmp_hsm};
use super::key::{PMP_KEY_BLOCK_CAP, key_arg, key_info_to_c, pmp_key_info};
use super::{algorithm_from_c, pmp_algorithm, pmp_status};
use crate::Kcv;
use crate::hierarchy::{self, IssuedKey};

/// A transport key as issued: what the HSM holds (label, attributes, KCV) and its TR-31 key
/// block under ZMK-prod, NUL-terminated, to send to production with the KCV.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_issued_key {
    /// The key at data prep.
    pub info: pmp_key_info,
    /// The key block under ZMK-prod.
    pub block: [c_char; PMP_KEY_BLOCK_CAP],
}

/// KTK (usage K0), PTK (P0), MTK (M6, CMAC, mode C) and DTK (D0), as issued by
/// `pmp_transport_keys_issue`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_transport_keys {
    /// Key transport key: encrypts keys (the ICC master keys) for production.
    pub ktk: pmp_issued_key,
    /// PIN transport key: encrypts card PIN blocks for production.
    pub ptk: pmp_issued_key,
    /// MAC transport key: MACs the production file.
    pub mtk: pmp_issued_key,
    /// Data transport key: encrypts cardholder data for production.
    pub dtk: pmp_issued_key,
}

// SAFETY: #[repr(C)], fields of plain data (`pmp_key_info`, a `c_char` array).
unsafe impl PlainData for pmp_issued_key {}
// SAFETY: #[repr(C)], fields of plain data (`pmp_issued_key`).
unsafe impl PlainData for pmp_transport_keys {}

/// Fills a zeroed `pmp_issued_key` (padding stays zero, see `OutPtr::write_zeroed`).
fn issued_to_c(k: &IssuedKey, out: &mut pmp_issued_key) -> FfiResult {
    key_info_to_c(&k.info, &mut out.info)?;
    let b = k.block.as_bytes();
    if b.len() >= PMP_KEY_BLOCK_CAP {
        return Err(FfiError::new(
            pmp_status::Unsupported,
            "key block longer than PMP_KEY_BLOCK_CAP",
        ));
    }
    for (d, &s) in out.block.iter_mut().zip(b) {
        *d = s as c_char;
    }
    Ok(())
}

/// Generates KTK, PTK, MTK and DTK (labels `<prefix>-KTK`, `-PTK`, `-MTK`, `-DTK`) of
/// `algorithm` and `length` bytes, exportable, and exports each as a TR-31 key block under
/// the zone master key labelled `zmk_prod` (version D for an AES ZMK, B for a TDES one).
/// Writes the four keys with their blocks and KCVs to `*out_keys`.
///
/// Not atomic: if a step fails after the first key was generated, the keys made so far stay
/// in the store (delete them with `pmp_key_delete` before retrying with the same prefix).
///
/// # Safety
///
/// `hsm` must be a live handle; `zmk_prod`, `prefix` NUL-terminated; `out_keys` must point to
/// a writable `pmp_transport_keys`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_transport_keys_issue(
    hsm: *const pmp_hsm,
    zmk_prod: *const c_char,
    prefix: *const c_char,
    algorithm: pmp_algorithm,
    length: usize,
    out_keys: *mut pmp_transport_keys,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above, for each argument.
        let (zmk, prefix, out) = unsafe {
            (
                key_arg(hsm, zmk_prod, "zmk_prod")?,
                input_str(prefix, "prefix")?,
                OutPtr::new(out_keys, "out_keys")?,
            )
        };
        let algorithm = algorithm_from_c(algorithm)?;
        let keys = hierarchy::issue_transport_keys(hsm, &zmk, prefix, algorithm, length)?;
        out.write_zeroed(|o| {
            issued_to_c(&keys.ktk, &mut o.ktk)?;
            issued_to_c(&keys.ptk, &mut o.ptk)?;
            issued_to_c(&keys.mtk, &mut o.mtk)?;
            issued_to_c(&keys.dtk, &mut o.dtk)
        })
    })
}

/// A transport key as it reaches production: its key block and the KCV sent with it (hex),
/// both NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_transport_key_block {
    /// The TR-31 key block under ZMK-prod.
    pub block: *const c_char,
    /// Its KCV in hex.
    pub kcv: *const c_char,
}

/// Production side: imports KTK, PTK and MTK (`blocks[0]`, `[1]`, `[2]`) under the zone
/// master key labelled `zmk_prod` as `<prefix>-KTK`, `-PTK`, `-MTK`, checking each KCV and
/// each block's usage (K0, P0, M6). All or nothing: on any refusal the keys imported by this
/// call are deleted. On success writes the three keys' info to `out_infos[0..3]`.
///
/// # Safety
///
/// `hsm` must be a live handle; `zmk_prod`, `prefix` NUL-terminated; `blocks` must point to
/// 3 `pmp_transport_key_block`s with NUL-terminated strings; `out_infos` to 3 writable
/// `pmp_key_info`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_transport_keys_import(
    hsm: *const pmp_hsm,
    zmk_prod: *const c_char,
    prefix: *const c_char,
    blocks: *const pmp_transport_key_block,
    out_infos: *mut pmp_key_info,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above, for each argument; `blocks` and `out_infos` hold 3 entries.
        let (zmk, prefix, blocks, out) = unsafe {
            (
                key_arg(hsm, zmk_prod, "zmk_prod")?,
                input_str(prefix, "prefix")?,
                input_ref(blocks.cast::<[pmp_transport_key_block; 3]>(), "blocks")?,
                OutPtr::new(out_infos.cast::<[pmp_key_info; 3]>(), "out_infos")?,
            )
        };
        let mut parsed: Vec<(&str, Kcv)> = Vec::with_capacity(3);
        for b in blocks {
            // SAFETY: as above, for each entry's strings.
            let (block, kcv) = unsafe { (input_str(b.block, "block")?, input_str(b.kcv, "kcv")?) };
            parsed.push((block, Kcv::from_hex(kcv)?));
        }
        let infos = hierarchy::import_transport_keys(
            hsm,
            &zmk,
            prefix,
            [
                (parsed[0].0, &parsed[0].1),
                (parsed[1].0, &parsed[1].1),
                (parsed[2].0, &parsed[2].1),
            ],
        )?;
        out.write_zeroed(|o| {
            for (dst, info) in o.iter_mut().zip(&infos) {
                key_info_to_c(info, dst)?;
            }
            Ok(())
        })
    })
}

/// As `pmp_transport_keys_import`, for all four transport keys: KTK, PTK, MTK and DTK
/// (`blocks[0..4]`, usages K0, P0, M6, D0) as `<prefix>-KTK`, `-PTK`, `-MTK`, `-DTK`. All or
/// nothing. On success writes the four keys' info to `out_infos[0..4]`.
///
/// # Safety
///
/// As for `pmp_transport_keys_import`, with 4 entries in `blocks` and `out_infos`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_transport_keys_import_all(
    hsm: *const pmp_hsm,
    zmk_prod: *const c_char,
    prefix: *const c_char,
    blocks: *const pmp_transport_key_block,
    out_infos: *mut pmp_key_info,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above, for each argument; `blocks` and `out_infos` hold 4 entries.
        let (zmk, prefix, blocks, out) = unsafe {
            (
                key_arg(hsm, zmk_prod, "zmk_prod")?,
                input_str(prefix, "prefix")?,
                input_ref(blocks.cast::<[pmp_transport_key_block; 4]>(), "blocks")?,
                OutPtr::new(out_infos.cast::<[pmp_key_info; 4]>(), "out_infos")?,
            )
        };
        let mut parsed: Vec<(&str, Kcv)> = Vec::with_capacity(4);
        for b in blocks {
            // SAFETY: as above, for each entry's strings.
            let (block, kcv) = unsafe { (input_str(b.block, "block")?, input_str(b.kcv, "kcv")?) };
            parsed.push((block, Kcv::from_hex(kcv)?));
        }
        let infos = hierarchy::import_transport_keys(
            hsm,
            &zmk,
            prefix,
            [
                (parsed[0].0, &parsed[0].1),
                (parsed[1].0, &parsed[1].1),
                (parsed[2].0, &parsed[2].1),
                (parsed[3].0, &parsed[3].1),
            ],
        )?;
        out.write_zeroed(|o| {
            for (dst, info) in o.iter_mut().zip(&infos) {
                key_info_to_c(info, dst)?;
            }
            Ok(())
        })
    })
}
