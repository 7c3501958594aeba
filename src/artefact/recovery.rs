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
    /// Whether each planted cause makes the model fail: every tested image's cause and outcome (the stage's
    /// `results` and `tested` inputs), absent without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
}

/// Each cause's failure rate over every tested image of it, against the nominal causes': how many of its failures
/// the cause accounts for. A failing image that its cause does not account for fails as nominal images do, so a
/// clustering by why images fail has no reason to put it with its cause's others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exposure {
    /// The nominal causes' failure rate, pooled (none when no tested image has a nominal cause).
    pub nominal_rate: Option<f64>,
    /// The share of all failing images that their cause accounts for: each cause's failing images times its
    /// attributable share, summed, over every failing image (none without a nominal rate).
    pub attributable: Option<f64>,
    /// Per cause, in name order.
    pub causes: Vec<CauseExposure>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CauseExposure {
    pub cause: String,
    pub planted: bool,
    pub tested: usize,
    pub failing: usize,
    /// `failing / tested`.
    pub rate: f64,
    /// The share of its failures in excess of the nominal rate, `(rate - nominal) / rate` (0 at or below it, and
    /// for a nominal cause): epidemiology's attributable fraction among the exposed.
    pub attributable: Option<f64>,
}

impl Exposure {
    /// From each cause's `(name, planted, tested, failing)`, in name order.
    pub fn new(counts: &[(String, bool, usize, usize)]) -> Exposure {
        let (nominal_tested, nominal_failing) =
            counts.iter().filter(|c| !c.1).fold((0usize, 0usize), |(t, f), c| (t + c.2, f + c.3));
        let nominal_rate = (nominal_tested > 0).then(|| nominal_failing as f64 / nominal_tested as f64);
        let causes: Vec<CauseExposure> = counts
            .iter()
            .map(|(cause, planted, tested, failing)| {
                let rate = if *tested > 0 { *failing as f64 / *tested as f64 } else { 0.0 };
                let attributable = nominal_rate.map(|r0| if *planted && rate > r0 { (rate - r0) / rate } else { 0.0 });
                CauseExposure {
                    cause: cause.clone(),
                    planted: *planted,
                    tested: *tested,
                    failing: *failing,
                    rate,
                    attributable,
                }
            })
            .collect();
        let failing: usize = causes.iter().map(|c| c.failing).sum();
        let attributable = nominal_rate.filter(|_| failing > 0).map(|_| {
            causes.iter().map(|c| c.failing as f64 * c.attributable.unwrap_or(0.0)).sum::<f64>() / failing as f64
        });
        Exposure { nominal_rate, attributable, causes }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_accounts_for_its_failures_above_the_nominal_rate_only() {
        let counts =
            [("a".to_string(), true, 100, 60), ("b".to_string(), true, 50, 5), ("nominal".to_string(), false, 100, 20)];
        let e = Exposure::new(&counts);
        assert_eq!(e.nominal_rate, Some(0.2));
        let shares: Vec<Option<f64>> = e.causes.iter().map(|c| c.attributable).collect();
        // a: (0.6 - 0.2) / 0.6; b fails less often than nominal images: it accounts for none of its failures.
        assert!((shares[0].unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(shares[1..], [Some(0.0), Some(0.0)]);
        // 40 of the 85 failing images are a's excess.
        assert!((e.attributable.unwrap() - 40.0 / 85.0).abs() < 1e-12);
        // Without a nominal cause there is no rate to compare with.
        let e = Exposure::new(&counts[..2]);
        assert_eq!((e.nominal_rate, e.attributable, e.causes[0].attributable), (None, None, None));
        assert!((e.causes[0].rate - 0.6).abs() < 1e-12);
    }
}
