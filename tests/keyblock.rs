//! TR-31 / ANSI X9.143 key blocks: published examples, psec-generated vectors, tamper
//! tests, policy refusals, header parsing and round trips.

mod common;

use pmp_core::keyblock::{
    self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, OptionalBlock,
    OptionalBlockKind, UnwrapPolicy, Version,
};
use pmp_core::{Algorithm, Error, SecretKey};

fn kbpk_for(block: &str, hex_key: &str) -> SecretKey {
    let alg = if block.starts_with('D') {
        Algorithm::Aes
    } else {
        Algorithm::Tdes
    };
    SecretKey::from_hex(alg, hex_key).unwrap()
}

fn permissive() -> UnwrapPolicy {
    UnwrapPolicy::permissive()
}

/// Every position of the block flipped by one bit is refused, and the flips in the
/// encrypted key data and the MAC are the opaque crypto error.
fn tamper_all(kbpk: &SecretKey, block: &str, ctx: &str) {
    let bytes = block.as_bytes();
    let hlen = keyblock::inspect(block).unwrap().to_string().len();
    for i in 0..bytes.len() {
        let t = common::flip(bytes, i);
        let Ok(t) = String::from_utf8(t) else {
            continue;
        };
        let r = keyblock::unwrap(kbpk, &t, &permissive());
        assert!(r.is_err(), "{ctx}: flip at {i} accepted");
        if i >= hlen {
            assert!(
                matches!(r, Err(Error::Crypto)),
                "{ctx}: flip at {i} (encrypted part) gave {:?}",
                r.err()
            );
        }
    }
}

fn run_vectors(file: &str) -> usize {
    let mut n = 0;
    for v in common::load(file) {
        let ctx = format!("{file}:{} {}", v.line, v.opt("Source").unwrap_or(""));
        let block = v.get("Block");
        let kbpk = kbpk_for(block, v.get("KBPK"));
        let (h, key) =
            keyblock::unwrap(&kbpk, block, &permissive()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(
            hex::encode_upper(key.expose_secret()),
            v.get("Key"),
            "{ctx}: key"
        );
        if let Some(kcv) = v.opt("KCV") {
            assert_eq!(key.kcv().to_string(), kcv, "{ctx}: KCV");
        }
        if let Some(ks) = v.opt("KS") {
            assert_eq!(h.optional_block("KS").unwrap().data, ks, "{ctx}: KS");
        }
        // The header read back is the one in the block.
        assert_eq!(&block[5..16], &h.to_string()[5..16], "{ctx}: header fields");
        assert_eq!(keyblock::inspect(block).unwrap(), h, "{ctx}: inspect");

        // Tamper: header (key version / usage field), encrypted key, MAC; wrong KBPK.
        let b = block.as_bytes();
        for (i, what) in [
            (9, "header"),
            (20, "header"),
            (b.len() - 40, "encrypted key"),
            (b.len() - 1, "MAC"),
        ] {
            let t = String::from_utf8(common::flip(b, i)).unwrap();
            assert!(
                keyblock::unwrap(&kbpk, &t, &permissive()).is_err(),
                "{ctx}: {what} flip accepted"
            );
        }
        let mut wrong = kbpk.expose_secret().to_vec();
        wrong[3] ^= 0x10;
        let wrong = SecretKey::new(kbpk.algorithm(), &wrong).unwrap();
        assert!(
            matches!(
                keyblock::unwrap(&wrong, block, &permissive()),
                Err(Error::Crypto)
            ),
            "{ctx}: wrong KBPK"
        );
        tamper_all(&kbpk, block, &ctx);
        n += 1;
    }
    n
}

#[test]
fn annex_examples_unwrap_and_resist_tampering() {
    assert_eq!(run_vectors("tr31_annex.txt"), 8);
}

#[test]
fn psec_vectors_unwrap_and_resist_tampering() {
    assert!(run_vectors("tr31.txt") >= 8);
}

#[test]
fn legacy_versions_refused_by_default() {
    let v = &common::load("tr31_annex.txt")[0];
    let kbpk = kbpk_for(v.get("Block"), v.get("KBPK"));
    let r = keyblock::unwrap(&kbpk, v.get("Block"), &UnwrapPolicy::default());
    assert!(matches!(r, Err(Error::Policy(_))), "{r:?}");
    assert!(!UnwrapPolicy::default().allow_legacy);
}

fn tdes(h: &str) -> SecretKey {
    SecretKey::from_hex(Algorithm::Tdes, h).unwrap()
}
fn aes(h: &str) -> SecretKey {
    SecretKey::from_hex(Algorithm::Aes, h).unwrap()
}

const T2: &str = "0123456789ABCDEFFEDCBA9876543210";
const T3: &str = "0123456789ABCDEFFEDCBA987654321089ABCDEF01234567";
const A128: &str = "000102030405060708090A0B0C0D0E0F";
const A256: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";

#[test]
fn round_trip_every_version_and_key_type() {
    let cases: &[(Version, &str, KeyAlgorithm, &str)] = &[
        (
            Version::A,
            T2,
            KeyAlgorithm::Tdes,
            "89E88CF7931444F334BD7547FC3F380C",
        ),
        (
            Version::B,
            T2,
            KeyAlgorithm::Tdes,
            "89E88CF7931444F334BD7547FC3F380C",
        ),
        (
            Version::C,
            T2,
            KeyAlgorithm::Tdes,
            "89E88CF7931444F334BD7547FC3F380C",
        ),
        (Version::B, T3, KeyAlgorithm::Tdes, T3),
        (Version::D, T3, KeyAlgorithm::Aes, A128),
        (Version::D, A256, KeyAlgorithm::Aes, A256),
        (Version::D, A256, KeyAlgorithm::Tdes, T3),
        (Version::D, A128, KeyAlgorithm::Tdes, T2),
    ];
    for &(v, kbpk_hex, alg, key_hex) in cases {
        let kbpk = kbpk_for(&v.to_string(), kbpk_hex);
        let key = SecretKey::from_hex(alg.to_pmp().unwrap(), key_hex).unwrap();
        let mut h = Header::new(v, KeyUsage::K0, alg, ModeOfUse::B, Exportability::E);
        h.key_version = *b"12";
        h.optional_blocks
            .push(OptionalBlock::new("KS", "00604B120F9292800000").unwrap());
        h.optional_blocks
            .push(OptionalBlock::new("TS", "20240101120000Z").unwrap());
        for masked in [None, Some(32)] {
            let block = keyblock::wrap(&kbpk, &h, &key, masked).unwrap();
            let (h2, k2) = keyblock::unwrap(&kbpk, &block, &permissive()).unwrap();
            assert_eq!(k2, key, "{v} {alg}");
            assert_eq!(h2.usage, KeyUsage::K0);
            assert_eq!(
                h2.optional_block("KS").unwrap().data,
                "00604B120F9292800000"
            );
            let hl = h2.to_string().len();
            assert_eq!(hl % v.block_size(), 0, "{block}");
            let bs = v.block_size();
            let expect_data = (2 + masked.unwrap_or(0).max(key.len())).div_ceil(bs) * bs;
            assert_eq!(block.len(), hl + 2 * expect_data + 2 * v.mac_len());
            tamper_all(&kbpk, &block, &format!("{v} {alg}"));
        }
    }
}

#[test]
fn annex_a74_rewrapped_has_the_published_layout() {
    let kbpk = aes("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6");
    let key = aes("3F419E1CB7079442AA37474C2EFBF8B8");
    let h = Header::parse("D0000P0AE00E0000").unwrap();
    let b = keyblock::wrap(&kbpk, &h, &key, None).unwrap();
    assert!(b.starts_with("D0112P0AE00E0000"), "{b}");
    let b = keyblock::wrap(&kbpk, &h, &key, Some(32)).unwrap();
    assert!(b.starts_with("D0144P0AE00E0000"), "{b}");
}

#[test]
fn forbidden_combinations_are_refused() {
    let policy = |r: pmp_core::Result<String>| matches!(r, Err(Error::Policy(_)));
    // KBPK weaker than the key: 2-key TDES KBPK, 3-key TDES key.
    let h = Header::new(
        Version::B,
        KeyUsage::K0,
        KeyAlgorithm::Tdes,
        ModeOfUse::E,
        Exportability::E,
    );
    assert!(policy(keyblock::wrap(&tdes(T2), &h, &tdes(T3), None)));
    // AES-128 KBPK, AES-256 key.
    let h = Header::new(
        Version::D,
        KeyUsage::D0,
        KeyAlgorithm::Aes,
        ModeOfUse::B,
        Exportability::N,
    );
    assert!(policy(keyblock::wrap(&aes(A128), &h, &aes(A256), None)));
    // AES key in a TDES binding.
    let h = Header::new(
        Version::B,
        KeyUsage::D0,
        KeyAlgorithm::Aes,
        ModeOfUse::B,
        Exportability::N,
    );
    assert!(policy(keyblock::wrap(&tdes(T3), &h, &aes(A128), None)));
    // Version D needs an AES KBPK, B a TDES one.
    let h = Header::new(
        Version::D,
        KeyUsage::D0,
        KeyAlgorithm::Tdes,
        ModeOfUse::B,
        Exportability::N,
    );
    assert!(policy(keyblock::wrap(&tdes(T3), &h, &tdes(T2), None)));
    let h = Header::new(
        Version::B,
        KeyUsage::D0,
        KeyAlgorithm::Tdes,
        ModeOfUse::B,
        Exportability::N,
    );
    assert!(policy(keyblock::wrap(&aes(A256), &h, &tdes(T2), None)));
    // Modes meaningless for the usage.
    for (u, m) in [
        (KeyUsage::K0, ModeOfUse::G),
        (KeyUsage::M3, ModeOfUse::E),
        (KeyUsage::D0, ModeOfUse::C),
        (KeyUsage::P0, ModeOfUse::V),
        (KeyUsage::E0, ModeOfUse::B),
        (KeyUsage::B0, ModeOfUse::E),
        (KeyUsage::V2, ModeOfUse::D),
    ] {
        let h = Header::new(Version::D, u, KeyAlgorithm::Aes, m, Exportability::N);
        assert!(
            policy(keyblock::wrap(&aes(A256), &h, &aes(A128), None)),
            "{u} {m}"
        );
    }
    // Asymmetric usage with a TDES key.
    let h = Header::new(
        Version::B,
        KeyUsage::S0,
        KeyAlgorithm::Tdes,
        ModeOfUse::S,
        Exportability::N,
    );
    assert!(policy(keyblock::wrap(&tdes(T2), &h, &tdes(T2), None)));
    // Unsupported algorithm.
    let h = Header::new(
        Version::D,
        KeyUsage::S0,
        KeyAlgorithm::Rsa,
        ModeOfUse::S,
        Exportability::N,
    );
    assert!(matches!(
        keyblock::wrap(&aes(A256), &h, &aes(A128), None),
        Err(Error::Unsupported(_))
    ));
    // Degenerate TDES key (K1 = K2) and degenerate KBPK.
    let h = Header::new(
        Version::B,
        KeyUsage::D0,
        KeyAlgorithm::Tdes,
        ModeOfUse::B,
        Exportability::N,
    );
    let degenerate = tdes("0123456789ABCDEF0123456789ABCDEF");
    assert!(policy(keyblock::wrap(&tdes(T2), &h, &degenerate, None)));
    assert!(policy(keyblock::wrap(&degenerate, &h, &tdes(T2), None)));
    // Header says AES, key is TDES.
    let h = Header::new(
        Version::D,
        KeyUsage::D0,
        KeyAlgorithm::Aes,
        ModeOfUse::B,
        Exportability::N,
    );
    assert!(keyblock::wrap(&aes(A256), &h, &tdes(T2), None).is_err());
}

#[test]
fn unwrap_refuses_forbidden_combinations_even_when_authentic() {
    // Authentic blocks (valid MAC) carrying combinations X9.143 forbids, made with psec
    // 1.3.0, which does not enforce them.
    let p = permissive();
    // 3-key TDES key under a 2-key TDES KBPK.
    let b = "B0096K0TB00E0000D0C7EE064933A10C7A389CA25EB64ED44D8CD39C6C8CABAB69A75FDB1948AB21E0B75153AE5DE3DE";
    let r = keyblock::unwrap(&tdes("89E88CF7931444F334BD7547FC3F380C"), b, &p);
    assert!(matches!(r, Err(Error::Policy(_))), "{r:?}");
    // P0 with mode G.
    let b = "D0112P0AG00E00008F789D4F859EEEE22D37B4A127D9861D9A290924C555CA1CCE80BFB820CD32A3ABE2BB564853D4357882BF0705873024";
    let r = keyblock::unwrap(&aes(A256), b, &p);
    assert!(matches!(r, Err(Error::Policy(_))), "{r:?}");
    // An AES key in a version B (TDES binding) block.
    let b = "B0080D0AB00E0000DCC92C44D20832E86372D6539B985FEBFF35D864E2EDEBBCB309CB82273289AE";
    let r = keyblock::unwrap(&tdes(T3), b, &p);
    assert!(matches!(r, Err(Error::Policy(_))), "{r:?}");
    // Wrong KBPK algorithm for the version.
    let b = "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E";
    let r = keyblock::unwrap(&aes(A128), b, &p);
    assert!(matches!(r, Err(Error::Policy(_))), "{r:?}");
}

#[test]
fn header_parsing() {
    let h = Header::parse("B0000P0TE00N0100KS1800604B120F9292800000").unwrap();
    assert_eq!(h.version, Version::B);
    assert_eq!(h.usage, KeyUsage::P0);
    assert_eq!(h.algorithm, KeyAlgorithm::Tdes);
    assert_eq!(h.mode_of_use, ModeOfUse::E);
    assert_eq!(h.key_version_str(), "00");
    assert_eq!(h.exportability, Exportability::N);
    assert_eq!(h.optional_blocks.len(), 1);
    assert_eq!(h.optional_blocks[0].kind(), OptionalBlockKind::KeySetId);

    // Unknown usage and unknown optional block kept verbatim.
    let h = Header::parse("D0000Q7AN00N0100ZZ08abcd").unwrap();
    assert_eq!(h.usage, KeyUsage::Other(*b"Q7"));
    assert_eq!(h.usage.as_str(), "Q7");
    assert_eq!(h.optional_blocks[0].id_str(), "ZZ");
    assert_eq!(h.optional_blocks[0].data, "abcd");
    assert_eq!("M6".parse::<KeyUsage>().unwrap(), KeyUsage::M6);
    // A code given by a caller must be a known, upper-case one (issue 17: `--usage k0`,
    // `KZ` and `99` were stored as keys no operation accepts).
    for bad in ["Q7", "KZ", "99", "k0", "p0", "P", "P0X"] {
        let e = bad.parse::<KeyUsage>().unwrap_err().to_string();
        assert!(e.contains("known: B0 B1") && e.contains("K0"), "{bad}: {e}");
    }
    let e = "k0".parse::<KeyUsage>().unwrap_err().to_string();
    assert!(e.contains("upper-case: K0"), "{e}");
    assert!("t".parse::<KeyAlgorithm>().is_err() && "Q".parse::<KeyAlgorithm>().is_err());
    assert_eq!("T".parse::<KeyAlgorithm>().unwrap(), KeyAlgorithm::Tdes);
    assert!("b".parse::<ModeOfUse>().is_err() && "e".parse::<Exportability>().is_err());
    // Lower-case codes in a header are refused, naming the position.
    let e = Header::parse("D0000k0AB00E0000").unwrap_err().to_string();
    assert!(e.contains("position 5") && e.contains("upper-case"), "{e}");
    let e = Header::parse("D0000K0aB00E0000").unwrap_err().to_string();
    assert!(e.contains("position 7"), "{e}");

    // Structural errors name the position.
    let e = Header::parse("B0000P0TQ00N0000").unwrap_err().to_string();
    assert!(e.contains("position 8") && e.contains("mode of use"), "{e}");
    let e = Header::parse("B0000P0TE00X0000").unwrap_err().to_string();
    assert!(e.contains("position 11"), "{e}");
    assert!(Header::parse("B0000P0TE00N0100KS18006").is_err()); // cut short
    assert!(Header::parse("B0000P0TE00N0000XX").is_err()); // trailing
    assert!(Header::parse("B0000P0TE00N0001").is_err()); // reserved
    assert!(matches!(
        Header::parse("10000P0TE00N0000"),
        Err(Error::Unsupported(_))
    ));
    assert!(Header::parse("B0000P0").is_err());
}

/// ANSI X9.143:2021 example 8.5 (an RSA private key, version D): its header carries a
/// certificate (`CT`) with the extended length encoding, then `KP`, `TS` and `PB`.
/// Header values as quoted by openemv/tr31 (test/tr31_decrypt_test.c).
const X9143_8_5_HEADER: &str = "D3776S0RS00N0400CT0004050000MIIDszCCApugAwIBAgIIKpD5FKMfCZEwDQYJKoZIhvcNAQELBQAwLTEXMBUGA1UECgwOQWxwaGEgTWVyY2hhbnQxEjAQBgNVBAMMCVNhbXBsZSBDQTAeFw0yMDA4MTUwMjE0MTBaFw0yMTA4MTUwMjE0MTBaME8xFzAVBgNVBAoMDkFscGhhIE1lcmNoYW50MR8wHQYDVQQLDBZUTFMgQ2xpZW50IENlcnRpZmljYXRlMRMwEQYDVQQDDAoxMjM0NTY3ODkwMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1sRg+wEuje3y14V0tFHpvxxpY/fyrldB0nRctBDn4AvkBfyJuDLG59vqkGXVd8J8YQdwEHZJrVq+7B8rjtM6PMoyH/7QAZZAC7tw740P4cfen1IryubZVviV9QUp+gHToelZfr1rfIsuEGhzo6UhwY70kkS87/rYHCVathZEjMmvUIEdpzg0PZ2+Heg6D35OQ70I+np+BsEQf71Zr+d2iKqVGEd50l8tbn4W3A4rOyUERPTaACwS9rvdF7nlmTqSI5ybN6lmm37a71h77n6M54aaw2KkJYWVo+1stUTyFVsv/YBs9aylbBHQOYqp/U2tB0TxM58QYGzyaWvNqbFzOQIDAQABo4G0MIGxMAkGA1UdEwQCMAAwDgYDVR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMCMB0GA1UdDgQWBBR837QRAGx5uL9xDnRjr9L9WSBSlzAfBgNVHSMEGDAWgBSlXhVYy9bic9OLnRsxsFgKQQbLmTA/BgNVHR8EODA2MDSgMqAwhi5odHRwOi8vY3JsLmFscGhhLW1lcmNoYW50LmV4YW1wbGUvU2FtcGxlQ0EuY3JsMA0GCSqGSIb3DQEBCwUAA4IBAQCH6JusIBSkRDqzAohaSoJVAEwQGMdcUSQWDfMyJjZqkOep1kT8Sl7LolFmmmVRJdkTWZe4PxBfQUc/eIql9BIx90506B+j9aoVA7212OExAid78GgqKA6JoalhYQKRta9ixY8iolydTYyEYpegA1jFZavMQma4ZGwX/bDJWr4+cJYxJXWaf67g4AMqHaWC8J60MVjrrBe9BZ0ZstuIlNkktQUOZanqxqsrFeqz02ibwTwNHtaHQCztB4KgdTkrTNahkqeq6xjafDoTllNo1EddajnbA/cVzF9ZCNigDtg5chXHWIQbgEK7HmU3sY3/wd2Bh1KdF3+vpN+5iZMRNv7ZKP1001D77F007724TS1320200818221218ZPB0D000000000";

#[test]
fn extended_length_optional_block() {
    let h = Header::parse(X9143_8_5_HEADER).unwrap();
    assert_eq!(h.usage, KeyUsage::S0);
    assert_eq!(h.algorithm, KeyAlgorithm::Rsa);
    assert_eq!(h.mode_of_use, ModeOfUse::S);
    let ids: Vec<&str> = h.optional_blocks.iter().map(|b| b.id_str()).collect();
    assert_eq!(ids, ["CT", "KP", "TS", "PB"]);
    assert_eq!(h.optional_blocks[0].data.len(), 1280 - 10);
    assert!(h.optional_blocks[0].data.starts_with("00MIID"));
    assert_eq!(h.optional_block("KP").unwrap().data, "01D77F007724");
    assert_eq!(h.optional_block("TS").unwrap().data, "20200818221218Z");
    // Encoding reproduces the header byte for byte (the 4-digit extended length).
    assert_eq!(&h.to_string()[5..], &X9143_8_5_HEADER[5..]);

    // And a wrapped block with a long optional block round-trips.
    let kbpk = aes(A256);
    let mut h = Header::new(
        Version::D,
        KeyUsage::D0,
        KeyAlgorithm::Aes,
        ModeOfUse::B,
        Exportability::N,
    );
    h.optional_blocks
        .push(OptionalBlock::new("LB", "x".repeat(400)).unwrap());
    let b = keyblock::wrap(&kbpk, &h, &aes(A128), None).unwrap();
    let (h2, _) = keyblock::unwrap(&kbpk, &b, &permissive()).unwrap();
    assert_eq!(h2.optional_block("LB").unwrap().data.len(), 400);
}

#[test]
fn inspect_checks_length_and_no_crypto() {
    let b = "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E";
    let h = keyblock::inspect(b).unwrap();
    assert_eq!(h.usage, KeyUsage::P0);
    let short = &b[..b.len() - 2];
    let e = keyblock::inspect(short).unwrap_err().to_string();
    assert!(e.contains("length"), "{e}");
}

#[test]
fn wrong_kbpk_and_tamper_are_the_same_error() {
    let kbpk = aes(A256);
    let h = Header::new(
        Version::D,
        KeyUsage::K1,
        KeyAlgorithm::Aes,
        ModeOfUse::B,
        Exportability::E,
    );
    let b = keyblock::wrap(&kbpk, &h, &aes(A256), None).unwrap();
    let wrong = aes(&A256.replace("1F", "1E"));
    let e1 = keyblock::unwrap(&wrong, &b, &permissive())
        .unwrap_err()
        .to_string();
    let t = String::from_utf8(common::flip(b.as_bytes(), b.len() - 5)).unwrap();
    let e2 = keyblock::unwrap(&kbpk, &t, &permissive())
        .unwrap_err()
        .to_string();
    assert_eq!(e1, e2);
    assert!(!e1.contains("000102"));
}

#[test]
fn debug_shows_no_key() {
    let kbpk = aes(A256);
    let h = Header::new(
        Version::D,
        KeyUsage::D0,
        KeyAlgorithm::Aes,
        ModeOfUse::B,
        Exportability::N,
    );
    let b = keyblock::wrap(&kbpk, &h, &aes(A128), None).unwrap();
    let out = format!("{:?}", keyblock::unwrap(&kbpk, &b, &permissive()));
    assert!(!out.contains("0001020304"), "{out}");
    assert!(!out.to_lowercase().contains("000102030405"), "{out}");
}

/// The DER's first TLV: (tag, content) of `der`, DER definite lengths.
fn tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (der[0], der[1]);
    let (len, at) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7F);
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, 2 + n)
    };
    (tag, &der[at..at + len], &der[at + len..])
}

#[test]
fn x9143_example_8_5_rsa_private_key_unwraps() {
    // tests/data/x9143_8_5.txt: the whole block of the example (its header is the one
    // above) under the AES-128 KBPK given there.
    let v = &common::load("x9143_8_5.txt")[0];
    let block = v.get("Block").to_string();
    assert!(block.starts_with(X9143_8_5_HEADER));
    let kbpk = aes(v.get("KBPK"));
    let (h, der) = keyblock::unwrap_asymmetric(&kbpk, &block, &UnwrapPolicy::default()).unwrap();
    assert_eq!((h.usage, h.algorithm), (KeyUsage::S0, KeyAlgorithm::Rsa));
    // The payload is the DER of a PKCS#1 RSAPrivateKey (RFC 8017 A.1.2): a SEQUENCE whose
    // first INTEGER is the version 0 and whose second is the modulus — not a PKCS#8
    // PrivateKeyInfo, whose second element would be the AlgorithmIdentifier SEQUENCE.
    let (tag, body, rest) = tlv(&der);
    assert_eq!((tag, rest.len()), (0x30, 0));
    let (tag, version, body) = tlv(body);
    assert_eq!((tag, version), (0x02, &[0u8][..]));
    let (tag, modulus, body) = tlv(body);
    assert_eq!(tag, 0x02, "an INTEGER (PKCS#1), not a SEQUENCE (PKCS#8)");
    let (tag, e, _) = tlv(body);
    assert_eq!((tag, e), (0x02, &[0x01, 0x00, 0x01][..]));
    // The modulus is the one of the certificate in the block's CT optional block (its
    // SubjectPublicKeyInfo, base64 "MIIBCgKCAQEA1sRg+wEuje3y14V0...": 1sRg+wEu = D6C460FB012E).
    assert_eq!(modulus.len(), 257, "2048 bits after a leading 00");
    assert_eq!(&modulus[..7], &[0x00, 0xD6, 0xC4, 0x60, 0xFB, 0x01, 0x2E]);
    // The symmetric unwrap refuses the block (it is not a TDES or AES key).
    assert!(matches!(
        keyblock::unwrap(&kbpk, &block, &UnwrapPolicy::default()),
        Err(Error::Unsupported(_))
    ));
    // A flipped bit in the encrypted data or the MAC: the opaque error.
    for i in [X9143_8_5_HEADER.len() + 10, block.len() - 3] {
        let mut bad = block.clone().into_bytes();
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(matches!(
            keyblock::unwrap_asymmetric(&kbpk, &bad, &UnwrapPolicy::default()),
            Err(Error::Crypto)
        ));
    }
}

#[test]
fn asymmetric_blocks_round_trip_and_refuse_symmetric_headers() {
    let der: Vec<u8> = (0..600u16).map(|i| (i % 251) as u8).collect();
    for (kbpk, version) in [(aes(A256), Version::D), (tdes(T3), Version::B)] {
        let h = Header::new(
            version,
            KeyUsage::S0,
            KeyAlgorithm::Rsa,
            ModeOfUse::S,
            Exportability::N,
        );
        let b = keyblock::wrap_asymmetric(&kbpk, &h, &der, None).unwrap();
        // The length field counts bits of the DER, as for a symmetric key.
        let (h2, out) = keyblock::unwrap_asymmetric(&kbpk, &b, &UnwrapPolicy::default()).unwrap();
        assert_eq!(&out[..], &der[..]);
        assert_eq!(h2.algorithm, KeyAlgorithm::Rsa);
    }
    // A symmetric algorithm in an asymmetric wrap, a legacy version, a symmetric usage.
    let sym = Header::new(
        Version::D,
        KeyUsage::D0,
        KeyAlgorithm::Aes,
        ModeOfUse::B,
        Exportability::N,
    );
    assert!(keyblock::wrap_asymmetric(&aes(A256), &sym, &der, None).is_err());
    let legacy = Header::new(
        Version::A,
        KeyUsage::S0,
        KeyAlgorithm::Rsa,
        ModeOfUse::S,
        Exportability::N,
    );
    assert!(matches!(
        keyblock::wrap_asymmetric(&tdes(T3), &legacy, &der, None),
        Err(Error::Policy(_))
    ));
    let d0 = Header::new(
        Version::D,
        KeyUsage::D0,
        KeyAlgorithm::Rsa,
        ModeOfUse::B,
        Exportability::N,
    );
    assert!(matches!(
        keyblock::wrap_asymmetric(&aes(A256), &d0, &der, None),
        Err(Error::Policy(_))
    ));
}
