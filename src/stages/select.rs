//! Stage `select` (HUDD Step 4, AssignModule): the improvement-set images most likely to fail for the reasons the
//! root-cause clusters capture, chosen for labelling by their heatmap distance to the clusters' members.

use std::collections::BTreeMap;

use polars::prelude::Column;
use serde::{Deserialize, Serialize};

use crate::artefact::clusters::{ClusterSummary, Clusters};
use crate::artefact::heatmaps::Heatmaps;
use crate::artefact::selection::{ClusterSelection, SelectRecord, UnsafeRow};
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CLUSTERS, FEATURES, HEATMAPS, MODEL, PICTURES, SELECTION, UNSAFE_SET};
use crate::cluster::members::Members;
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::lrp::batch;
use crate::lrp::batch::Seed;
use crate::media::group::write_group;
use crate::model::backbone::{self, Pool};
use crate::model::predict::{DEFAULT_THRESHOLD, for_each_activation_batch, predict};
use crate::runtime::{self, DeviceChoice};

pub struct Select;

/// How images are assigned to clusters.
/// Why images cannot be selected as asked: each names the parameter, the file or the layer.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(
        "the random and failing strategies need a labelling budget: `budget = <images>` or `budget_of = \"<select \
         stage>.unsafe\"`"
    )]
    NoBudget,
    #[error(
        "strategy \"hudd\" needs `clusters` (a cluster stage's output) and `heatmaps` (the heatmaps they were made from)"
    )]
    NoClusters,
    #[error(
        "the heatmaps in {} were seeded with `seed_with = \"{seed}\"`, which on a keypoint model finds the worst \
         keypoint by its ground truth: selecting with them would read the targets of every candidate; seed them with \
         `least-confident` (the map the model is least sure of)",
        heatmaps.display()
    )]
    KeypointSeedReadsTargets { heatmaps: std::path::PathBuf, seed: String },
    #[error(
        "the heatmaps in {} were seeded with the true class (`seed_with = \"{seed}\"`): selecting with them would read \
         the labels of every candidate; seed them with `predicted` or `predicted-one-hot`",
        heatmaps.display()
    )]
    SeedReadsLabels { heatmaps: std::path::PathBuf, seed: String },
    #[error("cluster member {id} has no heatmap in {}", heatmaps.display())]
    NoHeatmap { id: String, heatmaps: std::path::PathBuf },
    #[error("the clusters were made at layer `{layer}`, which this model does not have")]
    NoLayer { layer: String },
    #[error(transparent)]
    ProducerParams(#[from] backbone::ProducerParams),
}

impl From<SelectError> for StageError {
    fn from(e: SelectError) -> Self {
        StageError::artefact(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SelectMode {
    /// HUDD's: every image goes to its closest cluster that still has room, greedily by rank and distance.
    #[default]
    Closest,
    /// As `closest`, but an image is accepted only if it is closer to the cluster than the cluster's own spread
    /// (the mean distance between its members).
    Threshold,
    /// Every candidate to its closest cluster, without quotas or budget: how held-out images are assigned to the
    /// clusters to evaluate retraining per cluster (nothing is selected for labelling).
    All,
}

/// Which images to select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// HUDD's: the images closest to the root-cause clusters.
    #[default]
    Hudd,
    /// Baseline: images drawn uniformly from the improvement set.
    Random,
    /// Baseline: images drawn at random and labelled, keeping those the model gets wrong; each image labelled
    /// counts against the budget, failing or not.
    Failing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectParams {
    #[serde(default)]
    pub strategy: Strategy,
    /// The split of the dataset to select from (never the training or test images).
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default)]
    pub mode: SelectMode,
    /// Per-cluster quota as a multiple of the cluster's size (HUDD: 2, so ⌈2·|cluster|⌉).
    #[serde(default = "default_quota")]
    pub quota: f64,
    /// At most this many images in all (the labelling budget).
    #[serde(default)]
    pub budget: Option<usize>,
    /// `failing` with a keypoint model: an image fails when its mean keypoint error exceeds this many pixels
    /// (default 4, HUDD's, as the `test` stage; ignored by the other strategies and by classifiers). Set it to the
    /// `test` stage's `threshold` when that one differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_per_minute")]
    pub gif_images_per_minute: f64,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_split() -> String {
    "improvement".into()
}
fn default_quota() -> f64 {
    2.0
}
fn default_batch() -> usize {
    64
}
fn default_per_minute() -> f64 {
    100.0
}

impl Params for SelectParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if !(self.quota > 0.0) {
            out.push(Invalid::new("quota", format!("must be above 0, got {}", self.quota)));
        }
        if self.budget == Some(0) {
            out.push(Invalid::new("budget", "must be at least 1 image, got 0"));
        }
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
        }
        if !(self.gif_images_per_minute > 0.0 && self.gif_images_per_minute <= 6000.0) {
            out.push(Invalid::new(
                "gif_images_per_minute",
                format!("must be above 0 and at most 6000, got {}", self.gif_images_per_minute),
            ));
        }
        if self.strategy != Strategy::Hudd && self.mode != SelectMode::Closest {
            out.push(Invalid::new("mode", "only applies to strategy \"hudd\""));
        }
        if self.mode == SelectMode::All && self.budget.is_some() {
            out.push(Invalid::new("budget", "does not apply to mode \"all\", which assigns every candidate"));
        }
        if let Some(t) = self.threshold
            && !(t > 0.0)
        {
            out.push(Invalid::new("threshold", format!("must be above 0 pixels, got {t}")));
        }
        if matches!(self.split.as_str(), "train" | "test") {
            out.push(Invalid::new(
                "split",
                format!("must not be `{}`: selection picks new images to label, from an improvement set", self.split),
            ));
        }
        out
    }
}

/// One selected image.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Index into the candidate images.
    pub image: usize,
    /// Index into the clusters.
    pub cluster: usize,
    pub distance: f64,
    /// 1 when the cluster is the image's closest, 2 for its second closest, ...
    pub rank: usize,
}

/// HUDD's greedy assignment: `distances[i][c]` from candidate `i` to cluster `c`; `quotas[c]` images at most per
/// cluster; `accept(c, d)` may refuse a distance; `budget` images at most in all. Rank by rank (every image's
/// closest cluster first), images in ascending distance; an image is taken once.
pub fn assign(
    distances: &[Vec<f64>],
    quotas: &[usize],
    budget: usize,
    accept: impl Fn(usize, f64) -> bool,
) -> Vec<Pick> {
    let k = quotas.len();
    let orders: Vec<Vec<usize>> = distances
        .iter()
        .map(|d| {
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)));
            order
        })
        .collect();
    let mut taken = vec![false; distances.len()];
    let mut counts = vec![0usize; k];
    let mut picks = Vec::new();
    for rank in 0..k {
        if picks.len() >= budget || counts.iter().zip(quotas).all(|(c, q)| c >= q) {
            break;
        }
        let mut candidates: Vec<(f64, usize, usize)> = (0..distances.len())
            .filter(|&i| !taken[i])
            .map(|i| (distances[i][orders[i][rank]], i, orders[i][rank]))
            .collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (d, i, c) in candidates {
            if picks.len() >= budget {
                break;
            }
            if !taken[i] && counts[c] < quotas[c] && accept(c, d) {
                taken[i] = true;
                counts[c] += 1;
                picks.push(Pick { image: i, cluster: c, distance: d, rank: rank + 1 });
            }
        }
    }
    picks
}

impl Stage for Select {
    type Params = SelectParams;
    const KIND: &'static str = "select";
    const VERSION: u32 = 3;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "model", accepts: &[MODEL], many: false, required: true, doc: "the model under analysis" },
        InputSlot {
            name: "dataset",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the dataset holding the improvement split",
        },
        InputSlot {
            name: "clusters",
            accepts: &[CLUSTERS],
            many: false,
            required: false,
            doc: "a cluster stage's output (strategy hudd)",
        },
        InputSlot {
            name: "heatmaps",
            accepts: &[HEATMAPS, FEATURES],
            many: false,
            required: false,
            doc: "the heatmaps (or activations) the clusters were made from (strategy hudd)",
        },
        InputSlot {
            name: "budget_of",
            accepts: &[UNSAFE_SET],
            many: false,
            required: false,
            doc: "another select stage's unsafe set: the budget is its size",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "unsafe", kind: UNSAFE_SET, path: "unsafe.csv", doc: "image,cluster,distance,rank" },
        OutputSpec {
            name: "selected",
            kind: SELECTION,
            path: "selected/",
            doc: "the selected images as a dataset (columns rcc, rcc_distance added)",
        },
        OutputSpec {
            name: "pictures",
            kind: PICTURES,
            path: "pictures/",
            doc: "per cluster: its selected images, a GIF and a contact sheet; select.json",
        },
    ];
    const USES_SEED: bool = true;
    // Backed by tests/it/settings.rs: 1 and 2 threads give the same bytes. The batch size does not: oneDNN's
    // kernels sum in another order for another batch, and the last bits of scores and relevance move.
    const SETTINGS: &'static [&'static str] = &["threads"];
    const DOC: &'static str = "Selects likely-unsafe improvement images for labelling.";

    /// The device kind this resolves to enters the key: a GPU computes other bytes.
    fn fingerprints(p: &SelectParams) -> Vec<(String, String)> {
        vec![crate::runtime::device_fingerprint(p.device)]
    }

    fn torch_threads(p: &SelectParams, run: usize) -> usize {
        p.threads.unwrap_or(run)
    }

    fn run(&self, p: &SelectParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let mut ds = Dataset::open(&ctx.input("dataset")?.path)?;
        let candidates = ds.split_rows(&p.split)?;
        let ids = ds.ids()?;
        let budget = budget(p, ctx)?;
        if p.strategy != Strategy::Hudd {
            return baseline(p, ctx, &ds, &ids, &candidates, budget, device);
        }
        if ctx.inputs("clusters").is_empty() || ctx.inputs("heatmaps").is_empty() {
            return Err(SelectError::NoClusters.into());
        }
        let cdir = ctx.input("clusters")?.path.clone();
        let hdir = ctx.input("heatmaps")?.path.clone();
        let summary: ClusterSummary = Clusters::open(&cdir).summary()?;
        let pictures = ctx.output("pictures")?;
        std::fs::create_dir_all(&pictures).map_err(|e| StageError::io(&pictures, e))?;
        let mut report = SelectRecord {
            budget: p.budget,
            mode: Some(name_of(p.mode)),
            quota: Some(p.quota),
            ..record(p, candidates.len())
        };
        let Some(layer) = summary.layer.clone() else {
            report.empty = Some(summary.empty.clone().unwrap_or_else(|| "no root-cause clusters".into()));
            return finish(ctx, &ds, &[], &[], &ids, &candidates, &report, p.gif_images_per_minute);
        };
        // The clusters' members (clusters of one image are ignored, as in HUDD) and their heatmaps at the layer.
        let heatmaps = Heatmaps::open(&hdir);
        let activations = heatmaps.are_activations()?;
        let seed_with = seed_like_members(&heatmaps, activations, &ds)?;
        let groups = member_rows(&heatmaps, &Clusters::open(&cdir), &hdir)?;
        chosen_by(&mut ds, &ids, &Clusters::open(&cdir))?;
        let clusters: Vec<(usize, Vec<usize>)> = groups.into_iter().filter(|(_, m)| m.len() > 1).collect();
        if clusters.is_empty() {
            report.empty = Some(format!(
                "every one of the {} clusters holds a single image, and clusters of one image are ignored (as in HUDD)",
                summary.clusters
            ));
            return finish(ctx, &ds, &[], &[], &ids, &candidates, &report, p.gif_images_per_minute);
        }
        let groups: Vec<Vec<usize>> = clusters.iter().map(|(_, m)| m.clone()).collect();
        let members = Members::load(&heatmaps.layer_path(&layer), &groups)?;
        let distances = if activations {
            candidate_activations(p, ctx, &ds, &candidates, &members, &layer, device)?
        } else {
            candidate_heatmaps(p, ctx, &ds, &candidates, &members, &heatmaps, &layer, seed_with, device)?
        };
        let quotas: Vec<usize> = match p.mode {
            SelectMode::All => vec![usize::MAX; clusters.len()],
            _ => clusters.iter().map(|(_, m)| (p.quota * m.len() as f64).ceil() as usize).collect(),
        };
        // A cluster's spread: the mean distance between its members at the layer.
        let spreads = members.spreads();
        let budget = if p.mode == SelectMode::All { usize::MAX } else { budget };
        let picks = assign(&distances, &quotas, budget, |c, d| p.mode != SelectMode::Threshold || d <= spreads[c]);
        let cluster_ids: Vec<usize> = clusters.iter().map(|(c, _)| *c).collect();
        report.layer = Some(layer);
        report.clusters = Some(
            clusters
                .iter()
                .enumerate()
                .map(|(i, (c, m))| ClusterSelection {
                    cluster: *c,
                    members: m.len(),
                    quota: quotas[i],
                    selected: picks.iter().filter(|p| p.cluster == i).count(),
                    spread: spreads[i],
                })
                .collect(),
        );
        report.ignored_singletons = Some(summary.clusters - clusters.len());
        report.selected = Some(picks.len());
        finish(ctx, &ds, &picks, &cluster_ids, &ids, &candidates, &report, p.gif_images_per_minute)
    }
}

/// The labelling budget: the manifest's, else the size of `budget_of`'s unsafe set; HUDD's strategy needs none.
fn budget(p: &SelectParams, ctx: &StageContext<'_>) -> Result<usize, StageError> {
    Ok(match (p.budget, ctx.inputs("budget_of").first()) {
        (Some(b), _) => b,
        (None, Some(other)) => table::read::<UnsafeRow>(&other.path)?.len(),
        (None, None) if p.strategy == Strategy::Hudd => usize::MAX,
        (None, None) => return Err(SelectError::NoBudget.into()),
    })
}

/// What candidates are seeded with: as the cluster members were, so that like is compared with like (activations:
/// the prediction). A seed that reads labels (the true class; for keypoints the worst keypoint by its target) would
/// read the labels of every candidate, which selection has not paid for: refused.
fn seed_like_members(heatmaps: &Heatmaps, activations: bool, ds: &Dataset) -> Result<Seed, StageError> {
    if activations {
        return Ok(Seed::Predicted);
    }
    let seed_with = heatmaps.seed()?;
    let keypoints = matches!(ds.meta.target, crate::dataset::Target::Regression { .. });
    if !seed_with.reads_labels(keypoints) {
        return Ok(seed_with);
    }
    let (heatmaps, seed) = (heatmaps.dir.clone(), name_of(seed_with));
    Err(if keypoints {
        SelectError::KeypointSeedReadsTargets { heatmaps, seed }
    } else {
        SelectError::SeedReadsLabels { heatmaps, seed }
    }
    .into())
}

/// Records in the dataset the splits whose images chose the selection: those of the clustered images, where the
/// dataset holds them.
fn chosen_by(ds: &mut Dataset, ids: &[String], clusters: &Clusters) -> Result<(), StageError> {
    let split_of: BTreeMap<String, String> = ids.iter().cloned().zip(ds.strings("split")?).collect();
    for (_, members) in clusters.groups()? {
        for id in members {
            if let Some(split) = split_of.get(&id)
                && !ds.meta.chosen_by.contains(split)
            {
                ds.meta.chosen_by.push(split.clone());
            }
        }
    }
    Ok(())
}

/// What every selection records: its strategy, split and candidates.
fn record(p: &SelectParams, candidates: usize) -> SelectRecord {
    SelectRecord {
        budget: None,
        candidates,
        clusters: None,
        empty: None,
        ignored_singletons: None,
        labelled: None,
        layer: None,
        mode: None,
        quota: None,
        selected: None,
        split: p.split.clone(),
        strategy: name_of(p.strategy),
    }
}

/// A parameter's name as the manifest spells it (`closest`, `hudd`).
fn name_of(value: impl Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// Each cluster's members as rows of the heatmaps (or activations) file; refused when one has none.
fn member_rows(
    heatmaps: &Heatmaps,
    clusters: &Clusters,
    hdir: &std::path::Path,
) -> Result<BTreeMap<usize, Vec<usize>>, StageError> {
    let index = heatmaps.ids()?;
    let mut row_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, id) in index.iter().enumerate() {
        row_of.entry(id.as_str()).or_insert(i);
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (c, members) in clusters.groups()? {
        for id in members {
            let row = *row_of
                .get(id.as_str())
                .ok_or_else(|| SelectError::NoHeatmap { id: id.clone(), heatmaps: hdir.to_path_buf() })?;
            groups.entry(c).or_default().push(row);
        }
    }
    Ok(groups)
}

/// Each candidate's distances to the clusters: its activations at the clusters' layer, as the clusters were made
/// from the members', with the model under analysis or with the pretrained backbone (and pooling) the activations
/// stage used.
fn candidate_activations(
    p: &SelectParams,
    ctx: &StageContext<'_>,
    ds: &Dataset,
    candidates: &[usize],
    members: &Members,
    layer: &str,
    device: tch::Device,
) -> Result<Vec<Vec<f64>>, StageError> {
    let own = tch::get_num_threads().max(1) as usize;
    let (model, pool, threads) = match backbone::made_by(ctx.producer("heatmaps")).map_err(SelectError::from)? {
        Some((b, pool)) => (b.load(ctx.workspace, device, ds.meta.channels)?, pool, backbone::THREADS),
        None => (crate::model::artefact::Model::load(&ctx.input("model")?.path, device)?, Pool::None, own),
    };
    let k = layer_index(model.net("the select stage")?, layer)?;
    let mut distances = Vec::with_capacity(candidates.len());
    ctx.progress.start(candidates.len() as u64, "candidate activations");
    runtime::with_threads(threads, || {
        for_each_activation_batch(&model, ds, candidates, p.batch_size, &[k], |chunk, acts| {
            distances.extend(members.nearest(&backbone::pool(acts[0].shallow_clone(), pool)));
            ctx.progress.inc(chunk.len() as u64);
            Ok::<(), StageError>(())
        })
    })?;
    Ok(distances)
}

/// Each candidate's distances to the clusters: its heatmap at the clusters' layer, seeded as the members' were,
/// with the clusters' rules.
#[allow(clippy::too_many_arguments)] // the select stage's state, passed as it is
fn candidate_heatmaps(
    p: &SelectParams,
    ctx: &StageContext<'_>,
    ds: &Dataset,
    candidates: &[usize],
    members: &Members,
    heatmaps: &Heatmaps,
    layer: &str,
    seed_with: Seed,
    device: tch::Device,
) -> Result<Vec<Vec<f64>>, StageError> {
    let model = batch::prepare(&ctx.input("model")?.path, device, ds, p.batch_size, "the select stage (LRP)")?;
    let net = model.net("LRP")?;
    let (rules, k) = heatmaps.rules_for(net, layer)?;
    let mut distances = Vec::with_capacity(candidates.len());
    ctx.progress.start(candidates.len() as u64, "candidate heatmaps");
    batch::for_each_batch(&model, ds, candidates, &rules, seed_with, p.batch_size, |chunk, _, relevance| {
        distances.extend(members.nearest(&relevance[k]));
        ctx.progress.inc(chunk.len() as u64);
        Ok::<(), StageError>(())
    })?;
    Ok(distances)
}

/// The position of `layer` among the network's layers.
fn layer_index(net: &crate::model::net::Net, layer: &str) -> Result<usize, StageError> {
    net.layer_index(layer).ok_or_else(|| SelectError::NoLayer { layer: layer.to_string() }.into())
}

/// The baselines: `budget` images drawn at random from the candidates (`random`), or drawn at random, labelled and
/// kept when the model gets them wrong (`failing`). They form one group, cluster 0.
fn baseline(
    p: &SelectParams,
    ctx: &mut StageContext<'_>,
    ds: &Dataset,
    ids: &[String],
    candidates: &[usize],
    budget: usize,
    device: tch::Device,
) -> Result<(), StageError> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(ctx.seed));
    order.truncate(budget.min(candidates.len()));
    order.sort_unstable();
    let labelled = order.len();
    if p.strategy == Strategy::Failing {
        let model = crate::model::artefact::Model::load(&ctx.input("model")?.path, device)?;
        let rows: Vec<usize> = order.iter().map(|&i| candidates[i]).collect();
        let predictions =
            predict(&model, ds, &rows, p.batch_size, p.threshold.unwrap_or(DEFAULT_THRESHOLD), ctx.progress)?;
        order = order.into_iter().zip(&predictions).filter(|(_, pr)| !pr.correct()).map(|(i, _)| i).collect();
    }
    let picks: Vec<Pick> = order.into_iter().map(|image| Pick { image, cluster: 0, distance: 0.0, rank: 1 }).collect();
    let report = SelectRecord {
        budget: Some(budget),
        labelled: Some(labelled),
        selected: Some(picks.len()),
        ..record(p, candidates.len())
    };
    finish(ctx, ds, &picks, &[0], ids, candidates, &report, p.gif_images_per_minute)
}

#[allow(clippy::too_many_arguments)]
/// Writes the unsafe-set table, the selected images as a dataset, and the pictures per cluster.
fn finish(
    ctx: &mut StageContext<'_>,
    ds: &Dataset,
    picks: &[Pick],
    cluster_ids: &[usize],
    ids: &[String],
    candidates: &[usize],
    report: &SelectRecord,
    per_minute: f64,
) -> Result<(), StageError> {
    let mut ordered: Vec<&Pick> = picks.iter().collect();
    ordered
        .sort_by(|a, b| a.cluster.cmp(&b.cluster).then(a.distance.total_cmp(&b.distance)).then(a.image.cmp(&b.image)));
    let table: Vec<UnsafeRow> = ordered
        .iter()
        .map(|pick| UnsafeRow {
            image: ids[candidates[pick.image]].clone(),
            cluster: cluster_ids[pick.cluster],
            distance: pick.distance,
            rank: pick.rank,
        })
        .collect();
    table::write(&ctx.output("unsafe")?, &table)?;
    let rows: Vec<usize> = ordered.iter().map(|p| candidates[p.image]).collect();
    let extra = vec![
        Column::new("rcc".into(), ordered.iter().map(|p| cluster_ids[p.cluster] as u32).collect::<Vec<u32>>()),
        Column::new("rcc_distance".into(), ordered.iter().map(|p| p.distance).collect::<Vec<f64>>()),
    ];
    ds.write_subset_with(&rows, &ctx.output("selected")?, extra)?;
    let pictures = ctx.output("pictures")?;
    for (i, &c) in cluster_ids.iter().enumerate() {
        let group: Vec<&&Pick> = ordered.iter().filter(|p| p.cluster == i).collect();
        if group.is_empty() {
            continue;
        }
        let rows: Vec<usize> = group.iter().map(|p| candidates[p.image]).collect();
        let names: Vec<&str> = rows.iter().map(|&r| ids[r].as_str()).collect();
        write_group(&pictures, &c.to_string(), ds, &rows, &names, per_minute, 64)?;
    }
    Ok(crate::artefact::selection::write_record(&pictures, report)?)
}
