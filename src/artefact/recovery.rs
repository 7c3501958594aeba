//! A `recovery` stage's artefacts: `recovery.json` ([`RecoverySummary`]) and `recovery.csv` ([`CauseRow`]).

use serde::{Deserialize, Serialize};

use super::table::{Row, display};

/// `recovery.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecoverySummary {
    pub cause: String,
    /// Failing images: every one is scored (before version 3 of the stage: those in clusters of two or more).
    pub images: usize,
    /// Failing images in clusters of one (noise of a density clustering): scored as one more cluster, that covers no
    /// cause (before version 3 of the stage: left out of every score; absent, as 0, before it was counted).
    #[serde(default)]
    pub unclustered: usize,
    /// Clusters of two or more images.
    pub clusters: usize,
    /// Planted causes among the failing images (the nominal ones aside).
    pub causes: usize,
    /// The scores; none when no cluster holds two images (a model that fails on nothing, or every failure alone):
    /// there is nothing to score, and `note` says why.
    pub purity: Option<f64>,
    pub coverage: Option<f64>,
    pub nmi: Option<f64>,
    pub ari: Option<f64>,
    /// Random partitions with the same cluster sizes: each score's mean and 95th percentile.
    pub random: Option<RandomFloor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RandomFloor {
    pub permutations: usize,
    pub purity: (f64, f64),
    pub coverage: (f64, f64),
    pub nmi: (f64, f64),
    pub ari: (f64, f64),
}

/// A row of `recovery.csv`: one cause.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CauseRow {
    pub cause: String,
    /// Whether it is a planted cause (coverage asks for it) or a nominal one.
    pub planted: bool,
    pub images: usize,
    /// The cluster holding most of its images (0 when no cluster holds any), and their share.
    pub best_cluster: usize,
    #[serde(serialize_with = "display")]
    pub share_in_best: f64,
    /// Clusters whose commonest cause it is.
    pub dominates: usize,
    /// Its images no cluster holds.
    pub unassigned: usize,
}

impl Row for CauseRow {
    const COLUMNS: &'static [&'static str] =
        &["cause", "planted", "images", "best_cluster", "share_in_best", "dominates", "unassigned"];
}
