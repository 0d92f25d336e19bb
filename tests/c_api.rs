//! Runs the C API tests: compiles `tests/c/test_pmp.c` and `tests/c/test_rsa.c` (the RSA
//! functions) (C11, warnings as errors) against the
//! static library `libpmp_core.a`, runs it plainly and under AddressSanitizer +
//! UndefinedBehaviorSanitizer, and compiles, links and runs `tests/c/header_check.cpp` as
//! C++17. Each program gets an empty scratch directory (for key stores) as its argument.
//! `tests/c/test_pkcs11.c` checks `pmp_hsm_open_pkcs11`: on a throw-away SoftHSMv2 token
//! when pmp-core is built with the feature `pkcs11`, `PMP_STATUS_UNSUPPORTED` without it.
//!
//! The static library is the one cargo built for this very test run: the integration test
//! depends on the `pmp_core` library target, which cargo compiles in one rustc invocation
//! with all its crate types (rlib, staticlib, cdylib) into `target/<profile>/deps/`, the
//! folder holding this test executable. (`cargo test` does not copy it up to
//! `target/<profile>/`; `cargo build` does, so that copy may be stale.) Nested `cargo build`
//! is not used: cargo holds the build-directory lock while tests run.
//!
//! The compilers are `$CC` (default `cc`) and `$CXX` (default `c++`); gcc or clang.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Native libraries a Rust static library needs on Linux
/// (`cargo rustc --lib -- --print native-static-libs`).
const NATIVE_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"];

const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"];
const CXX_FLAGS: &[&str] = &[
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-g",
];
const SANITIZE_FLAGS: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>/deps/libpmp_core.a`, built by cargo for this test run.
fn static_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // This executable is target/<profile>/deps/c_api-<hash>.
    let deps = exe
        .parent()
        .expect("test executable lies in target/<profile>/deps");
    let lib = deps.join("libpmp_core.a");
    assert!(
        lib.is_file(),
        "{} not found: is `staticlib` still in the crate-type of the pmp-core library?",
        lib.display()
    );
    // The .a and the .rlib this test links come from one rustc invocation; an older .a
    // would be a left-over from an earlier build.
    let rlib = deps.join("libpmp_core.rlib");
    let mtime = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    if let (Some(a), Some(r)) = (mtime(&lib), mtime(&rlib)) {
        assert!(a >= r, "{} is older than {}", lib.display(), rlib.display());
    }
    lib
}

/// A scratch directory for one test of this process (other runs may share the target
/// directory).
fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("c_api-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown by the test harness only when the test fails (or with --nocapture).
    println!("{what}: {command:?}\n{stdout}{stderr}");
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    output
}

fn compiler(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Compiles and links `source` against the static library into `exe`.
fn build(compiler: &str, flags: &[&str], source: &str, exe: &Path) {
    let mut command = Command::new(compiler);
    command
        .args(flags)
        .arg(format!(
            "-DPMP_EXPECTED_VERSION=\"{}\"",
            env!("CARGO_PKG_VERSION")
        ))
        .arg(format!(
            "-DPMP_TEST_DATA=\"{}\"",
            manifest_dir().join("tests/data").display()
        ))
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(manifest_dir().join(source))
        .arg(static_library())
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(exe);
    run(&mut command, &format!("compiling {source}"));
}

fn build_and_run(compiler: &str, flags: &[&str], source: &str, name: &str) -> String {
    let dir = scratch_dir(name);
    let exe = dir.join(name);
    build(compiler, flags, source, &exe);
    let stores = dir.join("stores");
    std::fs::create_dir_all(&stores).expect("create scratch directory");
    let output = run(
        Command::new(&exe)
            .arg(&stores)
            .env(
                "ASAN_OPTIONS",
                "detect_leaks=1:halt_on_error=1:abort_on_error=0",
            )
            .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1"),
        &format!("running {name}"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_all_passed(stdout: &str) {
    assert!(
        stdout.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "no summary line in:\n{stdout}"
    );
}

#[test]
fn c_test_program() {
    let stdout = build_and_run(
        &compiler("CC", "cc"),
        C_FLAGS,
        "tests/c/test_pmp.c",
        "test_pmp",
    );
    assert_all_passed(&stdout);
}

#[test]
fn c_test_program_under_sanitizers() {
    let flags = [C_FLAGS, SANITIZE_FLAGS].concat();
    let stdout = build_and_run(
        &compiler("CC", "cc"),
        &flags,
        "tests/c/test_pmp.c",
        "test_pmp_asan",
    );
    assert_all_passed(&stdout);
}

#[test]
fn c_rsa_program() {
    let stdout = build_and_run(
        &compiler("CC", "cc"),
        C_FLAGS,
        "tests/c/test_rsa.c",
        "test_rsa",
    );
    assert_all_passed(&stdout);
}

#[test]
fn c_rsa_program_under_sanitizers() {
    let flags = [C_FLAGS, SANITIZE_FLAGS].concat();
    let stdout = build_and_run(
        &compiler("CC", "cc"),
        &flags,
        "tests/c/test_rsa.c",
        "test_rsa_asan",
    );
    assert_all_passed(&stdout);
}

#[test]
fn cpp_header_check() {
    build_and_run(
        &compiler("CXX", "c++"),
        CXX_FLAGS,
        "tests/c/header_check.cpp",
        "header_check",
    );
}

/// A throw-away SoftHSMv2 token in `dir` (its own `SOFTHSM2_CONF`): (module, conf, token,
/// PIN). `PMP_PKCS11_MODULE` names the module when it is not in a Debian location.
#[cfg(feature = "pkcs11")]
fn softhsm_token(dir: &Path) -> (PathBuf, PathBuf, &'static str, &'static str) {
    const TOKEN: &str = "pmp-c-api";
    const PIN: &str = "1234";
    let module = std::env::var_os("PMP_PKCS11_MODULE")
        .map(PathBuf::from)
        .or_else(|| {
            [
                "/usr/lib/softhsm/libsofthsm2.so",
                "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/local/lib/softhsm/libsofthsm2.so",
            ]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        })
        .expect("SoftHSMv2 not found: apt-get install softhsm2, or set PMP_PKCS11_MODULE");
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("token dir");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("softhsm2.conf");
    run(
        Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", TOKEN])
            .args(["--so-pin", "12345678", "--pin", PIN]),
        "softhsm2-util --init-token",
    );
    (module, conf, TOKEN, PIN)
}

#[test]
fn c_pkcs11_program() {
    let name = "test_pkcs11";
    let dir = scratch_dir(name);
    let exe = dir.join(name);
    let mut flags = C_FLAGS.to_vec();
    if cfg!(feature = "pkcs11") {
        flags.push("-DPMP_FEATURE_PKCS11");
    }
    build(&compiler("CC", "cc"), &flags, "tests/c/test_pkcs11.c", &exe);
    let mut command = Command::new(&exe);
    command.env_remove("PMP_PKCS11_HOST_KEY_FALLBACK");
    #[cfg(feature = "pkcs11")]
    {
        let (module, conf, token, pin) = softhsm_token(&dir);
        command
            .arg(module)
            .arg(token)
            .arg(pin)
            .env("SOFTHSM2_CONF", conf);
    }
    let output = run(&mut command, "running test_pkcs11");
    let _ = std::fs::remove_dir_all(&dir);
    assert_all_passed(&String::from_utf8_lossy(&output.stdout));
}

/// Under valgrind (memcheck) when it is installed (`.ci/run` installs it): uninitialized
/// bytes reaching C, invalid reads and writes, leaks. Fails when valgrind is missing.
#[test]
fn c_test_program_under_valgrind() {
    assert!(
        Command::new("valgrind").arg("--version").output().is_ok(),
        "valgrind is not installed: apt-get install valgrind (.ci/run installs it)"
    );
    let dir = scratch_dir("valgrind");
    let exe = dir.join("test_pmp_vg");
    build(&compiler("CC", "cc"), C_FLAGS, "tests/c/test_pmp.c", &exe);
    let stores = dir.join("stores");
    std::fs::create_dir_all(&stores).expect("create scratch directory");
    let output = run(
        Command::new("valgrind")
            .args([
                "--quiet",
                "--error-exitcode=97",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
            ])
            .arg(&exe)
            .arg(&stores),
        "running test_pmp under valgrind",
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_all_passed(&String::from_utf8_lossy(&output.stdout));
}

/// Every macro of the header starts with `PMP_` and every type with `pmp_`: a client may
/// define any other name (`MAX_NAME`, `MAX_KEYS` were in the header before). build.rs
/// refuses to generate such a header; this checks the committed one.
#[test]
fn header_names_carry_the_prefix() {
    let header = std::fs::read_to_string(manifest_dir().join("include/pmp.h")).unwrap();
    let mut bad = Vec::new();
    for line in header.lines().map(str::trim_start) {
        if let Some(rest) = line.strip_prefix("#define ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.starts_with("PMP_") {
                bad.push(name);
            }
        }
        if let Some(rest) = line.strip_prefix("typedef ") {
            // `typedef T name;`, `typedef struct name {` or `typedef R (*name)(...);`.
            let name = match rest.split_once("(*") {
                Some((_, after)) => after.split(')').next().unwrap_or(""),
                None => rest.trim_end_matches(';').rsplit(' ').next().unwrap_or(""),
            };
            if !name.ends_with('{') && !name.starts_with("pmp_") {
                bad.push(name.to_owned());
            }
        }
    }
    assert!(bad.is_empty(), "unprefixed names in include/pmp.h: {bad:?}");
    assert!(header.contains("#define PMP_ABI_VERSION "));
}

/// The shared library's SONAME is `libpmp_core.so.<PMP_ABI_VERSION>` (from `readelf -d`).
#[test]
#[cfg(target_os = "linux")]
fn shared_library_soname_carries_the_abi_version() {
    let lib = static_library().with_file_name("libpmp_core.so");
    assert!(lib.is_file(), "{} not built", lib.display());
    let header = std::fs::read_to_string(manifest_dir().join("include/pmp.h")).unwrap();
    let abi = header
        .lines()
        .find_map(|l| l.strip_prefix("#define PMP_ABI_VERSION "))
        .expect("PMP_ABI_VERSION in the header")
        .trim();
    let output = run(Command::new("readelf").arg("-d").arg(&lib), "readelf -d");
    let dynamic = String::from_utf8_lossy(&output.stdout);
    let soname = dynamic
        .lines()
        .find(|l| l.contains("(SONAME)"))
        .unwrap_or_else(|| panic!("no SONAME in {}:\n{dynamic}", lib.display()));
    assert!(
        soname.contains(&format!("[libpmp_core.so.{abi}]")),
        "SONAME line: {soname}"
    );
}
