//! Stage `generate` (the fourth retraining strategy, after SEDE): new images rendered inside the regions of the
//! confirmed triggering conditions, as many per condition, labelled by the simulator. They need no person to label
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
use crate::trigger;

pub struct Generate;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateParams {
    /// Images in all (default: the size of `budget_of`).
    #[serde(default)]
    pub budget: Option<usize>,
    /// The split whose images give the parameters outside the rules (the improvement set's distribution).
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_split() -> String {
    "improvement".into()
}

impl Params for GenerateParams {
    fn validate(&self) -> Vec<Invalid> {
        if self.budget == Some(0) {
            vec![Invalid::new("budget", "must be at least 1 image, got 0")]
        } else {
            Vec::new()
        }
    }
}

impl Stage for Generate {
    type Params = GenerateParams;
    const KIND: &'static str = "generate";
    const VERSION: u32 = 1;
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
            doc: "the simulated dataset whose split gives the other parameters",
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
        let sim =
            trigger::simulator_of(&ds).ok_or_else(|| StageError::input(trigger::not_simulated(&ds, "generate")))?;
        let budget = match (p.budget, ctx.inputs("budget_of").first()) {
            (Some(b), _) => b,
            (None, Some(other)) => table::read::<UnsafeRow>(&other.path)?.len(),
            (None, None) => {
                return Err(StageError::input(
                    "generate needs a budget: `budget = <images>` or `budget_of = \"<select stage>.unsafe\"`",
                ));
            }
        };
        let rows = ds.split_rows(&p.split)?;
        if rows.is_empty() {
            return Err(StageError::input(format!("split `{}` of {} is empty", p.split, ds.dir.display())));
        }
        let base = trigger::vectors(&ds, sim, &rows)?;
        let confirmed: Vec<_> = confirmations.rules.iter().filter(|c| c.confirmed).collect();
        let dir = ctx.output("selected")?;
        // The rules were learned from this split's failures: they chose what is generated here.
        let mut writer = trigger::image_writer(&dir, &ds, sim, "generate", vec![confirmations.learned_on.clone()])?;
        let mut clusters: Vec<u32> = Vec::new();
        let task = ds.meta.task.clone();
        ctx.progress.start(budget.min(if confirmed.is_empty() { 0 } else { budget }) as u64, "images generated");
        for (r, rule) in confirmed.iter().enumerate() {
            // The budget shared equally, the first rules taking the remainder.
            let n = budget / confirmed.len() + usize::from(r < budget % confirmed.len());
            let mut rng = trigger::cluster_rng(ctx.seed, rule.cluster);
            for i in 0..n {
                let v = trigger::draw_around(&rule.conditions, sim, &base, &mut rng);
                let sample =
                    sim.render(&task, &v, ds.meta.width as u32, &mut sim::image_rng(ctx.seed, r as u64, i as u64));
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
