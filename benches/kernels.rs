//! What holding MKL to one branch on every x86-64 CPU costs: training throughput of `alexnet-small` (64×64, batch
//! 64, SGD) and LRP with HUDD's composite through every layer (batch 32), under each `MKL_CBWR` setting side by side
//! in one run. MKL reads the setting once per process, so each measurement runs in a child process of this bench,
//! the settings alternating round by round (target, issue 52: the vendor-independent branch within 15% of the
//! AVX2 branch the keys held before).
//!
//! Run with `cargo bench --bench kernels`.

mod common;

use std::time::Instant;

use hudd::engine::progress::Progress;
use hudd::lrp;
use hudd::model::fit;
use hudd::stages::heatmaps::{HeatmapParams, rules_for};
use tch::{Kind, Tensor};

/// The settings compared: the one the keys held before, and the one every x86-64 CPU computes alike.
const SETTINGS: [&str; 2] = ["AVX2,STRICT", "COMPATIBLE,STRICT"];
const ROUNDS: usize = 3;

fn main() {
    if std::env::args().any(|a| a == "--child") {
        return child();
    }
    println!(
        "alexnet-small: training (2048 images 3x64x64, batch 64, SGD, 2 threads) and LRP (hudd composite, batch 32), \
         {ROUNDS} rounds per setting, alternating; each in its own process"
    );
    let exe = std::env::current_exe().unwrap();
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); SETTINGS.len()];
    for _ in 0..ROUNDS {
        for (k, setting) in SETTINGS.iter().enumerate() {
            let out = std::process::Command::new(&exe).arg("--child").env("MKL_CBWR", setting).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let values: Vec<f64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            let [train, relevance] = values[..] else {
                panic!("the child under {setting} printed {text:?}: {}", String::from_utf8_lossy(&out.stderr))
            };
            results[k].push((train, relevance));
        }
    }
    let medians: Vec<(f64, f64)> = results
        .iter()
        .map(|r| (common::median(r.iter().map(|v| v.0).collect()), common::median(r.iter().map(|v| v.1).collect())))
        .collect();
    for (setting, (train, relevance)) in SETTINGS.iter().zip(&medians) {
        println!("MKL_CBWR={setting:18} training {train:7.1} images/s, LRP {relevance:7.1} images/s");
    }
    let (base, held) = (medians[0], medians[1]);
    for (what, ratio) in [("training", held.0 / base.0), ("LRP", held.1 / base.1)] {
        println!(
            "{what}: {} / {} = {ratio:.3} (target >= 0.85: {})",
            SETTINGS[1],
            SETTINGS[0],
            if ratio >= 0.85 { "met" } else { "NOT met" }
        );
    }
}

/// One measurement under the process's `MKL_CBWR`: prints training and LRP throughput in images per second.
fn child() {
    let threads = 2;
    tch::set_num_threads(threads);
    let (n, batch) = (2048usize, 64usize);
    let mut model = common::alexnet_small();
    let (data, empty) = common::training_data(n);
    let cfg = common::sgd(1, batch);
    let progress = Progress::hidden();
    fit::fit(&mut model, &data, &empty, &cfg, &progress).unwrap(); // warm-up
    let t = Instant::now();
    fit::fit(&mut model, &data, &empty, &cfg, &progress).unwrap();
    let train = n as f64 / t.elapsed().as_secs_f64();

    let mut model = common::alexnet_small();
    model.net_mut().unwrap().canonise();
    let net = model.net("bench").unwrap();
    let x = Tensor::randn([32, 3, 64, 64], (Kind::Float, tch::Device::Cpu));
    let y = tch::no_grad(|| net.forward(&x));
    let seed = y.zeros_like().scatter(1, &y.argmax(1, true), &y.gather(1, &y.argmax(1, true), false));
    let params: HeatmapParams = toml::from_str("preset = \"hudd\"").unwrap();
    let rules = rules_for(net, &params).unwrap();
    lrp::relevance(net, &x, &seed, &rules); // warm-up
    let rounds = 5;
    let t = Instant::now();
    for _ in 0..rounds {
        lrp::relevance(net, &x, &seed, &rules);
    }
    let relevance = (32 * rounds) as f64 / t.elapsed().as_secs_f64();
    println!("{train} {relevance}");
}
