//! PUBLISH to the state store's request topic (statestore.md §1): the connection task
//! runs the request itself and publishes the answer to the request's response topic.
//!
//! Choices where the spec leaves it open (written down in ARCHITECTURE.md "State store"):
//! - QoS 0 requests are acknowledged by nothing and answered by nothing; QoS 2 requests
//!   are served like QoS 1 (lenient: the exchange still completes normally).
//! - A request without a response topic cannot be answered and is dropped (3.1.1 clients
//!   have no response topic at all).
//! - A response topic that is the request topic or under the notification prefix closes
//!   the connection with DISCONNECT 0x82 Protocol Error (§1.2 says "disconnects").
//! - Requests are consumed by the state store; they are not routed to subscribers of the
//!   request topic, so no wildcard subscriber sees other clients' keys and values.
//! - The answer is published on the requester's behalf (security.md invariant 4), so the
//!   requester must be allowed to receive it and to publish there
//!   ([`Connection::state_store_reply_allowed`]); otherwise the request is refused with
//!   0x87 Not authorized before anything of it runs.
//! - Cluster mode (issue 15): a GET/SET/DEL/VDEL waits for the shared store (JetStream).
//!   It runs in a task of its own and the connection awaits it ([`Pending`]) in its serve
//!   loop, handling none of the client's later packets meanwhile: the client's requests
//!   take effect and are answered in the order sent, as on a single node, while the
//!   connection keeps writing what the client receives, and no worker thread waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_protocol::{Publish, QoS, ReasonCode};

use super::{Connection, Exit};
use crate::authz::Action;
use crate::message::Message;
use crate::statestore::service::shared::SharedError;
use crate::statestore::service::{Answer, Invocation, Started};
use crate::statestore::topic::is_forbidden_response_topic;

/// A request on the shared store (cluster mode) running in its own task, and what its
/// answer needs once it comes.
pub(super) struct Pending {
    task: tokio::task::JoinHandle<Answer>,
    response_topic: String,
    correlation: Option<Bytes>,
    ttl: Option<Duration>,
}

impl Pending {
    /// The answer, once the request's task has it.
    pub(super) fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<Answer> {
        Pin::new(&mut self.task).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Answer::unavailable(&SharedError::Unavailable(format!(
                    "the request's task failed: {e}"
                )))
            })
        })
    }
}

/// The prefix of a client's own reply namespace: `clients/{client id}/` (the AIO
/// convention: the seed's policies grant `clients/{principal.clientId}/#` and the SDKs
/// answer under it).
const OWN_NAMESPACE: &str = "clients/";

/// Whether `topic` lies in `client_id`'s own reply namespace `clients/{client_id}/...`.
/// Only a client id that is one topic level has one: `dev/x` would own
/// `clients/dev/x/...`, which lies inside the namespace of the client `dev`.
fn in_own_namespace(topic: &str, client_id: &str) -> bool {
    if client_id.is_empty() || client_id.contains(['/', '+', '#']) {
        return false;
    }
    topic
        .strip_prefix(OWN_NAMESPACE)
        .and_then(|rest| rest.strip_prefix(client_id))
        .is_some_and(|rest| rest.starts_with('/'))
}

impl Connection {
    /// May the broker publish this request's answer to its response topic on the
    /// requester's behalf (security.md invariant 4, issue 13 item 3)? Called by
    /// `on_publish` before anything of the request is acted on: a refused request gets
    /// 0x87 on its PUBACK/PUBREC, is not run, and nothing is published or cached. A
    /// request without a response topic (all 3.1.1 requests) has nothing to check; it is
    /// dropped later. A forbidden response topic still ends the connection (0x82).
    ///
    /// The rule:
    /// - The requester must be allowed to SUBSCRIBE to the response topic (the AIO docs
    ///   require it of state store clients). A `$share/...` topic name is refused: no
    ///   subscription can receive a message published to it, and the subscribe check
    ///   would look at the filter after the share group instead.
    /// - The requester must also be allowed to PUBLISH to it, unless the topic is in its
    ///   own reply namespace `clients/{client id}/...`. The seed's example policy (and the
    ///   AIO docs) give state store clients only Subscribe on
    ///   `clients/{principal.clientId}/services/statestore/.../response/#`, and every SDK
    ///   answers under `clients/{client id}/` (Go hex-encodes the id, so it needs Publish
    ///   or a policy of its own); requiring Publish there would refuse every SDK under
    ///   those policies. The exception cannot reach anybody else's topics: the topic must
    ///   be one the requester may subscribe to AND lie under its own client id, where only
    ///   it (and principals the policy lets read that namespace) receive anything.
    ///   Everywhere else, e.g. `devices/victim/cmd`, the answer is authorized exactly as if
    ///   the requester had published it.
    pub(super) fn state_store_reply_allowed(&self, p: &Publish) -> Result<bool, Exit> {
        let Some(response_topic) = p.properties.response_topic.as_deref() else {
            return Ok(true);
        };
        if is_forbidden_response_topic(response_topic) {
            return Err(Exit::Violation(
                ReasonCode::PROTOCOL_ERROR,
                "a state store response topic may not be the request topic or a notification topic"
                    .into(),
            ));
        }
        if self.authz.is_none() {
            return Ok(true);
        }
        let subscribe = !response_topic.starts_with("$share/")
            && self.permitted(&Action::Subscribe(response_topic));
        let publish = in_own_namespace(response_topic, &self.client_id)
            || self.permitted(&Action::Publish(response_topic));
        if !(subscribe && publish) {
            tracing::debug!(
                target: "statestore",
                client_id = ?self.client_id,
                response_topic = ?response_topic,
                subscribe,
                publish,
                "request refused: the requester may not receive or publish its answer there"
            );
        }
        Ok(subscribe && publish)
    }

    /// Run a request that [`Self::state_store_reply_allowed`] has let through (it also
    /// refused forbidden response topics).
    pub(super) fn on_state_store_request(&mut self, p: &Publish) -> Result<(), Exit> {
        let Some(response_topic) = p.properties.response_topic.as_deref() else {
            tracing::debug!(target: "statestore", client_id = &*self.client_id, "request without a response topic: dropped");
            return Ok(());
        };
        if p.qos == QoS::AtMostOnce {
            tracing::debug!(target: "statestore", client_id = &*self.client_id, "QoS 0 request: dropped (requests must be QoS 1)");
            return Ok(());
        }
        let correlation = p.properties.correlation_data.as_ref();
        let now = Instant::now();
        if p.dup {
            let cached =
                correlation.and_then(|c| self.session.lock().state_store_replies.get(c, now));
            if let Some(mut response) = cached {
                tracing::debug!(target: "statestore", client_id = &*self.client_id, "retransmitted request: answered from the cache");
                // Only to the topic this request names, which `state_store_reply_allowed`
                // has just authorized for the principal now holding the session (not the
                // one the first copy named, authorized perhaps for another principal).
                if response.topic != response_topic {
                    response = Arc::new(Message {
                        topic: response_topic.to_owned(),
                        payload: response.payload.clone(),
                        qos: response.qos,
                        retain: response.retain,
                        properties: response.properties.clone(),
                        expires_at: response.expires_at,
                        origin: response.origin,
                    });
                }
                self.broker.router.publish(&response);
                return Ok(());
            }
        }
        let broker = &self.broker;
        let started = broker.state_store.start(
            Invocation {
                client_id: &self.client_id,
                payload: &p.payload,
                user_properties: &p.properties.user_properties,
            },
            |action| self.permitted(action),
            |client, notification| broker.deliver_notification(client, notification),
        );
        let ttl = p
            .properties
            .message_expiry_interval
            .map(|s| Duration::from_secs(u64::from(s)));
        let answer = match started {
            Started::Done(answer) => answer,
            Started::Shared(request) => {
                // Awaited by the serve loop (`Event::StateStoreAnswered`): not a worker
                // thread held for the round trip.
                let b = broker.clone();
                self.waiting = Some(Box::new(super::Waiting::StateStore(Pending {
                    task: tokio::spawn(async move { b.state_store.finish_shared(request).await }),
                    response_topic: response_topic.to_owned(),
                    correlation: correlation.cloned(),
                    ttl,
                })));
                return Ok(());
            }
        };
        self.answer_state_store_request(
            answer,
            response_topic.to_owned(),
            correlation.cloned(),
            ttl,
            now,
        );
        Ok(())
    }

    /// Whether a state store request is waiting for the shared store: the serve loop then
    /// handles no further packet of the client's until it is answered.
    pub(super) fn state_store_waiting(&self) -> bool {
        matches!(self.waiting.as_deref(), Some(super::Waiting::StateStore(_)))
    }

    /// The shared store answered the waiting request: publish the answer.
    pub(super) fn on_state_store_answer(&mut self, answer: Answer) {
        if !self.state_store_waiting() {
            return;
        }
        if let Some(super::Waiting::StateStore(p)) = self.waiting.take().map(|w| *w) {
            let Pending {
                response_topic,
                correlation,
                ttl,
                ..
            } = p;
            self.answer_state_store_request(
                answer,
                response_topic,
                correlation,
                ttl,
                Instant::now(),
            );
        }
    }

    /// Publish `answer` to the response topic, and keep it for a retransmitted request.
    fn answer_state_store_request(
        &mut self,
        answer: Answer,
        response_topic: String,
        correlation: Option<Bytes>,
        ttl: Option<Duration>,
        now: Instant,
    ) {
        let response = Arc::new(answer.into_message(response_topic, correlation.clone()));
        if let Some(c) = correlation {
            self.session
                .lock()
                .state_store_replies
                .insert(c, ttl, response.clone(), now);
        }
        self.broker.router.publish(&response);
    }
}
