//! Choosing the number of clusters: the kneedle algorithm (Satopää et al. 2011) as the `kneed` package computes it
//! for a concave, increasing curve (HUDD's setting), and HUDD's smoothing of the WICD curve's derivative.

/// The 4th-order central difference of a curve sampled at unit steps, `(y[i−2] − 8y[i−1] + 8y[i+1] − y[i+2]) / 12`,
/// at every point with two neighbours on each side (so it is 4 shorter than `y`). HUDD divides the stencil by
/// another constant; kneedle normalises the curve, so the knee does not depend on it.
pub fn smoothed_derivative(y: &[f64]) -> Vec<f64> {
    y.windows(5).map(|w| (w[0] - 8.0 * w[1] + 8.0 * w[3] - w[4]) / 12.0).collect()
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
    fn the_derivative_of_a_cubic_is_exact() {
        // The 5-point stencil is exact for polynomials up to degree 4.
        let y: Vec<f64> = (0..8).map(|i| f64::from(i).powi(3)).collect();
        let d = smoothed_derivative(&y);
        assert_eq!(d.len(), 4);
        for (i, v) in d.iter().enumerate() {
            let x = (i + 2) as f64;
            assert!((v - 3.0 * x * x).abs() < 1e-9, "{d:?}");
        }
    }

    #[test]
    fn a_constant_or_straight_curve_has_no_knee() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(kneedle(&x, &[1.0; 10], 1.0), None);
        assert_eq!(kneedle(&x, &x, 1.0), None);
        assert_eq!(kneedle(&[1.0], &[2.0], 1.0), None);
    }
}
