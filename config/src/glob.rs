//! Glob patterns: the one dialect of every glob Gatehouse reads, whether from a client
//! (state store `SCAN`) or from the configuration (authorization `clientIds` and `Pattern`
//! keys, persistence `Pattern` keys and subscriber client ids).
//!
//! # Syntax
//! The Rust `glob` crate's, which the AIO state store documents for SCAN and which the AIO
//! SDK's network tests check (statestore.md §7, §10):
//! - `*` matches any text, including none and including `/` (keys and client ids have no
//!   levels);
//! - `?` matches exactly one character (a Unicode scalar value, not a byte);
//! - `[...]` matches one character of the set; `a-z` is a range; a `]` right after `[` (or
//!   `[!`) is a member, and so is a `-` first or last;
//! - `[!...]` matches one character *not* in the set. **`^` is not a negation**: `[^0-9]` is a
//!   digit or a `^` (Redis and `globset` negate with `^`; the AIO SDK expects the literal);
//! - outside a class `\` makes the next character literal (`\*`, `\[`, `\\`); inside a class
//!   `\` is an ordinary member, so `[\]` is a backslash and `[*]` a star;
//! - everything else, `{`, `}` and `^` included, matches itself; matching is case-sensitive
//!   and against the whole text.
//!
//! An unclosed `[`, a reversed range (`[z-a]`) and a trailing lone `\` are errors.
//!
//! # Cost
//! [`Glob::matches_within`] is the classic single-backtrack matcher: consecutive `*` are
//! merged and only the last `*` is ever retried, so a match costs at most about
//! (characters + 1) × (pattern items + 1) steps (never exponential, whatever the pattern).
//! Text supplied by a client (SCAN) is matched under a step budget.

use std::fmt;

/// One item of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A literal character.
    Char(char),
    /// `?`
    Any,
    /// `*` (consecutive stars are merged into one).
    Star,
    /// `[...]` / `[!...]`: inclusive ranges (a single member is a range of one).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Item {
    /// Whether this one-character item accepts `c` (never called on [`Item::Star`]).
    fn accepts(&self, c: char) -> bool {
        match self {
            Item::Char(x) => *x == c,
            Item::Any => true,
            Item::Star => false,
            Item::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// Why a pattern is not a glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("unclosed character class: the `[` at character {0} has no closing `]`")]
    UnclosedClass(usize),
    #[error("the range `{0}-{1}` is reversed")]
    ReversedRange(char, char),
    #[error("the pattern ends with a lone `\\` (write `\\\\` for a backslash)")]
    TrailingEscape,
}

/// The step budget of a match ran out before the answer was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the glob match needs more work than its budget")]
pub struct Exhausted;

/// A compiled glob pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    items: Vec<Item>,
    /// The pattern as written (for `Debug` and messages).
    text: String,
    /// Characters any match needs (every item but `*` takes one).
    min_chars: usize,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.text).finish()
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Glob {
    /// Compile `pattern` (see the module documentation for the syntax).
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let mut items = Vec::new();
        let mut chars = pattern.chars().enumerate().peekable();
        while let Some((at, c)) = chars.next() {
            let item = match c {
                '*' => {
                    if items.last() == Some(&Item::Star) {
                        continue;
                    }
                    Item::Star
                }
                '?' => Item::Any,
                '\\' => match chars.next() {
                    Some((_, escaped)) => Item::Char(escaped),
                    None => return Err(GlobError::TrailingEscape),
                },
                '[' => {
                    let negated = chars.next_if(|&(_, c)| c == '!').is_some();
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some((_, lo)) = chars.next() else {
                            return Err(GlobError::UnclosedClass(at));
                        };
                        if lo == ']' && !first {
                            break;
                        }
                        first = false;
                        // `lo-hi`, unless the `-` is the last member (`[a-]`).
                        let range_to = {
                            let mut ahead = chars.clone();
                            match (ahead.next(), ahead.next()) {
                                (Some((_, '-')), Some((_, hi))) if hi != ']' => Some(hi),
                                _ => None,
                            }
                        };
                        match range_to {
                            Some(hi) => {
                                chars.next();
                                chars.next();
                                if hi < lo {
                                    return Err(GlobError::ReversedRange(lo, hi));
                                }
                                ranges.push((lo, hi));
                            }
                            None => ranges.push((lo, lo)),
                        }
                    }
                    Item::Class { negated, ranges }
                }
                c => Item::Char(c),
            };
            items.push(item);
        }
        let min_chars = items.iter().filter(|i| **i != Item::Star).count();
        Ok(Glob {
            items,
            text: pattern.to_owned(),
            min_chars,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `text` matches. Unbudgeted: for patterns from the
    /// configuration, whose size the operator chose (the cost is still at most
    /// characters × pattern items).
    pub fn is_match(&self, text: &str) -> bool {
        let mut budget = u64::MAX;
        self.matches_within(text, &mut budget).unwrap_or(false)
    }

    /// Whether the whole of `text` matches, spending at most `budget` steps (one step per
    /// pattern item tried). What the match spent is taken off `budget`; on [`Exhausted`] the
    /// budget is 0 and the answer unknown.
    pub fn matches_within(&self, text: &str, budget: &mut u64) -> Result<bool, Exhausted> {
        // Cheap rejection: too short (a char is at most 4 bytes, at least 1).
        if self.min_chars > text.len() {
            return Ok(false);
        }
        let items = &self.items;
        let (mut p, mut t) = (0usize, 0usize); // item index, byte offset in `text`
                                               // After a `*`: the item after it, and where in `text` that `*`'s match ends now.
        let mut retry: Option<(usize, usize)> = None;
        loop {
            if *budget == 0 {
                return Err(Exhausted);
            }
            *budget -= 1;
            let next = text[t..].chars().next();
            match (items.get(p), next) {
                (Some(Item::Star), _) => {
                    retry = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                (Some(item), Some(c)) if item.accepts(c) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                (None, None) => return Ok(true),
                _ => {}
            }
            // Mismatch: let the last `*` take one more character and try again from there.
            let Some((after_star, star_end)) = retry else {
                return Ok(false);
            };
            let Some(c) = text[star_end..].chars().next() else {
                return Ok(false);
            };
            let star_end = star_end + c.len_utf8();
            retry = Some((after_star, star_end));
            p = after_star;
            t = star_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).expect("valid pattern").is_match(text)
    }

    /// The cases of the AIO SDK's `state_store_scan_patterns_network_tests`.
    #[test]
    fn sdk_scan_pattern_cases() {
        let p = "sspat";
        let keys = ["", "a", "b", "c", "1", "2", "ab", "abc", ".x", "*lit"];
        let cases: &[(&str, &[&str])] = &[
            ("*", &keys),
            ("?", &["a", "b", "c", "1", "2"]),
            ("??", &["ab", ".x"]),
            ("[ab]", &["a", "b"]),
            ("[0-9]", &["1", "2"]),
            ("[!0-9]", &["a", "b", "c"]),
            ("[^0-9]", &["1", "2"]),
            ("*c", &["c", "abc"]),
            ("[*]lit", &["*lit"]),
            ("nomatch*", &[]),
        ];
        for (suffix, expected) in cases {
            let glob = Glob::new(&format!("{p}{suffix}")).unwrap();
            for key in keys {
                assert_eq!(
                    glob.is_match(&format!("{p}{key}")),
                    expected.contains(&key),
                    "pattern {suffix:?}, key {key:?}"
                );
            }
        }
    }

    #[test]
    fn caret_is_literal_and_bang_negates() {
        assert!(m("[^a]", "^"));
        assert!(m("[^a]", "a"));
        assert!(!m("[^a]", "b"));
        assert!(m("[!a]", "b"));
        assert!(!m("[!a]", "a"));
        assert!(m("^x", "^x"));
        assert!(m("[!!]", "a") && !m("[!!]", "!"));
    }

    #[test]
    fn class_edge_members() {
        assert!(m("[]]", "]"));
        assert!(m("[]a]", "a") && m("[]a]", "]"));
        assert!(m("[!]]", "a") && !m("[!]]", "]"));
        assert!(m("[a-]", "-") && m("[a-]", "a") && !m("[a-]", "b"));
        assert!(m("[-a]", "-"));
        assert!(m("[\\]", "\\"));
        assert!(m("[*?[]", "[") && m("[*?[]", "*") && !m("[*?[]", "a"));
        assert!(m("[a-cx-z]", "y") && !m("[a-cx-z]", "d"));
        assert!(m("[é-ë]", "ê"));
    }

    #[test]
    fn escapes_outside_classes() {
        assert!(m("a\\*", "a*") && !m("a\\*", "ab"));
        assert!(m("\\\\", "\\"));
        assert!(m("\\[x]", "[x]"));
        assert!(m("\\?", "?") && !m("\\?", "a"));
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("*", ""));
        assert!(m("**", "a/b/c"));
        assert!(m("a*b*c", "aXbYc") && m("a*b*c", "abc") && !m("a*b*c", "acb"));
        assert!(m("*a", "baaa") && !m("*a", "aab"));
        assert!(m("?", "é") && !m("?", "") && !m("?", "ab"));
        assert!(m("a/*", "a/b/c"));
        assert!(!m("abc", "ab") && !m("ab", "abc"));
        assert!(m("{a,b}", "{a,b}") && !m("{a,b}", "a"));
        assert!(!m("A", "a"));
    }

    #[test]
    fn invalid_patterns() {
        assert_eq!(Glob::new("a[b"), Err(GlobError::UnclosedClass(1)));
        assert_eq!(Glob::new("[]"), Err(GlobError::UnclosedClass(0)));
        assert_eq!(Glob::new("[!]"), Err(GlobError::UnclosedClass(0)));
        assert_eq!(Glob::new("[z-a]"), Err(GlobError::ReversedRange('z', 'a')));
        assert_eq!(Glob::new("a\\"), Err(GlobError::TrailingEscape));
        assert!(Glob::new("").is_ok_and(|g| g.is_match("") && !g.is_match("a")));
    }

    /// A pattern built to make backtracking matchers explode costs at most
    /// characters × items steps here, and a budget stops it.
    #[test]
    fn hostile_patterns_are_bounded() {
        let text = "a".repeat(2000);
        // Every retry of the `*` compares up to 100 `a`s before the `b` fails.
        let pattern = format!("*{}b", "a".repeat(100));
        let glob = Glob::new(&pattern).unwrap();
        let mut budget = 2001 * 103;
        assert_eq!(glob.matches_within(&text, &mut budget), Ok(false));
        let mut small = 1000;
        assert_eq!(glob.matches_within(&text, &mut small), Err(Exhausted));
        assert_eq!(small, 0);
    }

    /// The matcher agrees with a straightforward recursive definition.
    #[test]
    fn agrees_with_a_reference_matcher() {
        fn reference(items: &[Item], text: &[char]) -> bool {
            match items.split_first() {
                None => text.is_empty(),
                Some((Item::Star, rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
                Some((item, rest)) => text
                    .split_first()
                    .is_some_and(|(c, tail)| item.accepts(*c) && reference(rest, tail)),
            }
        }
        let alphabet = ['a', 'b', '^', '!', '*', '?', '[', ']', '-', '\\'];
        // Every pattern of up to 4 characters over the alphabet, against short texts.
        let mut patterns = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = patterns
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            patterns.extend(longer);
        }
        patterns.sort();
        patterns.dedup();
        let texts = [
            "", "a", "b", "ab", "ba", "aab", "^", "!a", "*", "[a]", "-", "\\", "a-b",
        ];
        for pattern in &patterns {
            let Ok(glob) = Glob::new(pattern) else {
                continue;
            };
            for text in texts {
                let chars: Vec<char> = text.chars().collect();
                // The bound the fuzz target `glob` checks too.
                let mut budget = (chars.len() as u64 + 1) * (pattern.chars().count() as u64 + 2);
                assert_eq!(
                    glob.matches_within(text, &mut budget),
                    Ok(reference(&glob.items, &chars)),
                    "{pattern:?} on {text:?}"
                );
            }
        }
    }
}
