//! Data preparation end to end on SoftHsm: an XOF made here under known test keys is
//! prepared with the issue's example profile; every DGI is checked by decrypting it with
//! the clear test transport keys and comparing with values built by hand from the rules
//! (BER-TLV, CPS, ISO 9564 format 2) and the EMV vectors of `tests/data/emv.txt` (pyemv).
//! Rejects, refusals before any output, and nothing partial on failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pmp_core::hsm::{CipherSpec, Hsm, KeyHandle, KeySpec, SoftHsm};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::pinblock::{self, Pan, Pin};
use pmp_core::prep::profile::Profile;
use pmp_core::prep::{self, Options, Reason};
use pmp_core::xof::{self, Attribute, KeyRef};
use pmp_core::{Algorithm, Error, Mode, Padding, SecretKey};

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!("pmp-test-{name}-{}", hex::encode(r)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PROFILE: &str = r#"<profile format="pmp-profile-1" name="VISA-CLASSIC-EMV" product="DEMO-VISA-CLASSIC">
  <keys ktk="PROD1-KTK" ptk="PROD1-PTK" mtk="PROD1-MTK" dtk="PROD1-DTK" xof-mac-key="XOF-MAC"/>
  <icc-keys option="A" imk-ac="IMK-AC" imk-smi="IMK-SMI" imk-smc="IMK-SMC"
            pan="PAN" psn="PAN_SEQ" psn-default="00"/>
  <dgi id="0101"><tag id="57" from="TRACK2" format="track2"/><tag id="5F20" from="NAME" format="ans"/></dgi>
  <dgi id="0102"><tag id="5A" from="PAN" format="cn"/><tag id="5F24" from="EXPIRY" format="yymm-end-of-month"/>
                 <tag id="5F34" from="PAN_SEQ" format="n" default="00"/><tag id="9F08" value="0096"/></dgi>
  <dgi id="8000" content="icc-master-keys"/>
  <dgi id="9000" content="icc-master-key-kcvs"/>
  <dgi id="8010" content="pin-block"/>
  <dgi id="9010" value="0303"/>
</profile>"#;

/// Clear test keys (test values only).
const IMK: &str = "0123456789ABCDEFFEDCBA9876543210";
const IMK_SMI: &str = "1F2F3D4C5B6B79890123456789ABCDEF";
const IMK_SMC: &str = "A1B3C2D5E5F70719293B4A5D6D7F8F91";
/// MK-SMI and MK-SMC of the two test cards (Option A), with their KCVs: computed with
/// pyemv 1.5.0 (kd.derive_icc_mk_a, tools.encrypt_tdes_ecb).
const MK_SMI: [(&str, &str); 2] = [
    ("C2E94FE67C512AC21F02014623B5E9BF", "E83E7F"),
    ("2619926D9EBA970D98A4D91FDCE95DB5", "D7CC8D"),
];
const MK_SMC: [(&str, &str); 2] = [
    ("541F6B38708F2934078C4A0E4F0B4FF7", "6F2F8A"),
    ("D93DEFF4A4D0ADCE8004FDA8312615F2", "80BB6F"),
];
const KTK: &str = "1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A";
const PTK: &str = "89ABCDEF0123456776543210FEDCBA98";
const DTK: &str = "3D3D3D3D3D3D3D3D3D3D3D3D3D3D3D3D4E4E4E4E4E4E4E4E4E4E4E4E4E4E4E4E";
const MTK: &str = "5F5F5F5F5F5F5F5F5F5F5F5F5F5F5F5F6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A";
const DKEP: &str = "7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B8C8C8C8C8C8C8C8C8C8C8C8C8C8C8C8C";
const BUREAU_PIN: &str = "9D9D9D9D9D9D9D9D9D9D9D9D9D9D9D9DAEAEAEAEAEAEAEAEAEAEAEAEAEAEAEAE";

fn known(hsm: &SoftHsm, spec: KeySpec, clear_hex: &str) -> KeyHandle {
    let clear = hex::decode(clear_hex).unwrap();
    let c2: Vec<u8> = (0..clear.len())
        .map(|i| (i as u8).wrapping_mul(37) | 1)
        .collect();
    let c1: Vec<u8> = clear.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
    hsm.form_key_from_components(&spec, &[&c1, &c2], &[], None)
        .unwrap()
        .handle
}

/// The data-prep key store: IMKs, transport keys, a DKep, the bureau PIN key, the XOF MAC.
fn store(dir: &Path) -> SoftHsm {
    let hsm = SoftHsm::create_with_test_lmk(dir).unwrap();
    for (l, u, v) in [
        ("IMK-AC", KeyUsage::E0, IMK),
        ("IMK-SMI", KeyUsage::E2, IMK_SMI),
        ("IMK-SMC", KeyUsage::E1, IMK_SMC),
    ] {
        known(
            &hsm,
            KeySpec::new(l, Algorithm::Tdes, 16, u, ModeOfUse::X),
            v,
        );
    }
    let t = |l: &str, alg, len, u, m| KeySpec::new(l, alg, len, u, m).exportable();
    known(
        &hsm,
        t("PROD1-KTK", Algorithm::Aes, 32, KeyUsage::K0, ModeOfUse::B),
        KTK,
    );
    known(
        &hsm,
        t("PROD1-PTK", Algorithm::Tdes, 16, KeyUsage::P0, ModeOfUse::B),
        PTK,
    );
    known(
        &hsm,
        t("PROD1-MTK", Algorithm::Aes, 32, KeyUsage::M6, ModeOfUse::C),
        MTK,
    );
    known(
        &hsm,
        t("PROD1-DTK", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B),
        DTK,
    );
    known(
        &hsm,
        KeySpec::new("DKEP-CARD", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B),
        DKEP,
    );
    known(
        &hsm,
        KeySpec::new("BUREAU-PIN", Algorithm::Aes, 32, KeyUsage::P0, ModeOfUse::B),
        BUREAU_PIN,
    );
    hsm.generate_key(&KeySpec::new(
        "XOF-MAC",
        Algorithm::Aes,
        32,
        KeyUsage::M6,
        ModeOfUse::C,
    ))
    .unwrap();
    hsm
}

/// One card's clear data (test values).
struct TestCard {
    pan: &'static str,
    psn: Option<&'static str>,
    expiry: &'static str,
    name: &'static str,
    track2: &'static str,
    pin: &'static str,
}

fn cards() -> Vec<TestCard> {
    vec![
        TestCard {
            pan: "12345678901234567",
            psn: Some("45"),
            expiry: "2402",
            name: "DOE/JOHN",
            track2: "12345678901234567D24022011234500000",
            pin: "1234",
        },
        TestCard {
            pan: "4111111111111111",
            psn: None,
            expiry: "2512",
            name: "ROE/JANE",
            track2: "4111111111111111D2512201123450000",
            pin: "987654",
        },
    ]
}

fn key_ref(hsm: &SoftHsm, label: &str) -> KeyRef {
    let i = hsm.key_info(&hsm.find_key(label).unwrap()).unwrap();
    KeyRef {
        label: i.spec.label,
        usage: i.spec.usage,
        algorithm: i.spec.algorithm,
        kcv: i.kcv,
    }
}

/// An XOF holding `cards` (attributes encrypted under DKEP-CARD, the PIN block in ISO
/// format 4 under BUREAU-PIN), written to `path`.
fn write_xof(hsm: &SoftHsm, cards: &[TestCard], path: &Path) {
    let header = xof::Header {
        order_id: "ORD-2025-0042".into(),
        issuer: "Example Bank".into(),
        product: "DEMO-VISA-CLASSIC".into(),
        created: "2025-03-01T09:30:00Z".into(),
        keys: vec![
            key_ref(hsm, "DKEP-CARD"),
            key_ref(hsm, "BUREAU-PIN"),
            key_ref(hsm, "XOF-MAC"),
        ],
        mac_key: "XOF-MAC".into(),
        test: false,
    };
    let mac = hsm.find_key("XOF-MAC").unwrap();
    let dk = hsm.find_key("DKEP-CARD").unwrap();
    let mut w = xof::Writer::new(Vec::new(), &header, hsm, &mac).unwrap();
    let bureau = SecretKey::from_hex(Algorithm::Aes, BUREAU_PIN).unwrap();
    for (i, c) in cards.iter().enumerate() {
        let mut attributes = Vec::new();
        let mut put = |name: &str, v: &str| {
            let iv = [i as u8; 16];
            let mut ct = vec![0u8; v.len() + 16];
            let n = hsm
                .encrypt(
                    &CipherSpec::cbc(&dk, &iv, Padding::Iso9797M2),
                    v.as_bytes(),
                    &mut ct,
                )
                .unwrap();
            ct.truncate(n);
            attributes.push(Attribute {
                name: name.into(),
                key: "DKEP-CARD".into(),
                mode: Mode::Cbc,
                iv: Some(iv.to_vec()),
                padding: Padding::Iso9797M2,
                ciphertext: ct,
            });
        };
        put("PAN", c.pan);
        if let Some(p) = c.psn {
            put("PAN_SEQ", p);
        }
        put("EXPIRY", c.expiry);
        put("NAME", c.name);
        put("TRACK2", c.track2);
        let block = pinblock::encode_iso4(
            &bureau,
            &Pin::new(c.pin).unwrap(),
            &Pan::new(c.pan).unwrap(),
        )
        .unwrap();
        attributes.push(Attribute {
            name: "PIN_BLOCK".into(),
            key: "BUREAU-PIN".into(),
            mode: Mode::Ecb,
            iv: None,
            padding: Padding::None,
            ciphertext: block.to_vec(),
        });
        w.write_record(&xof::Record {
            seq: i as u64 + 1,
            issuer_id: format!("C-{:04}", i + 1),
            attributes,
        })
        .unwrap();
    }
    let (bytes, _) = w.finish().unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The DGIs of each card of a production file: id -> (attributes text, data bytes).
fn dgis(file: &str) -> Vec<BTreeMap<String, (String, Vec<u8>)>> {
    let mut cards = Vec::new();
    for line in file.lines() {
        let l = line.trim();
        if l.starts_with("<card ") {
            cards.push(BTreeMap::new());
        } else if let Some(rest) = l.strip_prefix("<dgi id=\"") {
            let id = rest[..4].to_string();
            let (attrs, tail) = rest[5..].split_once('>').unwrap();
            let hexdata = tail.strip_suffix("</dgi>").unwrap();
            cards.last_mut().unwrap().insert(
                id,
                (attrs.trim().to_string(), hex::decode(hexdata).unwrap()),
            );
        }
    }
    cards
}

fn decrypt(alg: Algorithm, key: &str, mode: Mode, iv: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let k = SecretKey::from_hex(alg, key).unwrap();
    let mut buf = data.to_vec();
    k.cipher().decrypt_blocks(mode, iv, &mut buf).unwrap();
    buf
}

fn iv_of(attrs: &str) -> Vec<u8> {
    let i = attrs.find("iv=\"").unwrap() + 4;
    hex::decode(&attrs[i..i + 32]).unwrap()
}

#[test]
fn prepares_the_example_profile_and_every_dgi_decrypts_to_what_the_rules_say() {
    let dir = TempDir::new("prep-e2e");
    let hsm = store(&dir.path("ks"));
    write_xof(&hsm, &cards(), &dir.path("order.xof"));
    let profile = Profile::parse(PROFILE).unwrap();
    let out = dir.path("production.xml");
    let s = prep::run_files(
        &hsm,
        &profile,
        &dir.path("order.xof"),
        &out,
        None,
        &Options {
            workers: 2,
            created: Some("2025-03-01T10:00:00Z".into()),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!((s.read, s.prepared, s.rejected), (2, 2, 0));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("<production version=\"1\">"));
    assert!(text.contains("profile=\"VISA-CLASSIC-EMV\""));
    assert!(text.contains("<trailer cards=\"2\""));
    // No clear PAN, name or track 2 anywhere in the file.
    for c in cards() {
        for v in [c.pan, c.name, c.track2] {
            assert!(
                !text.contains(v) && !text.contains(&hex::encode_upper(v)),
                "{v}"
            );
        }
    }
    let all = dgis(&text);
    assert_eq!(all.len(), 2);
    let card1 = &all[0];
    assert_eq!(
        card1.keys().collect::<Vec<_>>(),
        ["0101", "0102", "8000", "8010", "9000", "9010"]
    );
    let (a, d) = &card1["0101"];
    assert!(
        a.contains("key=\"PROD1-DTK\" mode=\"cbc\"") && a.contains("padding=\"2\""),
        "{a}"
    );
    let clear = decrypt(Algorithm::Aes, DTK, Mode::Cbc, Some(&iv_of(a)), d);
    // 70 L | 57 12 12345678901234567D24022011234500000F (35 nibbles + F = 18 bytes)
    //      | 5F20 08 "DOE/JOHN", then padding method 2.
    // 20 + 11 = 31 = 0x1F bytes inside the template.
    let want =
        "701F".to_string() + "571212345678901234567D24022011234500000F" + "5F2008444F452F4A4F484E";
    assert_eq!(hex::encode_upper(&clear[..want.len() / 2]), want);
    // 33 bytes, then padding method 2 to 48: 80 and 14 zeros.
    assert_eq!(clear.len(), 48);
    assert_eq!(
        hex::encode_upper(&clear[33..]),
        format!("80{}", "00".repeat(14))
    );
    let (a, d) = &card1["0102"];
    let clear = decrypt(Algorithm::Aes, DTK, Mode::Cbc, Some(&iv_of(a)), d);
    // 70 L | 5A 09 12345678901234567F | 5F24 03 240229 | 5F34 01 45 | 9F08 02 0096.
    let want = "701A5A0912345678901234567F5F24032402295F3401459F08020096";
    assert_eq!(hex::encode_upper(&clear[..want.len() / 2]), want);
    // 8000: under the KTK, ECB, no padding; MK-AC from tests/data/emv.txt (pyemv: Option
    // A, IMK 0123..3210, PAN 12345678901234567, PSN 45), MK-SMI and MK-SMC from pyemv.
    let (a, d) = &card1["8000"];
    assert_eq!(a, "key=\"PROD1-KTK\" mode=\"ecb\" padding=\"none\"");
    let clear = decrypt(Algorithm::Aes, KTK, Mode::Ecb, None, d);
    let want = format!(
        "946DC1A8C78A624519BC4645CB073737{}{}",
        MK_SMI[0].0, MK_SMC[0].0
    );
    assert_eq!(hex::encode_upper(&clear), want);
    let kcvs = format!("FF089D{}{}", MK_SMI[0].1, MK_SMC[0].1);
    assert_eq!(card1["9000"], (String::new(), hex::decode(kcvs).unwrap()));
    let (a, d) = &card1["8010"];
    assert_eq!(a, "key=\"PROD1-PTK\" mode=\"ecb\" padding=\"none\"");
    // ISO 9564-1 format 2 of PIN 1234, by hand.
    assert_eq!(
        hex::encode_upper(decrypt(Algorithm::Tdes, PTK, Mode::Ecb, None, d)),
        "241234FFFFFFFFFF"
    );
    assert_eq!(card1["9010"], (String::new(), vec![3, 3]));

    // Card 2: no PAN_SEQ attribute, so PSN 00 (psn-default, and 5F34's default).
    let card2 = &all[1];
    let (a, d) = &card2["0102"];
    let clear = decrypt(Algorithm::Aes, DTK, Mode::Cbc, Some(&iv_of(a)), d);
    // 70 L | 5A 08 4111111111111111 | 5F24 03 251231 | 5F34 01 00 | 9F08 02 0096.
    let want = "70195A0841111111111111115F24032512315F3401009F08020096";
    assert_eq!(hex::encode_upper(&clear[..want.len() / 2]), want);
    // Card 2's keys: MK-SMI and MK-SMC from pyemv as above.
    let clear = decrypt(Algorithm::Aes, KTK, Mode::Ecb, None, &card2["8000"].1);
    assert_eq!(
        hex::encode_upper(&clear[16..]),
        format!("{}{}", MK_SMI[1].0, MK_SMC[1].0)
    );
    assert_eq!(
        hex::encode_upper(&card2["9000"].1[3..]),
        format!("{}{}", MK_SMI[1].1, MK_SMC[1].1)
    );
    let (_, d) = &card2["8010"];
    assert_eq!(
        hex::encode_upper(decrypt(Algorithm::Tdes, PTK, Mode::Ecb, None, d)),
        "26987654FFFFFFFF"
    );
    // Fresh IVs: the two cards' 0101 IVs differ.
    assert_ne!(iv_of(&all[0]["0101"].0), iv_of(&all[1]["0101"].0));
    // The rejects report exists and is empty.
    assert_eq!(
        std::fs::read_to_string(dir.path("production.rejects.txt")).unwrap(),
        ""
    );
}

#[test]
fn cards_that_do_not_fit_are_rejected_with_no_value_in_the_report() {
    let dir = TempDir::new("prep-rej");
    let hsm = store(&dir.path("ks"));
    let mut cs = cards();
    cs[0].expiry = "2413"; // month 13
    cs.push(TestCard {
        pan: "4000001234567899",
        psn: Some("123"),
        expiry: "2601",
        name: "A/B",
        track2: "4000001234567899D2601201000000000",
        pin: "1111",
    });
    cs.push(TestCard {
        pan: "5500000000000004",
        psn: None,
        expiry: "2601",
        name: "X/Y",
        track2: "5500000000000004",
        pin: "2222",
    });
    write_xof(&hsm, &cs, &dir.path("order.xof"));
    let profile = Profile::parse(PROFILE).unwrap();
    let s = prep::run_files(
        &hsm,
        &profile,
        &dir.path("order.xof"),
        &dir.path("p.xml"),
        Some(&dir.path("r.txt")),
        &Options::default(),
    )
    .unwrap();
    assert_eq!((s.read, s.prepared, s.rejected), (4, 1, 3));
    assert_eq!(s.reasons[&Reason::BadValue], 2);
    assert_eq!(s.reasons[&Reason::Psn], 1);
    let report = std::fs::read_to_string(dir.path("r.txt")).unwrap();
    assert_eq!(
        report,
        "seq=1 id=C-0001 dgi=0102 attribute=EXPIRY reason=bad-value\n\
         seq=3 id=C-0003 dgi=- attribute=PAN_SEQ reason=psn\n\
         seq=4 id=C-0004 dgi=0101 attribute=TRACK2 reason=bad-value\n"
    );
    let text = std::fs::read_to_string(dir.path("p.xml")).unwrap();
    assert!(text.contains("<card seq=\"1\" id=\"C-0002\""));
    assert!(text.contains("<trailer cards=\"1\""));
}

#[test]
fn failures_leave_no_output() {
    let dir = TempDir::new("prep-fail");
    let hsm = store(&dir.path("ks"));
    write_xof(&hsm, &cards(), &dir.path("order.xof"));
    let out = dir.path("p.xml");
    let run = |profile: &str, input: &Path| {
        prep::run_files(
            &hsm,
            &Profile::parse(profile).unwrap(),
            input,
            &out,
            None,
            &Options::default(),
        )
    };
    // A tampered XOF (the last record's MAC): refused at the end, nothing left.
    let mut bytes = std::fs::read(dir.path("order.xof")).unwrap();
    let s = String::from_utf8(bytes.clone()).unwrap();
    let at = s.rfind("<record seq=\"2\"").unwrap()
        + s[s.rfind("<record seq=\"2\"").unwrap()..]
            .find("mac=\"")
            .unwrap()
        + 5;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(dir.path("bad.xof"), &bytes).unwrap();
    assert!(matches!(
        run(PROFILE, &dir.path("bad.xof")),
        Err(Error::Integrity { .. })
    ));
    // A missing key, a wrong product, a pinned XOF MAC key that is not the file's.
    assert!(matches!(
        run(
            &PROFILE.replace("PROD1-DTK", "NOPE"),
            &dir.path("order.xof")
        ),
        Err(Error::NotFound(_))
    ));
    assert!(
        run(
            &PROFILE.replace("product=\"DEMO-VISA-CLASSIC\"", "product=\"OTHER\""),
            &dir.path("order.xof")
        )
        .is_err()
    );
    assert!(matches!(
        run(
            &PROFILE.replace("xof-mac-key=\"XOF-MAC\"", "xof-mac-key=\"PROD1-MTK\""),
            &dir.path("order.xof")
        ),
        Err(Error::Policy(_))
    ));
    // Roles mixed up: the DTK named as the KTK.
    assert!(matches!(
        run(
            &PROFILE
                .replace("ktk=\"PROD1-KTK\"", "ktk=\"PROD1-DTK\"")
                .replace("dtk=\"PROD1-DTK\"", "dtk=\"PROD1-KTK\""),
            &dir.path("order.xof")
        ),
        Err(Error::Policy(_))
    ));
    // The output may not be the input.
    assert!(
        prep::run_files(
            &hsm,
            &Profile::parse(PROFILE).unwrap(),
            &dir.path("order.xof"),
            &dir.path("order.xof"),
            None,
            &Options::default()
        )
        .is_err()
    );
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut left: Vec<_> = left.into_iter().filter(|n| n != "ks").collect();
    left.sort();
    assert_eq!(left, ["bad.xof", "order.xof"]);
}

const EXAMPLE: &str = "tests/data/production/example.xml";

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE)
}

/// Writes the example of `docs/production.md` §8 (run once with `--ignored`; its IVs are
/// random, so the file is generated, committed, then checked by the next test and by
/// `scripts/interop_prep.py`).
#[test]
#[ignore]
fn write_the_docs_example() {
    let dir = TempDir::new("prep-example");
    let hsm = store(&dir.path("ks"));
    write_xof(&hsm, &cards(), &dir.path("order.xof"));
    let profile = Profile::parse(PROFILE).unwrap();
    prep::run_files(
        &hsm,
        &profile,
        &dir.path("order.xof"),
        &example_path(),
        Some(&dir.path("r.txt")),
        &Options {
            created: Some("2025-03-01T10:00:00Z".into()),
            ..Options::default()
        },
    )
    .unwrap();
}

/// The example of `docs/production.md` verifies on a store holding only the published
/// transport keys, and the writer reproduces it byte for byte from the cards read.
#[test]
fn the_docs_example_verifies_and_the_writer_reproduces_it() {
    use pmp_core::prep::production::{Reader, Writer};
    let dir = TempDir::new("prep-example-check");
    let hsm = SoftHsm::create_with_test_lmk(&dir.path("ks")).unwrap();
    let t = |l: &str, alg, len, u, m| KeySpec::new(l, alg, len, u, m).exportable();
    known(
        &hsm,
        t("PROD1-KTK", Algorithm::Aes, 32, KeyUsage::K0, ModeOfUse::B),
        KTK,
    );
    known(
        &hsm,
        t("PROD1-PTK", Algorithm::Tdes, 16, KeyUsage::P0, ModeOfUse::B),
        PTK,
    );
    let mtk = known(
        &hsm,
        t("PROD1-MTK", Algorithm::Aes, 32, KeyUsage::M6, ModeOfUse::C),
        MTK,
    );
    known(
        &hsm,
        t("PROD1-DTK", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B),
        DTK,
    );
    let text = std::fs::read(example_path()).unwrap();
    let mut r = Reader::open(&text[..], &hsm, EXAMPLE, Some("PROD1-MTK")).unwrap();
    let header = r.header().clone();
    let mut w = Writer::new(Vec::new(), &header, &hsm, &mtk).unwrap();
    let mut n = 0;
    while let Some(c) = r.next_card().unwrap() {
        w.write_card(c).unwrap();
        n += 1;
    }
    assert_eq!(n, 2);
    let (again, _) = w.finish().unwrap();
    assert_eq!(
        String::from_utf8(again).unwrap(),
        String::from_utf8(text).unwrap()
    );
}

#[test]
fn many_batches_on_several_workers_keep_the_order() {
    let dir = TempDir::new("prep-order");
    let hsm = store(&dir.path("ks"));
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut cs = Vec::new();
    for i in 0..57u32 {
        let pan = leak(format!("41111111{:08}", 1000 + i));
        // Every 9th card has an impossible expiry month: rejected, never lost.
        let expiry = if i % 9 == 4 { "2613" } else { "2612" };
        cs.push(TestCard {
            pan,
            psn: None,
            expiry,
            name: "DOE/JOHN",
            track2: leak(format!("{pan}D2612201000000000")),
            pin: "1234",
        });
    }
    write_xof(&hsm, &cs, &dir.path("order.xof"));
    let profile = Profile::parse(PROFILE).unwrap();
    let opts = Options {
        workers: 3,
        batch: 4,
        ..Options::default()
    };
    let s = prep::run_files(
        &hsm,
        &profile,
        &dir.path("order.xof"),
        &dir.path("p.xml"),
        None,
        &opts,
    )
    .unwrap();
    let rejected: Vec<u32> = (0..57).filter(|i| i % 9 == 4).collect();
    assert_eq!((s.read, s.rejected), (57, rejected.len() as u64));
    let text = std::fs::read_to_string(dir.path("p.xml")).unwrap();
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("<card seq=\""))
        .map(|l| {
            let (seq, rest) = l.split_once('"').unwrap();
            let id = rest
                .split("id=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            format!("{seq}:{id}")
        })
        .collect();
    let want: Vec<String> = (0..57u32)
        .filter(|i| i % 9 != 4)
        .enumerate()
        .map(|(k, i)| format!("{}:C-{:04}", k + 1, i + 1))
        .collect();
    assert_eq!(ids, want);
    let report = std::fs::read_to_string(dir.path("p.rejects.txt")).unwrap();
    let seqs: Vec<u32> = report
        .lines()
        .map(|l| l.split(' ').next().unwrap()[4..].parse().unwrap())
        .collect();
    assert_eq!(seqs, rejected.iter().map(|i| i + 1).collect::<Vec<_>>());
}
