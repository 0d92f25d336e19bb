//! `cargo fuzz run issuer_fixed` (nightly, libFuzzer): the `issuer_fixed` target of `pmp_fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmp_fuzz::run("issuer_fixed", data));
