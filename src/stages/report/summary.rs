//! The executive summary, first in the report: whether the acceptance criterion is met before and after retraining
//! (held out, with intervals), the main causes with their tests and what retraining did for each, how many tested
//! causes the clusters come to (seventeen clusters of one cause read otherwise than seventeen causes), the open
//! items, and the pictures an assessor looks at first (a forest plot of the scores, the failure rates inside and
//! outside each triggering condition).

use serde::Serialize;

use super::clusters::OpenItems;
use super::view::{ClusterView, ConditionView, Performance};
use crate::artefact::evaluation::CompareSummary;
use crate::media::svg::{IntervalRow, interval_plot};

/// Clusters the summary names one by one, the largest first; the others are counted.
const NAMED: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub(super) struct SummaryView {
    /// The acceptance criterion's verdict before and after retraining, in a sentence.
    pub(super) verdict: String,
    /// Whether the criterion is met after retraining (before, when nothing was retrained); none without a criterion.
    pub(super) met: Option<bool>,
    /// The largest clusters: what fails, why (the tests), and what retraining did for them.
    pub(super) causes: Vec<CauseLine>,
    /// The other clusters, counted.
    pub(super) more: Option<String>,
    /// Every cluster counted under its tested cause: how many causes the clusters come to (seventeen clusters may
    /// share one).
    pub(super) by_cause: Option<String>,
    /// What retraining achieved against the baselines, held out.
    pub(super) retraining: Option<String>,
    pub(super) open: Vec<String>,
    /// The scores with their intervals on the judging split (inline SVG, made here from numbers).
    pub(super) forest: Option<String>,
    /// The failure rates inside and outside each tested triggering condition (inline SVG).
    pub(super) rates: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct CauseLine {
    pub(super) cluster: usize,
    pub(super) size: usize,
    pub(super) share: f64,
    pub(super) text: String,
}

/// What the summary reads: the scores, the clusters and their conditions, the comparison, the open items.
pub(super) struct Facts<'a> {
    pub(super) performance: &'a [Performance],
    pub(super) clusters: &'a [ClusterView],
    pub(super) conditions: &'a [ConditionView],
    pub(super) compare: Option<&'a CompareSummary>,
    pub(super) open: &'a OpenItems,
    /// The criterion as written and its threshold.
    pub(super) target: Option<(&'a str, f64)>,
    pub(super) accuracy: bool,
    /// The rules' rates were measured on held-out images, not on fresh renders.
    pub(super) held_out: bool,
    /// The interventions transformed real images' pixels, not re-rendered simulated ones.
    pub(super) image_space: bool,
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

impl Facts<'_> {
    fn score(&self, v: f64) -> String {
        if self.accuracy { pct(v) } else { format!("{v:.2} px") }
    }

    fn interval(&self, lo: Option<f64>, hi: Option<f64>) -> String {
        match (lo, hi) {
            (Some(lo), Some(hi)) if self.accuracy => format!(" (95% interval {:.1}–{:.1}%)", lo * 100.0, hi * 100.0),
            (Some(lo), Some(hi)) => format!(" (95% interval {lo:.2}–{hi:.2} px)"),
            _ => String::new(),
        }
    }

    /// The judging split's rows: the held-out split's when there is one, else the first split's.
    fn judged(&self) -> Vec<&Performance> {
        let split = self
            .performance
            .iter()
            .find(|p| p.held_out)
            .or(self.performance.first())
            .map(|p| p.split.clone())
            .unwrap_or_default();
        self.performance.iter().filter(|p| p.split == split).collect()
    }

    fn verdict(&self) -> (String, Option<bool>) {
        let judged = self.judged();
        let Some(original) = judged.iter().find(|p| p.model == "original") else {
            return ("No score of the model under analysis was read.".into(), None);
        };
        let reference = self.compare.map(|c| c.reference.as_str());
        let after = reference.and_then(|r| judged.iter().find(|p| p.model == r));
        let held = if original.held_out { "held-out split" } else { "split" };
        let said = |p: &Performance| {
            let what = match (p.met, p.met_worst) {
                (Some(true), Some(true)) => "met",
                (Some(true), _) => "met, but not at its interval's worse end",
                (Some(false), _) => "not met",
                (None, _) => "",
            };
            let runs = if p.runs > 1 { format!(", mean of {} runs", p.runs) } else { String::new() };
            let score = format!("{}{}", self.score(p.value), self.interval(p.lo, p.hi));
            (what, runs, score)
        };
        let (w0, _, s0) = said(original);
        if self.target.is_none() {
            let mut out =
                format!("No acceptance criterion is declared. On {held} {} the original scores {s0}", original.split);
            if let Some(a) = after {
                let (_, runs, s1) = said(a);
                out.push_str(&format!("; after retraining with {}{runs}, {s1}", a.model));
            }
            return (out + ".", None);
        };
        let mut out = format!("On {held} {}: {w0} by the original, {s0}", original.split);
        let met = match after {
            Some(a) => {
                let (w1, runs, s1) = said(a);
                out.push_str(&format!("; {w1} after retraining with {}{runs}, {s1}", a.model));
                a.met
            }
            None => original.met,
        };
        (out + ".", met)
    }

    fn cause(&self, c: &ClusterView) -> CauseLine {
        let mut parts = Vec::new();
        match &c.tested {
            Some(t) if !t.causes.is_empty() => parts.push(format!(
                "{} fixes {} of its failures ({} {})",
                super::causes::phrase(&t.causes[0], self.image_space),
                pct(t.fixed.rate),
                super::causes::sham(self.image_space),
                pct(t.sham.rate)
            )),
            Some(_) => parts.push("no intervention fixes it more often than chance".into()),
            None => {}
        }
        if let Some(r) = self.conditions.iter().find(|r| r.cluster == c.id) {
            match (r.inside, r.outside, r.confirmed) {
                (Some(i), Some(o), Some(true)) => parts.push(format!(
                    "the model fails {} inside \"{}\" against {} outside (confirmed)",
                    pct(i.rate),
                    r.rule,
                    pct(o.rate)
                )),
                (Some(i), Some(o), _) if i.hi < o.lo => parts.push(format!(
                    "its rule's region fails less ({} inside, {} outside)",
                    pct(i.rate),
                    pct(o.rate)
                )),
                _ => parts.push(format!("rule \"{}\" not confirmed", r.rule)),
            }
        }
        if parts.is_empty() && !c.description.is_empty() {
            parts.push(format!("its images share {} (not tested)", c.description));
        }
        if let (Some(a), Some(first)) = (&c.after, c.accuracy.first()) {
            let judged = if c.small { ", too few to judge" } else { "" };
            parts.push(format!(
                "after retraining ({}) {} of its {} images of {} right{judged}",
                a.strategy,
                pct(a.rate),
                first.images,
                first.split
            ));
        }
        CauseLine { cluster: c.id, size: c.size, share: c.share, text: parts.join("; ") }
    }

    /// The clusters grouped by their tested cause (the first, strongest, of each), the most failures first, and those
    /// without one; none when no cluster was tested.
    fn by_cause(&self) -> Option<String> {
        let mut groups: Vec<(String, usize, usize)> = Vec::new();
        let mut untested = (0, 0);
        for c in self.clusters {
            let Some(t) = &c.tested else { continue };
            match t.causes.first() {
                Some(cause) => match groups.iter_mut().find(|g| &g.0 == cause) {
                    Some(g) => (g.1, g.2) = (g.1 + 1, g.2 + c.size),
                    None => groups.push((cause.clone(), 1, c.size)),
                },
                None => untested = (untested.0 + 1, untested.1 + c.size),
            }
        }
        if groups.is_empty() && untested.0 == 0 {
            return None;
        }
        groups.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
        let count = |n: usize| if n == 1 { "1 cluster".to_string() } else { format!("{n} clusters") };
        let mut parts: Vec<String> = groups
            .iter()
            .map(|(cause, n, size)| {
                format!("{} for {} ({size} failures)", super::causes::phrase(cause, self.image_space), count(*n))
            })
            .collect();
        if untested.0 > 0 {
            parts.push(format!("no tested cause for {} ({} failures)", count(untested.0), untested.1));
        }
        let causes =
            if groups.len() == 1 { "1 tested cause".to_string() } else { format!("{} tested causes", groups.len()) };
        let verb = if self.clusters.len() == 1 { "comes" } else { "come" };
        Some(format!("{} {verb} to {causes}: {}", count(self.clusters.len()), parts.join("; ")))
    }

    fn retraining(&self) -> Option<String> {
        let c = self.compare?;
        let p = c.protocols.first()?;
        let reference = p.strategies.iter().find(|s| s.strategy == c.reference)?;
        let others: Vec<String> = p
            .strategies
            .iter()
            .filter(|s| s.strategy != c.reference)
            .map(|s| format!("{} {}", s.strategy, self.score(s.mean)))
            .collect();
        let beats: Vec<&str> = p
            .tests
            .iter()
            .filter(|t| t.a12 > 0.5 && t.p_adjusted.unwrap_or(t.p) <= 0.05)
            .map(|t| t.baseline.as_str())
            .collect();
        let tests: Vec<String> = p
            .tests
            .iter()
            .map(|t| match t.p_adjusted {
                Some(q) => format!("Â12 {:.2} against {} (adjusted p {q:.3})", t.a12, t.baseline),
                None => format!("Â12 {:.2} against {} (p {:.3})", t.a12, t.baseline, t.p),
            })
            .collect();
        let verdict = if beats.is_empty() {
            format!("{} beats none of the baselines", c.reference)
        } else {
            format!("{} beats {}", c.reference, beats.join(", "))
        };
        let split = if p.held_out { format!("held-out split {}", p.split) } else { format!("split {}", p.split) };
        Some(format!(
            "On {split}, {} {}{} against {}: {}; {verdict}.",
            c.reference,
            self.score(reference.mean),
            self.interval(reference.lo, reference.hi),
            others.join(", "),
            tests.join(", ")
        ))
    }

    fn open(&self) -> Vec<String> {
        let list = |ids: &[usize]| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        let mut out = Vec::new();
        let o = self.open;
        if !o.residual.is_empty() {
            out.push(format!(
                "clusters most of whose held-out images retraining still gets wrong: {}",
                list(&o.residual)
            ));
        }
        let untested: Vec<usize> = self
            .clusters
            .iter()
            .filter(|c| c.tested.as_ref().is_some_and(|t| t.causes.is_empty()))
            .map(|c| c.id)
            .collect();
        if !untested.is_empty() {
            out.push(format!("clusters without a tested cause: {}", list(&untested)));
        }
        if !o.too_small.is_empty() {
            out.push(format!("clusters with too few held-out images to judge: {}", list(&o.too_small)));
        }
        if !o.unstable.is_empty() {
            out.push(format!("unstable clusters: {}", list(&o.unstable)));
        }
        if !o.to_review.is_empty() {
            out.push(format!("clusters no engineer has reviewed: {}", list(&o.to_review)));
        }
        out
    }

    fn forest(&self) -> Option<String> {
        let judged = self.judged();
        if judged.len() < 2 {
            return None;
        }
        let rows: Vec<IntervalRow<'_>> = judged
            .iter()
            .map(|p| IntervalRow {
                label: if p.runs > 1 { format!("{} ({} runs)", p.model, p.runs) } else { p.model.clone() },
                value: p.value,
                lo: p.lo,
                hi: p.hi,
                colour: if p.model == "original" { "#777" } else { "#1f5fa8" },
            })
            .collect();
        let what = if self.accuracy { "accuracy (%)" } else { "mean keypoint error (px)" };
        let title = format!("{what} on split {}, 95% intervals over runs and images", judged[0].split);
        let marker = self.target.map(|(text, v)| (v, text));
        Some(interval_plot(&title, &rows, marker, self.accuracy))
    }

    /// The rates inside and outside the rules of the clusters the summary names.
    fn rates(&self, named: &[CauseLine]) -> Option<String> {
        let mut rows = Vec::new();
        for r in named.iter().filter_map(|c| self.conditions.iter().find(|r| r.cluster == c.cluster)) {
            let (Some(i), Some(o)) = (r.inside, r.outside) else { continue };
            let inside = if r.confirmed == Some(true) { "#a22" } else { "#d08080" };
            rows.push(IntervalRow {
                label: format!("cluster {}: inside", r.cluster),
                value: i.rate,
                lo: Some(i.lo),
                hi: Some(i.hi),
                colour: inside,
            });
            rows.push(IntervalRow {
                label: "outside".into(),
                value: o.rate,
                lo: Some(o.lo),
                hi: Some(o.hi),
                colour: "#777",
            });
        }
        (!rows.is_empty()).then(|| {
            let images = if self.held_out { "held-out" } else { "fresh" };
            interval_plot(
                &format!("failure rate (%) on {images} images inside and outside the rule, exact 95% intervals"),
                &rows,
                None,
                true,
            )
        })
    }
}

pub(super) fn summary(facts: &Facts<'_>) -> SummaryView {
    let (verdict, met) = facts.verdict();
    let mut largest: Vec<&ClusterView> = facts.clusters.iter().collect();
    largest.sort_by_key(|c| (std::cmp::Reverse(c.size), c.id));
    let causes: Vec<CauseLine> = largest.iter().take(NAMED).map(|c| facts.cause(c)).collect();
    let rest = &largest[causes.len()..];
    let more = (!rest.is_empty()).then(|| {
        let images: usize = rest.iter().map(|c| c.size).sum();
        let share: f64 = rest.iter().map(|c| c.share).sum();
        format!("{} more clusters hold {images} failures ({})", rest.len(), pct(share))
    });
    let rates = facts.rates(&causes);
    SummaryView {
        verdict,
        met,
        causes,
        more,
        by_cause: facts.by_cause(),
        retraining: facts.retraining(),
        open: facts.open(),
        forest: facts.forest(),
        rates,
    }
}
