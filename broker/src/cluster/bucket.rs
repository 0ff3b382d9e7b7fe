//! Opening a JetStream key-value bucket with a watch, shared by the retained messages
//! and the state store.

use std::sync::Weak;
use std::time::Duration;

use async_nats::jetstream::kv::{Config, Entry, Store, Watch};
use async_nats::jetstream::stream::StorageType;
use futures_util::StreamExt;

/// How long a node keeps trying to open a bucket at start: a JetStream that has just
/// elected its leader, or is placing replicas, may refuse for a moment.
const OPEN_FOR: Duration = Duration::from_secs(20);

/// Open (or create) `bucket` (one value per key, `replicas` copies on disk) and watch it
/// from its beginning: every key's last value first, then every change.
pub(super) async fn open_watched(
    client: &async_nats::Client,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<(Store, Watch), String> {
    open_watched_with(client, config(bucket, description, replicas)).await
}

/// The configuration [`open_watched`] opens a bucket with: one value per key, `replicas`
/// copies on disk, no size limit.
fn config(bucket: &str, description: &str, replicas: usize) -> Config {
    Config {
        bucket: bucket.to_owned(),
        description: description.to_owned(),
        history: 1,
        num_replicas: replicas,
        storage: StorageType::File,
        ..Default::default()
    }
}

/// [`open_watched`] for a bucket whose stream the caller configures (e.g. with limits and
/// per-message TTLs, which the key-value configuration cannot express without also
/// turning on JetStream's delete markers): an existing bucket is updated to it.
/// `stream` must be a key-value bucket's stream: named `KV_<bucket>`, on `$KV.<bucket>.>`.
pub(super) async fn open_stream_watched(
    client: &async_nats::Client,
    bucket: &str,
    stream: async_nats::jetstream::stream::Config,
) -> Result<(Store, Watch), String> {
    let js = async_nats::jetstream::new(client.clone());
    let deadline = tokio::time::Instant::now() + OPEN_FOR;
    let open = || async {
        js.create_or_update_stream(stream.clone())
            .await
            .map_err(|e| e.to_string())?;
        let kv = js.get_key_value(bucket).await.map_err(|e| e.to_string())?;
        let watch = kv
            .watch_with_history(">")
            .await
            .map_err(|e| format!("watching it: {e}"))?;
        Ok::<_, String>((kv, watch))
    };
    loop {
        match open().await {
            Ok(opened) => return Ok(opened),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(target: "cluster", "the {bucket} key-value bucket: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("the {bucket} key-value bucket: {e}")),
        }
    }
}

/// [`open_watched`] with a key-value configuration of the caller's.
async fn open_watched_with(
    client: &async_nats::Client,
    config: Config,
) -> Result<(Store, Watch), String> {
    let bucket = config.bucket.clone();
    let js = async_nats::jetstream::new(client.clone());
    let deadline = tokio::time::Instant::now() + OPEN_FOR;
    let open = || async {
        let kv = js
            .create_or_update_key_value(config.clone())
            .await
            .map_err(|e| e.to_string())?;
        let watch = kv
            .watch_with_history(">")
            .await
            .map_err(|e| format!("watching it: {e}"))?;
        Ok::<_, String>((kv, watch))
    };
    loop {
        match open().await {
            Ok(opened) => return Ok(opened),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(target: "cluster", "the {bucket} key-value bucket: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("the {bucket} key-value bucket: {e}")),
        }
    }
}

/// How long a watch may bring nothing before the bucket is asked whether it has changes
/// the watch has not brought (see [`follow`]).
const STALL_CHECK: Duration = Duration::from_secs(3);

/// Hand every change of `bucket` to `apply`, in the bucket's order, for as long as `owner`
/// lives; when the watch ends or fails (NATS reconnected), watch again from the revision
/// after the last one seen, so no change is skipped.
///
/// A watch can also stall without failing: when the NATS server holding its consumer dies,
/// or this node moves to another server while JetStream elects leaders, async-nats
/// recreates the consumer with a backoff that grows to 10 s per attempt (measured: a node
/// saw another node's retained message more than 20 s late after one NATS server of three
/// was killed). So after [`STALL_CHECK`] without a change the bucket's stream is asked for
/// its last sequence; when it is past the last revision seen, the watch is replaced.
pub(super) async fn follow<T>(
    mut kv: Store,
    mut watch: Watch,
    mut revision: u64,
    bucket: &str,
    owner: Weak<T>,
    mut apply: impl FnMut(&T, Entry),
) {
    loop {
        loop {
            let next = match tokio::time::timeout(STALL_CHECK, watch.next()).await {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(_) => {
                    if owner.strong_count() == 0 {
                        return;
                    }
                    if behind(&mut kv, revision).await {
                        tracing::warn!(target: "cluster", revision, "the watch of {bucket} brings nothing while the bucket has newer changes: watching again");
                        break;
                    }
                    continue;
                }
            };
            let Some(owner) = owner.upgrade() else {
                return;
            };
            match next {
                Ok(entry) => {
                    revision = revision.max(entry.revision);
                    apply(&owner, entry);
                }
                Err(e) => {
                    tracing::warn!(target: "cluster", "watching {bucket}: {e}");
                    break;
                }
            }
        }
        // Watch again, until that works (JetStream may be electing a leader).
        loop {
            if owner.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            // From the first revision not seen, 1 when none was: `watch_all` would deliver
            // only changes made from now on, losing those made since the watch failed.
            match kv.watch_all_from_revision(revision + 1).await {
                Ok(w) => {
                    watch = w;
                    break;
                }
                Err(e) => tracing::warn!(target: "cluster", "watching {bucket} again: {e}"),
            }
        }
    }
}

/// Whether the bucket's stream holds a change after `revision` (false when it does not
/// answer within 2 s: nothing to compare with, asked again later).
async fn behind(kv: &mut Store, revision: u64) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), kv.stream.info()).await {
        Ok(Ok(info)) => info.state.last_sequence > revision,
        _ => false,
    }
}

/// The stream of a bounded key-value bucket `bucket`: what `create_key_value` makes of a
/// key-value configuration (one record per key, `replicas` copies on disk, discard new,
/// rollups and direct gets allowed, no message deletes), with `max_bytes` and per-message
/// TTLs allowed, but without JetStream's subject delete markers (`limit_markers`): on a
/// full bucket the marker for an expiring record cannot be written, and then the record
/// is never removed, so the bucket would stay full for good (`cluster_statestore_quota.rs`).
pub(super) fn bounded_stream_config(
    bucket: &str,
    description: &str,
    replicas: usize,
    max_bytes: i64,
) -> async_nats::jetstream::stream::Config {
    use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
    Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_bytes,
        storage: StorageType::File,
        num_replicas: replicas.max(1),
        discard: DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        allow_message_ttl: true,
        ..Default::default()
    }
}
