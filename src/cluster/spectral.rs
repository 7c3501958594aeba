//! A spectral embedding of the images (SpRAy's, and scikit-learn's `SpectralEmbedding` with a nearest-neighbours
//! affinity): a k-nearest-neighbour graph of the clustering space, symmetrised, its normalised Laplacian, and the
//! eigenvectors of its smallest eigenvalues (the first, constant one dropped), each divided by the square root of
//! its image's degree and signed so that its largest entry is positive. Causes that form connected groups of
//! images, whatever their shape in the original space, become compact groups in the embedding.

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Matrix;

/// The embedding's settings (CoRelAy's defaults: 10 neighbours, 32 eigenvectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spectral {
    /// Images each image links to in the graph, itself included (scikit-learn's `n_neighbors`).
    #[serde(default = "default_neighbours")]
    pub neighbours: usize,
    /// Coordinates kept (scikit-learn's `n_components`).
    #[serde(default = "default_dimensions")]
    pub dimensions: usize,
}

fn default_neighbours() -> usize {
    10
}
fn default_dimensions() -> usize {
    32
}

/// An embedding and the Laplacian's smallest eigenvalues, ascending (the constant eigenvector's 0 first, then one per
/// coordinate).
#[derive(Debug, Clone)]
pub struct Embedded {
    pub coordinates: Array2<f64>,
    pub eigenvalues: Vec<f64>,
}

/// The k (from 2 to `max_k`, at most one fewer than the eigenvalues) after which the next eigenvalue rises most:
/// `eigenvalues[k] − eigenvalues[k − 1]` largest, ties to the smaller k.
pub fn eigengap(eigenvalues: &[f64], max_k: usize) -> usize {
    let last = max_k.min(eigenvalues.len().saturating_sub(1));
    (2..=last).fold(2, |b, k| {
        let gap = |k: usize| eigenvalues[k] - eigenvalues[k - 1];
        if gap(k) > gap(b) { k } else { b }
    })
}

/// The embedding of the images whose distances are `m`: `n × min(dimensions, n − 1)` coordinates.
pub fn embedding(m: &Matrix, spectral: Spectral) -> Embedded {
    let n = m.nrows();
    let dims = spectral.dimensions.min(n.saturating_sub(1));
    if dims == 0 {
        return Embedded { coordinates: Array2::zeros((n, 0)), eigenvalues: vec![0.0; n.min(1)] };
    }
    let k = spectral.neighbours.clamp(1, n);
    // Connectivity to the k nearest images (the image itself first: its distance is 0; ties to the lower index).
    let mut w = vec![0.0f64; n * n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for i in 0..n {
        order.clear();
        order.extend(0..n);
        let closer =
            |a: &usize, b: &usize| (*a != i).cmp(&(*b != i)).then(m[[i, *a]].total_cmp(&m[[i, *b]])).then(a.cmp(b));
        if k < n {
            order.select_nth_unstable_by(k - 1, closer);
        }
        for &j in &order[..k] {
            w[i * n + j] += 0.5;
            w[j * n + i] += 0.5;
        }
    }
    // The normalised Laplacian, the graph's self-loops ignored (as scipy's `laplacian(normed=True)`).
    let degree_root: Vec<f64> = (0..n)
        .map(|i| {
            let d: f64 = (0..n).filter(|&j| j != i).map(|j| w[i * n + j]).sum();
            if d > 0.0 { d.sqrt() } else { 1.0 }
        })
        .collect();
    // In place: the weights become the Laplacian (one n×n matrix in memory, not two).
    for (ij, v) in w.iter_mut().enumerate() {
        let (i, j) = (ij / n, ij % n);
        *v = if i == j { 1.0 } else { -*v / (degree_root[i] * degree_root[j]) };
    }
    let l = Tensor::from_slice(&w).view([n as i64, n as i64]);
    // One libtorch thread: LAPACK's sums then do not depend on the thread count the stage was given.
    let (values, vectors) = crate::runtime::with_threads(1, || l.linalg_eigh("L"));
    let values = Vec::<f64>::try_from(values.to_kind(Kind::Double)).expect("double eigenvalues");
    let vectors = Vec::<f64>::try_from(vectors.to_kind(Kind::Double).flatten(0, -1)).expect("double eigenvectors");
    // Eigenvalues ascending: column 0 is the constant (dropped), then the `dims` next.
    let mut out = Array2::<f64>::zeros((n, dims));
    for c in 0..dims {
        let column: Vec<f64> = (0..n).map(|i| vectors[i * n + c + 1] / degree_root[i]).collect();
        let largest = column.iter().copied().reduce(|a, b| if b.abs() > a.abs() { b } else { a }).unwrap_or(0.0);
        let sign = if largest < 0.0 { -1.0 } else { 1.0 };
        for (i, v) in column.into_iter().enumerate() {
            out[[i, c]] = sign * v;
        }
    }
    Embedded { coordinates: out, eigenvalues: values[..=dims].to_vec() }
}

#[cfg(test)]
mod tests {
    use super::eigengap;

    #[test]
    fn the_eigengap_counts_the_eigenvalues_near_zero() {
        // Three groups: three eigenvalues near 0, then a jump.
        assert_eq!(eigengap(&[0.0, 0.01, 0.02, 0.6, 0.65, 0.7], 5), 3);
        // The jump beyond the largest k allowed is not seen; ties go to the smaller k; at least 2.
        assert_eq!(eigengap(&[0.0, 0.01, 0.02, 0.6, 0.65, 0.7], 2), 2);
        assert_eq!(eigengap(&[0.0, 0.1, 0.2, 0.3], 3), 2);
        assert_eq!(eigengap(&[0.0, 0.5], 10), 2);
    }
}
