//! Fake stage kinds and a throwaway workspace, so the engine is exercised without tch.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hudd::engine::manifest::{self, Override, Workflow};
use hudd::engine::progress::Reporter;
use hudd::engine::stage::{
    ArtefactKind, InputSlot, Invalid, OutputSpec, Params, Registry, Stage, StageContext, StageError,
};
use hudd::engine::store::Store;
use hudd::engine::{self, RunOptions, RunReport};
use serde::{Deserialize, Serialize};

/// The one artefact kind of the fake stages.
const TEXT: ArtefactKind = ArtefactKind { name: "text", doc: "a text file" };

/// A global clock: every stage start and end takes a tick, so tests can check the order stages ran in.
static CLOCK: AtomicU64 = AtomicU64::new(0);

fn tick() -> u64 {
    CLOCK.fetch_add(1, Ordering::SeqCst)
}

/// `echo`: writes its text, its seed and its inputs' contents; can sleep and fail on request.
pub struct Echo;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoParams {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub fail: bool,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A file each execution appends a line to, to count executions.
    #[serde(default)]
    pub log: Option<PathBuf>,
}

impl Params for EchoParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.sleep_ms > 10_000 {
            out.push(Invalid::new("sleep_ms", format!("must be at most 10000, got {}", self.sleep_ms)));
        }
        out
    }
}

impl Stage for Echo {
    type Params = EchoParams;
    const KIND: &'static str = "echo";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] =
        &[InputSlot { name: "from", accepts: &[TEXT], many: true, required: false, doc: "" }];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "out", kind: TEXT, path: "out.txt", doc: "" },
        OutputSpec { name: "ticks", kind: TEXT, path: "ticks.txt", doc: "" },
    ];
    const USES_SEED: bool = true;

    fn run(&self, p: &EchoParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let start = tick();
        if let Some(log) = &p.log {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
            writeln!(f, "{}", ctx.stage_id).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(p.sleep_ms));
        if p.fail {
            // A failing stage may have written part of its outputs already.
            std::fs::write(ctx.output("out")?, "partial").unwrap();
            return Err(StageError::failed("asked to fail"));
        }
        let mut text = format!("{} seed={}", p.text, ctx.seed);
        for input in ctx.inputs("from") {
            let content = if input.path.is_dir() {
                let mut names: Vec<String> = std::fs::read_dir(&input.path)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                names.sort();
                names.join(",")
            } else {
                std::fs::read_to_string(&input.path).unwrap()
            };
            text.push_str(&format!("\n<{}:{content}>", input.stage));
        }
        std::fs::write(ctx.output("out")?, text).unwrap();
        let end = tick();
        std::fs::write(ctx.output("ticks")?, format!("{start} {end}")).unwrap();
        Ok(())
    }
}

/// What the `machine` stage's key says of the machine it runs on (a stand-in for the device kind a model stage keys).
pub static MACHINE: std::sync::Mutex<&str> = std::sync::Mutex::new("cpu");

/// `machine`: writes nothing of note; its fingerprint is [`MACHINE`].
pub struct Machine;

impl Stage for Machine {
    type Params = EchoParams;
    const KIND: &'static str = "machine";
    const VERSION: u32 = 1;
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec { name: "out", kind: TEXT, path: "out.txt", doc: "" }];

    fn fingerprints(_p: &EchoParams) -> Vec<(String, String)> {
        vec![("device".into(), MACHINE.lock().unwrap().to_string())]
    }

    fn run(&self, p: &EchoParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        std::fs::write(ctx.output("out")?, &p.text).unwrap();
        Ok(())
    }
}

/// `files`: copies an external folder into the store, offered as text, heatmaps or clusters.
pub struct Files;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesParams {
    pub path: PathBuf,
}

impl Params for FilesParams {}

impl Stage for Files {
    type Params = FilesParams;
    const KIND: &'static str = "files";
    const VERSION: u32 = 1;
    // One folder, offered as each artefact kind a test crafts by hand.
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "copy", kind: TEXT, path: "copy/", doc: "" },
        OutputSpec { name: "heatmaps", kind: hudd::artefact::HEATMAPS, path: "copy/", doc: "" },
        OutputSpec { name: "clusters", kind: hudd::artefact::CLUSTERS, path: "copy/", doc: "" },
        OutputSpec { name: "selection", kind: hudd::artefact::SELECTION, path: "copy/", doc: "" },
    ];

    fn external_paths(p: &FilesParams) -> Vec<PathBuf> {
        vec![p.path.clone()]
    }

    fn run(&self, p: &FilesParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let src = ctx.resolve(&p.path);
        let dst = ctx.output("copy")?;
        for e in std::fs::read_dir(&src).map_err(|e| StageError::io(&src, e))? {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
        Ok(())
    }
}

/// The parameters of a crafted artefact: its `text` (written as it is); `strategy` and `seed` only name instances.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextParams {
    pub text: String,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub seed: Option<u64>,
}

impl Params for TextParams {}

/// A test-only stage kind `crafted-<output>` writing its `text` as one artefact a test makes by hand (a test's
/// results or summary, a variance, compare, rules, confirm or recovery table), under the file name and output name
/// the real stage gives it.
macro_rules! crafted {
    ($ty:ident, $kind:literal, $output:literal, $artefact:ident, $path:literal) => {
        pub struct $ty;

        impl Stage for $ty {
            type Params = TextParams;
            const KIND: &'static str = $kind;
            const VERSION: u32 = 1;
            const OUTPUTS: &'static [OutputSpec] =
                &[OutputSpec { name: $output, kind: hudd::artefact::$artefact, path: $path, doc: "" }];

            fn run(&self, p: &TextParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
                let path = ctx.output($output)?;
                std::fs::write(&path, &p.text).map_err(|e| StageError::io(&path, e))
            }
        }
    };
}

crafted!(CraftedResults, "crafted-results", "results", TEST_RESULTS, "results.csv");
crafted!(CraftedSummary, "crafted-summary", "summary", TEST_SUMMARY, "summary.json");
crafted!(CraftedExplanations, "crafted-explanations", "explanations", EXPLANATIONS, "clusters.csv");
crafted!(CraftedCompare, "crafted-compare", "compare", COMPARE_SUMMARY, "summary.json");
crafted!(CraftedRuns, "crafted-runs", "runs", COMPARE_RUNS, "runs.csv");
crafted!(CraftedRcc, "crafted-rcc", "rcc", COMPARE_RCC, "rcc.csv");
crafted!(CraftedRules, "crafted-rules", "rules", RULES, "rules.json");
crafted!(CraftedConfirmations, "crafted-confirmations", "confirmations", CONFIRMATIONS, "confirm.json");
crafted!(CraftedRecovery, "crafted-recovery", "recovery", RECOVERY, "recovery.json");

/// The shipped stage kinds with `files` and every `crafted-<output>` kind.
pub fn registry_with_crafted() -> Registry {
    hudd::stages::registry()
        .with(Files)
        .with(CraftedResults)
        .with(CraftedSummary)
        .with(CraftedExplanations)
        .with(CraftedCompare)
        .with(CraftedRuns)
        .with(CraftedRcc)
        .with(CraftedRules)
        .with(CraftedConfirmations)
        .with(CraftedRecovery)
}

/// `gate`: fails its quality gate when `pass` is false.
pub struct GateStage;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateParams {
    pub pass: bool,
}

impl Params for GateParams {}

impl Stage for GateStage {
    type Params = GateParams;
    const KIND: &'static str = "gate";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] =
        &[InputSlot { name: "model", accepts: &[TEXT], many: false, required: true, doc: "" }];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec { name: "verdict", kind: TEXT, path: "verdict.txt", doc: "" }];

    fn run(&self, p: &GateParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        ctx.input("model")?;
        if !p.pass {
            return Err(StageError::Gate { message: "accuracy 0.50 below the target 0.95".into() });
        }
        std::fs::write(ctx.output("verdict")?, "pass").unwrap();
        Ok(())
    }
}

pub fn registry() -> Registry {
    Registry::new().with(Echo).with(Files).with(GateStage).with(Machine)
}

/// A temporary workspace with helpers to write manifests and run them.
pub struct Ws {
    pub dir: tempfile::TempDir,
}

impl Ws {
    pub fn new() -> Ws {
        Ws { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        path
    }

    pub fn store(&self) -> Store {
        Store::open(self.path()).unwrap()
    }

    pub fn workflow(&self, manifest: &Path, overrides: &[&str]) -> Workflow {
        let overrides: Vec<Override> = overrides.iter().map(|o| o.parse().unwrap()).collect();
        manifest::load(manifest, &overrides, &registry()).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn run_with(&self, manifest: &Path, overrides: &[&str], options: RunOptions) -> (Workflow, RunReport) {
        let w = self.workflow(manifest, overrides);
        let report = engine::run(&self.store(), &w, &registry(), &options, &Reporter::hidden()).unwrap();
        (w, report)
    }

    pub fn run(&self, manifest: &Path) -> (Workflow, RunReport) {
        self.run_with(manifest, &[], RunOptions::default())
    }

    /// Writes a manifest and runs it with the built-in stage kinds (the `hudd` binary's registry).
    pub fn run_builtin(&self, text: &str) -> (Workflow, RunReport) {
        self.run_builtin_with(text, RunOptions::default())
    }

    pub fn run_builtin_with(&self, text: &str, options: RunOptions) -> (Workflow, RunReport) {
        let path = self.write("w.toml", text);
        let registry = hudd::stages::registry();
        let w = manifest::load(&path, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
        let report = engine::run(&self.store(), &w, &registry, &options, &Reporter::hidden()).unwrap();
        (w, report)
    }

    /// Runs the command line in-process with the test stages: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (u8, String, String) {
        self.cli_with(&registry(), args)
    }

    /// Runs the command line in-process with the given stages.
    pub fn cli_with(&self, registry: &Registry, args: &[&str]) -> (u8, String, String) {
        let mut all = vec!["hudd".to_string(), "--workspace".into(), self.path().display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = hudd::cli::main_with(all.iter().map(Into::into), registry, &mut out, &mut err, Reporter::hidden());
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    /// The ids of the stages that ran (not cached) in a report.
    pub fn ran(w: &Workflow, r: &RunReport) -> Vec<String> {
        w.stages
            .iter()
            .zip(&r.outcomes)
            .filter(|(_, o)| matches!(o, hudd::engine::Outcome::Ran { .. }))
            .map(|(s, _)| s.id.clone())
            .collect()
    }

    pub fn output(&self, w: &Workflow, r: &RunReport, stage: &str, output: &str) -> String {
        let i = w.stage_index(stage).unwrap();
        let path = self.store().output_path(&r.keys[i], output).unwrap();
        std::fs::read_to_string(path).unwrap()
    }
}

/// The tiny test architecture (`tests/fixtures/tiny.toml`) as a declared model of four classes on 3×32×32 images,
/// with fresh weights.
pub fn tiny_model() -> hudd::model::artefact::Model {
    use hudd::model::artefact::{Format, Model, ModelMeta};
    let path = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let arch = hudd::model::Architecture::load(Path::new(&path)).unwrap();
    let meta = ModelMeta {
        format: Format::Declared,
        architecture: Some(arch),
        input: [3, 32, 32],
        outputs: 4,
        target: hudd::dataset::Target::Classification { classes: vec!["a".into(), "b".into(), "c".into(), "d".into()] },
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
        seen: Vec::new(),
    };
    Model::init(meta, tch::Device::Cpu, 0).unwrap()
}

/// Runs the quickstart shrunk to fit the test suite (fewer images and epochs, every stage kept), the model under
/// analysis trained for `epochs`, with the built-in stage kinds.
pub fn quickstart(ws: &Ws, epochs: usize, options: &RunOptions) -> (Workflow, RunReport) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = ws
        .write("workflows/quickstart.toml", &std::fs::read_to_string(root.join("workflows/quickstart.toml")).unwrap());
    ws.write(
        "workflows/annotations/quickstart.toml",
        &std::fs::read_to_string(root.join("workflows/annotations/quickstart.toml")).unwrap(),
    );
    // The cause clusters' backbone weights, which scripts/test installs (scripts/pretrained.sh).
    let pretrained = ws.path().join("models/pretrained");
    if !pretrained.exists() {
        std::fs::create_dir_all(ws.path().join("models")).unwrap();
        std::os::unix::fs::symlink(root.join("models/pretrained"), pretrained).unwrap();
    }
    let overrides: Vec<Override> = [
        "data.splits.train.count=400",
        "data.splits.test.count=200",
        "data.splits.validation.count=60",
        "data.splits.improvement.count=400",
        &format!("train.epochs={epochs}"),
        "retrain.epochs=1",
        "retrain-baseline.epochs=1",
    ]
    .iter()
    .map(|o| o.parse().unwrap())
    .collect();
    let registry = hudd::stages::registry();
    let w = manifest::load(&manifest, &overrides, &registry).unwrap_or_else(|e| panic!("{e}"));
    let r = engine::run(&ws.store(), &w, &registry, options, &Reporter::hidden()).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    (w, r)
}

/// The failed stages of a run, one line each with its exit code and error: what an assertion on a run's exit code
/// should print (the whole outcome list runs to pages and hides the one that matters).
pub fn failures(report: &RunReport) -> String {
    let failed: Vec<String> = report
        .outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            hudd::engine::Outcome::Failed { error, exit_code } => {
                Some(format!("stage {i} (exit {exit_code}): {error}"))
            }
            _ => None,
        })
        .collect();
    if failed.is_empty() { "no stage failed".into() } else { failed.join("\n") }
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A stand-in for a pretrained backbone: tiny-resnet (`tests/fixtures/tiny-resnet.toml`) with fresh weights drawn
/// from `seed`, saved as `backbone.safetensors` in the workspace.
pub fn fresh_backbone(ws: &Ws, seed: u64) {
    let arch = hudd::model::Architecture::load(&fixture("tiny-resnet.toml")).unwrap();
    let meta = hudd::model::artefact::ModelMeta {
        format: hudd::model::artefact::Format::Declared,
        architecture: Some(arch),
        input: [3, 32, 32],
        outputs: 1,
        target: hudd::dataset::Target::Classification { classes: Vec::new() },
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        seen: Vec::new(),
    };
    let mut backbone = hudd::model::artefact::Model::init(meta, tch::Device::Cpu, seed).unwrap();
    backbone.var_store_mut().unwrap().save(ws.path().join("backbone.safetensors")).unwrap();
}
