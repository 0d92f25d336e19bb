//! `cargo fuzz run issuer_delimited` (nightly, libFuzzer): the `issuer_delimited` target of `pmp_fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmp_fuzz::run("issuer_delimited", data));
