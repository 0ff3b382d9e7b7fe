//! Connect storm: C concurrent loops, each opening a connection (TCP, TLS with --tls: a
//! full handshake unless --tls-resume), CONNECT → CONNACK, DISCONNECT, then waiting for the
//! broker to close (so the TIME_WAIT socket is the broker's, not ours) — for a duration.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::hist::Hist;
use super::mqtt;
use super::net::{Conn, ConnError, RBuf, Target};
use super::sys::Snap;
use super::{lat_json, Common};

#[derive(clap::Args, Debug, Clone)]
pub struct StormArgs {
    /// Concurrent connect loops.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Session takeovers instead: each loop keeps one client id and CONNECTs it to these
    /// ports in turn (comma-separated; a cluster's nodes), without DISCONNECT, so every
    /// CONNECT takes the session over from the previous connection (which the broker
    /// sends away, v5: 0x8E); the rate is takeovers per second.
    #[arg(long, value_delimiter = ',')]
    pub takeover_ports: Vec<u16>,
}

#[derive(Default)]
struct St {
    ok: Cell<u64>,
    failed: Cell<u64>,
    recording: Cell<bool>,
    stop: Cell<bool>,
    hist: RefCell<Hist>,
    first_error: RefCell<Option<String>>,
}

impl St {
    /// Count one attempt, if the measured window is open.
    fn record(&self, r: Result<Duration, ConnError>) {
        if !self.recording.get() {
            return;
        }
        match r {
            Ok(took) => {
                self.ok.set(self.ok.get() + 1);
                self.hist.borrow_mut().record(took.as_nanos() as u64);
            }
            Err(e) => {
                self.failed.set(self.failed.get() + 1);
                self.first_error.borrow_mut().get_or_insert(e.to_string());
            }
        }
    }
}

pub async fn run(common: &Common, target: Rc<Target>, a: &StormArgs) -> Result<Value, ConnError> {
    if !a.takeover_ports.is_empty() {
        return takeovers(common, target, a).await;
    }
    let st = Rc::new(St::default());
    let mut loops = Vec::new();
    for l in 0..a.concurrency {
        let (st, target) = (st.clone(), target.clone());
        let prefix = format!("{}-c{l}", common.client_prefix());
        loops.push(tokio::task::spawn_local(async move {
            let mut k = 0u64;
            while !st.stop.get() {
                let t0 = Instant::now();
                let r = async {
                    let io = target.open(l + k as usize).await?;
                    let mut conn = Conn {
                        io,
                        rb: RBuf::new(256),
                    };
                    target
                        .handshake(&mut conn, &format!("{prefix}-{k}"), u16::MAX)
                        .await?;
                    let took = t0.elapsed();
                    conn.io.send(&mqtt::DISCONNECT_PACKET).await?;
                    // Wait (briefly) for the broker to close first.
                    let mut sink = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while matches!(conn.io.read(&mut sink).await, Ok(n) if n > 0) {}
                    })
                    .await;
                    Ok::<_, ConnError>(took)
                }
                .await;
                k += 1;
                st.record(r);
            }
        }));
    }
    let Window {
        ok,
        failed,
        secs,
        self_cpu,
        broker_cpu,
    } = window(common, a, &st, loops).await;
    let hist = st.hist.borrow();
    Ok(json!({
        "scenario": "connect",
        "tls": target.tls.is_some(),
        "tls_resume": common.tls_resume,
        "concurrency": a.concurrency,
        "window_s": secs,
        "connections": ok,
        "failed": failed,
        "first_error": st.first_error.borrow().clone(),
        "connections_per_s": ok as f64 / secs,
        "connect_us": lat_json(&hist),
        "loadgen_cpu_us_per_conn": self_cpu * 1e6 / ok.max(1) as f64,
        "broker_cpu_s": broker_cpu,
        "broker_cpu_us_per_conn": broker_cpu.map(|c| c * 1e6 / ok.max(1) as f64),
    }))
}

/// `--takeover-ports`: see [`StormArgs::takeover_ports`].
async fn takeovers(common: &Common, target: Rc<Target>, a: &StormArgs) -> Result<Value, ConnError> {
    let targets: Vec<Rc<Target>> = a
        .takeover_ports
        .iter()
        .map(|&port| {
            let mut t = (*target).clone();
            t.addr.set_port(port);
            Rc::new(t)
        })
        .collect();
    let st = Rc::new(St::default());
    let mut loops = Vec::new();
    for l in 0..a.concurrency {
        let (st, targets) = (st.clone(), targets.clone());
        let client_id = format!("{}-t{l}", common.client_prefix());
        loops.push(tokio::task::spawn_local(async move {
            let mut k = 0usize;
            // The connection the next CONNECT takes the session from.
            let mut previous: Option<Conn> = None;
            while !st.stop.get() {
                let target = &targets[k % targets.len()];
                let t0 = Instant::now();
                let r = async {
                    let io = target.open(l + k).await?;
                    let mut conn = Conn {
                        io,
                        rb: RBuf::new(256),
                    };
                    target.handshake(&mut conn, &client_id, u16::MAX).await?;
                    Ok::<_, ConnError>((t0.elapsed(), conn))
                }
                .await;
                k += 1;
                // The previous connection was sent away by the broker by now (or is
                // about to be): let it go.
                let r = r.map(|(took, conn)| {
                    drop(previous.replace(conn));
                    took
                });
                st.record(r);
            }
        }));
    }
    let Window {
        ok,
        failed,
        secs,
        broker_cpu,
        ..
    } = window(common, a, &st, loops).await;
    let hist = st.hist.borrow();
    Ok(json!({
        "scenario": "takeover",
        "concurrency": a.concurrency,
        "ports": a.takeover_ports,
        "window_s": secs,
        "takeovers": ok,
        "failed": failed,
        "first_error": st.first_error.borrow().clone(),
        "takeovers_per_s": ok as f64 / secs,
        "connect_us": lat_json(&hist),
        "broker_cpu_s": broker_cpu,
        "broker_cpu_us_per_takeover": broker_cpu.map(|c| c * 1e6 / ok.max(1) as f64),
    }))
}

/// What one measured window of a storm counted.
struct Window {
    ok: u64,
    failed: u64,
    secs: f64,
    self_cpu: f64,
    broker_cpu: Option<f64>,
}

/// Warm up, count for `--duration`, then stop the loops.
async fn window(
    common: &Common,
    a: &StormArgs,
    st: &St,
    loops: Vec<tokio::task::JoinHandle<()>>,
) -> Window {
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    st.recording.set(true);
    let s0 = Snap::take(&common.cpu_pids());
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let s1 = Snap::take(&common.cpu_pids());
    st.recording.set(false);
    let (ok, failed) = (st.ok.get(), st.failed.get());
    st.stop.set(true);
    for l in loops {
        let _ = tokio::time::timeout(Duration::from_secs(5), l).await;
    }
    Window {
        ok,
        failed,
        secs: (s1.at - s0.at).as_secs_f64(),
        self_cpu: (s1.self_cpu - s0.self_cpu).as_secs_f64(),
        broker_cpu: match (s0.broker_cpu, s1.broker_cpu) {
            (Some(a), Some(b)) => Some((b - a).as_secs_f64()),
            _ => None,
        },
    }
}
