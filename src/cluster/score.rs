//! How well a partition recovers known causes: purity, coverage, normalised mutual information and the adjusted Rand
//! index (as scikit-learn computes them), and a random partition with the same cluster sizes as a floor.

use rand::SeedableRng;
use rand::seq::SliceRandom;

/// The comparison of a partition (`clusters`) with the causes (`causes`), both one label per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// Share of images in their cluster's commonest cause.
    pub purity: f64,
    /// Share of planted causes that are the commonest cause of at least one cluster (the unassigned images aside).
    pub coverage: f64,
    /// Per cluster, its commonest cause (ties to the lower label).
    pub dominant: Vec<usize>,
    /// Per cause (in label order): its images, the cluster holding most of them (never the unassigned images), and
    /// that cluster's share of them.
    pub per_cause: Vec<(usize, usize, f64)>,
    /// Mutual information over the arithmetic mean of the two entropies (scikit-learn's default).
    pub nmi: f64,
    pub ari: f64,
}

/// The contingency table `n[cluster][cause]` of two labelings of the same images (labels from 0).
fn contingency(clusters: &[usize], causes: &[usize]) -> Vec<Vec<usize>> {
    let (k, c) = (clusters.iter().max().map_or(0, |m| m + 1), causes.iter().max().map_or(0, |m| m + 1));
    let mut n = vec![vec![0usize; c]; k];
    for (&a, &b) in clusters.iter().zip(causes) {
        n[a][b] += 1;
    }
    n
}

/// What the scores count beyond the contingency table: the label of the images no cluster holds (a clustering's
/// images left alone, scored as one more cluster in purity, NMI and ARI, so leaving hard images out cannot raise
/// them, and never covering a cause), and the causes that were not planted (a nominal scenario: scored like any
/// other cause, but not one coverage asks to find).
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    pub unassigned: Option<usize>,
    pub nominal: &'a [usize],
}

pub fn recovery(clusters: &[usize], causes: &[usize], scope: Scope<'_>) -> Recovery {
    assert_eq!(clusters.len(), causes.len(), "one cluster and one cause per image");
    let real = |i: usize| scope.unassigned != Some(i);
    let planted = |j: usize| !scope.nominal.contains(&j);
    let n = contingency(clusters, causes);
    let total = clusters.len() as f64;
    let c = n.first().map_or(0, Vec::len);
    let rows: Vec<usize> = n.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<usize> = (0..c).map(|j| n.iter().map(|r| r[j]).sum()).collect();
    let purity = n.iter().map(|r| r.iter().copied().max().unwrap_or(0)).sum::<usize>() as f64 / total.max(1.0);
    let dominant: Vec<usize> = n.iter().map(|r| (0..c).fold(0, |b, j| if r[j] > r[b] { j } else { b })).collect();
    let covered: std::collections::BTreeSet<usize> = (n.iter().zip(&dominant).enumerate())
        .filter(|(i, (r, d))| real(*i) && planted(**d) && r.iter().any(|&x| x > 0))
        .map(|(_, (_, d))| *d)
        .collect();
    let present = (0..c).filter(|&j| planted(j) && cols[j] > 0).count();
    let coverage = covered.len() as f64 / present.max(1) as f64;
    let per_cause = (0..c)
        .map(|j| match (0..n.len()).filter(|&i| real(i)).reduce(|b, i| if n[i][j] > n[b][j] { i } else { b }) {
            Some(best) if n[best][j] > 0 => (cols[j], best, n[best][j] as f64 / cols[j] as f64),
            _ => (cols[j], 0, 0.0),
        })
        .collect();
    let entropy = |counts: &[usize]| -> f64 {
        counts.iter().filter(|&&x| x > 0).map(|&x| x as f64 / total).map(|p| -p * p.ln()).sum()
    };
    let (hu, hv) = (entropy(&rows), entropy(&cols));
    let mut mi = 0.0;
    for (i, r) in n.iter().enumerate() {
        for (j, &x) in r.iter().enumerate() {
            if x > 0 {
                mi += x as f64 / total * (total * x as f64 / (rows[i] as f64 * cols[j] as f64)).ln();
            }
        }
    }
    // scikit-learn: identical trivial labelings score 1; otherwise MI over the mean entropy.
    let nmi = if hu == 0.0 && hv == 0.0 { 1.0 } else { (mi / ((hu + hv) / 2.0)).max(0.0) };
    let pairs = |x: usize| (x * x.saturating_sub(1)) as f64 / 2.0;
    let index: f64 = n.iter().flatten().map(|&x| pairs(x)).sum();
    let (a, b) = (rows.iter().map(|&x| pairs(x)).sum::<f64>(), cols.iter().map(|&x| pairs(x)).sum::<f64>());
    let expected = a * b / pairs(clusters.len()).max(1.0);
    let max = (a + b) / 2.0;
    let ari = if max == expected { 1.0 } else { (index - expected) / (max - expected) };
    Recovery { purity, coverage, dominant, per_cause, nmi, ari }
}

/// The same scores for `draws` random partitions with the cluster sizes of `clusters` (membership shuffled, seeded;
/// the unassigned block shuffled too, as large as the clustering left it):
/// each score's mean and 95th percentile, in the order purity, coverage, NMI, ARI.
pub fn random_floor(
    clusters: &[usize],
    causes: &[usize],
    scope: Scope<'_>,
    draws: usize,
    seed: u64,
) -> [(f64, f64); 4] {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    random_floor_with(clusters, causes, scope, draws, |shuffled| shuffled.shuffle(&mut rng))
}

/// [`random_floor`] with its random partitions from `shuffle`, which reorders the labels it is given (the previous
/// draw's, the first time `clusters`): the seeded function passes a ChaCha8 shuffle, a test passes partitions
/// recorded by a reference implementation to replay them.
pub fn random_floor_with(
    clusters: &[usize],
    causes: &[usize],
    scope: Scope<'_>,
    draws: usize,
    mut shuffle: impl FnMut(&mut [usize]),
) -> [(f64, f64); 4] {
    let mut shuffled = clusters.to_vec();
    let mut scores: [Vec<f64>; 4] = Default::default();
    for _ in 0..draws {
        shuffle(&mut shuffled);
        let r = recovery(&shuffled, causes, scope);
        for (k, v) in [r.purity, r.coverage, r.nmi, r.ari].into_iter().enumerate() {
            scores[k].push(v);
        }
    }
    scores.map(|mut v| {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let p95 = v.get(((v.len() as f64 * 0.95).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
        (mean, p95)
    })
}
