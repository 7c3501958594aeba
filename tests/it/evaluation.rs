//! RQ1 (`variance`) and RQ2 (`compare`) on inputs with known answers.

use hudd::engine::manifest::Workflow;
use hudd::engine::progress::Reporter;
use hudd::engine::{RunOptions, RunReport};

fn run(ws: &crate::support::Ws, text: &str) -> (Workflow, RunReport) {
    let (w, report) = run_failing(ws, text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    (w, report)
}

/// Runs a workflow that may fail.
fn run_failing(ws: &crate::support::Ws, text: &str) -> (Workflow, RunReport) {
    let path = ws.write("w.toml", text);
    let registry = crate::support::registry_with_crafted();
    let w = hudd::engine::manifest::load(&path, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
    let report = hudd::engine::run(&ws.store(), &w, &registry, &RunOptions::default(), &Reporter::hidden()).unwrap();
    (w, report)
}

fn json(ws: &crate::support::Ws, w: &Workflow, r: &RunReport, stage: &str, output: &str) -> serde_json::Value {
    let path = ws.store().output_path(&r.keys[w.stage_index(stage).unwrap()], output).unwrap();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn text(ws: &crate::support::Ws, w: &Workflow, r: &RunReport, stage: &str, output: &str) -> String {
    std::fs::read_to_string(ws.store().output_path(&r.keys[w.stage_index(stage).unwrap()], output).unwrap()).unwrap()
}

#[test]
fn variance_reduction_finds_the_parameter_a_cluster_shares_even_across_0_degrees() {
    // Cluster 1: signs seen face-on (yaw within ±4°, across 0°/360°), at any brightness; cluster 2: signs turned
    // 40-60° and dark. Over both, yaw spreads widely: each cluster shares a small range of it.
    let manifest = r#"
[workflow]
name = "rq1"
seed = 5

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 16
splits = { a = { count = 10, params = { yaw = { uniform = [-4.0, 4.0] }, night = { uniform = [0.0, 1.0] } } }, b = { count = 10, params = { yaw = { uniform = [40.0, 60.0] }, night = { uniform = [0.8, 0.9] } } } }

[[stage]]
id = "clusters"
kind = "files"
path = "clusters"

[[stage]]
id = "variance"
kind = "variance"
clusters = "clusters.clusters"
images = "data.dataset"
inspect_per_cluster = 3
"#;
    let ws = crate::support::Ws::new();
    let table: String =
        (0..10).map(|i| format!("a-{i:06},1,0\n")).chain((0..10).map(|i| format!("b-{i:06},2,0\n"))).collect();
    ws.write("clusters/clusters.csv", &format!("image,cluster,distance_to_medoid\n{table}"));
    let (w, r) = run(&ws, manifest);
    let summary = json(&ws, &w, &r, "variance", "summary");
    assert_eq!(
        (summary["failing"].as_u64(), summary["clusters"].as_u64(), summary["inspected"].as_u64()),
        (Some(20), Some(2), Some(6))
    );
    assert_eq!(summary["explained_share"], 1.0, "{summary}");
    let clusters = text(&ws, &w, &r, "variance", "clusters");
    let rows: Vec<hudd::artefact::evaluation::ExplanationRow> =
        hudd::artefact::table::parse(std::path::Path::new("clusters.csv"), clusters.as_bytes()).unwrap();
    let first = &rows[0];
    assert_eq!((first.cluster, first.size, first.explained, first.best_parameter.as_str()), (1, 10, Some(true), "yaw"));
    assert!(first.best_reduction.is_some_and(|r| (0.99..1.0).contains(&r)), "{clusters}");
    // The arc across 0° reads as signed degrees (-3.5° to 2.9°), not as 356.5° to 2.9°.
    let yaw = first.description.split(';').next().unwrap();
    let (lo, hi) = yaw.trim_start_matches("yaw ").split_once(" to ").unwrap();
    let (lo, hi): (f64, f64) = (lo.trim_end_matches('°').parse().unwrap(), hi.trim_end_matches('°').parse().unwrap());
    assert!((-4.0..0.0).contains(&lo) && (0.0..4.0).contains(&hi), "{clusters}");
    assert!(rows[1].description.contains("night 0.8"), "{clusters}");
    let reductions = text(&ws, &w, &r, "variance", "reductions");
    // Night spreads over [0, 1] in cluster 1: no reduction there (it may even grow).
    let night_1: f64 =
        reductions.lines().find(|l| l.starts_with("1,10,night,")).unwrap().rsplit(',').next().unwrap().parse().unwrap();
    assert!(night_1 < 0.5, "{reductions}");
}

/// A test stage's results table on one split: image `<split>-<i>` right or wrong, and how the model saw the split.
fn results(split: &str, seen: &str, correct: &[bool]) -> String {
    let rows: String = correct
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{split}-{i},{},{split},{seen}\n", if *c { "Correct" } else { "Wrong" }))
        .collect();
    format!("image,result,split,seen\n{rows}")
}

/// A compare stage over fake results: the original, HUDD's three runs and three random runs, on the held-out split
/// and on the test split whose failures were clustered; `hudd_seen` is how HUDD's runs saw the test split.
fn rq2_manifest(hudd_seen: &str, held_out_seen: &str) -> String {
    let original = [false, false, false, false, true, true, true, true, true, true];
    // The original gets images 0-3 wrong; HUDD's runs fix 3 or 4 of them, the random runs 0 or 1 and break one.
    let hudd = [
        [true, true, true, false, true, true, true, true, true, true],
        [true, true, true, true, true, true, true, true, true, true],
        [true, true, true, false, true, true, true, true, true, true],
    ];
    let random = [
        [false, false, false, false, false, true, true, true, true, true],
        [true, false, false, false, false, true, true, true, true, true],
        [false, false, false, false, true, true, true, true, true, false],
    ];
    let q = |s: &str| format!("{s:?}");
    let mut stages = String::new();
    for (split, seen) in [("holdout", held_out_seen), ("test", "no")] {
        stages += &format!(
            "[[stage]]\nid = \"original-{split}\"\nkind = \"crafted-results\"\ntext = {}\n\n",
            q(&results(split, "no", &original))
        );
        let hudd_seen = if split == "test" { hudd_seen } else { seen };
        for (i, c) in hudd.iter().enumerate() {
            stages += &format!(
                "[[stage]]\nid = \"h{i}-{split}\"\nkind = \"crafted-results\"\nseed = {i}\ntext = {}\n\n",
                q(&results(split, hudd_seen, c))
            );
        }
        for (i, c) in random.iter().enumerate() {
            stages += &format!(
                "[[stage]]\nid = \"r{i}-{split}\"\nkind = \"crafted-results\"\nmatrix = {{ strategy = [\"random\"] }}\nseed = {i}\ntext = {}\n\n",
                q(&results(split, "no", c))
            );
        }
    }
    let list = |prefix: &str| {
        ["holdout", "test"]
            .iter()
            .flat_map(|s| (0..3).map(move |i| format!("\"{prefix}{i}-{s}.results\"")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[workflow]
name = "rq2"

{stages}
[[stage]]
id = "clusters"
kind = "files"
path = "clusters"

[[stage]]
id = "assigned"
kind = "files"
path = "assigned"

[[stage]]
id = "compare"
kind = "compare"
original = ["original-test.results", "original-holdout.results"]
reference = [{}]
runs = [{}]
clusters = "clusters.clusters"
assigned = "assigned.selection"
"#,
        list("h"),
        list("r")
    )
}

/// The clusters (test images 0-3) and the held-out failures assigned to them (holdout images 0-3, swapped).
fn rq2_workspace() -> crate::support::Ws {
    let ws = crate::support::Ws::new();
    ws.write(
        "clusters/clusters.csv",
        "image,cluster,distance_to_medoid\ntest-0,1,0\ntest-1,1,0\ntest-2,2,0\ntest-3,2,0\n",
    );
    ws.write(
        "clusters/summary.csv",
        "cluster,size,share,mean_intra_distance,medoid,stability,stable\n1,2,0.5,0,test-0,0.8,true\n2,2,0.5,0,test-2,0.3,false\n",
    );
    ws.write("assigned/table.csv", "image,split,rcc,rcc_distance\nholdout-0,holdout,2,0.5\nholdout-1,holdout,2,0.5\nholdout-2,holdout,1,0.5\nholdout-3,holdout,1,0.5\n");
    let meta = serde_json::json!({
        "source": "test", "task": "classification", "target": { "type": "classification", "classes": ["a", "b"] },
        "channels": 1, "height": 1, "width": 1, "count": 4, "splits": [["holdout", 4]], "params": []
    });
    ws.write("assigned/meta.json", &meta.to_string());
    hudd::npy::write(&ws.path().join("assigned/images.npy"), &[4, 1, 1, 1], &[0u8; 4]).unwrap();
    ws
}

#[test]
fn compare_judges_on_the_held_out_split_and_gives_the_papers_protocol_beside_it() {
    let ws = rq2_workspace();
    let (w, r) = run(&ws, &rq2_manifest("chose-data", "no"));
    let summary = json(&ws, &w, &r, "compare", "summary");
    assert_eq!(summary["metric"], "accuracy");
    // Each cluster's stability comes along, so one file holds RQ2, RQ1 and stability.
    assert_eq!(
        summary["clusters"],
        serde_json::json!([
            { "cluster": 1, "size": 2, "stability": 0.8, "stable": true },
            { "cluster": 2, "size": 2, "stability": 0.3, "stable": false },
        ])
    );
    // The held-out split judges, though `original` lists the test split first.
    assert_eq!(summary["judged_on"], "holdout", "{summary}");
    assert_eq!(summary["original"], 0.6);
    let protocols = summary["protocols"].as_array().unwrap();
    assert_eq!(protocols.len(), 2);
    assert_eq!((protocols[0]["split"].as_str(), protocols[0]["held_out"].as_bool()), (Some("holdout"), Some(true)));
    assert_eq!((protocols[1]["split"].as_str(), protocols[1]["held_out"].as_bool()), (Some("test"), Some(false)));
    assert_eq!(protocols[1]["seen"], serde_json::json!([{ "models": "hudd", "how": "chose-data" }]), "{summary}");
    assert!(protocols[1]["label"].as_str().unwrap().starts_with("the paper's protocol"), "{summary}");
    let strategies = summary["strategies"].as_array().unwrap();
    let hudd_row = strategies.iter().find(|s| s["strategy"] == "hudd").unwrap();
    assert!((hudd_row["mean"].as_f64().unwrap() - 0.9333333).abs() < 1e-6, "{summary}");
    assert_eq!((hudd_row["min"].as_f64(), hudd_row["max"].as_f64()), (Some(0.9), Some(1.0)));
    assert!((hudd_row["fixed"].as_f64().unwrap() - 10.0 / 3.0).abs() < 1e-9 && hudd_row["broken"] == 0.0, "{summary}");
    // The baseline runs are grouped by their `strategy` matrix value.
    let tests = summary["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 1, "{summary}");
    assert_eq!(tests[0]["baseline"], "random");
    assert_eq!(tests[0]["a12"], 1.0, "every HUDD run beats every baseline run: {summary}");
    let random_row = strategies.iter().find(|s| s["strategy"] == "random").unwrap();
    assert_eq!((random_row["runs"].as_u64(), random_row["broken"].as_f64()), (Some(3), Some(1.0)), "{summary}");
    // The same tables as Parquet, with the split.
    let parquet = ws.store().output_path(&r.keys[w.stage_index("compare").unwrap()], "parquet").unwrap();
    use polars::prelude::SerReader;
    let runs = polars::prelude::ParquetReader::new(std::fs::File::open(parquet.join("runs.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(runs.height(), 12);
    assert_eq!(runs.get_column_names(), ["split", "strategy", "stage", "score", "fixed", "broken"]);
    // Per cluster: the members on the test split, the assigned images on the held-out split.
    let rcc = text(&ws, &w, &r, "compare", "rcc");
    assert!(
        rcc.contains("test,hudd,1,2,0,1,3,1,1\n") && rcc.contains("test,hudd,2,2,0,0.6666666666666666,3,"),
        "{rcc}"
    );
    assert!(
        rcc.contains("holdout,hudd,2,2,0,1,3,") && rcc.contains("holdout,hudd,1,2,0,0.6666666666666666,3,"),
        "{rcc}"
    );
    // Each strategy's interval covers runs and images and brackets its mean; the one comparison on a split is its
    // own family (Holm leaves its p as it is).
    let (lo, hi) = (hudd_row["lo"].as_f64().unwrap(), hudd_row["hi"].as_f64().unwrap());
    assert!(lo < 0.9333 && 0.9333 < hi + 1e-9 && hi <= 1.0, "{summary}");
    assert_eq!(summary["correction"], "holm");
    assert_eq!(tests[0]["p_adjusted"], tests[0]["p"], "{summary}");
}

#[test]
fn compare_refuses_when_every_split_was_seen_by_a_model() {
    // The held-out split chose the retrained models' epoch: nothing judges them fairly.
    let ws = rq2_workspace();
    let (w, r) = run_failing(&ws, &rq2_manifest("chose-data", "chose-epoch"));
    let error = match &r.outcomes[w.stage_index("compare").unwrap()] {
        hudd::engine::Outcome::Failed { error, exit_code } => {
            assert_eq!(*exit_code, 2);
            error.clone()
        }
        other => panic!("compare ran: {other:?}"),
    };
    assert!(error.contains("no split judges the retraining fairly"), "{error}");
    assert!(error.contains("split `holdout`: seen by hudd, whose epoch its images chose"), "{error}");
    // Without a seen column (imported models record nothing), the clustered images still mark the test split.
    let ws = rq2_workspace();
    let manifest = rq2_manifest("no", "chose-epoch").replace(",holdout,no", ",holdout,").replace(",test,no", ",test,");
    let (w, r) = run_failing(&ws, &manifest);
    let hudd::engine::Outcome::Failed { error, .. } = &r.outcomes[w.stage_index("compare").unwrap()] else {
        panic!("compare ran")
    };
    assert!(
        error.contains("split `test`: the paper's protocol: seen by hudd, whose training data its images chose"),
        "{error}"
    );
}

#[test]
fn a_planted_explanation_beats_chance_and_random_clusters_of_the_same_size_do_not() {
    // Cluster 1: signs drawn from a narrow yaw range (a planted cause); clusters 2 and 3: images drawn like all
    // the others, grouped at random. Each has 12 images.
    let manifest = r#"
[workflow]
name = "chance"
seed = 8

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 16
splits = { a = { count = 12, params = { yaw = { uniform = [20.0, 24.0] } } }, r = { count = 12 }, s = { count = 12 } }

[[stage]]
id = "clusters"
kind = "files"
path = "clusters"

[[stage]]
id = "variance"
kind = "variance"
clusters = "clusters.clusters"
images = "data.dataset"
permutations = 500
"#;
    let ws = crate::support::Ws::new();
    let table: String = [("a", 1), ("r", 2), ("s", 3)]
        .iter()
        .flat_map(|(split, c)| (0..12).map(move |i| format!("{split}-{i:06},{c},0\n")))
        .collect();
    ws.write("clusters/clusters.csv", &format!("image,cluster,distance_to_medoid\n{table}"));
    let (w, r) = run(&ws, manifest);
    let rows: Vec<hudd::artefact::evaluation::ExplanationRow> = hudd::artefact::table::read(
        &ws.store().output_path(&r.keys[w.stage_index("variance").unwrap()], "clusters").unwrap(),
    )
    .unwrap();
    let planted = &rows[0];
    assert_eq!(
        (planted.best_parameter.as_str(), planted.explained, planted.beats_chance),
        ("yaw", Some(true), Some(true))
    );
    assert!(planted.p.unwrap() < 0.01, "{rows:?}");
    for random in &rows[1..] {
        assert_eq!(random.beats_chance, Some(false), "a random cluster beat chance: {rows:?}");
        assert!(random.p.unwrap() > 0.05, "{rows:?}");
    }
    let summary = json(&ws, &w, &r, "variance", "summary");
    assert_eq!(summary["chance"]["explained"], 1, "{summary}");
    assert_eq!(summary["chance"]["permutations"], 500);
    // Three clusters of 12 share one null of 500 draws: the expected count is three times the share of those draws
    // reaching the threshold, a whole number of draws out of 500 (the formula is checked against an exact
    // enumeration in variance.rs's unit tests); the planted cluster's own best reduction is far above that null.
    let expected = summary["chance"]["expected_by_chance"].as_f64().unwrap();
    let draws = expected / 3.0 * 500.0;
    assert!((draws - draws.round()).abs() < 1e-9 && (0.0..=500.0).contains(&draws), "{summary}");
    assert!(rows.iter().all(|r| (r.p.unwrap() * 501.0 - (r.p.unwrap() * 501.0).round()).abs() < 1e-9), "{rows:?}");
    assert!(
        (planted.p.unwrap() - 1.0 / 501.0).abs() < 1e-12,
        "no random cluster of 12 is as tight as the planted one: {rows:?}"
    );
    // The same seed draws the same null: the stage is deterministic.
    let again = crate::support::Ws::new();
    again.write("clusters/clusters.csv", &format!("image,cluster,distance_to_medoid\n{table}"));
    let (_, r2) = run(&again, manifest);
    assert_eq!(r.keys, r2.keys);
    assert_eq!(text(&ws, &w, &r, "variance", "clusters"), text(&again, &w, &r2, "variance", "clusters"));
}

#[test]
fn the_labels_own_parameter_is_described_but_never_counted_as_a_cause() {
    // Cluster 1: every image a stop sign (the label's own parameter, `class`, fixed); cluster 2: all the others.
    let manifest = r#"
[workflow]
name = "label"
seed = 3

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 16
splits = { k = { count = 12, params = { class = { fixed = "stop" } } }, r = { count = 24 } }

[[stage]]
id = "clusters"
kind = "files"
path = "clusters"

[[stage]]
id = "variance"
kind = "variance"
clusters = "clusters.clusters"
images = "data.dataset"
permutations = 200
"#;
    let ws = crate::support::Ws::new();
    let table: String =
        (0..12).map(|i| format!("k-{i:06},1,0\n")).chain((0..24).map(|i| format!("r-{i:06},2,0\n"))).collect();
    ws.write("clusters/clusters.csv", &format!("image,cluster,distance_to_medoid\n{table}"));
    let (w, r) = run(&ws, manifest);
    let rows: Vec<hudd::artefact::evaluation::ExplanationRow> = hudd::artefact::table::read(
        &ws.store().output_path(&r.keys[w.stage_index("variance").unwrap()], "clusters").unwrap(),
    )
    .unwrap();
    let stops = &rows[0];
    assert_ne!(stops.best_parameter, "class", "{rows:?}");
    assert!(stops.description.contains("the label: class stop (all)"), "{rows:?}");
    let meta = hudd::dataset::Dataset::open(
        &ws.store().output_path(&r.keys[w.stage_index("data").unwrap()], "dataset").unwrap(),
    )
    .unwrap()
    .meta;
    let labels: Vec<&str> = meta.params.iter().filter(|p| p.label).map(|p| p.name.as_str()).collect();
    assert_eq!(labels, ["class"]);
}

#[test]
fn recovery_scores_clusters_against_the_planted_scenarios_beside_a_random_floor() {
    let manifest = r#"
[workflow]
name = "recovery"
seed = 3

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 16

[stage.splits.test]
count = 90

[stage.splits.test.scenarios.night]
weight = 1.0
params = { night = { uniform = [0.8, 1.0] } }

[stage.splits.test.scenarios.fog]
weight = 1.0
params = { fog = { uniform = [0.6, 0.9] } }

[stage.splits.test.scenarios.turned]
weight = 1.0
params = { yaw = { uniform = [50.0, 70.0] } }

[stage.splits.test.scenarios.nominal]
weight = 1.0
"#;
    let ws = crate::support::Ws::new();
    let (w, r) = run(&ws, manifest);
    let dir = ws.store().output_path(&r.keys[w.stage_index("data").unwrap()], "dataset").unwrap();
    let ds = hudd::dataset::Dataset::open(&dir).unwrap();
    let (ids, scenarios) = (ds.ids().unwrap(), ds.strings("scenario").unwrap());
    // Clusters that follow the scenarios exactly, and three images alone (a density clustering's noise): left out.
    let number = |s: &str| ["fog", "night", "nominal", "turned"].iter().position(|x| *x == s).unwrap() + 1;
    let rows: String = ids
        .iter()
        .zip(&scenarios)
        .enumerate()
        .map(|(i, (id, s))| format!("{id},{},0\n", if i < 3 { 10 + i } else { number(s) }))
        .collect();
    ws.write("clusters/clusters.csv", &format!("image,cluster,distance_to_medoid\n{rows}"));
    let full = format!(
        "{manifest}\n[[stage]]\nid = \"clusters\"\nkind = \"files\"\npath = \"clusters\"\n\n\
         [[stage]]\nid = \"recovery\"\nkind = \"recovery\"\nclusters = \"clusters.clusters\"\nimages = \"data.dataset\"\npermutations = 200\n"
    );
    let (w, r) = run(&ws, &full);
    let summary = json(&ws, &w, &r, "recovery", "summary");
    // The three images alone are scored as one more cluster: purity counts only the commonest cause among them, so
    // leaving images out cannot raise it; they cover no cause, and the nominal scenario is no cause to cover.
    let commonest = scenarios[..3].iter().map(|s| scenarios[..3].iter().filter(|t| *t == s).count()).max().unwrap();
    let purity = (87 + commonest) as f64 / 90.0;
    assert!((summary["purity"].as_f64().unwrap() - purity).abs() < 1e-12, "{summary}");
    assert_eq!(summary["coverage"], 1.0, "{summary}");
    assert!(summary["nmi"].as_f64().unwrap() < 1.0, "{summary}");
    assert_eq!(
        (summary["clusters"].as_u64(), summary["causes"].as_u64(), summary["images"].as_u64()),
        (Some(4), Some(3), Some(90))
    );
    assert_eq!(summary["unclustered"], 3, "{summary}");
    let floor = &summary["random"];
    assert!(floor["purity"][1].as_f64().unwrap() < 0.6 && floor["nmi"][1].as_f64().unwrap() < 0.2, "{summary}");
    let table = text(&ws, &w, &r, "recovery", "table");
    assert!(
        table.starts_with(
            "cause,planted,images,best_cluster,share_in_best,dominates,unassigned
"
        ),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("nominal,false,")), "{table}");
    let unassigned: usize =
        table.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse::<usize>().unwrap()).sum();
    assert_eq!(unassigned, 3, "{table}");
    // Every failure alone, then no failure at all (the best outcome): an empty result that says why, not an error.
    let alone: String = ids.iter().enumerate().map(|(i, id)| format!("{id},{},0\n", i + 1)).collect();
    for (rows, note) in [
        (alone.as_str(), "no cluster holds two or more images (90 failing images, each alone): nothing to score"),
        ("", "the model fails on none of these images: no cluster to score"),
    ] {
        ws.write("clusters/clusters.csv", &format!("image,cluster,distance_to_medoid\n{rows}"));
        let (w, r) = run(&ws, &full);
        let summary = json(&ws, &w, &r, "recovery", "summary");
        assert_eq!(summary["note"], note, "{summary}");
        assert!(summary["purity"].is_null() && summary["random"].is_null(), "{summary}");
        assert!(summary.get("exposure").is_none(), "no results, no exposure: {summary}");
    }

    // Every tested image's outcome: fog fails always, night on even rows, the nominal scenario and turned signs on
    // every fourth row (turned signs fail by the same rule as nominal ones: a planted cause that causes nothing, whose
    // small excess here, 4 of 19 against 4 of 22, is the draw's).
    let fails = |i: usize, s: &str| match s {
        "fog" => true,
        "night" => i.is_multiple_of(2),
        _ => i.is_multiple_of(4),
    };
    let rows: String = ids
        .iter()
        .zip(&scenarios)
        .enumerate()
        .map(|(i, (id, s))| format!("{id},{}\n", if fails(i, s) { "Wrong" } else { "Correct" }))
        .collect();
    let with_results = format!(
        "{full}results = \"outcomes.results\"\ntested = \"data.dataset\"\n\n\
         [[stage]]\nid = \"outcomes\"\nkind = \"crafted-results\"\ntext = {:?}\n",
        format!("image,result\n{rows}")
    );
    let (w, r) = run(&ws, &with_results);
    let exposure = json(&ws, &w, &r, "recovery", "summary")["exposure"].clone();
    let count = |s: &str| {
        let of: Vec<usize> = (0..ids.len()).filter(|&i| scenarios[i] == s).collect();
        (of.len(), of.iter().filter(|&&i| fails(i, s)).count())
    };
    // Worked by hand from the counts of this split: nominal 4 of 22 fail (2/11); fog 23 of 23, so (1 − 2/11) / 1 = 9/11
    // of its failures are its own; night 16 of 26 (8/13): (8/13 − 2/11) / (8/13) = 31/44; turned 4 of 19: 1 − (2/11)
    // · (19/4) = 3/22. Over the 47 failures: (23 · 9/11 + 16 · 31/44 + 4 · 3/22) / 47 = 337/517.
    let worked = [
        ("fog", (23, 23), 9.0 / 11.0),
        ("night", (26, 16), 31.0 / 44.0),
        ("nominal", (22, 4), 0.0),
        ("turned", (19, 4), 3.0 / 22.0),
    ];
    assert!((exposure["nominal_rate"].as_f64().unwrap() - 2.0 / 11.0).abs() < 1e-12, "{exposure}");
    let causes = exposure["causes"].as_array().unwrap();
    let names: Vec<&str> = causes.iter().map(|c| c["cause"].as_str().unwrap()).collect();
    assert_eq!(names, ["fog", "night", "nominal", "turned"]);
    for (c, (name, (tested, failing), share)) in causes.iter().zip(worked) {
        assert_eq!(count(name), (tested, failing), "the split's counts changed: work the shares out again");
        assert_eq!((c["tested"].as_u64(), c["failing"].as_u64()), (Some(tested as u64), Some(failing as u64)), "{c}");
        assert!((c["attributable"].as_f64().unwrap() - share).abs() < 1e-12, "{c}");
    }
    assert!((exposure["attributable"].as_f64().unwrap() - 337.0 / 517.0).abs() < 1e-12, "{exposure}");
    // One of the two inputs alone is an error that says so, not a half-filled exposure.
    let half = with_results.replace("tested = \"data.dataset\"\n", "");
    let (w, r) = run_failing(&ws, &half);
    let hudd::engine::Outcome::Failed { error, exit_code: 2 } = &r.outcomes[w.stage_index("recovery").unwrap()] else {
        panic!("{:?}", r.outcomes[w.stage_index("recovery").unwrap()]);
    };
    assert!(error.contains("give both `results`"), "{error}");
}
