//! A scripted HTTPS server standing in for a custom authentication server: HTTP/1.1 with
//! keep-alive (hyper) over tokio-rustls, a `localhost` certificate from a [`Pki`], every request
//! counted (and recorded, unless started with [`ScriptedServer::counting`]) and answered
//! by the test's script.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gatehouse_certs::CertInfo;
use gatehouse_config::PrivateKeyAlgorithm;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::tls::Pki;

/// One request as the scripted server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub target: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    /// CN of the client certificate, when one was presented.
    pub client_cn: Option<String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The answer to a request: HTTP status and JSON body.
pub type Script = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

/// What the server keeps of its requests.
struct Log {
    count: AtomicU64,
    /// `None`: count only.
    seen: Option<Mutex<Vec<Seen>>>,
}

/// HTTPS on 127.0.0.1 with a `localhost` certificate from `pki`; HTTP/1.1 with
/// keep-alive; each request counted (and recorded), answered by the script. The accept
/// loop runs on the runtime it is started on; it stops on drop.
pub struct ScriptedServer {
    pub port: u16,
    log: Arc<Log>,
    task: JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedServer {
    /// Records every request ([`Self::seen`]); with `client_ca`, requires a client
    /// certificate issued by it (mTLS).
    pub async fn start(
        pki: &Pki,
        client_ca: Option<&CertificateDer<'static>>,
        script: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> ScriptedServer {
        Self::start_with(pki, client_ca, true, Arc::new(script)).await
    }

    /// Counts requests ([`Self::requests`]) without recording them (for long runs).
    pub async fn counting(
        pki: &Pki,
        script: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> ScriptedServer {
        Self::start_with(pki, None, false, Arc::new(script)).await
    }

    async fn start_with(
        pki: &Pki,
        client_ca: Option<&CertificateDer<'static>>,
        record: bool,
        script: Script,
    ) -> ScriptedServer {
        let issued = pki.server(PrivateKeyAlgorithm::Ec256);
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem().as_bytes()).expect("key");
        let builder = rustls::ServerConfig::builder();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.clone()).expect("client CA");
                builder.with_client_cert_verifier(
                    rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                        .build()
                        .expect("client verifier"),
                )
            }
        };
        let config = builder
            .with_single_cert(issued.chain().to_vec(), key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Log {
            count: AtomicU64::new(0),
            seen: record.then(|| Mutex::new(Vec::new())),
        });
        let server_log = log.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                tcp.set_nodelay(true).ok();
                let acceptor = acceptor.clone();
                let script = script.clone();
                let log = server_log.clone();
                connections.spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_connection(tls, script, log).await;
                    }
                });
                // Reap finished connections so a long run does not accumulate them.
                while connections.try_join_next().is_some() {}
            }
        });
        ScriptedServer { port, log, task }
    }

    /// `https://localhost:<port><path>`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// The requests so far, oldest first (empty for a [`Self::counting`] server).
    pub fn seen(&self) -> Vec<Seen> {
        match &self.log.seen {
            Some(seen) => seen.lock().expect("seen").clone(),
            None => Vec::new(),
        }
    }

    /// How many requests were answered so far.
    pub fn requests(&self) -> u64 {
        self.log.count.load(Ordering::Relaxed)
    }
}

/// Serves one connection with hyper (HTTP/1.1, keep-alive) until the client closes it.
async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    script: Script,
    log: Arc<Log>,
) {
    let client_cn = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| CertInfo::from_der(leaf).ok())
        .and_then(|info| info.common_name);
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let (script, log, client_cn) = (script.clone(), log.clone(), client_cn.clone());
        async move {
            let (parts, body) = request.into_parts();
            assert!(
                parts.method == hyper::Method::POST,
                "not a POST: {} {}",
                parts.method,
                parts.uri
            );
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let seen = Seen {
                target: parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| parts.uri.to_string(), |p| p.to_string()),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                        (n.as_str().to_owned(), v)
                    })
                    .collect(),
                body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                client_cn,
            };
            let (status, answer) = script(&seen);
            log.count.fetch_add(1, Ordering::Relaxed);
            if let Some(all) = &log.seen {
                all.lock().expect("seen").push(seen);
            }
            hyper::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(answer)))
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}
