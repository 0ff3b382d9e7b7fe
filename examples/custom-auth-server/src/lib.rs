//! An example custom authentication server for Gatehouse (and for any broker that speaks the
//! AIO custom authentication API 0.5.0, `shared/spec/custom-auth.md`): it checks MQTT user
//! names and passwords against a file of argon2 password hashes and answers with each user's
//! attributes and, optionally, a credential expiry.
//!
//! It is meant to be run next to the broker for username/password clients, and to be copied
//! as a template: the HTTP, TLS and file handling stay, [`decide()`] is where another policy
//! goes.
//!
//! # Layout
//! - [`api`]: the wire types of API 0.5.0 (requests, pass/fail/version bodies) and the checks
//!   on a request's method, query and content type. No I/O.
//! - [`decide`](mod@decide): the decision for one request against the users. No I/O.
//! - [`password`]: argon2 hashing and verification (PHC strings).
//! - [`users`]: the users file (YAML or JSON): model, validation, atomic writes.
//! - [`store`]: the users file as the server sees it, reloaded when it changes.
//! - [`http`]: one HTTP request → checks → decision (on a blocking thread) → response.
//! - [`tls`]: the rustls server configuration from PEM files, optional client CA (mTLS).
//! - [`serve`]: bind, accept, one task per connection (TLS handshake, HTTP/1.1 keep-alive),
//!   graceful shutdown.
//! - [`add_user`]: the `add-user` subcommand.
//! - [`cli`]: the command line.

pub mod add_user;
pub mod api;
pub mod cli;
pub mod decide;
pub mod http;
pub mod password;
pub mod serve;
pub mod store;
pub mod tls;
pub mod users;

pub use decide::{decide, Decision};
