//! Streaming CBC decryption of a whole file, shared by the HSM backends.

use std::io::Read;

use zeroize::{Zeroize, Zeroizing};

use super::CipherSpec;
use crate::{Error, Mode, Padding, Result};

/// Ciphertext bytes decrypted per refill.
const CHUNK: usize = 64 * 1024;

/// Decrypts whole blocks in place in CBC mode with the given IV.
pub type BlockDecrypt<'a> = Box<dyn FnMut(&[u8], &mut [u8]) -> Result<()> + Send + 'a>;

/// A reader of the clear text of a CBC-encrypted stream: it holds back the last block
/// until the end of the input, removes the padding there, and wipes its clear buffer on
/// every refill and on drop. Built by [`Hsm::decrypting_reader`](super::Hsm::decrypting_reader).
pub struct CbcDecryptReader<'a> {
    input: Box<dyn Read + Send + 'a>,
    decrypt: BlockDecrypt<'a>,
    block: usize,
    padding: Padding,
    iv: Vec<u8>,
    ct: Vec<u8>,
    out: Zeroizing<Vec<u8>>,
    pos: usize,
    eof: bool,
    done: bool,
}

impl core::fmt::Debug for CbcDecryptReader<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CbcDecryptReader { .. }")
    }
}

impl<'a> CbcDecryptReader<'a> {
    /// A reader over `input` with a block decryption function for a `block`-byte cipher;
    /// `spec` gives the mode (CBC), the IV and the padding.
    pub fn new(
        input: Box<dyn Read + Send + 'a>,
        decrypt: BlockDecrypt<'a>,
        block: usize,
        spec: &CipherSpec<'_>,
    ) -> Result<Self> {
        if spec.mode != Mode::Cbc {
            return Err(Error::Unsupported(
                "whole-file decryption is CBC only".into(),
            ));
        }
        let iv = spec
            .iv
            .filter(|iv| iv.len() == block)
            .ok_or_else(|| Error::invalid("IV", "CBC needs an IV of one block"))?;
        if spec.padding == Padding::Iso9797M1 {
            return Err(Error::invalid(
                "padding",
                "ISO 9797-1 method 1 cannot be removed from a file",
            ));
        }
        Ok(Self {
            input,
            decrypt,
            block,
            padding: spec.padding,
            iv: iv.to_vec(),
            ct: Vec::with_capacity(CHUNK + 2 * block),
            out: Zeroizing::new(Vec::with_capacity(CHUNK + 2 * block)),
            pos: 0,
            eof: false,
            done: false,
        })
    }

    fn refill(&mut self) -> Result<()> {
        self.out.zeroize();
        self.out.clear();
        self.pos = 0;
        while !self.eof && self.ct.len() < CHUNK + self.block {
            let at = self.ct.len();
            self.ct.resize(at + CHUNK, 0);
            let n = loop {
                match self.input.read(&mut self.ct[at..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.ct.truncate(at);
                        return Err(Error::io("encrypted input", e));
                    }
                }
            };
            self.ct.truncate(at + n);
            if n == 0 {
                self.eof = true;
            }
        }
        let bs = self.block;
        let n = if self.eof {
            self.done = true;
            if !self.ct.len().is_multiple_of(bs)
                || (self.ct.is_empty() && self.padding != Padding::None)
            {
                return Err(Error::invalid(
                    "encrypted file",
                    format!(
                        "its length is not a whole number of {bs}-byte cipher blocks (truncated?)"
                    ),
                ));
            }
            self.ct.len()
        } else {
            // Keep at least one byte back, so the last block is decrypted with the end.
            (self.ct.len() - 1) / bs * bs
        };
        if n == 0 {
            return Ok(());
        }
        self.out.extend_from_slice(&self.ct[..n]);
        let next_iv = self.ct[n - bs..n].to_vec();
        (self.decrypt)(&self.iv, &mut self.out[..])?;
        self.iv = next_iv;
        self.ct.drain(..n);
        if self.done {
            let keep = self.padding.unpad(&self.out, bs)?;
            self.out[keep..].zeroize();
            self.out.truncate(keep);
        }
        Ok(())
    }
}

impl Read for CbcDecryptReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.out.len() {
            if self.done {
                return Ok(0);
            }
            if let Err(e) = self.refill() {
                self.out.zeroize();
                self.out.clear();
                self.done = true;
                return Err(std::io::Error::other(e));
            }
        }
        let n = (self.out.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
