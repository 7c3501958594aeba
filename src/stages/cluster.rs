//! Stage `cluster` (HUDD Step 1b, ClusterModule): root-cause clusters of the error-inducing images from their
//! heatmaps, layer by layer, the best layer chosen, and what an engineer inspects for each cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cluster::{self, ChooseK, Linkage, Matrix};
use crate::dataset::Dataset;
use crate::npy::NpyReader;
use crate::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};

pub struct Cluster;

/// What the agglomerative clustering runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// HUDD's: every row of the distance matrix divided by its maximum, those rows clustered as vectors (an image
    /// is described by how far it is from every other, relative to its farthest), which makes the clusters
    /// insensitive to the overall scale of an image's relevance (it follows the logit the relevance was seeded with).
    #[default]
    Hudd,
    /// The heatmaps themselves, on their Euclidean distances.
    Direct,
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterParams {
    #[serde(default)]
    pub mode: Mode,
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
    #[serde(default)]
    pub threads: Option<usize>,
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

impl Params for ClusterParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        match (self.choose_k, self.k) {
            (ChooseK::Fixed, None) => out.push(Invalid::new("k", "is required when choose_k = \"fixed\"")),
            (ChooseK::Fixed, Some(k)) if k < 1 => out.push(Invalid::new("k", "must be at least 1, got 0")),
            (ChooseK::Knee | ChooseK::Silhouette, Some(_)) => out.push(Invalid::new(
                "k",
                "is only read when choose_k = \"fixed\"; remove it or set choose_k = \"fixed\"",
            )),
            _ => {}
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
        if let Some(layers) = &self.layers
            && layers.is_empty()
        {
            out.push(Invalid::new("layers", "must name at least one layer (or be left out for every distinct layer)"));
        }
        out
    }
}

/// `cluster.json`: what was clustered and what was chosen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterSummary {
    pub images: usize,
    /// Why there are no clusters, when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    pub clusters: usize,
    #[serde(default)]
    pub k_rule: String,
    #[serde(default)]
    pub layer_rule: String,
    pub mode: Mode,
    pub linkage: Linkage,
    pub layers: Vec<LayerScore>,
}

/// One clustered layer's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerScore {
    pub layer: String,
    /// Chosen k (0 when the layer could not be clustered).
    pub k: usize,
    pub k_rule: String,
    /// WICD and mean silhouette of the chosen clusters on the layer's raw heatmap distances (none when the layer
    /// could not be clustered).
    pub wicd: Option<f64>,
    pub silhouette: Option<f64>,
    /// Whether the layer may be selected (the input layer may not, as in HUDD).
    pub eligible: bool,
}

impl Stage for Cluster {
    type Params = ClusterParams;
    const KIND: &'static str = "cluster";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "heatmaps", many: false, required: true, doc: "a heatmaps stage's output" },
        InputSlot { name: "images", many: false, required: true, doc: "the dataset the heatmaps were computed for" },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "clusters",
        path: "clusters/",
        doc: "cluster.json, clusters.csv, summary.csv, layers.csv, layers/<layer>/, rcc/<id>/",
    }];
    const DOC: &'static str = "Root-cause clusters of the error-inducing images.";

    fn run(&self, p: &ClusterParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        crate::runtime::set_threads(p.threads.unwrap_or(ctx.threads));
        let hm = ctx.input("heatmaps")?.path.clone();
        let ds = Dataset::open(&ctx.input("images")?.path).map_err(|e| StageError::input(e.to_string()))?;
        let ids = ds.ids().map_err(|e| StageError::input(e.to_string()))?;
        let (order, rules) = heatmap_layers(&hm)?;
        let index = crate::dataset::read_csv(&hm.join("index.csv")).map_err(|e| StageError::input(e.to_string()))?;
        let indexed: Vec<String> = index
            .column("image")
            .and_then(|c| c.cast(&polars::prelude::DataType::String))
            .map(|c| c.str().map(|s| s.iter().map(|v| v.unwrap_or_default().to_string()).collect()).unwrap_or_default())
            .map_err(|e| StageError::input(format!("{}: {e}", hm.join("index.csv").display())))?;
        if indexed != ids {
            return Err(StageError::input(format!(
                "the heatmaps ({} images, first {:?}) were not computed for this image set ({} images, first {:?}): connect the dataset the heatmaps stage read",
                indexed.len(),
                indexed.first(),
                ids.len(),
                ids.first()
            )));
        }
        let layers = match &p.layers {
            Some(names) => {
                if let Some(bad) = names.iter().find(|n| !order.contains(n)) {
                    return Err(StageError::input(format!(
                        "layers name `{bad}`, which has no heatmaps (layers: {})",
                        order.join(", ")
                    )));
                }
                names.clone()
            }
            None => order.iter().filter(|l| rules.get(*l).is_none_or(|r| r != "pass")).cloned().collect(),
        };
        let out = ctx.output("clusters")?;
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
        };
        if n < p.min_images {
            summary.empty =
                Some(format!("no root-cause clusters: only {n} error-inducing image{}", if n == 1 { "" } else { "s" }));
            return write_empty(&out, &summary);
        }
        let max_k = p.max_clusters.unwrap_or_else(|| cluster::default_max_k(n)).min(n - 1);
        let mut best: Option<(usize, Matrix, Vec<usize>)> = None;
        let mut layer_rows = String::from("layer,k,k_rule,wicd,silhouette,eligible,selected\n");
        ctx.progress.start(layers.len() as u64, "layers");
        for name in &layers {
            let raw = layer_distances(&hm, name, &ids)?;
            let eligible = order.first() != Some(name) || layers.len() == 1;
            let dir = out.join("layers").join(file_name(name));
            std::fs::create_dir_all(&dir).map_err(|e| StageError::io(&dir, e))?;
            let values: Vec<f32> = raw.data.iter().map(|&v| v as f32).collect();
            crate::npy::write(&dir.join("distances.npy"), &[n, n], &values)
                .map_err(|e| StageError::failed(e.to_string()))?;
            if raw.max() == 0.0 {
                summary.layers.push(LayerScore {
                    layer: name.clone(),
                    k: 0,
                    k_rule: format!("all {n} heatmaps of this layer are identical: nothing to cluster"),
                    wicd: None,
                    silhouette: None,
                    eligible: false,
                });
                ctx.progress.inc(1);
                continue;
            }
            let (labels, sweep, k_rule) = cluster_layer(&raw, p, max_k);
            let score = LayerScore {
                layer: name.clone(),
                k: cluster::members(&labels).len(),
                k_rule,
                wicd: Some(cluster::wicd(&raw, &labels)),
                silhouette: Some(cluster::silhouette(&raw, &labels)),
                eligible,
            };
            write_layer(&dir, &ids, &labels, &sweep, &score)?;
            let better = |b: &LayerScore| match p.select_layer {
                SelectLayer::Wicd => score.wicd < b.wicd,
                SelectLayer::Silhouette => score.silhouette > b.silhouette,
            };
            if eligible && best.as_ref().is_none_or(|(i, _, _)| better(&summary.layers[*i])) {
                best = Some((summary.layers.len(), raw, labels));
            }
            summary.layers.push(score);
            ctx.progress.inc(1);
        }
        let Some((chosen, raw, labels)) = best else {
            if summary.layers.iter().all(|l| l.k == 0) {
                return Err(StageError::input(format!(
                    "all {n} images have identical heatmaps in every clustered layer: nothing to cluster"
                )));
            }
            return Err(StageError::input(
                "no layer but the input layer was clustered: list at least one internal layer in `layers`",
            ));
        };
        for (i, l) in summary.layers.iter().enumerate() {
            let _ = writeln!(
                layer_rows,
                "{},{},\"{}\",{},{},{},{}",
                l.layer,
                l.k,
                l.k_rule.replace('"', "'"),
                l.wicd.map_or(String::new(), |v| v.to_string()),
                l.silhouette.map_or(String::new(), |v| v.to_string()),
                l.eligible,
                i == chosen
            );
        }
        write_text(&out.join("layers.csv"), &layer_rows)?;
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
        let pixel_layer = order.first().cloned().unwrap_or_default();
        inspection(&out, &ds, &ids, &raw, &labels, &hm.join(format!("{pixel_layer}.npy")), p)?;
        write_text(&out.join("cluster.json"), &serde_json::to_string_pretty(&summary).expect("serialisable"))
    }
}

/// Clusters one layer from its raw heatmap distances: the clustering space of the mode, the dendrogram, the sweep
/// of k from 2 to `max_k`, the chosen k; returns the canonical partition, the sweep and how k was chosen.
pub fn cluster_layer(raw: &Matrix, p: &ClusterParams, max_k: usize) -> (Vec<usize>, cluster::Sweep, String) {
    let space = match p.mode {
        Mode::Hudd => cluster::hudd_space(raw),
        Mode::Direct => raw.clone(),
    };
    let dendrogram = cluster::dendrogram(&space, p.linkage);
    let sweep = cluster::sweep(&space, &dendrogram, max_k);
    let (k, k_rule) = cluster::choose_k(&sweep, p.choose_k, p.k);
    (cluster::cut(&dendrogram, k), sweep, k_rule)
}

/// The layers in the network's order (from conservation.csv) and their rules (rules.json).
fn heatmap_layers(dir: &Path) -> Result<(Vec<String>, BTreeMap<String, String>), StageError> {
    let path = dir.join("conservation.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
    let order: Vec<String> = text.lines().skip(1).filter_map(|l| l.split(',').next()).map(str::to_string).collect();
    let path = dir.join("rules.json");
    let bytes = std::fs::read(&path).map_err(|e| StageError::io(&path, e))?;
    let rules: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|e| StageError::input(format!("{}: {e}", path.display())))?;
    let rules = rules.into_iter().map(|(k, v)| (k, v["rule"].as_str().unwrap_or_default().to_string())).collect();
    Ok((order, rules))
}

/// The raw Euclidean distances between the images' heatmaps at one layer, streamed from its `.npy` file.
pub fn layer_distances(dir: &Path, layer: &str, ids: &[String]) -> Result<Matrix, StageError> {
    let path = dir.join(format!("{layer}.npy"));
    let mut reader = NpyReader::<f32>::open(&path).map_err(|e| StageError::input(e.to_string()))?;
    if reader.rows() != ids.len() {
        return Err(StageError::input(format!(
            "{}: {} rows where index.csv lists {} images",
            path.display(),
            reader.rows(),
            ids.len()
        )));
    }
    let d = reader.row_len();
    cluster::distances(ids.len(), d, |start, width| {
        let values = reader.read_columns(start, width).map_err(|e| StageError::input(e.to_string()))?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(StageError::input(format!(
                "layer `{layer}`: the heatmap of image {} holds {} (at element {})",
                ids[i / width],
                values[i],
                start + i % width
            )));
        }
        Ok(values)
    })
}

fn write_text(path: &Path, text: &str) -> Result<(), StageError> {
    std::fs::write(path, text).map_err(|e| StageError::io(path, e))
}

/// A layer or image name made safe as one path component.
pub fn file_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

fn write_empty(out: &Path, summary: &ClusterSummary) -> Result<(), StageError> {
    write_text(&out.join("clusters.csv"), "image,cluster,distance_to_medoid\n")?;
    write_text(&out.join("summary.csv"), "cluster,size,share,mean_intra_distance,medoid\n")?;
    write_text(&out.join("layers.csv"), "layer,k,k_rule,wicd,silhouette,eligible,selected\n")?;
    write_text(&out.join("cluster.json"), &serde_json::to_string_pretty(summary).expect("serialisable"))
}

/// A layer's curve over k, its clusters and its knee plot.
fn write_layer(
    dir: &Path,
    ids: &[String],
    labels: &[usize],
    sweep: &cluster::Sweep,
    score: &LayerScore,
) -> Result<(), StageError> {
    let mut curve = String::from("k,wicd,silhouette,chosen\n");
    for (i, k) in sweep.ks.iter().enumerate() {
        let _ = writeln!(curve, "{k},{},{},{}", sweep.wicd[i], sweep.silhouette[i], *k == score.k);
    }
    write_text(&dir.join("curve.csv"), &curve)?;
    let mut table = String::from("image,cluster\n");
    for (id, l) in ids.iter().zip(labels) {
        let _ = writeln!(table, "{id},{}", l + 1);
    }
    write_text(&dir.join("clusters.csv"), &table)?;
    let series = [
        crate::svg::Series {
            name: "WICD",
            points: sweep.ks.iter().zip(&sweep.wicd).map(|(&k, &w)| (k as f64, w)).collect(),
            colour: "#1f5fa8",
        },
        crate::svg::Series {
            name: "silhouette",
            points: sweep.ks.iter().zip(&sweep.silhouette).map(|(&k, &s)| (k as f64, s)).collect(),
            colour: "#2a9d4b",
        },
    ];
    let title = format!("{}: k = {} ({})", score.layer, score.k, score.k_rule);
    let svg = crate::svg::line_chart(
        &title,
        "number of clusters k",
        &series,
        Some((score.k as f64, &format!("k = {}", score.k))),
    );
    write_text(&dir.join("knee.svg"), &svg)
}

/// The selected layer's clusters as tables, and per cluster its images, a GIF, a contact sheet and the mean pixel
/// relevance (the heatmap of the input layer, the one aligned with the image) over the medoid.
fn inspection(
    out: &Path,
    ds: &Dataset,
    ids: &[String],
    raw: &Matrix,
    labels: &[usize],
    pixels: &Path,
    p: &ClusterParams,
) -> Result<(), StageError> {
    let (medoids, to_medoid) = cluster::medoids(raw, labels);
    let groups = cluster::members(labels);
    let n = ids.len();
    let mut table = String::from("image,cluster,distance_to_medoid\n");
    for i in 0..n {
        let _ = writeln!(table, "{},{},{}", ids[i], labels[i] + 1, to_medoid[i]);
    }
    write_text(&out.join("clusters.csv"), &table)?;
    let mut summary = String::from("cluster,size,share,mean_intra_distance,medoid\n");
    for (c, members) in groups.iter().enumerate() {
        let _ = writeln!(
            summary,
            "{},{},{},{},{}",
            c + 1,
            members.len(),
            members.len() as f64 / n as f64,
            cluster::mean_intra(raw, members),
            ids[medoids[c]]
        );
    }
    write_text(&out.join("summary.csv"), &summary)?;
    let (w, h, ch) = (ds.meta.width, ds.meta.height, ds.meta.channels);
    let scale = (128 / w.max(1)).max(1);
    let mut heat = NpyReader::<f32>::open(pixels).map_err(|e| StageError::input(e.to_string()))?;
    for (c, members) in groups.iter().enumerate() {
        // Closest to the medoid first: the GIF and the sheet open with the most typical images.
        let mut ordered = members.clone();
        ordered.sort_by(|&a, &b| to_medoid[a].total_cmp(&to_medoid[b]).then(a.cmp(&b)));
        let names: Vec<&str> = ordered.iter().map(|&i| ids[i].as_str()).collect();
        let frames = write_group(
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
                let r = heat.read_rows(i, 1).map_err(|e| StageError::input(e.to_string()))?;
                for (k, v) in r.iter().enumerate() {
                    mean[k % (w * h)] += v / members.len() as f32;
                }
            }
        }
        // Pixel relevance is speckled (neighbouring pixels alternate in sign): a light blur shows where it gathers.
        let mean = crate::media::box_blur(&mean, w, h, (w / 32).max(1));
        let medoid = frames[ordered.iter().position(|&i| i == medoids[c]).unwrap_or(0)].clone();
        let picture = crate::media::overlay(&medoid, &mean, w * h);
        crate::media::write_png(&out.join("rcc").join(format!("{}-heatmap.png", c + 1)), &picture, w, h, scale)
            .map_err(StageError::failed)?;
    }
    Ok(())
}

/// A group of images for a person: `<base>/<name>/<image>.png`, `<base>/<name>.gif` playing them at `per_minute`
/// images a minute, and `<base>/<name>-sheet.png` with the first `sheet` of them. `rows` are dataset rows, `names`
/// their image ids. Returns the images as RGB, in order.
pub fn write_group(
    base: &Path,
    name: &str,
    ds: &Dataset,
    rows: &[usize],
    names: &[&str],
    per_minute: f64,
    sheet: usize,
) -> Result<Vec<Vec<u8>>, StageError> {
    let (w, h, ch) = (ds.meta.width, ds.meta.height, ds.meta.channels);
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| StageError::io(&dir, e))?;
    let chw = ds.images(rows).map_err(|e| StageError::input(e.to_string()))?;
    let frames: Vec<Vec<u8>> =
        chw.chunks_exact(ch * w * h).map(|img| crate::media::chw_to_rgb(img, ch, w * h)).collect();
    for (id, rgb) in names.iter().zip(&frames) {
        crate::media::write_png(&dir.join(format!("{}.png", file_name(id))), rgb, w, h, 1)
            .map_err(StageError::failed)?;
    }
    let delay = (6000.0 / per_minute).round().clamp(1.0, 65535.0) as u16;
    crate::media::write_gif(&base.join(format!("{name}.gif")), &frames, w, h, delay).map_err(StageError::failed)?;
    let tiles: Vec<&[u8]> = frames.iter().take(sheet).map(Vec::as_slice).collect();
    let grid: Vec<Vec<&[u8]>> = tiles.chunks(8).map(<[&[u8]]>::to_vec).collect();
    let path = base.join(format!("{name}-sheet.png"));
    crate::sheet::write_sheet(&path, &grid, w).map_err(|e| StageError::failed(format!("{}: {e}", path.display())))?;
    Ok(frames)
}
