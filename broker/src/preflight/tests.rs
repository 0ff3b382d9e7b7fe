//! The preflight on small configurations with files in a temporary folder.

use std::path::Path;

use super::*;

/// A CA certificate (PEM) and a leaf certificate with its key, signed by nothing in
/// particular (self-signed): enough for "parses" and "key matches".
fn self_signed(cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![cn.to_owned()]).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn load(dir: &Path, yaml: &str) -> Config {
    let path = dir.join("gatehouse.yaml");
    std::fs::write(&path, yaml).expect("write config");
    gatehouse_config::load_file(&path)
        .expect("valid configuration")
        .config
}

fn lines(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(ToString::to_string).collect()
}

#[test]
fn every_missing_file_is_named_at_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = load(
        dir.path(),
        "
listeners:
  - name: main
    ports:
      - port: 8883
        authenticationRef: certs
        tls: { mode: Manual, manual: { secretRef: server } }
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings: { trustedClientCaCert: client-ca }
      - method: Custom
        customSettings:
          endpoint: https://auth.example.com
          caCertConfigMap: auth-ca
          auth: { x509: { secretRef: auth-client } }
",
    );
    let report = run(&config, Mode::Start);
    let errors = lines(&report.errors);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with(
        "authentications[0].authenticationMethods[0].x509Settings.trustedClientCaCert: \
         trusted client CA config map `client-ca`: the folder"
    ));
    assert!(
        errors[1].contains("customSettings.caCertConfigMap: custom server CA config map `auth-ca`")
    );
    assert!(errors[2].contains("customSettings.auth.x509.secretRef: secret `auth-client`"));
    let warnings = lines(&report.warnings);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].starts_with("listeners[0].ports[0].tls.manual.secretRef: secret `server`"));
    assert!(warnings[0].contains("the port waits for it"));
}

#[test]
fn a_mistyped_secret_ref_suggests_the_close_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("data/secrets/server-cert");
    std::fs::create_dir_all(&secret).expect("mkdir");
    let (cert, key) = self_signed("localhost");
    std::fs::write(secret.join("tls.crt"), cert).expect("write");
    std::fs::write(secret.join("tls.key"), key).expect("write");
    let yaml = |name: &str| {
        format!(
            "
listeners:
  - name: main
    ports: [ {{ port: 8883, tls: {{ mode: Manual, manual: {{ secretRef: {name} }} }} }} ]
"
        )
    };
    let good = run(&load(dir.path(), &yaml("server-cert")), Mode::Check);
    assert!(
        good.errors.is_empty() && good.warnings.is_empty(),
        "{good:?}"
    );
    let typo = run(&load(dir.path(), &yaml("server-cret")), Mode::Check);
    assert!(typo.errors.is_empty(), "{typo:?}");
    assert!(
        typo.warnings[0]
            .message
            .ends_with("did you mean `server-cert`?"),
        "{:?}",
        typo.warnings
    );
}

#[test]
fn a_key_of_another_certificate_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("data/secrets/server");
    std::fs::create_dir_all(&secret).expect("mkdir");
    let (cert, _) = self_signed("localhost");
    let (_, other_key) = self_signed("localhost");
    std::fs::write(secret.join("tls.crt"), cert).expect("write");
    std::fs::write(secret.join("tls.key"), other_key).expect("write");
    let config = load(
        dir.path(),
        "
listeners:
  - name: main
    ports: [ { port: 8883, tls: { mode: Manual, manual: { secretRef: server } } } ]
",
    );
    let report = run(&config, Mode::Start);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0]
        .message
        .contains("does not match the certificate"));
}

#[test]
fn unused_policies_are_warnings_and_so_are_their_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = load(
        dir.path(),
        "
listeners:
  - name: main
    ports: [ { port: 1883 } ]
authentications:
  - name: spare
    authenticationMethods:
      - method: X509
        x509Settings: { trustedClientCaCert: nowhere }
authorizations:
  - name: policy
    authorizationPolicies:
      rules:
        - principals: { usernames: [a] }
          brokerResources: [ { method: Connect } ]
",
    );
    let report = run(&config, Mode::Check);
    assert!(report.errors.is_empty(), "{report:?}");
    let warnings = lines(&report.warnings);
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(warnings[0].starts_with("authentications[0].name: authentication `spare` is not used"));
    assert!(warnings[1].contains("does not stop start-up"));
    assert!(warnings[2].starts_with("authorizations[0].name: authorization `policy` is not used"));
}

#[test]
fn an_issuer_without_its_ca_secret_is_an_error_when_anything_is_issued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = |tls: &str| {
        format!(
            "
listeners:
  - name: main
    ports: [ {{ port: 8883{tls} }} ]
issuers:
  - name: company-ca
    kind: Issuer
    ca: {{ secretName: company-ca }}
"
        )
    };
    let idle = run(&load(dir.path(), &yaml("")), Mode::Check);
    assert!(idle.errors.is_empty(), "{idle:?}");
    let issuing = run(
        &load(
            dir.path(),
            &yaml(", tls: { mode: Automatic, certManagerCertificateSpec: { issuerRef: { name: company-ca, kind: Issuer } } }"),
        ),
        Mode::Check,
    );
    let errors = lines(&issuing.errors);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("issuers[0].ca.secretName: secret `company-ca`"));
}
