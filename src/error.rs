//! The one error type of pmp-core.
//!
//! Cryptographic failures that an attacker could probe (a bad MAC, bad padding, a malformed
//! PIN block after decryption, a wrong key) are reported as the single opaque
//! [`Error::Crypto`] variant, so that no padding or format oracle is built by accident.
//! Every other variant names what is wrong, never the secret value itself.

/// The result type of pmp-core.
pub type Result<T> = core::result::Result<T, Error>;

/// Everything that can go wrong in pmp-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cryptographic check failed (MAC, padding, key block integrity, PIN block after
    /// decryption, wrong key). Deliberately opaque.
    #[error("cryptographic verification failed")]
    Crypto,

    /// A key has a length its algorithm does not allow.
    #[error("invalid key length for {algorithm}: {len} bytes (allowed: {allowed})")]
    KeyLength {
        /// The algorithm the key was meant for.
        algorithm: &'static str,
        /// The length that was given.
        len: usize,
        /// The lengths that are allowed.
        allowed: &'static str,
    },

    /// A key was refused by key hygiene rules (parity, weak key, degenerate TDES key).
    #[error("key refused: {0}")]
    WeakKey(&'static str),

    /// A key check value did not match the expected one.
    #[error("KCV mismatch for {what}: expected {expected}, got {actual}")]
    KcvMismatch {
        /// What was checked (for example "component 2" or "resulting key").
        what: String,
        /// The expected KCV (hex). A KCV is not secret.
        expected: String,
        /// The computed KCV (hex).
        actual: String,
    },

    /// An input was malformed; the message names the field and the rule it breaks, never
    /// the value when the value is secret.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, parameter or element at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The operation is not allowed by policy (key usage, mode of use, export rules...).
    #[error("refused by policy: {0}")]
    Policy(String),

    /// The operation or algorithm is not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// An output buffer was too small.
    #[error("output buffer too small: {needed} bytes needed, {got} given")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes provided.
        got: usize,
    },

    /// A key, label or record was not found.
    #[error("not found: {0}")]
    NotFound(String),

    /// A label is already in use.
    #[error("already exists: {0}")]
    AlreadyExists(String),

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// Stored data (key store, audit log) failed its integrity check or is malformed.
    #[error("integrity failure in {what}: {reason}")]
    Integrity {
        /// What was being checked (a file and, where known, a line).
        what: String,
        /// What is wrong.
        reason: String,
    },

    /// The operating system's random number generator failed.
    #[error("random number generator failure")]
    Rng,

    /// The HSM could not be reached, or the session with it was lost and could not be
    /// re-established (a device, token or session failure of a PKCS#11 module). Distinct
    /// from policy and cryptographic failures: the same call may succeed when retried
    /// ([`Error::is_retryable`]). A key-creating call that failed this way may have taken
    /// effect (a retry may then find its label in use).
    #[error("HSM unavailable: {0}")]
    Transport(String),
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Whether the failure is transient (the HSM was unreachable): [`Error::Transport`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transport(_))
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
