//! Persistence across restarts: the writer, `load`, and the database's refusals, through the
//! state store's own API.

#![allow(
    clippy::disallowed_methods,
    reason = "tests write their fixtures synchronously"
)]

use std::path::Path;

use bytes::Bytes;
use gatehouse_config::Persistence;

use super::*;
use redb::{ReadableTable, TableDefinition};

use crate::statestore::hlc::Hlc;
use crate::statestore::request::{Request, SetCondition};
use crate::statestore::stamps::Stamps;
use crate::statestore::store::{Context, Store};
use crate::storage::{Database, FILE_NAME, FORMAT_VERSION};

const NOW: u64 = 1_700_000_000_000;

fn settings(yaml: &str) -> Persistence {
    serde_norway::from_str(yaml).unwrap()
}

fn all() -> Persistence {
    settings("maxSize: 1Gi\nstateStore: { mode: All }")
}

fn hlc(s: &str) -> Hlc {
    s.parse().unwrap()
}

fn entry(value: &'static [u8]) -> Entry {
    Entry {
        value: Bytes::from_static(value),
        version: hlc("1700000000000:0:gatehouse"),
        fencing_token: None,
        expires_at_ms: None,
        persist: false,
        owner: None,
    }
}

fn key(k: &'static [u8]) -> Bytes {
    Bytes::from_static(k)
}

fn open_db(dir: &Path) -> Database {
    Database::open(dir).unwrap_or_else(|e| panic!("{e}"))
}

fn open(dir: &Path, config: &Persistence) -> (StatePersistence, Vec<(Bytes, Entry)>) {
    StatePersistence::open(open_db(dir), config, NOW).unwrap_or_else(|e| panic!("{e}"))
}

/// What a restart finds.
fn reload(dir: &Path) -> Vec<(Bytes, Entry)> {
    load(&open_db(dir), NOW).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn entries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (persistence, loaded) = open(dir.path(), &all());
    assert!(loaded.is_empty());

    let full = Entry {
        fencing_token: Some(hlc("1700000000005:2:client")),
        expires_at_ms: Some(NOW + 60_000),
        persist: true,
        ..entry(b"value")
    };
    let binary = entry(b"\x00\x01\xff");
    persistence.record_set(&key(b"full"), &full);
    persistence.record_set(&key(b"\x00\xffbin"), &binary);
    persistence.record_set(&key(b"gone"), &entry(b"x"));
    persistence.record_delete(&key(b"gone"));
    persistence.close().await.unwrap();

    let expected = vec![(key(b"\x00\xffbin"), binary), (key(b"full"), full)];
    assert_eq!(reload(dir.path()), expected);
    // And the writer picks up from there after a restart.
    let (persistence, loaded) = open(dir.path(), &all());
    assert_eq!(loaded, expected);
    persistence.record_delete(&key(b"full"));
    persistence.close().await.unwrap();
    assert_eq!(reload(dir.path()), expected[..1]);
}

#[tokio::test]
async fn the_latest_change_per_key_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (persistence, _) = open(dir.path(), &all());
    for value in [&b"1"[..], b"2", b"3"] {
        persistence.record_set(
            &key(b"k"),
            &Entry {
                value: Bytes::copy_from_slice(value),
                ..entry(b"")
            },
        );
    }
    persistence.record_set(&key(b"d"), &entry(b"x"));
    persistence.record_delete(&key(b"d"));
    persistence.record_set(&key(b"d"), &entry(b"back"));
    persistence.close().await.unwrap();
    let values: Vec<(Bytes, Bytes)> = reload(dir.path())
        .into_iter()
        .map(|(k, e)| (k, e.value))
        .collect();
    assert_eq!(values, [(key(b"d"), key(b"back")), (key(b"k"), key(b"3"))]);
}

#[tokio::test]
async fn only_wanted_keys_are_written_and_the_latest_set_decides() {
    let dir = tempfile::tempdir().unwrap();
    let config = settings(
        "maxSize: 1Gi\nstateStore:\n  mode: Custom\n  stateStoreSettings:\n    \
         stateStoreResources: [ { keyType: Pattern, keys: ['keep/*'] } ]\n",
    );
    let (persistence, _) = open(dir.path(), &config);
    let asked = Entry {
        persist: true,
        ..entry(b"asked")
    };
    persistence.record_set(&key(b"keep/a"), &entry(b"listed"));
    persistence.record_set(&key(b"other"), &entry(b"not listed"));
    persistence.record_set(&key(b"dyn"), &asked);
    persistence.flush().await.unwrap();
    let keys = |dir: &Path| -> Vec<Bytes> { reload(dir).into_iter().map(|(k, _)| k).collect() };
    persistence.close().await.unwrap();
    assert_eq!(keys(dir.path()), [key(b"dyn"), key(b"keep/a")]);

    // A later SET without the user property removes the persisted value.
    let (persistence, _) = open(dir.path(), &config);
    persistence.record_set(&key(b"dyn"), &entry(b"no longer asked"));
    persistence.close().await.unwrap();
    assert_eq!(keys(dir.path()), [key(b"keep/a")]);
}

#[tokio::test]
async fn entries_of_an_earlier_policy_are_loaded_until_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let (persistence, _) = open(dir.path(), &all());
    persistence.record_set(&key(b"a"), &entry(b"1"));
    persistence.record_set(&key(b"b"), &entry(b"2"));
    persistence.close().await.unwrap();

    let none = settings("maxSize: 1Gi");
    let (persistence, loaded) = open(dir.path(), &none);
    assert_eq!(loaded.len(), 2);
    persistence.record_set(&key(b"a"), &entry(b"changed"));
    persistence.close().await.unwrap();
    let keys: Vec<Bytes> = reload(dir.path()).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [key(b"b")], "a's stale value is gone; b is unchanged");
}

#[tokio::test]
async fn expired_entries_are_dropped_and_deleted_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let (persistence, _) = open(dir.path(), &all());
    let expiring = |at| Entry {
        expires_at_ms: Some(at),
        ..entry(b"v")
    };
    persistence.record_set(&key(b"past"), &expiring(NOW - 1));
    persistence.record_set(&key(b"now"), &expiring(NOW));
    persistence.record_set(&key(b"later"), &expiring(NOW + 1));
    persistence.close().await.unwrap();

    let db = open_db(dir.path());
    let loaded = load(&db, NOW).unwrap();
    assert_eq!(loaded, [(key(b"later"), expiring(NOW + 1))]);
    // Deleted from the file, not just skipped.
    let stored = db
        .read(|tx| Ok(tx.open_table(TABLE)?.iter()?.count()))
        .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn changes_from_the_store_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (persistence, _) = open(dir.path(), &all());
    let mut store = Store::new(Default::default());
    let stamps = Stamps::default();
    let ctx = Context {
        client: "c",
        stamps: &stamps,
        now_ms: NOW,
        persist: false,
    };
    let mut counter = 0;
    let mut next = || {
        counter += 1;
        Hlc {
            wall_ms: NOW,
            counter,
            node_id: "gatehouse".into(),
        }
    };
    for (k, v) in [("a", "1"), ("b", "2")] {
        let set = Request::Set {
            key: Bytes::from(k),
            value: Bytes::from(v),
            condition: SetCondition::Always,
            expiry_ms: None,
        };
        let outcome = store.execute(&set, ctx, |_| next());
        persistence.record_changes(&store, &outcome.changes, NOW);
    }
    let del = Request::Del {
        key: Bytes::from("a"),
    };
    let outcome = store.execute(&del, ctx, |_| next());
    persistence.record_changes(&store, &outcome.changes, NOW);
    persistence.close().await.unwrap();

    let loaded = reload(dir.path());
    assert_eq!(loaded.len(), 1);
    assert_eq!(Some(&loaded[0].1), store.get(b"b", NOW));

    // A restarted store holds the same entries and expires them on time.
    let restored = Store::with_entries(Default::default(), loaded);
    assert_eq!(restored.get(b"b", NOW), store.get(b"b", NOW));
    assert_eq!(restored.len(), 1);
}

#[tokio::test]
async fn max_size_keeps_new_keys_in_memory_but_saves_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    // Smaller than the file's own pages: full after the first commit.
    let tiny = settings("maxSize: 1\nstateStore: { mode: All }");
    let (persistence, _) = open(dir.path(), &tiny);
    persistence.record_set(&key(b"first"), &entry(b"1"));
    persistence.record_set(&key(b"second"), &entry(b"2"));
    persistence.flush().await.unwrap();
    // Now full: a new key is not written, an existing one is updated, a delete goes through.
    persistence.record_set(&key(b"third"), &entry(b"3"));
    persistence.record_set(&key(b"first"), &entry(b"one"));
    persistence.record_delete(&key(b"second"));
    persistence.close().await.unwrap();
    let values: Vec<(Bytes, Bytes)> = reload(dir.path())
        .into_iter()
        .map(|(k, e)| (k, e.value))
        .collect();
    assert_eq!(values, [(key(b"first"), key(b"one"))]);
}

#[tokio::test]
async fn flush_with_nothing_recorded_returns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (persistence, _) = open(dir.path(), &all());
    persistence.flush().await.unwrap();
    // Keys that never persisted cost no write.
    persistence.record_delete(&key(b"never stored"));
    persistence.flush().await.unwrap();
    persistence.close().await.unwrap();
}

#[tokio::test]
async fn a_newer_format_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    open_db(dir.path())
        .set_format_version(FORMAT_VERSION + 1)
        .unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(matches!(err, PersistError::NewerFormat { .. }), "{err:?}");
    assert!(err.to_string().contains(FILE_NAME), "{err}");
}

#[tokio::test]
async fn a_garbage_file_is_a_typed_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(FILE_NAME);
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&file, &garbage).unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(matches!(err, PersistError::NotADatabase { .. }), "{err:?}");
    assert!(err.to_string().contains(FILE_NAME), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), garbage);
}

#[tokio::test]
async fn an_undecodable_record_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    db.write(|tx| {
        let mut table = tx.open_table(TABLE)?;
        table.insert(&b"good"[..], &codec::encode(&entry(b"v"))[..])?;
        table.insert(&b"bad\xff"[..], &[99u8, 0][..])?;
        Ok(())
    })
    .unwrap();
    let err = load(&db, NOW).unwrap_err();
    assert!(
        matches!(&err, PersistError::Record { table: "statestore", key, .. } if key == "bad\\xff"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(FILE_NAME) && message.contains("layout 99"),
        "{message}"
    );
}

#[test]
fn damaged_pages_give_an_error_or_written_entries_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<(Bytes, Entry)> = (0..200u32)
        .map(|i| {
            let value = Entry {
                value: Bytes::from(vec![i as u8; 100]),
                ..entry(b"")
            };
            (Bytes::from(format!("key-{i:03}")), value)
        })
        .collect();
    let db = open_db(dir.path());
    db.write(|tx| {
        let mut table = tx.open_table(TABLE)?;
        for (key, entry) in &written {
            table.insert(key.as_ref(), codec::encode(entry).as_slice())?;
        }
        Ok(())
    })
    .unwrap();
    drop(db);
    let file = dir.path().join(FILE_NAME);
    let good = std::fs::read(&file).unwrap();
    // Damage 64 bytes at a time, all over the pages in use (the file's tail is free space).
    for start in (512..good.len().min(96 << 10)).step_by(1000) {
        let mut bad = good.clone();
        for byte in &mut bad[start..(start + 64).min(good.len())] {
            *byte ^= 0xA5;
        }
        std::fs::write(&file, &bad).unwrap();
        match Database::open(dir.path()).and_then(|db| load(&db, NOW)) {
            Ok(entries) => {
                for entry in &entries {
                    assert!(
                        written.contains(entry),
                        "damage at {start}: invented {entry:?}"
                    );
                }
            }
            Err(err) => assert!(
                err.to_string().contains(&file.display().to_string()),
                "damage at {start}: {err}"
            ),
        }
    }
}

#[tokio::test]
async fn a_failing_write_is_reported_by_flush_and_does_not_hang_close() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let (persistence, _) = StatePersistence::open(db.clone(), &all(), NOW).unwrap();
    // Make every commit fail: the writer's table name, with other types.
    const WRONG: TableDefinition<u64, u64> = TableDefinition::new("statestore");
    db.write(|tx| {
        tx.open_table(WRONG)?;
        Ok(())
    })
    .unwrap();
    persistence.record_set(&key(b"k"), &entry(b"v"));
    let err = persistence.flush().await.unwrap_err();
    assert!(matches!(err, PersistError::Writer { .. }), "{err:?}");
    assert!(err.to_string().contains(FILE_NAME), "{err}");
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), persistence.close())
        .await
        .expect("close gives up instead of retrying forever");
    assert!(closed.is_err());
}
