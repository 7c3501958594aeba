//! What the workspace records beside the entries: each workflow's state and views, run records, Slurm jobs.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateRecord {
    pub key: String,
    pub material: KeyMaterial,
}

/// The key material each stage id of a workflow last ran with.
pub type WorkflowState = BTreeMap<String, StateRecord>;

impl Store {
    pub fn read_state(&self, workflow: &str) -> WorkflowState {
        fs::read(self.state_path(workflow)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub fn write_state(&self, workflow: &str, state: &WorkflowState) -> Result<(), StoreError> {
        write_json(&self.state_path(workflow), state)
    }

    /// Every workflow name with a recorded state.
    pub fn workflows(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("state"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// Stage id → the key whose outputs `reports/<workflow>/` shows (its views, or the published report).
    pub fn read_views(&self, workflow: &str) -> BTreeMap<String, String> {
        let path = self.root.join("views").join(format!("{workflow}.json"));
        fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub fn write_views(&self, workflow: &str, views: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let dir = self.root.join("views");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        write_json(&dir.join(format!("{workflow}.json")), views)
    }

    fn state_path(&self, workflow: &str) -> PathBuf {
        self.root.join("state").join(format!("{workflow}.json"))
    }

    /// Writes a run's provenance record and returns its path.
    pub fn write_run(&self, name: &str, record: &impl Serialize) -> Result<PathBuf, StoreError> {
        let path = self.root.join("runs").join(format!("{name}.json"));
        write_json(&path, record)?;
        Ok(path)
    }

    /// The newest provenance records, newest first.
    pub fn runs(&self, limit: usize) -> Vec<(PathBuf, serde_json::Value)> {
        let mut paths: Vec<PathBuf> = fs::read_dir(self.root.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths.reverse();
        paths
            .into_iter()
            .take(limit)
            .filter_map(|p| {
                let v = serde_json::from_slice(&fs::read(&p).ok()?).ok()?;
                Some((p, v))
            })
            .collect()
    }

    /// `.hudd/slurm/` (absolute: job scripts and messages name it), with its `scripts`, `logs` and `jobs` folders.
    pub fn slurm_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.slurm_root();
        for sub in ["scripts", "logs", "jobs"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        Ok(dir)
    }

    /// Writes a Slurm job script `.hudd/slurm/scripts/<name>.sh` and returns its path.
    pub fn write_slurm_script(&self, name: &str, text: &str) -> Result<PathBuf, StoreError> {
        let path = self.slurm_dir()?.join("scripts").join(format!("{name}.sh"));
        fs::write(&path, text).map_err(io_err(&path))?;
        Ok(path)
    }

    /// The log file pattern for Slurm jobs of a script (`%A_%a` or `%j` filled in by Slurm).
    pub fn slurm_log_pattern(&self, name: &str) -> Result<PathBuf, StoreError> {
        Ok(self.slurm_dir()?.join("logs").join(format!("{name}.log")))
    }

    /// Remembers the Slurm job that computes a key (`.hudd/slurm/jobs/<key>`).
    pub fn write_job_record(&self, key: &str, record: &impl Serialize) -> Result<(), StoreError> {
        write_json(&self.slurm_dir()?.join("jobs").join(key), record)
    }

    /// The Slurm job recorded for a key, if any.
    pub fn read_job_record<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        serde_json::from_slice(&fs::read(self.slurm_root().join("jobs").join(key)).ok()?).ok()
    }

    /// `.hudd/slurm/`, absolute, whether or not it exists yet.
    fn slurm_root(&self) -> PathBuf {
        fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone()).join("slurm")
    }
}
