//! MQTT topics and filters as NATS subjects, and back.
//!
//! One MQTT topic level is one NATS token, under the prefix [`PREFIX`]: `a/b` → `gh.m.a.b`.
//! NATS reserves `.` (the token separator), `*` and `>` (wildcards when they are a whole
//! token) and whitespace (the protocol's field separator, which would split a control
//! line), and has no empty tokens; MQTT allows all of them inside a level. Those bytes, any
//! other control byte, DEL and the escape character `~` itself are written `~XX` (two
//! upper-case hex digits), and an empty level is the token `~` alone, so every topic maps
//! to a valid subject and back ([`topic_to_subject`], [`subject_to_topic`]). Bytes from
//! 0x80 up (the rest of UTF-8) pass through.
//!
//! nats-server's own MQTT support (server/mqtt.go) maps `.` to `//` and empty levels to
//! `/` runs, and refuses whitespace in topics; a whole-level `*` or `>` is passed through
//! and becomes a wildcard. The escape here loses no topic.
//!
//! Filters: `+` → `*`, `#` → `>`; since MQTT's `a/#` also matches `a` itself and NATS's
//! `a.>` does not, a filter ending in `/#` needs a second subject without it
//! ([`filter_to_subjects`]). `#` alone is `gh.m.>`, which matches every topic (a topic
//! has at least one level).

use std::fmt::Write as _;

/// The namespace of forwarded messages on NATS: `gh.m.<levels>`.
pub const PREFIX: &str = "gh.m";

/// NATS closes a connection whose control line (`HPUB <subject> ...`) exceeds its
/// `max_control_line` (4096 bytes by default). Subjects longer than this are not used:
/// such a topic is not forwarded, such a filter gets no NATS subscription.
pub const MAX_SUBJECT: usize = 3584;

/// A subject that is not one of [`topic_to_subject`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("not under the {PREFIX} prefix")]
    Prefix,
    #[error("bad escape in token `{0}`")]
    Escape(String),
    #[error("a wildcard token where a topic level is expected")]
    Wildcard,
}

/// Whether `b` must be escaped inside a token.
fn reserved(b: u8) -> bool {
    matches!(b, b'.' | b'*' | b'>' | b'~') || b <= b' ' || b == 0x7f
}

/// Append one topic level as a token.
fn push_level(level: &str, out: &mut String) {
    if level.is_empty() {
        out.push('~');
        return;
    }
    if !level.bytes().any(reserved) {
        out.push_str(level);
        return;
    }
    for c in level.chars() {
        if c.is_ascii() && reserved(c as u8) {
            let _ = write!(out, "~{:02X}", c as u8);
        } else {
            out.push(c);
        }
    }
}

/// The subject a message published on `topic` (a valid MQTT topic name) is sent on.
pub fn topic_to_subject(topic: &str) -> String {
    let mut out = String::with_capacity(PREFIX.len() + 1 + topic.len() + 8);
    out.push_str(PREFIX);
    for level in topic.split('/') {
        out.push('.');
        push_level(level, &mut out);
    }
    out
}

/// The subjects a subscription to `filter` (a valid MQTT filter, not `$share/...`) needs:
/// one, or two for a filter ending in `/#` (which matches its parent level too).
pub fn filter_to_subjects(filter: &str) -> Vec<String> {
    let mut out = String::with_capacity(PREFIX.len() + 1 + filter.len() + 8);
    out.push_str(PREFIX);
    let mut parent_len = None;
    for level in filter.split('/') {
        match level {
            "+" => out.push_str(".*"),
            "#" => {
                // `a/#` also matches `a`: keep the subject of the parent levels.
                if out.len() > PREFIX.len() {
                    parent_len = Some(out.len());
                }
                out.push_str(".>");
            }
            _ => {
                out.push('.');
                push_level(level, &mut out);
            }
        }
    }
    match parent_len {
        Some(n) => {
            let parent = out[..n].to_owned();
            vec![out, parent]
        }
        None => vec![out],
    }
}

/// The topic of a subject made by [`topic_to_subject`].
pub fn subject_to_topic(subject: &str) -> Result<String, SubjectError> {
    let rest = subject
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or(SubjectError::Prefix)?;
    let mut topic = Vec::with_capacity(rest.len());
    for (i, token) in rest.split('.').enumerate() {
        if i > 0 {
            topic.push(b'/');
        }
        match token {
            "~" => {}
            "*" | ">" => return Err(SubjectError::Wildcard),
            _ => unescape(token, &mut topic)?,
        }
    }
    String::from_utf8(topic).map_err(|_| SubjectError::Escape(rest.to_owned()))
}

fn unescape(token: &str, out: &mut Vec<u8>) -> Result<(), SubjectError> {
    let bad = || SubjectError::Escape(token.to_owned());
    let bytes = token.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'~' {
            let hex = token.get(i + 1..i + 3).ok_or_else(bad)?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
            // Only what push_level escapes, written as it writes it: one spelling each.
            if !reserved(b) || hex != format!("{b:02X}") {
                return Err(bad());
            }
            out.push(b);
            i += 3;
        } else if reserved(bytes[i]) {
            return Err(bad());
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_topics_map_level_to_token() {
        assert_eq!(topic_to_subject("a/b/c"), "gh.m.a.b.c");
        assert_eq!(
            topic_to_subject("sensors/häuser/1"),
            "gh.m.sensors.häuser.1"
        );
        assert_eq!(topic_to_subject("$SYS/x"), "gh.m.$SYS.x");
    }

    #[test]
    fn reserved_characters_and_empty_levels_are_escaped() {
        assert_eq!(topic_to_subject("a.b/c d"), "gh.m.a~2Eb.c~20d");
        assert_eq!(topic_to_subject("*/>/~"), "gh.m.~2A.~3E.~7E");
        assert_eq!(topic_to_subject("/a//b/"), "gh.m.~.a.~.b.~");
        assert_eq!(topic_to_subject("/"), "gh.m.~.~");
        assert_eq!(topic_to_subject("tab\there\r\n"), "gh.m.tab~09here~0D~0A");
        assert_eq!(topic_to_subject("del\u{7f}"), "gh.m.del~7F");
    }

    #[test]
    fn filters() {
        assert_eq!(filter_to_subjects("a/+/c"), ["gh.m.a.*.c"]);
        assert_eq!(filter_to_subjects("#"), ["gh.m.>"]);
        assert_eq!(filter_to_subjects("a/#"), ["gh.m.a.>", "gh.m.a"]);
        assert_eq!(filter_to_subjects("+/#"), ["gh.m.*.>", "gh.m.*"]);
        assert_eq!(
            filter_to_subjects("a.b/ /#"),
            ["gh.m.a~2Eb.~20.>", "gh.m.a~2Eb.~20"]
        );
        assert_eq!(filter_to_subjects("/+"), ["gh.m.~.*"]);
        // A level that merely contains a wildcard character is literal in MQTT too.
        assert_eq!(filter_to_subjects("a*/b>"), ["gh.m.a~2A.b~3E"]);
    }

    #[test]
    fn foreign_subjects_are_refused() {
        assert_eq!(subject_to_topic("other.a"), Err(SubjectError::Prefix));
        assert_eq!(subject_to_topic("gh.m.*"), Err(SubjectError::Wildcard));
        for bad in [
            "gh.m.a~",
            "gh.m.a~2",
            "gh.m.a~zz",
            "gh.m.a~41",
            "gh.m.a~2e",
            "gh.m.a>",
        ] {
            assert!(subject_to_topic(bad).is_err(), "{bad}");
        }
    }

    /// A subject is what NATS accepts: no empty token, no whitespace, no wildcard token.
    fn valid_publish_subject(s: &str) -> bool {
        s.split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">" && !t.bytes().any(|b| b <= b' '))
    }

    /// A filter's subject matches a topic's subject exactly when MQTT says the filter
    /// matches the topic (for topics not starting with `$`, which NATS cannot tell apart).
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let p: Vec<&str> = pattern.split('.').collect();
        let s: Vec<&str> = subject.split('.').collect();
        for (i, t) in p.iter().enumerate() {
            match *t {
                ">" => return s.len() > i,
                "*" if i < s.len() => {}
                _ if i < s.len() && s[i] == *t => {}
                _ => return false,
            }
        }
        p.len() == s.len()
    }

    fn mqtt_matches(filter: &str, topic: &str) -> bool {
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        for (i, l) in f.iter().enumerate() {
            match *l {
                "#" => return true,
                "+" if i < t.len() => {}
                _ if i < t.len() && t[i] == *l => {}
                _ => return false,
            }
        }
        f.len() == t.len()
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-c. *>~\t/]{1,3}".prop_map(|s| s.replace('/', "")),
            "\\PC{1,3}".prop_map(|s| s.replace(['/', '+', '#', '\0'], "")),
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        proptest::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }

    proptest! {
        #[test]
        fn reversible_and_valid(topic in topic()) {
            let subject = topic_to_subject(&topic);
            prop_assert!(valid_publish_subject(&subject), "{subject}");
            prop_assert_eq!(subject_to_topic(&subject), Ok(topic));
        }

        #[test]
        fn filters_match_as_in_mqtt(
            topic in topic(),
            pattern in proptest::collection::vec(0u8..4, 1..5),
        ) {
            // A filter built from the topic's own levels, `+` and a final `#`.
            let levels: Vec<&str> = topic.split('/').collect();
            let mut filter = Vec::new();
            for (i, k) in pattern.iter().enumerate() {
                let literal = levels.get(i).copied().unwrap_or("x");
                match k {
                    0 | 1 => filter.push(literal),
                    2 => filter.push("+"),
                    _ => { filter.push("#"); break; }
                }
            }
            let filter = filter.join("/");
            let subject = topic_to_subject(&topic);
            let nats = filter_to_subjects(&filter).iter().any(|p| nats_matches(p, &subject));
            prop_assert_eq!(nats, mqtt_matches(&filter, &topic), "{} {} {}", filter, topic, subject);
        }
    }
}
