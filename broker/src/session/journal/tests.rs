//! The journal against a real database file: one body per published message however many
//! persisted sessions it is queued for, bodies released with their last delivery, and
//! restore (the previous format, orphans, references rebuilt).

#![allow(
    clippy::disallowed_methods,
    reason = "tests write their fixtures synchronously"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_config::Persistence;
use gatehouse_protocol::{PacketId, PublishProperties, QoS, ReasonCode};

use super::records::{self, Sent, SessionMeta};
use super::*;
use crate::session::{Next, Owner, QueuePolicy, Session, Stage};
use crate::storage::{Change, Store};

fn settings() -> Persistence {
    serde_norway::from_str("maxSize: 1Gi\nsubscriberQueue: { mode: All }").unwrap()
}

fn open_db(dir: &Path) -> Database {
    Database::open(dir).unwrap_or_else(|e| panic!("{e}"))
}

fn open(db: &Database) -> (Journal, Loaded) {
    match Journal::open(db, &settings()) {
        Ok(Some(opened)) => opened,
        Ok(None) => panic!("persistence is on"),
        Err(e) => panic!("{e}"),
    }
}

fn message(topic: &str, payload: usize) -> Arc<Message> {
    Arc::new(Message {
        topic: topic.into(),
        payload: Bytes::from(vec![0xa5; payload]),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: PublishProperties {
            content_type: Some("application/octet-stream".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        },
        expires_at: Some(Instant::now() + Duration::from_secs(3600)),
        origin: Some(1),
    })
}

fn delivery(m: &Arc<Message>, qos: QoS, ids: &[u32]) -> Delivery {
    Delivery {
        message: m.clone(),
        qos,
        retain: false,
        subscription_ids: ids.iter().copied().collect(),
        seq: None,
    }
}

fn meta() -> SessionMeta {
    SessionMeta {
        expiry_interval: 3600,
        offline_since_ms: 1,
        subscriptions: Vec::new(),
        incoming_qos2: Vec::new(),
        owner: Owner::Anonymous,
    }
}

fn rows(db: &Database, table: storage::Table) -> storage::Rows {
    db.scan(table).unwrap_or_else(|e| panic!("{e}"))
}

/// The number of bodies and of delivery records in the tables.
fn counts(db: &Database) -> (usize, usize) {
    (rows(db, BODIES).len(), rows(db, MESSAGES).len())
}

/// Waits (through checkpoints) until the tables hold `want` (bodies, deliveries).
async fn tables_reach(db: &Database, journal: &Journal, want: (usize, usize)) {
    journal.flush().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while counts(db) != want {
        assert!(
            Instant::now() < deadline,
            "tables hold {:?}, want {want:?}",
            counts(db)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_message_to_many_sessions_is_stored_once_until_its_last_delivery_goes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let (journal, _) = open(&db);
    let m = message("fan/out", 64 * 1024);
    for i in 0..50 {
        let client = format!("sub-{i}");
        journal.put_session(&client, &meta());
        assert!(journal
            .add_message(&client, 0, &delivery(&m, QoS::AtLeastOnce, &[i]))
            .is_some());
    }
    tables_reach(&db, &journal, (1, 50)).await;
    let body = &rows(&db, BODIES)[0].1;
    assert!(body.len() > 64 * 1024);
    for (_, record) in rows(&db, MESSAGES) {
        assert!(
            record.len() < 32,
            "a delivery record of {} bytes",
            record.len()
        );
    }
    // Acknowledgements, one session at a time: the body stays for the others.
    for i in 0..49 {
        journal.remove_message(&format!("sub-{i}"), 0, &delivery(&m, QoS::AtLeastOnce, &[]));
    }
    tables_reach(&db, &journal, (1, 1)).await;
    journal.remove_message("sub-49", 0, &delivery(&m, QoS::AtLeastOnce, &[]));
    tables_reach(&db, &journal, (0, 0)).await;
    assert_eq!(journal.shared.pending.lock().bodies.len(), 0);
}

/// Through the sessions: queued, sent at QoS 2 (its stage recorded), completed, and the
/// sessions ended; every body goes with its last delivery.
#[tokio::test]
async fn sessions_release_their_bodies_when_acknowledged_or_ended() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let (journal, _) = open(&db);
    let policy = QueuePolicy {
        length: 100,
        max_bytes: usize::MAX,
        drop_oldest: false,
    };
    let sessions: Vec<_> = (0..3)
        .map(|i| {
            let s = Arc::new(Session::new(i + 1, format!("s-{i}").into()));
            s.start_journal(&journal, Selected::AllMessages, 3600);
            s
        })
        .collect();
    let (m1, m2) = (message("a", 1000), message("b", 2000));
    for s in &sessions {
        assert!(s
            .enqueue(delivery(&m1, QoS::ExactlyOnce, &[]), &policy)
            .ticket
            .is_some());
        assert!(s
            .enqueue(delivery(&m2, QoS::AtLeastOnce, &[]), &policy)
            .ticket
            .is_some());
    }
    tables_reach(&db, &journal, (2, 6)).await;
    // Session 0 receives m1 at QoS 2: PUBLISH, PUBREC (stage recorded), PUBCOMP.
    let packet_id = {
        let mut st = sessions[0].lock();
        let Next::Publish { packet_id, .. } = st.next_delivery(10, Instant::now()) else {
            panic!("m1 is due");
        };
        let packet_id = packet_id.unwrap();
        st.sent(Some(packet_id));
        st.on_pubrec(packet_id, ReasonCode::SUCCESS);
        packet_id
    };
    journal.flush().await;
    let in_flight = |db: &Database| {
        rows(db, MESSAGES)
            .into_iter()
            .find(|(k, _)| k.starts_with(b"s-0\0"))
            .map(|(_, v)| records::decode_delivery(&v).map(|(_, sent)| sent))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight(&db) != Some(Ok(Sent::InFlight(packet_id, Stage::AwaitPubComp))) {
        assert!(Instant::now() < deadline, "{:?}", in_flight(&db));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sessions[0].lock().on_pubcomp(packet_id);
    tables_reach(&db, &journal, (2, 5)).await;
    // Session 1 ends: its two deliveries go, both bodies stay for session 2.
    let _ = sessions[1].lock().end();
    tables_reach(&db, &journal, (2, 3)).await;
    let _ = sessions[2].lock().end();
    tables_reach(&db, &journal, (1, 1)).await;
    let _ = sessions[0].lock().end();
    tables_reach(&db, &journal, (0, 0)).await;
    assert_eq!(journal.shared.pending.lock().bodies.len(), 0);
}

#[tokio::test]
async fn a_qos2_stage_survives_a_restore_and_the_body_is_shared_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let (journal, _) = open(&db);
    let m = message("q2", 500);
    let id = PacketId::new(9).unwrap();
    for client in ["a", "b"] {
        journal.put_session(client, &meta());
        journal.add_message(client, 4, &delivery(&m, QoS::ExactlyOnce, &[7]));
    }
    journal.update_message(
        "a",
        4,
        &delivery(&m, QoS::ExactlyOnce, &[7]),
        Sent::InFlight(id, Stage::AwaitPubComp),
    );
    tables_reach(&db, &journal, (1, 2)).await;
    let (loaded, bodies) = restore::load(&db).unwrap_or_else(|e| panic!("{e}"));
    let [a, b] = &loaded.sessions[..] else {
        panic!("two sessions");
    };
    let (da, db_) = (&a.messages[0], &b.messages[0]);
    assert_eq!((da.0, da.2), (4, Sent::InFlight(id, Stage::AwaitPubComp)));
    assert_eq!((db_.0, db_.2), (4, Sent::Queued));
    assert!(
        Arc::ptr_eq(&da.1.message, &db_.1.message),
        "one message in memory"
    );
    assert_eq!(&da.1.subscription_ids[..], &[7]);
    assert_eq!(da.1.message.payload, m.payload);
    assert_eq!(da.1.message.qos, QoS::ExactlyOnce);
    let left = da.1.message.expires_at.unwrap() - Instant::now();
    assert!(left > Duration::from_secs(3590), "{left:?}");
    assert_eq!(bodies.id_of(&da.1.message), Some(0));
}

/// A store written by the previous version (every delivery with its message inline, format
/// version 1) restores unchanged, and is rewritten with one body per message.
#[tokio::test]
async fn a_store_of_the_previous_format_restores_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let (m1, m2) = (message("old/one", 3000), message("old/two", 10));
    let id = PacketId::new(77).unwrap();
    let old: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (
            records::message_key("a", 0),
            records::encode_inline(&delivery(&m1, QoS::AtLeastOnce, &[1]), Sent::Queued),
        ),
        (
            records::message_key("a", 1),
            records::encode_inline(
                &delivery(&m2, QoS::ExactlyOnce, &[]),
                Sent::InFlight(id, Stage::AwaitPubRec),
            ),
        ),
        (
            records::message_key("b", 3),
            records::encode_inline(&delivery(&m1, QoS::AtLeastOnce, &[2, 5]), Sent::Queued),
        ),
        (
            records::message_key("c", 0),
            records::encode_inline(&delivery(&m1, QoS::ExactlyOnce, &[]), Sent::Queued),
        ),
    ];
    let session = records::encode_session(&meta());
    let mut changes: Vec<Change<'_>> = ["a", "b", "c"]
        .iter()
        .map(|c| Change::Put {
            table: SESSIONS,
            key: c.as_bytes(),
            value: &session,
        })
        .collect();
    for (key, value) in &old {
        changes.push(Change::Put {
            table: MESSAGES,
            key,
            value,
        });
    }
    db.apply(&changes).unwrap();
    db.set_format_version(1).unwrap();
    drop(db);

    let db = open_db(dir.path());
    let (journal, loaded) = open(&db);
    let check = |loaded: &Loaded| {
        let by: Vec<_> = loaded
            .sessions
            .iter()
            .map(|s| (s.client_id.as_str(), s.messages.len()))
            .collect();
        assert_eq!(by, [("a", 2), ("b", 1), ("c", 1)]);
        let (a0, a1) = (
            &loaded.sessions[0].messages[0],
            &loaded.sessions[0].messages[1],
        );
        let b3 = &loaded.sessions[1].messages[0];
        let c0 = &loaded.sessions[2].messages[0];
        for ((seq, d, sent), (want_seq, want_qos, want_ids, want_sent, want)) in [
            (a0, (0, QoS::AtLeastOnce, &[1][..], Sent::Queued, &m1)),
            (
                a1,
                (
                    1,
                    QoS::ExactlyOnce,
                    &[][..],
                    Sent::InFlight(id, Stage::AwaitPubRec),
                    &m2,
                ),
            ),
            (b3, (3, QoS::AtLeastOnce, &[2, 5][..], Sent::Queued, &m1)),
            (c0, (0, QoS::ExactlyOnce, &[][..], Sent::Queued, &m1)),
        ] {
            assert_eq!(
                (*seq, d.qos, &d.subscription_ids[..], *sent),
                (want_seq, want_qos, want_ids, want_sent)
            );
            assert_eq!(d.message.topic, want.topic);
            assert_eq!(d.message.payload, want.payload);
            assert_eq!(d.message.properties, want.properties);
            let left = d.message.expires_at.unwrap() - Instant::now();
            assert!(left > Duration::from_secs(3590), "{left:?}");
        }
        // The two copies of m1 at QoS 1 are one message again (an inline record kept
        // the delivery's QoS as the message's: c's copy at QoS 2 is another body).
        assert!(Arc::ptr_eq(&a0.1.message, &b3.1.message));
        assert!(!Arc::ptr_eq(&a0.1.message, &c0.1.message));
    };
    check(&loaded);
    // Rewritten: one body per message, delivery records referencing them.
    assert_eq!(counts(&db), (3, 4));
    for (_, record) in rows(&db, MESSAGES) {
        assert_eq!(record[0], 2, "the current delivery format");
    }
    // A second start reads the same from the rewritten tables, and changes nothing.
    let (again, _) = restore::load(&db).unwrap_or_else(|e| panic!("{e}"));
    check(&again);
    assert_eq!(counts(&db), (3, 4));
    // The rebuilt counts: a body goes with the last of its deliveries.
    let a0 = loaded.sessions[0].messages[0].1.clone();
    let a1 = loaded.sessions[0].messages[1].1.clone();
    let c0 = loaded.sessions[2].messages[0].1.clone();
    journal.remove_message("a", 0, &a0);
    tables_reach(&db, &journal, (3, 3)).await;
    journal.remove_message("b", 3, &a0);
    tables_reach(&db, &journal, (2, 2)).await;
    journal.remove_message("c", 0, &c0);
    journal.remove_message("a", 1, &a1);
    tables_reach(&db, &journal, (0, 0)).await;
}

/// A crash between a body and its deliveries (the body alone in the log), or between the
/// last delivery's removal and the body's, leaves an orphan body: restore removes it, and
/// the messages of a session that is gone. Ids go on after the highest stored.
#[tokio::test]
async fn restore_removes_orphan_bodies_and_refuses_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let m = message("t", 100);
    let body = records::encode_body(&m);
    let live = records::encode_delivery(&delivery(&m, QoS::AtLeastOnce, &[]), Sent::Queued, 6);
    let session = records::encode_session(&meta());
    let (k5, k6) = (records::body_key(5), records::body_key(6));
    let (ka, kgone) = (
        records::message_key("a", 0),
        records::message_key("gone", 0),
    );
    db.apply(&[
        Change::Put {
            table: SESSIONS,
            key: b"a",
            value: &session,
        },
        Change::Put {
            table: BODIES,
            key: &k5,
            value: &body,
        },
        Change::Put {
            table: BODIES,
            key: &k6,
            value: &body,
        },
        Change::Put {
            table: MESSAGES,
            key: &ka,
            value: &live,
        },
        Change::Put {
            table: MESSAGES,
            key: &kgone,
            value: &live,
        },
    ])
    .unwrap();
    {
        // The log of the crashed run: a body written, its deliveries never.
        let (mut wal, _) = Wal::open(&dir.path().join(LOG_FILE)).unwrap();
        wal.append(&storage::wal::Batch {
            dropped: Vec::new(),
            ops: vec![(
                Table::Bodies.code(),
                records::body_key(8),
                Some(body.clone()),
            )],
        })
        .unwrap();
    }
    let (journal, loaded) = open(&db);
    assert_eq!(loaded.sessions.len(), 1);
    assert_eq!(loaded.sessions[0].messages.len(), 1);
    assert_eq!(rows(&db, BODIES), vec![(k6.clone(), body.clone())]);
    assert_eq!(rows(&db, MESSAGES), vec![(ka.clone(), live.clone())]);
    // A new message gets an id past every stored one, orphans included.
    journal.put_session("b", &meta());
    let fresh = message("new", 10);
    journal.add_message("b", 0, &delivery(&fresh, QoS::AtLeastOnce, &[]));
    tables_reach(&db, &journal, (2, 2)).await;
    assert_eq!(rows(&db, BODIES)[1].0, records::body_key(9));

    // A delivery whose body is missing is refused by name, not skipped.
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    db.apply(&[
        Change::Put {
            table: SESSIONS,
            key: b"a",
            value: &session,
        },
        Change::Put {
            table: MESSAGES,
            key: &ka,
            value: &live,
        },
    ])
    .unwrap();
    let err = restore::load(&db)
        .err()
        .expect("a missing body is an error");
    let text = err.to_string();
    assert!(
        text.contains("a/0") && text.contains("body is missing"),
        "{text}"
    );
}
