//! SCAN (statestore.md §10): pages of live keys matching a glob, with bounded work.

use std::collections::BTreeMap;

use bytes::Bytes;
use gatehouse_config::glob::Glob;

use super::super::error::ErrorReply;
use super::super::resp3::Reply;
use super::Store;

/// Keys returned per SCAN page at most.
pub const SCAN_PAGE_SIZE: usize = 100;
/// Keys examined per SCAN request at most; past this a page (possibly empty) ends with a
/// continuation token, so one request's work stays bounded whatever the pattern.
pub const SCAN_BUDGET: usize = 8 * SCAN_PAGE_SIZE;
/// Glob matching steps one SCAN request may spend ([`Glob::matches_within`], about a few
/// milliseconds): a page ends early, before the key that would cross it, so a long pattern
/// against long keys cannot stall the state store. A single key that alone needs more is
/// `-ERR the pattern is too complex` (only a hostile pattern gets there).
pub const SCAN_MATCH_BUDGET: u64 = 1 << 22;

impl Store {
    /// SCAN (§10): live keys after `token` (exclusive; keys are visited in byte order, so
    /// the token is simply the last key examined) whose whole UTF-8 text matches the glob
    /// `pattern` ([`gatehouse_config::glob`]: `[!...]` negates, `^` is literal, as the AIO
    /// SDK expects) and that `readable` lets through. Non-UTF-8 keys are never returned. An
    /// invalid or non-UTF-8 pattern is `-ERR syntax error`. The matching work is bounded
    /// by [`SCAN_MATCH_BUDGET`] as well as [`SCAN_BUDGET`].
    pub fn scan(
        &self,
        pattern: &[u8],
        token: Option<&[u8]>,
        now_ms: u64,
        readable: impl Fn(&[u8]) -> bool,
    ) -> Reply {
        scan_after(
            &self.entries,
            token,
            |entry| !entry.is_expired(now_ms),
            pattern,
            readable,
        )
    }
}

/// One SCAN page of the keys of `entries` after `token` (exclusive), each live when
/// `live` says so. The node's own store and cluster mode's view of the shared keys
/// (`service::shared::Usage`) both keep their keys in a `BTreeMap` in byte order and
/// differ only in how an entry tells its expiry, so one function finds the start of
/// the page for both.
pub fn scan_after<V>(
    entries: &BTreeMap<Bytes, V>,
    token: Option<&[u8]>,
    live: impl Fn(&V) -> bool,
    pattern: &[u8],
    readable: impl Fn(&[u8]) -> bool,
) -> Reply {
    use std::ops::Bound;
    let start = token.map_or(Bound::Unbounded, |t| {
        Bound::Excluded(Bytes::copy_from_slice(t))
    });
    let keys = entries
        .range::<Bytes, _>((start, Bound::Unbounded))
        .map(|(key, entry)| (key, live(entry)));
    scan_page(pattern, keys, readable)
}

/// One SCAN page (see [`Store::scan`]) of `keys`: every key after the token, in byte
/// order, each with whether it is live (not expired). Reached through [`scan_after`] by
/// the node's own store and cluster mode's view of the shared keys, so both answer with
/// the same matching, pages, budgets and errors.
fn scan_page<'a>(
    pattern: &[u8],
    keys: impl Iterator<Item = (&'a Bytes, bool)>,
    readable: impl Fn(&[u8]) -> bool,
) -> Reply {
    let Some(matcher) = std::str::from_utf8(pattern)
        .ok()
        .and_then(|p| Glob::new(p).ok())
    else {
        return ErrorReply::Syntax.into();
    };
    let mut found = Vec::new();
    let mut range = keys.peekable();
    let mut examined = 0;
    let mut budget = SCAN_MATCH_BUDGET;
    let mut previous: Option<&Bytes> = None;
    while let Some((key, live)) = range.next() {
        let text = match std::str::from_utf8(key) {
            Ok(text) if live => Some(text),
            _ => None, // expired, or not UTF-8
        };
        let matched = text.map_or(Ok(false), |t| matcher.matches_within(t, &mut budget));
        let matched = match matched {
            Ok(matched) => matched,
            // The budget ran out on this key: end the page before it, so the next
            // request starts here with a whole budget. If this key was the first, even
            // a whole budget is not enough for it.
            Err(_) => match previous {
                Some(previous) => {
                    return Reply::ScanPage {
                        keys: found,
                        token: Some(previous.clone()),
                    }
                }
                None => return ErrorReply::PatternTooComplex.into(),
            },
        };
        examined += 1;
        previous = Some(key);
        if matched && readable(key) {
            found.push(key.clone());
        }
        if (found.len() >= SCAN_PAGE_SIZE || examined >= SCAN_BUDGET) && range.peek().is_some() {
            return Reply::ScanPage {
                keys: found,
                token: Some(key.clone()),
            };
        }
    }
    Reply::ScanPage {
        keys: found,
        token: None,
    }
}
