//! What holding MKL to one branch on every x86-64 CPU costs: training throughput of `alexnet-small` (64×64, batch
//! 64, SGD) and LRP with HUDD's composite through every layer (batch 32), under each `MKL_CBWR` setting side by side
//! in one run. MKL reads the setting once per process, so each measurement runs in a child process of this bench,
//! the settings alternating round by round (target, issue 52: the vendor-independent branch within 15% of the
//! AVX2 branch the keys held before). Beside them, in the same child: Adam as `hudd` trains with it (its own, whose
//! square roots every CPU computes alike) against libtorch's (whose square roots are MKL's, vendor-dependent), on the
//! same batches.
//!
//! Run with `cargo bench --bench kernels`.

mod common;

use std::time::Instant;

use hudd::engine::progress::Progress;
use hudd::lrp;
use hudd::model::artefact::Model;
use hudd::model::draws::{Draws, Stream};
use hudd::model::fit;
use hudd::stages::heatmaps::{HeatmapParams, rules_for};
use tch::nn::{self, OptimizerConfig};
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
    let mut adam: Vec<Vec<(f64, f64)>> = vec![Vec::new(); SETTINGS.len()];
    for _ in 0..ROUNDS {
        for (k, setting) in SETTINGS.iter().enumerate() {
            let out = std::process::Command::new(&exe).arg("--child").env("MKL_CBWR", setting).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let values: Vec<f64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            let [train, relevance, adam_hudd, adam_libtorch] = values[..] else {
                panic!("the child under {setting} printed {text:?}: {}", String::from_utf8_lossy(&out.stderr))
            };
            results[k].push((train, relevance));
            adam[k].push((adam_hudd, adam_libtorch));
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
    let hudd = common::median(adam[1].iter().map(|v| v.0).collect());
    let libtorch = common::median(adam[1].iter().map(|v| v.1).collect());
    println!(
        "Adam steps under {}: hudd's {hudd:.1} images/s, libtorch's {libtorch:.1}: {:.3} (target >= 0.85: {})",
        SETTINGS[1],
        hudd / libtorch,
        if hudd / libtorch >= 0.85 { "met" } else { "NOT met" }
    );
}

/// Images per second of `batches` Adam steps of `model` (forward in training mode, cross-entropy, then `step`: the
/// optimiser's zero-grad, backward and step), after as many for warm-up.
fn adam_steps(model: &mut Model, data: &fit::Data, batches: i64, step: &mut dyn FnMut(&Tensor)) -> f64 {
    let mut draws = Draws::new(0, Stream::Dropout);
    let classes = data.classes.as_ref().unwrap();
    let mut run = |model: &mut Model| {
        for b in 0..batches {
            let x = model.preprocess(&data.pixels.narrow(0, 64 * b, 64));
            let out = model.forward_train(&x, &mut draws).unwrap();
            step(&out.cross_entropy_for_logits(&classes.narrow(0, 64 * b, 64)));
        }
    };
    run(model);
    let t = Instant::now();
    run(model);
    (64 * batches) as f64 / t.elapsed().as_secs_f64()
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

    // Each optimiser on a fresh model, over the same batches.
    let batches = 16;
    let mut model = common::alexnet_small();
    let mut adam = fit::Adam::new(model.var_store().unwrap().trainable_variables(), 1e-3, 5e-4);
    let adam_hudd = adam_steps(&mut model, &data, batches, &mut |loss| adam.backward_step(loss));
    let mut model = common::alexnet_small();
    let mut adam = nn::Adam { wd: 5e-4, ..Default::default() }.build(model.var_store().unwrap(), 1e-3).unwrap();
    let adam_libtorch = adam_steps(&mut model, &data, batches, &mut |loss| adam.backward_step(loss));
    println!("{train} {relevance} {adam_hudd} {adam_libtorch}");
}
