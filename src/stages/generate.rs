//! Stage `generate` (the fourth retraining strategy, after SEDE): new images rendered inside the regions of the
//! confirmed triggering conditions, as many per condition, labelled by the simulator. Their parameters are drawn
//! from the split's declared distribution restricted to each region (by rejection, on a stream no other stage
//! draws from), so that the model is retrained on images of its operational domain. They need no person to label
//! them, but they count against the same budget as HUDD's selection, so that the strategies compare fairly.

use polars::prelude::Column;
use serde::{Deserialize, Serialize};

use crate::artefact::rules::Confirmations;
use crate::artefact::selection::UnsafeRow;
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CONFIRMATIONS, SELECTION, UNSAFE_SET};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::sim;
use crate::trigger::{self, Purpose};

/// `generate` was given no number of images to render.
#[derive(Debug, thiserror::Error)]
#[error("generate needs a budget: `budget = <images>` or `budget_of = \"<select stage>.unsafe\"`")]
pub struct NoBudget;

pub struct Generate;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateParams {
    /// Images in all (default: the size of `budget_of`).
    #[serde(default)]
    pub budget: Option<usize>,
    /// The split whose declared distribution, restricted to each rule, the images are drawn from (the improvement
    /// set's).
    #[serde(default = "default_split")]
    pub split: String,
    /// At most this many parameter vectors drawn per rule while looking for images inside it.
    #[serde(default = "default_draws")]
    pub draws: usize,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_split() -> String {
    "improvement".into()
}
fn default_draws() -> usize {
    1_000_000
}

impl Params for GenerateParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.budget == Some(0) {
            out.push(Invalid::new("budget", "must be at least 1 image, got 0"));
        }
        if self.draws == 0 {
            out.push(Invalid::new("draws", "must be at least 1, got 0"));
        }
        out
    }
}

impl Stage for Generate {
    type Params = GenerateParams;
    const KIND: &'static str = "generate";
    const VERSION: u32 = 2;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "confirmations",
            accepts: &[CONFIRMATIONS],
            many: false,
            required: true,
            doc: "a confirm stage's confirmations: images are generated inside the confirmed rules only",
        },
        InputSlot {
            name: "dataset",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the simulated dataset whose split's declared distribution the images are drawn from",
        },
        InputSlot {
            name: "budget_of",
            accepts: &[UNSAFE_SET],
            many: false,
            required: false,
            doc: "another select stage's unsafe set: the budget is its size",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "selected",
        kind: SELECTION,
        path: "selected/",
        doc: "the generated images as a dataset (columns rcc, rcc_distance), labelled by the simulator",
    }];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Generates labelled images inside the confirmed triggering conditions.";

    fn run(&self, p: &GenerateParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let confirmations: Confirmations = table::read_json(&ctx.input("confirmations")?.path)?;
        let ds = Dataset::open(&ctx.input("dataset")?.path)?;
        let sim = trigger::renderer_of(&ds, "generate")?;
        let budget = match (p.budget, ctx.inputs("budget_of").first()) {
            (Some(b), _) => b,
            (None, Some(other)) => table::read::<UnsafeRow>(&other.path)?.len(),
            (None, None) => {
                return Err(StageError::artefact(NoBudget));
            }
        };
        let domain = ds.domain(&p.split)?;
        let confirmed: Vec<_> = confirmations.rules.iter().filter(|c| c.confirmed).collect();
        let dir = ctx.output("selected")?;
        // The rules were learned from this split's failures: they chose what is generated here.
        let mut writer = trigger::image_writer(&dir, &ds, sim, "generate", vec![confirmations.learned_on.clone()])?;
        let mut clusters: Vec<u32> = Vec::new();
        let task = ds.meta.task.clone();
        let render_seed = Purpose::Generate.seed(ctx.seed);
        ctx.progress.start(if confirmed.is_empty() { 0 } else { budget } as u64, "images generated");
        for (r, rule) in confirmed.iter().enumerate() {
            // The budget shared equally, the first rules taking the remainder.
            let n = budget / confirmed.len() + usize::from(r < budget % confirmed.len());
            let mut rng = Purpose::Generate.rng(ctx.seed, rule.cluster);
            let drawn = domain.split(n, p.draws, &mut rng, |v| trigger::inside(&rule.conditions, sim, v));
            if drawn.inside.len() < n {
                ctx.progress.message(&format!(
                    "cluster {}: {} of {n} images inside its rule in {} draws",
                    rule.cluster,
                    drawn.inside.len(),
                    drawn.drawn
                ));
            }
            for (i, v) in drawn.inside.into_iter().enumerate() {
                let sample =
                    sim.render(&task, &v, ds.meta.width as u32, &mut sim::image_rng(render_seed, r as u64, i as u64));
                writer.push(format!("generated-{}-{i:05}", rule.cluster), "generated", &sample.rgb, sample.label, v)?;
                clusters.push(rule.cluster as u32);
                ctx.progress.inc(1);
            }
        }
        let n = clusters.len();
        writer.finish_with(vec![
            Column::new("rcc".into(), clusters),
            Column::new("rcc_distance".into(), vec![0.0f64; n]),
        ])?;
        ctx.progress.message(&format!("{n} images inside {} confirmed rules", confirmed.len()));
        Ok(())
    }
}
