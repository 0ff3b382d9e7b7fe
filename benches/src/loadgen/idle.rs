//! Idle connections: open N connections (CONNECT/CONNACK each, or with --no-connect raw
//! TCP sockets that never send a byte), hold them, and report the broker's RSS per
//! connection; then close them all and report how far its RSS came back.

use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::net::{Conn, ConnError, RBuf, Stream, Target};
use super::sys::{proc_rss_kb, raise_nofile, Snap};
use super::Common;

#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Open TCP (and TLS, with --tls) only; never send CONNECT.
    #[arg(long)]
    pub no_connect: bool,
    /// Seconds to let the broker settle before each RSS reading.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds to hold the connections after the reading.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
}

pub async fn run(common: &Common, target: Rc<Target>, a: &IdleArgs) -> Result<Value, ConnError> {
    let (soft, hard) = raise_nofile(a.connections as u64 + 1024);
    let settle = Duration::from_secs_f64(a.settle);
    // One connection first, opened and closed as the measured ones will be, so that
    // what a broker sets up once on its first client (allocator thread caches, worker
    // stacks touched, lazily built tables) is in the baseline and not counted as memory
    // kept after the connections close (benches/idle_rss.py does the same).
    if let Ok(io) = target.open(0).await {
        let mut conn = Conn {
            io,
            rb: RBuf::new(256),
        };
        if !a.no_connect {
            let id = format!("{}-warm", common.client_prefix());
            let _ = target.handshake(&mut conn, &id, u16::MAX).await;
        }
        drop(conn);
    }
    tokio::time::sleep(settle).await;
    let rss0 = proc_rss_kb(common.broker_pid);
    let self_rss0 = proc_rss_kb(None);
    let s0 = Snap::take(&common.cpu_pids());
    let sem = Rc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let mut handles = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let (sem, target) = (sem.clone(), target.clone());
        let id = format!("{}-i{i}", common.client_prefix());
        let raw = a.no_connect;
        handles.push(tokio::task::spawn_local(async move {
            let _permit = sem.acquire().await;
            let io = target.open(i).await?;
            if raw {
                return Ok::<Stream, ConnError>(io);
            }
            let mut conn = Conn {
                io,
                rb: RBuf::new(256),
            };
            target.handshake(&mut conn, &id, u16::MAX).await?;
            Ok(conn.io)
        }));
    }
    let mut held = Vec::with_capacity(a.connections);
    let mut failed = 0usize;
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let s1 = Snap::take(&common.cpu_pids());
    let open_secs = (s1.at - s0.at).as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_held = proc_rss_kb(common.broker_pid);
    let self_rss_held = proc_rss_kb(None);
    // How many are still open: a broker may close sockets that never send CONNECT.
    let mut closed = 0usize;
    let mut probe = [0u8; 1];
    for s in &mut held {
        let tcp = match s {
            Stream::Tcp(t) => &*t,
            Stream::Tls(t) => t.get_ref().0,
        };
        match tcp.try_read(&mut probe) {
            Ok(0) => closed += 1,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => closed += 1,
        }
    }
    if a.hold > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    }
    let n = held.len();
    let t_close = Instant::now();
    // Close with RST (linger 0): 50,000 closes would otherwise leave as many TIME_WAIT
    // sockets on our side for a minute, holding ephemeral ports the next run needs.
    for s in &held {
        let tcp = match s {
            Stream::Tcp(t) => t,
            Stream::Tls(t) => t.get_ref().0,
        };
        let _ = tcp.set_zero_linger();
    }
    drop(held);
    tokio::time::sleep(settle.max(Duration::from_secs(1))).await;
    let rss_after = proc_rss_kb(common.broker_pid);
    let per_conn = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if n > 0 => Some((b as f64 - a as f64) * 1024.0 / n as f64),
        _ => None,
    };
    let broker_cpu = match (s0.broker_cpu, s1.broker_cpu) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64()),
        _ => None,
    };
    Ok(json!({
        "scenario": "idle",
        "no_connect": a.no_connect,
        "tls": target.tls.is_some(),
        "requested": a.connections,
        "held": n,
        "failed": failed,
        "closed_by_broker_at_reading": closed,
        "first_error": first_error,
        "nofile_limit": { "soft": soft, "hard": hard },
        "source_addresses": target.sources.len(),
        "open_s": open_secs,
        "connections_per_s": n as f64 / open_secs,
        "broker_cpu_us_per_conn": broker_cpu.map(|c| c * 1e6 / n.max(1) as f64),
        "broker_rss_kb": { "before": rss0, "held": rss_held, "after_close": rss_after },
        "broker_rss_bytes_per_conn": per_conn(rss0, rss_held),
        "broker_rss_after_close_vs_before": match (rss0, rss_after) { (Some(a), Some(b)) if a > 0 => Some(b as f64 / a as f64), _ => None },
        "loadgen_rss_bytes_per_conn": per_conn(self_rss0, self_rss_held),
        "close_s": t_close.elapsed().as_secs_f64(),
    }))
}
