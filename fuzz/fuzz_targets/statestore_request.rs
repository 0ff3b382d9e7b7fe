//! Feeds arbitrary bytes to the state store's request parsing: the RESP3 framing
//! (`resp3::parse_array`) and the typed request (`Request::parse`).
//!
//! Invariants checked (any violation aborts the fuzzer):
//! - no panic in `parse_array` or `Request::parse`;
//! - framing: whatever `parse_array` accepts re-frames canonically (`*N\r\n$len\r\n...`,
//!   no leading zeros) into bytes that are no longer than the input, equal to it when as
//!   long, and that parse to the same elements;
//! - `Request::parse` fails with a syntax error whenever the framing fails, and otherwise
//!   depends only on the elements (the canonical framing parses to the same result);
//! - a parsed request's key, if it has one, is non-empty;
//! - every parsed request, re-serialized canonically from its fields by the encoder below,
//!   parses to an equal `Request`, and so does the lower-case spelling of its words.

#![no_main]

use bytes::Bytes;
use gatehouse::statestore::resp3::parse_array;
use gatehouse::statestore::{ErrorReply, Request, SetCondition};
use libfuzzer_sys::fuzz_target;

/// The canonical RESP3 array of bulk strings.
fn frame<T: AsRef<[u8]>>(elements: &[T]) -> Bytes {
    let mut out = format!("*{}\r\n", elements.len()).into_bytes();
    for element in elements {
        let element = element.as_ref();
        out.extend_from_slice(format!("${}\r\n", element.len()).as_bytes());
        out.extend_from_slice(element);
        out.extend_from_slice(b"\r\n");
    }
    Bytes::from(out)
}

/// The elements of `request` in the canonical order: verb, key or pattern, arguments,
/// then SET's condition before its `PX`. `lower` spells the verb and option words in
/// lower case (they match case-insensitively).
fn elements(request: &Request, lower: bool) -> Vec<Bytes> {
    let word = |w: &'static str| {
        Bytes::from(if lower {
            w.to_ascii_lowercase()
        } else {
            w.to_owned()
        })
    };
    match request {
        Request::Get { key } => vec![word("GET"), key.clone()],
        Request::Del { key } => vec![word("DEL"), key.clone()],
        Request::VDel { key, value } => vec![word("VDEL"), key.clone(), value.clone()],
        Request::KeyNotify { key, stop } => {
            let mut e = vec![word("KEYNOTIFY"), key.clone()];
            if *stop {
                e.push(word("STOP"));
            }
            e
        }
        Request::Scan { pattern, token } => {
            let mut e = vec![word("SCAN"), pattern.clone()];
            e.extend(token.clone());
            e
        }
        Request::Set {
            key,
            value,
            condition,
            expiry_ms,
        } => {
            let mut e = vec![word("SET"), key.clone(), value.clone()];
            match condition {
                SetCondition::Always => {}
                SetCondition::NotExists => e.push(word("NX")),
                SetCondition::NotExistsOrEqual => e.push(word("NEX")),
            }
            if let Some(ms) = expiry_ms {
                e.push(word("PX"));
                e.push(Bytes::from(ms.to_string()));
            }
            e
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);

    // The framing alone.
    let framed = parse_array(&payload);
    if let Ok(parts) = &framed {
        let canonical = frame(parts);
        assert!(canonical.len() <= data.len(), "canonical framing is longer");
        if canonical.len() == data.len() {
            assert_eq!(&canonical[..], data, "same length, different framing");
        }
        assert_eq!(parse_array(&canonical).as_ref(), Ok(parts));
    }

    // The typed request.
    let parsed = Request::parse(&payload);
    match &framed {
        Err(_) => assert_eq!(parsed, Err(ErrorReply::Syntax)),
        Ok(parts) => assert_eq!(Request::parse(&frame(parts)), parsed),
    }
    if let Ok(request) = parsed {
        if let Some(key) = request.key() {
            assert!(!key.is_empty(), "empty key accepted: {request:?}");
        }
        for lower in [false, true] {
            let again = Request::parse(&frame(&elements(&request, lower)));
            assert_eq!(again.as_ref(), Ok(&request), "lower case: {lower}");
        }
    }
});
