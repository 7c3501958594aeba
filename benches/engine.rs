//! Engine overhead on a generated 200-stage workflow: `plan` and a no-op `run` (every stage cached).
//!
//! Run with `cargo bench --bench engine`. Target (issue 2): each under 1 second. Prints medians of 5 runs.

use std::path::PathBuf;
use std::time::Instant;

use hudd::engine::manifest;
use hudd::engine::progress::Reporter;
use hudd::engine::stage::{ArtefactKind, InputSlot, OutputSpec, Params, Registry, Stage, StageContext, StageError};
use hudd::engine::{self, RunOptions};

const TEXT: ArtefactKind = ArtefactKind { name: "text", doc: "a text file" };
use hudd::engine::store::Store;
use serde::{Deserialize, Serialize};

struct Write;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteParams {
    n: u64,
    #[serde(default)]
    lr: f64,
}

impl Params for WriteParams {}

impl Stage for Write {
    type Params = WriteParams;
    const KIND: &'static str = "write";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] =
        &[InputSlot { name: "from", accepts: &[TEXT], many: true, required: false, doc: "" }];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec { name: "out", kind: TEXT, path: "out.txt", doc: "" }];

    fn run(&self, p: &WriteParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        std::fs::write(ctx.output("out")?, p.n.to_string()).map_err(|e| StageError::io("out.txt", e))
    }
}

/// 200 stages in layers of 10, each reading two stages of the layer before.
fn manifest_text(n: usize) -> String {
    let mut s = String::from("[workflow]\nname = \"bench\"\nseed = 1\n");
    for i in 0..n {
        s.push_str(&format!("\n[[stage]]\nid = \"s{i}\"\nkind = \"write\"\nn = {i}\nlr = 0.001\n"));
        if i >= 10 {
            let layer = i / 10;
            let a = (layer - 1) * 10 + i % 10;
            let b = (layer - 1) * 10 + (i + 3) % 10;
            s.push_str(&format!("from = [\"s{a}.out\", \"s{b}.out\"]\n"));
        }
    }
    s
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("bench.toml");
    std::fs::write(&path, manifest_text(200)).unwrap();
    let registry = Registry::new().with(Write);
    let reporter = Reporter::hidden();
    let store = Store::open(dir.path()).unwrap();

    let w = manifest::load(&path, &[], &registry).unwrap();
    let t = Instant::now();
    engine::run(&store, &w, &registry, &RunOptions { jobs: Some(2), ..RunOptions::default() }, &reporter).unwrap();
    println!("first run, 200 stages executed: {:.3} s", t.elapsed().as_secs_f64());

    let mut plans = Vec::new();
    let mut noops = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let w = manifest::load(&path, &[], &registry).unwrap();
        let planned = engine::plan(&store, &w, &registry).unwrap();
        assert_eq!(planned.stale().count(), 0);
        plans.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let w = manifest::load(&path, &[], &registry).unwrap();
        let report = engine::run(&store, &w, &registry, &RunOptions::default(), &reporter).unwrap();
        assert_eq!(report.ran(), 0);
        noops.push(t.elapsed().as_secs_f64());
    }
    let (plan, noop) = (median(plans), median(noops));
    println!(
        "library: check + plan, 200 stages (median of 5): {plan:.3} s  (target < 1 s: {})",
        if plan < 1.0 { "met" } else { "NOT met" }
    );
    println!(
        "library: no-op run, 200 stages (median of 5):    {noop:.3} s  (target < 1 s: {})",
        if noop < 1.0 { "met" } else { "NOT met" }
    );
    cli(dir.path());
}

/// The same through the `hudd` binary, as a user runs it: 200 tiny `simulate` stages in layers (process start and
/// libtorch loading included).
fn cli(dir: &std::path::Path) {
    let mut s = String::from("[workflow]\nname = \"cli\"\nseed = 1\n");
    for i in 0..200 {
        s.push_str(&format!("\n[[stage]]\nid = \"s{i}\"\nkind = \"simulate\"\nsimulator = \"signs\"\nsize = 16\nseed = {i}\nsplits = {{ train = {{ count = 1 }} }}\n"));
    }
    std::fs::write(dir.join("cli.toml"), s).unwrap();
    let hudd = |args: &[&str]| {
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hudd")).current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        t.elapsed().as_secs_f64()
    };
    hudd(&["run", "cli.toml"]);
    let start = median((0..5).map(|_| hudd(&["--help"])).collect());
    let plan = median((0..5).map(|_| hudd(&["plan", "cli.toml"])).collect());
    let noop = median((0..5).map(|_| hudd(&["run", "cli.toml"])).collect());
    println!("binary: `hudd --help` (process start, libtorch loading): {start:.3} s");
    println!(
        "binary: `hudd plan`, 200 stages (median of 5): {plan:.3} s  (target < 1 s: {})",
        if plan < 1.0 { "met" } else { "NOT met" }
    );
    println!(
        "binary: no-op `hudd run`, 200 stages (median of 5): {noop:.3} s  (target < 1 s: {})",
        if noop < 1.0 { "met" } else { "NOT met" }
    );
}
