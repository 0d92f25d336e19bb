//! Key labels used by the demo, the tests and the benchmark.

/// TK_issuer for data.
pub const TK: &str = "DEMOBANK-TK-DATA";
/// The issuer PIN key.
pub const ISSUER_PIN: &str = "DEMOBANK-TK-PIN";
/// The bureau PIN key.
pub const BUREAU_PIN: &str = "BUREAU-PIN";
/// The XOF MAC key.
pub const XOF_MAC: &str = "XOF-MAC";
/// ZMK shared with the issuer.
pub const ZMK_ISSUER: &str = "ZMK-DEMOBANK";
/// ZMK shared with production.
pub const ZMK_PROD: &str = "ZMK-PROD";
/// The issuer's zone master key for its EMV master keys (their own ceremony in the demo).
pub const ZMK_ISSUER_EMV: &str = "ZMK-DEMOBANK-EMV";
