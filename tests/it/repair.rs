//! HUDD Steps 4-7: selecting the unsafe set, labelling it, balancing it across clusters, retraining.

use hudd::stages::balance::{Weighting, draw};
use hudd::stages::select::assign;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn assignment_goes_rank_by_rank_within_quotas_and_budget() {
    // Three images closest to cluster 0, which has room for two: the third goes to its second-closest cluster.
    let d = vec![vec![1.0, 5.0], vec![2.0, 6.0], vec![3.0, 4.0], vec![9.0, 0.5]];
    let picks = assign(&d, &[2, 5], usize::MAX, |_, _| true);
    let got: Vec<(usize, usize, usize)> = picks.iter().map(|p| (p.image, p.cluster, p.rank)).collect();
    assert_eq!(got, [(3, 1, 1), (0, 0, 1), (1, 0, 1), (2, 1, 2)]);
    // A budget of two keeps the two closest of the first rank.
    let picks = assign(&d, &[2, 5], 2, |_, _| true);
    assert_eq!(picks.iter().map(|p| p.image).collect::<Vec<_>>(), [3, 0]);
    // A threshold refuses the far ones.
    let picks = assign(&d, &[2, 5], usize::MAX, |_, dist| dist < 2.5);
    assert_eq!(picks.iter().map(|p| p.image).collect::<Vec<_>>(), [3, 0, 1]);
}

fn groups() -> Vec<(usize, Vec<usize>, Vec<f64>)> {
    vec![(1, vec![0, 1, 2, 3, 4, 5], vec![1.0; 6]), (2, vec![6, 7], vec![0.1, 5.0]), (3, vec![8], vec![2.0])]
}

#[test]
fn balancing_gives_every_cluster_the_same_size_and_keeps_every_labelled_image() {
    let drawn = draw(&groups(), 6, Weighting::Uniform, &mut ChaCha8Rng::seed_from_u64(1));
    for c in [1, 2, 3] {
        assert_eq!(drawn.iter().filter(|(x, _)| *x == c).count(), 6, "cluster {c}");
    }
    assert!((0..9).all(|r| drawn.iter().any(|(_, x)| *x == r)), "every image at least once: {drawn:?}");
    // Fewer per cluster than a cluster has: drawn without replacement.
    let small = draw(&groups(), 3, Weighting::Uniform, &mut ChaCha8Rng::seed_from_u64(1));
    let first: Vec<usize> = small.iter().filter(|(c, _)| *c == 1).map(|(_, r)| *r).collect();
    assert_eq!(first.len(), 3);
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
}

#[test]
fn bootstrap_draws_follow_the_seed_and_the_distance_weights() {
    let a = draw(&groups(), 40, Weighting::Uniform, &mut ChaCha8Rng::seed_from_u64(1));
    let b = draw(&groups(), 40, Weighting::Uniform, &mut ChaCha8Rng::seed_from_u64(1));
    let c = draw(&groups(), 40, Weighting::Uniform, &mut ChaCha8Rng::seed_from_u64(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Distance weighting: image 6 (distance 0.1) is drawn far more often than image 7 (distance 5).
    let w = draw(&groups(), 1000, Weighting::Distance, &mut ChaCha8Rng::seed_from_u64(3));
    let (near, far) = (w.iter().filter(|(_, r)| *r == 6).count(), w.iter().filter(|(_, r)| *r == 7).count());
    assert!(near > 20 * far, "{near} against {far}");
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

const LOOP: &str = r#"
[workflow]
name = "repair"
seed = 3

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 32
params = { class = { weights = { stop = 1.0, yield = 1.0, parking = 1.0, no_entry = 1.0 } } }
splits = { train = { count = 60 }, test = { count = 40, params = { yaw = { uniform = [-70.0, 70.0] } } }, improvement = { count = 80, params = { yaw = { uniform = [-70.0, 70.0] } } }, validation = { count = 20, params = { yaw = { uniform = [-70.0, 70.0] } } } }

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
k = 3

[[stage]]
id = "select"
kind = "select"
model = "train.model"
dataset = "data.dataset"
clusters = "cluster.clusters"
heatmaps = "heatmaps.heatmaps"
quota = 1.0
"#;

const TAIL: &str = r#"
[[stage]]
id = "balance"
kind = "balance"
labelled = "label.labelled"

[[stage]]
id = "retrain"
kind = "retrain"
model = "train.model"
dataset = "data.dataset"
extra = "balance.balanced"
epochs = 1
batch_size = 16
validation_split = "validation"
device = "cpu"
"#;

fn manifest(label: &str) -> String {
    LOOP.replace("TINY", &fixture("tiny.toml")) + label + TAIL
}

fn column(text: &str, name: &str) -> Vec<String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    lines.map(|l| l.split(',').nth(at).unwrap().to_string()).collect()
}

#[test]
fn the_loop_selects_improvement_images_within_quotas_and_retrains_from_the_given_weights() {
    let ws = crate::support::Ws::new();
    let (w, report) =
        ws.run_builtin(&manifest("[[stage]]\nid = \"label\"\nkind = \"label\"\nselected = \"select.selected\"\n"));
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let store = ws.store();
    let out =
        |stage: &str, output: &str| store.output_path(&report.keys[w.stage_index(stage).unwrap()], output).unwrap();
    let unsafe_set = std::fs::read_to_string(out("select", "unsafe")).unwrap();
    let images = column(&unsafe_set, "image");
    assert!(!images.is_empty(), "{unsafe_set}");
    assert!(images.iter().all(|i| i.starts_with("improvement-")), "only improvement images: {images:?}");
    // Quotas: at most ⌈1 · |cluster|⌉ per cluster.
    let summary = std::fs::read_to_string(out("cluster", "clusters").join("summary.csv")).unwrap();
    let sizes: Vec<usize> = column(&summary, "size").iter().map(|s| s.parse().unwrap()).collect();
    let chosen = column(&unsafe_set, "cluster");
    for (c, size) in sizes.iter().enumerate() {
        let n = chosen.iter().filter(|x| **x == (c + 1).to_string()).count();
        assert!(n <= *size, "cluster {}: {n} selected for {size} members", c + 1);
    }
    // The selected images as a dataset, with their clusters; the labelled set keeps the dataset's labels.
    let selected = std::fs::read_to_string(out("select", "selected").join("table.csv")).unwrap();
    assert_eq!(column(&selected, "rcc").len(), images.len());
    let labelled = std::fs::read_to_string(out("label", "labelled").join("table.csv")).unwrap();
    assert_eq!(column(&labelled, "label"), column(&selected, "label"));
    // Balanced: every cluster the same size.
    let counts = std::fs::read_to_string(out("balance", "counts")).unwrap();
    let drawn: Vec<String> = column(&counts, "drawn");
    assert!(drawn.windows(2).all(|w| w[0] == w[1]), "{counts}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out("retrain", "summary")).unwrap()).unwrap();
    assert_eq!(summary["validation"], "split `validation`");
    assert_eq!(summary["validation_images"], 20);
    assert_eq!(
        summary["unsafe_images"].as_u64().unwrap() as usize,
        drawn.iter().map(|d| d.parse::<usize>().unwrap()).sum::<usize>()
    );
    // Provenance: the selection was chosen by the test split's failures, and the retrained model records every
    // split it saw and how.
    let meta = |dir: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir).unwrap()).unwrap()
    };
    for (stage, output) in [("select", "selected"), ("label", "labelled"), ("balance", "balanced")] {
        assert_eq!(meta(out(stage, output).join("meta.json"))["chosen_by"], serde_json::json!(["test"]), "{stage}");
    }
    assert_eq!(
        meta(out("train", "model").join("model.json"))["seen"],
        serde_json::json!([{ "split": "train", "how": "trained" }])
    );
    assert_eq!(
        meta(out("retrain", "model").join("model.json"))["seen"],
        serde_json::json!([
            { "split": "train", "how": "trained" },
            { "split": "improvement", "how": "trained" },
            { "split": "test", "how": "chose-data" },
            { "split": "validation", "how": "chose-epoch" },
        ])
    );

    // Choosing the epoch on the split whose failures chose the unsafe set is refused, naming why.
    let (w3, report3) = ws.run_builtin(
        &manifest("[[stage]]\nid = \"label\"\nkind = \"label\"\nselected = \"select.selected\"\n")
            .replace("validation_split = \"validation\"", "validation_split = \"test\""),
    );
    let hudd::engine::Outcome::Failed { error, exit_code } = &report3.outcomes[w3.stage_index("retrain").unwrap()]
    else {
        panic!("{}", crate::support::failures(&report3))
    };
    assert_eq!(*exit_code, 2);
    assert!(
        error.contains("`validation_split = \"test\"`: the images of split `test` chose the `extra` images"),
        "{error}"
    );

    // Mode `all`: every candidate to its closest cluster, without quotas (how held-out failures are assigned).
    let (w4, report4) = ws.run_builtin(&manifest(
        "[[stage]]\nid = \"label\"\nkind = \"label\"\nselected = \"select.selected\"\n\n\
         [[stage]]\nid = \"assign\"\nkind = \"select\"\nmode = \"all\"\nsplit = \"validation\"\nmodel = \"train.model\"\n\
         dataset = \"data.dataset\"\nclusters = \"cluster.clusters\"\nheatmaps = \"heatmaps.heatmaps\"\n\n\
         [[stage]]\nid = \"balance-original\"\nkind = \"balance\"\nlabelled = \"label.labelled\"\n\
         target = \"largest-cluster\"\nclusters = \"cluster.clusters\"\n",
    ));
    assert_eq!(report4.exit_code(), 0, "{}", crate::support::failures(&report4));
    let assigned = std::fs::read_to_string(
        ws.store().output_path(&report4.keys[w4.stage_index("assign").unwrap()], "unsafe").unwrap(),
    )
    .unwrap();
    let assigned_images = column(&assigned, "image");
    assert_eq!(assigned_images.len(), 20, "every validation image once: {assigned}");
    assert!(assigned_images.iter().all(|i| i.starts_with("validation-")), "{assigned}");
    assert!(column(&assigned, "rank").iter().all(|r| r == "1"), "each to its closest cluster: {assigned}");
    // The original's balancing target: every cluster up to the largest root-cause cluster's member count.
    let counts = std::fs::read_to_string(
        ws.store().output_path(&report4.keys[w4.stage_index("balance-original").unwrap()], "counts").unwrap(),
    )
    .unwrap();
    let selected_clusters: Vec<usize> = column(&counts, "cluster").iter().map(|c| c.parse().unwrap()).collect();
    let largest = selected_clusters.iter().map(|c| sizes[c - 1]).max().unwrap();
    assert!(column(&counts, "drawn").iter().all(|d| d.parse::<usize>().unwrap() == largest), "{counts} {sizes:?}");

    // With a learning rate of almost nothing, retraining leaves the given weights as they were.
    let frozen = manifest("[[stage]]\nid = \"label\"\nkind = \"label\"\nselected = \"select.selected\"\n").replace(
        "validation_split = \"validation\"",
        "validation_split = \"validation\"\noptimizer = \"sgd\"\nlr = 1e-12\nmomentum = 0.0\nweight_decay = 0.0",
    );
    let (w2, report2) = ws.run_builtin(&frozen);
    assert_eq!(report2.exit_code(), 0, "{}", crate::support::failures(&report2));
    let weights = |w: &hudd::engine::manifest::Workflow,
                   r: &hudd::engine::RunReport,
                   stage: &str|
     -> Vec<(String, tch::Tensor)> {
        let dir = ws.store().output_path(&r.keys[w.stage_index(stage).unwrap()], "model").unwrap();
        let mut v = tch::Tensor::read_safetensors(dir.join("weights.safetensors")).unwrap();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    for ((name, a), (_, b)) in weights(&w2, &report2, "train").iter().zip(weights(&w2, &report2, "retrain")) {
        let diff = f64::try_from((a - &b).abs().max()).unwrap();
        assert!(diff < 1e-6, "{name} moved by {diff}");
    }
}

#[test]
fn manual_labelling_waits_for_the_sheet_then_resumes_and_reruns_only_what_depends_on_it() {
    let ws = crate::support::Ws::new();
    let text = manifest(
        "[[stage]]\nid = \"label\"\nkind = \"label\"\nselected = \"select.selected\"\nmode = \"manual\"\nlabels = \"labels/unsafe.csv\"\n",
    );
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 3, "blocked: {:?}", report.outcomes);
    let hudd::engine::Outcome::Failed { error, .. } = &report.outcomes[w.stage_index("label").unwrap()] else {
        panic!("{}", crate::support::failures(&report))
    };
    assert!(
        error.contains("wait for labels: fill in the `label` column of") && error.contains("labels/unsafe.csv"),
        "{error}"
    );
    let sheet_path = ws.path().join("labels/unsafe.csv");
    let sheet = std::fs::read_to_string(&sheet_path).unwrap();
    assert!(ws.path().join("labels/unsafe.html").exists() && ws.path().join("labels/unsafe-images").is_dir());
    // The true labels, from the selected images' table.
    let selected = std::fs::read_to_string(
        ws.store().output_path(&report.keys[w.stage_index("select").unwrap()], "selected").unwrap().join("table.csv"),
    )
    .unwrap();
    let (ids, labels) = (column(&selected, "image"), column(&selected, "label"));
    assert_eq!(column(&sheet, "image"), ids);

    // Half filled in: still waiting, naming how many are missing.
    let half: String = ids
        .iter()
        .zip(&labels)
        .enumerate()
        .map(|(i, (id, l))| format!("{id},{}\n", if i % 2 == 0 { l.as_str() } else { "" }))
        .collect();
    std::fs::write(&sheet_path, format!("image,label\n{half}")).unwrap();
    let (_, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 3);
    // A label outside the classes: an error naming it and the line.
    std::fs::write(&sheet_path, format!("image,label\n{},<script>\n", ids[0])).unwrap();
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 2);
    let hudd::engine::Outcome::Failed { error, .. } = &report.outcomes[w.stage_index("label").unwrap()] else {
        panic!()
    };
    assert!(error.contains("unsafe.csv:2: `<script>` is not a class"), "{error}");

    // Complete: the run goes through.
    let full: String = ids.iter().zip(&labels).map(|(id, l)| format!("{id},{l}\n")).collect();
    std::fs::write(&sheet_path, format!("image,label\n{full}")).unwrap();
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    assert_eq!(crate::support::Ws::ran(&w, &report), ["label", "balance", "retrain"]);
    // Editing one label reruns the label stage and what depends on it, nothing upstream.
    let other = if labels[0] == "stop" { "yield" } else { "stop" };
    std::fs::write(&sheet_path, format!("image,label\n{},{other}\n{}", ids[0], full.split_once('\n').unwrap().1))
        .unwrap();
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(crate::support::Ws::ran(&w, &report), ["label", "balance", "retrain"]);
}

#[test]
fn an_empty_clustering_flows_through_selection_labelling_balancing_and_retraining() {
    let ws = crate::support::Ws::new();
    let text = manifest("[[stage]]\nid = \"label\"\nkind = \"label\"\nselected = \"select.selected\"\n")
        .replace("choose_k = \"fixed\"\nk = 3", "min_images = 1000");
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let out = |stage: &str, output: &str| {
        ws.store().output_path(&report.keys[w.stage_index(stage).unwrap()], output).unwrap()
    };
    assert_eq!(std::fs::read_to_string(out("select", "unsafe")).unwrap(), "image,cluster,distance,rank\n");
    let select: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hudd::artefact::selection::record_path(&out("select", "pictures"))).unwrap(),
    )
    .unwrap();
    assert!(select["empty"].as_str().unwrap().starts_with("no root-cause clusters: only"), "{select}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out("retrain", "summary")).unwrap()).unwrap();
    assert_eq!(summary["unsafe_images"], 0);
}

#[test]
fn the_failing_baseline_judges_a_keypoint_model_by_the_given_threshold() {
    let ws = crate::support::Ws::new();
    let baseline = |id: &str, threshold: f64| {
        format!(
            "[[stage]]\nid = \"{id}\"\nkind = \"select\"\nstrategy = \"failing\"\nmodel = \"train.model\"\ndataset = \"data.dataset\"\n\
             budget = 30\nthreshold = {threshold}\ndevice = \"cpu\"\n"
        )
    };
    let text = format!(
        "[workflow]\nname = \"kp-baseline\"\nseed = 2\n\
         [[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"faces\"\ntask = \"landmarks\"\nsize = 32\nchannels = 1\n\
         splits = {{ train = {{ count = 16 }}, improvement = {{ count = 40 }} }}\n\
         [[stage]]\nid = \"train\"\nkind = \"train\"\ndataset = \"data.dataset\"\narchitecture = \"{}\"\nepochs = 1\nbatch_size = 8\n\
         validation = 0.0\ndevice = \"cpu\"\n{}{}",
        fixture("tiny-kp.toml"),
        baseline("strict", 1e-3),
        baseline("lenient", 1e6)
    );
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let selected = |stage: &str| {
        let path = ws.store().output_path(&report.keys[w.stage_index(stage).unwrap()], "unsafe").unwrap();
        column(&std::fs::read_to_string(path).unwrap(), "image").len()
    };
    // Every one of the 30 labelled images is off by more than a thousandth of a pixel; none by a million pixels.
    assert_eq!((selected("strict"), selected("lenient")), (30, 0));

    let bad = text.replace("threshold = 0.001", "threshold = 0.0");
    let err = hudd::engine::manifest::parse(std::path::Path::new("kp.toml"), &bad, &[], &hudd::stages::registry())
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid `threshold`: must be above 0 pixels, got 0"), "{err}");
}

#[test]
fn singleton_clusters_select_nothing_and_a_k_beyond_the_images_is_refused() {
    let ws = crate::support::Ws::new();
    let label = "[[stage]]\nid = \"label\"\nkind = \"label\"\nselected = \"select.selected\"\n";
    let (w, report) = ws.run_builtin(&manifest(label).replace("k = 3", "k = 100000"));
    match &report.outcomes[w.stage_index("cluster").unwrap()] {
        hudd::engine::Outcome::Failed { error, exit_code } => {
            assert!(error.contains("`k = 100000` asks for more clusters than the"), "{error}");
            assert_eq!(*exit_code, 2);
        }
        other => panic!("cluster accepted k = 100000: {other:?}"),
    }
    let errors = ws.store().output_path(&report.keys[w.stage_index("test").unwrap()], "errors").unwrap();
    let n = hudd::dataset::Dataset::open(&errors).unwrap().meta.count;
    let (w, report) = ws.run_builtin(&manifest(label).replace("k = 3", &format!("k = {n}")));
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let out = |stage: &str, output: &str| {
        ws.store().output_path(&report.keys[w.stage_index(stage).unwrap()], output).unwrap()
    };
    assert_eq!(std::fs::read_to_string(out("select", "unsafe")).unwrap(), "image,cluster,distance,rank\n");
    let select: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hudd::artefact::selection::record_path(&out("select", "pictures"))).unwrap(),
    )
    .unwrap();
    assert!(select["empty"].as_str().unwrap().contains("holds a single image"), "{select}");
}

#[test]
fn selection_seeds_candidates_as_the_heatmaps_were_and_refuses_a_seed_that_reads_labels() {
    let label = "[[stage]]\nid = \"label\"\nkind = \"label\"\nselected = \"select.selected\"\n";
    let with_seed = |seed: &str| {
        manifest(label).replace(
            "images = \"test.errors\"\n\n[[stage]]\nid = \"cluster\"",
            &format!("images = \"test.errors\"\nseed_with = \"{seed}\"\n\n[[stage]]\nid = \"cluster\""),
        )
    };
    let text = with_seed("true");
    assert!(text.contains("seed_with = \"true\""), "the manifest did not take the seed");
    let ws = crate::support::Ws::new();
    let (w, report) = ws.run_builtin(&text);
    match &report.outcomes[w.stage_index("select").unwrap()] {
        hudd::engine::Outcome::Failed { error, exit_code } => {
            assert_eq!(*exit_code, 2);
            assert!(error.contains("seeded with the true class (`seed_with = \"true\"`)"), "{error}");
        }
        other => panic!("select read the labels of its candidates: {other:?}"),
    }
    let (_, report) = ws.run_builtin(&with_seed("predicted-one-hot"));
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
}

#[test]
fn without_a_validation_split_retraining_holds_validation_out_of_the_training_split_before_adding_the_unsafe_set() {
    let label = "[[stage]]\nid = \"label\"\nkind = \"label\"\nselected = \"select.selected\"\n";
    let text = manifest(label).replace("validation_split = \"validation\"", "validation = 0.2");
    let ws = crate::support::Ws::new();
    let (w, report) = ws.run_builtin(&text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let out = |stage: &str, output: &str| {
        ws.store().output_path(&report.keys[w.stage_index(stage).unwrap()], output).unwrap()
    };
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out("retrain", "summary")).unwrap()).unwrap();
    // 60 training images: 12 held out, 48 trained on together with every balanced image, none of which judges.
    assert_eq!(summary["validation_images"], 12, "{summary}");
    let unsafe_images = summary["unsafe_images"].as_u64().unwrap();
    assert_eq!(summary["training_images"].as_u64().unwrap(), 48 + unsafe_images, "{summary}");
    assert!(summary["validation"].as_str().unwrap().contains("held out before the unsafe set joined it"));
}

/// A keypoint workflow on dots: train, test (a failure is 1.5 px off), heatmaps seeded with `seed_with`, clusters,
/// and HUDD's selection of 10 images from an improvement split whose targets are `(x, y)` as drawn, or all `(1, 1)`
/// when `scrambled`.
fn dots(
    ws: &crate::support::Ws,
    scrambled: bool,
    seed_with: &str,
) -> (hudd::engine::manifest::Workflow, hudd::engine::RunReport) {
    ws.run_builtin(&dots_manifest(ws, scrambled, seed_with))
}

/// The manifest [`dots`] runs, its images written into `ws`.
fn dots_manifest(ws: &crate::support::Ws, scrambled: bool, seed_with: &str) -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let mut listing = String::from("path,split,target_x0,target_y0\n");
    std::fs::create_dir_all(ws.path().join("dots")).unwrap();
    for i in 0..150 {
        let (x, y) = (rng.random_range(4..28u32), rng.random_range(4..28u32));
        let mut img = image::GrayImage::from_pixel(32, 32, image::Luma([30]));
        for dy in 0..3 {
            for dx in 0..3 {
                img.put_pixel(x - 1 + dx, y - 1 + dy, image::Luma([250]));
            }
        }
        let path = format!("dots/{i}.png");
        img.save(ws.path().join(&path)).unwrap();
        let split = match i {
            0..70 => "train",
            70..110 => "test",
            _ => "improvement",
        };
        let (tx, ty) = if scrambled && split == "improvement" { (1, 1) } else { (x, y) };
        listing.push_str(&format!("{path},{split},{tx},{ty}\n"));
    }
    ws.write("dots.csv", &listing);
    format!(
        "[workflow]\nname = \"kp-select\"\nseed = 3\n\
         [[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"csv\"\npath = \"dots.csv\"\nsize = 32\nchannels = 1\n\
         [[stage]]\nid = \"train\"\nkind = \"train\"\ndataset = \"data.dataset\"\narchitecture = \"{}\"\nepochs = 3\nbatch_size = 16\n\
         optimizer = \"adam\"\nlr = 0.002\nweight_decay = 0.0\nvalidation = 0.0\ndevice = \"cpu\"\n\
         [[stage]]\nid = \"test\"\nkind = \"test\"\nmodel = \"train.model\"\ndataset = \"data.dataset\"\nthreshold = 1.5\n\
         [[stage]]\nid = \"heatmaps\"\nkind = \"heatmaps\"\nmodel = \"train.model\"\nimages = \"test.errors\"\nseed_with = \"{seed_with}\"\n\
         [[stage]]\nid = \"cluster\"\nkind = \"cluster\"\nheatmaps = \"heatmaps.heatmaps\"\nimages = \"test.errors\"\nchoose_k = \"fixed\"\nk = 3\nstability_draws = 0\n\
         [[stage]]\nid = \"select\"\nkind = \"select\"\nmodel = \"train.model\"\ndataset = \"data.dataset\"\nclusters = \"cluster.clusters\"\nheatmaps = \"heatmaps.heatmaps\"\nbudget = 10\n",
        fixture("tiny-kp.toml")
    )
}

#[test]
fn keypoint_selection_reads_no_candidate_targets_and_a_seed_that_would_is_refused() {
    // The same model and clusters select the same images whatever the candidates' targets say.
    let unsafe_set = |scrambled: bool| {
        let ws = crate::support::Ws::new();
        let (w, report) = dots(&ws, scrambled, "least-confident");
        assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
        let path = ws.store().output_path(&report.keys[w.stage_index("select").unwrap()], "unsafe").unwrap();
        std::fs::read_to_string(path).unwrap()
    };
    let drawn = unsafe_set(false);
    assert_eq!(drawn.lines().count(), 11, "the 10 closest of 40 candidates: {drawn}");
    assert_eq!(unsafe_set(true), drawn);
    // HUDD's keypoint seed finds the worst keypoint with the targets: selecting with it is refused.
    let ws = crate::support::Ws::new();
    let (w, report) = dots(&ws, false, "predicted");
    let hudd::engine::Outcome::Failed { error, exit_code } = &report.outcomes[w.stage_index("select").unwrap()] else {
        panic!("{}", crate::support::failures(&report))
    };
    assert_eq!(*exit_code, 2);
    assert!(
        error.contains("would read the targets of every candidate") && error.contains("least-confident"),
        "{error}"
    );
}

#[test]
fn clusters_of_activations_select_by_the_candidates_activations_without_reading_their_targets() {
    // The heatmaps stage swapped for the model's activations: cluster and select read them alike.
    let unsafe_set = |scrambled: bool| {
        let ws = crate::support::Ws::new();
        let text = dots_manifest(&ws, scrambled, "least-confident")
            .replace("kind = \"heatmaps\"", "kind = \"activations\"")
            .replace("seed_with = \"least-confident\"\n", "")
            .replace("heatmaps.heatmaps", "heatmaps.activations");
        let (w, report) = ws.run_builtin(&text);
        assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
        let select = &report.keys[w.stage_index("select").unwrap()];
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(hudd::artefact::selection::record_path(
                &ws.store().output_path(select, "pictures").unwrap(),
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(report["selected"], 10, "{report}");
        std::fs::read_to_string(ws.store().output_path(select, "unsafe").unwrap()).unwrap()
    };
    let drawn = unsafe_set(false);
    assert_eq!(drawn.lines().count(), 11, "the 10 closest of 40 candidates: {drawn}");
    assert_eq!(unsafe_set(true), drawn);
}

#[test]
fn clusters_of_a_backbones_features_select_candidates_by_the_same_backbone() {
    // Generic features: a pretrained network (here tiny-resnet with fresh weights) describes the failing images, each
    // channel's mean at two layers; `select` describes the candidates with the same backbone and pooling, read from
    // the activations stage's parameters, and still reads no candidate's targets.
    let unsafe_set = |scrambled: bool| {
        let ws = crate::support::Ws::new();
        crate::support::fresh_backbone(&ws, 7);
        let text = dots_manifest(&ws, scrambled, "least-confident")
            .replace("kind = \"heatmaps\"\nmodel = \"train.model\"", "kind = \"activations\"")
            .replace(
                "seed_with = \"least-confident\"\n",
                &format!(
                    "backbone = {{ architecture = \"{}\", weights = \"backbone.safetensors\", mean = [0.5, 0.5, 0.5], \
                     std = [0.25, 0.25, 0.25] }}\nlayers = [\"maxpool\", \"block.relu2\"]\npool = \"channels\"\n",
                    fixture("tiny-resnet.toml")
                ),
            )
            .replace("heatmaps.heatmaps", "heatmaps.activations");
        let (w, report) = ws.run_builtin(&text);
        assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
        let select = &report.keys[w.stage_index("select").unwrap()];
        std::fs::read_to_string(ws.store().output_path(select, "unsafe").unwrap()).unwrap()
    };
    let drawn = unsafe_set(false);
    assert_eq!(drawn.lines().count(), 11, "the 10 closest of 40 candidates: {drawn}");
    assert_eq!(unsafe_set(true), drawn);
}
