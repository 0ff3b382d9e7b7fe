//! Issuers from a configuration: the cert-manager bootstrap pattern from the AIO docs
//! (a selfSigned issuer signs a CA into a secret a `ca` issuer reads), ports issued by it,
//! and the trust bundle clients use.

use std::path::Path;
use std::time::SystemTime;

use gatehouse_certs::{
    bootstrap, load_chain_and_key, read_certificates, CertSpec, IssuersError, Outcome,
    QuickstartOptions, Reason, Signer,
};
use gatehouse_config::{Config, Tls, DEFAULT_ISSUER};

use crate::common::*;

fn config(dir: &Path, body: &str) -> Config {
    let text = format!(
        "dataDir: {}\nlisteners:\n  - name: default\n    ports:\n      - port: 8883\n        tls:\n          mode: Automatic\n          certManagerCertificateSpec:\n            issuerRef: {{ name: port-issuer, kind: Issuer }}\n{body}",
        dir.display()
    );
    let path = write(dir, "gatehouse.yaml", text);
    gatehouse_config::load_file(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

/// The seed's example, plus an intermediate listed before the CA it depends on.
const CHAIN: &str = "\
issuers:
  - name: selfsigned-ca-issuer
    selfSigned: {}
  - name: my-issuer
    ca: { secretName: test-ca }
  - name: port-issuer
    ca: { secretName: intermediate-ca }
certificates:
  - name: intermediate
    isCA: true
    commonName: Test Intermediate CA
    secretName: intermediate-ca
    issuerRef: { name: my-issuer, kind: Issuer }
  - name: selfsigned-ca-cert
    isCA: true
    commonName: test-ca
    secretName: test-ca
    issuerRef: { name: selfsigned-ca-issuer, kind: Issuer }
    privateKey: { algorithm: Ec256, rotationPolicy: Always }
";

#[test]
fn bootstraps_a_ca_chain_and_serves_a_port_from_it() {
    let data = tempfile::tempdir().unwrap();
    let config = config(data.path(), CHAIN);
    let now = SystemTime::now();
    let boot = bootstrap(&config, &QuickstartOptions::default(), now).unwrap();

    let order: Vec<_> = boot.certificates.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["selfsigned-ca-cert", "intermediate"]);
    assert!(boot
        .certificates
        .iter()
        .all(|(_, e)| e.outcome == Outcome::Issued(Reason::Missing)));
    assert!(matches!(
        boot.issuers.get(DEFAULT_ISSUER),
        Some(Signer::Quickstart(_))
    ));
    assert!(matches!(boot.issuers.get("my-issuer"), Some(Signer::Ca(_))));
    assert!(boot.next_renewal().is_some_and(|t| t > now));

    // The port's certificate, issued by the intermediate.
    let port = &config.listeners[0].ports[0];
    let Some(Tls::Automatic(spec)) = &port.tls else {
        panic!("{port:?}")
    };
    let files = config.secret(&spec.secret_name);
    let ensured = boot
        .issuers
        .ensure(
            &spec.issuer_ref.name,
            &CertSpec::for_port(spec, "default"),
            &files,
            now,
        )
        .unwrap();
    assert_eq!(ensured.outcome, Outcome::Issued(Reason::Missing));
    assert!(files
        .cert_file
        .starts_with(data.path().join("secrets").join("default-8883")));
    let loaded = load_chain_and_key(&files.cert_file, &files.key_file).unwrap();
    assert_eq!(loaded.chain().len(), 2, "leaf + intermediate");
    assert!(loaded.info.dns_names.contains(&"localhost".to_string()));
    assert!(loaded.info.dns_names.contains(&"default".to_string()));

    // The trust bundle: quickstart root first, then the bootstrapped root.
    let bundle = read_certificates(&boot.trust_bundle).unwrap();
    assert_eq!(boot.trust_bundle, data.path().join("trust").join("ca.crt"));
    let quickstart = boot
        .issuers
        .quickstart()
        .unwrap()
        .authority()
        .root()
        .clone();
    let test_ca = read_certificates(&config.secret("test-ca").cert_file).unwrap();
    assert_eq!(bundle, [quickstart, test_ca[0].clone()]);
    // mosquitto_pub --cafile <dataDir>/trust/ca.crt, in rustls.
    handshake(loaded.certified_key, &bundle, "localhost").unwrap();

    // A restart keeps everything.
    let again = bootstrap(&config, &QuickstartOptions::default(), now).unwrap();
    for ((_, first), (_, second)) in boot.certificates.iter().zip(&again.certificates) {
        assert_eq!(second.outcome, Outcome::Kept);
        assert_eq!(second.info.serial, first.info.serial);
    }
    let kept = again
        .issuers
        .ensure(
            &spec.issuer_ref.name,
            &CertSpec::for_port(spec, "default"),
            &files,
            now,
        )
        .unwrap();
    assert_eq!(kept.outcome, Outcome::Kept);
    assert_eq!(kept.info.serial, ensured.info.serial);
}

#[test]
fn a_ca_issuer_without_its_secret_names_both() {
    let data = tempfile::tempdir().unwrap();
    let config = config(
        data.path(),
        "issuers:\n  - name: port-issuer\n    ca: { secretName: nowhere }\n",
    );
    let err = bootstrap(&config, &QuickstartOptions::default(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(&err, IssuersError::MissingSecret { issuer, secret, .. }
            if issuer == "port-issuer" && secret == "nowhere"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("port-issuer") && text.contains("nowhere"),
        "{text}"
    );
}

#[test]
fn a_certificate_signed_by_the_ca_it_creates_is_a_cycle() {
    let data = tempfile::tempdir().unwrap();
    let config = config(
        data.path(),
        "\
issuers:
  - name: port-issuer
    ca: { secretName: loop }
certificates:
  - name: loop-ca
    isCA: true
    secretName: loop
    issuerRef: { name: port-issuer, kind: Issuer }
",
    );
    let err = bootstrap(&config, &QuickstartOptions::default(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(&err, IssuersError::Cycle { certificate, issuer, secret, .. }
            if certificate == "loop-ca" && issuer == "port-issuer" && secret == "loop"),
        "{err:?}"
    );
}

#[test]
fn the_default_issuer_serves_ports_trusted_by_the_bundle() {
    let data = tempfile::tempdir().unwrap();
    let config = config(
        data.path(),
        "issuers:\n  - name: port-issuer\n    selfSigned: {}\n",
    );
    let now = SystemTime::now();
    let boot = bootstrap(&config, &QuickstartOptions::default(), now).unwrap();
    let mut spec = CertSpec::for_port(&Default::default(), "gatehouse");
    spec.request.dns_names.push("broker.local".into());
    let files = config.secret("default-issued");
    boot.issuers
        .ensure(DEFAULT_ISSUER, &spec, &files, now)
        .unwrap();
    let loaded = load_chain_and_key(&files.cert_file, &files.key_file).unwrap();
    let bundle = read_certificates(&boot.trust_bundle).unwrap();
    assert_eq!(bundle.len(), 1, "selfSigned issuers add no root");
    handshake(loaded.certified_key.clone(), &bundle, "broker.local").unwrap();
    handshake(loaded.certified_key, &bundle, "gatehouse").unwrap();
}
