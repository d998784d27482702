//! The layering the workspace promises (docs/ARCHITECTURE.md, docs/DECISIONS.md D8), checked on the
//! real crates: what `cargo tree` shows below the protocol and agent crates, and that no module of
//! the tool imports, directly or through others, a module that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every package in `cargo tree -p <package> -e normal` (the build's own dependency graph).
fn tree(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_protocol_crate_has_no_io_crate_and_the_agent_none_of_the_tool() {
    let proto = tree("roomcast-proto");
    for banned in [
        "tokio", "axum", "russh", "rusqlite", "hyper", "ureq", "reqwest", "socket2",
    ] {
        assert!(
            !proto.contains(banned),
            "roomcast-proto depends on {banned}"
        );
    }
    let agent = tree("roomcast-agent");
    for banned in [
        "russh",
        "rusqlite",
        "axum",
        "minijinja",
        "tokio",
        "roomcast",
        "roomcast-lab",
    ] {
        assert!(
            !agent.contains(banned),
            "roomcast-agent depends on {banned}"
        );
    }
    assert!(agent.contains("ureq"), "the agent's HTTP client: {agent:?}");
}

/// `a::b` module paths of every file of the tool crate.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "bin") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into()).collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts, p);
        }
    }
    out
}

/// The modules (two levels deep, e.g. `net::http`) each module of the tool imports with `crate::`,
/// test modules and comments left out.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let node = |parts: &[String]| parts.iter().take(2).cloned().collect::<Vec<_>>().join("::");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (parts, path) in &mods {
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let from = node(parts);
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let path: Vec<String> = line[i + 7..]
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                let known = (1..=path.len())
                    .rev()
                    .find(|n| mods.contains_key(&path[..*n]))
                    .map(|n| node(&path[..n]));
                if let Some(to) = known
                    && to != from
                    && !from.starts_with(&format!("{to}::"))
                    && !to.starts_with(&format!("{from}::"))
                {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    graph
}

#[test]
fn no_module_of_the_tool_imports_itself_back() {
    let graph = imports(&root().join("src"));
    assert!(
        graph.contains_key("cli::serve"),
        "the scan found the modules: {graph:?}"
    );
    // A module is on a cycle when it reaches itself.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = todo.pop() {
            assert!(m != start, "import cycle through {start}: {graph:#?}");
            if seen.insert(m.clone()) {
                todo.extend(graph.get(m).into_iter().flatten());
            }
        }
    }
}
