//! Tidy: no two modules of a crate import each other, directly or in a
//! circle, in any crate of the workspace.
//!
//! A module is a file or folder directly under `src/` (`wire.rs` and
//! `wire/*` are the module `wire`). Its imports are its `use crate::...`
//! lines, with names re-exported at the crate root (`use crate::NodeId`)
//! followed to the module that defines them (`pub use id::NodeId` in
//! `lib.rs`). Read as text, so it is cheap and needs no parser; `use`
//! lines are where the dependencies of a module are declared, and this
//! keeps them honest. Test files (`*tests.rs`) are left out: a test may
//! use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates checked, by folder under the workspace root.
const CRATES: [&str; 3] = ["protocol", "node", "sim"];

#[test]
fn no_module_imports_form_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cycles = Vec::new();
    for krate in CRATES {
        let mut graph = module_graph(&root.join(krate).join("src"));
        assert!(graph.len() > 3, "{krate}: found only {} modules; is the path right?", graph.len());
        // Every cycle, not just the first: break each one found and look again.
        while let Some(cycle) = find_cycle(&graph) {
            cycles.push(format!("{krate}: {}", cycle.join(" -> ")));
            let [.., from, to] = cycle.as_slice() else { break };
            graph.entry(from.clone()).or_default().remove(to);
        }
    }
    assert!(cycles.is_empty(), "modules import each other in a circle:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_finds_a_cycle_through_a_root_reexport() {
    let lib = "mod a;\nmod b;\npub use b::Thing;\n";
    let reexports = root_reexports(lib);
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), imports_of("use crate::{Thing, c::X};", &reexports));
    graph.insert("b".to_string(), imports_of("use crate::a::Other;", &reexports));
    graph.insert("c".to_string(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), Some(vec!["a".to_string(), "b".to_string(), "a".to_string()]));
    graph.insert("b".to_string(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
}

/// Top-level module to the modules its `use crate::` lines name.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let lib = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).find(|p| p.exists()).expect("a crate root");
    let reexports = root_reexports(&std::fs::read_to_string(&lib).expect("the crate root reads"));
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative.components().next().expect("a component").as_os_str().to_string_lossy().to_string();
        let module = first.trim_end_matches(".rs").to_string();
        // Test files (`unit_tests.rs`, `tests.rs`) may use anything, a test
        // harness included: they are not part of the module's interface.
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        if matches!(module.as_str(), "lib" | "main" | "bin") || name.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file reads");
        let imports = imports_of(&text, &reexports);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(imports.into_iter().filter(|m| *m != module));
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Names the crate root re-exports (`pub use module::{A, B}`), to the module.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for statement in use_statements(lib).filter(|s| s.starts_with("pub use ")) {
        let path = statement.trim_start_matches("pub use ").trim_start_matches("crate::");
        let Some((module, rest)) = path.split_once("::") else { continue };
        for name in top_level_items(rest) {
            let name = name.rsplit("::").next().unwrap_or(&name).to_string();
            let name = name.split(" as ").last().unwrap_or(&name).trim().to_string();
            names.insert(name, module.to_string());
        }
    }
    names
}

/// The modules `use crate::...` statements in `text` name.
fn imports_of(text: &str, reexports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for statement in use_statements(text) {
        let statement = statement.trim_start_matches("pub(crate) ").trim_start_matches("pub ");
        let Some(path) = statement.strip_prefix("use crate::") else { continue };
        for item in top_level_items(path) {
            let head = item.split("::").next().unwrap_or_default().trim().to_string();
            let head = head.split(" as ").next().unwrap_or_default().trim().to_string();
            match reexports.get(&head) {
                Some(module) => modules.insert(module.clone()),
                None if head.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && head != "self" => {
                    modules.insert(head)
                }
                None => false,
            };
        }
    }
    modules
}

/// Every `use` statement, joined onto one line.
fn use_statements(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut statements = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        if current.is_none()
            && (line.starts_with("use ") || line.starts_with("pub use ") || line.starts_with("pub(crate) use "))
        {
            current = Some(String::new());
        }
        if let Some(statement) = &mut current {
            statement.push_str(line);
            statement.push(' ');
            if line.ends_with(';') {
                statements.push(statement.trim().trim_end_matches(';').to_string());
                current = None;
            }
        }
    }
    statements.into_iter()
}

/// `{a::B, c}` to `["a::B", "c"]`; a plain path to itself.
fn top_level_items(path: &str) -> Vec<String> {
    let path = path.trim();
    let Some(inner) = path.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
        return vec![path.to_string()];
    };
    let (mut items, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current.trim().to_string());
    items.retain(|i| !i.is_empty());
    items
}

/// A cycle, as the modules on it with the first repeated at the end.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let start = path.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node) {
            if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}
