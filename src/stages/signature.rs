//! Stage `signature`: each failing image described by what fixes it, its counterfactual signature, as features
//! `cluster` clusters like any other (issue 50). From an `intervene` stage's table: per image, one value per single
//! intervention (in the summary's order), then one per pair some image was given: how far the intervention brings
//! the model back, for a classifier the probability of the true class, for a keypoint model `t / (t + e)` for mean
//! error `e` and failure threshold `t` (1 at no error, ½ at the threshold). A pair an image was not given (its single
//! interventions already fixed it, or the budget ran out) takes the better of its two halves' values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::artefact::heatmaps::{ConservationRow, Heatmaps};
use crate::artefact::interventions::{InterventionRow, InterventionSummary, Kind};
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, FEATURES, INTERVENTION_SUMMARY, INTERVENTIONS};
use crate::dataset::{Dataset, Target};
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::predict::DEFAULT_THRESHOLD;
use crate::npy::NpyWriter;

/// The one "layer" a signature has.
pub const LAYER: &str = "signature";

pub struct Signature;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureParams {
    /// Keypoint models: the failure threshold in pixels (`intervene`'s).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_threshold() -> f64 {
    DEFAULT_THRESHOLD
}

impl Params for SignatureParams {
    fn validate(&self) -> Vec<Invalid> {
        if self.threshold > 0.0 {
            Vec::new()
        } else {
            vec![Invalid::new("threshold", format!("must be above 0 pixels, got {}", self.threshold))]
        }
    }
}

impl Stage for Signature {
    type Params = SignatureParams;
    const KIND: &'static str = "signature";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "interventions",
            accepts: &[INTERVENTIONS],
            many: false,
            required: true,
            doc: "an intervene stage's table of every intervention on every failing image",
        },
        InputSlot {
            name: "summary",
            accepts: &[INTERVENTION_SUMMARY],
            many: false,
            required: true,
            doc: "the same stage's summary (the interventions' order)",
        },
        InputSlot {
            name: "images",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the failing images intervened on (a test stage's errors), in the order the features follow",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "features",
        kind: FEATURES,
        path: "features/",
        doc: "signature.npy (one row per failing image), index.csv, conservation.csv",
    }];
    const DOC: &'static str = "Describes each failing image by what fixes it: features for `cluster`.";

    fn run(&self, p: &SignatureParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let ds = Dataset::open(&ctx.input("images")?.path)?;
        let summary: InterventionSummary = table::read_json(&ctx.input("summary")?.path)?;
        let path = ctx.input("interventions")?.path.clone();
        let rows: Vec<InterventionRow> = table::read(&path)?;
        let keypoints = matches!(ds.meta.target, Target::Regression { .. });
        let value = |score: f64| if keypoints { p.threshold / (p.threshold + score.max(0.0)) } else { score };
        let singles = &summary.parameters;
        let mut pairs: Vec<&str> =
            rows.iter().filter(|r| r.kind == Kind::Pair).map(|r| r.intervention.as_str()).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let names: Vec<&str> = singles.iter().map(String::as_str).chain(pairs).collect();
        let column: BTreeMap<&str, usize> = names.iter().enumerate().map(|(k, n)| (*n, k)).collect();
        let mut by_image: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.kind != Kind::Sham) {
            let Some(&k) = column.get(r.intervention.as_str()) else { continue };
            by_image.entry(r.image.as_str()).or_insert_with(|| vec![None; names.len()])[k] = Some(value(r.score));
        }
        let ids = ds.ids()?;
        let folder = Heatmaps::open(&ctx.output("features")?);
        std::fs::create_dir_all(&folder.dir).map_err(|e| StageError::io(&folder.dir, e))?;
        let mut writer = NpyWriter::<f32>::create(&folder.layer_path(LAYER), &[names.len()])?;
        for id in &ids {
            let Some(values) = by_image.get(id.as_str()) else {
                return Err(StageError::input(format!(
                    "{}: image `{id}` of {} was not intervened on: connect the images the intervene stage read",
                    path.display(),
                    ds.dir.display()
                )));
            };
            let single = |name: &str| column.get(name).and_then(|&k| values[k]).unwrap_or(0.0);
            let row: Vec<f32> = (names.iter().zip(values))
                .map(|(name, v)| v.unwrap_or_else(|| name.split('+').map(single).fold(0.0, f64::max)) as f32)
                .collect();
            writer.append(&row)?;
        }
        writer.finish()?;
        folder.write_ids(ids)?;
        let layer =
            ConservationRow { layer: LAYER.into(), rule: "activation".into(), worst_relative_deviation: String::new() };
        Ok(folder.write_layers(&[layer])?)
    }
}
