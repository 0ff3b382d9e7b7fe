//! No input panics the parsers: random bytes, random element lists, and every truncation
//! and single-byte corruption of valid requests.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::hlc::{Hlc, HybridClock};
use super::request::Request;
use super::stamps::{check_stamps, StampRule};

fn frame(elements: &[Vec<u8>]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_slice(format!("*{}\r\n", elements.len()).as_bytes());
    for e in elements {
        buf.put_slice(format!("${}\r\n", e.len()).as_bytes());
        buf.put_slice(e);
        buf.put_slice(b"\r\n");
    }
    buf.freeze()
}

fn word() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"SET".to_vec()),
        Just(b"get".to_vec()),
        Just(b"DEL".to_vec()),
        Just(b"VDEL".to_vec()),
        Just(b"KEYNOTIFY".to_vec()),
        Just(b"SCAN".to_vec()),
        Just(b"NX".to_vec()),
        Just(b"nex".to_vec()),
        Just(b"PX".to_vec()),
        Just(b"STOP".to_vec()),
        Just(b"10".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Request::parse(&Bytes::from(input));
    }

    #[test]
    fn framed_words_parse_and_round_trip_keys(elements in proptest::collection::vec(word(), 0..7)) {
        let payload = frame(&elements);
        if let Ok(request) = Request::parse(&payload) {
            if let Some(key) = request.key() {
                prop_assert_eq!(key.as_ref(), elements[1].as_slice());
                prop_assert!(!key.is_empty());
            }
        }
        // Every truncation and every single-byte corruption is handled without panicking.
        for cut in 0..payload.len() {
            prop_assert!(Request::parse(&payload.slice(..cut)).is_err() || cut == payload.len());
        }
        for i in 0..payload.len() {
            let mut corrupt = payload.to_vec();
            corrupt[i] ^= 0x5a;
            let _ = Request::parse(&Bytes::from(corrupt));
        }
    }

    #[test]
    fn timestamps_never_panic(raw in "[0-9:a-z+-]{0,30}", now in any::<u64>()) {
        let _ = raw.parse::<Hlc>();
        let _ = check_stamps(StampRule::Required, Some(&raw), Some(&raw), now);
    }

    #[test]
    fn timestamps_round_trip(wall in any::<u64>(), counter in any::<u64>(), node in "[^:]{1,12}") {
        let hlc = Hlc { wall_ms: wall, counter, node_id: node.into() };
        prop_assert_eq!(hlc.to_string().parse::<Hlc>(), Ok(hlc));
    }

    #[test]
    fn clock_update_never_panics_and_moves_forward(
        now in any::<u64>(),
        wall in any::<u64>(),
        counter in any::<u64>(),
    ) {
        let mut clock = HybridClock::new("S", move || now).unwrap();
        let request = Hlc { wall_ms: wall, counter, node_id: "c".into() };
        let first = clock.update(&request);
        let second = clock.now();
        prop_assert!(first >= request || counter == u64::MAX);
        prop_assert!(second >= first);
    }
}
