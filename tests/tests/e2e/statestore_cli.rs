//! The state store driven by an independent client: `mosquitto_rr` (Debian
//! mosquitto-clients) sends RESP3 requests with a response topic and prints the reply
//! payload and its user properties, exactly as the README shows.

use gatehouse_tests::broker::TestBroker;
use gatehouse_tests::mosquitto::run_client;
use gatehouse_tests::state_store::{ts_now, REQUEST_TOPIC};

async fn rr(b: &TestBroker, payload: &str, extra: &[&str]) -> String {
    let addr = b.mqtt_addr();
    let mut args = vec![
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-t",
        REQUEST_TOPIC,
        "-e",
        "clients/rr/statestore/response",
        "-m",
        payload,
        "-F",
        "%p|%P",
    ];
    args.extend_from_slice(extra);
    let out = run_client("mosquitto_rr", &addr.ip().to_string(), addr.port(), &args).await;
    assert!(out.status.success(), "mosquitto_rr failed: {}", out.stderr);
    out.stdout
}

#[tokio::test]
async fn mosquitto_rr_sets_and_gets_a_key() {
    let b = TestBroker::local().await;
    let ts = ts_now();
    let set = rr(
        &b,
        "*3\r\n$3\r\nSET\r\n$4\r\ncity\r\n$7\r\nSeattle\r\n",
        &["-D", "publish", "user-property", "__ts", &ts],
    )
    .await;
    let (payload, props) = set.split_once('|').expect("payload|properties");
    assert_eq!(payload, "+OK\r\n");
    assert!(props.contains("__stat:200"), "{props}");
    let version = props
        .split_whitespace()
        .find_map(|p| p.strip_prefix("__ts:"))
        .expect("__ts on +OK")
        .to_owned();
    let get = rr(&b, "*2\r\n$3\r\nGET\r\n$4\r\ncity\r\n", &[]).await;
    let (payload, props) = get.split_once('|').expect("payload|properties");
    assert_eq!(payload, "$7\r\nSeattle\r\n");
    assert!(props.contains(&format!("__ts:{version}")), "{props}");
    // Without __ts a SET is refused with the exact error string.
    let refused = rr(&b, "*3\r\n$3\r\nSET\r\n$4\r\ncity\r\n$5\r\nParis\r\n", &[]).await;
    assert!(
        refused.starts_with("-ERR missing timestamp\r\n|"),
        "{refused}"
    );
}
