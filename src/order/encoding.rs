//! Character encodings of issuer files. Every layout reader works on UTF-8 text (and the
//! XOF always holds UTF-8): a file in another encoding is decoded as it streams, into
//! buffers wiped before each refill and on drop, before any field is read.
//!
//! - Delimited and fixed-width layouts say their encoding (`<layout encoding="...">`,
//!   default UTF-8): [`Encoding`] lists the names.
//! - XML files say it themselves, as XML 1.0 (appendix F) has them do: a byte order mark,
//!   else the `encoding` of the XML declaration, else UTF-8.
//!
//! UTF-16 and windows-1252 are decoded by `encoding_rs`; ISO-8859-1 by `encoding_rs`'s
//! Latin-1 conversion (each byte is the code point of the same number — `encoding_rs`'s
//! *decoder* for the label ISO-8859-1 is windows-1252, as the WHATWG Encoding Standard
//! says, which differs at 0x80–0x9F); EBCDIC code page 037, which `encoding_rs` does not
//! have, by one 256-entry table generated from a public source (`encoding/cp037.rs`,
//! checked against CPython's `cp037` codec). Malformed input (an unpaired UTF-16
//! surrogate, an odd byte at the end) stops the file; the single-byte encodings have none.
//!
//! ```
//! use pmp_core::order::encoding::Encoding;
//! let e = Encoding::from_label("ISO-8859-1").unwrap();
//! assert_eq!(&*e.decode(b"M\xdcLLER").unwrap(), "MÜLLER");
//! assert_eq!(&*Encoding::Ibm037.decode(b"\xc4\xd6\xc5").unwrap(), "DOE");
//! ```

mod cp037;

use std::io::{self, BufRead, Read};

use zeroize::{Zeroize, Zeroizing};

use crate::order::issuer::{WipingReader, io_error};
use crate::{Error, Result};

/// A character encoding an issuer file may be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 (a leading byte order mark is skipped). The default.
    #[default]
    Utf8,
    /// UTF-16, byte order from the byte order mark the file must start with.
    Utf16,
    /// UTF-16 little-endian (a leading byte order mark is skipped).
    Utf16Le,
    /// UTF-16 big-endian (a leading byte order mark is skipped).
    Utf16Be,
    /// ISO-8859-1 (Latin-1): each byte is the code point of the same number.
    Iso8859_1,
    /// windows-1252 (ISO-8859-1 with printable characters at 0x80–0x9F).
    Windows1252,
    /// EBCDIC code page 037 (IBM, US/Canada), as mainframes write fixed-width files. Line
    /// layouts read NL (0x15) as a line end, like LF (0x25).
    Ibm037,
}

impl Encoding {
    /// The encoding for a name, case-insensitive: `UTF-8`, `UTF-16`, `UTF-16LE`,
    /// `UTF-16BE`, `ISO-8859-1` (also `latin1`, `ISO_8859-1`), `windows-1252` (also
    /// `cp1252`), `IBM037` (also `cp037`, `EBCDIC-037`); `US-ASCII` is read as UTF-8, of
    /// which it is a subset.
    pub fn from_label(label: &str) -> Option<Self> {
        Some(match label.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" | "us-ascii" | "ascii" => Encoding::Utf8,
            "utf-16" | "utf16" => Encoding::Utf16,
            "utf-16le" | "utf16le" => Encoding::Utf16Le,
            "utf-16be" | "utf16be" => Encoding::Utf16Be,
            "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1" => {
                Encoding::Iso8859_1
            }
            "windows-1252" | "cp1252" => Encoding::Windows1252,
            "ibm037" | "cp037" | "ebcdic-037" | "ebcdic-cp-us" => Encoding::Ibm037,
            _ => return None,
        })
    }

    /// The encoding's name as the docs write it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf16 => "UTF-16",
            Encoding::Utf16Le => "UTF-16LE",
            Encoding::Utf16Be => "UTF-16BE",
            Encoding::Iso8859_1 => "ISO-8859-1",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Ibm037 => "IBM037",
        }
    }

    /// Decodes a whole value (no byte order mark handling; NL stays U+0085 in IBM037).
    /// For short values; files are decoded as they stream.
    pub fn decode(self, bytes: &[u8]) -> Result<Zeroizing<String>> {
        let malformed = || Error::invalid("text", format!("not valid {}", self.name()));
        let s = match self {
            Encoding::Utf8 => core::str::from_utf8(bytes)
                .map_err(|_| malformed())?
                .to_string(),
            Encoding::Iso8859_1 => encoding_rs::mem::decode_latin1(bytes).into_owned(),
            Encoding::Ibm037 => bytes.iter().map(|&b| ibm037(b)).collect(),
            Encoding::Utf16 | Encoding::Utf16Le | Encoding::Utf16Be | Encoding::Windows1252 => {
                let e = match self {
                    Encoding::Utf16Be => encoding_rs::UTF_16BE,
                    Encoding::Windows1252 => encoding_rs::WINDOWS_1252,
                    _ => encoding_rs::UTF_16LE,
                };
                e.decode_without_bom_handling_and_without_replacement(bytes)
                    .ok_or_else(malformed)?
                    .into_owned()
            }
        };
        Ok(Zeroizing::new(s))
    }

    /// Whether the encoding is one an XML file may declare here (not EBCDIC).
    pub fn is_xml(self) -> bool {
        self != Encoding::Ibm037
    }
}

/// The character of an IBM037 byte.
fn ibm037(b: u8) -> char {
    // Every entry is a BMP scalar value (checked by the test against CPython's table).
    char::from_u32(u32::from(cp037::TO_UNICODE[usize::from(b)])).unwrap_or('\u{FFFD}')
}

/// Bytes of the XML declaration looked at to find the encoding.
const DECL_BYTES: usize = 1024;

/// The encoding of an XML file (XML 1.0 appendix F): a byte order mark; else UTF-16 told
/// by the first characters `<?` in either byte order; else the `encoding` of the XML
/// declaration; else UTF-8. A declaration that contradicts a UTF-8 byte order mark, or
/// that names an encoding not supported here, is an error naming it.
pub(crate) fn sniff_xml(r: &mut WipingReader<'_>) -> Result<Encoding> {
    let head = r
        .peek(DECL_BYTES)
        .map_err(|e| io_error(e, "reading the issuer file"))?;
    let declared = || -> Result<Option<Encoding>> {
        let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
        let Some(decl) = body.strip_prefix(b"<?xml") else {
            return Ok(None);
        };
        let end = decl
            .windows(2)
            .position(|w| w == b"?>")
            .ok_or_else(|| Error::invalid("issuer file", "the XML declaration does not end"))?;
        let decl = String::from_utf8_lossy(&decl[..end]);
        let Some(at) = decl.find("encoding") else {
            return Ok(None);
        };
        let rest = decl[at + "encoding".len()..].trim_start();
        let rest = rest.strip_prefix('=').unwrap_or("").trim_start();
        let q = rest.chars().next().filter(|c| *c == '"' || *c == '\'');
        let label = q.and_then(|q| rest[1..].split(q).next()).ok_or_else(|| {
            Error::invalid("issuer file", "malformed encoding in the XML declaration")
        })?;
        match Encoding::from_label(label) {
            Some(e) if e.is_xml() => Ok(Some(e)),
            _ => Err(Error::invalid(
                "issuer file",
                format!(
                    "the XML declaration names encoding '{}', which is not supported (UTF-8, UTF-16, ISO-8859-1, windows-1252)",
                    crate::xml::short_name(label)
                ),
            )),
        }
    };
    Ok(match head {
        [0xFF, 0xFE, ..] | [0x3C, 0x00, 0x3F, 0x00, ..] => Encoding::Utf16Le,
        [0xFE, 0xFF, ..] | [0x00, 0x3C, 0x00, 0x3F, ..] => Encoding::Utf16Be,
        [0xEF, 0xBB, 0xBF, ..] => match declared()? {
            None | Some(Encoding::Utf8) => Encoding::Utf8,
            Some(e) => {
                return Err(Error::invalid(
                    "issuer file",
                    format!(
                        "the file starts with a UTF-8 byte order mark but declares {}",
                        e.name()
                    ),
                ));
            }
        },
        _ => match declared()? {
            Some(Encoding::Utf16 | Encoding::Utf16Le | Encoding::Utf16Be) => {
                return Err(Error::invalid(
                    "issuer file",
                    "the XML declaration says UTF-16 but the file is not UTF-16",
                ));
            }
            Some(e) => e,
            None => Encoding::Utf8,
        },
    })
}

/// Bytes of decoded text per refill.
const OUT: usize = 64 * 1024;

enum Decoder {
    /// `encoding_rs`: UTF-16 and windows-1252.
    Std(encoding_rs::Decoder),
    Latin1,
    Ibm037,
}

/// UTF-8 text from an issuer file in any [`Encoding`]: the file's own bytes when it is
/// UTF-8 (after a byte order mark), else decoded into a buffer that is wiped before each
/// refill and on drop. Counts the input bytes consumed, for messages.
pub(crate) struct TextReader<'a> {
    inner: WipingReader<'a>,
    decoder: Option<Decoder>,
    encoding: Encoding,
    out: Zeroizing<Vec<u8>>,
    pos: usize,
    filled: usize,
}

impl<'a> TextReader<'a> {
    /// Reads `inner` as `encoding`: skips or reads its byte order mark, sets up the
    /// decoder. A UTF-16 file without a byte order mark is an error.
    pub(crate) fn new(mut inner: WipingReader<'a>, encoding: Encoding) -> Result<Self> {
        let head = inner
            .peek(3)
            .map_err(|e| io_error(e, "reading the issuer file"))?;
        let (skip, encoding) = match (encoding, head) {
            (Encoding::Utf8, [0xEF, 0xBB, 0xBF, ..]) => (3, encoding),
            (Encoding::Utf16 | Encoding::Utf16Le, [0xFF, 0xFE, ..]) => (2, Encoding::Utf16Le),
            (Encoding::Utf16 | Encoding::Utf16Be, [0xFE, 0xFF, ..]) => (2, Encoding::Utf16Be),
            (Encoding::Utf16, _) => {
                return Err(Error::invalid(
                    "issuer file",
                    "UTF-16 without a byte order mark: the layout must say UTF-16LE or UTF-16BE",
                ));
            }
            _ => (0, encoding),
        };
        inner.consume(skip);
        let decoder = match encoding {
            Encoding::Utf8 => None,
            Encoding::Utf16Le | Encoding::Utf16 => Some(Decoder::Std(
                encoding_rs::UTF_16LE.new_decoder_without_bom_handling(),
            )),
            Encoding::Utf16Be => Some(Decoder::Std(
                encoding_rs::UTF_16BE.new_decoder_without_bom_handling(),
            )),
            Encoding::Windows1252 => Some(Decoder::Std(
                encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling(),
            )),
            Encoding::Iso8859_1 => Some(Decoder::Latin1),
            Encoding::Ibm037 => Some(Decoder::Ibm037),
        };
        let out = match decoder {
            Some(_) => vec![0u8; OUT],
            None => Vec::new(),
        };
        Ok(Self {
            inner,
            decoder,
            encoding,
            out: Zeroizing::new(out),
            pos: 0,
            filled: 0,
        })
    }

    fn malformed(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Error::invalid(
                "issuer file",
                format!(
                    "not valid {} near byte {} of the file",
                    self.encoding.name(),
                    self.inner.offset()
                ),
            ),
        )
    }

    /// Decodes the next chunk into `out` (wiped first).
    fn refill(&mut self) -> io::Result<()> {
        self.out[..self.filled].zeroize();
        self.pos = 0;
        self.filled = 0;
        loop {
            let src = self.inner.fill_buf()?;
            let last = src.is_empty();
            let (read, written, bad) = match self.decoder.as_mut() {
                None => unreachable!("UTF-8 is not decoded"),
                Some(Decoder::Std(d)) => {
                    let (r, read, written) =
                        d.decode_to_utf8_without_replacement(src, &mut self.out[..], last);
                    (
                        read,
                        written,
                        matches!(r, encoding_rs::DecoderResult::Malformed(..)),
                    )
                }
                Some(Decoder::Latin1) => {
                    let (read, written) =
                        encoding_rs::mem::convert_latin1_to_utf8_partial(src, &mut self.out[..]);
                    (read, written, false)
                }
                Some(Decoder::Ibm037) => {
                    let mut w = 0;
                    let mut read = 0;
                    for &b in src {
                        if self.out.len() - w < 4 {
                            break;
                        }
                        // NL (0x15) ends a line, as LF (0x25) does.
                        let c = if b == 0x15 { '\n' } else { ibm037(b) };
                        w += c.encode_utf8(&mut self.out[w..]).len();
                        read += 1;
                    }
                    (read, w, false)
                }
            };
            self.inner.consume(read);
            self.filled = written;
            if bad {
                return Err(self.malformed());
            }
            if written > 0 || last {
                return Ok(());
            }
        }
    }
}

impl Read for TextReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for TextReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.decoder.is_none() {
            return self.inner.fill_buf();
        }
        if self.pos >= self.filled {
            self.refill()?;
        }
        Ok(&self.out[self.pos..self.filled])
    }

    fn consume(&mut self, amt: usize) {
        if self.decoder.is_none() {
            self.inner.consume(amt);
        } else {
            self.pos = (self.pos + amt).min(self.filled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], e: Encoding) -> io::Result<String> {
        let r = WipingReader::new(Box::new(std::io::Cursor::new(bytes.to_vec())));
        let mut t = TextReader::new(r, e).map_err(io::Error::other)?;
        let mut s = String::new();
        t.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn decodes_each_encoding() {
        let text = "ÉLODIE MÜLLER & CIE\n";
        let mut le = vec![0xFF, 0xFE];
        let mut be = vec![0xFE, 0xFF];
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
            be.extend_from_slice(&u.to_be_bytes());
        }
        let latin1: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
        assert_eq!(read_all(&le, Encoding::Utf16).unwrap(), text);
        assert_eq!(read_all(&be, Encoding::Utf16).unwrap(), text);
        assert_eq!(read_all(&le[2..], Encoding::Utf16Le).unwrap(), text);
        assert_eq!(read_all(&be, Encoding::Utf16Be).unwrap(), text);
        assert!(read_all(&le[2..], Encoding::Utf16).is_err(), "no BOM");
        assert_eq!(read_all(&latin1, Encoding::Iso8859_1).unwrap(), text);
        assert_eq!(read_all(&latin1, Encoding::Windows1252).unwrap(), text);
        // 0x80: C1 control in ISO-8859-1, the euro sign in windows-1252.
        assert_eq!(read_all(b"\x80", Encoding::Iso8859_1).unwrap(), "\u{80}");
        assert_eq!(read_all(b"\x80", Encoding::Windows1252).unwrap(), "€");
        let mut utf8 = b"\xEF\xBB\xBF".to_vec();
        utf8.extend_from_slice(text.as_bytes());
        assert_eq!(read_all(&utf8, Encoding::Utf8).unwrap(), text);
        // EBCDIC: "DOE" NL "AB" LF; NL ends a line in a file.
        assert_eq!(
            read_all(b"\xC4\xD6\xC5\x15\xC1\xC2\x25", Encoding::Ibm037).unwrap(),
            "DOE\nAB\n"
        );
        // An unpaired surrogate; an odd byte at the end.
        assert!(read_all(&[0xFF, 0xFE, 0x00, 0xD8, 0x41, 0x00], Encoding::Utf16).is_err());
        assert!(read_all(&[0xFF, 0xFE, 0x41, 0x00, 0x42], Encoding::Utf16).is_err());
    }

    #[test]
    fn long_input_crosses_buffers() {
        let text: String = "Ä-0123456789\n".repeat(20_000);
        let latin1: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
        assert_eq!(read_all(&latin1, Encoding::Iso8859_1).unwrap(), text);
        let mut le = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(read_all(&le, Encoding::Utf16).unwrap(), text);
    }

    fn sniff(bytes: &[u8]) -> Result<Encoding> {
        let mut r = WipingReader::new(Box::new(std::io::Cursor::new(bytes.to_vec())));
        sniff_xml(&mut r)
    }

    #[test]
    fn xml_encoding_from_bom_or_declaration() {
        assert_eq!(sniff(b"<a/>").unwrap(), Encoding::Utf8);
        assert_eq!(
            sniff(b"<?xml version=\"1.0\"?><a/>").unwrap(),
            Encoding::Utf8
        );
        assert_eq!(
            sniff(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>").unwrap(),
            Encoding::Iso8859_1
        );
        assert_eq!(
            sniff(b"<?xml version='1.0' encoding = 'windows-1252' ?><a/>").unwrap(),
            Encoding::Windows1252
        );
        assert_eq!(sniff(b"\xFF\xFE<\x00?\x00").unwrap(), Encoding::Utf16Le);
        assert_eq!(sniff(b"\xFE\xFF\x00<\x00?").unwrap(), Encoding::Utf16Be);
        assert_eq!(sniff(b"<\x00?\x00x\x00").unwrap(), Encoding::Utf16Le);
        assert_eq!(sniff(b"\x00<\x00?\x00x").unwrap(), Encoding::Utf16Be);
        for (bad, want) in [
            (
                &b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>"[..],
                "Shift_JIS",
            ),
            (b"<?xml version=\"1.0\" encoding=\"IBM037\"?>", "IBM037"),
            (
                b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>",
                "byte order mark",
            ),
            (b"<?xml version=\"1.0\" encoding=\"UTF-16\"?>", "not UTF-16"),
        ] {
            let e = sniff(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
