//! The artefacts of training: the `learning curve`, `curve.csv` of a train or retrain stage (loss and scores per
//! epoch, [`EpochRow`]; no wall times, they live in `entry.json`, so equal training gives equal bytes), and the
//! `retraining summary`, `retrain.json` ([`RetrainSummary`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::table::{self, Row, TableError, six_decimals};
use crate::model::fit::Epoch;

/// A row of `curve.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    #[serde(serialize_with = "six_decimals")]
    pub loss: f64,
    /// Accuracy, or mean keypoint error in pixels, on the training batches.
    #[serde(serialize_with = "six_decimals")]
    pub train_score: f64,
    /// The same on the validation images (NaN without them).
    #[serde(serialize_with = "six_decimals")]
    pub val_score: f64,
}

impl Row for EpochRow {
    const COLUMNS: &'static [&'static str] = &["epoch", "loss", "train_score", "val_score"];
}

/// Writes a fit's curve.
pub fn write(path: &Path, curve: &[Epoch]) -> Result<(), TableError> {
    let rows: Vec<EpochRow> = curve
        .iter()
        .map(|e| EpochRow { epoch: e.epoch, loss: e.loss, train_score: e.train_score, val_score: e.val_score })
        .collect();
    table::write(path, &rows)
}

/// `retrain.json`: how the retrained model compares with the original on the same held-out images.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetrainSummary {
    pub validation: String,
    pub validation_images: usize,
    pub training_images: usize,
    pub unsafe_images: usize,
    /// Accuracy (classification) or mean keypoint error in pixels, before and after.
    pub original: f64,
    pub retrained: f64,
    pub difference: f64,
    pub better: bool,
    pub best_epoch: usize,
}
