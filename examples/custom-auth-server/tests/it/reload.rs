//! The users file is picked up while the server runs.

use hyper::StatusCode;
use serde_json::json;

use crate::common::{added, connect, write, Pki, Server};

#[tokio::test]
async fn users_added_or_changed_while_running_take_effect() {
    let pki = Pki::new();
    let users = pki.path("users.yaml");
    added(
        &users,
        "client1",
        "password1",
        &["--attribute", "floor=floor1"],
    );
    let server = Server::start(&pki, &users, None);
    let client = pki.client(None);

    // A new user, added by the subcommand (an atomic rename).
    let (status, _) = client
        .post(server.addr, &connect("client2", "password2"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    added(&users, "client2", "password2", &[]);
    let (status, _) = client
        .post(server.addr, &connect("client2", "password2"))
        .await;
    assert_eq!(status, StatusCode::OK);

    // A password change, by the subcommand.
    added(
        &users,
        "client1",
        "new-password",
        &["--attribute", "floor=floor1"],
    );
    let (status, _) = client
        .post(server.addr, &connect("client1", "password1"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An edit by hand, in place: client2 gets an attribute, client1 disappears.
    let text = std::fs::read_to_string(&users).unwrap();
    let client2_hash = text
        .lines()
        .skip_while(|line| !line.starts_with("  client2:"))
        .find_map(|line| line.trim().strip_prefix("passwordHash: "))
        .unwrap()
        .to_owned();
    std::fs::write(
        &users,
        format!("users:\n  client2:\n    passwordHash: '{client2_hash}'\n    attributes: {{ floor: floor9 }}\n"),
    )
    .unwrap();
    let (status, body) = client
        .post(server.addr, &connect("client2", "password2"))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"attributes": {"floor": "floor9"}}))
    );
    let (status, _) = client
        .post(server.addr, &connect("client1", "new-password"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A broken edit keeps the last good users.
    write(pki.dir.path(), "users.yaml", "users: [broken\n");
    let (status, _) = client
        .post(server.addr, &connect("client2", "password2"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let logs = server.logs();
    assert!(logs.contains("keeping the 1 users last loaded"), "{logs}");
}
