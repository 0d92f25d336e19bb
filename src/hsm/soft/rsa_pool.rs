//! SoftHsm's pool of ICC RSA key pairs, generated ahead so that data preparation does not
//! wait for RSA key generation card by card.
//!
//! - **Layout**: one file per pair, `DIR/icc-pool/<bits>-<exponent>/<seq>.kb` (`seq` twelve
//!   digits), a version D key block of algorithm `R` (usage `S0`, mode `S`, not exportable)
//!   under the LMK whose payload is the pair's PKCS#1 DER. The block binds the label
//!   `icc-pool-<bits>-<exponent>-<seq>`, the store id and origin `G`, so a file that is
//!   edited, renamed to another sequence number or class, or copied from another store
//!   fails to load.
//! - **Size**: a pool entry is 1,377 bytes at 1024 bits and 2,433 bytes at 1984 bits (the
//!   DER of the private key, hex-encoded in the block, plus header and MAC); 10,000 pairs of
//!   1024 bits hold about 14 MB, and take about 40 MB of disk on a file system with 4 KB
//!   blocks (one file per pair).
//! - **Cursors**: the manifest (MACed under the LMK) holds, per class, `taken` and `filled`:
//!   the pairs `taken ≤ seq < filled` are available; sequence numbers only grow and are
//!   never reused, so a pair is handed out at most once even if its file is put back.
//! - **Taking** pairs (under the pool's mutex): read and verify the files from `taken` on,
//!   up to 16 of them, advance `taken` past them in the manifest (written atomically,
//!   fsynced), delete the files, then hand the pairs out one per call from this instance's
//!   memory (zeroized on drop). One manifest write per 16 cards instead of one per card:
//!   the fsyncs, not the RSA, bound the rate of taking. When the instance closes, the pairs
//!   it reserved and did not hand out are stored again at the end of their class (new
//!   sequence numbers). A crash loses them instead (at most 15 per class; their files are
//!   gone, or below the cursor and removed on the next open): a pair is never handed out
//!   twice, at the cost of at most 15 pairs per crash. A file that is missing or fails to
//!   verify is an [`Error::Integrity`] naming it, and the cursor does not move past it.
//! - **Filling**: pairs are generated on all cores **outside** the pool's mutex and the
//!   store's key table, in chunks of [`CHUNK`]; each chunk's files are then written and
//!   `filled` advanced once. A crash in between leaves files at or above `filled`, which
//!   the next fill overwrites and the next open removes.
//! - **Processes**: the store lock (`lock.rs`, `flock` on the store directory) admits one
//!   `SoftHsm` per store at a time across processes, and the pool's mutex orders the
//!   threads of that instance, so two takers never see the same cursor.

use std::collections::HashMap;
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
/// Pairs moved out of the store per manifest write when taking.
const RESERVE: u64 = 16;

/// The pool of one store.
pub(super) struct Pool {
    dir: PathBuf,
    store_id: String,
    manifest: Arc<Manifest>,
    /// Orders takes and fills of this instance.
    lock: Mutex<()>,
    /// Pairs taken out of the store and not yet handed out, per class (next at the end).
    reserved: Mutex<HashMap<String, Vec<RsaPrivateKey>>>,
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
            reserved: Mutex::new(HashMap::new()),
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
        let class = class(bits, exponent);
        let (taken, filled) = self.manifest.pool(&class);
        IccPoolLevel {
            bits,
            exponent,
            available: filled - taken + self.reserved_count(&class),
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
                    available: filled - taken + self.reserved_count(&c),
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
            available: filled - taken + self.reserved_count(&class),
        })
    }

    /// Reads and verifies the entry `seq` of `class`.
    fn load(&self, lmk: &SecretKey, class: &str, seq: u64) -> Result<RsaPrivateKey> {
        let path = self.path(class, seq);
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
        check_bindings(&header, &Self::label(class, seq), &self.store_id).map_err(integrity)?;
        let key = RsaPrivateKey::from_der(&der)
            .map_err(|_| integrity("the RSA key in the pool entry does not check"))?;
        match parse_class(class) {
            Some((bits, e)) if key.public_key().bits() == bits && key.exponent() == e => Ok(key),
            _ => Err(integrity("the pool entry's key is not of its class")),
        }
    }

    /// Takes the oldest pair of `bits` and `exponent`, or `None` when the class is empty.
    ///
    /// Pairs are moved out of the store [`RESERVE`] at a time (one manifest write, the
    /// costly fsyncs, per reservation rather than per card) into this instance's memory,
    /// then handed out one per call; [`give_back`](Self::give_back) stores what is left
    /// when the instance closes.
    pub(super) fn take(
        &self,
        lmk: &SecretKey,
        bits: u32,
        exponent: RsaExponent,
    ) -> Result<Option<RsaPrivateKey>> {
        let class = class(bits, exponent);
        let _one = self.guard();
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        let queue = reserved.entry(class.clone()).or_default();
        if let Some(k) = queue.pop() {
            return Ok(Some(k));
        }
        let (taken, filled) = self.manifest.pool(&class);
        if taken >= filled {
            return Ok(None);
        }
        // Verify up to RESERVE entries; stop at the first that fails (reported when it is
        // the first, else met again by a later call).
        let want = (filled - taken).min(RESERVE);
        let mut keys = Vec::with_capacity(want as usize);
        for seq in taken..taken + want {
            match self.load(lmk, &class, seq) {
                Ok(k) => keys.push(k),
                Err(e) if keys.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        // Remove before use: from here on these pairs are never handed out from the store
        // again.
        let n = keys.len() as u64;
        self.manifest.set_pool(&class, taken + n, filled)?;
        for seq in taken..taken + n {
            let _ = fs::remove_file(self.path(&class, seq));
        }
        // Handed out oldest first.
        keys.reverse();
        let first = keys.pop();
        *queue = keys;
        Ok(first)
    }

    /// Pairs reserved by this instance and not handed out, per class.
    fn reserved_count(&self, class: &str) -> u64 {
        let reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        reserved.get(class).map_or(0, |q| q.len() as u64)
    }

    /// Stores the pairs this instance reserved and did not hand out at the end of their
    /// class again (new sequence numbers); returns how many. Called when the instance
    /// closes.
    pub(super) fn give_back(&self, lmk: &SecretKey) -> Result<u64> {
        let queues: Vec<(String, Vec<RsaPrivateKey>)> = {
            let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
            reserved.drain().filter(|(_, q)| !q.is_empty()).collect()
        };
        let mut n = 0;
        for (class, mut keys) in queues {
            let Some((bits, e)) = parse_class(&class) else {
                continue;
            };
            keys.reverse();
            self.add(lmk, bits, e, &keys)?;
            n += keys.len() as u64;
        }
        Ok(n)
    }
}
