//! Packets from the client after CONNECT.

use std::sync::Arc;

use gatehouse_protocol::topic::{parse_subscription_filter, validate_topic_name};
use gatehouse_protocol::{
    AckProperties, Disconnect, Packet, PacketId, ProtocolVersion, PubResp, Publish, QoS,
    ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use smallvec::SmallVec;

use super::held_acks::HeldAck;
use super::outbound::PendingRetained;
use super::{Connection, Exit};
use crate::authz::Action;
use crate::message::Message;
use crate::routing::{ClusterLink, Durable, Settled, SubEntry};
use crate::session::{
    inbound_window_full, InboundWindow, PublishIn, Reply, Session, SubscriptionRecord, HOLD_LIMIT,
};
use crate::statestore::topic::REQUEST_TOPIC;

fn violation(rc: ReasonCode, detail: &'static str) -> Exit {
    Exit::Violation(rc, detail.into())
}

fn receive_maximum_exceeded() -> Exit {
    violation(
        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
        "receive maximum exceeded: too many QoS 1 and QoS 2 PUBLISH packets unacknowledged",
    )
}

impl Connection {
    pub(super) fn handle(&mut self, packet: Packet) -> Result<(), Exit> {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(ack) => {
                self.session.lock().on_puback(ack.packet_id);
                Ok(())
            }
            Packet::PubRec(rec) => {
                let reply = self
                    .session
                    .lock()
                    .on_pubrec(rec.packet_id, rec.reason_code);
                self.send_reply(reply);
                Ok(())
            }
            Packet::PubRel(rel) => {
                let reply = self.session.lock().on_pubrel(rel.packet_id);
                self.send_reply(reply);
                Ok(())
            }
            Packet::PubComp(comp) => {
                self.session.lock().on_pubcomp(comp.packet_id);
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.send(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => Err(self.on_disconnect(d)),
            Packet::Auth(auth) => self.on_auth(auth),
            // The codec refuses server-only packets and a second CONNECT.
            other => Err(Exit::Violation(
                ReasonCode::PROTOCOL_ERROR,
                format!("unexpected {}", other.name()).into(),
            )),
        }
    }

    /// AUTH from the client: re-authentication (MQTT 5 §4.12.1), answered when the chain
    /// has decided (see `Connection::on_reauth`).
    fn on_auth(&mut self, auth: gatehouse_protocol::Auth) -> Result<(), Exit> {
        let (Some(method), Some(chain)) = (self.auth_method.clone(), self.chain.clone()) else {
            return Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH without enhanced authentication at CONNECT",
            ));
        };
        if auth.reason_code != ReasonCode::RE_AUTHENTICATE || self.reauth.is_some() {
            return Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "unexpected AUTH: only re-authentication (0x19) is open",
            ));
        }
        if auth.properties.authentication_method.as_deref() != Some(method.as_str()) {
            return Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "re-authentication must use the authentication method of CONNECT",
            ));
        }
        let data = auth.properties.authentication_data.unwrap_or_default();
        let client_id = self.client_id.to_string();
        let username = self.principal.as_ref().and_then(|p| p.username.clone());
        self.reauth = Some(Box::pin(async move {
            chain
                .reauthenticate(&client_id, username.as_deref(), &method, &data)
                .await
        }));
        Ok(())
    }

    fn on_publish(&mut self, mut p: Publish) -> Result<(), Exit> {
        self.metrics.inbound.messages.inc(p.qos);
        // 3.1.1 has no Receive Maximum: nothing to check at QoS 1, and no lock to take.
        if let (QoS::AtLeastOnce, Some(id), ProtocolVersion::V5) =
            (p.qos, p.packet_id, self.version)
        {
            let window = self.inbound_window();
            if self.session.lock().on_publish_in(p.qos, id, window)
                == PublishIn::ReceiveMaximumExceeded
            {
                return Err(receive_maximum_exceeded());
            }
        }
        // Resolve the topic alias (MQTT 5 §3.3.2.3.4).
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias == 0 || alias > self.limits.topic_alias_maximum {
                return Err(violation(
                    ReasonCode::TOPIC_ALIAS_INVALID,
                    "topic alias out of range",
                ));
            }
            if p.topic.is_empty() {
                match self.inbound_aliases.get(alias) {
                    Some(topic) => p.topic = topic.to_owned(),
                    None => {
                        return Err(violation(ReasonCode::PROTOCOL_ERROR, "unknown topic alias"))
                    }
                }
            } else if let Err(full) = self.inbound_aliases.set(alias, &p.topic) {
                // The table is bounded in topic bytes (see `aliases`).
                return Err(Exit::Violation(
                    ReasonCode::QUOTA_EXCEEDED,
                    full.to_string().into(),
                ));
            }
        }
        if p.topic.is_empty() {
            // "It is a Protocol Error if the Topic Name is zero length and there is no
            // Topic Alias" (MQTT 5 §3.3.2.1).
            return Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "empty topic name without a topic alias",
            ));
        }
        if validate_topic_name(&p.topic).is_err() {
            return Err(violation(
                ReasonCode::TOPIC_NAME_INVALID,
                "invalid topic name in PUBLISH",
            ));
        }
        if let Some(rt) = &p.properties.response_topic {
            if validate_topic_name(rt).is_err() {
                return Err(violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "invalid response topic",
                ));
            }
        }
        let packet_id = p.packet_id;
        if p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err()
        {
            return match packet_id {
                None => Err(violation(
                    ReasonCode::PAYLOAD_FORMAT_INVALID,
                    "payload is not UTF-8",
                )),
                Some(id) => {
                    self.ack_in_order(
                        p.qos,
                        id,
                        ReasonCode::PAYLOAD_FORMAT_INVALID,
                        Default::default(),
                    );
                    Ok(())
                }
            };
        }
        if !self.permitted(&Action::Publish(&p.topic)) {
            // Dropped. v5 says so in the acknowledgement; 3.1.1 has no code for it, so
            // the client gets a normal one (and a QoS 2 exchange completes as usual).
            if let Some(id) = packet_id {
                match self.version {
                    ProtocolVersion::V5 => {
                        self.ack_in_order(p.qos, id, ReasonCode::NOT_AUTHORIZED, Default::default())
                    }
                    ProtocolVersion::V311 => {
                        if p.qos == QoS::ExactlyOnce {
                            self.session.lock().on_publish_in_dropped(id);
                        }
                        self.ack_in_order(p.qos, id, ReasonCode::SUCCESS, Default::default())
                    }
                }
            }
            return Ok(());
        }
        // A state store answer is published on the requester's behalf: refused like a
        // publish when the requester may not publish or receive it there (issue 13 item 3).
        if p.topic == REQUEST_TOPIC && !self.state_store_reply_allowed(&p)? {
            if let Some(id) = packet_id {
                self.ack_in_order(p.qos, id, ReasonCode::NOT_AUTHORIZED, Default::default());
            }
            return Ok(());
        }
        if p.qos == QoS::ExactlyOnce {
            let Some(id) = packet_id else {
                return Err(violation(
                    ReasonCode::MALFORMED_PACKET,
                    "QoS 2 without packet id",
                ));
            };
            let window = self.inbound_window();
            let step = self.session.lock().on_publish_in(p.qos, id, window);
            match step {
                PublishIn::Route => {}
                PublishIn::Duplicate => {
                    // A retransmission: routed already, acknowledge again (§4.3.3) unless
                    // the first PUBREC is still held back.
                    if !self.held_acks.contains(QoS::ExactlyOnce, id) {
                        self.ack_publish(p.qos, id, ReasonCode::SUCCESS);
                    }
                    return Ok(());
                }
                PublishIn::ReceiveMaximumExceeded => return Err(receive_maximum_exceeded()),
            }
        }
        if p.topic == REQUEST_TOPIC {
            self.on_state_store_request(&p)?;
            if let Some(id) = packet_id {
                self.ack_in_order(p.qos, id, ReasonCode::SUCCESS, SmallVec::new());
            }
            return Ok(());
        }
        let expires_at = self
            .limits
            .message_expires_at(p.properties.message_expiry_interval.take());
        let message = Arc::new(Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: p.properties,
            expires_at,
            origin: Some(self.session.key),
        });
        // Cluster mode: an offline session wants it kept in JetStream, which has no
        // quorum now (cluster/queue.rs): a v5 publisher is told (0x80), as for a retained
        // message, instead of an acknowledgement for a message that cannot be kept.
        if self
            .broker
            .router
            .cluster
            .get()
            .is_some_and(|c| c.storage_refuses(&message))
            && self.refuse_retained(
                message.qos,
                packet_id,
                &crate::routing::RetainRefused::Unavailable,
            )
        {
            return Ok(());
        }
        let retained = match message.retain.then(|| self.broker.router.retain(&message)) {
            Some(Err(why)) if self.refuse_retained(message.qos, packet_id, &why) => return Ok(()),
            Some(result) => result.unwrap_or(None),
            None => None,
        };
        if message.retain && message.payload.is_empty() {
            // A clear: paced while the node writes clears faster than the retained
            // bucket's room for their records allows (cluster mode).
            if let Some(at) = self
                .broker
                .router
                .retained_sink
                .get()
                .and_then(|s| s.paced_until())
            {
                self.paused_until = Some(tokio::time::Instant::from_std(at));
            }
        }
        let router = &self.broker.router;
        let routed = router.publish(&message);
        if routed.forwarded.congested {
            self.paused_forwarding = self.paused_forwarding.max(Some(message.qos));
        }
        if message.qos == QoS::AtMostOnce {
            for s in routed.congested {
                if !self.paused_for.iter().any(|p| Arc::ptr_eq(p, &s)) {
                    self.paused_for.push(s);
                }
            }
        } else if let Some(id) = packet_id {
            let ticket = routed.ticket;
            let forwarded = routed
                .forwarded
                .ticket
                .zip(router.cluster.get().cloned())
                .map(|(t, link)| (link, t));
            self.ack_after(
                message.qos,
                id,
                ReasonCode::SUCCESS,
                routed.congested,
                ticket,
                retained,
                forwarded,
            );
        }
        Ok(())
    }

    /// Our Receive Maximum as MQTT 5 §3.3.4 counts it: QoS 1 PUBLISHes whose PUBACK is
    /// held back plus QoS 2 ones not yet released (PUBREL; counted by the session). A
    /// compliant client never exceeds it: it sees each acknowledgement only after we have
    /// sent it. 3.1.1 has no Receive Maximum: the same bound applies to unreleased QoS 2
    /// alone (its held PUBACKs are bounded by not reading: `inbound_window_full`).
    fn inbound_window(&self) -> InboundWindow {
        InboundWindow {
            maximum: usize::from(self.limits.receive_maximum),
            held_pubacks: match self.version {
                ProtocolVersion::V5 => Some(self.held_acks.qos1()),
                ProtocolVersion::V311 => None,
            },
        }
    }

    /// Send what the session answers to an acknowledgement.
    fn send_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Nothing => {}
            Reply::PubRel(id, rc) => self.send(&Packet::PubRel(PubResp::new(id, rc))),
            Reply::PubComp(id, rc) => self.send(&Packet::PubComp(PubResp::new(id, rc))),
        }
    }

    /// Whether this client is not read for now: a QoS 0 PUBLISH of its found a
    /// subscriber congested, which has neither drained since nor been congested for
    /// `QOS0_HOLD_LIMIT`. Other clients' deliveries to that subscriber are not held up.
    /// Also while the cluster way to other nodes is congested (`paused_forwarding`), and
    /// after a retained clear that found the node's clear budget spent (`paused_until`).
    pub(super) fn paused(&mut self) -> bool {
        if !self.paused_for.is_empty() {
            self.paused_for.retain(|s| s.is_holding_at(QoS::AtMostOnce));
        }
        if let Some(qos) = self.paused_forwarding {
            let cluster = self.broker.router.cluster.get();
            if !cluster.is_some_and(|c| c.forwarding().is_holding(qos)) {
                self.paused_forwarding = None;
            }
        }
        if self
            .paused_until
            .is_some_and(|at| at <= tokio::time::Instant::now())
        {
            self.paused_until = None;
        }
        !self.paused_for.is_empty()
            || self.paused_forwarding.is_some()
            || self.paused_until.is_some()
    }

    /// A 3.1.1 client is not read while as many acknowledgements are held as our Receive
    /// Maximum (see [`crate::session::inbound_window_full`]).
    pub(super) fn inbound_window_full(&self) -> bool {
        inbound_window_full(
            self.version == ProtocolVersion::V311,
            self.held_acks.len(),
            self.limits.receive_maximum,
        )
    }

    /// Acknowledge a PUBLISH now, or behind the acknowledgements still held back, so they
    /// leave in the order the PUBLISH packets arrived (MQTT 5 §4.6); `waits` are the
    /// congested sessions this one must wait for itself.
    fn ack_in_order(
        &mut self,
        qos: QoS,
        id: PacketId,
        reason: ReasonCode,
        waits: SmallVec<[Arc<Session>; 1]>,
    ) {
        self.ack_after(qos, id, reason, waits, None, None, None);
    }

    /// [`Self::ack_in_order`], also waiting for journal `ticket` to be durable, for the
    /// retained message it set to be kept (`retained`: the journal's, or in cluster mode
    /// the retained bucket's) and, in cluster mode, for the message to have left this
    /// node (`forwarded`).
    #[allow(clippy::too_many_arguments)]
    fn ack_after(
        &mut self,
        qos: QoS,
        id: PacketId,
        reason: ReasonCode,
        waits: SmallVec<[Arc<Session>; 1]>,
        ticket: Option<u64>,
        retained: Option<Durable>,
        forwarded: Option<(Arc<dyn ClusterLink>, u64)>,
    ) {
        let mut durable: SmallVec<[Durable; 1]> = ticket
            .and_then(|ticket| {
                let source = self.broker.journal_tickets.get()?;
                (source.settled(ticket) != Settled::Kept).then(|| Durable {
                    source: source.clone(),
                    ticket,
                })
            })
            .into_iter()
            .collect();
        durable.extend(retained);
        let now = tokio::time::Instant::now();
        let durable_until = durable
            .iter()
            .filter_map(|d| d.source.wait_limit())
            .min()
            .map(|limit| now + limit);
        // Kept already: nothing to wait for (a failure is held too, to be reported in
        // order by `release_held_acks`).
        let settled = durable.iter().all(|d| d.settled() == Settled::Kept);
        let forwarded = forwarded.filter(|(link, t)| !link.is_forwarded(*t));
        if waits.is_empty() && settled && forwarded.is_none() && self.held_acks.is_empty() {
            self.ack_publish(qos, id, reason);
        } else {
            self.held_acks.push(HeldAck {
                qos,
                packet_id: id,
                reason,
                waits,
                until: now + HOLD_LIMIT,
                durable,
                durable_until,
                forwarded,
            });
        }
    }

    /// Send the held acknowledgements whose subscribers have drained, in order.
    pub(super) fn release_held_acks(&mut self) {
        if self.held_acks.is_empty() {
            return;
        }
        let ready: Vec<_> = self.held_acks.pop_ready().collect();
        for ack in ready {
            let reason = if ack.kept() {
                ack.reason
            } else {
                self.not_kept(ack.qos, ack.packet_id, ack.reason)
            };
            self.ack_publish(ack.qos, ack.packet_id, reason);
        }
    }

    /// The reason code for a PUBLISH whose persisted change was not kept (the retained
    /// bucket did not store its retained message within its wait limit, or gave it up):
    /// v5 0x80 Unspecified error, so the publisher knows its retained message may not be
    /// kept and can publish it again (its delivery to subscribers has happened already: a
    /// retry delivers it again). A QoS 2 exchange ends with it (no PUBREL comes for an
    /// error PUBREC). 3.1.1 has no code for it: the acknowledgement says success, as for
    /// every refusal a 3.1.1 client cannot be told of. An error reason stays.
    fn not_kept(&mut self, qos: QoS, id: PacketId, reason: ReasonCode) -> ReasonCode {
        if self.version != ProtocolVersion::V5 || reason != ReasonCode::SUCCESS {
            return reason;
        }
        tracing::debug!(target: "conn", client_id = &*self.client_id, packet_id = id.get(), "retained message not kept in time: acknowledged 0x80");
        if qos == QoS::ExactlyOnce {
            self.session.lock().on_publish_in_refused(id);
        }
        ReasonCode::UNSPECIFIED_ERROR
    }

    fn ack_publish(&mut self, qos: QoS, id: PacketId, rc: ReasonCode) {
        let resp = PubResp::new(id, rc);
        match qos {
            QoS::AtLeastOnce => self.send(&Packet::PubAck(resp)),
            QoS::ExactlyOnce => self.send(&Packet::PubRec(resp)),
            QoS::AtMostOnce => {}
        }
    }

    fn on_subscribe(&mut self, sub: Subscribe) -> Result<(), Exit> {
        let mut codes = Vec::with_capacity(sub.filters.len());
        // Read now, not from the connection's limits, so a reload applies at once.
        let limits = self.broker.limits();
        let max_subscriptions = limits.max_subscriptions_per_client;
        let max_bytes = limits.max_subscription_bytes_per_client;
        // `maxSubscriptionBytesPerClient`: bytes of the filters the session holds, kept up
        // to date below as filters are added (this connection alone changes them meanwhile).
        let mut held_bytes: usize = self
            .session
            .lock()
            .subscriptions
            .keys()
            .map(String::len)
            .sum();
        for (raw, options) in sub.filters {
            let parsed = match parse_subscription_filter(&raw) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(target: "conn", client_id = &*self.client_id, filter = ?raw, "refused subscription: {e}");
                    codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                    continue;
                }
            };
            if parsed.share_group.is_some() && options.no_local {
                return Err(violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "No Local on a shared subscription",
                ));
            }
            if !self.permitted(&Action::Subscribe(&raw)) {
                codes.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            {
                // `maxSubscriptionsPerClient`: a filter the session holds already is
                // replaced, not added, so it always passes.
                let st = self.session.lock();
                let held = st.subscriptions.contains_key(&raw);
                if !held && st.subscriptions.len() >= max_subscriptions {
                    tracing::debug!(target: "conn", client_id = &*self.client_id, filter = ?raw, max_subscriptions, "refused subscription: maxSubscriptionsPerClient reached");
                    codes.push(ReasonCode::QUOTA_EXCEEDED);
                    continue;
                }
                // `maxSubscriptionBytesPerClient`: the same, for the bytes of the filters.
                if !held {
                    if held_bytes.saturating_add(raw.len()) > max_bytes {
                        tracing::debug!(target: "conn", client_id = &*self.client_id, filter_bytes = raw.len(), held_bytes, max_bytes, "refused subscription: maxSubscriptionBytesPerClient reached");
                        codes.push(ReasonCode::QUOTA_EXCEEDED);
                        continue;
                    }
                    held_bytes += raw.len();
                }
            }
            let entry = SubEntry {
                session: self.session.clone(),
                options,
                id: sub.subscription_identifier,
            };
            let outcome = self
                .broker
                .router
                .subscribe(parsed.filter, parsed.share_group, entry);
            {
                let mut st = self.session.lock();
                st.subscriptions.insert(
                    raw.clone(),
                    SubscriptionRecord {
                        options,
                        id: sub.subscription_identifier,
                    },
                );
                self.session.save_meta(&st, 0);
            }
            codes.push(ReasonCode(options.qos as u8));
            // Retained messages: not for shared subscriptions (§4.8.2); Retain Handling
            // 0 always, 1 only for a new subscription, 2 never (§3.3.1.3).
            let send_retained = parsed.share_group.is_none()
                && match options.retain_handling {
                    0 => true,
                    1 => !outcome.existed,
                    _ => false,
                };
            if send_retained {
                // They follow the SUBACK, fed to the queue by `drain` at the client's pace
                // (the subscription is in the index already, so nothing retained from now
                // on is missed: it arrives live). A new SUBSCRIBE to the same filter starts
                // over: what an earlier one still owed is part of it.
                // Walks for filters no longer held (unsubscribed, revoked) go too, so the
                // backlog never outgrows the subscriptions (`maxSubscriptionsPerClient`).
                let st = self.session.lock();
                self.retained_backlog
                    .retain(|p| p.raw != raw && st.subscriptions.contains_key(&p.raw));
                drop(st);
                let cursor = self.broker.router.retained_cursor(
                    parsed.filter,
                    options,
                    sub.subscription_identifier,
                );
                self.retained_backlog
                    .push_back(PendingRetained { raw, cursor });
            }
        }
        // Cluster mode: the session's record follows its subscriptions.
        let wait = self.broker.session_changed_durably(&self.session);
        self.send_after(
            wait,
            Packet::SubAck(SubAck {
                packet_id: sub.packet_id,
                properties: AckProperties::default(),
                reason_codes: codes,
            }),
        );
        Ok(())
    }

    /// A retained PUBLISH the store refused (`maxRetainedMessages` / `maxRetainedBytes`):
    /// true when it was answered here with 0x97 Quota exceeded and must not be routed (v5
    /// QoS 1/2: an error reason means "not accepted", so a retry after the store has room
    /// delivers it once); false when it is to be routed without being retained (QoS 0 and
    /// 3.1.1, which cannot be told, as EMQX does). In cluster mode, while JetStream has no
    /// quorum, the same with 0x80 Unspecified error (no PUBACK code says "try later").
    fn refuse_retained(
        &mut self,
        qos: QoS,
        packet_id: Option<PacketId>,
        why: &crate::routing::RetainRefused,
    ) -> bool {
        let (ProtocolVersion::V5, Some(id)) = (self.version, packet_id) else {
            return false;
        };
        if qos == QoS::ExactlyOnce {
            // A PUBREC with an error ends the exchange: no PUBREL will come for it.
            self.session.lock().on_publish_in_refused(id);
        }
        let reason = match why {
            crate::routing::RetainRefused::Unavailable => ReasonCode::UNSPECIFIED_ERROR,
            _ => ReasonCode::QUOTA_EXCEEDED,
        };
        self.ack_in_order(qos, id, reason, SmallVec::new());
        true
    }

    fn on_unsubscribe(&mut self, unsub: Unsubscribe) {
        let mut codes = Vec::with_capacity(unsub.filters.len());
        for raw in &unsub.filters {
            let Ok(parsed) = parse_subscription_filter(raw) else {
                codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            };
            let had = {
                let mut st = self.session.lock();
                let had = st.subscriptions.remove(raw).is_some();
                if had {
                    self.session.save_meta(&st, 0);
                }
                had
            };
            self.broker
                .router
                .unsubscribe(parsed.filter, parsed.share_group, self.session.key);
            codes.push(if had {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        let wait = self.broker.session_changed_durably(&self.session);
        self.send_after(
            wait,
            Packet::UnsubAck(UnsubAck {
                packet_id: unsub.packet_id,
                properties: AckProperties::default(),
                reason_codes: codes,
            }),
        );
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Exit {
        if self.version == ProtocolVersion::V5 {
            if let Some(expiry) = d.properties.session_expiry_interval {
                if self.connect_expiry_was_zero && expiry != 0 {
                    return violation(
                        ReasonCode::PROTOCOL_ERROR,
                        "DISCONNECT raised a session expiry that CONNECT set to 0",
                    );
                }
                self.session_expiry = expiry.min(self.limits.max_session_expiry);
            }
        }
        // Only reason 0x00 deletes the will ([MQTT-3.1.2-8], [MQTT-3.14.4-3]); 0x04 and
        // every error reason leave it to be published.
        Exit::Disconnected(d.reason_code)
    }
}
