//! Authorization policies shared by the e2e tests.

macro_rules! seed_rules {
    () => {
        r#"
        - principals:
            clientIds: [temperature-sensor, humidity-sensor]
            attributes: [ { city: seattle, organization: contoso } ]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ["/sensor/{principal.clientId}", "/sensor/{principal.attributes.organization}"]
            - method: Subscribe
              topics: ["/commands/{principal.attributes.organization}"]
        - principals:
            usernames: [monitor]
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: ["/sensor/#", "sensors/#"]
        - principals:
            attributes: [ { building: building22 }, { building: building23 } ]
          brokerResources:
            - method: Connect
              clientIds: ["{principal.attributes.building}*"]
            - method: Publish
              topics: ["sensors/{principal.attributes.building}/{principal.clientId}/sensor"]
"#
    };
}

/// The seed's examples (`shared/seeds/003_*`) as the `rules:` of one policy, indented to
/// sit under `authorizationPolicies:` in a native configuration: sensors by client id or
/// by the organization attribute; a monitor that reads every sensor topic; the building
/// Connect restriction with a client id glob.
pub const SEED_RULES: &str = seed_rules!();

/// [`SEED_RULES`] plus, as rules[3], the seed's state store example.
pub const SEED_RULES_WITH_STATE_STORE: &str = concat!(
    seed_rules!(),
    r#"        - principals:
            usernames: [temperature-sensor, humidity-sensor]
          brokerResources:
            - method: Connect
          stateStoreResources:
            - method: Read
              keyType: Pattern
              keys: [myreadkey, "myotherkey?", "mynumerickeysuffix[0-9]", "clients/{principal.clientId}/*"]
            - method: ReadWrite
              keyType: Binary
              keys: ["AAEC"]
"#
);
