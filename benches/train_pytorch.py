"""PyTorch side of `cargo bench --bench train`: alexnet-small training throughput on 64x64 images.

Same architecture (models/README.md), batch size, optimiser and thread count as the Rust side; prints images/s.
Usage: python benches/train_pytorch.py <images> <batch> <epochs> <threads>
"""

import sys
import time

import torch
from alexnet_small import AlexNetSmall
from torch import nn

n, batch, epochs, threads = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)


pixels = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8)
labels = torch.randint(0, 15, (n,))
mean = torch.full((1, 3, 1, 1), 0.5)
std = torch.full((1, 3, 1, 1), 0.25)
model = AlexNetSmall(15)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
model.train()


def epoch():
    order = torch.randperm(n)
    for start in range(0, n, batch):
        idx = order[start:start + batch]
        x = (pixels[idx].float() / 255.0 - mean) / std
        loss = nn.functional.cross_entropy(model(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


epoch()  # warm-up
t = time.perf_counter()
for _ in range(epochs):
    epoch()
secs = time.perf_counter() - t
print(f"{n * epochs / secs:.1f}")
