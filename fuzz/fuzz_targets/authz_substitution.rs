//! Substitution never widens access (security.md invariant 5): a template with
//! `{principal.*}` tokens in any place a rule can hold one (Publish and Subscribe topics,
//! Connect `clientIds` globs, `Pattern` and `String` state store keys), filled with arbitrary
//! client values, decides on an arbitrary request.
//!
//! Input: a place byte, then five fields separated by 0xFF: template, client id, username
//! (empty: none), the value of attribute `v`, and the request (topic, filter, client id or
//! key), in which the bytes 0x01, 0x02, 0x03 stand for the client id, the username and the
//! attribute value, so that requests built around the values are easy to reach.
//!
//! Invariants checked (`gatehouse::authz::substitution`, shared with the property tests in
//! broker/src/authz/proptests.rs; any violation aborts the fuzzer):
//! - what validation accepts compiles;
//! - Allow on a topic or filter: every token's value is non-empty, holds no `+ # /`, and is
//!   literally the level at the token's position;
//! - Allow on a glob (client id, Pattern key): every token's value is non-empty and occurs
//!   literally in what was matched;
//! - Allow on a String key: the key is the text as written (no substitution);
//! - the decision is the one `gatehouse explain`'s trace reports;
//! - no panic.

#![no_main]

use gatehouse::authz::substitution::{check, Case, Place};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&place, rest)) = data.split_first() else {
        return;
    };
    let place = match place % 5 {
        0 => Place::Publish,
        1 => Place::Subscribe,
        2 => Place::ClientId,
        3 => Place::PatternKey,
        _ => Place::StringKey,
    };
    let mut fields = rest.split(|&b| b == 0xFF).map(String::from_utf8_lossy);
    let mut next = || fields.next().unwrap_or_default().into_owned();
    let (template, client_id, username, attribute, request) = (next(), next(), next(), next(), next());
    // A client id and a topic cannot hold U+0000 (MQTT 5 §1.5.4); the codec refuses it.
    if [&client_id, &username, &attribute, &request]
        .iter()
        .any(|s| s.contains('\0'))
    {
        return;
    }
    let candidate = request
        .replace('\u{1}', &client_id)
        .replace('\u{2}', &username)
        .replace('\u{3}', &attribute);
    let case = Case {
        place,
        template: &template,
        client_id: &client_id,
        username: (!username.is_empty()).then_some(username.as_str()),
        attribute: &attribute,
        candidate: &candidate,
    };
    if let Err(violation) = check(&case) {
        panic!("substitution widened access: {violation}");
    }
});
