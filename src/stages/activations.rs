//! Stage `activations`: another representation of images to cluster, the DNN's own activations at the input of
//! every layer (the first layer's input is the normalised image itself, so raw pixels come with them). It writes the
//! folder layout of a heatmaps stage, so `cluster` and `select` read either.

use serde::{Deserialize, Serialize};

use crate::artefact::heatmaps::{ConservationRow, Heatmaps};
use crate::artefact::{ANY_DATASET, FEATURES, MODEL};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::Model;
use crate::model::net::Op;
use crate::model::predict::for_each_activation_batch;
use crate::npy::NpyWriter;
use crate::runtime::{self, DeviceChoice};

pub struct Activations;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationsParams {
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default)]
    pub threads: Option<usize>,
}

fn default_batch() -> usize {
    64
}

impl Params for ActivationsParams {
    fn validate(&self) -> Vec<Invalid> {
        if self.batch_size == 0 { vec![Invalid::new("batch_size", "must be at least 1, got 0")] } else { Vec::new() }
    }
}

impl Stage for Activations {
    type Params = ActivationsParams;
    const KIND: &'static str = "activations";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "model", accepts: &[MODEL], many: false, required: true, doc: "the model under analysis" },
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
    const DOC: &'static str = "The DNN's activations at every layer's input, as a representation to cluster.";

    /// The device kind this resolves to enters the key: a GPU computes other bytes.
    fn fingerprints(p: &ActivationsParams) -> Vec<(String, String)> {
        vec![crate::runtime::device_fingerprint(p.device)]
    }

    fn torch_threads(p: &ActivationsParams, run: usize) -> usize {
        p.threads.unwrap_or(run)
    }

    fn run(&self, p: &ActivationsParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let ds = Dataset::open(&ctx.input("images")?.path)?;
        let model = Model::load(&ctx.input("model")?.path, device)?;
        let net = model.net("the activations stage")?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        if model.meta.input != input {
            return Err(StageError::input(format!(
                "the model takes {:?} images, the image set has {input:?}",
                model.meta.input
            )));
        }
        let arch = model.meta.architecture.as_ref().expect("a declared model has its architecture");
        let shapes = arch.describe(input, model.meta.outputs)?;
        let folder = Heatmaps::open(&ctx.output("activations")?);
        let mut writers = Vec::with_capacity(net.layers.len());
        for (row, (name, _)) in shapes.iter().zip(&net.layers) {
            writers.push(NpyWriter::<f32>::create(&folder.layer_path(name), &row.input.dims())?);
        }
        let rows: Vec<usize> = (0..ds.meta.count).collect();
        ctx.progress.start(rows.len() as u64, "activations");
        for_each_activation_batch(&model, &ds, &rows, p.batch_size, |chunk, acts| {
            for (k, writer) in writers.iter_mut().enumerate() {
                let a = acts[k].to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
                let values: Vec<f32> =
                    Vec::try_from(a.flatten(0, -1)).map_err(|e: tch::TchError| StageError::failed(e.to_string()))?;
                writer.append(&values)?;
            }
            ctx.progress.inc(chunk.len() as u64);
            Ok::<(), StageError>(())
        })?;
        for w in writers {
            w.finish()?;
        }
        folder.write_ids(ds.ids()?)?;
        // The input of a layer that passes values through unchanged (dropout, flatten) repeats the next layer's: it
        // is marked `pass`, as heatmaps mark theirs, so `cluster` skips the copy.
        let conservation: Vec<ConservationRow> = net
            .layers
            .iter()
            .enumerate()
            .map(|(k, (name, _))| {
                let passes =
                    net.layers.get(k).is_some_and(|(_, op)| matches!(op, Op::Dropout(_) | Op::Flatten | Op::Identity));
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
