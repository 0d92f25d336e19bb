//! RSA keys over a `pmp_hsm`: an issuer key pair generated in the HSM
//! (`pmp_key_generate_rsa`), its public half for the certificate request
//! (`pmp_key_public`) and the pool of ICC key pairs (`pmp_icc_pool_fill`). No function
//! returns private key material.

use std::ffi::c_char;

use super::boundary::{FfiError, OutBuf, OutPtr, ffi_call, input_str, write_pair};
use super::hsm::{hsm_arg, pmp_hsm};
use super::status::pmp_status;
use crate::hsm::rsa::RsaKeySpec;
use crate::keyblock::KeyUsage;
use crate::rsa::RsaExponent;

fn exponent_arg(exponent: u32) -> Result<RsaExponent, FfiError> {
    RsaExponent::from_value(u64::from(exponent))
        .map_err(|e| FfiError::invalid("exponent", &e.to_string()))
}

/// Generates an issuer RSA key pair in the HSM under the new label `label`: usage S0 (it
/// only signs EMV messages in the recovery format), `bits` a multiple of 8 from 1024 to
/// 1984, `exponent` 3 or 65537. The private key never leaves the HSM; read the public half
/// with `pmp_key_public`.
///
/// Returns `PMP_STATUS_ALREADY_EXISTS` for a label in use, `PMP_STATUS_INVALID_ARGUMENT`
/// for a bad label, length or exponent, `PMP_STATUS_UNSUPPORTED` when the backend holds no
/// RSA keys.
///
/// # Safety
///
/// `hsm` must be a live handle and `label` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_key_generate_rsa(
    hsm: *const pmp_hsm,
    label: *const c_char,
    bits: u32,
    exponent: u32,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above.
        let label = unsafe { input_str(label, "label") }?;
        hsm.generate_rsa_key(&RsaKeySpec {
            label: label.to_string(),
            bits,
            exponent: exponent_arg(exponent)?,
            usage: KeyUsage::S0,
        })?;
        Ok(())
    })
}

/// The capacity that holds any EMV RSA modulus (1984 bits).
pub const PMP_RSA_MODULUS_CAP: usize = 248;
/// The capacity that holds any EMV RSA exponent as EMV writes it (`01 00 01`).
pub const PMP_RSA_EXPONENT_CAP: usize = 3;

/// Writes the public half of the RSA key labelled `label`: the modulus (big-endian, no
/// leading zero byte) to `modulus_out` and the exponent as EMV writes it (`03` or
/// `01 00 01`) to `exponent_out`, with their lengths in `*modulus_len` and `*exponent_len`.
///
/// When either buffer is too small, nothing is written to either: the call returns
/// `PMP_STATUS_BUFFER_TOO_SMALL` and sets both lengths to the capacities needed (pass NULL
/// buffers with capacity 0 to ask; `PMP_RSA_MODULUS_CAP` and `PMP_RSA_EXPONENT_CAP` always
/// suffice). Returns `PMP_STATUS_NOT_FOUND` when there is no key with this label,
/// `PMP_STATUS_UNSUPPORTED` when the backend holds no RSA keys.
///
/// # Safety
///
/// `hsm` must be a live handle, `label` a NUL-terminated string; each output buffer must
/// point to its capacity of writable bytes (or be NULL with capacity 0); `modulus_len` and
/// `exponent_len` must point to writable `size_t`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_key_public(
    hsm: *const pmp_hsm,
    label: *const c_char,
    modulus_out: *mut u8,
    modulus_cap: usize,
    modulus_len: *mut usize,
    exponent_out: *mut u8,
    exponent_cap: usize,
    exponent_len: *mut usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above.
        let (label, m, e) = unsafe {
            (
                input_str(label, "label")?,
                OutBuf::new(modulus_out, modulus_cap, modulus_len, "modulus_out")?,
                OutBuf::new(exponent_out, exponent_cap, exponent_len, "exponent_out")?,
            )
        };
        let key = hsm.find_key(label)?;
        let info = hsm.rsa_key_info(&key)?;
        write_pair(m, info.public.modulus(), e, info.public.exponent().bytes())
    })
}

/// Generates `count` ICC RSA key pairs of `bits` (a multiple of 8 from 1024 to 1984) and
/// public exponent `exponent` (3 or 65537) into the HSM's pool, which `pmp prep` takes
/// from, and writes the number of pairs of that length and exponent now available to
/// `*out_available`. Generation runs on all cores and can take minutes for thousands of
/// pairs; pairs stored before a failure stay in the pool.
///
/// # Safety
///
/// `hsm` must be a live handle and `out_available` point to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_icc_pool_fill(
    hsm: *const pmp_hsm,
    bits: u32,
    exponent: u32,
    count: u64,
    out_available: *mut u64,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above.
        let out = unsafe { OutPtr::new(out_available, "out_available") }?;
        let exponent = exponent_arg(exponent)?;
        let level = hsm.fill_icc_key_pool(bits, exponent, count)?;
        out.write(level.available);
        Ok(())
    })
}
