//! How the state store's requests, answers and notifications travel as MQTT messages
//! (statestore.md §1.3, §4.2, §6.5): the RPC user properties (`__stat`, `__ts`,
//! `__protVer`, ...), the payload type, the protocol version check. The service
//! ([`super::StateStore`]) decides what to answer; this module only puts it in an envelope.

use bytes::Bytes;
use gatehouse_protocol::{PublishProperties, QoS, UserProperty};

use crate::message::Message;
use crate::statestore::error::ErrorReply;
use crate::statestore::resp3::Reply;

/// The node id in every version this broker assigns (`<ms>:<counter>:Gatehouse`).
pub const NODE_ID: &str = "Gatehouse";
/// Payload type of every reply and notification; the Rust and Go clients reject others.
pub const CONTENT_TYPE: &str = "application/octet-stream";
/// The RPC protocol version we speak; requests with another major version get 505 (§6.5).
pub const PROTOCOL_VERSION: &str = "1.0";

/// One request as it arrived: who sent it and what it carried.
pub struct Invocation<'a> {
    pub client_id: &'a str,
    pub payload: &'a Bytes,
    pub user_properties: &'a [UserProperty],
}

/// What answers a request: a RESP3 payload, or an RPC-level status without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub payload: Bytes,
    /// `__stat`, `__ts`, `__protVer` and friends, in that order.
    pub user_properties: Vec<UserProperty>,
    /// What the payload says, for the metrics.
    pub kind: AnswerKind,
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// A RESP3 reply other than `-ERR`.
    Reply,
    /// A `-ERR` reply.
    Error(ErrorReply),
    /// `__stat` 505: another major protocol version was asked for.
    UnsupportedVersion,
    /// `__stat` 503: cluster mode's shared store did not answer or kept conflicting.
    Unavailable,
}

impl Answer {
    pub(super) fn reply(reply: &Reply, version: Option<String>) -> Self {
        let mut user_properties = vec![("__stat".to_owned(), "200".to_owned())];
        if let Some(ts) = version {
            user_properties.push(("__ts".to_owned(), ts));
        }
        user_properties.push(("__protVer".to_owned(), PROTOCOL_VERSION.to_owned()));
        Answer {
            payload: reply.to_bytes(),
            user_properties,
            kind: match reply {
                Reply::Error(e) => AnswerKind::Error(*e),
                _ => AnswerKind::Reply,
            },
        }
    }

    pub(super) fn error(error: ErrorReply) -> Self {
        Answer::reply(&Reply::Error(error), None)
    }

    /// 505 Version Not Supported (P1 protocol-versioning.md): empty payload.
    pub(super) fn unsupported_version(requested: &str) -> Self {
        Answer {
            payload: Bytes::new(),
            user_properties: vec![
                ("__stat".to_owned(), "505".to_owned()),
                (
                    "__stMsg".to_owned(),
                    format!("protocol version {requested} is not supported; supported major versions: 1"),
                ),
                ("__protVer".to_owned(), PROTOCOL_VERSION.to_owned()),
                ("__supProtMajVer".to_owned(), "1".to_owned()),
                ("__requestProtVer".to_owned(), requested.to_owned()),
            ],
            kind: AnswerKind::UnsupportedVersion,
        }
    }

    /// 503 Service Unavailable (P1 command-errors.md), empty payload: cluster mode's shared
    /// store could not commit or read the key. The SDKs report it as a service error
    /// rather than a state store reply, which is what it is: nothing was decided.
    pub fn unavailable(reason: &super::shared::SharedError) -> Self {
        Answer {
            payload: Bytes::new(),
            user_properties: vec![
                ("__stat".to_owned(), "503".to_owned()),
                ("__stMsg".to_owned(), reason.to_string()),
                ("__protVer".to_owned(), PROTOCOL_VERSION.to_owned()),
            ],
            kind: AnswerKind::Unavailable,
        }
    }

    /// The response PUBLISH to `topic`, echoing the request's correlation data (§1.3).
    pub fn into_message(self, topic: String, correlation_data: Option<Bytes>) -> Message {
        Message {
            topic,
            payload: self.payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties {
                payload_format_indicator: Some(0),
                correlation_data,
                user_properties: self.user_properties,
                content_type: Some(CONTENT_TYPE.to_owned()),
                ..Default::default()
            },
            expires_at: None,
            origin: None,
        }
    }
}

/// `1.0`, `1`, `1.7`: any 1.x (§6.5).
pub(super) fn is_supported_version(requested: &str) -> bool {
    let major = requested.split('.').next().unwrap_or_default();
    major.parse::<u32>() == Ok(1)
}

/// The notification PUBLISH of a change to `topic` (one watcher's notify topic, §4.2):
/// `payload` is the RESP3 `NOTIFY` of the change, `version` its `__ts`.
pub(super) fn notification(topic: String, payload: Bytes, version: String) -> Message {
    Message {
        topic,
        payload,
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties {
            payload_format_indicator: Some(0),
            user_properties: vec![
                ("__ts".to_owned(), version),
                ("__protVer".to_owned(), PROTOCOL_VERSION.to_owned()),
            ],
            content_type: Some(CONTENT_TYPE.to_owned()),
            ..Default::default()
        },
        expires_at: None,
        origin: None,
    }
}
