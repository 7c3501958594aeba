//! Triggering conditions: a `rules` stage's `rules.json` ([`Rules`]) and `rules.csv` ([`RuleRow`]), a
//! `confirm` stage's `confirm.json` ([`Confirmations`]) and `confirm.csv` ([`ConfirmRow`]), and an `expand`
//! stage's `expand.csv` ([`ExpandRow`]).

use serde::{Deserialize, Serialize};

use super::table::{Row, display};
use crate::trigger::Condition;

/// `rules.json`: one rule per root-cause cluster of two images or more.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rules {
    /// The dataset's source (`simulate:signs`) and task: what `confirm` renders new images with.
    pub source: String,
    pub task: String,
    /// The split whose images were clustered, and how many of its images the model got right (the negatives).
    pub split: String,
    pub correct: usize,
    pub rules: Vec<RuleRecord>,
}

/// One cluster's rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleRecord {
    pub cluster: usize,
    /// The cluster's images, and the images an expand stage added to it (the rule is learned on both).
    pub size: usize,
    #[serde(default)]
    pub expanded: usize,
    /// Images the expand stage found outside the operational domain: they never shape a stated rule.
    #[serde(default)]
    pub expanded_outside: usize,
    /// Empty when no condition separates the cluster from the correct images.
    pub conditions: Vec<RuleCondition>,
    /// Conditions grown and then pruned (they did not raise precision on the images held back), in words.
    #[serde(default)]
    pub pruned: Vec<String>,
    /// The conditions in words, joined by "and".
    pub text: String,
    /// Cluster images (members and expanded) the rule covers, and their share of them.
    pub covered: usize,
    pub support: f64,
    /// Correct images the rule covers, and the share of cluster images among all it covers.
    pub correct_covered: usize,
    pub precision: f64,
}

/// One condition, with the share of the parameter's operational distribution (the split's images) it keeps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleCondition {
    pub condition: Condition,
    pub text: String,
    pub kept: f64,
}

/// A row of `rules.csv`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleRow {
    pub cluster: usize,
    pub size: usize,
    pub rule: String,
    pub covered: usize,
    #[serde(serialize_with = "display")]
    pub support: f64,
    pub correct_covered: usize,
    #[serde(serialize_with = "display")]
    pub precision: f64,
}

impl Row for RuleRow {
    const COLUMNS: &'static [&'static str] =
        &["cluster", "size", "rule", "covered", "support", "correct_covered", "precision"];
}

impl From<&RuleRecord> for RuleRow {
    fn from(r: &RuleRecord) -> Self {
        RuleRow {
            cluster: r.cluster,
            size: r.size,
            rule: r.text.clone(),
            covered: r.covered,
            support: r.support,
            correct_covered: r.correct_covered,
            precision: r.precision,
        }
    }
}

/// `confirm.json`: every rule tested on fresh images of the operational domain, inside and outside its region.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Confirmations {
    /// The split whose failures the rules were learned from (it chose them).
    pub learned_on: String,
    /// The split whose declared distribution is the operational domain the images were drawn from.
    pub domain: String,
    /// Images drawn on each side of every rule, and the confidence level's alpha.
    pub images: usize,
    pub alpha: f64,
    pub rules: Vec<Confirmation>,
    /// Measured on held-out images (`domain` names their splits; `images` counts them all) rather than rendered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_out: bool,
}

/// One rule's test.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Confirmation {
    pub cluster: usize,
    pub rule: String,
    pub conditions: Vec<Condition>,
    /// The region's share of the operational domain.
    pub coverage: Coverage,
    /// Fresh images inside and outside: the failure rate inside is the rule's precision in the domain.
    pub inside: Rate,
    pub outside: Rate,
    /// The share of the model's failures in the domain that lie inside the region (the rule's recall).
    pub recall: f64,
    /// The inside failure rate's lower bound is above the outside rate's upper bound.
    pub confirmed: bool,
}

/// A region's share of a domain, estimated from draws: `inside` of `drawn` parameter vectors fell in it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Coverage {
    pub drawn: usize,
    pub inside: usize,
    pub share: f64,
}

impl Coverage {
    pub fn of(inside: usize, drawn: usize) -> Coverage {
        Coverage { drawn, inside, share: inside as f64 / drawn.max(1) as f64 }
    }

    /// The share of all failures that fall inside, by the law of total probability: `s·r₁ / (s·r₁ + (1 − s)·r₀)`
    /// for share `s`, failure rates `r₁` inside and `r₀` outside; 0 without failures.
    pub fn recall(&self, inside: &Rate, outside: &Rate) -> f64 {
        let (a, b) = (self.share * inside.rate, (1.0 - self.share) * outside.rate);
        if a + b > 0.0 { a / (a + b) } else { 0.0 }
    }
}

/// Failures among images, with an exact (Clopper-Pearson) interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Rate {
    pub images: usize,
    pub failures: usize,
    pub rate: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Rate {
    pub fn of(failures: usize, images: usize, alpha: f64) -> Rate {
        let (lo, hi) = crate::trigger::clopper_pearson(failures, images, alpha);
        Rate { images, failures, rate: failures as f64 / images.max(1) as f64, lo, hi }
    }
}

/// A row of `confirm.csv`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfirmRow {
    pub cluster: usize,
    pub rule: String,
    #[serde(serialize_with = "display")]
    pub share: f64,
    pub inside_images: usize,
    #[serde(serialize_with = "display")]
    pub inside_rate: f64,
    #[serde(serialize_with = "display")]
    pub inside_lo: f64,
    #[serde(serialize_with = "display")]
    pub inside_hi: f64,
    pub outside_images: usize,
    #[serde(serialize_with = "display")]
    pub outside_rate: f64,
    #[serde(serialize_with = "display")]
    pub outside_lo: f64,
    #[serde(serialize_with = "display")]
    pub outside_hi: f64,
    #[serde(serialize_with = "display")]
    pub recall: f64,
    pub confirmed: bool,
}

impl Row for ConfirmRow {
    const COLUMNS: &'static [&'static str] = &[
        "cluster",
        "rule",
        "share",
        "inside_images",
        "inside_rate",
        "inside_lo",
        "inside_hi",
        "outside_images",
        "outside_rate",
        "outside_lo",
        "outside_hi",
        "recall",
        "confirmed",
    ];
}

impl From<&Confirmation> for ConfirmRow {
    fn from(c: &Confirmation) -> Self {
        ConfirmRow {
            cluster: c.cluster,
            rule: c.rule.clone(),
            share: c.coverage.share,
            inside_images: c.inside.images,
            inside_rate: c.inside.rate,
            inside_lo: c.inside.lo,
            inside_hi: c.inside.hi,
            outside_images: c.outside.images,
            outside_rate: c.outside.rate,
            outside_lo: c.outside.lo,
            outside_hi: c.outside.hi,
            recall: c.recall,
            confirmed: c.confirmed,
        }
    }
}

/// A row of an `expand` stage's `expand.csv`: how one cluster grew.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExpandRow {
    pub cluster: usize,
    pub members: usize,
    /// The mean distance between its members' heatmaps: a new image joins within it.
    #[serde(serialize_with = "display")]
    pub spread: f64,
    /// Images rendered and given to the model, those it failed on, and those that joined the cluster.
    pub simulated: usize,
    pub failing: usize,
    pub joined: usize,
    /// Of those that joined, the images outside the operational domain (the clustered split's declared
    /// distribution).
    #[serde(default)]
    pub outside: usize,
}

impl Row for ExpandRow {
    const COLUMNS: &'static [&'static str] =
        &["cluster", "members", "spread", "simulated", "failing", "joined", "outside"];
}
