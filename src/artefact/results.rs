//! The `test results` artefact, `results.csv` of a test stage: one row per image with `image`, `result`
//! (`Correct` or `Wrong`), the expected and predicted values, per-class scores or per-keypoint errors (`avg_error`
//! for keypoint models) and the image's parameters. Its columns depend on the task, so it is read by name.
//! Beside it, `summary.json` ([`TestSummary`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::{TableError, row_error};
use crate::model::artefact::SeenAs;

/// What the evaluation needs of a test: each image's outcome and, for keypoint models, its mean error.
pub struct TestResults {
    pub path: PathBuf,
    /// Image id → whether the model got it right, in table order.
    pub images: Vec<(String, bool)>,
    /// Mean keypoint error per image (keypoint models only), in table order.
    pub errors: Option<Vec<f64>>,
    /// The splits of the images, in order of appearance (empty for tables written before the column existed).
    pub splits: Vec<String>,
    /// How the model saw the images (the strongest way over the table), `None` when it saw none of them.
    pub seen: Option<SeenAs>,
}

impl TestResults {
    pub fn read(path: &Path) -> Result<TestResults, TableError> {
        let mut reader = csv::Reader::from_path(path).map_err(|e| row_error(path, e))?;
        let header = reader.headers().map_err(|e| row_error(path, e))?.clone();
        let col = |name: &str| header.iter().position(|h| h == name);
        let (Some(image), Some(result)) = (col("image"), col("result")) else {
            return Err(TableError::Header {
                path: path.to_path_buf(),
                found: header.iter().collect::<Vec<_>>().join(","),
                expected: "a test stage's results: image,result,...".into(),
            });
        };
        let (error, split, seen_col) = (col("avg_error"), col("split"), col("seen"));
        let (mut images, mut errors, mut splits, mut seen) = (Vec::new(), Vec::new(), Vec::<String>::new(), None);
        for record in reader.records() {
            let record = record.map_err(|e| row_error(path, e))?;
            images.push((record[image].to_string(), &record[result] == "Correct"));
            if let Some(e) = error {
                errors.push(record[e].parse::<f64>().unwrap_or(f64::NAN));
            }
            if let Some(s) = split
                && !splits.iter().any(|x| x == &record[s])
            {
                splits.push(record[s].to_string());
            }
            if let Some(how) = seen_col.and_then(|c| SeenAs::parse(&record[c])) {
                seen = Some(seen.map_or(how, |s: SeenAs| s.min(how)));
            }
        }
        Ok(TestResults { path: path.to_path_buf(), images, errors: error.map(|_| errors), splits, seen })
    }

    /// Image id → correct.
    pub fn correct(&self) -> HashMap<String, bool> {
        self.images.iter().cloned().collect()
    }
}

/// `summary.json` of a test stage (the `test summary` artefact).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestSummary {
    pub split: String,
    /// How the model saw the tested split (`None`: it chose nothing, so the test judges the model fairly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<SeenAs>,
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
