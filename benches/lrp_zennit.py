"""Zennit side of `cargo bench --bench lrp`: relevance at every layer's input of alexnet-small or of torchvision's
resnet18 for one batch.

Reads the weights, input and seed that the Rust side wrote (safetensors), builds the same network, and prints the
median seconds of one forward+backward pass and of Zennit's attribution under the `hudd` and `epsilon-plus`
composites, with every layer input's gradient retained (the relevance at that layer). ResNet-18 goes through
Zennit's ResNetCanonizer (batch norms merged, residual sums as `Sum` modules with the `Norm` rule), and its
forward+backward pass is timed with the batch norms merged, as on the Rust side.
Usage: python benches/lrp_zennit.py <file.safetensors> <threads> <rounds> [alexnet-small|resnet18]
"""

import statistics
import sys
import time

import torch
from safetensors.torch import load_file
from alexnet_small import AlexNetSmall
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonPlus, LayerMapComposite
from zennit.layer import Sum
from zennit.rules import Epsilon, Norm, Pass, ZPlus
from zennit.torchvision import ResNetCanonizer
from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear

path, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
name = sys.argv[4] if len(sys.argv) > 4 else "alexnet-small"
torch.set_num_threads(threads)


tensors = load_file(path)
weights = {k: v for k, v in tensors.items() if k not in ("input", "seed")}
x, seed = tensors["input"], tensors["seed"]
retained = []
if name == "resnet18":
    import torchvision

    model = torchvision.models.resnet18(num_classes=15).eval()
    model.load_state_dict(weights, strict=False)
    canonizers = [ResNetCanonizer()]

    def retain(module, inputs):
        if inputs[0].requires_grad:
            inputs[0].retain_grad()
            retained.append(inputs[0])

    for m in model.modules():
        if not list(m.children()):
            m.register_forward_pre_hook(retain)
    check = lambda relevance: relevance.shape == x.shape and len(retained) > 0  # noqa: E731
else:
    model = AlexNetSmall(15, record=True).eval()
    model.load_state_dict(weights)
    canonizers = []
    check = lambda relevance: len(model.inputs) == len(model.layers) and relevance.shape == x.shape  # noqa: E731


def median_time(f):
    f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def forward_backward():
    a = x.clone().requires_grad_(True)
    torch.autograd.grad(model(a), a, seed)


composites = {
    "hudd": LayerMapComposite(
        layer_map=[
            (Activation, Pass()),
            (BatchNorm, Pass()),
            (Sum, Norm(stabilizer=1e-9)),
            (Convolution, Epsilon(epsilon=1e-9)),
            (Linear, ZPlus(stabilizer=1e-9, zero_params="bias")),
            (AvgPool, Norm()),
        ],
        canonizers=canonizers,
    ),
    "epsilon-plus": EpsilonPlus(epsilon=1e-6, canonizers=canonizers),
}
# Forward + backward with the batch norms merged, as hudd times it (a composite of no rules, the canonizers only).
with Gradient(model=model, composite=LayerMapComposite(layer_map=[], canonizers=canonizers)):
    print("forward-backward", median_time(forward_backward))
for composite_name, composite in composites.items():
    with Gradient(model=model, composite=composite) as attributor:
        def attribute():
            retained.clear()
            _, relevance = attributor(x.clone().requires_grad_(True), seed)
            assert check(relevance)
        print(composite_name, median_time(attribute))
