//! End-to-end check of an XOF against the cards the issuer sent. Test tooling only: it
//! forms a PIN check key from components it chose and decodes every PIN to compare it.

use std::path::Path;

use pmp_core::hsm::{CipherSpec, Hsm, KeyHandle, KeySpec, PinSpec};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::pinblock::{self, Pan, PinBlockFormat};
use pmp_core::xof::Reader;
use pmp_core::{Algorithm, Error, Result, SecretKey};
use zeroize::Zeroizing;

use crate::cards::Card;
use crate::labels;

/// Reads the XOF back through the HSM and compares every attribute with the cards the
/// issuer sent: each data attribute is decrypted under its DKep and compared; defective
/// cards must be absent. No HSM call returns a clear PIN, so each PIN block is translated
/// (bureau PIN key, ISO 4) to a temporary check key formed here from components the
/// verifier knows, decoded with that key and compared with the card's PIN; the check key is
/// deleted afterwards. Returns the number of records compared.
pub fn verify_against(
    hsm: &dyn Hsm,
    xof_path: &Path,
    cards: impl Iterator<Item = Card>,
) -> Result<u64> {
    let f = std::fs::File::open(xof_path).map_err(|e| Error::io(xof_path, e))?;
    let mut r = Reader::new(std::io::BufReader::new(f), hsm)?;
    let mismatch = |what: String| Error::Integrity {
        what: xof_path.display().to_string(),
        reason: what,
    };
    // A PIN check key whose clear value only this function knows (the XOR of two random
    // components), so the PIN blocks can be checked end to end.
    let check_key = SecretKey::generate(Algorithm::Aes, 16)?;
    let c1 = SecretKey::generate(Algorithm::Aes, 16)?;
    let c2: Zeroizing<Vec<u8>> = Zeroizing::new(
        c1.expose_secret()
            .iter()
            .zip(check_key.expose_secret())
            .map(|(a, b)| a ^ b)
            .collect(),
    );
    let mut tag = [0u8; 6];
    pmp_core::fill_random(&mut tag)?;
    let check_label = format!("VERIFY-PIN-{}", hex::encode_upper(tag));
    let check = hsm
        .form_key_from_components(
            &KeySpec::new(&check_label, Algorithm::Aes, 16, KeyUsage::P0, ModeOfUse::E),
            &[c1.expose_secret(), &c2],
            &[],
            Some(&check_key.kcv()),
        )?
        .handle;
    let result = compare_records(hsm, &mut r, cards, &check, &check_key, &mismatch);
    let deleted = hsm.delete_key(&check);
    let n = result?;
    deleted?;
    if r.next_record()?.is_some() {
        return Err(mismatch("more records than expected".into()));
    }
    Ok(n)
}

fn compare_records(
    hsm: &dyn Hsm,
    r: &mut Reader<'_, std::io::BufReader<std::fs::File>>,
    cards: impl Iterator<Item = Card>,
    check: &KeyHandle,
    check_key: &SecretKey,
    mismatch: &dyn Fn(String) -> Error,
) -> Result<u64> {
    let mut n = 0;
    for c in cards.filter(|c| c.defect.is_none()) {
        let rec = r
            .next_record()?
            .ok_or_else(|| mismatch(format!("record {} is missing", c.id)))?;
        if rec.issuer_id != c.id {
            return Err(mismatch(format!(
                "expected record {}, found {}",
                c.id, rec.issuer_id
            )));
        }
        let expected: [(&str, &str); 9] = [
            ("PAN", &c.pan),
            ("EXPIRY", &c.expiry),
            ("SERVICE_CODE", &c.service_code),
            ("NAME", &c.name),
            ("TRACK2", &c.track2),
            ("PIN_BLOCK", ""),
            ("ADDRESS1", &c.address),
            ("CITY", &c.city),
            ("POSTCODE", &c.postcode),
        ];
        if rec.attributes.len() != expected.len() {
            return Err(mismatch(format!("record {}: wrong attribute count", c.id)));
        }
        for (a, (name, value)) in rec.attributes.iter().zip(expected) {
            if a.name != name {
                return Err(mismatch(format!(
                    "record {}: attribute {} out of order",
                    c.id, a.name
                )));
            }
            if name == "PIN_BLOCK" {
                if a.ciphertext.len() != 16 || a.key != labels::BUREAU_PIN {
                    return Err(mismatch(format!("record {}: PIN block", c.id)));
                }
                let pan = Pan::new(&c.pan)?;
                let bureau = hsm.find_key(&a.key)?;
                let moved = hsm.translate_pin(
                    &PinSpec {
                        key: &bureau,
                        format: PinBlockFormat::Iso4,
                    },
                    &PinSpec {
                        key: check,
                        format: PinBlockFormat::Iso4,
                    },
                    &pan,
                    &a.ciphertext,
                )?;
                let pin = pinblock::decode_iso4(check_key, &moved, &pan)?;
                if pin.expose_secret() != c.pin {
                    return Err(mismatch(format!("record {}: PIN differs", c.id)));
                }
                continue;
            }
            let key = hsm.find_key(&a.key)?;
            let mut out = Zeroizing::new(vec![0u8; a.ciphertext.len()]);
            let spec = CipherSpec {
                key: &key,
                mode: a.mode,
                iv: a.iv.as_deref(),
                padding: a.padding,
            };
            let m = hsm.decrypt(&spec, &a.ciphertext, &mut out)?;
            if out[..m] != *value.as_bytes() {
                return Err(mismatch(format!(
                    "record {}: attribute {} differs",
                    c.id, name
                )));
            }
        }
        n += 1;
    }
    Ok(n)
}
