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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    /// The name of the `reference` runs' strategy in the outputs.
    #[serde(default = "default_reference")]
    pub reference_name: String,
}

fn default_reference() -> String {
    "hudd".into()
}

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
    score: f64,
    seen: Option<SeenAs>,
}

fn read_results(a: &InputArtefact) -> Result<(Outcome, bool), StageError> {
    let results = TestResults::read(&a.path)?;
    let split = match results.splits.as_slice() {
        [one] => one.clone(),
        // Tables written before the split column: one unnamed split.
        [] => String::new(),
        many => {
            return Err(StageError::input(format!(
                "{} (from `{}`) mixes the splits {}: test each split in its own stage",
                a.path.display(),
                a.stage,
                many.join(", ")
            )));
        }
    };
    let correct = results.correct();
    let keypoints = results.errors.is_some();
    let score = match &results.errors {
        Some(errors) => errors.iter().sum::<f64>() / errors.len().max(1) as f64,
        None => correct.values().filter(|c| **c).count() as f64 / correct.len().max(1) as f64,
    };
    Ok((Outcome { split, correct, score, seen: results.seen }, keypoints))
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
    const VERSION: u32 = 4;
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
            doc: "split,strategy,runs,mean,min,max,fixed,broken",
        },
        OutputSpec { name: "tests", kind: COMPARE_TESTS, path: "tests.csv", doc: "split,reference,baseline,u,p,a12" },
        OutputSpec {
            name: "rcc",
            kind: COMPARE_RCC,
            path: "rcc.csv",
            doc: "split,strategy,cluster,images,before,after (mean over runs)",
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
        // The original model on every split, in manifest order.
        let mut originals: Vec<Outcome> = Vec::new();
        let mut keypoints = false;
        for a in ctx.inputs("original") {
            let (o, k) = read_results(a)?;
            keypoints |= k;
            if originals.iter().any(|x| x.split == o.split) {
                return Err(StageError::input(format!(
                    "`original` holds two tests of the original model on split `{}`",
                    o.split
                )));
            }
            originals.push(o);
        }
        // Every retrained model's test, by split and strategy.
        let mut by_split: BTreeMap<String, Groups> = BTreeMap::new();
        for (slot, a) in ctx
            .inputs("reference")
            .iter()
            .map(|a| ("reference", a))
            .chain(ctx.inputs("runs").iter().map(|a| ("runs", a)))
        {
            let (outcome, _) = read_results(a)?;
            let name = if slot == "reference" { p.reference_name.clone() } else { strategy_of(a) };
            if slot == "runs" && name == p.reference_name {
                return Err(StageError::input(format!(
                    "baseline runs from `{}` are named `{name}`, like the reference: rename the reference (`reference_name`)",
                    a.stage
                )));
            }
            if !originals.iter().any(|o| o.split == outcome.split) {
                return Err(StageError::input(format!(
                    "`{}` tested on split `{}`, where `original` has no test of the original model: add one",
                    a.stage, outcome.split
                )));
            }
            by_split
                .entry(outcome.split.clone())
                .or_default()
                .entry(name)
                .or_default()
                .push((a.stage.clone(), outcome));
        }
        let members: BTreeMap<usize, Vec<String>> = match ctx.inputs("clusters").first() {
            Some(c) => Clusters::open(&c.path).groups()?,
            None => BTreeMap::new(),
        };
        let member_ids: Vec<String> = members.values().flatten().cloned().collect();
        // Image → cluster, for the per-cluster tables: the members, and the images assigned on another split.
        let mut cluster_of: HashMap<String, usize> =
            members.iter().flat_map(|(c, ids)| ids.iter().map(move |id| (id.clone(), *c))).collect();
        if let Some(a) = ctx.inputs("assigned").first() {
            let ds = Dataset::open(&a.path)?;
            for (id, c) in ds.ids()?.into_iter().zip(ds.numbers("rcc")?) {
                cluster_of.entry(id).or_insert(c as usize);
            }
        }
        let (mut runs_csv, mut lines, mut tests_csv, mut rcc_csv, mut protocols) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for original in &originals {
            let Some(groups) = by_split.get(&original.split) else { continue };
            if !groups.contains_key(&p.reference_name) {
                return Err(StageError::input(format!(
                    "no `reference` run was tested on split `{}`, where the baselines were",
                    original.split
                )));
            }
            let seen = seen_by(original, groups, Some((&p.reference_name, &member_ids)));
            let (strategies, tests) =
                judge(original, groups, &p.reference_name, keypoints, &mut runs_csv, &mut tests_csv);
            lines.extend(strategies.iter().map(|s| StrategyLine::of(&original.split, s)));
            rcc_csv.extend(per_cluster(original, groups, &cluster_of));
            protocols.push(Protocol {
                split: original.split.clone(),
                held_out: seen.is_empty(),
                label: label(&seen),
                seen,
                images: original.correct.len(),
                original: original.score,
                strategies,
                tests,
            });
        }
        // The judging split first: the first one no model saw.
        let Some(judge_at) = protocols.iter().position(|p| p.held_out) else {
            let seen: Vec<String> = protocols.iter().map(|p| format!("split `{}`: {}", p.split, p.label)).collect();
            return Err(StageError::input(format!(
                "no split judges the retraining fairly: {}. Test the original and every retrained model on a split \
                 that chose nothing (a `holdout` split drawn like the test split, never read by heatmaps, cluster, \
                 select, balance or epoch selection); the split whose failures were clustered can stay beside it as \
                 the paper's protocol",
                seen.join("; ")
            )));
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
        };
        Ok(table::write_json(&ctx.output("summary")?, &summary)?)
    }
}

/// RQ2 on one split: each run's score, fixes and breakages against the original, each strategy's summary, and the
/// reference against every baseline (Mann-Whitney U, Vargha-Delaney Â12).
fn judge(
    original: &Outcome,
    groups: &Groups,
    reference: &str,
    keypoints: bool,
    runs_csv: &mut Vec<RunRow>,
    tests_csv: &mut Vec<TestLine>,
) -> (Vec<StrategyRow>, Vec<TestRow>) {
    let split = &original.split;
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
        strategies.push(StrategyRow {
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
        tests_csv.push(TestLine {
            split: split.clone(),
            reference: reference.to_string(),
            baseline: name.clone(),
            u: mw.u,
            p: mw.p,
            a12,
        });
        tests.push(TestRow { baseline: name.clone(), u: mw.u, p: mw.p, a12 });
    }
    (strategies, tests)
}

/// Accuracy on each root-cause cluster's images of one split (its members on the clustered split, the images
/// assigned to it elsewhere), before (the original) and after retraining (the mean over a strategy's runs).
fn per_cluster(original: &Outcome, groups: &Groups, cluster_of: &HashMap<String, usize>) -> Vec<RccRow> {
    let mut clusters: BTreeMap<usize, Vec<&String>> = BTreeMap::new();
    for id in original.correct.keys() {
        if let Some(c) = cluster_of.get(id) {
            clusters.entry(*c).or_default().push(id);
        }
    }
    let mut rows = Vec::new();
    for (name, runs) in groups {
        for (k, ids) in &clusters {
            let share = |o: &Outcome| {
                ids.iter().filter(|id| o.correct.get(**id) == Some(&true)).count() as f64 / ids.len() as f64
            };
            rows.push(RccRow {
                split: original.split.clone(),
                strategy: name.clone(),
                cluster: *k,
                images: ids.len(),
                before: share(original),
                after: runs.iter().map(|(_, o)| share(o)).sum::<f64>() / runs.len() as f64,
            });
        }
    }
    rows
}
