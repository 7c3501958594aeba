//! Stage `cluster` (HUDD Step 1b, ClusterModule): root-cause clusters of the error-inducing images from their
//! heatmaps, layer by layer, the best layer chosen, and what an engineer inspects for each cluster.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::artefact::clusters::{
    ClusterRow, ClusterSummary, ClusteredLayer, Clusters, CurvePoint, LayerMember, LayerRow, LayerScore, Member,
    Picture as Drawn, StabilitySummary,
};
use crate::artefact::heatmaps::Heatmaps;
use crate::artefact::{ANY_DATASET, CLUSTERS, FEATURES, HEATMAPS};
pub use crate::cluster::Mode;
use crate::cluster::features::{Centre, Features};
use crate::cluster::layer::{LayerError, Representation};
use crate::cluster::spectral::Spectral;
use crate::cluster::{self, ChooseK, KRule, Linkage, Matrix, Pipeline};
pub use crate::cluster::{Algorithm, Noise};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::npy::NpyReader;

pub struct Cluster;

/// How the layer whose clusters are reported is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SelectLayer {
    /// HUDD's: the lowest WICD on the layer's raw heatmap distances, with its chosen clusters.
    #[default]
    Wicd,
    /// The highest mean silhouette on the layer's raw heatmap distances.
    Silhouette,
}

/// Why the failing images cannot be clustered as asked: each names the layer, the file or the parameter.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start {threads} threads: {source}")]
    Threads { threads: usize, source: rayon::ThreadPoolBuildError },
    #[error("`k = {k}` asks for more clusters than the {n} error-inducing images to cluster")]
    TooManyClusters { k: usize, n: usize },
    #[error("all {n} images have identical heatmaps in every clustered layer: nothing to cluster")]
    Identical { n: usize },
    #[error("no layer but the input layer was clustered: list at least one internal layer in `layers`")]
    OnlyInput,
    #[error(
        "the heatmaps ({heatmaps} images, first {heatmaps_first:?}) were not computed for this image set ({images} \
         images, first {images_first:?}): connect the dataset the heatmaps stage read"
    )]
    OtherImages { heatmaps: usize, heatmaps_first: Option<String>, images: usize, images_first: Option<String> },
    #[error("layers name `{layer}`, which has no heatmaps (layers: {})", layers.join(", "))]
    UnknownLayer { layer: String, layers: Vec<String> },
    #[error(
        "centre = \"class\" needs each image's class, and {} has none (a keypoint or imported dataset without \
         `label_index`): leave `centre` out",
        dataset.display()
    )]
    NoClasses { dataset: std::path::PathBuf },
    #[error(transparent)]
    Layer(#[from] LayerError),
}

impl From<ClusterError> for StageError {
    fn from(e: ClusterError) -> Self {
        StageError::artefact(e)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterParams {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub algorithm: Algorithm,
    /// DBSCAN: the neighbourhood radius, in the clustering space's distances (default: the knee of the sorted
    /// distances to each image's `min_samples`-th nearest image).
    #[serde(default)]
    pub eps: Option<f64>,
    /// DBSCAN and HDBSCAN: points (itself included) a core point has within its radius.
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// HDBSCAN: the fewest images a cluster holds.
    #[serde(default = "default_min_samples")]
    pub min_cluster_size: usize,
    /// Keep only this many principal components of the clustering space before clustering.
    #[serde(default)]
    pub pca: Option<usize>,
    /// The vector describing each image at a layer: `flat` (every value, HUDD's) or `channels` (totals per channel,
    /// L1-normalised: concept-level relevance).
    #[serde(default, skip_serializing_if = "Features::is_flat")]
    pub features: Features,
    /// `class`: each image's features minus the mean of the clustered images of its class, so that what the label
    /// explains does not drive the clusters (classification datasets only).
    #[serde(default, skip_serializing_if = "Centre::is_none")]
    pub centre: Centre,
    /// A spectral embedding of the clustering space (a k-nearest-neighbour graph's normalised Laplacian) that the
    /// algorithm then clusters: `spectral = {}` for 10 neighbours and 32 dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectral: Option<Spectral>,
    /// What a density clustering does with the images it leaves alone: `alone` (clusters of one) or `nearest`
    /// (each joins the cluster of its nearest clustered image, so every failure has a root-cause cluster).
    #[serde(default, skip_serializing_if = "Noise::is_alone")]
    pub noise: Noise,
    #[serde(default)]
    pub linkage: Linkage,
    #[serde(default)]
    pub choose_k: ChooseK,
    /// The number of clusters when `choose_k = "fixed"`.
    #[serde(default)]
    pub k: Option<usize>,
    /// The largest k of the sweep (default HUDD's: max(2, min(500, n / 2))).
    #[serde(default)]
    pub max_clusters: Option<usize>,
    #[serde(default)]
    pub select_layer: SelectLayer,
    /// The layers to cluster, by name (default: every layer whose relevance is not passed through unchanged, so no
    /// two clustered heatmaps are copies of each other).
    #[serde(default)]
    pub layers: Option<Vec<String>>,
    /// Speed of the GIF that plays each cluster's images (HUDD: 100 images per minute).
    #[serde(default = "default_per_minute")]
    pub gif_images_per_minute: f64,
    /// Images on each cluster's contact sheet (those closest to the medoid).
    #[serde(default = "default_sheet")]
    pub sheet_images: usize,
    /// Fewer error-inducing images than this give an empty clustering (at least 3).
    #[serde(default = "default_min_images")]
    pub min_images: usize,
    /// Random subsets of the failing images reclustered to measure each cluster's stability (0: not measured).
    #[serde(default = "default_draws")]
    pub stability_draws: usize,
    /// Share of the failing images in each subset (clusterboot's subsetting default: half).
    #[serde(default = "default_share")]
    pub stability_share: f64,
    /// A cluster whose mean Jaccard similarity falls below this is flagged unstable (Hennig: 0.5).
    #[serde(default = "default_unstable")]
    pub unstable_below: f64,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Threads for the distances (default: the run's share of the cores); not part of the key: every product is
    /// computed whole by one thread, so the bytes are the same at any count.
    #[serde(default)]
    pub threads: Option<usize>,
}

fn default_min_samples() -> usize {
    5
}
fn default_draws() -> usize {
    50
}
fn default_share() -> f64 {
    0.5
}
fn default_unstable() -> f64 {
    0.5
}
fn default_min_images() -> usize {
    3
}
fn default_per_minute() -> f64 {
    100.0
}
fn default_sheet() -> usize {
    64
}

impl ClusterParams {
    /// The settings the numerics read, checked: `validate` has refused `choose_k = "fixed"` without `k`.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline {
            mode: self.mode,
            pca: self.pca,
            spectral: self.spectral,
            algorithm: self.algorithm,
            linkage: self.linkage,
            k: match self.choose_k {
                ChooseK::Knee => KRule::Knee,
                ChooseK::Silhouette => KRule::Silhouette,
                ChooseK::Eigengap => KRule::Eigengap,
                ChooseK::Fixed => KRule::Fixed(self.k.expect("validate refuses choose_k = \"fixed\" without k")),
            },
            eps: self.eps,
            min_samples: self.min_samples,
            min_cluster_size: self.min_cluster_size,
            noise: self.noise,
        }
    }
}

impl Params for ClusterParams {
    // Long: one independent check per parameter, read top to bottom like the parameter table; every problem is
    // collected, so splitting it would only scatter the table.
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        match (self.choose_k, self.k) {
            (ChooseK::Fixed, None) => out.push(Invalid::new("k", "is required when choose_k = \"fixed\"")),
            (ChooseK::Fixed, Some(k)) if k < 1 => out.push(Invalid::new("k", "must be at least 1, got 0")),
            (ChooseK::Knee | ChooseK::Silhouette | ChooseK::Eigengap, Some(_)) => out.push(Invalid::new(
                "k",
                "is only read when choose_k = \"fixed\"; remove it or set choose_k = \"fixed\"",
            )),
            _ => {}
        }
        match (self.algorithm, self.eps) {
            (Algorithm::Dbscan, Some(e)) if !(e > 0.0) => {
                out.push(Invalid::new("eps", format!("must be above 0, got {e}")))
            }
            (Algorithm::Hierarchical | Algorithm::Kmeans | Algorithm::Hdbscan, Some(_)) => {
                out.push(Invalid::new("eps", "is only read with algorithm = \"dbscan\""))
            }
            _ => {}
        }
        if self.min_cluster_size < 2 {
            out.push(Invalid::new("min_cluster_size", format!("must be at least 2, got {}", self.min_cluster_size)));
        }
        if self.algorithm == Algorithm::Kmeans && self.choose_k == ChooseK::Knee {
            out.push(Invalid::new(
                "choose_k",
                "k-means takes choose_k = \"fixed\" or \"silhouette\" (the knee rule is HUDD's, for its dendrogram)",
            ));
        }
        if let Some(sp) = self.spectral {
            if sp.neighbours < 2 {
                out.push(Invalid::new("spectral.neighbours", format!("must be at least 2, got {}", sp.neighbours)));
            }
            if sp.dimensions == 0 {
                out.push(Invalid::new("spectral.dimensions", "must be at least 1, got 0"));
            }
        }
        if self.choose_k == ChooseK::Eigengap && self.spectral.is_none() {
            out.push(Invalid::new(
                "choose_k",
                "\"eigengap\" reads the spectral embedding: set `spectral` (e.g. `spectral = {}`)",
            ));
        }
        if self.noise == Noise::Nearest && !matches!(self.algorithm, Algorithm::Dbscan | Algorithm::Hdbscan) {
            out.push(Invalid::new("noise", "is only read with algorithm = \"dbscan\" or \"hdbscan\""));
        }
        if self.pca == Some(0) {
            out.push(Invalid::new("pca", "must be at least 1 component, got 0"));
        }
        if self.min_samples == 0 {
            out.push(Invalid::new("min_samples", "must be at least 1, got 0"));
        }
        if let Some(m) = self.max_clusters
            && m < 2
        {
            out.push(Invalid::new("max_clusters", format!("must be at least 2, got {m}")));
        }
        if !(self.gif_images_per_minute > 0.0 && self.gif_images_per_minute <= 6000.0) {
            out.push(Invalid::new(
                "gif_images_per_minute",
                format!("must be above 0 and at most 6000, got {}", self.gif_images_per_minute),
            ));
        }
        if self.min_images < 3 {
            out.push(Invalid::new(
                "min_images",
                format!("must be at least 3 (two images make no clusters), got {}", self.min_images),
            ));
        }
        if !(self.stability_share > 0.0 && self.stability_share < 1.0) {
            out.push(Invalid::new("stability_share", format!("must be in (0, 1), got {}", self.stability_share)));
        }
        if !(0.0..=1.0).contains(&self.unstable_below) {
            out.push(Invalid::new("unstable_below", format!("must be in [0, 1], got {}", self.unstable_below)));
        }
        if let Some(layers) = &self.layers
            && layers.is_empty()
        {
            out.push(Invalid::new("layers", "must name at least one layer (or be left out for every distinct layer)"));
        }
        out
    }
}

impl Stage for Cluster {
    type Params = ClusterParams;
    const KIND: &'static str = "cluster";
    // 7: PCA of per-channel features from their d×d scatter matrix (other rounding than the n×n route).
    // 8: with `centre = "class"`, an image alone in its class is centred on every image, not made the zero vector.
    const VERSION: u32 = 8;
    const USES_SEED: bool = true;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "heatmaps",
            accepts: &[HEATMAPS, FEATURES],
            many: false,
            required: true,
            doc: "a heatmaps stage's output (HUDD), or an activations stage's (another representation)",
        },
        InputSlot {
            name: "images",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the dataset the heatmaps were computed for",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "clusters",
        kind: CLUSTERS,
        path: "clusters/",
        doc: "cluster.json, clusters.csv, summary.csv, layers.csv, layers/<layer>/, rcc/<id>/",
    }];
    const DOC: &'static str = "Root-cause clusters of the error-inducing images.";

    // Backed by tests/it/settings.rs and tests/it/engine.rs: 1 and 2 threads give the same bytes.
    const SETTINGS: &'static [&'static str] = &["threads"];

    /// How principal components are computed, in the keys of the clusterings that reduce their space by PCA alone
    /// (a change there leaves HUDD's own clusterings and everything downstream of them cached). 2: the scatter
    /// matrix and the scores as `matrixmultiply`'s products (`cluster::pca_scores`), where they were MKL's.
    fn fingerprints(p: &ClusterParams) -> Vec<(String, String)> {
        p.pca.map(|_| ("principal components".to_string(), "2".to_string())).into_iter().collect()
    }

    fn run(&self, p: &ClusterParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let threads = p.threads.unwrap_or(ctx.threads).max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|source| ClusterError::Threads { threads, source })?;
        pool.install(|| cluster_all(p, ctx))
    }
}

/// The stage's work, on the stage's thread pool.
fn cluster_all(p: &ClusterParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
    let pipeline = p.pipeline();
    let hm = ctx.input("heatmaps")?.path.clone();
    let ds = Dataset::open(&ctx.input("images")?.path)?;
    let ids = ds.ids()?;
    let (order, layers) = layers_to_cluster(p, &Heatmaps::open(&hm), &ids)?;
    let classes = classes_of(p, &ds)?;
    let representation = Representation { features: p.features, classes: classes.as_deref() };
    let out = ctx.output("clusters")?;
    let folder = Clusters::open(&out);
    let n = ids.len();
    let mut summary = ClusterSummary {
        images: n,
        empty: None,
        layer: None,
        clusters: 0,
        k_rule: String::new(),
        layer_rule: String::new(),
        mode: p.mode,
        linkage: p.linkage,
        layers: Vec::new(),
        stability: None,
    };
    if n < p.min_images {
        summary.empty =
            Some(format!("no root-cause clusters: only {n} error-inducing image{}", if n == 1 { "" } else { "s" }));
        return write_empty(&folder, &summary);
    }
    if let (ChooseK::Fixed, Some(k)) = (p.choose_k, p.k)
        && k > n
    {
        return Err(ClusterError::TooManyClusters { k, n }.into());
    }
    let max_k_of = |n: usize| p.max_clusters.unwrap_or_else(|| cluster::default_max_k(n)).min(n.saturating_sub(1));
    let max_k = max_k_of(n);
    let plan = Plan { ids: &ids, representation, pipeline: &pipeline, max_k };
    let heatmaps = Heatmaps::open(&hm);
    let (scores, best) = cluster_layers(p, ctx, &plan, &heatmaps, &order, &layers, &folder)?;
    summary.layers = scores;
    let Some((chosen, read, labels)) = best else {
        if summary.layers.iter().all(|l| l.k == 0) {
            return Err(ClusterError::Identical { n }.into());
        }
        return Err(ClusterError::OnlyInput.into());
    };
    choose_layer(p, &folder, &mut summary, chosen)?;
    // Stability: subsets of the failing images reclustered with the same rule, from the same distances.
    ctx.progress.message(&format!("stability: {} subsets of {:.0}%", p.stability_draws, p.stability_share * 100.0));
    let stability = cluster::stability(&labels, p.stability_draws, p.stability_share, ctx.seed, |rows| {
        read.recluster(rows, &pipeline, max_k_of(rows.len()))
    });
    if p.stability_draws > 0 {
        summary.stability = Some(StabilitySummary {
            draws: p.stability_draws,
            share: p.stability_share,
            threshold: p.unstable_below,
            unstable: stability.iter().filter(|s| s.is_some_and(|s| s < p.unstable_below)).count(),
        });
    }
    let pixel_layer = order.first().cloned().unwrap_or_default();
    let stable = |c: usize| stability.get(c).copied().flatten().map(|s| (s, s >= p.unstable_below));
    inspection(&out, &ds, &ids, &read.distances, &labels, &heatmaps.layer_path(&pixel_layer), p, &stable)?;
    Ok(folder.write_summary(&summary)?)
}

/// The layer chosen: the clustering of the best eligible layer (its index among the layers, the layer as read and
/// its labels).
type Chosen = (usize, cluster::layer::Layer, Vec<usize>);

/// Clusters every layer (each scored, `clusters-<layer>.csv` written) and keeps the best eligible one by the
/// manifest's layer rule (the input layer is eligible only when it is the only one).
fn cluster_layers(
    p: &ClusterParams,
    ctx: &StageContext<'_>,
    plan: &Plan<'_>,
    heatmaps: &Heatmaps,
    order: &[String],
    layers: &[String],
    folder: &Clusters,
) -> Result<(Vec<LayerScore>, Option<Chosen>), StageError> {
    let mut scores: Vec<LayerScore> = Vec::new();
    let mut best: Option<Chosen> = None;
    ctx.progress.start(layers.len() as u64, "layers");
    for name in layers {
        let eligible = order.first() != Some(name) || layers.len() == 1;
        let (score, clustered) = cluster_layer(plan, &heatmaps.layer_path(name), name, folder, eligible)?;
        if let Some((read, labels)) = clustered {
            let better = |b: &LayerScore| match p.select_layer {
                SelectLayer::Wicd => score.wicd < b.wicd,
                SelectLayer::Silhouette => score.silhouette > b.silhouette,
            };
            if eligible && best.as_ref().is_none_or(|(i, _, _)| better(&scores[*i])) {
                best = Some((scores.len(), read, labels));
            }
        }
        scores.push(score);
        ctx.progress.inc(1);
    }
    Ok((scores, best))
}

/// Writes `layers.csv` with the chosen layer marked, and states the choice in the summary.
fn choose_layer(
    p: &ClusterParams,
    folder: &Clusters,
    summary: &mut ClusterSummary,
    chosen: usize,
) -> Result<(), StageError> {
    let layer_rows: Vec<LayerRow> = (summary.layers.iter().enumerate())
        .map(|(i, l)| LayerRow {
            layer: l.layer.clone(),
            k: l.k,
            k_rule: l.k_rule.clone(),
            wicd: l.wicd,
            silhouette: l.silhouette,
            eligible: l.eligible,
            selected: i == chosen,
        })
        .collect();
    folder.write_layers(&layer_rows)?;
    let layer = summary.layers[chosen].clone();
    summary.layer = Some(layer.layer.clone());
    summary.clusters = layer.k;
    summary.k_rule = layer.k_rule.clone();
    summary.layer_rule = match p.select_layer {
        SelectLayer::Wicd => "the lowest WICD on raw heatmap distances (the input layer excluded)".into(),
        SelectLayer::Silhouette => {
            "the highest mean silhouette on raw heatmap distances (the input layer excluded)".into()
        }
    };
    Ok(())
}

/// What every layer is clustered with: the images, how each is described, the pipeline and the largest k.
struct Plan<'a> {
    ids: &'a [String],
    representation: Representation<'a>,
    pipeline: &'a Pipeline,
    max_k: usize,
}

/// A layer read and its partition.
type Partitioned = (cluster::layer::Layer, Vec<usize>);

/// One layer clustered: its distances, curve and clusters written to its folder; its row of the layers table, and
/// the layer read with its partition (none when every image's heatmap is the same: nothing to cluster).
fn cluster_layer(
    plan: &Plan<'_>,
    path: &Path,
    name: &str,
    folder: &Clusters,
    eligible: bool,
) -> Result<(LayerScore, Option<Partitioned>), StageError> {
    let (ids, n) = (plan.ids, plan.ids.len());
    let read = cluster::layer::read(path, name, ids, plan.representation).map_err(ClusterError::from)?;
    let raw = &read.distances;
    let dir = folder.layer(name)?;
    let values: Vec<f32> = raw.iter().map(|&v| v as f32).collect();
    crate::npy::write(&dir.distances_path(), &[n, n], &values)?;
    if cluster::max_distance(raw) == 0.0 {
        let score = LayerScore {
            layer: name.to_string(),
            k: 0,
            k_rule: format!("all {n} heatmaps of this layer are identical: nothing to cluster"),
            wicd: None,
            silhouette: None,
            eligible: false,
        };
        return Ok((score, None));
    }
    let (labels, sweep, k_rule) = cluster::pipeline::cluster(read.points(), plan.pipeline, plan.max_k);
    let score = LayerScore {
        layer: name.to_string(),
        k: cluster::members(&labels).len(),
        k_rule,
        wicd: Some(cluster::wicd(raw, &labels)),
        silhouette: Some(cluster::silhouette(raw, &labels)),
        eligible,
    };
    write_layer(&dir, ids, &labels, &sweep, &score)?;
    Ok((score, Some((read, labels))))
}

/// The heatmaps' layers in the network's order, and those to cluster (the manifest's `layers`, or every layer whose
/// relevance is not passed through unchanged); refused when the heatmaps were computed for other images or a named
/// layer has none.
fn layers_to_cluster(
    p: &ClusterParams,
    heatmaps: &Heatmaps,
    ids: &[String],
) -> Result<(Vec<String>, Vec<String>), StageError> {
    let conservation = heatmaps.layers()?;
    let order: Vec<String> = conservation.iter().map(|r| r.layer.clone()).collect();
    let rules: BTreeMap<String, String> = conservation.into_iter().map(|r| (r.layer, r.rule)).collect();
    let indexed = heatmaps.ids()?;
    if indexed != ids {
        return Err(ClusterError::OtherImages {
            heatmaps: indexed.len(),
            heatmaps_first: indexed.first().cloned(),
            images: ids.len(),
            images_first: ids.first().cloned(),
        }
        .into());
    }
    let layers = match &p.layers {
        Some(names) => {
            if let Some(bad) = names.iter().find(|n| !order.contains(n)) {
                return Err(ClusterError::UnknownLayer { layer: bad.clone(), layers: order }.into());
            }
            names.clone()
        }
        None => order.iter().filter(|l| rules.get(*l).is_none_or(|r| r != "pass")).cloned().collect(),
    };
    Ok((order, layers))
}

/// Each image's class as a dense index, when `centre = "class"` asks for it.
fn classes_of(p: &ClusterParams, ds: &Dataset) -> Result<Option<Vec<usize>>, StageError> {
    match p.centre {
        Centre::None => Ok(None),
        Centre::Class => Ok(Some(cluster::features::dense_classes(
            &ds.class_labels().map_err(|_| ClusterError::NoClasses { dataset: ds.dir.clone() })?,
        ))),
    }
}

fn write_empty(folder: &Clusters, summary: &ClusterSummary) -> Result<(), StageError> {
    folder.write_members(&[])?;
    folder.write_rows(&[])?;
    folder.write_layers(&[])?;
    Ok(folder.write_summary(summary)?)
}

/// A layer's curve over k, its clusters and its knee plot.
fn write_layer(
    dir: &ClusteredLayer,
    ids: &[String],
    labels: &[usize],
    sweep: &cluster::Sweep,
    score: &LayerScore,
) -> Result<(), StageError> {
    let curve: Vec<CurvePoint> = (sweep.ks.iter().enumerate())
        .map(|(i, &k)| CurvePoint { k, wicd: sweep.wicd[i], silhouette: sweep.silhouette[i], chosen: k == score.k })
        .collect();
    dir.write_curve(&curve)?;
    let members: Vec<LayerMember> =
        ids.iter().zip(labels).map(|(id, l)| LayerMember { image: id.clone(), cluster: l + 1 }).collect();
    dir.write_members(&members)?;
    let series = [
        crate::media::svg::Series {
            name: "WICD",
            points: sweep.ks.iter().zip(&sweep.wicd).map(|(&k, &w)| (k as f64, w)).collect(),
            colour: "#1f5fa8",
        },
        crate::media::svg::Series {
            name: "silhouette",
            points: sweep.ks.iter().zip(&sweep.silhouette).map(|(&k, &s)| (k as f64, s)).collect(),
            colour: "#2a9d4b",
        },
    ];
    let title = format!("{}: k = {} ({})", score.layer, score.k, score.k_rule);
    let svg = crate::media::svg::line_chart(
        &title,
        "number of clusters k",
        &series,
        Some((score.k as f64, &format!("k = {}", score.k))),
    );
    Ok(dir.write_knee(&svg)?)
}

/// The selected layer's clusters as tables, and per cluster its images, a GIF, a contact sheet and the mean pixel
/// relevance (the heatmap of the input layer, the one aligned with the image) over the medoid.
#[allow(clippy::too_many_arguments)]
fn inspection(
    out: &Path,
    ds: &Dataset,
    ids: &[String],
    raw: &Matrix,
    labels: &[usize],
    pixels: &Path,
    p: &ClusterParams,
    stable: &dyn Fn(usize) -> Option<(f64, bool)>,
) -> Result<(), StageError> {
    let (medoids, to_medoid) = cluster::medoids(raw, labels);
    let groups = cluster::members(labels);
    let n = ids.len();
    let table: Vec<Member> = (0..n)
        .map(|i| Member { image: ids[i].clone(), cluster: labels[i] + 1, distance_to_medoid: to_medoid[i] })
        .collect();
    Clusters::open(out).write_members(&table)?;
    let summary: Vec<ClusterRow> = groups
        .iter()
        .enumerate()
        .map(|(c, members)| ClusterRow {
            cluster: c + 1,
            size: members.len(),
            share: members.len() as f64 / n as f64,
            mean_intra_distance: cluster::mean_intra(raw, members),
            medoid: ids[medoids[c]].clone(),
            stability: stable(c).map(|s| s.0),
            stable: stable(c).map(|s| s.1),
        })
        .collect();
    Clusters::open(out).write_rows(&summary)?;
    let (w, h, ch) = (ds.meta.width, ds.meta.height, ds.meta.channels);
    let scale = (128 / w.max(1)).max(1);
    let mut heat = NpyReader::<f32>::open(pixels)?;
    for (c, members) in groups.iter().enumerate() {
        // Closest to the medoid first: the GIF and the sheet open with the most typical images.
        let mut ordered = members.clone();
        ordered.sort_by(|&a, &b| to_medoid[a].total_cmp(&to_medoid[b]).then(a.cmp(&b)));
        let names: Vec<&str> = ordered.iter().map(|&i| ids[i].as_str()).collect();
        let frames = crate::media::group::write_group(
            &out.join("rcc"),
            &(c + 1).to_string(),
            ds,
            &ordered,
            &names,
            p.gif_images_per_minute,
            p.sheet_images,
        )?;
        // Mean pixel relevance (summed over colour channels) of the cluster, over its medoid.
        let mut mean = vec![0.0f32; w * h];
        if heat.row_len() == ch * w * h {
            for &i in members {
                let r = heat.read_rows(i, 1)?;
                for (k, v) in r.iter().enumerate() {
                    mean[k % (w * h)] += v / members.len() as f32;
                }
            }
        }
        // Pixel relevance is speckled (neighbouring pixels alternate in sign): a light blur shows where it gathers.
        let mean = crate::media::box_blur(&mean, w, h, (w / 32).max(1));
        let medoid = frames[ordered.iter().position(|&i| i == medoids[c]).unwrap_or(0)].clone();
        let picture = crate::media::overlay(&medoid, &mean, w * h);
        crate::media::write_png(&Clusters::open(out).picture(c + 1, Drawn::Heatmap), &picture, w, h, scale)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_read_by_other_algorithms_or_out_of_range_are_refused_by_name() {
        use crate::engine::stage::Params;
        let invalid = |text: &str| -> Vec<String> {
            let p: super::ClusterParams = toml::from_str(text).unwrap();
            p.validate().into_iter().map(|i| i.field).collect()
        };
        assert_eq!(invalid("noise = \"nearest\""), ["noise"]);
        assert!(invalid("noise = \"nearest\"\nalgorithm = \"hdbscan\"").is_empty());
        assert_eq!(
            invalid("spectral = { neighbours = 1, dimensions = 0 }"),
            ["spectral.neighbours", "spectral.dimensions"]
        );
        assert!(invalid("spectral = {}\nfeatures = \"channels\"\ncentre = \"class\"").is_empty());
    }
}
