//! The layering of docs/ARCHITECTURE.md, checked on the sources: each top-level module
//! of `src/` uses only the modules its layer allows (so there is no import cycle), and
//! every comment that cites the design points at a section that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The allowed `crate::` dependencies of each top-level module, as drawn in
/// docs/ARCHITECTURE.md, "Layers". A module missing here may depend on nothing.
const ALLOWED: &[(&str, &[&str])] = &[
    ("config", &["calendar", "cdn", "repo", "store"]),
    ("workspace", &["config"]),
    ("keys", &["clock", "config", "listener", "sign"]),
    (
        "package",
        &[
            "calendar",
            "config",
            "debfile",
            "listener",
            "repo",
            "shell",
            "sign",
            "workspace",
        ],
    ),
    (
        "publish",
        &["config", "debfile", "listener", "repo", "sign", "store"],
    ),
    (
        "ops",
        &[
            "cdn",
            "clock",
            "config",
            "debfile",
            "keys",
            "listener",
            "package",
            "publish",
            "repo",
            "shell",
            "sign",
            "store",
            "workspace",
        ],
    ),
    ("output", &["keys", "listener", "ops", "publish", "repo"]),
];

/// Leaf modules every layer may use (the wall clock, the fan-out with its one panic
/// policy, sh quoting); they themselves use nothing of the crate.
const EVERY_LAYER_MAY_USE: &[&str] = &["clock", "parallel", "shell"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module (tests
/// may use anything).
fn production_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module -> the top-level modules it names as `crate::<name>`.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src()).expect("below src");
        let first = relative
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if first == "main" || first == "lib" {
            continue;
        }
        let code = production_code(&file);
        let used = deps.entry(first.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name != first {
                used.insert(name);
            }
        }
    }
    deps
}

#[test]
fn every_module_uses_only_what_its_layer_allows() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(module, deps)| (*module, deps.iter().copied().collect()))
        .collect();
    let mut violations = Vec::new();
    for (module, used) in dependencies() {
        let mut permitted = allowed.get(module.as_str()).cloned().unwrap_or_default();
        if !EVERY_LAYER_MAY_USE.contains(&module.as_str()) {
            permitted.extend(EVERY_LAYER_MAY_USE.iter().copied());
        }
        for dependency in used {
            if !permitted.contains(dependency.as_str()) {
                violations.push(format!("{module} -> {dependency}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependencies that docs/ARCHITECTURE.md does not allow: {violations:?}"
    );
}

#[test]
fn the_allowed_layers_have_no_cycle() {
    let graph: BTreeMap<&str, Vec<&str>> = ALLOWED
        .iter()
        .map(|(module, deps)| (*module, deps.to_vec()))
        .collect();
    // Depth-first search; a node seen again while still on the stack closes a cycle.
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        assert!(
            !stack.contains(&node),
            "cycle: {} -> {node}",
            stack.join(" -> ")
        );
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done);
        }
        stack.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn design_citations_point_into_the_repository() {
    let design =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
            .expect("docs/ARCHITECTURE.md exists");
    let headings: BTreeSet<String> = design
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(|heading| heading.trim().to_owned())
        .collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        &mut files,
    );
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        // A citation of a design file outside the repository cannot be followed.
        if text.contains(&["DESIGN", ".md"].concat()) {
            problems.push(format!(
                "{} cites a design file outside the repository",
                file.display()
            ));
        }
        let marker = "docs/ARCHITECTURE.md, \"";
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let section = rest.split('"').next().unwrap_or_default();
            if !headings.contains(section) {
                problems.push(format!(
                    "{} cites a missing section {section:?}",
                    file.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
