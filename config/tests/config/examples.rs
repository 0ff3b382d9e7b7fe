//! The shipped examples load, and `gatehouse.yaml` is exactly the built-in default.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_config::*;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn load_example(name: &str) -> Loaded {
    match load_file(&example(name)) {
        Ok(loaded) => loaded,
        Err(err) => panic!("{name} does not load:\n{err}"),
    }
}

#[test]
fn every_example_loads_without_warnings() {
    for entry in std::fs::read_dir(example("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let loaded = load_example(&name);
            assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        }
    }
}

#[test]
fn gatehouse_yaml_is_the_local_default() {
    let text = std::fs::read_to_string(example("gatehouse.yaml")).unwrap();
    let loaded = load_str(&text, "gatehouse.yaml").unwrap();
    assert_eq!(loaded.config, Config::local_default());
}

#[test]
fn local_default_is_valid_and_local_only() {
    let config = Config::local_default();
    assert_eq!(config.validate().unwrap(), Vec::<String>::new());
    let listener = &config.listeners[0];
    assert_eq!(listener.name, "default");
    assert_eq!(
        listener.bind_address,
        "127.0.0.1".parse::<IpAddr>().unwrap()
    );
    let ports: Vec<(u16, Protocol, Option<&str>)> = listener
        .ports
        .iter()
        .map(|p| (p.port, p.protocol, p.path.as_deref()))
        .collect();
    assert_eq!(
        ports,
        [
            (1883, Protocol::Mqtt, None),
            (8080, Protocol::WebSockets, Some("/mqtt"))
        ]
    );
    assert!(listener
        .ports
        .iter()
        .all(|p| p.authentication_ref.is_none() && p.tls.is_none()));
    assert_eq!(config.data_dir, PathBuf::from("./data"));
}

#[test]
fn full_yaml_has_everything() {
    let config = load_example("full.yaml").config;
    let examples = example("");
    assert_eq!(config.data_dir, examples.join("data"));
    assert_eq!(config.listeners.len(), 2);

    let default = &config.listeners[0];
    assert_eq!(default.service_name, "gatehouse");
    let Some(Tls::Automatic(spec)) = &default.ports[1].tls else {
        panic!("port 8883 is Automatic TLS")
    };
    assert_eq!(spec.issuer_ref.name, DEFAULT_ISSUER);
    assert_eq!(spec.duration, Duration::from_secs(2160 * 3600));
    assert_eq!(spec.renew_before, Duration::from_secs(720 * 3600));
    assert_eq!(spec.san.ip, ["192.168.1.10".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        default.ports[2].tls,
        Some(Tls::Manual(ManualTls {
            secret_ref: "server-cert-secret".into()
        }))
    );

    let external = &config.listeners[1];
    assert_eq!(external.bind_address, "::".parse::<IpAddr>().unwrap());
    assert_eq!(external.service_name, "external");
    let Some(Tls::Automatic(spec)) = &external.ports[0].tls else {
        panic!("port 8885 is Automatic TLS")
    };
    assert_eq!(spec.secret_name, "external-8885");
    assert_eq!(spec.duration / 3, spec.renew_before);
    assert_eq!(spec.private_key.algorithm, PrivateKeyAlgorithm::Rsa2048);

    let kinds: Vec<AuthenticationMethodKind> = config.authentications[0]
        .authentication_methods
        .iter()
        .map(AuthenticationMethod::kind)
        .collect();
    assert_eq!(
        kinds,
        [
            AuthenticationMethodKind::X509,
            AuthenticationMethodKind::ServiceAccountToken,
            AuthenticationMethodKind::Custom
        ]
    );
    let AuthenticationMethod::ServiceAccountToken(sat) =
        &config.authentications[0].authentication_methods[1]
    else {
        panic!()
    };
    assert_eq!(
        sat.jwks.as_ref().unwrap().file,
        Some(examples.join("sa-keys.json"))
    );

    assert_eq!(
        config.secret("server-cert-secret").cert_file,
        examples.join("certs/server_chain.crt")
    );
    assert_eq!(
        config.secret("test-ca").key_file,
        examples.join("data/secrets/test-ca/tls.key")
    );
    assert_eq!(
        config.config_map("client-ca"),
        ConfigMapSource::Files(vec![examples.join("certs/ca.pem")])
    );
    assert_eq!(config.issuers.len(), 2);
    assert!(config.certificates[0].is_ca);
    assert_eq!(
        config.authorizations[0].authorization_policies.rules.len(),
        2
    );
    assert_eq!(
        config.broker.subscriber_queue_limit.strategy,
        QueueStrategy::DropOldest
    );
    assert_eq!(config.broker.subscriber_queue_limit.max_bytes, 16 << 20);
    assert_eq!(config.broker.max_sessions, 20_000);
    assert_eq!(config.broker.state_store_max_key_notify_per_client, 1000);
    assert_eq!(config.diagnostics.logs.format, LogFormat::Json);
    let persistence = config.persistence.as_ref().expect("persistence");
    assert_eq!(persistence.max_size, 1 << 30);
    let state_store = persistence
        .state_store
        .custom()
        .expect("Custom state store");
    assert_eq!(state_store.state_store_resources.len(), 3);
}

#[test]
fn aio_manifests_yaml_loads_as_resources() {
    let config = load_example("aio-manifests.yaml").config;
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["default", "loadbalancer-listener"]);
    assert_eq!(config.listeners[0].service_name, "aio-broker");
    assert_eq!(
        config.listeners[0].bind_address,
        "0.0.0.0".parse::<IpAddr>().unwrap()
    );
    assert_eq!(config.authentications.len(), 2);
    assert_eq!(config.authorizations[0].name, "my-authz-policies");
    assert_eq!(config.issuers[0].spec, IssuerSpec::SelfSigned);
    assert_eq!(
        config.certificates[0].private_key.algorithm,
        PrivateKeyAlgorithm::Ec256
    );
    assert_eq!(config.broker, BrokerLimits::default());
}
