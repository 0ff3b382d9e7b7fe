//! Cluster mode (issue 15) judged by the official Azure IoT Operations Rust SDK: the
//! single-node SDK tests of `statestore_sdk` run with their two clients on two different
//! nodes of a 3-node cluster (a real 3-server NATS cluster with JetStream), so every key,
//! fencing token, lease and notification crosses the JetStream key-value bucket.

use crate::cluster::Nodes;
use crate::statestore_sdk::{leased_lock_between, observe_and_unobserve_between};

/// KEYNOTIFY across nodes through the SDK's `KeyObservation`: the watcher on node 1, the
/// writer on node 2; SET and DELETE notifications with the writes' versions, one PUBLISH
/// each on the key's topic, none for a SET NX that was not applied, none after unobserve.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_key_observation_across_nodes() {
    let Some(nodes) = Nodes::start_or_skip("sdk_key_observation_across_nodes").await else {
        return;
    };
    observe_and_unobserve_between(nodes.node(1), nodes.node(2)).await;
}

/// The SDK's leased lock with one client on node 1 and the other on node 2 writing the
/// same keys: mutual exclusion, a blocked `lock()` that returns on the other's unlock, the
/// newer holder's fencing token superseding the older one on a protected key, and a lease
/// that passes on expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_leased_lock_across_nodes() {
    let Some(nodes) = Nodes::start_or_skip("sdk_leased_lock_across_nodes").await else {
        return;
    };
    leased_lock_between(nodes.node(1), nodes.node(2)).await;
}
