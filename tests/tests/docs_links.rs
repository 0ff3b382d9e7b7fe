//! The documentation in the repository resolves inside the repository (issue 16, item 4).
//!
//! Reads README.md, SECURITY.md, ARCHITECTURE.md and every `docs/*.md`, and checks:
//!
//! - every relative Markdown link (`[text](target)`, `[text]: target`) names a file or
//!   folder that exists, relative to the document's folder;
//! - a `#anchor` on a link to a Markdown file (or on its own, to the same file) names a
//!   heading of that file, slugged as GitHub does;
//! - a code span that names a Markdown file (`` `config.md` ``, `` `docs/check.md` ``)
//!   names one that exists, relative to the document's folder or to the repository root:
//!   a user who reads "see `config.md`" must be able to open it.
//!
//! Links to `http(s)://` and `mailto:` are not followed (no network in tests). Fenced code
//! blocks are skipped: their text is YAML or shell, not Markdown.

#![allow(
    clippy::disallowed_methods,
    reason = "test code: it reads the repository's files synchronously"
)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The repository root (this crate is `<root>/tests`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The documents checked: the top-level ones a user opens first, and everything in docs/.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut docs: Vec<PathBuf> = ["README.md", "SECURITY.md", "ARCHITECTURE.md"]
        .iter()
        .map(|name| root.join(name))
        .filter(|path| path.exists())
        .collect();
    let mut in_docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
                .collect()
        })
        .unwrap_or_default();
    in_docs.sort();
    docs.extend(in_docs);
    docs
}

/// The lines of a document outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push((i + 1, line));
        }
    }
    lines
}

/// Removes inline code spans, so that `[a](b)` written inside backticks is not a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// Link targets of one line: inline links `](target)` and reference definitions
/// `[label]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(start) = rest.find("](") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        // `[text](target "title")`: the target is the first word.
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_owned());
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        if let Some((_, target)) = trimmed.split_once("]: ") {
            if let Some(target) = target.split_whitespace().next() {
                targets.push(target.to_owned());
            }
        }
    }
    targets
}

/// Code spans of one line that name a Markdown file (no spaces, ending in `.md`).
fn markdown_file_spans(line: &str) -> Vec<String> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| {
            span.len() > ".md".len()
                && span.ends_with(".md")
                && !span.ends_with("/.md")
                && !span.contains(char::is_whitespace)
                && !span.contains(['*', '<', '>', '{', '}'])
        })
        .map(str::to_owned)
        .collect()
}

/// GitHub's heading anchor: lower case, punctuation other than `-` and `_` removed,
/// spaces to `-`. Repeated headings get `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let trimmed = line.trim_start();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || hashes > 6 || !trimmed[hashes..].starts_with(' ') {
            continue;
        }
        let heading = trimmed[hashes..].trim();
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while seen.contains(&candidate) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
        seen.insert(candidate);
    }
    seen
}

/// Every problem of one document, as `file:line: message`.
fn check_document(path: &Path) -> Vec<String> {
    let root = root();
    let shown = path
        .strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string();
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => return vec![format!("{shown}: cannot read: {err}")],
    };
    let folder = path.parent().unwrap_or(&root);
    let mut problems = Vec::new();
    for (number, line) in prose_lines(&text) {
        for target in link_targets(line) {
            if target.is_empty()
                || target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() {
                path.to_path_buf()
            } else {
                folder.join(file)
            };
            if !resolved.exists() {
                problems.push(format!(
                    "{shown}:{number}: link `{target}`: {} does not exist",
                    resolved.strip_prefix(&root).unwrap_or(&resolved).display()
                ));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if resolved.extension().is_none_or(|ext| ext != "md") {
                continue;
            }
            let target_text = fs::read_to_string(&resolved).unwrap_or_default();
            if !anchors(&target_text).contains(anchor) {
                problems.push(format!(
                    "{shown}:{number}: link `{target}`: no heading with anchor #{anchor}"
                ));
            }
        }
        for span in markdown_file_spans(line) {
            if !folder.join(&span).exists() && !root.join(&span).exists() {
                problems.push(format!(
                    "{shown}:{number}: `{span}` names a Markdown file that is not in the \
                     repository (users cannot open it; link a file under docs/ instead)"
                ));
            }
        }
    }
    problems
}

#[test]
fn every_documentation_link_resolves_inside_the_repository() {
    let documents = documents();
    assert!(
        documents.iter().any(|p| p.ends_with("README.md")),
        "README.md not found under {}",
        root().display()
    );
    let problems: Vec<String> = documents.iter().flat_map(|p| check_document(p)).collect();
    assert!(
        problems.is_empty(),
        "{} broken documentation reference(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_links_spans_and_anchors() {
    assert_eq!(
        link_targets("see [a](docs/a.md#x) and [b](<b c.md> \"t\") `[c](no)`"),
        vec!["docs/a.md#x".to_owned(), "b".to_owned()]
    );
    assert_eq!(link_targets("[ref]: ../x.md"), vec!["../x.md".to_owned()]);
    assert_eq!(
        markdown_file_spans("the spec (`config.md`) and `a b.md`, `x.yaml`, `.md`"),
        vec!["config.md".to_owned()]
    );
    let anchors = anchors("# Top\n## Why was it denied? `gatehouse explain`\n## Top\n");
    assert!(anchors.contains("why-was-it-denied-gatehouse-explain"));
    assert!(anchors.contains("top-1"));
}

/// The fenced YAML block under `heading` in `text` (the first one after it).
fn yaml_block_after<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let after = &text[text.find(heading)? + heading.len()..];
    let start = after.find("```yaml\n")? + "```yaml\n".len();
    let block = &after[start..];
    Some(&block[..block.find("\n```")?])
}

/// docs/configuration.md lists every key; its complete example is loaded by the real
/// loader, whose structs refuse unknown keys, so a key the model does not have (a typo, a
/// renamed field, one written from memory) fails here, as do invalid values.
#[test]
fn the_configuration_reference_example_loads() {
    let path = root().join("docs").join("configuration.md");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} cannot be read: {e}", path.display()));
    let yaml = yaml_block_after(&text, "## Complete example")
        .unwrap_or_else(|| panic!("no ```yaml block under \"## Complete example\""));
    match gatehouse_config::load_str(yaml, "docs/configuration.md") {
        Ok(loaded) => {
            // The example is meant to be clean: every key written as the checks expect.
            assert!(
                loaded.warnings.is_empty(),
                "warnings: {:?}",
                loaded.warnings
            );
            let config = loaded.config;
            assert_eq!(config.listeners[0].ports.len(), 3);
            assert_eq!(config.authentications[0].authentication_methods.len(), 4);
            assert!(config.persistence.is_some());
        }
        Err(e) => panic!("the complete example of docs/configuration.md does not load:\n{e}"),
    }
}

/// docs/aio-manifests.md's example is a manifest stream the loader accepts without
/// warnings (every field it shows is one Gatehouse reads).
#[test]
fn the_aio_manifest_example_loads() {
    let path = root().join("docs").join("aio-manifests.md");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} cannot be read: {e}", path.display()));
    let yaml = yaml_block_after(&text, "## Example")
        .unwrap_or_else(|| panic!("no ```yaml block under \"## Example\""));
    match gatehouse_config::load_str(yaml, "docs/aio-manifests.md") {
        Ok(loaded) => {
            assert!(
                loaded.warnings.is_empty(),
                "warnings: {:?}",
                loaded.warnings
            );
            assert_eq!(loaded.config.listeners.len(), 1);
            assert_eq!(loaded.config.broker.subscriber_queue_limit.length, 1000);
        }
        Err(e) => panic!("the example of docs/aio-manifests.md does not load:\n{e}"),
    }
}

/// Every metric family the broker's source names (`"gatehouse_..."` and `"process_..."`
/// string literals under broker/src) is listed in docs/operations.md, so a new family
/// cannot ship undocumented.
#[test]
fn every_metric_family_is_documented() {
    let root = root();
    let operations = fs::read_to_string(root.join("docs").join("operations.md"))
        .unwrap_or_else(|e| panic!("docs/operations.md cannot be read: {e}"));
    let mut families = BTreeSet::new();
    let mut folders = vec![root.join("broker").join("src")];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = fs::read_to_string(&path).unwrap_or_default();
                for prefix in ["\"gatehouse_", "\"process_"] {
                    for (at, _) in text.match_indices(prefix) {
                        // The literal's text up to its closing quote, if it is a name.
                        let rest = &text[at + 1..];
                        let Some(end) = rest.find('"') else { continue };
                        let name = &rest[..end];
                        if name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                        {
                            families.insert(name.to_owned());
                        }
                    }
                }
            }
        }
    }
    assert!(
        families.len() >= 30,
        "expected the broker's metric families, found {families:?}"
    );
    let missing: Vec<&String> = families
        .iter()
        .filter(|family| !operations.contains(&format!("`{family}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "metric families missing from docs/operations.md: {missing:?}"
    );
}
