//! The policy matrix: every operation × key usage × mode of use.

use super::{Made, Suite};
use crate::hsm::policy::Operation;
use crate::hsm::{Capability, CipherSpec, KeyHandle, KeySpec, PinSpec};
use crate::keyblock::{self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use crate::pinblock::{self, Pan, Pin, PinBlockFormat};
use crate::{Algorithm, Error, MacAlgorithm, Padding, SecretKey};

/// The cells of operation × usage × mode of use that must succeed, written by hand from
/// the rules of the key hierarchy (a PIN key never decrypts data, a data key never wraps
/// keys, a MAC-verify key never generates) and the table in the doc comment of `policy.rs`,
/// independent of [`policy::permits`](crate::hsm::policy::permits), which is the code under
/// test: a wrong row there must fail this suite, not be copied into it. Each row: an
/// operation, the usages and the modes of use allowed for it (every usage with every mode
/// of the row).
const ALLOWED: &[(Operation, &[KeyUsage], &[ModeOfUse])] = {
    use KeyUsage::{D0, E0, E1, E2, K0, K1, M0, M1, M3, M5, M6, P0};
    use MacAlgorithm::{CbcAes, CbcTdes, CmacAes, CmacTdes, Retail};
    use ModeOfUse::{B, C, D, E, G, V, X};
    use Operation::{
        Decrypt, DeriveIccKey, Encrypt, MacGenerate, MacVerify, PinDecrypt, PinEncrypt, Unwrap,
        Wrap,
    };
    &[
        (Encrypt, &[D0], &[B, E]),
        (Decrypt, &[D0], &[B, D]),
        (PinDecrypt, &[P0], &[B, D]),
        (PinEncrypt, &[P0], &[B, E]),
        (MacGenerate(Retail), &[M3], &[C, G]),
        (MacGenerate(CbcTdes), &[M0, M1], &[C, G]),
        (MacGenerate(CbcAes), &[M1], &[C, G]),
        (MacGenerate(CmacTdes), &[M5, M6], &[C, G]),
        (MacGenerate(CmacAes), &[M5, M6], &[C, G]),
        (MacVerify(Retail), &[M3], &[C, V]),
        (MacVerify(CbcTdes), &[M0, M1], &[C, V]),
        (MacVerify(CbcAes), &[M1], &[C, V]),
        (MacVerify(CmacTdes), &[M5, M6], &[C, V]),
        (MacVerify(CmacAes), &[M5, M6], &[C, V]),
        (Wrap, &[K0, K1], &[B, E]),
        (Unwrap, &[K0, K1], &[B, D]),
        (DeriveIccKey, &[E0, E1, E2], &[X]),
    ]
};

/// Whether [`ALLOWED`] allows the cell.
fn expected_allowed(op: Operation, usage: KeyUsage, mode: ModeOfUse) -> bool {
    ALLOWED
        .iter()
        .any(|(o, u, m)| *o == op && u.contains(&usage) && m.contains(&mode))
}

/// What the backend must offer for the suite to walk the column of `op`.
fn needs(op: Operation) -> Vec<Capability> {
    match op {
        Operation::Encrypt | Operation::Decrypt => vec![],
        Operation::PinDecrypt | Operation::PinEncrypt => vec![
            Capability::KeyAlgorithm(Algorithm::Tdes),
            Capability::PinFormat(PinBlockFormat::Iso0),
        ],
        Operation::MacGenerate(a) | Operation::MacVerify(a) => vec![Capability::Mac(a)],
        // The cells' KEKs are AES-256: blocks of version D.
        Operation::Wrap => vec![Capability::ExportKeyBlock(Version::D)],
        Operation::Unwrap => vec![Capability::ImportKeyBlock(Version::D)],
        // TDES IMKs, an AES KTK.
        Operation::DeriveIccKey => vec![
            Capability::IccKeyDerivation,
            Capability::KeyAlgorithm(Algorithm::Tdes),
            Capability::KeyAlgorithm(Algorithm::Aes),
        ],
    }
}

/// The result of one cell: `None` when the key could not be created with that usage and
/// mode, else the operation's result and whether its input was valid for the key.
type CellResult = Option<(crate::Result<()>, bool)>;

/// Walks operation × usage × mode of use: exactly the cells of [`ALLOWED`] succeed; every
/// other cell is refused with [`Error::Policy`] (or the key cannot even be created with
/// that usage and mode). Then checks the rules of the key hierarchy one by one.
///
/// An allowed cell whose input the suite cannot make valid for the cell's key (no known
/// keys: a PIN block under a generated PIN key, a tag for a verify-only key, a block for an
/// unwrap-only KEK) must not be refused by policy: the operation reaches the cryptography,
/// which refuses the input with the opaque [`Error::Crypto`]. The report counts those cells.
pub(super) fn usage_matrix(s: &mut Suite<'_>) {
    use KeyUsage as U;
    use ModeOfUse as M;
    let usages = [
        U::D0,
        U::P0,
        U::K0,
        U::K1,
        U::M0,
        U::M1,
        U::M3,
        U::M5,
        U::M6,
        U::B0,
        U::E0,
        U::E1,
        U::E2,
    ];
    let modes = [M::B, M::C, M::D, M::E, M::G, M::N, M::S, M::V, M::X];
    // The table names each operation once, and only the usages and modes walked here.
    for op in Operation::ALL {
        assert_eq!(
            ALLOWED.iter().filter(|(o, _, _)| *o == op).count(),
            1,
            "{op:?} in ALLOWED"
        );
    }
    assert!(ALLOWED.iter().all(|(_, us, ms)| {
        us.iter().all(|u| usages.contains(u)) && ms.iter().all(|m| modes.contains(m))
    }));

    let ops: Vec<Operation> = Operation::ALL
        .into_iter()
        .filter(|op| s.can_run(format!("policy-matrix/{op:?}"), &needs(*op)))
        .collect();
    let whole = ops.len() == Operation::ALL.len();
    let mut m = Matrix::new(s, &ops);
    let refused = |r: &CellResult| matches!(r, None | Some((Err(Error::Policy(_)), _)));

    let mut allowed = 0;
    for usage in usages {
        for mode in modes {
            for &op in &ops {
                let want = expected_allowed(op, usage, mode);
                let r = m.cell(usage, mode, op);
                if want {
                    allowed += 1;
                    m.assert_allowed(&r, || format!("{op:?} with {usage} / {mode:?}"));
                } else {
                    assert!(
                        refused(&r),
                        "{op:?} with {usage} / {mode:?} should be refused by policy: {r:?}"
                    );
                }
            }
        }
    }
    if whole {
        // Encrypt, decrypt, PIN decipher, PIN encipher: 1 usage x 2 modes each; wrap,
        // unwrap: 2 usages x 2 modes each; MAC generate and verify: (1 + 2 + 1 + 2 + 2)
        // usages over the five algorithms x 2 modes each; ICC key derivation: 3 usages x
        // mode X.
        assert_eq!(allowed, 4 * 2 + 2 * 4 + 2 * 8 * 2 + 3);
    }
    let unchecked = m.policy_only;

    // The rules, each on its own.
    let has = |op: Operation| ops.contains(&op);
    for mode in modes {
        // A PIN key never decrypts data (nor encrypts it).
        assert!(
            refused(&m.cell(U::P0, mode, Operation::Decrypt)),
            "a P0 / {mode:?} key decrypted data"
        );
        assert!(
            refused(&m.cell(U::P0, mode, Operation::Encrypt)),
            "a P0 / {mode:?} key encrypted data"
        );
        // A data key never wraps (nor unwraps) keys.
        for op in [Operation::Wrap, Operation::Unwrap] {
            if has(op) {
                assert!(
                    refused(&m.cell(U::D0, mode, op)),
                    "a D0 / {mode:?} key took part in {op:?}"
                );
            }
        }
    }
    // A MAC-verify (mode V) key never generates, whatever its usage and algorithm, and it
    // does verify (so the refusals above are not a key that cannot work at all).
    for usage in [U::M0, U::M1, U::M3, U::M5, U::M6] {
        for alg in [
            MacAlgorithm::Retail,
            MacAlgorithm::CbcTdes,
            MacAlgorithm::CbcAes,
            MacAlgorithm::CmacTdes,
            MacAlgorithm::CmacAes,
        ] {
            if has(Operation::MacGenerate(alg)) {
                assert!(
                    refused(&m.cell(usage, M::V, Operation::MacGenerate(alg))),
                    "a {usage} / V key generated a {alg:?} MAC"
                );
            }
        }
    }
    for (usage, alg) in [
        (U::M6, MacAlgorithm::CmacAes),
        (U::M3, MacAlgorithm::Retail),
    ] {
        let op = Operation::MacVerify(alg);
        if has(op) {
            let r = m.cell(usage, M::V, op);
            m.assert_allowed(&r, || format!("{op:?} with {usage} / V"));
        }
    }

    m.clean_up();
    s.ran("policy-matrix");
    let check = "policy-matrix.success-with-valid-input";
    match (unchecked, s.known.as_ref().err().copied()) {
        (0, _) => s.ran(check),
        (n, Some(missing)) => s.skip(
            check,
            missing,
            &format!(
                "{n} allowed cells (PIN translation, MAC verify with a verify-only key, unwrap \
                 with an unwrap-only KEK) were checked only for not being refused by policy, \
                 as their valid input needs a key whose clear value the suite knows"
            ),
        ),
        (n, None) => panic!("{n} allowed cells had no valid input although the keys are known"),
    }
}

/// The partners and counters of one walk of the matrix.
struct Matrix<'s, 'a> {
    s: &'s Suite<'a>,
    pan: Pan,
    pin: Pin,
    /// A TDES PIN key for the other side of a PIN translation.
    pin_partner: Option<Made>,
    /// An exportable AES key for wrap and unwrap.
    exportable: Option<KeyHandle>,
    /// IMK-AC, IMK-SMI, IMK-SMC (TDES, mode X) and an AES KTK for ICC key derivation.
    emv: Option<([KeyHandle; 3], KeyHandle)>,
    n: u32,
    /// Allowed cells checked only for not being refused by policy.
    policy_only: u32,
}

impl<'s, 'a> Matrix<'s, 'a> {
    fn new(s: &'s Suite<'a>, ops: &[Operation]) -> Self {
        let pin_ops = ops.contains(&Operation::PinDecrypt) || ops.contains(&Operation::PinEncrypt);
        let key_ops = ops.contains(&Operation::Wrap) || ops.contains(&Operation::Unwrap);
        let pin_partner = pin_ops.then(|| {
            s.make(&KeySpec::new(
                &s.label("mx-pp"),
                Algorithm::Tdes,
                16,
                KeyUsage::P0,
                ModeOfUse::B,
            ))
            .expect("PIN partner")
        });
        let exportable = key_ops.then(|| {
            s.generate(
                &KeySpec::new(
                    &s.label("mx-ex"),
                    Algorithm::Aes,
                    16,
                    KeyUsage::D0,
                    ModeOfUse::B,
                )
                .exportable(),
            )
            .expect("exportable partner")
            .handle
        });
        let emv = ops.contains(&Operation::DeriveIccKey).then(|| {
            let imk = |n: &str, usage| {
                s.generate(&KeySpec::new(
                    &s.label(n),
                    Algorithm::Tdes,
                    16,
                    usage,
                    ModeOfUse::X,
                ))
                .expect("IMK partner")
                .handle
            };
            let ktk = s
                .generate(&KeySpec::new(
                    &s.label("mx-ktk"),
                    Algorithm::Aes,
                    32,
                    KeyUsage::K0,
                    ModeOfUse::B,
                ))
                .expect("KTK partner")
                .handle;
            (
                [
                    imk("mx-ac", KeyUsage::E0),
                    imk("mx-smi", KeyUsage::E2),
                    imk("mx-smc", KeyUsage::E1),
                ],
                ktk,
            )
        });
        Self {
            s,
            emv,
            pan: Pan::new("4111111111111111").expect("pan"),
            pin: Pin::new("987654").expect("pin"),
            pin_partner,
            exportable,
            n: 0,
            policy_only: 0,
        }
    }

    /// An allowed cell succeeds; without valid input it is at least not refused by policy
    /// (the opaque error, or — for input the backend cannot check at all, such as a
    /// truncated tag under a verify-only key on a token that verifies full tags only —
    /// `Unsupported`).
    fn assert_allowed(&mut self, r: &CellResult, what: impl Fn() -> String) {
        match r {
            Some((Ok(()), _)) => {}
            Some((Err(Error::Crypto | Error::Unsupported(_)), false)) => self.policy_only += 1,
            _ => panic!("{} should succeed: {r:?}", what()),
        }
    }

    /// Creates a key with `usage` and `mode` (algorithm and length as `op` needs), runs
    /// `op` with it, and deletes it.
    fn cell(&mut self, usage: KeyUsage, mode: ModeOfUse, op: Operation) -> CellResult {
        let (alg, len) = match op {
            Operation::MacGenerate(a) | Operation::MacVerify(a) => (a.key_algorithm(), 16),
            Operation::PinDecrypt | Operation::PinEncrypt => (Algorithm::Tdes, 16),
            Operation::Wrap | Operation::Unwrap => (Algorithm::Aes, 32),
            Operation::DeriveIccKey => (Algorithm::Tdes, 16),
            _ => (Algorithm::Aes, 16),
        };
        self.n += 1;
        let label = self.s.label(&format!("mx-{}", self.n));
        let key = self
            .s
            .make(&KeySpec::new(&label, alg, len, usage, mode))
            .ok()?;
        let r = self.attempt(op, &key, &label);
        self.s.hsm.delete_key(&key.handle).expect("delete");
        Some(r)
    }

    /// Runs `op` with `key`; returns the result and whether the input was valid for `key`.
    fn attempt(&self, op: Operation, key: &Made, label: &str) -> (crate::Result<()>, bool) {
        let hsm = self.s.hsm;
        let h = &key.handle;
        let mut out = [0u8; 64];
        let pin_spec = |key| PinSpec {
            key,
            format: PinBlockFormat::Iso0,
        };
        match op {
            Operation::Encrypt => (
                hsm.encrypt(&CipherSpec::ecb(h, Padding::None), &[0u8; 16], &mut out)
                    .map(drop),
                true,
            ),
            Operation::Decrypt => (
                hsm.decrypt(&CipherSpec::ecb(h, Padding::None), &[0u8; 16], &mut out)
                    .map(drop),
                true,
            ),
            Operation::PinDecrypt => {
                let partner = self.pin_partner.as_ref().expect("PIN partner");
                let (block, valid) = self.pin_block(key.clear.as_ref());
                let r =
                    hsm.translate_pin(&pin_spec(h), &pin_spec(&partner.handle), &self.pan, &block);
                (r.map(drop), valid)
            }
            Operation::PinEncrypt => {
                let partner = self.pin_partner.as_ref().expect("PIN partner");
                let (block, valid) = self.pin_block(partner.clear.as_ref());
                let r =
                    hsm.translate_pin(&pin_spec(&partner.handle), &pin_spec(h), &self.pan, &block);
                (r.map(drop), valid)
            }
            Operation::MacGenerate(alg) => (
                hsm.generate_mac(h, alg, Padding::Iso9797M1, b"data")
                    .map(drop),
                true,
            ),
            Operation::MacVerify(alg) => {
                // The tag: from the host under the known key, else from the HSM itself
                // (a key that may also generate), else one that cannot verify.
                let tag = match &key.clear {
                    Some(k) => crate::primitives::mac::mac(alg, k, Padding::Iso9797M1, b"data")
                        .map(|t| t.as_bytes().to_vec())
                        .ok(),
                    None => hsm
                        .generate_mac(h, alg, Padding::Iso9797M1, b"data")
                        .map(|t| t.as_bytes().to_vec())
                        .ok(),
                };
                let valid = tag.is_some();
                let tag = tag.unwrap_or_else(|| vec![0u8; 8]);
                (
                    hsm.verify_mac(h, alg, Padding::Iso9797M1, b"data", &tag),
                    valid,
                )
            }
            Operation::Wrap => {
                let ex = self.exportable.as_ref().expect("exportable partner");
                (hsm.export_key_block(ex, h).map(drop), true)
            }
            Operation::Unwrap => {
                let (block, valid) = self.key_block(key);
                let r = hsm
                    .import_key_block(&format!("{label}-imp"), h, &block)
                    .and_then(|info| hsm.delete_key(&info.handle));
                (r, valid)
            }
            Operation::DeriveIccKey => {
                // The cell's key in the slot of its usage (E0 AC, E2 SMI, E1 SMC; any other
                // usage in the AC slot), partners in the others.
                let (imks, ktk) = self.emv.as_ref().expect("EMV partners");
                let slot = match hsm.key_info(h).map(|i| i.spec.usage) {
                    Ok(KeyUsage::E2) => 1,
                    Ok(KeyUsage::E1) => 2,
                    _ => 0,
                };
                let mut set = [&imks[0], &imks[1], &imks[2]];
                set[slot] = h;
                let r = hsm.derive_icc_master_keys(&crate::hsm::emv::IccKeyRequest {
                    imks: set,
                    derivation: crate::hsm::emv::IccDerivation::Auto,
                    pan: &self.pan,
                    psn: crate::hsm::emv::Psn::new(0).expect("psn"),
                    ktk,
                });
                (r.map(drop), true)
            }
        }
    }

    /// A format-0 PIN block encrypted under `key` when it is known, else under a random
    /// key (not valid for the HSM's key).
    fn pin_block(&self, key: Option<&SecretKey>) -> (Vec<u8>, bool) {
        let mut b =
            pinblock::encode(PinBlockFormat::Iso0, &self.pin, Some(&self.pan)).expect("encode");
        let random = SecretKey::generate(Algorithm::Tdes, 16).expect("random key");
        key.unwrap_or(&random)
            .cipher()
            .encrypt_ecb(&mut b[..])
            .expect("host encrypt");
        (b.to_vec(), key.is_some())
    }

    /// A key block under KEK `key`: made on the host when `key` is known, else exported by
    /// the HSM under it (a KEK that may also wrap), else made under a random key (not valid
    /// for the HSM's key).
    fn key_block(&self, key: &Made) -> (String, bool) {
        let wrap = |kek: &SecretKey| {
            let header = Header::new(
                Version::D,
                KeyUsage::D0,
                KeyAlgorithm::Aes,
                ModeOfUse::B,
                Exportability::N,
            );
            let k = SecretKey::generate(Algorithm::Aes, 16).expect("random key");
            keyblock::wrap(kek, &header, &k, None).expect("host wrap")
        };
        if let Some(kek) = &key.clear {
            return (wrap(kek), true);
        }
        let ex = self.exportable.as_ref().expect("exportable partner");
        match self.s.hsm.export_key_block(ex, &key.handle) {
            Ok(block) => (block, true),
            Err(_) => (
                wrap(&SecretKey::generate(Algorithm::Aes, 32).expect("random KEK")),
                false,
            ),
        }
    }

    fn clean_up(self) {
        let hsm = self.s.hsm;
        if let Some(p) = self.pin_partner {
            hsm.delete_key(&p.handle).expect("delete");
        }
        if let Some(e) = self.exportable {
            hsm.delete_key(&e).expect("delete");
        }
        if let Some((imks, ktk)) = self.emv {
            for h in imks.iter().chain([&ktk]) {
                hsm.delete_key(h).expect("delete");
            }
        }
    }
}
