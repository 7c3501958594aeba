//! Entries: `store/<key[..2]>/<key>/` with `entry.json` and `out/`, written through a working folder under `tmp/`
//! and renamed into place; their output digests, verification and removal.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::*;

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

/// Whether an entry can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    Intact,
    Missing,
    Corrupt(String),
}

impl Store {
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
