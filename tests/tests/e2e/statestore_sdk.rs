//! The state store judged by the official Azure IoT Operations Rust SDK
//! (`azure_iot_operations_services` with `state_store` and `leased_lock`, over the SDK's
//! own MQTT session from `azure_iot_operations_mqtt`): each test starts its own broker and
//! connects SDK clients to it over plain TCP, anonymously, with unique client ids.
//!
//! What the SDK sends and accepts is what a real AIO client sends and accepts: requests
//! on `statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke`, responses on
//! `clients/{id}/services/statestore/.../response`, notifications on
//! `clients/statestore/v1/.../{HEX(id)}/command/notify/{HEX(key)}`. A reply the SDK cannot
//! parse shows up as an `UnexpectedPayload` or protocol error, a missing reply as the SDK's
//! own timeout; every network wait is also bounded here, so a broker bug fails a test
//! rather than hanging it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use azure_iot_operations_mqtt::aio::connection_settings::MqttConnectionSettingsBuilder;
use azure_iot_operations_mqtt::control_packet::{Publish, TopicFilter};
use azure_iot_operations_mqtt::session::{
    Session, SessionError, SessionExitHandle, SessionManagedClient, SessionOptionsBuilder,
    SessionPubReceiver,
};
use azure_iot_operations_protocol::application::ApplicationContextBuilder;
use azure_iot_operations_protocol::common::hybrid_logical_clock::HybridLogicalClock;
use azure_iot_operations_services::leased_lock::{self, lease, lock};
use azure_iot_operations_services::state_store::{
    self, KeyNotification, Operation, ServiceError, SetCondition, SetOptions,
};
use gatehouse_tests::broker::{unique, TestBroker};
use tokio::task::JoinHandle;

/// What the SDK waits for one reply (its own timeout, rounded up to whole seconds).
const REQUEST: Duration = Duration::from_secs(5);
/// What a test waits for anything from the network: longer than [`REQUEST`], so a missing
/// reply is reported by the SDK (with its error) before this bound trips.
const BOUND: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(500);

const NOTIFY_PREFIX: &str = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8";

/// `fut`, or a panic naming `what` after [`BOUND`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {BOUND:?}"),
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// HLC order (wall clock, then counter), which is what fencing compares.
fn hlc_order(h: &HybridLogicalClock) -> (SystemTime, u64) {
    (h.timestamp, h.counter)
}

fn assert_newer(newer: &HybridLogicalClock, older: &HybridLogicalClock, what: &str) {
    assert!(
        hlc_order(newer) > hlc_order(older),
        "{what}: version {newer} is not newer than {older}"
    );
}

/// One SDK client: its MQTT session (running in a task), the state store client on it,
/// and a raw receiver for every key notification the broker sends this session (the SDK's
/// `KeyObservation` closes when a key is unobserved, so it cannot tell whether the broker
/// really stopped; this receiver can).
struct Sdk {
    id: String,
    store: Arc<state_store::Client>,
    notifications: SessionPubReceiver,
    exit: SessionExitHandle,
    session: JoinHandle<Result<(), SessionError>>,
}

impl Sdk {
    async fn connect(broker: &TestBroker, prefix: &str) -> Sdk {
        let id = unique(prefix);
        let addr = broker.mqtt_addr();
        let settings = MqttConnectionSettingsBuilder::default()
            .client_id(id.clone())
            .hostname(addr.ip().to_string())
            .tcp_port(addr.port())
            .keep_alive(Duration::from_secs(10))
            .use_tls(false)
            .build()
            .expect("MQTT connection settings");
        let options = SessionOptionsBuilder::default()
            .connection_settings(settings)
            .build()
            .expect("session options");
        let session = Session::new(options).expect("SDK session");
        let monitor = session.create_session_monitor();
        let managed: SessionManagedClient = session.create_managed_client();
        let notify_filter = format!(
            "{NOTIFY_PREFIX}/{}/command/notify/+",
            hex_upper(id.as_bytes())
        );
        let notifications = managed.create_filtered_pub_receiver(
            TopicFilter::new(&notify_filter).expect("notification filter"),
        );
        let store = state_store::Client::new(
            ApplicationContextBuilder::default()
                .build()
                .expect("application context"),
            managed,
            session.create_session_monitor(),
            state_store::ClientOptionsBuilder::default()
                .build()
                .expect("state store client options"),
        )
        .expect("state store client");
        let exit = session.create_exit_handle();
        let session = tokio::spawn(session.run());
        within(&format!("{id}: CONNACK"), monitor.connected()).await;
        Sdk {
            id,
            store: Arc::new(store),
            notifications,
            exit,
            session,
        }
    }

    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        fencing_token: Option<HybridLogicalClock>,
        options: SetOptions,
    ) -> Result<state_store::Response<bool>, state_store::Error> {
        within(
            &format!("{}: SET {}", self.id, String::from_utf8_lossy(key)),
            self.store.set(
                key.to_vec(),
                value.to_vec(),
                REQUEST,
                fencing_token,
                options,
            ),
        )
        .await
    }

    /// A SET that must be applied; returns the new version.
    async fn set_ok(&self, key: &[u8], value: &[u8], options: SetOptions) -> HybridLogicalClock {
        let r = self
            .set(key, value, None, options)
            .await
            .unwrap_or_else(|e| {
                panic!("SET {}: {e:?}", String::from_utf8_lossy(key));
            });
        assert!(
            r.response,
            "SET {} was not applied",
            String::from_utf8_lossy(key)
        );
        r.version
            .expect("a SET that was applied carries the key's version (__ts)")
    }

    async fn get(&self, key: &[u8]) -> state_store::Response<Option<Vec<u8>>> {
        within(
            &format!("{}: GET", self.id),
            self.store.get(key.to_vec(), REQUEST),
        )
        .await
        .unwrap_or_else(|e| panic!("GET {}: {e:?}", String::from_utf8_lossy(key)))
    }

    async fn del(
        &self,
        key: &[u8],
        fencing_token: Option<HybridLogicalClock>,
    ) -> Result<state_store::Response<i64>, state_store::Error> {
        within(
            &format!("{}: DEL", self.id),
            self.store.del(key.to_vec(), fencing_token, REQUEST),
        )
        .await
    }

    async fn vdel(
        &self,
        key: &[u8],
        value: &[u8],
        fencing_token: Option<HybridLogicalClock>,
    ) -> Result<state_store::Response<i64>, state_store::Error> {
        within(
            &format!("{}: VDEL", self.id),
            self.store
                .vdel(key.to_vec(), value.to_vec(), fencing_token, REQUEST),
        )
        .await
    }

    async fn observe(&self, key: &[u8]) -> state_store::KeyObservation {
        within(
            &format!("{}: KEYNOTIFY", self.id),
            self.store.observe(key.to_vec(), REQUEST),
        )
        .await
        .unwrap_or_else(|e| panic!("KEYNOTIFY {}: {e:?}", String::from_utf8_lossy(key)))
        .response
    }

    async fn unobserve(&self, key: &[u8]) -> bool {
        within(
            &format!("{}: KEYNOTIFY STOP", self.id),
            self.store.unobserve(key.to_vec(), REQUEST),
        )
        .await
        .unwrap_or_else(|e| panic!("KEYNOTIFY STOP {}: {e:?}", String::from_utf8_lossy(key)))
        .response
    }

    /// The next notification PUBLISH the broker sent this session (any key).
    async fn raw_notification(&mut self) -> Publish {
        within(
            &format!("{}: a notification PUBLISH", self.id),
            self.notifications.recv(),
        )
        .await
        .expect("the session's notification receiver is open")
    }

    /// Asserts that no notification PUBLISH arrives for [`QUIET`].
    async fn no_raw_notification(&mut self, what: &str) {
        if let Ok(Some(p)) = tokio::time::timeout(QUIET, self.notifications.recv()).await {
            panic!(
                "{what}: unexpected notification on {} payload {:?}",
                p.topic_name.as_str(),
                String::from_utf8_lossy(&p.payload)
            );
        }
    }

    /// Shut the state store client down, DISCONNECT, and wait for the session to end.
    async fn close(self) {
        let Sdk {
            id,
            store,
            exit,
            session,
            ..
        } = self;
        within(&format!("{id}: state store shutdown"), store.shutdown())
            .await
            .unwrap_or_else(|e| panic!("{id}: state store shutdown: {e:?}"));
        exit.try_exit()
            .unwrap_or_else(|e| panic!("{id}: session exit: {e:?}"));
        within(&format!("{id}: session end"), session)
            .await
            .expect("session task")
            .unwrap_or_else(|e| panic!("{id}: session ended with {e:?}"));
    }
}

async fn next_notification(obs: &mut state_store::KeyObservation, what: &str) -> KeyNotification {
    within(what, obs.recv_notification())
        .await
        .unwrap_or_else(|| panic!("{what}: the observation closed"))
        .0
}

fn service_error(e: &state_store::Error) -> &ServiceError {
    match e.kind() {
        state_store::ErrorKind::ServiceError(s) => s,
        other => panic!("expected a state store error reply, got {other:?}"),
    }
}

fn expires(ms: u64) -> SetOptions {
    SetOptions {
        expires: Some(Duration::from_millis(ms)),
        ..SetOptions::default()
    }
}

fn condition(set_condition: SetCondition) -> SetOptions {
    SetOptions {
        set_condition,
        ..SetOptions::default()
    }
}

/// SET / GET / DEL / VDEL round trips: values and versions as stored, binary-safe keys and
/// values, the empty value, and the counts DEL and VDEL report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_get_del_vdel() {
    let broker = TestBroker::local().await;
    let c = Sdk::connect(&broker, "sdk-crud").await;
    let key = unique("crud").into_bytes();

    let missing = c.get(&key).await;
    assert_eq!(missing.response, None, "GET of a key never set");
    assert!(
        missing.version.is_none(),
        "GET miss carries no version, got {:?}",
        missing.version
    );
    assert_eq!(c.del(&key, None).await.expect("DEL missing").response, 0);

    let v1 = c.set_ok(&key, b"value-1", SetOptions::default()).await;
    let got = c.get(&key).await;
    assert_eq!(got.response.as_deref(), Some(&b"value-1"[..]));
    assert_eq!(
        got.version.as_ref(),
        Some(&v1),
        "GET returns the SET's version"
    );

    let v2 = c.set_ok(&key, b"value-2", SetOptions::default()).await;
    assert_newer(&v2, &v1, "overwrite");
    assert_eq!(c.get(&key).await.response.as_deref(), Some(&b"value-2"[..]));

    assert_eq!(c.del(&key, None).await.expect("DEL").response, 1);
    assert_eq!(c.get(&key).await.response, None, "GET after DEL");
    assert_eq!(c.del(&key, None).await.expect("DEL again").response, 0);

    // Binary-safe: CR LF, NUL and non-UTF-8 bytes in both key and value.
    let bin_key = [b"bin\r\n\0\xff-".as_slice(), key.as_slice()].concat();
    let bin_value = b"*1\r\n$3\r\n\0\xfe\xff\r\n".to_vec();
    c.set_ok(&bin_key, &bin_value, SetOptions::default()).await;
    assert_eq!(c.get(&bin_key).await.response, Some(bin_value.clone()));

    // The empty value is a value, not an absent key.
    let empty_key = [key.as_slice(), b"-empty"].concat();
    let ve = c.set_ok(&empty_key, b"", SetOptions::default()).await;
    let got = c.get(&empty_key).await;
    assert_eq!(got.response, Some(Vec::new()), "GET of an empty value");
    assert_eq!(got.version, Some(ve));

    // VDEL: absent 0, mismatch -1 (key kept), match 1 (key gone).
    assert_eq!(
        c.vdel(&[key.as_slice(), b"-never"].concat(), b"x", None)
            .await
            .expect("VDEL missing")
            .response,
        0
    );
    assert_eq!(
        c.vdel(&bin_key, b"not the value", None)
            .await
            .expect("VDEL mismatch")
            .response,
        -1
    );
    assert_eq!(c.get(&bin_key).await.response, Some(bin_value.clone()));
    assert_eq!(
        c.vdel(&bin_key, &bin_value, None)
            .await
            .expect("VDEL match")
            .response,
        1
    );
    assert_eq!(c.get(&bin_key).await.response, None, "GET after VDEL");

    c.close().await;
}

/// NX, NEX (including lease-style renewal that extends the expiry) and VDEL's value
/// condition: a condition that fails leaves the key as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_conditions_and_vdel() {
    let broker = TestBroker::local().await;
    let c = Sdk::connect(&broker, "sdk-cond").await;
    let key = unique("cond").into_bytes();

    // NX: applied on an absent key, not applied on an existing one.
    let v1 = c
        .set(
            &key,
            b"first",
            None,
            condition(SetCondition::OnlyIfDoesNotExist),
        )
        .await
        .expect("SET NX absent");
    assert!(v1.response, "SET NX on an absent key is applied");
    let v1 = v1.version.expect("version");
    let nx = c
        .set(
            &key,
            b"second",
            None,
            condition(SetCondition::OnlyIfDoesNotExist),
        )
        .await
        .expect("SET NX existing");
    assert!(!nx.response, "SET NX on an existing key is not applied");
    assert_eq!(
        nx.version.as_ref(),
        Some(&v1),
        "a SET that was not applied carries the stored version"
    );
    let got = c.get(&key).await;
    assert_eq!(got.response.as_deref(), Some(&b"first"[..]));
    assert_eq!(got.version.as_ref(), Some(&v1), "NX failure did not write");

    // NEX: another value is refused; the same value is a renewal with a newer version.
    let nex = c
        .set(
            &key,
            b"other",
            None,
            condition(SetCondition::OnlyIfEqualOrDoesNotExist),
        )
        .await
        .expect("SET NEX other value");
    assert!(!nex.response, "SET NEX with another value is not applied");
    assert_eq!(c.get(&key).await.response.as_deref(), Some(&b"first"[..]));

    let lease = SetOptions {
        set_condition: SetCondition::OnlyIfEqualOrDoesNotExist,
        expires: Some(Duration::from_millis(1500)),
        ..SetOptions::default()
    };
    let renewed = c
        .set(&key, b"first", None, lease.clone())
        .await
        .expect("SET NEX same value");
    assert!(renewed.response, "SET NEX with the stored value is applied");
    let v2 = renewed.version.expect("version");
    assert_newer(&v2, &v1, "NEX renewal");

    // Renewal extends the expiry: renewed 0.9 s into a 1.5 s lease for another 2 s, the key
    // is still there 1.9 s after the first lease started.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let renewal = SetOptions {
        expires: Some(Duration::from_millis(2000)),
        ..lease.clone()
    };
    let v3 = c
        .set(&key, b"first", None, renewal)
        .await
        .expect("NEX renewal");
    assert!(v3.response, "NEX renewal of a live lease");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        c.get(&key).await.response.as_deref(),
        Some(&b"first"[..]),
        "the renewed key outlived its first expiry"
    );

    // NEX on an absent key is applied.
    let absent = [key.as_slice(), b"-nex-absent"].concat();
    let r = c
        .set(
            &absent,
            b"v",
            None,
            condition(SetCondition::OnlyIfEqualOrDoesNotExist),
        )
        .await
        .expect("SET NEX absent");
    assert!(r.response, "SET NEX on an absent key is applied");

    // VDEL: wrong value -> not applied (-1) and the key stays; right value -> deleted.
    assert_eq!(
        c.vdel(&key, b"wrong", None)
            .await
            .expect("VDEL wrong")
            .response,
        -1,
        "VDEL with the wrong value"
    );
    assert_eq!(c.get(&key).await.response.as_deref(), Some(&b"first"[..]));
    assert_eq!(
        c.vdel(&key, b"first", None)
            .await
            .expect("VDEL right")
            .response,
        1,
        "VDEL with the right value"
    );
    assert_eq!(c.get(&key).await.response, None);
    assert_eq!(
        c.vdel(&key, b"first", None)
            .await
            .expect("VDEL again")
            .response,
        0,
        "VDEL of a deleted key"
    );

    c.close().await;
}

/// A key written with a fencing token refuses writes (SET, DEL, VDEL) without a token or
/// with a lower one, accepts an equal or higher one (the higher one then protects the key),
/// and still answers GET without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens() {
    let broker = TestBroker::local().await;
    let c = Sdk::connect(&broker, "sdk-fence").await;
    let key = unique("fenced").into_bytes();

    let token = HybridLogicalClock::new();
    let lower = HybridLogicalClock {
        timestamp: token.timestamp - Duration::from_secs(1),
        ..token.clone()
    };
    let higher = HybridLogicalClock {
        counter: token.counter + 1,
        ..token.clone()
    };

    let r = c
        .set(&key, b"v1", Some(token.clone()), SetOptions::default())
        .await
        .expect("SET with a token on a new key");
    assert!(r.response);

    let e = c
        .set(&key, b"no-token", None, SetOptions::default())
        .await
        .expect_err("SET without a token on a fenced key");
    assert!(
        matches!(service_error(&e), ServiceError::MissingFencingToken),
        "SET without a token: {e:?}"
    );
    let e = c
        .set(&key, b"lower", Some(lower.clone()), SetOptions::default())
        .await
        .expect_err("SET with a lower token");
    assert!(
        matches!(service_error(&e), ServiceError::FencingTokenLowerVersion),
        "SET with a lower token: {e:?}"
    );
    let got = c.get(&key).await;
    assert_eq!(
        got.response.as_deref(),
        Some(&b"v1"[..]),
        "GET needs no token, and refused writes wrote nothing"
    );

    let r = c
        .set(&key, b"equal", Some(token.clone()), SetOptions::default())
        .await
        .expect("SET with the equal token");
    assert!(r.response, "SET with the equal token is applied");
    let r = c
        .set(&key, b"higher", Some(higher.clone()), SetOptions::default())
        .await
        .expect("SET with a higher token");
    assert!(r.response, "SET with a higher token is applied");
    assert_eq!(c.get(&key).await.response.as_deref(), Some(&b"higher"[..]));

    // The higher token now protects the key: the first one is too low.
    let e = c
        .set(&key, b"stale", Some(token.clone()), SetOptions::default())
        .await
        .expect_err("SET with the superseded token");
    assert!(
        matches!(service_error(&e), ServiceError::FencingTokenLowerVersion),
        "SET with the superseded token: {e:?}"
    );

    // DEL and VDEL are fenced the same way.
    let e = c.del(&key, None).await.expect_err("DEL without a token");
    assert!(
        matches!(service_error(&e), ServiceError::MissingFencingToken),
        "DEL without a token: {e:?}"
    );
    let e = c
        .vdel(&key, b"higher", None)
        .await
        .expect_err("VDEL without a token");
    assert!(
        matches!(service_error(&e), ServiceError::MissingFencingToken),
        "VDEL without a token: {e:?}"
    );
    let e = c
        .del(&key, Some(lower.clone()))
        .await
        .expect_err("DEL with a lower token");
    assert!(
        matches!(service_error(&e), ServiceError::FencingTokenLowerVersion),
        "DEL with a lower token: {e:?}"
    );
    assert_eq!(c.get(&key).await.response.as_deref(), Some(&b"higher"[..]));
    assert_eq!(
        c.del(&key, Some(higher.clone()))
            .await
            .expect("DEL with the current token")
            .response,
        1
    );
    assert_eq!(c.get(&key).await.response, None);

    // The token went with the key: a new key of the same name starts unfenced.
    c.set_ok(&key, b"unfenced", SetOptions::default()).await;
    c.set_ok(&key, b"still unfenced", SetOptions::default())
        .await;

    // A token more than a minute ahead of the broker's clock is refused, even on a new key.
    let future = HybridLogicalClock {
        timestamp: SystemTime::now() + Duration::from_secs(600),
        ..HybridLogicalClock::new()
    };
    let e = c
        .set(
            &[key.as_slice(), b"-skew"].concat(),
            b"v",
            Some(future),
            SetOptions::default(),
        )
        .await
        .expect_err("SET with a token ten minutes ahead");
    assert!(
        matches!(service_error(&e), ServiceError::FencingTokenSkew),
        "SET with a token ten minutes ahead: {e:?}"
    );

    c.close().await;
}

/// KEYNOTIFY through the SDK's `KeyObservation`: SET and DELETE notifications for writes by
/// the observer and by another client, with the writes' versions, on the upper-hex topic;
/// after unobserve the broker sends nothing more for the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_and_unobserve() {
    let broker = TestBroker::local().await;
    observe_and_unobserve_between(&broker, &broker).await;
}

/// [`observe_and_unobserve`] with the watcher connected to `watcher_broker` and the other
/// client to `writer_broker` (two nodes of a cluster: `cluster_statestore_sdk`).
pub(crate) async fn observe_and_unobserve_between(
    watcher_broker: &TestBroker,
    writer_broker: &TestBroker,
) {
    let mut watcher = Sdk::connect(watcher_broker, "sdk-watcher").await;
    let writer = Sdk::connect(writer_broker, "sdk-writer").await;
    let key = unique("observed").into_bytes();
    let topic = format!(
        "{NOTIFY_PREFIX}/{}/command/notify/{}",
        hex_upper(watcher.id.as_bytes()),
        hex_upper(&key)
    );

    let mut obs = watcher.observe(&key).await;
    assert_eq!(obs.key, key);

    let v1 = writer.set_ok(&key, b"one", SetOptions::default()).await;
    let n = next_notification(&mut obs, "SET notification (other client's write)").await;
    assert_eq!(n.key, key);
    assert_eq!(n.operation, Operation::Set(b"one".to_vec()));
    assert_eq!(n.version, v1, "the notification carries the SET's version");

    let v2 = watcher.set_ok(&key, b"two", SetOptions::default()).await;
    let n = next_notification(&mut obs, "SET notification (own write)").await;
    assert_eq!(n.operation, Operation::Set(b"two".to_vec()));
    assert_eq!(n.version, v2);

    // A write that is not applied notifies nobody.
    let r = writer
        .set(
            &key,
            b"nx",
            None,
            condition(SetCondition::OnlyIfDoesNotExist),
        )
        .await
        .expect("SET NX existing");
    assert!(!r.response);

    assert_eq!(writer.del(&key, None).await.expect("DEL").response, 1);
    let n = next_notification(&mut obs, "DELETE notification").await;
    assert_eq!(n.key, key);
    assert_eq!(n.operation, Operation::Del);
    assert_newer(&n.version, &v2, "DELETE notification version");

    // The same three, as the broker sent them: one PUBLISH each, on the key's topic.
    for expected in [
        &b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\none\r\n"[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\ntwo\r\n",
        b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n",
    ] {
        let p = watcher.raw_notification().await;
        assert_eq!(p.topic_name.as_str(), topic);
        assert_eq!(
            String::from_utf8_lossy(&p.payload),
            String::from_utf8_lossy(expected)
        );
    }
    watcher
        .no_raw_notification("after SET, SET, DEL (the NX that was not applied)")
        .await;

    assert!(
        watcher.unobserve(&key).await,
        "KEYNOTIFY STOP of a watched key"
    );
    assert!(
        within("observation end", obs.recv_notification())
            .await
            .is_none(),
        "the SDK closes the observation on unobserve"
    );
    writer.set_ok(&key, b"three", SetOptions::default()).await;
    writer.del(&key, None).await.expect("DEL after unobserve");
    watcher.get(&key).await; // one round trip on the watcher's connection
    watcher
        .no_raw_notification("SET and DEL after unobserve")
        .await;
    assert!(
        !watcher.unobserve(&key).await,
        "KEYNOTIFY STOP of a key no longer watched"
    );

    // Observe again: notifications resume.
    let mut obs = watcher.observe(&key).await;
    writer.set_ok(&key, b"four", SetOptions::default()).await;
    let n = next_notification(&mut obs, "SET notification after re-observe").await;
    assert_eq!(n.operation, Operation::Set(b"four".to_vec()));
    watcher.raw_notification().await;

    writer.close().await;
    watcher.close().await;
}

/// SET with a 1 s expiry on an observed key: a SET notification, then a DELETE notification
/// when the key expires (about a second later, not before), and the key is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_notification() {
    let broker = TestBroker::local().await;
    let c = Sdk::connect(&broker, "sdk-expiry").await;
    let key = unique("expiring").into_bytes();

    let mut obs = c.observe(&key).await;
    let start = Instant::now();
    let v = c.set_ok(&key, b"short-lived", expires(1000)).await;
    let n = next_notification(&mut obs, "SET notification").await;
    assert_eq!(n.operation, Operation::Set(b"short-lived".to_vec()));
    assert_eq!(n.version, v);

    let n = next_notification(&mut obs, "DELETE notification on expiry").await;
    let after = start.elapsed();
    assert_eq!(n.key, key);
    assert_eq!(n.operation, Operation::Del, "expiry notifies DELETE");
    assert!(
        after >= Duration::from_millis(900),
        "the key expired after {after:?}, before its 1 s expiry"
    );
    assert!(
        after <= Duration::from_secs(4),
        "the expiry notification came {after:?} after the SET"
    );
    assert_newer(&n.version, &v, "expiry DELETE version");
    assert_eq!(c.get(&key).await.response, None, "GET after expiry");
    assert_eq!(
        c.del(&key, None).await.expect("DEL expired").response,
        0,
        "an expired key is absent"
    );

    c.close().await;
}

/// The SDK's leased lock between two clients: one holds it, the other cannot acquire it
/// (non-blocking attempt refused, blocking lock waits) until the holder unlocks; the
/// second holder's fencing token supersedes the first one's on a protected key; and a lock
/// whose lease expires passes to the waiting client without any unlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_lock_between_two_clients() {
    let broker = TestBroker::local().await;
    leased_lock_between(&broker, &broker).await;
}

/// [`leased_lock_between_two_clients`] with client a connected to `broker_a` and b to
/// `broker_b` (two nodes of a cluster: `cluster_statestore_sdk`).
pub(crate) async fn leased_lock_between(broker_a: &TestBroker, broker_b: &TestBroker) {
    let a = Sdk::connect(broker_a, "sdk-lock-a").await;
    let b = Sdk::connect(broker_b, "sdk-lock-b").await;
    let lock_name = unique("lock").into_bytes();
    let resource = unique("protected").into_bytes();

    let lock_a = lock::Client::new(
        a.store.clone(),
        lock_name.clone(),
        a.id.clone().into_bytes(),
    )
    .expect("lock client a");
    let lock_b = lock::Client::new(
        b.store.clone(),
        lock_name.clone(),
        b.id.clone().into_bytes(),
    )
    .expect("lock client b");
    let lease_b = lease::Client::new(
        b.store.clone(),
        lock_name.clone(),
        b.id.clone().into_bytes(),
    )
    .expect("lease client b");

    let token_a = within(
        "a: lock",
        lock_a.lock(Duration::from_secs(10), REQUEST, None),
    )
    .await
    .expect("a takes the free lock");
    assert_eq!(
        within("holder", lease_b.get_holder(REQUEST))
            .await
            .expect("get holder"),
        Some(a.id.clone().into_bytes()),
        "the lock names its holder"
    );

    // b cannot acquire it while a holds it.
    let e = within(
        "b: acquire",
        lease_b.acquire(Duration::from_secs(10), REQUEST, None),
    )
    .await
    .expect_err("b acquires a held lock");
    assert!(
        matches!(e.kind(), leased_lock::ErrorKind::LeaseAlreadyHeld),
        "b's attempt: {e:?}"
    );
    let waiting_b = tokio::spawn({
        let lock_b = lock_b.clone();
        async move {
            let started = Instant::now();
            let token = lock_b.lock(Duration::from_secs(10), REQUEST, None).await;
            (token, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting_b.is_finished(),
        "b's lock() returned while a held the lock"
    );

    let r = a
        .set(
            &resource,
            b"by a",
            Some(token_a.clone()),
            SetOptions::default(),
        )
        .await
        .expect("a writes under its token");
    assert!(r.response);

    within("a: unlock", lock_a.unlock(REQUEST))
        .await
        .expect("a unlocks");
    let (token_b, waited) = within("b: lock after a's unlock", waiting_b)
        .await
        .expect("b's task");
    let token_b = token_b.expect("b takes the lock a released");
    assert!(waited >= Duration::from_millis(700), "b waited {waited:?}");
    assert_newer(&token_b, &token_a, "b's fencing token");

    // b's token supersedes a's on the protected key.
    let r = b
        .set(
            &resource,
            b"by b",
            Some(token_b.clone()),
            SetOptions::default(),
        )
        .await
        .expect("b writes under its token");
    assert!(r.response);
    let e = a
        .set(
            &resource,
            b"late a",
            Some(token_a.clone()),
            SetOptions::default(),
        )
        .await
        .expect_err("a writes with its old token");
    assert!(
        matches!(service_error(&e), ServiceError::FencingTokenLowerVersion),
        "a's stale write: {e:?}"
    );
    assert_eq!(
        a.get(&resource).await.response.as_deref(),
        Some(&b"by b"[..])
    );

    // Expiry: b holds a 1.5 s lease and never unlocks; a's lock() gets it when it expires.
    within("b: unlock", lock_b.unlock(REQUEST))
        .await
        .expect("b unlocks");
    within(
        "b: short lock",
        lock_b.lock(Duration::from_millis(1500), REQUEST, None),
    )
    .await
    .expect("b takes a short lease");
    let started = Instant::now();
    let token_a2 = within(
        "a: lock after b's lease expires",
        lock_a.lock(Duration::from_secs(10), REQUEST, None),
    )
    .await
    .expect("a takes the lock when b's lease expires");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "a got b's lock after {waited:?}, before b's 1.5 s lease expired"
    );
    assert_newer(&token_a2, &token_b, "a's new fencing token");
    assert_eq!(
        within("holder", lease_b.get_holder(REQUEST))
            .await
            .expect("get holder"),
        Some(a.id.clone().into_bytes())
    );
    within("a: unlock", lock_a.unlock(REQUEST))
        .await
        .expect("a unlocks");
    assert_eq!(
        within("holder", lease_b.get_holder(REQUEST))
            .await
            .expect("get holder"),
        None,
        "nobody holds the unlocked lock"
    );

    a.close().await;
    b.close().await;
}

/// SCAN through the SDK's `list_keys` pager: every key matching the glob, over more than
/// one page, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_pages_through_matching_keys() {
    use gatehouse::statestore::store::SCAN_PAGE_SIZE;

    let broker = TestBroker::local().await;
    let c = Sdk::connect(&broker, "sdk-scan").await;
    let prefix = unique("scan");
    let count = SCAN_PAGE_SIZE + 20;

    let mut expected = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}/k{i:04}");
        c.set_ok(key.as_bytes(), b"v", SetOptions::default()).await;
        expected.push(key.into_bytes());
    }
    // Near misses the pattern must not return.
    for other in [
        prefix.clone(),
        format!("{prefix}-x/k0001"),
        format!("x{prefix}/k0001"),
    ] {
        c.set_ok(other.as_bytes(), b"v", SetOptions::default())
            .await;
    }
    // A deleted key is not listed.
    let gone = format!("{prefix}/gone");
    c.set_ok(gone.as_bytes(), b"v", SetOptions::default()).await;
    assert_eq!(c.del(gone.as_bytes(), None).await.expect("DEL").response, 1);

    let mut pager = c
        .store
        .list_keys(format!("{prefix}/k*").into_bytes(), REQUEST)
        .expect("pager");
    let mut listed = Vec::new();
    let mut pages = 0;
    while let Some(page) = within("SCAN page", pager.next())
        .await
        .unwrap_or_else(|e| panic!("SCAN page {pages}: {e:?}"))
    {
        pages += 1;
        assert!(pages <= 64, "the pager never ends");
        listed.extend(page);
    }
    listed.sort();
    assert_eq!(listed.len(), count, "keys listed");
    assert_eq!(listed, expected);
    assert!(pages >= 2, "{count} keys came in {pages} page(s)");

    // `?` and a character class; a pattern matching nothing is one empty final page.
    let mut pager = c
        .store
        .list_keys(format!("{prefix}/k000[1-3]").into_bytes(), REQUEST)
        .expect("pager");
    let mut listed = Vec::new();
    while let Some(page) = within("SCAN page", pager.next()).await.expect("SCAN") {
        listed.extend(page);
    }
    listed.sort();
    let want: Vec<Vec<u8>> = (1..=3)
        .map(|i| format!("{prefix}/k000{i}").into_bytes())
        .collect();
    assert_eq!(listed, want);

    let mut pager = c
        .store
        .list_keys(format!("{prefix}/nothing?").into_bytes(), REQUEST)
        .expect("pager");
    let mut listed = Vec::new();
    while let Some(page) = within("SCAN page", pager.next()).await.expect("SCAN") {
        listed.extend(page);
    }
    assert!(listed.is_empty(), "no key matches: {listed:?}");

    c.close().await;
}

#[path = "statestore_sdk_conformance.rs"]
mod conformance;
