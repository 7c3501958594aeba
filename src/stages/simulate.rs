//! Stage `simulate`: a dataset artefact drawn from a procedural simulator, with per-split parameter distributions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::artefact::{DATASET, PICTURES};
use crate::dataset::{DatasetMeta, DatasetWriter, ParamInfo};
use crate::engine::diagnostic::did_you_mean;
use crate::engine::stage::{Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::sim::{self, Dist, Distributions, Domain, ParamSpec, Scenario, SheetRows, SplitPlan};

/// Why images cannot be simulated as asked: each names the simulator or the parameters.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("unknown simulator `{0}`")]
    UnknownSimulator(String),
    #[error("{}", .0.iter().map(|i| i.message.as_str()).collect::<Vec<_>>().join("; "))]
    Plans(Vec<Invalid>),
    #[error("a pool of {threads} threads: {source}")]
    Threads { threads: usize, source: rayon::ThreadPoolBuildError },
    #[error("{}: {source}", path.display())]
    Sheet { path: std::path::PathBuf, source: image::ImageError },
}

impl From<SimulateError> for StageError {
    fn from(e: SimulateError) -> Self {
        StageError::artefact(e)
    }
}

pub struct Simulate;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateParams {
    /// `signs` (more simulators: see workflows/README.md).
    pub simulator: String,
    /// Defaults to the simulator's first task.
    #[serde(default)]
    pub task: Option<String>,
    /// Image width and height in pixels.
    #[serde(default = "default_size")]
    pub size: u32,
    /// 1 (grey) or 3 (RGB).
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Distributions for every split; a split's own `params` override these.
    #[serde(default)]
    pub params: BTreeMap<String, Dist>,
    /// Split name (`train`, `test`, `improvement`, ...) → count and distributions.
    pub splits: BTreeMap<String, SplitSpec>,
    #[serde(default)]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub count: usize,
    #[serde(default)]
    pub params: BTreeMap<String, Dist>,
    /// A weighted mixture of scenarios (an operational design domain described by its situations): each image
    /// draws one by weight, then its parameters from the scenario's distributions over the split's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scenarios: BTreeMap<String, ScenarioSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    pub weight: f64,
    #[serde(default)]
    pub params: BTreeMap<String, Dist>,
}

fn default_size() -> u32 {
    64
}

fn default_channels() -> usize {
    3
}

impl SimulateParams {
    fn simulator(&self) -> Option<&'static dyn sim::Simulator> {
        sim::simulator(&self.simulator)
    }

    fn task(&self, sim: &dyn sim::Simulator) -> String {
        self.task.clone().unwrap_or_else(|| sim.tasks()[0].to_string())
    }

    /// The splits in table order: `train`, `test`, `improvement` first, then any others by name.
    fn ordered_splits(&self) -> Vec<(&String, &SplitSpec)> {
        let mut splits: Vec<_> = self.splits.iter().collect();
        splits.sort_by_key(|(name, _)| sim::split_rank(name));
        splits
    }

    fn plans(&self, sim: &dyn sim::Simulator) -> Result<Vec<SplitPlan>, Vec<Invalid>> {
        let mut errors = Vec::new();
        if let Err(e) = Distributions::new(sim, &self.params, "params") {
            errors.extend(e);
        }
        let mut plans = Vec::new();
        for (name, split) in self.ordered_splits() {
            if let Err(e) = Distributions::new(sim, &split.params, &format!("splits.{name}.params")) {
                errors.extend(e);
                continue;
            }
            let mut merged = self.params.clone();
            merged.extend(split.params.clone());
            let dists = match Distributions::new(sim, &merged, &format!("splits.{name}.params")) {
                Ok(dists) => dists,
                Err(e) => {
                    errors.extend(e);
                    continue;
                }
            };
            let mut scenarios = Vec::new();
            for (scenario, spec) in &split.scenarios {
                let field = format!("splits.{name}.scenarios.{scenario}.params");
                if !(spec.weight > 0.0 && spec.weight.is_finite()) {
                    errors.push(Invalid::new(
                        format!("splits.{name}.scenarios.{scenario}.weight"),
                        format!("must be above 0, got {}", spec.weight),
                    ));
                    continue;
                }
                let mut own = merged.clone();
                own.extend(spec.params.clone());
                match Distributions::new(sim, &own, &field) {
                    Ok(dists) => scenarios.push(Scenario { name: scenario.clone(), weight: spec.weight, dists }),
                    Err(e) => errors.extend(e),
                }
            }
            plans.push(SplitPlan { name: name.clone(), count: split.count, domain: Domain { dists, scenarios } });
        }
        if errors.is_empty() { Ok(plans) } else { Err(errors) }
    }
}

impl Params for SimulateParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        let Some(sim) = self.simulator() else {
            let names = sim::simulator_names();
            let hint = did_you_mean(&self.simulator, names.iter().copied())
                .map_or_else(|| format!("simulators: {}", names.join(", ")), |s| format!("did you mean `{s}`?"));
            return vec![Invalid::new("simulator", format!("unknown simulator `{}` ({hint})", self.simulator))];
        };
        if let Some(task) = &self.task
            && !sim.tasks().contains(&task.as_str())
        {
            out.push(Invalid::new(
                "task",
                format!("simulator `{}` has no task `{task}` (tasks: {})", sim.name(), sim.tasks().join(", ")),
            ));
        }
        if !(16..=512).contains(&self.size) {
            out.push(Invalid::new("size", format!("must be between 16 and 512 pixels, got {}", self.size)));
        }
        if self.channels != 1 && self.channels != 3 {
            out.push(Invalid::new("channels", format!("must be 1 (grey) or 3 (RGB), got {}", self.channels)));
        }
        if self.splits.is_empty() {
            out.push(Invalid::new("splits", "declare at least one split, e.g. [stage.splits.train] count = 1000"));
        }
        for (name, split) in &self.splits {
            if !crate::engine::manifest::is_valid_id(name) {
                out.push(Invalid::new(
                    format!("splits.{name}"),
                    format!("split names use letters, digits, `_` and `-`, got `{name}`"),
                ));
            }
            if split.count == 0 {
                out.push(Invalid::new(format!("splits.{name}.count"), "must be at least 1, got 0"));
            }
        }
        if let Err(e) = self.plans(sim) {
            out.extend(e);
        }
        out
    }
}

impl Stage for Simulate {
    type Params = SimulateParams;
    const KIND: &'static str = "simulate";
    const VERSION: u32 = 4;
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "dataset", kind: DATASET, path: "dataset/", doc: "images.npy, table.csv, meta.json" },
        OutputSpec {
            name: "sheet",
            kind: PICTURES,
            path: "sheet.png",
            doc: "a contact sheet: one row per class (or the first images)",
        },
    ];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Draws a dataset from a procedural simulator.";

    fn run(&self, p: &SimulateParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let sim = p.simulator().ok_or_else(|| SimulateError::UnknownSimulator(p.simulator.clone()))?;
        let task = p.task(sim);
        let plans = p.plans(sim).map_err(SimulateError::Plans)?;
        let meta = DatasetMeta {
            source: format!("simulate:{}", sim.name()),
            task: task.clone(),
            target: sim.target(&task),
            channels: p.channels,
            height: p.size as usize,
            width: p.size as usize,
            count: 0,
            splits: Vec::new(),
            params: (sim.params().iter())
                .map(|p| ParamInfo { label: sim.label_params(&task).contains(&p.name), ..ParamInfo::of(&p.column()) })
                .collect(),
            chosen_by: Vec::new(),
            domains: plans.iter().map(|s| (s.name.clone(), s.domain.clone())).collect(),
        };
        let dir = ctx.output("dataset")?;
        let mut writer = DatasetWriter::create(&dir, meta, sim.params().iter().map(ParamSpec::column).collect())?;
        let total: usize = plans.iter().map(|s| s.count).sum();
        ctx.progress.start(total as u64, &format!("{} images", sim.name()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads)
            .build()
            .map_err(|source| SimulateError::Threads { threads: ctx.threads, source })?;
        let mut sheet = SheetRows::default();
        let mixtures = plans.iter().any(|s| !s.domain.scenarios.is_empty());
        let mut scenario = Vec::new();
        sim::generate(sim, &task, p.size, ctx.seed, &plans, &pool, |g| {
            let plan = &plans[g.split];
            sheet.offer(&g.sample.label, &g.sample.rgb);
            scenario.push(g.scenario.map_or(String::new(), |k| plan.domain.scenarios[k].name.clone()));
            writer.push(
                format!("{}-{:06}", plan.name, g.index),
                &plan.name,
                &g.sample.rgb,
                g.sample.label,
                g.values,
            )?;
            ctx.progress.inc(1);
            Ok::<(), StageError>(())
        })?;
        // Each image's scenario, when a split is a mixture (empty for images of the other splits).
        let extra = if mixtures { vec![polars::prelude::Column::new("scenario".into(), scenario)] } else { Vec::new() };
        writer.finish_with(extra)?;
        let rows: Vec<Vec<&[u8]>> = sheet.rows.values().map(|r| r.iter().map(Vec::as_slice).collect()).collect();
        let path = ctx.output("sheet")?;
        crate::media::sheet::write_sheet(&path, &rows, p.size as usize)
            .map_err(|source| SimulateError::Sheet { path: path.clone(), source })?;
        Ok(())
    }
}
