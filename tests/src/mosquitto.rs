//! The Mosquitto command-line clients (`mosquitto_pub`, `mosquitto_sub`, Debian package
//! `mosquitto-clients`) as independent MQTT clients, with hard timeouts.
//!
//! [`Sub`] runs `mosquitto_sub -d` under `stdbuf -oL`, so its debug lines ("received
//! SUBACK", "Received DISCONNECT (142)") arrive as they happen, and prints every message
//! on one line in [`FORMAT`], parsed into a [`Msg`]. Waiting for the SUBACK line is how a
//! test knows the subscription is in place before it publishes: no sleeps.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long anything that should happen promptly may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// `mosquitto_sub -F` format: a marker, then topic, QoS, retain flag, user properties,
/// response topic, correlation data, message expiry interval, content type, and the
/// payload last (it may contain the separator).
pub const FORMAT: &str = "MSG|%t|%q|%r|%P|%R|%D|%E|%C|%p";

/// One message as printed by `mosquitto_sub` with [`FORMAT`]. v5 properties that are
/// absent (or any under 3.1.1) are empty strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// `key:value` pairs separated by spaces, as mosquitto prints them.
    pub user_properties: String,
    pub response_topic: String,
    pub correlation_data: String,
    pub expiry: String,
    pub content_type: String,
    pub payload: String,
}

impl Msg {
    fn parse(line: &str) -> Option<Msg> {
        let rest = line.strip_prefix("MSG|")?;
        let f: Vec<&str> = rest.splitn(9, '|').collect();
        if f.len() != 9 {
            return None;
        }
        Some(Msg {
            topic: f[0].into(),
            qos: f[1].parse().ok()?,
            retain: f[2] == "1",
            user_properties: f[3].into(),
            response_topic: f[4].into(),
            correlation_data: f[5].into(),
            expiry: f[6].into(),
            content_type: f[7].into(),
            payload: f[8].into(),
        })
    }
}

/// Output of a finished client.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run `mosquitto_pub -h <addr> -p <port> <args>` to the end (at most [`WAIT`]) and
/// return what it printed; panics if it cannot be run or does not finish.
pub async fn try_publish(addr: SocketAddr, args: &[&str]) -> Finished {
    try_publish_to(&addr.ip().to_string(), addr.port(), args).await
}

/// [`try_publish`] to a host name (TLS tests verify `localhost` against the certificate).
pub async fn try_publish_to(host: &str, port: u16, args: &[&str]) -> Finished {
    run_client("mosquitto_pub", host, port, args).await
}

/// Run one of the Mosquitto clients (`mosquitto_pub`, `mosquitto_rr`) with `-h host -p port
/// <args>` to the end (at most [`WAIT`]); panics if it cannot be run or does not finish.
pub async fn run_client(program: &str, host: &str, port: u16, args: &[&str]) -> Finished {
    let mut cmd = Command::new(program);
    cmd.args(["-h", host, "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in {WAIT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {program} (install mosquitto-clients): {e}"));
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`try_publish`], asserting success.
pub async fn publish(addr: SocketAddr, args: &[&str]) {
    let out = try_publish(addr, args).await;
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed ({}): {}{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

enum Line {
    Out(String),
    Err(String),
}

/// A running `mosquitto_sub`.
pub struct Sub {
    child: Child,
    lines: mpsc::UnboundedReceiver<Line>,
    /// Every line so far (`out: ...` / `err: ...`), for failure messages.
    transcript: Vec<String>,
    /// Messages read off the output but not yet taken by the test.
    messages: VecDeque<Msg>,
    /// Both output pipes are closed: the process has ended.
    closed: bool,
    args: Vec<String>,
}

impl Sub {
    /// Start `mosquitto_sub -h <addr> -p <port> -d -F FORMAT <args>`. Does not wait for
    /// anything; see [`Sub::subscribed`].
    pub fn spawn(addr: SocketAddr, args: &[&str]) -> Sub {
        Sub::spawn_to(&addr.ip().to_string(), addr.port(), args)
    }

    /// [`Sub::spawn`] to a host name (TLS tests verify `localhost` against the certificate).
    pub fn spawn_to(host: &str, port: u16, args: &[&str]) -> Sub {
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL")
            .arg("mosquitto_sub")
            .args(["-h", host, "-p", &port.to_string()])
            .args(["-d", "-F", FORMAT])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run stdbuf mosquitto_sub: {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let tx2 = tx.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = r.next_line().await {
                if tx.send(Line::Out(l)).is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut r = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = r.next_line().await {
                if tx2.send(Line::Err(l)).is_err() {
                    break;
                }
            }
        });
        Sub {
            child,
            lines,
            transcript: Vec::new(),
            messages: VecDeque::new(),
            closed: false,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// [`Sub::spawn_to`], then wait until the broker has acknowledged every subscription.
    pub async fn subscribed_to(host: &str, port: u16, args: &[&str]) -> Sub {
        let mut sub = Sub::spawn_to(host, port, args);
        sub.wait_subscribed().await;
        sub
    }

    /// [`Sub::spawn`], then wait until the broker has acknowledged every subscription.
    pub async fn subscribed(addr: SocketAddr, args: &[&str]) -> Sub {
        let mut sub = Sub::spawn(addr, args);
        sub.wait_subscribed().await;
        sub
    }

    /// Wait for the "Subscribed (mid: ...)" line that follows SUBACK.
    pub async fn wait_subscribed(&mut self) {
        self.wait_line(|l| l.starts_with("Subscribed (mid:")).await;
    }

    /// Read one more output line into the transcript (and the message queue); `None`
    /// when `until` passes or the output has ended.
    async fn read_line(&mut self, until: tokio::time::Instant) -> Option<String> {
        if self.closed {
            return None;
        }
        match tokio::time::timeout_at(until, self.lines.recv()).await {
            Ok(Some(Line::Out(l))) => {
                if let Some(m) = Msg::parse(&l) {
                    self.messages.push_back(m);
                }
                self.transcript.push(format!("out: {l}"));
                Some(l)
            }
            Ok(Some(Line::Err(l))) => {
                self.transcript.push(format!("err: {l}"));
                Some(l)
            }
            Ok(None) => {
                self.closed = true;
                None
            }
            Err(_) => None,
        }
    }

    /// Wait (at most [`WAIT`]) for an output line (stdout or stderr) matching `pred`,
    /// among the lines not read yet; panics with the transcript otherwise.
    pub async fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            match self.read_line(until).await {
                Some(l) if pred(&l) => return l,
                Some(_) => {}
                None => panic!(
                    "mosquitto_sub {:?}: the expected line did not come; output:\n{}",
                    self.args,
                    self.transcript()
                ),
            }
        }
    }

    /// Whether an output line matching `pred` has been seen (reading what is available
    /// within `within`).
    pub async fn saw_line(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let until = tokio::time::Instant::now() + within;
        if self.transcript.iter().any(|l| pred(&l[5..])) {
            return true;
        }
        while let Some(l) = self.read_line(until).await {
            if pred(&l) {
                return true;
            }
        }
        false
    }

    /// The next message, waiting at most `within`.
    pub async fn message_within(&mut self, within: Duration) -> Option<Msg> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(m) = self.messages.pop_front() {
                return Some(m);
            }
            self.read_line(until).await?;
        }
    }

    /// The next message; panics with the transcript if none comes within [`WAIT`].
    pub async fn next_message(&mut self) -> Msg {
        match self.message_within(WAIT).await {
            Some(m) => m,
            None => panic!(
                "mosquitto_sub {:?}: no message within {WAIT:?}; output:\n{}",
                self.args,
                self.transcript()
            ),
        }
    }

    /// The next `n` messages.
    pub async fn next_messages(&mut self, n: usize) -> Vec<Msg> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_message().await);
        }
        out
    }

    /// Everything printed so far.
    pub fn transcript(&self) -> String {
        self.transcript.join("\n")
    }

    /// SIGKILL: the process dies without a DISCONNECT, as a crashed client would.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }

    /// Wait (at most `within`) for the process to end; `None` if it is still running.
    pub async fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .ok()?
            .ok()?;
        // Collect what it printed last.
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.read_line(until).await.is_some() {}
        Some(status)
    }

    /// Wait for the process to end (e.g. after `-C`, `-E` or `-W`); panics if it does not
    /// within [`WAIT`].
    pub async fn exit(&mut self) -> ExitStatus {
        match self.exit_within(WAIT).await {
            Some(s) => s,
            None => panic!(
                "mosquitto_sub {:?} did not exit; output:\n{}",
                self.args,
                self.transcript()
            ),
        }
    }
}

/// Run `mosquitto_sub` to the end (it must exit by itself, e.g. with `-E`, `-C` or `-W`),
/// with its messages and output.
pub async fn run_sub(addr: SocketAddr, args: &[&str]) -> (ExitStatus, Sub) {
    let mut sub = Sub::spawn(addr, args);
    let status = sub.exit().await;
    (status, sub)
}
