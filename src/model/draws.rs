//! The random draws a model needs (initial weights, dropout masks), taken from the stage's own seeded stream and
//! never from libtorch's generator, which is one per process: two stages side by side, or a neighbour reseeding it,
//! would otherwise change each other's bytes.
//!
//! Values are drawn on the CPU with ChaCha8 in a fixed order and copied into tensors, so they depend on the seed
//! alone: not on the thread count, the device, nor on anything else that runs in the process.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// Streams of one seed, one per use, so that adding dropout to an architecture does not move its initial weights
/// (nor the shuffles and augmentation, which `fit` draws from the seed's stream 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    Init = 1,
    Dropout = 2,
}

/// A seeded source of tensors.
#[derive(Debug, Clone)]
pub struct Draws {
    rng: ChaCha8Rng,
}

impl Draws {
    pub fn new(seed: u64, stream: Stream) -> Draws {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream as u64);
        Draws { rng }
    }

    /// Values drawn uniformly from `[lo, hi)`, as f32, on `device`.
    pub fn uniform(&mut self, shape: &[i64], lo: f64, hi: f64, device: Device) -> Tensor {
        let n = shape.iter().product::<i64>().max(0) as usize;
        let (lo, width) = (lo as f32, (hi - lo) as f32);
        let values: Vec<f32> = (0..n).map(|_| lo + width * self.rng.random::<f32>()).collect();
        Tensor::from_slice(&values).view(shape).to_device(device)
    }

    /// Standard normal values (Box-Muller on two uniforms each), as f32, on the CPU.
    pub fn normal(&mut self, shape: &[i64]) -> Tensor {
        let n = shape.iter().product::<i64>().max(0) as usize;
        let mut values = Vec::with_capacity(n + 1);
        while values.len() < n {
            let u: f64 = 1.0 - self.rng.random::<f64>();
            let v: f64 = self.rng.random::<f64>();
            let r = (-2.0 * u.ln()).sqrt();
            let theta = std::f64::consts::TAU * v;
            values.push((r * theta.cos()) as f32);
            values.push((r * theta.sin()) as f32);
        }
        values.truncate(n);
        Tensor::from_slice(&values).view(shape)
    }

    /// Inverted dropout's multiplier: each element kept with probability `1 − p` and scaled by `1 / (1 − p)`,
    /// dropped (0) otherwise, shaped like `like` and on its device (what `torch.nn.functional.dropout` multiplies by).
    pub fn dropout_mask(&mut self, like: &Tensor, p: f64) -> Tensor {
        let shape = like.size();
        let n = shape.iter().product::<i64>().max(0) as usize;
        let keep = (1.0 / (1.0 - p)) as f32;
        let p = p as f32;
        let values: Vec<f32> = (0..n).map(|_| if self.rng.random::<f32>() < p { 0.0 } else { keep }).collect();
        Tensor::from_slice(&values).view(shape.as_slice()).to_device(like.device()).to_kind(like.kind())
    }
}

/// `tensor`'s values replaced in place, without recording a gradient.
pub fn assign(tensor: &mut Tensor, values: &Tensor) {
    tch::no_grad(|| {
        tensor.copy_(&values.to_kind(tensor.kind()));
    });
}

/// The fan-in PyTorch and tch compute for a weight tensor: its second dimension times its receptive field.
pub fn fan_in(weight: &Tensor) -> f64 {
    let dims = weight.size();
    let receptive: i64 = dims.iter().skip(2).product();
    (dims.get(1).copied().unwrap_or(1) * receptive).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn the_same_seed_and_stream_give_the_same_tensors_and_other_streams_others() {
        let a = values(&Draws::new(7, Stream::Init).uniform(&[3, 4], -1.0, 1.0, Device::Cpu));
        let b = values(&Draws::new(7, Stream::Init).uniform(&[3, 4], -1.0, 1.0, Device::Cpu));
        let c = values(&Draws::new(7, Stream::Dropout).uniform(&[3, 4], -1.0, 1.0, Device::Cpu));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn a_dropout_mask_keeps_about_one_minus_p_and_preserves_the_mean() {
        let like = Tensor::zeros([200, 100], (Kind::Float, Device::Cpu));
        let mask = values(&Draws::new(3, Stream::Dropout).dropout_mask(&like, 0.25));
        let kept = mask.iter().filter(|v| **v > 0.0).count() as f64 / mask.len() as f64;
        // 20,000 Bernoulli(0.75) draws: the standard error of the share is 0.003.
        assert!((kept - 0.75).abs() < 0.015, "{kept}");
        assert!(mask.iter().all(|v| *v == 0.0 || (*v - 4.0 / 3.0).abs() < 1e-6));
        let mean = mask.iter().map(|v| f64::from(*v)).sum::<f64>() / mask.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "{mean}");
    }

    #[test]
    fn normal_draws_have_mean_zero_and_unit_variance() {
        let x = values(&Draws::new(5, Stream::Init).normal(&[10_001]));
        assert_eq!(x.len(), 10_001);
        let mean = x.iter().map(|v| f64::from(*v)).sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.04 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }
}
