//! The `skipped images` artefact, `skipped.csv` of a dataset import: the images left out with
//! `on_bad_image = "skip"`, and why ([`SkippedRow`]).

use serde::{Deserialize, Serialize};

use super::table::Row;

/// A row of `skipped.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedRow {
    pub image: String,
    pub reason: String,
}

impl Row for SkippedRow {
    const COLUMNS: &'static [&'static str] = &["image", "reason"];
}
