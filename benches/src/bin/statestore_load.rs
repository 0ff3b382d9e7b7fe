//! `statestore_load`: state store requests per second (issue 6). See benches/README.md,
//! "State store".
//!
//! For every repetition it starts a fresh `gatehouse` (the release binary, as a child
//! process) on a free loopback port, then for each operation (`set`, `get`) and each
//! client count runs that many MQTT v5 clients, each on its own connection, in a closed
//! loop the way an SDK client uses the store: PUBLISH the RESP3 request at QoS 1 to the
//! request topic (response topic, 16 bytes of correlation data, `__ts`, `__protVer` and
//! `__srcId` user properties, as the AIO SDKs send them) → wait for the PUBACK and the
//! response PUBLISH (checked: `+OK` for SET, a bulk string for GET) → PUBACK it → next.
//! One request in flight per client. Requests completed inside the measured window count;
//! latency is from writing the request to reading its response. GET reads keys written
//! before the run; SET overwrites `--keys` keys per client round robin.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc and result files are read and written synchronously"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use gatehouse_benches::harness::{
    fmt_num, locate, median, percentile, start_gatehouse, threads_cpu, Proc,
};
use gatehouse_protocol::codec;
use gatehouse_protocol::{
    Packet, PacketId, ProtocolVersion, PubResp, Publish, PublishProperties, QoS, ReasonCode,
    Subscribe, SubscriptionOptions,
};
use gatehouse_tests::raw::ConnectBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOOL: &str = "statestore_load";
const BUILD: &str = "cargo build --release -p gatehouse -p gatehouse-benches";
const LOAD_THREADS: &str = "ss-load";
const REQUEST_TOPIC: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";
/// Large enough for any response here.
const MAX_PACKET: u32 = 1 << 20;

#[derive(Parser, Debug)]
#[command(about = "State store SET/GET requests per second over MQTT v5, QoS 1")]
struct Args {
    /// Operations, in the order they run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "set,get")]
    ops: Vec<Op>,
    /// Concurrent clients (one connection each), one measurement per value.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Seconds measured per measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before the measured window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Repetitions (each with a fresh broker).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Keys per client.
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Worker threads of the load generator's tokio runtime.
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// The gatehouse binary [default: next to this executable].
    #[arg(long)]
    gatehouse: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Op {
    Set,
    Get,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Set => "SET",
            Op::Get => "GET",
        }
    }
}

fn resp(parts: &[&[u8]]) -> Bytes {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.into()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One MQTT v5 connection used as a state store client.
struct Client {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    client_id: String,
    response_topic: String,
    next_id: u16,
}

impl Client {
    async fn connect(addr: SocketAddr, client_id: String) -> Result<Client, String> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).ok();
        stream
            .write_all(&ConnectBuilder::new(&client_id).build())
            .await
            .map_err(|e| format!("CONNECT: {e}"))?;
        let response_topic = format!(
            "clients/{client_id}/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response"
        );
        let mut c = Client {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(4096),
            client_id,
            response_topic,
            next_id: 0,
        };
        match c.read_packet().await? {
            Packet::ConnAck(ack) if ack.reason_code == ReasonCode::SUCCESS => {}
            other => return Err(format!("expected CONNACK 0x00, got {other:?}")),
        }
        let id = c.packet_id();
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            subscription_identifier: None,
            user_properties: Vec::new(),
            filters: vec![(
                c.response_topic.clone(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            )],
        }))
        .await?;
        match c.read_packet().await? {
            Packet::SubAck(ack) if ack.reason_codes == [ReasonCode(1)] => Ok(c),
            other => Err(format!("expected SUBACK 0x01, got {other:?}")),
        }
    }

    fn packet_id(&mut self) -> PacketId {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        PacketId::new(self.next_id).unwrap_or(PacketId::MIN)
    }

    async fn send(&mut self, packet: &Packet) -> Result<(), String> {
        self.wbuf.clear();
        codec::encode(packet, ProtocolVersion::V5, &mut self.wbuf).map_err(|e| e.to_string())?;
        self.stream
            .write_all(&self.wbuf)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    async fn read_packet(&mut self) -> Result<Packet, String> {
        loop {
            match codec::decode_from_server(&mut self.rbuf, ProtocolVersion::V5, MAX_PACKET) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(format!("decode: {e:?}")),
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(64 * 1024);
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// One request → PUBACK + response; returns the response payload.
    async fn request(&mut self, payload: Bytes, seq: u64) -> Result<Bytes, String> {
        let id = self.packet_id();
        let mut correlation = [0u8; 16];
        correlation[..8].copy_from_slice(&seq.to_be_bytes());
        let correlation = Bytes::copy_from_slice(&correlation);
        let properties = PublishProperties {
            payload_format_indicator: Some(0),
            message_expiry_interval: Some(10),
            response_topic: Some(self.response_topic.clone()),
            correlation_data: Some(correlation.clone()),
            user_properties: vec![
                (
                    "__ts".into(),
                    format!("{:015}:00000:{}", now_ms(), self.client_id),
                ),
                ("__protVer".into(), "1.0".into()),
                ("__srcId".into(), self.client_id.clone()),
            ],
            content_type: Some("application/octet-stream".into()),
            ..Default::default()
        };
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: REQUEST_TOPIC.into(),
            packet_id: Some(id),
            properties,
            payload,
        }))
        .await?;
        let (mut acked, mut response) = (false, None);
        while !acked || response.is_none() {
            match self.read_packet().await? {
                Packet::PubAck(ack) if ack.packet_id == id => {
                    if ack.reason_code != ReasonCode::SUCCESS {
                        return Err(format!("PUBACK {:?}", ack.reason_code));
                    }
                    acked = true;
                }
                Packet::Publish(p) => {
                    if let Some(pid) = p.packet_id {
                        self.send(&Packet::PubAck(PubResp::new(pid, ReasonCode::SUCCESS)))
                            .await?;
                    }
                    if p.properties.correlation_data.as_ref() == Some(&correlation) {
                        response = Some(p.payload);
                    }
                }
                other => return Err(format!("unexpected {other:?}")),
            }
        }
        response.ok_or_else(|| "no response".into())
    }
}

struct Plan {
    addr: SocketAddr,
    op: Op,
    keys: usize,
    value: Bytes,
    from: Instant,
    to: Instant,
}

fn key(client: usize, i: usize) -> Vec<u8> {
    format!("bench/{client}/{i}").into_bytes()
}

/// Write every key the GET loops will read.
async fn preload(
    addr: SocketAddr,
    clients: usize,
    keys: usize,
    value: &Bytes,
) -> Result<(), String> {
    let mut c = Client::connect(addr, "ss-preload".into()).await?;
    for client in 0..clients {
        for i in 0..keys {
            let reply = c
                .request(resp(&[b"SET", &key(client, i), value]), 0)
                .await?;
            if &reply[..] != b"+OK\r\n" {
                return Err(format!(
                    "preload SET: {:?}",
                    String::from_utf8_lossy(&reply)
                ));
            }
        }
    }
    Ok(())
}

async fn client_loop(plan: Arc<Plan>, n: usize) -> Result<Vec<u32>, String> {
    let mut c = Client::connect(plan.addr, format!("ss-load-{n}")).await?;
    let mut latencies = Vec::new();
    let mut seq = 0u64;
    loop {
        let start = Instant::now();
        if start >= plan.to {
            return Ok(latencies);
        }
        let k = key(n, (seq as usize) % plan.keys);
        let payload = match plan.op {
            Op::Set => resp(&[b"SET", &k, &plan.value]),
            Op::Get => resp(&[b"GET", &k]),
        };
        let reply = c.request(payload, seq).await?;
        let ok = match plan.op {
            Op::Set => &reply[..] == b"+OK\r\n",
            Op::Get => reply.starts_with(b"$") && !reply.starts_with(b"$-1"),
        };
        if !ok {
            return Err(format!(
                "{} reply {:?}",
                plan.op.name(),
                String::from_utf8_lossy(&reply)
            ));
        }
        let end = Instant::now();
        if start >= plan.from && end <= plan.to {
            latencies.push(u32::try_from((end - start).as_micros()).unwrap_or(u32::MAX));
        }
        seq += 1;
    }
}

struct Measure {
    op: Op,
    clients: usize,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    broker_cpu_us: f64,
    load_cpu_us: f64,
}

fn measure(
    load: &tokio::runtime::Runtime,
    broker: &Proc,
    args: &Args,
    addr: SocketAddr,
    op: Op,
    clients: usize,
) -> Measure {
    let value = Bytes::from(vec![b'v'; args.value_size]);
    if op == Op::Get {
        load.block_on(preload(addr, clients, args.keys, &value))
            .unwrap_or_else(|e| panic!("preload failed: {e}"));
    }
    let from = Instant::now() + Duration::from_secs_f64(args.warmup);
    let to = from + Duration::from_secs_f64(args.duration);
    let plan = Arc::new(Plan {
        addr,
        op,
        keys: args.keys.max(1),
        value,
        from,
        to,
    });
    let loops: Vec<_> = (0..clients)
        .map(|n| load.spawn(client_loop(plan.clone(), n)))
        .collect();
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let cpu0 = (broker.cpu(), threads_cpu(LOAD_THREADS));
    std::thread::sleep(to.saturating_duration_since(Instant::now()));
    let cpu1 = (broker.cpu(), threads_cpu(LOAD_THREADS));
    let mut latencies = Vec::new();
    for handle in loops {
        match load.block_on(handle) {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => panic!("{} with {clients} clients: {e}", op.name()),
            Err(e) => panic!("a client loop panicked: {e}"),
        }
    }
    latencies.sort_unstable();
    let n = latencies.len().max(1) as f64;
    Measure {
        op,
        clients,
        per_sec: latencies.len() as f64 / args.duration,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        broker_cpu_us: cpu1.0.saturating_sub(cpu0.0).as_secs_f64() * 1e6 / n,
        load_cpu_us: cpu1.1.saturating_sub(cpu0.1).as_secs_f64() * 1e6 / n,
    }
}

fn main() {
    let args = Args::parse();
    assert!(args.runs > 0, "--runs must be at least 1");
    assert!(
        args.clients.iter().all(|&c| c > 0),
        "--clients values must be at least 1"
    );
    let gatehouse = locate(TOOL, args.gatehouse.as_ref(), "gatehouse", BUILD);
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.load_threads.max(1))
        .thread_name(LOAD_THREADS)
        .enable_all()
        .build()
        .expect("the load generator's runtime");
    let tmp = tempfile::Builder::new()
        .prefix("gatehouse-statestore-load-")
        .tempdir()
        .expect("a temporary directory");
    eprintln!(
        "{TOOL}: ops {:?}, clients {:?}, {} s measured after {} s warm-up, {} run(s), {}-byte values; gatehouse {}",
        args.ops, args.clients, args.duration, args.warmup, args.runs, args.value_size, gatehouse.display()
    );
    let mut all: Vec<Measure> = Vec::new();
    for run in 1..=args.runs {
        let work = tmp.path().join(format!("run-{run}"));
        let (broker, addr) = start_gatehouse(&gatehouse, &work, "");
        for &op in &args.ops {
            for &clients in &args.clients {
                let m = measure(&load, &broker, &args, addr, op, clients);
                eprintln!(
                    "run {run}: {} x{clients}: {} req/s, p50 {} µs, p99 {} µs",
                    op.name(),
                    fmt_num(m.per_sec, 0),
                    fmt_num(m.p50_us, 0),
                    fmt_num(m.p99_us, 0)
                );
                all.push(m);
            }
        }
    }
    println!("| op | clients | req/s | p50 µs | p99 µs | broker CPU µs/req | load CPU µs/req |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &op in &args.ops {
        for &clients in &args.clients {
            let pick = |f: fn(&Measure) -> f64| {
                median(
                    all.iter()
                        .filter(|m| m.op == op && m.clients == clients)
                        .map(f)
                        .collect(),
                )
            };
            println!(
                "| {} | {clients} | {} | {} | {} | {} | {} |",
                op.name(),
                fmt_num(pick(|m| m.per_sec), 0),
                fmt_num(pick(|m| m.p50_us), 0),
                fmt_num(pick(|m| m.p99_us), 0),
                fmt_num(pick(|m| m.broker_cpu_us), 1),
                fmt_num(pick(|m| m.load_cpu_us), 1),
            );
        }
    }
    println!("(medians of {} run(s))", args.runs);
}
