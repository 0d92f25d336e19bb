//! The software HSM's data cryptography on loaded keys, once the policy has allowed the
//! operation: translation in one pass through a wiped scratch buffer and PIN block
//! translation.

use zeroize::{Zeroize, Zeroizing};

use super::store::Entry;
use crate::hsm::{CipherSpec, PinSpec};
use crate::pinblock::{self, Pan, PinBlockFormat};
use crate::{Algorithm, Error, Mode, Padding, Result};

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

/// The checks [`translate`] makes before decrypting, for one item of a batch: the target
/// IV, and a length that cannot fill whole target blocks when neither side pads.
fn precheck(b: &Entry, from: &CipherSpec<'_>, to: &CipherSpec<'_>, len: usize) -> Result<()> {
    // The messages do not matter: on any error the batch is redone item by item.
    let bs_to = b.cipher.block_size();
    let iv_ok = match (to.mode, to.iv) {
        (Mode::Cbc, Some(iv)) => iv.len() == bs_to,
        (Mode::Ecb, None) => true,
        _ => false,
    };
    let len_ok =
        from.padding != Padding::None || to.padding != Padding::None || len.is_multiple_of(bs_to);
    if iv_ok && len_ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "translate item",
            "see the item's own translation",
        ))
    }
}

/// Same key and same CBC direction: the items one `*_cbc_chains` call can take together.
fn same_key(x: &Entry, y: &Entry) -> bool {
    core::ptr::eq(x, y)
}

/// Translates a batch, each item as [`translate`] would, with the TDES work of all items
/// that share a key done together in the lanes of the bitsliced core: every CBC block of
/// every field under one source key is decrypted side by side, and the fields under one
/// target key are CBC-encrypted one per lane. AES and ECB items go one by one (AES-NI
/// needs no batching to be fast).
///
/// `keys[i]` are item `i`'s (source, target) entries, already allowed by the policy. Appends
/// the outputs to `out` and returns their end offsets. On any failure `out` is back to its
/// length on entry, every clear byte is wiped, and the error is returned; the caller then
/// redoes the batch item by item, so that the error and the audit entry name the item as
/// [`translate`] does.
pub(super) fn translate_batch(
    keys: &[(&Entry, &Entry)],
    items: &[crate::hsm::TranslateItem<'_>],
    out: &mut Vec<u8>,
) -> Result<Vec<usize>> {
    let start = out.len();
    let r = translate_batch_inner(keys, items, out, start);
    if r.is_err() {
        out[start..].zeroize();
        out.truncate(start);
    }
    r
}

fn translate_batch_inner(
    keys: &[(&Entry, &Entry)],
    items: &[crate::hsm::TranslateItem<'_>],
    out: &mut Vec<u8>,
    start: usize,
) -> Result<Vec<usize>> {
    for ((_, b), it) in keys.iter().zip(items) {
        precheck(b, &it.from, &it.to, it.data.len())?;
    }
    // Room for every output (padding adds at most one block), so that `out` never moves
    // (which would leave a copy of the clear text behind) while it holds clear text.
    let bound: usize = keys
        .iter()
        .zip(items)
        .map(|((_, b), it)| it.data.len() + b.cipher.block_size())
        .sum();
    out.reserve(bound);
    // Decrypt: all ciphertexts into one wiped scratch buffer, item i at offsets[i].
    let total: usize = items.iter().map(|it| it.data.len()).sum();
    let mut clear = Zeroizing::new(Vec::with_capacity(total));
    let mut offsets = Vec::with_capacity(items.len() + 1);
    for it in items {
        offsets.push(clear.len());
        clear.extend_from_slice(it.data);
    }
    offsets.push(clear.len());
    let mut done = vec![false; items.len()];
    {
        let mut regions = split_regions(&mut clear, &offsets);
        for i in 0..items.len() {
            if done[i] {
                continue;
            }
            let (a, _) = keys[i];
            let it = &items[i];
            let tdes_cbc =
                it.from.mode == Mode::Cbc && matches!(a.cipher.algorithm(), Algorithm::Tdes);
            if !tdes_cbc {
                a.cipher
                    .decrypt_blocks(it.from.mode, it.from.iv, regions[i])?;
                done[i] = true;
                continue;
            }
            // Every TDES-CBC item under the same key, from here on, in one call.
            let group: Vec<usize> = (i..items.len())
                .filter(|&j| !done[j] && items[j].from.mode == Mode::Cbc && same_key(keys[j].0, a))
                .collect();
            let mut chains = Vec::with_capacity(group.len());
            let mut rest: &mut [&mut [u8]] = &mut regions[..];
            let mut base = 0;
            for &j in &group {
                let (_, tail) = core::mem::take(&mut rest).split_at_mut(j - base);
                let (one, tail) = tail.split_first_mut().expect("index in range");
                chains.push(crate::CbcChain {
                    iv: items[j]
                        .from
                        .iv
                        .ok_or_else(|| Error::invalid("IV", "CBC needs an IV"))?,
                    data: one,
                });
                rest = tail;
                base = j + 1;
                done[j] = true;
            }
            a.cipher.decrypt_cbc_chains(&mut chains)?;
        }
    }
    // Padding off, padding on: each item's clear text goes to its place in `out`, padded
    // for its target. Past the decryption every failure is the opaque one.
    let mut ends = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let (a, b) = keys[i];
        let region = &clear[offsets[i]..offsets[i + 1]];
        let n = it.from.padding.unpad(region, a.cipher.block_size())?;
        let bs_to = b.cipher.block_size();
        let padded = it.to.padding.padded_len(n, bs_to);
        let at = out.len();
        out.resize(at + padded, 0);
        out[at..at + n].copy_from_slice(&region[..n]);
        it.to
            .padding
            .pad(&mut out[at..], n, bs_to)
            .map_err(|_| Error::Crypto)?;
        ends.push(out.len());
    }
    drop(clear);
    // Encrypt in place in `out`.
    let mut bounds = Vec::with_capacity(items.len() + 1);
    bounds.push(0);
    bounds.extend(ends.iter().map(|e| e - start));
    let mut regions = split_regions(&mut out[start..], &bounds);
    let mut done = vec![false; items.len()];
    for i in 0..items.len() {
        if done[i] {
            continue;
        }
        let (_, b) = keys[i];
        let it = &items[i];
        let tdes_cbc = it.to.mode == Mode::Cbc && matches!(b.cipher.algorithm(), Algorithm::Tdes);
        if !tdes_cbc {
            b.cipher
                .encrypt_blocks(it.to.mode, it.to.iv, regions[i])
                .map_err(|_| Error::Crypto)?;
            done[i] = true;
            continue;
        }
        let group: Vec<usize> = (i..items.len())
            .filter(|&j| !done[j] && items[j].to.mode == Mode::Cbc && same_key(keys[j].1, b))
            .collect();
        let mut chains = Vec::with_capacity(group.len());
        let mut rest: &mut [&mut [u8]] = &mut regions[..];
        let mut base = 0;
        for &j in &group {
            let (_, tail) = core::mem::take(&mut rest).split_at_mut(j - base);
            let (one, tail) = tail.split_first_mut().expect("index in range");
            chains.push(crate::CbcChain {
                iv: items[j].to.iv.ok_or(Error::Crypto)?,
                data: one,
            });
            rest = tail;
            base = j + 1;
            done[j] = true;
        }
        b.cipher
            .encrypt_cbc_chains(&mut chains)
            .map_err(|_| Error::Crypto)?;
    }
    Ok(ends)
}

/// `buf` cut at `bounds` (ascending, first 0, last `buf.len()`) into one slice per region.
fn split_regions<'b>(buf: &'b mut [u8], bounds: &[usize]) -> Vec<&'b mut [u8]> {
    let mut regions = Vec::with_capacity(bounds.len().saturating_sub(1));
    let mut rest = buf;
    for w in bounds.windows(2) {
        let (one, tail) = core::mem::take(&mut rest).split_at_mut(w[1] - w[0]);
        regions.push(one);
        rest = tail;
    }
    regions
}
