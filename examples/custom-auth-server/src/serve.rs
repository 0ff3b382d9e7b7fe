//! The `serve` subcommand: bind, print the bound address, accept connections until SIGINT
//! or SIGTERM, then let open connections finish (up to [`DRAIN`]).
//!
//! The accept loop only accepts: each connection gets its own task, which does the TLS
//! handshake (under [`HANDSHAKE_TIMEOUT`]) and then serves HTTP/1.1 with keep-alive, as the
//! broker reuses its connections. A semaphore caps open connections before `accept()`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn, Instrument};

use crate::http::{self, App};
use crate::store::UserStore;
use crate::tls::{self, TlsError};
use crate::users::UsersError;

/// Time a client has for its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers (also how long an idle keep-alive
/// connection stays open).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Time open connections get to finish at shutdown.
pub const DRAIN: Duration = Duration::from_secs(5);

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub users: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub max_connections: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot print the bound address: {0}")]
    Stdout(std::io::Error),
}

/// Runs the server until a shutdown signal. The first line on stdout is
/// `listening on <address>` (the real port when `listen` asks for port 0).
pub async fn run(options: ServeOptions) -> Result<(), ServeError> {
    let config = tls::server_config(&options.cert, &options.key, options.client_ca.as_deref())?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let app = Arc::new(App::new(UserStore::open(&options.users)?));
    let bind_failed = |source| ServeError::Bind {
        addr: options.listen,
        source,
    };
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(bind_failed)?;
    let local = listener.local_addr().map_err(bind_failed)?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {local}")
        .and_then(|()| stdout.flush())
        .map_err(ServeError::Stdout)?;
    drop(stdout);
    info!(target: "server", %local, mtls = options.client_ca.is_some(),
        "custom authentication server listening (API 0.5.0)");

    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // E.g. out of file descriptors: wait rather than spin.
                    warn!(target: "server", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let span = tracing::info_span!("conn", %peer);
        tokio::spawn(
            connection(
                tcp,
                acceptor.clone(),
                Arc::clone(&app),
                graceful.watcher(),
                slot,
            )
            .instrument(span),
        );
    }

    drop(listener);
    info!(target: "server", "shutting down");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(target: "server", "connections still open after {DRAIN:?}; closing them");
    }
    Ok(())
}

/// One connection: TLS handshake, then HTTP/1.1 requests until the client closes.
async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    watcher: Watcher,
    _slot: OwnedSemaphorePermit,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            warn!(target: "tls", "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            warn!(target: "tls", "TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let service = service_fn(move |request| http::handle(Arc::clone(&app), request));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(connection).await {
        debug!(target: "http", "connection ended: {e}");
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
