//! Root-cause clusters (HUDD Step 1b), one file per algorithm family: the clustering space (`distance`),
//! agglomerative clustering and the choice of k (`hierarchical`), partition quality (`quality`), stability,
//! classical scaling, k-means, density clustering, features, a layer's images read from their file (`layer`) and
//! spectral embeddings; deterministic cluster ids here.

pub mod density;
pub mod distance;
pub mod features;
pub mod hierarchical;
pub mod kmeans;
pub mod knee;
pub mod layer;
pub mod map;
pub mod members;
pub mod pipeline;
pub mod quality;
pub mod scaling;
pub mod score;
pub mod spectral;
pub mod stability;

use ndarray::Array2;

pub use density::{dbscan, hdbscan, kdistance_knee, kdistances, knee_eps};
pub use distance::{
    Mode, condensed, distances, distances_of, hudd_curve_space, hudd_space, hudd_spaces, max_distance, row_distances,
    row_normalised,
};
pub use hierarchical::{
    ChooseK, KRule, Linkage, Sweep, choose_k, cut, default_max_k, dendrogram, knee_k, sweep, wicd_sweep,
};
pub use kmeans::kmeans;
pub use pipeline::{Algorithm, Noise, Pipeline};
pub use quality::{mean_intra, medoids, silhouette, wicd};
pub use scaling::{embed, pca_distances, pca_scores};
pub use stability::stability;

/// A symmetric n×n distance matrix.
pub type Matrix = Array2<f64>;

/// Relabels a partition deterministically: clusters ordered by size (largest first), then by their smallest member,
/// numbered from 0.
pub fn canonical(labels: &[usize]) -> Vec<usize> {
    let mut groups: std::collections::BTreeMap<usize, (usize, usize)> = std::collections::BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        let e = groups.entry(l).or_insert((0, i));
        e.0 += 1;
    }
    let mut order: Vec<(usize, usize, usize)> = groups.into_iter().map(|(l, (size, first))| (l, size, first)).collect();
    order.sort_by_key(|&(_, size, first)| (std::cmp::Reverse(size), first));
    let new: std::collections::HashMap<usize, usize> = order.iter().enumerate().map(|(i, &(l, _, _))| (l, i)).collect();
    labels.iter().map(|l| new[l]).collect()
}

/// The members of every cluster of a canonical partition.
pub fn members(labels: &[usize]) -> Vec<Vec<usize>> {
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        out[l].push(i);
    }
    out
}
