//! The engine's modules form layers: no import cycle between them, and no module reaches
//! back into the crate root (which uses them all). Checked on the source text: every
//! `crate::name` and `super::name` outside a module's unit tests and comments is an edge to
//! module `name`; a name that is no module is an edge to the root. (Nested modules name
//! their parent with `crate::`, so `super::` always means the root.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module of `src/` and the modules it names, its unit tests left out.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            let code: String = text
                .split("\nmod tests {")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            sources.insert(name, code);
        }
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(name, code)| (name.clone(), references(code, &modules, name)))
        .collect()
}

/// The modules `code` names through `crate::` or `super::` (`lib` for a crate-root item).
fn references(code: &str, modules: &BTreeSet<String>, own: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["crate::", "super::"] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` names several: each counts.
            let names: Vec<String> = if ident.is_empty() && rest.starts_with('{') {
                let list = &rest[1..rest.find('}').unwrap_or(rest.len())];
                list.split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").to_owned())
                    .filter(|n| !n.is_empty())
                    .collect()
            } else {
                vec![ident]
            };
            for n in names {
                if n != own {
                    out.insert(if modules.contains(&n) {
                        n
                    } else {
                        "lib".into()
                    });
                }
            }
        }
    }
    out
}

/// A cycle through `node`, if any (depth-first search).
fn find_cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|n| n == node) {
        let mut cycle = path[i..].to_vec();
        cycle.push(node.to_owned());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(c) = find_cycle(graph, next, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

#[test]
fn modules_form_layers_without_cycles() {
    let graph = module_graph();
    assert!(graph.len() > 10, "found the modules: {:?}", graph.keys());
    for (module, uses) in &graph {
        assert!(
            !uses.contains("lib"),
            "module {module} uses an item of the crate root; move it into a module"
        );
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = find_cycle(&graph, module, &mut vec![], &mut done) {
            panic!("import cycle between modules: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_a_cycle() {
    let modules: BTreeSet<String> = ["a", "b"].iter().map(|s| (*s).to_owned()).collect();
    let mut graph = BTreeMap::new();
    graph.insert(
        "a".to_owned(),
        references("use crate::b::X;", &modules, "a"),
    );
    graph.insert(
        "b".to_owned(),
        references("use super::{a::Y, c};", &modules, "b"),
    );
    assert_eq!(
        graph["b"],
        ["a", "lib"].iter().map(|s| (*s).to_owned()).collect()
    );
    let cycle = find_cycle(&graph, "a", &mut vec![], &mut BTreeSet::new());
    assert_eq!(cycle, Some(vec!["a".into(), "b".into(), "a".into()]));
}
