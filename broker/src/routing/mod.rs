//! Routing: the subscription index, the retained store and the fan-out of a message to
//! the sessions that want it.

pub mod index;
pub mod retained;
mod router;

pub use retained::{Caps as RetainedCaps, RetainRefused};
pub use router::{
    ClusterLink, Durability, Durable, Forwarded, RetainedCursor, RetainedSink, Routed, Router,
    Settled, SubEntry, SubscribeOutcome,
};
