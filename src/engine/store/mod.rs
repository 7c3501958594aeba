//! The content-addressed artefact store under `.hudd/`: the only writer there.
//!
//! Layout (all under the workspace's `.hudd/`):
//! - `store/<key[..2]>/<key>/entry.json` and `out/`: one entry per stage key; `entry.json` is written last,
//!   inside a temporary folder that is renamed into place, so an entry that has one is complete.
//! - `specs/<key>.json`: what `hudd exec <key>` needs to run a stage alone.
//! - `state/<workflow>.json`: the key material each stage id last ran with, to say why a stage is stale.
//! - `views/<workflow>.json`: the key whose outputs `reports/<workflow>/` shows, per stage id.
//! - `runs/`: provenance of every run. `statcache.json`: content hashes of external files by size, mtime and inode.
//! - `lock` (and `lock.pid`): the workspace lock; `exec.lock`: held shared by `hudd exec`, exclusively by `hudd gc`.
//! - `slurm/`: job scripts, logs and the job computing each key.
//! - With a shared store (`--store`), `store/`, `specs/`, `aliases/` (provisional key → final key), `locks/` (one per
//!   key), `tmp/` (entries being written) and `workspaces/` (every workspace using it) live there; otherwise here.
//!
//! One file per concern: `entries` (entries and their digests), `keys` (key material, specs, aliases, external
//! hashes), `records` (state, views, runs, Slurm records), `locks`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::engine::stage::{ManifestRef, OutputSpec};

mod entries;
mod keys;
mod locks;
mod records;

pub use entries::{Entry, EntryState, FileDigest, OutputRecord, digest_outputs, hash_file};
pub use keys::{InputKey, KeyMaterial, Producer, Spec};
pub use locks::WorkspaceLock;
pub use records::{StateRecord, WorkflowState};

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
}

/// Flushes a folder's entries (new names, renames) to the disk.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
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
    stamp(jiff::Timestamp::now())
}

/// A time as `now` writes it: always three digits of milliseconds (`…:02.500Z`, not `…:02.5Z`), so that run
/// records named by it sort by time (`02.5Z` would sort after `02.56Z`).
fn stamp(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Millisecond).map(|t| format!("{t:.3}")).unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatRecord {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    hash: String,
}

/// Every file under `dir` (a stage's output folder), following links to folders once each: a folder already walked
/// (by device and inode: a link back to `..` or to itself) is not entered again. Folders outside the store are walked
/// by [`crate::regular::walk`].
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

#[cfg(test)]
mod tests {
    #[test]
    fn run_stamps_have_three_digits_of_milliseconds_and_sort_by_time() {
        let at = |ms: i64| super::stamp(jiff::Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap());
        assert_eq!(at(500), "2023-11-14T22:13:20.500Z");
        assert_eq!(at(0), "2023-11-14T22:13:20.000Z");
        let mut stamps: Vec<String> = [560, 500, 5, 999, 50].iter().map(|&ms| at(ms)).collect();
        stamps.sort();
        assert_eq!(stamps, [5, 50, 500, 560, 999].iter().map(|&ms| at(ms)).collect::<Vec<_>>());
    }
}
