use super::compile::topic_template;
use super::*;

fn policy(rules_yaml: &str) -> Policy {
    let yaml = format!(
            "listeners:\n  - name: lst\n    ports: [ {{ port: 0 }} ]\nauthorizations:\n  - name: pol\n    authorizationPolicies:\n      rules:\n{rules_yaml}"
        );
    let loaded = gatehouse_config::load_str(&yaml, "test.yaml").expect("valid config");
    Policy::compile(&loaded.config.authorizations[0], "authorizations[0]").expect("compiles")
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn who<'a>(
    client_id: &'a str,
    username: Option<&'a str>,
    attributes: &'a BTreeMap<String, String>,
) -> Subject<'a> {
    Subject {
        client_id,
        username,
        attributes,
    }
}

/// The seed's first example: client ids OR an attribute set; publish under the client
/// id or the organization; subscribe to the organization's commands.
#[test]
fn seed_example_client_ids_and_attributes() {
    let p = policy(
        r#"        - principals:
            clientIds: [temperature-sensor, humidity-sensor]
            attributes: [ { city: seattle, organization: contoso } ]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ["/sensor/{principal.clientId}", "/sensor/{principal.attributes.organization}"]
            - method: Subscribe
              topics: ["/commands/{principal.attributes.organization}"]
"#,
    );
    let contoso = attrs(&[("city", "seattle"), ("organization", "contoso")]);
    let none = attrs(&[]);
    let temp = who("temperature-sensor", None, &contoso);
    // `some-other-username` is a user name; its client id is something else.
    let other = who("client-x", Some("some-other-username"), &contoso);
    let bare = who("humidity-sensor", None, &none);
    let seattle = attrs(&[("city", "seattle")]);
    let stranger = who("stranger", None, &seattle);
    assert!(p.decide(&temp, &Action::Connect).allowed);
    assert!(
        p.decide(&temp, &Action::Publish("/sensor/temperature-sensor"))
            .allowed
    );
    assert!(p.decide(&temp, &Action::Publish("/sensor/contoso")).allowed);
    assert!(
        p.decide(&bare, &Action::Publish("/sensor/humidity-sensor"))
            .allowed
    );
    // No organization attribute: that filter matches nothing.
    assert!(!p.decide(&bare, &Action::Publish("/sensor/contoso")).allowed);
    assert!(
        p.decide(&other, &Action::Publish("/sensor/contoso"))
            .allowed
    );
    assert!(
        !p.decide(&other, &Action::Publish("/sensor/some-other-username"))
            .allowed
    );
    assert!(
        p.decide(&other, &Action::Subscribe("/commands/contoso"))
            .allowed
    );
    assert!(!p.decide(&other, &Action::Subscribe("/commands/+")).allowed);
    let d = p.decide(&stranger, &Action::Connect);
    assert_eq!((d.allowed, d.reason), (false, "no rule matched"));
}

/// The seed's Connect restriction: building22/23 attribute AND a client id starting
/// with the building.
#[test]
fn seed_example_connect_client_id_glob_with_token() {
    let p = policy(
        r#"        - principals:
            attributes: [ { building: building22 }, { building: building23 } ]
          brokerResources:
            - method: Connect
              clientIds: ["{principal.attributes.building}*"]
            - method: Publish
              topics: ["sensors/{principal.attributes.building}/{principal.clientId}/sensor"]
"#,
    );
    let b22 = attrs(&[("building", "building22")]);
    assert!(
        p.decide(&who("building22-fan", None, &b22), &Action::Connect)
            .allowed
    );
    assert!(
        !p.decide(&who("building23-fan", None, &b22), &Action::Connect)
            .allowed
    );
    assert!(!p.decide(&who("fan", None, &b22), &Action::Connect).allowed);
    assert!(
        p.decide(
            &who("building22-fan", None, &b22),
            &Action::Publish("sensors/building22/building22-fan/sensor")
        )
        .allowed
    );
    // A glob metacharacter in the attribute does not widen the pattern.
    let star = attrs(&[("building", "*")]);
    let p2 = policy(
        r#"        - principals:
            attributes: [ { building: "*" } ]
          brokerResources:
            - method: Connect
              clientIds: ["{principal.attributes.building}*"]
"#,
    );
    assert!(
        !p2.decide(&who("anything", None, &star), &Action::Connect)
            .allowed
    );
    assert!(p2.decide(&who("*x", None, &star), &Action::Connect).allowed);
}

#[test]
fn shared_subscriptions_are_checked_on_the_inner_filter() {
    let p = policy(
        r#"        - principals: { clientIds: [c] }
          brokerResources:
            - method: Subscribe
              topics: ["orders/#"]
"#,
    );
    let none = attrs(&[]);
    let c = who("c", None, &none);
    assert!(
        p.decide(&c, &Action::Subscribe("$share/g/orders/+/new"))
            .allowed
    );
    assert!(!p.decide(&c, &Action::Subscribe("$share/g/#")).allowed);
}

#[test]
fn state_store_keys_by_type_and_method() {
    let p = policy(
        r#"        - principals: { usernames: [temperature-sensor] }
          brokerResources:
            - method: Connect
          stateStoreResources:
            - method: Read
              keyType: Pattern
              keys: [myreadkey, "myotherkey?", "mynumerickeysuffix[0-9]", "clients/{principal.clientId}/*"]
            - method: ReadWrite
              keyType: Binary
              keys: ["AAEC"]
            - method: Write
              keyType: String
              keys: ["exact*"]
"#,
    );
    let none = attrs(&[]);
    let s = who("dev-1", Some("temperature-sensor"), &none);
    let read = |k: &[u8]| {
        p.decide(
            &s,
            &Action::StateStore {
                write: false,
                key: k,
            },
        )
        .allowed
    };
    let write = |k: &[u8]| {
        p.decide(
            &s,
            &Action::StateStore {
                write: true,
                key: k,
            },
        )
        .allowed
    };
    assert!(read(b"myreadkey") && read(b"myotherkeyA") && read(b"mynumerickeysuffix7"));
    assert!(read(b"clients/dev-1/anything"));
    assert!(!read(b"clients/dev-2/anything"));
    assert!(!write(b"myreadkey"));
    assert!(read(&[0, 1, 2]) && write(&[0, 1, 2]));
    assert!(write(b"exact*") && !write(b"exactly"));
}

#[test]
fn no_rules_deny_everything() {
    let yaml = "listeners:\n  - name: lst\n    ports: [ { port: 0 } ]\nauthorizations:\n  - name: pol\n    authorizationPolicies: { rules: [] }\n";
    let loaded = gatehouse_config::load_str(yaml, "t.yaml").expect("valid");
    let p =
        Policy::compile(&loaded.config.authorizations[0], "authorizations[0]").expect("compiles");
    let none = attrs(&[]);
    assert!(!p.decide(&who("c", None, &none), &Action::Connect).allowed);
}

/// Only the broker publishes state store notifications: no rule allows a client to.
#[test]
fn notification_topics_are_reserved() {
    let p = policy(
        r##"        - principals: { clientIds: [c] }
          brokerResources:
            - method: Publish
              topics: ["#", "clients/statestore/#"]
"##,
    );
    let none = attrs(&[]);
    let c = who("c", None, &none);
    let notify = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/63/command/notify/6B";
    let denied = p.decide(&c, &Action::Publish(notify));
    assert_eq!((denied.allowed, denied.reason), (false, RESERVED));
    for t in [
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8",
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/x",
    ] {
        assert!(!p.decide(&c, &Action::Publish(t)).allowed, "{t}");
    }
    for t in [
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8x/y",
        "clients/statestore/v1/other",
        "clients/c/response",
    ] {
        assert!(p.decide(&c, &Action::Publish(t)).allowed, "{t}");
    }
}

/// An attribute name with `/` (the SAT group annotation) is one token, one level: the
/// broker used to split the text on `/` and refuse what validation accepted.
#[test]
fn attribute_names_with_a_slash_fill_one_level() {
    let p = policy(
        r##"        - principals: { usernames: [u] }
          brokerResources:
            - method: Publish
              topics: ["groups/{principal.attributes.aio-broker-auth/group}/#"]
"##,
    );
    let a = attrs(&[("aio-broker-auth/group", "sensors")]);
    let u = who("c", Some("u"), &a);
    assert!(p.decide(&u, &Action::Publish("groups/sensors/x")).allowed);
    assert!(!p.decide(&u, &Action::Publish("groups/other/x")).allowed);
}

#[test]
fn partial_level_tokens_are_refused() {
    assert!(topic_template("{principal.clientId}{principal.username}/#").is_err());
    assert!(topic_template("a/{principal.clientId}-x").is_err());
    assert!(topic_template("client-{principal.clientId}/#").is_err());
    assert!(topic_template("clients/{principal.clientId}/#").is_ok());
    assert!(topic_template("a/#/b").is_err());
}
