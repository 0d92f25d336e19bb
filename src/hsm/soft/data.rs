//! The software HSM's data cryptography on loaded keys, once the policy has allowed the
//! operation: translation in one pass through a wiped scratch buffer, PIN block
//! translation, and the parallel CBC decryption of a whole file.

use zeroize::{Zeroize, Zeroizing};

use super::store::Entry;
use crate::hsm::{CipherSpec, PinSpec};
use crate::pinblock::{self, Pan, PinBlockFormat};
use crate::{Algorithm, BlockCipher, Error, Mode, Padding, Result};

/// `Ok` when key `e` is of algorithm `alg` (which `what` needs), else a policy refusal.
pub(super) fn check_alg(e: &Entry, alg: Algorithm, what: &str) -> Result<()> {
    if e.spec.algorithm == alg {
        Ok(())
    } else {
        Err(Error::Policy(format!(
            "key '{}' is {}, {what} needs {alg}",
            e.spec.label, e.spec.algorithm
        )))
    }
}

/// Decrypts `data` under `a` (as `from` says) and encrypts it under `b` (as `to` says) into
/// `out`; the clear text lives only in a scratch buffer wiped before returning.
pub(super) fn translate(
    a: &Entry,
    b: &Entry,
    from: &CipherSpec<'_>,
    to: &CipherSpec<'_>,
    data: &[u8],
    out: &mut [u8],
) -> Result<usize> {
    // What can be checked without the plaintext is checked before decrypting: the output
    // capacity for the longest possible result, the target IV, and a length that cannot fit
    // the target block when neither side pads.
    let bs_to = b.cipher.block_size();
    let needed = to.padding.padded_len(data.len(), bs_to);
    if out.len() < needed {
        return Err(Error::BufferTooSmall {
            needed,
            got: out.len(),
        });
    }
    match (to.mode, to.iv) {
        (Mode::Cbc, Some(iv)) if iv.len() == bs_to => {}
        (Mode::Ecb, None) => {}
        _ => {
            return Err(Error::invalid(
                "IV",
                format!(
                    "the target ({}) needs a {bs_to}-byte IV for CBC and none for ECB",
                    to.mode
                ),
            ));
        }
    }
    if from.padding == Padding::None
        && to.padding == Padding::None
        && !data.len().is_multiple_of(bs_to)
    {
        return Err(Error::invalid(
            "data length",
            format!(
                "{} bytes do not fill whole {bs_to}-byte target blocks and no padding was asked for",
                data.len()
            ),
        ));
    }
    // Small fields (the common case: PAN, expiry, track data) stay in a small stack buffer
    // (a large one costs more to initialise than the cipher work); larger fields use a
    // zeroizing heap buffer. Only the bytes used are wiped afterwards (on success and on
    // failure): zeroizing the whole scratch area would cost more than the cipher work for a
    // 32-byte field.
    let mut stack = [0u8; 64];
    let mut heap: Option<Zeroizing<Vec<u8>>> = None;
    let clear: &mut [u8] = if data.len() <= stack.len() {
        &mut stack[..data.len()]
    } else {
        heap.insert(Zeroizing::new(vec![0u8; data.len()]))
    };
    let r = a
        .cipher
        .decrypt(from.mode, from.iv, from.padding, data, clear)
        .and_then(|n| {
            // Past the decryption, every failure is the opaque one: a specific error here
            // (length, buffer size) would reveal the plaintext length, i.e. where the
            // padding was.
            b.cipher
                .encrypt(to.mode, to.iv, to.padding, &clear[..n], out)
                .map_err(|_| Error::Crypto)
        });
    clear.zeroize();
    r
}

/// Translates a PIN block from key `a` / format `from.format` to key `b` / `to.format` with
/// `pan`. The format policy and the key algorithms are checked first; after that every
/// failure is the same opaque [`Error::Crypto`].
pub(super) fn translate_pin(
    a: &Entry,
    b: &Entry,
    from: &PinSpec<'_>,
    to: &PinSpec<'_>,
    pan: &Pan,
    block: &[u8],
) -> Result<Vec<u8>> {
    pinblock::check_translation(from.format, to.format)?;
    for (e, f) in [(a, from.format), (b, to.format)] {
        match f {
            PinBlockFormat::Iso4 => check_alg(e, Algorithm::Aes, "ISO format 4")?,
            _ => check_alg(e, Algorithm::Tdes, "ISO formats 0, 1 and 3")?,
        }
    }
    let pin = decode_pin(a, from.format, pan, block)?;
    match to.format {
        PinBlockFormat::Iso4 => pinblock::encode_iso4(&b.key, &pin, pan).map(|blk| blk.to_vec()),
        f => {
            let mut clear = pinblock::encode(f, &pin, Some(pan))?;
            b.cipher.encrypt_ecb(&mut clear[..])?;
            Ok(clear.to_vec())
        }
    }
    .map_err(|_| Error::Crypto)
}

/// Deciphers and decodes a PIN block under `a` in `format` (0, 1, 3 or 4) with `pan`; any
/// failure is the opaque [`Error::Crypto`]. Also used for card PIN blocks (`emv.rs`).
pub(super) fn decode_pin(
    a: &Entry,
    format: PinBlockFormat,
    pan: &Pan,
    block: &[u8],
) -> Result<pinblock::Pin> {
    match format {
        PinBlockFormat::Iso4 => pinblock::decode_iso4(&a.key, block, pan),
        f => {
            let mut clear = Zeroizing::new([0u8; 8]);
            if block.len() != 8 {
                return Err(Error::Crypto);
            }
            clear.copy_from_slice(block);
            a.cipher.decrypt_ecb(&mut clear[..])?;
            pinblock::decode(f, &clear[..], Some(pan))
        }
    }
    .map_err(|_| Error::Crypto)
}

/// CBC decryption is parallel (each block needs only its own and the previous ciphertext
/// block): a large chunk is split in two halves decrypted on two threads when the machine
/// has more than one core, so that the single stream of a whole-file import does not tie
/// the import to one core.
pub(super) fn parallel_cbc_decrypt(cipher: &BlockCipher, iv: &[u8], buf: &mut [u8]) -> Result<()> {
    const MIN_SPLIT: usize = 16 * 1024;
    let bs = cipher.block_size();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if buf.len() < MIN_SPLIT || cores < 2 || !buf.len().is_multiple_of(bs) {
        return cipher.decrypt_cbc(iv, buf);
    }
    let half = buf.len() / bs / 2 * bs;
    let mut iv2 = [0u8; 16];
    iv2[..bs].copy_from_slice(&buf[half - bs..half]);
    let (a, b) = buf.split_at_mut(half);
    std::thread::scope(|s| {
        let h = s.spawn(|| cipher.decrypt_cbc(&iv2[..bs], b));
        let ra = cipher.decrypt_cbc(iv, a);
        let rb = h.join().unwrap_or(Err(Error::Crypto));
        ra.and(rb)
    })
}
