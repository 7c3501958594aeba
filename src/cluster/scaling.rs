//! Classical multidimensional scaling: exact coordinates of a Euclidean distance matrix, and PCA from them or, where
//! the vectors behind the distances are at hand and have fewer dimensions than there are images, from the vectors.

use ndarray::{Array2, ArrayView2, Axis, s};
use tch::{Kind, Tensor};

use super::{Matrix, row_distances};

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
    // One libtorch thread for all of it: the means' reductions and LAPACK's sums then do not depend on the thread
    // count the stage was given (a run with stages side by side gave other last digits than one at a time).
    crate::runtime::with_threads(1, || {
        let b = Tensor::from_slice(&squared).view([n as i64, n as i64]);
        let row_mean = b.mean_dim([1i64].as_slice(), true, Kind::Double);
        let col_mean = b.mean_dim([0i64].as_slice(), true, Kind::Double);
        let all = b.mean(Kind::Double);
        let centred = &b - &row_mean - &col_mean + &all;
        let (values, vectors) = centred.linalg_eigh("L");
        let values = Vec::<f64>::try_from(values).expect("double eigenvalues");
        let keep = positive(&values, n);
        let scale = Tensor::from_slice(&keep.iter().map(|&i| values[i as usize].sqrt()).collect::<Vec<_>>());
        let x = vectors.index_select(1, &Tensor::from_slice(&keep)) * scale.unsqueeze(0);
        to_array(&x, n, keep.len())
    })
}

/// The indices of the eigenvalues (ascending, as `eigh` gives them) that are positive beyond rounding, largest
/// first, at most `limit` of them.
fn positive(values: &[f64], limit: usize) -> Vec<i64> {
    let largest = values.iter().copied().fold(0.0, f64::max);
    (0..values.len() as i64).rev().filter(|&i| values[i as usize] > largest * ROUNDING).take(limit).collect()
}

/// An eigenvalue at most this share of the largest is rounding, not a direction of the data.
const ROUNDING: f64 = 1e-10;

fn to_array(x: &Tensor, rows: usize, columns: usize) -> Array2<f64> {
    let flat = Vec::<f64>::try_from(x.flatten(0, -1)).expect("double coordinates");
    Array2::from_shape_vec((rows, columns), flat).expect("rows × columns coordinates")
}

/// The first `components` principal component scores (up to sign) of the rows of `x` (n images × d values), from
/// the d×d scatter matrix of the centred rows: O(n·d²) where `embed` of their distances costs O(n³). The same
/// numbers as `embed`'s first columns up to rounding. The products are `matrixmultiply`'s, on the calling thread,
/// and sum each value in the same order on every x86-64 CPU with FMA; the eigendecompositions are MKL's on one
/// thread: the same bytes at any thread count and on any vendor's CPU.
pub fn pca_scores(x: ArrayView2<f32>, components: usize) -> Array2<f64> {
    let (n, d) = x.dim();
    if n == 0 || d == 0 {
        return Array2::zeros((n, 0));
    }
    let mut centred = x.mapv(f64::from);
    let mean = centred.sum_axis(Axis(0)) / n as f64;
    centred -= &mean;
    let scatter = centred.t().dot(&centred);
    let (values, vectors) = largest_eigenpairs(&scatter, components);
    let largest = values.first().copied().unwrap_or(0.0);
    let keep: Vec<usize> = (0..values.len()).filter(|&i| values[i] > largest * ROUNDING).collect();
    centred.dot(&vectors.select(Axis(1), &keep))
}

/// The `k` largest eigenvalues of a symmetric positive semi-definite matrix, largest first, and their unit
/// eigenvectors (columns). A large matrix (the scatter of 1,280 channels, for 20 components) goes through subspace
/// iteration with Rayleigh–Ritz on a block of `2k` columns from a fixed start, until every wanted pair's residual
/// ‖S v − θ v‖ is within 1e-12 of the largest eigenvalue (26 iterations on a half of the signs benchmark's 8,016
/// failures, 0.1 s against about 1 s for the full decomposition); a small matrix, a block that loses rank, or one
/// not converged in 100 iterations takes the full decomposition (LAPACK's `syevd`).
fn largest_eigenpairs(s: &Array2<f64>, k: usize) -> (Vec<f64>, Array2<f64>) {
    let d = s.nrows();
    let block = (2 * k).max(k + 10);
    if k == 0 || d <= 3 * block {
        return full_eigenpairs(s, k);
    }
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let start = Array2::from_shape_simple_fn((d, block), || rand::Rng::random::<f64>(&mut rng) - 0.5);
    let Some(mut q) = orthonormal(s.dot(&start)) else { return full_eigenpairs(s, k) };
    // The Ritz pairs wanted, largest first (`eigh` gives them in ascending order).
    let top: Vec<usize> = (0..k).map(|i| block - 1 - i).collect();
    for _ in 0..100 {
        let z = s.dot(&q);
        let (theta, w) = symmetric_eigh(&q.t().dot(&z));
        let w = w.select(Axis(1), &top);
        let (v, zv) = (q.dot(&w), z.dot(&w));
        let values: Vec<f64> = top.iter().map(|&i| theta[i]).collect();
        let tolerance = 1e-12 * values[0].abs();
        let converged = (0..k).all(|j| {
            let r = zv.column(j).iter().zip(v.column(j)).map(|(a, b)| (a - values[j] * b).powi(2)).sum::<f64>();
            r.sqrt() <= tolerance
        });
        if converged {
            return (values, v);
        }
        match orthonormal(z) {
            Some(next) => q = next,
            None => break,
        }
    }
    full_eigenpairs(s, k)
}

/// The `k` largest eigenpairs from the full decomposition, largest first.
fn full_eigenpairs(s: &Array2<f64>, k: usize) -> (Vec<f64>, Array2<f64>) {
    let (values, vectors) = symmetric_eigh(s);
    let top: Vec<usize> = (0..values.len()).rev().take(k).collect();
    (top.iter().map(|&i| values[i]).collect(), vectors.select(Axis(1), &top))
}

/// LAPACK's eigendecomposition of a symmetric matrix (its lower triangle), eigenvalues ascending, on one thread.
fn symmetric_eigh(s: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let d = s.nrows();
    crate::runtime::with_threads(1, || {
        let t = Tensor::from_slice(s.as_standard_layout().as_slice().expect("standard layout"));
        let (values, vectors) = t.view([d as i64, d as i64]).linalg_eigh("L");
        (Vec::<f64>::try_from(values).expect("double eigenvalues"), to_array(&vectors, d, d))
    })
}

/// The columns of `z` made orthonormal by modified Gram–Schmidt, twice (which keeps them orthogonal to rounding);
/// `None` when a column lies within rounding of the span of those before it.
fn orthonormal(mut z: Array2<f64>) -> Option<Array2<f64>> {
    for j in 0..z.ncols() {
        let before = z.column(j).dot(&z.column(j)).sqrt();
        for _ in 0..2 {
            for i in 0..j {
                let dot = z.column(i).dot(&z.column(j));
                let (done, mut rest) = z.view_mut().split_at(Axis(1), j);
                rest.column_mut(0).scaled_add(-dot, &done.column(i));
            }
        }
        let norm = z.column(j).dot(&z.column(j)).sqrt();
        if !(norm > 1e-10 * before) {
            return None;
        }
        z.column_mut(j).mapv_inplace(|v| v / norm);
    }
    Some(z)
}

/// The distances between the first `components` principal component scores of the vectors behind `m` (PCA of a
/// clustering space, from its distances alone).
pub fn pca_distances(m: &Matrix, components: usize) -> Matrix {
    let x = embed(m);
    let c = components.min(x.ncols());
    row_distances(x.slice(s![.., ..c]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subspace_iteration_finds_lapacks_largest_eigenpairs() {
        // A scatter matrix of 300 values with a slowly decaying spectrum (as a backbone's channels give), 900 images.
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(4);
        let x = Array2::from_shape_fn((900, 300), |(_, j)| {
            (rand::Rng::random::<f64>(&mut rng) - 0.5) / (1.0 + j as f64).powf(0.6)
        });
        let s = x.t().dot(&x);
        let (values, vectors) = largest_eigenpairs(&s, 20);
        let (want, lapack) = full_eigenpairs(&s, 20);
        assert_eq!(vectors.dim(), (300, 20));
        for j in 0..20 {
            assert!(
                (values[j] - want[j]).abs() <= 1e-12 * want[0],
                "eigenvalue {j}: {} against {}",
                values[j],
                want[j]
            );
            let cos = vectors.column(j).dot(&lapack.column(j)).abs();
            assert!((1.0 - cos).abs() < 1e-10, "eigenvector {j}: |cos| {cos}");
        }
        // A block that loses rank (a matrix of rank 3) falls back to the full decomposition.
        let low = Array2::from_shape_fn((300, 3), |(i, j)| ((i * 7 + j * 13) % 11) as f64 - 5.0);
        let (values, _) = largest_eigenpairs(&low.dot(&low.t()), 20);
        assert_eq!(values.len(), 20);
        assert!(values[3..].iter().all(|v| v.abs() < 1e-9 * values[0]), "{values:?}");
    }
}
