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
    Matrix { n: rows.len(), data: rows.concat() }
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
        let scale = want.max();
        let worst = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5 * scale, "{}: worst difference {worst} at scale {scale}", case["name"]);
        assert!((0..n).all(|i| got.get(i, i) == 0.0));
    }
}

#[test]
fn distances_read_in_column_chunks_equal_the_exact_ones() {
    // 1,500 columns: more than one chunk of 1,024.
    let (n, d) = (5, 1500);
    let x: Vec<f32> = (0..n * d).map(|i| ((i * 7919) % 101) as f32 / 10.0).collect();
    let mut calls = 0;
    let chunked = cluster::distances::<()>(n, d, |start, width| {
        calls += 1;
        Ok((0..n).flat_map(|i| x[i * d + start..i * d + start + width].iter().copied()).collect())
    })
    .unwrap();
    assert_eq!(calls, 2);
    for i in 0..n {
        for j in 0..n {
            let exact = (0..d).map(|c| (f64::from(x[i * d + c]) - f64::from(x[j * d + c])).powi(2)).sum::<f64>().sqrt();
            assert!((chunked.get(i, j) - exact).abs() < 1e-4 * (1.0 + exact), "{i},{j}: {} against {exact}", chunked.get(i, j));
        }
    }
}

#[test]
fn every_linkage_gives_scipys_partitions() {
    for case in reference()["cases"].as_array().unwrap() {
        let m = matrix(case);
        for (name, linkage) in [("ward", Linkage::Ward), ("average", Linkage::Average), ("complete", Linkage::Complete), ("single", Linkage::Single)] {
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
        let sweep = cluster::sweep(&m, &dendrogram, 10);
        for (k, labels) in case["direct"]["ward"].as_object().unwrap() {
            let labels = scipy_labels(labels);
            let k: usize = k.parse().unwrap();
            let (wicd, silhouette) = (case["wicd"][k.to_string()].as_f64().unwrap(), case["silhouette"][k.to_string()].as_f64().unwrap());
            let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * (1.0 + b.abs());
            assert!(close(cluster::wicd(&m, &labels), wicd), "{} k={k}", case["name"]);
            assert!(close(cluster::silhouette(&m, &labels), silhouette), "{} k={k}", case["name"]);
            let i = sweep.ks.iter().position(|&x| x == k).unwrap();
            assert!(close(sweep.wicd[i], wicd), "{} k={k}: sweep {} against {wicd}", case["name"], sweep.wicd[i]);
            assert!(close(sweep.silhouette[i], silhouette), "{} k={k}: sweep {} against {silhouette}", case["name"], sweep.silhouette[i]);
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
    // The WICD curve's smoothed derivative, computed here, gives kneed's knee.
    let wicd = knees.iter().find(|c| c["name"] == "wicd").unwrap();
    let (ks, w) = (floats(&wicd["x"]), floats(&wicd["wicd"]));
    let derivative = knee::smoothed_derivative(&w);
    let reference = knees.iter().find(|c| c["name"] == "wicd-derivative").unwrap();
    for (a, b) in derivative.iter().zip(floats(&reference["y"])) {
        assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()));
    }
    let got = knee::kneedle(&ks[2..ks.len() - 2], &derivative, 1.0).map(|i| ks[2 + i]);
    assert_eq!(got, reference["knee"].as_f64());
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
