//! Stage `compare` (RQ2: does HUDD's retraining beat the baselines?): the test results of every retrained model,
//! grouped by selection strategy, against the original model's, with Mann-Whitney U and Vargha-Delaney Â12.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::artefact::clusters::Clusters;
use crate::artefact::evaluation::{
    ClusterStability, CompareSummary, Protocol, RccRow, RunRow, SeenBy, StrategyLine, StrategyRow, TestLine, TestRow,
};
use crate::artefact::results::TestResults;
use crate::artefact::table;
use crate::artefact::{
    CLUSTERS, COMPARE_RCC, COMPARE_RUNS, COMPARE_STRATEGIES, COMPARE_SUMMARY, COMPARE_TESTS, PARQUET, SELECTION,
    TEST_RESULTS, VARIANCE_SUMMARY,
};
use crate::dataset::Dataset;
use crate::engine::stage::{InputArtefact, InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::SeenAs;
use crate::stats;

pub struct Compare;

/// Why the retrained models cannot be compared as wired: each names the stage, the split or the file.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{} (from `{stage}`) mixes the splits {}: test each split in its own stage", path.display(), splits.join(", "))]
    MixedSplits { path: std::path::PathBuf, stage: String, splits: Vec<String> },
    #[error("`original` holds two tests of the original model on split `{split}`")]
    TwoOriginals { split: String },
    #[error(
        "baseline runs from `{stage}` are named `{name}`, like the reference: rename the reference (`reference_name`)"
    )]
    NamedLikeReference { stage: String, name: String },
    #[error("`{stage}` tested on split `{split}`, where `original` has no test of the original model: add one")]
    NoOriginal { stage: String, split: String },
    #[error("no `reference` run was tested on split `{split}`, where the baselines were")]
    NoReference { split: String },
    #[error(
        "no split judges the retraining fairly: {}. Test the original and every retrained model on a split that chose \
         nothing (a `holdout` split drawn like the test split, never read by heatmaps, cluster, select, balance or \
         epoch selection); the split whose failures were clustered can stay beside it as the paper's protocol",
        seen.join("; ")
    )]
    NoHeldOut { seen: Vec<String> },
}

impl From<CompareError> for StageError {
    fn from(e: CompareError) -> Self {
        StageError::artefact(e)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    /// The name of the `reference` runs' strategy in the outputs.
    #[serde(default = "default_reference")]
    pub reference_name: String,
    /// How the p-values of the comparisons on one split are adjusted for making several: `holm` (default: the
    /// chance of any false "better" stays at the level), `benjamini-hochberg`, or `none`.
    #[serde(default = "default_correction")]
    pub correction: stats::Correction,
}

fn default_reference() -> String {
    "hudd".into()
}

fn default_correction() -> stats::Correction {
    stats::Correction::Holm
}

/// Bootstrap replicates of the intervals over runs and images, and their level.
const REPLICATES: usize = 2000;
const LEVEL: f64 = 0.95;

impl Params for CompareParams {
    fn validate(&self) -> Vec<Invalid> {
        Vec::new()
    }
}

/// One test of a model: the split, every image's outcome, the score (accuracy, or mean keypoint error in pixels)
/// and how the model saw the images.
struct Outcome {
    split: String,
    correct: HashMap<String, bool>,
    /// Each image's share of the score: 1 or 0 (right or wrong), or its mean keypoint error.
    values: HashMap<String, f64>,
    score: f64,
    seen: Option<SeenAs>,
}

impl Outcome {
    /// The values of `ids`, in their order (`None` when the model was not tested on one of them).
    fn values_of(&self, ids: &[&String]) -> Option<Vec<f64>> {
        ids.iter().map(|id| self.values.get(*id).copied()).collect()
    }
}

/// The interval over runs and images of the mean score of `runs` on `ids` (every run scored on the same images).
fn interval(runs: &[&Outcome], ids: &[&String]) -> (Option<f64>, Option<f64>) {
    let outcomes: Option<Vec<Vec<f64>>> = runs.iter().map(|o| o.values_of(ids)).collect();
    let interval = outcomes.and_then(|o| stats::two_level_interval(&o, stats::Images::Shared, LEVEL, REPLICATES, 0));
    (interval.map(|i| i.0), interval.map(|i| i.1))
}

fn read_results(a: &InputArtefact) -> Result<(Outcome, bool), StageError> {
    let results = TestResults::read(&a.path)?;
    let split = match results.splits.as_slice() {
        [one] => one.clone(),
        // Tables written before the split column: one unnamed split.
        [] => String::new(),
        many => {
            return Err(CompareError::MixedSplits {
                path: a.path.clone(),
                stage: a.stage.clone(),
                splits: many.to_vec(),
            }
            .into());
        }
    };
    let correct = results.correct();
    let keypoints = results.errors.is_some();
    let score = match &results.errors {
        Some(errors) => errors.iter().sum::<f64>() / errors.len().max(1) as f64,
        None => correct.values().filter(|c| **c).count() as f64 / correct.len().max(1) as f64,
    };
    let values = match &results.errors {
        Some(errors) => results.images.iter().map(|(id, _)| id.clone()).zip(errors.iter().copied()).collect(),
        None => results.images.iter().map(|(id, c)| (id.clone(), f64::from(u8::from(*c)))).collect(),
    };
    Ok((Outcome { split, correct, values, score, seen: results.seen }, keypoints))
}

/// A run's strategy: its `strategy` matrix value, else the id of the stage that tested it.
fn strategy_of(a: &InputArtefact) -> String {
    a.matrix.get("strategy").cloned().unwrap_or_else(|| a.stage.split('[').next().unwrap_or(&a.stage).to_string())
}

/// Strategy → its runs (test stage, outcome) on one split.
type Groups = BTreeMap<String, Vec<(String, Outcome)>>;

/// Which models saw a split and how (the strongest way per strategy); the original first.
fn seen_by(original: &Outcome, groups: &Groups, chose: Option<(&str, &[String])>) -> Vec<SeenBy> {
    let mut out: Vec<SeenBy> = original.seen.map(|how| SeenBy { models: "original".into(), how }).into_iter().collect();
    for (name, runs) in groups {
        let mut how = runs.iter().filter_map(|(_, o)| o.seen).min();
        // Cluster members among the judged images chose the reference strategy's data, whatever the models say
        // (imported models record nothing).
        if let Some((reference, members)) = chose
            && name == reference
            && runs.iter().any(|(_, o)| members.iter().any(|m| o.correct.contains_key(m)))
        {
            how = Some(how.map_or(SeenAs::ChoseData, |h| h.min(SeenAs::ChoseData)));
        }
        if let Some(how) = how {
            out.push(SeenBy { models: name.clone(), how });
        }
    }
    out
}

/// What judging on a split means, for people.
fn label(seen: &[SeenBy]) -> String {
    if seen.is_empty() {
        return "held out: its images trained no model and chose no data or epoch".into();
    }
    let who: Vec<String> = seen.iter().map(|s| format!("{}, {}", s.models, s.how.describe())).collect();
    let paper = seen.iter().any(|s| s.how == SeenAs::ChoseData);
    format!("{}seen by {}", if paper { "the paper's protocol: " } else { "" }, who.join("; "))
}

impl Stage for Compare {
    type Params = CompareParams;
    const KIND: &'static str = "compare";
    const VERSION: u32 = 5;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "original",
            accepts: &[TEST_RESULTS],
            many: true,
            required: true,
            doc: "the original model's test results, one per split the runs were tested on",
        },
        InputSlot {
            name: "reference",
            accepts: &[TEST_RESULTS],
            many: true,
            required: true,
            doc: "test results of the models retrained with HUDD's selection",
        },
        InputSlot {
            name: "runs",
            accepts: &[TEST_RESULTS],
            many: true,
            required: true,
            doc: "test results of the models retrained with the baselines (grouped by their `strategy`)",
        },
        InputSlot {
            name: "clusters",
            accepts: &[CLUSTERS],
            many: false,
            required: false,
            doc: "a cluster stage's output, for accuracy per cluster",
        },
        InputSlot {
            name: "assigned",
            accepts: &[SELECTION],
            many: false,
            required: false,
            doc: "images of another split assigned to the clusters (a select stage with mode \"all\"), for accuracy per cluster there",
        },
        InputSlot {
            name: "variance",
            accepts: &[VARIANCE_SUMMARY],
            many: false,
            required: false,
            doc: "a variance stage's summary, copied into this summary (RQ1)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec {
            name: "runs",
            kind: COMPARE_RUNS,
            path: "runs.csv",
            doc: "split,strategy,stage,score,fixed,broken",
        },
        OutputSpec {
            name: "strategies",
            kind: COMPARE_STRATEGIES,
            path: "strategies.csv",
            doc: "split,strategy,runs,mean,min,max,fixed,broken,lo,hi (lo-hi: 95% over runs and images)",
        },
        OutputSpec {
            name: "tests",
            kind: COMPARE_TESTS,
            path: "tests.csv",
            doc: "split,reference,baseline,u,p,a12,p_adjusted",
        },
        OutputSpec {
            name: "rcc",
            kind: COMPARE_RCC,
            path: "rcc.csv",
            doc: "split,strategy,cluster,images,before,after,runs,lo,hi (after: mean over runs; lo-hi: 95% over runs and images)",
        },
        OutputSpec {
            name: "summary",
            kind: COMPARE_SUMMARY,
            path: "summary.json",
            doc: "the headline figures of RQ2 (and RQ1 with `variance`)",
        },
        OutputSpec {
            name: "parquet",
            kind: PARQUET,
            path: "parquet/",
            doc: "runs, strategies, tests and rcc as Parquet",
        },
    ];
    const DOC: &'static str = "Compares retraining strategies over repeated runs (RQ2).";

    fn run(&self, p: &CompareParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let Tested { originals, by_split, keypoints } = tested(p, ctx)?;
        let members: BTreeMap<usize, Vec<String>> = match ctx.inputs("clusters").first() {
            Some(c) => Clusters::open(&c.path).groups()?,
            None => BTreeMap::new(),
        };
        let member_ids: Vec<String> = members.values().flatten().cloned().collect();
        let cluster_of = cluster_of(ctx, &members)?;
        let (mut runs_csv, mut lines, mut tests_csv, mut rcc_csv, mut protocols) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for original in &originals {
            let Some(groups) = by_split.get(&original.split) else { continue };
            if !groups.contains_key(&p.reference_name) {
                return Err(CompareError::NoReference { split: original.split.clone() }.into());
            }
            let seen = seen_by(original, groups, Some((&p.reference_name, &member_ids)));
            let mut ids: Vec<&String> = original.values.keys().collect();
            ids.sort();
            let (original_lo, original_hi) = interval(&[original], &ids);
            let (strategies, tests) =
                judge(original, groups, &p.reference_name, keypoints, p.correction, &mut runs_csv, &mut tests_csv);
            lines.extend(strategies.iter().map(|s| StrategyLine::of(&original.split, s)));
            rcc_csv.extend(per_cluster(original, groups, &cluster_of));
            protocols.push(Protocol {
                split: original.split.clone(),
                held_out: seen.is_empty(),
                label: label(&seen),
                seen,
                images: original.correct.len(),
                original: original.score,
                original_lo,
                original_hi,
                strategies,
                tests,
            });
        }
        // The judging split first: the first one no model saw.
        let Some(judge_at) = protocols.iter().position(|p| p.held_out) else {
            let seen: Vec<String> = protocols.iter().map(|p| format!("split `{}`: {}", p.split, p.label)).collect();
            return Err(CompareError::NoHeldOut { seen }.into());
        };
        let judging = protocols.remove(judge_at);
        protocols.insert(0, judging.clone());
        let parquet = ctx.output("parquet")?;
        table::write_with_parquet(&ctx.output("runs")?, &parquet, &runs_csv)?;
        table::write_with_parquet(&ctx.output("strategies")?, &parquet, &lines)?;
        table::write_with_parquet(&ctx.output("tests")?, &parquet, &tests_csv)?;
        table::write_with_parquet(&ctx.output("rcc")?, &parquet, &rcc_csv)?;
        let rq1 = match ctx.inputs("variance").first() {
            Some(a) => Some(table::read_json(&a.path)?),
            None => None,
        };
        let clusters = match ctx.inputs("clusters").first() {
            Some(c) => Clusters::open(&c.path)
                .rows()?
                .into_iter()
                .map(|r| ClusterStability {
                    cluster: r.cluster,
                    size: r.size,
                    stability: r.stability,
                    stable: r.stable,
                })
                .collect(),
            None => Vec::new(),
        };
        let summary = CompareSummary {
            metric: if keypoints { "mean keypoint error (px)".into() } else { "accuracy".into() },
            reference: p.reference_name.clone(),
            judged_on: judging.split.clone(),
            original: judging.original,
            strategies: judging.strategies,
            tests: judging.tests,
            protocols,
            rq1,
            clusters,
            correction: Some(p.correction),
        };
        Ok(table::write_json(&ctx.output("summary")?, &summary)?)
    }
}

/// The original model's test on every split (manifest order) and every retrained model's, by split and strategy.
struct Tested {
    originals: Vec<Outcome>,
    by_split: BTreeMap<String, Groups>,
    /// Whether the scores are keypoint errors (else accuracies).
    keypoints: bool,
}

/// Reads every test the comparison judges; refused when a split has two originals, a run is named like the
/// reference, or a run was tested on a split the original was not.
fn tested(p: &CompareParams, ctx: &StageContext<'_>) -> Result<Tested, StageError> {
    let mut originals: Vec<Outcome> = Vec::new();
    let mut keypoints = false;
    for a in ctx.inputs("original") {
        let (o, k) = read_results(a)?;
        keypoints |= k;
        if originals.iter().any(|x| x.split == o.split) {
            return Err(CompareError::TwoOriginals { split: o.split }.into());
        }
        originals.push(o);
    }
    let mut by_split: BTreeMap<String, Groups> = BTreeMap::new();
    let reference = ctx.inputs("reference").iter().map(|a| ("reference", a));
    for (slot, a) in reference.chain(ctx.inputs("runs").iter().map(|a| ("runs", a))) {
        let (outcome, _) = read_results(a)?;
        let name = if slot == "reference" { p.reference_name.clone() } else { strategy_of(a) };
        if slot == "runs" && name == p.reference_name {
            return Err(CompareError::NamedLikeReference { stage: a.stage.clone(), name }.into());
        }
        if !originals.iter().any(|o| o.split == outcome.split) {
            return Err(CompareError::NoOriginal { stage: a.stage.clone(), split: outcome.split }.into());
        }
        by_split.entry(outcome.split.clone()).or_default().entry(name).or_default().push((a.stage.clone(), outcome));
    }
    Ok(Tested { originals, by_split, keypoints })
}

/// Image → cluster, for the per-cluster tables: the clusters' members, and the images assigned on another split.
fn cluster_of(
    ctx: &StageContext<'_>,
    members: &BTreeMap<usize, Vec<String>>,
) -> Result<HashMap<String, usize>, StageError> {
    let mut cluster_of: HashMap<String, usize> =
        members.iter().flat_map(|(c, ids)| ids.iter().map(move |id| (id.clone(), *c))).collect();
    if let Some(a) = ctx.inputs("assigned").first() {
        let ds = Dataset::open(&a.path)?;
        for (id, c) in ds.ids()?.into_iter().zip(ds.numbers("rcc")?) {
            cluster_of.entry(id).or_insert(c as usize);
        }
    }
    Ok(cluster_of)
}

/// RQ2 on one split: each run's score, fixes and breakages against the original, each strategy's summary with its
/// interval over runs and images, and the reference against every baseline (Mann-Whitney U over the runs,
/// Vargha-Delaney Â12, the p-values adjusted over the split's comparisons).
fn judge(
    original: &Outcome,
    groups: &Groups,
    reference: &str,
    keypoints: bool,
    correction: stats::Correction,
    runs_csv: &mut Vec<RunRow>,
    tests_csv: &mut Vec<TestLine>,
) -> (Vec<StrategyRow>, Vec<TestRow>) {
    let split = &original.split;
    let mut ids: Vec<&String> = original.values.keys().collect();
    ids.sort();
    let mut strategies = Vec::new();
    for (name, runs) in groups {
        let (mut fixed, mut broken) = (Vec::new(), Vec::new());
        for (stage, o) in runs {
            let f = original.correct.iter().filter(|(id, c)| !**c && o.correct.get(*id) == Some(&true)).count();
            let b = original.correct.iter().filter(|(id, c)| **c && o.correct.get(*id) == Some(&false)).count();
            runs_csv.push(RunRow {
                split: split.clone(),
                strategy: name.clone(),
                stage: stage.clone(),
                score: o.score,
                fixed: f,
                broken: b,
            });
            fixed.push(f as f64);
            broken.push(b as f64);
        }
        let scores: Vec<f64> = runs.iter().map(|(_, o)| o.score).collect();
        let (mean, min, max) = stats::summary(&scores);
        let (lo, hi) = interval(&runs.iter().map(|(_, o)| o).collect::<Vec<_>>(), &ids);
        strategies.push(StrategyRow {
            lo,
            hi,
            strategy: name.clone(),
            runs: runs.len(),
            mean,
            min,
            max,
            fixed: stats::summary(&fixed).0,
            broken: stats::summary(&broken).0,
        });
    }
    // "Better" is a higher accuracy or a lower keypoint error: Â12 is computed on the signed score.
    let signed = |runs: &[(String, Outcome)]| -> Vec<f64> {
        runs.iter().map(|(_, o)| if keypoints { -o.score } else { o.score }).collect()
    };
    let ours = signed(&groups[reference]);
    let mut tests = Vec::new();
    for (name, runs) in groups.iter().filter(|(n, _)| *n != reference) {
        let other = signed(runs);
        let mw = stats::mann_whitney(&ours, &other);
        let a12 = stats::a12(&ours, &other);
        tests.push(TestRow { baseline: name.clone(), u: mw.u, p: mw.p, a12, p_adjusted: None });
    }
    let raw: Vec<f64> = tests.iter().map(|t| t.p).collect();
    for (t, adjusted) in tests.iter_mut().zip(stats::adjust(&raw, correction)) {
        t.p_adjusted = Some(adjusted);
        tests_csv.push(TestLine {
            split: split.clone(),
            reference: reference.to_string(),
            baseline: t.baseline.clone(),
            u: t.u,
            p: t.p,
            a12: t.a12,
            p_adjusted: t.p_adjusted,
        });
    }
    (strategies, tests)
}

/// Accuracy on each root-cause cluster's images of one split (its members on the clustered split, the images
/// assigned to it elsewhere), before (the original) and after retraining (the mean over a strategy's runs, with its
/// interval over runs and the cluster's images).
fn per_cluster(original: &Outcome, groups: &Groups, cluster_of: &HashMap<String, usize>) -> Vec<RccRow> {
    let mut clusters: BTreeMap<usize, Vec<&String>> = BTreeMap::new();
    for id in original.correct.keys() {
        if let Some(c) = cluster_of.get(id) {
            clusters.entry(*c).or_default().push(id);
        }
    }
    let mut rows = Vec::new();
    for ids in clusters.values_mut() {
        ids.sort();
    }
    for (name, runs) in groups {
        for (k, ids) in &clusters {
            let share = |o: &Outcome| {
                ids.iter().filter(|id| o.correct.get(**id) == Some(&true)).count() as f64 / ids.len() as f64
            };
            // Accuracy whatever the metric: an image is right or wrong (keypoints: within the threshold).
            let outcomes: Option<Vec<Vec<f64>>> = runs
                .iter()
                .map(|(_, o)| ids.iter().map(|id| o.correct.get(*id).map(|c| f64::from(u8::from(*c)))).collect())
                .collect();
            let interval = outcomes
                .and_then(|o| stats::two_level_interval(&o, stats::Images::Shared, LEVEL, REPLICATES, *k as u64));
            rows.push(RccRow {
                split: original.split.clone(),
                strategy: name.clone(),
                cluster: *k,
                images: ids.len(),
                before: share(original),
                after: runs.iter().map(|(_, o)| share(o)).sum::<f64>() / runs.len() as f64,
                runs: runs.len(),
                lo: interval.map(|i| i.0),
                hi: interval.map(|i| i.1),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{Outcome, interval};

    fn outcome(right: usize, n: usize) -> Outcome {
        let values: HashMap<String, f64> =
            (0..n).map(|i| (format!("{i:03}"), f64::from(u8::from(i < right)))).collect();
        let correct = values.iter().map(|(id, v)| (id.clone(), *v > 0.5)).collect();
        Outcome { split: "holdout".into(), correct, values, score: right as f64 / n as f64, seen: None }
    }

    /// Runs that agree exactly have no spread, so an interval over runs alone is a point; the split's 200 images
    /// still carry a sampling error that the interval must cover (about ±4 points at 90%, like a binomial interval).
    #[test]
    fn the_interval_of_runs_that_agree_still_covers_the_test_images_error() {
        let runs = [outcome(180, 200), outcome(180, 200), outcome(180, 200)];
        let mut ids: Vec<&String> = runs[0].values.keys().collect();
        ids.sort();
        let (lo, hi) = interval(&runs.iter().collect::<Vec<_>>(), &ids);
        let (lo, hi) = (lo.unwrap(), hi.unwrap());
        assert!((0.84..0.88).contains(&lo) && (0.92..0.96).contains(&hi), "{lo} {hi}");
        let scores: Vec<f64> = runs.iter().map(|o| o.score).collect();
        assert_eq!(crate::stats::t_interval(&scores, 0.95), Some((0.9, 0.9)));
    }
}
