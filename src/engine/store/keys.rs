//! Key material: what a key is computed from, the specs `hudd exec` runs, aliases from provisional to final keys,
//! and the content hashes of external files (cached by size, mtime and inode).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::*;

/// What a stage key is computed from. Serialised with sorted keys, so equal material means equal bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyMaterial {
    pub kind: String,
    pub version: u32,
    pub params: serde_json::Value,
    /// The effective seed, for kinds that draw random numbers.
    pub seed: Option<u64>,
    /// Input slot → the keys and output names it reads, in order.
    pub inputs: BTreeMap<String, Vec<InputKey>>,
    /// External path (as written in the manifest) → content hash.
    pub externals: BTreeMap<String, String>,
    /// Deliverables only: every stage instance upstream (id → key, final once resolved), so that the lineage a
    /// report states is the one its key names, and a change anywhere upstream renders it again (empty elsewhere,
    /// and then left out of the key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream: BTreeMap<String, String>,
}

/// An input as the key sees it: the producing stage instance's key, the output read, and (once the producer's
/// entry exists) the output's content digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputKey {
    pub key: String,
    pub output: String,
    /// [`OutputRecord::digest`] of the output. When present, the stage key depends on it instead of the
    /// producer's key, so a producer that reruns and writes the same bytes leaves this key as it was (early
    /// cutoff). Absent while the producer is still to run: the key is then provisional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl KeyMaterial {
    /// The stage key: blake3 over the canonical JSON of this material, each input standing for its content where
    /// known and for its producer's key otherwise.
    pub fn key(&self) -> String {
        /// The hashed form of an input: its producer's key only while its content is unknown.
        #[derive(Serialize)]
        struct Input<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            key: Option<&'a str>,
            output: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            content: Option<&'a str>,
        }
        /// The hashed form of the material (fields in the material's order, so stages without inputs keep the
        /// keys they had before inputs were hashed by content).
        #[derive(Serialize)]
        struct Basis<'a> {
            kind: &'a str,
            version: u32,
            params: &'a serde_json::Value,
            seed: Option<u64>,
            inputs: BTreeMap<&'a str, Vec<Input<'a>>>,
            externals: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            upstream: &'a BTreeMap<String, String>,
        }
        let inputs = (self.inputs.iter())
            .map(|(slot, list)| {
                let list = list
                    .iter()
                    .map(|i| Input {
                        key: i.content.is_none().then_some(i.key.as_str()),
                        output: &i.output,
                        content: i.content.as_deref(),
                    })
                    .collect();
                (slot.as_str(), list)
            })
            .collect();
        let basis = Basis {
            kind: &self.kind,
            version: self.version,
            params: &self.params,
            seed: self.seed,
            inputs,
            externals: &self.externals,
            upstream: &self.upstream,
        };
        let bytes = serde_json::to_vec(&basis).expect("key material serialises");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// Whether every input's content is known, so that the key is the stage's final one.
    pub fn is_final(&self) -> bool {
        self.inputs.values().flatten().all(|i| i.content.is_some())
    }
}

/// A stage instance that produced an input: its base id and its matrix values.
pub type Producer = (String, BTreeMap<String, String>);

/// Everything `hudd exec <key>` needs to run one stage instance in any process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub key: String,
    pub workflow: String,
    pub stage: String,
    pub matrix: BTreeMap<String, String>,
    pub material: KeyMaterial,
    /// Input slot → producing stage ids, aligned with `material.inputs`.
    pub input_stages: BTreeMap<String, Vec<Producer>>,
    /// The workflow's seed, used when the stage sets none.
    pub seed: u64,
    /// The manifest, for kinds that deliver a workflow's result ([`crate::engine::stage::Stage::DELIVERABLE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestRef>,
    /// Execution settings (threads, inference batch sizes): passed to the stage with its parameters, kept out of
    /// the key ([`crate::engine::stage::Stage::SETTINGS`]).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl Spec {
    /// The parameters the stage runs with: its keyed parameters and its execution settings.
    pub fn run_params(&self) -> serde_json::Value {
        let mut params = self.material.params.clone();
        if let Some(map) = params.as_object_mut() {
            map.extend(self.settings.clone());
        }
        params
    }
}

impl Store {
    /// Records that the stage planned under the provisional key `from` (an input still to run) has the final key
    /// `to`, once its inputs' contents are known. Written through a temporary name, so it is whole or absent.
    pub fn write_alias(&self, from: &str, to: &str) -> Result<(), StoreError> {
        if from == to {
            return Ok(());
        }
        let dir = self.shared.join("aliases");
        let tmp = dir.join(format!(".{from}.{}", std::process::id()));
        fs::write(&tmp, to).map_err(io_err(&tmp))?;
        let path = dir.join(from);
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// The final key of a stage planned under `key`: its alias when it has one, else `key` itself.
    pub fn resolve(&self, key: &str) -> String {
        if !valid_key(key) {
            return key.to_string();
        }
        match fs::read_to_string(self.shared.join("aliases").join(key)) {
            Ok(to) if valid_key(to.trim()) => to.trim().to_string(),
            _ => key.to_string(),
        }
    }

    /// Forgets the aliases that lead to `key` (after its entry was dropped).
    pub fn remove_aliases_to(&self, keys: &BTreeSet<String>) {
        for e in fs::read_dir(self.shared.join("aliases")).into_iter().flatten().flatten() {
            if fs::read_to_string(e.path()).is_ok_and(|to| keys.contains(to.trim())) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    pub fn write_spec(&self, spec: &Spec) -> Result<(), StoreError> {
        write_json(&self.shared.join("specs").join(format!("{}.json", spec.key)), spec)
    }

    pub fn read_spec(&self, key: &str) -> Result<Spec, StoreError> {
        let dir = self.shared.join("specs");
        let path = dir.join(format!("{key}.json"));
        let bytes = fs::read(&path).map_err(|_| StoreError::NoSpec { key: key.into(), dir: dir.clone() })?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path, source })
    }

    /// Forgets the spec of a key (`hudd gc`, with its entry).
    pub fn remove_spec(&self, key: &str) {
        let _ = fs::remove_file(self.shared.join("specs").join(format!("{key}.json")));
    }

    /// Content hash of a file or folder outside the store, reusing the last hash while size, mtime and inode hold.
    pub fn hash_external(&self, path: &Path) -> Result<String, StoreError> {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.is_dir() {
            use crate::regular::Found;
            let mut hasher = blake3::Hasher::new();
            for (f, found) in crate::regular::walk(path, path).map_err(io_err(path))? {
                let rel = f.strip_prefix(path).unwrap_or(&f).to_string_lossy().replace('\\', "/");
                hasher.update(rel.as_bytes());
                hasher.update(&[0]);
                // What a stage cannot read inside a folder (a broken link, a pipe, a link out of the folder) is data
                // for it to skip or name, hashed by what it is, never a reason the workflow cannot be planned.
                match found {
                    Found::File => hasher.update(self.hash_external(&f)?.as_bytes()),
                    Found::Broken(target) => hasher.update(format!("broken link to {}", target.display()).as_bytes()),
                    Found::Special(what) => hasher.update(format!("special file: {what}").as_bytes()),
                    Found::Outside(target) => {
                        hasher.update(format!("link to a folder outside: {}", target.display()).as_bytes())
                    }
                };
            }
            return Ok(hasher.finalize().to_hex().to_string());
        }
        // A FIFO would block the read (and the workspace lock) forever; a device may never end.
        if let Some(what) = crate::regular::kind_of(meta.file_type()) {
            return Err(StoreError::NotRegular { path: path.to_path_buf(), what });
        }
        let abs = fs::canonicalize(path).map_err(io_err(path))?;
        let stat = stat_of(&meta);
        {
            let cache = self.stat_cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = cache.get(&abs)
                && (r.size, r.mtime_ns, r.inode) == stat
            {
                return Ok(r.hash.clone());
            }
        }
        tracing::debug!(path = %path.display(), "hashing an external file");
        let hash = hash_file(path)?;
        let record = StatRecord { size: stat.0, mtime_ns: stat.1, inode: stat.2, hash: hash.clone() };
        self.stat_cache.lock().unwrap_or_else(|e| e.into_inner()).insert(abs, record);
        *self.stat_cache_dirty.lock().unwrap_or_else(|e| e.into_inner()) = true;
        Ok(hash)
    }

    /// Saves the stat cache if it changed.
    pub fn save_stat_cache(&self) -> Result<(), StoreError> {
        let mut dirty = self.stat_cache_dirty.lock().unwrap_or_else(|e| e.into_inner());
        if *dirty {
            let cache = self.stat_cache.lock().unwrap_or_else(|e| e.into_inner());
            write_json(&self.root.join("statcache.json"), &*cache)?;
            *dirty = false;
        }
        Ok(())
    }
}

fn stat_of(meta: &fs::Metadata) -> (u64, i128, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.len(), meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128, meta.ino())
}
