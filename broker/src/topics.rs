//! The topics the broker serves itself: the state store's (statestore.md §1.1, §1.2, §4.2).
//!
//! A leaf module so that both sides can use it without importing each other: the state
//! store (`statestore::topic` re-exports it) serves these topics, and authorization refuses
//! client publishes to the notification topics.

/// Requests are PUBLISHed here; the state store subscribes to it implicitly.
pub const REQUEST_TOPIC: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";

/// The prefix of notification topics, which clients may not use as a response topic.
pub const NOTIFY_PREFIX: &str = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8";

/// Whether a request's response topic gets its client disconnected (§1.2, §8 vector 15):
/// it equals the request topic or starts with [`NOTIFY_PREFIX`].
pub fn is_forbidden_response_topic(response_topic: &str) -> bool {
    response_topic == REQUEST_TOPIC || response_topic.starts_with(NOTIFY_PREFIX)
}

/// `clients/statestore/v1/<GUID>/{HEX(clientId)}/command/notify/{HEX(key)}`, upper-case
/// base16 of the raw bytes (the Rust client decodes with `HEXUPPER` and panics otherwise).
pub fn notify_topic(client_id: &str, key: &[u8]) -> String {
    let mut topic =
        String::with_capacity(NOTIFY_PREFIX.len() + 17 + 2 * (client_id.len() + key.len()) + 2);
    topic.push_str(NOTIFY_PREFIX);
    topic.push('/');
    push_hex(&mut topic, client_id.as_bytes());
    topic.push_str("/command/notify/");
    push_hex(&mut topic, key);
    topic
}

/// `clients/statestore/v1/<GUID>/{HEX(clientId)}/command/notify/`: where every
/// notification for `client_id`, and only those, is published.
pub fn notify_prefix_for(client_id: &str) -> String {
    let mut prefix = String::with_capacity(NOTIFY_PREFIX.len() + 17 + 2 * client_id.len());
    prefix.push_str(NOTIFY_PREFIX);
    prefix.push('/');
    push_hex(&mut prefix, client_id.as_bytes());
    prefix.push_str("/command/notify/");
    prefix
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §8 vector 12: client `client-id1`, key `SOMEKEY`.
    #[test]
    fn vector_12_notify_topic() {
        assert_eq!(
            notify_topic("client-id1", b"SOMEKEY"),
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559"
        );
        assert_eq!(notify_topic("c", b"SOMEKEY").split('/').count(), 8);
        assert!(notify_topic("c", b"\xff\x00\xab").ends_with("/FF00AB"));
        assert!(notify_topic("client-id1", b"K").starts_with(&notify_prefix_for("client-id1")));
        assert!(!notify_topic("client-id12", b"K").starts_with(&notify_prefix_for("client-id1")));
    }

    /// §8 vector 15: response topics that get the client disconnected.
    #[test]
    fn vector_15_forbidden_response_topics() {
        assert!(is_forbidden_response_topic(REQUEST_TOPIC));
        assert!(is_forbidden_response_topic(
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/x/command/notify/+"
        ));
        assert!(is_forbidden_response_topic(NOTIFY_PREFIX));
        assert!(!is_forbidden_response_topic(
            "clients/client-id1/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response"
        ));
        assert!(!is_forbidden_response_topic(
            "clients/c/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke"
        ));
    }
}
