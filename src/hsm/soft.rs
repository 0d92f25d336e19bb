//! `SoftHsm`: the built-in software HSM, a library in the caller's process. The type's own
//! documentation describes it (this module is private); its parts, one file each under
//! `soft/`: the key store (`store.rs`), the LMK and `store.meta` (`lmk.rs`), the store lock
//! (`lock.rs`), the audit log (`audit.rs`), the per-key usage counters (`usage.rs`), the
//! data cryptography on loaded keys (`data.rs`), RSA key pairs (`rsa.rs`) and the ICC key
//! pool (`rsa_pool.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::policy::{self, Operation};
use super::{
    Activity, Capabilities, CipherSpec, Hsm, ImportCheck, KeyHandle, KeyInfo, KeyOrigin, KeySpec,
    Officer, PinSpec, TranslateItem,
};
use crate::keyblock::{self, Exportability, KeyUsage, ModeOfUse, Version};
use crate::pinblock::{Pan, PinBlockFormat};
use crate::{Algorithm, Error, Kcv, MacAlgorithm, MacTag, Padding, Result, SecretKey};

mod audit;
mod auth;
mod data;
mod emv;
mod lmk;
mod lock;
mod manifest;
mod rsa;
mod rsa_pool;
mod store;
mod usage;

use audit::AuditLog;
pub use audit::{AuditVerdict, verify_audit_log};
use data::check_alg;
pub use lmk::{LmkComponent, LmkComponents, LmkSource};
use lmk::{LmkKind, Meta};
use lock::StoreLock;
use manifest::Manifest;
use store::{Entry, KeyStore, header_for, spec_from_header};
use usage::Counted;

/// The built-in software HSM: keys in a directory, under a local master key (LMK).
///
/// - **Key store**: one file per key, `DIR/keys/<label>.kb`, a TR-31 version D key block
///   under the store's AES-256 LMK that binds the key's usage, mode of use, exportability
///   and label, so a key file that is edited, swapped or renamed fails to load. Files are
///   written atomically (temporary file, fsync, rename).
/// - **LMK**: formed from 2 or 3 components at a key ceremony and never written to disk
///   ([`LmkSource::Components`], or for the CLI the environment variable
///   `PMP_LMK_COMPONENTS`); or, for development, a TEST LMK generated at
///   [`init`](SoftHsm::init) and kept in `DIR/lmk.test`. `DIR/store.meta` records the LMK's
///   kind and KCV, never the LMK. A TEST store says so in
///   [`Capabilities::is_test`], in every audit entry (`lmk=TEST`), and
///   [`require_production`](SoftHsm::require_production) refuses it.
/// - **Manifest**: `DIR/manifest` lists every key file with its keyed hash, the audit log's
///   tail and a generation counter, MACed under a key derived from the LMK and bound to the
///   store id of `store.meta` (which every key block binds too). On open, a key file that is
///   missing, added, replaced, rolled back or copied from another store under the same LMK,
///   and an audit log that is truncated or rolled back, are refused with
///   [`Error::Integrity`]. Temporary files left by an interrupted write are removed on open
///   (and the removal audited).
/// - **Key origin**: every key block binds how the key came to be ([`KeyOrigin`]:
///   generated, formed from components, imported under a named KEK);
///   [`Hsm::key_origin`] reports it.
/// - **Lock**: one instance per store, across threads and processes: `flock` on the store
///   directory itself, which cannot be removed from under a running process; share the
///   instance.
/// - **Audit**: `DIR/audit.log`, MAC-chained under a key derived from the LMK
///   ([`verify_audit_log`](super::verify_audit_log)). Key-management operations and every
///   failure are logged one entry per call. Successful data operations (encrypt, decrypt,
///   translate, PIN translate, MAC) are counted per key and operation and logged as `usage`
///   summary entries when [`flush_audit`](SoftHsm::flush_audit) is called, on any
///   key-management operation and on drop — one line per call would cost more than the
///   operation itself on the import path.
/// - **Boundary**: the "device" is host code in the caller's process. The usage policy is
///   enforced there and whole files are decrypted there, so `SoftHsm` does **not** claim
///   [`Capability::PolicyInDevice`](super::Capability::PolicyInDevice) nor
///   [`Capability::InBoundaryFileImport`](super::Capability::InBoundaryFileImport); a caller
///   that needs either needs a hardware backend.
/// - **Concurrency**: the key table is behind an `RwLock` (data operations take the read
///   lock only and use per-key cached key schedules); the audit log has its own mutex.
pub struct SoftHsm {
    /// Held for the life of the instance: one instance per store.
    _lock: StoreLock,
    dir: PathBuf,
    lmk: SecretKey,
    kind: LmkKind,
    keys: KeyStore,
    audit: AuditLog,
    manifest: Arc<Manifest>,
    /// The ICC RSA key pool (`DIR/icc-pool`).
    pool: rsa_pool::Pool,
    authority: auth::Authority,
    /// Serialises [`SoftHsm::flush_audit`], so no usage is counted twice.
    flush: Mutex<()>,
}

impl core::fmt::Debug for SoftHsm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftHsm")
            .field("dir", &self.dir)
            .field("test_lmk", &self.is_test())
            .finish_non_exhaustive()
    }
}

impl SoftHsm {
    /// Creates a new key store in `dir` (which must not hold one) with the given LMK
    /// (`Test` generates a TEST LMK; `Components` forms a production LMK).
    pub fn init(dir: &Path, lmk: LmkSource) -> Result<Self> {
        if Meta::exists(dir) {
            return Err(Error::AlreadyExists(format!(
                "a key store already exists in {}",
                dir.display()
            )));
        }
        KeyStore::create_dir(dir)?;
        let (lmk, meta) = lmk::create(dir, lmk)?;
        Manifest::create(dir, &lmk, &meta.store_id, meta.kind)?;
        let hsm = Self::open_with_lmk(dir, lmk)?;
        hsm.audit.record(&format!(
            "op=keystore-init store={} lmk={} lmk_kcv={} outcome=ok",
            meta.store_id,
            meta.kind.as_str(),
            hsm.lmk.kcv()
        ))?;
        Ok(hsm)
    }

    /// Creates a new key store with a generated TEST LMK (development only).
    pub fn create_with_test_lmk(dir: &Path) -> Result<Self> {
        Self::init(dir, LmkSource::Test)
    }

    /// Opens the key store in `dir`, loading and verifying every key block against the
    /// manifest. Any key file that fails to verify (changed, swapped, renamed, wrong LMK,
    /// another store's, missing, added, rolled back) stops the open with an
    /// [`Error::Integrity`] naming the file; the audit log's chain and its tail anchored in
    /// the manifest are verified too (a torn final line is kept as evidence and recovered).
    /// A store of the first format (`pmp-softhsm-1`) is refused with
    /// [`Error::Unsupported`] saying how to move its keys.
    pub fn open(dir: &Path, lmk: LmkSource) -> Result<Self> {
        if matches!(&lmk, LmkSource::Components(c) if c.is_empty()) {
            return Err(Error::invalid("LMK components", "none given"));
        }
        Self::open_with_lmk(dir, lmk::load(dir, lmk)?)
    }

    fn open_with_lmk(dir: &Path, lmk: SecretKey) -> Result<Self> {
        let lock = StoreLock::take(dir)?;
        let meta = Meta::read(dir)?;
        meta.check(&lmk)?;
        let cleaned =
            manifest::clean_temporaries(dir)? + manifest::clean_temporaries(&dir.join("keys"))?;
        let manifest = Arc::new(Manifest::open(dir, &lmk, &meta.store_id, meta.kind)?);
        let audit = AuditLog::open(dir, &lmk, meta.kind, manifest.clone())?;
        let keys = KeyStore::load(dir, &lmk, &meta.store_id, manifest.clone())?;
        let (pool, stale) = rsa_pool::Pool::open(dir, &meta.store_id, manifest.clone())?;
        let cleaned = cleaned + stale;
        if cleaned > 0 {
            audit.record(&format!(
                "op=keystore-open temporary_files_removed={cleaned} outcome=ok lmk={}",
                meta.kind.as_str()
            ))?;
        }
        Ok(Self {
            _lock: lock,
            dir: dir.to_path_buf(),
            lmk,
            kind: meta.kind,
            keys,
            audit,
            manifest,
            pool,
            authority: auth::Authority::default(),
            flush: Mutex::new(()),
        })
    }

    /// Enrols officer `id` (a label) with `passphrase` (at least 12 bytes): its Argon2id
    /// hash is kept in the store's manifest, under the LMK. The first two officers enrol
    /// freely (the ceremony that creates the store); a further officer, or a new passphrase
    /// for an enrolled one, is the sensitive activity [`Activity::ManageOfficers`].
    pub fn enrol_officer(&self, id: &str, passphrase: &[u8]) -> Result<()> {
        let mut note = String::new();
        let r = (|| {
            crate::label::check(id, "officer id")?;
            if self.manifest.officer_count() >= 2 || self.manifest.officer(id).is_some() {
                note = self.require(
                    Activity::ManageOfficers,
                    &format!("enrolling officer '{id}'"),
                )?;
            }
            let c = auth::credential(passphrase)?;
            self.manifest.set_officer(id, c)
        })();
        self.logged(&format!("op=enrol-officer officer={id}{note}"), r)
    }

    /// The audit note of a sensitive activity `a` (`what` names it in a refusal): on a
    /// TEST-LMK store it is waived (and says so), else a current authorisation must cover
    /// it.
    fn require(&self, a: Activity, what: &str) -> Result<String> {
        if self.is_test() {
            return Ok(format!(" activity={} auth=waived-test-lmk", a.name()));
        }
        self.authority
            .check(a, what)
            .map(|o| format!(" activity={} auth={o}", a.name()))
    }

    /// KEK zones: a KEK (K0/K1) formed from components or imported belongs to one zone —
    /// mode D (it only imports: an issuer zone) or E (it only exports: a production zone).
    /// A two-way KEK (mode B) is refused, except on a TEST-LMK store (waived, and said).
    fn zone(&self, spec: &KeySpec, how: &str) -> Result<String> {
        if !matches!(spec.usage, KeyUsage::K0 | KeyUsage::K1) {
            return Ok(String::new());
        }
        match spec.mode_of_use {
            ModeOfUse::D => Ok(" zone=import".into()),
            ModeOfUse::E => Ok(" zone=export".into()),
            _ if self.is_test() => Ok(" zone=waived-test-lmk".into()),
            m => Err(Error::Policy(format!(
                "KEK '{}' {how} must belong to one zone: mode D (imports only, an issuer zone) \
                 or E (exports only, a production zone), not {m:?}",
                spec.label
            ))),
        }
    }

    /// Refuses a TEST LMK (for operations that require production keys).
    pub fn require_production(&self) -> Result<()> {
        if self.is_test() {
            Err(Error::Policy(
                "this key store has a TEST LMK; a production LMK is required".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Whether the LMK is a TEST LMK.
    pub fn is_test(&self) -> bool {
        self.kind == LmkKind::Test
    }

    /// The key store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Verifies the audit log chain.
    pub fn verify_audit(&self) -> Result<AuditVerdict> {
        self.flush_audit()?;
        let meta = Meta::read(&self.dir)?;
        let manifest = Manifest::open(&self.dir, &self.lmk, &meta.store_id, meta.kind)?;
        audit::verify(
            &self.dir.join(audit::AUDIT),
            &self.lmk,
            manifest.audit_anchor(),
        )
    }

    /// Writes the pending usage counters as summary entries and anchors the audit log's
    /// tail in the manifest.
    pub fn flush_audit(&self) -> Result<()> {
        self.flush_usage()?;
        self.audit.anchor()
    }

    /// Writes the pending usage counters as summary entries (anchored by the next entry
    /// that anchors).
    fn flush_usage(&self) -> Result<()> {
        let _one_at_a_time = self.flush.lock().unwrap_or_else(|p| p.into_inner());
        let table = self.keys.read();
        let mut entries: Vec<&Arc<Entry>> = table.live().collect();
        entries.sort_by(|a, b| a.spec.label.cmp(&b.spec.label));
        for e in entries {
            for (op, count) in e.usage.take_unlogged() {
                self.audit.usage(e, op, count)?;
            }
        }
        let mut pairs: Vec<_> = table.live_rsa().collect();
        pairs.sort_by(|a, b| a.spec.label.cmp(&b.spec.label));
        for e in pairs {
            for (op, count) in e.usage.take_unlogged() {
                self.audit.usage_of(
                    &e.spec.label,
                    &format!("sha1={}", e.fingerprint()),
                    op,
                    count,
                )?;
            }
        }
        Ok(())
    }

    /// Records a management operation's outcome (after the pending usage summaries) and
    /// passes the result through.
    fn logged<T>(&self, what: &str, r: Result<T>) -> Result<T> {
        let _ = self.flush_usage();
        self.audit.outcome(what, &r)?;
        r
    }

    /// Records a failed data operation (one entry per failure) and returns the error.
    fn data_failure<T>(&self, what: &str, keys: &[&Entry], e: Error) -> Result<T> {
        let _ = self.audit.failure(what, keys, &e);
        Err(e)
    }

    fn store(&self, spec: KeySpec, key: SecretKey, origin: KeyOrigin) -> Result<KeyInfo> {
        self.keys.add(&self.lmk, spec, key, origin)
    }

    /// Decrypting to clear under a data key generated here (a DKep, which protects the
    /// bureau's own data at rest) is the sensitive activity [`Activity::DecryptToClear`];
    /// under an imported key (an issuer's transport key: its files must be read to be
    /// imported) it stays open. Successful decryptions are counted in the usage summaries.
    fn clear_decrypt(&self, e: &Entry) -> Result<()> {
        if e.origin != KeyOrigin::Generated {
            return Ok(());
        }
        self.require(
            Activity::DecryptToClear,
            &format!("decrypting to clear under '{}'", e.spec.label),
        )
        .map(|_| ())
    }

    /// The trait's item-by-item `translate_batch`: all or nothing, `out` restored on error.
    fn translate_each(&self, items: &[TranslateItem<'_>], out: &mut Vec<u8>) -> Result<Vec<usize>> {
        let start = out.len();
        let mut ends = Vec::with_capacity(items.len());
        for item in items {
            let at = out.len();
            out.resize(at + item.data.len() + 32, 0);
            match self.translate(&item.from, &item.to, item.data, &mut out[at..]) {
                Ok(n) => {
                    out.truncate(at + n);
                    ends.push(out.len());
                }
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
        Ok(ends)
    }

    fn policy(op: Operation, e: &Entry) -> Result<()> {
        policy::check(op, &e.spec.label, e.spec.usage, e.spec.mode_of_use)
    }

    /// One data operation on one key: look the key up, check `op` against its usage and
    /// mode of use, run `f`, then count the success as `counted` or log the failure
    /// (`what`).
    fn data_op<T>(
        &self,
        key: &KeyHandle,
        op: Operation,
        counted: Counted,
        what: &str,
        f: impl FnOnce(&Arc<Entry>) -> Result<T>,
    ) -> Result<T> {
        let e = self.keys.entry(key)?;
        match Self::policy(op, &e).and_then(|()| f(&e)) {
            Ok(v) => {
                e.usage.add(counted);
                Ok(v)
            }
            Err(err) => self.data_failure(what, &[&e], err),
        }
    }
}

/// `h`'s entry, looked up once per handle (by address) in `seen`; `true` the first time.
fn cached_entry<'t>(
    seen: &mut Vec<(*const KeyHandle, &'t Entry)>,
    table: &'t store::Table,
    h: &KeyHandle,
) -> Result<(&'t Entry, bool)> {
    if let Some(&(_, e)) = seen.iter().find(|(p, _)| core::ptr::eq(*p, h)) {
        return Ok((e, false));
    }
    let e = &**table.get(h)?;
    if seen.len() < 32 {
        seen.push((h, e));
    }
    Ok((e, true))
}

impl Drop for SoftHsm {
    fn drop(&mut self) {
        // Still under the store lock (the fields drop after this).
        if let Ok(n @ 1..) = self.pool.give_back(&self.lmk) {
            let _ = self.audit.record(&format!(
                "op=icc-pool-return count={n} outcome=ok lmk={}",
                self.kind.as_str()
            ));
        }
        let _ = self.flush_audit();
    }
}

impl Hsm for SoftHsm {
    fn capabilities(&self) -> Capabilities {
        use super::{Capability as C, KcvMethod};
        Capabilities::new("softhsm")
            .with_all([
                C::KeyAlgorithm(Algorithm::Tdes),
                C::KeyAlgorithm(Algorithm::Aes),
                C::ImportKeyBlock(Version::B),
                C::ImportKeyBlock(Version::D),
                C::ExportKeyBlock(Version::B),
                C::ExportKeyBlock(Version::D),
                C::FormFromComponents,
                C::TranslateInDevice,
                C::Mac(MacAlgorithm::Retail),
                C::Mac(MacAlgorithm::CbcTdes),
                C::Mac(MacAlgorithm::CbcAes),
                C::Mac(MacAlgorithm::CmacTdes),
                C::Mac(MacAlgorithm::CmacAes),
                C::PinFormat(PinBlockFormat::Iso0),
                C::PinFormat(PinBlockFormat::Iso1),
                C::PinFormat(PinBlockFormat::Iso3),
                C::PinFormat(PinBlockFormat::Iso4),
                C::Kcv(KcvMethod::TdesEncryptZeros),
                C::Kcv(KcvMethod::AesCmac),
                C::IccKeyDerivation,
                C::CardPin,
                C::RsaKeys,
                C::RsaKeyBlockImport,
                C::IccRsaKeys,
                C::IccKeyPool,
                // The software HSM is a library in the caller's process: its "device" is
                // host code, so neither the policy nor a whole-file import is inside a
                // separate boundary (InBoundaryFileImport and PolicyInDevice are absent).
            ])
            .with_test_keys(self.is_test())
    }

    fn generate_key(&self, spec: &KeySpec) -> Result<KeyInfo> {
        let mut note = String::new();
        let r = (|| {
            if spec.exportability != Exportability::N {
                note = self.require(
                    Activity::GenerateExportable,
                    &format!("generating exportable key '{}'", spec.label),
                )?;
            }
            SecretKey::generate(spec.algorithm, spec.len)
                .and_then(|k| self.store(spec.clone(), k, KeyOrigin::Generated))
        })();
        self.logged(
            &format!(
                "op=generate key={} alg={} len={} usage={} mode={:?} export={:?}{note}{}",
                spec.label,
                spec.algorithm,
                spec.len,
                spec.usage,
                spec.mode_of_use,
                spec.exportability,
                r.as_ref()
                    .map(|i| format!(" kcv={}", i.kcv))
                    .unwrap_or_default()
            ),
            r,
        )
    }

    fn form_key_from_components(
        &self,
        spec: &KeySpec,
        components: &[&[u8]],
        component_kcvs: &[Option<Kcv>],
        expected_kcv: Option<&Kcv>,
    ) -> Result<KeyInfo> {
        let mut note = String::new();
        let r = (|| {
            note = self.require(
                Activity::FormKey,
                &format!("forming key '{}' from components", spec.label),
            )?;
            note.push_str(&self.zone(spec, "formed from components")?);
            let key = super::combine_for_spec(spec, components, component_kcvs, expected_kcv)?;
            self.store(spec.clone(), key, KeyOrigin::Components)
        })();
        self.logged(
            &format!(
                "op=form-from-components key={} components={} alg={} usage={} mode={:?}{note}{}",
                spec.label,
                components.len(),
                spec.algorithm,
                spec.usage,
                spec.mode_of_use,
                r.as_ref()
                    .map(|i| format!(" kcv={}", i.kcv))
                    .unwrap_or_default()
            ),
            r,
        )
    }

    fn import_key_block_checked(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
        check: &ImportCheck<'_>,
    ) -> Result<KeyInfo> {
        let mut note = String::new();
        let r = (|| {
            crate::label::check(label, "label")?;
            let k = self.keys.entry(kek)?;
            Self::policy(Operation::Unwrap, &k)?;
            let (header, key) = keyblock::unwrap(
                &k.key,
                block.trim(),
                &keyblock::UnwrapPolicy {
                    allow_legacy: false,
                },
            )?;
            let spec = spec_from_header(label, &header, key.len())?;
            // Parity bits carry no key material (DES ignores them, the KCV does not change):
            // an imported TDES key is parity-adjusted, then must pass the weak-key and
            // degenerate-key checks like any key made here.
            let key = if spec.algorithm == Algorithm::Tdes
                && !crate::has_odd_parity(key.expose_secret())
            {
                let mut b = Zeroizing::new(key.expose_secret().to_vec());
                crate::set_odd_parity(&mut b);
                SecretKey::new(Algorithm::Tdes, &b)?
            } else {
                key
            };
            crate::check_key_hygiene(spec.algorithm, key.expose_secret())?;
            if keyblock::key_strength_bits(&key) > keyblock::key_strength_bits(&k.key) {
                return Err(Error::Policy(format!(
                    "KEK '{}' is weaker than the key it protects",
                    k.spec.label
                )));
            }
            if !check.usages.is_empty() && !check.usages.contains(&spec.usage) {
                return Err(Error::Policy(format!(
                    "the key block carries usage {}, expected one of {}",
                    spec.usage,
                    check
                        .usages
                        .iter()
                        .map(|u| u.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if let Some(expected) = check.kcv {
                expected.check(&key.kcv(), format!("imported key '{label}'"))?;
            }
            if matches!(spec.usage, KeyUsage::K0 | KeyUsage::K1) {
                note = self.require(
                    Activity::ImportKek,
                    &format!("importing KEK '{label}' under '{}'", k.spec.label),
                )?;
                note.push_str(&self.zone(&spec, "imported")?);
            }
            self.store(
                spec,
                key,
                KeyOrigin::Imported {
                    kek: k.spec.label.clone(),
                },
            )
        })();
        self.logged(
            &format!(
                "op=import key={label} kek={}{note}{}",
                kek.label(),
                r.as_ref()
                    .map(|i| format!(" usage={} kcv={}", i.spec.usage, i.kcv))
                    .unwrap_or_default()
            ),
            r,
        )
    }

    fn export_key_block(&self, key: &KeyHandle, kek: &KeyHandle) -> Result<String> {
        let mut note = String::new();
        let r = (|| {
            let e = self.keys.entry(key)?;
            let k = self.keys.entry(kek)?;
            Self::policy(Operation::Wrap, &k)?;
            note = self.require(
                Activity::Export,
                &format!("exporting key '{}' under '{}'", e.spec.label, k.spec.label),
            )?;
            if e.spec.exportability != Exportability::E {
                return Err(Error::Policy(format!(
                    "key '{}' is not exportable (exportability {:?})",
                    e.spec.label, e.spec.exportability
                )));
            }
            if e.handle == k.handle {
                return Err(Error::Policy(
                    "a key cannot be exported under itself".into(),
                ));
            }
            if keyblock::key_strength_bits(&e.key) > keyblock::key_strength_bits(&k.key) {
                return Err(Error::Policy(format!(
                    "KEK '{}' is weaker than key '{}'",
                    k.spec.label, e.spec.label
                )));
            }
            let version = match k.spec.algorithm {
                Algorithm::Aes => Version::D,
                Algorithm::Tdes => Version::B,
            };
            let header = header_for(&e.spec, version, None)?;
            keyblock::wrap(&k.key, &header, &e.key, None).map(|b| (b, e.kcv, k.kcv))
        })();
        let what = format!("op=export key={} kek={}{note}", key.label(), kek.label());
        let what = match &r {
            Ok((_, kcv, kek_kcv)) => format!("{what} kcv={kcv} kek_kcv={kek_kcv}"),
            Err(_) => what,
        };
        self.logged(&what, r.map(|(b, _, _)| b))
    }

    fn key_info(&self, key: &KeyHandle) -> Result<KeyInfo> {
        self.keys.entry(key).map(|e| e.info())
    }

    fn find_key(&self, label: &str) -> Result<KeyHandle> {
        self.keys.read().find_handle(label)
    }

    fn authorise(
        &self,
        first: &Officer<'_>,
        second: &Officer<'_>,
        activities: &[Activity],
        valid_for: std::time::Duration,
    ) -> Result<()> {
        let names: Vec<&str> = activities.iter().map(|a| a.name()).collect();
        let r = (|| {
            crate::label::check(first.id, "officer id")?;
            crate::label::check(second.id, "officer id")?;
            if first.id == second.id {
                return Err(Error::Policy(
                    "dual control needs two different officers".into(),
                ));
            }
            if activities.is_empty() {
                return Err(Error::invalid("activities", "name at least one"));
            }
            if valid_for.is_zero() || valid_for > auth::MAX_VALIDITY {
                return Err(Error::invalid(
                    "validity",
                    format!(
                        "between 1 second and {} hours",
                        auth::MAX_VALIDITY.as_secs() / 3600
                    ),
                ));
            }
            for o in [first, second] {
                let ok = match self.manifest.officer(o.id) {
                    Some(c) => auth::verify(&c, o.passphrase)?,
                    None => false,
                };
                if !ok {
                    return Err(Error::Policy(format!(
                        "officer '{}' is not enrolled or the passphrase does not verify",
                        o.id
                    )));
                }
            }
            self.authority
                .grant(format!("{}+{}", first.id, second.id), activities, valid_for);
            Ok(())
        })();
        self.logged(
            &format!(
                "op=authorise officers={}+{} activities={} valid_for={}s",
                first.id.replace(' ', "_"),
                second.id.replace(' ', "_"),
                names.join(","),
                valid_for.as_secs()
            ),
            r,
        )
    }

    fn end_authorisation(&self) -> Result<()> {
        self.authority.end();
        self.logged("op=end-authorisation", Ok(()))
    }

    fn key_origin(&self, key: &KeyHandle) -> Result<KeyOrigin> {
        match self.rsa_entry(key) {
            Ok(e) => Ok(e.origin.clone()),
            Err(_) => self.keys.entry(key).map(|e| e.origin.clone()),
        }
    }

    fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut v: Vec<KeyInfo> = self.keys.read().live().map(|e| e.info()).collect();
        v.sort_by(|a, b| a.spec.label.cmp(&b.spec.label));
        Ok(v)
    }

    fn delete_key(&self, key: &KeyHandle) -> Result<()> {
        let mut note = String::new();
        let rsa = self.rsa_entry(key).is_ok();
        let r = (|| {
            if !rsa {
                self.keys.entry(key)?;
            }
            note = self.require(
                Activity::DeleteKey,
                &format!("deleting key '{}'", key.label()),
            )?;
            if rsa {
                self.keys.remove_rsa(key).map(|fp| format!("sha1={fp}"))
            } else {
                self.keys.remove(key).map(|kcv| format!("kcv={kcv}"))
            }
        })();
        let what = format!("op=delete key={}{note}", key.label());
        let what = match &r {
            Ok(id) => format!("{what} {id}"),
            Err(_) => what,
        };
        self.logged(&what, r.map(|_| ()))
    }

    fn encrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.data_op(
            spec.key,
            Operation::Encrypt,
            Counted::Encrypt,
            "encrypt",
            |e| {
                e.cipher
                    .encrypt(spec.mode, spec.iv, spec.padding, data, out)
            },
        )
    }

    /// In the boundary: the policy is checked once, then blocks are decrypted with the
    /// key's cached schedule into the reader's wiped buffer (see the trait method).
    fn decrypting_reader<'a>(
        &'a self,
        spec: &CipherSpec<'_>,
        input: Box<dyn std::io::Read + Send + 'a>,
    ) -> Result<Box<dyn std::io::Read + Send + 'a>> {
        self.data_op(
            spec.key,
            Operation::Decrypt,
            Counted::Decrypt,
            "decrypt-file",
            |e| {
                self.clear_decrypt(e)?;
                let entry = e.clone();
                let reader = super::CbcDecryptReader::new(
                    input,
                    Box::new(move |iv: &[u8], buf: &mut [u8]| {
                        data::parallel_cbc_decrypt(&entry.cipher, iv, buf)
                    }),
                    e.cipher.block_size(),
                    spec,
                )?;
                Ok(Box::new(reader) as Box<dyn std::io::Read + Send + 'a>)
            },
        )
    }

    fn decrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.data_op(
            spec.key,
            Operation::Decrypt,
            Counted::Decrypt,
            "decrypt",
            |e| {
                self.clear_decrypt(e)?;
                e.cipher
                    .decrypt(spec.mode, spec.iv, spec.padding, data, out)
            },
        )
    }

    fn translate(
        &self,
        from: &CipherSpec<'_>,
        to: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let table = self.keys.read();
        let a = table.get(from.key)?;
        let b = table.get(to.key)?;
        let r = Self::policy(Operation::Decrypt, a)
            .and_then(|()| Self::policy(Operation::Encrypt, b))
            .and_then(|()| data::translate(a, b, from, to, data, out));
        match r {
            Ok(n) => {
                a.usage.add(Counted::TranslateFrom);
                b.usage.add(Counted::TranslateTo);
                Ok(n)
            }
            Err(err) => self.data_failure("translate", &[a, b], err),
        }
    }

    /// The batch in one pass per key: the policy is checked for every item first, then
    /// the TDES blocks of all items that share a key run side by side in the lanes of the
    /// bitsliced core (see `data::translate_batch`). If anything fails, the batch is redone
    /// item by item through [`translate`](Hsm::translate), so the error, the audit entry and
    /// the usage counters are exactly those of the trait's item-by-item default.
    fn translate_batch(
        &self,
        items: &[TranslateItem<'_>],
        out: &mut Vec<u8>,
    ) -> Result<Vec<usize>> {
        let batched = {
            let table = self.keys.read();
            (|| {
                // Items of a batch share a few keys (one TK, a DKep per attribute): each
                // handle is looked up once (by address) and its policy checked once per role.
                let mut from_seen: Vec<(*const KeyHandle, &Entry)> = Vec::new();
                let mut to_seen: Vec<(*const KeyHandle, &Entry)> = Vec::new();
                let mut keys = Vec::with_capacity(items.len());
                let mut any_tdes = false;
                for it in items {
                    let (a, new_a) = cached_entry(&mut from_seen, &table, it.from.key)?;
                    let (b, new_b) = cached_entry(&mut to_seen, &table, it.to.key)?;
                    if new_a {
                        Self::policy(Operation::Decrypt, a)?;
                    }
                    if new_b {
                        Self::policy(Operation::Encrypt, b)?;
                    }
                    any_tdes |=
                        a.spec.algorithm == Algorithm::Tdes || b.spec.algorithm == Algorithm::Tdes;
                    keys.push((a, b));
                }
                // Without a TDES key there is nothing to batch (AES-NI is fast one field at
                // a time, and the per-item path has no scratch copies).
                if !any_tdes {
                    return Ok(None);
                }
                let ends = data::translate_batch(&keys, items, out)?;
                for (a, b) in &keys {
                    a.usage.add(Counted::TranslateFrom);
                    b.usage.add(Counted::TranslateTo);
                }
                Ok::<_, Error>(Some(ends))
            })()
        };
        match batched {
            Ok(Some(ends)) => Ok(ends),
            Ok(None) | Err(_) => self.translate_each(items, out),
        }
    }

    fn translate_pin(
        &self,
        from: &PinSpec<'_>,
        to: &PinSpec<'_>,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        let a = self.keys.entry(from.key)?;
        let b = self.keys.entry(to.key)?;
        let r = Self::policy(Operation::PinDecrypt, &a)
            .and_then(|()| Self::policy(Operation::PinEncrypt, &b))
            .and_then(|()| data::translate_pin(&a, &b, from, to, pan, block));
        match r {
            Ok(v) => {
                a.usage.add(Counted::PinTranslate);
                b.usage.add(Counted::PinTranslateTo);
                Ok(v)
            }
            Err(err) => self.data_failure("translate-pin", &[&a, &b], err),
        }
    }

    fn translate_pin_for_card(
        &self,
        from: &PinSpec<'_>,
        ptk: &KeyHandle,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        self.emv_translate_pin_for_card(from, ptk, pan, block)
    }

    fn derive_icc_master_keys(
        &self,
        req: &super::emv::IccKeyRequest<'_>,
    ) -> Result<super::emv::IccMasterKeys> {
        self.emv_derive_icc_master_keys(req)
    }

    fn generate_rsa_key(&self, spec: &super::rsa::RsaKeySpec) -> Result<super::rsa::RsaKeyInfo> {
        self.rsa_generate(spec)
    }

    fn import_rsa_key_block(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
    ) -> Result<super::rsa::RsaKeyInfo> {
        self.rsa_import(label, kek, block)
    }

    fn rsa_key_info(&self, key: &KeyHandle) -> Result<super::rsa::RsaKeyInfo> {
        self.rsa_info(key)
    }

    fn list_rsa_keys(&self) -> Result<Vec<super::rsa::RsaKeyInfo>> {
        Ok(self.rsa_list())
    }

    fn sign_emv_recovery(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>> {
        self.rsa_sign(key, message)
    }

    fn generate_icc_rsa_key(
        &self,
        req: &super::rsa::IccRsaRequest<'_>,
    ) -> Result<super::rsa::IccRsaKey> {
        self.rsa_icc_key(req)
    }

    fn fill_icc_key_pool(
        &self,
        bits: u32,
        exponent: crate::rsa::RsaExponent,
        count: u64,
    ) -> Result<super::rsa::IccPoolLevel> {
        self.rsa_fill_pool(bits, exponent, count)
    }

    fn icc_key_pool(&self) -> Result<Vec<super::rsa::IccPoolLevel>> {
        Ok(self.pool.levels())
    }

    fn generate_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
    ) -> Result<MacTag> {
        self.data_op(
            key,
            Operation::MacGenerate(alg),
            Counted::Mac,
            "mac-generate",
            |e| {
                check_alg(e, alg.key_algorithm(), alg.name())?;
                crate::primitives::mac::mac(alg, &e.key, padding, data)
            },
        )
    }

    fn verify_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
        mac: &[u8],
    ) -> Result<()> {
        self.data_op(
            key,
            Operation::MacVerify(alg),
            Counted::Mac,
            "mac-verify",
            |e| {
                check_alg(e, alg.key_algorithm(), alg.name())?;
                crate::verify_mac(alg, &e.key, padding, data, mac)
            },
        )
    }
}
