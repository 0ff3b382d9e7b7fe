//! How a connection ends: the reason told to the client (v5), the disconnect log line,
//! detaching from the session (will, expiry), and the lingering close.

use std::borrow::Cow;
use std::time::Duration;

use gatehouse_protocol::codec;
use gatehouse_protocol::{Disconnect, Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{logs, Connection, Exit};
use crate::registry::Detach;

/// Lingering close ([`linger`]): after a DISCONNECT with a reason code, read and discard
/// for at most this long...
const LINGER_TIME: Duration = Duration::from_secs(1);
/// ...or at most this many bytes, whichever comes first.
const LINGER_BYTES: usize = 1 << 20;

impl Connection {
    /// Tell the client why (v5), flush what we can, and detach from the session. Returns
    /// whether a DISCONNECT with a reason code went out and the sending side was shut down
    /// (close_notify on TLS, a Close frame on WebSockets), so the close should linger.
    pub(super) async fn finish<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        exit: Exit,
    ) -> bool {
        let (reason, publish_will) = match &exit {
            Exit::Disconnected(rc) => (None, *rc != ReasonCode::NORMAL_DISCONNECTION),
            Exit::Violation(rc, _) => (Some(*rc), true),
            Exit::KeepAliveTimeout => (Some(ReasonCode::KEEP_ALIVE_TIMEOUT), true),
            Exit::CredentialsExpired => (None, true),
            Exit::DeviceRevoked(_) => (Some(ReasonCode::NOT_AUTHORIZED), true),
            // A broker going down publishes no wills: they would reach clients that are
            // being sent away too, and the sessions themselves live on. Nor does a cluster
            // node cut off from NATS (0x89): its clients are moving to other nodes, and
            // the will could reach those only once NATS is back, late.
            Exit::TakenOver(rc) => (
                Some(*rc),
                *rc != ReasonCode::SERVER_SHUTTING_DOWN
                    && *rc != crate::cluster::health::CUT_OFF_DISCONNECT,
            ),
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
        let will = will.map(|will| crate::registry::WillMessage {
            will: *will,
            authority: self
                .authz
                .as_ref()
                .map(|authz| crate::registry::WillAuthority {
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
}

/// Lingering close (issue 18): after the DISCONNECT went out and our sending side is shut
/// down, keep reading and discarding what the client still sends until it closes, for at
/// most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing a socket with unread input makes the
/// kernel send a reset, and a client that was still writing (a burst past Receive Maximum,
/// the usual reason for 0x93) would then lose the DISCONNECT before reading its reason
/// code. Called after the session is detached, so only the socket and its place under the
/// connection cap are held, and only within these bounds: a client cannot stretch them.
pub(super) async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
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
