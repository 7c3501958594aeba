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
    // One relevance per layer, as many as Zennit recorded: a missing layer is a difference, not a skipped one.
    let recorded = refs
        .keys()
        .filter(|k| k.strip_prefix(&format!("{composite}.")).is_some_and(|i| i.parse::<usize>().is_ok()))
        .count();
    assert_eq!(
        (got.len(), recorded),
        (net.layers.len(), net.layers.len()),
        "{composite}: layers, relevances, Zennit's"
    );
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
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
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
        panic!("{}", crate::support::failures(&report))
    };
    assert!(error.contains("rules name `features.9`, which is neither a layer of the model"), "{error}");
}

/// A graph net of tests/fixtures/zennit_graph.py with its weights, batch norms merged (as Zennit's canonizer does).
fn graph_net(
    net_name: &str,
    refs: &std::collections::HashMap<String, Tensor>,
) -> (nn::VarStore, Net, std::collections::HashMap<String, Tensor>) {
    let arch = Architecture::load(std::path::Path::new(&fixture(&format!("zennit-{net_name}.toml")))).unwrap();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut net = Net::new(&arch, &vs.root(), [3, 8, 8], 3).unwrap();
    let prefix = if net_name == "resnet" { "res" } else { "mobile" };
    let mut vars = vs.variables();
    tch::no_grad(|| {
        for (name, var) in vars.iter_mut() {
            var.copy_(&refs[&format!("{prefix}.weights.{name}")]);
        }
    });
    let x = &refs[&format!("{prefix}.input")];
    let logits = tch::no_grad(|| net.forward(x));
    let diff = f64::try_from((&logits - &refs[&format!("{prefix}.logits")]).abs().max()).unwrap();
    assert!(diff < 1e-5, "{net_name}: logits differ from PyTorch's by {diff}");
    assert!(!net.canonise().is_empty());
    let mine: std::collections::HashMap<String, Tensor> = refs
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&format!("{prefix}."))?.to_string(), v.shallow_clone())))
        .collect();
    (vs, net, mine)
}

/// Compares the relevance hudd records at every layer of a graph net with Zennit's, under a heatmaps preset.
fn compare_graph(net_name: &str, composite: &str, preset: &str) {
    let refs: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(fixture("zennit_graph.safetensors")).unwrap().into_iter().collect();
    let (_vs, net, refs) = graph_net(net_name, &refs);
    // Zennit's composites give average pools `Norm` with a 1e-6 signed stabiliser where hudd's presets keep LRP-0
    // (1e-9); on a residual sum's cancellations the difference grows to 3e-4 of a layer's largest relevance.
    let params: hudd::stages::heatmaps::HeatmapParams = toml::from_str(&format!(
        "preset = \"{preset}\"\nrules = {{ adaptive_avg_pool2d = {{ rule = \"epsilon\", epsilon = 1e-6 }} }}"
    ))
    .unwrap();
    let rules = hudd::stages::heatmaps::rules_for(&net, &params).unwrap();
    let got = lrp::relevance(&net, &refs["input"], &refs["seed"], &rules);
    assert_eq!(got.len(), net.layers.len());
    let diffs: Vec<(String, f64)> = got
        .iter()
        .zip(&net.layers)
        .map(|(r, (name, _))| {
            let want = &refs[&format!("{composite}.{name}")];
            let scale = f64::try_from(want.abs().max()).unwrap().max(1e-12);
            (name.clone(), f64::try_from((r - want).abs().max()).unwrap() / scale)
        })
        .collect();
    assert!(diffs.iter().all(|(_, d)| *d < 1e-4), "{net_name}, {composite}: relative differences per layer: {diffs:?}");
}

#[test]
fn a_residual_net_matches_zennits_resnet_canonizer_at_every_layer() {
    compare_graph("resnet", "epsilon-plus", "epsilon-plus");
    compare_graph("resnet", "hudd", "hudd");
}

#[test]
fn a_depthwise_net_with_a_concatenation_matches_zennit_at_every_layer() {
    compare_graph("mobile", "epsilon-plus", "epsilon-plus");
    compare_graph("mobile", "hudd", "hudd");
}

#[test]
fn relevance_is_conserved_at_every_cut_of_a_residual_net_and_through_every_join() {
    let refs: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(fixture("zennit_graph.safetensors")).unwrap().into_iter().collect();
    let (_vs, net, res) = graph_net("resnet", &refs);
    // z⁺ without biases on every layer with weights (biases, from merged batch norms too, take no share) and
    // non-negative inputs after each ReLU: at every cut of the graph the relevance sums to the seed's.
    let rules: Vec<Rule> = lrp::hudd_rules(&net)
        .into_iter()
        .zip(&net.layers)
        .map(|(r, (_, op))| if matches!(op, Op::Linear(_) | Op::Conv { .. }) { Rule::ZPlusNoBias } else { r })
        .collect();
    let got = lrp::relevance(&net, &res["input"], &res["seed"], &rules);
    let total = f64::try_from(res["seed"].sum(tch::Kind::Double)).unwrap();
    let cuts: Vec<&str> =
        (0..net.layers.len()).filter(|&k| net.is_cut(net.recorded[k])).map(|k| net.layers[k].0.as_str()).collect();
    assert!(cuts.contains(&"layer1.0.add") && cuts.contains(&"layer2.0.conv1") && !cuts.contains(&"layer1.0.relu"));
    for (k, r) in got.iter().enumerate().filter(|(k, _)| net.is_cut(net.recorded[*k])) {
        let sum = f64::try_from(r.sum(tch::Kind::Double)).unwrap();
        assert!((sum - total).abs() < 1e-4 * total.abs(), "{}: {sum} vs {total}", net.layers[k].0);
    }
    // Whatever the rules elsewhere, an add, a concatenation and a gate send back exactly what they receive.
    let (_vs, net, mobile) = graph_net("mobile", &refs);
    let values = tch::no_grad(|| net.forward_values(&mobile["input"]));
    let sum = |ts: &[Tensor]| ts.iter().map(|t| f64::try_from(t.sum(tch::Kind::Double)).unwrap()).sum::<f64>();
    for (op, inputs) in [(Op::Add, [&values[2], &values[3]]), (Op::Concat, [&values[3], &values[4]])] {
        let output = Net::apply_all(&op, &inputs, None);
        let r = Tensor::randn(output.size(), (tch::Kind::Float, tch::Device::Cpu)) * output.sign().abs();
        let sent = lrp::propagate_join(&op, &inputs, &output, &r, lrp::hudd_rules_one(&op));
        assert!((sum(&sent) - sum(std::slice::from_ref(&r))).abs() < 1e-3, "{op:?}");
        assert_eq!(sent[0].size(), inputs[0].size());
    }
    let gate = values[3].mean_dim([2i64, 3].as_slice(), true, tch::Kind::Float).sigmoid();
    let output = Net::apply_all(&Op::Mul, &[&values[3], &gate], None);
    let r = Tensor::randn(output.size(), (tch::Kind::Float, tch::Device::Cpu));
    let sent = lrp::propagate_join(&Op::Mul, &[&values[3], &gate], &output, &r, Rule::Pass);
    assert_eq!(f64::try_from((&sent[0] - &r).abs().max()).unwrap(), 0.0, "the signal takes it all");
    assert_eq!(f64::try_from(sent[1].abs().max()).unwrap(), 0.0, "the gate none");
}

#[test]
fn a_graph_model_trains_and_gets_heatmaps_at_every_layer_with_conservation_checked_at_its_cuts() {
    let ws = crate::support::Ws::new();
    let text = TRAINED.replace("TINY", &fixture("tiny-resnet.toml"))
        + "\n[[stage]]\nid = \"acts\"\nkind = \"activations\"\nmodel = \"train.model\"\nimages = \"data.dataset\"\n"
        + "\n[[stage]]\nid = \"test\"\nkind = \"test\"\nmodel = \"train.model\"\ndataset = \"data.dataset\"\nsplit = \"train\"\n"
        + "\n[[stage]]\nid = \"report\"\nkind = \"report\"\ntest = \"test.summary\"\nmodel = \"train.model\"\n";
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let store = hudd::engine::store::Store::open(ws.path()).unwrap();
    let dir = store.output_path(&report.keys[w.stage_index("heatmaps").unwrap()], "heatmaps").unwrap();
    let acts = store.output_path(&report.keys[w.stage_index("acts").unwrap()], "activations").unwrap();
    // An add, a gate and a concatenation are recorded at their outputs; other layers at their one input.
    let shapes = [
        ("conv1", vec![40, 3, 32, 32]),
        ("block.conv2", vec![40, 8, 16, 16]),
        ("block.add", vec![40, 8, 16, 16]),
        ("se.fc", vec![40, 8, 1, 1]),
        ("se.scale", vec![40, 8, 16, 16]),
        ("both", vec![40, 12, 16, 16]),
        ("fc", vec![40, 48]),
    ];
    for (layer, shape) in shapes {
        for dir in [&dir, &acts] {
            let r = hudd::npy::NpyReader::<f32>::open(&dir.join(format!("{layer}.npy"))).unwrap();
            assert_eq!(r.shape, shape, "{layer}");
        }
    }
    let conservation = std::fs::read_to_string(dir.join("conservation.csv")).unwrap();
    let row = |layer: &str| conservation.lines().find(|l| l.starts_with(&format!("{layer},"))).unwrap().to_string();
    // Inside the residual block (not a cut) nothing is checked; the linear layer's input is, and conserves.
    assert!(row("block.conv2").ends_with(','), "{conservation}");
    assert!(row("block.add").starts_with("block.add,zero,"), "{conservation}");
    let dev: f64 = row("fc").rsplit(',').next().unwrap().parse().unwrap();
    assert!(dev < 1e-4, "{conservation}");
    // The report's scope lists the layers with what each takes, and draws the graph (an arrow per skip or branch).
    let out = store.output_path(&report.keys[w.stage_index("report").unwrap()], "report").unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("The network `tiny-resnet` has 20 layers, "), "{md}");
    assert!(md.contains("| `block.add` | add | `block.bn2 + maxpool` | 8×16×16 | 0 |"), "{md}");
    assert!(md.contains("| `se.scale` | mul | `block.relu2 + se.gate` | 8×16×16 | 0 |"), "{md}");
    let svg = std::fs::read_to_string(out.join("images/architecture.svg")).unwrap();
    // The inputs from further up than the row above: block.add ← maxpool, se.scale ← block.relu2, both ← se.scale.
    assert_eq!(svg.matches("fill=\"none\" stroke=\"#555\"").count(), 3, "{svg}");
    assert_eq!(svg.matches(" H394 ").count(), 1, "se.scale's two edges meet at its row: another lane for one {svg}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains(">block.add</text>"), "the HTML report draws the graph inline");
    let evidence: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("evidence.json")).unwrap()).unwrap();
    assert_eq!(evidence["architecture"]["graph"], true);
    assert!(evidence["architecture"].get("drawing").is_none(), "the drawing is not evidence");
}

#[test]
fn a_rule_a_join_cannot_take_is_refused_naming_the_layer() {
    let refs: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(fixture("zennit_graph.safetensors")).unwrap().into_iter().collect();
    let (_vs, net, _) = graph_net("mobile", &refs);
    let refuse = |rules: &str| {
        let params: hudd::stages::heatmaps::HeatmapParams = toml::from_str(&format!("rules = {{ {rules} }}")).unwrap();
        hudd::stages::heatmaps::rules_for(&net, &params).unwrap_err().to_string()
    };
    assert_eq!(
        refuse("add = { rule = \"z-plus\" }"),
        "rules give layer `add` the rule `z-plus`; a layer of kind `add` takes `zero` or `epsilon`"
    );
    assert_eq!(
        refuse("concat = { rule = \"zero\" }"),
        "rules give layer `concat` the rule `zero`; a layer of kind `concat` takes only `pass`"
    );
}

#[test]
fn asking_for_cuda_where_there_is_none_is_an_input_error_not_a_cpu_run() {
    // The binary runs with every GPU hidden (`CUDA_VISIBLE_DEVICES` empty), so a GPU host checks the refusal too.
    let ws = crate::support::Ws::new();
    let text = TRAINED.replace("TINY", &fixture("tiny.toml")).replacen("device = \"cpu\"", "device = \"cuda\"", 1);
    let manifest = ws.write("w.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hudd"))
        .env("CUDA_VISIBLE_DEVICES", "")
        .args(["--workspace", ws.path().to_str().unwrap(), "run", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("device = \"cuda\" but no CUDA device is visible ("), "{err}");
    let store = ws.store();
    let stages: Vec<String> = store.keys().unwrap().iter().filter_map(|k| store.entry(k)).map(|e| e.stage).collect();
    assert!(!stages.contains(&"train".to_string()), "a model was trained on the CPU: {stages:?}");
}
