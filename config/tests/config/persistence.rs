//! `persistence:` (AIO Broker `spec.persistence`): defaults, sizes, each policy's rules at
//! their exact YAML paths, and the Broker manifest form.

use gatehouse_config::*;

use crate::{assert_problem, assert_warning, load, problems};

/// One listener, then `persistence:` with `body` (indented block YAML).
fn with(body: &str) -> String {
    format!("listeners: [ {{ name: default, ports: [ {{ port: 1883 }} ] }} ]\npersistence:\n{body}")
}

fn persistence(body: &str) -> Persistence {
    load(&with(body))
        .config
        .persistence
        .expect("persistence is set")
}

#[test]
fn absent_means_nothing_persists() {
    let config = load("listeners: [ { name: default, ports: [ { port: 1883 } ] } ]").config;
    assert_eq!(config.persistence, None);
    assert_eq!(Config::local_default().persistence, None);
}

#[test]
fn defaults_are_aios() {
    let p = persistence("  maxSize: 1GiB\n");
    assert_eq!(p.max_size, 1 << 30);
    assert_eq!(p.dynamic_settings.user_property_key, "aio-persistence");
    assert_eq!(p.dynamic_settings.user_property_value, "true");
    assert_eq!(p.state_store.mode, PersistenceMode::None);
    assert_eq!(p.retain.mode, PersistenceMode::None);
    assert_eq!(p.subscriber_queue.mode, PersistenceMode::None);
    assert_eq!(p.state_store.custom(), None);

    let p = persistence(
        "  maxSize: 10Gi\n  stateStore:\n    mode: custom\n    stateStoreSettings:\n      \
         stateStoreResources: [ { keyType: Pattern, keys: ['a*'] } ]\n",
    );
    let settings = p.state_store.custom().expect("Custom settings");
    assert_eq!(settings.dynamic.mode, DynamicMode::Enabled);
    assert_eq!(settings.state_store_resources[0].key_type, KeyType::Pattern);
}

#[test]
fn the_aio_how_to_example_loads() {
    // The "Request persistence from a client" example of AIO's persistence how-to, as YAML.
    let p = persistence(
        r#"  maxSize: 10GiB
  dynamicSettings:
    userPropertyKey: custom-persistence-key
    userPropertyValue: "true"
  retain:
    mode: Custom
    retainSettings:
      topics: ["my/+/topics"]
      dynamic:
        mode: Enabled
  subscriberQueue:
    mode: Custom
    subscriberQueueSettings:
      subscriberClientIds: ["client-*"]
      dynamic:
        mode: Enabled
  stateStore:
    mode: Custom
    stateStoreSettings:
      stateStoreResources:
        - keyType: Pattern
          keys: ["important-*"]
      dynamic:
        mode: Enabled
"#,
    );
    assert_eq!(p.max_size, 10 << 30);
    assert_eq!(
        p.dynamic_settings.user_property_key,
        "custom-persistence-key"
    );
    let retain = p.retain.retain_settings.expect("retainSettings");
    assert_eq!(retain.topics, ["my/+/topics"]);
    let queue = p
        .subscriber_queue
        .subscriber_queue_settings
        .expect("subscriberQueueSettings");
    assert_eq!(queue.subscriber_client_ids, ["client-*"]);
    assert_eq!(
        p.state_store
            .state_store_settings
            .unwrap()
            .state_store_resources[0]
            .keys,
        ["important-*"]
    );
}

#[test]
fn max_size_is_required_and_positive() {
    assert_problem(
        &with("  stateStore: { mode: All }\n"),
        "persistence",
        "missing field `maxSize`",
    );
    assert_problem(
        &with("  maxSize: 0\n"),
        "persistence.maxSize",
        "must be larger than 0",
    );
    assert_problem(
        &with("  maxSize: 500m\n"),
        "persistence.maxSize",
        "`m` is milli",
    );
    assert_eq!(persistence("  maxSize: 1048576\n").max_size, 1 << 20);
    assert_eq!(persistence("  maxSize: 500M\n").max_size, 500_000_000);
}

#[test]
fn unknown_fields_and_values_are_errors() {
    assert_problem(
        &with("  maxSize: 1Gi\n  stateStore: { mode: Some }\n"),
        "persistence.stateStore.mode",
        "unknown persistence mode `Some`; allowed: None, All, Custom",
    );
    assert_problem(
        &with("  maxSize: 1Gi\n  statestore: { mode: All }\n"),
        "persistence.statestore",
        "unknown field `statestore`",
    );
    // AIO-only volume fields belong to the manifest form.
    assert_problem(
        &with("  maxSize: 1Gi\n  encryption: { mode: Disabled }\n"),
        "persistence.encryption",
        "unknown field `encryption`",
    );
    assert_problem(
        &with(
            "  maxSize: 1Gi\n  stateStore:\n    mode: Custom\n    stateStoreSettings:\n      \
             dynamic: { mode: Maybe }\n",
        ),
        "persistence.stateStore.stateStoreSettings.dynamic.mode",
        "unknown dynamic mode `Maybe`; allowed: Enabled, Disabled",
    );
}

#[test]
fn custom_needs_settings_that_persist_something() {
    for kind in ["retain", "stateStore", "subscriberQueue"] {
        let settings = format!("{kind}Settings");
        assert_problem(
            &with(&format!("  maxSize: 1Gi\n  {kind}: {{ mode: Custom }}\n")),
            &format!("persistence.{kind}.{settings}"),
            &format!("required with mode Custom: write `{settings}`"),
        );
        assert_problem(
            &with(&format!(
                "  maxSize: 1Gi\n  {kind}: {{ mode: Custom, {settings}: {{ dynamic: {{ mode: Disabled }} }} }}\n"
            )),
            &format!("persistence.{kind}.{settings}"),
            "persists nothing",
        );
        // Nothing listed but clients may ask: dynamic persistence only.
        load(&with(&format!(
            "  maxSize: 1Gi\n  {kind}: {{ mode: Custom, {settings}: {{}} }}\n"
        )));
        // Settings under None or All are ignored, with a warning.
        assert_warning(
            &with(&format!(
                "  maxSize: 1Gi\n  {kind}: {{ mode: All, {settings}: {{}} }}\n"
            )),
            &format!("persistence.{kind}.{settings}"),
            "ignored: it applies only with mode Custom (mode is All)",
        );
    }
}

#[test]
fn state_store_keys_follow_the_authorization_rules_without_tokens() {
    let keys = |resources: &str| {
        with(&format!(
            "  maxSize: 1Gi\n  stateStore:\n    mode: Custom\n    stateStoreSettings:\n      \
             stateStoreResources: {resources}\n"
        ))
    };
    const AT: &str = "persistence.stateStore.stateStoreSettings.stateStoreResources";
    assert_problem(
        &keys("[ { keyType: Binary, keys: ['not base64!'] } ]"),
        &format!("{AT}[0].keys[0]"),
        "is not valid base64",
    );
    assert_problem(
        &keys("[ { keyType: Pattern, keys: ['ok*', 'a[b'] } ]"),
        &format!("{AT}[0].keys[1]"),
        "is not a valid key pattern",
    );
    assert_problem(
        &keys("[ { keyType: Pattern, keys: ['clients/{principal.clientId}/*'] } ]"),
        &format!("{AT}[0].keys[0]"),
        "{principal.clientId} is substituted only in authorization rules",
    );
    assert_problem(
        &keys("[ { keyType: Pattern, keys: ['{a,b}'] } ]"),
        &format!("{AT}[0].keys[0]"),
        "glob alternation `{a,b}` is not supported",
    );
    assert_problem(
        &keys("[ { keyType: String, keys: [] } ]"),
        &format!("{AT}[0].keys"),
        "at least one key is required",
    );
    assert_problem(
        &keys("[ { keys: [a] } ]"),
        &format!("{AT}[0]"),
        "missing field `keyType`",
    );
    // String keys are literal: braces and glob characters are fine, with no warning.
    let loaded = load(&keys(
        "[ { keyType: String, keys: ['{principal.clientId}*'] }, { keyType: Binary, keys: ['AAEC'] } ]",
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn all_problems_are_reported_at_once() {
    let found = problems(&with(
        "  maxSize: 0\n  dynamicSettings: { userPropertyKey: '' }\n  retain:\n    mode: Custom\n    \
         retainSettings: { topics: ['a/#/b'] }\n  subscriberQueue:\n    mode: Custom\n    \
         subscriberQueueSettings: { subscriberClientIds: [''], topics: ['x/+y'] }\n",
    ));
    let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "persistence.maxSize",
            "persistence.dynamicSettings.userPropertyKey",
            "persistence.retain.retainSettings.topics[0]",
            "persistence.subscriberQueue.subscriberQueueSettings.subscriberClientIds[0]",
            "persistence.subscriberQueue.subscriberQueueSettings.topics[0]",
        ]
    );
}

#[test]
fn every_policy_mode_loads_without_warnings() {
    for section in ["retain", "subscriberQueue", "stateStore"] {
        let loaded = load(&with(&format!(
            "  maxSize: 1Gi\n  {section}: {{ mode: All }}\n"
        )));
        assert!(
            loaded.warnings.is_empty(),
            "{section}: {:?}",
            loaded.warnings
        );
    }
}

const LISTENER: &str = "apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: { name: default }
spec: { ports: [ { port: 1883 } ] }
---
";

#[test]
fn the_broker_manifest_gives_the_same_persistence() {
    let body = "    maxSize: 2Gi
    dynamicSettings: { userPropertyKey: persist, userPropertyValue: yes please }
    stateStore:
      mode: Custom
      stateStoreSettings:
        stateStoreResources: [ { keyType: String, keys: [a] } ]
        dynamic: { mode: Disabled }
";
    let manifest = format!(
        "{LISTENER}apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: Broker\n\
         metadata: {{ name: default }}\nspec:\n  persistence:\n{body}"
    );
    let native = persistence(&body.replace("\n  ", "\n").replacen("  ", "", 1));
    let loaded = load(&manifest);
    assert_eq!(loaded.config.persistence, Some(native));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn broker_manifest_skips_deployment_fields_and_names_its_paths() {
    let manifest = format!(
        "{LISTENER}apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: Broker\n\
         metadata: {{ name: default }}\nspec:\n  memoryProfile: Medium\n  \
         cardinality: {{ frontend: {{ replicas: 2 }} }}\n  persistence:\n    maxSize: 10GiB\n    \
         encryption: {{ mode: Enabled }}\n    persistentVolumeClaimSpec: {{ storageClassName: x }}\n    \
         stateStore: {{ mode: All }}\n"
    );
    let loaded = load(&manifest);
    assert_eq!(
        loaded.warnings,
        [
            "document 2 (Broker default).spec.cardinality: skipped: it describes a \
             Kubernetes deployment; Gatehouse is one process",
            "document 2 (Broker default).spec.memoryProfile: skipped: it describes a \
             Kubernetes deployment; Gatehouse is one process",
            "document 2 (Broker default).spec.persistence.encryption: not implemented: \
             gatehouse.redb is not encrypted (set mode Disabled to acknowledge, or protect \
             <dataDir> by other means)",
            "document 2 (Broker default).spec.persistence.persistentVolumeClaimSpec: skipped: \
             Gatehouse writes to <dataDir>/gatehouse.redb",
        ]
    );
    let p = loaded.config.persistence.expect("persistence");
    assert_eq!(p.state_store.mode, PersistenceMode::All);

    let invalid = manifest.replace("stateStore: { mode: All }", "stateStore: { mode: Custom }");
    assert_problem(
        &invalid,
        "document 2 (Broker default).spec.persistence.stateStore.stateStoreSettings",
        "required with mode Custom",
    );
    let second = format!(
        "{manifest}---\napiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: Broker\n\
         metadata: {{ name: other }}\nspec: {{}}\n"
    );
    assert_problem(
        &second,
        "document 3 (Broker other)",
        "a second Broker: Gatehouse is one broker (the first is document 2 (Broker default))",
    );
    let typo = manifest.replace("memoryProfile", "memoryProfil");
    assert_problem(
        &typo,
        "document 2 (Broker default).spec.memoryProfil",
        "unknown field `memoryProfil`",
    );
}
