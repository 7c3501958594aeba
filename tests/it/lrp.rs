//! LRP against Zennit: per-layer input relevance of a small conv net under Zennit's composites
//! (numbers from tests/fixtures/zennit_lrp.py, committed as tests/fixtures/zennit_lrp.safetensors).

use hudd::lrp::{self, Rule};
use hudd::model::Architecture;
use hudd::model::net::{Net, Op};
use tch::{Tensor, nn};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture("zennit_lrp.safetensors")).unwrap().into_iter().collect()
}

fn net(refs: &std::collections::HashMap<String, Tensor>) -> (nn::VarStore, Net) {
    let arch = Architecture::load(std::path::Path::new(&fixture("zennit-net.toml"))).unwrap();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let net = Net::new(&arch, &vs.root(), [3, 8, 8], 3).unwrap();
    let mut vars = vs.variables();
    tch::no_grad(|| {
        for (name, var) in vars.iter_mut() {
            var.copy_(&refs[&format!("weights.{name}")]);
        }
    });
    (vs, net)
}

/// Compares every layer's input relevance with Zennit's, relative to the largest magnitude of that layer.
fn compare(composite: &str, rules: &[Rule]) {
    let refs = reference();
    let (_vs, net) = net(&refs);
    let got = lrp::relevance(&net, &refs["input"], &refs["seed"], rules);
    let diffs: Vec<(String, f64)> = got
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let want = &refs[&format!("{composite}.{k}")];
            let scale = f64::try_from(want.abs().max()).unwrap().max(1e-12);
            (net.layers[k].0.clone(), f64::try_from((r - want).abs().max()).unwrap() / scale)
        })
        .collect();
    assert!(diffs.iter().all(|(_, d)| *d < 1e-4), "{composite}: relative differences from Zennit per layer: {diffs:?}");
}

/// Zennit's layer map: activations pass, average pools normalise (LRP-0), max-pool is the gradient.
fn rules_by_kind(net: &Net, conv: Rule, first_conv: Rule, dense: Rule) -> Vec<Rule> {
    let mut seen_conv = false;
    net.layers
        .iter()
        .map(|(_, op)| match op {
            Op::Conv { .. } if !seen_conv => {
                seen_conv = true;
                first_conv
            }
            Op::Conv { .. } | Op::ConvTranspose { .. } => conv,
            Op::Linear(_) => dense,
            Op::AvgPool { .. } | Op::AdaptiveAvgPool(_) => Rule::Zero,
            Op::MaxPool { .. } => Rule::WinnerTakesAll,
            _ => Rule::Pass,
        })
        .collect()
}

#[test]
fn epsilon_plus_matches_zennit_at_every_layer() {
    let refs = reference();
    let (_vs, net) = net(&refs);
    let rules = rules_by_kind(&net, Rule::ZPlus, Rule::ZPlus, Rule::Epsilon { epsilon: 1e-6 });
    compare("epsilon-plus", &rules);
}

#[test]
fn epsilon_gamma_box_matches_zennit_at_every_layer() {
    let refs = reference();
    let (_vs, net) = net(&refs);
    let rules = rules_by_kind(&net, Rule::Gamma { gamma: 0.25 }, Rule::Bounded { low: -3.0, high: 3.0 }, Rule::Epsilon { epsilon: 1e-6 });
    compare("epsilon-gamma-box", &rules);
}
