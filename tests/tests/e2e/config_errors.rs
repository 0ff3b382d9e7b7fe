//! Bad configuration files through the binary: non-zero exit, every problem on stderr
//! with its YAML path, and (when running) no port opened.

use std::net::Ipv4Addr;

use gatehouse_tests::broker::{free_port, run_gatehouse, TempDir};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `gatehouse check --config <yaml>`: fails, and stderr has every `expected` fragment.
async fn check_fails(yaml: &str, expected: &[&str]) -> String {
    let dir = TempDir::new("bad-config");
    let path = dir.write("bad.yaml", yaml);
    let out = run_gatehouse(&["check", "--config", path.to_str().expect("UTF-8 path")]).await;
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "check accepted:\n{yaml}\nstdout: {}",
        text(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "stderr lacks `{e}`:\n{stderr}");
    }
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_port_names_the_second_port() {
    check_fails(
        "
listeners:
  - name: default
    ports:
      - port: 18841
      - port: 18841
",
        &["listeners[0].ports[1].port", "18841", "already used"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocol_names_the_field_and_the_choices() {
    check_fails(
        "
listeners:
  - name: default
    ports:
      - port: 18841
        protocol: Mqttt
",
        &["listeners[0].ports[0].protocol", "Mqttt", "WebSockets"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misspelled_field_is_reported_with_its_path() {
    check_fails(
        "
listeners:
  - name: default
    bindAdress: 127.0.0.1
    ports:
      - port: 18841
",
        &["listeners[0].bindAdress", "bindAddress", "line 4"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_is_reported_at_once() {
    check_fails(
        "
listeners:
  - name: Bad_Name
    ports:
      - port: 18841
      - port: 18841
      - port: 18842
        protocol: WebSockets
        path: mqtt
broker:
  connectTimeout: 10s
",
        &[
            "listeners[0].name",
            "listeners[0].ports[1].port",
            "listeners[0].ports[2].path",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_syntax_error_gives_the_line() {
    check_fails(
        "listeners:\n  - name: default\n    ports: [ { port: 1 }\n",
        &["bad.yaml:", "invalid YAML"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_config_file_fails() {
    let dir = TempDir::new("missing");
    let path = dir.path().join("nope.yaml");
    let path = path.to_str().expect("UTF-8 path");
    for args in [vec!["check", "--config", path], vec!["--config", path]] {
        let out = run_gatehouse(&args).await;
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains("nope.yaml"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// Running (not just checking) an invalid file fails the same way and opens nothing,
/// even the valid port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_invalid_config_opens_no_port() {
    let dir = TempDir::new("run-invalid");
    let good = free_port();
    let path = dir.write(
        "bad.yaml",
        &format!(
            "
listeners:
  - name: default
    bindAddress: 127.0.0.1
    ports:
      - port: {good}
      - port: {good}
"
        ),
    );
    let out = run_gatehouse(&["--config", path.to_str().expect("UTF-8 path")]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("listeners[0].ports[1].port"),
        "{}",
        text(&out.stderr)
    );
    assert!(std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, good)).is_err());
}

/// Issue 18 made `^` an ordinary member of a glob class (AIO's rules). A policy written for
/// the old reading, `dev-[^t]*` to keep test devices out, would then let `dev-test` in:
/// `check` refuses it with its path instead of widening access silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_class_starting_with_caret_is_refused_not_widened() {
    let stderr = check_fails(
        "
listeners:
  - name: main
    ports: [ { port: 1883, authorizationRef: policy } ]
authorizations:
  - name: policy
    authorizationPolicies:
      rules:
        - principals: { usernames: [device] }
          brokerResources:
            - method: Connect
              clientIds: [\"dev-[^t]*\"]
",
        &[
            "authorizations[0].authorizationPolicies.rules[0].brokerResources[0].clientIds[0]",
            "may not start with `^`",
            "[!...]",
        ],
    )
    .await;
    assert!(!stderr.contains("configuration is valid"), "{stderr}");
}
