//! A declared architecture built on tch: an explicit list of layers in declared (topological) order with the
//! values each takes (never closures), so LRP can walk the graph backwards.

use tch::{Tensor, nn};

use super::draws::{self, Draws};
use super::{ArchError, Architecture, LayerKind};

/// One built layer.
#[derive(Debug)]
pub enum Op {
    /// tch keeps its configs private, so the hyperparameters LRP needs are kept beside the layer.
    Conv {
        layer: nn::Conv2D,
        stride: i64,
        padding: i64,
        groups: i64,
    },
    ConvTranspose {
        layer: nn::ConvTranspose2D,
        stride: i64,
        padding: i64,
        output_padding: i64,
    },
    Linear(nn::Linear),
    Relu,
    LeakyRelu(f64),
    Relu6,
    Hardswish,
    Hardsigmoid,
    Sigmoid,
    Silu,
    MaxPool {
        kernel: i64,
        stride: i64,
        padding: i64,
    },
    AvgPool {
        kernel: i64,
        stride: i64,
        padding: i64,
    },
    AdaptiveAvgPool([i64; 2]),
    BatchNorm {
        layer: nn::BatchNorm,
        eps: f64,
    },
    Dropout(f64),
    Flatten,
    Identity,
    /// The sum of its inputs.
    Add,
    /// Its inputs joined along dimension 1.
    Concat,
    /// Its first input times its second (broadcast).
    Mul,
    /// A batch norm merged into the convolution before it by [`Net::canonise`].
    Merged,
}

impl Op {
    /// The declared kind (`conv2d`, `add`, …); a merged batch norm is still a `batch_norm2d`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv2d",
            Op::ConvTranspose { .. } => "conv_transpose2d",
            Op::Linear(_) => "linear",
            Op::Relu => "relu",
            Op::LeakyRelu(_) => "leaky_relu",
            Op::Relu6 => "relu6",
            Op::Hardswish => "hardswish",
            Op::Hardsigmoid => "hardsigmoid",
            Op::Sigmoid => "sigmoid",
            Op::Silu => "silu",
            Op::MaxPool { .. } => "max_pool2d",
            Op::AvgPool { .. } => "avg_pool2d",
            Op::AdaptiveAvgPool(_) => "adaptive_avg_pool2d",
            Op::BatchNorm { .. } | Op::Merged => "batch_norm2d",
            Op::Dropout(_) => "dropout",
            Op::Flatten => "flatten",
            Op::Identity => "identity",
            Op::Add => "add",
            Op::Concat => "concat",
            Op::Mul => "mul",
        }
    }

    /// Whether it takes several inputs.
    pub fn joins(&self) -> bool {
        matches!(self, Op::Add | Op::Concat | Op::Mul)
    }
}

/// A network: named layers in declared order, each reading values computed before it.
///
/// Values are numbered: 0 is the network's input, `k + 1` the output of layer `k`; the last is the network's output.
#[derive(Debug)]
pub struct Net {
    pub layers: Vec<(String, Op)>,
    /// The values each layer takes, in order.
    pub sources: Vec<Vec<usize>>,
    /// The value recorded "at a layer's input" (activations, heatmaps): its one input, or, for a layer with several
    /// inputs, its own output.
    pub recorded: Vec<usize>,
    pub input: [usize; 3],
    pub outputs: usize,
    /// Whether images and convolution weights are laid out channels-last (see [`Net::for_features`]).
    channels_last: bool,
}

/// The tch path of a dotted PyTorch name: `features.0` → `root / "features" / "0"`.
fn sub<'a>(root: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    name.split('.').fold(root.clone(), |p, part| p.sub(part))
}

/// Parameters start at zero when a layer is built: [`Net::initialise`] draws them from a stage's stream, or
/// weights are loaded over them. Nothing is drawn from libtorch's process-wide generator.
const ZERO: nn::Init = nn::Init::Const(0.0);

impl Net {
    /// The position of the layer named `name` among the layers.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|(n, _)| n == name)
    }

    /// Builds the layers under `root` with every parameter at zero (see [`Net::initialise`]); shapes are checked
    /// first, so a mismatch is an error naming the layer. Long by design: one arm per layer kind.
    pub fn new(arch: &Architecture, root: &nn::Path<'_>, input: [usize; 3], outputs: usize) -> Result<Net, ArchError> {
        let rows = arch.describe(input, outputs)?;
        let sources = arch.sources()?;
        let mut layers = Vec::with_capacity(arch.layers.len());
        for (layer, row) in arch.layers.iter().zip(&rows) {
            let p = sub(root, &layer.name);
            let in_ch = row.input.dims()[0] as i64;
            let op = match &layer.kind {
                LayerKind::Conv2d { out_channels, kernel_size, stride, padding, bias, groups } => Op::Conv {
                    layer: nn::conv2d(
                        &p,
                        in_ch,
                        out_channels.resolve(outputs) as i64,
                        *kernel_size as i64,
                        nn::ConvConfig {
                            stride: *stride as i64,
                            padding: *padding as i64,
                            groups: *groups as i64,
                            bias: *bias,
                            ws_init: ZERO,
                            bs_init: ZERO,
                            ..Default::default()
                        },
                    ),
                    stride: *stride as i64,
                    padding: *padding as i64,
                    groups: *groups as i64,
                },
                LayerKind::ConvTranspose2d { out_channels, kernel_size, stride, padding, output_padding, bias } => {
                    Op::ConvTranspose {
                        layer: nn::conv_transpose2d(
                            &p,
                            in_ch,
                            out_channels.resolve(outputs) as i64,
                            *kernel_size as i64,
                            nn::ConvTransposeConfig {
                                stride: *stride as i64,
                                padding: *padding as i64,
                                output_padding: *output_padding as i64,
                                bias: *bias,
                                ws_init: ZERO,
                                bs_init: ZERO,
                                ..Default::default()
                            },
                        ),
                        stride: *stride as i64,
                        padding: *padding as i64,
                        output_padding: *output_padding as i64,
                    }
                }
                LayerKind::Linear { out_features, bias } => Op::Linear(nn::linear(
                    &p,
                    row.input.numel() as i64,
                    out_features.resolve(outputs) as i64,
                    nn::LinearConfig { bias: *bias, ws_init: ZERO, bs_init: Some(ZERO) },
                )),
                LayerKind::Relu => Op::Relu,
                LayerKind::LeakyRelu { negative_slope } => Op::LeakyRelu(*negative_slope),
                LayerKind::MaxPool2d { kernel_size, stride, padding } => Op::MaxPool {
                    kernel: *kernel_size as i64,
                    stride: stride.unwrap_or(*kernel_size) as i64,
                    padding: *padding as i64,
                },
                LayerKind::AvgPool2d { kernel_size, stride, padding } => Op::AvgPool {
                    kernel: *kernel_size as i64,
                    stride: stride.unwrap_or(*kernel_size) as i64,
                    padding: *padding as i64,
                },
                LayerKind::AdaptiveAvgPool2d { output_size } => {
                    Op::AdaptiveAvgPool([output_size[0] as i64, output_size[1] as i64])
                }
                LayerKind::BatchNorm2d { eps, momentum } => Op::BatchNorm {
                    layer: nn::batch_norm2d(
                        &p,
                        in_ch,
                        nn::BatchNormConfig {
                            eps: *eps,
                            momentum: *momentum,
                            ws_init: ZERO,
                            bs_init: ZERO,
                            ..Default::default()
                        },
                    ),
                    eps: *eps,
                },
                LayerKind::Dropout { p } => Op::Dropout(*p),
                LayerKind::Flatten => Op::Flatten,
                LayerKind::Relu6 => Op::Relu6,
                LayerKind::Hardswish => Op::Hardswish,
                LayerKind::Hardsigmoid => Op::Hardsigmoid,
                LayerKind::Sigmoid => Op::Sigmoid,
                LayerKind::Silu => Op::Silu,
                LayerKind::Identity => Op::Identity,
                LayerKind::Add => Op::Add,
                LayerKind::Concat => Op::Concat,
                LayerKind::Mul => Op::Mul,
            };
            layers.push((layer.name.clone(), op));
        }
        let recorded =
            sources.iter().enumerate().map(|(k, from)| if from.len() == 1 { from[0] } else { k + 1 }).collect();
        Ok(Net { layers, sources, recorded, input, outputs, channels_last: false })
    }

    /// Draws every parameter from `draws` with the distributions tch gives a new layer (PyTorch's): convolutions
    /// and linear layers Kaiming-uniform weights (ReLU gain, fan in: `U(±√(6 / fan_in))`), linear biases
    /// `U(±1 / √in_features)`, convolution biases 0, batch norm scales `U(0, 1)` and shifts 0; layer by layer in
    /// declared order, weight before bias.
    pub fn initialise(&mut self, draws: &mut Draws) {
        for (_, op) in &mut self.layers {
            let (ws, bs, bias_bound) = match op {
                Op::Conv { layer, .. } => (&mut layer.ws, layer.bs.as_mut(), None),
                Op::ConvTranspose { layer, .. } => (&mut layer.ws, layer.bs.as_mut(), None),
                Op::Linear(layer) => {
                    let bound = 1.0 / (layer.ws.size()[1].max(1) as f64).sqrt();
                    (&mut layer.ws, layer.bs.as_mut(), Some(bound))
                }
                Op::BatchNorm { layer, .. } => {
                    if let Some(ws) = layer.ws.as_mut() {
                        let values = draws.uniform(&ws.size(), 0.0, 1.0, ws.device());
                        draws::assign(ws, &values);
                    }
                    continue;
                }
                _ => continue,
            };
            let bound = (6.0 / draws::fan_in(ws)).sqrt();
            let values = draws.uniform(&ws.size(), -bound, bound, ws.device());
            draws::assign(ws, &values);
            if let (Some(bs), Some(bound)) = (bs, bias_bound) {
                let values = draws.uniform(&bs.size(), -bound, bound, bs.device());
                draws::assign(bs, &values);
            }
        }
    }

    /// Applies one layer to its inputs (see [`Net::apply`]).
    pub fn apply_all(op: &Op, inputs: &[&Tensor], train: Option<&mut Draws>) -> Tensor {
        match op {
            Op::Add => inputs[1..].iter().fold(inputs[0].shallow_clone(), |sum, x| sum + *x),
            Op::Concat => Tensor::cat(inputs, 1),
            Op::Mul => inputs[0] * inputs[1],
            _ => Net::apply(op, inputs[0], train),
        }
    }

    /// Applies a layer that takes one input: in training mode when `train` holds the draws its dropout takes, else
    /// in evaluation mode.
    pub fn apply(op: &Op, x: &Tensor, train: Option<&mut Draws>) -> Tensor {
        match op {
            Op::Conv { layer, .. } => x.apply(layer),
            Op::ConvTranspose { layer, .. } => x.apply(layer),
            Op::Linear(l) => x.apply(l),
            Op::Relu => x.relu(),
            Op::LeakyRelu(slope) => leaky_relu(x, *slope),
            Op::Relu6 => x.clamp(0.0, 6.0),
            Op::Hardswish => x.hardswish(),
            Op::Hardsigmoid => x.hardsigmoid(),
            Op::Sigmoid => x.sigmoid(),
            Op::Silu => x.silu(),
            Op::MaxPool { kernel, stride, padding } => {
                x.max_pool2d([*kernel, *kernel], [*stride, *stride], [*padding, *padding], [1, 1], false)
            }
            Op::AvgPool { kernel, stride, padding } => {
                x.avg_pool2d([*kernel, *kernel], [*stride, *stride], [*padding, *padding], false, true, None::<i64>)
            }
            Op::AdaptiveAvgPool(size) => x.adaptive_avg_pool2d(*size),
            Op::BatchNorm { layer, .. } => x.apply_t(layer, train.is_some()),
            Op::Dropout(p) => match train {
                Some(draws) if *p > 0.0 => x * draws.dropout_mask(x, *p),
                _ => x.shallow_clone(),
            },
            Op::Flatten => x.flatten(1, -1),
            Op::Identity | Op::Merged => x.shallow_clone(),
            Op::Add | Op::Concat | Op::Mul => unreachable!("a layer with several inputs goes through apply_all"),
        }
    }

    /// Merges every batch norm that directly follows a convolution into that convolution's weights and bias
    /// (LRP's canonisation: the merged network computes the same function in evaluation mode, and relevance then
    /// flows through one linear layer). Returns the names of the merged batch-norm layers.
    ///
    /// In a graph, only a convolution whose output goes to the batch norm alone is merged: another reader of the
    /// convolution's output would see the batch norm's effect.
    pub fn canonise(&mut self) -> Vec<String> {
        let mut readers = vec![0usize; self.layers.len() + 1];
        self.sources.iter().flatten().for_each(|&v| readers[v] += 1);
        let mut merged = Vec::new();
        for i in 1..self.layers.len() {
            let [v] = self.sources[i][..] else { continue };
            if v == 0 || readers[v] != 1 {
                continue;
            }
            let (before, after) = self.layers.split_at_mut(i);
            let (name, op) = &mut after[0];
            let (Op::BatchNorm { layer: bn, eps }, Op::Conv { layer: conv, .. }) = (&*op, &mut before[v - 1].1) else {
                continue;
            };
            tch::no_grad(|| {
                let gamma = bn.ws.as_ref().map_or_else(|| bn.running_var.ones_like(), Tensor::detach);
                let beta = bn.bs.as_ref().map_or_else(|| bn.running_mean.zeros_like(), Tensor::detach);
                let scale = gamma * (&bn.running_var + *eps).rsqrt();
                let bias = conv.bs.as_ref().map_or_else(|| bn.running_mean.zeros_like(), Tensor::detach);
                conv.ws = conv.ws.detach() * scale.view([-1, 1, 1, 1]);
                conv.bs = Some((bias - &bn.running_mean) * &scale + beta);
            });
            *op = Op::Merged;
            merged.push(name.clone());
        }
        merged
    }

    /// Readies a network that only describes images (a pretrained backbone, never trained or explained here) for
    /// fast forward passes on a CPU: its batch norms merged into their convolutions ([`Net::canonise`]) and every
    /// 4-D tensor laid out channels-last (height, width, then channel in memory; the same values, in the order
    /// oneDNN's convolutions read fastest). Outputs equal the unmerged network's up to rounding (a test checks
    /// EfficientNet-Lite0's against PyTorch's), not bit for bit.
    pub fn for_features(&mut self) {
        self.canonise();
        for (_, op) in &mut self.layers {
            if let Op::Conv { layer, .. } = op {
                layer.ws = tch::no_grad(|| channels_last(&layer.ws));
            }
        }
        self.channels_last = true;
    }

    /// Runs the layers in order; a value is dropped after its last reader unless `keep` says to keep it.
    fn run(&self, x: &Tensor, mut train: Option<&mut Draws>, keep: impl Fn(usize) -> bool) -> Vec<Option<Tensor>> {
        let mut last_reader = vec![usize::MAX; self.layers.len() + 1];
        for (k, from) in self.sources.iter().enumerate() {
            from.iter().for_each(|&v| last_reader[v] = k);
        }
        let mut values = Vec::with_capacity(self.layers.len() + 1);
        values.push(Some(if self.channels_last { channels_last(x) } else { x.shallow_clone() }));
        for (k, ((_, op), from)) in self.layers.iter().zip(&self.sources).enumerate() {
            let inputs: Vec<&Tensor> =
                from.iter().map(|&v| values[v].as_ref().expect("a value is kept until its last reader")).collect();
            let pointwise = match op {
                Op::Conv { layer, stride: 1, padding: 0, groups: 1 } if self.channels_last && train.is_none() => {
                    pointwise(inputs[0], layer)
                }
                _ => None,
            };
            let y = pointwise.unwrap_or_else(|| Net::apply_all(op, &inputs, train.as_deref_mut()));
            from.iter().filter(|&&v| last_reader[v] == k && !keep(v)).for_each(|&v| values[v] = None);
            values.push(Some(y));
        }
        values
    }

    /// The output in evaluation mode.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.run(x, None, |_| false).pop().flatten().expect("the output")
    }

    /// The output in training mode, dropout masks taken from `draws`.
    pub fn forward_train(&self, x: &Tensor, draws: &mut Draws) -> Tensor {
        self.run(x, Some(draws), |_| false).pop().flatten().expect("the output")
    }

    /// Every value (evaluation mode): the input, then each layer's output (the last is the network's output).
    pub fn forward_values(&self, x: &Tensor) -> Vec<Tensor> {
        self.run(x, None, |_| true).into_iter().map(|v| v.expect("every value is kept")).collect()
    }

    /// The value recorded at the input of each of `layers` (see [`Net::recorded`]), in evaluation mode; every other
    /// value is dropped after its last reader, so memory stays that of the widest few values.
    pub fn forward_at(&self, x: &Tensor, layers: &[usize]) -> Vec<Tensor> {
        let wanted: Vec<usize> = layers.iter().map(|&k| self.recorded[k]).collect();
        let values = self.run(x, None, |v| wanted.contains(&v));
        wanted.iter().map(|&v| values[v].as_ref().expect("a wanted value is kept").shallow_clone()).collect()
    }

    /// Whether all of the network's computation passes through value `v`: no layer reads a value from before `v`
    /// and writes one after it. Only there does the relevance sum to the output's.
    pub fn is_cut(&self, v: usize) -> bool {
        self.sources.iter().enumerate().all(|(k, from)| from.iter().all(|&u| !(u < v && v < k + 1)))
    }
}

/// A 4-D tensor with the same sizes and values whose strides put channels last (PyTorch's `channels_last` memory
/// format, which tch does not name: the strides alone carry it); any other tensor as it is.
fn channels_last(x: &Tensor) -> Tensor {
    if x.dim() == 4 { x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]) } else { x.shallow_clone() }
}

/// A 1×1 convolution with stride 1 of a channels-last batch of 32-bit floats on the CPU, as one matrix product of
/// its pixels (`n·h·w` rows of `c` channels, contiguous in that memory) with the weights' transpose, the bias
/// summed in first; `None` for any other convolution, tensor or layout. libtorch sends such a convolution on one
/// thread with fewer than 16 images to MKL's matrix product, which runs its vendor-independent branch here (no FMA,
/// four lanes; EfficientNet-Lite0's features of 8,016 images took 196.5 s that way, 111.6 s this way);
/// `matrixmultiply` runs on the calling thread and sums each output in the same order on every x86-64 CPU with FMA
/// (its AVX2 and AVX-512 kernels alike), so the bytes depend neither on the thread count nor on the vendor.
fn pointwise(x: &Tensor, conv: &nn::Conv2D) -> Option<Tensor> {
    use ndarray::{ArrayView2, ArrayViewMut2};
    use tch::{Device, Kind};
    let (&[n, c, h, w], &[out, c_w, 1, 1]) = (&x.size()[..], &conv.ws.size()[..]) else { return None };
    let cpu_floats = |t: &Tensor| t.kind() == Kind::Float && t.device() == Device::Cpu;
    if c != c_w || !cpu_floats(x) || !cpu_floats(&conv.ws) || conv.bs.as_ref().is_some_and(|b| !cpu_floats(b)) {
        return None;
    }
    // Pixels by channels, and the weights as `out` rows of `c`: both contiguous (copied only if they were not).
    let pixels = x.permute([0, 2, 3, 1]).contiguous();
    let weights = conv.ws.permute([0, 2, 3, 1]).contiguous().view([out, c]);
    let rows = (n * h * w) as usize;
    if rows == 0 || c == 0 || out == 0 {
        return None;
    }
    let y = match &conv.bs {
        Some(b) => b.detach().view([1, 1, 1, out]).expand([n, h, w, out], false).contiguous(),
        None => Tensor::zeros([n, h, w, out], (Kind::Float, Device::Cpu)),
    };
    let (c, out) = (c as usize, out as usize);
    // SAFETY: `pixels`, `weights` and `y` are contiguous 32-bit float tensors on the CPU of `rows × c`, `out × c`
    // and `rows × out` values (checked above or made so), alive to the end of this function; `y` was just allocated
    // here and nothing else reads or writes it while the product writes into it.
    unsafe {
        let a = ArrayView2::from_shape_ptr((rows, c), pixels.data_ptr() as *const f32);
        let b = ArrayView2::from_shape_ptr((out, c), weights.data_ptr() as *const f32);
        let mut sums = ArrayViewMut2::from_shape_ptr((rows, out), y.data_ptr() as *mut f32);
        ndarray::linalg::general_mat_mul(1.0, &a, &b.t(), 1.0, &mut sums);
    }
    Some(y.permute([0, 3, 1, 2]))
}

/// Leaky ReLU with any slope (tch's `leaky_relu` fixes it at 0.01).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Tensor {
    x.clamp_min(0.0) + x.clamp_max(0.0) * slope
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;

    #[test]
    fn canonisation_merges_batch_norm_into_the_convolution_without_changing_outputs() {
        let arch = Architecture::parse(
            std::path::Path::new("bn.toml"),
            "[model]\nname = \"bn\"\ninput = [3, 8, 8]\n\
             [[layer]]\nname = \"f.0\"\nkind = \"conv2d\"\nout_channels = 4\nkernel_size = 3\npadding = 1\n\
             [[layer]]\nname = \"f.1\"\nkind = \"batch_norm2d\"\n\
             [[layer]]\nname = \"f.2\"\nkind = \"relu\"\n",
        )
        .unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut net = Net::new(&arch, &vs.root(), [3, 8, 8], 1).unwrap();
        let mut draws = Draws::new(4, draws::Stream::Init);
        net.initialise(&mut draws);
        if let Op::BatchNorm { layer, .. } = &mut net.layers[1].1 {
            tch::no_grad(|| {
                layer.running_mean.copy_(&Tensor::from_slice(&[0.3f32, -0.2, 0.1, 0.0]));
                layer.running_var.copy_(&Tensor::from_slice(&[2.0f32, 0.5, 1.0, 4.0]));
                layer.ws.as_mut().unwrap().copy_(&Tensor::from_slice(&[1.5f32, 0.5, -1.0, 2.0]));
                layer.bs.as_mut().unwrap().copy_(&Tensor::from_slice(&[0.1f32, 0.2, -0.3, 0.0]));
            });
        }
        let x = draws.normal(&[2, 3, 8, 8]);
        let before = tch::no_grad(|| net.forward(&x));
        assert_eq!(net.canonise(), ["f.1"]);
        assert!(matches!(net.layers[1].1, Op::Merged));
        let after = tch::no_grad(|| net.forward(&x));
        let diff = f64::try_from((after - before).abs().max()).unwrap();
        assert!(diff < 1e-5, "{diff}");
    }

    /// A residual block: a convolution and batch norm whose output a sum reads beside the block's input.
    fn residual() -> (nn::VarStore, Net, Tensor) {
        let arch = Architecture::parse(
            std::path::Path::new("res.toml"),
            "[model]\nname = \"res\"\ninput = [3, 8, 8]\n\
             [[layer]]\nname = \"stem\"\nkind = \"conv2d\"\nout_channels = 4\nkernel_size = 3\npadding = 1\n\
             [[layer]]\nname = \"conv\"\nkind = \"conv2d\"\nout_channels = 4\nkernel_size = 3\npadding = 1\ngroups = 4\n\
             [[layer]]\nname = \"bn\"\nkind = \"batch_norm2d\"\n\
             [[layer]]\nname = \"add\"\nkind = \"add\"\ninputs = [\"bn\", \"stem\"]\n\
             [[layer]]\nname = \"relu\"\nkind = \"relu6\"\n\
             [[layer]]\nname = \"pool\"\nkind = \"adaptive_avg_pool2d\"\noutput_size = [1, 1]\n\
             [[layer]]\nname = \"flat\"\nkind = \"flatten\"\n",
        )
        .unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut net = Net::new(&arch, &vs.root(), [3, 8, 8], 1).unwrap();
        let mut draws = Draws::new(6, draws::Stream::Init);
        net.initialise(&mut draws);
        if let Op::BatchNorm { layer, .. } = &mut net.layers[2].1 {
            tch::no_grad(|| {
                layer.running_mean.copy_(&Tensor::from_slice(&[0.3f32, -0.2, 0.1, 0.0]));
                layer.running_var.copy_(&Tensor::from_slice(&[2.0f32, 0.5, 1.0, 4.0]));
            });
        }
        let x = draws.normal(&[2, 3, 8, 8]);
        (vs, net, x)
    }

    #[test]
    fn the_inputs_of_chosen_layers_are_those_every_value_gives() {
        let (_vs, net, x) = residual();
        let all = tch::no_grad(|| net.forward_values(&x));
        // The sum's input is its own output (it has two); the relu's and the flatten's are single values.
        let layers = [3, 1, 4, 6, 1];
        let at = tch::no_grad(|| net.forward_at(&x, &layers));
        assert_eq!(at.len(), layers.len());
        for (a, &k) in at.iter().zip(&layers) {
            assert!(a.equal(&all[net.recorded[k]]), "layer {}", net.layers[k].0);
        }
    }

    #[test]
    fn a_network_readied_for_features_gives_the_same_values_up_to_rounding_in_channels_last_memory() {
        let (_vs, mut net, x) = residual();
        let layers = [3, 4, 6];
        let before = tch::no_grad(|| net.forward_at(&x, &layers));
        net.for_features();
        assert!(matches!(net.layers[2].1, Op::Merged), "the batch norm read by the convolution alone is merged");
        let after = tch::no_grad(|| net.forward_at(&x, &layers));
        for ((b, a), &k) in before.iter().zip(&after).zip(&layers) {
            assert_eq!(a.size(), b.size());
            let diff = f64::try_from((a - b).abs().max()).unwrap();
            assert!(diff < 1e-5, "layer {}: {diff}", net.layers[k].0);
        }
        // The sum's output is laid out channels-last: channels vary fastest in memory.
        assert_eq!(after[0].stride()[1], 1);
    }

    #[test]
    fn a_pointwise_convolution_readied_for_features_is_libtorchs_up_to_rounding_with_or_without_bias() {
        let arch = Architecture::parse(
            std::path::Path::new("pw.toml"),
            "[model]\nname = \"pw\"\ninput = [3, 9, 7]\n\
             [[layer]]\nname = \"stem\"\nkind = \"conv2d\"\nout_channels = 12\nkernel_size = 3\npadding = 1\n\
             [[layer]]\nname = \"expand\"\nkind = \"conv2d\"\nout_channels = 40\nkernel_size = 1\n\
             [[layer]]\nname = \"relu\"\nkind = \"relu6\"\n\
             [[layer]]\nname = \"project\"\nkind = \"conv2d\"\nout_channels = 5\nkernel_size = 1\nbias = false\n\
             [[layer]]\nname = \"strided\"\nkind = \"conv2d\"\nout_channels = 5\nkernel_size = 1\nstride = 2\n",
        )
        .unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut net = Net::new(&arch, &vs.root(), [3, 9, 7], 1).unwrap();
        net.initialise(&mut Draws::new(11, draws::Stream::Init));
        let x = Draws::new(12, draws::Stream::Init).normal(&[3, 3, 9, 7]);
        // The inputs of `relu`, `project` and `strided`, and the output: that of `strided`, which libtorch computes.
        let layers = [2, 3, 4];
        let all = |net: &Net| {
            tch::no_grad(|| {
                let mut values = net.forward_at(&x, &layers);
                values.push(net.forward(&x));
                values
            })
        };
        let before = all(&net);
        net.for_features();
        let after = all(&net);
        for ((b, a), k) in before.iter().zip(&after).zip(layers.iter().chain([&5])) {
            assert_eq!(a.size(), b.size());
            let diff = f64::try_from((a - b).abs().max()).unwrap();
            let scale = f64::try_from(b.abs().max()).unwrap();
            assert!(diff < 1e-5 * scale.max(1.0), "value {k}: {diff}");
            assert_eq!(a.stride()[1], 1, "value {k}: channels-last");
        }
        // The 1×1 convolution of stride 1 is the product, libtorch's convolution up to rounding.
        let input = tch::no_grad(|| net.forward_at(&x, &[1]))[0].shallow_clone();
        let Op::Conv { layer, .. } = &net.layers[1].1 else { panic!("expand is a convolution") };
        let product = tch::no_grad(|| pointwise(&input, layer)).expect("a 1×1 convolution of stride 1");
        let libtorch = tch::no_grad(|| input.apply(layer));
        assert!(f64::try_from((&product - &libtorch).abs().max()).unwrap() < 1e-5);
        // A batch laid out channels-first is copied to channels-last first: the same bytes.
        let first = input.contiguous();
        let Op::Conv { layer, .. } = &net.layers[1].1 else { unreachable!() };
        assert!(tch::no_grad(|| pointwise(&first, layer)).unwrap().equal(&product));
    }
}
