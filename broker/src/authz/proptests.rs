//! Property tests of the authorization invariants (behaviour.md §4):
//!
//! - containment is sound: if rule filter A contains requested filter B, every topic B
//!   matches, A matches;
//! - substitution never widens access: a rule with a `{principal.*}` token allows at most
//!   what the same rule allows with the value written in literally (and nothing when the
//!   value is empty, or, in a topic, contains `+`, `#` or `/`), whatever characters the
//!   value holds (wildcards, separators, glob metacharacters, backslashes);
//! - the decision cache is invisible: with and without it, every decision is the same,
//!   across runtime policy changes.

use std::sync::LazyLock;

use gatehouse_protocol::topic;
use proptest::prelude::*;

use super::filter;
use super::policy::{Action, Policy};
use super::template::Subject;
use super::Authorizer;
use crate::auth::Principal;

fn compile(cache: &str, rules_yaml: &str) -> Policy {
    let yaml = format!(
        "listeners:\n  - name: lst\n    ports: [ {{ port: 0 }} ]\nauthorizations:\n  - name: pol\n    authorizationPolicies:\n      cache: {cache}\n      rules:\n{rules_yaml}"
    );
    let loaded = gatehouse_config::load_str(&yaml, "proptest.yaml").expect("valid config");
    Policy::compile(&loaded.config.authorizations[0], "authorizations[0]").expect("compiles")
}

// ---------------------------------------------------------------------------------------
// Containment

/// A valid topic filter over a small alphabet, so that filters overlap often.
fn filter_strategy() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        Just("a"),
        Just("b"),
        Just(""),
        Just("$s"),
        Just("+"),
        Just("+"),
    ];
    (
        prop::collection::vec(level, 0..4),
        prop_oneof![Just(false), Just(true)],
    )
        .prop_filter_map("a filter has a level", |(levels, hash)| {
            let mut levels: Vec<&str> = levels;
            if hash {
                levels.push("#");
            }
            (!levels.is_empty()).then(|| levels.join("/"))
        })
}

fn topic_level() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just(""), Just("$s"), Just("c")]
}

/// Topics that `filter` may match: each `+` filled with a level, `#` with 0..3 levels.
fn topics_like(filter: &str) -> impl Strategy<Value = Vec<String>> {
    let filter = filter.to_owned();
    let one = (
        prop::collection::vec(topic_level(), 4),
        prop::collection::vec(topic_level(), 0..3),
    )
        .prop_map(move |(fills, tail)| {
            let mut out: Vec<&str> = Vec::new();
            for (i, level) in filter.split('/').enumerate() {
                match level {
                    "+" => out.push(fills[i % fills.len()]),
                    "#" => out.extend(tail.iter().copied()),
                    l => out.push(l),
                }
            }
            out.join("/")
        });
    prop::collection::vec(one, 1..6)
}

fn random_topic() -> impl Strategy<Value = String> {
    prop::collection::vec(topic_level(), 1..5).prop_map(|l| l.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// If A contains B, every topic B matches, A matches.
    #[test]
    fn containment_is_sound(
        (a, b, topics) in (filter_strategy(), filter_strategy())
            .prop_flat_map(|(a, b)| {
                let like_b = topics_like(&b);
                (Just(a), Just(b), (like_b, prop::collection::vec(random_topic(), 0..4)))
            }),
    ) {
        let (like_b, random) = topics;
        if filter::contains(&a, &b) {
            for t in like_b.iter().chain(&random) {
                if topic::validate_topic_name(t).is_err() || !topic::matches(&b, t) {
                    continue;
                }
                prop_assert!(
                    topic::matches(&a, t),
                    "`{a}` contains `{b}`, which matches `{t}`, but `{a}` does not"
                );
            }
        }
    }

    /// Every filter contains itself (and `filter::matches` is the protocol's).
    #[test]
    fn containment_is_reflexive(f in filter_strategy(), t in random_topic()) {
        prop_assert!(filter::contains(&f, &f), "`{f}`");
        prop_assert_eq!(filter::matches(&f, &t), topic::matches(&f, &t));
    }
}

// ---------------------------------------------------------------------------------------
// Substitution

/// Values a principal may carry: empty, wildcards, separators, glob and YAML
/// metacharacters, backslashes, ordinary text.
fn value_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => Just("v"),
            2 => Just("x"),
            1 => Just("+"),
            1 => Just("#"),
            1 => Just("/"),
            1 => Just("*"),
            1 => Just("?"),
            1 => Just("["),
            1 => Just("]"),
            1 => Just("{"),
            1 => Just("}"),
            1 => Just("!"),
            1 => Just("-"),
            1 => Just(","),
            1 => Just("\\"),
            1 => Just("$"),
            1 => Just("**"),
            1 => Just("a-z"),
        ],
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

/// Candidates for what a client asks for: built around the value (so that the allowed
/// one is tried), and unrelated strings over the same characters.
fn candidates(
    prefix: &'static str,
    suffix: &'static str,
) -> impl Strategy<Value = (String, Vec<String>)> {
    value_strategy().prop_flat_map(move |v| {
        let around = (value_strategy(), value_strategy()).prop_map({
            let v = v.clone();
            move |(before, after)| format!("{prefix}{before}{v}{after}{suffix}")
        });
        let exact = Just(format!("{prefix}{v}{suffix}"));
        let other = (value_strategy(), value_strategy())
            .prop_map(move |(x, y)| format!("{prefix}{x}{suffix}{y}"));
        (
            Just(v),
            prop::collection::vec(prop_oneof![exact, around, other], 1..8),
        )
    })
}

/// Whether `v` may stand for a whole topic level (behaviour.md §4).
fn topic_safe(v: &str) -> bool {
    !v.is_empty() && !v.contains(['+', '#', '/'])
}

fn principal(client_id: &str, username: Option<&str>, attributes: &[(&str, &str)]) -> Principal {
    Principal {
        username: username.map(str::to_owned),
        client_id: client_id.to_owned(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        expiry: None,
        method: "test",
        registry: None,
    }
}

fn decide(policy: &Policy, p: &Principal, action: &Action<'_>) -> bool {
    policy
        .decide(
            &Subject {
                client_id: &p.client_id,
                username: p.username.as_deref(),
                attributes: &p.attributes,
            },
            action,
        )
        .allowed
}

/// Rules that apply to user `u` and carry the value `v` (attribute `x`, client id or
/// username) in every kind of resource. Compiled once.
fn token_policy() -> &'static Policy {
    static POLICY: LazyLock<Policy> = LazyLock::new(token_rules);
    &POLICY
}

fn token_rules() -> Policy {
    compile(
        "Disabled",
        r#"        - principals: { usernames: [u] }
          brokerResources:
            - method: Publish
              topics: ["a/{principal.attributes.x}/b"]
            - method: Subscribe
              topics: ["s/{principal.attributes.x}/#"]
          stateStoreResources:
            - method: Read
              keyType: Pattern
              keys: ["k/{principal.attributes.x}/*"]
            - method: Write
              keyType: String
              keys: ["w/{principal.attributes.x}"]
        - principals: { usernames: [u] }
          brokerResources:
            - method: Connect
              clientIds: ["{principal.attributes.x}*"]
        - principals: { usernames: [u2] }
          brokerResources:
            - method: Connect
              clientIds: ["dev-{principal.attributes.x}-?"]
        - principals: { clientIds: ["{principal.attributes.x}"] }
          brokerResources:
            - method: Publish
              topics: ["by-client-id"]
        - principals: { usernames: ["c-{principal.clientId}"] }
          brokerResources:
            - method: Publish
              topics: ["c/{principal.clientId}/#"]
            - method: Subscribe
              topics: ["u/{principal.username}/+"]
"#,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// `a/{x}/b`: the allowed publish topics are exactly {"a/" + v + "/b"}, none for an
    /// unsafe value.
    #[test]
    fn publish_topic_token_allows_only_the_literal_value((v, topics) in candidates("a/", "/b")) {
        let policy = token_policy();
        let p = principal("cid", Some("u"), &[("x", &v)]);
        let literal = format!("a/{v}/b");
        for t in topics.iter().chain([&literal]) {
            if topic::validate_topic_name(t).is_err() {
                continue;
            }
            let allowed = decide(policy, &p, &Action::Publish(t));
            let expected = topic_safe(&v) && *t == literal;
            prop_assert_eq!(allowed, expected, "value `{}`, topic `{}`", v, t);
        }
    }

    /// `s/{x}/#`: a subscription is allowed exactly when `s/v/#` (v safe) contains it.
    #[test]
    fn subscribe_filter_token_allows_only_what_the_literal_filter_contains(
        (v, filters) in candidates("s/", "/#"),
        extra in filter_strategy(),
    ) {
        let policy = token_policy();
        let p = principal("cid", Some("u"), &[("x", &v)]);
        let literal = format!("s/{v}/#");
        let extra = format!("s/{extra}");
        for f in filters.iter().chain([&literal, &extra]) {
            let Ok(parsed) = topic::parse_subscription_filter(f) else { continue };
            let allowed = decide(policy, &p, &Action::Subscribe(f));
            let expected = topic_safe(&v) && filter::contains(&literal, parsed.filter);
            prop_assert_eq!(allowed, expected, "value `{}`, filter `{}`", v, f);
        }
    }

    /// `{x}*`: an allowed client id starts with v, literally; `dev-{x}-?`: it is
    /// "dev-" + v + "-" and one more character.
    #[test]
    fn client_id_glob_token_matches_the_value_literally((v, ids) in candidates("", "")) {
        let policy = token_policy();
        for id in ids.iter().chain([&v, &format!("{v}-tail"), &format!("dev-{v}-1")]) {
            let p = principal(id, Some("u"), &[("x", &v)]);
            let allowed = decide(policy, &p, &Action::Connect);
            prop_assert_eq!(allowed, !v.is_empty() && id.starts_with(v.as_str()),
                "value `{}`, client id `{}`", v, id);
            let p2 = principal(id, Some("u2"), &[("x", &v)]);
            let allowed = decide(policy, &p2, &Action::Connect);
            let expected = !v.is_empty()
                && id
                    .strip_prefix(&format!("dev-{v}-"))
                    .is_some_and(|rest| rest.chars().count() == 1);
            prop_assert_eq!(allowed, expected, "value `{}`, client id `{}`", v, id);
        }
    }

    /// Pattern `k/{x}/*`: an allowed key starts with "k/" + v + "/", and a value containing
    /// `/` matches nothing (as in topics), so it cannot reach into another value's
    /// namespace. String `w/{x}` is matched exactly as written (no substitution in String
    /// keys): only the key `w/{principal.attributes.x}` itself.
    #[test]
    fn state_store_key_token_matches_the_value_literally((v, keys) in candidates("k/", "/")) {
        let policy = token_policy();
        let p = principal("cid", Some("u"), &[("x", &v)]);
        let read_literal = format!("k/{v}/rest");
        let write_literal = format!("w/{v}");
        let usable = !v.is_empty() && !v.contains('/');
        let written = "w/{principal.attributes.x}".to_owned();
        for k in keys.iter().chain([&read_literal, &write_literal, &written]) {
            let read = decide(policy, &p, &Action::StateStore { write: false, key: k.as_bytes() });
            prop_assert_eq!(read, usable && k.starts_with(&format!("k/{v}/")),
                "value `{}`, read key `{}`", v, k);
            let write = decide(policy, &p, &Action::StateStore { write: true, key: k.as_bytes() });
            prop_assert_eq!(write, *k == written,
                "value `{}`, write key `{}`", v, k);
        }
    }

    /// Tokens in principals compare exactly: `clientIds: ["{x}"]` applies only when the
    /// client id is v; `usernames: ["c-{clientId}"]` only to user "c-" + client id. The
    /// client id and username in topics follow the topic rule.
    #[test]
    fn principal_tokens_compare_exactly(
        (v, ids) in candidates("", ""),
        username in value_strategy(),
        sub in filter_strategy(),
    ) {
        let policy = token_policy();
        for id in ids.iter().chain([&v]) {
            let p = principal(id, Some("nobody"), &[("x", &v)]);
            prop_assert_eq!(
                decide(policy, &p, &Action::Publish("by-client-id")),
                !v.is_empty() && *id == v,
                "value `{}`, client id `{}`", v, id
            );
            for user in [format!("c-{id}"), username.clone()] {
                let p = principal(id, Some(&user), &[]);
                let applies = user == format!("c-{id}") && !id.is_empty();
                let own = format!("c/{id}/t");
                if topic::validate_topic_name(&own).is_ok() {
                    prop_assert_eq!(
                        decide(policy, &p, &Action::Publish(&own)),
                        applies && topic_safe(id),
                        "client id `{}`, user `{}`", id, user
                    );
                }
                let request = format!("u/{sub}");
                if let Ok(parsed) = topic::parse_subscription_filter(&request) {
                    let literal = format!("u/{user}/+");
                    prop_assert_eq!(
                        decide(policy, &p, &Action::Subscribe(&request)),
                        applies && topic_safe(&user) && filter::contains(&literal, parsed.filter),
                        "client id `{}`, user `{}`, filter `{}`", id, user, request
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cache

const RULES_A: &str = r##"        - principals:
            usernames: [alice]
            attributes: [ { building: b22 } ]
          brokerResources:
            - method: Connect
              clientIds: ["{principal.attributes.building}*", "alice-*"]
            - method: Publish
              topics: ["t/{principal.attributes.building}/#", "t/{principal.clientId}"]
            - method: Subscribe
              topics: ["t/+/x", "u/{principal.username}/#"]
          stateStoreResources:
            - { method: ReadWrite, keyType: Pattern, keys: ["k/{principal.clientId}/*"] }
        - principals: { clientIds: [c1, "{principal.username}"] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ["t/a", "$s/#"]
"##;

const RULES_B: &str = r##"        - principals: { attributes: [ { building: b23 } ] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ["t/#"]
            - method: Subscribe
              topics: ["#"]
          stateStoreResources:
            - { method: Read, keyType: String, keys: ["k/{principal.attributes.building}"] }
"##;

/// RULES_A and RULES_B, each with the cache on and off; compiled once.
fn policies() -> &'static [[Policy; 2]; 2] {
    static POLICIES: LazyLock<[[Policy; 2]; 2]> = LazyLock::new(|| {
        [RULES_A, RULES_B].map(|rules| [compile("Enabled", rules), compile("Disabled", rules)])
    });
    &POLICIES
}

#[derive(Debug, Clone)]
enum Step {
    /// Principal index, action index.
    Check(usize, usize),
    /// Install RULES_A (false) or RULES_B (true) in both authorizers.
    Replace(bool),
}

fn principals() -> Vec<(Principal, &'static str)> {
    vec![
        (
            principal("b22-fan", Some("alice"), &[("building", "b22")]),
            "b22-fan",
        ),
        (
            principal("b22-fan", Some("alice"), &[("building", "b23")]),
            "b22-fan",
        ),
        (principal("b22-fan", Some("alice"), &[]), "b22-fan"),
        (principal("c1", None, &[("building", "b22")]), "c1"),
        (principal("c1", Some("c1"), &[("building", "b23")]), "c1"),
        (
            principal("alice-2", Some("alice"), &[("building", "b22")]),
            "alice-2",
        ),
        (
            principal("bob", Some("bob"), &[("building", "b23"), ("x", "+")]),
            "bob",
        ),
    ]
}

const ACTIONS: &[Action<'static>] = &[
    Action::Connect,
    Action::Publish("t/b22/x"),
    Action::Publish("t/b23"),
    Action::Publish("t/b22-fan"),
    Action::Publish("t/c1"),
    Action::Publish("t/a"),
    Action::Publish("$s/q"),
    Action::Subscribe("t/+/x"),
    Action::Subscribe("t/#"),
    Action::Subscribe("$share/g/t/+/x"),
    Action::Subscribe("u/alice/#"),
    Action::Subscribe("u/bob/+"),
    Action::Subscribe("#"),
    Action::Subscribe("a/#/b"),
    Action::StateStore {
        write: false,
        key: b"k/b22-fan/1",
    },
    Action::StateStore {
        write: true,
        key: b"k/b22-fan/1",
    },
    Action::StateStore {
        write: false,
        key: b"k/b23",
    },
    Action::StateStore {
        write: false,
        key: b"k/c1/\xff",
    },
];

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let n = principals().len();
    prop::collection::vec(
        prop_oneof![
            30 => (0..n, 0..ACTIONS.len()).prop_map(|(p, a)| Step::Check(p, a)),
            1 => any::<bool>().prop_map(Step::Replace),
        ],
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Cached and uncached authorizers agree on every decision, across policy changes.
    #[test]
    fn cached_and_uncached_decisions_agree(steps in steps()) {
        let [with_cache, without] = &policies()[0];
        let cached = Authorizer::new(with_cache.clone());
        let uncached = Authorizer::new(without.clone());
        let principals = principals();
        for step in steps {
            match step {
                Step::Check(p, a) => {
                    let (principal, client_id) = &principals[p];
                    let action = &ACTIONS[a];
                    prop_assert_eq!(
                        cached.check(principal, client_id, action),
                        uncached.check(principal, client_id, action),
                        "{:?} {:?}", principal, action
                    );
                }
                Step::Replace(b) => {
                    let [with_cache, without] = &policies()[usize::from(b)];
                    cached.replace(with_cache.clone());
                    uncached.replace(without.clone());
                    prop_assert_eq!(cached.cached_decisions(), Some(0));
                }
            }
        }
        prop_assert_eq!(uncached.cached_decisions(), None);
    }
}

/// Re-authentication with new attributes: the same client, the same action, a different
/// decision (the old one is not reused).
#[test]
fn new_attributes_are_not_answered_from_the_cache() {
    let authz = Authorizer::new(policies()[0][0].clone());
    let before = principal("b22-fan", Some("alice"), &[("building", "b22")]);
    let after = principal("b22-fan", Some("alice"), &[("building", "b23")]);
    let action = Action::Publish("t/b22/x");
    assert!(authz.check(&before, "b22-fan", &action).allowed);
    assert!(authz.check(&before, "b22-fan", &action).allowed);
    assert_eq!(authz.cached_decisions(), Some(1));
    assert!(!authz.check(&after, "b22-fan", &action).allowed);
    assert_eq!(authz.cached_decisions(), Some(2));
}

// ---------------------------------------------------------------------------------------
// Substitution, with generated templates (the property of `super::substitution`, which the
// `authz_substitution` fuzz target checks too): wherever a token sits in a template (a
// topic level, anywhere in a glob, next to metacharacters, inside a `[...]` class, after
// a `\`), an allowed request contains the client's value literally at the token's place.

use super::substitution::{self, Case, Checked, Place};

const TOKENS: [&str; 4] = [
    "{principal.clientId}",
    "{principal.username}",
    "{principal.attributes.v}",
    "{principal.attributes.none}",
];

/// A topic template: levels that are a token, a literal or a wildcard, maybe a final `#`.
fn topic_template() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        3 => prop::sample::select(TOKENS.to_vec()),
        2 => prop::sample::select(vec!["a", "b", "", "+", "$s"]),
    ];
    (prop::collection::vec(level, 1..4), any::<bool>()).prop_map(|(mut levels, hash)| {
        if hash {
            levels.push("#");
        }
        levels.join("/")
    })
}

/// A glob template: tokens among glob metacharacters, classes and escapes.
fn glob_template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => prop::sample::select(TOKENS.to_vec()),
        4 => prop::sample::select(vec![
            "a", "b", "*", "?", "[", "]", "[!", "[a-", "!", "-", "\\", "\\\\", "/", "**",
        ]),
        // Braces that are not tokens: invalid in globs, ordinary text in String keys.
        1 => prop::sample::select(vec!["{a}", "}", "{"]),
    ];
    prop::collection::vec(piece, 1..6).prop_map(|pieces| pieces.concat())
}

/// What a client asks for: built from the values (so that allowed requests are tried)
/// and from the template's own characters.
fn request(levels: bool) -> impl Strategy<Value = Vec<String>> {
    let piece = prop_oneof![
        4 => Just("<id>".to_owned()),
        4 => Just("<user>".to_owned()),
        4 => Just("<v>".to_owned()),
        3 => value_strategy(),
        2 => prop::sample::select(vec!["a", "b", "+", "#", "$s", "[", "]", "!"])
            .prop_map(str::to_owned),
    ];
    let one = prop::collection::vec(piece, 1..5);
    prop::collection::vec(one, 1..6).prop_map(move |requests| {
        requests
            .into_iter()
            .map(|pieces| pieces.join(if levels { "/" } else { "" }))
            .collect()
    })
}

fn check_all(
    place: Place,
    template: &str,
    values: &[String; 3],
    requests: &[String],
) -> Result<(), TestCaseError> {
    let policy = match substitution::compile(place, template) {
        Ok(Some(policy)) => policy,
        Ok(None) => return Ok(()),
        Err(e) => return Err(TestCaseError::fail(e)),
    };
    let [id, user, v] = values;
    for request in requests {
        let candidate = request
            .replace("<id>", id)
            .replace("<user>", user)
            .replace("<v>", v);
        let case = Case {
            place,
            template,
            client_id: id,
            username: (!user.is_empty()).then_some(user.as_str()),
            attribute: v,
            candidate: &candidate,
        };
        let checked = substitution::check_compiled(&policy, &case).map_err(TestCaseError::fail)?;
        prop_assert!(checked != Checked::Invalid);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn generated_topic_templates_never_widen(
        template in topic_template(),
        values in [value_strategy(), value_strategy(), value_strategy()],
        requests in request(true),
        subscribe in any::<bool>(),
    ) {
        let place = if subscribe { Place::Subscribe } else { Place::Publish };
        check_all(place, &template, &values, &requests)?;
    }

    #[test]
    fn generated_glob_and_key_templates_never_widen(
        template in glob_template(),
        values in [value_strategy(), value_strategy(), value_strategy()],
        requests in request(false),
        place in prop::sample::select(vec![Place::ClientId, Place::PatternKey, Place::StringKey]),
    ) {
        check_all(place, &template, &values, &requests)?;
    }
}

/// Two templates the generated ones found: a token inside a `[...]` class, and a token
/// right after an escaping `\`. A value there is read as glob syntax (`!x` negates the
/// class; `*` after `\[` is a wildcard), so validation refuses both placements.
#[test]
fn tokens_in_a_class_or_after_an_escape_are_refused() {
    for template in [
        "[{principal.attributes.v}]",
        "a[!{principal.attributes.v}]*",
        "k/\\{principal.attributes.v}",
    ] {
        for place in [Place::ClientId, Place::PatternKey] {
            assert!(
                matches!(substitution::compile(place, template), Ok(None)),
                "{template} in {place:?}"
            );
        }
    }
    // An escaped backslash before a token is ordinary text.
    assert!(matches!(
        substitution::compile(Place::PatternKey, "k\\\\{principal.attributes.v}*"),
        Ok(Some(_))
    ));
}

/// `keyType: String` is an exact match (behaviour.md §4): validation accepts any text,
/// braces included, and says tokens are not substituted there, so the broker must compile
/// it as written. (It used to parse tokens: `{a,b}` passed validation and then stopped the
/// broker from starting, and `{principal.clientId}` was substituted against the warning.)
#[test]
fn string_keys_are_literal_and_may_hold_braces() {
    for (key, yes, no) in [
        ("{a,b}", "{a,b}", "a"),
        ("w/{principal.clientId}", "w/{principal.clientId}", "w/cid"),
        ("}", "}", ""),
    ] {
        let policy = substitution::compile(Place::StringKey, key)
            .expect("validation and compilation agree")
            .expect("valid");
        for (candidate, expected) in [(yes, Checked::Allowed), (no, Checked::Denied)] {
            let case = Case {
                place: Place::StringKey,
                template: key,
                client_id: "cid",
                username: None,
                attribute: "v",
                candidate,
            };
            assert_eq!(
                substitution::check_compiled(&policy, &case),
                Ok(expected),
                "{case:?}"
            );
        }
    }
}
