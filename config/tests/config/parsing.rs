//! YAML-level behaviour: types, enums, durations, defaults, syntax and type errors.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use gatehouse_config::*;

use crate::{assert_problem, load, problems};

#[test]
fn defaults_are_applied_in_the_model() {
    let config = load(
        "
listeners:
  - name: edge
    ports:
      - port: 8883
        tls: { mode: Automatic }
",
    )
    .config;
    let listener = &config.listeners[0];
    assert_eq!(listener.service_type, ServiceType::ClusterIp);
    assert_eq!(listener.service_name, "edge");
    assert_eq!(listener.bind_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let port = &listener.ports[0];
    assert_eq!(port.protocol, Protocol::Mqtt);
    assert_eq!(port.path, None);
    let Some(Tls::Automatic(spec)) = &port.tls else {
        panic!()
    };
    assert_eq!(spec.issuer_ref, IssuerRef::default());
    assert_eq!(spec.issuer_ref.name, DEFAULT_ISSUER);
    assert_eq!(spec.duration, Duration::from_secs(2160 * 3600));
    assert_eq!(spec.renew_before, Duration::from_secs(720 * 3600));
    assert_eq!(spec.private_key.algorithm, PrivateKeyAlgorithm::Ec256);
    assert_eq!(spec.private_key.rotation_policy, RotationPolicy::Always);
    assert_eq!(spec.secret_name, "edge-8883");
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.broker, BrokerLimits::default());
    assert_eq!(config.broker.connect_timeout, Duration::from_secs(10));
    assert_eq!(config.diagnostics.metrics.prometheus_port, 9600);
}

#[test]
fn enums_are_case_insensitive() {
    let config = load(
        "
listeners:
  - name: one
    serviceType: clusterIP
    ports: [ { port: 1, protocol: websockets } ]
  - name: two
    serviceType: loadBalancer
    ports: [ { port: 2, protocol: MQTT, authenticationRef: auth, authorizationRef: authz, tls: { mode: manual, manual: { secretRef: s } } } ]
  - name: three
    serviceType: NODEPORT
    ports: [ { port: 3 } ]
authentications:
  - name: auth
    authenticationMethods: [ { method: x509 }, { method: serviceaccounttoken, serviceAccountTokenSettings: { audiences: [a] } } ]
authorizations:
  - name: authz
    authorizationPolicies:
      cache: disabled
      rules:
        - principals: { usernames: [u] }
          brokerResources: [ { method: connect }, { method: PUBLISH, topics: [t] } ]
          stateStoreResources: [ { method: readwrite, keyType: pattern, keys: [k] }, { method: READ, keyType: string, keys: [k] } ]
broker:
  subscriberQueueLimit: { strategy: dropoldest }
diagnostics:
  logs: { format: JSON }
",
    )
    .config;
    let types: Vec<ServiceType> = config.listeners.iter().map(|l| l.service_type).collect();
    assert_eq!(
        types,
        [
            ServiceType::ClusterIp,
            ServiceType::LoadBalancer,
            ServiceType::NodePort
        ]
    );
    assert_eq!(config.listeners[0].ports[0].protocol, Protocol::WebSockets);
    assert_eq!(
        config.listeners[1].ports[0].tls.as_ref().unwrap().mode(),
        TlsMode::Manual
    );
    let methods = &config.authentications[0].authentication_methods;
    assert_eq!(methods[0].kind(), AuthenticationMethodKind::X509);
    let policy = &config.authorizations[0].authorization_policies;
    assert_eq!(policy.cache, CacheMode::Disabled);
    assert_eq!(
        policy.rules[0].broker_resources[1].method,
        BrokerResourceMethod::Publish
    );
    let store = &policy.rules[0].state_store_resources;
    assert_eq!(
        (store[0].method, store[0].key_type),
        (StateStoreMethod::ReadWrite, KeyType::Pattern)
    );
    assert_eq!(
        (store[1].method, store[1].key_type),
        (StateStoreMethod::Read, KeyType::String)
    );
    assert_eq!(
        config.broker.subscriber_queue_limit.strategy,
        QueueStrategy::DropOldest
    );
    assert_eq!(config.diagnostics.logs.format, LogFormat::Json);
}

#[test]
fn bad_enum_value_names_the_path_and_the_allowed_values() {
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1883, protocol: Mqtt5 } ] } ]",
        "listeners[0].ports[0].protocol",
        "unknown protocol `Mqtt5`; allowed: Mqtt, WebSockets",
    );
    assert_problem(
        "
listeners:
  - name: default
    ports:
      - port: 1883
      - port: 8883
        tls: { mode: Disabled }
",
        "listeners[0].ports[1].tls.mode",
        "allowed: Automatic, Manual",
    );
    assert_problem(
        "listeners: [ { name: default, serviceType: ClusterIP2, ports: [ { port: 1 } ] } ]",
        "listeners[0].serviceType",
        "allowed: ClusterIp, NodePort, LoadBalancer",
    );
}

#[test]
fn unknown_field_names_its_path() {
    assert_problem(
        "listeners: [ { name: default, prots: [ { port: 1883 } ] } ]",
        "listeners[0].prots",
        "unknown field `prots`",
    );
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1883, tsl: { mode: Automatic } } ] } ]",
        "listeners[0].ports[0].tsl",
        "unknown field `tsl`",
    );
    assert_problem(
        "listener: []",
        "listener",
        "expected one of `dataDir`, `listeners`",
    );
    assert_problem(
        "broker: { maxConnection: 5 }",
        "broker.maxConnection",
        "unknown field `maxConnection`",
    );
}

#[test]
fn type_error_has_path_and_line() {
    let yaml = "listeners:\n  - name: default\n    ports:\n      - port: 70000\n";
    assert_problem(
        yaml,
        "listeners[0].ports[0].port",
        "expected u16 (line 4, column 15)",
    );
}

#[test]
fn bad_yaml_syntax_gives_line_and_column() {
    let err = load_str(
        "listeners:\n  - name: default\n    ports: [ { port: 1883 }\n",
        "bad.yaml",
    )
    .unwrap_err();
    let ConfigError::Yaml {
        origin,
        line,
        column,
        ..
    } = &err
    else {
        panic!("expected a YAML error, got {err}")
    };
    assert_eq!(origin, "bad.yaml");
    assert_eq!(*line, Some(4));
    assert!(column.is_some());
    assert!(err.to_string().starts_with("bad.yaml:4:"), "{err}");

    let err = load_str("a: b: c", "x.yaml").unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Yaml {
                line: Some(1),
                column: Some(5),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn durations_use_go_syntax() {
    let config = load(
        "
listeners:
  - name: default
    ports:
      - port: 8883
        tls:
          mode: Automatic
          certManagerCertificateSpec: { duration: 1h30m, renewBefore: 45m }
broker: { connectTimeout: 2.5s }
",
    )
    .config;
    let Some(Tls::Automatic(spec)) = &config.listeners[0].ports[0].tls else {
        panic!()
    };
    assert_eq!(spec.duration, Duration::from_secs(5400));
    assert_eq!(spec.renew_before, Duration::from_secs(2700));
    assert_eq!(config.broker.connect_timeout, Duration::from_millis(2500));

    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1 } ] } ]\nbroker: { connectTimeout: 10 }",
        "broker.connectTimeout",
        "missing unit",
    );
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1 } ] } ]\nbroker: { connectTimeout: 3d }",
        "broker.connectTimeout",
        "invalid duration `3d`: unknown unit `d`",
    );
}

#[test]
fn tls_mode_and_its_settings_must_agree() {
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1, tls: { mode: Manual } } ] } ]",
        "listeners[0].ports[0].tls",
        "mode Manual needs `manual: { secretRef: <secret name> }`",
    );
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1, tls: { mode: Automatic, manual: { secretRef: s } } } ] } ]",
        "listeners[0].ports[0].tls",
        "`manual` goes with mode Manual",
    );
}

#[test]
fn authentication_method_takes_only_its_own_settings() {
    let base = "listeners: [ { name: default, ports: [ { port: 1 } ] } ]\n";
    assert_problem(
        &format!("{base}authentications: [ {{ name: auth, authenticationMethods: [ {{ method: X509, customSettings: {{ endpoint: 'https://a' }} }} ] }} ]"),
        "authentications[0].authenticationMethods[0]",
        "method X509 takes `x509Settings`, not `customSettings`",
    );
    assert_problem(
        &format!("{base}authentications: [ {{ name: auth, authenticationMethods: [ {{ method: Custom }} ] }} ]"),
        "authentications[0].authenticationMethods[0]",
        "method Custom needs `customSettings`",
    );
}

#[test]
fn cert_manager_private_key_spelling_is_accepted() {
    let yaml = |key: &str| {
        format!(
            "
listeners: [ {{ name: default, ports: [ {{ port: 1 }} ] }} ]
issuers: [ {{ name: selfsigned, selfSigned: {{}} }} ]
certificates:
  - name: ca-cert
    secretName: ca
    issuerRef: {{ name: selfsigned }}
    privateKey: {key}
"
        )
    };
    let algorithm = |key: &str| {
        load(&yaml(key)).config.certificates[0]
            .private_key
            .algorithm
    };
    assert_eq!(
        algorithm("{ algorithm: ECDSA, size: 384 }"),
        PrivateKeyAlgorithm::Ec384
    );
    assert_eq!(
        algorithm("{ algorithm: RSA }"),
        PrivateKeyAlgorithm::Rsa2048
    );
    assert_eq!(
        algorithm("{ algorithm: ed25519 }"),
        PrivateKeyAlgorithm::Ed25519
    );
    assert_eq!(
        algorithm("{ algorithm: Rsa4096 }"),
        PrivateKeyAlgorithm::Rsa4096
    );
    assert_problem(
        &yaml("{ algorithm: ECDSA, size: 512 }"),
        "certificates[0].privateKey",
        "allowed: 256, 384, 521",
    );
    assert_problem(
        &yaml("{ algorithm: Dsa }"),
        "certificates[0].privateKey",
        "allowed: Ec256, Ec384, Ec521, Ed25519, Rsa2048, Rsa4096, Rsa8192",
    );
}

#[test]
fn custom_auth_header_values_are_redacted_in_debug() {
    let config = load(
        "
listeners: [ { name: default, ports: [ { port: 1, authenticationRef: custom } ] } ]
authentications:
  - name: custom
    authenticationMethods:
      - method: Custom
        customSettings: { endpoint: 'https://auth', headers: { authorization: Bearer-s3cret } }
",
    )
    .config;
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("authorization"), "{debug}");
}

#[test]
fn an_empty_file_asks_for_a_listener() {
    assert_problem("", "listeners", "at least one listener is required");
    assert_problem(
        "# only a comment\n",
        "listeners",
        "at least one listener is required",
    );
}

#[test]
fn the_native_form_is_one_mapping() {
    assert_problem("- a\n- b\n", ".", "must be a mapping");
    assert_problem(
        "listeners: []\n---\nlisteners: []\n",
        "document 2",
        "the native form is one YAML document",
    );
}

#[test]
fn load_file_resolves_relative_paths_and_reports_io_errors() {
    let dir = std::env::temp_dir().join(format!("gatehouse-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gatehouse.yaml");
    std::fs::write(
        &file,
        "dataDir: ./state\nlisteners: [ { name: default, ports: [ { port: 1 } ] } ]\n\
         secrets: { tls-a: { certFile: certs/a.crt, keyFile: /abs/a.key } }\n",
    )
    .unwrap();
    let config = load_file(&file).unwrap().config;
    assert_eq!(config.data_dir, dir.join("state"));
    assert_eq!(config.secrets["tls-a"].cert_file, dir.join("certs/a.crt"));
    assert_eq!(
        config.secrets["tls-a"].key_file,
        PathBuf::from("/abs/a.key")
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let err = load_file(&dir.join("missing.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.yaml"), "{err}");
}

#[test]
fn only_the_first_type_error_is_reported_then_validation_reports_all() {
    // A type error stops deserialization: one problem.
    assert_eq!(
        problems("listeners: [ { name: x, ports: [ { port: a }, { port: b } ] } ]").len(),
        1
    );
}

/// Session bounds (issue 13): defaults, sizes for `subscriberQueueLimit.maxBytes` (the
/// length and strategy keep their defaults when only it is given).
#[test]
fn session_bounds_parse_with_defaults_and_sizes() {
    let defaults = load("listeners: [ { name: edge, ports: [ { port: 1883 } ] } ]").config;
    assert_eq!(defaults.broker.subscriber_queue_limit.max_bytes, 16 << 20);
    assert_eq!(defaults.broker.max_sessions, 20_000);
    assert_eq!(defaults.broker.state_store_max_key_notify_per_client, 1000);
    let set = load(
        "
listeners: [ { name: edge, ports: [ { port: 1883 } ] } ]
broker:
  subscriberQueueLimit: { maxBytes: 4MiB }
  maxSessions: 50
  stateStoreMaxKeyNotifyPerClient: 7
",
    )
    .config;
    let queue = set.broker.subscriber_queue_limit;
    assert_eq!(
        (queue.length, queue.strategy, queue.max_bytes),
        (1000, QueueStrategy::None, 4 << 20)
    );
    assert_eq!(set.broker.max_sessions, 50);
    assert_eq!(set.broker.state_store_max_key_notify_per_client, 7);
    assert_problem(
        "broker: { subscriberQueueLimit: { maxBytes: 4mb } }",
        "broker.subscriberQueueLimit.maxBytes",
        "invalid size",
    );
}
