//! The workflow engine, apart from the HUDD method: a TOML manifest becomes a checked DAG of stages, keys are computed
//! before anything runs, stale stages run (here or as Slurm jobs) and their outputs enter a content-addressed store.
//!
//! This file holds what every executor shares: [`plan`] (keys and freshness), [`execute`] (one stage, in this process
//! or alone in another: `hudd exec <key>`), [`finish`] (state, views, provenance) and the local executor [`run`].
//! The engine knows no stage by name; it looks kinds up in a [`Registry`].

pub mod diagnostic;
pub mod executor;
pub mod freshness;
pub mod gc;
pub mod graph;
pub mod manifest;
mod plan;
pub mod progress;
pub mod schedule;
pub mod slurm;
pub mod stage;
pub mod store;
pub mod targets;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use serde::Serialize;

use crate::engine::freshness::Freshness;
use crate::engine::manifest::Workflow;
use crate::engine::progress::Reporter;
use crate::engine::schedule::Schedule;
use crate::engine::stage::{Ancestor, InputArtefact, Registry, StageContext, StageError};
use crate::engine::store::{Entry, Spec, StateRecord, Store, StoreError, now};
use crate::runtime;

use plan::unknown_kind;
pub use plan::{Planned, plan};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stage `{stage}` reads {path}, which cannot be read: {source}")]
    External { stage: String, path: PathBuf, source: Box<StoreError> },
    #[error("unknown stage kind `{kind}` (this hudd knows: {known})")]
    UnknownKind { kind: String, known: String },
    #[error("the spec of key {key} was written for {kind} version {spec}, this hudd has version {ours}")]
    VersionMismatch { key: String, kind: String, spec: u32, ours: u32 },
    #[error("stage `{stage}` failed: {source}")]
    Stage { stage: String, source: StageError },
    #[error("stage `{stage}`: input `{slot}` comes from key {key}, which is not in the store (was its stage run?)")]
    InputMissing { stage: String, slot: String, key: String },
    #[error(
        "stage `{stage}` was planned with {name} = {planned}, but here it is {here}: its key would name other bytes \
         than it computes (plan and run it where it will run, or set the stage's `device`)"
    )]
    Environment { stage: String, name: String, planned: String, here: String },
    #[error("slurm: {0}")]
    Scheduler(String),
    /// Ctrl-C while following cluster jobs; the message says what became of them.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl EngineError {
    /// 1 for a failed quality gate, 3 for a stage waiting for a person, 130 for Ctrl-C, 2 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Stage { source: StageError::Gate { .. }, .. } => 1,
            EngineError::Stage { source: StageError::Blocked { .. }, .. } => 3,
            EngineError::Interrupted(_) => 130,
            _ => 2,
        }
    }
}

/// What [`execute`] did with a stage.
#[derive(Debug)]
pub struct Executed {
    pub entry: Entry,
    /// The spec under the stage's final key (its inputs' contents filled in).
    pub spec: Spec,
    /// The stage was planned under a provisional key, and once its inputs' contents were known its entry was
    /// already in the store: nothing ran (early cutoff).
    pub kept: bool,
}

/// The spec a stage runs under: every input resolved to its producer's final key and its output's content, and the
/// key computed from those contents. A producer planned under a provisional key is found through its alias.
pub fn resolve(store: &Store, spec: &Spec) -> Result<Spec, EngineError> {
    let mut resolved = spec.clone();
    for (slot, inputs) in resolved.material.inputs.iter_mut() {
        for input in inputs.iter_mut() {
            let producer = store.resolve(&input.key);
            let entry = store.entry(&producer).ok_or_else(|| EngineError::InputMissing {
                stage: spec.stage.clone(),
                slot: slot.clone(),
                key: producer.clone(),
            })?;
            let record = entry.outputs.get(&input.output).ok_or_else(|| EngineError::InputMissing {
                stage: spec.stage.clone(),
                slot: slot.clone(),
                key: producer.clone(),
            })?;
            input.key = producer;
            input.content = Some(record.digest());
        }
    }
    for key in resolved.material.upstream.values_mut() {
        *key = store.resolve(key);
    }
    resolved.key = resolved.material.key();
    Ok(resolved)
}

/// Runs one stage from its spec and commits its entry, unless the entry is already there once its inputs'
/// contents are known. Used by local runs and by `hudd exec`.
pub fn execute(
    store: &Store,
    registry: &Registry,
    planned: &Spec,
    threads: usize,
    reporter: &Reporter,
) -> Result<Executed, EngineError> {
    let kind = registry.get(&planned.material.kind).ok_or_else(|| unknown_kind(&planned.material.kind, registry))?;
    if kind.version() != planned.material.version {
        return Err(EngineError::VersionMismatch {
            key: planned.key.clone(),
            kind: planned.material.kind.clone(),
            spec: planned.material.version,
            ours: kind.version(),
        });
    }
    let spec = &resolve(store, planned)?;
    same_environment(kind, spec)?;
    // Two stages of one run (or two processes) may share a key: one computes, the other finds the entry.
    let _key_lock = store.lock_key(&spec.key)?;
    if store.state(&spec.key) == crate::engine::store::EntryState::Intact
        && let Some(entry) = store.entry(&spec.key)
    {
        store.write_spec(spec)?;
        store.write_alias(&planned.key, &spec.key)?;
        // Kept when the key moved once the inputs were known (early cutoff); otherwise another stage of the same
        // key computed it meanwhile.
        return Ok(Executed { entry, spec: spec.clone(), kept: planned.key != spec.key });
    }
    store.write_spec(spec)?;
    let (tmp, seconds) = run_in_working_folder(store, kind, spec, threads, reporter)?;
    let entry = store.commit(tmp, spec, kind.outputs(), seconds, Some(runtime::device_summary()))?;
    tracing::debug!(key = %spec.key, seconds = entry.seconds, "committed");
    store.write_alias(&planned.key, &spec.key)?;
    Ok(Executed { entry, spec: spec.clone(), kept: false })
}

/// What a stage's key says of the machine (its fingerprints: the device kind, compiled-in files) holds where it is
/// about to run: a key planned on a CPU host and run on a GPU node would otherwise name other bytes.
fn same_environment(kind: &dyn crate::engine::stage::StageKind, spec: &Spec) -> Result<(), EngineError> {
    for (name, here) in kind.fingerprints(&spec.material.params) {
        if let Some(planned) = spec.material.externals.get(&name)
            && *planned != here
        {
            return Err(EngineError::Environment { stage: spec.stage.clone(), name, planned: planned.clone(), here });
        }
    }
    Ok(())
}

/// Runs a resolved stage into a new working folder of the store (its outputs under `out/`), with its inputs'
/// entries; returns the folder, not yet committed, and the seconds the stage took.
fn run_in_working_folder(
    store: &Store,
    kind: &dyn crate::engine::stage::StageKind,
    spec: &Spec,
    threads: usize,
    reporter: &Reporter,
) -> Result<(tempfile::TempDir, f64), EngineError> {
    let mut inputs = BTreeMap::new();
    for (slot, keys) in &spec.material.inputs {
        let names = spec.input_stages.get(slot).map_or(&[][..], Vec::as_slice);
        let mut list = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let (stage, matrix) = names.get(i).cloned().unwrap_or_default();
            let path = store.output_path(&k.key, &k.output)?;
            list.push(InputArtefact { stage, output: k.output.clone(), key: k.key.clone(), path, matrix });
        }
        inputs.insert(slot.clone(), list);
    }
    let tmp = store.begin(&spec.key)?;
    let out_dir = tmp.path().join("out");
    let _span = tracing::info_span!("stage", id = %spec.stage, kind = %spec.material.kind).entered();
    tracing::debug!(key = %spec.key, dir = %tmp.path().display(), threads, "executing");
    let progress = reporter.stage(&spec.stage);
    let seed = spec.material.seed.unwrap_or(spec.seed);
    let started = Instant::now();
    let result = {
        let mut ctx = StageContext {
            stage_id: &spec.stage,
            workflow: &spec.workflow,
            seed,
            threads,
            progress: &progress,
            workspace: store.workspace(),
            inputs: &inputs,
            out_dir: &out_dir,
            outputs: kind.outputs(),
            lineage: if kind.deliverable() { lineage(store, spec) } else { Vec::new() },
            // The stages whose outputs it reads (their parameters are in their keys, so in this stage's).
            producers: inputs.values().flatten().filter_map(|a| ancestor(store, &a.key)).collect(),
            manifest: spec.manifest.as_ref(),
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kind.run(&spec.run_params(), &mut ctx)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(StageError::failed(format!("internal error (a bug in hudd, please report it): {what}")))
            })
    };
    drop(progress);
    result.map_err(|source| EngineError::Stage { stage: spec.stage.clone(), source })?;
    Ok((tmp, started.elapsed().as_secs_f64()))
}

/// What recomputing a stored entry gave: the output files whose bytes differ from the entry's (empty: the same
/// bytes), and the seconds it took.
#[derive(Debug)]
pub struct Reproduced {
    pub stage: String,
    pub key: String,
    pub differing: Vec<String>,
    pub seconds: f64,
}

/// Recomputes the entry of a fresh stage (`spec` with its final key) in a working folder, with `threads` threads,
/// and compares every output file's digest with the entry's; the entry is left as it was.
pub fn reproduce(
    store: &Store,
    registry: &Registry,
    spec: &Spec,
    threads: usize,
    reporter: &Reporter,
) -> Result<Reproduced, EngineError> {
    let kind = registry.get(&spec.material.kind).ok_or_else(|| unknown_kind(&spec.material.kind, registry))?;
    let spec = &resolve(store, spec)?;
    same_environment(kind, spec)?;
    let entry = store.entry(&spec.key).ok_or_else(|| EngineError::InputMissing {
        stage: spec.stage.clone(),
        slot: "(its own entry)".into(),
        key: spec.key.clone(),
    })?;
    let (tmp, seconds) = run_in_working_folder(store, kind, spec, threads, reporter)?;
    let again = crate::engine::store::digest_outputs(&tmp.path().join("out"), spec, kind.outputs())?;
    let files = |records: &BTreeMap<String, crate::engine::store::OutputRecord>| -> BTreeMap<String, String> {
        records.values().flat_map(|r| r.files.iter().map(|f| (f.path.clone(), f.blake3.clone()))).collect()
    };
    let (before, after) = (files(&entry.outputs), files(&again));
    let differing = before
        .keys()
        .chain(after.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|path| before.get(*path) != after.get(*path))
        .cloned()
        .collect();
    Ok(Reproduced { stage: spec.stage.clone(), key: spec.key.clone(), differing, seconds })
}

/// Every stage instance upstream of a deliverable (inputs, their inputs, ...) as its key names them
/// (`KeyMaterial::upstream`, the current run's, resolved to final keys), ordered by stage id (never by when they ran,
/// which a schedule decides). A stage whose spec or entry is gone from the store (`hudd gc`) is left out.
fn lineage(store: &Store, spec: &Spec) -> Vec<Ancestor> {
    let mut out: Vec<Ancestor> = spec.material.upstream.values().filter_map(|key| ancestor(store, key)).collect();
    out.sort_by(|a, b| (&a.stage, &a.key).cmp(&(&b.stage, &b.key)));
    out
}

/// The stage instance that computed the entry `key`, as its spec records it (none when gone from the store).
fn ancestor(store: &Store, key: &str) -> Option<Ancestor> {
    let (Ok(s), Some(entry)) = (store.read_spec(key), store.entry(key)) else { return None };
    let outputs = entry.outputs.iter().map(|(name, o)| (name.clone(), store.entry_dir(key).join("out").join(&o.path)));
    Some(Ancestor {
        stage: s.stage,
        kind: s.material.kind,
        version: s.material.version,
        key: key.to_string(),
        params: s.material.params,
        seed: s.material.seed,
        externals: s.material.externals,
        outputs: outputs.collect(),
    })
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stages run at once; default: the machine's cores.
    pub jobs: Option<usize>,
    /// Go on with everything that does not depend on a failure.
    pub keep_going: bool,
    /// libtorch threads of each stage whose bytes do not depend on them (`Stage::SETTINGS`); default: the cores
    /// not taken by the stages already running when it starts. Stages whose bytes depend on their thread count
    /// take it from their parameters, which are in their keys.
    pub threads: Option<usize>,
}

impl RunOptions {
    /// Stages at once.
    pub fn jobs(&self) -> usize {
        self.jobs.unwrap_or_else(runtime::cores).max(1)
    }

    /// Threads for a stage that starts while `running` others run.
    pub fn threads_beside(&self, running: usize) -> usize {
        self.threads.unwrap_or_else(|| runtime::cores().saturating_sub(running)).max(1)
    }
}

/// What happened to one stage in a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Its entry was already in the store.
    Hit,
    /// Planned to run because an input was to be recomputed; that input came out unchanged, so its entry was
    /// already in the store (early cutoff).
    Kept,
    Ran {
        seconds: f64,
    },
    Failed {
        error: String,
        exit_code: u8,
    },
    /// Not run: it depends on a failed stage, or the run stopped at the first failure.
    Skipped {
        because: String,
    },
    /// Handed to a cluster scheduler and not followed (`--detach`): job `job` will compute it.
    Submitted {
        job: String,
    },
}

/// The outcome of every stage, indexed like `workflow.stages`.
#[derive(Debug)]
pub struct RunReport {
    pub outcomes: Vec<Outcome>,
    pub keys: Vec<String>,
    pub provenance: PathBuf,
}

impl RunReport {
    pub fn ran(&self) -> usize {
        self.outcomes.iter().filter(|o| matches!(o, Outcome::Ran { .. })).count()
    }

    pub fn hits(&self) -> usize {
        self.outcomes.iter().filter(|o| matches!(o, Outcome::Hit)).count()
    }

    /// Stages kept by early cutoff: their inputs were recomputed and came out unchanged.
    pub fn kept(&self) -> usize {
        self.outcomes.iter().filter(|o| matches!(o, Outcome::Kept)).count()
    }

    /// 0 when every stage is done, else the most serious failure's code (2 over 1 over 3).
    pub fn exit_code(&self) -> u8 {
        let codes: BTreeSet<u8> = self
            .outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Failed { exit_code, .. } => Some(*exit_code),
                _ => None,
            })
            .collect();
        [2, 1, 3].into_iter().find(|c| codes.contains(c)).unwrap_or(0)
    }
}

#[derive(Serialize)]
struct RunRecord<'a> {
    workflow: &'a str,
    manifest: String,
    manifest_hash: &'a str,
    overrides: Vec<String>,
    /// The stages asked for (empty: the whole workflow).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    targets: &'a [String],
    seed: u64,
    started: String,
    ended: String,
    hudd_version: &'static str,
    libtorch_version: &'static str,
    executor: &'static str,
    device: Option<String>,
    jobs: usize,
    threads_per_stage: usize,
    hits: usize,
    /// Stages kept by early cutoff.
    kept: usize,
    ran: usize,
    stages: Vec<StageRecord<'a>>,
}

#[derive(Serialize)]
struct StageRecord<'a> {
    id: &'a str,
    kind: &'a str,
    key: &'a str,
    params: &'a serde_json::Value,
    seed: Option<u64>,
    reasons: Vec<String>,
    #[serde(flatten)]
    outcome: &'a Outcome,
}

/// A planned run: the plan, the stale stages, and each stage's outcome so far (fresh stages are hits).
pub(crate) type Prepared = (Planned, BTreeSet<usize>, Vec<Option<Outcome>>);

/// Plans a run (under the caller's workspace lock): the plan, the stale stages with their specs written for
/// `hudd exec`, and the outcomes so far (fresh stages are hits).
pub(crate) fn prepare(store: &Store, workflow: &Workflow, registry: &Registry) -> Result<Prepared, EngineError> {
    let planned = plan(store, workflow, registry)?;
    let stale: BTreeSet<usize> = planned.stale().collect();
    for &i in &stale {
        store.write_spec(&planned.specs[i])?;
    }
    let outcomes = (0..workflow.stages.len()).map(|i| (!stale.contains(&i)).then_some(Outcome::Hit)).collect();
    Ok((planned, stale, outcomes))
}

/// Runs every stale stage of a workflow, in parallel along the DAG, and records the run.
pub fn run(
    store: &Store,
    workflow: &Workflow,
    registry: &Registry,
    options: &RunOptions,
    reporter: &Reporter,
) -> Result<RunReport, EngineError> {
    let started = now();
    let _lock = store.lock(|message| reporter.line(message))?;
    let (planned, stale, mut outcomes) = prepare(store, workflow, registry)?;
    let n = workflow.stages.len();
    let jobs = options.jobs();
    if !stale.is_empty() {
        reporter.line(&format!("{}: {} of {n} stages to run", workflow.name, stale.len()));
    }

    let mut schedule = Schedule::new(&workflow.dag, &stale);
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<(usize, Result<Executed, EngineError>)>();
        let mut running = 0usize;
        loop {
            while running < jobs {
                let Some(i) = schedule.start_next() else { break };
                let tx = done_tx.clone();
                let spec = &planned.specs[i];
                let reasons: Vec<String> = match &planned.decisions[i] {
                    Freshness::Stale(r) => r.iter().map(|r| r.to_string()).collect(),
                    Freshness::Fresh => Vec::new(),
                };
                reporter.line(&format!("{}: running ({})", spec.stage, reasons.join("; ")));
                let threads = options.threads_beside(running);
                scope.spawn(move || {
                    let result = execute(store, registry, spec, threads, reporter);
                    let _ = tx.send((i, result));
                });
                running += 1;
            }
            if running == 0 {
                break;
            }
            let (i, result) = done_rx.recv().expect("a worker always reports");
            running -= 1;
            let stage = &workflow.stages[i].id;
            match result {
                Ok(done) if done.kept => {
                    reporter.line(&format!("{stage}: kept, its inputs came out unchanged"));
                    outcomes[i] = Some(Outcome::Kept);
                    schedule.finish(i);
                }
                Ok(done) => {
                    reporter.line(&format!("{stage}: done in {:.1} s", done.entry.seconds));
                    outcomes[i] = Some(Outcome::Ran { seconds: done.entry.seconds });
                    schedule.finish(i);
                }
                Err(e) => {
                    reporter.line(&format!("{stage}: FAILED: {e}"));
                    outcomes[i] = Some(Outcome::Failed { error: e.to_string(), exit_code: e.exit_code() });
                    for d in schedule.fail(i) {
                        outcomes[d] = Some(Outcome::Skipped { because: format!("needs `{stage}`, which failed") });
                    }
                    if !options.keep_going {
                        schedule.stop();
                    }
                }
            }
        }
    });
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Skipped { because: "the run stopped at the first failure".into() }))
        .collect();

    let device = (!stale.is_empty()).then(runtime::device_summary);
    let threads = options.threads_beside(jobs - 1);
    finish(store, workflow, registry, &planned, outcomes, Finish { started, jobs, threads, device, executor: "local" })
}

/// How a run went, beside its outcomes, for the provenance record.
pub(crate) struct Finish {
    pub started: String,
    pub jobs: usize,
    pub threads: usize,
    pub device: Option<String>,
    pub executor: &'static str,
}

/// Records a run whatever executed it: the workflow's state, the views under `reports/`, the provenance record.
pub(crate) fn finish(
    store: &Store,
    workflow: &Workflow,
    registry: &Registry,
    planned: &Planned,
    outcomes: Vec<Outcome>,
    how: Finish,
) -> Result<RunReport, EngineError> {
    let n = workflow.stages.len();
    // A stage planned under a provisional key ran (or was kept) under its final one.
    let specs: Vec<Spec> = (planned.specs.iter())
        .map(|spec| match store.resolve(&spec.key) {
            key if key != spec.key => store.read_spec(&key).unwrap_or_else(|_| spec.clone()),
            _ => spec.clone(),
        })
        .collect();
    // Remember what every finished stage ran with, and show its outputs under reports/.
    let mut state = store.read_state(&workflow.name);
    let mut views = store.read_views(&workflow.name);
    for (i, outcome) in outcomes.iter().enumerate() {
        if matches!(outcome, Outcome::Hit | Outcome::Kept | Outcome::Ran { .. }) {
            let spec = &specs[i];
            state.insert(spec.stage.clone(), StateRecord { key: spec.key.clone(), material: spec.material.clone() });
            if registry.get(&spec.material.kind).is_some_and(|k| k.deliverable()) {
                publish(store, workflow, registry, spec)?;
            } else {
                link_view(store, workflow, spec)?;
            }
            views.insert(spec.stage.clone(), spec.key.clone());
        }
    }
    store.write_state(&workflow.name, &state)?;
    store.write_views(&workflow.name, &views)?;

    let ran = outcomes.iter().filter(|o| matches!(o, Outcome::Ran { .. })).count();
    let hits = outcomes.iter().filter(|o| matches!(o, Outcome::Hit)).count();
    let kept = outcomes.iter().filter(|o| matches!(o, Outcome::Kept)).count();
    let record = RunRecord {
        workflow: &workflow.name,
        manifest: workflow.path.display().to_string(),
        manifest_hash: &workflow.manifest_hash,
        overrides: workflow.overrides.iter().map(|o| o.to_string()).collect(),
        targets: &workflow.targets,
        seed: workflow.seed,
        started: how.started.clone(),
        ended: now(),
        hudd_version: env!("CARGO_PKG_VERSION"),
        libtorch_version: runtime::LIBTORCH_VERSION,
        executor: how.executor,
        device: how.device,
        jobs: how.jobs,
        threads_per_stage: how.threads,
        hits,
        kept,
        ran,
        stages: (0..n)
            .map(|i| StageRecord {
                id: &workflow.stages[i].id,
                kind: &workflow.stages[i].kind,
                key: &specs[i].key,
                params: &workflow.stages[i].params,
                seed: planned.specs[i].material.seed,
                reasons: match &planned.decisions[i] {
                    Freshness::Stale(r) => r.iter().map(|r| r.to_string()).collect(),
                    Freshness::Fresh => Vec::new(),
                },
                outcome: &outcomes[i],
            })
            .collect(),
    };
    let stamp = how.started.replace([':', '.'], "-");
    let provenance = store.write_run(&format!("{stamp}-{}", workflow.name), &record)?;
    Ok(RunReport { outcomes, keys: specs.iter().map(|s| s.key.clone()).collect(), provenance })
}

/// `reports/<workflow>/<stage-id>/<output>`: relative links into the stage's entry, for browsing.
fn link_view(store: &Store, workflow: &Workflow, spec: &Spec) -> Result<(), StoreError> {
    let Some(entry) = store.entry(&spec.key) else { return Ok(()) };
    let view = store.workspace().join("reports").join(&workflow.name).join(&spec.stage);
    std::fs::create_dir_all(&view).map_err(|source| StoreError::Io { path: view.clone(), source })?;
    for record in entry.outputs.values() {
        let link = view.join(&record.path);
        let target = store.entry_dir(&spec.key).join("out").join(&record.path);
        if let Ok(meta) = std::fs::symlink_metadata(&link) {
            let _ = if meta.is_dir() { std::fs::remove_dir_all(&link) } else { std::fs::remove_file(&link) };
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io { path: parent.to_path_buf(), source })?;
        }
        let relative = relative_path(link.parent().unwrap_or(&view), &target);
        std::os::unix::fs::symlink(&relative, &link).map_err(|source| StoreError::Io { path: link.clone(), source })?;
    }
    Ok(())
}

/// A deliverable's outputs, copied (not linked: the folder is meant to be mailed or committed) to
/// `reports/<workflow>/`, or to `reports/<workflow>/<stage-id>/` when the workflow has several deliverables.
fn publish(store: &Store, workflow: &Workflow, registry: &Registry, spec: &Spec) -> Result<(), StoreError> {
    let Some(entry) = store.entry(&spec.key) else { return Ok(()) };
    let deliverables =
        workflow.manifest_kinds.iter().filter(|kind| registry.get(kind).is_some_and(|k| k.deliverable())).count();
    let mut dest = store.workspace().join("reports").join(&workflow.name);
    if deliverables > 1 {
        dest.push(&spec.stage);
    }
    let out = store.entry_dir(&spec.key).join("out");
    // What the last publication wrote goes first, so that no stale image outlives its report.
    let list = dest.join(".published");
    for rel in std::fs::read_to_string(&list).unwrap_or_default().lines().filter(|l| !l.is_empty() && !l.contains(".."))
    {
        let _ = std::fs::remove_file(dest.join(rel));
    }
    let mut written = String::new();
    for record in entry.outputs.values() {
        let base = if record.dir {
            out.join(&record.path)
        } else {
            out.join(&record.path).parent().map(Path::to_path_buf).unwrap_or(out.clone())
        };
        for file in &record.files {
            let from = out.join(&file.path);
            let rel = from.strip_prefix(&base).unwrap_or(Path::new(&file.path));
            let to = dest.join(rel);
            let parent = to.parent().unwrap_or(&dest);
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io { path: parent.to_path_buf(), source })?;
            if let Ok(meta) = std::fs::symlink_metadata(&to)
                && meta.is_dir()
            {
                std::fs::remove_dir_all(&to).map_err(|source| StoreError::Io { path: to.clone(), source })?;
            }
            // Through a temporary name, so a reader never sees half a report.
            let tmp = parent.join(format!(".{}.part", to.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
            std::fs::copy(&from, &tmp).map_err(|source| StoreError::Io { path: tmp.clone(), source })?;
            std::fs::rename(&tmp, &to).map_err(|source| StoreError::Io { path: to.clone(), source })?;
            written.push_str(&format!("{}\n", rel.display()));
        }
    }
    std::fs::write(&list, written).map_err(|source| StoreError::Io { path: list.clone(), source })
}

/// The manifest's path as the key sees it: relative to the workspace where it lies inside, so that
/// `workflows/x.toml` and `./workflows/x.toml` give one key.
pub(crate) fn manifest_path(workflow: &Workflow, workspace: &Path) -> String {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let path = canonical(&workflow.path);
    path.strip_prefix(canonical(workspace)).map(Path::to_path_buf).unwrap_or(path).display().to_string()
}

/// The path from folder `from` to `to`, both inside the workspace.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_folder() {
        assert_eq!(
            relative_path(Path::new("/w/reports/q/train"), Path::new("/w/.hudd/store/ab/abc/out/w.bin")),
            PathBuf::from("../../../.hudd/store/ab/abc/out/w.bin")
        );
    }
}
