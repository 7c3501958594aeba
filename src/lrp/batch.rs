//! LRP over a dataset, batch by batch: a declared model prepared for it (input checked, batch norms merged), the
//! seed at the output (a class logit or keypoint maps), and the relevance at every layer's input for each batch.
//! The `heatmaps` stage streams it to disk; the `select` stage measures candidates against clusters with it.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Rule;
use crate::dataset::{Dataset, DatasetError, Target};
use crate::engine::stage::StageError;
use crate::model::artefact::{Model, ModelError};
use crate::model::fit::keypoints_from_maps;

/// Why LRP could not run over a dataset.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The model and the images do not fit together.
    #[error("{0}")]
    Shape(String),
    /// Merging batch norms changed the model's outputs: a quality gate.
    #[error("{0}")]
    Canonisation(String),
}

impl From<BatchError> for StageError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Canonisation(message) => StageError::Gate { message },
            BatchError::Shape(message) => StageError::Input { message },
            other => StageError::artefact(other),
        }
    }
}

/// What the relevance starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Seed {
    /// The predicted class's logit, every other output zero (HUDD). Keypoints: the worst keypoint's map (HUDD).
    #[default]
    Predicted,
    /// The true class's logit. Keypoints: every map.
    True,
    /// 1 at the predicted class.
    PredictedOneHot,
    /// 1 at the true class.
    TrueOneHot,
    /// Keypoints: the map whose peak is lowest, the keypoint the model is least sure of; it reads no labels, so
    /// unlabelled images can be seeded like labelled ones. Classes: the predicted class's logit, as `predicted`.
    LeastConfident,
}

impl Seed {
    /// Whether the seed reads the images' labels, which a selection of unlabelled images cannot: the true class,
    /// and for keypoint models `predicted`, which finds the worst keypoint by its ground truth.
    pub fn reads_labels(self, keypoints: bool) -> bool {
        match self {
            Seed::True | Seed::TrueOneHot => true,
            Seed::Predicted | Seed::PredictedOneHot => keypoints,
            Seed::LeastConfident => false,
        }
    }
}

/// Runs LRP over some rows of a dataset, batch by batch: `sink` gets the batch's rows, the seed and the relevance
/// at the input of every layer. The model must be declared and canonised ([`prepare`]).
pub fn for_each_batch<E: From<BatchError>>(
    model: &Model,
    ds: &Dataset,
    rows: &[usize],
    rules: &[Rule],
    seed_with: Seed,
    batch: usize,
    mut sink: impl FnMut(&[usize], &Tensor, &[Tensor]) -> Result<(), E>,
) -> Result<(), E> {
    let net = model.net("LRP").map_err(BatchError::from)?;
    let labels = match &ds.meta.target {
        Target::Classification { .. } => ds.class_labels().map_err(BatchError::from)?,
        Target::Regression { .. } => Vec::new(),
    };
    let targets = ds.targets().map_err(BatchError::from)?;
    let [c, h, w] = model.meta.input.map(|v| v as i64);
    for chunk in rows.chunks(batch.max(1)) {
        let pixels = ds.images(chunk).map_err(BatchError::from)?;
        let x = model.preprocess(&Tensor::from_slice(&pixels).view([chunk.len() as i64, c, h, w]));
        let y = tch::no_grad(|| net.forward(&x));
        let seed = seed_of(&y, seed_with, chunk, &labels, &targets, model.meta.input);
        sink(chunk, &seed, &super::relevance(net, &x, &seed, rules))?;
    }
    Ok(())
}

/// Loads a declared model for LRP on a dataset's images (`what` names the stage in the error for a model without
/// declared layers): the input shape checked, batch norms merged (canonised)
/// with the outputs checked unchanged on the first `batch` images.
pub fn prepare(
    path: &std::path::Path,
    device: tch::Device,
    ds: &Dataset,
    batch: usize,
    what: &str,
) -> Result<Model, BatchError> {
    let mut model = Model::load(path, device)?;
    model.net(what)?;
    let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
    if model.meta.input != input {
        return Err(BatchError::Shape(format!(
            "the model takes {:?} images, the image set has {input:?}",
            model.meta.input
        )));
    }
    canonise(&mut model, ds, batch)?;
    Ok(model)
}

/// Merges batch norms into their convolutions and checks, on the first batch, that the outputs did not change.
fn canonise(model: &mut Model, ds: &Dataset, batch: usize) -> Result<(), BatchError> {
    let rows: Vec<usize> = (0..ds.meta.count.min(batch)).collect();
    let [c, h, w] = model.meta.input.map(|v| v as i64);
    let x = if rows.is_empty() {
        None
    } else {
        let pixels = ds.images(&rows)?;
        Some(model.preprocess(&Tensor::from_slice(&pixels).view([rows.len() as i64, c, h, w])))
    };
    let before = x.as_ref().map(|x| tch::no_grad(|| model.net("canonisation").expect("checked").forward(x)));
    let merged = model.net_mut().expect("a declared model").canonise();
    if let (Some(x), Some(before), false) = (&x, before, merged.is_empty()) {
        let after = tch::no_grad(|| model.net("canonisation").expect("checked").forward(x));
        let scale = f64::try_from(before.abs().max()).unwrap_or(1.0).max(1e-6);
        let diff = f64::try_from((after - &before).abs().max()).unwrap_or(f64::INFINITY) / scale;
        if !(diff < 1e-4) {
            return Err(BatchError::Canonisation(format!(
                "merging batch norms {} changed the model's outputs by {diff:.2e} of their scale",
                merged.join(", ")
            )));
        }
    }
    Ok(())
}

/// The relevance at the output: a class logit (or 1) per image, or keypoint maps.
fn seed_of(y: &Tensor, mode: Seed, rows: &[usize], labels: &[i64], targets: &[Vec<f32>], input: [usize; 3]) -> Tensor {
    if y.dim() == 2 {
        let class = match mode {
            Seed::Predicted | Seed::PredictedOneHot | Seed::LeastConfident => y.argmax(1, true),
            Seed::True | Seed::TrueOneHot => Tensor::from_slice(&rows.iter().map(|&r| labels[r]).collect::<Vec<i64>>())
                .view([-1, 1])
                .to_device(y.device()),
        };
        let value = match mode {
            Seed::Predicted | Seed::True | Seed::LeastConfident => y.gather(1, &class, false),
            _ => Tensor::ones([y.size()[0], 1], (Kind::Float, y.device())),
        };
        return y.zeros_like().scatter(1, &class, &value);
    }
    // Keypoint maps: HUDD seeds with the worst keypoint's map (found with the targets); `least-confident` with the
    // map whose peak is lowest (the model alone); `true` keeps every map.
    let one = match mode {
        Seed::True | Seed::TrueOneHot => return y.shallow_clone(),
        Seed::LeastConfident => y.amax([2i64, 3].as_slice(), false).argmin(1, true),
        Seed::Predicted | Seed::PredictedOneHot => {
            if targets.is_empty() {
                return y.shallow_clone();
            }
            let flat: Vec<f32> = rows.iter().flat_map(|&r| targets[r].iter().copied()).collect();
            let t = Tensor::from_slice(&flat).view([rows.len() as i64, -1]).to_device(y.device());
            crate::model::fit::keypoint_errors(&keypoints_from_maps(y, input), &t).argmax(1, true)
        }
    };
    let mask = y.zeros_like().select(3, 0).select(2, 0).scatter_value(1, &one, 1.0);
    y * mask.view([y.size()[0], y.size()[1], 1, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two images, three keypoint maps of 8×8 over a 16×16 input, each map a single peak.
    fn maps(peaks: &[[(i64, i64); 3]; 2]) -> Tensor {
        let y = Tensor::zeros([2, 3, 8, 8], (Kind::Float, tch::Device::Cpu));
        for (i, image) in peaks.iter().enumerate() {
            for (k, &(row, col)) in image.iter().enumerate() {
                let _ = y.get(i as i64).get(k as i64).get(row).get(col).fill_(5.0);
            }
        }
        y
    }

    fn nonzero_maps(seed: &Tensor) -> Vec<Vec<bool>> {
        let sums =
            Vec::<f32>::try_from(seed.abs().sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float).flatten(0, -1))
                .unwrap();
        sums.chunks(3).map(|c| c.iter().map(|v| *v > 0.0).collect()).collect()
    }

    #[test]
    fn keypoint_seeds_keep_only_the_worst_keypoints_map() {
        // A peak at map cell (r, c) predicts the pixel ((c + 0.5)·2, (r + 0.5)·2).
        let y = maps(&[[(1, 1), (4, 4), (6, 2)], [(0, 7), (3, 3), (7, 0)]]);
        // Image 0: keypoint 2 is 6 px off, the others exact. Image 1: keypoint 0 is 10 px off, keypoint 1 is 2 px off.
        let targets = vec![vec![3.0, 3.0, 9.0, 9.0, 5.0, 19.0], vec![15.0, 11.0, 9.0, 7.0, 1.0, 15.0]];
        let seed = seed_of(&y, Seed::Predicted, &[0, 1], &[], &targets, [1, 16, 16]);
        assert_eq!(nonzero_maps(&seed), [[false, false, true], [true, false, false]]);
        // The kept map is the prediction itself, unscaled.
        assert_eq!(f64::try_from(seed.get(1).get(0).sum(Kind::Double)).unwrap(), 5.0);
        // `true` keeps every map.
        let all = seed_of(&y, Seed::True, &[0, 1], &[], &targets, [1, 16, 16]);
        assert_eq!(nonzero_maps(&all), [[true; 3], [true; 3]]);
    }

    #[test]
    fn the_least_confident_seed_keeps_the_lowest_peak_and_reads_no_targets() {
        let y = maps(&[[(1, 1), (4, 4), (6, 2)], [(0, 7), (3, 3), (7, 0)]]);
        // Lower the peaks of keypoint 1 in image 0 and keypoint 2 in image 1.
        let _ = y.get(0).get(1).get(4).get(4).fill_(2.0);
        let _ = y.get(1).get(2).get(7).get(0).fill_(1.0);
        // No targets at all: the seed needs none.
        let seed = seed_of(&y, Seed::LeastConfident, &[0, 1], &[], &[], [1, 16, 16]);
        assert_eq!(nonzero_maps(&seed), [[false, true, false], [false, false, true]]);
        assert!(!Seed::LeastConfident.reads_labels(true) && Seed::Predicted.reads_labels(true));
        assert!(!Seed::Predicted.reads_labels(false) && Seed::True.reads_labels(false));
    }

    #[test]
    fn class_seeds_pick_the_predicted_or_the_true_class() {
        let y = Tensor::from_slice(&[1.0f32, 3.0, -2.0, 0.5, -1.0, 2.0]).view([2, 3]);
        let dense = |s: Tensor| Vec::<f32>::try_from(s.flatten(0, -1)).unwrap();
        assert_eq!(
            dense(seed_of(&y, Seed::Predicted, &[0, 1], &[0, 0], &[], [1, 1, 1])),
            [0.0, 3.0, 0.0, 0.0, 0.0, 2.0]
        );
        assert_eq!(dense(seed_of(&y, Seed::True, &[0, 1], &[0, 1], &[], [1, 1, 1])), [1.0, 0.0, 0.0, 0.0, -1.0, 0.0]);
        assert_eq!(
            dense(seed_of(&y, Seed::TrueOneHot, &[1, 0], &[2, 0], &[], [1, 1, 1])),
            [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        );
    }
}
