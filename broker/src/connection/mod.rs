//! The tasks of a network connection: each owns the socket in turn, the first reads
//! and answers CONNECT under the connect deadline, the second serves the session until
//! either side ends it.
//!
//! # Flow
//! [`serve`] → [`handshake`] (read CONNECT, validate, attach the session, CONNACK) →
//! a task of its own for [`Connection::run`] (one wait over socket reads, socket writes,
//! the session's wake-up, one timer for keep alive and credential expiry, a takeover
//! kick and, per principal, re-authentication and the device registry) → exit: a v5
//! DISCONNECT with the reason where one applies, then detach (will, expiry), then a
//! bounded lingering close ([`linger`]) after a DISCONNECT.

mod aliases;
mod grants;
mod handshake;
mod held_acks;
mod inbound;
mod logs;
mod outbound;
mod state_store;

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, BytesMut};
use gatehouse_protocol::codec;
use gatehouse_protocol::{
    Auth, AuthProperties, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, Will,
};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::auth::device_registry::RegistryWatch;
use crate::auth::{Chain, Principal, Reauth};
use crate::authz::{Action, Authorizer};
use crate::broker::{Broker, Detach};
use crate::counters::PortMetrics;
use crate::session::Session;

/// Stop reading from a client whose unsent output exceeds this: a client that does not
/// read its acknowledgements must not make us buffer without bound.
const READ_PAUSE_BYTES: usize = 1 << 20;
/// Stop moving queued deliveries into the write buffer beyond this; they wait in the
/// (bounded) session queue instead.
const DRAIN_HIGH_WATER: usize = 64 * 1024;
/// Lingering close ([`linger`]): after a DISCONNECT with a reason code, read and discard
/// for at most this long...
const LINGER_TIME: Duration = Duration::from_secs(1);
/// ...or at most this many bytes, whichever comes first.
const LINGER_BYTES: usize = 1 << 20;

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
/// whole life: the handshake's state (the deadline timer, the boxed CONNECT answer, this
/// function's arguments) would otherwise stay allocated in every connected client's
/// task, and the serve loop's in every socket that never sends CONNECT. Never panics on
/// peer input.
pub async fn serve<S>(
    mut stream: S,
    incoming: Box<Incoming>,
    peer_certs: Vec<CertificateDer<'static>>,
    deadline: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let first = tokio::time::timeout_at(
        deadline,
        handshake::read_connect(&mut stream, &incoming.broker),
    )
    .await;
    let (peer, port) = (incoming.peer, incoming.port);
    let (connect, rbuf) = match first {
        Ok(Ok(read)) => read,
        Ok(Err(reason)) => {
            tracing::info!(target: "conn", %peer, port, "connection refused: {reason}");
            let _ = stream.shutdown().await;
            return;
        }
        Err(_) => {
            tracing::info!(target: "conn", %peer, port, "no CONNECT before the connect deadline; closing");
            return;
        }
    };
    let Incoming {
        broker,
        auth,
        slot,
        permit,
        ..
    } = *incoming;
    let security = auth.with_peer_certs(peer_certs);
    // No span per connection (it cost ~390 bytes per client): the lines name the client.
    let answer = tokio::time::timeout_at(
        deadline,
        Box::pin(handshake::accept(
            connect,
            rbuf,
            &mut stream,
            &broker,
            &security,
            (peer, port),
        )),
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
    let running = Box::new(Running {
        conn,
        stream,
        rbuf,
        kicked,
        released,
        permit,
    });
    tokio::spawn(run(running));
}

/// A connected client's task: the connection and what it owns, in one box, so the task's
/// future holds a pointer to them rather than copies (an async function keeps its
/// arguments for its whole life, next to the locals they are moved into).
struct Running<S> {
    conn: Box<Connection>,
    /// Not split into halves: the serve loop polls reading and writing in turn from one
    /// task, so it needs neither the halves' shared allocation nor their lock on every
    /// read and write.
    stream: S,
    rbuf: BytesMut,
    kicked: oneshot::Receiver<ReasonCode>,
    released: oneshot::Sender<()>,
    /// The connection's place under the connection cap lasts as long as it does.
    permit: crate::admission::ConnectionPermit,
}

/// Not an `async fn`: its argument would be kept twice in the task (as the argument and
/// as the local it is moved into); the block below captures the box once.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its argument twice in every connected client's task"
)]
fn run<S>(mut r: Box<Running<S>>) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let exit = r
            .conn
            .serve_loop(&mut r.stream, &mut r.rbuf, &mut r.kicked)
            .await;
        let lingering = r.conn.finish(&mut r.stream, exit).await;
        let Running {
            conn,
            mut stream,
            rbuf,
            released,
            permit,
            ..
        } = *r;
        // The session is detached: a client taking it over need not wait for the
        // linger, and nothing of the connection but its socket (and its place under the
        // connection cap) is held while it lasts.
        drop(released);
        drop(conn);
        drop(rbuf);
        if lingering {
            linger(&mut stream).await;
        }
        drop(permit);
    }
}

impl Connection {
    async fn serve_loop<S>(
        &mut self,
        stream: &mut S,
        rbuf: &mut BytesMut,
        kicked: &mut oneshot::Receiver<ReasonCode>,
    ) -> Exit
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        enum Event {
            Kicked(ReasonCode),
            Wrote(std::io::Result<usize>),
            Read(std::io::Result<usize>),
            Flushed(std::io::Result<()>),
            Woken,
            Timer,
            AcksReady,
            Reauthenticated(Reauth),
            DeviceRevoked(String),
        }
        // Set after a write until a flush has gone through: framed transports
        // (WebSockets) may hold written bytes until flushed; for TCP flush is free.
        let mut dirty = false;
        // The last read filled the read buffer: the client sends faster than one small
        // read takes, so read in large chunks (see `size_read_buffer`).
        let mut streaming = false;
        // One timer serves both deadlines, and it is re-armed lazily: a packet only moves
        // `keep_alive_at` (no timer operation per packet); when the timer fires before
        // the deadlines it stands for, it is set to the nearer one.
        let mut keep_alive_at = self.keep_alive_timeout.map(|t| Instant::now() + t);
        let mut credentials_at = self.credentials_at();
        let timer = tokio::time::sleep_until(Instant::now() + FAR);
        tokio::pin!(timer);
        let mut device = self.registry_watch();
        let session = self.session.clone();
        loop {
            // Credentials that expired while packets were waiting: nothing more of this
            // client's is processed (the timer below may not have fired yet).
            if credentials_at.is_some_and(|at| at <= Instant::now()) {
                return Exit::CredentialsExpired;
            }
            // Acknowledgements released since the last round may reopen a 3.1.1 client's
            // window (`inbound_window_full`) for packets already buffered.
            self.release_held_acks();
            // Handle every complete packet already buffered.
            let mut got_packet = false;
            loop {
                if self.wbuf.len() >= READ_PAUSE_BYTES
                    || self.inbound_window_full()
                    || self.paused()
                {
                    break;
                }
                match codec::decode(rbuf, Some(self.version), self.limits.max_packet_size) {
                    Ok(Some(packet)) => {
                        got_packet = true;
                        if let Err(exit) = self.handle(packet) {
                            return exit;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Exit::Violation(e.reason, e.detail),
                }
            }
            if got_packet {
                if let Some(t) = self.keep_alive_timeout {
                    keep_alive_at = Some(Instant::now() + t);
                }
            }
            self.release_held_acks();
            self.drain();
            size_read_buffer(rbuf, streaming);
            let read_room = match rbuf.capacity() - rbuf.len() {
                // Nothing held: the read goes through the stack (`read_some`).
                0 => STACK_READ,
                room => room,
            };
            // Not reading the client, through no fault of its own: its keep alive must
            // not run out meanwhile.
            let window_full = self.inbound_window_full() || self.paused();
            let reading = self.wbuf.len() < READ_PAUSE_BYTES && !window_full;
            let writing = !self.wbuf.is_empty();
            // Only an earlier deadline moves the timer now; a later one waits for it
            // to fire.
            if let Some(at) = earliest(keep_alive_at, credentials_at) {
                if at < timer.deadline() {
                    timer.as_mut().reset(at);
                }
            }
            let timed = keep_alive_at.is_some() || credentials_at.is_some();
            // Boxed and made only when they apply (acknowledgements held, a publisher
            // paused, a re-authentication running, a device-registry client): their
            // timers and channel waits would otherwise count in every connection's task.
            let mut held = self.held_acks.front_wait().map(Box::pin);
            let mut resume = self
                .paused_for
                .first()
                .cloned()
                .map(|s| Box::pin(async move { s.wait_drained_at(QoS::AtMostOnce).await }));
            let mut revoked = device.as_mut().map(|d| Box::pin(d.revoked()));
            // Polled in this order (the order the branches are listed in): a takeover
            // first, then writing (so output drains before more input is read), then
            // reading, then the rest. A `move` closure over references and flags: what
            // it captures is stored in every waiting connection's task, so it captures
            // each thing once and the flags by value.
            let (wbuf, reauth, session) = (&self.wbuf, &mut self.reauth, &*session);
            let (kicked, stream, rbuf) = (&mut *kicked, &mut *stream, &mut *rbuf);
            let mut waiting_timer = timer.as_mut();
            let event = std::future::poll_fn(move |cx| {
                if let Poll::Ready(r) = Pin::new(&mut *kicked).poll(cx) {
                    // Sender dropped without a kick: the session was ended under us.
                    return Poll::Ready(Event::Kicked(r.unwrap_or(ReasonCode::SESSION_TAKEN_OVER)));
                }
                if writing {
                    if let Poll::Ready(r) = Pin::new(&mut *stream).poll_write(cx, wbuf) {
                        return Poll::Ready(Event::Wrote(r));
                    }
                } else if dirty {
                    if let Poll::Ready(r) = Pin::new(&mut *stream).poll_flush(cx) {
                        return Poll::Ready(Event::Flushed(r));
                    }
                }
                if reading {
                    if let Poll::Ready(r) = read_some(&mut *stream, rbuf, cx) {
                        return Poll::Ready(Event::Read(r));
                    }
                }
                if session.wake.poll(cx).is_ready() {
                    return Poll::Ready(Event::Woken);
                }
                if timed && waiting_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                if let Some(f) = reauth.as_mut() {
                    if let Poll::Ready(r) = f.as_mut().poll(cx) {
                        return Poll::Ready(Event::Reauthenticated(r));
                    }
                }
                if let Some(f) = revoked.as_mut() {
                    if let Poll::Ready(why) = f.as_mut().poll(cx) {
                        return Poll::Ready(Event::DeviceRevoked(why));
                    }
                }
                if let Some(f) = held.as_mut() {
                    if f.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::AcksReady);
                    }
                }
                if let Some(f) = resume.as_mut() {
                    if f.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::AcksReady);
                    }
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Kicked(reason) => return Exit::TakenOver(reason),
                Event::Wrote(Ok(0)) => return Exit::Closed("write returned 0".into()),
                Event::Wrote(Ok(n)) => {
                    self.wbuf.advance(n);
                    if self.wbuf.is_empty() {
                        // Written out: hold no write buffer while idle. A busy
                        // connection allocates one per batch, a few KiB per write.
                        self.wbuf = BytesMut::new();
                    }
                    dirty = true;
                }
                Event::Flushed(Ok(())) => dirty = false,
                Event::Flushed(Err(e)) => return Exit::Closed(format!("flush error: {e}").into()),
                Event::Wrote(Err(e)) => return Exit::Closed(format!("write error: {e}").into()),
                Event::Read(Ok(0)) => return Exit::Closed("connection closed by client".into()),
                Event::Read(Ok(n)) => streaming = n >= read_room,
                Event::Read(Err(e)) => return Exit::Closed(format!("read error: {e}").into()),
                Event::Woken | Event::AcksReady => {}
                Event::Timer => {
                    let now = Instant::now();
                    if credentials_at.is_some_and(|at| at <= now) {
                        return Exit::CredentialsExpired;
                    }
                    if keep_alive_at.is_some_and(|at| at <= now) {
                        // Not the client's silence: we stopped reading it while its
                        // window is full.
                        if !window_full {
                            return Exit::KeepAliveTimeout;
                        }
                        keep_alive_at = self.keep_alive_timeout.map(|t| now + t);
                    }
                    // Fired for a deadline that has since moved: wait for the nearer one.
                    timer
                        .as_mut()
                        .reset(earliest(keep_alive_at, credentials_at).unwrap_or(now + FAR));
                }
                Event::DeviceRevoked(why) => return Exit::DeviceRevoked(why),
                Event::Reauthenticated(answer) => {
                    self.reauth = None;
                    if let Err(exit) = self.on_reauth(answer) {
                        return exit;
                    }
                    credentials_at = self.credentials_at();
                    // The new expiry may be later than the timer: re-arm from scratch.
                    timer.as_mut().reset(
                        earliest(keep_alive_at, credentials_at).unwrap_or(Instant::now() + FAR),
                    );
                    device = self.registry_watch();
                }
            }
        }
    }

    /// Tell the client why (v5), flush what we can, and detach from the session. Returns
    /// whether a DISCONNECT with a reason code went out and the sending side was shut down
    /// (close_notify on TLS, a Close frame on WebSockets), so the close should linger.
    async fn finish<W: AsyncWrite + Unpin>(&mut self, writer: &mut W, exit: Exit) -> bool {
        let (reason, publish_will) = match &exit {
            Exit::Disconnected(rc) => (None, *rc != ReasonCode::NORMAL_DISCONNECTION),
            Exit::Violation(rc, _) => (Some(*rc), true),
            Exit::KeepAliveTimeout => (Some(ReasonCode::KEEP_ALIVE_TIMEOUT), true),
            Exit::CredentialsExpired => (None, true),
            Exit::DeviceRevoked(_) => (Some(ReasonCode::NOT_AUTHORIZED), true),
            // A broker going down publishes no wills: they would reach clients that are
            // being sent away too, and the sessions themselves live on.
            Exit::TakenOver(rc) => (Some(*rc), *rc != ReasonCode::SERVER_SHUTTING_DOWN),
            Exit::Closed(_) => (None, true),
        };
        self.log_exit(&exit, reason);
        let disconnect_sent = matches!((reason, self.version), (Some(_), ProtocolVersion::V5));
        if let (Some(rc), ProtocolVersion::V5) = (reason, self.version) {
            let mut disconnect = Disconnect::new(rc);
            // A reason string is always allowed on DISCONNECT (§3.1.2.11.7) and tells the
            // client which rule it broke.
            disconnect.properties.reason_string = match &exit {
                Exit::Violation(_, detail) => Some(detail.to_string()),
                Exit::DeviceRevoked(_) => {
                    Some("device disabled or removed from the registry".into())
                }
                _ => None,
            };
            let before = self.wbuf.len();
            let _ = codec::encode(
                &Packet::Disconnect(disconnect),
                self.version,
                &mut self.wbuf,
            );
            if self.wbuf.len() - before > self.client_maximum_packet_size as usize {
                self.wbuf.truncate(before);
                let bare = Packet::Disconnect(Disconnect::new(rc));
                let _ = codec::encode(&bare, self.version, &mut self.wbuf);
            }
        }
        let mut shut_down = false;
        if !matches!(exit, Exit::Closed(_) | Exit::CredentialsExpired) && !self.wbuf.is_empty() {
            let flush = async {
                writer.write_all(&self.wbuf).await?;
                writer.shutdown().await
            };
            shut_down = matches!(
                tokio::time::timeout(Duration::from_secs(2), flush).await,
                Ok(Ok(()))
            );
        }
        // Before detaching: a client taking this session over must not lose the
        // registrations it makes after attaching.
        self.broker.state_store.drop_client(&self.client_id);
        let will = if publish_will { self.will.take() } else { None };
        let will = will.map(|will| crate::broker::WillMessage {
            will: *will,
            authority: self
                .authz
                .as_ref()
                .map(|authz| crate::broker::WillAuthority {
                    authz: authz.clone(),
                    principal: self.principal.as_deref().cloned(),
                    client_id: self.client_id.clone(),
                }),
        });
        self.broker.detach(
            &self.session,
            Detach {
                generation: self.generation,
                expiry_interval: self.session_expiry,
                will,
            },
        );
        disconnect_sent && shut_down
    }

    /// The disconnect line, at info (like `mosquitto -v`): client id, peer, the reason
    /// code (the client's DISCONNECT, or ours) with its name, and what happened.
    fn log_exit(&self, exit: &Exit, sent: Option<ReasonCode>) {
        let (rc, text): (Option<ReasonCode>, Cow<'_, str>) = match exit {
            Exit::Disconnected(rc) => (Some(*rc), "client sent DISCONNECT".into()),
            Exit::Violation(rc, detail) => (Some(*rc), Cow::Borrowed(detail.as_ref())),
            Exit::KeepAliveTimeout => (sent, "keep alive timeout".into()),
            Exit::CredentialsExpired => (None, "credentials expired".into()),
            Exit::DeviceRevoked(why) => (sent, Cow::Borrowed(why.as_str())),
            Exit::TakenOver(ReasonCode::SERVER_SHUTTING_DOWN) => {
                (sent, "the server is shutting down".into())
            }
            Exit::TakenOver(ReasonCode::SESSION_TAKEN_OVER) => {
                (sent, "session taken over by another connection".into())
            }
            Exit::TakenOver(_) => (sent, "disconnected by the broker".into()),
            Exit::Closed(why) => (None, Cow::Borrowed(why.as_ref())),
        };
        // 3.1.1 has no DISCONNECT reason codes: the code still says what happened.
        let rc = rc.or(match exit {
            Exit::TakenOver(rc) => Some(*rc),
            Exit::KeepAliveTimeout => Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            Exit::DeviceRevoked(_) => Some(ReasonCode::NOT_AUTHORIZED),
            _ => None,
        });
        let suppressed = self.denials.suppressed();
        tracing::info!(
            target: "conn",
            client_id = &*self.client_id,
            peer = %self.peer,
            reason_code = rc.map(logs::code),
            // 0x00 is "success" elsewhere; on DISCONNECT it is a normal disconnection.
            reason = rc.map(|rc| match rc {
                ReasonCode::NORMAL_DISCONNECTION => "normal disconnection",
                rc => rc.name(),
            }),
            denials_suppressed = (suppressed > 0).then_some(suppressed),
            "client disconnected: {}",
            text.escape_debug()
        );
    }

    /// What tells the serve loop that an X.509 client's device was disabled or removed
    /// (boxed: most clients have none, and the serve loop's state is in every task).
    fn registry_watch(&self) -> Option<Box<RegistryWatch>> {
        let check = self.principal.as_ref()?.registry.as_ref()?;
        Some(Box::new(check.watch()))
    }

    /// When the principal's credentials expire, on the runtime's clock.
    fn credentials_at(&self) -> Option<Instant> {
        self.principal.as_ref()?.expiry.map(until_expiry)
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

/// Lingering close (issue 18): after the DISCONNECT went out and our sending side is shut
/// down, keep reading and discarding what the client still sends until it closes, for at
/// most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing a socket with unread input makes the
/// kernel send a reset, and a client that was still writing (a burst past Receive Maximum,
/// the usual reason for 0x93) would then lose the DISCONNECT before reading its reason
/// code. Called after the session is detached, so only the socket and its place under the
/// connection cap are held, and only within these bounds: a client cannot stretch them.
async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut scratch = vec![0u8; 16 * 1024];
    let mut left = LINGER_BYTES;
    let drain = async {
        while left > 0 {
            let want = left.min(scratch.len());
            match reader.read(&mut scratch[..want]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// A connection's timer when no deadline applies (it is then not polled).
const FAR: Duration = Duration::from_secs(86400 * 365);

/// The nearer of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Bytes read through the stack when no read buffer is held. A read that fills it means
/// the client streams, and the next reads go into a heap buffer of
/// [`READ_BUFFER_BUSY`] bytes (see [`size_read_buffer`]).
const STACK_READ: usize = 2048;
/// The read buffer of a connection whose client streams (its last read filled the buffer).
const READ_BUFFER_BUSY: usize = 16 * 1024;
/// Room kept for the rest of a packet that arrived in part.
const READ_BUFFER_PARTIAL: usize = 256;

/// Read what the client sent into `rbuf`. With no buffer held (an idle connection, or one
/// whose reads each carry whole packets) the bytes are read into a buffer on the stack
/// and copied into one allocated to their size, so a connection that waits holds no read
/// buffer at all; a buffer with room (a packet arriving in parts, a streaming client) is
/// read into directly. Ready(Ok(0)) is end of stream.
fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if rbuf.capacity() > rbuf.len() {
        let read = reader.read_buf(rbuf);
        tokio::pin!(read);
        return read.poll(cx);
    }
    let mut stack = [0u8; STACK_READ];
    let mut buf = ReadBuf::new(&mut stack);
    match Pin::new(reader).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) => {
            rbuf.extend_from_slice(buf.filled());
            Poll::Ready(Ok(buf.filled().len()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Size the read buffer for the next read: large while the client streams, none at all
/// when nothing is buffered (the next read goes through the stack), and some room for
/// the rest of a packet that arrived in part. Packets decoded from a released buffer
/// keep their part of it alive until delivered.
fn size_read_buffer(rbuf: &mut BytesMut, streaming: bool) {
    if streaming {
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(READ_BUFFER_BUSY);
        }
        return;
    }
    if rbuf.is_empty() {
        // Even with no capacity left: a buffer whose bytes were all split off still
        // holds its share of the allocation they came from.
        *rbuf = BytesMut::new();
        return;
    }
    if rbuf.capacity() - rbuf.len() < READ_BUFFER_PARTIAL / 4 {
        rbuf.reserve(READ_BUFFER_PARTIAL);
    }
}

/// When credentials expiring at `expiry` run out, on the runtime's clock (now when past).
fn until_expiry(expiry: SystemTime) -> Instant {
    let left = expiry
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .min(FAR);
    Instant::now() + left
}
