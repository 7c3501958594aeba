//! A declared architecture built on tch: an explicit ordered list of layers (never closures), so LRP can walk them.

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
    /// A batch norm merged into the convolution before it by [`Net::canonise`].
    Merged,
}

/// A network: named layers applied in order.
#[derive(Debug)]
pub struct Net {
    pub layers: Vec<(String, Op)>,
    pub input: [usize; 3],
    pub outputs: usize,
}

/// The tch path of a dotted PyTorch name: `features.0` → `root / "features" / "0"`.
fn sub<'a>(root: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    name.split('.').fold(root.clone(), |p, part| p.sub(part))
}

/// Parameters start at zero when a layer is built: [`Net::initialise`] draws them from a stage's stream, or
/// weights are loaded over them. Nothing is drawn from libtorch's process-wide generator.
const ZERO: nn::Init = nn::Init::Const(0.0);

impl Net {
    /// Builds the layers under `root` with every parameter at zero (see [`Net::initialise`]); shapes are checked
    /// first, so a mismatch is an error naming the layer.
    pub fn new(arch: &Architecture, root: &nn::Path<'_>, input: [usize; 3], outputs: usize) -> Result<Net, ArchError> {
        let rows = arch.describe(input, outputs)?;
        let mut layers = Vec::with_capacity(arch.layers.len());
        for (layer, row) in arch.layers.iter().zip(&rows) {
            let p = sub(root, &layer.name);
            let in_ch = row.input.dims()[0] as i64;
            let op = match &layer.kind {
                LayerKind::Conv2d { out_channels, kernel_size, stride, padding, bias } => Op::Conv {
                    layer: nn::conv2d(
                        &p,
                        in_ch,
                        out_channels.resolve(outputs) as i64,
                        *kernel_size as i64,
                        nn::ConvConfig {
                            stride: *stride as i64,
                            padding: *padding as i64,
                            bias: *bias,
                            ws_init: ZERO,
                            bs_init: ZERO,
                            ..Default::default()
                        },
                    ),
                    stride: *stride as i64,
                    padding: *padding as i64,
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
            };
            layers.push((layer.name.clone(), op));
        }
        Ok(Net { layers, input, outputs })
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

    /// Applies one layer: in training mode when `train` holds the draws its dropout takes, else in evaluation mode.
    pub fn apply(op: &Op, x: &Tensor, train: Option<&mut Draws>) -> Tensor {
        match op {
            Op::Conv { layer, .. } => x.apply(layer),
            Op::ConvTranspose { layer, .. } => x.apply(layer),
            Op::Linear(l) => x.apply(l),
            Op::Relu => x.relu(),
            Op::LeakyRelu(slope) => leaky_relu(x, *slope),
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
            Op::Merged => x.shallow_clone(),
        }
    }

    /// Merges every batch norm that directly follows a convolution into that convolution's weights and bias
    /// (LRP's canonisation: the merged network computes the same function in evaluation mode, and relevance then
    /// flows through one linear layer). Returns the names of the merged batch-norm layers.
    pub fn canonise(&mut self) -> Vec<String> {
        let mut merged = Vec::new();
        for i in 1..self.layers.len() {
            let (before, after) = self.layers.split_at_mut(i);
            let (name, op) = &mut after[0];
            let (Op::BatchNorm { layer: bn, eps }, Op::Conv { layer: conv, .. }) = (&*op, &mut before[i - 1].1) else {
                continue;
            };
            tch::no_grad(|| {
                let gamma = bn.ws.as_ref().map_or_else(|| bn.running_var.ones_like(), Tensor::detach);
                let beta = bn.bs.as_ref().map_or_else(|| bn.running_mean.zeros_like(), Tensor::detach);
                let scale = gamma / (&bn.running_var + *eps).sqrt();
                let bias = conv.bs.as_ref().map_or_else(|| bn.running_mean.zeros_like(), Tensor::detach);
                conv.ws = conv.ws.detach() * scale.view([-1, 1, 1, 1]);
                conv.bs = Some((bias - &bn.running_mean) * &scale + beta);
            });
            *op = Op::Merged;
            merged.push(name.clone());
        }
        merged
    }

    /// The output in evaluation mode.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.layers.iter().fold(x.shallow_clone(), |x, (_, op)| Net::apply(op, &x, None))
    }

    /// The output in training mode, dropout masks taken from `draws`.
    pub fn forward_train(&self, x: &Tensor, draws: &mut Draws) -> Tensor {
        self.layers.iter().fold(x.shallow_clone(), |x, (_, op)| Net::apply(op, &x, Some(&mut *draws)))
    }

    /// The input of every layer and, last, the network's output (evaluation mode).
    pub fn forward_layers(&self, x: &Tensor) -> Vec<Tensor> {
        let mut acts = Vec::with_capacity(self.layers.len() + 1);
        let mut x = x.shallow_clone();
        for (_, op) in &self.layers {
            let y = Net::apply(op, &x, None);
            acts.push(x);
            x = y;
        }
        acts.push(x);
        acts
    }
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
}
