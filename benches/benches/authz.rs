//! Authorization micro-benchmarks: `Authorizer::check` for a PUBLISH with the 100-rule
//! policy of `gatehouse_benches::authz_policy` (the allowing rule last).
//!
//! - `publish/cache_hit`: `cache: Enabled`, the same client and topic every time (what a
//!   publisher to one topic costs after its first message);
//! - `publish/cache_hit_4_attributes`: the same with a principal carrying 4 attributes
//!   (they are part of the key: hashed and compared on every hit);
//! - `publish/cache_miss`: `cache: Enabled`, a new topic every time (the decision, plus
//!   building and inserting the key, plus evictions once the cache is full);
//! - `publish/uncached`: `cache: Disabled` (the decision alone, walking all 100 rules);
//! - `publish/uncached_1_rule`: `cache: Disabled` with only the allowing rule.
//!
//! Run: `cargo bench -p gatehouse-benches --bench authz`.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc and result files are read and written synchronously"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::auth::Principal;
use gatehouse::authz::{Action, Authorizer, Policy};
use gatehouse_benches::authz_policy::rules_yaml;

const USER: &str = "bench-client";
/// What `mqttv5 bench` uses (authz_compare.sh).
const CLIENT_ID: &str = "mqttv5-bench-2798338455-pub-0";
const TOPIC: &str = "bench/test/0";

fn policy(cache: &str, rules: &str) -> Policy {
    let yaml = format!(
        "listeners:\n  - name: lst\n    ports: [ {{ port: 0 }} ]\nauthorizations:\n  - name: bench\n    authorizationPolicies:\n      cache: {cache}\n      rules:\n{rules}"
    );
    let loaded = gatehouse_config::load_str(&yaml, "bench.yaml").expect("valid configuration");
    Policy::compile(&loaded.config.authorizations[0], "authorizations[0]").expect("compiles")
}

fn principal(attributes: &[(&str, &str)]) -> Principal {
    Principal {
        username: Some(USER.into()),
        client_id: CLIENT_ID.into(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        expiry: None,
        method: "X509",
        registry: None,
    }
}

fn bench_publish(c: &mut Criterion) {
    let rules = rules_yaml(USER);
    let last_rule = rules
        .rfind("        - principals:")
        .map(|i| &rules[i..])
        .expect("a rule");
    let cached = Authorizer::new(policy("Enabled", &rules));
    let uncached = Authorizer::new(policy("Disabled", &rules));
    let one_rule = Authorizer::new(policy("Disabled", last_rule));
    assert_eq!(cached.policy().rule_count(), 100);
    let plain = principal(&[]);
    let with_attributes = principal(&[
        ("building", "b17"),
        ("city", "seattle"),
        ("organization", "contoso"),
        ("role", "sensor"),
    ]);
    let publish = Action::Publish(TOPIC);
    for (authz, p) in [
        (&cached, &plain),
        (&uncached, &plain),
        (&one_rule, &plain),
        (&cached, &with_attributes),
    ] {
        let d = authz.check(p, CLIENT_ID, &publish);
        assert!(d.allowed, "the load's rule allows {TOPIC}");
    }

    let mut group = c.benchmark_group("publish");
    group.bench_function("cache_hit", |b| {
        b.iter(|| cached.check(black_box(&plain), black_box(CLIENT_ID), black_box(&publish)))
    });
    group.bench_function("cache_hit_4_attributes", |b| {
        b.iter(|| {
            cached.check(
                black_box(&with_attributes),
                black_box(CLIENT_ID),
                black_box(&publish),
            )
        })
    });
    let mut topic = String::with_capacity(32);
    let mut n = 0u64;
    group.bench_function("cache_miss", |b| {
        b.iter(|| {
            n += 1;
            topic.clear();
            let _ = write!(topic, "bench/miss/{n}");
            cached.check(
                black_box(&plain),
                black_box(CLIENT_ID),
                &Action::Publish(&topic),
            )
        })
    });
    group.bench_function("uncached", |b| {
        b.iter(|| uncached.check(black_box(&plain), black_box(CLIENT_ID), black_box(&publish)))
    });
    group.bench_function("uncached_1_rule", |b| {
        b.iter(|| one_rule.check(black_box(&plain), black_box(CLIENT_ID), black_box(&publish)))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_publish
}
criterion_main!(benches);
