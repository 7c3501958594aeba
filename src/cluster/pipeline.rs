//! One layer's images, from their distances to a partition: the clustering space (HUDD's or the distances
//! themselves), principal components, a spectral embedding, then the algorithm (agglomerative with a k rule,
//! k-means, DBSCAN or HDBSCAN) and what it says of how it chose. The `cluster` stage runs this on every layer and on
//! every stability subset.

use std::borrow::Cow;

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::spectral::Spectral;
use super::{KRule, Linkage, Matrix, Mode, Sweep};

/// The clustering algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// HUDD's: agglomerative clustering (`linkage`), cut at the chosen k.
    #[default]
    Hierarchical,
    /// k-means (Lloyd, farthest-first start) on the clustering space's coordinates; k fixed or by silhouette.
    Kmeans,
    /// DBSCAN on the clustering space's distances (`eps`, `min_samples`); noise images are clusters of one.
    Dbscan,
    /// HDBSCAN on the clustering space's distances (`min_cluster_size`, `min_samples`); noise images are clusters
    /// of one.
    Hdbscan,
}

/// What a density clustering does with its noise images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Noise {
    /// Each a cluster of one (no root cause; `select` ignores them).
    #[default]
    Alone,
    /// Each joins the cluster of its nearest clustered image.
    Nearest,
}

impl Noise {
    pub fn is_alone(&self) -> bool {
        *self == Noise::Alone
    }
}

/// How a layer is clustered: every setting the numerics read (the `cluster` stage's parameters, checked).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pipeline {
    pub mode: Mode,
    pub pca: Option<usize>,
    pub spectral: Option<Spectral>,
    pub algorithm: Algorithm,
    pub linkage: Linkage,
    pub k: KRule,
    pub eps: Option<f64>,
    pub min_samples: usize,
    pub min_cluster_size: usize,
    pub noise: Noise,
}

/// One layer's images as the pipeline reads them: their raw distances and, where the stage has them, the vectors
/// those are the Euclidean distances of (PCA in the direct mode then works on the vectors, and the distances are not
/// read).
#[derive(Debug, Clone, Copy)]
pub struct Points<'a> {
    pub distances: Distances<'a>,
    pub vectors: Option<ArrayView2<'a, f32>>,
}

/// The images' raw distances: a matrix, or the rows and columns of some of a matrix's images (a stability subset,
/// restricted only when the pipeline reads them).
#[derive(Debug, Clone, Copy)]
pub enum Distances<'a> {
    Of(&'a Matrix),
    Among(&'a Matrix, &'a [usize]),
}

impl<'a> Distances<'a> {
    fn matrix(self) -> Cow<'a, Matrix> {
        match self {
            Distances::Of(m) => Cow::Borrowed(m),
            Distances::Among(m, rows) => {
                use rayon::prelude::*;
                let k = rows.len();
                let mut out = vec![0.0; k * k];
                out.par_chunks_mut(k.max(1)).zip(rows).for_each(|(row, &r)| {
                    for (o, &c) in row.iter_mut().zip(rows) {
                        *o = m[[r, c]];
                    }
                });
                Cow::Owned(Matrix::from_shape_vec((k, k), out).expect("k × k"))
            }
        }
    }
}

impl<'a> From<&'a Matrix> for Points<'a> {
    fn from(distances: &'a Matrix) -> Self {
        Points { distances: Distances::Of(distances), vectors: None }
    }
}

/// Clusters one layer from its raw heatmap distances: the clustering space of the mode, the dendrogram, the sweep
/// of k from 2 to `max_k`, the chosen k; returns the canonical partition, the sweep and how k was chosen. HUDD's mode
/// reads its k curve on the row-normalised matrix (pairs i < j) and its silhouettes in the clustering space.
pub fn cluster<'a>(points: impl Into<Points<'a>>, p: &Pipeline, max_k: usize) -> (Vec<usize>, Sweep, String) {
    cluster_with(points.into(), p, max_k, true)
}

/// The partition [`cluster`] gives, without what only the outputs read: the stability subsets' reclustering. A
/// hierarchical clustering with a fixed k skips the sweep, and the knee rule reads the WICD curve alone (the
/// silhouettes only when there is no knee to fall back from).
pub fn labels<'a>(points: impl Into<Points<'a>>, p: &Pipeline, max_k: usize) -> Vec<usize> {
    cluster_with(points.into(), p, max_k, false).0
}

fn cluster_with(points: Points<'_>, p: &Pipeline, max_k: usize, full: bool) -> (Vec<usize>, Sweep, String) {
    // PCA of the clustering space; HUDD's k curve then reads the reduced space too. The direct mode's space is the
    // vectors' distances: where there are fewer dimensions than images, PCA diagonalises their d×d scatter matrix
    // instead of the n×n one (the same components; 8,000 images of 1,280 values: seconds, not minutes), and the
    // distances are not read.
    let (space, curve) = match (p.pca, points.vectors) {
        (Some(c), Some(x)) if p.mode == Mode::Direct && x.ncols() < x.nrows() => {
            (super::row_distances(super::scaling::pca_scores(x, c).view()), None)
        }
        _ => {
            let raw = points.distances.matrix();
            let (space, curve) = match p.mode {
                Mode::Hudd => {
                    let (space, curve) = super::hudd_spaces(&raw);
                    (space, Some(curve))
                }
                Mode::Direct => (raw.into_owned(), None),
            };
            match p.pca {
                Some(c) => (super::pca_distances(&space, c), None),
                None => (space, curve),
            }
        }
    };
    // A spectral embedding: the algorithm clusters the embedded images.
    let (space, curve, eigenvalues) = match p.spectral {
        Some(spectral) => {
            let embedded = super::spectral::embedding(&space, spectral);
            (super::row_distances(embedded.coordinates.view()), None, embedded.eigenvalues)
        }
        None => (space, curve, Vec::new()),
    };
    match p.algorithm {
        Algorithm::Hierarchical => {}
        Algorithm::Kmeans => return kmeans_layer(&space, curve.as_ref().unwrap_or(&space), p, max_k, &eigenvalues),
        Algorithm::Dbscan => {
            let (eps, how) = match p.eps {
                Some(eps) => (eps, "eps"),
                None => {
                    let kdist = super::kdistances(&space, p.min_samples);
                    match (p.min_samples <= space.nrows()).then(|| super::kdistance_knee(&kdist)).flatten() {
                        Some(eps) => (eps, "eps at the knee of the k-distance curve"),
                        None => (kdist[kdist.len() / 2], "eps the median k-distance (the curve has no knee)"),
                    }
                }
            };
            let found = super::dbscan(&space, eps, p.min_samples);
            let name = format!("DBSCAN ({how} {}, min_samples {})", number(eps), p.min_samples);
            let name = name + &too_few(space.nrows(), &[("min_samples", p.min_samples)]);
            return density_clusters(found, &space, p.noise, name);
        }
        Algorithm::Hdbscan => {
            let found = super::hdbscan(&space, p.min_cluster_size, p.min_samples);
            let name = format!("HDBSCAN (min_cluster_size {}, min_samples {})", p.min_cluster_size, p.min_samples);
            let limits = [("min_cluster_size", p.min_cluster_size), ("min_samples", p.min_samples)];
            return density_clusters(found, &space, p.noise, name + &too_few(space.nrows(), &limits));
        }
    }
    let dendrogram = super::dendrogram(&space, p.linkage);
    let wicd_on = curve.as_ref().unwrap_or(&space);
    if !full {
        match p.k {
            KRule::Fixed(k) => return (super::cut(&dendrogram, k), Sweep::default(), String::new()),
            KRule::Knee => {
                if let Some(k) = super::knee_k(&super::wicd_sweep(&dendrogram, max_k, wicd_on)) {
                    return (super::cut(&dendrogram, k), Sweep::default(), String::new());
                }
            }
            KRule::Silhouette | KRule::Eigengap => {}
        }
    }
    let sweep = super::sweep(&dendrogram, max_k, wicd_on, &space);
    let (k, k_rule) = super::choose_k(&sweep, p.k, &eigenvalues);
    (super::cut(&dendrogram, k), sweep, k_rule)
}

/// A number as people read it: four decimals, or scientific notation when that would hide it (1e300 is not a
/// 300-digit integer; 1e-9 is not 0.0000).
fn number(v: f64) -> String {
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-3) { format!("{v:.4e}") } else { format!("{v:.4}") }
}

/// What a density clustering's size limits do when they exceed the images: every image is noise, said in the rule.
fn too_few(images: usize, limits: &[(&str, usize)]) -> String {
    match limits.iter().find(|(_, v)| *v > images) {
        Some((name, v)) => format!("; {name} {v} is above the {images} images, so every image is left alone"),
        None => String::new(),
    }
}

/// A density clustering's partition: noise images become clusters of one (ignored by select, not assessed by
/// variance) or join the cluster of their nearest clustered image (`space`'s distances, ties to the lower index),
/// and the rule says how many of each.
fn density_clusters(
    found: Vec<Option<usize>>,
    space: &Matrix,
    noise: Noise,
    name: String,
) -> (Vec<usize>, Sweep, String) {
    let n = found.len();
    let clusters = found.iter().flatten().max().map_or(0, |m| m + 1);
    let alone = found.iter().filter(|l| l.is_none()).count();
    let clustered: Vec<usize> = (0..n).filter(|&i| found[i].is_some()).collect();
    let mut next = clusters;
    let labels: Vec<usize> = (0..n)
        .map(|i| match (found[i], noise) {
            (Some(l), _) => l,
            (None, Noise::Nearest) if !clustered.is_empty() => {
                let nearest =
                    clustered.iter().copied().reduce(|b, j| if space[[i, j]] < space[[i, b]] { j } else { b });
                found[nearest.expect("some image is clustered")].expect("a clustered image")
            }
            (None, _) => {
                next += 1;
                next - 1
            }
        })
        .collect();
    let rule = match noise {
        Noise::Nearest if clusters > 0 => {
            format!("{name}: {clusters} clusters, {alone} of {n} images noise (each joined its nearest cluster)")
        }
        _ => format!("{name}: {clusters} clusters, {alone} of {n} images noise (each its own cluster)"),
    };
    (super::canonical(&labels), Sweep::default(), rule)
}

/// k-means on the coordinates of the clustering space (`space`'s distances, embedded exactly), k fixed or the best
/// silhouette over k = 2..min(max_k, 40); the sweep's WICD is read on `curve`, as for the hierarchical algorithm.
fn kmeans_layer(
    space: &Matrix,
    curve: &Matrix,
    p: &Pipeline,
    max_k: usize,
    eigenvalues: &[f64],
) -> (Vec<usize>, Sweep, String) {
    let x = super::embed(space);
    let fixed = match p.k {
        KRule::Fixed(k) => Some((k, format!("k-means, k fixed at {k} by the manifest"))),
        KRule::Eigengap => {
            let k = super::spectral::eigengap(eigenvalues, max_k.min(40));
            Some((k, format!("k-means, k = {k}, the largest eigengap of the spectral embedding's Laplacian")))
        }
        KRule::Knee | KRule::Silhouette => None,
    };
    if let Some((k, why)) = fixed {
        return (super::kmeans(&x, k), Sweep::default(), why);
    }
    let mut sweep = Sweep::default();
    let mut best: Option<(f64, Vec<usize>)> = None;
    for k in 2..=max_k.min(40) {
        let labels = super::kmeans(&x, k);
        let s = super::silhouette(space, &labels);
        sweep.ks.push(k);
        sweep.wicd.push(super::wicd(curve, &labels));
        sweep.silhouette.push(s);
        if best.as_ref().is_none_or(|b| s > b.0) {
            best = Some((s, labels));
        }
    }
    let labels = best.map_or_else(|| vec![0; space.nrows()], |b| b.1);
    (labels, sweep, "k-means, k with the highest mean silhouette".into())
}

#[cfg(test)]
mod tests {
    use super::{Matrix, Noise, density_clusters, number, too_few};

    #[test]
    fn extreme_numbers_are_written_as_people_read_them() {
        assert_eq!(number(1e300), "1.0000e300");
        assert_eq!(number(0.25), "0.2500");
        assert_eq!(number(1e-9), "1.0000e-9");
        assert_eq!(number(0.0), "0.0000");
        assert!(too_few(12, &[("min_samples", 50)]).contains("min_samples 50 is above the 12 images"));
        assert_eq!(too_few(12, &[("min_samples", 5)]), "");
    }

    #[test]
    fn noise_stays_alone_or_joins_its_nearest_cluster() {
        // Points on a line: 0, 1 | 10, 11 | 5 (noise, nearer 1's cluster at distance 4 than 10's at 5) | 30 (noise).
        let at = [0.0, 1.0, 10.0, 11.0, 5.0, 30.0];
        let space = Matrix::from_shape_fn((6, 6), |(i, j)| f64::abs(at[i] - at[j]));
        let found = vec![Some(0), Some(0), Some(1), Some(1), None, None];
        let (alone, _, rule) = density_clusters(found.clone(), &space, Noise::Alone, "d".into());
        assert_eq!(alone, vec![0, 0, 1, 1, 2, 3]);
        assert!(rule.contains("2 of 6 images noise (each its own cluster)"), "{rule}");
        let (joined, _, rule) = density_clusters(found, &space, Noise::Nearest, "d".into());
        assert_eq!(joined, vec![0, 0, 1, 1, 0, 1]);
        assert!(rule.contains("(each joined its nearest cluster)"), "{rule}");
        // Nothing clustered: nothing to join, every image stays alone.
        let (none, _, _) = density_clusters(vec![None; 6], &space, Noise::Nearest, "d".into());
        assert_eq!(none, vec![0, 1, 2, 3, 4, 5]);
    }
}
