//! The state store (behaviour.md §5, statestore.md): a key-value store inside the broker,
//! reached over MQTT request/response.
//!
//! The foundation is pure and I/O-free, so every rule of the spec can be unit tested byte
//! for byte:
//! - [`error`]: the `-ERR ...` replies, with the exact strings clients compare (§2.4).
//! - [`resp3`]: the RESP3 framing of request payloads, reply and notification payloads.
//! - [`request`]: a request payload parsed into a typed [`request::Request`] (§2.1, §2.2, §10).
//! - [`hlc`]: hybrid logical clock timestamps (`__ts`, `__ft`) and the server clock (§3).
//! - [`stamps`]: the `__ts` / `__ft` header checks in the spec's order, and the fencing check (§3.4).
//! - [`store`]: the key map: SET/GET/DEL/VDEL, expiry, quota, KEYNOTIFY registrations, SCAN.
//! - [`topic`]: the request topic, forbidden response topics and notification topics (§1, §4.2).
//!
//! On top of it, [`service`] is the broker service (one request in, one answer out, notifications
//! to watchers, active expiry) and [`replay`] the per-session cache that answers a retransmitted
//! request without running it twice. The connection task calls the service
//! (`connection/state_store.rs`); the broker owns it and runs its expiry task.

pub mod counters;
pub mod error;
pub mod hlc;
pub mod persist;
pub mod replay;
pub mod request;
pub mod resp3;
pub mod scan_token;
pub mod service;
pub mod stamps;
pub mod store;
pub use crate::topics as topic;

#[cfg(test)]
mod proptests;

pub use error::ErrorReply;
pub use hlc::{Hlc, HybridClock, SystemClock, WallClock};
pub use request::{Request, SetCondition};
pub use resp3::{Notification, Reply};
pub use service::StateStore;
