//! Execution settings stay out of keys (`Stage::SETTINGS`): for every kind that declares one, two values give the
//! same bytes, so leaving them out of the key can never hide a real change. Measured here and so left in keys: the
//! inference batch size (test, heatmaps, select: scores and relevance move in their last bits) and training's
//! threads (its sums in libtorch's products). `tests/it/determinism.rs` runs the whole quickstart this way.

use std::collections::BTreeMap;

use crate::support::Ws;

const PIPELINE: &str = r#"
[workflow]
name = "settings"
seed = 4

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 32
params = { class = { weights = { stop = 1.0, yield = 1.0, parking = 1.0, no_entry = 1.0 } } }
splits = { train = { count = 60 }, test = { count = 60, params = { yaw = { uniform = [-70.0, 70.0] } } }, improvement = { count = 50, params = { yaw = { uniform = [-70.0, 70.0] } } } }

[[stage]]
id = "train"
kind = "train"
dataset = "data.dataset"
architecture = "TINY"
epochs = 2
batch_size = 8
optimizer = "adam"
lr = 0.003
validation = 0.0
device = "cpu"
threads = 1

[[stage]]
id = "test"
kind = "test"
model = "train.model"
dataset = "data.dataset"
threads = THREADS
batch_size = 8

[[stage]]
id = "heatmaps"
kind = "heatmaps"
model = "train.model"
images = "test.errors"
threads = THREADS
batch_size = 8

[[stage]]
id = "cluster"
kind = "cluster"
heatmaps = "heatmaps.heatmaps"
images = "test.errors"
threads = THREADS

[[stage]]
id = "activations"
kind = "activations"
model = "train.model"
images = "test.errors"
threads = THREADS

[[stage]]
id = "cluster-activations"
kind = "cluster"
heatmaps = "activations.activations"
images = "test.errors"
mode = "direct"
pca = 5
threads = THREADS

[[stage]]
id = "select"
kind = "select"
model = "train.model"
dataset = "data.dataset"
clusters = "cluster.clusters"
heatmaps = "heatmaps.heatmaps"
threads = THREADS
batch_size = 8

[[stage]]
id = "intervene"
kind = "intervene"
model = "train.model"
images = "test.errors"
clusters = "cluster.clusters"
pairs = 5
threads = THREADS
batch_size = 8
"#;

/// Stage id → every output file with its digest.
type Digests = BTreeMap<String, Vec<(String, String)>>;

/// Runs the pipeline in its own process (libtorch's thread count is global to a process, and other tests run
/// beside this one); returns every stage's key and output digests.
fn digests(ws: &Ws, threads: usize) -> (BTreeMap<String, String>, Digests) {
    let tiny = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let text = PIPELINE.replace("TINY", &tiny).replace("THREADS", &threads.to_string());
    let m = ws.write("w.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hudd"))
        .args(["--workspace", ws.path().to_str().unwrap(), "run", m.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = ws.store();
    let mut keys = BTreeMap::new();
    let mut files = BTreeMap::new();
    for (stage, record) in store.read_state("settings") {
        let entry = store.entry(&record.key).unwrap();
        let list = entry.outputs.values().flat_map(|o| o.files.iter().map(|f| (f.path.clone(), f.blake3.clone())));
        files.insert(stage.clone(), list.collect());
        keys.insert(stage, record.key);
    }
    (keys, files)
}

#[test]
fn threads_change_no_byte_and_no_key() {
    let (one, two) = (Ws::new(), Ws::new());
    let (keys_a, a) = digests(&one, 1);
    let (keys_b, b) = digests(&two, 2);
    assert_eq!(keys_a, keys_b, "settings are not part of keys");
    for stage in ["test", "heatmaps", "cluster", "activations", "cluster-activations", "select", "intervene"] {
        assert!(!a[stage].is_empty());
        assert_eq!(a[stage], b[stage], "{stage}: outputs differ between 1 and 2 threads");
    }
    // In one workspace, changing only the settings reruns nothing.
    let tiny = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let m = one.write("w.toml", &PIPELINE.replace("TINY", &tiny).replace("THREADS", "2"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hudd"))
        .args(["--workspace", one.path().to_str().unwrap(), "plan", m.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("0 of 9 stages would run"), "{out}");
}

#[test]
fn every_setting_kept_out_of_a_key_is_under_a_test() {
    // Kinds whose settings the pipeline above varies; `expand` and `confirm` are varied with the whole quickstart in
    // tests/it/determinism.rs (1 and 2 threads).
    let quickstart =
        std::fs::read_to_string(format!("{}/workflows/quickstart.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let registry = hudd::stages::registry();
    for name in registry.names() {
        let settings = registry.get(name).unwrap().settings();
        if settings.is_empty() {
            continue;
        }
        let kind = format!("kind = \"{name}\"");
        let here = PIPELINE
            .split("[[stage]]")
            .any(|s| s.contains(&kind) && settings.iter().all(|k| s.contains(&format!("{k} = THREADS"))));
        let whole = ["expand", "confirm"].contains(&name) && quickstart.contains(&kind);
        assert!(here || whole, "`{name}` keeps {settings:?} out of its key, and no test varies them");
    }
}
