//! The password file format, Mosquitto's: one `user:hash` per line.
//!
//! - The user name is everything before the first `:` (so it cannot contain one); the
//!   hash is the rest, surrounding spaces removed (see [`super::hash`] for the forms).
//! - Empty lines and lines starting with `#` are skipped.
//! - A user listed twice, a line without `:`, an empty user name or a hash that is
//!   unknown, malformed or too costly is an error naming the line number (and the user,
//!   never the hash).
//!
//! [`parse`] reads a file for the broker (all or nothing: every bad line is reported);
//! [`Document`] keeps a file's lines verbatim for `gatehouse passwd` to edit one entry.

use std::fmt;

use super::hash::PasswordHash;

/// One bad line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub user: Option<String>,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(user) = &self.user {
            write!(f, " (user `{}`)", user.escape_debug())?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Whether `user` can be written to a password file as a user name: not empty, no `:`
/// or control characters (line breaks), not starting with `#` (a comment).
pub fn check_user_name(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        Err("empty user name")
    } else if user.contains(':') {
        Err("a user name cannot contain `:` (it separates the name from the hash)")
    } else if user.contains(char::is_control) {
        Err("a user name cannot contain control characters")
    } else if user.starts_with('#') {
        Err("a user name cannot start with `#` (the line would be a comment)")
    } else {
        Ok(())
    }
}

/// Every entry of a password file, in file order; or every bad line.
pub fn parse(text: &str) -> Result<Vec<(String, PasswordHash)>, Vec<LineError>> {
    let mut entries: Vec<(String, PasswordHash)> = Vec::new();
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if skipped(raw) {
            continue;
        }
        let Some((user, hash)) = raw.split_once(':') else {
            errors.push(LineError {
                line,
                user: None,
                reason: "no `:` between a user name and a hash (expected `user:hash`)".into(),
            });
            continue;
        };
        let fail = |reason: String| LineError {
            line,
            user: (!user.is_empty()).then(|| user.to_owned()),
            reason,
        };
        if let Err(why) = check_user_name(user) {
            errors.push(fail(why.into()));
            continue;
        }
        if let Some(first) = seen.insert(user, line) {
            errors.push(fail(format!("listed again (first on line {first})")));
            continue;
        }
        match PasswordHash::parse(hash.trim()) {
            Ok(parsed) => entries.push((user.to_owned(), parsed)),
            Err(e) => errors.push(fail(e.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// Blank lines and comments.
fn skipped(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// A password file's lines, kept verbatim except the entries edited.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Document {
    lines: Vec<DocLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DocLine {
    Entry {
        user: String,
        hash: String,
    },
    /// Comments, blank lines and lines that are not entries, kept as they are.
    Other(String),
}

impl Document {
    pub fn read(text: &str) -> Document {
        let lines = text
            .lines()
            .map(|raw| match raw.split_once(':') {
                Some((user, hash)) if !skipped(raw) => DocLine::Entry {
                    user: user.to_owned(),
                    hash: hash.trim().to_owned(),
                },
                _ => DocLine::Other(raw.to_owned()),
            })
            .collect();
        Document { lines }
    }

    /// Set `user`'s hash: replace its entry (every one, if listed twice) or append one.
    /// True when the user was there already.
    pub fn set(&mut self, user: &str, hash: &str) -> bool {
        let mut found = false;
        self.lines.retain_mut(|line| match line {
            DocLine::Entry { user: u, hash: h } if u == user => {
                if found {
                    return false;
                }
                found = true;
                *h = hash.to_owned();
                true
            }
            _ => true,
        });
        if !found {
            self.lines.push(DocLine::Entry {
                user: user.to_owned(),
                hash: hash.to_owned(),
            });
        }
        found
    }

    /// Remove `user`'s entries; true when there was one.
    pub fn delete(&mut self, user: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|line| !matches!(line, DocLine::Entry { user: u, .. } if u == user));
        self.lines.len() != before
    }

    /// The file's text, one line each, ending in a line break.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                DocLine::Entry { user, hash } => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(hash);
                }
                DocLine::Other(text) => out.push_str(text),
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H7: &str = "$7$101$ZrElB8C9R9U2zImA$zuEXAXhkV8TJd1UAFBY+orP9vaDHw/s//gII3wbXOnfCjx25UJRThFimD3MR1jocCjLBjDmbKZrQUYtozBNYCQ==";

    #[test]
    fn entries_comments_blank_lines_and_crlf() {
        let text = format!("# users\n\nalice:{H7}\r\n  \nbob: {H7} \n");
        let entries = parse(&text).unwrap();
        let users: Vec<&str> = entries.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(users, ["alice", "bob"]);
        assert!(entries[1].1.verify(b"secret"));
        assert_eq!(parse("").unwrap().len(), 0);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = format!(
            "alice:{H7}\njust-a-name\n:{H7}\nalice:{H7}\ncarol:plaintext\ndave:$7$9999999$ZrElB8C9R9U2zImA$aGFzaA==\nerin:{H7}\n"
        );
        let errors = parse(&text).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(shown[0].starts_with("line 2: no `:`"), "{}", shown[0]);
        assert!(shown[1].contains("empty user name"), "{}", shown[1]);
        assert!(
            shown[2].contains("(user `alice`)") && shown[2].contains("first on line 1"),
            "{}",
            shown[2]
        );
        assert!(shown[3].contains("unknown hash format"), "{}", shown[3]);
        assert!(shown[4].contains("above the limit"), "{}", shown[4]);
        for s in &shown {
            assert!(!s.contains("ZrElB8C9R9U2zImA"), "a hash in an error: {s}");
        }
    }

    #[test]
    fn a_document_edits_one_entry_and_keeps_the_rest_verbatim() {
        let mut doc = Document::read(&format!("# keep me\nalice:{H7}\n\nbob:old\nbob:older\n"));
        assert!(doc.set("bob", "new"));
        assert!(!doc.set("carol", "c"));
        assert_eq!(
            doc.render(),
            format!("# keep me\nalice:{H7}\n\nbob:new\ncarol:c\n")
        );
        assert!(doc.delete("alice"));
        assert!(!doc.delete("alice"));
        assert_eq!(doc.render(), "# keep me\n\nbob:new\ncarol:c\n");
    }

    #[test]
    fn user_names_a_file_can_hold() {
        assert!(check_user_name("alice").is_ok());
        assert!(check_user_name("a b@c").is_ok());
        for bad in ["", "a:b", "a\nb", "#alice"] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }
}
