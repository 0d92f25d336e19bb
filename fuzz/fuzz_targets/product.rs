//! `cargo fuzz run product` (nightly, libFuzzer): the `product` target of `pmp_fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmp_fuzz::run("product", data));
