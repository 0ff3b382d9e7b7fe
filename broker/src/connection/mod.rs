//! The tasks of a network connection: each owns the socket in turn, the first reads
//! and answers CONNECT under the connect deadline, the second serves the session until
//! either side ends it.
//!
//! # Flow
//! [`serve`] → [`handshake`] (read CONNECT, validate, attach the session, CONNACK) →
//! a task of its own, `serve_loop::run` (one wait over socket reads, socket writes,
//! the session's wake-up, one timer for keep alive and credential expiry, a takeover
//! kick and, per principal, re-authentication and the device registry) → exit: a v5
//! DISCONNECT with the reason where one applies, then detach (will, expiry), then a
//! bounded lingering close (`exit::linger`) after a DISCONNECT. Reads hold no buffer
//! while the client is quiet (`read`).

mod aliases;
mod exit;
mod grants;
mod handshake;
mod held_acks;
mod inbound;
mod logs;
mod outbound;
mod read;
mod serve_loop;
mod state_store;

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use gatehouse_protocol::codec;
use gatehouse_protocol::{Auth, AuthProperties, Packet, ProtocolVersion, ReasonCode, Will};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::auth::device_registry::RegistryWatch;
use crate::auth::{Chain, Principal, Reauth};
use crate::authz::{Action, Authorizer};
use crate::counters::PortMetrics;
use crate::registry::Broker;
use crate::session::Session;

/// Stop reading from a client whose unsent output exceeds this: a client that does not
/// read its acknowledgements must not make us buffer without bound.
const READ_PAUSE_BYTES: usize = 1 << 20;
/// Stop moving queued deliveries into the write buffer beyond this; they wait in the
/// (bounded) session queue instead.
const DRAIN_HIGH_WATER: usize = 64 * 1024;

/// What the port knows about a connection's security before CONNECT: its
/// authentication chain and the client certificate chain from the TLS handshake.
#[derive(Debug, Default)]
pub struct PortSecurity {
    pub chain: Option<Arc<Chain>>,
    /// Applied only with `chain` (AIO: authorization needs authentication on the port).
    pub authz: Option<Arc<Authorizer>>,
    /// Leaf first; empty without TLS or without a client certificate.
    pub peer_certs: Vec<CertificateDer<'static>>,
    /// The port's counters.
    pub metrics: Arc<PortMetrics>,
}

/// A port's authentication chain and authorization policy, as configured, and its
/// counters (resolved once when the port is bound, so no packet ever looks them up).
#[derive(Debug, Clone, Default)]
pub struct PortAuth {
    pub chain: Option<Arc<Chain>>,
    pub authz: Option<Arc<Authorizer>>,
    pub metrics: Arc<PortMetrics>,
}

impl PortAuth {
    /// With the client certificate chain from this connection's TLS handshake.
    pub fn with_peer_certs(self, peer_certs: Vec<CertificateDer<'static>>) -> PortSecurity {
        PortSecurity {
            chain: self.chain,
            authz: self.authz,
            peer_certs,
            metrics: self.metrics,
        }
    }
}

/// An accepted socket's context, boxed once at `accept` (see `transport::accept_loop`).
pub struct Incoming {
    pub broker: Arc<Broker>,
    pub auth: PortAuth,
    pub peer: SocketAddr,
    pub port: u16,
    /// Its place in the pre-CONNECT budget, dropped once CONNECT is done.
    pub slot: crate::admission::PendingSlot,
    /// Its place under the connection cap, for as long as the connection lasts.
    pub permit: crate::admission::ConnectionPermit,
    /// When it was accepted: the connect deadline counts from here.
    pub since: Instant,
    /// The client certificate chain from the TLS handshake (leaf first; empty without).
    pub peer_certs: Vec<CertificateDer<'static>>,
}

impl Incoming {
    /// The connect deadline: the TLS handshake, the WebSocket upgrade, CONNECT and its
    /// authentication must all be done by then.
    pub fn deadline(&self) -> Instant {
        self.since + self.broker.limits().connect_timeout
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// The client sent DISCONNECT with this reason; only 0x00 deletes the will.
    Disconnected(ReasonCode),
    /// The client broke the protocol: DISCONNECT with this reason (v5), then close.
    Violation(ReasonCode, Cow<'static, str>),
    KeepAliveTimeout,
    /// The principal's credentials expired: close without DISCONNECT (behaviour.md §3).
    CredentialsExpired,
    /// The X.509 client's device was disabled or removed from the device registry
    /// (why, for the log): DISCONNECT 0x87, then close.
    DeviceRevoked(String),
    TakenOver(ReasonCode),
    /// EOF or an I/O error: the network connection is simply gone.
    Closed(Cow<'static, str>),
}

/// Per-connection state; the session state proper lives in [`Session`].
pub(crate) struct Connection {
    broker: Arc<Broker>,
    /// The limits this connection was accepted under (its CONNACK announced them); a
    /// reload changes them for new connections only.
    limits: Arc<crate::limits::Limits>,
    session: Arc<Session>,
    generation: u64,
    version: ProtocolVersion,
    client_id: Arc<str>,
    /// The client's address, for the log lines (they carry it themselves: no span).
    peer: SocketAddr,
    /// The budget of authorization-denial log lines (see [`logs::DenialLog`]).
    denials: logs::DenialLog,
    /// 1.5 × the negotiated keep alive, `None` when keep alive is off.
    keep_alive_timeout: Option<Duration>,
    /// The client's Receive Maximum: our in-flight QoS 1/2 window towards it.
    client_receive_maximum: usize,
    client_maximum_packet_size: u32,
    /// Client→server topic aliases (bounded in topic bytes: past the bound, DISCONNECT
    /// 0x97).
    inbound_aliases: aliases::InboundAliases,
    /// Server→client topic aliases we have assigned, within the client's Topic Alias
    /// Maximum and our own count and byte bounds (past them, full topic names).
    outbound_aliases: aliases::OutboundAliases,
    /// Boxed: a few hundred bytes that most connections do not have.
    will: Option<Box<Will>>,
    session_expiry: u32,
    /// CONNECT had Session Expiry 0; a DISCONNECT may then not raise it (§3.14.2.2.2).
    connect_expiry_was_zero: bool,
    /// PUBACK/PUBREC waiting for congested subscribers to drain.
    held_acks: held_acks::HeldAcks,
    /// Subscribers this client's QoS 0 PUBLISHes found congested: it is not read until
    /// they drain (for at most `QOS0_HOLD_LIMIT` each), so a publisher faster than the
    /// broker is slowed through TCP instead of having its messages read, routed and then
    /// dropped (see `Connection::paused`).
    paused_for: smallvec::SmallVec<[Arc<Session>; 1]>,
    /// Cluster mode: a PUBLISH of this client found the way to the other nodes congested
    /// (the highest QoS among those that did, which sets how long it may be held): it is
    /// not read until that clears, as for `paused_for`.
    paused_forwarding: Option<gatehouse_protocol::QoS>,
    /// Cluster mode: a retained clear of this client's found the node's budget for
    /// clears' records spent (`RetainedSink::paced_until`): it is not read until then.
    paused_until: Option<tokio::time::Instant>,
    /// `None` on ports without authentication (anonymous). Boxed: a hundred-odd bytes that
    /// anonymous connections do not have.
    principal: Option<Box<Principal>>,
    /// The port's authentication chain (for re-authentication).
    chain: Option<Arc<Chain>>,
    /// The port's authorization policy; `None` = everything allowed.
    authz: Option<Arc<Authorizer>>,
    /// The MQTT v5 Authentication Method of CONNECT; re-authentication must use it.
    auth_method: Option<String>,
    /// A re-authentication in progress (AUTH 0x19 sent by the client).
    reauth: Option<Pin<Box<dyn Future<Output = Reauth> + Send>>>,
    /// What the client's next packet waits for (boxed: most connections never wait):
    /// a state store request's answer from the shared store, or, in cluster mode, a
    /// SUBACK / UNSUBACK waiting until the session's record in the sessions bucket has
    /// the change (`Connection::send_after`). No further packet of the client's is
    /// handled meanwhile, so answers and acknowledgements keep their order. One field for
    /// both: a connection's task state stays within its allocation class.
    waiting: Option<Box<Waiting>>,
    wbuf: BytesMut,
    /// The port's counters (PUBLISH in and out).
    metrics: Arc<PortMetrics>,
    /// Retained messages still owed to this connection's new subscriptions, oldest
    /// SUBSCRIBE first, fed to the session queue by `drain` as it empties. They belong to
    /// the connection: MQTT sends retained messages on subscribe to the client that
    /// subscribed, so a takeover or reconnect does not inherit them.
    retained_backlog: std::collections::VecDeque<outbound::PendingRetained>,
}

/// Serve one accepted connection: read and answer CONNECT under the connect deadline in
/// this task, then serve the session in a task of its own.
///
/// Two tasks because a task's future is allocated at its largest state for the task's
/// whole life: the handshake's state (authentication, the CONNECT answer) would otherwise
/// stay allocated in every connected client's task, and the serve loop's in every socket
/// that never sends CONNECT. And within this task, what waits for CONNECT holds only the
/// stream, the box and the read state: answering is boxed once CONNECT is read, and the
/// deadline is kept by the pre-CONNECT sweeper (`admission::expire_pending`, which fails
/// the stream) rather than by a timer per socket. Never panics on peer input.
///
/// Not an `async fn`: its arguments would be kept twice in every task (as arguments and as
/// the locals they become); the block captures each once.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice in every pre-CONNECT task"
)]
pub fn serve<S>(mut stream: S, incoming: Box<Incoming>) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    async move {
        // Registering the socket with epoll queued a "writable" event for it. Until the
        // runtime collects that event, this socket keeps its early place in the kernel's
        // ready list, so its next packet would be reported before packets that reached
        // other sockets first (a PUBLISH overtaking another client's SUBSCRIBE sent just
        // before it). Yielding lets the runtime poll epoll before this connection
        // answers CONNECT.
        tokio::task::yield_now().await;
        let first = handshake::read_connect(&mut stream, &incoming.broker).await;
        Box::pin(answer(stream, incoming, first)).await
    }
}

/// Answer the CONNECT that [`serve`] read (or log why there is none), then start the
/// serve loop's task.
async fn answer<S>(
    mut stream: S,
    incoming: Box<Incoming>,
    first: Result<(Box<gatehouse_protocol::Connect>, BytesMut), String>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (peer, port) = (incoming.peer, incoming.port);
    let (connect, rbuf) = match first {
        Ok(read) => read,
        Err(reason) => {
            tracing::info!(target: "conn", %peer, port, "connection refused: {reason}");
            let _ = stream.shutdown().await;
            return;
        }
    };
    let deadline = incoming.deadline();
    let Incoming {
        broker,
        auth,
        slot,
        permit,
        peer_certs,
        ..
    } = *incoming;
    let security = auth.with_peer_certs(peer_certs);
    // No span per connection (it cost ~390 bytes per client): the lines name the client.
    let answer = tokio::time::timeout_at(
        deadline,
        handshake::accept(connect, rbuf, &mut stream, &broker, &security, (peer, port)),
    )
    .await;
    // CONNECT done (or refused): no longer pending.
    drop(slot);
    let (conn, rbuf, kicked, released) = match answer {
        Ok(Ok(accepted)) => accepted,
        // `accept` logged the refusal with the CONNECT's fields.
        Ok(Err(())) => {
            let _ = stream.shutdown().await;
            return;
        }
        Err(_) => {
            tracing::info!(target: "conn", %peer, port, "no CONNACK before the connect deadline; closing");
            return;
        }
    };
    let running = Box::new(serve_loop::Running {
        conn,
        stream,
        rbuf,
        kicked,
        released,
        permit,
    });
    tokio::spawn(serve_loop::run(running));
}

impl Connection {
    /// What tells the serve loop that an X.509 client's device was disabled or removed
    /// (boxed: most clients have none, and the serve loop's state is in every task).
    fn registry_watch(&self) -> Option<Box<RegistryWatch>> {
        let check = self.principal.as_ref()?.registry.as_ref()?;
        Some(Box::new(check.watch()))
    }

    /// When the principal's credentials expire, on the runtime's clock.
    fn credentials_at(&self) -> Option<Instant> {
        self.principal
            .as_ref()?
            .expiry
            .map(serve_loop::until_expiry)
    }

    /// Apply the answer to a re-authentication (behaviour.md §3).
    fn on_reauth(&mut self, answer: Reauth) -> Result<(), Exit> {
        let mut auth = Auth {
            reason_code: ReasonCode::SUCCESS,
            properties: AuthProperties {
                authentication_method: self.auth_method.clone(),
                ..Default::default()
            },
        };
        match answer {
            Reauth::Success(mut principal) => {
                // AUTH carries no user name: keep the one from CONNECT unless the method
                // names the client itself (X.509 CN, service account).
                if principal.username.is_none() {
                    principal.username = self.principal.as_ref().and_then(|p| p.username.clone());
                }
                tracing::info!(
                    target: "auth",
                    client_id = &*self.client_id,
                    method = principal.method,
                    "client re-authenticated"
                );
                let changed = self.principal.as_deref() != Some(&principal);
                self.principal = Some(Box::new(principal));
                if changed {
                    // New attributes or even another identity: what the session was
                    // granted under the old principal is re-checked under the new one.
                    self.recheck_grants("re-authenticated");
                    if let Some(p) = &self.principal {
                        let mut st = self.session.lock();
                        st.owner = crate::session::Owner::Principal(Box::new(p.identity()));
                        // A retransmitted request must not get an answer computed under
                        // the old principal (a GET of a key only it could read).
                        st.state_store_replies.clear();
                        self.session.save_meta(&st, 0);
                    }
                    // Cluster mode: the will in the session's record is authorized for
                    // the new principal when another node publishes it.
                    if let Some(cluster) = self.broker.cluster_sessions.get().and_then(|r| {
                        r.as_any()
                            .downcast_ref::<crate::cluster::sessions::ClusterSessions>()
                    }) {
                        cluster.reauthenticated(
                            &self.session,
                            self.authz.as_ref(),
                            self.principal.as_deref(),
                        );
                    }
                }
            }
            Reauth::Continue(why) => {
                tracing::warn!(
                    target: "auth",
                    client_id = &*self.client_id,
                    "re-authentication could not be checked: {why}"
                );
                auth.reason_code = ReasonCode::CONTINUE_AUTHENTICATION;
            }
            Reauth::Failed(rc, why) => {
                tracing::info!(
                    target: "auth",
                    client_id = &*self.client_id,
                    "re-authentication failed: {why}"
                );
                return Err(Exit::Violation(rc, "re-authentication failed".into()));
            }
        }
        self.send(&Packet::Auth(auth));
        Ok(())
    }

    /// Whether the port's policy allows `action` (no policy: everything). Fails closed:
    /// with a policy but no principal, nothing is allowed.
    fn allowed(&self, action: &Action<'_>) -> bool {
        match (&self.authz, &self.principal) {
            (None, _) => true,
            (Some(authz), Some(principal)) => {
                authz.check(principal, &self.client_id, action).allowed
            }
            (Some(_), None) => false,
        }
    }

    /// [`Self::allowed`] for what the client asks for now (PUBLISH, SUBSCRIBE, a state
    /// store request): a denial is logged at info, within the connection's budget of
    /// denial lines. Re-checks of earlier grants use `allowed`, which logs nothing.
    fn permitted(&self, action: &Action<'_>) -> bool {
        let denied = match (&self.authz, &self.principal) {
            (None, _) => return true,
            (Some(authz), Some(principal)) => {
                let decision = authz.check(principal, &self.client_id, action);
                if decision.allowed {
                    return true;
                }
                decision.reason
            }
            (Some(_), None) => "no authenticated principal",
        };
        self.log_denial(action, denied);
        false
    }

    /// Queue a control packet for the client.
    fn send(&mut self, packet: &Packet) {
        if let Err(e) = codec::encode(packet, self.version, &mut self.wbuf) {
            tracing::warn!(
                target: "conn",
                client_id = &*self.client_id,
                "could not encode {}: {e}",
                packet.name()
            );
        }
    }
}

/// See `Connection::waiting`.
enum Waiting {
    StateStore(state_store::Pending),
    Ack(PendingAck),
}

/// An acknowledgement that leaves once `wait` resolves (see `Connection::waiting`).
struct PendingAck {
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    packet: Packet,
}

impl Connection {
    /// Send `packet` now, or once `wait` resolves (the serve loop awaits it).
    pub(super) fn send_after(
        &mut self,
        wait: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
        packet: Packet,
    ) {
        match wait {
            None => self.send(&packet),
            Some(wait) => {
                self.waiting = Some(Box::new(Waiting::Ack(PendingAck { wait, packet })));
            }
        }
    }

    /// Whether the next packet waits (`Connection::waiting`).
    pub(super) fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// The waited-for acknowledgement may leave now.
    pub(super) fn on_ack_ready(&mut self) {
        if matches!(self.waiting.as_deref(), Some(Waiting::Ack(_))) {
            if let Some(Waiting::Ack(p)) = self.waiting.take().map(|w| *w) {
                self.send(&p.packet);
            }
        }
    }
}

/// A wait of `Connection::waiting` that is over.
enum Waited {
    StateStore(crate::statestore::service::Answer),
    Ack,
}

impl Waiting {
    pub(super) fn poll_done(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Waited> {
        match self {
            Waiting::StateStore(p) => p.poll_answer(cx).map(Waited::StateStore),
            Waiting::Ack(a) => a.wait.as_mut().poll(cx).map(|()| Waited::Ack),
        }
    }
}
