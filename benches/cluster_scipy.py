"""scipy + kneed side of `cargo bench --bench cluster`: HUDD's clustering of one layer, as the original computes it.

Reads the heatmaps (.npy, n x d), computes the Euclidean distance matrix (scipy pdist), divides every row by its
maximum, clusters those rows with Ward (scipy linkage), cuts the tree for k = 2..max(2, min(500, n/2))
(fcluster maxclust), computes HUDD's WICD for every k on the row-normalised matrix (pairs i < j), takes its
4th-order gradient (`gradientO4(curve, 4)`) and finds the knee with kneed.
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
            block = rows[np.ix_(idx, idx)]
            total += len(idx) / n * block[np.triu_indices(len(idx), 1)].mean()
    wicd.append(total / k)
w = np.array(wicd)
gradient = np.empty_like(w)
gradient[2:-2] = (w[:-4] - 8 * w[1:-3] + 8 * w[3:-1] - w[4:]) / 12
gradient[0:2] = w[1:3] - w[0:2]
gradient[-2:] = w[-2:] - w[-3:-1]
gradient /= 4
knee = KneeLocator(ks, gradient, S=1.0, curve="concave", direction="increasing").knee
seconds = time.perf_counter() - t
print(f"scipy + kneed, one layer: {seconds:.3f} s; k = {knee}")
print(f"seconds {seconds}")
