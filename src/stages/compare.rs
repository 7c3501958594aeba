//! Stage `compare` (RQ2: does HUDD's retraining beat the baselines?): the test results of every retrained model,
//! grouped by selection strategy, against the original model's, with Mann-Whitney U and Vargha-Delaney Â12.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stage::{InputArtefact, InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
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
    let path = &a.path;
    let text = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(image), Some(result)) = (col("image"), col("result")) else {
        return Err(StageError::input(format!(
            "{}: not a test stage's results (no image and result columns)",
            path.display()
        )));
    };
    let error = col("avg_error");
    let (mut correct, mut errors) = (HashMap::new(), Vec::new());
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        correct.insert(f[image].to_string(), f[result] == "Correct");
        if let Some(e) = error {
            errors.push(f[e].parse::<f64>().unwrap_or(f64::NAN));
        }
    }
    let keypoints = error.is_some();
    let score = if keypoints {
        errors.iter().sum::<f64>() / errors.len().max(1) as f64
    } else {
        correct.values().filter(|c| **c).count() as f64 / correct.len().max(1) as f64
    };
    Ok((Outcome { correct, score }, keypoints))
}

/// A run's strategy: its `strategy` matrix value, else the id of the stage that tested it.
fn strategy_of(a: &InputArtefact) -> String {
    a.matrix.get("strategy").cloned().unwrap_or_else(|| a.stage.split('[').next().unwrap_or(&a.stage).to_string())
}

/// `summary.json`: the headline figures of RQ2.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompareSummary {
    /// `accuracy` or `mean keypoint error (px)`; for the latter lower is better.
    pub metric: String,
    pub original: f64,
    pub reference: String,
    pub strategies: Vec<StrategyRow>,
    pub tests: Vec<TestRow>,
    /// RQ1's headline figures, when a `variance` summary is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rq1: Option<crate::stages::variance::VarianceSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StrategyRow {
    pub strategy: String,
    pub runs: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub fixed: f64,
    pub broken: f64,
}

/// The reference strategy against one other: `a12` is the probability that a reference run scores better.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestRow {
    pub baseline: String,
    pub u: f64,
    pub p: f64,
    pub a12: f64,
}

impl Stage for Compare {
    type Params = CompareParams;
    const KIND: &'static str = "compare";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "original", many: false, required: true, doc: "the original model's test results" },
        InputSlot {
            name: "reference",
            many: true,
            required: true,
            doc: "test results of the models retrained with HUDD's selection",
        },
        InputSlot {
            name: "runs",
            many: true,
            required: true,
            doc: "test results of the models retrained with the baselines (grouped by their `strategy`)",
        },
        InputSlot {
            name: "clusters",
            many: false,
            required: false,
            doc: "a cluster stage's output, for accuracy per cluster",
        },
        InputSlot {
            name: "variance",
            many: false,
            required: false,
            doc: "a variance stage's summary, copied into this summary (RQ1)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "runs", path: "runs.csv", doc: "strategy,stage,score,fixed,broken" },
        OutputSpec { name: "strategies", path: "strategies.csv", doc: "strategy,runs,mean,min,max,fixed,broken" },
        OutputSpec { name: "tests", path: "tests.csv", doc: "reference,baseline,u,p,a12" },
        OutputSpec { name: "rcc", path: "rcc.csv", doc: "strategy,cluster,images,before,after (mean over runs)" },
        OutputSpec {
            name: "summary",
            path: "summary.json",
            doc: "the headline figures of RQ2 (and RQ1 with `variance`)",
        },
        OutputSpec { name: "parquet", path: "parquet/", doc: "runs, strategies, tests and rcc as Parquet" },
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
        let mut runs_csv = String::from("strategy,stage,score,fixed,broken\n");
        let mut strategies = Vec::new();
        for (name, runs) in &groups {
            let (mut fixed, mut broken) = (Vec::new(), Vec::new());
            for (stage, o) in runs {
                let f = original.correct.iter().filter(|(id, c)| !**c && o.correct.get(*id) == Some(&true)).count();
                let b = original.correct.iter().filter(|(id, c)| **c && o.correct.get(*id) == Some(&false)).count();
                let _ = writeln!(runs_csv, "{name},\"{stage}\",{},{f},{b}", o.score);
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
        let mut tests_csv = String::from("reference,baseline,u,p,a12\n");
        for (name, runs) in groups.iter().filter(|(n, _)| **n != p.reference_name) {
            let other = signed(runs);
            let mw = stats::mann_whitney(&reference, &other);
            let a12 = stats::a12(&reference, &other);
            let _ = writeln!(tests_csv, "{},{name},{},{},{a12}", p.reference_name, mw.u, mw.p);
            tests.push(TestRow { baseline: name.clone(), u: mw.u, p: mw.p, a12 });
        }
        // Accuracy on each root-cause cluster's images (the original's failures), before (0) and after retraining.
        let mut rcc_csv = String::from("strategy,cluster,images,before,after\n");
        if let Some(c) = ctx.inputs("clusters").first() {
            let path = c.path.join("clusters.csv");
            let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
            let mut members: BTreeMap<usize, Vec<String>> = BTreeMap::new();
            for line in text.lines().skip(1) {
                let mut f = line.split(',');
                if let (Some(id), Some(Ok(k))) = (f.next(), f.next().map(str::parse::<usize>)) {
                    members.entry(k).or_default().push(id.to_string());
                }
            }
            for (name, runs) in &groups {
                for (k, ids) in &members {
                    let share = |o: &Outcome| {
                        ids.iter().filter(|id| o.correct.get(*id) == Some(&true)).count() as f64 / ids.len() as f64
                    };
                    let after = runs.iter().map(|(_, o)| share(o)).sum::<f64>() / runs.len() as f64;
                    let _ = writeln!(rcc_csv, "{name},{k},{},{},{after}", ids.len(), share(&original));
                }
            }
        }
        for (output, text) in
            [("runs", runs_csv), ("strategies", strategies_csv(&strategies)), ("tests", tests_csv), ("rcc", rcc_csv)]
        {
            write_table(ctx, output, &text)?;
        }
        let rq1 = match ctx.inputs("variance").first() {
            Some(a) => Some(crate::stages::select::read_json(&a.path)?),
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
        let path = ctx.output("summary")?;
        std::fs::write(&path, serde_json::to_vec_pretty(&summary).expect("serialisable"))
            .map_err(|e| StageError::io(&path, e))
    }
}

/// Writes a CSV output and its Parquet copy under the stage's `parquet` output.
pub(crate) fn write_table(ctx: &StageContext<'_>, output: &str, csv: &str) -> Result<(), StageError> {
    let path = ctx.output(output)?;
    std::fs::write(&path, csv).map_err(|e| StageError::io(&path, e))?;
    let file = ctx.output("parquet")?.join(path.with_extension("parquet").file_name().expect("a file name"));
    crate::dataset::csv_to_parquet(&path, &file).map_err(|e| StageError::failed(e.to_string()))
}

fn strategies_csv(rows: &[StrategyRow]) -> String {
    let mut out = String::from("strategy,runs,mean,min,max,fixed,broken\n");
    for r in rows {
        let _ = writeln!(out, "{},{},{},{},{},{},{}", r.strategy, r.runs, r.mean, r.min, r.max, r.fixed, r.broken);
    }
    out
}
