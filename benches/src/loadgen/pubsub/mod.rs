//! Publish/subscribe load: N publishers, M subscribers, QoS 0/1/2, one topic per publisher
//! or one shared topic, plain or `$share/<group>/` subscriptions; as fast as possible or at
//! a fixed total rate (open loop), for a duration or a fixed count.
//!
//! Every connection runs on the one thread of the generator's runtime. A publisher is two
//! tasks: the writer fills a large buffer with copies of a pre-encoded PUBLISH (packet id
//! and timestamps patched) and writes it in one call, the reader counts acknowledgements
//! and opens the in-flight window. A subscriber is one task: read a large chunk, split it
//! into packets, record latencies, answer QoS 1/2 with acknowledgements written in one
//! call per chunk.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Notify;

use super::hist::Hist;
use super::mqtt::{self, PublishTemplate};
use super::net::{Conn, ConnError, RBuf, Stream, Target};
use super::sys::{proc_rss_kb, Snap};
use super::{connect_all, lat_json, Common};

mod publisher;
mod subscriber;

use publisher::{pub_reader, writer, Plan, PubState};
pub use subscriber::subscriber;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TopicMode {
    /// Publisher i publishes to `<prefix>/t/<i>`; subscribers subscribe `<prefix>/t/+`.
    PerPublisher,
    /// Every publisher publishes to `<prefix>/t`; subscribers subscribe to it.
    Shared,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PubSubArgs {
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// QoS of the PUBLISHes and of the subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Unacknowledged QoS 1/2 PUBLISHes per publisher at most (also capped by the
    /// broker's Receive Maximum).
    #[arg(long, default_value_t = 256)]
    pub window: u32,
    /// Payload bytes (at least 16: the two timestamps).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Total publishes per second over all publishers (open loop); 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Publish exactly this many messages per publisher, then drain (no warm-up, the
    /// window is the whole run); overrides --duration.
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long, value_enum, default_value_t = TopicMode::PerPublisher)]
    pub topics: TopicMode,
    /// Subscribe with `$share/<group>/<filter>` (one group: each message to one subscriber).
    #[arg(long)]
    pub share_group: Option<String>,
    /// Seconds to wait after the last send for acknowledgements and deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Messages encoded into one write at most.
    #[arg(long, default_value_t = 512)]
    pub batch: u64,
    /// Ports the subscribers connect to, comma-separated, spread evenly (subscriber i to
    /// port i mod n); default: `--port`, where the publishers connect. For a cluster:
    /// publishers on one node, subscribers on the others.
    #[arg(long, value_delimiter = ',')]
    pub sub_ports: Vec<u16>,
}

/// Counters and histograms shared by all tasks (one thread: `Cell`, no atomics).
#[derive(Default)]
pub struct Shared {
    pub epoch: Option<Instant>,
    pub stop: Cell<bool>,
    pub sent: Cell<u64>,
    pub accepted: Cell<u64>,
    pub refused: Cell<u64>,
    pub delivered: Cell<u64>,
    pub recording: Cell<bool>,
    /// Receive time − send time (the time written into the payload when it was encoded).
    pub lat: RefCell<Hist>,
    /// Receive time − scheduled send time (fixed rate: includes any lag of the schedule,
    /// so a broker that pushes back shows up here).
    pub lat_sched: RefCell<Hist>,
    pub errors: Cell<u64>,
    pub last_error: RefCell<Option<String>>,
}

impl Shared {
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.map_or(0, |e| e.elapsed().as_nanos() as u64)
    }

    pub fn error(&self, what: &str, e: impl std::fmt::Display) {
        self.errors.set(self.errors.get() + 1);
        *self.last_error.borrow_mut() = Some(format!("{what}: {e}"));
    }
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

struct Counts {
    sent: u64,
    accepted: u64,
    refused: u64,
    delivered: u64,
}

fn counts(sh: &Shared) -> Counts {
    Counts {
        sent: sh.sent.get(),
        accepted: sh.accepted.get(),
        refused: sh.refused.get(),
        delivered: sh.delivered.get(),
    }
}

pub async fn run(common: &Common, target: Rc<Target>, a: &PubSubArgs) -> Result<Value, ConnError> {
    let v5 = target.version.is_v5();
    let tls = target.tls.is_some();
    let prefix = format!("lg/{}", common.resolved_run_id);
    let filter = match a.topics {
        TopicMode::PerPublisher => format!("{prefix}/t/+"),
        TopicMode::Shared => format!("{prefix}/t"),
    };
    let filter = match &a.share_group {
        Some(g) => format!("$share/{g}/{filter}"),
        None => filter,
    };
    let fanout = if a.subscribers == 0 {
        0
    } else if a.share_group.is_some() {
        1
    } else {
        a.subscribers as u64
    };
    // Read buffers: large for a few connections, small when there are thousands.
    let sub_rbuf = (64 << 20) / a.subscribers.max(1);
    let sub_rbuf = sub_rbuf.clamp(4 << 10, 256 << 10);

    let rss0 = proc_rss_kb(common.broker_pid);
    let t_conn = Instant::now();
    let sub_targets: Vec<Rc<Target>> = if a.sub_ports.is_empty() {
        vec![target.clone()]
    } else {
        a.sub_ports
            .iter()
            .map(|&port| {
                let mut t = (*target).clone();
                t.addr.set_port(port);
                Rc::new(t)
            })
            .collect()
    };
    let mut subs = Vec::with_capacity(a.subscribers);
    for (k, t) in sub_targets.iter().enumerate() {
        // Subscribers k, k + n, k + 2n, ... go to port k.
        let n = sub_targets.len();
        let here = (a.subscribers + n - 1 - k) / n;
        let idx: Vec<usize> = (0..here).map(|j| k + j * n).collect();
        let conns = connect_all(
            common,
            t,
            here,
            k * here,
            |j| format!("{}-s{}", common.client_prefix(), idx[j]),
            u16::MAX,
            sub_rbuf,
            Some((filter.clone(), a.qos)),
        )
        .await?;
        subs.extend(conns);
    }
    let pubs = connect_all(
        common,
        &target,
        a.publishers,
        a.subscribers,
        |i| format!("{}-p{i}", common.client_prefix()),
        u16::MAX,
        64 << 10,
        None,
    )
    .await?;
    let connect_secs = t_conn.elapsed().as_secs_f64();
    let rss_connected = proc_rss_kb(common.broker_pid);
    let server_rm = pubs
        .iter()
        .map(|(_, a)| a.receive_max)
        .min()
        .unwrap_or(u16::MAX);
    let window = a.window.min(u32::from(server_rm)).max(1);

    let sh = Rc::new(Shared {
        epoch: Some(Instant::now()),
        ..Shared::default()
    });
    let mut tasks = Vec::new();
    for (conn, _) in subs {
        tasks.push(tokio::task::spawn_local(subscriber(sh.clone(), conn, v5)));
    }
    let start = Instant::now() + Duration::from_millis(20);
    let per_pub_rate = a.rate / a.publishers.max(1) as f64;
    let mut states = Vec::new();
    let mut writers = Vec::new();
    for (i, (conn, _)) in pubs.into_iter().enumerate() {
        let topic = match a.topics {
            TopicMode::PerPublisher => format!("{prefix}/t/{i}"),
            TopicMode::Shared => format!("{prefix}/t"),
        };
        let tpl = PublishTemplate::new(target.version, &topic, a.qos, false, a.payload);
        let ps = Rc::new(PubState::default());
        let Conn { io, rb } = conn;
        let (r, w) = tokio::io::split(io);
        tasks.push(tokio::task::spawn_local(pub_reader(
            sh.clone(),
            ps.clone(),
            r,
            rb,
        )));
        // Publishers start at staggered offsets within the first period, so 1,000 paced
        // publishers do not all send in the same millisecond.
        let offset = if per_pub_rate > 0.0 {
            Duration::from_secs_f64((i as f64 / a.publishers as f64) / per_pub_rate)
        } else {
            Duration::ZERO
        };
        let plan = Plan {
            qos: a.qos,
            window,
            rate: per_pub_rate,
            count: a.count,
            start: start + offset,
            batch: a.batch.max(1),
            refill: u64::from((window / 8).max(1)),
            tls,
        };
        writers.push(tokio::task::spawn_local(writer(
            sh.clone(),
            ps.clone(),
            w,
            tpl,
            plan,
        )));
        states.push(ps);
    }

    let (s0, c0, s1, c1);
    if a.count.is_some() {
        sh.recording.set(true);
        s0 = Snap::take(&common.cpu_pids());
        c0 = counts(&sh);
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs_f64(a.drain.max(1.0) * 20.0);
        for w in writers {
            if tokio::time::timeout_at(deadline, w).await.is_err() {
                sh.error("publisher", "did not finish sending in time");
                break;
            }
        }
        sh.stop.set(true);
        drain(&sh, &states, fanout, a.drain).await;
        s1 = Snap::take(&common.cpu_pids());
        c1 = counts(&sh);
        sh.recording.set(false);
    } else {
        tokio::time::sleep_until((start + Duration::from_secs_f64(a.warmup)).into()).await;
        sh.lat.borrow_mut().reset();
        sh.lat_sched.borrow_mut().reset();
        sh.recording.set(true);
        s0 = Snap::take(&common.cpu_pids());
        c0 = counts(&sh);
        tokio::time::sleep_until((s0.at + Duration::from_secs_f64(a.duration)).into()).await;
        s1 = Snap::take(&common.cpu_pids());
        c1 = counts(&sh);
        sh.recording.set(false);
        sh.stop.set(true);
        for ps in &states {
            ps.notify.notify_one();
        }
        drain(&sh, &states, fanout, a.drain).await;
    }
    let rss_end = proc_rss_kb(common.broker_pid);
    let total = counts(&sh);
    for t in tasks {
        t.abort();
    }

    let secs = (s1.at - s0.at).as_secs_f64();
    let acc = c1.accepted - c0.accepted;
    let del = c1.delivered - c0.delivered;
    let msgs = (acc + del).max(1) as f64;
    let self_cpu = (s1.self_cpu - s0.self_cpu).as_secs_f64();
    let broker_cpu = match (s0.broker_cpu, s1.broker_cpu) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64()),
        _ => None,
    };
    let broker_user_cpu = match (s0.broker_user_cpu, s1.broker_user_cpu) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64()),
        _ => None,
    };
    let expected = total.accepted * fanout;
    let ratio = (expected > 0).then(|| total.delivered as f64 / expected as f64);
    let lat = sh.lat.borrow();
    let lat_sched = sh.lat_sched.borrow();
    Ok(json!({
        "scenario": "pubsub",
        "qos": a.qos,
        "publishers": a.publishers,
        "subscribers": a.subscribers,
        "topics": format!("{:?}", a.topics),
        "filter": filter,
        "share_group": a.share_group,
        "payload_bytes": a.payload.max(mqtt::STAMP_BYTES),
        "mode": if a.count.is_some() { "count" } else if a.rate > 0.0 { "fixed-rate" } else { "max" },
        "offered_rate": (a.rate > 0.0).then_some(a.rate),
        "window": (a.qos > 0).then_some(window),
        "server_receive_max": server_rm,
        "window_s": secs,
        "connect_s": connect_secs,
        "sent": c1.sent - c0.sent,
        "accepted": acc,
        "refused": c1.refused - c0.refused,
        "delivered": del,
        "sent_rate": (c1.sent - c0.sent) as f64 / secs,
        "accepted_rate": acc as f64 / secs,
        "delivered_rate": del as f64 / secs,
        "fanout": fanout,
        "total": { "sent": total.sent, "accepted": total.accepted, "refused": total.refused,
                   "delivered": total.delivered, "expected_delivered": expected },
        "delivered_ratio": ratio,
        "latency_us": lat_json(&lat),
        "latency_from_schedule_us": lat_json(&lat_sched),
        "loadgen_cpu_s": self_cpu,
        "loadgen_cpu_us_per_msg": self_cpu * 1e6 / msgs,
        "loadgen_cpu_util": self_cpu / secs,
        "broker_cpu_s": broker_cpu,
        "broker_cpu_util": broker_cpu.map(|c| c / secs),
        "broker_cpu_us_per_msg": broker_cpu.map(|c| c * 1e6 / msgs),
        "broker_cpu_us_per_publish": broker_cpu.map(|c| c * 1e6 / acc.max(1) as f64),
        "broker_user_cpu_s": broker_user_cpu,
        "broker_user_cpu_us_per_msg": broker_user_cpu.map(|c| c * 1e6 / msgs),
        "broker_user_cpu_us_per_publish": broker_user_cpu.map(|c| c * 1e6 / acc.max(1) as f64),
        "broker_rss_kb": { "before": rss0, "connected": rss_connected, "end": rss_end },
        "errors": sh.errors.get(),
        "last_error": sh.last_error.borrow().clone(),
    }))
}

/// Wait for the publishers' acknowledgements and the subscribers' deliveries: until all
/// expected deliveries arrived, nothing moved for a second, or `secs` passed.
async fn drain(sh: &Shared, states: &[Rc<PubState>], fanout: u64, secs: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut last = (u64::MAX, u64::MAX);
    let mut still = Instant::now();
    while Instant::now() < deadline {
        let inflight: u64 = states.iter().map(|s| u64::from(s.inflight.get())).sum();
        let now = (sh.accepted.get() + sh.refused.get(), sh.delivered.get());
        if inflight == 0 && sh.delivered.get() >= sh.accepted.get() * fanout {
            break;
        }
        if now != last {
            last = now;
            still = Instant::now();
        } else if still.elapsed() > Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for s in states {
        s.done.set(true);
        s.notify.notify_one();
    }
    // Let the writers see `done`.
    tokio::task::yield_now().await;
}
