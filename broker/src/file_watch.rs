//! The file-watch service: files the broker follows while it runs (a service accounts
//! file, the custom server's client certificate) are swept by a task, and what they parse
//! to is published over a `watch` channel. Readers take the current value ([`Watched::current`])
//! without touching the file system, so nothing on a connection's path (CONNECT, a rustls
//! callback) waits for a disk.
//!
//! A sweep compares [`file_stamp::stamp`]s (modification time, length, inode: the one notion
//! of "the file changed") on a blocking thread; only when one changed is the file loaded
//! again, also on a blocking thread. A load that fails is logged and the previous value
//! stays (a half-written or broken file never replaces a good one); the stamps are kept
//! either way, so a broken file is not re-read until it changes again. The task ends when
//! the last [`Watched`] is dropped (e.g. a chain replaced by a reload).

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::file_stamp::{self, Stamp};

/// How often followed files are swept (as the device registry and TLS secrets are).
pub const SWEEP: Duration = Duration::from_secs(1);

/// The current contents of followed files, as last loaded.
pub struct Watched<T> {
    rx: watch::Receiver<Arc<T>>,
}

impl<T> Clone for Watched<T> {
    fn clone(&self) -> Self {
        Watched {
            rx: self.rx.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").finish_non_exhaustive()
    }
}

impl<T> Watched<T> {
    /// The contents as of the last sweep: a lock-free clone of an `Arc`, no file access.
    pub fn current(&self) -> Arc<T> {
        self.rx.borrow().clone()
    }
}

type Load<T, E> = Arc<dyn Fn() -> Result<T, E> + Send + Sync>;

/// Load `paths` now with `load` (blocking: call it where blocking is allowed, as when an
/// authentication chain is built) and follow them: every `every`, a task on the current
/// tokio runtime sweeps their stamps and loads them again when one changed. Without a
/// runtime (a CLI command) nothing sweeps and the value stays as loaded. `what` names the
/// contents in the logs ("service accounts file", ...).
pub fn follow<T, E>(
    what: &'static str,
    paths: Vec<PathBuf>,
    every: Duration,
    load: impl Fn() -> Result<T, E> + Send + Sync + 'static,
) -> Result<Watched<T>, E>
where
    T: Send + Sync + 'static,
    E: Display + Send + 'static,
{
    // Stamps first, then the contents: a change in between shows up at the next sweep.
    let stamps = stamps(&paths);
    let initial = load()?;
    let (tx, rx) = watch::channel(Arc::new(initial));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(sweep(what, paths, stamps, every, Arc::new(load), tx));
    }
    Ok(Watched { rx })
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<Stamp>> {
    paths.iter().map(|p| file_stamp::stamp(p)).collect()
}

async fn sweep<T, E>(
    what: &'static str,
    paths: Vec<PathBuf>,
    mut seen: Vec<Option<Stamp>>,
    every: Duration,
    load: Load<T, E>,
    tx: watch::Sender<Arc<T>>,
) where
    T: Send + Sync + 'static,
    E: Display + Send + 'static,
{
    let paths = Arc::new(paths);
    loop {
        tokio::time::sleep(every).await;
        if tx.is_closed() {
            return; // nobody reads it any more
        }
        let swept = paths.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || stamps(&swept)).await else {
            return; // the runtime is shutting down
        };
        if now == seen {
            continue;
        }
        seen = now;
        let load = load.clone();
        match tokio::task::spawn_blocking(move || load()).await {
            Ok(Ok(value)) => {
                tracing::info!(target: "file_watch", "{what} reloaded");
                tx.send_replace(Arc::new(value));
            }
            Ok(Err(e)) => {
                tracing::warn!(target: "file_watch", "{e}; keeping the previous {what}");
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests write their fixtures synchronously"
)]
mod tests {
    use super::*;

    fn read(path: &std::path::Path) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    /// On a paused clock: the sweeps take no real time (tokio does not advance the clock
    /// while a `spawn_blocking` sweep runs, so each one sees the file as written).
    #[tokio::test(start_paused = true)]
    async fn a_changed_file_is_published_and_a_broken_one_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let file = path.clone();
        let watched = follow("test file", vec![path.clone()], SWEEP, move || {
            let text = read(&file)?;
            if text.starts_with("bad") {
                return Err(format!("bad contents {text}"));
            }
            Ok(text)
        })
        .unwrap();
        assert_eq!(*watched.current(), "one");

        std::fs::write(&path, "two, longer").unwrap();
        let mut rx = watched.rx.clone();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*watched.current(), "two, longer");

        std::fs::write(&path, "bad, and longer still").unwrap();
        // Several sweeps: the broken file is seen and skipped, the value stays.
        tokio::time::sleep(SWEEP * 3).await;
        assert_eq!(*watched.current(), "two, longer");
    }

    #[test]
    fn without_a_runtime_the_value_stays_as_loaded() {
        let watched = follow("test", Vec::new(), SWEEP, || Ok::<_, String>(7)).unwrap();
        assert_eq!(*watched.current(), 7);
    }
}
