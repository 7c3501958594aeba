"""Reference side of `cargo bench --bench trigger`: read the PNGs `hudd simulate` wrote and test alexnet-small on
them with PyTorch, as a tool around an external simulator does.
Usage: python benches/trigger_pytorch.py <folder> <threads> <batch>
"""

import pathlib
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from alexnet_small import AlexNetSmall  # noqa: E402

folder, threads, batch = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = AlexNetSmall(15).eval()
files = sorted(folder.rglob("*.png"))
files = [f for f in files if f.name != "sheet.png"]
pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
x = (x - 0.5) / 0.25
with torch.no_grad():
    predicted = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
assert len(predicted) == len(files) > 0
print(len(files))
