//! Stage `train`: a declared architecture trained on a dataset's training split, optionally from given weights.

use std::path::PathBuf;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::dataset::Dataset;
use crate::model::Architecture;
use crate::model::artefact::{Format, Model, ModelMeta};
use crate::model::fit::{self, Augment, Data, FitConfig, Keep, OptimizerKind};
use crate::runtime::{self, DeviceChoice};
use crate::sim::Target;
use crate::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};

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
    /// libtorch threads for this stage (default: the run's, cores / --jobs).
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
}

pub(crate) fn default_split() -> String {
    "train".into()
}
pub(crate) fn default_epochs() -> usize {
    10
}
fn default_batch() -> usize {
    64
}
fn default_lr() -> f64 {
    0.01
}
pub(crate) fn default_momentum() -> f64 {
    0.9
}
pub(crate) fn default_wd() -> f64 {
    5e-4
}
pub(crate) fn default_validation() -> f64 {
    0.1
}

impl Params for TrainParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.epochs == 0 {
            out.push(Invalid::new("epochs", "must be at least 1, got 0"));
        }
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
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

/// The training data of a split, with a seeded validation hold-out.
pub fn split_data(ds: &Dataset, rows: &[usize], validation: f64, seed: u64) -> Result<(Data, Data), StageError> {
    let mut rows = rows.to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0f_7a11);
    rows.shuffle(&mut rng);
    let n_val = ((rows.len() as f64) * validation).round() as usize;
    let (val, train) = rows.split_at(n_val.min(rows.len()));
    let mut train = train.to_vec();
    let mut val = val.to_vec();
    train.sort_unstable();
    val.sort_unstable();
    Ok((data_of(ds, &train)?, data_of(ds, &val)?))
}

/// Pixels and labels of the given rows, in memory.
pub fn data_of(ds: &Dataset, rows: &[usize]) -> Result<Data, StageError> {
    let m = &ds.meta;
    let pixels = ds.images(rows).map_err(|e| StageError::input(e.to_string()))?;
    let pixels =
        Tensor::from_slice(&pixels).view([rows.len() as i64, m.channels as i64, m.height as i64, m.width as i64]);
    match &m.target {
        Target::Classification { .. } => {
            let all = ds.class_labels().map_err(|e| StageError::input(e.to_string()))?;
            let y: Vec<i64> = rows.iter().map(|&r| all[r]).collect();
            Ok(Data { pixels, classes: Some(Tensor::from_slice(&y)), keypoints: None })
        }
        Target::Regression { targets } => {
            let all = ds.targets().map_err(|e| StageError::input(e.to_string()))?;
            let flat: Vec<f32> = rows.iter().flat_map(|&r| all[r].iter().copied()).collect();
            let kp = Tensor::from_slice(&flat).view([rows.len() as i64, targets.len() as i64]);
            Ok(Data { pixels, classes: None, keypoints: Some(kp) })
        }
    }
}

/// Number of outputs a dataset's task needs: classes, or keypoints (two targets each).
pub fn outputs_of(target: &Target) -> usize {
    match target {
        Target::Classification { classes } => classes.len(),
        Target::Regression { targets } => targets.len() / 2,
    }
}

impl Stage for Train {
    type Params = TrainParams;
    const KIND: &'static str = "train";
    const VERSION: u32 = 2;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "dataset", many: false, required: true, doc: "a dataset artefact" },
        InputSlot { name: "init", many: false, required: false, doc: "a model whose weights training starts from" },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "model", path: "model/", doc: "model.json and weights.safetensors" },
        OutputSpec { name: "curve", path: "curve.csv", doc: "epoch,loss,train_score,val_score" },
    ];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Trains a declared architecture.";

    fn external_paths(p: &TrainParams) -> Vec<PathBuf> {
        p.architecture.iter().map(|a| crate::model::architecture_path(a)).collect()
    }

    fn run(&self, p: &TrainParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        runtime::set_threads(p.threads.unwrap_or(ctx.threads));
        let device = runtime::device(p.device).map_err(StageError::input)?;
        let ds = Dataset::open(&ctx.input("dataset")?.path).map_err(|e| StageError::input(e.to_string()))?;
        let rows = ds.split_rows(&p.split).map_err(|e| StageError::input(e.to_string()))?;
        if rows.is_empty() {
            return Err(StageError::input(format!("split `{}` of the dataset is empty", p.split)));
        }
        let (train, val) = split_data(&ds, &rows, p.validation, ctx.seed)?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        let outputs = outputs_of(&ds.meta.target);
        let mut model = match ctx.inputs("init").first() {
            Some(init) => {
                let m = Model::load(&init.path.clone(), device).map_err(|e| StageError::input(e.to_string()))?;
                m.net("training").map_err(|e| StageError::input(e.to_string()))?;
                if m.meta.input != input || m.meta.outputs != outputs {
                    return Err(StageError::input(format!(
                        "the initial model takes {:?} with {} outputs; the dataset has {input:?} images and {outputs} outputs",
                        m.meta.input, m.meta.outputs
                    )));
                }
                m
            }
            None => {
                let path = p.architecture.as_ref().ok_or_else(|| {
                    StageError::input("give `architecture = \"models/<name>.toml\"` or an `init` model to start from")
                })?;
                let arch = Architecture::load(&ctx.resolve(&crate::model::architecture_path(path)))
                    .map_err(|e| StageError::input(e.to_string()))?;
                arch.describe(input, outputs).map_err(|e| {
                    StageError::input(format!("{} cannot take the dataset's {input:?} images: {e}", path.display()))
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
                };
                Model::init(meta, device, ctx.seed).map_err(|e| StageError::input(e.to_string()))?
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
        let curve = fit_gated(&mut model, &train, &val, &cfg, ctx.progress, "training")?;
        model.save(&ctx.output("model")?).map_err(|e| StageError::failed(e.to_string()))?;
        write_curve(&ctx.output("curve")?, &curve)
    }
}

/// Fits a model and fails the stage's gate when the loss stopped being finite (`what`: training, retraining).
pub(crate) fn fit_gated(
    model: &mut Model,
    train: &Data,
    val: &Data,
    cfg: &FitConfig,
    progress: &crate::progress::Progress,
    what: &str,
) -> Result<Vec<fit::Epoch>, StageError> {
    let curve = fit::fit(model, train, val, cfg, progress).map_err(|e| StageError::failed(e.to_string()))?;
    if curve.iter().any(|e| !e.loss.is_finite()) {
        return Err(StageError::Gate {
            message: format!("{what} diverged (loss is not finite); lower lr (now {})", cfg.lr),
        });
    }
    Ok(curve)
}

/// The learning curve; no wall times (they live in `entry.json`), so equal training gives equal bytes.
pub fn write_curve(path: &std::path::Path, curve: &[fit::Epoch]) -> Result<(), StageError> {
    let mut text = String::from("epoch,loss,train_score,val_score\n");
    for e in curve {
        text.push_str(&format!("{},{:.6},{:.6},{:.6}\n", e.epoch, e.loss, e.train_score, e.val_score));
    }
    std::fs::write(path, text).map_err(|e| StageError::io(path, e))
}
