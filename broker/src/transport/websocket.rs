//! MQTT over WebSockets (MQTT 5 §6): binary frames, subprotocol `mqtt`.
//!
//! [`WsStream`] turns the message stream into the byte stream the connection task
//! reads and writes, so MQTT handling is identical on every transport.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Room for what a WebSocket message may carry besides one MQTT packet of the largest
/// size allowed: a client may coalesce a few small packets (acknowledgements, PINGREQ)
/// with a large PUBLISH in one message (MQTT 5 §6).
const MESSAGE_ALLOWANCE: usize = 4 * 1024;

/// The WebSocket limits for a port whose largest MQTT packet is `max_packet`: a message
/// (or frame) larger than one such packet plus [`MESSAGE_ALLOWANCE`] is refused from its
/// frame header, before its payload is buffered (tungstenite's defaults would buffer up
/// to 64 MiB before the MQTT layer sees the packet size).
fn ws_config(max_packet: u32) -> WebSocketConfig {
    let max = usize::try_from(max_packet)
        .unwrap_or(usize::MAX)
        .saturating_add(MESSAGE_ALLOWANCE);
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Upgrade an HTTP connection; refuse other paths when `path` is set. `max_packet` is
/// `maxPacketSizeBytes`, which bounds WebSocket messages too ([`ws_config`]).
pub async fn accept<S>(
    stream: S,
    path: Option<&str>,
    max_packet: u32,
) -> Result<WsStream<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The callback signature is tungstenite's; its error type is an HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if let Some(path) = path {
            if req.uri().path() != path {
                let mut err =
                    ErrorResponse::new(Some(format!("no MQTT endpoint at {}", req.uri().path())));
                *err.status_mut() = StatusCode::NOT_FOUND;
                return Err(err);
            }
        }
        let offers_mqtt = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
        if offers_mqtt {
            resp.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(ws_config(max_packet)),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(WsStream {
        inner: ws,
        pending: Bytes::new(),
    })
}

/// A WebSocket over `S` (TCP, or TLS for `wss`).
pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// The unread rest of the last binary frame.
    pending: Bytes,
}

fn to_io(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                // MQTT is carried in binary frames only (MQTT 5 §6).
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket frame",
                    )))
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                Some(Err(WsError::Capacity(e @ CapacityError::MessageTooLong { .. }))) => {
                    self.close_too_big(cx);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("WebSocket message larger than maxPacketSizeBytes allows: {e}"),
                    )));
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Best effort, without waiting: tell the client why with close code 1009 (RFC 6455
    /// §7.4.1, "message too big"). The connection ends right after either way.
    fn close_too_big(&mut self, cx: &mut Context<'_>) {
        let mut inner = Pin::new(&mut self.inner);
        if let Poll::Ready(Ok(())) = inner.as_mut().poll_ready(cx) {
            let close = CloseFrame {
                code: CloseCode::Size,
                reason: "message too big".into(),
            };
            if inner
                .as_mut()
                .start_send(Message::Close(Some(close)))
                .is_ok()
            {
                let _ = inner.poll_flush(cx);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let inner = Pin::new(&mut self.inner);
        ready!(inner.poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.inner)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx).map_err(to_io)
    }
}
