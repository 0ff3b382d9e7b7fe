//! The `__ts` / `__ft` checks of one request and the fencing check (statestore.md §3.2,
//! §3.4, §3.5), as pure functions of the header values, the stored token and the clock.
//!
//! The spec's order is: syntax → key length → authz → `__ts` (SET) → `__ft` format and
//! skew → quota (new keys) → fencing → NX/NEX/VDEL condition → apply. [`check_stamps`] is
//! the `__ts` + `__ft` step and [`check_fence`] the fencing step; the caller runs authz
//! and quota between them.

use super::error::ErrorReply;
use super::hlc::Hlc;
use super::request::Request;

/// How a command treats `__ts` and `__ft` (§3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampRule {
    /// SET: `__ts` required and checked; `__ft` checked when present.
    Required,
    /// DEL, VDEL: `__ts` optional but checked (and folded into the clock) when present;
    /// `__ft` checked when present.
    Optional,
    /// GET, KEYNOTIFY, SCAN: both headers ignored, no fencing.
    Ignored,
}

impl StampRule {
    /// The rule of a parsed command.
    pub fn of(request: &Request) -> StampRule {
        match request {
            Request::Set { .. } => StampRule::Required,
            Request::Del { .. } | Request::VDel { .. } => StampRule::Optional,
            Request::Get { .. } | Request::KeyNotify { .. } | Request::Scan { .. } => {
                StampRule::Ignored
            }
        }
    }
}

/// The validated headers of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamps {
    /// `__ts`, for [`super::hlc::HybridClock::update`] (else use `now`).
    pub timestamp: Option<Hlc>,
    /// `__ft`, for [`check_fence`].
    pub fencing_token: Option<Hlc>,
}

/// Validate `__ts` then `__ft` against the server wall clock `now_ms`.
///
/// A `__ft` too far ahead is rejected even when the key does not exist (.NET
/// `TestStateStoreFencingTokenSkew` uses a new key), so this runs before any key lookup.
pub fn check_stamps(
    rule: StampRule,
    timestamp: Option<&str>,
    fencing_token: Option<&str>,
    now_ms: u64,
) -> Result<Stamps, ErrorReply> {
    if rule == StampRule::Ignored {
        return Ok(Stamps::default());
    }
    let timestamp = match (timestamp, rule) {
        (None, StampRule::Required) => return Err(ErrorReply::MissingTimestamp),
        (None, _) => None,
        (Some(raw), _) => Some(parse_checked(
            raw,
            now_ms,
            ErrorReply::TimestampTooFarInFuture,
        )?),
    };
    let fencing_token = fencing_token
        .map(|raw| parse_checked(raw, now_ms, ErrorReply::FencingTokenTooFarInFuture))
        .transpose()?;
    Ok(Stamps {
        timestamp,
        fencing_token,
    })
}

fn parse_checked(raw: &str, now_ms: u64, too_far: ErrorReply) -> Result<Hlc, ErrorReply> {
    let hlc: Hlc = raw.parse().map_err(|_| ErrorReply::MalformedTimestamp)?;
    if hlc.is_too_far_ahead(now_ms) {
        return Err(too_far);
    }
    Ok(hlc)
}

/// The fencing check of a SET, DEL or VDEL on a key whose stored token is `stored`
/// (`None` when the key is absent or unfenced). `Ok` is the token to keep with the key
/// after a SET: the presented one when it is new or higher, else the stored one.
/// (After a DEL/VDEL the token goes with the key.)
pub fn check_fence(
    stored: Option<&Hlc>,
    presented: Option<&Hlc>,
) -> Result<Option<Hlc>, ErrorReply> {
    match (stored, presented) {
        (None, presented) => Ok(presented.cloned()),
        (Some(_), None) => Err(ErrorReply::FencingTokenRequired),
        (Some(stored), Some(presented)) if presented < stored => {
            Err(ErrorReply::FencingTokenLowerVersion)
        }
        (Some(stored), Some(presented)) => Ok(Some(presented.max(stored).clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statestore::Reply;

    const NOW: u64 = 1_700_000_000_000;

    fn hlc(s: &str) -> Hlc {
        s.parse().unwrap()
    }

    fn wire(error: ErrorReply) -> String {
        String::from_utf8(Reply::Error(error).to_bytes().to_vec()).unwrap()
    }

    fn ts(ms: u64) -> String {
        hlc(&format!("{ms}:0:client")).to_string()
    }

    /// §8 vector 2: SET without `__ts`.
    #[test]
    fn vector_02_set_without_timestamp() {
        let result = check_stamps(StampRule::Required, None, None, NOW);
        assert_eq!(result, Err(ErrorReply::MissingTimestamp));
        assert_eq!(
            wire(ErrorReply::MissingTimestamp),
            "-ERR missing timestamp\r\n"
        );
    }

    /// §8 vector 3: `__ts="abc"`, and `__ts` two minutes ahead.
    #[test]
    fn vector_03_malformed_and_future_timestamp() {
        let result = check_stamps(StampRule::Required, Some("abc"), None, NOW);
        assert_eq!(result, Err(ErrorReply::MalformedTimestamp));
        assert_eq!(
            wire(ErrorReply::MalformedTimestamp),
            "-ERR malformed timestamp\r\n"
        );
        let ahead = ts(NOW + 120_000);
        let result = check_stamps(StampRule::Required, Some(&ahead), None, NOW);
        assert_eq!(result, Err(ErrorReply::TimestampTooFarInFuture));
        assert_eq!(
            wire(ErrorReply::TimestampTooFarInFuture),
            "-ERR the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized\r\n"
        );
        // Behind the server clock is fine.
        let behind = ts(NOW - 3_600_000);
        assert!(check_stamps(StampRule::Required, Some(&behind), None, NOW).is_ok());
    }

    /// §8 vector 8: the fencing sequence on one key.
    #[test]
    fn vector_08_fencing() {
        let f = hlc("1000:5:lock");
        // SET with __ft=F on a new key → accepted, F stored.
        let stored = check_fence(None, Some(&f)).unwrap();
        assert_eq!(stored.as_ref(), Some(&f));
        // SET with no __ft → token required.
        assert_eq!(
            check_fence(stored.as_ref(), None),
            Err(ErrorReply::FencingTokenRequired)
        );
        assert_eq!(
            wire(ErrorReply::FencingTokenRequired),
            "-ERR a fencing token is required for this request\r\n"
        );
        // SET with __ft < F → lower version.
        let lower = hlc("1000:4:lock");
        assert_eq!(
            check_fence(stored.as_ref(), Some(&lower)),
            Err(ErrorReply::FencingTokenLowerVersion)
        );
        assert_eq!(
            wire(ErrorReply::FencingTokenLowerVersion),
            "-ERR the request fencing token is a lower version than the fencing token protecting the resource\r\n"
        );
        // DEL with no __ft → the same missing-token error; with __ft >= F → accepted.
        assert_eq!(
            check_fence(stored.as_ref(), None),
            Err(ErrorReply::FencingTokenRequired)
        );
        assert!(check_fence(stored.as_ref(), Some(&f)).is_ok());
        let higher = hlc("1001:0:lock");
        assert_eq!(
            check_fence(stored.as_ref(), Some(&higher)),
            Ok(Some(higher.clone()))
        );
        // GET needs no __ft: its headers are ignored.
        assert_eq!(
            check_stamps(StampRule::Ignored, None, None, NOW),
            Ok(Stamps::default())
        );
    }

    /// §8 vector 9: `__ft` ten years ahead on a new key.
    #[test]
    fn vector_09_fencing_token_far_in_future() {
        let now_ts = ts(NOW);
        let ft = ts(NOW + 10 * 365 * 24 * 3_600_000);
        let result = check_stamps(StampRule::Required, Some(&now_ts), Some(&ft), NOW);
        assert_eq!(result, Err(ErrorReply::FencingTokenTooFarInFuture));
        assert_eq!(
            wire(ErrorReply::FencingTokenTooFarInFuture),
            "-ERR the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized\r\n"
        );
    }

    #[test]
    fn timestamp_is_checked_before_the_fencing_token() {
        let bad_ft = Some("nope");
        assert_eq!(
            check_stamps(StampRule::Required, None, bad_ft, NOW),
            Err(ErrorReply::MissingTimestamp)
        );
        let ahead = ts(NOW + 120_000);
        assert_eq!(
            check_stamps(StampRule::Required, Some(&ahead), bad_ft, NOW),
            Err(ErrorReply::TimestampTooFarInFuture)
        );
        let now_ts = ts(NOW);
        assert_eq!(
            check_stamps(StampRule::Required, Some(&now_ts), bad_ft, NOW),
            Err(ErrorReply::MalformedTimestamp)
        );
    }

    #[test]
    fn delete_timestamp_is_optional_but_checked() {
        assert_eq!(
            check_stamps(StampRule::Optional, None, None, NOW),
            Ok(Stamps::default())
        );
        assert_eq!(
            check_stamps(StampRule::Optional, Some("x"), None, NOW),
            Err(ErrorReply::MalformedTimestamp)
        );
        let ft = ts(NOW);
        let stamps = check_stamps(StampRule::Optional, None, Some(&ft), NOW).unwrap();
        assert_eq!(stamps.fencing_token, Some(hlc(&ft)));
    }

    #[test]
    fn get_ignores_even_garbage_headers() {
        assert_eq!(
            check_stamps(StampRule::Ignored, Some("x"), Some("y"), NOW),
            Ok(Stamps::default())
        );
    }
}
