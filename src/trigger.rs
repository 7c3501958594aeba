//! Triggering conditions (after SEDE, Fahmy et al. 2023): a rule over simulator parameters that separates a
//! root-cause cluster's images from the images the model gets right, learned greedily as a conjunction of intervals
//! (arcs for angles) and value sets; and what confirming and using a rule needs: whether a parameter vector lies in
//! its region, drawing vectors inside it, and exact binomial intervals of failure rates.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, DatasetError, ParamInfo};
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
    /// The rule keeps at least this share of the cluster's growing images.
    pub min_support: f64,
    /// The share of each side's images held back to prune on (IREP's third).
    pub prune_share: f64,
    /// A condition stays only if it raises the rule's precision on the pruning images by at least this share of
    /// the precision without it.
    pub margin: f64,
    /// No condition may keep more than this share of its parameter's operational distribution.
    pub max_kept: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options { max_conditions: 3, min_support: 0.6, prune_share: 1.0 / 3.0, margin: 0.1, max_kept: 0.9 }
    }
}

/// A learned rule and how well it separates.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub conditions: Vec<Condition>,
    /// Conditions grown and then pruned, in the order grown.
    pub pruned: Vec<Condition>,
    /// Positives (cluster images) and negatives (correct images) the rule covers, over all images.
    pub positives: usize,
    pub negatives: usize,
}

/// Learns one rule for `positives` against `negatives` (row indices into every feature's values) as IREP does
/// (Fürnkranz and Widmer 1994; the growing and pruning phases of RIPPER): the images are split at random, each
/// side in proportion, into a growing part and a pruning part (`prune_share`), both drawn from `rng`.
///
/// Growing is greedy: each step adds the condition with the largest FOIL gain `p₁ (log₂ p₁/(p₁+n₁) − log₂
/// p₀/(p₀+n₀))` over one unused parameter, among those keeping at least `min_support` of the growing positives
/// and at most `max_kept` of the parameter's operational distribution (`kept(condition)`); it stops when no
/// condition raises the precision. Numeric conditions are intervals between two covered positives' values (on a
/// circle, cut at the positives' widest gap), bounds halfway to the next value; categorical ones the categories of
/// highest positive rate. Pruning keeps the prefix of the grown conditions with the highest precision on the
/// pruning images (IREP's deletion of final sequences; the empty rule when none beats it), then drops, one at a
/// time, the condition whose removal costs least while removing it costs less than `margin` of the precision:
/// what stays raised precision on images it was not grown on. Ties go to the earlier feature and bound.
pub fn learn(
    features: &[Feature],
    positives: &[usize],
    negatives: &[usize],
    options: Options,
    kept: &dyn Fn(&Condition) -> f64,
    rng: &mut ChaCha8Rng,
) -> Learned {
    use rand::seq::SliceRandom;
    let part = |rows: &[usize], rng: &mut ChaCha8Rng| {
        let mut rows = rows.to_vec();
        rows.shuffle(rng);
        let grow = ((rows.len() as f64) * (1.0 - options.prune_share)).ceil() as usize;
        let prune = rows.split_off(grow.min(rows.len()));
        (rows, prune)
    };
    let (grow_pos, prune_pos) = part(positives, rng);
    let (grow_neg, prune_neg) = part(negatives, rng);
    let grown = grow(features, &grow_pos, &grow_neg, options, kept);
    let precision = |conditions: &[&Condition]| {
        let covered = |rows: &[usize]| rows.iter().filter(|&&i| covers(features, conditions, i)).count() as f64;
        let (p, n) = (covered(&prune_pos), covered(&prune_neg));
        if p + n > 0.0 { p / (p + n) } else { 0.0 }
    };
    let mut best = (0, precision(&[]));
    for j in 1..=grown.len() {
        let v = precision(&grown.iter().take(j).collect::<Vec<_>>());
        if v > best.1 + 1e-12 {
            best = (j, v);
        }
    }
    let mut stays: Vec<&Condition> = grown.iter().take(best.0).collect();
    loop {
        let with = precision(&stays);
        let without = |i: usize| {
            let rest: Vec<&Condition> = stays.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| *c).collect();
            precision(&rest)
        };
        let cheapest = (0..stays.len()).map(|i| (i, without(i))).fold(None, |b: Option<(usize, f64)>, x| match b {
            Some(b) if b.1 >= x.1 => Some(b),
            _ => Some(x),
        });
        match cheapest {
            Some((i, without)) if with < without * (1.0 + options.margin) => {
                stays.remove(i);
            }
            _ => break,
        }
    }
    let conditions: Vec<Condition> = stays.into_iter().cloned().collect();
    let pruned = grown.iter().filter(|c| !conditions.contains(c)).cloned().collect();
    let refs: Vec<&Condition> = conditions.iter().collect();
    let count = |rows: &[usize]| rows.iter().filter(|&&i| covers(features, &refs, i)).count();
    Learned { positives: count(positives), negatives: count(negatives), conditions, pruned }
}

/// Whether image `i` meets every condition.
fn covers(features: &[Feature], conditions: &[&Condition], i: usize) -> bool {
    conditions
        .iter()
        .all(|c| features.iter().find(|f| f.name() == c.parameter()).is_some_and(|f| c.holds(value_of(f, i))))
}

/// IREP's growing phase on the growing images (see [`learn`]).
fn grow(
    features: &[Feature],
    positives: &[usize],
    negatives: &[usize],
    options: Options,
    kept: &dyn Fn(&Condition) -> f64,
) -> Vec<Condition> {
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
                if gain > 1e-9
                    && best.as_ref().is_none_or(|b| gain > b.0 + 1e-12)
                    && kept(&condition) <= options.max_kept
                {
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
    conditions
}

fn value_of(feature: &Feature, i: usize) -> Value<'_> {
    match feature {
        Feature::Numeric { values, .. } => Value::Number(values[i]),
        Feature::Categorical { values, .. } => Value::Category(&values[i]),
    }
}

/// The candidate conditions on one feature with the positives and negatives each keeps.
// Long: one arm per feature kind (numbers on a line, numbers on a circle, categories), each enumerating its own
// thresholds; the arms share nothing but the counting.
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

/// The share of the images at `rows` (a sample of the operational distribution: the split's images) whose value of
/// the condition's parameter meets it: how much of the parameter's operational distribution the condition keeps.
pub fn kept(condition: &Condition, feature: &Feature, rows: &[usize]) -> f64 {
    let meets = rows.iter().filter(|&&i| condition.holds(value_of(feature, i))).count();
    meets as f64 / rows.len().max(1) as f64
}

/// A condition with its bounds inside a parameter's operational support: an interval clipped to it; arcs and value
/// sets as they are (an arc is learned only where the support goes all the way round; a value set only holds values
/// images had).
pub fn clip(condition: Condition, support: &crate::sim::Support) -> Condition {
    match (condition, support) {
        (Condition::Interval { parameter, lo, hi }, crate::sim::Support::Numbers { min, max }) => {
            Condition::Interval { parameter, lo: lo.max(*min).min(*max), hi: hi.min(*max).max(*min) }
        }
        (c, _) => c,
    }
}

/// The learner's features from a dataset's parameters, the label's own parameters left out (they restate the
/// label): numbers, angles and axes, and categories, with each parameter's description. An angle or axis is read on
/// its circle only where it can go all the way round: its declared range does, and so does its support in `domain`
/// (the split the rules are stated for), when given; otherwise it is an interval.
pub fn features(ds: &Dataset, domain: Option<&crate::sim::Domain>) -> Result<Vec<(ParamInfo, Feature)>, DatasetError> {
    let mut out = Vec::new();
    for (k, info) in ds.meta.params.iter().enumerate().filter(|(_, p)| !p.label) {
        let name = info.name.clone();
        let period = info.period.filter(|&period| {
            domain.is_none_or(|d| match d.support(k) {
                crate::sim::Support::Numbers { min, max } => max - min >= period,
                crate::sim::Support::Categories(_) => false,
            })
        });
        let feature = match info.kind.as_str() {
            "real" | "angle" | "axial" => Feature::Numeric { name, values: ds.numbers(&info.name)?, period },
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

/// Why a stage cannot render new images like a dataset's: the dataset came from no simulator.
#[derive(Debug, thiserror::Error)]
#[error(
    "{stage} renders new images with the simulator the dataset came from; {} comes from `{origin}`, not a simulator",
    dataset.display()
)]
pub struct NotSimulated {
    pub stage: &'static str,
    pub dataset: std::path::PathBuf,
    pub origin: String,
}

impl From<NotSimulated> for crate::engine::stage::StageError {
    fn from(e: NotSimulated) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// The simulator a dataset came from, for `stage` to render new images like its own; refused when it came from none.
pub fn renderer_of(ds: &Dataset, stage: &'static str) -> Result<&'static dyn Simulator, NotSimulated> {
    simulator_of(ds).ok_or_else(|| NotSimulated { stage, dataset: ds.dir.clone(), origin: ds.meta.source.clone() })
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

/// What a stage draws for. Each purpose has its own streams, so two stages given the same seed (a manifest's
/// matrix seeds) never draw the same parameter vectors or render the same detail.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Rules,
    Expand,
    Confirm,
    Generate,
    /// `intervene`'s training vectors that restorations take their values from.
    Restore,
    /// `intervene`'s sham re-renders.
    Sham,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Rules => "rules",
            Purpose::Expand => "expand",
            Purpose::Confirm => "confirm",
            Purpose::Generate => "generate",
            Purpose::Restore => "intervene/restore",
            Purpose::Sham => "intervene/sham",
        }
    }

    /// The seed of a stage's draws for this purpose: its images' renders use it with `sim::image_rng`.
    pub fn seed(self, seed: u64) -> u64 {
        let hash = blake3::hash(format!("hudd/{}/{seed}", self.tag()).as_bytes());
        u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// The random generator of one cluster's parameter draws: independent of the other clusters' and purposes'.
    pub fn rng(self, seed: u64, cluster: usize) -> ChaCha8Rng {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed(seed));
        rng.set_stream(cluster as u64);
        rng
    }
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
        domains: Default::default(),
        ..ds.meta.clone()
    };
    crate::dataset::DatasetWriter::create(dir, meta, sim.params().iter().map(crate::sim::ParamSpec::column).collect())
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
    use rand::{Rng, SeedableRng};

    use super::*;

    fn numeric(name: &str, values: Vec<f64>, period: Option<f64>) -> Feature {
        Feature::Numeric { name: name.into(), values, period }
    }

    /// Learns with the default options, `kept` measured over every image.
    fn learn_all(features: &[Feature], pos: &[usize], neg: &[usize], options: Options) -> Learned {
        let rows: Vec<usize> = pos.iter().chain(neg).copied().collect();
        let kept = |c: &Condition| {
            let f = features.iter().find(|f| f.name() == c.parameter()).expect("a feature");
            kept(c, f, &rows)
        };
        learn(features, pos, neg, options, &kept, &mut ChaCha8Rng::seed_from_u64(7))
    }

    #[test]
    fn a_planted_interval_is_recovered_and_an_irrelevant_parameter_is_left_out() {
        // 600 images: night uniform on [0, 1), noise independent of it; images with night ≥ 0.6 are the cluster.
        let night: Vec<f64> = (0..600).map(|i| (i * 37 % 600) as f64 / 600.0).collect();
        let noise: Vec<f64> = (0..600).map(|i| (i * 91 % 600) as f64 / 600.0).collect();
        let pos: Vec<usize> = (0..600).filter(|&i| night[i] >= 0.6).collect();
        let neg: Vec<usize> = (0..600).filter(|&i| night[i] < 0.6).collect();
        let features = vec![numeric("noise", noise, None), numeric("night", night, None)];
        let rule = learn_all(&features, &pos, &neg, Options::default());
        assert_eq!(rule.conditions.len(), 1, "{rule:?}");
        let Condition::Interval { parameter, lo, hi } = &rule.conditions[0] else { panic!("{rule:?}") };
        assert_eq!(parameter, "night");
        assert!((lo - 0.6).abs() < 0.01 && *hi > 0.99, "{lo}–{hi}");
        // Bounds sit between the growing images' values: a positive or two at the edge may fall outside.
        assert!(rule.positives + 3 >= pos.len() && rule.negatives == 0, "{rule:?}");
    }

    #[test]
    fn a_near_vacuous_condition_is_pruned_and_one_covering_most_of_its_range_is_never_grown() {
        // The cluster: dark images (night ≥ 0.7), except half of those whose blur axis lies in a narrow band
        // (81°–90°), which the model gets right. An arc of blur axes around the band keeps 95% of the axes and
        // shaves a few correct images off: growing alone adds it (TSR's "blur_angle 159° to 152° across 0°"),
        // though it says next to nothing about where the model fails.
        let n = 900;
        let night: Vec<f64> = (0..n).map(|i| (i * 37 % n) as f64 / n as f64).collect();
        let blur: Vec<f64> = (0..n).map(|i| (i * 53 % n) as f64 / n as f64 * 180.0).collect();
        let positive = |i: usize| night[i] >= 0.7 && !((81.0..90.0).contains(&blur[i]) && i.is_multiple_of(2));
        let pos: Vec<usize> = (0..n).filter(|&i| positive(i)).collect();
        let neg: Vec<usize> = (0..n).filter(|&i| !positive(i)).collect();
        let features = vec![numeric("blur", blur, Some(180.0)), numeric("night", night, None)];
        let options = Options { min_support: 0.6, ..Options::default() };
        let rule = learn_all(&features, &pos, &neg, options);
        assert_eq!(rule.conditions.iter().map(Condition::parameter).collect::<Vec<_>>(), ["night"], "{rule:?}");
        // Without the limit on what a condition keeps, nor the pruning margin, the blur band is grown and kept.
        let loose = Options { max_kept: 1.0, margin: 0.0, ..options };
        let grown = learn_all(&features, &pos, &neg, loose);
        assert!(grown.conditions.iter().any(|c| c.parameter() == "blur"), "{grown:?}");
    }

    #[test]
    fn an_arc_across_the_wrap_and_a_category_set_are_learned() {
        // Light from 340° to 20° (across 0°) and an occluder that is a hand or a scarf.
        let n = 720;
        let light: Vec<f64> = (0..n).map(|i| (i / 2) as f64).collect();
        let occluder: Vec<String> = (0..n).map(|i| ["none", "hand", "scarf", "none"][i % 4].to_string()).collect();
        let inside = |i: usize| (light[i] >= 340.0 || light[i] <= 20.0) && occluder[i] != "none";
        let pos: Vec<usize> = (0..n).filter(|&i| inside(i)).collect();
        let neg: Vec<usize> = (0..n).filter(|&i| !inside(i)).collect();
        let features = vec![
            numeric("light", light.clone(), Some(360.0)),
            Feature::Categorical { name: "occluder".into(), values: occluder.clone() },
        ];
        let rule = learn_all(&features, &pos, &neg, Options { min_support: 0.5, ..Options::default() });
        assert_eq!(rule.negatives, 0, "{rule:?}");
        assert!(rule.positives + 2 >= pos.len(), "{rule:?}");
        let arc = rule.conditions.iter().find(|c| c.parameter() == "light").unwrap();
        assert!(arc.holds(Value::Number(350.0)) && arc.holds(Value::Number(10.0)) && !arc.holds(Value::Number(180.0)));
        let set = rule.conditions.iter().find(|c| c.parameter() == "occluder").unwrap();
        assert_eq!(
            set,
            &Condition::OneOf { parameter: "occluder".into(), values: vec!["hand".into(), "scarf".into()] }
        );
        // Bounds halfway between the growing images' last covered and first uncovered values.
        let Condition::Arc { from, to, .. } = arc else { panic!("{arc:?}") };
        assert!((from - 339.5).abs() <= 1.0 && (to - 20.5).abs() <= 1.0, "{}", arc.describe("°"));
    }

    #[test]
    fn the_planted_conjunction_matches_scikit_learns_decision_tree() {
        // tests/fixtures/rules_ref.py: night ≥ 0.65 and fog ≥ 0.4, every 25th label flipped, noise irrelevant.
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/rules_ref.json")).expect("the reference parses");
        let n = reference["n"].as_u64().unwrap() as usize;
        let frac = |x: f64| x - x.floor();
        let column = |c: f64| (0..n).map(|i| frac(i as f64 * c)).collect::<Vec<f64>>();
        let (night, fog, noise) = (column((1.0 + 5f64.sqrt()) / 2.0), column(2f64.sqrt()), column(3f64.sqrt()));
        let label = |i: usize| (night[i] >= 0.65 && fog[i] >= 0.4) != i.is_multiple_of(25);
        let pos: Vec<usize> = (0..n).filter(|&i| label(i)).collect();
        let neg: Vec<usize> = (0..n).filter(|&i| !label(i)).collect();
        let features = vec![numeric("night", night, None), numeric("fog", fog, None), numeric("noise", noise, None)];
        let rule = learn_all(&features, &pos, &neg, Options { min_support: 0.5, ..Options::default() });
        let tree = &reference["tree"];
        let mut used: Vec<&str> = rule.conditions.iter().map(Condition::parameter).collect();
        used.sort_unstable();
        let mut expected: Vec<&str> = tree["bounds"].as_object().unwrap().keys().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(used, expected, "{rule:?}");
        for c in &rule.conditions {
            let Condition::Interval { parameter, lo, hi } = c else { panic!("{c:?}") };
            let bounds = &tree["bounds"][parameter.as_str()];
            let (tlo, thi) = (bounds[0].as_f64().unwrap(), bounds[1].as_f64().unwrap());
            assert!((lo - tlo).abs() < 0.02 && (hi.min(1.0) - thi).abs() < 0.02, "{c:?} against {tlo}–{thi}");
        }
        // As precise and as complete as the tree's leaf, within two points.
        let tree_precision = tree["positives"].as_f64().unwrap() / tree["covered"].as_f64().unwrap();
        let precision = rule.positives as f64 / (rule.positives + rule.negatives) as f64;
        assert!(precision > tree_precision - 0.02, "{precision} against {tree_precision}");
        assert!(rule.positives as f64 > tree["positives"].as_f64().unwrap() * 0.98, "{rule:?}");
        // The learner's own output on this case, committed: a change to the learner that moves a bound or a count
        // shows here even where it stays within two points of the tree.
        let learned =
            [("night", 0.6513430828642868, 0.9987272235747469), ("fog", 0.4021253839129031, 0.9994923857216236)];
        assert_eq!(rule.conditions.len(), learned.len(), "{rule:?}");
        for (c, (name, want_lo, want_hi)) in rule.conditions.iter().zip(learned) {
            let Condition::Interval { parameter, lo, hi } = c else { panic!("{c:?}") };
            assert!(parameter == name && (lo - want_lo).abs() < 1e-12 && (hi - want_hi).abs() < 1e-12, "{c:?}");
        }
        assert_eq!((rule.positives, rule.negatives), (602, 24), "{rule:?}");
    }

    #[test]
    fn an_interval_is_clipped_to_the_operational_support() {
        let c = Condition::Interval { parameter: "brightness".into(), lo: 0.26, hi: 0.9 };
        let clipped = clip(c, &crate::sim::Support::Numbers { min: 0.75, max: 1.2 });
        assert_eq!(clipped, Condition::Interval { parameter: "brightness".into(), lo: 0.75, hi: 0.9 });
    }

    #[test]
    fn each_purpose_draws_its_own_stream_for_the_same_seed() {
        let draw = |p: Purpose, cluster| p.rng(1, cluster).random::<u64>();
        let all = [
            draw(Purpose::Confirm, 0),
            draw(Purpose::Generate, 0),
            draw(Purpose::Expand, 0),
            draw(Purpose::Confirm, 1),
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|b| a != b), "{all:?}");
        }
        assert_ne!(Purpose::Confirm.seed(1), Purpose::Generate.seed(1));
    }
}
