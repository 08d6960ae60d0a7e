//! The crate's modules form layers: no module reaches itself through `crate::` paths, and
//! no source file is over 600 lines before its tests. Read from the source text, so it
//! holds for every build and fails as soon as an import closes a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's text before its unit tests (`#[cfg(test)]` at the start of a line).
fn code_of(text: &str) -> &str {
    text.find("\n#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// The top-level module a file belongs to (`sign/approvals.rs` -> `sign`); `None` for
/// the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first),
    }
}

/// The top-level modules `code` names through `crate::`, in paths and in `use crate::{…}`
/// groups (comments left out; `crate::Service`, the root's re-export, is `service`).
fn uses(code: &str) -> BTreeSet<String> {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.as_str();
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::X, b, c::{…}}`: the first name of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (n, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        out.insert(ident(&group[n..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    if out.remove("Service") {
        out.insert("service".to_string());
    }
    out
}

#[test]
fn no_module_reaches_itself_and_no_file_is_over_600_lines() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut too_long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let code = code_of(&text);
        let lines = code.lines().count();
        if lines > 600 {
            too_long.push(format!("{} ({lines} lines)", f.display()));
        }
        let Some(m) = module_of(&src, f) else {
            continue;
        };
        let deps = graph.entry(m.clone()).or_default();
        for u in uses(code) {
            if u != m {
                deps.insert(u);
            }
        }
    }
    assert!(too_long.is_empty(), "files over 600 lines: {too_long:?}");
    // Only edges between modules of this crate.
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| known.contains(d));
    }
    // Depth-first search for a cycle, reporting it.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in &graph[m] {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!(
                "modules import each other in a loop: {}",
                cycle.join(" -> ")
            );
        }
    }
    // The bottom layer imports nothing from the layers above it.
    let db: Vec<&String> = graph["db"].iter().filter(|d| *d != "clock").collect();
    assert!(db.is_empty(), "db.rs imports {db:?}");
}

#[test]
fn the_checker_reads_imports() {
    let u = uses(
        "use crate::a::X;\nuse crate::{b::{C, D}, c, d::E};\n/// [`crate::z`]\nfn f() { crate::e::g(); }\nuse crate::Service;",
    );
    assert_eq!(
        u.into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e", "service"]
    );
    assert_eq!(code_of("a\n#[cfg(test)]\nmod tests {}"), "a");
}
