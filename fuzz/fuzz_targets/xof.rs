//! `cargo fuzz run xof` (nightly, libFuzzer): the `xof` target of `pmp_fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmp_fuzz::run("xof", data));
