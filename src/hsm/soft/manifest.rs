//! The key store's manifest, `DIR/manifest`: what the store holds, MACed under a key derived
//! from the LMK so that whoever can edit the directory but does not hold the LMK cannot
//! make the store say something else.
//!
//! ```text
//! format=pmp-softhsm-manifest-1
//! store=<store id, 32 hex>
//! lmk=<TEST|PRODUCTION>
//! generation=<n>
//! audit=<last seq> <chain, 32 hex>
//! key=<label> <keyed hash of the key file, 32 hex>     (one line per key, sorted by label)
//! officer=<id> <salt, 32 hex> <Argon2id hash, 64 hex>  (one line per officer, sorted by id)
//! pool=<bits>-<exponent> <taken> <filled>             (one line per ICC key pool class)
//! mac=<AES-CMAC under K_manifest of every line above, 32 hex>
//! ```
//!
//! - `K_manifest` is derived from the LMK (SP 800-108 counter mode, AES-CMAC PRF, label
//!   "pmp-core manifest"); the keyed hash of a key file is AES-CMAC under the same key.
//! - `generation` grows by one on every rewrite (a key added or deleted, an audit entry).
//! - `audit` anchors the audit log's tail: the log must hold that entry with that chain
//!   value, so a truncated or rolled-back log is detected on open (entries after the anchor
//!   are chained under the LMK-derived audit key and are accepted: a crash may come between
//!   the log append and the manifest rewrite).
//! - A key file that is missing, added, replaced (even by an older version of itself) is
//!   detected on open by its keyed hash.
//! - `pool` holds the cursors of one ICC key pool class (`rsa_pool.rs`): entries `taken`
//!   (inclusive) to `filled` (exclusive) are available; sequence numbers are never reused.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::audit::derive_key;
use super::lmk::LmkKind;
use super::store::write_atomic;
use crate::{Error, Result, SecretKey};

/// The manifest's file name in the store directory.
pub(super) const MANIFEST: &str = "manifest";
const FORMAT: &str = "pmp-softhsm-manifest-1";

/// A 16-byte keyed hash or chain value.
pub(super) type Tag = [u8; 16];

struct State {
    generation: u64,
    audit_seq: u64,
    audit_chain: Tag,
    keys: BTreeMap<String, Tag>,
    officers: BTreeMap<String, Credential>,
    /// ICC key pool cursors per class (`<bits>-<exponent>`): (taken, filled).
    pools: BTreeMap<String, (u64, u64)>,
}

/// An officer's stored credential: Argon2id salt and hash of the passphrase.
#[derive(Clone)]
pub(super) struct Credential {
    pub(super) salt: Tag,
    pub(super) hash: [u8; 32],
}

/// The manifest of an open store; every change is written through atomically.
pub(super) struct Manifest {
    path: PathBuf,
    key: SecretKey,
    store_id: String,
    kind: LmkKind,
    state: Mutex<State>,
}

fn integrity(path: &Path, reason: impl Into<String>) -> Error {
    Error::Integrity {
        what: path.display().to_string(),
        reason: reason.into(),
    }
}

fn tag_hex(s: &str) -> Option<Tag> {
    let mut t = [0u8; 16];
    hex::decode_to_slice(s, &mut t).ok().map(|()| t)
}

impl Manifest {
    fn key_for(lmk: &SecretKey) -> Result<SecretKey> {
        derive_key(lmk, b"pmp-core manifest")
    }

    /// Writes the empty manifest of a new store.
    pub(super) fn create(
        dir: &Path,
        lmk: &SecretKey,
        store_id: &str,
        kind: LmkKind,
    ) -> Result<Self> {
        let m = Self {
            path: dir.join(MANIFEST),
            key: Self::key_for(lmk)?,
            store_id: store_id.to_string(),
            kind,
            state: Mutex::new(State {
                generation: 0,
                audit_seq: 0,
                audit_chain: [0; 16],
                keys: BTreeMap::new(),
                officers: BTreeMap::new(),
                pools: BTreeMap::new(),
            }),
        };
        let mut st = m.lock();
        m.write(&mut st)?;
        drop(st);
        Ok(m)
    }

    /// Reads and verifies the manifest of the store `store_id` in `dir`. A missing file, a
    /// MAC that does not verify, another store's id or LMK kind is an [`Error::Integrity`].
    pub(super) fn open(dir: &Path, lmk: &SecretKey, store_id: &str, kind: LmkKind) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(integrity(
                    &path,
                    "the store's manifest is missing (deleted)",
                ));
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let key = Self::key_for(lmk)?;
        let bad = |r: &str| integrity(&path, r.to_string());
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or_else(|| bad("malformed manifest"))?;
        let (body, mac_line) = text.split_at(body_end);
        let mac = mac_line
            .trim_end()
            .strip_prefix("mac=")
            .and_then(tag_hex)
            .ok_or_else(|| bad("malformed manifest (no MAC line)"))?;
        let want = crate::cmac(&key, body.as_bytes())?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(want.as_bytes(), &mac[..])) {
            return Err(bad(
                "the manifest's MAC does not verify (edited, or another LMK's manifest)",
            ));
        }
        let mut st = State {
            generation: 0,
            audit_seq: 0,
            audit_chain: [0; 16],
            keys: BTreeMap::new(),
            officers: BTreeMap::new(),
            pools: BTreeMap::new(),
        };
        let (mut format_ok, mut store_ok, mut kind_ok) = (false, false, false);
        for line in body.lines() {
            match line.split_once('=') {
                Some(("format", f)) => format_ok = f == FORMAT,
                Some(("store", s)) => store_ok = s == store_id,
                Some(("lmk", k)) => kind_ok = k == kind.as_str(),
                Some(("generation", g)) => {
                    st.generation = g.parse().map_err(|_| bad("malformed generation"))?
                }
                Some(("audit", a)) => {
                    let (seq, chain) = a.split_once(' ').ok_or_else(|| bad("malformed audit"))?;
                    st.audit_seq = seq.parse().map_err(|_| bad("malformed audit"))?;
                    st.audit_chain = tag_hex(chain).ok_or_else(|| bad("malformed audit"))?;
                }
                Some(("key", k)) => {
                    let (label, h) = k.split_once(' ').ok_or_else(|| bad("malformed key"))?;
                    st.keys.insert(
                        label.to_string(),
                        tag_hex(h).ok_or_else(|| bad("malformed key"))?,
                    );
                }
                Some(("officer", o)) => {
                    let mut it = o.split(' ');
                    let (id, salt, hash) = (it.next(), it.next().and_then(tag_hex), it.next());
                    let mut h = [0u8; 32];
                    match (id, salt, hash.map(|x| hex::decode_to_slice(x, &mut h))) {
                        (Some(id), Some(salt), Some(Ok(()))) => {
                            st.officers
                                .insert(id.to_string(), Credential { salt, hash: h });
                        }
                        _ => return Err(bad("malformed officer")),
                    }
                }
                Some(("pool", p)) => {
                    let mut it = p.split(' ');
                    let class = it.next().filter(|c| !c.is_empty());
                    let taken = it.next().and_then(|t| t.parse::<u64>().ok());
                    let filled = it.next().and_then(|f| f.parse::<u64>().ok());
                    match (class, taken, filled, it.next()) {
                        (Some(c), Some(t), Some(f), None) if t <= f => {
                            st.pools.insert(c.to_string(), (t, f));
                        }
                        _ => return Err(bad("malformed pool")),
                    }
                }
                _ => return Err(bad("malformed manifest line")),
            }
        }
        if !format_ok {
            return Err(bad("not a pmp-softhsm-manifest-1 manifest"));
        }
        if !store_ok || !kind_ok {
            return Err(bad(
                "the manifest belongs to another store (store id or LMK kind differs from store.meta)",
            ));
        }
        Ok(Self {
            path,
            key,
            store_id: store_id.to_string(),
            kind,
            state: Mutex::new(st),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, st: &mut State) -> Result<()> {
        st.generation += 1;
        let mut body = format!(
            "format={FORMAT}\nstore={}\nlmk={}\ngeneration={}\naudit={} {}\n",
            self.store_id,
            self.kind.as_str(),
            st.generation,
            st.audit_seq,
            hex::encode_upper(st.audit_chain)
        );
        for (label, h) in &st.keys {
            body.push_str(&format!("key={label} {}\n", hex::encode_upper(h)));
        }
        for (id, c) in &st.officers {
            body.push_str(&format!(
                "officer={id} {} {}\n",
                hex::encode_upper(c.salt),
                hex::encode_upper(c.hash)
            ));
        }
        for (class, (taken, filled)) in &st.pools {
            body.push_str(&format!("pool={class} {taken} {filled}\n"));
        }
        let mac = crate::cmac(&self.key, body.as_bytes())?;
        body.push_str(&format!("mac={}\n", hex::encode_upper(mac.as_bytes())));
        write_atomic(&self.path, body.as_bytes(), false)
    }

    /// The keyed hash of a key file's contents.
    pub(super) fn hash(&self, contents: &[u8]) -> Result<Tag> {
        let t = crate::cmac(&self.key, contents)?;
        let mut out = [0u8; 16];
        out.copy_from_slice(t.as_bytes());
        Ok(out)
    }

    /// The keys the manifest lists, with their keyed hashes.
    pub(super) fn keys(&self) -> BTreeMap<String, Tag> {
        self.lock().keys.clone()
    }

    /// The anchored audit tail: (last sequence, chain value).
    pub(super) fn audit_anchor(&self) -> (u64, Tag) {
        let st = self.lock();
        (st.audit_seq, st.audit_chain)
    }

    /// Records a key file (`Some(hash)`) or its removal (`None`), and rewrites the manifest.
    pub(super) fn set_key(&self, label: &str, hash: Option<Tag>) -> Result<()> {
        let mut st = self.lock();
        match hash {
            Some(h) => st.keys.insert(label.to_string(), h),
            None => st.keys.remove(label),
        };
        self.write(&mut st)
    }

    /// The credential of officer `id`, if enrolled.
    pub(super) fn officer(&self, id: &str) -> Option<Credential> {
        self.lock().officers.get(id).cloned()
    }

    /// How many officers are enrolled.
    pub(super) fn officer_count(&self) -> usize {
        self.lock().officers.len()
    }

    /// Enrols (or re-enrols) officer `id` and rewrites the manifest.
    pub(super) fn set_officer(&self, id: &str, c: Credential) -> Result<()> {
        let mut st = self.lock();
        st.officers.insert(id.to_string(), c);
        self.write(&mut st)
    }

    /// The ICC key pool cursors of `class` (`<bits>-<exponent>`): (taken, filled).
    pub(super) fn pool(&self, class: &str) -> (u64, u64) {
        self.lock().pools.get(class).copied().unwrap_or((0, 0))
    }

    /// Every ICC key pool class with its cursors.
    pub(super) fn pools(&self) -> BTreeMap<String, (u64, u64)> {
        self.lock().pools.clone()
    }

    /// Sets the ICC key pool cursors of `class` and rewrites the manifest.
    pub(super) fn set_pool(&self, class: &str, taken: u64, filled: u64) -> Result<()> {
        let mut st = self.lock();
        st.pools.insert(class.to_string(), (taken, filled));
        self.write(&mut st)
    }

    /// Anchors the audit log's tail and rewrites the manifest.
    pub(super) fn set_audit(&self, seq: u64, chain: Tag) -> Result<()> {
        let mut st = self.lock();
        st.audit_seq = seq;
        st.audit_chain = chain;
        self.write(&mut st)
    }
}

/// Removes the temporary files an interrupted atomic write left in `dir` (names
/// `.<file>.tmp<pid>-<n>`); returns how many.
pub(super) fn clean_temporaries(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp") && e.path().is_file() {
            fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
            n += 1;
        }
    }
    Ok(n)
}
