//! The software HSM's key store: one file per key, `DIR/keys/<label>.kb`, holding a TR-31
//! version D key block under the store's AES-256 LMK, and the in-memory table of loaded keys.
//!
//! The block binds the key's usage, mode of use, exportability and, in proprietary optional
//! blocks, its label (`0L`), the store's id (`0S`) and the key's origin (`0O`: `G`
//! generated, `C` formed from components, `I<kek label>` imported under that KEK), so a key
//! file that is edited, renamed, or copied from another store under the same LMK fails to
//! load, and the origin cannot be changed without the LMK. Every key file is also listed
//! with its keyed hash in the store's manifest (`manifest.rs`): a missing, added or
//! replaced file is detected on open. Files are written atomically (temporary file, fsync,
//! rename, fsync of the directory).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::manifest::Manifest;
use super::rsa::RsaEntry;
use super::usage::Usage;
use crate::hsm::rsa::{RsaKeyInfo, RsaKeySpec};
use crate::hsm::{KeyHandle, KeyInfo, KeyOrigin, KeySpec};
use crate::keyblock::{
    self, Exportability, Header, KeyAlgorithm, ModeOfUse, OptionalBlock, Version,
};
use crate::rsa::RsaPrivateKey;
use crate::{Algorithm, BlockCipher, Error, Kcv, Result, SecretKey};

/// The key files' folder inside the store directory.
const KEYS: &str = "keys";
/// The optional block that binds the label inside each stored key block.
const LABEL_BLOCK: [u8; 2] = *b"0L";
/// The optional block that binds the store id inside each stored key block.
const STORE_BLOCK: [u8; 2] = *b"0S";
/// The optional block that binds the key's origin inside each stored key block.
const ORIGIN_BLOCK: [u8; 2] = *b"0O";
/// Handle ids of RSA key pairs start above this (symmetric keys count from 1), so a handle
/// says which table it belongs to.
const RSA_ID_BASE: u64 = 1 << 40;

/// The binding blocks of a stored key block: label, store id, origin.
pub(super) fn bindings(label: &str, store_id: &str, origin: &KeyOrigin) -> [OptionalBlock; 3] {
    [
        OptionalBlock {
            id: LABEL_BLOCK,
            data: label.to_string(),
        },
        OptionalBlock {
            id: STORE_BLOCK,
            data: store_id.to_string(),
        },
        OptionalBlock {
            id: ORIGIN_BLOCK,
            data: origin_text(origin),
        },
    ]
}

/// Checks the binding blocks of a verified stored key block against the file's `label`
/// and the store's id; returns the bound origin, or the reason for an integrity error.
pub(super) fn check_bindings(
    header: &Header,
    label: &str,
    store_id: &str,
) -> core::result::Result<KeyOrigin, &'static str> {
    let block = |id: [u8; 2]| {
        header
            .optional_blocks
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.data.as_str())
    };
    if block(LABEL_BLOCK) != Some(label) {
        return Err(
            "the label bound in the key block differs from the file name (file renamed or swapped)",
        );
    }
    if block(STORE_BLOCK) != Some(store_id) {
        return Err("the key block belongs to another key store (store id differs)");
    }
    block(ORIGIN_BLOCK)
        .and_then(origin_from)
        .ok_or("the key block carries no valid origin")
}

/// The stored header of an RSA key pair: version D, algorithm R, mode S (signs only),
/// not exportable, with its bindings.
pub(super) fn rsa_header(usage: crate::keyblock::KeyUsage, bindings: [OptionalBlock; 3]) -> Header {
    let mut h = Header::new(
        Version::D,
        usage,
        KeyAlgorithm::Rsa,
        ModeOfUse::S,
        Exportability::N,
    );
    h.optional_blocks.extend(bindings);
    h
}

fn origin_text(o: &KeyOrigin) -> String {
    match o {
        KeyOrigin::Generated => "G".into(),
        KeyOrigin::Components => "C".into(),
        KeyOrigin::Imported { kek } => format!("I{kek}"),
        KeyOrigin::Unknown => "U".into(),
    }
}

fn origin_from(s: &str) -> Option<KeyOrigin> {
    match s {
        "G" => Some(KeyOrigin::Generated),
        "C" => Some(KeyOrigin::Components),
        _ => s
            .strip_prefix('I')
            .filter(|k| !k.is_empty())
            .map(|k| KeyOrigin::Imported { kek: k.to_string() }),
    }
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, fsync,
/// rename, fsync of the directory. `private` files are created with mode 0600 (Unix).
pub(super) fn write_atomic(path: &Path, contents: &[u8], private: bool) -> Result<()> {
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

/// One loaded key: its handle, attributes, KCV, the key with its cached key schedule, and
/// its usage counters.
pub(super) struct Entry {
    pub(super) handle: KeyHandle,
    pub(super) spec: KeySpec,
    pub(super) kcv: Kcv,
    pub(super) key: SecretKey,
    pub(super) cipher: BlockCipher,
    pub(super) usage: Usage,
    /// How the key came to be, as bound in its key block.
    pub(super) origin: KeyOrigin,
}

impl Entry {
    /// What the HSM reports about the key: never key material.
    pub(super) fn info(&self) -> KeyInfo {
        KeyInfo {
            handle: self.handle.clone(),
            spec: self.spec.clone(),
            kcv: self.kcv,
        }
    }
}

/// The loaded keys, by handle id and by label.
#[derive(Default)]
pub(super) struct Table {
    /// Entry `id` lives at `slots[id - 1]`; ids are never reused, deleted keys leave `None`.
    slots: Vec<Option<Arc<Entry>>>,
    /// RSA key pair `id` lives at `rsa[id - RSA_ID_BASE - 1]`.
    rsa: Vec<Option<Arc<RsaEntry>>>,
    /// Labels of both kinds (one label space).
    by_label: HashMap<String, u64>,
}

impl Table {
    /// The entry of a handle this store issued and has not deleted.
    pub(super) fn get(&self, h: &KeyHandle) -> Result<&Arc<Entry>> {
        if self.get_rsa(h).is_ok() {
            return Err(Error::Policy(format!(
                "key '{}' is an RSA key pair: it only signs EMV messages",
                h.label()
            )));
        }
        usize::try_from(h.id())
            .ok()
            .and_then(|id| self.slots.get(id.wrapping_sub(1)))
            .and_then(Option::as_ref)
            .filter(|e| e.handle == *h)
            .ok_or_else(|| Error::NotFound(format!("key '{}'", h.label())))
    }

    /// The RSA key pair of a handle this store issued and has not deleted.
    pub(super) fn get_rsa(&self, h: &KeyHandle) -> Result<&Arc<RsaEntry>> {
        h.id()
            .checked_sub(RSA_ID_BASE + 1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.rsa.get(i))
            .and_then(Option::as_ref)
            .filter(|e| e.handle == *h)
            .ok_or_else(|| {
                let what = if self.slots_get(h).is_some() {
                    "is not an RSA key pair"
                } else {
                    "not found"
                };
                Error::NotFound(format!("RSA key '{}' ({what})", h.label()))
            })
    }

    fn slots_get(&self, h: &KeyHandle) -> Option<&Arc<Entry>> {
        usize::try_from(h.id())
            .ok()
            .and_then(|id| self.slots.get(id.wrapping_sub(1)))
            .and_then(Option::as_ref)
            .filter(|e| e.handle == *h)
    }

    /// The handle of the key (of either kind) labelled `label`.
    pub(super) fn find_handle(&self, label: &str) -> Result<KeyHandle> {
        let id = *self
            .by_label
            .get(label)
            .ok_or_else(|| Error::NotFound(format!("key '{label}'")))?;
        let h = if id > RSA_ID_BASE {
            self.rsa
                .get((id - RSA_ID_BASE - 1) as usize)
                .and_then(Option::as_ref)
                .map(|e| e.handle.clone())
        } else {
            self.slots
                .get(id as usize - 1)
                .and_then(Option::as_ref)
                .map(|e| e.handle.clone())
        };
        h.ok_or_else(|| Error::NotFound(format!("key '{label}'")))
    }

    /// Every loaded RSA key pair, in load order.
    pub(super) fn live_rsa(&self) -> impl Iterator<Item = &Arc<RsaEntry>> {
        self.rsa.iter().flatten()
    }

    fn insert_rsa(
        &mut self,
        spec: RsaKeySpec,
        key: RsaPrivateKey,
        origin: KeyOrigin,
    ) -> Arc<RsaEntry> {
        let id = RSA_ID_BASE + self.rsa.len() as u64 + 1;
        let entry = Arc::new(RsaEntry::new(
            KeyHandle::new(id, &spec.label),
            spec,
            key,
            origin,
        ));
        self.by_label.insert(entry.spec.label.clone(), id);
        self.rsa.push(Some(entry.clone()));
        entry
    }

    /// Every loaded key, in load order.
    pub(super) fn live(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.slots.iter().flatten()
    }

    fn insert(&mut self, spec: KeySpec, key: SecretKey, origin: KeyOrigin) -> Arc<Entry> {
        let id = self.slots.len() as u64 + 1;
        let entry = Arc::new(Entry {
            handle: KeyHandle::new(id, &spec.label),
            kcv: key.kcv(),
            cipher: key.cipher(),
            spec,
            key,
            usage: Usage::default(),
            origin,
        });
        self.by_label.insert(entry.spec.label.clone(), id);
        self.slots.push(Some(entry.clone()));
        entry
    }
}

/// The key files under `DIR/keys` and the table of the keys loaded from them. The key
/// table is behind an `RwLock`: data operations take the read lock only.
pub(super) struct KeyStore {
    dir: PathBuf,
    store_id: String,
    manifest: Arc<Manifest>,
    table: RwLock<Table>,
}

impl KeyStore {
    /// Creates the key folder of a new store in `dir`.
    pub(super) fn create_dir(dir: &Path) -> Result<()> {
        fs::create_dir_all(dir.join(KEYS)).map_err(|e| Error::io(dir, e))
    }

    /// Loads and verifies every key file of the store `store_id` in `dir` under `lmk`
    /// against `manifest`. A key file that fails to verify (changed, renamed, wrong LMK,
    /// another store's), is not in the manifest (added, or put back after deletion), differs
    /// from the manifest's record (replaced, rolled back), or a manifest key without its
    /// file (deleted) stops the load with an [`Error::Integrity`] naming the file.
    pub(super) fn load(
        dir: &Path,
        lmk: &SecretKey,
        store_id: &str,
        manifest: Arc<Manifest>,
    ) -> Result<Self> {
        let dir = dir.join(KEYS);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "kb"))
            .collect();
        files.sort();
        let mut listed = manifest.keys();
        let mut table = Table::default();
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
            let hash = manifest.hash(text.as_bytes())?;
            match listed.remove(&label) {
                None => {
                    return Err(integrity(
                        "key file not in the store's manifest (added, or put back after deletion)",
                    ));
                }
                Some(h) if !bool::from(subtle::ConstantTimeEq::ct_eq(&h[..], &hash[..])) => {
                    return Err(integrity(
                        "key file differs from the store's manifest (replaced or rolled back)",
                    ));
                }
                Some(_) => {}
            }
            let not_verified = || {
                integrity(
                    "key block does not verify under the LMK (changed, or another store's key)",
                )
            };
            let policy = keyblock::UnwrapPolicy {
                allow_legacy: false,
            };
            let asymmetric = keyblock::inspect(text.trim())
                .map_err(|_| not_verified())?
                .algorithm
                .is_asymmetric();
            if asymmetric {
                let (header, der) = keyblock::unwrap_asymmetric(lmk, text.trim(), &policy)
                    .map_err(|_| not_verified())?;
                let origin = check_bindings(&header, &label, store_id).map_err(integrity)?;
                let key = RsaPrivateKey::from_der(&der)
                    .map_err(|_| integrity("the RSA key in the key block does not check"))?;
                let spec = RsaKeySpec {
                    label: label.clone(),
                    bits: key.public_key().bits(),
                    exponent: key.exponent(),
                    usage: header.usage,
                };
                table.insert_rsa(spec, key, origin);
                continue;
            }
            let (header, key) =
                keyblock::unwrap(lmk, text.trim(), &policy).map_err(|_| not_verified())?;
            let origin = check_bindings(&header, &label, store_id).map_err(integrity)?;
            let spec = spec_from_header(&label, &header, key.len())?;
            table.insert(spec, key, origin);
        }
        if let Some(label) = listed.keys().next() {
            return Err(Error::Integrity {
                what: dir.join(format!("{label}.kb")).display().to_string(),
                reason: "key file listed in the store's manifest is missing (deleted)".into(),
            });
        }
        Ok(Self {
            dir,
            store_id: store_id.to_string(),
            manifest,
            table: RwLock::new(table),
        })
    }

    /// The table, for reading.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry of `h`, kept alive past the read lock.
    pub(super) fn entry(&self, h: &KeyHandle) -> Result<Arc<Entry>> {
        self.read().get(h).cloned()
    }

    /// Stores a new key: checks the label is valid and unused, writes it as a key block under
    /// `lmk` (label bound), then adds it to the table.
    pub(super) fn add(
        &self,
        lmk: &SecretKey,
        spec: KeySpec,
        key: SecretKey,
        origin: KeyOrigin,
    ) -> Result<KeyInfo> {
        crate::label::check(&spec.label, "label")?;
        let mut table = self.write();
        if table.by_label.contains_key(&spec.label) {
            return Err(Error::AlreadyExists(format!(
                "label '{}' is in use",
                spec.label
            )));
        }
        let mut header = header_for(&spec, Version::D, None)?;
        header
            .optional_blocks
            .extend(bindings(&spec.label, &self.store_id, &origin));
        let block = format!("{}\n", keyblock::wrap(lmk, &header, &key, None)?);
        let hash = self.manifest.hash(block.as_bytes())?;
        write_atomic(&self.path(&spec.label), block.as_bytes(), true)?;
        if let Err(e) = self.manifest.set_key(&spec.label, Some(hash)) {
            let _ = fs::remove_file(self.path(&spec.label));
            return Err(e);
        }
        Ok(table.insert(spec, key, origin).info())
    }

    /// Stores a new RSA key pair: checks the label is valid and unused, writes the private
    /// key's PKCS#1 DER as a version D key block of algorithm R under `lmk` (usage, mode S,
    /// label, store id and origin bound; listed in the manifest like every key), then adds
    /// it to the table.
    pub(super) fn add_rsa(
        &self,
        lmk: &SecretKey,
        spec: RsaKeySpec,
        key: RsaPrivateKey,
        origin: KeyOrigin,
    ) -> Result<RsaKeyInfo> {
        crate::label::check(&spec.label, "label")?;
        let mut table = self.write();
        if table.by_label.contains_key(&spec.label) {
            return Err(Error::AlreadyExists(format!(
                "label '{}' is in use",
                spec.label
            )));
        }
        let header = rsa_header(spec.usage, bindings(&spec.label, &self.store_id, &origin));
        let der = key.to_pkcs1_der()?;
        let block = format!("{}\n", keyblock::wrap_asymmetric(lmk, &header, &der, None)?);
        let hash = self.manifest.hash(block.as_bytes())?;
        write_atomic(&self.path(&spec.label), block.as_bytes(), true)?;
        if let Err(e) = self.manifest.set_key(&spec.label, Some(hash)) {
            let _ = fs::remove_file(self.path(&spec.label));
            return Err(e);
        }
        Ok(table.insert_rsa(spec, key, origin).info())
    }

    /// Deletes the key file of the RSA key pair `h`, then the entry; returns the SHA-1
    /// fingerprint of its modulus.
    pub(super) fn remove_rsa(&self, h: &KeyHandle) -> Result<String> {
        let mut table = self.write();
        let e = table.get_rsa(h)?.clone();
        let path = self.path(&e.spec.label);
        self.manifest.set_key(&e.spec.label, None)?;
        fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
        table.rsa[(h.id() - RSA_ID_BASE - 1) as usize] = None;
        table.by_label.remove(&e.spec.label);
        Ok(e.fingerprint())
    }

    /// Deletes the key file of `h`, then the entry; returns the key's KCV.
    pub(super) fn remove(&self, h: &KeyHandle) -> Result<Kcv> {
        let mut table = self.write();
        let e = table.get(h)?.clone();
        let path = self.path(&e.spec.label);
        self.manifest.set_key(&e.spec.label, None)?;
        fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
        table.slots[h.id() as usize - 1] = None;
        table.by_label.remove(&e.spec.label);
        Ok(e.kcv)
    }

    fn path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.kb"))
    }
}

fn key_algorithm(alg: Algorithm) -> KeyAlgorithm {
    match alg {
        Algorithm::Tdes => KeyAlgorithm::Tdes,
        Algorithm::Aes => KeyAlgorithm::Aes,
    }
}

/// The TR-31 header of a key with attributes `spec`, optionally binding `label`.
pub(super) fn header_for(spec: &KeySpec, version: Version, label: Option<&str>) -> Result<Header> {
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

/// The attributes a key block's header carries, for a key of `len` bytes named `label`.
pub(super) fn spec_from_header(label: &str, h: &Header, len: usize) -> Result<KeySpec> {
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
