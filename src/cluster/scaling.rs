//! Classical multidimensional scaling: exact coordinates of a Euclidean distance matrix, and PCA from them.

use ndarray::{Array2, s};
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
