//! The layering of docs/ARCHITECTURE.md, read from its "Layers" table and checked on the
//! sources (the picture there is drawn from the table): each top-level module
//! of `src/` uses only the modules its layer allows (so there is no import cycle), and
//! every comment that cites the design points at a section that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The "Layers" table of docs/ARCHITECTURE.md, the one statement of the rule.
struct Layers {
    /// Each module of a row -> the modules it may use, in the table's order.
    rows: Vec<(Vec<String>, Vec<String>)>,
    /// The leaves every module may use.
    everywhere: BTreeSet<String>,
    /// The picture drawn in the section, as written.
    picture: String,
}

fn design() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md exists")
}

/// The names in backticks of a table cell.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn layers() -> Layers {
    let design = design();
    let section = design
        .split("\n## Layers\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a \"Layers\" section");
    let mut rows = Vec::new();
    let mut everywhere = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (modules, uses) = (backticked(cells[1]), backticked(cells[2]));
        if cells[2].contains("every module may use them") {
            everywhere.extend(modules.iter().cloned());
        }
        rows.push((modules, uses));
    }
    let picture = section
        .split("```text\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the picture, a text block")
        .to_owned();
    Layers {
        rows,
        everywhere,
        picture,
    }
}

impl Layers {
    fn allowed(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut allowed = BTreeMap::new();
        for (modules, uses) in &self.rows {
            for module in modules {
                let mut may: BTreeSet<String> = uses.iter().cloned().collect();
                if !self.everywhere.contains(module) {
                    may.extend(self.everywhere.iter().cloned());
                }
                allowed.insert(module.clone(), may);
            }
        }
        allowed
    }

    /// The picture the table draws: a line per row, the leaves last.
    fn draw(&self) -> String {
        let mut picture = String::from("main.rs (binary: clap, dispatch)\n");
        for (modules, uses) in &self.rows {
            let names = modules.join(", ");
            if uses.is_empty() {
                let note = if self.everywhere.contains(&modules[0]) {
                    "use nothing; every module may use them"
                } else {
                    "use nothing"
                };
                picture.push_str(&format!("  {names} ({note})\n"));
            } else {
                picture.push_str(&format!("  {names:<10} -> {}\n", uses.join(", ")));
            }
        }
        picture
    }
}

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
    let layers = layers();
    let allowed = layers.allowed();
    let modules: BTreeSet<String> = dependencies().into_keys().collect();
    let listed: BTreeSet<String> = allowed.keys().cloned().collect();
    assert_eq!(
        modules, listed,
        "every top-level module of src/ has a row in the Layers table, and only they"
    );
    let mut violations = Vec::new();
    for (module, used) in dependencies() {
        let permitted = allowed.get(&module).cloned().unwrap_or_default();
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

/// `repo` is pure: it may use the calendar arithmetic of `clock`, never the clock.
#[test]
fn the_repository_model_never_reads_the_clock() {
    let mut files = Vec::new();
    rust_files(&src().join("repo"), &mut files);
    for file in files {
        let code = production_code(&file);
        for reading in [
            "clock::now",
            "clock::wait_past_second",
            "SystemTime",
            "Instant::now",
        ] {
            assert!(
                !code.contains(reading),
                "{} reads the clock ({reading}): pass the time in",
                file.display()
            );
        }
    }
}

#[test]
fn the_picture_of_the_layers_is_the_table() {
    let layers = layers();
    assert_eq!(
        layers.picture,
        layers.draw(),
        "docs/ARCHITECTURE.md, \"Layers\": the picture must be drawn from the table; replace it with the right side"
    );
}

#[test]
fn the_allowed_layers_have_no_cycle() {
    let allowed = layers().allowed();
    let graph: BTreeMap<&str, Vec<&str>> = allowed
        .iter()
        .map(|(module, deps)| (module.as_str(), deps.iter().map(String::as_str).collect()))
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
    let design = design();
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
