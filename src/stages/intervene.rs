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

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::artefact::clusters::Clusters;
use crate::artefact::interventions::{
    CauseRow, ClusterCause, ImageVerdict, InterventionRow, InterventionSummary, Kind, ScenarioNaming, Share,
};
use crate::artefact::rules::Rate;
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CAUSE_TESTS, CLUSTERS, IMAGE_CAUSES, INTERVENTION_SUMMARY, INTERVENTIONS, MODEL};
use crate::dataset::{Dataset, Label, Target, to_chw};
use crate::engine::diagnostic::did_you_mean;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::model::artefact::Model;
use crate::model::predict::{DEFAULT_THRESHOLD, Prediction, TestError, Truth, predict_pixels};
use crate::runtime::{self, DeviceChoice};
use crate::sim::{self, Domain, Simulator};
use crate::stats::{self, Correction};
use crate::trigger::{self, Purpose};

/// Why failing images cannot be intervened on: each names the split, parameter or image.
#[derive(Debug, thiserror::Error)]
pub enum InterveneError {
    #[error("the dataset declares no split `{split}` to restore values from (splits: {})", available.join(", "))]
    NoSplit { split: String, available: Vec<String> },
    #[error("simulator `{simulator}` has no parameter `{name}`{hint}")]
    UnknownParameter { simulator: &'static str, name: String, hint: String },
    #[error("`{name}` makes the label of task `{task}`: restoring it would change what the image shows, not fix it")]
    LabelParameter { name: String, task: String },
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
    /// The split whose declared distribution restored values are drawn from.
    #[serde(default = "default_restore_from")]
    pub restore_from: String,
    /// The parameters to restore (default: every parameter of the simulator but those the label is made from).
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
    const VERSION: u32 = 5;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot { name: "model", accepts: &[MODEL], many: false, required: true, doc: "the model that failed" },
        InputSlot {
            name: "images",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "its failing images (a test stage's errors), drawn by a simulate stage",
        },
        InputSlot {
            name: "clusters",
            accepts: &[CLUSTERS],
            many: true,
            required: false,
            doc: "clusterings of those images: each cluster gets its tested cause",
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
        let sim = trigger::renderer_of(&ds, "intervene")?;
        let input = [ds.meta.channels, ds.meta.height, ds.meta.width];
        TestError::check(&model.meta, &ds.meta)?;
        let restore = ds.meta.domains.get(&p.restore_from).ok_or_else(|| InterveneError::NoSplit {
            split: p.restore_from.clone(),
            available: ds.meta.domains.keys().cloned().collect(),
        })?;
        let tried = tried_parameters(sim, &ds.meta.task, &p.parameters)?;
        let names: Vec<String> = tried.iter().map(|&k| sim.params()[k].name.to_string()).collect();
        let images = locate(&ds)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(p.threads.unwrap_or(ctx.threads).max(1))
            .build()
            .map_err(|e| StageError::failed(format!("a pool of threads: {e}")))?;
        let renderer = Renderer { sim, task: &ds.meta.task, ds: &ds, seed: ctx.seed, restore, tried: &tried };
        let scorer = Scorer { model: &model, shape: input, batch: p.batch_size, threshold: p.threshold };

        let ids = ds.ids()?;
        let mut rows = Vec::new();
        let mut verdicts = Vec::new();
        ctx.progress.start(images.len() as u64, "failing images re-rendered");
        for chunk in (0..images.len()).collect::<Vec<_>>().chunks(CHUNK) {
            let singles: Vec<Job> = chunk.iter().flat_map(|&r| renderer.singles(r, &images[r])).collect();
            let typical: Vec<Vec<f64>> = chunk.iter().map(|&r| renderer.typicality(&images[r])).collect();
            let outcomes = scorer.outcomes(&singles, pool.install(|| renderer.render_all(&singles)))?;
            let per_image = 2 + tried.len();
            let mut pairs = Vec::new();
            for (c, &r) in chunk.iter().enumerate() {
                let o = &outcomes[c * per_image..(c + 1) * per_image];
                if o[0].rendered != ds.images(&[r])? {
                    return Err(InterveneError::Mismatch { id: ids[r].clone(), seed: ctx.seed }.into());
                }
                if !o[0].fixed && !o[2..].iter().any(|x| x.fixed) {
                    let typical = &typical[c];
                    pairs.extend(renderer.pairs(r, &images[r], &o[2..], typical, p.pairs, scorer.higher_is_better()));
                }
            }
            let pair_outcomes = scorer.outcomes(&pairs, pool.install(|| renderer.render_all(&pairs)))?;
            for (c, &r) in chunk.iter().enumerate() {
                let o = &outcomes[c * per_image..(c + 1) * per_image];
                let mine: Vec<(&Job, &Outcome)> =
                    pairs.iter().zip(&pair_outcomes).filter(|(j, _)| j.row == r).collect();
                let typical = &typical[c];
                let judged = Judged { singles: o, pairs: &mine, typical, higher: scorer.higher_is_better() };
                verdicts.push(verdict(&ids[r], &images[r], &judged, &names));
                for (j, x) in singles[c * per_image + 1..(c + 1) * per_image].iter().zip(&o[1..]) {
                    rows.push(row(&ids[r], j, x, &names, typical));
                }
                for (j, x) in &mine {
                    rows.push(row(&ids[r], j, x, &names, typical));
                }
            }
            ctx.progress.inc(chunk.len() as u64);
        }

        let mut causes = Vec::new();
        let mut clusters = Vec::new();
        for input in ctx.inputs("clusters") {
            let groups = Clusters::open(&input.path).groups()?;
            let (rows, best) = test_clusters(&input.stage, &groups, &verdicts, &names, p.alpha, p.correction);
            causes.extend(rows);
            clusters.extend(best);
        }
        let summary = summarise(p, &names, &verdicts, clusters, scenarios(&ds, &images, &verdicts));
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

/// Failing images re-rendered at once: bounds memory while keeping the batches full.
const CHUNK: usize = 64;

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

/// One re-render to make: of which image, what was moved, from which values and random state.
struct Job {
    row: usize,
    kind: JobKind,
    values: Vec<f64>,
    rng: ChaCha8Rng,
}

#[derive(Clone, Copy)]
enum JobKind {
    Identity,
    Sham,
    /// Index into the tried parameters.
    Restore(usize),
    Pair(usize, usize),
}

/// Makes the re-renders of failing images.
struct Renderer<'a> {
    sim: &'a dyn Simulator,
    task: &'a str,
    ds: &'a Dataset,
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

    /// How typical of the training split each tried parameter's value in the image is ([`Domain::typicality`]): 0
    /// where training never draws it.
    fn typicality(&self, at: &Located<'_>) -> Vec<f64> {
        let (values, _, _) = self.start(at);
        self.tried.iter().map(|&k| self.restore.typicality(k, values[k])).collect()
    }

    /// The image unchanged, the sham, and each single restoration, in that order.
    fn singles(&self, row: usize, at: &Located<'_>) -> Vec<Job> {
        let (values, rng, train) = self.start(at);
        let sham = sim::image_rng(Purpose::Sham.seed(self.seed), at.split, at.index);
        let mut jobs = vec![
            Job { row, kind: JobKind::Identity, values: values.clone(), rng: rng.clone() },
            Job { row, kind: JobKind::Sham, values: values.clone(), rng: sham },
        ];
        for (t, &k) in self.tried.iter().enumerate() {
            let mut v = values.clone();
            v[k] = train[k];
            jobs.push(Job { row, kind: JobKind::Restore(t), values: v, rng: rng.clone() });
        }
        jobs
    }

    /// Pairs of restorations for an image no single one fixes, at most `budget`: the parameters whose values
    /// training is least likely to show first, then those whose restoration helped most.
    fn pairs(
        &self,
        row: usize,
        at: &Located<'_>,
        singles: &[Outcome],
        typical: &[f64],
        budget: usize,
        higher: bool,
    ) -> Vec<Job> {
        let (values, rng, train) = self.start(at);
        let mut order: Vec<usize> = (0..singles.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (singles[a].score, singles[b].score);
            typical[a]
                .total_cmp(&typical[b])
                .then(if higher { y.total_cmp(&x) } else { x.total_cmp(&y) })
                .then(a.cmp(&b))
        });
        let mut jobs = Vec::new();
        'all: for b in 1..order.len() {
            for a in 0..b {
                if jobs.len() == budget {
                    break 'all;
                }
                let (s, t) = (order[a].min(order[b]), order[a].max(order[b]));
                let mut v = values.clone();
                v[self.tried[s]] = train[self.tried[s]];
                v[self.tried[t]] = train[self.tried[t]];
                jobs.push(Job { row, kind: JobKind::Pair(s, t), values: v, rng: rng.clone() });
            }
        }
        jobs
    }

    /// Every job's image, in parallel (each from its own random state, so the threads change no byte).
    fn render_all(&self, jobs: &[Job]) -> Vec<(Vec<u8>, Label)> {
        jobs.par_iter().map(|j| self.render(j)).collect()
    }

    /// A job's image, as the dataset stores images (C×H×W bytes).
    fn render(&self, job: &Job) -> (Vec<u8>, Label) {
        let size = self.ds.meta.width;
        let sample = self.sim.render(self.task, &job.values, size as u32, &mut job.rng.clone());
        let mut chw = Vec::with_capacity(size * size * self.ds.meta.channels);
        to_chw(&sample.rgb, size, self.ds.meta.channels, &mut chw);
        (chw, sample.label)
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
fn verdict(id: &str, at: &Located<'_>, judged: &Judged<'_>, names: &[String]) -> ImageVerdict {
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
        scenario: at.scenario.clone().unwrap_or_default(),
    }
}

/// Whether an intervention fixes an image: a parameter, when restoring it alone does; a pair `a+b`, when restoring
/// both does and neither alone (it is then the image's cause: a co-occurrence, not two causes of which either fixes).
fn fixes(v: &ImageVerdict, intervention: &str) -> bool {
    if intervention.contains('+') { v.cause == intervention } else { v.fixed_by.split(';').any(|s| s == intervention) }
}

/// Every cluster of one clustering against the sham: one row per cluster and intervention (every single restoration,
/// and each pair that is some member's cause), the correction over all of them, and each cluster's tested cause.
fn test_clusters(
    clustering: &str,
    groups: &BTreeMap<usize, Vec<String>>,
    verdicts: &[ImageVerdict],
    names: &[String],
    alpha: f64,
    correction: Correction,
) -> (Vec<CauseRow>, Vec<ClusterCause>) {
    let by_id: BTreeMap<&str, &ImageVerdict> = verdicts.iter().map(|v| (v.image.as_str(), v)).collect();
    let mut rows = Vec::new();
    for (&cluster, members) in groups {
        let assessed: Vec<&ImageVerdict> =
            members.iter().filter_map(|m| by_id.get(m.as_str()).copied()).filter(|v| v.fails_again).collect();
        let n = assessed.len();
        let sham = assessed.iter().filter(|v| v.sham_fixed).count();
        let pairs: BTreeSet<&str> = assessed.iter().map(|v| v.cause.as_str()).filter(|c| c.contains('+')).collect();
        for intervention in names.iter().map(String::as_str).chain(pairs) {
            let fixed: Vec<bool> = assessed.iter().map(|v| fixes(v, intervention)).collect();
            let k = fixed.iter().filter(|f| **f).count();
            let only_intervention = assessed.iter().zip(&fixed).filter(|(v, f)| **f && !v.sham_fixed).count();
            let only_sham = assessed.iter().zip(&fixed).filter(|(v, f)| !**f && v.sham_fixed).count();
            let rate = Rate::of(k, n, alpha);
            rows.push(CauseRow {
                clustering: clustering.to_string(),
                cluster,
                images: n,
                intervention: intervention.to_string(),
                named: assessed.iter().filter(|v| v.cause == intervention).count(),
                fixed: k,
                share: rate.rate,
                lo: rate.lo,
                hi: rate.hi,
                sham_fixed: sham,
                sham_share: sham as f64 / n.max(1) as f64,
                only_intervention,
                only_sham,
                p: stats::mcnemar_greater(only_intervention, only_sham),
                p_adjusted: 1.0,
                significant: false,
            });
        }
    }
    // A test on n discordant images cannot go below 2^-n: Tarone's tests that could never be rejected take no share
    // of α; the correction runs over the others.
    let min_p: Vec<f64> = rows.iter().map(|r| 0.5f64.powi((r.only_intervention + r.only_sham) as i32)).collect();
    let p: Vec<f64> = rows.iter().map(|r| r.p).collect();
    for (r, q) in rows.iter_mut().zip(stats::adjust_discrete(&p, &min_p, alpha, correction)) {
        r.p_adjusted = q;
        r.significant = q <= alpha;
    }
    let mut best = Vec::new();
    for &cluster in groups.keys() {
        let mine: Vec<&CauseRow> = rows.iter().filter(|r| r.cluster == cluster).collect();
        let Some(first) = mine.first() else { continue };
        // Every intervention that beats the sham, those that are most members' own cause first (the drift, not a
        // remedy that also fixes), then those that fix most, singles before pairs on a tie; shown: the first of
        // them, else the one that fixes most.
        let mut ranked = mine.clone();
        ranked.sort_by_key(|r| (std::cmp::Reverse(r.named), std::cmp::Reverse(r.fixed)));
        let causes: Vec<String> = ranked.iter().filter(|r| r.significant).map(|r| r.intervention.clone()).collect();
        let shown = ranked.iter().find(|r| r.significant).or(ranked.first()).unwrap_or(first);
        best.push(ClusterCause {
            clustering: clustering.to_string(),
            cluster,
            images: first.images,
            causes,
            best: shown.intervention.clone(),
            fixed: Rate::of(shown.fixed, shown.images, alpha),
            sham: Rate::of(shown.sham_fixed, shown.images, alpha),
            p_adjusted: shown.p_adjusted,
        });
    }
    (rows, best)
}

/// Per planted scenario of a mixture split: its assessed failures and how many have what was planted as their cause.
fn scenarios(ds: &Dataset, images: &[Located<'_>], verdicts: &[ImageVerdict]) -> Vec<ScenarioNaming> {
    let mut out: BTreeMap<String, ScenarioNaming> = BTreeMap::new();
    for (at, v) in images.iter().zip(verdicts) {
        let Some(name) = &at.scenario else { continue };
        let Some(scenario) = at.domain.scenarios.iter().find(|s| &s.name == name) else { continue };
        let planted: Vec<String> = (scenario.dists.0.iter().zip(&at.domain.dists.0))
            .zip(ds.meta.params.iter())
            .filter(|((a, b), _)| a != b)
            .map(|(_, info)| info.name.clone())
            .collect();
        if planted.is_empty() || !v.fails_again {
            continue;
        }
        let entry = out.entry(name.clone()).or_insert_with(|| ScenarioNaming {
            scenario: name.clone(),
            planted: planted.clone(),
            images: 0,
            named: 0,
            exactly: 0,
        });
        entry.images += 1;
        let parts: BTreeSet<&str> = v.cause.split('+').filter(|s| !s.is_empty()).collect();
        if !parts.is_empty() && parts.iter().all(|p| planted.iter().any(|q| q == p)) {
            entry.named += 1;
            if parts.len() == planted.len() {
                entry.exactly += 1;
            }
        }
    }
    out.into_values().collect()
}

fn summarise(
    p: &InterveneParams,
    names: &[String],
    verdicts: &[ImageVerdict],
    clusters: Vec<ClusterCause>,
    scenarios: Vec<ScenarioNaming>,
) -> InterventionSummary {
    let assessed: Vec<&ImageVerdict> = verdicts.iter().filter(|v| v.fails_again).collect();
    let n = assessed.len();
    let count = |f: &dyn Fn(&ImageVerdict) -> bool| assessed.iter().filter(|v| f(v)).count();
    InterventionSummary {
        restore_from: p.restore_from.clone(),
        parameters: names.to_vec(),
        pairs: p.pairs,
        images: verdicts.len(),
        assessed: n,
        sham: Rate::of(count(&|v| v.sham_fixed), n, p.alpha),
        restorations: names
            .iter()
            .map(|name| Share { intervention: name.clone(), fixed: Rate::of(count(&|v| fixes(v, name)), n, p.alpha) })
            .collect(),
        by_single: count(&|v| !v.fixed_by.is_empty()),
        by_pair: count(&|v| v.fixed_by.is_empty() && !v.cause.is_empty()),
        unexplained: count(&|v| v.cause.is_empty()),
        alpha: p.alpha,
        correction: p.correction,
        clusters,
        scenarios,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(cause: &str, fixed_by: &str, sham: bool) -> ImageVerdict {
        ImageVerdict {
            image: format!("test-{cause}-{fixed_by}-{sham}"),
            fails_again: true,
            sham_fixed: sham,
            fixed_by: fixed_by.into(),
            cause: cause.into(),
            scenario: String::new(),
        }
    }

    #[test]
    fn a_pair_fixes_only_when_neither_half_fixes_alone() {
        assert!(fixes(&v("night+fog", "", false), "night+fog"));
        assert!(!fixes(&v("night", "night;yaw", false), "night+fog"));
        assert!(!fixes(&v("yaw", "yaw", false), "night+fog"));
        assert!(fixes(&v("yaw", "night;yaw", false), "night"));
        assert!(!fixes(&v("night+fog", "", false), "night"));
    }

    #[test]
    fn a_cluster_is_caused_only_by_what_beats_the_sham_after_the_correction() {
        // Cluster 1: `night` fixes 9 of 10, the sham 1; cluster 2: `fog` fixes 3 of 10 and the sham 3 as well.
        let mut verdicts = Vec::new();
        let mut groups = BTreeMap::new();
        for i in 0..10 {
            let mut a = v("night", "night", i == 0);
            a.image = format!("a{i}");
            if i == 9 {
                a.fixed_by.clear();
                a.cause.clear();
            }
            let mut b = v(if i < 3 { "fog" } else { "" }, if i < 3 { "fog" } else { "" }, i >= 7);
            b.image = format!("b{i}");
            groups.entry(1).or_insert_with(Vec::new).push(a.image.clone());
            groups.entry(2).or_insert_with(Vec::new).push(b.image.clone());
            verdicts.extend([a, b]);
        }
        let names = vec!["night".to_string(), "fog".to_string()];
        let (rows, best) = test_clusters("cluster", &groups, &verdicts, &names, 0.05, Correction::Holm);
        assert_eq!(rows.len(), 4);
        let night = rows.iter().find(|r| r.cluster == 1 && r.intervention == "night").unwrap();
        // 9 fixed, the sham 1 (an image night also fixes): 8 discordant for night, 0 for the sham; p = 2^-8.
        assert_eq!((night.fixed, night.sham_fixed, night.only_intervention, night.only_sham), (9, 1, 8, 0));
        assert!((night.p - 1.0 / 256.0).abs() < 1e-12, "{}", night.p);
        // Tarone: of the four tests only two could reach 0.05 / 2 (night in cluster 1 on 8 discordant images, fog in
        // cluster 2 on 6); Holm over those two.
        assert!((night.p_adjusted - 2.0 / 256.0).abs() < 1e-12, "{}", night.p_adjusted);
        let untestable = rows.iter().find(|r| r.cluster == 2 && r.intervention == "night").unwrap();
        assert_eq!((untestable.only_intervention, untestable.only_sham, untestable.p_adjusted), (0, 3, 1.0));
        assert_eq!(best[0].causes, ["night"]);
        assert!(best[1].causes.is_empty());
        assert_eq!(best[1].best, "fog");
        assert_eq!((best[1].fixed.failures, best[1].sham.failures), (3, 3));
    }
}
