"""Outside check: would the generic features recover planted causes better if they kept where in the image a channel
fires (each channel's means over a 2x2 or 3x3 grid of the feature map) instead of one mean per channel? The
fixtures' EfficientNet-Lite0 with the ImageNet weights scripts/pretrained.sh installs, each failing image resized to
224x224, the three layers `generic` records; then cluster-generic's steps (L1 per image, centred on the class, 20
principal components, Ward) at k = 8, 16, 24, 32; purity / coverage (planted causes only) read from the causes.
Not a pipeline hudd ships.
Run after `hudd run` of each benchmark, from the workspace that ran it:
  $(tests/fixtures/venv.sh) scripts/recovery-grid.py reports/recovery reports/recovery-eyes reports/recovery-faces
Output (2026-12-01): reports/recovery/tables/grid-sklearn.txt."""
import csv, sys, pathlib, collections
import numpy as np, torch, torch.nn.functional as F
from safetensors.torch import load_file
from sklearn.decomposition import PCA
from sklearn.cluster import AgglomerativeClustering
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / 'tests' / 'fixtures'))
from efficientnet_lite0 import Lite0
torch.set_num_threads(2)
m = Lite0().eval(); m.load_state_dict(load_file(str(pathlib.Path(__file__).resolve().parent.parent / 'models/pretrained/efficientnet-lite0.safetensors')), strict=False)
mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]; std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
LAYERS = ["_blocks.10.add", "_conv_head", "_avg_pooling"]
def score(labels, causes):
    tab = collections.defaultdict(collections.Counter)
    for l, c in zip(labels, causes): tab[l][c] += 1
    pur = sum(t.most_common(1)[0][1] for t in tab.values()) / len(causes)
    planted = {c for c in causes if c != 'nominal'}
    dom = {t.most_common(1)[0][0] for t in tab.values()}
    return pur, len(planted & dom) / len(planted)
for root in sys.argv[1:]:
    d = pathlib.Path(root) / 'test/errors'
    x = torch.from_numpy(np.load(d / 'images.npy'))
    rows = list(csv.DictReader(open(d / 'table.csv')))
    causes = [r['scenario'] for r in rows]; cls = np.array([r['label'] for r in rows])
    if x.shape[1] == 1: x = x.repeat(1, 3, 1, 1)
    feats = {(l, g): [] for l in LAYERS for g in (1, 2, 3)}
    with torch.no_grad():
        for i in range(0, len(x), 32):
            b = (x[i:i+32].float() / 255 - mean) / std
            b = F.interpolate(b, size=(224, 224), mode='bilinear', align_corners=False)
            taps = m.taps(b)
            for l in LAYERS:
                for g in (1, 2, 3):
                    feats[(l, g)].append(F.adaptive_avg_pool2d(taps[l], g).flatten(1).numpy())
    print(root, len(rows))
    for (l, g), f in feats.items():
        f = np.concatenate(f).astype(np.float64)
        f = f / np.maximum(np.abs(f).sum(1, keepdims=True), 1e-12)
        for c in set(cls): f[cls == c] -= f[cls == c].mean(0)
        z = PCA(20, random_state=0).fit_transform(f)
        out = []
        for k in (8, 16, 24, 32):
            lab = AgglomerativeClustering(k, linkage='ward').fit_predict(z)
            p, cov = score(lab, causes); out.append(f'k{k} {p:.2f}/{cov:.2f}')
        print(f'  {l:16s} grid {g}: ' + '  '.join(out), flush=True)
