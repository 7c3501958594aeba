//! The `unsafe set` artefact, `unsafe.csv` of a select stage: the images selected for labelling, each with the
//! cluster it was assigned to, its heatmap distance to that cluster and the rank of that cluster among the image's
//! closest ([`UnsafeRow`]). The selected images themselves are a `selection` dataset beside it.

use serde::{Deserialize, Serialize};

use super::table::{Row, display};

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
