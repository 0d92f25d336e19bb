//! Whole-file encryption on the issuer's side: CBC with PKCS#7 padding as a `Write`.

use std::io::Write;

use pmp_core::{BlockCipher, Error, Padding, Result, SecretKey};
use zeroize::Zeroizing;

/// CBC encryption with PKCS#7 padding as a `Write` (the issuer's side of whole-file
/// encryption).
pub(crate) struct CbcWriter<'a> {
    cipher: BlockCipher,
    iv: Vec<u8>,
    buf: Zeroizing<Vec<u8>>,
    out: &'a mut dyn Write,
}

impl<'a> CbcWriter<'a> {
    pub(crate) fn new(key: &SecretKey, iv: Vec<u8>, out: &'a mut dyn Write) -> Self {
        Self {
            cipher: key.cipher(),
            iv,
            buf: Zeroizing::new(Vec::with_capacity(64 * 1024)),
            out,
        }
    }

    fn flush_blocks(&mut self, all: bool) -> Result<()> {
        let bs = self.iv.len();
        let n = if all {
            self.buf.len()
        } else {
            self.buf.len() / bs * bs
        };
        if n == 0 {
            return Ok(());
        }
        self.cipher.encrypt_cbc(&self.iv, &mut self.buf[..n])?;
        self.iv.copy_from_slice(&self.buf[n - bs..n]);
        self.out
            .write_all(&self.buf[..n])
            .map_err(|e| Error::io("issuer file", e))?;
        self.buf.drain(..n);
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> Result<()> {
        let bs = self.iv.len();
        let len = self.buf.len();
        self.buf.resize(Padding::Pkcs7.padded_len(len, bs), 0);
        Padding::Pkcs7.pad(&mut self.buf, len, bs)?;
        self.flush_blocks(true)?;
        self.out.flush().map_err(|e| Error::io("issuer file", e))
    }
}

impl Write for CbcWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 60 * 1024 {
            self.flush_blocks(false).map_err(std::io::Error::other)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
