//! Facts the report reads from the workflow: the scope, the network, the performance against the target, what
//! the repetitions vary, the manifest and the inputs' keys.

use std::path::Path;

use super::view::{ArchitectureView, LayerRow, Performance, Scope, SplitScope, StageParams};
use super::{ReportError, Target};
use crate::artefact::evaluation::{CompareSummary, Protocol, RunRow, StrategyRow};
use crate::artefact::evidence;
use crate::artefact::recovery::RecoverySummary;
use crate::artefact::results::TestSummary;
use crate::artefact::table;
use crate::dataset::{DatasetMeta, ParamInfo};
use crate::domain::{Distribution, Distributions, Domain};
use crate::engine::stage::{StageContext, StageError};
use crate::stats;

/// What the report shows of a model: its declared layers with their inputs, shapes and parameters, and a drawing
/// of the graph when it is one.
pub(super) fn architecture(meta: &crate::model::artefact::ModelMeta) -> Result<ArchitectureView, StageError> {
    let [c, h, w] = meta.input;
    let mut view = ArchitectureView {
        name: model_name(meta),
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

/// A model's name: its declared architecture's, else `TorchScript`.
pub(super) fn model_name(meta: &crate::model::artefact::ModelMeta) -> String {
    meta.architecture.as_ref().map_or_else(|| "TorchScript".into(), |a| a.model.name.clone())
}

/// How each clustering recovers the planted causes, named by the stage that clustered (the recovery stage's id).
pub(super) fn recovery(ctx: &StageContext<'_>) -> Result<Vec<serde_json::Value>, StageError> {
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
pub(super) fn input_keys(ctx: &StageContext<'_>) -> Vec<serde_json::Value> {
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

/// Section 1's scope, from the artefacts: the dataset's record of where its images come from and of each split's
/// operational domain (for simulated data, the parameters a split draws otherwise than the simulator's defaults,
/// and those defaults), and the model's architecture.
pub(super) fn scope(data: Option<&DatasetMeta>, architecture: Option<String>) -> Scope {
    let Some(meta) = data else {
        let source = "not recorded (the report has no `data` input)".to_string();
        return Scope { architecture, input: None, task: None, source, splits: Vec::new(), defaults: Vec::new() };
    };
    let (origin, place) = meta.source.split_once(':').unwrap_or((meta.source.as_str(), ""));
    let simulator = (origin == "simulate").then(|| crate::sim::simulator(place)).flatten();
    let source = match simulator {
        Some(sim) => format!("the {} simulator, {}×{} pixels", sim.name(), meta.height, meta.width),
        None => format!("the imported data set {place} ({origin})"),
    };
    let defaults = simulator.map(Distributions::defaults);
    let splits = meta
        .splits
        .iter()
        .map(|(split, count)| {
            let domain = meta.domains.get(split);
            let params = match (domain, &defaults) {
                (Some(domain), Some(defaults)) => declared(&meta.params, domain, defaults),
                _ => vec!["no declared distribution (imported images)".to_string()],
            };
            SplitScope { split: split.clone(), count: *count, params }
        })
        .collect();
    let defaults = defaults
        .map_or_else(Vec::new, |d| meta.params.iter().zip(&d.0).map(|(info, dist)| describe(info, dist)).collect());
    Scope {
        architecture,
        input: Some(format!("{}×{}×{}", meta.channels, meta.height, meta.width)),
        task: Some(meta.task.clone()),
        source,
        splits,
        defaults,
    }
}

/// A split's domain as people declare it: the parameters it draws otherwise than the simulator's defaults, then
/// each scenario with the parameters it draws otherwise than the split.
fn declared(params: &[ParamInfo], domain: &Domain, defaults: &Distributions) -> Vec<String> {
    let differing = |dists: &Distributions, from: &Distributions| -> Vec<String> {
        params
            .iter()
            .zip(dists.0.iter().zip(&from.0))
            .filter(|(_, (d, base))| d != base)
            .map(|(info, (d, _))| describe(info, d))
            .collect()
    };
    let mut lines = differing(&domain.dists, defaults);
    for s in &domain.scenarios {
        let own = differing(&s.dists, &domain.dists);
        let own = if own.is_empty() { "as the split".to_string() } else { own.join("; ") };
        lines.push(format!("scenario {} (weight {}): {own}", s.name, s.weight));
    }
    if lines.is_empty() {
        lines.push("the simulator's defaults".into());
    }
    lines
}

/// One parameter's distribution as people write it: `yaw (degrees) ~ uniform(-70, 70)`, `occluder ~ any of
/// foliage, pole, vehicle`, `weather ~ categorical(clear 0.8, fog 0.2)`, `glasses = true`, `yaw (degrees) ~ uniform
/// over [-45, -28] ∪ [-12, 12] ∪ [28, 45]`.
fn describe(info: &ParamInfo, dist: &Distribution) -> String {
    let name = match &info.unit {
        Some(unit) => format!("{} ({unit})", info.name),
        None => info.name.clone(),
    };
    let category = |k: usize| match info.kind.as_str() {
        "bool" => (if k == 1 { "true" } else { "false" }).to_string(),
        _ => info.values.get(k).cloned().unwrap_or_else(|| k.to_string()),
    };
    let categorical = matches!(info.kind.as_str(), "bool" | "categorical");
    match dist {
        Distribution::Uniform { min, max } if min == max => format!("{name} = {min}"),
        Distribution::Uniform { min, max } => format!("{name} ~ uniform({min}, {max})"),
        Distribution::Normal { mean, sd, min, max } => format!("{name} ~ normal({mean}, {sd}) within [{min}, {max}]"),
        Distribution::Fixed { value } if categorical => format!("{name} = {}", category(*value as usize)),
        Distribution::Fixed { value } => format!("{name} = {value}"),
        Distribution::Intervals { ranges } => {
            let parts: Vec<String> = ranges.iter().map(|[lo, hi]| format!("[{lo}, {hi}]")).collect();
            format!("{name} ~ uniform over {}", parts.join(" ∪ "))
        }
        Distribution::Categorical { weights } => {
            let total: f64 = weights.iter().sum();
            let drawn: Vec<(usize, f64)> = weights.iter().copied().enumerate().filter(|(_, w)| *w > 0.0).collect();
            let equal = drawn.iter().all(|(_, w)| *w == drawn[0].1);
            match drawn.as_slice() {
                [(k, _)] => format!("{name} = {}", category(*k)),
                _ if equal && drawn.len() > 6 => format!("{name} ~ any of its {} values", drawn.len()),
                _ if equal => {
                    let values: Vec<String> = drawn.iter().map(|&(k, _)| category(k)).collect();
                    format!("{name} ~ any of {}", values.join(", "))
                }
                _ => {
                    let parts: Vec<String> =
                        drawn.iter().map(|&(k, w)| format!("{} {}", category(k), share(w / total))).collect();
                    format!("{name} ~ categorical({})", parts.join(", "))
                }
            }
        }
    }
}

/// A probability to three decimals without trailing zeros (`0.5`, `0.333`).
fn share(p: f64) -> String {
    let text = format!("{p:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Section 3: the original and every retraining strategy on each tested split, the judging split first, with a 95%
/// interval (the original: exact binomial over the split's images for an accuracy, a bootstrap over them for a
/// keypoint error; a strategy: a two-level bootstrap over its runs and the split's images, from `compare`, or
/// Student's t over its runs in summaries written before it) and the target checked on the value and on the
/// interval's worse end.
pub(super) fn performance(
    test: &TestSummary,
    compare: Option<&CompareSummary>,
    runs: &[RunRow],
    target: Option<&Target>,
) -> Vec<Performance> {
    let met = |v: f64| target.map(|t| t.met(v));
    // The worse end of an interval for the target: the lower one for `>`/`>=`, the upper one for `<`/`<=`.
    let worst = |lo: Option<f64>, hi: Option<f64>| {
        target.and_then(|t| if t.op.higher_is_better() { lo } else { hi }.map(|v| t.met(v)))
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
            let (lo, hi, interval) = strategy_interval(p, s, runs, accuracy);
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

/// A strategy's 95% interval on a split and what it covers: `compare`'s two-level bootstrap over its runs and the
/// split's images, or (summaries written before it) Student's t over its runs alone, an accuracy's stopping at 0
/// and 1.
fn strategy_interval(
    p: &Protocol,
    s: &StrategyRow,
    runs: &[RunRow],
    accuracy: bool,
) -> (Option<f64>, Option<f64>, String) {
    if let (Some(lo), Some(hi)) = (s.lo, s.hi) {
        let what = format!("its {} runs and the split's {} images (two-level bootstrap)", s.runs, p.images);
        return (Some(lo), Some(hi), what);
    }
    let scores: Vec<f64> =
        runs.iter().filter(|r| r.split == p.split && r.strategy == s.strategy).map(|r| r.score).collect();
    let t =
        stats::t_interval(&scores, 0.95).map(|(lo, hi)| if accuracy { (lo.max(0.0), hi.min(1.0)) } else { (lo, hi) });
    let what = format!("its {} runs only (Student's t; the split's images not covered)", scores.len());
    (t.map(|i| i.0), t.map(|i| i.1), if t.is_some() { what } else { "no spread".into() })
}

/// What HUDD's repeated retrainings vary, read from the stages upstream: how many improvement sets were drawn and
/// how many selections HUDD made (from each select stage's record: HUDD's strategy, in a mode that selects).
pub(super) fn repetitions(lineage: &[crate::engine::stage::Ancestor]) -> Result<Option<String>, StageError> {
    let mut selections = 0;
    for a in lineage.iter().filter(|a| a.kind == "select") {
        let Some(pictures) = a.output("pictures") else { continue };
        selections += usize::from(crate::artefact::selection::read_record(pictures)?.selects_for_hudd());
    }
    let retrainings = lineage.iter().filter(|a| a.kind == "retrain").count();
    if selections == 0 || retrainings < 2 {
        return Ok(None);
    }
    Ok(Some(if selections > 1 {
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
    }))
}

/// The manifest the report was planned from, with its text; refused when the file changed since planning (the
/// report would describe a manifest it was not computed from).
pub(super) fn manifest(ctx: &StageContext<'_>) -> Result<Option<serde_json::Value>, StageError> {
    let Some(m) = ctx.manifest else { return Ok(None) };
    let path = ctx.resolve(Path::new(&m.path));
    let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
    if blake3::hash(text.as_bytes()).to_hex().as_str() != m.hash {
        return Err(ReportError::ManifestChanged { path, hash: m.hash.clone() }.into());
    }
    Ok(Some(serde_json::json!({ "path": m.path, "hash": m.hash, "text": text })))
}

/// Every stage upstream of the report with its parameters as `key = value` lines and the files it reads.
pub(super) fn stage_params(lineage: &[crate::engine::stage::Ancestor], workspace: &Path) -> Vec<StageParams> {
    lineage
        .iter()
        .map(|a| StageParams {
            stage: a.stage.clone(),
            lines: evidence::key_values(&a.params, workspace)
                .into_iter()
                .chain(a.externals.iter().map(|(path, hash)| format!("# reads {path} (blake3 {hash})")))
                .collect(),
        })
        .collect()
}
