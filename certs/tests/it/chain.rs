//! Issuing chains and serving them: root → intermediate → server, loaded back through the
//! loader and checked by a real rustls client.

use std::time::SystemTime;

use gatehouse_certs::{load_chain_and_key, Authority, IssueError, KeyFamily, Usage};
use gatehouse_config::{PrivateKeyAlgorithm::*, SecretFiles};

use crate::common::*;

#[test]
fn root_intermediate_server_chain_serves_localhost_and_nothing_else() {
    let now = SystemTime::now();
    let root = root(Ec256, now);
    let intermediate = intermediate(&root, Ec256, now);
    let issued = intermediate
        .issue(&server(&["localhost", "mqtt.example.com"]), key(Ec256), now)
        .unwrap();

    // cert-manager's shape: tls.crt = leaf + intermediate, ca.crt = root.
    assert_eq!(issued.chain().len(), 2);
    assert_eq!(issued.chain()[1], *intermediate.certificate());
    assert_eq!(issued.ca(), root.certificate());

    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = write_issued(dir.path(), &issued);
    let loaded = load_chain_and_key(&cert_file, &key_file).unwrap();
    assert_eq!(loaded.info.serial, issued.serial());
    assert_eq!(loaded.info.common_name.as_deref(), Some("localhost"));
    assert_eq!(loaded.info.dns_names, ["localhost", "mqtt.example.com"]);
    assert!(!loaded.info.is_ca);
    assert_eq!(loaded.chain().len(), 2);

    let roots = [root.certificate().clone()];
    handshake(loaded.certified_key.clone(), &roots, "localhost").unwrap();
    handshake(loaded.certified_key.clone(), &roots, "mqtt.example.com").unwrap();
    let err = handshake(loaded.certified_key, &roots, "not-in-san.example").unwrap_err();
    assert!(is_name_error(&err), "{err:?}");
}

#[test]
fn validity_is_backdated_and_bounded_by_the_issuer() {
    let now = SystemTime::now();
    let root = root(Ec256, now);
    let mut request = server(&["localhost"]);
    request.duration = std::time::Duration::from_secs(5);
    let issued = root.issue(&request, key(Ec256), now).unwrap();
    let info = issued.info();
    let lifetime = info.not_after.duration_since(now).unwrap().as_secs_f64();
    assert!((4.0..=5.0).contains(&lifetime), "{lifetime}");
    let skew = now.duration_since(info.not_before).unwrap().as_secs_f64();
    assert!((59.0..=61.0).contains(&skew), "{skew}");

    // A leaf asked for longer than its CA lives ends with the CA.
    request.duration = DAY * 365 * 20;
    let issued = root.issue(&request, key(Ec256), now).unwrap();
    assert_eq!(issued.not_after(), root.info().not_after);
}

#[test]
fn client_certificates_are_for_client_auth() {
    let now = SystemTime::now();
    let root = root(Ec256, now);
    let issued = root
        .issue(&request(Usage::Client, "smart-fan", &[]), key(Ec256), now)
        .unwrap();
    let text = format!(
        "{:?}",
        x509_parser::parse_x509_certificate(issued.leaf())
            .unwrap()
            .1
            .extended_key_usage()
    );
    assert!(text.contains("client_auth: true"), "{text}");
    assert!(text.contains("server_auth: false"), "{text}");
    assert_eq!(issued.info().common_name.as_deref(), Some("smart-fan"));
}

#[test]
fn an_issuer_refuses_a_key_family_its_chain_does_not_use() {
    let now = SystemTime::now();
    let root = root(Ec256, now);
    let intermediate = intermediate(&root, Ec256, now);
    let err = intermediate
        .issue(&server(&["localhost"]), key(Rsa2048), now)
        .unwrap_err();
    assert!(
        matches!(
            err,
            IssueError::MixedKeyFamilies {
                requested: KeyFamily::Rsa,
                chain: KeyFamily::Ec
            }
        ),
        "{err:?}"
    );
    // Directly under a root, the chain is the leaf alone: any family works (AIO itself
    // pairs an RSA quickstart root with EC server certificates).
    root.issue(&server(&["localhost"]), key(Rsa2048), now)
        .unwrap();
}

#[test]
fn an_intermediate_ca_loaded_from_a_secret_issues_full_chains() {
    let now = SystemTime::now();
    let root = root(Ec384, now);
    let middle = intermediate(&root, Ec384, now);
    let lower = intermediate(&middle, Ec384, now);
    let dir = tempfile::tempdir().unwrap();
    // tls.crt: the CA and the next certificate up; ca.crt: the root.
    let files = SecretFiles {
        cert_file: write(
            dir.path(),
            "tls.crt",
            gatehouse_certs::encode_certs([lower.certificate(), middle.certificate()]),
        ),
        key_file: write(dir.path(), "tls.key", lower.key().to_pem()),
        ca_file: Some(write(
            dir.path(),
            "ca.crt",
            gatehouse_certs::encode_cert(root.certificate()),
        )),
    };
    let authority = Authority::from_files(&files).unwrap();
    assert_eq!(authority.root(), root.certificate());
    assert_eq!(
        authority.intermediates(),
        [lower.certificate().clone(), middle.certificate().clone()]
    );

    let issued = authority
        .issue(&server(&["localhost"]), key(Ec384), now)
        .unwrap();
    assert_eq!(issued.chain().len(), 3);
    assert_eq!(issued.ca(), root.certificate());
    let out = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = write_issued(out.path(), &issued);
    let loaded = load_chain_and_key(&cert_file, &key_file).unwrap();
    handshake(
        loaded.certified_key,
        &[root.certificate().clone()],
        "localhost",
    )
    .unwrap();
}

#[test]
fn a_leaf_is_not_a_ca() {
    let now = SystemTime::now();
    let root = root(Ec256, now);
    let issued = root
        .issue(&server(&["localhost"]), key(Ec256), now)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = write_issued(dir.path(), &issued);
    let err = Authority::from_files(&SecretFiles {
        cert_file,
        key_file,
        ca_file: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");
}

#[test]
fn self_signed_leaves_are_their_own_ca() {
    let now = SystemTime::now();
    let issued =
        gatehouse_certs::issue_self_signed(&server(&["localhost"]), key(Ed25519), now).unwrap();
    assert_eq!(issued.chain(), [issued.ca().clone()]);
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = write_issued(dir.path(), &issued);
    let loaded = load_chain_and_key(&cert_file, &key_file).unwrap();
    assert!(loaded.info.self_issued);
    assert_eq!(issued.info().key_family, KeyFamily::Ed25519);
}
