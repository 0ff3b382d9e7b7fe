//! Gatehouse configuration: one YAML file, in AIO's vocabulary (`shared/spec/config.md`).
//!
//! Two forms are accepted and told apart automatically:
//! - the **native form**, one document with `dataDir`, `listeners`, `authentications`,
//!   `authorizations`, `issuers`, `certificates`, `secrets`, `configMaps`, `broker`,
//!   `diagnostics`, `persistence`;
//! - **Kubernetes manifests**, a stream of AIO `BrokerListener` / `BrokerAuthentication` /
//!   `BrokerAuthorization` and cert-manager `Issuer` / `ClusterIssuer` / `Certificate`
//!   objects, plus an AIO `Broker` (its `persistence`, `diagnostics.logs.level`,
//!   `diagnostics.metrics.prometheusPort`, `advanced.clients` limits, and the data folder
//!   from the annotation [`DATA_DIR_ANNOTATION`]); other kinds, and a Broker's
//!   Kubernetes-only fields, are skipped with a warning.
//!
//! Both produce the same [`Config`], with every default applied. Loading stops at the first
//! YAML syntax error, and in the native form at the first type error (with its path and
//! line); in a manifest stream every document's type error is reported, and validation
//! still checks the other documents. Validation reports *all* problems at once, each as
//! `<yaml path>: <what was found and what is allowed>`.
//!
//! # Layout
//! - [`model`]: the typed configuration, one module per concern.
//! - `raw`: the resources as written, before defaults that depend on other fields.
//! - `yaml`: syntax errors with line/column, type errors with their YAML path.
//! - `manifest`: the Kubernetes manifest form.
//! - `validate`: every cross-field and cross-resource rule.
//! - [`paths`]: where each resource is in the YAML ([`Config::paths`]), shared by every
//!   message about it (validation, `gatehouse check`, start-up, `gatehouse explain`).
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
pub mod paths;
mod raw;
pub mod size;
pub mod tokens;
mod validate;
mod yaml;

pub use enums::CaseInsensitive;
pub use error::{ConfigError, Problem};
pub use load::{check_file, load_file, load_str, Checked, Loaded};
pub use model::*;
pub use paths::{Loc, Paths, DATA_DIR_ANNOTATION};
