//! A model's predictions over rows of a dataset, in batches: the class and its scores, or the error of every
//! keypoint, and whether the image counts as correct.

use tch::{Kind, Tensor};

use super::artefact::{Model, ModelError};
use super::fit::{keypoint_errors, keypoints_from_maps};
use super::net::Net;
use crate::dataset::{Dataset, DatasetError, Target};
use crate::engine::progress::Progress;

/// HUDD's: a keypoint image fails above 4 pixels of mean error.
pub const DEFAULT_THRESHOLD: f64 = 4.0;

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl From<PredictError> for crate::engine::stage::StageError {
    fn from(e: PredictError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// Why a model cannot be tested on a data set: it takes other images or was trained for another task.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("the model takes {model:?} images, the dataset has {images:?}; simulate or import at the model's size")]
    Size { model: [usize; 3], images: [usize; 3] },
    #[error("the model was trained for another task (different classes or keypoints)")]
    Task,
}

impl TestError {
    /// Whether a model takes a dataset's images and was trained for its task.
    pub fn check(model: &super::artefact::ModelMeta, ds: &crate::dataset::DatasetMeta) -> Result<(), TestError> {
        let images = [ds.channels, ds.height, ds.width];
        if model.input != images {
            return Err(TestError::Size { model: model.input, images });
        }
        if model.target != ds.target {
            return Err(TestError::Task);
        }
        Ok(())
    }
}

impl From<TestError> for crate::engine::stage::StageError {
    fn from(e: TestError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// Predictions of one image.
pub enum Prediction {
    Class { expected: usize, predicted: usize, scores: Vec<f32> },
    Keypoints { errors: Vec<f32>, threshold: f64 },
}

impl Prediction {
    pub fn correct(&self) -> bool {
        match self {
            Prediction::Class { expected, predicted, .. } => expected == predicted,
            Prediction::Keypoints { errors, threshold } => mean(errors) <= *threshold,
        }
    }
}

/// The mean of some keypoint errors.
pub fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64
}

/// What an image should give: its class, or its keypoints (x, y pairs in pixels).
#[derive(Debug, Clone, Copy)]
pub enum Truth<'a> {
    Class(usize),
    Targets(&'a [f32]),
}

impl<'a> Truth<'a> {
    /// A rendered or stored label as the truth to score against.
    pub fn of(label: &'a crate::dataset::Label) -> Truth<'a> {
        match label {
            crate::dataset::Label::Class(c) => Truth::Class(*c),
            crate::dataset::Label::Targets(t) => Truth::Targets(t),
        }
    }
}

/// Runs a model over some rows of a dataset in batches.
pub fn predict(
    model: &Model,
    ds: &Dataset,
    rows: &[usize],
    batch: usize,
    threshold: f64,
    progress: &Progress,
) -> Result<Vec<Prediction>, PredictError> {
    let m = &ds.meta;
    let labels = match &m.target {
        Target::Classification { .. } => ds.class_labels()?,
        Target::Regression { .. } => Vec::new(),
    };
    let targets = ds.targets()?;
    let mut out = Vec::with_capacity(rows.len());
    progress.start(rows.len() as u64, "predictions");
    for chunk in rows.chunks(batch.max(1)) {
        let pixels = ds.images(chunk)?;
        let truths: Vec<Truth<'_>> = chunk
            .iter()
            .map(|&r| match &m.target {
                Target::Classification { .. } => Truth::Class(labels[r] as usize),
                Target::Regression { .. } => Truth::Targets(&targets[r]),
            })
            .collect();
        out.extend(predict_pixels(model, &pixels, [m.channels, m.height, m.width], &truths, threshold)?);
        progress.inc(chunk.len() as u64);
    }
    Ok(out)
}

/// Runs a model over one batch of images (C×H×W bytes each, one after the other), scoring each against its truth.
pub fn predict_pixels(
    model: &Model,
    pixels: &[u8],
    [c, h, w]: [usize; 3],
    truths: &[Truth<'_>],
    threshold: f64,
) -> Result<Vec<Prediction>, PredictError> {
    let n = truths.len();
    let mut out = Vec::with_capacity(n);
    tch::no_grad(|| {
        let x = Tensor::from_slice(pixels).view([n as i64, c as i64, h as i64, w as i64]);
        let y = model.forward(&model.preprocess(&x))?;
        if matches!(truths.first(), Some(Truth::Targets(_))) {
            let pred = keypoints_from_maps(&y, model.meta.input).to_device(tch::Device::Cpu);
            let flat: Vec<f32> = truths
                .iter()
                .flat_map(|t| match t {
                    Truth::Targets(t) => t.iter().copied(),
                    Truth::Class(_) => [].iter().copied(),
                })
                .collect();
            let t = Tensor::from_slice(&flat).view([n as i64, -1]);
            let errors = keypoint_errors(&pred, &t);
            let k = errors.size()[1] as usize;
            let flat: Vec<f32> = Vec::try_from(errors.flatten(0, -1))?;
            for i in 0..n {
                out.push(Prediction::Keypoints { errors: flat[i * k..(i + 1) * k].to_vec(), threshold });
            }
        } else {
            let scores = y.softmax(-1, Kind::Float).to_device(tch::Device::Cpu);
            let flat: Vec<f32> = Vec::try_from(scores.flatten(0, -1))?;
            let k = y.size()[1] as usize;
            for (i, truth) in truths.iter().enumerate() {
                let s = flat[i * k..(i + 1) * k].to_vec();
                let predicted = argmax(&s);
                let expected = match truth {
                    Truth::Class(c) => *c,
                    Truth::Targets(_) => 0,
                };
                out.push(Prediction::Class { expected, predicted, scores: s });
            }
        }
        Ok::<(), PredictError>(())
    })?;
    Ok(out)
}

/// The index of the largest value (the first of equals).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

/// Runs a declared model over some rows of a dataset in batches: `sink` gets the batch's rows and the activations at
/// the input of each of `layers` (indices into the network's layers, in that order), on the model's device.
pub fn for_each_activation_batch<E: From<PredictError>>(
    model: &Model,
    ds: &Dataset,
    rows: &[usize],
    batch: usize,
    layers: &[usize],
    mut sink: impl FnMut(&[usize], &[Tensor]) -> Result<(), E>,
) -> Result<(), E> {
    let net = model.net("activations").map_err(PredictError::from)?;
    let m = &ds.meta;
    let size = [m.channels as i64, m.height as i64, m.width as i64];
    for chunk in rows.chunks(batch.max(1)) {
        let pixels = ds.images(chunk).map_err(PredictError::from)?;
        let pixels = Tensor::from_slice(&pixels).view([chunk.len() as i64, size[0], size[1], size[2]]);
        sink(chunk, &activations(model, net, &pixels, layers))?;
    }
    Ok(())
}

/// The activations at the input of each of `layers` for a batch of N×C×H×W uint8 pixels: preprocessed, then, for
/// images of another size than the model's input, resized to it (bilinear, as PyTorch's `interpolate` without corner
/// alignment).
pub fn activations(model: &Model, net: &Net, pixels: &Tensor, layers: &[usize]) -> Vec<Tensor> {
    let [_, h, w] = model.meta.input.map(|v| v as i64);
    let mut x = model.preprocess(pixels);
    if x.size()[2..] != [h, w] {
        x = x.upsample_bilinear2d([h, w], false, None, None);
    }
    tch::no_grad(|| net.forward_at(&x, layers))
}
