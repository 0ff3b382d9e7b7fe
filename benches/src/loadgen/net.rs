//! Opening connections: TCP from one of several loopback source addresses (so 50,000
//! connections to one port do not exhaust the ~28k ephemeral ports of one source
//! address), optional TLS (rustls), and the MQTT CONNECT / SUBSCRIBE handshakes.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::mqtt::{self, ConnAck, ProtocolError, Version};

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("connection closed by the broker during {0}")]
    Closed(&'static str),
    #[error("TLS setup: {0}")]
    TlsSetup(String),
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Local addresses to connect from, used round-robin by connection index; empty: the
    /// kernel picks.
    pub sources: Vec<Ipv4Addr>,
    pub version: Version,
    pub keep_alive: u16,
    pub timeout: Duration,
}

/// A TLS client configuration trusting the CA certificates in `ca_file` (PEM). Session
/// resumption is off unless `resume`: a connect storm should pay full handshakes.
pub fn tls_connector(ca_file: &std::path::Path, resume: bool) -> Result<TlsConnector, ConnError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| ConnError::TlsSetup(format!("{}: {e}", ca_file.display())))?;
    for c in certs {
        let c = c.map_err(|e| ConnError::TlsSetup(format!("{}: {e}", ca_file.display())))?;
        roots
            .add(c)
            .map_err(|e| ConnError::TlsSetup(format!("{}: {e}", ca_file.display())))?;
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `count` loopback source addresses 127.0.0.1, 127.0.0.2, ... (all local on Linux).
pub fn loopback_sources(count: usize) -> Vec<Ipv4Addr> {
    (0..count)
        .map(|i| {
            Ipv4Addr::new(
                127,
                0,
                (((i + 1) >> 8) & 0xFF) as u8,
                ((i + 1) & 0xFF) as u8,
            )
        })
        .collect()
}

/// A plain or TLS connection.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, b),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// Write everything, then flush (TLS buffers plaintext until flushed).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        if let Stream::Tls(_) = self {
            self.flush().await?;
        }
        Ok(())
    }
}

/// A read buffer: bytes `start..end` of `buf` are received and not yet consumed.
pub struct RBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RBuf {
    pub fn new(size: usize) -> RBuf {
        RBuf {
            buf: vec![0; size.max(256)],
            start: 0,
            end: 0,
        }
    }

    /// Read once more (after moving unconsumed bytes to the front, growing the buffer if
    /// one packet is larger than it); returns the bytes read, 0 at end of stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let n = r.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The next complete packet: (first byte, body), consumed.
    #[inline]
    pub fn next_packet(&mut self) -> Result<Option<(u8, &[u8])>, ProtocolError> {
        match mqtt::frame(&self.buf[self.start..self.end])? {
            None => Ok(None),
            Some((first, h, total)) => {
                let s = self.start;
                self.start += total;
                Ok(Some((first, &self.buf[s + h..s + total])))
            }
        }
    }
}

/// A connection with its read buffer.
pub struct Conn {
    pub io: Stream,
    pub rb: RBuf,
}

impl Target {
    /// TCP (from source address `idx % sources`), then TLS when configured.
    pub async fn open(&self, idx: usize) -> Result<Stream, ConnError> {
        let fut = async {
            let tcp = self.tcp(idx).await?;
            match &self.tls {
                None => Ok(Stream::Tcp(tcp)),
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), tcp).await?;
                    Ok(Stream::Tls(Box::new(tls)))
                }
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ConnError::Timeout("TCP/TLS connect"))?
    }

    async fn tcp(&self, idx: usize) -> io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        if !self.sources.is_empty() {
            // Choose the port at connect(), not at bind(): then it only has to be unique
            // per 4-tuple, and each source address offers the whole ephemeral range.
            // Best effort, as before: without it, each source address still works but
            // binds its ports at bind().
            let _ = setsockopt(&socket, sockopt::IpBindAddressNoPort, &true);
            let src = self.sources[idx % self.sources.len()];
            socket.bind(SocketAddr::from((src, 0)))?;
        }
        let s = socket.connect(self.addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Open a connection and complete CONNECT/CONNACK.
    pub async fn mqtt(
        &self,
        idx: usize,
        client_id: &str,
        receive_max: u16,
        rbuf: usize,
    ) -> Result<(Conn, ConnAck), ConnError> {
        let io = self.open(idx).await?;
        let mut conn = Conn {
            io,
            rb: RBuf::new(rbuf),
        };
        let ack = self.handshake(&mut conn, client_id, receive_max).await?;
        Ok((conn, ack))
    }

    pub async fn handshake(
        &self,
        conn: &mut Conn,
        client_id: &str,
        receive_max: u16,
    ) -> Result<ConnAck, ConnError> {
        let pkt = mqtt::connect(self.version, client_id, self.keep_alive, receive_max);
        conn.io.send(&pkt).await?;
        let (first, body) = self.expect(conn, "CONNACK").await?;
        if first >> 4 != mqtt::CONNACK {
            return Err(ProtocolError::Unexpected {
                expected: "CONNACK",
                got: first >> 4,
            }
            .into());
        }
        Ok(mqtt::parse_connack(&body, self.version.is_v5())?)
    }

    pub async fn subscribe(&self, conn: &mut Conn, filter: &str, qos: u8) -> Result<u8, ConnError> {
        conn.io
            .send(&mqtt::subscribe(self.version, 1, filter, qos))
            .await?;
        loop {
            let (first, body) = self.expect(conn, "SUBACK").await?;
            if first >> 4 == mqtt::SUBACK {
                return Ok(mqtt::check_suback(&body, self.version.is_v5())?);
            }
        }
    }

    /// The next packet (owned: handshakes only), with the target's timeout.
    async fn expect(
        &self,
        conn: &mut Conn,
        what: &'static str,
    ) -> Result<(u8, Vec<u8>), ConnError> {
        let fut = async {
            loop {
                if let Some((first, body)) = conn.rb.next_packet()? {
                    return Ok((first, body.to_vec()));
                }
                if conn.rb.fill(&mut conn.io).await? == 0 {
                    return Err(ConnError::Closed(what));
                }
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ConnError::Timeout(what))?
    }
}
