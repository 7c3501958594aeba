"""scipy + kneed side of `cargo bench --bench cluster`: HUDD's clustering of one layer, as the original computes it.

Reads the heatmaps (.npy, n x d), computes the Euclidean distance matrix (scipy pdist), divides every row by its
maximum, clusters those rows with Ward (scipy linkage), cuts the tree for k = 2..max(2, min(500, n/2))
(fcluster maxclust), computes HUDD's WICD for every k, smooths its derivative and finds the knee with kneed.
Prints the chosen k and "seconds <total>".
Usage: python benches/cluster_scipy.py <layer.npy> <threads>
"""

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", sys.argv[2])

import numpy as np  # noqa: E402
from kneed import KneeLocator  # noqa: E402
from scipy.cluster.hierarchy import fcluster, linkage  # noqa: E402
from scipy.spatial.distance import pdist, squareform  # noqa: E402

x = np.load(sys.argv[1])
n = len(x)
t = time.perf_counter()
dist = squareform(pdist(x))
rows = dist / dist.max(axis=1, keepdims=True)
z = linkage(rows, "ward")
max_k = max(2, min(500, n // 2))
ks = list(range(2, max_k + 1))
wicd = []
for k in ks:
    labels = fcluster(z, k, "maxclust")
    total = 0.0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) > 1:
            total += len(idx) / n * rows[np.ix_(idx, idx)].sum() / (len(idx) * (len(idx) - 1))
    wicd.append(total / k)
w = np.array(wicd)
derivative = (w[:-4] - 8 * w[1:-3] + 8 * w[3:-1] - w[4:]) / 12
knee = KneeLocator(ks[2:-2], derivative, S=1.0, curve="concave", direction="increasing").knee
seconds = time.perf_counter() - t
print(f"scipy + kneed, one layer: {seconds:.3f} s; k = {knee}")
print(f"seconds {seconds}")
