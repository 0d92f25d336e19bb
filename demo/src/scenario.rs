//! What a generated issuer file looks like: its layout and how it is encrypted, and the
//! field widths the issuer simulator and the product agree on.

use pmp_core::{Algorithm, Padding};

/// The issuer layout of a [`Scenario`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutChoice {
    /// CSV with a header row, quoting and a trailer with the count.
    Delimited,
    /// Fixed-width lines and a trailer with the count.
    Fixed,
    /// `<cards count="N"><card>...</card></cards>`.
    Xml,
    /// A processor-style card-generation file: a header and a summary block with the
    /// total (`CARDGEN/CARDSUM/NO_OF_CARDS`, before the records or, with `totals_after`,
    /// after them), then one `CARDHOLDER` element per card inside `PRODUCT`, its id in
    /// the attribute `UID`, a nested `CARRIER` section (name and address, the address line
    /// in CDATA) and a nested `CARD` section (with an attribute `type`, the card data and
    /// the embossing name in `EMBOSS/LINE1`). The product reads it with `record-path`
    /// and field paths.
    ProcessorXml {
        /// The summary block comes after the records.
        totals_after: bool,
    },
}

/// The processor file's path of each field inside a `CARDHOLDER` record.
pub(crate) const PROCESSOR_PATHS: [(&str, &str); 10] = [
    ("card_id", "@UID"),
    ("pan", "CARD/PAN"),
    ("expiry", "CARD/EXPIRY"),
    ("service_code", "CARD/SERVICE_CODE"),
    ("name", "CARD/EMBOSS/LINE1"),
    ("track2", "CARD/TRACK2"),
    ("pin_block", "CARD/PIN_BLOCK"),
    ("address1", "CARRIER/ADDRESS/ADD1"),
    ("city", "CARRIER/ADDRESS/CITY"),
    ("postcode", "CARRIER/ADDRESS/POSTCODE"),
];

/// How a generated issuer file is laid out and encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The layout.
    pub layout: LayoutChoice,
    /// Whole-file encryption under TK_issuer (CBC, IV in the first block, PKCS#7).
    pub whole_file: bool,
    /// PAN and track 2 individually encrypted (hex, CBC with a zero IV, ISO 9797-1 M2).
    pub per_field: bool,
    /// TK_issuer's algorithm (2-key TDES or AES-128).
    pub tk_algorithm: Algorithm,
    /// The DKeps' algorithm (AES-256 or 2-key TDES).
    pub dkep_algorithm: Algorithm,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            layout: LayoutChoice::Delimited,
            whole_file: true,
            per_field: false,
            tk_algorithm: Algorithm::Tdes,
            dkep_algorithm: Algorithm::Aes,
        }
    }
}

/// The issuer file's fields in order, with their widths in the fixed-width layout (hex
/// ciphertext width for the fields encrypted one by one).
pub(crate) fn field_widths(s: &Scenario) -> [(&'static str, usize); 10] {
    let enc = |plain: usize| {
        if s.per_field {
            2 * Padding::Iso9797M2.padded_len(plain, s.tk_algorithm.block_size())
        } else {
            plain
        }
    };
    [
        ("card_id", 10),
        ("pan", enc(19)),
        ("expiry", 4),
        ("service_code", 3),
        ("name", 26),
        ("track2", enc(37)),
        ("pin_block", 16),
        ("address1", 40),
        ("city", 20),
        ("postcode", 10),
    ]
}
