//! Routing micro-benchmarks: the subscription index and the retained store.
//!
//! - `match/<n>`: `SubscriptionIndex::for_each_match` on an index of n = 1k, 10k, 100k
//!   subscriptions, for a topic that matches a few filters (an exact one, a `+` one and a
//!   `#` one shared by 10 subscribers) and for a topic that matches none.
//! - `build/<n>`: inserting all n subscriptions into an empty index.
//! - `insert_remove/<n>`: adding one subscription to a full index and removing it again
//!   (the cost of a SUBSCRIBE + UNSUBSCRIBE pair), exact and wildcard.
//! - `retained`: `RetainedStore::matching` over 100k retained topics for `site/7/#`
//!   (100 hits) and `site/+/device/7/telemetry` (1000 hits); replacing one retained message.
//!
//! The subscription mix, per site of 100 subscriptions: 70% exact
//! `site/{s}/device/{d}/telemetry`, 20% single-level `site/{s}/+/{d}/telemetry`, 10%
//! multi-level `site/{s}/#`; n/100 sites.
//!
//! Run: `cargo bench -p gatehouse-benches --bench matching`.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc and result files are read and written synchronously"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatehouse::routing::index::SubscriptionIndex;
use gatehouse::routing::retained::RetainedStore;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Subscriptions per site; the mix below repeats every `PER_SITE` subscriptions.
const PER_SITE: usize = 100;

type Index = SubscriptionIndex<u64, u32>;

/// The filter of subscription `i` in an index of `n` (see the module docs for the mix).
fn filter(i: usize, n: usize) -> String {
    let sites = (n / PER_SITE).max(1);
    let site = i % sites;
    let m = (i / sites) % PER_SITE;
    match m {
        0..=69 => format!("site/{site}/device/{m}/telemetry"),
        70..=89 => format!("site/{site}/+/{}/telemetry", m - 70),
        _ => format!("site/{site}/#"),
    }
}

fn filters(n: usize) -> Vec<String> {
    (0..n).map(|i| filter(i, n)).collect()
}

fn build(filters: &[String]) -> Index {
    let mut idx = Index::new();
    for (i, f) in filters.iter().enumerate() {
        idx.insert(f, None, i as u64, i as u32);
    }
    idx
}

/// Subscribers (not entries) that `topic` reaches.
fn subscribers(idx: &Index, topic: &str) -> usize {
    let mut count = 0;
    idx.for_each_match(topic, |e| count += e.direct.len());
    count
}

/// Matches `site/7/device/3/telemetry` (exact) and `site/7/+/3/telemetry` once each and
/// `site/7/#` ten times.
const HIT: &str = "site/7/device/3/telemetry";

/// A site no subscription names.
fn miss_topic(n: usize) -> String {
    format!("site/{}/device/3/telemetry", n / PER_SITE + 7)
}

fn bench_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("match");
    group.throughput(Throughput::Elements(1));
    for n in SIZES {
        let idx = build(&filters(n));
        assert_eq!(idx.len(), n);
        assert_eq!(subscribers(&idx, HIT), 12, "hit topic at n={n}");
        let miss = miss_topic(n);
        assert_eq!(subscribers(&idx, &miss), 0, "miss topic at n={n}");
        group.bench_with_input(BenchmarkId::new("hit_12_subscribers", n), &idx, |b, idx| {
            b.iter(|| {
                let mut count = 0usize;
                idx.for_each_match(black_box(HIT), |e| count += e.direct.len());
                black_box(count)
            })
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &idx, |b, idx| {
            b.iter(|| {
                let mut count = 0usize;
                idx.for_each_match(black_box(&miss), |e| count += e.direct.len());
                black_box(count)
            })
        });
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for n in SIZES {
        let fs = filters(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &fs, |b, fs| {
            b.iter(|| black_box(build(fs)))
        });
    }
    group.finish();
}

fn bench_insert_remove(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_remove");
    group.throughput(Throughput::Elements(1));
    for n in [10_000, 100_000] {
        let mut idx = build(&filters(n));
        let key = u64::MAX;
        // New filters at an existing site (the trie path and hash buckets are warm), as a
        // client subscribing to one more device would.
        for (name, f) in [
            ("exact", "site/7/device/1000/telemetry"),
            ("single_level", "site/7/+/1000/telemetry"),
            ("multi_level", "site/7/device/1000/#"),
        ] {
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    idx.insert(black_box(f), None, key, 0);
                    black_box(idx.remove(black_box(f), None, &key))
                })
            });
            assert_eq!(idx.len(), n);
        }
    }
    group.finish();
}

fn bench_retained(c: &mut Criterion) {
    const SITES: usize = 1000;
    const DEVICES: usize = 100;
    let mut store = RetainedStore::default();
    for s in 0..SITES {
        for d in 0..DEVICES {
            store.set(
                &format!("site/{s}/device/{d}/telemetry"),
                (s * DEVICES + d) as u32,
                4,
            );
        }
    }
    assert_eq!(store.len(), SITES * DEVICES);
    let mut group = c.benchmark_group("retained_100k");
    for (name, f, hits) in [
        ("site_7_multi_level", "site/7/#", DEVICES),
        ("single_level_device_7", "site/+/device/7/telemetry", SITES),
    ] {
        assert_eq!(store.matching(f).len(), hits, "{f}");
        group.throughput(Throughput::Elements(hits as u64));
        group.bench_function(name, |b| b.iter(|| black_box(store.matching(black_box(f)))));
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("set_existing", |b| {
        b.iter(|| store.set(black_box("site/7/device/3/telemetry"), 0, 4))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_match, bench_build, bench_insert_remove, bench_retained
}
criterion_main!(benches);
