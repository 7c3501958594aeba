//! Stage `confirm`: every rule of a `rules` stage tested as a claim inside the operational domain. Fresh parameter
//! vectors are drawn from the split's declared distribution (on a stream no other stage draws from) and sorted by
//! the rule's region until each side has its images: the inside images are then a sample of the operational
//! distribution restricted to the region, the outside images of the rest, and the share of draws inside estimates
//! the region's share of the domain. The images are rendered, labelled by the simulator and given to the model: a
//! rule is a confirmed triggering condition when the failure rate inside is above the rate outside beyond doubt (the
//! lower bound of one exact binomial interval above the upper bound of the other).

use serde::{Deserialize, Serialize};

use crate::artefact::rules::{ConfirmRow, Confirmation, Confirmations, Coverage, Rate, Rules};
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CONFIRM_TABLE, CONFIRMATIONS, DATASET, MODEL, RULES};
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
        InputSlot { name: "model", accepts: &[MODEL], many: false, required: true, doc: "the model to test" },
        InputSlot {
            name: "dataset",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the simulated dataset whose split's declared distribution is the operational domain",
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
            doc: "the rendered images (splits inside-<cluster>, outside-<cluster>)",
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
        let sim = trigger::renderer_of(&ds, "confirm")?;
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
            let (inside, outside) = (rate("inside")?, rate("outside")?);
            let confirmed = !conditions.is_empty() && inside.images > 0 && outside.images > 0 && inside.lo > outside.hi;
            confirmations.push(Confirmation {
                cluster: rule.cluster,
                rule: rule.text.clone(),
                conditions,
                recall: coverage.recall(&inside, &outside),
                coverage,
                inside,
                outside,
                confirmed,
            });
        }
        let record = Confirmations {
            learned_on: rules.split.clone(),
            domain: split,
            images: p.images,
            alpha: p.alpha,
            rules: confirmations,
        };
        let rows: Vec<ConfirmRow> = record.rules.iter().map(ConfirmRow::from).collect();
        table::write(&ctx.output("table")?, &rows)?;
        ctx.progress.message(&format!(
            "{} of {} rules confirmed",
            record.rules.iter().filter(|c| c.confirmed).count(),
            record.rules.len()
        ));
        Ok(table::write_json(&ctx.output("confirmations")?, &record)?)
    }
}
