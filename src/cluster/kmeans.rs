//! k-means (Lloyd's algorithm from farthest-first rows), as scikit-learn's.

use ndarray::Array2;

use super::canonical;

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
