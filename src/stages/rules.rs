//! Stage `rules` (triggering conditions, after SEDE): per root-cause cluster, a rule over simulator parameters that
//! separates the cluster's images from the images of the same split the model gets right, grown and pruned as IREP
//! does and stated inside the split's operational domain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::artefact::clusters::Clusters;
use crate::artefact::results::TestResults;
use crate::artefact::rules::{RuleCondition, RuleRecord, RuleRow, Rules};
use crate::artefact::table;
use crate::artefact::{ANY_DATASET, CLUSTERS, RULE_TABLE, RULES, SELECTION, TEST_RESULTS};
use crate::dataset::Dataset;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::trigger::{self, Options, Purpose};

/// Why no rule can be learned from these inputs: each names the data set that does not fit.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("image {id} of the test results is not in {}: connect the dataset the test stage read", dataset.display())]
    NotInDataset { id: String, dataset: std::path::PathBuf },
    #[error(
        "{} does not carry the parameters of {}: connect an expand stage that read this dataset",
        expanded.display(),
        dataset.display()
    )]
    OtherParameters { expanded: std::path::PathBuf, dataset: std::path::PathBuf },
    #[error("{} has no simulator parameters (real images): there is nothing to state a rule over", dataset.display())]
    NoParameters { dataset: std::path::PathBuf },
}

impl From<RulesError> for StageError {
    fn from(e: RulesError) -> Self {
        StageError::artefact(e)
    }
}

pub struct RulesStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesParams {
    /// At most this many conditions per rule.
    #[serde(default = "default_conditions")]
    pub max_conditions: usize,
    /// The rule keeps at least this share of the cluster's growing images.
    #[serde(default = "default_support")]
    pub min_support: f64,
    /// A condition stays only if it raises the rule's precision on the images held back from growing by at least
    /// this share of the precision without it.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// No condition keeps more than this share of its parameter's operational distribution (the split's images).
    #[serde(default = "default_max_kept")]
    pub max_kept: f64,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_conditions() -> usize {
    Options::default().max_conditions
}
fn default_support() -> f64 {
    Options::default().min_support
}
fn default_margin() -> f64 {
    Options::default().margin
}
fn default_max_kept() -> f64 {
    Options::default().max_kept
}

impl Params for RulesParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.max_conditions == 0 {
            out.push(Invalid::new("max_conditions", "must be at least 1, got 0"));
        }
        if !(self.min_support > 0.0 && self.min_support <= 1.0) {
            out.push(Invalid::new("min_support", format!("must be in (0, 1], got {}", self.min_support)));
        }
        if !(self.margin >= 0.0 && self.margin.is_finite()) {
            out.push(Invalid::new("margin", format!("must be 0 or more, got {}", self.margin)));
        }
        if !(self.max_kept > 0.0 && self.max_kept <= 1.0) {
            out.push(Invalid::new("max_kept", format!("must be in (0, 1], got {}", self.max_kept)));
        }
        out
    }
}

/// What every cluster's rule is learned against: the parameters as features, the images the model handles
/// correctly (negatives), every tested image (a sample of the split's domain, over which a condition's share is
/// measured), the domain the bounds are clipped to, and the learner's options.
struct Learning<'a> {
    ds: &'a Dataset,
    infos: Vec<crate::dataset::ParamInfo>,
    features: Vec<trigger::Feature>,
    negatives: &'a [usize],
    tested: &'a [usize],
    domain: Option<&'a crate::domain::Domain>,
    options: Options,
}

impl Learning<'_> {
    /// The rule separating a cluster's members (rows `positives`) and the images expansion `gained` for it from the
    /// negatives, grown and pruned with the cluster's own random draws.
    fn rule(&self, cluster: usize, mut positives: Vec<usize>, gained: &[usize], seed: u64) -> RuleRecord {
        let feature = |name: &str| self.features.iter().position(|f| f.name() == name).expect("a learned feature");
        let kept = |c: &trigger::Condition| trigger::kept(c, &self.features[feature(c.parameter())], self.tested);
        let unit = |c: &trigger::Condition| match self.infos[feature(c.parameter())].unit.as_deref() {
            Some("degrees") => "°".to_string(),
            Some(u) if !u.is_empty() => format!(" {u}"),
            _ => String::new(),
        };
        let column = |name: &str| self.ds.meta.params.iter().position(|p| p.name == name);
        let size = positives.len();
        positives.extend(gained);
        let mut rng = Purpose::Rules.rng(seed, cluster);
        let learned = trigger::learn(&self.features, &positives, self.negatives, self.options, &kept, &mut rng);
        let conditions: Vec<RuleCondition> = (learned.conditions.iter())
            .map(|c| {
                // Bounds stated inside the domain's support: no rule reaches values the domain never gives.
                let clipped = match (self.domain, column(c.parameter())) {
                    (Some(d), Some(j)) => trigger::clip(c.clone(), &d.support(j)),
                    _ => c.clone(),
                };
                RuleCondition { text: clipped.describe(&unit(c)), kept: kept(&clipped), condition: clipped }
            })
            .collect();
        let text = if conditions.is_empty() {
            "no condition separates it".to_string()
        } else {
            conditions.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" and ")
        };
        RuleRecord {
            cluster,
            size,
            expanded: gained.len(),
            expanded_outside: 0,
            text,
            covered: learned.positives,
            support: learned.positives as f64 / positives.len() as f64,
            correct_covered: learned.negatives,
            precision: learned.positives as f64 / (learned.positives + learned.negatives).max(1) as f64,
            conditions,
            pruned: learned.pruned.iter().map(|c| c.describe(&unit(c))).collect(),
        }
    }
}

impl Stage for RulesStage {
    type Params = RulesParams;
    const KIND: &'static str = "rules";
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
            name: "results",
            accepts: &[TEST_RESULTS],
            many: false,
            required: true,
            doc: "the original model's test results on the clustered split (its correct images are the negatives)",
        },
        InputSlot {
            name: "dataset",
            accepts: ANY_DATASET,
            many: false,
            required: true,
            doc: "the dataset the tested images come from, with their simulator parameters",
        },
        InputSlot {
            name: "expanded",
            accepts: &[SELECTION],
            many: false,
            required: false,
            doc: "an expand stage's images: each cluster's rule is learned on its members and the images it gained",
        },
    ];
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec {
            name: "rules",
            kind: RULES,
            path: "rules.json",
            doc: "per cluster: conditions, support, precision",
        },
        OutputSpec {
            name: "table",
            kind: RULE_TABLE,
            path: "rules.csv",
            doc: "cluster,size,rule,covered,support,correct_covered,precision",
        },
    ];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Learns a rule over simulator parameters for every root-cause cluster.";

    fn run(&self, p: &RulesParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let ds = Dataset::open(&ctx.input("dataset")?.path)?;
        let results = TestResults::read(&ctx.input("results")?.path)?;
        let ids = ds.ids()?;
        let row_of: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let find = |id: &str| {
            row_of
                .get(id)
                .copied()
                .ok_or_else(|| RulesError::NotInDataset { id: id.to_string(), dataset: ds.dir.clone() })
        };
        let negatives: Vec<usize> =
            results.images.iter().filter(|(_, ok)| *ok).map(|(id, _)| find(id)).collect::<Result<_, _>>()?;
        // Every tested image: a sample of the split's operational distribution, over which a condition's share of
        // its parameter is measured.
        let tested: Vec<usize> = results.images.iter().map(|(id, _)| find(id)).collect::<Result<_, _>>()?;
        let split = results.splits.first().cloned().unwrap_or_default();
        // The operational domain the rules are stated in: the split's declared distribution where the dataset
        // records it (a simulate stage's), else the range of its tested images.
        let domain = ds.meta.domains.get(&split);
        let mut features = trigger::features(&ds, domain)?;
        let Expanded { gained, outside } = match ctx.inputs("expanded").first() {
            Some(a) => expanded(&ds, &Dataset::open(&a.path)?, domain, &mut features)?,
            None => Expanded::default(),
        };
        if features.is_empty() {
            return Err(RulesError::NoParameters { dataset: ds.dir.clone() }.into());
        }
        let (infos, features): (Vec<_>, Vec<_>) = features.into_iter().unzip();
        let options = Options {
            max_conditions: p.max_conditions,
            min_support: p.min_support,
            margin: p.margin,
            max_kept: p.max_kept,
            ..Options::default()
        };
        let learning = Learning { ds: &ds, infos, features, negatives: &negatives, tested: &tested, domain, options };
        let mut rules = Vec::new();
        for (cluster, members) in Clusters::open(&ctx.input("clusters")?.path).groups()? {
            if members.len() < 2 {
                continue;
            }
            let positives: Vec<usize> = members.iter().map(|id| find(id)).collect::<Result<_, _>>()?;
            let gained = gained.get(&cluster).map_or(&[][..], Vec::as_slice);
            let mut rule = learning.rule(cluster, positives, gained, ctx.seed);
            rule.expanded_outside = outside.get(&cluster).copied().unwrap_or(0);
            ctx.progress.message(&format!("cluster {cluster}: {}", rule.text));
            rules.push(rule);
        }
        let record = Rules {
            source: ds.meta.source.clone(),
            task: ds.meta.task.clone(),
            split,
            correct: negatives.len(),
            rules,
        };
        let rows: Vec<RuleRow> = record.rules.iter().map(RuleRow::from).collect();
        table::write(&ctx.output("table")?, &rows)?;
        Ok(table::write_json(&ctx.output("rules")?, &record)?)
    }
}

/// Images an expand stage found for each cluster inside the domain (as rows after the dataset's), and how many it
/// found outside (counted, never learned from).
#[derive(Default)]
struct Expanded {
    gained: BTreeMap<usize, Vec<usize>>,
    outside: BTreeMap<usize, usize>,
}

/// The expanded images' parameters appended to `features`, and what they add to each cluster.
fn expanded(
    ds: &Dataset,
    expanded: &Dataset,
    domain: Option<&crate::sim::Domain>,
    features: &mut [(crate::dataset::ParamInfo, trigger::Feature)],
) -> Result<Expanded, StageError> {
    let more = trigger::features(expanded, domain)?;
    if more.len() != features.len() || !features.iter_mut().zip(more).all(|((_, f), (_, g))| f.extend(g)) {
        return Err(RulesError::OtherParameters { expanded: expanded.dir.clone(), dataset: ds.dir.clone() }.into());
    }
    // The expanded images carry the parameters of the dataset's simulator (their source names their stage).
    let within: Vec<bool> = match (domain, trigger::simulator_of(ds)) {
        (Some(d), Some(sim)) => {
            let rows: Vec<usize> = (0..expanded.meta.count).collect();
            trigger::vectors(expanded, sim, &rows)?.iter().map(|v| d.contains(v)).collect()
        }
        _ => vec![true; expanded.meta.count],
    };
    let mut out = Expanded::default();
    for (i, c) in expanded.numbers("rcc")?.into_iter().enumerate() {
        if within[i] {
            out.gained.entry(c as usize).or_default().push(ds.meta.count + i);
        } else {
            *out.outside.entry(c as usize).or_default() += 1;
        }
    }
    Ok(out)
}
