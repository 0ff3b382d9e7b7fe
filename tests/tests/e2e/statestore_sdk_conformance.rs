//! Issue 18, items 1 and 2, judged by the official AIO Rust SDK over real sockets: SCAN
//! pattern semantics (`[!...]` negates, `^` is an ordinary member of a class, as the SDK's
//! `state_store_scan_patterns_network_tests` expects) and deterministic fencing tokens (a
//! renewal's version has counter 0 whether or not the request reaches the broker in the
//! millisecond it was stamped, which `lease_single_holder_acquires_a_lease_with_auto_renewal`
//! relies on).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use azure_iot_operations_mqtt::aio::connection_settings::MqttConnectionSettingsBuilder;
use azure_iot_operations_mqtt::session::{
    Session, SessionError, SessionExitHandle, SessionManagedClient, SessionOptionsBuilder,
};
use azure_iot_operations_protocol::application::ApplicationContextBuilder;
use azure_iot_operations_services::leased_lock::lease;
use azure_iot_operations_services::state_store::{self, SetOptions};
use gatehouse_tests::broker::{unique, TestBroker};
use tokio::task::JoinHandle;

/// What the SDK waits for one reply.
const REQUEST: Duration = Duration::from_secs(5);
/// What a test waits for anything from the network (longer than [`REQUEST`]).
const BOUND: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {BOUND:?}"),
    }
}

/// One SDK state store client on its own MQTT session.
struct Sdk {
    id: String,
    store: Arc<state_store::Client>,
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
            exit,
            session,
        }
    }

    async fn set_ok(&self, key: &str) {
        let r = within(
            &format!("SET {key}"),
            self.store.set(
                key.as_bytes().to_vec(),
                b"v".to_vec(),
                REQUEST,
                None,
                SetOptions::default(),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("SET {key}: {e:?}"));
        assert!(r.response, "SET {key} applied");
    }

    /// Every key SCAN returns for `pattern`, over all pages, sorted.
    async fn scan(&self, pattern: &str) -> Vec<String> {
        let mut pager = self
            .store
            .list_keys(pattern.as_bytes().to_vec(), REQUEST)
            .expect("a non-empty pattern");
        let mut keys = Vec::new();
        for _ in 0..64 {
            match within(&format!("SCAN {pattern}"), pager.next())
                .await
                .unwrap_or_else(|e| panic!("SCAN {pattern}: {e:?}"))
            {
                Some(page) => keys.extend(
                    page.into_iter()
                        .map(|k| String::from_utf8(k).expect("UTF-8 key")),
                ),
                None => {
                    keys.sort();
                    return keys;
                }
            }
        }
        panic!("SCAN {pattern}: the pager did not end");
    }

    async fn close(self) {
        let Sdk {
            id,
            store,
            exit,
            session,
        } = self;
        within(&format!("{id}: state store shutdown"), store.shutdown())
            .await
            .unwrap_or_else(|e| panic!("{id}: state store shutdown: {e:?}"));
        exit.try_exit()
            .unwrap_or_else(|e| panic!("{id}: session exit: {e:?}"));
        let _ = within(&format!("{id}: session end"), session).await;
    }
}

/// The SDK's pattern cases: `[^0-9]` is a digit or a literal `^` (it failed every time
/// with globset's negating `^`), `[!0-9]` negates, `[*]` and `\*` are a literal star.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_patterns_follow_the_sdk_glob_semantics() {
    let broker = TestBroker::local().await;
    let sdk = Sdk::connect(&broker, "sdk-scanpat").await;
    let p = unique("pat");
    let suffixes = ["", "a", "b", "c", "1", "2", "ab", "abc", ".x", "*lit", "^"];
    for s in suffixes {
        sdk.set_ok(&format!("{p}{s}")).await;
    }
    let keys = |v: &[&str]| {
        let mut k: Vec<String> = v.iter().map(|s| format!("{p}{s}")).collect();
        k.sort();
        k
    };
    for (suffix, expected) in [
        ("*", &suffixes[..]),
        ("?", &["a", "b", "c", "1", "2", "^"][..]),
        ("??", &["ab", ".x"][..]),
        ("[ab]", &["a", "b"][..]),
        ("[0-9]", &["1", "2"][..]),
        ("[!0-9]", &["a", "b", "c", "^"][..]),
        ("[^0-9]", &["1", "2", "^"][..]),
        ("[^]", &["^"][..]),
        ("*c", &["c", "abc"][..]),
        ("[*]lit", &["*lit"][..]),
        ("\\*lit", &["*lit"][..]),
        ("nomatch*", &[][..]),
    ] {
        assert_eq!(
            sdk.scan(&format!("{p}{suffix}")).await,
            keys(expected),
            "pattern {p}{suffix}"
        );
    }
    sdk.close().await;
}

/// Renewals of a lease by its holder (SET NEX through the SDK's lease client) get fencing
/// tokens whose counter is always 0: before the fix about half of them, those reaching
/// the broker in the millisecond the SDK stamped them, got counter 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_renewal_fencing_tokens_have_a_deterministic_counter() {
    let broker = TestBroker::local().await;
    let sdk = Sdk::connect(&broker, "sdk-hlc").await;
    let lease = lease::Client::new(
        sdk.store.clone(),
        unique("lease").into_bytes(),
        sdk.id.clone().into_bytes(),
    )
    .expect("lease client");
    let mut previous = None;
    let mut counters = Vec::new();
    for _ in 0..40 {
        let token = within(
            "acquire",
            lease.acquire(Duration::from_secs(10), REQUEST, None),
        )
        .await
        .expect("the holder renews its own lease");
        if let Some(previous) = &previous {
            assert!(
                (token.timestamp, token.counter) > *previous,
                "each renewal gets a newer token"
            );
        }
        previous = Some((token.timestamp, token.counter));
        counters.push(token.counter);
        // Past the millisecond of the last version, as a renewal period would be.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert!(
        counters.iter().all(|&c| c == 0),
        "fencing token counters: {counters:?}"
    );
    sdk.close().await;
}
