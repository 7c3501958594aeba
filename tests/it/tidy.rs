//! Tidy checks over the source tree: what a grep can prove about the house (ARCHITECTURE.md's invariants).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The unit of a source file for the dependency graph: a top-level module (`src/x.rs` or `src/x/`), except that
/// the engine's and the stages' files are units of their own (`engine::store`, `stages::select`).
fn unit_of_file(rel: &str) -> String {
    let path = rel.strip_prefix("src/").unwrap().strip_suffix(".rs").unwrap();
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["engine", "mod"] => "engine".into(),
        ["engine", file] => format!("engine::{file}"),
        ["stages", "mod"] => "stages".into(),
        ["stages", file] => format!("stages::{file}"),
        // A stage in a folder (`stages/report/`) is one unit: its files are its parts.
        ["stages", stage, _] => format!("stages::{stage}"),
        [top, ..] => (*top).to_string(),
        [] => unreachable!(),
    }
}

/// The units a file refers to through `crate::` paths (in `use` lines and inline paths), tests excluded.
fn references(text: &str, units: &BTreeSet<String>) -> BTreeSet<String> {
    let code = code_of(text);
    let code = code.as_str();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
        let parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = parts.first() else { continue };
        let nested = parts.get(1).map(|second| format!("{first}::{second}"));
        match nested {
            Some(n) if units.contains(&n) => out.insert(n),
            _ => out.insert((*first).to_string()),
        };
    }
    // Grouped imports (`use crate::{a, b}`) would hide units: the house does not write them.
    assert!(!code.contains("use crate::{"), "grouped `use crate::{{...}}` found; write one path per line");
    out
}

/// A file's code: tests and comment lines left out.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let missing: Vec<String> =
        sources().into_iter().filter(|(_, text)| !text.starts_with("//!")).map(|(rel, _)| rel).collect();
    assert!(missing.is_empty(), "these files do not open with a `//!` line saying what they own: {missing:?}");
}

#[test]
fn no_stage_imports_another_stage() {
    let mut offences = Vec::new();
    for (rel, text) in sources() {
        let Some(file) = rel.strip_prefix("src/stages/") else { continue };
        if file == "mod.rs" {
            continue;
        }
        let code = code_of(&text);
        // A part of a stage in a folder reaches its siblings through `super::`, never further up.
        let inner = file.contains('/') && !file.ends_with("/mod.rs");
        let upward = if inner { code.contains("super::super") } else { code.contains("super::") };
        if code.contains("crate::stages::") || upward {
            offences.push(rel);
        }
    }
    assert!(offences.is_empty(), "stage files reach into other stages: {offences:?}");
}

#[test]
fn modules_have_no_import_cycles() {
    let files = sources();
    let units: BTreeSet<String> = files.iter().map(|(rel, _)| unit_of_file(rel)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &files {
        let from = unit_of_file(rel);
        for to in references(text, &units) {
            // A parent module declaring its children is not an import; the registry gathers the stages.
            let parent_of_child = to.starts_with(&format!("{from}::"));
            if to != from && units.contains(&to) && !parent_of_child && (from != "stages") {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let mut graph = petgraph::graph::DiGraph::<&str, ()>::new();
    let index: BTreeMap<&str, _> = units.iter().map(|u| (u.as_str(), graph.add_node(u.as_str()))).collect();
    for (from, tos) in &edges {
        for to in tos {
            graph.add_edge(index[from.as_str()], index[to.as_str()], ());
        }
    }
    let cycles: Vec<Vec<&str>> = petgraph::algo::tarjan_scc(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.into_iter().map(|n| graph[n]).collect())
        .collect();
    assert!(cycles.is_empty(), "import cycles between modules: {cycles:?}");
    // The engine knows nothing of the method: no engine unit refers to a method module.
    let method =
        ["artefact", "cluster", "dataset", "lrp", "media", "model", "npy", "sim", "stages", "stats", "trigger"];
    for (from, tos) in &edges {
        if from.starts_with("engine") {
            let bad: Vec<&String> = tos.iter().filter(|t| method.contains(&t.as_str())).collect();
            assert!(bad.is_empty(), "`{from}` refers to the method's {bad:?}");
        }
    }
}

#[test]
fn workflows_readme_documents_every_stage_kind_input_and_parameter() {
    let readme = std::fs::read_to_string(root().join("workflows/README.md")).unwrap();
    let registry = hudd::stages::registry();
    let mut missing = Vec::new();
    for name in registry.names() {
        let kind = registry.get(name).unwrap();
        let heading = format!("### `{name}`");
        let Some(start) = readme.find(&heading) else {
            missing.push(format!("no section `{heading}`"));
            continue;
        };
        let body = &readme[start + heading.len()..];
        let section = &body[..body.find("\n### ").or_else(|| body.find("\n## ")).unwrap_or(body.len())];
        // A parameter is documented by a table row whose first cell names it (`| `a`, `b` | ...`).
        let keys: Vec<&str> =
            section.lines().filter_map(|l| l.strip_prefix('|')).filter_map(|l| l.split('|').next()).collect();
        for param in kind.param_names() {
            if !keys.iter().any(|cell| cell.contains(&format!("`{param}`"))) {
                missing.push(format!("{name}: parameter `{param}`"));
            }
        }
        for slot in kind.inputs() {
            if !section.contains(&format!("`{}`", slot.name)) {
                missing.push(format!("{name}: input `{}`", slot.name));
            }
        }
        for output in kind.outputs() {
            if !section.contains(&format!("`{}`", output.name)) {
                missing.push(format!("{name}: output `{}`", output.name));
            }
        }
    }
    assert!(missing.is_empty(), "workflows/README.md does not document: {missing:#?}");
}

#[test]
fn only_the_store_writes_under_the_hudd_folder() {
    // Paths under `.hudd/` are built by the store alone: no other file names the folder or its parts.
    let mut offences = Vec::new();
    for (rel, text) in sources() {
        if rel.starts_with("src/engine/store/") {
            continue;
        }
        let code = code_of(&text);
        for needle in ["\".hudd\"", "join(\"slurm\")", "join(\"specs\")", "join(\"tmp\")", "join(\"runs\")"] {
            if code.contains(needle) {
                offences.push(format!("{rel}: {needle}"));
            }
        }
    }
    assert!(offences.is_empty(), "paths under .hudd/ built outside the store: {offences:?}");
}

#[test]
fn artefact_files_are_named_only_by_the_modules_that_own_them() {
    // A file inside an artefact (a table, a JSON record, an array, weights) is named by its artefact module
    // (src/artefact/, the dataset and model artefact modules), which reads and writes it; stages, the CLI and
    // `hudd diff` go through those. A stage still names and documents its own outputs (`OutputSpec`).
    let data = [".json\"", ".csv\"", ".npy\"", ".safetensors\"", ".pt\"", ".parquet\""];
    let mut offences = Vec::new();
    for (rel, text) in sources() {
        let outside = rel.starts_with("src/stages/") || rel == "src/cli.rs" || rel == "src/diff.rs";
        if !outside {
            continue;
        }
        for line in code_of(&text).lines() {
            let line = line.trim();
            let declared = line.starts_with("path: \"") || line.starts_with("doc: \"") || line.contains("OutputSpec {");
            if declared || line.contains("include_str!(") {
                continue;
            }
            if data.iter().any(|ext| line.contains(ext)) {
                offences.push(format!("{rel}: {line}"));
            }
        }
    }
    assert!(offences.is_empty(), "artefact files named outside their modules: {offences:#?}");
}

#[test]
fn every_shipped_architecture_file_is_compiled_into_the_binary() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect();
    files.sort();
    let mut shipped: Vec<String> = hudd::model::SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
    shipped.sort();
    assert_eq!(files, shipped, "models/*.toml and hudd::model::SHIPPED differ");
}

#[test]
fn architecture_names_every_source_file_and_only_files_that_exist() {
    // Every `src/...` path ARCHITECTURE.md names exists; every file of `src/` and of `src/engine/` has a row of the
    // module table, and every file of a folder that has a row (`src/cluster/`) is named in that row (`x.rs`, or `x` as a module).
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut problems = Vec::new();
    for named in text.split('`').skip(1).step_by(2).filter(|s| s.starts_with("src/")) {
        let path = named.split([' ', ':']).next().unwrap();
        if !root().join(path).exists() {
            problems.push(format!("names {path}, which does not exist"));
        }
    }
    let rows: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(path, rest)| (path.to_string(), rest.to_string())))
        .filter(|(path, _)| path.starts_with("src/"))
        .collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    for file in files {
        let rel = file.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/");
        if rows.contains_key(&rel) {
            continue;
        }
        let folder = rel.rsplit_once('/').map(|(f, _)| format!("{f}/")).unwrap();
        let name = rel.rsplit('/').next().unwrap();
        let stem = format!("`{}`", name.trim_end_matches(".rs"));
        match rows.get(&folder) {
            Some(row) if name == "mod.rs" || row.contains(name) || row.contains(&stem) => {}
            Some(_) => problems.push(format!("{rel}: not named in the row of {folder}")),
            None => {
                // A file in a subfolder of a folder with a row (`src/lrp/rules/x.rs`) counts under the nearest row.
                let covered = rows.keys().any(|r| r.ends_with('/') && rel.starts_with(r.as_str()));
                if !covered {
                    problems.push(format!("{rel}: no row in ARCHITECTURE.md's module table"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "ARCHITECTURE.md: {problems:#?}");
}

#[test]
fn every_proptest_regression_file_belongs_to_a_source_file_that_exists() {
    // proptest reads the seeds of `src/x/y.rs` from `proptest-regressions/x/y.txt`: a file with no source beside it
    // (a module since moved into a folder) is never read, and its seeds are silently lost.
    fn txt_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                txt_files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    txt_files(&root().join("proptest-regressions"), &mut files);
    assert!(!files.is_empty(), "proptest-regressions/ holds no seed file");
    let stale: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(root().join("proptest-regressions")).unwrap().to_path_buf())
        .filter(|rel| {
            rel.extension().is_none_or(|e| e != "txt") || !root().join("src").join(rel.with_extension("rs")).exists()
        })
        .map(|rel| rel.display().to_string())
        .collect();
    assert!(stale.is_empty(), "proptest-regressions/ files with no source file under src/: {stale:?}");
}

/// The Markdown files a reader follows links in: the README, ARCHITECTURE, every folder's README and `docs/`.
fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md"].iter().map(|f| root().join(f)).collect();
    for dir in ["workflows", "models", "datasets", "reports", "docs"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else { continue };
        let mut found: Vec<PathBuf> =
            entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// The targets of a Markdown text's inline links, `[text](target)`, outside code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in link_targets(&text) {
            let path = target.split('#').next().unwrap_or_default().trim();
            if path.is_empty() || path.contains("://") || path.starts_with("mailto:") {
                continue;
            }
            if !file.parent().unwrap().join(path).exists() {
                broken.push(format!("{}: {target}", file.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing:\n{}", broken.join("\n"));
    assert_eq!(link_targets("see [a](x.md#y) and [b](https://e.org)\n```\n[c](z)\n```\n"), ["x.md#y", "https://e.org"]);
}
