//! Authorization rules (behaviour.md §4, config.md validation): topic filters, `{principal.*}`
//! tokens, client id globs and state store keys, each problem at its exact YAML path; and
//! the examples of the AIO authorization docs, which must all validate.

use gatehouse_config::*;

use crate::{assert_problem, assert_warning, load, problems};

const RULE: &str = "authorizations[0].authorizationPolicies.rules[0]";

/// One listener and a policy `policy` with `rules` (a YAML flow or JSON list).
fn policy(rules: &str) -> String {
    format!(
        "listeners: [ {{ name: default, ports: [ {{ port: 1883 }} ] }} ]\n\
         authorizations:\n  - name: policy\n    authorizationPolicies:\n      rules: {rules}\n"
    )
}

/// One rule for client `c` with the broker resources `resources` (flow YAML).
fn resources(resources: &str) -> String {
    policy(&format!(
        "[ {{ principals: {{ clientIds: [c] }}, brokerResources: [ {resources} ] }} ]"
    ))
}

/// One rule with the state store resources `store`.
fn store(store: &str) -> String {
    policy(&format!(
        "[ {{ principals: {{ clientIds: [c] }}, brokerResources: [ {{ method: Connect }} ], \
         stateStoreResources: [ {store} ] }} ]"
    ))
}

/// One rule with the principals `principals`.
fn principals(principals: &str) -> String {
    policy(&format!(
        "[ {{ principals: {principals}, brokerResources: [ {{ method: Connect }} ] }} ]"
    ))
}

/// Asserts a problem at `<RULE>.<suffix>` containing `needle`.
#[track_caller]
fn assert_rule_problem(yaml: &str, suffix: &str, needle: &str) {
    assert_problem(yaml, &format!("{RULE}.{suffix}"), needle);
}

// --- Topic filters ---------------------------------------------------------------------

#[test]
fn topics_must_be_valid_mqtt_filters() {
    for (topic, needle) in [
        (
            "a/#/b",
            "is not a valid MQTT topic filter: '#' must be the last level and stand alone",
        ),
        ("sport#", "'#' must be the last level"),
        ("a+/b", "'+' must stand alone in its level"),
        ("", "`` is not a valid MQTT topic filter: topic is empty"),
    ] {
        assert_rule_problem(
            &resources(&format!("{{ method: Publish, topics: [ok, '{topic}'] }}")),
            "brokerResources[0].topics[1]",
            needle,
        );
    }
    // Subscribe rules too, and the wildcards in their place are fine.
    assert_rule_problem(
        &resources("{ method: Subscribe, topics: ['+/a/#', 'a/#/b'] }"),
        "brokerResources[0].topics[1]",
        "`a/#/b` is not a valid MQTT topic filter",
    );
    load(&resources(
        "{ method: Subscribe, topics: ['#', '+', '+/+/x', 'a//b', '/leading', '$SYS/#', 'x/*/y'] }",
    ));
}

#[test]
fn a_token_is_the_whole_text_of_its_topic_level() {
    assert_rule_problem(
        &resources("{ method: Publish, topics: ['client-{principal.clientId}/#'] }"),
        "brokerResources[0].topics[0]",
        "`client-{principal.clientId}/#`: topic level `client-{principal.clientId}` mixes a \
         token with other text; a token must be the whole text of its level \
         (like `clients/{principal.clientId}/#`, not `client-{principal.clientId}/#`)",
    );
    // Two tokens in one level, a token followed by a wildcard: each level is named.
    let yaml = resources(
        "{ method: Publish, topics: ['a/{principal.username}{principal.clientId}/{principal.clientId}#'] }",
    );
    let at = format!("{RULE}.brokerResources[0].topics[0]");
    let messages: Vec<String> = problems(&yaml)
        .into_iter()
        .filter(|p| p.path == at)
        .map(|p| p.message)
        .collect();
    assert!(
        messages[0].contains("topic level `{principal.username}{principal.clientId}` mixes"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("topic level `{principal.clientId}#` mixes"),
        "{messages:?}"
    );
    load(&resources(
        "{ method: Publish, topics: ['clients/{principal.clientId}/#', '{principal.username}', \
         'a/{principal.attributes.building}/+/{principal.attributes.floor}', \
         '/sensor/{principal.attributes.organization}'] }",
    ));
}

#[test]
fn an_attribute_name_may_contain_a_slash_without_splitting_the_level() {
    load(&resources(
        "{ method: Publish, topics: ['groups/{principal.attributes.aio/group}/#'] }",
    ));
}

#[test]
fn topic_tokens_must_be_known_and_braces_balanced() {
    for (topic, needle) in [
        (
            "a/{principal.email}",
            "`a/{principal.email}`: unknown token `{principal.email}`; the tokens are \
             {principal.username}, {principal.clientId} and {principal.attributes.<name>}",
        ),
        (
            "a/{principal.clientid}",
            "unknown token `{principal.clientid}` (did you mean `{principal.clientId}`?)",
        ),
        (
            "a/{principal.attributes}",
            "unknown token `{principal.attributes}`",
        ),
        ("a/{principal.attributes.}/b", "names no attribute"),
        ("a/{principal.clientId", "unclosed `{`"),
        ("a/principal.clientId}", "unbalanced `}`"),
        (
            "a/{b}",
            "`{b}` is not a token: braces are reserved for the tokens",
        ),
    ] {
        assert_rule_problem(
            &resources(&format!("{{ method: Subscribe, topics: ['{topic}'] }}")),
            "brokerResources[0].topics[0]",
            needle,
        );
    }
}

#[test]
fn rule_topics_are_plain_filters_not_shared_subscriptions() {
    assert_rule_problem(
        &resources("{ method: Subscribe, topics: ['$share/group/sensors/#'] }"),
        "brokerResources[0].topics[0]",
        "`$share/group/sensors/#`: rules name plain topic filters, not shared subscriptions; \
         write `sensors/#` (a client's `$share/<group>/<filter>` subscription is authorized \
         on its `<filter>`)",
    );
    assert_rule_problem(
        &resources("{ method: Subscribe, topics: ['$share'] }"),
        "brokerResources[0].topics[0]",
        "write `<filter>`",
    );
}

#[test]
fn connect_resources_carry_no_topics_but_may_list_none() {
    assert_rule_problem(
        &resources("{ method: Connect, topics: ['a/#'] }"),
        "brokerResources[0].topics",
        "Connect resources carry no topics",
    );
    assert_rule_problem(
        &resources("{ method: Publish, topics: [] }"),
        "brokerResources[0].topics",
        "Publish needs at least one topic filter",
    );
    load(&resources("{ method: Connect, topics: [], clientIds: [] }"));
}

// --- Principals ------------------------------------------------------------------------

#[test]
fn principal_usernames_and_client_ids_may_hold_tokens_anywhere() {
    load(&principals(
        "{ usernames: ['{principal.clientId}', 'user-{principal.attributes.site}'], \
         clientIds: ['{principal.username}-dev', 'plain'] }",
    ));
    assert_rule_problem(
        &principals("{ usernames: [ok, '{principal.userName}'] }"),
        "principals.usernames[1]",
        "`{principal.userName}`: unknown token `{principal.userName}` (did you mean \
         `{principal.username}`?)",
    );
    assert_rule_problem(
        &principals("{ clientIds: ['dev-{principal.clientId'] }"),
        "principals.clientIds[0]",
        "unclosed `{`",
    );
    assert_rule_problem(
        &principals("{ clientIds: [''] }"),
        "principals.clientIds[0]",
        "empty client id",
    );
    assert_rule_problem(
        &principals("{ usernames: [''] }"),
        "principals.usernames[0]",
        "empty username",
    );
}

#[test]
fn principal_attribute_sets_are_not_empty() {
    assert_rule_problem(
        &principals("{ attributes: [ { building: '17' }, {} ] }"),
        "principals.attributes[1]",
        "empty attribute set: it would match every client",
    );
    assert_rule_problem(
        &principals("{ attributes: [ { '': x } ] }"),
        "principals.attributes[0]",
        "empty attribute name",
    );
}

// --- Resource client ids ---------------------------------------------------------------

#[test]
fn resource_client_ids_are_globs_with_tokens() {
    load(&resources(
        "{ method: Connect, clientIds: ['{principal.attributes.building}*', 'dev-??', \
         'line[0-9]', 'x[!a]', '\\*literal', '{principal.clientId}'] }",
    ));
    for (pattern, needle) in [
        (
            "line[0-9",
            "`line[0-9` is not a valid client id pattern: unclosed character class",
        ),
        ("[z-a]", "the range `z-a` is reversed"),
        ("dev\\\\", "the pattern ends with a lone `\\`"),
        (
            "{a,b}",
            "`{a,b}`: `{a,b}` is not a token: braces are reserved for the tokens \
             {principal.username}, {principal.clientId} and {principal.attributes.<name>} \
             (glob alternation `{a,b}` is not supported: list each alternative)",
        ),
        ("{principal.client}*", "unknown token `{principal.client}`"),
        ("", "empty client id pattern"),
        // A token's value must be read literally: never as members of a class, never
        // as the character an escape takes.
        (
            "dev-[{principal.attributes.building}]",
            "`dev-[{principal.attributes.building}]`: {principal.attributes.building} is \
             inside a `[...]` character class",
        ),
        (
            "x[!{principal.clientId}]*",
            "is inside a `[...]` character class",
        ),
        (
            "x\\\\{principal.clientId}",
            "{principal.clientId} follows a `\\`, which would escape the first character",
        ),
    ] {
        assert_rule_problem(
            &resources(&format!(
                "{{ method: Connect, clientIds: [ok, \"{pattern}\"] }}"
            )),
            "brokerResources[0].clientIds[1]",
            needle,
        );
    }
}

// --- State store keys ------------------------------------------------------------------

#[test]
fn state_store_resources_need_keys() {
    assert_rule_problem(
        &store("{ method: Read, keys: [] }"),
        "stateStoreResources[0].keys",
        "at least one key is required",
    );
    for key_type in ["Pattern", "String", "Binary"] {
        assert_rule_problem(
            &store(&format!(
                "{{ method: Read, keyType: {key_type}, keys: [a, ''] }}"
            )),
            "stateStoreResources[0].keys[1]",
            "empty key",
        );
    }
}

#[test]
fn pattern_keys_are_globs_with_tokens() {
    load(&store(
        "{ method: ReadWrite, keys: ['colors/*', 'number[0-9]', 'char?', '*', \
         'clients/{principal.clientId}/*', 'usernames/{principal.username}/*', \
         'rooms/{principal.attributes.room}/*', 'x-{principal.clientId}-y'] }",
    ));
    assert_rule_problem(
        &store("{ method: Read, keyType: Pattern, keys: ['number[0-9'] }"),
        "stateStoreResources[0].keys[0]",
        "`number[0-9` is not a valid key pattern: unclosed character class",
    );
    assert_rule_problem(
        &store("{ method: Read, keyType: pattern, keys: ['colors/{red,blue}'] }"),
        "stateStoreResources[0].keys[0]",
        "`{red,blue}` is not a token: braces are reserved for the tokens \
         {principal.username}, {principal.clientId} and {principal.attributes.<name>} \
         (glob alternation `{a,b}` is not supported: list each alternative)",
    );
    assert_rule_problem(
        &store("{ method: Read, keys: ['clients/{principal.clientID}/*'] }"),
        "stateStoreResources[0].keys[0]",
        "did you mean `{principal.clientId}`?",
    );
    assert_rule_problem(
        &store("{ method: Read, keys: ['a}'] }"),
        "stateStoreResources[0].keys[0]",
        "unbalanced `}`",
    );
}

#[test]
fn string_keys_are_any_text() {
    let loaded = load(&store(
        "{ method: Read, keyType: String, keys: ['number[0-9', '{a,b}', 'a}', '*'] }",
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // Tokens are substituted in Pattern keys only: say so.
    assert_warning(
        &store("{ method: Read, keyType: String, keys: ['clients/{principal.clientId}'] }"),
        &format!("{RULE}.stateStoreResources[0].keys[0]"),
        "is matched exactly: tokens are substituted only in keyType Pattern",
    );
}

#[test]
fn binary_keys_are_padded_standard_base64() {
    load(&store(
        "{ method: ReadWrite, keyType: Binary, keys: ['dGVzdA==', 'AAEC/w==', 'xxxxxxxxxxxxxxxxxxxx'] }",
    ));
    for (key, needle) in [
        (
            "dGVzdA",
            "`dGVzdA` is not valid base64 (missing or wrong `=` padding); Binary keys are \
             written in standard base64 with `=` padding, e.g. `dGVzdA==` for `test`",
        ),
        (
            "not base64!",
            "(' ' at offset 3 is not in the alphabet A-Z a-z 0-9 + /)",
        ),
        ("AAEC_w==", "('_' at offset 4 is not in the alphabet"),
        ("dGVzdA==dGVzdA==", "(`=` at offset 6 is not final padding)"),
        (
            "dGVzdB==",
            "the last symbol 'B' at offset 5 has bits that encode nothing",
        ),
        ("dGVzd", "length is not a multiple of 4"),
        ("{principal.clientId}", "is not valid base64"),
    ] {
        assert_rule_problem(
            &store(&format!(
                "{{ method: Read, keyType: binary, keys: ['{key}'] }}"
            )),
            "stateStoreResources[0].keys[0]",
            needle,
        );
    }
}

// --- Paths, several problems, manifests ------------------------------------------------

#[test]
fn every_problem_is_reported_with_its_path() {
    let yaml = policy(
        "
        - principals: { usernames: ['{principal.nope}'] }
          brokerResources:
            - { method: Connect, clientIds: ['[abc'] }
            - { method: Publish, topics: ['ok/{principal.clientId}', 'a/#/b', 'x-{principal.username}'] }
        - principals: { attributes: [ {} ] }
          brokerResources:
            - { method: Subscribe, topics: ['$share/g/t'] }
          stateStoreResources:
            - { method: Read, keys: ['{a,b}'] }
            - { method: Write, keyType: Binary, keys: ['dGVzdA==', '%%%'] }
",
    );
    let paths: Vec<String> = problems(&yaml).into_iter().map(|p| p.path).collect();
    let rule =
        |r: usize, rest: &str| format!("authorizations[0].authorizationPolicies.rules[{r}].{rest}");
    assert_eq!(
        paths,
        [
            rule(0, "principals.usernames[0]"),
            rule(0, "brokerResources[0].clientIds[0]"),
            rule(0, "brokerResources[1].topics[1]"),
            rule(0, "brokerResources[1].topics[2]"),
            rule(1, "principals.attributes[0]"),
            rule(1, "brokerResources[0].topics[0]"),
            rule(1, "stateStoreResources[0].keys[0]"),
            rule(1, "stateStoreResources[1].keys[1]"),
        ]
    );
}

#[test]
fn paths_in_the_second_policy_and_in_manifests() {
    let yaml = format!(
        "{}  - name: other\n    authorizationPolicies:\n      rules: [ {{ principals: {{}}, \
         brokerResources: [ {{ method: Publish, topics: ['a+'] }} ] }} ]\n",
        policy("[]")
    );
    assert_problem(
        &yaml,
        "authorizations[1].authorizationPolicies.rules[0].brokerResources[0].topics[0]",
        "'+' must stand alone",
    );

    let manifests = "
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: { name: default }
spec: { ports: [ { port: 1883 } ] }
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: { name: my-authz-policies }
spec:
  authorizationPolicies:
    rules:
      - principals: { clientIds: [c] }
        brokerResources:
          - method: Publish
            topics: ['client-{principal.clientId}/#']
        stateStoreResources:
          - { method: Read, keyType: Binary, keys: ['abc'] }
";
    let paths: Vec<String> = problems(manifests).into_iter().map(|p| p.path).collect();
    let at =
        "document 2 (BrokerAuthorization my-authz-policies).spec.authorizationPolicies.rules[0]";
    assert_eq!(
        paths,
        [
            format!("{at}.brokerResources[0].topics[0]"),
            format!("{at}.stateStoreResources[0].keys[0]"),
        ]
    );
}

// --- The AIO docs' examples (seed 003) -------------------------------------------------

/// The rules of the AIO authorization docs' examples, as JSON (valid YAML flow).
const DOC_RULES: [&str; 3] = [
    // Narrowing Connect by client id.
    r#"[
  {
    "brokerResources": [
      { "clientIds": ["{principal.attributes.building}*"], "method": "Connect", "topics": [] },
      { "clientIds": [], "method": "Publish",
        "topics": ["sensors/{principal.attributes.building}/{principal.clientId}/sensor"] }
    ],
    "principals": { "attributes": [ { "building": "building22" }, { "building": "building23" } ] }
  }
]"#,
    // Kubernetes service account tokens.
    r#"[
  {
    "brokerResources": [
      { "clientIds": [], "method": "Connect", "topics": [] },
      { "clientIds": [], "method": "Publish", "topics": ["odd-numbered-orders"] },
      { "clientIds": [], "method": "Subscribe", "topics": ["orders"] }
    ],
    "principals": { "attributes": [ { "group": "authz-sat" } ] }
  }
]"#,
    // State store.
    r#"[
  {
    "brokerResources": [
      { "clientIds": ["{principal.attributes.building}*"], "method": "Connect" },
      { "method": "Publish",
        "topics": ["sensors/{principal.attributes.building}/{principal.clientId}/sensor/*"] },
      { "method": "Subscribe", "topics": ["commands/{principal.attributes.organization}"] }
    ],
    "principals": {
      "attributes": [ { "building": "17", "organization": "contoso" } ],
      "usernames": ["temperature-sensor", "humidity-sensor"]
    },
    "stateStoreResources": [
      { "method": "Read", "keyType": "Pattern",
        "keys": ["myreadkey", "myotherkey?", "mynumerickeysuffix[0-9]", "clients/{principal.clientId}/*"] },
      { "method": "ReadWrite", "keyType": "Binary", "keys": ["xxxxxxxxxxxxxxxxxxxx"] }
    ]
  }
]"#,
];

/// The docs' YAML snippets: usernames and attributes (with config.md's example), the
/// username-equals-client-id token, and the state store protocol topics.
const DOC_YAML_RULES: &str = "
        - principals:
            clientIds: [temperature-sensor]
            usernames: [humidity-sensor]
            attributes: [ { organization: contoso, city: seattle } ]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ['/sensor/{principal.clientId}', '/sensor/{principal.attributes.organization}']
            - method: Subscribe
              topics: ['/commands/{principal.attributes.organization}']
          stateStoreResources:
            - method: readwrite
              keyType: pattern
              keys: ['clients/{principal.clientId}/*']
        - principals:
            usernames:
              - \"{principal.clientId}\"
          brokerResources:
            - method: connect
            - method: publish
              topics: [statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke]
            - method: subscribe
              topics: ['clients/{principal.clientId}/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response/#']
          stateStoreResources:
            - { method: read, keyType: string, keys: ['number[0-9]'] }
            - { method: write, keyType: binary, keys: [dGVzdA==] }
";

#[test]
fn the_aio_docs_examples_validate_in_native_form() {
    for rules in DOC_RULES.iter().copied().chain([DOC_YAML_RULES]) {
        let loaded = load(&policy(rules));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(!loaded.config.authorizations[0]
            .authorization_policies
            .rules
            .is_empty());
    }
    let config = load(&policy(DOC_RULES[2])).config;
    let rule = &config.authorizations[0].authorization_policies.rules[0];
    assert_eq!(rule.state_store_resources[1].key_type, KeyType::Binary);
    assert_eq!(
        rule.broker_resources[0].method,
        BrokerResourceMethod::Connect
    );
}

#[test]
fn the_aio_docs_examples_validate_as_broker_authorization_manifests() {
    let mut manifests = String::from(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerListener\n\
         metadata: { name: default }\nspec: { ports: [ { port: 1883, authenticationRef: sat, authorizationRef: doc-0 } ] }\n\
         ---\napiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerAuthentication\n\
         metadata: { name: sat }\nspec: { authenticationMethods: [ { method: ServiceAccountToken, serviceAccountTokenSettings: { audiences: [aio-internal] } } ] }\n",
    );
    let yaml_rules = DOC_YAML_RULES.replace("\n        ", "\n      ");
    for (i, rules) in DOC_RULES
        .iter()
        .copied()
        .chain([yaml_rules.as_str()])
        .enumerate()
    {
        manifests.push_str(&format!(
            "---\napiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerAuthorization\n\
             metadata: {{ name: doc-{i}, namespace: azure-iot-operations }}\n\
             spec:\n  authorizationPolicies:\n    cache: Enabled\n    rules: {rules}\n"
        ));
    }
    let loaded = load(&manifests);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.authorizations.len(), 4);
    // The same rules as in native form.
    for (i, rules) in DOC_RULES.iter().enumerate() {
        let native = load(&policy(rules)).config;
        assert_eq!(
            loaded.config.authorizations[i].authorization_policies,
            native.authorizations[0].authorization_policies
        );
    }
}
