//! The `add-user` subcommand.

use crate::common::{add_user, added, Pki};

#[test]
fn writes_an_argon2_hash_never_printing_the_password_or_hash() {
    let pki = Pki::new();
    let users = pki.path("users.yaml");
    let output = add_user(
        &users,
        "client1",
        "password1",
        &["--attribute", "floor=floor1", "--lifetime", "1h"],
    );
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(text.contains("passwordHash: $argon2id$"), "{text}");
    assert!(
        text.contains("floor: floor1") && text.contains("credentialLifetime: 1h"),
        "{text}"
    );
    assert!(!text.contains("password1"), "{text}");

    let hash = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("passwordHash: "))
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        printed.trim(),
        format!("user client1 added to {}", users.display())
    );
    assert!(!printed.contains("password1") && !printed.contains(hash));
}

#[test]
fn replacing_a_user_keeps_the_others_and_a_json_file_stays_json() {
    let pki = Pki::new();
    let users = pki.path("users.json");
    added(&users, "a", "pw-a", &["--attribute", "k=v"]);
    added(&users, "b", "pw-b", &[]);
    let output = add_user(&users, "a", "pw-a2", &[]);
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("user a replaced in"));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&users).unwrap()).unwrap();
    let names: Vec<_> = file["users"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(names, ["a", "b"]);
    assert!(file["users"]["a"].get("attributes").is_none(), "{file}");
}

#[test]
fn refuses_an_empty_password_or_a_bad_lifetime() {
    let pki = Pki::new();
    let users = pki.path("users.yaml");
    assert!(!add_user(&users, "a", "", &[]).status.success());
    assert!(!add_user(&users, "a", "pw", &["--lifetime", "forever"])
        .status
        .success());
    assert!(!users.exists());
}
