//! Density clustering on precomputed distances: DBSCAN (its radius by the knee of the k-distance curve) and
//! HDBSCAN (through the `hdbscan` crate).

use std::collections::HashMap;

use super::{Matrix, knee};

/// DBSCAN on a distance matrix (scikit-learn's, `metric="precomputed"`): core points have at least `min_samples`
/// points (themselves included) within `eps`; clusters grow from core points in index order. Noise points are
/// `None`.
pub fn dbscan(m: &Matrix, eps: f64, min_samples: usize) -> Vec<Option<usize>> {
    let n = m.nrows();
    let neighbours: Vec<Vec<usize>> = (0..n).map(|i| (0..n).filter(|&j| m[[i, j]] <= eps).collect()).collect();
    let core: Vec<bool> = neighbours.iter().map(|nb| nb.len() >= min_samples).collect();
    let mut labels: Vec<Option<usize>> = vec![None; n];
    let mut next = 0;
    for i in 0..n {
        if !core[i] || labels[i].is_some() {
            continue;
        }
        labels[i] = Some(next);
        let mut stack = vec![i];
        while let Some(p) = stack.pop() {
            if !core[p] {
                continue;
            }
            for &q in &neighbours[p] {
                if labels[q].is_none() {
                    labels[q] = Some(next);
                    stack.push(q);
                }
            }
        }
        next += 1;
    }
    labels
}

/// Every point's distance to its `min_samples`-th nearest point (itself counted, as DBSCAN counts it; clamped to
/// 1..=n), sorted: the k-distance curve DBSCAN's radius is read from.
pub fn kdistances(m: &Matrix, min_samples: usize) -> Vec<f64> {
    let k = min_samples.clamp(1, m.ncols().max(1)) - 1;
    let mut kdist: Vec<f64> = m
        .rows()
        .into_iter()
        .map(|row| {
            let mut row = row.to_vec();
            *row.select_nth_unstable_by(k, f64::total_cmp).1
        })
        .collect();
    kdist.sort_by(f64::total_cmp);
    kdist
}

/// The radius at the knee of a sorted k-distance curve (kneed's rule for a convex, increasing curve, sensitivity 1);
/// `None` when it has no knee (too few points, or all distances equal).
pub fn kdistance_knee(kdist: &[f64]) -> Option<f64> {
    let x: Vec<f64> = (0..kdist.len()).map(|i| i as f64).collect();
    knee::kneedle_convex(&x, kdist, 1.0).map(|i| kdist[i])
}

/// DBSCAN's radius by the k-distance rule (Ester et al. 1996): the knee of [`kdistances`]. `None` when the curve has
/// no knee or `min_samples` is 0 or above the number of points.
pub fn knee_eps(m: &Matrix, min_samples: usize) -> Option<f64> {
    if min_samples == 0 || min_samples > m.nrows() {
        return None;
    }
    kdistance_knee(&kdistances(m, min_samples))
}

/// HDBSCAN (Campello et al. 2013; scikit-learn's `HDBSCAN`: excess-of-mass selection, no single cluster) on a
/// distance matrix, through the `hdbscan` crate: clusters of at least `min_cluster_size` points in the hierarchy of
/// mutual reachability with `min_samples` neighbours (itself counted). Noise points are `None`; cluster numbers follow
/// the order of their first point.
pub fn hdbscan(m: &Matrix, min_cluster_size: usize, min_samples: usize) -> Vec<Option<usize>> {
    let n = m.nrows();
    if n < 2 {
        return vec![None; n];
    }
    // The crate checks symmetry to machine precision: mirror the upper triangle.
    let rows: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| m[[i.min(j), i.max(j)]]).collect()).collect();
    let params = hdbscan::HdbscanHyperParams::builder()
        .min_cluster_size(min_cluster_size.max(2))
        .min_samples(min_samples.clamp(1, n - 1))
        .dist_metric(hdbscan::DistanceMetric::Precalculated)
        .build();
    let found = hdbscan::Hdbscan::new(&rows, params).cluster().expect("a symmetric matrix of finite distances");
    let mut number: HashMap<i32, usize> = HashMap::new();
    found
        .into_iter()
        .map(|l| {
            (l >= 0).then(|| {
                let next = number.len();
                *number.entry(l).or_insert(next)
            })
        })
        .collect()
}
