//! Opening a JetStream key-value bucket with a watch, shared by the retained messages
//! and the state store.

use std::time::Duration;

use async_nats::jetstream::kv::{Config, Store, Watch};
use async_nats::jetstream::stream::StorageType;

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
    let js = async_nats::jetstream::new(client.clone());
    let config = Config {
        bucket: bucket.to_owned(),
        description: description.to_owned(),
        history: 1,
        num_replicas: replicas,
        storage: StorageType::File,
        ..Default::default()
    };
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
