//! Triggering conditions on a planted failure: a model trained only on bright signs fails on dark ones; `rules`
//! must find the darkness, `confirm` must confirm it on new images and reject a rule over an unrelated parameter,
//! and `generate` must render labelled images inside the confirmed region.

use hudd::artefact::rules::{Confirmations, Rules};
use hudd::engine::manifest::Workflow;
use hudd::engine::progress::Reporter;
use hudd::engine::{RunOptions, RunReport};
use hudd::trigger::Condition;

fn run(ws: &crate::support::Ws, text: &str) -> (Workflow, RunReport) {
    let path = ws.write("w.toml", text);
    let registry = crate::support::registry_with_crafted();
    let w = hudd::engine::manifest::load(&path, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
    let report = hudd::engine::run(&ws.store(), &w, &registry, &RunOptions::default(), &Reporter::hidden()).unwrap();
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    (w, report)
}

/// Trained on signs with `night` in [0, 0.15], tested on [0, 1]; everything else at the simulator's defaults.
fn planted() -> String {
    format!(
        r#"
[workflow]
name = "planted"
seed = 4

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 32
params = {{ class = {{ weights = {{ stop = 1.0, yield = 1.0, parking = 1.0, no_entry = 1.0 }} }} }}
splits = {{ train = {{ count = 400, params = {{ night = {{ uniform = [0.0, 0.15] }} }} }}, test = {{ count = 600, params = {{ night = {{ uniform = [0.0, 1.0] }} }} }}, improvement = {{ count = 100, params = {{ night = {{ uniform = [0.0, 1.0] }} }} }} }}

[[stage]]
id = "train"
kind = "train"
dataset = "data.dataset"
architecture = "{}/tests/fixtures/tiny.toml"
epochs = 6
batch_size = 16
optimizer = "adam"
lr = 0.003
validation = 0.0
device = "cpu"

[[stage]]
id = "test"
kind = "test"
model = "train.model"
dataset = "data.dataset"
"#,
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn rules_recover_a_planted_condition_confirm_it_and_reject_an_unrelated_one() {
    let ws = crate::support::Ws::new();
    let (w, r) = run(&ws, &planted());
    let out = |w: &Workflow, r: &RunReport, stage: &str, output: &str| {
        ws.store().output_path(&r.keys[w.stage_index(stage).unwrap()], output).unwrap()
    };
    // Every failure is one cluster: the rule is about the failures, not about how they were clustered.
    let errors = hudd::dataset::Dataset::open(&out(&w, &r, "test", "errors")).unwrap().ids().unwrap();
    assert!(errors.len() >= 20, "the planted darkness makes the model fail: {} failures", errors.len());
    let members: String = errors.iter().map(|id| format!("{id},1,0\n")).collect();
    ws.write("clusters/clusters.csv", &format!("image,cluster,distance_to_medoid\n{members}"));
    // An unrelated rule for the same cluster: signs turned less than 8° (yaw is drawn around 0° everywhere).
    let unrelated = serde_json::json!({
        "source": "simulate:signs", "task": "classification", "split": "test", "correct": 0,
        "rules": [{ "cluster": 1, "size": errors.len(), "text": "scale", "covered": 0, "support": 0.0,
                    "correct_covered": 0, "precision": 0.0,
                    "conditions": [{ "condition": { "type": "arc", "parameter": "yaw", "from": 352.0, "to": 8.0, "period": 360.0 },
                                     "text": "yaw", "kept": 1.0 }] }]
    });
    let text = planted()
        + r#"
[[stage]]
id = "clusters"
kind = "files"
path = "clusters"

[[stage]]
id = "rules"
kind = "rules"
clusters = "clusters.clusters"
results = "test.results"
dataset = "data.dataset"

[[stage]]
id = "confirm"
kind = "confirm"
rules = "rules.rules"
model = "train.model"
dataset = "data.dataset"
images = 200

[[stage]]
id = "unrelated"
kind = "crafted-rules"
text = UNRELATED

[[stage]]
id = "confirm-unrelated"
kind = "confirm"
rules = "unrelated.rules"
model = "train.model"
dataset = "data.dataset"
images = 200

[[stage]]
id = "generate"
kind = "generate"
confirmations = "confirm.confirmations"
dataset = "data.dataset"
budget = 30
seed = 7

# As the manifests' `confirm-after` does: the same seed as `generate`, the improvement split's domain.
[[stage]]
id = "confirm-again"
kind = "confirm"
rules = "rules.rules"
model = "train.model"
dataset = "data.dataset"
split = "improvement"
images = 20
seed = 7

"#
        .replace("UNRELATED", &format!("{:?}", unrelated.to_string()))
        .as_str();
    let (w, r) = run(&ws, &text);

    let rules: Rules = hudd::artefact::table::read_json(&out(&w, &r, "rules", "rules")).unwrap();
    let rule = &rules.rules[0];
    let night = rule.conditions.iter().find(|c| c.condition.parameter() == "night");
    let Some(Condition::Interval { lo, hi, .. }) = night.map(|c| &c.condition) else {
        panic!("no condition on night: {rule:?}")
    };
    assert!((0.15..=0.75).contains(lo) && *hi > 0.9, "night {lo}–{hi}: {rule:?}");
    // A rule's precision is bounded by how often the model fails inside the region: this model fails on about
    // half the images that dark, so a third of the covered images failing is the learner doing its part.
    assert!(rule.support >= 0.6 && rule.precision > 0.3, "{rule:?}");

    let confirmed: Confirmations = hudd::artefact::table::read_json(&out(&w, &r, "confirm", "confirmations")).unwrap();
    let c = &confirmed.rules[0];
    assert!(c.confirmed, "{c:?}");
    assert!(c.inside.rate > 2.0 * c.outside.rate && c.inside.images == 200 && c.outside.images == 200, "{c:?}");
    // Rates in the operational domain: the region's share of it, and the share of its failures inside.
    assert!(c.coverage.share > 0.05 && c.coverage.share < 0.5 && c.recall > c.coverage.share, "{c:?}");
    assert_eq!(confirmed.domain, "test");

    let rejected: Confirmations =
        hudd::artefact::table::read_json(&out(&w, &r, "confirm-unrelated", "confirmations")).unwrap();
    let r0 = &rejected.rules[0];
    assert!(!r0.confirmed && r0.inside.images == 200 && r0.outside.images == 200, "{r0:?}");

    // The rendered images are kept as evidence, inside the region on one side and outside on the other, every one
    // a draw the test split's declared distribution could give: brightness, whose simulator range is 0.2–1.4, stays
    // in the split's 0.75–1.2, in the stated rule as in the images.
    let data = hudd::dataset::Dataset::open(&out(&w, &r, "data", "dataset")).unwrap();
    let domain = data.domain("test").unwrap();
    let sim = hudd::trigger::simulator_of(&data).unwrap();
    let brightness = sim.params().iter().position(|p| p.name == "brightness").unwrap();
    assert_eq!(domain.support(brightness), hudd::sim::Support::Numbers { min: 0.75, max: 1.2 });
    for condition in &c.conditions {
        if let Condition::Interval { parameter, lo, hi } = condition {
            let k = sim.params().iter().position(|p| p.name == parameter).unwrap();
            let support = domain.support(k);
            assert!(support.contains(*lo) && support.contains(*hi), "{condition:?} leaves {support:?}");
        }
    }
    let images = hudd::dataset::Dataset::open(&out(&w, &r, "confirm", "images")).unwrap();
    let rows: Vec<usize> = (0..images.meta.count).collect();
    let vectors = hudd::trigger::vectors(&images, sim, &rows).unwrap();
    let splits = images.strings("split").unwrap();
    for (v, s) in vectors.iter().zip(&splits) {
        assert!(domain.contains(v), "{v:?} is not a draw of the test split");
        assert_eq!(hudd::trigger::inside(&c.conditions, sim, v), s == "inside-1", "{v:?} in {s}");
    }
    // Fresh: no confirmation image has the parameters of a test image the rule was learned on, nor of an image
    // `generate` drew with the same seed.
    let learned: std::collections::BTreeSet<String> =
        hudd::trigger::vectors(&data, sim, &data.split_rows("test").unwrap())
            .unwrap()
            .iter()
            .map(|v| format!("{v:?}"))
            .collect();
    assert!(vectors.iter().all(|v| !learned.contains(&format!("{v:?}"))));
    let again = hudd::dataset::Dataset::open(&out(&w, &r, "confirm-again", "images")).unwrap();
    let generated = hudd::dataset::Dataset::open(&out(&w, &r, "generate", "selected")).unwrap();
    let all = |d: &hudd::dataset::Dataset| {
        let rows: Vec<usize> = (0..d.meta.count).collect();
        hudd::trigger::vectors(d, sim, &rows).unwrap().iter().map(|v| format!("{v:?}")).collect::<Vec<_>>()
    };
    let drawn: std::collections::BTreeSet<String> = all(&again).into_iter().collect();
    assert!(
        !drawn.is_empty() && all(&generated).iter().all(|v| !drawn.contains(v)),
        "confirm-after repeats generate's draws"
    );

    // Generated: 30 labelled images inside the confirmed region, chosen by the test split's failures.
    let generated = hudd::dataset::Dataset::open(&out(&w, &r, "generate", "selected")).unwrap();
    assert_eq!(generated.meta.count, 30);
    assert_eq!(generated.meta.chosen_by, ["test"]);
    assert!(generated.numbers("rcc").unwrap().iter().all(|c| *c == 1.0));
    // Every image inside the region: each of the rule's conditions holds for its parameters, whichever they name.
    let generated_vectors =
        hudd::trigger::vectors(&generated, sim, &(0..generated.meta.count).collect::<Vec<_>>()).unwrap();
    assert_eq!(generated_vectors.len(), 30);
    for v in &generated_vectors {
        assert!(hudd::trigger::inside(&c.conditions, sim, v), "{v:?} lies outside {:?}", c.conditions);
    }
    assert_eq!(generated.class_labels().unwrap().len(), 30);
}

#[test]
fn expand_adds_only_images_the_model_fails_on_that_join_their_cluster_and_is_deterministic() {
    let text = planted()
        + r#"
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
mode = "direct"
choose_k = "fixed"
k = 3
stability_draws = 0

[[stage]]
id = "expand"
kind = "expand"
clusters = "cluster.clusters"
heatmaps = "heatmaps.heatmaps"
model = "train.model"
dataset = "data.dataset"
population = 24
generations = 3

[[stage]]
id = "retest"
kind = "test"
model = "train.model"
dataset = "expand.expanded"
split = "expanded"

[[stage]]
id = "rules"
kind = "rules"
clusters = "cluster.clusters"
results = "test.results"
dataset = "data.dataset"
expanded = "expand.expanded"

# Searching each parameter's whole range: what it finds outside the test split's domain is counted, not learned from.
[[stage]]
id = "expand-range"
kind = "expand"
clusters = "cluster.clusters"
heatmaps = "heatmaps.heatmaps"
model = "train.model"
dataset = "data.dataset"
population = 24
generations = 3
search = "range"

[[stage]]
id = "rules-range"
kind = "rules"
clusters = "cluster.clusters"
results = "test.results"
dataset = "data.dataset"
expanded = "expand-range.expanded"
"#;
    let expanded = |ws: &crate::support::Ws| {
        let (w, r) = run(ws, &text);
        let out =
            |stage: &str, output: &str| ws.store().output_path(&r.keys[w.stage_index(stage).unwrap()], output).unwrap();
        let table = std::fs::read_to_string(out("expand", "expanded").join("table.csv")).unwrap();
        let summary = std::fs::read_to_string(out("expand", "summary")).unwrap();
        let retest = std::fs::read_to_string(out("retest", "summary")).unwrap();
        let rules: Rules = hudd::artefact::table::read_json(&out("rules", "rules")).unwrap();
        let wide = std::fs::read_to_string(out("expand-range", "summary")).unwrap();
        let wide_rules: Rules = hudd::artefact::table::read_json(&out("rules-range", "rules")).unwrap();
        let rows: Vec<Vec<usize>> =
            wide.lines().skip(1).map(|l| l.split(',').skip(4).map(|x| x.parse().unwrap()).collect()).collect();
        let (joined, outside) = rows.iter().fold((0, 0), |(j, o), r| (j + r[1], o + r[2]));
        assert!(outside > 0, "a search over the whole range leaves the domain: {wide}");
        assert_eq!(wide_rules.rules.iter().map(|r| r.expanded_outside).sum::<usize>(), outside);
        assert_eq!(wide_rules.rules.iter().map(|r| r.expanded + r.expanded_outside).sum::<usize>(), joined);
        (table, summary, retest, rules)
    };
    let (table, summary, retest, rules) = expanded(&crate::support::Ws::new());
    let rows: Vec<Vec<String>> = summary.lines().skip(1).map(|l| l.split(',').map(String::from).collect()).collect();
    let joined: usize = rows.iter().map(|r| r[5].parse::<usize>().unwrap()).sum();
    assert!(joined > 0, "the search finds images: {summary}");
    assert!(rows.iter().all(|r| r[4].parse::<usize>().unwrap() >= r[5].parse::<usize>().unwrap()), "{summary}");
    assert!(rows.iter().all(|r| r[3] == "72"), "3 generations of 24 per cluster: {summary}");
    // By default the search stays in the clustered split's operational domain.
    assert!(rows.iter().all(|r| r[6] == "0"), "{summary}");
    // The model fails on every image found.
    let retest: serde_json::Value = serde_json::from_str(&retest).unwrap();
    assert_eq!((retest["images"].as_u64(), retest["errors"].as_u64()), (Some(joined as u64), Some(joined as u64)));
    // Each joins its cluster within the cluster's spread.
    let spread: std::collections::BTreeMap<String, f64> =
        rows.iter().map(|r| (r[0].clone(), r[2].parse().unwrap())).collect();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (rcc, distance) =
        (header.iter().position(|h| *h == "rcc").unwrap(), header.iter().position(|h| *h == "rcc_distance").unwrap());
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert!(f[distance].parse::<f64>().unwrap() <= spread[f[rcc]], "{line}");
    }
    // Rules count the images a cluster gained.
    assert_eq!(rules.rules.iter().map(|r| r.expanded).sum::<usize>(), joined);
    assert!(rules.rules.iter().all(|r| r.expanded_outside == 0));
    // The same seed gives the same images.
    let (again, ..) = expanded(&crate::support::Ws::new());
    assert_eq!(again, table);
}

#[test]
fn restoring_the_planted_darkness_fixes_the_failures_and_the_sham_does_not() {
    let ws = crate::support::Ws::new();
    let (w, r) = run(&ws, &planted());
    let errors = ws.store().output_path(&r.keys[w.stage_index("test").unwrap()], "errors").unwrap();
    let ids = hudd::dataset::Dataset::open(&errors).unwrap().ids().unwrap();
    assert!(ids.len() >= 20, "the planted darkness makes the model fail: {} failures", ids.len());
    // Two clusters: the darker half of the failures and the rest (`night` in the test split is uniform on [0, 1]).
    let nights = hudd::dataset::Dataset::open(&errors).unwrap().numbers("night").unwrap();
    let members: String =
        ids.iter().zip(&nights).map(|(id, n)| format!("{id},{},0\n", if *n > 0.5 { 1 } else { 2 })).collect();
    ws.write("clusters/clusters.csv", &format!("image,cluster,distance_to_medoid\n{members}"));
    // What a report reads beside the members: the clustering's summary and each cluster's row.
    let dark: Vec<&String> = ids.iter().zip(&nights).filter(|(_, n)| **n > 0.5).map(|(id, _)| id).collect();
    let light: Vec<&String> = ids.iter().zip(&nights).filter(|(_, n)| **n <= 0.5).map(|(id, _)| id).collect();
    ws.write(
        "clusters/cluster.json",
        &format!(r#"{{"images": {}, "clusters": 2, "mode": "direct", "linkage": "ward", "layers": []}}"#, ids.len()),
    );
    let share = |n: usize| n as f64 / ids.len() as f64;
    ws.write(
        "clusters/summary.csv",
        &format!(
            "cluster,size,share,mean_intra_distance,medoid,stability,stable\n1,{},{},0,{},,\n2,{},{},0,{},,\n",
            dark.len(),
            share(dark.len()),
            dark[0],
            light.len(),
            share(light.len()),
            light[0]
        ),
    );
    let text = planted()
        + r#"
[[stage]]
id = "clusters"
kind = "files"
path = "clusters"

[[stage]]
id = "intervene"
kind = "intervene"
model = "train.model"
images = "test.errors"
clusters = "clusters.clusters"
pairs = 10

[[stage]]
id = "signature"
kind = "signature"
interventions = "intervene.interventions"
summary = "intervene.summary"
images = "test.errors"

[[stage]]
id = "cluster-signature"
kind = "cluster"
heatmaps = "signature.features"
images = "test.errors"
mode = "direct"
stability_draws = 0

[[stage]]
id = "report"
kind = "report"
test = "test.summary"
clusters = "clusters.clusters"
interventions = "intervene.summary"
"#;
    let (w, r) = run(&ws, &text);
    let out = |output: &str| ws.store().output_path(&r.keys[w.stage_index("intervene").unwrap()], output).unwrap();
    let summary: hudd::artefact::interventions::InterventionSummary =
        hudd::artefact::table::read_json(&out("summary")).unwrap();
    // Re-rendered unchanged, every image is the stored one (the stage refuses otherwise) and fails again.
    assert_eq!(summary.images, ids.len());
    assert!(summary.assessed * 20 >= summary.images * 19, "{} of {} fail again", summary.assessed, summary.images);
    let share = |name: &str| summary.restorations.iter().find(|s| s.intervention == name).unwrap().fixed.rate;
    assert!(share("night") >= 0.8, "restoring the darkness fixes {:.2}", share("night"));
    assert!(summary.sham.rate < 0.3, "the sham fixes {:.2}", summary.sham.rate);
    let dark = summary.clusters.iter().find(|c| c.cluster == 1).unwrap();
    assert_eq!(dark.causes.first().map(String::as_str), Some("night"), "{dark:?}");
    assert!(dark.fixed.lo > dark.sham.hi, "{dark:?}");
    // The report's summary counts the clusters under their tested causes: the dark one under `night`.
    let report = ws.store().output_path(&r.keys[w.stage_index("report").unwrap()], "report").unwrap();
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    let summary_md = &md[md.find("## Summary").unwrap()..md.find("## 1. Scope").unwrap()];
    let line = summary_md
        .lines()
        .find(|l| l.starts_with("By tested cause, the 2 clusters come to "))
        .unwrap_or_else(|| panic!("{summary_md}"));
    assert!(line.contains(&format!("restoring night for 1 cluster ({} failures)", dark.images)), "{line}");
    let verdicts: Vec<hudd::artefact::interventions::ImageVerdict> =
        hudd::artefact::table::read(&out("images")).unwrap();
    let named = verdicts.iter().filter(|v| v.cause == "night").count();
    assert!(named * 10 >= verdicts.len() * 7, "{named} of {} named night", verdicts.len());
    // The rows of the long table: the sham and one restoration per tried parameter for every image, pairs beside.
    let rows: Vec<hudd::artefact::interventions::InterventionRow> =
        hudd::artefact::table::read(&out("interventions")).unwrap();
    assert!(rows.len() >= ids.len() * (1 + summary.parameters.len()));
    assert!(!summary.parameters.contains(&"class".to_string()), "the label's parameter is never restored");

    // The counterfactual signature: per image, the probability of the true class after each single restoration (in
    // the summary's order), then after each pair some image was given, a pair not given taking its better half's.
    let folder = ws.store().output_path(&r.keys[w.stage_index("signature").unwrap()], "features").unwrap();
    let features = hudd::artefact::heatmaps::Heatmaps::open(&folder);
    assert_eq!(features.ids().unwrap(), ids);
    let mut reader = hudd::npy::NpyReader::<f32>::open(&folder.join("signature.npy")).unwrap();
    let pairs: std::collections::BTreeSet<&str> = (rows.iter())
        .filter(|r| r.kind == hudd::artefact::interventions::Kind::Pair)
        .map(|r| r.intervention.as_str())
        .collect();
    let columns: Vec<&str> = summary.parameters.iter().map(String::as_str).chain(pairs.iter().copied()).collect();
    assert_eq!((reader.rows(), reader.row_len()), (ids.len(), columns.len()));
    let matrix = reader.read_rows(0, ids.len()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let score = |name: &str| rows.iter().find(|r| &r.image == id && r.intervention == name).map(|r| r.score);
        for (k, name) in columns.iter().enumerate() {
            let want = score(name).unwrap_or_else(|| name.split('+').map(|h| score(h).unwrap()).fold(0.0, f64::max));
            assert!((f64::from(matrix[i * columns.len() + k]) - want).abs() < 1e-6, "{id} {name}");
        }
    }
    // `cluster` takes it as it takes any features.
    let clustered = ws.store().output_path(&r.keys[w.stage_index("cluster-signature").unwrap()], "clusters").unwrap();
    let groups = hudd::artefact::clusters::Clusters::open(&clustered).groups().unwrap();
    assert_eq!(groups.values().map(Vec::len).sum::<usize>(), ids.len());

    // A simulation with another seed than the stage's is refused, naming an image and the seed.
    let text = text.replace("pairs = 10", "pairs = 10\nseed = 5");
    let path = ws.write("w.toml", &text);
    let registry = crate::support::registry_with_crafted();
    let w = hudd::engine::manifest::load(&path, &[], &registry).unwrap();
    let report = hudd::engine::run(&ws.store(), &w, &registry, &RunOptions::default(), &Reporter::hidden()).unwrap();
    assert_eq!(report.exit_code(), 2);
    let message = crate::support::failures(&report);
    assert!(message.contains("with seed 5 does not give the stored image"), "{message}");
}

/// A cluster of generic features (a pretrained backbone's channel means; here tiny-resnet with fresh weights) grows
/// as a relevance cluster does: every image found fails, and each is measured by the backbone that described the
/// members (other weights, other distances), not by the model's relevance.
#[test]
fn expand_grows_clusters_of_a_backbones_features_measured_by_that_backbone() {
    let expanded = |weights_seed: u64| {
        let ws = crate::support::Ws::new();
        crate::support::fresh_backbone(&ws, weights_seed);
        let text = planted()
            + &format!(
                r#"
[[stage]]
id = "generic"
kind = "activations"
images = "test.errors"
backbone = {{ architecture = "{}", weights = "backbone.safetensors", mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25] }}
layers = ["block.relu2"]
pool = "channels"

[[stage]]
id = "causes"
kind = "cluster"
heatmaps = "generic.activations"
images = "test.errors"
mode = "direct"
choose_k = "fixed"
k = 2
stability_draws = 0

[[stage]]
id = "expand"
kind = "expand"
clusters = "causes.clusters"
heatmaps = "generic.activations"
model = "train.model"
dataset = "data.dataset"
population = 24
generations = 2

[[stage]]
id = "retest"
kind = "test"
model = "train.model"
dataset = "expand.expanded"
split = "expanded"
"#,
                crate::support::fixture("tiny-resnet.toml").display()
            );
        let (w, r) = run(&ws, &text);
        let out =
            |stage: &str, output: &str| ws.store().output_path(&r.keys[w.stage_index(stage).unwrap()], output).unwrap();
        let found = hudd::dataset::Dataset::open(&out("expand", "expanded")).unwrap();
        let distances = found.numbers("rcc_distance").unwrap();
        let retest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out("retest", "summary")).unwrap()).unwrap();
        (distances, retest)
    };
    let (distances, retest) = expanded(7);
    assert!(!distances.is_empty(), "the search finds failures that join a cluster of generic features");
    assert_eq!(retest["errors"].as_u64(), Some(distances.len() as u64), "every image found fails: {retest}");
    let (other, _) = expanded(8);
    assert_ne!(other, distances, "another backbone's weights measure other distances");
}

/// Real images have no simulator: the planted darkness's signs exported as PNG files in torchvision's ImageFolder
/// layout (`<split>/<class>/<image>`, as a safety team brings its own), imported with their pixel descriptors
/// measured by the `dataset` stage; `rules` states the failures' condition over the descriptors, `confirm` measures
/// it on held-out images that chose nothing, and `intervene` brightens the failures (and tries the other image-space
/// interventions) against a sham of imperceptible noise; the report says all.
#[test]
fn on_real_images_a_condition_over_pixel_descriptors_is_confirmed_on_held_out_images() {
    let ws = crate::support::Ws::new();
    // The planted signs (bright in training, any light after), rendered once and kept only as files.
    let signs = planted().split("\n[[stage]]\nid = \"train\"").next().unwrap().replace(
        "improvement = {",
        "holdout = { count = 600, params = { night = { uniform = [0.0, 1.0] } } }, improvement = {",
    );
    let (w, r) = run(&ws, &signs);
    let simulated = hudd::dataset::Dataset::open(
        &ws.store().output_path(&r.keys[w.stage_index("data").unwrap()], "dataset").unwrap(),
    )
    .unwrap();
    let (ids, labels, splits) =
        (simulated.ids().unwrap(), simulated.strings("label").unwrap(), simulated.strings("split").unwrap());
    // As a safety team would bring them: torchvision's ImageFolder layout, `<split>/<class>/<image>`.
    let rows: Vec<usize> = (0..ids.len()).filter(|&i| splits[i] != "improvement").collect();
    for (&i, chw) in rows.iter().zip(simulated.images(&rows).unwrap().chunks_exact(3 * 32 * 32)) {
        let rgb = hudd::media::chw_to_rgb(chw, 3, 32 * 32);
        let path = ws.path().join(format!("photos/{}/{}/{}.png", splits[i], labels[i], ids[i]));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_raw(32, 32, rgb).unwrap().save(&path).unwrap();
    }
    let real = planted()
        .replace(
            "kind = \"simulate\"\nsimulator = \"signs\"",
            "kind = \"dataset\"\nformat = \"folders\"\npath = \"photos\"",
        )
        .lines()
        .filter(|l| !l.starts_with("params = ") && !l.starts_with("splits = "))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("size = 32", "size = 32\ndescriptors = true")
        .replace(
            "path = \"photos\"",
            "path = \"photos\"\nsplits = { train = \"train\", test = \"test\", holdout = \"holdout\" }",
        )
        + r#"
[[stage]]
id = "test-holdout"
kind = "test"
model = "train.model"
dataset = "data.dataset"
split = "holdout"
"#;
    let (w, r) = run(&ws, &real);
    let out = |w: &Workflow, r: &RunReport, stage: &str, output: &str| {
        ws.store().output_path(&r.keys[w.stage_index(stage).unwrap()], output).unwrap()
    };
    let data = hudd::dataset::Dataset::open(&out(&w, &r, "data", "dataset")).unwrap();
    let names: Vec<&str> = data.meta.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["luminance", "contrast", "sharpness", "noise", "edges", "saturation", "colourfulness"]);
    // Each image's row holds the descriptors of its stored pixels, as the table rounds them.
    let first = hudd::descriptors::describe(&data.images(&[0]).unwrap(), 3, 32, 32);
    for (name, want) in names.iter().zip(first) {
        assert!((data.numbers(name).unwrap()[0] - want).abs() <= 5e-5, "{name}: {want}");
    }
    let errors = hudd::dataset::Dataset::open(&out(&w, &r, "test", "errors")).unwrap().ids().unwrap();
    assert!(errors.len() >= 20, "the darkness makes the model fail on the imported images too: {}", errors.len());
    let stages = |results: &str| {
        real.clone()
            + &r#"
[[stage]]
id = "heatmaps"
kind = "heatmaps"
model = "train.model"
images = "test.errors"

[[stage]]
id = "clusters"
kind = "cluster"
heatmaps = "heatmaps.heatmaps"
images = "test.errors"
stability_draws = 0

[[stage]]
id = "rules"
kind = "rules"
clusters = "clusters.clusters"
results = "test.results"
dataset = "data.dataset"

[[stage]]
id = "confirm"
kind = "confirm"
rules = "rules.rules"
dataset = "data.dataset"
results = "RESULTS"

[[stage]]
id = "intervene"
kind = "intervene"
model = "train.model"
images = "test.errors"
dataset = "data.dataset"
clusters = "clusters.clusters"

[[stage]]
id = "report"
kind = "report"
test = "test.summary"
data = "data.dataset"
clusters = "clusters.clusters"
rules = "rules.rules"
confirm = "confirm.confirmations"
interventions = "intervene.summary"
"#
            .replace("RESULTS", results)
    };
    let (w, r) = run(&ws, &stages("test-holdout.results"));
    let rules: Rules = hudd::artefact::table::read_json(&out(&w, &r, "rules", "rules")).unwrap();
    for rule in &rules.rules {
        assert!(rule.conditions.iter().all(|c| names.contains(&c.condition.parameter())), "{}", rule.text);
    }
    let confirmed: Confirmations = hudd::artefact::table::read_json(&out(&w, &r, "confirm", "confirmations")).unwrap();
    assert!(confirmed.held_out && confirmed.domain == "holdout" && confirmed.images == 600, "{confirmed:?}");
    assert_eq!(confirmed.rules.len(), rules.rules.len());
    for c in &confirmed.rules {
        assert_eq!(c.inside.images + c.outside.images, 600, "every held-out image on one side of {}", c.rule);
        assert_eq!(c.coverage.inside, c.inside.images);
    }
    // The darkness: a rule over the light the images show is confirmed, failing more inside than outside.
    let dark = confirmed.rules.iter().find(|c| c.confirmed).unwrap_or_else(|| panic!("none confirmed: {confirmed:#?}"));
    assert!(dark.inside.lo > dark.outside.hi, "{dark:?}");
    // Image-space interventions: brightening the dark failures fixes them, the sham's noise does not.
    let summary: hudd::artefact::interventions::InterventionSummary =
        hudd::artefact::table::read_json(&out(&w, &r, "intervene", "summary")).unwrap();
    let every = ["brightness", "contrast", "gamma", "sharpen", "denoise", "derotate", "recentre"];
    assert!(summary.image_space && summary.parameters == every);
    let fixed = |name: &str| summary.restorations.iter().find(|r| r.intervention == name).unwrap().fixed;
    assert!(summary.assessed >= 20 && fixed("brightness").rate >= 0.5, "{summary:#?}");
    assert!(summary.sham.rate <= 0.1 && fixed("brightness").lo > summary.sham.hi, "{summary:#?}");
    let light = ["brightness", "contrast", "gamma"];
    let caused: Vec<&str> = summary.clusters.iter().filter_map(|c| c.causes.first()).map(String::as_str).collect();
    assert!(!caused.is_empty() && caused.iter().all(|c| light.contains(c)), "{caused:?}");
    let md = std::fs::read_to_string(ws.path().join("reports/planted/report.md")).unwrap();
    assert!(md.contains("### Triggering conditions over pixel descriptors"), "{md}");
    assert!(md.contains("tested on the held-out images of split `holdout`, which chose nothing"), "{md}");
    assert!(md.contains("| Failure rate inside (held out) |"), "{md}");
    assert!(md.contains("Causes tested by intervention on the images themselves"), "{md}");
    assert!(md.contains("Tested cause: normalising brightness fixes"), "{md}");

    // Measured on the very split the rules were learned on, the confirmation is refused, naming it.
    let path = ws.write("w.toml", &stages("test.results"));
    let registry = crate::support::registry_with_crafted();
    let w = hudd::engine::manifest::load(&path, &[], &registry).unwrap();
    let report = hudd::engine::run(&ws.store(), &w, &registry, &RunOptions::default(), &Reporter::hidden()).unwrap();
    assert_eq!(report.exit_code(), 2);
    let why = crate::support::failures(&report);
    assert!(why.contains("split `test`, which the rules were learned on"), "{why}");
    // Real images without the dataset to move them towards, or an intervention misspelt: refused, named.
    let intervene =
        "kind = \"intervene\"\nmodel = \"train.model\"\nimages = \"test.errors\"\ndataset = \"data.dataset\"\n";
    for (instead, expected) in [
        (
            "kind = \"intervene\"\nmodel = \"train.model\"\nimages = \"test.errors\"\n",
            "holds real images (no simulator): connect `dataset`",
        ),
        (
            &format!("{intervene}parameters = [\"brigthness\"]\n")[..],
            "`brigthness` is not one of brightness, contrast, gamma, sharpen, denoise, derotate, recentre (did you mean \
             `brightness`?)",
        ),
    ] {
        let text = stages("test-holdout.results");
        assert!(text.contains(intervene));
        let path = ws.write("w.toml", &text.replace(intervene, instead));
        let w = hudd::engine::manifest::load(&path, &[], &registry).unwrap();
        let report =
            hudd::engine::run(&ws.store(), &w, &registry, &RunOptions::default(), &Reporter::hidden()).unwrap();
        assert_eq!(report.exit_code(), 2);
        let why = crate::support::failures(&report);
        assert!(why.contains(expected), "{why}");
    }
}
