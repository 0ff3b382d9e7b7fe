//! The CONNECT → CONNACK exchange (MQTT 5 §3.1, §3.2; 3.1.1 §3.1, §3.2).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use gatehouse_protocol::codec;
use gatehouse_protocol::topic::validate_topic_name;
use gatehouse_protocol::{
    ConnAck, ConnAckProperties, Connect, Packet, ProtocolVersion, ReasonCode,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{Connection, PortSecurity};
use crate::auth::{Credentials, Outcome};
use crate::authz::Action;
use crate::registry::Broker;

pub(super) type Accepted = (
    Box<Connection>,
    BytesMut,
    oneshot::Receiver<ReasonCode>,
    oneshot::Sender<()>,
);

/// Read the first packet, which must be CONNECT; the bytes after it stay in the buffer.
///
/// Waiting for CONNECT is all that a socket which never sends one costs, so this part
/// keeps almost no state: no read buffer is held until bytes arrive (the first read goes
/// through a buffer on the stack, see [`super::read_some`]), and what only a CONNECT
/// needs (authentication, the session, the [`Connection`]) is in [`accept`], boxed by the
/// caller once CONNECT is read.
pub(super) async fn read_connect<S>(
    stream: &mut S,
    broker: &Arc<Broker>,
) -> Result<(Box<Connect>, BytesMut), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut rbuf = BytesMut::new();
    loop {
        // The decoded packet is not kept across the awaits below (a `match` on it would
        // keep it, and its size, in this future).
        let bad = match codec::decode(&mut rbuf, None, broker.limits().max_packet_size) {
            Ok(Some(Packet::Connect(c))) => return Ok((c, rbuf)),
            Ok(Some(other)) => {
                return Err(format!("first packet was {}, not CONNECT", other.name()))
            }
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if let Some(e) = bad {
            let level = codec::peek_protocol_level(&rbuf);
            // Boxed: rare, and its timer would otherwise count in every socket.
            Box::pin(refuse(stream, level, e.reason)).await;
            return Err(format!("bad CONNECT: {e}"));
        }
        // A CONNECT larger than one read: grow by doubling (up to the packet size limit
        // the codec checks).
        if !rbuf.is_empty() && rbuf.len() == rbuf.capacity() {
            rbuf.reserve(rbuf.capacity().max(CONNECT_READ_BUFFER));
        }
        let n = std::future::poll_fn(|cx| super::read::read_some(&mut *stream, &mut rbuf, cx))
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before CONNECT".into());
        }
    }
}

/// What a CONNECT that did not fit in the first read grows its buffer by, at least.
const CONNECT_READ_BUFFER: usize = 256;

/// Answer a CONNECT read by [`read_connect`], and log the connect line at info, accepted
/// or refused (like `mosquitto -v`): client id, peer and port, protocol version, clean
/// start, keep alive, user name, authentication, result. Never the password or the
/// authentication data. On refusal the CONNACK (if the version allows one) has been
/// written.
pub(super) async fn accept<W>(
    connect: Box<Connect>,
    rbuf: BytesMut,
    writer: &mut W,
    broker: &Arc<Broker>,
    security: &PortSecurity,
    (peer, port): (SocketAddr, u16),
) -> Result<Accepted, ()>
where
    W: AsyncWrite + Unpin,
{
    // What the line needs from CONNECT, which `admit` consumes.
    let client_id = connect.client_id.clone();
    let username = connect.username.clone();
    let protocol = super::logs::protocol(connect.protocol);
    let clean_start = connect.clean_start;
    let keep_alive = connect.keep_alive;
    let auth_method = connect.properties.authentication_method.clone();
    let answer = admit(connect, rbuf, writer, broker, security, peer).await;
    match &answer {
        Ok((conn, ..)) => tracing::info!(
            target: "conn",
            client_id = &*conn.client_id,
            peer = %peer,
            port,
            protocol,
            clean_start,
            keep_alive,
            username = username.as_deref(),
            auth = conn.principal.as_ref().map_or("anonymous", |p| p.method),
            principal = conn.principal.as_ref().and_then(|p| p.username.as_deref()),
            auth_method = auth_method.as_deref(),
            result = "accepted",
            "client connected"
        ),
        Err(why) => tracing::info!(
            target: "conn",
            client_id = client_id.as_str(),
            peer = %peer,
            port,
            protocol,
            clean_start,
            keep_alive,
            username = username.as_deref(),
            auth_method = auth_method.as_deref(),
            result = "refused",
            "connection refused: {}",
            why.escape_debug()
        ),
    }
    answer.map_err(drop)
}

/// [`accept`] without the log line; the error says why, for it.
async fn admit<W>(
    connect: Box<Connect>,
    rbuf: BytesMut,
    writer: &mut W,
    broker: &Arc<Broker>,
    security: &PortSecurity,
    peer: SocketAddr,
) -> Result<Accepted, String>
where
    W: AsyncWrite + Unpin,
{
    let connect = *connect;
    let version = connect.protocol;
    if let Err(rc) = check_connect(&connect, security) {
        refuse(writer, Some(version.level()), rc).await;
        return Err(format!("CONNECT refused: {rc}"));
    }
    // Cluster mode, failure handling: a node cut off from NATS serves no client (its
    // sessions may have moved on elsewhere); refused before authentication costs anything.
    if let Some(cluster) = broker.router.cluster.get() {
        if !cluster.accepts_clients() {
            let rc = crate::cluster::health::CUT_OFF_CONNACK;
            refuse(writer, Some(version.level()), rc).await;
            return Err(format!("CONNECT refused: cut off from NATS ({rc})"));
        }
    }
    let limits = broker.limits();
    let props = &connect.properties;

    let principal = match &security.chain {
        None => None,
        Some(chain) => {
            let creds = Credentials {
                client_id: &connect.client_id,
                username: connect.username.as_deref(),
                password: connect.password.as_deref(),
                method: props.authentication_method.as_deref(),
                data: props.authentication_data.as_deref(),
                peer_certs: &security.peer_certs,
            };
            match chain.authenticate(&creds).await {
                Outcome::Accepted(p) => Some(p),
                Outcome::Rejected(rc, why) => {
                    refuse(writer, Some(version.level()), rc).await;
                    return Err(format!("authentication failed: {why} ({rc})"));
                }
            }
        }
    };
    // "client authenticated": on the connect line (`auth`, `principal`).

    let mut assigned = None;
    let client_id: Arc<str> = if connect.client_id.is_empty() {
        if version == ProtocolVersion::V311 && !connect.clean_start {
            refuse(writer, Some(4), ReasonCode::CLIENT_IDENTIFIER_NOT_VALID).await;
            return Err("empty client id with clean session 0".into());
        }
        let id = generate_client_id();
        assigned = Some(id.clone());
        id.into()
    } else {
        connect.client_id.as_str().into()
    };

    let requested_expiry = match version {
        ProtocolVersion::V5 => props.session_expiry_interval.unwrap_or(0),
        ProtocolVersion::V311 if connect.clean_start => 0,
        ProtocolVersion::V311 => u32::MAX,
    };
    let session_expiry = requested_expiry.min(limits.max_session_expiry);

    // Keep alive: clamp to our maximum; v5 tells the client (Server Keep Alive).
    let mut server_keep_alive = None;
    let keep_alive = if limits.max_keep_alive > 0
        && (connect.keep_alive == 0 || connect.keep_alive > limits.max_keep_alive)
        && version == ProtocolVersion::V5
    {
        server_keep_alive = Some(limits.max_keep_alive);
        limits.max_keep_alive
    } else {
        connect.keep_alive
    };

    // Authorization of CONNECT and of the will's topic (behaviour.md §4), before the
    // session is touched. The port has a policy only where authentication is on, so a
    // principal exists; without one a policy denies (fail closed).
    let mut will = connect.will;
    if let Some(authz) = &security.authz {
        let decision = principal
            .as_ref()
            .map(|p| authz.check(p, &client_id, &Action::Connect));
        if !decision.as_ref().is_some_and(|d| d.allowed) {
            super::logs::denied(
                &client_id,
                principal.as_ref().and_then(|p| p.username.as_deref()),
                peer,
                &Action::Connect,
                decision.map_or("no authenticated principal", |d| d.reason),
                0,
            );
            refuse(writer, Some(version.level()), ReasonCode::NOT_AUTHORIZED).await;
            return Err("CONNECT not authorized".into());
        }
        if let (Some(w), Some(p)) = (&will, &principal) {
            if !authz
                .check(p, &client_id, &Action::Publish(&w.topic))
                .allowed
            {
                tracing::info!(
                    target: "authz",
                    // A `&str` field: what a client wrote is logged escaped (quoted, `\n`),
                    // so a line break in it cannot start a forged log line.
                    client_id = &*client_id,
                    topic = w.topic.as_str(),
                    "the will's topic is not authorized: the will will not be published"
                );
                will = None;
            }
        }
    }

    let owner = match &principal {
        Some(p) => crate::session::Owner::Principal(Box::new(p.identity())),
        None => crate::session::Owner::Anonymous,
    };
    // Cluster mode: claim the session in the sessions bucket first (cluster/sessions.rs).
    let mut claim = None;
    if let Some(cluster) = cluster_sessions(broker) {
        // The will goes into the record as authorized above (none when refused), so
        // that another node can publish it if this one dies, with what that node needs
        // to authorize it again then (the port's policy name, the verified principal).
        let record_will = will.as_ref().and_then(|w| {
            cluster.record_will(w, security.authz.as_ref(), principal.as_ref(), &client_id)
        });
        match cluster
            .claim(
                &client_id,
                connect.clean_start,
                &owner,
                session_expiry,
                record_will,
            )
            .await
        {
            Ok(c) => claim = Some(c),
            Err(e) => {
                refuse(
                    writer,
                    Some(version.level()),
                    ReasonCode::SERVER_UNAVAILABLE,
                )
                .await;
                return Err(format!("CONNECT refused: {e}"));
            }
        }
    }
    // A local session is resumed only when the cluster's record is this node's own.
    let connect_clean_start = connect.clean_start;
    let local_clean = connect.clean_start || claim.as_ref().is_some_and(|c| !c.local_valid);
    let attached = match broker.attach(&client_id, local_clean, owner).await {
        Ok(attached) => attached,
        Err(e) => {
            if let (Some(cluster), Some(c)) = (cluster_sessions(broker), &claim) {
                cluster.release(c).await;
            }
            // `maxSessions` (3.1.1: 0x03 Server unavailable).
            tracing::info!(target: "session", client_id = &*client_id, "CONNECT refused: {e}");
            refuse(writer, Some(version.level()), ReasonCode::QUOTA_EXCEEDED).await;
            return Err(format!("CONNECT refused: {e}"));
        }
    };
    let mut attached = attached;
    if let Some(moved) = claim.as_mut().and_then(|c| c.moved.take()) {
        // The session moved here from another node: its subscriptions come with it.
        broker.adopt_subscriptions(&attached.session, moved);
        attached.session_present = true;
    }
    if let Some(journal) = broker.journal.get() {
        let already = attached.session.lock().persists();
        let selected = journal
            .select_session(&client_id, &props.user_properties)
            .or(already.then_some(crate::session::journal::Selected::AllMessages));
        if let (Some(selected), true) = (selected, session_expiry > 0) {
            attached
                .session
                .start_journal(journal, selected, session_expiry);
        }
    }
    let mut conn = Box::new(Connection {
        broker: broker.clone(),
        limits: limits.clone(),
        session: attached.session,
        generation: attached.generation,
        version,
        client_id: client_id.clone(),
        peer,
        denials: Default::default(),
        keep_alive_timeout: (keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
        // `maxReceiveMaximum` caps the window a client may ask for (AIO semantics).
        client_receive_maximum: usize::from(
            props
                .receive_maximum
                .unwrap_or(u16::MAX)
                .min(limits.receive_maximum),
        ),
        client_maximum_packet_size: props.maximum_packet_size.unwrap_or(u32::MAX),
        inbound_aliases: Default::default(),
        outbound_aliases: super::aliases::OutboundAliases::new(
            props.topic_alias_maximum.unwrap_or(0),
        ),
        will: will.map(Box::new),
        session_expiry,
        connect_expiry_was_zero: requested_expiry == 0,
        held_acks: Default::default(),
        paused_for: Default::default(),
        paused_forwarding: None,
        paused_until: None,
        chain: security.chain.clone(),
        authz: security.authz.clone(),
        auth_method: props.authentication_method.clone(),
        reauth: None,
        waiting: None,
        principal: principal.map(Box::new),
        // Allocated as packets are written, released when idle (see `serve_loop`).
        wbuf: BytesMut::new(),
        metrics: security.metrics.clone(),
        retained_backlog: Default::default(),
    });

    let properties = match version {
        ProtocolVersion::V311 => ConnAckProperties::default(),
        ProtocolVersion::V5 => ConnAckProperties {
            session_expiry_interval: (session_expiry != requested_expiry).then_some(session_expiry),
            receive_maximum: Some(limits.receive_maximum),
            maximum_packet_size: Some(limits.max_packet_size),
            assigned_client_identifier: assigned,
            topic_alias_maximum: Some(limits.topic_alias_maximum),
            server_keep_alive,
            // Enhanced authentication completed in one step: say which method (§4.12).
            authentication_method: props.authentication_method.clone(),
            ..Default::default()
        },
    };
    conn.send(&Packet::ConnAck(ConnAck {
        session_present: attached.session_present,
        reason_code: ReasonCode::SUCCESS,
        properties,
    }));
    if let (Some(cluster), Some(c)) = (cluster_sessions(broker), &claim) {
        if let Err(resumed) = cluster.confirm(c, &conn.session, conn.generation) {
            // Taken over by another node between the claim and now: this connection
            // loses, as the older one of a takeover does (0x8E once it serves).
            let (broker, session, generation) =
                (broker.clone(), conn.session.clone(), conn.generation);
            tokio::spawn(async move {
                broker.give_up_session(&session, generation, resumed).await;
            });
        } else if c.local_valid && !connect_clean_start && !attached.session_present {
            // The record promised a session this node no longer has: say what it has.
            broker.session_changed(&conn.session);
        }
    }
    if attached.session_present {
        // What the session holds was granted under an earlier connection: the policy may
        // have been reloaded since (that is why the client was disconnected), or the
        // session restored from the journal. Re-check before anything is sent.
        conn.recheck_grants("session resumed");
        conn.resend_inflight();
    }
    if let (Some(cluster), Some(c)) = (cluster_sessions(broker), &claim) {
        // Moved here from another node: what was kept for it while offline is read from
        // the stream (cluster/queue.rs), through the subscriptions just re-checked.
        cluster.read_backlog(c, &conn.session, conn.generation);
    }
    tracing::debug!(
        target: "conn",
        client_id = &*client_id,
        session_present = attached.session_present,
        "session attached"
    );
    Ok((conn, rbuf, attached.kicked, attached.released))
}

/// Rules on CONNECT that the codec cannot check on its own.
fn check_connect(c: &Connect, security: &PortSecurity) -> Result<(), ReasonCode> {
    if let Some(method) = &c.properties.authentication_method {
        // Enhanced authentication only where the port's chain has a method for it.
        if !security
            .chain
            .as_ref()
            .is_some_and(|chain| chain.accepts_enhanced(method))
        {
            return Err(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
    }
    if let Some(will) = &c.will {
        if validate_topic_name(&will.topic).is_err() {
            return Err(ReasonCode::TOPIC_NAME_INVALID);
        }
        if will.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&will.payload).is_err()
        {
            return Err(ReasonCode::PAYLOAD_FORMAT_INVALID);
        }
        if let Some(rt) = &will.properties.response_topic {
            if validate_topic_name(rt).is_err() {
                return Err(ReasonCode::PROTOCOL_ERROR);
            }
        }
    }
    Ok(())
}

/// Send a refusing CONNACK in the client's protocol version: v5 gets the reason code,
/// 3.1.1 the nearest return code. An unknown version is answered in the newest version not
/// above it: a level above 5 (a client newer than us) gets a v5 CONNACK with 0x84
/// Unsupported Protocol Version, which it can read; levels up to 4 (3.1 and older, or a
/// wrong protocol name) get 3.1.1's return code 0x01 "unacceptable protocol version"
/// (MQTT 5 §3.1.2.2, 3.1.1 §3.1.2.2).
async fn refuse<W: AsyncWrite + Unpin>(writer: &mut W, level: Option<u8>, reason: ReasonCode) {
    let version = match level {
        Some(5) => ProtocolVersion::V5,
        Some(4) => ProtocolVersion::V311,
        Some(6..) if reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => ProtocolVersion::V5,
        // Malformed 3.1.1 (or older) CONNECTs are closed without CONNACK unless the
        // version itself is the problem.
        _ if reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => ProtocolVersion::V311,
        _ => return,
    };
    if version == ProtocolVersion::V311
        && matches!(
            reason,
            ReasonCode::MALFORMED_PACKET | ReasonCode::PROTOCOL_ERROR
        )
    {
        return;
    }
    let mut out = BytesMut::new();
    let connack = ConnAck {
        session_present: false,
        reason_code: reason,
        properties: ConnAckProperties::default(),
    };
    if codec::encode(&Packet::ConnAck(connack), version, &mut out).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            writer.write_all(&out).await?;
            writer.shutdown().await
        })
        .await;
    }
}

/// A client id for clients that sent none: unique in this process and unlikely to
/// collide with client-chosen ids.
fn generate_client_id() -> String {
    // 128 random bits: an assigned id must not be guessable, or another client could take
    // the session over (on a port where any client id may connect).
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // No random source (does not happen on a working host): unique, not secret.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("gatehouse-{nanos:x}-{n:x}");
    }
    let mut id = String::with_capacity(10 + 32);
    id.push_str("gatehouse-");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Cluster mode: the sessions bucket (cluster/sessions.rs), which claims each CONNECT's
/// session before it is attached.
fn cluster_sessions(broker: &Broker) -> Option<&crate::cluster::sessions::ClusterSessions> {
    broker
        .cluster_sessions
        .get()
        .and_then(|r| r.as_any().downcast_ref())
}
