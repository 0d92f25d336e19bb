//! SoftHsm's EMV operations: ICC master-key derivation under a KTK and PIN blocks for card
//! loading under a PTK (see [`Hsm::derive_icc_master_keys`](crate::hsm::Hsm::derive_icc_master_keys)
//! and [`Hsm::translate_pin_for_card`](crate::hsm::Hsm::translate_pin_for_card)). The
//! clear ICC master keys and the clear PIN exist only in wiped buffers inside these
//! functions.

use zeroize::Zeroizing;

use super::SoftHsm;
use super::data::{check_alg, decode_pin};
use super::store::Entry;
use super::usage::Counted;
use crate::hsm::emv::{IccKeyRequest, IccKeyRole, IccMasterKeys, derive_with};
use crate::hsm::policy::{self, Operation};
use crate::hsm::{KeyHandle, PinSpec};
use crate::pinblock::{self, Pan, PinBlockFormat};
use crate::{Algorithm, Error, Result};

fn check(op: Operation, e: &Entry) -> Result<()> {
    policy::check(op, &e.spec.label, e.spec.usage, e.spec.mode_of_use)
}

impl SoftHsm {
    pub(super) fn emv_derive_icc_master_keys(
        &self,
        req: &IccKeyRequest<'_>,
    ) -> Result<IccMasterKeys> {
        let table = self.keys.read();
        let imks = [
            table.get(req.imks[0])?,
            table.get(req.imks[1])?,
            table.get(req.imks[2])?,
        ];
        let ktk = table.get(req.ktk)?;
        let r = (|| {
            for (e, role) in imks.iter().zip(IccKeyRole::all()) {
                check(Operation::DeriveIccKey, e)?;
                if e.spec.usage != role.usage() {
                    return Err(Error::Policy(format!(
                        "key '{}' has usage {}, but {} must be {}",
                        e.spec.label,
                        e.spec.usage,
                        role.name(),
                        role.usage()
                    )));
                }
            }
            check(Operation::Wrap, ktk)?;
            let alg = imks[0].spec.algorithm;
            if imks
                .iter()
                .any(|e| e.spec.algorithm != alg || e.key.len() != imks[0].key.len())
            {
                return Err(Error::invalid(
                    "issuer master keys",
                    "IMK-AC, IMK-SMI and IMK-SMC must have the same algorithm and length",
                ));
            }
            if alg == Algorithm::Aes && ktk.spec.algorithm == Algorithm::Tdes {
                return Err(Error::Policy(format!(
                    "KTK '{}' is TDES: AES ICC master keys go only under an AES KTK",
                    ktk.spec.label
                )));
            }
            let method = req.derivation.resolve(alg, req.pan.as_str().len())?;
            let mut buf = Zeroizing::new(Vec::with_capacity(96));
            let mut kcvs = Vec::with_capacity(3);
            for e in imks {
                let mk = derive_with(&e.cipher, e.key.len(), req.derivation, req.pan, req.psn)?;
                kcvs.push(mk.kcv());
                buf.extend_from_slice(mk.expose_secret());
            }
            let bs = ktk.cipher.block_size();
            if !buf.len().is_multiple_of(bs) {
                return Err(Error::invalid(
                    "KTK",
                    format!(
                        "three {}-byte keys do not fill whole {bs}-byte blocks of KTK '{}'",
                        buf.len() / 3,
                        ktk.spec.label
                    ),
                ));
            }
            ktk.cipher.encrypt_ecb(&mut buf[..])?;
            let kcvs: [crate::Kcv; 3] = kcvs.try_into().map_err(|_| Error::Crypto)?;
            Ok(IccMasterKeys {
                encrypted: buf.to_vec(),
                kcvs,
                method,
            })
        })();
        match r {
            Ok(v) => {
                for e in imks.iter().chain([&ktk]) {
                    e.usage.add(Counted::DeriveIcc);
                }
                Ok(v)
            }
            Err(e) => self.data_failure("derive-icc", &[imks[0], imks[1], imks[2], ktk], e),
        }
    }

    pub(super) fn emv_translate_pin_for_card(
        &self,
        from: &PinSpec<'_>,
        ptk: &KeyHandle,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        let a = self.keys.entry(from.key)?;
        let b = self.keys.entry(ptk)?;
        let r = (|| {
            check(Operation::PinDecrypt, &a)?;
            policy::check_card_pin_key(
                &b.spec.label,
                b.spec.usage,
                b.spec.mode_of_use,
                b.spec.exportability,
            )?;
            match from.format {
                PinBlockFormat::Iso2 => {
                    return Err(Error::Policy(
                        "format 2 is never a source: it carries no PAN and exists only for loading a card".into(),
                    ));
                }
                PinBlockFormat::Iso4 => check_alg(&a, Algorithm::Aes, "ISO format 4")?,
                _ => check_alg(&a, Algorithm::Tdes, "ISO formats 0, 1 and 3")?,
            }
            // From here on, every failure is the same opaque error.
            let pin = decode_pin(&a, from.format, pan, block)?;
            let card =
                pinblock::encode(PinBlockFormat::Iso2, &pin, None).map_err(|_| Error::Crypto)?;
            let mut out = Zeroizing::new([0u8; 16]);
            out[..8].copy_from_slice(&card[..]);
            let n = match b.spec.algorithm {
                Algorithm::Tdes => 8,
                Algorithm::Aes => {
                    // ISO/IEC 9797-1 padding method 2 to one AES block.
                    out[8] = 0x80;
                    16
                }
            };
            b.cipher
                .encrypt_ecb(&mut out[..n])
                .map_err(|_| Error::Crypto)?;
            Ok(out[..n].to_vec())
        })();
        match r {
            Ok(v) => {
                a.usage.add(Counted::PinTranslate);
                Ok(v)
            }
            Err(e) => self.data_failure("translate-pin-for-card", &[&a, &b], e),
        }
    }
}
