//! The state store (behaviour.md §5, statestore.md): a key-value store inside the broker,
//! reached over MQTT request/response.
//!
//! This module holds the pure, I/O-free foundation only; nothing here touches a socket,
//! a session or the router, so every rule of the spec can be unit tested byte for byte:
//! - [`error`]: the `-ERR ...` replies, with the exact strings clients compare (§2.4).
//! - [`resp3`]: the RESP3 framing of request payloads, reply and notification payloads.
//! - [`request`]: a request payload parsed into a typed [`request::Request`] (§2.1, §2.2, §10).
//! - [`hlc`]: hybrid logical clock timestamps (`__ts`, `__ft`) and the server clock (§3).
//! - [`stamps`]: the `__ts` / `__ft` header checks in the spec's order, and the fencing check (§3.4).
//! - [`store`]: the key map: SET/GET/DEL/VDEL, expiry, quota, KEYNOTIFY registrations, SCAN.
//! - [`topic`]: the request topic, forbidden response topics and notification topics (§1, §4.2).

pub mod error;
pub mod hlc;
pub mod request;
pub mod resp3;
pub mod stamps;
pub mod store;
pub mod topic;

#[cfg(test)]
mod proptests;

pub use error::ErrorReply;
pub use hlc::{Hlc, HybridClock, SystemClock, WallClock};
pub use request::{Request, SetCondition};
pub use resp3::{Notification, Reply};
