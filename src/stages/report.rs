//! Stage `report`: the safety-analysis report (HTML and Markdown) rendered through minijinja templates from the
//! artefacts of a HUDD workflow: what fails, why (root-cause clusters), what retraining achieved, what remains.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::artefact::annotations::{self, Annotation, Annotations, Flag};
use crate::artefact::clusters::{Clusters, Picture as Drawn};
use crate::artefact::evaluation::{CompareSummary, ExplanationRow, RccRow, RunRow};
use crate::artefact::evidence;
use crate::artefact::recovery::RecoverySummary;
use crate::artefact::results::TestSummary;
use crate::artefact::rules::{Confirmations, Rate, Rules};
use crate::artefact::table;
use crate::artefact::{
    ANY_DATASET, CLUSTERS, COMPARE_RCC, COMPARE_RUNS, COMPARE_SUMMARY, CONFIRMATIONS, EXPLANATIONS, FEATURES, HEATMAPS,
    MODEL, RECOVERY, REPORT, RULES, TEST_SUMMARY,
};
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::stats;

pub struct Report;

/// The shipped templates; a manifest's `template` folder may replace either.
const MARKDOWN: &str = include_str!("../../templates/report.md.j2");
const HTML: &str = include_str!("../../templates/report.html.j2");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// The report's title (default: the workflow's name).
    #[serde(default)]
    pub title: Option<String>,
    /// What the DNN is and does, in a sentence, for the summary.
    #[serde(default)]
    pub dnn: Option<String>,
    /// The safety target the verdict checks, `accuracy >= 0.95` (operators `>=`, `>`, `<=`, `<`).
    #[serde(default)]
    pub target: Option<String>,
    /// `annotations.toml`: the engineers' notes per cluster (relative to the workspace; optional).
    #[serde(default)]
    pub annotations: Option<PathBuf>,
    /// A folder with `report.md.j2` and/or `report.html.j2` replacing the shipped templates.
    #[serde(default)]
    pub template: Option<PathBuf>,
}

/// A parsed target: metric, comparison, threshold.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    metric: String,
    op: String,
    value: f64,
}

fn parse_target(text: &str) -> Result<Target, String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [metric, op, value] = parts[..] else {
        return Err(format!("expected `<metric> <op> <value>` such as `accuracy >= 0.95`, got `{text}`"));
    };
    if metric != "accuracy" {
        return Err(format!("the metric must be `accuracy`, got `{metric}`"));
    }
    if !matches!(op, ">=" | ">" | "<=" | "<") {
        return Err(format!("the comparison must be one of >=, >, <=, <, got `{op}`"));
    }
    let value = value.parse::<f64>().map_err(|_| format!("`{value}` is not a number"))?;
    Ok(Target { metric: metric.into(), op: op.into(), value })
}

impl Target {
    fn met(&self, v: f64) -> bool {
        match self.op.as_str() {
            ">=" => v >= self.value,
            ">" => v > self.value,
            "<=" => v <= self.value,
            _ => v < self.value,
        }
    }
}

impl Params for ReportParams {
    fn validate(&self) -> Vec<Invalid> {
        match &self.target {
            Some(t) => parse_target(t).err().map(|e| Invalid::new("target", e)).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Picture {
    /// Relative path for the Markdown report.
    file: String,
    /// A data URI for the self-contained HTML report.
    data: String,
}

#[derive(Debug, Serialize)]
struct ClusterView {
    id: usize,
    size: usize,
    share: f64,
    explained: Option<bool>,
    description: String,
    best_parameter: String,
    best_reduction: Option<f64>,
    /// The permutation p-value of its best reduction, and whether it is explained beyond chance.
    p: Option<f64>,
    /// Its p-value adjusted over every assessed cluster.
    p_adjusted: Option<f64>,
    beats_chance: Option<bool>,
    /// Its stability under resampling (mean Jaccard) and whether it reaches the threshold.
    stability: Option<f64>,
    stable: Option<bool>,
    /// Whether it beats chance, and on which criterion it fails when it does not, in a sentence.
    verdict: Option<String>,
    /// Accuracy on its images of each tested split, the judging split first.
    accuracy: Vec<RccView>,
    /// The reference strategy's mean accuracy after retraining on the judging split's images of the cluster (else the
    /// first split's), with its interval over runs and images.
    after: Option<AfterAccuracy>,
    /// Too few of those images to judge a rate (fewer than [`MIN_IMAGES`]).
    small: bool,
    sheet: Option<Picture>,
    gif: Option<Picture>,
    heatmap: Option<Picture>,
    annotation: Option<Annotation>,
    /// How the annotation was attached, when not plainly by fingerprint under its own number.
    annotation_note: Option<String>,
    /// The fingerprint of its members (what annotations and `hudd diff` match by), and the members.
    fingerprint: String,
    members: Vec<String>,
}

/// A cluster's accuracy on one split's images of it, before and after retraining with each strategy.
#[derive(Debug, Clone, Serialize)]
struct RccView {
    split: String,
    /// The judging split (its images are assigned to the cluster), or the one whose failures formed it.
    held_out: bool,
    images: usize,
    /// The original model's accuracy on them (0 by construction: the cluster's images are its failures).
    before: f64,
    /// Every strategy's, the reference first.
    after: Vec<AfterAccuracy>,
}

/// One strategy's mean accuracy over its runs on a cluster's images, with a 95% interval over runs and images.
#[derive(Debug, Clone, Serialize)]
struct AfterAccuracy {
    strategy: String,
    runs: usize,
    rate: f64,
    lo: Option<f64>,
    hi: Option<f64>,
}

/// Fewer images of a cluster than this, and its accuracy is not judged: a 95% interval on a rate from fewer than
/// 20 images spans more than ±20 points.
const MIN_IMAGES: usize = 20;

/// What RQ1 concludes about a cluster, naming the criterion it fails: the paper's (no parameter's spread drops by the
/// threshold) or chance (random clusters of its size do as well, after the correction).
fn verdict(e: &ExplanationRow, threshold: f64, alpha: f64) -> Option<String> {
    let p = e.p?;
    let ps = match e.p_adjusted {
        Some(a) => format!("p = {p:.3}, adjusted {a:.3}"),
        None => format!("p = {p:.3}"),
    };
    let best = e.best_reduction.map_or(String::new(), |r| format!(" (best: {}, {:.0}%)", e.best_parameter, r * 100.0));
    Some(match (e.explained, e.beats_chance) {
        (_, Some(true)) => format!("Explained beyond chance: random clusters of its size rarely do as well ({ps})"),
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

/// A cluster's triggering condition: the rule, how well it separates, and its test on new images.
#[derive(Debug, Clone, Serialize)]
struct ConditionView {
    cluster: usize,
    rule: String,
    size: usize,
    /// Images an expand stage added to the cluster before the rule was learned.
    expanded: usize,
    support: Option<f64>,
    /// Cluster images among the images the rule covers, on the split it was learned from.
    precision: Option<f64>,
    /// Conditions grown and then pruned, in words.
    pruned: Vec<String>,
    /// The region's share of the operational domain, and the share of the model's failures there it holds.
    share: Option<f64>,
    recall: Option<f64>,
    /// Failure rates on fresh images of the operational domain, inside the region and outside it.
    inside: Option<Rate>,
    outside: Option<Rate>,
    confirmed: Option<bool>,
    /// The failure rate inside the region with each strategy's retrained models.
    after: Vec<AfterView>,
}

/// One strategy's failure rate inside a rule's region after retraining: pooled over its runs' fresh images, with a
/// two-level bootstrap interval over runs and images.
#[derive(Debug, Clone, Serialize)]
struct AfterView {
    strategy: String,
    runs: usize,
    images: usize,
    rate: f64,
    lo: Option<f64>,
    hi: Option<f64>,
}

/// Section 1: what is analysed, on which data, against which criterion.
#[derive(Debug, Clone, Serialize)]
struct Scope {
    /// The architecture (a name or a file relative to the workspace), its input and its outputs.
    architecture: Option<String>,
    input: Option<String>,
    task: Option<String>,
    /// Where the images come from: a simulator and its task, or an imported data set.
    source: String,
    splits: Vec<SplitScope>,
}

/// Section 1: the network analysed, layer by layer, from the model artefact the report reads.
#[derive(Debug, Serialize)]
struct ArchitectureView {
    name: String,
    description: String,
    /// `C×H×W`, and the number of classes or keypoints.
    input: String,
    outputs: usize,
    /// Declared layers (none for a TorchScript model, whose layers `hudd` does not see).
    declared: bool,
    /// Whether some layer takes other than the layer before it (a residual sum, a branch, a concatenation).
    graph: bool,
    parameters: usize,
    layers: Vec<LayerRow>,
    /// The graph drawn (inline SVG, trusted: made here from the layers' names), for a graph.
    drawing: Option<String>,
}

#[derive(Debug, Serialize)]
struct LayerRow {
    name: String,
    kind: &'static str,
    inputs: Vec<String>,
    output: String,
    parameters: usize,
}

/// What the report shows of a model: its declared layers with their inputs, shapes and parameters, and a drawing
/// of the graph when it is one.
fn architecture(meta: &crate::model::artefact::ModelMeta) -> Result<ArchitectureView, StageError> {
    let [c, h, w] = meta.input;
    let mut view = ArchitectureView {
        name: "TorchScript".into(),
        description: String::new(),
        input: format!("{c}×{h}×{w}"),
        outputs: meta.outputs,
        declared: false,
        graph: false,
        parameters: 0,
        layers: Vec::new(),
        drawing: None,
    };
    let Some(arch) = &meta.architecture else { return Ok(view) };
    let rows = arch.describe(meta.input, meta.outputs)?;
    view.name.clone_from(&arch.model.name);
    view.description.clone_from(&arch.model.description);
    (view.declared, view.graph) = (true, arch.is_graph());
    view.parameters = rows.iter().map(|r| r.params).sum();
    if view.graph {
        let index = |name: &str| rows.iter().position(|r| r.name == name).map_or(0, |k| k + 1);
        let mut nodes = vec![crate::media::svg::Node { name: "input", caption: view.input.clone(), inputs: vec![] }];
        nodes.extend(rows.iter().map(|r| crate::media::svg::Node {
            name: &r.name,
            caption: format!("{} {}", r.kind, r.output),
            inputs: r.inputs.iter().map(|i| index(i)).collect(),
        }));
        let title = format!("{}: {} layers, {} parameters", arch.model.name, rows.len(), view.parameters);
        view.drawing = Some(crate::media::svg::layer_graph(&title, &nodes));
    }
    view.layers = rows
        .into_iter()
        .map(|r| LayerRow {
            name: r.name,
            kind: r.kind,
            inputs: r.inputs,
            output: r.output.to_string(),
            parameters: r.params,
        })
        .collect();
    Ok(view)
}

/// One split as the manifest draws it: its size and parameter distributions (scenarios as `name: ...`).
#[derive(Debug, Clone, Serialize)]
struct SplitScope {
    split: String,
    count: Option<u64>,
    params: Vec<String>,
}

/// Section 3: a model's score on a split, with its interval and the acceptance criterion.
#[derive(Debug, Clone, Serialize)]
struct Performance {
    /// `original`, or a retraining strategy.
    model: String,
    split: String,
    held_out: bool,
    runs: usize,
    value: f64,
    lo: Option<f64>,
    hi: Option<f64>,
    /// What the interval is over: the split's images (one model), or the runs (repeated retrainings).
    interval: String,
    /// Whether the value, and the interval's worse end, meet the target.
    met: Option<bool>,
    met_worst: Option<bool>,
}

/// A stage upstream of the report with its parameters as `key = value` lines.
#[derive(Debug, Clone, Serialize)]
struct StageParams {
    stage: String,
    /// `key = value`, then `# reads <path> (blake3 <hash>)` for each file it reads.
    lines: Vec<String>,
}

/// Reads the manifest's annotations file, and names it when it is given but not there (said, not silently read as
/// "nothing reviewed yet").
fn read_annotations(p: &ReportParams, ctx: &StageContext<'_>) -> Result<(Annotations, Option<String>), StageError> {
    let annotations: Annotations = match &p.annotations {
        Some(path) if ctx.resolve(path).exists() => {
            let path = ctx.resolve(path);
            let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
            toml::from_str(&text).map_err(|e| StageError::input(format!("{}: {e}", path.display())))?
        }
        _ => Annotations::default(),
    };
    let missing = p.annotations.as_ref().filter(|a| !ctx.resolve(a).exists()).map(|a| {
        let shown = a.display().to_string();
        ctx.progress.message(&format!("annotations file {shown} does not exist: every cluster is to review"));
        shown
    });
    Ok((annotations, missing))
}

/// What the evaluation says about each cluster: its explanation (RQ1) and accuracy on its images (RQ2), with RQ1's
/// threshold and significance level.
struct Judged<'a> {
    explanations: &'a BTreeMap<usize, ExplanationRow>,
    accuracy: &'a BTreeMap<usize, Vec<RccView>>,
    threshold: f64,
    alpha: f64,
}

/// One view per root-cause cluster, with its annotation bound by fingerprint, its evidence and its pictures copied
/// into the report's `images/`; and the annotations that no longer match as flags.
fn cluster_views(
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
            stability: r.stability,
            stable: r.stable,
            after: accuracy.get(&id).and_then(|a| a.first()).and_then(|a| a.after.first()).cloned(),
            small: accuracy.get(&id).and_then(|a| a.first()).is_none_or(|a| a.images < MIN_IMAGES),
            accuracy: accuracy.get(&id).cloned().unwrap_or_default(),
            sheet: picture(&folder.picture(id, Drawn::Sheet), out, &format!("rcc-{id}-sheet.png"))?,
            gif: picture(&folder.picture(id, Drawn::Gif), out, &format!("rcc-{id}.gif"))?,
            heatmap: picture(&folder.picture(id, Drawn::Heatmap), out, &format!("rcc-{id}-heatmap.png"))?,
            annotation: binding.map(|b| b.annotation),
            annotation_note,
            fingerprint,
            members,
        });
    }
    Ok((clusters, flags))
}

/// The triggering conditions with their confirmations and the failure rates inside them after retraining, the
/// confirmations' confidence level in percent (95 when none), and the splits the rules were learned on and drawn from.
struct Evaluated {
    conditions: Vec<ConditionView>,
    confidence: f64,
    domain: Option<(String, String)>,
}

fn evaluated(ctx: &StageContext<'_>) -> Result<Evaluated, StageError> {
    let first = |slot: &str| ctx.inputs(slot).first().map(|a| a.path.clone());
    let confirmations = first("confirm").map(|p| table::read_json::<Confirmations>(&p)).transpose()?;
    let confidence = confirmations.as_ref().map_or(95.0, |c| (1.0 - c.alpha) * 100.0);
    let domain = confirmations.as_ref().map(|c| (c.learned_on.clone(), c.domain.clone()));
    let mut after = Vec::new();
    for a in ctx.inputs("confirm_after") {
        let strategy = a.matrix.get("strategy").cloned().unwrap_or_else(|| a.stage.clone());
        after.push((strategy, table::read_json::<Confirmations>(&a.path)?));
    }
    let conditions = triggering_conditions(
        first("rules").map(|p| table::read_json::<Rules>(&p)).transpose()?,
        confirmations,
        &after,
        confidence / 100.0,
    );
    Ok(Evaluated { conditions, confidence, domain })
}

/// How each clustering recovers the planted causes, named by the stage that clustered (the recovery stage's id).
fn recovery(ctx: &StageContext<'_>) -> Result<Vec<serde_json::Value>, StageError> {
    ctx.inputs("recovery")
        .iter()
        .map(|a| {
            let summary: RecoverySummary = table::read_json(&a.path)?;
            let mut v = serde_json::to_value(&summary).expect("a recovery summary serialises");
            v["stage"] = serde_json::json!(a.stage);
            Ok(v)
        })
        .collect()
}

/// The artefact keys of the inputs the report's figures come from, by slot.
fn input_keys(ctx: &StageContext<'_>) -> Vec<serde_json::Value> {
    let slots = [
        "model",
        "test",
        "clusters",
        "variance",
        "compare",
        "runs",
        "rcc",
        "rules",
        "confirm",
        "confirm_after",
        "recovery",
    ];
    slots
        .iter()
        .flat_map(|slot| {
            ctx.inputs(slot)
                .iter()
                .map(move |a| serde_json::json!({ "slot": slot, "stage": a.stage, "output": a.output, "key": a.key }))
        })
        .collect()
}

/// Section 6's open items, by cluster id: clusters with enough images to judge whose images the reference's
/// retrained models still get wrong more than half the time (residual risk), clusters with too few images to say,
/// clusters no engineer has annotated, and clusters unstable under resampling.
struct OpenItems {
    residual: Vec<usize>,
    too_small: Vec<usize>,
    to_review: Vec<usize>,
    unstable: Vec<usize>,
}

fn open_items(clusters: &[ClusterView]) -> OpenItems {
    let ids = |keep: &dyn Fn(&ClusterView) -> bool| clusters.iter().filter(|c| keep(c)).map(|c| c.id).collect();
    OpenItems {
        residual: ids(&|c| !c.small && c.after.as_ref().is_some_and(|a| a.rate < 0.5)),
        too_small: ids(&|c| c.small && !c.accuracy.is_empty()),
        to_review: ids(&|c| c.annotation.is_none()),
        unstable: ids(&|c| c.stable == Some(false)),
    }
}

/// The conditions of the rules, their confirmations and the inside failure rates after retraining (by strategy:
/// each confirmation's matrix `strategy`, else its stage), by cluster.
fn triggering_conditions(
    rules: Option<Rules>,
    confirm: Option<Confirmations>,
    after: &[(String, Confirmations)],
    level: f64,
) -> Vec<ConditionView> {
    let view = |cluster: usize, rule: String| ConditionView {
        cluster,
        rule,
        size: 0,
        expanded: 0,
        support: None,
        precision: None,
        pruned: Vec::new(),
        share: None,
        recall: None,
        inside: None,
        outside: None,
        confirmed: None,
        after: Vec::new(),
    };
    let mut views: Vec<ConditionView> = match (&rules, &confirm) {
        (Some(r), _) => r
            .rules
            .iter()
            .map(|r| ConditionView {
                size: r.size,
                expanded: r.expanded,
                support: Some(r.support),
                precision: Some(r.precision),
                pruned: r.pruned.clone(),
                ..view(r.cluster, r.text.clone())
            })
            .collect(),
        (None, Some(c)) => c.rules.iter().map(|c| view(c.cluster, c.rule.clone())).collect(),
        (None, None) => Vec::new(),
    };
    let mut strategies: Vec<&str> = Vec::new();
    for (s, _) in after {
        if !strategies.contains(&s.as_str()) {
            strategies.push(s);
        }
    }
    for v in &mut views {
        if let Some(c) = confirm.as_ref().and_then(|c| c.rules.iter().find(|c| c.cluster == v.cluster)) {
            (v.inside, v.outside, v.confirmed) = (Some(c.inside), Some(c.outside), Some(c.confirmed));
            (v.share, v.recall) = (Some(c.coverage.share), Some(c.recall));
        }
        for strategy in &strategies {
            let runs: Vec<Rate> = after
                .iter()
                .filter(|(s, _)| s == strategy)
                .filter_map(|(_, a)| a.rules.iter().find(|c| c.cluster == v.cluster && c.inside.images > 0))
                .map(|c| c.inside)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let (failures, images) = runs.iter().fold((0, 0), |(f, n), r| (f + r.failures, n + r.images));
            let outcomes: Vec<Vec<f64>> = runs.iter().map(|r| stats::outcomes(r.failures, r.images)).collect();
            let interval = stats::two_level_interval(&outcomes, stats::Images::PerRun, level, 2000, 0);
            v.after.push(AfterView {
                strategy: strategy.to_string(),
                runs: runs.len(),
                images,
                rate: failures as f64 / images as f64,
                lo: interval.map(|i| i.0),
                hi: interval.map(|i| i.1),
            });
        }
    }
    views
}

/// Everything the templates see.
#[derive(Debug, Serialize)]
struct Context {
    title: String,
    workflow: String,
    dnn: String,
    test: serde_json::Value,
    target: Option<serde_json::Value>,
    clustering: Option<serde_json::Value>,
    clusters: Vec<ClusterView>,
    rq1: Option<serde_json::Value>,
    rq2: Option<serde_json::Value>,
    /// The strip plot of scores per strategy (inline SVG, trusted: made here from numbers).
    rq2_plot: Option<String>,
    /// The corrections of RQ1's and RQ2's p-values, in words.
    rq1_correction: Option<String>,
    rq2_correction: Option<String>,
    residual: Vec<usize>,
    /// Clusters with too few images on the judging split to judge their accuracy, and that limit.
    too_small: Vec<usize>,
    min_images: usize,
    to_review: Vec<usize>,
    /// The `annotations` file the manifest names, when it does not exist.
    annotations_missing: Option<String>,
    /// The `annotations` file the manifest names (relative to the workspace), and its notes that match no current
    /// cluster or match one by number alone.
    annotations_file: Option<String>,
    annotation_flags: Vec<Flag>,
    inputs: Vec<serde_json::Value>,
    versions: serde_json::Value,
    /// The manifest as run: path, hash and text.
    manifest: Option<serde_json::Value>,
    /// Every stage upstream of the report, in the order computed, with resolved parameters, seeds and times.
    lineage: Vec<crate::engine::stage::Ancestor>,
    /// What the retraining repetitions vary, so that a p-value says what it is over (none when unknown).
    repetitions: Option<String>,
    /// Per cluster with a rule: the triggering condition and its evidence, and the intervals' level in percent.
    conditions: Vec<ConditionView>,
    confidence: f64,
    /// The split the rules were learned on and the split whose declared distribution their confirmation drew from.
    domain: Option<(String, String)>,
    /// Per recovery stage: how well a clustering recovers the planted causes.
    recovery: Vec<serde_json::Value>,
    scope: Scope,
    /// The network's layers (when the report reads the model).
    architecture: Option<ArchitectureView>,
    /// Whether scores are accuracies (else a keypoint error in pixels), and their name.
    accuracy_metric: bool,
    metric_name: String,
    /// Clusters flagged unstable under resampling.
    unstable: Vec<usize>,
    /// The splits' independence, by image content (when the report reads the data set).
    data: Option<evidence::Independence>,
    performance: Vec<Performance>,
    /// The heatmaps' conservation of relevance per layer (when the report reads them).
    conservation: Vec<crate::artefact::heatmaps::ConservationRow>,
    /// The reference implementations the numerics are tested against, with their versions.
    references: serde_json::Value,
    params: Vec<StageParams>,
}

/// The reference implementations and the versions the committed fixtures were generated with.
const REFERENCES: &str = include_str!("../../tests/fixtures/versions.json");

fn picture(src: &Path, dir: &Path, name: &str) -> Result<Option<Picture>, StageError> {
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

/// Tick positions from `lo` to `hi`: multiples of 1, 2 or 5 × 10^k, about five of them.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(magnitude * 10.0);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Scores per strategy on one split: each run a dot, each strategy's mean a bar, the original a dashed line, on an
/// axis with ticks and its unit (percent for accuracy, pixels for a keypoint error).
fn strip_plot(runs: &[RunRow], original: f64, split: &str, accuracy: bool) -> String {
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in runs {
        groups.entry(r.strategy.clone()).or_default().push(r.score);
    }
    let all: Vec<f64> = groups.values().flatten().copied().chain([original]).collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let (lo, hi) = (lo - pad, hi + pad);
    let (w, row, left, right) = (640.0, 34.0, 120.0, 24.0);
    let axis_y = row * (groups.len() as f64 + 0.6);
    let h = axis_y + 62.0;
    let x = |v: f64| left + (v - lo) / (hi - lo) * (w - left - right);
    let label = |v: f64| if accuracy { format!("{:.1}", v * 100.0) } else { format!("{v:.2}") };
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="12" role="img" aria-label="Scores per retraining strategy on split {split}"><rect width="{w}" height="{h}" fill="#fff"/>"##,
        split = crate::media::svg::escape(split)
    );
    // The axis, its ticks with their values, and its title with the unit.
    svg.push_str(&format!(
        r##"<line x1="{left}" x2="{:.1}" y1="{axis_y:.1}" y2="{axis_y:.1}" stroke="#333"/>"##,
        w - right
    ));
    for t in ticks(lo, hi) {
        let tx = x(t);
        svg.push_str(&format!(
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{axis_y:.1}" y2="{:.1}" stroke="#333"/><line x1="{tx:.1}" x2="{tx:.1}" y1="8" y2="{axis_y:.1}" stroke="#eee"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            axis_y + 5.0,
            axis_y + 18.0,
            label(t)
        ));
    }
    let title = if accuracy { "accuracy (%)" } else { "mean keypoint error (px, lower is better)" };
    svg.push_str(&format!(
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{title} on split {}; dot: one retrained model, red bar: mean</text>"##,
        left + (w - left - right) / 2.0,
        axis_y + 38.0,
        crate::media::svg::escape(split)
    ));
    let ox = x(original);
    svg.push_str(&format!(
        r##"<line x1="{ox:.1}" x2="{ox:.1}" y1="8" y2="{axis_y:.1}" stroke="#777" stroke-dasharray="4 3"/><text x="{ox:.1}" y="{:.1}" text-anchor="middle" fill="#555">original {}</text>"##,
        axis_y + 54.0,
        label(original)
    ));
    for (i, (name, values)) in groups.iter().enumerate() {
        let y = row * (i as f64 + 0.6);
        svg.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{} ({} runs)</text>"##,
            left - 8.0,
            y + 4.0,
            crate::media::svg::escape(name),
            values.len()
        ));
        for v in values {
            svg.push_str(&format!(
                r##"<circle cx="{:.1}" cy="{y:.1}" r="4" fill="#1f5fa8" fill-opacity="0.7"/>"##,
                x(*v)
            ));
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        svg.push_str(&format!(
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#d33" stroke-width="2"/>"##,
            x(mean),
            y - 10.0,
            y + 10.0
        ));
    }
    svg.push_str("</svg>");
    svg
}

impl Stage for Report {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    const VERSION: u32 = 10;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "test",
            accepts: &[TEST_SUMMARY],
            many: false,
            required: true,
            doc: "the original model's test summary",
        },
        InputSlot {
            name: "clusters",
            accepts: &[CLUSTERS],
            many: false,
            required: false,
            doc: "a cluster stage's output",
        },
        InputSlot {
            name: "variance",
            accepts: &[EXPLANATIONS],
            many: false,
            required: false,
            doc: "a variance stage's clusters table",
        },
        InputSlot {
            name: "compare",
            accepts: &[COMPARE_SUMMARY],
            many: false,
            required: false,
            doc: "a compare stage's summary",
        },
        InputSlot {
            name: "runs",
            accepts: &[COMPARE_RUNS],
            many: false,
            required: false,
            doc: "a compare stage's runs table (for the plot)",
        },
        InputSlot {
            name: "rcc",
            accepts: &[COMPARE_RCC],
            many: false,
            required: false,
            doc: "a compare stage's rcc table (accuracy per cluster)",
        },
        InputSlot {
            name: "rules",
            accepts: &[RULES],
            many: false,
            required: false,
            doc: "a rules stage's rules (triggering conditions)",
        },
        InputSlot {
            name: "confirm",
            accepts: &[CONFIRMATIONS],
            many: false,
            required: false,
            doc: "a confirm stage's confirmations of those rules with the model under analysis",
        },
        InputSlot {
            name: "recovery",
            accepts: &[RECOVERY],
            many: true,
            required: false,
            doc: "recovery stages' summaries: how well each clustering recovers planted causes",
        },
        InputSlot {
            name: "data",
            accepts: ANY_DATASET,
            many: false,
            required: false,
            doc: "the data set whose splits are checked for independence (by image content)",
        },
        InputSlot {
            name: "heatmaps",
            accepts: &[HEATMAPS, FEATURES],
            many: false,
            required: false,
            doc: "the heatmaps the clusters were made from (their conservation of relevance per layer)",
        },
        InputSlot {
            name: "model",
            accepts: &[MODEL],
            many: false,
            required: false,
            doc: "the model under analysis: the scope lists its layers and draws a graph architecture",
        },
        InputSlot {
            name: "confirm_after",
            accepts: &[CONFIRMATIONS],
            many: true,
            required: false,
            doc: "confirmations with retrained models (the inside failure rates after retraining, averaged)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "report",
        kind: REPORT,
        path: "report/",
        doc: "report.html, report.md, evidence.json and images/",
    }];
    const DOC: &'static str = "Renders the safety-analysis report.";
    const DELIVERABLE: bool = true;

    fn external_paths(p: &ReportParams) -> Vec<PathBuf> {
        p.template.iter().cloned().collect()
    }

    /// The shipped templates are compiled in: a change to them renders every report again.
    fn fingerprints(_p: &ReportParams) -> Vec<(String, String)> {
        let hash = blake3::hash(format!("{MARKDOWN}\u{0}{HTML}\u{0}{REFERENCES}").as_bytes()).to_hex().to_string();
        vec![("shipped report templates".into(), hash)]
    }

    fn optional_paths(p: &ReportParams) -> Vec<PathBuf> {
        p.annotations.iter().cloned().collect()
    }

    fn run(&self, p: &ReportParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let out = ctx.output("report")?;
        let images = out.join(evidence::IMAGES);
        std::fs::create_dir_all(&images).map_err(|e| StageError::io(&images, e))?;
        let test: TestSummary = table::read_json(&ctx.input("test")?.path)?;
        let (annotations, annotations_missing) = read_annotations(p, ctx)?;
        let first = |slot: &str| ctx.inputs(slot).first().map(|a| a.path.clone());
        let clustering = first("clusters").map(|d| Clusters::open(&d).summary()).transpose()?;
        let explanations: BTreeMap<usize, ExplanationRow> = match first("variance") {
            Some(path) => table::read::<ExplanationRow>(&path)?.into_iter().map(|r| (r.cluster, r)).collect(),
            None => BTreeMap::new(),
        };
        let compare: Option<CompareSummary> = first("compare").map(|p| table::read_json(&p)).transpose()?;
        let reference = compare.as_ref().map_or_else(|| "hudd".to_string(), |c| c.reference.clone());
        let held_out = |split: &str| compare.as_ref().is_some_and(|c| c.judged_on == split);
        let accuracy = match first("rcc") {
            Some(path) => per_cluster(table::read::<RccRow>(&path)?, &reference, held_out),
            None => BTreeMap::new(),
        };
        let rq1_summary = compare.as_ref().and_then(|c| c.rq1.as_ref());
        let (threshold, alpha) = (
            rq1_summary.map_or(0.5, |r| r.threshold),
            rq1_summary.and_then(|r| r.chance.as_ref()).map_or(0.05, |c| c.alpha),
        );
        let (clusters, annotation_flags) = match first("clusters") {
            Some(dir) => {
                let judged = Judged { explanations: &explanations, accuracy: &accuracy, threshold, alpha };
                cluster_views(&Clusters::open(&dir), &annotations, &judged, &out, ctx.progress)?
            }
            None => (Vec::new(), Vec::new()),
        };
        let rq2_plot = match (first("runs"), &compare) {
            (Some(path), Some(c)) => {
                let runs: Vec<RunRow> =
                    table::read::<RunRow>(&path)?.into_iter().filter(|r| r.split == c.judged_on).collect();
                Some(strip_plot(&runs, c.original, &c.judged_on, c.metric == "accuracy"))
            }
            _ => None,
        };
        // The compared metric: accuracy for classifiers, the mean keypoint error in pixels for keypoint models.
        let accuracy_compared = compare.as_ref().is_none_or(|c| c.metric == "accuracy");
        let target_parsed = p.target.as_deref().map(parse_target).transpose().map_err(StageError::input)?;
        let target = target_parsed
            .as_ref()
            .map(|t| serde_json::json!({ "text": p.target, "metric": t.metric, "value": t.value }));
        let OpenItems { residual, too_small, to_review, unstable } = open_items(&clusters);
        let Evaluated { conditions, confidence, domain } = evaluated(ctx)?;
        let recovery = recovery(ctx)?;
        let inputs = input_keys(ctx);
        let lineage = ctx.lineage().to_vec();
        let data = match first("data") {
            Some(dir) => {
                ctx.progress.message("independence of the splits: hashing every image");
                Some(evidence::independence(&crate::dataset::Dataset::open(&dir)?.image_hashes_by_split()?))
            }
            None => None,
        };
        let conservation = match first("heatmaps") {
            Some(dir) => crate::artefact::heatmaps::Heatmaps::open(&dir).layers()?,
            None => Vec::new(),
        };
        let runs: Vec<RunRow> = match first("runs") {
            Some(path) => table::read(&path)?,
            None => Vec::new(),
        };
        let performance = performance(&test, compare.as_ref(), &runs, target_parsed.as_ref());
        let architecture = match first("model") {
            Some(dir) => Some(architecture(&crate::model::artefact::ModelMeta::read(&dir)?)?),
            None => None,
        };
        // The drawings, as files beside the Markdown report (the HTML report carries them inline).
        let drawn = [
            ("rq2.svg", rq2_plot.as_ref()),
            ("architecture.svg", architecture.as_ref().and_then(|a| a.drawing.as_ref())),
        ];
        for (name, svg) in drawn.into_iter().filter_map(|(name, svg)| Some((name, svg?))) {
            let path = images.join(name);
            std::fs::write(&path, svg).map_err(|e| StageError::io(&path, e))?;
        }
        let params = lineage
            .iter()
            .map(|a| StageParams {
                stage: a.stage.clone(),
                lines: evidence::key_values(&a.params, ctx.workspace)
                    .into_iter()
                    .chain(a.externals.iter().map(|(path, hash)| format!("# reads {path} (blake3 {hash})")))
                    .collect(),
            })
            .collect();
        let context = Context {
            title: p.title.clone().unwrap_or_else(|| format!("Safety analysis: {}", ctx.workflow)),
            workflow: ctx.workflow.to_string(),
            dnn: p.dnn.clone().unwrap_or_default(),
            test: serde_json::to_value(&test).expect("a test summary serialises"),
            target,
            // Optional fields are left out of cluster.json; the strict templates see them as null.
            clustering: clustering.map(|c| {
                let mut v = serde_json::to_value(&c).expect("a cluster summary serialises");
                for key in ["empty", "layer", "stability"] {
                    v.as_object_mut().expect("an object").entry(key).or_insert(serde_json::Value::Null);
                }
                v
            }),
            clusters,
            rq1: compare.as_ref().and_then(|c| c.rq1.as_ref()).map(|r| serde_json::to_value(r).expect("serialises")),
            rq2: compare.as_ref().map(|c| serde_json::to_value(c).expect("a comparison summary serialises")),
            rq2_plot,
            rq1_correction: compare
                .as_ref()
                .and_then(|c| c.rq1.as_ref())
                .and_then(|r| r.chance.as_ref())
                .map(|c| c.correction.describe().to_string()),
            rq2_correction: compare.as_ref().and_then(|c| c.correction).map(|c| c.describe().to_string()),
            residual,
            too_small,
            min_images: MIN_IMAGES,
            to_review,
            annotations_missing,
            annotations_file: p.annotations.as_ref().map(|a| a.display().to_string()),
            annotation_flags,
            inputs,
            versions: serde_json::json!({
                "hudd": env!("CARGO_PKG_VERSION"),
                "libtorch": crate::runtime::LIBTORCH_VERSION,
                "crates": env!("HUDD_CRATES"),
            }),
            manifest: manifest(ctx)?,
            repetitions: repetitions(&lineage),
            conditions,
            confidence,
            domain,
            recovery,
            scope: scope(&lineage, ctx.workspace),
            architecture,
            accuracy_metric: accuracy_compared,
            metric_name: if accuracy_compared { "Accuracy".into() } else { "Mean keypoint error (px)".into() },
            unstable,
            data,
            performance,
            conservation,
            references: serde_json::from_str(REFERENCES).expect("the committed versions.json is JSON"),
            params,
            lineage,
        };
        let (md, html) = render(&context, p.template.as_ref().map(|t| ctx.resolve(t)).as_deref())?;
        let evidence = evidence_of(&context);
        for (name, text) in [(evidence::MARKDOWN, md), (evidence::HTML, html), (evidence::FILE, evidence)] {
            let path = out.join(name);
            std::fs::write(&path, text).map_err(|e| StageError::io(&path, e))?;
        }
        Ok(())
    }
}

/// Each cluster's accuracy per split (the judging split first) with every strategy (the reference first).
fn per_cluster(rows: Vec<RccRow>, reference: &str, held_out: impl Fn(&str) -> bool) -> BTreeMap<usize, Vec<RccView>> {
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

/// The scope from the stages upstream: the first data stage (simulate or dataset) and the first training.
fn scope(lineage: &[crate::engine::stage::Ancestor], workspace: &Path) -> Scope {
    let data = lineage.iter().find(|a| a.kind == "simulate" || a.kind == "dataset");
    let train = lineage.iter().find(|a| a.kind == "train" || a.kind == "model");
    let text = |a: &crate::engine::stage::Ancestor, key: &str| {
        a.params.get(key).filter(|v| !v.is_null()).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    };
    let source = match data {
        Some(a) if a.kind == "simulate" => format!(
            "the {} simulator{}, {}×{} pixels",
            text(a, "simulator").unwrap_or_default(),
            text(a, "task").map(|t| format!(" (task {t})")).unwrap_or_default(),
            text(a, "size").unwrap_or_default(),
            text(a, "size").unwrap_or_default()
        ),
        Some(a) => format!(
            "the imported data set {} ({})",
            evidence::key_values(&serde_json::json!({ "path": a.params.get("path") }), workspace)
                .first()
                .map_or(String::new(), |l| l.trim_start_matches("path = ").to_string()),
            text(a, "format").unwrap_or_else(|| "folder".into())
        ),
        None => "not recorded (no simulate or dataset stage upstream)".into(),
    };
    let splits = data
        .and_then(|a| a.params.get("splits"))
        .and_then(|s| s.as_object())
        .map(|splits| {
            splits
                .iter()
                .map(|(name, s)| {
                    let mut params = distributions(s.get("params"), workspace);
                    if let Some(scenarios) = s.get("scenarios").and_then(|v| v.as_object()) {
                        for (scenario, v) in scenarios {
                            let weight = v.get("weight").map_or(String::new(), |w| format!("weight {w}"));
                            let drawn = distributions(v.get("params"), workspace);
                            params.push(format!("scenario {scenario} ({weight}): {}", drawn.join("; ")));
                        }
                    }
                    SplitScope { split: name.clone(), count: s.get("count").and_then(|c| c.as_u64()), params }
                })
                .collect()
        })
        .unwrap_or_default();
    let architecture = train.and_then(|a| {
        let arch = a.params.get("architecture").or_else(|| a.params.get("path"))?;
        evidence::key_values(&serde_json::json!({ "a": arch }), workspace)
            .first()
            .map(|l| l.trim_start_matches("a = ").trim_matches('"').to_string())
    });
    let input = data.and_then(|a| {
        Some(format!("{}×{}×{}", text(a, "channels").unwrap_or_else(|| "3".into()), text(a, "size")?, text(a, "size")?))
    });
    Scope { architecture, input, task: data.and_then(|a| text(a, "task")), source, splits }
}

/// Parameter distributions as people write them: `night ~ uniform(0.0, 1.0)`; anything else as `key = value`.
fn distributions(params: Option<&serde_json::Value>, workspace: &Path) -> Vec<String> {
    let Some(map) = params.and_then(|p| p.as_object()) else { return Vec::new() };
    map.iter()
        .flat_map(|(name, v)| match v.as_object().filter(|d| d.len() == 1) {
            Some(d) => {
                let (dist, args) = d.iter().next().expect("one entry");
                let args = match args {
                    serde_json::Value::Array(a) => a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "),
                    other => other.to_string(),
                };
                vec![format!("{name} ~ {dist}({args})")]
            }
            None => evidence::key_values(&serde_json::json!({ name: v }), workspace),
        })
        .collect()
}

/// Section 3: the original and every retraining strategy on each tested split, the judging split first, with a 95%
/// interval (the original: exact binomial over the split's images for an accuracy, a bootstrap over them for a
/// keypoint error; a strategy: a two-level bootstrap over its runs and the split's images, from `compare`, or
/// Student's t over its runs in summaries written before it) and the target checked on the value and on the
/// interval's worse end.
fn performance(
    test: &TestSummary,
    compare: Option<&CompareSummary>,
    runs: &[RunRow],
    target: Option<&Target>,
) -> Vec<Performance> {
    let met = |v: f64| target.map(|t| t.met(v));
    // The worse end of an interval for the target: the lower one for `>`/`>=`, the upper one for `<`/`<=`.
    let worst = |lo: Option<f64>, hi: Option<f64>| {
        target.and_then(|t| if t.op.starts_with('>') { lo } else { hi }.map(|v| t.met(v)))
    };
    let binomial = |score: f64, n: usize| {
        if n == 0 {
            return (None, None);
        }
        let (lo, hi) = crate::trigger::clopper_pearson((score * n as f64).round() as usize, n, 0.05);
        (Some(lo), Some(hi))
    };
    let Some(c) = compare else {
        let (lo, hi) = binomial(test.accuracy, test.images);
        return vec![Performance {
            model: "original".into(),
            split: test.split.clone(),
            held_out: test.seen.is_none(),
            runs: 1,
            value: test.accuracy,
            lo,
            hi,
            interval: format!("exact binomial, {} images", test.images),
            met: met(test.accuracy),
            met_worst: worst(lo, hi),
        }];
    };
    let accuracy = c.metric == "accuracy";
    let mut out = Vec::new();
    for p in &c.protocols {
        let (lo, hi, interval) = if accuracy {
            let (lo, hi) = binomial(p.original, p.images);
            (lo, hi, format!("the split's {} images (exact binomial)", p.images))
        } else {
            (p.original_lo, p.original_hi, format!("the split's {} images (bootstrap)", p.images))
        };
        out.push(Performance {
            model: "original".into(),
            split: p.split.clone(),
            held_out: p.held_out,
            runs: 1,
            value: p.original,
            interval: if lo.is_some() { interval } else { "one model".into() },
            lo,
            hi,
            met: if accuracy { met(p.original) } else { None },
            met_worst: if accuracy { worst(lo, hi) } else { None },
        });
        for s in &p.strategies {
            let (lo, hi, interval) = match (s.lo, s.hi) {
                (Some(lo), Some(hi)) => (
                    Some(lo),
                    Some(hi),
                    format!("its {} runs and the split's {} images (two-level bootstrap)", s.runs, p.images),
                ),
                _ => {
                    let scores: Vec<f64> = runs
                        .iter()
                        .filter(|r| r.split == p.split && r.strategy == s.strategy)
                        .map(|r| r.score)
                        .collect();
                    // An accuracy's interval stops at 0 and 1.
                    let t = stats::t_interval(&scores, 0.95)
                        .map(|(lo, hi)| if accuracy { (lo.max(0.0), hi.min(1.0)) } else { (lo, hi) });
                    let what = format!("its {} runs only (Student's t; the split's images not covered)", scores.len());
                    (t.map(|i| i.0), t.map(|i| i.1), if t.is_some() { what } else { "no spread".into() })
                }
            };
            out.push(Performance {
                model: s.strategy.clone(),
                split: p.split.clone(),
                held_out: p.held_out,
                runs: s.runs,
                value: s.mean,
                lo,
                hi,
                interval,
                met: if accuracy { met(s.mean) } else { None },
                met_worst: if accuracy { worst(lo, hi) } else { None },
            });
        }
    }
    out
}

/// `evidence.json`: the templates' data as the versioned schema, without what is only drawn (pictures, the plot).
fn evidence_of(context: &Context) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("schema".into(), serde_json::json!(evidence::SCHEMA));
    doc.insert("schema_version".into(), serde_json::json!(evidence::VERSION));
    let serde_json::Value::Object(fields) = serde_json::to_value(context).expect("the report's context serialises")
    else {
        unreachable!("a struct serialises to an object")
    };
    for (key, mut value) in fields {
        if key == "rq2_plot" {
            continue;
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

/// What HUDD's repeated retrainings vary, read from the stages upstream: how many improvement sets were drawn and
/// how many selections HUDD made (`select` with strategy `hudd`, assignments of held-out images aside).
fn repetitions(lineage: &[crate::engine::stage::Ancestor]) -> Option<String> {
    let param =
        |a: &crate::engine::stage::Ancestor, key: &str| a.params.get(key).and_then(|v| v.as_str()).map(String::from);
    let selections = lineage
        .iter()
        .filter(|a| a.kind == "select")
        .filter(|a| param(a, "strategy").as_deref() == Some("hudd") && param(a, "mode").as_deref() != Some("all"))
        .count();
    let retrainings = lineage.iter().filter(|a| a.kind == "retrain").count();
    if selections == 0 || retrainings < 2 {
        return None;
    }
    Some(if selections > 1 {
        format!(
            "HUDD's {selections} selections each come from their own draw of the improvement set: the p-values are over \
             repetitions that redraw the improvement images, the selection, the bootstrap and the retraining seed \
             (one model and one clustering)"
        )
    } else {
        "every repetition shares one model, one clustering and one unsafe set; only the bootstrap draw and the \
         retraining seed vary, so the p-values speak of retraining noise, not of how the improvement set was drawn \
         (workflows/quickstart-redraw.toml redraws it)"
            .to_string()
    })
}

/// The manifest the report was planned from, with its text; refused when the file changed since planning (the
/// report would describe a manifest it was not computed from).
fn manifest(ctx: &StageContext<'_>) -> Result<Option<serde_json::Value>, StageError> {
    let Some(m) = ctx.manifest else { return Ok(None) };
    let path = ctx.resolve(Path::new(&m.path));
    let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
    if blake3::hash(text.as_bytes()).to_hex().as_str() != m.hash {
        return Err(StageError::input(format!(
            "{} changed after the run was planned (hash {} expected); run the workflow again",
            path.display(),
            m.hash
        )));
    }
    Ok(Some(serde_json::json!({ "path": m.path, "hash": m.hash, "text": text })))
}

/// A Markdown code span holding `text` as it is: fenced by more backticks than any run inside it (CommonMark),
/// so no text can close it early; inside it, `<` and `&` are shown, not interpreted.
fn code_span(text: &str) -> String {
    let text = visible(text);
    let ticks = "`".repeat(longest_run(&text, '`') + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') { " " } else { "" };
    format!("{ticks}{pad}{text}{pad}{ticks}")
}

/// Whether a character must not reach a report as it is: control characters (a NUL breaks HTML parsing, terminal
/// escapes run in `cat report.md`) and the bidirectional overrides and isolates that reorder what a reader sees.
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\r') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// User text with every [`hidden`] character shown as U+FFFD, so a reader sees that something was there.
fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(hidden) {
        text.chars().map(|c| if hidden(c) { '\u{fffd}' } else { c }).collect::<String>().into()
    } else {
        text.into()
    }
}

/// User text as Markdown shows it literally: HTML's `<`, `>`, `&` as entities (viewers render raw HTML), and the
/// punctuation that makes Markdown (emphasis, code, links, table cells, line breaks) escaped with a backslash;
/// control characters and bidirectional overrides shown as U+FFFD.
fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in visible(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The longest run of `c` in `text`.
fn longest_run(text: &str, c: char) -> usize {
    text.split(|x| x != c).map(str::len).max().unwrap_or(0)
}

/// Renders both templates (a user folder's where present, else the shipped ones), strict about undefined values,
/// HTML-escaping the HTML one.
fn render(context: &Context, folder: Option<&Path>) -> Result<(String, String), StageError> {
    let mut env = environment();
    let mut sources = vec![("report.md.j2", MARKDOWN.to_string()), ("report.html.j2", HTML.to_string())];
    if let Some(dir) = folder {
        for (name, source) in &mut sources {
            let path = dir.join(*name);
            if path.exists() {
                *source = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
            }
        }
    }
    let where_ = |e: &minijinja::Error| {
        let origin = folder.map_or("shipped template".to_string(), |d| format!("template folder {}", d.display()));
        format!("{} line {} ({origin}): {}", e.name().unwrap_or("template"), e.line().unwrap_or(0), e)
    };
    for (name, source) in sources {
        env.add_template_owned(name, source).map_err(|e| StageError::input(where_(&e)))?;
    }
    let value = minijinja::value::Value::from(minijinja::value::Serde(context));
    let draw = |name: &str| {
        env.get_template(name).and_then(|t| t.render(value.clone())).map_err(|e| StageError::input(where_(&e)))
    };
    Ok((draw("report.md.j2")?, draw("report.html.j2")?))
}

/// The template environment both reports render in: strict about undefined values; user text escaped for HTML or
/// Markdown by the template's name, with control characters and bidirectional overrides shown as U+FFFD in every
/// filter's output too.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html.j2") {
            minijinja::AutoEscape::Html
        } else if name.ends_with(".md.j2") {
            minijinja::AutoEscape::Custom("markdown".into())
        } else {
            minijinja::AutoEscape::None
        }
    });
    // Markdown viewers render raw HTML: user text (titles, descriptions, annotations) has `<`, `>` and `&` escaped.
    env.set_formatter(|out, state, value| {
        if let minijinja::AutoEscape::Custom(name) = state.auto_escape()
            && name == "markdown"
        {
            return match value.as_str() {
                Some(text) if !value.is_safe() => out.write_str(&markdown_text(text)).map_err(minijinja::Error::from),
                _ => write!(out, "{value}").map_err(minijinja::Error::from),
            };
        }
        // HTML escapes `<`, `>`, `&` and quotes; control characters and bidirectional overrides go first.
        match value.as_str() {
            Some(text) if !value.is_safe() && text.chars().any(hidden) => {
                minijinja::escape_formatter(out, state, &minijinja::Value::from(visible(text).into_owned()))
            }
            _ => minijinja::escape_formatter(out, state, value),
        }
    });
    env.add_filter("code", |text: String| minijinja::Value::from_safe_string(code_span(&text)));
    // A code span in a table cell: GFM splits cells at every unescaped pipe, code spans included.
    env.add_filter("ccode", |text: String| minijinja::Value::from_safe_string(code_span(&text).replace('|', "\\|")));
    env.add_filter("fence", |text: String, lang: String| {
        let ticks = "`".repeat(longest_run(&text, '`').max(2) + 1);
        let newline = if text.ends_with('\n') { "" } else { "\n" };
        minijinja::Value::from_safe_string(format!("{ticks}{lang}\n{}{newline}{ticks}", visible(&text)))
    });
    env
}

#[cfg(test)]
mod tests {
    use super::{environment, hidden, repetitions, verdict};
    use crate::artefact::evaluation::ExplanationRow;
    use crate::engine::stage::Ancestor;
    use proptest::prelude::{ProptestConfig, prop_assert};

    fn ancestor(kind: &str, params: serde_json::Value) -> Ancestor {
        Ancestor {
            stage: kind.into(),
            kind: kind.into(),
            version: 1,
            key: String::new(),
            params,
            seed: None,
            externals: Default::default(),
        }
    }

    #[test]
    fn the_report_says_what_the_repetitions_vary() {
        let hudd = || ancestor("select", serde_json::json!({ "strategy": "hudd", "mode": "closest" }));
        let assign = ancestor("select", serde_json::json!({ "strategy": "hudd", "mode": "all" }));
        let retrain = || ancestor("retrain", serde_json::json!({}));
        let shared = repetitions(&[hudd(), assign.clone(), retrain(), retrain(), retrain()]).unwrap();
        assert!(shared.contains("only the bootstrap draw and the retraining seed vary"), "{shared}");
        let redrawn = repetitions(&[hudd(), hudd(), hudd(), assign, retrain(), retrain(), retrain()]).unwrap();
        assert!(
            redrawn.contains("HUDD's 3 selections") && redrawn.contains("redraw the improvement images"),
            "{redrawn}"
        );
        assert_eq!(repetitions(&[hudd(), retrain()]), None, "a single retraining repeats nothing");
    }

    fn row(explained: bool, p: f64, adjusted: f64, beats: bool) -> ExplanationRow {
        ExplanationRow {
            cluster: 1,
            size: 10,
            explained: Some(explained),
            best_parameter: "night".into(),
            best_reduction: Some(if explained { 0.7 } else { 0.2 }),
            description: String::new(),
            p: Some(p),
            beats_chance: Some(beats),
            p_adjusted: Some(adjusted),
        }
    }

    #[test]
    fn the_verdict_names_the_criterion_a_cluster_fails() {
        let v = |r: ExplanationRow| verdict(&r, 0.5, 0.05).unwrap();
        assert!(v(row(true, 0.001, 0.004, true)).starts_with("Explained beyond chance"));
        // A tiny p does not make a cluster explained: the paper's criterion failed, and the sentence says so.
        let not_explained = v(row(false, 0.001, 0.004, false));
        assert!(not_explained.starts_with("Not explained: no parameter's spread drops by 50% (best: night, 20%)"));
        // Explained, with a small raw p that the correction lifts above α: chance is the criterion that failed.
        let corrected = v(row(true, 0.03, 0.09, false));
        assert!(
            corrected.contains("not beyond chance") && corrected.contains("p = 0.030, adjusted 0.090"),
            "{corrected}"
        );
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Annotations, titles and image ids may hold any character: none that is hidden (a NUL, a terminal escape,
        /// a bidirectional override) reaches either report, whichever way a template prints the text.
        #[test]
        fn no_hidden_character_reaches_a_report_through_any_filter(
            text in "[a-z `|<&\\u{0}-\\u{1f}\\u{7f}-\\u{9f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}]{0,12}"
        ) {
            let mut env = environment();
            let source = "{{ t }} {{ t|code }} {{ t|ccode }} {{ t|fence('') }}";
            for name in ["a.md.j2", "a.html.j2"] {
                env.add_template_owned(name, source).unwrap();
                let out = env.get_template(name).unwrap().render(minijinja::context! { t => text.clone() }).unwrap();
                prop_assert!(!out.chars().any(hidden), "{name}: {out:?}");
            }
        }
    }
}
