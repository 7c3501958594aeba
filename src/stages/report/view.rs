//! The report's view model: everything the templates see, and `evidence.json` (the same, less what is only drawn).

use serde::Serialize;

use crate::artefact::annotations::{Annotation, Flag};
use crate::artefact::evidence;
use crate::artefact::rules::Rate;

#[derive(Debug, Serialize)]
pub(super) struct Picture {
    /// Relative path for the Markdown report.
    pub(super) file: String,
    /// A data URI for the self-contained HTML report.
    pub(super) data: String,
}

#[derive(Debug, Serialize)]
pub(super) struct ClusterView {
    pub(super) id: usize,
    pub(super) size: usize,
    pub(super) share: f64,
    pub(super) explained: Option<bool>,
    pub(super) description: String,
    pub(super) best_parameter: String,
    pub(super) best_reduction: Option<f64>,
    /// The permutation p-value of its best reduction, and whether it is explained beyond chance.
    pub(super) p: Option<f64>,
    /// Its p-value adjusted over every assessed cluster.
    pub(super) p_adjusted: Option<f64>,
    pub(super) beats_chance: Option<bool>,
    /// Its stability under resampling (mean Jaccard) and whether it reaches the threshold.
    pub(super) stability: Option<f64>,
    pub(super) stable: Option<bool>,
    /// Whether it beats chance, and on which criterion it fails when it does not, in a sentence.
    pub(super) verdict: Option<String>,
    /// What an intervention fixes (the `intervene` stage's test against the sham), when the report reads it.
    pub(super) tested: Option<super::causes::TestedView>,
    /// Where the intervention, the triggering condition and RQ1 disagree about it, in a sentence.
    pub(super) agreement: Option<String>,
    /// Accuracy on its images of each tested split, the judging split first.
    pub(super) accuracy: Vec<RccView>,
    /// The reference strategy's mean accuracy after retraining on the judging split's images of the cluster (else the
    /// first split's), with its interval over runs and images.
    pub(super) after: Option<AfterAccuracy>,
    /// Too few of those images to judge a rate (fewer than [`MIN_IMAGES`]).
    pub(super) small: bool,
    pub(super) sheet: Option<Picture>,
    pub(super) gif: Option<Picture>,
    pub(super) heatmap: Option<Picture>,
    pub(super) annotation: Option<Annotation>,
    /// How the annotation was attached, when not plainly by fingerprint under its own number.
    pub(super) annotation_note: Option<String>,
    /// The fingerprint of its members (what annotations and `hudd diff` match by), and the members.
    pub(super) fingerprint: String,
    pub(super) members: Vec<String>,
}

/// A cluster's accuracy on one split's images of it, before and after retraining with each strategy.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RccView {
    pub(super) split: String,
    /// The judging split (its images are assigned to the cluster), or the one whose failures formed it.
    pub(super) held_out: bool,
    pub(super) images: usize,
    /// The original model's accuracy on them (0 by construction: the cluster's images are its failures).
    pub(super) before: f64,
    /// Every strategy's, the reference first.
    pub(super) after: Vec<AfterAccuracy>,
}

/// One strategy's mean accuracy over its runs on a cluster's images, with a 95% interval over runs and images.
#[derive(Debug, Clone, Serialize)]
pub(super) struct AfterAccuracy {
    pub(super) strategy: String,
    pub(super) runs: usize,
    pub(super) rate: f64,
    pub(super) lo: Option<f64>,
    pub(super) hi: Option<f64>,
}

/// Fewer images of a cluster than this, and its accuracy is not judged: a 95% interval on a rate from fewer than
/// 20 images spans more than ±20 points.
pub(super) const MIN_IMAGES: usize = 20;

/// A cluster's triggering condition: the rule, how well it separates, and its test on new images.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ConditionView {
    pub(super) cluster: usize,
    pub(super) rule: String,
    pub(super) size: usize,
    /// Images an expand stage added to the cluster before the rule was learned.
    pub(super) expanded: usize,
    pub(super) support: Option<f64>,
    /// Cluster images among the images the rule covers, on the split it was learned from.
    pub(super) precision: Option<f64>,
    /// Conditions grown and then pruned, in words.
    pub(super) pruned: Vec<String>,
    /// The region's share of the operational domain, and the share of the model's failures there it holds.
    pub(super) share: Option<f64>,
    pub(super) recall: Option<f64>,
    /// Failure rates on fresh images of the operational domain, inside the region and outside it.
    pub(super) inside: Option<Rate>,
    pub(super) outside: Option<Rate>,
    pub(super) confirmed: Option<bool>,
    /// The failure rate inside the region with each strategy's retrained models.
    pub(super) after: Vec<AfterView>,
}

/// One strategy's failure rate inside a rule's region after retraining: pooled over its runs' fresh images, with a
/// two-level bootstrap interval over runs and images.
#[derive(Debug, Clone, Serialize)]
pub(super) struct AfterView {
    pub(super) strategy: String,
    pub(super) runs: usize,
    pub(super) images: usize,
    pub(super) rate: f64,
    pub(super) lo: Option<f64>,
    pub(super) hi: Option<f64>,
}

/// Section 1: what is analysed, on which data, against which criterion.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Scope {
    /// The architecture's name (from the model), the input and the task (from the dataset).
    pub(super) architecture: Option<String>,
    pub(super) input: Option<String>,
    pub(super) task: Option<String>,
    /// Where the images come from: a simulator and its task, or an imported data set.
    pub(super) source: String,
    pub(super) splits: Vec<SplitScope>,
    /// For simulated data: every parameter's default distribution, which a split draws unless it says otherwise.
    pub(super) defaults: Vec<String>,
}

/// Section 1: the network analysed, layer by layer, from the model artefact the report reads.
#[derive(Debug, Serialize)]
pub(super) struct ArchitectureView {
    pub(super) name: String,
    pub(super) description: String,
    /// `C×H×W`, and the number of classes or keypoints.
    pub(super) input: String,
    pub(super) outputs: usize,
    /// Declared layers (none for a TorchScript model, whose layers `hudd` does not see).
    pub(super) declared: bool,
    /// Whether some layer takes other than the layer before it (a residual sum, a branch, a concatenation).
    pub(super) graph: bool,
    pub(super) parameters: usize,
    pub(super) layers: Vec<LayerRow>,
    /// The graph drawn (inline SVG, trusted: made here from the layers' names), for a graph.
    pub(super) drawing: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct LayerRow {
    pub(super) name: String,
    pub(super) kind: &'static str,
    pub(super) inputs: Vec<String>,
    pub(super) output: String,
    pub(super) parameters: usize,
}

/// One split as its dataset records it: its size and operational domain (the parameters drawn otherwise than the
/// simulator's defaults, then each scenario as `scenario name (weight w): ...`).
#[derive(Debug, Clone, Serialize)]
pub(super) struct SplitScope {
    pub(super) split: String,
    pub(super) count: usize,
    pub(super) params: Vec<String>,
}

/// Section 3: a model's score on a split, with its interval and the acceptance criterion.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Performance {
    /// `original`, or a retraining strategy.
    pub(super) model: String,
    pub(super) split: String,
    pub(super) held_out: bool,
    pub(super) runs: usize,
    pub(super) value: f64,
    pub(super) lo: Option<f64>,
    pub(super) hi: Option<f64>,
    /// What the interval is over: the split's images (one model), or the runs (repeated retrainings).
    pub(super) interval: String,
    /// Whether the value, and the interval's worse end, meet the target.
    pub(super) met: Option<bool>,
    pub(super) met_worst: Option<bool>,
}

/// A stage upstream of the report with its parameters as `key = value` lines.
#[derive(Debug, Clone, Serialize)]
pub(super) struct StageParams {
    pub(super) stage: String,
    /// `key = value`, then `# reads <path> (blake3 <hash>)` for each file it reads.
    pub(super) lines: Vec<String>,
}

/// A clustering of the failing images as RQ1 judges it: the main one (the `variance` input) and each alternative
/// (`alternatives`), side by side, e.g. generic features beside HUDD's heatmaps.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ClusteringView {
    /// The variance stage that assessed it.
    pub(super) stage: String,
    pub(super) main: bool,
    /// Clusters, and the failing images in them (every row of the variance table, clusters of one included).
    pub(super) clusters: usize,
    pub(super) images: usize,
    /// Clusters RQ1 could assess (two images or more), explained by the paper's criterion, and beyond chance.
    pub(super) assessed: usize,
    pub(super) explained: usize,
    pub(super) beyond_chance: usize,
    /// The failing images in clusters explained beyond chance, and their share of all failing images.
    pub(super) images_beyond_chance: usize,
    pub(super) share_beyond_chance: f64,
}

/// Everything the templates see; `evidence.json` is this less what is only drawn (see [`evidence_of`]), its shape
/// tied to `evidence::VERSION` by `tests/fixtures/evidence-schema.txt`.
#[derive(Debug, Serialize)]
pub(super) struct Evidence {
    pub(super) title: String,
    pub(super) workflow: String,
    pub(super) dnn: String,
    pub(super) test: serde_json::Value,
    pub(super) target: Option<serde_json::Value>,
    pub(super) clustering: Option<serde_json::Value>,
    pub(super) clusters: Vec<ClusterView>,
    /// The clustering that names the causes against the one that selects the images, when they differ.
    pub(super) roles: Option<super::roles::RolesView>,
    /// The failures' map (inline SVG, drawn here from the clustered layer's distances) and the share of their
    /// variance its two axes hold; the curve over k at that layer (the cluster stage's own SVG). Only drawn: not in
    /// `evidence.json` but the share.
    pub(super) map: Option<String>,
    pub(super) map_shown: Option<f64>,
    pub(super) knee: Option<String>,
    pub(super) rq1: Option<serde_json::Value>,
    pub(super) rq2: Option<serde_json::Value>,
    /// The strip plot of scores per strategy (inline SVG, trusted: made here from numbers).
    pub(super) rq2_plot: Option<String>,
    /// The corrections of RQ1's and RQ2's p-values, in words.
    pub(super) rq1_correction: Option<String>,
    pub(super) rq2_correction: Option<String>,
    pub(super) residual: Vec<usize>,
    /// Clusters with too few images on the judging split to judge their accuracy, and that limit.
    pub(super) too_small: Vec<usize>,
    pub(super) min_images: usize,
    pub(super) to_review: Vec<usize>,
    /// The `annotations` file the manifest names, when it does not exist.
    pub(super) annotations_missing: Option<String>,
    /// The `annotations` file the manifest names (relative to the workspace), and its notes that match no current
    /// cluster or match one by number alone.
    pub(super) annotations_file: Option<String>,
    pub(super) annotation_flags: Vec<Flag>,
    pub(super) inputs: Vec<serde_json::Value>,
    pub(super) versions: serde_json::Value,
    /// The manifest as run: path, hash and text.
    pub(super) manifest: Option<serde_json::Value>,
    /// Every stage upstream of the report, in the order computed, with resolved parameters, seeds and times.
    pub(super) lineage: Vec<crate::engine::stage::Ancestor>,
    /// What the retraining repetitions vary, so that a p-value says what it is over (none when unknown).
    pub(super) repetitions: Option<String>,
    /// Per cluster with a rule: the triggering condition and its evidence, and the intervals' level in percent.
    pub(super) conditions: Vec<ConditionView>,
    pub(super) confidence: f64,
    /// The split the rules were learned on and the split whose declared distribution their confirmation drew from.
    pub(super) domain: Option<(String, String)>,
    /// The rules were confirmed on held-out images (real images: nothing to render), not on fresh renders.
    pub(super) confirm_held_out: bool,
    /// The images' parameters (what RQ1 and the rules read) are pixel descriptors measured from real images, not
    /// simulator parameters.
    pub(super) descriptors: bool,
    /// The main clustering and the alternatives as RQ1 judges them (empty without alternatives).
    pub(super) clusterings: Vec<ClusteringView>,
    /// The intervention stage's figures over every failure (when the report reads it).
    pub(super) interventions: Option<super::causes::InterventionsView>,
    /// Per recovery stage: how well a clustering recovers the planted causes.
    pub(super) recovery: Vec<serde_json::Value>,
    pub(super) scope: Scope,
    /// The network's layers (when the report reads the model).
    pub(super) architecture: Option<ArchitectureView>,
    /// Whether scores are accuracies (else a keypoint error in pixels), and their name.
    pub(super) accuracy_metric: bool,
    pub(super) metric_name: String,
    /// Clusters flagged unstable under resampling.
    pub(super) unstable: Vec<usize>,
    /// The splits' independence, by image content (when the report reads the data set).
    pub(super) data: Option<evidence::Independence>,
    pub(super) performance: Vec<Performance>,
    /// The executive summary, first in the report.
    pub(super) summary: super::summary::SummaryView,
    /// The heatmaps' conservation of relevance per layer (when the report reads them).
    pub(super) conservation: Vec<crate::artefact::heatmaps::ConservationRow>,
    /// The reference implementations the numerics are tested against, with their versions.
    pub(super) references: serde_json::Value,
    pub(super) params: Vec<StageParams>,
}

/// `evidence.json`: the templates' data as the versioned schema, without what is only drawn (pictures, the plot).
pub(super) fn evidence_of(context: &Evidence) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("schema".into(), serde_json::json!(evidence::SCHEMA));
    doc.insert("schema_version".into(), serde_json::json!(evidence::VERSION));
    let serde_json::Value::Object(fields) = serde_json::to_value(context).expect("the report's context serialises")
    else {
        unreachable!("a struct serialises to an object")
    };
    for (key, mut value) in fields {
        if matches!(key.as_str(), "rq2_plot" | "map" | "knee") {
            continue;
        }
        // The summary's plots are drawn from figures evidence.json holds elsewhere.
        if key == "summary"
            && let Some(summary) = value.as_object_mut()
        {
            summary.remove("forest");
            summary.remove("rates");
        }
        if key == "architecture"
            && let Some(a) = value.as_object_mut()
        {
            a.remove("drawing");
        }
        if key == "clusters"
            && let Some(clusters) = value.as_array_mut()
        {
            for c in clusters.iter_mut().filter_map(|c| c.as_object_mut()) {
                for picture in ["sheet", "gif", "heatmap"] {
                    if let Some(p) = c.get_mut(picture).and_then(|p| p.as_object_mut()) {
                        p.remove("data");
                    }
                }
            }
        }
        doc.insert(key, value);
    }
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(doc)).expect("JSON serialises");
    text.push('\n');
    text
}

#[cfg(test)]
pub(super) mod tests {
    use super::ClusterView;

    /// A cluster of two images with nothing judged yet.
    pub(in crate::stages::report) fn cluster_view() -> ClusterView {
        ClusterView {
            id: 3,
            size: 2,
            share: 0.5,
            explained: None,
            description: String::new(),
            best_parameter: String::new(),
            best_reduction: None,
            p: None,
            p_adjusted: None,
            beats_chance: None,
            stability: None,
            stable: None,
            verdict: None,
            tested: None,
            agreement: None,
            accuracy: Vec::new(),
            after: None,
            small: true,
            sheet: None,
            gif: None,
            heatmap: None,
            annotation: None,
            annotation_note: None,
            fingerprint: String::new(),
            members: vec!["test-1".into(), "test-2".into()],
        }
    }

    #[test]
    fn a_cluster_as_the_report_writes_it_is_one_that_diff_and_annotate_read() {
        let view = cluster_view();
        let read: crate::artefact::evidence::ClusterRecord =
            serde_json::from_value(serde_json::to_value(&view).unwrap()).unwrap();
        assert_eq!((read.id, read.size, read.members), (3, Some(2), view.members.clone()));
    }
}
