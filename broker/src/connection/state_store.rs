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

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_protocol::{Publish, QoS, ReasonCode};

use super::{Connection, Exit};
use crate::statestore::service::Invocation;
use crate::statestore::topic::is_forbidden_response_topic;

impl Connection {
    pub(super) fn on_state_store_request(&mut self, p: &Publish) -> Result<(), Exit> {
        let Some(response_topic) = p.properties.response_topic.as_deref() else {
            tracing::debug!(target: "statestore", "request without a response topic: dropped");
            return Ok(());
        };
        if is_forbidden_response_topic(response_topic) {
            return Err(Exit::Violation(
                ReasonCode::PROTOCOL_ERROR,
                "a state store response topic may not be the request topic or a notification topic"
                    .into(),
            ));
        }
        if p.qos == QoS::AtMostOnce {
            tracing::debug!(target: "statestore", "QoS 0 request: dropped (requests must be QoS 1)");
            return Ok(());
        }
        let correlation = p.properties.correlation_data.as_ref();
        let now = Instant::now();
        if p.dup {
            let cached =
                correlation.and_then(|c| self.session.lock().state_store_replies.get(c, now));
            if let Some(response) = cached {
                tracing::debug!(target: "statestore", "retransmitted request: answered from the cache");
                self.broker.router.publish(&response);
                return Ok(());
            }
        }
        let broker = &self.broker;
        let answer = broker.state_store.invoke(
            Invocation {
                client_id: &self.client_id,
                payload: &p.payload,
                user_properties: &p.properties.user_properties,
            },
            |action| self.allowed(action),
            |client, notification| broker.deliver_notification(client, notification),
        );
        let response =
            Arc::new(answer.into_message(response_topic.to_owned(), correlation.cloned()));
        if let Some(c) = correlation {
            let ttl = p
                .properties
                .message_expiry_interval
                .map(|s| Duration::from_secs(u64::from(s)));
            self.session
                .lock()
                .state_store_replies
                .insert(c.clone(), ttl, response.clone(), now);
        }
        broker.router.publish(&response);
        Ok(())
    }
}
