//! Choosing the number of clusters: the kneedle algorithm (Satopää et al. 2011) as the `kneed` package computes it
//! for a concave, increasing curve (HUDD's setting) and a convex, increasing one (DBSCAN's k-distance curve), and the
//! gradient of the WICD curve that HUDD runs it on.

/// The original toolset's `gradientO4(y, dx)`: 4th-order central differences `(y[i−2] − 8y[i−1] + 8y[i+1] −
/// y[i+2]) / 12` inside, first differences `y[1] − y[0]`, `y[2] − y[1]` and `y[n−2] − y[n−3]`, `y[n−1] − y[n−2]`
/// for the two points at each end, everything divided by `dx`; as long as `y`. `None` for fewer than 5 points.
pub fn gradient_o4(y: &[f64], dx: f64) -> Option<Vec<f64>> {
    let n = y.len();
    if n < 5 {
        return None;
    }
    let mut out = vec![0.0; n];
    for i in 2..n - 2 {
        out[i] = (y[i - 2] - 8.0 * y[i - 1] + 8.0 * y[i + 1] - y[i + 2]) / 12.0;
    }
    out[0] = y[1] - y[0];
    out[1] = y[2] - y[1];
    out[n - 2] = y[n - 2] - y[n - 3];
    out[n - 1] = y[n - 1] - y[n - 2];
    Some(out.into_iter().map(|v| v / dx).collect())
}

/// Index of the knee of a concave, increasing curve `y(x)` (x ascending), with sensitivity `s` (kneed's `S`);
/// `None` where kneedle finds none (a straight or constant curve, too few points).
pub fn kneedle(x: &[f64], y: &[f64], s: f64) -> Option<usize> {
    assert_eq!(x.len(), y.len(), "one y per x");
    let (xn, yn) = (normalise(x)?, normalise(y)?);
    let n = xn.len();
    if n < 2 {
        return None;
    }
    // The difference curve and its local extrema (neighbours beyond the ends count as equal, as numpy's `clip`).
    let diff: Vec<f64> = yn.iter().zip(&xn).map(|(y, x)| y - x).collect();
    let at = |i: isize| diff[i.clamp(0, n as isize - 1) as usize];
    let maximum = |i: usize| diff[i] >= at(i as isize - 1) && diff[i] >= at(i as isize + 1);
    let minimum = |i: usize| diff[i] <= at(i as isize - 1) && diff[i] <= at(i as isize + 1);
    let first = (0..n).find(|&i| maximum(i))?;
    let step = ((xn[n - 1] - xn[0]) / (n - 1) as f64).abs();
    let (mut threshold, mut threshold_index, mut active) = (0.0, first, true);
    for i in first..n - 1 {
        if maximum(i) {
            threshold = diff[i] - s * step;
            threshold_index = i;
            active = true;
        }
        if minimum(i) {
            threshold = 0.0;
            active = false;
        }
        if active && diff[i + 1] < threshold {
            return Some(threshold_index);
        }
    }
    None
}

/// Index of the knee of a convex, increasing curve (as kneed's `curve="convex", direction="increasing"`: the curve
/// flipped into a concave, increasing one, `max − y` reversed, and the index mapped back); `None` where none is found.
pub fn kneedle_convex(x: &[f64], y: &[f64], s: f64) -> Option<usize> {
    let hi = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let flipped: Vec<f64> = y.iter().rev().map(|v| hi - v).collect();
    kneedle(x, &flipped, s).map(|i| y.len() - 1 - i)
}

/// `(v − min) / (max − min)`, or `None` for a constant (or non-finite) curve.
fn normalise(v: &[f64]) -> Option<Vec<f64>> {
    let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let range = hi - lo;
    (range > 0.0 && range.is_finite()).then(|| v.iter().map(|x| (x - lo) / range).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_of_a_cubic_is_exact_inside() {
        // The 5-point stencil is exact for polynomials up to degree 4; the ends are first differences.
        let y: Vec<f64> = (0..8).map(|i| f64::from(i).powi(3)).collect();
        let g = gradient_o4(&y, 1.0).unwrap();
        assert_eq!(g.len(), 8);
        for (i, v) in g.iter().enumerate().take(6).skip(2) {
            assert!((v - 3.0 * (i * i) as f64).abs() < 1e-9, "{g:?}");
        }
        assert_eq!([g[0], g[1], g[6], g[7]], [1.0, 7.0, 91.0, 127.0]);
        assert_eq!(gradient_o4(&y, 4.0).unwrap()[7], 127.0 / 4.0);
        assert_eq!(gradient_o4(&y[..4], 1.0), None);
    }

    #[test]
    fn a_constant_or_straight_curve_has_no_knee() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(kneedle(&x, &[1.0; 10], 1.0), None);
        assert_eq!(kneedle(&x, &x, 1.0), None);
        assert_eq!(kneedle(&[1.0], &[2.0], 1.0), None);
    }
}
