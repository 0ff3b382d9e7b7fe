//! Reading from the client without holding a buffer while it is quiet.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Bytes read through the stack when no read buffer is held. A read that fills it means
/// the client streams, and the next reads go into a heap buffer of
/// [`READ_BUFFER_BUSY`] bytes (see [`size_read_buffer`]).
pub(super) const STACK_READ: usize = 2048;
/// The read buffer of a connection whose client streams (its last read filled the buffer).
const READ_BUFFER_BUSY: usize = 16 * 1024;
/// Room kept for the rest of a packet that arrived in part.
const READ_BUFFER_PARTIAL: usize = 256;

/// Read what the client sent into `rbuf`. With no buffer held (an idle connection, or one
/// whose reads each carry whole packets) the bytes are read into a buffer on the stack
/// and copied into one allocated to their size, so a connection that waits holds no read
/// buffer at all; a buffer with room (a packet arriving in parts, a streaming client) is
/// read into directly. Ready(Ok(0)) is end of stream.
pub(super) fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if rbuf.capacity() > rbuf.len() {
        let read = reader.read_buf(rbuf);
        tokio::pin!(read);
        return read.poll(cx);
    }
    // Uninitialised: zeroing 2 KiB on every look at a quiet socket was a tenth of the
    // user time of a fan-out to thousands of subscribers. `ReadBuf` tracks what the
    // read filled, and only that is read back.
    let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); STACK_READ];
    let mut buf = ReadBuf::uninit(&mut stack);
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
pub(super) fn size_read_buffer(rbuf: &mut BytesMut, streaming: bool) {
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
