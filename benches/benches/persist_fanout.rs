//! Persisted fan-out (issue 14 item 5): one QoS 1 PUBLISH to n offline persistent sessions
//! on one topic, through [`Router::publish`] with real sessions and the real session
//! journal on a redb file in a temporary folder.
//!
//! - `publish/<n>`: the router call (index lookup, one queue push per session, the
//!   journal's records of each delivery): what the publisher's connection task pays.
//! - `durable/<n>`: the same plus the wait until the journal's writer has the batch in its
//!   log (`Journal::flush`): when the publisher's PUBACK could go.
//!
//! Before the timed runs it prints, per n, the bytes one publish makes the process write
//! (`wchar` of `/proc/self/io`: the journal log's appends and the checkpoint's database
//! writes, until the checkpoint after it) and the bytes the database then uses more (redb's
//! pages in use). Queues and their records are emptied outside the timed part after each
//! publish (a checkpoint of the previous one may still run, as in a broker). The payload is `PERSIST_FANOUT_PAYLOAD` bytes (default 4096).
//!
//! Run: `taskset -c 1 cargo bench -p gatehouse-benches --bench persist_fanout`.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc/self/io is read synchronously"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use gatehouse::message::Message;
use gatehouse::routing::{RetainedCaps, Router, SubEntry};
use gatehouse::session::journal::{Journal, Selected, CHECKPOINT_EVERY};
use gatehouse::session::{QueuePolicy, Session};
use gatehouse::storage::{Database, Store};
use gatehouse_config::Persistence;
use gatehouse_protocol::{PublishProperties, QoS, SubscriptionOptions};

const SIZES: [usize; 2] = [10_000, 50_000];

fn payload_bytes() -> usize {
    std::env::var("PERSIST_FANOUT_PAYLOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096)
}

struct Setup {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    db: Database,
    journal: Journal,
    router: Router,
    sessions: Vec<Arc<Session>>,
    message: Arc<Message>,
}

impl Setup {
    /// A router with `n` offline persistent sessions subscribed to `bench/topic` at QoS 1.
    fn new(n: usize) -> Setup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let config: Persistence = serde_json::from_value(serde_json::json!({
            "maxSize": "100Gi",
            "subscriberQueue": { "mode": "All" },
        }))
        .unwrap();
        let (journal, _) = {
            let _entered = rt.enter();
            Journal::open(&db, &config).unwrap().unwrap()
        };
        let router = Router::new(
            QueuePolicy {
                length: 1000,
                max_bytes: usize::MAX,
                drop_oldest: false,
            },
            RetainedCaps {
                max_messages: 1000,
                max_bytes: 1 << 20,
            },
        );
        let sessions: Vec<_> = (0..n)
            .map(|i| {
                let s = Arc::new(Session::new(i as u64 + 1, format!("client-{i}").into()));
                s.start_journal(&journal, Selected::AllMessages, 3600);
                router.subscribe(
                    "bench/topic",
                    None,
                    SubEntry {
                        session: s.clone(),
                        options: SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            no_local: false,
                            retain_as_published: false,
                            retain_handling: 0,
                        },
                        id: None,
                    },
                );
                s
            })
            .collect();
        let message = Arc::new(Message {
            topic: "bench/topic".into(),
            payload: Bytes::from(vec![0x5a; payload_bytes()]),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            origin: None,
        });
        let setup = Setup {
            rt,
            _dir: dir,
            db,
            journal,
            router,
            sessions,
            message,
        };
        setup.settle();
        setup
    }

    fn flush(&self) {
        self.rt.block_on(self.journal.flush());
    }

    /// Everything recorded is durable and folded into the database (the log starts over).
    fn settle(&self) {
        self.flush();
        std::thread::sleep(CHECKPOINT_EVERY * 2);
    }

    /// Bytes this process has handed to `write` so far (Linux).
    fn written() -> u64 {
        std::fs::read_to_string("/proc/self/io")
            .ok()
            .and_then(|io| {
                io.lines()
                    .find_map(|l| l.strip_prefix("wchar:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// The bytes of the database's pages in use.
    fn db_bytes(&self) -> u64 {
        self.db.apply(&[]).unwrap()
    }

    fn publish(&self) -> usize {
        self.router.publish(&self.message).matched
    }

    /// Every queue emptied, and its records removed.
    fn drain(&self) {
        for s in &self.sessions {
            s.lock().retain_messages(|_| false);
        }
        self.flush();
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("persist_fanout");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let s = Setup::new(n);
        // What one publish writes.
        let db_before = s.db_bytes();
        let written_before = Setup::written();
        assert_eq!(s.publish(), n, "one copy per session");
        s.settle();
        let written = Setup::written().saturating_sub(written_before);
        let grown = s.db_bytes().saturating_sub(db_before);
        eprintln!(
            "persist_fanout/{n}: payload {} B: {written} B written (journal log and \
             checkpoint), database pages in use +{grown} B",
            s.message.payload.len()
        );
        s.drain();
        s.settle();
        group.bench_function(BenchmarkId::new("publish", n), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    black_box(s.publish());
                    spent += started.elapsed();
                    s.drain();
                }
                spent
            })
        });
        group.bench_function(BenchmarkId::new("durable", n), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    black_box(s.publish());
                    s.flush();
                    spent += started.elapsed();
                    s.drain();
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
