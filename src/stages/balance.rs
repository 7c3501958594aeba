//! Stage `balance` (HUDD Step 6): bootstrap resampling of the labelled unsafe set so that every root-cause cluster
//! contributes the same number of images to retraining.

use rand::SeedableRng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::artefact::clusters::Clusters;
use crate::artefact::selection::BalanceRow;
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, BALANCE_COUNTS, CLUSTERS, SELECTION};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};

/// Why a selection cannot be balanced: each names the data set or the parameter.
#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error(
        "{} has no `rcc` column: balance reads the images a select stage chose (select → label → balance)",
        dataset.display()
    )]
    NoClusterColumn { dataset: std::path::PathBuf },
    #[error("`target = \"largest-cluster\"` needs `clusters` (the cluster stage's output the selection came from)")]
    NoClusters,
}

impl From<BalanceError> for StageError {
    fn from(e: BalanceError) -> Self {
        StageError::artefact(e)
    }
}

pub struct Balance;

/// The sampling distribution inside a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Weighting {
    /// Every image equally likely.
    #[default]
    Uniform,
    /// In proportion to `1 / (distance to the cluster + δ)`, δ a thousandth of the cluster's mean distance
    /// (normalised into a proper distribution; the original's "p > r" rule was not one).
    Distance,
}

/// How many images every cluster is brought to, without `per_cluster` or `like`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TargetSize {
    /// As many as the cluster with the most selected images has.
    #[default]
    LargestSelection,
    /// The original's: as many as the largest root-cause cluster has members (needs the `clusters` input).
    LargestCluster,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceParams {
    /// Images per cluster (default: by `target`; with `like`, that set's size shared equally).
    #[serde(default)]
    pub per_cluster: Option<usize>,
    #[serde(default)]
    pub target: TargetSize,
    #[serde(default)]
    pub weighting: Weighting,
    #[serde(default)]
    pub seed: Option<u64>,
}

impl Params for BalanceParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.per_cluster == Some(0) {
            out.push(Invalid::new("per_cluster", "must be at least 1, got 0"));
        }
        if self.per_cluster.is_some() && self.target != TargetSize::LargestSelection {
            out.push(Invalid::new("target", "is only read without `per_cluster`; remove one of them"));
        }
        out
    }
}

/// The rows to keep, cluster by cluster: every member once and the rest drawn with replacement up to `target`
/// (or `target` members drawn without replacement from a larger cluster).
pub fn draw(
    groups: &[(usize, Vec<usize>, Vec<f64>)],
    target: usize,
    weighting: Weighting,
    rng: &mut ChaCha8Rng,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (cluster, rows, distances) in groups {
        if rows.len() >= target {
            let mut picked: Vec<usize> = sample(rng, rows.len(), target).into_iter().collect();
            picked.sort_unstable();
            out.extend(picked.into_iter().map(|i| (*cluster, rows[i])));
            continue;
        }
        out.extend(rows.iter().map(|&r| (*cluster, r)));
        let weights: Vec<f64> = match weighting {
            Weighting::Uniform => vec![1.0; rows.len()],
            Weighting::Distance => {
                let mean = distances.iter().sum::<f64>() / distances.len() as f64;
                let delta = (mean * 1e-3).max(1e-12);
                distances.iter().map(|d| 1.0 / (d.max(0.0) + delta)).collect()
            }
        };
        let dist = WeightedIndex::new(&weights).expect("positive weights");
        out.extend((rows.len()..target).map(|_| (*cluster, rows[dist.sample(rng)])));
    }
    out
}

impl Stage for Balance {
    type Params = BalanceParams;
    const KIND: &'static str = "balance";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "labelled",
            accepts: &[SELECTION],
            many: false,
            required: true,
            doc: "a label stage's labelled images",
        },
        InputSlot {
            name: "like",
            accepts: ANY_DATASET,
            many: false,
            required: false,
            doc: "another balanced set: reach its size in all (baselines match HUDD's)",
        },
        InputSlot {
            name: "clusters",
            accepts: &[CLUSTERS],
            many: false,
            required: false,
            doc: "the cluster stage's output the selection came from (for `target = \"largest-cluster\"`)",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "balanced", kind: SELECTION, path: "balanced/", doc: "the resampled images as a dataset" },
        OutputSpec { name: "counts", kind: BALANCE_COUNTS, path: "balance.csv", doc: "cluster,images,drawn" },
    ];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Balances the labelled unsafe set across clusters.";

    fn run(&self, p: &BalanceParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let ds = Dataset::open(&ctx.input("labelled")?.path)?;
        let clusters = ds.numbers("rcc").map_err(|_| BalanceError::NoClusterColumn { dataset: ds.dir.clone() })?;
        let distances = ds.numbers("rcc_distance").unwrap_or_else(|_| vec![0.0; clusters.len()]);
        let mut groups: std::collections::BTreeMap<usize, (Vec<usize>, Vec<f64>)> = std::collections::BTreeMap::new();
        for (row, (&c, &d)) in clusters.iter().zip(&distances).enumerate() {
            let g = groups.entry(c as usize).or_default();
            g.0.push(row);
            g.1.push(d);
        }
        let groups: Vec<(usize, Vec<usize>, Vec<f64>)> = groups.into_iter().map(|(c, (r, d))| (c, r, d)).collect();
        let like = match ctx.inputs("like").first() {
            Some(other) => Some(Dataset::open(&other.path)?.meta.count),
            None => None,
        };
        let target = match (p.per_cluster, like) {
            (Some(n), _) => n,
            (None, Some(total)) => total.div_ceil(groups.len().max(1)),
            (None, None) => match (p.target, ctx.inputs("clusters").first()) {
                (TargetSize::LargestSelection, _) => groups.iter().map(|g| g.1.len()).max().unwrap_or(0),
                (TargetSize::LargestCluster, Some(c)) => {
                    let members = Clusters::open(&c.path).groups()?;
                    groups.iter().filter_map(|g| members.get(&g.0).map(Vec::len)).max().unwrap_or(0)
                }
                (TargetSize::LargestCluster, None) => {
                    return Err(BalanceError::NoClusters.into());
                }
            },
        };
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
        let drawn = draw(&groups, target, p.weighting, &mut rng);
        let counts: Vec<BalanceRow> = (groups.iter())
            .map(|(c, rows, _)| BalanceRow {
                cluster: *c,
                images: rows.len(),
                drawn: drawn.iter().filter(|(x, _)| x == c).count(),
            })
            .collect();
        table::write(&ctx.output("counts")?, &counts)?;
        let rows: Vec<usize> = drawn.iter().map(|(_, r)| *r).collect();
        Ok(ds.write_subset(&rows, &ctx.output("balanced")?).map(|_| ())?)
    }
}
