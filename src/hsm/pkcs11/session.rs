//! The module, the token, the login and a pool of sessions.
//!
//! A PKCS#11 library is initialised once per process (`C_Initialize` with
//! `CKF_OS_LOCKING_OK`: SoftHSMv2 initialised without it disables its own locking and
//! crashes under threads), so contexts are shared per module path. A session is not
//! shareable between threads: each operation borrows one from the pool and gives it back.
//! The login belongs to the application, not to a session; one session stays open for the
//! life of the pool so that the login (and the process's view of the token) is kept.
//!
//! A lost session (closed or invalid handle, device or token gone, login lost) is
//! re-opened and logged in again, and the operation retried once; when that fails too the
//! caller gets the retryable [`Error::Transport`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::{Error, Result};

/// The most idle sessions kept; more are closed when given back.
const MAX_IDLE: usize = 64;

/// A failure inside an operation: a PKCS#11 return code (mapped, or retried when the
/// session was lost) or an error of pmp-core itself.
pub(super) enum Fail {
    Ck(CkError),
    Pmp(Error),
}

impl From<CkError> for Fail {
    fn from(e: CkError) -> Self {
        Fail::Ck(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Pmp(e)
    }
}

/// The result type of the closures run in a session.
pub(super) type CkResult<T> = core::result::Result<T, Fail>;

fn rv(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// Failures after which the session (or the login) is gone and a fresh one may succeed.
fn lost(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::CryptokiNotInitialized
        )
    )
}

/// Failures that may mean the login was lost (private objects are invisible without it).
fn maybe_logged_out(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid)
    )
}

/// Failures SoftHSMv2 2.6.1 gives for a key that is there and fit for the call while
/// another process reads the same token: its file object store then reads the object
/// transiently as empty (class unknown, usages false), so `C_*Init` answers
/// `CKR_MECHANISM_INVALID` or `CKR_KEY_FUNCTION_NOT_PERMITTED` for a key that worked a
/// moment before (seen with python-pkcs11 listing the token during the tests). Retried
/// once, after a pause; a genuine refusal answers the same the second time.
fn maybe_transient(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(
            RvError::MechanismInvalid
                | RvError::KeyTypeInconsistent
                | RvError::KeyFunctionNotPermitted
        )
    )
}

/// How long to wait before retrying a [`maybe_transient`] failure.
const TRANSIENT_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Fails as a lost login when `s` is not logged in as the user, so that [`Pool::run`]
/// logs in again and retries. For searches: without the login the token hides private
/// objects, and an empty result would be taken for an answer ("no such key").
pub(super) fn require_login(s: &Session) -> CkResult<()> {
    if Pool::logged_in(s) {
        Ok(())
    } else {
        Err(Fail::Ck(CkError::Pkcs11(
            RvError::UserNotLoggedIn,
            Function::FindObjectsInit,
        )))
    }
}

/// Maps a PKCS#11 failure to pmp-core's error. Return codes carry no secret.
pub(super) fn map(e: CkError) -> Error {
    let Some(code) = rv(&e) else {
        return Error::Transport(format!("PKCS#11: {e}"));
    };
    match code {
        RvError::SignatureInvalid
        | RvError::SignatureLenRange
        | RvError::EncryptedDataInvalid
        | RvError::EncryptedDataLenRange
        | RvError::WrappedKeyInvalid
        | RvError::WrappedKeyLenRange => Error::Crypto,
        RvError::KeyFunctionNotPermitted
        | RvError::KeyNotWrappable
        | RvError::KeyUnextractable
        | RvError::ActionProhibited => Error::Policy(format!("the token refused: {e}")),
        RvError::MechanismInvalid
        | RvError::MechanismParamInvalid
        | RvError::FunctionNotSupported
        | RvError::KeyTypeInconsistent => Error::Unsupported(format!("the token: {e}")),
        RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid => Error::NotFound(
            "the key object is no longer on the token (deleted by another process?)".into(),
        ),
        RvError::DataLenRange => Error::invalid("data length", format!("the token: {e}")),
        RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => {
            Error::Policy("the token refused the user PIN (PMP_PKCS11_PIN)".into())
        }
        RvError::PinLocked | RvError::PinExpired => {
            Error::Policy(format!("the token's user PIN cannot be used: {e}"))
        }
        _ => Error::Transport(format!("PKCS#11: {e}")),
    }
}

/// The process's initialised context for `module` (one per module path).
fn context(module: &Path) -> Result<Pkcs11> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(c) = contexts.get(module) {
        return Ok(c.clone());
    }
    if !module.exists() {
        return Err(Error::io(
            module,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let ctx = Pkcs11::new(module).map_err(|e| {
        Error::invalid(
            "PKCS#11 module",
            format!("{} cannot be loaded: {e}", module.display()),
        )
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(map(e)),
    }
    contexts.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// One lock per token for the process: key management (creating, destroying and listing
/// token objects) runs one call at a time. SoftHSMv2 2.6.1's file object store fails
/// intermittently (`CKR_GENERAL_ERROR`, attributes or handles of other objects invalid)
/// when several threads create or destroy token objects at once.
pub(super) fn management_lock(module: &Path, token: &str) -> std::sync::Arc<Mutex<()>> {
    type Locks = HashMap<(PathBuf, String), std::sync::Arc<Mutex<()>>>;
    static LOCKS: OnceLock<Mutex<Locks>> = OnceLock::new();
    LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((module.to_path_buf(), token.to_string()))
        .or_default()
        .clone()
}

/// What the token says about itself.
pub(super) struct TokenFacts {
    pub manufacturer: String,
    pub model: String,
}

/// Sessions on one token, logged in as the user.
pub(super) struct Pool {
    ctx: Pkcs11,
    slot: Slot,
    pin: AuthPin,
    idle: Mutex<Vec<Session>>,
    /// Kept open for the life of the pool: holds the login.
    anchor: Mutex<Option<Session>>,
    /// Counts the logins: object handles of private objects from before a login are stale.
    epoch: AtomicU64,
}

impl Pool {
    /// Loads `module`, finds the token labelled `token` and logs in with `pin`.
    pub fn open(module: &Path, token: &str, pin: &str) -> Result<(Self, TokenFacts)> {
        let ctx = context(module)?;
        let mut found = None;
        for slot in ctx.get_slots_with_initialized_token().map_err(map)? {
            let info = ctx.get_token_info(slot).map_err(map)?;
            if info.label().trim_end() == token {
                found = Some((slot, info));
                break;
            }
        }
        let (slot, info) = found.ok_or_else(|| {
            Error::NotFound(format!(
                "token '{token}' in PKCS#11 module {}",
                module.display()
            ))
        })?;
        let pool = Self {
            ctx,
            slot,
            pin: AuthPin::from(pin.to_string()),
            idle: Mutex::new(Vec::new()),
            anchor: Mutex::new(None),
            epoch: AtomicU64::new(0),
        };
        let anchor = pool.fresh()?;
        *pool.anchor.lock().unwrap_or_else(|p| p.into_inner()) = Some(anchor);
        let facts = TokenFacts {
            manufacturer: info.manufacturer_id().trim_end().to_string(),
            model: info.model().trim_end().to_string(),
        };
        Ok((pool, facts))
    }

    /// The number of logins so far.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The initialised context and the token's slot.
    pub fn context(&self) -> (&Pkcs11, Slot) {
        (&self.ctx, self.slot)
    }

    /// A new read-write session, logged in.
    fn fresh(&self) -> Result<Session> {
        let s = self.ctx.open_rw_session(self.slot).map_err(map)?;
        self.login(&s)?;
        Ok(s)
    }

    fn login(&self, s: &Session) -> Result<()> {
        match s.login(UserType::User, Some(&self.pin)) {
            Ok(()) => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(map(e)),
        }
    }

    fn take(&self) -> Result<Session> {
        let s = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match s {
            Some(s) => Ok(s),
            None => self.fresh(),
        }
    }

    fn give_back(&self, s: Session) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    /// Drops every idle session and the anchor; the next operation opens and logs in anew.
    fn reconnect(&self) -> Result<Session> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let mut anchor = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        *anchor = None;
        let fresh_anchor = self.fresh()?;
        *anchor = Some(fresh_anchor);
        drop(anchor);
        self.fresh()
    }

    /// Whether `s` is still logged in as the user.
    fn logged_in(s: &Session) -> bool {
        matches!(
            s.get_session_info().map(|i| i.session_state()),
            Ok(SessionState::RwUser | SessionState::RoUser)
        )
    }

    /// Runs `f` in a session of the pool. A lost session or login is re-established and
    /// `f` run once more; if that fails the same way the result is [`Error::Transport`].
    pub fn run<T>(&self, mut f: impl FnMut(&Session) -> CkResult<T>) -> Result<T> {
        let s = self.take()?;
        let e = match f(&s) {
            Ok(v) => {
                self.give_back(s);
                return Ok(v);
            }
            Err(Fail::Pmp(e)) => {
                self.give_back(s);
                return Err(e);
            }
            Err(Fail::Ck(e)) => e,
        };
        let retry = if lost(&e) {
            drop(s);
            self.reconnect()?
        } else if maybe_logged_out(&e) {
            // Private objects are invisible without the login; another thread may already
            // have logged in again, and SoftHSMv2 also drops object handles while another
            // thread changes its object store. Either way the handles are looked up again
            // (a new epoch) and the call retried once.
            if !Self::logged_in(&s) {
                self.login(&s)?;
            }
            self.epoch.fetch_add(1, Ordering::AcqRel);
            s
        } else if maybe_transient(&e) {
            std::thread::sleep(TRANSIENT_PAUSE);
            s
        } else {
            self.give_back(s);
            return Err(map(e));
        };
        match f(&retry) {
            Ok(v) => {
                self.give_back(retry);
                Ok(v)
            }
            Err(Fail::Pmp(e)) => {
                self.give_back(retry);
                Err(e)
            }
            Err(Fail::Ck(e)) if lost(&e) => Err(Error::Transport(format!(
                "the token session was lost and could not be re-established: {e}"
            ))),
            Err(Fail::Ck(e)) => {
                self.give_back(retry);
                Err(map(e))
            }
        }
    }

    /// Logs the application out of the token, as a device reset or an idle timeout of a
    /// network HSM does; the pooled sessions stay open, logged out.
    pub fn logout(&self) -> Result<()> {
        self.run(|s| match s.logout() {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Ok(()),
            Err(e) => Err(Fail::Pmp(map(e))),
        })
    }
}
