//! The output transaction: the XOF and the reject report are written to temporary files
//! beside their targets and renamed only when the whole import succeeded, so that a failed
//! import leaves no output (and an existing file of the same name as it was).

use std::cell::Cell;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Buffer of the XOF writer.
const XOF_BUFFER: usize = 256 * 1024;

/// The two outputs of an import, not yet committed. Dropped without
/// [`commit`](Outputs::commit), both temporary files are removed.
pub(super) struct Outputs {
    xof: TempFile,
    rejects: TempFile,
}

impl Outputs {
    /// Checks the paths (see [`check_paths`]) and creates the two temporary files.
    pub(super) fn create(input: &Path, xof: &Path, rejects: &Path) -> Result<Self> {
        check_paths(input, xof, rejects)?;
        Ok(Self {
            xof: TempFile::create(xof)?,
            rejects: TempFile::create(rejects)?,
        })
    }

    /// Writers to the temporary XOF and reject report.
    pub(super) fn writers(&self) -> Result<(BufWriter<File>, BufWriter<File>)> {
        Ok((
            BufWriter::with_capacity(XOF_BUFFER, self.xof.file()?),
            BufWriter::new(self.rejects.file()?),
        ))
    }

    /// Flushes and syncs both files, then renames them onto their targets. Two renames
    /// cannot be one atomic step: if the XOF's fails after the report's succeeded, the
    /// report's rename is undone (its previous file, if any, put back), so that no partial
    /// output is left.
    pub(super) fn commit(self, xof: BufWriter<File>, rejects: BufWriter<File>) -> Result<()> {
        for (w, t) in [(xof, &self.xof), (rejects, &self.rejects)] {
            let file = w
                .into_inner()
                .map_err(|e| Error::io(&t.tmp, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(&t.tmp, e))?;
        }
        let previous = self.rejects.keep_previous()?;
        if let Err(e) = self.rejects.commit() {
            if let Some(bak) = &previous {
                let _ = fs::remove_file(bak);
            }
            return Err(e);
        }
        if let Err(e) = self.xof.commit() {
            let undo = match &previous {
                Some(bak) => fs::rename(bak, &self.rejects.target),
                None => fs::remove_file(&self.rejects.target),
            };
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
        if let Some(bak) = previous {
            let _ = fs::remove_file(bak);
        }
        Ok(())
    }
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
