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
    let rules = rules_by_kind(
        &net,
        Rule::Gamma { gamma: 0.25 },
        Rule::Bounded { low: -3.0, high: 3.0 },
        Rule::Epsilon { epsilon: 1e-6 },
    );
    compare("epsilon-gamma-box", &rules);
}

#[test]
fn hudds_composite_matches_zennit_with_the_same_layer_map() {
    let refs = reference();
    let (_vs, net) = net(&refs);
    compare("hudd", &lrp::hudd_rules(&net));
}

const TRAINED: &str = r#"
[workflow]
name = "hm"
seed = 2

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 32
params = { class = { weights = { stop = 1.0, yield = 1.0, parking = 1.0, no_entry = 1.0 } } }
splits = { train = { count = 40 } }

[[stage]]
id = "train"
kind = "train"
dataset = "data.dataset"
architecture = "TINY"
epochs = 3
batch_size = 8
optimizer = "adam"
lr = 0.003
validation = 0.0
device = "cpu"

[[stage]]
id = "heatmaps"
kind = "heatmaps"
model = "train.model"
images = "data.dataset"
batch_size = 16
"#;

#[test]
fn the_heatmaps_stage_writes_one_array_per_layer_with_an_index_and_conservation() {
    let ws = crate::support::Ws::new();
    let (w, report) = ws.run_builtin(&TRAINED.replace("TINY", &fixture("tiny.toml")));
    assert_eq!(report.exit_code(), 0, "{:?}", report.outcomes);
    let store = hudd::engine::store::Store::open(ws.path()).unwrap();
    let dir = store.output_path(&report.keys[w.stage_index("heatmaps").unwrap()], "heatmaps").unwrap();
    let shapes = [
        ("features.0", vec![40, 3, 32, 32]),
        ("features.2", vec![40, 8, 32, 32]),
        ("flatten", vec![40, 8, 8, 8]),
        ("classifier.0", vec![40, 512]),
    ];
    for (layer, shape) in shapes {
        let r = hudd::npy::NpyReader::<f32>::open(&dir.join(format!("{layer}.npy"))).unwrap();
        assert_eq!(r.shape, shape, "{layer}");
    }
    let index = std::fs::read_to_string(dir.join("index.csv")).unwrap();
    assert_eq!(index.lines().count(), 41);
    assert!(index.starts_with("row,image\n0,train-000000\n"), "{index}");
    let conservation = std::fs::read_to_string(dir.join("conservation.csv")).unwrap();
    // z⁺ without bias on the linear layer conserves: its input sums to the seeded logit.
    let linear = conservation.lines().find(|l| l.starts_with("classifier.0,")).unwrap();
    assert!(linear.starts_with("classifier.0,z-plus-no-bias,"), "{conservation}");
    let dev: f64 = linear.rsplit(',').next().unwrap().parse().unwrap();
    assert!(dev < 1e-4, "{conservation}");
}

#[test]
fn the_heatmaps_stage_refuses_unknown_layer_names_in_its_rules() {
    let ws = crate::support::Ws::new();
    let text = TRAINED.replace("TINY", &fixture("tiny.toml"))
        + "rules = { \"features.9\" = { rule = \"epsilon\", epsilon = 0.1 } }\n";
    let (w, report) = ws.run_builtin(&text);
    let hudd::engine::Outcome::Failed { error, .. } = &report.outcomes[w.stage_index("heatmaps").unwrap()] else {
        panic!("{:?}", report.outcomes)
    };
    assert!(error.contains("rules name `features.9`, which is neither a layer of the model"), "{error}");
}
