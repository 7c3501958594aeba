//! Image ids a CSV table cannot hold unquoted (ImageFolder file names with `,`, `"`, a newline, `é`) survive every
//! stage and table of the method: import, test, heatmaps, cluster, select, label, balance, retrain, compare, report.

use std::collections::BTreeSet;

use hudd::artefact::clusters::Clusters;
use hudd::artefact::evaluation::RccRow;
use hudd::artefact::selection::UnsafeRow;
use hudd::artefact::table;

use crate::support::Ws;

/// Awkward file names, each a valid Linux file name; every image gets one as a prefix.
const NAMES: [&str; 4] = ["img,", "say \"cheese\" ", "two\nlines ", "é"];

fn noise_png(path: &std::path::Path, seed: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let img = image::RgbImage::from_fn(32, 32, |_, _| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v = (x >> 56) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    });
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

const WORKFLOW: &str = r#"
[workflow]
name = "ids"
seed = 5

[[stage]]
id = "data"
kind = "dataset"
format = "folders"
path = "DataSets"
size = 32

[[stage]]
id = "train"
kind = "train"
dataset = "data.dataset"
architecture = "TINY"
epochs = 1
batch_size = 8
validation = 0.0
device = "cpu"

[[stage]]
id = "test"
kind = "test"
model = "train.model"
dataset = "data.dataset"

[[stage]]
id = "heatmaps"
kind = "heatmaps"
model = "train.model"
images = "test.errors"

[[stage]]
id = "cluster"
kind = "cluster"
heatmaps = "heatmaps.heatmaps"
images = "test.errors"
choose_k = "fixed"
k = 2

[[stage]]
id = "select"
kind = "select"
model = "train.model"
dataset = "data.dataset"
clusters = "cluster.clusters"
heatmaps = "heatmaps.heatmaps"
matrix = { strategy = ["hudd", "random"] }
budget = 12

[[stage]]
id = "label"
kind = "label"
matrix = { strategy = ["hudd", "random"] }
selected = "select.selected"

[[stage]]
id = "balance"
kind = "balance"
matrix = { strategy = ["hudd", "random"] }
labelled = "label.labelled"

[[stage]]
id = "retrain"
kind = "retrain"
matrix = { strategy = ["hudd", "random"] }
model = "train.model"
dataset = "data.dataset"
extra = "balance.balanced"
epochs = 1
batch_size = 8
validation = 0.2
device = "cpu"

[[stage]]
id = "retested"
kind = "test"
model = "retrain.model"
dataset = "data.dataset"
matrix = { strategy = ["hudd", "random"], split = ["holdout", "test"] }

[[stage]]
id = "test-holdout"
kind = "test"
model = "train.model"
dataset = "data.dataset"
split = "holdout"

[[stage]]
id = "assign"
kind = "select"
mode = "all"
model = "train.model"
dataset = "test-holdout.errors"
split = "holdout"
clusters = "cluster.clusters"
heatmaps = "heatmaps.heatmaps"

[[stage]]
id = "variance"
kind = "variance"
clusters = "cluster.clusters"
images = "test.errors"

[[stage]]
id = "compare"
kind = "compare"
original = ["test.results", "test-holdout.results"]
reference = ["retested[split=holdout,strategy=hudd].results", "retested[split=test,strategy=hudd].results"]
runs = ["retested[split=holdout,strategy=random].results", "retested[split=test,strategy=random].results"]
clusters = "cluster.clusters"
assigned = "assign.selected"

[[stage]]
id = "report"
kind = "report"
test = "test.summary"
clusters = "cluster.clusters"
variance = "variance.clusters"
compare = "compare.summary"
runs = "compare.runs"
rcc = "compare.rcc"
"#;

#[test]
fn ids_with_commas_quotes_newlines_and_accents_survive_every_stage_and_table() {
    let ws = Ws::new();
    let mut seed = 0;
    for (split, n) in [("TrainingSet", 12), ("TestSet", 10), ("ImprovementSet", 10), ("HoldoutSet", 10)] {
        for class in ["a", "b"] {
            for i in 0..n {
                seed += 1;
                let name = format!("{}{i}.png", NAMES[i % NAMES.len()]);
                noise_png(&ws.path().join("DataSets").join(split).join(class).join(name), seed);
            }
        }
    }
    let tiny = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let (w, report) = ws.run_builtin(&WORKFLOW.replace("TINY", &tiny));
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let store = ws.store();
    let out =
        |stage: &str, output: &str| store.output_path(&report.keys[w.stage_index(stage).unwrap()], output).unwrap();

    // The dataset holds the awkward ids as they are.
    let data = hudd::dataset::Dataset::open(&out("data", "dataset")).unwrap();
    let ids: BTreeSet<String> = data.ids().unwrap().into_iter().collect();
    for name in NAMES {
        assert!(ids.iter().any(|id| id.contains(name)), "no id holds {name:?}: {ids:?}");
    }

    // The clusters are exactly the test stage's failures, ids intact.
    let errors = hudd::dataset::Dataset::open(&out("test", "errors")).unwrap();
    let failing: BTreeSet<String> = errors.ids().unwrap().into_iter().collect();
    assert!(failing.len() >= 3, "too few failures to cluster: {failing:?}");
    let clusters = Clusters::open(&out("cluster", "clusters"));
    let members: BTreeSet<String> = clusters.members().unwrap().into_iter().map(|m| m.image).collect();
    assert_eq!(members, failing);
    assert!(members.iter().any(|id| id.contains(',') || id.contains('"') || id.contains('\n') || id.contains('é')));

    // The unsafe set names improvement images, ids intact.
    for strategy in ["hudd", "random"] {
        let rows: Vec<UnsafeRow> = table::read(&out(&format!("select[strategy={strategy}]"), "unsafe")).unwrap();
        assert!(!rows.is_empty(), "{strategy} selected nothing");
        for r in &rows {
            assert!(r.image.starts_with("ImprovementSet/") && ids.contains(&r.image), "{strategy}: {:?}", r.image);
        }
    }

    // Compare found every cluster member in the test results, and every held-out failure assigned to a
    // cluster in the held-out results: per strategy and split, the clusters' images add up.
    let rcc: Vec<RccRow> = table::read(&out("compare", "rcc")).unwrap();
    let held_out_failing = hudd::dataset::Dataset::open(&out("test-holdout", "errors")).unwrap().ids().unwrap();
    assert!(held_out_failing.iter().all(|id| id.starts_with("HoldoutSet/")), "{held_out_failing:?}");
    for strategy in ["hudd", "random"] {
        for (split, want) in [("test", members.len()), ("holdout", held_out_failing.len())] {
            let images: usize =
                rcc.iter().filter(|r| r.strategy == strategy && r.split == split).map(|r| r.images).sum();
            assert_eq!(images, want, "{strategy} on {split}: {rcc:?}");
        }
        assert!(rcc.iter().all(|r| r.before == 0.0), "the original fails every image of the clusters: {rcc:?}");
    }

    // The report rendered; its evidence names every member of each cluster, the medoid among them, with its comma,
    // quote, newline or accent as it is (the Markdown shows the medoid as the first image of the cluster's sheet).
    let md = std::fs::read_to_string(out("report", "report").join("report.md")).unwrap();
    let rows = clusters.rows().unwrap();
    let table = clusters.members().unwrap();
    let evidence: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out("report", "report").join("evidence.json")).unwrap()).unwrap();
    let shown = evidence["clusters"].as_array().unwrap();
    assert_eq!(shown.len(), rows.len());
    for (row, c) in rows.iter().zip(shown) {
        let listed: BTreeSet<String> = serde_json::from_value(c["members"].clone()).unwrap();
        let want: BTreeSet<String> =
            table.iter().filter(|m| m.cluster == row.cluster).map(|m| m.image.clone()).collect();
        assert_eq!((c["id"].as_u64(), &listed), (Some(row.cluster as u64), &want));
        assert!(listed.contains(&row.medoid) && members.contains(&row.medoid), "{:?} not among {listed:?}", row.medoid);
        assert!(md.contains(&format!("images/rcc-{}-sheet.png", row.cluster)), "no sheet for cluster {}", row.cluster);
    }
    let listed: Vec<String> =
        shown.iter().flat_map(|c| serde_json::from_value::<Vec<String>>(c["members"].clone()).unwrap()).collect();
    for name in NAMES {
        assert!(listed.iter().any(|id| id.contains(name)) == members.iter().any(|id| id.contains(name)), "{name:?}");
    }
}
