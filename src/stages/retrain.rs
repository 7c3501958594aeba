//! Stage `retrain` (HUDD Step 7): the model under analysis trained further on its training set together with the
//! balanced, labelled unsafe set; the epoch chosen on held-out data, and the result compared with the original there.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::artefact::curve::{self, RetrainSummary};
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, LEARNING_CURVE, MODEL, RETRAIN_SUMMARY};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::{Model, ModelMeta, SeenAs};
use crate::model::fit::defaults::{
    default_epochs, default_momentum, default_split, default_threads, default_validation, default_wd,
};
use crate::model::fit::{self, Augment, Data, FitConfig, Keep, OptimizerKind};
use crate::runtime::{self, DeviceChoice};

/// Why a model cannot be retrained as asked: each names the data set or the split.
#[derive(Debug, thiserror::Error)]
pub enum RetrainError {
    #[error("`{input}` ({}) does not match the model's input and task", dataset.display())]
    Mismatch { input: &'static str, dataset: std::path::PathBuf },
    #[error(
        "`validation_split = \"{split}\"`: the images of split `{split}` {role}; choosing the epoch on them would judge \
         the retraining with images that are not independent of it. Use a split that chose nothing (e.g. \
         `validation`, drawn like the test split)"
    )]
    NotIndependent { split: String, role: &'static str },
    #[error("the validation images ({0}) are empty")]
    NoValidation(String),
}

impl From<RetrainError> for StageError {
    fn from(e: RetrainError) -> Self {
        StageError::artefact(e)
    }
}

pub struct Retrain;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainParams {
    /// The split of `dataset` that the model was trained on.
    #[serde(default = "default_split")]
    pub split: String,
    /// A split of `dataset` to choose the epoch on and to compare with the original model (recommended: one drawn like
    /// the test set). Without it, a `validation` share of the training split is held out before the unsafe set joins it.
    #[serde(default)]
    pub validation_split: Option<String>,
    #[serde(default = "default_validation")]
    pub validation: f64,
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
    #[serde(default)]
    pub augment: Augment,
    #[serde(default = "default_keep")]
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

fn default_batch() -> usize {
    128
}
fn default_lr() -> f64 {
    0.001
}
fn default_keep() -> Keep {
    Keep::Best
}

impl Params for RetrainParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
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
        if !(0.0..0.9).contains(&self.validation) || (self.validation_split.is_none() && self.validation == 0.0) {
            out.push(Invalid::new(
                "validation",
                format!("must be in (0, 0.9) without a validation_split, got {}", self.validation),
            ));
        }
        out
    }
}

fn concat(parts: &[&Data]) -> Data {
    let cat = |f: &dyn Fn(&Data) -> Option<&Tensor>| -> Option<Tensor> {
        let ts: Vec<&Tensor> = parts.iter().filter_map(|d| f(d)).collect();
        (ts.len() == parts.len()).then(|| Tensor::cat(&ts, 0))
    };
    Data {
        pixels: Tensor::cat(&parts.iter().map(|d| &d.pixels).collect::<Vec<_>>(), 0),
        classes: cat(&|d| d.classes.as_ref()),
        keypoints: cat(&|d| d.keypoints.as_ref()),
    }
}

fn take(data: &Data, idx: &[i64]) -> Data {
    let idx = Tensor::from_slice(idx);
    Data {
        pixels: data.pixels.index_select(0, &idx),
        classes: data.classes.as_ref().map(|t| t.index_select(0, &idx)),
        keypoints: data.keypoints.as_ref().map(|t| t.index_select(0, &idx)),
    }
}

/// What the retrained model will have seen: the training split and the `extra` images trained it, the splits that
/// chose `extra` chose its data, the validation split chooses its epoch. A validation split that trained it or chose
/// its data is refused: the epoch must be chosen by images that chose nothing.
fn seen_after(p: &RetrainParams, original: &ModelMeta, extra: &Dataset) -> Result<ModelMeta, StageError> {
    let mut seen = original.clone();
    seen.see(&p.split, SeenAs::Trained);
    for (split, _) in &extra.meta.splits {
        seen.see(split, SeenAs::Trained);
    }
    for split in &extra.meta.chosen_by {
        seen.see(split, SeenAs::ChoseData);
    }
    let Some(split) = &p.validation_split else { return Ok(seen) };
    if let Some(how) = seen.saw(split) {
        let role = match how {
            SeenAs::Trained => "are training images of the retrained model",
            SeenAs::ChoseData => "chose the `extra` images (they were selected from this split's failures)",
            SeenAs::ChoseEpoch => "chose the original model's epoch",
        };
        return Err(RetrainError::NotIndependent { split: split.clone(), role }.into());
    }
    seen.see(split, SeenAs::ChoseEpoch);
    Ok(seen)
}

/// The training data (the training split and the `extra` images `added`), the validation data, and a sentence
/// saying where the validation images come from.
fn training_data(p: &RetrainParams, ds: &Dataset, added: &Data, seed: u64) -> Result<(Data, Data, String), StageError> {
    let original = Data::of(ds, &ds.split_rows(&p.split)?)?;
    Ok(match &p.validation_split {
        Some(split) => {
            let rows = ds.split_rows(split)?;
            (concat(&[&original, added]), Data::of(ds, &rows)?, format!("split `{split}`"))
        }
        None => {
            // Held out of the training split before the unsafe set joins it: no bootstrap copy lands on both
            // sides, and no selected image judges the model trained on it.
            let mut order: Vec<i64> = (0..original.len() as i64).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x007e_7a1d));
            let n_val = ((order.len() as f64) * p.validation).round() as usize;
            let (val, train) = order.split_at(n_val);
            let what =
                format!("{:.0}% of the training split, held out before the unsafe set joined it", p.validation * 100.0);
            (concat(&[&take(&original, train), added]), take(&original, val), what)
        }
    })
}

impl Stage for Retrain {
    type Params = RetrainParams;
    const KIND: &'static str = "retrain";
    const VERSION: u32 = 5;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "model",
            accepts: &[MODEL],
            many: false,
            required: true,
            doc: "the model under analysis: retraining starts from its weights",
        },
        InputSlot {
            name: "dataset",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the dataset it was trained on",
        },
        InputSlot {
            name: "extra",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the balanced, labelled images to add (a balance stage's output)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "model", kind: MODEL, path: "model/", doc: "model.json and weights.safetensors" },
        OutputSpec { name: "curve", kind: LEARNING_CURVE, path: "curve.csv", doc: "epoch,loss,train_score,val_score" },
        OutputSpec {
            name: "summary",
            kind: RETRAIN_SUMMARY,
            path: "retrain.json",
            doc: "original against retrained on the held-out images",
        },
    ];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Retrains the model with the unsafe set.";

    /// The device kind this resolves to enters the key: a GPU computes other bytes.
    fn fingerprints(p: &RetrainParams) -> Vec<(String, String)> {
        vec![crate::runtime::device_fingerprint(p.device)]
    }

    fn torch_threads(p: &RetrainParams, _run: usize) -> usize {
        p.threads
    }

    fn run(&self, p: &RetrainParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let mut model = Model::load(&ctx.input("model")?.path, device)?;
        model.net("retraining")?;
        let ds = Dataset::open(&ctx.input("dataset")?.path)?;
        let extra = Dataset::open(&ctx.input("extra")?.path)?;
        for (what, d) in [("dataset", &ds), ("extra", &extra)] {
            if d.meta.target != model.meta.target || [d.meta.channels, d.meta.height, d.meta.width] != model.meta.input
            {
                return Err(RetrainError::Mismatch { input: what, dataset: d.dir.clone() }.into());
            }
        }
        let seen = seen_after(p, &model.meta, &extra)?;
        let added = Data::of(&extra, &(0..extra.meta.count).collect::<Vec<_>>())?;
        let (train, val, validation) = training_data(p, &ds, &added, ctx.seed)?;
        if val.is_empty() {
            return Err(RetrainError::NoValidation(validation.to_string()).into());
        }
        let keypoints = val.keypoints.is_some();
        let before = fit::evaluate(&model, &val)?;
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
        let curve = fit::fit_finite(&mut model, &train, &val, &cfg, ctx.progress, "retraining")?;
        let after = fit::evaluate(&model, &val)?;
        let best_epoch = curve.iter().fold(None::<&fit::Epoch>, |b, e| match b {
            Some(b) if !fit::better(e.val_score, b.val_score, keypoints) => Some(b),
            _ => Some(e),
        });
        let summary = RetrainSummary {
            validation,
            validation_images: val.len(),
            training_images: train.len(),
            unsafe_images: added.len(),
            original: before,
            retrained: after,
            difference: after - before,
            better: fit::better(after, before, keypoints),
            best_epoch: if p.keep == Keep::Best { best_epoch.map_or(0, |e| e.epoch) } else { p.epochs },
        };
        model.meta.seen = seen.seen;
        model.save(&ctx.output("model")?)?;
        curve::write(&ctx.output("curve")?, &curve)?;
        Ok(table::write_json(&ctx.output("summary")?, &summary)?)
    }
}
