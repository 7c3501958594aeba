//! Stage `confirm`: every rule of a `rules` stage tested as a claim inside the operational domain. Fresh parameter
//! vectors are drawn from the split's declared distribution (on a stream no other stage draws from) and sorted by
//! the rule's region until each side has its images: the inside images are then a sample of the operational
//! distribution restricted to the region, the outside images of the rest, and the share of draws inside estimates
//! the region's share of the domain. The images are rendered, labelled by the simulator and given to the model: a
//! rule is a confirmed triggering condition when the failure rate inside is above the rate outside beyond doubt (the
//! lower bound of one exact binomial interval above the upper bound of the other).
//!
//! Without a simulator (real images, whose parameters are pixel descriptors) nothing can be rendered: given a test
//! stage's `results` on a split that chose nothing (held out), the rates inside and outside each rule are measured on
//! those images instead, the region's share of the domain being the share of them inside it. The same criterion
//! confirms a rule; the rules' own split, or images the model trained on or that chose its data, are refused.

use serde::{Deserialize, Serialize};

use crate::artefact::results::TestResults;
use crate::artefact::rules::{ConfirmRow, Confirmation, Confirmations, Coverage, Rate, Rules};
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CONFIRM_TABLE, CONFIRMATIONS, DATASET, MODEL, RULES, TEST_RESULTS};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::Model;
use crate::model::predict::{DEFAULT_THRESHOLD, predict};
use crate::runtime::{self, DeviceChoice};
use crate::sim;
use crate::trigger::{self, Purpose};

pub struct Confirm;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmParams {
    /// Images rendered on each side of every rule.
    #[serde(default = "default_images")]
    pub images: usize,
    /// The split whose declared distribution is the operational domain (default: the split the rules were learned
    /// on).
    #[serde(default)]
    pub split: Option<String>,
    /// At most this many parameter vectors drawn per rule while looking for images inside it (a rule covering less
    /// than `images / draws` of the domain gets fewer inside images, and says so).
    #[serde(default = "default_draws")]
    pub draws: usize,
    /// One minus the confidence level of the intervals.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Keypoint models: an image fails when its mean keypoint error exceeds this many pixels (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub device: DeviceChoice,
    /// libtorch threads for this stage (default: the run's share of the cores); not part of its key.
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_images() -> usize {
    200
}
fn default_draws() -> usize {
    1_000_000
}
fn default_alpha() -> f64 {
    0.05
}
fn default_batch() -> usize {
    256
}

impl Params for ConfirmParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.images < 10 {
            out.push(Invalid::new("images", format!("must be at least 10 per side, got {}", self.images)));
        }
        if self.draws < self.images {
            out.push(Invalid::new("draws", format!("must be at least `images` ({}), got {}", self.images, self.draws)));
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            out.push(Invalid::new("alpha", format!("must be in (0, 0.5), got {}", self.alpha)));
        }
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
        }
        out
    }
}

impl Stage for Confirm {
    type Params = ConfirmParams;
    const KIND: &'static str = "confirm";
    const VERSION: u32 = 2;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "rules", accepts: &[RULES], many: false, required: true, doc: "a rules stage's rules" },
        InputSlot {
            name: "model",
            accepts: &[MODEL],
            many: false,
            required: false,
            doc: "the model to test on the rendered images (not needed with `results`)",
        },
        InputSlot {
            name: "dataset",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the simulated dataset whose split's declared distribution is the operational domain",
        },
        InputSlot {
            name: "results",
            accepts: &[TEST_RESULTS],
            many: false,
            required: false,
            doc: "a test stage's results on a held-out split: the rates are measured on its images (real images)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec {
            name: "confirmations",
            kind: CONFIRMATIONS,
            path: "confirm.json",
            doc: "per rule: failure rates inside and outside with intervals, confirmed or not",
        },
        OutputSpec { name: "table", kind: CONFIRM_TABLE, path: "confirm.csv", doc: "the same as a table" },
        OutputSpec {
            name: "images",
            kind: DATASET,
            path: "images/",
            doc: "the rendered images (splits inside-<cluster>, outside-<cluster>), or the held-out images measured",
        },
    ];
    const USES_SEED: bool = true;
    // Backed by tests/it/engine.rs (the quickstart shrunk, run at 1 and 2 threads): inference and simulation give
    // the same bytes at any thread count.
    const SETTINGS: &'static [&'static str] = &["threads"];
    const DOC: &'static str = "Tests each rule on new images rendered inside and outside its region.";

    /// The device kind this resolves to enters the key: a GPU computes other bytes.
    fn fingerprints(p: &ConfirmParams) -> Vec<(String, String)> {
        vec![crate::runtime::device_fingerprint(p.device)]
    }

    fn torch_threads(p: &ConfirmParams, run: usize) -> usize {
        p.threads.unwrap_or(run)
    }

    fn run(&self, p: &ConfirmParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let rules: Rules = table::read_json(&ctx.input("rules")?.path)?;
        let ds = Dataset::open(&ctx.input("dataset")?.path)?;
        if let Some(results) = ctx.inputs("results").first() {
            let results = TestResults::read(&results.path)?;
            let record = held_out(&rules, &ds, &results, p.alpha, &ctx.output("images")?)?;
            return finish(&record, ctx);
        }
        let sim = trigger::renderer_of(&ds, "confirm")?;
        if ctx.inputs("model").is_empty() {
            return Err(StageError::input(format!(
                "stage `{}` renders images for a model to be tested on: connect `model` (or, for real images, \
                 `results`: a test stage's results on a held-out split)",
                ctx.stage_id
            )));
        }
        let split = p.split.clone().unwrap_or_else(|| rules.split.clone());
        let domain = ds.domain(&split)?;
        let dir = ctx.output("images")?;
        let mut writer = trigger::image_writer(&dir, &ds, sim, "confirm", Vec::new())?;
        let size = ds.meta.width as u32;
        let render_seed = Purpose::Confirm.seed(ctx.seed);
        let mut coverage = Vec::new();
        ctx.progress.start((rules.rules.len() * 2 * p.images) as u64, "images rendered");
        for (r, rule) in rules.rules.iter().enumerate() {
            let conditions: Vec<trigger::Condition> = rule.conditions.iter().map(|c| c.condition.clone()).collect();
            if conditions.is_empty() {
                coverage.push(Coverage::of(0, 0));
                continue;
            }
            let mut rng = Purpose::Confirm.rng(ctx.seed, rule.cluster);
            let drawn = domain.split(p.images, p.draws, &mut rng, |v| trigger::inside(&conditions, sim, v));
            coverage.push(Coverage::of(drawn.hits, drawn.drawn));
            for (side, vectors) in [("inside", drawn.inside), ("outside", drawn.outside)] {
                let stream = 2 * r as u64 + u64::from(side == "outside");
                for (i, v) in vectors.into_iter().enumerate() {
                    let sample = sim.render(&rules.task, &v, size, &mut sim::image_rng(render_seed, stream, i as u64));
                    let id = format!("{side}-{}-{i:05}", rule.cluster);
                    writer.push(id, &format!("{side}-{}", rule.cluster), &sample.rgb, sample.label, v)?;
                    ctx.progress.inc(1);
                }
            }
        }
        writer.finish()?;
        let images = Dataset::open(&dir)?;
        let model = Model::load(&ctx.input("model")?.path, device)?;
        let threshold = p.threshold.unwrap_or(DEFAULT_THRESHOLD);
        let mut confirmations = Vec::new();
        for (rule, coverage) in rules.rules.iter().zip(coverage) {
            let conditions: Vec<trigger::Condition> = rule.conditions.iter().map(|c| c.condition.clone()).collect();
            let rate = |side: &str| -> Result<Rate, StageError> {
                let name = format!("{side}-{}", rule.cluster);
                let rows = if images.meta.splits.iter().any(|(s, _)| *s == name) {
                    images.split_rows(&name)?
                } else {
                    Vec::new()
                };
                let predictions = predict(&model, &images, &rows, p.batch_size, threshold, ctx.progress)?;
                Ok(Rate::of(predictions.iter().filter(|pr| !pr.correct()).count(), rows.len(), p.alpha))
            };
            confirmations.push(judge(rule, conditions, coverage, rate("inside")?, rate("outside")?));
        }
        let record = Confirmations {
            learned_on: rules.split.clone(),
            domain: split,
            images: p.images,
            alpha: p.alpha,
            rules: confirmations,
            held_out: false,
        };
        finish(&record, ctx)
    }
}

/// A rule's test: confirmed when it has conditions, images on both sides, and the inside failure rate's lower bound
/// above the outside rate's upper bound.
fn judge(
    rule: &crate::artefact::rules::RuleRecord,
    conditions: Vec<trigger::Condition>,
    coverage: Coverage,
    inside: Rate,
    outside: Rate,
) -> Confirmation {
    let confirmed = !conditions.is_empty() && inside.images > 0 && outside.images > 0 && inside.lo > outside.hi;
    Confirmation {
        cluster: rule.cluster,
        rule: rule.text.clone(),
        conditions,
        recall: coverage.recall(&inside, &outside),
        coverage,
        inside,
        outside,
        confirmed,
    }
}

/// Writes the confirmations and their table.
fn finish(record: &Confirmations, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
    let rows: Vec<ConfirmRow> = record.rules.iter().map(ConfirmRow::from).collect();
    table::write(&ctx.output("table")?, &rows)?;
    ctx.progress.message(&format!(
        "{} of {} rules confirmed",
        record.rules.iter().filter(|c| c.confirmed).count(),
        record.rules.len()
    ));
    Ok(table::write_json(&ctx.output("confirmations")?, record)?)
}

/// Why held-out images cannot confirm these rules.
#[derive(Debug, thiserror::Error)]
pub enum HeldOutError {
    #[error(
        "{}: its images are of split `{split}`, which the rules were learned on: connect a test stage's results on \
         a split that chose nothing (e.g. `holdout`)",
        path.display()
    )]
    LearnedOn { path: std::path::PathBuf, split: String },
    #[error("{}: the model {} these images: connect results on images that chose nothing", path.display(), how.name())]
    Seen { path: std::path::PathBuf, how: crate::model::artefact::SeenAs },
    #[error("{}: image `{id}` is not in the dataset {}", path.display(), dataset.display())]
    NotInDataset { path: std::path::PathBuf, id: String, dataset: std::path::PathBuf },
}

impl From<HeldOutError> for StageError {
    fn from(e: HeldOutError) -> Self {
        StageError::artefact(e)
    }
}

/// Every rule measured on held-out images: each image inside the rule's region or outside it, by the values the
/// dataset records for it; failures on each side with exact intervals; the region's share of the domain the share
/// of the images inside. The images measured are written to `dir`.
fn held_out(
    rules: &Rules,
    ds: &Dataset,
    results: &TestResults,
    alpha: f64,
    dir: &std::path::Path,
) -> Result<Confirmations, StageError> {
    let path = results.path.clone();
    if let Some(split) = results.splits.iter().find(|s| **s == rules.split) {
        return Err(HeldOutError::LearnedOn { path, split: split.clone() }.into());
    }
    if let Some(how) = results.seen {
        return Err(HeldOutError::Seen { path, how }.into());
    }
    let ids = ds.ids()?;
    let row_of: std::collections::BTreeMap<&str, usize> =
        ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let rows: Vec<usize> = (results.images.iter())
        .map(|(id, _)| {
            row_of.get(id.as_str()).copied().ok_or_else(|| HeldOutError::NotInDataset {
                path: path.clone(),
                id: id.clone(),
                dataset: ds.dir.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    let features = trigger::features(ds, None)?;
    let value = |name: &str, row: usize| {
        features.iter().find(|(info, _)| info.name == name).map(|(_, feature)| match feature {
            trigger::Feature::Numeric { values, .. } => trigger::Value::Number(values[row]),
            trigger::Feature::Categorical { values, .. } => trigger::Value::Category(&values[row]),
        })
    };
    let mut confirmations = Vec::new();
    for rule in &rules.rules {
        let conditions: Vec<trigger::Condition> = rule.conditions.iter().map(|c| c.condition.clone()).collect();
        let (mut inside, mut outside) = ((0, 0), (0, 0));
        for (&row, (_, correct)) in rows.iter().zip(&results.images) {
            let holds = !conditions.is_empty()
                && conditions.iter().all(|c| value(c.parameter(), row).is_some_and(|v| c.holds(v)));
            let side = if holds { &mut inside } else { &mut outside };
            side.0 += usize::from(!correct);
            side.1 += 1;
        }
        let coverage = Coverage::of(inside.1, rows.len());
        let (inside, outside) = (Rate::of(inside.0, inside.1, alpha), Rate::of(outside.0, outside.1, alpha));
        confirmations.push(judge(rule, conditions, coverage, inside, outside));
    }
    ds.write_subset(&rows, dir)?;
    Ok(Confirmations {
        learned_on: rules.split.clone(),
        domain: results.splits.join(", "),
        images: rows.len(),
        alpha,
        rules: confirmations,
        held_out: true,
    })
}
