//! Cluster mode (issue 15): the state store's keys are shared by every node (a JetStream
//! key-value bucket, written by compare-and-set), and KEYNOTIFY crosses nodes. Three
//! Gatehouse nodes on a real three-server NATS cluster; raw MQTT v5 state store clients
//! (`gatehouse_tests::state_store`), one per node.
//!
//! The nodes run in the test's process, on its runtime.

use std::time::Duration;

use gatehouse_tests::state_store::{hlc, now_ms};

use super::cluster::Nodes;
use super::cluster_support::resp;

/// A SET through node 1 is what a GET through node 2 reads (value and version), a DEL
/// through node 3 removes it for node 1, and a node reads its own write at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_set_on_one_node_is_read_and_deleted_on_the_others() {
    let Some(nodes) = Nodes::start_or_skip("a_key_set_on_one_node_is_read").await else {
        return;
    };
    let mut c1 = nodes.state_store(1, "ss-n1").await;
    let mut c2 = nodes.state_store(2, "ss-n2").await;
    let mut c3 = nodes.state_store(3, "ss-n3").await;
    let set = c1.call(&resp(&[b"SET", b"shared", b"v1"]), &[]).await;
    assert_eq!(set.text(), "+OK\r\n");
    let version = set
        .prop("__ts")
        .expect("SET answers with the version")
        .to_owned();
    let own = c1.call(&resp(&[b"GET", b"shared"]), &[]).await;
    assert_eq!(own.text(), "$2\r\nv1\r\n", "node 1 reads its own write");
    let get = c2.call(&resp(&[b"GET", b"shared"]), &[]).await;
    assert_eq!(get.text(), "$2\r\nv1\r\n", "node 2 reads node 1's SET");
    assert_eq!(get.prop("__ts"), Some(version.as_str()), "with its version");
    let del = c3.call(&resp(&[b"DEL", b"shared"]), &[]).await;
    assert_eq!(del.text(), ":1\r\n", "node 3 deletes node 1's key");
    let gone = c1.call(&resp(&[b"GET", b"shared"]), &[]).await;
    assert_eq!(gone.text(), "$-1\r\n", "node 1 sees node 3's DEL");
    let again = c2.call(&resp(&[b"DEL", b"shared"]), &[]).await;
    assert_eq!(again.text(), ":0\r\n");
    // VDEL decides on the shared value too.
    c2.call(&resp(&[b"SET", b"shared", b"v2"]), &[]).await;
    let wrong = c3.call(&resp(&[b"VDEL", b"shared", b"v1"]), &[]).await;
    assert_eq!(wrong.text(), ":-1\r\n");
    let right = c1.call(&resp(&[b"VDEL", b"shared", b"v2"]), &[]).await;
    assert_eq!(right.text(), ":1\r\n");
}

/// SET NX for one key sent at the same moment through node 1 and node 2: exactly one is
/// applied, the other gets `:-1`, and every node reads the winner's value. Repeated for
/// several keys so the two requests really race.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_nx_racing_on_two_nodes_succeeds_exactly_once() {
    let Some(nodes) = Nodes::start_or_skip("set_nx_racing_on_two_nodes").await else {
        return;
    };
    let mut c1 = nodes.state_store(1, "nx-n1").await;
    let mut c2 = nodes.state_store(2, "nx-n2").await;
    let mut c3 = nodes.state_store(3, "nx-n3").await;
    for i in 0..10 {
        let key = format!("nx-{i}");
        let ts = hlc(now_ms(), 0, "test-client");
        let props = [("__ts", ts.as_str())];
        let (id1, corr1) = c1
            .send(&resp(&[b"SET", key.as_bytes(), b"one", b"NX"]), &props)
            .await;
        let (id2, corr2) = c2
            .send(&resp(&[b"SET", key.as_bytes(), b"two", b"NX"]), &props)
            .await;
        let (r1, r2) = tokio::join!(
            c1.await_response(id1, &corr1),
            c2.await_response(id2, &corr2)
        );
        let mut answers = [r1.text(), r2.text()];
        answers.sort();
        assert_eq!(
            answers,
            ["+OK\r\n".to_owned(), ":-1\r\n".to_owned()],
            "{key}: exactly one NX applied ({:?} / {:?})",
            r1.user_properties,
            r2.user_properties
        );
        let winner = if r1.text() == "+OK\r\n" { "one" } else { "two" };
        let get = c3.call(&resp(&[b"GET", key.as_bytes()]), &[]).await;
        assert_eq!(get.text(), format!("$3\r\n{winner}\r\n"), "{key}");
    }
}

/// Fencing across nodes: node 2 writes with an old token, node 1 with a newer one; node
/// 2's next SET with the old token is refused (decided on the shared token), with the
/// newer one applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_fencing_token_is_refused_after_another_node_wrote_a_newer_one() {
    let Some(nodes) = Nodes::start_or_skip("older_fencing_token_refused").await else {
        return;
    };
    let mut c1 = nodes.state_store(1, "ft-n1").await;
    let mut c2 = nodes.state_store(2, "ft-n2").await;
    let now = now_ms();
    let old = hlc(now - 10_000, 0, "holder-a");
    let new = hlc(now - 5_000, 0, "holder-b");
    let first = c2
        .call(&resp(&[b"SET", b"fenced", b"a"]), &[("__ft", old.as_str())])
        .await;
    assert_eq!(first.text(), "+OK\r\n");
    let newer = c1
        .call(&resp(&[b"SET", b"fenced", b"b"]), &[("__ft", new.as_str())])
        .await;
    assert_eq!(newer.text(), "+OK\r\n");
    let stale = c2
        .call(
            &resp(&[b"SET", b"fenced", b"stale"]),
            &[("__ft", old.as_str())],
        )
        .await;
    assert_eq!(
        stale.text(),
        "-ERR the request fencing token is a lower version than the fencing token protecting the resource\r\n"
    );
    let missing = c2.call(&resp(&[b"DEL", b"fenced"]), &[]).await;
    assert_eq!(
        missing.text(),
        "-ERR a fencing token is required for this request\r\n"
    );
    let get = c2.call(&resp(&[b"GET", b"fenced"]), &[]).await;
    assert_eq!(get.text(), "$1\r\nb\r\n", "the stale SET changed nothing");
    let current = c2
        .call(&resp(&[b"SET", b"fenced", b"c"]), &[("__ft", new.as_str())])
        .await;
    assert_eq!(current.text(), "+OK\r\n");
}

/// KEYNOTIFY on node 3 fires once for a SET through node 1 (with the value and the SET's
/// version) and once for a DEL through node 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keynotify_on_one_node_fires_for_changes_made_on_the_others() {
    let Some(nodes) = Nodes::start_or_skip("keynotify_across_nodes").await else {
        return;
    };
    let mut c1 = nodes.state_store(1, "kn-n1").await;
    let mut c2 = nodes.state_store(2, "kn-n2").await;
    let mut c3 = nodes.state_store(3, "kn-n3").await;
    let reg = c3.call(&resp(&[b"KEYNOTIFY", b"watched"]), &[]).await;
    assert_eq!(reg.text(), "+OK\r\n");
    let set = c1.call(&resp(&[b"SET", b"watched", b"abc"]), &[]).await;
    assert_eq!(set.text(), "+OK\r\n");
    let n = c3.notification().await;
    assert_eq!(
        &n.payload[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n"
    );
    assert_eq!(n.prop("__ts"), set.prop("__ts"));
    let del = c2.call(&resp(&[b"DEL", b"watched"]), &[]).await;
    assert_eq!(del.text(), ":1\r\n");
    let n = c3.notification().await;
    assert_eq!(&n.payload[..], b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n");
    assert_eq!(n.prop("__ts"), del.prop("__ts"));
    c3.no_notification(Duration::from_secs(1)).await;
    // A key nobody watches notifies nobody.
    c1.call(&resp(&[b"SET", b"unwatched", b"x"]), &[]).await;
    c3.no_notification(Duration::from_millis(500)).await;
}

/// PX in cluster mode: a key set through node 1 with a short expiry is gone for node 3
/// after it, and a watcher on node 2 gets one DELETE when it expires, though nobody
/// touched the key (some node's active expiry deleted it from the bucket).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expiring_key_expires_on_every_node_with_one_notification() {
    let Some(nodes) = Nodes::start_or_skip("expiring_key_across_nodes").await else {
        return;
    };
    let mut c1 = nodes.state_store(1, "px-n1").await;
    let mut c2 = nodes.state_store(2, "px-n2").await;
    let mut c3 = nodes.state_store(3, "px-n3").await;
    c2.call(&resp(&[b"KEYNOTIFY", b"short"]), &[]).await;
    let set = c1
        .call(&resp(&[b"SET", b"short", b"v", b"PX", b"2000"]), &[])
        .await;
    assert_eq!(set.text(), "+OK\r\n");
    let live = c3.call(&resp(&[b"GET", b"short"]), &[]).await;
    assert_eq!(live.text(), "$1\r\nv\r\n");
    let n = c2.notification().await;
    assert!(n.text().contains("SET"), "{}", n.text());
    let n = c2
        .notification_within(Duration::from_secs(10))
        .await
        .expect("a DELETE notification when the key expires");
    assert_eq!(&n.payload[..], b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n");
    c2.no_notification(Duration::from_secs(1)).await;
    let gone = c3.call(&resp(&[b"GET", b"short"]), &[]).await;
    assert_eq!(gone.text(), "$-1\r\n");
}
