//! A key store that cannot be quietly edited (issue 15): every tamper the issue lists is
//! detected on open — a deleted, added, foreign, replaced or rolled-back key file; a
//! deleted or edited manifest; a truncated or rolled-back audit log — a torn final audit
//! line is recovered (kept as evidence, chain continued), temporary files are cleaned, and
//! the store lock cannot be deleted from under a running instance.

use std::fs;
use std::path::{Path, PathBuf};

use pmp_core::hsm::{
    Activity, Hsm, KeyOrigin, KeySpec, LmkComponent, LmkSource, Officer, SoftHsm, verify_audit_log,
};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::{Algorithm, Error, SecretKey};

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        TempDir(std::env::temp_dir().join(format!("pmp-tamper-{name}-{}", hex::encode(r))))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Two AES-256 LMK components (arbitrary test values, not secret).
fn lmk() -> LmkSource {
    let c1 =
        hex::decode("00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF").unwrap();
    let c2 =
        hex::decode("0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F1").unwrap();
    LmkSource::Components(vec![
        LmkComponent::new(&c1, None),
        LmkComponent::new(&c2, None),
    ])
}

fn dk(label: &str) -> KeySpec {
    KeySpec::new(label, Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B)
}

fn kb(dir: &Path, label: &str) -> PathBuf {
    dir.join("keys").join(format!("{label}.kb"))
}

/// Deletes `label` as a pair of officers may on a production store.
fn delete(hsm: &SoftHsm, label: &str) {
    hsm.authorise(
        &Officer {
            id: "alice",
            passphrase: b"alice's passphrase",
        },
        &Officer {
            id: "bob",
            passphrase: b"bob's passphrase!",
        },
        &[Activity::DeleteKey],
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    hsm.delete_key(&hsm.find_key(label).unwrap()).unwrap();
    hsm.end_authorisation().unwrap();
}

/// A store with keys A and B and officers alice and bob, closed.
fn store(name: &str) -> TempDir {
    let d = TempDir::new(name);
    let hsm = SoftHsm::init(&d.0, lmk()).unwrap();
    hsm.enrol_officer("alice", b"alice's passphrase").unwrap();
    hsm.enrol_officer("bob", b"bob's passphrase!").unwrap();
    hsm.generate_key(&dk("A")).unwrap();
    hsm.generate_key(&dk("B")).unwrap();
    d
}

fn refused(dir: &Path, what_ends: &str, reason_has: &str) {
    match SoftHsm::open(dir, lmk()) {
        Err(Error::Integrity { what, reason }) => {
            assert!(what.ends_with(what_ends), "{what} (reason: {reason})");
            assert!(reason.contains(reason_has), "{reason}");
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

#[test]
fn an_untouched_store_reopens() {
    let d = store("ok");
    let hsm = SoftHsm::open(&d.0, lmk()).unwrap();
    assert_eq!(hsm.list_keys().unwrap().len(), 2);
    drop(hsm);
    verify_audit_log(&d.0, lmk()).unwrap();
}

#[test]
fn a_deleted_key_file_is_detected() {
    let d = store("del");
    fs::remove_file(kb(&d.0, "B")).unwrap();
    refused(&d.0, "B.kb", "missing (deleted)");
}

#[test]
fn a_key_file_put_back_after_deletion_is_detected() {
    let d = store("back");
    let saved = fs::read(kb(&d.0, "B")).unwrap();
    {
        let hsm = SoftHsm::open(&d.0, lmk()).unwrap();
        delete(&hsm, "B");
    }
    fs::write(kb(&d.0, "B"), &saved).unwrap();
    refused(&d.0, "B.kb", "not in the store's manifest");
}

#[test]
fn a_key_file_rolled_back_to_an_older_version_is_detected() {
    let d = store("roll");
    let old = fs::read(kb(&d.0, "B")).unwrap();
    {
        let hsm = SoftHsm::open(&d.0, lmk()).unwrap();
        delete(&hsm, "B");
        hsm.generate_key(&dk("B")).unwrap();
    }
    fs::write(kb(&d.0, "B"), &old).unwrap();
    refused(&d.0, "B.kb", "differs from the store's manifest");
}

#[test]
fn a_key_file_from_another_store_under_the_same_lmk_is_refused() {
    let d = store("home");
    let other = store("foreign");
    // Added under a new name, and swapped in for an existing key: both refused.
    fs::copy(kb(&other.0, "A"), kb(&d.0, "A")).unwrap();
    refused(&d.0, "A.kb", "differs from the store's manifest");
    let d = store("home2");
    fs::copy(kb(&other.0, "A"), kb(&d.0, "C")).unwrap();
    refused(&d.0, "C.kb", "not in the store's manifest");
}

#[test]
fn a_deleted_or_edited_manifest_is_detected() {
    let d = store("man");
    let m = d.0.join("manifest");
    let text = fs::read_to_string(&m).unwrap();
    // Removing the line of key B (to hide its deletion) breaks the manifest's MAC.
    let edited: String = text
        .lines()
        .filter(|l| !l.starts_with("key=B "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(edited, text);
    fs::write(&m, &edited).unwrap();
    refused(&d.0, "manifest", "MAC does not verify");
    fs::remove_file(&m).unwrap();
    refused(&d.0, "manifest", "missing");
}

#[test]
fn a_truncated_audit_log_is_detected() {
    let d = store("trunc");
    let log = d.0.join("audit.log");
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    let cut: String = lines[..lines.len() - 1]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&log, cut).unwrap();
    refused(&d.0, "audit.log", "the log ends at entry");
    assert!(matches!(
        verify_audit_log(&d.0, lmk()),
        Err(Error::Integrity { .. })
    ));
    fs::remove_file(&log).unwrap();
    refused(&d.0, "audit.log", "the log ends at entry 0");
}

#[test]
fn a_rolled_back_audit_log_is_detected() {
    let d = store("arb");
    let log = d.0.join("audit.log");
    let before = fs::read(&log).unwrap();
    let manifest_before = fs::read(d.0.join("manifest")).unwrap();
    {
        let hsm = SoftHsm::open(&d.0, lmk()).unwrap();
        delete(&hsm, "A");
    }
    // The log alone rolled back (hiding the deletion): refused.
    fs::write(&log, &before).unwrap();
    refused(&d.0, "audit.log", "the log ends at entry");
    // Log and manifest rolled back together: key A's file is gone.
    fs::write(d.0.join("manifest"), &manifest_before).unwrap();
    refused(&d.0, "A.kb", "missing (deleted)");
}

#[test]
fn a_torn_final_audit_line_is_kept_as_evidence_and_the_chain_continues() {
    let d = store("torn");
    let log = d.0.join("audit.log");
    let n_before = verify_audit_log(&d.0, lmk()).unwrap().entries;
    // A crash mid-write: half a line, no newline.
    let mut bytes = fs::read(&log).unwrap();
    bytes.extend_from_slice(b"99 1700000000 00112233 op=generate key=HALF");
    fs::write(&log, &bytes).unwrap();
    assert!(matches!(
        verify_audit_log(&d.0, lmk()),
        Err(Error::Integrity { reason, .. }) if reason.contains("torn")
    ));
    let hsm = SoftHsm::open(&d.0, lmk()).unwrap();
    hsm.generate_key(&dk("C")).unwrap();
    drop(hsm);
    let v = verify_audit_log(&d.0, lmk()).unwrap();
    assert_eq!(v.entries, n_before + 2, "recover entry + generate entry");
    let text = fs::read_to_string(&log).unwrap();
    let recover = text
        .lines()
        .find(|l| l.contains("op=audit-recover"))
        .expect("a recover entry");
    assert!(
        recover.contains(&format!("after_seq={n_before}")),
        "{recover}"
    );
    let evidence = recover
        .split(' ')
        .find_map(|w| w.strip_prefix("evidence="))
        .unwrap();
    assert_eq!(
        fs::read(d.0.join(evidence)).unwrap(),
        b"99 1700000000 00112233 op=generate key=HALF"
    );
    // A bad line that is not the last one is tampering, not a crash.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[1] = lines[1].replace("op=", "op=x");
    fs::write(&log, lines.join("\n") + "\n").unwrap();
    refused(&d.0, "line 2", "chain MAC does not verify");
}

#[test]
fn temporary_files_are_removed_on_open_and_the_removal_audited() {
    let d = store("tmp");
    fs::write(d.0.join("keys").join(".X.kb.tmp123-0"), b"junk").unwrap();
    fs::write(d.0.join(".manifest.tmp123-1"), b"junk").unwrap();
    let hsm = SoftHsm::open(&d.0, lmk()).unwrap();
    drop(hsm);
    assert!(!d.0.join("keys").join(".X.kb.tmp123-0").exists());
    assert!(!d.0.join(".manifest.tmp123-1").exists());
    let text = fs::read_to_string(d.0.join("audit.log")).unwrap();
    assert!(text.contains("temporary_files_removed=2"), "{text}");
}

#[test]
fn the_lock_cannot_be_deleted_from_under_a_running_instance() {
    let d = store("lock");
    let hsm = SoftHsm::open(&d.0, lmk()).unwrap();
    // Whatever lock file an operator or attacker might remove, a second open is refused.
    let _ = fs::remove_file(d.0.join("lock"));
    assert!(matches!(SoftHsm::open(&d.0, lmk()), Err(Error::Policy(_))));
    // The directory itself cannot be removed while it holds the store.
    assert!(fs::remove_dir(&d.0).is_err());
    drop(hsm);
    SoftHsm::open(&d.0, lmk()).unwrap();
}

#[test]
fn a_first_format_store_is_refused_with_a_clear_message() {
    let d = TempDir::new("v1");
    fs::create_dir_all(d.0.join("keys")).unwrap();
    let lmk_key = SecretKey::new(
        Algorithm::Aes,
        &hex::decode("0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0E").unwrap(),
    )
    .unwrap();
    fs::write(
        d.0.join("store.meta"),
        format!(
            "format=pmp-softhsm-1\nlmk=PRODUCTION\nlmk_kcv={}\n",
            lmk_key.kcv()
        ),
    )
    .unwrap();
    match SoftHsm::open(&d.0, lmk()) {
        Err(Error::Unsupported(m)) => assert!(m.contains("create a new store"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_key_records_its_origin() {
    let d = TempDir::new("origin");
    let hsm = SoftHsm::create_with_test_lmk(&d.0).unwrap();
    let g = hsm.generate_key(&dk("G")).unwrap();
    let c1 = SecretKey::generate(Algorithm::Aes, 32).unwrap();
    let c2 = SecretKey::generate(Algorithm::Aes, 32).unwrap();
    let c = hsm
        .form_key_from_components(
            &dk("C"),
            &[c1.expose_secret(), c2.expose_secret()],
            &[],
            None,
        )
        .unwrap();
    assert_eq!(hsm.key_origin(&g.handle).unwrap(), KeyOrigin::Generated);
    assert_eq!(hsm.key_origin(&c.handle).unwrap(), KeyOrigin::Components);
    drop(hsm);
    let hsm = SoftHsm::open(&d.0, LmkSource::Test).unwrap();
    let c = hsm.find_key("C").unwrap();
    assert_eq!(
        hsm.key_origin(&c).unwrap(),
        KeyOrigin::Components,
        "bound, reloaded"
    );
}

#[test]
fn failure_entries_are_anchored_by_drop_so_their_truncation_is_detected() {
    let d = store("failanchor");
    {
        let hsm = SoftHsm::open(&d.0, lmk()).unwrap();
        let k = hsm.find_key("A").unwrap();
        let mut out = [0u8; 32];
        // A 15-byte ciphertext: refused, logged as a failure entry.
        assert!(
            hsm.decrypt(
                &pmp_core::hsm::CipherSpec::ecb(&k, pmp_core::Padding::Iso9797M2),
                &[1u8; 15],
                &mut out
            )
            .is_err()
        );
    }
    let log = d.0.join("audit.log");
    let text = fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("op=decrypt") && last.contains("outcome=refused"),
        "{last}"
    );
    fs::write(&log, &text[..text.len() - last.len() - 1]).unwrap();
    refused(&d.0, "audit.log", "the log ends at entry");
}
