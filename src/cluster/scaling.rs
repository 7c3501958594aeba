//! Classical multidimensional scaling: exact coordinates of a Euclidean distance matrix, and PCA from them or, where
//! the vectors behind the distances are at hand and have fewer dimensions than there are images, from the vectors.

use ndarray::{Array2, ArrayView2, s};
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
    (0..values.len() as i64).rev().filter(|&i| values[i as usize] > largest * 1e-10).take(limit).collect()
}

fn to_array(x: &Tensor, rows: usize, columns: usize) -> Array2<f64> {
    let flat = Vec::<f64>::try_from(x.flatten(0, -1)).expect("double coordinates");
    Array2::from_shape_vec((rows, columns), flat).expect("rows × columns coordinates")
}

/// The first `components` principal component scores (up to sign) of the rows of `x` (n images × d values), from
/// the d×d scatter matrix of the centred rows: O(n·d²) where `embed` of their distances costs O(n³). The same
/// numbers as `embed`'s first columns up to rounding, and the same at any thread count (one libtorch thread).
pub fn pca_scores(x: ArrayView2<f32>, components: usize) -> Array2<f64> {
    let (n, d) = x.dim();
    if n == 0 || d == 0 {
        return Array2::zeros((n, 0));
    }
    let values: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    crate::runtime::with_threads(1, || {
        let x = Tensor::from_slice(&values).view([n as i64, d as i64]);
        let centred = &x - x.mean_dim([0i64].as_slice(), true, Kind::Double);
        let (values, vectors) = centred.tr().matmul(&centred).linalg_eigh("L");
        let values = Vec::<f64>::try_from(values).expect("double eigenvalues");
        let keep = positive(&values, components);
        let scores = centred.matmul(&vectors.index_select(1, &Tensor::from_slice(&keep)));
        to_array(&scores, n, keep.len())
    })
}

/// The distances between the first `components` principal component scores of the vectors behind `m` (PCA of a
/// clustering space, from its distances alone).
pub fn pca_distances(m: &Matrix, components: usize) -> Matrix {
    let x = embed(m);
    let c = components.min(x.ncols());
    row_distances(x.slice(s![.., ..c]))
}
