//! The broker under test, two ways:
//!
//! - [`TestBroker`]: in-process, started from YAML on the current tokio runtime. Test
//!   configurations use `port: 0` (any free port), so tests never collide with each other
//!   or with a broker already running on 1883. The metrics port is made 0 too, unless the
//!   YAML sets `prometheusPort` itself: the default 9600 would collide between brokers.
//! - [`gatehouse_bin`]: the real `gatehouse` binary, built once with cargo, for CLI tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use gatehouse::Server;
use gatehouse_config::{Config, Protocol};

/// One MQTT port and one WebSockets port (`/mqtt`) on free loopback ports.
pub const LOCAL_YAML: &str = "
listeners:
  - name: e2e
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        protocol: Mqtt
      - port: 0
        protocol: WebSockets
        path: /mqtt
";

/// The broker, in-process. Dropping it stops the accept loops; connections end with
/// the test's runtime.
pub struct TestBroker {
    pub server: Server,
    pub config: Config,
}

impl TestBroker {
    /// [`LOCAL_YAML`]: MQTT and WebSockets on free loopback ports.
    pub async fn local() -> TestBroker {
        TestBroker::start(LOCAL_YAML).await
    }

    /// Load `yaml` as a configuration file would be loaded and start the broker; panics
    /// with the configuration problems or the start error.
    pub async fn start(yaml: &str) -> TestBroker {
        match TestBroker::try_start(yaml).await {
            Ok(b) => b,
            Err(e) => panic!("the test broker did not start: {e}\n--- config ---\n{yaml}"),
        }
    }

    pub async fn try_start(yaml: &str) -> Result<TestBroker, String> {
        let loaded =
            gatehouse_config::load_str(yaml, "e2e-test.yaml").map_err(|e| e.to_string())?;
        let mut config = loaded.config;
        if !yaml.contains("prometheusPort") {
            config.diagnostics.metrics.prometheus_port = 0;
        }
        let server = Server::start(&config).await.map_err(|e| e.to_string())?;
        Ok(TestBroker { server, config })
    }

    /// The metrics and health server, as a connectable address.
    pub fn metrics_addr(&self) -> SocketAddr {
        connectable(
            self.server
                .metrics_addr()
                .expect("the broker serves metrics"),
        )
    }

    /// The first MQTT (TCP) port, as an address a client can connect to (an unspecified
    /// bind address becomes the loopback of its family, `[::]` becomes 127.0.0.1 since
    /// the broker binds it dual-stack).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.addr_of(Protocol::Mqtt)
    }

    /// The first WebSockets port, as a connectable address.
    pub fn ws_addr(&self) -> SocketAddr {
        self.addr_of(Protocol::WebSockets)
    }

    fn addr_of(&self, protocol: Protocol) -> SocketAddr {
        let addr = self
            .server
            .addr(protocol)
            .unwrap_or_else(|| panic!("the test config has no {protocol:?} port"));
        connectable(addr)
    }

    /// Sessions the broker holds (connected or not): a way to wait until the broker has
    /// seen a client leave.
    pub fn session_count(&self) -> usize {
        self.server.broker.session_count()
    }

    /// Wait until [`Self::session_count`] is `n` (panics after 5 s).
    pub async fn wait_session_count(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.session_count() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broker holds {} sessions, expected {n}",
                self.session_count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `0.0.0.0` / `::` → the loopback a client on this machine can reach.
pub fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// A port that was free a moment ago (bound on 127.0.0.1, then released), for the few
/// tests that must write a fixed port number into a config file.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Whether this machine can bind IPv6 loopback (containers often cannot).
pub fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// A unique, readable name for client ids and topics: `prefix-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory for config files, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(&format!("gatehouse-e2e-{prefix}")));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Write `name` in this directory and return its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `gatehouse` binary of this workspace, built (once per test process) with the same
/// cargo, profile and target directory as the tests themselves.
///
/// `CARGO_BIN_EXE_gatehouse` only exists in the broker crate's own tests, so this runs
/// `cargo build -p gatehouse --bin gatehouse --message-format=json` and takes the
/// executable's path from cargo's output (which honours `CARGO_TARGET_DIR` and friends).
pub fn gatehouse_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("gatehouse", "gatehouse"))
}

/// Build binary `bin` of workspace package `package` with the tests' cargo, profile and
/// target directory, and return its path (from cargo's JSON messages).
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace).args([
        "build",
        "--quiet",
        "-p",
        package,
        "--bin",
        bin,
        "--message-format=json",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build -p {package} failed ({})",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == bin {
            if let Some(exe) = msg["executable"].as_str() {
                return PathBuf::from(exe);
            }
        }
    }
    panic!("cargo build did not report the {bin} executable:\n{stdout}");
}

/// Run `gatehouse <args>` to the end (at most 20 s, then it is killed and this panics).
pub async fn run_gatehouse(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(gatehouse_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(20), cmd.output()).await {
        Ok(out) => out.expect("run gatehouse"),
        Err(_) => panic!("gatehouse {args:?} did not exit within 20 s"),
    }
}

/// The real `gatehouse` binary as a child process (for signals, restarts and `kill -9`):
/// started with `--config <file>`, its log captured in `<dir>/gatehouse-<n>.log`.
pub struct BrokerProcess {
    pub child: tokio::process::Child,
    /// The MQTT port it was told to listen on.
    pub port: u16,
    pub log: PathBuf,
}

impl BrokerProcess {
    /// Start the binary on `config` and wait (up to 20 s) until `port` accepts TCP.
    pub async fn start(config: &Path, port: u16) -> BrokerProcess {
        BrokerProcess::start_with_env(config, port, &[]).await
    }

    /// [`Self::start`] with extra environment variables (e.g. `TOKIO_WORKER_THREADS`).
    pub async fn start_with_env(config: &Path, port: u16, env: &[(&str, &str)]) -> BrokerProcess {
        BrokerProcess::start_with(config, &[port], &[], env).await
    }

    /// Start the binary on `config` with extra command-line `args` and environment, and
    /// wait (up to 20 s) until every one of `ports` accepts TCP; `port` is the first.
    pub async fn start_with(
        config: &Path,
        ports: &[u16],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> BrokerProcess {
        let log = config.with_extension(format!("{}.log", unique("run")));
        let out = std::fs::File::create(&log).expect("create the broker log");
        let err = out.try_clone().expect("clone the log handle");
        let mut child = tokio::process::Command::new(gatehouse_bin())
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("start gatehouse");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for &port in ports {
            while tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_err()
            {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "gatehouse exited ({status}) before listening on {port}:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "gatehouse is not listening on {port} after 20 s"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        let port = ports.first().copied().unwrap_or_default();
        BrokerProcess { child, port, log }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Send `signal` (e.g. `TERM`, `KILL`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the broker is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Wait for the process to exit within `within`; panics otherwise.
    pub async fn exit_within(&mut self, within: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for gatehouse"),
            Err(_) => panic!(
                "gatehouse did not exit within {within:?}; log:\n{}",
                self.log_text()
            ),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
