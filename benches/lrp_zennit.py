"""Zennit side of `cargo bench --bench lrp`: relevance at every layer's input of alexnet-small for one batch.

Reads the weights, input and seed that the Rust side wrote (safetensors), builds the same network, and prints the
median seconds of one forward+backward pass and of Zennit's attribution under the `hudd` and `epsilon-plus`
composites, with every layer input's gradient retained (the relevance at that layer).
Usage: python benches/lrp_zennit.py <file.safetensors> <threads> <rounds>
"""

import statistics
import sys
import time

import torch
from safetensors.torch import load_file
from alexnet_small import AlexNetSmall
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlus, LayerMapComposite
from zennit.rules import Epsilon, Norm, Pass, ZPlus
from zennit.types import Activation, AvgPool, Convolution, Linear

path, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)


tensors = load_file(path)
model = AlexNetSmall(15, record=True).eval()
model.load_state_dict({k: v for k, v in tensors.items() if k not in ("input", "seed")})
x, seed = tensors["input"], tensors["seed"]


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
    "hudd": LayerMapComposite(layer_map=[
        (Activation, Pass()),
        (Convolution, Epsilon(epsilon=1e-9)),
        (Linear, ZPlus(stabilizer=1e-9, zero_params="bias")),
        (AvgPool, Norm()),
    ]),
    "epsilon-plus": EpsilonPlus(epsilon=1e-6),
}
print("forward-backward", median_time(forward_backward))
for name, composite in composites.items():
    with Gradient(model=model, composite=composite) as attributor:
        def attribute():
            _, relevance = attributor(x.clone().requires_grad_(True), seed)
            assert len(model.inputs) == len(model.layers) and relevance.shape == x.shape
        print(name, median_time(attribute))
