//! Deliveries from the session queue to the client, within its Receive Maximum,
//! Maximum Packet Size and Topic Alias Maximum.

use std::time::Instant;

use gatehouse_protocol::codec::{self, PublishView};
use gatehouse_protocol::{Packet, PacketId, PubResp, QoS, ReasonCode};

use super::{Connection, DRAIN_HIGH_WATER};
use crate::message::Delivery;
use crate::session::{Outgoing, Stage};

impl Connection {
    /// Move queued deliveries into the write buffer while the in-flight window and the
    /// buffer allow.
    pub(super) fn drain(&mut self) {
        let session = self.session.clone();
        let mut st = session.lock();
        let now = Instant::now();
        while self.wbuf.len() < DRAIN_HIGH_WATER {
            let Some(front) = st.queue.front() else { break };
            if front.qos != QoS::AtMostOnce && st.outgoing.len() >= self.client_receive_maximum {
                break;
            }
            let Some(delivery) = st.queue.pop_front() else {
                break;
            };
            let Ok(expiry) = delivery.message.remaining_expiry(now) else {
                self.metrics.outbound.expired.inc();
                st.journal_done(&self.client_id, &delivery);
                continue; // expired while queued
            };
            let packet_id = match delivery.qos {
                QoS::AtMostOnce => None,
                _ => match st.next_packet_id() {
                    Some(id) => Some(id),
                    None => {
                        st.queue.push_front(delivery);
                        break;
                    }
                },
            };
            if self.write_publish(&delivery, packet_id, false, expiry) {
                if let Some(packet_id) = packet_id {
                    let stage = if delivery.qos == QoS::AtLeastOnce {
                        Stage::AwaitPubAck
                    } else {
                        Stage::AwaitPubRec
                    };
                    st.journal_sent(&self.client_id, &delivery, packet_id, stage);
                    st.outgoing.push_back(Outgoing {
                        packet_id,
                        stage,
                        delivery,
                    });
                }
            } else {
                st.journal_done(&self.client_id, &delivery);
            }
        }
        session.note_drained(st.queue.len(), self.broker.router.low_water());
    }

    /// After a session resumes: resend unacknowledged PUBLISHes with DUP set and PUBRELs
    /// for those already received (MQTT 5 §4.4).
    pub(super) fn resend_inflight(&mut self) {
        let session = self.session.clone();
        let st = session.lock();
        let now = Instant::now();
        for o in &st.outgoing {
            match o.stage {
                Stage::AwaitPubComp => self.send(&Packet::PubRel(PubResp::new(
                    o.packet_id,
                    ReasonCode::SUCCESS,
                ))),
                Stage::AwaitPubAck | Stage::AwaitPubRec => {
                    let expiry = o.delivery.message.remaining_expiry(now).unwrap_or(Some(1));
                    self.write_publish(&o.delivery, Some(o.packet_id), true, expiry);
                }
            }
        }
    }

    /// Encode one PUBLISH; `false` when it was discarded for exceeding the client's
    /// Maximum Packet Size (§3.1.2.11.4: discard and act as if sent).
    fn write_publish(
        &mut self,
        d: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
        expiry: Option<u32>,
    ) -> bool {
        let m = &d.message;
        let (topic, alias) = self.outbound_alias(&m.topic);
        let view = PublishView {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            properties: &m.properties,
            topic_alias: alias,
            message_expiry_interval: expiry,
            subscription_identifiers: &d.subscription_ids,
            payload: &m.payload,
        };
        let before = self.wbuf.len();
        match codec::encode_publish(&view, self.version, &mut self.wbuf) {
            Ok(n) if n as u64 <= u64::from(self.client_maximum_packet_size) => {
                self.metrics.outbound.messages.inc(d.qos);
                true
            }
            Ok(_) => {
                self.metrics.outbound.too_large.inc();
                self.wbuf.truncate(before);
                if !topic.is_empty() && alias.is_some() {
                    // The client never saw this alias being set.
                    self.outbound_aliases.remove(&m.topic);
                }
                tracing::debug!(target: "conn", topic = ?m.topic, "message larger than the client's maximum packet size; discarded");
                false
            }
            Err(e) => {
                self.wbuf.truncate(before);
                if !topic.is_empty() && alias.is_some() {
                    self.outbound_aliases.remove(&m.topic);
                }
                tracing::warn!(target: "conn", "could not encode PUBLISH: {e}");
                false
            }
        }
    }

    /// Topic and alias to send: the alias alone once assigned, topic and a new alias
    /// while the client's Topic Alias Maximum allows, else the topic alone.
    fn outbound_alias<'t>(&mut self, topic: &'t str) -> (&'t str, Option<u16>) {
        if self.client_topic_alias_maximum == 0 {
            return (topic, None);
        }
        if let Some(&alias) = self.outbound_aliases.get(topic) {
            return ("", Some(alias));
        }
        let n = self.outbound_aliases.len();
        if n < usize::from(self.client_topic_alias_maximum) {
            let alias = n as u16 + 1;
            self.outbound_aliases.insert(topic.to_owned(), alias);
            return (topic, Some(alias));
        }
        (topic, None)
    }
}
