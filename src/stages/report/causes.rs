//! Each cluster's cause as the report states it: first what an intervention fixes (the `intervene` stage's tested
//! cause), then its triggering condition (the rule and whether the model fails more inside it), then what its images
//! share (RQ1), saying plainly where they disagree. A region the cluster shares is called a cause only when the model
//! fails more there or an intervention fixes the cluster's failures; a homogeneous cluster whose region fails less is
//! homogeneous, not caused.

use serde::Serialize;

use super::view::{ClusterView, ConditionView};
use crate::artefact::interventions::{ClusterCause, InterventionSummary};
use crate::artefact::rules::Rate;

/// A cluster's intervention test, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct TestedView {
    /// The interventions that fix significantly more of its failures than the sham, those that fix most first.
    pub(super) causes: Vec<String>,
    /// The first of them, else the intervention that fixes most; its share fixed, the sham's, its adjusted p.
    pub(super) best: String,
    pub(super) fixed: Rate,
    pub(super) sham: Rate,
    pub(super) p_adjusted: f64,
    /// The finding in a sentence.
    pub(super) text: String,
}

/// What the intervention stage found over every failure, for the report's section on causes.
#[derive(Debug, Clone, Serialize)]
pub(super) struct InterventionsView {
    pub(super) assessed: usize,
    pub(super) images: usize,
    pub(super) restore_from: String,
    pub(super) sham: Rate,
    /// Restorations fixing at least one failure, those that fix most first.
    pub(super) restorations: Vec<(String, Rate)>,
    pub(super) by_single: usize,
    pub(super) by_pair: usize,
    pub(super) unexplained: usize,
    pub(super) correction: String,
    pub(super) alpha: f64,
    /// Real images: the interventions transform pixels (named in words in `restorations`), the sham adds noise.
    pub(super) image_space: bool,
}

/// Where the model fails in the region a cluster's rule describes, against outside it (exact intervals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    FailsMore,
    FailsLess,
    NoDifference,
}

fn region(condition: &ConditionView) -> Option<(Region, Rate, Rate)> {
    let (inside, outside) = (condition.inside?, condition.outside?);
    let region = if inside.lo > outside.hi {
        Region::FailsMore
    } else if inside.hi < outside.lo {
        Region::FailsLess
    } else {
        Region::NoDifference
    };
    Some((region, inside, outside))
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn rate(r: &Rate) -> String {
    format!("{} ({:.0}–{})", pct(r.rate), r.lo * 100.0, pct(r.hi))
}

/// The interventions' figures over every failure.
pub(super) fn overall(summary: &InterventionSummary) -> InterventionsView {
    let mut restorations: Vec<(String, Rate)> = summary
        .restorations
        .iter()
        .filter(|s| s.fixed.failures > 0)
        .map(|s| (s.intervention.clone(), s.fixed))
        .collect();
    restorations.sort_by_key(|(_, r)| std::cmp::Reverse(r.failures));
    InterventionsView {
        assessed: summary.assessed,
        images: summary.images,
        restore_from: summary.restore_from.clone(),
        sham: summary.sham,
        restorations,
        by_single: summary.by_single,
        by_pair: summary.by_pair,
        unexplained: summary.unexplained,
        correction: summary.correction.describe().to_string(),
        alpha: summary.alpha,
        image_space: summary.image_space,
    }
}

/// An intervention in words: `restoring night and fog` for a re-render, `denoising and sharpening` for a real image.
pub(super) fn phrase(name: &str, image_space: bool) -> String {
    if !image_space {
        return format!("restoring {}", name.replace('+', " and "));
    }
    let words = |t: &str| match t {
        "brightness" => "normalising brightness".to_string(),
        "contrast" => "normalising contrast".to_string(),
        "gamma" => "a gamma curve to the training luminance".to_string(),
        "sharpen" => "sharpening".to_string(),
        "denoise" => "denoising".to_string(),
        "derotate" => "turning the object to its class's orientation".to_string(),
        "recentre" => "re-centring the object".to_string(),
        other => format!("`{other}`"),
    };
    name.split('+').map(words).collect::<Vec<_>>().join(" and ")
}

/// The sham in words.
pub(super) fn sham(image_space: bool) -> &'static str {
    if image_space { "imperceptible noise (the sham)" } else { "a sham re-render" }
}

fn tested_view(c: &ClusterCause, correction: &str, image_space: bool) -> TestedView {
    let moved = |name: &str| name.replace('+', " and ");
    let sham = sham(image_space);
    let text = match c.causes.first() {
        Some(cause) => {
            let also = if c.causes.len() > 1 {
                let others: Vec<String> = c.causes[1..].iter().map(|n| moved(n)).collect();
                format!("; also significant: {}", others.join(", "))
            } else {
                String::new()
            };
            format!(
                "Tested cause: {} fixes {} of its {} failures, {sham} {} (adjusted p {:.3}, {correction}){also}",
                phrase(cause, image_space),
                rate(&c.fixed),
                c.images,
                rate(&c.sham),
                c.p_adjusted
            )
        }
        None if c.images == 0 => "No tested cause: none of its images failed again when re-rendered".to_string(),
        None => format!(
            "No tested cause found: the best, {}, fixes {} of its {} failures and {sham} {}, not significantly more \
             (adjusted p {:.3}, {correction})",
            phrase(&c.best, image_space),
            rate(&c.fixed),
            c.images,
            rate(&c.sham),
            c.p_adjusted
        ),
    };
    TestedView {
        causes: c.causes.clone(),
        best: c.best.clone(),
        fixed: c.fixed,
        sham: c.sham,
        p_adjusted: c.p_adjusted,
        text,
    }
}

/// Attaches to each cluster its tested cause (from `summary`, the clustering `stage`'s entries) and says where the
/// intervention, the triggering condition and RQ1 disagree.
pub(super) fn attach(
    clusters: &mut [ClusterView],
    summary: Option<(&InterventionSummary, &str)>,
    conditions: &[ConditionView],
) {
    for c in clusters.iter_mut() {
        if let Some((summary, stage)) = summary {
            let correction = summary.correction.describe();
            c.tested = summary
                .clusters
                .iter()
                .find(|k| k.clustering == stage && k.cluster == c.id)
                .map(|k| tested_view(k, correction, summary.image_space));
        }
        let condition = conditions.iter().find(|r| r.cluster == c.id).and_then(region);
        c.agreement = agreement(c, condition, summary.is_some_and(|(s, _)| s.image_space));
    }
}

/// Where the tests and RQ1 disagree about one cluster, in a sentence (none when they agree or say nothing).
fn agreement(c: &ClusterView, condition: Option<(Region, Rate, Rate)>, image_space: bool) -> Option<String> {
    let homogeneous = c.beats_chance == Some(true) || (c.beats_chance.is_none() && c.explained == Some(true));
    let tested = c.tested.as_ref().and_then(|t| t.causes.first());
    let rates = |inside: &Rate, outside: &Rate| format!("{} fail inside, {} outside", rate(inside), rate(outside));
    match (homogeneous, condition, tested) {
        (true, Some((Region::FailsLess, inside, outside)), None) => Some(format!(
            "Its images are alike ({}), but the model fails less in the region its rule describes ({}) and no \
             intervention fixes its failures more often than chance: homogeneous, not a cause",
            c.best_parameter,
            rates(&inside, &outside)
        )),
        (true, Some((Region::FailsLess, inside, outside)), Some(cause)) => Some(format!(
            "Its rule's region fails less ({}): that region is not the cause; the intervention names {cause}",
            rates(&inside, &outside)
        )),
        (true, Some((Region::NoDifference, ..)) | None, None) if c.tested.is_some() || condition.is_some() => {
            Some(format!(
                "Its images are alike ({}), but no test shows the model failing more there: homogeneous, not a \
                 tested cause",
                c.best_parameter
            ))
        }
        (false, Some((Region::FailsMore, inside, outside)), _) if c.explained.is_some() => Some(format!(
            "RQ1's criterion finds no parameter its images share, yet the model fails more inside its rule ({}): \
             the criterion asks every image to share a value, the test asks where the model fails",
            rates(&inside, &outside)
        )),
        (false, _, Some(cause)) if c.explained.is_some() => Some(format!(
            "RQ1's criterion finds no parameter its images share, yet {} fixes its failures: the criterion asks \
             every image to share a value, the intervention asks what makes them fail",
            phrase(cause, image_space)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(failures: usize, images: usize) -> Rate {
        Rate::of(failures, images, 0.05)
    }

    #[test]
    fn a_homogeneous_cluster_whose_region_fails_less_is_not_called_a_cause() {
        // GD's bright-light clusters: homogeneous beyond chance, the rule's region failing 20% against 37% outside.
        let (inside, outside) = (r(40, 200), r(74, 200));
        let condition = Some((Region::FailsLess, inside, outside));
        let mut c = crate::stages::report::view::tests::cluster_view();
        c.beats_chance = Some(true);
        c.best_parameter = "light".into();
        let text = agreement(&c, condition, false).unwrap();
        assert!(text.contains("homogeneous, not a cause"), "{text}");
        assert!(text.contains("20% (15–26%) fail inside, 37% (30–44%) outside"), "{text}");
        // With a tested cause, the intervention is named and the region is not.
        c.tested = Some(tested_view(
            &ClusterCause {
                clustering: "cluster".into(),
                cluster: 3,
                images: 30,
                causes: vec!["glasses".into()],
                best: "glasses".into(),
                fixed: r(24, 30),
                sham: r(3, 30),
                p_adjusted: 0.0001,
            },
            "Holm",
            false,
        ));
        let text = agreement(&c, condition, false).unwrap();
        assert!(text.contains("that region is not the cause; the intervention names glasses"), "{text}");
        let tested = &c.tested.as_ref().unwrap().text;
        assert!(
            tested.starts_with("Tested cause: restoring glasses fixes 80% (61–92%) of its 30 failures"),
            "{tested}"
        );
    }

    #[test]
    fn a_cluster_rq1_misses_but_a_test_supports_says_so() {
        let mut c = crate::stages::report::view::tests::cluster_view();
        c.explained = Some(false);
        c.beats_chance = Some(false);
        let condition = Some((Region::FailsMore, r(74, 200), r(32, 200)));
        let text = agreement(&c, condition, false).unwrap();
        assert!(text.starts_with("RQ1's criterion finds no parameter its images share, yet the model fails more"));
        // Agreeing tests say nothing more.
        c.explained = Some(true);
        c.beats_chance = Some(true);
        assert_eq!(agreement(&c, condition, false), None);
    }
}
