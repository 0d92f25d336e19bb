//! SoftHsm's pool of ICC RSA key pairs, generated ahead so that data preparation does not
//! wait for RSA key generation card by card.
//!
//! - **Layout**: one file per pair, `DIR/icc-pool/<bits>-<exponent>/<seq>.kb` (`seq` twelve
//!   digits), a version D key block of algorithm `R` (usage `S0`, mode `S`, not exportable)
//!   under the LMK whose payload is the pair's PKCS#1 DER. The block binds the label
//!   `icc-pool-<bits>-<exponent>-<seq>`, the store id and origin `G`, so a file that is
//!   edited, renamed to another sequence number or class, or copied from another store
//!   fails to load.
//! - **Size**: a pool entry is about 1.4 KB at 1024 bits and 2.6 KB at 1984 bits (the DER of
//!   the private key, hex-encoded in the block, plus header and MAC); 10,000 pairs of 1024
//!   bits take about 14 MB.
//! - **Cursors**: the manifest (MACed under the LMK) holds, per class, `taken` and `filled`:
//!   the pairs `taken ≤ seq < filled` are available; sequence numbers only grow and are
//!   never reused, so a pair is handed out at most once even if its file is put back.
//! - **Taking** a pair (under the pool's mutex): read and verify the file of `taken`,
//!   advance `taken` in the manifest (written atomically, fsynced), delete the file, then
//!   hand the pair out. A crash after the manifest write loses that pair (its file, if
//!   left, is below the cursor and removed on the next open): a pair is never handed out
//!   twice, at the cost of at most one pair per crash. A file that is missing or fails to
//!   verify is an [`Error::Integrity`] naming it, and the cursor does not move.
//! - **Filling**: pairs are generated on all cores **outside** the pool's mutex and the
//!   store's key table, in chunks of [`CHUNK`]; each chunk's files are then written and
//!   `filled` advanced once. A crash in between leaves files at or above `filled`, which
//!   the next fill overwrites and the next open removes.
//! - **Processes**: the store lock (`lock.rs`, `flock` on the store directory) admits one
//!   `SoftHsm` per store at a time across processes, and the pool's mutex orders the
//!   threads of that instance, so two takers never see the same cursor.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::manifest::Manifest;
use super::store::{bindings, check_bindings, rsa_header, write_atomic};
use crate::hsm::KeyOrigin;
use crate::hsm::rsa::IccPoolLevel;
use crate::keyblock::{self, KeyUsage};
use crate::rsa::{RsaExponent, RsaPrivateKey};
use crate::{Error, Result, SecretKey};

/// The pool's folder inside the store directory.
const POOL: &str = "icc-pool";
/// Pairs generated and stored per manifest write when filling.
pub(super) const CHUNK: usize = 32;

/// The pool of one store.
pub(super) struct Pool {
    dir: PathBuf,
    store_id: String,
    manifest: Arc<Manifest>,
    /// Orders takes and fills of this instance.
    lock: Mutex<()>,
}

fn class(bits: u32, exponent: RsaExponent) -> String {
    format!("{bits}-{}", exponent.value())
}

fn parse_class(c: &str) -> Option<(u32, RsaExponent)> {
    let (b, e) = c.split_once('-')?;
    Some((
        b.parse().ok()?,
        RsaExponent::from_value(e.parse().ok()?).ok()?,
    ))
}

impl Pool {
    /// The pool of the store in `dir`; removes the files outside each class's cursors (left
    /// by a crash) and returns how many it removed.
    pub(super) fn open(
        dir: &Path,
        store_id: &str,
        manifest: Arc<Manifest>,
    ) -> Result<(Self, usize)> {
        let pool = Self {
            dir: dir.join(POOL),
            store_id: store_id.to_string(),
            manifest,
            lock: Mutex::new(()),
        };
        let removed = pool.clean()?;
        Ok((pool, removed))
    }

    fn clean(&self) -> Result<usize> {
        let classes = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut removed = 0;
        for c in classes.flatten() {
            let name = c.file_name().to_string_lossy().into_owned();
            let (taken, filled) = self.manifest.pool(&name);
            removed += super::manifest::clean_temporaries(&c.path())?;
            let files = fs::read_dir(c.path()).map_err(|e| Error::io(c.path(), e))?;
            for f in files.flatten() {
                let seq = f
                    .path()
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u64>().ok());
                if seq.is_some_and(|s| s < taken || s >= filled) {
                    fs::remove_file(f.path()).map_err(|e| Error::io(f.path(), e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, class: &str, seq: u64) -> PathBuf {
        self.dir.join(class).join(format!("{seq:012}.kb"))
    }

    fn label(class: &str, seq: u64) -> String {
        format!("icc-pool-{class}-{seq}")
    }

    /// The level of one class.
    pub(super) fn level(&self, bits: u32, exponent: RsaExponent) -> IccPoolLevel {
        let (taken, filled) = self.manifest.pool(&class(bits, exponent));
        IccPoolLevel {
            bits,
            exponent,
            available: filled - taken,
        }
    }

    /// The levels of every class the manifest knows, by bits then exponent.
    pub(super) fn levels(&self) -> Vec<IccPoolLevel> {
        let mut v: Vec<IccPoolLevel> = self
            .manifest
            .pools()
            .into_iter()
            .filter_map(|(c, (taken, filled))| {
                parse_class(&c).map(|(bits, exponent)| IccPoolLevel {
                    bits,
                    exponent,
                    available: filled - taken,
                })
            })
            .collect();
        v.sort_by_key(|l| (l.bits, l.exponent.value()));
        v
    }

    /// Stores `keys` (all of `bits` and `exponent`) at the end of their class; returns the
    /// class's level.
    pub(super) fn add(
        &self,
        lmk: &SecretKey,
        bits: u32,
        exponent: RsaExponent,
        keys: &[RsaPrivateKey],
    ) -> Result<IccPoolLevel> {
        let class = class(bits, exponent);
        let _one = self.guard();
        let (taken, filled) = self.manifest.pool(&class);
        let folder = self.dir.join(&class);
        fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        for (i, key) in keys.iter().enumerate() {
            let seq = filled + i as u64;
            let header = rsa_header(
                KeyUsage::S0,
                bindings(
                    &Self::label(&class, seq),
                    &self.store_id,
                    &KeyOrigin::Generated,
                ),
            );
            let der = key.to_pkcs1_der()?;
            let block = format!("{}\n", keyblock::wrap_asymmetric(lmk, &header, &der, None)?);
            write_atomic(&self.path(&class, seq), block.as_bytes(), true)?;
        }
        let filled = filled + keys.len() as u64;
        self.manifest.set_pool(&class, taken, filled)?;
        Ok(IccPoolLevel {
            bits,
            exponent,
            available: filled - taken,
        })
    }

    /// Takes the oldest pair of `bits` and `exponent`, or `None` when the class is empty.
    pub(super) fn take(
        &self,
        lmk: &SecretKey,
        bits: u32,
        exponent: RsaExponent,
    ) -> Result<Option<RsaPrivateKey>> {
        let class = class(bits, exponent);
        let _one = self.guard();
        let (taken, filled) = self.manifest.pool(&class);
        if taken >= filled {
            return Ok(None);
        }
        let path = self.path(&class, taken);
        let integrity = |reason: &str| Error::Integrity {
            what: path.display().to_string(),
            reason: reason.to_string(),
        };
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(integrity(
                    "ICC key pool entry listed by the manifest's cursors is missing (deleted)",
                ));
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let (header, der) = keyblock::unwrap_asymmetric(
            lmk,
            text.trim(),
            &keyblock::UnwrapPolicy {
                allow_legacy: false,
            },
        )
        .map_err(|_| {
            integrity("pool entry does not verify under the LMK (changed, or another store's)")
        })?;
        check_bindings(&header, &Self::label(&class, taken), &self.store_id).map_err(integrity)?;
        let key = RsaPrivateKey::from_der(&der)
            .map_err(|_| integrity("the RSA key in the pool entry does not check"))?;
        if key.public_key().bits() != bits || key.exponent() != exponent {
            return Err(integrity("the pool entry's key is not of its class"));
        }
        // Remove before use: from here on this pair is never handed out again.
        self.manifest.set_pool(&class, taken + 1, filled)?;
        let _ = fs::remove_file(&path);
        Ok(Some(key))
    }
}
