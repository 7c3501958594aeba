//! The model artefact: `model.json` (architecture, input, outputs, task, input normalisation) and the weights,
//! as `weights.safetensors` (declared architectures) or `model.pt` (TorchScript, predictions only).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn};

use super::draws::{Draws, Stream};
use super::net::Net;
use super::{ArchError, Architecture};
use crate::dataset::Target;

pub const META: &str = "model.json";
pub const WEIGHTS: &str = "weights.safetensors";
pub const TORCHSCRIPT: &str = "model.pt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Declared,
    Torchscript,
}

/// `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    pub format: Format,
    /// The layers (declared models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// `[channels, height, width]` the model takes.
    pub input: [usize; 3],
    /// Classes, or keypoints (one output map each).
    pub outputs: usize,
    pub target: Target,
    /// Per-channel normalisation applied to pixels in `0..=1`: `(x - mean) / std`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// The splits of its dataset whose images trained it, chose its training data or chose its epoch: a test on
    /// one of them does not judge it fairly (empty for imported models, whose history is unknown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<Seen>,
}

/// How a model saw a split of its dataset, from the strongest to the weakest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeenAs {
    /// Its images were in the training data.
    Trained,
    /// Its images chose the training data (HUDD: the split whose failures were clustered).
    ChoseData,
    /// Its images chose the epoch that was kept.
    ChoseEpoch,
}

impl SeenAs {
    /// As written in tables: `trained`, `chose-data`, `chose-epoch`.
    pub fn name(self) -> &'static str {
        match self {
            SeenAs::Trained => "trained",
            SeenAs::ChoseData => "chose-data",
            SeenAs::ChoseEpoch => "chose-epoch",
        }
    }

    /// Reads [`SeenAs::name`] back; `None` for `no` (or anything else).
    pub fn parse(name: &str) -> Option<SeenAs> {
        [SeenAs::Trained, SeenAs::ChoseData, SeenAs::ChoseEpoch].into_iter().find(|s| s.name() == name)
    }

    /// For people, after the models that saw a split: "hudd, whose training data its images chose".
    pub fn describe(self) -> &'static str {
        match self {
            SeenAs::Trained => "trained on it",
            SeenAs::ChoseData => "whose training data its images chose",
            SeenAs::ChoseEpoch => "whose epoch its images chose",
        }
    }
}

/// One split a model saw, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub split: String,
    pub how: SeenAs,
}

impl ModelMeta {
    /// Reads a model artefact folder's `model.json` (what the model is, without loading its weights).
    pub fn read(dir: &Path) -> Result<ModelMeta, ModelError> {
        let path = dir.join(META);
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ModelError::Invalid { path, message: format!("not a model.json: {e}") })
    }

    /// How the model saw `split` (the strongest way), or `None`.
    pub fn saw(&self, split: &str) -> Option<SeenAs> {
        self.seen.iter().filter(|s| s.split == split).map(|s| s.how).min()
    }

    /// Records that the model saw `split` as `how` (once per pair).
    pub fn see(&mut self, split: &str, how: SeenAs) {
        if !self.seen.iter().any(|s| s.split == split && s.how == how) {
            self.seen.push(Seen { split: split.to_string(), how });
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Arch(#[from] ArchError),
    #[error("the TorchScript module failed on a batch: {message}")]
    Forward { message: String },
    #[error("{path}: cannot load weights: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("model {path} is TorchScript: {what} needs declared layers (an architecture file and safetensors weights)")]
    NoLayers { path: PathBuf, what: String },
}

impl From<ModelError> for crate::engine::stage::StageError {
    fn from(e: ModelError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// A model ready to run.
pub struct Model {
    pub dir: PathBuf,
    pub meta: ModelMeta,
    pub device: Device,
    body: Body,
}

/// Builds the layers with every parameter at zero (they are drawn or loaded next).
fn build(arch: &Architecture, meta: &ModelMeta, device: Device) -> Result<(nn::VarStore, Net), ModelError> {
    let vs = nn::VarStore::new(device);
    let net = Net::new(arch, &vs.root(), meta.input, meta.outputs)?;
    Ok((vs, net))
}

enum Body {
    Declared { vs: nn::VarStore, net: Net },
    Torchscript(tch::CModule),
}

impl Model {
    /// A fresh declared model with initial weights drawn from `seed`'s own stream (see [`Net::initialise`]).
    pub fn init(meta: ModelMeta, device: Device, seed: u64) -> Result<Model, ModelError> {
        let arch = meta.architecture.clone().ok_or_else(|| ModelError::Invalid {
            path: PathBuf::from(META),
            message: "a declared model needs its architecture".into(),
        })?;
        let (vs, mut net) = build(&arch, &meta, device)?;
        net.initialise(&mut Draws::new(seed, Stream::Init));
        Ok(Model { dir: PathBuf::new(), meta, device, body: Body::Declared { vs, net } })
    }

    /// Loads a model artefact folder.
    pub fn load(dir: &Path, device: Device) -> Result<Model, ModelError> {
        let meta = ModelMeta::read(dir)?;
        let meta_path = dir.join(META);
        let body = match meta.format {
            Format::Declared => {
                let arch = meta.architecture.clone().ok_or_else(|| ModelError::Invalid {
                    path: meta_path.clone(),
                    message: "format is `declared` but there is no architecture".into(),
                })?;
                let (mut vs, net) = build(&arch, &meta, device)?;
                load_weights(&mut vs, &dir.join(WEIGHTS))?;
                Body::Declared { vs, net }
            }
            Format::Torchscript => {
                let path = dir.join(TORCHSCRIPT);
                let module = tch::CModule::load_on_device(&path, device)
                    .map_err(|e| ModelError::Weights { path: path.clone(), message: e.to_string() })?;
                Body::Torchscript(module)
            }
        };
        Ok(Model { dir: dir.to_path_buf(), meta, device, body })
    }

    /// The declared layers, or an error saying that `what` needs them.
    pub fn net(&self, what: &str) -> Result<&Net, ModelError> {
        match &self.body {
            Body::Declared { net, .. } => Ok(net),
            Body::Torchscript(_) => Err(ModelError::NoLayers { path: self.dir.clone(), what: what.to_string() }),
        }
    }

    /// The declared layers, mutable (for canonisation); `None` for TorchScript.
    pub fn net_mut(&mut self) -> Option<&mut Net> {
        match &mut self.body {
            Body::Declared { net, .. } => Some(net),
            Body::Torchscript(_) => None,
        }
    }

    pub fn var_store(&self) -> Option<&nn::VarStore> {
        match &self.body {
            Body::Declared { vs, .. } => Some(vs),
            Body::Torchscript(_) => None,
        }
    }

    pub fn var_store_mut(&mut self) -> Option<&mut nn::VarStore> {
        match &mut self.body {
            Body::Declared { vs, .. } => Some(vs),
            Body::Torchscript(_) => None,
        }
    }

    /// uint8 N×C×H×W pixels → normalised float input on the model's device.
    pub fn preprocess(&self, pixels: &Tensor) -> Tensor {
        let c = self.meta.mean.len() as i64;
        let mean = Tensor::from_slice(&self.meta.mean).view([1, c, 1, 1]).to_device(self.device);
        let std = Tensor::from_slice(&self.meta.std).view([1, c, 1, 1]).to_device(self.device);
        (pixels.to_device(self.device).to_kind(Kind::Float) / 255.0 - mean) / std
    }

    /// The raw outputs (logits or keypoint maps) for a preprocessed batch, in evaluation mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        match &self.body {
            Body::Declared { net, .. } => Ok(net.forward(x)),
            Body::Torchscript(m) => m.forward_ts(&[x]).map_err(|e| ModelError::Forward { message: e.to_string() }),
        }
    }

    /// The raw outputs in training mode, dropout masks taken from `draws`; a TorchScript model cannot train.
    pub fn forward_train(&self, x: &Tensor, draws: &mut Draws) -> Result<Tensor, ModelError> {
        Ok(self.net("training")?.forward_train(x, draws))
    }

    /// Saves a declared model: `model.json` and `weights.safetensors` in `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
        let meta_path = dir.join(META);
        std::fs::write(&meta_path, serde_json::to_vec_pretty(&self.meta).expect("meta serialises"))
            .map_err(|source| ModelError::Io { path: meta_path, source })?;
        let vs = self
            .var_store()
            .ok_or_else(|| ModelError::NoLayers { path: dir.to_path_buf(), what: "saving weights".into() })?;
        let path = dir.join(WEIGHTS);
        vs.save(&path).map_err(|e| ModelError::Weights { path, message: e.to_string() })
    }
}

/// Loads named tensors into a var store, with errors that name missing or misshaped parameters.
pub fn load_weights(vs: &mut nn::VarStore, path: &Path) -> Result<(), ModelError> {
    let named = Tensor::read_safetensors(path)
        .map_err(|e| ModelError::Weights { path: path.to_path_buf(), message: safetensors_message(&e) })?;
    assign_weights(vs, named, path)
}

/// What is wrong with a weights file, in words: the safetensors crate prints its error's variant name
/// (`TensorInvalidInfo`), which says nothing to a user.
fn safetensors_message(e: &tch::TchError) -> String {
    use safetensors::SafeTensorError as E;
    let tch::TchError::SafeTensorError { err, .. } = e else { return e.to_string() };
    match err {
        E::InvalidHeader | E::InvalidHeaderStart | E::InvalidHeaderDeserialization | E::JsonError(_) => {
            "not a safetensors file: its header is not the JSON table safetensors begins with".into()
        }
        E::HeaderTooLarge => "not a safetensors file: its header claims more than 100 MB".into(),
        E::HeaderTooSmall | E::InvalidHeaderLength => "not a safetensors file, or one cut short in its header".into(),
        E::TensorInvalidInfo | E::InvalidTensorView(..) | E::ValidationOverflow => {
            "a tensor's shape and type do not match the bytes its header gives it".into()
        }
        E::InvalidOffset(name) => format!("the header gives `{name}` bytes outside the file"),
        E::MetadataIncompleteBuffer => "the file is cut short, or holds bytes no tensor claims".into(),
        E::TensorNotFound(name) => format!("no tensor `{name}`"),
        E::IoError(io) => io.to_string(),
    }
}

/// Copies named tensors into a var store, with the checks of [`load_weights`]; `path` names their source in errors.
pub fn assign_weights(vs: &mut nn::VarStore, named: Vec<(String, Tensor)>, path: &Path) -> Result<(), ModelError> {
    let err = |message: String| ModelError::Weights { path: path.to_path_buf(), message };
    let file: std::collections::HashMap<String, Tensor> = named.into_iter().collect();
    let mut variables = vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    let missing: Vec<&str> = names.iter().filter(|n| !file.contains_key(n.as_str())).map(|n| n.as_str()).collect();
    if !missing.is_empty() {
        return Err(err(format!("missing parameters: {}", missing.join(", "))));
    }
    tch::no_grad(|| {
        for (name, var) in variables.iter_mut() {
            let src = &file[name];
            if src.size() != var.size() {
                return Err(err(format!(
                    "`{name}` has shape {:?} in the file, the architecture expects {:?}",
                    src.size(),
                    var.size()
                )));
            }
            let finite = src.to_kind(tch::Kind::Float).isfinite().all();
            if !bool::try_from(finite).unwrap_or(false) {
                return Err(err(format!("`{name}` holds NaN or infinite values")));
            }
            var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
        }
        Ok(())
    })
}
