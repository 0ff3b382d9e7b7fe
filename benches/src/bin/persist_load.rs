//! `persist_load`: QoS 1 throughput into a persistent session, with persistence off and on
//! (issue 7). See benches/README.md, "Persistence".
//!
//! `mqttv5 bench` cannot ask for a session expiry, and a session without one never
//! persists (it ends with its connection), so this tool drives the case persistence is
//! for: one subscriber with `Session Expiry Interval` 3600 on `bench/#` (QoS 1, acks
//! every PUBLISH at once) and one publisher sending QoS 1 PUBLISHes with up to
//! `--inflight` unacknowledged (the broker's PUBACK paces it: with persistence it comes
//! only once the message is on disk). For every repetition it starts a fresh
//! `gatehouse` per configuration (alternating which goes first) and counts the messages
//! the subscriber receives in the measured window; latency is PUBLISH written → PUBACK.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc and result files are read and written synchronously"
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use gatehouse_benches::harness::{fmt_num, locate, median, percentile, start_gatehouse, Proc};
use gatehouse_protocol::codec;
use gatehouse_protocol::{
    Packet, PacketId, ProtocolVersion, PubResp, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions,
};
use gatehouse_tests::raw::ConnectBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const TOOL: &str = "persist_load";
const BUILD: &str = "cargo build --release -p gatehouse -p gatehouse-benches";

#[derive(Parser, Debug)]
#[command(about = "QoS 1 throughput into a persistent session, persistence off vs on")]
struct Args {
    /// Seconds measured per run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before the measured window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Repetitions (each runs both configurations, alternating the first).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Unacknowledged PUBLISHes the publisher keeps in flight.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    #[arg(long, default_value_t = 64)]
    payload_size: usize,
    /// The gatehouse binary [default: next to this executable].
    #[arg(long)]
    gatehouse: Option<std::path::PathBuf>,
}

async fn connect(
    addr: SocketAddr,
    id: &str,
    expiry: u32,
) -> (OwnedReadHalf, OwnedWriteHalf, BytesMut) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).ok();
    s.write_all(
        &ConnectBuilder::new(id)
            .session_expiry(expiry)
            .receive_maximum(u16::MAX)
            .build(),
    )
    .await
    .expect("CONNECT");
    let (mut r, w) = s.into_split();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    match read_packet(&mut r, &mut buf).await {
        Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::SUCCESS => {}
        other => panic!("CONNACK expected, got {other:?}"),
    }
    (r, w, buf)
}

async fn read_packet(r: &mut OwnedReadHalf, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        match codec::decode_from_server(buf, ProtocolVersion::V5, 1 << 20) {
            Ok(Some(p)) => return Some(p),
            Ok(None) => {}
            Err(e) => panic!("decode: {e:?}"),
        }
        if buf.capacity() - buf.len() < 8192 {
            buf.reserve(64 * 1024);
        }
        match r.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn encode(p: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    codec::encode(p, ProtocolVersion::V5, &mut out).expect("encode");
    out
}

struct Outcome {
    delivered: u64,
    latencies: Vec<u32>,
    broker_cpu: Duration,
}

async fn run_load(addr: SocketAddr, args: &Args, broker: &Proc) -> Outcome {
    let (mut sr, mut sw, mut sbuf) = connect(addr, "persist-sub", 3600).await;
    let sub = Packet::Subscribe(Subscribe {
        packet_id: PacketId::MIN,
        subscription_identifier: None,
        user_properties: Vec::new(),
        filters: vec![(
            "bench/#".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
    });
    sw.write_all(&encode(&sub)).await.expect("SUBSCRIBE");
    match read_packet(&mut sr, &mut sbuf).await {
        Some(Packet::SubAck(a)) if a.reason_codes == [ReasonCode(1)] => {}
        other => panic!("SUBACK expected, got {other:?}"),
    }
    let from = Instant::now() + Duration::from_secs_f64(args.warmup);
    let to = from + Duration::from_secs_f64(args.duration);
    let delivered = Arc::new(AtomicU64::new(0));
    let counter = delivered.clone();
    let subscriber = tokio::spawn(async move {
        let mut acks = BytesMut::new();
        loop {
            let Some(p) = read_packet(&mut sr, &mut sbuf).await else {
                return;
            };
            if let Packet::Publish(p) = p {
                let now = Instant::now();
                if now >= from && now <= to {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(id) = p.packet_id {
                    acks.clear();
                    codec::encode(
                        &Packet::PubAck(PubResp::new(id, ReasonCode::SUCCESS)),
                        ProtocolVersion::V5,
                        &mut acks,
                    )
                    .expect("encode");
                    if sw.write_all(&acks).await.is_err() {
                        return;
                    }
                }
                if now > to {
                    return;
                }
            }
        }
    });
    let (mut pr, mut pw, mut pbuf) = connect(addr, "persist-pub", 0).await;
    let payload = Bytes::from(vec![b'x'; args.payload_size]);
    let mut sent: VecDeque<(u16, Instant)> = VecDeque::new();
    let mut latencies = Vec::new();
    let mut next: u16 = 0;
    let cpu0 = std::cell::Cell::new(None);
    while Instant::now() < to {
        while sent.len() < args.inflight {
            next = next.checked_add(1).unwrap_or(1);
            let p = Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: "bench/p".into(),
                packet_id: PacketId::new(next),
                properties: Default::default(),
                payload: payload.clone(),
            });
            pw.write_all(&encode(&p)).await.expect("PUBLISH");
            sent.push_back((next, Instant::now()));
        }
        if cpu0.get().is_none() && Instant::now() >= from {
            cpu0.set(Some(broker.cpu()));
        }
        match read_packet(&mut pr, &mut pbuf).await {
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.reason_code, ReasonCode::SUCCESS, "PUBACK");
                if let Some(pos) = sent.iter().position(|(id, _)| *id == a.packet_id.get()) {
                    if let Some((_, at)) = sent.remove(pos) {
                        let now = Instant::now();
                        if at >= from && now <= to {
                            latencies
                                .push(u32::try_from((now - at).as_micros()).unwrap_or(u32::MAX));
                        }
                    }
                }
            }
            Some(other) => panic!("publisher got {other:?}"),
            None => panic!("the broker closed the publisher"),
        }
    }
    let broker_cpu = broker.cpu().saturating_sub(cpu0.get().unwrap_or_default());
    let _ = tokio::time::timeout(Duration::from_secs(2), subscriber).await;
    latencies.sort_unstable();
    Outcome {
        delivered: delivered.load(Ordering::Relaxed),
        latencies,
        broker_cpu,
    }
}

fn main() {
    let args = Args::parse();
    let gatehouse = locate(TOOL, args.gatehouse.as_ref(), "gatehouse", BUILD);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::Builder::new()
        .prefix("gatehouse-persist-load-")
        .tempdir()
        .expect("a temporary directory");
    let configs = [
        ("off", ""),
        (
            "on",
            "persistence:\n  maxSize: 1Gi\n  subscriberQueue: { mode: All }\n  retain: { mode: All }\n",
        ),
    ];
    eprintln!(
        "{TOOL}: QoS 1, 1 publisher (in flight {}) -> 1 persistent subscriber, {} s after {} s warm-up, {} run(s), {}-byte payloads",
        args.inflight, args.duration, args.warmup, args.runs, args.payload_size
    );
    let mut rows: Vec<(&str, f64, f64, f64, f64)> = Vec::new();
    for run in 1..=args.runs {
        let order: Vec<_> = if run % 2 == 1 {
            configs.iter().collect()
        } else {
            configs.iter().rev().collect()
        };
        for (name, extra) in order {
            let work = tmp.path().join(format!("{name}-{run}"));
            let (broker, addr) = start_gatehouse(&gatehouse, &work, extra);
            let o = rt.block_on(run_load(addr, &args, &broker));
            let rate = o.delivered as f64 / args.duration;
            let cpu_us = o.broker_cpu.as_secs_f64() * 1e6 / (o.delivered.max(1) as f64);
            eprintln!(
                "run {run}: persistence {name}: {} msg/s, PUBACK p50 {} µs, p99 {} µs",
                fmt_num(rate, 0),
                fmt_num(percentile(&o.latencies, 0.5), 0),
                fmt_num(percentile(&o.latencies, 0.99), 0)
            );
            rows.push((
                name,
                rate,
                percentile(&o.latencies, 0.5),
                percentile(&o.latencies, 0.99),
                cpu_us,
            ));
        }
    }
    println!(
        "| persistence | delivered msg/s | PUBACK p50 µs | PUBACK p99 µs | broker CPU µs/msg |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for (name, _) in &configs {
        let pick = |f: fn(&(&str, f64, f64, f64, f64)) -> f64| {
            median(rows.iter().filter(|r| r.0 == *name).map(f).collect())
        };
        let rate = pick(|r| r.1);
        medians.push(rate);
        println!(
            "| {name} | {} | {} | {} | {} |",
            fmt_num(rate, 0),
            fmt_num(pick(|r| r.2), 0),
            fmt_num(pick(|r| r.3), 0),
            fmt_num(pick(|r| r.4), 2)
        );
    }
    if let [off, on] = medians[..] {
        println!(
            "(medians of {} run(s)); throughput cost of persistence: {:.1} %",
            args.runs,
            (1.0 - on / off) * 100.0
        );
    }
}
