//! Stage `intervene`: causes tested by intervention. Every failing image of a simulated split is re-rendered (its own
//! seed, every other parameter kept) with one parameter at a time moved back into the training split's distribution,
//! and the model is tested on it again: a restoration that fixes the prediction is a cause of that failure. Images no
//! single restoration fixes are re-rendered with pairs (co-occurring causes: dim light *and* sunglasses), within a
//! budget. A sham re-render, every parameter kept and only the incidental detail (background, texture, noise) drawn
//! afresh, says what chance fixes. Per cluster, an intervention is the cluster's tested cause when it fixes
//! significantly more of the cluster's images than the sham does on the same images (a one-sided exact McNemar test,
//! corrected over the clustering's tests).
//!
//! The restored value is a draw from the training split's declared distribution, one training vector per image (so a
//! pair restores values the training split draws together), not the training median: the median of a bimodal or
//! interval distribution can lie where training never went, and a draw is what the training set would have shown.
//!
//! Every image is first re-rendered unchanged and compared byte for byte with the stored one: a dataset simulated with
//! another seed is refused rather than intervened on. An image whose unchanged re-render no longer fails (a score that
//! flips with the batch it is computed in) is not assessed.

use std::collections::BTreeSet;

use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::artefact::clusters::Clusters;
use crate::artefact::interventions::{ImageVerdict, InterventionRow, Kind};
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CAUSE_TESTS, CLUSTERS, IMAGE_CAUSES, INTERVENTION_SUMMARY, INTERVENTIONS, MODEL};
use crate::dataset::{Dataset, Label, Target, to_chw};
use crate::engine::diagnostic::did_you_mean;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::Model;
use crate::model::predict::{DEFAULT_THRESHOLD, Prediction, TestError, Truth, predict_pixels};
use crate::runtime::{self, DeviceChoice};
use crate::sim::{self, Domain, Simulator};
use crate::stats::Correction;
use crate::trigger::{self, Purpose};

mod judge;
mod pixels;

use judge::{scenarios, simulated, summarise, test_clusters};

/// Why failing images cannot be intervened on: each names the split, parameter or image.
#[derive(Debug, thiserror::Error)]
pub enum InterveneError {
    #[error("the dataset declares no split `{split}` to restore values from (splits: {})", available.join(", "))]
    NoSplit { split: String, available: Vec<String> },
    #[error("simulator `{simulator}` has no parameter `{name}`{hint}")]
    UnknownParameter { simulator: &'static str, name: String, hint: String },
    #[error("`{name}` makes the label of task `{task}`: restoring it would change what the image shows, not fix it")]
    LabelParameter { name: String, task: String },
    #[error(
        "{} holds real images (no simulator): connect `dataset`, the dataset they were imported in, whose training \
         split the image-space interventions move them towards",
        images.display()
    )]
    NoTrainingSet { images: std::path::PathBuf },
    #[error("image-space intervention `{name}` is not one of {}{hint}", pixels::TRANSFORMS.join(", "))]
    UnknownTransform { name: String, hint: String },
    #[error("image `{id}` was not drawn by a simulate stage (ids are `<split>-<number>`, of a split of the dataset)")]
    NotLocated { id: String },
    #[error(
        "re-rendering `{id}` with seed {seed} does not give the stored image: the dataset was simulated with another \
         seed (set this stage's `seed` to the simulate stage's) or by another version of its simulator"
    )]
    Mismatch { id: String, seed: u64 },
}

impl From<InterveneError> for StageError {
    fn from(e: InterveneError) -> Self {
        StageError::artefact(e)
    }
}

pub struct Intervene;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterveneParams {
    /// The split whose declared distribution restored values are drawn from (real images: whose images' statistics
    /// the image-space interventions move towards).
    #[serde(default = "default_restore_from")]
    pub restore_from: String,
    /// The parameters to restore (default: every parameter of the simulator but those the label is made from); for
    /// real images, the image-space interventions to try (default: all of `pixels::TRANSFORMS`).
    #[serde(default)]
    pub parameters: Vec<String>,
    /// At most this many pairs per image that no single restoration fixes, the parameters whose values training was
    /// least likely to show first, then those whose single restoration helped most (0: no pairs).
    #[serde(default = "default_pairs")]
    pub pairs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Keypoint models: an image is fixed when its mean keypoint error is at most this many pixels (the `test`
    /// stage's threshold).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Level of the intervals and of the tests after the correction.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The correction over one clustering's tests (every cluster and intervention).
    #[serde(default = "default_correction")]
    pub correction: Correction,
    #[serde(default)]
    pub device: DeviceChoice,
    /// Threads for rendering and libtorch (default: the run's, cores / --jobs).
    #[serde(default)]
    pub threads: Option<usize>,
    /// The simulation's seed (default: the workflow's, as the simulate stage's): re-rendering needs it.
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_restore_from() -> String {
    "train".into()
}
/// Ten pairs: every pair of the five parameters whose values training was least likely to show, where co-occurring
/// causes lie (both drifted); the cost stays within a pass per parameter and image.
fn default_pairs() -> usize {
    10
}
fn default_batch() -> usize {
    256
}
fn default_threshold() -> f64 {
    DEFAULT_THRESHOLD
}
fn default_alpha() -> f64 {
    0.05
}
fn default_correction() -> Correction {
    Correction::BenjaminiHochberg
}

impl Params for InterveneParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
        }
        if !(self.threshold > 0.0) {
            out.push(Invalid::new("threshold", format!("must be above 0 pixels, got {}", self.threshold)));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            out.push(Invalid::new("alpha", format!("must lie between 0 and 1, got {}", self.alpha)));
        }
        let mut seen = BTreeSet::new();
        for (i, name) in self.parameters.iter().enumerate() {
            if !seen.insert(name) {
                out.push(Invalid::new(format!("parameters.{i}"), format!("`{name}` is listed twice")));
            }
        }
        out
    }
}

impl Stage for Intervene {
    type Params = InterveneParams;
    const KIND: &'static str = "intervene";
    // 6: real images: `derotate` and `recentre` among the interventions, each image's planted corruption named.
    // 7: real images: `sharpen` reaches the training median sharpness; darkening's remedies include `contrast`.
    // 8: real images: sharpness read relative to contrast, so darkening neither calls for nor is undone by `sharpen`;
    // `derotate` turns the image about its centre, as a camera's roll does, not about the object's centroid.
    const VERSION: u32 = 8;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "model", accepts: &[MODEL], many: false, required: true, doc: "the model that failed" },
        InputSlot {
            name: "images",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "its failing images (a test stage's errors): simulated, or real (then with `dataset`)",
        },
        InputSlot {
            name: "clusters",
            accepts: &[CLUSTERS],
            many: true,
            required: false,
            doc: "clusterings of those images: each cluster gets its tested cause",
        },
        InputSlot {
            name: "dataset",
            accepts: ANY_DATASET,
            many: false,
            required: false,
            doc: "real images: the dataset they were imported in (its `restore_from` split's statistics are the target)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec {
            name: "interventions",
            kind: INTERVENTIONS,
            path: "interventions.csv",
            doc: "image,kind,intervention,fixed,score: every re-render of every failing image",
        },
        OutputSpec {
            name: "images",
            kind: IMAGE_CAUSES,
            path: "images.csv",
            doc: "image,fails_again,sham_fixed,fixed_by,cause,scenario: each failing image's tested cause",
        },
        OutputSpec {
            name: "causes",
            kind: CAUSE_TESTS,
            path: "causes.csv",
            doc: "per clustering, cluster and intervention: share fixed against the sham, exact test, adjusted p",
        },
        OutputSpec {
            name: "summary",
            kind: INTERVENTION_SUMMARY,
            path: "summary.json",
            doc: "shares fixed over every failure, each cluster's tested cause, planted scenarios named",
        },
    ];
    const USES_SEED: bool = true;
    // Backed by tests/it/settings.rs: 1 and 2 threads give the same bytes (renders are per image; the batches of
    // the forward passes do not depend on the threads).
    const SETTINGS: &'static [&'static str] = &["threads"];
    const DOC: &'static str = "Re-renders failing images with one parameter (or two) restored: what fixes them.";

    fn fingerprints(p: &InterveneParams) -> Vec<(String, String)> {
        vec![runtime::device_fingerprint(p.device)]
    }

    fn torch_threads(p: &InterveneParams, run: usize) -> usize {
        p.threads.unwrap_or(run)
    }

    fn run(&self, p: &InterveneParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let model = Model::load(&ctx.input("model")?.path, device)?;
        let ds = Dataset::open(&ctx.input("images")?.path)?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        TestError::check(&model.meta, &ds.meta)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(p.threads.unwrap_or(ctx.threads).max(1))
            .build()
            .map_err(|e| StageError::failed(format!("a pool of threads: {e}")))?;
        let scorer = Scorer { model: &model, shape: input, batch: p.batch_size, threshold: p.threshold };
        let ids = ds.ids()?;
        let simulator = trigger::simulator_of(&ds);
        let (names, (rows, verdicts), scenarios) = match simulator {
            Some(sim) => {
                let restore = ds.meta.domains.get(&p.restore_from).ok_or_else(|| InterveneError::NoSplit {
                    split: p.restore_from.clone(),
                    available: ds.meta.domains.keys().cloned().collect(),
                })?;
                let tried = tried_parameters(sim, &ds.meta.task, &p.parameters)?;
                let names: Vec<String> = tried.iter().map(|&k| sim.params()[k].name.to_string()).collect();
                let images = locate(&ds)?;
                let task = &ds.meta.task;
                let renderer =
                    Renderer { sim, task, ds: &ds, images: &images, ids: &ids, seed: ctx.seed, restore, tried: &tried };
                let assessed = assess(&renderer, &ids, &names, &scorer, &pool, p.pairs, ctx)?;
                let scenarios = scenarios(&simulated(&ds, &images), &assessed.1);
                (names, assessed, scenarios)
            }
            None => {
                let Some(all) = ctx.inputs("dataset").first() else {
                    return Err(InterveneError::NoTrainingSet { images: ds.dir.clone() }.into());
                };
                let all = Dataset::open(&all.path)?;
                let transformer = pixels::Transformer::new(&ds, &all, &p.restore_from, &p.parameters, ctx.seed)?;
                let names = transformer.names();
                let assessed = assess(&transformer, &ids, &names, &scorer, &pool, p.pairs, ctx)?;
                let scenarios = scenarios(&transformer.planted(), &assessed.1);
                (names, assessed, scenarios)
            }
        };

        let mut causes = Vec::new();
        let mut clusters = Vec::new();
        for input in ctx.inputs("clusters") {
            let groups = Clusters::open(&input.path).groups()?;
            let (rows, best) = test_clusters(&input.stage, &groups, &verdicts, &names, p.alpha, p.correction);
            causes.extend(rows);
            clusters.extend(best);
        }
        let mut summary = summarise(p, &names, &verdicts, clusters, scenarios);
        summary.image_space = simulator.is_none();
        table::write(&ctx.output("interventions")?, &rows)?;
        table::write(&ctx.output("images")?, &verdicts)?;
        table::write(&ctx.output("causes")?, &causes)?;
        table::write_json(&ctx.output("summary")?, &summary)?;
        ctx.progress.message(&format!(
            "{} of {} failing images assessed: {} fixed by one restoration, {} by a pair, {} by none; the sham fixes {}",
            summary.assessed, summary.images, summary.by_single, summary.by_pair, summary.unexplained, summary.sham.failures
        ));
        Ok(())
    }
}

/// Failing images intervened on at once: bounds memory while keeping the batches full.
const CHUNK: usize = 64;

/// Every failing image intervened on (unchanged, sham, each single intervention, then pairs for those no single one
/// fixes, within `budget`) and tested again: the interventions' rows and each image's verdict.
fn assess(
    maker: &dyn Intervener,
    ids: &[String],
    names: &[String],
    scorer: &Scorer<'_>,
    pool: &rayon::ThreadPool,
    budget: usize,
    ctx: &mut StageContext<'_>,
) -> Result<(Vec<InterventionRow>, Vec<ImageVerdict>), StageError> {
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    let per_image = 2 + names.len();
    let higher = scorer.higher_is_better();
    ctx.progress.start(ids.len() as u64, "failing images intervened on");
    for chunk in (0..ids.len()).collect::<Vec<_>>().chunks(CHUNK) {
        let jobs: Vec<Job> = chunk.iter().flat_map(|&r| singles(r, names.len())).collect();
        let typical: Vec<Vec<f64>> = chunk.iter().map(|&r| maker.typicality(r)).collect();
        let outcomes = scorer.outcomes(&jobs, pool.install(|| maker.images(&jobs)))?;
        let mut more = Vec::new();
        for (c, &r) in chunk.iter().enumerate() {
            let o = &outcomes[c * per_image..(c + 1) * per_image];
            maker.check(r, &o[0].rendered)?;
            if !o[0].fixed && !o[2..].iter().any(|x| x.fixed) {
                more.extend(pairs(r, &o[2..], &typical[c], budget, higher));
            }
        }
        let pair_outcomes = scorer.outcomes(&more, pool.install(|| maker.images(&more)))?;
        for (c, &r) in chunk.iter().enumerate() {
            let o = &outcomes[c * per_image..(c + 1) * per_image];
            let mine: Vec<(&Job, &Outcome)> = more.iter().zip(&pair_outcomes).filter(|(j, _)| j.row == r).collect();
            let typical = &typical[c];
            let judged = Judged { singles: o, pairs: &mine, typical, higher };
            verdicts.push(verdict(&ids[r], maker.scenario(r), &judged, names));
            for (j, x) in jobs[c * per_image + 1..(c + 1) * per_image].iter().zip(&o[1..]) {
                rows.push(row(&ids[r], j, x, names, typical));
            }
            for (j, x) in &mine {
                rows.push(row(&ids[r], j, x, names, typical));
            }
        }
        ctx.progress.inc(chunk.len() as u64);
    }
    Ok((rows, verdicts))
}

/// The simulator's parameters to restore, by index: those named, or every one the label is not made from.
fn tried_parameters(sim: &dyn Simulator, task: &str, named: &[String]) -> Result<Vec<usize>, InterveneError> {
    let label = sim.label_params(task);
    if named.is_empty() {
        return Ok((0..sim.params().len()).filter(|&k| !label.contains(&sim.params()[k].name)).collect());
    }
    let mut out = Vec::new();
    for name in named {
        let Some(k) = sim.params().iter().position(|q| q.name == name) else {
            let hint = did_you_mean(name, sim.params().iter().map(|q| q.name))
                .map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"));
            return Err(InterveneError::UnknownParameter { simulator: sim.name(), name: name.clone(), hint });
        };
        if label.contains(&sim.params()[k].name) {
            return Err(InterveneError::LabelParameter { name: name.clone(), task: task.to_string() });
        }
        out.push(k);
    }
    out.sort_unstable();
    Ok(out)
}

/// Where a failing image was drawn: its split's number and domain, its index in the split, its scenario.
struct Located<'a> {
    split: u64,
    index: u64,
    domain: &'a Domain,
    scenario: Option<String>,
}

/// Every image's place in the simulation, from its id (`<split>-<number>`) and split.
fn locate(ds: &Dataset) -> Result<Vec<Located<'_>>, StageError> {
    let ids = ds.ids()?;
    let splits = ds.strings("split")?;
    let scenarios = ds.strings("scenario").ok();
    let mut out = Vec::with_capacity(ids.len());
    for (r, (id, split)) in ids.iter().zip(&splits).enumerate() {
        let not_located = || InterveneError::NotLocated { id: id.clone() };
        let index = id.strip_prefix(split.as_str()).and_then(|s| s.strip_prefix('-')).ok_or_else(not_located)?;
        let index: u64 = index.parse().map_err(|_| not_located())?;
        let domain = ds.meta.domains.get(split).ok_or_else(not_located)?;
        let number = sim::split_number(split, ds.meta.domains.keys()).ok_or_else(not_located)?;
        let scenario = scenarios.as_ref().map(|s| s[r].clone()).filter(|s| !s.is_empty());
        out.push(Located { split: number as u64, index, domain, scenario });
    }
    Ok(out)
}

/// One image to make: of which failing image, with what moved.
struct Job {
    row: usize,
    kind: JobKind,
}

/// What makes the intervened images: the simulator re-rendering a simulated image ([`Renderer`]), or transforms of a
/// real image's pixels ([`pixels::Transformer`]). Each image is made from its own state, so threads change no byte.
trait Intervener: Sync {
    /// How typical of training each intervention's subject is in the image (0: never seen in training).
    fn typicality(&self, row: usize) -> Vec<f64>;
    /// A job's image, as the dataset stores images (C×H×W bytes), and its label.
    fn image(&self, job: &Job) -> (Vec<u8>, Label);
    /// Checks the image made unchanged against the stored one (nothing to check where it is the stored one).
    fn check(&self, _row: usize, _unchanged: &[u8]) -> Result<(), StageError> {
        Ok(())
    }
    /// The planted scenario the image was drawn from, if any.
    fn scenario(&self, _row: usize) -> Option<&str> {
        None
    }

    /// Every job's image, in parallel.
    fn images(&self, jobs: &[Job]) -> Vec<(Vec<u8>, Label)> {
        jobs.par_iter().map(|j| self.image(j)).collect()
    }
}

/// The unchanged image, the sham, and each of `tried` single interventions, in that order.
fn singles(row: usize, tried: usize) -> Vec<Job> {
    let mut jobs = vec![Job { row, kind: JobKind::Identity }, Job { row, kind: JobKind::Sham }];
    jobs.extend((0..tried).map(|t| Job { row, kind: JobKind::Restore(t) }));
    jobs
}

/// Pairs of interventions for an image no single one fixes, at most `budget`: those whose subjects training is least
/// likely to show first, then those that helped most alone.
fn pairs(row: usize, singles: &[Outcome], typical: &[f64], budget: usize, higher: bool) -> Vec<Job> {
    let mut order: Vec<usize> = (0..singles.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (singles[a].score, singles[b].score);
        typical[a].total_cmp(&typical[b]).then(if higher { y.total_cmp(&x) } else { x.total_cmp(&y) }).then(a.cmp(&b))
    });
    let mut jobs = Vec::new();
    'all: for b in 1..order.len() {
        for a in 0..b {
            if jobs.len() == budget {
                break 'all;
            }
            let (s, t) = (order[a].min(order[b]), order[a].max(order[b]));
            jobs.push(Job { row, kind: JobKind::Pair(s, t) });
        }
    }
    jobs
}

#[derive(Clone, Copy)]
enum JobKind {
    Identity,
    Sham,
    /// Index into the tried parameters.
    Restore(usize),
    Pair(usize, usize),
}

/// Re-renders simulated failing images.
struct Renderer<'a> {
    sim: &'a dyn Simulator,
    task: &'a str,
    ds: &'a Dataset,
    images: &'a [Located<'a>],
    ids: &'a [String],
    seed: u64,
    restore: &'a Domain,
    tried: &'a [usize],
}

impl Renderer<'_> {
    /// The image's parameters and its random state right after they were drawn (what its render went on with), and
    /// the training vector its restorations take values from.
    fn start(&self, at: &Located<'_>) -> (Vec<f64>, ChaCha8Rng, Vec<f64>) {
        let mut rng = sim::image_rng(self.seed, at.split, at.index);
        let (_, values) = at.domain.draw(&mut rng);
        let (_, train) = self.restore.draw(&mut sim::image_rng(Purpose::Restore.seed(self.seed), at.split, at.index));
        (values, rng, train)
    }
}

impl Intervener for Renderer<'_> {
    /// How typical of the training split each tried parameter's value in the image is ([`Domain::typicality`]).
    fn typicality(&self, row: usize) -> Vec<f64> {
        let (values, _, _) = self.start(&self.images[row]);
        self.tried.iter().map(|&k| self.restore.typicality(k, values[k])).collect()
    }

    /// The image re-rendered: unchanged, with its incidental detail drawn afresh (the sham), or with one or two
    /// parameters restored to the training vector's values.
    fn image(&self, job: &Job) -> (Vec<u8>, Label) {
        let at = &self.images[job.row];
        let (mut values, mut rng, train) = self.start(at);
        match job.kind {
            JobKind::Identity => {}
            JobKind::Sham => rng = sim::image_rng(Purpose::Sham.seed(self.seed), at.split, at.index),
            JobKind::Restore(t) => values[self.tried[t]] = train[self.tried[t]],
            JobKind::Pair(s, t) => {
                values[self.tried[s]] = train[self.tried[s]];
                values[self.tried[t]] = train[self.tried[t]];
            }
        }
        let size = self.ds.meta.width;
        let sample = self.sim.render(self.task, &values, size as u32, &mut rng);
        let mut chw = Vec::with_capacity(size * size * self.ds.meta.channels);
        to_chw(&sample.rgb, size, self.ds.meta.channels, &mut chw);
        (chw, sample.label)
    }

    /// The unchanged re-render must be the stored image: a dataset simulated with another seed is refused.
    fn check(&self, row: usize, unchanged: &[u8]) -> Result<(), StageError> {
        if unchanged != self.ds.images(&[row])? {
            return Err(InterveneError::Mismatch { id: self.ids[row].clone(), seed: self.seed }.into());
        }
        Ok(())
    }

    fn scenario(&self, row: usize) -> Option<&str> {
        self.images[row].scenario.as_deref()
    }
}

/// A re-render's outcome.
struct Outcome {
    /// Its bytes (kept for the unchanged image only, to compare with the stored one).
    rendered: Vec<u8>,
    fixed: bool,
    score: f64,
}

/// Tests the model on re-rendered images.
struct Scorer<'a> {
    model: &'a Model,
    shape: [usize; 3],
    batch: usize,
    threshold: f64,
}

impl Scorer<'_> {
    fn higher_is_better(&self) -> bool {
        matches!(self.model.meta.target, Target::Classification { .. })
    }

    /// Tests the model on the jobs' renders, in batches.
    fn outcomes(&self, jobs: &[Job], rendered: Vec<(Vec<u8>, Label)>) -> Result<Vec<Outcome>, StageError> {
        let mut out = Vec::with_capacity(jobs.len());
        for (batch, chunk) in rendered.chunks(self.batch).zip(jobs.chunks(self.batch)) {
            let pixels: Vec<u8> = batch.iter().flat_map(|(p, _)| p.iter().copied()).collect();
            let truths: Vec<Truth<'_>> = batch.iter().map(|(_, label)| Truth::of(label)).collect();
            let predictions = predict_pixels(self.model, &pixels, self.shape, &truths, self.threshold)?;
            for (((pixels, _), prediction), job) in batch.iter().zip(predictions).zip(chunk) {
                let score = match &prediction {
                    Prediction::Class { expected, scores, .. } => f64::from(scores[*expected]),
                    Prediction::Keypoints { errors, .. } => crate::model::predict::mean(errors),
                };
                let keep = matches!(job.kind, JobKind::Identity);
                out.push(Outcome {
                    rendered: if keep { pixels.clone() } else { Vec::new() },
                    fixed: prediction.correct(),
                    score,
                });
            }
        }
        Ok(out)
    }
}

/// The parameters an intervention moved, as tables name it.
fn intervention_name(kind: JobKind, names: &[String]) -> String {
    match kind {
        JobKind::Identity => "identity".into(),
        JobKind::Sham => "sham".into(),
        JobKind::Restore(t) => names[t].clone(),
        JobKind::Pair(s, t) => format!("{}+{}", names[s], names[t]),
    }
}

/// How typical of training the values an intervention moved were: the less typical of a pair's two; 1 for the sham.
fn moved_typicality(kind: JobKind, typical: &[f64]) -> f64 {
    match kind {
        JobKind::Identity | JobKind::Sham => 1.0,
        JobKind::Restore(t) => typical[t],
        JobKind::Pair(s, t) => typical[s].max(typical[t]),
    }
}

fn row(id: &str, job: &Job, outcome: &Outcome, names: &[String], typical: &[f64]) -> InterventionRow {
    let kind = match job.kind {
        JobKind::Identity | JobKind::Sham => Kind::Sham,
        JobKind::Restore(_) => Kind::Restore,
        JobKind::Pair(..) => Kind::Pair,
    };
    InterventionRow {
        image: id.to_string(),
        kind,
        intervention: intervention_name(job.kind, names),
        typicality: moved_typicality(job.kind, typical),
        fixed: outcome.fixed,
        score: outcome.score,
    }
}

/// What one image's verdict is made from: its unchanged re-render, sham and single restorations (in that order), its
/// pairs, how typical of training each tried parameter's value was, and which way scores improve.
struct Judged<'a> {
    singles: &'a [Outcome],
    pairs: &'a [(&'a Job, &'a Outcome)],
    typical: &'a [f64],
    higher: bool,
}

/// One image's verdict. Its cause, of the restorations that fix it (else the pairs), is the one whose value training
/// was least likely to show (the drift), on a tie the one that helps most: a restoration of a value training sees
/// often that also fixes the image (glasses taken off a face in the dark) is a remedy, not what went wrong.
fn verdict(id: &str, scenario: Option<&str>, judged: &Judged<'_>, names: &[String]) -> ImageVerdict {
    let Judged { singles, pairs, typical, higher } = *judged;
    let fails_again = !singles[0].fixed;
    let restorations = &singles[2..];
    let fixed_by: Vec<&str> =
        restorations.iter().zip(names).filter(|(o, _)| o.fixed).map(|(_, n)| n.as_str()).collect();
    let mut cause: Option<(JobKind, f64, f64)> = None;
    let candidates = restorations
        .iter()
        .enumerate()
        .map(|(t, o)| (JobKind::Restore(t), o))
        .chain(if fixed_by.is_empty() { pairs.iter().map(|(j, o)| (j.kind, *o)).collect() } else { Vec::new() });
    for (kind, o) in candidates.filter(|(_, o)| o.fixed) {
        let t = moved_typicality(kind, typical);
        let wins =
            cause.is_none_or(|(_, ct, cs)| t < ct || (t == ct && if higher { o.score > cs } else { o.score < cs }));
        if wins {
            cause = Some((kind, t, o.score));
        }
    }
    let cause = cause.map(|(kind, ..)| intervention_name(kind, names));
    ImageVerdict {
        image: id.to_string(),
        fails_again,
        sham_fixed: singles[1].fixed,
        fixed_by: fixed_by.join(";"),
        cause: if fails_again { cause.unwrap_or_default() } else { String::new() },
        scenario: scenario.unwrap_or_default().to_string(),
    }
}
