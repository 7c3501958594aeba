//! Stage `activations`: another representation of images to cluster, the DNN's own activations at the input of
//! every layer (the first layer's input is the normalised image itself, so raw pixels come with them), or those of a
//! pretrained `backbone` (generic features: a network trained on ImageNet, the images resized to its input, as the
//! 2024 study of clustering pipelines found best). It writes the folder layout of a heatmaps stage, so `cluster` and
//! `select` read either.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::artefact::heatmaps::{ConservationRow, Heatmaps};
use crate::artefact::{ANY_DATASET, FEATURES, MODEL};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::{Format, Model, ModelMeta, load_weights};
use crate::model::net::Op;
use crate::model::predict::for_each_activation_batch;
use crate::model::{Architecture, is_shipped_name, shipped_fingerprint};
use crate::npy::NpyWriter;
use crate::runtime::{self, DeviceChoice};

pub struct Activations;

/// Why the activations cannot be taken: each names the input, the backbone or the layer.
#[derive(Debug, thiserror::Error)]
pub enum ActivationsError {
    #[error("the model takes {model:?} images, the image set has {images:?}")]
    Size { model: [usize; 3], images: [usize; 3] },
    #[error("`backbone` replaces the `model` input: give one of them, not both")]
    Both,
    #[error("give a `model` input (the DNN under analysis) or a `backbone`")]
    Neither,
    #[error(
        "backbone {}: takes {takes} channels with {values} normalisation values, the image set has {channels}",
        architecture.display()
    )]
    Channels { architecture: PathBuf, takes: usize, values: usize, channels: usize },
    #[error("layers: no layer `{layer}` in the network; it has {} layers: {}", layers.len(), layers.join(", "))]
    UnknownLayer { layer: String, layers: Vec<String> },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl From<ActivationsError> for StageError {
    fn from(e: ActivationsError) -> Self {
        StageError::artefact(e)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationsParams {
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default)]
    pub threads: Option<usize>,
    /// A pretrained network whose activations describe the images instead of the model under analysis' (the stage
    /// then takes no `model` input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<Backbone>,
    /// The layers whose input is recorded, by name (default: every layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<String>>,
    /// `none`: every value of a layer's input; `channels`: the mean of each channel over its positions, one value a
    /// channel (a dense layer's units are its channels).
    #[serde(default, skip_serializing_if = "Pool::is_none")]
    pub pool: Pool,
}

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

fn default_batch() -> usize {
    64
}

impl Params for ActivationsParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
        }
        if let Some(b) = &self.backbone {
            if let Some(message) = crate::model::check_name(&b.architecture) {
                out.push(Invalid::new("backbone.architecture", message));
            }
            if b.mean.len() != b.std.len() {
                out.push(Invalid::new(
                    "backbone.std",
                    format!("needs as many values as `mean` ({}), got {}", b.mean.len(), b.std.len()),
                ));
            }
            if b.std.iter().any(|s| !(*s > 0.0)) {
                out.push(Invalid::new("backbone.std", format!("every value must be above 0, got {:?}", b.std)));
            }
        }
        if let Some(size) = self.backbone.as_ref().and_then(|b| b.size)
            && size.contains(&0)
        {
            out.push(Invalid::new("backbone.size", format!("height and width must be at least 1, got {size:?}")));
        }
        if self.layers.as_ref().is_some_and(|l| l.is_empty()) {
            out.push(Invalid::new("layers", "names no layer; leave it out to record every layer"));
        }
        out
    }
}

impl Stage for Activations {
    type Params = ActivationsParams;
    const KIND: &'static str = "activations";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "model",
            accepts: &[MODEL],
            many: false,
            required: false,
            doc: "the model under analysis (or a `backbone` instead)",
        },
        InputSlot {
            name: "images",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the images to represent (typically a test stage's errors)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "activations",
        kind: FEATURES,
        path: "activations/",
        doc: "<layer>.npy (the activation at the layer's input, one row per image), index.csv, conservation.csv",
    }];
    // Backed by the same reasoning as heatmaps: a forward pass per batch, whose bytes follow the batch size.
    const SETTINGS: &'static [&'static str] = &["threads"];
    const DOC: &'static str =
        "The DNN's (or a pretrained backbone's) activations at its layers' inputs, as a representation to cluster.";

    fn external_paths(p: &ActivationsParams) -> Vec<PathBuf> {
        let Some(b) = &p.backbone else { return Vec::new() };
        let arch = Some(b.architecture.clone()).filter(|a| !is_shipped_name(a));
        arch.into_iter().chain([b.weights.clone()]).collect()
    }

    /// The device kind this resolves to enters the key (a GPU computes other bytes), and a shipped backbone's text.
    fn fingerprints(p: &ActivationsParams) -> Vec<(String, String)> {
        let shipped = p.backbone.iter().filter_map(|b| shipped_fingerprint(&b.architecture));
        std::iter::once(crate::runtime::device_fingerprint(p.device)).chain(shipped).collect()
    }

    fn torch_threads(p: &ActivationsParams, run: usize) -> usize {
        p.threads.unwrap_or(run)
    }

    fn run(&self, p: &ActivationsParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let ds = Dataset::open(&ctx.input("images")?.path)?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        let model = match (&p.backbone, ctx.inputs("model").first()) {
            (Some(b), None) => load_backbone(b, ctx, device, input[0])?,
            (None, Some(m)) => {
                let model = Model::load(&m.path, device)?;
                if model.meta.input != input {
                    return Err(ActivationsError::Size { model: model.meta.input, images: input }.into());
                }
                model
            }
            (Some(_), Some(_)) => {
                return Err(ActivationsError::Both.into());
            }
            (None, None) => {
                return Err(ActivationsError::Neither.into());
            }
        };
        let net = model.net("the activations stage")?;
        let arch = model.meta.architecture.as_ref().expect("a declared model has its architecture");
        let shapes = arch.describe(model.meta.input, model.meta.outputs)?;
        let recorded = recorded_layers(net.layers.iter().map(|(name, _)| name.as_str()), p.layers.as_deref())?;
        let folder = Heatmaps::open(&ctx.output("activations")?);
        let mut writers = Vec::with_capacity(recorded.len());
        for &k in &recorded {
            let dims = shapes[k].input.dims();
            let dims = if p.pool == Pool::Channels { dims[..1].to_vec() } else { dims };
            writers.push(NpyWriter::<f32>::create(&folder.layer_path(&net.layers[k].0), &dims)?);
        }
        let rows: Vec<usize> = (0..ds.meta.count).collect();
        ctx.progress.start(rows.len() as u64, "activations");
        for_each_activation_batch(&model, &ds, &rows, p.batch_size, |chunk, acts| {
            for (&k, writer) in recorded.iter().zip(writers.iter_mut()) {
                let mut a = acts[k].to_device(tch::Device::Cpu).to_kind(tch::Kind::Float);
                if p.pool == Pool::Channels && a.dim() == 4 {
                    a = a.mean_dim(&[2i64, 3][..], false, tch::Kind::Float);
                }
                let values: Vec<f32> = Vec::try_from(a.contiguous().flatten(0, -1)).map_err(ActivationsError::from)?;
                writer.append(&values)?;
            }
            ctx.progress.inc(chunk.len() as u64);
            Ok::<(), StageError>(())
        })?;
        for w in writers {
            w.finish()?;
        }
        folder.write_ids(ds.ids()?)?;
        // The input of a layer that passes values through unchanged (dropout, flatten) repeats the next layer's: it
        // is marked `pass`, as heatmaps mark theirs, so `cluster` skips the copy.
        let conservation: Vec<ConservationRow> = recorded
            .iter()
            .map(|&k| {
                let (name, op) = &net.layers[k];
                let passes = matches!(op, Op::Dropout(_) | Op::Flatten | Op::Identity);
                ConservationRow {
                    layer: name.clone(),
                    rule: if passes { "pass" } else { "activation" }.into(),
                    worst_relative_deviation: String::new(),
                }
            })
            .collect();
        Ok(folder.write_layers(&conservation)?)
    }
}

/// The pretrained network as a model over `channels`-channel images: its declared input, its own outputs (the last
/// layer's), its weights from the safetensors file.
fn load_backbone(
    b: &Backbone,
    ctx: &StageContext<'_>,
    device: tch::Device,
    channels: usize,
) -> Result<Model, StageError> {
    let architecture = Architecture::resolve(&b.architecture, ctx.workspace)?;
    let declared = architecture.model.input;
    let input = b.size.map_or(declared, |[h, w]| [declared[0], h, w]);
    // A one-channel image goes in as grey on every channel (torchvision's `Grayscale(3)`): preprocessing broadcasts it.
    if (input[0] != channels && channels != 1) || b.mean.len() != input[0] {
        return Err(ActivationsError::Channels {
            architecture: b.architecture.clone(),
            takes: input[0],
            values: b.mean.len(),
            channels,
        }
        .into());
    }
    let last = architecture.describe(input, 1)?.pop().expect("an architecture has layers");
    let meta = ModelMeta {
        format: Format::Declared,
        architecture: Some(architecture),
        input,
        outputs: last.output.numel(),
        target: crate::dataset::Target::Classification { classes: Vec::new() },
        mean: b.mean.clone(),
        std: b.std.clone(),
        seen: Vec::new(),
    };
    let mut model = Model::init(meta, device, 0)?;
    let vs = model.var_store_mut().expect("a declared model has a var store");
    load_weights(vs, &ctx.resolve(&b.weights))?;
    Ok(model)
}

/// The indices of the layers to record: every layer, or those named, in the network's order; an unknown name is an
/// error that lists the layers there are.
fn recorded_layers<'a>(
    layers: impl Iterator<Item = &'a str> + Clone,
    wanted: Option<&[String]>,
) -> Result<Vec<usize>, StageError> {
    let Some(wanted) = wanted else { return Ok((0..layers.count()).collect()) };
    if let Some(unknown) = wanted.iter().find(|w| !layers.clone().any(|l| l == w.as_str())) {
        let layers = layers.map(str::to_string).collect();
        return Err(ActivationsError::UnknownLayer { layer: unknown.clone(), layers }.into());
    }
    Ok(layers.enumerate().filter(|(_, l)| wanted.iter().any(|w| w == l)).map(|(k, _)| k).collect())
}
