//! The two-pass encoding target.
//!
//! Every packet body is written by one generic function run twice: first into a
//! [`Counter`] to learn the Remaining Length (and property lengths), then into the
//! output `BytesMut`. Sharing the code makes it impossible for the length prefix and
//! the bytes written to disagree, and needs no scratch buffer: nothing is allocated
//! besides the single `reserve` on the output.

use bytes::{BufMut, BytesMut};

use super::varint;
use super::EncodeError;

pub(crate) trait Sink {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn raw(&mut self, b: &[u8]);
    /// A variable byte integer already known to be at most [`varint::MAX`].
    fn varint_unchecked(&mut self, v: usize);

    #[inline]
    fn varint(&mut self, v: usize) -> Result<(), EncodeError> {
        if v > varint::MAX as usize {
            return Err(EncodeError::TooLarge(v));
        }
        self.varint_unchecked(v);
        Ok(())
    }

    /// Binary data with its u16 length prefix. Over-long data reports
    /// [`EncodeError::StringTooLong`] too: the limit and the cause are the same.
    #[inline]
    fn binary(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let n = u16::try_from(b.len()).map_err(|_| EncodeError::StringTooLong(b.len()))?;
        self.u16(n);
        self.raw(b);
        Ok(())
    }

    /// A UTF-8 string with its u16 length prefix. `&str` is UTF-8 by construction; U+0000
    /// is not checked here (the decoder refuses it, so relayed strings cannot hold it).
    #[inline]
    fn string(&mut self, s: &str) -> Result<(), EncodeError> {
        self.binary(s.as_bytes())
    }
}

/// Counts bytes instead of writing them. Saturating, so absurd sizes surface as
/// [`EncodeError::TooLarge`] instead of overflowing.
#[derive(Default)]
pub(crate) struct Counter(pub usize);

impl Sink for Counter {
    #[inline]
    fn u8(&mut self, _: u8) {
        self.0 = self.0.saturating_add(1);
    }
    #[inline]
    fn u16(&mut self, _: u16) {
        self.0 = self.0.saturating_add(2);
    }
    #[inline]
    fn u32(&mut self, _: u32) {
        self.0 = self.0.saturating_add(4);
    }
    #[inline]
    fn raw(&mut self, b: &[u8]) {
        self.0 = self.0.saturating_add(b.len());
    }
    #[inline]
    fn varint_unchecked(&mut self, v: usize) {
        self.0 = self.0.saturating_add(varint::len(v));
    }
}

impl Sink for BytesMut {
    #[inline]
    fn u8(&mut self, v: u8) {
        self.put_u8(v);
    }
    #[inline]
    fn u16(&mut self, v: u16) {
        self.put_u16(v);
    }
    #[inline]
    fn u32(&mut self, v: u32) {
        self.put_u32(v);
    }
    #[inline]
    fn raw(&mut self, b: &[u8]) {
        self.put_slice(b);
    }
    #[inline]
    fn varint_unchecked(&mut self, v: usize) {
        varint::write(self, v);
    }
}
