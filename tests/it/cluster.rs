//! Clustering against scipy (linkage + fcluster), scikit-learn (silhouette) and kneed (knees): numbers from
//! tests/fixtures/cluster_ref.py, committed as tests/fixtures/cluster_ref.json.

use hudd::cluster::{self, Linkage, Matrix, knee};
use proptest::prelude::*;
use serde_json::Value;

fn reference() -> Value {
    let path = format!("{}/tests/fixtures/cluster_ref.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn points(case: &Value) -> (Vec<f32>, usize, usize) {
    let rows: Vec<Vec<f64>> = case["x"].as_array().unwrap().iter().map(floats).collect();
    let (n, d) = (rows.len(), rows[0].len());
    (rows.iter().flatten().map(|&v| v as f32).collect(), n, d)
}

fn matrix(case: &Value) -> Matrix {
    let rows: Vec<Vec<f64>> = case["distances"].as_array().unwrap().iter().map(floats).collect();
    Matrix::from_shape_vec((rows.len(), rows.len()), rows.concat()).unwrap()
}

/// scipy's labels (1-based, arbitrary order) in hudd's canonical order.
fn scipy_labels(v: &Value) -> Vec<usize> {
    cluster::canonical(&v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect::<Vec<_>>())
}

#[test]
fn distances_through_matrix_products_match_scipys_pdist() {
    for case in reference()["cases"].as_array().unwrap() {
        let (x, n, d) = points(case);
        let got = cluster::distances_of(&x, n, d);
        let want = matrix(case);
        let scale = cluster::max_distance(&want);
        let worst = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5 * scale, "{}: worst difference {worst} at scale {scale}", case["name"]);
        assert!((0..n).all(|i| got[[i, i]] == 0.0));
    }
}

#[test]
fn distances_read_in_column_chunks_equal_the_exact_ones() {
    // 5,000 columns: three chunks of at most 2,048.
    let (n, d) = (5, 5000);
    let x: Vec<f32> = (0..n * d).map(|i| ((i * 7919) % 101) as f32 / 10.0).collect();
    let mut calls = 0;
    let chunked = cluster::distances::<()>(n, d, |start, width| {
        calls += 1;
        Ok((0..n).flat_map(|i| x[i * d + start..i * d + start + width].iter().copied()).collect())
    })
    .unwrap();
    assert_eq!(calls, 3);
    for i in 0..n {
        for j in 0..n {
            let exact = (0..d).map(|c| (f64::from(x[i * d + c]) - f64::from(x[j * d + c])).powi(2)).sum::<f64>().sqrt();
            assert!(
                (chunked[[i, j]] - exact).abs() < 1e-4 * (1.0 + exact),
                "{i},{j}: {} against {exact}",
                chunked[[i, j]]
            );
        }
    }
}

#[test]
fn every_linkage_gives_scipys_partitions() {
    for case in reference()["cases"].as_array().unwrap() {
        let m = matrix(case);
        for (name, linkage) in [
            ("ward", Linkage::Ward),
            ("average", Linkage::Average),
            ("complete", Linkage::Complete),
            ("single", Linkage::Single),
        ] {
            let dendrogram = cluster::dendrogram(&m, linkage);
            for (k, labels) in case["direct"][name].as_object().unwrap() {
                let got = cluster::cut(&dendrogram, k.parse().unwrap());
                assert_eq!(got, scipy_labels(labels), "{} {name} k={k}", case["name"]);
            }
        }
    }
}

#[test]
fn hudds_mode_gives_scipys_partitions_of_the_normalised_rows() {
    for case in reference()["cases"].as_array().unwrap() {
        let space = cluster::hudd_space(&matrix(case));
        let dendrogram = cluster::dendrogram(&space, Linkage::Ward);
        for (k, labels) in case["hudd"].as_object().unwrap() {
            assert_eq!(cluster::cut(&dendrogram, k.parse().unwrap()), scipy_labels(labels), "{} k={k}", case["name"]);
        }
    }
}

#[test]
fn wicd_and_silhouette_match_the_reference_and_the_incremental_sweep_matches_both() {
    for case in reference()["cases"].as_array().unwrap() {
        let m = matrix(case);
        let dendrogram = cluster::dendrogram(&m, Linkage::Ward);
        let sweep = cluster::sweep(&dendrogram, 10, &m, &m);
        for (k, labels) in case["direct"]["ward"].as_object().unwrap() {
            let labels = scipy_labels(labels);
            let k: usize = k.parse().unwrap();
            let (wicd, silhouette) =
                (case["wicd"][k.to_string()].as_f64().unwrap(), case["silhouette"][k.to_string()].as_f64().unwrap());
            let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * (1.0 + b.abs());
            assert!(close(cluster::wicd(&m, &labels), wicd), "{} k={k}", case["name"]);
            assert!(close(cluster::silhouette(&m, &labels), silhouette), "{} k={k}", case["name"]);
            let i = sweep.ks.iter().position(|&x| x == k).unwrap();
            assert!(close(sweep.wicd[i], wicd), "{} k={k}: sweep {} against {wicd}", case["name"], sweep.wicd[i]);
            assert!(
                close(sweep.silhouette[i], silhouette),
                "{} k={k}: sweep {} against {silhouette}",
                case["name"],
                sweep.silhouette[i]
            );
        }
    }
}

#[test]
fn knees_match_kneed() {
    let knees = reference()["knees"].as_array().unwrap().clone();
    for curve in knees.iter().filter(|c| c.get("knee").is_some()) {
        let (x, y) = (floats(&curve["x"]), floats(&curve["y"]));
        let got = knee::kneedle(&x, &y, 1.0).map(|i| x[i]);
        assert_eq!(got, curve["knee"].as_f64(), "{}", curve["name"]);
    }
    // The WICD curve's gradient, computed here, gives kneed's knee.
    let wicd = knees.iter().find(|c| c["name"] == "wicd").unwrap();
    let (ks, w) = (floats(&wicd["x"]), floats(&wicd["wicd"]));
    let gradient = knee::gradient_o4(&w, 4.0).unwrap();
    let reference = knees.iter().find(|c| c["name"] == "wicd-gradient").unwrap();
    assert_eq!(gradient.len(), ks.len());
    for (a, b) in gradient.iter().zip(floats(&reference["y"])) {
        assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()));
    }
    let got = knee::kneedle(&ks, &gradient, 1.0).map(|i| ks[i]);
    assert_eq!(got, reference["knee"].as_f64());
}

/// The fixture's matrix: exact distances between its points, or a committed quickstart matrix.
fn k_rule_matrix(case: &Value) -> Matrix {
    if let Some(file) = case["file"].as_str() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file);
        let mut reader = hudd::npy::NpyReader::<f32>::open(&path).unwrap();
        let n = reader.rows();
        let values = reader.read_all().unwrap();
        return Matrix::from_shape_fn((n, n), |(i, j)| f64::from(values[i * n + j]));
    }
    let x: Vec<Vec<f64>> = case["x"].as_array().unwrap().iter().map(floats).collect();
    Matrix::from_shape_fn((x.len(), x.len()), |(i, j)| {
        x[i].iter().zip(&x[j]).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt()
    })
}

#[test]
fn hudds_k_rule_picks_the_original_toolsets_k_and_partition() {
    // tests/fixtures/k_rule_ref.py runs the original procedure (numpy, scipy, kneed), including on two layers of a
    // real quickstart run, where hudd's earlier variant picked 14 clusters and the original picks 10 and 11.
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/tests/fixtures/k_rule_ref.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap();
    let params: hudd::stages::cluster::ClusterParams = toml::from_str("").unwrap();
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let raw = k_rule_matrix(case);
        let (labels, sweep, rule) =
            cluster::pipeline::cluster(&raw, &params.pipeline(), cluster::default_max_k(raw.nrows()));
        let ks: Vec<usize> = case["ks"].as_array().unwrap().iter().map(|k| k.as_u64().unwrap() as usize).collect();
        assert_eq!(sweep.ks, ks, "{name}");
        for (i, (a, b)) in sweep.wicd.iter().zip(floats(&case["curve"])).enumerate() {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{name}: WICD at k = {}: {a} against {b}", ks[i]);
        }
        let want = case["knee"].as_u64().unwrap() as usize;
        assert_eq!(cluster::members(&labels).len(), want, "{name}: {rule}");
        assert!(rule.contains("knee"), "{name}: {rule}");
        assert_eq!(labels, scipy_labels(&case["partition"]), "{name}");
    }
}

fn arbitrary_points() -> impl Strategy<Value = (Vec<f32>, usize)> {
    (3usize..25).prop_flat_map(|n| (proptest::collection::vec(-10.0f32..10.0, n * 3), Just(n)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn cuts_are_canonical_partitions_and_deterministic((x, n) in arbitrary_points(), k in 1usize..12, ward in any::<bool>()) {
        let m = cluster::distances_of(&x, n, 3);
        let linkage = if ward { Linkage::Ward } else { Linkage::Average };
        let labels = cluster::cut(&cluster::dendrogram(&m, linkage), k);
        prop_assert_eq!(labels.len(), n);
        let groups = cluster::members(&labels);
        prop_assert_eq!(groups.len(), k.min(n));
        // Every point in exactly one non-empty cluster, sizes descending.
        prop_assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), n);
        prop_assert!(groups.iter().all(|g| !g.is_empty()));
        prop_assert!(groups.windows(2).all(|w| w[0].len() > w[1].len() || (w[0].len() == w[1].len() && w[0][0] < w[1][0])));
        let again = cluster::cut(&cluster::dendrogram(&cluster::distances_of(&x, n, 3), linkage), k);
        prop_assert_eq!(labels, again);
    }
}

// --- the `cluster` stage ---

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

const PIPELINE: &str = r#"
[workflow]
name = "cl"
seed = 4

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
epochs = 2
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

[[stage]]
id = "cluster"
kind = "cluster"
heatmaps = "heatmaps.heatmaps"
images = "data.dataset"
"#;

fn csv_column(text: &str, column: usize) -> Vec<String> {
    text.lines().skip(1).map(|l| l.split(',').nth(column).unwrap().to_string()).collect()
}

#[test]
fn the_cluster_stage_partitions_the_images_and_writes_what_an_engineer_inspects() {
    let manifest = PIPELINE.replace("TINY", &fixture("tiny.toml"));
    let ws = crate::support::Ws::new();
    let (w, report) = ws.run_builtin(&manifest);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let dir = ws.store().output_path(&report.keys[w.stage_index("cluster").unwrap()], "clusters").unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let k = summary["clusters"].as_u64().unwrap() as usize;
    assert!((2..=20).contains(&k), "{summary}");
    // The input layer is clustered but never selected; pass-through layers are not clustered.
    let layer = summary["layer"].as_str().unwrap();
    assert_ne!(layer, "features.0", "{summary}");
    let clustered: Vec<&str> =
        summary["layers"].as_array().unwrap().iter().map(|l| l["layer"].as_str().unwrap()).collect();
    assert!(clustered.contains(&"features.0") && !clustered.contains(&"features.1"), "{clustered:?}");
    // A partition of the 40 images, ids 1..=k by decreasing size.
    let table = std::fs::read_to_string(dir.join("clusters.csv")).unwrap();
    let ids: Vec<usize> = csv_column(&table, 1).iter().map(|v| v.parse().unwrap()).collect();
    assert_eq!(ids.len(), 40);
    let sizes: Vec<usize> = (1..=k).map(|c| ids.iter().filter(|&&i| i == c).count()).collect();
    assert!(sizes.iter().all(|&s| s > 0) && sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    let listed: Vec<usize> = csv_column(&std::fs::read_to_string(dir.join("summary.csv")).unwrap(), 1)
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(listed, sizes);
    for c in 1..=k {
        let rcc = dir.join("rcc");
        assert_eq!(std::fs::read_dir(rcc.join(c.to_string())).unwrap().count(), sizes[c - 1]);
        let gif = std::fs::read(rcc.join(format!("{c}.gif"))).unwrap();
        assert!(gif.starts_with(b"GIF89a"));
        image::open(rcc.join(format!("{c}-sheet.png"))).unwrap();
        let overlay = image::open(rcc.join(format!("{c}-heatmap.png"))).unwrap();
        assert_eq!(overlay.width(), 128, "32-pixel images enlarged 4 times");
    }
    for l in &clustered {
        let layer_dir = dir.join("layers").join(l);
        let r = hudd::npy::NpyReader::<f32>::open(&layer_dir.join("distances.npy")).unwrap();
        assert_eq!(r.shape, [40, 40]);
        let curve = std::fs::read_to_string(layer_dir.join("curve.csv")).unwrap();
        assert_eq!(curve.lines().count(), 1 + 19, "k from 2 to 20");
        assert!(std::fs::read_to_string(layer_dir.join("knee.svg")).unwrap().starts_with("<svg"));
    }
    // The same manifest in another workspace: the same clusters.
    let other = crate::support::Ws::new();
    let (w2, report2) = other.run_builtin(&manifest);
    let dir2 = other.store().output_path(&report2.keys[w2.stage_index("cluster").unwrap()], "clusters").unwrap();
    assert_eq!(table, std::fs::read_to_string(dir2.join("clusters.csv")).unwrap());
}

/// A workflow clustering hand-made heatmaps (copied into the store by the test-only `files` stage) of 12 simulated
/// images: `layers` maps a layer name to one heatmap row per image.
fn crafted(
    ws: &crate::support::Ws,
    images: usize,
    layers: &[(&str, Vec<Vec<f32>>)],
    extra: &str,
) -> (hudd::engine::manifest::Workflow, hudd::engine::RunReport) {
    let dir = ws.path().join("crafted");
    std::fs::create_dir_all(&dir).unwrap();
    let ids: Vec<String> = (0..images).map(|i| format!("train-{i:06}")).collect();
    let index: String = std::iter::once("row,image".to_string())
        .chain(ids.iter().enumerate().map(|(i, id)| format!("{i},{id}")))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("index.csv"), index + "\n").unwrap();
    let mut conservation = String::from("layer,rule,worst_relative_deviation\n");
    let mut rules = serde_json::Map::new();
    for (name, rows) in layers {
        let flat: Vec<f32> = rows.concat();
        hudd::npy::write(&dir.join(format!("{name}.npy")), &[rows.len(), rows[0].len()], &flat).unwrap();
        conservation.push_str(&format!("{name},zero,\n"));
        rules.insert(name.to_string(), serde_json::json!({ "rule": "zero" }));
    }
    std::fs::write(dir.join("conservation.csv"), conservation).unwrap();
    std::fs::write(dir.join("rules.json"), serde_json::Value::Object(rules).to_string()).unwrap();
    let manifest = format!(
        r#"
[workflow]
name = "crafted"
seed = 1

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 16
splits = {{ train = {{ count = {images} }} }}

[[stage]]
id = "heatmaps"
kind = "files"
path = "crafted"

[[stage]]
id = "cluster"
kind = "cluster"
heatmaps = "heatmaps.heatmaps"
images = "data.dataset"
{extra}
"#
    );
    let path = ws.write("crafted.toml", &manifest);
    let registry = hudd::stages::registry().with(crate::support::Files);
    let w = hudd::engine::manifest::load(&path, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
    let report =
        hudd::engine::run(&ws.store(), &w, &registry, &Default::default(), &hudd::engine::progress::Reporter::hidden())
            .unwrap();
    (w, report)
}

/// Three tight groups of four points in 6 dimensions.
fn three_groups() -> Vec<Vec<f32>> {
    (0..12).map(|i| (0..6).map(|d| if d == i % 3 { 10.0 } else { 0.0 } + (i * 7 + d) as f32 * 0.01).collect()).collect()
}

fn failure(w: &hudd::engine::manifest::Workflow, report: &hudd::engine::RunReport, stage: &str) -> String {
    match &report.outcomes[w.stage_index(stage).unwrap()] {
        hudd::engine::Outcome::Failed { error, .. } => error.clone(),
        other => panic!("{stage} did not fail: {other:?}"),
    }
}

#[test]
fn without_a_knee_the_stage_falls_back_to_the_silhouette_and_says_so() {
    let ws = crate::support::Ws::new();
    let noise: Vec<Vec<f32>> = (0..12).map(|i| vec![i as f32, 0.5]).collect();
    // k = 2..5: four points, too few for the 4th-order gradient, so no knee.
    let (w, report) = crafted(&ws, 12, &[("input", noise), ("fc", three_groups())], "max_clusters = 5");
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let dir = ws.store().output_path(&report.keys[w.stage_index("cluster").unwrap()], "clusters").unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    assert_eq!(summary["layer"], "fc");
    assert_eq!(summary["clusters"], 3);
    assert!(summary["k_rule"].as_str().unwrap().contains("no knee in the WICD curve over k = 2..5"), "{summary}");
    // Image i is in group i % 3: the groups are the clusters.
    let table = std::fs::read_to_string(dir.join("clusters.csv")).unwrap();
    let ids = csv_column(&table, 1);
    assert!((0..12).all(|i| ids[i] == ids[i % 3]) && ids[0] != ids[1] && ids[1] != ids[2], "{table}");
}

#[test]
fn a_fixed_k_with_average_linkage_in_direct_mode_is_honoured() {
    let ws = crate::support::Ws::new();
    let (w, report) = crafted(
        &ws,
        12,
        &[("input", three_groups()), ("fc", three_groups())],
        "mode = \"direct\"\nlinkage = \"average\"\nchoose_k = \"fixed\"\nk = 2\n",
    );
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let dir = ws.store().output_path(&report.keys[w.stage_index("cluster").unwrap()], "clusters").unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    assert_eq!(
        (summary["clusters"].as_u64(), summary["mode"].as_str(), summary["linkage"].as_str()),
        (Some(2), Some("direct"), Some("average"))
    );
}

#[test]
fn two_error_images_give_an_empty_clustering() {
    let ws = crate::support::Ws::new();
    let (w, report) = crafted(&ws, 2, &[("input", vec![vec![1.0, 2.0], vec![3.0, 4.0]])], "");
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let dir = ws.store().output_path(&report.keys[w.stage_index("cluster").unwrap()], "clusters").unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    assert_eq!(summary["empty"], "no root-cause clusters: only 2 error-inducing images");
    assert_eq!(summary["clusters"], 0);
    assert_eq!(std::fs::read_to_string(dir.join("clusters.csv")).unwrap(), "image,cluster,distance_to_medoid\n");
}

#[test]
fn identical_or_non_finite_heatmaps_are_refused_with_the_layer_and_image() {
    let ws = crate::support::Ws::new();
    let same = vec![vec![1.0f32, 2.0, 3.0]; 5];
    let (w, report) = crafted(&ws, 5, &[("input", same.clone()), ("fc", same)], "");
    assert_eq!(report.exit_code(), 2, "bad input");
    let error = failure(&w, &report, "cluster");
    assert!(error.contains("all 5 images have identical heatmaps in every clustered layer"), "{error}");

    let ws = crate::support::Ws::new();
    let mut rows = three_groups();
    rows[7][2] = f32::NAN;
    let (w, report) = crafted(&ws, 12, &[("input", three_groups()), ("fc", rows)], "");
    let error = failure(&w, &report, "cluster");
    assert!(error.contains("layer `fc`: the heatmap of image train-000007 holds NaN (at element 2)"), "{error}");
    let key = &report.keys[w.stage_index("cluster").unwrap()];
    assert!(ws.store().output_path(key, "clusters").map_or(true, |p| !p.exists()), "nothing half-written in the store");
}

#[test]
fn unknown_layers_and_a_fixed_rule_without_k_are_named() {
    let ws = crate::support::Ws::new();
    let (w, report) =
        crafted(&ws, 12, &[("input", three_groups()), ("fc", three_groups())], "layers = [\"fc\", \"conv9\"]\n");
    let error = failure(&w, &report, "cluster");
    assert!(error.contains("layers name `conv9`, which has no heatmaps (layers: input, fc)"), "{error}");
    let path = ws.write("bad.toml", "[workflow]\nname = \"b\"\n[[stage]]\nid = \"c\"\nkind = \"cluster\"\nheatmaps = \"x.y\"\nimages = \"x.z\"\nchoose_k = \"fixed\"\n");
    let err = hudd::engine::manifest::load(&path, &[], &hudd::stages::registry()).unwrap_err().to_string();
    assert!(err.contains("k") && err.contains("is required when choose_k = \"fixed\""), "{err}");
}

/// Points in 2-D around the given centres, nearly Gaussian (a sum of four uniforms per coordinate, so no
/// direction is favoured), deterministic.
fn blobs(centres: &[(f32, f32)], per: usize, spread: f32) -> (Vec<f32>, usize) {
    let mut x = 12345u64;
    let mut uniform = move || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut noise = move || (0..4).map(|_| uniform()).sum::<f32>() / 2.0;
    let points: Vec<f32> = centres
        .iter()
        .flat_map(|&(a, b)| (0..per).flat_map(|_| [a + spread * noise(), b + spread * noise()]).collect::<Vec<_>>())
        .collect();
    (points, centres.len() * per)
}

#[test]
fn separated_clusters_are_stable_and_a_cut_through_them_is_not() {
    let params = |k: usize| cluster::Pipeline {
        mode: cluster::Mode::Direct,
        k: cluster::KRule::Fixed(k),
        ..toml::from_str::<hudd::stages::cluster::ClusterParams>("").unwrap().pipeline()
    };
    let stability = |points: &[f32], n: usize, k: usize, seed: u64| {
        let m = cluster::distances_of(points, n, 2);
        let p = params(k);
        let (labels, _, _) = cluster::pipeline::cluster(&m, &p, 10);
        cluster::stability(&labels, 40, 0.5, seed, |rows| {
            let sub = m.select(ndarray::Axis(0), rows).select(ndarray::Axis(1), rows);
            cluster::pipeline::cluster(&sub, &p, 10).0
        })
    };
    // Three tight groups far apart: every subset finds them again.
    let (points, n) = blobs(&[(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)], 20, 1.0);
    let planted = stability(&points, n, 3, 7);
    assert!(planted.iter().all(|s| s.unwrap() > 0.99), "{planted:?}");
    // The same groups cut in six: each group's halves are an accident of the cut, and move from subset to subset.
    let noise = stability(&points, n, 6, 7);
    let mean = noise.iter().map(|s| s.unwrap()).sum::<f64>() / noise.len() as f64;
    assert!(mean < 0.8, "{noise:?}");
    assert!(noise.iter().filter(|s| s.unwrap() < 0.7).count() >= 2, "{noise:?}");
    // Seeded: the same seed gives the same figures.
    assert_eq!(stability(&points, n, 6, 7), noise);
}

#[test]
fn recovery_scores_match_scikit_learn() {
    // Numbers from tests/fixtures/recovery_ref.py.
    let path = format!("{}/tests/fixtures/recovery_ref.json", env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let labels = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect::<Vec<_>>();
    for case in &cases {
        let r = cluster::score::recovery(&labels(&case["clusters"]), &labels(&case["causes"]), Default::default());
        for (what, got) in [("purity", r.purity), ("nmi", r.nmi), ("ari", r.ari)] {
            let want = case[what].as_f64().unwrap();
            assert!((got - want).abs() < 1e-9, "{} {what}: {got} against {want}", case["name"]);
        }
    }
    // Coverage: a perfect partition covers every cause; one cluster covers one of four.
    let perfect = &cases[0];
    assert_eq!(
        cluster::score::recovery(&labels(&perfect["clusters"]), &labels(&perfect["causes"]), Default::default())
            .coverage,
        1.0
    );
    let one = cases.iter().find(|c| c["name"] == "one-cluster").unwrap();
    assert_eq!(
        cluster::score::recovery(&labels(&one["clusters"]), &labels(&one["causes"]), Default::default()).coverage,
        0.25
    );
    // The random floor of a perfect partition sits far below it, and follows its seed.
    let (c, k) = (labels(&perfect["clusters"]), labels(&perfect["causes"]));
    let floor = cluster::score::random_floor(&c, &k, Default::default(), 200, 1);
    assert!(floor[0].1 < 0.5 && floor[2].1 < 0.1 && floor[3].1 < 0.05, "{floor:?}");
    assert_eq!(cluster::score::random_floor(&c, &k, Default::default(), 200, 1), floor);
    // Cause 2's images all left alone (cluster 0, unassigned): that block is scored (purity stays 1) but covers
    // nothing; cause 3 is nominal, so coverage asks for causes 0-2 only.
    let (clusters, causes) = ([1, 1, 2, 2, 0, 0, 3, 3], [0, 0, 1, 1, 2, 2, 3, 3]);
    let scope = cluster::score::Scope { unassigned: Some(0), nominal: &[3] };
    let r = cluster::score::recovery(&clusters, &causes, scope);
    assert_eq!((r.purity, r.coverage), (1.0, 2.0 / 3.0));
    assert_eq!((r.per_cause[2].0, r.per_cause[2].2), (2, 0.0), "no real cluster holds cause 2");
    let everything_alone = cluster::score::recovery(&[0; 8], &causes, scope);
    assert_eq!((everything_alone.purity, everything_alone.coverage), (0.25, 0.0));
}

#[test]
fn kmeans_dbscan_and_hdbscan_give_scikit_learns_partitions_and_kmeans_sees_the_same_on_embedded_distances() {
    // Numbers from tests/fixtures/partition_ref.py.
    let path = format!("{}/tests/fixtures/partition_ref.json", env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in &cases {
        let rows: Vec<Vec<f64>> = case["x"].as_array().unwrap().iter().map(floats).collect();
        let (n, d) = (rows.len(), rows[0].len());
        let x = ndarray::Array2::from_shape_vec((n, d), rows.concat()).unwrap();
        let m = Matrix::from_shape_fn((n, n), |(i, j)| {
            x.row(i).iter().zip(x.row(j).iter()).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt()
        });
        let embedded = cluster::embed(&m);
        for (k, labels) in case["kmeans"].as_object().unwrap() {
            let want = scipy_labels(labels);
            assert_eq!(cluster::kmeans(&x, k.parse().unwrap()), want, "{} k={k}", case["name"]);
            assert_eq!(cluster::kmeans(&embedded, k.parse().unwrap()), want, "{} k={k}, embedded", case["name"]);
        }
        let got = cluster::dbscan(&m, case["eps"].as_f64().unwrap(), case["min_samples"].as_u64().unwrap() as usize);
        let want: Vec<Option<usize>> = case["dbscan"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_i64().filter(|&l| l >= 0).map(|l| l as usize))
            .collect();
        assert_eq!(got, want, "{} dbscan", case["name"]);
        // HDBSCAN (min_cluster_size 5, min_samples its default, 5), the same partition and noise up to numbering.
        let first_seen = |labels: Vec<Option<usize>>| {
            let mut number = std::collections::HashMap::new();
            labels
                .into_iter()
                .map(|l| {
                    l.map(|l| {
                        let next = number.len();
                        *number.entry(l).or_insert(next)
                    })
                })
                .collect::<Vec<_>>()
        };
        let want: Vec<Option<usize>> = case["hdbscan"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_i64().filter(|&l| l >= 0).map(|l| l as usize))
            .collect();
        let (got, want) = (cluster::hdbscan(&m, 5, 5), first_seen(want));
        let differ: Vec<usize> = (0..n).filter(|&i| got[i] != want[i]).collect();
        // In "loose", point 52's mutual reachability to both clusters equals its own core distance (3.854): a tie
        // that scikit-learn breaks one way and the crate the other. Everything else, noise included, agrees.
        let tie: &[usize] = if case["name"] == "loose" { &[52] } else { &[] };
        assert_eq!(differ, tie, "{} hdbscan: {got:?}", case["name"]);
        // DBSCAN's radius at the knee of the k-distance curve, as kneed finds it.
        let eps = cluster::knee_eps(&m, case["min_samples"].as_u64().unwrap() as usize).unwrap();
        assert!((eps - case["knee_eps"].as_f64().unwrap()).abs() < 1e-12, "{} knee eps {eps}", case["name"]);
        // PCA from the distances alone: the distances between the first two principal component scores.
        let pca = cluster::pca_distances(&m, 2);
        let reference: Vec<Vec<f64>> = case["pca2"].as_array().unwrap().iter().map(floats).collect();
        for i in 0..n {
            for j in 0..n {
                assert!((pca[[i, j]] - reference[i][j]).abs() < 1e-8, "{} pca ({i}, {j})", case["name"]);
            }
        }
    }
}

/// Three tight groups of six points in 6 dimensions, then two points far from everything.
fn three_groups_and_outliers() -> Vec<Vec<f32>> {
    let mut rows: Vec<Vec<f32>> = (0..18)
        .map(|i| (0..6).map(|d| if d == i % 3 { 10.0 } else { 0.0 } + (i * 7 + d) as f32 * 0.01).collect())
        .collect();
    rows.push(vec![40.0, -30.0, 0.0, 0.0, 0.0, 0.0]);
    rows.push(vec![0.0, 0.0, 0.0, -40.0, 30.0, 0.0]);
    rows
}

#[test]
fn density_clusterings_find_the_groups_and_leave_the_outliers_alone() {
    let layers = [("input", three_groups_and_outliers()), ("fc", three_groups_and_outliers())];
    for (extra, rule) in [
        (
            "algorithm = \"hdbscan\"\nmin_cluster_size = 4\nmin_samples = 3\n",
            "HDBSCAN (min_cluster_size 4, min_samples 3): 3 clusters, 2 of 20 images noise",
        ),
        ("algorithm = \"dbscan\"\nmin_samples = 3\n", "eps at the knee of the k-distance curve"),
        (
            "algorithm = \"dbscan\"\neps = 1.0\nmin_samples = 3\n",
            "DBSCAN (eps 1.0000, min_samples 3): 3 clusters, 2 of 20 images noise",
        ),
    ] {
        let ws = crate::support::Ws::new();
        let (w, report) =
            crafted(&ws, 20, &layers, &format!("mode = \"direct\"\nselect_layer = \"silhouette\"\n{extra}"));
        assert_eq!(report.exit_code(), 0, "{extra}: {}", crate::support::failures(&report));
        let dir = ws.store().output_path(&report.keys[w.stage_index("cluster").unwrap()], "clusters").unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
        assert!(summary["k_rule"].as_str().unwrap().contains(rule), "{extra}: {summary}");
        // The groups are clusters 1..3 (six images each); each outlier is a cluster of its own.
        let ids = csv_column(&std::fs::read_to_string(dir.join("clusters.csv")).unwrap(), 1);
        assert!((0..18).all(|i| ids[i] == ids[i % 3]) && ids[0] != ids[1] && ids[1] != ids[2], "{extra}: {ids:?}");
        assert!(ids[18] != ids[19] && (0..18).all(|i| ids[i] != ids[18] && ids[i] != ids[19]), "{extra}: {ids:?}");
    }
    // A radius of zero, and HDBSCAN's smallest cluster of one, are refused before anything runs.
    let ws = crate::support::Ws::new();
    let path = ws.write(
        "bad.toml",
        "[workflow]\nname = \"b\"\n[[stage]]\nid = \"c\"\nkind = \"cluster\"\nheatmaps = \"x.y\"\nimages = \"x.z\"\nalgorithm = \"hdbscan\"\nmin_cluster_size = 1\neps = 0.0\n",
    );
    let err = hudd::engine::manifest::load(&path, &[], &hudd::stages::registry()).unwrap_err().to_string();
    assert!(err.contains("invalid `min_cluster_size`: must be at least 2, got 1"), "{err}");
    assert!(err.contains("invalid `eps`: is only read with algorithm = \"dbscan\""), "{err}");
}

#[test]
fn the_spectral_embedding_is_scikit_learns() {
    // Numbers from tests/fixtures/spectral_ref.py (SpectralEmbedding, nearest-neighbour affinity).
    let path = format!("{}/tests/fixtures/spectral_ref.json", env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in &cases {
        let rows: Vec<Vec<f64>> = serde_json::from_value(case["x"].clone()).unwrap();
        let want: Vec<Vec<f64>> = serde_json::from_value(case["embedding"].clone()).unwrap();
        let (n, d) = (rows.len(), rows[0].len());
        let values: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let spectral = cluster::spectral::Spectral {
            neighbours: case["neighbours"].as_u64().unwrap() as usize,
            dimensions: case["components"].as_u64().unwrap() as usize,
        };
        let embedded = cluster::spectral::embedding(&cluster::distances_of(&values, n, d), spectral);
        let got = embedded.coordinates;
        let eigenvalues: Vec<f64> = serde_json::from_value(case["eigenvalues"].clone()).unwrap();
        for (c, (g, w)) in embedded.eigenvalues.iter().zip(&eigenvalues).enumerate() {
            assert!((g - w).abs() < 1e-9, "{} eigenvalue {c}: {g} against {w}", case["name"]);
        }
        assert_eq!(embedded.eigenvalues.len(), eigenvalues.len());
        assert_eq!(got.dim(), (n, spectral.dimensions), "{}", case["name"]);
        for (i, row) in want.iter().enumerate() {
            for (c, &w) in row.iter().enumerate() {
                assert!((got[[i, c]] - w).abs() < 1e-6, "{} [{i}, {c}]: {} against {w}", case["name"], got[[i, c]]);
            }
        }
    }
}

#[test]
fn principal_component_scores_are_scikit_learns() {
    // Numbers from tests/fixtures/pca_ref.py (PCA with the full SVD; components of no variance dropped).
    let path = format!("{}/tests/fixtures/pca_ref.json", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let (n, d) = (case["n"].as_u64().unwrap() as usize, case["d"].as_u64().unwrap() as usize);
        let x: Vec<f32> = case["x"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let x = ndarray::Array2::from_shape_vec((n, d), x).unwrap();
        let want: Vec<Vec<f64>> = serde_json::from_value(case["scores"].clone()).unwrap();
        let got = cluster::pca_scores(x.view(), case["components"].as_u64().unwrap() as usize);
        assert_eq!(got.dim(), (n, want[0].len()), "{}: the components kept", case["name"]);
        for (c, column) in got.columns().into_iter().enumerate() {
            // An eigenvector's sign is arbitrary: the reference's largest absolute score is positive.
            let top = column.iter().copied().fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
            for (i, (g, row)) in column.iter().zip(&want).enumerate() {
                let (g, w) = (top.signum() * g, row[c]);
                assert!((g - w).abs() < 1e-9 * (1.0 + w.abs()), "{} [{i}, {c}]: {g} against {w}", case["name"]);
            }
        }
    }
}

#[test]
fn principal_components_give_the_same_bytes_at_any_thread_count() {
    // libtorch's thread count must not reach the classical scaling's bytes (its eigendecomposition runs on one MKL
    // thread: src/main.rs, .cargo/config.toml).
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    // 722 images (the signs benchmark's failures, where a run with stages side by side gave other last digits than
    // one at a time): the n×n means are then large enough for libtorch to split them by thread.
    let small: Vec<f32> = (0..722 * 40).map(|_| rand::Rng::random::<f32>(&mut rng)).collect();
    let m = cluster::distances_of(&small, 722, 40);
    let at = |threads: usize| hudd::runtime::with_threads(threads, || cluster::pca_distances(&m, 20));
    let one = at(1);
    assert!(at(2).iter().zip(one.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "722 images: 2 threads differ");
    // 800 images, also through the vectors' route.
    let values: Vec<f32> = (0..800 * 40).map(|_| rand::Rng::random::<f32>(&mut rng)).collect();
    let m = cluster::distances_of(&values, 800, 40);
    let x = ndarray::Array2::from_shape_vec((800, 40), values).unwrap();
    let at = |threads: usize| {
        hudd::runtime::with_threads(threads, || (cluster::pca_distances(&m, 20), cluster::pca_scores(x.view(), 20)))
    };
    let one = at(1);
    for threads in [2, 3] {
        let other = at(threads);
        assert!(other.0.iter().zip(one.0.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads differ");
        assert!(other.1.iter().zip(one.1.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads differ");
    }
    // The vectors' route (their 40×40 scatter matrix, in f64) and the distances' (the 800×800 doubly centred one)
    // find the same components: the same distances between the images' scores, to the rounding of the distances
    // (whose Gram matrix is summed in f32: about 1e-7 of distances near 2.6 here).
    assert_eq!(one.1.dim(), (800, 20));
    let from_vectors = cluster::row_distances(one.1.view());
    let worst = from_vectors.iter().zip(one.0.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-6, "the two routes differ by {worst}");
}

#[test]
fn clustering_with_the_vectors_gives_the_partition_of_their_distances() {
    // The direct mode with PCA reads the vectors where it has them; the clusters are those of the distances alone.
    let (points, n) = blobs(&[(0.0, 0.0), (6.0, 0.0), (0.0, 6.0), (6.0, 6.0)], 30, 1.5);
    let wide: Vec<f32> = points.chunks(2).flat_map(|p| [p[0], p[1], p[0] - p[1], 0.5 * p[0]]).collect();
    let m = cluster::distances_of(&wide, n, 4);
    let x = ndarray::Array2::from_shape_vec((n, 4), wide).unwrap();
    let p = cluster::Pipeline {
        mode: cluster::Mode::Direct,
        pca: Some(2),
        ..toml::from_str::<hudd::stages::cluster::ClusterParams>("").unwrap().pipeline()
    };
    let alone = cluster::pipeline::cluster(&m, &p, 20);
    let with = cluster::pipeline::cluster(
        cluster::pipeline::Points { distances: cluster::pipeline::Distances::Of(&m), vectors: Some(x.view()) },
        &p,
        20,
    );
    assert_eq!(with.0, alone.0);
    assert_eq!((with.1.ks, with.2), (alone.1.ks, alone.2));
    assert!(cluster::members(&with.0).len() >= 2);
}

#[test]
fn the_stability_subsets_partition_is_the_full_pipelines_without_its_sweep() {
    // HUDD's space (the WICD curve on another matrix) and the direct one; the knee, its fallback and a fixed k.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(11);
    let centres: Vec<f32> = (0..6 * 8).map(|_| rand::Rng::random::<f32>(&mut rng) * 6.0).collect();
    let values: Vec<f32> =
        (0..120 * 8).map(|i| centres[(i / 8 % 6) * 8 + i % 8] + rand::Rng::random::<f32>(&mut rng)).collect();
    let m = cluster::distances_of(&values, 120, 8);
    let base = toml::from_str::<hudd::stages::cluster::ClusterParams>("").unwrap().pipeline();
    for mode in [cluster::Mode::Hudd, cluster::Mode::Direct] {
        for (k, max_k) in [(cluster::KRule::Knee, 60), (cluster::KRule::Knee, 3), (cluster::KRule::Fixed(5), 60)] {
            let p = cluster::Pipeline { mode, k, ..base };
            let (full, sweep, rule) = cluster::pipeline::cluster(&m, &p, max_k);
            assert_eq!(cluster::pipeline::labels(&m, &p, max_k), full, "{mode:?} {k:?} {max_k}: {rule}");
            // The WICD half of the sweep alone is the full sweep's WICD.
            if k == cluster::KRule::Knee && mode == cluster::Mode::Direct {
                let alone = cluster::wicd_sweep(&cluster::dendrogram(&m, p.linkage), max_k, &m);
                assert_eq!((alone.ks, alone.wicd), (sweep.ks.clone(), sweep.wicd.clone()));
                assert!(alone.silhouette.is_empty());
            }
        }
    }
}

fn clusterboot_reference() -> Value {
    let path = format!("{}/tests/fixtures/clusterboot_ref.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn usizes(v: &Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn clusterboot_stability_replays_scipys_subsets_and_reclusterings_to_the_same_jaccard_means() {
    // Subsets, Ward reclusterings and the stabilities from tests/fixtures/clusterboot_ref.py.
    let r = &clusterboot_reference()["stability"];
    let labels = usizes(&r["labels"]);
    let subsets: Vec<Vec<usize>> = serde_json::from_value(r["subsets"].clone()).unwrap();
    let reclustered: Vec<Vec<usize>> = serde_json::from_value(r["reclustered"].clone()).unwrap();
    let want: Vec<Option<f64>> = serde_json::from_value(r["stability"].clone()).unwrap();
    let got = cluster::stability::stability_of(&labels, &subsets, &reclustered);
    assert_eq!(got.len(), want.len(), "{got:?} against {want:?}");
    for (c, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g.unwrap() - w.unwrap()).abs() < 1e-12, "cluster {c}: {got:?} against {want:?}");
    }
    // The seeded function gives the same numbers from the same reclusterings of its own subsets.
    let n = subsets.len();
    let drawn = std::sync::Mutex::new(Vec::new());
    let seeded = cluster::stability(&labels, n, 0.5, 3, |subset| {
        drawn.lock().unwrap().push(subset.to_vec());
        subset.iter().map(|&i| labels[i]).collect()
    });
    assert!(seeded.iter().all(|s| *s == Some(1.0)), "reclustering each subset as it was gives 1: {seeded:?}");
    let drawn = drawn.into_inner().unwrap();
    assert!(drawn.iter().all(|s| s.len() == 30 && s.windows(2).all(|w| w[0] < w[1])), "subsets of half, sorted");
}

#[test]
fn the_random_floor_replays_numpys_permutations_to_the_same_means_and_95th_percentiles() {
    // Permutations and scores from tests/fixtures/clusterboot_ref.py (scikit-learn's NMI and ARI).
    let r = &clusterboot_reference()["floor"];
    let (clusters, causes) = (usizes(&r["clusters"]), usizes(&r["causes"]));
    let partitions: Vec<Vec<usize>> = serde_json::from_value(r["partitions"].clone()).unwrap();
    let mut next = 0;
    let floor = cluster::score::random_floor_with(&clusters, &causes, Default::default(), partitions.len(), |labels| {
        let (mut a, mut b) = (labels.to_vec(), partitions[next].clone());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "draw {next} is not a reordering of the clustering");
        labels.copy_from_slice(&partitions[next]);
        next += 1;
    });
    assert_eq!(next, partitions.len());
    for (k, name) in ["purity", "coverage", "nmi", "ari"].into_iter().enumerate() {
        let want: (f64, f64) = serde_json::from_value(r["floor"][name].clone()).unwrap();
        assert!(
            (floor[k].0 - want.0).abs() < 1e-12 && (floor[k].1 - want.1).abs() < 1e-12,
            "{name}: {:?} against {want:?}",
            floor[k]
        );
    }
}
