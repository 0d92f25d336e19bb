//! The canonical MAC inputs of XOF v1 (`docs/xof.md` §6). The MACs cover these bytes,
//! never the XML text, so that formatting (whitespace, attribute order, hex case, escapes)
//! does not matter and every field is length-prefixed (no two records share an input).

use crate::{Mode, Padding};

use super::{AttrRef, Attribute, Header};

/// Domain tags: a header, record or trailer input can never be taken for another.
const TAG_HEADER: &[u8] = b"XOF1-HDR";
const TAG_RECORD: &[u8] = b"XOF1-REC";
const TAG_TRAILER: &[u8] = b"XOF1-END";

/// A MAC value of the chain (AES-CMAC, 16 bytes).
pub(crate) type Mac16 = [u8; 16];

pub(crate) fn lp(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths are bounded far below 2^32 by the limits.
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

pub(crate) fn mode_code(m: Mode) -> u8 {
    match m {
        Mode::Ecb => 1,
        Mode::Cbc => 2,
    }
}

pub(crate) fn padding_code(p: Padding) -> u8 {
    match p {
        Padding::None => 0,
        Padding::Iso9797M1 => 1,
        Padding::Iso9797M2 => 2,
        Padding::Pkcs7 => 7,
    }
}

/// `"XOF1-HDR" || LP(version) || LP(order-id) || LP(issuer) || LP(product) || LP(created)
/// || LP(mac-key) || u32(n) || n × (LP(label) || LP(usage) || LP(algorithm) || LP(kcv))`,
/// followed by `LP("test") || LP("true")` when the header carries the TEST marker (absent
/// otherwise, so that a production header's input is unchanged).
pub(crate) fn header_input(out: &mut Vec<u8>, version: &str, h: &Header) {
    out.clear();
    out.extend_from_slice(TAG_HEADER);
    lp(out, version.as_bytes());
    lp(out, h.order_id.as_bytes());
    lp(out, h.issuer.as_bytes());
    lp(out, h.product.as_bytes());
    lp(out, h.created.as_bytes());
    lp(out, h.mac_key.as_bytes());
    out.extend_from_slice(&(h.keys.len() as u32).to_be_bytes());
    for k in &h.keys {
        lp(out, k.label.as_bytes());
        lp(out, k.usage.as_str().as_bytes());
        lp(out, k.algorithm.name().as_bytes());
        lp(out, k.kcv.as_bytes());
    }
    if h.test {
        lp(out, b"test");
        lp(out, b"true");
    }
}

/// `"XOF1-REC" || H || C(i-1) || u64(seq) || LP(issuer-id) || u32(n) || n × (LP(name) ||
/// LP(key) || u8(mode) || LP(iv or empty) || u8(padding) || LP(ciphertext))`.
pub(crate) fn record_input(
    out: &mut Vec<u8>,
    header_mac: &Mac16,
    prev: &Mac16,
    seq: u64,
    issuer_id: &str,
    attributes: &[Attribute],
) {
    out.clear();
    record_head(out, header_mac, prev, seq);
    record_tail(out, issuer_id, attributes.len());
    for a in attributes {
        attribute(out, &a.view());
    }
}

/// The record input's first part, which depends on the record's place in the file:
/// `"XOF1-REC" || H || C(i-1) || u64(seq)`.
pub(crate) fn record_head(out: &mut Vec<u8>, header_mac: &Mac16, prev: &Mac16, seq: u64) {
    out.extend_from_slice(TAG_RECORD);
    out.extend_from_slice(header_mac);
    out.extend_from_slice(prev);
    out.extend_from_slice(&seq.to_be_bytes());
}

/// The record input after the head, up to the attributes: `LP(issuer-id) || u32(n)`.
pub(crate) fn record_tail(out: &mut Vec<u8>, issuer_id: &str, attributes: usize) {
    lp(out, issuer_id.as_bytes());
    out.extend_from_slice(&(attributes as u32).to_be_bytes());
}

/// One attribute of the record input: `LP(name) || LP(key) || u8(mode) || LP(iv or empty)
/// || u8(padding) || LP(ciphertext)`.
pub(crate) fn attribute(out: &mut Vec<u8>, a: &AttrRef<'_>) {
    lp(out, a.name.as_bytes());
    lp(out, a.key.as_bytes());
    out.push(mode_code(a.mode));
    lp(out, a.iv.unwrap_or(&[]));
    out.push(padding_code(a.padding));
    lp(out, a.ciphertext);
}

/// `"XOF1-END" || H || C(n) || u64(n)`.
pub(crate) fn trailer_input(out: &mut Vec<u8>, header_mac: &Mac16, last: &Mac16, count: u64) {
    out.clear();
    out.extend_from_slice(TAG_TRAILER);
    out.extend_from_slice(header_mac);
    out.extend_from_slice(last);
    out.extend_from_slice(&count.to_be_bytes());
}
