//! The walk and the rendering, without the binary: arguments parsed by clap as on the
//! command line, configurations loaded by gatehouse-config, reports checked field by field
//! and as text.

use clap::Parser;
use gatehouse_config::Config;

use super::args::ExplainArgs;
use super::model::Report;
use super::{render, walk};

#[derive(Parser)]
struct Command {
    #[command(flatten)]
    args: ExplainArgs,
}

fn args(line: &[&str]) -> ExplainArgs {
    let words = std::iter::once("explain").chain(line.iter().copied());
    Command::try_parse_from(words)
        .expect("valid arguments")
        .args
}

const RULES: &str = "
      rules:
        - principals: { attributes: [ { building: \"17\" } ] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"sensors/{principal.clientId}/#\"]
        - principals: { usernames: [monitor] }
          brokerResources:
            - method: Subscribe
              topics: [\"sensors/#\"]
";

fn native() -> Config {
    let yaml = format!(
        "
listeners:
  - name: main
    ports:
      - port: 1883
        authorizationRef: policy
      - port: 1884
authorizations:
  - name: policy
    authorizationPolicies:{RULES}"
    );
    gatehouse_config::load_str(&yaml, "t.yaml")
        .expect("valid")
        .config
}

fn manifests() -> Config {
    let yaml = format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {{ name: default }}
spec:
  ports: [ {{ port: 1883, authorizationRef: policy }} ]
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {{ name: policy }}
spec:
  authorizationPolicies:{}",
        RULES.replace("\n      ", "\n    ")
    );
    gatehouse_config::load_str(&yaml, "t.yaml")
        .expect("valid")
        .config
}

fn report(config: &Config, line: &[&str]) -> Report {
    walk::explain(&args(line), config, None).expect("explained")
}

const RULE0: &str = "authorizations[0].authorizationPolicies.rules[0]";

#[test]
fn an_allowed_publish_names_the_rule_entry_and_substitution() {
    let r = report(
        &native(),
        &[
            "--client-id",
            "dev-1",
            "--attr",
            "building=17",
            "publish",
            "sensors/dev-1/t",
        ],
    );
    assert!(r.allowed);
    assert_eq!(r.rule, Some(0));
    assert_eq!(r.rule_path.as_deref(), Some(RULE0));
    assert_eq!(
        r.yaml_path.as_deref(),
        Some(format!("{RULE0}.brokerResources[1].topics[0]").as_str())
    );
    let matched = r.matched.as_ref().expect("match");
    let entry = matched.entry.as_ref().expect("entry");
    assert_eq!(entry.written, "sensors/{principal.clientId}/#");
    assert_eq!(entry.substituted.as_deref(), Some("sensors/dev-1/#"));
    let principal = matched.principal.as_ref().expect("principal");
    assert_eq!(principal.path, format!("{RULE0}.principals.attributes[0]"));
}

#[test]
fn a_denial_lists_near_misses_and_principals_not_matched() {
    let r = report(
        &native(),
        &[
            "--client-id",
            "dev-1",
            "--attr",
            "building=17",
            "publish",
            "sensors/dev-2/t",
        ],
    );
    assert!(!r.allowed);
    assert_eq!(r.reason, "no rule matched");
    assert_eq!(r.near_misses.len(), 1);
    assert_eq!(r.near_misses[0].rule, 0);
    assert_eq!(
        r.near_misses[0].why,
        "no Publish topic of the rule matches `sensors/dev-2/t`"
    );
    assert_eq!(r.principals_not_matched.len(), 1);
    let tried = &r.principals_not_matched[0].tried[0];
    assert_eq!(
        tried.path,
        "authorizations[0].authorizationPolicies.rules[1].principals.usernames[0]"
    );
}

#[test]
fn a_port_without_authentication_does_not_apply_the_policy() {
    let r = report(
        &native(),
        &[
            "--port",
            "main:1883",
            "--client-id",
            "x",
            "subscribe",
            "secret/#",
        ],
    );
    assert!(r.allowed, "the port does not apply the policy");
    let policy = r.policy.as_ref().expect("policy");
    assert!(!policy.applied && !policy.allowed);
    assert_eq!(r.port.as_ref().expect("port").path, "listeners[0].ports[0]");
    let none = report(
        &native(),
        &["--port", "1884", "--client-id", "x", "connect"],
    );
    assert!(none.allowed && none.policy.is_none());
}

#[test]
fn manifest_paths_come_from_the_configuration() {
    let r = report(
        &manifests(),
        &[
            "--port",
            "1883",
            "--client-id",
            "m",
            "--username",
            "monitor",
            "subscribe",
            "sensors/a",
        ],
    );
    let policy = r.policy.as_ref().expect("policy");
    assert_eq!(policy.path, "document 2 (BrokerAuthorization policy).spec");
    assert_eq!(policy.label, "document 2 (BrokerAuthorization policy)");
    assert_eq!(
        r.port.as_ref().expect("port").path,
        "document 1 (BrokerListener default).spec.ports[0]"
    );
    assert_eq!(
        policy.used_by[0].path,
        "document 1 (BrokerListener default).spec.ports[0]"
    );
}

#[test]
fn usage_errors_say_what_to_give() {
    let mut config = native();
    let mut second = config.authorizations[0].clone();
    second.name = "other".into();
    config.authorizations.push(second);
    let err = walk::explain(&args(&["--client-id", "x", "connect"]), &config, None)
        .err()
        .expect("two policies need --policy");
    assert!(err.contains("--policy NAME"), "{err}");
    let err = walk::explain(&args(&["--client-id", "x", "publish"]), &native(), None)
        .err()
        .expect("publish needs a topic");
    assert!(err.contains("needs a TARGET"), "{err}");
    let err = walk::explain(
        &args(&["--port", "9", "--client-id", "x", "connect"]),
        &native(),
        None,
    )
    .err()
    .expect("no such port");
    assert!(err.contains("main:1883, main:1884"), "{err}");
}

#[test]
fn the_human_form_of_an_allowed_publish() {
    let r = report(
        &native(),
        &[
            "--client-id",
            "dev-1",
            "--attr",
            "building=17",
            "publish",
            "sensors/dev-1/t",
        ],
    );
    let text = render::human(&r);
    assert!(
        text.starts_with("ALLOWED  publish sensors/dev-1/t\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  by authorizations[0] (policy) rules[0] (YAML: {RULE0}.brokerResources[1].topics[0])\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("  principal: principals.attributes[0] = {building=17}\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  filter after substitution: sensors/dev-1/#  (written: sensors/{principal.clientId}/#)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  used by ports: main:1883 (not applied: no authenticationRef)\n"),
        "{text}"
    );
}

#[test]
fn the_human_form_of_a_denial_and_of_a_port_without_policy() {
    let denied = render::human(&report(
        &native(),
        &[
            "--client-id",
            "dev-1",
            "--attr",
            "building=17",
            "publish",
            "other/t",
        ],
    ));
    assert!(
        denied.starts_with("DENIED  publish other/t  — no rule matched\n"),
        "{denied}"
    );
    assert!(denied.contains("rules[0]"), "{denied}");
    let open = render::human(&report(
        &native(),
        &["--port", "main:1884", "--client-id", "x", "connect"],
    ));
    assert!(
        open.starts_with("ALLOWED  connect  — the port has no authorizationRef\n"),
        "{open}"
    );
}
