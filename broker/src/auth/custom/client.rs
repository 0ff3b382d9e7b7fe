//! The HTTP client of the custom method: the endpoint URL, the configured headers, and
//! the TLS setup (trusted roots, the broker's client certificate followed on disk).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_certs::{load_chain_and_key, LoadError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Url;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};

use super::{CustomSetupError, POOL_IDLE};
use crate::file_watch::{self, Watched};

/// The endpoint with `api-version=<version>` in its query (replacing any there), and
/// its loggable form.
pub(super) fn endpoint_url(
    endpoint: &str,
    version: &str,
) -> Result<(Url, String), CustomSetupError> {
    let invalid = |reason: String| CustomSetupError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let mut url = Url::parse(endpoint).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "https" {
        return Err(invalid(
            "the custom authentication API is HTTPS only".into(),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    url.set_fragment(None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "api-version")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in &kept {
            query.append_pair(k, v);
        }
        query.append_pair("api-version", version);
    }
    let mut shown = format!("https://{}", url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    Ok((url, shown))
}

pub(super) fn request_headers(
    configured: &BTreeMap<String, String>,
) -> Result<HeaderMap, CustomSetupError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut own_content_type = false;
    for (name, value) in configured {
        let bad = |reason: String| CustomSetupError::Header {
            name: name.clone(),
            reason,
        };
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
        // The message of a bad value never quotes it: it may be a credential.
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| bad("not a valid HTTP header value".into()))?;
        value.set_sensitive(true);
        if header == CONTENT_TYPE && !own_content_type {
            headers.remove(CONTENT_TYPE);
            own_content_type = true;
        }
        headers.append(header, value);
    }
    Ok(headers)
}

/// The system's trusted roots (the OS store, as `rustls-native-certs` reads it).
pub(super) fn system_roots() -> Result<RootCertStore, CustomSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = match found.errors.first() {
            Some(e) => e.to_string(),
            None => "none found".into(),
        };
        return Err(CustomSetupError::NoSystemRoots { reason });
    }
    for e in &found.errors {
        tracing::debug!(target: "auth", "system root certificates: {e}");
    }
    Ok(roots)
}

pub(super) fn http_client(
    roots: RootCertStore,
    identity: Option<Arc<ClientIdentity>>,
    timeout: Duration,
) -> Result<reqwest::Client, CustomSetupError> {
    let client_error = |e: &dyn std::fmt::Display| CustomSetupError::Client(e.to_string());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| client_error(&e))?
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(identity) => builder.with_client_cert_resolver(identity),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .https_only(true)
        // The server is named by the configuration; no proxy from the environment.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(POOL_IDLE)
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| client_error(&e))
}

/// The broker's client certificate for mTLS, followed by the file-watch service and
/// re-read on a blocking thread when the secret's files change (a pooled connection keeps
/// the certificate it was opened with). rustls asks for it inside the TLS handshake, so
/// the callback only takes the current value. A reload that fails keeps the previous
/// certificate.
#[derive(Debug)]
pub(super) struct ClientIdentity {
    current: Watched<Arc<CertifiedKey>>,
}

impl ClientIdentity {
    pub(super) fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<Self, LoadError> {
        let paths = vec![cert_file.clone(), key_file.clone()];
        let current = file_watch::follow(
            "custom authentication client certificate",
            paths,
            file_watch::SWEEP,
            move || load_chain_and_key(&cert_file, &key_file).map(|loaded| loaded.certified_key),
        )?;
        Ok(ClientIdentity { current })
    }

    fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.current())
    }
}

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
