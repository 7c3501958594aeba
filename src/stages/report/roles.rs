//! Two clusterings of the same failures, two roles: the one that names the causes (the report's `clusters`: its
//! clusters are the report's, tested, ruled and judged) and the one that selects the images to retrain on
//! (`selection`, HUDD's relevance clusters by default, as the planted-cause suite found them the better selectors).
//! The report cross-tabulates them, so an assessor sees which selection clusters hold each cause's failures, and,
//! beside each cause, the share of its held-out failures the retrained models get right: the residual risk by cause.

use std::collections::BTreeMap;

use serde::Serialize;

use super::view::{AfterAccuracy, ClusterView};
use crate::artefact::clusters::{ClusterSummary, Clusters};
use crate::cluster::distance::Mode;
use crate::cluster::score::{Scope, recovery};
use crate::engine::stage::{Ancestor, StageContext, StageError};

/// Selection clusters named one by one in a cause's row; the rest are summed.
const SHOWN: usize = 4;

/// One clustering and the role it plays.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RoleView {
    /// The cluster stage that made it.
    pub(super) stage: String,
    pub(super) clusters: usize,
    pub(super) layer: Option<String>,
    /// What it clusters, in words.
    pub(super) features: String,
}

/// One selection cluster's share of a cause cluster.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(super) struct Cell {
    pub(super) cluster: usize,
    pub(super) images: usize,
}

/// A cause cluster against the selection clusters, with what retraining left of it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CauseRow {
    pub(super) cause: usize,
    pub(super) images: usize,
    /// Its tested cause (the intervention), when there is one.
    pub(super) tested: Option<String>,
    /// Its images in each selection cluster, most first (every cluster holding one, in evidence.json).
    pub(super) cells: Vec<Cell>,
    /// Images beyond the first [`SHOWN`] cells, for the report's row.
    pub(super) others: usize,
    /// The share of its images in the selection cluster holding most of them.
    pub(super) concentration: f64,
    /// The held-out failures assigned to it, and the reference strategy's share of them right after retraining.
    pub(super) held_out: Option<usize>,
    pub(super) after: Option<AfterAccuracy>,
}

/// Both roles and how they relate.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RolesView {
    pub(super) causes: RoleView,
    pub(super) selection: RoleView,
    /// Failures in both clusterings (the rows' total).
    pub(super) images: usize,
    /// Agreement of the two partitions (scikit-learn's NMI and ARI; 1 when they are the same partition).
    pub(super) nmi: f64,
    pub(super) ari: f64,
    pub(super) rows: Vec<CauseRow>,
}

/// The two roles, when the report reads a `selection` clustering besides its `clusters`.
pub(super) fn roles(ctx: &StageContext<'_>, clusters: &[ClusterView]) -> Result<Option<RolesView>, StageError> {
    let (Some(causes), Some(selection)) = (ctx.inputs("clusters").first(), ctx.inputs("selection").first()) else {
        return Ok(None);
    };
    let (cause_folder, selection_folder) = (Clusters::open(&causes.path), Clusters::open(&selection.path));
    let lineage = ctx.lineage();
    let role = |stage: &str, summary: ClusterSummary| RoleView {
        stage: stage.to_string(),
        clusters: summary.clusters,
        features: features(lineage, &summary),
        layer: summary.layer,
    };
    let (cause_role, selection_role) =
        (role(&causes.stage, cause_folder.summary()?), role(&selection.stage, selection_folder.summary()?));
    Ok(Some(cross(cause_role, selection_role, &cause_folder.groups()?, &selection_folder.groups()?, clusters)))
}

/// The cross-table of two clusterings of the same failures (images only one of them holds are left out of both).
pub(super) fn cross(
    causes: RoleView,
    selection: RoleView,
    cause_groups: &BTreeMap<usize, Vec<String>>,
    selection_groups: &BTreeMap<usize, Vec<String>>,
    views: &[ClusterView],
) -> RolesView {
    let selected_in: BTreeMap<&str, usize> =
        selection_groups.iter().flat_map(|(c, ids)| ids.iter().map(move |id| (id.as_str(), *c))).collect();
    let (mut labels_cause, mut labels_selection) = (Vec::new(), Vec::new());
    let mut rows = Vec::new();
    for (&cause, ids) in cause_groups {
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for s in ids.iter().filter_map(|id| selected_in.get(id.as_str())) {
            *counts.entry(*s).or_default() += 1;
            labels_cause.push(cause);
            labels_selection.push(*s);
        }
        let images: usize = counts.values().sum();
        let mut cells: Vec<Cell> = counts.into_iter().map(|(cluster, images)| Cell { cluster, images }).collect();
        cells.sort_by(|a, b| b.images.cmp(&a.images).then(a.cluster.cmp(&b.cluster)));
        let view = views.iter().find(|v| v.id == cause);
        let held_out = view.and_then(|v| v.accuracy.first()).filter(|a| a.held_out);
        rows.push(CauseRow {
            cause,
            images,
            tested: view.and_then(|v| v.tested.as_ref()).and_then(|t| t.causes.first().cloned()),
            others: cells.iter().skip(SHOWN).map(|c| c.images).sum(),
            concentration: cells.first().map_or(0.0, |c| c.images as f64 / images.max(1) as f64),
            cells,
            held_out: held_out.map(|a| a.images),
            after: held_out.and_then(|_| view.and_then(|v| v.after.clone())),
        });
    }
    // The report's order: largest cause first, as its clusters are listed.
    let order = |id: usize| views.iter().position(|v| v.id == id).unwrap_or(usize::MAX);
    rows.sort_by_key(|r| (order(r.cause), r.cause));
    let dense = |labels: &[usize]| -> Vec<usize> {
        let ids: std::collections::BTreeSet<usize> = labels.iter().copied().collect();
        let index: BTreeMap<usize, usize> = ids.into_iter().enumerate().map(|(i, c)| (c, i)).collect();
        labels.iter().map(|c| index[c]).collect()
    };
    let agreement = recovery(&dense(&labels_cause), &dense(&labels_selection), Scope::default());
    RolesView { causes, selection, images: labels_cause.len(), nmi: agreement.nmi, ari: agreement.ari, rows }
}

/// The pretrained backbone whose activations a clustering clusters: the architecture of an `activations` stage
/// upstream that extracted the clustering's layer with a backbone.
fn backbone(lineage: &[Ancestor], summary: &ClusterSummary) -> Option<String> {
    let layer = summary.layer.as_deref()?;
    lineage.iter().filter(|a| a.kind == "activations").find_map(|a| {
        let architecture = a.params.get("backbone")?.get("architecture")?.as_str()?;
        let layers = a.params.get("layers")?.as_array()?;
        layers.iter().any(|l| l.as_str() == Some(layer)).then(|| architecture.to_string())
    })
}

/// Whether a clustering clusters a pretrained backbone's features (which have no pixel relevance to draw).
pub(super) fn from_backbone(lineage: &[Ancestor], summary: &ClusterSummary) -> bool {
    backbone(lineage, summary).is_some()
}

/// What a clustering clusters, in words: a pretrained backbone's activations at its layer when an `activations`
/// stage upstream extracted that layer with a backbone, else the model under analysis' heatmaps or activations as
/// its mode treats them.
fn features(lineage: &[Ancestor], summary: &ClusterSummary) -> String {
    match (backbone(lineage, summary), summary.mode) {
        (Some(architecture), _) => format!("generic features: the pretrained {architecture}'s activations"),
        (None, Mode::Hudd) => {
            "HUDD's pipeline: the model's relevance heatmaps, each row of their distance matrix normalised".into()
        }
        (None, Mode::Direct) => "the model's own heatmaps or activations, on their distances".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(rows: &[(usize, &[&str])]) -> BTreeMap<usize, Vec<String>> {
        rows.iter().map(|(c, ids)| (*c, ids.iter().map(|s| s.to_string()).collect())).collect()
    }

    fn role(stage: &str) -> RoleView {
        RoleView { stage: stage.into(), clusters: 0, layer: None, features: String::new() }
    }

    #[test]
    fn the_cross_table_counts_each_cause_in_each_selection_cluster_most_first() {
        let causes = groups(&[(1, &["a", "b", "c", "d"]), (2, &["e", "f"])]);
        let selection = groups(&[(7, &["a", "e", "f"]), (8, &["b", "c"]), (9, &["d", "z"])]);
        let v = cross(role("causes"), role("cluster"), &causes, &selection, &[]);
        assert_eq!(v.images, 6, "z is in the selection clustering alone");
        let one = &v.rows[0];
        assert_eq!((one.cause, one.images), (1, 4));
        assert_eq!(
            one.cells,
            [Cell { cluster: 8, images: 2 }, Cell { cluster: 7, images: 1 }, Cell { cluster: 9, images: 1 }]
        );
        assert_eq!(one.concentration, 0.5);
        assert_eq!(v.rows[1].cells, [Cell { cluster: 7, images: 2 }]);
        assert_eq!(v.rows[1].concentration, 1.0);
        assert!(one.after.is_none() && one.held_out.is_none(), "no per-cluster accuracy was read");
    }

    #[test]
    fn the_same_partition_under_other_numbers_agrees_fully_and_a_crossed_one_does_not() {
        let causes = groups(&[(1, &["a", "b"]), (2, &["c", "d"])]);
        let renamed = groups(&[(5, &["c", "d"]), (6, &["a", "b"])]);
        let same = cross(role("causes"), role("cluster"), &causes, &renamed, &[]);
        assert_eq!((same.nmi, same.ari), (1.0, 1.0));
        let crossed = groups(&[(5, &["a", "c"]), (6, &["b", "d"])]);
        let v = cross(role("causes"), role("cluster"), &causes, &crossed, &[]);
        // scikit-learn: normalized_mutual_info_score([0,0,1,1],[0,1,0,1]) = 0, adjusted_rand_score = -0.5.
        assert!(v.nmi.abs() < 1e-12 && (v.ari + 0.5).abs() < 1e-12, "{} {}", v.nmi, v.ari);
        assert!(v.rows.iter().all(|r| r.concentration == 0.5 && r.others == 0));
    }

    #[test]
    fn more_selection_clusters_than_shown_are_summed_as_others() {
        let causes = groups(&[(1, &["a", "b", "c", "d", "e", "f"])]);
        let selection = groups(&[(1, &["a", "b"]), (2, &["c"]), (3, &["d"]), (4, &["e"]), (5, &["f"])]);
        let v = cross(role("causes"), role("cluster"), &causes, &selection, &[]);
        assert_eq!(v.rows[0].others, 1, "the fifth cluster's one image");
        assert_eq!(v.rows[0].cells.len(), 5, "evidence.json keeps every cell");
    }
}
