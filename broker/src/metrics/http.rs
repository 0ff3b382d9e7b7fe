//! The metrics and health HTTP server: `GET /metrics`, `/healthz`, `/readyz`.
//!
//! hyper's HTTP/1.1 server (already in the tree under `reqwest`) parses the requests; this
//! file bounds what a client may cost: at most [`MAX_CONNECTIONS`] at once (others are
//! closed at once), [`MAX_REQUEST_BYTES`] of request head, the head within
//! [`HEADER_TIMEOUT`], the whole exchange within [`CONNECTION_TIMEOUT`], and one request
//! per connection (`Connection: close`), so an idle client holds nothing.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_config::Config;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::render;
use super::Registry;
use crate::transport;

/// Scrapers and probes connect now and then; more at once than this is a misbehaving
/// client, and its extra connections are closed.
const MAX_CONNECTIONS: usize = 16;
/// The request line and headers must fit in this (hyper's minimum buffer).
const MAX_REQUEST_BYTES: usize = 8 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

const TEXT: &str = "text/plain; charset=utf-8";

/// The address the metrics port binds: loopback when every listener binds a loopback
/// address (the local default with no configuration file stays local-only), otherwise
/// every interface, so a Prometheus elsewhere can scrape.
pub fn bind_address(config: &Config) -> IpAddr {
    if !config.listeners.is_empty()
        && config
            .listeners
            .iter()
            .all(|l| l.bind_address.is_loopback())
    {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// Bind `diagnostics.metrics.prometheusPort` (0: any free port). The error carries the
/// address that could not be bound.
pub async fn bind(config: &Config) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    let ip = bind_address(config);
    let port = config.diagnostics.metrics.prometheus_port;
    transport::bind(ip, port)
        .await
        .map_err(|e| (SocketAddr::new(ip, port), e))
}

/// Serve on the bound `sockets` (tasks in `tasks`, so they end with the server); returns
/// their addresses.
pub fn start(
    sockets: Vec<TcpListener>,
    registry: Arc<Registry>,
    tasks: &mut JoinSet<()>,
) -> Vec<SocketAddr> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut addrs = Vec::new();
    for socket in sockets {
        if let Ok(addr) = socket.local_addr() {
            tracing::info!(target: "metrics", "metrics and health on http://{addr}/metrics, /healthz, /readyz");
            addrs.push(addr);
        }
        tasks.spawn(accept_loop(socket, registry.clone(), permits.clone()));
    }
    addrs
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, permits: Arc<Semaphore>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "metrics", "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(target: "metrics", %peer, "too many metrics connections; closing this one");
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, registry).await;
        });
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, registry: Arc<Registry>) {
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let response = respond(&registry, request.method(), request.uri().path());
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(target: "metrics", %peer, "HTTP connection ended: {e}"),
        Err(_) => tracing::debug!(target: "metrics", %peer, "HTTP connection timed out"),
    }
}

/// The answer to `method path` (the query string is ignored).
pub fn respond(registry: &Registry, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return response(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /metrics, /healthz or /readyz\n".into(),
        );
    }
    if *method != Method::GET && *method != Method::HEAD {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD\n".into(),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => response(StatusCode::OK, render::CONTENT_TYPE, registry.render()),
        // Answering at all is what "alive" means: the runtime and this task run.
        "/healthz" => response(StatusCode::OK, TEXT, "ok\n".into()),
        _ => {
            let unready = registry.unready();
            if unready.is_empty() {
                response(StatusCode::OK, TEXT, "ready\n".into())
            } else {
                let mut body = String::from("not ready: these ports cannot serve yet:\n");
                for why in unready {
                    body.push_str("  ");
                    body.push_str(&why);
                    body.push('\n');
                }
                response(StatusCode::SERVICE_UNAVAILABLE, TEXT, body)
            }
        }
    }
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
