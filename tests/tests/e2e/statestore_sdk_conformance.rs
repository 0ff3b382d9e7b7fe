//! Issue 18, items 1 and 2, judged by the official AIO Rust SDK over real sockets: SCAN
//! pattern semantics (`[!...]` negates, `^` is an ordinary member of a class, as the SDK's
//! `state_store_scan_patterns_network_tests` expects) and deterministic fencing tokens (a
//! renewal's version has counter 0 whether or not the request reaches the broker in the
//! millisecond it was stamped, which `lease_single_holder_acquires_a_lease_with_auto_renewal`
//! relies on).
//!
//! A child of `statestore_sdk`: it uses that module's SDK client (`Sdk`).

use std::time::Duration;

use azure_iot_operations_services::leased_lock::lease;
use azure_iot_operations_services::state_store::SetOptions;
use gatehouse_tests::broker::{unique, TestBroker};

use super::{within, Sdk, REQUEST};

/// Every key SCAN returns for `pattern`, over all pages, sorted.
async fn scan(sdk: &Sdk, pattern: &str) -> Vec<String> {
    let mut pager = sdk
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

/// The SDK's pattern cases: `[^0-9]` is a digit or a literal `^` (it failed every time
/// with globset's negating `^`), `[!0-9]` negates, `[*]` and `\*` are a literal star.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_patterns_follow_the_sdk_glob_semantics() {
    let broker = TestBroker::local().await;
    let sdk = Sdk::connect(&broker, "sdk-scanpat").await;
    let p = unique("pat");
    let suffixes = ["", "a", "b", "c", "1", "2", "ab", "abc", ".x", "*lit", "^"];
    for s in suffixes {
        sdk.set_ok(format!("{p}{s}").as_bytes(), b"v", SetOptions::default())
            .await;
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
            scan(&sdk, &format!("{p}{suffix}")).await,
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
