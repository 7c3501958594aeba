//! Stage `expand` (SEDE's idea, in-process): grow each root-cause cluster with generated images before rules are
//! learned from it. A seeded evolutionary search over simulator parameters starts from the members' parameters:
//! each generation mutates parents drawn from the members and the images found so far, renders the children, and
//! keeps those the model fails on whose heatmaps join the cluster under `select`'s rule (closest cluster, within the
//! cluster's own spread). Clusters of activations (a pretrained backbone's generic features, or the model's own)
//! are grown the same way, each failure measured by the features its cluster's members were (the stored features,
//! before any centring or principal components the clustering applied, as `select` measures candidates). Mutations
//! stay inside the clustered split's operational support by default (`search = "range"` ranges over each
//! parameter's full range instead; the images found outside the domain are then counted, `outside`, and `rules`
//! states no rule from them).

use std::collections::BTreeMap;

use polars::prelude::Column;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::artefact::clusters::{ClusterSummary, Clusters, MemberNotFound};
use crate::artefact::heatmaps::Heatmaps;
use crate::artefact::rules::ExpandRow;
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CLUSTERS, EXPANSION, FEATURES, HEATMAPS, MODEL, SELECTION};
use crate::cluster::members::Members;
use crate::dataset::{Dataset, ParamKind};
use crate::domain::{Domain, Support};
use crate::engine::progress::Progress;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::lrp::batch;
use crate::model::backbone::{self, Pool, pool};
use crate::model::predict::{DEFAULT_THRESHOLD, for_each_activation_batch, predict};
use crate::runtime::{self, DeviceChoice};
use crate::sim::{self, Simulator};
use crate::trigger::{self, Purpose};

pub struct Expand;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpandParams {
    /// Children per generation and cluster.
    #[serde(default = "default_population")]
    pub population: usize,
    #[serde(default = "default_generations")]
    pub generations: usize,
    /// A numeric parameter moves by a normal step of this share of the range searched (its operational support, or
    /// its whole range with `search = "range"`).
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    /// A categorical parameter takes a random value with this chance.
    #[serde(default = "default_flip")]
    pub flip: f64,
    /// Keypoint models: an image fails when its mean keypoint error exceeds this many pixels (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub device: DeviceChoice,
    /// libtorch threads for this stage (default: the run's share of the cores); not part of its key.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Where children may go: `domain` (default) keeps every parameter inside the clustered split's operational
    /// support; `range` searches each parameter's whole range, and the images found outside the domain are counted.
    #[serde(default)]
    pub search: Search,
    #[serde(default)]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Search {
    #[default]
    Domain,
    Range,
}

fn default_population() -> usize {
    32
}
fn default_generations() -> usize {
    4
}
fn default_sigma() -> f64 {
    0.1
}
fn default_flip() -> f64 {
    0.2
}
fn default_batch() -> usize {
    64
}

impl Params for ExpandParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.population == 0 {
            out.push(Invalid::new("population", "must be at least 1, got 0"));
        }
        if !(self.sigma > 0.0 && self.sigma <= 1.0) {
            out.push(Invalid::new("sigma", format!("must be in (0, 1], got {}", self.sigma)));
        }
        if !(0.0..=1.0).contains(&self.flip) {
            out.push(Invalid::new("flip", format!("must be in [0, 1], got {}", self.flip)));
        }
        if self.batch_size == 0 {
            out.push(Invalid::new("batch_size", "must be at least 1, got 0"));
        }
        out
    }
}

/// A child of `parent`: numbers moved by a normal step of `sigma` of the range searched, the operational domain's
/// support when there is one (else the parameter's range), and reflected back into it at its ends (angles that go
/// all the way round in it wrap), so that no value piles up at a bound; categories redrawn with chance `flip` among
/// those the domain gives; the label's own parameters are kept.
fn mutate(
    sim: &dyn Simulator,
    task: &str,
    domain: Option<&Domain>,
    parent: &[f64],
    p: &ExpandParams,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    let label = sim.label_params(task);
    sim.params()
        .iter()
        .enumerate()
        .zip(parent)
        .map(|((k, spec), &v)| {
            if label.contains(&spec.name) {
                return v;
            }
            let support = domain.map(|d| d.support(k));
            match spec.kind {
                ParamKind::Real { min, max, .. } | ParamKind::Angle { min, max } | ParamKind::Axial { min, max } => {
                    let (lo, hi) = match support {
                        Some(Support::Numbers { min, max }) => (min, max),
                        _ => (min, max),
                    };
                    let step = sim::standard_normal(rng) * p.sigma * (hi - lo);
                    match spec.kind.period().filter(|period| hi - lo >= *period) {
                        Some(period) => (v + step - min).rem_euclid(period) + min,
                        None => reflect(v + step, lo, hi),
                    }
                }
                ParamKind::Categorical(_) | ParamKind::Bool => {
                    let all: Vec<usize> = (0..spec.kind.categories().map_or(1, |c| c.len())).collect();
                    let choices = match support {
                        Some(Support::Categories(c)) if !c.is_empty() => c,
                        _ => all,
                    };
                    if rng.random_bool(p.flip) { choices[rng.random_range(0..choices.len())] as f64 } else { v }
                }
            }
        })
        .collect()
}

/// `x` folded into `[lo, hi]` by reflection at both ends (a point mass of one value when `lo == hi`).
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let width = hi - lo;
    if width <= 0.0 {
        return lo;
    }
    let y = (x - lo).rem_euclid(2.0 * width);
    lo + if y > width { 2.0 * width - y } else { y }
}

impl Stage for Expand {
    type Params = ExpandParams;
    const KIND: &'static str = "expand";
    // Clusters of activations are grown since issue 51; a relevance cluster's bytes are what they were at 4.
    const VERSION: u32 = 4;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "clusters",
            accepts: &[CLUSTERS],
            many: false,
            required: true,
            doc: "a cluster stage's output",
        },
        InputSlot {
            name: "heatmaps",
            accepts: &[HEATMAPS, FEATURES],
            many: false,
            required: true,
            doc: "the heatmaps (or activations) the clusters were made from",
        },
        InputSlot { name: "model", accepts: &[MODEL], many: false, required: true, doc: "the model under analysis" },
        InputSlot {
            name: "dataset",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the simulated dataset holding the clustered images, with their parameters",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec {
            name: "expanded",
            kind: SELECTION,
            path: "expanded/",
            doc: "the images found, as a dataset (columns rcc, rcc_distance; split expanded)",
        },
        OutputSpec {
            name: "summary",
            kind: EXPANSION,
            path: "expand.csv",
            doc: "cluster,members,spread,simulated,failing,joined,outside",
        },
    ];
    const USES_SEED: bool = true;
    // Backed by tests/it/engine.rs (the quickstart shrunk, run at 1 and 2 threads): inference and simulation give
    // the same bytes at any thread count.
    const SETTINGS: &'static [&'static str] = &["threads"];
    const DOC: &'static str = "Grows each root-cause cluster with generated images the model fails on alike.";

    /// The device kind this resolves to enters the key: a GPU computes other bytes.
    fn fingerprints(p: &ExpandParams) -> Vec<(String, String)> {
        vec![crate::runtime::device_fingerprint(p.device)]
    }

    fn torch_threads(p: &ExpandParams, run: usize) -> usize {
        p.threads.unwrap_or(run)
    }

    fn run(&self, p: &ExpandParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let device = runtime::device(p.device)?;
        let ds = Dataset::open(&ctx.input("dataset")?.path)?;
        let sim = trigger::renderer_of(&ds, "expand")?;
        let cdir = ctx.input("clusters")?.path.clone();
        let hdir = ctx.input("heatmaps")?.path.clone();
        let summary: ClusterSummary = Clusters::open(&cdir).summary()?;
        let dir = ctx.output("expanded")?;
        let mut found = Found {
            writer: trigger::image_writer(&dir, &ds, sim, "expand", Vec::new())?,
            rcc: Vec::new(),
            rcc_distance: Vec::new(),
        };
        let mut rows = Vec::<ExpandRow>::new();
        let Some(layer) = summary.layer.clone() else {
            found.finish()?;
            return Ok(table::write(&ctx.output("summary")?, &rows)?);
        };
        // The members (clusters of one image left out, as in select) with their heatmaps and parameters.
        let heatmaps = Heatmaps::open(&hdir);
        let index: BTreeMap<String, usize> = heatmaps.ids()?.into_iter().enumerate().map(|(i, id)| (id, i)).collect();
        let row_of: BTreeMap<String, usize> = ds.ids()?.into_iter().enumerate().map(|(i, id)| (id, i)).collect();
        let clusters: Vec<(usize, Vec<String>)> =
            Clusters::open(&cdir).groups()?.into_iter().filter(|(_, m)| m.len() > 1).collect();
        let lookup = |map: &BTreeMap<String, usize>, id: &str, within: &std::path::Path| {
            map.get(id).copied().ok_or_else(|| MemberNotFound {
                members: Clusters::open(&cdir).members_path(),
                row: None,
                image: id.to_string(),
                within: within.to_path_buf(),
            })
        };
        let mut groups = Vec::new();
        for (_, ids) in &clusters {
            groups.push(ids.iter().map(|id| lookup(&index, id, &hdir)).collect::<Result<Vec<_>, _>>()?);
        }
        let members = Members::load(&heatmaps.layer_path(&layer), &groups)?;
        let spreads = members.spreads();
        let model = batch::prepare(&ctx.input("model")?.path, device, &ds, p.batch_size, "expand (LRP)")?;
        let measure = if heatmaps.are_activations()? {
            let own = tch::get_num_threads().max(1) as usize;
            let (net, pool, threads) =
                match backbone::made_by(ctx.producer("heatmaps")).map_err(StageError::artefact)? {
                    Some((b, pool)) => (b.load(ctx.workspace, device, ds.meta.channels)?, pool, backbone::THREADS),
                    None => (crate::model::artefact::Model::load(&ctx.input("model")?.path, device)?, Pool::None, own),
                };
            let layer = net.net("expand")?.layer_index(&layer).ok_or_else(|| {
                StageError::input(format!(
                    "the clusters were made at layer `{layer}`, which the activations' network does not have"
                ))
            })?;
            Measure::Features { net: Box::new(net), layer, pool, threads }
        } else {
            let (rules, layer) = heatmaps.rules_for(model.net("LRP")?, &layer)?;
            Measure::Relevance { rules, layer, seed_with: heatmaps.seed()? }
        };
        let scratch = tempfile::tempdir().map_err(|e| StageError::io(std::env::temp_dir(), e))?;
        let search = Generations {
            model: &model,
            measure: &measure,
            members: &members,
            ds: &ds,
            sim,
            render_seed: Purpose::Expand.seed(ctx.seed),
            scratch: scratch.path(),
            batch_size: p.batch_size,
            threshold: p.threshold.unwrap_or(DEFAULT_THRESHOLD),
        };
        // The search may leave the operational domain (the clustered split's declared distribution); the images it
        // finds there are counted, and `rules` never learns from them.
        let splits = ds.strings("split")?;
        ctx.progress.start((clusters.len() * p.generations * p.population) as u64, "images searched");
        for (c, (cluster, ids)) in clusters.iter().enumerate() {
            let member_rows: Vec<usize> =
                ids.iter().map(|id| lookup(&row_of, id, &ds.dir)).collect::<Result<_, _>>()?;
            let domain = member_rows.first().and_then(|&r| ds.meta.domains.get(&splits[r]));
            let pool = trigger::vectors(&ds, sim, &member_rows)?;
            let mut row = search.cluster(p, ctx, (c, *cluster), spreads[c], pool, domain, &mut found)?;
            row.members = ids.len();
            rows.push(row);
        }
        found.finish()?;
        ctx.progress.message(&format!(
            "{} images joined their clusters of {} simulated",
            rows.iter().map(|r| r.joined).sum::<usize>(),
            rows.iter().map(|r| r.simulated).sum::<usize>()
        ));
        Ok(table::write(&ctx.output("summary")?, &rows)?)
    }
}

/// The images that joined a cluster, written as they join, with the cluster each joined and its distance to it.
struct Found {
    writer: crate::dataset::DatasetWriter,
    rcc: Vec<u32>,
    rcc_distance: Vec<f64>,
}

impl Found {
    fn finish(self) -> Result<(), StageError> {
        let columns = vec![Column::new("rcc".into(), self.rcc), Column::new("rcc_distance".into(), self.rcc_distance)];
        self.writer.finish_with(columns)?;
        Ok(())
    }
}

/// How a generated failure is measured against the clusters: as their members were.
enum Measure {
    /// Its relevance at the clusters' layer (by index), seeded as the members' was.
    Relevance { rules: Vec<crate::lrp::Rule>, layer: usize, seed_with: batch::Seed },
    /// Its activations at the clusters' layer (by index) of the network that made the members' (the model under
    /// analysis or a pretrained backbone), pooled as theirs were, on `threads` libtorch threads
    /// ([`backbone::THREADS`] for a backbone).
    Features { net: Box<crate::model::artefact::Model>, layer: usize, pool: Pool, threads: usize },
}

/// What every generation of the search is rendered, tested and measured with.
struct Generations<'a> {
    model: &'a crate::model::artefact::Model,
    measure: &'a Measure,
    members: &'a Members,
    ds: &'a Dataset,
    sim: &'static dyn Simulator,
    render_seed: u64,
    scratch: &'a std::path::Path,
    batch_size: usize,
    threshold: f64,
}

/// A generation rendered and tested: the rendered samples, the children the model gets wrong, and each wrong
/// child's heatmap distance to every cluster.
struct Tried {
    samples: Vec<sim::Sample>,
    wrong: Vec<usize>,
    distances: Vec<Vec<f64>>,
}

impl Generations<'_> {
    /// Searches around cluster `(c, cluster)` (its index and id) for `p.generations` generations, from its members'
    /// parameter vectors `pool`: a failure joins when it is closer to the cluster than to any other and within the
    /// cluster's `spread`; what joins is written to `found` and breeds. `members` of the row is left to the caller.
    #[allow(clippy::too_many_arguments)] // the search's state, passed as it is
    fn cluster(
        &self,
        p: &ExpandParams,
        ctx: &StageContext<'_>,
        (c, cluster): (usize, usize),
        spread: f64,
        mut pool: Vec<Vec<f64>>,
        domain: Option<&Domain>,
        found: &mut Found,
    ) -> Result<ExpandRow, StageError> {
        let within = if p.search == Search::Domain { domain } else { None };
        let mut rng = Purpose::Expand.rng(ctx.seed, cluster);
        let mut row = ExpandRow { cluster, members: 0, spread, simulated: 0, failing: 0, joined: 0, outside: 0 };
        for g in 0..p.generations {
            let children: Vec<Vec<f64>> = (0..p.population)
                .map(|_| {
                    let parent = pool[rng.random_range(0..pool.len())].clone();
                    mutate(self.sim, &self.ds.meta.task, within, &parent, p, &mut rng)
                })
                .collect();
            let tried = self.generation(cluster, g, &children)?;
            row.simulated += children.len();
            row.failing += tried.wrong.len();
            for (&i, d) in tried.wrong.iter().zip(&tried.distances) {
                let closest = (0..d.len()).fold(0, |b, x| if d[x] < d[b] { x } else { b });
                if closest == c && d[c] <= spread {
                    row.joined += 1;
                    row.outside += usize::from(domain.is_some_and(|d| !d.contains(&children[i])));
                    let id = format!("expanded-{cluster}-{g}-{i:04}");
                    let sample = &tried.samples[i];
                    found.writer.push(id, "expanded", &sample.rgb, sample.label.clone(), children[i].clone())?;
                    found.rcc.push(cluster as u32);
                    found.rcc_distance.push(d[c]);
                    pool.push(children[i].clone());
                }
            }
            ctx.progress.inc(children.len() as u64);
        }
        Ok(row)
    }

    /// Renders generation `g` of `cluster`'s search as a dataset, tests it, and measures the failures to the
    /// clusters as the members were (heatmaps seeded alike, or activations). Its predictions report no progress of
    /// their own: the search's "images searched" counts them.
    fn generation(&self, cluster: usize, g: usize, children: &[Vec<f64>]) -> Result<Tried, StageError> {
        let task = &self.ds.meta.task;
        let size = self.ds.meta.width as u32;
        let gen_dir = self.scratch.join(format!("{cluster}-{g}"));
        let mut writer = trigger::image_writer(&gen_dir, self.ds, self.sim, "expand", Vec::new())?;
        let mut samples = Vec::new();
        for (i, v) in children.iter().enumerate() {
            let stream = ((cluster as u64) << 16) | g as u64;
            let sample = self.sim.render(task, v, size, &mut sim::image_rng(self.render_seed, stream, i as u64));
            writer.push(format!("{i}"), "expanded", &sample.rgb, sample.label.clone(), v.clone())?;
            samples.push(sample);
        }
        writer.finish()?;
        let generation = Dataset::open(&gen_dir)?;
        let all: Vec<usize> = (0..children.len()).collect();
        let quiet = Progress::hidden();
        let predictions = predict(self.model, &generation, &all, self.batch_size, self.threshold, &quiet)?;
        let wrong: Vec<usize> = all.iter().copied().filter(|&i| !predictions[i].correct()).collect();
        let mut distances = Vec::new();
        match self.measure {
            Measure::Relevance { rules, layer, seed_with } => {
                batch::for_each_batch(
                    self.model,
                    &generation,
                    &wrong,
                    rules,
                    *seed_with,
                    self.batch_size,
                    |_, _, relevance| {
                        distances.extend(self.members.nearest(&relevance[*layer]));
                        Ok::<(), StageError>(())
                    },
                )?;
            }
            Measure::Features { net, layer, pool: how, threads } => {
                runtime::with_threads(*threads, || {
                    for_each_activation_batch(net, &generation, &wrong, self.batch_size, &[*layer], |_, acts| {
                        distances.extend(self.members.nearest(&pool(acts[0].shallow_clone(), *how)));
                        Ok::<(), StageError>(())
                    })
                })?;
            }
        }
        Ok(Tried { samples, wrong, distances })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::SeedableRng;

    use super::*;
    use crate::domain::Distributions;

    #[test]
    fn reflection_folds_a_value_back_from_either_end() {
        assert_eq!(reflect(1.2, 0.0, 1.0), 0.8);
        assert_eq!(reflect(-0.25, 0.0, 1.0), 0.25);
        assert_eq!(reflect(2.5, 0.0, 1.0), 0.5);
        assert_eq!(reflect(0.4, 0.0, 1.0), 0.4);
        assert_eq!(reflect(7.0, 3.0, 3.0), 3.0);
    }

    /// The quickstart's defect: `motion_blur` ranges 0–12 pixels but the split draws it from U(0, 1); a clamped step
    /// of a tenth of the full range put most children of a parent near 1 exactly at 1, and the rules learned
    /// "motion_blur 1.00–1.00" from that pile.
    #[test]
    fn children_spread_over_a_narrow_support_without_piling_at_its_end() {
        let sim = crate::sim::simulator("signs").unwrap();
        let dists = Distributions::new(sim, &BTreeMap::new(), "params").unwrap();
        let domain = Domain::plain(dists);
        let k = sim.params().iter().position(|p| p.name == "motion_blur").unwrap();
        let mut parent = domain.draw(&mut ChaCha8Rng::seed_from_u64(1)).1;
        parent[k] = 0.999;
        let p: ExpandParams = toml::from_str("").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let values: Vec<f64> =
            (0..2000).map(|_| mutate(sim, "classify", Some(&domain), &parent, &p, &mut rng)[k]).collect();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)), "every child inside the support");
        let at_end = values.iter().filter(|&&v| v >= 0.999).count();
        assert!(at_end < 40, "{at_end} of 2000 children at or beyond the parent's value next to the support's end");
        let near: Vec<f64> = values.iter().copied().filter(|v| (v - 0.999).abs() > 1e-12).collect();
        let spread = (near.iter().map(|v| (v - 0.999).powi(2)).sum::<f64>() / near.len() as f64).sqrt();
        assert!((0.05..0.2).contains(&spread), "steps of a tenth of the support's width, got {spread:.3}");
    }
}
