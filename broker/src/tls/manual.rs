//! Manual TLS: the chain and key files of a secret, picked up when they appear and again
//! whenever they change.
//!
//! The files are polled (two `stat` calls per second) rather than watched with inotify:
//! Kubernetes-style secret mounts swap symlinks, editors rename over files, and network
//! file systems send no events; polling sees all of them the same way.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_certs::{load_chain_and_key, LoadError};
use gatehouse_config::{Config, SecretFiles};
use tokio::task::JoinSet;

use super::{CertSlot, TlsError};
use crate::file_stamp::{stamp, Stamp};

const POLL: Duration = Duration::from_millis(500);

/// Load the secret's files into `slot` now if they exist (invalid files are a start-up
/// error), then keep watching them.
pub(super) fn start(
    config: &Config,
    path: &str,
    secret: &str,
    slot: Arc<CertSlot>,
    tasks: &mut JoinSet<()>,
) -> Result<(), TlsError> {
    let files = config.secret(secret);
    let stamps = (stamp(&files.cert_file), stamp(&files.key_file));
    match load_chain_and_key(&files.cert_file, &files.key_file) {
        Ok(loaded) => {
            tracing::info!(
                target: "tls",
                "{path}: serving certificate of secret {secret} (serial {}, CN {})",
                loaded.info.serial,
                loaded.info.common_name.as_deref().unwrap_or("-")
            );
            slot.set(loaded.certified_key);
        }
        Err(e) if e.is_not_found() => awaiting(secret),
        Err(source) => {
            return Err(TlsError::Manual {
                path: path.to_owned(),
                secret: secret.to_owned(),
                source,
            })
        }
    }
    tasks.spawn(watch(
        path.to_owned(),
        secret.to_owned(),
        files,
        stamps,
        slot,
    ));
    Ok(())
}

fn awaiting(secret: &str) {
    tracing::warn!(
        target: "tls",
        "Server certificate {secret} not found. Awaiting creation of secret."
    );
}

async fn watch(
    path: String,
    secret: String,
    files: SecretFiles,
    mut last: (Option<Stamp>, Option<Stamp>),
    slot: Arc<CertSlot>,
) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waited = 0u32;
    let files = Arc::new(files);
    loop {
        tick.tick().await;
        // stat and load on a blocking thread, never on an async worker.
        let swept = files.clone();
        let Ok(now) =
            tokio::task::spawn_blocking(move || (stamp(&swept.cert_file), stamp(&swept.key_file)))
                .await
        else {
            return; // the runtime is shutting down
        };
        if now == last {
            if slot.is_empty() {
                // Keep saying why the port refuses handshakes, every 30 s.
                waited += 1;
                if waited == 60 {
                    waited = 0;
                    awaiting(&secret);
                }
            }
            continue;
        }
        last = now;
        let read = files.clone();
        let Ok(loaded) = tokio::task::spawn_blocking(move || {
            load_chain_and_key(&read.cert_file, &read.key_file)
        })
        .await
        else {
            return;
        };
        match loaded {
            Ok(loaded) => {
                tracing::info!(
                    target: "tls",
                    "{path}: loaded certificate of secret {secret} (serial {}, CN {}); new handshakes use it",
                    loaded.info.serial,
                    loaded.info.common_name.as_deref().unwrap_or("-")
                );
                slot.set(loaded.certified_key);
            }
            Err(e @ LoadError::NotFound { .. }) if slot.is_empty() => {
                tracing::debug!(target: "tls", "{path}: {e}");
            }
            Err(e) if e.is_not_found() => tracing::warn!(
                target: "tls",
                "{path}: secret {secret} disappeared ({e}); still serving the certificate loaded before"
            ),
            // A half-written file is reported too; the next write changes the stamps
            // and is tried again.
            Err(e) => tracing::warn!(
                target: "tls",
                "{path}: secret {secret} not reloaded: {e}; still serving the previous certificate"
            ),
        }
    }
}
