//! The `unsafe set` artefact, `unsafe.csv` of a select stage: the images selected for labelling, each with the
//! cluster it was assigned to, its heatmap distance to that cluster and the rank of that cluster among the image's
//! closest ([`UnsafeRow`]). The selected images themselves are a `selection` dataset beside it; its `pictures/`
//! folder holds, per cluster, the images, a GIF and a contact sheet, and `select.json` (what was selected how).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::{Row, TableError, display};

/// `select.json` in a select stage's `pictures/` folder: the strategy, split, candidates, mode, quota, budget, and
/// what was selected per cluster (or why nothing was).
pub fn record_path(pictures: &Path) -> PathBuf {
    pictures.join("select.json")
}

pub fn write_record(pictures: &Path, record: &serde_json::Value) -> Result<(), TableError> {
    super::table::write_json(&record_path(pictures), record)
}

/// A row of `unsafe.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsafeRow {
    pub image: String,
    /// The root-cause cluster (0: the one group of a baseline strategy).
    pub cluster: usize,
    #[serde(serialize_with = "display")]
    pub distance: f64,
    pub rank: usize,
}

impl Row for UnsafeRow {
    const COLUMNS: &'static [&'static str] = &["image", "cluster", "distance", "rank"];
}

/// A row of a balance stage's `balance.csv`: a cluster's labelled images and how many the balanced set draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceRow {
    pub cluster: usize,
    pub images: usize,
    pub drawn: usize,
}

impl Row for BalanceRow {
    const COLUMNS: &'static [&'static str] = &["cluster", "images", "drawn"];
}
