//! Training throughput of `alexnet-small` on 64×64 images: hudd (tch) side by side with PyTorch on the same
//! libtorch, threads, batch size and optimiser. Target (issue 3): hudd not slower by more than 10%.
//!
//! Run with `cargo bench --bench train`. The PyTorch side runs from the fixtures venv
//! (`tests/fixtures/venv.sh` creates it); without it only hudd's figure is printed.

mod common;

use std::time::Instant;

use hudd::engine::progress::Progress;
use hudd::model::fit;

fn main() {
    let (n, batch, epochs, threads) = (2048usize, 64usize, 3usize, 2usize);
    tch::set_num_threads(threads as i32);
    let mut model = common::alexnet_small();
    let (data, empty) = common::training_data(n);
    let cfg = |epochs| common::sgd(epochs, batch);
    let progress = Progress::hidden();
    fit::fit(&mut model, &data, &empty, &cfg(1), &progress).unwrap(); // warm-up
    println!(
        "alexnet-small, {n} images 64x64, batch {batch}, SGD, {threads} threads, {epochs} epochs a round; 3 rounds each, alternating"
    );
    let python = common::python();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        fit::fit(&mut model, &data, &empty, &cfg(epochs), &progress).unwrap();
        ours.push((n * epochs) as f64 / t.elapsed().as_secs_f64());
        if let Some(python) = &python {
            let out = std::process::Command::new(python)
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/train_pytorch.py"))
                .args([n, batch, epochs, threads].map(|v| v.to_string()))
                .output()
                .expect("python runs");
            match String::from_utf8_lossy(&out.stdout).trim().lines().last().and_then(|l| l.parse::<f64>().ok()) {
                Some(v) => theirs.push(v),
                None => println!("PyTorch side failed: {}", String::from_utf8_lossy(&out.stderr)),
            }
        }
    }
    println!("hudd (tch): {:?} images/s", ours.iter().map(|v| v.round()).collect::<Vec<_>>());
    let ours = common::median(ours);
    if theirs.is_empty() {
        println!("PyTorch: (no fixtures venv: run tests/fixtures/venv.sh)");
        return;
    }
    println!("PyTorch:    {:?} images/s", theirs.iter().map(|v| v.round()).collect::<Vec<_>>());
    let theirs = common::median(theirs);
    println!(
        "medians: hudd {ours:.1}, PyTorch {theirs:.1}; ratio hudd / PyTorch {:.3} (target >= 0.90: {})",
        ours / theirs,
        if ours / theirs >= 0.9 { "met" } else { "NOT met" }
    );
}
