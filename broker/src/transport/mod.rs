//! Listeners: bind each configured port, accept under the connection cap, and hand each
//! connection (after a WebSocket upgrade where configured) to its own task.

pub mod metered;
mod websocket;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::admission::{ConnectionCap, Evictable, PendingConnections};

use self::metered::Metered;
use crate::connection::{self, PortAuth};
use crate::registry::Broker;

/// What a port speaks, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Mqtt,
    /// MQTT over WebSockets; `path` restricts the upgrade to one request path.
    WebSockets {
        path: Option<String>,
    },
}

/// Bind `addr:port`. The unspecified IPv4 address means "every interface": bind the
/// dual-stack `[::]` when the host has IPv6, so IPv6 clients are served too.
pub async fn bind(addr: IpAddr, port: u16) -> std::io::Result<Vec<TcpListener>> {
    if addr == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        if let Ok(l) = TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).await {
            return Ok(vec![l]);
        }
    }
    let primary = TcpListener::bind((addr, port)).await?;
    let mut out = vec![primary];
    // Loopback means both loopbacks, on the same port number.
    if addr == IpAddr::V4(Ipv4Addr::LOCALHOST) && port != 0 {
        if let Ok(l) = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).await {
            out.push(l);
        }
    }
    Ok(out)
}

/// Accept connections forever. `cap` caps live connections across all ports: a permit
/// is taken right after `accept` and before the connection is served, so at most one
/// accepted client per socket waits while the cap is reached (the rest wait in the
/// kernel backlog), and idle listening sockets hold no permits. Before that, the socket
/// must find room in the pre-CONNECT budget (`pending`, see [`admission`]); a socket that
/// does not is closed at once.
#[allow(clippy::too_many_arguments)]
pub async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    tls: Option<TlsAcceptor>,
    auth: PortAuth,
    broker: Arc<Broker>,
    cap: Arc<ConnectionCap>,
    pending: Arc<PendingConnections>,
    port: u16,
) {
    // Shared by the port's connections (a WebSocket path is not copied per connection).
    let shared_transport = Arc::new(transport);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(target: "listener", port, "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let limits = broker.limits();
        let slot = match pending.admit(
            peer.ip(),
            limits.max_pending_connections,
            limits.max_pending_per_address,
        ) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::info!(target: "listener", %peer, port, "connection refused: {why}");
                drop(stream); // closed at once: nothing was read or written
                continue;
            }
        };
        let Some(permit) = cap.acquire().await else {
            return; // cap closed: shutting down
        };
        let _ = stream.set_nodelay(true);
        // Until CONNECT is done the pending slot can close the socket (see `admission`).
        let stream = Metered::new(Evictable::new(stream, slot.state()), auth.metrics.clone());
        // Everything the connection needs, in one box: the task's future then holds a
        // pointer instead of a copy of each value at every level of the call chain below
        // (an async function keeps its arguments for its whole life).
        let incoming = Box::new(connection::Incoming {
            broker: broker.clone(),
            auth: auth.clone(),
            peer,
            port,
            slot,
            permit,
            since: Instant::now(),
            peer_certs: Vec::new(),
        });
        // A task's future is allocated at its largest state from `accept` on, and every
        // socket has one, CONNECT or not: TLS and WebSocket state (several KiB) live in a
        // box of their own so a plain connection does not carry their size.
        if tls.is_none() && *shared_transport == Transport::Mqtt {
            tokio::spawn(connection::serve(stream, incoming));
        } else {
            tokio::spawn(Box::pin(secure_and_upgrade(
                stream,
                incoming,
                tls.clone(),
                shared_transport.clone(),
            )));
        }
    }
}

/// TLS handshake and/or WebSocket upgrade, then [`connection::serve`].
async fn secure_and_upgrade<S>(
    stream: S,
    incoming: Box<connection::Incoming>,
    tls: Option<TlsAcceptor>,
    transport: Arc<Transport>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (peer, port) = (incoming.peer, incoming.port);
    let Some(acceptor) = tls else {
        return upgrade(stream, incoming, &transport).await;
    };
    let deadline = incoming.deadline();
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let mut incoming = incoming;
            incoming.peer_certs = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.to_vec())
                .unwrap_or_default();
            upgrade(stream, incoming, &transport).await
        }
        Ok(Err(e)) => {
            tracing::info!(target: "listener", %peer, port, "TLS handshake failed: {e}")
        }
        Err(_) => tracing::info!(target: "listener", %peer, port, "TLS handshake timed out"),
    }
}

/// The WebSocket upgrade where the port speaks WebSockets, then [`connection::serve`].
async fn upgrade<S>(stream: S, incoming: Box<connection::Incoming>, transport: &Transport)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Transport::WebSockets { path } = transport else {
        return connection::serve(stream, incoming).await;
    };
    let (peer, port) = (incoming.peer, incoming.port);
    let max_packet = incoming.broker.limits().max_packet_size;
    let deadline = incoming.deadline();
    let upgrade = websocket::accept(stream, path.as_deref(), max_packet);
    match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => connection::serve(ws, incoming).await,
        Ok(Err(e)) => {
            tracing::info!(target: "listener", %peer, port, "WebSocket upgrade refused: {e}")
        }
        Err(_) => {
            tracing::info!(target: "listener", %peer, port, "WebSocket upgrade timed out")
        }
    }
}
