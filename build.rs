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

    // The shared library's SONAME carries the ABI version (`PMP_ABI_VERSION` in src/ffi.rs),
    // so a program linked against another ABI refuses to load this one.
    let abi = abi_version(&root.join("src/ffi.rs"));
    if std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpmp_core.so.{abi}");
    }

    // cbindgen resolves the `mod x;` lines of a root file against that file's folder: for
    // src/ffi.rs that is src/, where `mod xof;` is the crate's own src/xof.rs, whose
    // constants then leaked into the header. So it gets a copy of src/ffi.rs without its
    // `mod` lines, in a folder of its own; the submodules are listed one by one below.
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let root_copy = out_dir.join("ffi_root/ffi.rs");
    std::fs::create_dir_all(root_copy.parent().expect("has a parent")).expect("OUT_DIR");
    let ffi_root = std::fs::read_to_string(root.join("src/ffi.rs")).expect("reading src/ffi.rs");
    let without_mods: String = ffi_root
        .lines()
        .filter(|l| !(l.starts_with("mod ") && l.ends_with(';')))
        .flat_map(|l| [l, "\n"])
        .collect();
    std::fs::write(&root_copy, without_mods).expect("writing the copy of src/ffi.rs");

    let mut sources = vec![root_copy];
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
    let mut header = Vec::new();
    bindings.write(&mut header);
    let header = String::from_utf8(header).expect("cbindgen writes UTF-8");
    check_prefixes(&header);
    // Rewrites the file only when its content changes.
    bindings.write_to_file(root.join("include/pmp.h"));
}

/// `PMP_ABI_VERSION` as written in src/ffi.rs (`pub const PMP_ABI_VERSION: u32 = N;`).
fn abi_version(ffi_rs: &Path) -> u32 {
    let text = std::fs::read_to_string(ffi_rs).expect("reading src/ffi.rs");
    text.lines()
        .find_map(|l| l.strip_prefix("pub const PMP_ABI_VERSION: u32 = "))
        .and_then(|v| v.trim_end_matches(';').parse().ok())
        .expect("src/ffi.rs defines `pub const PMP_ABI_VERSION: u32 = N;`")
}

/// Fails the build when the header would declare a macro not starting with `PMP_` or a
/// type or function not starting with `pmp_`: a client may define any other name itself.
fn check_prefixes(header: &str) {
    let mut bad = Vec::new();
    for line in header.lines() {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix("#define ") {
            let name = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next();
            if let Some(name) = name.filter(|n| !n.starts_with("PMP_")) {
                bad.push(format!("macro {name}"));
            }
        } else if let Some(rest) = line.strip_prefix("typedef ") {
            // `typedef ... name;` or `typedef ... (*name)(...)`.
            let name = if let Some(i) = rest.find("(*") {
                rest[i + 2..].split(')').next().unwrap_or("")
            } else {
                rest.trim_end_matches(';').rsplit(' ').next().unwrap_or("")
            };
            if !name.is_empty() && !name.starts_with("pmp_") && !name.ends_with('{') {
                bad.push(format!("type {name}"));
            }
        }
    }
    if !bad.is_empty() {
        panic!(
            "include/pmp.h would declare names without the PMP_/pmp_ prefix: {}",
            bad.join(", ")
        );
    }
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
