//! Noticing that a file changed without reading it: TLS secrets, trusted CAs, the
//! device registry and the custom server's client certificate are all polled this way.
//!
//! Polling (a `stat` per file and check) sees Kubernetes-style symlink swaps, editors'
//! rename-over and network file systems alike, where inotify misses some of them.

use std::path::Path;
use std::time::SystemTime;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// `None` when the file cannot be `stat`ed (e.g. it does not exist).
#[allow(
    clippy::disallowed_methods,
    reason = "one stat; every caller runs at start-up or on a blocking thread (file_watch, the device registry and TLS pollers, reload)"
)]
pub fn stamp(path: &Path) -> Option<Stamp> {
    // `metadata` follows symlinks, so a swapped `..data` link counts as a change.
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}
