//! Every validation rule of config.md, each asserting the exact YAML path it reports.

use gatehouse_config::*;

use crate::{assert_problem, assert_warning, load, problems};

/// One valid listener, then `rest`.
fn with(rest: &str) -> String {
    format!("listeners:\n  - name: default\n    ports:\n      - port: 1883\n{rest}")
}

#[test]
fn listener_names_follow_the_resource_name_rule() {
    for (name, needle) in [
        ("Default", "contains 'D'"),
        ("ab", "length 2"),
        ("edge-", "starts or ends with '-'"),
        ("under_score", "contains '_'"),
        (&"a".repeat(64), "length 64"),
    ] {
        assert_problem(
            &format!("listeners: [ {{ name: '{name}', ports: [ {{ port: 1 }} ] }} ]"),
            "listeners[0].name",
            needle,
        );
    }
    assert_problem(
        "listeners: [ { ports: [ { port: 1 } ] } ]",
        "listeners[0].name",
        "missing: every listener needs a name",
    );
    load("listeners: [ { name: a-1, ports: [ { port: 1 } ] } ]");
}

#[test]
fn names_are_unique_per_kind() {
    assert_problem(
        "
listeners:
  - { name: edge, ports: [ { port: 1 } ] }
  - { name: edge, serviceType: NodePort, serviceName: other, ports: [ { port: 2 } ] }
",
        "listeners[1].name",
        "duplicate listener name `edge` (also at listeners[0].name)",
    );
    assert_problem(
        &with(
            "
authentications:
  - { name: auth, authenticationMethods: [ { method: X509 } ] }
  - { name: auth, authenticationMethods: [ { method: X509 } ] }
",
        ),
        "authentications[1].name",
        "duplicate authentication name `auth`",
    );
    assert_problem(
        &with(
            "
authorizations:
  - { name: policy, authorizationPolicies: {} }
  - { name: policy, authorizationPolicies: {} }
",
        ),
        "authorizations[1].name",
        "duplicate authorization name",
    );
    // The same name in two kinds is fine.
    load(&with(
        "
authentications: [ { name: same, authenticationMethods: [ { method: X509 } ] } ]
authorizations: [ { name: same, authorizationPolicies: {} } ]
",
    ));
}

#[test]
fn port_numbers_are_unique_across_listeners() {
    assert_problem(
        "
listeners:
  - { name: one, ports: [ { port: 1883 } ] }
  - { name: two, serviceType: LoadBalancer, ports: [ { port: 8883 }, { port: 1883 } ] }
",
        "listeners[1].ports[1].port",
        "port 1883 is already used by listeners[0].ports[0].port",
    );
}

#[test]
fn port_zero_means_any_free_port_and_may_repeat() {
    let config =
        load("listeners: [ { name: default, ports: [ { port: 0 }, { port: 0 } ] } ]").config;
    assert_eq!(config.listeners[0].ports.len(), 2);
}

#[test]
fn a_listener_port_cannot_be_the_metrics_port() {
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 9600 } ] } ]",
        "listeners[0].ports[0].port",
        "also the metrics port",
    );
    load("listeners: [ { name: default, ports: [ { port: 9600 } ] } ]\ndiagnostics: { metrics: { prometheusPort: 9601 } }");
}

#[test]
fn at_most_one_listener_per_service_type() {
    assert_problem(
        "
listeners:
  - { name: one, ports: [ { port: 1 } ] }
  - { name: two, serviceType: clusterip, ports: [ { port: 2 } ] }
",
        "listeners[1].serviceType",
        "a ClusterIp listener already exists (listeners[0].name)",
    );
}

#[test]
fn service_names_are_unique_and_default_to_the_name() {
    assert_problem(
        "
listeners:
  - { name: one, ports: [ { port: 1 } ] }
  - { name: two, serviceType: NodePort, serviceName: one, ports: [ { port: 2 } ] }
",
        "listeners[1].serviceName",
        "duplicate serviceName `one` (also at listeners[0].serviceName)",
    );
}

#[test]
fn at_least_one_listener_and_one_port_each() {
    assert_problem(
        "listeners: []",
        "listeners",
        "at least one listener is required",
    );
    assert_problem(
        "listeners: [ { name: default } ]",
        "listeners[0].ports",
        "at least one port is required",
    );
}

#[test]
fn bind_address_must_be_an_ip_address() {
    assert_problem(
        "listeners: [ { name: default, bindAddress: localhost, ports: [ { port: 1 } ] } ]",
        "listeners[0].bindAddress",
        "`localhost` is not an IP address",
    );
    let config =
        load("listeners: [ { name: default, bindAddress: '::1', ports: [ { port: 1 } ] } ]").config;
    assert_eq!(config.listeners[0].bind_address.to_string(), "::1");
}

#[test]
fn references_must_name_existing_resources() {
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1, authenticationRef: nope } ] } ]",
        "listeners[0].ports[0].authenticationRef",
        "no authentication named `nope`; none is defined",
    );
    assert_problem(
        "
listeners: [ { name: default, ports: [ { port: 1, authenticationRef: auth, authorizationRef: nope } ] } ]
authentications: [ { name: auth, authenticationMethods: [ { method: Custom, customSettings: { endpoint: 'https://a' } } ] } ]
authorizations: [ { name: policy, authorizationPolicies: {} } ]
",
        "listeners[0].ports[0].authorizationRef",
        "no authorization named `nope`; defined: policy",
    );
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1, tls: { mode: Automatic, certManagerCertificateSpec: { issuerRef: { name: my-issuer } } } } ] } ]",
        "listeners[0].ports[0].tls.certManagerCertificateSpec.issuerRef.name",
        "no issuer named `my-issuer`",
    );
    assert_problem(
        &with("certificates: [ { name: ca-cert, secretName: ca, issuerRef: { name: nope, kind: Issuer } } ]"),
        "certificates[0].issuerRef.name",
        "no issuer named `nope`",
    );
}

#[test]
fn the_default_issuer_always_exists_and_user_issuers_resolve() {
    load(
        "
listeners:
  - name: default
    ports:
      - { port: 1, tls: { mode: Automatic, certManagerCertificateSpec: { issuerRef: { name: azure-iot-operations-aio-certificate-issuer, kind: ClusterIssuer } } } }
      - { port: 2, tls: { mode: Automatic, certManagerCertificateSpec: { issuerRef: { name: mine, kind: ClusterIssuer } } } }
issuers: [ { name: mine, kind: ClusterIssuer, ca: { secretName: mine-ca } } ]
",
    );
    assert_problem(
        &with("issuers: [ { name: azure-iot-operations-aio-certificate-issuer, selfSigned: {} } ]"),
        "issuers[0].name",
        "the built-in issuer's name",
    );
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1, tls: { mode: Automatic, certManagerCertificateSpec: { issuerRef: { name: azure-iot-operations-aio-certificate-issuer, group: example.com } } } } ] } ]",
        "listeners[0].ports[0].tls.certManagerCertificateSpec.issuerRef.group",
        "only cert-manager.io issuers",
    );
}

#[test]
fn an_issuer_has_exactly_one_of_ca_and_self_signed() {
    assert_problem(
        &with("issuers: [ { name: both, ca: { secretName: s }, selfSigned: {} } ]"),
        "issuers[0]",
        "found both",
    );
    assert_problem(
        &with("issuers: [ { name: neither } ]"),
        "issuers[0]",
        "found neither",
    );
}

#[test]
fn x509_needs_tls_on_the_port() {
    assert_problem(
        "
listeners:
  - name: default
    ports:
      - { port: 8883, authenticationRef: certs, tls: { mode: Automatic } }
      - { port: 1883, authenticationRef: certs }
authentications:
  - name: certs
    authenticationMethods: [ { method: ServiceAccountToken, serviceAccountTokenSettings: { audiences: [a] } }, { method: X509 } ]
",
        "listeners[0].ports[1].authenticationRef",
        "authentication `certs` uses X509, which needs TLS on this port",
    );
}

#[test]
fn authorization_without_authentication_is_a_warning() {
    assert_warning(
        "
listeners: [ { name: default, ports: [ { port: 1883, authorizationRef: policy } ] } ]
authorizations: [ { name: policy, authorizationPolicies: { rules: [] } } ]
",
        "listeners[0].ports[0].authorizationRef",
        "policy `policy` is not applied",
    );
}

#[test]
fn service_account_tokens_need_an_audience() {
    assert_problem(
        &with(
            "authentications: [ { name: sat, authenticationMethods: [ { method: ServiceAccountToken, serviceAccountTokenSettings: { audiences: [] } } ] } ]",
        ),
        "authentications[0].authenticationMethods[0].serviceAccountTokenSettings.audiences",
        "at least one audience is required",
    );
    assert_problem(
        &with(
            "authentications: [ { name: sat, authenticationMethods: [ { method: ServiceAccountToken, serviceAccountTokenSettings: { audiences: [a], tokenReview: {}, jwks: { issuer: 'https://k' } } } ] } ]",
        ),
        "authentications[0].authenticationMethods[0].serviceAccountTokenSettings",
        "alternatives",
    );
}

#[test]
fn custom_endpoint_must_be_https() {
    assert_problem(
        &with(
            "authentications: [ { name: custom, authenticationMethods: [ { method: Custom, customSettings: { endpoint: 'http://auth:8080/' } } ] } ]",
        ),
        "authentications[0].authenticationMethods[0].customSettings.endpoint",
        "must start with https://",
    );
    assert_problem(
        &with(
            "authentications: [ { name: custom, authenticationMethods: [ { method: Custom, customSettings: { endpoint: 'https://a', headers: { \"bad header\": x, x-ok: \"a\\r\\nInjected: 1\" } } } ] } ]",
        ),
        "authentications[0].authenticationMethods[0].customSettings.headers.x-ok",
        "line breaks",
    );
}

#[test]
fn an_authentication_has_at_least_one_method() {
    assert_problem(
        &with("authentications: [ { name: empty, authenticationMethods: [] } ]"),
        "authentications[0].authenticationMethods",
        "at least one method is required",
    );
}

#[test]
fn authorization_attribute_subjects_must_parse_as_rfc4514_names() {
    let yaml = |subject: &str| {
        with(&format!(
            "authentications: [ {{ name: certs, authenticationMethods: [ {{ method: X509, x509Settings: {{ authorizationAttributes: {{ fan: {{ subject: '{subject}', attributes: {{ building: '17' }} }} }} }} }} ] }} ]"
        ))
    };
    let at = "authentications[0].authenticationMethods[0].x509Settings.authorizationAttributes.fan.subject";
    for (subject, needle) in [
        ("", "empty subject"),
        ("smart-fan", "has no `=`"),
        ("CN = a+b", "has no `=`"),
        ("CN = a,", "is empty"),
        ("XX = a", "unknown attribute type `XX`"),
        ("CN = a\\q", "escapes nothing"),
        ("CN = a; O = b", "unescaped `;`"),
    ] {
        assert_problem(&yaml(subject), at, needle);
    }
    for subject in [
        "CN = smart-fan, O = Contoso",
        "cn=a\\, O\\=b + OU=c, 2.5.4.6=US, OID.0.9.2342.19200300.100.1.25=example",
        "CN=#0C03666F6F, emailAddress=x@y, SERIALNUMBER=7",
    ] {
        let subjects: Vec<String> = match load_str(&yaml(subject), "test.yaml") {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(problems)) => problems
                .into_iter()
                .filter(|p| p.path == at)
                .map(|p| p.message)
                .collect(),
            Err(other) => panic!("{other}"),
        };
        assert!(subjects.is_empty(), "{subject}: {subjects:?}");
    }
}

#[test]
fn device_registry_validation_needs_a_registry_file() {
    assert_problem(
        &with(
            "authentications: [ { name: devices, authenticationMethods: [ { method: X509, x509Settings: { additionalValidation: AzureDeviceRegistry } } ] } ]",
        ),
        "authentications[0].authenticationMethods[0].x509Settings.additionalValidation",
        "needs `deviceRegistry",
    );
}

#[test]
fn device_registry_recheck_interval_is_a_positive_go_duration_defaulting_to_10m() {
    let registry = |yaml: &str| {
        let config = load(&with(&format!(
            "authentications: [ {{ name: devices, authenticationMethods: [ {{ method: X509, x509Settings: {{ additionalValidation: AzureDeviceRegistry, deviceRegistry: {yaml} }} }} ] }} ]"
        )))
        .config;
        let AuthenticationMethod::X509(x509) = &config.authentications[0].authentication_methods[0]
        else {
            panic!("X509 method")
        };
        x509.device_registry.clone().expect("deviceRegistry")
    };
    assert_eq!(
        registry("{ file: /etc/devices.yaml }").recheck_interval,
        DEFAULT_DEVICE_RECHECK_INTERVAL
    );
    assert_eq!(
        DEFAULT_DEVICE_RECHECK_INTERVAL,
        std::time::Duration::from_secs(600)
    );
    assert_eq!(
        registry("{ file: /etc/devices.yaml, recheckInterval: 1m30s }").recheck_interval,
        std::time::Duration::from_secs(90)
    );
    let at = "authentications[0].authenticationMethods[0].x509Settings.deviceRegistry";
    let yaml = |registry: &str| {
        with(&format!(
            "authentications: [ {{ name: devices, authenticationMethods: [ {{ method: X509, x509Settings: {{ additionalValidation: AzureDeviceRegistry, deviceRegistry: {registry} }} }} ] }} ]"
        ))
    };
    assert_problem(
        &yaml("{ file: d.yaml, recheckInterval: 0s }"),
        &format!("{at}.recheckInterval"),
        "must be longer than 0",
    );
    assert_problem(
        &yaml("{ file: d.yaml, recheckInterval: 10 }"),
        &format!("{at}.recheckInterval"),
        "missing unit",
    );
    assert_problem(
        &yaml("{ file: d.yaml, recheck: 1m }"),
        &format!("{at}.recheck"),
        "unknown field",
    );
}

#[test]
fn connect_resources_carry_no_topics() {
    assert_problem(
        &with(
            "
authorizations:
  - name: policy
    authorizationPolicies:
      rules:
        - principals: { clientIds: [a] }
          brokerResources:
            - { method: Publish, topics: [a/b] }
            - { method: Connect, topics: [a/#] }
",
        ),
        "authorizations[0].authorizationPolicies.rules[0].brokerResources[1].topics",
        "Connect resources carry no topics",
    );
    assert_problem(
        &with(
            "authorizations: [ { name: policy, authorizationPolicies: { rules: [ { principals: {}, brokerResources: [ { method: Subscribe } ] } ] } } ]",
        ),
        "authorizations[0].authorizationPolicies.rules[0].brokerResources[0].topics",
        "Subscribe needs at least one topic filter",
    );
}

#[test]
fn secret_and_config_map_names_cannot_leave_their_folders() {
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1, tls: { mode: Manual, manual: { secretRef: ../../etc } } } ] } ]",
        "listeners[0].ports[0].tls.manual.secretRef",
        "is not a valid secret name",
    );
    assert_problem(
        &with("configMaps: { ../ca: { files: [a.pem] } }"),
        "configMaps.../ca",
        "is not a valid config map name",
    );
}

#[test]
fn renewal_must_come_before_expiry() {
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1, tls: { mode: Automatic, certManagerCertificateSpec: { duration: 24h, renewBefore: 48h } } } ] } ]",
        "listeners[0].ports[0].tls.certManagerCertificateSpec.renewBefore",
        "48h must be above 0 and shorter than duration (24h)",
    );
}

#[test]
fn two_certificates_cannot_write_one_secret() {
    assert_problem(
        "
listeners:
  - name: default
    ports:
      - { port: 1, tls: { mode: Automatic, certManagerCertificateSpec: { secretName: shared } } }
      - { port: 2, tls: { mode: Automatic, certManagerCertificateSpec: { secretName: shared } } }
",
        "listeners[0].ports[1].tls.certManagerCertificateSpec.secretName",
        "duplicate written secret `shared`",
    );
}

#[test]
fn websockets_path_applies_to_websockets_only() {
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1, path: /mqtt } ] } ]",
        "listeners[0].ports[0].path",
        "WebSockets ports only",
    );
    assert_problem(
        "listeners: [ { name: default, ports: [ { port: 1, protocol: WebSockets, path: mqtt } ] } ]",
        "listeners[0].ports[0].path",
        "not an HTTP path",
    );
}

#[test]
fn broker_limits_and_log_level_are_checked() {
    assert_problem(
        &with("broker: { maxPacketSizeBytes: 0 }"),
        "broker.maxPacketSizeBytes",
        "allowed: 1..=268435456",
    );
    assert_problem(
        &with("broker: { subscriberQueueLimit: { length: 0 } }"),
        "broker.subscriberQueueLimit.length",
        "at least 1",
    );
    assert_problem(
        &with("broker: { subscriberQueueLimit: { maxBytes: 0 } }"),
        "broker.subscriberQueueLimit.maxBytes",
        "at least 1",
    );
    for field in [
        "maxSubscriptionsPerClient",
        "maxRetainedMessages",
        "maxRetainedBytes",
        "maxSubscriptionBytesPerClient",
        "maxSessions",
        "stateStoreMaxKeyNotifyPerClient",
    ] {
        assert_problem(
            &with(&format!("broker: {{ {field}: 0 }}")),
            &format!("broker.{field}"),
            "at least 1",
        );
    }
    assert_problem(
        &with("broker: { connectTimeout: 0s }"),
        "broker.connectTimeout",
        "longer than 0",
    );
    assert_problem(
        &with("diagnostics: { logs: { level: verbose } }"),
        "diagnostics.logs.level",
        "not a log filter",
    );
    load(&with(
        "diagnostics: { logs: { level: 'warn,authz=debug,gatehouse::tls=trace' } }",
    ));
}

/// The state store byte quotas (issue 13): sizes as in `persistence.maxSize`, at least 1.
#[test]
fn state_store_byte_quotas_are_sizes_of_at_least_one_byte() {
    for field in [
        "stateStoreMaxValueBytes",
        "stateStoreMaxTotalBytes",
        "stateStorePerClientBytes",
    ] {
        assert_problem(
            &with(&format!("broker: {{ {field}: 0 }}")),
            &format!("broker.{field}"),
            "at least 1",
        );
    }
    let config = load(&with(
        "broker: { stateStoreMaxValueBytes: 64KiB, stateStoreMaxTotalBytes: 16Mi, \
         stateStorePerClientBytes: 1000000 }",
    ));
    assert_eq!(config.config.broker.state_store_max_value_bytes, 64 * 1024);
    assert_eq!(
        config.config.broker.state_store_max_total_bytes,
        16 * 1024 * 1024
    );
    assert_eq!(config.config.broker.state_store_per_client_bytes, 1_000_000);
    let defaults = BrokerLimits::default();
    assert_eq!(defaults.state_store_max_value_bytes, 1024 * 1024);
    assert_eq!(defaults.state_store_max_total_bytes, 64 * 1024 * 1024);
    assert_eq!(defaults.state_store_per_client_bytes, 8 * 1024 * 1024);
}

#[test]
fn pre_connect_limits_are_checked() {
    assert_problem(
        &with("broker: { maxPendingConnections: 0 }"),
        "broker.maxPendingConnections",
        "at least 1",
    );
    assert_problem(
        &with("broker: { maxPendingConnectionsPerAddress: 0 }"),
        "broker.maxPendingConnectionsPerAddress",
        "at least 1",
    );
    // Above `maxConnections` is allowed (and clamped by the broker): the defaults must
    // not turn a small `maxConnections` into an error.
    let config = load(&with(
        "broker: { maxConnections: 10, maxPendingConnections: 20, maxPendingConnectionsPerAddress: 30 }",
    ))
    .config;
    assert_eq!(config.broker.max_pending_connections, 20);
    assert_eq!(config.broker.max_pending_connections_per_address, 30);
}

#[test]
fn all_problems_are_reported_at_once() {
    let problems = problems(
        "
listeners:
  - name: Bad
    bindAddress: nowhere
    ports:
      - { port: 1883, authenticationRef: missing }
  - name: second
    ports:
      - { port: 1883 }
authentications:
  - name: sat
    authenticationMethods: [ { method: ServiceAccountToken, serviceAccountTokenSettings: { audiences: [] } } ]
",
    );
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "listeners[0].name",
        "listeners[0].bindAddress",
        "listeners[0].ports[0].authenticationRef",
        "listeners[1].serviceType",
        "listeners[1].ports[0].port",
        "authentications[0].authenticationMethods[0].serviceAccountTokenSettings.audiences",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    // Display: one `<path>: <message>` line per problem.
    let text = ConfigError::Invalid(problems.clone()).to_string();
    assert_eq!(text.lines().count(), problems.len());
    assert!(text.lines().all(|line| line.contains(": ")));
}

#[test]
fn config_validate_checks_code_built_configs() {
    let mut config = Config::local_default();
    config.listeners[0].ports[1].port = 1883;
    config.listeners[0].ports[0].authorization_ref = Some("policy".into());
    let err = config.validate().unwrap_err();
    let mut paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "listeners[0].ports[0].authorizationRef",
            "listeners[0].ports[1].port"
        ]
    );
}

/// `maxSubscriptionBytesPerClient` (issue 13) is a size, 256 KiB by default.
#[test]
fn subscription_bytes_per_client_is_a_size() {
    let config = load(&with("broker: { maxSubscriptionBytesPerClient: 16KiB }"));
    assert_eq!(
        config.config.broker.max_subscription_bytes_per_client,
        16 * 1024
    );
    let config = load(&with("broker: { maxSubscriptionBytesPerClient: 1000 }"));
    assert_eq!(config.config.broker.max_subscription_bytes_per_client, 1000);
    assert_eq!(
        BrokerLimits::default().max_subscription_bytes_per_client,
        256 * 1024
    );
}
