//! State store persistence across a restart of the real binary (issue 6): keys the
//! `persistence.stateStore` policy selects (a Custom pattern, or the dynamic
//! `aio-persistence: true` property) come back with their values and versions; other keys,
//! and persisted keys that expired, do not.

use std::time::Duration;

use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
use gatehouse_tests::raw::{ConnectBuilder, RawClient};
use gatehouse_tests::state_store::StateStoreClient;

fn config(dir: &TempDir, port: u16) -> std::path::PathBuf {
    dir.write(
        "gatehouse.yaml",
        &format!(
            "
listeners:
  - name: main
    bindAddress: 127.0.0.1
    ports: [ {{ port: {port} }} ]
dataDir: {}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
persistence:
  maxSize: 10M
  stateStore:
    mode: Custom
    stateStoreSettings:
      stateStoreResources:
        - keyType: Pattern
          keys: [\"keep/*\"]
",
            dir.path().join("data").display()
        ),
    )
}

async fn client(broker: &BrokerProcess, id: &str) -> StateStoreClient {
    let mut raw = RawClient::connect(broker.addr()).await;
    raw.send(&ConnectBuilder::new(id).build()).await;
    raw.expect_connack_ok().await;
    StateStoreClient::start(raw, id).await
}

fn set(key: &str, value: &str) -> Vec<u8> {
    format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes()
}

fn get(key: &str) -> Vec<u8> {
    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).into_bytes()
}

#[tokio::test]
async fn persisted_keys_survive_a_restart_and_others_do_not() {
    let dir = TempDir::new("ss-persist");
    let port = free_port();
    let file = config(&dir, port);
    let mut broker = BrokerProcess::start(&file, port).await;
    let mut c = client(&broker, "writer").await;
    let kept = c.call(&set("keep/a", "alpha"), &[]).await;
    assert_eq!(&kept.payload[..], b"+OK\r\n");
    let version = kept.prop("__ts").expect("__ts").to_owned();
    c.call(&set("other/b", "beta"), &[]).await;
    c.call(&set("dyn/c", "gamma"), &[("aio-persistence", "true")])
        .await;
    c.call(
        b"*5\r\n$3\r\nSET\r\n$8\r\nkeep/exp\r\n$1\r\nx\r\n$2\r\nPX\r\n$3\r\n300\r\n",
        &[],
    )
    .await;
    // A later SET without the property un-persists a dynamic key ("the latest SET decides").
    c.call(&set("dyn/d", "delta"), &[("aio-persistence", "true")])
        .await;
    c.call(&set("dyn/d", "delta2"), &[]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    broker.signal("TERM");
    assert!(broker.exit_within(Duration::from_secs(8)).await.success());
    let broker = BrokerProcess::start(&file, port).await;
    assert!(
        broker.log_text().contains("state store persistence"),
        "{}",
        broker.log_text()
    );
    let mut c = client(&broker, "reader").await;
    let a = c.call(&get("keep/a"), &[]).await;
    assert_eq!(&a.payload[..], b"$5\r\nalpha\r\n");
    assert_eq!(
        a.prop("__ts"),
        Some(version.as_str()),
        "the version survives too"
    );
    assert_eq!(
        &c.call(&get("dyn/c"), &[]).await.payload[..],
        b"$5\r\ngamma\r\n"
    );
    for gone in ["other/b", "keep/exp", "dyn/d"] {
        assert_eq!(
            &c.call(&get(gone), &[]).await.payload[..],
            b"$-1\r\n",
            "{gone}"
        );
    }
    // New versions are above the restored ones.
    let again = c.call(&set("keep/a", "alpha2"), &[]).await;
    let newer = again.prop("__ts").expect("__ts").to_owned();
    let wall = |v: &str| -> (u64, u64) {
        let parts: Vec<&str> = v.split(':').collect();
        (parts[0].parse().unwrap(), parts[1].parse().unwrap())
    };
    assert!(wall(&newer) > wall(&version), "{newer} > {version}");
}

#[tokio::test]
async fn a_corrupt_database_stops_the_broker_with_a_clear_error() {
    let dir = TempDir::new("ss-corrupt");
    let port = free_port();
    let file = config(&dir, port);
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    std::fs::write(
        dir.path().join("data/gatehouse.redb"),
        b"not a database at all",
    )
    .expect("write");
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(gatehouse_tests::broker::gatehouse_bin())
            .arg("--config")
            .arg(&file)
            .env_remove("RUST_LOG")
            .output(),
    )
    .await
    .expect("gatehouse exits")
    .expect("run gatehouse");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gatehouse.redb"), "{stderr}");
    // The file is left as it was for the operator to inspect.
    assert_eq!(
        std::fs::read(dir.path().join("data/gatehouse.redb")).expect("read"),
        b"not a database at all"
    );
}
