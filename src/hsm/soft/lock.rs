//! One `SoftHsm` per key store: an exclusive advisory lock on `DIR/lock`, held for the life
//! of the instance, across threads and processes.

use std::fs;
use std::path::Path;

use crate::{Error, Result};

/// The held lock; released when dropped (the file stays).
#[derive(Debug)]
pub(super) struct StoreLock {
    _file: fs::File,
}

impl StoreLock {
    /// Takes the store's exclusive lock, or says that another process or handle holds it.
    pub(super) fn take(dir: &Path) -> Result<Self> {
        let path = dir.join("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match f.try_lock() {
            Ok(()) => Ok(Self { _file: f }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Policy(format!(
                "key store {} is open in another process or handle (open it once and share the handle)",
                dir.display()
            ))),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}
