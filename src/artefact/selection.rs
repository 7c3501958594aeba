//! The `unsafe set` artefact, `unsafe.csv` of a select stage: the images selected for labelling, each with the
//! cluster it was assigned to, its heatmap distance to that cluster and the rank of that cluster among the image's
//! closest ([`UnsafeRow`]). The selected images themselves are a `selection` dataset beside it; its `pictures/`
//! folder holds, per cluster, the images, a GIF and a contact sheet, and `select.json` (what was selected how).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::{Row, TableError, display};

/// `select.json` in a select stage's `pictures/` folder: what was selected how ([`SelectRecord`]).
pub fn record_path(pictures: &Path) -> PathBuf {
    pictures.join("select.json")
}

pub fn write_record(pictures: &Path, record: &SelectRecord) -> Result<(), TableError> {
    super::table::write_json(&record_path(pictures), record)
}

pub fn read_record(pictures: &Path) -> Result<SelectRecord, TableError> {
    super::table::read_json(&record_path(pictures))
}

/// What a select stage selected and how: its strategy, split and candidates; for HUDD's strategy the mode, quota
/// and budget asked for and, per cluster, what was selected (or why nothing was); for a baseline the budget spent
/// and the images labelled. Fields in alphabetical order, the order `select.json` has always had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectRecord {
    /// HUDD's: the budget asked for (null: none); a baseline's: the budget spent.
    pub budget: Option<usize>,
    pub candidates: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<ClusterSelection>>,
    /// Why nothing was selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty: Option<String>,
    /// Clusters of one image, which HUDD ignores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_singletons: Option<usize>,
    /// A baseline's: images labelled to make the selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labelled: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// HUDD's: `closest`, `threshold` or `all` (held-out images assigned to clusters, nothing selected to label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<usize>,
    pub split: String,
    /// `hudd`, `random` or `failing`.
    pub strategy: String,
}

impl SelectRecord {
    /// HUDD's selection for labelling: its strategy, in a mode that selects (not one that only assigns).
    pub fn selects_for_hudd(&self) -> bool {
        self.strategy == "hudd" && self.mode.as_deref() != Some("all")
    }
}

/// One cluster of a HUDD selection: its members, quota and spread, and how many images were selected for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSelection {
    pub cluster: usize,
    pub members: usize,
    pub quota: usize,
    pub selected: usize,
    pub spread: f64,
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
