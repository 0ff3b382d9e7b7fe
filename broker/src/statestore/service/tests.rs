use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gatehouse_protocol::{QoS, UserProperty};

use super::*;

const NOW: u64 = 1_700_000_000_000;

fn store() -> (StateStore<impl WallClock>, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(NOW));
    let reader = now.clone();
    let store = StateStore::with_clock(Quotas::keys(Some(3)), move || {
        reader.load(Ordering::Relaxed)
    });
    (store, now)
}

fn ts(ms: u64) -> String {
    format!("{ms:015}:00000:client")
}

struct Call {
    payload: &'static [u8],
    props: Vec<UserProperty>,
    client: &'static str,
}

fn call(payload: &'static [u8]) -> Call {
    Call {
        payload,
        props: vec![("__ts".into(), ts(NOW))],
        client: "c1",
    }
}

impl Call {
    fn prop(mut self, k: &str, v: &str) -> Self {
        self.props.retain(|(name, _)| name != k);
        self.props.push((k.into(), v.into()));
        self
    }

    fn by(mut self, client: &'static str) -> Self {
        self.client = client;
        self
    }

    fn run(&self, s: &StateStore<impl WallClock>) -> (Answer, Vec<(String, Message)>) {
        let mut sent = Vec::new();
        let payload = Bytes::from_static(self.payload);
        let answer = s.invoke(
            Invocation {
                client_id: self.client,
                payload: &payload,
                user_properties: &self.props,
            },
            |_| true,
            |c, m| sent.push((c.to_owned(), m)),
        );
        (answer, sent)
    }
}

fn prop<'a>(answer: &'a [UserProperty], name: &str) -> Option<&'a str> {
    answer
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn every_reply_carries_stat_200_and_protocol_version() {
    let (s, _) = store();
    for payload in [
        &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"[..],
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"hello",
        b"*2\r\n$3\r\nFOO\r\n$1\r\nk\r\n",
    ] {
        let payload = Bytes::copy_from_slice(payload);
        let a = s.invoke(
            Invocation {
                client_id: "c",
                payload: &payload,
                user_properties: &[("__ts".into(), ts(NOW))],
            },
            |_| true,
            |_, _| {},
        );
        assert_eq!(prop(&a.user_properties, "__stat"), Some("200"));
        assert_eq!(prop(&a.user_properties, "__protVer"), Some("1.0"));
    }
}

#[test]
fn set_and_get_carry_the_same_version() {
    let (s, _) = store();
    let (set, _) = call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n").run(&s);
    assert_eq!(&set.payload[..], b"+OK\r\n");
    let v1 = prop(&set.user_properties, "__ts").unwrap().to_owned();
    assert!(v1.ends_with(":Gatehouse"), "{v1}");
    let (get, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").run(&s);
    assert_eq!(&get.payload[..], b"$1\r\nv\r\n");
    assert_eq!(prop(&get.user_properties, "__ts"), Some(v1.as_str()));
    let (miss, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nx\r\n").run(&s);
    assert_eq!(&miss.payload[..], b"$-1\r\n");
    assert_eq!(prop(&miss.user_properties, "__ts"), None);
}

#[test]
fn unsupported_protocol_version_gets_505_without_payload() {
    let (s, _) = store();
    let (a, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        .prop("__protVer", "2.0")
        .run(&s);
    assert!(a.payload.is_empty());
    assert_eq!(prop(&a.user_properties, "__stat"), Some("505"));
    assert_eq!(prop(&a.user_properties, "__supProtMajVer"), Some("1"));
    assert_eq!(prop(&a.user_properties, "__requestProtVer"), Some("2.0"));
    for ok in ["1.0", "1", "1.3"] {
        let (a, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            .prop("__protVer", ok)
            .run(&s);
        assert_eq!(prop(&a.user_properties, "__stat"), Some("200"), "{ok}");
    }
}

#[test]
fn denied_key_is_not_authorized_and_changes_nothing() {
    let (s, _) = store();
    let payload = Bytes::from_static(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
    let props = vec![("__ts".to_owned(), ts(NOW))];
    let a = s.invoke(
        Invocation {
            client_id: "c",
            payload: &payload,
            user_properties: &props,
        },
        |action| matches!(action, Action::StateStore { write: false, .. }),
        |_, _| {},
    );
    assert_eq!(&a.payload[..], b"-ERR not authorized\r\n");
    assert!(s.is_empty());
}

#[test]
fn scan_returns_only_readable_keys() {
    let (s, _) = store();
    for p in [
        &b"*3\r\n$3\r\nSET\r\n$2\r\na1\r\n$1\r\nv\r\n"[..],
        b"*3\r\n$3\r\nSET\r\n$2\r\na2\r\n$1\r\nv\r\n",
    ] {
        let payload = Bytes::copy_from_slice(p);
        s.invoke(
            Invocation {
                client_id: "c",
                payload: &payload,
                user_properties: &[("__ts".into(), ts(NOW))],
            },
            |_| true,
            |_, _| {},
        );
    }
    let payload = Bytes::from_static(b"*2\r\n$4\r\nSCAN\r\n$2\r\na*\r\n");
    let a = s.invoke(
        Invocation {
            client_id: "c",
            payload: &payload,
            user_properties: &[],
        },
        |action| matches!(action, Action::StateStore { key, .. } if *key == b"a2"),
        |_, _| {},
    );
    assert_eq!(&a.payload[..], b"*1\r\n*1\r\n$2\r\na2\r\n");
}

#[test]
fn watchers_get_set_and_delete_notifications_with_versions() {
    let (s, _) = store();
    let (a, _) = call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n")
        .by("client-id1")
        .run(&s);
    assert_eq!(&a.payload[..], b"+OK\r\n");
    let (set, sent) = call(b"*3\r\n$3\r\nSET\r\n$7\r\nSOMEKEY\r\n$3\r\nabc\r\n")
        .by("other")
        .run(&s);
    assert_eq!(sent.len(), 1);
    let (to, m) = &sent[0];
    assert_eq!(to, "client-id1");
    assert_eq!(
            m.topic,
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559"
        );
    assert_eq!(
        &m.payload[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n"
    );
    assert_eq!(
        prop(&m.properties.user_properties, "__ts"),
        prop(&set.user_properties, "__ts")
    );
    let (_, sent) = call(b"*2\r\n$3\r\nDEL\r\n$7\r\nSOMEKEY\r\n").run(&s);
    assert_eq!(
        &sent[0].1.payload[..],
        b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"
    );
    s.drop_client("client-id1");
    let (_, sent) = call(b"*3\r\n$3\r\nSET\r\n$7\r\nSOMEKEY\r\n$3\r\nabc\r\n").run(&s);
    assert!(sent.is_empty());
}

#[test]
fn active_expiry_notifies_and_reports_the_next_deadline() {
    let (s, now) = store();
    call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n").run(&s);
    call(b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$4\r\n1000\r\n").run(&s);
    assert_eq!(
        s.expire_due(|_, _| panic!("nothing expired yet")),
        Some(NOW + 1000)
    );
    now.store(NOW + 1000, Ordering::Relaxed);
    let mut sent = Vec::new();
    assert_eq!(s.expire_due(|c, m| sent.push((c.to_owned(), m))), None);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        &sent[0].1.payload[..],
        b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"
    );
    assert!(s.is_empty());
}

/// A re-check keeps the registrations still readable and drops the others, which then
/// get no notification.
#[test]
fn recheck_registrations_drops_keys_no_longer_readable() {
    let (s, _) = store();
    call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$4\r\nmine\r\n").run(&s);
    call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$6\r\ntheirs\r\n").run(&s);
    let reads_mine = |action: &Action<'_>| matches!(action, Action::StateStore { write: false, key } if *key == b"mine");
    assert_eq!(s.recheck_registrations("c1", reads_mine), 1);
    assert_eq!(s.recheck_registrations("c1", reads_mine), 0);
    assert_eq!(s.recheck_registrations("other", |_| false), 0);
    let (_, sent) = call(b"*3\r\n$3\r\nSET\r\n$6\r\ntheirs\r\n$1\r\nv\r\n").run(&s);
    assert!(sent.is_empty());
    let (_, sent) = call(b"*3\r\n$3\r\nSET\r\n$4\r\nmine\r\n$1\r\nv\r\n").run(&s);
    assert_eq!(sent.len(), 1);
}

/// Byte quotas through the service: the SDK's quota error, nothing stored.
#[test]
fn oversized_value_gets_the_quota_error() {
    let s = StateStore::new(Quotas {
        value_bytes: Some(2),
        ..Quotas::default()
    });
    let (a, _) = call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nabc\r\n").run(&s);
    assert_eq!(&a.payload[..], b"-ERR the quota has been exceeded\r\n");
    assert!(s.is_empty());
    let (a, _) = call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nab\r\n").run(&s);
    assert_eq!(&a.payload[..], b"+OK\r\n");
}

#[test]
fn response_message_echoes_correlation_data() {
    let answer = Answer::reply(&Reply::Ok, Some("1:0:Gatehouse".into()));
    let m = answer.into_message("resp/t".into(), Some(Bytes::from_static(b"0123")));
    assert_eq!(m.topic, "resp/t");
    assert_eq!(m.qos, QoS::AtLeastOnce);
    assert!(!m.retain);
    assert_eq!(m.properties.correlation_data.as_deref(), Some(&b"0123"[..]));
    assert_eq!(m.properties.content_type.as_deref(), Some(CONTENT_TYPE));
}
