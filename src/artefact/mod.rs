//! Typed artefacts between stages: the kind of every output a stage declares and the kinds each input accepts
//! (checked by `hudd check` before anything runs), and the on-disk schema of the tables and JSON files that stages
//! exchange, each with one reader and one writer.
//!
//! Datasets (`crate::dataset`) and models (`crate::model::artefact`) own their folders; the modules here own the
//! rest. Every row table goes through [`table`]: the `csv` crate, quoted where a field needs it, so ids with commas,
//! quotes, newlines or non-ASCII letters round-trip.

pub mod annotations;
pub mod clusters;
pub mod curve;
pub mod evaluation;
pub mod evidence;
pub mod heatmaps;
pub mod interventions;
pub mod recovery;
pub mod results;
pub mod rules;
pub mod selection;
pub mod skipped;
pub mod table;

use crate::engine::stage::ArtefactKind;

const fn kind(name: &'static str, doc: &'static str) -> ArtefactKind {
    ArtefactKind { name, doc }
}

pub const DATASET: ArtefactKind = kind("dataset", "images with their ids, splits, labels and parameters");
/// A dataset whose images were assigned to root-cause clusters (`rcc`, `rcc_distance` columns).
pub const SELECTION: ArtefactKind = kind("selection", "a dataset of selected images with the cluster each belongs to");
pub const MODEL: ArtefactKind = kind("model", "a DNN: model.json with its weights");
pub const HEATMAPS: ArtefactKind = kind("heatmaps", "LRP heatmaps of internal layers, one .npy per layer");
pub const CLUSTERS: ArtefactKind = kind("clusters", "root-cause clusters of error-inducing images");
pub const TEST_RESULTS: ArtefactKind = kind("test results", "one row per image: expected, predicted, correct");
pub const TEST_SUMMARY: ArtefactKind = kind("test summary", "a model's accuracy or mean keypoint error on a split");
pub const UNSAFE_SET: ArtefactKind = kind("unsafe set", "the selected images with their cluster, distance and rank");
pub const PICTURES: ArtefactKind = kind("pictures", "images for people: per-cluster PNGs, GIFs and contact sheets");
pub const LEARNING_CURVE: ArtefactKind = kind("learning curve", "loss and scores per epoch");
pub const RETRAIN_SUMMARY: ArtefactKind = kind("retraining summary", "the retrained model against the original");
pub const BALANCE_COUNTS: ArtefactKind = kind("balance counts", "images per cluster before and after balancing");
pub const SKIPPED_IMAGES: ArtefactKind = kind("skipped images", "images an import skipped, with the reason");
pub const VARIANCE_TABLE: ArtefactKind = kind("variance table", "variance reduction per cluster and parameter");
pub const EXPLANATIONS: ArtefactKind = kind("cluster explanations", "per cluster: explained or not, and by what");
pub const VARIANCE_SUMMARY: ArtefactKind = kind("variance summary", "RQ1's figures: clusters explained, inspected");
pub const COMPARE_RUNS: ArtefactKind = kind("compared runs", "the score of every retrained model by strategy");
pub const COMPARE_STRATEGIES: ArtefactKind = kind("strategy table", "score per strategy: mean, min, max");
pub const COMPARE_TESTS: ArtefactKind = kind("statistical tests", "Mann-Whitney U and Vargha-Delaney A12");
pub const COMPARE_RCC: ArtefactKind = kind("per-cluster accuracy", "accuracy per root-cause cluster by strategy");
pub const COMPARE_SUMMARY: ArtefactKind = kind("comparison summary", "RQ2's headline figures");
pub const RULES: ArtefactKind = kind("rules", "per root-cause cluster, a rule over simulator parameters");
pub const RULE_TABLE: ArtefactKind = kind("rule table", "the rules as a table: support and precision");
pub const CONFIRMATIONS: ArtefactKind =
    kind("confirmations", "failure rates inside and outside each rule's region, on new images");
pub const CONFIRM_TABLE: ArtefactKind = kind("confirmation table", "the confirmations as a table");
pub const FEATURES: ArtefactKind =
    kind("activations", "the DNN's activations at every layer's input, laid out as heatmaps are");
pub const RECOVERY: ArtefactKind = kind("recovery", "how well clusters recover planted causes, beside a random floor");
pub const RECOVERY_TABLE: ArtefactKind = kind("recovery table", "per planted cause: its best cluster and share");
pub const EXPANSION: ArtefactKind = kind("expansion", "per cluster: images simulated, failing, and joining it");
pub const INTERVENTIONS: ArtefactKind =
    kind("interventions", "every re-render of every failing image, with what was moved and whether it fixed it");
pub const IMAGE_CAUSES: ArtefactKind = kind("image causes", "per failing image: what fixes it, and its tested cause");
pub const CAUSE_TESTS: ArtefactKind =
    kind("cause tests", "per cluster and intervention: share fixed against the sham, with the exact test");
pub const INTERVENTION_SUMMARY: ArtefactKind =
    kind("intervention summary", "shares fixed over every failure and each cluster's tested cause");
pub const PARQUET: ArtefactKind = kind("parquet tables", "copies of a stage's tables as Parquet");
pub const REPORT: ArtefactKind = kind("report", "the safety-analysis report: HTML, Markdown and images");

/// Every dataset, selections included.
pub const ANY_DATASET: &[ArtefactKind] = &[DATASET, SELECTION];

/// Every artefact kind, for documentation and tests.
pub const ALL: &[ArtefactKind] = &[
    DATASET,
    SELECTION,
    MODEL,
    HEATMAPS,
    CLUSTERS,
    TEST_RESULTS,
    TEST_SUMMARY,
    UNSAFE_SET,
    PICTURES,
    LEARNING_CURVE,
    RETRAIN_SUMMARY,
    BALANCE_COUNTS,
    SKIPPED_IMAGES,
    VARIANCE_TABLE,
    EXPLANATIONS,
    VARIANCE_SUMMARY,
    COMPARE_RUNS,
    COMPARE_STRATEGIES,
    COMPARE_TESTS,
    COMPARE_RCC,
    COMPARE_SUMMARY,
    RULES,
    RULE_TABLE,
    CONFIRMATIONS,
    CONFIRM_TABLE,
    EXPANSION,
    FEATURES,
    RECOVERY,
    RECOVERY_TABLE,
    INTERVENTIONS,
    IMAGE_CAUSES,
    CAUSE_TESTS,
    INTERVENTION_SUMMARY,
    PARQUET,
    REPORT,
];
