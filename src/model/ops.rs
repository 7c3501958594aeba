//! Elementwise maths whose bytes do not depend on the CPU that computes them.
//!
//! libtorch hands a float tensor's `sqrt` (and `exp`, `log`, `sin`, `tanh`, … ) to MKL's vector maths (VML). On
//! MKL's `COMPATIBLE` branch, the one it computes alike on every vendor's CPU for matrix products, VML's square root
//! is not: measured on 2026-12-08, 587 of 4,096 float square roots differed from the correctly rounded value on an
//! Intel Xeon, 445 under QEMU's emulation of an AMD EPYC, and the two sets differ; the same Adam step then gave
//! other weights, and the quickstart's model failed on 282 test images on the Xeon against 196 on an AMD EPYC.
//! (`exp`, `log`, `sigmoid` and the softmaxes computed the same bytes on both.)
//!
//! [`sqrt`] goes through ATen's own vector kernels instead: `rsqrt` is an IEEE square root and division, and
//! `reciprocal` an IEEE division, which every x86-64 CPU computes alike. `tests/it/kernels.rs` pins the bytes.

use tch::Tensor;

/// The square root of each element, within 2 units in the last place of the correctly rounded value, as
/// `1 / (1 / √x)`: the same bytes on every CPU (0 for 0, ∞ for ∞, NaN for a negative number). Use it for every
/// tensor square root; `Tensor::sqrt` takes MKL's vendor-dependent path.
pub fn sqrt(t: &Tensor) -> Tensor {
    t.rsqrt().reciprocal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn sqrt_is_within_two_units_in_the_last_place_and_keeps_the_special_values() {
        let x: Vec<f32> = (1..=20_000).map(|i| i as f32 * 0.37).collect();
        let got = Vec::<f32>::try_from(sqrt(&Tensor::from_slice(&x))).unwrap();
        for (x, g) in x.iter().zip(&got) {
            let exact = f64::from(*x).sqrt();
            let ulp = f64::from(f32::from_bits(g.to_bits() + 1) - g);
            assert!((f64::from(*g) - exact).abs() <= 2.0 * ulp, "√{x}: {g}");
        }
        let special = Tensor::from_slice(&[0.0f32, f32::INFINITY, -1.0, 4.0]);
        let got = Vec::<f32>::try_from(sqrt(&special)).unwrap();
        assert_eq!(got[0], 0.0);
        assert_eq!(got[1], f32::INFINITY);
        assert!(got[2].is_nan());
        assert_eq!(got[3], 2.0);
        let double = sqrt(&Tensor::from_slice(&[2.0f64]).to_kind(Kind::Double));
        assert!((f64::try_from(double).unwrap() - 2f64.sqrt()).abs() < 1e-15);
    }
}
