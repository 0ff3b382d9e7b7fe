//! The session registry, and with it the broker's shared state: the router, the state
//! store and the limits (the [`Broker`] every connection holds).
//!
//! One `Arc<Broker>` is shared by every connection task. The registry maps client ids
//! to sessions; attaching a connection to a session (clean start, resume, takeover)
//! and detaching it (session expiry, will delay) happen here so the rules of MQTT 5
//! §3.1.2.4/§3.1.3.2.2/§4.1 live in one place.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_protocol::{PublishProperties, QoS, ReasonCode};
use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::sync::oneshot;

use crate::limits::Limits;
use crate::message::{Delivery, Message};
use crate::routing::{Durability, RetainedSink, Router, Settled, SubEntry};
use crate::session::journal::{Journal, LoadedSession};
use crate::session::{Attachment, Owner, PendingWill, Session};
// The will types moved to `session::will` (a pending will is session state); re-exported
// so existing paths keep working.
pub use crate::session::will::{WillAuthority, WillMessage};
use crate::statestore::StateStore;

pub struct Broker {
    /// Replaced by a reload; each connection keeps the limits it was connected under
    /// (its CONNACK announced them).
    limits: parking_lot::RwLock<Arc<Limits>>,
    pub router: Router,
    pub state_store: StateStore,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    next_key: AtomicU64,
    /// Set at start when sessions or retained messages persist.
    pub journal: std::sync::OnceLock<Journal>,
    /// The same journal as the source of the tickets publishers' acknowledgements wait
    /// for, made once (not an allocation per held acknowledgement).
    pub journal_tickets: std::sync::OnceLock<Arc<dyn Durability>>,
    /// Cluster mode (issue 15): the sessions bucket, which says which node owns each
    /// session (`cluster::sessions::ClusterSessions`); set at start before the ports open.
    pub cluster_sessions: std::sync::OnceLock<Arc<dyn SessionRecords>>,
}

/// Cluster mode's record of the sessions and who owns them, as the registry reports to
/// it (implemented by `cluster::sessions::ClusterSessions`; a trait so that the registry
/// does not depend on the cluster module, which depends on it).
pub trait SessionRecords: Send + Sync {
    /// The session's subscriptions or connection changed: write its record again (in
    /// the background).
    fn changed(&self, session: &Arc<Session>);
    /// [`Self::changed`]; the future resolves once the record is written (up to 5 s).
    fn changed_then(
        &self,
        session: &Arc<Session>,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;
    /// The session ended on this node (clean start, expiry): delete its record.
    fn ended(&self, session: &Arc<Session>);
    /// The implementation, for the CONNECT path (`connection::handshake`), which claims
    /// sessions through it.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A connection's hold on its session. Dropping `released` tells a connection that is
/// taking the session over that this one is gone.
pub struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
    pub generation: u64,
    pub kicked: oneshot::Receiver<ReasonCode>,
    pub released: oneshot::Sender<()>,
}

/// Why [`Broker::attach`] started no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// `maxSessions` reached (the count held): CONNACK 0x97 Quota exceeded.
    #[error("maxSessions reached ({0} sessions): no new session")]
    TooManySessions(usize),
}

/// How a connection left its session.
pub struct Detach {
    pub generation: u64,
    pub expiry_interval: u32,
    /// The will to publish (after its delay), if the connection ended without a
    /// normal DISCONNECT.
    pub will: Option<WillMessage>,
}

/// How long a new connection waits for the connection it takes over to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

impl Broker {
    pub fn new(limits: Limits) -> Arc<Self> {
        let policy = limits.queue_policy();
        let quotas = limits.state_store_quotas();
        let retained_caps = limits.retained_caps;
        Arc::new(Broker {
            limits: parking_lot::RwLock::new(Arc::new(limits)),
            router: Router::new(policy, retained_caps),
            state_store: StateStore::new(quotas),
            sessions: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(1),
            journal: std::sync::OnceLock::new(),
            journal_tickets: std::sync::OnceLock::new(),
            cluster_sessions: std::sync::OnceLock::new(),
        })
    }

    /// The limits new connections get.
    pub fn limits(&self) -> Arc<Limits> {
        self.limits.read().clone()
    }

    /// Apply new limits (a reload): new connections get them, and the queue policy and
    /// the state store quotas change at once; live connections keep what they were told.
    pub fn set_limits(&self, limits: Limits) {
        // The queue policy (length, bytes, strategy) applies to the next enqueue;
        // `maxSessions` is read from these limits at each CONNECT.
        self.router.set_policy(limits.queue_policy());
        self.state_store.set_quotas(limits.state_store_quotas());
        // Retained caps apply to the next retained PUBLISH; `maxSubscriptionsPerClient` is
        // read from these limits at each SUBSCRIBE.
        self.router.set_retained_caps(limits.retained_caps);
        *self.limits.write() = Arc::new(limits);
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Hand a state store notification to the connected session of `client_id`, at QoS 1,
    /// without subscription matching (statestore.md §4.2: the .NET client's subscription
    /// can never match the notify topic, yet the real broker delivers; and no wildcard
    /// subscriber such as `clients/#` may see other clients' notifications).
    pub fn deliver_notification(&self, client_id: &str, message: Message) {
        let session = self.sessions.lock().get(client_id).cloned();
        if let Some(session) = session.filter(|s| s.is_online()) {
            self.router.enqueue(
                &session,
                Delivery {
                    message: Arc::new(message),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    subscription_ids: SmallVec::new(),
                    seq: None,
                },
            );
        }
    }

    /// Expire state store keys as they fall due (with DELETE notifications); runs for the
    /// life of the broker.
    pub async fn run_state_store_expiry(self: Arc<Self>) {
        loop {
            let next = self
                .state_store
                .expire_due(|client, m| self.deliver_notification(client, m));
            let wait = match next {
                Some(at) => Duration::from_millis(at.saturating_sub(self.state_store.now_ms())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.state_store.expiry_changed() => {}
            }
        }
    }

    /// Recreate the sessions loaded from the journal: offline, with their subscriptions
    /// in the index, queued and in-flight messages in place, and their expiry running on
    /// from when they went offline (a session that was connected when the broker stopped
    /// counts from now).
    pub fn restore_sessions(self: &Arc<Self>, journal: &Journal, loaded: Vec<LoadedSession>) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for stored in loaded {
            let key = self.next_key.fetch_add(1, Ordering::Relaxed);
            let session = Arc::new(Session::new(key, stored.client_id.as_str().into()));
            let mut meta = stored.meta;
            let subscriptions = std::mem::take(&mut meta.subscriptions);
            session.restore(journal, &meta, stored.messages);
            {
                let mut st = session.lock();
                for (raw, record) in subscriptions {
                    if let Ok(parsed) = gatehouse_protocol::topic::parse_subscription_filter(&raw) {
                        self.router.subscribe(
                            parsed.filter,
                            parsed.share_group,
                            SubEntry {
                                session: session.clone(),
                                options: record.options,
                                id: record.id,
                            },
                        );
                    }
                    st.subscriptions.insert(raw, record);
                }
            }
            let offline_for = match meta.offline_since_ms {
                0 => 0,
                since => now_ms.saturating_sub(since) / 1000,
            };
            let left = u64::from(meta.expiry_interval).saturating_sub(offline_for);
            self.sessions
                .lock()
                .insert(stored.client_id.as_str().into(), session.clone());
            if left == 0 && meta.expiry_interval != u32::MAX {
                self.end_session(&session);
            } else {
                let after = if meta.expiry_interval == u32::MAX {
                    Duration::MAX
                } else {
                    Duration::from_secs(left)
                };
                self.arm_expiry(&session, 0, after);
            }
        }
    }

    /// Disconnect every connected client (v5: DISCONNECT with `reason`); sessions stay
    /// under their expiry rules. Returns how many were connected.
    pub fn disconnect_all(&self, reason: ReasonCode) -> usize {
        let registry = self.sessions.lock();
        let mut kicked = 0;
        for session in registry.values() {
            if let Some(attachment) = session.lock().attachment.take() {
                let _ = attachment.kick.send(reason);
                kicked += 1;
            }
        }
        kicked
    }

    /// Disconnect the connected clients whose session owner `revoked` picks (v5: DISCONNECT
    /// with `reason`), e.g. password users removed from their file; sessions stay under
    /// their expiry rules. Returns how many were disconnected.
    pub fn disconnect_owners(&self, reason: ReasonCode, revoked: impl Fn(&Owner) -> bool) -> usize {
        let registry = self.sessions.lock();
        let mut kicked = 0;
        for session in registry.values() {
            let mut state = session.lock();
            if !revoked(&state.owner) {
                continue;
            }
            if let Some(attachment) = state.attachment.take() {
                let _ = attachment.kick.send(reason);
                kicked += 1;
            }
        }
        kicked
    }

    /// Attach a new connection to the session for `client_id`: take it over from a
    /// connected client (DISCONNECT 0x8E there), resume it, or start a fresh one. A
    /// session owned by another identity is never resumed: it ends and a fresh one
    /// starts (Session Present 0), as with Clean Start.
    ///
    /// A fresh session for a client id that has none is refused once the registry holds
    /// `maxSessions`; one that replaces an existing session does not add to the count
    /// and always starts.
    pub async fn attach(
        self: &Arc<Self>,
        client_id: &str,
        clean_start: bool,
        owner: Owner,
    ) -> Result<Attached, AttachError> {
        let max_sessions = self.limits().max_sessions;
        loop {
            let previous = {
                let registry = self.sessions.lock();
                registry
                    .get(client_id)
                    .and_then(|s| s.lock().attachment.take())
            };
            if let Some(Attachment { kick, released }) = previous {
                let _ = kick.send(ReasonCode::SESSION_TAKEN_OVER);
                // Err means released: the old task dropped its sender.
                let _ = tokio::time::timeout(TAKEOVER_WAIT, released).await;
                continue;
            }
            let mut registry = self.sessions.lock();
            let existing = registry.get(client_id).cloned();
            if let Some(session) = &existing {
                if session.lock().attachment.is_some() {
                    // Someone else attached meanwhile; take over again.
                    continue;
                }
            }
            let (kick_tx, kick_rx) = oneshot::channel();
            let (released_tx, released_rx) = oneshot::channel();
            let attachment = Attachment {
                kick: kick_tx,
                released: released_rx,
            };
            let resumable = existing.as_ref().is_some_and(|s| {
                let admitted = s.lock().owner.admits(&owner);
                if !admitted && !clean_start {
                    tracing::info!(
                        target: "session",
                        client_id,
                        "the session belongs to another identity: starting a new session"
                    );
                }
                admitted
            });
            if existing.is_none() && registry.len() >= max_sessions {
                return Err(AttachError::TooManySessions(registry.len()));
            }
            let (session, session_present, ended) = match existing {
                Some(session) if !clean_start && resumable => (session, true, None),
                other => {
                    let key = self.next_key.fetch_add(1, Ordering::Relaxed);
                    let fresh = Arc::new(Session::new(key, client_id.into()));
                    registry.insert(client_id.into(), fresh.clone());
                    (fresh, false, other)
                }
            };
            let generation = {
                let mut st = session.lock();
                st.generation += 1;
                st.attachment = Some(attachment);
                st.owner = owner;
                // A reconnect within the will delay cancels the will (§3.1.3.2.2).
                st.pending_will = None;
                st.generation
            };
            session.set_online(true);
            drop(registry);
            if let Some(old) = ended {
                self.end_session(&old);
            }
            return Ok(Attached {
                session,
                session_present,
                generation,
                kicked: kick_rx,
                released: released_tx,
            });
        }
    }

    /// Detach a connection from its session and arm the will-delay and expiry timers.
    pub fn detach(self: &Arc<Self>, session: &Arc<Session>, detach: Detach) {
        let Detach {
            generation,
            expiry_interval,
            will,
        } = detach;
        let mut publish_now = None;
        {
            let mut st = session.lock();
            if st.generation != generation {
                return; // already taken over; the new owner decides
            }
            st.attachment = None;
            st.expiry_interval = expiry_interval;
            session.set_online(false);
            if expiry_interval > 0 {
                st.save_offline();
            }
            if let Some(will) = will {
                let delay = will.will.properties.will_delay_interval.unwrap_or(0);
                if delay == 0 || expiry_interval == 0 {
                    publish_now = Some(will);
                } else {
                    st.pending_will = Some(Box::new(PendingWill { will, generation }));
                    let broker = self.clone();
                    let s = session.clone();
                    let wait = Duration::from_secs(u64::from(delay.min(expiry_interval)));
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let will = {
                            let mut st = s.lock();
                            match &st.pending_will {
                                Some(p) if p.generation == generation => st.pending_will.take(),
                                _ => None,
                            }
                        };
                        if let Some(p) = will {
                            // Cluster mode: the session's record holds the pending will
                            // (another node publishes it if this one dies first); it is
                            // rewritten without it before the will goes out, so that it
                            // is not published twice (at most 5 s; cluster/sessions.rs).
                            if let Some(written) = broker.session_changed_durably(&s) {
                                written.await;
                            }
                            broker.publish_will(p.will, Some(s.key));
                        }
                    });
                }
            }
        }
        if let Some(will) = publish_now {
            self.publish_will(will, Some(session.key));
        }
        if expiry_interval == 0 {
            self.end_session(session);
        } else {
            self.session_changed(session);
            self.arm_expiry(
                session,
                generation,
                Duration::from_secs(u64::from(expiry_interval)),
            );
        }
    }

    /// End `session` after `after` unless a connection attached meanwhile.
    fn arm_expiry(self: &Arc<Self>, session: &Arc<Session>, generation: u64, after: Duration) {
        if after >= Duration::from_secs(u64::from(u32::MAX)) {
            return; // u32::MAX: the session never expires
        }
        {
            let broker = self.clone();
            let s = session.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let expired = {
                    let st = s.lock();
                    st.generation == generation && st.attachment.is_none()
                };
                if expired {
                    tracing::debug!(target: "session", client_id = ?s.client_id, "session expired");
                    broker.end_session(&s);
                }
            });
        }
    }

    /// Remove a session for good: out of the registry and the index; a will still
    /// waiting out its delay is published now ("or the session ends", §3.1.3.2.2).
    fn end_session(&self, session: &Arc<Session>) {
        self.end_session_with(session, true);
    }

    /// [`Broker::end_session`]; `publish_will` false drops a will still waiting out its
    /// delay (the session goes on on another node, which cancels it).
    fn end_session_with(&self, session: &Arc<Session>, publish_will: bool) {
        if let Some(cluster) = self.cluster_sessions.get() {
            cluster.ended(session);
        }
        {
            let mut registry = self.sessions.lock();
            if registry
                .get(&*session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                registry.remove(&*session.client_id);
                // A table sized for a peak of clients would keep that peak's memory
                // (tens of bytes per slot) after they leave: give it back once it is
                // three quarters empty.
                if registry.capacity() > 1024 && registry.len() < registry.capacity() / 4 {
                    let keep = registry.len() * 2;
                    registry.shrink_to(keep);
                }
            }
        }
        let (subscriptions, will) = session.lock().end();
        for raw in subscriptions.keys() {
            if let Ok(parsed) = gatehouse_protocol::topic::parse_subscription_filter(raw) {
                self.router
                    .unsubscribe(parsed.filter, parsed.share_group, session.key);
            }
        }
        if let Some(p) = will.filter(|_| publish_will) {
            self.publish_will(p.will, Some(session.key));
        }
    }

    // --- Cluster mode: sessions owned by one node at a time (cluster/sessions.rs) ---

    /// A session's subscriptions or connection changed: in cluster mode its record in
    /// the sessions bucket is written again.
    pub fn session_changed(&self, session: &Arc<Session>) {
        if let Some(cluster) = self.cluster_sessions.get() {
            cluster.changed(session);
        }
    }

    /// [`Broker::session_changed`] before a SUBACK / UNSUBACK: in cluster mode, a future
    /// that resolves once the record is written (up to 5 s), which the SUBACK waits for
    /// so that an acknowledged subscription survives the loss of this node.
    pub fn session_changed_durably(
        &self,
        session: &Arc<Session>,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        self.cluster_sessions.get()?.changed_then(session)
    }

    /// Cluster mode: install the subscriptions of a session that moved here from another
    /// node in the freshly attached `session` (no retained messages are sent, as for any
    /// resumed session).
    pub fn adopt_subscriptions(
        &self,
        session: &Arc<Session>,
        subscriptions: Vec<(String, crate::session::SubscriptionRecord)>,
    ) {
        let mut st = session.lock();
        for (raw, record) in subscriptions {
            if let Ok(parsed) = gatehouse_protocol::topic::parse_subscription_filter(&raw) {
                self.router.subscribe(
                    parsed.filter,
                    parsed.share_group,
                    SubEntry {
                        session: session.clone(),
                        options: record.options,
                        id: record.id,
                    },
                );
                st.subscriptions.insert(raw, record);
            }
        }
    }

    /// Cluster mode: another node took the session over. Disconnect its client here
    /// (0x8E Session taken over, whose exit handles the will as any takeover), wait until
    /// it has let go, and drop the session from this node; a will still waiting out its
    /// delay is published unless the other node resumed the session. Nothing happens when
    /// the session was attached again here since (`generation` moved on).
    pub async fn give_up_session(
        self: &Arc<Self>,
        session: &Arc<Session>,
        generation: u64,
        resumed: bool,
    ) {
        let attachment = {
            let mut st = session.lock();
            if st.generation != generation || st.ended {
                return;
            }
            st.attachment.take()
        };
        if let Some(Attachment { kick, released }) = attachment {
            let _ = kick.send(ReasonCode::SESSION_TAKEN_OVER);
            let _ = tokio::time::timeout(TAKEOVER_WAIT, released).await;
        }
        if session.lock().generation != generation {
            return;
        }
        session.set_online(false);
        self.end_session_with(session, !resumed);
    }

    /// Publish a will message as if its client had published it, if the policy in force
    /// now still lets that client publish on its topic.
    pub fn publish_will(&self, will: WillMessage, origin: Option<u64>) {
        let WillMessage { will, authority } = will;
        if let Some(authority) = &authority {
            if !authority.allows(&will.topic) {
                tracing::info!(
                    target: "authz",
                    client_id = ?authority.client_id,
                    topic = ?will.topic,
                    "the will's topic is no longer authorized: the will is not published"
                );
                return;
            }
        }
        let props = will.properties;
        let expires_at = self
            .limits()
            .message_expires_at(props.message_expiry_interval);
        let message = Arc::new(Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: PublishProperties {
                payload_format_indicator: props.payload_format_indicator,
                content_type: props.content_type,
                response_topic: props.response_topic,
                correlation_data: props.correlation_data,
                user_properties: props.user_properties,
                ..Default::default()
            },
            expires_at,
            origin,
        });
        tracing::debug!(target: "router", topic = ?message.topic, "publishing will message");
        if message.retain {
            // Past the retained caps the will is still delivered, just not retained (the
            // refusal is counted and logged by the router).
            let _ = self.router.retain(&message);
        }
        self.router.publish(&message);
    }
}

/// The journal's tickets: a change is kept once it is on disk (however long that takes).
impl Durability for Journal {
    fn settled(&self, ticket: u64) -> Settled {
        if self.is_durable(ticket) {
            Settled::Kept
        } else {
            Settled::Pending
        }
    }

    fn wait_settled(
        &self,
        ticket: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.wait_durable(ticket))
    }
}

/// The journal keeps retained messages for the router. Implemented here, where both are
/// known, so that neither `routing` nor `session` imports the other for it.
impl RetainedSink for Journal {
    fn enabled(&self) -> bool {
        self.retains()
    }

    fn wanted(&self, message: &Message) -> bool {
        self.retain_wanted(message)
    }

    fn changed(&self, topic: &str, message: Option<&Message>) -> Option<u64> {
        self.put_retained(topic, message)
    }
}
