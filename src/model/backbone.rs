//! A pretrained backbone: a declared architecture and its weights that describe images by generic features (not
//! the model under analysis), the images resized to its input. `activations` describes failing images with one,
//! and `select` and `expand` compute new images' features with the same network (read from that stage's parameters).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::artefact::{Format, Model, ModelError, ModelMeta, load_weights};
use super::{ArchError, Architecture};

/// A pretrained network: a declared architecture (a shipped name or a file) and its weights; the images are
/// resized (bilinear) to the architecture's input and normalised as the network was trained.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backbone {
    pub architecture: PathBuf,
    /// Safetensors named as the architecture's layers (`scripts/pretrained.sh` installs EfficientNet-Lite0's).
    pub weights: PathBuf,
    /// Per-channel normalisation of pixels in 0..1, `(x - mean) / std`: ImageNet's by default.
    #[serde(default = "imagenet_mean")]
    pub mean: Vec<f32>,
    #[serde(default = "imagenet_std")]
    pub std: Vec<f32>,
    /// The height and width the images are resized to (default the architecture's input; a network that ends in an
    /// adaptive pool takes any size, and a smaller one costs less).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[usize; 2]>,
}

fn imagenet_mean() -> Vec<f32> {
    vec![0.485, 0.456, 0.406]
}

fn imagenet_std() -> Vec<f32> {
    vec![0.229, 0.224, 0.225]
}

/// What is kept of a layer's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    #[default]
    None,
    Channels,
}

impl Pool {
    pub fn is_none(&self) -> bool {
        *self == Pool::None
    }
}

/// Why a backbone cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error(transparent)]
    Architecture(#[from] ArchError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "backbone {}: takes {takes} channels with {values} normalisation values, the image set has {channels}",
        architecture.display()
    )]
    Channels { architecture: PathBuf, takes: usize, values: usize, channels: usize },
}

impl From<BackboneError> for crate::engine::stage::StageError {
    fn from(e: BackboneError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

impl Backbone {
    /// The pretrained network as a model over `channels`-channel images: its declared input (or `size`), its own
    /// outputs (the last layer's), its weights from the safetensors file; paths relative to `workspace`.
    pub fn load(&self, workspace: &Path, device: tch::Device, channels: usize) -> Result<Model, BackboneError> {
        let architecture = Architecture::resolve(&self.architecture, workspace)?;
        let declared = architecture.model.input;
        let input = self.size.map_or(declared, |[h, w]| [declared[0], h, w]);
        // A one-channel image goes in as grey on every channel (torchvision's `Grayscale(3)`): preprocessing
        // broadcasts it.
        if (input[0] != channels && channels != 1) || self.mean.len() != input[0] {
            return Err(BackboneError::Channels {
                architecture: self.architecture.clone(),
                takes: input[0],
                values: self.mean.len(),
                channels,
            });
        }
        let last = architecture.describe(input, 1)?.pop().expect("an architecture has layers");
        let meta = ModelMeta {
            format: Format::Declared,
            architecture: Some(architecture),
            input,
            outputs: last.output.numel(),
            target: crate::dataset::Target::Classification { classes: Vec::new() },
            mean: self.mean.clone(),
            std: self.std.clone(),
            seen: Vec::new(),
        };
        let mut model = Model::init(meta, device, 0)?;
        let vs = model.var_store_mut().expect("a declared model has a var store");
        // `join` keeps an absolute path as it is.
        load_weights(vs, &workspace.join(&self.weights))?;
        model.net_mut().expect("a declared model has layers").for_features();
        Ok(model)
    }
}

/// What a layer's recorded input becomes: all of it, or each channel's mean (a 2-D input, a dense layer's, is kept).
pub fn pool(a: tch::Tensor, pool: Pool) -> tch::Tensor {
    if pool == Pool::Channels && a.dim() == 4 { a.mean_dim(&[2i64, 3][..], false, tch::Kind::Float) } else { a }
}

/// What an `activations` stage's parameters say of how its features were made (its other parameters ignored): how
/// `select` describes new images like its clusters' members. A test in `stages::activations` ties these fields to
/// that stage's own.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FeatureParams {
    #[serde(default)]
    pub backbone: Option<Backbone>,
    #[serde(default)]
    pub pool: Pool,
}

/// The libtorch threads a backbone's forward pass runs on, whatever the stage's: oneDNN splits some convolutions'
/// sums by the thread count (EfficientNet-Lite0's 1×1 head convolution, 320 to 1,280 channels on 7×7, summed
/// otherwise with 2 threads than with 1 on the AMD EPYC here, 2026-12-07: `tests/it/determinism.rs` saw the
/// quickstart's generic features change with `--threads`), and a key must fix the bytes.
pub const THREADS: usize = 1;

/// The parameters of the stage that made some features could not be read as an `activations` stage's.
#[derive(Debug, thiserror::Error)]
#[error("the parameters of `{stage}`, which made the activations: {source}")]
pub struct ProducerParams {
    pub stage: String,
    pub source: serde_json::Error,
}

/// The backbone and pooling of the `activations` stage that made a stage's features input (`producer`), read from
/// that stage's own parameters; none when another kind of stage made the input, or the activations are the model
/// under analysis' own.
pub fn made_by(producer: Option<&crate::engine::stage::Ancestor>) -> Result<Option<(Backbone, Pool)>, ProducerParams> {
    let Some(producer) = producer.filter(|a| a.kind == "activations") else { return Ok(None) };
    let p: FeatureParams = serde_json::from_value(producer.params.clone())
        .map_err(|source| ProducerParams { stage: producer.stage.clone(), source })?;
    Ok(p.backbone.map(|b| (b, p.pool)))
}
