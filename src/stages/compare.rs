//! Stage `compare` (RQ2: does HUDD's retraining beat the baselines?): the test results of every retrained model,
//! grouped by selection strategy, against the original model's, with Mann-Whitney U and Vargha-Delaney Â12.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::artefact::clusters::Clusters;
use crate::artefact::evaluation::{CompareSummary, RccRow, RunRow, StrategyLine, StrategyRow, TestLine, TestRow};
use crate::artefact::results::TestResults;
use crate::artefact::table;
use crate::artefact::{
    CLUSTERS, COMPARE_RCC, COMPARE_RUNS, COMPARE_STRATEGIES, COMPARE_SUMMARY, COMPARE_TESTS, PARQUET, TEST_RESULTS,
    VARIANCE_SUMMARY,
};
use crate::engine::stage::{InputArtefact, InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
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

/// One test of a model: every image's outcome, and the score (accuracy, or mean keypoint error in pixels).
struct Outcome {
    correct: HashMap<String, bool>,
    score: f64,
}

fn read_results(a: &InputArtefact) -> Result<(Outcome, bool), StageError> {
    let results = TestResults::read(&a.path)?;
    let correct = results.correct();
    let keypoints = results.errors.is_some();
    let score = match &results.errors {
        Some(errors) => errors.iter().sum::<f64>() / errors.len().max(1) as f64,
        None => correct.values().filter(|c| **c).count() as f64 / correct.len().max(1) as f64,
    };
    Ok((Outcome { correct, score }, keypoints))
}

/// A run's strategy: its `strategy` matrix value, else the id of the stage that tested it.
fn strategy_of(a: &InputArtefact) -> String {
    a.matrix.get("strategy").cloned().unwrap_or_else(|| a.stage.split('[').next().unwrap_or(&a.stage).to_string())
}

impl Stage for Compare {
    type Params = CompareParams;
    const KIND: &'static str = "compare";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "original",
            accepts: &[TEST_RESULTS],
            many: false,
            required: true,
            doc: "the original model's test results",
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
            name: "variance",
            accepts: &[VARIANCE_SUMMARY],
            many: false,
            required: false,
            doc: "a variance stage's summary, copied into this summary (RQ1)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "runs", kind: COMPARE_RUNS, path: "runs.csv", doc: "strategy,stage,score,fixed,broken" },
        OutputSpec {
            name: "strategies",
            kind: COMPARE_STRATEGIES,
            path: "strategies.csv",
            doc: "strategy,runs,mean,min,max,fixed,broken",
        },
        OutputSpec { name: "tests", kind: COMPARE_TESTS, path: "tests.csv", doc: "reference,baseline,u,p,a12" },
        OutputSpec {
            name: "rcc",
            kind: COMPARE_RCC,
            path: "rcc.csv",
            doc: "strategy,cluster,images,before,after (mean over runs)",
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
        let (original, keypoints) = read_results(ctx.input("original")?)?;
        let mut groups: BTreeMap<String, Vec<(String, Outcome)>> = BTreeMap::new();
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
            groups.entry(name).or_default().push((a.stage.clone(), outcome));
        }
        let mut runs_csv = Vec::new();
        let mut strategies = Vec::new();
        for (name, runs) in &groups {
            let (mut fixed, mut broken) = (Vec::new(), Vec::new());
            for (stage, o) in runs {
                let f = original.correct.iter().filter(|(id, c)| !**c && o.correct.get(*id) == Some(&true)).count();
                let b = original.correct.iter().filter(|(id, c)| **c && o.correct.get(*id) == Some(&false)).count();
                runs_csv.push(RunRow {
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
        let reference = signed(&groups[&p.reference_name]);
        let mut tests = Vec::new();
        let mut tests_csv = Vec::new();
        for (name, runs) in groups.iter().filter(|(n, _)| **n != p.reference_name) {
            let other = signed(runs);
            let mw = stats::mann_whitney(&reference, &other);
            let a12 = stats::a12(&reference, &other);
            tests_csv.push(TestLine {
                reference: p.reference_name.clone(),
                baseline: name.clone(),
                u: mw.u,
                p: mw.p,
                a12,
            });
            tests.push(TestRow { baseline: name.clone(), u: mw.u, p: mw.p, a12 });
        }
        // Accuracy on each root-cause cluster's images (the original's failures), before (0) and after retraining.
        let mut rcc_csv = Vec::new();
        if let Some(c) = ctx.inputs("clusters").first() {
            let members = Clusters::open(&c.path).groups()?;
            for (name, runs) in &groups {
                for (k, ids) in &members {
                    let share = |o: &Outcome| {
                        ids.iter().filter(|id| o.correct.get(*id) == Some(&true)).count() as f64 / ids.len() as f64
                    };
                    let after = runs.iter().map(|(_, o)| share(o)).sum::<f64>() / runs.len() as f64;
                    rcc_csv.push(RccRow {
                        strategy: name.clone(),
                        cluster: *k,
                        images: ids.len(),
                        before: share(&original),
                        after,
                    });
                }
            }
        }
        let parquet = ctx.output("parquet")?;
        table::write_with_parquet(&ctx.output("runs")?, &parquet, &runs_csv)?;
        let lines: Vec<StrategyLine> = strategies.iter().map(StrategyLine::from).collect();
        table::write_with_parquet(&ctx.output("strategies")?, &parquet, &lines)?;
        table::write_with_parquet(&ctx.output("tests")?, &parquet, &tests_csv)?;
        table::write_with_parquet(&ctx.output("rcc")?, &parquet, &rcc_csv)?;
        let rq1 = match ctx.inputs("variance").first() {
            Some(a) => Some(table::read_json(&a.path)?),
            None => None,
        };
        let summary = CompareSummary {
            metric: if keypoints { "mean keypoint error (px)".into() } else { "accuracy".into() },
            original: original.score,
            reference: p.reference_name.clone(),
            strategies,
            tests,
            rq1,
        };
        Ok(table::write_json(&ctx.output("summary")?, &summary)?)
    }
}
