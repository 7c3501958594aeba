//! Stage `heatmaps` (HUDD's HeatmapModule): LRP relevance at the input of every layer, for every image of a
//! dataset, in batches, streamed to one `.npy` file per layer, with conservation and finiteness gates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Kind;

use crate::artefact::heatmaps::{self, ConservationRow};
use crate::artefact::{ANY_DATASET, HEATMAPS, MODEL};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::lrp::Rule;
pub use crate::lrp::batch::Seed;
use crate::lrp::batch::{for_each_batch, prepare};
use crate::model::LayerKind;
use crate::model::net::{Net, Op};
use crate::npy::NpyWriter;
use crate::runtime::{self, DeviceChoice};

pub struct Heatmaps;

/// Rule presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// HUDD's original rules: z⁺ without bias for linear layers, LRP-0 (1e-9) for convolutions and pools.
    #[default]
    Hudd,
    /// Zennit's EpsilonPlus: ε (1e-6) for linear layers, z⁺ for convolutions.
    EpsilonPlus,
    /// Zennit's EpsilonGammaBox: z^B for the first convolution, γ = 0.25 for the others, ε (1e-6) for linear layers.
    EpsilonGammaBox,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatmapParams {
    #[serde(default)]
    pub preset: Preset,
    /// Rules that replace the preset's, by layer name (`features.0`) or layer kind (`conv2d`, `linear`, ...).
    #[serde(default)]
    pub rules: BTreeMap<String, Rule>,
    #[serde(default)]
    pub seed_with: Seed,
    /// Bounds of the normalised input for z^B (epsilon-gamma-box).
    #[serde(default = "low")]
    pub low: f64,
    #[serde(default = "high")]
    pub high: f64,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Conservation gate: the worst relative deviation a conserving layer may show.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default)]
    pub threads: Option<usize>,
}

fn low() -> f64 {
    -3.0
}
fn high() -> f64 {
    3.0
}
fn default_batch() -> usize {
    32
}
fn default_tolerance() -> f64 {
    1e-3
}

impl Params for HeatmapParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
        }
        if !(self.tolerance > 0.0) {
            out.push(Invalid::new("tolerance", format!("must be above 0, got {}", self.tolerance)));
        }
        if !(self.low < self.high) {
            out.push(Invalid::new("low", format!("must be below high ({}), got {}", self.high, self.low)));
        }
        for (key, rule) in &self.rules {
            if let Rule::AlphaBeta { alpha, beta } = rule
                && (alpha - beta - 1.0).abs() > 1e-9
            {
                out.push(Invalid::new(
                    format!("rules.{key}"),
                    format!("alpha - beta must be 1 to conserve relevance, got {alpha} - {beta}"),
                ));
            }
        }
        out
    }
}

/// Why the declared rules do not fit the model: each names the layer and the rule.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    #[error("rules name `{key}`, which is neither a layer of the model ({}) nor a layer kind", layers.join(", "))]
    UnknownLayer { key: String, layers: Vec<String> },
    #[error("rules give layer `{layer}` the rule `{rule}`; a layer of kind `{kind}` takes {takes}")]
    NotTaken { layer: String, rule: String, kind: &'static str, takes: &'static str },
}

impl From<RuleError> for StageError {
    fn from(e: RuleError) -> Self {
        StageError::artefact(e)
    }
}

/// The rule of every layer: the preset's, then overrides by kind, then by name.
pub fn rules_for(net: &Net, p: &HeatmapParams) -> Result<Vec<Rule>, RuleError> {
    for key in p.rules.keys() {
        if !LayerKind::NAMES.contains(&key.as_str()) && !net.layers.iter().any(|(n, _)| n == key) {
            let layers = net.layers.iter().map(|(n, _)| n.clone()).collect();
            return Err(RuleError::UnknownLayer { key: key.clone(), layers });
        }
    }
    let mut first_conv = true;
    let rules: Vec<Rule> = net
        .layers
        .iter()
        .map(|(name, op)| {
            let preset = match (p.preset, op) {
                (Preset::Hudd, _) => crate::lrp::hudd_rules_one(op),
                // Zennit's composites: `Norm` (a 1e-6 signed stabiliser) for a residual sum.
                (_, Op::Linear(_) | Op::Add) => Rule::Epsilon { epsilon: 1e-6 },
                (Preset::EpsilonPlus, Op::Conv { .. } | Op::ConvTranspose { .. }) => Rule::ZPlus,
                (Preset::EpsilonGammaBox, Op::Conv { .. } | Op::ConvTranspose { .. }) => {
                    if std::mem::take(&mut first_conv) {
                        Rule::Bounded { low: p.low, high: p.high }
                    } else {
                        Rule::Gamma { gamma: 0.25 }
                    }
                }
                (_, op) => crate::lrp::hudd_rules_one(op),
            };
            let by_kind = p.rules.get(op.kind()).copied().unwrap_or(preset);
            p.rules.get(name).copied().unwrap_or(by_kind)
        })
        .collect();
    if let Some(((name, op), rule)) =
        net.layers.iter().zip(&rules).find(|((_, op), rule)| !crate::lrp::takes(op, **rule))
    {
        let rule = serde_json::to_value(rule).expect("rules serialise")["rule"].as_str().unwrap_or("").to_string();
        let takes = if matches!(op, Op::Add) { "`zero` or `epsilon`" } else { "only `pass`" };
        return Err(RuleError::NotTaken { layer: name.clone(), rule, kind: op.kind(), takes });
    }
    Ok(rules)
}

impl Stage for Heatmaps {
    type Params = HeatmapParams;
    const KIND: &'static str = "heatmaps";
    const VERSION: u32 = 3;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "model", accepts: &[MODEL], many: false, required: true, doc: "a declared model" },
        InputSlot {
            name: "images",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "a dataset artefact (typically test.errors)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "heatmaps",
        kind: HEATMAPS,
        path: "heatmaps/",
        doc: "<layer>.npy per layer, index.csv, conservation.csv, rules.json, seed.json",
    }];
    // Backed by tests/it/settings.rs: 1 and 2 threads give the same bytes. The batch size does not: oneDNN's
    // kernels sum in another order for another batch, and the last bits of scores and relevance move.
    const SETTINGS: &'static [&'static str] = &["threads"];
    const DOC: &'static str = "LRP heatmaps of every layer.";

    /// The device kind this resolves to enters the key: a GPU computes other bytes.
    fn fingerprints(p: &HeatmapParams) -> Vec<(String, String)> {
        vec![crate::runtime::device_fingerprint(p.device)]
    }

    fn torch_threads(p: &HeatmapParams, run: usize) -> usize {
        p.threads.unwrap_or(run)
    }

    fn run(&self, p: &HeatmapParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let ds = Dataset::open(&ctx.input("images")?.path)?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        let model = prepare(&ctx.input("model")?.path, device, &ds, p.batch_size, "the heatmaps stage (LRP)")?;
        let net = model.net("the heatmaps stage (LRP)")?;
        let rules = rules_for(net, p)?;
        let arch = model.meta.architecture.as_ref().expect("a declared model has its architecture");
        let shapes = arch.describe(input, model.meta.outputs)?;
        let folder = heatmaps::Heatmaps::open(&ctx.output("heatmaps")?);
        let mut writers = Vec::with_capacity(net.layers.len());
        for (row, (name, _)) in shapes.iter().zip(&net.layers) {
            writers.push(NpyWriter::<f32>::create(&folder.layer_path(name), &row.input.dims())?);
        }
        let n = ds.meta.count;
        let mut worst = vec![0.0f64; net.layers.len()];
        let conserved: Vec<bool> = (0..net.layers.len()).map(|k| should_conserve(net, &rules, k)).collect();
        ctx.progress.start(n as u64, "heatmaps");
        let rows: Vec<usize> = (0..n).collect();
        for_each_batch(&model, &ds, &rows, &rules, p.seed_with, p.batch_size, |chunk, seed, relevance| {
            let out_sum = seed.sum_dim_intlist([1i64].as_slice(), false, Kind::Double).flatten(0, -1);
            for (k, r) in relevance.iter().enumerate() {
                let r = r.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
                let values: Vec<f32> = Vec::try_from(r.flatten(0, -1)).map_err(StageError::artefact)?;
                if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                    return Err(StageError::Gate {
                        message: format!(
                            "layer `{}`: relevance is not finite (image {})",
                            net.layers[k].0,
                            chunk[bad / (values.len() / chunk.len())]
                        ),
                    });
                }
                writers[k].append(&values)?;
                if conserved[k] {
                    let sums = r.flatten(1, -1).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
                    let dev = ((sums - &out_sum).abs() / out_sum.abs().clamp_min(1e-12)).max();
                    worst[k] = worst[k].max(f64::try_from(dev).unwrap_or(f64::INFINITY));
                } else {
                    worst[k] = f64::NAN;
                }
            }
            ctx.progress.inc(chunk.len() as u64);
            Ok(())
        })?;
        for w in writers {
            w.finish()?;
        }
        folder.write_ids(ds.ids()?)?;
        let conservation: Vec<ConservationRow> = (net.layers.iter().enumerate())
            .map(|(k, (name, _))| ConservationRow {
                layer: name.clone(),
                rule: serde_json::to_value(rules[k]).expect("rules serialise")["rule"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                worst_relative_deviation: if worst[k].is_nan() { String::new() } else { format!("{:.3e}", worst[k]) },
            })
            .collect();
        folder.write_layers(&conservation)?;
        let named: BTreeMap<&str, Rule> = net.layers.iter().zip(&rules).map(|((n, _), r)| (n.as_str(), *r)).collect();
        folder.write_rules(&named, p.seed_with)?;
        for (k, w) in worst.iter().enumerate() {
            if !w.is_nan() && *w > p.tolerance {
                return Err(StageError::Gate {
                    message: format!(
                        "layer `{}`: relevance is not conserved: worst relative deviation {w:.3e} above the tolerance {}",
                        net.layers[k].0, p.tolerance
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Whether a rule keeps the relevance sum through a layer exactly (up to the stabiliser).
fn conserves(rule: Rule, op: &Op) -> bool {
    let biased = match op {
        Op::Conv { layer, .. } => layer.bs.is_some(),
        Op::ConvTranspose { layer, .. } => layer.bs.is_some(),
        Op::Linear(l) => l.bs.is_some(),
        _ => false,
    };
    match rule {
        Rule::Pass | Rule::WinnerTakesAll | Rule::ZPlusNoBias | Rule::Flat | Rule::WSquare => true,
        Rule::Zero if matches!(op, Op::Add) => true,
        Rule::Zero | Rule::ZPlus | Rule::AlphaBeta { .. } => !biased,
        Rule::Epsilon { .. } | Rule::Gamma { .. } | Rule::Bounded { .. } => false,
    }
}

/// Whether the relevance recorded at layer `k` must sum to the output's: the value is a cut of the graph (all the
/// computation passes through it) and every layer after it conserves.
fn should_conserve(net: &Net, rules: &[Rule], k: usize) -> bool {
    let v = net.recorded[k];
    net.is_cut(v) && rules[v..].iter().zip(&net.layers[v..]).all(|(r, (_, op))| conserves(*r, op))
}
