//! Planning: every stage's key, computed in DAG order from its kind, version, parameters, seed, external files and
//! its inputs' keys, and its freshness against the store and the workflow's state (what `hudd plan` prints and
//! `hudd run` acts on).

use std::collections::{BTreeMap, BTreeSet};

use super::{EngineError, manifest_path};
use crate::engine::freshness::{Freshness, decide};
use crate::engine::manifest::{StageSpec, Workflow};
use crate::engine::stage::{ManifestRef, Registry, StageKind};
use crate::engine::store::{EntryState, InputKey, KeyMaterial, Spec, Store, StoreError};

/// A workflow with every stage's key and freshness: what a run would do.
pub struct Planned {
    /// Indexed like `workflow.stages`.
    pub specs: Vec<Spec>,
    pub decisions: Vec<Freshness>,
}

impl Planned {
    pub fn stale(&self) -> impl Iterator<Item = usize> + '_ {
        self.decisions.iter().enumerate().filter(|(_, d)| !d.is_fresh()).map(|(i, _)| i)
    }

    /// Fresh stages whose outputs `reports/` does not show (a run stopped after computing them, or `hudd exec`
    /// computed them): the next `hudd run` shows them, running nothing.
    pub fn views_behind(&self, store: &Store, workflow: &str) -> Vec<String> {
        let views = store.read_views(workflow);
        (self.specs.iter().zip(&self.decisions))
            .filter(|(s, d)| d.is_fresh() && views.get(&s.stage) != Some(&s.key))
            .map(|(s, _)| s.stage.clone())
            .collect()
    }
}

/// Computes every stage's key (in DAG order, so input keys are known) and decides its freshness.
pub fn plan(store: &Store, workflow: &Workflow, registry: &Registry) -> Result<Planned, EngineError> {
    let n = workflow.stages.len();
    let mut specs: Vec<Option<Spec>> = vec![None; n];
    let state = store.read_state(&workflow.name);
    let mut decisions = vec![Freshness::Fresh; n];
    // Output digests of fresh producers, read once each however many stages read them.
    let mut digests: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for &i in workflow.dag.order() {
        let stage = &workflow.stages[i];
        let kind = registry.get(&stage.kind).ok_or_else(|| unknown_kind(&stage.kind, registry))?;
        let (inputs, input_stages) = input_keys(store, stage, &specs, &decisions, &mut digests);
        // Execution settings run the stage but stay out of its key.
        let mut params = stage.params.clone();
        let mut settings = serde_json::Map::new();
        if let Some(map) = params.as_object_mut() {
            for name in kind.settings() {
                if let Some(value) = map.remove(*name) {
                    settings.insert(name.to_string(), value);
                }
            }
        }
        let mut externals = externals(store, stage, kind)?;
        let manifest = kind.deliverable().then(|| ManifestRef {
            path: manifest_path(workflow, store.workspace()),
            hash: workflow.manifest_hash.clone(),
        });
        if let Some(m) = &manifest {
            externals.insert(format!("manifest {}", m.path), m.hash.clone());
        }
        let seed = kind.uses_seed().then(|| stage.params.get("seed").and_then(|s| s.as_u64()).unwrap_or(workflow.seed));
        // A deliverable states its lineage: every stage upstream, by its current key.
        let upstream = if kind.deliverable() {
            let spec = |j: usize| specs[j].as_ref().expect("DAG order puts producers first");
            upstream_of(workflow, i).into_iter().map(|j| (spec(j).stage.clone(), spec(j).key.clone())).collect()
        } else {
            BTreeMap::new()
        };
        let material = KeyMaterial {
            kind: stage.kind.clone(),
            version: kind.version(),
            params,
            seed,
            inputs,
            externals,
            upstream,
        };
        let key = material.key();
        decisions[i] = decide(&material, &key, state.get(&stage.id), &entry_state(store, kind, &key));
        tracing::debug!(stage = %stage.id, key = %key, decision = ?decisions[i], "planned");
        specs[i] = Some(Spec {
            key,
            workflow: workflow.name.clone(),
            stage: stage.id.clone(),
            matrix: stage.matrix.clone(),
            material,
            input_stages,
            seed: workflow.seed,
            manifest,
            settings,
        });
    }
    store.save_stat_cache()?;
    Ok(Planned { specs: specs.into_iter().map(|s| s.expect("every stage is in the DAG order")).collect(), decisions })
}

/// The keys of a stage's inputs by slot (with a fresh producer's output digest: the key depends on its content,
/// early cutoff), and the producing stage instances by slot.
#[allow(clippy::type_complexity)] // the two maps `Spec` and `KeyMaterial` hold
fn input_keys(
    store: &Store,
    stage: &StageSpec,
    specs: &[Option<Spec>],
    decisions: &[Freshness],
    digests: &mut BTreeMap<usize, BTreeMap<String, String>>,
) -> (BTreeMap<String, Vec<InputKey>>, BTreeMap<String, Vec<(String, BTreeMap<String, String>)>>) {
    let mut inputs = BTreeMap::new();
    let mut input_stages = BTreeMap::new();
    for (slot, refs) in &stage.inputs {
        let mut keys = Vec::new();
        let mut stages = Vec::new();
        for r in refs {
            let producer = specs[r.stage].as_ref().expect("DAG order puts producers first");
            // A fresh producer's output is there: the key depends on its content (early cutoff).
            let content = if decisions[r.stage].is_fresh() {
                let outputs = digests.entry(r.stage).or_insert_with(|| {
                    let entry = store.entry(&producer.key);
                    entry.map(|e| e.outputs.iter().map(|(k, o)| (k.clone(), o.digest())).collect()).unwrap_or_default()
                });
                outputs.get(&r.output).cloned()
            } else {
                None
            };
            keys.push(InputKey { key: producer.key.clone(), output: r.output.clone(), content });
            stages.push((producer.stage.clone(), producer.matrix.clone()));
        }
        inputs.insert(slot.clone(), keys);
        input_stages.insert(slot.clone(), stages);
    }
    (inputs, input_stages)
}

/// The external files a stage reads with their content hashes (an optional one absent said so), and the kind's
/// fingerprints (the device a run resolves to).
fn externals(store: &Store, stage: &StageSpec, kind: &dyn StageKind) -> Result<BTreeMap<String, String>, EngineError> {
    let mut externals = BTreeMap::new();
    let optional = kind.optional_paths(&stage.params);
    for path in stage.externals.iter().chain(&optional) {
        if optional.contains(path) && !store.workspace().join(path).exists() {
            externals.insert(path.display().to_string(), "absent".to_string());
            continue;
        }
        let hash = store.hash_external(&store.workspace().join(path)).map_err(|e| EngineError::External {
            stage: stage.id.clone(),
            path: path.clone(),
            source: Box::new(e),
        })?;
        externals.insert(path.display().to_string(), hash);
    }
    for path in kind.named_paths(&stage.params, store.workspace()) {
        // A named file that is missing or no regular file is the stage's to name or skip (an image listed in a
        // CSV that `on_bad_image = "skip"` leaves out), not a reason the workflow cannot be planned.
        let hash = match store.hash_external(&store.workspace().join(&path)) {
            Ok(hash) => hash,
            Err(StoreError::NotRegular { what, .. }) => format!("special file: {what}"),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => "absent".into(),
            Err(e) => {
                return Err(EngineError::External { stage: stage.id.clone(), path, source: Box::new(e) });
            }
        };
        externals.insert(path.display().to_string(), hash);
    }
    externals.extend(kind.fingerprints(&stage.params));
    Ok(externals)
}

/// The state of a key's entry; one without a declared output was written by an implementation that did not
/// declare it, and counts as corrupt.
fn entry_state(store: &Store, kind: &dyn StageKind, key: &str) -> EntryState {
    let entry = store.state(key);
    if entry == EntryState::Intact
        && let Some(missing) =
            store.entry(key).and_then(|e| kind.outputs().iter().find(|o| !e.outputs.contains_key(o.name)))
    {
        return EntryState::Corrupt(format!("output `{}` missing (written by an older implementation)", missing.name));
    }
    entry
}

/// The stages a stage reads, directly or through others (indices into the workflow's stages).
fn upstream_of(workflow: &Workflow, i: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<usize> = workflow.stages[i].inputs.values().flatten().map(|r| r.stage).collect();
    while let Some(j) = todo.pop() {
        if seen.insert(j) {
            todo.extend(workflow.stages[j].inputs.values().flatten().map(|r| r.stage));
        }
    }
    seen
}

pub(super) fn unknown_kind(kind: &str, registry: &Registry) -> EngineError {
    EngineError::UnknownKind { kind: kind.to_string(), known: registry.names().collect::<Vec<_>>().join(", ") }
}
