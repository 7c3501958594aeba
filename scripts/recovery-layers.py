"""Which layer and k would recover the planted causes? An outside check of `workflows/recovery.toml`'s stored
activations with scikit-learn: for early layers, PCA (10, 20, 50 components) then Ward with k fixed by hand, scored
with purity, coverage (planted causes only), NMI and the silhouette. Reads reports/<workflow>/ after `hudd run`;
writes reports/<workflow>/tables/layers-sklearn.txt. Not a pipeline hudd ships: k is chosen by reading the causes.
Run: $(tests/fixtures/venv.sh) scripts/recovery-layers.py [recovery]
"""

import csv
import pathlib
import sys

import numpy as np
from sklearn.cluster import AgglomerativeClustering
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score, silhouette_score

name = sys.argv[1] if len(sys.argv) > 1 else "recovery"
root = pathlib.Path("reports") / name
rows = list(csv.DictReader(open(root / "test/errors/table.csv")))
cause = np.array([r["scenario"] for r in rows])
planted = sorted(set(cause) - {"nominal"})


def purity(labels):
    return sum(np.unique(cause[labels == c], return_counts=True)[1].max() for c in np.unique(labels)) / len(labels)


def coverage(labels):
    dominant = set()
    for c in np.unique(labels):
        names, counts = np.unique(cause[labels == c], return_counts=True)
        dominant.add(names[counts.argmax()])
    return len(dominant & set(planted)) / len(planted)


lines = ["layer components k purity coverage nmi silhouette"]
for layer in ["features.0", "features.1", "features.2", "features.3", "features.4"]:
    x = np.load(root / "activations/activations" / f"{layer}.npy").reshape(len(rows), -1).astype(np.float64)
    for components in [10, 20, 50]:
        p = PCA(components, random_state=0).fit_transform(x)
        for k in [5, 8, 12, 16, 24, 32]:
            labels = AgglomerativeClustering(k).fit_predict(p)
            lines.append(
                f"{layer} {components} {k} {purity(labels):.2f} {coverage(labels):.2f} "
                f"{normalized_mutual_info_score(cause, labels):.2f} {silhouette_score(p, labels):.2f}"
            )
out = root / "tables/layers-sklearn.txt"
out.write_text("\n".join(lines) + "\n")
print(f"wrote {out}")
