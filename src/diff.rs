//! `hudd diff`: what changed between two runs of a workflow (or two workflows): the parameters that differ, the
//! stages whose artefacts differ and those that reran, every figure of the reports' `evidence.json` side by side,
//! and the root-cause clusters matched by their members. And `hudd annotate`'s source: a run's clusters.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::artefact::evidence::{self, Matching};
use crate::engine::store::Store;

/// Why a run or its evidence cannot be read: each names the file or the argument.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: {source}", path.display())]
    Toml { path: PathBuf, source: toml::de::Error },
    #[error("{}: no [workflow] name", path.display())]
    NoWorkflowName { path: PathBuf },
    #[error("{}: not a hudd evidence file (no \"schema\": \"{}\")", path.display(), evidence::SCHEMA)]
    NotEvidence { path: PathBuf },
    #[error("{}: evidence schema version {version}, newer than this hudd's {}", path.display(), evidence::VERSION)]
    Newer { path: PathBuf, version: u64 },
    /// A cluster list that `diff` and `annotate` cannot read: the first field that is off.
    #[error("{}: {message}", path.display())]
    Clusters { path: PathBuf, message: String },
    #[error(
        "`{arg}` is no report folder, evidence.json, run record, manifest or workflow with recorded runs in {}",
        store.display()
    )]
    NotFound { arg: String, store: PathBuf },
    #[error("`{arg}`: workflow `{workflow}` has {runs} recorded runs")]
    TooFewRuns { arg: String, workflow: String, runs: usize },
    #[error("the report of this run (stage `{stage}`, key {key}) is no longer in the store: rerun the workflow")]
    ReportGone { stage: String, key: String },
}

/// One side of a diff: a run record and/or the evidence of its report.
#[derive(Debug, Clone)]
pub struct Side {
    /// How the user named it, and what it resolved to.
    pub label: String,
    pub record: Option<Value>,
    pub evidence: Option<Value>,
}

/// Finds a run: a run record file or its name (`2026-11-29T20-45-24-951Z-quickstart`, or a prefix of it), a report
/// folder or `evidence.json`, a manifest (its workflow's latest run), or a workflow's name; `~N` after a workflow's
/// name or manifest picks the run N before its latest.
pub fn resolve(store: &Store, workspace: &Path, arg: &str) -> Result<Side, DiffError> {
    // `~N` with more digits than a usize holds asks for a run that cannot exist: it is named like too few runs.
    let (name, back) = match arg.rsplit_once('~') {
        Some((name, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
            (name, n.parse::<usize>().unwrap_or(usize::MAX))
        }
        _ => (arg, 0),
    };
    let path = if Path::new(name).is_absolute() { Path::new(name).to_path_buf() } else { workspace.join(name) };
    if back == 0 && path.is_dir() {
        let file = path.join(evidence::FILE);
        return Ok(Side { label: arg.into(), record: None, evidence: Some(read_evidence(&file)?) });
    }
    if back == 0 && path.is_file() && path.extension().is_some_and(|e| e == "json") {
        let value = read_json(&path)?;
        if value.get("stages").is_some() {
            let evidence = evidence_of_record(store, &value)?;
            return Ok(Side { label: arg.into(), record: Some(value), evidence });
        }
        return Ok(Side { label: arg.into(), record: None, evidence: Some(read_evidence(&path)?) });
    }
    let workflow = if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
        let text = std::fs::read_to_string(&path).map_err(|source| DiffError::Io { path: path.clone(), source })?;
        let doc: toml::Table =
            toml::from_str(&text).map_err(|source| DiffError::Toml { path: path.clone(), source })?;
        doc.get("workflow")
            .and_then(|w| w.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| DiffError::NoWorkflowName { path: path.clone() })?
            .to_string()
    } else {
        name.to_string()
    };
    let runs = store.runs(usize::MAX);
    // A run record by name (or a unique prefix of it).
    if back == 0 {
        let named: Vec<&(std::path::PathBuf, Value)> =
            runs.iter().filter(|(p, _)| p.file_stem().is_some_and(|s| s.to_string_lossy().starts_with(name))).collect();
        if let [(_, record)] = named.as_slice() {
            let evidence = evidence_of_record(store, record)?;
            return Ok(Side { label: arg.into(), record: Some(record.clone()), evidence });
        }
    }
    let of_workflow: Vec<&Value> =
        runs.iter().map(|(_, r)| r).filter(|r| r["workflow"].as_str() == Some(workflow.as_str())).collect();
    match of_workflow.get(back) {
        Some(record) => {
            let evidence = evidence_of_record(store, record)?;
            let started = record["started"].as_str().unwrap_or("?");
            Ok(Side { label: format!("{arg} (run of {started})"), record: Some((*record).clone()), evidence })
        }
        None if of_workflow.is_empty() => Err(DiffError::NotFound { arg: arg.into(), store: store.root().into() }),
        None => Err(DiffError::TooFewRuns { arg: arg.into(), workflow, runs: of_workflow.len() }),
    }
}

fn read_json(path: &Path) -> Result<Value, DiffError> {
    let text = std::fs::read_to_string(path).map_err(|source| DiffError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|source| DiffError::Json { path: path.into(), source })
}

/// Reads an `evidence.json`, refusing another schema or a newer version.
pub fn read_evidence(path: &Path) -> Result<Value, DiffError> {
    let value = read_json(path)?;
    match (value["schema"].as_str(), value["schema_version"].as_u64()) {
        (Some(evidence::SCHEMA), Some(v)) if v <= u64::from(evidence::VERSION) => {
            check_clusters(&value).map_err(|message| DiffError::Clusters { path: path.into(), message })?;
            Ok(value)
        }
        (Some(evidence::SCHEMA), Some(version)) => Err(DiffError::Newer { path: path.into(), version }),
        _ => Err(DiffError::NotEvidence { path: path.into() }),
    }
}

/// The evidence of a run's report stage (its last), when the run has one and the store still holds it.
fn evidence_of_record(store: &Store, record: &Value) -> Result<Option<Value>, DiffError> {
    let Some(report) = record["stages"].as_array().and_then(|s| s.iter().rev().find(|s| s["kind"] == "report")) else {
        return Ok(None);
    };
    let key = report["key"].as_str().unwrap_or_default();
    match store.output_path(key, "report") {
        Ok(dir) => read_evidence(&dir.join(evidence::FILE)).map(Some),
        Err(_) => {
            Err(DiffError::ReportGone { stage: report["id"].as_str().unwrap_or("report").into(), key: key.into() })
        }
    }
}

/// A parameter that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamChange {
    pub stage: String,
    pub param: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A figure of the two reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureChange {
    pub figure: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// after − before, for numbers on both sides.
    pub change: Option<f64>,
}

/// What changed between two runs.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub before: String,
    pub after: String,
    /// `--set` overrides of each run.
    pub overrides: (Vec<String>, Vec<String>),
    pub params: Vec<ParamChange>,
    /// Stages whose artefacts differ (their outputs' bytes, or their keys where a store entry is gone), stages
    /// computed again under another key with the same bytes, stages only in one run, and how many are the same.
    pub differ: Vec<String>,
    pub same_bytes: Vec<String>,
    pub only_before: Vec<String>,
    pub only_after: Vec<String>,
    pub same: usize,
    /// Stages the second run computed (the rest it found in the store or kept by early cutoff).
    pub reran: Vec<String>,
    /// Whether both sides are runs with records, so that parameters and stages were compared.
    pub runs_compared: bool,
    /// How many figures the two reports hold between them, each compared (0 when a side has no report).
    pub compared: usize,
    /// Every figure that differs (or all with `all`).
    pub figures: Vec<FigureChange>,
    pub clusters: Option<Matching>,
    /// What could not be compared, said.
    pub notes: Vec<String>,
}

/// Compares two runs; `all` keeps the figures that did not change. `outputs` gives a stored entry's outputs by name
/// with their content digests (none when the store no longer holds it), so that a stage whose key changed but whose
/// bytes did not is said as such.
pub fn diff(
    a: &Side,
    b: &Side,
    workspace: &Path,
    all: bool,
    outputs: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Diff {
    let mut d = Diff {
        before: a.label.clone(),
        after: b.label.clone(),
        overrides: (overrides(a), overrides(b)),
        params: Vec::new(),
        differ: Vec::new(),
        same_bytes: Vec::new(),
        only_before: Vec::new(),
        only_after: Vec::new(),
        same: 0,
        reran: Vec::new(),
        runs_compared: false,
        compared: 0,
        figures: Vec::new(),
        clusters: None,
        notes: Vec::new(),
    };
    match (&a.record, &b.record) {
        (Some(ra), Some(rb)) => {
            d.runs_compared = true;
            let (sa, sb) = (stages(ra), stages(rb));
            for (id, x) in &sa {
                match sb.get(id) {
                    Some(y) => {
                        let key = |s: &Value| s["key"].as_str().unwrap_or_default().to_string();
                        if x["key"] == y["key"] {
                            d.same += 1;
                        } else if outputs(&key(x)).is_some_and(|o| Some(o) == outputs(&key(y))) {
                            d.same_bytes.push(id.clone());
                        } else {
                            d.differ.push(id.clone());
                        }
                        d.params.extend(param_changes(id, &x["params"], &y["params"], workspace));
                    }
                    None => d.only_before.push(id.clone()),
                }
            }
            d.only_after = sb.keys().filter(|id| !sa.contains_key(*id)).cloned().collect();
            d.reran = sb.iter().filter(|(_, s)| s["outcome"] == "ran").map(|(id, _)| id.clone()).collect();
        }
        _ => d.notes.push(
            "parameters and stages are compared between run records; a report folder or evidence.json has none".into(),
        ),
    }
    match (&a.evidence, &b.evidence) {
        (Some(ea), Some(eb)) => {
            let (fa, fb) = (evidence::figures(ea), evidence::figures(eb));
            let names: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
            d.compared = names.len();
            for name in names {
                let (x, y) = (fa.get(name), fb.get(name));
                if x == y && !all {
                    continue;
                }
                let change = match (x.and_then(Value::as_f64), y.and_then(Value::as_f64)) {
                    (Some(x), Some(y)) => Some(y - x),
                    _ => None,
                };
                d.figures.push(FigureChange { figure: name.clone(), before: x.cloned(), after: y.cloned(), change });
            }
            d.clusters = Some(evidence::match_clusters(&clusters(ea), &clusters(eb)));
        }
        _ => d.notes.push("a run without a report (or evidence.json) has no figures to compare".into()),
    }
    d
}

fn overrides(side: &Side) -> Vec<String> {
    side.record
        .as_ref()
        .and_then(|r| r["overrides"].as_array())
        .map(|o| o.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect())
        .unwrap_or_default()
}

fn stages(record: &Value) -> BTreeMap<String, Value> {
    record["stages"]
        .as_array()
        .map(|s| s.iter().map(|s| (s["id"].as_str().unwrap_or_default().to_string(), s.clone())).collect())
        .unwrap_or_default()
}

fn param_changes(stage: &str, a: &Value, b: &Value, workspace: &Path) -> Vec<ParamChange> {
    let split = |v: &Value| -> BTreeMap<String, String> {
        evidence::key_values(v, workspace)
            .into_iter()
            .filter_map(|l| l.split_once(" = ").map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    };
    let (x, y) = (split(a), split(b));
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    keys.into_iter()
        .filter(|k| x.get(*k) != y.get(*k))
        .map(|k| ParamChange {
            stage: stage.into(),
            param: k.clone(),
            before: x.get(k).cloned(),
            after: y.get(k).cloned(),
        })
        .collect()
}

/// The clusters of an evidence document as `diff` and `annotate` read them: a list of objects, each with a
/// non-negative `id`, `members` a list of image ids and, where given, a non-negative `size`; the first field that is
/// not is named.
fn check_clusters(evidence: &Value) -> Result<(), String> {
    let clusters = match &evidence["clusters"] {
        Value::Null => return Ok(()),
        Value::Array(list) => list,
        other => return Err(format!("`clusters`: expected a list of clusters, got {other}")),
    };
    for (i, c) in clusters.iter().enumerate() {
        let field = |name: &str| format!("`clusters[{i}].{name}`");
        if !c.is_object() {
            return Err(format!("`clusters[{i}]`: expected a cluster (an object), got {c}"));
        }
        if c["id"].as_u64().is_none() {
            return Err(format!("{}: expected a cluster number, got {}", field("id"), c["id"]));
        }
        if !c["size"].is_null() && c["size"].as_u64().is_none() {
            return Err(format!("{}: expected a number of images, got {}", field("size"), c["size"]));
        }
        match c["members"].as_array() {
            Some(m) if m.iter().all(Value::is_string) => {}
            _ => return Err(format!("{}: expected a list of image ids, got {}", field("members"), c["members"])),
        }
    }
    Ok(())
}

/// The clusters of an evidence document (checked by [`read_evidence`]): id and members.
pub fn clusters(evidence: &Value) -> Vec<(usize, Vec<String>)> {
    let records: Vec<evidence::ClusterRecord> =
        serde_json::from_value(evidence["clusters"].clone()).unwrap_or_default();
    records.into_iter().map(|c| (c.id, c.members)).collect()
}

fn shown(v: &Option<Value>) -> String {
    match v {
        None => "–".into(),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.fract() != 0.0).map_or_else(|| n.to_string(), |f| format!("{f:.4}"))
        }
        Some(v) => v.to_string(),
    }
}

fn signed(c: Option<f64>) -> String {
    c.map_or(String::new(), |c| if c.fract() == 0.0 { format!("{c:+}") } else { format!("{c:+.4}") })
}

impl Diff {
    /// How many figures differ (the listed ones may include equal ones, with `all`).
    pub fn differing(&self) -> usize {
        self.figures.iter().filter(|f| f.before != f.after).count()
    }

    /// Plain text, for a terminal.
    pub fn text(&self) -> String {
        let mut out = format!("before: {}\nafter:  {}\n", self.before, self.after);
        let (oa, ob) = &self.overrides;
        if !oa.is_empty() || !ob.is_empty() {
            out.push_str(&format!("overrides: [{}] → [{}]\n", oa.join(", "), ob.join(", ")));
        }
        if self.runs_compared {
            self.runs_text(&mut out);
        }
        out.push_str("\nfigures:\n");
        if self.figures.is_empty() {
            out.push_str(&format!("  none changed ({} compared)\n", self.compared));
        }
        let width = self.figures.iter().map(|f| f.figure.len()).max().unwrap_or(0);
        for f in &self.figures {
            out.push_str(&format!(
                "  {:width$}  {:>10} → {:<10} {}\n",
                f.figure,
                shown(&f.before),
                shown(&f.after),
                signed(f.change)
            ));
        }
        if let Some(m) = &self.clusters {
            out.push_str("\nclusters (matched by their members):\n");
            out.push_str(&clusters_text(m, "  "));
        }
        for n in &self.notes {
            out.push_str(&format!("\nnote: {n}\n"));
        }
        out
    }

    /// The parameters and stages of two run records, as [`Diff::text`] shows them.
    fn runs_text(&self, out: &mut String) {
        out.push_str("\nparameters that differ:\n");
        if self.params.is_empty() {
            out.push_str("  none\n");
        }
        for p in &self.params {
            out.push_str(&format!(
                "  {}.{}: {} → {}\n",
                p.stage,
                p.param,
                p.before.as_deref().unwrap_or("(unset)"),
                p.after.as_deref().unwrap_or("(unset)")
            ));
        }
        out.push_str(&format!(
            "\nstages: {} with different artefacts, {} the same{}{}{}\n",
            self.differ.len(),
            self.same,
            if self.same_bytes.is_empty() {
                String::new()
            } else {
                format!(", {} recomputed with the same bytes", self.same_bytes.len())
            },
            if self.only_before.is_empty() {
                String::new()
            } else {
                format!(", only before: {}", self.only_before.join(", "))
            },
            if self.only_after.is_empty() {
                String::new()
            } else {
                format!(", only after: {}", self.only_after.join(", "))
            },
        ));
        if !self.differ.is_empty() {
            out.push_str(&format!("  different: {}\n", self.differ.join(", ")));
        }
        if !self.same_bytes.is_empty() {
            out.push_str(&format!("  recomputed, same bytes: {}\n", self.same_bytes.join(", ")));
        }
        match self.reran.len() {
            0 => out.push_str("  the second run computed none\n"),
            n => out.push_str(&format!("  the second run computed {n}: {}\n", self.reran.join(", "))),
        }
    }

    /// Markdown, for a pull request or an audit trail.
    pub fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = format!("## hudd diff\n\nBefore: {}  \nAfter: {}\n\n", cell(&self.before), cell(&self.after));
        if self.runs_compared {
            out.push_str("### Parameters that differ\n\n| Stage | Parameter | Before | After |\n|---|---|---|---|\n");
            for p in &self.params {
                out.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    cell(&p.stage),
                    cell(&p.param),
                    cell(p.before.as_deref().unwrap_or("(unset)")),
                    cell(p.after.as_deref().unwrap_or("(unset)"))
                ));
            }
            out.push_str(&format!(
                "\n### Stages\n\n{} with different artefacts ({}), {} recomputed with the same bytes ({}), {} the \
                 same; the second run computed {}.\n\n",
                self.differ.len(),
                cell(&self.differ.join(", ")),
                self.same_bytes.len(),
                cell(&self.same_bytes.join(", ")),
                self.same,
                self.reran.len()
            ));
        }
        out.push_str(&format!(
            "### Figures\n\n{} compared, {} differ.\n\n| Figure | Before | After | Change |\n|---|---|---|---|\n",
            self.compared,
            self.differing()
        ));
        for f in &self.figures {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(&f.figure),
                cell(&shown(&f.before)),
                cell(&shown(&f.after)),
                signed(f.change)
            ));
        }
        if let Some(m) = &self.clusters {
            out.push_str("\n### Clusters, matched by their members\n\n");
            out.push_str(&clusters_text(m, "- "));
        }
        for n in &self.notes {
            out.push_str(&format!("\nNote: {n}\n"));
        }
        out
    }
}

fn clusters_text(m: &Matching, lead: &str) -> String {
    let ids = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
    let mut out = String::new();
    for (a, b) in &m.same {
        out.push_str(&format!("{lead}{a} → {b}: the same members\n"));
    }
    for (a, b, o) in &m.changed {
        out.push_str(&format!("{lead}{a} → {b}: {} images shared (Jaccard {:.2})\n", o.shared, o.jaccard));
    }
    for (a, parts) in &m.split {
        out.push_str(&format!("{lead}{a} split into {}\n", ids(parts)));
    }
    for (parts, b) in &m.merged {
        out.push_str(&format!("{lead}{} merged into {b}\n", ids(parts)));
    }
    if !m.gone.is_empty() {
        out.push_str(&format!("{lead}gone: {}\n", ids(&m.gone)));
    }
    if !m.new.is_empty() {
        out.push_str(&format!("{lead}new: {}\n", ids(&m.new)));
    }
    out
}
