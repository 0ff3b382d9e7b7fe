//! Loading chains and keys from PEM files: every key algorithm and encoding, and every way
//! the files can be wrong.

use std::path::Path;
use std::time::SystemTime;

use aws_lc_rs::encoding::AsDer;
use gatehouse_certs::{
    issue_self_signed, load_chain_and_key, InvalidFiles, Issued, KeyFamily, LoadError,
};
use gatehouse_config::PrivateKeyAlgorithm::{self, *};
use rustls::pki_types::PrivateKeyDer;

use crate::common::*;

fn self_signed(algorithm: PrivateKeyAlgorithm) -> Issued {
    issue_self_signed(&server(&["localhost"]), key(algorithm), SystemTime::now()).unwrap()
}

/// Issues a certificate with `algorithm`, loads it and serves a handshake with it.
fn loads_and_serves(algorithm: PrivateKeyAlgorithm) {
    let issued = self_signed(algorithm);
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = write_issued(dir.path(), &issued);
    let loaded =
        load_chain_and_key(&cert_file, &key_file).unwrap_or_else(|e| panic!("{algorithm}: {e}"));
    assert_eq!(loaded.info.key_algorithm, Some(algorithm));
    assert_eq!(loaded.info.serial, issued.serial());
    handshake(loaded.certified_key, &[issued.ca().clone()], "localhost")
        .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
}

#[test]
fn every_key_algorithm_loads_and_serves() {
    // RSA 4096 once here; 8192 in the ignored test below.
    for algorithm in [Ec256, Ec384, Ec521, Ed25519, Rsa2048, Rsa4096] {
        loads_and_serves(algorithm);
    }
}

#[test]
#[ignore = "RSA 8192 key generation takes many seconds; run with --ignored"]
fn rsa_8192_loads_and_serves() {
    loads_and_serves(Rsa8192);
}

/// The inner key of a PKCS#8 `PrivateKeyInfo` (for RSA: the PKCS#1 `RSAPrivateKey`).
fn pkcs8_inner(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info) = x509_parser::der_parser::parse_der(pkcs8).unwrap();
    info.as_sequence().unwrap()[2].as_slice().unwrap().to_vec()
}

fn pem(label: &str, der: &[u8]) -> String {
    gatehouse_certs::encode_key(&match label {
        "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(der.to_vec().into()),
        _ => PrivateKeyDer::Sec1(der.to_vec().into()),
    })
}

#[test]
fn pkcs1_rsa_keys_load() {
    let issued = self_signed(Rsa2048);
    let pkcs1 = pkcs8_inner(issued.key().der().secret_der());
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, _) = write_issued(dir.path(), &issued);
    let key_file = write(dir.path(), "pkcs1.key", pem("RSA PRIVATE KEY", &pkcs1));
    assert!(std::fs::read_to_string(&key_file)
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let loaded = load_chain_and_key(&cert_file, &key_file).unwrap();
    handshake(
        loaded.certified_key.clone(),
        &[issued.ca().clone()],
        "localhost",
    )
    .unwrap();
    // And as an issuing key, written back in its own form.
    let key = loaded.key().unwrap();
    assert!(key.to_pem().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_eq!(key.algorithm(), Some(Rsa2048));
}

#[test]
fn sec1_ec_keys_load() {
    for (algorithm, signing) in [
        (Ec256, &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        (Ec384, &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        (Ec521, &aws_lc_rs::signature::ECDSA_P521_SHA512_ASN1_SIGNING),
    ] {
        let issued = self_signed(algorithm);
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            signing,
            issued.key().der().secret_der(),
        )
        .unwrap();
        let sec1 = pair.private_key().as_der().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, _) = write_issued(dir.path(), &issued);
        let key_file = write(dir.path(), "sec1.key", pem("EC PRIVATE KEY", sec1.as_ref()));
        let loaded = load_chain_and_key(&cert_file, &key_file)
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        handshake(
            loaded.certified_key.clone(),
            &[issued.ca().clone()],
            "localhost",
        )
        .unwrap();
        assert_eq!(loaded.key().unwrap().algorithm(), Some(algorithm));
    }
}

fn invalid(err: LoadError) -> InvalidFiles {
    match err {
        LoadError::Invalid(invalid) => invalid,
        other => panic!("expected invalid files, got {other:?}"),
    }
}

fn names(err: &impl std::fmt::Display, path: &Path) {
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn a_chain_mixing_rsa_and_ec_is_refused_naming_file_and_certificate() {
    let now = SystemTime::now();
    let ec_root = root(Ec256, now);
    let rsa_leaf = self_signed(Rsa2048);
    let dir = tempfile::tempdir().unwrap();
    let chain = format!(
        "{}{}",
        rsa_leaf.cert_pem(),
        gatehouse_certs::encode_cert(ec_root.certificate())
    );
    let cert_file = write(dir.path(), "server_chain.crt", chain);
    let key_file = write(dir.path(), "server.key", rsa_leaf.key_pem());
    let err = invalid(load_chain_and_key(&cert_file, &key_file).unwrap_err());
    match &err {
        InvalidFiles::MixedKeyFamilies {
            path,
            index,
            leaf,
            found,
        } => {
            assert_eq!(path, &cert_file);
            assert_eq!(*index, 1);
            assert_eq!((*leaf, *found), (KeyFamily::Rsa, KeyFamily::Ec));
        }
        other => panic!("{other:?}"),
    }
    names(&err, &cert_file);
    assert!(err.to_string().contains("certificate #1"), "{err}");
}

#[test]
fn a_key_that_is_not_the_leafs_is_refused() {
    let one = self_signed(Ec256);
    let other = self_signed(Ec256);
    let dir = tempfile::tempdir().unwrap();
    let cert_file = write(dir.path(), "tls.crt", one.chain_pem());
    let key_file = write(dir.path(), "tls.key", other.key_pem());
    let err = invalid(load_chain_and_key(&cert_file, &key_file).unwrap_err());
    assert!(matches!(err, InvalidFiles::KeyMismatch { .. }), "{err:?}");
    names(&err, &cert_file);
    names(&err, &key_file);
}

#[test]
fn missing_files_are_not_found_not_invalid() {
    let issued = self_signed(Ec256);
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    let err = load_chain_and_key(&cert_file, &key_file).unwrap_err();
    assert!(
        matches!(&err, LoadError::NotFound { path } if *path == cert_file),
        "{err:?}"
    );
    assert!(err.is_not_found());

    write(dir.path(), "tls.crt", issued.chain_pem());
    let err = load_chain_and_key(&cert_file, &key_file).unwrap_err();
    assert!(
        matches!(&err, LoadError::NotFound { path } if *path == key_file),
        "{err:?}"
    );
}

#[test]
fn empty_and_wrong_files_name_the_file() {
    let issued = self_signed(Ec256);
    let dir = tempfile::tempdir().unwrap();
    let good_cert = write(dir.path(), "tls.crt", issued.chain_pem());
    let good_key = write(dir.path(), "tls.key", issued.key_pem());
    let empty = write(dir.path(), "empty.pem", "\n");
    let key_only = write(dir.path(), "key-only.pem", issued.key_pem());
    let cert_only = write(dir.path(), "cert-only.pem", issued.cert_pem());
    let two_keys = write(
        dir.path(),
        "two.key",
        format!("{}{}", issued.key_pem(), issued.key_pem()),
    );
    let garbage = write(
        dir.path(),
        "garbage.crt",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );

    let err = invalid(load_chain_and_key(&empty, &good_key).unwrap_err());
    assert!(matches!(err, InvalidFiles::Empty { .. }), "{err:?}");
    names(&err, &empty);

    let err = invalid(load_chain_and_key(&good_cert, &empty).unwrap_err());
    assert!(matches!(err, InvalidFiles::Empty { .. }), "{err:?}");

    let err = invalid(load_chain_and_key(&key_only, &good_key).unwrap_err());
    assert!(matches!(err, InvalidFiles::NoCertificate { .. }), "{err:?}");
    names(&err, &key_only);

    let err = invalid(load_chain_and_key(&good_cert, &cert_only).unwrap_err());
    assert!(matches!(err, InvalidFiles::NoKey { .. }), "{err:?}");
    names(&err, &cert_only);

    let err = invalid(load_chain_and_key(&good_cert, &two_keys).unwrap_err());
    assert!(matches!(err, InvalidFiles::SeveralKeys { .. }), "{err:?}");

    let err = invalid(load_chain_and_key(&garbage, &good_key).unwrap_err());
    assert!(
        matches!(err, InvalidFiles::Certificate { index: 0, .. }),
        "{err:?}"
    );
    names(&err, &garbage);

    // One PEM file may hold both the chain and the key.
    let both = write(
        dir.path(),
        "both.pem",
        format!("{}{}", issued.chain_pem(), issued.key_pem()),
    );
    load_chain_and_key(&both, &both).unwrap();
}
