//! The cost of causes tested by intervention (issue 50's target: 2,000 failures and 20 parameters within 2 minutes
//! on this machine), beside the `test` stage's throughput in the same run. A small AlexNet (`alexnet-small`, 32×32,
//! the quickstart's) trained for one epoch fails on most of 2,600 test signs; `test` runs over all of them, then
//! `intervene` re-renders every failure unchanged, as a sham and with each of the 20 parameters restored (then pairs
//! for those no single restoration fixes, at most 10 each) and tests the model on every re-render. The ratio says
//! what one re-render and its forward pass cost against one forward pass of `test` (which reads stored images).
//!
//! Run with `cargo bench --bench intervene` (`HUDD_BENCH_IMAGES=<n>` for another number of test images).

use std::time::Instant;

use hudd::artefact::interventions::InterventionSummary;
use hudd::engine::progress::Reporter;
use hudd::engine::{self, RunOptions, manifest};

const MANIFEST: &str = r#"
[workflow]
name = "bench-intervene"
seed = 3

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 32
splits = { train = { count = 600, params = { night = { uniform = [0.0, 0.3] }, yaw = { normal = [0.0, 10.0] } } }, test = { count = IMAGES, params = { night = { uniform = [0.0, 1.0] }, yaw = { uniform = [-70.0, 70.0] } } } }

[[stage]]
id = "train"
kind = "train"
dataset = "data.dataset"
architecture = "alexnet-small"
epochs = 1
batch_size = 64
validation = 0.0

[[stage]]
id = "test"
kind = "test"
model = "train.model"
dataset = "data.dataset"

[[stage]]
id = "intervene"
kind = "intervene"
model = "train.model"
images = "test.errors"
"#;

fn main() {
    let images: usize = std::env::var("HUDD_BENCH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(2600);
    let ws = tempfile::tempdir().unwrap();
    let path = ws.path().join("bench.toml");
    std::fs::write(&path, MANIFEST.replace("IMAGES", &images.to_string())).unwrap();
    let registry = hudd::stages::registry();
    let workflow = manifest::load(&path, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
    let store = hudd::engine::store::Store::open(ws.path()).unwrap();
    let options = RunOptions { jobs: Some(1), ..RunOptions::default() };
    let run = |targets: &[&str]| -> f64 {
        let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        let w = workflow.restrict(&targets).unwrap();
        let t = Instant::now();
        let report = engine::run(&store, &w, &registry, &options, &Reporter::hidden()).unwrap();
        assert_eq!(report.exit_code(), 0);
        t.elapsed().as_secs_f64()
    };
    run(&["train"]);
    let test = run(&["test"]);
    let intervene = run(&["intervene"]);
    let w = workflow.restrict(&["intervene".to_string()]).unwrap();
    let report = engine::run(&store, &w, &registry, &options, &Reporter::hidden()).unwrap();
    let key = &report.keys[w.stage_index("intervene").unwrap()];
    let summary: InterventionSummary =
        hudd::artefact::table::read_json(&store.output_path(key, "summary").unwrap()).unwrap();
    let rows = std::fs::read_to_string(store.output_path(key, "interventions").unwrap()).unwrap().lines().count() - 1;
    // Every re-render was tested: the rows (sham, restorations, pairs) and the unchanged image of each failure.
    let passes = rows + summary.images;
    let per_test = test / images as f64;
    let per_intervention = intervene / passes as f64;
    println!(
        "test: {images} images in {test:.1} s ({:.0} images/s, stored images, one forward pass each)",
        images as f64 / test
    );
    println!(
        "intervene: {} failures, {} parameters, {} pairs tried; {passes} re-renders tested in {intervene:.1} s ({:.0}/s)",
        summary.images,
        summary.parameters.len(),
        rows - summary.images * (1 + summary.parameters.len()),
        passes as f64 / intervene
    );
    println!(
        "per image: intervene {:.2} ms per re-render and pass against test's {:.2} ms per pass: {:.2}x; \
         scaled to 2,000 failures: {:.0} s (target 120 s)",
        per_intervention * 1e3,
        per_test * 1e3,
        per_intervention / per_test,
        intervene / summary.images as f64 * 2000.0
    );
}
