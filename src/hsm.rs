//! The HSM abstraction: every secret-key operation of pmp-core goes through [`Hsm`].
//!
//! Keys live inside the HSM and are named by opaque [`KeyHandle`]s; no method returns a
//! clear key. Every call checks the key's TR-31 usage and mode of use against the
//! operation ([`policy`]), so that a PIN key never decrypts data, a data key never wraps
//! keys and a MAC-verify key never generates.
//!
//! Backends: [`SoftHsm`] (always built; key store of version-D key blocks under an AES-256
//! LMK, audit log) and, later, a PKCS#11 backend. What a backend can do is a set of
//! [`Capability`] values ([`Hsm::capabilities`]); callers refuse up front, by name, what it
//! lacks. `SoftHsm` is a library in the caller's process, so it does not claim
//! [`Capability::PolicyInDevice`] or [`Capability::InBoundaryFileImport`]: its policy checks
//! and its whole-file decryption run in that same process.
//!
//! `conformance::run_all` (cargo feature `conformance`) is the test suite every backend
//! passes; it reads the capabilities, leaves out — and reports — what a backend lacks, and
//! sets up its keys without clear components where the backend cannot form them.
//!
//! ```
//! use pmp_core::hsm::{Hsm, KeySpec, SoftHsm, CipherSpec};
//! use pmp_core::keyblock::{KeyUsage, ModeOfUse};
//! use pmp_core::{Algorithm, Mode, Padding};
//! let dir = std::env::temp_dir().join(format!("pmp-doc-{}", std::process::id()));
//! let hsm = SoftHsm::create_with_test_lmk(&dir).unwrap();
//! let a = hsm.generate_key(&KeySpec::new("DK-A", Algorithm::Aes, 32, KeyUsage::D0, ModeOfUse::B)).unwrap();
//! let b = hsm.generate_key(&KeySpec::new("DK-B", Algorithm::Tdes, 16, KeyUsage::D0, ModeOfUse::B)).unwrap();
//! let iv = [0u8; 16];
//! let mut ct = [0u8; 32];
//! let n = hsm.encrypt(&CipherSpec::cbc(&a.handle, &iv, Padding::Iso9797M2), b"4111111111111111", &mut ct).unwrap();
//! let mut out = [0u8; 48];
//! let m = hsm.translate(&CipherSpec::cbc(&a.handle, &iv, Padding::Iso9797M2),
//!                       &CipherSpec::ecb(&b.handle, Padding::Iso9797M2), &ct[..n], &mut out).unwrap();
//! assert_eq!(m, 24);
//! # drop(hsm); std::fs::remove_dir_all(&dir).ok();
//! ```

use core::fmt;
use std::io::Read;

use crate::keyblock::{Exportability, KeyUsage, ModeOfUse};
use crate::pinblock::{Pan, PinBlockFormat};
use crate::{Algorithm, Kcv, MacAlgorithm, MacTag, Mode, Padding, Result};

mod capabilities;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod emv;
mod file;
#[cfg(feature = "pkcs11")]
mod pkcs11;
pub mod policy;
pub mod rsa;
mod soft;

pub use capabilities::{Capabilities, Capability, KcvMethod};
pub use file::CbcDecryptReader;
#[cfg(feature = "pkcs11")]
pub use pkcs11::{HOST_KEY_FALLBACK_ENV, PIN_ENV, Pkcs11Config, Pkcs11Hsm};
pub use policy::Operation;
pub use soft::{AuditVerdict, LmkComponent, LmkComponents, LmkSource, SoftHsm, verify_audit_log};

/// An opaque reference to a key inside an HSM. Cheap to clone; meaningful only to the HSM
/// that issued it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyHandle {
    id: u64,
    label: std::sync::Arc<str>,
}

impl KeyHandle {
    /// Made by backends.
    pub fn new(id: u64, label: &str) -> Self {
        Self {
            id,
            label: label.into(),
        }
    }

    /// The backend's identifier.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The key's label.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHandle({:?})", &*self.label)
    }
}

/// What a key is and may do: the attributes bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// Unique label in the HSM (1–64 characters of `A–Z a–z 0–9 . _ -`).
    pub label: String,
    /// TDES or AES.
    pub algorithm: Algorithm,
    /// Length in bytes (TDES 16/24, AES 16/24/32).
    pub len: usize,
    /// TR-31 key usage.
    pub usage: KeyUsage,
    /// TR-31 mode of use.
    pub mode_of_use: ModeOfUse,
    /// TR-31 exportability. Keys are non-exportable unless asked.
    pub exportability: Exportability,
}

impl KeySpec {
    /// A non-exportable key spec.
    pub fn new(
        label: &str,
        algorithm: Algorithm,
        len: usize,
        usage: KeyUsage,
        mode_of_use: ModeOfUse,
    ) -> Self {
        Self {
            label: label.to_string(),
            algorithm,
            len,
            usage,
            mode_of_use,
            exportability: Exportability::N,
        }
    }

    /// The same spec, exportable (`E`) under a key-encryption key.
    pub fn exportable(mut self) -> Self {
        self.exportability = Exportability::E;
        self
    }
}

/// A key as the HSM reports it: handle, attributes and KCV. Never key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The handle for further operations.
    pub handle: KeyHandle,
    /// The attributes bound to the key (its `len` is the key length).
    pub spec: KeySpec,
    /// The key check value.
    pub kcv: Kcv,
}

/// How a key came to be in the HSM. A backend that binds it (the software HSM binds it
/// under the LMK, in each stored key block) reports it through [`Hsm::key_origin`].
///
/// Only a [`Generated`](KeyOrigin::Generated) key's value has never been outside the HSM;
/// a key formed from components or imported under a KEK is known (or knowable) elsewhere,
/// so it can never MAC an XOF file or be trusted as the key that did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Generated inside this HSM.
    Generated,
    /// Formed from clear components (key ceremony).
    Components,
    /// Imported as a key block under the key-encryption key with this label.
    Imported {
        /// The label of the KEK it was imported under.
        kek: String,
    },
    /// The backend does not record origins.
    Unknown,
}

impl KeyOrigin {
    /// Whether the key's value has never been outside this HSM.
    pub fn is_generated(&self) -> bool {
        matches!(self, KeyOrigin::Generated)
    }
}

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::Generated => f.write_str("generated"),
            KeyOrigin::Components => f.write_str("components"),
            KeyOrigin::Imported { kek } => write!(f, "imported under {kek}"),
            KeyOrigin::Unknown => f.write_str("unknown"),
        }
    }
}

/// A sensitive activity: on a production key store it needs an authorisation given by two
/// different officers ([`Hsm::authorise`]), scoped to named activities and a time limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activity {
    /// Forming any key from clear components (a key ceremony; a KEK above all).
    FormKey,
    /// Importing a key-encryption key (K0/K1) under another KEK.
    ImportKek,
    /// Exporting a key under a KEK.
    Export,
    /// Generating an exportable key.
    GenerateExportable,
    /// Decrypting to clear under a data key generated here (a DKep).
    DecryptToClear,
    /// Deleting a key.
    DeleteKey,
    /// Enrolling officers beyond the first two (changing who may authorise).
    ManageOfficers,
}

impl Activity {
    /// Every activity.
    pub const ALL: [Activity; 7] = [
        Activity::FormKey,
        Activity::ImportKek,
        Activity::Export,
        Activity::GenerateExportable,
        Activity::DecryptToClear,
        Activity::DeleteKey,
        Activity::ManageOfficers,
    ];

    /// The activity's name (`form-key`, `import-kek`, `export`, `generate-exportable`,
    /// `decrypt-to-clear`, `delete-key`, `manage-officers`).
    pub fn name(self) -> &'static str {
        match self {
            Activity::FormKey => "form-key",
            Activity::ImportKek => "import-kek",
            Activity::Export => "export",
            Activity::GenerateExportable => "generate-exportable",
            Activity::DecryptToClear => "decrypt-to-clear",
            Activity::DeleteKey => "delete-key",
            Activity::ManageOfficers => "manage-officers",
        }
    }

    /// The activity named `name` (as [`name`](Activity::name) spells it).
    pub fn from_name(name: &str) -> Result<Activity> {
        Activity::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                crate::Error::invalid(
                    "activity",
                    format!(
                        "'{name}' is not one of {}",
                        Activity::ALL.map(|a| a.name()).join(", ")
                    ),
                )
            })
    }
}

/// An officer's credential for [`Hsm::authorise`]: the id and the passphrase. `Debug` shows
/// the id only.
#[derive(Clone, Copy)]
pub struct Officer<'a> {
    /// The officer's id (a label).
    pub id: &'a str,
    /// The officer's passphrase.
    pub passphrase: &'a [u8],
}

impl fmt::Debug for Officer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Officer")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What an imported key block must carry, checked before the key is stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportCheck<'a> {
    /// The KCV the sender gave separately (a shorter KCV is compared as a prefix).
    pub kcv: Option<&'a Kcv>,
    /// The usages accepted; empty accepts any.
    pub usages: &'a [KeyUsage],
}

/// One side of a data operation: the key, the mode, the IV and the padding.
#[derive(Clone, Copy, Debug)]
pub struct CipherSpec<'a> {
    /// The key.
    pub key: &'a KeyHandle,
    /// ECB or CBC.
    pub mode: Mode,
    /// The IV (CBC only), one block.
    pub iv: Option<&'a [u8]>,
    /// The padding of the plaintext.
    pub padding: Padding,
}

impl<'a> CipherSpec<'a> {
    /// ECB under `key`.
    pub fn ecb(key: &'a KeyHandle, padding: Padding) -> Self {
        Self {
            key,
            mode: Mode::Ecb,
            iv: None,
            padding,
        }
    }

    /// CBC under `key` with `iv`.
    pub fn cbc(key: &'a KeyHandle, iv: &'a [u8], padding: Padding) -> Self {
        Self {
            key,
            mode: Mode::Cbc,
            iv: Some(iv),
            padding,
        }
    }
}

/// One field of a batch translation.
#[derive(Clone, Copy, Debug)]
pub struct TranslateItem<'a> {
    /// How the field is encrypted now.
    pub from: CipherSpec<'a>,
    /// How it is to be encrypted.
    pub to: CipherSpec<'a>,
    /// The ciphertext under `from`.
    pub data: &'a [u8],
}

/// A PIN block under a key, in an ISO 9564-1 format.
#[derive(Clone, Copy, Debug)]
pub struct PinSpec<'a> {
    /// The PIN encryption key (P0): TDES for formats 0, 1, 3; AES for format 4.
    pub key: &'a KeyHandle,
    /// The ISO 9564-1 format.
    pub format: PinBlockFormat,
}

/// The HSM interface. Object safe, `Send + Sync`. No method returns a clear key.
///
/// Errors: usage and mode-of-use refusals are [`Error::Policy`](crate::Error::Policy); an
/// unknown handle or label is [`Error::NotFound`](crate::Error::NotFound); cryptographic
/// failures (MAC mismatch, bad padding, a bad PIN block, a key block that does not verify)
/// are the opaque [`Error::Crypto`](crate::Error::Crypto).
pub trait Hsm: Send + Sync + fmt::Debug {
    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    // ---- key management ----

    /// Generates a random key with the given attributes. The label must be new.
    fn generate_key(&self, spec: &KeySpec) -> Result<KeyInfo>;

    /// Forms a key as the XOR of 2 or 3 clear components (key ceremony), each checked
    /// against its KCV when given; the resulting key is checked against `expected_kcv`
    /// when given, and nothing is stored when any check fails. `spec.len` must equal the
    /// component length.
    fn form_key_from_components(
        &self,
        spec: &KeySpec,
        components: &[&[u8]],
        component_kcvs: &[Option<Kcv>],
        expected_kcv: Option<&Kcv>,
    ) -> Result<KeyInfo>;

    /// Imports a TR-31 / X9.143 key block under the key-encryption key `kek` (usage K0
    /// or K1, mode B or D) and stores it under `label`.
    fn import_key_block(&self, label: &str, kek: &KeyHandle, block: &str) -> Result<KeyInfo> {
        self.import_key_block_checked(label, kek, block, &ImportCheck::default())
    }

    /// [`import_key_block`](Hsm::import_key_block) that first checks what the block
    /// carries against `check` (the KCV the sender gave separately, the usages expected);
    /// nothing is stored, and nothing is logged as imported, when a check fails.
    fn import_key_block_checked(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
        check: &ImportCheck<'_>,
    ) -> Result<KeyInfo>;

    /// Exports `key` as a TR-31 key block under `kek` (usage K0 or K1, mode B or E, at least
    /// as strong as `key`). Only exportable (`E`) keys are exported. Version D for an AES
    /// KEK, version B for a TDES KEK.
    fn export_key_block(&self, key: &KeyHandle, kek: &KeyHandle) -> Result<String>;

    /// Attributes and KCV of a key.
    fn key_info(&self, key: &KeyHandle) -> Result<KeyInfo>;

    /// Finds a key by label.
    fn find_key(&self, label: &str) -> Result<KeyHandle>;

    /// Every key, sorted by label.
    fn list_keys(&self) -> Result<Vec<KeyInfo>>;

    /// How `key` came to be ([`KeyOrigin`]). Backends that do not record it answer
    /// [`KeyOrigin::Unknown`], which the XOF MAC rule treats as not generated here.
    fn key_origin(&self, key: &KeyHandle) -> Result<KeyOrigin> {
        self.key_info(key).map(|_| KeyOrigin::Unknown)
    }

    /// Deletes a key.
    fn delete_key(&self, key: &KeyHandle) -> Result<()>;

    /// Dual control: two different officers, each by passphrase, authorise `activities` for
    /// `valid_for` (replacing any earlier authorisation of this instance). Backends without
    /// it answer [`Error::Unsupported`](crate::Error::Unsupported).
    fn authorise(
        &self,
        first: &Officer<'_>,
        second: &Officer<'_>,
        activities: &[Activity],
        valid_for: std::time::Duration,
    ) -> Result<()> {
        let _ = (first, second, activities, valid_for);
        Err(crate::Error::Unsupported(
            "dual-control authorisation in this backend".into(),
        ))
    }

    /// Ends the current authorisation, if any.
    fn end_authorisation(&self) -> Result<()> {
        Ok(())
    }

    // ---- data ----

    /// Pads and encrypts `data` under a data key (D0, mode B or E) into `out`; returns the
    /// ciphertext length.
    fn encrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize>;

    /// Decrypts and unpads under a data key (D0, mode B or D) into `out`; returns the
    /// plaintext length. (The clear text leaves the HSM: callers that only re-encrypt use
    /// [`translate`](Hsm::translate).)
    fn decrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize>;

    /// Decrypts under `from` and re-encrypts under `to` in one call; the clear text never
    /// leaves the HSM. Returns the length written to `out`.
    fn translate(
        &self,
        from: &CipherSpec<'_>,
        to: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize>;

    /// Translates many fields in one call (one round trip for a network HSM). Appends the
    /// outputs to `out` and returns the end offset of each field in `out`. All or nothing:
    /// on error `out` is restored to its length on entry.
    fn translate_batch(
        &self,
        items: &[TranslateItem<'_>],
        out: &mut Vec<u8>,
    ) -> Result<Vec<usize>> {
        let start = out.len();
        let mut ends = Vec::with_capacity(items.len());
        for item in items {
            let at = out.len();
            out.resize(at + item.data.len() + 32, 0);
            match self.translate(&item.from, &item.to, item.data, &mut out[at..]) {
                Ok(n) => {
                    out.truncate(at + n);
                    ends.push(out.len());
                }
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
        Ok(ends)
    }

    /// Streams the CBC decryption of a whole file under a data key (D0, mode B or D):
    /// returns a reader of the clear text, padding removed at the end. A length that is not
    /// a whole number of blocks (a truncated file) is [`Error::Invalid`](crate::Error::Invalid);
    /// a bad final padding (wrong key, altered or truncated file) is the opaque
    /// [`Error::Crypto`](crate::Error::Crypto); both arrive as an `io::Error` wrapping the
    /// pmp-core error (`io::Error::get_ref` / `into_inner` recovers it).
    ///
    /// Boundary: in the software HSM this runs in the HSM's own code with its cached key
    /// schedule and its clear output buffer is wiped on every refill and on drop; the
    /// import pipeline feeds it straight into parsers whose buffers are wiped. That code is
    /// in the caller's process, so the clear file does pass through that process's memory
    /// and `SoftHsm` does not claim [`Capability::InBoundaryFileImport`], which is kept for
    /// a device that decrypts and re-encrypts the attributes inside its own boundary. The
    /// default implementation here — what a plain PKCS#11 backend gets — decrypts chunk by
    /// chunk with [`decrypt`](Hsm::decrypt) into host memory (zeroizing buffers).
    fn decrypting_reader<'a>(
        &'a self,
        spec: &CipherSpec<'_>,
        input: Box<dyn Read + Send + 'a>,
    ) -> Result<Box<dyn Read + Send + 'a>> {
        let info = self.key_info(spec.key)?;
        let key = spec.key.clone();
        let bs = info.spec.algorithm.block_size();
        let mut scratch: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(Vec::new());
        let decrypt = move |iv: &[u8], buf: &mut [u8]| -> Result<()> {
            scratch.resize(buf.len(), 0);
            let n = self.decrypt(&CipherSpec::cbc(&key, iv, Padding::None), buf, &mut scratch)?;
            buf.copy_from_slice(&scratch[..n]);
            zeroize::Zeroize::zeroize(&mut scratch[..]);
            Ok(())
        };
        Ok(Box::new(CbcDecryptReader::new(
            input,
            Box::new(decrypt),
            bs,
            spec,
        )?))
    }

    /// Translates a PIN block from `from` (key, format) to `to` with the PAN. Formats 0, 1,
    /// 3 and 4; a block in format 0, 3 or 4 never becomes format 1. Any PIN failure is the
    /// opaque [`Error::Crypto`](crate::Error::Crypto). Returns the new block (8 or 16 bytes).
    fn translate_pin(
        &self,
        from: &PinSpec<'_>,
        to: &PinSpec<'_>,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>>;

    /// Translates a PIN block from `from` (formats 0, 1, 3, 4) to ISO 9564-1 **format 2**
    /// for loading onto a card (the reference PIN of EMV DGI 8010), encrypted in ECB under
    /// `ptk`: a P0 PIN *transport* key (mode B or E, exportable: it goes to production).
    /// A TDES PTK gives the 8-byte block; an AES PTK gives the block padded with ISO/IEC
    /// 9797-1 method 2 to 16 bytes. Format 2 is never accepted as a source, here or by
    /// [`translate_pin`](Hsm::translate_pin) (see `docs/production.md` for why). Any PIN
    /// failure is the opaque [`Error::Crypto`](crate::Error::Crypto). The default refuses
    /// ([`Capability::CardPin`]).
    fn translate_pin_for_card(
        &self,
        from: &PinSpec<'_>,
        ptk: &KeyHandle,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        let _ = (from, ptk, pan, block);
        Err(crate::Error::Unsupported(
            "PIN blocks for card loading (ISO format 2 under a PTK)".into(),
        ))
    }

    /// Derives a card's three ICC master keys from IMK-AC, IMK-SMI and IMK-SMC (usages E0,
    /// E2, E1, mode of use X: a derivation key only derives) with the PAN and PSN
    /// ([`emv`]), and returns them encrypted under the KTK (K0, mode B or E) in ECB with
    /// their KCVs; the clear keys never leave the HSM. The default refuses
    /// ([`Capability::IccKeyDerivation`]).
    fn derive_icc_master_keys(&self, req: &emv::IccKeyRequest<'_>) -> Result<emv::IccMasterKeys> {
        let _ = req;
        Err(crate::Error::Unsupported(
            "EMV ICC master-key derivation".into(),
        ))
    }

    /// Generates an RSA key pair in the HSM ([`rsa`]); the private key never leaves it in
    /// clear. The default refuses ([`Capability::RsaKeys`]).
    fn generate_rsa_key(&self, spec: &rsa::RsaKeySpec) -> Result<rsa::RsaKeyInfo> {
        let _ = spec;
        Err(crate::Error::Unsupported("RSA keys".into()))
    }

    /// Imports an RSA private key from an X9.143 key block of algorithm `R` under a KEK.
    /// The default refuses ([`Capability::RsaKeyBlockImport`]).
    fn import_rsa_key_block(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
    ) -> Result<rsa::RsaKeyInfo> {
        let _ = (label, kek, block);
        Err(crate::Error::Unsupported(
            "RSA key blocks (X9.143 algorithm R)".into(),
        ))
    }

    /// An RSA key pair's attributes and public half. The default refuses.
    fn rsa_key_info(&self, key: &KeyHandle) -> Result<rsa::RsaKeyInfo> {
        let _ = key;
        Err(crate::Error::Unsupported("RSA keys".into()))
    }

    /// The RSA key pairs held (their public halves only). The default holds none.
    fn list_rsa_keys(&self) -> Result<Vec<rsa::RsaKeyInfo>> {
        Ok(Vec::new())
    }

    /// Signs `message` with an `S0` key by the raw private operation, after checking that
    /// it is in the EMV recovery format (Book 2 annex A2.1: the modulus's length, first
    /// byte `6A`, last byte `BC`) and of a format an issuer signs (`03` or `04`;
    /// [`rsa::check_recovery_format`]). The default refuses ([`Capability::RsaKeys`]).
    fn sign_emv_recovery(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>> {
        let _ = (key, message);
        Err(crate::Error::Unsupported("RSA keys".into()))
    }

    /// Makes one card's ICC RSA key pair (from the pool when asked and one is there) and
    /// returns its public half and its CRT parts under the KTK. The default refuses
    /// ([`Capability::IccRsaKeys`]).
    fn generate_icc_rsa_key(&self, req: &rsa::IccRsaRequest<'_>) -> Result<rsa::IccRsaKey> {
        let _ = req;
        Err(crate::Error::Unsupported("ICC RSA key pairs".into()))
    }

    /// Generates `count` ICC key pairs of `bits` and `exponent` into the pool (kept under
    /// the HSM's own protection) and reports the pool's level for them. The default refuses
    /// ([`Capability::IccKeyPool`]).
    fn fill_icc_key_pool(
        &self,
        bits: u32,
        exponent: crate::rsa::RsaExponent,
        count: u64,
    ) -> Result<rsa::IccPoolLevel> {
        let _ = (bits, exponent, count);
        Err(crate::Error::Unsupported("an ICC key pool".into()))
    }

    /// The pool's levels, one per length and exponent held. The default holds none.
    fn icc_key_pool(&self) -> Result<Vec<rsa::IccPoolLevel>> {
        Ok(Vec::new())
    }

    /// Generates a MAC under a MAC key whose usage matches `alg` (mode C or G).
    fn generate_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
    ) -> Result<MacTag>;

    /// Verifies a MAC (possibly truncated to ≥ 4 bytes) in constant time under a MAC key
    /// whose usage matches `alg` (mode C or V).
    fn verify_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
        mac: &[u8],
    ) -> Result<()>;
}

/// The clear key of a key ceremony, for a backend's `form_key_from_components`: the XOR of
/// the components (each checked against its KCV when given, degenerate ones refused), of
/// the length `spec` asks for, checked against `expected_kcv` when given.
pub(crate) fn combine_for_spec(
    spec: &KeySpec,
    components: &[&[u8]],
    component_kcvs: &[Option<Kcv>],
    expected_kcv: Option<&Kcv>,
) -> Result<crate::SecretKey> {
    if !component_kcvs.is_empty() && component_kcvs.len() != components.len() {
        return Err(crate::Error::invalid(
            "component KCVs",
            "give one (possibly empty) KCV per component",
        ));
    }
    let parts: Vec<(&[u8], Option<&Kcv>)> = components
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, component_kcvs.get(i).and_then(|k| k.as_ref())))
        .collect();
    let key = crate::combine_components(spec.algorithm, &parts)?;
    if key.len() != spec.len {
        return Err(crate::Error::invalid(
            "components",
            format!(
                "{} bytes each, the key spec asks for {}",
                key.len(),
                spec.len
            ),
        ));
    }
    if let Some(expected) = expected_kcv {
        expected.check(&key.kcv(), "the key formed from the components")?;
    }
    Ok(key)
}
