//! `SoftHsm`: the built-in software HSM.
//!
//! Key store: one file per key, `DIR/keys/<label>.kb`, holding a TR-31 version D key block
//! under the store's AES-256 LMK. The block binds the key's usage, mode of use,
//! exportability and (in the proprietary optional block `0L`) its label, so a key file that
//! is edited, swapped or renamed fails to load. Files are written atomically (temporary
//! file, fsync, rename). `DIR/store.meta` records the LMK's kind (TEST or PRODUCTION) and
//! KCV, never the LMK.
//!
//! The LMK:
//! - **Production**: formed from 2 or 3 components (XOR) with their KCVs at a key ceremony.
//!   It is never written to disk: each process that opens the store receives the
//!   components again — through the API ([`LmkSource::Components`]) or, for the CLI, the
//!   environment variable `PMP_LMK_COMPONENTS` (comma-separated hex components, which the
//!   operator's wrapper sets from the custodians' smart cards or a secrets manager; the
//!   variable is read once and pmp's copy wiped; the process environment itself still holds
//!   it, so the wrapper should set it for the one process only). A wrong component set is refused by the
//!   KCV recorded in `store.meta`.
//! - **TEST**: generated at `init` and kept in clear in `DIR/lmk.test` (mode 0600) for
//!   development. The store is marked TEST, [`Capabilities::is_test`] says so, every
//!   audit entry carries `lmk=TEST`, and [`SoftHsm::require_production`] refuses it.
//!
//! Concurrency: the key table is behind an `RwLock` (data operations take the read lock
//! only and use per-key cached key schedules); the audit log has its own mutex.
//!
//! Audit: key management operations and every failure are logged one entry per call.
//! Successful data operations (encrypt, decrypt, translate, PIN translate, MAC) are counted
//! per key and operation and logged as `usage` summary entries when [`SoftHsm::flush_audit`]
//! is called, on any key-management operation and on drop — one line per call would cost
//! more than the operation itself on the import path.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use zeroize::{Zeroize, Zeroizing};

use super::audit::AuditLog;
use super::policy::{self, Operation};
use super::{Capabilities, CipherSpec, Hsm, ImportCheck, KeyHandle, KeyInfo, KeySpec, PinSpec};
use crate::keyblock::{self, Exportability, Header, KeyAlgorithm, OptionalBlock, Version};
use crate::pinblock::{self, Pan, PinBlockFormat};
use crate::{
    Algorithm, BlockCipher, Error, Kcv, MacAlgorithm, MacTag, Mode, Padding, Result, SecretKey,
};

const META: &str = "store.meta";
const TEST_LMK: &str = "lmk.test";
const KEYS: &str = "keys";
const AUDIT: &str = "audit.log";
const LABEL_BLOCK: [u8; 2] = *b"0L";
/// Environment variable through which the CLI receives production LMK components.
pub const LMK_ENV: &str = "PMP_LMK_COMPONENTS";

/// LMK components: clear AES-256 components, each with an optional KCV.
pub type LmkComponents = Vec<LmkComponent>;

/// One clear LMK component with its optional KCV. Zeroized on drop; `Debug` shows only the
/// KCV.
#[derive(Clone)]
pub struct LmkComponent {
    bytes: Zeroizing<Vec<u8>>,
    kcv: Option<Kcv>,
}

impl LmkComponent {
    /// A component (its bytes are copied) and the KCV its custodian read out, if any.
    pub fn new(bytes: &[u8], kcv: Option<Kcv>) -> Self {
        Self {
            bytes: Zeroizing::new(bytes.to_vec()),
            kcv,
        }
    }

    /// The KCV given with the component.
    pub fn kcv(&self) -> Option<&Kcv> {
        self.kcv.as_ref()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl core::fmt::Debug for LmkComponent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LmkComponent")
            .field("kcv", &self.kcv)
            .finish_non_exhaustive()
    }
}

/// Where the LMK comes from.
#[derive(Clone)]
pub enum LmkSource {
    /// The store's TEST LMK (`init` generates it; `open` reads `DIR/lmk.test`).
    Test,
    /// A production LMK from 2 or 3 clear AES-256 components, each with an optional KCV.
    Components(LmkComponents),
    /// Whatever the store is: TEST stores use their TEST LMK, production stores read the
    /// components from the environment variable `PMP_LMK_COMPONENTS`.
    Auto,
}

impl core::fmt::Debug for LmkSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LmkSource::Test => f.write_str("LmkSource::Test"),
            LmkSource::Components(c) => write!(f, "LmkSource::Components({} components)", c.len()),
            LmkSource::Auto => f.write_str("LmkSource::Auto"),
        }
    }
}

fn lmk_from_components(components: &[LmkComponent]) -> Result<SecretKey> {
    let parts: Vec<(&[u8], Option<&Kcv>)> = components
        .iter()
        .map(|c| (c.bytes.as_slice(), c.kcv.as_ref()))
        .collect();
    let lmk = crate::combine_components(Algorithm::Aes, &parts)?;
    if lmk.len() != 32 {
        return Err(Error::invalid(
            "LMK components",
            format!(
                "the LMK is AES-256: components must be 32 bytes, not {}",
                lmk.len()
            ),
        ));
    }
    Ok(lmk)
}

fn components_from_env() -> Result<LmkComponents> {
    let raw = Zeroizing::new(std::env::var(LMK_ENV).map_err(|_| {
        Error::Policy(format!(
            "this key store has a production LMK: set {LMK_ENV} to its comma-separated hex components"
        ))
    })?);
    raw.split(',')
        .enumerate()
        .map(|(i, c)| {
            hex::decode(c.trim())
                .map(|v| LmkComponent::new(&Zeroizing::new(v), None))
                .map_err(|_| {
                    Error::invalid(
                        "LMK component",
                        format!("component {} in {LMK_ENV} is not hex", i + 1),
                    )
                })
        })
        .collect()
}

struct Meta {
    test: bool,
    kcv: Kcv,
}

fn read_meta(dir: &Path) -> Result<Meta> {
    let path = dir.join(META);
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut test = None;
    let mut kcv = None;
    let mut format_ok = false;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("format", "pmp-softhsm-1")) => format_ok = true,
            Some(("lmk", "TEST")) => test = Some(true),
            Some(("lmk", "PRODUCTION")) => test = Some(false),
            Some(("lmk_kcv", v)) => kcv = Some(Kcv::from_hex(v)?),
            _ => {}
        }
    }
    match (format_ok, test, kcv) {
        (true, Some(test), Some(kcv)) => Ok(Meta { test, kcv }),
        _ => Err(Error::Integrity {
            what: path.display().to_string(),
            reason: "not a pmp-softhsm-1 store description".into(),
        }),
    }
}

/// Loads the LMK of the store in `dir` and checks it against the recorded KCV.
pub(crate) fn load_lmk(dir: &Path, source: LmkSource) -> Result<SecretKey> {
    let meta = read_meta(dir)?;
    let lmk = match (source, meta.test) {
        (LmkSource::Test | LmkSource::Auto, true) => {
            let path = dir.join(TEST_LMK);
            let hex_text =
                Zeroizing::new(fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?);
            SecretKey::from_hex(Algorithm::Aes, &hex_text)?
        }
        (LmkSource::Test, false) => {
            return Err(Error::Policy(
                "this key store has a production LMK, not a TEST LMK".into(),
            ));
        }
        (LmkSource::Components(c), _) => lmk_from_components(&c)?,
        (LmkSource::Auto, false) => lmk_from_components(&components_from_env()?)?,
    };
    meta.kcv.check(&lmk.kcv(), "LMK (against store.meta)")?;
    Ok(lmk)
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, fsync,
/// rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], private: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Unique per process and per write, so two writers never share a temporary file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Takes the store's exclusive lock (`DIR/lock`), or says who holds it.
fn lock_store(dir: &Path) -> Result<fs::File> {
    let path = dir.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Policy(format!(
            "key store {} is open in another process or handle (open it once and share the handle)",
            dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn check_label(label: &str) -> Result<()> {
    crate::label::check(label, "label")
}

/// Per-key counters of successful data operations, for the audit summaries.
#[derive(Default)]
struct Usage {
    counts: [AtomicU64; 6],
    logged: [AtomicU64; 6],
}

const USAGE_NAMES: [&str; 6] = [
    "encrypt",
    "decrypt",
    "translate-from",
    "translate-to",
    "pin",
    "mac",
];

struct Entry {
    handle: KeyHandle,
    spec: KeySpec,
    kcv: Kcv,
    key: SecretKey,
    cipher: BlockCipher,
    usage: Usage,
}

#[derive(Default)]
struct Table {
    /// Entry `id` lives at `slots[id - 1]`; ids are never reused, deleted keys leave `None`.
    slots: Vec<Option<Arc<Entry>>>,
    by_label: HashMap<String, u64>,
}

impl Table {
    fn get(&self, h: &KeyHandle) -> Result<&Arc<Entry>> {
        usize::try_from(h.id())
            .ok()
            .and_then(|id| self.slots.get(id.wrapping_sub(1)))
            .and_then(Option::as_ref)
            .filter(|e| e.handle == *h)
            .ok_or_else(|| Error::NotFound(format!("key '{}'", h.label())))
    }

    fn live(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.slots.iter().flatten()
    }
}

/// The built-in software HSM: key store, LMK and audit as described in `src/hsm/soft.rs`.
pub struct SoftHsm {
    /// Held (exclusive advisory lock on `DIR/lock`) for the life of the instance: one
    /// instance per store, across threads and processes.
    _lock: fs::File,
    dir: PathBuf,
    lmk: SecretKey,
    test: bool,
    table: RwLock<Table>,
    audit: AuditLog,
    /// Serialises [`SoftHsm::flush_audit`], so no usage is counted twice.
    flush: std::sync::Mutex<()>,
}

impl core::fmt::Debug for SoftHsm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftHsm")
            .field("dir", &self.dir)
            .field("test_lmk", &self.test)
            .finish_non_exhaustive()
    }
}

impl SoftHsm {
    /// Creates a new key store in `dir` (which must not hold one) with the given LMK
    /// (`Test` generates a TEST LMK; `Components` forms a production LMK).
    pub fn init(dir: &Path, lmk: LmkSource) -> Result<Self> {
        if dir.join(META).exists() {
            return Err(Error::AlreadyExists(format!(
                "a key store already exists in {}",
                dir.display()
            )));
        }
        fs::create_dir_all(dir.join(KEYS)).map_err(|e| Error::io(dir, e))?;
        let (key, test) = match lmk {
            LmkSource::Test => {
                let k = SecretKey::generate(Algorithm::Aes, 32)?;
                let hex_text = Zeroizing::new(hex::encode_upper(k.expose_secret()) + "\n");
                write_atomic(&dir.join(TEST_LMK), hex_text.as_bytes(), true)?;
                (k, true)
            }
            LmkSource::Components(c) => (lmk_from_components(&c)?, false),
            LmkSource::Auto => (lmk_from_components(&components_from_env()?)?, false),
        };
        let meta = format!(
            "format=pmp-softhsm-1\nlmk={}\nlmk_kcv={}\n",
            if test { "TEST" } else { "PRODUCTION" },
            key.kcv()
        );
        write_atomic(&dir.join(META), meta.as_bytes(), false)?;
        let hsm = Self::open_with_lmk(dir, key)?;
        hsm.audit.record(&format!(
            "op=keystore-init lmk={} lmk_kcv={} outcome=ok",
            if test { "TEST" } else { "PRODUCTION" },
            hsm.lmk.kcv()
        ))?;
        Ok(hsm)
    }

    /// Creates a new key store with a generated TEST LMK (development only).
    pub fn create_with_test_lmk(dir: &Path) -> Result<Self> {
        Self::init(dir, LmkSource::Test)
    }

    /// Opens the key store in `dir`, loading and verifying every key block. Any key file
    /// that fails to verify (changed, swapped, renamed, wrong LMK) stops the open with an
    /// [`Error::Integrity`] naming the file; the audit log's chain is verified too.
    pub fn open(dir: &Path, lmk: LmkSource) -> Result<Self> {
        let lmk = match lmk {
            LmkSource::Components(ref c) if c.is_empty() => {
                return Err(Error::invalid("LMK components", "none given"));
            }
            other => load_lmk(dir, other)?,
        };
        Self::open_with_lmk(dir, lmk)
    }

    fn open_with_lmk(dir: &Path, lmk: SecretKey) -> Result<Self> {
        let lock = lock_store(dir)?;
        let meta = read_meta(dir)?;
        meta.kcv.check(&lmk.kcv(), "LMK (against store.meta)")?;
        let audit = AuditLog::open(dir.join(AUDIT), &lmk)?;
        let hsm = Self {
            _lock: lock,
            dir: dir.to_path_buf(),
            lmk,
            test: meta.test,
            table: RwLock::new(Table::default()),
            audit,
            flush: std::sync::Mutex::new(()),
        };
        hsm.load_keys()?;
        Ok(hsm)
    }

    fn load_keys(&self) -> Result<()> {
        let keys_dir = self.dir.join(KEYS);
        let mut files: Vec<PathBuf> = fs::read_dir(&keys_dir)
            .map_err(|e| Error::io(&keys_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "kb"))
            .collect();
        files.sort();
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        for path in files {
            let integrity = |reason: &str| Error::Integrity {
                what: path.display().to_string(),
                reason: reason.to_string(),
            };
            let label = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| integrity("file name is not a label"))?
                .to_string();
            let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let (header, key) = keyblock::unwrap(
                &self.lmk,
                text.trim(),
                &keyblock::UnwrapPolicy {
                    allow_legacy: false,
                },
            )
            .map_err(|_| {
                integrity(
                    "key block does not verify under the LMK (changed, or another store's key)",
                )
            })?;
            let bound = header
                .optional_blocks
                .iter()
                .find(|b| b.id == LABEL_BLOCK)
                .map(|b| b.data.as_str());
            if bound != Some(label.as_str()) {
                return Err(integrity(
                    "the label bound in the key block differs from the file name (file renamed or swapped)",
                ));
            }
            let spec = spec_from_header(&label, &header, key.len())?;
            Self::insert(&mut table, spec, key);
        }
        Ok(())
    }

    fn insert(table: &mut Table, spec: KeySpec, key: SecretKey) -> Arc<Entry> {
        let id = table.slots.len() as u64 + 1;
        let entry = Arc::new(Entry {
            handle: KeyHandle::new(id, &spec.label),
            kcv: key.kcv(),
            cipher: key.cipher(),
            spec,
            key,
            usage: Usage::default(),
        });
        table.by_label.insert(entry.spec.label.clone(), id);
        table.slots.push(Some(entry.clone()));
        entry
    }

    /// Refuses a TEST LMK (for operations that require production keys).
    pub fn require_production(&self) -> Result<()> {
        if self.test {
            Err(Error::Policy(
                "this key store has a TEST LMK; a production LMK is required".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Whether the LMK is a TEST LMK.
    pub fn is_test(&self) -> bool {
        self.test
    }

    /// The key store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Verifies the audit log chain.
    pub fn verify_audit(&self) -> Result<super::AuditVerdict> {
        self.flush_audit()?;
        super::audit::verify(&self.dir.join(AUDIT), &self.lmk)
    }

    /// Writes the pending usage counters as summary entries.
    pub fn flush_audit(&self) -> Result<()> {
        let _one_at_a_time = self.flush.lock().unwrap_or_else(|p| p.into_inner());
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<&Arc<Entry>> = table.live().collect();
        entries.sort_by(|a, b| a.spec.label.cmp(&b.spec.label));
        for e in entries {
            for (i, name) in USAGE_NAMES.iter().enumerate() {
                let now = e.usage.counts[i].load(Ordering::Relaxed);
                let before = e.usage.logged[i].swap(now, Ordering::Relaxed);
                if now > before {
                    self.audit.record(&format!(
                        "op=usage what={name} key={} kcv={} count={} outcome=ok lmk={}",
                        e.spec.label,
                        e.kcv,
                        now - before,
                        self.lmk_kind()
                    ))?;
                }
            }
        }
        Ok(())
    }

    fn lmk_kind(&self) -> &'static str {
        if self.test { "TEST" } else { "PRODUCTION" }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, h: &KeyHandle) -> Result<Arc<Entry>> {
        self.read().get(h).cloned()
    }

    /// Records a management operation's outcome and passes the result through.
    fn logged<T>(&self, what: &str, r: Result<T>) -> Result<T> {
        let outcome = match &r {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("refused ({})", audit_reason(e)),
        };
        let _ = self.flush_audit();
        self.audit
            .record(&format!("{what} outcome={outcome} lmk={}", self.lmk_kind()))?;
        r
    }

    /// Records a failed data operation (one entry per failure).
    fn data_failure<T>(&self, what: &str, keys: &[&Entry], e: Error) -> Result<T> {
        let names: Vec<String> = keys
            .iter()
            .map(|k| format!("{}/{}", k.spec.label, k.kcv))
            .collect();
        let _ = self.audit.record(&format!(
            "op={what} keys={} outcome=refused ({}) lmk={}",
            names.join(","),
            audit_reason(&e),
            self.lmk_kind()
        ));
        Err(e)
    }

    fn store(&self, spec: KeySpec, key: SecretKey) -> Result<KeyInfo> {
        check_label(&spec.label)?;
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if table.by_label.contains_key(&spec.label) {
            return Err(Error::AlreadyExists(format!(
                "label '{}' is in use",
                spec.label
            )));
        }
        let header = header_for(&spec, Version::D, Some(&spec.label))?;
        let block = keyblock::wrap(&self.lmk, &header, &key, None)?;
        let path = self.dir.join(KEYS).join(format!("{}.kb", spec.label));
        write_atomic(&path, format!("{block}\n").as_bytes(), true)?;
        let e = Self::insert(&mut table, spec, key);
        Ok(info(&e))
    }

    /// One data operation on one key: look the key up, check `op` against its usage and
    /// mode of use, run `f`, then count the success (usage slot `slot`) or log the failure
    /// (`what`).
    fn data_op<T>(
        &self,
        key: &KeyHandle,
        op: Operation,
        slot: usize,
        what: &str,
        f: impl FnOnce(&Arc<Entry>) -> Result<T>,
    ) -> Result<T> {
        let e = self.entry(key)?;
        let r =
            policy::check(op, &e.spec.label, e.spec.usage, e.spec.mode_of_use).and_then(|()| f(&e));
        match r {
            Ok(v) => {
                e.usage.counts[slot].fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Err(err) => self.data_failure(what, &[&e], err),
        }
    }

    fn check_alg(e: &Entry, alg: Algorithm, what: &str) -> Result<()> {
        if e.spec.algorithm == alg {
            Ok(())
        } else {
            Err(Error::Policy(format!(
                "key '{}' is {}, {what} needs {alg}",
                e.spec.label, e.spec.algorithm
            )))
        }
    }
}

impl Drop for SoftHsm {
    fn drop(&mut self) {
        let _ = self.flush_audit();
    }
}

/// CBC decryption is parallel (each block needs only its own and the previous ciphertext
/// block): a large chunk is split in two halves decrypted on two threads when the machine
/// has more than one core, so that the single stream of a whole-file import does not tie
/// the import to one core.
fn parallel_cbc_decrypt(cipher: &BlockCipher, iv: &[u8], buf: &mut [u8]) -> Result<()> {
    const MIN_SPLIT: usize = 16 * 1024;
    let bs = cipher.block_size();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if buf.len() < MIN_SPLIT || cores < 2 || !buf.len().is_multiple_of(bs) {
        return cipher.decrypt_cbc(iv, buf);
    }
    let half = buf.len() / bs / 2 * bs;
    let mut iv2 = [0u8; 16];
    iv2[..bs].copy_from_slice(&buf[half - bs..half]);
    let (a, b) = buf.split_at_mut(half);
    std::thread::scope(|s| {
        let h = s.spawn(|| cipher.decrypt_cbc(&iv2[..bs], b));
        let ra = cipher.decrypt_cbc(iv, a);
        let rb = h.join().unwrap_or(Err(Error::Crypto));
        ra.and(rb)
    })
}

/// An error's reason for the audit log: the error text, which never carries a secret.
fn audit_reason(e: &Error) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}

fn info(e: &Entry) -> KeyInfo {
    KeyInfo {
        handle: e.handle.clone(),
        spec: e.spec.clone(),
        kcv: e.kcv,
    }
}

fn key_algorithm(alg: Algorithm) -> KeyAlgorithm {
    match alg {
        Algorithm::Tdes => KeyAlgorithm::Tdes,
        Algorithm::Aes => KeyAlgorithm::Aes,
    }
}

fn header_for(spec: &KeySpec, version: Version, label: Option<&str>) -> Result<Header> {
    let mut h = Header::new(
        version,
        spec.usage,
        key_algorithm(spec.algorithm),
        spec.mode_of_use,
        spec.exportability,
    );
    if let Some(label) = label {
        h.optional_blocks.push(OptionalBlock {
            id: LABEL_BLOCK,
            data: label.to_string(),
        });
    }
    Ok(h)
}

fn spec_from_header(label: &str, h: &Header, len: usize) -> Result<KeySpec> {
    let algorithm = h.algorithm.to_pmp().ok_or_else(|| {
        Error::Unsupported(format!(
            "key block algorithm {:?} (TDES and AES only)",
            h.algorithm
        ))
    })?;
    Ok(KeySpec {
        label: label.to_string(),
        algorithm,
        len,
        usage: h.usage,
        mode_of_use: h.mode_of_use,
        exportability: h.exportability,
    })
}

impl Hsm for SoftHsm {
    fn capabilities(&self) -> Capabilities {
        use super::{Capability as C, KcvMethod};
        use crate::keyblock::Version;
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
                // The software HSM is a library in the caller's process: its "device" is
                // host code, so neither the policy nor a whole-file import is inside a
                // separate boundary (InBoundaryFileImport and PolicyInDevice are absent).
            ])
            .with_test_keys(self.test)
    }

    fn generate_key(&self, spec: &KeySpec) -> Result<KeyInfo> {
        let r =
            SecretKey::generate(spec.algorithm, spec.len).and_then(|k| self.store(spec.clone(), k));
        self.logged(
            &format!(
                "op=generate key={} alg={} len={} usage={} mode={:?} export={:?}{}",
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
        let r = (|| {
            if !component_kcvs.is_empty() && component_kcvs.len() != components.len() {
                return Err(Error::invalid(
                    "component KCVs",
                    "give one (possibly empty) KCV per component",
                ));
            }
            let parts: Vec<(&[u8], Option<&Kcv>)> = components
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, component_kcvs.get(i).and_then(|k| k.as_ref())))
                .collect();
            let key = crate::combine_components(spec.algorithm, &parts)?;
            if key.len() != spec.len {
                return Err(Error::invalid(
                    "components",
                    format!(
                        "{} bytes each, the key spec asks for {}",
                        key.len(),
                        spec.len
                    ),
                ));
            }
            if let Some(expected) = expected_kcv {
                expected.check(&key.kcv(), "the key formed from the components")?;
            }
            self.store(spec.clone(), key)
        })();
        self.logged(
            &format!(
                "op=form-from-components key={} components={} alg={} usage={} mode={:?}{}",
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
        let r = (|| {
            check_label(label)?;
            let k = self.entry(kek)?;
            policy::check(
                Operation::Unwrap,
                &k.spec.label,
                k.spec.usage,
                k.spec.mode_of_use,
            )?;
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
            self.store(spec, key)
        })();
        self.logged(
            &format!(
                "op=import key={label} kek={}{}",
                kek.label(),
                r.as_ref()
                    .map(|i| format!(" usage={} kcv={}", i.spec.usage, i.kcv))
                    .unwrap_or_default()
            ),
            r,
        )
    }

    fn export_key_block(&self, key: &KeyHandle, kek: &KeyHandle) -> Result<String> {
        let r = (|| {
            let e = self.entry(key)?;
            let k = self.entry(kek)?;
            policy::check(
                Operation::Wrap,
                &k.spec.label,
                k.spec.usage,
                k.spec.mode_of_use,
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
        let what = format!("op=export key={} kek={}", key.label(), kek.label());
        let what = match &r {
            Ok((_, kcv, kek_kcv)) => format!("{what} kcv={kcv} kek_kcv={kek_kcv}"),
            Err(_) => what,
        };
        self.logged(&what, r.map(|(b, _, _)| b))
    }

    fn key_info(&self, key: &KeyHandle) -> Result<KeyInfo> {
        self.entry(key).map(|e| info(&e))
    }

    fn find_key(&self, label: &str) -> Result<KeyHandle> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table
            .by_label
            .get(label)
            .and_then(|id| table.slots.get(*id as usize - 1))
            .and_then(Option::as_ref)
            .map(|e| e.handle.clone())
            .ok_or_else(|| Error::NotFound(format!("key '{label}'")))
    }

    fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<KeyInfo> = table.live().map(|e| info(e)).collect();
        v.sort_by(|a, b| a.spec.label.cmp(&b.spec.label));
        Ok(v)
    }

    fn delete_key(&self, key: &KeyHandle) -> Result<()> {
        let r = (|| {
            let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
            let e = table.get(key)?.clone();
            let path = self.dir.join(KEYS).join(format!("{}.kb", e.spec.label));
            fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
            table.slots[key.id() as usize - 1] = None;
            table.by_label.remove(&e.spec.label);
            Ok(e.kcv)
        })();
        let what = format!("op=delete key={}", key.label());
        let what = match &r {
            Ok(kcv) => format!("{what} kcv={kcv}"),
            Err(_) => what,
        };
        self.logged(&what, r.map(|_| ()))
    }

    fn encrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.data_op(spec.key, Operation::Encrypt, 0, "encrypt", |e| {
            e.cipher
                .encrypt(spec.mode, spec.iv, spec.padding, data, out)
        })
    }

    /// In the boundary: the policy is checked once, then blocks are decrypted with the
    /// key's cached schedule into the reader's wiped buffer (see the trait method).
    fn decrypting_reader<'a>(
        &'a self,
        spec: &CipherSpec<'_>,
        input: Box<dyn std::io::Read + Send + 'a>,
    ) -> Result<Box<dyn std::io::Read + Send + 'a>> {
        self.data_op(spec.key, Operation::Decrypt, 1, "decrypt-file", |e| {
            let entry = e.clone();
            let reader = super::CbcDecryptReader::new(
                input,
                Box::new(move |iv: &[u8], buf: &mut [u8]| {
                    parallel_cbc_decrypt(&entry.cipher, iv, buf)
                }),
                e.cipher.block_size(),
                spec,
            )?;
            Ok(Box::new(reader) as Box<dyn std::io::Read + Send + 'a>)
        })
    }

    fn decrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.data_op(spec.key, Operation::Decrypt, 1, "decrypt", |e| {
            e.cipher
                .decrypt(spec.mode, spec.iv, spec.padding, data, out)
        })
    }

    fn translate(
        &self,
        from: &CipherSpec<'_>,
        to: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let table = self.read();
        let a = table.get(from.key)?;
        let b = table.get(to.key)?;
        let r = (|| {
            policy::check(
                Operation::Decrypt,
                &a.spec.label,
                a.spec.usage,
                a.spec.mode_of_use,
            )?;
            policy::check(
                Operation::Encrypt,
                &b.spec.label,
                b.spec.usage,
                b.spec.mode_of_use,
            )?;
            // What can be checked without the plaintext is checked before decrypting: the
            // output capacity for the longest possible result, the target IV, and a length
            // that cannot fit the target block when neither side pads.
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
            // Small fields (the common case: PAN, expiry, track data) stay in a small stack
            // buffer (a large one costs more to initialise than the cipher work); larger
            // fields use a zeroizing heap buffer. Only the bytes used are
            // wiped afterwards (on success and on failure): zeroizing the whole scratch
            // area would cost more than the cipher work for a 32-byte field.
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
                    // Past the decryption, every failure is the opaque one: a specific error
                    // here (length, buffer size) would reveal the plaintext length, i.e.
                    // where the padding was.
                    b.cipher
                        .encrypt(to.mode, to.iv, to.padding, &clear[..n], out)
                        .map_err(|_| Error::Crypto)
                });
            clear.zeroize();
            r
        })();
        match r {
            Ok(n) => {
                a.usage.counts[2].fetch_add(1, Ordering::Relaxed);
                b.usage.counts[3].fetch_add(1, Ordering::Relaxed);
                Ok(n)
            }
            Err(err) => self.data_failure("translate", &[a, b], err),
        }
    }

    fn translate_pin(
        &self,
        from: &PinSpec<'_>,
        to: &PinSpec<'_>,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        let a = self.entry(from.key)?;
        let b = self.entry(to.key)?;
        let r = (|| {
            policy::check(
                Operation::PinDecrypt,
                &a.spec.label,
                a.spec.usage,
                a.spec.mode_of_use,
            )?;
            policy::check(
                Operation::PinEncrypt,
                &b.spec.label,
                b.spec.usage,
                b.spec.mode_of_use,
            )?;
            pinblock::check_translation(from.format, to.format)?;
            for (e, f) in [(&a, from.format), (&b, to.format)] {
                match f {
                    PinBlockFormat::Iso4 => Self::check_alg(e, Algorithm::Aes, "ISO format 4")?,
                    _ => Self::check_alg(e, Algorithm::Tdes, "ISO formats 0, 1 and 3")?,
                }
            }
            // From here on, every failure is the same opaque error.
            let pin = match from.format {
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
            .map_err(|_| Error::Crypto)?;
            match to.format {
                PinBlockFormat::Iso4 => {
                    pinblock::encode_iso4(&b.key, &pin, pan).map(|blk| blk.to_vec())
                }
                f => {
                    let mut clear = pinblock::encode(f, &pin, Some(pan))?;
                    b.cipher.encrypt_ecb(&mut clear[..])?;
                    Ok(clear.to_vec())
                }
            }
            .map_err(|_| Error::Crypto)
        })();
        match r {
            Ok(v) => {
                a.usage.counts[4].fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Err(err) => self.data_failure("translate-pin", &[&a, &b], err),
        }
    }

    fn generate_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
    ) -> Result<MacTag> {
        self.data_op(key, Operation::MacGenerate(alg), 5, "mac-generate", |e| {
            Self::check_alg(e, alg.key_algorithm(), alg.name())?;
            crate::primitives::mac::mac(alg, &e.key, padding, data)
        })
    }

    fn verify_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
        mac: &[u8],
    ) -> Result<()> {
        self.data_op(key, Operation::MacVerify(alg), 5, "mac-verify", |e| {
            Self::check_alg(e, alg.key_algorithm(), alg.name())?;
            crate::verify_mac(alg, &e.key, padding, data, mac)
        })
    }
}
