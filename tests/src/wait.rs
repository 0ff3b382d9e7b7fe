//! Waiting for a condition instead of for a fixed time (issue 17): a test that polls is
//! as fast as the broker allows, and a slow machine only makes it slower, not flaky.
//!
//! A fixed sleep stays where it is what a test asserts ("nothing arrives within X",
//! "after N sweeps the old value is still in force") or where the broker's own clock is
//! what is measured (an expiry decremented by the time queued).

use std::future::Future;
use std::time::Duration;

/// How often a condition is checked.
pub const POLL: Duration = Duration::from_millis(20);

/// Wait until `condition` holds, checking every [`POLL`]; panics naming `what` when it
/// still does not hold after `within`.
pub async fn until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    until_async(within, what, || std::future::ready(condition())).await;
}

/// [`until`] with a condition that is itself asynchronous (a scrape, a login).
pub async fn until_async<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still waiting after {within:?}: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
