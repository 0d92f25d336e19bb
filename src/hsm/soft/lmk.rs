//! The software HSM's local master key (LMK): where it comes from and how a store records it.
//!
//! - **Production**: formed from 2 or 3 AES-256 components (XOR) with their KCVs at a key
//!   ceremony. It is never written to disk: each process that opens the store receives the
//!   components again — through the API ([`LmkSource::Components`]) or, for the CLI, the
//!   environment variable [`LMK_ENV`] (comma-separated hex components, which the operator's
//!   wrapper sets from the custodians' smart cards or a secrets manager; the variable is read
//!   once and pmp's copy wiped; the process environment itself still holds it, so the wrapper
//!   should set it for the one process only). A wrong component set is refused by the KCV
//!   recorded in `store.meta`.
//! - **TEST**: generated at `init` and kept in clear in `DIR/lmk.test` (mode 0600) for
//!   development only.
//!
//! `DIR/store.meta` records the store format, the store's random id (bound into every key
//! block and the manifest), the LMK's kind (TEST or PRODUCTION) and its KCV — never the LMK.
//! A store of the first format (`pmp-softhsm-1`: no manifest, store id or key origins) is
//! refused on open with a message saying how to move its keys.

use std::fs;
use std::path::Path;

use zeroize::Zeroizing;

use super::store::write_atomic;
use crate::{Algorithm, Error, Kcv, Result, SecretKey};

const META: &str = "store.meta";
const TEST_LMK: &str = "lmk.test";
const FORMAT: &str = "pmp-softhsm-2";
/// The first store format (no manifest, no store id, no key origins): refused on open.
const FORMAT_1: &str = "pmp-softhsm-1";

/// Environment variable through which the CLI receives production LMK components.
pub const LMK_ENV: &str = "PMP_LMK_COMPONENTS";

/// LMK components: clear AES-256 components, each with an optional KCV.
pub type LmkComponents = Vec<LmkComponent>;

/// One clear LMK component with its optional KCV. Zeroized on drop; `Debug` shows only the
/// KCV.
#[derive(Clone)]
pub struct LmkComponent {
    bytes: Zeroizing<Vec<u8>>,
    kcv: Option<Kcv>,
}

impl LmkComponent {
    /// A component (its bytes are copied) and the KCV its custodian read out, if any.
    pub fn new(bytes: &[u8], kcv: Option<Kcv>) -> Self {
        Self {
            bytes: Zeroizing::new(bytes.to_vec()),
            kcv,
        }
    }

    /// The KCV given with the component.
    pub fn kcv(&self) -> Option<&Kcv> {
        self.kcv.as_ref()
    }

    /// The component bytes (for the C API's `pmp_key_form`, which reads its components
    /// through the same type).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl core::fmt::Debug for LmkComponent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LmkComponent")
            .field("kcv", &self.kcv)
            .finish_non_exhaustive()
    }
}

/// Where the LMK comes from.
#[derive(Clone)]
pub enum LmkSource {
    /// The store's TEST LMK (`init` generates it; `open` reads `DIR/lmk.test`).
    Test,
    /// A production LMK from 2 or 3 clear AES-256 components, each with an optional KCV.
    Components(LmkComponents),
    /// Whatever the store is: TEST stores use their TEST LMK, production stores read the
    /// components from the environment variable `PMP_LMK_COMPONENTS`.
    Auto,
}

impl core::fmt::Debug for LmkSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LmkSource::Test => f.write_str("LmkSource::Test"),
            LmkSource::Components(c) => write!(f, "LmkSource::Components({} components)", c.len()),
            LmkSource::Auto => f.write_str("LmkSource::Auto"),
        }
    }
}

/// The kind of a store's LMK, as `store.meta` and every audit entry name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LmkKind {
    /// A generated development LMK kept in clear in `DIR/lmk.test`.
    Test,
    /// An LMK formed from components at a key ceremony, never on disk.
    Production,
}

impl LmkKind {
    /// `TEST` or `PRODUCTION`.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            LmkKind::Test => "TEST",
            LmkKind::Production => "PRODUCTION",
        }
    }
}

fn from_components(components: &[LmkComponent]) -> Result<SecretKey> {
    let parts: Vec<(&[u8], Option<&Kcv>)> = components
        .iter()
        .map(|c| (c.bytes.as_slice(), c.kcv.as_ref()))
        .collect();
    let lmk = crate::combine_components(Algorithm::Aes, &parts)?;
    if lmk.len() != 32 {
        return Err(Error::invalid(
            "LMK components",
            format!(
                "the LMK is AES-256: components must be 32 bytes, not {}",
                lmk.len()
            ),
        ));
    }
    Ok(lmk)
}

fn components_from_env() -> Result<LmkComponents> {
    let raw = Zeroizing::new(std::env::var(LMK_ENV).map_err(|_| {
        Error::Policy(format!(
            "this key store has a production LMK: set {LMK_ENV} to its comma-separated hex components"
        ))
    })?);
    raw.split(',')
        .enumerate()
        .map(|(i, c)| {
            hex::decode(c.trim())
                .map(|v| LmkComponent::new(&Zeroizing::new(v), None))
                .map_err(|_| {
                    Error::invalid(
                        "LMK component",
                        format!("component {} in {LMK_ENV} is not hex", i + 1),
                    )
                })
        })
        .collect()
}

/// What `store.meta` records: the store id, the LMK's kind and KCV.
pub(super) struct Meta {
    pub(super) kind: LmkKind,
    pub(super) kcv: Kcv,
    /// 16 random bytes in hex, drawn at `init`.
    pub(super) store_id: String,
}

impl Meta {
    /// Whether a store description exists in `dir`.
    pub(super) fn exists(dir: &Path) -> bool {
        dir.join(META).exists()
    }

    /// Reads `DIR/store.meta`.
    pub(super) fn read(dir: &Path) -> Result<Meta> {
        let path = dir.join(META);
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut kind = None;
        let mut kcv = None;
        let mut format_ok = false;
        let mut store_id = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("format", FORMAT)) => format_ok = true,
                Some(("format", FORMAT_1)) => {
                    return Err(Error::Unsupported(format!(
                        "key store {} has the first store format ({FORMAT_1}: no manifest, store id \
                         or key origins); create a new store with `pmp keystore init` and move \
                         the keys into it by export and import under a KEK",
                        dir.display()
                    )));
                }
                Some(("store_id", v))
                    if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    store_id = Some(v.to_string())
                }
                Some(("lmk", "TEST")) => kind = Some(LmkKind::Test),
                Some(("lmk", "PRODUCTION")) => kind = Some(LmkKind::Production),
                Some(("lmk_kcv", v)) => kcv = Some(Kcv::from_hex(v)?),
                _ => {}
            }
        }
        match (format_ok, kind, kcv, store_id) {
            (true, Some(kind), Some(kcv), Some(store_id)) => Ok(Meta {
                kind,
                kcv,
                store_id,
            }),
            _ => Err(Error::Integrity {
                what: path.display().to_string(),
                reason: format!("not a {FORMAT} store description"),
            }),
        }
    }

    /// Writes `DIR/store.meta` atomically.
    fn write(&self, dir: &Path) -> Result<()> {
        let text = format!(
            "format={FORMAT}\nstore_id={}\nlmk={}\nlmk_kcv={}\n",
            self.store_id,
            self.kind.as_str(),
            self.kcv
        );
        write_atomic(&dir.join(META), text.as_bytes(), false)
    }

    /// Checks `lmk` against the recorded KCV.
    pub(super) fn check(&self, lmk: &SecretKey) -> Result<()> {
        self.kcv.check(&lmk.kcv(), "LMK (against store.meta)")
    }
}

/// Makes the LMK of a new store in `dir` and records it in `store.meta`: `Test` generates a
/// TEST LMK and writes it to `DIR/lmk.test`; `Components` and `Auto` form a production LMK
/// (from the given components, or from [`LMK_ENV`]).
pub(super) fn create(dir: &Path, source: LmkSource) -> Result<(SecretKey, Meta)> {
    let (lmk, kind) = match source {
        LmkSource::Test => {
            let k = SecretKey::generate(Algorithm::Aes, 32)?;
            let hex_text = Zeroizing::new(hex::encode_upper(k.expose_secret()) + "\n");
            write_atomic(&dir.join(TEST_LMK), hex_text.as_bytes(), true)?;
            (k, LmkKind::Test)
        }
        LmkSource::Components(c) => (from_components(&c)?, LmkKind::Production),
        LmkSource::Auto => (
            from_components(&components_from_env()?)?,
            LmkKind::Production,
        ),
    };
    let mut id = [0u8; 16];
    crate::fill_random(&mut id)?;
    let meta = Meta {
        kind,
        kcv: lmk.kcv(),
        store_id: hex::encode_upper(id),
    };
    meta.write(dir)?;
    Ok((lmk, meta))
}

/// Loads the LMK of the store in `dir` and checks it against the KCV in `store.meta`.
pub(super) fn load(dir: &Path, source: LmkSource) -> Result<SecretKey> {
    let meta = Meta::read(dir)?;
    let lmk = match (source, meta.kind) {
        (LmkSource::Test | LmkSource::Auto, LmkKind::Test) => {
            let path = dir.join(TEST_LMK);
            let hex_text =
                Zeroizing::new(fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?);
            SecretKey::from_hex(Algorithm::Aes, &hex_text)?
        }
        (LmkSource::Test, LmkKind::Production) => {
            return Err(Error::Policy(
                "this key store has a production LMK, not a TEST LMK".into(),
            ));
        }
        (LmkSource::Components(c), _) => from_components(&c)?,
        (LmkSource::Auto, LmkKind::Production) => from_components(&components_from_env()?)?,
    };
    meta.check(&lmk)?;
    Ok(lmk)
}
