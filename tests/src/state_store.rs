//! A minimal state store client over [`RawClient`]: it sends RESP3 request payloads exactly
//! as given (so tests choose every byte, malformed ones included) and hands back the
//! response's raw payload and user properties, plus any KEYNOTIFY notifications that
//! arrive meanwhile. Topics and properties are those of the Rust SDK (statestore.md §1.4).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gatehouse_protocol::{Packet, Publish, PublishProperties, QoS};

use crate::raw::{pid, RawClient, WAIT};

pub const REQUEST_TOPIC: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";
pub const NOTIFY_PREFIX: &str = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8";

/// The Rust SDK's response topic for `client_id`.
pub fn response_topic(client_id: &str) -> String {
    format!(
        "clients/{client_id}/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response"
    )
}

/// Upper-case hex, as in notification topics.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An HLC string at `ms`, in the SDKs' padded form.
pub fn hlc(ms: u64, counter: u32, node: &str) -> String {
    format!("{ms:015}:{counter:05}:{node}")
}

/// `__ts` now.
pub fn ts_now() -> String {
    hlc(now_ms(), 0, "test-client")
}

/// The parts of a response PUBLISH the tests look at.
#[derive(Debug, Clone)]
pub struct Response {
    pub topic: String,
    pub payload: Bytes,
    pub user_properties: Vec<(String, String)>,
    pub correlation_data: Option<Bytes>,
    pub content_type: Option<String>,
    pub qos: QoS,
}

impl Response {
    fn of(p: &Publish) -> Response {
        Response {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            user_properties: p.properties.user_properties.clone(),
            correlation_data: p.properties.correlation_data.clone(),
            content_type: p.properties.content_type.clone(),
            qos: p.qos,
        }
    }

    /// A user property's value.
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The payload as text, for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A connected v5 client subscribed to its response topic and its notification topics.
pub struct StateStoreClient {
    pub raw: RawClient,
    pub client_id: String,
    pub response_topic: String,
    next_id: u16,
    notifications: VecDeque<Response>,
}

impl StateStoreClient {
    /// Subscribe (QoS 1) to the response topic and `<notify prefix>/<HEX id>/command/notify/+`
    /// on an already connected v5 client.
    pub async fn start(raw: RawClient, client_id: &str) -> StateStoreClient {
        StateStoreClient::start_with(raw, client_id, true).await
    }

    /// [`Self::start`]; `subscribe_notify: false` skips the notification subscription
    /// (notifications are delivered without it).
    pub async fn start_with(
        mut raw: RawClient,
        client_id: &str,
        subscribe_notify: bool,
    ) -> StateStoreClient {
        let response_topic = response_topic(client_id);
        raw.sub_ok(1, &response_topic, 1).await;
        if subscribe_notify {
            let notify = format!(
                "{NOTIFY_PREFIX}/{}/command/notify/+",
                hex(client_id.as_bytes())
            );
            raw.sub_ok(2, &notify, 1).await;
        }
        StateStoreClient {
            raw,
            client_id: client_id.to_owned(),
            response_topic,
            next_id: 10,
            notifications: VecDeque::new(),
        }
    }

    /// PUBLISH a request (QoS 1, 16 bytes of correlation data) with `props` as user
    /// properties; returns the packet id and correlation data.
    pub async fn send(&mut self, payload: &[u8], props: &[(&str, &str)]) -> (u16, Bytes) {
        self.send_with(payload, props, |_| {}).await
    }

    /// [`Self::send`], with a chance to change the PUBLISH properties.
    pub async fn send_with(
        &mut self,
        payload: &[u8],
        props: &[(&str, &str)],
        edit: impl FnOnce(&mut PublishProperties),
    ) -> (u16, Bytes) {
        self.next_id = self.next_id.wrapping_add(1).max(10);
        let id = self.next_id;
        let mut correlation = [0u8; 16];
        correlation[..2].copy_from_slice(&id.to_be_bytes());
        correlation[2..10].copy_from_slice(&now_ms().to_be_bytes());
        let correlation = Bytes::copy_from_slice(&correlation);
        let mut properties = PublishProperties {
            response_topic: Some(self.response_topic.clone()),
            correlation_data: Some(correlation.clone()),
            content_type: Some("application/octet-stream".into()),
            user_properties: props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        };
        edit(&mut properties);
        self.raw
            .publish_props(REQUEST_TOPIC, payload, 1, false, id, properties)
            .await;
        (id, correlation)
    }

    /// Send a request and wait for its PUBACK and its response.
    pub async fn request(&mut self, payload: &[u8], props: &[(&str, &str)]) -> Response {
        let (id, correlation) = self.send(payload, props).await;
        self.await_response(id, &correlation).await
    }

    /// A request with `__ts` = now plus `props`.
    pub async fn call(&mut self, payload: &[u8], props: &[(&str, &str)]) -> Response {
        let ts = ts_now();
        let mut all = vec![("__ts", ts.as_str())];
        all.extend_from_slice(props);
        self.request(payload, &all).await
    }

    /// Wait (within [`WAIT`]) for the PUBACK of `id` and the response carrying
    /// `correlation`; notifications arriving meanwhile are kept for [`Self::notification`].
    pub async fn await_response(&mut self, id: u16, correlation: &[u8]) -> Response {
        let mut acked = false;
        let mut response = None;
        while !(acked && response.is_some()) {
            let packet =
                self.raw.recv(WAIT).await.unwrap_or_else(|| {
                    panic!("no PUBACK/response for request {id} (acked: {acked})")
                });
            match packet {
                Packet::PubAck(ack) if ack.packet_id == pid(id) => {
                    assert_eq!(ack.reason_code.0, 0, "PUBACK of a state store request");
                    acked = true;
                }
                Packet::Publish(p) => {
                    self.ack(&p).await;
                    if p.topic == self.response_topic
                        && p.properties.correlation_data.as_deref() == Some(correlation)
                    {
                        response = Some(Response::of(&p));
                    } else if p.topic.starts_with(NOTIFY_PREFIX) {
                        self.notifications.push_back(Response::of(&p));
                    } else {
                        panic!("unexpected PUBLISH while waiting for a response: {p:?}");
                    }
                }
                other => panic!("unexpected packet while waiting for a response: {other:?}"),
            }
        }
        response.expect("loop ends with a response")
    }

    /// The next notification (kept from earlier, or arriving within `timeout`).
    pub async fn notification_within(&mut self, timeout: Duration) -> Option<Response> {
        if let Some(n) = self.notifications.pop_front() {
            return Some(n);
        }
        match self.raw.recv(timeout).await? {
            Packet::Publish(p) if p.topic.starts_with(NOTIFY_PREFIX) => {
                self.ack(&p).await;
                Some(Response::of(&p))
            }
            other => panic!("unexpected packet while waiting for a notification: {other:?}"),
        }
    }

    /// The next notification, which must arrive within [`WAIT`].
    pub async fn notification(&mut self) -> Response {
        self.notification_within(WAIT)
            .await
            .expect("a notification within the wait")
    }

    /// No notification is kept or arrives within `quiet`.
    pub async fn no_notification(&mut self, quiet: Duration) {
        if let Some(n) = self.notification_within(quiet).await {
            panic!("expected no notification, got {n:?}");
        }
    }

    async fn ack(&mut self, p: &Publish) {
        if let (QoS::AtLeastOnce, Some(id)) = (p.qos, p.packet_id) {
            self.raw.puback(id).await;
        }
    }
}
