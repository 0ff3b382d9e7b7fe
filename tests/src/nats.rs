//! A real NATS cluster with JetStream for the cluster-mode tests (issue 15): three (or `n`)
//! `nats-server` processes on free loopback ports, routed to each other, each with its own
//! JetStream store folder in the test's temporary directory, and `sync_interval: always` so
//! that JetStream fsyncs a write before acknowledging it (the default syncs every two
//! minutes). [`NatsCluster::start`] returns once JetStream has elected its meta leader;
//! dropping the cluster kills every server.
//!
//! The binary is `$GATEHOUSE_NATS_SERVER` or `nats-server` on the `PATH`, at least 2.11
//! (`.ci/install-nats-server` installs the pinned one). Without it a test fails with a clear
//! message under CI (`CI=true`), and elsewhere prints `SKIPPED` and returns early.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::broker::{free_port, TempDir};

/// The oldest nats-server the cluster mode is tested with (Debian's 2.9 lacks what
/// async-nats' KV uses).
pub const MIN_VERSION: (u32, u32) = (2, 11);

/// One server of the cluster.
pub struct NatsServer {
    pub name: String,
    /// Where clients connect (`nats://127.0.0.1:<port>`).
    pub client_port: u16,
    pub cluster_port: u16,
    /// The monitoring port (`/varz`, `/jsz`).
    pub http_port: u16,
    pub log: PathBuf,
    child: Option<Child>,
    /// How it was started, so that it can be started again (see `restart`).
    bin: PathBuf,
    conf: PathBuf,
}

impl NatsServer {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// Whether the process is still running.
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9` this server (it stays dead until `restart`).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running NATS cluster; dropping it kills its servers and removes their stores.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    /// Configuration files, logs and JetStream stores (removed on drop, after the servers).
    pub dir: TempDir,
}

impl NatsCluster {
    /// Three servers, or `None` (after printing `SKIPPED: ...`) when no usable nats-server is
    /// installed outside CI; see the module documentation.
    pub async fn start_or_skip(test: &str) -> Option<NatsCluster> {
        let bin = nats_server_or_skip(test)?;
        Some(NatsCluster::start(&bin, 3).await)
    }

    /// `n` servers of `bin` routed to each other, JetStream on, ready (meta leader elected).
    /// The ports are picked free and then handed to nats-server, so a test running in
    /// parallel may take one in between: a server that exits at once is retried with new
    /// ports (three attempts).
    pub async fn start(bin: &Path, n: usize) -> NatsCluster {
        for attempt in 1..=3 {
            let mut cluster = NatsCluster::spawn(bin, n);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let exited: Vec<String> = cluster
                .servers
                .iter_mut()
                .filter_map(|s| (!s.running()).then(|| s.name.clone()))
                .collect();
            if exited.is_empty() {
                cluster.wait_ready(Duration::from_secs(30)).await;
                return cluster;
            }
            assert!(
                attempt < 3,
                "nats-server {exited:?} exited at start, three times; logs:\n{}",
                cluster.logs()
            );
        }
        unreachable!("the loop returns or panics")
    }

    fn spawn(bin: &Path, n: usize) -> NatsCluster {
        let dir = TempDir::new("nats");
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c, _)| format!("\"nats-route://127.0.0.1:{c}\""))
            .collect();
        let mut servers = Vec::new();
        for (i, &(client_port, cluster_port, http_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(format!("{name}-store"));
            let conf = format!(
                "server_name: {name}\n\
                 listen: \"127.0.0.1:{client_port}\"\n\
                 http: \"127.0.0.1:{http_port}\"\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n\
                 cluster {{\n  name: gatehouse-test\n  listen: \"127.0.0.1:{cluster_port}\"\n  routes: [{routes}]\n}}\n",
                store = store.display(),
                routes = routes.join(", "),
            );
            let conf_path = dir.write(&format!("{name}.conf"), &conf);
            let log = dir.path().join(format!("{name}.log"));
            let out = std::fs::File::create(&log).expect("create the nats-server log");
            let err = out.try_clone().expect("clone the log handle");
            let child = spawn_server(bin, &conf_path, out, err);
            servers.push(NatsServer {
                name,
                client_port,
                cluster_port,
                http_port,
                log,
                child: Some(child),
                bin: bin.to_owned(),
                conf: conf_path,
            });
        }
        NatsCluster { servers, dir }
    }

    /// Every server's client URL, for a Gatehouse `cluster.nats.servers` list.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// Wait until every live server answers `/jsz` with the same meta leader, and says in
    /// `/varz` that JetStream syncs every write.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut leaders = Vec::new();
            for s in self.servers.iter().filter(|s| s.child.is_some()) {
                let leader = http_json(s.http_port, "/jsz")
                    .await
                    .and_then(|j| j["meta_cluster"]["leader"].as_str().map(str::to_owned))
                    .filter(|l| !l.is_empty());
                leaders.push(leader);
            }
            let first = leaders.first().cloned().flatten();
            if first.is_some() && leaders.iter().all(|l| *l == first) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "the NATS cluster has no JetStream meta leader after {within:?} ({leaders:?}); logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for s in self.servers.iter().filter(|s| s.child.is_some()) {
            let varz = http_json(s.http_port, "/varz").await.unwrap_or_default();
            assert_eq!(
                varz["jetstream"]["config"]["sync_always"],
                serde_json::Value::Bool(true),
                "{}: JetStream must fsync before acknowledging (sync_interval: always)",
                s.name
            );
        }
    }

    /// Every server's log, for failure messages.
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| {
                format!(
                    "--- {} ---\n{}",
                    s.name,
                    std::fs::read_to_string(&s.log).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn spawn_server(bin: &Path, conf: &Path, out: std::fs::File, err: std::fs::File) -> Child {
    Command::new(bin)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()))
}

// ---------------------------------------------------------------------------------------
// Failures (issue 15, failure handling): `kill -9` a server and start it again on the
// same ports with the same JetStream store, as an operator restarting a crashed server.
// ---------------------------------------------------------------------------------------

impl NatsServer {
    /// Whether the process is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.running()
    }

    /// Start a killed server again with its configuration (same name, ports and store
    /// folder); its log goes on in the same file. Does not wait for JetStream: see
    /// [`NatsCluster::wait_ready`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        let out = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)
            .expect("open the nats-server log");
        let err = out.try_clone().expect("clone the log handle");
        self.child = Some(spawn_server(&self.bin, &self.conf, out, err));
    }
}

impl NatsCluster {
    /// `kill -9` server `i` (0-based).
    pub fn kill(&mut self, i: usize) {
        self.servers[i].kill();
    }

    /// Start server `i` again (see [`NatsServer::restart`]).
    pub fn restart(&mut self, i: usize) {
        self.servers[i].restart();
    }

    /// The index of the server leading JetStream stream `stream` (its Raft leader), as
    /// the live servers' `/jsz` tell; `None` while it has no leader.
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        for s in self.servers.iter().filter(|s| s.child.is_some()) {
            let Some(jsz) = http_json(s.http_port, "/jsz?accounts=true&streams=true").await else {
                continue;
            };
            let accounts = jsz["account_details"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for account in accounts {
                for detail in account["stream_detail"].as_array().into_iter().flatten() {
                    if detail["name"].as_str() != Some(stream) {
                        continue;
                    }
                    let leader = detail["cluster"]["leader"].as_str().unwrap_or_default();
                    if let Some(i) = self.servers.iter().position(|x| x.name == leader) {
                        return Some(i);
                    }
                }
            }
        }
        None
    }
}

/// GET `path` from a server's monitoring port and parse the JSON body (`None` while it is
/// not answering).
async fn http_json(port: u16, path: &str) -> Option<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let body = text.split_once("\r\n\r\n")?.1;
        serde_json::from_str(body).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()
        .flatten()
}

/// The nats-server binary to test with, if one of at least [`MIN_VERSION`] is installed.
/// Under CI a missing or old one fails the test; elsewhere this prints `SKIPPED` and the
/// test returns early.
pub fn nats_server_or_skip(test: &str) -> Option<PathBuf> {
    match find_nats_server() {
        Ok(bin) => Some(bin),
        Err(why) => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(
                !ci,
                "{test}: {why}; CI must install it (.ci/install-nats-server, called by .ci/run)"
            );
            eprintln!("SKIPPED {test}: {why} (run .ci/install-nats-server to install it)");
            None
        }
    }
}

fn find_nats_server() -> Result<PathBuf, String> {
    let bin = std::env::var_os("GATEHOUSE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("no nats-server ({}: {e})", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "nats-server: v2.15.1"
    let version = text
        .trim()
        .rsplit('v')
        .next()
        .map(|v| {
            v.split('.')
                .map(|p| p.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let (major, minor) = (
        version.first().copied().unwrap_or(0),
        version.get(1).copied().unwrap_or(0),
    );
    if (major, minor) < MIN_VERSION {
        return Err(format!(
            "{} is {:?}, older than {}.{}",
            bin.display(),
            text.trim(),
            MIN_VERSION.0,
            MIN_VERSION.1
        ));
    }
    Ok(bin)
}

// --- Stopping and continuing servers (SIGSTOP / SIGCONT) -------------------------------
// For the cluster state store tests (issue 15): a stopped server keeps its sockets open
// and answers nothing, as a server stalled by its disk or scheduler would; continued, it
// carries on where it was.

impl NatsServer {
    /// Send `signal` (`STOP`, `CONT`) to the server's process.
    fn send_signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "kill -{signal} {}",
                self.name
            );
        }
    }

    /// Stop the server (SIGSTOP) until [`NatsServer::cont`].
    pub fn stop(&self) {
        self.send_signal("STOP");
    }

    /// Continue a stopped server (SIGCONT).
    pub fn cont(&self) {
        self.send_signal("CONT");
    }
}

impl NatsCluster {
    /// Stop every server (SIGSTOP): JetStream answers nothing until [`Self::cont_all`].
    pub fn stop_all(&self) {
        self.servers.iter().for_each(NatsServer::stop);
    }

    /// Continue every server (SIGCONT).
    pub fn cont_all(&self) {
        self.servers.iter().for_each(NatsServer::cont);
    }
}
