//! The output transaction (also data preparation's, `prep::run_files`): the XOF and the reject report are written to temporary files
//! beside their targets and renamed only when the whole import succeeded, so that a failed
//! import leaves no output (and an existing file of the same name as it was).
//!
//! # The two outputs together or not at all: a roll-forward journal
//!
//! Two renames are not one atomic step, and a process can be killed between them. So the
//! commit is decided by a journal before the first rename: once both temporary files are
//! complete and synced, a journal file `.<XOF name>.pmp-commit` beside the XOF (written to
//! a temporary name, synced, then renamed into place, so it exists whole or not at all)
//! lists the two pending renames. Then the reject report is renamed, then the XOF, the
//! directories synced, and the journal removed.
//!
//! - Killed before the journal exists: the old outputs are untouched; the temporaries are
//!   stale.
//! - Killed after: the commit is decided. The next import into the same XOF path (or
//!   [`recover_outputs`]) finishes the renames the journal lists before anything else, so
//!   the pair becomes the new one.
//!
//! The next import into the same XOF path also deletes stale temporaries of a killed run
//! (`.<name>.<12 hex>.tmp` and `.bak` beside either output). What a concurrent reader can
//! see is the same: between the two renames (microseconds, or until the next import after a
//! kill) the new report stands beside the old XOF, with the journal present; a reader that
//! sees a `.pmp-commit` file beside the XOF must call [`recover_outputs`] first, or wait.
//!
//! Outputs are refused inside a key-store directory (one holding `store.meta`, or `keys/`
//! and `audit.log`) and over files and directories the caller names as protected (the
//! product file, the key store given to the command): a rename there would replace a key
//! file, the audit log or the product.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Buffer of the XOF writer.
const XOF_BUFFER: usize = 256 * 1024;

/// The two outputs of an import, not yet committed. Dropped without
/// [`commit`](Outputs::commit), both temporary files are removed.
pub(crate) struct Outputs {
    xof: TempFile,
    rejects: TempFile,
}

impl Outputs {
    /// Finishes a commit a killed run left (its journal), removes stale temporaries, checks
    /// the paths (see [`check_paths`], [`check_output_paths`]) and creates the two temporary
    /// files.
    pub(crate) fn create(input: &Path, xof: &Path, rejects: &Path) -> Result<Self> {
        check_paths(input, xof, rejects)?;
        check_output_paths(xof, rejects, &[])?;
        recover_outputs(xof)?;
        remove_stale_temporaries(xof)?;
        remove_stale_temporaries(rejects)?;
        Ok(Self {
            xof: TempFile::create(xof)?,
            rejects: TempFile::create(rejects)?,
        })
    }

    /// Writers to the temporary XOF and reject report.
    pub(crate) fn writers(&self) -> Result<(BufWriter<File>, BufWriter<File>)> {
        Ok((
            BufWriter::with_capacity(XOF_BUFFER, self.xof.file()?),
            BufWriter::new(self.rejects.file()?),
        ))
    }

    /// Flushes and syncs both files, writes the journal that decides the commit, then
    /// renames them onto their targets (see the module documentation). If the XOF's rename
    /// fails with an error after the report's succeeded, the report's rename is undone (its
    /// previous file, if any, put back), so that no partial output is left.
    pub(crate) fn commit(self, xof: BufWriter<File>, rejects: BufWriter<File>) -> Result<()> {
        for (w, t) in [(xof, &self.xof), (rejects, &self.rejects)] {
            let file = w
                .into_inner()
                .map_err(|e| Error::io(&t.tmp, e.into_error()))?;
            sync(&file, &t.tmp)?;
        }
        crash_point("synced");
        let previous = self.rejects.keep_previous()?;
        let journal = Journal::write(&self.xof.target, [&self.rejects, &self.xof])?;
        crash_point("journal");
        if let Err(e) = self.rejects.commit() {
            journal.remove();
            if let Some(bak) = &previous {
                let _ = fs::remove_file(bak);
            }
            return Err(e);
        }
        crash_point("between-renames");
        if let Err(e) = self.xof.commit() {
            let undo = match &previous {
                Some(bak) => fs::rename(bak, &self.rejects.target),
                None => fs::remove_file(&self.rejects.target),
            };
            journal.remove();
            if let Err(u) = undo {
                return Err(Error::invalid(
                    "output",
                    format!(
                        "writing {} failed ({e}) and the reject report {} could not be taken back ({u})",
                        self.xof.target.display(),
                        self.rejects.target.display()
                    ),
                ));
            }
            return Err(e);
        }
        sync_dir(&self.rejects.target);
        sync_dir(&self.xof.target);
        crash_point("renamed");
        journal.remove();
        if let Some(bak) = previous {
            let _ = fs::remove_file(bak);
        }
        Ok(())
    }
}

/// For the fault-injection tests (`tests/fault_import.rs`): when the environment variable
/// `PMP_TEST_CRASH_AT` names this point, the process aborts here, as a kill would stop it.
/// Read only in debug builds; a release build has no crash points.
fn crash_point(name: &str) {
    if cfg!(debug_assertions) && std::env::var_os("PMP_TEST_CRASH_AT").is_some_and(|v| v == name) {
        std::process::abort();
    }
}

fn sync(file: &File, path: &Path) -> Result<()> {
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// Syncs the directory holding `path` (so a rename in it is durable); best effort.
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(parent_dir(path)) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The file name of the journal for the XOF `xof`.
fn journal_path(xof: &Path) -> PathBuf {
    let name = xof.file_name().unwrap_or_default().to_string_lossy();
    parent_dir(xof).join(format!(".{name}.pmp-commit"))
}

/// The commit journal: one line `<temporary>\t<target>` per pending rename, in order.
struct Journal {
    path: PathBuf,
}

impl Journal {
    fn write<'a>(xof: &Path, renames: impl IntoIterator<Item = &'a TempFile>) -> Result<Self> {
        let path = journal_path(xof);
        let mut text = String::from("pmp-import-commit-1\n");
        for t in renames {
            let (Some(tmp), Some(target)) = (t.tmp.to_str(), t.target.to_str()) else {
                return Err(Error::invalid("output", "output paths must be valid UTF-8"));
            };
            if tmp.contains(['\t', '\n']) || target.contains(['\t', '\n']) {
                return Err(Error::invalid(
                    "output",
                    "output paths must not contain tabs or newlines",
                ));
            }
            text.push_str(&format!("{tmp}\t{target}\n"));
        }
        let staging = path.with_extension("pmp-commit-new");
        let mut f = File::create(&staging).map_err(|e| Error::io(&staging, e))?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| Error::io(&staging, e))?;
        sync(&f, &staging)?;
        fs::rename(&staging, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&path);
        Ok(Self { path })
    }

    fn remove(self) {
        let _ = fs::remove_file(&self.path);
        sync_dir(&self.path);
    }
}

/// Finishes the commit of an import into the XOF `xof` that was killed after deciding it
/// (its journal `.<name>.pmp-commit` exists): performs the renames the journal lists whose
/// temporary file is still there, then removes the journal. Without a journal, does
/// nothing. A half-written journal (`.pmp-commit-new`) means the commit was not decided:
/// it is removed, and the old outputs stay.
///
/// Called by every import before it writes, so a killed import's outputs become the new
/// pair (never a mix with the old) at the latest when the next import into the same XOF
/// path starts.
pub fn recover_outputs(xof: &Path) -> Result<()> {
    let path = journal_path(xof);
    let _ = fs::remove_file(path.with_extension("pmp-commit-new"));
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut lines = text.lines();
    if lines.next() != Some("pmp-import-commit-1") {
        return Err(Error::invalid(
            "output",
            format!("{} is not an import commit journal", path.display()),
        ));
    }
    for line in lines {
        let Some((tmp, target)) = line.split_once('\t') else {
            return Err(Error::invalid(
                "output",
                format!("{}: malformed line", path.display()),
            ));
        };
        let (tmp, target) = (Path::new(tmp), Path::new(target));
        if fs::symlink_metadata(tmp).is_ok() {
            fs::rename(tmp, target).map_err(|e| Error::io(target, e))?;
            sync_dir(target);
        }
    }
    fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    sync_dir(&path);
    Ok(())
}

/// Removes temporaries that a killed import left beside `target`: `.<name>.<12 hex>.tmp`
/// and `.<name>.<12 hex>.bak`. (A commit journal is handled first by [`recover_outputs`].)
fn remove_stale_temporaries(target: &Path) -> Result<()> {
    let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let dir = parent_dir(target);
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let stale = rest
            .strip_suffix(".tmp")
            .or_else(|| rest.strip_suffix(".bak"))
            .is_some_and(|r| r.len() == 12 && r.bytes().all(|b| b.is_ascii_hexdigit()));
        if stale {
            let p = entry.path();
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

/// Whether `dir` is a software-HSM key store: it holds `store.meta`, or a `keys` folder and
/// an `audit.log`.
fn is_key_store(dir: &Path) -> bool {
    dir.join("store.meta").is_file()
        || (dir.join("keys").is_dir() && dir.join("audit.log").is_file())
}

/// Refuses output paths that would destroy something else: inside a key-store directory
/// (the directory or any folder below it, detected by its files), or the same file as, or
/// inside a directory of, `protected` (the product file, the key store named on the command
/// line). `xof` and `rejects` need not exist; their directories must.
pub fn check_output_paths(xof: &Path, rejects: &Path, protected: &[&Path]) -> Result<()> {
    let mut guarded: Vec<PathBuf> = Vec::new();
    for p in protected {
        if let Ok(c) = fs::canonicalize(p) {
            guarded.push(c);
        }
        if let Ok(c) = output_identity(p) {
            guarded.push(c);
        }
    }
    for (what, p) in [("the XOF", xof), ("the reject report", rejects)] {
        let id = output_identity(p)?;
        let resolved = fs::canonicalize(p).unwrap_or_else(|_| id.clone());
        for g in &guarded {
            if id == *g || resolved == *g {
                return Err(Error::invalid(
                    "output",
                    format!("{what} would replace {}", g.display()),
                ));
            }
            if g.is_dir() && (id.starts_with(g) || resolved.starts_with(g)) {
                return Err(Error::invalid(
                    "output",
                    format!("{what} would be written inside {}", g.display()),
                ));
            }
        }
        for dir in id.ancestors().skip(1) {
            if is_key_store(dir) {
                return Err(Error::invalid(
                    "output",
                    format!(
                        "{what} would be written inside the key store {}",
                        dir.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A path as the file system resolves it for writing: the canonical parent directory and
/// the file name (the name itself is not resolved: a rename replaces the directory entry).
fn output_identity(p: &Path) -> Result<PathBuf> {
    let name = p
        .file_name()
        .ok_or_else(|| Error::invalid("output", format!("{} is not a file name", p.display())))?;
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    Ok(dir.join(name))
}

/// Refuses outputs that are the same file as each other or as the input (`a.xof` and
/// `./a.xof`, `dir/../in.dat`, a symlinked directory): renaming onto the input would
/// destroy the issuer's file, and one output would silently replace the other.
fn check_paths(input: &Path, out: &Path, rejects: &Path) -> Result<()> {
    let o = output_identity(out)?;
    let r = output_identity(rejects)?;
    if o == r {
        return Err(Error::invalid(
            "output",
            "the XOF and the reject report must be different files",
        ));
    }
    let mut inputs = vec![output_identity(input)?];
    if let Ok(c) = fs::canonicalize(input) {
        inputs.push(c);
    }
    for (what, p) in [("the XOF", &o), ("the reject report", &r)] {
        let same_entry = inputs.contains(p);
        // A hard link or a symlink to the input under another name.
        let same_file =
            fs::canonicalize(p).is_ok_and(|c| inputs.contains(&c)) || same_inode(input, p);
        if same_entry || same_file {
            return Err(Error::invalid(
                "output",
                format!("{what} would replace the input file"),
            ));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// A temporary file beside its target, removed on drop unless committed.
struct TempFile {
    tmp: PathBuf,
    target: PathBuf,
    done: Cell<bool>,
}

impl TempFile {
    fn create(target: &Path) -> Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| Error::invalid("output", "not a file name"))?
            .to_string_lossy();
        let mut r = [0u8; 6];
        crate::fill_random(&mut r)?;
        let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(r)));
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(Self {
            tmp,
            target: target.to_path_buf(),
            done: Cell::new(false),
        })
    }

    fn file(&self) -> Result<File> {
        fs::OpenOptions::new()
            .write(true)
            .open(&self.tmp)
            .map_err(|e| Error::io(&self.tmp, e))
    }

    /// When the target exists, a second name for it (a hard link, else a copy) beside it,
    /// so that a commit can be taken back.
    fn keep_previous(&self) -> Result<Option<PathBuf>> {
        if fs::symlink_metadata(&self.target).is_err() {
            return Ok(None);
        }
        let bak = self.tmp.with_extension("bak");
        if fs::hard_link(&self.target, &bak).is_err() {
            fs::copy(&self.target, &bak).map_err(|e| Error::io(&self.target, e))?;
        }
        Ok(Some(bak))
    }

    fn commit(&self) -> Result<()> {
        fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        self.done.set(true);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done.get() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
