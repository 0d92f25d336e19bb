//! `cargo fuzz run pinblock` (nightly, libFuzzer): the `pinblock` target of `pmp_fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmp_fuzz::run("pinblock", data));
