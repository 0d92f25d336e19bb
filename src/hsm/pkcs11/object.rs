//! The key model on the token: which PKCS#11 attributes a key gets from its TR-31 usage
//! and mode of use, and how its TR-31 attributes and KCV are kept with it.
//!
//! Every key pmp-core makes is a private token object, `CKA_SENSITIVE` true,
//! `CKA_EXTRACTABLE` only when exportable, `CKA_MODIFIABLE` false (SoftHSMv2 would
//! otherwise let anyone holding the PIN switch usages on again), with every usage
//! attribute set explicitly (SoftHSMv2 defaults unset ones to true). The usage attributes
//! are the projection of [`policy::permits`]: a key gets `CKA_ENCRYPT` exactly when the
//! policy lets it encrypt (data or a PIN block), `CKA_SIGN` when it may generate a MAC,
//! and so on; `CKA_DERIVE` is always false.
//!
//! `CKA_LABEL` is the pmp label. `CKA_ID` carries the TR-31 attributes and the KCV as ASCII
//! (`pmp1:key:<usage>:<mode>:<exportability>:<T|A>:<length>:<KCV>`, e.g.
//! `pmp1:key:D0:B:N:A:32:1A2B3C4D5E`), so that [`key_info`](crate::hsm::Hsm::key_info)
//! reports them the way the software HSM does; the object being unmodifiable keeps them
//! bound. The KCV is computed once, when the key is made (never read from
//! `CKA_CHECK_VALUE`, which SoftHSMv2 gets wrong for derived keys and which is not the AES
//! KCV of X9.24-1 anyway).
//!
//! A key-encryption key formed or imported here has two companion objects with the same
//! label: its TR-31 binding keys (KBEK, KBAK), `CKA_ID` `pmp1:kbek:<version>` and
//! `pmp1:kbak:<version>`.
//!
//! An RSA key pair (an issuer key, usage `S0`, mode `S`) is a private key object and a
//! public key object with the same label and the same `CKA_ID`
//! `pmp1:rsa:<usage>:<mode>:<bits>:<exponent as EMV writes it>`, e.g.
//! `pmp1:rsa:S0:S:1408:010001` ([`rsa_templates`]).

use cryptoki::object::{Attribute, KeyType, ObjectClass};

use crate::hsm::KeySpec;
use crate::hsm::policy::{self, Operation};
use crate::keyblock::{Exportability, KeyUsage, ModeOfUse, Version};
use crate::rsa::RsaExponent;
use crate::{Algorithm, Error, Kcv, MacAlgorithm, Result};

const PREFIX: &str = "pmp1:";

/// What a pmp object on the token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tag {
    /// A key, with its attributes (label aside) and KCV.
    Key {
        algorithm: Algorithm,
        len: usize,
        usage: KeyUsage,
        mode: ModeOfUse,
        exportability: Exportability,
        kcv: Kcv,
    },
    /// The TR-31 encryption key of a KEK, for key blocks of this version.
    Kbek(Version),
    /// The TR-31 MAC key of a KEK.
    Kbak(Version),
    /// Either half of an RSA key pair (the object's class says which).
    Rsa {
        usage: KeyUsage,
        mode: ModeOfUse,
        bits: u32,
        exponent: RsaExponent,
    },
}

impl Tag {
    pub fn for_key(spec: &KeySpec, kcv: &Kcv) -> Self {
        Tag::Key {
            algorithm: spec.algorithm,
            len: spec.len,
            usage: spec.usage,
            mode: spec.mode_of_use,
            exportability: spec.exportability,
            kcv: *kcv,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Tag::Key {
                algorithm,
                len,
                usage,
                mode,
                exportability,
                kcv,
            } => format!(
                "{PREFIX}key:{usage}:{}:{}:{}:{len}:{kcv}",
                mode.as_char(),
                exportability.as_char(),
                match algorithm {
                    Algorithm::Tdes => 'T',
                    Algorithm::Aes => 'A',
                }
            ),
            Tag::Kbek(v) => format!("{PREFIX}kbek:{v}"),
            Tag::Kbak(v) => format!("{PREFIX}kbak:{v}"),
            Tag::Rsa {
                usage,
                mode,
                bits,
                exponent,
            } => format!(
                "{PREFIX}rsa:{usage}:{}:{bits}:{}",
                mode.as_char(),
                hex::encode_upper(exponent.bytes())
            ),
        }
        .into_bytes()
    }

    /// The tag of a `CKA_ID`; `None` for objects pmp-core did not make.
    pub fn decode(id: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(id).ok()?.strip_prefix(PREFIX)?;
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["key", usage, mode, exp, alg, len, kcv] => {
                let algorithm = match *alg {
                    "T" => Algorithm::Tdes,
                    "A" => Algorithm::Aes,
                    _ => return None,
                };
                let len: usize = len.parse().ok()?;
                if !algorithm.valid_key_len(len) {
                    return None;
                }
                Some(Tag::Key {
                    algorithm,
                    len,
                    usage: usage.parse().ok()?,
                    mode: mode.parse().ok()?,
                    exportability: exp.parse().ok()?,
                    kcv: Kcv::from_hex(kcv).ok()?,
                })
            }
            ["kbek", v] => Some(Tag::Kbek(v.parse().ok()?)),
            ["kbak", v] => Some(Tag::Kbak(v.parse().ok()?)),
            ["rsa", usage, mode, bits, exponent] => {
                let bits: u32 = bits.parse().ok()?;
                crate::rsa::check_emv_bits(bits).ok()?;
                Some(Tag::Rsa {
                    usage: usage.parse().ok()?,
                    mode: mode.parse().ok()?,
                    bits,
                    exponent: RsaExponent::from_bytes(&hex::decode(exponent).ok()?).ok()?,
                })
            }
            _ => None,
        }
    }
}

/// The spec of a key object from its label and tag.
pub(super) fn spec_of(label: &str, tag: &Tag) -> Option<(KeySpec, Kcv)> {
    match tag {
        Tag::Key {
            algorithm,
            len,
            usage,
            mode,
            exportability,
            kcv,
        } => Some((
            KeySpec {
                label: label.to_string(),
                algorithm: *algorithm,
                len: *len,
                usage: *usage,
                mode_of_use: *mode,
                exportability: *exportability,
            },
            *kcv,
        )),
        _ => None,
    }
}

/// The PKCS#11 usage attributes of a key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Usages {
    pub encrypt: bool,
    pub decrypt: bool,
    pub sign: bool,
    pub verify: bool,
    pub wrap: bool,
    pub unwrap: bool,
}

const MACS: [MacAlgorithm; 5] = [
    MacAlgorithm::Retail,
    MacAlgorithm::CbcTdes,
    MacAlgorithm::CbcAes,
    MacAlgorithm::CmacTdes,
    MacAlgorithm::CmacAes,
];

impl Usages {
    /// The projection of the policy table onto PKCS#11 attributes.
    pub fn of(usage: KeyUsage, mode: ModeOfUse) -> Self {
        let p = |op| policy::permits(op, usage, mode);
        Usages {
            encrypt: p(Operation::Encrypt) || p(Operation::PinEncrypt),
            decrypt: p(Operation::Decrypt) || p(Operation::PinDecrypt),
            sign: MACS.iter().any(|a| p(Operation::MacGenerate(*a))),
            verify: MACS.iter().any(|a| p(Operation::MacVerify(*a))),
            wrap: p(Operation::Wrap),
            unwrap: p(Operation::Unwrap),
        }
    }

    /// Every usage attribute, set explicitly, and `CKA_DERIVE` false.
    pub fn attributes(&self) -> [Attribute; 7] {
        [
            Attribute::Encrypt(self.encrypt),
            Attribute::Decrypt(self.decrypt),
            Attribute::Sign(self.sign),
            Attribute::Verify(self.verify),
            Attribute::Wrap(self.wrap),
            Attribute::Unwrap(self.unwrap),
            Attribute::Derive(false),
        ]
    }
}

/// The PKCS#11 key type of a TDES or AES key of `len` bytes.
pub(super) fn key_type(algorithm: Algorithm, len: usize) -> Result<KeyType> {
    match (algorithm, len) {
        (Algorithm::Tdes, 16) => Ok(KeyType::DES2),
        (Algorithm::Tdes, 24) => Ok(KeyType::DES3),
        (Algorithm::Aes, 16 | 24 | 32) => Ok(KeyType::AES),
        (a, n) => Err(Error::KeyLength {
            algorithm: a.name(),
            len: n,
            allowed: match a {
                Algorithm::Tdes => "16, 24",
                Algorithm::Aes => "16, 24, 32",
            },
        }),
    }
}

/// The attributes every pmp key object has (its value, if any, comes separately):
/// class, type, token, private, label, id, sensitive, extractable, unmodifiable, usages.
pub(super) fn key_template(
    label: &str,
    tag: &Tag,
    algorithm: Algorithm,
    len: usize,
    extractable: bool,
    wrap_with_trusted: bool,
    usages: Usages,
) -> Result<Vec<Attribute>> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type(algorithm, len)?),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(tag.encode()),
        Attribute::Sensitive(true),
        Attribute::Extractable(extractable),
        Attribute::Modifiable(false),
    ];
    if extractable && wrap_with_trusted {
        t.push(Attribute::WrapWithTrusted(true));
    }
    t.extend(usages.attributes());
    Ok(t)
}

/// The templates of an RSA key pair generated on the token (public, private): token
/// objects, private (only the logged-in user sees either half), unmodifiable, every usage
/// set explicitly. The private key is sensitive, never extractable and only signs (raw, for
/// the EMV recovery format); the public key only verifies.
pub(super) fn rsa_templates(
    label: &str,
    tag: &Tag,
    bits: u32,
    exponent: RsaExponent,
) -> (Vec<Attribute>, Vec<Attribute>) {
    let common = |class| {
        vec![
            Attribute::Class(class),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(tag.encode()),
            Attribute::Derive(false),
        ]
    };
    let mut public = common(ObjectClass::PUBLIC_KEY);
    public.extend([
        Attribute::ModulusBits(u64::from(bits).into()),
        Attribute::PublicExponent(exponent.bytes().to_vec()),
        Attribute::Verify(true),
        Attribute::VerifyRecover(false),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Modifiable(false),
    ]);
    let mut private = common(ObjectClass::PRIVATE_KEY);
    private.extend(rsa_private_usages());
    (public, private)
}

/// The protection and usage attributes of an RSA private key object (generated or created):
/// sensitive, not extractable, signs only, unmodifiable (last: SoftHSMv2 applies a template
/// in order).
pub(super) fn rsa_private_usages() -> [Attribute; 8] {
    [
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::SignRecover(false),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Modifiable(false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let spec = KeySpec::new("DK", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B);
        let kcv = Kcv::from_hex("1A2B3C4D5E").unwrap();
        let tag = Tag::for_key(&spec, &kcv);
        assert_eq!(tag.encode(), b"pmp1:key:D0:B:N:A:32:1A2B3C4D5E".to_vec());
        assert_eq!(Tag::decode(&tag.encode()), Some(tag.clone()));
        assert_eq!(spec_of("DK", &tag), Some((spec, kcv)));
        assert_eq!(Tag::decode(b"pmp1:kbek:D"), Some(Tag::Kbek(Version::D)));
        assert_eq!(Tag::decode(b"pmp1:kbak:B"), Some(Tag::Kbak(Version::B)));
        assert_eq!(Tag::decode(b"someone else's id"), None);
        assert_eq!(Tag::decode(b"pmp1:key:D0:B:N:A:7:1A2B3C4D5E"), None);
        let rsa = Tag::Rsa {
            usage: KeyUsage::S0,
            mode: ModeOfUse::S,
            bits: 1408,
            exponent: RsaExponent::F4,
        };
        assert_eq!(rsa.encode(), b"pmp1:rsa:S0:S:1408:010001".to_vec());
        assert_eq!(Tag::decode(&rsa.encode()), Some(rsa));
        assert_eq!(
            Tag::decode(b"pmp1:rsa:S0:S:1024:03"),
            Some(Tag::Rsa {
                usage: KeyUsage::S0,
                mode: ModeOfUse::S,
                bits: 1024,
                exponent: RsaExponent::Three,
            })
        );
        // Not an EMV length, not an EMV exponent.
        assert_eq!(Tag::decode(b"pmp1:rsa:S0:S:1028:03"), None);
        assert_eq!(Tag::decode(b"pmp1:rsa:S0:S:2048:03"), None);
        assert_eq!(Tag::decode(b"pmp1:rsa:S0:S:1024:11"), None);
    }

    #[test]
    fn usages_follow_the_policy_table() {
        // Written from the table in policy.rs, not computed from it.
        let u = |e, d, s, v, w, uw| Usages {
            encrypt: e,
            decrypt: d,
            sign: s,
            verify: v,
            wrap: w,
            unwrap: uw,
        };
        use KeyUsage as K;
        use ModeOfUse as M;
        let f = false;
        let t = true;
        assert_eq!(Usages::of(K::D0, M::B), u(t, t, f, f, f, f));
        assert_eq!(Usages::of(K::D0, M::E), u(t, f, f, f, f, f));
        assert_eq!(Usages::of(K::D0, M::D), u(f, t, f, f, f, f));
        assert_eq!(Usages::of(K::P0, M::B), u(t, t, f, f, f, f));
        assert_eq!(Usages::of(K::M6, M::C), u(f, f, t, t, f, f));
        assert_eq!(Usages::of(K::M6, M::G), u(f, f, t, f, f, f));
        assert_eq!(Usages::of(K::M3, M::V), u(f, f, f, t, f, f));
        assert_eq!(Usages::of(K::K0, M::B), u(f, f, f, f, t, t));
        assert_eq!(Usages::of(K::K1, M::E), u(f, f, f, f, t, f));
        assert_eq!(Usages::of(K::K0, M::D), u(f, f, f, f, f, t));
        assert_eq!(Usages::of(K::B0, M::B), Usages::default());
        assert_eq!(Usages::of(K::D0, M::N), Usages::default());
    }
}
