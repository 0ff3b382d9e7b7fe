//! The RESP3 subset the state store speaks (statestore.md §2, §4.3, §10).
//!
//! Requests are arrays of bulk strings (RESP2 and RESP3 frame them identically). Keys and
//! values are arbitrary bytes that may contain `\r\n`, so the parser trusts declared lengths
//! and never splits on CRLF. Every malformed input is [`ErrorReply::Syntax`]; nothing here
//! panics or allocates from an untrusted length.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ErrorReply;

/// Split a request payload into its elements, slicing (not copying) `payload`.
///
/// Exactly one `*<N>\r\n` array of N `$<len>\r\n<bytes>\r\n` bulk strings, with no
/// trailing bytes; anything else (inline commands, other RESP types, a null bulk string,
/// a negative, signed or overflowing length, a length mismatch) is a syntax error (§2.1).
pub fn parse_array(payload: &Bytes) -> Result<Vec<Bytes>, ErrorReply> {
    let mut pos = 0;
    let count = header(payload, &mut pos, b'*')?;
    // Each element takes at least 6 bytes (`$0\r\n\r\n`): bound the allocation by the input.
    let mut elements = Vec::with_capacity(count.min(payload.len() / 6));
    for _ in 0..count {
        let len = header(payload, &mut pos, b'$')?;
        let end = pos.checked_add(len).ok_or(ErrorReply::Syntax)?;
        let after = end.checked_add(2).ok_or(ErrorReply::Syntax)?;
        if payload.get(end..after) != Some(b"\r\n".as_slice()) {
            return Err(ErrorReply::Syntax);
        }
        elements.push(payload.slice(pos..end));
        pos = after;
    }
    if pos != payload.len() {
        return Err(ErrorReply::Syntax);
    }
    Ok(elements)
}

/// Read `<prefix><decimal>\r\n` at `*pos` and advance past it.
fn header(payload: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, ErrorReply> {
    let rest = payload.get(*pos..).ok_or(ErrorReply::Syntax)?;
    let (&first, rest) = rest.split_first().ok_or(ErrorReply::Syntax)?;
    if first != prefix {
        return Err(ErrorReply::Syntax);
    }
    let digits_len = rest
        .iter()
        .position(|&b| b == b'\r')
        .ok_or(ErrorReply::Syntax)?;
    let value = parse_decimal(&rest[..digits_len]).ok_or(ErrorReply::Syntax)?;
    if rest.get(digits_len + 1) != Some(&b'\n') {
        return Err(ErrorReply::Syntax);
    }
    *pos += 1 + digits_len + 2;
    usize::try_from(value).map_err(|_| ErrorReply::Syntax)
}

/// Unsigned decimal ASCII, at least one digit, no sign; `None` on anything else or overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A reply payload (§2.3, §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK\r\n`: SET applied, KEYNOTIFY registered or removed.
    Ok,
    /// `:<n>\r\n`: DEL/VDEL counts (`:1`, `:0`), and `:-1` for a failed NX/NEX/VDEL condition.
    Integer(i64),
    /// `$<len>\r\n<bytes>\r\n`: a GET hit (an empty value is `$0\r\n\r\n`).
    Bulk(Bytes),
    /// `$-1\r\n`: a GET miss.
    Null,
    /// `-ERR <message>\r\n`.
    Error(ErrorReply),
    /// A SCAN page: `*1\r\n*<k>\r\n<keys>` when final, `*2\r\n*<k>\r\n<keys>$<len>\r\n<token>\r\n`
    /// when a continuation token follows.
    ScanPage {
        keys: Vec<Bytes>,
        token: Option<Bytes>,
    },
}

impl Reply {
    /// `:-1`: the NX/NEX or VDEL condition did not hold (Rust maps only this to "not applied").
    pub const NOT_APPLIED: Reply = Reply::Integer(-1);
    /// `:1`: DEL/VDEL removed the key.
    pub const DELETED: Reply = Reply::Integer(1);
    /// `:0`: DEL/VDEL on an absent key, KEYNOTIFY STOP with no registration.
    pub const ABSENT: Reply = Reply::Integer(0);

    /// Append the exact reply bytes to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Reply::Ok => buf.put_slice(b"+OK\r\n"),
            Reply::Integer(n) => {
                buf.put_u8(b':');
                buf.put_slice(n.to_string().as_bytes());
                buf.put_slice(b"\r\n");
            }
            Reply::Bulk(value) => put_bulk(buf, value),
            Reply::Null => buf.put_slice(b"$-1\r\n"),
            Reply::Error(error) => error.encode(buf),
            Reply::ScanPage { keys, token } => {
                put_array_header(buf, if token.is_some() { 2 } else { 1 });
                put_array_header(buf, keys.len());
                for key in keys {
                    put_bulk(buf, key);
                }
                if let Some(token) = token {
                    put_bulk(buf, token);
                }
            }
        }
    }

    /// The reply as one payload.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }
}

impl From<ErrorReply> for Reply {
    fn from(error: ErrorReply) -> Self {
        Reply::Error(error)
    }
}

/// A KEYNOTIFY notification payload (§4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Any successful SET: `*4 NOTIFY SET VALUE <new value>` (VALUE is always present; Rust
    /// requires the exact prefix and .NET four elements).
    Set(Bytes),
    /// DEL, VDEL and TTL expiry: `*2 NOTIFY DELETE` (`DELETE`, not D1's `DEL`).
    Delete,
}

impl Notification {
    /// The notification as one payload.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            Notification::Set(value) => {
                buf.put_slice(b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n");
                put_bulk(&mut buf, value);
            }
            Notification::Delete => buf.put_slice(b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"),
        }
        buf.freeze()
    }
}

fn put_array_header(buf: &mut BytesMut, len: usize) {
    buf.put_u8(b'*');
    buf.put_slice(len.to_string().as_bytes());
    buf.put_slice(b"\r\n");
}

fn put_bulk(buf: &mut BytesMut, value: &[u8]) {
    buf.put_u8(b'$');
    buf.put_slice(value.len().to_string().as_bytes());
    buf.put_slice(b"\r\n");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Vec<Bytes>, ErrorReply> {
        parse_array(&Bytes::copy_from_slice(input))
    }

    #[test]
    fn binary_values_use_the_declared_length() {
        let elements = parse(b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n").unwrap();
        assert_eq!(
            elements,
            [Bytes::from_static(b"GET"), Bytes::from_static(b"a\r\nb")]
        );
        let elements = parse(b"*1\r\n$3\r\n\0\0\0\r\n").unwrap();
        assert_eq!(elements[0].as_ref(), b"\0\0\0");
    }

    #[test]
    fn malformed_framing_is_a_syntax_error() {
        for input in [
            &b"hello"[..],
            b"",
            b"*",
            b"*-1\r\n",
            b"*+1\r\n$1\r\na\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$2\r\na\r\n",
            b"*1\r\n$1\r\nab\r\n",
            b"*1\r\n$1\r\na\r\nextra",
            b"*2\r\n$1\r\na\r\n",
            b"*1\r\n+OK\r\n",
            b"*1\n$1\r\na\r\n",
            b"*99999999999999999999999\r\n",
            b"*1\r\n$18446744073709551615\r\na\r\n",
            b"GET k\r\n",
        ] {
            assert_eq!(parse(input), Err(ErrorReply::Syntax), "{input:?}");
        }
    }

    #[test]
    fn replies_encode_exactly() {
        assert_eq!(Reply::Ok.to_bytes().as_ref(), b"+OK\r\n");
        assert_eq!(Reply::NOT_APPLIED.to_bytes().as_ref(), b":-1\r\n");
        assert_eq!(Reply::DELETED.to_bytes().as_ref(), b":1\r\n");
        assert_eq!(Reply::ABSENT.to_bytes().as_ref(), b":0\r\n");
        assert_eq!(Reply::Null.to_bytes().as_ref(), b"$-1\r\n");
        let hit = Reply::Bulk(Bytes::from_static(b"1234"));
        assert_eq!(hit.to_bytes().as_ref(), b"$4\r\n1234\r\n");
        assert_eq!(Reply::Bulk(Bytes::new()).to_bytes().as_ref(), b"$0\r\n\r\n");
        let error = Reply::from(ErrorReply::Syntax);
        assert_eq!(error.to_bytes().as_ref(), b"-ERR syntax error\r\n");
    }

    #[test]
    fn every_error_string_is_exact() {
        let cases = [
            (ErrorReply::TimestampTooFarInFuture, "the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized"),
            (ErrorReply::FencingTokenRequired, "a fencing token is required for this request"),
            (ErrorReply::FencingTokenTooFarInFuture, "the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized"),
            (ErrorReply::FencingTokenLowerVersion, "the request fencing token is a lower version than the fencing token protecting the resource"),
            (ErrorReply::QuotaExceeded, "the quota has been exceeded"),
            (ErrorReply::Syntax, "syntax error"),
            (ErrorReply::NotAuthorized, "not authorized"),
            (ErrorReply::UnknownCommand, "unknown command"),
            (ErrorReply::WrongNumberOfArguments, "wrong number of arguments"),
            (ErrorReply::MissingTimestamp, "missing timestamp"),
            (ErrorReply::MalformedTimestamp, "malformed timestamp"),
            (ErrorReply::KeyLengthZero, "the key length is zero"),
        ];
        for (error, message) in cases {
            let expected = format!("-ERR {message}\r\n");
            assert_eq!(Reply::Error(error).to_bytes().as_ref(), expected.as_bytes());
        }
    }

    #[test]
    fn scan_pages_encode_as_in_the_draft() {
        let last = Reply::ScanPage {
            keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")],
            token: None,
        };
        assert_eq!(
            last.to_bytes().as_ref(),
            b"*1\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n"
        );
        let more = Reply::ScanPage {
            keys: vec![],
            token: Some(Bytes::from_static(b"\x01\x02")),
        };
        assert_eq!(more.to_bytes().as_ref(), b"*2\r\n*0\r\n$2\r\n\x01\x02\r\n");
    }

    /// §8 vector 12: the SET and DELETE notification payloads.
    #[test]
    fn vector_12_notification_payloads() {
        let set = Notification::Set(Bytes::from_static(b"abc"));
        assert_eq!(
            set.to_bytes().as_ref(),
            b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n"
        );
        assert_eq!(
            Notification::Delete.to_bytes().as_ref(),
            b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"
        );
    }

    /// §8 vectors 1, 4, 6 and 7: the reply payloads of SET, GET, NX, VDEL and DEL.
    #[test]
    fn vector_01_set_ok_and_get_hit() {
        assert_eq!(Reply::Ok.to_bytes().as_ref(), b"+OK\r\n");
        assert_eq!(
            Reply::Bulk(Bytes::from_static(b"v")).to_bytes().as_ref(),
            b"$1\r\nv\r\n"
        );
    }

    #[test]
    fn vector_04_set_nx_not_applied() {
        assert_eq!(Reply::NOT_APPLIED.to_bytes().as_ref(), b":-1\r\n");
        assert_eq!(Reply::Ok.to_bytes().as_ref(), b"+OK\r\n");
    }

    #[test]
    fn vector_06_vdel_mismatch_deleted_absent() {
        assert_eq!(Reply::NOT_APPLIED.to_bytes().as_ref(), b":-1\r\n");
        assert_eq!(Reply::DELETED.to_bytes().as_ref(), b":1\r\n");
        assert_eq!(Reply::ABSENT.to_bytes().as_ref(), b":0\r\n");
    }

    #[test]
    fn vector_07_del_and_get_missing() {
        assert_eq!(Reply::ABSENT.to_bytes().as_ref(), b":0\r\n");
        assert_eq!(Reply::Null.to_bytes().as_ref(), b"$-1\r\n");
    }

    /// §8 vector 11: the wire bytes of the three errors.
    #[test]
    fn vector_11_error_replies() {
        let wire = |e| Reply::Error(e).to_bytes();
        assert_eq!(
            wire(ErrorReply::UnknownCommand).as_ref(),
            b"-ERR unknown command\r\n"
        );
        assert_eq!(
            wire(ErrorReply::WrongNumberOfArguments).as_ref(),
            b"-ERR wrong number of arguments\r\n"
        );
        assert_eq!(wire(ErrorReply::Syntax).as_ref(), b"-ERR syntax error\r\n");
    }
}
