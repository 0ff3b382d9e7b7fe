//! Topic filters in rules: matching a PUBLISH topic, and containing a SUBSCRIBE filter.

use gatehouse_protocol::topic;

/// Whether every topic `requested` can match is also matched by `rule`
/// (behaviour.md §4: rule `a/#` contains `a/+/c`; rule `a/+` does not contain `a/#`).
pub fn contains(rule: &str, requested: &str) -> bool {
    let mut r = rule.split('/');
    let mut q = requested.split('/');
    let mut first = true;
    loop {
        match (r.next(), q.next()) {
            // `#` matches the rest, including nothing more (`a/#` matches `a`) — but a
            // wildcard in the first level never matches `$` topics (MQTT 5 §4.7.2).
            (Some("#"), Some(level)) => return !(first && level.starts_with('$')),
            (Some("#"), None) => return true,
            (None, None) => return true,
            (None, Some(_)) => return false,
            // The request ends where the rule goes on: only a final `#` covers that.
            (Some(rest), None) => return rest == "#" && r.next().is_none(),
            (Some("+"), Some(level)) => {
                if level == "#" || (first && level.starts_with('$')) {
                    return false;
                }
            }
            (Some(literal), Some(level)) => {
                if level != literal {
                    return false;
                }
            }
        }
        first = false;
    }
}

/// Whether `rule` matches the concrete `topic`.
pub fn matches(rule: &str, topic_name: &str) -> bool {
    topic::matches(rule, topic_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_examples_from_the_spec() {
        assert!(contains("a/#", "a/+/c"));
        assert!(contains("a/#", "a/#"));
        assert!(contains("a/#", "a"));
        assert!(!contains("a/+", "a/#"));
        assert!(contains("a/+", "a/b"));
        assert!(contains("a/+", "a/+"));
        assert!(!contains("a/b", "a/+"));
        assert!(contains("+/b", "x/b"));
        assert!(!contains("a/+/c", "a/b"));
        assert!(!contains("a", "a/b"));
        assert!(contains("#", "anything/at/all"));
        assert!(!contains("#", "$SYS/x"));
        assert!(!contains("+/x", "$SYS/x"));
        assert!(contains("$SYS/#", "$SYS/x"));
    }
}
