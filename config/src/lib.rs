//! Gatehouse configuration: one YAML file, in AIO's vocabulary (`shared/spec/config.md`).
//!
//! Two forms are accepted and told apart automatically:
//! - the **native form**, one document with `dataDir`, `listeners`, `authentications`,
//!   `authorizations`, `issuers`, `certificates`, `secrets`, `configMaps`, `broker`,
//!   `diagnostics`, `persistence`;
//! - **Kubernetes manifests**, a stream of AIO `BrokerListener` / `BrokerAuthentication` /
//!   `BrokerAuthorization` and cert-manager `Issuer` / `ClusterIssuer` / `Certificate`
//!   objects, plus the `persistence` of an AIO `Broker` (other kinds, and the Broker's other
//!   fields, are skipped with a warning; broker limits, diagnostics and the data dir keep
//!   their defaults).
//!
//! Both produce the same [`Config`], with every default applied. Loading stops at the first
//! YAML syntax or type error (with its path and line); validation then reports *all*
//! remaining problems at once, each as `<yaml path>: <what was found and what is allowed>`.
//!
//! # Layout
//! - [`model`]: the typed configuration, one module per concern.
//! - `raw`: the resources as written, before defaults that depend on other fields.
//! - `yaml`: syntax errors with line/column, type errors with their YAML path.
//! - `manifest`: the Kubernetes manifest form.
//! - `validate`: every cross-field and cross-resource rule.
//! - [`tokens`]: `{principal.*}` token syntax, shared with the broker's policy compiler.
//! - [`glob`]: the one glob dialect (SCAN, authorization, persistence), shared with the broker.
//! - [`dn`]: RFC 4514 distinguished names (`authorizationAttributes` subjects).
//! - [`duration`]: Go-syntax durations (`2160h`, `1h30m`, `500ms`).
//! - [`size`]: sizes in bytes (`1GiB`, `10Gi`, `500M`).
//! - `enums`: case-insensitive enum values (`Mqtt`/`mqtt`, `ClusterIp`/`clusterIP`).
//! - [`error`]: [`ConfigError`] and [`Problem`].
//!
//! Decisions where the spec is silent are documented on the fields they concern, e.g. port
//! `0` (any free port), WebSockets `path` (absent = any path), relative paths (relative to
//! the config file, see [`load_file`]).

#![allow(
    clippy::disallowed_methods,
    reason = "a synchronous library: the broker loads configuration at start-up and on reload, the CLI at once"
)]

pub mod dn;
pub mod duration;
mod enums;
pub mod error;
pub mod glob;
mod load;
mod manifest;
pub mod model;
mod raw;
pub mod size;
pub mod tokens;
mod validate;
mod yaml;

pub use enums::CaseInsensitive;
pub use error::{ConfigError, Problem};
pub use load::{load_file, load_str, Loaded};
pub use model::*;
