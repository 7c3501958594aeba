//! Layer-wise Relevance Propagation over a declared network: rules, composites, and the backward sweep that
//! gives the relevance at the input of every layer (HUDD's internal heatmaps) for a whole batch at once.
//!
//! In a graph the sweep visits layers in reverse declared order; the relevance of a value read by several layers
//! is the sum of what each sends back. An `add` splits relevance in proportion to each input's contribution (as
//! Zennit's `Norm` rule on its ResNet canonizer's `Sum`), a `concat` by channel, and a `mul` gives it all to its
//! first input, the signal, none to the gate (as LRP for gated units, Arras et al. 2017).
//!
//! Each rule is the "modified gradient" form used by Zennit: for a layer `f` whose parameters (and inputs) the rule
//! modifies into `f̃`, `z = f̃(a)`, `s = R / stab(z)`, `c = ∂(z · s)/∂a` (with `s` held constant) and `R_in = a · c`.
//! For layers with weights `c` is the transposed operation applied to `s` (a transposed convolution, a matrix
//! product), computed directly; pools go through tch's autograd. Rules that keep the layer's own weights (LRP-0, ε)
//! reuse the forward pass's output as `z`, so the whole sweep costs about one forward and one backward pass.

pub mod batch;

use tch::{Kind, Tensor};

use crate::model::net::{Net, Op};

/// A propagation rule for one layer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Rule {
    /// LRP-0 with a tiny unsigned stabiliser (HUDD's rule for convolutions and max-pool: `z + 1e-9`).
    Zero,
    /// LRP-ε: `z + ε·sign(z)`.
    Epsilon { epsilon: f64 },
    /// LRP-γ: weights `w + γ·w⁺` (and bias `b + γ·b⁺`).
    Gamma { gamma: f64 },
    /// z⁺ as Zennit defines it (αβ with α = 1, β = 0): positive contributions only, that is positive inputs
    /// with positive weights plus the positive bias, and negative inputs with negative weights.
    ZPlus,
    /// HUDD's z⁺: positive weights only, bias ignored, `1e-9` added to the denominator. On non-negative inputs
    /// (after a ReLU, as at every linear layer of HUDD's AlexNet) it differs from `z-plus` only by the bias.
    ZPlusNoBias,
    /// LRP-αβ: `α·R⁺ − β·R⁻` from the positive and negative contributions (`α − β = 1` conserves relevance).
    AlphaBeta { alpha: f64, beta: f64 },
    /// Flat: relevance spread uniformly over each output's receptive field.
    Flat,
    /// w²: relevance spread in proportion to the squared weights.
    WSquare,
    /// z^B for the first layer of bounded inputs: `low` and `high` are the input's bounds (after normalisation).
    Bounded { low: f64, high: f64 },
    /// Relevance passes through unchanged (activations, dropout, flatten).
    Pass,
    /// Max-pool: all relevance to the window's maximum (the gradient of max).
    WinnerTakesAll,
}

/// The stabiliser of HUDD's LRP-0 rule.
pub const HUDD_STABILISER: f64 = 1e-9;

/// `z` moved away from zero: by `eps·sign(z)` (ε rules), or by `eps` (HUDD's unsigned 1e-9).
fn stabilise(z: &Tensor, eps: f64, signed: bool) -> Tensor {
    if signed {
        // sign(0) counts as positive, so a zero denominator never stays zero.
        let sign = z.ge(0.0).to_kind(z.kind()) * 2.0 - 1.0;
        z + sign * eps
    } else {
        z + eps
    }
}

/// A linear-like layer with (possibly modified) parameters, applied to an input.
fn apply_with(op: &Op, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    match op {
        Op::Conv { stride, padding, groups, .. } => {
            x.conv2d(weight, bias, [*stride; 2], [*padding; 2], [1, 1], *groups)
        }
        Op::ConvTranspose { stride, padding, output_padding, .. } => {
            x.conv_transpose2d(weight, bias, [*stride; 2], [*padding; 2], [*output_padding; 2], 1, [1, 1])
        }
        Op::Linear(_) => x.linear(weight, bias),
        _ => unreachable!("apply_with is only called for layers with weights"),
    }
}

fn params(op: &Op) -> Option<(Tensor, Option<Tensor>)> {
    match op {
        Op::Conv { layer, .. } => Some((layer.ws.detach(), layer.bs.as_ref().map(Tensor::detach))),
        Op::ConvTranspose { layer, .. } => Some((layer.ws.detach(), layer.bs.as_ref().map(Tensor::detach))),
        Op::Linear(l) => Some((l.ws.detach(), l.bs.as_ref().map(Tensor::detach))),
        _ => None,
    }
}

/// `∂(f(a) · s)/∂a` for a layer with parameters `w` (bias irrelevant), `f` linear in `a`: the transposed
/// operation applied to `s`, computed directly rather than through autograd.
fn vjp(op: &Op, a: &Tensor, w: &Tensor, s: &Tensor) -> Tensor {
    match op {
        Op::Conv { stride, padding, groups, .. } => {
            // The transposed convolution, with the output padding that gives back the input's exact size.
            let (k, out, inp) = (w.size(), s.size(), a.size());
            let extra = |d: usize| inp[d + 2] - ((out[d + 2] - 1) * stride - 2 * padding + k[d + 2]);
            s.conv_transpose2d(w, None::<&Tensor>, [*stride; 2], [*padding; 2], [extra(0), extra(1)], *groups, [1, 1])
        }
        Op::ConvTranspose { stride, padding, .. } => {
            s.conv2d(w, None::<&Tensor>, [*stride; 2], [*padding; 2], [1, 1], 1)
        }
        Op::Linear(_) => s.matmul(w),
        _ => unreachable!("vjp is only called for layers with weights"),
    }
}

/// The relevance at a layer's input from the relevance at its output, under `rule`.
pub fn propagate(op: &Op, input: &Tensor, relevance: &Tensor, rule: Rule) -> Tensor {
    let output = tch::no_grad(|| Net::apply(op, input, None));
    propagate_from(op, input, &output, relevance, rule)
}

/// [`propagate`] given the layer's output for `input` (from the forward pass), which LRP-0, ε and the pools
/// reuse as their denominator instead of recomputing it.
pub fn propagate_from(op: &Op, input: &Tensor, output: &Tensor, relevance: &Tensor, rule: Rule) -> Tensor {
    tch::no_grad(|| propagate_inner(op, &input.detach(), &output.detach(), relevance, rule))
}

fn propagate_inner(op: &Op, a: &Tensor, z: &Tensor, r: &Tensor, rule: Rule) -> Tensor {
    if rule == Rule::Pass {
        // Unchanged, in the input's shape (flatten changes only the shape).
        return r.reshape(a.size());
    }
    let Some((w, b)) = params(op) else {
        // Parameter-free layers (pools): LRP-0 (or ε, as Zennit's `Norm` with its stabiliser) through the layer's
        // own function, which for max-pool is winner-takes-all (the gradient of max) and for average pools is
        // proportional.
        let s = match rule {
            Rule::Epsilon { epsilon } => r / stabilise(z, epsilon, true),
            _ => r / stabilise(z, HUDD_STABILISER, false),
        };
        let c = tch::with_grad(|| {
            let x = a.detach().set_requires_grad(true);
            let y = Net::apply(op, &x, None);
            let grads = Tensor::run_backward(&[(y * s).sum(Kind::Float)], &[&x], false, false);
            grads.into_iter().next().expect("one input, one gradient")
        });
        return c * a;
    };
    match rule {
        // The layer's own weights and bias: the forward pass's output is the denominator.
        Rule::Zero | Rule::WinnerTakesAll | Rule::Pass => {
            vjp(op, a, &w, &(r / stabilise(z, HUDD_STABILISER, false))) * a
        }
        Rule::Epsilon { epsilon } => vjp(op, a, &w, &(r / stabilise(z, epsilon, true))) * a,
        Rule::Gamma { gamma } => {
            let w = &w + w.clamp_min(0.0) * gamma;
            let b = b.map(|b| &b + b.clamp_min(0.0) * gamma);
            lrp_linear(op, a, r, &w, b.as_ref(), 1e-9, true)
        }
        Rule::ZPlus => {
            let (wp, wn) = (w.clamp_min(0.0), w.clamp_max(0.0));
            let bp = b.as_ref().map(|b| b.clamp_min(0.0));
            contributions(op, a, r, &wp, &wn, bp.as_ref(), 1e-6)
        }
        Rule::ZPlusNoBias => lrp_linear(op, a, r, &w.clamp_min(0.0), None, HUDD_STABILISER, false),
        Rule::AlphaBeta { alpha, beta } => {
            let (wp, wn) = (w.clamp_min(0.0), w.clamp_max(0.0));
            let (bp, bn) = (b.as_ref().map(|b| b.clamp_min(0.0)), b.as_ref().map(|b| b.clamp_max(0.0)));
            // Positive contributions: a⁺w⁺ + a⁻w⁻ (+ b⁺); negative ones: a⁺w⁻ + a⁻w⁺ (+ b⁻).
            contributions(op, a, r, &wp, &wn, bp.as_ref(), 1e-9) * alpha
                - contributions(op, a, r, &wn, &wp, bn.as_ref(), 1e-9) * beta
        }
        Rule::Flat | Rule::WSquare => {
            let ones = a.ones_like();
            let w = if rule == Rule::Flat { w.ones_like() } else { w.square() };
            let z = apply_with(op, &ones, &w, None);
            vjp(op, &ones, &w, &(r / stabilise(&z, 1e-9, true)))
        }
        Rule::Bounded { low, high } => {
            let (wp, wn) = (w.clamp_min(0.0), w.clamp_max(0.0));
            let (bp, bn) = (b.as_ref().map(|b| b.clamp_min(0.0)), b.as_ref().map(|b| b.clamp_max(0.0)));
            let (l, h) = (a.full_like(low), a.full_like(high));
            // As Zennit: the bounds' terms carry the clamped biases, so the bias cancels out of the denominator.
            let z = apply_with(op, a, &w, b.as_ref())
                - apply_with(op, &l, &wp, bp.as_ref())
                - apply_with(op, &h, &wn, bn.as_ref());
            let s = r / stabilise(&z, 1e-9, true);
            vjp(op, a, &w, &s) * a - vjp(op, &l, &wp, &s) * &l - vjp(op, &h, &wn, &s) * &h
        }
    }
}

/// Whether a layer can take a rule: a layer with several inputs takes only its own (`add`: `zero` or `epsilon`;
/// `concat`, `mul`: `pass`); every other layer takes any rule.
pub fn takes(op: &Op, rule: Rule) -> bool {
    match op {
        Op::Add => matches!(rule, Rule::Zero | Rule::Epsilon { .. }),
        Op::Concat | Op::Mul => rule == Rule::Pass,
        _ => true,
    }
}

/// The relevance at each input of a layer with several inputs (see the module's notes).
pub fn propagate_join(op: &Op, inputs: &[&Tensor], output: &Tensor, relevance: &Tensor, rule: Rule) -> Vec<Tensor> {
    tch::no_grad(|| match op {
        Op::Add => {
            let (eps, signed) = match rule {
                Rule::Epsilon { epsilon } => (epsilon, true),
                _ => (HUDD_STABILISER, false),
            };
            let s = relevance / stabilise(output, eps, signed);
            inputs.iter().map(|x| *x * &s).collect()
        }
        Op::Concat => {
            let sizes: Vec<i64> = inputs.iter().map(|x| x.size()[1]).collect();
            relevance.split_with_sizes(&sizes, 1)
        }
        Op::Mul => vec![relevance.reshape(inputs[0].size()), inputs[1].zeros_like()],
        _ => unreachable!("propagate_join is called for layers with several inputs"),
    })
}

/// The relevance at the input of every layer (index `k`: the value [`Net::recorded`] at layer `k`, its input or,
/// for a layer with several inputs, its output), for a batch, from the relevance at the network's output (`seed`,
/// shaped like the output) and one rule per layer.
pub fn relevance(net: &Net, x: &Tensor, seed: &Tensor, rules: &[Rule]) -> Vec<Tensor> {
    assert_eq!(rules.len(), net.layers.len(), "one rule per layer");
    let values = tch::no_grad(|| net.forward_values(x));
    let n = net.layers.len();
    // The relevance of each value, summed over the layers that read it; all of them come later in the order.
    let mut at: Vec<Option<Tensor>> = (0..=n).map(|_| None).collect();
    at[n] = Some(seed.shallow_clone());
    for k in (0..n).rev() {
        let r = at[k + 1].get_or_insert_with(|| values[k + 1].zeros_like()).shallow_clone();
        let (op, from) = (&net.layers[k].1, &net.sources[k]);
        let sent = if let [v] = from[..] {
            vec![propagate_from(op, &values[v], &values[k + 1], &r, rules[k])]
        } else {
            let inputs: Vec<&Tensor> = from.iter().map(|&v| &values[v]).collect();
            propagate_join(op, &inputs, &values[k + 1], &r, rules[k])
        };
        for (&v, r) in from.iter().zip(sent) {
            at[v] = Some(match at[v].take() {
                Some(sum) => sum + r,
                None => r,
            });
        }
    }
    let at: Vec<Tensor> =
        at.into_iter().enumerate().map(|(v, r)| r.unwrap_or_else(|| values[v].zeros_like())).collect();
    net.recorded.iter().map(|&v| at[v].shallow_clone()).collect()
}

/// HUDD's composite: z⁺ for linear layers, LRP-0 (1e-9) for convolutions and pools (max-pool winner-takes-all),
/// relevance passed through activations, dropout, flatten and batch norm (merged into convolutions beforehand).
pub fn hudd_rules(net: &Net) -> Vec<Rule> {
    net.layers.iter().map(|(_, op)| hudd_rules_one(op)).collect()
}

/// HUDD's rule for one layer (see [`hudd_rules`]).
pub fn hudd_rules_one(op: &Op) -> Rule {
    match op {
        Op::Linear(_) => Rule::ZPlusNoBias,
        Op::Conv { .. } | Op::ConvTranspose { .. } | Op::AvgPool { .. } | Op::AdaptiveAvgPool(_) | Op::Add => {
            Rule::Zero
        }
        Op::MaxPool { .. } => Rule::WinnerTakesAll,
        Op::Relu
        | Op::LeakyRelu(_)
        | Op::Relu6
        | Op::Hardswish
        | Op::Hardsigmoid
        | Op::Sigmoid
        | Op::Silu
        | Op::Dropout(_)
        | Op::Flatten
        | Op::Identity
        | Op::BatchNorm { .. }
        | Op::Merged
        | Op::Concat
        | Op::Mul => Rule::Pass,
    }
}

/// Relevance through the contributions `a⁺·w1 + a⁻·w2 (+ bias)` only. The `a⁻` term is skipped where the input
/// is non-negative (after a ReLU, the common case), which halves the cost.
fn contributions(op: &Op, a: &Tensor, r: &Tensor, w1: &Tensor, w2: &Tensor, bias: Option<&Tensor>, eps: f64) -> Tensor {
    let negative = bool::try_from(a.lt(0.0).any()).unwrap_or(true);
    let ap = a.clamp_min(0.0);
    if !negative {
        let z = apply_with(op, &ap, w1, bias);
        return vjp(op, &ap, w1, &(r / stabilise(&z, eps, true))) * &ap;
    }
    if matches!(op, Op::Conv { groups, .. } if *groups > 1) {
        // Stacking along the channels would mix the groups: the two terms one after the other.
        let an = a.clamp_max(0.0);
        let z = apply_with(op, &ap, w1, bias) + apply_with(op, &an, w2, None);
        let s = r / stabilise(&z, eps, true);
        return vjp(op, &ap, w1, &s) * &ap + vjp(op, &an, w2, &s) * &an;
    }
    // Both terms in one operation: inputs stacked along the channels, weights along their input dimension.
    let stacked = Tensor::cat(&[&ap, &a.clamp_max(0.0)], 1);
    let w = Tensor::cat(&[w1, w2], if matches!(op, Op::ConvTranspose { .. }) { 0 } else { 1 });
    let z = apply_with(op, &stacked, &w, bias);
    (vjp(op, &stacked, &w, &(r / stabilise(&z, eps, true))) * &stacked)
        .chunk(2, 1)
        .into_iter()
        .reduce(|p, n| p + n)
        .expect("two halves")
}

/// LRP-0 / ε through a layer with parameters `w`, `b`: `R_in = a · Wᵀ(R / stab(z))`.
fn lrp_linear(op: &Op, a: &Tensor, r: &Tensor, w: &Tensor, b: Option<&Tensor>, eps: f64, signed: bool) -> Tensor {
    let z = apply_with(op, a, w, b);
    vjp(op, a, w, &(r / stabilise(&z, eps, signed))) * a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;
    use tch::nn;

    /// flatten → linear 2→2 → relu → linear 2→1 with weights chosen for hand computation.
    fn two_layers() -> (nn::VarStore, Net) {
        let arch = Architecture::parse(
            std::path::Path::new("two.toml"),
            "[model]\nname = \"two\"\ninput = [2, 1, 1]\n\
             [[layer]]\nname = \"flatten\"\nkind = \"flatten\"\n\
             [[layer]]\nname = \"fc.0\"\nkind = \"linear\"\nout_features = 2\n\
             [[layer]]\nname = \"fc.1\"\nkind = \"relu\"\n\
             [[layer]]\nname = \"fc.2\"\nkind = \"linear\"\nout_features = 1\n",
        )
        .unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = Net::new(&arch, &vs.root(), [2, 1, 1], 1).unwrap();
        let mut vars = vs.variables();
        tch::no_grad(|| {
            vars.get_mut("fc.0.weight").unwrap().copy_(&Tensor::from_slice(&[1.0f32, -1.0, 2.0, 1.0]).view([2, 2]));
            vars.get_mut("fc.0.bias").unwrap().copy_(&Tensor::from_slice(&[0.5f32, -0.5]));
            vars.get_mut("fc.2.weight").unwrap().copy_(&Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2]));
            vars.get_mut("fc.2.bias").unwrap().copy_(&Tensor::from_slice(&[0.0f32]));
        });
        (vs, net)
    }

    fn input_relevance(rules: &[Rule]) -> Vec<f32> {
        let (_vs, net) = two_layers();
        let x = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2, 1, 1]);
        let y = tch::no_grad(|| net.forward(&x));
        assert_eq!(f64::try_from(&y.sum(Kind::Float)).unwrap(), 7.0);
        let r = relevance(&net, &x, &y, rules);
        Vec::<f32>::try_from(r[0].flatten(0, -1)).unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{a:?} != {b:?}");
        assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5), "{a:?} != {b:?}");
    }

    #[test]
    fn lrp_zero_matches_the_hand_computation_and_the_bias_absorbs_the_rest() {
        // h = W1 x + b1 = [-0.5, 3.5], relu → [0, 3.5], y = 7. Layer 2: R = [0, 7].
        // Layer 1: s = R / z = [0, 2], c = W1ᵀ s = [4, 2], R = x · c = [4, 4] (the bias took −1).
        close(&input_relevance(&[Rule::Pass, Rule::Zero, Rule::Pass, Rule::Zero]), &[4.0, 4.0]);
    }

    #[test]
    fn hudds_composite_uses_z_plus_on_linear_layers_and_conserves_relevance() {
        // z⁺: W1⁺ = [[1, 0], [2, 1]], z = [1, 4], s = [0, 7/4], c = [3.5, 1.75], R = [3.5, 3.5]: sums to y = 7.
        let (_vs, net) = two_layers();
        let rules = hudd_rules(&net);
        assert_eq!(rules, [Rule::Pass, Rule::ZPlusNoBias, Rule::Pass, Rule::ZPlusNoBias]);
        close(&input_relevance(&rules), &[3.5, 3.5]);
    }

    #[test]
    fn epsilon_absorbs_relevance_in_the_stabiliser() {
        // ε = 1: layer 2 s = 7/8, R = [0, 6.125]; layer 1 z = [-1.5, 4.5] after ε, s = [0, 1.36111], R = [2.72222; 2].
        let rules = [Rule::Pass, Rule::Epsilon { epsilon: 1.0 }, Rule::Pass, Rule::Epsilon { epsilon: 1.0 }];
        close(&input_relevance(&rules), &[2.722222, 2.722222]);
    }

    #[test]
    fn alpha_one_beta_zero_equals_hudds_z_plus_where_the_bias_does_not_matter() {
        let ab = [Rule::Pass, Rule::AlphaBeta { alpha: 1.0, beta: 0.0 }, Rule::Pass, Rule::ZPlusNoBias];
        close(&input_relevance(&ab), &[3.5, 3.5]);
    }

    #[test]
    fn the_direct_transposed_operations_equal_autograds_input_gradient() {
        let mut draws = crate::model::draws::Draws::new(9, crate::model::draws::Stream::Init);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let conv = |stride, padding| nn::ConvConfig { stride, padding, ..Default::default() };
        let tconv = nn::ConvTransposeConfig { stride: 2, padding: 1, output_padding: 1, ..Default::default() };
        let cases = [
            // Odd sizes with stride 2: the transposed convolution needs an output padding to give back 9×9.
            (
                Op::Conv { layer: nn::conv2d(vs.root() / "a", 3, 4, 3, conv(2, 1)), stride: 2, padding: 1, groups: 1 },
                vec![2, 3, 9, 9],
            ),
            (
                Op::Conv { layer: nn::conv2d(vs.root() / "b", 3, 4, 5, conv(2, 2)), stride: 2, padding: 2, groups: 1 },
                vec![2, 3, 10, 10],
            ),
            (
                Op::ConvTranspose {
                    layer: nn::conv_transpose2d(vs.root() / "c", 4, 3, 3, tconv),
                    stride: 2,
                    padding: 1,
                    output_padding: 1,
                },
                vec![2, 4, 5, 5],
            ),
            (Op::Linear(nn::linear(vs.root() / "d", 6, 5, Default::default())), vec![2, 6]),
        ];
        for (op, shape) in cases {
            let a = draws.normal(&shape);
            let (w, _) = params(&op).unwrap();
            let s = draws.normal(&tch::no_grad(|| Net::apply(&op, &a, None)).size());
            let want = tch::with_grad(|| {
                let x = a.detach().set_requires_grad(true);
                let y = apply_with(&op, &x, &w, None);
                Tensor::run_backward(&[(y * &s).sum(Kind::Float)], &[&x], false, false).remove(0)
            });
            let got = vjp(&op, &a, &w, &s);
            assert_eq!(got.size(), a.size(), "{op:?}");
            assert!(f64::try_from((got - want).abs().max()).unwrap() < 1e-4, "{op:?}");
        }
    }

    #[test]
    fn max_pool_gives_all_relevance_to_the_winner() {
        let op = Op::MaxPool { kernel: 2, stride: 2, padding: 0 };
        let a = Tensor::from_slice(&[1.0f32, 5.0, 2.0, 3.0]).view([1, 1, 2, 2]);
        let r = propagate(&op, &a, &Tensor::from_slice(&[10.0f32]).view([1, 1, 1, 1]), Rule::WinnerTakesAll);
        close(&Vec::<f32>::try_from(r.flatten(0, -1)).unwrap(), &[0.0, 10.0, 0.0, 0.0]);
        let avg = Op::AvgPool { kernel: 2, stride: 2, padding: 0 };
        let r = propagate(&avg, &a, &Tensor::from_slice(&[11.0f32]).view([1, 1, 1, 1]), Rule::Zero);
        close(&Vec::<f32>::try_from(r.flatten(0, -1)).unwrap(), &[1.0, 5.0, 2.0, 3.0]);
    }
}
