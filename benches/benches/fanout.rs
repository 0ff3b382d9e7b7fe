//! Fan-out micro-benchmarks: what one PUBLISH costs the publishing connection's task when
//! it reaches many subscribers, measured through [`Router::publish`] with real sessions
//! (index lookup under the read lock, de-duplication of targets, one queue push per
//! session with its lock and wake-up).
//!
//! - `one_filter/<n>`: n connected sessions each subscribed to `bench/topic` (QoS 1) and
//!   one QoS 1 publish to it: n deliveries.
//! - `overlap/<n>`: the same sessions each also subscribed to `bench/#` and `bench/+` with
//!   subscription identifiers, so every session matches three filters and gets one copy
//!   carrying both identifiers (the de-duplication path).
//!
//! Queues are emptied outside the timed section after each publish, so every iteration
//! measures a push onto an empty queue. The target: 10k subscribers in under 5 ms.
//!
//! Run: `cargo bench -p gatehouse-benches --bench fanout`.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc and result files are read and written synchronously"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatehouse::message::Message;
use gatehouse::routing::{RetainedCaps, Router, SubEntry};
use gatehouse::session::{QueuePolicy, Session};
use gatehouse_protocol::{PublishProperties, QoS, SubscriptionOptions};

const SIZES: [usize; 6] = [1, 10, 100, 1_000, 10_000, 50_000];

fn options() -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    }
}

/// A router with `n` connected sessions subscribed to `bench/topic`, and with `overlap`
/// also to `bench/#` (id 1) and `bench/+` (id 2).
fn setup(n: usize, overlap: bool) -> (Router, Vec<Arc<Session>>) {
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
            s.set_online(true);
            s
        })
        .collect();
    for s in &sessions {
        let subscribe = |filter: &str, id: Option<u32>| {
            router.subscribe(
                filter,
                None,
                SubEntry {
                    session: s.clone(),
                    options: options(),
                    id,
                },
            );
        };
        subscribe("bench/topic", None);
        if overlap {
            subscribe("bench/#", Some(1));
            subscribe("bench/+", Some(2));
        }
    }
    (router, sessions)
}

fn message() -> Arc<Message> {
    Arc::new(Message {
        topic: "bench/topic".into(),
        payload: Bytes::from_static(&[0x5a; 64]),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
        origin: None,
    })
}

fn drain(sessions: &[Arc<Session>]) {
    for s in sessions {
        // Nothing is in flight here: this empties the queue.
        s.lock().retain_messages(|_| false);
    }
}

fn bench(c: &mut Criterion, name: &str, overlap: bool) {
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    for n in SIZES {
        let (router, sessions) = setup(n, overlap);
        let m = message();
        let routed = router.publish(&m);
        assert_eq!(routed.matched, n, "one copy per session");
        if overlap {
            let ids = sessions[0]
                .lock()
                .queued()
                .front()
                .map(|d| d.subscription_ids.clone());
            assert_eq!(ids.map(|ids| ids.len()), Some(2), "both identifiers");
        }
        drain(&sessions);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    black_box(router.publish(black_box(&m)).matched);
                    spent += started.elapsed();
                    drain(&sessions);
                }
                spent
            })
        });
    }
    group.finish();
}

fn one_filter(c: &mut Criterion) {
    bench(c, "one_filter", false);
}

fn overlap(c: &mut Criterion) {
    bench(c, "overlap", true);
}

criterion_group!(benches, one_filter, overlap);
criterion_main!(benches);
