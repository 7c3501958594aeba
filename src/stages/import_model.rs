//! Stage `model`: a DNN trained elsewhere brought in as a model artefact: a declared architecture with PyTorch
//! safetensors weights, or an ONNX file translated into both (every stage can use these), or a TorchScript file
//! (predictions only: the `test` stage).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::artefact::{ANY_DATASET, MODEL};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::{Format, META, Model, ModelMeta, TORCHSCRIPT, assign_weights, load_weights};
use crate::model::{Architecture, is_shipped_name, shipped_fingerprint};

pub struct ImportModel;

/// Why a model trained elsewhere cannot be brought in: each names the user's file (not the store's copy).
#[derive(Debug, thiserror::Error)]
pub enum ImportModelError {
    #[error("mean and std need {channels} values (one per channel), got {mean} and {std}")]
    Normalisation { channels: usize, mean: usize, std: usize },
    #[error(transparent)]
    Onnx(#[from] crate::model::onnx::OnnxError),
    #[error("give `torchscript`, or `architecture` with `weights`")]
    NoSource,
    #[error("{}: cannot load it: {message}", file.display())]
    Weights { file: PathBuf, message: String },
    #[error("{}: {source}", file.display())]
    Load { file: PathBuf, source: crate::model::artefact::ModelError },
    #[error("{}: the model cannot take the dataset's {input:?} images: {source}", file.display())]
    Forward { file: PathBuf, input: [usize; 3], source: crate::model::artefact::ModelError },
    #[error("{}: the model gives {kind:?} outputs; hudd needs float logits (or keypoint maps)", file.display())]
    NotFloat { file: PathBuf, kind: Kind },
    #[error(
        "{}: the model gives outputs of shape {shape:?} for one image; the dataset's task needs {outputs} outputs",
        file.display()
    )]
    Outputs { file: PathBuf, shape: Vec<i64>, outputs: usize },
}

impl From<ImportModelError> for StageError {
    fn from(e: ImportModelError) -> Self {
        StageError::artefact(e)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportModelParams {
    /// A TorchScript file (`torch.jit.save`), relative to the workspace.
    #[serde(default)]
    pub torchscript: Option<PathBuf>,
    /// An ONNX file, translated into a declared architecture and its weights (`hudd model import` shows the result).
    #[serde(default)]
    pub onnx: Option<PathBuf>,
    /// A shipped architecture name or file, with `weights`.
    #[serde(default)]
    pub architecture: Option<PathBuf>,
    /// Safetensors weights named as PyTorch names them (`features.0.weight`).
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// Per-channel normalisation the model expects of pixels in 0..1: `(x - mean) / std`.
    #[serde(default)]
    pub mean: Option<Vec<f32>>,
    #[serde(default)]
    pub std: Option<Vec<f32>>,
}

impl Params for ImportModelParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if let Some(message) = self.architecture.as_deref().and_then(crate::model::check_name) {
            out.push(Invalid::new("architecture", message));
        }
        let sources =
            [self.torchscript.is_some(), self.onnx.is_some(), self.architecture.is_some() || self.weights.is_some()];
        if sources.iter().filter(|s| **s).count() > 1 {
            out.push(Invalid::new(
                if self.torchscript.is_some() { "torchscript" } else { "onnx" },
                "give one of `torchscript`, `onnx`, or `architecture` with `weights`",
            ));
            return out;
        }
        match (&self.torchscript, &self.architecture, &self.weights) {
            _ if self.onnx.is_some() => {}
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            (Some(_), _, _) => out.push(Invalid::new(
                "torchscript",
                "give either `torchscript`, or `architecture` with `weights`, not both",
            )),
            (None, Some(_), None) => out.push(Invalid::new("architecture", "needs `weights` (a safetensors file)")),
            (None, None, Some(_)) => {
                out.push(Invalid::new("weights", "needs `architecture` (a shipped name or a file)"))
            }
            (None, None, None) => {
                out.push(Invalid::new("torchscript", "give `torchscript`, `onnx`, or `architecture` with `weights`"))
            }
        }
        if let Some(std) = &self.std
            && std.iter().any(|s| !(*s > 0.0))
        {
            out.push(Invalid::new("std", format!("every value must be above 0, got {std:?}")));
        }
        out
    }
}

impl Stage for ImportModel {
    type Params = ImportModelParams;
    const KIND: &'static str = "model";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "dataset",
        accepts: ANY_DATASET,
        many: false,
        required: true,
        doc: "the data the model takes: input size and classes",
    }];
    const OUTPUTS: &'static [OutputSpec] =
        &[OutputSpec { name: "model", kind: MODEL, path: "model/", doc: "model.json with weights or model.pt" }];
    const DOC: &'static str = "Imports a DNN trained elsewhere.";

    fn external_paths(p: &ImportModelParams) -> Vec<PathBuf> {
        let arch = p.architecture.clone().filter(|a| !is_shipped_name(a));
        [p.torchscript.clone(), p.onnx.clone(), arch, p.weights.clone()].into_iter().flatten().collect()
    }

    /// An ONNX model's external data (`model.onnx.data`), beside the model: the stage reads it, so it is keyed.
    fn named_paths(p: &ImportModelParams, workspace: &std::path::Path) -> Vec<PathBuf> {
        let Some(onnx) = &p.onnx else { return Vec::new() };
        let folder = onnx.parent().unwrap_or(std::path::Path::new(""));
        let files = crate::model::onnx::external_files(&workspace.join(onnx)).unwrap_or_default();
        let dir = workspace.join(folder);
        files.iter().map(|f| folder.join(f.strip_prefix(&dir).unwrap_or(f))).collect()
    }

    fn fingerprints(p: &ImportModelParams) -> Vec<(String, String)> {
        p.architecture.iter().filter_map(|a| shipped_fingerprint(a)).collect()
    }

    fn run(&self, p: &ImportModelParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let ds = Dataset::open(&ctx.input("dataset")?.path)?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        let outputs = crate::model::outputs_for(&ds.meta.target);
        let c = ds.meta.channels;
        let mean = p.mean.clone().unwrap_or_else(|| vec![0.0; c]);
        let std = p.std.clone().unwrap_or_else(|| vec![1.0; c]);
        if mean.len() != c || std.len() != c {
            return Err(ImportModelError::Normalisation { channels: c, mean: mean.len(), std: std.len() }.into());
        }
        let dir = ctx.output("model")?;
        let mut meta = ModelMeta {
            format: Format::Torchscript,
            architecture: None,
            input,
            outputs,
            target: ds.meta.target.clone(),
            mean,
            std,
            seen: Vec::new(),
        };
        match (&p.torchscript, &p.architecture, &p.weights) {
            _ if p.onnx.is_some() => {
                let src = ctx.resolve(p.onnx.as_ref().expect("checked"));
                let imported = crate::model::onnx::import(&src).map_err(ImportModelError::from)?;
                meta.format = Format::Declared;
                meta.architecture = Some(imported.architecture);
                let mut model = Model::init(meta.clone(), tch::Device::Cpu, 0)?;
                let vs = model.var_store_mut().expect("a declared model has a var store");
                assign_weights(vs, imported.weights, &src)?;
                // Writes model.json and the weights.
                model.save(&dir)?;
            }
            (Some(ts), _, _) => {
                let src = ctx.resolve(ts);
                std::fs::copy(&src, dir.join(TORCHSCRIPT)).map_err(|e| StageError::io(&src, e))?;
                let meta_path = dir.join(META);
                std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).expect("meta serialises"))
                    .map_err(|e| StageError::io(&meta_path, e))?;
            }
            (None, Some(arch), Some(weights)) => {
                let architecture = Architecture::resolve(arch, ctx.workspace)?;
                meta.format = Format::Declared;
                meta.architecture = Some(architecture);
                let mut model = Model::init(meta.clone(), tch::Device::Cpu, 0)?;
                let vs = model.var_store_mut().expect("a declared model has a var store");
                load_weights(vs, &ctx.resolve(weights))?;
                // Writes model.json and the weights.
                model.save(&dir)?;
            }
            _ => return Err(ImportModelError::NoSource.into()),
        }
        // The model must take one image of the dataset and give the task's outputs. Messages name the user's file,
        // not the copy being written into the store.
        let source = p
            .torchscript
            .as_ref()
            .or(p.onnx.as_ref())
            .or(p.weights.as_ref())
            .map(|f| ctx.resolve(f))
            .unwrap_or_default();
        check_forward(&dir, &ds, source)
    }
}

/// Loads the imported model from `dir` and runs it on the dataset's first image: it must give the task's outputs as
/// floats. Errors name `source`, the user's file.
fn check_forward(dir: &std::path::Path, ds: &Dataset, source: std::path::PathBuf) -> Result<(), StageError> {
    let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
    let outputs = crate::model::outputs_for(&ds.meta.target);
    let model = Model::load(dir, tch::Device::Cpu).map_err(|e| match e {
        crate::model::artefact::ModelError::Weights { message, .. } => {
            ImportModelError::Weights { file: source.clone(), message }
        }
        other => ImportModelError::Load { file: source.clone(), source: other },
    })?;
    let pixels = ds.images(&[0])?;
    let x = Tensor::from_slice(&pixels).view([1, input[0] as i64, input[1] as i64, input[2] as i64]);
    let y = tch::no_grad(|| model.forward(&model.preprocess(&x))).map_err(|e| ImportModelError::Forward {
        file: source.clone(),
        input,
        source: e,
    })?;
    let got = y.size();
    let ok = match &ds.meta.target {
        crate::dataset::Target::Classification { .. } => got == [1, outputs as i64],
        crate::dataset::Target::Regression { .. } => got.len() == 4 && got[1] == outputs as i64,
    };
    if y.kind() != Kind::Float {
        return Err(ImportModelError::NotFloat { file: source, kind: y.kind() }.into());
    }
    if !ok {
        return Err(ImportModelError::Outputs { file: source, shape: got, outputs }.into());
    }
    Ok(())
}
