//! The key block header: typed fields, optional blocks, parsing and encoding
//! (ANSI X9.143:2022 §6.2–6.3, TR-31:2018 §A.5).

use core::fmt;
use core::str::FromStr;

use crate::primitives::key::Algorithm;
use crate::{Error, Result};

const FIELD: &str = "key block header";

/// A structural header error at a character position (0-based).
pub(crate) fn herr(pos: usize, msg: impl fmt::Display) -> Error {
    Error::invalid(FIELD, format!("position {pos}: {msg}"))
}

fn shown(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", char::from(b))
    } else {
        format!("byte 0x{b:02X}")
    }
}

/// The key block version ID (header position 0): which binding method protects the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `A`: TDES key variant binding (TR-31:2005). Legacy: deprecated by X9.143.
    A,
    /// `B`: TDES key derivation binding (CMAC-derived keys, TDES-CBC, 8-byte CMAC).
    B,
    /// `C`: TDES key variant binding, as `A` with clarified header values. Legacy.
    C,
    /// `D`: AES key derivation binding (CMAC-derived keys, AES-CBC, 16-byte CMAC).
    D,
}

impl Version {
    /// The version ID character.
    pub const fn as_char(self) -> char {
        match self {
            Version::A => 'A',
            Version::B => 'B',
            Version::C => 'C',
            Version::D => 'D',
        }
    }

    /// Whether this is a legacy variant-binding version (`A` or `C`), which
    /// [`UnwrapPolicy`](super::UnwrapPolicy) refuses unless legacy is allowed.
    pub const fn is_legacy(self) -> bool {
        matches!(self, Version::A | Version::C)
    }

    /// The algorithm the key block protection key must have: AES for `D`, TDES otherwise.
    pub const fn kbpk_algorithm(self) -> Algorithm {
        match self {
            Version::D => Algorithm::Aes,
            _ => Algorithm::Tdes,
        }
    }

    /// The cipher block size of the binding method (8 for TDES versions, 16 for `D`).
    pub const fn block_size(self) -> usize {
        self.kbpk_algorithm().block_size()
    }

    /// Length in bytes of the MAC carried at the end of the block.
    pub const fn mac_len(self) -> usize {
        match self {
            Version::A | Version::C => 4,
            Version::B => 8,
            Version::D => 16,
        }
    }

    /// A short description.
    pub const fn description(self) -> &'static str {
        match self {
            Version::A => "TDES key variant binding (legacy)",
            Version::B => "TDES key derivation binding",
            Version::C => "TDES key variant binding (legacy)",
            Version::D => "AES key derivation binding",
        }
    }

    fn from_byte(b: u8) -> Result<Self> {
        match b {
            b'A' => Ok(Version::A),
            b'B' => Ok(Version::B),
            b'C' => Ok(Version::C),
            b'D' => Ok(Version::D),
            b'0'..=b'9' | b'E' => Err(Error::Unsupported(format!(
                "key block version {} (proprietary or not an X9.143 TR-31 version)",
                shown(b)
            ))),
            _ => Err(herr(0, format!("unknown key block version {}", shown(b)))),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

impl FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.as_bytes() {
            [b] => Self::from_byte(*b),
            _ => Err(Error::invalid(
                "key block version",
                "expected one of A, B, C, D",
            )),
        }
    }
}

/// Which modes of use a usage admits (X9.143:2022 table 6); `N` is added to each below.
macro_rules! key_usages {
    ($( $v:ident = $code:literal, $desc:literal, $modes:literal, $kind:ident; )*) => {
        /// The key usage (header positions 5–6): what the key is for.
        ///
        /// The named variants are the X9.143 / TR-31:2018 usages; any other two-character
        /// code (numeric codes are proprietary) is kept verbatim in [`KeyUsage::Other`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum KeyUsage {
            $( #[doc = concat!("`", $code, "`: ", $desc, ".")] $v, )*
            /// Any other code, kept verbatim (never one of the named codes).
            Other([u8; 2]),
        }

        impl KeyUsage {
            /// The two-character code.
            pub fn as_str(&self) -> &str {
                match self {
                    $( KeyUsage::$v => $code, )*
                    KeyUsage::Other(b) => core::str::from_utf8(b).unwrap_or("??"),
                }
            }

            /// A short description ("unknown" for [`KeyUsage::Other`]).
            pub fn description(&self) -> &'static str {
                match self {
                    $( KeyUsage::$v => $desc, )*
                    KeyUsage::Other(_) => "unknown or proprietary usage",
                }
            }

            /// The modes of use X9.143 allows with this usage, as a string of mode
            /// characters (always including `N`), or `None` for an unknown usage.
            pub fn allowed_modes(&self) -> Option<&'static str> {
                match self {
                    $( KeyUsage::$v => Some($modes), )*
                    KeyUsage::Other(_) => None,
                }
            }

            /// Whether the usage is for an asymmetric key (RSA, EC, DSA).
            pub fn is_asymmetric(&self) -> bool {
                match self {
                    $( KeyUsage::$v => UsageKind::$kind == UsageKind::Asym, )*
                    KeyUsage::Other(_) => false,
                }
            }

            /// Every named usage, in the order of the standard's table: the codes
            /// [`str::parse`] accepts.
            pub const KNOWN: &'static [KeyUsage] = &[$( KeyUsage::$v, )*];

            fn from_code(b: [u8; 2]) -> Self {
                match &b {
                    $( x if x == $code.as_bytes() => KeyUsage::$v, )*
                    _ => KeyUsage::Other(b),
                }
            }
        }
    };
}

#[derive(PartialEq, Eq)]
enum UsageKind {
    Sym,
    Asym,
}

key_usages! {
    B0 = "B0", "base derivation key (BDK)", "XN", Sym;
    B1 = "B1", "initial DUKPT key", "XN", Sym;
    B2 = "B2", "base key variant key", "XYN", Sym;
    C0 = "C0", "card verification key (CVK)", "CGVN", Sym;
    D0 = "D0", "symmetric data encryption key", "BDEN", Sym;
    D1 = "D1", "asymmetric data encryption key", "BDEN", Asym;
    D2 = "D2", "data encryption key for decimalization table", "BDEN", Sym;
    E0 = "E0", "EMV issuer master key: application cryptograms", "XN", Sym;
    E1 = "E1", "EMV issuer master key: secure messaging for confidentiality", "XN", Sym;
    E2 = "E2", "EMV issuer master key: secure messaging for integrity", "XN", Sym;
    E3 = "E3", "EMV issuer master key: data authentication code", "XN", Sym;
    E4 = "E4", "EMV issuer master key: dynamic numbers", "XN", Sym;
    E5 = "E5", "EMV issuer master key: card personalization", "XN", Sym;
    E6 = "E6", "EMV issuer master key: other", "XN", Sym;
    I0 = "I0", "initialization vector (IV)", "N", Sym;
    K0 = "K0", "key encryption or wrapping key", "BDEN", Sym;
    K1 = "K1", "TR-31 key block protection key", "BDEN", Sym;
    K2 = "K2", "TR-34 asymmetric key", "BDEN", Asym;
    K3 = "K3", "asymmetric key for key agreement or key wrapping", "BDEXN", Asym;
    M0 = "M0", "ISO 16609 MAC algorithm 1 (TDES) key", "CGVN", Sym;
    M1 = "M1", "ISO 9797-1 MAC algorithm 1 key", "CGVN", Sym;
    M2 = "M2", "ISO 9797-1 MAC algorithm 2 key", "CGVN", Sym;
    M3 = "M3", "ISO 9797-1 MAC algorithm 3 key", "CGVN", Sym;
    M4 = "M4", "ISO 9797-1 MAC algorithm 4 key", "CGVN", Sym;
    M5 = "M5", "ISO 9797-1:1999 MAC algorithm 5 key", "CGVN", Sym;
    M6 = "M6", "ISO 9797-1:2011 MAC algorithm 5 (CMAC) key", "CGVN", Sym;
    M7 = "M7", "HMAC key", "CGVN", Sym;
    M8 = "M8", "ISO 9797-1:2011 MAC algorithm 6 key", "CGVN", Sym;
    P0 = "P0", "PIN encryption key", "BDEN", Sym;
    S0 = "S0", "asymmetric key pair for digital signature", "SVN", Asym;
    S1 = "S1", "asymmetric key pair, CA key", "SVN", Asym;
    S2 = "S2", "asymmetric key pair, non-X9.24 key", "SVTBDEN", Asym;
    V0 = "V0", "PIN verification key, other algorithm", "CGVN", Sym;
    V1 = "V1", "PIN verification key, IBM 3624", "CGVN", Sym;
    V2 = "V2", "PIN verification key, VISA PVV", "CGVN", Sym;
    V3 = "V3", "PIN verification key, X9.132 algorithm 1", "CGVN", Sym;
    V4 = "V4", "PIN verification key, X9.132 algorithm 2", "CGVN", Sym;
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a named usage only, upper-case as the standard writes it (`P0`, not `p0`): a code
/// given by an operator or a caller must be one pmp-core knows, since a key with an
/// unknown usage is one no operation accepts. (A key block read from elsewhere may carry
/// a proprietary usage: [`Header::parse`] keeps it as [`KeyUsage::Other`].)
impl FromStr for KeyUsage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.as_bytes() {
            [a, b] if !matches!(KeyUsage::from_code([*a, *b]), KeyUsage::Other(_)) => {
                Ok(KeyUsage::from_code([*a, *b]))
            }
            [a, b] if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
                let upper = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
                let hint = if upper != [*a, *b]
                    && !matches!(KeyUsage::from_code(upper), KeyUsage::Other(_))
                {
                    format!(
                        " (codes are upper-case: {})",
                        core::str::from_utf8(&upper).unwrap_or("??")
                    )
                } else {
                    String::new()
                };
                Err(Error::invalid(
                    "key usage",
                    format!(
                        "{s} is not a known TR-31 key usage{hint}; known: {}",
                        known_usages()
                    ),
                ))
            }
            _ => Err(Error::invalid(
                "key usage",
                format!(
                    "expected a two-character TR-31 code; known: {}",
                    known_usages()
                ),
            )),
        }
    }
}

/// The known usage codes, space-separated, for error messages.
pub fn known_usages() -> String {
    KeyUsage::KNOWN
        .iter()
        .map(KeyUsage::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The algorithm of the wrapped key (header position 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// `T`: TDES.
    Tdes,
    /// `A`: AES.
    Aes,
    /// `D`: single DES (parsed, refused).
    Des,
    /// `R`: RSA (parsed, refused).
    Rsa,
    /// `E`: elliptic curve (parsed, refused).
    Ec,
    /// `H`: HMAC (parsed, refused).
    Hmac,
    /// `S`: DSA (parsed, refused).
    Dsa,
    /// Any other letter or digit (numeric values are proprietary), kept verbatim.
    Other(u8),
}

impl KeyAlgorithm {
    /// The pmp-core algorithm for `T` and `A`; `None` for algorithms pmp-core cannot wrap.
    pub fn to_pmp(&self) -> Option<Algorithm> {
        match self {
            KeyAlgorithm::Tdes => Some(Algorithm::Tdes),
            KeyAlgorithm::Aes => Some(Algorithm::Aes),
            _ => None,
        }
    }

    /// The header character.
    pub fn as_char(&self) -> char {
        char::from(self.as_byte())
    }

    fn as_byte(&self) -> u8 {
        match self {
            KeyAlgorithm::Tdes => b'T',
            KeyAlgorithm::Aes => b'A',
            KeyAlgorithm::Des => b'D',
            KeyAlgorithm::Rsa => b'R',
            KeyAlgorithm::Ec => b'E',
            KeyAlgorithm::Hmac => b'H',
            KeyAlgorithm::Dsa => b'S',
            KeyAlgorithm::Other(b) => *b,
        }
    }

    /// Whether this is an asymmetric algorithm (RSA, EC, DSA).
    pub fn is_asymmetric(&self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa | KeyAlgorithm::Ec | KeyAlgorithm::Dsa
        )
    }

    /// A short description.
    pub fn description(&self) -> &'static str {
        match self {
            KeyAlgorithm::Tdes => "TDES",
            KeyAlgorithm::Aes => "AES",
            KeyAlgorithm::Des => "DES",
            KeyAlgorithm::Rsa => "RSA",
            KeyAlgorithm::Ec => "elliptic curve",
            KeyAlgorithm::Hmac => "HMAC",
            KeyAlgorithm::Dsa => "DSA",
            KeyAlgorithm::Other(_) => "unknown or proprietary algorithm",
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'T' => KeyAlgorithm::Tdes,
            b'A' => KeyAlgorithm::Aes,
            b'D' => KeyAlgorithm::Des,
            b'R' => KeyAlgorithm::Rsa,
            b'E' => KeyAlgorithm::Ec,
            b'H' => KeyAlgorithm::Hmac,
            b'S' => KeyAlgorithm::Dsa,
            b if b.is_ascii_uppercase() || b.is_ascii_digit() => KeyAlgorithm::Other(b),
            _ => return None,
        })
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.as_bytes() {
            [b] => KeyAlgorithm::from_byte(*b).filter(|a| !matches!(a, KeyAlgorithm::Other(_))),
            _ => None,
        }
        .ok_or_else(|| {
            Error::invalid(
                "key algorithm",
                format!("{s:?} is not a known TR-31 algorithm; known: T A D R E H S (upper-case)"),
            )
        })
    }
}

/// The mode of use (header position 8): which operations the key may perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModeOfUse {
    /// Both encrypt and decrypt / wrap and unwrap.
    B,
    /// Both generate and verify (MAC, CVV, PIN verification value).
    C,
    /// Decrypt / unwrap only.
    D,
    /// Encrypt / wrap only.
    E,
    /// Generate only.
    G,
    /// No special restrictions other than those implied by the key usage.
    N,
    /// Signature only.
    S,
    /// Both sign and decrypt.
    T,
    /// Verify only.
    V,
    /// Key used to derive other keys.
    X,
    /// Key used to create key variants.
    Y,
}

impl ModeOfUse {
    /// The header character.
    pub const fn as_char(self) -> char {
        match self {
            ModeOfUse::B => 'B',
            ModeOfUse::C => 'C',
            ModeOfUse::D => 'D',
            ModeOfUse::E => 'E',
            ModeOfUse::G => 'G',
            ModeOfUse::N => 'N',
            ModeOfUse::S => 'S',
            ModeOfUse::T => 'T',
            ModeOfUse::V => 'V',
            ModeOfUse::X => 'X',
            ModeOfUse::Y => 'Y',
        }
    }

    /// A short description.
    pub const fn description(self) -> &'static str {
        match self {
            ModeOfUse::B => "encrypt and decrypt / wrap and unwrap",
            ModeOfUse::C => "generate and verify",
            ModeOfUse::D => "decrypt / unwrap only",
            ModeOfUse::E => "encrypt / wrap only",
            ModeOfUse::G => "generate only",
            ModeOfUse::N => "no special restrictions",
            ModeOfUse::S => "signature only",
            ModeOfUse::T => "sign and decrypt",
            ModeOfUse::V => "verify only",
            ModeOfUse::X => "derive other keys",
            ModeOfUse::Y => "create key variants",
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'B' => ModeOfUse::B,
            b'C' => ModeOfUse::C,
            b'D' => ModeOfUse::D,
            b'E' => ModeOfUse::E,
            b'G' => ModeOfUse::G,
            b'N' => ModeOfUse::N,
            b'S' => ModeOfUse::S,
            b'T' => ModeOfUse::T,
            b'V' => ModeOfUse::V,
            b'X' => ModeOfUse::X,
            b'Y' => ModeOfUse::Y,
            _ => return None,
        })
    }
}

impl fmt::Display for ModeOfUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

impl FromStr for ModeOfUse {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.as_bytes() {
            [b] => ModeOfUse::from_byte(*b),
            _ => None,
        }
        .ok_or_else(|| {
            Error::invalid(
                "mode of use",
                format!(
                    "{s:?} is not a TR-31 mode of use; known: B C D E G N S T V X Y (upper-case)"
                ),
            )
        })
    }
}

/// Exportability (header position 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exportability {
    /// Exportable under a trusted key (a KEK meeting X9.24).
    E,
    /// Not exportable.
    N,
    /// Sensitive: exportable under an untrusted key.
    S,
}

impl Exportability {
    /// The header character.
    pub const fn as_char(self) -> char {
        match self {
            Exportability::E => 'E',
            Exportability::N => 'N',
            Exportability::S => 'S',
        }
    }

    /// A short description.
    pub const fn description(self) -> &'static str {
        match self {
            Exportability::E => "exportable under a trusted key",
            Exportability::N => "not exportable",
            Exportability::S => "sensitive, exportable under an untrusted key",
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'E' => Some(Exportability::E),
            b'N' => Some(Exportability::N),
            b'S' => Some(Exportability::S),
            _ => None,
        }
    }
}

impl fmt::Display for Exportability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

impl FromStr for Exportability {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.as_bytes() {
            [b] => Exportability::from_byte(*b),
            _ => None,
        }
        .ok_or_else(|| {
            Error::invalid(
                "exportability",
                format!("{s:?} is not a TR-31 exportability; known: E N S (upper-case)"),
            )
        })
    }
}

/// What an optional block is, by its ID. Blocks pmp-core does not interpret are kept
/// verbatim and reported as [`OptionalBlockKind::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OptionalBlockKind {
    /// `KS`: key set identifier (DUKPT KSN or key set ID).
    KeySetId,
    /// `KV`: key block values version.
    KeyBlockValuesVersion,
    /// `KP`: check value of the key block protection key.
    KbpkCheckValue,
    /// `TS`: time stamp (ISO 8601 UTC).
    TimeStamp,
    /// `PB`: padding block (aligns the header on the cipher block size).
    Padding,
    /// Any other ID, kept verbatim.
    Other,
}

/// One optional block: a two-character ID and printable ASCII data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OptionalBlock {
    /// The block ID (two ASCII letters or digits, for example `*b"KS"`).
    pub id: [u8; 2],
    /// The block data (printable ASCII).
    pub data: String,
}

impl OptionalBlock {
    /// A checked optional block: `id` two letters or digits, `data` printable ASCII.
    pub fn new(id: &str, data: impl Into<String>) -> Result<Self> {
        let id: [u8; 2] = id
            .as_bytes()
            .try_into()
            .map_err(|_| Error::invalid("optional block ID", "expected two characters"))?;
        let b = OptionalBlock {
            id,
            data: data.into(),
        };
        b.check()?;
        Ok(b)
    }

    /// The ID as text.
    pub fn id_str(&self) -> &str {
        core::str::from_utf8(&self.id).unwrap_or("??")
    }

    /// What the block is.
    pub fn kind(&self) -> OptionalBlockKind {
        match &self.id {
            b"KS" => OptionalBlockKind::KeySetId,
            b"KV" => OptionalBlockKind::KeyBlockValuesVersion,
            b"KP" => OptionalBlockKind::KbpkCheckValue,
            b"TS" => OptionalBlockKind::TimeStamp,
            b"PB" => OptionalBlockKind::Padding,
            _ => OptionalBlockKind::Other,
        }
    }

    fn check(&self) -> Result<()> {
        if !self.id.iter().all(u8::is_ascii_alphanumeric) {
            return Err(Error::invalid(
                "optional block ID",
                "expected two letters or digits",
            ));
        }
        if let Some(b) = self.data.bytes().find(|b| !(0x20..=0x7E).contains(b)) {
            return Err(Error::invalid(
                "optional block data",
                format!(
                    "block {}: {} is not printable ASCII",
                    self.id_str(),
                    shown(b)
                ),
            ));
        }
        let hexish = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        let ok = match self.kind() {
            OptionalBlockKind::KeySetId => hexish(&self.data),
            OptionalBlockKind::KbpkCheckValue => {
                self.data.len() >= 4 && hexish(&self.data[..2]) && hexish(&self.data[2..])
            }
            OptionalBlockKind::KeyBlockValuesVersion => self.data.len() >= 2,
            OptionalBlockKind::TimeStamp => {
                self.data.len() >= 13 && self.data.bytes().take(4).all(|b| b.is_ascii_digit())
            }
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "optional block data",
                format!("block {} is malformed", self.id_str()),
            ))
        }
    }

    /// Length of this block once encoded (ID, length field(s), data).
    fn encoded_len(&self) -> usize {
        if self.data.len() + 4 <= 255 {
            4 + self.data.len()
        } else {
            10 + self.data.len()
        }
    }

    fn encode_into(&self, out: &mut String) -> Result<()> {
        out.push_str(self.id_str());
        let n = self.encoded_len();
        if self.data.len() + 4 <= 255 {
            out.push_str(&format!("{n:02X}"));
        } else {
            // Extended length (X9.143 §6.3.6): "00", the number of hex characters of the
            // length ("04"), then the whole block length in hex.
            if n > 0xFFFF {
                return Err(Error::invalid(
                    "optional block data",
                    "longer than 65525 characters",
                ));
            }
            out.push_str(&format!("0004{n:04X}"));
        }
        out.push_str(&self.data);
        Ok(())
    }
}

impl fmt::Display for OptionalBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.id_str(), self.data)
    }
}

/// A key block header: every field typed, optional blocks in order (a padding block `PB`
/// read from a block is kept; [`wrap`](super::wrap) recomputes it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Version ID (binding method).
    pub version: Version,
    /// Key usage.
    pub usage: KeyUsage,
    /// Algorithm of the wrapped key.
    pub algorithm: KeyAlgorithm,
    /// Mode of use.
    pub mode_of_use: ModeOfUse,
    /// Key version number: two ASCII letters or digits; `00` = unused; `c?` = component.
    pub key_version: [u8; 2],
    /// Exportability.
    pub exportability: Exportability,
    /// Optional blocks, in order.
    pub optional_blocks: Vec<OptionalBlock>,
}

impl Header {
    /// A header with key version `00` and no optional blocks.
    pub fn new(
        version: Version,
        usage: KeyUsage,
        algorithm: KeyAlgorithm,
        mode_of_use: ModeOfUse,
        exportability: Exportability,
    ) -> Header {
        Header {
            version,
            usage,
            algorithm,
            mode_of_use,
            key_version: *b"00",
            exportability,
            optional_blocks: Vec::new(),
        }
    }

    /// Parses a header: the 16 fixed characters followed by exactly the optional blocks
    /// they announce, and nothing else. The length field (positions 1–4) is not checked
    /// beyond being four digits, since it belongs to a whole block; [`inspect`](super::inspect)
    /// checks it against the block.
    pub fn parse(s: &str) -> Result<Header> {
        let (h, n) = parse_prefix(s.as_bytes(), false)?;
        if n != s.len() {
            return Err(herr(
                n,
                "unexpected characters after the optional blocks (is the block count right?)",
            ));
        }
        Ok(h)
    }

    /// The key version number as text.
    pub fn key_version_str(&self) -> &str {
        core::str::from_utf8(&self.key_version).unwrap_or("??")
    }

    /// Whether the key version field marks the key as a component (`c` first).
    pub fn is_component(&self) -> bool {
        self.key_version[0] == b'c'
    }

    /// The first optional block with this ID.
    pub fn optional_block(&self, id: &str) -> Option<&OptionalBlock> {
        self.optional_blocks.iter().find(|b| b.id_str() == id)
    }

    /// Checks the combinations X9.143 forbids regardless of the keys: a mode of use
    /// meaningless for the usage (table 6 of X9.143:2022; mode `N` — "no restrictions
    /// beyond the usage" — is accepted with every usage), and a symmetric usage with an
    /// asymmetric algorithm or the reverse. `M7` (HMAC) needs algorithm `H`.
    pub fn check_combination(&self) -> Result<()> {
        if let Some(modes) = self.usage.allowed_modes() {
            if !modes.contains(self.mode_of_use.as_char()) {
                return Err(Error::Policy(format!(
                    "mode of use {} is not allowed for key usage {} ({}); allowed: {}",
                    self.mode_of_use,
                    self.usage,
                    self.usage.description(),
                    modes
                )));
            }
            let asym_usage = self.usage.is_asymmetric();
            let sym_alg = matches!(
                self.algorithm,
                KeyAlgorithm::Tdes | KeyAlgorithm::Aes | KeyAlgorithm::Des | KeyAlgorithm::Hmac
            );
            if (asym_usage && sym_alg) || (!asym_usage && self.algorithm.is_asymmetric()) {
                return Err(Error::Policy(format!(
                    "key usage {} ({}) cannot have algorithm {} ({})",
                    self.usage,
                    self.usage.description(),
                    self.algorithm,
                    self.algorithm.description()
                )));
            }
            if (self.usage == KeyUsage::M7) != (self.algorithm == KeyAlgorithm::Hmac) {
                return Err(Error::Policy(format!(
                    "key usage {} cannot have algorithm {}: HMAC keys are M7 with algorithm H",
                    self.usage, self.algorithm
                )));
            }
        }
        Ok(())
    }

    /// Encodes the header with `total_len` in the length field.
    pub(crate) fn encode(&self, total_len: usize) -> Result<String> {
        if total_len > 9999 {
            return Err(Error::invalid(
                "key block",
                format!("{total_len} characters exceed the 9999 the length field can carry"),
            ));
        }
        if self.optional_blocks.len() > 99 {
            return Err(Error::invalid(FIELD, "more than 99 optional blocks"));
        }
        if !self.key_version.iter().all(u8::is_ascii_alphanumeric) {
            return Err(herr(9, "key version must be two letters or digits"));
        }
        let usage = self.usage.as_str();
        if !usage.bytes().all(|b| b.is_ascii_alphanumeric()) || usage.len() != 2 {
            return Err(herr(5, "key usage must be two letters or digits"));
        }
        if !self.algorithm.as_byte().is_ascii_alphanumeric() {
            return Err(herr(7, "algorithm must be a letter or digit"));
        }
        let mut s = format!(
            "{}{:04}{}{}{}{}{}{:02}00",
            self.version,
            total_len,
            usage,
            self.algorithm,
            self.mode_of_use,
            self.key_version_str(),
            self.exportability,
            self.optional_blocks.len()
        );
        for b in &self.optional_blocks {
            b.check()?;
            b.encode_into(&mut s)?;
        }
        Ok(s)
    }

    /// The encoded length of the header (fixed part and optional blocks).
    pub(crate) fn encoded_len(&self) -> usize {
        16 + self
            .optional_blocks
            .iter()
            .map(OptionalBlock::encoded_len)
            .sum::<usize>()
    }
}

/// Displays the header alone, its length field holding the header's own length (as
/// `B0016P0TE00N0000`).
impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.encode(self.encoded_len()) {
            Ok(s) => f.write_str(&s),
            Err(_) => f.write_str("<invalid header>"),
        }
    }
}

impl FromStr for Header {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Header::parse(s)
    }
}

fn hex_val(s: &[u8], pos: usize, what: &str) -> Result<usize> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_hexdigit) {
        return Err(herr(pos, format!("{what} is not hex")));
    }
    let t = core::str::from_utf8(s).map_err(|_| herr(pos, "not ASCII"))?;
    usize::from_str_radix(t, 16).map_err(|_| herr(pos, format!("{what} is too large")))
}

/// Parses a header at the start of `s`; returns it and the number of characters it takes.
/// With `strict_len`, the length field must be four digits (a block); otherwise four
/// printable characters are accepted (a header given to `wrap`, whose length is recomputed).
pub(crate) fn parse_prefix(s: &[u8], strict_len: bool) -> Result<(Header, usize)> {
    if let Some(i) = s.iter().position(|b| !(0x20..=0x7E).contains(b)) {
        return Err(herr(i, format!("{} is not printable ASCII", shown(s[i]))));
    }
    if s.len() < 16 {
        return Err(Error::invalid(
            FIELD,
            format!("{} characters; a header has at least 16", s.len()),
        ));
    }
    let version = Version::from_byte(s[0])?;
    if strict_len && !s[1..5].iter().all(u8::is_ascii_digit) {
        return Err(herr(1, "the length field must be four decimal digits"));
    }
    if !s[5..7]
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(herr(
            5,
            format!(
                "key usage {:?} must be two upper-case letters or digits; known: {}",
                String::from_utf8_lossy(&s[5..7]),
                known_usages()
            ),
        ));
    }
    let usage = KeyUsage::from_code([s[5], s[6]]);
    let algorithm = KeyAlgorithm::from_byte(s[7]).ok_or_else(|| {
        herr(
            7,
            format!(
                "unknown algorithm {}; known: T A D R E H S (upper-case)",
                shown(s[7])
            ),
        )
    })?;
    let mode_of_use = ModeOfUse::from_byte(s[8]).ok_or_else(|| {
        herr(
            8,
            format!(
                "unknown mode of use {}; known: B C D E G N S T V X Y (upper-case)",
                shown(s[8])
            ),
        )
    })?;
    if !s[9..11].iter().all(u8::is_ascii_alphanumeric) {
        return Err(herr(9, "key version must be two letters or digits"));
    }
    let key_version = [s[9], s[10]];
    let exportability = Exportability::from_byte(s[11]).ok_or_else(|| {
        herr(
            11,
            format!(
                "unknown exportability {}; known: E N S (upper-case)",
                shown(s[11])
            ),
        )
    })?;
    if !s[12..14].iter().all(u8::is_ascii_digit) {
        return Err(herr(
            12,
            "the optional block count must be two decimal digits",
        ));
    }
    let count = usize::from(s[12] - b'0') * 10 + usize::from(s[13] - b'0');
    if &s[14..16] != b"00" {
        return Err(herr(14, "reserved field must be \"00\""));
    }

    let mut p = 16;
    let mut optional_blocks = Vec::with_capacity(count);
    for n in 0..count {
        let start = p;
        let need = |p: usize, k: usize| -> Result<()> {
            if p + k > s.len() {
                Err(herr(
                    p,
                    format!("optional block {} of {count} is cut short", n + 1),
                ))
            } else {
                Ok(())
            }
        };
        need(p, 4)?;
        let id = [s[p], s[p + 1]];
        if !id.iter().all(u8::is_ascii_alphanumeric) {
            return Err(herr(p, "optional block ID must be two letters or digits"));
        }
        let short = hex_val(&s[p + 2..p + 4], p + 2, "optional block length")?;
        let (head, total) = if short != 0 {
            (4, short)
        } else {
            // Extended length: 2 hex chars = number of hex characters of the length.
            need(p, 6)?;
            let ll = hex_val(&s[p + 4..p + 6], p + 4, "optional block length of length")?;
            if ll == 0 || ll > 4 {
                return Err(herr(
                    p + 4,
                    "optional block length of length must be 1 to 4",
                ));
            }
            need(p, 6 + ll)?;
            let total = hex_val(&s[p + 6..p + 6 + ll], p + 6, "optional block length")?;
            (6 + ll, total)
        };
        if total < head {
            return Err(herr(
                p + 2,
                "optional block length is shorter than its own ID and length",
            ));
        }
        need(p, total)?;
        let data = core::str::from_utf8(&s[p + head..p + total])
            .map_err(|_| herr(p + head, "not ASCII"))?
            .to_string();
        optional_blocks.push(OptionalBlock { id, data });
        p = start + total;
    }
    Ok((
        Header {
            version,
            usage,
            algorithm,
            mode_of_use,
            key_version,
            exportability,
            optional_blocks,
        },
        p,
    ))
}
