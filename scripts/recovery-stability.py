"""Would clusterboot stability choose the layer and k that recover the planted causes? For every layer's first 20
principal components and Ward with k = 4..32 (as scripts/recovery-layers.py), each cluster's stability is its mean
best Jaccard match over 8 half-size subsets reclustered the same way (seeded); a configuration's stability is the
mean over its clusters (and the mean weighted by cluster size). Prints the Spearman correlation of each with NMI and
purity over all configurations, and what each would pick; writes reports/<workflow>/tables/stability-sklearn.csv.
Not a pipeline hudd ships. Run: $(tests/fixtures/venv.sh) scripts/recovery-stability.py recovery recovery-eyes recovery-faces
"""
import csv, pathlib, sys
import numpy as np
from scipy.stats import spearmanr
from scipy.cluster.hierarchy import linkage, fcluster
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score as nmi
rng=np.random.default_rng(0)
def jaccard_stability(p, labels, k, draws=8):
    n=len(p); scores=np.zeros(k); counts=np.zeros(k)
    for _ in range(draws):
        sub=np.sort(rng.choice(n, n//2, replace=False))
        l2=fcluster(linkage(p[sub],'ward'),k,'maxclust')
        orig=labels[sub]
        for c in range(1,k+1):
            a=set(np.where(orig==c)[0])
            if not a: continue
            best=max(len(a & set(np.where(l2==d)[0]))/len(a | set(np.where(l2==d)[0])) for d in range(1,k+1))
            scores[c-1]+=best; counts[c-1]+=1
    w=np.bincount(labels,minlength=k+1)[1:]
    per=np.where(counts>0, scores/np.maximum(counts,1), 0)
    return per.mean(), (per*w).sum()/w.sum()
for name in sys.argv[1:]:
    root=pathlib.Path('reports')/name
    rows=list(csv.DictReader(open(root/'test/errors/table.csv')))
    cause=np.array([r['scenario'] for r in rows]); planted=set(cause)-{'nominal'}
    def purity(l): return sum(np.unique(cause[l==c],return_counts=True)[1].max() for c in np.unique(l))/len(l)
    res=[]
    for path in sorted((root/'activations/activations').glob('*.npy')):
        x=np.load(path).reshape(len(rows),-1).astype(np.float64)
        if x.std()==0: continue
        p=PCA(20,random_state=0).fit_transform(x)
        Z=linkage(p,'ward')
        for k in [4,6,8,12,16,24,32]:
            l=fcluster(Z,k,'maxclust')
            sm, sw = jaccard_stability(p,l,k)
            res.append((path.stem,k,purity(l),nmi(cause,l),sm,sw))
    a=np.array([r[2:] for r in res])
    print(name, 'stability(mean) rho nmi %.2f purity %.2f; weighted rho nmi %.2f purity %.2f'%(
        spearmanr(a[:,2],a[:,1]).statistic, spearmanr(a[:,2],a[:,0]).statistic,
        spearmanr(a[:,3],a[:,1]).statistic, spearmanr(a[:,3],a[:,0]).statistic))
    for j,c in [(2,'mean'),(3,'weighted')]:
        b=res[int(np.argmax(a[:,j]))]; print('  %s picks'%c, b[0], b[1], 'purity %.2f nmi %.2f'%(b[2],b[3]))
    # per-layer: k by stability within layer? and layer by stability at fixed k=16
    sys.stdout.flush()
    with open(root/'tables/stability-sklearn.csv','w') as f:
        f.write('layer,k,purity,nmi,stability_mean,stability_weighted\n')
        for r in res: f.write('%s,%d,%.4f,%.4f,%.4f,%.4f\n'%r)
