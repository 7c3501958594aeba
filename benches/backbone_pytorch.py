"""PyTorch side of `cargo bench --bench backbone`: EfficientNet-Lite0's forward passes as the `activations` stage
runs them (uint8 images normalised with ImageNet's mean and std, resized bilinearly, each channel's mean at the input
of `_blocks.10.add`, `_conv_head` and `_avg_pooling`), with the ImageNet weights `scripts/pretrained.sh` installs.

The network is the fixtures' implementation (tests/fixtures/efficientnet_lite0.py, written independently of
models/efficientnet-lite0.toml). Two ways of running it, each timed:
- `plain`: the module in evaluation mode under `torch.no_grad()`, as a PyTorch user runs it;
- `fused`: every batch norm folded into its convolution (`torch.nn.utils.fusion.fuse_conv_bn_eval`) and the module
  and input in channels-last memory, the fastest PyTorch offers on a CPU without compiling.
Prints, for each, the median seconds per image over the rounds (one warm-up batch first).
Usage: python benches/backbone_pytorch.py <images.safetensors> <weights.safetensors> <threads> <rounds> <batch> <size>
"""

import pathlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.nn.utils.fusion import fuse_conv_bn_eval

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
from efficientnet_lite0 import Lite0  # noqa: E402

images_path, weights_path = sys.argv[1], sys.argv[2]
threads, rounds, batch, size = (int(v) for v in sys.argv[3:7])
torch.set_num_threads(threads)

images = load_file(images_path)["images"]
mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
LAYERS = ["_blocks.10.add", "_conv_head", "_avg_pooling"]


def plain():
    model = Lite0().eval()
    missing, unexpected = model.load_state_dict(load_file(weights_path), strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    return model


def fused():
    model = plain()
    for block in model._blocks:
        if block.expand:
            block._expand_conv, block._bn0 = fuse_conv_bn_eval(block._expand_conv, block._bn0), torch.nn.Identity()
        block._depthwise_conv, block._bn1 = fuse_conv_bn_eval(block._depthwise_conv, block._bn1), torch.nn.Identity()
        block._project_conv, block._bn2 = fuse_conv_bn_eval(block._project_conv, block._bn2), torch.nn.Identity()
    model._conv_stem, model._bn0 = fuse_conv_bn_eval(model._conv_stem, model._bn0), torch.nn.Identity()
    model._conv_head, model._bn1 = fuse_conv_bn_eval(model._conv_head, model._bn1), torch.nn.Identity()
    return model.to(memory_format=torch.channels_last)


def features(model, pixels, channels_last):
    x = (pixels.float() / 255 - mean) / std
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    taps = model.taps(x)
    return [taps[name].mean((2, 3)) for name in LAYERS]


for name, build, channels_last in [("plain", plain, False), ("fused", fused, True)]:
    model = build()
    with torch.no_grad():
        features(model, images[:batch], channels_last)
        per_image = []
        for r in range(rounds):
            chunk = images[(r * batch) % len(images):][:batch]
            start = time.perf_counter()
            features(model, chunk, channels_last)
            per_image.append((time.perf_counter() - start) / len(chunk))
    print(name, statistics.median(per_image))
