//! Stage `test` (HUDD's TestModule): a model run over a dataset split, with HUDD's results table, the
//! error-inducing images as a dataset of their own, and an accuracy summary.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::dataset::{Dataset, write_csv};
use crate::model::artefact::Model;
use crate::model::fit::{keypoint_errors, keypoints_from_maps};
use crate::runtime::{self, DeviceChoice};
use crate::sim::Target;
use crate::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};

pub struct Test;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestParams {
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Keypoint models: an image is an error when its mean keypoint error exceeds this many pixels (HUDD: 4).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub device: DeviceChoice,
    /// libtorch threads for this stage (default: the run's, cores / --jobs).
    #[serde(default)]
    pub threads: Option<usize>,
}

fn default_split() -> String {
    "test".into()
}
fn default_batch() -> usize {
    256
}
/// HUDD's: a keypoint image fails above 4 pixels of mean error.
pub(crate) const DEFAULT_THRESHOLD: f64 = 4.0;

fn default_threshold() -> f64 {
    DEFAULT_THRESHOLD
}

impl Params for TestParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
        }
        if !(self.threshold > 0.0) {
            out.push(Invalid::new("threshold", format!("must be above 0 pixels, got {}", self.threshold)));
        }
        out
    }
}

/// The summary a test writes (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub split: String,
    pub images: usize,
    pub errors: usize,
    /// Share of correct images (keypoints: mean error within the threshold).
    pub accuracy: f64,
    /// Keypoint models: mean keypoint error in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_error: Option<f64>,
    /// Classification: accuracy per class name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_class: Vec<(String, f64, usize)>,
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

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64
}

/// Runs a model over some rows of a dataset in batches.
pub fn predict(
    model: &Model,
    ds: &Dataset,
    rows: &[usize],
    batch: usize,
    threshold: f64,
    progress: &crate::progress::Progress,
) -> Result<Vec<Prediction>, StageError> {
    let m = &ds.meta;
    let labels = match &m.target {
        Target::Classification { .. } => ds.class_labels().map_err(|e| StageError::input(e.to_string()))?,
        Target::Regression { .. } => Vec::new(),
    };
    let targets = ds.targets().map_err(|e| StageError::input(e.to_string()))?;
    let mut out = Vec::with_capacity(rows.len());
    progress.start(rows.len() as u64, "predictions");
    tch::no_grad(|| {
        for chunk in rows.chunks(batch.max(1)) {
            let pixels = ds.images(chunk).map_err(|e| StageError::input(e.to_string()))?;
            let x = Tensor::from_slice(&pixels).view([
                chunk.len() as i64,
                m.channels as i64,
                m.height as i64,
                m.width as i64,
            ]);
            let y = model.forward_t(&model.preprocess(&x), false).map_err(|e| StageError::input(e.to_string()))?;
            match &m.target {
                Target::Classification { .. } => {
                    let scores = y.softmax(-1, Kind::Float).to_device(tch::Device::Cpu);
                    let flat: Vec<f32> = Vec::try_from(scores.flatten(0, -1))
                        .map_err(|e: tch::TchError| StageError::failed(e.to_string()))?;
                    let k = y.size()[1] as usize;
                    for (i, &row) in chunk.iter().enumerate() {
                        let s = flat[i * k..(i + 1) * k].to_vec();
                        let predicted = argmax(&s);
                        out.push(Prediction::Class { expected: labels[row] as usize, predicted, scores: s });
                    }
                }
                Target::Regression { .. } => {
                    let pred = keypoints_from_maps(&y, model.meta.input).to_device(tch::Device::Cpu);
                    let flat: Vec<f32> = chunk.iter().flat_map(|&r| targets[r].iter().copied()).collect();
                    let t = Tensor::from_slice(&flat).view([chunk.len() as i64, -1]);
                    let errors = keypoint_errors(&pred, &t);
                    let k = errors.size()[1] as usize;
                    let flat: Vec<f32> = Vec::try_from(errors.flatten(0, -1))
                        .map_err(|e: tch::TchError| StageError::failed(e.to_string()))?;
                    for i in 0..chunk.len() {
                        out.push(Prediction::Keypoints { errors: flat[i * k..(i + 1) * k].to_vec(), threshold });
                    }
                }
            }
            progress.inc(chunk.len() as u64);
        }
        Ok::<(), StageError>(())
    })?;
    Ok(out)
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

impl Stage for Test {
    type Params = TestParams;
    const KIND: &'static str = "test";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "model", many: false, required: true, doc: "a model artefact (declared or TorchScript)" },
        InputSlot { name: "dataset", many: false, required: true, doc: "a dataset artefact" },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec {
            name: "results",
            path: "results.csv",
            doc: "image,result,expected,predicted,<score per class>,<parameters>",
        },
        OutputSpec { name: "errors", path: "errors/", doc: "the error-inducing images, as a dataset artefact" },
        OutputSpec { name: "summary", path: "summary.json", doc: "accuracy, errors, per-class accuracy" },
    ];
    const DOC: &'static str = "Runs a model over a dataset split.";

    fn run(&self, p: &TestParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        runtime::set_threads(p.threads.unwrap_or(ctx.threads));
        let device = runtime::device(p.device).map_err(StageError::input)?;
        let model = Model::load(&ctx.input("model")?.path, device).map_err(|e| StageError::input(e.to_string()))?;
        let ds = Dataset::open(&ctx.input("dataset")?.path).map_err(|e| StageError::input(e.to_string()))?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        if model.meta.input != input {
            return Err(StageError::input(format!(
                "the model takes {:?} images, the dataset has {input:?}; simulate or import at the model's size",
                model.meta.input
            )));
        }
        if model.meta.target != ds.meta.target {
            return Err(StageError::input(
                "the model was trained for another task (different classes or keypoints)".to_string(),
            ));
        }
        let rows = ds.split_rows(&p.split).map_err(|e| StageError::input(e.to_string()))?;
        let preds = predict(&model, &ds, &rows, p.batch_size, p.threshold, ctx.progress)?;
        let ids = ds.ids().map_err(|e| StageError::input(e.to_string()))?;
        let ids: Vec<String> = rows.iter().map(|&r| ids[r].clone()).collect();
        let results: Vec<&str> = preds.iter().map(|pr| if pr.correct() { "Correct" } else { "Wrong" }).collect();
        let mut columns = vec![
            polars::prelude::Column::new("image".into(), &ids),
            polars::prelude::Column::new("result".into(), &results),
        ];
        let mut summary = Summary {
            split: p.split.clone(),
            images: rows.len(),
            errors: results.iter().filter(|r| **r == "Wrong").count(),
            accuracy: 0.0,
            mean_error: None,
            per_class: Vec::new(),
        };
        summary.accuracy = 1.0 - summary.errors as f64 / rows.len().max(1) as f64;
        match &ds.meta.target {
            Target::Classification { classes } => {
                let expected: Vec<&str> = preds
                    .iter()
                    .map(|pr| match pr {
                        Prediction::Class { expected, .. } => classes[*expected].as_str(),
                        _ => "",
                    })
                    .collect();
                let predicted: Vec<&str> = preds
                    .iter()
                    .map(|pr| match pr {
                        Prediction::Class { predicted, .. } => classes[*predicted].as_str(),
                        _ => "",
                    })
                    .collect();
                columns.push(polars::prelude::Column::new("expected".into(), &expected));
                columns.push(polars::prelude::Column::new("predicted".into(), &predicted));
                for (k, class) in classes.iter().enumerate() {
                    let s: Vec<f32> = preds
                        .iter()
                        .map(|pr| match pr {
                            Prediction::Class { scores, .. } => scores[k],
                            _ => f32::NAN,
                        })
                        .collect();
                    columns.push(polars::prelude::Column::new(class.as_str().into(), s));
                }
                for (k, class) in classes.iter().enumerate() {
                    let of_class: Vec<bool> = preds
                        .iter()
                        .filter(|pr| matches!(pr, Prediction::Class { expected, .. } if *expected == k))
                        .map(Prediction::correct)
                        .collect();
                    if !of_class.is_empty() {
                        let acc = of_class.iter().filter(|c| **c).count() as f64 / of_class.len() as f64;
                        summary.per_class.push((class.clone(), acc, of_class.len()));
                    }
                }
            }
            Target::Regression { targets } => {
                let errors: Vec<&Vec<f32>> = preds
                    .iter()
                    .map(|pr| match pr {
                        Prediction::Keypoints { errors, .. } => errors,
                        _ => unreachable!(),
                    })
                    .collect();
                let avg: Vec<f64> = errors.iter().map(|e| mean(e)).collect();
                let max: Vec<f32> = errors.iter().map(|e| e.iter().copied().fold(0.0, f32::max)).collect();
                let worst: Vec<u32> = errors.iter().map(|e| argmax(e) as u32).collect();
                summary.mean_error = Some(avg.iter().sum::<f64>() / avg.len().max(1) as f64);
                columns.push(polars::prelude::Column::new("avg_error".into(), &avg));
                columns.push(polars::prelude::Column::new("max_error".into(), &max));
                columns.push(polars::prelude::Column::new("worst_kp".into(), &worst));
                for k in 0..targets.len() / 2 {
                    let e: Vec<f32> = errors.iter().map(|e| e[k]).collect();
                    columns.push(polars::prelude::Column::new(format!("KP{k}").into(), e));
                }
            }
        }
        for name in ds.param_names() {
            if let Ok(col) = ds.table.column(&name) {
                let idx: Vec<polars::prelude::IdxSize> = rows.iter().map(|&r| r as polars::prelude::IdxSize).collect();
                let taken = col
                    .take(&polars::prelude::IdxCa::from_vec("idx".into(), idx))
                    .map_err(|e| StageError::failed(e.to_string()))?;
                columns.push(taken);
            }
        }
        let mut df =
            polars::prelude::DataFrame::new(rows.len(), columns).map_err(|e| StageError::failed(e.to_string()))?;
        write_csv(&ctx.output("results")?, &mut df).map_err(|e| StageError::failed(e.to_string()))?;
        let wrong: Vec<usize> = rows.iter().zip(&preds).filter(|(_, pr)| !pr.correct()).map(|(&r, _)| r).collect();
        ds.write_subset(&wrong, &ctx.output("errors")?).map_err(|e| StageError::failed(e.to_string()))?;
        let path = ctx.output("summary")?;
        std::fs::write(&path, serde_json::to_vec_pretty(&summary).expect("summary serialises"))
            .map_err(|e| StageError::io(&path, e))?;
        ctx.progress
            .message(&format!("accuracy {:.4}, {} errors of {}", summary.accuracy, summary.errors, summary.images));
        Ok(())
    }
}
