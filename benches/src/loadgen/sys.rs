//! Process accounting: the generator's own CPU (getrusage), another process's CPU and RSS
//! (/proc/<pid>/stat and status), and the open-files limit. System calls go through `nix`
//! (safe wrappers): the workspace forbids `unsafe`.

use std::time::Duration;

use nix::sys::resource::{getrlimit, getrusage, setrlimit, Resource, UsageWho};

/// Linux reports utime/stime in /proc in USER_HZ ticks, 100 on every architecture.
const USER_HZ: f64 = 100.0;

fn tv(t: nix::sys::time::TimeVal) -> Duration {
    Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
}

/// User + system CPU of this whole process (every thread; the generator runs its load on
/// one thread, so this is that thread plus a negligible start-up).
pub fn self_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(ru) => tv(ru.user_time()) + tv(ru.system_time()),
        Err(_) => Duration::ZERO,
    }
}

/// utime + stime of process `pid` (10 ms resolution).
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    proc_cpu_split(pid).map(|(user, system)| user + system)
}

/// (utime, stime) of process `pid`: the broker's own code against the kernel's work on
/// its behalf (on loopback, a send also runs the receiver's TCP input in the sender's
/// system time).
pub fn proc_cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Option<Duration> {
        let t = f.get(i)?.parse::<u64>().ok()?;
        Some(Duration::from_secs_f64(t as f64 / USER_HZ))
    };
    Some((ticks(11)?, ticks(12)?))
}

/// VmRSS of process `pid` in KiB (`None` for "self" means this process failed to read).
pub fn proc_rss_kb(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Raise the soft open-files limit to the hard one; returns (soft, hard) after the attempt.
/// (A hard limit can only be raised with CAP_SYS_RESOURCE, which a container usually
/// lacks; then the hard limit caps the connections one process can hold.)
pub fn raise_nofile(want: u64) -> (u64, u64) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (0, 0);
    };
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return (want, want);
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return (hard, hard);
    }
    (soft, hard)
}

/// CPU and clock at one instant, for per-window deltas.
#[derive(Clone, Copy)]
pub struct Snap {
    pub at: std::time::Instant,
    pub self_cpu: Duration,
    pub broker_cpu: Option<Duration>,
    /// The user-space part of `broker_cpu`.
    pub broker_user_cpu: Option<Duration>,
}

impl Snap {
    /// `pids`: the broker's process, and for a cluster every node and NATS server too
    /// (their CPU is summed; `None` when there is none or one cannot be read).
    pub fn take(pids: &[u32]) -> Snap {
        let split = if pids.is_empty() {
            None
        } else {
            pids.iter()
                .map(|&p| proc_cpu_split(p))
                .try_fold((Duration::ZERO, Duration::ZERO), |(u, s), x| {
                    x.map(|(xu, xs)| (u + xu, s + xs))
                })
        };
        Snap {
            at: std::time::Instant::now(),
            self_cpu: self_cpu(),
            broker_cpu: split.map(|(u, s)| u + s),
            broker_user_cpu: split.map(|(u, _)| u),
        }
    }
}
