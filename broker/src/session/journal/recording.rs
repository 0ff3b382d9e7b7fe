//! The session's side of the journal: keeping a persisted session's journal in step with
//! its state (`persistence.subscriberQueue`). It lives under `journal/` with the rest of
//! what persists, and reaches into the session's private state as a descendant of
//! `session`.
//!
//! Every change that a restart must see is recorded here while the session lock is held,
//! so the journal sees changes in the order they happened: a queued message, its sending
//! (packet id and stage), its acknowledgement; the subscriptions, expiry and unreleased
//! QoS 2 ids of the session itself. The QoS state machine (`machine.rs`) reports what
//! changed ([`Changed`]); this applies it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::message::Delivery;
use crate::session::journal::records::{Sent, SessionMeta};
use crate::session::journal::{Journal, Selected};
use crate::session::machine::Changed;
use crate::session::{EnqueueOutcome, Session, SessionState, Stage};

/// A persisted session's link to its journal.
#[derive(Debug)]
pub(in crate::session) struct Persisted {
    journal: Journal,
    /// What of the session persists.
    selected: Selected,
    /// The session's key in the journal.
    client_id: Arc<str>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Record what a QoS event changed.
#[inline]
pub(in crate::session) fn record(journal: &Option<Box<Persisted>>, changed: Changed<'_>) {
    let Some(p) = journal else {
        return;
    };
    match changed {
        Changed::Nothing => {}
        Changed::Done(d) => p.done(&d),
        Changed::Staged(o) => p.sent(&o.delivery, o.packet_id, o.stage),
    }
}

/// A persisted delivery is done with: acknowledged, expired or discarded.
#[inline]
pub(in crate::session) fn done(journal: &Option<Box<Persisted>>, d: &Delivery) {
    if let Some(p) = journal {
        p.done(d);
    }
}

impl Persisted {
    #[inline]
    fn done(&self, d: &Delivery) {
        if let Some(seq) = d.seq {
            self.journal.remove_message(&self.client_id, seq, d);
        }
    }

    /// A persisted delivery was sent with `packet_id`, or moved on to `stage`. Only QoS 2
    /// records it: exactly-once needs the stage (PUBREL, not PUBLISH, after PUBREC) across
    /// a restart, while a QoS 1 message restored as queued is simply sent again, which
    /// at-least-once allows; that saves re-encoding every QoS 1 message.
    fn sent(&self, d: &Delivery, packet_id: gatehouse_protocol::PacketId, stage: Stage) {
        if d.qos != gatehouse_protocol::QoS::ExactlyOnce {
            return;
        }
        if let Some(seq) = d.seq {
            self.journal
                .update_message(&self.client_id, seq, d, Sent::InFlight(packet_id, stage));
        }
    }
}

impl SessionState {
    /// Whether `d`, about to be queued, persists (QoS 1/2 on a topic the policy selects).
    #[inline]
    pub(in crate::session) fn message_persists(&self, d: &Delivery) -> bool {
        match &self.journal {
            Some(p) => {
                d.qos != gatehouse_protocol::QoS::AtMostOnce
                    && p.journal.message_wanted(p.selected, &d.message.topic)
            }
            None => false,
        }
    }

    /// After a push onto the queue: record the new message (if it persists) and forget the
    /// ones dropped to make room. Returns the ticket to wait for before acknowledging.
    #[inline]
    pub(in crate::session) fn journal_enqueued(
        &mut self,
        outcome: EnqueueOutcome,
        dropped: crate::session::queue::Evicted,
    ) -> Option<u64> {
        let p = self.journal.as_ref()?;
        for d in &dropped {
            p.done(d);
        }
        if !outcome.queued() {
            return None;
        }
        self.qos
            .update_newest(|back| {
                let seq = back.seq?;
                let ticket = p.journal.add_message(&p.client_id, seq, back);
                if ticket.is_none() {
                    // maxSize reached: this one lives in memory only.
                    back.seq = None;
                }
                ticket
            })
            .flatten()
    }

    /// A persisted delivery is done with: acknowledged, expired or discarded.
    #[inline]
    pub(in crate::session) fn journal_done(&self, d: &Delivery) {
        done(&self.journal, d);
    }

    /// Record the session's subscriptions, expiry and QoS 2 state; `offline_since_ms` is 0
    /// while connected.
    pub fn save_meta(&self, offline_since_ms: u64) -> Option<u64> {
        let p = self.journal.as_ref()?;
        let meta = SessionMeta {
            expiry_interval: self.expiry_interval,
            offline_since_ms,
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(f, r)| (f.clone(), r.clone()))
                .collect(),
            incoming_qos2: self.qos.unreleased_ids().collect(),
            owner: self.owner.clone(),
        };
        p.journal.put_session(&p.client_id, &meta)
    }

    /// The session went offline: record when, so its expiry runs on across a restart.
    pub fn save_offline(&self) {
        self.save_meta(now_ms().max(1));
    }

    /// The session ended: it and its messages leave the journal, nothing more is sent.
    /// Returns its subscriptions and a will waiting out its delay.
    pub fn end(
        &mut self,
    ) -> (
        std::collections::BTreeMap<String, crate::session::SubscriptionRecord>,
        Option<Box<crate::session::PendingWill>>,
    ) {
        self.ended = true;
        if let Some(p) = self.journal.take() {
            // The persisted deliveries' messages, so that their bodies are released.
            let mut persisted = Vec::new();
            self.qos.retain(
                |_| false,
                |_| false,
                |d| {
                    if d.seq.is_some() {
                        persisted.push(d.message.clone());
                    }
                },
            );
            p.journal.drop_session(&p.client_id, persisted.iter());
        }
        self.qos.clear();
        (
            std::mem::take(&mut self.subscriptions),
            self.pending_will.take(),
        )
    }
}

impl Session {
    /// Start persisting this session (a CONNECT the policy selects), or keep doing so.
    /// Messages already queued are recorded too. Returns the ticket of the session record.
    pub fn start_journal(&self, journal: &Journal, selected: Selected, expiry: u32) -> Option<u64> {
        let mut st = self.lock();
        let st = &mut *st;
        if st.journal.is_none() {
            let mut seq = st.next_seq;
            let client_id = &self.client_id;
            st.qos.update_queued(|d| {
                if d.qos as u8 > 0 && journal.message_wanted(selected, &d.message.topic) {
                    // Only a delivery whose record was written has a seq (`maxSize`).
                    if journal.add_message(client_id, seq, d).is_some() {
                        d.seq = Some(seq);
                        seq += 1;
                    }
                }
            });
            st.next_seq = seq;
            st.journal = Some(Box::new(Persisted {
                journal: journal.clone(),
                selected,
                client_id: self.client_id.clone(),
            }));
        }
        st.expiry_interval = expiry;
        st.save_meta(0)
    }

    /// Record the session's subscriptions, expiry and QoS 2 state; `offline_since_ms` is 0
    /// while connected.
    pub fn save_meta(&self, st: &SessionState, offline_since_ms: u64) -> Option<u64> {
        st.save_meta(offline_since_ms)
    }

    /// Recreate a session loaded from the journal (its subscriptions are the registry's
    /// to restore, with the index): expiry, owner, unreleased QoS 2 ids, and its messages
    /// queued or in flight as they were. Packet ids continue after the last in flight.
    pub fn restore(
        &self,
        journal: &Journal,
        meta: &SessionMeta,
        messages: Vec<(u64, Delivery, Sent)>,
    ) {
        let mut st = self.lock();
        st.journal = Some(Box::new(Persisted {
            journal: journal.clone(),
            selected: Selected::AllMessages,
            client_id: self.client_id.clone(),
        }));
        st.expiry_interval = meta.expiry_interval;
        st.qos
            .restore_unreleased(meta.incoming_qos2.iter().copied());
        st.owner = meta.owner.clone();
        for (seq, mut delivery, sent) in messages {
            delivery.seq = Some(seq);
            st.next_seq = st.next_seq.max(seq + 1);
            match sent {
                Sent::Queued => st.qos.restore_queued(delivery),
                Sent::InFlight(packet_id, stage) => {
                    st.qos.restore_in_flight(packet_id, stage, delivery)
                }
            }
        }
    }
}
