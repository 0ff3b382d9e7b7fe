//! The module structure of the library, drawn from its imports, has no circles and reads
//! top-down (issue 17; ARCHITECTURE.md "Module map"):
//!
//! ```text
//! server, reload, preflight, metrics start-up, reload, exposition (may use anything below)
//! transport                          listeners, accept, TLS/WebSocket, hands to a connection
//! connection                         one task per client
//! registry, session, routing, limits, the session registry, sessions, fan-out,
//!   cluster                            the link to the other nodes (cluster mode)
//! auth, authz, statestore, tls       security and the state store
//! storage, admission, counters,      leaves: what is kept, the admission gates, counter
//!   message, topics, file_stamp,       primitives, the message model, reserved topics,
//!   file_watch                         following files
//! (gatehouse-protocol, gatehouse-config: other crates)
//! ```
//!
//! An import may go down or sideways within a layer, never up, and the graph of top-level
//! modules must be acyclic. Every `crate::<module>` path outside comments counts (a `use`,
//! or a path written out in code). A new top-level module must be given a layer here, and
//! drawn in that layer in ARCHITECTURE.md's module map (checked too).

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a failed test, and fixtures are written synchronously"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of each top-level module of `broker/src` (0 = top).
const LAYERS: &[(&str, usize)] = &[
    ("server", 0),
    ("reload", 0),
    ("preflight", 0),
    ("metrics", 0),
    ("transport", 1),
    ("connection", 2),
    ("registry", 3),
    ("session", 3),
    ("routing", 3),
    ("limits", 3),
    // Cluster mode (issue 15): beside the registry and the router it links to NATS;
    // routing knows it only as the `routing::ClusterLink` trait.
    ("cluster", 3),
    ("auth", 4),
    ("authz", 4),
    ("statestore", 4),
    ("tls", 4),
    ("storage", 5),
    ("admission", 5),
    ("counters", 5),
    ("message", 5),
    ("topics", 5),
    ("file_stamp", 5),
    ("file_watch", 5),
];

/// Not library modules: the crate root, and the binary (`bin/gatehouse/`: `main.rs` and
/// `cli/`), which uses the library through `gatehouse::`, not `crate::`.
const BINARY: &[&str] = &["bin", "lib"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `auth/sat/jwks.rs` → `auth`, `registry.rs` → `registry`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    first.unwrap_or_default().trim_end_matches(".rs").to_owned()
}

/// Every `crate::<name>` in `code` (comments removed).
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            // Skip `gatehouse_crate::`-like identifiers that merely end in "crate".
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// module → modules it imports, with one file that shows each edge.
fn import_graph() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for file in files {
        let from = module_of(&src, &file);
        if BINARY.contains(&from.as_str()) {
            continue;
        }
        let code =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let edges = graph.entry(from.clone()).or_default();
        for to in crate_paths(&code) {
            if to != from && to != "self" && to != "super" {
                edges.entry(to).or_insert_with(|| file.clone());
            }
        }
    }
    graph
}

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| {
            panic!("top-level module `{module}` has no layer: add it to LAYERS in broker/tests/layers.rs and to ARCHITECTURE.md's module map")
        })
}

#[test]
fn every_import_goes_down_or_sideways() {
    let mut up = Vec::new();
    for (from, edges) in import_graph() {
        for (to, file) in edges {
            if layer(&to) < layer(&from) {
                up.push(format!(
                    "{from} (layer {}) imports {to} (layer {}) in {}",
                    layer(&from),
                    layer(&to),
                    file.display()
                ));
            }
        }
    }
    assert!(up.is_empty(), "imports going up:\n{}", up.join("\n"));
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = import_graph();
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            let shown: Vec<_> = cycle
                .windows(2)
                .map(|w| {
                    let file = &graph[&w[0]][&w[1]];
                    format!("{} -> {} ({})", w[0], w[1], file.display())
                })
                .collect();
            panic!("import cycle:\n{}", shown.join("\n"));
        }
    }
}

#[test]
fn the_checker_sees_paths_and_skips_comments() {
    let code = "use crate::session::Session;\n// crate::server in a comment\nlet x = crate::limits::X; // crate::metrics\nmy_crate::nothing";
    let found: Vec<_> = crate_paths(code).into_iter().collect();
    assert_eq!(found, ["limits", "session"]);
}

/// ARCHITECTURE.md's "Module map": each top-level entry (`server.rs` → `server`, `auth/`
/// → `auth`, `bin/gatehouse/` → `bin`) with the number of `─` rules drawn above it
/// (0: the binary, then 1 + its layer).
fn module_map() -> Vec<(String, usize)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = text
        .split("## Module map")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"Module map\" section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the module map is a code block");
    let mut entries = Vec::new();
    let mut rules = 0;
    for line in block.lines() {
        if line.starts_with('─') {
            rules += 1;
            continue;
        }
        // Indented lines detail a module's folders; `gatehouse-…` are the other crates.
        let entry = line.split_whitespace().next().unwrap_or_default();
        if line.starts_with(' ') || entry.is_empty() || entry.starts_with("gatehouse-") {
            continue;
        }
        let module = entry.split('/').next().unwrap_or_default();
        entries.push((module.trim_end_matches(".rs").to_owned(), rules));
    }
    entries
}

#[test]
fn the_module_map_in_architecture_md_matches_the_tree() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "rs"))
        .map(|p| module_of(&src, &p))
        .filter(|m| m != "lib")
        .collect();
    let map = module_map();
    let drawn: BTreeSet<String> = map.iter().map(|(m, _)| m.clone()).collect();
    assert_eq!(
        drawn, tree,
        "ARCHITECTURE.md's module map (left) and the top-level entries of broker/src (right) differ"
    );
    for (module, rules) in &map {
        let expected = if module == "bin" {
            0
        } else {
            layer(module) + 1
        };
        assert_eq!(
            *rules,
            expected,
            "ARCHITECTURE.md draws `{module}` under {rules} rules; its layer in LAYERS puts it under {expected}"
        );
    }
}
