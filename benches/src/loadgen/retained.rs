//! Retained storm: publish K retained messages (QoS 1, windowed, on K topics), then
//! S subscribers subscribe to all of them at once; measured: SUBSCRIBE written → SUBACK,
//! → first and → last retained message, and the broker's CPU for the subscribe phase.

use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::mqtt::{self, PublishTemplate};
use super::net::{ConnError, Target};
use super::sys::{proc_rss_kb, Snap};
use super::{connect_all, lat_json, Common};
use crate::loadgen::hist::Hist;

#[derive(clap::Args, Debug, Clone)]
pub struct RetainedArgs {
    /// Retained messages (one topic each).
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Subscribers subscribing at once after the messages are stored.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// QoS of the retained PUBLISHes (0 or 1) and of the subscriptions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    #[arg(long, default_value_t = 256)]
    pub window: u32,
    /// Seconds the subscribers may take to receive all retained messages.
    #[arg(long, default_value_t = 60.0)]
    pub wait: f64,
}

pub async fn run(
    common: &Common,
    target: Rc<Target>,
    a: &RetainedArgs,
) -> Result<Value, ConnError> {
    let v5 = target.version.is_v5();
    let prefix = format!("lg/{}/r", common.resolved_run_id);
    let rss0 = proc_rss_kb(common.broker_pid);

    // Phase 1: store the retained messages (QoS 1 with a window, or QoS 0 then a
    // QoS 1 marker so we know all were read).
    let mut pubs = connect_all(
        common,
        &target,
        1,
        0,
        |_| format!("{}-rp", common.client_prefix()),
        u16::MAX,
        64 << 10,
        None,
    )
    .await?;
    let (mut conn, ack) = pubs.remove(0);
    let window = a.window.min(u32::from(ack.receive_max)).max(1) as u64;
    let t_store = Instant::now();
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut refused = 0u64;
    let mut buf = Vec::new();
    let total = a.messages + u64::from(a.qos == 0);
    while acked + refused < total {
        buf.clear();
        while sent < total && sent - acked - refused < window && buf.len() < (64 << 10) {
            let last_marker = a.qos == 0 && sent == a.messages;
            let qos = if last_marker { 1 } else { a.qos };
            let topic = if last_marker {
                format!("{prefix}-marker")
            } else {
                format!("{prefix}/{sent}")
            };
            let mut tpl =
                PublishTemplate::new(target.version, &topic, qos, !last_marker, a.payload);
            tpl.emit(&mut buf, (sent % 65_535 + 1) as u16, 0, 0);
            sent += 1;
            if qos == 0 {
                acked += 1;
            }
        }
        if !buf.is_empty() {
            conn.io.send(&buf).await?;
        }
        if acked + refused >= total {
            break;
        }
        let fut = conn.rb.fill(&mut conn.io);
        let n = tokio::time::timeout(Duration::from_secs_f64(a.wait), fut)
            .await
            .map_err(|_| ConnError::Timeout("PUBACKs of the retained messages"))??;
        if n == 0 {
            return Err(ConnError::Closed("storing retained messages"));
        }
        while let Some((first, body)) = conn.rb.next_packet()? {
            if first >> 4 == mqtt::PUBACK {
                if body.get(2).is_some_and(|&r| r >= 0x80) {
                    refused += 1;
                } else {
                    acked += 1;
                }
            }
        }
    }
    let store_secs = t_store.elapsed().as_secs_f64();
    let rss_stored = proc_rss_kb(common.broker_pid);
    drop(conn);

    // Phase 2: the subscribers connect first, then all subscribe at once.
    let subs = connect_all(
        common,
        &target,
        a.subscribers,
        1,
        |i| format!("{}-rs{i}", common.client_prefix()),
        u16::MAX,
        256 << 10,
        None,
    )
    .await?;
    let s0 = Snap::take(&common.cpu_pids());
    let filter = format!("{prefix}/#");
    let mut handles = Vec::new();
    for (mut conn, _) in subs {
        let filter = filter.clone();
        let (qos, expect, wait) = (a.qos, a.messages, a.wait);
        handles.push(tokio::task::spawn_local(async move {
            let t0 = Instant::now();
            conn.io
                .send(&mqtt::subscribe(
                    if v5 {
                        mqtt::Version::V5
                    } else {
                        mqtt::Version::V311
                    },
                    1,
                    &filter,
                    qos,
                ))
                .await?;
            let (mut suback, mut first_at, mut last_at, mut got) = (None, None, None, 0u64);
            let mut out = Vec::new();
            let fut = async {
                while got < expect {
                    if conn.rb.fill(&mut conn.io).await? == 0 {
                        return Err(ConnError::Closed("receiving retained messages"));
                    }
                    let now = t0.elapsed();
                    while let Some((first, body)) = conn.rb.next_packet()? {
                        match first >> 4 {
                            mqtt::SUBACK => {
                                mqtt::check_suback(body, v5)?;
                                suback = Some(now);
                            }
                            mqtt::PUBLISH if first & 1 == 1 => {
                                got += 1;
                                first_at.get_or_insert(now);
                                last_at = Some(now);
                                if (first >> 1) & 3 == 1 {
                                    let (pid, _) = mqtt::publish_parts(first, body, v5)?;
                                    out.extend_from_slice(&mqtt::ack(mqtt::PUBACK, pid));
                                }
                            }
                            _ => {}
                        }
                    }
                    if !out.is_empty() {
                        conn.io.send(&out).await?;
                        out.clear();
                    }
                }
                Ok(())
            };
            let r = tokio::time::timeout(Duration::from_secs_f64(wait), fut).await;
            let timed_out = r.is_err();
            if let Ok(Err(e)) = r {
                return Err(e);
            }
            Ok::<_, ConnError>((suback, first_at, last_at, got, timed_out))
        }));
    }
    let mut to_suback = Hist::new();
    let mut to_first = Hist::new();
    let mut to_last = Hist::new();
    let (mut received, mut incomplete) = (0u64, 0usize);
    for h in handles {
        let (suback, first, last, got, timed_out) = h
            .await
            .map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))??;
        received += got;
        if timed_out || got < a.messages {
            incomplete += 1;
        }
        let ns = |d: Option<Duration>| d.map(|d| d.as_nanos() as u64);
        if let Some(v) = ns(suback) {
            to_suback.record(v);
        }
        if let Some(v) = ns(first) {
            to_first.record(v);
        }
        if let Some(v) = ns(last) {
            to_last.record(v);
        }
    }
    let s1 = Snap::take(&common.cpu_pids());
    let secs = (s1.at - s0.at).as_secs_f64();
    let self_cpu = (s1.self_cpu - s0.self_cpu).as_secs_f64();
    let broker_cpu = match (s0.broker_cpu, s1.broker_cpu) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64()),
        _ => None,
    };
    let msgs = received.max(1) as f64;
    Ok(json!({
        "scenario": "retained",
        "messages": a.messages,
        "stored": acked - u64::from(a.qos == 0),
        "refused": refused,
        "store_s": store_secs,
        "store_rate": a.messages as f64 / store_secs,
        "subscribers": a.subscribers,
        "received": received,
        "incomplete_subscribers": incomplete,
        "subscribe_s": secs,
        "delivered_rate": received as f64 / secs,
        "to_suback_us": lat_json(&to_suback),
        "to_first_us": lat_json(&to_first),
        "to_last_us": lat_json(&to_last),
        "loadgen_cpu_us_per_msg": self_cpu * 1e6 / msgs,
        "broker_cpu_s": broker_cpu,
        "broker_cpu_us_per_msg": broker_cpu.map(|c| c * 1e6 / msgs),
        "broker_rss_kb": { "before": rss0, "stored": rss_stored, "end": proc_rss_kb(common.broker_pid) },
    }))
}
