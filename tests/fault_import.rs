//! Fault injection: an import killed at each phase, a full disk during an import, a key
//! generation and the audit flush of `pmp_hsm_close`. Each leaves the old state or the new
//! one, never a mix, and the key store opens afterwards.
//!
//! The faults happen in a child process: this test executable run again with
//! `PMP_FAULT_CHILD` set, which makes the `child` test below do one operation.
//! - A kill is `std::process::abort()` (no destructor, no flush, like SIGKILL) at a named
//!   point of the output commit (`PMP_TEST_CRASH_AT`, read by debug builds of
//!   `import/output.rs`), or from the progress callback in the middle of the pipeline.
//! - A full disk is the file-size limit (`RLIMIT_FSIZE`, with SIGXFSZ ignored, so writes
//!   past the limit fail with EFBIG as they would with ENOSPC): set by `ulimit -f` in the
//!   shell that starts the child, or by `prlimit` on a running child.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pmp_core::Algorithm;
use pmp_core::hsm::{Hsm, KeySpec, LmkSource, SoftHsm};
use pmp_core::import::{self, Options};
use pmp_core::keyblock::{Exportability, KeyUsage, ModeOfUse};
use pmp_core::order::product::Product;
use pmp_demo::{self as demo, Cards, IssuerSide, Scenario};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!("pmp-fault-{name}-{}", hex::encode(r)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CARDS: u64 = 400;

/// A key store with the demo's keys, its product file and an issuer file of `CARDS` cards
/// in `dir`; the store is closed again (a child opens it).
fn setup(dir: &Path) {
    let scenario = Scenario::default();
    let hsm = SoftHsm::create_with_test_lmk(&dir.join("ks")).unwrap();
    let issuer = IssuerSide::new(scenario).unwrap();
    issuer.send_keys(&hsm).unwrap();
    demo::bureau_keys(&hsm, scenario.dkep_algorithm).unwrap();
    std::fs::write(dir.join("product.xml"), issuer.product_xml()).unwrap();
    let mut f = std::fs::File::create(dir.join("in.dat")).unwrap();
    issuer.write_file(Cards::new(7, CARDS), &mut f).unwrap();
}

/// Opens the store. The tests of this file run in parallel and start child processes: a
/// child forked by another test holds, until its `exec`, a copy of every descriptor open in
/// this process at that instant — this store's lock among them, when the fork falls just
/// as a handle here is dropped — so the lock is retried for a moment before the refusal
/// counts (a store really held by another process stays refused).
fn open_store(dir: &Path) -> SoftHsm {
    let mut tries = 0;
    loop {
        match SoftHsm::open(&dir.join("ks"), LmkSource::Test) {
            Err(pmp_core::Error::Policy(m)) if m.contains("another process") && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r.expect("the key store opens"),
        }
    }
}

fn import_into(dir: &Path, order: &str, abort_after: Option<u64>) -> pmp_core::Result<()> {
    let hsm = open_store(dir);
    let product = Product::load(&dir.join("product.xml"))?;
    let progress = move |p: import::Progress| {
        if abort_after.is_some_and(|n| p.records >= n) {
            std::process::abort();
        }
    };
    let opts = Options {
        order_id: Some(order.to_owned()),
        workers: 2,
        progress: Some(&progress),
        ..Options::default()
    };
    import::import_file(
        &hsm,
        &product,
        &dir.join("in.dat"),
        &dir.join("order.xof"),
        None,
        &opts,
    )
    .map(|_| ())
}

/// The child's side: one operation on the directory `PMP_FAULT_DIR`, its result on stdout.
/// Without `PMP_FAULT_CHILD` (a normal test run) it does nothing.
#[test]
fn child() {
    let Some(mode) = std::env::var_os("PMP_FAULT_CHILD") else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os("PMP_FAULT_DIR").unwrap());
    let wait_for_go = || {
        println!("READY");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    };
    let result = match mode.to_str().unwrap() {
        "import" => {
            let abort_after = std::env::var("PMP_FAULT_ABORT_AFTER")
                .ok()
                .map(|n| n.parse().unwrap());
            import_into(&dir, "ORDER-NEW", abort_after).map(|()| String::new())
        }
        "keygen" => {
            let hsm = open_store(&dir);
            wait_for_go();
            hsm.generate_key(&KeySpec {
                label: "NEW-KEY".into(),
                algorithm: Algorithm::Aes,
                len: 32,
                usage: KeyUsage::D0,
                mode_of_use: ModeOfUse::B,
                exportability: Exportability::N,
            })
            .map(|i| i.kcv.to_string())
        }
        "close" => close_with_full_disk(&dir, wait_for_go),
        other => panic!("unknown child mode {other}"),
    };
    match result {
        Ok(s) => println!("RESULT OK {s}"),
        Err(e) => println!("RESULT ERR {e}"),
    }
}

/// Opens the store through the C API, uses a data key (usage counted, not yet logged),
/// waits while the parent fills the disk, then `pmp_hsm_close` and its status.
fn close_with_full_disk(dir: &Path, wait_for_go: impl Fn()) -> pmp_core::Result<String> {
    use pmp_core::ffi::*;
    let path = std::ffi::CString::new(dir.join("ks").to_str().unwrap()).unwrap();
    let mut h: *mut pmp_hsm = std::ptr::null_mut();
    let key = c"DKEP-PAN";
    let spec = pmp_cipher_spec {
        key: key.as_ptr(),
        mode: PMP_MODE_ECB,
        iv: std::ptr::null(),
        iv_len: 0,
        padding: PMP_PADDING_PKCS7,
    };
    let data = [0x41u8; 16];
    let mut out = [0u8; 64];
    let mut n = 0usize;
    // SAFETY: valid NUL-terminated strings, live out-pointers, `h` used only while open.
    unsafe {
        assert_eq!(
            pmp_hsm_open(path.as_ptr(), std::ptr::null(), &mut h),
            pmp_status::Ok
        );
        for _ in 0..3 {
            let s = pmp_data_encrypt(
                h,
                &spec,
                data.as_ptr(),
                data.len(),
                out.as_mut_ptr(),
                out.len(),
                &mut n,
            );
            assert_eq!(s, pmp_status::Ok);
        }
        wait_for_go();
        let status = pmp_hsm_close(h);
        Ok(format!("{status:?}"))
    }
}

/// Runs this executable as a child doing `mode` on `dir`, with extra environment, under a
/// file-size limit of `fsize_blocks` × 512 bytes if given. Returns its stdout.
fn run_child(mode: &str, dir: &Path, env: &[(&str, &str)], fsize_blocks: Option<u64>) -> String {
    let exe = std::env::current_exe().unwrap();
    let limit = fsize_blocks.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {limit}; exec \"$0\" \"$@\""
        ))
        .arg(exe)
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("PMP_FAULT_CHILD", mode)
        .env("PMP_FAULT_DIR", dir)
        .env_remove("PMP_TEST_CRASH_AT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The order id in the first line of a file (`order-id="…"` in the XOF header,
/// `order=…` in the reject report).
fn order_of(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let at = text
        .find("order-id=\"")
        .map(|i| i + 10)
        .or_else(|| text.find("order=").map(|i| i + 6))?;
    let rest = &text[at..];
    let end = rest.find(['"', ' ', '\n'])?;
    Some(rest[..end].to_owned())
}

/// The two outputs hold one order (the old or the new one), the XOF verifies, and no
/// temporary or journal is left beside them.
fn assert_one_consistent_pair(dir: &Path, what: &str) -> String {
    let xof = dir.join("order.xof");
    let rejects = import::default_rejects_path(&xof);
    let (a, b) = (order_of(&xof), order_of(&rejects));
    assert_eq!(
        a, b,
        "{what}: the XOF and the reject report are of different orders"
    );
    let order = a.unwrap_or_else(|| panic!("{what}: no outputs"));
    let hsm = open_store(dir);
    let records = pmp_core::xof::verify_file(&xof, &hsm).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(records > 0);
    hsm.verify_audit()
        .unwrap_or_else(|e| panic!("{what}: audit: {e}"));
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{what}: left {leftovers:?}");
    order
}

/// A kill at each phase of an import: in the pipeline, after the temporary files are
/// complete, after the commit journal, between the two renames, after both. After the
/// recovery every import runs first, the outputs are the old pair or the new pair, and
/// nothing is left over.
#[test]
fn an_import_killed_at_any_phase_leaves_the_old_or_the_new_outputs() {
    let t = TempDir::new("kill");
    setup(&t.0);
    import_into(&t.0, "ORDER-OLD", None).unwrap();
    assert_eq!(
        assert_one_consistent_pair(&t.0, "first import"),
        "ORDER-OLD"
    );

    // (phase, environment variable and value that kill the child there, the pair expected
    // after recovery)
    let phases = [
        ("pipeline", ("PMP_FAULT_ABORT_AFTER", "1"), "ORDER-OLD"),
        ("synced", ("PMP_TEST_CRASH_AT", "synced"), "ORDER-OLD"),
        ("journal", ("PMP_TEST_CRASH_AT", "journal"), "ORDER-NEW"),
        (
            "between-renames",
            ("PMP_TEST_CRASH_AT", "between-renames"),
            "ORDER-NEW",
        ),
        ("renamed", ("PMP_TEST_CRASH_AT", "renamed"), "ORDER-NEW"),
    ];
    for (phase, env, expected) in phases {
        // Start each phase from the old pair.
        import_into(&t.0, "ORDER-OLD", None).unwrap();
        let out = run_child("import", &t.0, &[env], None);
        assert!(
            !out.contains("RESULT"),
            "{phase}: the child was not killed: {out}"
        );
        // Before any recovery: a mixed pair only ever stands beside a decided commit.
        let xof = t.0.join("order.xof");
        let mixed = order_of(&xof) != order_of(&import::default_rejects_path(&xof));
        let journal = t.0.join(".order.xof.pmp-commit").exists();
        assert!(
            !mixed || journal,
            "{phase}: a mixed pair without a commit journal"
        );
        import::recover_outputs(&xof).unwrap();
        // Stale temporaries go with the next import; here the recovery is checked alone.
        let got = {
            let (a, b) = (
                order_of(&xof),
                order_of(&import::default_rejects_path(&xof)),
            );
            assert_eq!(a, b, "{phase}: mixed pair after recovery");
            a.unwrap()
        };
        assert_eq!(got, expected, "{phase}");
        // The next import cleans what the killed one left and succeeds.
        import_into(&t.0, "ORDER-NEXT", None).unwrap();
        assert_eq!(assert_one_consistent_pair(&t.0, phase), "ORDER-NEXT");
    }
}

/// A disk that fills up while the XOF is written: the import fails with an I/O error, the
/// old pair stays, no temporary is left, the store opens and its audit log verifies.
#[test]
fn a_full_disk_during_an_import_keeps_the_old_outputs() {
    let t = TempDir::new("full-import");
    setup(&t.0);
    import_into(&t.0, "ORDER-OLD", None).unwrap();
    let xof_len = std::fs::metadata(t.0.join("order.xof")).unwrap().len();
    let audit_len = std::fs::metadata(t.0.join("ks/audit.log")).unwrap().len();
    // Room for the audit log to grow, not for a whole XOF.
    let limit = (audit_len + 16 * 1024).max(xof_len / 2) / 512;
    assert!(
        limit * 512 < xof_len,
        "the XOF must not fit under the limit"
    );
    let out = run_child("import", &t.0, &[], Some(limit));
    assert!(out.contains("RESULT ERR"), "{out}");
    assert!(
        out.contains("File too large") || out.contains("I/O"),
        "{out}"
    );
    assert_eq!(assert_one_consistent_pair(&t.0, "full disk"), "ORDER-OLD");
}

/// Starts a child in `mode` that prints READY, then limits its file size with `prlimit` to
/// the audit log's size at that moment (the log cannot grow: a full disk for it), lets it
/// go on and returns its stdout.
fn run_child_then_fill_disk(mode: &str, dir: &Path) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
        .arg(exe)
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("PMP_FAULT_CHILD", mode)
        .env("PMP_FAULT_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("{mode}: the child ended before READY: {out}");
        }
        out.push_str(&line);
        if line.trim_end().ends_with("READY") {
            break;
        }
    }
    let bytes = std::fs::metadata(dir.join("ks/audit.log")).unwrap().len();
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(child.id().to_string())
        .arg(format!("--fsize={bytes}"))
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    child.wait().unwrap();
    out + &rest
}

/// A disk full when a key is generated (the audit log cannot grow): the call fails with the
/// I/O error, and the store opens afterwards with an audit log that verifies.
///
/// Known gap, left to the software HSM (`src/hsm/soft/`, not this test's owner): the key
/// file is written before the audit entry, so after this failed call the new key is in the
/// store without its audit entry. The test reports it on stdout; make it an assertion
/// (`find_key` fails after an `Err`) once the store writes the audit entry first or removes
/// the key when the entry cannot be written.
#[test]
fn a_full_disk_during_key_generation_leaves_a_store_that_opens() {
    let t = TempDir::new("full-keygen");
    setup(&t.0);
    let out = run_child_then_fill_disk("keygen", &t.0);
    assert!(
        out.contains("RESULT ERR") && out.contains("audit.log"),
        "{out}"
    );
    let hsm = open_store(&t.0);
    hsm.verify_audit().expect("the audit log verifies");
    if hsm.find_key("NEW-KEY").is_ok() {
        println!("known gap: the key generated by the failed call is in the store, unaudited");
    }
}

/// `pmp_hsm_close` reports an audit flush that fails on a full disk (`pmp_hsm_free` could
/// not); the store opens afterwards and its audit log verifies.
#[test]
fn pmp_hsm_close_reports_an_audit_write_failure() {
    let t = TempDir::new("full-close");
    setup(&t.0);
    let out = run_child_then_fill_disk("close", &t.0);
    assert!(out.contains("RESULT OK Io"), "{out}");
    let hsm = open_store(&t.0);
    hsm.verify_audit().expect("the audit log verifies");
}
