//! A bounds-checked cursor over one frozen packet.
//!
//! Reading from the packet's `Bytes` (rather than a `&[u8]`) lets binary fields and the
//! PUBLISH payload be handed out as zero-copy slices sharing the receive buffer. Every
//! read checks its bounds and turns a short packet into 0x81 (malformed), so no decode
//! path can index out of range on hostile input.

use std::num::NonZeroU16;

use bytes::Bytes;

use super::varint::{self, VarInt};
use super::DecodeError;
use crate::packet::PacketId;

pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    /// Exclusive end: lets a property block be read as a sub-reader without slicing.
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf[start..]` (the body after the fixed header), so the frame
    /// need not be re-sliced (one refcount operation fewer per packet).
    pub(crate) fn new(buf: &'a Bytes, start: usize) -> Self {
        Reader {
            buf,
            pos: start.min(buf.len()),
            end: buf.len(),
        }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Refuse any bytes left over where the packet layout allows none.
    pub(crate) fn expect_end(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::malformed(what))
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::malformed(
                "field runs past the end of the packet",
            ));
        }
        let buf: &'a Bytes = self.buf;
        let slice = &buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = self.take(1)?;
        Ok(b[0])
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match varint::read(&self.buf[self.pos..self.end]) {
            VarInt::Value(v, n) => {
                self.pos += n;
                Ok(v)
            }
            VarInt::Incomplete => Err(DecodeError::malformed(
                "variable byte integer runs past the end of the packet",
            )),
            VarInt::Malformed => Err(DecodeError::malformed("malformed variable byte integer")),
        }
    }

    /// A packet identifier: 0 is forbidden wherever one is required.
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        NonZeroU16::new(self.u16()?).ok_or(DecodeError::malformed("packet identifier 0"))
    }

    /// The raw bytes of a UTF-8 string field, validated: well-formed UTF-8 and no
    /// U+0000 ([MQTT-1.5.4-1], [MQTT-1.5.4-2]), else 0x81.
    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        // In UTF-8 the byte 0x00 only ever encodes U+0000.
        if bytes.contains(&0) {
            return Err(DecodeError::malformed("string contains U+0000"));
        }
        std::str::from_utf8(bytes).map_err(|_| DecodeError::malformed("string is not valid UTF-8"))
    }

    #[inline]
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(String::from)
    }

    /// Binary data (u16 length prefix), as a zero-copy slice of the packet.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > self.remaining() {
            return Err(DecodeError::malformed(
                "binary data runs past the end of the packet",
            ));
        }
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    /// Everything left (the PUBLISH payload), zero-copy.
    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        out
    }

    /// Split off the next `len` bytes as their own reader (a property block), so a
    /// property cannot read past its block's declared length.
    pub(crate) fn sub(&mut self, len: usize) -> Result<Reader<'a>, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::malformed(
                "property length runs past the end of the packet",
            ));
        }
        let sub = Reader {
            buf: self.buf,
            pos: self.pos,
            end: self.pos + len,
        };
        self.pos += len;
        Ok(sub)
    }
}
