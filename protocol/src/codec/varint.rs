//! MQTT Variable Byte Integers (MQTT 5 §1.5.5, MQTT 3.1.1 §2.2.3).
//!
//! Used for the Remaining Length, property lengths and subscription identifiers.
//! Seven value bits per byte, least significant group first, at most four bytes.

use bytes::BufMut;

/// The largest value four bytes can carry (and so the largest Remaining Length).
pub const MAX: u32 = 268_435_455;

/// Outcome of reading a variable byte integer from a buffer that may still be filling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarInt {
    /// The value and how many bytes encoded it.
    Value(u32, usize),
    /// The buffer ended while the continuation bit was still set.
    Incomplete,
    /// A fifth byte would be needed, or the encoding was not the shortest one
    /// ([MQTT-1.5.5-1] requires the minimum number of bytes).
    Malformed,
}

/// Read a variable byte integer from the start of `buf`.
///
/// Non-minimal encodings (`80 00`, `FF 80 00`...) are refused: the spec makes them
/// a sender error, and accepting them would give one value several encodings.
#[inline]
pub(crate) fn read(buf: &[u8]) -> VarInt {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return VarInt::Incomplete;
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return VarInt::Malformed;
            }
            return VarInt::Value(value, i + 1);
        }
    }
    VarInt::Malformed
}

/// Number of bytes needed to encode `value` (which must be at most [`MAX`]; larger
/// values report 4 and are refused by [`write`]'s callers before writing).
#[inline]
pub(crate) const fn len(value: usize) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Append `value` (at most [`MAX`]; callers check) to `out`.
#[inline]
pub(crate) fn write<B: BufMut>(out: &mut B, value: usize) {
    let mut v = value;
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, v);
        out
    }

    #[test]
    fn boundaries_round_trip_with_minimal_length() {
        for &(v, n) in &[
            (0usize, 1usize),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (MAX as usize, 4),
        ] {
            let bytes = enc(v);
            assert_eq!(bytes.len(), n, "value {v}");
            assert_eq!(len(v), n, "value {v}");
            assert_eq!(read(&bytes), VarInt::Value(v as u32, n), "value {v}");
        }
    }

    #[test]
    fn five_byte_integer_is_malformed() {
        assert_eq!(read(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]), VarInt::Malformed);
        assert_eq!(read(&[0x80, 0x80, 0x80, 0x80]), VarInt::Malformed);
    }

    #[test]
    fn non_minimal_integer_is_malformed() {
        assert_eq!(read(&[0x80, 0x00]), VarInt::Malformed);
        assert_eq!(read(&[0xFF, 0x80, 0x00]), VarInt::Malformed);
    }

    #[test]
    fn truncated_integer_is_incomplete() {
        assert_eq!(read(&[]), VarInt::Incomplete);
        assert_eq!(read(&[0x80]), VarInt::Incomplete);
        assert_eq!(read(&[0xFF, 0xFF, 0xFF]), VarInt::Incomplete);
    }
}
