//! The quickstart root CA: created once, kept across restarts, rotated before expiry with
//! the old root trusted until it expires.

use std::path::Path;
use std::time::SystemTime;

use gatehouse_certs::quickstart::{QUICKSTART_COMMON_NAME, QUICKSTART_ORGANIZATION};
use gatehouse_certs::{CertInfo, QuickstartCa, QuickstartOptions};
use gatehouse_config::PrivateKeyAlgorithm;

use crate::common::*;

fn options() -> QuickstartOptions {
    QuickstartOptions {
        validity: DAY * 10,
        renew_before: DAY * 2,
        algorithm: PrivateKeyAlgorithm::Ec256,
    }
}

fn files(dir: &Path, extension: &str) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(QuickstartCa::dir(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(extension))
        .collect();
    names.sort();
    names
}

#[test]
fn is_created_once_and_kept_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let first = QuickstartCa::ensure(data.path(), &options(), now).unwrap();
    let info = first.authority().info();
    assert_eq!(
        info.subject,
        format!("O={QUICKSTART_ORGANIZATION}, CN={QUICKSTART_COMMON_NAME}")
    );
    assert!(info.is_ca && info.self_issued);
    assert_eq!(info.key_algorithm, Some(PrivateKeyAlgorithm::Ec256));
    assert!(first.retired().is_empty());

    let second = QuickstartCa::ensure(data.path(), &options(), now + HOUR).unwrap();
    assert_eq!(second.authority().info().serial, info.serial);
    assert_eq!(files(data.path(), ".crt"), [format!("{}.crt", info.serial)]);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = QuickstartCa::dir(data.path()).join(format!("{}.key", info.serial));
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(QuickstartCa::dir(data.path()))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
    }
}

#[test]
fn rotates_before_expiry_and_trusts_the_old_root_until_it_expires() {
    let data = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let old = QuickstartCa::ensure(data.path(), &options(), t0).unwrap();
    let old_serial = old.authority().info().serial.clone();
    let old_root = old.authority().root().clone();
    // A server certificate from the old root, issued before rotation.
    let leaf = old
        .authority()
        .issue(&server(&["localhost"]), key(PrivateKeyAlgorithm::Ec256), t0)
        .unwrap();

    // Day 9 of 10, inside the 2-day renew window: a new root.
    let t9 = t0 + DAY * 9;
    let rotated = QuickstartCa::ensure(data.path(), &options(), t9).unwrap();
    let new_serial = rotated.authority().info().serial.clone();
    assert_ne!(new_serial, old_serial);
    assert_eq!(rotated.retired(), std::slice::from_ref(&old_root));
    let roots: Vec<_> = rotated.roots().cloned().collect();
    assert_eq!(
        roots,
        [rotated.authority().root().clone(), old_root.clone()]
    );
    // Certificates of the old root stay acceptable until their own renewal.
    assert!(gatehouse_certs::Signer::Quickstart(rotated).has_signed(leaf.leaf()));
    // Only the current root keeps its key.
    assert_eq!(files(data.path(), ".key"), [format!("{new_serial}.key")]);
    assert_eq!(files(data.path(), ".crt").len(), 2);

    // A restart keeps both.
    let again = QuickstartCa::ensure(data.path(), &options(), t9 + HOUR).unwrap();
    assert_eq!(again.authority().info().serial, new_serial);
    assert_eq!(again.retired(), [old_root]);

    // Once the old root has expired, it is gone.
    let t11 = t0 + DAY * 11;
    let later = QuickstartCa::ensure(data.path(), &options(), t11).unwrap();
    assert_eq!(later.authority().info().serial, new_serial);
    assert!(later.retired().is_empty());
    assert_eq!(files(data.path(), ".crt"), [format!("{new_serial}.crt")]);
}

#[test]
fn renewal_time_is_renew_before_ahead_of_expiry() {
    let data = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let ca = QuickstartCa::ensure(data.path(), &options(), now).unwrap();
    let info: &CertInfo = ca.authority().info();
    assert_eq!(ca.renewal_time(), info.not_after - DAY * 2);
}

#[test]
fn a_stray_key_from_an_interrupted_rotation_is_cleaned_up() {
    let data = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let ca = QuickstartCa::ensure(data.path(), &options(), now).unwrap();
    let serial = ca.authority().info().serial.clone();
    write(&QuickstartCa::dir(data.path()), "deadbeef.key", "not a key");
    let again = QuickstartCa::ensure(data.path(), &options(), now).unwrap();
    assert_eq!(again.authority().info().serial, serial);
    assert_eq!(files(data.path(), ".key"), [format!("{serial}.key")]);
}

#[test]
fn a_corrupt_root_is_an_error_not_a_silent_replacement() {
    let data = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    QuickstartCa::ensure(data.path(), &options(), now).unwrap();
    let bad = write(&QuickstartCa::dir(data.path()), "0badc0de.crt", "garbage");
    let err = QuickstartCa::ensure(data.path(), &options(), now).unwrap_err();
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );
}
