//! Keeping a secret's certificate current: keep while good, reissue when due, when the
//! spec changes or when the issuer changes; honour the key rotation policy.

use std::time::SystemTime;

use gatehouse_certs::{ensure, read_secret, CertSpec, Outcome, Reason, Signer};
use gatehouse_config::{PrivateKeyAlgorithm, RotationPolicy, SecretFiles};

use crate::common::*;

fn spec(rotation: RotationPolicy) -> CertSpec {
    let mut request = server(&["localhost"]);
    request.common_name = None;
    request.duration = HOUR;
    CertSpec {
        request,
        algorithm: PrivateKeyAlgorithm::Ec256,
        rotation,
        renew_before: HOUR / 3,
    }
}

fn secret(dir: &std::path::Path) -> SecretFiles {
    let dir = dir.join("secrets").join("default-8883");
    SecretFiles {
        cert_file: dir.join("tls.crt"),
        key_file: dir.join("tls.key"),
        ca_file: Some(dir.join("ca.crt")),
    }
}

fn public_key(files: &SecretFiles) -> Vec<u8> {
    read_secret(files).unwrap().key().unwrap().public_key_der()
}

#[test]
fn keeps_a_good_certificate_and_reissues_one_due_for_renewal() {
    let data = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let signer = Signer::Ca(root(PrivateKeyAlgorithm::Ec256, now));
    let files = secret(data.path());
    let spec = spec(RotationPolicy::Always);

    let first = ensure(&signer, &spec, &files, now).unwrap();
    assert_eq!(first.outcome, Outcome::Issued(Reason::Missing));
    assert_eq!(first.renewal_time, first.info.not_after - HOUR / 3);
    let stored = read_secret(&files).unwrap();
    assert_eq!(stored.info.serial, first.info.serial);
    // ca.crt is the root; the root is not in tls.crt.
    let Signer::Ca(authority) = &signer else {
        unreachable!()
    };
    assert_eq!(
        gatehouse_certs::read_certificates(files.ca_file.as_ref().unwrap()).unwrap(),
        [authority.root().clone()]
    );
    assert_eq!(stored.chain().len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.key_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    let kept = ensure(&signer, &spec, &files, now + HOUR / 2).unwrap();
    assert_eq!(kept.outcome, Outcome::Kept);
    assert_eq!(kept.info.serial, first.info.serial);
    assert!(kept.renew_in(now + HOUR / 2) > std::time::Duration::ZERO);

    // 45 minutes into a 1-hour certificate with renewBefore 20 minutes.
    let due = now + HOUR * 3 / 4;
    let renewed = ensure(&signer, &spec, &files, due).unwrap();
    assert_eq!(renewed.outcome, Outcome::Issued(Reason::Due));
    assert_ne!(renewed.info.serial, first.info.serial);
    assert_eq!(
        read_secret(&files).unwrap().info.serial,
        renewed.info.serial
    );
    assert!(renewed.renewal_time > due);
}

#[test]
fn rotation_policy_never_reuses_the_key_and_always_does_not() {
    let data = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let signer = Signer::Ca(root(PrivateKeyAlgorithm::Ec256, now));
    let due = now + HOUR;

    let never = secret(&data.path().join("never"));
    ensure(&signer, &spec(RotationPolicy::Never), &never, now).unwrap();
    let before = public_key(&never);
    let renewed = ensure(&signer, &spec(RotationPolicy::Never), &never, due).unwrap();
    assert_eq!(renewed.outcome, Outcome::Issued(Reason::Due));
    assert_eq!(public_key(&never), before);

    let always = secret(&data.path().join("always"));
    ensure(&signer, &spec(RotationPolicy::Always), &always, now).unwrap();
    let before = public_key(&always);
    ensure(&signer, &spec(RotationPolicy::Always), &always, due).unwrap();
    assert_ne!(public_key(&always), before);
}

#[test]
fn a_changed_spec_or_issuer_reissues() {
    let data = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let signer = Signer::Ca(root(PrivateKeyAlgorithm::Ec256, now));
    let files = secret(data.path());
    ensure(&signer, &spec(RotationPolicy::Always), &files, now).unwrap();

    let mut more_names = spec(RotationPolicy::Always);
    more_names.request.dns_names.push("mqtt.example.com".into());
    let out = ensure(&signer, &more_names, &files, now).unwrap();
    assert!(
        matches!(&out.outcome, Outcome::Issued(Reason::SpecChanged(why)) if why.contains("DNS")),
        "{:?}",
        out.outcome
    );

    let mut other_key = more_names.clone();
    other_key.algorithm = PrivateKeyAlgorithm::Ec384;
    let out = ensure(&signer, &other_key, &files, now).unwrap();
    assert!(
        matches!(&out.outcome, Outcome::Issued(Reason::SpecChanged(why)) if why.contains("Ec384")),
        "{:?}",
        out.outcome
    );
    assert_eq!(out.info.key_algorithm, Some(PrivateKeyAlgorithm::Ec384));

    let other = Signer::Ca(root(PrivateKeyAlgorithm::Ec384, now));
    let out = ensure(&other, &other_key, &files, now).unwrap();
    assert_eq!(out.outcome, Outcome::Issued(Reason::OtherIssuer));
    assert_eq!(
        ensure(&other, &other_key, &files, now).unwrap().outcome,
        Outcome::Kept
    );
}

#[test]
fn unusable_files_are_replaced() {
    let data = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let files = secret(data.path());
    std::fs::create_dir_all(files.cert_file.parent().unwrap()).unwrap();
    std::fs::write(&files.cert_file, "garbage").unwrap();
    std::fs::write(&files.key_file, "garbage").unwrap();
    let out = ensure(
        &Signer::SelfSigned,
        &spec(RotationPolicy::Always),
        &files,
        now,
    )
    .unwrap();
    assert!(
        matches!(out.outcome, Outcome::Issued(Reason::Unusable(_))),
        "{:?}",
        out.outcome
    );
    assert_eq!(
        ensure(
            &Signer::SelfSigned,
            &spec(RotationPolicy::Always),
            &files,
            now
        )
        .unwrap()
        .outcome,
        Outcome::Kept
    );
}

#[test]
fn certificates_of_a_few_seconds_work() {
    let data = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let signer = Signer::SelfSigned;
    let files = secret(data.path());
    let mut short = spec(RotationPolicy::Always);
    short.request.duration = std::time::Duration::from_secs(3);
    short.renew_before = std::time::Duration::from_secs(1);
    let first = ensure(&signer, &short, &files, now).unwrap();
    // Lifetime is 3 s plus the 60 s backdating; renewal 1 s before the end.
    assert_eq!(
        first.renewal_time,
        first.info.not_after - std::time::Duration::from_secs(1)
    );
    let later = now + std::time::Duration::from_secs(3);
    let renewed = ensure(&signer, &short, &files, later).unwrap();
    assert_eq!(renewed.outcome, Outcome::Issued(Reason::Due));
}
