//! A split's operational domain: the distribution a manifest declares for its parameters (a simulator's defaults
//! overridden by the manifest, or a weighted mixture of scenarios), recorded in the dataset so that every later
//! stage can draw fresh images from it, restrict it to a rule's region, and state rates that hold inside it.

//!
//! Plain data with no knowledge of the simulators (`sim` builds domains from a manifest's declarations) or of
//! datasets (which store them).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Box-Muller: one standard normal draw.
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// One parameter's distribution, checked against the parameter (categories as indices; bool: 0 false, 1 true).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Distribution {
    Uniform {
        min: f64,
        max: f64,
    },
    /// Truncated to `[min, max]`, the parameter's range.
    Normal {
        mean: f64,
        sd: f64,
        min: f64,
        max: f64,
    },
    /// Weights over the category indices (not normalised).
    Categorical {
        weights: Vec<f64>,
    },
    Fixed {
        value: f64,
    },
    /// Uniform over a union of disjoint intervals, sorted, each `[lo, hi]` with `lo < hi`: each interval drawn with
    /// a chance proportional to its length (poses kept away from a class boundary, say).
    Intervals {
        ranges: Vec<[f64; 2]>,
    },
}

/// The values a distribution can give: an interval of numbers, or the categories of positive weight.
#[derive(Debug, Clone, PartialEq)]
pub enum Support {
    Numbers { min: f64, max: f64 },
    Categories(Vec<usize>),
}

impl Support {
    pub fn contains(&self, value: f64) -> bool {
        match self {
            Support::Numbers { min, max } => *min <= value && value <= *max,
            Support::Categories(c) => c.contains(&(value as usize)),
        }
    }

    /// The smallest support holding both.
    fn hull(self, other: Support) -> Support {
        match (self, other) {
            (Support::Numbers { min: a, max: b }, Support::Numbers { min: c, max: d }) => {
                Support::Numbers { min: a.min(c), max: b.max(d) }
            }
            (Support::Categories(mut a), Support::Categories(b)) => {
                a.extend(b);
                a.sort_unstable();
                a.dedup();
                Support::Categories(a)
            }
            (a, _) => a,
        }
    }
}

impl Distribution {
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        match *self {
            Distribution::Uniform { min, max } if min == max => min,
            Distribution::Uniform { min, max } => rng.random_range(min..=max),
            Distribution::Normal { mean, sd, min, max } => {
                // Truncated normal by rejection; the clamp only guards against a window far in the tail.
                for _ in 0..64 {
                    let x = mean + sd * standard_normal(rng);
                    if (min..=max).contains(&x) {
                        return x;
                    }
                }
                mean.clamp(min, max)
            }
            Distribution::Categorical { ref weights } => {
                let total: f64 = weights.iter().sum();
                let r = rng.random_range(0.0..total);
                let mut acc = 0.0;
                weights
                    .iter()
                    .position(|w| {
                        acc += w;
                        r < acc
                    })
                    .unwrap_or(weights.len() - 1) as f64
            }
            Distribution::Fixed { value } => value,
            Distribution::Intervals { ref ranges } => {
                let total: f64 = ranges.iter().map(|[lo, hi]| hi - lo).sum();
                let mut u = rng.random_range(0.0..total);
                for &[lo, hi] in ranges {
                    if u < hi - lo {
                        return lo + u;
                    }
                    u -= hi - lo;
                }
                ranges.last().expect("an interval distribution has intervals")[1]
            }
        }
    }

    /// Whether the distribution can give `value` (inside a gap between intervals: no; `support` is their hull).
    pub fn contains(&self, value: f64) -> bool {
        match self {
            Distribution::Intervals { ranges } => ranges.iter().any(|&[lo, hi]| lo <= value && value <= hi),
            _ => self.support().contains(value),
        }
    }

    /// How typical `value` is of the distribution: the chance that a draw lies at least as far from its centre
    /// (two-sided: `P(|X − m| ≥ |x − m|)`, `m` the centre of a uniform or interval distribution, the mean of a
    /// normal, the truncation ignored), or, for categories, that a draw is a category at most as likely as `value`'s.
    /// 0 where the distribution never gives `value`; 1 at its centre or its likeliest category.
    pub fn typicality(&self, value: f64) -> f64 {
        if !self.contains(value) {
            return 0.0;
        }
        match *self {
            Distribution::Uniform { min, max } => {
                let half = (max - min) / 2.0;
                if half > 0.0 { 1.0 - (value - (min + half)).abs() / half } else { 1.0 }
            }
            Distribution::Normal { mean, sd, .. } => {
                use statrs::distribution::{ContinuousCDF, Normal};
                let z = (value - mean).abs() / sd;
                2.0 * Normal::standard().sf(z)
            }
            Distribution::Categorical { ref weights } => {
                let total: f64 = weights.iter().sum();
                let own = weights.get(value as usize).copied().unwrap_or(0.0);
                weights.iter().filter(|w| **w <= own).sum::<f64>() / total
            }
            Distribution::Fixed { .. } => 1.0,
            Distribution::Intervals { ref ranges } => {
                let (lo, hi) = (ranges[0][0], ranges[ranges.len() - 1][1]);
                let (centre, half) = ((lo + hi) / 2.0, (hi - lo) / 2.0);
                // Uniform by length over the union: the share of the union's length at least as far from the centre.
                let d = (value - centre).abs();
                let total: f64 = ranges.iter().map(|r| r[1] - r[0]).sum();
                let far: f64 = ranges
                    .iter()
                    .map(|&[a, b]| {
                        let (a, b) = (a - centre, b - centre);
                        // Length of [a, b] where |t| ≥ d.
                        let right = (b.max(d) - a.max(d)).max(0.0);
                        let left = ((-d).min(b) - (-d).min(a)).max(0.0);
                        right + left
                    })
                    .sum();
                if half > 0.0 && total > 0.0 { far / total } else { 1.0 }
            }
        }
    }

    pub fn support(&self) -> Support {
        match *self {
            Distribution::Uniform { min, max } | Distribution::Normal { min, max, .. } => Support::Numbers { min, max },
            Distribution::Categorical { ref weights } => {
                Support::Categories(weights.iter().enumerate().filter(|(_, w)| **w > 0.0).map(|(i, _)| i).collect())
            }
            Distribution::Fixed { value } => Support::Numbers { min: value, max: value },
            Distribution::Intervals { ref ranges } => {
                Support::Numbers { min: ranges.first().map_or(0.0, |r| r[0]), max: ranges.last().map_or(0.0, |r| r[1]) }
            }
        }
    }
}

/// One distribution per simulator parameter, in the simulator's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Distributions(pub Vec<Distribution>);

impl Distributions {
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Vec<f64> {
        self.0.iter().map(|s| s.sample(rng)).collect()
    }
}

/// One situation of a mixture split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub weight: f64,
    pub dists: Distributions,
}

/// A split's declared distribution over parameter vectors: one set of distributions, or (when `scenarios` is not
/// empty) a weighted mixture of scenarios, each image drawing one by weight first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    pub dists: Distributions,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scenarios: Vec<Scenario>,
}

impl Domain {
    pub fn plain(dists: Distributions) -> Domain {
        Domain { dists, scenarios: Vec::new() }
    }

    /// The scenario an image draws (by weight), and its parameter values.
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> (Option<usize>, Vec<f64>) {
        if self.scenarios.is_empty() {
            return (None, self.dists.sample(rng));
        }
        let total: f64 = self.scenarios.iter().map(|s| s.weight).sum();
        let mut u = rng.random::<f64>() * total;
        let k = self
            .scenarios
            .iter()
            .position(|s| {
                u -= s.weight;
                u < 0.0
            })
            .unwrap_or(self.scenarios.len() - 1);
        (Some(k), self.scenarios[k].dists.sample(rng))
    }

    /// The distributions an image may be drawn from: the scenarios', or the split's own.
    fn parts(&self) -> Vec<&Distributions> {
        if self.scenarios.is_empty() { vec![&self.dists] } else { self.scenarios.iter().map(|s| &s.dists).collect() }
    }

    /// The values parameter `k` takes anywhere in the domain (the hull over scenarios).
    pub fn support(&self, k: usize) -> Support {
        let mut parts = self.parts().into_iter().map(|d| d.0[k].support());
        let first = parts.next().expect("a domain has at least one part");
        parts.fold(first, Support::hull)
    }

    /// How typical value `value` of parameter `k` is of the domain: [`Distribution::typicality`] averaged over the
    /// scenarios by weight (a mixture's marginal), or the split's own.
    pub fn typicality(&self, k: usize, value: f64) -> f64 {
        if self.scenarios.is_empty() {
            return self.dists.0[k].typicality(value);
        }
        let total: f64 = self.scenarios.iter().map(|s| s.weight).sum();
        self.scenarios.iter().map(|s| s.weight * s.dists.0[k].typicality(value)).sum::<f64>() / total
    }

    /// Whether a parameter vector could have been drawn: every value inside the support of one part.
    pub fn contains(&self, vector: &[f64]) -> bool {
        self.parts().iter().any(|d| d.0.iter().zip(vector).all(|(dist, &v)| dist.contains(v)))
    }
}

/// Draws from a domain restricted to a region and to its complement, by rejection: the first `n` vectors drawn
/// inside and the first `n` outside, stopping after `limit` draws. Each side is then an exact sample of the domain's
/// distribution conditioned on the side, and `inside / drawn` estimates the region's share of the domain.
pub struct Split {
    pub inside: Vec<Vec<f64>>,
    pub outside: Vec<Vec<f64>>,
    /// Vectors drawn in all, and those inside the region among them.
    pub drawn: usize,
    pub hits: usize,
}

impl Domain {
    pub fn split(&self, n: usize, limit: usize, rng: &mut ChaCha8Rng, mut inside: impl FnMut(&[f64]) -> bool) -> Split {
        let mut out = Split { inside: Vec::new(), outside: Vec::new(), drawn: 0, hits: 0 };
        while out.drawn < limit && (out.inside.len() < n || out.outside.len() < n) {
            let (_, v) = self.draw(rng);
            out.drawn += 1;
            if inside(&v) {
                out.hits += 1;
                if out.inside.len() < n {
                    out.inside.push(v);
                }
            } else if out.outside.len() < n {
                out.outside.push(v);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn typicality_is_the_chance_of_a_draw_at_least_as_far_from_the_centre() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let uniform = Distribution::Uniform { min: 0.0, max: 1.0 };
        assert!(close(uniform.typicality(0.5), 1.0) && close(uniform.typicality(0.75), 0.5));
        assert_eq!(uniform.typicality(1.2), 0.0);
        // scipy: 2 * norm.sf(1.96) = 0.04999579029644097.
        let normal = Distribution::Normal { mean: 0.0, sd: 10.0, min: -90.0, max: 90.0 };
        assert!(close(normal.typicality(19.6), 0.04999579029644097), "{}", normal.typicality(19.6));
        assert_eq!(normal.typicality(95.0), 0.0);
        // Categories at most as likely as the value's: sunglasses alone, thick and sunglasses, all.
        let glasses = Distribution::Categorical { weights: vec![0.5, 0.25, 0.23, 0.02] };
        assert!(close(glasses.typicality(3.0), 0.02) && close(glasses.typicality(2.0), 0.25));
        assert!(close(glasses.typicality(0.0), 1.0));
        // Three intervals, 58° long in all: 30° from the centre leaves [30, 45] and [−45, −30], 30° of the 58.
        let yaw = Distribution::Intervals { ranges: vec![[-45.0, -28.0], [-12.0, 12.0], [28.0, 45.0]] };
        assert!(close(yaw.typicality(30.0), 30.0 / 58.0) && close(yaw.typicality(0.0), 1.0));
        assert_eq!(yaw.typicality(20.0), 0.0, "a gap between intervals is never drawn");
        // A mixture's marginal: the scenarios' typicalities by weight.
        let domain = mixture();
        let want = (3.0 * Distribution::Uniform { min: 0.5, max: 1.0 }.typicality(0.6) + 0.0) / 4.0;
        assert!(close(domain.typicality(0, 0.6), want), "{} against {want}", domain.typicality(0, 0.6));
    }

    fn mixture() -> Domain {
        let day = Distributions(vec![
            Distribution::Uniform { min: 0.5, max: 1.0 },
            Distribution::Categorical { weights: vec![1.0, 0.0, 1.0] },
        ]);
        let night = Distributions(vec![
            Distribution::Uniform { min: 0.1, max: 0.3 },
            Distribution::Categorical { weights: vec![0.0, 0.0, 1.0] },
        ]);
        Domain {
            dists: day.clone(),
            scenarios: vec![
                Scenario { name: "day".into(), weight: 3.0, dists: day },
                Scenario { name: "night".into(), weight: 1.0, dists: night },
            ],
        }
    }

    #[test]
    fn a_mixtures_support_is_the_hull_of_its_scenarios_and_membership_needs_one_scenario() {
        let d = mixture();
        assert_eq!(d.support(0), Support::Numbers { min: 0.1, max: 1.0 });
        assert_eq!(d.support(1), Support::Categories(vec![0, 2]));
        assert!(d.contains(&[0.2, 2.0]) && d.contains(&[0.7, 0.0]));
        // Dark with category 0 is in no scenario; 0.4 is between the scenarios' ranges.
        assert!(!d.contains(&[0.2, 0.0]) && !d.contains(&[0.4, 2.0]) && !d.contains(&[0.7, 1.0]));
    }

    #[test]
    fn membership_of_an_interval_distribution_excludes_its_gaps_and_its_support_is_their_hull() {
        let d =
            Domain::plain(Distributions(vec![Distribution::Intervals { ranges: vec![[-40.0, -30.0], [0.0, 30.0]] }]));
        assert!(d.contains(&[-30.0]) && d.contains(&[12.5]));
        assert!(!d.contains(&[-10.0]) && !d.contains(&[31.0]));
        assert_eq!(d.support(0), Support::Numbers { min: -40.0, max: 30.0 });
    }

    #[test]
    fn a_split_by_rejection_keeps_each_side_conditional_and_estimates_the_regions_share() {
        let d = mixture();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // The night scenario's brightness: a quarter of the domain.
        let split = d.split(400, 100_000, &mut rng, |v| v[0] < 0.4);
        assert_eq!((split.inside.len(), split.outside.len()), (400, 400));
        assert!(split.inside.iter().all(|v| v[0] < 0.4 && v[1] == 2.0));
        assert!(split.outside.iter().all(|v| v[0] >= 0.5));
        let share = split.hits as f64 / split.drawn as f64;
        assert!((share - 0.25).abs() < 0.04, "{share}");
        // A region the domain never reaches: the limit stops the search.
        let none = d.split(10, 1000, &mut rng, |v| v[0] > 2.0);
        assert_eq!((none.inside.len(), none.drawn), (0, 1000));
    }

    #[test]
    fn draws_follow_the_declared_distributions_of_scipys_reference() {
        // tests/fixtures/domain_ref.py: a two-scenario mixture and each parameter's exact marginal distribution. The
        // empirical distribution of 40,000 draws stays within 0.01 of it (four standard errors at most).
        let r: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/domain_ref.json")).expect("the reference parses");
        let domain: Domain = serde_json::from_value(r["domain"].clone()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let n = 40_000;
        let draws: Vec<(Option<usize>, Vec<f64>)> = (0..n).map(|_| domain.draw(&mut rng)).collect();
        let share = |hits: usize| hits as f64 / n as f64;
        for (k, want) in r["scenarios"].as_array().unwrap().iter().enumerate() {
            let got = share(draws.iter().filter(|d| d.0 == Some(k)).count());
            assert!((got - want.as_f64().unwrap()).abs() < 0.01, "scenario {k}: {got} against {want}");
        }
        for (k, p) in r["parameters"].as_array().unwrap().iter().enumerate() {
            if let Some(categories) = p["categories"].as_array() {
                for (c, want) in categories.iter().enumerate() {
                    let got = share(draws.iter().filter(|d| d.1[k] == c as f64).count());
                    assert!(
                        (got - want.as_f64().unwrap()).abs() < 0.01,
                        "parameter {k}, category {c}: {got} against {want}"
                    );
                }
                continue;
            }
            for (x, want) in p["at"].as_array().unwrap().iter().zip(p["cdf"].as_array().unwrap()) {
                let (x, want) = (x.as_f64().unwrap(), want.as_f64().unwrap());
                let got = share(draws.iter().filter(|d| d.1[k] <= x).count());
                assert!((got - want).abs() < 0.01, "parameter {k}: P(x ≤ {x}) {got} against {want}");
            }
        }
        assert!(draws.iter().all(|d| domain.contains(&d.1)), "a draw outside the domain");
    }
}
