//! The client side: TCP connect → [TLS handshake] → CONNECT → CONNACK → DISCONNECT →
//! wait for the close, with raw MQTT v5 packets, in `--concurrency` loops.

use super::*;

/// What every connection of a scenario sends.
pub(super) struct ClientSpec {
    pub(super) addr: SocketAddr,
    pub(super) tls: Option<TlsConnector>,
    pub(super) auth: ClientAuth,
}

pub(super) enum ClientAuth {
    None,
    /// `K8S-SAT` with the loop's token.
    Token(Vec<String>),
    Login,
}

impl ClientSpec {
    /// A v5 CONNECT (clean start, keep alive 60) for loop `i`.
    pub(super) fn connect(&self, i: usize, client_id: &str) -> Vec<u8> {
        let mut props = Vec::new();
        let (username, password) = match &self.auth {
            ClientAuth::None => (None, None),
            ClientAuth::Token(tokens) => {
                props.push(0x15);
                mqtt_str(&mut props, b"K8S-SAT");
                props.push(0x16);
                mqtt_str(&mut props, tokens[i % tokens.len()].as_bytes());
                (None, None)
            }
            ClientAuth::Login => (Some(USER), Some(PASSWORD)),
        };
        let mut body = Vec::new();
        mqtt_str(&mut body, b"MQTT");
        body.push(5);
        let mut flags = 0x02;
        if username.is_some() {
            flags |= 0x80;
        }
        if password.is_some() {
            flags |= 0x40;
        }
        body.push(flags);
        body.extend(60u16.to_be_bytes());
        write_varint(&mut body, props.len() as u32);
        body.extend_from_slice(&props);
        mqtt_str(&mut body, client_id.as_bytes());
        if let Some(u) = username {
            mqtt_str(&mut body, u.as_bytes());
        }
        if let Some(pw) = password {
            mqtt_str(&mut body, pw.as_bytes());
        }
        frame(0x10, &body)
    }
}

/// One connection: connect (and handshake), CONNECT, CONNACK, DISCONNECT, wait for the
/// broker to close. Returns the time from the TCP connect to the CONNACK.
pub(super) async fn one_connection(
    spec: &ClientSpec,
    i: usize,
    client_id: &str,
) -> Result<Duration, String> {
    let started = Instant::now();
    let tcp = TcpStream::connect(spec.addr)
        .await
        .map_err(|e| format!("TCP connect: {e}"))?;
    tcp.set_nodelay(true).ok();
    let connect = spec.connect(i, client_id);
    match &spec.tls {
        None => session(tcp, &connect, started).await,
        Some(connector) => {
            let name = ServerName::try_from("localhost").expect("a DNS name");
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            session(tls, &connect, started).await
        }
    }
}

/// What a TLS handshake with the scenario's port negotiates (version, suite, group).
pub(super) async fn describe_tls(spec: &ClientSpec) -> Option<String> {
    let connector = spec.tls.as_ref()?;
    let tcp = TcpStream::connect(spec.addr).await.ok()?;
    let name = ServerName::try_from("localhost").expect("a DNS name");
    let tls = connector.connect(name, tcp).await.ok()?;
    let conn = tls.get_ref().1;
    Some(format!(
        "{:?}, {:?}, key exchange {:?}",
        conn.protocol_version()?,
        conn.negotiated_cipher_suite()?.suite(),
        conn.negotiated_key_exchange_group()?.name(),
    ))
}

pub(super) async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    connect: &[u8],
    started: Instant,
) -> Result<Duration, String> {
    s.write_all(connect)
        .await
        .map_err(|e| format!("write CONNECT: {e}"))?;
    s.flush().await.map_err(|e| format!("flush CONNECT: {e}"))?;
    let mut buf = BytesMut::with_capacity(256);
    let connack = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(f) = split_frame(&mut buf) {
                return Ok(f);
            }
            match s.read_buf(&mut buf).await {
                Ok(0) => return Err("closed before CONNACK".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(format!("read CONNACK: {e}")),
            }
        }
    })
    .await
    .map_err(|_| "no CONNACK within 30 s".to_owned())??;
    let latency = started.elapsed();
    // CONNACK: 0x20, remaining length, flags, reason code.
    if connack.first() != Some(&0x20) || connack.len() < 4 {
        return Err(format!("expected CONNACK, got {connack:02X?}"));
    }
    if connack[3] != 0 {
        return Err(format!("CONNACK reason 0x{:02X}", connack[3]));
    }
    s.write_all(&[0xE0, 0x00])
        .await
        .map_err(|e| format!("write DISCONNECT: {e}"))?;
    s.flush()
        .await
        .map_err(|e| format!("flush DISCONNECT: {e}"))?;
    // The broker closes after DISCONNECT; a reset or TLS error then is a close too.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut sink = [0u8; 512];
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    closed.map_err(|_| "not closed within 5 s of DISCONNECT".to_owned())?;
    Ok(latency)
}

#[derive(Default)]
pub(super) struct LoopStats {
    /// Connect-to-CONNACK latencies of the connections that ended in the window, µs.
    pub(super) latencies_us: Vec<u32>,
    pub(super) failed: u64,
    pub(super) first_error: Option<String>,
}

pub(super) async fn client_loop(
    spec: Arc<ClientSpec>,
    i: usize,
    from: Instant,
    to: Instant,
    think: Duration,
) -> LoopStats {
    let mut stats = LoopStats::default();
    for n in 0u64.. {
        if Instant::now() >= to {
            break;
        }
        let client_id = format!("ac-{i}-{n}");
        let result = one_connection(&spec, i, &client_id).await;
        let ended = Instant::now();
        let counted = ended >= from && ended <= to;
        match result {
            Ok(latency) if counted => stats
                .latencies_us
                .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX)),
            Ok(_) => {}
            Err(e) => {
                if counted {
                    stats.failed += 1;
                }
                stats.first_error.get_or_insert(e);
                // Do not spin on an immediate failure (e.g. connection refused).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if !think.is_zero() {
            tokio::time::sleep(think).await;
        }
    }
    stats
}
