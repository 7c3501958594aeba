//! Subcommands over a workflow: `check`, `dag`, `plan`, `run`, `reproduce`, `status` and `exec` (a stage a
//! Slurm job runs).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::engine::executor::ExecutorKind;
use crate::engine::freshness::Freshness;
use crate::engine::manifest::{self, Override, Workflow};
use crate::engine::progress::Reporter;
use crate::engine::stage::Registry;
use crate::engine::store::{EntryState, Store};
use crate::engine::{self, Outcome, RunOptions};

use super::{CliError, DagFormat, Workspace};

pub(super) fn check(
    manifests: &[PathBuf],
    set: &[Override],
    registry: &Registry,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let mut failed = false;
    for path in manifests {
        match manifest::load(path, set, registry) {
            Ok(w) => writeln!(out, "{}: ok ({} stages)", path.display(), w.stages.len())?,
            Err(e) => {
                failed = true;
                writeln!(err, "{e}")?;
            }
        }
    }
    Ok(if failed { 2 } else { 0 })
}

pub(super) fn dag(
    manifest: &Path,
    set: &[Override],
    format: DagFormat,
    registry: &Registry,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let w = manifest::load(manifest, set, registry)?;
    write!(out, "{}", render_dag(&w, format))?;
    Ok(0)
}

pub(super) fn plan(
    ws: &Workspace<'_>,
    manifest: &Path,
    targets: &[String],
    set: &[Override],
    json: bool,
    registry: &Registry,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let w = manifest::load(manifest, set, registry)?.restrict(targets)?;
    let store = ws.open()?;
    let planned = engine::plan(&store, &w, registry)?;
    if json {
        let rows: Vec<serde_json::Value> = w
            .stages
            .iter()
            .zip(&planned.specs)
            .zip(&planned.decisions)
            .map(|((s, spec), d)| {
                serde_json::json!({
                    "stage": s.id,
                    "kind": s.kind,
                    "key": spec.key,
                    "state": if d.is_fresh() { "fresh" } else { "stale" },
                    "reasons": match d { Freshness::Stale(r) => r.clone(), Freshness::Fresh => Vec::new() },
                })
            })
            .collect();
        let doc = serde_json::json!({ "workflow": w.name, "stages": rows });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("plan serialises"))?;
    } else {
        let width = w.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
        for &i in w.dag.order() {
            let (state, why) = match &planned.decisions[i] {
                Freshness::Fresh => ("fresh", String::new()),
                Freshness::Stale(r) => ("stale", r.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ")),
            };
            writeln!(out, "{state}  {:width$}  {why}", w.stages[i].id)?;
        }
        let stale = planned.stale().count();
        writeln!(out, "{stale} of {} stages would run", w.stages.len())?;
        let behind = planned.views_behind(&store, &w.name);
        if !behind.is_empty() {
            writeln!(
                out,
                "{} fresh stages are not shown under reports/ yet ({}): `hudd run` shows them, running nothing",
                behind.len(),
                behind.join(", ")
            )?;
        }
    }
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    ws: &Workspace<'_>,
    manifest: &Path,
    targets: &[String],
    set: &[Override],
    options: RunOptions,
    executor: Option<ExecutorKind>,
    detach: bool,
    registry: &Registry,
    err: &mut dyn Write,
    reporter: &Reporter,
) -> Result<u8, CliError> {
    let w = manifest::load(manifest, set, registry)?.restrict(targets)?;
    let store = ws.open()?;
    let executor = executor.or(w.executor.default).unwrap_or(ExecutorKind::Local);
    if detach && executor != ExecutorKind::Slurm {
        return Err(CliError::Usage("--detach needs --executor slurm".into()));
    }
    let report = match executor {
        ExecutorKind::Local => engine::run(&store, &w, registry, &options, reporter)?,
        ExecutorKind::Slurm => {
            let program =
                std::env::current_exe().map_err(|e| CliError::Usage(format!("cannot find the hudd binary: {e}")))?;
            let options = crate::engine::slurm::SlurmOptions { detach, program };
            crate::engine::slurm::run(&store, &w, registry, &w.executor, &options, reporter)?
        }
    };
    let submitted = report.outcomes.iter().filter(|o| matches!(o, Outcome::Submitted { .. })).count();
    for (s, o) in w.stages.iter().zip(&report.outcomes) {
        match o {
            Outcome::Failed { error, .. } => writeln!(err, "failed: {}: {error}", s.id)?,
            Outcome::Skipped { because } => writeln!(err, "skipped: {} ({because})", s.id)?,
            _ => {}
        }
    }
    if submitted > 0 {
        writeln!(
            err,
            "{}: {submitted} stages submitted to Slurm; `hudd status {}` follows them, and `hudd run` again (it submits nothing new) updates reports/ once they are done",
            w.name,
            manifest.display()
        )?;
        return Ok(0);
    }
    writeln!(
        err,
        "{}: {} ran, {} cached, {}{} failed or skipped; outputs under {}",
        w.name,
        report.ran(),
        report.hits(),
        match report.kept() {
            0 => String::new(),
            k => format!("{k} kept (their inputs came out unchanged), "),
        },
        w.stages.len() - report.ran() - report.hits() - report.kept(),
        ws.dir.join("reports").join(&w.name).display()
    )?;
    Ok(report.exit_code())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn reproduce(
    ws: &Workspace<'_>,
    manifest: &Path,
    targets: &[String],
    set: &[Override],
    threads: Option<usize>,
    registry: &Registry,
    out: &mut dyn Write,
    reporter: &Reporter,
) -> Result<u8, CliError> {
    // The targets and what they read (for their keys), of which only the targets are recomputed.
    let w = manifest::load(manifest, set, registry)?.restrict(targets)?;
    let chosen = w.matching(targets)?;
    let store = ws.open()?;
    let _lock = store.lock(|message| reporter.line(message))?;
    let planned = engine::plan(&store, &w, registry)?;
    let threads = threads.unwrap_or_else(crate::runtime::cores);
    let (mut same, mut differ, mut stale) = (0, 0, 0);
    for i in chosen {
        let id = &w.stages[i].id;
        if !planned.decisions[i].is_fresh() {
            writeln!(out, "stale      {id}: run it first, then reproduce it")?;
            stale += 1;
            continue;
        }
        let done = engine::reproduce(&store, registry, &planned.specs[i], threads, reporter)?;
        if done.differing.is_empty() {
            writeln!(out, "same bytes {id} ({:.1} s)", done.seconds)?;
            same += 1;
        } else {
            writeln!(out, "DIFFERENT  {id}: {}", done.differing.join(", "))?;
            differ += 1;
        }
    }
    writeln!(
        out,
        "{same} reproduced with the same bytes, {differ} with other bytes, {stale} stale ({threads} threads)"
    )?;
    Ok(if differ > 0 { 1 } else { 0 })
}

pub(super) fn status(
    ws: &Workspace<'_>,
    manifest: Option<&Path>,
    registry: &Registry,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let store = ws.open()?;
    match manifest {
        Some(path) => status_of_workflow(&store, &manifest::load(path, &[], registry)?, registry, out)?,
        None => {
            let runs = store.runs(10);
            if runs.is_empty() {
                writeln!(out, "no runs recorded in {}", store.root().display())?;
            }
            for (_, run) in runs {
                writeln!(
                    out,
                    "{}  {:20}  {} ran, {} cached  ({})",
                    run["started"].as_str().unwrap_or("?"),
                    run["workflow"].as_str().unwrap_or("?"),
                    run["ran"],
                    run["hits"],
                    run["manifest"].as_str().unwrap_or("?"),
                )?;
            }
        }
    }
    Ok(0)
}

pub(super) fn exec(
    ws: &Workspace<'_>,
    key: &str,
    threads: Option<usize>,
    registry: &Registry,
    err: &mut dyn Write,
    reporter: &Reporter,
) -> Result<u8, CliError> {
    if !crate::engine::store::valid_key(key) {
        return Err(CliError::Usage(format!(
            "`{key}` is not a key (64 hexadecimal digits, as `hudd plan --json` shows)"
        )));
    }
    let store = ws.open()?;
    let resolved = store.resolve(key);
    if store.state(&resolved) == EntryState::Intact {
        writeln!(err, "{key}: already in the store")?;
        return Ok(0);
    }
    let spec = store.read_spec(key)?;
    let _exec = store.lock_exec(false, |m| {
        let _ = writeln!(err, "{m}");
    })?;
    let threads = threads.unwrap_or_else(crate::runtime::cores);
    let done = engine::execute(&store, registry, &spec, threads, reporter)?;
    if done.kept {
        writeln!(err, "{}: kept, its inputs came out unchanged ({})", spec.stage, done.spec.key)?;
    } else {
        writeln!(err, "{}: done in {:.1} s ({})", spec.stage, done.entry.seconds, done.spec.key)?;
    }
    Ok(0)
}

pub(super) fn status_of_workflow(
    store: &Store,
    w: &Workflow,
    registry: &Registry,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let planned = engine::plan(store, w, registry)?;
    let width = w.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    for &i in w.dag.order() {
        let spec = &planned.specs[i];
        let detail = match (&planned.decisions[i], store.entry(&spec.key)) {
            (Freshness::Fresh, Some(e)) => format!("done {} in {:.1} s", e.created, e.seconds),
            (Freshness::Fresh, None) => "done".into(),
            (Freshness::Stale(r), _) => match crate::engine::slurm::job_status(store, &spec.key) {
                Some(job) => job,
                None => r.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; "),
            },
        };
        let state = if planned.decisions[i].is_fresh() { "fresh" } else { "stale" };
        writeln!(out, "{state}  {:width$}  {}  {detail}", w.stages[i].id, &spec.key[..12])?;
    }
    Ok(())
}

pub fn render_dag(w: &Workflow, format: DagFormat) -> String {
    let mut s = String::new();
    let edges = w.stages.iter().enumerate().flat_map(|(i, stage)| {
        stage
            .inputs
            .iter()
            .flat_map(move |(slot, refs)| refs.iter().map(move |r| (r.stage, i, r.output.as_str(), slot.as_str())))
    });
    match format {
        DagFormat::Dot => {
            s.push_str(&format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];\n", w.name));
            for stage in &w.stages {
                s.push_str(&format!("  \"{}\" [label=\"{}\\n({})\"];\n", stage.id, stage.id, stage.kind));
            }
            for (a, b, output, slot) in edges {
                s.push_str(&format!(
                    "  \"{}\" -> \"{}\" [label=\"{output} -> {slot}\"];\n",
                    w.stages[a].id, w.stages[b].id
                ));
            }
            s.push_str("}\n");
        }
        DagFormat::Mermaid => {
            s.push_str("flowchart LR\n");
            for (i, stage) in w.stages.iter().enumerate() {
                s.push_str(&format!("  s{i}[\"{}<br/>({})\"]\n", stage.id, stage.kind));
            }
            for (a, b, output, slot) in edges {
                s.push_str(&format!("  s{a} -->|{output} → {slot}| s{b}\n"));
            }
        }
    }
    s
}
