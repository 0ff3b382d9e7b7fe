//! The key map against the spec's vectors and its own rules.

use super::*;
use std::num::NonZeroU64;

const NOW: u64 = 1_700_000_000_000;

fn hlc(s: &str) -> Hlc {
    s.parse().unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A versioned store with a monotonic version counter standing in for the server HLC.
struct Harness {
    store: Store,
    counter: u64,
    /// The requesting client of the next commands.
    client: &'static str,
}

impl Harness {
    fn new(quota: Option<usize>) -> Self {
        Harness::with_quotas(Quotas::keys(quota))
    }

    fn with_quotas(quotas: Quotas) -> Self {
        Harness {
            store: Store::new(quotas),
            counter: 0,
            client: "c1",
        }
    }

    fn run_ft(&mut self, req: Request, ft: Option<&str>, now_ms: u64) -> Outcome {
        let stamps = Stamps {
            timestamp: None,
            fencing_token: ft.map(hlc),
        };
        let ctx = Context {
            client: self.client,
            stamps: &stamps,
            now_ms,
            persist: false,
        };
        let counter = &mut self.counter;
        self.store.execute(&req, ctx, |_| {
            *counter += 1;
            Hlc {
                wall_ms: now_ms,
                counter: *counter,
                node_id: "S".into(),
            }
        })
    }

    fn run(&mut self, req: Request) -> Outcome {
        self.run_ft(req, None, NOW)
    }

    fn run_as(&mut self, client: &'static str, req: Request) -> Outcome {
        self.client = client;
        let outcome = self.run(req);
        self.client = "c1";
        outcome
    }
}

fn set(key: &str, value: &str, condition: SetCondition, px: u64) -> Request {
    Request::Set {
        key: b(key),
        value: b(value),
        condition,
        expiry_ms: NonZeroU64::new(px),
    }
}

fn get(key: &str) -> Request {
    Request::Get { key: b(key) }
}

fn del(key: &str) -> Request {
    Request::Del { key: b(key) }
}

fn vdel(key: &str, value: &str) -> Request {
    Request::VDel {
        key: b(key),
        value: b(value),
    }
}

fn wire(reply: &Reply) -> Vec<u8> {
    reply.to_bytes().to_vec()
}

/// §8 vector 1: SET → `+OK` with V1, GET → the value with V1.
#[test]
fn vector_01_set_then_get() {
    let mut h = Harness::new(None);
    let set = h.run(set("k", "v", SetCondition::Always, 0));
    assert_eq!(wire(&set.reply), b"+OK\r\n");
    let v1 = set.version.clone().unwrap();
    assert_eq!(
        set.changes,
        vec![Change {
            key: b("k"),
            version: v1.clone(),
            kind: ChangeKind::Set(b("v"))
        }]
    );
    let got = h.run(get("k"));
    assert_eq!(wire(&got.reply), b"$1\r\nv\r\n");
    assert_eq!(got.version, Some(v1));
    assert!(got.changes.is_empty());
}

/// §8 vector 4: NX on an existing key → `:-1` with the stored version; absent → `+OK`.
#[test]
fn vector_04_set_nx() {
    let mut h = Harness::new(None);
    let first = h.run(set("k", "v", SetCondition::NotExists, 0));
    assert_eq!(first.reply, Reply::Ok);
    let again = h.run(set("k", "w", SetCondition::NotExists, 0));
    assert_eq!(wire(&again.reply), b":-1\r\n");
    assert_eq!(again.version, first.version);
    assert!(again.changes.is_empty());
    assert_eq!(wire(&h.run(get("k")).reply), b"$1\r\nv\r\n");
}

/// §8 vector 5: NEX with another value → `:-1`; with the same value and PX → `+OK`,
/// a higher version and the new expiry.
#[test]
fn vector_05_set_nex_renewal() {
    let mut h = Harness::new(None);
    let v1 = h.run(set("k", "v1", SetCondition::Always, 0)).version;
    let other = h.run(set("k", "v2", SetCondition::NotExistsOrEqual, 0));
    assert_eq!(other.reply, Reply::NOT_APPLIED);
    assert_eq!(other.version, v1);
    let renew = h.run(set("k", "v1", SetCondition::NotExistsOrEqual, 1000));
    assert_eq!(renew.reply, Reply::Ok);
    assert!(renew.version > v1);
    assert_eq!(h.store.next_expiry(), Some(NOW + 1000));
    // NEX on an absent key sets it.
    let fresh = h.run(set("n", "x", SetCondition::NotExistsOrEqual, 0));
    assert_eq!(fresh.reply, Reply::Ok);
}

/// §8 vector 6: VDEL wrong → `:-1`, right → `:1`, again → `:0`.
#[test]
fn vector_06_vdel() {
    let mut h = Harness::new(None);
    let v1 = h.run(set("k", "v1", SetCondition::Always, 0)).version;
    let wrong = h.run(vdel("k", "wrong"));
    assert_eq!(wire(&wrong.reply), b":-1\r\n");
    assert_eq!(wrong.version, v1);
    let right = h.run(vdel("k", "v1"));
    assert_eq!(wire(&right.reply), b":1\r\n");
    assert!(right.version > v1);
    assert_eq!(right.changes.len(), 1);
    assert_eq!(right.changes[0].kind, ChangeKind::Delete);
    let again = h.run(vdel("k", "v1"));
    assert_eq!(wire(&again.reply), b":0\r\n");
    assert!(again.changes.is_empty());
}

/// §8 vector 7: DEL missing → `:0`; GET missing → `$-1` without `__ts`.
#[test]
fn vector_07_missing_key() {
    let mut h = Harness::new(None);
    assert_eq!(wire(&h.run(del("missing")).reply), b":0\r\n");
    let got = h.run(get("missing"));
    assert_eq!(wire(&got.reply), b"$-1\r\n");
    assert_eq!(got.version, None);
    // After a DEL the key is a miss again.
    h.run(set("k", "v", SetCondition::Always, 0));
    assert_eq!(wire(&h.run(del("k")).reply), b":1\r\n");
    assert_eq!(h.run(get("k")).version, None);
}

/// §8 vector 8: fencing.
#[test]
fn vector_08_fencing() {
    let f = "1700000000000:5:lock";
    let lower = "1700000000000:4:lock";
    let higher = "1700000000001:0:lock";
    let mut h = Harness::new(None);
    let ok = h.run_ft(set("k", "v", SetCondition::Always, 0), Some(f), NOW);
    assert_eq!(ok.reply, Reply::Ok);
    let missing = h.run(set("k", "v", SetCondition::Always, 0));
    assert_eq!(
        wire(&missing.reply),
        b"-ERR a fencing token is required for this request\r\n"
    );
    assert!(missing.changes.is_empty());
    let low = h.run_ft(set("k", "v", SetCondition::Always, 0), Some(lower), NOW);
    assert_eq!(
        wire(&low.reply),
        &b"-ERR the request fencing token is a lower version than the fencing token protecting the resource\r\n"[..]
    );
    assert_eq!(
        h.run(del("k")).reply,
        Reply::Error(ErrorReply::FencingTokenRequired)
    );
    assert_eq!(
        h.run_ft(vdel("k", "v"), None, NOW).reply,
        Reply::Error(ErrorReply::FencingTokenRequired)
    );
    // GET needs no token.
    assert_eq!(wire(&h.run(get("k")).reply), b"$1\r\nv\r\n");
    // Fencing is checked before the NX condition.
    assert_eq!(
        h.run(set("k", "v", SetCondition::NotExists, 0)).reply,
        Reply::Error(ErrorReply::FencingTokenRequired)
    );
    // An equal token is accepted, a higher one replaces the stored one.
    assert_eq!(
        h.run_ft(set("k", "v2", SetCondition::Always, 0), Some(f), NOW)
            .reply,
        Reply::Ok
    );
    assert_eq!(
        h.run_ft(set("k", "v3", SetCondition::Always, 0), Some(higher), NOW)
            .reply,
        Reply::Ok
    );
    assert_eq!(
        h.store.get(b"k", NOW).unwrap().fencing_token,
        Some(hlc(higher))
    );
    assert_eq!(
        h.run_ft(del("k"), Some(f), NOW).reply,
        Reply::Error(ErrorReply::FencingTokenLowerVersion)
    );
    assert_eq!(h.run_ft(del("k"), Some(higher), NOW).reply, Reply::DELETED);
    // The token went with the key: a new SET starts unfenced.
    assert_eq!(
        h.run(set("k", "v", SetCondition::Always, 0)).reply,
        Reply::Ok
    );
    assert_eq!(h.run(del("k")).reply, Reply::DELETED);
    // DEL on an absent key with any token is `:0`.
    assert_eq!(h.run_ft(del("k"), Some(lower), NOW).reply, Reply::ABSENT);
}

/// §8 vector 13: `SET k v PX 1000` while watching k → SET change, then a DELETE change
/// from active expiry at +1000 ms; lazily, the key is absent at +1000 ms too.
#[test]
fn vector_13_expiry_notifies_delete() {
    let mut h = Harness::new(None);
    h.run(Request::KeyNotify {
        key: b("k"),
        stop: false,
    });
    let set = h.run(set("k", "v", SetCondition::Always, 1000));
    assert_eq!(set.changes[0].kind, ChangeKind::Set(b("v")));
    assert_eq!(h.store.watchers(b"k").collect::<Vec<_>>(), ["c1"]);
    assert_eq!(h.store.next_expiry(), Some(NOW + 1000));
    let mut n = 100;
    let mut version = || {
        n += 1;
        hlc(&format!("{}:{n}:S", NOW + 1000))
    };
    assert!(h.store.expire(NOW + 999, &mut version).is_empty());
    assert_eq!(
        wire(&h.run_ft(get("k"), None, NOW + 999).reply),
        b"$1\r\nv\r\n"
    );
    let expired = h.store.expire(NOW + 1000, &mut version);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].key, b("k"));
    assert_eq!(expired[0].kind, ChangeKind::Delete);
    assert!(expired[0].version > set.version.unwrap());
    assert_eq!(
        expired[0].notification().to_bytes(),
        &b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"[..]
    );
    assert_eq!(h.store.next_expiry(), None);
    assert!(h.store.is_empty());
}

/// Lazy expiry: an expired key is absent to every command, and its removal is reported
/// once as a DELETE change before the command's own changes.
#[test]
fn lazy_expiry_is_absent_and_reported_once() {
    let mut h = Harness::new(None);
    h.run(set("k", "v", SetCondition::Always, 10));
    let later = NOW + 10;
    let got = h.run_ft(get("k"), None, later);
    assert_eq!(got.reply, Reply::Null);
    assert_eq!(got.changes.len(), 1);
    assert_eq!(got.changes[0].kind, ChangeKind::Delete);
    assert!(h.run_ft(get("k"), None, later).changes.is_empty());
    assert!(h.store.expire(later, || hlc("1:0:S")).is_empty());
    // NX on an expired key succeeds; DEL on one is `:0`.
    h.run(set("e", "v", SetCondition::Always, 10));
    let nx = h.run_ft(set("e", "w", SetCondition::NotExists, 0), None, later);
    assert_eq!(nx.reply, Reply::Ok);
    assert_eq!(nx.changes.len(), 2);
    h.run(set("d", "v", SetCondition::Always, 10));
    assert_eq!(h.run_ft(del("d"), None, later).reply, Reply::ABSENT);
    // A plain SET removes the expiry (Redis semantics).
    h.run(set("p", "v", SetCondition::Always, 10));
    h.run(set("p", "v", SetCondition::Always, 0));
    assert_eq!(h.run_ft(get("p"), None, later).reply, Reply::Bulk(b("v")));
    assert_eq!(h.store.next_expiry(), None);
}

#[test]
fn quota_counts_keys_and_only_blocks_new_ones() {
    let mut h = Harness::new(Some(2));
    h.run(set("a", "1", SetCondition::Always, 0));
    h.run(set("b", "1", SetCondition::Always, 5));
    let full = h.run(set("c", "1", SetCondition::Always, 0));
    assert_eq!(wire(&full.reply), b"-ERR the quota has been exceeded\r\n");
    assert!(full.changes.is_empty());
    // Overwriting an existing key is fine.
    assert_eq!(
        h.run(set("a", "2", SetCondition::Always, 0)).reply,
        Reply::Ok
    );
    // A deleted or expired key frees its slot.
    h.run(del("a"));
    assert_eq!(
        h.run(set("c", "1", SetCondition::Always, 0)).reply,
        Reply::Ok
    );
    h.store.expire(NOW + 5, || hlc("1:0:S"));
    assert_eq!(
        h.run(set("d", "1", SetCondition::Always, 0)).reply,
        Reply::Ok
    );
    assert_eq!(h.store.len(), 2);
}

/// Value size, total bytes and per-client bytes (issue 13): refused with the quota
/// error, nothing stored, nothing notified; another client is unaffected by one
/// client's quota; the last writer owns a key; DEL and expiry free the owner's bytes.
#[test]
fn byte_quotas() {
    let mut h = Harness::with_quotas(Quotas {
        keys: None,
        value_bytes: Some(10),
        total_bytes: Some(40),
        client_bytes: Some(20),
        key_notify_per_client: None,
    });
    let quota = |o: &Outcome| {
        assert_eq!(wire(&o.reply), b"-ERR the quota has been exceeded\r\n");
        assert!(o.changes.is_empty());
        o.quota_hit
    };
    // Value size: 10 bytes pass, 11 do not.
    let big = h.run(set("k", "01234567890", SetCondition::Always, 0));
    assert_eq!(quota(&big), Some(QuotaHit::ValueBytes));
    assert!(h.store.is_empty());
    assert_eq!(
        h.run(set("a", "0123456789", SetCondition::Always, 0)).reply,
        Reply::Ok
    );
    assert_eq!(h.store.client_bytes("c1"), 11);
    // Per client: c1 holds 11, 10 more would be 21 > 20.
    let over = h.run(set("b", "012345678", SetCondition::Always, 0));
    assert_eq!(quota(&over), Some(QuotaHit::ClientBytes));
    assert_eq!(
        h.run(set("b", "01234567", SetCondition::Always, 0)).reply,
        Reply::Ok
    );
    assert_eq!(h.store.client_bytes("c1"), 20);
    // Overwriting its own key with a value of the same size is fine at the limit.
    assert_eq!(
        h.run(set("b", "abcdefgh", SetCondition::Always, 0)).reply,
        Reply::Ok
    );
    // Another client is not affected by c1's quota.
    assert_eq!(
        h.run_as("c2", set("c", "0123456789", SetCondition::Always, 0))
            .reply,
        Reply::Ok
    );
    assert_eq!(h.store.client_bytes("c2"), 11);
    assert_eq!(h.store.total_bytes(), 31);
    // Total: 31 + 10 > 40, whoever asks.
    let full = h.run_as("c3", set("d", "012345678", SetCondition::Always, 0));
    assert_eq!(quota(&full), Some(QuotaHit::TotalBytes));
    assert_eq!(h.store.client_bytes("c3"), 0);
    // The last writer owns: c2 overwrites c1's `a`, its 11 bytes move to c2.
    assert_eq!(
        h.run_as("c2", set("a", "x", SetCondition::Always, 0)).reply,
        Reply::Ok
    );
    assert_eq!(h.store.client_bytes("c1"), 9);
    assert_eq!(h.store.client_bytes("c2"), 13);
    // DEL by anyone frees the owner's bytes; so does expiry.
    h.run_as("c2", del("b"));
    assert_eq!(h.store.client_bytes("c1"), 0);
    assert_eq!(
        h.run(set("e", "v", SetCondition::Always, 5)).reply,
        Reply::Ok
    );
    assert_eq!(h.store.client_bytes("c1"), 2);
    h.store.expire(NOW + 5, || hlc("1:0:S"));
    assert_eq!(h.store.client_bytes("c1"), 0);
    assert_eq!(h.store.total_bytes(), 13);
    assert!(
        !h.store.client_bytes.contains_key("c1"),
        "no entry for zero"
    );
}

/// A lowered bound keeps what is stored; growth is refused, shrinking is not.
#[test]
fn lowered_byte_quota_allows_shrinking() {
    let mut h = Harness::with_quotas(Quotas::default());
    h.run(set("k", "0123456789", SetCondition::Always, 0));
    h.store.set_quotas(Quotas {
        total_bytes: Some(5),
        client_bytes: Some(5),
        ..Quotas::default()
    });
    assert_eq!(
        h.run(set("k", "0123", SetCondition::Always, 0)).reply,
        Reply::Ok
    );
    assert_eq!(
        h.run(set("k", "01234", SetCondition::Always, 0)).quota_hit,
        Some(QuotaHit::TotalBytes)
    );
    assert_eq!(h.store.len(), 1);
}

/// Restored entries count towards the total and their recorded owner.
#[test]
fn restored_entries_are_counted() {
    let entry = |value: &'static str, owner: Option<&str>| Entry {
        value: b(value),
        version: hlc("1:0:S"),
        fencing_token: None,
        expires_at_ms: None,
        persist: true,
        owner: owner.map(Arc::from),
    };
    let quotas = Quotas {
        client_bytes: Some(10),
        total_bytes: Some(100),
        ..Quotas::default()
    };
    let mut h = Harness::with_quotas(quotas);
    h.store = Store::with_entries(
        quotas,
        [
            (b("a"), entry("12345678", Some("c1"))),
            (b("b"), entry("xyz", None)),
        ],
    );
    assert_eq!(h.store.total_bytes(), 13);
    assert_eq!(h.store.client_bytes("c1"), 9);
    assert_eq!(
        h.run(set("c", "v", SetCondition::Always, 0)).quota_hit,
        Some(QuotaHit::ClientBytes)
    );
}

/// Re-checking a client's registrations drops those `keep` refuses, and only those.
#[test]
fn retain_registrations_drops_what_is_no_longer_allowed() {
    let mut h = Harness::new(None);
    for key in ["mine/1", "mine/2", "theirs/1"] {
        h.store.register("c1", b(key));
    }
    h.store.register("c2", b("theirs/1"));
    let mut dropped = h
        .store
        .retain_registrations("c1", |k| k.starts_with(b"mine/"));
    dropped.sort();
    assert_eq!(dropped, [b("theirs/1")]);
    assert_eq!(h.store.watchers(b"theirs/1").collect::<Vec<_>>(), ["c2"]);
    assert_eq!(h.store.watchers(b"mine/1").collect::<Vec<_>>(), ["c1"]);
    assert!(h.store.retain_registrations("c1", |_| true).is_empty());
    assert!(h.store.retain_registrations("nobody", |_| false).is_empty());
    assert_eq!(h.store.retain_registrations("c1", |_| false).len(), 2);
    assert!(!h.store.watched.contains_key("c1"));
}

/// `stateStoreMaxKeyNotifyPerClient`: past it a new registration gets the quota
/// error; the same key again, other clients and registrations after a STOP still work.
#[test]
fn keynotify_registrations_per_client_are_bounded() {
    let mut h = Harness::with_quotas(Quotas {
        key_notify_per_client: Some(2),
        ..Quotas::default()
    });
    let notify = |key: &str, stop| Request::KeyNotify { key: b(key), stop };
    assert_eq!(h.run(notify("a", false)).reply, Reply::Ok);
    assert_eq!(h.run(notify("b", false)).reply, Reply::Ok);
    assert_eq!(h.run(notify("b", false)).reply, Reply::Ok); // not counted twice
    let refused = h.run(notify("c", false));
    assert_eq!(
        wire(&refused.reply),
        b"-ERR the quota has been exceeded\r\n"
    );
    assert_eq!(refused.quota_hit, Some(QuotaHit::KeyNotify));
    assert_eq!(h.store.registrations("c1").count(), 2);
    assert_eq!(h.run(notify("a", true)).reply, Reply::Ok);
    assert_eq!(h.run(notify("c", false)).reply, Reply::Ok);
}

/// §8 vectors 12 and 14 at this level: registration replies and who is addressed.
#[test]
fn keynotify_registrations() {
    let mut h = Harness::new(None);
    let notify = |stop| Request::KeyNotify {
        key: b("SOMEKEY"),
        stop,
    };
    assert_eq!(h.run(notify(false)).reply, Reply::Ok);
    assert_eq!(h.run(notify(false)).reply, Reply::Ok); // idempotent
    assert!(h.store.register("c2", b("SOMEKEY")));
    assert!(h.store.register("c2", b("OTHER")));
    assert_eq!(
        h.store.watchers(b"SOMEKEY").collect::<Vec<_>>(),
        ["c1", "c2"]
    );
    assert_eq!(h.run(notify(true)).reply, Reply::Ok);
    assert_eq!(wire(&h.run(notify(true)).reply), b":0\r\n");
    assert_eq!(h.store.watchers(b"SOMEKEY").collect::<Vec<_>>(), ["c2"]);
    h.store.drop_client("c2");
    assert_eq!(h.store.watchers(b"SOMEKEY").count(), 0);
    assert_eq!(h.store.watchers(b"OTHER").count(), 0);
    assert!(!h.store.unregister("c2", b"OTHER"));
    assert!(h.store.watchers.is_empty() && h.store.watched.is_empty());
}

fn page(reply: Reply) -> (Vec<String>, Option<Bytes>) {
    let Reply::ScanPage { keys, token } = reply else {
        panic!("not a page: {reply:?}");
    };
    let keys = keys
        .iter()
        .map(|k| String::from_utf8(k.to_vec()).unwrap())
        .collect();
    (keys, token)
}

#[test]
fn scan_matches_whole_utf8_keys() {
    let mut h = Harness::new(None);
    for key in ["a/1", "a/2", "a/x/3", "b/1", "A/1"] {
        h.run(set(key, "v", SetCondition::Always, 0));
    }
    h.run(Request::Set {
        key: Bytes::from_static(b"a/\xff"),
        value: b("v"),
        condition: SetCondition::Always,
        expiry_ms: None,
    });
    h.run(set("a/gone", "v", SetCondition::Always, 1));
    let scan = |store: &Store, p: &str| page(store.scan(p.as_bytes(), None, NOW + 1, |_| true));
    assert_eq!(scan(&h.store, "a/*").0, ["a/1", "a/2", "a/x/3"]);
    assert_eq!(scan(&h.store, "a/?").0, ["a/1", "a/2"]);
    assert_eq!(scan(&h.store, "[!a]/1").0, ["A/1", "b/1"]);
    // Issue 18: `^` is a member of the class, not a negation (AIO SDK semantics).
    assert_eq!(scan(&h.store, "[^a]/1").0, ["a/1"]);
    assert_eq!(scan(&h.store, "a/[^0-9]").0, ["a/1", "a/2"]);
    assert_eq!(scan(&h.store, "a").0, Vec::<String>::new());
    // The authorization hook hides keys.
    let (keys, _) = page(h.store.scan(b"*", None, NOW + 1, |k| !k.starts_with(b"a/")));
    assert_eq!(keys, ["A/1", "b/1"]);
    assert_eq!(
        h.store.scan(b"[", None, NOW, |_| true),
        Reply::Error(ErrorReply::Syntax)
    );
    assert_eq!(
        h.store.scan(b"\xff", None, NOW, |_| true),
        Reply::Error(ErrorReply::Syntax)
    );
    // Through execute, SCAN sees every key.
    let all = h.run_ft(
        Request::Scan {
            pattern: b("*/1"),
            token: None,
        },
        None,
        NOW + 1,
    );
    assert_eq!(page(all.reply).0, ["A/1", "a/1", "b/1"]);
}

/// A pattern that is costly against long keys ends pages early (before the key that
/// would cross [`SCAN_MATCH_BUDGET`]) and still returns every match across pages; one
/// key that alone exceeds the budget is refused, not matched for ever.
#[test]
fn scan_matching_work_is_bounded_per_request() {
    let mut h = Harness::new(None);
    // Each match of `*` + 100 `a` + `?b` against 4000 `a`s retries the `*` at each of the
    // 4000 characters, comparing up to 100 `a`s each time: about 400 000 steps.
    let long = "a".repeat(4000);
    for i in 0..40 {
        h.run(set(&format!("{i:02}{long}"), "v", SetCondition::Always, 0));
        h.run(set(&format!("{i:02}{long}b"), "v", SetCondition::Always, 0));
    }
    let pattern = format!("*{}?b", "a".repeat(100));
    let mut token = None;
    let mut found = 0;
    let mut pages = 0;
    loop {
        let reply = h
            .store
            .scan(pattern.as_bytes(), token.as_deref(), NOW, |_| true);
        let (keys, next) = page(reply);
        pages += 1;
        assert!(keys.iter().all(|k| k.ends_with('b')));
        found += keys.len();
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(found, 40);
    assert!(pages > 1, "the budget split the scan into pages");
    // One key whose match alone needs more than a whole budget.
    let mut h = Harness::new(None);
    h.run(set(&"a".repeat(60_000), "v", SetCondition::Always, 0));
    let pattern = format!("*{}b", "a".repeat(100));
    assert_eq!(
        h.store.scan(pattern.as_bytes(), None, NOW, |_| true),
        Reply::Error(ErrorReply::PatternTooComplex)
    );
}

#[test]
fn scan_pages_with_continuation_tokens() {
    let mut h = Harness::new(None);
    let total = SCAN_PAGE_SIZE * 2 + 7;
    for i in 0..total {
        h.run(set(&format!("k{i:04}"), "v", SetCondition::Always, 0));
    }
    h.run(set("z", "v", SetCondition::Always, 0));
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let (keys, next) = page(h.store.scan(b"k*", token.as_deref(), NOW, |_| true));
        pages += 1;
        assert!(keys.len() <= SCAN_PAGE_SIZE);
        seen.extend(keys);
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..total).map(|i| format!("k{i:04}")).collect();
    assert_eq!(seen, expected);
    // A sparse match over many keys yields bounded, possibly empty, pages.
    for i in total..SCAN_BUDGET {
        h.run(set(&format!("k{i:04}"), "v", SetCondition::Always, 0));
    }
    let (keys, token) = page(h.store.scan(b"z", None, NOW, |_| true));
    assert!(keys.is_empty() && token.is_some());
    let (keys, token) = page(h.store.scan(b"z", token.as_deref(), NOW, |_| true));
    assert_eq!((keys, token), (vec!["z".to_string()], None));
}
