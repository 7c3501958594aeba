//! Stage `variance` (RQ1: do the images of a root-cause cluster share a cause?): for every cluster and simulator
//! parameter, how much smaller the parameter's spread is inside the cluster than over all error-inducing images.

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::artefact::clusters::{Clusters, MemberNotFound};
use crate::artefact::evaluation::{ChanceCorrected, ExplanationRow, ReductionRow, VarianceSummary};
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CLUSTERS, EXPLANATIONS, PARQUET, VARIANCE_SUMMARY, VARIANCE_TABLE};
use crate::dataset::{Dataset, ParamInfo};
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::stats;

pub struct Variance;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarianceParams {
    /// A cluster is explained when some parameter's spread drops by at least this share (HUDD: 0.5).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Images an engineer looks at per cluster (HUDD's Table 1: 5).
    #[serde(default = "default_inspect")]
    pub inspect_per_cluster: usize,
    /// Random clusters of each size drawn for the null model (membership shuffled among the failing images).
    #[serde(default = "default_permutations")]
    pub permutations: usize,
    /// A cluster beats chance when its adjusted permutation p-value is below this.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// How the clusters' p-values are adjusted for testing them all: `benjamini-hochberg` (default: the expected
    /// share of clusters called beyond chance that are not stays under `alpha`), `holm` (the chance of calling any
    /// such cluster stays under `alpha`), or `none`.
    #[serde(default)]
    pub correction: stats::Correction,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_permutations() -> usize {
    1000
}
fn default_alpha() -> f64 {
    0.05
}

fn default_threshold() -> f64 {
    0.5
}
fn default_inspect() -> usize {
    5
}

impl Params for VarianceParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            out.push(Invalid::new("threshold", format!("must be in (0, 1], got {}", self.threshold)));
        }
        if self.inspect_per_cluster == 0 {
            out.push(Invalid::new("inspect_per_cluster", "must be at least 1, got 0"));
        }
        if self.permutations < 19 {
            out.push(Invalid::new(
                "permutations",
                format!("must be at least 19 (p < 0.05 needs them), got {}", self.permutations),
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            out.push(Invalid::new("alpha", format!("must be in (0, 1), got {}", self.alpha)));
        }
        out
    }
}

/// A parameter's values over some images, as its kind needs them.
enum Values {
    Real(Vec<f64>),
    /// Degrees on a circle of `period` degrees: 360 for directions, 180 for axes.
    Angle(Vec<f64>, f64),
    Category(Vec<String>),
}

/// A range that covers at least this share of the failing images' range says little: the description says so.
const WIDE: f64 = 0.75;

impl Values {
    fn of(ds: &Dataset, info: &ParamInfo) -> Result<Values, StageError> {
        Ok(match info.kind.as_str() {
            "real" => Values::Real(ds.numbers(&info.name)?),
            // An angle whose declared range goes all the way round is read on its circle, any other as a number.
            "angle" | "axial" => match info.period {
                Some(period) => Values::Angle(ds.numbers(&info.name)?, period),
                None => Values::Real(ds.numbers(&info.name)?),
            },
            _ => Values::Category(ds.strings(&info.name)?),
        })
    }

    /// The spread of the values at `rows`, each estimate corrected for small samples so that a small cluster is
    /// not made to look tight by its size alone: sample variance, circular (or axial) spread, or Gini impurity.
    fn spread(&self, rows: &[usize]) -> f64 {
        match self {
            Values::Real(v) => stats::sample_variance(&rows.iter().map(|&r| v[r]).collect::<Vec<_>>()),
            Values::Angle(v, period) => {
                stats::circular_spread(&rows.iter().map(|&r| v[r]).collect::<Vec<_>>(), *period)
            }
            Values::Category(v) => stats::sample_gini(&rows.iter().map(|&r| v[r].as_str()).collect::<Vec<_>>()),
        }
    }

    /// The smallest range (or arc) holding the values at `rows`, and its width.
    fn range(&self, rows: &[usize]) -> Option<((f64, f64), f64)> {
        let v: Vec<f64> = match self {
            Values::Real(v) | Values::Angle(v, _) => rows.iter().map(|&r| v[r]).collect(),
            Values::Category(_) => return None,
        };
        Some(match self {
            Values::Angle(_, period) if *period == 180.0 => {
                let arc = stats::axial_arc(&v);
                (arc, stats::arc_length((2.0 * arc.0, 2.0 * arc.1)) / 2.0)
            }
            Values::Angle(..) => {
                let arc = stats::arc(&v);
                (arc, stats::arc_length(arc))
            }
            _ => {
                let (_, lo, hi) = stats::summary(&v);
                ((lo, hi), hi - lo)
            }
        })
    }

    /// What the images at `rows` share, in words: a range, an arc, or the commonest category and its share; a range
    /// covering most of the range over `all` (the failing images) says so, since it explains little.
    fn describe(&self, name: &str, unit: Option<&str>, rows: &[usize], all: &[usize]) -> String {
        let unit = match unit {
            Some("degrees") => "°".to_string(),
            Some(u) => format!(" {u}"),
            None => String::new(),
        };
        let wide = match (self.range(rows), self.range(all)) {
            (Some((_, w)), Some((_, total))) if total > 0.0 && w / total >= WIDE => {
                format!(" ({:.0}% of its range among the failing images)", 100.0 * w / total)
            }
            _ => String::new(),
        };
        match self {
            Values::Real(_) => {
                let ((lo, hi), _) = self.range(rows).expect("a real parameter has a range");
                if lo < 0.0 || hi < 0.0 {
                    // "to" rather than a dash, which would run into minus signs (-69.6–-36.8°).
                    let first = if unit == "°" { unit.as_str() } else { "" };
                    format!("{name} {}{first} to {}{unit}{wide}", short(lo), short(hi))
                } else {
                    format!("{name} {}–{}{unit}{wide}", short(lo), short(hi))
                }
            }
            Values::Angle(_, period) => {
                // Signed degrees for directions, from one end of the arc to the other counterclockwise; "to" rather
                // than a dash, which would run into minus signs (-69.6–-36.8°). Axes read in [0°, 180°).
                let ((a, b), _) = self.range(rows).expect("an angle has an arc");
                let (a, b, across) = if *period == 180.0 {
                    (a, b, if a > b { " across 0°" } else { "" })
                } else {
                    let signed = |d: f64| if d > 180.0 { d - 360.0 } else { d };
                    let (a, b) = (signed(a), signed(b));
                    (a, b, if a > b { " across ±180°" } else { "" })
                };
                format!("{name} {}{unit} to {}{unit}{across}{wide}", short(a), short(b))
            }
            Values::Category(v) => {
                let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
                for &r in rows {
                    *counts.entry(v[r].as_str()).or_default() += 1;
                }
                let (top, n) = counts
                    .iter()
                    .max_by_key(|(k, n)| (**n, std::cmp::Reverse(**k)))
                    .map(|(k, n)| (*k, *n))
                    .unwrap_or(("", 0));
                if n == rows.len() {
                    format!("{name} {top} (all)")
                } else {
                    format!("{name} {top} ({:.0}%)", 100.0 * n as f64 / rows.len() as f64)
                }
            }
        }
    }
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

/// Cluster → the rows of its members in the failing images' dataset; a member not in it is named with its row.
fn groups(ds: &Dataset, ids: &[String], clusters: &Clusters) -> Result<BTreeMap<usize, Vec<usize>>, StageError> {
    let path = clusters.members_path();
    let mut row_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        row_of.entry(id.as_str()).or_insert(i);
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, m) in clusters.members()?.into_iter().enumerate() {
        let row = *row_of.get(m.image.as_str()).ok_or_else(|| MemberNotFound {
            members: path.clone(),
            row: Some(i + 1),
            image: m.image.clone(),
            within: ds.dir.clone(),
        })?;
        groups.entry(m.cluster).or_default().push(row);
    }
    Ok(groups)
}

/// The best reduction over every parameter (the label's own left out) of the images at `rows`.
fn best_reduction(params: &[(ParamInfo, Values)], overall: &[f64], rows: &[usize]) -> f64 {
    (params.iter().zip(overall))
        .filter(|((info, _), o)| **o > 0.0 && !info.label)
        .map(|((_, v), o)| 1.0 - v.spread(rows) / o)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// The null model, per cluster size: the best reduction over every parameter of random clusters of that size, drawn
/// from the same failing images; the max over parameters, like the statistic, so that trying every parameter is
/// accounted for.
fn null_model(
    params: &[(ParamInfo, Values)],
    overall: &[f64],
    groups: &BTreeMap<usize, Vec<usize>>,
    all: &[usize],
    permutations: usize,
    seed: u64,
) -> BTreeMap<usize, Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut nulls: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for size in groups.values().map(Vec::len).filter(|&m| m >= 2) {
        if nulls.contains_key(&size) || params.is_empty() {
            continue;
        }
        let draws = (0..permutations)
            .map(|_| {
                let mut rows: Vec<usize> = all.choose_multiple(&mut rng, size).copied().collect();
                rows.sort_unstable();
                best_reduction(params, overall, &rows)
            })
            .collect();
        nulls.insert(size, draws);
    }
    nulls
}

/// The failing images' parameters, each one's spread over all of them, and their rows.
struct Population<'a> {
    params: &'a [(ParamInfo, Values)],
    overall: &'a [f64],
    all: &'a [usize],
}

/// One cluster's reductions (appended to `reductions`), its best, whether it is explained, its permutation p-value
/// against `null` (its size's null draws) and its description; the adjusted p-value and the verdict come later.
fn judge(
    c: usize,
    members: &[usize],
    population: &Population<'_>,
    null: Option<&Vec<f64>>,
    p: &VarianceParams,
    reductions: &mut Vec<ReductionRow>,
) -> Judged {
    let Population { params, overall, all } = *population;
    let mut scored: Vec<(usize, f64)> = Vec::new();
    let mut labels: Vec<(usize, f64)> = Vec::new();
    if members.len() >= 2 {
        for (k, (info, values)) in params.iter().enumerate() {
            if overall[k] > 0.0 {
                let r = 1.0 - values.spread(members) / overall[k];
                reductions.push(ReductionRow {
                    cluster: c,
                    size: members.len(),
                    parameter: info.name.clone(),
                    kind: info.kind.clone(),
                    reduction: r,
                });
                // The label's own parameters restate the label: described, never counted as a cause.
                if !info.label {
                    scored.push((k, r));
                } else if r >= p.threshold {
                    labels.push((k, r));
                }
            }
        }
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let assessable = members.len() >= 2 && !scored.is_empty();
    let is_explained = assessable && scored[0].1 >= p.threshold;
    // p = (1 + null draws at least as good) / (1 + draws); the share of null draws reaching the threshold is
    // the chance that a random cluster of this size counts as explained.
    let null = null.filter(|_| assessable);
    let p_value = null.map(|null| {
        let at_least = null.iter().filter(|&&r| r >= scored[0].1).count();
        (1 + at_least) as f64 / (1 + null.len()) as f64
    });
    let describe = |k: usize| params[k].1.describe(&params[k].0.name, params[k].0.unit.as_deref(), members, all);
    let mut description: Vec<String> =
        scored.iter().filter(|(_, r)| *r >= p.threshold).take(3).map(|&(k, _)| describe(k)).collect();
    description.extend(labels.iter().map(|&(k, _)| format!("the label: {}", describe(k))));
    let (best_parameter, best_reduction) =
        scored.first().map_or((String::new(), None), |&(k, r)| (params[k].0.name.clone(), Some(r)));
    Judged {
        row: ExplanationRow {
            cluster: c,
            size: members.len(),
            explained: assessable.then_some(is_explained),
            best_parameter,
            best_reduction,
            p: p_value,
            beats_chance: None,
            description: description.join("; "),
            p_adjusted: None,
        },
        assessable,
        is_explained,
    }
}

/// One cluster's explanation before the p-values are adjusted.
struct Judged {
    row: ExplanationRow,
    assessable: bool,
    is_explained: bool,
}

/// The chance that a random cluster of some size counts as explained: the share of its size's null draws (`null`)
/// reaching the threshold. Summed over the assessed clusters, the number expected to be explained by chance.
fn chance_of_explained(null: &[f64], threshold: f64) -> f64 {
    null.iter().filter(|&&r| r >= threshold).count() as f64 / null.len() as f64
}

/// The stream of [`expected_beyond_chance`]'s draws, apart from the null model's own.
const NULL_STREAM: u64 = 0x6e75_6c6c_2d63_6f75;

/// How many clusters would be explained beyond chance if every cluster were a random cluster of its size: each
/// replicate gives every tested cluster (`sizes`) a best reduction drawn from its size's null draws, its p-value
/// against the other draws, the correction over all of them, and counts those reaching the threshold with an
/// adjusted p below `alpha`; the mean over as many replicates as there are null draws.
fn expected_beyond_chance(
    sizes: &[usize],
    nulls: &BTreeMap<usize, Vec<f64>>,
    p: &VarianceParams,
    rng: &mut ChaCha8Rng,
) -> f64 {
    if sizes.is_empty() {
        return 0.0;
    }
    let sorted: BTreeMap<usize, Vec<f64>> = nulls
        .iter()
        .map(|(size, draws)| {
            let mut d = draws.clone();
            d.sort_by(f64::total_cmp);
            (*size, d)
        })
        .collect();
    let replicates = p.permutations;
    let mut total = 0usize;
    for _ in 0..replicates {
        let drawn: Vec<(f64, f64)> = sizes
            .iter()
            .map(|size| {
                let null = &sorted[size];
                let r = null[rng.random_range(0..null.len())];
                // Draws at least as good, itself left out: the p-value a random cluster would get.
                let at_least = null.len() - null.partition_point(|v| *v < r) - 1;
                (r, (1 + at_least) as f64 / null.len() as f64)
            })
            .collect();
        let raw: Vec<f64> = drawn.iter().map(|d| d.1).collect();
        let adjusted = stats::adjust(&raw, p.correction);
        total += drawn.iter().zip(&adjusted).filter(|((r, _), a)| *r >= p.threshold && **a < p.alpha).count();
    }
    total as f64 / replicates as f64
}

/// The clusters explained beyond chance, counted after the p-values' correction.
struct Tally {
    beyond_chance: usize,
    /// Explained with a raw p below α.
    uncorrected: usize,
    /// Failing images in explained clusters, and in clusters explained beyond chance.
    images_explained: usize,
    images_beyond_chance: usize,
    /// The sizes of the clusters tested (those with a p-value).
    tested_sizes: Vec<usize>,
}

/// Adjusts the p-values over every cluster tested (the family is every cluster tested, explained or not), marks
/// each assessable cluster as beating chance or not, and counts.
fn adjust(judged: &mut [Judged], p: &VarianceParams) -> Tally {
    let tested: Vec<usize> = (0..judged.len()).filter(|&i| judged[i].row.p.is_some()).collect();
    let raw: Vec<f64> = tested.iter().map(|&i| judged[i].row.p.expect("tested")).collect();
    for (&i, adjusted) in tested.iter().zip(stats::adjust(&raw, p.correction)) {
        judged[i].row.p_adjusted = Some(adjusted);
    }
    let mut tally = Tally {
        beyond_chance: 0,
        uncorrected: 0,
        images_explained: 0,
        images_beyond_chance: 0,
        tested_sizes: tested.iter().map(|&i| judged[i].row.size).collect(),
    };
    for j in judged {
        let beats_chance = j.is_explained && j.row.p_adjusted.is_some_and(|v| v < p.alpha);
        tally.beyond_chance += usize::from(beats_chance);
        tally.uncorrected += usize::from(j.is_explained && j.row.p.is_some_and(|v| v < p.alpha));
        if j.is_explained {
            tally.images_explained += j.row.size;
        }
        if beats_chance {
            tally.images_beyond_chance += j.row.size;
        }
        j.row.beats_chance = j.assessable.then_some(beats_chance);
    }
    tally
}

impl Stage for Variance {
    type Params = VarianceParams;
    const KIND: &'static str = "variance";
    const VERSION: u32 = 6;
    const USES_SEED: bool = true;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "clusters",
            accepts: &[CLUSTERS],
            many: false,
            required: true,
            doc: "a cluster stage's output",
        },
        InputSlot {
            name: "images",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the clustered images, with their simulator parameters",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec {
            name: "reductions",
            kind: VARIANCE_TABLE,
            path: "variance.csv",
            doc: "cluster,size,parameter,kind,reduction",
        },
        OutputSpec {
            name: "clusters",
            kind: EXPLANATIONS,
            path: "clusters.csv",
            doc: "cluster,size,explained,best_parameter,best_reduction,description",
        },
        OutputSpec {
            name: "summary",
            kind: VARIANCE_SUMMARY,
            path: "summary.json",
            doc: "Table 1 figures and the share of explained clusters",
        },
        OutputSpec { name: "parquet", kind: PARQUET, path: "parquet/", doc: "variance.parquet and clusters.parquet" },
    ];
    const DOC: &'static str = "Variance reduction of simulator parameters inside each cluster (RQ1).";

    fn run(&self, p: &VarianceParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let ds = Dataset::open(&ctx.input("images")?.path)?;
        let ids = ds.ids()?;
        let groups = groups(&ds, &ids, &Clusters::open(&ctx.input("clusters")?.path))?;
        let failing = ds.meta.count;
        let inspected: usize = groups.values().map(|g| g.len().min(p.inspect_per_cluster)).sum();
        let params: Vec<(ParamInfo, Values)> = ds
            .meta
            .params
            .iter()
            .map(|info| Values::of(&ds, info).map(|v| (info.clone(), v)))
            .collect::<Result<_, _>>()?;
        let all: Vec<usize> = groups.values().flatten().copied().collect();
        let overall: Vec<f64> = params.iter().map(|(_, v)| v.spread(&all)).collect();
        let mut reductions = Vec::new();
        let (mut assessed, mut explained) = (0, 0);
        let nulls = null_model(&params, &overall, &groups, &all, p.permutations, ctx.seed);
        let mut by_chance = 0.0;
        // Each cluster's best reduction and permutation p-value (when it can be assessed), then the p-values adjusted
        // over every assessed cluster: the family is every cluster tested, explained or not.
        let mut judged: Vec<Judged> = Vec::new();
        for (c, members) in &groups {
            let null = nulls.get(&members.len());
            let j = judge(
                *c,
                members,
                &Population { params: &params, overall: &overall, all: &all },
                null,
                p,
                &mut reductions,
            );
            assessed += usize::from(j.assessable);
            explained += usize::from(j.is_explained);
            if let Some(null) = null.filter(|_| j.assessable) {
                by_chance += chance_of_explained(null, p.threshold);
            }
            judged.push(j);
        }
        let Tally { beyond_chance, uncorrected, images_explained, images_beyond_chance, tested_sizes } =
            adjust(&mut judged, p);
        let expected_beyond_chance =
            expected_beyond_chance(&tested_sizes, &nulls, p, &mut ChaCha8Rng::seed_from_u64(ctx.seed ^ NULL_STREAM));
        let rows: Vec<ExplanationRow> = judged.into_iter().map(|j| j.row).collect();
        let note = if params.is_empty() {
            Some("the images carry no simulator parameters (real images): RQ1 does not apply".to_string())
        } else if groups.is_empty() {
            Some("no root-cause clusters".to_string())
        } else {
            None
        };
        let summary = VarianceSummary {
            failing,
            clusters: groups.len(),
            inspected,
            inspected_share: if failing > 0 { inspected as f64 / failing as f64 } else { 0.0 },
            assessed,
            explained,
            explained_share: (assessed > 0).then(|| explained as f64 / assessed as f64),
            threshold: p.threshold,
            note,
            chance: (!params.is_empty() && assessed > 0).then(|| ChanceCorrected {
                explained: beyond_chance,
                explained_share: beyond_chance as f64 / assessed as f64,
                expected_by_chance: by_chance,
                explained_uncorrected: uncorrected,
                expected_beyond_chance,
                correction: p.correction,
                images_explained: images_explained as f64 / failing.max(1) as f64,
                images_explained_beyond_chance: images_beyond_chance as f64 / failing.max(1) as f64,
                permutations: p.permutations,
                alpha: p.alpha,
            }),
        };
        let parquet = ctx.output("parquet")?;
        table::write_with_parquet(&ctx.output("reductions")?, &parquet, &reductions)?;
        table::write_with_parquet(&ctx.output("clusters")?, &parquet, &rows)?;
        Ok(table::write_json(&ctx.output("summary")?, &summary)?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::{Values, VarianceParams, expected_beyond_chance};
    use crate::stats::Correction;

    /// Twenty clusters whose null draws all pass the 50% criterion: under the global null each raw p-value is below
    /// 0.05 one time in twenty, so uncorrected about one cluster is "beyond chance", while Holm and
    /// Benjamini-Hochberg keep the chance of any such cluster near 0.05.
    #[test]
    fn the_expected_count_beyond_chance_follows_the_correction() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let nulls: BTreeMap<usize, Vec<f64>> =
            [(4, (0..1000).map(|_| 0.5 + 0.5 * rng.random::<f64>()).collect())].into_iter().collect();
        let sizes = vec![4; 20];
        let expected = |correction: Correction| {
            let p: VarianceParams = toml::from_str(&format!("correction = {:?}", kebab(correction))).unwrap();
            expected_beyond_chance(&sizes, &nulls, &p, &mut ChaCha8Rng::seed_from_u64(5))
        };
        let none = expected(Correction::None);
        assert!((0.85..1.15).contains(&none), "uncorrected: {none}");
        for c in [Correction::Holm, Correction::BenjaminiHochberg] {
            let e = expected(c);
            assert!(e < 0.08, "{c:?}: {e}");
        }
    }

    fn kebab(c: Correction) -> String {
        serde_json::to_value(c).unwrap().as_str().unwrap().to_string()
    }

    #[test]
    fn an_arc_of_angles_reads_as_signed_degrees_and_says_when_it_crosses_180() {
        let angles = Values::Angle(vec![-69.6, -36.8, -50.0, 155.0, 170.0, -99.6, 5.0, 355.0], 360.0);
        let all: Vec<usize> = (0..8).collect();
        assert_eq!(angles.describe("yaw", Some("degrees"), &[0, 1, 2], &all), "yaw -69.6° to -36.8°");
        assert_eq!(angles.describe("light", Some("degrees"), &[3, 4, 5], &all), "light 155° to -99.6° across ±180°");
        assert_eq!(angles.describe("roll", Some("degrees"), &[6, 7], &all), "roll -5.00° to 5.00°");
    }

    #[test]
    fn an_angle_with_a_narrower_declared_range_is_an_interval_not_an_arc() {
        use crate::dataset::{ParamInfo, ParamKind};
        let column = |kind| crate::dataset::ParamColumn { name: "yaw", kind };
        assert_eq!(ParamInfo::of(&column(ParamKind::Angle { min: -70.0, max: 70.0 })).period, None);
        assert_eq!(ParamInfo::of(&column(ParamKind::Angle { min: -180.0, max: 180.0 })).period, Some(360.0));
        // Yaw bounded to ±70°: -65° and 65° are 130° apart, not 230° round the back, and never "across ±180°".
        let yaw = Values::Real(vec![-65.0, 65.0, 0.0, -60.0, 60.0]);
        let all: Vec<usize> = (0..5).collect();
        assert_eq!(yaw.describe("yaw", Some("degrees"), &[0, 3], &all), "yaw -65.0° to -60.0°");
        assert_eq!(yaw.range(&[0, 1]).unwrap().1, 130.0);
    }

    #[test]
    fn an_axis_reads_in_0_to_180_degrees_and_wraps_at_0() {
        // 175° and 5° are 10° apart as axes: the tightest arc crosses 0°, and the spread is small.
        let axes = Values::Angle(vec![175.0, 5.0, 178.0, 2.0, 90.0, 60.0], 180.0);
        let all: Vec<usize> = (0..6).collect();
        assert_eq!(
            axes.describe("blur_angle", Some("degrees"), &[0, 1, 2, 3], &all),
            "blur_angle 175° to 5.00° across 0°"
        );
        assert!(axes.spread(&[0, 1, 2, 3]) < 0.02, "{}", axes.spread(&[0, 1, 2, 3]));
        // As directions on the full circle the same values would be spread far apart.
        let directions = Values::Angle(vec![175.0, 5.0, 178.0, 2.0], 360.0);
        assert!(directions.spread(&[0, 1, 2, 3]) > 0.9);
    }

    #[test]
    fn a_range_covering_most_of_the_failing_images_range_says_so() {
        let night = Values::Real(vec![0.1, 0.95, 0.2, 0.9, 0.5, 0.0, 1.0]);
        let all: Vec<usize> = (0..7).collect();
        assert_eq!(
            night.describe("night", None, &[0, 1, 2, 3], &all),
            "night 0.10–0.95 (85% of its range among the failing images)"
        );
        assert_eq!(night.describe("night", None, &[1, 3], &all), "night 0.90–0.95");
    }

    /// The chance model against tests/fixtures/variance_ref.py, which enumerates every random cluster of each size
    /// drawn from nine failing images: each cluster's reductions exactly (the script's spreads are means over pairs,
    /// not hudd's formulas), and the Monte Carlo p-values and expected counts, from 200,000 draws, within 0.005 of
    /// the exact values (five standard errors at most; one cluster more or less at least as good moves a p-value by
    /// 1/126 or more).
    #[test]
    fn p_values_and_chance_counts_match_an_exact_enumeration_of_random_clusters() {
        use super::{Judged, Population, adjust, judge, null_model};
        use crate::dataset::ParamInfo;
        let r: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/variance_ref.json")).expect("the reference parses");
        let params: Vec<(ParamInfo, Values)> = r["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let kind = p["kind"].as_str().unwrap();
                let info = ParamInfo {
                    name: p["name"].as_str().unwrap().to_string(),
                    kind: kind.to_string(),
                    unit: None,
                    values: Vec::new(),
                    label: p["label"].as_bool().unwrap(),
                    period: p["period"].as_f64(),
                };
                let values = match (kind, info.period) {
                    ("categorical", _) => Values::Category(serde_json::from_value(p["values"].clone()).unwrap()),
                    (_, Some(period)) => Values::Angle(serde_json::from_value(p["values"].clone()).unwrap(), period),
                    _ => Values::Real(serde_json::from_value(p["values"].clone()).unwrap()),
                };
                (info, values)
            })
            .collect();
        let groups: BTreeMap<usize, Vec<usize>> =
            serde_json::from_value::<BTreeMap<String, Vec<usize>>>(r["clusters"].clone())
                .unwrap()
                .into_iter()
                .map(|(c, m)| (c.parse().unwrap(), m))
                .collect();
        let all: Vec<usize> = groups.values().flatten().copied().collect();
        let overall: Vec<f64> = params.iter().map(|(_, v)| v.spread(&all)).collect();
        for (k, (got, want)) in overall.iter().zip(r["overall"].as_array().unwrap()).enumerate() {
            assert!(
                (got - want.as_f64().unwrap()).abs() < 1e-12,
                "spread of {} over all: {got} against {want}",
                params[k].0.name
            );
        }
        for correction in [Correction::BenjaminiHochberg, Correction::Holm, Correction::None] {
            let p: VarianceParams =
                toml::from_str(&format!("permutations = 200000\ncorrection = {:?}", kebab(correction))).unwrap();
            let nulls = null_model(&params, &overall, &groups, &all, p.permutations, 1);
            let mut reductions = Vec::new();
            let mut by_chance = 0.0;
            let mut judged: Vec<Judged> = Vec::new();
            for ((c, members), want) in groups.iter().zip(r["rows"].as_array().unwrap()) {
                let population = Population { params: &params, overall: &overall, all: &all };
                let j = judge(*c, members, &population, nulls.get(&members.len()), &p, &mut reductions);
                by_chance += super::chance_of_explained(&nulls[&members.len()], p.threshold);
                let best = want["best"].as_f64().unwrap();
                assert!(
                    (j.row.best_reduction.unwrap() - best).abs() < 1e-12,
                    "cluster {c}: {:?} against {best}",
                    j.row
                );
                let exact = want["p"].as_f64().unwrap();
                let got = j.row.p.unwrap();
                assert!((got - exact).abs() < 0.005, "cluster {c}: p {got} against the exact {exact}");
                judged.push(j);
            }
            let want: Vec<f64> = r["rows"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    row["reductions"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(reductions.len(), want.len());
            for (got, want) in reductions.iter().zip(&want) {
                assert!((got.reduction - want).abs() < 1e-12, "{got:?} against {want}");
            }
            let exact = r["expected_by_chance"].as_f64().unwrap();
            assert!(
                (by_chance - exact).abs() < 0.005 * groups.len() as f64,
                "expected by chance {by_chance} against {exact}"
            );
            let tested = adjust(&mut judged, &p).tested_sizes;
            let beyond = expected_beyond_chance(&tested, &nulls, &p, &mut ChaCha8Rng::seed_from_u64(2));
            let exact = r["expected_beyond_chance"][kebab(correction)].as_f64().unwrap();
            assert!((beyond - exact).abs() < 0.01, "{correction:?}: expected beyond chance {beyond} against {exact}");
        }
    }
}
