//! `hudd gc`'s policy: an entry is live when a manifest under `workflows/` of a workspace using the store reaches it
//! (planned now), when a workflow's last run there used it, or when that workspace's `reports/` shows it; the rest
//! is dropped. With a shared store every registered workspace counts, each once however many paths lead to it. A
//! manifest whose input files are absent (a shipped study whose data was never installed) is passed over with a
//! warning: its runs' entries are kept through the workflow's recorded runs. Otherwise it removes nothing when a
//! manifest cannot be checked or planned (what that one reaches cannot be known).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::manifest;
use super::stage::Registry;
use super::store::{Store, StoreError, WorkspaceLock};

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gc removed nothing: {} cannot be planned, so what it reaches is unknown:\n{message}", path.display())]
    Unplannable { path: PathBuf, message: String },
}

/// What a collection keeps, and the locks that hold every workspace's runs and execs off while it drops the rest.
pub struct Live {
    pub keep: BTreeSet<String>,
    pub held: Vec<WorkspaceLock>,
}

/// The live keys of every workspace using `store`'s entries (`shared`: the store given by `--store`). With `hold`,
/// each workspace's run and exec locks are taken before its keys are read (a dry run removes nothing and takes
/// none); `say` hears the warnings (a registered folder skipped) and what a lock waits for.
pub fn live(
    store: &Store,
    shared: Option<&Path>,
    registry: &Registry,
    hold: bool,
    say: &mut dyn FnMut(String),
) -> Result<Live, GcError> {
    let mut keep = BTreeSet::new();
    let mut held = Vec::new();
    let (workspaces, skipped) = store.workspaces();
    for (dir, why) in skipped {
        say(format!("warning: {} is registered in the store, but {why}: skipped", dir.display()));
    }
    for dir in workspaces {
        let other = Store::open_shared(&dir, shared)?;
        if hold {
            // Said while it waits, so a person sees why gc does not finish.
            held.push(other.lock(|m| say(format!("{}: {m}", dir.display())))?);
            held.push(other.lock_exec(true, |m| say(format!("{}: {m}", dir.display())))?);
        }
        let mut manifests: Vec<PathBuf> = std::fs::read_dir(dir.join("workflows"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        manifests.sort();
        for path in &manifests {
            let unplannable = |message: String| GcError::Unplannable { path: path.clone(), message };
            let workflow = manifest::load(path, &[], registry).map_err(|e| unplannable(e.to_string()))?;
            let planned = match super::plan(&other, &workflow, registry) {
                Ok(planned) => planned,
                Err(e) if absent_input(&e) => {
                    // Nothing can have run from inputs that are not there now; what ran before they went is in the
                    // workflow's recorded runs, kept below.
                    say(format!(
                        "warning: {} cannot be planned ({e}): kept what its recorded runs used",
                        path.display()
                    ));
                    continue;
                }
                Err(e) => return Err(unplannable(e.to_string())),
            };
            keep.extend(planned.specs.into_iter().map(|s| other.resolve(&s.key)));
        }
        // What a workflow's last run used, and what `reports/` links to (the two are written one after the other:
        // a run killed between them must not leave a view of a dropped entry).
        for workflow in other.workflows() {
            keep.extend(other.read_state(&workflow).into_values().map(|r| r.key));
            keep.extend(other.read_views(&workflow).into_values());
        }
    }
    Ok(Live { keep, held })
}

/// Whether planning failed because a file or folder a stage reads from outside the store does not exist (and for no
/// other reason: an unreadable input, or a store that cannot save what it hashed, still stops the collection).
fn absent_input(e: &super::EngineError) -> bool {
    matches!(
        e,
        super::EngineError::External { source, .. }
            if matches!(&**source, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    )
}

/// Every entry of the store that `keep` does not hold: its key, and what it was (`stage (workflow)`, or
/// `incomplete`).
pub fn dead(store: &Store, keep: &BTreeSet<String>) -> Result<Vec<(String, String)>, StoreError> {
    Ok(store
        .keys()?
        .into_iter()
        .filter(|key| !keep.contains(key))
        .map(|key| {
            let what =
                store.entry(&key).map_or_else(|| "incomplete".to_string(), |e| format!("{} ({})", e.stage, e.workflow));
            (key, what)
        })
        .collect())
}

/// Drops one dead entry with its spec.
pub fn drop_entry(store: &Store, key: &str) -> Result<(), StoreError> {
    store.remove_entry(key)?;
    store.remove_spec(key);
    Ok(())
}

/// After the drops: the aliases that led to dropped keys go, and `tmp/` is cleared (every workspace's runs and
/// execs are held off, so what is left there belongs to no live stage).
pub fn finish(store: &Store, dropped: &BTreeSet<String>) -> Result<(), StoreError> {
    store.remove_aliases_to(dropped);
    store.clean_tmp()?;
    Ok(())
}
