//! The per-record transform: one issuer record in, one XOF record or one reject out.
//!
//! Checks run on the clear value ([`validate`](crate::order::validate)); individually
//! encrypted fields are translated TK_issuer → DKep inside the HSM, the fields of a whole
//! batch of records in one [`Hsm::translate_batch`](crate::hsm::Hsm::translate_batch) call
//! (split to the backend's [`max_batch_items`](crate::hsm::Capabilities::max_batch_items)),
//! so that a backend that batches (the software HSM's bitsliced TDES) fills its lanes with
//! many records' fields side by side; clear fields are
//! encrypted under their DKep (AES-CBC or TDES-CBC, a fresh random IV each, ISO 9797-1
//! padding method 2); PIN blocks are translated from the issuer PIN key to the bureau PIN
//! key. Clear values live only in zeroizing buffers, wiped after each record.

use zeroize::{Zeroize, Zeroizing};

use super::Reject;
use super::plan::{Out, Plan};
use crate::hsm::{CipherSpec, PinSpec, TranslateItem};
use crate::order::issuer::RawRecord;
use crate::order::validate::{self, Check, Reason};
use crate::pinblock::Pan;
use crate::xof::write::Prepared;
use crate::xof::{AttrRef, Header};
use crate::{Error, Mode, Padding, Result};

/// Bytes of random IV per data attribute (the largest block; a TDES DKep uses the first 8).
const IV_SLOT: usize = 16;

/// What became of one record.
pub(super) enum Outcome {
    /// Ready for the XOF: the record's index in its batch's [`Prepared`] records.
    Written(usize),
    Rejected(Reject),
}

/// A batch of records transformed: what became of each record, in file order, the XOF
/// records prepared for the writer (formatted and checked, without seq and MAC), and per
/// attribute of the plan how many of them carry it.
pub(super) struct BatchOut {
    pub(super) outcomes: Vec<Outcome>,
    pub(super) records: Prepared,
    pub(super) attributes: Vec<u64>,
}

/// Per-worker buffers, reused across records; the clear part is wiped after each record.
#[derive(Default)]
pub(super) struct Scratch {
    /// Decoded ciphertexts under TK_issuer.
    ct: Vec<u8>,
    ct_span: Vec<Option<(usize, usize)>>,
    /// Clear values decrypted for a check or as the PAN of a PIN block.
    clear: Zeroizing<Vec<u8>>,
    clear_span: Vec<Option<(usize, usize)>>,
    /// The record's random IVs, one slot per data attribute (not secret: they go to the XOF).
    ivs: Vec<u8>,
    /// Per field: where its translation is in the batch's `translated`, or why it failed.
    translation: Vec<Option<Result<(usize, usize)>>>,
    /// Ciphertexts made for the record's attributes (clear fields encrypted under their
    /// DKep, PIN blocks), and per attribute: its field and where its ciphertext is.
    cts: Vec<u8>,
    attrs: Vec<(usize, Ct)>,
}

/// Where an attribute's ciphertext is.
#[derive(Clone, Copy)]
enum Ct {
    /// In the batch's translations.
    Translated(usize, usize),
    /// In the record's `cts`.
    Own(usize, usize),
}

/// Per-worker buffers for a batch of records: one [`Scratch`] per record, and the
/// ciphertexts under the DKeps from the batch translation.
#[derive(Default)]
pub(super) struct BatchScratch {
    records: Vec<Scratch>,
    translated: Vec<u8>,
    /// The batch's random IVs, drawn from the OS in one call.
    ivs: Vec<u8>,
}

impl Scratch {
    fn reset(&mut self, n: usize) {
        self.ct.clear();
        self.clear.zeroize();
        self.clear.clear();
        self.ct_span.clear();
        self.ct_span.resize(n, None);
        self.clear_span.clear();
        self.clear_span.resize(n, None);
        self.translation.clear();
        self.translation.resize_with(n, || None);
        self.cts.clear();
        self.attrs.clear();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.clear.zeroize();
    }
}

/// A field's own checks on its clear value: UTF-8 (the XOF holds text), its check, its
/// length in characters.
fn check_value(f: &super::plan::FieldPlan, v: &[u8]) -> core::result::Result<(), Reason> {
    if !f.encrypted && core::str::from_utf8(v).is_err() {
        return Err(Reason::FieldFormat);
    }
    if let Some(c) = &f.check {
        c.run(v)?;
    }
    if f.min_length.is_some() || f.max_length.is_some() {
        validate::check_length(v, f.min_length, f.max_length).map_err(|r| match r {
            Reason::FieldLength => Check::length_reason(f.check.as_ref()),
            r => r,
        })?;
    }
    Ok(())
}

impl Plan<'_> {
    /// A batch of records → one XOF record prepared for `header`'s writer (formatted,
    /// checked, MAC input ready; seq and MAC are the writer's), in `prepared` (emptied
    /// first: a spent batch's buffers are reused), or one reject each. `Err`
    /// only for failures that are not a record's fault (HSM refusals by policy, RNG).
    /// Every record is checked first, then the encrypted fields of all records that passed
    /// are translated together, then the records are assembled. The random IVs of the whole
    /// batch come from one call to the OS.
    pub(super) fn process_batch(
        &self,
        header: &Header,
        records: &[RawRecord],
        scratch: &mut BatchScratch,
        mut prepared: Prepared,
    ) -> Result<BatchOut> {
        if scratch.records.len() < records.len() {
            scratch.records.resize_with(records.len(), Scratch::default);
        }
        let per_record = self.data_attributes * IV_SLOT;
        scratch.ivs.clear();
        scratch.ivs.resize(records.len() * per_record, 0);
        crate::fill_random(&mut scratch.ivs)?;
        let mut early = Vec::with_capacity(records.len());
        for (r, (rec, s)) in records.iter().zip(scratch.records.iter_mut()).enumerate() {
            let ivs = &scratch.ivs[r * per_record..][..per_record];
            early.push(self.prepare(rec, s, ivs)?);
        }
        scratch.translated.clear();
        self.translate_fields(
            records
                .iter()
                .zip(&early)
                .zip(scratch.records.iter_mut())
                .filter_map(|((_, e), s)| e.is_none().then_some(s)),
            &mut scratch.translated,
        )?;
        let mut out = BatchOut {
            outcomes: Vec::with_capacity(records.len()),
            records: {
                prepared.clear();
                prepared
            },
            attributes: vec![0; self.attribute_names.len()],
        };
        for ((rec, e), s) in records.iter().zip(early).zip(scratch.records.iter_mut()) {
            let outcome = match e {
                Some(outcome) => outcome,
                None => self.finish(rec, s, &scratch.translated, header, &mut out)?,
            };
            out.outcomes.push(outcome);
        }
        for s in &mut scratch.records {
            s.clear.zeroize();
        }
        Ok(out)
    }

    /// The record's record id, or the reject for a record without a usable one.
    fn record_id<'r>(&self, rec: &'r RawRecord) -> core::result::Result<&'r str, Outcome> {
        let id = rec.field(self.id).and_then(|v| {
            if v.len() <= 64
                && v.iter().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/')
                })
            {
                core::str::from_utf8(v).ok()
            } else {
                None
            }
        });
        let reject = |id: Option<&str>, field: &str, reason| {
            Outcome::Rejected(Reject {
                number: rec.number,
                id: id.map(str::to_string),
                field: field.to_string(),
                reason,
            })
        };
        if let Some(reason) = rec.problem {
            let field = rec
                .problem_field
                .and_then(|i| self.fields.get(i))
                .map_or("-", |f| f.name.as_str());
            return Err(reject(id, field, reason));
        }
        id.ok_or_else(|| reject(None, &self.fields[self.id].name, Reason::RecordId))
    }

    /// Pass 1 of a record: presence, ciphertext shape, clear values where needed, checks,
    /// the random IVs. `Some` when the record is already decided (a reject).
    fn prepare(
        &self,
        rec: &RawRecord,
        scratch: &mut Scratch,
        ivs: &[u8],
    ) -> Result<Option<Outcome>> {
        let reject = |id: &str, field: &str, reason| {
            Ok(Some(Outcome::Rejected(Reject {
                number: rec.number,
                id: Some(id.to_string()),
                field: field.to_string(),
                reason,
            })))
        };
        scratch.reset(self.fields.len());
        let id = match self.record_id(rec) {
            Ok(id) => id,
            Err(outcome) => return Ok(Some(outcome)),
        };
        for (i, f) in self.fields.iter().enumerate() {
            let Some(v) = rec.field(i) else {
                if f.required {
                    return reject(id, &f.name, Reason::Missing);
                }
                continue;
            };
            if f.encrypted {
                let at = scratch.ct.len();
                let n = v.len() / 2;
                if v.len() % 2 != 0 || n % self.tk_block != 0 {
                    return reject(id, &f.name, Reason::CiphertextFormat);
                }
                scratch.ct.resize(at + n, 0);
                if hex::decode_to_slice(v, &mut scratch.ct[at..]).is_err() {
                    return reject(id, &f.name, Reason::CiphertextFormat);
                }
                scratch.ct_span[i] = Some((at, scratch.ct.len()));
                if f.need_clear {
                    let ct = &scratch.ct[at..];
                    let start = scratch.clear.len();
                    scratch.clear.resize(start + ct.len(), 0);
                    let spec = self.tk_spec().expect("checked by the product");
                    match self.hsm.decrypt(&spec, ct, &mut scratch.clear[start..]) {
                        Ok(n) => {
                            scratch.clear.truncate(start + n);
                            scratch.clear_span[i] = Some((start, start + n));
                        }
                        Err(Error::Crypto) => {
                            return reject(id, &f.name, Reason::FieldDecrypt);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            let clear = match scratch.clear_span[i] {
                Some((a, b)) => &scratch.clear[a..b],
                None => v,
            };
            let checked = if f.encrypted && !f.need_clear {
                Ok(())
            } else {
                check_value(f, clear)
            };
            if let Err(reason) = checked {
                // After decryption under TK_issuer, every failure is one reason: a report
                // that told bad padding from a bad format (not digits, length, Luhn) would
                // be a padding oracle on the issuer's ciphertext.
                let reason = if f.encrypted {
                    Reason::FieldDecrypt
                } else {
                    reason
                };
                return reject(id, &f.name, reason);
            }
        }
        // Cross-field checks, once every field has passed its own.
        for (i, f) in self.fields.iter().enumerate() {
            let Some((pan, expiry)) = f.track2 else {
                continue;
            };
            let clear = |k: usize| match scratch.clear_span[k] {
                Some((a, b)) => Some(&scratch.clear[a..b]),
                None if self.fields[k].encrypted => None,
                None => rec.field(k),
            };
            let Some(t2) = clear(i) else { continue };
            if let Err(reason) = validate::track2_matches(t2, clear(pan), clear(expiry)) {
                let reason = if f.encrypted {
                    Reason::FieldDecrypt
                } else {
                    reason
                };
                return reject(id, &f.name, reason);
            }
        }
        scratch.ivs.clear();
        scratch.ivs.extend_from_slice(ivs);
        Ok(None)
    }

    /// Pass 2 of a record that passed pass 1 and whose fields were translated: the
    /// attributes, in field order, formatted into the batch's prepared records (or the
    /// record's reject).
    fn finish(
        &self,
        rec: &RawRecord,
        scratch: &mut Scratch,
        translated: &[u8],
        header: &Header,
        out: &mut BatchOut,
    ) -> Result<Outcome> {
        let id = match self.record_id(rec) {
            Ok(id) => id,
            Err(outcome) => return Ok(outcome),
        };
        let reject = |field: &str, reason| {
            Ok(Outcome::Rejected(Reject {
                number: rec.number,
                id: Some(id.to_string()),
                field: field.to_string(),
                reason,
            }))
        };
        for (i, f) in self.fields.iter().enumerate() {
            let Some(v) = rec.field(i) else { continue };
            match &f.out {
                Out::None => {}
                Out::Data {
                    key,
                    block,
                    iv_slot,
                    ..
                } => {
                    let ct = match scratch.translation[i].take() {
                        Some(Ok((a, b))) => Ct::Translated(a, b),
                        Some(Err(Error::Crypto)) => {
                            return reject(&f.name, Reason::FieldDecrypt);
                        }
                        Some(Err(e)) => return Err(e),
                        None => {
                            let iv = &scratch.ivs[iv_slot * IV_SLOT..][..*block];
                            let to = CipherSpec::cbc(key, iv, Padding::Iso9797M2);
                            let at = scratch.cts.len();
                            let padded = Padding::Iso9797M2.padded_len(v.len(), *block);
                            scratch.cts.resize(at + padded, 0);
                            let n = self.hsm.encrypt(&to, v, &mut scratch.cts[at..])?;
                            scratch.cts.truncate(at + n);
                            Ct::Own(at, at + n)
                        }
                    };
                    scratch.attrs.push((i, ct));
                }
                Out::Pin { pan, .. } => {
                    let (Some((ik, ifmt)), Some((bk, bfmt, _))) =
                        (&self.issuer_pin, &self.bureau_pin)
                    else {
                        return Err(Error::invalid("product", "PIN keys missing"));
                    };
                    let pan_clear = match scratch.clear_span[*pan] {
                        Some((a, b)) => Some(&scratch.clear[a..b]),
                        None => rec.field(*pan),
                    };
                    let pan = match pan_clear
                        .and_then(|p| core::str::from_utf8(p).ok())
                        .and_then(|p| Pan::new(p).ok())
                    {
                        Some(p) => p,
                        None => return reject(&f.name, Reason::PinBlock),
                    };
                    let mut block = [0u8; 16];
                    let n = v.len() / 2;
                    if v.len() != ifmt.block_len() * 2
                        || hex::decode_to_slice(v, &mut block[..n]).is_err()
                    {
                        return reject(&f.name, Reason::PinBlock);
                    }
                    let r = self.hsm.translate_pin(
                        &PinSpec {
                            key: ik,
                            format: *ifmt,
                        },
                        &PinSpec {
                            key: bk,
                            format: *bfmt,
                        },
                        &pan,
                        &block[..n],
                    );
                    block.zeroize();
                    match r {
                        Ok(b) => {
                            let at = scratch.cts.len();
                            scratch.cts.extend_from_slice(&b);
                            scratch.attrs.push((i, Ct::Own(at, scratch.cts.len())));
                        }
                        Err(Error::Crypto) => {
                            return reject(&f.name, Reason::PinBlock);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        // `attrs` holds data and PIN fields only.
        let attrs: Vec<AttrRef<'_>> = scratch
            .attrs
            .iter()
            .filter_map(|&(i, ct)| {
                let ciphertext = match ct {
                    Ct::Translated(a, b) => &translated[a..b],
                    Ct::Own(a, b) => &scratch.cts[a..b],
                };
                match &self.fields[i].out {
                    Out::Data {
                        attribute,
                        label,
                        block,
                        iv_slot,
                        ..
                    } => Some(AttrRef {
                        name: attribute,
                        key: label,
                        mode: Mode::Cbc,
                        iv: Some(&scratch.ivs[iv_slot * IV_SLOT..][..*block]),
                        padding: Padding::Iso9797M2,
                        ciphertext,
                    }),
                    Out::Pin { attribute, .. } => Some(AttrRef {
                        name: attribute,
                        key: self.bureau_pin.as_ref().map_or("", |(_, _, l)| l.as_str()),
                        mode: Mode::Ecb,
                        iv: None,
                        padding: Padding::None,
                        ciphertext,
                    }),
                    Out::None => None,
                }
            })
            .collect();
        let n = out.records.push(header, id, &attrs);
        for &(i, _) in &scratch.attrs {
            if let Some(slot) = self.fields[i].attribute_slot {
                out.attributes[slot] += 1;
            }
        }
        Ok(Outcome::Written(n))
    }

    /// Translates every individually encrypted data field of the given records TK_issuer →
    /// DKep inside the HSM, all records' fields together in batches of at most
    /// `max_batch_items`, and notes per field where its output is in `out` or why it
    /// failed. A batch is all or nothing: when one fails cryptographically, its fields are
    /// translated one by one to tell which field is at fault (the reason reported is the
    /// same either way).
    fn translate_fields<'s>(
        &self,
        scratches: impl Iterator<Item = &'s mut Scratch>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(from) = self.tk_spec() else {
            return Ok(());
        };
        let mut scratches: Vec<&mut Scratch> = scratches.collect();
        // (record, field, block) per item, and the items.
        let mut fields = Vec::new();
        let mut items = Vec::new();
        for (r, scratch) in scratches.iter().enumerate() {
            for (i, f) in self.fields.iter().enumerate() {
                if let (
                    Out::Data {
                        key,
                        block,
                        iv_slot,
                        ..
                    },
                    Some((a, b)),
                ) = (&f.out, scratch.ct_span[i])
                {
                    fields.push((r, i, *block));
                    items.push(TranslateItem {
                        from,
                        to: CipherSpec::cbc(
                            key,
                            &scratch.ivs[iv_slot * IV_SLOT..][..*block],
                            Padding::Iso9797M2,
                        ),
                        data: &scratch.ct[a..b],
                    });
                }
            }
        }
        let mut results = Vec::with_capacity(items.len());
        for (items, fields) in items
            .chunks(self.max_batch_items)
            .zip(fields.chunks(self.max_batch_items))
        {
            let start = out.len();
            match self.hsm.translate_batch(items, out) {
                Ok(ends) => {
                    if ends.len() != items.len() {
                        return Err(Error::Integrity {
                            what: "HSM".into(),
                            reason: format!(
                                "a batch translation of {} fields returned {} outputs",
                                items.len(),
                                ends.len()
                            ),
                        });
                    }
                    let mut at = start;
                    for (&(r, i, _), end) in fields.iter().zip(ends) {
                        results.push((r, i, Ok((at, end))));
                        at = end;
                    }
                }
                Err(Error::Crypto) => {
                    out.truncate(start);
                    for (item, &(r, i, block)) in items.iter().zip(fields) {
                        let at = out.len();
                        out.resize(at + item.data.len() + 2 * block, 0);
                        let res = self
                            .hsm
                            .translate(&item.from, &item.to, item.data, &mut out[at..])
                            .map(|n| (at, at + n));
                        out.truncate(res.as_ref().map_or(at, |&(_, end)| end));
                        results.push((r, i, res));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        drop(items);
        for (r, i, res) in results {
            scratches[r].translation[i] = Some(res);
        }
        Ok(())
    }
}
