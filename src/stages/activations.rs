//! Stage `activations`: another representation of images to cluster, the DNN's own activations at the input of
//! every layer (the first layer's input is the normalised image itself, so raw pixels come with them), or those of a
//! pretrained `backbone` (generic features: a network trained on ImageNet, the images resized to its input, as the
//! 2024 study of clustering pipelines found best). It writes the folder layout of a heatmaps stage, so `cluster` and
//! `select` read either.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::artefact::heatmaps::{ConservationRow, Heatmaps};
use crate::artefact::{ANY_DATASET, FEATURES, MODEL};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::Model;
use crate::model::backbone::{self, Backbone, Pool};
use crate::model::net::Op;
use crate::model::predict::for_each_activation_batch;
use crate::model::{is_shipped_name, shipped_fingerprint};
use crate::npy::NpyWriter;
use crate::runtime::{self, DeviceChoice};

pub struct Activations;

/// Why the activations cannot be taken: each names the input, the backbone or the layer.
#[derive(Debug, thiserror::Error)]
pub enum ActivationsError {
    #[error("the model takes {model:?} images, the image set has {images:?}")]
    Size { model: [usize; 3], images: [usize; 3] },
    #[error("`backbone` replaces the `model` input: give one of them, not both")]
    Both,
    #[error("give a `model` input (the DNN under analysis) or a `backbone`")]
    Neither,
    #[error("layers: no layer `{layer}` in the network; it has {} layers: {}", layers.len(), layers.join(", "))]
    UnknownLayer { layer: String, layers: Vec<String> },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl From<ActivationsError> for StageError {
    fn from(e: ActivationsError) -> Self {
        StageError::artefact(e)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationsParams {
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default)]
    pub threads: Option<usize>,
    /// A pretrained network whose activations describe the images instead of the model under analysis' (the stage
    /// then takes no `model` input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<Backbone>,
    /// The layers whose input is recorded, by name (default: every layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<String>>,
    /// `none`: every value of a layer's input; `channels`: the mean of each channel over its positions, one value a
    /// channel (a dense layer's units are its channels).
    #[serde(default, skip_serializing_if = "Pool::is_none")]
    pub pool: Pool,
}

/// The largest side a backbone's input may be resized to: ImageNet backbones take 224 pixels, and 4096 already asks
/// hundreds of times their memory and time per image.
const MAX_SIDE: usize = 4096;

fn default_batch() -> usize {
    64
}

impl Params for ActivationsParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
        }
        if let Some(b) = &self.backbone {
            if let Some(message) = crate::model::check_name(&b.architecture) {
                out.push(Invalid::new("backbone.architecture", message));
            }
            if b.mean.len() != b.std.len() {
                out.push(Invalid::new(
                    "backbone.std",
                    format!("needs as many values as `mean` ({}), got {}", b.mean.len(), b.std.len()),
                ));
            }
            if b.std.iter().any(|s| !(*s > 0.0)) {
                out.push(Invalid::new("backbone.std", format!("every value must be above 0, got {:?}", b.std)));
            }
            if let Some(size) = b.size.filter(|s| s.contains(&0)) {
                out.push(Invalid::new("backbone.size", format!("height and width must be at least 1, got {size:?}")));
            }
            if let Some(size) = b.size.filter(|s| s.iter().any(|&side| side > MAX_SIDE)) {
                out.push(Invalid::new(
                    "backbone.size",
                    format!("height and width must be at most {MAX_SIDE} pixels, got {size:?}"),
                ));
            }
        }
        if self.layers.as_ref().is_some_and(|l| l.is_empty()) {
            out.push(Invalid::new("layers", "names no layer; leave it out to record every layer"));
        }
        out
    }
}

impl Stage for Activations {
    type Params = ActivationsParams;
    const KIND: &'static str = "activations";
    // 2: a backbone runs with its batch norms merged and channels-last memory (`Net::for_features`).
    // 3: its 1×1 convolutions as `matrixmultiply`'s products (`Net::for_features`), where libtorch sent them to MKL.
    const VERSION: u32 = 3;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "model",
            accepts: &[MODEL],
            many: false,
            required: false,
            doc: "the model under analysis (or a `backbone` instead)",
        },
        InputSlot {
            name: "images",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the images to represent (typically a test stage's errors)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "activations",
        kind: FEATURES,
        path: "activations/",
        doc: "<layer>.npy (the activation at the layer's input, one row per image), index.csv, conservation.csv",
    }];
    // Backed by the same reasoning as heatmaps: a forward pass per batch, whose bytes follow the batch size.
    const SETTINGS: &'static [&'static str] = &["threads"];
    const DOC: &'static str =
        "The DNN's (or a pretrained backbone's) activations at its layers' inputs, as a representation to cluster.";

    fn external_paths(p: &ActivationsParams) -> Vec<PathBuf> {
        let Some(b) = &p.backbone else { return Vec::new() };
        let arch = Some(b.architecture.clone()).filter(|a| !is_shipped_name(a));
        arch.into_iter().chain([b.weights.clone()]).collect()
    }

    /// The device kind this resolves to enters the key (a GPU computes other bytes), and a shipped backbone's text.
    /// A backbone's forward pass runs on [`backbone::THREADS`] libtorch threads since 2026-12-07 (before, on the
    /// stage's, which changed its bytes): named, so that no entry made before is served.
    fn fingerprints(p: &ActivationsParams) -> Vec<(String, String)> {
        let shipped = p.backbone.iter().filter_map(|b| shipped_fingerprint(&b.architecture));
        let threads = p.backbone.iter().map(|_| ("backbone threads".to_string(), backbone::THREADS.to_string()));
        std::iter::once(crate::runtime::device_fingerprint(p.device)).chain(shipped).chain(threads).collect()
    }

    fn torch_threads(p: &ActivationsParams, run: usize) -> usize {
        p.threads.unwrap_or(run)
    }

    fn run(&self, p: &ActivationsParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let ds = Dataset::open(&ctx.input("images")?.path)?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        let model = match (&p.backbone, ctx.inputs("model").first()) {
            (Some(b), None) => b.load(ctx.workspace, device, input[0])?,
            (None, Some(m)) => {
                let model = Model::load(&m.path, device)?;
                if model.meta.input != input {
                    return Err(ActivationsError::Size { model: model.meta.input, images: input }.into());
                }
                model
            }
            (Some(_), Some(_)) => {
                return Err(ActivationsError::Both.into());
            }
            (None, None) => {
                return Err(ActivationsError::Neither.into());
            }
        };
        let net = model.net("the activations stage")?;
        let arch = model.meta.architecture.as_ref().expect("a declared model has its architecture");
        let shapes = arch.describe(model.meta.input, model.meta.outputs)?;
        let recorded = recorded_layers(net.layers.iter().map(|(name, _)| name.as_str()), p.layers.as_deref())?;
        let folder = Heatmaps::open(&ctx.output("activations")?);
        let mut writers = Vec::with_capacity(recorded.len());
        for &k in &recorded {
            let dims = shapes[k].input.dims();
            let dims = if p.pool == Pool::Channels { dims[..1].to_vec() } else { dims };
            writers.push(NpyWriter::<f32>::create(&folder.layer_path(&net.layers[k].0), &dims)?);
        }
        let rows: Vec<usize> = (0..ds.meta.count).collect();
        ctx.progress.start(rows.len() as u64, "activations");
        match &p.backbone {
            // A backbone runs on one libtorch thread per batch (its bytes must not depend on the thread count), so
            // the stage's threads each take every n-th batch with a copy of the model of their own, and the batches
            // are written in order: the same bytes as one thread, n times as fast.
            Some(b) if device == tch::Device::Cpu && tch::get_num_threads() > 1 => {
                let workers = tch::get_num_threads() as usize;
                let images = ctx.input("images")?.path.clone();
                let (workspace, channels) = (ctx.workspace.to_path_buf(), input[0]);
                let progress = &ctx.progress;
                let batches: Vec<&[usize]> = rows.chunks(p.batch_size.max(1)).collect();
                let (send, receive) = std::sync::mpsc::channel();
                std::thread::scope(|scope| -> Result<(), StageError> {
                    for w in 0..workers {
                        let (send, batches, images, workspace) = (send.clone(), &batches, &images, &workspace);
                        let recorded = &recorded;
                        scope.spawn(move || {
                            let work = || -> Result<(), StageError> {
                                let model = b.load(workspace, device, channels)?;
                                let ds = Dataset::open(images)?;
                                for (i, chunk) in batches.iter().enumerate().skip(w).step_by(workers) {
                                    let values = runtime::with_threads(backbone::THREADS, || {
                                        pooled_batch(&model, &ds, chunk, recorded, p.pool)
                                    });
                                    let failed = values.is_err();
                                    if send.send((i, values)).is_err() || failed {
                                        break;
                                    }
                                }
                                Ok(())
                            };
                            if let Err(e) = work() {
                                let _ = send.send((usize::MAX, Err(e)));
                            }
                        });
                    }
                    drop(send);
                    // Batches arrive in any order; each is written when those before it have been.
                    let mut waiting = std::collections::BTreeMap::new();
                    let mut next = 0;
                    for (i, values) in receive {
                        waiting.insert(i, values?);
                        while let Some(layers) = waiting.remove(&next) {
                            for (values, writer) in layers.iter().zip(writers.iter_mut()) {
                                writer.append(values)?;
                            }
                            progress.inc(batches[next].len() as u64);
                            next += 1;
                        }
                    }
                    Ok(())
                })?;
            }
            _ => {
                let threads =
                    if p.backbone.is_some() { backbone::THREADS } else { tch::get_num_threads().max(1) as usize };
                runtime::with_threads(threads, || {
                    for_each_activation_batch(&model, &ds, &rows, p.batch_size, &recorded, |chunk, acts| {
                        for (values, writer) in pooled(acts, p.pool)?.iter().zip(writers.iter_mut()) {
                            writer.append(values)?;
                        }
                        ctx.progress.inc(chunk.len() as u64);
                        Ok::<(), StageError>(())
                    })
                })?;
            }
        }
        for w in writers {
            w.finish()?;
        }
        folder.write_ids(ds.ids()?)?;
        // The input of a layer that passes values through unchanged (dropout, flatten) repeats the next layer's: it
        // is marked `pass`, as heatmaps mark theirs, so `cluster` skips the copy.
        let conservation: Vec<ConservationRow> = recorded
            .iter()
            .map(|&k| {
                let (name, op) = &net.layers[k];
                let passes = matches!(op, Op::Dropout(_) | Op::Flatten | Op::Identity);
                ConservationRow {
                    layer: name.clone(),
                    rule: if passes { "pass" } else { "activation" }.into(),
                    worst_relative_deviation: String::new(),
                }
            })
            .collect();
        Ok(folder.write_layers(&conservation)?)
    }
}

/// One batch's activations at the recorded layers, pooled, as the values each layer's file takes.
fn pooled_batch(
    model: &Model,
    ds: &Dataset,
    chunk: &[usize],
    layers: &[usize],
    pool: Pool,
) -> Result<Vec<Vec<f32>>, StageError> {
    let mut out = None;
    for_each_activation_batch(model, ds, chunk, chunk.len(), layers, |_, acts| {
        out = Some(pooled(acts, pool)?);
        Ok::<(), StageError>(())
    })?;
    Ok(out.unwrap_or_default())
}

/// Activations moved to the CPU in single precision and pooled, each layer's values in order.
fn pooled(acts: &[tch::Tensor], pool: Pool) -> Result<Vec<Vec<f32>>, StageError> {
    (acts.iter())
        .map(|a| {
            let a = backbone::pool(a.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float), pool);
            Ok(Vec::try_from(a.contiguous().flatten(0, -1)).map_err(ActivationsError::from)?)
        })
        .collect()
}

/// The indices of the layers to record: every layer, or those named, in the network's order; an unknown name is an
/// error that lists the layers there are.
fn recorded_layers<'a>(
    layers: impl Iterator<Item = &'a str> + Clone,
    wanted: Option<&[String]>,
) -> Result<Vec<usize>, StageError> {
    let Some(wanted) = wanted else { return Ok((0..layers.count()).collect()) };
    if let Some(unknown) = wanted.iter().find(|w| !layers.clone().any(|l| l == w.as_str())) {
        let layers = layers.map(str::to_string).collect();
        return Err(ActivationsError::UnknownLayer { layer: unknown.clone(), layers }.into());
    }
    Ok(layers.enumerate().filter(|(_, l)| wanted.iter().any(|w| w == l)).map(|(k, _)| k).collect())
}

#[cfg(test)]
mod tests {
    use super::ActivationsParams;
    use crate::model::backbone::{FeatureParams, Pool};

    #[test]
    fn select_reads_the_backbone_and_pooling_these_parameters_hold() {
        let p: ActivationsParams = serde_json::from_value(serde_json::json!({
            "backbone": { "architecture": "efficientnet-lite0", "weights": "w.safetensors", "size": [64, 64] },
            "layers": ["_conv_head"],
            "pool": "channels",
        }))
        .unwrap();
        let read: FeatureParams = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        let b = read.backbone.unwrap();
        assert_eq!((b.weights.to_str(), b.size, read.pool), (Some("w.safetensors"), Some([64, 64]), Pool::Channels));
    }
}
