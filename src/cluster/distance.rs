//! The clustering space: Euclidean distances between heatmaps through chunked matrix products (the Gram matrix's
//! upper triangle in tiles, each whole on one thread, so the bytes do not depend on the thread count), HUDD's
//! row-normalised space and the matrix its k curve is read on.

use ndarray::{Array2, Axis, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Matrix;

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
const TILE: usize = 512;

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
    // The distances straight from the tiles (no n×n Gram matrix beside them), a block of rows per task: each pair
    // from the tile that holds it as i < j (the same sum `norms[i] + norms[j]` either way round).
    let mut norms = vec![0.0f64; n];
    for (tile, &(a, b)) in tiles.iter().zip(&pairs) {
        if a == b {
            for (i, norm) in norms[blocks[a].0..blocks[a].1].iter_mut().enumerate() {
                *norm = f64::from(tile[[i, i]]);
            }
        }
    }
    let tile_of = |a: usize, b: usize| &tiles[pairs.iter().position(|&p| p == (a, b)).expect("every pair a ≤ b")];
    let mut out = Matrix::zeros((n, n));
    let flat = out.as_slice_mut().expect("standard layout");
    flat.par_chunks_mut(TILE * n).enumerate().for_each(|(a, rows)| {
        for b in 0..blocks.len() {
            let tile = if a <= b { tile_of(a, b) } else { tile_of(b, a) };
            for i in 0..blocks[a].1 - blocks[a].0 {
                for j in 0..blocks[b].1 - blocks[b].0 {
                    let (gi, gj) = (blocks[a].0 + i, blocks[b].0 + j);
                    if gi != gj {
                        let dot = if gi < gj {
                            tile[[gi - blocks[a.min(b)].0, gj - blocks[a.max(b)].0]]
                        } else {
                            tile[[gj - blocks[b].0, gi - blocks[a].0]]
                        };
                        rows[i * n + gj] = (norms[gi] + norms[gj] - 2.0 * f64::from(dot)).max(0.0).sqrt();
                    }
                }
            }
        }
    });
    Ok(out)
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
    hudd_spaces(m).0
}

/// The matrix HUDD's k curve is computed on: [`row_normalised`] read on its upper triangle only (pairs i < j, as
/// the original toolset), mirrored so that the mean over a cluster's ordered pairs equals the mean over its pairs
/// i < j.
pub fn hudd_curve_space(m: &Matrix) -> Matrix {
    hudd_spaces(m).1
}

/// [`hudd_space`] and [`hudd_curve_space`] at once, from one pass over the raw distances: each row's maximum, then
/// the normalised rows in single precision (what the product reads) and the curve's matrix (the normalised upper
/// triangle, mirrored), each value the same division [`row_normalised`] makes. At 8,000 images an n×n matrix is half
/// a gigabyte: no normalised copy is kept beside them.
pub fn hudd_spaces(m: &Matrix) -> (Matrix, Matrix) {
    let n = m.nrows();
    // Rows contiguous in memory (a copy only for a matrix that is not).
    let m = m.as_standard_layout();
    let maxes: Vec<f64> = m.outer_iter().map(|row| row.fold(0.0, |a: f64, &b| a.max(b))).collect();
    let normalised = |v: f64, max: f64| if max > 0.0 { v / max } else { v };
    let mut values = vec![0.0f32; n * n];
    let raw = m.as_slice().expect("a distance matrix in standard layout");
    (values.par_chunks_mut(n.max(1)).zip(raw.par_chunks(n.max(1))).zip(&maxes)).for_each(|((out, row), &max)| {
        for (o, &v) in out.iter_mut().zip(row) {
            *o = normalised(v, max) as f32;
        }
    });
    let space = distances::<std::convert::Infallible>(n, n, |start, width| {
        Ok(if start == 0 && width == n {
            std::mem::take(&mut values)
        } else {
            (0..n).flat_map(|i| values[i * n + start..i * n + start + width].iter().copied()).collect()
        })
    })
    .expect("infallible");
    // The upper triangle's normalised values, mirrored: below the diagonal, (i, j) holds (j, i)'s, m[j][i] divided
    // by row j's maximum, which is m[i][j] divided by it (distance matrices are symmetric: `distances` mirrors each
    // pair), so each row is read in memory order.
    let mut curve = Matrix::zeros((n, n));
    let flat = curve.as_slice_mut().expect("standard layout");
    (flat.par_chunks_mut(n.max(1)).zip(raw.par_chunks(n.max(1))).enumerate()).for_each(|(i, (out, row))| {
        for (j, (o, &v)) in out.iter_mut().zip(row).enumerate() {
            *o = normalised(v, maxes[i.min(j)]);
        }
    });
    (space, curve)
}

/// The Euclidean distances between the rows of `x`, summed coordinate by coordinate.
pub fn row_distances(x: ndarray::ArrayView2<f64>) -> Matrix {
    let n = x.nrows();
    let mut m = Matrix::zeros((n, n));
    // The upper triangle, mirrored: (a - b)² and (b - a)² are the same number.
    for i in 0..n {
        for j in i + 1..n {
            let d = x.row(i).iter().zip(x.row(j).iter()).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            m[[i, j]] = d;
            m[[j, i]] = d;
        }
    }
    m
}
