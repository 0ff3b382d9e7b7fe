//! Authorization (behaviour.md §4): allow-only rules compiled once per
//! BrokerAuthorization, and a pure decision function.
//!
//! - [`template`]: `{principal.*}` tokens and the rule that substitution never widens access.
//! - [`filter`]: topic filter matching and containment.
//! - [`policy`]: the compiled policy and [`Policy::decide`].
//! - [`authorizer`]: what ports use: the current policy, swapped on reload, and the logs.
//! - [`cache`]: the decision cache (`cache: Enabled`), one per installed policy.
//! - [`counters`]: denials by action and cache hits, which survive reloads.

pub mod authorizer;
pub mod cache;
pub mod counters;
pub mod filter;
pub mod policy;
// The substitution property, for the fuzz target and the property tests only.
#[doc(hidden)]
pub mod substitution;
pub mod template;

#[cfg(test)]
mod proptests;

pub use authorizer::Authorizer;
pub use policy::{Action, Decision, Policy};
pub use template::Subject;
