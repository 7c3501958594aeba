//! Cluster-wise stability (Hennig's clusterboot, subsetting scheme): subsets of the images reclustered with the
//! same rule, each cluster's best Jaccard match averaged.

use rand::SeedableRng;
use rand::seq::index;

use super::members;

/// Hennig's cluster-wise stability (`clusterboot` with the subsetting scheme): `draws` random subsets of `share` of
/// the points (seeded), each reclustered by `recluster` (given the subset's indices, in increasing order); per
/// cluster of `labels`,
/// the mean over the draws of the Jaccard similarity between its members in the subset and the most similar new
/// cluster (`None` for a cluster no subset held). Subsets, unlike bootstrap samples, hold no duplicate points, which
/// would sit at distance 0 and pull the clustering apart.
pub fn stability(
    labels: &[usize],
    draws: usize,
    share: f64,
    seed: u64,
    recluster: impl Fn(&[usize]) -> Vec<usize> + Sync,
) -> Vec<Option<f64>> {
    use rayon::prelude::*;
    let n = labels.len();
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
    let reclustered: Vec<Vec<usize>> = subsets.par_iter().map(|subset| recluster(subset)).collect();
    stability_of(labels, &subsets, &reclustered)
}

/// The stability of each cluster of `labels` from given subsets (indices into `labels`) and their reclusterings
/// (one new label per index of the subset): what [`stability`] computes from its draws, exposed so that a test can
/// feed it subsets and clusterings recorded by a reference implementation.
pub fn stability_of(labels: &[usize], subsets: &[Vec<usize>], reclustered: &[Vec<usize>]) -> Vec<Option<f64>> {
    let k = labels.iter().max().map_or(0, |l| l + 1);
    let (mut sums, mut counts) = (vec![0.0; k], vec![0usize; k]);
    assert_eq!(subsets.len(), reclustered.len(), "one reclustering per subset");
    for (subset, new) in subsets.iter().zip(reclustered) {
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
