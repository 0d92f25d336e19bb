//! The C API (to be written).
#![allow(unsafe_code)]
