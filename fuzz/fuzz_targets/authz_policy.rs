//! The authorization policy parser: arbitrary text as a configuration file, and as the
//! `rules:` of one policy, through the config crate (YAML, structure, `{principal.*}`
//! tokens, topic filters, globs, keys: config/src/validate/authz.rs, config/src/tokens.rs)
//! and the broker's compiler (broker/src/authz/policy.rs), then decisions on values taken
//! from the text.
//!
//! Invariants checked (any violation aborts the fuzzer):
//! - no panic in loading, validation, compilation or decisions;
//! - every policy of a configuration that validates compiles (validation promises it: the
//!   broker must never refuse a configuration `gatehouse check` accepted);
//! - for every subject and action tried, the rule `decide` names is the first rule whose
//!   `gatehouse explain` trace allows (except on topics reserved for the broker, denied
//!   before any rule);
//! - with `cache: Enabled`, the enforcing `Authorizer` (decision cache) agrees with
//!   `decide`, asked twice (a miss, then a hit).

#![no_main]

use std::collections::BTreeMap;

use gatehouse::auth::Principal;
use gatehouse::authz::{Action, Authorizer, Policy, Subject};
use libfuzzer_sys::fuzz_target;

const RULES_HEADER: &str = "listeners: [ { name: lst, ports: [ { port: 0 } ] } ]\n\
authorizations:\n  - name: pol\n    authorizationPolicies:\n      cache: Enabled\n      rules:\n";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let yaml = if mode & 1 == 0 {
        format!("{RULES_HEADER}{text}")
    } else {
        text.clone().into_owned()
    };
    let Ok(loaded) = gatehouse_config::load_str(&yaml, "fuzz.yaml") else {
        return;
    };
    let values = values_from(&text);
    for (i, auth) in loaded.config.authorizations.iter().enumerate() {
        let policy = match Policy::compile(auth, &format!("authorizations[{i}]")) {
            Ok(policy) => policy,
            Err(problems) => panic!("validated but does not compile: {problems:?}\n{yaml}"),
        };
        exercise(&policy, &values);
    }
});

/// Words of the text (what a rule names is what a client may send), and a few fixed ones.
fn values_from(text: &str) -> Vec<String> {
    let mut values: Vec<String> = ["c", "a/b", "$SYS/x", "*", ""]
        .iter()
        .map(|s| s.to_string())
        .collect();
    values.extend(
        text.split(|c: char| c.is_whitespace() || "\"',[]:".contains(c))
            .filter(|w| !w.is_empty() && !w.contains('\0'))
            .take(6)
            .map(str::to_owned),
    );
    values
}

fn exercise(policy: &Policy, values: &[String]) {
    let authorizer = Authorizer::new(policy.clone());
    for (n, client_id) in values.iter().enumerate().take(4) {
        let username = values.get(n + 1);
        let attributes: BTreeMap<String, String> = values
            .iter()
            .zip(values.iter().skip(n + 2))
            .take(3)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let subject = Subject {
            client_id,
            username: username.map(String::as_str),
            attributes: &attributes,
        };
        let principal = Principal {
            username: username.cloned(),
            client_id: client_id.clone(),
            attributes: attributes.clone(),
            expiry: None,
            method: "fuzz",
            registry: None,
        };
        for v in values {
            for action in [
                Action::Connect,
                Action::Publish(v),
                Action::Subscribe(v),
                Action::StateStore {
                    write: false,
                    key: v.as_bytes(),
                },
                Action::StateStore {
                    write: true,
                    key: v.as_bytes(),
                },
            ] {
                let decision = policy.decide(&subject, &action);
                let traced = (0..policy.rule_count()).find(|&r| {
                    policy
                        .trace(r, &subject, &action)
                        .is_some_and(|t| t.allows)
                });
                // A reserved topic is denied before any rule (explain shows that reason).
                if decision.reason != gatehouse::authz::policy::RESERVED {
                    assert_eq!(traced, decision.rule, "explain disagrees on {action:?}");
                }
                if policy.cache {
                    for _ in 0..2 {
                        let enforced = authorizer.check(&principal, client_id, &action);
                        assert_eq!(enforced, decision, "the cache disagrees on {action:?}");
                    }
                }
            }
        }
    }
}
