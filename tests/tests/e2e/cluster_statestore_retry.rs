//! Cluster mode (issue 15): the state store when JetStream fails under the nodes.
//!
//! - While a node knows JetStream has no quorum (the retained bucket's probe, the same
//!   knowledge that refuses retained PUBLISHes), a GET/SET/DEL/VDEL is answered `__stat`
//!   503 at once, not after the 5 s a request may wait.
//! - When the NATS server leading the state store's bucket dies, the requests in flight
//!   survive the election: each attempt is bounded well under the 5 s budget, and a write
//!   whose acknowledgement was lost is checked on the new leader before it is tried again,
//!   so `SET NX` of a fresh key is answered `+OK`, never 503 nor "not applied".
//!
//! Three real `nats-server` processes (`gatehouse_tests::nats`), Gatehouse nodes in the
//! test's process, node `i` a client of NATS server `i`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_protocol::Packet;
use gatehouse_tests::raw::pid;
use gatehouse_tests::state_store::{ts_now, StateStoreClient};
use tokio::time::Instant;

use super::cluster::Nodes;
use super::cluster_support::{disconnect_grace, resp, retained_puback};

/// The state store's bucket's stream.
const STREAM: &str = "KV_gatehouse-statestore";

/// What a request was answered, and how long it took.
#[derive(Debug, Clone)]
struct Answer {
    text: String,
    stat: Option<String>,
    message: Option<String>,
    took: Duration,
}

/// A request with `__ts` = now through `c`, waiting up to 15 s for its answer (the
/// client library's own wait is shorter than the 5 s a request may take here).
async fn call(c: &mut StateStoreClient, payload: &[u8]) -> Answer {
    let start = Instant::now();
    let ts = ts_now();
    let (id, correlation) = c.send(payload, &[("__ts", ts.as_str())]).await;
    loop {
        let packet = c
            .raw
            .recv(Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("no answer within 15 s"));
        match packet {
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    c.raw.puback(id).await;
                }
                if p.properties.correlation_data.as_deref() != Some(&correlation[..]) {
                    continue; // a notification
                }
                let prop = |name: &str| {
                    p.properties
                        .user_properties
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                return Answer {
                    text: String::from_utf8_lossy(&p.payload).into_owned(),
                    stat: prop("__stat"),
                    message: prop("__stMsg"),
                    took: start.elapsed(),
                };
            }
            Packet::PubAck(a) if a.packet_id == pid(id) => {}
            other => panic!("unexpected packet while waiting for an answer: {other:?}"),
        }
    }
}

/// Two NATS servers of three killed: once the node knows (a retained PUBLISH is refused
/// with 0x80 after `disconnectGrace`), GET, SET, DEL and VDEL are each answered `__stat`
/// 503 with a message naming the lost quorum, at once rather than after the 5 s a request
/// may wait for JetStream. When the servers are back, SET works again. Fails on the code
/// before the fail-fast check: each request took 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_requests_are_refused_at_once() {
    let Some(mut nodes) = Nodes::start_with(
        "requests_refused_at_once",
        1,
        disconnect_grace(Duration::from_secs(2)),
    )
    .await
    else {
        return;
    };
    let mut ss = nodes.state_store(1, "ff-ss").await;
    let mut publisher = nodes.client(1, "ff-pub").await;
    let ok = call(&mut ss, &resp(&[b"SET", b"ff", b"v"])).await;
    assert_eq!(ok.text, "+OK\r\n");

    let killed = Instant::now();
    nodes.nats.kill(1);
    nodes.nats.kill(2);
    let mut id = 100;
    let known_after = loop {
        id += 1;
        let code = retained_puback(&mut publisher, "ff/retained", b"r", id).await;
        if code == 0x80 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "retained PUBLISHes still acknowledged 20 s after quorum was lost"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut took = Vec::new();
    for (name, command) in [
        ("GET", resp(&[b"GET", b"ff"])),
        ("SET", resp(&[b"SET", b"ff", b"w"])),
        ("DEL", resp(&[b"DEL", b"ff"])),
        ("VDEL", resp(&[b"VDEL", b"ff", b"v"])),
    ] {
        let answer = call(&mut ss, &command).await;
        let elapsed = answer.took;
        assert_eq!(
            answer.stat.as_deref(),
            Some("503"),
            "{name} without quorum: {answer:?}"
        );
        assert!(answer.text.is_empty(), "{name}: {answer:?}");
        let message = answer.message.clone().unwrap_or_default();
        assert!(
            message.contains("quorum"),
            "{name}: __stMsg names the lost quorum: {message:?}"
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "{name} answered 503 after {elapsed:?}, not at once"
        );
        took.push((name, elapsed));
    }
    println!("quorum lost: known {known_after:?} after the kill; 503 answers took {took:?}");

    let restarted = Instant::now();
    nodes.nats.restart(1);
    nodes.nats.restart(2);
    loop {
        let answer = call(&mut ss, &resp(&[b"SET", b"ff", b"back"])).await;
        if answer.text == "+OK\r\n" {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "SET still refused 30 s after the servers came back: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "quorum back: SET +OK {:?} after the restart",
        restarted.elapsed()
    );
}

/// `kill -9` of the NATS server leading the state store's bucket while `SET NX` of fresh
/// keys goes on: a client on each node writing one key after the other, and 30 more
/// clients (10 per node) each sending one `SET NX` at its own moment, every 250 ms from
/// the kill on, so that requests start all through the election. nats-server's Raft
/// followers wait 4-9 s for a lost leader before they elect another, so a request may
/// outlast its 5 s budget; then it is answered `__stat` 503. Asserted:
///
/// - no `SET NX` is answered `:-1` "not applied" (nobody else writes these keys: a write
///   whose acknowledgement was lost in the election is found stored, not decided again);
/// - every answer is `+OK` except a 503 of a request started more than 3 s (the budget
///   less one attempt and a margin) before the new leader was seen: a request whose
///   budget covers the election's end is answered `+OK` after it;
/// - every key answered `+OK` reads back from another node.
///
/// Fails on the code before the per-attempt timeout: a request sent while the bucket had
/// no leader waited for that one answer for its whole 5 s, so the requests started in
/// the 3 s before the election's end got 503 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_nx_of_fresh_keys_survives_the_bucket_leaders_election() {
    // A grace longer than an election, so that the retained bucket's election (the same
    // server may lead it) does not mark JetStream lost, which refuses requests at once.
    let Some(mut nodes) = Nodes::start_with(
        "set_nx_survives_leader_death",
        3,
        disconnect_grace(Duration::from_secs(15)),
    )
    .await
    else {
        return;
    };
    let mut steady = Vec::new();
    for n in 1..=3 {
        let mut c = nodes.state_store(n, &format!("rt-{n}")).await;
        let warm = call(
            &mut c,
            &resp(&[b"SET", format!("rt/{n}/warm").as_bytes(), b"v"]),
        )
        .await;
        assert_eq!(warm.text, "+OK\r\n", "{warm:?}");
        steady.push(c);
    }
    let mut late = Vec::new();
    for j in 0..30 {
        late.push(nodes.state_store(j % 3 + 1, &format!("rt-late-{j}")).await);
    }
    let start = Instant::now();
    let victim = loop {
        if let Some(l) = nodes.nats.stream_leader(STREAM).await {
            break l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{STREAM} has no leader"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let kill_at = Instant::now() + Duration::from_secs(1);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, mut c) in steady.into_iter().enumerate() {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("rt/{}/{k}", i + 1);
                let at = Instant::now();
                let a = call(&mut c, &resp(&[b"SET", key.as_bytes(), b"v", b"NX"])).await;
                answers.push((key, at, a, i + 1));
                k += 1;
            }
            answers
        }));
    }
    for (j, mut c) in late.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(kill_at + Duration::from_millis(250) * j as u32).await;
            let key = format!("rt/late/{j}");
            let at = Instant::now();
            let a = call(&mut c, &resp(&[b"SET", key.as_bytes(), b"v", b"NX"])).await;
            vec![(key, at, a, j % 3 + 1)]
        }));
    }
    tokio::time::sleep_until(kill_at).await;
    nodes.nats.kill(victim);
    let elected = loop {
        if let Some(l) = nodes.nats.stream_leader(STREAM).await {
            if l != victim {
                break kill_at.elapsed();
            }
        }
        assert!(
            kill_at.elapsed() < Duration::from_secs(30),
            "{STREAM} has no new leader 30 s after its leader was killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep_until(
        kill_at + (elected + Duration::from_secs(3)).max(Duration::from_secs(9)),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a writer"));
    }

    // Start relative to the kill (negative: before it), in ms, for the report.
    let since_kill = |at: Instant| -> i128 {
        if at >= kill_at {
            at.duration_since(kill_at).as_millis() as i128
        } else {
            -(kill_at.duration_since(at).as_millis() as i128)
        }
    };
    let refused: Vec<_> = all
        .iter()
        .filter(|(_, _, a, _)| a.stat.as_deref() == Some("503"))
        .map(|(key, at, a, _)| (key.as_str(), since_kill(*at), a.took.as_millis()))
        .collect();
    let survived: Vec<_> = all
        .iter()
        .filter(|(_, at, a, _)| {
            a.text == "+OK\r\n" && *at < kill_at + elected && *at + a.took > kill_at + elected
        })
        .map(|(key, at, a, _)| (key.as_str(), since_kill(*at), a.took.as_millis()))
        .collect();
    println!(
        "killed NATS server {victim} (the bucket's leader); new leader seen {elected:?} after; \
         {} SET NX answered; 503 (key, ms from the kill, took ms): {refused:?}; +OK across \
         the election's end: {survived:?}",
        all.len()
    );
    for (key, at, a, _) in &all {
        let from_kill = since_kill(*at);
        assert_ne!(
            a.text, ":-1\r\n",
            "SET NX {key} ({from_kill} ms from the kill) said not applied"
        );
        if a.stat.as_deref() == Some("503") {
            assert!(
                *at + Duration::from_secs(3) < kill_at + elected,
                "SET NX {key} started {from_kill} ms from the kill, the new leader seen {elected:?} \
                 after it: its budget covered the election's end, yet {a:?}"
            );
        } else {
            assert_eq!(
                a.text, "+OK\r\n",
                "SET NX {key} ({from_kill} ms from the kill): {a:?}"
            );
        }
    }
    // Stored: every key answered +OK reads back from another node.
    let mut readers = Vec::new();
    for n in 1..=3 {
        readers.push(nodes.state_store(n, &format!("rt-read-{n}")).await);
    }
    for (key, _, a, n) in &all {
        if a.text != "+OK\r\n" {
            continue;
        }
        let got = call(&mut readers[*n % 3], &resp(&[b"GET", key.as_bytes()])).await;
        assert_eq!(got.text, "$1\r\nv\r\n", "GET {key}: {got:?}");
    }
}
