//! How good a partition is on a distance matrix: HUDD's WICD, the mean silhouette, medoids and mean
//! intra-cluster distances.

use super::{Matrix, members};

/// HUDD's weighted intra-cluster distance: `(1/K) · Σ_{|c|>1} (|c|/N) · mean pairwise distance inside c`.
pub fn wicd(m: &Matrix, labels: &[usize]) -> f64 {
    let groups = members(labels);
    let total: f64 =
        groups.iter().filter(|c| c.len() > 1).map(|c| c.len() as f64 / m.nrows() as f64 * mean_intra(m, c)).sum();
    total / groups.len().max(1) as f64
}

/// The mean silhouette (scikit-learn's convention: 0 for members of singleton clusters).
pub fn silhouette(m: &Matrix, labels: &[usize]) -> f64 {
    let groups = members(labels);
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    let total: f64 = (0..m.nrows())
        .map(|p| {
            let mut sums = vec![0.0; groups.len()];
            for (q, &l) in labels.iter().enumerate() {
                sums[l] += m[[p, q]];
            }
            silhouette_of(&sums, &sizes, labels[p])
        })
        .sum();
    total / m.nrows().max(1) as f64
}

/// One point's silhouette from its distance sums to every cluster.
fn silhouette_of(sums: &[f64], sizes: &[usize], own: usize) -> f64 {
    silhouette_from(sums[own], sizes[own], nearest_other(sums, sizes, own).1)
}

/// The other non-empty cluster with the smallest mean distance to a point, and that mean (∞ when there is none).
pub(super) fn nearest_other(sums: &[f64], sizes: &[usize], own: usize) -> (usize, f64) {
    (0..sums.len())
        .filter(|&c| c != own && sizes[c] > 0)
        .map(|c| (c, sums[c] / sizes[c] as f64))
        .fold((usize::MAX, f64::INFINITY), |best, x| if x.1 < best.1 { x } else { best })
}

/// A point's silhouette from the sum of its distances to its own cluster, that cluster's size and `b`, its mean
/// distance to the nearest other cluster (scikit-learn's convention: 0 in a cluster of one).
pub(super) fn silhouette_from(own_sum: f64, own_size: usize, b: f64) -> f64 {
    if own_size <= 1 {
        return 0.0;
    }
    let a = own_sum / (own_size - 1) as f64;
    let scale = a.max(b);
    if scale > 0.0 && b.is_finite() { (b - a) / scale } else { 0.0 }
}

/// Per cluster, the member whose distances to the other members sum least, and each point's distance to its
/// cluster's medoid.
pub fn medoids(m: &Matrix, labels: &[usize]) -> (Vec<usize>, Vec<f64>) {
    let groups = members(labels);
    let medoids: Vec<usize> = groups
        .iter()
        .map(|c| {
            c.iter()
                .map(|&p| (p, c.iter().map(|&q| m[[p, q]]).sum::<f64>()))
                .fold((usize::MAX, f64::INFINITY), |best, (p, s)| if s < best.1 { (p, s) } else { best })
                .0
        })
        .collect();
    let to_medoid = labels.iter().enumerate().map(|(p, &l)| m[[p, medoids[l]]]).collect();
    (medoids, to_medoid)
}

/// Mean pairwise distance inside a set of points (0 for fewer than two).
pub fn mean_intra(m: &Matrix, set: &[usize]) -> f64 {
    if set.len() < 2 {
        return 0.0;
    }
    let sum: f64 = set.iter().map(|&p| set.iter().map(|&q| m[[p, q]]).sum::<f64>()).sum();
    sum / (set.len() * (set.len() - 1)) as f64
}
