//! Stage `test` (HUDD's TestModule): a model run over a dataset split, with HUDD's results table, the
//! error-inducing images as a dataset of their own, and an accuracy summary.

use serde::{Deserialize, Serialize};

use crate::artefact::results::TestSummary;
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, DATASET, MODEL, TEST_RESULTS, TEST_SUMMARY};
use crate::dataset::Target;
use crate::dataset::{Dataset, write_csv};
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::Model;
use crate::model::predict::{DEFAULT_THRESHOLD, Prediction, TestError, argmax, mean, predict};
use crate::runtime::{self, DeviceChoice};

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

impl Stage for Test {
    type Params = TestParams;
    const KIND: &'static str = "test";
    const VERSION: u32 = 2;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "model",
            accepts: &[MODEL],
            many: false,
            required: true,
            doc: "a model artefact (declared or TorchScript)",
        },
        InputSlot { name: "dataset", accepts: ANY_DATASET, many: false, required: true, doc: "a dataset artefact" },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec {
            name: "results",
            kind: TEST_RESULTS,
            path: "results.csv",
            doc: "image,result,expected,predicted,<score per class>,<parameters>",
        },
        OutputSpec {
            name: "errors",
            kind: DATASET,
            path: "errors/",
            doc: "the error-inducing images, as a dataset artefact",
        },
        OutputSpec {
            name: "summary",
            kind: TEST_SUMMARY,
            path: "summary.json",
            doc: "accuracy, errors, per-class accuracy",
        },
    ];
    // Backed by tests/it/settings.rs: 1 and 2 threads give the same bytes. The batch size does not: oneDNN's
    // kernels sum in another order for another batch, and the last bits of scores and relevance move.
    const SETTINGS: &'static [&'static str] = &["threads"];
    const DOC: &'static str = "Runs a model over a dataset split.";

    /// The device kind this resolves to enters the key: a GPU computes other bytes.
    fn fingerprints(p: &TestParams) -> Vec<(String, String)> {
        vec![crate::runtime::device_fingerprint(p.device)]
    }

    fn torch_threads(p: &TestParams, run: usize) -> usize {
        p.threads.unwrap_or(run)
    }

    fn run(&self, p: &TestParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let model = Model::load(&ctx.input("model")?.path, device)?;
        let ds = Dataset::open(&ctx.input("dataset")?.path)?;
        TestError::check(&model.meta, &ds.meta)?;
        let rows = ds.split_rows(&p.split)?;
        let preds = predict(&model, &ds, &rows, p.batch_size, p.threshold, ctx.progress)?;
        let ids = ds.ids()?;
        let ids: Vec<String> = rows.iter().map(|&r| ids[r].clone()).collect();
        let results: Vec<&str> = preds.iter().map(|pr| if pr.correct() { "Correct" } else { "Wrong" }).collect();
        // Whether the model saw these images (trained on them, chose its data or its epoch with them): such a test
        // does not judge it on independent images, and `compare` tells the two apart.
        let seen = model.meta.saw(&p.split);
        let seen_name = seen.map_or("no".to_string(), |s| s.name().to_string());
        let mut columns = vec![
            polars::prelude::Column::new("image".into(), &ids),
            polars::prelude::Column::new("result".into(), &results),
        ];
        let mut summary = TestSummary {
            split: p.split.clone(),
            seen,
            images: rows.len(),
            errors: results.iter().filter(|r| **r == "Wrong").count(),
            accuracy: 0.0,
            mean_error: None,
            per_class: Vec::new(),
        };
        summary.accuracy = 1.0 - summary.errors as f64 / rows.len().max(1) as f64;
        match &ds.meta.target {
            Target::Classification { classes } => class_columns(&preds, classes, &mut columns, &mut summary),
            Target::Regression { targets } => keypoint_columns(&preds, targets.len() / 2, &mut columns, &mut summary),
        }
        columns.push(polars::prelude::Column::new("split".into(), vec![p.split.as_str(); rows.len()]));
        columns.push(polars::prelude::Column::new("seen".into(), vec![seen_name.as_str(); rows.len()]));
        for name in ds.param_names() {
            if let Ok(col) = ds.table.column(&name) {
                let idx: Vec<polars::prelude::IdxSize> = rows.iter().map(|&r| r as polars::prelude::IdxSize).collect();
                let taken = col.take(&polars::prelude::IdxCa::from_vec("idx".into(), idx))?;
                columns.push(taken);
            }
        }
        let mut df = polars::prelude::DataFrame::new(rows.len(), columns)?;
        write_csv(&ctx.output("results")?, &mut df)?;
        let wrong: Vec<usize> = rows.iter().zip(&preds).filter(|(_, pr)| !pr.correct()).map(|(&r, _)| r).collect();
        ds.write_subset(&wrong, &ctx.output("errors")?)?;
        table::write_json(&ctx.output("summary")?, &summary)?;
        ctx.progress
            .message(&format!("accuracy {:.4}, {} errors of {}", summary.accuracy, summary.errors, summary.images));
        Ok(())
    }
}

/// A classifier's columns (expected and predicted class, each class's score) and its accuracy per class.
fn class_columns(
    preds: &[Prediction],
    classes: &[String],
    columns: &mut Vec<polars::prelude::Column>,
    summary: &mut TestSummary,
) {
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

/// A keypoint model's columns (mean, largest and worst keypoint's error, each keypoint's) and its mean error.
fn keypoint_columns(
    preds: &[Prediction],
    keypoints: usize,
    columns: &mut Vec<polars::prelude::Column>,
    summary: &mut TestSummary,
) {
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
    for k in 0..keypoints {
        let e: Vec<f32> = errors.iter().map(|e| e[k]).collect();
        columns.push(polars::prelude::Column::new(format!("KP{k}").into(), e));
    }
}
