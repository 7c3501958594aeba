//! Triggering conditions (after SEDE, Fahmy et al. 2023): a rule over simulator parameters that separates a
//! root-cause cluster's images from the images the model gets right, learned greedily as a conjunction of intervals
//! (arcs for angles) and value sets; and what confirming and using a rule needs: whether a parameter vector lies in
//! its region, drawing vectors inside it, and exact binomial intervals of failure rates.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, DatasetError, ParamInfo, ParamKind};
use crate::sim::Simulator;

/// One parameter's values over every image the learner sees.
#[derive(Debug, Clone)]
pub enum Feature {
    /// A number; `period` for angles (360) and axes (180), which are read on a circle.
    Numeric {
        name: String,
        values: Vec<f64>,
        period: Option<f64>,
    },
    Categorical {
        name: String,
        values: Vec<String>,
    },
}

impl Feature {
    pub fn name(&self) -> &str {
        match self {
            Feature::Numeric { name, .. } | Feature::Categorical { name, .. } => name,
        }
    }

    /// Appends another image set's values of the same parameter; `false` (and nothing appended) when `other` is
    /// another parameter or kind.
    pub fn extend(&mut self, other: Feature) -> bool {
        match (self, other) {
            (Feature::Numeric { name, values, .. }, Feature::Numeric { name: n, values: v, .. }) if *name == n => {
                values.extend(v);
                true
            }
            (Feature::Categorical { name, values }, Feature::Categorical { name: n, values: v }) if *name == n => {
                values.extend(v);
                true
            }
            _ => false,
        }
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Condition {
    /// `lo ≤ value ≤ hi`.
    Interval { parameter: String, lo: f64, hi: f64 },
    /// The value lies on the arc from `from` counterclockwise to `to`, on a circle of `period` degrees.
    Arc { parameter: String, from: f64, to: f64, period: f64 },
    /// The value is one of `values`.
    OneOf { parameter: String, values: Vec<String> },
}

/// A number or a category, as a condition reads it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Number(f64),
    Category(&'a str),
}

impl Condition {
    pub fn parameter(&self) -> &str {
        match self {
            Condition::Interval { parameter, .. }
            | Condition::Arc { parameter, .. }
            | Condition::OneOf { parameter, .. } => parameter,
        }
    }

    pub fn holds(&self, v: Value<'_>) -> bool {
        match (self, v) {
            (Condition::Interval { lo, hi, .. }, Value::Number(x)) => *lo <= x && x <= *hi,
            (Condition::Arc { from, to, period, .. }, Value::Number(x)) => on_arc(x, *from, *to, *period),
            (Condition::OneOf { values, .. }, Value::Category(c)) => values.iter().any(|v| v == c),
            _ => false,
        }
    }

    /// In words: `night 0.52–1.00`, `yaw -70.0° to -31.2°`, `occluder ∈ {hand, scarf}`.
    pub fn describe(&self, unit: &str) -> String {
        match self {
            // "to" rather than a dash where a minus sign would run into it (-69.4–-46.9°).
            Condition::Interval { parameter, lo, hi } if *lo < 0.0 || *hi < 0.0 => {
                let first = if unit == "°" { unit } else { "" };
                format!("{parameter} {}{first} to {}{unit}", short(*lo), short(*hi))
            }
            Condition::Interval { parameter, lo, hi } => format!("{parameter} {}–{}{unit}", short(*lo), short(*hi)),
            Condition::Arc { parameter, from, to, period } => {
                let signed = |d: f64| if *period == 360.0 && d > 180.0 { d - 360.0 } else { d };
                let (a, b) = (signed(*from), signed(*to));
                let across = match (a > b, *period == 360.0) {
                    (true, true) => " across ±180°",
                    (true, false) => " across 0°",
                    _ => "",
                };
                format!("{parameter} {}{unit} to {}{unit}{across}", short(a), short(b))
            }
            Condition::OneOf { parameter, values } => format!("{parameter} ∈ {{{}}}", values.join(", ")),
        }
    }

    /// A value drawn uniformly inside the condition (for a category: the index into `categories`).
    pub fn draw(&self, categories: &[String], rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Condition::Interval { lo, hi, .. } => {
                if hi > lo {
                    rng.random_range(*lo..=*hi)
                } else {
                    *lo
                }
            }
            Condition::Arc { from, to, period, .. } => {
                let length = (to - from).rem_euclid(*period);
                let x = from + if length > 0.0 { rng.random_range(0.0..=length) } else { 0.0 };
                // Back into the parameter's own convention (signed degrees for a full circle).
                let x = x.rem_euclid(*period);
                if *period == 360.0 && x > 180.0 { x - 360.0 } else { x }
            }
            Condition::OneOf { values, .. } => {
                let name = &values[rng.random_range(0..values.len())];
                categories.iter().position(|c| c == name).unwrap_or(0) as f64
            }
        }
    }
}

fn on_arc(x: f64, from: f64, to: f64, period: f64) -> bool {
    (x - from).rem_euclid(period) <= (to - from).rem_euclid(period) + 1e-9
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// What the learner may do.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// At most this many conditions.
    pub max_conditions: usize,
    /// Every condition keeps at least this share of the cluster's images.
    pub min_support: f64,
}

/// A learned rule and how well it separates.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub conditions: Vec<Condition>,
    /// Positives (cluster images) and negatives (correct images) the rule covers.
    pub positives: usize,
    pub negatives: usize,
}

/// Learns one rule for `positives` against `negatives` (row indices into every feature's values): greedy
/// sequential covering as in FOIL/RIPPER's growing phase. Each step adds the condition with the largest FOIL gain
/// `p₁ (log₂ p₁/(p₁+n₁) − log₂ p₀/(p₀+n₀))` over one unused parameter, among those keeping at least
/// `min_support` of all positives; it stops when no condition raises the precision. Numeric conditions are
/// intervals between two covered positives' values (on a circle, cut at the positives' widest gap);
/// categorical ones the categories of highest positive rate. Interval bounds sit halfway between the last covered and
/// the first uncovered value. Ties go to the earlier feature and bound, so the rule
/// is deterministic.
pub fn learn(features: &[Feature], positives: &[usize], negatives: &[usize], options: Options) -> Learned {
    let mut pos: Vec<usize> = positives.to_vec();
    let mut neg: Vec<usize> = negatives.to_vec();
    let mut conditions = Vec::new();
    let mut used = vec![false; features.len()];
    let need = ((positives.len() as f64) * options.min_support).ceil().max(1.0) as usize;
    while conditions.len() < options.max_conditions && !neg.is_empty() && pos.len() >= need {
        let (p0, n0) = (pos.len() as f64, neg.len() as f64);
        let base = (p0 / (p0 + n0)).log2();
        let mut best: Option<(f64, usize, Condition)> = None;
        for (f, feature) in features.iter().enumerate().filter(|(f, _)| !used[*f]) {
            for (condition, p1, n1) in candidates(feature, &pos, &neg, need) {
                let gain = p1 as f64 * ((p1 as f64 / (p1 + n1) as f64).log2() - base);
                if gain > 1e-9 && best.as_ref().is_none_or(|b| gain > b.0 + 1e-12) {
                    best = Some((gain, f, condition));
                }
            }
        }
        let Some((_, f, condition)) = best else { break };
        used[f] = true;
        let value = |i: usize| value_of(&features[f], i);
        pos.retain(|&i| condition.holds(value(i)));
        neg.retain(|&i| condition.holds(value(i)));
        conditions.push(condition);
    }
    Learned { conditions, positives: pos.len(), negatives: neg.len() }
}

fn value_of(feature: &Feature, i: usize) -> Value<'_> {
    match feature {
        Feature::Numeric { values, .. } => Value::Number(values[i]),
        Feature::Categorical { values, .. } => Value::Category(&values[i]),
    }
}

/// The candidate conditions on one feature with the positives and negatives each keeps.
fn candidates(feature: &Feature, pos: &[usize], neg: &[usize], need: usize) -> Vec<(Condition, usize, usize)> {
    match feature {
        Feature::Numeric { name, values, period } => {
            let finite = |rows: &[usize]| rows.iter().map(|&i| values[i]).filter(|v| v.is_finite()).collect::<Vec<_>>();
            let (pv, nv) = (finite(pos), finite(neg));
            if pv.len() < need {
                return Vec::new();
            }
            // On a circle, measure from the start of the positives' arc (after their widest gap).
            let (shift, p) = match period {
                Some(p) => (crate::stats::arc(&pv.iter().map(|v| v * 360.0 / p).collect::<Vec<_>>()).0 * p / 360.0, *p),
                None => (0.0, 0.0),
            };
            let coord = |v: f64| if p > 0.0 { (v - shift).rem_euclid(p) } else { v };
            let mut ps: Vec<f64> = pv.iter().map(|&v| coord(v)).collect();
            let mut ns: Vec<f64> = nv.iter().map(|&v| coord(v)).collect();
            ps.sort_by(f64::total_cmp);
            ns.sort_by(f64::total_cmp);
            // Bounds at up to 64 quantiles of the positives, so the search stays quadratic in a constant.
            let step = (ps.len() / 64).max(1);
            let mut bounds: Vec<usize> = (0..ps.len()).step_by(step).collect();
            if bounds.last() != Some(&(ps.len() - 1)) {
                bounds.push(ps.len() - 1);
            }
            let below = |xs: &[f64], x: f64| xs.partition_point(|v| *v < x);
            let upto = |xs: &[f64], x: f64| xs.partition_point(|v| *v <= x);
            // Every covered value, to widen a bound to halfway to the nearest value beyond it (or to the last value
            // there is): the interval keeps the same images and does not stop exactly at a positive.
            let mut all: Vec<f64> = ps.iter().chain(&ns).copied().collect();
            all.sort_by(f64::total_cmp);
            // On a circle the value before the first is the last, one period earlier.
            let widen_lo = |x: f64| match below(&all, x) {
                0 if p > 0.0 => (all[all.len() - 1] - p + x) / 2.0,
                0 => all[0],
                k => (all[k - 1] + x) / 2.0,
            };
            let widen_hi = |x: f64| match upto(&all, x) {
                k if k == all.len() && p > 0.0 => (all[0] + p + x) / 2.0,
                k if k == all.len() => all[k - 1],
                k => (all[k] + x) / 2.0,
            };
            let mut out = Vec::new();
            for (a, &i) in bounds.iter().enumerate() {
                for &j in &bounds[a..] {
                    let (lo, hi) = (ps[i], ps[j]);
                    let p1 = upto(&ps, hi) - below(&ps, lo);
                    if p1 < need {
                        continue;
                    }
                    let n1 = upto(&ns, hi) - below(&ns, lo);
                    let (lo, hi) = (widen_lo(lo), widen_hi(hi));
                    let condition = if p > 0.0 {
                        let back = |x: f64| (x + shift).rem_euclid(p);
                        Condition::Arc { parameter: name.clone(), from: back(lo), to: back(hi), period: p }
                    } else {
                        Condition::Interval { parameter: name.clone(), lo, hi }
                    };
                    out.push((condition, p1, n1));
                }
            }
            out
        }
        Feature::Categorical { name, values } => {
            let mut counts: std::collections::BTreeMap<&str, (usize, usize)> = std::collections::BTreeMap::new();
            for &i in pos {
                counts.entry(&values[i]).or_default().0 += 1;
            }
            for &i in neg {
                counts.entry(&values[i]).or_default().1 += 1;
            }
            let mut order: Vec<(&str, usize, usize)> = counts.into_iter().map(|(k, (p, n))| (k, p, n)).collect();
            order.sort_by(|a, b| {
                let rate = |x: &(&str, usize, usize)| x.1 as f64 / (x.1 + x.2) as f64;
                rate(b).total_cmp(&rate(a)).then(a.0.cmp(b.0))
            });
            let mut out = Vec::new();
            let (mut p1, mut n1, mut set) = (0, 0, Vec::new());
            for (k, p, n) in order.iter().take(order.len().saturating_sub(1)) {
                p1 += p;
                n1 += n;
                set.push(k.to_string());
                if p1 >= need {
                    let mut sorted = set.clone();
                    sorted.sort();
                    out.push((Condition::OneOf { parameter: name.clone(), values: sorted }, p1, n1));
                }
            }
            out
        }
    }
}

/// The share of a parameter's range over `rows` that a condition keeps (1 for no restriction).
pub fn kept(condition: &Condition, feature: &Feature, rows: &[usize]) -> f64 {
    match (condition, feature) {
        (Condition::Interval { lo, hi, .. }, Feature::Numeric { values, .. }) => {
            let (_, min, max) = crate::stats::summary(&rows.iter().map(|&i| values[i]).collect::<Vec<_>>());
            if max > min { ((hi.min(max) - lo.max(min)) / (max - min)).clamp(0.0, 1.0) } else { 1.0 }
        }
        (Condition::Arc { from, to, period, .. }, Feature::Numeric { values, .. }) => {
            let scaled: Vec<f64> = rows.iter().map(|&i| values[i] * 360.0 / period).collect();
            let whole = crate::stats::arc_length(crate::stats::arc(&scaled)) * period / 360.0;
            let length = (to - from).rem_euclid(*period);
            if whole > 0.0 { (length / whole).min(1.0) } else { 1.0 }
        }
        (Condition::OneOf { values: kept, .. }, Feature::Categorical { values, .. }) => {
            let all: std::collections::BTreeSet<&str> = rows.iter().map(|&i| values[i].as_str()).collect();
            kept.len() as f64 / all.len().max(1) as f64
        }
        _ => 1.0,
    }
}

/// The learner's features from a dataset's parameters, the label's own parameters left out (they restate the
/// label): numbers, angles (period 360), axes (period 180) and categories, with each parameter's description.
pub fn features(ds: &Dataset) -> Result<Vec<(ParamInfo, Feature)>, DatasetError> {
    let sim = simulator_of(ds);
    let mut out = Vec::new();
    for info in ds.meta.params.iter().filter(|p| !p.label) {
        let name = info.name.clone();
        // A simulator's angle that cannot go all the way round (yaw in [-75°, 75°]) is an interval.
        let spec = sim.and_then(|s| s.params().iter().find(|p| p.name == info.name));
        let circle = |full: f64| spec.map_or(Some(full), |s| period_of(&s.kind));
        let feature = match info.kind.as_str() {
            "real" => Feature::Numeric { name, values: ds.numbers(&info.name)?, period: None },
            "angle" => Feature::Numeric { name, values: ds.numbers(&info.name)?, period: circle(360.0) },
            "axial" => Feature::Numeric { name, values: ds.numbers(&info.name)?, period: circle(180.0) },
            _ => Feature::Categorical { name, values: ds.strings(&info.name)? },
        };
        out.push((info.clone(), feature));
    }
    Ok(out)
}

/// The simulator a dataset was drawn from (`simulate:<name>`), which renders new images like its own.
pub fn simulator_of(ds: &Dataset) -> Option<&'static dyn Simulator> {
    ds.meta.source.strip_prefix("simulate:").and_then(crate::sim::simulator)
}

/// Why `what` cannot render new images like a dataset's.
pub fn not_simulated(ds: &Dataset, what: &str) -> String {
    format!(
        "{what} renders new images with the simulator the dataset came from; {} comes from `{}`, not a simulator",
        ds.dir.display(),
        ds.meta.source
    )
}

/// The circle a parameter lives on: 360° for an angle and 180° for an axis that can go all the way round, none
/// for one with a narrower range (it never wraps) or a number.
pub fn period_of(kind: &ParamKind) -> Option<f64> {
    match *kind {
        ParamKind::Angle { min, max } if max - min >= 360.0 => Some(360.0),
        ParamKind::Axial { min, max } if max - min >= 180.0 => Some(180.0),
        _ => None,
    }
}

/// The parameter vectors of some rows of a simulated dataset in the simulator's order (categories as their index),
/// as `Simulator::render` takes them.
pub fn vectors(ds: &Dataset, sim: &dyn Simulator, rows: &[usize]) -> Result<Vec<Vec<f64>>, DatasetError> {
    let mut columns = Vec::new();
    for spec in sim.params() {
        columns.push(match spec.kind.categories() {
            Some(categories) => {
                let names = ds.strings(spec.name)?;
                names.iter().map(|n| categories.iter().position(|c| c == n).unwrap_or(0) as f64).collect::<Vec<_>>()
            }
            None => ds.numbers(spec.name)?,
        });
    }
    Ok(rows.iter().map(|&r| columns.iter().map(|c| c[r]).collect()).collect())
}

/// Whether a parameter vector (the simulator's order) lies in the region of every condition.
pub fn inside(conditions: &[Condition], sim: &dyn Simulator, vector: &[f64]) -> bool {
    conditions.iter().all(|c| {
        let Some(k) = sim.params().iter().position(|p| p.name == c.parameter()) else { return false };
        match sim.params()[k].kind.categories() {
            Some(names) => c.holds(Value::Category(names[vector[k] as usize])),
            None => c.holds(Value::Number(vector[k])),
        }
    })
}

/// The random generator of one cluster's draws: independent of the other clusters', fixed by the stage's seed.
pub fn cluster_rng(seed: u64, cluster: usize) -> ChaCha8Rng {
    use rand::SeedableRng;
    ChaCha8Rng::seed_from_u64(seed ^ (cluster as u64).wrapping_mul(0x9e37_79b9))
}

/// A parameter vector inside the conditions: a random one of `base` (the split's images) with every condition's
/// parameter redrawn inside it.
pub fn draw_around(conditions: &[Condition], sim: &dyn Simulator, base: &[Vec<f64>], rng: &mut ChaCha8Rng) -> Vec<f64> {
    let b = &base[rng.random_range(0..base.len())];
    draw_inside(conditions, sim, b, rng)
}

/// A writer of rendered images as a dataset like `ds` (task, size, parameters), from `source`, chosen by
/// `chosen_by`.
pub fn image_writer(
    dir: &std::path::Path,
    ds: &Dataset,
    sim: &dyn Simulator,
    source: &str,
    chosen_by: Vec<String>,
) -> Result<crate::dataset::DatasetWriter, DatasetError> {
    let meta = crate::dataset::DatasetMeta {
        source: format!("{source}:{}", sim.name()),
        count: 0,
        splits: Vec::new(),
        chosen_by,
        ..ds.meta.clone()
    };
    crate::dataset::DatasetWriter::create(dir, meta, sim.params().iter().map(crate::sim::ParamSpec::column).collect())
}

/// `base` with every condition's parameter redrawn inside the condition.
pub fn draw_inside(conditions: &[Condition], sim: &dyn Simulator, base: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut v = base.to_vec();
    for c in conditions {
        if let Some(k) = sim.params().iter().position(|p| p.name == c.parameter()) {
            let categories: Vec<String> =
                sim.params()[k].kind.categories().unwrap_or_default().iter().map(|s| s.to_string()).collect();
            v[k] = c.draw(&categories, rng);
        }
    }
    v
}

/// The exact (Clopper-Pearson) confidence interval of a binomial proportion: `k` of `n`, level `1 − alpha`.
pub fn clopper_pearson(k: usize, n: usize, alpha: f64) -> (f64, f64) {
    use statrs::distribution::{Beta, ContinuousCDF};
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, nf) = (k as f64, n as f64);
    let lo = if k == 0.0 { 0.0 } else { Beta::new(k, nf - k + 1.0).expect("positive shapes").inverse_cdf(alpha / 2.0) };
    let hi =
        if k == nf { 1.0 } else { Beta::new(k + 1.0, nf - k).expect("positive shapes").inverse_cdf(1.0 - alpha / 2.0) };
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(name: &str, values: Vec<f64>, period: Option<f64>) -> Feature {
        Feature::Numeric { name: name.into(), values, period }
    }

    #[test]
    fn a_planted_interval_is_recovered_and_an_irrelevant_parameter_is_left_out() {
        // 200 images: night uniform on [0, 1), noise independent of it; images with night ≥ 0.6 are the cluster.
        let night: Vec<f64> = (0..200).map(|i| (i * 37 % 200) as f64 / 200.0).collect();
        let noise: Vec<f64> = (0..200).map(|i| (i * 91 % 200) as f64 / 200.0).collect();
        let pos: Vec<usize> = (0..200).filter(|&i| night[i] >= 0.6).collect();
        let neg: Vec<usize> = (0..200).filter(|&i| night[i] < 0.6).collect();
        let features = vec![numeric("noise", noise, None), numeric("night", night, None)];
        let rule = learn(&features, &pos, &neg, Options { max_conditions: 3, min_support: 0.6 });
        assert_eq!(rule.conditions.len(), 1, "{rule:?}");
        let Condition::Interval { parameter, lo, hi } = &rule.conditions[0] else { panic!("{rule:?}") };
        assert_eq!(parameter, "night");
        assert!((lo - 0.6).abs() < 0.01 && *hi > 0.99, "{lo}–{hi}");
        assert_eq!((rule.positives, rule.negatives), (pos.len(), 0));
    }

    #[test]
    fn an_arc_across_the_wrap_and_a_category_set_are_learned() {
        // Light from 340° to 20° (across 0°) and an occluder that is a hand or a scarf.
        let light: Vec<f64> = (0..120).map(|i| (i * 3) as f64).collect();
        let occluder: Vec<String> = (0..120).map(|i| ["none", "hand", "scarf", "none"][i % 4].to_string()).collect();
        let inside = |i: usize| (light[i] >= 340.0 || light[i] <= 20.0) && occluder[i] != "none";
        let pos: Vec<usize> = (0..120).filter(|&i| inside(i)).collect();
        let neg: Vec<usize> = (0..120).filter(|&i| !inside(i)).collect();
        let features = vec![
            numeric("light", light.clone(), Some(360.0)),
            Feature::Categorical { name: "occluder".into(), values: occluder.clone() },
        ];
        let rule = learn(&features, &pos, &neg, Options { max_conditions: 3, min_support: 0.5 });
        assert_eq!(rule.negatives, 0, "{rule:?}");
        assert_eq!(rule.positives, pos.len(), "{rule:?}");
        let arc = rule.conditions.iter().find(|c| c.parameter() == "light").unwrap();
        assert!(arc.holds(Value::Number(350.0)) && arc.holds(Value::Number(10.0)) && !arc.holds(Value::Number(180.0)));
        let set = rule.conditions.iter().find(|c| c.parameter() == "occluder").unwrap();
        assert_eq!(
            set,
            &Condition::OneOf { parameter: "occluder".into(), values: vec!["hand".into(), "scarf".into()] }
        );
        // Bounds halfway to the nearest uncovered values (339° and 21°).
        assert_eq!(arc.describe("°"), "light -19.5° to 19.5°");
    }

    #[test]
    fn only_angles_that_can_go_all_the_way_round_are_read_on_a_circle() {
        // Yaw in [-75°, 75°] never wraps: an interval, which cannot widen across the back of the circle.
        assert_eq!(period_of(&ParamKind::Angle { min: -75.0, max: 75.0 }), None);
        assert_eq!(period_of(&ParamKind::Angle { min: 0.0, max: 360.0 }), Some(360.0));
        assert_eq!(period_of(&ParamKind::Axial { min: 0.0, max: 180.0 }), Some(180.0));
        assert_eq!(period_of(&ParamKind::Real { min: 0.0, max: 1.0, unit: "" }), None);
    }

    #[test]
    fn drawn_values_lie_inside_their_condition() {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let arc = Condition::Arc { parameter: "a".into(), from: 340.0, to: 20.0, period: 360.0 };
        let interval = Condition::Interval { parameter: "b".into(), lo: 0.2, hi: 0.4 };
        let set = Condition::OneOf { parameter: "c".into(), values: vec!["y".into()] };
        let categories = vec!["x".to_string(), "y".to_string()];
        for _ in 0..100 {
            let a = arc.draw(&[], &mut rng);
            assert!(arc.holds(Value::Number(a)) && (-20.0..=20.0).contains(&a), "{a}");
            assert!(interval.holds(Value::Number(interval.draw(&[], &mut rng))));
            assert_eq!(set.draw(&categories, &mut rng), 1.0);
        }
    }
}
