//! What a backend can do, as a set that callers query before they start.
//!
//! A backend answers [`Hsm::capabilities`](super::Hsm::capabilities) with a [`Capabilities`]:
//! its name, whether its master key is a TEST key, its batch limit, and a set of
//! [`Capability`] values. Callers ask [`Capabilities::supports`] or, to refuse up front with a
//! message that names what is missing, [`Capabilities::require`]:
//!
//! ```
//! use pmp_core::hsm::{Capabilities, Capability};
//! use pmp_core::keyblock::Version;
//! let caps = Capabilities::new("example")
//!     .with(Capability::ImportKeyBlock(Version::D))
//!     .with(Capability::FormFromComponents);
//! assert!(caps.supports(Capability::ImportKeyBlock(Version::D)));
//! let err = caps.require(Capability::TranslateInDevice).unwrap_err();
//! assert!(err.to_string().contains("translation inside the device"));
//! ```

use core::fmt;

use crate::keyblock::Version;
use crate::pinblock::PinBlockFormat;
use crate::{Algorithm, Error, MacAlgorithm, Result};

/// One thing a backend can do. New kinds are added over time (`#[non_exhaustive]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// Stores and uses keys of this algorithm.
    KeyAlgorithm(Algorithm),
    /// Imports TR-31 / X9.143 key blocks of this version under a key-encryption key.
    ImportKeyBlock(Version),
    /// Exports TR-31 / X9.143 key blocks of this version under a key-encryption key.
    ExportKeyBlock(Version),
    /// Forms a key from 2–3 clear components (key ceremony).
    FormFromComponents,
    /// Translates data from one key to another with the clear text never leaving the
    /// device (cf. payShield M4).
    TranslateInDevice,
    /// Translates PIN blocks from and to this ISO 9564-1 format.
    PinFormat(PinBlockFormat),
    /// Generates and verifies MACs with this algorithm.
    Mac(MacAlgorithm),
    /// Computes key check values by this method.
    Kcv(KcvMethod),
    /// Enforces key usage and mode of use in the device itself, not only in host code.
    PolicyInDevice,
    /// Decrypts a whole issuer file and re-encrypts its attributes inside the HSM
    /// boundary. Without it the host decrypts into wiped buffers (a weaker boundary).
    InBoundaryFileImport,
    /// Key-block import and export run with the clear key in host memory (zeroizing
    /// buffers), because the device has no mechanism that keeps it inside; offered only
    /// when the operator allowed it. Without it such a backend refuses key-block exchange.
    HostKeyFallback,
    /// PIN blocks are translated with the clear PIN in host memory (zeroizing buffers): the
    /// device deciphers and enciphers the blocks, the host re-formats them.
    HostPinFallback,
    /// Data is translated with the clear text in host memory (zeroizing buffers): the device
    /// decrypts and encrypts, the host moves the padding. A backend without
    /// [`TranslateInDevice`](Self::TranslateInDevice) may offer it instead; the import
    /// accepts it and its summary says so.
    HostTranslateFallback,
    /// Derives EMV ICC master keys from issuer master keys and returns them only under a
    /// key transport key ([`Hsm::derive_icc_master_keys`](super::Hsm::derive_icc_master_keys)).
    IccKeyDerivation,
    /// Makes ISO 9564-1 format 2 PIN blocks for card loading under a PIN transport key
    /// ([`Hsm::translate_pin_for_card`](super::Hsm::translate_pin_for_card)).
    CardPin,
    /// Holds RSA key pairs (generated in the device), reads their public halves and signs
    /// EMV recovery-format messages with them.
    RsaKeys,
    /// Imports RSA private keys from X9.143 key blocks of algorithm `R`.
    RsaKeyBlockImport,
    /// Makes ICC RSA key pairs and returns their CRT parts only under a KTK.
    IccRsaKeys,
    /// Keeps a pool of ICC RSA key pairs generated ahead.
    IccKeyPool,
}

/// A key check value method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KcvMethod {
    /// TDES: the first 3 bytes of E(K, 0^8).
    TdesEncryptZeros,
    /// AES: the first 5 bytes of CMAC(K, 0^16) (X9.24-1:2017).
    AesCmac,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::KeyAlgorithm(a) => write!(f, "{a} keys"),
            Capability::ImportKeyBlock(v) => write!(f, "import of key blocks version {v:?}"),
            Capability::ExportKeyBlock(v) => write!(f, "export of key blocks version {v:?}"),
            Capability::FormFromComponents => f.write_str("forming keys from clear components"),
            Capability::TranslateInDevice => f.write_str("data translation inside the device"),
            Capability::PinFormat(p) => write!(f, "PIN block format {p:?}"),
            Capability::Mac(m) => write!(f, "MAC algorithm {m:?}"),
            Capability::Kcv(KcvMethod::TdesEncryptZeros) => f.write_str("TDES KCV E(K, 0)"),
            Capability::Kcv(KcvMethod::AesCmac) => f.write_str("AES KCV by CMAC"),
            Capability::PolicyInDevice => f.write_str("key usage enforced in the device"),
            Capability::InBoundaryFileImport => {
                f.write_str("whole-file import inside the HSM boundary")
            }
            Capability::HostKeyFallback => {
                f.write_str("key-block exchange through host memory (operator-allowed fallback)")
            }
            Capability::HostPinFallback => f.write_str("PIN translation through host memory"),
            Capability::HostTranslateFallback => {
                f.write_str("data translation through host memory")
            }
            Capability::IccKeyDerivation => f.write_str("EMV ICC master-key derivation"),
            Capability::CardPin => f.write_str("format 2 PIN blocks for card loading"),
            Capability::RsaKeys => f.write_str("RSA key pairs and EMV signatures"),
            Capability::RsaKeyBlockImport => f.write_str("import of RSA key blocks (algorithm R)"),
            Capability::IccRsaKeys => f.write_str("ICC RSA key pairs under a KTK"),
            Capability::IccKeyPool => f.write_str("a pool of ICC RSA key pairs"),
        }
    }
}

/// What a backend can do: its name, its limits and a set of [`Capability`] values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    backend: &'static str,
    set: Vec<Capability>,
    max_batch_items: usize,
    test_keys: bool,
}

impl Capabilities {
    /// An empty set for the backend named `backend`; no batch limit, not TEST.
    pub fn new(backend: &'static str) -> Self {
        Self {
            backend,
            set: Vec::new(),
            max_batch_items: usize::MAX,
            test_keys: false,
        }
    }

    /// The same set with `c` added.
    pub fn with(mut self, c: Capability) -> Self {
        if !self.set.contains(&c) {
            self.set.push(c);
        }
        self
    }

    /// The same set with every capability of `cs` added.
    pub fn with_all(self, cs: impl IntoIterator<Item = Capability>) -> Self {
        cs.into_iter().fold(self, Self::with)
    }

    /// The same set with `c` removed.
    pub fn without(mut self, c: Capability) -> Self {
        self.set.retain(|x| *x != c);
        self
    }

    /// The same set with a limit on the items of one batch call.
    pub fn with_max_batch_items(mut self, n: usize) -> Self {
        self.max_batch_items = n.max(1);
        self
    }

    /// The same set, marked as running on TEST keys (development only).
    pub fn with_test_keys(mut self, test: bool) -> Self {
        self.test_keys = test;
        self
    }

    /// A short name of the backend.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Whether the backend can do `c`.
    pub fn supports(&self, c: Capability) -> bool {
        self.set.contains(&c)
    }

    /// `Ok` when the backend can do `c`, else [`Error::Unsupported`] naming the backend and
    /// what it lacks.
    pub fn require(&self, c: Capability) -> Result<()> {
        if self.supports(c) {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "the {} backend does not offer {c}",
                self.backend
            )))
        }
    }

    /// Every capability, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = Capability> + '_ {
        self.set.iter().copied()
    }

    /// The most items one batch call takes.
    pub fn max_batch_items(&self) -> usize {
        self.max_batch_items
    }

    /// Whether the backend runs on TEST keys (a TEST LMK): development only.
    pub fn is_test(&self) -> bool {
        self.test_keys
    }
}
