//! A map of the clustered images: classical (Torgerson) multidimensional scaling of their pairwise distances at the
//! clustered layer, two axes, so that the report can draw every failing image as a point where its distances put
//! it. The two largest eigenpairs of B = −½ J D² J are found by power iteration (the second deflated against the
//! first), with B applied without being formed (J centres a vector; D² is read from the f32 distances), so the map
//! of n images costs O(n²) memory for the distances alone. Deterministic: a fixed start vector, a fixed number of
//! sums in a fixed order, and each axis signed so that its largest absolute coordinate is positive.

/// Power iterations at most per axis; they stop earlier once the vector moves by less than [`TOLERANCE`].
const ITERATIONS: usize = 1000;
const TOLERANCE: f64 = 1e-20;

/// Each image's two coordinates, and the two eigenvalues (the variance each axis holds, in squared distance units).
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub eigenvalues: [f64; 2],
}

/// The map of `n` images from their pairwise distances, row by row (n × n).
pub fn classical_mds(distances: &[f32], n: usize) -> Map {
    assert_eq!(distances.len(), n * n, "an n × n distance matrix");
    // D² squared on the fly (the same products every time): no second n × n copy in memory.
    let apply = |v: &[f64]| -> Vec<f64> {
        let mean = v.iter().sum::<f64>() / n.max(1) as f64;
        let centred: Vec<f64> = v.iter().map(|x| x - mean).collect();
        let w: Vec<f64> = (distances.chunks(n.max(1)))
            .map(|row| row.iter().zip(&centred).map(|(&d, c)| f64::from(d) * f64::from(d) * c).sum())
            .collect();
        let mean_w = w.iter().sum::<f64>() / n.max(1) as f64;
        w.iter().map(|x| -0.5 * (x - mean_w)).collect()
    };
    let (first, l1) = largest(&apply, n, None);
    let (second, l2) = largest(&apply, n, Some(&first));
    let axis = |v: &[f64], l: f64| signed(v.iter().map(|x| x * l.max(0.0).sqrt()).collect());
    Map { x: axis(&first, l1), y: axis(&second, l2), eigenvalues: [l1, l2] }
}

/// The unit eigenvector of the largest eigenvalue of the symmetric operator `apply` (orthogonal to `against`), and
/// that eigenvalue. B is positive semi-definite on centred vectors for Euclidean distances; for others its largest
/// eigenvalues are still the ones power iteration finds, as long as they dominate the negative ones.
fn largest(apply: &dyn Fn(&[f64]) -> Vec<f64>, n: usize, against: Option<&[f64]>) -> (Vec<f64>, f64) {
    // A start vector with no symmetry, the same every run.
    let mut v: Vec<f64> = (0..n).map(|i| 1.0 + ((i * 7919) % 104_729) as f64 / 104_729.0).collect();
    let project = |v: &mut Vec<f64>| {
        if let Some(u) = against {
            let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
        }
    };
    let normalise = |v: &mut Vec<f64>| {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
    };
    // Projected twice: when B leaves little outside `against` (points on a line), the first projection's result is
    // its own rounding error, no longer orthogonal; projecting the normalised vector again makes it so.
    let orthonormal = |v: &mut Vec<f64>| {
        for _ in 0..2 {
            project(v);
            normalise(v);
        }
    };
    orthonormal(&mut v);
    for _ in 0..ITERATIONS {
        let mut next = apply(&v);
        orthonormal(&mut next);
        let moved = next.iter().zip(&v).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
        v = next;
        if moved < TOLERANCE {
            break;
        }
    }
    let bv = apply(&v);
    let eigenvalue = v.iter().zip(&bv).map(|(a, b)| a * b).sum();
    (v, eigenvalue)
}

/// The axis with its largest absolute coordinate made positive (an eigenvector's sign is arbitrary).
fn signed(v: Vec<f64>) -> Vec<f64> {
    let largest = v.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
    if largest < 0.0 { v.into_iter().map(|x| -x).collect() } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against numpy's `eigh` of B on three sets of points in three groups (`tests/fixtures/mds_ref.py`).
    #[test]
    fn the_map_matches_classical_mds_by_numpy() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mds_ref.json")).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        for case in doc["cases"].as_array().unwrap() {
            let n = case["n"].as_u64().unwrap() as usize;
            let d: Vec<f32> =
                case["distances"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            let map = classical_mds(&d, n);
            let want =
                |key: &str| -> Vec<f64> { case[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
            for (got, want) in [(&map.x, want("x")), (&map.y, want("y"))] {
                let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                let scale = want.iter().map(|x| x.abs()).fold(0.0, f64::max);
                assert!(worst <= 1e-5 * scale.max(1.0), "n = {n}: coordinates off by {worst} (scale {scale})");
            }
            let eig = case["eigenvalues"].as_array().unwrap();
            for (got, want) in map.eigenvalues.iter().zip(eig) {
                let want = want.as_f64().unwrap();
                assert!((got - want).abs() <= 1e-8 * want.abs().max(1.0), "n = {n}: eigenvalue {got} against {want}");
            }
        }
    }

    #[test]
    fn points_on_a_line_lie_on_the_first_axis_in_their_order() {
        let at = [0.0f32, 1.0, 3.0, 7.0];
        let d: Vec<f32> = at.iter().flat_map(|a| at.iter().map(move |b| (a - b).abs())).collect();
        let map = classical_mds(&d, 4);
        assert!(map.y.iter().all(|y| y.abs() < 1e-6), "{:?}", map.y);
        let gaps: Vec<f64> = map.x.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
        for (g, want) in gaps.iter().zip([1.0, 2.0, 4.0]) {
            assert!((g - want).abs() < 1e-6, "{gaps:?}");
        }
    }

    #[test]
    fn one_image_or_none_maps_to_the_origin() {
        assert_eq!(classical_mds(&[0.0], 1).x, [0.0]);
        assert!(classical_mds(&[], 0).x.is_empty());
    }
}
