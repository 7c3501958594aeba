//! ONNX import: a `.onnx` file (the format automotive toolchains exchange) translated into a declared architecture
//! and its weights under the architecture's parameter names.
//!
//! The protobuf is parsed with prost; `proto.rs` was generated once from the ONNX package's `onnx.proto` with
//! prost-build and protox (a protobuf compiler in Rust, so no `protoc`), and is committed: building hudd needs
//! neither. Nodes are read in the file's order, which ONNX requires to be topological, so every layer is declared
//! after its inputs. Supported operators: Conv, Gemm, MatMul (with a following Add of a constant as its bias),
//! Relu, Clip (0..6 as ReLU6), MaxPool, AveragePool, GlobalAveragePool (or ReduceMean over height and width),
//! BatchNormalization, Add, Mul, Concat,
//! Flatten, Reshape (to a vector per image), Sigmoid, HardSigmoid, HardSwish, Identity, Dropout; any other is
//! refused naming the operator and the node.
//!
//! Layer names come from the node names PyTorch's exporter writes (`/layer1/layer1.0/conv1/Conv` →
//! `layer1.0.conv1`; an operator in a module's own forward, such as a residual `Add`, → `layer1.0.add`).

#[allow(clippy::all, clippy::pedantic)]
mod proto;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use prost::Message;
use tch::Tensor;

use super::{Architecture, Head, INPUT, Layer, LayerKind, ModelHeader, Size};
use proto::{AttributeProto, NodeProto, TensorProto};

/// Why an ONNX file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an ONNX model: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: node `{node}` ({op}): {message}")]
    Node { path: PathBuf, node: String, op: String, message: String },
    #[error(
        "{path}: node `{node}` uses the operator `{op}`, which hudd cannot declare (it takes Conv, Gemm, MatMul, Relu, \
         Clip, MaxPool, AveragePool, GlobalAveragePool, ReduceMean, BatchNormalization, Add, Mul, Concat, Flatten, \
         Reshape, Sigmoid, HardSigmoid, HardSwish, Identity, Dropout)"
    )]
    Unsupported { path: PathBuf, node: String, op: String },
    #[error("{path}: {message}")]
    Graph { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Arch { path: PathBuf, source: super::ArchError },
}

/// An imported model: its declared architecture and its weights, named `<layer>.weight` and so on.
pub struct Imported {
    pub architecture: Architecture,
    pub weights: Vec<(String, Tensor)>,
}

/// The largest ONNX file read: protobuf's own limit (2 GiB); a larger model keeps its weights as external data.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// Reads an ONNX file and translates it; its weights are checked against the architecture (shapes, finite values)
/// here, so a model the `model` stage would refuse is refused at import.
pub fn import(path: &Path) -> Result<Imported, OnnxError> {
    let model = decode(path)?;
    let name = path.file_stem().map_or("imported".into(), |s| s.to_string_lossy().to_string());
    let imported = Translator::new(path, &model, &name)?.run(&model)?;
    imported.check_weights(path)?;
    Ok(imported)
}

/// The files beside an ONNX model that hold its tensors (ONNX's external data, which PyTorch's newer exporter
/// writes to `<model>.onnx.data`), each once, in order: a stage that imports the model reads them, so they enter its
/// key. A location outside the model's folder is refused as at import.
pub fn external_files(path: &Path) -> Result<Vec<PathBuf>, OnnxError> {
    let model = decode(path)?;
    let dir = folder(path);
    let graph_err = |message: String| OnnxError::Graph { path: path.to_path_buf(), message };
    let Some(graph) = model.graph.as_ref() else { return Ok(Vec::new()) };
    let constants = graph.node.iter().flat_map(|n| &n.attribute).filter_map(|a| a.t.as_ref());
    let mut files = BTreeSet::new();
    for t in graph.initializer.iter().chain(constants) {
        if let Some(external) = External::of(t, dir).map_err(graph_err)? {
            files.insert(external.file);
        }
    }
    Ok(files.into_iter().collect())
}

/// The folder a model lies in (`.` for a bare file name), where its external data must lie.
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An ONNX file's model: a regular file of at most [`MAX_FILE_BYTES`], decoded.
fn decode(path: &Path) -> Result<proto::ModelProto, OnnxError> {
    let bytes = crate::regular::read(path, MAX_FILE_BYTES)
        .map_err(|source| OnnxError::Read { path: path.to_path_buf(), source })?;
    proto::ModelProto::decode(bytes.as_slice())
        .map_err(|e| OnnxError::Decode { path: path.to_path_buf(), message: e.to_string() })
}

impl Imported {
    /// Every weight finite and of the shape its layer declares: the checks the `model` stage makes when it loads
    /// them, made on a var store of the imported architecture.
    fn check_weights(&self, path: &Path) -> Result<(), OnnxError> {
        let graph_err = |message: String| OnnxError::Graph { path: path.to_path_buf(), message };
        let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let arch = &self.architecture;
        super::net::Net::new(arch, &vs.root(), arch.model.input, 0)
            .map_err(|source| OnnxError::Arch { path: path.to_path_buf(), source })?;
        let weights = self.weights.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        super::artefact::assign_weights(&mut vs, weights, path).map_err(|e| match e {
            super::artefact::ModelError::Weights { message, .. } => graph_err(message),
            other => graph_err(other.to_string()),
        })
    }
}

/// The value of an integer or float attribute list, or a single value.
fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .map(|a: &AttributeProto| if a.ints.is_empty() { a.i.into_iter().collect() } else { a.ints.clone() })
}

fn float(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name() == name).and_then(|a| a.f)
}

/// A constant's values as f32, with its shape.
type Constant = (Vec<f32>, Vec<i64>);

/// A tensor `hudd` reads: its values, or the name of an element type it does not read (a float16 weight), which is
/// an error only where a layer takes it.
enum Value {
    Numbers(Constant),
    Other(&'static str),
}

/// ONNX's element types by number (`TensorProto.DataType`), for messages.
fn type_name(data_type: i32) -> &'static str {
    match data_type {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        16 => "bfloat16",
        _ => "an unknown element type",
    }
}

/// Where a tensor's bytes lie outside the model file: a file beside the model and the byte range in it.
struct External {
    file: PathBuf,
    offset: u64,
    length: Option<u64>,
}

impl External {
    /// The external data a tensor names, checked: its `location` a relative path inside the model's folder (no
    /// `..`, no absolute path, no link leading out: ONNX's own CVE-2024-27318 read files anywhere), `offset` and
    /// `length` non-negative integers. `None` for a tensor stored in the model file.
    fn of(t: &TensorProto, dir: &Path) -> Result<Option<External>, String> {
        const EXTERNAL: i32 = 1;
        if t.data_location() as i32 != EXTERNAL {
            return Ok(None);
        }
        let entry = |key: &str| t.external_data.iter().find(|e| e.key() == key).map(|e| e.value().to_string());
        let location =
            entry("location").ok_or_else(|| format!("tensor `{}`: external data without a location", t.name()))?;
        let outside = || {
            format!(
                "tensor `{}`: its external data `{location}` lies outside the model's folder {}; hudd reads only \
                 files beside the model",
                t.name(),
                dir.display()
            )
        };
        let relative = Path::new(&location);
        if location.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
        {
            return Err(outside());
        }
        let file = dir.join(relative);
        // A link inside the folder may still lead out of it. A file that does not exist is named by the read.
        let inside = match std::fs::canonicalize(&file) {
            Ok(f) => std::fs::canonicalize(dir).is_ok_and(|d| f.starts_with(d)),
            Err(_) => true,
        };
        if !inside {
            return Err(outside());
        }
        let number = |key: &str| -> Result<Option<u64>, String> {
            entry(key)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        format!(
                            "tensor `{}`: external data `{key}` is `{v}`, not a non-negative whole number",
                            t.name()
                        )
                    })
                })
                .transpose()
        };
        Ok(Some(External { file, offset: number("offset")?.unwrap_or(0), length: number("length")? }))
    }
}

/// A tensor's values as f32 (float32 or int64 tensors), with its shape; tensors of other element types are named
/// by their type. Data stored beside the model is read from `dir`, exactly the bytes the shape needs.
fn values(t: &TensorProto, dir: &Path) -> Result<Value, String> {
    const FLOAT: i32 = 1;
    const INT64: i32 = 7;
    if let Some(d) = t.dims.iter().find(|&&d| d < 0) {
        return Err(format!("tensor `{}` has a negative dimension {d} in its shape {:?}", t.name(), t.dims));
    }
    let count = t
        .dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .filter(|&n| n <= super::MAX_VALUES as u64)
        .ok_or_else(|| {
            format!(
                "tensor `{}`: its shape {:?} holds more than the {} values hudd takes",
                t.name(),
                t.dims,
                super::MAX_VALUES
            )
        })?;
    let width: u64 = match t.data_type() {
        FLOAT => 4,
        INT64 => 8,
        other => return Ok(Value::Other(type_name(other))),
    };
    let bytes = count * width;
    let external = External::of(t, dir)?;
    let read;
    let raw: Option<&[u8]> = match &external {
        Some(e) => {
            if let Some(length) = e.length.filter(|&l| l != bytes) {
                return Err(format!(
                    "tensor `{}`: its external data is {length} bytes long, its shape {:?} needs {bytes}",
                    t.name(),
                    t.dims
                ));
            }
            read = crate::regular::read_at(&e.file, e.offset, bytes)
                .map_err(|err| format!("tensor `{}`: cannot read {}: {err}", t.name(), e.file.display()))?;
            Some(&read)
        }
        None => t.raw_data.as_deref(),
    };
    if let Some(raw) = raw
        && raw.len() as u64 != bytes
    {
        return Err(format!("tensor `{}` holds {} bytes, its shape {:?} needs {bytes}", t.name(), raw.len(), t.dims));
    }
    let data: Vec<f32> = match (t.data_type(), raw) {
        (FLOAT, Some(raw)) => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        (FLOAT, None) => t.float_data.clone(),
        (_, Some(raw)) => {
            raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect()
        }
        (_, None) => t.int64_data.iter().map(|&v| v as f32).collect(),
    };
    if data.len() as u64 != count {
        return Err(format!("tensor `{}` holds {} values, its shape {:?} needs {count}", t.name(), data.len(), t.dims));
    }
    Ok(Value::Numbers((data, t.dims.clone())))
}

/// `/layer1/layer1.0/conv1/Conv` → `layer1.0.conv1`: scope parts that qualify the one before them replace it.
fn module_path(node_name: &str) -> String {
    let mut parts: Vec<&str> = node_name.split('/').filter(|p| !p.is_empty()).collect();
    parts.pop(); // the operator
    let mut path = String::new();
    let mut last = "";
    for part in parts {
        if !last.is_empty() && part.starts_with(&format!("{last}.")) {
            path.truncate(path.len() - last.len());
            path.push_str(part);
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
        }
        last = part;
    }
    path.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }).collect()
}

struct Translator<'a> {
    path: &'a Path,
    /// Constants: initializers and Constant nodes.
    constants: HashMap<String, Constant>,
    /// Initializers and constants of an element type hudd does not read, with its name.
    others: HashMap<String, &'static str>,
    /// Each ONNX value name → the layer that produces it (`input` for the image).
    producer: HashMap<String, String>,
    layers: Vec<Layer>,
    weights: Vec<(String, Tensor)>,
    names: BTreeSet<String>,
    header: ModelHeader,
    /// How many nodes read each value.
    readers: HashMap<String, usize>,
}

impl<'a> Translator<'a> {
    fn new(path: &'a Path, model: &proto::ModelProto, name: &str) -> Result<Translator<'a>, OnnxError> {
        let graph_err = |message: String| OnnxError::Graph { path: path.to_path_buf(), message };
        let graph = model.graph.as_ref().ok_or_else(|| graph_err("the model has no graph".into()))?;
        let dir = folder(path);
        let (mut constants, mut others) = (HashMap::new(), HashMap::new());
        for t in &graph.initializer {
            match values(t, dir).map_err(graph_err)? {
                Value::Numbers(v) => drop(constants.insert(t.name().to_string(), v)),
                Value::Other(kind) => drop(others.insert(t.name().to_string(), kind)),
            }
        }
        let inputs: Vec<&proto::ValueInfoProto> = (graph.input.iter())
            .filter(|i| !constants.contains_key(i.name()) && !others.contains_key(i.name()))
            .collect();
        let [image] = inputs[..] else {
            return Err(graph_err(format!("hudd takes a model with one image input, this one has {}", inputs.len())));
        };
        let dims: Vec<i64> = image
            .r#type
            .as_ref()
            .and_then(|t| match &t.value {
                Some(proto::type_proto::Value::TensorType(tensor)) => tensor.shape.as_ref(),
                _ => None,
            })
            .map(|shape| {
                shape
                    .dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) => *v,
                        _ => -1,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let input = match dims[..] {
            [_, c, h, w] if c > 0 && h > 0 && w > 0 => [c as usize, h as usize, w as usize],
            _ => {
                return Err(graph_err(format!(
                    "the input `{}` must be N×C×H×W with C, H and W fixed, got {dims:?}",
                    image.name()
                )));
            }
        };
        Ok(Translator {
            path,
            constants,
            others,
            producer: HashMap::from([(image.name().to_string(), INPUT.to_string())]),
            layers: Vec::new(),
            weights: Vec::new(),
            names: BTreeSet::new(),
            readers: graph.node.iter().flat_map(|n| n.input.iter()).fold(HashMap::new(), |mut m, v| {
                *m.entry(v.clone()).or_insert(0) += 1;
                m
            }),
            header: ModelHeader {
                name: name.to_string(),
                description: format!(
                    "imported from {}",
                    path.file_name().map_or(String::new(), |f| f.to_string_lossy().to_string())
                ),
                input,
                head: Head::Classification,
            },
        })
    }

    fn run(mut self, model: &proto::ModelProto) -> Result<Imported, OnnxError> {
        let graph = model.graph.as_ref().expect("checked");
        for (index, node) in graph.node.iter().enumerate() {
            self.node(index, node)?;
        }
        let output = graph.output.first().map(|o| o.name().to_string()).unwrap_or_default();
        let last = self.layers.last().map(|l| l.name.clone()).unwrap_or_default();
        if self.producer.get(&output) != Some(&last) {
            return Err(OnnxError::Graph {
                path: self.path.to_path_buf(),
                message: format!("the graph's output `{output}` must come from its last node"),
            });
        }
        // Each layer names its inputs only where it does not take the layer before it.
        for k in 0..self.layers.len() {
            let before = if k == 0 { INPUT.to_string() } else { self.layers[k - 1].name.clone() };
            if self.layers[k].inputs == [before] {
                self.layers[k].inputs.clear();
            }
        }
        let architecture = Architecture { model: self.header, layers: self.layers };
        let arch_err = |source| OnnxError::Arch { path: self.path.to_path_buf(), source };
        let architecture = Architecture::parse(self.path, &architecture.to_toml()).map_err(arch_err)?;
        architecture.describe(architecture.model.input, 0).map_err(arch_err)?;
        Ok(Imported { architecture, weights: self.weights })
    }

    fn err(&self, node: &NodeProto, message: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            path: self.path.to_path_buf(),
            node: node.name().to_string(),
            op: node.op_type().to_string(),
            message: message.into(),
        }
    }

    /// A fresh layer name for a node: its module path (`layer1.0.conv1`); for an operator a module's forward applies
    /// (`Add`, `Mul`, `Concat`), the module's path and the operator (`layer1.0.add`, or `add` at the top); a name
    /// already taken gets `_2`, `_3`, ….
    fn name_for(&mut self, index: usize, node: &NodeProto) -> String {
        let op = node.op_type().to_ascii_lowercase();
        // PyTorch's newer exporter names nodes `node_Conv_95` but keeps parameter names (`layer1.0.conv1.weight`).
        let from_weight = (node.input.get(1)).and_then(|w| w.strip_suffix(".weight")).filter(|n| {
            n.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        });
        let path = match from_weight {
            Some(name) if node.name().starts_with("node_") || !node.name().contains('/') => name.to_string(),
            _ => module_path(node.name()),
        };
        let functional = matches!(node.op_type(), "Add" | "Mul" | "Concat");
        let base = match (path.is_empty(), functional) {
            (true, true) => op,
            (true, false) if node.name().is_empty() => format!("{op}_{index}"),
            (true, false) => op,
            (false, true) => format!("{path}.{op}"),
            (false, false) => path,
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.names.contains(&name) || name == INPUT {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn constant(&self, node: &NodeProto, i: usize) -> Option<&Constant> {
        node.input.get(i).and_then(|n| self.constants.get(n))
    }

    /// A constant input as a tensor of `rank` dimensions (any rank for `None`).
    fn tensor(&self, node: &NodeProto, i: usize, what: &str, rank: Option<usize>) -> Result<Tensor, OnnxError> {
        if let Some(kind) = node.input.get(i).and_then(|n| self.others.get(n)) {
            return Err(self.err(node, format!("its {what} is a {kind} tensor; hudd reads float32 weights")));
        }
        let (data, dims) =
            self.constant(node, i).ok_or_else(|| self.err(node, format!("its {what} is not a constant")))?;
        if let Some(rank) = rank.filter(|&r| r != dims.len()) {
            return Err(self.err(node, format!("its {what} must have {rank} dimensions, got the shape {dims:?}")));
        }
        Ok(Tensor::from_slice(data).view(dims.as_slice()))
    }

    /// The layers that produce a node's non-constant inputs.
    fn sources(&self, node: &NodeProto) -> Result<Vec<String>, OnnxError> {
        (node.input.iter().filter(|n| !n.is_empty() && !self.constants.contains_key(*n)))
            .map(|n| match (self.producer.get(n), self.others.get(n)) {
                (Some(layer), _) => Ok(layer.clone()),
                (None, Some(kind)) => {
                    Err(self.err(node, format!("its input `{n}` is a {kind} tensor; hudd reads float32 weights")))
                }
                (None, None) => Err(self.err(node, format!("its input `{n}` is produced by no earlier node"))),
            })
            .collect()
    }

    fn square(&self, node: &NodeProto, attr: &str, default: i64) -> Result<usize, OnnxError> {
        let v = ints(node, attr).unwrap_or_default();
        match v[..] {
            [] => Ok(default as usize),
            [a, b] if a == b && a >= 0 => Ok(a as usize),
            [a, b, c, d] if a == b && b == c && c == d && a >= 0 => Ok(a as usize),
            _ => Err(self.err(node, format!("`{attr}` must be the same on every side, got {v:?}"))),
        }
    }

    // Long by design: one arm per ONNX operator `hudd` maps, each a few lines; splitting it would scatter them.
    fn node(&mut self, index: usize, node: &NodeProto) -> Result<(), OnnxError> {
        let op = node.op_type();
        if !node.domain().is_empty() && node.domain() != "ai.onnx" {
            return Err(self.err(
                node,
                format!("its operator comes from the domain `{}`; hudd takes ONNX's own operators", node.domain()),
            ));
        }
        let Some(output) = node.output.first().filter(|o| !o.is_empty()).cloned() else {
            return Err(self.err(node, "it has no output"));
        };
        if op == "Constant" {
            let dir = folder(self.path);
            let tensor = node.attribute.iter().find(|a| a.name() == "value").and_then(|a| a.t.as_ref());
            let value = tensor.map(|t| values(t, dir)).transpose().map_err(|e| self.err(node, e))?;
            match value {
                Some(Value::Numbers(value)) => drop(self.constants.insert(output, value)),
                Some(Value::Other(kind)) => drop(self.others.insert(output, kind)),
                None => return Err(self.err(node, "a Constant hudd can read holds a tensor in `value`")),
            }
            return Ok(());
        }
        // A MatMul's bias: `Add(matmul, constant)` folds into the linear layer before it.
        if op == "Add" && self.constant(node, 1).is_some() {
            if self.fold_bias(node)? {
                return Ok(());
            }
            return Err(self.err(node, "adding a constant is supported only as the bias of the MatMul before it"));
        }
        let inputs = self.sources(node)?;
        let name = self.name_for(index, node);
        let kind = match op {
            "Conv" => {
                if ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
                    return Err(self.err(node, "dilated convolutions are not supported"));
                }
                let w = self.tensor(node, 1, "weight", Some(4))?;
                let size = w.size();
                let kernel = self.square(node, "kernel_shape", size[2])?;
                if size[2] != size[3] {
                    return Err(self.err(node, format!("the kernel must be square, got {:?}", &size[2..])));
                }
                let bias = node.input.len() > 2 && !node.input[2].is_empty();
                self.weights.push((format!("{name}.weight"), w.shallow_clone()));
                if bias {
                    let b = self.tensor(node, 2, "bias", Some(1))?;
                    self.weights.push((format!("{name}.bias"), b));
                }
                let groups = ints(node, "group").and_then(|g| g.first().copied()).unwrap_or(1);
                if groups < 1 {
                    return Err(self.err(node, format!("`group` must be at least 1, got {groups}")));
                }
                LayerKind::Conv2d {
                    out_channels: Size::Fixed(size[0] as usize),
                    kernel_size: kernel,
                    stride: self.square(node, "strides", 1)?,
                    padding: self.square(node, "pads", 0)?,
                    bias,
                    groups: groups as usize,
                }
            }
            "Gemm" | "MatMul" => {
                let trans_b = ints(node, "transB").and_then(|v| v.first().copied()).unwrap_or(0) == 1;
                let alpha = float(node, "alpha").unwrap_or(1.0);
                let beta = float(node, "beta").unwrap_or(1.0);
                if ints(node, "transA").is_some_and(|v| v.first() == Some(&1)) || alpha != 1.0 || beta != 1.0 {
                    return Err(self.err(node, "only Gemm with transA = 0, alpha = beta = 1 is a linear layer"));
                }
                let w = self.tensor(node, 1, "weight", Some(2))?;
                // PyTorch's layout: out × in.
                let w = if trans_b { w } else { w.transpose(0, 1).contiguous() };
                let out = w.size()[0] as usize;
                self.weights.push((format!("{name}.weight"), w));
                let bias = op == "Gemm" && node.input.len() > 2 && !node.input[2].is_empty();
                if bias {
                    let b = self.tensor(node, 2, "bias", None)?;
                    self.weights.push((format!("{name}.bias"), b.view([-1])));
                }
                LayerKind::Linear { out_features: Size::Fixed(out), bias }
            }
            "Relu" => LayerKind::Relu,
            "Clip" => {
                let bound = |i: usize, attr: &str| {
                    self.constant(node, i).and_then(|(v, _)| v.first().copied()).or_else(|| float(node, attr))
                };
                match (bound(1, "min"), bound(2, "max")) {
                    (Some(lo), Some(hi)) if lo == 0.0 && hi == 6.0 => LayerKind::Relu6,
                    (Some(0.0), None) => LayerKind::Relu,
                    (lo, hi) => {
                        let show = |v: Option<f32>| v.map_or("none".to_string(), |v| v.to_string());
                        return Err(self.err(
                            node,
                            format!("only Clip(0, 6) (ReLU6) is supported, got min {} and max {}", show(lo), show(hi)),
                        ));
                    }
                }
            }
            "MaxPool" | "AveragePool" => {
                if ints(node, "ceil_mode").is_some_and(|v| v.first() == Some(&1)) {
                    return Err(self.err(node, "ceil_mode = 1 is not supported"));
                }
                let kernel = self.square(node, "kernel_shape", 0)?;
                let stride = Some(self.square(node, "strides", 1)?);
                let padding = self.square(node, "pads", 0)?;
                if op == "MaxPool" {
                    LayerKind::MaxPool2d { kernel_size: kernel, stride, padding }
                } else {
                    if padding > 0 && ints(node, "count_include_pad").and_then(|v| v.first().copied()).unwrap_or(0) == 0
                    {
                        return Err(
                            self.err(node, "padded average pooling must count the padding (count_include_pad = 1)")
                        );
                    }
                    LayerKind::AvgPool2d { kernel_size: kernel, stride, padding }
                }
            }
            "GlobalAveragePool" => LayerKind::AdaptiveAvgPool2d { output_size: [1, 1] },
            // PyTorch's newer exporter writes a global average pool as a mean over the spatial axes.
            "ReduceMean" => {
                let axes = ints(node, "axes")
                    .or_else(|| self.constant(node, 1).map(|(v, _)| v.iter().map(|&a| a as i64).collect()));
                let spatial = axes.as_deref().is_some_and(|a| {
                    let mut a: Vec<i64> = a.iter().map(|&x| if x < 0 { x + 4 } else { x }).collect();
                    a.sort_unstable();
                    a == [2, 3]
                });
                let keep = ints(node, "keepdims").and_then(|v| v.first().copied()).unwrap_or(1) == 1;
                if !spatial || !keep {
                    let axes = axes.map_or("none".to_string(), |a| format!("{a:?}"));
                    return Err(self.err(node, format!("only a mean over the height and width keeping them (a global average pool) is supported, got axes {axes}, keepdims {keep}")));
                }
                LayerKind::AdaptiveAvgPool2d { output_size: [1, 1] }
            }
            "BatchNormalization" => {
                for (i, part) in [(1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")] {
                    let t = self.tensor(node, i, part, Some(1))?;
                    self.weights.push((format!("{name}.{part}"), t));
                }
                LayerKind::BatchNorm2d { eps: float(node, "epsilon").unwrap_or(1e-5) as f64, momentum: 0.1 }
            }
            "Add" => LayerKind::Add,
            "Mul" => LayerKind::Mul,
            "Concat" => {
                if ints(node, "axis").and_then(|v| v.first().copied()) != Some(1) {
                    return Err(self.err(node, "only concatenation along the channels (axis 1) is supported"));
                }
                LayerKind::Concat
            }
            "Flatten" => {
                if ints(node, "axis").and_then(|v| v.first().copied()).unwrap_or(1) != 1 {
                    return Err(self.err(node, "only Flatten with axis 1 (one vector per image) is supported"));
                }
                LayerKind::Flatten
            }
            "Reshape" => match self.constant(node, 1).map(|(v, _)| v.clone()).as_deref() {
                Some([_, b]) if *b == -1.0 || *b > 0.0 => LayerKind::Flatten,
                other => {
                    return Err(self.err(
                        node,
                        match other {
                            Some(shape) => {
                                format!("only a reshape to one vector per image is supported, got the shape {shape:?}")
                            }
                            None => {
                                "only a reshape to a constant shape (one vector per image) is supported".to_string()
                            }
                        },
                    ));
                }
            },
            "Sigmoid" => LayerKind::Sigmoid,
            "HardSwish" => LayerKind::Hardswish,
            "HardSigmoid" => {
                let (alpha, beta) = (float(node, "alpha").unwrap_or(0.2), float(node, "beta").unwrap_or(0.5));
                if (alpha - 1.0 / 6.0).abs() > 1e-6 || (beta - 0.5).abs() > 1e-6 {
                    return Err(self.err(
                        node,
                        format!("only PyTorch's Hardsigmoid (alpha 1/6, beta 1/2) is supported, got {alpha}, {beta}"),
                    ));
                }
                LayerKind::Hardsigmoid
            }
            "Identity" | "Dropout" => LayerKind::Identity,
            _ => {
                return Err(OnnxError::Unsupported {
                    path: self.path.to_path_buf(),
                    node: node.name().to_string(),
                    op: op.to_string(),
                });
            }
        };
        let inputs = match kind {
            // The gate (the smaller input, C×1×1) goes second.
            LayerKind::Mul => self.order_gate(node, inputs)?,
            _ => inputs,
        };
        self.producer.insert(output, name.clone());
        self.layers.push(Layer { name, inputs, kind });
        Ok(())
    }

    /// Puts a `Mul`'s gate second: the input produced after a global pool (shape C×1×1) is the gate.
    fn order_gate(&self, node: &NodeProto, inputs: Vec<String>) -> Result<Vec<String>, OnnxError> {
        if inputs.len() != 2 {
            return Err(self.err(
                node,
                "a Mul of two computed inputs (a signal and its gate) is supported, not a scaling by a constant",
            ));
        }
        let arch = Architecture { model: self.header.clone(), layers: self.layers.clone() };
        let rows = arch
            .describe(self.header.input, 0)
            .map_err(|source| OnnxError::Arch { path: self.path.to_path_buf(), source })?;
        let numel = |name: &str| rows.iter().find(|r| r.name == name).map_or(0, |r| r.output.numel());
        let mut inputs = inputs;
        if numel(&inputs[0]) < numel(&inputs[1]) {
            inputs.swap(0, 1);
        }
        Ok(inputs)
    }

    /// Folds `Add(x, constant)` into the linear layer producing `x` as its bias; false if `x` is no such layer or
    /// another node reads `x` too.
    fn fold_bias(&mut self, node: &NodeProto) -> Result<bool, OnnxError> {
        if node.input.first().and_then(|n| self.readers.get(n)) != Some(&1) {
            return Ok(false);
        }
        let Some(layer) = node.input.first().and_then(|n| self.producer.get(n)).cloned() else { return Ok(false) };
        let Some(k) = self.layers.iter().position(|l| l.name == layer) else { return Ok(false) };
        let LayerKind::Linear { bias: false, .. } = self.layers[k].kind else { return Ok(false) };
        let b = self.tensor(node, 1, "bias", None)?.view([-1]);
        self.weights.push((format!("{layer}.bias"), b));
        if let LayerKind::Linear { bias, .. } = &mut self.layers[k].kind {
            *bias = true;
        }
        self.producer.insert(node.output.first().cloned().unwrap_or_default(), layer);
        Ok(true)
    }
}
