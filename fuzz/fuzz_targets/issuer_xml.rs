//! `cargo fuzz run issuer_xml` (nightly, libFuzzer): the `issuer_xml` target of `pmp_fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmp_fuzz::run("issuer_xml", data));
