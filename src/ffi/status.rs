//! `pmp_status`, the result of every fallible C API function, and its mapping from
//! [`Error`](crate::Error).

use crate::Error;

/// The result of a C API call.
///
/// Values are explicit and never reused: a value that is retired stays unassigned. They are
/// grouped by the hundred (caller errors, cryptographic and key errors, policy, environment)
/// with room left in each group. C code should treat an unknown value as a failure.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum pmp_status {
    /// Success. Outputs have been written.
    Ok = 0,

    /// A pointer argument that must not be NULL was NULL.
    NullArgument = 1,
    /// An argument was malformed or out of range (bad key length, unknown enum value, ...).
    InvalidArgument = 2,
    /// An output buffer was too small. `*out_written` holds the capacity needed; nothing else
    /// was written.
    BufferTooSmall = 3,

    /// A cryptographic check failed (MAC, padding, key block integrity, PIN block, wrong
    /// key). Deliberately opaque.
    CryptoFailure = 100,
    /// A key was refused by key hygiene rules (parity, weak key, degenerate TDES key).
    KeyRefused = 101,
    /// A key check value did not match the expected one.
    KcvMismatch = 102,
    /// The operating system's random number generator failed.
    RngFailure = 103,
    /// Stored data (key store, audit log) failed its integrity check or is malformed.
    IntegrityFailure = 104,

    /// The operation is refused by policy (key usage, mode of use, export rules...).
    Policy = 200,
    /// The operation or algorithm is not supported (by pmp-core or by the HSM backend).
    Unsupported = 201,

    /// A named object (key label, file...) was not found.
    NotFound = 300,
    /// An I/O error (file, device or network).
    Io = 301,
    /// A named object (key label...) already exists.
    AlreadyExists = 302,
    /// The HSM could not be reached or its session was lost (a device, token or session
    /// failure): transient, the same call may succeed when retried.
    HsmUnavailable = 303,

    /// A Rust panic was caught at the C API boundary: a bug in pmp-core. Please report it.
    Panic = 900,
}

impl From<&Error> for pmp_status {
    fn from(e: &Error) -> Self {
        // Inside this crate the match is exhaustive despite `#[non_exhaustive]`: a new
        // `Error` variant fails to compile here until it is given a status.
        match e {
            Error::Crypto => pmp_status::CryptoFailure,
            Error::KeyLength { .. } | Error::Invalid { .. } => pmp_status::InvalidArgument,
            Error::WeakKey(_) => pmp_status::KeyRefused,
            Error::KcvMismatch { .. } => pmp_status::KcvMismatch,
            Error::Policy(_) => pmp_status::Policy,
            Error::Unsupported(_) => pmp_status::Unsupported,
            Error::BufferTooSmall { .. } => pmp_status::BufferTooSmall,
            Error::Rng => pmp_status::RngFailure,
            Error::Integrity { .. } => pmp_status::IntegrityFailure,
            Error::NotFound(_) => pmp_status::NotFound,
            Error::Io { .. } => pmp_status::Io,
            Error::AlreadyExists(_) => pmp_status::AlreadyExists,
            Error::Transport(_) => pmp_status::HsmUnavailable,
        }
    }
}
