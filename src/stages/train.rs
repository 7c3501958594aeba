//! Stage `train`: a declared architecture trained on a dataset's training split, optionally from given weights.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::artefact::curve;
use crate::artefact::{ANY_DATASET, LEARNING_CURVE, MODEL};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::Architecture;
use crate::model::artefact::{Format, Model, ModelMeta, SeenAs};
use crate::model::fit::{self, Augment, Data, FitConfig, Keep, OptimizerKind};
use crate::runtime::{self, DeviceChoice};

pub struct Train;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// A shipped architecture by name (`alexnet-small`) or an architecture file (`my/arch.toml`, relative to the
    /// workspace); not needed when starting from `init`.
    #[serde(default)]
    pub architecture: Option<PathBuf>,
    /// The split to train on.
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub optimizer: OptimizerKind,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// Share of the training split held out for validation.
    #[serde(default = "default_validation")]
    pub validation: f64,
    #[serde(default)]
    pub augment: Augment,
    /// Keep the last epoch or the best by validation score.
    #[serde(default)]
    pub keep: Keep,
    #[serde(default)]
    pub device: DeviceChoice,
    /// libtorch threads for this stage: part of its key, since training's sums (and so its weights) depend on the
    /// thread count. Default 1: `hudd run` runs trainings side by side instead.
    #[serde(default = "default_threads")]
    pub threads: usize,
    #[serde(default)]
    pub seed: Option<u64>,
}

use crate::model::fit::defaults::{
    default_epochs, default_momentum, default_split, default_threads, default_validation, default_wd,
};

/// Why a model cannot be trained on the data set as asked: each names the split, the model or the file.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("split `{split}` of the dataset is empty")]
    EmptySplit { split: String },
    #[error(
        "the initial model takes {model:?} with {model_outputs} outputs; the dataset has {images:?} images and \
         {outputs} outputs"
    )]
    InitMismatch { model: [usize; 3], model_outputs: usize, images: [usize; 3], outputs: usize },
    #[error("give `architecture = \"models/<name>.toml\"` or an `init` model to start from")]
    NoArchitecture,
    #[error("{} cannot take the dataset's {images:?} images: {source}", architecture.display())]
    Incompatible { architecture: PathBuf, images: [usize; 3], source: crate::model::ArchError },
}

impl From<TrainError> for StageError {
    fn from(e: TrainError) -> Self {
        StageError::artefact(e)
    }
}

fn default_batch() -> usize {
    64
}
fn default_lr() -> f64 {
    0.01
}

impl Params for TrainParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if let Some(message) = self.architecture.as_deref().and_then(crate::model::check_name) {
            out.push(Invalid::new("architecture", message));
        }
        if self.epochs == 0 {
            out.push(Invalid::new("epochs", "must be at least 1, got 0"));
        }
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
        }
        if self.threads == 0 {
            out.push(Invalid::new("threads", "must be at least 1, got 0"));
        }
        if !(self.lr > 0.0) {
            out.push(Invalid::new("lr", format!("must be above 0, got {}", self.lr)));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            out.push(Invalid::new("momentum", format!("must be in [0, 1), got {}", self.momentum)));
        }
        if !(self.weight_decay >= 0.0) {
            out.push(Invalid::new("weight_decay", format!("must be 0 or more, got {}", self.weight_decay)));
        }
        if !(0.0..0.9).contains(&self.validation) {
            out.push(Invalid::new("validation", format!("must be in [0, 0.9), got {}", self.validation)));
        }
        if !(0.0..1.0).contains(&self.augment.brightness) {
            out.push(Invalid::new("augment.brightness", format!("must be in [0, 1), got {}", self.augment.brightness)));
        }
        out
    }
}

impl Stage for Train {
    type Params = TrainParams;
    const KIND: &'static str = "train";
    const VERSION: u32 = 4;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "dataset", accepts: ANY_DATASET, many: false, required: true, doc: "a dataset artefact" },
        InputSlot {
            name: "init",
            accepts: &[MODEL],
            many: false,
            required: false,
            doc: "a model whose weights training starts from",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "model", kind: MODEL, path: "model/", doc: "model.json and weights.safetensors" },
        OutputSpec { name: "curve", kind: LEARNING_CURVE, path: "curve.csv", doc: "epoch,loss,train_score,val_score" },
    ];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Trains a declared architecture.";

    fn external_paths(p: &TrainParams) -> Vec<PathBuf> {
        p.architecture.iter().filter(|a| !crate::model::is_shipped_name(a)).cloned().collect()
    }

    /// A shipped architecture's text, and the device kind this resolves to (a GPU computes other bytes).
    fn fingerprints(p: &TrainParams) -> Vec<(String, String)> {
        let architecture = p.architecture.iter().filter_map(|a| crate::model::shipped_fingerprint(a));
        architecture.chain([runtime::device_fingerprint(p.device)]).collect()
    }

    fn torch_threads(p: &TrainParams, _run: usize) -> usize {
        p.threads
    }

    fn run(&self, p: &TrainParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let ds = Dataset::open(&ctx.input("dataset")?.path)?;
        let rows = ds.split_rows(&p.split)?;
        if rows.is_empty() {
            return Err(TrainError::EmptySplit { split: p.split.clone() }.into());
        }
        let (train, val) = Data::split(&ds, &rows, p.validation, ctx.seed)?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        let outputs = crate::model::outputs_for(&ds.meta.target);
        let mut model = match ctx.inputs("init").first() {
            Some(init) => {
                let m = Model::load(&init.path.clone(), device)?;
                m.net("training")?;
                if m.meta.input != input || m.meta.outputs != outputs {
                    let (model, model_outputs) = (m.meta.input, m.meta.outputs);
                    return Err(TrainError::InitMismatch { model, model_outputs, images: input, outputs }.into());
                }
                m
            }
            None => {
                let path = p.architecture.as_ref().ok_or(TrainError::NoArchitecture)?;
                let arch = Architecture::resolve(path, ctx.workspace)?;
                arch.describe(input, outputs).map_err(|source| TrainError::Incompatible {
                    architecture: path.clone(),
                    images: input,
                    source,
                })?;
                let (mean, std) = fit::channel_stats(&train.pixels);
                let meta = ModelMeta {
                    format: Format::Declared,
                    architecture: Some(arch),
                    input,
                    outputs,
                    target: ds.meta.target.clone(),
                    mean,
                    std,
                    seen: Vec::new(),
                };
                Model::init(meta, device, ctx.seed)?
            }
        };
        let cfg = FitConfig {
            epochs: p.epochs,
            batch_size: p.batch_size,
            optimizer: p.optimizer,
            lr: p.lr,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            augment: p.augment.clone(),
            keep: p.keep,
            seed: ctx.seed,
        };
        let curve = fit::fit_finite(&mut model, &train, &val, &cfg, ctx.progress, "training")?;
        // Its validation share is carved from the training split, so the split is all it saw.
        model.meta.see(&p.split, SeenAs::Trained);
        model.save(&ctx.output("model")?)?;
        Ok(curve::write(&ctx.output("curve")?, &curve)?)
    }
}
