//! The real `custom-auth-server` binary over real HTTPS: certificates are issued at test
//! time, each test starts its own server on port 0 and talks to it with a hyper client over
//! tokio-rustls that trusts only the test CA.

mod add_user;
mod api;
mod common;
mod mtls;
mod reload;
