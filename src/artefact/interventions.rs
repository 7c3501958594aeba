//! An `intervene` stage's artefacts: `interventions.csv` (every re-render of every failing image and its outcome,
//! [`InterventionRow`]), `images.csv` (each failing image's verdict, [`ImageVerdict`]), `causes.csv` (per cluster and
//! intervention, tested against the sham, [`CauseRow`]) and `summary.json` ([`InterventionSummary`]).

use serde::{Deserialize, Serialize};

use super::rules::Rate;
use super::table::{Row, display, six_decimals};
use crate::stats::Correction;

/// What an intervention did to a failing image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every parameter kept, the incidental detail (background, texture, noise) drawn afresh: what chance fixes.
    Sham,
    /// One parameter moved back into the training split's distribution.
    Restore,
    /// Two parameters moved back together, for an image no single restoration fixes.
    Pair,
}

/// A row of `interventions.csv`: one re-render of one failing image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InterventionRow {
    pub image: String,
    pub kind: Kind,
    /// The parameters moved (`night`, `night+sunglasses`); `sham` for the sham.
    pub intervention: String,
    /// How typical of the training split the moved value was (`Domain::typicality`; a pair: the less typical of its
    /// two; the sham: 1): 0 where training never draws it.
    #[serde(serialize_with = "six_decimals")]
    pub typicality: f64,
    /// The model is right on the re-rendered image (a keypoint model: its mean error is at most the threshold).
    pub fixed: bool,
    /// A classifier: its probability of the true class; a keypoint model: its mean error in pixels.
    #[serde(serialize_with = "six_decimals")]
    pub score: f64,
}

impl Row for InterventionRow {
    const COLUMNS: &'static [&'static str] = &["image", "kind", "intervention", "typicality", "fixed", "score"];
}

/// A row of `images.csv`: what fixes one failing image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageVerdict {
    pub image: String,
    /// Re-rendered unchanged, the image still fails (it is then assessed; a prediction that flips with the batch it
    /// is computed in is not).
    pub fails_again: bool,
    pub sham_fixed: bool,
    /// Every single restoration that fixes it, `;`-separated.
    pub fixed_by: String,
    /// Its tested cause: of the restorations that fix it (else the pairs that do) the one whose value training was
    /// least likely to show, on a tie the one that helps most (the highest probability of the true class, the lowest
    /// keypoint error); empty when none fixes it.
    pub cause: String,
    /// The planted scenario it was drawn from (empty when its split is no mixture).
    pub scenario: String,
}

impl Row for ImageVerdict {
    const COLUMNS: &'static [&'static str] = &["image", "fails_again", "sham_fixed", "fixed_by", "cause", "scenario"];
}

/// A row of `causes.csv`: how many of a cluster's failing images one intervention fixes, against the sham on the
/// same images (a one-sided exact McNemar test on the images exactly one of the two fixes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CauseRow {
    /// The cluster stage whose clusters these are.
    pub clustering: String,
    pub cluster: usize,
    /// The cluster's assessed images (those that fail again unchanged).
    pub images: usize,
    /// `night`, or a pair `night+sunglasses` (fixed: restoring both, where neither alone does).
    pub intervention: String,
    /// Images whose own tested cause it is (`images.csv`'s `cause`).
    pub named: usize,
    pub fixed: usize,
    #[serde(serialize_with = "display")]
    pub share: f64,
    #[serde(serialize_with = "display")]
    pub lo: f64,
    #[serde(serialize_with = "display")]
    pub hi: f64,
    pub sham_fixed: usize,
    #[serde(serialize_with = "display")]
    pub sham_share: f64,
    /// Images the intervention fixes and the sham does not, and the other way round.
    pub only_intervention: usize,
    pub only_sham: usize,
    #[serde(serialize_with = "display")]
    pub p: f64,
    /// After the correction; 1 for a test too small to ever be rejected (Tarone's, left out of the family).
    #[serde(serialize_with = "display")]
    pub p_adjusted: f64,
    /// Fixes significantly more than the sham after the correction.
    pub significant: bool,
}

impl Row for CauseRow {
    const COLUMNS: &'static [&'static str] = &[
        "clustering",
        "cluster",
        "images",
        "intervention",
        "named",
        "fixed",
        "share",
        "lo",
        "hi",
        "sham_fixed",
        "sham_share",
        "only_intervention",
        "only_sham",
        "p",
        "p_adjusted",
        "significant",
    ];
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InterventionSummary {
    /// The split whose declared distribution restored values are drawn from.
    pub restore_from: String,
    /// The parameters tried, in the simulator's order.
    pub parameters: Vec<String>,
    /// Most pairs tried per image that no single restoration fixes.
    pub pairs: usize,
    /// Failing images given, and those that fail again re-rendered unchanged (the assessed ones).
    pub images: usize,
    pub assessed: usize,
    /// Of the assessed: fixed by the sham, by each restoration (over every assessed image).
    pub sham: Rate,
    pub restorations: Vec<Share>,
    /// Assessed images whose tested cause is one restoration, a pair, or none.
    pub by_single: usize,
    pub by_pair: usize,
    pub unexplained: usize,
    /// The level of every interval and test, and the correction over each clustering's tests.
    pub alpha: f64,
    pub correction: Correction,
    /// Per clustering and cluster, its tested cause.
    pub clusters: Vec<ClusterCause>,
    /// Per planted scenario (a mixture split's), how often the tested cause is what was planted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scenarios: Vec<ScenarioNaming>,
    /// Real images: the interventions transform the pixels towards the training images' statistics (`parameters`
    /// names them) and the sham adds imperceptible noise, where simulated images are re-rendered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub image_space: bool,
}

/// What one intervention fixes over every assessed image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Share {
    pub intervention: String,
    pub fixed: Rate,
}

/// A cluster's tested causes: the interventions that fix significantly more of its images than the sham, those that
/// are most members' own cause first, then those that fix most (the first is the cluster's cause); none when no
/// intervention does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterCause {
    pub clustering: String,
    pub cluster: usize,
    pub images: usize,
    pub causes: Vec<String>,
    /// The first cause (with none, the intervention that fixes most): its share fixed, the sham's, its adjusted p.
    pub best: String,
    pub fixed: Rate,
    pub sham: Rate,
    pub p_adjusted: f64,
}

/// One planted scenario's failures and how often their tested cause names what was planted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScenarioNaming {
    pub scenario: String,
    /// The parameters the scenario draws otherwise than its split does.
    pub planted: Vec<String>,
    /// Its assessed failing images.
    pub images: usize,
    /// Tested cause among the planted parameters (one of them, or the pair of them).
    pub named: usize,
    /// Tested cause exactly the planted parameters.
    pub exactly: usize,
}
