//! A subscriber: one task that reads a large chunk, splits it into packets, records
//! latencies and answers QoS 1/2 with acknowledgements written in one call per chunk.

use super::*;

/// A subscriber: counts PUBLISHes, records latencies, acknowledges QoS 1/2.
pub async fn subscriber(sh: Rc<Shared>, mut conn: Conn, v5: bool) {
    let mut out: Vec<u8> = Vec::new();
    let mut lats: Vec<(u64, u64)> = Vec::new();
    loop {
        match conn.rb.fill(&mut conn.io).await {
            Ok(0) => {
                if !sh.stop.get() {
                    sh.error("subscriber", "connection closed by the broker");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                sh.error("subscriber read", e);
                return;
            }
        }
        // One clock read per chunk: every message in it arrived by now.
        let now = sh.now_ns();
        let recording = sh.recording.get();
        let mut n = 0;
        loop {
            let (first, body) = match conn.rb.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    sh.error("subscriber", e);
                    return;
                }
            };
            match first >> 4 {
                mqtt::PUBLISH => {
                    n += 1;
                    let (pid, payload) = match mqtt::publish_parts(first, body, v5) {
                        Ok(p) => p,
                        Err(e) => {
                            sh.error("subscriber", e);
                            return;
                        }
                    };
                    if recording {
                        if let Some(s) = mqtt::stamps(payload) {
                            lats.push(s);
                        }
                    }
                    match (first >> 1) & 3 {
                        1 => out.extend_from_slice(&mqtt::ack(mqtt::PUBACK, pid)),
                        2 => out.extend_from_slice(&mqtt::ack(mqtt::PUBREC, pid)),
                        _ => {}
                    }
                }
                mqtt::PUBREL => {
                    if let Some(p) = body.get(..2) {
                        let pid = u16::from_be_bytes([p[0], p[1]]);
                        out.extend_from_slice(&mqtt::ack(mqtt::PUBCOMP, pid));
                    }
                }
                mqtt::DISCONNECT => sh.error(
                    "subscriber",
                    format!(
                        "DISCONNECT from the broker, reason 0x{:02x}",
                        body.first().copied().unwrap_or(0)
                    ),
                ),
                _ => {}
            }
        }
        add(&sh.delivered, n);
        if !lats.is_empty() {
            let mut h = sh.lat.borrow_mut();
            let mut hs = sh.lat_sched.borrow_mut();
            for &(sent, sched) in &lats {
                h.record(now.saturating_sub(sent));
                hs.record(now.saturating_sub(sched));
            }
            lats.clear();
        }
        if !out.is_empty() {
            if let Err(e) = conn.io.send(&out).await {
                sh.error("subscriber write", e);
                return;
            }
            out.clear();
        }
    }
}
