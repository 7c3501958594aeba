//! Agglomerative clustering (kodama's linkages), canonical cuts, and the sweep of cluster counts with HUDD's WICD and
//! the silhouette (both kept up to date as clusters split), and the rules that choose k from it.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::quality::{nearest_other, silhouette_from};
use super::{Matrix, canonical, condensed, knee, spectral};

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
#[derive(Debug, Clone, PartialEq, Default)]
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
        // Each row summed whole by one thread, in order: the same sums at any thread count.
        match m.as_slice() {
            Some(rows) => (to_cluster.par_chunks_mut(stride.max(1)).zip(rows.par_chunks(n.max(1))))
                .for_each(|(sums, row)| sums[0] = row.iter().sum()),
            // Rows strided in memory (a column-major matrix): summed in the same order, one by one.
            None => (0..n).for_each(|p| to_cluster[p * stride] = m.row(p).iter().sum()),
        }
        let intra = vec![(0..n).map(|p| to_cluster[p * stride]).sum::<f64>()];
        Sums { m, stride, to_cluster, intra }
    }

    /// `moved` (the smaller half of cluster `slot`) became cluster `new`; `label` is already updated.
    /// Each point's sum to `moved` is accumulated row by row (the matrix is symmetric: row q holds every point's
    /// distance to q), in `moved`'s order from -0.0 as `Iterator::sum` adds, so the sums are the same numbers as
    /// summing each point's row at `moved`'s columns, read in memory order instead of gathered.
    fn split(&mut self, moved: &[usize], slot: usize, new: usize, label: &[usize]) {
        let s = self.stride;
        let mut sums = vec![-0.0f64; label.len()];
        for &q in moved {
            sums.iter_mut().zip(self.m.row(q)).for_each(|(sum, d)| *sum += d);
        }
        for (p, v) in sums.into_iter().enumerate() {
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
    sweep_on(dendrogram, max_k, wicd_on, Some(silhouette_on))
}

/// The WICD half of [`sweep`] alone (`silhouette` left empty): what the knee needs, at about half the cost when
/// the silhouette would be read on another matrix.
pub fn wicd_sweep(dendrogram: &kodama::Dendrogram<f64>, max_k: usize, wicd_on: &Matrix) -> Sweep {
    sweep_on(dendrogram, max_k, wicd_on, None)
}

fn sweep_on(
    dendrogram: &kodama::Dendrogram<f64>,
    max_k: usize,
    wicd_on: &Matrix,
    silhouette_on: Option<&Matrix>,
) -> Sweep {
    let n = wicd_on.nrows();
    assert!(silhouette_on.is_none_or(|m| m.nrows() == n), "both matrices describe the same points");
    let max_k = max_k.min(n);
    let mut out = Sweep::default();
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
    // The same matrix is summed once, for both.
    let shared = silhouette_on.is_some_and(|m| std::ptr::eq(wicd_on, m));
    let mut silhouette = silhouette_on.map(|m| (Sums::new(m, max_k), Nearest::new(n)));
    let mut wicd_sums = (!shared).then(|| Sums::new(wicd_on, max_k));
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
        if let Some((sums, nearest)) = silhouette.as_mut() {
            sums.split(&moved, slot, new, &label);
            nearest.split(sums, &sizes, &label, slot, new);
        }
        if let Some(w) = wicd_sums.as_mut() {
            w.split(&moved, slot, new, &label);
        }
        out.ks.push(k);
        let wicd = match (&wicd_sums, &silhouette) {
            (Some(w), _) => w,
            (None, Some((sums, _))) => sums,
            (None, None) => unreachable!("WICD has its sums unless it shares the silhouette's"),
        };
        out.wicd.push(wicd.wicd(&sizes));
        if let Some((sums, nearest)) = &silhouette {
            out.silhouette.push(nearest.silhouette(sums, &sizes, &label));
        }
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

/// A rule for the number of clusters with what it needs: [`ChooseK`] as a manifest names it, `Fixed` holding its k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KRule {
    Knee,
    Silhouette,
    Fixed(usize),
    Eigengap,
}

/// How the knee rule says it chose k.
pub const KNEE: &str = "the knee of the WICD curve (kneedle on its 4th-order gradient)";

/// The k at the knee of a sweep's WICD curve (kneedle on its 4th-order gradient), if it has one.
pub fn knee_k(sweep: &Sweep) -> Option<usize> {
    let gradient = knee::gradient_o4(&sweep.wicd, 4.0)?;
    let x: Vec<f64> = sweep.ks.iter().map(|&k| k as f64).collect();
    knee::kneedle(&x, &gradient, 1.0).map(|i| sweep.ks[i])
}

/// The chosen k and how it was chosen (a sentence for the outputs and the report).
pub fn choose_k(sweep: &Sweep, rule: KRule, eigenvalues: &[f64]) -> (usize, String) {
    let best_silhouette = || {
        let i = (0..sweep.ks.len()).fold(0, |b, i| if sweep.silhouette[i] > sweep.silhouette[b] { i } else { b });
        sweep.ks.get(i).copied().unwrap_or(1)
    };
    match rule {
        KRule::Fixed(k) => (k, format!("fixed at {k} by the manifest")),
        KRule::Silhouette => (best_silhouette(), "the highest mean silhouette".into()),
        KRule::Eigengap => {
            let max_k = sweep.ks.last().copied().unwrap_or(2);
            let k = spectral::eigengap(eigenvalues, max_k);
            (k, format!("the largest eigengap of the spectral embedding's Laplacian (k = 2..{max_k})"))
        }
        KRule::Knee => match knee_k(sweep) {
            Some(k) => (k, KNEE.into()),
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
        },
    }
}

/// HUDD's default largest cluster count: `max(2, min(500, n / 2))`.
pub fn default_max_k(n: usize) -> usize {
    (n / 2).clamp(2, 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{distances_of, silhouette, wicd};
    use rand::SeedableRng;

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

    #[test]
    fn the_wicd_sweep_equals_a_full_computation_at_every_k_on_any_layout() {
        let mut rng = <rand_chacha::ChaCha8Rng as SeedableRng>::seed_from_u64(5);
        let values: Vec<f32> = (0..70 * 4).map(|_| rand::Rng::random::<f32>(&mut rng)).collect();
        let m = distances_of(&values, 70, 4);
        let dendrogram = dendrogram(&m, Linkage::Ward);
        let swept = wicd_sweep(&dendrogram, 35, &m);
        assert_eq!(swept.ks, (2..=35).collect::<Vec<_>>());
        for (i, &k) in swept.ks.iter().enumerate() {
            let full = wicd(&m, &cut(&dendrogram, k));
            assert!(
                (swept.wicd[i] - full).abs() < 1e-12 * full.abs().max(1.0),
                "k = {k}: {} against {full}",
                swept.wicd[i]
            );
        }
        // A matrix in column-major memory (its rows strided) gives the same numbers.
        let mut fortran = Matrix::zeros(ndarray::ShapeBuilder::f(m.dim()));
        fortran.assign(&m);
        assert_eq!(wicd_sweep(&dendrogram, 35, &fortran).wicd, swept.wicd);
    }
}
