//! The canonical MAC inputs of a production file (`docs/production.md` §6), built like the
//! XOF's (`LP` fields from `xof::canon`, domain tags, the chain): the MACs cover these bytes,
//! never the XML text.

use crate::xof::canon::{Mac16, lp};

use super::{Dgi, Header};
use crate::{Mode, Padding};

const TAG_HEADER: &[u8] = b"PRD1-HDR";
const TAG_CARD: &[u8] = b"PRD1-CRD";
const TAG_TRAILER: &[u8] = b"PRD1-END";

/// `"PRD1-HDR" || LP(version) || LP(order-id) || LP(issuer) || LP(product) || LP(profile)
/// || LP(created) || LP(mac-key) || u32(n) || n × (LP(label) || LP(usage) || LP(algorithm)
/// || LP(kcv))`, then `LP("test") || LP("true")` when the header carries the TEST marker.
pub(crate) fn header_input(out: &mut Vec<u8>, version: &str, h: &Header) {
    out.clear();
    out.extend_from_slice(TAG_HEADER);
    lp(out, version.as_bytes());
    lp(out, h.order_id.as_bytes());
    lp(out, h.issuer.as_bytes());
    lp(out, h.product.as_bytes());
    lp(out, h.profile.as_bytes());
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

/// `"PRD1-CRD" || H || C(i-1) || u64(seq) || LP(id) || u32(n) || n × (u16(dgi) || LP(key
/// or empty) || u8(mode: 0 clear, 1 ECB, 2 CBC) || LP(iv or empty) || u8(padding: 0 none,
/// 2) || LP(data))`.
pub(crate) fn card_input(
    out: &mut Vec<u8>,
    header_mac: &Mac16,
    prev: &Mac16,
    seq: u64,
    id: &str,
    dgis: &[Dgi],
) {
    out.clear();
    out.extend_from_slice(TAG_CARD);
    out.extend_from_slice(header_mac);
    out.extend_from_slice(prev);
    out.extend_from_slice(&seq.to_be_bytes());
    lp(out, id.as_bytes());
    out.extend_from_slice(&(dgis.len() as u32).to_be_bytes());
    for d in dgis {
        out.extend_from_slice(&d.id.to_be_bytes());
        match &d.protection {
            None => {
                lp(out, b"");
                out.push(0);
                lp(out, b"");
                out.push(0);
            }
            Some(p) => {
                lp(out, p.key.as_bytes());
                out.push(match p.mode {
                    Mode::Ecb => 1,
                    Mode::Cbc => 2,
                });
                lp(out, p.iv.as_deref().unwrap_or(&[]));
                out.push(if p.padding == Padding::Iso9797M2 {
                    2
                } else {
                    0
                });
            }
        }
        lp(out, &d.data);
    }
}

/// `"PRD1-END" || H || C(n) || u64(n)`.
pub(crate) fn trailer_input(out: &mut Vec<u8>, header_mac: &Mac16, last: &Mac16, count: u64) {
    out.clear();
    out.extend_from_slice(TAG_TRAILER);
    out.extend_from_slice(header_mac);
    out.extend_from_slice(last);
    out.extend_from_slice(&count.to_be_bytes());
}
