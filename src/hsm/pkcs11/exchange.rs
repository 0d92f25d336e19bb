//! TR-31 key blocks (versions B and D) with the KEK's binding keys in the token.
//!
//! A version B or D block is protected by two keys derived from the KEK (the key block
//! protection key): the encryption key KBEK and the MAC key KBAK (X9.143 §7.3). When a KEK
//! is formed from components or imported — moments when its clear value is in host memory
//! anyway — both are derived and stored beside it as unmodifiable, sensitive,
//! non-extractable token objects ([`create_binding`]); from then on every key block under
//! that KEK is decrypted, encrypted and MACed by the token. (A token that can derive them
//! itself — `CKM_AES_ECB_ENCRYPT_DATA` / `CKM_DES3_ECB_ENCRYPT_DATA` — would do it for
//! generated KEKs too; the `cryptoki` crate does not name those mechanisms, so a KEK
//! generated inside the token has no binding keys here.)
//!
//! What SoftHSMv2 cannot keep inside is the key a block carries: version B and D MAC the
//! *clear* key data, and no PKCS#11 mechanism MACs the value of a key object or unwraps a
//! CBC payload. So [`unwrap`] has the token decrypt the payload into a zeroizing host
//! buffer and verify the MAC over it, and [`wrap`] takes the exportable key out (wrapped
//! under a one-time session key, unwrapped as a readable session object, read, destroyed)
//! — the operator-allowed [`HostKeyFallback`](crate::hsm::Capability::HostKeyFallback).
//!
//! Version B's KBAK is a TDES-CMAC key; `cryptoki` does not name `CKM_DES3_CMAC`, so the
//! CMAC is computed from the token's TDES-CBC encryption under the KBAK (a key with no
//! other use): the host applies the CMAC subkey (from E(KBAK, 0)) to the last block
//! (NIST SP 800-38B §6.2).

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use super::object::{self, Tag, Usages};
use super::session::{CkResult, Fail};
use super::{Entry, Pkcs11Hsm};
use crate::hsm::KeySpec;
use crate::hsm::policy::{self, Operation};
use crate::keyblock::{self, Header, KeyAlgorithm, KeyRole, OptionalBlock, Version};
use crate::{Algorithm, Error, Result, SecretKey};

/// The binding keys of a KEK on the token.
#[derive(Clone, Copy, Debug)]
pub(super) struct Binding {
    pub version: Version,
    pub kbek: ObjectHandle,
    pub kbak: ObjectHandle,
}

/// Derives the binding keys of the KEK `kek` (clear in host memory at this moment) and
/// stores them beside it. `None` when the KEK's mode of use allows neither wrapping nor
/// unwrapping.
pub(super) fn create_binding(
    hsm: &Pkcs11Hsm,
    spec: &KeySpec,
    kek: &SecretKey,
) -> Result<Option<Binding>> {
    let wrap = policy::permits(Operation::Wrap, spec.usage, spec.mode_of_use);
    let unwrap = policy::permits(Operation::Unwrap, spec.usage, spec.mode_of_use);
    if !wrap && !unwrap {
        return Ok(None);
    }
    let version = match spec.algorithm {
        Algorithm::Aes => Version::D,
        Algorithm::Tdes => Version::B,
    };
    let kbek = keyblock::derive(kek, KeyRole::Encryption)?;
    let kbak = keyblock::derive(kek, KeyRole::Mac)?;
    let kbek_usages = Usages {
        encrypt: wrap,
        decrypt: unwrap,
        ..Usages::default()
    };
    let kbak_usages = match version {
        Version::D => Usages {
            sign: wrap,
            verify: unwrap,
            ..Usages::default()
        },
        // TDES-CMAC through TDES-CBC encryption (see the module documentation).
        _ => Usages {
            encrypt: true,
            ..Usages::default()
        },
    };
    let make = |tag: Tag, key: &SecretKey, usages: Usages| -> Result<Vec<Attribute>> {
        let mut t = object::key_template(
            &spec.label,
            &tag,
            key.algorithm(),
            key.len(),
            false,
            false,
            usages,
        )?;
        t.push(Attribute::Value(key.expose_secret().to_vec()));
        Ok(t)
    };
    let mut te = make(Tag::Kbek(version), &kbek, kbek_usages)?;
    let mut ta = make(Tag::Kbak(version), &kbak, kbak_usages)?;
    let r = hsm.run(|s| {
        let e = s.create_object(&te)?;
        match s.create_object(&ta) {
            Ok(a) => Ok((e, a)),
            Err(err) => {
                let _ = s.destroy_object(e);
                Err(err.into())
            }
        }
    });
    for t in [&mut te, &mut ta] {
        for a in t.iter_mut() {
            if let Attribute::Value(v) = a {
                zeroize::Zeroize::zeroize(v);
            }
        }
    }
    let (kbek, kbak) = r?;
    Ok(Some(Binding {
        version,
        kbek,
        kbak,
    }))
}

fn binding(kek: &Entry, version: Version) -> Result<Binding> {
    kek.binding()
        .filter(|b| b.version == version)
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "KEK '{}' has no TR-31 version {version} binding keys on this token (only KEKs \
                 formed from components or imported here have them; this token cannot derive \
                 them for a KEK generated inside it)",
                kek.spec.label
            ))
        })
}

fn cbc(version: Version, iv: &[u8]) -> Result<Mechanism<'static>> {
    let bad = || Error::Crypto;
    Ok(match version {
        Version::D => Mechanism::AesCbc(iv.try_into().map_err(|_| bad())?),
        _ => Mechanism::Des3Cbc(iv.try_into().map_err(|_| bad())?),
    })
}

/// TDES-CMAC (NIST SP 800-38B) of `msg` under the key object `k`, from the token's TDES-CBC
/// encryption with a zero IV.
fn tdes_cmac(s: &Session, k: ObjectHandle, msg: &[u8]) -> CkResult<[u8; 8]> {
    fn dbl(b: [u8; 8]) -> [u8; 8] {
        let v = u64::from_be_bytes(b);
        let carry = v >> 63;
        ((v << 1) ^ (carry * 0x1B)).to_be_bytes()
    }
    let zero = Mechanism::Des3Cbc([0u8; 8]);
    let l: [u8; 8] = s
        .encrypt(&zero, k, &[0u8; 8])?
        .as_slice()
        .try_into()
        .map_err(|_| Fail::Pmp(Error::Crypto))?;
    let k1 = dbl(l);
    let k2 = dbl(k1);
    let complete = !msg.is_empty() && msg.len().is_multiple_of(8);
    let mut m = Zeroizing::new(msg.to_vec());
    let sub = if complete {
        k1
    } else {
        m.push(0x80);
        while !m.len().is_multiple_of(8) {
            m.push(0);
        }
        k2
    };
    let n = m.len();
    for (x, y) in m[n - 8..].iter_mut().zip(sub) {
        *x ^= y;
    }
    let c = Zeroizing::new(s.encrypt(&zero, k, &m)?);
    c[c.len() - 8..]
        .try_into()
        .map_err(|_| Fail::Pmp(Error::Crypto))
}

/// The MAC of a version B or D block over `header ‖ clear key data`.
fn mac(s: &Session, b: &Binding, msg: &[u8]) -> CkResult<Vec<u8>> {
    match b.version {
        Version::D => Ok(s.sign(&Mechanism::AesCMac, b.kbak, msg)?),
        _ => Ok(tdes_cmac(s, b.kbak, msg)?.to_vec()),
    }
}

/// Verifies and opens a version B or D key block under the KEK `kek`: the token decrypts
/// the payload (into a zeroizing host buffer) and checks the MAC over it. Every
/// cryptographic failure is [`Error::Crypto`].
pub(super) fn unwrap(hsm: &Pkcs11Hsm, kek: &Entry, block: &str) -> Result<(Header, SecretKey)> {
    let (header, hlen) = keyblock::parse_block(block)?;
    check_kbpk(kek, header.version)?;
    let key_alg = keyblock::supported_algorithm(&header)?;
    keyblock::check_version_carries(header.version, key_alg)?;
    header.check_combination()?;
    let clear = open(hsm, kek, block, &header, hlen)?;
    let bits = usize::from(u16::from_be_bytes([clear[0], clear[1]]));
    let len = bits / 8;
    if bits % 8 != 0 || len > clear.len() - 2 || !key_alg.valid_key_len(len) {
        return Err(Error::Crypto);
    }
    let key = SecretKey::new(key_alg, &clear[2..2 + len]).map_err(|_| Error::Crypto)?;
    Ok((header, key))
}

/// Verifies and opens an asymmetric key block (algorithm `R`, `E` or `S`; version B or D)
/// under the KEK `kek` as [`unwrap`] does, and returns its header and payload — the private
/// key's DER — in a zeroizing host buffer. Every cryptographic failure is
/// [`Error::Crypto`].
pub(super) fn unwrap_asymmetric(
    hsm: &Pkcs11Hsm,
    kek: &Entry,
    block: &str,
) -> Result<(Header, Zeroizing<Vec<u8>>)> {
    let (header, hlen) = keyblock::parse_block(block)?;
    let v = header.version;
    if !header.algorithm.is_asymmetric() {
        return Err(Error::invalid(
            "key block",
            format!("algorithm {} is not asymmetric", header.algorithm),
        ));
    }
    if !matches!(v, Version::B | Version::D) {
        return Err(Error::Policy(format!(
            "an asymmetric key travels only in a version B or D key block, not {v}"
        )));
    }
    check_kbpk(kek, v)?;
    header.check_combination()?;
    let clear = open(hsm, kek, block, &header, hlen)?;
    let bits = usize::from(u16::from_be_bytes([clear[0], clear[1]]));
    let len = bits / 8;
    if bits % 8 != 0 || len == 0 || len > clear.len() - 2 {
        return Err(Error::Crypto);
    }
    Ok((header, Zeroizing::new(clear[2..2 + len].to_vec())))
}

/// The KEK must be of the algorithm the block's version is protected with.
fn check_kbpk(kek: &Entry, v: Version) -> Result<()> {
    if kek.spec.algorithm != v.kbpk_algorithm() {
        return Err(Error::Policy(format!(
            "a version {v} key block needs a {} key block protection key, not {}",
            v.kbpk_algorithm(),
            kek.spec.algorithm
        )));
    }
    binding(kek, v)?;
    Ok(())
}

/// The token decrypts the key data of a parsed version B or D block (header `hlen`
/// characters long) with the KEK's KBEK into a zeroizing host buffer and verifies the MAC
/// over it with the KBAK: the clear key data (length field, payload, padding), authentic
/// and at least 2 bytes long.
fn open(
    hsm: &Pkcs11Hsm,
    kek: &Entry,
    block: &str,
    header: &Header,
    hlen: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let v = header.version;
    let text = &block[..hlen];
    let rest = &block.as_bytes()[hlen..];
    let bs = v.block_size();
    let mac_hex = 2 * v.mac_len();
    if rest.len() < mac_hex + 2 * bs || !(rest.len() - mac_hex).is_multiple_of(2 * bs) {
        return Err(Error::Crypto);
    }
    let (data_hex, tag_hex) = rest.split_at(rest.len() - mac_hex);
    let data = hex::decode(data_hex).map_err(|_| Error::Crypto)?;
    let tag = hex::decode(tag_hex).map_err(|_| Error::Crypto)?;
    let iv = cbc(v, &tag)?;

    let clear = hsm.run(|s| {
        // Read inside the session: the handles are looked up again after a lost login.
        let b = binding(kek, v)?;
        let clear = Zeroizing::new(s.decrypt(&iv, b.kbek, &data)?);
        let mut msg = Zeroizing::new(Vec::with_capacity(text.len() + clear.len()));
        msg.extend_from_slice(text.as_bytes());
        msg.extend_from_slice(&clear);
        match v {
            Version::D => s.verify(&Mechanism::AesCMac, b.kbak, &msg, &tag)?,
            _ => {
                use subtle::ConstantTimeEq;
                let t = tdes_cmac(s, b.kbak, &msg)?;
                if !bool::from(t.as_slice().ct_eq(&tag)) {
                    return Err(Fail::Pmp(Error::Crypto));
                }
            }
        }
        Ok(clear)
    })?;
    // Authentic from here on; a bad length inside is still the opaque error.
    if clear.len() < 2 {
        return Err(Error::Crypto);
    }
    Ok(clear)
}

/// Takes the exportable key `e` out of the token into host memory: wrapped under a
/// one-time session key, unwrapped as a readable session object, read and destroyed.
fn extract(hsm: &Pkcs11Hsm, e: &Entry) -> Result<SecretKey> {
    let value = hsm.run(|s| {
        let mut wt = vec![
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::ValueLen((32 as std::os::raw::c_ulong).into()),
        ];
        wt.extend(
            Usages {
                wrap: true,
                unwrap: true,
                ..Usages::default()
            }
            .attributes(),
        );
        let w = s.generate_key(&Mechanism::AesKeyGen, &wt)?;
        let r = (|| -> CkResult<Zeroizing<Vec<u8>>> {
            let blob = s.wrap_key(&Mechanism::AesKeyWrapPad, w, e.object())?;
            let mut ut = vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ];
            ut.extend(Usages::default().attributes());
            let o = s.unwrap_key(&Mechanism::AesKeyWrapPad, w, &blob, &ut)?;
            let attrs = s.get_attributes(o, &[AttributeType::Value]);
            let _ = s.destroy_object(o);
            let mut value = Zeroizing::new(Vec::new());
            for a in attrs? {
                if let Attribute::Value(mut v) = a {
                    value.extend_from_slice(&v);
                    zeroize::Zeroize::zeroize(&mut v);
                }
            }
            Ok(value)
        })();
        let _ = s.destroy_object(w);
        r
    })?;
    if value.len() != e.spec.len {
        return Err(Error::Integrity {
            what: format!("key '{}' on the token", e.spec.label),
            reason: format!(
                "{} bytes came out, its attributes say {}",
                value.len(),
                e.spec.len
            ),
        });
    }
    let key = SecretKey::new(e.spec.algorithm, &value)?;
    e.kcv.check(
        &key.kcv(),
        format!("key '{}' taken out for export", e.spec.label),
    )?;
    Ok(key)
}

/// Exports the exportable key `e` as a version B or D block under the KEK `kek`: the key
/// passes through host memory, the token MACs and encrypts the payload.
pub(super) fn wrap(hsm: &Pkcs11Hsm, e: &Entry, kek: &Entry, version: Version) -> Result<String> {
    binding(kek, version)?;
    keyblock::check_version_carries(version, e.spec.algorithm)?;
    let mut h = Header::new(
        version,
        e.spec.usage,
        match e.spec.algorithm {
            Algorithm::Tdes => KeyAlgorithm::Tdes,
            Algorithm::Aes => KeyAlgorithm::Aes,
        },
        e.spec.mode_of_use,
        e.spec.exportability,
    );
    h.check_combination()?;
    let key = extract(hsm, e)?;

    // The header, aligned on the cipher block with a padding block when needed.
    let bs = version.block_size();
    let short = h.encoded_len() % bs;
    if short != 0 {
        let mut n = bs - short;
        if n < 4 {
            n += bs;
        }
        h.optional_blocks.push(OptionalBlock {
            id: *b"PB",
            data: "0".repeat(n - 4),
        });
    }
    // Clear key data: bit length, key, random padding.
    let data_len = (2 + key.len()).div_ceil(bs) * bs;
    let total = h.encoded_len() + 2 * data_len + 2 * version.mac_len();
    let text = h.encode(total)?;
    let bits = u16::try_from(key.len() * 8).map_err(|_| Error::invalid("key", "too long"))?;
    let mut data = Zeroizing::new(vec![0u8; data_len]);
    data[..2].copy_from_slice(&bits.to_be_bytes());
    data[2..2 + key.len()].copy_from_slice(key.expose_secret());
    crate::fill_random(&mut data[2 + key.len()..])?;
    drop(key);

    let (tag, ct) = hsm.run(|s| {
        let mut msg = Zeroizing::new(Vec::with_capacity(text.len() + data.len()));
        msg.extend_from_slice(text.as_bytes());
        msg.extend_from_slice(&data);
        let b = binding(kek, version)?;
        let tag = mac(s, &b, &msg)?;
        let ct = s.encrypt(&cbc(version, &tag)?, b.kbek, &data)?;
        Ok((tag, ct))
    })?;
    if tag.len() != version.mac_len() || ct.len() != data_len {
        return Err(Error::Crypto);
    }
    let mut out = text;
    out.push_str(&hex::encode_upper(&ct));
    out.push_str(&hex::encode_upper(&tag));
    debug_assert_eq!(out.len(), total);
    Ok(out)
}
