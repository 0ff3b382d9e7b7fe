//! The error replies of the state store (statestore.md §2.4).
//!
//! Clients (Rust `ServiceError`, Go `errors.go`, .NET `StateStoreOperationException`) compare
//! these messages byte for byte, so each variant's text is the exact message after `-ERR `.

use bytes::{BufMut, BytesMut};

/// A failure the state store reports inside the RESP3 payload as `-ERR <message>\r\n`
/// (always with `__stat=200`, §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorReply {
    /// `__ts` is more than 60 s ahead of the server clock (§3.2).
    #[error(
        "the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized"
    )]
    TimestampTooFarInFuture,
    /// The key holds a fencing token and the request carries no `__ft` (§3.4).
    #[error("a fencing token is required for this request")]
    FencingTokenRequired,
    /// `__ft` is more than 60 s ahead of the server clock, even for a new key (§2.4).
    #[error(
        "the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized"
    )]
    FencingTokenTooFarInFuture,
    /// `__ft` is lower than the stored token ("than", not D1's typo "that").
    #[error(
        "the request fencing token is a lower version than the fencing token protecting the resource"
    )]
    FencingTokenLowerVersion,
    /// The key-count quota is reached (§6.3).
    #[error("the quota has been exceeded")]
    QuotaExceeded,
    /// Malformed RESP3 or a bad option (§2.1).
    #[error("syntax error")]
    Syntax,
    /// The key-level authorization check failed (§7).
    #[error("not authorized")]
    NotAuthorized,
    /// An unrecognized verb.
    #[error("unknown command")]
    UnknownCommand,
    /// Bad arity for a known verb.
    #[error("wrong number of arguments")]
    WrongNumberOfArguments,
    /// SET without `__ts`.
    #[error("missing timestamp")]
    MissingTimestamp,
    /// `__ts` or `__ft` is not an HLC string.
    #[error("malformed timestamp")]
    MalformedTimestamp,
    /// SCAN: matching the pattern against one key alone needs more than the whole
    /// per-request budget (`store::SCAN_MATCH_BUDGET`). Gatehouse's own message (the AIO
    /// documents none): only a hostile pattern against long keys gets here.
    #[error("the pattern is too complex")]
    PatternTooComplex,
    /// An empty key, for any command (§2.2).
    #[error("the key length is zero")]
    KeyLengthZero,
}

impl ErrorReply {
    /// Append `-ERR <message>\r\n`: one space after `ERR`, never a colon (.NET requires it).
    pub fn encode(self, buf: &mut BytesMut) {
        buf.put_slice(b"-ERR ");
        buf.put_slice(self.to_string().as_bytes());
        buf.put_slice(b"\r\n");
    }
}
