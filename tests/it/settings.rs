//! Execution settings stay out of keys (`Stage::SETTINGS`): for every kind that declares one, two values give the
//! same bytes, so leaving them out of the key can never hide a real change. Measured here and so left in keys: the
//! inference batch size (test, heatmaps, select: scores and relevance move in their last bits) and the cluster
//! stage's threads (its distances are sums in libtorch's matrix products).

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
threads = 1

[[stage]]
id = "select"
kind = "select"
model = "train.model"
dataset = "data.dataset"
clusters = "cluster.clusters"
heatmaps = "heatmaps.heatmaps"
threads = THREADS
batch_size = 8
"#;

/// Stage id → every output file with its digest.
type Digests = BTreeMap<String, Vec<(String, String)>>;

/// Runs the pipeline; returns its keys and every stage's output digests.
fn digests(ws: &Ws, threads: usize) -> (Vec<String>, Digests) {
    let tiny = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let text = PIPELINE.replace("TINY", &tiny).replace("THREADS", &threads.to_string());
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{:?}", report.outcomes);
    let store = ws.store();
    let mut out = BTreeMap::new();
    for (stage, key) in w.stages.iter().zip(&report.keys) {
        let entry = store.entry(key).unwrap();
        let files = entry.outputs.values().flat_map(|o| o.files.iter().map(|f| (f.path.clone(), f.blake3.clone())));
        out.insert(stage.id.clone(), files.collect());
    }
    (report.keys, out)
}

#[test]
fn threads_change_no_byte_and_no_key() {
    let (one, two) = (Ws::new(), Ws::new());
    let (keys_a, a) = digests(&one, 1);
    let (keys_b, b) = digests(&two, 2);
    assert_eq!(keys_a, keys_b, "settings are not part of keys");
    for stage in ["test", "heatmaps", "select"] {
        assert!(!a[stage].is_empty());
        assert_eq!(a[stage], b[stage], "{stage}: outputs differ between 1 and 2 threads");
    }
    // In one workspace, changing only the settings reruns nothing, and `plan` calls every stage fresh.
    let tiny = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let text = PIPELINE.replace("TINY", &tiny).replace("THREADS", "2");
    let (_, report) = one.run_builtin(&text);
    assert_eq!(report.ran(), 0, "{:?}", report.outcomes);
}
