//! Stage `heatmaps` (HUDD's HeatmapModule): LRP relevance at the input of every layer, for every image of a
//! dataset, in batches, streamed to one `.npy` file per layer, with conservation and finiteness gates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::dataset::{Dataset, write_csv};
use crate::lrp::{self, Rule};
use crate::model::artefact::Model;
use crate::model::fit::keypoints_from_maps;
use crate::model::net::{Net, Op};
use crate::npy::NpyWriter;
use crate::runtime::{self, DeviceChoice};
use crate::sim::Target;
use crate::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};

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

/// What the relevance starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Seed {
    /// The predicted class's logit, every other output zero (HUDD). Keypoints: the worst keypoint's map (HUDD).
    #[default]
    Predicted,
    /// The true class's logit. Keypoints: every map.
    True,
    /// 1 at the predicted class.
    PredictedOneHot,
    /// 1 at the true class.
    TrueOneHot,
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

const KINDS: [&str; 11] = [
    "conv2d",
    "conv_transpose2d",
    "linear",
    "relu",
    "leaky_relu",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "batch_norm2d",
    "dropout",
    "flatten",
];

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

fn kind_of(op: &Op) -> &'static str {
    match op {
        Op::Conv { .. } => "conv2d",
        Op::ConvTranspose { .. } => "conv_transpose2d",
        Op::Linear(_) => "linear",
        Op::Relu => "relu",
        Op::LeakyRelu(_) => "leaky_relu",
        Op::MaxPool { .. } => "max_pool2d",
        Op::AvgPool { .. } => "avg_pool2d",
        Op::AdaptiveAvgPool(_) => "adaptive_avg_pool2d",
        Op::BatchNorm { .. } | Op::Merged => "batch_norm2d",
        Op::Dropout(_) => "dropout",
        Op::Flatten => "flatten",
    }
}

/// The rule of every layer: the preset's, then overrides by kind, then by name.
pub fn rules_for(net: &Net, p: &HeatmapParams) -> Result<Vec<Rule>, String> {
    for key in p.rules.keys() {
        if !KINDS.contains(&key.as_str()) && !net.layers.iter().any(|(n, _)| n == key) {
            let names: Vec<&str> = net.layers.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "rules name `{key}`, which is neither a layer of the model ({}) nor a layer kind",
                names.join(", ")
            ));
        }
    }
    let mut first_conv = true;
    Ok(net
        .layers
        .iter()
        .map(|(name, op)| {
            let preset = match (p.preset, op) {
                (Preset::Hudd, _) => lrp::hudd_rules_one(op),
                (_, Op::Linear(_)) => Rule::Epsilon { epsilon: 1e-6 },
                (Preset::EpsilonPlus, Op::Conv { .. } | Op::ConvTranspose { .. }) => Rule::ZPlus,
                (Preset::EpsilonGammaBox, Op::Conv { .. } | Op::ConvTranspose { .. }) => {
                    if std::mem::take(&mut first_conv) {
                        Rule::Bounded { low: p.low, high: p.high }
                    } else {
                        Rule::Gamma { gamma: 0.25 }
                    }
                }
                (_, op) => lrp::hudd_rules_one(op),
            };
            let by_kind = p.rules.get(kind_of(op)).copied().unwrap_or(preset);
            p.rules.get(name).copied().unwrap_or(by_kind)
        })
        .collect())
}

impl Stage for Heatmaps {
    type Params = HeatmapParams;
    const KIND: &'static str = "heatmaps";
    const VERSION: u32 = 2;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "model", many: false, required: true, doc: "a declared model" },
        InputSlot { name: "images", many: false, required: true, doc: "a dataset artefact (typically test.errors)" },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "heatmaps",
        path: "heatmaps/",
        doc: "<layer>.npy per layer, index.csv, conservation.csv, rules.json",
    }];
    const DOC: &'static str = "LRP heatmaps of every layer.";

    fn run(&self, p: &HeatmapParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        runtime::set_threads(p.threads.unwrap_or(ctx.threads));
        let device = runtime::device(p.device).map_err(StageError::input)?;
        let ds = Dataset::open(&ctx.input("images")?.path).map_err(|e| StageError::input(e.to_string()))?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        let model = prepare(&ctx.input("model")?.path, device, &ds, p.batch_size, "the heatmaps stage (LRP)")?;
        let net = model.net("the heatmaps stage (LRP)").map_err(|e| StageError::input(e.to_string()))?;
        let rules = rules_for(net, p).map_err(StageError::input)?;
        let arch = model.meta.architecture.as_ref().expect("a declared model has its architecture");
        let shapes = arch.describe(input, model.meta.outputs).map_err(|e| StageError::input(e.to_string()))?;
        let dir = ctx.output("heatmaps")?;
        let mut writers = Vec::with_capacity(net.layers.len());
        for (row, (name, _)) in shapes.iter().zip(&net.layers) {
            let path = dir.join(format!("{name}.npy"));
            writers.push(
                NpyWriter::<f32>::create(&path, &row.input.dims()).map_err(|e| StageError::failed(e.to_string()))?,
            );
        }
        let n = ds.meta.count;
        let mut worst = vec![0.0f64; net.layers.len()];
        ctx.progress.start(n as u64, "heatmaps");
        let rows: Vec<usize> = (0..n).collect();
        for_each_batch(&model, &ds, &rows, &rules, p.seed_with, p.batch_size, |chunk, seed, relevance| {
            let out_sum = seed.sum_dim_intlist([1i64].as_slice(), false, Kind::Double).flatten(0, -1);
            for (k, r) in relevance.iter().enumerate() {
                let r = r.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
                let values: Vec<f32> =
                    Vec::try_from(r.flatten(0, -1)).map_err(|e: tch::TchError| StageError::failed(e.to_string()))?;
                if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                    return Err(StageError::Gate {
                        message: format!(
                            "layer `{}`: relevance is not finite (image {})",
                            net.layers[k].0,
                            chunk[bad / (values.len() / chunk.len())]
                        ),
                    });
                }
                writers[k].append(&values).map_err(|e| StageError::failed(e.to_string()))?;
                if conserves(rules[k], &net.layers[k].1) && downstream_conserves(&rules[k..], &net.layers[k..]) {
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
            w.finish().map_err(|e| StageError::failed(e.to_string()))?;
        }
        let ids = ds.ids().map_err(|e| StageError::input(e.to_string()))?;
        let mut index = polars::prelude::DataFrame::new(
            n,
            vec![
                polars::prelude::Column::new("row".into(), (0..n as u32).collect::<Vec<u32>>()),
                polars::prelude::Column::new("image".into(), &ids),
            ],
        )
        .map_err(|e| StageError::failed(e.to_string()))?;
        write_csv(&dir.join("index.csv"), &mut index).map_err(|e| StageError::failed(e.to_string()))?;
        let mut text = String::from("layer,rule,worst_relative_deviation\n");
        for (k, (name, _)) in net.layers.iter().enumerate() {
            let rule =
                serde_json::to_value(rules[k]).expect("rules serialise")["rule"].as_str().unwrap_or("").to_string();
            let dev = if worst[k].is_nan() { String::new() } else { format!("{:.3e}", worst[k]) };
            text.push_str(&format!("{name},{rule},{dev}\n"));
        }
        let path = dir.join("conservation.csv");
        std::fs::write(&path, text).map_err(|e| StageError::io(&path, e))?;
        let named: BTreeMap<&str, Rule> = net.layers.iter().zip(&rules).map(|((n, _), r)| (n.as_str(), *r)).collect();
        let path = dir.join("rules.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&named).expect("rules serialise"))
            .map_err(|e| StageError::io(&path, e))?;
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

/// Runs LRP over some rows of a dataset, batch by batch: `sink` gets the batch's rows, the seed and the relevance
/// at the input of every layer. The model must be declared and canonised ([`prepare`]).
pub fn for_each_batch(
    model: &Model,
    ds: &Dataset,
    rows: &[usize],
    rules: &[Rule],
    seed_with: Seed,
    batch: usize,
    mut sink: impl FnMut(&[usize], &Tensor, &[Tensor]) -> Result<(), StageError>,
) -> Result<(), StageError> {
    let net = model.net("LRP").map_err(|e| StageError::input(e.to_string()))?;
    let labels = match &ds.meta.target {
        Target::Classification { .. } => ds.class_labels().map_err(|e| StageError::input(e.to_string()))?,
        Target::Regression { .. } => Vec::new(),
    };
    let targets = ds.targets().map_err(|e| StageError::input(e.to_string()))?;
    let [c, h, w] = model.meta.input.map(|v| v as i64);
    for chunk in rows.chunks(batch.max(1)) {
        let pixels = ds.images(chunk).map_err(|e| StageError::input(e.to_string()))?;
        let x = model.preprocess(&Tensor::from_slice(&pixels).view([chunk.len() as i64, c, h, w]));
        let y = tch::no_grad(|| net.forward_t(&x, false));
        let seed = seed_of(&y, seed_with, chunk, &labels, &targets, model.meta.input);
        sink(chunk, &seed, &lrp::relevance(net, &x, &seed, rules))?;
    }
    Ok(())
}

/// Loads a declared model for LRP on a dataset's images (`what` names the stage in the error for a model without
/// declared layers): the input shape checked, batch norms merged (canonised)
/// with the outputs checked unchanged on the first `batch` images.
pub fn prepare(
    path: &std::path::Path,
    device: tch::Device,
    ds: &Dataset,
    batch: usize,
    what: &str,
) -> Result<Model, StageError> {
    let mut model = Model::load(path, device).map_err(|e| StageError::input(e.to_string()))?;
    model.net(what).map_err(|e| StageError::input(e.to_string()))?;
    let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
    if model.meta.input != input {
        return Err(StageError::input(format!(
            "the model takes {:?} images, the image set has {input:?}",
            model.meta.input
        )));
    }
    canonise(&mut model, ds, batch)?;
    Ok(model)
}

/// Merges batch norms into their convolutions and checks, on the first batch, that the outputs did not change.
fn canonise(model: &mut Model, ds: &Dataset, batch: usize) -> Result<(), StageError> {
    let rows: Vec<usize> = (0..ds.meta.count.min(batch)).collect();
    let [c, h, w] = model.meta.input.map(|v| v as i64);
    let x = if rows.is_empty() {
        None
    } else {
        let pixels = ds.images(&rows).map_err(|e| StageError::input(e.to_string()))?;
        Some(model.preprocess(&Tensor::from_slice(&pixels).view([rows.len() as i64, c, h, w])))
    };
    let before = x.as_ref().map(|x| tch::no_grad(|| model.net("canonisation").expect("checked").forward_t(x, false)));
    let merged = model.net_mut().expect("a declared model").canonise();
    if let (Some(x), Some(before), false) = (&x, before, merged.is_empty()) {
        let after = tch::no_grad(|| model.net("canonisation").expect("checked").forward_t(x, false));
        let scale = f64::try_from(before.abs().max()).unwrap_or(1.0).max(1e-6);
        let diff = f64::try_from((after - &before).abs().max()).unwrap_or(f64::INFINITY) / scale;
        if !(diff < 1e-4) {
            return Err(StageError::Gate {
                message: format!(
                    "merging batch norms {} changed the model's outputs by {diff:.2e} of their scale",
                    merged.join(", ")
                ),
            });
        }
    }
    Ok(())
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
        Rule::Zero | Rule::ZPlus | Rule::AlphaBeta { .. } => !biased,
        Rule::Epsilon { .. } | Rule::Gamma { .. } | Rule::Bounded { .. } => false,
    }
}

/// The sum at a layer's input equals the output's only if every later layer conserves too.
fn downstream_conserves(rules: &[Rule], layers: &[(String, Op)]) -> bool {
    rules.iter().zip(layers).all(|(r, (_, op))| conserves(*r, op))
}

/// The relevance at the output: a class logit (or 1) per image, or keypoint maps.
fn seed_of(y: &Tensor, mode: Seed, rows: &[usize], labels: &[i64], targets: &[Vec<f32>], input: [usize; 3]) -> Tensor {
    if y.dim() == 2 {
        let class = match mode {
            Seed::Predicted | Seed::PredictedOneHot => y.argmax(1, true),
            Seed::True | Seed::TrueOneHot => Tensor::from_slice(&rows.iter().map(|&r| labels[r]).collect::<Vec<i64>>())
                .view([-1, 1])
                .to_device(y.device()),
        };
        let value = match mode {
            Seed::Predicted | Seed::True => y.gather(1, &class, false),
            _ => Tensor::ones([y.size()[0], 1], (Kind::Float, y.device())),
        };
        return y.zeros_like().scatter(1, &class, &value);
    }
    // Keypoint maps: HUDD seeds with the worst keypoint's map; `true` keeps every map.
    if matches!(mode, Seed::True | Seed::TrueOneHot) || targets.is_empty() {
        return y.shallow_clone();
    }
    let flat: Vec<f32> = rows.iter().flat_map(|&r| targets[r].iter().copied()).collect();
    let t = Tensor::from_slice(&flat).view([rows.len() as i64, -1]).to_device(y.device());
    let errors = crate::model::fit::keypoint_errors(&keypoints_from_maps(y, input), &t);
    let worst = errors.argmax(1, true);
    let mask = y.zeros_like().select(3, 0).select(2, 0).scatter_value(1, &worst, 1.0);
    y * mask.view([y.size()[0], y.size()[1], 1, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two images, three keypoint maps of 8×8 over a 16×16 input, each map a single peak.
    fn maps(peaks: &[[(i64, i64); 3]; 2]) -> Tensor {
        let y = Tensor::zeros([2, 3, 8, 8], (Kind::Float, tch::Device::Cpu));
        for (i, image) in peaks.iter().enumerate() {
            for (k, &(row, col)) in image.iter().enumerate() {
                let _ = y.get(i as i64).get(k as i64).get(row).get(col).fill_(5.0);
            }
        }
        y
    }

    fn nonzero_maps(seed: &Tensor) -> Vec<Vec<bool>> {
        let sums =
            Vec::<f32>::try_from(seed.abs().sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float).flatten(0, -1))
                .unwrap();
        sums.chunks(3).map(|c| c.iter().map(|v| *v > 0.0).collect()).collect()
    }

    #[test]
    fn keypoint_seeds_keep_only_the_worst_keypoints_map() {
        // A peak at map cell (r, c) predicts the pixel ((c + 0.5)·2, (r + 0.5)·2).
        let y = maps(&[[(1, 1), (4, 4), (6, 2)], [(0, 7), (3, 3), (7, 0)]]);
        // Image 0: keypoint 2 is 6 px off, the others exact. Image 1: keypoint 0 is 10 px off, keypoint 1 is 2 px off.
        let targets = vec![vec![3.0, 3.0, 9.0, 9.0, 5.0, 19.0], vec![15.0, 11.0, 9.0, 7.0, 1.0, 15.0]];
        let seed = seed_of(&y, Seed::Predicted, &[0, 1], &[], &targets, [1, 16, 16]);
        assert_eq!(nonzero_maps(&seed), [[false, false, true], [true, false, false]]);
        // The kept map is the prediction itself, unscaled.
        assert_eq!(f64::try_from(seed.get(1).get(0).sum(Kind::Double)).unwrap(), 5.0);
        // `true` keeps every map.
        let all = seed_of(&y, Seed::True, &[0, 1], &[], &targets, [1, 16, 16]);
        assert_eq!(nonzero_maps(&all), [[true; 3], [true; 3]]);
    }

    #[test]
    fn class_seeds_pick_the_predicted_or_the_true_class() {
        let y = Tensor::from_slice(&[1.0f32, 3.0, -2.0, 0.5, -1.0, 2.0]).view([2, 3]);
        let dense = |s: Tensor| Vec::<f32>::try_from(s.flatten(0, -1)).unwrap();
        assert_eq!(
            dense(seed_of(&y, Seed::Predicted, &[0, 1], &[0, 0], &[], [1, 1, 1])),
            [0.0, 3.0, 0.0, 0.0, 0.0, 2.0]
        );
        assert_eq!(dense(seed_of(&y, Seed::True, &[0, 1], &[0, 1], &[], [1, 1, 1])), [1.0, 0.0, 0.0, 0.0, -1.0, 0.0]);
        assert_eq!(
            dense(seed_of(&y, Seed::TrueOneHot, &[1, 0], &[2, 0], &[], [1, 1, 1])),
            [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        );
    }
}
