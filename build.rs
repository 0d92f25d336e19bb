//! Build script: generates the C header `include/pmp.h` from the `ffi` module with cbindgen.
//!
//! Only `src/ffi.rs` and the files under `src/ffi/` are given to cbindgen, so nothing else in
//! the crate can appear in the header. The header is committed; `scripts/check-header.sh`
//! (run in CI) fails when it is stale.

use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let config_path = root.join("cbindgen.toml");
    let ffi_dir = root.join("src/ffi");

    println!("cargo:rerun-if-changed={}", config_path.display());
    println!("cargo:rerun-if-changed=src/ffi.rs");
    // So that a hand-edited header is regenerated (and shows up in `git diff`).
    println!("cargo:rerun-if-changed=include/pmp.h");
    if ffi_dir.is_dir() {
        // A directory is scanned recursively for changes.
        println!("cargo:rerun-if-changed=src/ffi");
    }

    let mut sources = vec![root.join("src/ffi.rs")];
    collect_rust_files(&ffi_dir, &mut sources);
    // cbindgen parses each file on its own (it would look for the submodules of a
    // non-mod.rs root file in the wrong folder), so submodule files are listed one by one.
    // Sorted, so that the header does not depend on directory order.
    sources[1..].sort();

    let config = cbindgen::Config::from_file(&config_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", config_path.display()));
    let mut builder = cbindgen::Builder::new().with_config(config);
    for source in &sources {
        builder = builder.with_src(source);
    }
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen failed: {e}"));
    // Rewrites the file only when its content changes.
    bindings.write_to_file(root.join("include/pmp.h"));
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("reading src/ffi").path();
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
