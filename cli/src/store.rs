//! Opening a key store from the command line, with errors written for the operator: a
//! directory that is not a store (and where the store probably is), a store locked by
//! another process (and which one), and the TEST LMK said on stderr by every command.

use std::path::{Path, PathBuf};

use pmp_core::hsm::{LmkSource, SoftHsm};

use crate::CliError;

/// The file every key store has (written by `pmp keystore init`).
const META: &str = "store.meta";

/// Opens the store in `dir` (TEST LMK, or production components from the environment);
/// on a TEST store, says so on stderr.
pub fn open(dir: &Path) -> Result<SoftHsm, CliError> {
    check_is_store(dir)?;
    match SoftHsm::open(dir, LmkSource::Auto) {
        Ok(hsm) => {
            if hsm.is_test() {
                note_test(dir);
            }
            Ok(hsm)
        }
        Err(e) => Err(locked(dir, &e.to_string()).unwrap_or_else(|| e.into())),
    }
}

/// The note every command prints on stderr when it works on a TEST store.
pub fn note_test(dir: &Path) {
    eprintln!(
        "pmp: note: TEST key store {} (TEST LMK): for development and tests only, never for real cards",
        dir.display()
    );
}

/// Whether the store in `dir` has a TEST LMK, from its files alone (for commands that do
/// not open the store, such as `audit verify`).
pub fn looks_test(dir: &Path) -> bool {
    dir.join("lmk.test").is_file()
}

/// Refuses a `--dir` that is not a key store, saying where the store is when a
/// subdirectory holds one (`--dir pmp-demo` for `pmp-demo/keystore`).
pub fn check_is_store(dir: &Path) -> Result<(), CliError> {
    if dir.join(META).is_file() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(CliError::rejected(format!(
            "--dir {}: no such directory; create a key store with `pmp keystore init --dir {} --test-lmk` (or --lmk-component, 2 or 3 times)",
            dir.display(),
            dir.display()
        )));
    }
    let inside: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            let mut v: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(META).is_file())
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    Err(CliError::rejected(match inside.as_slice() {
        [] => format!(
            "--dir {}: not a key store (no {META}); give the directory made by `pmp keystore init`",
            dir.display()
        ),
        [one] => format!(
            "--dir {}: not a key store; the key store is {} (use --dir {})",
            dir.display(),
            one.display(),
            one.display()
        ),
        many => format!(
            "--dir {}: not a key store; key stores inside it: {}",
            dir.display(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }))
}

/// When the open failed because another process holds the store's lock: an error naming
/// that process.
fn locked(dir: &Path, message: &str) -> Option<CliError> {
    // The software HSM holds an `flock` on the store directory itself.
    let pid = lock_holder(dir);
    if pid.is_none() && !message.contains("another process") {
        return None;
    }
    let who = pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"));
    Some(CliError::rejected(format!(
        "another pmp process is using {} ({who}); wait for it to finish, or stop it, then run this command again",
        dir.display()
    )))
}

/// The process holding the lock on `lock`, from `/proc/locks` (Linux); `None` elsewhere or
/// when no other process holds it.
fn lock_holder(lock: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(lock).ok()?.ino();
        let me = std::process::id();
        let table = std::fs::read_to_string("/proc/locks").ok()?;
        // "1: FLOCK  ADVISORY  WRITE 15149 fe:00:464 0 EOF": pid, then MAJ:MIN:INODE.
        table.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let pid: u32 = f.get(4)?.parse().ok()?;
            let inode: u64 = f.get(5)?.rsplit(':').next()?.parse().ok()?;
            (inode == ino && pid != me).then_some(pid)
        })
    }
    #[cfg(not(unix))]
    {
        let _ = lock;
        None
    }
}

/// Finds the key labelled `label` for the argument `flag`; when there is none, the error
/// names the store and lists the labels it has that `fits` accepts (every key when `fits`
/// accepts all), so that a typo reads as a typo.
pub fn find_key(
    hsm: &dyn pmp_core::hsm::Hsm,
    place: &str,
    flag: &str,
    label: &str,
    fits: impl Fn(&pmp_core::hsm::KeyInfo) -> bool,
) -> Result<pmp_core::hsm::KeyHandle, CliError> {
    match hsm.find_key(label) {
        Ok(h) => Ok(h),
        Err(pmp_core::Error::NotFound(_)) => {
            let candidates: Vec<String> = hsm
                .list_keys()
                .unwrap_or_default()
                .into_iter()
                .filter(|k| fits(k))
                .map(|k| k.spec.label)
                .collect();
            let hint = if candidates.is_empty() {
                "it has no key that fits".to_string()
            } else {
                format!("keys that fit: {}", candidates.join(", "))
            };
            Err(CliError::rejected(format!(
                "{flag} {label}: no key with this label in {place}; {hint}"
            )))
        }
        Err(e) => Err(e.into()),
    }
}
