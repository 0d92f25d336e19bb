//! Build script: generates `include/pmp.h` with cbindgen (filled in by the C API work).
fn main() {}
