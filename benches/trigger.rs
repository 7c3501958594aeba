//! The cost of triggering conditions per cluster (issue 19): `confirm` renders images and tests them; `expand` also
//! computes the heatmaps of the failures (the worst case: every child fails). hudd does both in one process, images
//! in memory and in a dataset folder. The reference does what a tool around an external simulator does (SEDE):
//! the simulator writes image files in its own process (`hudd simulate`, PNGs), then PyTorch reads them and tests
//! the same network (`alexnet-small`, 64×64, 15 classes) on the same threads.
//!
//! Run with `cargo bench --bench trigger`. The PyTorch side runs from the fixtures venv (`tests/fixtures/venv.sh`);
//! without it only hudd's figures are printed.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use hudd::dataset::{Dataset, DatasetMeta, DatasetWriter, ParamInfo};
use hudd::engine::progress::Progress;
use hudd::sim::{self, Distributions, ParamSpec};
use rand::SeedableRng;
use tch::Tensor;

fn main() {
    let (n, threads, batch) = (400usize, 2usize, 64usize);
    tch::set_num_threads(threads as i32);
    let model = common::alexnet_small();
    let net = model.net("LRP").unwrap();
    let rules = hudd::lrp::hudd_rules(net);
    let sim = sim::simulator("signs").unwrap();
    let task = sim.tasks()[0].to_string();
    let dists = Distributions::new(sim, &BTreeMap::new(), "").unwrap();
    let progress = Progress::hidden();
    let meta = DatasetMeta {
        source: "simulate:signs".into(),
        task: task.clone(),
        target: sim.target(&task),
        channels: 3,
        height: 64,
        width: 64,
        count: 0,
        splits: Vec::new(),
        params: sim.params().iter().map(|p| ParamInfo::of(&p.column())).collect(),
        chosen_by: Vec::new(),
        domains: Default::default(),
    };
    // One cluster's work: n images rendered and written as a dataset, then tested (and, for expand, explained).
    let hudd_round = |explain: bool, seed: u64| -> f64 {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let mut writer =
            DatasetWriter::create(dir.path(), meta.clone(), sim.params().iter().map(ParamSpec::column).collect())
                .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for i in 0..n {
            let v = dists.sample(&mut rng);
            let s = sim.render(&task, &v, 64, &mut sim::image_rng(seed, 0, i as u64));
            writer.push(format!("{i}"), "bench", &s.rgb, s.label, v).unwrap();
        }
        writer.finish().unwrap();
        let ds = Dataset::open(dir.path()).unwrap();
        let rows: Vec<usize> = (0..n).collect();
        let predictions = hudd::model::predict::predict(&model, &ds, &rows, batch, 4.0, &progress).unwrap();
        assert_eq!(predictions.len(), n);
        if explain {
            let mut kept = 0;
            hudd::lrp::batch::for_each_batch(
                &model,
                &ds,
                &rows,
                &rules,
                hudd::lrp::batch::Seed::Predicted,
                batch,
                |chunk, _, relevance: &[Tensor]| {
                    kept += chunk.len() * usize::from(!relevance.is_empty());
                    Ok::<(), hudd::lrp::batch::BatchError>(())
                },
            )
            .unwrap();
            assert_eq!(kept, n);
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    hudd_round(false, 99); // warm-up
    let python = common::python();
    let hudd_bin = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/hudd");
    let have_bin = std::path::Path::new(hudd_bin).exists();
    println!(
        "{n} signs at 64x64 per cluster, alexnet-small, {threads} threads, batch {batch}; 3 rounds each, alternating"
    );
    let (mut confirm, mut expand, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3u64 {
        confirm.push(hudd_round(false, round));
        expand.push(hudd_round(true, round));
        if let (Some(python), true) = (&python, have_bin) {
            let dir = tempfile::tempdir().unwrap();
            let t = Instant::now();
            let status = std::process::Command::new(hudd_bin)
                .args([
                    "simulate",
                    "signs",
                    "--n",
                    &n.to_string(),
                    "--seed",
                    &round.to_string(),
                    "--size",
                    "64",
                    "--out",
                ])
                .arg(dir.path())
                .env("HUDD_STORE", dir.path().join(".store"))
                .current_dir(dir.path())
                .output()
                .expect("hudd simulate runs");
            assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
            let out = std::process::Command::new(python)
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/trigger_pytorch.py"))
                .arg(dir.path())
                .args([threads, batch].map(|v| v.to_string()))
                .output()
                .expect("python runs");
            if out.status.success() {
                outside.push(n as f64 / t.elapsed().as_secs_f64());
            } else {
                println!("PyTorch side failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    let (c, e) = (common::median(confirm), common::median(expand));
    println!("hudd confirm (render, write, test): {c:.0} images/s; {:.2} s per cluster of 2 x 200 images", 400.0 / c);
    println!(
        "hudd expand (render, write, test, LRP of every image): {e:.0} images/s; {:.2} s per cluster of 4 x 32",
        128.0 / e
    );
    if outside.is_empty() {
        println!("reference: not run (needs target/release/hudd and the fixtures venv)");
    } else {
        let o = common::median(outside);
        println!(
            "reference (hudd simulate writes PNGs, PyTorch reads and tests them): {o:.0} images/s; hudd confirm {:.2}x its throughput",
            c / o
        );
    }
}
