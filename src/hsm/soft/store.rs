//! The software HSM's key store: one file per key, `DIR/keys/<label>.kb`, holding a TR-31
//! version D key block under the store's AES-256 LMK, and the in-memory table of loaded keys.
//!
//! The block binds the key's usage, mode of use, exportability and (in the proprietary
//! optional block `0L`) its label, so a key file that is edited, swapped or renamed fails
//! to load. Files are written atomically (temporary file, fsync, rename, fsync of the
//! directory).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::usage::Usage;
use crate::hsm::{KeyHandle, KeyInfo, KeySpec};
use crate::keyblock::{self, Header, KeyAlgorithm, OptionalBlock, Version};
use crate::{Algorithm, BlockCipher, Error, Kcv, Result, SecretKey};

/// The key files' folder inside the store directory.
const KEYS: &str = "keys";
/// The optional block that binds the label inside each stored key block.
const LABEL_BLOCK: [u8; 2] = *b"0L";

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
    by_label: HashMap<String, u64>,
}

impl Table {
    /// The entry of a handle this store issued and has not deleted.
    pub(super) fn get(&self, h: &KeyHandle) -> Result<&Arc<Entry>> {
        usize::try_from(h.id())
            .ok()
            .and_then(|id| self.slots.get(id.wrapping_sub(1)))
            .and_then(Option::as_ref)
            .filter(|e| e.handle == *h)
            .ok_or_else(|| Error::NotFound(format!("key '{}'", h.label())))
    }

    /// The entry labelled `label`.
    pub(super) fn find(&self, label: &str) -> Result<&Arc<Entry>> {
        self.by_label
            .get(label)
            .and_then(|id| self.slots.get(*id as usize - 1))
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::NotFound(format!("key '{label}'")))
    }

    /// Every loaded key, in load order.
    pub(super) fn live(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.slots.iter().flatten()
    }

    fn insert(&mut self, spec: KeySpec, key: SecretKey) -> Arc<Entry> {
        let id = self.slots.len() as u64 + 1;
        let entry = Arc::new(Entry {
            handle: KeyHandle::new(id, &spec.label),
            kcv: key.kcv(),
            cipher: key.cipher(),
            spec,
            key,
            usage: Usage::default(),
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
    table: RwLock<Table>,
}

impl KeyStore {
    /// Creates the key folder of a new store in `dir`.
    pub(super) fn create_dir(dir: &Path) -> Result<()> {
        fs::create_dir_all(dir.join(KEYS)).map_err(|e| Error::io(dir, e))
    }

    /// Loads and verifies every key file of the store in `dir` under `lmk`. A key file that
    /// fails to verify (changed, swapped, renamed, wrong LMK) stops the load with an
    /// [`Error::Integrity`] naming the file.
    pub(super) fn load(dir: &Path, lmk: &SecretKey) -> Result<Self> {
        let dir = dir.join(KEYS);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "kb"))
            .collect();
        files.sort();
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
            let (header, key) = keyblock::unwrap(
                lmk,
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
            table.insert(spec, key);
        }
        Ok(Self {
            dir,
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
    pub(super) fn add(&self, lmk: &SecretKey, spec: KeySpec, key: SecretKey) -> Result<KeyInfo> {
        crate::label::check(&spec.label, "label")?;
        let mut table = self.write();
        if table.by_label.contains_key(&spec.label) {
            return Err(Error::AlreadyExists(format!(
                "label '{}' is in use",
                spec.label
            )));
        }
        let header = header_for(&spec, Version::D, Some(&spec.label))?;
        let block = keyblock::wrap(lmk, &header, &key, None)?;
        write_atomic(
            &self.path(&spec.label),
            format!("{block}\n").as_bytes(),
            true,
        )?;
        Ok(table.insert(spec, key).info())
    }

    /// Deletes the key file of `h`, then the entry; returns the key's KCV.
    pub(super) fn remove(&self, h: &KeyHandle) -> Result<Kcv> {
        let mut table = self.write();
        let e = table.get(h)?.clone();
        let path = self.path(&e.spec.label);
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
