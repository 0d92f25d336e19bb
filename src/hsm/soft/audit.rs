//! The software HSM's audit log: `DIR/audit.log`, one entry per line, chained with a MAC.
//!
//! Line format (space-separated, the text last):
//!
//! ```text
//! <seq> <unix-seconds> <chain> <text>
//! ```
//!
//! `chain` is the hex of AES-CMAC(K_audit, prev_chain ‖ seq ‖ time ‖ text), the first
//! entry's `prev_chain` being 16 zero bytes. `K_audit` is derived from the LMK (NIST
//! SP 800-108 counter-mode KDF with AES-CMAC, label "pmp-core audit"), so that whoever can
//! edit the file but does not hold the LMK cannot forge a consistent chain. A changed,
//! removed, inserted or reordered entry breaks the chain at that line. The text never
//! contains a secret: operation, key labels and KCVs, outcome.
//!
//! The tail is anchored in the store's manifest (`manifest.rs`): the manifest records the
//! last entry's sequence and chain value, so removing the last entries (truncation) or
//! putting back an older copy of the log (rollback) is detected on open and by
//! [`verify_audit_log`]. The anchor is rewritten after every key-management entry, after
//! each batch of usage summaries, on drop, and for data-failure entries at most once a
//! second (a manifest rewrite costs about 10 ms of fsyncs; a run of failures must not
//! cost that per entry): only failure entries of the last second before a crash or a
//! truncation can go undetected.
//!
//! A write that fails part-way (full disk) is undone by truncating the file back to its
//! last complete entry; if even that fails the log refuses further entries until the store
//! is reopened. A torn final line left by a crash (no final newline) is detected on open,
//! kept as evidence in `DIR/audit.torn-<seq>-<unix-seconds>`, removed from the log, and the
//! chain continues from the last good entry with an `op=audit-recover` entry saying so.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::lmk::{self, LmkKind, LmkSource, Meta};
use super::manifest::Manifest;
use super::store::Entry;
use super::usage::Counted;
use crate::{Error, Result, SecretKey};

/// The audit log's file name in the store directory.
pub(super) const AUDIT: &str = "audit.log";

/// The audit log writer. Entries other than `keystore-init` end with the store's LMK kind
/// (`lmk=TEST` or `lmk=PRODUCTION`).
pub(super) struct AuditLog {
    path: PathBuf,
    key: SecretKey,
    kind: LmkKind,
    manifest: Arc<Manifest>,
    state: Mutex<State>,
}

struct State {
    file: File,
    seq: u64,
    chain: [u8; 16],
    /// The file's length after the last complete entry.
    len: u64,
    /// A failed write could not be undone: no further entry until the store is reopened.
    broken: bool,
    /// The sequence last anchored in the manifest, and when.
    anchored: u64,
    anchored_at: std::time::Instant,
}

impl core::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Derives the audit key from the LMK (SP 800-108 counter mode, AES-CMAC PRF, 256 bits).
pub(super) fn derive_key(lmk: &SecretKey, label: &[u8]) -> Result<SecretKey> {
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut input = Vec::with_capacity(label.len() + 4);
        input.push(i as u8 + 1);
        input.extend_from_slice(label);
        input.push(0);
        input.extend_from_slice(&256u16.to_be_bytes());
        chunk.copy_from_slice(crate::cmac(lmk, &input)?.as_bytes());
    }
    SecretKey::new(crate::Algorithm::Aes, &*out)
}

fn link(key: &SecretKey, prev: &[u8; 16], seq: u64, time: u64, text: &str) -> Result<[u8; 16]> {
    let mut input = Vec::with_capacity(48 + text.len());
    input.extend_from_slice(prev);
    input.extend_from_slice(&seq.to_be_bytes());
    input.extend_from_slice(&time.to_be_bytes());
    input.extend_from_slice(text.as_bytes());
    let tag = crate::cmac(key, &input)?;
    let mut out = [0u8; 16];
    out.copy_from_slice(tag.as_bytes());
    Ok(out)
}

/// The outcome of [`verify_audit_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerdict {
    /// Number of entries that verified.
    pub entries: u64,
}

struct Parsed<'a> {
    seq: u64,
    time: u64,
    chain: [u8; 16],
    text: &'a str,
}

fn parse_line(line: &str) -> Option<Parsed<'_>> {
    let mut it = line.splitn(4, ' ');
    let seq = it.next()?.parse().ok()?;
    let time = it.next()?.parse().ok()?;
    let chain_hex = it.next()?;
    let text = it.next()?;
    let mut chain = [0u8; 16];
    hex::decode_to_slice(chain_hex, &mut chain).ok()?;
    Some(Parsed {
        seq,
        time,
        chain,
        text,
    })
}

/// Walks the log; returns the last (seq, chain) or the first bad line. The entry `anchor`
/// names (the manifest's record of the tail) must be there with that chain value.
fn walk(path: &Path, key: &SecretKey, anchor: (u64, [u8; 16])) -> Result<(u64, [u8; 16])> {
    let (last, chain) = walk_chain(path, key, anchor)?;
    if last < anchor.0 {
        return Err(Error::Integrity {
            what: path.display().to_string(),
            reason: format!(
                "the log ends at entry {last}, the store's manifest records entry {} \
                 (entries removed from the end, or an older copy of the log put back)",
                anchor.0
            ),
        });
    }
    Ok((last, chain))
}

fn walk_chain(path: &Path, key: &SecretKey, anchor: (u64, [u8; 16])) -> Result<(u64, [u8; 16])> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, [0; 16])),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut prev = [0u8; 16];
    let mut expected_seq = 1u64;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        let what = || format!("{} line {}", path.display(), i + 1);
        let p = parse_line(&line).ok_or_else(|| Error::Integrity {
            what: what(),
            reason: "malformed entry".into(),
        })?;
        if p.seq != expected_seq {
            return Err(Error::Integrity {
                what: what(),
                reason: format!(
                    "sequence {} where {expected_seq} was expected (entry removed, inserted or reordered)",
                    p.seq
                ),
            });
        }
        let want = link(key, &prev, p.seq, p.time, p.text)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], &p.chain[..])) {
            return Err(Error::Integrity {
                what: what(),
                reason: "chain MAC does not verify (entry changed, removed or reordered)".into(),
            });
        }
        if p.seq == anchor.0 && p.chain != anchor.1 {
            return Err(Error::Integrity {
                what: what(),
                reason: "the entry differs from the one the store's manifest records (log replaced or rolled back)".into(),
            });
        }
        prev = p.chain;
        expected_seq += 1;
    }
    Ok((expected_seq - 1, prev))
}

/// Verifies the audit log at `path` under the audit key derived from `lmk`, against the
/// tail `anchor` recorded in the manifest. A torn final line is reported (opening the store
/// recovers it).
pub(super) fn verify(
    path: &Path,
    lmk: &SecretKey,
    anchor: (u64, [u8; 16]),
) -> Result<AuditVerdict> {
    let key = derive_key(lmk, b"pmp-core audit")?;
    if let Ok(bytes) = std::fs::read(path)
        && !bytes.is_empty()
        && !bytes.ends_with(b"\n")
    {
        return Err(Error::Integrity {
            what: path.display().to_string(),
            reason: "the final entry is torn (interrupted write); opening the store keeps it \
                     as evidence and continues the chain"
                .into(),
        });
    }
    let (entries, _) = walk(path, &key, anchor)?;
    Ok(AuditVerdict { entries })
}

/// Verifies the audit log of the software HSM key store in `dir` (opening the store's LMK
/// the way [`SoftHsm::open`](super::SoftHsm::open) does). Returns the number of entries, or
/// an [`Error::Integrity`] naming the first bad line.
///
/// The log's tail must match the one anchored in the store's manifest (whose MAC is checked
/// too): a truncated or rolled-back log is an error here.
pub fn verify_audit_log(dir: &Path, lmk: LmkSource) -> Result<AuditVerdict> {
    let lmk = lmk::load(dir, lmk)?;
    let meta = Meta::read(dir)?;
    let manifest = Manifest::open(dir, &lmk, &meta.store_id, meta.kind)?;
    verify(&dir.join(AUDIT), &lmk, manifest.audit_anchor())
}

/// Cuts a torn final line (no final newline) off the log at `path`, keeping it as evidence
/// in `DIR/audit.torn-<after seq>-<time>`. Returns the evidence file's name and the torn
/// line's length, or `None` when the log ends cleanly.
fn cut_torn_line(path: &Path) -> Result<Option<(String, usize)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(None);
    }
    let good = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let good_lines = bytes[..good].iter().filter(|b| **b == b'\n').count();
    let name = format!("audit.torn-{good_lines}-{}", now());
    let dir = path.parent().unwrap_or(Path::new("."));
    super::store::write_atomic(&dir.join(&name), &bytes[good..], false)?;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(good as u64)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    Ok(Some((name, bytes.len() - good)))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An error's reason for the audit log: the error text, which never carries a secret.
fn reason(e: &Error) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}

impl AuditLog {
    /// Opens (verifying the existing chain) or creates the log of the store in `dir`, whose
    /// LMK `lmk` is of kind `kind`.
    ///
    /// The chain must reach the tail anchored in `manifest`. A torn final line is cut off,
    /// kept as evidence and recorded in an `op=audit-recover` entry.
    pub(super) fn open(
        dir: &Path,
        lmk: &SecretKey,
        kind: LmkKind,
        manifest: Arc<Manifest>,
    ) -> Result<Self> {
        let path = dir.join(AUDIT);
        let key = derive_key(lmk, b"pmp-core audit")?;
        let torn = cut_torn_line(&path)?;
        let (seq, chain) = walk(&path, &key, manifest.audit_anchor())?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let log = Self {
            path,
            key,
            kind,
            manifest,
            state: Mutex::new(State {
                file,
                seq,
                chain,
                len,
                broken: false,
                anchored: seq,
                anchored_at: std::time::Instant::now(),
            }),
        };
        if let Some((name, n)) = torn {
            log.record(&format!(
                "op=audit-recover torn_bytes={n} after_seq={seq} evidence={name} outcome=ok lmk={}",
                kind.as_str()
            ))?;
        }
        Ok(log)
    }

    /// Records the outcome of a key-management call: `<what> outcome=ok` or
    /// `outcome=refused (<reason>)`.
    pub(super) fn outcome<T>(&self, what: &str, r: &Result<T>) -> Result<()> {
        let outcome = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("refused ({})", reason(e)),
        };
        self.record(&format!(
            "{what} outcome={outcome} lmk={}",
            self.kind.as_str()
        ))
    }

    /// Records a failed data operation on `keys` (one entry per failure), naming each key by
    /// label and KCV.
    pub(super) fn failure(&self, what: &str, keys: &[&Entry], e: &Error) -> Result<()> {
        let names: Vec<String> = keys
            .iter()
            .map(|k| format!("{}/{}", k.spec.label, k.kcv))
            .collect();
        self.append(&format!(
            "op={what} keys={} outcome=refused ({}) lmk={}",
            names.join(","),
            reason(e),
            self.kind.as_str()
        ))
    }

    /// Records a usage summary: `count` successful `op`s under key `e`.
    pub(super) fn usage(&self, e: &Entry, op: Counted, count: u64) -> Result<()> {
        self.usage_of(&e.spec.label, &format!("kcv={}", e.kcv), op, count)
    }

    /// A usage summary entry for the key `label` named by `id` (`kcv=…`, or an RSA key's
    /// `sha1=…` fingerprint).
    pub(super) fn usage_of(&self, label: &str, id: &str, op: Counted, count: u64) -> Result<()> {
        self.append(&format!(
            "op=usage what={} key={label} {id} count={count} outcome=ok lmk={}",
            op.name(),
            self.kind.as_str()
        ))
    }

    /// Appends one entry and anchors the tail in the manifest. `text` must not contain a
    /// secret or a newline.
    pub(super) fn record(&self, text: &str) -> Result<()> {
        self.write(text, true)
    }

    /// Appends one entry, anchoring the tail if the last anchor is a second old.
    fn append(&self, text: &str) -> Result<()> {
        self.write(text, false)
    }

    /// Anchors the tail in the manifest if entries were appended since the last anchor.
    pub(super) fn anchor(&self) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.anchored == st.seq {
            return Ok(());
        }
        self.manifest.set_audit(st.seq, st.chain)?;
        st.anchored = st.seq;
        st.anchored_at = std::time::Instant::now();
        Ok(())
    }

    fn write(&self, text: &str, anchor_now: bool) -> Result<()> {
        let text = text.replace(['\n', '\r'], " ");
        let time = now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.broken {
            return Err(Error::Integrity {
                what: self.path.display().to_string(),
                reason: "an earlier write failed and could not be undone; reopen the store \
                         (the torn entry is then kept as evidence)"
                    .into(),
            });
        }
        let seq = st.seq + 1;
        let chain = link(&self.key, &st.chain, seq, time, &text)?;
        let line = format!("{seq} {time} {} {text}\n", hex::encode_upper(chain));
        if let Err(e) = st.file.write_all(line.as_bytes()) {
            // Undo a partial line so the log stays a whole chain.
            let len = st.len;
            if st.file.set_len(len).is_err() {
                st.broken = true;
            }
            return Err(Error::io(&self.path, e));
        }
        st.seq = seq;
        st.chain = chain;
        st.len += line.len() as u64;
        if anchor_now || st.anchored_at.elapsed() >= std::time::Duration::from_secs(1) {
            self.manifest.set_audit(seq, chain)?;
            st.anchored = seq;
            st.anchored_at = std::time::Instant::now();
        }
        Ok(())
    }
}
