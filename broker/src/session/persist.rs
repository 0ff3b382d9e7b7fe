//! Keeping a persisted session's journal in step with its state
//! (`persistence.subscriberQueue`, see `persistence::journal`).
//!
//! Every change that a restart must see is recorded here while the session lock is held,
//! so the journal sees changes in the order they happened: a queued message, its sending
//! (packet id and stage), its acknowledgement; the subscriptions, expiry and unreleased
//! QoS 2 ids of the session itself.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Delivery, EnqueueOutcome, Session, SessionState, Stage};
use crate::session::journal::records::{Sent, SessionMeta};
use crate::session::journal::{Journal, Selected};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Session {
    /// After a push onto the queue: record the new message (if it persists) and forget the
    /// one dropped to make room. Returns the ticket to wait for before acknowledging.
    pub(super) fn journal_enqueued(
        &self,
        st: &mut SessionState,
        outcome: EnqueueOutcome,
        dropped: super::queue::Evicted,
    ) -> Option<u64> {
        let (journal, _) = st.journal.as_ref()?;
        for seq in dropped.iter().filter_map(|d| d.seq) {
            journal.remove_message(&self.client_id, seq);
        }
        if !outcome.queued() {
            return None;
        }
        st.queue
            .update_back(|back| {
                let seq = back.seq?;
                let ticket = journal.add_message(&self.client_id, seq, back);
                if ticket.is_none() {
                    // maxSize reached: this one lives in memory only.
                    back.seq = None;
                }
                ticket
            })
            .flatten()
    }

    /// Start persisting this session (a CONNECT the policy selects), or keep doing so.
    /// Messages already queued are recorded too. Returns the ticket of the session record.
    pub fn start_journal(&self, journal: &Journal, selected: Selected, expiry: u32) -> Option<u64> {
        let mut st = self.lock();
        if st.journal.is_none() {
            st.journal = Some((journal.clone(), selected));
            let mut seq = st.next_seq;
            st.queue.update_all(|d| {
                if d.qos as u8 > 0 && journal.message_wanted(selected, &d.message.topic) {
                    d.seq = Some(seq);
                    journal.add_message(&self.client_id, seq, d);
                    seq += 1;
                }
            });
            st.next_seq = seq;
        }
        st.expiry_interval = expiry;
        self.save_meta(&st, 0)
    }

    /// Record the session's subscriptions, expiry and QoS 2 state; `offline_since_ms` is 0
    /// while connected.
    pub fn save_meta(&self, st: &SessionState, offline_since_ms: u64) -> Option<u64> {
        let (journal, _) = st.journal.as_ref()?;
        let meta = SessionMeta {
            expiry_interval: st.expiry_interval,
            offline_since_ms,
            subscriptions: st
                .subscriptions
                .iter()
                .map(|(f, r)| (f.clone(), r.clone()))
                .collect(),
            incoming_qos2: st.incoming_qos2.iter().copied().collect(),
            owner: st.owner.clone(),
        };
        journal.put_session(&self.client_id, &meta)
    }

    /// The session went offline: record when, so its expiry runs on across a restart.
    pub fn save_offline(&self, st: &SessionState) {
        self.save_meta(st, now_ms().max(1));
    }

    /// The session ended: it and its messages leave the journal.
    pub fn forget_journal(&self, st: &mut SessionState) {
        if let Some((journal, _)) = st.journal.take() {
            journal.drop_session(&self.client_id);
        }
    }
}

impl SessionState {
    /// A persisted delivery was sent with `packet_id`, or moved on to `stage`. Only QoS 2
    /// records it: exactly-once needs the stage (PUBREL, not PUBLISH, after PUBREC) across
    /// a restart, while a QoS 1 message restored as queued is simply sent again, which
    /// at-least-once allows; that saves re-encoding every QoS 1 message.
    pub fn journal_sent(
        &self,
        client_id: &str,
        d: &Delivery,
        packet_id: gatehouse_protocol::PacketId,
        stage: Stage,
    ) {
        if d.qos != gatehouse_protocol::QoS::ExactlyOnce {
            return;
        }
        if let (Some((journal, _)), Some(seq)) = (&self.journal, d.seq) {
            journal.update_message(client_id, seq, d, Sent::InFlight(packet_id, stage));
        }
    }

    /// A persisted delivery is done with: acknowledged, expired or discarded.
    pub fn journal_done(&self, client_id: &str, d: &Delivery) {
        if let (Some((journal, _)), Some(seq)) = (&self.journal, d.seq) {
            journal.remove_message(client_id, seq);
        }
    }
}
