//! What the load tools in src/bin share: child processes with CPU accounting, percentiles
//! and medians, number formatting, and finding sibling binaries.

use std::net::{Ipv4Addr, SocketAddr, TcpStream as StdTcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Linux reports utime/stime in USER_HZ ticks, which is 100 on every architecture.
const USER_HZ: f64 = 100.0;

/// A child process, killed (by its id) and reaped on drop.
pub struct Proc {
    child: Child,
    name: &'static str,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("create a log file");
        let err = out.try_clone().expect("clone the log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc { child, name, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until `port` on 127.0.0.1 accepts TCP connections.
    pub fn wait_for_port(&mut self, port: u16) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening on {addr}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} is not listening on {addr} after 15 s", self.name);
    }

    pub fn cpu(&self) -> Duration {
        cpu_of_stat(&format!("/proc/{}/stat", self.pid())).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a /proc/.../stat file.
pub fn cpu_of_stat(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces:
    // state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / USER_HZ))
}

/// CPU time of this process's threads whose name starts with `prefix`.
pub fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(prefix))
        })
        .filter_map(|t| cpu_of_stat(&format!("{}/stat", t.path().display())))
        .sum()
}

pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn fmt_num(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let s = format!("{x:.decimals$}");
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut grouped = String::new();
    for (k, c) in int.chars().enumerate() {
        if k > 0 && (int.len() - k) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        grouped
    } else {
        format!("{grouped}.{frac}")
    }
}

pub fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `given`, or the binary `name` next to this executable; exits with a hint to build it
/// when it is missing.
pub fn locate(tool: &str, given: Option<&PathBuf>, name: &str, build: &str) -> PathBuf {
    let path = given.cloned().unwrap_or_else(|| sibling(name));
    if !path.is_file() {
        eprintln!(
            "{tool}: {} not found; build it first:\n  {build}\n(or pass --{} PATH)",
            path.display(),
            name
        );
        std::process::exit(2);
    }
    path
}

/// Start `gatehouse` on a free loopback port with one plain MQTT listener, its data and
/// log in `work`, logging at `warn`, a free metrics port, plus `extra` YAML (top-level
/// sections); waits until it listens. Returns the process and its address.
pub fn start_gatehouse(
    gatehouse: &std::path::Path,
    work: &std::path::Path,
    extra: &str,
) -> (Proc, SocketAddr) {
    let port = gatehouse_tests::broker::free_port();
    std::fs::create_dir_all(work).expect("create the run's directory");
    let config = work.join("gatehouse.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - name: bench\n    bindAddress: 127.0.0.1\n    ports: [ {{ port: {port} }} ]\ndataDir: {}\ndiagnostics: {{ logs: {{ level: warn }}, metrics: {{ prometheusPort: 0 }} }}\n{extra}",
            work.join("data").display()
        ),
    )
    .expect("write the broker configuration");
    let mut broker = Proc::spawn(
        "gatehouse",
        Command::new(gatehouse)
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG"),
        work.join("gatehouse.log"),
    );
    broker.wait_for_port(port);
    (broker, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}
