//! RQ1 (`variance`) and RQ2 (`compare`) on inputs with known answers.

use hudd::engine::manifest::Workflow;
use hudd::engine::progress::Reporter;
use hudd::engine::{RunOptions, RunReport};

fn run(ws: &crate::support::Ws, text: &str) -> (Workflow, RunReport) {
    let path = ws.write("w.toml", text);
    let registry = hudd::stages::registry().with(crate::support::Files).with(crate::support::Text);
    let w = hudd::engine::manifest::load(&path, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
    let report = hudd::engine::run(&ws.store(), &w, &registry, &RunOptions::default(), &Reporter::hidden()).unwrap();
    assert_eq!(report.exit_code(), 0, "{:?}", report.outcomes);
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

#[test]
fn compare_reports_scores_fixed_and_broken_images_and_the_statistics() {
    let results = |correct: &[bool]| -> String {
        let rows: String = correct
            .iter()
            .enumerate()
            .map(|(i, c)| format!("img-{i},{}\n", if *c { "Correct" } else { "Wrong" }))
            .collect();
        format!("image,result\n{rows}")
    };
    // The original gets images 0-3 wrong; HUDD's runs fix 3 or 4 of them, the random runs 0 or 1 and break one.
    let original = results(&[false, false, false, false, true, true, true, true, true, true]);
    let hudd = [
        results(&[true, true, true, false, true, true, true, true, true, true]),
        results(&[true, true, true, true, true, true, true, true, true, true]),
        results(&[true, true, true, false, true, true, true, true, true, true]),
    ];
    let random = [
        results(&[false, false, false, false, false, true, true, true, true, true]),
        results(&[true, false, false, false, false, true, true, true, true, true]),
        results(&[false, false, false, false, true, true, true, true, true, false]),
    ];
    let q = |s: &str| format!("{s:?}");
    let manifest = format!(
        r#"
[workflow]
name = "rq2"

[[stage]]
id = "original"
kind = "results"
text = {}

{}
{}
[[stage]]
id = "clusters"
kind = "files"
path = "clusters"

[[stage]]
id = "compare"
kind = "compare"
original = "original.results"
reference = ["h0.results", "h1.results", "h2.results"]
runs = ["r0.results", "r1.results", "r2.results"]
clusters = "clusters.clusters"
"#,
        q(&original),
        hudd.iter().enumerate().map(|(i, t)| format!("[[stage]]\nid = \"h{i}\"\nkind = \"results\"\nseed = {i}\ntext = {}\n", q(t))).collect::<String>(),
        random.iter().enumerate().map(|(i, t)| format!("[[stage]]\nid = \"r{i}\"\nkind = \"results\"\nmatrix = {{ strategy = [\"random\"] }}\nseed = {i}\ntext = {}\n", q(t))).collect::<String>(),
    );
    let ws = crate::support::Ws::new();
    ws.write("clusters/clusters.csv", "image,cluster,distance_to_medoid\nimg-0,1,0\nimg-1,1,0\nimg-2,2,0\nimg-3,2,0\n");
    let (w, r) = run(&ws, &manifest);
    let summary = json(&ws, &w, &r, "compare", "summary");
    assert_eq!(summary["metric"], "accuracy");
    assert_eq!(summary["original"], 0.6);
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
    // The same tables as Parquet.
    let parquet = ws.store().output_path(&r.keys[w.stage_index("compare").unwrap()], "parquet").unwrap();
    use polars::prelude::SerReader;
    let runs = polars::prelude::ParquetReader::new(std::fs::File::open(parquet.join("runs.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(runs.height(), 6);
    assert_eq!(runs.get_column_names(), ["strategy", "stage", "score", "fixed", "broken"]);
    let rcc = text(&ws, &w, &r, "compare", "rcc");
    assert!(rcc.contains("hudd,1,2,0,1\n") && rcc.contains("hudd,2,2,0,0.6666666666666666\n"), "{rcc}");
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
    let expected = summary["chance"]["expected_by_chance"].as_f64().unwrap();
    assert!((0.0..3.0).contains(&expected), "{summary}");
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
