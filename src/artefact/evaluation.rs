//! The evaluation's artefacts: RQ1's variance tables and summary (a variance stage), RQ2's tables of retrained
//! models, strategies, statistical tests and per-cluster accuracy, and its summary (a compare stage).

use serde::{Deserialize, Serialize};

use super::table::{Row, display, option_display};

/// `summary.json`: HUDD's Table 1 figures and the RQ1 share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VarianceSummary {
    pub failing: usize,
    pub clusters: usize,
    /// Images an engineer inspects: up to `inspect_per_cluster` per cluster, and their share of the failing images.
    pub inspected: usize,
    pub inspected_share: f64,
    /// Clusters with at least two images (a single image has no spread to compare).
    pub assessed: usize,
    pub explained: usize,
    /// `explained / assessed`; none without simulator parameters.
    pub explained_share: Option<f64>,
    pub threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// RQ1 against chance (absent without simulator parameters, or in summaries written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chance: Option<ChanceCorrected>,
}

/// RQ1 with a null model: how many clusters are explained beyond what random clusters of their sizes reach.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChanceCorrected {
    /// Clusters explained by the paper's criterion whose adjusted permutation p-value is below `alpha`.
    pub explained: usize,
    /// `explained / assessed`.
    pub explained_share: f64,
    /// The number of clusters random clusters of the same sizes would have "explained" by the paper's criterion.
    pub expected_by_chance: f64,
    /// Clusters explained whose raw p-value is below `alpha` (before the correction).
    #[serde(default)]
    pub explained_uncorrected: usize,
    /// The number random clusters of the same sizes would have explained beyond chance: by the paper's criterion and
    /// with an adjusted p-value below `alpha` (a simulation over the null draws); what `explained` is compared with.
    #[serde(default)]
    pub expected_beyond_chance: f64,
    /// The correction over the assessed clusters' p-values (absent in summaries written before it: none).
    #[serde(default = "no_correction")]
    pub correction: crate::stats::Correction,
    /// Share of the failing images in clusters explained by the paper's criterion, and beyond chance.
    pub images_explained: f64,
    pub images_explained_beyond_chance: f64,
    pub permutations: usize,
    pub alpha: f64,
}

fn no_correction() -> crate::stats::Correction {
    crate::stats::Correction::None
}

/// `summary.json`: the headline figures of RQ2.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompareSummary {
    /// `accuracy` or `mean keypoint error (px)`; for the latter lower is better.
    pub metric: String,
    pub reference: String,
    /// The split that judges: its images trained no model and chose neither data nor epochs. `original`,
    /// `strategies` and `tests` are on it.
    pub judged_on: String,
    pub original: f64,
    pub strategies: Vec<StrategyRow>,
    pub tests: Vec<TestRow>,
    /// The same figures on every split the models were tested on, the judging split first; the others say which
    /// models saw them and how (the paper's protocol judges on the split whose failures chose HUDD's images).
    pub protocols: Vec<Protocol>,
    /// RQ1's headline figures, when a `variance` summary is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rq1: Option<VarianceSummary>,
    /// Each root-cause cluster's size and stability, when `clusters` is given (stability when it was measured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterStability>,
    /// How the tests' p-values are adjusted: over the comparisons made on one split (absent in older summaries).
    #[serde(default)]
    pub correction: Option<crate::stats::Correction>,
}

/// A root-cause cluster's size and its stability under resampling.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterStability {
    pub cluster: usize,
    pub size: usize,
    pub stability: Option<f64>,
    pub stable: Option<bool>,
}

/// RQ2 on one split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Protocol {
    pub split: String,
    /// Whether no model saw the split: the figures judge the strategies on independent images.
    pub held_out: bool,
    /// Which models saw the split, and how (empty when held out).
    pub seen: Vec<SeenBy>,
    /// One line for people: what judging on this split means.
    pub label: String,
    /// Images of the split (what the original's score is a share of).
    #[serde(default)]
    pub images: usize,
    pub original: f64,
    /// The 95% interval of the original's score over the split's images (a bootstrap); absent in older summaries.
    #[serde(default)]
    pub original_lo: Option<f64>,
    #[serde(default)]
    pub original_hi: Option<f64>,
    pub strategies: Vec<StrategyRow>,
    pub tests: Vec<TestRow>,
}

/// The models of one strategy (or the original) saw a split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeenBy {
    /// A strategy's name, or `original`.
    pub models: String,
    pub how: crate::model::artefact::SeenAs,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StrategyRow {
    pub strategy: String,
    pub runs: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub fixed: f64,
    pub broken: f64,
    /// The 95% interval of the strategy's score on the split's distribution, covering both sources of error: the
    /// runs (which models retraining happened to give) and the split's images (which the split happened to draw); a
    /// two-level bootstrap (`stats::two_level_interval`, images shared by the runs). Absent in older summaries.
    #[serde(default)]
    pub lo: Option<f64>,
    #[serde(default)]
    pub hi: Option<f64>,
}

/// The reference strategy against one other: `a12` is the probability that a reference run scores better.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestRow {
    pub baseline: String,
    pub u: f64,
    pub p: f64,
    pub a12: f64,
    /// `p` adjusted for the split's family of comparisons (the summary's `correction`); absent in older summaries.
    #[serde(default)]
    pub p_adjusted: Option<f64>,
}

/// A row of a variance stage's `variance.csv`: one cluster and parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReductionRow {
    pub cluster: usize,
    pub size: usize,
    pub parameter: String,
    pub kind: String,
    #[serde(serialize_with = "display")]
    pub reduction: f64,
}

impl Row for ReductionRow {
    const COLUMNS: &'static [&'static str] = &["cluster", "size", "parameter", "kind", "reduction"];
}

/// A row of a variance stage's `clusters.csv`: is the cluster explained, and by what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationRow {
    pub cluster: usize,
    pub size: usize,
    /// Empty for a cluster that cannot be assessed (one image, or no parameters).
    pub explained: Option<bool>,
    pub best_parameter: String,
    #[serde(serialize_with = "option_display")]
    pub best_reduction: Option<f64>,
    pub description: String,
    /// The permutation p-value of the best reduction: the share of random clusters of the same size, drawn from
    /// the same failing images, whose best reduction over every parameter is at least as large.
    #[serde(default, serialize_with = "option_display")]
    pub p: Option<f64>,
    /// Explained (the paper's criterion) and the adjusted p below the stage's `alpha`.
    #[serde(default)]
    pub beats_chance: Option<bool>,
    /// `p` adjusted for testing every assessed cluster (the summary's `correction`); absent in older tables.
    #[serde(default, serialize_with = "option_display")]
    pub p_adjusted: Option<f64>,
}

impl Row for ExplanationRow {
    const COLUMNS: &'static [&'static str] = &[
        "cluster",
        "size",
        "explained",
        "best_parameter",
        "best_reduction",
        "description",
        "p",
        "beats_chance",
        "p_adjusted",
    ];
}

/// A row of a compare stage's `runs.csv`: one retrained model's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// The split it was tested on.
    pub split: String,
    pub strategy: String,
    /// The test stage that scored it.
    pub stage: String,
    #[serde(serialize_with = "display")]
    pub score: f64,
    /// Images the original got wrong and this model right, and the reverse.
    pub fixed: usize,
    pub broken: usize,
}

impl Row for RunRow {
    const COLUMNS: &'static [&'static str] = &["split", "strategy", "stage", "score", "fixed", "broken"];
}

/// A row of `strategies.csv` ([`StrategyRow`] as a table line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyLine {
    pub split: String,
    pub strategy: String,
    pub runs: usize,
    #[serde(serialize_with = "display")]
    pub mean: f64,
    #[serde(serialize_with = "display")]
    pub min: f64,
    #[serde(serialize_with = "display")]
    pub max: f64,
    #[serde(serialize_with = "display")]
    pub fixed: f64,
    #[serde(serialize_with = "display")]
    pub broken: f64,
    #[serde(default, serialize_with = "option_display")]
    pub lo: Option<f64>,
    #[serde(default, serialize_with = "option_display")]
    pub hi: Option<f64>,
}

impl Row for StrategyLine {
    const COLUMNS: &'static [&'static str] =
        &["split", "strategy", "runs", "mean", "min", "max", "fixed", "broken", "lo", "hi"];
}

impl StrategyLine {
    pub fn of(split: &str, r: &StrategyRow) -> Self {
        StrategyLine {
            split: split.to_string(),
            strategy: r.strategy.clone(),
            runs: r.runs,
            mean: r.mean,
            min: r.min,
            max: r.max,
            fixed: r.fixed,
            broken: r.broken,
            lo: r.lo,
            hi: r.hi,
        }
    }
}

/// A row of `tests.csv`: the reference strategy against one baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestLine {
    pub split: String,
    pub reference: String,
    pub baseline: String,
    #[serde(serialize_with = "display")]
    pub u: f64,
    #[serde(serialize_with = "display")]
    pub p: f64,
    #[serde(serialize_with = "display")]
    pub a12: f64,
    #[serde(default, serialize_with = "option_display")]
    pub p_adjusted: Option<f64>,
}

impl Row for TestLine {
    const COLUMNS: &'static [&'static str] = &["split", "reference", "baseline", "u", "p", "a12", "p_adjusted"];
}

/// A row of `rcc.csv`: a strategy's accuracy on the images of one split that belong to a root-cause cluster (on
/// the clustered split, the cluster's members; on another, the images assigned to it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RccRow {
    pub split: String,
    pub strategy: String,
    pub cluster: usize,
    pub images: usize,
    #[serde(serialize_with = "display")]
    pub before: f64,
    /// The mean over the strategy's runs.
    #[serde(serialize_with = "display")]
    pub after: f64,
    /// The strategy's runs, and the 95% interval of `after` over runs and the cluster's images (a two-level bootstrap,
    /// images shared by the runs); absent in older tables.
    #[serde(default)]
    pub runs: usize,
    #[serde(default, serialize_with = "option_display")]
    pub lo: Option<f64>,
    #[serde(default, serialize_with = "option_display")]
    pub hi: Option<f64>,
}

impl Row for RccRow {
    const COLUMNS: &'static [&'static str] =
        &["split", "strategy", "cluster", "images", "before", "after", "runs", "lo", "hi"];
}
