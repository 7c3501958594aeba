//! Stage `report`: the safety-analysis report (HTML and Markdown) rendered through minijinja templates from the
//! artefacts of a HUDD workflow: what fails, why (root-cause clusters), what retraining achieved, what remains.

mod causes;
mod clusters;
mod conditions;
mod facts;
mod map;
mod render;
mod roles;
mod summary;
mod view;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artefact::annotations::{Annotations, Flag};
use crate::artefact::clusters::Clusters;
use crate::artefact::evaluation::{CompareSummary, ExplanationRow, RccRow, RunRow};
use crate::artefact::evidence;
use crate::artefact::heatmaps::Heatmaps;
use crate::artefact::interventions::InterventionSummary;
use crate::artefact::results::TestSummary;
use crate::artefact::table;
use crate::artefact::{
    ANY_DATASET, CLUSTERS, COMPARE_RCC, COMPARE_RUNS, COMPARE_SUMMARY, CONFIRMATIONS, EXPLANATIONS, FEATURES, HEATMAPS,
    INTERVENTION_SUMMARY, MODEL, RECOVERY, REPORT, RULES, TEST_SUMMARY,
};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::ModelMeta;
use clusters::{Judged, OpenItems, cluster_views, clustering_view, open_items, per_cluster};
use conditions::{Evaluated, evaluated};
use facts::{architecture, input_keys, manifest, performance, recovery, repetitions, scope, stage_params};
use render::{HTML, MARKDOWN, REFERENCES, render};
use view::{ClusterView, ClusteringView, Evidence, MIN_IMAGES, evidence_of};

pub struct Report;

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
    op: Comparison,
    value: f64,
}

/// How a score is compared with the target's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    AtLeast,
    Above,
    AtMost,
    Below,
}

impl Comparison {
    fn parse(symbol: &str) -> Option<Comparison> {
        Some(match symbol {
            ">=" => Comparison::AtLeast,
            ">" => Comparison::Above,
            "<=" => Comparison::AtMost,
            "<" => Comparison::Below,
            _ => return None,
        })
    }

    /// Whether a higher score is the better one (then an interval's lower end is its worse end).
    fn higher_is_better(self) -> bool {
        matches!(self, Comparison::AtLeast | Comparison::Above)
    }
}

/// Why the report cannot be made: each names the file, template line or value.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("expected `<metric> <op> <value>` such as `accuracy >= 0.95`, got `{0}`")]
    TargetShape(String),
    #[error("the metric must be `accuracy`, got `{0}`")]
    TargetMetric(String),
    #[error("the comparison must be one of >=, >, <=, <, got `{0}`")]
    TargetComparison(String),
    #[error("`{0}` is not a number")]
    TargetValue(String),
    #[error("{}: {source}", path.display())]
    Annotations { path: PathBuf, source: toml::de::Error },
    #[error("{} changed after the run was planned (hash {hash} expected); run the workflow again", path.display())]
    ManifestChanged { path: PathBuf, hash: String },
    #[error("{template} line {line} ({origin}): {source}")]
    Template { template: String, line: usize, origin: String, source: minijinja::Error },
}

impl From<ReportError> for StageError {
    fn from(e: ReportError) -> Self {
        StageError::artefact(e)
    }
}

fn parse_target(text: &str) -> Result<Target, ReportError> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [metric, op, value] = parts[..] else { return Err(ReportError::TargetShape(text.into())) };
    if metric != "accuracy" {
        return Err(ReportError::TargetMetric(metric.into()));
    }
    let op = Comparison::parse(op).ok_or_else(|| ReportError::TargetComparison(op.into()))?;
    let value = value.parse::<f64>().map_err(|_| ReportError::TargetValue(value.into()))?;
    Ok(Target { metric: metric.into(), op, value })
}

impl Target {
    fn met(&self, v: f64) -> bool {
        match self.op {
            Comparison::AtLeast => v >= self.value,
            Comparison::Above => v > self.value,
            Comparison::AtMost => v <= self.value,
            Comparison::Below => v < self.value,
        }
    }
}

impl Params for ReportParams {
    fn validate(&self) -> Vec<Invalid> {
        match &self.target {
            Some(t) => parse_target(t).err().map(|e| Invalid::new("target", e.to_string())).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

impl Stage for Report {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    // 11: `alternatives`, other clusterings beside the main one. 13: `selection`, the clustering that selects. 14: the
    // failures' map and the curve over k; no mean relevance picture for clusters of a backbone's features. 17: the
    // geometric image-space interventions in words. 18: plot captions wrapped and kept inside their figures. 20: the
    // summary counts the clusters under their tested causes (evidence v11; 19 was that without the evidence version).
    const VERSION: u32 = 20;
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
            doc: "a cluster stage's output: the clusters that name the causes (tested, ruled and judged here)",
        },
        InputSlot {
            name: "selection",
            accepts: &[CLUSTERS],
            many: false,
            required: false,
            doc: "the clustering that selected the images to retrain on, when it is not `clusters`: cross-tabulated against it",
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
            name: "alternatives",
            accepts: &[EXPLANATIONS],
            many: true,
            required: false,
            doc: "other clusterings' variance tables (RQ1), summarised beside the main clustering's (`variance`)",
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
            name: "interventions",
            accepts: &[INTERVENTION_SUMMARY],
            many: false,
            required: false,
            doc: "an intervene stage's summary: each cluster's tested cause (the `clusters` input's entries)",
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
        let gathered = gather(p, ctx, &out)?;
        // The drawings, as files beside the Markdown report (the HTML report carries them inline).
        let drawn = [
            ("rq2.svg", gathered.rq2_plot.as_ref()),
            ("architecture.svg", gathered.architecture.as_ref().and_then(|a| a.drawing.as_ref())),
            ("forest.svg", gathered.summary.forest.as_ref()),
            ("rates.svg", gathered.summary.rates.as_ref()),
            ("map.svg", gathered.map.as_ref()),
            ("knee.svg", gathered.knee.as_ref()),
        ];
        for (name, svg) in drawn.into_iter().filter_map(|(name, svg)| Some((name, svg?))) {
            let path = images.join(name);
            std::fs::write(&path, svg).map_err(|e| StageError::io(&path, e))?;
        }
        let (md, html) = render(&gathered, p.template.as_ref().map(|t| ctx.resolve(t)).as_deref())?;
        let evidence = evidence_of(&gathered);
        for (name, text) in [(evidence::MARKDOWN, md), (evidence::HTML, html), (evidence::FILE, evidence)] {
            let path = out.join(name);
            std::fs::write(&path, text).map_err(|e| StageError::io(&path, e))?;
        }
        Ok(())
    }
}

/// Everything the report says, read from its inputs (pictures copied into `out`'s images as they are met).
fn gather(p: &ReportParams, ctx: &StageContext<'_>, out: &Path) -> Result<Evidence, StageError> {
    let first = |slot: &str| ctx.inputs(slot).first().map(|a| a.path.clone());
    let test: TestSummary = table::read_json(&ctx.input("test")?.path)?;
    let compare: Option<CompareSummary> = first("compare").map(|p| table::read_json(&p)).transpose()?;
    let mut judged = judge_clusters(p, ctx, out, compare.as_ref())?;
    // The compared metric: accuracy for classifiers, the mean keypoint error in pixels for keypoint models.
    let accuracy_compared = compare.as_ref().is_none_or(|c| c.metric == "accuracy");
    let target_parsed = p.target.as_deref().map(parse_target).transpose()?;
    let target =
        target_parsed.as_ref().map(|t| serde_json::json!({ "text": p.target, "metric": t.metric, "value": t.value }));
    let Evaluated { conditions, confidence, domain, held_out, descriptors } = evaluated(ctx)?;
    let interventions: Option<InterventionSummary> =
        first("interventions").map(|p| table::read_json(&p)).transpose()?;
    let clustered_by = ctx.inputs("clusters").first().map(|a| a.stage.clone()).unwrap_or_default();
    causes::attach(&mut judged.clusters, interventions.as_ref().map(|s| (s, clustered_by.as_str())), &conditions);
    let open = open_items(&judged.clusters);
    let roles = roles::roles(ctx, &judged.clusters)?;
    let data = first("data").map(|dir| Dataset::open(&dir)).transpose()?;
    let pictures = match first("clusters") {
        Some(dir) => map::pictures(&Clusters::open(&dir), data.as_ref())?,
        None => map::Pictures { map: None, shown: None, knee: None },
    };
    let runs: Vec<RunRow> = match first("runs") {
        Some(path) => table::read(&path)?,
        None => Vec::new(),
    };
    let lineage = ctx.lineage().to_vec();
    let architecture = first("model").map(|dir| architecture(&ModelMeta::read(&dir)?)).transpose()?;
    let performance = performance(&test, compare.as_ref(), &runs, target_parsed.as_ref());
    let summary = summary::summary(&summary::Facts {
        performance: &performance,
        clusters: &judged.clusters,
        conditions: &conditions,
        compare: compare.as_ref(),
        open: &open,
        target: p.target.as_deref().zip(target_parsed.as_ref().map(|t| t.value)),
        accuracy: accuracy_compared,
        held_out,
        image_space: interventions.as_ref().is_some_and(|s| s.image_space),
    });
    let OpenItems { residual, too_small, to_review, unstable } = open;
    Ok(Evidence {
        title: p.title.clone().unwrap_or_else(|| format!("Safety analysis: {}", ctx.workflow)),
        workflow: ctx.workflow.to_string(),
        dnn: p.dnn.clone().unwrap_or_default(),
        test: serde_json::to_value(&test).expect("a test summary serialises"),
        target,
        clustering: judged.clustering,
        clusters: judged.clusters,
        roles,
        map: pictures.map,
        map_shown: pictures.shown,
        knee: pictures.knee,
        rq1: compare.as_ref().and_then(|c| c.rq1.as_ref()).map(|r| serde_json::to_value(r).expect("serialises")),
        rq2: compare.as_ref().map(|c| serde_json::to_value(c).expect("a comparison summary serialises")),
        rq2_plot: compare.as_ref().filter(|_| first("runs").is_some()).map(|c| rq2_plot(&runs, c)),
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
        annotations_missing: judged.annotations_missing,
        annotations_file: p.annotations.as_ref().map(|a| a.display().to_string()),
        annotation_flags: judged.flags,
        inputs: input_keys(ctx),
        versions: serde_json::json!({
            "hudd": env!("CARGO_PKG_VERSION"),
            "libtorch": crate::runtime::LIBTORCH_VERSION,
            "crates": env!("HUDD_CRATES"),
        }),
        manifest: manifest(ctx)?,
        repetitions: repetitions(&lineage)?,
        conditions,
        confidence,
        domain,
        confirm_held_out: held_out,
        descriptors: descriptors
            || data.as_ref().is_some_and(|d| !d.meta.source.starts_with("simulate:") && !d.meta.params.is_empty()),
        clusterings: clusterings(ctx)?,
        recovery: recovery(ctx)?,
        interventions: interventions.as_ref().map(causes::overall),
        scope: scope(data.as_ref().map(|d| &d.meta), model_name(architecture.as_ref(), &lineage)?),
        architecture,
        accuracy_metric: accuracy_compared,
        metric_name: if accuracy_compared { "Accuracy".into() } else { "Mean keypoint error (px)".into() },
        unstable,
        data: independence(ctx, data.as_ref())?,
        performance,
        summary,
        conservation: first("heatmaps").map(|dir| Heatmaps::open(&dir).layers()).transpose()?.unwrap_or_default(),
        references: serde_json::from_str(REFERENCES).expect("the committed versions.json is JSON"),
        params: stage_params(&lineage, ctx.workspace),
        lineage,
    })
}

/// The network's name: the model input's, else that of the model the first training upstream wrote.
fn model_name(
    model: Option<&view::ArchitectureView>,
    lineage: &[crate::engine::stage::Ancestor],
) -> Result<Option<String>, StageError> {
    if let Some(m) = model {
        return Ok(Some(m.name.clone()));
    }
    let trained = lineage.iter().filter(|a| a.kind == "train" || a.kind == "model").find_map(|a| a.output("model"));
    Ok(trained.map(ModelMeta::read).transpose()?.map(|meta| facts::model_name(&meta)))
}

/// The root-cause clusters as the report shows them, and how the engineers' annotations bound to them.
struct JudgedClusters {
    /// The cluster stage's summary, its optional fields present as null (the strict templates read them).
    clustering: Option<serde_json::Value>,
    clusters: Vec<ClusterView>,
    flags: Vec<Flag>,
    annotations_missing: Option<String>,
}

/// Each cluster with its explanation (RQ1), accuracy (RQ2), stability, annotation and pictures.
fn judge_clusters(
    p: &ReportParams,
    ctx: &StageContext<'_>,
    out: &Path,
    compare: Option<&CompareSummary>,
) -> Result<JudgedClusters, StageError> {
    let first = |slot: &str| ctx.inputs(slot).first().map(|a| a.path.clone());
    let (annotations, annotations_missing) = read_annotations(p, ctx)?;
    let explanations: BTreeMap<usize, ExplanationRow> = match first("variance") {
        Some(path) => table::read::<ExplanationRow>(&path)?.into_iter().map(|r| (r.cluster, r)).collect(),
        None => BTreeMap::new(),
    };
    let reference = compare.map_or_else(|| "hudd".to_string(), |c| c.reference.clone());
    let held_out = |split: &str| compare.is_some_and(|c| c.judged_on == split);
    let accuracy = match first("rcc") {
        Some(path) => per_cluster(table::read::<RccRow>(&path)?, &reference, held_out),
        None => BTreeMap::new(),
    };
    let rq1_summary = compare.and_then(|c| c.rq1.as_ref());
    let (threshold, alpha) = (
        rq1_summary.map_or(0.5, |r| r.threshold),
        rq1_summary.and_then(|r| r.chance.as_ref()).map_or(0.05, |c| c.alpha),
    );
    let Some(dir) = first("clusters") else {
        return Ok(JudgedClusters { clustering: None, clusters: Vec::new(), flags: Vec::new(), annotations_missing });
    };
    let folder = Clusters::open(&dir);
    let relevance = !roles::from_backbone(ctx.lineage(), &folder.summary()?);
    let judged = Judged { explanations: &explanations, accuracy: &accuracy, threshold, alpha, relevance };
    let (clusters, flags) = cluster_views(&folder, &annotations, &judged, out, ctx.progress)?;
    let mut clustering = serde_json::to_value(folder.summary()?).expect("a cluster summary serialises");
    for key in ["empty", "layer", "stability"] {
        clustering.as_object_mut().expect("an object").entry(key).or_insert(serde_json::Value::Null);
    }
    Ok(JudgedClusters { clustering: Some(clustering), clusters, flags, annotations_missing })
}

/// The main clustering and the alternatives as RQ1 judges them, when there are alternatives.
fn clusterings(ctx: &StageContext<'_>) -> Result<Vec<ClusteringView>, StageError> {
    let alternatives = ctx.inputs("alternatives");
    if alternatives.is_empty() {
        return Ok(Vec::new());
    }
    let main = ctx.inputs("variance").iter().map(|a| (a, true));
    main.chain(alternatives.iter().map(|a| (a, false)))
        .map(|(a, main)| Ok(clustering_view(&a.stage, main, &table::read::<ExplanationRow>(&a.path)?)))
        .collect()
}

/// The strip plot of the retrained models' scores on the judging split, per strategy.
fn rq2_plot(runs: &[RunRow], c: &CompareSummary) -> String {
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.split == c.judged_on) {
        groups.entry(r.strategy.clone()).or_default().push(r.score);
    }
    crate::media::svg::strip_plot(&groups, c.original, &c.judged_on, c.metric == "accuracy")
}

/// The splits' independence by image content, when the report reads the data set.
fn independence(ctx: &StageContext<'_>, data: Option<&Dataset>) -> Result<Option<evidence::Independence>, StageError> {
    let Some(data) = data else { return Ok(None) };
    ctx.progress.message("independence of the splits: hashing every image");
    Ok(Some(evidence::independence(&data.image_hashes_by_split()?)))
}

/// Reads the manifest's annotations file, and names it when it is given but not there (said, not silently read as
/// "nothing reviewed yet").
fn read_annotations(p: &ReportParams, ctx: &StageContext<'_>) -> Result<(Annotations, Option<String>), StageError> {
    let annotations: Annotations = match &p.annotations {
        Some(path) if ctx.resolve(path).exists() => {
            let path = ctx.resolve(path);
            let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
            toml::from_str(&text).map_err(|source| ReportError::Annotations { path: path.clone(), source })?
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

#[cfg(test)]
mod tests {
    use super::clusters::verdict;
    use super::facts::repetitions;
    use super::render::{environment, hidden};
    use crate::artefact::evaluation::ExplanationRow;
    use crate::artefact::selection::{SelectRecord, record_path, write_record};
    use crate::engine::stage::Ancestor;
    use proptest::prelude::{ProptestConfig, prop_assert};

    fn ancestor(kind: &str) -> Ancestor {
        Ancestor {
            stage: kind.into(),
            kind: kind.into(),
            version: 1,
            key: String::new(),
            params: serde_json::json!({}),
            seed: None,
            externals: Default::default(),
            outputs: Default::default(),
        }
    }

    /// A select stage whose record says it used `strategy` in `mode`.
    fn select(dir: &std::path::Path, name: &str, strategy: &str, mode: &str) -> Ancestor {
        let pictures = dir.join(name);
        std::fs::create_dir_all(&pictures).unwrap();
        let record = SelectRecord {
            budget: None,
            candidates: 10,
            clusters: None,
            empty: None,
            ignored_singletons: None,
            labelled: None,
            layer: None,
            mode: Some(mode.into()),
            quota: Some(0.1),
            selected: Some(1),
            split: "improve".into(),
            strategy: strategy.into(),
        };
        write_record(&pictures, &record).unwrap();
        let mut a = ancestor("select");
        a.outputs.insert("pictures".into(), pictures);
        a
    }

    /// A signs dataset's record: `train` draws `night` otherwise than the defaults, `test` is a mixture of a fog
    /// scenario and a nominal one, `validation` keeps every default; `imported` has no declared domain.
    fn signs_meta() -> crate::dataset::DatasetMeta {
        use crate::sim::{Distributions, Domain, Scenario};
        let sim = crate::sim::simulator("signs").unwrap();
        let dists = |text: &str| Distributions::new(sim, &toml::from_str(text).unwrap(), "params").unwrap();
        let params = sim.params().iter().map(|p| crate::dataset::ParamInfo::of(&p.column())).collect();
        let test = Domain {
            dists: dists(""),
            scenarios: vec![
                Scenario { name: "fog".into(), weight: 0.25, dists: dists("fog = { uniform = [0.6, 0.9] }") },
                Scenario { name: "nominal".into(), weight: 0.75, dists: dists("") },
            ],
        };
        crate::dataset::DatasetMeta {
            source: "simulate:signs".into(),
            task: "signs".into(),
            target: sim.target("signs"),
            channels: 3,
            height: 32,
            width: 32,
            count: 60,
            splits: vec![("train".into(), 30), ("test".into(), 20), ("validation".into(), 5), ("imported".into(), 5)],
            params,
            chosen_by: Vec::new(),
            domains: [
                ("train".to_string(), Domain::plain(dists("night = { uniform = [0.0, 0.3] }"))),
                ("test".to_string(), test),
                ("validation".to_string(), Domain::plain(dists(""))),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn the_scope_states_each_splits_domain_as_the_dataset_records_it() {
        let scope = super::facts::scope(Some(&signs_meta()), Some("alexnet-small".into()));
        assert_eq!(scope.source, "the signs simulator, 32×32 pixels");
        assert_eq!((scope.input.as_deref(), scope.task.as_deref()), (Some("3×32×32"), Some("signs")));
        let split = |name: &str| scope.splits.iter().find(|s| s.split == name).unwrap().params.clone();
        assert_eq!(split("train"), ["night (share) ~ uniform(0, 0.3)"]);
        assert_eq!(
            split("test"),
            [
                "scenario fog (weight 0.25): fog (share) ~ uniform(0.6, 0.9)",
                "scenario nominal (weight 0.75): as the split"
            ]
        );
        assert_eq!(split("validation"), ["the simulator's defaults"]);
        assert_eq!(split("imported"), ["no declared distribution (imported images)"]);
        // In the dataset's order, with their sizes.
        let order: Vec<(&str, usize)> = scope.splits.iter().map(|s| (s.split.as_str(), s.count)).collect();
        assert_eq!(order, [("train", 30), ("test", 20), ("validation", 5), ("imported", 5)]);
        // Every parameter's default, categories by name.
        assert_eq!(scope.defaults.len(), crate::sim::simulator("signs").unwrap().params().len());
        assert!(
            scope.defaults.contains(&"occluder ~ any of foliage, pole, vehicle".to_string()),
            "{:?}",
            scope.defaults
        );
        assert!(scope.defaults.contains(&"class ~ any of its 15 values".to_string()), "{:?}", scope.defaults);
    }

    #[test]
    fn the_scope_without_a_dataset_says_so() {
        let scope = super::facts::scope(None, None);
        assert!(scope.source.starts_with("not recorded") && scope.splits.is_empty() && scope.defaults.is_empty());
    }

    #[test]
    fn the_report_says_what_the_repetitions_vary_from_the_selections_records() {
        let dir = tempfile::tempdir().unwrap();
        let hudd = |name: &str| select(dir.path(), name, "hudd", "closest");
        let assign = select(dir.path(), "assign", "hudd", "all");
        let random = select(dir.path(), "random", "random", "closest");
        let retrain = || ancestor("retrain");
        let shared = repetitions(&[hudd("a"), assign.clone(), random, retrain(), retrain(), retrain()]).unwrap();
        let shared = shared.expect("HUDD selected once and retrained three times");
        assert!(shared.contains("only the bootstrap draw and the retraining seed vary"), "{shared}");
        let redrawn = repetitions(&[hudd("a"), hudd("b"), hudd("c"), assign, retrain(), retrain()]).unwrap().unwrap();
        assert!(
            redrawn.contains("HUDD's 3 selections") && redrawn.contains("redraw the improvement images"),
            "{redrawn}"
        );
        assert_eq!(repetitions(&[hudd("a"), retrain()]).unwrap(), None, "a single retraining repeats nothing");
        // A record that cannot be read is an error, never a silently blank section.
        let broken = hudd("a");
        std::fs::write(record_path(&dir.path().join("a")), "{}").unwrap();
        assert!(repetitions(&[broken, retrain(), retrain()]).is_err());
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
        assert!(v(row(true, 0.001, 0.004, true)).starts_with("Homogeneous beyond chance"));
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
