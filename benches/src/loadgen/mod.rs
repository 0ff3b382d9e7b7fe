//! The lean load generator (`src/bin/loadgen.rs`; issue 14). Everything runs on one
//! thread (a tokio current-thread runtime with a `LocalSet`): the generator's CPU per
//! message has to stay far below the broker's, or it measures itself. See
//! benches/README.md, "The load generator".

pub mod hist;
pub mod idle;
pub mod mqtt;
pub mod net;
pub mod pubsub;
pub mod retained;
pub mod storm;
pub mod sys;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use hist::Hist;
use mqtt::{ConnAck, Version};
use net::{Conn, ConnError, Target};

/// Options every scenario shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    #[arg(long, default_value = "127.0.0.1", global = true)]
    pub host: String,
    #[arg(long, short = 'p', default_value_t = 1883, global = true)]
    pub port: u16,
    /// MQTT version: 5 or 3 (3.1.1).
    #[arg(long = "mqtt", value_enum, default_value_t = Version::V5, global = true)]
    pub version: Version,
    /// Connect with TLS (rustls), trusting --ca-file.
    #[arg(long, global = true)]
    pub tls: bool,
    /// PEM file with the CA certificate(s) the broker's certificate chains to.
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Server name for TLS (SNI and certificate check).
    #[arg(long, default_value = "localhost", global = true)]
    pub server_name: String,
    /// Allow TLS session resumption (default: every connection a full handshake).
    #[arg(long, global = true)]
    pub tls_resume: bool,
    #[arg(long, default_value_t = 0, global = true)]
    pub keep_alive: u16,
    /// The broker's process id: report its CPU per message and its RSS.
    #[arg(long, global = true)]
    pub broker_pid: Option<u32>,
    /// More processes whose CPU counts as the broker's (a cluster: the other nodes and the
    /// NATS servers), comma-separated; their CPU is added to `--broker-pid`'s.
    #[arg(long, value_delimiter = ',', global = true)]
    pub also_pids: Vec<u32>,
    /// Loopback source addresses (127.0.0.1, .2, ...) to spread connections over; 0 =
    /// one per 5,000 connections (each address has its own ephemeral port range, ~28k
    /// ports, some of which earlier runs' TIME_WAIT sockets may still hold).
    #[arg(long, default_value_t = 0, global = true)]
    pub sources: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 50, global = true)]
    pub connect_concurrency: usize,
    /// Seconds allowed for each connect, handshake and subscribe.
    #[arg(long, default_value_t = 30.0, global = true)]
    pub timeout: f64,
    /// Identifier in client ids and topics (default: from the process id and the time), so
    /// runs against one broker do not see each other's messages.
    #[arg(long, global = true)]
    pub run_id: Option<String>,
    /// Also write the JSON line to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// A label copied into the JSON (the script's scenario name).
    #[arg(long, global = true)]
    pub label: Option<String>,
    #[arg(skip)]
    pub resolved_run_id: String,
}

impl Common {
    /// Every process whose CPU is the broker side's.
    pub fn cpu_pids(&self) -> Vec<u32> {
        self.broker_pid
            .iter()
            .chain(&self.also_pids)
            .copied()
            .collect()
    }

    pub fn client_prefix(&self) -> String {
        format!("lg{}", self.resolved_run_id)
    }

    /// Build the connection target (TLS connector, source addresses for `conns`).
    pub fn target(&self, conns: usize) -> Result<Target, ConnError> {
        use std::net::ToSocketAddrs;
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| ConnError::TlsSetup(format!("{} has no IPv4 address", self.host)))?;
        let tls = if self.tls {
            let ca = self
                .ca_file
                .as_ref()
                .ok_or_else(|| ConnError::TlsSetup("--tls needs --ca-file".into()))?;
            let name = rustls::pki_types::ServerName::try_from(self.server_name.clone())
                .map_err(|e| ConnError::TlsSetup(e.to_string()))?;
            Some((net::tls_connector(ca, self.tls_resume)?, name))
        } else {
            None
        };
        let n = if self.sources > 0 {
            self.sources
        } else {
            conns.div_ceil(5_000).max(1)
        };
        // Source addresses only make sense towards loopback.
        let sources = if addr.ip().is_loopback() {
            net::loopback_sources(n)
        } else {
            Vec::new()
        };
        Ok(Target {
            addr,
            tls,
            sources,
            version: self.version,
            keep_alive: self.keep_alive,
            timeout: Duration::from_secs_f64(self.timeout),
        })
    }
}

/// p50/p99/p999/max/mean in microseconds.
pub fn lat_json(h: &Hist) -> Value {
    let us = |v: Option<u64>| v.map(|v| (v as f64 / 1000.0 * 10.0).round() / 10.0);
    json!({
        "count": h.count(),
        "p50": us(h.quantile(0.50)),
        "p99": us(h.quantile(0.99)),
        "p999": us(h.quantile(0.999)),
        "max": us((h.count() > 0).then(|| h.max())),
        "mean": h.mean().map(|m| (m / 100.0).round() / 10.0),
    })
}

/// Open `n` MQTT connections (at most `--connect-concurrency` at once), optionally each
/// subscribed to `subscribe`; in index order. `idx0` offsets the source address choice.
#[allow(clippy::too_many_arguments)]
pub async fn connect_all(
    common: &Common,
    target: &Rc<Target>,
    n: usize,
    idx0: usize,
    id: impl Fn(usize) -> String,
    receive_max: u16,
    rbuf: usize,
    subscribe: Option<(String, u8)>,
) -> Result<Vec<(Conn, ConnAck)>, ConnError> {
    let sem = Rc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (sem, target, sub) = (sem.clone(), target.clone(), subscribe.clone());
        let client_id = id(i);
        handles.push(tokio::task::spawn_local(async move {
            let _permit = sem.acquire().await;
            let (mut conn, ack) = target.mqtt(idx0 + i, &client_id, receive_max, rbuf).await?;
            if let Some((filter, qos)) = sub {
                target.subscribe(&mut conn, &filter, qos).await?;
            }
            Ok::<_, ConnError>((conn, ack))
        }));
    }
    let mut out = Vec::with_capacity(n);
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(c)) => out.push(c),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(ConnError::Io(std::io::Error::other(e.to_string())));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
