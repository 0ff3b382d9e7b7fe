//! Serving a connected client: its task (`run`) and the wait at the heart of it, one
//! `poll_fn` over the socket, the session's wake-up, one timer and the rarer events.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::{Buf, BytesMut};
use gatehouse_protocol::codec;
use gatehouse_protocol::{QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::exit::linger;
use super::read::{read_some, size_read_buffer, STACK_READ};
use super::{Connection, Exit, DRAIN_HIGH_WATER, READ_PAUSE_BYTES};
use crate::auth::Reauth;
/// A connected client's task: the connection and what it owns, in one box, so the task's
/// future holds a pointer to them rather than copies (an async function keeps its
/// arguments for its whole life, next to the locals they are moved into).
pub(super) struct Running<S> {
    pub(super) conn: Box<Connection>,
    /// Not split into halves: the serve loop polls reading and writing in turn from one
    /// task, so it needs neither the halves' shared allocation nor their lock on every
    /// read and write.
    pub(super) stream: S,
    pub(super) rbuf: BytesMut,
    pub(super) kicked: oneshot::Receiver<ReasonCode>,
    pub(super) released: oneshot::Sender<()>,
    /// The connection's place under the connection cap lasts as long as it does.
    pub(super) permit: crate::admission::ConnectionPermit,
}

/// Not an `async fn`: its argument would be kept twice in the task (as the argument and
/// as the local it is moved into); the block below captures the box once.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its argument twice in every connected client's task"
)]
pub(super) fn run<S>(mut r: Box<Running<S>>) -> impl Future<Output = ()>
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
    pub(super) async fn serve_loop<S>(
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
            StateStoreAnswered(crate::statestore::service::Answer),
            /// A SUBACK / UNSUBACK may leave (`Connection::ack_pending`).
            AckReady,
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
        // The timer holds this task's waker from its last poll until it fires or is
        // reset: only then does it need polling again.
        let mut timer_registered = false;
        // What the wait found pending earlier in this same run of the task (see `Looked`).
        let mut looked = Looked::default();
        let mut device = self.registry_watch();
        let session = self.session.clone();
        // Poll the kick once, so its receiver holds this task's waker; the wait below
        // then only looks (`try_recv`): a poll per round would register the waker again
        // and spend the task's cooperative budget every time (a tenth of a 10,000
        // subscriber fan-out's user time).
        let first_look = std::future::poll_fn(|cx| match Pin::new(&mut *kicked).poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r.unwrap_or(ReasonCode::SESSION_TAKEN_OVER))),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        if let Some(reason) = first_look {
            return Exit::TakenOver(reason);
        }
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
                    || self.waiting()
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
            // Write what is ready now, without a round of the wait for it: a delivery or
            // an acknowledgement then costs one round (the one that ends pending), not
            // two. A write that would wait is left to the wait, which registers for it.
            if !self.wbuf.is_empty() {
                let full = self.wbuf.len() >= DRAIN_HIGH_WATER;
                match write_now(stream, &self.wbuf) {
                    Poll::Ready(Ok(0)) => return Exit::Closed("write returned 0".into()),
                    Poll::Ready(Ok(n)) => {
                        if let Err(exit) = self.wrote(n, stream, &mut dirty) {
                            return exit;
                        }
                        // The drain stopped at its high-water mark: more may be queued.
                        if full && self.wbuf.is_empty() {
                            continue;
                        }
                    }
                    Poll::Ready(Err(e)) => return Exit::Closed(format!("write error: {e}").into()),
                    Poll::Pending => {}
                }
            }
            size_read_buffer(rbuf, streaming);
            let read_room = match rbuf.capacity() - rbuf.len() {
                // Nothing held: the read goes through the stack (`read_some`).
                0 => STACK_READ,
                room => room,
            };
            // Not reading the client, through no fault of its own: its keep alive must
            // not run out meanwhile.
            let window_full = self.inbound_window_full() || self.paused() || self.waiting();
            let reading = self.wbuf.len() < READ_PAUSE_BYTES && !window_full;
            let writing = !self.wbuf.is_empty();
            // Only an earlier deadline moves the timer now; a later one waits for it
            // to fire.
            if let Some(at) = earliest(keep_alive_at, credentials_at) {
                if at < timer.deadline() {
                    timer.as_mut().reset(at);
                    timer_registered = false;
                }
            }
            let timed = keep_alive_at.is_some() || credentials_at.is_some();
            // Boxed and made only when they apply (acknowledgements held, a publisher
            // paused, a re-authentication running, a device-registry client): their
            // timers and channel waits would otherwise count in every connection's task.
            let mut held = self.held_acks.front_wait().map(Box::pin);
            let mut resume: Option<Pin<Box<dyn Future<Output = ()> + Send>>> =
                match (self.paused_for.first(), self.paused_forwarding) {
                    (Some(s), _) => {
                        let s = s.clone();
                        Some(Box::pin(
                            async move { s.wait_drained_at(QoS::AtMostOnce).await },
                        ))
                    }
                    (None, Some(qos)) => self.broker.router.cluster.get().cloned().map(|c| {
                        Box::pin(async move { c.forwarding().wait(qos).await })
                            as Pin<Box<dyn Future<Output = ()> + Send>>
                    }),
                    (None, None) => self.paused_until.map(|at| {
                        Box::pin(tokio::time::sleep_until(at))
                            as Pin<Box<dyn Future<Output = ()> + Send>>
                    }),
                };
            let mut revoked = device.as_mut().map(|d| Box::pin(d.revoked()));
            // Polled in this order (the order the branches are listed in): a takeover
            // first, then writing (so output drains before more input is read), then
            // reading, then the rest. A `move` closure over references and flags: what
            // it captures is stored in every waiting connection's task, so it captures
            // each thing once and the flags by value.
            let (wbuf, reauth, session) = (&self.wbuf, &mut self.reauth, &*session);
            let waiting = &mut self.waiting;
            let (kicked, sock, rbuf) = (&mut *kicked, &mut *stream, &mut *rbuf);
            let mut waiting_timer = timer.as_mut();
            let (seen, registered) = (&mut looked, &mut timer_registered);
            let event = std::future::poll_fn(move |cx| {
                // The kick's receiver holds this task's waker since the first poll
                // (above the loop): a kick wakes the task, and a look costs one load.
                match kicked.try_recv() {
                    Ok(reason) => return Poll::Ready(Event::Kicked(reason)),
                    // Sender dropped without a kick: the session was ended under us.
                    Err(oneshot::error::TryRecvError::Closed) => {
                        return Poll::Ready(Event::Kicked(ReasonCode::SESSION_TAKEN_OVER))
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                }
                if writing {
                    if let Poll::Ready(r) = Pin::new(&mut *sock).poll_write(cx, wbuf) {
                        return Poll::Ready(Event::Wrote(r));
                    }
                } else if dirty {
                    if let Poll::Ready(r) = Pin::new(&mut *sock).poll_flush(cx) {
                        return Poll::Ready(Event::Flushed(r));
                    }
                }
                if reading && !seen.read {
                    if let Poll::Ready(r) = read_some(&mut *sock, rbuf, cx) {
                        return Poll::Ready(Event::Read(r));
                    }
                    seen.read = true;
                }
                if !seen.wake {
                    if session.wake.poll(cx).is_ready() {
                        return Poll::Ready(Event::Woken);
                    }
                    seen.wake = true;
                }
                if timed && (!*registered || waiting_timer.is_elapsed()) {
                    if waiting_timer.as_mut().poll(cx).is_ready() {
                        *registered = false;
                        return Poll::Ready(Event::Timer);
                    }
                    *registered = true;
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
                if let Some(w) = waiting.as_mut() {
                    match w.poll_done(cx) {
                        Poll::Ready(super::Waited::StateStore(answer)) => {
                            return Poll::Ready(Event::StateStoreAnswered(answer))
                        }
                        Poll::Ready(super::Waited::Ack) => return Poll::Ready(Event::AckReady),
                        Poll::Pending => {}
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
                // The task now waits; what wakes it may take the registrations made in
                // this run, so the next run looks at everything again.
                *seen = Looked::default();
                Poll::Pending
            })
            .await;
            match event {
                Event::Kicked(reason) => return Exit::TakenOver(reason),
                Event::Wrote(Ok(0)) => return Exit::Closed("write returned 0".into()),
                Event::Wrote(Ok(n)) => {
                    if let Err(exit) = self.wrote(n, stream, &mut dirty) {
                        return exit;
                    }
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
                    timer_registered = false;
                }
                Event::DeviceRevoked(why) => return Exit::DeviceRevoked(why),
                Event::StateStoreAnswered(answer) => self.on_state_store_answer(answer),
                Event::AckReady => self.on_ack_ready(),
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
                    timer_registered = false;
                    device = self.registry_watch();
                }
            }
        }
    }
}

/// What the serve loop's wait found pending earlier in the same run of the task: the
/// socket's read side and the session's wake-up hold the task's waker since then, so
/// looking again before the task waits would only register it again. (A run that handles
/// a wake-up goes through the wait two or three times; each look at a quiet socket costs
/// a few hundred instructions, a tenth of a delivery.) Reset whenever the wait returns
/// pending: the wake-up that resumes the task may have taken those registrations.
#[derive(Default)]
struct Looked {
    read: bool,
    wake: bool,
}

impl Connection {
    /// `n` bytes of the write buffer went out: drop them, release an emptied buffer, and
    /// flush at once where that is free (TCP: always; TLS and WebSockets when their
    /// buffers went out with the write); otherwise `dirty` makes the wait flush.
    fn wrote<S: AsyncWrite + Unpin>(
        &mut self,
        n: usize,
        stream: &mut S,
        dirty: &mut bool,
    ) -> Result<(), Exit> {
        self.wbuf.advance(n);
        if self.wbuf.is_empty() {
            // Written out: hold no write buffer while idle. A busy connection allocates
            // one per batch, a few KiB per write.
            self.wbuf = BytesMut::new();
        }
        *dirty = match flush_now(stream) {
            Poll::Ready(Ok(())) => false,
            Poll::Ready(Err(e)) => return Err(Exit::Closed(format!("flush error: {e}").into())),
            Poll::Pending => true,
        };
        Ok(())
    }
}

/// Write `buf` to `stream` if the socket takes it now. With a no-op waker: a write that
/// would wait registers nothing that matters, and the serve loop's wait polls it again
/// with the task's waker.
fn write_now<S: AsyncWrite + Unpin>(stream: &mut S, buf: &[u8]) -> Poll<std::io::Result<usize>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    Pin::new(stream).poll_write(&mut cx, buf)
}

/// Flush `stream` if that can be done without waiting. A flush that would wait is left
/// to the serve loop's wait, which polls it with the task's waker; a no-op waker here
/// registers nothing that could be missed.
fn flush_now<S: AsyncWrite + Unpin>(stream: &mut S) -> Poll<std::io::Result<()>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    Pin::new(stream).poll_flush(&mut cx)
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

/// When credentials expiring at `expiry` run out, on the runtime's clock (now when past).
pub(super) fn until_expiry(expiry: SystemTime) -> Instant {
    let left = expiry
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .min(FAR);
    Instant::now() + left
}
