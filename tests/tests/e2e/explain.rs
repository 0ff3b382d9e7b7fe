//! `gatehouse explain`: the real binary on the seed's authorization examples (the policy of
//! `authz.rs`, plus the seed's state store rule), in both configuration forms. Checks the
//! verdict, the exit code (0 allowed, 1 denied, 2 usage or configuration error), the rule
//! and YAML path named, the substituted filters, and the JSON form.

use std::process::Output;

use gatehouse_tests::broker::{run_gatehouse, TempDir};
use serde_json::Value;

/// The e2e authorization policy (`authz.rs`: the seed's examples) and, as rules[3], the
/// seed's state store example.
use gatehouse_tests::policies::SEED_RULES_WITH_STATE_STORE as RULES;

/// Native form: `authz:8883` applies the policy (X.509 authentication), `authz:1883` names
/// it without authentication (not applied, AIO rule), `authz:1884` has no policy.
fn native_config(dir: &TempDir) -> String {
    dir.write("ca.crt", "");
    let path = dir.write(
        "gatehouse.yaml",
        &format!(
            "
listeners:
  - name: authz
    bindAddress: 127.0.0.1
    ports:
      - port: 8883
        tls: {{ mode: Automatic }}
        authenticationRef: certs
        authorizationRef: seed-policy
      - port: 1883
        authorizationRef: seed-policy
      - port: 1884
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings:
          trustedClientCaCert: client-ca
configMaps:
  client-ca: {{ files: [ ./ca.crt ] }}
authorizations:
  - name: seed-policy
    authorizationPolicies:
      rules:{RULES}"
        ),
    );
    path.to_str().expect("UTF-8 path").to_owned()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().expect("exited, not killed"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }

    fn says(&self, text: &str) -> &Run {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

async fn explain(config: &str, args: &[&str]) -> Run {
    let mut all = vec!["explain", "--config", config];
    all.extend_from_slice(args);
    Run::from(run_gatehouse(&all).await)
}

const RULE0: &str = "authorizations[0].authorizationPolicies.rules[0]";

#[tokio::test]
async fn allowed_publish_names_the_rule_and_its_yaml_path() {
    let dir = TempDir::new("explain");
    let config = native_config(&dir);
    let run = explain(
        &config,
        &[
            "--client-id",
            "temperature-sensor",
            "--attr",
            "organization=contoso",
            "publish",
            "/sensor/contoso",
        ],
    )
    .await;
    run.expect(0)
        .says("ALLOWED  publish /sensor/contoso\n")
        .says(&format!(
            "  by authorizations[0] (seed-policy) rules[0] (YAML: {RULE0}.brokerResources[1].topics[1])\n"
        ))
        .says("  principal: principals.clientIds[0] = temperature-sensor\n")
        .says(
            "  subject: clientId=temperature-sensor username=- attributes={organization=contoso}\n",
        )
        .says("  filter after substitution: /sensor/contoso  (written: /sensor/{principal.attributes.organization})\n");

    // The client id's own topic: the first topic, substituted from the client id.
    explain(
        &config,
        &[
            "--client-id",
            "humidity-sensor",
            "publish",
            "/sensor/humidity-sensor",
        ],
    )
    .await
    .expect(0)
    .says(&format!("{RULE0}.brokerResources[1].topics[0])"))
    .says("filter after substitution: /sensor/humidity-sensor");
}

#[tokio::test]
async fn denied_subscribe_lists_the_nearest_misses() {
    let dir = TempDir::new("explain");
    let config = native_config(&dir);
    let run = explain(
        &config,
        &[
            "--client-id",
            "temperature-sensor",
            "--attr",
            "organization=contoso",
            "subscribe",
            "/commands/#",
        ],
    )
    .await;
    run.expect(1)
        .says("DENIED  subscribe /commands/#  — no rule matched\n")
        // rules[0] applies to the client but its only Subscribe topic, substituted, is
        // narrower than the request.
        .says(&format!("rules[0] (YAML: {RULE0}): principals.clientIds[0] = temperature-sensor matched"))
        .says("topics[0] /commands/{principal.attributes.organization} -> /commands/contoso: does not contain /commands/#")
        // The others do not apply, and say what was tried.
        .says("rules[1]: usernames[0] monitor vs username=-")
        .says("rules[2]: attributes[0] {building=building22}: missing building");
    assert!(
        !run.stdout.contains("\n  by "),
        "a denial names no deciding rule:\n{}",
        run.stdout
    );

    // The narrower filter it is allowed.
    explain(
        &config,
        &[
            "--client-id",
            "temperature-sensor",
            "--attr",
            "organization=contoso",
            "subscribe",
            "/commands/contoso",
        ],
    )
    .await
    .expect(0)
    .says(&format!("{RULE0}.brokerResources[2].topics[0])"));
}

#[tokio::test]
async fn building_connect_goes_through_the_client_id_glob() {
    let dir = TempDir::new("explain");
    let config = native_config(&dir);
    explain(
        &config,
        &[
            "--client-id",
            "building22-fan",
            "--attr",
            "building=building22",
            "connect",
        ],
    )
    .await
    .expect(0)
    .says("ALLOWED  connect\n")
    .says("rules[2] (YAML: authorizations[0].authorizationPolicies.rules[2].brokerResources[0].clientIds[0])")
    .says("  principal: principals.attributes[0] = {building=building22}\n")
    .says("  client id glob after substitution: building22*  (written: {principal.attributes.building}*)\n");

    // Right attribute, wrong client id: the rule applies, its Connect resource does not.
    explain(
        &config,
        &["--client-id", "fan", "--attr", "building=building22", "connect"],
    )
    .await
    .expect(1)
    .says("DENIED  connect  — no rule matched\n")
    .says("no Connect resource lets this client id through")
    .says("brokerResources[0] Connect: client id fan matches none of its clientIds")
    .says("clientIds[0] {principal.attributes.building}* -> building22*: does not match the client id");

    // The other building's client id with this building's attribute.
    explain(
        &config,
        &[
            "--client-id",
            "building23-fan",
            "--attr",
            "building=building22",
            "connect",
        ],
    )
    .await
    .expect(1);
}

#[tokio::test]
async fn state_store_keys_pattern_and_binary() {
    let dir = TempDir::new("explain");
    let config = native_config(&dir);
    let rule3 = "authorizations[0].authorizationPolicies.rules[3]";
    let user = ["--client-id", "dev-1", "--username", "temperature-sensor"];
    let with = |more: &[&'static str]| -> Vec<&'static str> {
        let mut v = user.to_vec();
        v.extend_from_slice(more);
        v
    };
    explain(&config, &with(&["get", "clients/dev-1/config"]))
        .await
        .expect(0)
        .says("ALLOWED  get clients/dev-1/config\n")
        .says(&format!("rules[3] (YAML: {rule3}.stateStoreResources[0].keys[3])"))
        .says("  key pattern after substitution: clients/dev-1/*  (written: clients/{principal.clientId}/*)\n");
    explain(&config, &with(&["keynotify", "mynumerickeysuffix7"]))
        .await
        .expect(0)
        .says(&format!("{rule3}.stateStoreResources[0].keys[2])"));
    // Another client's key, and a write on a Read key.
    explain(&config, &with(&["get", "clients/dev-2/config"]))
        .await
        .expect(1);
    explain(&config, &with(&["set", "myreadkey"]))
        .await
        .expect(1)
        .says("DENIED  set myreadkey  — no rule matched\n")
        .says("stateStoreResources[0] Read Pattern: method Read does not allow set")
        .says("keys[0] myreadkey: matches myreadkey");
    // Binary keys, given in base64.
    explain(&config, &with(&["vdel", "--binary-key", "AAEC"]))
        .await
        .expect(0)
        .says("ALLOWED  vdel (binary key, base64 AAEC)\n")
        .says(&format!("{rule3}.stateStoreResources[1].keys[0])"));
    explain(&config, &with(&["del", "--binary-key", "AAED"]))
        .await
        .expect(1);
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = TempDir::new("explain");
    let config = native_config(&dir);
    for (args, message) in [
        (
            &["--client-id", "c", "--attr", "organization", "connect"][..],
            "expected KEY=VALUE",
        ),
        (
            &["--client-id", "c", "--attr", "=contoso", "connect"][..],
            "the attribute name is empty",
        ),
        (
            &[
                "--client-id",
                "c",
                "--attr",
                "a=1",
                "--attr",
                "a=2",
                "connect",
            ][..],
            "--attr `a` given twice",
        ),
        (&["--client-id", "c", "publish"][..], "needs a TARGET"),
        (&["--client-id", "c", "connect", "x"][..], "takes no TARGET"),
        (
            &["--client-id", "c", "get", "--binary-key", "!!"][..],
            "not base64",
        ),
        (&["--client-id", "c", "teleport", "x"][..], "invalid value"),
        (&["connect"][..], "--client-id"),
        (
            &["--client-id", "c", "--policy", "nope", "connect"][..],
            "no authorization named `nope`",
        ),
        (
            &["--client-id", "c", "--port", "9999", "connect"][..],
            "no such port; the configuration has authz:8883, authz:1883, authz:1884",
        ),
    ] {
        let run = explain(&config, args).await;
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(message),
            "{args:?}: stderr lacks {message:?}:\n{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }

    // An invalid configuration is a configuration error, not a denial.
    let bad = dir.write(
        "bad.yaml",
        "listeners: [ { name: lst, ports: [ { port: 1, authorizationRef: missing } ] } ]\n",
    );
    let run = Run::from(
        run_gatehouse(&[
            "explain",
            "--config",
            bad.to_str().expect("UTF-8 path"),
            "--client-id",
            "c",
            "connect",
        ])
        .await,
    );
    run.expect(2);
    assert!(run.stderr.contains("no authorization named `missing`"));

    // Two policies and no --policy/--port: which one is ambiguous.
    let two = dir.write(
        "two.yaml",
        "listeners: [ { name: lst, ports: [ { port: 1 } ] } ]
authorizations:
  - { name: one, authorizationPolicies: { rules: [] } }
  - { name: two, authorizationPolicies: { rules: [] } }
",
    );
    let run = Run::from(
        run_gatehouse(&[
            "explain",
            "--config",
            two.to_str().expect("UTF-8 path"),
            "--client-id",
            "c",
            "connect",
        ])
        .await,
    );
    run.expect(2);
    assert!(
        run.stderr.contains("2 authorizations (`one`, `two`)"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn json_output() {
    let dir = TempDir::new("explain");
    let config = native_config(&dir);
    let v = explain(
        &config,
        &[
            "--client-id",
            "temperature-sensor",
            "--attr",
            "organization=contoso",
            "--json",
            "publish",
            "/sensor/contoso",
        ],
    )
    .await
    .expect(0)
    .json();
    assert_eq!(v["allowed"], true);
    assert_eq!(v["reason"], "allowed by rule");
    assert_eq!(v["action"], "publish");
    assert_eq!(v["target"], "/sensor/contoso");
    assert_eq!(v["rule"], 0);
    assert_eq!(v["rulePath"], RULE0);
    assert_eq!(
        v["yamlPath"],
        format!("{RULE0}.brokerResources[1].topics[1]")
    );
    assert_eq!(v["subject"]["clientId"], "temperature-sensor");
    assert_eq!(v["subject"]["username"], Value::Null);
    assert_eq!(v["subject"]["attributes"]["organization"], "contoso");
    assert_eq!(v["policy"]["name"], "seed-policy");
    assert_eq!(v["policy"]["path"], "authorizations[0]");
    assert_eq!(v["policy"]["applied"], true);
    assert_eq!(v["policy"]["rules"], 4);
    assert_eq!(v["match"]["method"], "Publish");
    assert_eq!(
        v["match"]["principal"]["path"],
        format!("{RULE0}.principals.clientIds[0]")
    );
    assert_eq!(
        v["match"]["entry"]["written"],
        "/sensor/{principal.attributes.organization}"
    );
    assert_eq!(v["match"]["entry"]["substituted"], "/sensor/contoso");
    assert_eq!(v["nearMisses"], Value::Array(Vec::new()));

    let v = explain(
        &config,
        &[
            "--client-id",
            "temperature-sensor",
            "--attr",
            "organization=contoso",
            "--json",
            "subscribe",
            "/commands/#",
        ],
    )
    .await
    .expect(1)
    .json();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["reason"], "no rule matched");
    assert_eq!(v["rule"], Value::Null);
    assert_eq!(v["yamlPath"], Value::Null);
    let misses = v["nearMisses"].as_array().expect("nearMisses");
    assert_eq!(misses.len(), 1, "{misses:?}");
    assert_eq!(misses[0]["rule"], 0);
    let topic = &misses[0]["resources"][0]["entries"][0];
    assert_eq!(
        topic["path"],
        format!("{RULE0}.brokerResources[2].topics[0]")
    );
    assert_eq!(topic["substituted"], "/commands/contoso");
    assert_eq!(topic["matched"], false);
    let others: Vec<i64> = v["principalsNotMatched"]
        .as_array()
        .expect("principalsNotMatched")
        .iter()
        .map(|m| m["rule"].as_i64().expect("rule"))
        .collect();
    assert_eq!(others, [1, 2, 3]);
    assert_eq!(
        v["principalsNotMatched"][0]["tried"][0]["path"],
        "authorizations[0].authorizationPolicies.rules[1].principals.usernames[0]"
    );
}

#[tokio::test]
async fn port_selects_the_policy_with_the_aio_rules() {
    let dir = TempDir::new("explain");
    let config = native_config(&dir);
    let stranger = ["--client-id", "stranger", "publish", "anything"];
    let with_port = |port: &'static str| {
        let mut v = vec!["--port", port];
        v.extend_from_slice(&stranger);
        v
    };
    // Authentication and a policy: the policy decides.
    explain(&config, &with_port("authz:8883"))
        .await
        .expect(1)
        .says("DENIED  publish anything  — no rule matched\n")
        .says("port: authz:8883 (YAML: listeners[0].ports[0]) authenticationRef=certs authorizationRef=seed-policy");
    // A policy without authentication is not applied (AIO rule).
    let run = explain(&config, &with_port("1883")).await;
    run.expect(0)
        .says("ALLOWED  publish anything  — the port does not apply the policy\n")
        .says("no authenticationRef")
        .says("the policy alone would decide: DENIED — no rule matched");
    let v = explain(&config, &[&with_port("1883")[..], &["--json"]].concat())
        .await
        .expect(0)
        .json();
    assert_eq!(v["allowed"], true);
    assert_eq!(v["port"]["policyApplied"], false);
    assert_eq!(v["policy"]["applied"], false);
    assert_eq!(v["policy"]["allowed"], false);
    // No policy at all.
    explain(&config, &with_port("authz:1884"))
        .await
        .expect(0)
        .says("ALLOWED  publish anything  — the port has no authorizationRef\n");
}

#[tokio::test]
async fn manifest_paths_are_the_config_crates() {
    let dir = TempDir::new("explain");
    dir.write("ca.crt", "");
    let config = dir.write(
        "aio.yaml",
        "apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: { name: default }
spec:
  ports:
    - port: 18883
      tls: { mode: Automatic }
      authenticationRef: certs
      authorizationRef: building-policy
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: { name: certs }
spec:
  authenticationMethods:
    - method: X509
      x509Settings: { trustedClientCaCert: client-ca }
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: { name: building-policy }
spec:
  authorizationPolicies:
    rules:
      - principals:
          attributes: [ { building: building22 } ]
        brokerResources:
          - method: Connect
            clientIds: [\"{principal.attributes.building}*\"]
          - method: Publish
            topics: [\"sensors/{principal.attributes.building}/{principal.clientId}/sensor\"]
",
    );
    let config = config.to_str().expect("UTF-8 path");
    let doc = "document 3 (BrokerAuthorization building-policy)";
    explain(
        config,
        &[
            "--port",
            "default:18883",
            "--client-id",
            "building22-fan",
            "--attr",
            "building=building22",
            "publish",
            "sensors/building22/building22-fan/sensor",
        ],
    )
    .await
    .expect(0)
    .says(&format!(
        "  by {doc} rules[0] (YAML: {doc}.spec.authorizationPolicies.rules[0].brokerResources[1].topics[0])\n"
    ))
    .says("port: default:18883 (YAML: document 1 (BrokerListener default).spec.ports[0])");
}
