//! Declared DNN architectures: named layers read from TOML, with shape inference that names the offending layer
//! instead of letting tch panic.
//!
//! A layer takes the output of the layer declared before it, or names its `inputs` (earlier layers, or `input` for
//! the network's input): a sequential file is a chain, and `add`, `concat` and `mul` layers make it a graph
//! (residual connections, concatenations, squeeze-and-excitation gates). Declaring a layer after its inputs keeps
//! the graph acyclic by construction; the last layer's output is the network's.
//!
//! Layer names follow PyTorch's module names (`features.0`, `layer1.0.conv1`), so parameters are named
//! `features.0.weight` and weights move both ways between PyTorch and `hudd` as safetensors.

pub mod artefact;
pub mod backbone;
pub mod draws;
pub mod fit;
pub mod net;
pub mod onnx;
pub mod ops;
pub mod predict;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A size that is either a number or `"outputs"`: the class or keypoint count of the task, known at build time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Fixed(usize),
    Outputs(OutputsWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputsWord {
    Outputs,
}

impl Size {
    pub fn resolve(self, outputs: usize) -> usize {
        match self {
            Size::Fixed(n) => n,
            Size::Outputs(_) => outputs,
        }
    }
}

fn one() -> usize {
    1
}

fn zero() -> usize {
    0
}

fn yes() -> bool {
    true
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn half() -> f64 {
    0.5
}

fn slope() -> f64 {
    0.01
}

fn bn_eps() -> f64 {
    1e-5
}

fn bn_momentum() -> f64 {
    0.1
}

/// One layer kind with PyTorch's argument names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerKind {
    Conv2d {
        out_channels: Size,
        kernel_size: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default = "zero")]
        padding: usize,
        #[serde(default = "yes")]
        bias: bool,
        /// Channel groups (`groups` = input channels: a depthwise convolution). Left out of `model.json` at 1.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        groups: usize,
    },
    ConvTranspose2d {
        out_channels: Size,
        kernel_size: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default = "zero")]
        padding: usize,
        #[serde(default = "zero")]
        output_padding: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    Linear {
        out_features: Size,
        #[serde(default = "yes")]
        bias: bool,
    },
    Relu,
    LeakyRelu {
        #[serde(default = "slope")]
        negative_slope: f64,
    },
    Relu6,
    Hardswish,
    Hardsigmoid,
    Sigmoid,
    Silu,
    MaxPool2d {
        kernel_size: usize,
        /// Defaults to `kernel_size`, as in PyTorch.
        #[serde(default)]
        stride: Option<usize>,
        #[serde(default = "zero")]
        padding: usize,
    },
    AvgPool2d {
        kernel_size: usize,
        #[serde(default)]
        stride: Option<usize>,
        #[serde(default = "zero")]
        padding: usize,
    },
    AdaptiveAvgPool2d {
        output_size: [usize; 2],
    },
    BatchNorm2d {
        #[serde(default = "bn_eps")]
        eps: f64,
        #[serde(default = "bn_momentum")]
        momentum: f64,
    },
    Dropout {
        #[serde(default = "half")]
        p: f64,
    },
    Flatten,
    /// Its input unchanged (a named point of the graph, e.g. a block's output).
    Identity,
    /// The element-wise sum of its inputs, all of one shape (a residual connection).
    Add,
    /// Its inputs joined along the channels (or, flat, end to end).
    Concat,
    /// The first input scaled element-wise by the second, of the same shape or C×1×1 (a squeeze-and-excitation gate).
    Mul,
}

impl LayerKind {
    /// The integer sizes a layer declares (kernel, stride, padding, channels, features), named, each bounded by
    /// [`MAX_SIZE`] before any shape is computed from them.
    pub fn sizes(&self, outputs: usize) -> Vec<(&'static str, usize)> {
        match self {
            LayerKind::Conv2d { out_channels, kernel_size, stride, padding, groups, .. } => vec![
                ("out_channels", out_channels.resolve(outputs)),
                ("kernel_size", *kernel_size),
                ("stride", *stride),
                ("padding", *padding),
                ("groups", *groups),
            ],
            LayerKind::ConvTranspose2d { out_channels, kernel_size, stride, padding, output_padding, .. } => vec![
                ("out_channels", out_channels.resolve(outputs)),
                ("kernel_size", *kernel_size),
                ("stride", *stride),
                ("padding", *padding),
                ("output_padding", *output_padding),
            ],
            LayerKind::Linear { out_features, .. } => vec![("out_features", out_features.resolve(outputs))],
            LayerKind::MaxPool2d { kernel_size, stride, padding }
            | LayerKind::AvgPool2d { kernel_size, stride, padding } => {
                vec![("kernel_size", *kernel_size), ("stride", stride.unwrap_or(*kernel_size)), ("padding", *padding)]
            }
            LayerKind::AdaptiveAvgPool2d { output_size } => {
                vec![("output_size", output_size[0]), ("output_size", output_size[1])]
            }
            _ => Vec::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            LayerKind::Conv2d { .. } => "conv2d",
            LayerKind::ConvTranspose2d { .. } => "conv_transpose2d",
            LayerKind::Linear { .. } => "linear",
            LayerKind::Relu => "relu",
            LayerKind::LeakyRelu { .. } => "leaky_relu",
            LayerKind::MaxPool2d { .. } => "max_pool2d",
            LayerKind::AvgPool2d { .. } => "avg_pool2d",
            LayerKind::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            LayerKind::BatchNorm2d { .. } => "batch_norm2d",
            LayerKind::Dropout { .. } => "dropout",
            LayerKind::Flatten => "flatten",
            LayerKind::Relu6 => "relu6",
            LayerKind::Hardswish => "hardswish",
            LayerKind::Hardsigmoid => "hardsigmoid",
            LayerKind::Sigmoid => "sigmoid",
            LayerKind::Silu => "silu",
            LayerKind::Identity => "identity",
            LayerKind::Add => "add",
            LayerKind::Concat => "concat",
            LayerKind::Mul => "mul",
        }
    }

    /// Every kind's name, as `kind = "…"` takes it.
    pub const NAMES: [&'static str; 20] = [
        "conv2d",
        "conv_transpose2d",
        "linear",
        "relu",
        "leaky_relu",
        "relu6",
        "hardswish",
        "hardsigmoid",
        "sigmoid",
        "silu",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "batch_norm2d",
        "dropout",
        "flatten",
        "identity",
        "add",
        "concat",
        "mul",
    ];

    /// Whether the layer takes several inputs (`add`, `concat`, `mul`) rather than one.
    pub fn joins(&self) -> bool {
        matches!(self, LayerKind::Add | LayerKind::Concat | LayerKind::Mul)
    }
}

/// A named layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    /// The layers whose outputs it takes (`input`: the network's input), all declared before it; empty: the layer
    /// declared just before it (the network's input for the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(flatten)]
    pub kind: LayerKind,
}

/// The name by which a layer takes the network's input.
pub const INPUT: &str = "input";

/// An architecture file: `[model]` and an ordered `[[layer]]` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub model: ModelHeader,
    #[serde(rename = "layer")]
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelHeader {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The input the architecture is designed for: `[channels, height, width]`.
    pub input: [usize; 3],
    /// `classification` (the last layer's outputs are logits) or `keypoints` (one heatmap per keypoint).
    #[serde(default = "default_head")]
    pub head: Head,
}

fn default_head() -> Head {
    Head::Classification
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    Classification,
    Keypoints,
}

/// A tensor shape without the batch dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Channels, height, width.
    Map(usize, usize, usize),
    Flat(usize),
}

impl Shape {
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Map(c, h, w) => vec![c, h, w],
            Shape::Flat(n) => vec![n],
        }
    }

    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    /// The number of values, or `None` where it does not fit a `usize`.
    pub fn numel_checked(&self) -> Option<usize> {
        self.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Map(c, h, w) => write!(f, "{c}×{h}×{w}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("cannot read architecture {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("layer `{layer}` ({kind}): {message}")]
    Shape { layer: String, kind: &'static str, message: String },
    #[error("duplicate layer name `{0}`")]
    Duplicate(String),
    #[error("no shipped architecture `{name}` (shipped: {shipped}); give a file path (`my/arch.toml`) for your own")]
    Unknown { name: String, shipped: String },
    #[error(
        "invalid layer name `{0}`: names are dot-separated parts of letters, digits and `_` (PyTorch's convention), \
         and `input` names the network's input"
    )]
    Name(String),
    #[error("layer `{layer}`: {message}")]
    Graph { layer: String, message: String },
}

impl From<ArchError> for crate::engine::stage::StageError {
    fn from(e: ArchError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// One row of `hudd model describe`.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    pub name: String,
    pub kind: &'static str,
    /// The layers it takes (`input` for the network's input).
    pub inputs: Vec<String>,
    /// The shape recorded "at its input" (activations, heatmaps): its input's, or for a layer with several inputs,
    /// its output's.
    pub input: Shape,
    pub output: Shape,
    pub params: usize,
}

impl Architecture {
    pub fn load(path: &Path) -> Result<Architecture, ArchError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ArchError::Read { path: path.to_path_buf(), source })?;
        Architecture::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Architecture, ArchError> {
        let arch: Architecture = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|s| {
                let before = &text[..s.start.min(text.len())];
                format!(
                    "{}:{}: ",
                    before.matches('\n').count() + 1,
                    before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1
                )
            });
            ArchError::Parse {
                path: path.to_path_buf(),
                message: format!("{}{}", location.unwrap_or_default(), e.message().trim()),
            }
        })?;
        let mut seen = std::collections::BTreeSet::new();
        for l in &arch.layers {
            let valid = !l.name.is_empty()
                && l.name.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !valid || l.name == INPUT {
                return Err(ArchError::Name(l.name.clone()));
            }
            if !seen.insert(l.name.clone()) {
                return Err(ArchError::Duplicate(l.name.clone()));
            }
        }
        arch.sources()?;
        Ok(arch)
    }

    /// Where each layer's inputs come from, as value indices: 0 is the network's input, `k + 1` the output of
    /// layer `k`. Every input must be declared before the layer that takes it, and every layer but the last must
    /// feed another (a layer whose output goes nowhere is a typo in some `inputs`).
    pub fn sources(&self) -> Result<Vec<Vec<usize>>, ArchError> {
        let mut index = std::collections::HashMap::from([(INPUT, 0usize)]);
        let mut sources = Vec::with_capacity(self.layers.len());
        for (k, layer) in self.layers.iter().enumerate() {
            let err = |message: String| ArchError::Graph { layer: layer.name.clone(), message };
            let from: Vec<usize> = if layer.inputs.is_empty() {
                vec![k]
            } else {
                (layer.inputs.iter())
                    .map(|name| {
                        index.get(name.as_str()).copied().ok_or_else(|| {
                            err(format!(
                                "takes `{name}`, which is no layer declared before it (nor `{INPUT}`, the network's \
                                 input)"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            let arity = match &layer.kind {
                LayerKind::Mul => (from.len() == 2).then_some(()).ok_or("two inputs (the signal, then the gate)"),
                LayerKind::Add | LayerKind::Concat => (from.len() >= 2).then_some(()).ok_or("at least two inputs"),
                _ => (from.len() == 1).then_some(()).ok_or("one input"),
            };
            if let Err(want) = arity {
                return Err(err(format!("{} takes {want}, got {}", layer.kind.name(), from.len())));
            }
            sources.push(from);
            index.insert(layer.name.as_str(), k + 1);
        }
        let mut used = vec![false; self.layers.len() + 1];
        sources.iter().flatten().for_each(|&v| used[v] = true);
        let last = self.layers.len().saturating_sub(1);
        if let Some(k) = (0..last).find(|&k| !used[k + 1]) {
            return Err(ArchError::Graph {
                layer: self.layers[k].name.clone(),
                message: format!(
                    "its output goes to no layer; only the last layer's (`{}`) is the network's",
                    self.layers[last].name
                ),
            });
        }
        Ok(sources)
    }

    /// The architecture as an architecture file's TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an architecture serialises")
    }

    /// Whether some layer names its inputs: the file declares a graph, not a chain.
    pub fn is_graph(&self) -> bool {
        self.layers.iter().any(|l| !l.inputs.is_empty())
    }

    /// Every layer's input and output shape and parameter count for an input and an output count.
    pub fn describe(&self, input: [usize; 3], outputs: usize) -> Result<Vec<LayerInfo>, ArchError> {
        let sources = self.sources()?;
        let input_shape = Shape::Map(input[0], input[1], input[2]);
        bound(INPUT, "input", "values", input_shape.numel_checked(), MAX_VALUES)?;
        let mut shapes = vec![input_shape];
        let name = |v: usize| if v == 0 { INPUT.to_string() } else { self.layers[v - 1].name.clone() };
        let mut rows = Vec::with_capacity(self.layers.len());
        for (layer, from) in self.layers.iter().zip(&sources) {
            for (what, value) in layer.kind.sizes(outputs) {
                bound(&layer.name, layer.kind.name(), what, Some(value), MAX_SIZE)?;
            }
            let given: Vec<(String, &Shape)> = from.iter().map(|&v| (name(v), &shapes[v])).collect();
            let (output, params) = infer(layer, &given, outputs)?;
            bound(&layer.name, layer.kind.name(), "output values per image", output.numel_checked(), MAX_VALUES)?;
            bound(&layer.name, layer.kind.name(), "parameters", Some(params), MAX_VALUES)?;
            rows.push(LayerInfo {
                name: layer.name.clone(),
                kind: layer.kind.name(),
                inputs: given.iter().map(|(n, _)| n.clone()).collect(),
                input: if from.len() == 1 { shapes[from[0]].clone() } else { output.clone() },
                output: output.clone(),
                params,
            });
            shapes.push(output);
        }
        Ok(rows)
    }

    /// The output shape for an input, or the first layer that cannot take what it is given.
    pub fn output_shape(&self, input: [usize; 3], outputs: usize) -> Result<Shape, ArchError> {
        let rows = self.describe(input, outputs)?;
        Ok(rows.last().map_or(Shape::Map(input[0], input[1], input[2]), |r| r.output.clone()))
    }
}

/// The largest kernel, stride, padding, channel or feature count a layer may declare: far beyond any network `hudd`
/// analyses, and small enough that no shape arithmetic overflows.
pub const MAX_SIZE: usize = 1 << 20;

/// The most values a layer may hold for one image, or parameters it may hold (2^30, 4 GiB of 32-bit floats): a
/// declared or imported size beyond it is refused by name before libtorch is asked for the memory.
pub const MAX_VALUES: usize = 1 << 30;

/// Refuses a size above its bound (or one whose product overflows, `None`), naming the layer and the value.
fn bound(layer: &str, kind: &'static str, what: &str, value: Option<usize>, max: usize) -> Result<(), ArchError> {
    match value {
        Some(v) if v <= max => Ok(()),
        _ => Err(ArchError::Shape {
            layer: layer.to_string(),
            kind,
            message: format!(
                "{what} {} exceed the {max} hudd takes",
                value.map_or("beyond 2^64".to_string(), |v| v.to_string())
            ),
        }),
    }
}

/// A parameter count, saturating (a count beyond `usize` is refused by [`bound`] like any count above its bound).
fn product(factors: &[usize]) -> usize {
    factors.iter().fold(1usize, |n, &f| n.saturating_mul(f)).min(usize::MAX / 2)
}

fn conv_out(size: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    (size + 2 * padding).checked_sub(kernel).map(|d| d / stride + 1)
}

/// The output shape of a layer with several inputs (`add`, `concat`, `mul`), each given with its name.
fn join(kind: &LayerKind, inputs: &[(String, &Shape)]) -> Result<Shape, String> {
    let listed = || inputs.iter().map(|(n, s)| format!("`{n}` {s}")).collect::<Vec<_>>().join(", ");
    let first = inputs[0].1;
    match kind {
        LayerKind::Add => match inputs.iter().all(|(_, s)| *s == first) {
            true => Ok(first.clone()),
            false => Err(format!("adds inputs of one shape, got {}", listed())),
        },
        LayerKind::Concat => {
            let mut channels = 0;
            for (_, shape) in inputs {
                match (shape, first) {
                    (Shape::Map(c, h, w), Shape::Map(_, h0, w0)) if (h, w) == (h0, w0) => channels += c,
                    (Shape::Flat(n), Shape::Flat(_)) => channels += n,
                    _ => return Err(format!("joins maps of one height and width (or flat vectors), got {}", listed())),
                }
            }
            Ok(match first {
                Shape::Map(_, h, w) => Shape::Map(channels, *h, *w),
                Shape::Flat(_) => Shape::Flat(channels),
            })
        }
        LayerKind::Mul => match (first, inputs[1].1) {
            (a, b) if a == b => Ok(a.clone()),
            (Shape::Map(c, _, _), Shape::Map(g, 1, 1)) if c == g => Ok(first.clone()),
            _ => Err(format!("scales its first input by a second of the same shape or C×1×1, got {}", listed())),
        },
        _ => unreachable!("join is called for layers with several inputs"),
    }
}

/// The output shape and parameter count of one layer, given its inputs with their names. Long by design: one arm
/// per layer kind, side by side so their shape rules read as one table.
fn infer(layer: &Layer, inputs: &[(String, &Shape)], outputs: usize) -> Result<(Shape, usize), ArchError> {
    let err = |message: String| ArchError::Shape { layer: layer.name.clone(), kind: layer.kind.name(), message };
    if layer.kind.joins() {
        return join(&layer.kind, inputs).map(|shape| (shape, 0)).map_err(err);
    }
    let input = inputs[0].1;
    let map = |what: &str| -> Result<(usize, usize, usize), ArchError> {
        match *input {
            Shape::Map(c, h, w) => Ok((c, h, w)),
            Shape::Flat(n) => {
                Err(err(format!("needs a C×H×W input for {what}, got a flat vector of {n}; is a flatten misplaced?")))
            }
        }
    };
    let positive =
        |name: &str, v: usize| if v == 0 { Err(err(format!("{name} must be at least 1, got 0"))) } else { Ok(()) };
    Ok(match &layer.kind {
        LayerKind::Conv2d { out_channels, kernel_size, stride, padding, bias, groups } => {
            let (c, h, w) = map("a convolution")?;
            positive("kernel_size", *kernel_size)?;
            positive("stride", *stride)?;
            positive("groups", *groups)?;
            let out = out_channels.resolve(outputs);
            positive("out_channels", out)?;
            if c % groups != 0 || out % groups != 0 {
                return Err(err(format!(
                    "groups ({groups}) must divide the input channels ({c}) and out_channels ({out})"
                )));
            }
            let (oh, ow) =
                match (conv_out(h, *kernel_size, *stride, *padding), conv_out(w, *kernel_size, *stride, *padding)) {
                    (Some(a), Some(b)) => (a, b),
                    _ => {
                        return Err(err(format!(
                            "input {input} is smaller than the kernel {kernel_size} with padding {padding}"
                        )));
                    }
                };
            (
                Shape::Map(out, oh, ow),
                product(&[out, c / groups, *kernel_size, *kernel_size]) + if *bias { out } else { 0 },
            )
        }
        LayerKind::ConvTranspose2d { out_channels, kernel_size, stride, padding, output_padding, bias } => {
            let (c, h, w) = map("a transposed convolution")?;
            positive("kernel_size", *kernel_size)?;
            positive("stride", *stride)?;
            let out = out_channels.resolve(outputs);
            positive("out_channels", out)?;
            if output_padding >= stride {
                return Err(err(format!("output_padding ({output_padding}) must be smaller than stride ({stride})")));
            }
            let size = |x: usize| ((x - 1) * stride + kernel_size + output_padding).checked_sub(2 * padding);
            let (oh, ow) = match (size(h), size(w)) {
                (Some(a), Some(b)) if a > 0 && b > 0 => (a, b),
                _ => return Err(err(format!("padding {padding} removes the whole output for input {input}"))),
            };
            (Shape::Map(out, oh, ow), product(&[c, out, *kernel_size, *kernel_size]) + if *bias { out } else { 0 })
        }
        LayerKind::Linear { out_features, bias } => {
            let n = match input {
                Shape::Flat(n) => *n,
                Shape::Map(..) => {
                    return Err(err(format!("needs a flat input, got {input}; add a flatten layer before it")));
                }
            };
            let out = out_features.resolve(outputs);
            positive("out_features", out)?;
            (Shape::Flat(out), product(&[n, out]) + if *bias { out } else { 0 })
        }
        LayerKind::Relu
        | LayerKind::LeakyRelu { .. }
        | LayerKind::Relu6
        | LayerKind::Hardswish
        | LayerKind::Hardsigmoid
        | LayerKind::Sigmoid
        | LayerKind::Silu
        | LayerKind::Identity => (input.clone(), 0),
        LayerKind::Dropout { p } => {
            if !(0.0..1.0).contains(p) {
                return Err(err(format!("p must be in [0, 1), got {p}")));
            }
            (input.clone(), 0)
        }
        LayerKind::MaxPool2d { kernel_size, stride, padding }
        | LayerKind::AvgPool2d { kernel_size, stride, padding } => {
            let (c, h, w) = map("pooling")?;
            positive("kernel_size", *kernel_size)?;
            let stride = stride.unwrap_or(*kernel_size);
            positive("stride", stride)?;
            if 2 * padding > *kernel_size {
                return Err(err(format!("padding ({padding}) must be at most half the kernel ({kernel_size})")));
            }
            match (conv_out(h, *kernel_size, stride, *padding), conv_out(w, *kernel_size, stride, *padding)) {
                (Some(a), Some(b)) => (Shape::Map(c, a, b), 0),
                _ => return Err(err(format!("input {input} is smaller than the kernel {kernel_size}"))),
            }
        }
        LayerKind::AdaptiveAvgPool2d { output_size } => {
            let (c, _, _) = map("pooling")?;
            positive("output_size", output_size[0].min(output_size[1]))?;
            (Shape::Map(c, output_size[0], output_size[1]), 0)
        }
        LayerKind::BatchNorm2d { eps, .. } => {
            let (c, _, _) = map("batch norm")?;
            if !(*eps > 0.0) {
                return Err(err(format!("eps must be above 0, got {eps}")));
            }
            (input.clone(), 2 * c)
        }
        LayerKind::Flatten => (Shape::Flat(input.numel()), 0),
        LayerKind::Add | LayerKind::Concat | LayerKind::Mul => unreachable!("joins are inferred above"),
    })
}

/// The architectures shipped with hudd (`models/*.toml`), compiled into the binary: a copied binary or a cluster
/// node finds them without the source tree.
pub const SHIPPED: [(&str, &str); 8] = [
    ("alexnet", include_str!("../../models/alexnet.toml")),
    ("alexnet-small", include_str!("../../models/alexnet-small.toml")),
    ("efficientnet-lite0", include_str!("../../models/efficientnet-lite0.toml")),
    ("kpnet", include_str!("../../models/kpnet.toml")),
    ("kpnet-small", include_str!("../../models/kpnet-small.toml")),
    ("mobilenet-small", include_str!("../../models/mobilenet-small.toml")),
    ("resnet-small", include_str!("../../models/resnet-small.toml")),
    ("resnet18", include_str!("../../models/resnet18.toml")),
];

/// A bare name (`alexnet-small`) names a shipped architecture; anything with a `/` or a `.toml` suffix is a file.
pub fn is_shipped_name(name: &Path) -> bool {
    let text = name.to_string_lossy();
    !text.contains('/') && !text.ends_with(".toml")
}

/// What a shipped architecture contributes to a stage key: its name and the hash of its text (so a hudd whose
/// shipped file changed recomputes, and no checkout path enters the key). None for a file path.
pub fn shipped_fingerprint(name: &Path) -> Option<(String, String)> {
    if !is_shipped_name(name) {
        return None;
    }
    let text = SHIPPED.iter().find(|(n, _)| Path::new(n) == name).map_or("", |(_, t)| t);
    Some((format!("shipped architecture {}", name.display()), blake3::hash(text.as_bytes()).to_hex().to_string()))
}

/// The rule a manifest's `architecture` breaks, if any: a bare name must be a shipped architecture.
pub fn check_name(name: &Path) -> Option<String> {
    (is_shipped_name(name) && !SHIPPED.iter().any(|(n, _)| Path::new(n) == name)).then(|| {
        let shipped: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
        format!(
            "no shipped architecture `{}` (shipped: {}); give a file path (`my/arch.toml`) for your own",
            name.display(),
            shipped.join(", ")
        )
    })
}

impl Architecture {
    /// A shipped architecture by name, or an architecture file (relative paths from `base`).
    pub fn resolve(name: &Path, base: &Path) -> Result<Architecture, ArchError> {
        if !is_shipped_name(name) {
            return Architecture::load(&base.join(name));
        }
        match SHIPPED.iter().find(|(n, _)| Path::new(n) == name) {
            Some((n, text)) => Architecture::parse(Path::new(&format!("shipped architecture {n}")), text),
            None => Err(ArchError::Unknown {
                name: name.display().to_string(),
                shipped: SHIPPED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

/// Number of outputs a dataset's task needs: classes, or keypoints (two targets each).
pub fn outputs_for(target: &crate::dataset::Target) -> usize {
    match target {
        crate::dataset::Target::Classification { classes } => classes.len(),
        crate::dataset::Target::Regression { targets } => targets.len() / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(layers: &str) -> Architecture {
        Architecture::parse(Path::new("t.toml"), &format!("[model]\nname = \"t\"\ninput = [3, 32, 32]\n{layers}"))
            .unwrap()
    }

    #[test]
    fn shapes_and_parameter_counts_follow_pytorch() {
        let a = arch(
            "[[layer]]\nname = \"f.0\"\nkind = \"conv2d\"\nout_channels = 8\nkernel_size = 3\npadding = 1\n\
             [[layer]]\nname = \"f.1\"\nkind = \"max_pool2d\"\nkernel_size = 2\n\
             [[layer]]\nname = \"flatten\"\nkind = \"flatten\"\n\
             [[layer]]\nname = \"c.0\"\nkind = \"linear\"\nout_features = \"outputs\"\n",
        );
        let rows = a.describe([3, 32, 32], 10).unwrap();
        assert_eq!(rows[0].output, Shape::Map(8, 32, 32));
        assert_eq!(rows[0].params, 8 * 3 * 9 + 8);
        assert_eq!(rows[1].output, Shape::Map(8, 16, 16));
        assert_eq!(rows[2].output, Shape::Flat(2048));
        assert_eq!(rows[3].output, Shape::Flat(10));
        assert_eq!(rows[3].params, 2048 * 10 + 10);
    }

    #[test]
    fn a_shape_mismatch_names_the_layer() {
        let a = arch("[[layer]]\nname = \"c.0\"\nkind = \"linear\"\nout_features = 4\n");
        let e = a.describe([3, 32, 32], 10).unwrap_err().to_string();
        assert_eq!(e, "layer `c.0` (linear): needs a flat input, got 3×32×32; add a flatten layer before it");
        let a = arch("[[layer]]\nname = \"f.0\"\nkind = \"conv2d\"\nout_channels = 4\nkernel_size = 7\n");
        let e = a.describe([3, 4, 4], 10).unwrap_err().to_string();
        assert!(e.contains("layer `f.0` (conv2d): input 3×4×4 is smaller than the kernel 7"), "{e}");
    }

    #[test]
    fn transposed_convolutions_upsample_like_pytorch() {
        let a = arch(
            "[[layer]]\nname = \"d.0\"\nkind = \"conv_transpose2d\"\nout_channels = 5\nkernel_size = 4\nstride = 2\npadding = 1\n",
        );
        assert_eq!(a.output_shape([3, 16, 16], 0).unwrap(), Shape::Map(5, 32, 32));
    }
}
