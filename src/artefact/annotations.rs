//! `annotations.toml`: the engineers' notes per root-cause cluster, bound to the members they reviewed. Each
//! `[cluster.N]` table names the cluster it was written for by the fingerprint of its members (and lists them), so
//! a rerun that renumbers the clusters carries the note to the cluster with the same members, and one that changes
//! the membership flags the note instead of attaching it to whatever cluster now has its number.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::evidence::{self, Overlap};

/// One cluster's notes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotation {
    /// The fingerprint of the members of the cluster the note was written for (`hudd annotate` fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Those members' image ids, to find the closest cluster when the membership changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    #[serde(default)]
    pub triggering_condition: String,
    #[serde(default)]
    pub hazard: String,
    #[serde(default)]
    pub countermeasure: String,
    #[serde(default)]
    pub reviewer: String,
    /// `open`, `in-review`, `closed`, ...
    #[serde(default)]
    pub status: String,
}

impl Annotation {
    /// Whether an engineer wrote anything (a template's empty table is no review).
    pub fn is_written(&self) -> bool {
        [&self.triggering_condition, &self.hazard, &self.countermeasure, &self.reviewer].iter().any(|s| !s.is_empty())
    }
}

/// The whole file: `[cluster.<number>]` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotations {
    #[serde(default)]
    pub cluster: BTreeMap<String, Annotation>,
}

/// A cluster of the current run, as annotations see it.
#[derive(Debug, Clone)]
pub struct Current {
    pub id: usize,
    pub fingerprint: String,
    pub members: Vec<String>,
}

/// An annotation attached to a current cluster, and how.
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    pub annotation: Annotation,
    /// The table it came from (`cluster.4`), when its number is not the cluster's any more.
    pub renumbered_from: Option<String>,
    /// Attached by number alone: the note has no fingerprint, so nothing proves it was written for these members.
    pub by_number_only: bool,
}

/// An annotation that is not attached to any current cluster, or attached by number alone.
#[derive(Debug, Clone, Serialize)]
pub struct Flag {
    /// Its table (`cluster.4`).
    pub table: String,
    pub problem: String,
    /// The current cluster sharing most images with the members it was written for, and their overlap.
    pub closest: Option<usize>,
    pub overlap: Option<Overlap>,
}

/// Attaches annotations to the current clusters by fingerprint; flags those whose cluster changed or vanished, those
/// with no fingerprint (attached by number, flagged), and duplicates.
pub fn bind(annotations: &Annotations, clusters: &[Current]) -> (BTreeMap<usize, Bound>, Vec<Flag>) {
    let (mut bound, mut flags) = (BTreeMap::new(), Vec::new());
    for (key, a) in &annotations.cluster {
        let table = format!("cluster.{key}");
        let target = match &a.fingerprint {
            Some(f) => match clusters.iter().find(|c| &c.fingerprint == f) {
                Some(c) => Some((c.id, key.parse::<usize>().ok() != Some(c.id), false)),
                None => {
                    let found = evidence::closest(&a.members, clusters.iter().map(|c| (c.id, c.members.as_slice())));
                    let problem = if a.members.is_empty() {
                        format!("no current cluster has the members it was written for (fingerprint {f})")
                    } else if found.is_none() {
                        format!("its {} images are in no current cluster: the cluster vanished", a.members.len())
                    } else {
                        format!("the cluster it was written for ({} images) changed its members", a.members.len())
                    };
                    flags.push(Flag {
                        table: table.clone(),
                        problem,
                        closest: found.map(|f| f.0),
                        overlap: found.map(|f| f.1),
                    });
                    None
                }
            },
            None => match key.parse::<usize>().ok().filter(|n| clusters.iter().any(|c| c.id == *n)) {
                Some(n) => {
                    flags.push(Flag {
                        table: table.clone(),
                        problem: format!(
                            "no fingerprint: attached to cluster {n} by its number alone, which a rerun may give to \
                             other images (`hudd annotate` writes fingerprints)"
                        ),
                        closest: None,
                        overlap: None,
                    });
                    Some((n, false, true))
                }
                None => {
                    flags.push(Flag {
                        table: table.clone(),
                        problem: "no fingerprint, and no current cluster has its number".into(),
                        closest: None,
                        overlap: None,
                    });
                    None
                }
            },
        };
        if let Some((id, renumbered, by_number_only)) = target {
            if bound.contains_key(&id) {
                flags.push(Flag {
                    table,
                    problem: format!("cluster {id} already has an annotation: this one is not shown"),
                    closest: Some(id),
                    overlap: None,
                });
                continue;
            }
            let renumbered_from = renumbered.then(|| format!("cluster.{key}"));
            bound.insert(id, Bound { annotation: a.clone(), renumbered_from, by_number_only });
        }
    }
    (bound, flags)
}

/// A TOML annotations file for the current clusters, fingerprints and members filled in: the notes bound to a
/// cluster by its members are kept, the others are empty with `status = "open"` (a note attached by number alone is
/// not carried into a fingerprint: nobody has checked it was written for these members). `describe` gives a comment
/// line per cluster.
pub fn template(clusters: &[Current], existing: &Annotations, describe: impl Fn(usize) -> String) -> String {
    let (mut bound, _) = bind(existing, clusters);
    bound.retain(|_, b| !b.by_number_only);
    let mut out = String::from(
        "# Annotations per root-cause cluster, written by `hudd annotate`. Each table is bound to its cluster's members\n\
         # by `fingerprint`: keep `fingerprint` and `members` as they are, fill in the rest.\n",
    );
    for c in clusters {
        let a = bound.get(&c.id).map(|b| b.annotation.clone()).unwrap_or_default();
        let table = Annotation {
            fingerprint: Some(c.fingerprint.clone()),
            members: c.members.clone(),
            status: if a.status.is_empty() { "open".into() } else { a.status },
            ..a
        };
        let mut doc = toml::Table::new();
        doc.insert(c.id.to_string(), toml::Value::try_from(&table).expect("an annotation serialises"));
        let _ = write!(out, "\n# {}\n", comment(&describe(c.id)));
        let body = toml::to_string(&toml::Table::from_iter([("cluster".to_string(), toml::Value::Table(doc))]))
            .expect("a table serialises");
        out.push_str(&body);
    }
    out
}

/// Text as a TOML comment may hold it: one line, no control character (TOML refuses them, a tab aside), each shown
/// as U+FFFD.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '\n' {
                ' '
            } else if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(id: usize, range: std::ops::Range<usize>) -> Current {
        let members: Vec<String> = range.map(|i| format!("test-{i:03}")).collect();
        Current { id, fingerprint: evidence::fingerprint(&members), members }
    }

    fn noted(c: &Current, condition: &str) -> Annotation {
        Annotation {
            fingerprint: Some(c.fingerprint.clone()),
            members: c.members.clone(),
            triggering_condition: condition.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_note_follows_its_members_across_renumbering_and_is_flagged_when_they_change() {
        let (night, fog) = (current(1, 0..10), current(2, 10..16));
        let file = Annotations {
            cluster: [("1".to_string(), noted(&night, "night")), ("2".to_string(), noted(&fog, "fog"))].into(),
        };
        // A rerun numbers fog first: the notes follow their members.
        let renumbered = [current(1, 10..16), current(2, 0..10)];
        let (bound, flags) = bind(&file, &renumbered);
        assert!(flags.is_empty(), "{flags:?}");
        assert_eq!(bound[&1].annotation.triggering_condition, "fog");
        assert_eq!(bound[&2].annotation.triggering_condition, "night");
        assert_eq!(bound[&2].renumbered_from.as_deref(), Some("cluster.1"));
        // Night loses two images: its note is flagged with the closest cluster, not reused.
        let changed = [current(1, 0..8), current(2, 10..16)];
        let (bound, flags) = bind(&file, &changed);
        assert!(!bound.contains_key(&1), "{bound:?}");
        assert_eq!(flags.len(), 1);
        assert_eq!((flags[0].table.as_str(), flags[0].closest), ("cluster.1", Some(1)));
        assert_eq!(flags[0].overlap, Some(Overlap { shared: 8, jaccard: 0.8 }));
        assert!(flags[0].problem.contains("changed its members"), "{}", flags[0].problem);
    }

    #[test]
    fn a_note_without_fingerprint_is_attached_by_number_and_flagged() {
        let file = Annotations {
            cluster: [("3".to_string(), Annotation { hazard: "h".into(), ..Default::default() })].into(),
        };
        let (bound, flags) = bind(&file, &[current(3, 0..4)]);
        assert!(bound[&3].by_number_only);
        assert!(flags[0].problem.contains("by its number alone"), "{flags:?}");
        let (bound, flags) = bind(&file, &[current(1, 0..4)]);
        assert!(bound.is_empty() && flags[0].problem.contains("no current cluster has its number"));
    }

    #[test]
    fn the_template_keeps_bound_notes_and_reads_back() {
        let clusters = [current(1, 10..16), current(2, 0..10)];
        let file = Annotations { cluster: [("1".to_string(), noted(&clusters[1], "night"))].into() };
        let text = template(&clusters, &file, |id| format!("cluster {id}"));
        let back: Annotations = toml::from_str(&text).unwrap();
        assert_eq!(back.cluster["2"].triggering_condition, "night");
        assert_eq!(back.cluster["1"].status, "open");
        assert_eq!(back.cluster["1"].fingerprint.as_deref(), Some(clusters[0].fingerprint.as_str()));
        let (bound, flags) = bind(&back, &clusters);
        assert!(flags.is_empty() && bound.len() == 2, "{flags:?}");
    }
}

/// How [`write`] left an annotations file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Nothing was there.
    New,
    /// A file was replaced; its previous version is kept at `backup`.
    Replaced { backup: std::path::PathBuf },
    /// A symbolic link was replaced by the file (its target untouched).
    ReplacedLink { target: std::path::PathBuf },
}

/// Why [`write`] refused or failed; the file it was given is as it was in every case.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path} exists: write elsewhere or pass --force (its notes that still match are carried over)", path = .0.display())]
    Exists(std::path::PathBuf),
    #[error(
        "{path} is a symbolic link to {target}: pass --force to replace the link itself with a file (its target is never written)",
        path = .path.display(), target = .target.display()
    )]
    Link { path: std::path::PathBuf, target: std::path::PathBuf },
    #[error("{path} is not a regular file ({what}): write the notes to a file", path = .path.display())]
    NotAFile { path: std::path::PathBuf, what: &'static str },
    #[error("{path}: {source} (the file is as it was)", path = .path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

/// Writes an annotations file as the store writes its entries: to a temporary file beside it, flushed to disk,
/// then renamed over it, so a full disk, a kill or Ctrl-C leaves the old notes whole. The notes are the one file of
/// a workflow that holds human work nothing can recompute, so an existing file is replaced only with `force`, and
/// its previous version is kept as `<name>~`. A symbolic link is never written through: with `force` the link
/// itself is replaced; anything else that is not a regular file (a folder, a FIFO) is refused.
pub fn write(path: &std::path::Path, text: &str, force: bool) -> Result<Written, WriteError> {
    use std::io::Write as _;
    let io = |source: std::io::Error| WriteError::Io { path: path.to_path_buf(), source };
    let existing = match std::fs::symlink_metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let written = match &existing {
        None => Written::New,
        Some(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(path).map_err(io)?;
            if !force {
                return Err(WriteError::Link { path: path.to_path_buf(), target });
            }
            Written::ReplacedLink { target }
        }
        Some(meta) if !meta.is_file() => {
            let what = if meta.is_dir() { "a folder" } else { "a device, FIFO or socket" };
            return Err(WriteError::NotAFile { path: path.to_path_buf(), what });
        }
        Some(_) if !force => return Err(WriteError::Exists(path.to_path_buf())),
        Some(_) => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push("~");
            Written::Replaced { backup: path.with_file_name(name) }
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    if let Written::Replaced { backup } = &written {
        // A hard link keeps the old notes without copying them (no space needed); a copy where links cannot be made.
        let _ = std::fs::remove_file(backup);
        std::fs::hard_link(path, backup)
            .or_else(|_| std::fs::copy(path, backup).map(|_| ()))
            .map_err(|source| WriteError::Io { path: backup.clone(), source })?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(written)
}

#[cfg(test)]
mod write_tests {
    use super::{WriteError, Written, write};

    #[test]
    fn an_existing_file_is_replaced_only_with_force_and_kept_as_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let notes = dir.path().join("notes.toml");
        assert_eq!(write(&notes, "a = 1\n", false).unwrap(), Written::New);
        assert!(matches!(write(&notes, "a = 2\n", false), Err(WriteError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&notes).unwrap(), "a = 1\n");
        let backup = dir.path().join("notes.toml~");
        assert_eq!(write(&notes, "a = 2\n", true).unwrap(), Written::Replaced { backup: backup.clone() });
        assert_eq!(std::fs::read_to_string(&notes).unwrap(), "a = 2\n");
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "a = 1\n");
        // The backup is a file of its own: writing again keeps the new previous version.
        write(&notes, "a = 3\n", true).unwrap();
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "a = 2\n");
    }

    #[test]
    fn a_symbolic_link_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let precious = outside.path().join("precious.txt");
        std::fs::write(&precious, "keep me").unwrap();
        let link = dir.path().join("out.toml");
        std::os::unix::fs::symlink(&precious, &link).unwrap();
        assert!(matches!(write(&link, "a = 1\n", false), Err(WriteError::Link { .. })));
        assert!(matches!(write(&link, "a = 1\n", true), Ok(Written::ReplacedLink { .. })));
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        // A dangling link does not pass for "nothing there": no file appears where it points.
        let dangling = dir.path().join("new.toml");
        let elsewhere = outside.path().join("new.toml");
        std::os::unix::fs::symlink(&elsewhere, &dangling).unwrap();
        assert!(matches!(write(&dangling, "a = 1\n", false), Err(WriteError::Link { .. })));
        assert!(!elsewhere.exists());
    }

    #[test]
    fn a_fifo_or_a_folder_is_refused_even_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.toml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        assert!(matches!(write(&fifo, "a = 1\n", true), Err(WriteError::NotAFile { .. })));
        assert!(matches!(write(dir.path(), "a = 1\n", true), Err(WriteError::NotAFile { what: "a folder", .. })));
    }
}
