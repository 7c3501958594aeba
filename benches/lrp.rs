//! LRP cost on `alexnet-small` and on the graph `resnet18` (64×64, batch 32): relevance at every layer's input
//! against one forward plus one backward pass of the same batch (targets: at most 2× for alexnet-small, issue 5;
//! at most 2.5× for resnet18, issue 33), and side by side with Zennit on the same weights and images (target: hudd
//! at least as fast), for the `hudd` and `epsilon-plus` composites. ResNet-18's batch norms are merged into its
//! convolutions first, on both sides (hudd's canonisation, Zennit's `ResNetCanonizer`), and its forward + backward
//! pass is timed on the merged network (the cheaper one, so the ratio is the stricter).
//!
//! Run with `cargo bench --bench lrp`. Zennit runs from the fixtures venv (`tests/fixtures/venv.sh` creates it);
//! without it only hudd's figures are printed.

mod common;

use std::time::Instant;

use hudd::lrp::{self, Rule};
use hudd::stages::heatmaps::{HeatmapParams, rules_for};
use tch::{Kind, Tensor};

const ROUNDS: usize = 7;

fn time(mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    common::median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    for (name, target) in [("alexnet-small", 2.0), ("resnet18", 2.5)] {
        bench(name, target);
    }
}

fn bench(name: &str, target: f64) {
    let (batch, threads) = (32i64, 2);
    tch::set_num_threads(threads);
    let mut model = common::shipped(name);
    model.net_mut().unwrap().canonise();
    let net = model.net("bench").unwrap();
    let x = Tensor::randn([batch, 3, 64, 64], (Kind::Float, tch::Device::Cpu));
    let y = tch::no_grad(|| net.forward(&x));
    let seed = y.zeros_like().scatter(1, &y.argmax(1, true), &y.gather(1, &y.argmax(1, true), false));

    let forward_backward = time(|| {
        let a = x.detach().set_requires_grad(true);
        let out = net.forward(&a);
        let g = Tensor::run_backward(&[(out * &seed).sum(Kind::Float)], &[&a], false, false);
        assert_eq!(g[0].size(), a.size());
    });
    let composites: Vec<(&str, Vec<Rule>)> = ["hudd", "epsilon-plus"]
        .into_iter()
        .map(|preset| {
            let params: HeatmapParams = toml::from_str(&format!("preset = \"{preset}\"")).unwrap();
            (preset, rules_for(net, &params).unwrap())
        })
        .collect();
    let ours: Vec<(&str, f64)> = composites
        .iter()
        .map(|(name, rules)| {
            (*name, time(|| assert_eq!(lrp::relevance(net, &x, &seed, rules).len(), net.layers.len())))
        })
        .collect();

    println!("{name}, batch {batch} of 3x64x64, {threads} threads, CPU; medians of {ROUNDS} rounds");
    println!("forward + backward (tch):           {:8.1} ms", forward_backward * 1e3);
    for (composite, t) in &ours {
        let ratio = t / forward_backward;
        println!(
            "hudd LRP, {composite:12} all {} layers: {:8.1} ms = {ratio:.2}x forward+backward (target <= {target}: {})",
            net.layers.len(),
            t * 1e3,
            if ratio <= target { "met" } else { "NOT met" }
        );
    }

    let Some(python) = common::python() else {
        println!("Zennit: (no fixtures venv: run tests/fixtures/venv.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.safetensors");
    // The weights before merging: Zennit merges the batch norms itself.
    let fresh = common::shipped(name);
    let mut tensors: Vec<(String, Tensor)> = fresh.var_store().unwrap().variables().into_iter().collect();
    tensors.push(("input".into(), x.shallow_clone()));
    tensors.push(("seed".into(), seed.shallow_clone()));
    Tensor::write_safetensors(&tensors, &file).unwrap();
    let args = [file.display().to_string(), threads.to_string(), ROUNDS.to_string(), name.to_string()];
    let theirs: std::collections::HashMap<String, f64> = match common::reference_times(&python, "lrp_zennit.py", &args)
    {
        Ok(times) => times.into_iter().collect(),
        Err(stderr) => {
            println!("Zennit side failed: {stderr}");
            return;
        }
    };
    println!("forward + backward (PyTorch):       {:8.1} ms", theirs["forward-backward"] * 1e3);
    for (composite, t) in &ours {
        let z = theirs[*composite];
        println!(
            "Zennit {composite:12}:                {:8.1} ms; ratio Zennit / hudd {:.2} (target >= 1: {})",
            z * 1e3,
            z / t,
            if z / t >= 1.0 { "met" } else { "NOT met" }
        );
    }
    println!();
}
