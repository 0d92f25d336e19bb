//! The production file: round trip, every tamper case (like the XOF's), hostile input, the
//! writer's and reader's separation rules, and the production-side key checks.

use std::path::PathBuf;

use pmp_core::hsm::{Hsm, KeySpec, SoftHsm};
use pmp_core::keyblock::{KeyUsage, ModeOfUse};
use pmp_core::prep::production::{self, Card, Dgi, Header, Protection, Reader, Writer};
use pmp_core::xof::KeyRef;
use pmp_core::{Algorithm, Error, Mode, Padding};

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        TempDir(std::env::temp_dir().join(format!("pmp-test-{name}-{}", hex::encode(r))))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const KEYS: [(&str, KeyUsage, ModeOfUse, Algorithm, usize, &str); 4] = [
    (
        "KTK",
        KeyUsage::K0,
        ModeOfUse::E,
        Algorithm::Aes,
        32,
        "1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A",
    ),
    (
        "PTK",
        KeyUsage::P0,
        ModeOfUse::B,
        Algorithm::Tdes,
        16,
        "89ABCDEF0123456776543210FEDCBA98",
    ),
    (
        "MTK",
        KeyUsage::M6,
        ModeOfUse::C,
        Algorithm::Aes,
        32,
        "5F5F5F5F5F5F5F5F5F5F5F5F5F5F5F5F6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A",
    ),
    (
        "DTK",
        KeyUsage::D0,
        ModeOfUse::B,
        Algorithm::Aes,
        32,
        "3D3D3D3D3D3D3D3D3D3D3D3D3D3D3D3D4E4E4E4E4E4E4E4E4E4E4E4E4E4E4E4E",
    ),
];

/// A store with the four transport keys (known test values); `skip` leaves one out and
/// `mtk` overrides the MTK's value.
fn store(dir: &std::path::Path, skip: Option<&str>, mtk: Option<&str>) -> SoftHsm {
    keys_into(SoftHsm::create_with_test_lmk(dir).unwrap(), skip, mtk)
}

fn keys_into(hsm: SoftHsm, skip: Option<&str>, mtk: Option<&str>) -> SoftHsm {
    for (label, usage, mode, alg, len, value) in KEYS {
        if Some(label) == skip {
            continue;
        }
        let value = if label == "MTK" {
            mtk.unwrap_or(value)
        } else {
            value
        };
        let clear = hex::decode(value).unwrap();
        let c2 = vec![0x23u8; len];
        let c1: Vec<u8> = clear.iter().zip(&c2).map(|(a, b)| a ^ b).collect();
        hsm.form_key_from_components(
            &KeySpec::new(label, alg, len, usage, mode).exportable(),
            &[&c1, &c2],
            &[],
            None,
        )
        .unwrap();
    }
    hsm
}

fn header(hsm: &SoftHsm) -> Header {
    let keys = ["KTK", "PTK", "MTK", "DTK"]
        .iter()
        .map(|l| {
            let i = hsm.key_info(&hsm.find_key(l).unwrap()).unwrap();
            KeyRef {
                label: i.spec.label,
                usage: i.spec.usage,
                algorithm: i.spec.algorithm,
                kcv: i.kcv,
            }
        })
        .collect();
    Header {
        order_id: "ORD-1".into(),
        issuer: "Example Bank".into(),
        product: "DEMO-VISA-CLASSIC".into(),
        profile: "VISA-CLASSIC-EMV".into(),
        created: "2025-03-01T10:00:00Z".into(),
        keys,
        mac_key: "MTK".into(),
        test: false,
    }
}

fn prot(key: &str, mode: Mode, iv: Option<Vec<u8>>, padding: Padding) -> Option<Protection> {
    Some(Protection {
        key: key.into(),
        mode,
        iv,
        padding,
    })
}

fn card(seq: u64) -> Card {
    Card {
        seq,
        id: format!("C-{seq:04}"),
        dgis: vec![
            Dgi {
                id: 0x0101,
                protection: prot(
                    "DTK",
                    Mode::Cbc,
                    Some(vec![seq as u8; 16]),
                    Padding::Iso9797M2,
                ),
                data: vec![0xA0 ^ seq as u8; 32],
            },
            Dgi {
                id: 0x8000,
                protection: prot("KTK", Mode::Ecb, None, Padding::None),
                data: vec![0x11; 48],
            },
            Dgi {
                id: 0x9000,
                protection: None,
                data: vec![0xFF, 0x08, 0x9D, 0xFF, 0x08, 0x9D, 0xFF, 0x08, 0x9D],
            },
            Dgi {
                id: 0x8010,
                protection: prot("PTK", Mode::Ecb, None, Padding::None),
                data: vec![0x22; 8],
            },
            Dgi {
                id: 0x9010,
                protection: None,
                data: vec![3, 3],
            },
        ],
    }
}

fn file(hsm: &SoftHsm, n: u64) -> String {
    let mtk = hsm.find_key("MTK").unwrap();
    let mut w = Writer::new(Vec::new(), &header(hsm), hsm, &mtk).unwrap();
    for s in 1..=n {
        w.write_card(&card(s)).unwrap();
    }
    String::from_utf8(w.finish().unwrap().0).unwrap()
}

fn read_all(hsm: &SoftHsm, text: &str, mac_key: Option<&str>) -> pmp_core::Result<Vec<Card>> {
    let mut r = Reader::open(text.as_bytes(), hsm, "p.xml", mac_key)?;
    let mut v = Vec::new();
    while let Some(c) = r.next_card()? {
        v.push(c.clone());
    }
    assert_eq!(r.cards(), v.len() as u64);
    Ok(v)
}

fn integrity(hsm: &SoftHsm, text: &str, needle: &str) {
    match read_all(hsm, text, None) {
        Err(Error::Integrity { what, reason }) => {
            assert!(
                format!("{what}: {reason}").contains(needle),
                "{what}: {reason} lacks {needle}"
            )
        }
        other => panic!("expected an integrity failure naming {needle:?}: {other:?}"),
    }
}

#[test]
fn round_trip() {
    let dir = TempDir::new("prod-rt");
    let hsm = store(&dir.0, None, None);
    let text = file(&hsm, 3);
    let cards = read_all(&hsm, &text, Some("MTK")).unwrap();
    assert_eq!(cards, vec![card(1), card(2), card(3)]);
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<production version=\"1\">\n<header order-id=\"ORD-1\""));
    assert!(text.contains("<dgi id=\"0101\" key=\"DTK\" mode=\"cbc\" iv=\"01010101010101010101010101010101\" padding=\"2\">"));
    assert!(text.contains("<dgi id=\"8000\" key=\"KTK\" mode=\"ecb\" padding=\"none\">"));
    assert!(text.contains("<dgi id=\"9010\">0303</dgi>"));
    assert!(text.ends_with("</production>\n"));
    // An empty file (no card) verifies too.
    assert!(read_all(&hsm, &file(&hsm, 0), None).unwrap().is_empty());
    // The same keys in another store (the production HSM) verify the file.
    let dir2 = TempDir::new("prod-rt2");
    let prod = store(&dir2.0, None, None);
    std::fs::write(dir.0.join("p.xml"), &text).unwrap();
    assert_eq!(
        production::verify_file(&dir.0.join("p.xml"), &prod, None).unwrap(),
        3
    );
}

fn card_block(text: &str, seq: u64) -> (usize, usize) {
    let start = text.find(&format!("<card seq=\"{seq}\"")).unwrap();
    let end = start + text[start..].find("</card>\n").unwrap() + "</card>\n".len();
    (start, end)
}

#[test]
fn every_tamper_is_detected() {
    let dir = TempDir::new("prod-tamper");
    let hsm = store(&dir.0, None, None);
    let text = file(&hsm, 3);
    let (s1, e1) = card_block(&text, 1);
    let (s2, e2) = card_block(&text, 2);
    let (s3, e3) = card_block(&text, 3);
    let c1 = &text[s1..e1];
    let c2 = &text[s2..e2];
    let c3 = &text[s3..e3];

    // A DGI's data, an IV, the card id, a DGI number: the card MAC.
    integrity(
        &hsm,
        &text.replacen("1111111111", "1111111112", 1),
        "card 1): card MAC does not verify",
    );
    integrity(
        &hsm,
        &text.replacen("iv=\"0202", "iv=\"0302", 1),
        "card 2): card MAC does not verify",
    );
    integrity(
        &hsm,
        &text.replacen("id=\"C-0003\"", "id=\"C-0009\"", 1),
        "card MAC does not verify",
    );
    integrity(
        &hsm,
        &text.replacen("<dgi id=\"9010\">", "<dgi id=\"9011\">", 1),
        "card MAC does not verify",
    );
    // DGIs reordered inside a card.
    let lines: Vec<&str> = c1.lines().collect();
    let mut l2 = lines.clone();
    l2.swap(1, 2);
    let c1b = l2.join("\n") + "\n";
    integrity(
        &hsm,
        &text.replacen(c1, &c1b, 1),
        "card MAC does not verify",
    );
    // A card removed, duplicated, reordered.
    integrity(
        &hsm,
        &text.replacen(c2, "", 1),
        "card seq 3 where 2 was expected",
    );
    integrity(
        &hsm,
        &text.replacen(c2, &format!("{c2}{c2}"), 1),
        "card seq 2 where 3 was expected",
    );
    integrity(
        &hsm,
        &format!("{}{c2}{c1}{c3}{}", &text[..s1], &text[e3..]),
        "card seq 2 where 1 was expected",
    );
    // Renumbered after a removal or a swap: the chain.
    let renum = format!(
        "{}{c1}{}{}",
        &text[..s1],
        c3.replacen("seq=\"3\"", "seq=\"2\"", 1),
        &text[e3..]
    );
    integrity(&hsm, &renum, "card 2): card MAC does not verify");
    let swap = format!(
        "{}{}{}{c3}{}",
        &text[..s1],
        c2.replacen("seq=\"2\"", "seq=\"1\"", 1),
        c1.replacen("seq=\"1\"", "seq=\"2\"", 1),
        &text[e3..]
    );
    integrity(&hsm, &swap, "card 1): card MAC does not verify");
    // The last card dropped (trailer count kept, or lowered), an appended card.
    integrity(
        &hsm,
        &text.replacen(c3, "", 1),
        "the trailer declares 3 cards but 2 were read",
    );
    integrity(
        &hsm,
        &text
            .replacen(c3, "", 1)
            .replacen("cards=\"3\"", "cards=\"2\"", 1),
        "trailer MAC does not verify",
    );
    let c4 = c3.replacen("seq=\"3\"", "seq=\"4\"", 1);
    integrity(
        &hsm,
        &text.replacen(c3, &format!("{c3}{c4}"), 1),
        "card 4): card MAC does not verify",
    );
    // Header fields.
    integrity(
        &hsm,
        &text.replacen("profile=\"VISA-CLASSIC-EMV\"", "profile=\"OTHER\"", 1),
        "header MAC does not verify",
    );
    integrity(
        &hsm,
        &text.replacen("order-id=\"ORD-1\"", "order-id=\"ORD-2\"", 1),
        "header MAC does not verify",
    );
    // Truncated files, content after the end.
    let t = text.find("<trailer").unwrap();
    integrity(&hsm, &text[..t], "truncated");
    integrity(&hsm, &text[..text.len() - 5], "truncated");
    integrity(&hsm, &text[..s2 + 40], "truncated");
    integrity(
        &hsm,
        &format!("{text}<x/>"),
        "content after the end of the document",
    );
    integrity(
        &hsm,
        &text.replacen("</production>", "<card/></production>", 1),
        "content after the trailer",
    );
}

#[test]
fn a_card_from_another_order_is_refused() {
    let dir = TempDir::new("prod-move");
    let hsm = store(&dir.0, None, None);
    let a = file(&hsm, 2);
    let mtk = hsm.find_key("MTK").unwrap();
    let mut h = header(&hsm);
    h.order_id = "ORD-2".into();
    let mut w = Writer::new(Vec::new(), &h, &hsm, &mtk).unwrap();
    w.write_card(&card(1)).unwrap();
    w.write_card(&card(2)).unwrap();
    let b = String::from_utf8(w.finish().unwrap().0).unwrap();
    let (sa, ea) = card_block(&a, 2);
    let (sb, eb) = card_block(&b, 2);
    integrity(
        &hsm,
        &a.replacen(&a[sa..ea], &b[sb..eb], 1),
        "card 2): card MAC does not verify",
    );
}

#[test]
fn the_production_store_checks_the_keys() {
    let dir = TempDir::new("prod-keys");
    let hsm = store(&dir.0, None, None);
    let text = file(&hsm, 1);
    // A missing key, another MTK value (KCV), a pinned MAC key that is not the file's.
    let d2 = TempDir::new("prod-keys2");
    assert!(matches!(
        read_all(&store(&d2.0, Some("DTK"), None), &text, None),
        Err(Error::NotFound(_))
    ));
    let d3 = TempDir::new("prod-keys3");
    let other_mtk = "6F5F5F5F5F5F5F5F5F5F5F5F5F5F5F5F6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A";
    assert!(matches!(
        read_all(&store(&d3.0, None, Some(other_mtk)), &text, None),
        Err(Error::KcvMismatch { .. })
    ));
    assert!(matches!(
        read_all(&hsm, &text, Some("DTK")),
        Err(Error::Policy(_))
    ));
    // A listed usage that differs from the store's.
    assert!(matches!(
        read_all(
            &hsm,
            &text.replacen(
                "label=\"DTK\" usage=\"D0\"",
                "label=\"DTK\" usage=\"P0\"",
                1
            ),
            None
        ),
        Err(Error::Policy(_))
    ));
}

#[test]
fn separation_rules_and_malformed_input() {
    let dir = TempDir::new("prod-rules");
    let hsm = store(&dir.0, None, None);
    let mtk = hsm.find_key("MTK").unwrap();
    let h = header(&hsm);
    let bad = |dgi: Dgi| {
        let mut w = Writer::new(Vec::new(), &h, &hsm, &mtk).unwrap();
        w.write_card(&Card {
            seq: 1,
            id: "C".into(),
            dgis: vec![dgi],
        })
        .unwrap_err()
        .to_string()
    };
    // A K0 key never encrypts data in CBC; a D0 key never in ECB; the MAC key encrypts nothing.
    assert!(
        bad(Dgi {
            id: 0x0101,
            protection: prot("KTK", Mode::Cbc, Some(vec![0; 16]), Padding::Iso9797M2),
            data: vec![0; 32]
        })
        .contains("a K0 key encrypts only keys")
    );
    assert!(
        bad(Dgi {
            id: 0x0101,
            protection: prot("DTK", Mode::Ecb, None, Padding::Iso9797M2),
            data: vec![0; 32]
        })
        .contains("a D0 key encrypts only data")
    );
    assert!(
        bad(Dgi {
            id: 0x0101,
            protection: prot("MTK", Mode::Ecb, None, Padding::None),
            data: vec![0; 32]
        })
        .contains("M6")
    );
    assert!(
        bad(Dgi {
            id: 0x0101,
            protection: prot("NOPE", Mode::Ecb, None, Padding::None),
            data: vec![0; 32]
        })
        .contains("not in the key list")
    );
    assert!(
        bad(Dgi {
            id: 0x8000,
            protection: prot("KTK", Mode::Ecb, None, Padding::None),
            data: vec![0; 47]
        })
        .contains("whole 16-byte blocks")
    );
    assert!(
        bad(Dgi {
            id: 0x9000,
            protection: None,
            data: vec![]
        })
        .contains("1 to 65535 bytes")
    );
    // The same rules on reading (a hand-edited file), before any MAC.
    let text = file(&hsm, 1);
    integrity(
        &hsm,
        &text.replacen(
            "key=\"KTK\" mode=\"ecb\"",
            "key=\"KTK\" mode=\"cbc\" iv=\"00000000000000000000000000000000\"",
            1,
        ),
        "a K0 key encrypts only keys",
    );
    integrity(
        &hsm,
        &text.replacen("key=\"DTK\" mode=\"cbc\"", "mode=\"cbc\"", 1),
        "an encrypted DGI has key, mode and padding",
    );
    integrity(
        &hsm,
        &text.replacen("<dgi id=\"9010\">", "<dgi id=\"9000\">", 1),
        "DGI 9000 appears twice",
    );
    integrity(
        &hsm,
        &text.replacen("<dgi id=\"9010\">", "<dgi id=\"901\">", 1),
        "dgi id must be 4 hex digits",
    );
    integrity(
        &hsm,
        &text.replacen("<dgi id=\"9010\">0303", "<dgi id=\"9010\">030", 1),
        "data must be hex",
    );
    integrity(
        &hsm,
        &text.replacen("<dgi id=\"9010\">", "<dgi id=\"9010\" x=\"1\">", 1),
        "unknown attribute 'x'",
    );
    integrity(
        &hsm,
        &text.replacen("<card seq", "<!-- c --><card seq", 1),
        "comments are not allowed",
    );
    integrity(
        &hsm,
        &text.replacen(
            "<production version",
            "<!DOCTYPE p [<!ENTITY a \"b\">]><production version",
            1,
        ),
        "DOCTYPE",
    );
    integrity(
        &hsm,
        &text.replacen(
            "<dgi id=\"9010\">0303",
            "<dgi id=\"9010\"><![CDATA[0303]]>",
            1,
        ),
        "CDATA",
    );
    integrity(
        &hsm,
        &text.replacen(
            "<dgi id=\"9010\">0303",
            &format!("<dgi id=\"9010\">{}", "03".repeat(140_000)),
            1,
        ),
        "larger than",
    );
    integrity(
        &hsm,
        &text.replacen(
            "<dgi id=\"9010\">0303</dgi>",
            "<dgi id=\"9010\"><x/></dgi>",
            1,
        ),
        "element <x> nests deeper than 3 levels",
    );
    integrity(
        &hsm,
        &text.replacen(
            "label=\"DTK\" usage=\"D0\"",
            "label=\"DTK\" usage=\"B0\"",
            1,
        ),
        "not a transport key's",
    );
    match read_all(
        &hsm,
        &text.replacen(
            "<production version=\"1\">",
            "<production version=\"2\">",
            1,
        ),
        None,
    ) {
        Err(Error::Unsupported(m)) => assert!(m.contains("version \"2\""), "{m}"),
        other => panic!("{other:?}"),
    }
    // A reader that failed stays failed.
    let t = text.replacen("1111111111", "1111111112", 1);
    let mut r = Reader::open(t.as_bytes(), &hsm, "p.xml", None).unwrap();
    assert!(r.next_card().is_err());
    assert!(r.next_card().is_err());
}

#[test]
fn a_file_of_two_thousand_cards_streams_from_disk() {
    let dir = TempDir::new("prod-mem");
    let hsm = store(&dir.0, None, None);
    let mtk = hsm.find_key("MTK").unwrap();
    let path = dir.0.join("big.xml");
    let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut w = Writer::new(f, &header(&hsm), &hsm, &mtk).unwrap();
    for s in 1..=2000 {
        w.write_card(&card(s)).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(
        production::verify_file(&path, &hsm, Some("MTK")).unwrap(),
        2000
    );
}

#[test]
fn the_test_marker_is_maced_and_refused_on_a_production_store() {
    use pmp_core::hsm::{Activity, LmkComponent, LmkSource, Officer};
    use pmp_core::prep::production::ReadOptions;
    let dir = TempDir::new("prod-test-marker");
    let hsm = store(&dir.0, None, None);
    let mtk = hsm.find_key("MTK").unwrap();
    let mut h = header(&hsm);
    h.test = true;
    let mut w = Writer::new(Vec::new(), &h, &hsm, &mtk).unwrap();
    w.write_card(&card(1)).unwrap();
    let text = String::from_utf8(w.finish().unwrap().0).unwrap();
    assert!(text.contains("mac-key=\"MTK\" test=\"true\" mac="));
    assert!(read_all(&hsm, &text, None).is_ok());
    // Removing the marker, or giving it another value, breaks or is refused.
    integrity(
        &hsm,
        &text.replacen(" test=\"true\"", "", 1),
        "header MAC does not verify",
    );
    integrity(
        &hsm,
        &text.replacen(" test=\"true\"", " test=\"false\"", 1),
        "header test must be true",
    );
    // A production store (LMK from components) refuses it unless allowed.
    let d2 = TempDir::new("prod-test-marker-prod");
    let c1 = [0x21u8; 32];
    let c2 = [0x43u8; 32];
    let prod = SoftHsm::init(
        &d2.0,
        LmkSource::Components(vec![
            LmkComponent::new(&c1, None),
            LmkComponent::new(&c2, None),
        ]),
    )
    .unwrap();
    // Forming keys from components on a production store needs two officers.
    prod.enrol_officer("alice", b"correct horse battery staple 1")
        .unwrap();
    prod.enrol_officer("bob", b"correct horse battery staple 2")
        .unwrap();
    prod.authorise(
        &Officer {
            id: "alice",
            passphrase: b"correct horse battery staple 1",
        },
        &Officer {
            id: "bob",
            passphrase: b"correct horse battery staple 2",
        },
        &[Activity::FormKey],
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let prod = keys_into(prod, None, None);
    match read_all(&prod, &text, None) {
        Err(Error::Policy(m)) => assert!(m.contains("TEST production file"), "{m}"),
        other => panic!("{other:?}"),
    }
    let opts = ReadOptions {
        mac_key: None,
        allow_test: true,
    };
    let mut r = Reader::open_with(text.as_bytes(), &prod, "p.xml", &opts).unwrap();
    assert!(r.header().test);
    assert!(r.next_card().unwrap().is_some());
    // An unmarked file reads on the production store.
    assert_eq!(read_all(&prod, &file(&hsm, 1), None).unwrap().len(), 1);
}
