//! `auth_connect`: CONNECT + CONNACK rate with each authentication method, against none
//! (issue 4). See benches/README.md, "Authentication".
//!
//! For every scenario and repetition it starts a fresh `gatehouse` (the release binary, as
//! a child process, logging at its default level to a file) on a free loopback port, plus
//! what the method needs (the example custom authentication server as a child process, or
//! an in-process HTTPS stub), then runs `--concurrency` loops of
//! TCP connect → [TLS handshake] → CONNECT → CONNACK → DISCONNECT → wait for the close,
//! with raw MQTT v5 packets, for `--warmup` + `--duration` seconds. Connections that end
//! inside the measured window are counted; their latency is from the TCP connect to the
//! CONNACK. CPU time (utime + stime from /proc) is sampled at both ends of the window for
//! the broker, the authentication server and the load generator's own threads.
//!
//! Scenarios (`--scenarios`, comma separated):
//! - `none`: plain TCP port without `authenticationRef`;
//! - `none-tls`: TLS port (EC P-256 server certificate) without `authenticationRef`;
//! - `x509`: TLS port with an X.509 chain; every client presents an EC P-256 certificate;
//! - `sat`: plain TCP port with a SAT chain, offline backend (RS256 JWT checked against a
//!   JWKS file, service accounts from a file); tokens are minted before the run;
//! - `custom-stub`: plain TCP port with a Custom chain whose server is an in-process HTTPS
//!   stub that answers every request with 200 `{}` (the broker's own overhead);
//! - `custom-example`: the same against the shipped `custom-auth-server` with one user
//!   (argon2id with the argon2 crate's defaults: 19 MiB, 2 passes) and its password.
//!
//! Every TLS connection is a full handshake (client-side resumption is disabled); clients
//! use rustls with aws-lc-rs and its default key exchange groups (X25519MLKEM768 first)
//! unless `--x25519-only`.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc and result files are read and written synchronously"
)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use gatehouse_benches::harness::{fmt_num, locate, median, percentile, threads_cpu, Proc};
use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::free_port;
use gatehouse_tests::https_stub::ScriptedServer;
use gatehouse_tests::jwt::{self, Signer};
use gatehouse_tests::raw::{frame, mqtt_str, split_frame, write_varint};
use gatehouse_tests::tls::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

mod client;
mod setup;

use client::*;
use setup::*;

const TOOL: &str = "auth_connect";
const BUILD: &str = "cargo build --release -p gatehouse -p gatehouse-custom-auth-server";
const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
/// The example server's user.
const USER: &str = "bench";
const PASSWORD: &str = "bench-password-1";
/// Thread names, for CPU accounting from /proc/self/task.
const LOAD_THREADS: &str = "ac-load";
const STUB_THREADS: &str = "ac-stub";

#[derive(Parser, Debug)]
#[command(about = "CONNECT+CONNACK rate with each authentication method vs none")]
struct Args {
    /// Scenarios, in the order they run within a repetition.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,none-tls,x509,sat,custom-stub,custom-example"
    )]
    scenarios: Vec<Scenario>,
    /// Concurrent connect/disconnect loops.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before the measured window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Repetitions (each runs every scenario once, with a fresh broker).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Pause of each loop after each connection, in milliseconds (0: none), to measure
    /// at a low connection rate.
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// TLS clients offer X25519 only (rustls' default with aws-lc-rs puts the
    /// X25519MLKEM768 post-quantum hybrid first, which Gatehouse accepts).
    #[arg(long)]
    x25519_only: bool,
    /// Worker threads of the load generator's tokio runtime.
    #[arg(long, default_value_t = 2)]
    load_threads: usize,
    /// The broker's `diagnostics.logs.level` (its default is `info`: one log line per
    /// authenticated client).
    #[arg(long, default_value = "info")]
    broker_log_level: String,
    /// The gatehouse binary [default: next to this executable].
    #[arg(long)]
    gatehouse: Option<PathBuf>,
    /// The custom-auth-server binary [default: next to this executable].
    #[arg(long)]
    custom_auth_server: Option<PathBuf>,
    /// Also write every run and the medians as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the temporary directory (configurations, logs) and print its path.
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    None,
    NoneTls,
    X509,
    Sat,
    CustomStub,
    CustomExample,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::None => "none",
            Scenario::NoneTls => "none-tls",
            Scenario::X509 => "x509",
            Scenario::Sat => "sat",
            Scenario::CustomStub => "custom-stub",
            Scenario::CustomExample => "custom-example",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scenario::None => "no authentication, TCP",
            Scenario::NoneTls => "no authentication, TLS",
            Scenario::X509 => "X.509 client certificate, TLS",
            Scenario::Sat => "SAT offline (RS256 JWT + JWKS), TCP",
            Scenario::CustomStub => "Custom, HTTPS stub answering 200, TCP",
            Scenario::CustomExample => "Custom, example server (argon2id), TCP",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Scenario::NoneTls | Scenario::X509)
    }
}

// ---------------------------------------------------------------------------------------
// One run of one scenario
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct RunResult {
    scenario: Scenario,
    run: usize,
    connections: u64,
    failed: u64,
    first_error: Option<String>,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    broker_cpu_us: f64,
    auth_cpu_us: Option<f64>,
    load_cpu_us: f64,
}

impl RunResult {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario.name(),
            "run": self.run,
            "connections": self.connections,
            "failed": self.failed,
            "first_error": self.first_error,
            "connections_per_sec": self.per_sec,
            "p50_connect_us": self.p50_us,
            "p99_connect_us": self.p99_us,
            "broker_cpu_us_per_connection": self.broker_cpu_us,
            "auth_server_cpu_us_per_connection": self.auth_cpu_us,
            "load_cpu_us_per_connection": self.load_cpu_us,
        })
    }
}

struct Bins {
    gatehouse: PathBuf,
    custom_auth_server: Option<PathBuf>,
}

fn run_one(
    fx: &Fixtures,
    bins: &Bins,
    args: &Args,
    load: &tokio::runtime::Runtime,
    stub_rt: &tokio::runtime::Runtime,
    scenario: Scenario,
    run: usize,
) -> RunResult {
    let work = fx.dir.join(format!("{}-{run}", scenario.name()));
    std::fs::create_dir_all(&work).expect("create the run's directory");

    let auth = match scenario {
        Scenario::CustomStub => AuthServer::Stub(
            stub_rt.block_on(ScriptedServer::counting(&fx.pki, |_| (200, "{}".into()))),
        ),
        Scenario::CustomExample => {
            let bin = bins
                .custom_auth_server
                .as_deref()
                .expect("custom-auth-server is located when custom-example runs");
            let port = free_port();
            let mut proc = Proc::spawn(
                "custom-auth-server",
                Command::new(bin)
                    .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                    .arg("--users")
                    .arg(&fx.users_file)
                    .arg("--cert")
                    .arg(&fx.server_crt)
                    .arg("--key")
                    .arg(&fx.server_key)
                    .env_remove("RUST_LOG"),
                work.join("custom-auth-server.log"),
            );
            proc.wait_for_port(port);
            AuthServer::Example { proc, port }
        }
        _ => AuthServer::None,
    };
    let endpoint = auth.endpoint();

    let port = free_port();
    let config = work.join("gatehouse.yaml");
    std::fs::write(
        &config,
        broker_yaml(
            fx,
            scenario,
            port,
            endpoint.as_deref(),
            args,
            &work.join("data"),
        ),
    )
    .expect("write the broker configuration");
    let mut broker = Proc::spawn(
        "gatehouse",
        Command::new(&bins.gatehouse)
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG"),
        work.join("gatehouse.log"),
    );
    broker.wait_for_port(port);

    let spec = Arc::new(ClientSpec {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        tls: match scenario {
            Scenario::NoneTls => Some(fx.tls_plain.clone()),
            Scenario::X509 => Some(fx.tls_cert.clone()),
            _ => None,
        },
        auth: match scenario {
            Scenario::Sat => ClientAuth::Token(fx.tokens.clone()),
            Scenario::CustomStub | Scenario::CustomExample => ClientAuth::Login,
            _ => ClientAuth::None,
        },
    });

    // One connection first: a scenario that cannot connect at all stops here.
    if let Err(e) = load.block_on(one_connection(&spec, 0, "ac-probe")) {
        panic!(
            "{}: the first connection failed: {e}; broker log {}:\n{}",
            scenario.name(),
            broker.log.display(),
            std::fs::read_to_string(&broker.log).unwrap_or_default()
        );
    }

    if run == 1 {
        if let Some(tls) = load.block_on(describe_tls(&spec)) {
            eprintln!("{}: TLS negotiated: {tls}", scenario.name());
        }
    }

    let start = Instant::now();
    let from = start + Duration::from_secs_f64(args.warmup);
    let to = from + Duration::from_secs_f64(args.duration);
    let loops: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let think = Duration::from_millis(args.think_ms);
            load.spawn(client_loop(spec.clone(), i, from, to, think))
        })
        .collect();
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let cpu0 = (broker.cpu(), auth.cpu(), threads_cpu(LOAD_THREADS));
    std::thread::sleep(to.saturating_duration_since(Instant::now()));
    let cpu1 = (broker.cpu(), auth.cpu(), threads_cpu(LOAD_THREADS));

    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut first_error = None;
    for handle in loops {
        let stats = load.block_on(handle).expect("a client loop panicked");
        latencies.extend(stats.latencies_us);
        failed += stats.failed;
        if first_error.is_none() {
            first_error = stats.first_error;
        }
    }
    latencies.sort_unstable();
    let connections = latencies.len() as u64;
    let per_conn = |d: Duration| d.as_secs_f64() * 1e6 / connections.max(1) as f64;
    let result = RunResult {
        scenario,
        run,
        connections,
        failed,
        first_error,
        // The window as configured: connections are counted by when they end in it.
        per_sec: connections as f64 / args.duration,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        broker_cpu_us: per_conn(cpu1.0.saturating_sub(cpu0.0)),
        auth_cpu_us: match (cpu0.1, cpu1.1) {
            (Some(a), Some(b)) => Some(per_conn(b.saturating_sub(a))),
            _ => None,
        },
        load_cpu_us: per_conn(cpu1.2.saturating_sub(cpu0.2)),
    };
    drop(broker);
    // The stub's accept loop lives on the stub runtime; dropping aborts it.
    drop(auth);
    result
}

// ---------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------

fn main() {
    let args = Args::parse();
    assert!(args.concurrency > 0, "--concurrency must be at least 1");
    assert!(args.runs > 0, "--runs must be at least 1");
    let bins = Bins {
        gatehouse: locate(TOOL, args.gatehouse.as_ref(), "gatehouse", BUILD),
        custom_auth_server: args.scenarios.contains(&Scenario::CustomExample).then(|| {
            locate(
                TOOL,
                args.custom_auth_server.as_ref(),
                "custom-auth-server",
                BUILD,
            )
        }),
    };
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.load_threads.max(1))
        .thread_name(LOAD_THREADS)
        .enable_all()
        .build()
        .expect("the load generator's runtime");
    let stub_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(STUB_THREADS)
        .enable_all()
        .build()
        .expect("the stub's runtime");

    let tmp = tempfile::Builder::new()
        .prefix("gatehouse-auth-connect-")
        .tempdir()
        .expect("a temporary directory");
    eprintln!(
        "auth_connect: {} loops, {} s measured after {} s warm-up, {} run(s); gatehouse {}",
        args.concurrency,
        args.duration,
        args.warmup,
        args.runs,
        bins.gatehouse.display()
    );
    let fx = Fixtures::new(tmp.path(), &args, bins.custom_auth_server.as_deref());

    let mut results: Vec<RunResult> = Vec::new();
    for run in 1..=args.runs {
        for &scenario in &args.scenarios {
            let r = run_one(&fx, &bins, &args, &load, &stub_rt, scenario, run);
            eprintln!(
                "run {run} {:<15} {:>9}/s  p50 {:>8} µs  p99 {:>8} µs  broker {:>7} µs/conn  auth server {:>8}  load {:>7} µs/conn  failed {}{}",
                scenario.name(),
                fmt_num(r.per_sec, 0),
                fmt_num(r.p50_us, 0),
                fmt_num(r.p99_us, 0),
                fmt_num(r.broker_cpu_us, 1),
                r.auth_cpu_us.map_or("–".into(), |x| format!("{} µs/conn", fmt_num(x, 1))),
                fmt_num(r.load_cpu_us, 1),
                r.failed,
                r.first_error.as_deref().map_or(String::new(), |e| format!(" (first error: {e})")),
            );
            results.push(r);
        }
    }

    // Medians per scenario.
    let mut table = String::from(
        "| scenario | connections/s | connect p50 µs | connect p99 µs | broker CPU µs/conn | auth server CPU µs/conn | load generator CPU µs/conn | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut summary = Vec::new();
    for &scenario in &args.scenarios {
        let rs: Vec<&RunResult> = results.iter().filter(|r| r.scenario == scenario).collect();
        let med = |f: &dyn Fn(&RunResult) -> f64| median(rs.iter().map(|r| f(r)).collect());
        let per_sec = med(&|r| r.per_sec);
        let p50 = med(&|r| r.p50_us);
        let p99 = med(&|r| r.p99_us);
        let broker = med(&|r| r.broker_cpu_us);
        let auth = med(&|r| r.auth_cpu_us.unwrap_or(f64::NAN));
        let load_cpu = med(&|r| r.load_cpu_us);
        let failed: u64 = rs.iter().map(|r| r.failed).sum();
        let _ = writeln!(
            table,
            "| {} (`{}`) | {} | {} | {} | {} | {} | {} | {} |",
            scenario.describe(),
            scenario.name(),
            fmt_num(per_sec, 0),
            fmt_num(p50, 0),
            fmt_num(p99, 0),
            fmt_num(broker, 1),
            fmt_num(auth, 1),
            fmt_num(load_cpu, 1),
            failed
        );
        summary.push(serde_json::json!({
            "scenario": scenario.name(),
            "connections_per_sec": per_sec,
            "p50_connect_us": p50,
            "p99_connect_us": p99,
            "broker_cpu_us_per_connection": broker,
            "auth_server_cpu_us_per_connection": auth.is_finite().then_some(auth),
            "load_cpu_us_per_connection": load_cpu,
            "failed": failed,
        }));
    }
    println!(
        "\nMedians of {} run(s); {} concurrent loops, {} s measured per run.\n",
        args.runs, args.concurrency, args.duration
    );
    print!("{table}");

    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "runs": results.iter().map(RunResult::json).collect::<Vec<_>>(),
            "medians": summary,
        });
        std::fs::write(
            path,
            serde_json::to_string_pretty(&doc).expect("serialize the results"),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    if args.keep {
        let kept = tmp.keep();
        eprintln!("auth_connect: kept {}", kept.display());
    }
}
