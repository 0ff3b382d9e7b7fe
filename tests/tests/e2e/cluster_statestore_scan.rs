//! Cluster mode (issue 15): SCAN of the state store lists the keys of the whole cluster
//! (the JetStream bucket's live keys, as each node's watch knows them), with the single
//! node's pages, continuation tokens, pattern matching and expiry. Three Gatehouse nodes
//! on a real three-server NATS cluster; raw MQTT v5 state store clients.

use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse_tests::state_store::StateStoreClient;
use tokio::time::Instant;

use super::cluster::Nodes;
use super::cluster_support::resp;

/// The keys and the continuation token of a SCAN page
/// (`*1\r\n*N\r\n$..keys..` or `*2\r\n*N\r\n$..keys..$..token..`).
fn page(payload: &[u8]) -> (Vec<String>, Option<Vec<u8>>) {
    let text = payload.to_vec();
    let mut pos = 0;
    let mut line = || {
        let end = text[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("not a SCAN page: {:?}", String::from_utf8_lossy(&text)))
            + pos;
        let l = text[pos..end].to_vec();
        pos = end + 2;
        l
    };
    let outer = line();
    assert!(
        outer == b"*1" || outer == b"*2",
        "not a SCAN page: {outer:?}"
    );
    let count: usize = std::str::from_utf8(&line()[1..])
        .expect("a count")
        .parse()
        .expect("a count");
    let mut keys = Vec::new();
    for _ in 0..count {
        line();
        keys.push(String::from_utf8(line()).expect("UTF-8 keys"));
    }
    let token = (outer == b"*2").then(|| {
        line();
        line()
    });
    (keys, token)
}

/// Every key SCAN `pattern` lists through `c`, page after page; and the page sizes.
async fn scan_all(c: &mut StateStoreClient, pattern: &str) -> (Vec<String>, Vec<usize>) {
    let mut keys = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<Vec<u8>> = None;
    loop {
        let request = match &token {
            None => resp(&[b"SCAN", pattern.as_bytes()]),
            Some(t) => resp(&[b"SCAN", pattern.as_bytes(), t]),
        };
        let answer = c.call(&request, &[]).await;
        assert_eq!(answer.prop("__stat"), Some("200"), "{answer:?}");
        let (found, next) = page(&answer.payload);
        sizes.push(found.len());
        keys.extend(found);
        match next {
            Some(t) => token = Some(t),
            None => return (keys, sizes),
        }
        assert!(sizes.len() < 20, "SCAN does not end");
    }
}

/// Keys written through node 1 and node 2 are listed by SCAN through node 3, in byte
/// order, in pages of 100 with a continuation token, the pattern applied (a key outside
/// it is not listed), an expired key left out; a node lists its own acknowledged write
/// at once, and a DEL through node 1 removes the key from node 3's list. Fails on the
/// code before: SCAN in cluster mode listed the node's own (empty) store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scan_lists_the_keys_written_on_every_node_with_pages() {
    let Some(nodes) = Nodes::start_or_skip("scan_lists_the_keys_written_on_every_node").await
    else {
        return;
    };
    let mut c1 = nodes.state_store(1, "scan-n1").await;
    let mut c2 = nodes.state_store(2, "scan-n2").await;
    let mut c3 = nodes.state_store(3, "scan-n3").await;
    let mut expected = BTreeSet::new();
    for i in 0..70 {
        for (c, node) in [(&mut c1, "one"), (&mut c2, "two")] {
            let key = format!("scan/{node}/{i:03}");
            let set = c.call(&resp(&[b"SET", key.as_bytes(), b"v"]), &[]).await;
            assert_eq!(set.text(), "+OK\r\n");
            expected.insert(key);
        }
    }
    let outside = c1.call(&resp(&[b"SET", b"other/x", b"v"]), &[]).await;
    assert_eq!(outside.text(), "+OK\r\n");
    let expiring = c2
        .call(&resp(&[b"SET", b"scan/expiring", b"v", b"PX", b"300"]), &[])
        .await;
    assert_eq!(expiring.text(), "+OK\r\n");

    // A node lists its own acknowledged write at once.
    let mine = c1.call(&resp(&[b"SET", b"scan/mine", b"v"]), &[]).await;
    assert_eq!(mine.text(), "+OK\r\n");
    let (own, _) = scan_all(&mut c1, "scan/mine").await;
    assert_eq!(own, ["scan/mine"], "node 1 lists its own write at once");
    expected.insert("scan/mine".to_owned());

    // Node 3 lists both nodes' keys once its watch has them (milliseconds), the
    // expiring key only until its expiry.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expected: Vec<String> = expected.into_iter().collect();
    let start = Instant::now();
    let (listed, sizes) = loop {
        let (listed, sizes) = scan_all(&mut c3, "scan/*").await;
        if listed == expected {
            break (listed, sizes);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "node 3 lists {} keys, expected {}: first {:?}",
            listed.len(),
            expected.len(),
            listed.first()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sizes, [100, 41], "pages of 100: {sizes:?}");
    assert!(!listed
        .iter()
        .any(|k| k == "other/x" || k == "scan/expiring"));
    println!(
        "node 3 listed {} keys of nodes 1 and 2 in pages {sizes:?}, {:?} after the first try",
        listed.len(),
        start.elapsed()
    );

    // A DEL through node 1 removes the key from node 3's list.
    let del = c1.call(&resp(&[b"DEL", b"scan/two/000"]), &[]).await;
    assert_eq!(del.text(), ":1\r\n");
    let start = Instant::now();
    loop {
        let (listed, _) = scan_all(&mut c3, "scan/two/00?").await;
        if listed.len() == 9 && !listed.iter().any(|k| k == "scan/two/000") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "node 3 still lists the deleted key: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A made-up token is refused, as on a single node.
    let forged = c3
        .call(&resp(&[b"SCAN", b"scan/*", b"scan/one/000"]), &[])
        .await;
    assert!(forged.text().starts_with("-ERR"), "{forged:?}");
}
