//! Judging the interventions: which intervention fixes an image, each cluster's interventions against the sham
//! (one-sided exact McNemar tests, corrected over a clustering's tests), planted scenarios named, the summary.

use std::collections::{BTreeMap, BTreeSet};

use super::{InterveneParams, Located};
use crate::artefact::interventions::{
    CauseRow, ClusterCause, ImageVerdict, InterventionSummary, ScenarioNaming, Share,
};
use crate::artefact::rules::Rate;
use crate::dataset::Dataset;
use crate::stats::{self, Correction};

/// Whether an intervention fixes an image: a parameter, when restoring it alone does; a pair `a+b`, when restoring
/// both does and neither alone (it is then the image's cause: a co-occurrence, not two causes of which either fixes).
pub(super) fn fixes(v: &ImageVerdict, intervention: &str) -> bool {
    if intervention.contains('+') { v.cause == intervention } else { v.fixed_by.split(';').any(|s| s == intervention) }
}

/// Every cluster of one clustering against the sham: one row per cluster and intervention (every single restoration,
/// and each pair that is some member's cause), the correction over all of them, and each cluster's tested cause.
pub(super) fn test_clusters(
    clustering: &str,
    groups: &BTreeMap<usize, Vec<String>>,
    verdicts: &[ImageVerdict],
    names: &[String],
    alpha: f64,
    correction: Correction,
) -> (Vec<CauseRow>, Vec<ClusterCause>) {
    let by_id: BTreeMap<&str, &ImageVerdict> = verdicts.iter().map(|v| (v.image.as_str(), v)).collect();
    let mut rows = Vec::new();
    for (&cluster, members) in groups {
        let assessed: Vec<&ImageVerdict> =
            members.iter().filter_map(|m| by_id.get(m.as_str()).copied()).filter(|v| v.fails_again).collect();
        let n = assessed.len();
        let sham = assessed.iter().filter(|v| v.sham_fixed).count();
        let pairs: BTreeSet<&str> = assessed.iter().map(|v| v.cause.as_str()).filter(|c| c.contains('+')).collect();
        for intervention in names.iter().map(String::as_str).chain(pairs) {
            let fixed: Vec<bool> = assessed.iter().map(|v| fixes(v, intervention)).collect();
            let k = fixed.iter().filter(|f| **f).count();
            let only_intervention = assessed.iter().zip(&fixed).filter(|(v, f)| **f && !v.sham_fixed).count();
            let only_sham = assessed.iter().zip(&fixed).filter(|(v, f)| !**f && v.sham_fixed).count();
            let rate = Rate::of(k, n, alpha);
            rows.push(CauseRow {
                clustering: clustering.to_string(),
                cluster,
                images: n,
                intervention: intervention.to_string(),
                named: assessed.iter().filter(|v| v.cause == intervention).count(),
                fixed: k,
                share: rate.rate,
                lo: rate.lo,
                hi: rate.hi,
                sham_fixed: sham,
                sham_share: sham as f64 / n.max(1) as f64,
                only_intervention,
                only_sham,
                p: stats::mcnemar_greater(only_intervention, only_sham),
                p_adjusted: 1.0,
                significant: false,
            });
        }
    }
    // A test on n discordant images cannot go below 2^-n: Tarone's tests that could never be rejected take no share
    // of α; the correction runs over the others.
    let min_p: Vec<f64> = rows.iter().map(|r| 0.5f64.powi((r.only_intervention + r.only_sham) as i32)).collect();
    let p: Vec<f64> = rows.iter().map(|r| r.p).collect();
    for (r, q) in rows.iter_mut().zip(stats::adjust_discrete(&p, &min_p, alpha, correction)) {
        r.p_adjusted = q;
        r.significant = q <= alpha;
    }
    let mut best = Vec::new();
    for &cluster in groups.keys() {
        let mine: Vec<&CauseRow> = rows.iter().filter(|r| r.cluster == cluster).collect();
        let Some(first) = mine.first() else { continue };
        // Every intervention that beats the sham, those that are most members' own cause first (the drift, not a
        // remedy that also fixes), then those that fix most, singles before pairs on a tie; shown: the first of
        // them, else the one that fixes most.
        let mut ranked = mine.clone();
        ranked.sort_by_key(|r| (std::cmp::Reverse(r.named), std::cmp::Reverse(r.fixed)));
        let causes: Vec<String> = ranked.iter().filter(|r| r.significant).map(|r| r.intervention.clone()).collect();
        let shown = ranked.iter().find(|r| r.significant).or(ranked.first()).unwrap_or(first);
        best.push(ClusterCause {
            clustering: clustering.to_string(),
            cluster,
            images: first.images,
            causes,
            best: shown.intervention.clone(),
            fixed: Rate::of(shown.fixed, shown.images, alpha),
            sham: Rate::of(shown.sham_fixed, shown.images, alpha),
            p_adjusted: shown.p_adjusted,
        });
    }
    (rows, best)
}

/// What an image's scenario planted, as an intervention can name it.
pub(super) struct Planted {
    pub scenario: String,
    /// The parameters its scenario draws otherwise than its split does (simulated), or the image-space
    /// interventions that undo its corruption (real images).
    pub names: Vec<String>,
    /// How many of them make the exact cause: all the parameters, or any one remedy.
    pub exact: usize,
}

/// Per planted scenario of a mixture split (each image's, where it has one): its assessed failures and how many have
/// what was planted as their cause.
pub(super) fn scenarios(planted: &[Option<Planted>], verdicts: &[ImageVerdict]) -> Vec<ScenarioNaming> {
    let mut out: BTreeMap<String, ScenarioNaming> = BTreeMap::new();
    for (at, v) in planted.iter().zip(verdicts) {
        let Some(at) = at else { continue };
        if at.names.is_empty() || !v.fails_again {
            continue;
        }
        let entry = out.entry(at.scenario.clone()).or_insert_with(|| ScenarioNaming {
            scenario: at.scenario.clone(),
            planted: at.names.clone(),
            images: 0,
            named: 0,
            exactly: 0,
        });
        entry.images += 1;
        let parts: BTreeSet<&str> = v.cause.split('+').filter(|s| !s.is_empty()).collect();
        if !parts.is_empty() && parts.iter().all(|p| at.names.iter().any(|q| q == p)) {
            entry.named += 1;
            if parts.len() == at.exact {
                entry.exactly += 1;
            }
        }
    }
    out.into_values().collect()
}

/// What each simulated image's scenario planted: the parameters it draws otherwise than the image's split.
pub(super) fn simulated(ds: &Dataset, images: &[Located<'_>]) -> Vec<Option<Planted>> {
    (images.iter())
        .map(|at| {
            let name = at.scenario.as_ref()?;
            let scenario = at.domain.scenarios.iter().find(|s| &s.name == name)?;
            let names: Vec<String> = (scenario.dists.0.iter().zip(&at.domain.dists.0))
                .zip(ds.meta.params.iter())
                .filter(|((a, b), _)| a != b)
                .map(|(_, info)| info.name.clone())
                .collect();
            Some(Planted { scenario: name.clone(), exact: names.len(), names })
        })
        .collect()
}

pub(super) fn summarise(
    p: &InterveneParams,
    names: &[String],
    verdicts: &[ImageVerdict],
    clusters: Vec<ClusterCause>,
    scenarios: Vec<ScenarioNaming>,
) -> InterventionSummary {
    let assessed: Vec<&ImageVerdict> = verdicts.iter().filter(|v| v.fails_again).collect();
    let n = assessed.len();
    let count = |f: &dyn Fn(&ImageVerdict) -> bool| assessed.iter().filter(|v| f(v)).count();
    InterventionSummary {
        restore_from: p.restore_from.clone(),
        parameters: names.to_vec(),
        pairs: p.pairs,
        images: verdicts.len(),
        assessed: n,
        sham: Rate::of(count(&|v| v.sham_fixed), n, p.alpha),
        restorations: names
            .iter()
            .map(|name| Share { intervention: name.clone(), fixed: Rate::of(count(&|v| fixes(v, name)), n, p.alpha) })
            .collect(),
        by_single: count(&|v| !v.fixed_by.is_empty()),
        by_pair: count(&|v| v.fixed_by.is_empty() && !v.cause.is_empty()),
        unexplained: count(&|v| v.cause.is_empty()),
        alpha: p.alpha,
        correction: p.correction,
        clusters,
        scenarios,
        image_space: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(cause: &str, fixed_by: &str, sham: bool) -> ImageVerdict {
        ImageVerdict {
            image: format!("test-{cause}-{fixed_by}-{sham}"),
            fails_again: true,
            sham_fixed: sham,
            fixed_by: fixed_by.into(),
            cause: cause.into(),
            scenario: String::new(),
        }
    }

    #[test]
    fn a_pair_fixes_only_when_neither_half_fixes_alone() {
        assert!(fixes(&v("night+fog", "", false), "night+fog"));
        assert!(!fixes(&v("night", "night;yaw", false), "night+fog"));
        assert!(!fixes(&v("yaw", "yaw", false), "night+fog"));
        assert!(fixes(&v("yaw", "night;yaw", false), "night"));
        assert!(!fixes(&v("night+fog", "", false), "night"));
    }

    #[test]
    fn a_cluster_is_caused_only_by_what_beats_the_sham_after_the_correction() {
        // Cluster 1: `night` fixes 9 of 10, the sham 1; cluster 2: `fog` fixes 3 of 10 and the sham 3 as well.
        let mut verdicts = Vec::new();
        let mut groups = BTreeMap::new();
        for i in 0..10 {
            let mut a = v("night", "night", i == 0);
            a.image = format!("a{i}");
            if i == 9 {
                a.fixed_by.clear();
                a.cause.clear();
            }
            let mut b = v(if i < 3 { "fog" } else { "" }, if i < 3 { "fog" } else { "" }, i >= 7);
            b.image = format!("b{i}");
            groups.entry(1).or_insert_with(Vec::new).push(a.image.clone());
            groups.entry(2).or_insert_with(Vec::new).push(b.image.clone());
            verdicts.extend([a, b]);
        }
        let names = vec!["night".to_string(), "fog".to_string()];
        let (rows, best) = test_clusters("cluster", &groups, &verdicts, &names, 0.05, Correction::Holm);
        assert_eq!(rows.len(), 4);
        let night = rows.iter().find(|r| r.cluster == 1 && r.intervention == "night").unwrap();
        // 9 fixed, the sham 1 (an image night also fixes): 8 discordant for night, 0 for the sham; p = 2^-8.
        assert_eq!((night.fixed, night.sham_fixed, night.only_intervention, night.only_sham), (9, 1, 8, 0));
        assert!((night.p - 1.0 / 256.0).abs() < 1e-12, "{}", night.p);
        // Tarone: of the four tests only two could reach 0.05 / 2 (night in cluster 1 on 8 discordant images, fog in
        // cluster 2 on 6); Holm over those two.
        assert!((night.p_adjusted - 2.0 / 256.0).abs() < 1e-12, "{}", night.p_adjusted);
        let untestable = rows.iter().find(|r| r.cluster == 2 && r.intervention == "night").unwrap();
        assert_eq!((untestable.only_intervention, untestable.only_sham, untestable.p_adjusted), (0, 3, 1.0));
        assert_eq!(best[0].causes, ["night"]);
        assert!(best[1].causes.is_empty());
        assert_eq!(best[1].best, "fog");
        assert_eq!((best[1].fixed.failures, best[1].sham.failures), (3, 3));
    }
}
