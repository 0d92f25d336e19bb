//! Cryptographic operations on keys held by a `pmp_hsm`: encrypt, decrypt, translate data
//! (single and batch), translate PIN blocks, generate and verify MACs.

use std::collections::HashMap;
use std::ffi::c_char;

use zeroize::Zeroizing;

use super::boundary::{
    FfiError, FfiResult, OutBuf, ffi_call, input_bytes, input_ref, input_slice, input_str,
};
use super::hsm::{hsm_arg, pmp_hsm};
use super::key::key_arg;
use super::pmp_status;
use crate::hsm::{CipherSpec, Hsm, KeyHandle, PinSpec, TranslateItem};
use crate::pinblock::{Pan, PinBlockFormat};
use crate::{MacAlgorithm, Mode, Padding};

/// A block cipher mode: `PMP_MODE_ECB` or `PMP_MODE_CBC`.
pub type pmp_mode = u32;
/// Electronic codebook (no IV).
pub const PMP_MODE_ECB: pmp_mode = 0x0201;
/// Cipher block chaining (IV of one block).
pub const PMP_MODE_CBC: pmp_mode = 0x0202;

/// A padding method: `PMP_PADDING_*`.
pub type pmp_padding = u32;
/// No padding: the data is a whole number of blocks.
pub const PMP_PADDING_NONE: pmp_padding = 0x0301;
/// ISO/IEC 9797-1 method 1 (zeros; not removable).
pub const PMP_PADDING_ISO9797_M1: pmp_padding = 0x0302;
/// ISO/IEC 9797-1 method 2 (0x80 then zeros).
pub const PMP_PADDING_ISO9797_M2: pmp_padding = 0x0303;
/// PKCS#7.
pub const PMP_PADDING_PKCS7: pmp_padding = 0x0304;

/// A MAC algorithm: `PMP_MAC_*`. The key's TR-31 usage must match it.
pub type pmp_mac_algorithm = u32;
/// ISO/IEC 9797-1 algorithm 3 ("retail MAC", ANSI X9.19), 2-key TDES, usage M3.
pub const PMP_MAC_RETAIL: pmp_mac_algorithm = 0x0401;
/// ISO/IEC 9797-1 algorithm 1 with TDES (CBC-MAC), usage M0 or M1.
pub const PMP_MAC_CBC_TDES: pmp_mac_algorithm = 0x0402;
/// ISO/IEC 9797-1 algorithm 1 with AES (CBC-MAC), usage M1.
pub const PMP_MAC_CBC_AES: pmp_mac_algorithm = 0x0403;
/// CMAC with TDES (NIST SP 800-38B), usage M5 or M6.
pub const PMP_MAC_CMAC_TDES: pmp_mac_algorithm = 0x0404;
/// CMAC with AES (NIST SP 800-38B), usage M5 or M6.
pub const PMP_MAC_CMAC_AES: pmp_mac_algorithm = 0x0405;

/// An ISO 9564-1 PIN block format: `PMP_PIN_FORMAT_ISO0` to `PMP_PIN_FORMAT_ISO4` (the value
/// is `0x0500` plus the format number).
pub type pmp_pin_format = u32;
/// Format 0 (ANSI X9.8), TDES, bound to the PAN.
pub const PMP_PIN_FORMAT_ISO0: pmp_pin_format = 0x0500;
/// Format 1, TDES, no PAN.
pub const PMP_PIN_FORMAT_ISO1: pmp_pin_format = 0x0501;
/// Format 2 (ICC offline PIN only; not accepted by translation).
pub const PMP_PIN_FORMAT_ISO2: pmp_pin_format = 0x0502;
/// Format 3, TDES, bound to the PAN.
pub const PMP_PIN_FORMAT_ISO3: pmp_pin_format = 0x0503;
/// Format 4, AES, bound to the PAN.
pub const PMP_PIN_FORMAT_ISO4: pmp_pin_format = 0x0504;

/// The shortest MAC truncation `pmp_mac_verify` accepts.
const MIN_MAC_LEN: usize = 4;

fn mode_from_c(value: pmp_mode) -> FfiResult<Mode> {
    match value {
        PMP_MODE_ECB => Ok(Mode::Ecb),
        PMP_MODE_CBC => Ok(Mode::Cbc),
        _ => Err(FfiError::invalid("mode", "unknown pmp_mode value")),
    }
}

fn padding_from_c(value: pmp_padding) -> FfiResult<Padding> {
    match value {
        PMP_PADDING_NONE => Ok(Padding::None),
        PMP_PADDING_ISO9797_M1 => Ok(Padding::Iso9797M1),
        PMP_PADDING_ISO9797_M2 => Ok(Padding::Iso9797M2),
        PMP_PADDING_PKCS7 => Ok(Padding::Pkcs7),
        _ => Err(FfiError::invalid("padding", "unknown pmp_padding value")),
    }
}

fn mac_from_c(value: pmp_mac_algorithm) -> FfiResult<MacAlgorithm> {
    match value {
        PMP_MAC_RETAIL => Ok(MacAlgorithm::Retail),
        PMP_MAC_CBC_TDES => Ok(MacAlgorithm::CbcTdes),
        PMP_MAC_CBC_AES => Ok(MacAlgorithm::CbcAes),
        PMP_MAC_CMAC_TDES => Ok(MacAlgorithm::CmacTdes),
        PMP_MAC_CMAC_AES => Ok(MacAlgorithm::CmacAes),
        _ => Err(FfiError::invalid(
            "algorithm",
            "unknown pmp_mac_algorithm value",
        )),
    }
}

fn pin_format_from_c(value: pmp_pin_format, argument: &'static str) -> FfiResult<PinBlockFormat> {
    value
        .checked_sub(PMP_PIN_FORMAT_ISO0)
        .and_then(|n| u8::try_from(n).ok())
        .and_then(PinBlockFormat::from_number)
        .ok_or_else(|| FfiError::invalid(argument, "unknown pmp_pin_format value"))
}

/// One side of a data operation: which key, which mode, which IV, which padding.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_cipher_spec {
    /// The label of a data key (usage D0), NUL-terminated.
    pub key: *const c_char,
    /// `PMP_MODE_ECB` or `PMP_MODE_CBC`.
    pub mode: pmp_mode,
    /// The IV for CBC (one block: 8 bytes TDES, 16 AES); NULL with `iv_len` 0 for ECB.
    pub iv: *const u8,
    /// The IV length.
    pub iv_len: usize,
    /// `PMP_PADDING_*`: how the plaintext is padded.
    pub padding: pmp_padding,
}

/// A `pmp_cipher_spec` read and checked, its key found.
struct Side<'a> {
    key: KeyHandle,
    mode: Mode,
    iv: Option<&'a [u8]>,
    padding: Padding,
}

impl Side<'_> {
    fn spec(&self) -> CipherSpec<'_> {
        CipherSpec {
            key: &self.key,
            mode: self.mode,
            iv: self.iv,
            padding: self.padding,
        }
    }
}

/// Label → handle, so that a batch looks each key up once.
#[derive(Default)]
struct Keys<'a>(HashMap<&'a str, KeyHandle>);

impl<'a> Keys<'a> {
    fn get(&mut self, hsm: &dyn Hsm, label: &'a str) -> FfiResult<KeyHandle> {
        if let Some(h) = self.0.get(label) {
            return Ok(h.clone());
        }
        let h = hsm.find_key(label)?;
        self.0.insert(label, h.clone());
        Ok(h)
    }
}

/// # Safety
///
/// `spec` must be NULL or point to a valid `pmp_cipher_spec` whose pointers stay valid for
/// `'a`.
unsafe fn side<'a>(
    hsm: &dyn Hsm,
    keys: &mut Keys<'a>,
    spec: *const pmp_cipher_spec,
    argument: &'static str,
) -> FfiResult<Side<'a>> {
    // SAFETY: the caller's contract.
    let spec = unsafe { input_ref(spec, argument) }?;
    // SAFETY: as above, for the key label.
    let label = unsafe { input_str(spec.key, "key") }?;
    let mode = mode_from_c(spec.mode)?;
    let iv = match mode {
        Mode::Ecb if spec.iv_len == 0 => None,
        Mode::Ecb => {
            return Err(FfiError::invalid(
                "iv",
                "ECB takes no IV (iv_len must be 0)",
            ));
        }
        // SAFETY: as above, for the IV.
        Mode::Cbc => Some(unsafe { input_bytes(spec.iv, spec.iv_len, "iv") }?),
    };
    Ok(Side {
        key: keys.get(hsm, label)?,
        mode,
        iv,
        padding: padding_from_c(spec.padding)?,
    })
}

/// Room for any output of one encrypt / translate of `len` bytes: the input plus padding
/// to at most one more block, with a block change from 8 to 16 bytes.
fn room(len: usize) -> FfiResult<usize> {
    len.checked_add(32)
        .ok_or_else(|| FfiError::invalid("data_len", "too large"))
}

/// Pads and encrypts `data` under the data key of `spec` (usage D0, mode B or E) and writes
/// the ciphertext to `out` (`*out_written` = its length; `PMP_STATUS_BUFFER_TOO_SMALL` with
/// the size needed when `out_cap` is too small).
///
/// Returns `PMP_STATUS_POLICY` when the key may not encrypt data (a PIN, MAC or
/// key-encryption key, or mode D).
///
/// # Safety
///
/// `hsm` must be a live handle, `spec` a valid `pmp_cipher_spec`; `data` must point to
/// `data_len` readable bytes; `out` to `out_cap` writable bytes (or NULL with `out_cap` 0),
/// not overlapping `data`; `out_written` to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_data_encrypt(
    hsm: *const pmp_hsm,
    spec: *const pmp_cipher_spec,
    data: *const u8,
    data_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_written: *mut usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        let mut keys = Keys::default();
        // SAFETY: as above, for each argument.
        let (spec, data, out) = unsafe {
            (
                side(hsm, &mut keys, spec, "spec")?,
                input_bytes(data, data_len, "data")?,
                OutBuf::new(out, out_cap, out_written, "out")?,
            )
        };
        let mut buf = vec![0u8; room(data.len())?];
        let n = hsm.encrypt(&spec.spec(), data, &mut buf)?;
        out.write(&buf[..n])
    })
}

/// Decrypts `data` under the data key of `spec` (usage D0, mode B or D), removes the padding
/// and writes the clear data to `out` (`*out_written` = its length).
///
/// The clear data leaves the HSM: a caller that only re-encrypts should use
/// `pmp_data_translate`. A wrong key or bad padding gives `PMP_STATUS_CRYPTO_FAILURE`.
///
/// # Safety
///
/// As for `pmp_data_encrypt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_data_decrypt(
    hsm: *const pmp_hsm,
    spec: *const pmp_cipher_spec,
    data: *const u8,
    data_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_written: *mut usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        let mut keys = Keys::default();
        // SAFETY: as above, for each argument.
        let (spec, data, out) = unsafe {
            (
                side(hsm, &mut keys, spec, "spec")?,
                input_bytes(data, data_len, "data")?,
                OutBuf::new(out, out_cap, out_written, "out")?,
            )
        };
        let mut buf = Zeroizing::new(vec![0u8; data.len()]);
        let n = hsm.decrypt(&spec.spec(), data, &mut buf)?;
        out.write(&buf[..n])
    })
}

/// Translates `data` from `from` (key, mode, IV, padding) to `to` in one call: decrypts and
/// re-encrypts inside the HSM, the clear data never leaving it. Writes the new ciphertext to
/// `out` (`*out_written` = its length; `PMP_STATUS_BUFFER_TOO_SMALL` with the size needed
/// when `out_cap` is too small — `data_len + 32` is always enough).
///
/// Returns `PMP_STATUS_POLICY` when `from` may not decrypt or `to` may not encrypt data,
/// `PMP_STATUS_CRYPTO_FAILURE` when the data does not decrypt (wrong key, bad padding).
///
/// Thread-safe: may be called from several threads on one handle.
///
/// # Safety
///
/// `hsm` must be a live handle; `from`, `to` valid `pmp_cipher_spec`s; `data` must point to
/// `data_len` readable bytes; `out` to `out_cap` writable bytes (or NULL with `out_cap` 0),
/// not overlapping `data`; `out_written` to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_data_translate(
    hsm: *const pmp_hsm,
    from: *const pmp_cipher_spec,
    to: *const pmp_cipher_spec,
    data: *const u8,
    data_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_written: *mut usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        let mut keys = Keys::default();
        // SAFETY: as above, for each argument.
        let (from, to, data, out) = unsafe {
            (
                side(hsm, &mut keys, from, "from")?,
                side(hsm, &mut keys, to, "to")?,
                input_bytes(data, data_len, "data")?,
                OutBuf::new(out, out_cap, out_written, "out")?,
            )
        };
        let mut buf = vec![0u8; room(data.len())?];
        let n = hsm.translate(&from.spec(), &to.spec(), data, &mut buf)?;
        out.write(&buf[..n])
    })
}

/// One field of a batch translation (`pmp_data_translate_batch`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmp_translate_item {
    /// How the field is encrypted now.
    pub from: pmp_cipher_spec,
    /// How it is to be encrypted.
    pub to: pmp_cipher_spec,
    /// The ciphertext under `from`.
    pub data: *const u8,
    /// Its length.
    pub data_len: usize,
}

/// Translates `count` fields in one call (one round trip for a network HSM), all or
/// nothing. The outputs are written one after the other into `out` (`*out_written` = the
/// total length); `out_ends[i]` is the end offset of field `i` in `out` (field `i` is
/// `out[out_ends[i-1] .. out_ends[i]]`, from 0 for the first).
///
/// On any failure nothing is written; the last error names the failing item. When `out_cap`
/// is too small: `PMP_STATUS_BUFFER_TOO_SMALL` with `*out_written` = the size needed
/// (`out_ends` untouched).
///
/// # Safety
///
/// `hsm` must be a live handle; `items` must point to `count` valid `pmp_translate_item`s
/// (or be NULL with `count` 0); `out` to `out_cap` writable bytes (or NULL with `out_cap`
/// 0); `out_written` to a writable `size_t`; `out_ends` to `count` writable `size_t`s (or
/// NULL with `count` 0); no output may overlap an input or another output.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_data_translate_batch(
    hsm: *const pmp_hsm,
    items: *const pmp_translate_item,
    count: usize,
    out: *mut u8,
    out_cap: usize,
    out_written: *mut usize,
    out_ends: *mut usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above.
        let items = unsafe { input_slice(items, count, "items") }?;
        // SAFETY: as above.
        let out = unsafe { OutBuf::new(out, out_cap, out_written, "out") }?;
        let mut ends_written = 0usize;
        // `out_ends` is an array of `count` entries, never a size query: with `count` 0 it
        // may be NULL and an empty array stands for it.
        let out_ends = if count == 0 {
            std::ptr::NonNull::dangling().as_ptr()
        } else {
            out_ends
        };
        // SAFETY: as above; `count` entries (or a dangling pointer with capacity 0, never
        // dereferenced).
        let ends = unsafe { OutBuf::new(out_ends, count, &mut ends_written, "out_ends") }?;
        let mut keys = Keys::default();
        let mut sides = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = |e: FfiError| FfiError::new(e.status(), format!("item {i}: {}", e.message()));
            // SAFETY: as above, for the item's pointers.
            let side = unsafe {
                (
                    side(hsm, &mut keys, &item.from, "from").map_err(at)?,
                    side(hsm, &mut keys, &item.to, "to").map_err(at)?,
                    input_bytes(item.data, item.data_len, "data").map_err(at)?,
                )
            };
            sides.push(side);
        }
        let batch: Vec<TranslateItem<'_>> = sides
            .iter()
            .map(|(from, to, data)| TranslateItem {
                from: from.spec(),
                to: to.spec(),
                data,
            })
            .collect();
        let mut buf = Vec::new();
        let offsets = hsm.translate_batch(&batch, &mut buf)?;
        out.write(&buf)?;
        ends.write(&offsets)
    })
}

/// Translates a PIN block from the PIN key labelled `from_key` in `from_format` to the PIN
/// key labelled `to_key` in `to_format` (keys of usage P0; TDES for formats 0, 1, 3, AES
/// for format 4), inside the HSM. `pan`: the card's PAN, 12 to 19 digits, NUL-terminated.
///
/// Writes the new block (8 bytes, or 16 for format 4) to `out`. A block that does not
/// decipher to a valid PIN block for this PAN gives the opaque `PMP_STATUS_CRYPTO_FAILURE`;
/// a format change the policy forbids (0, 3 or 4 to 1; anything with 2) gives
/// `PMP_STATUS_POLICY`.
///
/// # Safety
///
/// `hsm` must be a live handle; `from_key`, `to_key`, `pan` NUL-terminated; `block` must
/// point to `block_len` readable bytes; `out` to `out_cap` writable bytes (or NULL with
/// `out_cap` 0); `out_written` to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_pin_translate(
    hsm: *const pmp_hsm,
    from_key: *const c_char,
    from_format: pmp_pin_format,
    to_key: *const c_char,
    to_format: pmp_pin_format,
    pan: *const c_char,
    block: *const u8,
    block_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_written: *mut usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above, for each argument.
        let (from_key, to_key, pan, block, out) = unsafe {
            (
                key_arg(hsm, from_key, "from_key")?,
                key_arg(hsm, to_key, "to_key")?,
                input_str(pan, "pan")?,
                input_bytes(block, block_len, "block")?,
                OutBuf::new(out, out_cap, out_written, "out")?,
            )
        };
        let from = PinSpec {
            key: &from_key,
            format: pin_format_from_c(from_format, "from_format")?,
        };
        // The length is public (it depends on the format only): a wrong one is the caller's
        // mistake, not a cryptographic failure.
        let block_size = if from.format == PinBlockFormat::Iso4 {
            16
        } else {
            8
        };
        if block.len() != block_size {
            return Err(FfiError::invalid(
                "block_len",
                if block_size == 16 {
                    "a format 4 PIN block is 16 bytes"
                } else {
                    "a format 0 to 3 PIN block is 8 bytes"
                },
            ));
        }
        let to = PinSpec {
            key: &to_key,
            format: pin_format_from_c(to_format, "to_format")?,
        };
        let pan = Pan::new(pan)?;
        let new_block = hsm.translate_pin(&from, &to, &pan, block)?;
        out.write(&new_block)
    })
}

/// Generates a MAC over `data` under the MAC key labelled `key` (usage matching
/// `algorithm`, mode C or G) and writes the full MAC (one block: 8 bytes TDES, 16 AES) to
/// `out`; truncate it as your protocol asks. `padding` (`PMP_PADDING_ISO9797_M1` or `_M2`)
/// applies to the CBC-MAC algorithms; CMAC ignores it.
///
/// # Safety
///
/// `hsm` must be a live handle; `key` NUL-terminated; `data` must point to `data_len`
/// readable bytes; `out` to `out_cap` writable bytes (or NULL with `out_cap` 0);
/// `out_written` to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_mac_generate(
    hsm: *const pmp_hsm,
    key: *const c_char,
    algorithm: pmp_mac_algorithm,
    padding: pmp_padding,
    data: *const u8,
    data_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_written: *mut usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above, for each argument.
        let (key, data, out) = unsafe {
            (
                key_arg(hsm, key, "key")?,
                input_bytes(data, data_len, "data")?,
                OutBuf::new(out, out_cap, out_written, "out")?,
            )
        };
        let tag = hsm.generate_mac(&key, mac_from_c(algorithm)?, padding_from_c(padding)?, data)?;
        out.write(tag.as_bytes())
    })
}

/// Verifies a MAC (the full block or a truncation of at least 4 bytes) over `data` under the
/// MAC key labelled `key` (usage matching `algorithm`, mode C or V), in constant time.
/// Returns `PMP_STATUS_OK` when it matches, `PMP_STATUS_CRYPTO_FAILURE` when it does not.
///
/// # Safety
///
/// `hsm` must be a live handle; `key` NUL-terminated; `data` must point to `data_len`
/// readable bytes and `mac` to `mac_len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pmp_mac_verify(
    hsm: *const pmp_hsm,
    key: *const c_char,
    algorithm: pmp_mac_algorithm,
    padding: pmp_padding,
    data: *const u8,
    data_len: usize,
    mac: *const u8,
    mac_len: usize,
) -> pmp_status {
    ffi_call(|| {
        // SAFETY: the caller's contract (# Safety).
        let hsm = unsafe { hsm_arg(hsm) }?.hsm();
        // SAFETY: as above, for each argument.
        let (key, data, mac) = unsafe {
            (
                key_arg(hsm, key, "key")?,
                input_bytes(data, data_len, "data")?,
                input_bytes(mac, mac_len, "mac")?,
            )
        };
        let algorithm = mac_from_c(algorithm)?;
        // The accepted lengths are public: a MAC of another length is the caller's mistake,
        // refused before any cryptography, not a (deliberately opaque) MAC mismatch.
        let block = match algorithm {
            MacAlgorithm::CbcAes | MacAlgorithm::CmacAes => 16,
            _ => 8,
        };
        if !(MIN_MAC_LEN..=block).contains(&mac.len()) {
            return Err(FfiError::invalid(
                "mac_len",
                if block == 16 {
                    "an AES MAC is 4 to 16 bytes"
                } else {
                    "a TDES MAC is 4 to 8 bytes"
                },
            ));
        }
        hsm.verify_mac(&key, algorithm, padding_from_c(padding)?, data, mac)?;
        Ok(())
    })
}
