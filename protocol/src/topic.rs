//! Topic names, topic filters and shared subscriptions (MQTT 5 §4.7, §4.8.2).

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    #[error("topic contains U+0000")]
    NullCharacter,
    #[error("topic name contains a wildcard")]
    WildcardInName,
    #[error("'#' must be the last level and stand alone")]
    InvalidMultiLevelWildcard,
    #[error("'+' must stand alone in its level")]
    InvalidSingleLevelWildcard,
    #[error("shared subscription must be $share/<group>/<filter>")]
    InvalidShare,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > u16::MAX as usize {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// A topic name a client may publish to: non-empty, no wildcards.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    check_common(name)?;
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// A plain (non-shared) topic filter.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::InvalidMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::InvalidSingleLevelWildcard);
        }
    }
    Ok(())
}

pub fn has_wildcard(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// A subscription filter split into its share group (if any) and the filter proper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedFilter<'a> {
    pub share_group: Option<&'a str>,
    pub filter: &'a str,
}

/// Parse and validate a SUBSCRIBE/UNSUBSCRIBE filter, including `$share/<group>/<filter>`.
pub fn parse_subscription_filter(raw: &str) -> Result<ParsedFilter<'_>, TopicError> {
    if let Some(rest) = raw.strip_prefix("$share/") {
        let (group, filter) = rest.split_once('/').ok_or(TopicError::InvalidShare)?;
        if group.is_empty() || group.contains(['+', '#']) {
            return Err(TopicError::InvalidShare);
        }
        validate_topic_filter(filter)?;
        return Ok(ParsedFilter {
            share_group: Some(group),
            filter,
        });
    }
    if raw == "$share" {
        return Err(TopicError::InvalidShare);
    }
    validate_topic_filter(raw)?;
    Ok(ParsedFilter {
        share_group: None,
        filter: raw,
    })
}

/// Does `filter` (valid, non-shared) match `topic` (valid name)?
///
/// Topics starting with `$` are not matched by a leading `+` or `#` (MQTT 5 §4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_level_wildcard_matches_parent_level() {
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/#", "sport/tennis/player1"));
        assert!(matches("#", "a/b"));
        assert!(!matches("sport/#", "sports"));
    }

    #[test]
    fn single_level_wildcard_matches_one_level_including_empty() {
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(!matches("sport/+", "sport/tennis/x"));
        assert!(!matches("sport/+", "sport"));
    }

    #[test]
    fn dollar_topics_not_matched_by_leading_wildcards() {
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("$SYS/+", "$SYS/x"));
    }

    #[test]
    fn rejects_malformed_filters() {
        assert_eq!(
            validate_topic_filter("a/#/b"),
            Err(TopicError::InvalidMultiLevelWildcard)
        );
        assert_eq!(
            validate_topic_filter("a#"),
            Err(TopicError::InvalidMultiLevelWildcard)
        );
        assert_eq!(
            validate_topic_filter("a/b+"),
            Err(TopicError::InvalidSingleLevelWildcard)
        );
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        assert!(validate_topic_filter("+/+/#").is_ok());
        assert!(validate_topic_filter("/").is_ok());
    }

    #[test]
    fn rejects_wildcard_in_publish_topic() {
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
    }

    #[test]
    fn parses_shared_subscriptions() {
        let p = parse_subscription_filter("$share/g1/a/+").unwrap();
        assert_eq!(p.share_group, Some("g1"));
        assert_eq!(p.filter, "a/+");
        assert_eq!(
            parse_subscription_filter("$share/g1"),
            Err(TopicError::InvalidShare)
        );
        assert_eq!(
            parse_subscription_filter("$share//a"),
            Err(TopicError::InvalidShare)
        );
        assert_eq!(
            parse_subscription_filter("$share/g+/a"),
            Err(TopicError::InvalidShare)
        );
        assert_eq!(
            parse_subscription_filter("$share/g/"),
            Err(TopicError::Empty)
        );
        assert_eq!(
            parse_subscription_filter("$share"),
            Err(TopicError::InvalidShare)
        );
        assert_eq!(parse_subscription_filter("a/b").unwrap().share_group, None);
    }
}
