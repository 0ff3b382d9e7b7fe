//! A client socket as the metrics see it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::counters::PortMetrics;

/// Wraps an accepted socket: counts the connection as accepted and open (until the socket
/// is dropped, i.e. closed) and every byte read and written, below TLS and WebSockets, so
/// the byte counts are what crossed the network and a failed TLS handshake still counts.
///
/// Counting per read or write call (not per packet) keeps this off the per-packet path.
pub struct Metered<S> {
    inner: S,
    metrics: Arc<PortMetrics>,
}

impl<S> Metered<S> {
    pub fn new(inner: S, metrics: Arc<PortMetrics>) -> Metered<S> {
        metrics.connections.accepted.inc();
        metrics.connections.open.inc();
        Metered { inner, metrics }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.metrics.connections.open.dec();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let n = buf.filled().len().saturating_sub(before);
            this.metrics.inbound.bytes.add(n as u64);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.metrics.outbound.bytes.add(n as u64);
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            this.metrics.outbound.bytes.add(n as u64);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn counts_the_connection_and_its_bytes_both_ways() {
        let metrics = Arc::new(PortMetrics::new("l", 1));
        let (client, mut server) = tokio::io::duplex(64);
        let mut metered = Metered::new(client, metrics.clone());
        assert_eq!(metrics.connections.accepted.get(), 1);
        assert_eq!(metrics.connections.open.get(), 1);
        metered.write_all(b"hello").await.expect("write");
        server.write_all(b"abc").await.expect("write");
        let mut buf = [0u8; 3];
        metered.read_exact(&mut buf).await.expect("read");
        assert_eq!(metrics.outbound.bytes.get(), 5);
        assert_eq!(metrics.inbound.bytes.get(), 3);
        drop(metered);
        assert_eq!(metrics.connections.open.get(), 0);
        assert_eq!(metrics.connections.accepted.get(), 1);
    }
}
