//! Gatehouse certificate management: what cert-manager and trust-manager do for AIO's MQTT
//! broker, built in (`shared/spec/behaviour.md` §2).
//!
//! - Manual TLS ports load a chain and key from files ([`load_chain_and_key`]) into a
//!   rustls [`CertifiedKey`](rustls::sign::CertifiedKey); missing files ([`LoadError::NotFound`])
//!   mean "wait for the secret", anything else is reported with the file it concerns.
//! - Automatic TLS ports and `certificates:` entries are issued by an issuer and written to a
//!   secret folder ([`ensure()`]), renewed `renewBefore` ahead of expiry ([`renewal`]).
//! - Issuers ([`Issuers`], built by [`bootstrap`]): the quickstart root CA of the default
//!   issuer ([`QuickstartCa`]), `ca` issuers ([`Authority`]), `selfSigned` issuers.
//! - The trust bundle `<dataDir>/trust/ca.crt` ([`TrustBundle`]) lists every root.
//!
//! Everything that depends on time takes `now`, so renewal and rotation are tested without
//! waiting; nothing here runs tasks or timers (the broker schedules [`bootstrap`] and
//! [`ensure()`] at the times they return).
//!
//! Cryptography is aws-lc-rs throughout (rcgen and rustls use it as their backend): it
//! generates RSA keys (up to 8192 bits) and P-521 keys, which ring cannot.
//!
//! # Layout
//! - [`keys`]: key generation for every `PrivateKeyAlgorithm`, keys read from files.
//! - `pem`: PEM writing (reading is rustls-pki-types' `PemObject`, in `load`).
//! - [`x509`]: facts read from a certificate ([`CertInfo`]), signature checks.
//! - [`load`]: chain + key files → `CertifiedKey`, with clear errors.
//! - [`issue`]: what to issue ([`CertRequest`]) and the result ([`Issued`]); self-signing.
//! - [`authority`]: a CA (root or intermediate) with its chain, issuing.
//! - [`signer`]: quickstart, `ca` or `selfSigned`, behind one type.
//! - [`quickstart`]: the default issuer's root CA in `<dataDir>/ca/`, rotation.
//! - [`secret`]: secret folders (`tls.crt`, `tls.key`, `ca.crt`), written atomically.
//! - [`ensure`](mod@ensure): keep or (re)issue a secret's certificate.
//! - [`issuers`]: the registry and [`bootstrap`] order.
//! - [`bundle`]: the trust bundle.
//! - [`renewal`]: when to renew.
//! - [`san`]: default subject alternative names of port certificates.
//! - `fs`: atomic writes, private file modes.

#![allow(
    clippy::disallowed_methods,
    reason = "a synchronous library (no tasks): the broker calls it at start-up and from blocking threads (renewal, the manual TLS poller, reload)"
)]

pub mod authority;
pub mod bundle;
pub mod ensure;
mod fs;
pub mod issue;
pub mod issuers;
pub mod keys;
pub mod load;
mod pem;
pub mod quickstart;
pub mod renewal;
pub mod san;
pub mod secret;
pub mod signer;
pub mod x509;

pub use authority::{Authority, AuthorityError};
pub use bundle::{BundleWriteError, TrustBundle};
pub use ensure::{ensure, CertSpec, EnsureError, Ensured, Outcome, Reason};
pub use issue::{issue_self_signed, CertRequest, IssueError, Issued, Usage, CLOCK_SKEW};
pub use issuers::{bootstrap, Bootstrap, Issuers, IssuersError};
pub use keys::{Key, KeyError, KeyFamily};
pub use load::{load_chain_and_key, read_certificates, InvalidFiles, LoadError, LoadedCert};
pub use pem::{encode_cert, encode_certs, encode_key};
pub use quickstart::{QuickstartCa, QuickstartError, QuickstartOptions};
pub use secret::{read_secret, write_secret, SecretWriteError};
pub use signer::Signer;
pub use x509::{CertInfo, CertParseError};
