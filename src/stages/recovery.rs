//! Stage `recovery`: do the root-cause clusters recover the causes that really made the DNN fail? Given each
//! failing image's planted cause (its scenario, or any column of the dataset), the clusters are scored by purity,
//! coverage, NMI and ARI, beside random partitions with the same cluster sizes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::artefact::clusters::Clusters;
use crate::artefact::recovery::{CauseRow, Exposure, RandomFloor, RecoverySummary};
use crate::artefact::results::TestResults;
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CLUSTERS, RECOVERY, RECOVERY_TABLE, TEST_RESULTS};
use crate::cluster::score;
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};

/// Why the planted causes cannot be read for the clustered images: each names the data set and the column or image.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(
        "{} has no column `{cause}` (columns: {}); a simulate split with scenarios writes `scenario`",
        dataset.display(),
        columns.join(", ")
    )]
    NoCause { dataset: std::path::PathBuf, cause: String, columns: Vec<String> },
    #[error("clustered image {id} is not in {}", dataset.display())]
    NotInDataset { id: String, dataset: std::path::PathBuf },
    #[error("tested image {id} of {} is not in {}", results.display(), dataset.display())]
    NotTested { id: String, results: std::path::PathBuf, dataset: std::path::PathBuf },
    #[error("give both `results` (every tested image's outcome) and `tested` (their data set), or neither")]
    HalfExposure,
}

impl From<RecoveryError> for StageError {
    fn from(e: RecoveryError) -> Self {
        StageError::artefact(e)
    }
}

pub struct Recovery;

/// The cluster number of the images no cluster holds (clusters are numbered from 1).
const UNASSIGNED: usize = 0;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryParams {
    /// The column of the clustered images that holds each one's planted cause.
    #[serde(default = "default_cause")]
    pub cause: String,
    /// Random partitions with the clusters' sizes, for the floor.
    #[serde(default = "default_draws")]
    pub permutations: usize,
    /// Causes that were not planted (a nominal scenario like training): scored, but not causes coverage asks for.
    #[serde(default = "default_nominal")]
    pub nominal: Vec<String>,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_cause() -> String {
    "scenario".into()
}
fn default_nominal() -> Vec<String> {
    vec!["nominal".into()]
}
fn default_draws() -> usize {
    1000
}

impl Params for RecoveryParams {
    fn validate(&self) -> Vec<Invalid> {
        if self.permutations == 0 {
            vec![Invalid::new("permutations", "must be at least 1, got 0")]
        } else {
            Vec::new()
        }
    }
}

/// Each cause's failure rate over every tested image (the `results` and `tested` inputs), against the nominal causes'.
fn exposure(p: &RecoveryParams, ctx: &StageContext<'_>) -> Result<Option<Exposure>, StageError> {
    let (results, tested) = match (ctx.inputs("results").first(), ctx.inputs("tested").first()) {
        (Some(r), Some(t)) => (r.path.clone(), t.path.clone()),
        (None, None) => return Ok(None),
        _ => return Err(RecoveryError::HalfExposure.into()),
    };
    let results = TestResults::read(&results)?;
    let ds = Dataset::open(&tested)?;
    let cause_of = causes_by_id(&ds, &p.cause)?;
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (id, correct) in &results.images {
        let cause = cause_of.get(id).ok_or_else(|| RecoveryError::NotTested {
            id: id.clone(),
            results: results.path.clone(),
            dataset: ds.dir.clone(),
        })?;
        let count = counts.entry(cause).or_default();
        count.0 += 1;
        count.1 += usize::from(!correct);
    }
    let counts: Vec<(String, bool, usize, usize)> = counts
        .into_iter()
        .map(|(cause, (tested, failing))| (cause.to_string(), !p.nominal.iter().any(|n| n == cause), tested, failing))
        .collect();
    Ok(Some(Exposure::new(&counts)))
}

/// A model that fails on nothing (the best outcome), or failures that all stand alone: an empty result, said, for the
/// report to show.
fn nothing_to_score(p: &RecoveryParams, ctx: &StageContext<'_>, unclustered: usize) -> Result<(), StageError> {
    let note = if unclustered == 0 {
        "the model fails on none of these images: no cluster to score".to_string()
    } else {
        format!("no cluster holds two or more images ({unclustered} failing images, each alone): nothing to score")
    };
    ctx.progress.message(&note);
    let summary = RecoverySummary {
        cause: p.cause.clone(),
        images: unclustered,
        unclustered,
        clusters: 0,
        causes: 0,
        purity: None,
        coverage: None,
        nmi: None,
        ari: None,
        random: None,
        note: Some(note),
        exposure: exposure(p, ctx)?,
    };
    table::write::<CauseRow>(&ctx.output("table")?, &[])?;
    Ok(table::write_json(&ctx.output("summary")?, &summary)?)
}

impl Stage for Recovery {
    type Params = RecoveryParams;
    const KIND: &'static str = "recovery";
    const VERSION: u32 = 3;
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "clusters",
            accepts: &[CLUSTERS],
            many: false,
            required: true,
            doc: "a cluster stage's output",
        },
        InputSlot {
            name: "images",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the clustered images, with their planted cause",
        },
        InputSlot {
            name: "results",
            accepts: &[TEST_RESULTS],
            many: false,
            required: false,
            doc: "the test's results over every tested image (with `tested`): each cause's failure rate against the nominal one",
        },
        InputSlot {
            name: "tested",
            accepts: ANY_DATASET,
            many: false,
            required: false,
            doc: "the data set of those results, with every tested image's cause",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec {
            name: "summary",
            kind: RECOVERY,
            path: "recovery.json",
            doc: "purity, coverage, NMI, ARI and their random floor",
        },
        OutputSpec {
            name: "table",
            kind: RECOVERY_TABLE,
            path: "recovery.csv",
            doc: "cause,planted,images,best_cluster,share_in_best,dominates,unassigned",
        },
    ];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Scores root-cause clusters against the planted causes of the failures.";

    fn run(&self, p: &RecoveryParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let ds = Dataset::open(&ctx.input("images")?.path)?;
        let (cluster_labels, cause_names, unclustered) =
            labelled(&ds, &p.cause, &Clusters::open(&ctx.input("clusters")?.path))?;
        // A model that fails on nothing (the best outcome), or failures that all stand alone: an empty result,
        // said, for the report to show.
        if unclustered == cluster_labels.len() {
            return nothing_to_score(p, ctx, unclustered);
        }
        let names: Vec<String> =
            cause_names.iter().cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let causes: Vec<usize> = cause_names.iter().map(|n| names.binary_search(n).expect("a known cause")).collect();
        let ids: Vec<usize> =
            cluster_labels.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let clusters: Vec<usize> =
            cluster_labels.iter().map(|c| ids.binary_search(c).expect("a known cluster")).collect();
        let nominal: Vec<usize> =
            (names.iter().enumerate()).filter(|(_, name)| p.nominal.contains(name)).map(|(j, _)| j).collect();
        let scope = score::Scope { unassigned: ids.binary_search(&UNASSIGNED).ok(), nominal: &nominal };
        let r = score::recovery(&clusters, &causes, scope);
        let floor = score::random_floor(&clusters, &causes, scope, p.permutations, ctx.seed);
        let rows: Vec<CauseRow> = (names.iter().enumerate())
            .map(|(j, name)| {
                let (images, best, share) = r.per_cause.get(j).copied().unwrap_or((0, 0, 0.0));
                let dominates =
                    (r.dominant.iter().enumerate()).filter(|&(i, &d)| d == j && Some(i) != scope.unassigned).count();
                let unassigned =
                    (clusters.iter().zip(&causes)).filter(|&(&c, &k)| k == j && Some(c) == scope.unassigned).count();
                let best_cluster = if share > 0.0 { ids[best] } else { 0 };
                let planted = !nominal.contains(&j);
                CauseRow {
                    cause: name.clone(),
                    planted,
                    images,
                    best_cluster,
                    share_in_best: share,
                    dominates,
                    unassigned,
                }
            })
            .collect();
        let summary = RecoverySummary {
            cause: p.cause.clone(),
            images: clusters.len(),
            unclustered,
            clusters: ids.len() - usize::from(scope.unassigned.is_some()),
            causes: names.len() - nominal.len(),
            purity: Some(r.purity),
            coverage: Some(r.coverage),
            nmi: Some(r.nmi),
            ari: Some(r.ari),
            random: Some(RandomFloor {
                permutations: p.permutations,
                purity: floor[0],
                coverage: floor[1],
                nmi: floor[2],
                ari: floor[3],
            }),
            note: None,
            exposure: exposure(p, ctx)?,
        };
        ctx.progress.message(&format!(
            "purity {:.2} (random {:.2}), coverage {:.2}, NMI {:.2}, ARI {:.2}",
            r.purity, floor[0].0, r.coverage, r.nmi, r.ari
        ));
        table::write(&ctx.output("table")?, &rows)?;
        Ok(table::write_json(&ctx.output("summary")?, &summary)?)
    }
}

/// Every failing image's cluster and planted cause (the dataset's column `cause`), and how many no cluster of two or
/// more holds. Every failing image is scored: those a clustering leaves alone (clusters of one, such as a density
/// clustering's noise: no root cause) are one more cluster, [`UNASSIGNED`], so leaving hard images out cannot raise a
/// score.
fn labelled(ds: &Dataset, cause: &str, clusters: &Clusters) -> Result<(Vec<usize>, Vec<String>, usize), StageError> {
    let cause_of = causes_by_id(ds, cause)?;
    let (mut cluster_labels, mut cause_names, mut unclustered) = (Vec::new(), Vec::new(), 0);
    for (c, members) in clusters.groups()? {
        let alone = members.len() < 2;
        unclustered += if alone { members.len() } else { 0 };
        for id in members {
            let cause = cause_of
                .get(&id)
                .ok_or_else(|| RecoveryError::NotInDataset { id: id.clone(), dataset: ds.dir.clone() })?;
            cluster_labels.push(if alone { UNASSIGNED } else { c });
            cause_names.push(cause.clone());
        }
    }
    Ok((cluster_labels, cause_names, unclustered))
}

/// Every image's cause: the data set's column `cause`, by image id.
fn causes_by_id(ds: &Dataset, cause: &str) -> Result<BTreeMap<String, String>, StageError> {
    let causes_of = ds.strings(cause).map_err(|_| RecoveryError::NoCause {
        dataset: ds.dir.clone(),
        cause: cause.to_string(),
        columns: ds.table.get_column_names().iter().map(|c| c.to_string()).collect(),
    })?;
    Ok(ds.ids()?.into_iter().zip(causes_of).collect())
}
