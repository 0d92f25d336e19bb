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
//! Not detected by the chain alone: removal of the *last* entries (truncation). The key
//! store's metadata is not updated per entry (that would cost a write per operation);
//! operators should ship the log off the machine (syslog, WORM storage) to close that gap.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::lmk::{self, LmkKind, LmkSource};
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
    state: Mutex<State>,
}

struct State {
    file: File,
    seq: u64,
    chain: [u8; 16],
}

impl core::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Derives the audit key from the LMK (SP 800-108 counter mode, AES-CMAC PRF, 256 bits).
fn derive_key(lmk: &SecretKey, label: &[u8]) -> Result<SecretKey> {
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

/// Walks the log; returns the last (seq, chain) or the first bad line.
fn walk(path: &Path, key: &SecretKey) -> Result<(u64, [u8; 16])> {
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
        prev = p.chain;
        expected_seq += 1;
    }
    Ok((expected_seq - 1, prev))
}

/// Verifies the audit log at `path` under the audit key derived from `lmk`.
pub(super) fn verify(path: &Path, lmk: &SecretKey) -> Result<AuditVerdict> {
    let key = derive_key(lmk, b"pmp-core audit")?;
    let (entries, _) = walk(path, &key)?;
    Ok(AuditVerdict { entries })
}

/// Verifies the audit log of the software HSM key store in `dir` (opening the store's LMK
/// the way [`SoftHsm::open`](super::SoftHsm::open) does). Returns the number of entries, or
/// an [`Error::Integrity`] naming the first bad line.
pub fn verify_audit_log(dir: &Path, lmk: LmkSource) -> Result<AuditVerdict> {
    let lmk = lmk::load(dir, lmk)?;
    verify(&dir.join(AUDIT), &lmk)
}

/// An error's reason for the audit log: the error text, which never carries a secret.
fn reason(e: &Error) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}

impl AuditLog {
    /// Opens (verifying the existing chain) or creates the log of the store in `dir`, whose
    /// LMK `lmk` is of kind `kind`.
    pub(super) fn open(dir: &Path, lmk: &SecretKey, kind: LmkKind) -> Result<Self> {
        let path = dir.join(AUDIT);
        let key = derive_key(lmk, b"pmp-core audit")?;
        let (seq, chain) = walk(&path, &key)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self {
            path,
            key,
            kind,
            state: Mutex::new(State { file, seq, chain }),
        })
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
        self.record(&format!(
            "op={what} keys={} outcome=refused ({}) lmk={}",
            names.join(","),
            reason(e),
            self.kind.as_str()
        ))
    }

    /// Records a usage summary: `count` successful `op`s under key `e`.
    pub(super) fn usage(&self, e: &Entry, op: Counted, count: u64) -> Result<()> {
        self.record(&format!(
            "op=usage what={} key={} kcv={} count={count} outcome=ok lmk={}",
            op.name(),
            e.spec.label,
            e.kcv,
            self.kind.as_str()
        ))
    }

    /// Appends one entry. `text` must not contain a secret or a newline.
    pub(super) fn record(&self, text: &str) -> Result<()> {
        let text = text.replace(['\n', '\r'], " ");
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let seq = st.seq + 1;
        let chain = link(&self.key, &st.chain, seq, time, &text)?;
        let line = format!("{seq} {time} {} {text}\n", hex::encode_upper(chain));
        st.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))?;
        st.seq = seq;
        st.chain = chain;
        Ok(())
    }
}
