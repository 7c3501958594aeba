//! The generic features' forward passes (issue 30): EfficientNet-Lite0 with its ImageNet weights describing 64×64
//! images resized to 224×224 (and 160×160) as the `activations` stage computes them (preprocessing, the resize, the
//! forward pass to the three recorded layers, each channel's mean), against PyTorch on the same weights and images
//! in one run: the fixtures' independent implementation as a PyTorch user runs it (`plain`), and with its batch norms
//! folded and channels-last memory (`fused`, the fastest PyTorch offers on a CPU without compiling). hudd is timed as
//! the stage runs it: a backbone computes on one libtorch thread per batch (its bytes must not depend on the thread
//! count), so the stage's threads each take every other batch with a model of their own; PyTorch gets the same
//! threads for one batch at a time. Target: hudd at least as fast as `plain`; and, with the generic clustering of
//! 8,000 failures (`HUDD_BENCH_GENERIC=8000 cargo bench --bench cluster`), within 3 minutes.
//!
//! Run with `cargo bench --bench backbone` (needs `scripts/pretrained.sh`'s weights; PyTorch runs from the fixtures
//! venv, `tests/fixtures/venv.sh`). `HUDD_BENCH_BATCH=b` times batches of b images (default 8, the manifests').

mod common;

use tch::{Kind, Tensor};

const ROUNDS: i64 = 16;

fn main() {
    let threads = 2;
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let batch: i64 = std::env::var("HUDD_BENCH_BATCH").map_or(8, |b| b.parse().expect("HUDD_BENCH_BATCH=b"));
    let images = Tensor::randint(256, [ROUNDS * batch, 3, 64, 64], (Kind::Uint8, tch::Device::Cpu));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("images.safetensors");
    Tensor::write_safetensors(&[("images", &images)], &file).unwrap();
    println!(
        "EfficientNet-Lite0 features of 64×64 images, batches of {batch}, {threads} threads, CPU; medians of {ROUNDS} batches"
    );
    for size in [224usize, 160] {
        let Some((model, layers)) = common::backbone(size) else {
            println!("no weights: run scripts/pretrained.sh");
            return;
        };
        let single = common::backbone_per_image(&model, &layers, &images, batch, ROUNDS);
        let ours = common::backbone_as_the_stage(size, &images, batch, ROUNDS, threads as usize);
        println!(
            "{size}×{size}: hudd {:6.1} ms an image as `activations` runs it ({threads} batches at once, each on {} libtorch thread); {:.1} ms one batch at a time",
            ours * 1e3,
            hudd::model::backbone::THREADS,
            single * 1e3
        );
        let Some(python) = common::python() else {
            println!("  PyTorch: (no fixtures venv: run tests/fixtures/venv.sh)");
            continue;
        };
        let weights = concat!(env!("CARGO_MANIFEST_DIR"), "/models/pretrained/efficientnet-lite0.safetensors");
        let args = [file.display().to_string(), weights.to_string()]
            .into_iter()
            .chain([threads as i64, ROUNDS, batch, size as i64].map(|v| v.to_string()))
            .collect::<Vec<_>>();
        let theirs = match common::reference_times(&python, "backbone_pytorch.py", &args) {
            Ok(times) => times,
            Err(stderr) => {
                println!("  PyTorch side failed: {stderr}");
                continue;
            }
        };
        for (how, t) in theirs {
            let target = if how == "plain" { " (target >= 1)" } else { "" };
            println!("  PyTorch {how:5} {:6.1} ms an image; PyTorch / hudd {:.2}{target}", t * 1e3, t / ours);
        }
    }
}
