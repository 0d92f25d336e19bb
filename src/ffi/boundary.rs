//! The machinery every `pmp_*` entry point goes through: the panic boundary, the thread's
//! last error, and the checked conversion of C arguments (input byte strings, output
//! buffers).
//!
//! Nothing here is exported to C.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{CStr, c_char};
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};

use super::pmp_status;

/// Why a C API call failed: the status returned to C and the message kept as the thread's
/// last error. Messages never contain secrets (nor do [`Error`](crate::Error) messages).
#[derive(Debug)]
pub(super) struct FfiError {
    status: pmp_status,
    message: Cow<'static, str>,
}

/// The result of the body of an entry point.
pub(super) type FfiResult<T = ()> = Result<T, FfiError>;

impl FfiError {
    pub(super) fn new(status: pmp_status, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// `PMP_STATUS_NULL_ARGUMENT` naming the argument.
    pub(super) fn null(argument: impl std::fmt::Display) -> Self {
        Self::new(
            pmp_status::NullArgument,
            format!("argument `{argument}` is NULL"),
        )
    }

    /// `PMP_STATUS_INVALID_ARGUMENT` naming the argument and what is wrong.
    pub(super) fn invalid(argument: &'static str, reason: &str) -> Self {
        Self::new(
            pmp_status::InvalidArgument,
            format!("invalid argument `{argument}`: {reason}"),
        )
    }

    pub(super) fn status(&self) -> pmp_status {
        self.status
    }

    pub(super) fn message(&self) -> &str {
        &self.message
    }
}

impl From<crate::Error> for FfiError {
    fn from(e: crate::Error) -> Self {
        Self::new(pmp_status::from(&e), e.to_string())
    }
}

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<Option<Cow<'static, str>>> = const { RefCell::new(None) };
}

fn set_last_error(message: Cow<'static, str>) {
    // `try_with` fails only while the thread is being torn down; the message is then lost.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = Some(message));
}

/// The message of the last failed call on this thread ("" if none).
pub(super) fn last_error() -> Cow<'static, str> {
    LAST_ERROR
        .try_with(|e| e.borrow().clone())
        .ok()
        .flatten()
        .unwrap_or(Cow::Borrowed(""))
}

const PANIC_MESSAGE: &str = "internal error: a panic was caught at the C API boundary";

/// Runs `body` so that no panic unwinds into C: a panic yields `on_panic` instead.
///
/// For entry points that do not return a [`pmp_status`] (`pmp_version`, `*_free`), and for
/// those that must not touch the last error (`pmp_last_error_message`). Everything else uses
/// [`ffi_call`].
pub(super) fn ffi_guard<R>(on_panic: R, body: impl FnOnce() -> R) -> R {
    // AssertUnwindSafe: after a panic nothing `body` captured is looked at again; the C
    // caller only gets `on_panic`.
    panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// Runs the body of a status-returning entry point: `Ok(())` gives `PMP_STATUS_OK`; an error
/// gives its status and becomes the thread's last error; a panic gives `PMP_STATUS_PANIC`.
///
/// The body must write its outputs only once everything that can fail has succeeded
/// (typically by ending with [`OutBuf::write`]).
pub(super) fn ffi_call(body: impl FnOnce() -> FfiResult) -> pmp_status {
    let result = ffi_guard(Err(FfiError::new(pmp_status::Panic, PANIC_MESSAGE)), body);
    match result {
        Ok(()) => pmp_status::Ok,
        Err(e) => {
            set_last_error(e.message);
            e.status
        }
    }
}

/// Borrows an input byte string given as `(ptr, len)`. `ptr` may be NULL only when `len` is 0.
///
/// # Safety
///
/// Unless `ptr` is NULL, it must point to `len` initialized bytes that stay valid and are not
/// written to for `'a`.
pub(super) unsafe fn input_bytes<'a>(
    ptr: *const u8,
    len: usize,
    argument: &'static str,
) -> FfiResult<&'a [u8]> {
    // SAFETY: forwarded contract.
    unsafe { input_slice(ptr, len, argument) }
}

/// Borrows an input array of `len` values of `T` given as `(ptr, len)`. `ptr` may be NULL
/// only when `len` is 0.
///
/// # Safety
///
/// Unless `ptr` is NULL, it must be aligned and point to `len` initialized values of `T`
/// that stay valid and are not written to for `'a`. `T` must accept any bit pattern C may
/// put there (plain integers and raw pointers; never a Rust enum or `bool`).
pub(super) unsafe fn input_slice<'a, T>(
    ptr: *const T,
    len: usize,
    argument: &'static str,
) -> FfiResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(FfiError::null(argument));
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(FfiError::invalid(
            argument,
            "length exceeds the address space",
        ));
    }
    // SAFETY: `ptr` is non-NULL and, by this function's contract, aligned and points to
    // `len` initialized values that stay valid and unchanged for 'a; the total size fits in
    // isize (checked above).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows a NUL-terminated UTF-8 string (a label, a path, a key block, a hex KCV).
///
/// # Safety
///
/// Unless `ptr` is NULL, it must point to a NUL-terminated string that stays valid and is
/// not written to for `'a`.
pub(super) unsafe fn input_str<'a>(
    ptr: *const c_char,
    argument: &'static str,
) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::null(argument));
    }
    // SAFETY: non-NULL and, by this function's contract, NUL-terminated and valid for 'a.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map_err(|_| FfiError::invalid(argument, "not valid UTF-8"))
}

/// Borrows a file or directory path given as a NUL-terminated UTF-8 string: like
/// [`input_str`], and the empty string is refused (it would otherwise mean "the current
/// directory" to the file system calls below).
///
/// # Safety
///
/// As for [`input_str`].
pub(super) unsafe fn input_path<'a>(
    ptr: *const c_char,
    argument: &'static str,
) -> FfiResult<&'a std::path::Path> {
    // SAFETY: forwarded contract.
    let s = unsafe { input_str(ptr, argument) }?;
    if s.is_empty() {
        return Err(FfiError::invalid(argument, "empty path"));
    }
    Ok(std::path::Path::new(s))
}

/// Like [`input_path`], but NULL gives `None` (an optional path); "" is still refused.
///
/// # Safety
///
/// As for [`input_str`].
pub(super) unsafe fn input_opt_path<'a>(
    ptr: *const c_char,
    argument: &'static str,
) -> FfiResult<Option<&'a std::path::Path>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { input_path(ptr, argument) }.map(Some)
    }
}

/// Like [`input_str`], but NULL gives `None` (an optional string argument).
///
/// # Safety
///
/// As for [`input_str`].
pub(super) unsafe fn input_opt_str<'a>(
    ptr: *const c_char,
    argument: &'static str,
) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { input_str(ptr, argument) }.map(Some)
    }
}

/// Borrows a struct passed in by pointer.
///
/// # Safety
///
/// Unless `ptr` is NULL, it must point to an aligned, initialized `T` that stays valid and
/// is not written to for `'a`; `T` must accept any bit pattern C may put there.
pub(super) unsafe fn input_ref<'a, T>(ptr: *const T, argument: &'static str) -> FfiResult<&'a T> {
    // SAFETY: by this function's contract, a non-NULL `ptr` is valid for reads for 'a.
    unsafe { ptr.as_ref() }.ok_or_else(|| FfiError::null(argument))
}

/// An out-parameter for one value, `T *out`: checked for NULL on entry, written by
/// [`OutPtr::write`] as the last step of a successful call.
#[derive(Debug)]
pub(super) struct OutPtr<'a, T> {
    ptr: &'a mut MaybeUninit<T>,
}

impl<'a, T> OutPtr<'a, T> {
    /// Checks `ptr` for NULL.
    ///
    /// # Safety
    ///
    /// Unless NULL, `ptr` must be aligned and valid for a write of one `T` for `'a`, and not
    /// overlap any other argument of the call.
    pub(super) unsafe fn new(ptr: *mut T, argument: &'static str) -> FfiResult<Self> {
        // SAFETY: by this function's contract, a non-NULL `ptr` is aligned and valid for
        // writes for 'a; `MaybeUninit<T>` has the layout of `T` and accepts uninitialized
        // memory.
        let ptr = unsafe { ptr.cast::<MaybeUninit<T>>().as_mut() }
            .ok_or_else(|| FfiError::null(argument))?;
        Ok(Self { ptr })
    }

    /// Writes the value. Infallible: call it once everything that can fail has succeeded.
    ///
    /// Only for types without padding bytes (a typed copy leaves padding undefined); a
    /// struct with padding goes through [`OutPtr::write_zeroed`].
    pub(super) fn write(self, value: T) {
        self.ptr.write(value);
    }
}

impl<T: PlainData> OutPtr<'_, T> {
    /// Writes a value built by `fill` on an all-zero `T`, padding bytes included: `fill`
    /// assigns fields (which writes those fields' bytes only), and the result is copied to
    /// the caller byte for byte, so padding reaches C as zeros, never as library stack
    /// bytes. Nothing is written when `fill` fails.
    pub(super) fn write_zeroed(self, fill: impl FnOnce(&mut T) -> FfiResult) -> FfiResult {
        let value = zeroed_with(fill)?;
        // SAFETY: `value` and `self.ptr` are both valid for one `T` and distinct; this is an
        // untyped copy, so the zero padding bytes of `value` are copied as they are.
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), self.ptr.as_mut_ptr(), 1) };
        Ok(())
    }
}

/// Plain C data for which all-zero bytes are a valid value (integers, floats, byte arrays,
/// raw pointers, `Option` of a function pointer, and structs of those).
///
/// # Safety
///
/// Implement only for `#[repr(C)]` types whose every field accepts all-zero bytes.
pub(super) unsafe trait PlainData: Copy {}

// SAFETY: an array of plain data is plain data.
unsafe impl<T: PlainData, const N: usize> PlainData for [T; N] {}

/// An all-zero `T` (padding included) with the fields `fill` assigns.
pub(super) fn zeroed_with<T: PlainData>(
    fill: impl FnOnce(&mut T) -> FfiResult,
) -> FfiResult<MaybeUninit<T>> {
    let mut value = MaybeUninit::<T>::zeroed();
    // SAFETY: all-zero bytes are a valid `T` (`PlainData`). Assigning fields through this
    // reference writes those fields' bytes only; padding stays zero.
    fill(unsafe { value.assume_init_mut() })?;
    Ok(value)
}

/// A caller's output buffer, given as `(buf, cap, &written)`.
///
/// On success `*written` is the number of bytes written. If the buffer is too small nothing
/// is written to it, `*written` is set to the capacity needed and the call fails with
/// `PMP_STATUS_BUFFER_TOO_SMALL`. `buf = NULL, cap = 0` is a size query: it always fails
/// with `PMP_STATUS_BUFFER_TOO_SMALL` and the size needed, even when that size is 0, so a
/// caller's size query works the same way for every function and every result. On any
/// other failure neither is touched.
#[derive(Debug)]
pub(super) struct OutBuf<'a, T = u8> {
    buf: &'a mut [MaybeUninit<T>],
    written: &'a mut usize,
    /// `buf` was NULL: only the size is asked for.
    size_query: bool,
}

impl<'a, T: Copy> OutBuf<'a, T> {
    /// Checks the pointers. `buf` may be NULL only when `cap` is 0; `written` never. `name` is
    /// the name of the `buf` argument; by convention the others are `<name>_cap` and
    /// `<name>_written`.
    ///
    /// # Safety
    ///
    /// Unless NULL, `buf` must be aligned and valid for writes of `cap` values of `T` and
    /// `written` valid for a
    /// write of one `usize` (aligned), both for `'a`, and neither may overlap any input of
    /// the call or each other.
    pub(super) unsafe fn new(
        buf: *mut T,
        cap: usize,
        written: *mut usize,
        name: &'static str,
    ) -> FfiResult<Self> {
        if written.is_null() {
            return Err(FfiError::null(format_args!("{name}_written")));
        }
        let size_query = buf.is_null() && cap == 0;
        let buf: &'a mut [MaybeUninit<T>] = if cap == 0 {
            &mut []
        } else if buf.is_null() {
            return Err(FfiError::null(name));
        } else if cap > isize::MAX as usize / size_of::<T>().max(1) {
            return Err(FfiError::invalid(
                name,
                "capacity exceeds the address space",
            ));
        } else {
            // SAFETY: `buf` is non-NULL and, by this function's contract, aligned and valid for
            // writes of `cap` values (whose total size fits in isize, checked above) for 'a
            // and not aliased. `MaybeUninit<T>` has the layout of `T` and accepts
            // uninitialized memory.
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<MaybeUninit<T>>(), cap) }
        };
        // SAFETY: `written` is non-NULL and, by this function's contract, valid and aligned
        // for a write of one usize for 'a and not aliased.
        let written = unsafe { &mut *written };
        Ok(Self {
            buf,
            written,
            size_query,
        })
    }

    /// Writes `data` (see the type's documentation for what happens when it does not fit).
    pub(super) fn write(self, data: &[T]) -> FfiResult {
        self.write_parts(data, &[])
    }

    fn write_parts(self, data: &[T], terminator: &[T]) -> FfiResult {
        let needed = data.len() + terminator.len();
        if needed > self.buf.len() || self.size_query {
            *self.written = needed;
            return Err(FfiError::from(crate::Error::BufferTooSmall {
                needed,
                got: self.buf.len(),
            }));
        }
        for (dst, &src) in self.buf.iter_mut().zip(data.iter().chain(terminator)) {
            dst.write(src);
        }
        *self.written = data.len();
        Ok(())
    }
}

/// Writes `da` to `a` and `db` to `b`, or neither: when either does not fit (or either is a
/// size query), both `*written` get the capacity needed and the call fails with
/// `PMP_STATUS_BUFFER_TOO_SMALL`.
pub(super) fn write_pair<T: Copy>(
    a: OutBuf<'_, T>,
    da: &[T],
    b: OutBuf<'_, T>,
    db: &[T],
) -> FfiResult {
    let short = |o: &OutBuf<'_, T>, n: usize| n > o.buf.len() || o.size_query;
    if short(&a, da.len()) || short(&b, db.len()) {
        let (na, ga, nb) = (da.len(), a.buf.len(), db.len());
        *a.written = na;
        *b.written = nb;
        return Err(FfiError::from(crate::Error::BufferTooSmall {
            needed: if na > ga { na } else { nb },
            got: if na > ga { ga } else { b.buf.len() },
        }));
    }
    a.write(da)?;
    b.write(db)
}

impl<T: PlainData> OutBuf<'_, T> {
    /// Writes values built with [`zeroed_with`], byte for byte (their zero padding
    /// included); otherwise as [`OutBuf::write`].
    pub(super) fn write_zeroed(self, data: &[MaybeUninit<T>]) -> FfiResult {
        let needed = data.len();
        if needed > self.buf.len() || self.size_query {
            *self.written = needed;
            return Err(FfiError::from(crate::Error::BufferTooSmall {
                needed,
                got: self.buf.len(),
            }));
        }
        // SAFETY: `data` and `self.buf` are distinct allocations, the destination holds at
        // least `needed` values; an untyped copy keeps the zero padding.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.buf.as_mut_ptr(), needed);
        }
        *self.written = needed;
        Ok(())
    }
}

impl OutBuf<'_, u8> {
    /// Writes as much of `s` as fits with a NUL (cut at a UTF-8 character boundary), like
    /// `snprintf`: never fails for a short buffer. `*written` is the full length of `s`
    /// (without the NUL), so `*written >= cap` tells the caller the text was cut. With
    /// `cap` 0 nothing is written but the length.
    pub(super) fn write_c_str_truncated(self, s: &str) {
        let room = self.buf.len().saturating_sub(1);
        let mut cut = s.len().min(room);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        if !self.buf.is_empty() {
            for (dst, &src) in self.buf.iter_mut().zip(s.as_bytes()[..cut].iter()) {
                dst.write(src);
            }
            self.buf[cut].write(0);
        }
        *self.written = s.len();
    }

    /// Writes `s` followed by a NUL byte. `*written` is then `strlen`; the capacity needed
    /// (reported when too small) counts the NUL.
    pub(super) fn write_c_str(self, s: &str) -> FfiResult {
        if s.as_bytes().contains(&0) {
            return Err(FfiError::new(
                pmp_status::InvalidArgument,
                "string output contains a NUL byte",
            ));
        }
        self.write_parts(s.as_bytes(), &[0])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_buf_too_small_reports_needed_and_writes_nothing() {
        let mut buf = [0xAAu8; 2];
        let mut written = 0usize;
        // SAFETY: both pointers come from live locals of the right size.
        let out = unsafe { OutBuf::new(buf.as_mut_ptr(), 2, &mut written, "buf") }.unwrap();
        let e = out.write(&[1, 2, 3]).unwrap_err();
        assert_eq!(e.status(), pmp_status::BufferTooSmall);
        assert_eq!(written, 3);
        assert_eq!(buf, [0xAA; 2]);
    }

    #[test]
    fn out_buf_c_str_counts_nul_in_needed_not_in_written() {
        let mut buf = [0xAAu8; 4];
        let mut written = 0usize;
        // SAFETY: both pointers come from live locals of the right size.
        let out = unsafe { OutBuf::new(buf.as_mut_ptr(), 3, &mut written, "buf") }.unwrap();
        assert_eq!(
            out.write_c_str("abc").unwrap_err().status(),
            pmp_status::BufferTooSmall
        );
        assert_eq!(written, 4);
        // SAFETY: as above.
        let out = unsafe { OutBuf::new(buf.as_mut_ptr(), 4, &mut written, "buf") }.unwrap();
        out.write_c_str("abc").unwrap();
        assert_eq!((&buf, written), (b"abc\0", 3));
    }

    #[test]
    fn null_pointers_are_refused_except_empty() {
        let mut written = 0usize;
        // SAFETY: NULL pointers are checked before any access.
        unsafe {
            assert!(input_bytes(std::ptr::null(), 0, "x").unwrap().is_empty());
            assert_eq!(
                input_bytes(std::ptr::null(), 1, "x").unwrap_err().status(),
                pmp_status::NullArgument
            );
            assert!(OutBuf::new(std::ptr::null_mut::<u8>(), 0, &mut written, "b").is_ok());
            assert_eq!(
                OutBuf::new(std::ptr::null_mut::<u8>(), 1, &mut written, "b")
                    .unwrap_err()
                    .status(),
                pmp_status::NullArgument
            );
            assert_eq!(
                OutBuf::new(std::ptr::null_mut::<u8>(), 0, std::ptr::null_mut(), "b")
                    .unwrap_err()
                    .status(),
                pmp_status::NullArgument
            );
        }
    }

    #[test]
    fn panics_become_pmp_status_panic_and_last_error() {
        let status = ffi_call(|| panic!("boom"));
        assert_eq!(status, pmp_status::Panic);
        assert_eq!(last_error(), PANIC_MESSAGE);
    }
}
