//! Root-cause clusters (HUDD Step 1b): Euclidean distances between heatmaps through matrix products,
//! hierarchical agglomerative clustering (kodama), the sweep of cluster counts with HUDD's WICD and the silhouette,
//! and deterministic cluster ids.

pub mod features;
pub mod knee;
pub mod members;
pub mod score;
pub mod spectral;

use std::collections::HashMap;

use ndarray::{Array2, Axis, s};
use rand::SeedableRng;
use rand::seq::index;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// What the agglomerative clustering runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// HUDD's: every row of the distance matrix divided by its maximum, those rows clustered as vectors (an image
    /// is described by how far it is from every other, relative to its farthest), which makes the clusters
    /// insensitive to the overall scale of an image's relevance (it follows the logit the relevance was seeded with).
    #[default]
    Hudd,
    /// The heatmaps themselves, on their Euclidean distances.
    Direct,
}

/// The linkage criterion of the agglomerative clustering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Linkage {
    #[default]
    Ward,
    Average,
    Complete,
    Single,
}

impl Linkage {
    fn method(self) -> kodama::Method {
        match self {
            Linkage::Ward => kodama::Method::Ward,
            Linkage::Average => kodama::Method::Average,
            Linkage::Complete => kodama::Method::Complete,
            Linkage::Single => kodama::Method::Single,
        }
    }
}

/// A symmetric n×n distance matrix.
pub type Matrix = Array2<f64>;

/// The upper triangle row by row (scipy's condensed form, what kodama takes).
pub fn condensed(m: &Matrix) -> Vec<f64> {
    m.outer_iter().enumerate().flat_map(|(i, row)| row.slice(s![i + 1..]).to_vec()).collect()
}

/// The largest distance (0 for an empty matrix).
pub fn max_distance(m: &Matrix) -> f64 {
    m.fold(0.0, |a, &b| a.max(b))
}

/// Rows of one tile of the Gram matrix: tiles are the unit of parallel work, and each is computed whole by one
/// thread in a fixed order, so the sums (and the distances) are the same bytes at any thread count.
const TILE: usize = 256;

/// Euclidean distances between `n` vectors of length `d`, read in column chunks: `chunk(start, width)` returns
/// columns `[start, start + width)` of every vector, `n × width` row-major. The Gram matrix is accumulated chunk by
/// chunk (each chunk centred on its column means, which leaves distances unchanged and limits cancellation), its
/// upper triangle only, tile by tile in parallel on the current rayon pool (`matrixmultiply`'s products, one thread
/// each), so memory stays at the n×n matrix plus one chunk of about its size; then `‖a‖² + ‖b‖² − 2a·b`, clamped at
/// zero, with exact zeros on the diagonal.
pub fn distances<E>(
    n: usize,
    d: usize,
    mut chunk: impl FnMut(usize, usize) -> Result<Vec<f32>, E>,
) -> Result<Matrix, E> {
    use rayon::prelude::*;
    if n == 0 {
        return Ok(Matrix::zeros((0, 0)));
    }
    let blocks: Vec<(usize, usize)> = (0..n).step_by(TILE).map(|a| (a, (a + TILE).min(n))).collect();
    let pairs: Vec<(usize, usize)> = (0..blocks.len()).flat_map(|a| (a..blocks.len()).map(move |b| (a, b))).collect();
    let mut tiles: Vec<Array2<f32>> =
        pairs.iter().map(|&(a, b)| Array2::zeros((blocks[a].1 - blocks[a].0, blocks[b].1 - blocks[b].0))).collect();
    // Chunks of about the matrix's size (at least 2,048 columns, so the products stay efficient).
    let width = n.max(2048).min(d.max(1));
    let mut start = 0;
    while start < d {
        let w = width.min(d - start);
        let mut x = Array2::from_shape_vec((n, w), chunk(start, w)?).expect("the chunk holds n × width values");
        let mean = x.mean_axis(Axis(0)).expect("n > 0");
        x -= &mean;
        tiles.par_iter_mut().zip(&pairs).for_each(|(tile, &(a, b))| {
            let rows = x.slice(s![blocks[a].0..blocks[a].1, ..]);
            let cols = x.slice(s![blocks[b].0..blocks[b].1, ..]);
            ndarray::linalg::general_mat_mul(1.0, &rows, &cols.t(), 1.0, tile);
        });
        start += w;
    }
    let mut gram = Array2::<f32>::zeros((n, n));
    for (tile, &(a, b)) in tiles.iter().zip(&pairs) {
        gram.slice_mut(s![blocks[a].0..blocks[a].1, blocks[b].0..blocks[b].1]).assign(tile);
    }
    let norms: Vec<f64> = (0..n).map(|i| f64::from(gram[[i, i]])).collect();
    Ok(Matrix::from_shape_fn((n, n), |(i, j)| {
        let dot = f64::from(gram[[i.min(j), i.max(j)]]);
        if i == j { 0.0 } else { (norms[i] + norms[j] - 2.0 * dot).max(0.0).sqrt() }
    }))
}

/// Distances between vectors held in memory (`n × d` row-major).
pub fn distances_of(values: &[f32], n: usize, d: usize) -> Matrix {
    distances::<std::convert::Infallible>(n, d, |start, width| {
        Ok((0..n).flat_map(|i| values[i * d + start..i * d + start + width].iter().copied()).collect())
    })
    .expect("infallible")
}

/// Every row of a distance matrix divided by its maximum (a row of zeros stays zero): how far each image is from
/// every other, relative to its farthest. Not symmetric.
pub fn row_normalised(m: &Matrix) -> Matrix {
    let mut out = m.clone();
    for mut row in out.outer_iter_mut() {
        let max = row.fold(0.0, |a: f64, &b| a.max(b));
        if max > 0.0 {
            row.mapv_inplace(|v| v / max);
        }
    }
    out
}

/// HUDD's clustering space: the Euclidean distances between the rows of [`row_normalised`] taken as vectors.
pub fn hudd_space(m: &Matrix) -> Matrix {
    let rows = row_normalised(m);
    let values: Vec<f32> = rows.iter().map(|&v| v as f32).collect();
    distances_of(&values, m.nrows(), m.nrows())
}

/// The matrix HUDD's k curve is computed on: [`row_normalised`] read on its upper triangle only (pairs i < j, as
/// the original toolset), mirrored so that the mean over a cluster's ordered pairs equals the mean over its pairs
/// i < j.
pub fn hudd_curve_space(m: &Matrix) -> Matrix {
    let rows = row_normalised(m);
    Matrix::from_shape_fn(rows.dim(), |(i, j)| rows[[i.min(j), i.max(j)]])
}

/// The dendrogram of `m` under `linkage` (steps sorted by height, as scipy's `linkage`).
pub fn dendrogram(m: &Matrix, linkage: Linkage) -> kodama::Dendrogram<f64> {
    let mut condensed = condensed(m);
    kodama::linkage(&mut condensed, m.nrows(), linkage.method())
}

/// The partition into `k` clusters: the dendrogram with its last `k − 1` merges undone (scipy's
/// `fcluster(criterion="maxclust")` where no two merges have the same height). Labels are canonical (see [`canonical`]).
pub fn cut(dendrogram: &kodama::Dendrogram<f64>, k: usize) -> Vec<usize> {
    let n = dendrogram.observations();
    let k = k.clamp(1, n.max(1));
    // Union-find over the first n − k merges.
    let mut parent: Vec<usize> = (0..2 * n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (i, step) in dendrogram.steps().iter().take(n - k).enumerate() {
        let (a, b) = (find(&mut parent, step.cluster1), find(&mut parent, step.cluster2));
        parent[a] = n + i;
        parent[b] = n + i;
    }
    let roots: Vec<usize> = (0..n).map(|p| find(&mut parent, p)).collect();
    canonical(&roots)
}

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
fn nearest_other(sums: &[f64], sizes: &[usize], own: usize) -> (usize, f64) {
    (0..sums.len())
        .filter(|&c| c != own && sizes[c] > 0)
        .map(|c| (c, sums[c] / sizes[c] as f64))
        .fold((usize::MAX, f64::INFINITY), |best, x| if x.1 < best.1 { x } else { best })
}

/// A point's silhouette from the sum of its distances to its own cluster, that cluster's size and `b`, its mean
/// distance to the nearest other cluster (scikit-learn's convention: 0 in a cluster of one).
fn silhouette_from(own_sum: f64, own_size: usize, b: f64) -> f64 {
    if own_size <= 1 {
        return 0.0;
    }
    let a = own_sum / (own_size - 1) as f64;
    let scale = a.max(b);
    if scale > 0.0 && b.is_finite() { (b - a) / scale } else { 0.0 }
}

/// Per point, the nearest other cluster (by mean distance) as clusters split: after a split only the two changed
/// clusters are compared with the one on record, and a point is scanned in full only when it belongs to them or
/// when its nearest was the split cluster and moved away. The mean silhouette then costs O(n) per k instead of
/// O(n · k), with the very same values as a full scan.
struct Nearest {
    cluster: Vec<usize>,
    mean: Vec<f64>,
}

impl Nearest {
    fn new(n: usize) -> Nearest {
        Nearest { cluster: vec![usize::MAX; n], mean: vec![f64::INFINITY; n] }
    }

    /// Cluster `slot` just gave its members `new`; `sums` is up to date, as are `sizes` and `label`.
    fn split(&mut self, sums: &Sums<'_>, sizes: &[usize], label: &[usize], slot: usize, new: usize) {
        let (s, k) = (sums.stride, sizes.len());
        for (p, &own) in label.iter().enumerate() {
            let row = &sums.to_cluster[p * s..p * s + k];
            let rescan = || nearest_other(row, sizes, own);
            let (mut c, mut v) = if own == slot || own == new {
                rescan()
            } else {
                let (before, at) = (self.cluster[p], self.mean[p]);
                let to_slot = row[slot] / sizes[slot] as f64;
                if before == slot {
                    if to_slot <= at { (slot, to_slot) } else { rescan() }
                } else if to_slot < at {
                    (slot, to_slot)
                } else {
                    (before, at)
                }
            };
            if own != new {
                let to_new = row[new] / sizes[new] as f64;
                if to_new < v {
                    (c, v) = (new, to_new);
                }
            }
            self.cluster[p] = c;
            self.mean[p] = v;
        }
    }

    fn silhouette(&self, sums: &Sums<'_>, sizes: &[usize], label: &[usize]) -> f64 {
        let s = sums.stride;
        (0..label.len())
            .map(|p| silhouette_from(sums.to_cluster[p * s + label[p]], sizes[label[p]], self.mean[p]))
            .sum::<f64>()
            / label.len() as f64
    }
}

/// WICD and silhouette of every cut of a dendrogram from 2 to `max_k` clusters. The two may be read on different
/// matrices (HUDD's mode computes its k curve on another matrix than the one it clusters).
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub ks: Vec<usize>,
    pub wicd: Vec<f64>,
    pub silhouette: Vec<f64>,
}

/// Per point, the sum of its distances to the members of every current cluster, and per cluster the sum of its
/// members' distances to each other: what WICD and the silhouette need, kept up to date as clusters split.
struct Sums<'a> {
    m: &'a Matrix,
    stride: usize,
    to_cluster: Vec<f64>,
    intra: Vec<f64>,
}

impl<'a> Sums<'a> {
    fn new(m: &'a Matrix, stride: usize) -> Self {
        let n = m.nrows();
        let mut to_cluster = vec![0.0f64; n * stride];
        for p in 0..n {
            to_cluster[p * stride] = m.row(p).iter().sum();
        }
        let intra = vec![(0..n).map(|p| to_cluster[p * stride]).sum::<f64>()];
        Sums { m, stride, to_cluster, intra }
    }

    /// `moved` (the smaller half of cluster `slot`) became cluster `new`; `label` is already updated.
    fn split(&mut self, moved: &[usize], slot: usize, new: usize, label: &[usize]) {
        let s = self.stride;
        for p in 0..label.len() {
            let row = self.m.row(p);
            let v: f64 = moved.iter().map(|&q| row[q]).sum();
            self.to_cluster[p * s + new] = v;
            self.to_cluster[p * s + slot] -= v;
        }
        self.intra[slot] = (0..label.len()).filter(|&p| label[p] == slot).map(|p| self.to_cluster[p * s + slot]).sum();
        self.intra.push(moved.iter().map(|&q| self.to_cluster[q * s + new]).sum());
    }

    fn wicd(&self, sizes: &[usize]) -> f64 {
        let n = self.m.nrows() as f64;
        let k = sizes.len();
        (0..k)
            .filter(|&c| sizes[c] > 1)
            .map(|c| sizes[c] as f64 / n * self.intra[c] / (sizes[c] * (sizes[c] - 1)) as f64)
            .sum::<f64>()
            / k as f64
    }
}

/// Computes the sweep incrementally: going from k to k + 1 clusters splits one cluster in two, so each point's
/// distance sum to every current cluster is updated from the smaller half alone (O(n · smaller half) per split,
/// O(n · k) for the silhouettes), instead of O(n²) per k. WICD is read on `wicd_on`, the silhouette on
/// `silhouette_on` (the same matrix is summed once).
pub fn sweep(dendrogram: &kodama::Dendrogram<f64>, max_k: usize, wicd_on: &Matrix, silhouette_on: &Matrix) -> Sweep {
    let n = silhouette_on.nrows();
    assert_eq!(wicd_on.nrows(), n, "both matrices describe the same points");
    let max_k = max_k.min(n);
    let mut out = Sweep { ks: Vec::new(), wicd: Vec::new(), silhouette: Vec::new() };
    if n < 2 || max_k < 2 {
        return out;
    }
    let steps = dendrogram.steps();
    let leaves = |node: usize| -> Vec<usize> {
        let mut stack = vec![node];
        let mut found = Vec::new();
        while let Some(x) = stack.pop() {
            if x < n {
                found.push(x);
            } else {
                stack.push(steps[x - n].cluster1);
                stack.push(steps[x - n].cluster2);
            }
        }
        found
    };
    let size = |node: usize| if node < n { 1 } else { steps[node - n].size };
    // Slot 0 holds everything.
    let mut label = vec![0usize; n];
    let mut sizes = vec![n];
    let mut node_slot = std::collections::HashMap::from([(2 * n - 2, 0usize)]);
    let mut silhouette_sums = Sums::new(silhouette_on, max_k);
    let mut nearest = Nearest::new(n);
    let mut wicd_sums = (!std::ptr::eq(wicd_on, silhouette_on)).then(|| Sums::new(wicd_on, max_k));
    for k in 2..=max_k {
        // Undo merge n − k (the (k−1)-th highest): its node is a current cluster.
        let step = &steps[n - k];
        let slot = node_slot.remove(&(2 * n - k)).expect("the node being split is a current cluster");
        let (small, big) = if size(step.cluster1) <= size(step.cluster2) {
            (step.cluster1, step.cluster2)
        } else {
            (step.cluster2, step.cluster1)
        };
        let new = k - 1;
        let moved = leaves(small);
        for &q in &moved {
            label[q] = new;
        }
        sizes[slot] -= moved.len();
        sizes.push(moved.len());
        node_slot.insert(big, slot);
        node_slot.insert(small, new);
        silhouette_sums.split(&moved, slot, new, &label);
        nearest.split(&silhouette_sums, &sizes, &label, slot, new);
        if let Some(w) = wicd_sums.as_mut() {
            w.split(&moved, slot, new, &label);
        }
        out.ks.push(k);
        out.wicd.push(wicd_sums.as_ref().unwrap_or(&silhouette_sums).wicd(&sizes));
        out.silhouette.push(nearest.silhouette(&silhouette_sums, &sizes, &label));
    }
    out
}

/// How the number of clusters is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ChooseK {
    /// HUDD's: kneedle (S = 1) on the 4th-order gradient of the WICD curve over k, as the original toolset; the
    /// best silhouette where there is no knee (recorded).
    #[default]
    Knee,
    /// The k with the highest mean silhouette.
    Silhouette,
    /// The manifest's `k`.
    Fixed,
    /// The largest gap between consecutive eigenvalues of the spectral embedding's Laplacian (von Luxburg's
    /// eigengap heuristic, as SpRAy chooses k): k groups that the graph separates give k eigenvalues near 0.
    Eigengap,
}

/// The chosen k and how it was chosen (a sentence for the outputs and the report).
pub fn choose_k(sweep: &Sweep, rule: ChooseK, fixed: Option<usize>, eigenvalues: &[f64]) -> (usize, String) {
    let best_silhouette = || {
        let i = (0..sweep.ks.len()).fold(0, |b, i| if sweep.silhouette[i] > sweep.silhouette[b] { i } else { b });
        sweep.ks.get(i).copied().unwrap_or(1)
    };
    match rule {
        ChooseK::Fixed => {
            let k = fixed.unwrap_or(2);
            (k, format!("fixed at {k} by the manifest"))
        }
        ChooseK::Silhouette => (best_silhouette(), "the highest mean silhouette".into()),
        ChooseK::Eigengap => {
            let max_k = sweep.ks.last().copied().unwrap_or(2);
            let k = spectral::eigengap(eigenvalues, max_k);
            (k, format!("the largest eigengap of the spectral embedding's Laplacian (k = 2..{max_k})"))
        }
        ChooseK::Knee => {
            let gradient = knee::gradient_o4(&sweep.wicd, 4.0);
            let x: Vec<f64> = sweep.ks.iter().map(|&k| k as f64).collect();
            match gradient.and_then(|g| knee::kneedle(&x, &g, 1.0)) {
                Some(i) => (sweep.ks[i], "the knee of the WICD curve (kneedle on its 4th-order gradient)".into()),
                None => {
                    let k = best_silhouette();
                    (
                        k,
                        format!(
                            "no knee in the WICD curve over k = 2..{}: fell back to the highest mean silhouette",
                            sweep.ks.last().unwrap_or(&2)
                        ),
                    )
                }
            }
        }
    }
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

/// HUDD's default largest cluster count: `max(2, min(500, n / 2))`.
pub fn default_max_k(n: usize) -> usize {
    (n / 2).clamp(2, 500)
}

/// Hennig's cluster-wise stability (`clusterboot` with the subsetting scheme): `draws` random subsets of `share` of
/// the points (seeded), each reclustered by `recluster` on the distances restricted to it; per cluster of `labels`,
/// the mean over the draws of the Jaccard similarity between its members in the subset and the most similar new
/// cluster (`None` for a cluster no subset held). Subsets, unlike bootstrap samples, hold no duplicate points, which
/// would sit at distance 0 and pull the clustering apart. The distance matrix is not recomputed.
pub fn stability(
    m: &Matrix,
    labels: &[usize],
    draws: usize,
    share: f64,
    seed: u64,
    recluster: impl Fn(&Matrix) -> Vec<usize> + Sync,
) -> Vec<Option<f64>> {
    use rayon::prelude::*;
    let n = m.nrows();
    let k = labels.iter().max().map_or(0, |l| l + 1);
    let size = ((n as f64 * share).round() as usize).clamp(2.min(n), n);
    // The subsets are drawn first, in order, then reclustered in parallel on the current rayon pool: the result
    // does not depend on the thread count.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let subsets: Vec<Vec<usize>> = (0..draws)
        .map(|_| {
            let mut subset = index::sample(&mut rng, n, size).into_vec();
            subset.sort_unstable();
            subset
        })
        .collect();
    let reclustered: Vec<Vec<usize>> =
        subsets.par_iter().map(|subset| recluster(&m.select(Axis(0), subset).select(Axis(1), subset))).collect();
    let (mut sums, mut counts) = (vec![0.0; k], vec![0usize; k]);
    for (subset, new) in subsets.iter().zip(&reclustered) {
        let groups = members(new);
        for c in 0..k {
            let mine: Vec<usize> = (0..subset.len()).filter(|&i| labels[subset[i]] == c).collect();
            if mine.is_empty() {
                continue;
            }
            let best = groups
                .iter()
                .map(|g| {
                    let common = g.iter().filter(|i| labels[subset[**i]] == c).count();
                    common as f64 / (mine.len() + g.len() - common) as f64
                })
                .fold(0.0, f64::max);
            sums[c] += best;
            counts[c] += 1;
        }
    }
    (0..k).map(|c| (counts[c] > 0).then(|| sums[c] / counts[c] as f64)).collect()
}

/// Coordinates whose Euclidean distances are those of `m` (classical multidimensional scaling: the eigenvectors of
/// the doubly centred `−½ D²` scaled by the square roots of their positive eigenvalues), largest eigenvalue first.
/// For distances that are Euclidean, as every clustering space here is, nothing is lost: k-means on these
/// coordinates is k-means on the vectors the distances came from (it depends on distances to centroids only, which
/// a rotation keeps), and the first `c` columns are the vectors' first `c` principal component scores (up to sign).
pub fn embed(m: &Matrix) -> Array2<f64> {
    let n = m.nrows();
    if n == 0 {
        return Array2::zeros((0, 0));
    }
    let squared: Vec<f64> = m.iter().map(|d| -0.5 * d * d).collect();
    let b = Tensor::from_slice(&squared).view([n as i64, n as i64]);
    let row_mean = b.mean_dim([1i64].as_slice(), true, Kind::Double);
    let col_mean = b.mean_dim([0i64].as_slice(), true, Kind::Double);
    let all = b.mean(Kind::Double);
    let centred = &b - &row_mean - &col_mean + &all;
    // One libtorch thread: LAPACK's sums then do not depend on the thread count the stage was given.
    let (values, vectors) = crate::runtime::with_threads(1, || centred.linalg_eigh("L"));
    let values = Vec::<f64>::try_from(values).expect("double eigenvalues");
    let largest = values.iter().copied().fold(0.0, f64::max);
    let keep: Vec<i64> = (0..n as i64).rev().filter(|&i| values[i as usize] > largest * 1e-10).collect();
    let scale = Tensor::from_slice(&keep.iter().map(|&i| values[i as usize].sqrt()).collect::<Vec<_>>());
    let x = vectors.index_select(1, &Tensor::from_slice(&keep)) * scale.unsqueeze(0);
    let flat = Vec::<f64>::try_from(x.flatten(0, -1)).expect("double coordinates");
    Array2::from_shape_vec((n, keep.len()), flat).expect("n × kept coordinates")
}

/// The distances between the first `components` principal component scores of the vectors behind `m` (PCA of a
/// clustering space, from its distances alone).
pub fn pca_distances(m: &Matrix, components: usize) -> Matrix {
    let x = embed(m);
    let c = components.min(x.ncols());
    row_distances(x.slice(s![.., ..c]))
}

/// The Euclidean distances between the rows of `x`, summed coordinate by coordinate.
pub fn row_distances(x: ndarray::ArrayView2<f64>) -> Matrix {
    Matrix::from_shape_fn((x.nrows(), x.nrows()), |(i, j)| {
        if i == j {
            0.0
        } else {
            x.row(i).iter().zip(x.row(j).iter()).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt()
        }
    })
}

/// k-means (Lloyd's algorithm) on the rows of `x`, started from `k` rows chosen farthest-first from row 0 (each next
/// centre the row farthest from those chosen; deterministic, no seed), until no label changes or 300 iterations.
/// Canonical labels. Ties in the nearest centre go to the lower centre, as scikit-learn's.
pub fn kmeans(x: &Array2<f64>, k: usize) -> Vec<usize> {
    let n = x.nrows();
    let k = k.clamp(1, n.max(1));
    if n == 0 {
        return Vec::new();
    }
    let dist2 = |a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f64>| -> f64 {
        a.iter().zip(b.iter()).map(|(p, q)| (p - q) * (p - q)).sum()
    };
    let mut chosen = vec![0usize];
    let mut nearest: Vec<f64> = (0..n).map(|i| dist2(x.row(i), x.row(0))).collect();
    while chosen.len() < k {
        let next = (0..n).fold(0, |b, i| if nearest[i] > nearest[b] { i } else { b });
        chosen.push(next);
        for (i, d) in nearest.iter_mut().enumerate() {
            *d = d.min(dist2(x.row(i), x.row(next)));
        }
    }
    let mut centres = x.select(ndarray::Axis(0), &chosen);
    let mut labels = vec![usize::MAX; n];
    let norms: Vec<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
    for _ in 0..300 {
        // Squared distances to every centre at once: ‖x‖² + ‖c‖² − 2 x·c (the matrix product does the work).
        let cross = x.dot(&centres.t());
        let centre_norms: Vec<f64> = centres.rows().into_iter().map(|r| r.dot(&r)).collect();
        let mut changed = false;
        for i in 0..n {
            let d = |c: usize| norms[i] + centre_norms[c] - 2.0 * cross[[i, c]];
            let l = (0..k).fold(0, |b, c| if d(c) < d(b) { c } else { b });
            if labels[i] != l {
                labels[i] = l;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        for c in 0..k {
            let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == c).collect();
            if !rows.is_empty() {
                let mean = x.select(ndarray::Axis(0), &rows).mean_axis(ndarray::Axis(0)).expect("rows");
                centres.row_mut(c).assign(&mean);
            }
        }
    }
    canonical(&labels)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweeps_incremental_silhouettes_equal_a_full_computation_at_every_k() {
        // Points on a line with jitter, so the dendrogram splits clusters of every size.
        let mut rng = <rand_chacha::ChaCha8Rng as SeedableRng>::seed_from_u64(11);
        let values: Vec<f32> = (0..90 * 3).map(|_| rand::Rng::random::<f32>(&mut rng)).collect();
        let m = distances_of(&values, 90, 3);
        let dendrogram = dendrogram(&m, Linkage::Ward);
        let swept = sweep(&dendrogram, 45, &m, &m);
        for (i, &k) in swept.ks.iter().enumerate() {
            let full = silhouette(&m, &cut(&dendrogram, k));
            assert!((swept.silhouette[i] - full).abs() < 1e-12, "k = {k}: {} against {full}", swept.silhouette[i]);
        }
    }
}
