//! Per-key counters of successful data operations, written to the audit log as `usage`
//! summary entries (one line per call would cost more than the operation itself on the
//! import path).

use std::sync::atomic::{AtomicU64, Ordering};

/// A counted data operation: one counter per key and per value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Counted {
    /// Data encrypted under the key.
    Encrypt,
    /// Data decrypted under the key (a field or a whole file).
    Decrypt,
    /// The key was the source of a data translation.
    TranslateFrom,
    /// The key was the target of a data translation.
    TranslateTo,
    /// A PIN block was translated from the key.
    PinTranslate,
    /// A PIN block was translated to the key.
    PinTranslateTo,
    /// A MAC was generated or verified under the key.
    Mac,
    /// EMV ICC master keys were derived from the key (an IMK) or returned under it (the
    /// KTK).
    DeriveIcc,
    /// An EMV message was signed with the key (an RSA key pair).
    Sign,
    /// An ICC RSA key pair's CRT parts were returned under the key (the KTK).
    IccRsa,
}

impl Counted {
    /// Every counted operation, in the order the summaries are written.
    pub(super) const ALL: [Counted; 10] = [
        Counted::Encrypt,
        Counted::Decrypt,
        Counted::TranslateFrom,
        Counted::TranslateTo,
        Counted::PinTranslate,
        Counted::PinTranslateTo,
        Counted::Mac,
        Counted::DeriveIcc,
        Counted::Sign,
        Counted::IccRsa,
    ];

    /// The name in the audit log's `what=` field.
    pub(super) fn name(self) -> &'static str {
        match self {
            Counted::Encrypt => "encrypt",
            Counted::Decrypt => "decrypt",
            Counted::TranslateFrom => "translate-from",
            Counted::TranslateTo => "translate-to",
            Counted::PinTranslate => "pin-from",
            Counted::PinTranslateTo => "pin-to",
            Counted::Mac => "mac",
            Counted::DeriveIcc => "derive-icc",
            Counted::Sign => "rsa-sign",
            Counted::IccRsa => "icc-rsa",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One key's counters: how many of each operation succeeded, and how many of those are
/// already in the audit log.
#[derive(Debug, Default)]
pub(super) struct Usage {
    counts: [AtomicU64; Counted::ALL.len()],
    logged: [AtomicU64; Counted::ALL.len()],
}

impl Usage {
    /// Counts one successful `op`.
    pub(super) fn add(&self, op: Counted) {
        self.counts[op.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The operations counted since the last call, with how many of each, marked as logged.
    /// The caller serialises calls (one flush at a time), so nothing is reported twice.
    pub(super) fn take_unlogged(&self) -> impl Iterator<Item = (Counted, u64)> + '_ {
        Counted::ALL.into_iter().filter_map(|op| {
            let now = self.counts[op.index()].load(Ordering::Relaxed);
            let before = self.logged[op.index()].swap(now, Ordering::Relaxed);
            (now > before).then(|| (op, now - before))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_has_its_own_counter_and_is_reported_once() {
        let u = Usage::default();
        u.add(Counted::TranslateFrom);
        u.add(Counted::TranslateFrom);
        u.add(Counted::Mac);
        let got: Vec<_> = u.take_unlogged().collect();
        assert_eq!(got, vec![(Counted::TranslateFrom, 2), (Counted::Mac, 1)]);
        assert_eq!(u.take_unlogged().count(), 0, "already logged");
        u.add(Counted::Encrypt);
        let got: Vec<_> = u.take_unlogged().collect();
        assert_eq!(got, vec![(Counted::Encrypt, 1)]);
    }

    #[test]
    fn the_index_follows_the_declaration_order() {
        for (i, op) in Counted::ALL.into_iter().enumerate() {
            assert_eq!(op.index(), i, "{op:?}");
        }
    }
}
