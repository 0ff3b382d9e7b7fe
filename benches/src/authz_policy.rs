//! The 100-rule authorization policy of the authorization benchmarks (criterion's
//! `authz` bench and `authz_compare.sh`, which writes the same rules with python).
//!
//! 99 rules for other principals and topics, then the one that allows the load's client,
//! last, so that an uncached check walks every rule before it is allowed:
//!
//! - rules 0–79: `usernames: [device-<i>]`, `clientIds: [device-<i>]` (do not apply to the
//!   load; each costs the principal comparison), resources with `{principal.clientId}`;
//! - rules 80–89: attribute sets `{building: b<i>}` / `{role: r<i>}` (do not apply), topics
//!   with `{principal.attributes.building}`;
//! - rules 90–98: `usernames: [<load user>]` (apply to the load) with Publish and Subscribe
//!   topics that do not match its topics, with `{principal.clientId}` and
//!   `{principal.username}` tokens (each renders its filters);
//! - rule 99: `usernames: [<load user>]`: Connect, Publish `bench/#`, Subscribe `bench/#`.

/// The rules, as the YAML list under `authorizationPolicies.rules` (indented 8 spaces).
pub fn rules_yaml(load_user: &str) -> String {
    let mut out = String::new();
    for i in 0..80 {
        out.push_str(&format!(
            r#"        - principals: {{ usernames: [device-{i}], clientIds: [device-{i}] }}
          brokerResources:
            - {{ method: Connect, clientIds: ["device-{i}*"] }}
            - {{ method: Publish, topics: ["devices/{{principal.clientId}}/telemetry", "site/{i}/#"] }}
            - {{ method: Subscribe, topics: ["devices/{{principal.clientId}}/commands/#"] }}
"#
        ));
    }
    for i in 80..90 {
        out.push_str(&format!(
            r#"        - principals: {{ attributes: [ {{ building: b{i} }}, {{ role: r{i} }} ] }}
          brokerResources:
            - {{ method: Connect }}
            - {{ method: Publish, topics: ["buildings/{{principal.attributes.building}}/#"] }}
            - {{ method: Subscribe, topics: ["buildings/{{principal.attributes.building}}/+/status"] }}
"#
        ));
    }
    for i in 90..99 {
        out.push_str(&format!(
            r#"        - principals: {{ usernames: ["{load_user}"] }}
          brokerResources:
            - {{ method: Publish, topics: ["other/{i}/{{principal.clientId}}/#", "users/{{principal.username}}/{i}"] }}
            - {{ method: Subscribe, topics: ["other/{i}/#"] }}
"#
        ));
    }
    out.push_str(&format!(
        r#"        - principals: {{ usernames: ["{load_user}"] }}
          brokerResources:
            - {{ method: Connect }}
            - {{ method: Publish, topics: ["bench/#"] }}
            - {{ method: Subscribe, topics: ["bench/#"] }}
"#
    ));
    out
}
