//! SoftHsm's RSA keys ([`crate::hsm::rsa`]): issuer key pairs (usage `S0`, mode `S`: they
//! only sign EMV messages in the recovery format), stored like every key in
//! `DIR/keys/<label>.kb` but as a version D key block of algorithm `R` under the LMK whose
//! payload is the private key's PKCS#1 DER (label, store id, origin bound; listed in the
//! manifest, so the store's tamper checks cover them); ICC key pairs made per card, from the
//! pool (`rsa_pool.rs`) or in line, whose CRT parts leave only under a KTK.
//!
//! In place of a KCV, an RSA key is named by the SHA-1 of its modulus (big-endian, no
//! leading zero byte), 40 hex digits: in the audit log (`sha1=`) and in `pmp key list`.

use std::sync::Arc;

use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::SoftHsm;
use super::store::Entry;
use super::usage::{Counted, Usage};
use crate::hsm::policy::{self, Operation};
use crate::hsm::rsa::{IccPoolLevel, IccRsaKey, IccRsaRequest, RsaKeyInfo, RsaKeySpec};
use crate::hsm::{KeyHandle, KeyOrigin};
use crate::keyblock::{self, KeyAlgorithm, KeyUsage, ModeOfUse};
use crate::rsa::{RsaExponent, RsaPrivateKey, RsaPublicKey, check_emv_bits};
use crate::{Error, Padding, Result};

/// One loaded RSA key pair: handle, attributes, public half, private key (zeroized on drop
/// by the `rsa` crate), origin and usage counters.
pub(super) struct RsaEntry {
    pub(super) handle: KeyHandle,
    pub(super) spec: RsaKeySpec,
    pub(super) public: RsaPublicKey,
    pub(super) key: RsaPrivateKey,
    pub(super) origin: KeyOrigin,
    pub(super) usage: Usage,
}

impl RsaEntry {
    pub(super) fn new(
        handle: KeyHandle,
        spec: RsaKeySpec,
        key: RsaPrivateKey,
        origin: KeyOrigin,
    ) -> Self {
        Self {
            handle,
            spec,
            public: key.public_key(),
            key,
            origin,
            usage: Usage::default(),
        }
    }

    /// What the HSM reports: never the private key.
    pub(super) fn info(&self) -> RsaKeyInfo {
        RsaKeyInfo {
            handle: self.handle.clone(),
            spec: self.spec.clone(),
            public: self.public.clone(),
        }
    }

    /// The SHA-1 of the modulus, 40 uppercase hex digits.
    pub(super) fn fingerprint(&self) -> String {
        fingerprint(&self.public)
    }
}

/// The SHA-1 of a public key's modulus (big-endian, no leading zero byte), 40 uppercase hex
/// digits: what names an RSA key where a symmetric key shows its KCV.
pub fn fingerprint(public: &RsaPublicKey) -> String {
    hex::encode_upper(Sha1::digest(public.modulus()))
}

/// Security strength in bits of an RSA modulus of `bits` bits (NIST SP 800-57 Part 1
/// Rev. 5 table 2: 1024 → 80, 2048 → 112, 3072 → 128); EMV lengths are all 80.
fn rsa_strength_bits(bits: u32) -> usize {
    match bits {
        0..2048 => 80,
        2048..3072 => 112,
        _ => 128,
    }
}

fn check_s0(label: &str, usage: KeyUsage) -> Result<()> {
    if usage == KeyUsage::S0 {
        Ok(())
    } else {
        Err(Error::Policy(format!(
            "RSA key '{label}' has usage {usage}; only S0 (digital signature) is offered"
        )))
    }
}

/// The most pairs one [`Hsm::fill_icc_key_pool`](crate::hsm::Hsm::fill_icc_key_pool) call
/// adds.
const MAX_FILL: u64 = 1_000_000;

/// Generates `count` key pairs side by side on the machine's cores.
pub(super) fn generate_many(
    bits: u32,
    exponent: RsaExponent,
    count: usize,
) -> Result<Vec<RsaPrivateKey>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, count.max(1));
    let per = count.div_ceil(threads);
    let results: Vec<Result<Vec<RsaPrivateKey>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = per.min(count.saturating_sub(t * per));
                s.spawn(move || {
                    (0..n)
                        .map(|_| RsaPrivateKey::generate(bits, exponent))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::invalid("RSA key generation", "a worker panicked"))
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(count);
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

impl SoftHsm {
    pub(super) fn rsa_generate(&self, spec: &RsaKeySpec) -> Result<RsaKeyInfo> {
        let r = (|| {
            crate::label::check(&spec.label, "label")?;
            check_s0(&spec.label, spec.usage)?;
            check_emv_bits(spec.bits)?;
            // Fail fast on a used label, before the slow generation (checked again when
            // the key is stored).
            if self.keys.read().find_handle(&spec.label).is_ok() {
                return Err(Error::AlreadyExists(format!(
                    "label '{}' is in use",
                    spec.label
                )));
            }
            let key = RsaPrivateKey::generate(spec.bits, spec.exponent)?;
            self.keys
                .add_rsa(&self.lmk, spec.clone(), key, KeyOrigin::Generated)
        })();
        self.logged(
            &format!(
                "op=generate-rsa key={} bits={} e={} usage={} mode=S{}",
                spec.label,
                spec.bits,
                spec.exponent,
                spec.usage,
                r.as_ref()
                    .map(|i| format!(" sha1={}", fingerprint(&i.public)))
                    .unwrap_or_default()
            ),
            r,
        )
    }

    pub(super) fn rsa_import(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
    ) -> Result<RsaKeyInfo> {
        let r = (|| {
            crate::label::check(label, "label")?;
            let k = self.keys.entry(kek)?;
            policy::check(
                Operation::Unwrap,
                &k.spec.label,
                k.spec.usage,
                k.spec.mode_of_use,
            )?;
            let header = keyblock::inspect(block.trim())?;
            if header.algorithm != KeyAlgorithm::Rsa {
                return Err(Error::Unsupported(format!(
                    "key block algorithm {} ({}): this imports RSA (R) key blocks",
                    header.algorithm,
                    header.algorithm.description()
                )));
            }
            check_s0(label, header.usage)?;
            if !matches!(header.mode_of_use, ModeOfUse::S | ModeOfUse::N) {
                return Err(Error::Policy(format!(
                    "RSA key block mode of use {}: an issuer key signs only (S, or N)",
                    header.mode_of_use
                )));
            }
            let (header, der) = keyblock::unwrap_asymmetric(
                &k.key,
                block.trim(),
                &keyblock::UnwrapPolicy {
                    allow_legacy: false,
                },
            )?;
            let key = RsaPrivateKey::from_der(&der)?;
            let bits = key.public_key().bits();
            if keyblock::key_strength_bits(&k.key) < rsa_strength_bits(bits) {
                return Err(Error::Policy(format!(
                    "KEK '{}' is weaker than the RSA key it protects",
                    k.spec.label
                )));
            }
            let spec = RsaKeySpec {
                label: label.to_string(),
                bits,
                exponent: key.exponent(),
                usage: header.usage,
            };
            self.keys.add_rsa(
                &self.lmk,
                spec,
                key,
                KeyOrigin::Imported {
                    kek: k.spec.label.clone(),
                },
            )
        })();
        self.logged(
            &format!(
                "op=import-rsa key={label} kek={}{}",
                kek.label(),
                r.as_ref()
                    .map(|i| format!(
                        " bits={} e={} usage={} sha1={}",
                        i.spec.bits,
                        i.spec.exponent,
                        i.spec.usage,
                        fingerprint(&i.public)
                    ))
                    .unwrap_or_default()
            ),
            r,
        )
    }

    pub(super) fn rsa_info(&self, key: &KeyHandle) -> Result<RsaKeyInfo> {
        self.keys.read().get_rsa(key).map(|e| e.info())
    }

    pub(super) fn rsa_list(&self) -> Vec<RsaKeyInfo> {
        let mut v: Vec<RsaKeyInfo> = self.keys.read().live_rsa().map(|e| e.info()).collect();
        v.sort_by(|a, b| a.spec.label.cmp(&b.spec.label));
        v
    }

    pub(super) fn rsa_entry(&self, key: &KeyHandle) -> Result<Arc<RsaEntry>> {
        self.keys.read().get_rsa(key).cloned()
    }

    pub(super) fn rsa_sign(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>> {
        let r = self.rsa_entry(key).and_then(|e| {
            check_s0(&e.spec.label, e.spec.usage)?;
            crate::hsm::rsa::check_recovery_format(message, e.public.len())?;
            let s = e.key.private_op(message)?;
            e.usage.add(Counted::Sign);
            Ok(s)
        });
        if r.is_err() {
            let _ = self
                .audit
                .outcome(&format!("op=rsa-sign key={}", key.label()), &r);
        }
        r
    }

    pub(super) fn rsa_fill_pool(
        &self,
        bits: u32,
        exponent: RsaExponent,
        count: u64,
    ) -> Result<IccPoolLevel> {
        let mut added = 0u64;
        let r = (|| {
            check_emv_bits(bits)?;
            if count > MAX_FILL {
                return Err(Error::invalid(
                    "pool fill count",
                    format!("{count}; at most {MAX_FILL} per call"),
                ));
            }
            let mut level = self.pool.level(bits, exponent);
            while added < count {
                let n = (count - added).min(super::rsa_pool::CHUNK as u64) as usize;
                // Generated outside every lock: other callers go on meanwhile.
                let keys = generate_many(bits, exponent, n)?;
                level = self.pool.add(&self.lmk, bits, exponent, &keys)?;
                added += n as u64;
            }
            Ok(level)
        })();
        self.logged(
            &format!(
                "op=icc-pool-fill bits={bits} e={exponent} asked={count} added={added}{}",
                r.as_ref()
                    .map(|l| format!(" available={}", l.available))
                    .unwrap_or_default()
            ),
            r,
        )
    }

    pub(super) fn rsa_icc_key(&self, req: &IccRsaRequest<'_>) -> Result<IccRsaKey> {
        let ktk = self.keys.entry(req.ktk)?;
        let r = (|| {
            check_emv_bits(req.bits)?;
            check_ktk(&ktk)?;
            // Refused before a pair is taken from the pool, so a bad request costs none.
            let half = (req.bits as usize / 8).div_ceil(2);
            let bs = ktk.cipher.block_size();
            if req.padding == Padding::None && !half.is_multiple_of(bs) {
                return Err(Error::invalid(
                    "ICC CRT parts",
                    format!(
                        "each part is {half} bytes, not a whole number of {bs}-byte blocks of \
                         KTK '{}': ask for a padding",
                        ktk.spec.label
                    ),
                ));
            }
            let (key, from_pool) = match req
                .use_pool
                .then(|| self.pool.take(&self.lmk, req.bits, req.exponent))
                .transpose()?
                .flatten()
            {
                Some(k) => (k, true),
                None => (RsaPrivateKey::generate(req.bits, req.exponent)?, false),
            };
            let parts = key.crt_parts()?;
            let mut out: [Vec<u8>; 5] = Default::default();
            for (slot, part) in out.iter_mut().zip(parts.in_dgi_order()) {
                let n = req.padding.padded_len(part.len(), bs);
                let mut buf = Zeroizing::new(vec![0u8; n]);
                buf[..part.len()].copy_from_slice(part);
                req.padding.pad(&mut buf, part.len(), bs)?;
                ktk.cipher.encrypt_ecb(&mut buf)?;
                *slot = buf.to_vec();
            }
            Ok(IccRsaKey {
                public: key.public_key(),
                crt_under_ktk: out,
                from_pool,
            })
        })();
        match r {
            Ok(v) => {
                ktk.usage.add(Counted::IccRsa);
                Ok(v)
            }
            Err(e) => self.data_failure("icc-rsa", &[&ktk], e),
        }
    }
}

/// The KTK checks of ICC key output, as for ICC master keys: a key-wrapping key (K0, mode B
/// or E) under the usage policy.
fn check_ktk(ktk: &Entry) -> Result<()> {
    policy::check(
        Operation::Wrap,
        &ktk.spec.label,
        ktk.spec.usage,
        ktk.spec.mode_of_use,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emv_lengths_have_80_bit_strength() {
        assert_eq!(rsa_strength_bits(1024), 80);
        assert_eq!(rsa_strength_bits(1984), 80);
        assert_eq!(rsa_strength_bits(2048), 112);
    }
}
