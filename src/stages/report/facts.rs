//! Facts the report reads from the workflow: the scope, the network, the performance against the target, what
//! the repetitions vary, the manifest and the inputs' keys.

use std::path::Path;

use super::Target;
use super::view::{ArchitectureView, LayerRow, Performance, Scope, SplitScope, StageParams};
use crate::artefact::evaluation::{CompareSummary, RunRow};
use crate::artefact::evidence;
use crate::artefact::recovery::RecoverySummary;
use crate::artefact::results::TestSummary;
use crate::artefact::table;
use crate::engine::stage::{StageContext, StageError};
use crate::stats;

/// What the report shows of a model: its declared layers with their inputs, shapes and parameters, and a drawing
/// of the graph when it is one.
pub(super) fn architecture(meta: &crate::model::artefact::ModelMeta) -> Result<ArchitectureView, StageError> {
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

/// The scope from the stages upstream: the first data stage (simulate or dataset) and the first training.
pub(super) fn scope(lineage: &[crate::engine::stage::Ancestor], workspace: &Path) -> Scope {
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
pub(super) fn distributions(params: Option<&serde_json::Value>, workspace: &Path) -> Vec<String> {
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
pub(super) fn performance(
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

/// What HUDD's repeated retrainings vary, read from the stages upstream: how many improvement sets were drawn and
/// how many selections HUDD made (`select` with strategy `hudd`, assignments of held-out images aside).
pub(super) fn repetitions(lineage: &[crate::engine::stage::Ancestor]) -> Option<String> {
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
pub(super) fn manifest(ctx: &StageContext<'_>) -> Result<Option<serde_json::Value>, StageError> {
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
