//! Parametric image simulators: their parameters, the distributions a manifest declares for them, and generation.
//!
//! A simulator draws one image from one row of parameter values; labels and targets derive from the parameters.
//! Every image has its own RNG seeded from (seed, split, index), so generation is parallel and reproducible.

pub mod eyes;
pub mod faces;
pub mod folder;
pub mod raster;
pub mod signs;

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use crate::dataset::ParamKind;
use crate::dataset::{Label, ParamColumn, Target};
pub use crate::domain::{Distribution, Distributions, Domain, Scenario, Support, standard_normal};
use crate::engine::diagnostic::did_you_mean;
use crate::engine::stage::Invalid;

/// A simulator parameter with its default distribution.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub default: DefaultDist,
    pub doc: &'static str,
}

/// A simulator's default distribution for a parameter (static so specs can be `const`).
#[derive(Debug, Clone, Copy)]
pub enum DefaultDist {
    Uniform(f64, f64),
    Normal(f64, f64),
    /// Uniform over every category (or true/false).
    AnyCategory,
    /// Probability of `true`.
    Chance(f64),
}

/// A scalar as written in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// A distribution declared in a manifest for one parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Dist {
    /// `{ uniform = [min, max] }`
    Uniform([f64; 2]),
    /// `{ normal = [mean, sd] }`, truncated to the parameter's range.
    Normal([f64; 2]),
    /// `{ weights = { day = 0.9, night = 0.1 } }` for categorical and boolean parameters.
    Weights(BTreeMap<String, f64>),
    /// `{ fixed = value }`
    Fixed(Scalar),
    /// `{ intervals = [[-45, -28], [-12, 12], [28, 45]] }`: uniform over disjoint intervals, in increasing order.
    Intervals(Vec<[f64; 2]>),
}

impl ParamSpec {
    fn range(&self) -> (f64, f64) {
        match self.kind {
            ParamKind::Real { min, max, .. } | ParamKind::Angle { min, max } | ParamKind::Axial { min, max } => {
                (min, max)
            }
            ParamKind::Categorical(c) => (0.0, (c.len() - 1) as f64),
            ParamKind::Bool => (0.0, 1.0),
        }
    }

    fn categories(&self) -> Option<Vec<&'static str>> {
        self.kind.categories()
    }

    /// The parameter as a dataset column.
    pub fn column(&self) -> ParamColumn {
        ParamColumn { name: self.name, kind: self.kind }
    }

    fn default_sampler(&self) -> Distribution {
        let (min, max) = self.range();
        match self.default {
            DefaultDist::Uniform(a, b) => Distribution::Uniform { min: a, max: b },
            DefaultDist::Normal(mean, sd) => Distribution::Normal { mean, sd, min, max },
            DefaultDist::AnyCategory => {
                let n = self.categories().map_or(1, |c| c.len());
                Distribution::Categorical { weights: vec![1.0; n] }
            }
            DefaultDist::Chance(p) => Distribution::Categorical { weights: vec![1.0 - p, p] },
        }
    }

    /// Checks a declared distribution; `field` names it in messages.
    fn sampler(&self, dist: &Dist, field: &str) -> Result<Distribution, Invalid> {
        let (min, max) = self.range();
        let bad = |message: String| Invalid::new(field, message);
        let numeric = self.categories().is_none();
        match dist {
            Dist::Uniform([a, b]) => {
                if !numeric {
                    return Err(bad(format!("`{}` is categorical: use weights or fixed, not uniform", self.name)));
                }
                if a > b {
                    return Err(bad(format!("uniform range [{a}, {b}] has its min above its max")));
                }
                if *a < min || *b > max {
                    return Err(bad(format!("uniform range [{a}, {b}] leaves the parameter's range [{min}, {max}]")));
                }
                Ok(Distribution::Uniform { min: *a, max: *b })
            }
            Dist::Normal([mean, sd]) => {
                if !numeric {
                    return Err(bad(format!("`{}` is categorical: use weights or fixed, not normal", self.name)));
                }
                if !(*sd > 0.0) {
                    return Err(bad(format!("normal sd must be above 0, got {sd}")));
                }
                if *mean < min || *mean > max {
                    return Err(bad(format!("normal mean {mean} is outside the parameter's range [{min}, {max}]")));
                }
                Ok(Distribution::Normal { mean: *mean, sd: *sd, min, max })
            }
            Dist::Weights(weights) => {
                let Some(categories) = self.categories() else {
                    return Err(bad(format!("`{}` is numeric: use uniform, normal or fixed, not weights", self.name)));
                };
                let mut w = vec![0.0; categories.len()];
                for (name, weight) in weights {
                    let Some(i) = categories.iter().position(|c| c == name) else {
                        return Err(bad(format!(
                            "`{name}` is not a value of `{}` (values: {})",
                            self.name,
                            categories.join(", ")
                        )));
                    };
                    if !(*weight >= 0.0) || !weight.is_finite() {
                        return Err(bad(format!("weight of `{name}` must be 0 or more, got {weight}")));
                    }
                    w[i] = *weight;
                }
                if w.iter().sum::<f64>() <= 0.0 {
                    return Err(bad("weights sum to 0".to_string()));
                }
                Ok(Distribution::Categorical { weights: w })
            }
            Dist::Fixed(value) => {
                let v = match (value, self.categories()) {
                    (Scalar::Number(x), None) => *x,
                    (Scalar::Text(t), Some(c)) => c.iter().position(|v| v == t).ok_or_else(|| {
                        bad(format!("`{t}` is not a value of `{}` (values: {})", self.name, c.join(", ")))
                    })? as f64,
                    (Scalar::Bool(b), Some(_)) if matches!(self.kind, ParamKind::Bool) => f64::from(u8::from(*b)),
                    _ => return Err(bad(format!("fixed value {value:?} does not suit parameter `{}`", self.name))),
                };
                if v < min || v > max {
                    return Err(bad(format!("fixed value {v} is outside the parameter's range [{min}, {max}]")));
                }
                Ok(Distribution::Fixed { value: v })
            }
            Dist::Intervals(ranges) => {
                if !numeric {
                    return Err(bad(format!("`{}` is categorical: use weights or fixed, not intervals", self.name)));
                }
                if ranges.is_empty() {
                    return Err(bad("intervals lists no interval".to_string()));
                }
                for &[a, b] in ranges {
                    if !(a < b) {
                        return Err(bad(format!("interval [{a}, {b}] must have its min below its max")));
                    }
                    if a < min || b > max {
                        return Err(bad(format!("interval [{a}, {b}] leaves the parameter's range [{min}, {max}]")));
                    }
                }
                if let Some(&[[_, previous], [a, b]]) = ranges.windows(2).find(|w| w[1][0] < w[0][1]) {
                    return Err(bad(format!(
                        "interval [{a}, {b}] starts below the end of the one before it ({previous}): list disjoint \
                         intervals in increasing order"
                    )));
                }
                Ok(Distribution::Intervals { ranges: ranges.clone() })
            }
        }
    }
}

impl Distributions {
    /// The simulator's default distribution of every parameter.
    pub fn defaults(sim: &dyn Simulator) -> Distributions {
        Distributions(sim.params().iter().map(ParamSpec::default_sampler).collect())
    }

    /// Defaults of the simulator, overridden by `declared`; `field` prefixes parameter names in messages.
    pub fn new(sim: &dyn Simulator, declared: &BTreeMap<String, Dist>, field: &str) -> Result<Self, Vec<Invalid>> {
        let specs = sim.params();
        let mut errors = Vec::new();
        for name in declared.keys() {
            if !specs.iter().any(|p| p.name == name) {
                let hint = did_you_mean(name, specs.iter().map(|p| p.name))
                    .map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"));
                errors.push(Invalid::new(
                    format!("{field}.{name}"),
                    format!("simulator `{}` has no parameter `{name}`{hint}", sim.name()),
                ));
            }
        }
        let mut dists = Vec::with_capacity(specs.len());
        for p in specs {
            match declared.get(p.name) {
                Some(d) => match p.sampler(d, &format!("{field}.{}", p.name)) {
                    Ok(s) => dists.push(s),
                    Err(e) => errors.push(e),
                },
                None => dists.push(p.default_sampler()),
            }
        }
        if errors.is_empty() { Ok(Distributions(dists)) } else { Err(errors) }
    }
}

/// One rendered image: interleaved RGB bytes, `size × size`.
pub struct Sample {
    pub rgb: Vec<u8>,
    pub label: Label,
}

/// A procedural image generator for one domain.
pub trait Simulator: Sync {
    fn name(&self) -> &'static str;
    /// Task names; the first is the default.
    fn tasks(&self) -> &'static [&'static str];
    fn target(&self, task: &str) -> Target;
    fn params(&self) -> &'static [ParamSpec];
    /// Draws one image from parameter values (in `params()` order); `rng` drives incidental detail only.
    fn render(&self, task: &str, values: &[f64], size: u32, rng: &mut ChaCha8Rng) -> Sample;
    /// The parameters a task's label is made from (the sign's `class`, the gaze angles of a gaze class): they
    /// restate the label, so RQ1 does not count them as explaining a cluster.
    fn label_params(&self, task: &str) -> &'static [&'static str];
}

/// Every simulator, by name.
pub fn simulators() -> [&'static dyn Simulator; 3] {
    [&signs::Signs, &eyes::Eyes, &faces::Faces]
}

pub fn simulator(name: &str) -> Option<&'static dyn Simulator> {
    simulators().into_iter().find(|s| s.name() == name)
}

pub fn simulator_names() -> Vec<&'static str> {
    simulators().iter().map(|s| s.name()).collect()
}

/// The RNG of image `index` of split number `split`: independent of every other image and of thread scheduling.
pub fn image_rng(seed: u64, split: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(split);
    rng.set_word_pos(u128::from(index) << 20);
    // Mix once more so neighbouring images do not share a keystream prefix with a fixed offset.
    ChaCha8Rng::seed_from_u64(rng.random())
}

/// Where a split comes in a simulated dataset: `train`, `test`, `improvement` first, then the others by name. A
/// split's place is its number in [`image_rng`], so re-rendering an image needs it.
pub fn split_rank(name: &str) -> (usize, String) {
    (["train", "test", "improvement"].iter().position(|s| *s == name).unwrap_or(3), name.to_string())
}

/// The number [`generate`] gave split `name` among `splits` (every split of the simulation).
pub fn split_number<'a>(name: &str, splits: impl IntoIterator<Item = &'a String>) -> Option<usize> {
    let mut names: Vec<&String> = splits.into_iter().collect();
    names.sort_by_key(|n| split_rank(n));
    names.iter().position(|n| *n == name)
}

/// The first images of each class (or simply the first images), for the contact sheet.
#[derive(Default)]
pub struct SheetRows {
    pub rows: BTreeMap<usize, Vec<Vec<u8>>>,
}

impl SheetRows {
    const PER_ROW: usize = 10;

    pub fn offer(&mut self, label: &Label, rgb: &[u8]) {
        let row = match label {
            Label::Class(c) => *c,
            Label::Targets(_) => self.rows.values().map(Vec::len).sum::<usize>() / Self::PER_ROW,
        };
        if matches!(label, Label::Targets(_)) && row >= Self::PER_ROW {
            return;
        }
        let r = self.rows.entry(row).or_default();
        if r.len() < Self::PER_ROW {
            r.push(rgb.to_vec());
        }
    }
}

/// One split to generate: its name, size and operational domain.
pub struct SplitPlan {
    pub name: String,
    pub count: usize,
    pub domain: Domain,
}

impl SplitPlan {
    /// A split without scenarios.
    pub fn plain(name: String, count: usize, dists: Distributions) -> SplitPlan {
        SplitPlan { name, count, domain: Domain::plain(dists) }
    }
}

/// One generated image with the parameter row it was drawn from (and its scenario, in a mixture split).
pub struct Generated {
    pub split: usize,
    pub index: usize,
    pub scenario: Option<usize>,
    pub values: Vec<f64>,
    pub sample: Sample,
}

/// Images generated per parallel batch: bounds memory while keeping every core busy.
const CHUNK: usize = 256;

/// Generates every split in order, in parallel batches, handing images to `sink` in (split, index) order.
pub fn generate<E>(
    sim: &dyn Simulator,
    task: &str,
    size: u32,
    seed: u64,
    splits: &[SplitPlan],
    pool: &rayon::ThreadPool,
    mut sink: impl FnMut(Generated) -> Result<(), E>,
) -> Result<(), E> {
    use rayon::prelude::*;
    for (s, split) in splits.iter().enumerate() {
        for start in (0..split.count).step_by(CHUNK) {
            let end = (start + CHUNK).min(split.count);
            let batch: Vec<Generated> = pool.install(|| {
                (start..end)
                    .into_par_iter()
                    .map(|index| {
                        let mut rng = image_rng(seed, s as u64, index as u64);
                        let (scenario, values) = split.domain.draw(&mut rng);
                        let sample = sim.render(task, &values, size, &mut rng);
                        Generated { split: s, index, scenario, values, sample }
                    })
                    .collect()
            });
            for g in batch {
                sink(g)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ParamSpec = ParamSpec {
        name: "yaw",
        kind: ParamKind::Angle { min: -60.0, max: 60.0 },
        default: DefaultDist::Normal(0.0, 10.0),
        doc: "",
    };

    #[test]
    fn a_truncated_normal_stays_in_range_and_follows_the_truncated_distribution() {
        // N(50, 30) cut to [-60, 60]: scipy.stats.truncnorm gives mean 32.0646, sd 19.9055, P(x ≤ 50) 0.79291.
        use statrs::distribution::{ContinuousCDF, Normal};
        let s = SPEC.sampler(&Dist::Normal([50.0, 30.0]), "yaw").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut xs: Vec<f64> = (0..2000).map(|_| s.sample(&mut rng)).collect();
        assert!(xs.iter().all(|x| (-60.0..=60.0).contains(x)), "{xs:?}");
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        // Four standard errors of the mean; a tenth of the standard deviation.
        assert!((mean - 32.0646).abs() < 4.0 * 19.9055 / n.sqrt(), "mean {mean}");
        assert!((sd - 19.9055).abs() < 2.0, "sd {sd}");
        // Kolmogorov–Smirnov distance to the truncated CDF, below the 0.1% critical value 1.95 / √n.
        let normal = Normal::new(50.0, 30.0).unwrap();
        let (lo, hi) = (normal.cdf(-60.0), normal.cdf(60.0));
        let cdf = |x: f64| (normal.cdf(x) - lo) / (hi - lo);
        assert!((cdf(50.0) - 0.792907).abs() < 1e-5);
        xs.sort_by(f64::total_cmp);
        let d = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| (cdf(x) - i as f64 / n).abs().max(((i + 1) as f64 / n - cdf(x)).abs()))
            .fold(0.0, f64::max);
        assert!(d < 1.95 / n.sqrt(), "Kolmogorov–Smirnov distance {d}");
    }

    #[test]
    fn invalid_distributions_state_the_rule_and_the_value() {
        let e = SPEC.sampler(&Dist::Uniform([30.0, 10.0]), "f").unwrap_err();
        assert_eq!(e.message, "uniform range [30, 10] has its min above its max");
        let e = SPEC.sampler(&Dist::Uniform([-90.0, 10.0]), "f").unwrap_err();
        assert_eq!(e.message, "uniform range [-90, 10] leaves the parameter's range [-60, 60]");
        let e = SPEC.sampler(&Dist::Weights(BTreeMap::from([("a".into(), 1.0)])), "f").unwrap_err();
        assert!(e.message.contains("is numeric"), "{}", e.message);
    }

    #[test]
    fn intervals_are_checked_and_drawn_by_length_never_in_a_gap() {
        let bad = |ranges: Vec<[f64; 2]>| SPEC.sampler(&Dist::Intervals(ranges), "f").unwrap_err().message;
        assert_eq!(bad(vec![]), "intervals lists no interval");
        assert_eq!(bad(vec![[5.0, 5.0]]), "interval [5, 5] must have its min below its max");
        assert_eq!(bad(vec![[-70.0, -50.0]]), "interval [-70, -50] leaves the parameter's range [-60, 60]");
        assert!(bad(vec![[0.0, 10.0], [5.0, 20.0]]).contains("starts below the end of the one before it (10)"));
        let s = SPEC.sampler(&Dist::Intervals(vec![[-40.0, -30.0], [0.0, 30.0]]), "f").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draws: Vec<f64> = (0..4000).map(|_| s.sample(&mut rng)).collect();
        assert!(draws.iter().all(|x| (-40.0..=-30.0).contains(x) || (0.0..=30.0).contains(x)));
        // A quarter of the length, a quarter of the draws.
        let first = draws.iter().filter(|x| **x < 0.0).count();
        assert!((850..1150).contains(&first), "{first}");
        assert!(s.contains(-35.0) && s.contains(30.0) && !s.contains(-10.0));
        assert_eq!(s.support(), crate::domain::Support::Numbers { min: -40.0, max: 30.0 });
    }

    #[test]
    fn weights_pick_categories_in_proportion() {
        let spec = ParamSpec {
            name: "bg",
            kind: ParamKind::Categorical(&["a", "b"]),
            default: DefaultDist::AnyCategory,
            doc: "",
        };
        let s = spec.sampler(&Dist::Weights(BTreeMap::from([("a".into(), 1.0), ("b".into(), 3.0)])), "f").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let b = (0..4000).filter(|_| s.sample(&mut rng) == 1.0).count();
        assert!((2800..3200).contains(&b), "{b}");
    }

    #[test]
    fn an_image_re_rendered_from_its_seed_split_and_index_is_the_same_bytes() {
        // What `intervene` relies on: the image's RNG, its parameters drawn first, then the render going on with it.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for sim in simulators() {
            let task = sim.tasks()[0];
            let plans = [
                SplitPlan::plain("train".into(), 3, Distributions::defaults(sim)),
                SplitPlan::plain("test".into(), 5, Distributions::defaults(sim)),
            ];
            let mut images = Vec::new();
            generate(sim, task, 24, 9, &plans, &pool, |g| {
                images.push(g);
                Ok::<(), ()>(())
            })
            .unwrap();
            for g in &images {
                let mut rng = image_rng(9, g.split as u64, g.index as u64);
                let (_, values) = plans[g.split].domain.draw(&mut rng);
                assert_eq!(values, g.values);
                let again = sim.render(task, &values, 24, &mut rng);
                assert!(again.rgb == g.sample.rgb, "{}: image {} of split {}", sim.name(), g.index, g.split);
                // Another seed draws another image.
                let mut other = image_rng(10, g.split as u64, g.index as u64);
                let (_, v) = plans[g.split].domain.draw(&mut other);
                assert!(sim.render(task, &v, 24, &mut other).rgb != g.sample.rgb);
            }
        }
        assert_eq!(split_number("test", &["improvement".to_string(), "test".into(), "train".into()]), Some(1));
        assert_eq!(split_number("holdout", &["holdout".to_string(), "train".into(), "zoo".into()]), Some(1));
    }

    #[test]
    fn image_rngs_differ_between_images_and_splits() {
        let a: u64 = image_rng(1, 0, 0).random();
        let b: u64 = image_rng(1, 0, 1).random();
        let c: u64 = image_rng(1, 1, 0).random();
        assert!(a != b && a != c && b != c);
        assert_eq!(a, image_rng(1, 0, 0).random::<u64>());
    }
}
