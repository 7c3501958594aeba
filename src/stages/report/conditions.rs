//! Section 4: the triggering conditions, their confirmations and the failure rates inside them after retraining.

use super::view::{AfterView, ConditionView};
use crate::artefact::rules::{Confirmations, Rate, Rules};
use crate::artefact::table;
use crate::engine::stage::{StageContext, StageError};
use crate::stats;

/// The triggering conditions with their confirmations and the failure rates inside them after retraining, the
/// confirmations' confidence level in percent (95 when none), and the splits the rules were learned on and drawn from.
pub(super) struct Evaluated {
    pub(super) conditions: Vec<ConditionView>,
    pub(super) confidence: f64,
    pub(super) domain: Option<(String, String)>,
    /// The confirmations measured held-out images rather than fresh renders.
    pub(super) held_out: bool,
    /// The rules are over pixel descriptors (real images), not simulator parameters.
    pub(super) descriptors: bool,
}

pub(super) fn evaluated(ctx: &StageContext<'_>) -> Result<Evaluated, StageError> {
    let first = |slot: &str| ctx.inputs(slot).first().map(|a| a.path.clone());
    let confirmations = first("confirm").map(|p| table::read_json::<Confirmations>(&p)).transpose()?;
    let confidence = confirmations.as_ref().map_or(95.0, |c| (1.0 - c.alpha) * 100.0);
    let domain = confirmations.as_ref().map(|c| (c.learned_on.clone(), c.domain.clone()));
    let held_out = confirmations.as_ref().is_some_and(|c| c.held_out);
    let mut after = Vec::new();
    for a in ctx.inputs("confirm_after") {
        let strategy = a.matrix.get("strategy").cloned().unwrap_or_else(|| a.stage.clone());
        after.push((strategy, table::read_json::<Confirmations>(&a.path)?));
    }
    let rules = first("rules").map(|p| table::read_json::<Rules>(&p)).transpose()?;
    let descriptors = rules.as_ref().is_some_and(|r| !r.source.starts_with("simulate:"));
    let conditions = triggering_conditions(rules, confirmations, &after, confidence / 100.0);
    Ok(Evaluated { conditions, confidence, domain, held_out, descriptors })
}

/// The conditions of the rules, their confirmations and the inside failure rates after retraining (by strategy:
/// each confirmation's matrix `strategy`, else its stage), by cluster.
pub(super) fn triggering_conditions(
    rules: Option<Rules>,
    confirm: Option<Confirmations>,
    after: &[(String, Confirmations)],
    level: f64,
) -> Vec<ConditionView> {
    let view = |cluster: usize, rule: String| ConditionView {
        cluster,
        rule,
        size: 0,
        expanded: 0,
        support: None,
        precision: None,
        pruned: Vec::new(),
        share: None,
        recall: None,
        inside: None,
        outside: None,
        confirmed: None,
        after: Vec::new(),
    };
    let mut views: Vec<ConditionView> = match (&rules, &confirm) {
        (Some(r), _) => r
            .rules
            .iter()
            .map(|r| ConditionView {
                size: r.size,
                expanded: r.expanded,
                support: Some(r.support),
                precision: Some(r.precision),
                pruned: r.pruned.clone(),
                ..view(r.cluster, r.text.clone())
            })
            .collect(),
        (None, Some(c)) => c.rules.iter().map(|c| view(c.cluster, c.rule.clone())).collect(),
        (None, None) => Vec::new(),
    };
    let mut strategies: Vec<&str> = Vec::new();
    for (s, _) in after {
        if !strategies.contains(&s.as_str()) {
            strategies.push(s);
        }
    }
    for v in &mut views {
        if let Some(c) = confirm.as_ref().and_then(|c| c.rules.iter().find(|c| c.cluster == v.cluster)) {
            (v.inside, v.outside, v.confirmed) = (Some(c.inside), Some(c.outside), Some(c.confirmed));
            (v.share, v.recall) = (Some(c.coverage.share), Some(c.recall));
        }
        for strategy in &strategies {
            let runs: Vec<Rate> = after
                .iter()
                .filter(|(s, _)| s == strategy)
                .filter_map(|(_, a)| a.rules.iter().find(|c| c.cluster == v.cluster && c.inside.images > 0))
                .map(|c| c.inside)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let (failures, images) = runs.iter().fold((0, 0), |(f, n), r| (f + r.failures, n + r.images));
            let outcomes: Vec<Vec<f64>> = runs.iter().map(|r| stats::outcomes(r.failures, r.images)).collect();
            let interval = stats::two_level_interval(&outcomes, stats::Images::PerRun, level, 2000, 0);
            v.after.push(AfterView {
                strategy: strategy.to_string(),
                runs: runs.len(),
                images,
                rate: failures as f64 / images as f64,
                lo: interval.map(|i| i.0),
                hi: interval.map(|i| i.1),
            });
        }
    }
    views
}
