//! `Pkcs11Hsm`: the [`Hsm`] trait on a PKCS#11 token (cargo feature `pkcs11`, on the
//! `cryptoki` crate). `docs/pkcs11.md` maps each operation to its mechanisms, per vendor.
//!
//! Opening loads the module (`.so`), finds the token by label and logs in as the user with
//! the PIN (the CLI and the C API read it from `PMP_PKCS11_PIN`). Operations borrow a
//! session from a pool, so many threads work at once; a lost session or login is
//! re-established once, then reported as the retryable
//! [`Error::Transport`](crate::Error::Transport).
//!
//! Keys live on the token as described in the key model (usage attributes from the TR-31
//! usage and mode of use, `CKA_SENSITIVE`, `CKA_MODIFIABLE` false, TR-31 attributes and KCV
//! in `CKA_ID`); the policy table is checked on the host before every call, and the token
//! enforces its projection on the attributes.
//!
//! What runs where is reported by [`Hsm::capabilities`]:
//! - in the device: key generation, KCVs, encryption and decryption (TDES and AES, ECB and
//!   CBC; padding on the host, which holds the clear data anyway), AES-CMAC generation and
//!   verification, and the TR-31 binding keys of a key-encryption key;
//! - through host memory (zeroizing buffers), because SoftHSMv2 2.6.1 has no mechanism that
//!   keeps it inside: data translation
//!   ([`Capability::HostTranslateFallback`](super::Capability::HostTranslateFallback), no
//!   `TranslateInDevice`), PIN translation
//!   ([`Capability::HostPinFallback`](super::Capability::HostPinFallback)), forming a key
//!   from components (the XOR, then `C_CreateObject`), and — only when the operator allows
//!   it with [`Pkcs11Config::host_key_fallback`] — TR-31 import and export
//!   ([`Capability::HostKeyFallback`](super::Capability::HostKeyFallback)): the key
//!   block's payload is decrypted and MACed by the KEK's binding keys in the token, the key
//!   itself passes through the host; under that consent a generated key-encryption key is
//!   drawn on the host too, so that its binding keys can be derived.
//!
//! ```no_run
//! use pmp_core::hsm::{Hsm, Pkcs11Config, Pkcs11Hsm};
//! let config = Pkcs11Config::new("/usr/lib/softhsm/libsofthsm2.so", "T", "1234");
//! let hsm = Pkcs11Hsm::open(&config)?;
//! for key in hsm.list_keys()? {
//!     println!("{} {} {}", key.spec.label, key.spec.usage, key.kcv);
//! }
//! # Ok::<(), pmp_core::Error>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::{Zeroize, Zeroizing};

use super::policy::{self, Operation};
use super::rsa::{RsaKeyInfo, RsaKeySpec};
use super::{
    Capabilities, Capability, CipherSpec, Hsm, ImportCheck, KcvMethod, KeyHandle, KeyInfo,
    KeyOrigin, KeySpec, PinSpec,
};
use crate::keyblock::{Exportability, KeyUsage, Version};
use crate::pinblock::{self, Pan, PinBlockFormat};
use crate::{Algorithm, Error, Kcv, MacAlgorithm, MacTag, Mode, Padding, Result, SecretKey};

mod exchange;
mod object;
mod rsa;
mod session;

use object::{Tag, Usages};
use session::{CkResult, Fail, Pool};

/// Environment variable holding the token's user PIN for the CLI and the C API.
pub const PIN_ENV: &str = "PMP_PKCS11_PIN";

/// Environment variable through which the operator allows the host fallback of TR-31
/// import and export (`1`), for the CLI and the C API.
pub const HOST_KEY_FALLBACK_ENV: &str = "PMP_PKCS11_HOST_KEY_FALLBACK";

/// How to reach a token. The PIN is zeroized on drop and never printed.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// The token label.
    pub token: String,
    pin: Zeroizing<String>,
    /// Whether TR-31 import and export may run through host memory where the token has no
    /// mechanism for them (the operator's decision; see the module documentation).
    pub host_key_fallback: bool,
}

impl core::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("host_key_fallback", &self.host_key_fallback)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Config {
    /// The module, the token label and the user PIN; no host key fallback.
    pub fn new(module: impl AsRef<Path>, token: &str, pin: &str) -> Self {
        Self {
            module: module.as_ref().to_path_buf(),
            token: token.to_string(),
            pin: Zeroizing::new(pin.to_string()),
            host_key_fallback: false,
        }
    }

    /// The module and token, with the PIN from `PMP_PKCS11_PIN` and the host key fallback
    /// allowed when `PMP_PKCS11_HOST_KEY_FALLBACK` is `1`.
    pub fn from_env(module: impl AsRef<Path>, token: &str) -> Result<Self> {
        let pin = Zeroizing::new(std::env::var(PIN_ENV).map_err(|_| {
            Error::Policy(format!(
                "set {PIN_ENV} to the user PIN of token '{token}' (the PIN is never a flag)"
            ))
        })?);
        let mut c = Self::new(module, token, &pin);
        c.host_key_fallback = std::env::var(HOST_KEY_FALLBACK_ENV).is_ok_and(|v| v == "1");
        Ok(c)
    }

    /// The same configuration with the host key fallback allowed or not.
    pub fn with_host_key_fallback(mut self, allowed: bool) -> Self {
        self.host_key_fallback = allowed;
        self
    }
}

/// A key known to this instance.
struct Entry {
    handle: KeyHandle,
    spec: KeySpec,
    kcv: Kcv,
    /// Where the key is on the token; object handles change when the login is lost (the
    /// token forgets the handles of private objects) and are then looked up again.
    objects: RwLock<Objects>,
}

#[derive(Clone, Copy)]
struct Objects {
    key: ObjectHandle,
    /// The TR-31 binding keys of a KEK formed or imported here.
    binding: Option<exchange::Binding>,
}

impl Entry {
    fn object(&self) -> ObjectHandle {
        self.objects.read().unwrap_or_else(|p| p.into_inner()).key
    }

    fn binding(&self) -> Option<exchange::Binding> {
        self.objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .binding
    }

    fn info(&self) -> KeyInfo {
        KeyInfo {
            handle: self.handle.clone(),
            spec: self.spec.clone(),
            kcv: self.kcv,
        }
    }

    fn check(&self, op: Operation) -> Result<()> {
        policy::check(op, &self.spec.label, self.spec.usage, self.spec.mode_of_use)
    }

    fn check_alg(&self, alg: Algorithm, what: &str) -> Result<()> {
        if self.spec.algorithm == alg {
            Ok(())
        } else {
            Err(Error::Policy(format!(
                "key '{}' is {}, {what} needs {alg}",
                self.spec.label, self.spec.algorithm
            )))
        }
    }
}

/// What a scan of the token found.
#[derive(Default)]
struct Found {
    keys: HashMap<String, (KeySpec, Kcv, ObjectHandle)>,
    kbek: HashMap<String, (Version, ObjectHandle)>,
    kbak: HashMap<String, (Version, ObjectHandle)>,
    rsa: HashMap<String, rsa::FoundPair>,
}

impl Found {
    fn binding(&self, label: &str) -> Option<exchange::Binding> {
        match (self.kbek.get(label), self.kbak.get(label)) {
            (Some((v, e)), Some((w, a))) if v == w => Some(exchange::Binding {
                version: *v,
                kbek: *e,
                kbak: *a,
            }),
            _ => None,
        }
    }
}

/// The keys known to this instance. Symmetric keys and RSA key pairs share one label space
/// and one handle numbering.
#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Arc<Entry>>,
    rsa: HashMap<u64, Arc<rsa::RsaEntry>>,
    by_label: HashMap<String, u64>,
}

/// The mechanisms the token offers that this backend uses.
#[derive(Clone, Copy, Debug, Default)]
struct Mechs {
    tdes: bool,
    aes: bool,
    aes_cmac: bool,
    aes_kwp: bool,
    /// `CKM_RSA_PKCS_KEY_PAIR_GEN` and `CKM_RSA_X_509`.
    rsa: bool,
    /// The key sizes the token generates RSA keys in, in bits.
    rsa_bits: (usize, usize),
}

/// The PKCS#11 backend (connection, key model and fallbacks: `docs/pkcs11.md`).
pub struct Pkcs11Hsm {
    pool: Pool,
    /// Serialises key management on the token across the process.
    management: Arc<std::sync::Mutex<()>>,
    /// The pool's login epoch the object handles in the table belong to.
    epoch: AtomicU64,
    table: RwLock<Table>,
    next_id: AtomicU64,
    mechs: Mechs,
    host_key_fallback: bool,
    token: String,
    manufacturer: String,
    model: String,
}

impl core::fmt::Debug for Pkcs11Hsm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pkcs11Hsm")
            .field("token", &self.token)
            .field("manufacturer", &self.manufacturer)
            .field("model", &self.model)
            .field("host_key_fallback", &self.host_key_fallback)
            .finish_non_exhaustive()
    }
}

fn mech(alg: Algorithm, mode: Mode, iv: Option<&[u8]>) -> Result<Mechanism<'static>> {
    let bad_iv = || {
        Error::invalid(
            "IV",
            format!(
                "{mode} under {alg} needs a {}-byte IV for CBC and none for ECB",
                alg.block_size()
            ),
        )
    };
    Ok(match (alg, mode, iv) {
        (Algorithm::Tdes, Mode::Ecb, None) => Mechanism::Des3Ecb,
        (Algorithm::Aes, Mode::Ecb, None) => Mechanism::AesEcb,
        (Algorithm::Tdes, Mode::Cbc, Some(iv)) => {
            Mechanism::Des3Cbc(iv.try_into().map_err(|_| bad_iv())?)
        }
        (Algorithm::Aes, Mode::Cbc, Some(iv)) => {
            Mechanism::AesCbc(iv.try_into().map_err(|_| bad_iv())?)
        }
        _ => return Err(bad_iv()),
    })
}

impl Pkcs11Hsm {
    /// Opens the token: loads the module, finds the token by label, logs in as the user,
    /// probes the mechanisms and reads the keys pmp-core made on it.
    pub fn open(config: &Pkcs11Config) -> Result<Self> {
        let (pool, facts) = Pool::open(&config.module, &config.token, &config.pin)?;
        let mechs = {
            let (ctx, slot) = pool.context();
            let has = |m: MechanismType| ctx.get_mechanism_info(slot, m).is_ok();
            Mechs {
                tdes: has(MechanismType::DES3_ECB)
                    && has(MechanismType::DES3_CBC)
                    && has(MechanismType::DES2_KEY_GEN)
                    && has(MechanismType::DES3_KEY_GEN),
                aes: has(MechanismType::AES_ECB)
                    && has(MechanismType::AES_CBC)
                    && has(MechanismType::AES_KEY_GEN),
                aes_cmac: has(MechanismType::AES_CMAC),
                aes_kwp: has(MechanismType::AES_KEY_WRAP_PAD),
                rsa: has(MechanismType::RSA_PKCS_KEY_PAIR_GEN) && has(MechanismType::RSA_X_509),
                rsa_bits: ctx
                    .get_mechanism_info(slot, MechanismType::RSA_PKCS_KEY_PAIR_GEN)
                    .map(|i| (i.min_key_size(), i.max_key_size()))
                    .unwrap_or((0, 0)),
            }
        };
        let hsm = Self {
            management: session::management_lock(&config.module, &config.token),
            epoch: AtomicU64::new(pool.epoch()),
            pool,
            table: RwLock::new(Table::default()),
            next_id: AtomicU64::new(1),
            mechs,
            host_key_fallback: config.host_key_fallback,
            token: config.token.clone(),
            manufacturer: facts.manufacturer,
            model: facts.model,
        };
        hsm.refresh()?;
        Ok(hsm)
    }

    /// The token's manufacturer and model, as it reports them.
    pub fn token_description(&self) -> String {
        format!("{} {}", self.manufacturer, self.model)
    }

    /// Logs the application out of the token, as a device reset or a network HSM's idle
    /// timeout does. The next operation logs in again by itself (for tests and operators).
    pub fn logout(&self) -> Result<()> {
        self.pool.logout()
    }

    /// Holds the token's key-management lock.
    fn managing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.management.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a pooled session; object handles are looked up again first when the
    /// login was re-established since they were read.
    fn run<T>(&self, mut f: impl FnMut(&Session) -> CkResult<T>) -> Result<T> {
        self.pool.run(|s| {
            let now = self.pool.epoch();
            if self.epoch.load(Ordering::Acquire) != now {
                self.resolve(s)?;
                self.epoch.store(now, Ordering::Release);
            }
            f(s)
        })
    }

    /// The pmp objects on the token: keys by label, and binding keys by owner label.
    fn scan(s: &Session) -> CkResult<Found> {
        session::require_login(s)?;
        let objects = s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])?;
        let mut found = Found::default();
        for o in objects {
            let attrs = s.get_attributes(o, &[AttributeType::Label, AttributeType::Id])?;
            let (mut label, mut tag) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Label(l) => label = String::from_utf8(l).ok(),
                    Attribute::Id(id) => tag = Tag::decode(&id),
                    _ => {}
                }
            }
            let (Some(label), Some(tag)) = (label, tag) else {
                continue;
            };
            match &tag {
                Tag::Key { .. } => {
                    if let Some((spec, kcv)) = object::spec_of(&label, &tag) {
                        found.keys.insert(label, (spec, kcv, o));
                    }
                }
                Tag::Kbek(v) => {
                    found.kbek.insert(label, (*v, o));
                }
                Tag::Kbak(v) => {
                    found.kbak.insert(label, (*v, o));
                }
                Tag::Rsa { .. } => {}
            }
        }
        found.rsa = rsa::scan(s)?;
        Ok(found)
    }

    /// Looks the object handles of every known key up again.
    fn resolve(&self, s: &Session) -> CkResult<()> {
        let found = Self::scan(s)?;
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        for e in table.by_id.values() {
            if let Some((_, _, o)) = found.keys.get(&e.spec.label) {
                *e.objects.write().unwrap_or_else(|p| p.into_inner()) = Objects {
                    key: *o,
                    binding: found.binding(&e.spec.label),
                };
            }
        }
        for e in table.rsa.values() {
            if let Some(f) = found.rsa.get(&e.spec.label)
                && f.public == e.public
            {
                *e.private.write().unwrap_or_else(|p| p.into_inner()) = f.private;
            }
        }
        Ok(())
    }

    /// Reads the pmp keys on the token into the table (keys another process made appear).
    fn refresh(&self) -> Result<()> {
        let found = {
            let _one = self.managing();
            self.run(Self::scan)?
        };
        let binding = |label: &str| found.binding(label);
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        for (label, (spec, kcv, object)) in &found.keys {
            if table.by_label.contains_key(label) {
                continue;
            }
            self.insert(&mut table, spec.clone(), *kcv, *object, binding(label));
        }
        for (label, pair) in found.rsa {
            if !table.by_label.contains_key(&label) {
                self.insert_rsa(&mut table, pair);
            }
        }
        Ok(())
    }

    fn insert(
        &self,
        table: &mut Table,
        spec: KeySpec,
        kcv: Kcv,
        object: ObjectHandle,
        binding: Option<exchange::Binding>,
    ) -> Arc<Entry> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let e = Arc::new(Entry {
            handle: KeyHandle::new(id, &spec.label),
            spec,
            kcv,
            objects: RwLock::new(Objects {
                key: object,
                binding,
            }),
        });
        table.by_label.insert(e.spec.label.clone(), id);
        table.by_id.insert(id, e.clone());
        e
    }

    fn insert_rsa(&self, table: &mut Table, found: rsa::FoundPair) -> Arc<rsa::RsaEntry> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let e = Arc::new(rsa::RsaEntry {
            handle: KeyHandle::new(id, &found.spec.label),
            spec: found.spec,
            mode: found.mode,
            public: found.public,
            private: RwLock::new(found.private),
        });
        table.by_label.insert(e.spec.label.clone(), id);
        table.rsa.insert(id, e.clone());
        e
    }

    /// The symmetric key `h`; an RSA key pair's handle is refused by name.
    fn entry(&self, h: &KeyHandle) -> Result<Arc<Entry>> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = table.rsa.get(&h.id()).filter(|e| e.handle == *h) {
            return Err(Error::Policy(format!(
                "key '{}' is an RSA key pair (usage {}): it only signs EMV recovery-format \
                 messages",
                e.spec.label, e.spec.usage
            )));
        }
        table
            .by_id
            .get(&h.id())
            .filter(|e| e.handle == *h)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("key '{}'", h.label())))
    }

    /// The RSA key pair `h`.
    fn rsa_entry(&self, h: &KeyHandle) -> Result<Arc<rsa::RsaEntry>> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        if table.by_id.get(&h.id()).is_some_and(|e| e.handle == *h) {
            return Err(Error::Policy(format!(
                "key '{}' is not an RSA key pair",
                h.label()
            )));
        }
        table
            .rsa
            .get(&h.id())
            .filter(|e| e.handle == *h)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("RSA key '{}'", h.label())))
    }

    /// Refuses a label that is malformed or in use (here or, made by another process, on
    /// the token).
    fn check_new_label(&self, label: &str) -> Result<()> {
        crate::label::check(label, "label")?;
        let taken = |t: &Table| t.by_label.contains_key(label);
        if !taken(&self.table.read().unwrap_or_else(|p| p.into_inner())) {
            self.refresh()?;
        }
        if taken(&self.table.read().unwrap_or_else(|p| p.into_inner())) {
            return Err(Error::AlreadyExists(format!("label '{label}' is in use")));
        }
        Ok(())
    }

    fn require(&self, c: Capability) -> Result<()> {
        self.capabilities().require(c)
    }

    /// The wrap-with-trusted attribute of an exportable key: set unless the host fallback
    /// must be able to take it out for export.
    fn wrap_with_trusted(&self) -> bool {
        !self.host_key_fallback
    }

    /// Stores a key the host holds in clear (formed from components, or imported) and,
    /// for a key-encryption key, its TR-31 binding keys; all or nothing.
    fn store_clear(&self, spec: &KeySpec, key: &SecretKey) -> Result<KeyInfo> {
        self.check_new_label(&spec.label)?;
        let kcv = key.kcv();
        let tag = Tag::for_key(spec, &kcv);
        let exportable = spec.exportability == Exportability::E;
        let mut template = object::key_template(
            &spec.label,
            &tag,
            spec.algorithm,
            spec.len,
            exportable,
            self.wrap_with_trusted(),
            Usages::of(spec.usage, spec.mode_of_use),
        )?;
        template.push(Attribute::Value(key.expose_secret().to_vec()));
        let one = self.managing();
        let r = self.run(|s| {
            let o = s.create_object(&template)?;
            if spec.algorithm == Algorithm::Tdes {
                // The token's own check value of a created TDES key is E(K, 0)[..3]: it must
                // agree with ours (a token that took different bytes is caught here).
                let agrees = match s.get_attributes(o, &[AttributeType::CheckValue]) {
                    Ok(cv) => {
                        matches!(cv.as_slice(), [Attribute::CheckValue(v)] if v.as_slice() == kcv.as_bytes())
                    }
                    Err(e) => {
                        let _ = s.destroy_object(o);
                        return Err(e.into());
                    }
                };
                if !agrees {
                    let _ = s.destroy_object(o);
                    return Err(Fail::Pmp(Error::Integrity {
                        what: format!("key '{}' on the token", spec.label),
                        reason: "the token's check value differs from the key's KCV".into(),
                    }));
                }
            }
            Ok(o)
        });
        for a in &mut template {
            if let Attribute::Value(v) = a {
                v.zeroize();
            }
        }
        let object = r?;
        let binding = if matches!(spec.usage, KeyUsage::K0 | KeyUsage::K1) {
            match exchange::create_binding(self, spec, key) {
                Ok(b) => b,
                Err(e) => {
                    let _ = self.run(|s| Ok(s.destroy_object(object)?));
                    return Err(e);
                }
            }
        } else {
            None
        };
        drop(one);
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        Ok(self
            .insert(&mut table, spec.clone(), kcv, object, binding)
            .info())
    }

    fn encrypt_on(
        &self,
        s: &Session,
        e: &Entry,
        spec: &CipherSpec<'_>,
        block: &[u8],
    ) -> CkResult<Vec<u8>> {
        let m = mech(e.spec.algorithm, spec.mode, spec.iv)?;
        Ok(s.encrypt(&m, e.object(), block)?)
    }

    fn decrypt_on(
        &self,
        s: &Session,
        e: &Entry,
        spec: &CipherSpec<'_>,
        data: &[u8],
    ) -> CkResult<Zeroizing<Vec<u8>>> {
        let m = mech(e.spec.algorithm, spec.mode, spec.iv)?;
        Ok(Zeroizing::new(s.decrypt(&m, e.object(), data)?))
    }

    /// Checks the IV and the block alignment of `data` before anything reaches the token.
    fn check_input(e: &Entry, spec: &CipherSpec<'_>, data_len: usize) -> Result<usize> {
        mech(e.spec.algorithm, spec.mode, spec.iv)?;
        let bs = e.spec.algorithm.block_size();
        if !data_len.is_multiple_of(bs) || data_len == 0 {
            return Err(Error::invalid(
                "data length",
                format!("{data_len} bytes is not a whole number of {bs}-byte blocks"),
            ));
        }
        Ok(bs)
    }

    /// One ECB block under `e` in the device, in place.
    fn ecb(&self, s: &Session, e: &Entry, encrypt: bool, block: &mut [u8]) -> CkResult<()> {
        let m = mech(e.spec.algorithm, Mode::Ecb, None)?;
        let out = Zeroizing::new(if encrypt {
            s.encrypt(&m, e.object(), block)?
        } else {
            s.decrypt(&m, e.object(), block)?
        });
        if out.len() != block.len() {
            return Err(Fail::Pmp(Error::Crypto));
        }
        block.copy_from_slice(&out);
        Ok(())
    }
}

impl Hsm for Pkcs11Hsm {
    fn capabilities(&self) -> Capabilities {
        use Capability as C;
        let m = self.mechs;
        let mut c = Capabilities::new("pkcs11")
            .with(C::PolicyInDevice)
            .with(C::FormFromComponents)
            .with(C::HostTranslateFallback)
            .with(C::HostPinFallback);
        if m.tdes {
            c = c.with_all([
                C::KeyAlgorithm(Algorithm::Tdes),
                C::Kcv(KcvMethod::TdesEncryptZeros),
                C::PinFormat(PinBlockFormat::Iso0),
                C::PinFormat(PinBlockFormat::Iso1),
                C::PinFormat(PinBlockFormat::Iso3),
            ]);
        }
        if m.aes && m.aes_cmac {
            c = c.with_all([
                C::KeyAlgorithm(Algorithm::Aes),
                C::Kcv(KcvMethod::AesCmac),
                C::Mac(MacAlgorithm::CmacAes),
                C::PinFormat(PinBlockFormat::Iso4),
            ]);
        }
        if self.host_key_fallback {
            c = c.with(C::HostKeyFallback);
            if m.aes && m.aes_cmac {
                c = c.with(C::ImportKeyBlock(Version::D));
                if m.aes_kwp {
                    c = c.with(C::ExportKeyBlock(Version::D));
                }
            }
            if m.tdes {
                c = c.with(C::ImportKeyBlock(Version::B));
                if m.aes_kwp {
                    c = c.with(C::ExportKeyBlock(Version::B));
                }
            }
        }
        if m.rsa {
            c = c.with(C::RsaKeys);
            if self.host_key_fallback {
                c = c.with(C::RsaKeyBlockImport);
            }
        }
        // SoftHSMv2 is a software token for development: its keys are test keys.
        c.with_test_keys(self.manufacturer.contains("SoftHSM"))
    }

    fn generate_key(&self, spec: &KeySpec) -> Result<KeyInfo> {
        self.require(Capability::KeyAlgorithm(spec.algorithm))?;
        self.check_new_label(&spec.label)?;
        object::key_type(spec.algorithm, spec.len)?;
        if self.host_key_fallback && matches!(spec.usage, KeyUsage::K0 | KeyUsage::K1) {
            // A key-encryption key needs its TR-31 binding keys on the token, and this token
            // cannot derive them from a key generated inside it (see `exchange`). With the
            // operator's consent to key-block exchange through host memory, the KEK is
            // drawn from the host's CSPRNG into a zeroizing buffer and stored with them.
            let key = SecretKey::generate(spec.algorithm, spec.len)?;
            return self.store_clear(spec, &key);
        }
        let exportable = spec.exportability == Exportability::E;
        let (gen_mech, kcv_usage) = match (spec.algorithm, spec.len) {
            (Algorithm::Tdes, 16) => (Mechanism::Des2KeyGen, Attribute::Encrypt(true)),
            (Algorithm::Tdes, _) => (Mechanism::Des3KeyGen, Attribute::Encrypt(true)),
            (Algorithm::Aes, _) => (Mechanism::AesKeyGen, Attribute::Sign(true)),
        };
        // Generated as a modifiable session object that may compute its own KCV, then
        // copied into the final token object with the spec's usages, unmodifiable.
        let mut temp = vec![
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(exportable),
            Attribute::Modifiable(true),
        ];
        temp.extend(Usages::default().attributes());
        temp.retain(|a| a.attribute_type() != kcv_usage.attribute_type());
        temp.push(kcv_usage);
        if exportable && self.wrap_with_trusted() {
            // Set at generation: SoftHSMv2 refuses it in a copy template (and a false
            // value anywhere but at creation).
            temp.push(Attribute::WrapWithTrusted(true));
        }
        if spec.algorithm == Algorithm::Aes {
            temp.push(Attribute::ValueLen((spec.len as u64).into()));
        }
        let one = self.managing();
        let (object, kcv) = self.run(|s| {
            let t = s.generate_key(&gen_mech, &temp)?;
            let kcv = (|| -> CkResult<Kcv> {
                let bytes = match spec.algorithm {
                    Algorithm::Tdes => s.encrypt(&Mechanism::Des3Ecb, t, &[0u8; 8])?,
                    Algorithm::Aes => s.sign(&Mechanism::AesCMac, t, &[0u8; 16])?,
                };
                let n = match spec.algorithm {
                    Algorithm::Tdes => 3,
                    Algorithm::Aes => 5,
                };
                if bytes.len() < n {
                    return Err(Fail::Pmp(Error::Crypto));
                }
                Ok(Kcv::from_hex(&hex::encode(&bytes[..n]))?)
            })();
            let kcv = match kcv {
                Ok(k) => k,
                Err(e) => {
                    let _ = s.destroy_object(t);
                    return Err(e);
                }
            };
            let tag = Tag::for_key(spec, &kcv);
            let mut copy = vec![
                Attribute::Token(true),
                Attribute::Label(spec.label.as_bytes().to_vec()),
                Attribute::Id(tag.encode()),
            ];
            copy.extend(Usages::of(spec.usage, spec.mode_of_use).attributes());
            // Last: SoftHSMv2 applies the template in order, and nothing changes after it.
            copy.push(Attribute::Modifiable(false));
            let r = s.copy_object(t, &copy);
            let _ = s.destroy_object(t);
            Ok((r?, kcv))
        })?;
        drop(one);
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        Ok(self
            .insert(&mut table, spec.clone(), kcv, object, None)
            .info())
    }

    fn form_key_from_components(
        &self,
        spec: &KeySpec,
        components: &[&[u8]],
        component_kcvs: &[Option<Kcv>],
        expected_kcv: Option<&Kcv>,
    ) -> Result<KeyInfo> {
        self.require(Capability::KeyAlgorithm(spec.algorithm))?;
        let key = super::combine_for_spec(spec, components, component_kcvs, expected_kcv)?;
        self.store_clear(spec, &key)
    }

    fn import_key_block_checked(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
        check: &ImportCheck<'_>,
    ) -> Result<KeyInfo> {
        crate::label::check(label, "label")?;
        let k = self.entry(kek)?;
        k.check(Operation::Unwrap)?;
        let block = block.trim();
        let version = crate::keyblock::inspect(block)?.version;
        if version.is_legacy() {
            return Err(Error::Policy(format!(
                "key block version {version} (legacy key variant binding) is not accepted by this policy"
            )));
        }
        self.require(Capability::ImportKeyBlock(version))?;
        let (header, key) = exchange::unwrap(self, &k, block)?;
        let algorithm = crate::keyblock::supported_algorithm(&header)?;
        let spec = KeySpec {
            label: label.to_string(),
            algorithm,
            len: key.len(),
            usage: header.usage,
            mode_of_use: header.mode_of_use,
            exportability: header.exportability,
        };
        let key = if algorithm == Algorithm::Tdes && !crate::has_odd_parity(key.expose_secret()) {
            let mut b = Zeroizing::new(key.expose_secret().to_vec());
            crate::set_odd_parity(&mut b);
            SecretKey::new(Algorithm::Tdes, &b)?
        } else {
            key
        };
        crate::check_key_hygiene(algorithm, key.expose_secret())?;
        if crate::keyblock::key_strength_bits(&key)
            > crate::keyblock::strength_bits(k.spec.algorithm, k.spec.len)
        {
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
        self.store_clear(&spec, &key)
    }

    fn export_key_block(&self, key: &KeyHandle, kek: &KeyHandle) -> Result<String> {
        let e = self.entry(key)?;
        let k = self.entry(kek)?;
        k.check(Operation::Wrap)?;
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
        if crate::keyblock::strength_bits(e.spec.algorithm, e.spec.len)
            > crate::keyblock::strength_bits(k.spec.algorithm, k.spec.len)
        {
            return Err(Error::Policy(format!(
                "KEK '{}' is weaker than key '{}'",
                k.spec.label, e.spec.label
            )));
        }
        let version = match k.spec.algorithm {
            Algorithm::Aes => Version::D,
            Algorithm::Tdes => Version::B,
        };
        self.require(Capability::ExportKeyBlock(version))?;
        exchange::wrap(self, &e, &k, version)
    }

    fn key_info(&self, key: &KeyHandle) -> Result<KeyInfo> {
        self.entry(key).map(|e| e.info())
    }

    fn key_origin(&self, key: &KeyHandle) -> Result<KeyOrigin> {
        match self.rsa_entry(key) {
            Ok(e) => self.rsa_origin(&e),
            Err(_) => self.entry(key).map(|_| KeyOrigin::Unknown),
        }
    }

    /// `C_GenerateKeyPair` (`CKM_RSA_PKCS_KEY_PAIR_GEN`) of a pair the token keeps: the
    /// private key sensitive, never extractable, unmodifiable, signing only (module `rsa`).
    fn generate_rsa_key(&self, spec: &RsaKeySpec) -> Result<RsaKeyInfo> {
        self.rsa_generate(spec)
    }

    /// Only with the operator's host key fallback: the block is opened by the KEK's binding
    /// keys on the token, the private key passes through host memory into `C_CreateObject`
    /// (module `rsa`).
    fn import_rsa_key_block(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
    ) -> Result<RsaKeyInfo> {
        self.rsa_import(label, kek, block)
    }

    fn rsa_key_info(&self, key: &KeyHandle) -> Result<RsaKeyInfo> {
        self.rsa_entry(key).map(|e| e.info())
    }

    fn list_rsa_keys(&self) -> Result<Vec<RsaKeyInfo>> {
        self.refresh()?;
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<RsaKeyInfo> = table.rsa.values().map(|e| e.info()).collect();
        v.sort_by(|a, b| a.spec.label.cmp(&b.spec.label));
        Ok(v)
    }

    /// The raw private operation on the token (`CKM_RSA_X_509`) after the format check on
    /// the host; the signature is verified with the public half before it is returned.
    fn sign_emv_recovery(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>> {
        let e = self.rsa_entry(key)?;
        self.rsa_sign(&e, message)
    }

    fn find_key(&self, label: &str) -> Result<KeyHandle> {
        let lookup = || {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            table.by_label.get(label).and_then(|id| {
                table
                    .by_id
                    .get(id)
                    .map(|e| e.handle.clone())
                    .or_else(|| table.rsa.get(id).map(|e| e.handle.clone()))
            })
        };
        if let Some(h) = lookup() {
            return Ok(h);
        }
        self.refresh()?;
        lookup().ok_or_else(|| Error::NotFound(format!("key '{label}'")))
    }

    fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.refresh()?;
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<KeyInfo> = table.by_id.values().map(|e| e.info()).collect();
        v.sort_by(|a, b| a.spec.label.cmp(&b.spec.label));
        Ok(v)
    }

    fn delete_key(&self, key: &KeyHandle) -> Result<()> {
        if let Ok(e) = self.rsa_entry(key) {
            return self.rsa_delete(&e);
        }
        let e = self.entry(key)?;
        // By label and tag rather than by the handles held: idempotent when a lost session
        // makes the call run twice.
        let one = self.managing();
        let gone = self.run(|s| {
            session::require_login(s)?;
            let mut n = 0;
            for o in s.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(e.spec.label.as_bytes().to_vec()),
            ])? {
                let id = s.get_attributes(o, &[AttributeType::Id])?;
                let ours = match id.as_slice() {
                    [Attribute::Id(id)] => match Tag::decode(id) {
                        Some(Tag::Key { kcv, .. }) => kcv == e.kcv,
                        Some(Tag::Kbek(_) | Tag::Kbak(_)) => true,
                        Some(Tag::Rsa { .. }) | None => false,
                    },
                    _ => false,
                };
                if ours {
                    s.destroy_object(o)?;
                    n += 1;
                }
            }
            Ok(n)
        })?;
        drop(one);
        if gone == 0 {
            return Err(Error::NotFound(format!(
                "key '{}' is no longer on the token",
                e.spec.label
            )));
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        table.by_id.remove(&key.id());
        table.by_label.remove(&e.spec.label);
        Ok(())
    }

    fn encrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        let e = self.entry(spec.key)?;
        e.check(Operation::Encrypt)?;
        mech(e.spec.algorithm, spec.mode, spec.iv)?;
        let bs = e.spec.algorithm.block_size();
        let n = spec.padding.padded_len(data.len(), bs);
        if out.len() < n {
            return Err(Error::BufferTooSmall {
                needed: n,
                got: out.len(),
            });
        }
        // The padded copy is the caller's clear data: wiped after use.
        let mut padded = Zeroizing::new(vec![0u8; n]);
        padded[..data.len()].copy_from_slice(data);
        spec.padding.pad(&mut padded, data.len(), bs)?;
        let ct = self.run(|s| self.encrypt_on(s, &e, spec, &padded))?;
        if ct.len() != n {
            return Err(Error::Transport(format!(
                "the token returned {} bytes of ciphertext for {n}",
                ct.len()
            )));
        }
        out[..n].copy_from_slice(&ct);
        Ok(n)
    }

    fn decrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        let e = self.entry(spec.key)?;
        e.check(Operation::Decrypt)?;
        let bs = Self::check_input(&e, spec, data.len())?;
        if out.len() < data.len() {
            return Err(Error::BufferTooSmall {
                needed: data.len(),
                got: out.len(),
            });
        }
        let clear = self.run(|s| self.decrypt_on(s, &e, spec, data))?;
        let n = spec.padding.unpad(&clear, bs)?;
        out[..n].copy_from_slice(&clear[..n]);
        Ok(n)
    }

    /// Host fallback ([`Capability::HostTranslateFallback`]; no `TranslateInDevice`): the
    /// token decrypts into a zeroizing host buffer, the host moves the padding, the token
    /// encrypts.
    fn translate(
        &self,
        from: &CipherSpec<'_>,
        to: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let a = self.entry(from.key)?;
        let b = self.entry(to.key)?;
        a.check(Operation::Decrypt)?;
        b.check(Operation::Encrypt)?;
        let bs_from = Self::check_input(&a, from, data.len())?;
        let bs_to = b.spec.algorithm.block_size();
        let needed = to.padding.padded_len(data.len(), bs_to);
        if out.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                got: out.len(),
            });
        }
        mech(b.spec.algorithm, to.mode, to.iv)?;
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
        self.run(|s| {
            let clear = self.decrypt_on(s, &a, from, data)?;
            // Past the decryption every failure is the opaque one (a specific error would
            // tell where the padding was).
            let n = from
                .padding
                .unpad(&clear, bs_from)
                .map_err(|_| Error::Crypto)?;
            let m = to.padding.padded_len(n, bs_to);
            let mut padded = Zeroizing::new(vec![0u8; m]);
            padded[..n].copy_from_slice(&clear[..n]);
            to.padding
                .pad(&mut padded, n, bs_to)
                .map_err(|_| Error::Crypto)?;
            let ct = self.encrypt_on(s, &b, to, &padded)?;
            if ct.len() != m || out.len() < m {
                return Err(Fail::Pmp(Error::Crypto));
            }
            out[..m].copy_from_slice(&ct);
            Ok(m)
        })
    }

    /// Host fallback ([`Capability::HostPinFallback`]): the token deciphers and enciphers
    /// the blocks (ECB, format 4 with its two passes), the host checks and re-formats the
    /// PIN in zeroizing buffers.
    fn translate_pin(
        &self,
        from: &PinSpec<'_>,
        to: &PinSpec<'_>,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        let a = self.entry(from.key)?;
        let b = self.entry(to.key)?;
        a.check(Operation::PinDecrypt)?;
        b.check(Operation::PinEncrypt)?;
        pinblock::check_translation(from.format, to.format)?;
        for (e, f) in [(&a, from.format), (&b, to.format)] {
            self.require(Capability::PinFormat(f))?;
            match f {
                PinBlockFormat::Iso4 => e.check_alg(Algorithm::Aes, "ISO format 4")?,
                _ => e.check_alg(Algorithm::Tdes, "ISO formats 0, 1 and 3")?,
            }
        }
        self.run(|s| {
            // From here on every failure is the same opaque error.
            let opaque = |_| Fail::Pmp(Error::Crypto);
            let pin = match from.format {
                PinBlockFormat::Iso4 => {
                    if block.len() != 16 {
                        return Err(Fail::Pmp(Error::Crypto));
                    }
                    let mut buf = Zeroizing::new([0u8; 16]);
                    buf.copy_from_slice(block);
                    self.ecb(s, &a, false, &mut buf[..])?;
                    for (x, q) in buf.iter_mut().zip(pan.field_iso4()) {
                        *x ^= q;
                    }
                    self.ecb(s, &a, false, &mut buf[..])?;
                    pinblock::decode_iso4_pin_field(&buf[..]).map_err(opaque)?
                }
                f => {
                    if block.len() != 8 {
                        return Err(Fail::Pmp(Error::Crypto));
                    }
                    let mut buf = Zeroizing::new([0u8; 8]);
                    buf.copy_from_slice(block);
                    self.ecb(s, &a, false, &mut buf[..])?;
                    pinblock::decode(f, &buf[..], Some(pan)).map_err(opaque)?
                }
            };
            match to.format {
                PinBlockFormat::Iso4 => {
                    let mut field = pinblock::iso4_pin_field(&pin).map_err(opaque)?;
                    self.ecb(s, &b, true, &mut field[..])?;
                    for (x, q) in field.iter_mut().zip(pan.field_iso4()) {
                        *x ^= q;
                    }
                    self.ecb(s, &b, true, &mut field[..])?;
                    Ok(field.to_vec())
                }
                f => {
                    let mut clear = pinblock::encode(f, &pin, Some(pan)).map_err(opaque)?;
                    self.ecb(s, &b, true, &mut clear[..])?;
                    Ok(clear.to_vec())
                }
            }
        })
    }

    fn generate_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        _padding: Padding,
        data: &[u8],
    ) -> Result<MacTag> {
        let e = self.entry(key)?;
        e.check(Operation::MacGenerate(alg))?;
        e.check_alg(alg.key_algorithm(), alg.name())?;
        self.require(Capability::Mac(alg))?;
        // CMAC has its own padding: `padding` does not apply (as in `crate::mac`).
        let tag = self.run(|s| Ok(s.sign(&Mechanism::AesCMac, e.object(), data)?))?;
        if tag.len() != 16 {
            return Err(Error::Crypto);
        }
        Ok(MacTag::from_slice(&tag))
    }

    fn verify_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
        mac: &[u8],
    ) -> Result<()> {
        let e = self.entry(key)?;
        e.check(Operation::MacVerify(alg))?;
        e.check_alg(alg.key_algorithm(), alg.name())?;
        self.require(Capability::Mac(alg))?;
        if mac.len() == 16 {
            return self
                .pool
                .run(|s| Ok(s.verify(&Mechanism::AesCMac, e.object(), data, mac)?));
        }
        if mac.len() < 4 || mac.len() > 16 {
            return Err(Error::Crypto);
        }
        // A truncated tag: the token verifies full-length CMACs only, so the full tag is
        // generated (the key must also be allowed to generate) and compared in constant
        // time.
        if !policy::permits(
            Operation::MacGenerate(alg),
            e.spec.usage,
            e.spec.mode_of_use,
        ) {
            return Err(Error::Unsupported(format!(
                "verifying a truncated CMAC under key '{}' (mode {:?}): the token verifies \
                 full-length tags only, and the key may not generate",
                e.spec.label, e.spec.mode_of_use
            )));
        }
        self.generate_mac(key, alg, padding, data)?.verify(mac)
    }
}
