//! Training a declared model: seeded shuffling and augmentation, SGD or Adam, a held-out validation split,
//! and the per-epoch curve. Classification uses cross-entropy; keypoint models regress Gaussian heatmaps.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn, nn::OptimizerConfig};

use super::artefact::{Model, ModelError};
use super::draws::{Draws, Stream};
use crate::dataset::{Dataset, DatasetError, Target};
use crate::engine::progress::Progress;
use crate::engine::stage::StageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Sgd,
    Adam,
}

/// Light augmentation, applied per image in training batches only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Random translation by up to this many pixels (zero padding).
    #[serde(default)]
    pub shift: usize,
    /// Random brightness gain in `[1 - b, 1 + b]`.
    #[serde(default)]
    pub brightness: f64,
    /// Random horizontal flips (off by default: a flip changes the meaning of arrows and gaze).
    #[serde(default)]
    pub flip: bool,
}

/// Which epoch's weights to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The last epoch's.
    #[default]
    Last,
    /// The epoch with the best validation score (accuracy, or lowest keypoint error).
    Best,
}

#[derive(Debug, Clone)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub augment: Augment,
    pub keep: Keep,
    pub seed: u64,
}

/// The training data in memory: uint8 pixels and labels (class indices, or keypoint coordinates `x0, y0, x1, ...`).
pub struct Data {
    pub pixels: Tensor,
    pub classes: Option<Tensor>,
    pub keypoints: Option<Tensor>,
}

impl Data {
    /// The training data of a split, with a seeded validation hold-out.
    pub fn split(ds: &Dataset, rows: &[usize], validation: f64, seed: u64) -> Result<(Data, Data), DatasetError> {
        let mut rows = rows.to_vec();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_7a11);
        rows.shuffle(&mut rng);
        let n_val = ((rows.len() as f64) * validation).round() as usize;
        let (val, train) = rows.split_at(n_val.min(rows.len()));
        let mut train = train.to_vec();
        let mut val = val.to_vec();
        train.sort_unstable();
        val.sort_unstable();
        Ok((Data::of(ds, &train)?, Data::of(ds, &val)?))
    }

    /// Pixels and labels of the given rows, in memory.
    pub fn of(ds: &Dataset, rows: &[usize]) -> Result<Data, DatasetError> {
        let m = &ds.meta;
        let pixels = ds.images(rows)?;
        let pixels =
            Tensor::from_slice(&pixels).view([rows.len() as i64, m.channels as i64, m.height as i64, m.width as i64]);
        match &m.target {
            Target::Classification { .. } => {
                let all = ds.class_labels()?;
                let y: Vec<i64> = rows.iter().map(|&r| all[r]).collect();
                Ok(Data { pixels, classes: Some(Tensor::from_slice(&y)), keypoints: None })
            }
            Target::Regression { targets } => {
                let all = ds.targets()?;
                let flat: Vec<f32> = rows.iter().flat_map(|&r| all[r].iter().copied()).collect();
                let kp = Tensor::from_slice(&flat).view([rows.len() as i64, targets.len() as i64]);
                Ok(Data { pixels, classes: None, keypoints: Some(kp) })
            }
        }
    }

    pub fn len(&self) -> usize {
        self.pixels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One row of the training curve.
#[derive(Debug, Clone, Serialize)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: f64,
    /// Accuracy (classification) or mean keypoint error in pixels (keypoints), on the training batches.
    pub train_score: f64,
    /// The same on the validation split (NaN without one).
    pub val_score: f64,
    pub seconds: f64,
}

/// Whether a higher score is better (accuracy) or a lower one (keypoint error).
pub fn better(a: f64, b: f64, keypoints: bool) -> bool {
    if b.is_nan() {
        return !a.is_nan();
    }
    if keypoints { a < b } else { a > b }
}

/// Per-channel mean and standard deviation of pixels in `0..=1`.
pub fn channel_stats(pixels: &Tensor) -> (Vec<f32>, Vec<f32>) {
    let x = pixels.to_kind(Kind::Float) / 255.0;
    let mean = x.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float);
    let std = x.std_dim([0i64, 2, 3].as_slice(), false, false).clamp_min(1e-3);
    (Vec::<f32>::try_from(&mean).unwrap_or_default(), Vec::<f32>::try_from(&std).unwrap_or_default())
}

/// SGD (libtorch's, which only multiplies and adds), or Adam (written here, see [`Adam`]).
enum Optimizer {
    Sgd(nn::Optimizer),
    Adam(Adam),
}

impl Optimizer {
    fn backward_step(&mut self, loss: &Tensor) {
        match self {
            Optimizer::Sgd(opt) => opt.backward_step(loss),
            Optimizer::Adam(opt) => opt.backward_step(loss),
        }
    }
}

/// Adam (Kingma and Ba, 2015) with L2 weight decay and PyTorch's defaults (β₁ 0.9, β₂ 0.999, ε 1e-8), step for step
/// as `torch.optim.Adam` and libtorch's C++ Adam, but for the square root of the second moment: theirs calls
/// `Tensor::sqrt`, whose bytes depend on the CPU's vendor ([`super::ops`]); this one takes [`super::ops::sqrt`].
/// Public for `benches/kernels.rs`, which times it beside libtorch's.
pub struct Adam {
    params: Vec<Tensor>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    steps: i32,
    lr: f64,
    weight_decay: f64,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    /// Adam over `params` (leaf tensors that require gradients), moments zero.
    pub fn new(params: Vec<Tensor>, lr: f64, weight_decay: f64) -> Adam {
        let zeros = |p: &Tensor| tch::no_grad(|| p.zeros_like());
        let first = params.iter().map(zeros).collect();
        let second = params.iter().map(zeros).collect();
        Adam { params, first, second, steps: 0, lr, weight_decay }
    }

    /// Zeroes the gradients, back-propagates `loss` and takes one step.
    pub fn backward_step(&mut self, loss: &Tensor) {
        for p in &mut self.params {
            p.zero_grad();
        }
        loss.backward();
        self.steps += 1;
        let correction1 = 1.0 - Self::BETA1.powi(self.steps);
        let correction2 = 1.0 - Self::BETA2.powi(self.steps);
        let step_size = self.lr / correction1;
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.first).zip(&mut self.second) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = if self.weight_decay != 0.0 { grad + &*p * self.weight_decay } else { grad };
                let _ = m.g_mul_scalar_(Self::BETA1).g_add_(&(&grad * (1.0 - Self::BETA1)));
                let _ = v.g_mul_scalar_(Self::BETA2).g_add_(&(grad.square() * (1.0 - Self::BETA2)));
                let denom = super::ops::sqrt(v) / correction2.sqrt() + Self::EPS;
                let _ = p.g_sub_(&(&*m / denom * step_size));
            }
        });
    }
}

/// Trains `model` in place; returns the curve. `val` may be empty.
pub fn fit(
    model: &mut Model,
    train: &Data,
    val: &Data,
    cfg: &FitConfig,
    progress: &Progress,
) -> Result<Vec<Epoch>, ModelError> {
    // Shuffles and augmentation draw from the seed's stream 0, dropout masks from their own stream: nothing comes
    // from libtorch's process-wide generator, so trainings side by side keep their bytes.
    let mut dropout = Draws::new(cfg.seed, Stream::Dropout);
    let keypoints = train.keypoints.is_some();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let vs = model.var_store().expect("training needs a declared model");
    let mut opt = match cfg.optimizer {
        OptimizerKind::Sgd => Optimizer::Sgd(
            nn::Sgd { momentum: cfg.momentum, dampening: 0.0, wd: cfg.weight_decay, nesterov: false }
                .build(vs, cfg.lr)
                .map_err(|e| ModelError::Invalid { path: "optimizer".into(), message: e.to_string() })?,
        ),
        OptimizerKind::Adam => Optimizer::Adam(Adam::new(vs.trainable_variables(), cfg.lr, cfg.weight_decay)),
    };
    let n = train.len();
    let batches = n.div_ceil(cfg.batch_size.max(1));
    let mut curve = Vec::new();
    let mut best: Option<(f64, Vec<(String, Tensor)>)> = None;
    for epoch in 1..=cfg.epochs {
        let started = std::time::Instant::now();
        progress.start(batches as u64, &format!("epoch {epoch}/{}", cfg.epochs));
        let mut order: Vec<i64> = (0..n as i64).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut score_sum, mut seen) = (0.0, 0.0, 0usize);
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            let idx = Tensor::from_slice(chunk);
            let pixels = augment(&train.pixels.index_select(0, &idx), &cfg.augment, &mut rng);
            let x = model.preprocess(&pixels);
            let out = model.forward_train(&x, &mut dropout)?;
            let (loss, score) = loss_and_score(&out, train, &idx, model)?;
            opt.backward_step(&loss);
            loss_sum += f64::try_from(&loss).unwrap_or(f64::NAN) * chunk.len() as f64;
            score_sum += score * chunk.len() as f64;
            seen += chunk.len();
            progress.inc(1);
        }
        let val_score = if val.is_empty() { f64::NAN } else { evaluate(model, val)? };
        let row = Epoch {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            train_score: score_sum / seen.max(1) as f64,
            val_score,
            seconds: started.elapsed().as_secs_f64(),
        };
        progress.message(&format!(
            "epoch {epoch}: loss {:.4}, train {:.4}, val {:.4}",
            row.loss, row.train_score, row.val_score
        ));
        if cfg.keep == Keep::Best && best.as_ref().is_none_or(|(b, _)| better(val_score, *b, keypoints)) {
            let vs = model.var_store().expect("declared");
            let snapshot = vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect();
            best = Some((val_score, snapshot));
        }
        curve.push(row);
    }
    if let Some((_, snapshot)) = best {
        let vs = model.var_store_mut().expect("declared");
        let mut vars = vs.variables();
        tch::no_grad(|| {
            for (name, t) in snapshot {
                if let Some(v) = vars.get_mut(&name) {
                    v.copy_(&t);
                }
            }
        });
    }
    Ok(curve)
}

fn augment(pixels: &Tensor, a: &Augment, rng: &mut ChaCha8Rng) -> Tensor {
    if a.shift == 0 && a.brightness == 0.0 && !a.flip {
        return pixels.shallow_clone();
    }
    let n = pixels.size()[0];
    let (h, w) = (pixels.size()[2], pixels.size()[3]);
    let s = a.shift as i64;
    let padded = if s > 0 { pixels.constant_pad_nd([s, s, s, s]) } else { pixels.shallow_clone() };
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (dx, dy) = if s > 0 { (rng.random_range(0..=2 * s), rng.random_range(0..=2 * s)) } else { (0, 0) };
        let mut img = padded.get(i).narrow(1, dy, h).narrow(2, dx, w);
        if a.flip && rng.random_bool(0.5) {
            img = img.flip([2]);
        }
        if a.brightness > 0.0 {
            let g = rng.random_range(1.0 - a.brightness..=1.0 + a.brightness);
            img = (img.to_kind(Kind::Float) * g).clamp(0.0, 255.0).to_kind(Kind::Uint8);
        }
        out.push(img);
    }
    Tensor::stack(&out, 0)
}

/// The loss to minimise and the batch's score (accuracy, or mean keypoint error in pixels).
fn loss_and_score(out: &Tensor, data: &Data, idx: &Tensor, model: &Model) -> Result<(Tensor, f64), ModelError> {
    if let Some(classes) = &data.classes {
        let y = classes.index_select(0, idx).to_device(out.device());
        let loss = out.cross_entropy_for_logits(&y);
        let acc =
            f64::try_from(out.argmax(-1, false).eq_tensor(&y).to_kind(Kind::Float).mean(Kind::Float)).unwrap_or(0.0);
        Ok((loss, acc))
    } else {
        let kp = data
            .keypoints
            .as_ref()
            .expect("a dataset has classes or keypoints")
            .index_select(0, idx)
            .to_device(out.device());
        let target = gaussian_maps(&kp, &out.size(), model.meta.input);
        let loss = out.mse_loss(&target, tch::Reduction::Mean) * 1000.0;
        let pred = keypoints_from_maps(&out.detach(), model.meta.input);
        let err = f64::try_from(keypoint_errors(&pred, &kp).mean(Kind::Float)).unwrap_or(f64::NAN);
        Ok((loss, err))
    }
}

/// Validation score of a model on a dataset (evaluation mode, no gradients).
pub fn evaluate(model: &Model, data: &Data) -> Result<f64, ModelError> {
    tch::no_grad(|| {
        let n = data.len() as i64;
        let mut total = 0.0;
        for start in (0..n).step_by(256) {
            let len = (n - start).min(256);
            let idx = Tensor::arange_start(start, start + len, (Kind::Int64, tch::Device::Cpu));
            let x = model.preprocess(&data.pixels.index_select(0, &idx));
            let out = model.forward(&x)?;
            let (_, score) = loss_and_score(&out, data, &idx, model)?;
            total += score * len as f64;
        }
        Ok(total / n.max(1) as f64)
    })
}

/// Gaussian target maps (sd 1.5 output pixels) around keypoints given in input pixels, shaped like the output.
pub fn gaussian_maps(kp: &Tensor, out_size: &[i64], input: [usize; 3]) -> Tensor {
    let (n, k, h, w) = (out_size[0], out_size[1], out_size[2], out_size[3]);
    let sx = w as f64 / input[2] as f64;
    let sy = h as f64 / input[1] as f64;
    let kp = kp.view([n, k, 2]).to_kind(Kind::Float);
    let x = kp.select(2, 0) * sx;
    let y = kp.select(2, 1) * sy;
    let opts = (Kind::Float, kp.device());
    let xs = Tensor::arange(w, opts).view([1, 1, 1, w]) + 0.5;
    let ys = Tensor::arange(h, opts).view([1, 1, h, 1]) + 0.5;
    let dx = xs - x.view([n, k, 1, 1]);
    let dy = ys - y.view([n, k, 1, 1]);
    ((dx.square() + dy.square()) / (-2.0 * 1.5 * 1.5)).exp()
}

/// HUDD's decoding: a keypoint is the weighted mean of the 64 strongest pixels of its map, in input pixels.
pub fn keypoints_from_maps(maps: &Tensor, input: [usize; 3]) -> Tensor {
    let size = maps.size();
    let (n, k, h, w) = (size[0], size[1], size[2], size[3]);
    let flat = maps.view([n, k, h * w]);
    let top = 64.min(h * w);
    let (values, idx) = flat.topk(top, -1, true, true);
    let weights = values.clamp_min(0.0) + 1e-6;
    let xs = (idx.remainder(w).to_kind(Kind::Float) + 0.5) * (input[2] as f64 / w as f64);
    let ys = (idx.floor_divide_scalar(w).to_kind(Kind::Float) + 0.5) * (input[1] as f64 / h as f64);
    let total = weights.sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
    let x = (&xs * &weights).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float) / &total;
    let y = (&ys * &weights).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float) / &total;
    Tensor::stack(&[x, y], -1)
}

/// Euclidean error of each keypoint, N×K, from predictions N×K×2 and targets `x0, y0, x1, ...` (N×2K).
pub fn keypoint_errors(pred: &Tensor, target: &Tensor) -> Tensor {
    let size = pred.size();
    let t = target.view([size[0], size[1], 2]).to_kind(Kind::Float).to_device(pred.device());
    super::ops::sqrt(&(pred - t).square().sum_dim_intlist([-1i64].as_slice(), false, Kind::Float))
}

/// Why a fit failed.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A quality gate: the stage reports it with exit code 1.
    #[error("{what} diverged (loss is not finite); lower lr (now {lr})")]
    Diverged { what: String, lr: f64 },
}

impl From<FitError> for StageError {
    fn from(e: FitError) -> Self {
        match e {
            FitError::Diverged { .. } => StageError::Gate { message: e.to_string() },
            other => StageError::artefact(other),
        }
    }
}

/// The defaults that training and retraining share.
pub mod defaults {
    pub fn default_split() -> String {
        "train".into()
    }
    pub fn default_epochs() -> usize {
        10
    }
    pub fn default_momentum() -> f64 {
        0.9
    }
    pub fn default_wd() -> f64 {
        5e-4
    }
    pub fn default_validation() -> f64 {
        0.1
    }
    pub fn default_threads() -> usize {
        1
    }
}

/// Fits a model and fails when the loss stopped being finite (`what`: training, retraining).
pub fn fit_finite(
    model: &mut Model,
    train: &Data,
    val: &Data,
    cfg: &FitConfig,
    progress: &Progress,
    what: &str,
) -> Result<Vec<Epoch>, FitError> {
    let curve = fit(model, train, val, cfg, progress)?;
    if curve.iter().any(|e| !e.loss.is_finite()) {
        return Err(FitError::Diverged { what: what.to_string(), lr: cfg.lr });
    }
    Ok(curve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_steps_as_torch_optim_adam_does() {
        // tests/fixtures/adam_ref.py: three steps of torch.optim.Adam (L2 weight decay) on 64 parameters with fixed
        // gradients. Only the square roots differ (ours are ATen's, torch's MKL's), by a unit in the last place.
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/adam_ref.json")).expect("the reference parses");
        let floats = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
        };
        let p = Tensor::from_slice(&floats(&reference["initial"])).set_requires_grad(true);
        let mut adam = Adam::new(vec![p.shallow_clone()], 1e-3, 5e-4);
        for step in reference["steps"].as_array().unwrap() {
            let grad = Tensor::from_slice(&floats(&step["grad"]));
            adam.backward_step(&(&p * &grad).sum(Kind::Float));
            let ours = Vec::<f32>::try_from(p.detach()).unwrap();
            for (a, b) in ours.iter().zip(floats(&step["param"])) {
                assert!((a - b).abs() <= 1e-6, "{a} against torch's {b}");
            }
        }
    }
}
