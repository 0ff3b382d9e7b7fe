//! Sans-IO MQTT 5.0 / 3.1.1 protocol layer for Gatehouse.
//!
//! # Layout
//! - [`packet`]: the packet model, one set of types for both protocol versions.
//! - [`reason`]: v5 reason codes and their v3.1.1 return-code mapping.
//! - [`codec`]: check-then-parse framing, decoding with every malformed/protocol-error
//!   rule of the OASIS specs, and encoding (with a zero-copy path for PUBLISH fan-out).
//! - [`topic`]: topic name / filter validation, matching, shared-subscription parsing.
//!
//! Nothing here does I/O, so the broker, the fuzzers and the benchmarks share it.

pub mod codec;
pub mod packet;
pub mod reason;
pub mod topic;

pub use packet::*;
pub use reason::ReasonCode;
