//! Cluster mode (issue 15): Gatehouse nodes joined through a real NATS cluster with
//! JetStream (three `nats-server` processes, `gatehouse_tests::nats`).

use std::time::Duration;

use gatehouse_tests::nats::NatsCluster;

/// The harness itself: three routed servers elect a JetStream meta leader and fsync every
/// write (checked inside `start`); killing one leaves the other two with a leader.
#[tokio::test]
async fn nats_cluster_starts_with_jetstream_and_survives_one_server() {
    let Some(mut nats) = NatsCluster::start_or_skip("nats_cluster_starts_with_jetstream").await
    else {
        return;
    };
    assert_eq!(nats.urls().len(), 3);
    nats.servers[0].kill();
    nats.wait_ready(Duration::from_secs(30)).await;
}
