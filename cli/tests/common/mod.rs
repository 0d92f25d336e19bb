//! What the CLI tests share: running the `pmp` binary and throw-away directories.
#![allow(dead_code)] // each test crate uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `pmp` with `args`, without any LMK components from the caller's environment.
pub fn pmp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmp"))
        .args(args)
        .env_remove("PMP_LMK_COMPONENTS")
        .output()
        .expect("run pmp")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A directory path under the system's temporary directory, unique per test, removed with
/// everything in it on drop. Not created: commands that make it (`keystore init`) do.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `pmp-cli-<name>-<random>`.
    pub fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        TempDir(std::env::temp_dir().join(format!("pmp-cli-{name}-{}", hex::encode(r))))
    }

    /// The path as text (for command arguments).
    pub fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
