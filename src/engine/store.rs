//! The content-addressed artefact store under `.hudd/`: the only writer there.
//!
//! Layout (all under the workspace's `.hudd/`):
//! - `store/<key[..2]>/<key>/entry.json` and `out/`: one entry per stage key; `entry.json` is written last,
//!   inside a temporary folder that is renamed into place, so an entry that has one is complete.
//! - `specs/<key>.json`: what `hudd exec <key>` needs to run a stage alone.
//! - `state/<workflow>.json`: the key material each stage id last ran with, to say why a stage is stale.
//! - `runs/`: provenance of every run. `statcache.json`: content hashes of external files by size and mtime.
//! - `lock`: the workspace lock; `tmp/`: entries being written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::engine::stage::{ManifestRef, OutputSpec};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: unreadable store record: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("no stage spec for key `{key}` in {dir} (run `hudd run` or `hudd plan` on its workflow first)")]
    NoSpec { key: String, dir: PathBuf },
    #[error("stage `{stage}` did not write its declared output `{output}` ({path})")]
    MissingOutput { stage: String, output: String, path: PathBuf },
    #[error("input `{output}` of key {key} is not in the store: run its producer first")]
    MissingInput { key: String, output: String },
    #[error("{path} is {what}, not a regular file or folder: hudd reads only those")]
    NotRegular { path: PathBuf, what: &'static str },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// One file of an output, as recorded in `entry.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileDigest {
    /// Path relative to the entry's `out/` folder, `/`-separated.
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

/// A declared output of an entry: its path inside `out/` and every file under it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputRecord {
    pub path: String,
    pub dir: bool,
    pub files: Vec<FileDigest>,
}

impl OutputRecord {
    /// The output's content: blake3 over its files' relative paths, sizes and digests. Equal bytes, equal digest,
    /// whichever stage and key wrote them.
    pub fn digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        let base = format!("{}/", self.path);
        for f in &self.files {
            let rel = f.path.strip_prefix(&base).unwrap_or(&f.path);
            hasher.update(format!("{rel}\0{}\0{}\n", f.size, f.blake3).as_bytes());
        }
        hasher.finalize().to_hex().to_string()
    }
}

/// The manifest of a complete store entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub workflow: String,
    pub stage: String,
    pub kind: String,
    pub version: u32,
    pub outputs: BTreeMap<String, OutputRecord>,
    pub created: String,
    pub seconds: f64,
    /// The machine that computed it (absent in entries written before hudd recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `cpu` or `cuda (n devices)` on that machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The execution settings it ran with (threads, inference batch sizes): not part of its key.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

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

/// Whether an entry can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    Intact,
    Missing,
    Corrupt(String),
}

/// The key material each stage id of a workflow last ran with.
pub type WorkflowState = BTreeMap<String, StateRecord>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateRecord {
    pub key: String,
    pub material: KeyMaterial,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatRecord {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    hash: String,
}

/// A workspace's `.hudd/` folder, and the entries it uses: under `.hudd/` too, or in a store shared by several
/// workspaces (`--store DIR`, `HUDD_STORE`). Entries, specs, aliases, key locks and working folders live in the
/// shared part; state, run records, the workspace lock, the stat cache and Slurm records stay with the workspace.
pub struct Store {
    workspace: PathBuf,
    root: PathBuf,
    /// Where entries live: `root`, or a store shared by several workspaces.
    shared: PathBuf,
    stat_cache: Mutex<HashMap<PathBuf, StatRecord>>,
    stat_cache_dirty: Mutex<bool>,
}

impl Store {
    /// Opens (creating its folders as needed) the store of a workspace, its entries in the workspace.
    pub fn open(workspace: &Path) -> Result<Store, StoreError> {
        Store::open_shared(workspace, None)
    }

    /// Opens the store of a workspace whose entries live in `shared` (when given), registering the workspace
    /// there so that `hudd gc` from any workspace keeps what this one reaches.
    pub fn open_shared(workspace: &Path, shared: Option<&Path>) -> Result<Store, StoreError> {
        let root = Store::root_of(workspace);
        for sub in ["state", "runs"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let shared = shared.map_or_else(|| root.clone(), Path::to_path_buf);
        for sub in ["store", "tmp", "specs", "locks", "aliases", "workspaces"] {
            let dir = shared.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let cache_path = root.join("statcache.json");
        let stat_cache = match fs::read(&cache_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => HashMap::new(),
        };
        let store = Store {
            workspace: workspace.to_path_buf(),
            root,
            shared,
            stat_cache: Mutex::new(stat_cache),
            stat_cache_dirty: Mutex::new(false),
        };
        if store.is_shared() {
            let me = fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf());
            let text = me.display().to_string();
            let path = store.shared.join("workspaces").join(&blake3::hash(text.as_bytes()).to_hex()[..16]);
            if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                fs::write(&path, &text).map_err(io_err(&path))?;
            }
        }
        Ok(store)
    }

    /// Whether the entries live outside the workspace, in a store other workspaces may share.
    pub fn is_shared(&self) -> bool {
        self.shared != self.root
    }

    /// Where the entries live.
    pub fn shared_root(&self) -> &Path {
        &self.shared
    }

    /// The workspaces registered in a shared store that still hold a `.hudd/` folder, each once however many paths
    /// lead to it (a bind mount or two network paths to one folder, compared by device and inode: locking it twice
    /// would wait on itself), and the registered folders skipped, with why. This workspace alone when the store is
    /// its own.
    pub fn workspaces(&self) -> (Vec<PathBuf>, Vec<(PathBuf, &'static str)>) {
        use std::os::unix::fs::MetadataExt;
        if !self.is_shared() {
            return (vec![self.workspace.clone()], Vec::new());
        }
        let mut registered: Vec<PathBuf> = fs::read_dir(self.shared.join("workspaces"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .map(PathBuf::from)
            .collect();
        registered.sort();
        let (mut kept, mut skipped, mut seen) = (Vec::new(), Vec::new(), std::collections::BTreeSet::new());
        for dir in registered {
            match fs::metadata(&dir) {
                Err(_) => skipped.push((dir, "it no longer exists")),
                Ok(_) if !Store::root_of(&dir).is_dir() => skipped.push((dir, "it holds no .hudd/ folder")),
                Ok(meta) if !seen.insert((meta.dev(), meta.ino())) => {
                    skipped.push((dir, "it is the same folder as another registered path"))
                }
                Ok(_) => kept.push(dir),
            }
        }
        // A vanished folder is no news; the others are said.
        skipped.retain(|(_, why)| *why != "it no longer exists");
        (kept, skipped)
    }

    /// Where a workspace's store lives (`.hudd/`), whether or not it exists yet.
    pub fn root_of(workspace: &Path) -> PathBuf {
        workspace.join(".hudd")
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.shared.join("store").join(&key[..2.min(key.len())]).join(key)
    }

    /// Reads a complete entry's record, if there is one.
    pub fn entry(&self, key: &str) -> Option<Entry> {
        let bytes = fs::read(self.entry_dir(key).join("entry.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A hit needs the entry and every output file it lists, at its recorded size.
    pub fn state(&self, key: &str) -> EntryState {
        let dir = self.entry_dir(key);
        let Ok(bytes) = fs::read(dir.join("entry.json")) else { return EntryState::Missing };
        let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) else {
            return EntryState::Corrupt("entry.json unreadable".into());
        };
        for (name, output) in &entry.outputs {
            for f in &output.files {
                match fs::metadata(dir.join("out").join(&f.path)) {
                    Ok(m) if m.len() == f.size => {}
                    Ok(_) => return EntryState::Corrupt(format!("output `{name}`: {} changed size", f.path)),
                    Err(_) => return EntryState::Corrupt(format!("output `{name}`: {} missing", f.path)),
                }
            }
        }
        EntryState::Intact
    }

    /// Where an output of a complete entry lies.
    pub fn output_path(&self, key: &str, output: &str) -> Result<PathBuf, StoreError> {
        let entry =
            self.entry(key).ok_or_else(|| StoreError::MissingInput { key: key.into(), output: output.into() })?;
        let record = entry
            .outputs
            .get(output)
            .ok_or_else(|| StoreError::MissingInput { key: key.into(), output: output.into() })?;
        Ok(self.entry_dir(key).join("out").join(&record.path))
    }

    /// A fresh temporary folder for an entry being written; deleted when dropped unless committed.
    pub fn begin(&self, key: &str) -> Result<tempfile::TempDir, StoreError> {
        let tmp = self.shared.join("tmp");
        let dir = tempfile::Builder::new().prefix(&format!("{key}.")).tempdir_in(&tmp).map_err(io_err(&tmp))?;
        let out = dir.path().join("out");
        fs::create_dir_all(&out).map_err(io_err(&out))?;
        Ok(dir)
    }

    /// Hashes the declared outputs written under `tmp/out`, writes `entry.json`, and renames the folder into place.
    pub fn commit(
        &self,
        tmp: tempfile::TempDir,
        spec: &Spec,
        outputs: &[OutputSpec],
        seconds: f64,
        device: Option<String>,
    ) -> Result<Entry, StoreError> {
        let records = digest_outputs(&tmp.path().join("out"), spec, outputs)?;
        let entry = Entry {
            key: spec.key.clone(),
            workflow: spec.workflow.clone(),
            stage: spec.stage.clone(),
            kind: spec.material.kind.clone(),
            version: spec.material.version,
            outputs: records,
            created: now(),
            seconds,
            host: crate::runtime::host(),
            device,
            settings: spec.settings.clone(),
        };
        write_json(&tmp.path().join("entry.json"), &entry)?;
        sync_dir(tmp.path())?;
        let dest = self.entry_dir(&spec.key);
        let parent = dest.parent().expect("entry dirs have a parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        if dest.exists() {
            if self.state(&spec.key) == EntryState::Intact {
                // Another process committed the same key first; its entry is as good as ours.
                return Ok(entry);
            }
            self.remove_entry(&spec.key)?;
        }
        let tmp_path = tmp.keep();
        if let Err(e) = fs::rename(&tmp_path, &dest) {
            let _ = fs::remove_dir_all(&tmp_path);
            // Another process renamed the same key into place in between: its entry is as good as ours.
            if self.state(&spec.key) == EntryState::Intact {
                return Ok(entry);
            }
            return Err(StoreError::Io { path: dest, source: e });
        }
        // The rename itself is durable once its folder is.
        sync_dir(parent)?;
        Ok(entry)
    }

    /// Removes an entry so that it never looks complete on the way: `entry.json` goes first.
    pub fn remove_entry(&self, key: &str) -> Result<(), StoreError> {
        let dir = self.entry_dir(key);
        let record = dir.join("entry.json");
        match fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io { path: record, source: e }),
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { path: dir, source: e }),
        }
    }

    /// The keys of every folder in the store, complete or not.
    pub fn keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.scan()?.0)
    }

    /// Everything under `store/` that is not an entry in its place (a folder named like no key, or in the wrong
    /// shard, or a stray file): what `hudd verify` removes.
    pub fn strays(&self) -> Result<Vec<PathBuf>, StoreError> {
        Ok(self.scan()?.1)
    }

    /// The keys of `store/<key[..2]>/<key>/` folders, and every other path there.
    fn scan(&self) -> Result<(Vec<String>, Vec<PathBuf>), StoreError> {
        let (mut keys, mut strays) = (Vec::new(), Vec::new());
        let store = self.shared.join("store");
        for shard in fs::read_dir(&store).map_err(io_err(&store))? {
            let shard = shard.map_err(io_err(&store))?.path();
            if !shard.is_dir() {
                strays.push(shard);
                continue;
            }
            let prefix = shard.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for e in fs::read_dir(&shard).map_err(io_err(&shard))? {
                let e = e.map_err(io_err(&shard))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if valid_key(&name) && name.starts_with(&prefix) && prefix.len() == 2 && e.path().is_dir() {
                    keys.push(name);
                } else {
                    strays.push(e.path());
                }
            }
        }
        keys.sort();
        strays.sort();
        Ok((keys, strays))
    }

    /// Removes a stray path under `store/` (see [`Store::strays`]); nothing outside `store/`.
    pub fn remove_stray(&self, path: &Path) -> Result<(), StoreError> {
        let store = self.shared.join("store");
        if !path.starts_with(&store) || path == store {
            return Ok(());
        }
        let gone = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
        match gone {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::Io { path: path.to_path_buf(), source: e })
            }
            _ => Ok(()),
        }
    }

    /// Re-hashes every file of an entry; `Ok(None)` when intact, `Ok(Some(reason))` when not.
    pub fn verify_entry(&self, key: &str) -> Result<Option<String>, StoreError> {
        let Some(entry) = self.entry(key) else { return Ok(Some("no readable entry.json".into())) };
        let out = self.entry_dir(key).join("out");
        for (name, record) in &entry.outputs {
            for f in &record.files {
                let path = out.join(&f.path);
                match hash_file(&path) {
                    Ok(h) if h == f.blake3 => {}
                    Ok(_) => return Ok(Some(format!("output `{name}`: {} does not match its hash", f.path))),
                    Err(_) => return Ok(Some(format!("output `{name}`: {} missing", f.path))),
                }
            }
        }
        Ok(None)
    }

    /// Forgets the spec of a key (`hudd gc`, with its entry).
    pub fn remove_spec(&self, key: &str) {
        let _ = fs::remove_file(self.shared.join("specs").join(format!("{key}.json")));
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

    pub fn write_spec(&self, spec: &Spec) -> Result<(), StoreError> {
        write_json(&self.shared.join("specs").join(format!("{}.json", spec.key)), spec)
    }

    pub fn read_spec(&self, key: &str) -> Result<Spec, StoreError> {
        let dir = self.shared.join("specs");
        let path = dir.join(format!("{key}.json"));
        let bytes = fs::read(&path).map_err(|_| StoreError::NoSpec { key: key.into(), dir: dir.clone() })?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path, source })
    }

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

    /// Content hash of a file or folder outside the store, reusing the last hash while size, mtime and inode hold.
    pub fn hash_external(&self, path: &Path) -> Result<String, StoreError> {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.is_dir() {
            use std::os::unix::fs::MetadataExt;
            let mut hasher = blake3::Hasher::new();
            let mut files = Vec::new();
            walk(path, &mut files, &mut [(meta.dev(), meta.ino())].into_iter().collect())?;
            files.sort();
            for f in files {
                let rel = f.strip_prefix(path).unwrap_or(&f).to_string_lossy().replace('\\', "/");
                hasher.update(rel.as_bytes());
                hasher.update(&[0]);
                // A broken link inside a folder is data (a bad image for the stage to skip or name), not a reason
                // the workflow cannot be planned.
                match broken_link(&f) {
                    Some(target) => hasher.update(format!("broken link to {}", target.display()).as_bytes()),
                    None => hasher.update(self.hash_external(&f)?.as_bytes()),
                };
            }
            return Ok(hasher.finalize().to_hex().to_string());
        }
        if !meta.is_file() {
            // A FIFO would block the read (and the workspace lock) forever; a device may never end.
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            let what = if t.is_fifo() {
                "a named pipe"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else if t.is_socket() {
                "a socket"
            } else {
                "a special file"
            };
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

    /// Takes the workspace lock, waiting (with a message through `waiting`) while another run holds it.
    pub fn lock(&self, waiting: impl FnOnce(&str)) -> Result<WorkspaceLock, StoreError> {
        let path = self.root.join("lock");
        let file =
            File::options().create(true).truncate(false).write(true).read(true).open(&path).map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(self.root.join("lock.pid")).unwrap_or_default();
                let holder = holder.trim();
                waiting(&format!(
                    "another hudd run holds this workspace ({}); waiting for it to finish",
                    if holder.is_empty() { "pid unknown".to_string() } else { format!("pid {holder}") }
                ));
                file.lock().map_err(io_err(&path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::Io { path, source: e }),
        }
        let _ = fs::write(self.root.join("lock.pid"), std::process::id().to_string());
        Ok(WorkspaceLock { _file: file })
    }

    /// A per-key lock, so that two processes never compute the same entry at once.
    /// Held (shared) by `hudd exec` while it runs a stage, which takes no workspace lock (a Slurm follower holds
    /// that); `hudd gc` takes it exclusively, so it never removes the working folder of a stage that is running.
    pub fn lock_exec(&self, exclusive: bool, waiting: impl FnOnce(&str)) -> Result<WorkspaceLock, StoreError> {
        let path = self.root.join("exec.lock");
        let file =
            File::options().create(true).truncate(false).write(true).read(true).open(&path).map_err(io_err(&path))?;
        let tried = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match tried {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                waiting(if exclusive {
                    "a stage runs through `hudd exec` in this workspace; waiting for it to finish"
                } else {
                    "`hudd gc` is cleaning this workspace's store; waiting for it to finish"
                });
                if exclusive { file.lock() } else { file.lock_shared() }.map_err(io_err(&path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::Io { path, source: e }),
        }
        Ok(WorkspaceLock { _file: file })
    }

    /// Forgets the aliases that lead to `key` (after its entry was dropped).
    pub fn remove_aliases_to(&self, keys: &BTreeSet<String>) {
        for e in fs::read_dir(self.shared.join("aliases")).into_iter().flatten().flatten() {
            if fs::read_to_string(e.path()).is_ok_and(|to| keys.contains(to.trim())) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    pub fn lock_key(&self, key: &str) -> Result<WorkspaceLock, StoreError> {
        let path = self.shared.join("locks").join(key);
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(WorkspaceLock { _file: file })
    }

    /// Removes leftovers of interrupted writes.
    pub fn clean_tmp(&self) -> Result<usize, StoreError> {
        let tmp = self.shared.join("tmp");
        let mut n = 0;
        for e in fs::read_dir(&tmp).map_err(io_err(&tmp))?.flatten() {
            let p = e.path();
            let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            n += 1;
        }
        Ok(n)
    }
}

/// Held while a run uses the workspace; released when dropped (or when the process dies).
pub struct WorkspaceLock {
    _file: File,
}

fn stat_of(meta: &fs::Metadata) -> (u64, i128, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.len(), meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128, meta.ino())
}

/// Every file under `dir`, following links to folders once each: a folder already walked (by device and inode: a
/// link back to `..` or to itself) is not entered again. Links that lead nowhere (dangling, or a loop of links) are
/// listed like files; [`Store::hash_external`] hashes them by where they point.
fn walk(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    seen: &mut std::collections::BTreeSet<(u64, u64)>,
) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = e.map_err(io_err(dir))?.path();
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                if seen.insert((meta.dev(), meta.ino())) {
                    walk(&path, files, seen)?;
                }
            }
            _ => files.push(path),
        }
    }
    Ok(())
}

/// A link that leads nowhere (dangling, or a loop of links): where it points, for hashing; `None` for anything else.
fn broken_link(path: &Path) -> Option<PathBuf> {
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    (is_link && fs::metadata(path).is_err()).then(|| fs::read_link(path).unwrap_or_default())
}

/// Flushes a folder's entries (new names, renames) to the disk.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
}

/// Every declared output of a stage written under `out` (a working folder's `out/`), with its files' digests; an
/// output the kind declares but the stage did not write is an error naming it.
pub fn digest_outputs(
    out: &Path,
    spec: &Spec,
    outputs: &[OutputSpec],
) -> Result<BTreeMap<String, OutputRecord>, StoreError> {
    let mut records = BTreeMap::new();
    for o in outputs {
        let path = out.join(o.rel_path());
        let ok = if o.is_dir() { path.is_dir() } else { path.is_file() };
        if !ok {
            return Err(StoreError::MissingOutput { stage: spec.stage.clone(), output: o.name.into(), path });
        }
        let files = digest_tree(out, &path)?;
        records.insert(o.name.to_string(), OutputRecord { path: o.rel_path().to_string(), dir: o.is_dir(), files });
    }
    Ok(records)
}

/// Digests of every file under `path` (a file or a folder), relative to `base`, each file flushed to the disk
/// (fsync) through the handle it was hashed with, then the folders holding them, as git and SQLite do before they
/// make data visible: an entry that survives a power loss has its bytes too.
fn digest_tree(base: &Path, path: &Path) -> Result<Vec<FileDigest>, StoreError> {
    let mut files = Vec::new();
    if path.is_dir() {
        walk(path, &mut files, &mut BTreeSet::new())?;
    } else {
        files.push(path.to_path_buf());
    }
    files.sort();
    let mut dirs: BTreeSet<PathBuf> = files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
    if path.is_dir() {
        dirs.insert(path.to_path_buf());
    }
    let digests = files
        .into_iter()
        .map(|f| {
            let mut file = File::open(&f).map_err(io_err(&f))?;
            let blake3 = hash_reader(&mut file).map_err(io_err(&f))?;
            file.sync_all().map_err(io_err(&f))?;
            let size = file.metadata().map_err(io_err(&f))?.len();
            let rel = f.strip_prefix(base).unwrap_or(&f).to_string_lossy().replace('\\', "/");
            Ok(FileDigest { path: rel, size, blake3 })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    for d in dirs {
        sync_dir(&d)?;
    }
    Ok(digests)
}

pub fn hash_file(path: &Path) -> Result<String, StoreError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    hash_reader(&mut file).map_err(io_err(path))
}

/// blake3 of everything a reader yields, read in 64 KiB blocks.
fn hash_reader(reader: &mut impl Read) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Whether a text is a store key (64 lowercase hex digits), so it may name a file.
pub fn valid_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Writes JSON through a temporary file and a rename, so readers never see half a record.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(value).expect("store records serialise");
    let dir = path.parent().expect("store records live in a folder");
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(&bytes).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| StoreError::Io { path: path.to_path_buf(), source: e.error })?;
    Ok(())
}

/// The current time as RFC 3339, for records (never inside artefacts).
pub fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Millisecond).map(|t| t.to_string()).unwrap_or_default()
}
