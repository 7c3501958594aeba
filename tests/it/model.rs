//! Models: declared architectures, training, testing, weights in and out.

use hudd::engine::progress::Reporter;
use hudd::engine::store::Store;

use crate::support::Ws;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// 32 images of 4 sign classes, a tiny net trained on them, tested on the same images.
fn overfit_manifest() -> String {
    format!(
        r#"
[workflow]
name = "fit"
seed = 5

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 32
params = {{ class = {{ weights = {{ stop = 1.0, yield = 1.0, parking = 1.0, no_entry = 1.0 }} }}, noise = {{ fixed = 0.0 }} }}
splits = {{ train = {{ count = 32 }} }}

[[stage]]
id = "train"
kind = "train"
dataset = "data.dataset"
architecture = "{}"
epochs = 40
batch_size = 8
optimizer = "adam"
lr = 0.003
weight_decay = 0.0
validation = 0.0
device = "cpu"

[[stage]]
id = "test"
kind = "test"
model = "train.model"
dataset = "data.dataset"
split = "train"
"#,
        fixture("tiny.toml")
    )
}

struct Ran {
    ws: Ws,
    keys: Vec<String>,
    w: hudd::engine::manifest::Workflow,
}

impl Ran {
    fn output(&self, stage: &str, output: &str) -> std::path::PathBuf {
        let i = self.w.stage_index(stage).unwrap();
        Store::open(self.ws.path()).unwrap().output_path(&self.keys[i], output).unwrap()
    }
}

fn run(text: &str) -> Ran {
    let ws = Ws::new();
    let (w, report) = ws.run_builtin(text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    Ran { keys: report.keys.clone(), w, ws }
}

#[test]
fn a_tiny_model_overfits_32_images_and_the_results_table_has_hudds_columns() {
    let ran = run(&overfit_manifest());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ran.output("test", "summary")).unwrap()).unwrap();
    assert!(summary["accuracy"].as_f64().unwrap() >= 0.95, "{summary}");
    let results = std::fs::read_to_string(ran.output("test", "results")).unwrap();
    let header = results.lines().next().unwrap();
    assert!(header.starts_with("image,result,expected,predicted,speed_30,speed_50,"), "{header}");
    assert!(header.contains(",class,scale,"), "the dataset's parameters follow the scores: {header}");
    assert_eq!(results.lines().count(), 33);
    let curve = std::fs::read_to_string(ran.output("train", "curve")).unwrap();
    assert_eq!(curve.lines().count(), 41);
    let errors = hudd::dataset::Dataset::open(&ran.output("test", "errors")).unwrap();
    assert_eq!(errors.meta.count, summary["errors"].as_u64().unwrap() as usize);
}

#[test]
fn training_is_deterministic_for_a_seed() {
    // Each training in its own process: libtorch's thread count is global, and the other tests set theirs.
    let train = || {
        let ws = Ws::new();
        let m = ws.write("w.toml", &overfit_manifest());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hudd"))
            .args(["--workspace", ws.path().to_str().unwrap(), "run", m.to_str().unwrap(), "--threads", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let key = ws.store().read_state("fit").remove("train").unwrap().key;
        std::fs::read(ws.store().output_path(&key, "model").unwrap().join("weights.safetensors")).unwrap()
    };
    assert!(train() == train(), "same seed, same weights");
}

/// Two trainings of a model with dropout side by side (`--jobs 2`) both draw from libtorch's one generator;
/// each must still give the weights it gives alone.
#[test]
fn trainings_side_by_side_give_the_weights_each_gives_alone() {
    let text = overfit_manifest()
        .replace("tiny.toml", "tiny-dropout.toml")
        .replace("epochs = 40", "epochs = 15\nmatrix = { seed = [1, 2] }");
    let text = &text[..text.find("[[stage]]\nid = \"test\"").unwrap()];
    // Each run in its own process: libtorch's thread count is global to a process, and the other tests of this
    // binary set theirs while they run.
    let run = |ws: &Ws, jobs: &str| {
        let m = ws.write("w.toml", text);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hudd"))
            .args(["--workspace", ws.path().to_str().unwrap(), "run", m.to_str().unwrap(), "--jobs", jobs])
            .args(["--threads", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let (together, alone) = (Ws::new(), Ws::new());
    run(&together, "2");
    run(&alone, "1");
    let weights = |ws: &Ws, id: &str| {
        let key = ws.store().read_state("fit").remove(id).unwrap().key;
        let path = ws.store().output_path(&key, "model").unwrap();
        std::fs::read(path.join("weights.safetensors")).unwrap()
    };
    for id in ["train[seed=1]", "train[seed=2]"] {
        assert!(weights(&together, id) == weights(&alone, id), "{id}: side by side, other weights than alone");
    }
    assert!(weights(&alone, "train[seed=1]") != weights(&alone, "train[seed=2]"), "the seeds differ");
}

#[test]
fn weights_round_trip_through_safetensors() {
    use hudd::model::artefact::Model;
    use hudd::model::draws::{Draws, Stream};
    let ran = run(&overfit_manifest());
    let dir = ran.output("train", "model");
    let model = Model::load(&dir, tch::Device::Cpu).unwrap();
    let again = tempfile::tempdir().unwrap();
    model.save(again.path()).unwrap();
    let reloaded = Model::load(again.path(), tch::Device::Cpu).unwrap();
    let x = Draws::new(1, Stream::Init).normal(&[2, 3, 32, 32]);
    let (y1, y2) = (model.forward(&x).unwrap(), reloaded.forward(&x).unwrap());
    assert_eq!(f64::try_from((y1 - y2).abs().max()).unwrap(), 0.0);
}

#[test]
fn weights_written_by_pytorch_load_with_the_documented_names() {
    use hudd::model::artefact::load_weights;
    let mut model = crate::support::tiny_model();
    load_weights(model.var_store_mut().unwrap(), std::path::Path::new(&fixture("pytorch_tiny.safetensors"))).unwrap();
    let io = tch::Tensor::read_safetensors(fixture("pytorch_tiny_io.safetensors")).unwrap();
    let get = |name: &str| io.iter().find(|(n, _)| n == name).unwrap().1.shallow_clone();
    let y = model.forward(&get("input")).unwrap();
    let diff = f64::try_from((y - get("output")).abs().max()).unwrap();
    assert!(diff < 1e-5, "PyTorch and hudd disagree by {diff}");
}

#[test]
fn a_model_that_cannot_take_the_images_is_an_error_naming_both_sizes() {
    let text = overfit_manifest().replace(&fixture("tiny.toml"), "alexnet");
    let ws = Ws::new();
    let (_, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 2);
    let hudd::engine::Outcome::Failed { error, .. } = &report.outcomes[1] else {
        panic!("{}", crate::support::failures(&report))
    };
    assert!(error.contains("alexnet cannot take the dataset's [3, 32, 32] images"), "{error}");
    assert!(error.contains("layer `features.12` (max_pool2d): input 256×1×1 is smaller than the kernel 3"), "{error}");
}

#[test]
fn a_missing_split_is_named_with_the_splits_there_are() {
    let text = overfit_manifest().replace("split = \"train\"", "split = \"tset\"");
    let ws = Ws::new();
    let path = ws.write("w.toml", &text);
    let (code, _, err) = cli(&["--workspace", ws.path().to_str().unwrap(), "run", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no split `tset` (splits: train)"), "{err}");
}

#[test]
fn model_describe_prints_shapes_and_parameter_counts() {
    let (code, out, err) = describe(&["alexnet"]);
    assert_eq!(code, 0, "{err}");
    // torchvision's AlexNet with 10 classes has 57,044,810 parameters.
    assert!(out.contains("total parameters: 57044810"), "{out}");
    assert!(out.contains("features.12"), "{out}");
    let (code, _, err) = describe(&["alexnet", "--input", "3,32,32"]);
    assert_eq!(code, 2);
    assert!(err.contains("layer `features.12` (max_pool2d)"), "{err}");
}

/// A 4-class dataset of 32×32 images imported from a CSV listing.
fn four_classes(ws: &Ws) -> String {
    let mut listing = String::from("path,label,split\n");
    for (i, label) in ["a", "b", "c", "d", "a", "b"].iter().enumerate() {
        let path = ws.path().join(format!("imgs/{i}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(32, 32, image::Rgb([40 * i as u8, 90, 200])).save(&path).unwrap();
        listing.push_str(&format!("imgs/{i}.png,{label},test\n"));
    }
    ws.write("list.csv", &listing);
    "[[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"csv\"\npath = \"list.csv\"\nsize = 32\n".to_string()
}

#[test]
fn a_torchscript_model_is_imported_tested_and_refused_where_layers_are_needed() {
    use hudd::model::artefact::Model;
    let ws = Ws::new();
    let script = fixture("tiny_script.pt");
    let text = format!(
        "[workflow]\nname = \"ts\"\n{}[[stage]]\nid = \"dnn\"\nkind = \"model\"\ndataset = \"data.dataset\"\ntorchscript = \"{script}\"\n\
         [[stage]]\nid = \"test\"\nkind = \"test\"\nmodel = \"dnn.model\"\ndataset = \"data.dataset\"\n",
        four_classes(&ws)
    );
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let store = Store::open(ws.path()).unwrap();
    let dir = store.output_path(&report.keys[w.stage_index("dnn").unwrap()], "model").unwrap();
    let model = Model::load(&dir, tch::Device::Cpu).unwrap();
    let io = tch::Tensor::read_safetensors(fixture("tiny_script_io.safetensors")).unwrap();
    let get = |name: &str| io.iter().find(|(n, _)| n == name).unwrap().1.shallow_clone();
    let diff = f64::try_from((model.forward(&get("input")).unwrap() - get("output")).abs().max()).unwrap();
    assert!(diff < 1e-5, "TorchScript output differs from PyTorch's by {diff}");
    let err = model.net("LRP heatmaps").unwrap_err().to_string();
    assert!(err.contains("is TorchScript: LRP heatmaps needs declared layers"), "{err}");
    let results =
        std::fs::read_to_string(store.output_path(&report.keys[w.stage_index("test").unwrap()], "results").unwrap())
            .unwrap();
    assert!(results.starts_with("image,result,expected,predicted,a,b,c,d"), "{results}");
}

#[test]
fn pytorch_weights_are_imported_with_a_declared_architecture_and_checked() {
    let ws = Ws::new();
    let text = format!(
        "[workflow]\nname = \"pt\"\n{}[[stage]]\nid = \"dnn\"\nkind = \"model\"\ndataset = \"data.dataset\"\narchitecture = \"{}\"\nweights = \"{}\"\n",
        four_classes(&ws),
        fixture("tiny.toml"),
        fixture("pytorch_tiny.safetensors")
    );
    let (_, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    // Weights for another architecture are refused with the parameter named.
    let text = text.replace(&fixture("tiny.toml"), "alexnet-small");
    let (_, report) = ws.run_builtin(&text);
    let hudd::engine::Outcome::Failed { error, .. } = &report.outcomes[1] else {
        panic!("{}", crate::support::failures(&report))
    };
    assert!(error.contains("missing parameters: classifier.1.bias"), "{error}");
}

#[test]
fn a_keypoint_model_learns_where_a_dot_is_and_the_test_reports_pixel_errors() {
    use rand::{Rng, SeedableRng};
    let ws = Ws::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    // Source images are 64×64 and imported at 32×32: the targets must be scaled with the pixels.
    let mut listing = String::from("path,split,target_x0,target_y0\n");
    for i in 0..160 {
        let (x, y) = (rng.random_range(12..52u32), rng.random_range(12..52u32));
        let mut img = image::RgbImage::from_pixel(64, 64, image::Rgb([30, 30, 30]));
        for dy in 0..4 {
            for dx in 0..4 {
                img.put_pixel(x - 2 + dx, y - 2 + dy, image::Rgb([250, 250, 250]));
            }
        }
        let path = format!("dots/{i}.png");
        std::fs::create_dir_all(ws.path().join("dots")).unwrap();
        img.save(ws.path().join(&path)).unwrap();
        let split = if i < 128 { "train" } else { "test" };
        listing.push_str(&format!("{path},{split},{x},{y}\n"));
    }
    ws.write("dots.csv", &listing);
    let text = format!(
        "[workflow]\nname = \"kp\"\nseed = 2\n\
         [[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"csv\"\npath = \"dots.csv\"\nsize = 32\nchannels = 1\n\
         [[stage]]\nid = \"train\"\nkind = \"train\"\ndataset = \"data.dataset\"\narchitecture = \"{}\"\nepochs = 80\nbatch_size = 16\n\
         optimizer = \"adam\"\nlr = 0.002\nweight_decay = 0.0\nvalidation = 0.0\ndevice = \"cpu\"\n\
         [[stage]]\nid = \"test\"\nkind = \"test\"\nmodel = \"train.model\"\ndataset = \"data.dataset\"\n",
        fixture("tiny-kp.toml")
    );
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let store = Store::open(ws.path()).unwrap();
    let data = hudd::dataset::Dataset::open(&store.output_path(&report.keys[0], "dataset").unwrap()).unwrap();
    assert_eq!(data.meta.target, hudd::dataset::Target::Regression { targets: vec!["x0".into(), "y0".into()] });
    let first = &data.targets().unwrap()[0];
    assert!(first.iter().all(|&t| (6.0..=26.0).contains(&t)), "targets scaled to 32 px: {first:?}");
    let test = w.stage_index("test").unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.output_path(&report.keys[test], "summary").unwrap()).unwrap())
            .unwrap();
    let mean_error = summary["mean_error"].as_f64().unwrap();
    assert!(mean_error < 3.0, "a dot is easy to find: mean error {mean_error:.2} px ({summary})");
    assert!(summary["accuracy"].as_f64().unwrap() >= 0.8, "most dots within HUDD's 4 px: {summary}");
    let results = std::fs::read_to_string(store.output_path(&report.keys[test], "results").unwrap()).unwrap();
    assert!(results.starts_with("image,result,avg_error,max_error,worst_kp,KP0"), "{results}");
}

#[test]
fn the_heatmaps_stage_refuses_a_torchscript_model_and_handles_an_empty_image_set() {
    let ws = Ws::new();
    let text = format!(
        "[workflow]\nname = \"ts\"\n{}[[stage]]\nid = \"dnn\"\nkind = \"model\"\ndataset = \"data.dataset\"\ntorchscript = \"{}\"\n\
         [[stage]]\nid = \"hm\"\nkind = \"heatmaps\"\nmodel = \"dnn.model\"\nimages = \"data.dataset\"\n",
        four_classes(&ws),
        fixture("tiny_script.pt")
    );
    let (_, report) = ws.run_builtin(&text);
    let hudd::engine::Outcome::Failed { error, exit_code } = &report.outcomes[2] else {
        panic!("{}", crate::support::failures(&report))
    };
    assert_eq!(*exit_code, 2);
    assert!(error.contains("is TorchScript: the heatmaps stage (LRP) needs declared layers"), "{error}");

    // An empty image set gives empty but valid arrays.
    let text = format!(
        "[workflow]\nname = \"empty\"\n{}limit = 0\n[[stage]]\nid = \"dnn\"\nkind = \"model\"\ndataset = \"all.dataset\"\narchitecture = \"{}\"\nweights = \"{}\"\n\
         [[stage]]\nid = \"all\"\nkind = \"dataset\"\nformat = \"csv\"\npath = \"list.csv\"\nsize = 32\n\
         [[stage]]\nid = \"hm\"\nkind = \"heatmaps\"\nmodel = \"dnn.model\"\nimages = \"data.dataset\"\n",
        four_classes(&ws),
        fixture("tiny.toml"),
        fixture("pytorch_tiny.safetensors")
    );
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let dir =
        Store::open(ws.path()).unwrap().output_path(&report.keys[w.stage_index("hm").unwrap()], "heatmaps").unwrap();
    let r = hudd::npy::NpyReader::<f32>::open(&dir.join("features.0.npy")).unwrap();
    assert_eq!(r.shape, vec![0, 3, 32, 32]);
}

#[test]
fn weights_holding_nan_are_refused_naming_the_parameter() {
    use hudd::model::artefact::load_weights;
    let dir = tempfile::tempdir().unwrap();
    let mut named = tch::Tensor::read_safetensors(fixture("pytorch_tiny.safetensors")).unwrap();
    let (name, t) = named.iter_mut().find(|(n, _)| n.ends_with("bias")).unwrap();
    let name = name.clone();
    let _ = t.fill_(f64::NAN);
    let path = dir.path().join("nan.safetensors");
    tch::Tensor::write_safetensors(&named.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>(), &path).unwrap();
    let mut model = crate::support::tiny_model();
    let e = load_weights(model.var_store_mut().unwrap(), &path).unwrap_err().to_string();
    assert!(e.contains(&format!("`{name}` holds NaN or infinite values")) && e.contains("nan.safetensors"), "{e}");
}

#[test]
fn a_broken_torchscript_file_is_named_as_the_user_gave_it_not_as_the_stores_copy() {
    let ws = Ws::new();
    let garbage = ws.write("garbage.pt", "not a TorchScript archive");
    let text = format!(
        "[workflow]\nname = \"ts\"\n{}[[stage]]\nid = \"dnn\"\nkind = \"model\"\ndataset = \"data.dataset\"\ntorchscript = \"garbage.pt\"\n",
        four_classes(&ws)
    );
    let (w, report) = ws.run_builtin(&text);
    let hudd::engine::Outcome::Failed { error, exit_code } = &report.outcomes[w.stage_index("dnn").unwrap()] else {
        panic!("{}", crate::support::failures(&report))
    };
    assert_eq!(*exit_code, 2);
    assert!(error.contains(&format!("{}: cannot load it:", garbage.display())), "{error}");
    assert!(!error.contains(".hudd"), "the message names the store's copy: {error}");
}

#[test]
fn a_torchscript_model_giving_integers_is_refused_by_name() {
    let ws = Ws::new();
    let text = format!(
        "[workflow]\nname = \"ts\"\n{}[[stage]]\nid = \"dnn\"\nkind = \"model\"\ndataset = \"data.dataset\"\ntorchscript = \"{}\"\n",
        four_classes(&ws),
        fixture("int_script.pt")
    );
    let (w, report) = ws.run_builtin(&text);
    let hudd::engine::Outcome::Failed { error, exit_code } = &report.outcomes[w.stage_index("dnn").unwrap()] else {
        panic!("{}", crate::support::failures(&report))
    };
    assert_eq!(*exit_code, 2);
    assert!(error.contains("int_script.pt: the model gives Int64 outputs; hudd needs float logits"), "{error}");
}

/// The weights of tests/fixtures/torchvision_resnet.py's formula for tensor number `t` of the state dict.
fn formula(t: u64, name: &str, shape: &[i64]) -> tch::Tensor {
    let n: i64 = shape.iter().product();
    let fan_in: i64 = shape.iter().skip(1).product();
    let values: Vec<f32> = (1..=n as u64)
        .map(|j| {
            let u = (j * 2_654_435_761 + (t + 1) * 40_503) % (1u64 << 32);
            let v = u as f64 / 2f64.powi(32) - 0.5;
            (if name.ends_with("running_var") {
                1.0 + v
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                0.2 * v
            } else if t == 1000 {
                4.0 * v
            } else if shape.len() == 1 {
                1.0 + 0.4 * v
            } else {
                2.0 * v * (6.0 / fan_in as f64).sqrt()
            }) as f32
        })
        .collect();
    tch::Tensor::from_slice(&values).view(shape)
}

#[test]
fn a_torchvision_resnet18_state_dict_loads_into_the_shipped_resnet18_and_gives_its_logits() {
    use hudd::model::Architecture;
    let fixture_tensors = tch::Tensor::read_safetensors(fixture("torchvision_resnet18.safetensors")).unwrap();
    let mut weights = Vec::new();
    let mut logits = None;
    for (name, t) in fixture_tensors {
        match name.strip_prefix("shape.") {
            Some(param) => {
                let dims = Vec::<i64>::try_from(&t).unwrap();
                weights.push((param.to_string(), formula(dims[0] as u64, param, &dims[1..])));
            }
            None => logits = Some(t),
        }
    }
    // torchvision names every parameter and batch-norm statistic of the 20 convolutions, 20 batch norms and `fc`.
    assert_eq!(weights.len(), 20 + 20 * 4 + 2);
    let ws = Ws::new();
    let path = ws.path().join("resnet18.safetensors");
    tch::Tensor::write_safetensors(&weights, &path).unwrap();
    let arch = Architecture::resolve(std::path::Path::new("resnet18"), std::path::Path::new(".")).unwrap();
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = hudd::model::net::Net::new(&arch, &vs.root(), [3, 64, 64], 10).unwrap();
    hudd::model::artefact::load_weights(&mut vs, &path).unwrap();
    let x = formula(1000, "input", &[2, 3, 64, 64]);
    let y = tch::no_grad(|| net.forward(&x));
    let want = logits.unwrap();
    let scale = f64::try_from(want.abs().max()).unwrap();
    let diff = f64::try_from((y - want).abs().max()).unwrap();
    assert!(diff < 1e-5 * scale.max(1.0), "torchvision and hudd disagree by {diff} (logits up to {scale})");
}

/// `hudd <args>` in process: the exit code, stdout and stderr.
fn cli(args: &[&str]) -> (u8, String, String) {
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let args: Vec<&str> = std::iter::once("hudd").chain(args.iter().copied()).collect();
    let code = hudd::cli::main_with(
        args.iter().map(Into::into),
        &hudd::stages::registry(),
        &mut o,
        &mut e,
        Reporter::hidden(),
    );
    (code, String::from_utf8(o).unwrap(), String::from_utf8(e).unwrap())
}

fn describe(args: &[&str]) -> (u8, String, String) {
    cli(&[&["model", "describe"], args].concat())
}

#[test]
fn every_shipped_architecture_describes_itself_and_graphs_show_their_inputs() {
    for (name, _) in hudd::model::SHIPPED {
        let (code, out, err) = describe(&[name]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.contains("total parameters: "), "{name}: {out}");
    }
    // torchvision's resnet18(num_classes=10) has 11,181,642 parameters.
    let (_, out, _) = describe(&["resnet18"]);
    assert!(out.contains("total parameters: 11181642"), "{out}");
    let add = out.lines().find(|l| l.starts_with("layer2.0.add ")).unwrap();
    assert!(add.contains("layer2.0.bn2 + layer2.0.downsample.1") && add.contains("128×28×28"), "{add}");
    let (_, out, _) = describe(&["mobilenet-small"]);
    let gate = out.lines().find(|l| l.starts_with("features.1.block.1.scale ")).unwrap();
    assert!(
        gate.contains("mul") && gate.contains("features.1.block.0.2 + features.1.block.1.scale_activation"),
        "{gate}"
    );
}

#[test]
fn a_graph_that_cannot_be_built_is_refused_naming_the_layer() {
    let ws = Ws::new();
    let head = "[model]\nname = \"g\"\ninput = [3, 8, 8]\n\
                [[layer]]\nname = \"a\"\nkind = \"conv2d\"\nout_channels = 4\nkernel_size = 3\npadding = 1\n\
                [[layer]]\nname = \"b\"\nkind = \"conv2d\"\nout_channels = 6\nkernel_size = 1\n";
    let cases = [
        (
            "[[layer]]\nname = \"s\"\ninputs = [\"a\", \"c\"]\nkind = \"add\"\n",
            "layer `s`: takes `c`, which is no layer declared before it",
        ),
        (
            "[[layer]]\nname = \"s\"\ninputs = [\"a\", \"b\"]\nkind = \"add\"\n",
            "layer `s` (add): adds inputs of one shape, got `a` 4×8×8, `b` 6×8×8",
        ),
        (
            "[[layer]]\nname = \"s\"\ninputs = [\"a\"]\nkind = \"add\"\n",
            "layer `s`: add takes at least two inputs, got 1",
        ),
        (
            "[[layer]]\nname = \"s\"\ninputs = [\"a\", \"b\"]\nkind = \"relu\"\n",
            "layer `s`: relu takes one input, got 2",
        ),
        ("[[layer]]\nname = \"s\"\ninputs = [\"a\"]\nkind = \"relu\"\n", "layer `b`: its output goes to no layer"),
        (
            "[[layer]]\nname = \"s\"\nkind = \"conv2d\"\nout_channels = 4\nkernel_size = 1\ngroups = 4\n",
            "layer `s` (conv2d): groups (4) must divide the input channels (6)",
        ),
        ("[[layer]]\nname = \"input\"\nkind = \"relu\"\n", "invalid layer name `input`"),
    ];
    for (tail, want) in cases {
        let path = ws.write("g.toml", &format!("{head}{tail}"));
        let (code, _, err) = describe(&[path.to_str().unwrap()]);
        assert_eq!(code, 2, "{tail}");
        assert!(err.contains(want), "{tail}\n{err}");
    }
    // A concatenation adds channels; a gate of C×1×1 scales a C×H×W map.
    let tail = "[[layer]]\nname = \"c\"\ninputs = [\"a\", \"b\"]\nkind = \"concat\"\n\
                [[layer]]\nname = \"p\"\nkind = \"adaptive_avg_pool2d\"\noutput_size = [1, 1]\n\
                [[layer]]\nname = \"g\"\nkind = \"sigmoid\"\n\
                [[layer]]\nname = \"m\"\ninputs = [\"c\", \"g\"]\nkind = \"mul\"\n";
    let path = ws.write("g.toml", &format!("{head}{tail}"));
    let (code, out, err) = describe(&[path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("c ") && l.contains("10×8×8")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("m ") && l.contains("c + g") && l.contains("10×8×8")), "{out}");
}

#[test]
fn onnx_files_exported_by_pytorch_import_as_graphs_that_give_pytorchs_logits() {
    let refs: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(fixture("zennit_graph.safetensors")).unwrap().into_iter().collect();
    let ws = Ws::new();
    // Both of PyTorch's exporters: the TorchScript-based one and the torch.export-based one (weights in a `.data`
    // file beside the model, the global pool as a ReduceMean, nodes named `node_…`).
    let files = [
        ("zennit-resnet.onnx", "res"),
        ("zennit-mobile.onnx", "mobile"),
        ("zennit-resnet-dynamo.onnx", "res"),
        ("zennit-mobile-dynamo.onnx", "mobile"),
    ];
    for (file, prefix) in files {
        let out = ws.path().join(file.replace(".onnx", ".toml"));
        let (code, stdout, err) = cli(&["model", "import", &fixture(file), "-o", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains("input 3×8×8"), "{stdout}");
        let arch = hudd::model::Architecture::load(&out).unwrap();
        assert!(arch.is_graph(), "{file}");
        let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let net = hudd::model::net::Net::new(&arch, &vs.root(), [3, 8, 8], 3).unwrap();
        hudd::model::artefact::load_weights(&mut vs, &out.with_extension("safetensors")).unwrap();
        let y = tch::no_grad(|| net.forward(&refs[&format!("{prefix}.input")]));
        let diff = f64::try_from((y - &refs[&format!("{prefix}.logits")]).abs().max()).unwrap();
        assert!(diff < 1e-5, "{file}: PyTorch and hudd disagree by {diff}");
        // The layer names follow the modules' (a residual sum is the block's `add`), or where the exporter names
        // nodes by operator, the parameters'.
        let names: Vec<&str> = arch.layers.iter().map(|l| l.name.as_str()).collect();
        let want = match (prefix, file.contains("dynamo")) {
            ("res", false) => "layer2.0.add",
            ("res", true) => "layer2.0.downsample.0",
            _ => "right",
        };
        assert!(names.contains(&want), "{file}: {names:?}");
    }
    let out = ws.path().join("bad.toml");
    let (code, _, err) = cli(&["model", "import", &fixture("unsupported.onnx"), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("node `/act/Tanh` uses the operator `Tanh`, which hudd cannot declare"), "{err}");
    assert!(!out.exists() && !out.with_extension("safetensors").exists(), "nothing is written for a refused model");
    let (code, _, err) = cli(&["model", "import", &fixture("tiny.toml"), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("not an ONNX model"), "{err}");
    // A model whose weights file beside it is missing, or cut short, is named, not a panic.
    let lone = ws.path().join("lone.onnx");
    std::fs::copy(fixture("zennit-resnet-dynamo.onnx"), &lone).unwrap();
    let (code, _, err) = cli(&["model", "import", lone.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tensor `conv1.weight`: cannot read") && err.contains("zennit-resnet-dynamo.onnx.data"),
        "{err}"
    );
    std::fs::write(ws.path().join("zennit-resnet-dynamo.onnx.data"), [0u8; 100]).unwrap();
    let (code, _, err) = cli(&["model", "import", lone.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("holds 100 bytes, not 864 from byte 0"), "{err}");
}

#[test]
fn the_model_stage_reads_an_onnx_file_and_heatmaps_run_on_its_graph() {
    let ws = Ws::new();
    // Three classes of 8×8 images, as the exported residual net takes.
    let data = four_classes(&ws).replace("size = 32", "size = 8");
    let listing = std::fs::read_to_string(ws.path().join("list.csv")).unwrap().replace(",d,", ",c,");
    ws.write("list.csv", &listing);
    let text = format!(
        "[workflow]\nname = \"onnx\"\n{data}[[stage]]\nid = \"dnn\"\nkind = \"model\"\ndataset = \"data.dataset\"\nonnx = \"{}\"\n\
         [[stage]]\nid = \"test\"\nkind = \"test\"\nmodel = \"dnn.model\"\ndataset = \"data.dataset\"\n\
         [[stage]]\nid = \"heatmaps\"\nkind = \"heatmaps\"\nmodel = \"dnn.model\"\nimages = \"data.dataset\"\n\
         [[stage]]\nid = \"tune\"\nkind = \"train\"\ndataset = \"data.dataset\"\ninit = \"dnn.model\"\nsplit = \"test\"\n\
         epochs = 2\nbatch_size = 3\nvalidation = 0.0\ndevice = \"cpu\"\n",
        fixture("zennit-resnet.onnx")
    );
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let store = hudd::engine::store::Store::open(ws.path()).unwrap();
    let dir = store.output_path(&report.keys[w.stage_index("heatmaps").unwrap()], "heatmaps").unwrap();
    let add = hudd::npy::NpyReader::<f32>::open(&dir.join("layer2.0.add.npy")).unwrap();
    assert_eq!(add.shape, [6, 16, 2, 2]);
    // Training starts from the imported weights and keeps the graph.
    let tuned = hudd::model::artefact::Model::load(
        &store.output_path(&report.keys[w.stage_index("tune").unwrap()], "model").unwrap(),
        tch::Device::Cpu,
    )
    .unwrap();
    assert!(tuned.meta.architecture.as_ref().unwrap().is_graph());
    let imported = hudd::model::artefact::Model::load(
        &store.output_path(&report.keys[w.stage_index("dnn").unwrap()], "model").unwrap(),
        tch::Device::Cpu,
    )
    .unwrap();
    let weight = |m: &hudd::model::artefact::Model| m.var_store().unwrap().variables()["fc.weight"].shallow_clone();
    let moved = f64::try_from((weight(&tuned) - weight(&imported)).abs().max()).unwrap();
    assert!(moved > 0.0 && moved < 1.0, "fine-tuning moved fc.weight by {moved}");
    // Both an ONNX file and weights: one source only.
    let both = ws.write("both.toml", &text.replace("onnx = ", "weights = \"w.safetensors\"\nonnx = "));
    let (code, _, err) = cli(&["check", both.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("give one of `torchscript`, `onnx`, or `architecture` with `weights`"), "{err}");
}

#[test]
fn the_shipped_efficientnet_lite0_as_a_backbone_gives_pytorchs_features_on_resized_images() {
    let mut weights = Vec::new();
    let (mut images, mut expected, mut expected64) = (None, Vec::new(), Vec::new());
    for (name, t) in tch::Tensor::read_safetensors(fixture("efficientnet_lite0.safetensors")).unwrap() {
        if let Some(param) = name.strip_prefix("shape.") {
            let dims = Vec::<i64>::try_from(&t).unwrap();
            weights.push((param.to_string(), formula(dims[0] as u64, param, &dims[1..])));
        } else if let Some(layer) = name.strip_prefix("expected.") {
            expected.push((layer.to_string(), t));
        } else if let Some(layer) = name.strip_prefix("expected64.") {
            expected64.push((layer.to_string(), t));
        } else {
            images = Some(t);
        }
    }
    let ws = Ws::new();
    tch::Tensor::write_safetensors(&weights, ws.path().join("lite0.safetensors")).unwrap();
    // The two 3×20×20 images as PNG files, imported as a dataset of one class.
    let images = images.unwrap();
    for i in 0..2 {
        let chw = Vec::<u8>::try_from(images.get(i).permute([1, 2, 0]).contiguous().flatten(0, -1)).unwrap();
        let path = ws.path().join(format!("pictures/TrainingSet/any/{i}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_raw(20, 20, chw).unwrap().save(&path).unwrap();
    }
    let layers: Vec<String> = expected.iter().map(|(l, _)| format!("\"{l}\"")).collect();
    let manifest = format!(
        "[workflow]\nname = \"backbone\"\n\n[[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"folders\"\n\
         path = \"pictures\"\nsize = 20\n\n[[stage]]\nid = \"generic\"\nkind = \"activations\"\n\
         images = \"data.dataset\"\nbackbone = {{ architecture = \"efficientnet-lite0\", \
         weights = \"lite0.safetensors\" }}\nlayers = [{}]\npool = \"channels\"\n",
        layers.join(", ")
    );
    // At the architecture's 224×224, and at a size of the manifest's.
    let small = manifest.replace("weights = \"lite0.safetensors\"", "weights = \"lite0.safetensors\", size = [64, 64]");
    for (manifest, expected) in [(&manifest, &expected), (&small, &expected64)] {
        let (w, report) = ws.run_builtin(manifest);
        assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
        let key = &report.keys[w.stage_index("generic").unwrap()];
        let folder = Store::open(ws.path()).unwrap().output_path(key, "activations").unwrap();
        features_match(&folder, expected);
    }
    // A grey image set goes in as grey on every channel: the features of the same pictures imported as RGB.
    for i in 0..2 {
        let from = ws.path().join(format!("pictures/TrainingSet/any/{i}.png"));
        let to = ws.path().join(format!("greys/TrainingSet/any/{i}.png"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        image::open(&from).unwrap().to_luma8().save(&to).unwrap();
    }
    let read = |channels: usize| {
        let text = small
            .replace("\"pictures\"", "\"greys\"")
            .replace("size = 20\n", &format!("size = 20\nchannels = {channels}\n"));
        let (w, report) = ws.run_builtin(&text);
        assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
        let key = &report.keys[w.stage_index("generic").unwrap()];
        let folder = Store::open(ws.path()).unwrap().output_path(key, "activations").unwrap();
        hudd::npy::NpyReader::<f32>::open(&folder.join("_conv_head.npy")).unwrap().read_all().unwrap()
    };
    let (grey, rgb) = (read(1), read(3));
    assert!(grey.iter().zip(&rgb).all(|(a, b)| (a - b).abs() <= 1e-5 * a.abs().max(1.0)), "{grey:?} {rgb:?}");
    // An unknown layer is named with the layers there are.
    let unknown = manifest.replace("\"_fc\"", "\"fc\"");
    let (w, report) = ws.run_builtin(&unknown);
    let hudd::engine::Outcome::Failed { error, exit_code: 2 } = &report.outcomes[w.stage_index("generic").unwrap()]
    else {
        panic!("{}", crate::support::failures(&report))
    };
    assert!(error.contains("layers: no layer `fc` in the network; it has 144 layers: _conv_stem, _bn0"), "{error}");
    // Neither the model under analysis nor a backbone: nothing to take activations of.
    let start = manifest.find("backbone = ").unwrap();
    let end = start + manifest[start..].find('\n').unwrap() + 1;
    let (w, report) = ws.run_builtin(&format!("{}{}", &manifest[..start], &manifest[end..]));
    let hudd::engine::Outcome::Failed { error, exit_code: 2 } = &report.outcomes[w.stage_index("generic").unwrap()]
    else {
        panic!("{}", crate::support::failures(&report))
    };
    assert!(error.ends_with("give a `model` input (the DNN under analysis) or a `backbone`"), "{error}");
}

/// Each layer's stored channel means against PyTorch's, within 1e-4 of the largest.
fn features_match(folder: &std::path::Path, expected: &[(String, tch::Tensor)]) {
    assert_eq!(expected.len(), 5);
    for (layer, want) in expected {
        let mut reader = hudd::npy::NpyReader::<f32>::open(&folder.join(format!("{layer}.npy"))).unwrap();
        let got = reader.read_all().unwrap();
        assert_eq!(reader.shape, want.size().iter().map(|&d| d as usize).collect::<Vec<_>>(), "{layer}");
        let got = tch::Tensor::from_slice(&got).view(want.size().as_slice());
        let scale = f64::try_from(want.abs().max()).unwrap();
        let diff = f64::try_from((got - want).abs().max()).unwrap();
        assert!(diff < 1e-4 * scale, "{layer}: PyTorch and hudd disagree by {diff} (values up to {scale})");
    }
}
