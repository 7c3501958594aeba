//! The `heatmaps` artefact, a heatmaps stage's folder: `<layer>.npy` (relevance at the layer's input, one row per
//! image, f32), `index.csv` (row → image id, [`IndexRow`]), `conservation.csv` (the layers in the network's order
//! with their rule and how well relevance was conserved, [`ConservationRow`]), `rules.json` (layer → rule) and
//! `seed.json` (what the relevance was seeded with, [`SeedRecord`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::{self, Row, TableError};
use crate::lrp::Rule;
use crate::lrp::batch::Seed;

/// A row of `index.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexRow {
    pub row: usize,
    pub image: String,
}

impl Row for IndexRow {
    const COLUMNS: &'static [&'static str] = &["row", "image"];
}

/// A row of `conservation.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConservationRow {
    pub layer: String,
    /// The rule's name (`zplus`, `epsilon`, `pass`, ...).
    pub rule: String,
    /// The worst relative deviation of a layer's relevance sum from the output's, as `1.234e-5`; empty where the
    /// rules do not conserve relevance exactly.
    pub worst_relative_deviation: String,
}

impl Row for ConservationRow {
    const COLUMNS: &'static [&'static str] = &["layer", "rule", "worst_relative_deviation"];
}

/// `seed.json`: what the relevance at the output was seeded with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRecord {
    pub seed_with: Seed,
}

/// Why heatmaps' rules do not fit a model.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{dir} has no rule for layer `{layer}`: the heatmaps were made with another model")]
    NoRule { dir: PathBuf, layer: String },
    #[error("the model has no layer `{layer}`")]
    NoLayer { layer: String },
}

impl From<RulesError> for crate::engine::stage::StageError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Table(t) => t.into(),
            other => crate::engine::stage::StageError::input(other.to_string()),
        }
    }
}

const INDEX: &str = "index.csv";
const CONSERVATION: &str = "conservation.csv";
const RULES: &str = "rules.json";
const SEED: &str = "seed.json";

/// A heatmaps folder (or an activations stage's, the same layout), for reading and writing.
pub struct Heatmaps {
    pub dir: PathBuf,
}

impl Heatmaps {
    pub fn open(dir: &Path) -> Heatmaps {
        Heatmaps { dir: dir.to_path_buf() }
    }

    /// The image ids, in row order.
    pub fn ids(&self) -> Result<Vec<String>, TableError> {
        Ok(table::read::<IndexRow>(&self.dir.join(INDEX))?.into_iter().map(|r| r.image).collect())
    }

    /// Writes `index.csv`: the image ids, one per row of every layer's array.
    pub fn write_ids(&self, ids: Vec<String>) -> Result<(), TableError> {
        let index: Vec<IndexRow> = ids.into_iter().enumerate().map(|(row, image)| IndexRow { row, image }).collect();
        table::write(&self.dir.join(INDEX), &index)
    }

    /// The layers, in the network's order, with their rules' names.
    pub fn layers(&self) -> Result<Vec<ConservationRow>, TableError> {
        table::read(&self.dir.join(CONSERVATION))
    }

    /// Writes `conservation.csv`.
    pub fn write_layers(&self, rows: &[ConservationRow]) -> Result<(), TableError> {
        table::write(&self.dir.join(CONSERVATION), rows)
    }

    /// Layer name → the rule its relevance was computed with.
    pub fn rules(&self) -> Result<BTreeMap<String, Rule>, TableError> {
        table::read_json(&self.dir.join(RULES))
    }

    /// Writes `rules.json` and `seed.json`: each layer's rule and what the relevance was seeded with.
    pub fn write_rules(&self, rules: &BTreeMap<&str, Rule>, seed_with: Seed) -> Result<(), TableError> {
        table::write_json(&self.dir.join(RULES), rules)?;
        table::write_json(&self.dir.join(SEED), &SeedRecord { seed_with })
    }

    /// The rules for every layer of `net` (to compute new heatmaps like these) and the index of `layer` in it; the
    /// error says which layer has no rule (the heatmaps were made with another model) or that `layer` is missing.
    pub fn rules_for(&self, net: &crate::model::net::Net, layer: &str) -> Result<(Vec<Rule>, usize), RulesError> {
        let named = self.rules()?;
        let rules = net
            .layers
            .iter()
            .map(|(name, _)| {
                named
                    .get(name)
                    .copied()
                    .ok_or_else(|| RulesError::NoRule { dir: self.dir.clone(), layer: name.clone() })
            })
            .collect::<Result<_, _>>()?;
        let k = net
            .layers
            .iter()
            .position(|(name, _)| name == layer)
            .ok_or_else(|| RulesError::NoLayer { layer: layer.to_string() })?;
        Ok((rules, k))
    }

    /// Whether the folder holds a model's activations (an `activations` stage's output, same layout) rather than
    /// relevance.
    pub fn are_activations(&self) -> Result<bool, TableError> {
        Ok(self.layers()?.iter().any(|l| l.rule == "activation"))
    }

    /// What the relevance was seeded with.
    pub fn seed(&self) -> Result<Seed, TableError> {
        Ok(table::read_json::<SeedRecord>(&self.dir.join(SEED))?.seed_with)
    }

    /// The `.npy` file of a layer.
    pub fn layer_path(&self, layer: &str) -> PathBuf {
        self.dir.join(format!("{layer}.npy"))
    }
}
