//! Authorization policies: the structure of each rule and the syntax of everything in it.
//!
//! Checked per entry, each problem at the entry's own path
//! (`authorizations[0].authorizationPolicies.rules[1].brokerResources[0].topics[2]`):
//! - `principals.clientIds` / `usernames`: non-empty; known tokens (anywhere in the text).
//!   `principals.attributes`: no empty set (it would match every client), no empty name.
//! - `brokerResources[].topics`: none for Connect, some for Publish and Subscribe; each a
//!   valid MQTT topic filter (gatehouse-protocol's rules) in which a token is the whole text
//!   of its level; no `$share/<group>/` prefix (rules name plain filters; a client's shared
//!   subscription is checked on its inner filter).
//! - `brokerResources[].clientIds`: non-empty glob patterns (`*`, `?`, `[...]`) with tokens.
//! - `stateStoreResources[].keys`: some; each non-empty; `Pattern` keys are globs with
//!   tokens, `String` keys any text, `Binary` keys standard padded base64.
//!
//! Token syntax is [`crate::tokens`]'s; braces are reserved for tokens everywhere tokens are
//! substituted, so glob alternation (`{a,b}`) does not exist. Globs are checked with
//! [`crate::glob`] (the broker's one dialect), after replacing each token with a placeholder letter:
//! what passes here compiles in the broker, whatever value a token takes (the broker escapes
//! substituted values).

use base64::Engine as _;

use super::{Loc, Report};
use crate::model::*;
use crate::tokens::{self, Part};

/// What a token stands for while checking the text around it: one ordinary character, valid
/// in a topic level and literal in a glob.
const PLACEHOLDER: &str = "x";

pub(super) fn check_authorization(authorization: &Authorization, loc: &Loc, report: &mut Report) {
    for (r, rule) in authorization
        .authorization_policies
        .rules
        .iter()
        .enumerate()
    {
        let base = loc.at(format!("authorizationPolicies.rules[{r}]"));
        check_principals(&rule.principals, &format!("{base}.principals"), report);
        for (k, resource) in rule.broker_resources.iter().enumerate() {
            check_broker_resource(resource, &format!("{base}.brokerResources[{k}]"), report);
        }
        for (k, resource) in rule.state_store_resources.iter().enumerate() {
            check_state_store_resource(
                resource,
                &format!("{base}.stateStoreResources[{k}]"),
                report,
            );
        }
    }
}

fn check_principals(principals: &Principals, base: &str, report: &mut Report) {
    for (field, what, values) in [
        ("clientIds", "client id", &principals.client_ids),
        ("usernames", "username", &principals.usernames),
    ] {
        for (i, value) in values.iter().enumerate() {
            let path = format!("{base}.{field}[{i}]");
            if value.is_empty() {
                report.error(path, format!("empty {what}; remove it or write one"));
            } else if let Err(err) = tokens::parse(value) {
                report.error(path, format!("`{value}`: {err}"));
            }
        }
    }
    for (i, set) in principals.attributes.iter().enumerate() {
        let path = format!("{base}.attributes[{i}]");
        if set.is_empty() {
            report.error(
                path,
                "empty attribute set: it would match every client; \
                 write `name: value` pairs that a client must all have",
            );
        } else if set.contains_key("") {
            report.error(path, "empty attribute name");
        }
    }
}

fn check_broker_resource(resource: &BrokerResource, base: &str, report: &mut Report) {
    let path = format!("{base}.topics");
    match resource.method {
        BrokerResourceMethod::Connect if !resource.topics.is_empty() => report.error(
            path,
            "Connect resources carry no topics (use clientIds to narrow Connect; \
             allow topics with Publish or Subscribe)",
        ),
        BrokerResourceMethod::Connect => {}
        BrokerResourceMethod::Publish | BrokerResourceMethod::Subscribe => {
            if resource.topics.is_empty() {
                report.error(
                    path,
                    format!("{} needs at least one topic filter", resource.method),
                );
            }
            for (i, topic) in resource.topics.iter().enumerate() {
                check_topic(topic, &format!("{base}.topics[{i}]"), report);
            }
        }
    }
    for (i, pattern) in resource.client_ids.iter().enumerate() {
        let path = format!("{base}.clientIds[{i}]");
        if pattern.is_empty() {
            report.error(
                path,
                "empty client id pattern; remove it (no clientIds = any client id) or write \
                 a glob such as `{principal.attributes.building}*`",
            );
        } else {
            check_glob(pattern, &path, "client id pattern", report);
        }
    }
}

/// A topic filter of a rule.
fn check_topic(topic: &str, path: &str, report: &mut Report) {
    if topic == "$share" || topic.starts_with("$share/") {
        let inner = topic
            .strip_prefix("$share/")
            .and_then(|rest| rest.split_once('/'))
            .map_or("<filter>", |(_, filter)| filter);
        report.error(
            path,
            format!(
                "`{topic}`: rules name plain topic filters, not shared subscriptions; write \
                 `{inner}` (a client's `$share/<group>/<filter>` subscription is authorized \
                 on its `<filter>`)"
            ),
        );
        return;
    }
    let parts = match tokens::parse(topic) {
        Ok(parts) => parts,
        Err(err) => {
            report.error(path, format!("`{topic}`: {err}"));
            return;
        }
    };
    // A token must be the whole text of its level; levels are built from the parts (not by
    // splitting the text) since an attribute name may contain `/`.
    let mut levels: Vec<Vec<Part<'_>>> = vec![Vec::new()];
    for part in &parts {
        match part {
            Part::Text(text) => {
                let mut pieces = text.split('/');
                if let Some(first) = pieces.next().filter(|p| !p.is_empty()) {
                    levels
                        .last_mut()
                        .expect("levels starts with one level and only grows")
                        .push(Part::Text(first));
                }
                for piece in pieces {
                    levels.push(Vec::new());
                    if !piece.is_empty() {
                        levels
                            .last_mut()
                            .expect("levels starts with one level and only grows")
                            .push(Part::Text(piece));
                    }
                }
            }
            token => levels
                .last_mut()
                .expect("levels starts with one level and only grows")
                .push(*token),
        }
    }
    for level in levels
        .iter()
        .filter(|level| level.len() > 1 && level.iter().any(Part::is_token))
    {
        let text: String = level.iter().map(Part::to_string).collect();
        let token = level
            .iter()
            .find(|p| p.is_token())
            .expect("only levels holding a token are kept");
        report.error(
            path,
            format!(
                "`{topic}`: topic level `{text}` mixes a token with other text; a token must be \
                 the whole text of its level (like `clients/{token}/#`, not `client-{token}/#`)"
            ),
        );
    }
    let probe = substitute(&parts);
    if let Err(err) = gatehouse_protocol::topic::validate_topic_filter(&probe) {
        report.error(
            path,
            format!("`{topic}` is not a valid MQTT topic filter: {err}"),
        );
    }
}

/// A glob with tokens (resource `clientIds`, `Pattern` keys).
fn check_glob(pattern: &str, path: &str, what: &str, report: &mut Report) {
    check_glob_with(pattern, path, what, Tokens::Allowed, report);
}

/// Whether `{principal.*}` tokens may appear in a key or glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tokens {
    /// Authorization rules: substituted with the client's values.
    Allowed,
    /// Persistence settings: there is no client to take values from, so braces are only
    /// reserved (as in authorization, so a key means the same in both places).
    Reserved,
}

/// A glob at `path`; with [`Tokens::Reserved`] (persistence) a token is an error. Shared with
/// `validate/persistence.rs` so that keys and client id globs mean the same in both places.
pub(super) fn check_glob_with(
    pattern: &str,
    path: &str,
    what: &str,
    tokens: Tokens,
    report: &mut Report,
) {
    let parts = match tokens::parse(pattern) {
        Ok(parts) => parts,
        Err(err) => {
            let hint = if err.is_not_a_token() {
                " (glob alternation `{a,b}` is not supported: list each alternative)"
            } else {
                ""
            };
            report.error(path, format!("`{pattern}`: {err}{hint}"));
            return;
        }
    };
    if tokens == Tokens::Reserved {
        if let Some(token) = parts.iter().find(|p| p.is_token()) {
            report.error(
                path,
                format!(
                    "`{pattern}`: {token} is substituted only in authorization rules; here \
                     there is no client to take it from (a key with a literal brace needs \
                     keyType String)"
                ),
            );
            return;
        }
    }
    if let Some(why) = tokens::glob_token_misplaced(&parts) {
        report.error(path, format!("`{pattern}`: {why}"));
        return;
    }
    let glob = substitute(&parts);
    if let Some(why) = caret_class(&glob) {
        report.error(path, format!("`{pattern}`: {why}"));
        return;
    }
    if let Err(err) = crate::glob::Glob::new(&glob) {
        report.error(
            path,
            format!(
                "`{pattern}` is not a valid {what}: {err}; globs use `*` (any text), `?` (one \
                 character), `[...]` (one of a set, `[!...]` none of it; `^` is literal) and \
                 `\\` to escape"
            ),
        );
    }
}

fn check_state_store_resource(resource: &StateStoreResource, base: &str, report: &mut Report) {
    check_keys(
        resource.key_type,
        &resource.keys,
        base,
        Tokens::Allowed,
        report,
    );
}

/// The `keys` of a state store resource (authorization rule or persistence settings) at
/// `<base>.keys`: some; each non-empty; `Pattern` keys globs, `Binary` keys base64.
pub(super) fn check_keys(
    key_type: KeyType,
    keys: &[String],
    base: &str,
    tokens: Tokens,
    report: &mut Report,
) {
    if keys.is_empty() {
        report.error(format!("{base}.keys"), "at least one key is required");
    }
    for (i, key) in keys.iter().enumerate() {
        let path = format!("{base}.keys[{i}]");
        if key.is_empty() {
            report.error(path, "empty key");
            continue;
        }
        match key_type {
            KeyType::Pattern => check_glob_with(key, &path, "key pattern", tokens, report),
            KeyType::String => {
                if tokens == Tokens::Allowed && key.contains("{principal.") {
                    report.warn(
                        path,
                        format!(
                            "`{key}` is matched exactly: tokens are substituted only in \
                             keyType Pattern"
                        ),
                    );
                }
            }
            KeyType::Binary => match base64::engine::general_purpose::STANDARD.decode(key) {
                Err(err) => report.error(
                    path,
                    format!(
                        "`{key}` is not valid base64 ({}); Binary keys are written in \
                         standard base64 with `=` padding, e.g. `dGVzdA==` for `test`",
                        base64_fault(&err)
                    ),
                ),
                Ok(bytes) if bytes.is_empty() => report.error(path, "empty key"),
                Ok(_) => {}
            },
        }
    }
}

/// What is wrong with a base64 text, in words.
fn base64_fault(err: &base64::DecodeError) -> String {
    use base64::DecodeError::*;
    let symbol = |byte: u8| {
        if byte.is_ascii_graphic() || byte == b' ' {
            format!("{:?}", char::from(byte))
        } else {
            format!("byte 0x{byte:02x}")
        }
    };
    match *err {
        InvalidByte(offset, b'=') => format!("`=` at offset {offset} is not final padding"),
        InvalidByte(offset, byte) => format!(
            "{} at offset {offset} is not in the alphabet A-Z a-z 0-9 + /",
            symbol(byte)
        ),
        InvalidLength(_) => "its length is not a multiple of 4 once padded".into(),
        InvalidLastSymbol {
            offset, symbol: s, ..
        } => format!(
            "the last symbol {} at offset {offset} has bits that encode nothing",
            symbol(s)
        ),
        InvalidPadding => "missing or wrong `=` padding".into(),
    }
}

/// The text with every token replaced by [`PLACEHOLDER`].
fn substitute(parts: &[Part<'_>]) -> String {
    parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => text,
            _ => PLACEHOLDER,
        })
        .collect()
}

/// A class that opens with `^` (`[^0-9]`). In AIO's glob rules (and ours) `^` is an
/// ordinary member there, but other glob dialects read it as "none of", and Gatehouse did
/// too before issue 18. An operator's `[^t]*` meant to keep `t...` out would now let it in,
/// so in configuration it is refused rather than silently widened: `[!...]` says "none of",
/// and a literal `^` can stand anywhere in the class but first.
fn caret_class(glob: &str) -> Option<&'static str> {
    let mut chars = glob.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if !in_class => {
                chars.next();
            }
            '[' if !in_class => {
                in_class = true;
                match chars.clone().next() {
                    Some('^') => {
                        return Some(
                            "a class may not start with `^`: write `[!...]` for \"none of\", \
                             or put a literal `^` after the first member",
                        )
                    }
                    Some('!') => {
                        chars.next();
                    }
                    _ => {}
                }
                // `]` right after `[` (or `[!`) is a member, not the end.
                if chars.clone().next() == Some(']') {
                    chars.next();
                }
            }
            ']' if in_class => in_class = false,
            _ => {}
        }
    }
    None
}
