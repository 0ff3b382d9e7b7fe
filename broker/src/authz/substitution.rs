//! The substitution property, checkable on any template: shared by the `authz_substitution`
//! fuzz target (fuzz/fuzz_targets/authz_substitution.rs) and the property tests
//! (authz/proptests.rs), so that both check exactly the same thing. Not an API: hidden from
//! the docs, used by nothing else.
//!
//! # The property (behaviour.md §4, security.md invariant 5)
//!
//! A value substituted into a template is matched literally: wildcard, glob and separator
//! characters in it never act as such. Stated so that it can be checked without a second
//! implementation of matching, for one rule holding one template and a client whose values
//! are arbitrary:
//!
//! - **Topic filters** (Publish, Subscribe): a token is the whole text of its level. If the
//!   decision is Allow, every token's value is non-empty, holds no `+`, `#` or `/`, and is
//!   *literally* the level at the token's position of the topic (of the requested filter,
//!   `$share/<group>/` removed, for Subscribe).
//! - **Globs** (resource `clientIds`, `Pattern` keys): if the decision is Allow, every token's
//!   value is non-empty and occurs literally in the client id or key matched. (A glob can
//!   only match an escaped value by reading each of its characters as itself; a value that
//!   acted as a pattern, inside a `[...]` class or after an escaping `\`, could match text
//!   that does not contain it.)
//! - **Exact strings** (`String` keys): Allow means the key is the template with the values
//!   written in.
//!
//! And, whatever the decision: it is the one `gatehouse explain` reports (the first rule
//! whose trace allows is the rule `decide` names).

use std::collections::BTreeMap;

use gatehouse_config::tokens::{self, Part};

use super::policy::{Action, Policy};
use super::template::Subject;

/// Where the template sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `brokerResources[Publish].topics`; the candidate is a topic name.
    Publish,
    /// `brokerResources[Subscribe].topics`; the candidate is a SUBSCRIBE filter.
    Subscribe,
    /// `brokerResources[Connect].clientIds`; the candidate is the client id (so the
    /// `{principal.clientId}` value is the candidate itself).
    ClientId,
    /// `stateStoreResources[Read].keys` with `keyType: Pattern`; the candidate is a key.
    PatternKey,
    /// `stateStoreResources[Read].keys` with `keyType: String`; the candidate is a key.
    StringKey,
}

/// One check: a template in one place, the client's values, what the client asks for.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    pub place: Place,
    pub template: &'a str,
    /// The client id (ignored for [`Place::ClientId`], where it is the candidate).
    pub client_id: &'a str,
    /// The username (`None`: the client has none).
    pub username: Option<&'a str>,
    /// The value of attribute `v` (`{principal.attributes.v}`); the client has no other
    /// attribute a template can name except the rule's own `fuzz-rule`.
    pub attribute: &'a str,
    pub candidate: &'a str,
}

/// What happened, when the property held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Validation refused the template (nothing to check).
    Invalid,
    /// The candidate was not a valid topic / filter for the place (nothing to check).
    NotApplicable,
    Denied,
    Allowed,
}

/// The compiled one-rule policy for `place` and `template`; `Ok(None)` when validation
/// refuses it; `Err` when validation accepts what the broker cannot compile (a property
/// too: what validates compiles).
pub fn compile(place: Place, template: &str) -> Result<Option<Policy>, String> {
    use serde_json::json;
    let principals = json!({ "attributes": [ { "fuzz-rule": "1" } ] });
    let rule = match place {
        Place::Publish | Place::Subscribe => json!({
            "principals": principals,
            "brokerResources": [ {
                "method": if place == Place::Publish { "Publish" } else { "Subscribe" },
                "topics": [ template ],
            } ],
        }),
        Place::ClientId => json!({
            "principals": principals,
            "brokerResources": [ { "method": "Connect", "clientIds": [ template ] } ],
        }),
        Place::PatternKey | Place::StringKey => json!({
            "principals": principals,
            "brokerResources": [ { "method": "Connect" } ],
            "stateStoreResources": [ {
                "method": "Read",
                "keyType": if place == Place::PatternKey { "Pattern" } else { "String" },
                "keys": [ template ],
            } ],
        }),
    };
    // JSON is YAML: the configuration loader reads it like any file.
    let config = json!({
        "listeners": [ { "name": "lst", "ports": [ { "port": 0 } ] } ],
        "authorizations": [ { "name": "pol", "authorizationPolicies": { "rules": [ rule ] } } ],
    });
    let Ok(loaded) = gatehouse_config::load_str(&config.to_string(), "substitution.yaml") else {
        return Ok(None);
    };
    Policy::compile(&loaded.config.authorizations[0], "authorizations[0]")
        .map(Some)
        .map_err(|problems| {
            format!(
                "`{template}` passes validation but does not compile: {}",
                problems.join("; ")
            )
        })
}

/// Check the property for `case` (see the module docs); `Err` describes a violation.
pub fn check(case: &Case<'_>) -> Result<Checked, String> {
    let Some(policy) = compile(case.place, case.template)? else {
        return Ok(Checked::Invalid);
    };
    check_compiled(&policy, case)
}

/// [`check`] with the policy [`compile`] made for `case.place` and `case.template`.
pub fn check_compiled(policy: &Policy, case: &Case<'_>) -> Result<Checked, String> {
    // String keys are not token syntax (any text, braces included).
    let parts = match tokens::parse(case.template) {
        Ok(parts) => parts,
        Err(_) if case.place == Place::StringKey => vec![Part::Text(case.template)],
        Err(e) => {
            return Err(format!(
                "`{}` compiled but does not parse: {e}",
                case.template
            ))
        }
    };
    let client_id = match case.place {
        Place::ClientId => case.candidate,
        _ => case.client_id,
    };
    let attributes = BTreeMap::from([
        ("fuzz-rule".to_owned(), "1".to_owned()),
        ("v".to_owned(), case.attribute.to_owned()),
    ]);
    let subject = Subject {
        client_id,
        username: case.username,
        attributes: &attributes,
    };
    let value = |part: &Part<'_>| -> Option<&str> {
        match part {
            Part::Text(_) => None,
            Part::ClientId => Some(client_id),
            Part::Username => Some(case.username.unwrap_or("")),
            Part::Attribute(name) => Some(attributes.get(*name).map_or("", String::as_str)),
        }
    };
    // What is matched against the template, for topic places: the levels.
    let requested = match case.place {
        Place::Publish => {
            if gatehouse_protocol::topic::validate_topic_name(case.candidate).is_err() {
                return Ok(Checked::NotApplicable);
            }
            Some(case.candidate)
        }
        Place::Subscribe => {
            match gatehouse_protocol::topic::parse_subscription_filter(case.candidate) {
                Ok(parsed) => Some(parsed.filter),
                Err(_) => return Ok(Checked::NotApplicable),
            }
        }
        _ => None,
    };
    let action = match case.place {
        Place::Publish => Action::Publish(case.candidate),
        Place::Subscribe => Action::Subscribe(case.candidate),
        Place::ClientId => Action::Connect,
        Place::PatternKey | Place::StringKey => Action::StateStore {
            write: false,
            key: case.candidate.as_bytes(),
        },
    };
    let decision = policy.decide(&subject, &action);
    let traced = (0..policy.rule_count())
        .find(|&r| policy.trace(r, &subject, &action).is_some_and(|t| t.allows));
    // A reserved topic is denied before any rule is looked at; explain shows that reason.
    if traced != decision.rule && decision.reason != super::policy::RESERVED {
        return Err(format!(
            "decide says rule {:?}, explain's trace says {traced:?} for {case:?}",
            decision.rule
        ));
    }
    if !decision.allowed {
        return Ok(Checked::Denied);
    }
    let fail = |why: String| Err(format!("{why}; {case:?}"));
    match requested {
        Some(requested) => {
            // A token is a whole level: count levels in the parts (the text between
            // tokens holds the separators).
            let levels: Vec<&str> = requested.split('/').collect();
            let mut level = 0;
            for part in &parts {
                match part {
                    Part::Text(text) => level += text.matches('/').count(),
                    token => {
                        let v = value(token).unwrap_or("");
                        if v.is_empty() || v.contains(['+', '#', '/']) {
                            return fail(format!("allowed with the unusable value `{v}`"));
                        }
                        if levels.get(level) != Some(&v) {
                            return fail(format!(
                                "allowed although level {level} of `{requested}` is not the \
                                 value `{v}`"
                            ));
                        }
                    }
                }
            }
        }
        None if case.place == Place::StringKey => {
            if case.template != case.candidate {
                return fail("String key allowed that is not the key as written".to_owned());
            }
        }
        None => {
            for token in parts.iter().filter(|p| p.is_token()) {
                let v = value(token).unwrap_or("");
                if v.is_empty() || !case.candidate.contains(v) {
                    return fail(format!(
                        "glob allowed `{}` which does not contain the value `{v}` of {token}",
                        case.candidate
                    ));
                }
            }
        }
    }
    Ok(Checked::Allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: ordinary templates compile and allow their literal requests (so
    /// that the property tests and the fuzz target are not vacuous).
    #[test]
    fn ordinary_templates_allow_the_literal_request() {
        for (place, template, candidate) in [
            (Place::Publish, "a/{principal.attributes.v}/#", "a/val/x"),
            (
                Place::Subscribe,
                "a/{principal.clientId}/+",
                "$share/g/a/cid/x",
            ),
            (Place::ClientId, "{principal.attributes.v}-*", "val-1"),
            (Place::PatternKey, "k/{principal.username}/*", "k/user/1"),
            (Place::StringKey, "exact", "exact"),
        ] {
            let case = Case {
                place,
                template,
                client_id: "cid",
                username: Some("user"),
                attribute: "val",
                candidate,
            };
            assert_eq!(check(&case), Ok(Checked::Allowed), "{case:?}");
            let other = Case {
                candidate: "other",
                ..case
            };
            assert_eq!(check(&other), Ok(Checked::Denied), "{other:?}");
        }
    }
}
