//! One `SoftHsm` per key store: an exclusive advisory lock (`flock`) on the store directory
//! itself, held for the life of the instance, across threads and processes. The directory
//! cannot be deleted or replaced from under a running process while it holds keys, unlike
//! a lock file that anyone with write access to the directory could remove.

use std::fs;
use std::path::Path;

use crate::{Error, Result};

/// The held lock; released when dropped.
#[derive(Debug)]
pub(super) struct StoreLock {
    _dir: fs::File,
}

impl StoreLock {
    /// Takes the store's exclusive lock, or says that another process or handle holds it.
    pub(super) fn take(dir: &Path) -> Result<Self> {
        let f = fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
        match f.try_lock() {
            Ok(()) => Ok(Self { _dir: f }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Policy(format!(
                "key store {} is open in another process or handle (open it once and share the handle)",
                dir.display()
            ))),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(dir, e)),
        }
    }
}
