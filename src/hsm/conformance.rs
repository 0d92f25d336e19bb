//! The conformance suite every [`Hsm`] backend's tests run: `run_all(&hsm)` (cargo feature
//! `conformance`, not in the default build).
//!
//! It panics (like an assertion) at the first behaviour that differs from the contract of
//! the trait, and otherwise returns a [`Report`]: the checks that ran and the checks it left
//! out, each with the [`Capability`] the backend lacks. It never leaves a check out
//! silently; a caller asserts on the report (the software HSM's run must leave nothing out).
//! Keys it creates carry a random label prefix, so it can run against a store that already
//! holds keys; it deletes what it created.
//!
//! **Keys without clear components.** The suite reads [`Hsm::capabilities`] first. Its keys
//! are generated inside the HSM, and results are checked by round trips and cross-checks
//! between operations (encrypt then decrypt; encrypt, translate, decrypt; one CBC block
//! against ECB; MAC generate then verify; export under a generated KEK, re-import, and
//! decrypt under the copy what the original encrypted; KCVs recomputed through encryption).
//! A known-answer check (the HSM against the host's own cipher, MAC or PIN codec) needs a
//! key whose clear value the suite knows: it forms a KEK from components chosen here, then
//! brings each such key in as a TR-31 block made on the host under that KEK. That needs
//! [`Capability::FormFromComponents`] and [`Capability::ImportKeyBlock`] version D; without
//! them the known-answer checks are left out and reported.
//!
//! The checks, and what each needs beyond AES keys:
//!
//! | check | needs |
//! |---|---|
//! | `capabilities`, `key-management`, `data.file-reader` | — |
//! | `data.round-trip/<alg>-<len>` | the key algorithm |
//! | `data.known-answer/<alg>-<len>` | the key algorithm, known keys |
//! | `kcv.cross-check/<alg>` | the key algorithm, its KCV method |
//! | `known-keys` (KEK formed, host-made blocks imported with the right KCV) | known keys |
//! | `translate.round-trip`, `translate.known-answer` | translation in the device (or its host fallback), TDES (and known keys) |
//! | `components` | forming from components, TDES |
//! | `export-import/<version>`, `export-import.refusals` | export and import of that version (TDES for B) |
//! | `export-import.known-answer` | export of version D, known keys |
//! | `pin.refusals`, `pin.round-trip`, `pin.round-trip/ISO-4` | PIN formats 0 and 3 (4), TDES (AES), known keys for the round trips |
//! | `mac.round-trip/<alg>`, `mac.known-answer/<alg>` | the MAC algorithm (and known keys) |
//! | `policy-matrix`, `policy-matrix/<operation>` | per operation: its MAC algorithm, PIN format 0, key-block export and import |
//! | `policy-matrix.success-with-valid-input` | known keys (see below) |
//! | `rsa.keys`, `rsa.icc-keys`, `rsa.pool` | RSA keys; ICC RSA keys; ICC RSA keys and the pool |
//! | `rsa.key-block-import`, `rsa.icc-keys.known-answer` | R key-block import; ICC RSA keys; known keys |
//!
//! Variants are named as `TDES-16`, `AES`, `D`, `CmacAes`, `MacVerify(CmacAes)` (the
//! `Debug` form of the MAC algorithm and the operation).
//!
//! The policy matrix walks operation × usage × mode of use. Without known keys, the allowed
//! cells whose success needs input made under the cell's key (PIN translation, MAC verify
//! with a verify-only key, unwrap with an unwrap-only key) are checked only for not being
//! refused by policy; the report says so under `policy-matrix.success-with-valid-input`.

use super::{Capabilities, Capability, Hsm, KeyHandle, KeySpec};
use crate::keyblock::{self, Header, KeyAlgorithm, Version};
use crate::{Algorithm, SecretKey};

mod basics;
mod exchange;
mod matrix;
mod pin_mac;
mod report;
mod rsa;
mod translate;

pub use report::{Report, Skipped};

/// Runs every check `hsm` has the capabilities for; returns what ran and what was left out.
/// Panics at the first behaviour that differs from the contract of [`Hsm`].
#[must_use = "the report says what was left out: assert on it"]
pub fn run_all(hsm: &dyn Hsm) -> Report {
    let mut s = Suite::new(hsm);
    basics::capabilities(&mut s);
    s.known = Known::set_up(&mut s);
    basics::key_management(&mut s);
    basics::data_round_trips(&mut s);
    basics::kcv_cross_checks(&mut s);
    basics::file_reader(&mut s);
    translate::translation(&mut s);
    exchange::components(&mut s);
    exchange::export_import(&mut s);
    pin_mac::pin_translation(&mut s);
    pin_mac::macs(&mut s);
    matrix::usage_matrix(&mut s);
    rsa::rsa_keys(&mut s);
    rsa::rsa_key_block_import(&mut s);
    rsa::icc_keys(&mut s);
    rsa::pool(&mut s);
    s.cleanup();
    s.report
}

/// A key the suite made, with its clear value when the suite chose it (a known key).
struct Made {
    handle: KeyHandle,
    clear: Option<SecretKey>,
}

/// How the suite gets keys whose clear value it knows: a KEK it formed from components,
/// under which it imports blocks made on the host. `Err` names what the backend lacks.
type KnownKeys = Result<Known, Capability>;

struct Known {
    kek: KeyHandle,
    kek_clear: SecretKey,
}

impl Known {
    fn set_up(s: &mut Suite<'_>) -> KnownKeys {
        for c in [
            Capability::FormFromComponents,
            Capability::ImportKeyBlock(Version::D),
        ] {
            if !s.caps.supports(c) {
                s.skip("known-keys", c, "");
                return Err(c);
            }
        }
        let kek_clear = SecretKey::generate(Algorithm::Aes, 32).expect("generate clear KEK");
        let spec = KeySpec::new(
            &s.label("known-kek"),
            Algorithm::Aes,
            32,
            keyblock::KeyUsage::K0,
            keyblock::ModeOfUse::B,
        );
        let kek = form(s.hsm, &spec, &kek_clear).expect("form the suite's KEK from components");
        s.ran("known-keys");
        Ok(Known { kek, kek_clear })
    }

    /// Imports a fresh random key with the attributes of `spec` as a TR-31 version D block
    /// made on the host; checks that the HSM reports the attributes and the KCV of the key
    /// the host wrapped.
    fn import(&self, hsm: &dyn Hsm, spec: &KeySpec) -> crate::Result<Made> {
        let clear = SecretKey::generate(spec.algorithm, spec.len)?;
        let header = Header::new(
            Version::D,
            spec.usage,
            match spec.algorithm {
                Algorithm::Tdes => KeyAlgorithm::Tdes,
                Algorithm::Aes => KeyAlgorithm::Aes,
            },
            spec.mode_of_use,
            spec.exportability,
        );
        let block = keyblock::wrap(&self.kek_clear, &header, &clear, None)?;
        let info = hsm.import_key_block(&spec.label, &self.kek, &block)?;
        assert_eq!(
            info.kcv,
            clear.kcv(),
            "an imported key has the KCV of the key wrapped"
        );
        assert_eq!(
            &info.spec, spec,
            "an imported key has the attributes of its block"
        );
        Ok(Made {
            handle: info.handle,
            clear: Some(clear),
        })
    }
}

/// Forms a key in the HSM from two components whose XOR is `key` (the result checked against
/// the KCV of `key`); returns its handle.
fn form(hsm: &dyn Hsm, spec: &KeySpec, key: &SecretKey) -> crate::Result<KeyHandle> {
    let c1 = SecretKey::generate(spec.algorithm, spec.len)?;
    let c2: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
        c1.expose_secret()
            .iter()
            .zip(key.expose_secret())
            .map(|(a, b)| a ^ b)
            .collect(),
    );
    hsm.form_key_from_components(spec, &[c1.expose_secret(), &c2], &[], Some(&key.kcv()))
        .map(|i| i.handle)
}

/// The state of one run: the backend, its capabilities, the label prefix, the known-key
/// source and the report so far.
struct Suite<'a> {
    hsm: &'a dyn Hsm,
    caps: Capabilities,
    prefix: String,
    known: KnownKeys,
    report: Report,
}

impl<'a> Suite<'a> {
    fn new(hsm: &'a dyn Hsm) -> Self {
        let caps = hsm.capabilities();
        let mut r = [0u8; 4];
        crate::fill_random(&mut r).expect("rng");
        Self {
            hsm,
            report: Report::new(caps.backend()),
            caps,
            prefix: format!("conf{}", hex::encode(r)),
            known: Err(Capability::FormFromComponents),
        }
    }

    /// A label of this run.
    fn label(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    fn ran(&mut self, check: impl Into<String>) {
        self.report.ran(check.into());
    }

    /// Records `check` as left out for want of `missing`; `what` says what was left out
    /// when it is not the whole check.
    fn skip(&mut self, check: impl Into<String>, missing: Capability, what: &str) {
        let what = if what.is_empty() {
            String::new()
        } else {
            format!("{what}; ")
        };
        let reason = format!(
            "{what}the {} backend does not offer {missing}",
            self.caps.backend()
        );
        self.report.skip(check.into(), missing, reason);
    }

    /// Whether `check` can run: `true` (and recorded as run) when the backend offers every
    /// capability of `needs`, else recorded as left out for the first one missing.
    fn can_run(&mut self, check: impl Into<String>, needs: &[Capability]) -> bool {
        let check = check.into();
        match needs.iter().find(|c| !self.caps.supports(**c)) {
            None => {
                self.ran(check);
                true
            }
            Some(c) => {
                self.skip(check, *c, "");
                false
            }
        }
    }

    /// Whether the known-answer check `check` can run: as [`can_run`](Self::can_run), and
    /// the suite must have known keys.
    fn can_run_known(&mut self, check: impl Into<String>, needs: &[Capability]) -> bool {
        let check = check.into();
        if let Err(c) = self.known {
            self.skip(check, c, "it needs a key whose clear value the suite knows");
            return false;
        }
        self.can_run(check, needs)
    }

    /// A key with the attributes of `spec`: a known key when the suite can make one, else
    /// generated in the HSM.
    fn make(&self, spec: &KeySpec) -> crate::Result<Made> {
        match &self.known {
            Ok(k) => k.import(self.hsm, spec),
            Err(_) => self.generate(spec),
        }
    }

    /// A key generated in the HSM (its clear value unknown).
    fn generate(&self, spec: &KeySpec) -> crate::Result<Made> {
        self.hsm.generate_key(spec).map(|i| Made {
            handle: i.handle,
            clear: None,
        })
    }

    /// Deletes every key of this run (RSA key pairs too; the pool keeps its level: the
    /// suite takes as many pairs as it adds).
    fn cleanup(&self) {
        for k in self.hsm.list_keys().expect("list") {
            if k.spec.label.starts_with(&self.prefix) {
                self.hsm.delete_key(&k.handle).expect("delete");
            }
        }
        for k in self.hsm.list_rsa_keys().expect("list RSA keys") {
            if k.spec.label.starts_with(&self.prefix) {
                self.hsm.delete_key(&k.handle).expect("delete an RSA key");
            }
        }
    }
}
