//! `cargo fuzz run tr31` (nightly, libFuzzer): the `tr31` target of `pmp_fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmp_fuzz::run("tr31", data));
