//! Section 2: the root-cause clusters as the report shows them, with their evidence, annotations and open items.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;

use super::view::{AfterAccuracy, ClusterView, ClusteringView, MIN_IMAGES, Picture, RccView};
use crate::artefact::annotations::{self, Annotations, Flag};
use crate::artefact::clusters::{Clusters, Picture as Drawn};
use crate::artefact::evaluation::{ExplanationRow, RccRow};
use crate::artefact::evidence;
use crate::engine::stage::StageError;

/// What RQ1 concludes about a cluster, naming the criterion it fails: the paper's (no parameter's spread drops by the
/// threshold) or chance (random clusters of its size do as well, after the correction).
pub(super) fn verdict(e: &ExplanationRow, threshold: f64, alpha: f64) -> Option<String> {
    let p = e.p?;
    let ps = match e.p_adjusted {
        Some(a) => format!("p = {p:.3}, adjusted {a:.3}"),
        None => format!("p = {p:.3}"),
    };
    let best = e.best_reduction.map_or(String::new(), |r| format!(" (best: {}, {:.0}%)", e.best_parameter, r * 100.0));
    Some(match (e.explained, e.beats_chance) {
        (_, Some(true)) => format!(
            "Homogeneous beyond chance (RQ1): random clusters of its size rarely share a parameter as much ({ps}); \
             shared is not yet caused: the tests above say whether the model fails more there"
        ),
        (Some(false), _) => format!(
            "Not explained: no parameter's spread drops by {:.0}%{best}, whatever chance says ({ps})",
            threshold * 100.0
        ),
        _ => format!(
            "Explained by the {:.0}% criterion, but not beyond chance: random clusters of its size do as well too often \
             ({ps}; beyond chance needs the adjusted p below {alpha})",
            threshold * 100.0
        ),
    })
}

/// What the evaluation says about each cluster: its explanation (RQ1) and accuracy on its images (RQ2), with RQ1's
/// threshold and significance level.
pub(super) struct Judged<'a> {
    pub(super) explanations: &'a BTreeMap<usize, ExplanationRow>,
    pub(super) accuracy: &'a BTreeMap<usize, Vec<RccView>>,
    pub(super) threshold: f64,
    pub(super) alpha: f64,
    /// Whether the clusters were made from the model's relevance: only then is a cluster's mean pixel relevance
    /// (the cluster stage's heatmap picture) shown; a pretrained backbone's features have none.
    pub(super) relevance: bool,
}

/// One view per root-cause cluster, with its annotation bound by fingerprint, its evidence and its pictures copied
/// into the report's `images/`; and the annotations that no longer match as flags.
pub(super) fn cluster_views(
    folder: &Clusters,
    annotations: &Annotations,
    judged: &Judged<'_>,
    out: &Path,
    progress: &crate::engine::progress::Progress,
) -> Result<(Vec<ClusterView>, Vec<Flag>), StageError> {
    let (explanations, accuracy, threshold, alpha) =
        (judged.explanations, judged.accuracy, judged.threshold, judged.alpha);
    let mut clusters = Vec::new();
    let groups = folder.groups()?;
    let current: Vec<annotations::Current> = groups
        .iter()
        .map(|(&id, members)| annotations::Current {
            id,
            fingerprint: evidence::fingerprint(members),
            members: members.clone(),
        })
        .collect();
    let (mut bound, flags) = annotations::bind(annotations, &current);
    for f in &flags {
        progress.message(&format!("warning: annotation [{}]: {}", f.table, f.problem));
    }
    for r in folder.rows()? {
        let id = r.cluster;
        let e = explanations.get(&id);
        let (fingerprint, members) = current
            .iter()
            .find(|c| c.id == id)
            .map(|c| (c.fingerprint.clone(), c.members.clone()))
            .unwrap_or_else(|| (evidence::fingerprint(&[]), Vec::new()));
        let binding = bound.remove(&id);
        let annotation_note = binding.as_ref().and_then(|b| {
            if b.by_number_only {
                Some("attached by its number alone (no fingerprint)".to_string())
            } else {
                b.renumbered_from.as_ref().map(|from| format!("written as {from}: the same members, renumbered"))
            }
        });
        clusters.push(ClusterView {
            id,
            size: r.size,
            share: r.share,
            explained: e.and_then(|e| e.explained),
            description: e.map(|e| e.description.clone()).unwrap_or_default(),
            best_parameter: e.map(|e| e.best_parameter.clone()).unwrap_or_default(),
            best_reduction: e.and_then(|e| e.best_reduction),
            p: e.and_then(|e| e.p),
            p_adjusted: e.and_then(|e| e.p_adjusted),
            beats_chance: e.and_then(|e| e.beats_chance),
            verdict: e.and_then(|e| verdict(e, threshold, alpha)),
            tested: None,
            agreement: None,
            stability: r.stability,
            stable: r.stable,
            after: accuracy.get(&id).and_then(|a| a.first()).and_then(|a| a.after.first()).cloned(),
            small: accuracy.get(&id).and_then(|a| a.first()).is_none_or(|a| a.images < MIN_IMAGES),
            accuracy: accuracy.get(&id).cloned().unwrap_or_default(),
            sheet: picture(&folder.picture(id, Drawn::Sheet), out, &format!("rcc-{id}-sheet.png"))?,
            gif: picture(&folder.picture(id, Drawn::Gif), out, &format!("rcc-{id}.gif"))?,
            heatmap: match judged.relevance {
                true => picture(&folder.picture(id, Drawn::Heatmap), out, &format!("rcc-{id}-heatmap.png"))?,
                false => None,
            },
            annotation: binding.map(|b| b.annotation),
            annotation_note,
            fingerprint,
            members,
        });
    }
    Ok((clusters, flags))
}

/// Section 6's open items, by cluster id: clusters with enough images to judge whose images the reference's
/// retrained models still get wrong more than half the time (residual risk), clusters with too few images to say,
/// clusters no engineer has annotated, and clusters unstable under resampling.
pub(super) struct OpenItems {
    pub(super) residual: Vec<usize>,
    pub(super) too_small: Vec<usize>,
    pub(super) to_review: Vec<usize>,
    pub(super) unstable: Vec<usize>,
}

pub(super) fn open_items(clusters: &[ClusterView]) -> OpenItems {
    let ids = |keep: &dyn Fn(&ClusterView) -> bool| clusters.iter().filter(|c| keep(c)).map(|c| c.id).collect();
    OpenItems {
        residual: ids(&|c| !c.small && c.after.as_ref().is_some_and(|a| a.rate < 0.5)),
        too_small: ids(&|c| c.small && !c.accuracy.is_empty()),
        to_review: ids(&|c| c.annotation.is_none()),
        unstable: ids(&|c| c.stable == Some(false)),
    }
}

/// Each cluster's accuracy per split (the judging split first) with every strategy (the reference first).
pub(super) fn per_cluster(
    rows: Vec<RccRow>,
    reference: &str,
    held_out: impl Fn(&str) -> bool,
) -> BTreeMap<usize, Vec<RccView>> {
    let mut out: BTreeMap<usize, Vec<RccView>> = BTreeMap::new();
    for r in rows {
        let views = out.entry(r.cluster).or_default();
        let at = match views.iter().position(|v| v.split == r.split) {
            Some(at) => at,
            None => {
                views.push(RccView {
                    held_out: held_out(&r.split),
                    split: r.split.clone(),
                    images: r.images,
                    before: r.before,
                    after: Vec::new(),
                });
                views.len() - 1
            }
        };
        let after = AfterAccuracy { strategy: r.strategy, runs: r.runs, rate: r.after, lo: r.lo, hi: r.hi };
        views[at].after.push(after);
    }
    for views in out.values_mut() {
        views.sort_by_key(|v| !v.held_out);
        for v in views.iter_mut() {
            v.after.sort_by_key(|a| a.strategy != reference);
        }
    }
    out
}

pub(super) fn picture(src: &Path, dir: &Path, name: &str) -> Result<Option<Picture>, StageError> {
    if !src.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(src).map_err(|e| StageError::io(src, e))?;
    let dest = dir.join(evidence::IMAGES).join(name);
    std::fs::write(&dest, &bytes).map_err(|e| StageError::io(&dest, e))?;
    let mime = if name.ends_with(".gif") { "image/gif" } else { "image/png" };
    Ok(Some(Picture {
        file: format!("images/{name}"),
        data: format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)),
    }))
}

/// A clustering's RQ1 figures from its variance table (`stage` named by the slot's producer).
pub(super) fn clustering_view(stage: &str, main: bool, rows: &[ExplanationRow]) -> ClusteringView {
    let images: usize = rows.iter().map(|r| r.size).sum();
    let beyond: Vec<&ExplanationRow> = rows.iter().filter(|r| r.beats_chance == Some(true)).collect();
    let images_beyond_chance = beyond.iter().map(|r| r.size).sum();
    ClusteringView {
        stage: stage.to_string(),
        main,
        clusters: rows.len(),
        images,
        assessed: rows.iter().filter(|r| r.explained.is_some()).count(),
        explained: rows.iter().filter(|r| r.explained == Some(true)).count(),
        beyond_chance: beyond.len(),
        images_beyond_chance,
        share_beyond_chance: if images == 0 { 0.0 } else { images_beyond_chance as f64 / images as f64 },
    }
}
