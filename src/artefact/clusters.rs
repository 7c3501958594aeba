//! The `clusters` artefact, a cluster stage's folder: `cluster.json` ([`ClusterSummary`]), `clusters.csv` (every
//! image of the selected layer with its cluster, [`Member`]), `summary.csv` ([`ClusterRow`]), `layers.csv`
//! ([`LayerRow`]), and per clustered layer `layers/<layer>/{curve.csv,clusters.csv,knee.svg}` ([`CurvePoint`],
//! [`LayerMember`]); `rcc/<id>/` holds pictures for people.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::{self, Row, TableError, display, option_display};
use crate::cluster::{Linkage, Mode};

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
    /// How the clusters' stability was measured (absent when it was not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<StabilitySummary>,
}

/// Hennig's cluster-wise stability (clusterboot, subsetting): how the selected layer's clusters were resampled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StabilitySummary {
    /// Random subsets drawn (seeded), each reclustered with the same rule.
    pub draws: usize,
    /// Share of the failing images in each subset.
    pub share: f64,
    /// A cluster whose mean Jaccard similarity is below this is unstable (Hennig: 0.5, "dissolved").
    pub threshold: f64,
    /// Clusters below the threshold.
    pub unstable: usize,
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

/// A row of `clusters.csv`: an image of the selected layer's clustering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub image: String,
    /// 1..k, by decreasing size.
    pub cluster: usize,
    #[serde(serialize_with = "display")]
    pub distance_to_medoid: f64,
}

impl Row for Member {
    const COLUMNS: &'static [&'static str] = &["image", "cluster", "distance_to_medoid"];
}

/// A row of `summary.csv`: one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRow {
    pub cluster: usize,
    pub size: usize,
    #[serde(serialize_with = "display")]
    pub share: f64,
    #[serde(serialize_with = "display")]
    pub mean_intra_distance: f64,
    /// The medoid's image id.
    pub medoid: String,
    /// The mean Jaccard similarity of the cluster to its best match when a subset of the images is reclustered
    /// (empty when stability was not measured).
    #[serde(default, serialize_with = "option_display")]
    pub stability: Option<f64>,
    /// Stability at or above the threshold in `cluster.json`.
    #[serde(default)]
    pub stable: Option<bool>,
}

impl Row for ClusterRow {
    const COLUMNS: &'static [&'static str] =
        &["cluster", "size", "share", "mean_intra_distance", "medoid", "stability", "stable"];
}

/// A row of `layers.csv`: one clustered layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    pub layer: String,
    pub k: usize,
    pub k_rule: String,
    #[serde(serialize_with = "option_display")]
    pub wicd: Option<f64>,
    #[serde(serialize_with = "option_display")]
    pub silhouette: Option<f64>,
    pub eligible: bool,
    pub selected: bool,
}

impl Row for LayerRow {
    const COLUMNS: &'static [&'static str] = &["layer", "k", "k_rule", "wicd", "silhouette", "eligible", "selected"];
}

/// A row of `layers/<layer>/curve.csv`: the clustering of a layer at one k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub k: usize,
    /// The curve k is chosen on: WICD on the row-normalised distances (pairs i < j) in HUDD's mode, on the raw
    /// distances in direct mode.
    #[serde(serialize_with = "display")]
    pub wicd: f64,
    /// The mean silhouette in the clustering space.
    #[serde(serialize_with = "display")]
    pub silhouette: f64,
    pub chosen: bool,
}

impl Row for CurvePoint {
    const COLUMNS: &'static [&'static str] = &["k", "wicd", "silhouette", "chosen"];
}

/// A row of `layers/<layer>/clusters.csv`: an image's cluster at that layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMember {
    pub image: String,
    pub cluster: usize,
}

impl Row for LayerMember {
    const COLUMNS: &'static [&'static str] = &["image", "cluster"];
}

const SUMMARY: &str = "cluster.json";
const MEMBERS: &str = "clusters.csv";
const ROWS: &str = "summary.csv";
const LAYERS: &str = "layers.csv";
const CURVE: &str = "curve.csv";
const DISTANCES: &str = "distances.npy";
const KNEE: &str = "knee.svg";

/// A cluster member that the images it should index do not hold: the clusters were made from other images.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: image {image} is not in {}", members.display(), row.map_or_else(String::new, |r| format!(" row {r}")), within.display())]
pub struct MemberNotFound {
    /// The clusters' `clusters.csv`, and the member's row in it (1 for the first image) where known.
    pub members: PathBuf,
    pub row: Option<usize>,
    pub image: String,
    /// The dataset or heatmaps folder that lacks it.
    pub within: PathBuf,
}

impl From<MemberNotFound> for crate::engine::stage::StageError {
    fn from(e: MemberNotFound) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// A cluster stage's folder, for reading and writing.
pub struct Clusters {
    pub dir: PathBuf,
}

impl Clusters {
    pub fn open(dir: &Path) -> Clusters {
        Clusters { dir: dir.to_path_buf() }
    }

    /// `cluster.json`: what was clustered and what was chosen.
    pub fn summary(&self) -> Result<ClusterSummary, TableError> {
        table::read_json(&self.dir.join(SUMMARY))
    }

    pub fn write_summary(&self, summary: &ClusterSummary) -> Result<(), TableError> {
        table::write_json(&self.dir.join(SUMMARY), summary)
    }

    /// `clusters.csv`: every clustered image with its cluster.
    pub fn members(&self) -> Result<Vec<Member>, TableError> {
        table::read(&self.members_path())
    }

    /// Where [`Clusters::members`] reads (for messages naming a row).
    pub fn members_path(&self) -> PathBuf {
        self.dir.join(MEMBERS)
    }

    pub fn write_members(&self, members: &[Member]) -> Result<(), TableError> {
        table::write(&self.members_path(), members)
    }

    pub fn write_rows(&self, rows: &[ClusterRow]) -> Result<(), TableError> {
        table::write(&self.dir.join(ROWS), rows)
    }

    /// `layers.csv`: every clustered layer's choice and scores.
    pub fn write_layers(&self, rows: &[LayerRow]) -> Result<(), TableError> {
        table::write(&self.dir.join(LAYERS), rows)
    }

    /// A clustered layer's folder, `layers/<layer>/` (created).
    pub fn layer(&self, layer: &str) -> Result<ClusteredLayer, TableError> {
        let dir = self.dir.join("layers").join(crate::media::file_name(layer));
        std::fs::create_dir_all(&dir).map_err(|source| TableError::Io { path: dir.clone(), source })?;
        Ok(ClusteredLayer { dir })
    }

    /// Cluster id → its members' image ids, in table order.
    pub fn groups(&self) -> Result<BTreeMap<usize, Vec<String>>, TableError> {
        let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for m in self.members()? {
            groups.entry(m.cluster).or_default().push(m.image);
        }
        Ok(groups)
    }

    /// `summary.csv`: one row per cluster.
    pub fn rows(&self) -> Result<Vec<ClusterRow>, TableError> {
        table::read(&self.dir.join(ROWS))
    }

    /// The pictures of a cluster for people: its contact sheet, its GIF and its mean relevance over the medoid.
    pub fn picture(&self, cluster: usize, what: Picture) -> PathBuf {
        let rcc = self.dir.join("rcc");
        match what {
            Picture::Sheet => rcc.join(format!("{cluster}-sheet.png")),
            Picture::Gif => rcc.join(format!("{cluster}.gif")),
            Picture::Heatmap => rcc.join(format!("{cluster}-heatmap.png")),
        }
    }
}

/// One clustered layer's folder: its distances, its curve over k, its clusters and its knee plot.
pub struct ClusteredLayer {
    pub dir: PathBuf,
}

impl ClusteredLayer {
    /// `distances.npy`: the images' pairwise distances at the layer, n × n, f32.
    pub fn distances_path(&self) -> PathBuf {
        self.dir.join(DISTANCES)
    }

    pub fn write_curve(&self, curve: &[CurvePoint]) -> Result<(), TableError> {
        table::write(&self.dir.join(CURVE), curve)
    }

    pub fn write_members(&self, members: &[LayerMember]) -> Result<(), TableError> {
        table::write(&self.dir.join(MEMBERS), members)
    }

    /// The layer's images in the order of its distance matrix's rows, each with its cluster at this layer.
    pub fn members(&self) -> Result<Vec<LayerMember>, TableError> {
        table::read(&self.dir.join(MEMBERS))
    }

    /// `knee.svg`, the curve over k with the chosen k, when it was drawn.
    pub fn knee_path(&self) -> PathBuf {
        self.dir.join(KNEE)
    }

    /// `knee.svg`: the curve drawn with the chosen k.
    pub fn write_knee(&self, svg: &str) -> Result<(), TableError> {
        let path = self.dir.join(KNEE);
        std::fs::write(&path, svg).map_err(|source| TableError::Io { path, source })
    }
}

/// A picture of a cluster.
#[derive(Debug, Clone, Copy)]
pub enum Picture {
    Sheet,
    Gif,
    Heatmap,
}
