"""Which layer and k would recover the planted causes, and would a label-free criterion find them? An outside check of
a planted-cause benchmark's stored activations with scikit-learn: every layer, its first 20 principal components,
Ward with k = 4..32 fixed by hand, scored with purity, coverage (planted causes only) and NMI against the causes, and
with three internal criteria that never read them (silhouette, Calinski-Harabasz, Davies-Bouldin, negated so that
larger is better); then each criterion's Spearman rank correlation with NMI and purity over all configurations, and
what each would pick. Not a pipeline hudd ships. Reads reports/<workflow>/ after `hudd run`; writes
reports/<workflow>/tables/layers-sklearn.csv and criteria-sklearn.txt.
Run: $(tests/fixtures/venv.sh) scripts/recovery-layers.py recovery recovery-faces recovery-eyes
With --generic: the `generic` stage's backbone features instead (each channel's mean at three layers of
EfficientNet-Lite0), L1-normalised and centred on the class as `cluster-generic` does, k = 2..32; writes
layers-sklearn-generic.csv and criteria-sklearn-generic.txt.
"""

import csv
import pathlib
import sys

import numpy as np
from scipy.stats import spearmanr
from sklearn.cluster import AgglomerativeClustering
from sklearn.decomposition import PCA
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)

generic = "--generic" in sys.argv
names = [a for a in sys.argv[1:] if a != "--generic"] or ["recovery"]
suffix = "-generic" if generic else ""
ks = [2, 3, 4, 6, 8, 12, 16, 24, 32] if generic else [4, 6, 8, 12, 16, 24, 32]
for name in names:
    root = pathlib.Path("reports") / name
    rows = list(csv.DictReader(open(root / "test/errors/table.csv")))
    cause = np.array([r["scenario"] for r in rows])
    label = np.array([r["label"] for r in rows])
    planted = set(cause) - {"nominal"}

    def purity(labels):
        return sum(np.unique(cause[labels == c], return_counts=True)[1].max() for c in np.unique(labels)) / len(labels)

    def coverage(labels):
        dominant = set()
        for c in np.unique(labels):
            names, counts = np.unique(cause[labels == c], return_counts=True)
            dominant.add(names[counts.argmax()])
        return len(dominant & planted) / len(planted)

    results = []
    for path in sorted((root / ("generic" if generic else "activations") / "activations").glob("*.npy")):
        x = np.load(path).reshape(len(rows), -1).astype(np.float64)
        if x.std() == 0:
            continue
        if generic:
            x = x / np.maximum(np.abs(x).sum(1, keepdims=True), 1e-30)
            for c in np.unique(label):
                x[label == c] -= x[label == c].mean(0)
        p = PCA(20, random_state=0).fit_transform(x)
        for k in ks:
            labels = AgglomerativeClustering(k).fit_predict(p)
            results.append((
                path.stem, k, purity(labels), coverage(labels), normalized_mutual_info_score(cause, labels),
                silhouette_score(p, labels), calinski_harabasz_score(p, labels), -davies_bouldin_score(p, labels),
            ))
    with open(root / f"tables/layers-sklearn{suffix}.csv", "w") as f:
        f.write("layer,k,purity,coverage,nmi,silhouette,calinski_harabasz,neg_davies_bouldin\n")
        for r in results:
            f.write("%s,%d,%.4f,%.4f,%.4f,%.4f,%.2f,%.4f\n" % r)
    scores = np.array([r[2:] for r in results])
    lines = [f"{name}: {len(results)} configurations ({'generic features' if generic else 'every layer'}, PCA 20, Ward, k = {ks[0]}..{ks[-1]})"]
    for j, criterion in [(3, "silhouette"), (4, "calinski_harabasz"), (5, "neg_davies_bouldin")]:
        rho_nmi = spearmanr(scores[:, j], scores[:, 2]).statistic
        rho_purity = spearmanr(scores[:, j], scores[:, 0]).statistic
        pick = results[int(np.argmax(scores[:, j]))]
        lines.append(
            f"{criterion}: Spearman rho with NMI {rho_nmi:.2f}, with purity {rho_purity:.2f}; picks {pick[0]} k = {pick[1]}"
            f" (purity {pick[2]:.2f}, coverage {pick[3]:.2f}, NMI {pick[4]:.2f})"
        )
    best = max(results, key=lambda r: (r[3] == 1.0, r[2]))
    lines.append(
        f"highest purity with every planted cause covered (read from the causes): {best[0]} k = {best[1]}"
        f" (purity {best[2]:.2f}, NMI {best[4]:.2f})"
    )
    (root / f"tables/criteria-sklearn{suffix}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
