//! The attack sequences of issue 15, on a production key store (LMK from components), each
//! refused with its specific error — and the legitimate ones still possible for an
//! authorised pair of officers. The same on a TEST-LMK store runs without officers and says
//! so in the audit log.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use pmp_core::hierarchy::{self, Zone};
use pmp_core::hsm::{
    Activity, CipherSpec, Hsm, ImportCheck, KeyInfo, KeyOrigin, KeySpec, LmkComponent, LmkSource,
    Officer, PinSpec, SoftHsm,
};
use pmp_core::keyblock::{self, Exportability, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use pmp_core::pinblock::{self, Pan, Pin, PinBlockFormat};
use pmp_core::xof::{self, Header, KeyRef, Writer};
use pmp_core::{Algorithm, Error, Padding, SecretKey};

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        TempDir(std::env::temp_dir().join(format!("pmp-attack-{name}-{}", hex::encode(r))))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const ALICE: &[u8] = b"alice correct horse";
const BOB: &[u8] = b"bob battery staple";

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

/// A production store with officers alice and bob, an issuer-zone ZMK (known to the
/// attacker: the issuer's), the bureau's keys (DKep, PIN key, XOF MAC key), authorised.
struct Bureau {
    dir: TempDir,
    hsm: SoftHsm,
    zmk_issuer: SecretKey,
    zi: KeyInfo,
}

fn authorise(hsm: &SoftHsm, a: &[Activity]) {
    hsm.authorise(
        &Officer {
            id: "alice",
            passphrase: ALICE,
        },
        &Officer {
            id: "bob",
            passphrase: BOB,
        },
        a,
        Duration::from_secs(60),
    )
    .unwrap();
}

fn bureau(name: &str) -> Bureau {
    let dir = TempDir::new(name);
    let hsm = SoftHsm::init(&dir.0, lmk()).unwrap();
    hsm.enrol_officer("alice", ALICE).unwrap();
    hsm.enrol_officer("bob", BOB).unwrap();
    let zmk_issuer = SecretKey::generate(Algorithm::Aes, 32).unwrap();
    let c2 = SecretKey::generate(Algorithm::Aes, 32).unwrap();
    let c1: Vec<u8> = zmk_issuer
        .expose_secret()
        .iter()
        .zip(c2.expose_secret())
        .map(|(a, b)| a ^ b)
        .collect();
    authorise(&hsm, &[Activity::FormKey]);
    let zi = hierarchy::zmk_ceremony(
        &hsm,
        "ZMK-ISSUER",
        Zone::Import,
        Algorithm::Aes,
        &[&c1, c2.expose_secret()],
        &[],
        Some(&zmk_issuer.kcv()),
    )
    .unwrap();
    hsm.end_authorisation().unwrap();
    for spec in [
        KeySpec::new("DKEP-PAN", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B),
        KeySpec::new("PIN-KEY", Algorithm::Tdes, 16, KeyUsage::P0, ModeOfUse::B),
        KeySpec::new("XOF-MAC", Algorithm::Aes, 32, KeyUsage::M6, ModeOfUse::C),
    ] {
        hsm.generate_key(&spec).unwrap();
    }
    Bureau {
        dir,
        hsm,
        zmk_issuer,
        zi,
    }
}

fn policy<T: std::fmt::Debug>(r: pmp_core::Result<T>, has: &[&str]) {
    match r {
        Err(Error::Policy(m)) => {
            for h in has {
                assert!(m.contains(h), "{m:?} lacks {h:?}");
            }
        }
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

fn audit(b: &Bureau) -> String {
    b.hsm.flush_audit().unwrap();
    fs::read_to_string(b.dir.0.join("audit.log")).unwrap()
}

fn block_under(kek: &SecretKey, usage: KeyUsage, mode: ModeOfUse, key: &SecretKey) -> String {
    let alg = match key.algorithm() {
        Algorithm::Aes => KeyAlgorithm::Aes,
        Algorithm::Tdes => KeyAlgorithm::Tdes,
    };
    let h = keyblock::Header::new(Version::D, usage, alg, mode, Exportability::N);
    keyblock::wrap(kek, &h, key, None).unwrap()
}

#[test]
fn a_self_formed_kek_cannot_be_made_nor_used_to_export() {
    let b = bureau("formkek");
    let (c1, c2) = (
        SecretKey::generate(Algorithm::Aes, 32).unwrap(),
        SecretKey::generate(Algorithm::Aes, 32).unwrap(),
    );
    let spec = KeySpec::new("MY-KEK", Algorithm::Aes, 32, KeyUsage::K0, ModeOfUse::E);
    policy(
        b.hsm
            .form_key_from_components(&spec, &[c1.expose_secret(), c2.expose_secret()], &[], None),
        &["sensitive activity 'form-key'", "there is no authorisation"],
    );
    // The transport keys cannot even be made exportable, nor exported under ZMK-prod.
    policy(
        b.hsm.generate_key(
            &KeySpec::new("KTK", Algorithm::Aes, 32, KeyUsage::K0, ModeOfUse::D).exportable(),
        ),
        &["'generate-exportable'"],
    );
    // An authorised pair: ZMK-prod (export zone), the transport keys issued under it.
    authorise(&b.hsm, &[Activity::FormKey]);
    let two_way = KeySpec::new("ZMK-B", Algorithm::Aes, 32, KeyUsage::K0, ModeOfUse::B);
    policy(
        b.hsm.form_key_from_components(
            &two_way,
            &[c1.expose_secret(), c2.expose_secret()],
            &[],
            None,
        ),
        &["must belong to one zone"],
    );
    let zp = hierarchy::zmk_ceremony(
        &b.hsm,
        "ZMK-PROD",
        Zone::Export,
        Algorithm::Aes,
        &[c1.expose_secret(), c2.expose_secret()],
        &[],
        None,
    )
    .unwrap();
    // The authorisation was for forming keys only.
    policy(
        hierarchy::issue_transport_keys(&b.hsm, &zp.handle, "L1", Algorithm::Aes, 32),
        &["'generate-exportable'", "does not cover it"],
    );
    authorise(&b.hsm, &[Activity::GenerateExportable, Activity::Export]);
    let t = hierarchy::issue_transport_keys(&b.hsm, &zp.handle, "L2", Algorithm::Aes, 32).unwrap();
    // Mode E at data prep: it encrypts the ICC master keys for production (docs/production.md).
    assert_eq!(t.ktk.info.spec.mode_of_use, ModeOfUse::E);
    b.hsm.end_authorisation().unwrap();
    policy(
        b.hsm.export_key_block(&t.mtk.info.handle, &zp.handle),
        &["'export'", "there is no authorisation"],
    );
    let log = audit(&b);
    assert!(
        log.contains("op=export key=L2-MTK kek=ZMK-PROD activity=export auth=alice+bob"),
        "{log}"
    );
    assert!(log.contains("op=authorise officers=alice+bob activities=generate-exportable,export"));
}

#[test]
fn dkep_data_translates_but_does_not_decrypt_to_clear() {
    let b = bureau("dkep");
    let dk = b.hsm.find_key("DKEP-PAN").unwrap();
    let iv = [7u8; 16];
    let mut ct = [0u8; 32];
    let n = b
        .hsm
        .encrypt(
            &CipherSpec::cbc(&dk, &iv, Padding::Iso9797M2),
            b"4111111111111111",
            &mut ct,
        )
        .unwrap();
    let mut out = [0u8; 32];
    policy(
        b.hsm.decrypt(
            &CipherSpec::cbc(&dk, &iv, Padding::Iso9797M2),
            &ct[..n],
            &mut out,
        ),
        &["'decrypt-to-clear'", "'DKEP-PAN'"],
    );
    // Translation stays open (to another generated key).
    let dk2 = b
        .hsm
        .generate_key(&KeySpec::new(
            "DKEP-2",
            Algorithm::Aes,
            32,
            KeyUsage::D0,
            ModeOfUse::B,
        ))
        .unwrap();
    let mut t = [0u8; 48];
    b.hsm
        .translate(
            &CipherSpec::cbc(&dk, &iv, Padding::Iso9797M2),
            &CipherSpec::ecb(&dk2.handle, Padding::Iso9797M2),
            &ct[..n],
            &mut t,
        )
        .unwrap();
    // An authorised pair reads it.
    authorise(&b.hsm, &[Activity::DecryptToClear]);
    let m = b
        .hsm
        .decrypt(
            &CipherSpec::cbc(&dk, &iv, Padding::Iso9797M2),
            &ct[..n],
            &mut out,
        )
        .unwrap();
    assert_eq!(&out[..m], b"4111111111111111");
}

#[test]
fn pins_cannot_be_translated_to_a_self_formed_key_and_both_keys_are_audited() {
    let b = bureau("pin");
    let (c1, c2) = (
        SecretKey::generate(Algorithm::Tdes, 16).unwrap(),
        SecretKey::generate(Algorithm::Tdes, 16).unwrap(),
    );
    policy(
        b.hsm.form_key_from_components(
            &KeySpec::new("MY-PIN", Algorithm::Tdes, 16, KeyUsage::P0, ModeOfUse::B),
            &[c1.expose_secret(), c2.expose_secret()],
            &[],
            None,
        ),
        &["'form-key'"],
    );
    // PIN translation audits both keys: the issuer's PIN key (imported under its ZMK) to
    // the bureau's PIN key.
    let ipk = SecretKey::generate(Algorithm::Tdes, 16).unwrap();
    let blk = block_under(&b.zmk_issuer, KeyUsage::P0, ModeOfUse::D, &ipk);
    let issuer_pk = b
        .hsm
        .import_key_block("ISSUER-PIN", &b.zi.handle, &blk)
        .unwrap();
    let pk = b.hsm.find_key("PIN-KEY").unwrap();
    let pan = Pan::new("4111111111111111").unwrap();
    let mut pb =
        pinblock::encode(PinBlockFormat::Iso0, &Pin::new("1234").unwrap(), Some(&pan)).unwrap();
    ipk.cipher().encrypt_ecb(&mut pb[..]).unwrap();
    b.hsm
        .translate_pin(
            &PinSpec {
                key: &issuer_pk.handle,
                format: PinBlockFormat::Iso0,
            },
            &PinSpec {
                key: &pk,
                format: PinBlockFormat::Iso0,
            },
            &pan,
            &pb[..],
        )
        .unwrap();
    let log = audit(&b);
    assert!(log.contains("what=pin-from key=ISSUER-PIN "), "{log}");
    assert!(log.contains("what=pin-to key=PIN-KEY "), "{log}");
}

#[test]
fn a_kek_imported_under_the_issuer_zmk_cannot_export_bureau_keys() {
    let b = bureau("k0");
    let mine = SecretKey::generate(Algorithm::Aes, 32).unwrap();
    // Attempt 1: a K0, mode E, under the issuer's ZMK (whose value the attacker knows).
    let blk = block_under(&b.zmk_issuer, KeyUsage::K0, ModeOfUse::E, &mine);
    policy(
        b.hsm.import_key_block("MY-K0", &b.zi.handle, &blk),
        &["'import-kek'", "there is no authorisation"],
    );
    assert!(b.hsm.find_key("MY-K0").is_err());
    // Attempt 2: export the MAC key under the issuer ZMK itself: an import-zone KEK.
    authorise(&b.hsm, &[Activity::Export]);
    let mac = b.hsm.find_key("XOF-MAC").unwrap();
    policy(b.hsm.export_key_block(&mac, &b.zi.handle), &["ZMK-ISSUER"]);
    // Even authorised, a two-way KEK is refused: a KEK belongs to one zone.
    authorise(&b.hsm, &[Activity::ImportKek]);
    let two_way = block_under(&b.zmk_issuer, KeyUsage::K0, ModeOfUse::B, &mine);
    policy(
        b.hsm.import_key_block("MY-K0", &b.zi.handle, &two_way),
        &["must belong to one zone"],
    );
    // The issuer's data keys import without authorisation, with their usage checked.
    b.hsm.end_authorisation().unwrap();
    let tk = SecretKey::generate(Algorithm::Aes, 32).unwrap();
    let tkb = block_under(&b.zmk_issuer, KeyUsage::D0, ModeOfUse::D, &tk);
    let info = hierarchy::import_issuer_key(&b.hsm, "TK", &b.zi.handle, &tkb, &tk.kcv()).unwrap();
    assert_eq!(
        b.hsm.key_origin(&info.handle).unwrap(),
        KeyOrigin::Imported {
            kek: "ZMK-ISSUER".into()
        }
    );
    assert!(matches!(
        b.hsm.import_key_block_checked(
            "K0-AS-D0",
            &b.zi.handle,
            &blk,
            &ImportCheck {
                kcv: None,
                usages: &[KeyUsage::D0, KeyUsage::P0],
            }
        ),
        Err(Error::Policy(m)) if m.contains("usage K0")
    ));
}

fn key_ref(i: &KeyInfo) -> KeyRef {
    KeyRef {
        label: i.spec.label.clone(),
        usage: i.spec.usage,
        algorithm: i.spec.algorithm,
        kcv: i.kcv,
    }
}

#[test]
fn an_imported_mac_key_can_never_mac_or_be_trusted_for_an_xof() {
    let b = bureau("xof");
    // Whoever knows the issuer's ZMK wraps an M6 key marked non-exportable ...
    let forged_mac = SecretKey::generate(Algorithm::Aes, 32).unwrap();
    let blk = block_under(&b.zmk_issuer, KeyUsage::M6, ModeOfUse::C, &forged_mac);
    let imported = b
        .hsm
        .import_key_block("XOF-MAC-2", &b.zi.handle, &blk)
        .unwrap();
    assert_eq!(imported.spec.exportability, Exportability::N);
    let dk = b
        .hsm
        .key_info(&b.hsm.find_key("DKEP-PAN").unwrap())
        .unwrap();
    let header = Header {
        order_id: "O".into(),
        issuer: "I".into(),
        product: "P".into(),
        created: "2025-02-01T00:00:00Z".into(),
        keys: vec![key_ref(&dk), key_ref(&imported)],
        mac_key: "XOF-MAC-2".into(),
        test: false,
    };
    // ... and it can neither write an XOF ...
    policy(
        Writer::new(Vec::new(), &header, &b.hsm, &imported.handle).map(|_| ()),
        &["'XOF-MAC-2'", "imported under ZMK-ISSUER"],
    );
    // ... nor is it the store's XOF MAC key, which `pmp xof verify` expects by default.
    assert_eq!(xof::store_mac_key(&b.hsm).unwrap(), "XOF-MAC");
    // Deleting the real MAC key (to make room) is refused without authorisation.
    let real = b.hsm.find_key("XOF-MAC").unwrap();
    policy(b.hsm.delete_key(&real), &["'delete-key'"]);
    authorise(&b.hsm, &[Activity::DeleteKey]);
    b.hsm.delete_key(&real).unwrap();
    policy(xof::store_mac_key(&b.hsm), &["no XOF MAC key"]);
}

#[test]
fn authorisation_needs_two_enrolled_officers_with_their_passphrases() {
    let b = bureau("auth");
    let o = |id, passphrase| Officer { id, passphrase };
    let a = [Activity::Export];
    let t = Duration::from_secs(60);
    policy(
        b.hsm
            .authorise(&o("alice", ALICE), &o("alice", ALICE), &a, t),
        &["two different officers"],
    );
    policy(
        b.hsm.authorise(
            &o("alice", ALICE),
            &o("bob", b"not bob's passphrase"),
            &a,
            t,
        ),
        &["officer 'bob'"],
    );
    policy(
        b.hsm.authorise(&o("alice", ALICE), &o("carol", BOB), &a, t),
        &["officer 'carol'"],
    );
    // A third officer needs the first two.
    policy(
        b.hsm.enrol_officer("carol", b"carol's long passphrase"),
        &["'manage-officers'"],
    );
    authorise(&b.hsm, &[Activity::ManageOfficers]);
    b.hsm
        .enrol_officer("carol", b"carol's long passphrase")
        .unwrap();
    // The officers are held by the store: they survive a reopen; an expired grant ends.
    let dir = b.dir.0.clone();
    drop(b.hsm);
    let hsm = SoftHsm::open(&dir, lmk()).unwrap();
    hsm.authorise(
        &o("carol", b"carol's long passphrase"),
        &o("bob", BOB),
        &[Activity::DeleteKey],
        Duration::from_secs(1),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let k = hsm.find_key("PIN-KEY").unwrap();
    policy(hsm.delete_key(&k), &["has expired"]);
    // Edited officer lines break the manifest's MAC.
    drop(hsm);
    let m = dir.join("manifest");
    let text = fs::read_to_string(&m).unwrap();
    fs::write(&m, text.replace("officer=carol", "officer=mallory")).unwrap();
    assert!(matches!(
        SoftHsm::open(&dir, lmk()),
        Err(Error::Integrity { .. })
    ));
}

#[test]
fn a_test_lmk_store_waives_dual_control_and_says_so() {
    let d = TempDir::new("test");
    let hsm = SoftHsm::create_with_test_lmk(&d.0).unwrap();
    let k = hsm
        .generate_key(
            &KeySpec::new("K", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B).exportable(),
        )
        .unwrap();
    hsm.delete_key(&k.handle).unwrap();
    hsm.flush_audit().unwrap();
    let log = fs::read_to_string(d.0.join("audit.log")).unwrap();
    assert!(
        log.contains("activity=generate-exportable auth=waived-test-lmk"),
        "{log}"
    );
    assert!(log.contains("op=delete key=K activity=delete-key auth=waived-test-lmk"));
}
