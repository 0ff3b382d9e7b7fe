//! A publisher: two tasks on one connection. The writer fills a large buffer with copies
//! of a pre-encoded PUBLISH (packet id and timestamps patched) and writes it in one call,
//! at the planned rate and within the in-flight window; the reader counts acknowledgements
//! (PUBACK, PUBREC then PUBCOMP) and opens the window again.

use super::*;

/// Per publisher: in-flight count, PUBRELs to write, the writer's wake-up.
#[derive(Default)]
pub(super) struct PubState {
    pub(super) inflight: Cell<u32>,
    pub(super) pubrels: RefCell<Vec<u16>>,
    pub(super) notify: Notify,
    pub(super) done: Cell<bool>,
}

pub(super) struct Plan {
    pub(super) qos: u8,
    pub(super) window: u32,
    pub(super) rate: f64,
    pub(super) count: Option<u64>,
    pub(super) start: Instant,
    pub(super) batch: u64,
    pub(super) refill: u64,
    pub(super) tls: bool,
}

pub(super) async fn writer(
    sh: Rc<Shared>,
    ps: Rc<PubState>,
    mut w: WriteHalf<Stream>,
    mut tpl: PublishTemplate,
    plan: Plan,
) {
    let cap = (tpl.len() * plan.batch as usize).max(4096);
    let mut buf = Vec::with_capacity(cap);
    let start_ns = plan
        .start
        .saturating_duration_since(sh.epoch.unwrap_or(plan.start))
        .as_nanos() as u64;
    let mut k: u64 = 0;
    let mut pid: u16 = 0;
    loop {
        let notified = ps.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        buf.clear();
        for id in ps.pubrels.borrow_mut().drain(..) {
            buf.extend_from_slice(&mqtt::ack(mqtt::PUBREL, id));
        }
        let finished = sh.stop.get() || plan.count.is_some_and(|c| k >= c);
        let mut n = 0;
        let mut window_bound = false;
        if !finished {
            let now = Instant::now();
            n = plan.batch;
            if plan.rate > 0.0 {
                let due = (now.saturating_duration_since(plan.start).as_secs_f64() * plan.rate)
                    as u64
                    + 1;
                n = n.min(due.saturating_sub(k));
            }
            if let Some(c) = plan.count {
                n = n.min(c - k);
            }
            if plan.qos > 0 {
                let free = u64::from(plan.window.saturating_sub(ps.inflight.get()));
                if free < n {
                    window_bound = true;
                    // Refill only once a few slots are free: one write per batch of
                    // acknowledgements, not one per acknowledgement.
                    n = if free < plan.refill { 0 } else { free };
                }
            }
            if n > 0 {
                let now_ns = sh.now_ns();
                for _ in 0..n {
                    pid = if pid == u16::MAX { 1 } else { pid + 1 };
                    let sched = if plan.rate > 0.0 {
                        start_ns + (k as f64 * 1e9 / plan.rate) as u64
                    } else {
                        now_ns
                    };
                    tpl.emit(&mut buf, pid, now_ns, sched);
                    k += 1;
                }
                add(&sh.sent, n);
                if plan.qos > 0 {
                    ps.inflight.set(ps.inflight.get() + n as u32);
                }
            }
        }
        if !buf.is_empty() {
            let r = async {
                w.write_all(&buf).await?;
                if plan.tls {
                    w.flush().await?;
                }
                Ok::<_, std::io::Error>(())
            }
            .await;
            if let Err(e) = r {
                sh.error("publisher write", e);
                break;
            }
            if plan.qos == 0 {
                add(&sh.accepted, n);
            }
            continue;
        }
        if finished && (plan.qos == 0 || ps.inflight.get() == 0 || ps.done.get()) {
            break;
        }
        if plan.rate > 0.0 && !window_bound && !finished {
            let next = plan.start + Duration::from_secs_f64(k as f64 / plan.rate);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        } else {
            notified.await;
        }
    }
    ps.done.set(true);
}

pub(super) async fn pub_reader(
    sh: Rc<Shared>,
    ps: Rc<PubState>,
    mut r: ReadHalf<Stream>,
    mut rb: RBuf,
) {
    loop {
        match rb.fill(&mut r).await {
            Ok(0) => {
                if !sh.stop.get() {
                    sh.error("publisher", "connection closed by the broker");
                }
                break;
            }
            Ok(_) => {}
            Err(e) => {
                sh.error("publisher read", e);
                break;
            }
        }
        let mut wake = false;
        loop {
            let (first, body) = match rb.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    sh.error("publisher", e);
                    return;
                }
            };
            let reason = body.get(2).copied().unwrap_or(0);
            match first >> 4 {
                mqtt::PUBACK | mqtt::PUBCOMP => {
                    if reason >= 0x80 {
                        add(&sh.refused, 1);
                    } else {
                        add(&sh.accepted, 1);
                    }
                    ps.inflight.set(ps.inflight.get().saturating_sub(1));
                    wake = true;
                }
                mqtt::PUBREC => {
                    if reason >= 0x80 {
                        add(&sh.refused, 1);
                        ps.inflight.set(ps.inflight.get().saturating_sub(1));
                    } else if let Some(p) = body.get(..2) {
                        ps.pubrels
                            .borrow_mut()
                            .push(u16::from_be_bytes([p[0], p[1]]));
                    }
                    wake = true;
                }
                mqtt::DISCONNECT => {
                    sh.error(
                        "publisher",
                        format!(
                            "DISCONNECT from the broker, reason 0x{:02x}",
                            body.first().copied().unwrap_or(0)
                        ),
                    );
                }
                _ => {}
            }
        }
        if wake {
            ps.notify.notify_one();
        }
    }
    ps.done.set(true);
    ps.notify.notify_one();
}
