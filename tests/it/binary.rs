//! The `hudd` binary itself, as a user runs it: exit codes, stderr, and no hang with progress on stderr.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Ws;

/// Runs the binary in a workspace with a time limit; (exit code, stdout, stderr).
fn hudd(ws: &Ws, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hudd"))
        .current_dir(ws.path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let _ = status;
            return (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into(),
                String::from_utf8_lossy(&out.stderr).into(),
            );
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("hudd {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_with_progress_on_stderr_finishes_and_a_rerun_is_all_cached() {
    let ws = Ws::new();
    ws.write(
        "w.toml",
        "[workflow]\nname = \"bin\"\nseed = 2\n[[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"signs\"\nsize = 16\nsplits = { train = { count = 300 } }\n",
    );
    let (code, out, err) = hudd(&ws, &["run", "w.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "stdout carries only requested output: {out}");
    assert!(err.contains("data: done in"), "{err}");
    assert!(err.contains("bin: 1 ran, 0 cached"), "{err}");
    assert!(ws.path().join("reports/bin/data/sheet.png").exists());
    let (code, _, err) = hudd(&ws, &["run", "w.toml"]);
    assert_eq!(code, 0);
    assert!(err.contains("bin: 0 ran, 1 cached"), "{err}");
    let (code, out, _) = hudd(&ws, &["plan", "--json", "w.toml"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["stages"][0]["state"], "fresh");
}

#[test]
fn a_bad_manifest_exits_with_two_and_a_located_message() {
    let ws = Ws::new();
    ws.write("w.toml", "[workflow]\nname = \"bin\"\n[[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"signs\"\nsplits = { train = { count = 10 } }\nsize = 2000\n");
    let (code, _, err) = hudd(&ws, &["run", "w.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid `size`: must be between 16 and 512 pixels, got 2000"), "{err}");
    assert!(err.contains("w.toml:8:8"), "{err}");
    assert!(!ws.path().join(".hudd").exists());
}

/// Every stage's output digests, from the workspace's recorded state.
fn outputs(ws: &Ws, workflow: &str) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
    let store = ws.store();
    store
        .read_state(workflow)
        .into_iter()
        .map(|(stage, record)| {
            let entry = store.entry(&record.key).unwrap();
            let files = entry.outputs.values().flat_map(|o| o.files.iter().map(|f| (f.path.clone(), f.blake3.clone())));
            (stage, files.collect())
        })
        .collect()
}

#[test]
fn a_run_killed_mid_stage_leaves_no_half_entry_and_a_rerun_gives_the_same_bytes() {
    let tiny = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let text = format!(
        "[workflow]\nname = \"kill\"\nseed = 2\n\
         [[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"signs\"\nsize = 32\n\
         splits = {{ train = {{ count = 300 }}, test = {{ count = 100 }} }}\n\
         [[stage]]\nid = \"train\"\nkind = \"train\"\ndataset = \"data.dataset\"\narchitecture = \"{tiny}\"\n\
         epochs = 30\nbatch_size = 16\nvalidation = 0.0\ndevice = \"cpu\"\nthreads = 1\n\
         [[stage]]\nid = \"test\"\nkind = \"test\"\nmodel = \"train.model\"\ndataset = \"data.dataset\"\nthreads = 1\n"
    );
    // A clean run, for the bytes to compare with.
    let clean = Ws::new();
    clean.write("w.toml", &text);
    assert_eq!(hudd(&clean, &["run", "w.toml"]).0, 0);
    // Killed with SIGKILL while training: `data` is stored, `train` is being written.
    let ws = Ws::new();
    ws.write("w.toml", &text);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hudd"))
        .current_dir(ws.path())
        .args(["run", "w.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let tmp = ws.path().join(".hudd/tmp");
    loop {
        // Entries live in `store/<first two characters>/<key>`, the prefix folder made before the rename that
        // commits: count committed entries, not prefix folders.
        let stored = ws
            .path()
            .join(".hudd/store")
            .read_dir()
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|prefix| prefix.path().read_dir().into_iter().flatten().flatten())
            .filter(|entry| entry.path().join("entry.json").exists())
            .count();
        let working = tmp.read_dir().map(|d| d.count()).unwrap_or(0);
        if stored >= 1 && working >= 1 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(120), "training never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Nothing half-written counts as an entry: every entry verifies, and `train` and `test` are stale.
    let (code, out, _) = hudd(&ws, &["verify"]);
    assert_eq!(code, 0, "{out}");
    let (_, plan, _) = hudd(&ws, &["plan", "w.toml"]);
    assert!(plan.contains("fresh  data") && plan.contains("stale  train") && plan.contains("stale  test"), "{plan}");
    let (code, _, err) = hudd(&ws, &["run", "w.toml"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(outputs(&ws, "kill"), outputs(&clean, "kill"), "the rerun gives other bytes than a clean run");
}

/// A small tmpfs, unmounted when dropped; an error where this machine does not let a test mount one.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_fails_the_stage_leaves_no_entry_and_gc_removes_nothing() {
    // Mounting needs root or CAP_SYS_ADMIN, which CI has (it runs as root in its container); without it the test
    // fails rather than passing unchecked.
    let disk = SmallDisk::mount("4m").unwrap_or_else(|why| {
        panic!("this test mounts a 4 MiB tmpfs to fill, and this machine refused ({why}): run it as root or with CAP_SYS_ADMIN")
    });
    let ws = disk.dir.path();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hudd")).current_dir(ws).args(args).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let manifest = |count: usize| {
        format!(
            "[workflow]\nname = \"full\"\n[[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"signs\"\nsize = 32\n\
             splits = {{ train = {{ count = {count} }} }}\n"
        )
    };
    std::fs::create_dir_all(ws.join("workflows")).unwrap();
    // 2,000 images of 32×32×3 are 6 MB: the disk fills while the stage writes.
    std::fs::write(ws.join("workflows/w.toml"), manifest(2000)).unwrap();
    let (code, err) = run(&["run", "workflows/w.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let (code, err) = run(&["verify"]);
    assert_eq!(code, 0, "a failed stage left something in the store: {err}");
    // A workflow that fits, then a disk filled to the brim: gc cannot plan (it cannot save what it hashed), so it
    // removes nothing.
    std::fs::write(ws.join("workflows/w.toml"), manifest(50)).unwrap();
    let (code, err) = run(&["run", "workflows/w.toml"]);
    assert_eq!(code, 0, "{err}");
    let store = hudd::engine::store::Store::open(ws).unwrap();
    let keys = store.keys().unwrap();
    assert_eq!(keys.len(), 1);
    std::fs::write(ws.join("workflows/extra.txt"), "touch").unwrap();
    let mut filler = std::fs::File::create(ws.join("filler")).unwrap();
    let block = vec![7u8; 1 << 16];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    let (_, _) = run(&["gc"]);
    assert!(store.entry(&keys[0]).is_some(), "gc removed an entry a manifest reaches while the disk was full");
}

#[test]
fn every_output_file_and_entry_json_is_flushed_to_disk_before_the_entry_appears() {
    // strace (installed by scripts/deps.sh) records, in order, the fsync calls with the path of each descriptor
    // (`-y`) and the renames of a run that stores one entry.
    let ws = Ws::new();
    ws.write(
        "w.toml",
        "[workflow]\nname = \"sync\"\n[[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"signs\"\nsize = 16\n\
         splits = { train = { count = 10 } }\n",
    );
    let workspace = ws.path().canonicalize().unwrap();
    let log = workspace.join("strace.log");
    let status = Command::new("strace")
        .args(["-f", "-y", "-s", "4096", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2", "-o"])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_hudd"))
        .args(["--workspace", workspace.to_str().unwrap(), "run", workspace.join("w.toml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("strace runs (scripts/deps.sh installs it)");
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" = 0")).collect();
    // The quoted paths of a call: a rename's source and destination, or the path strace shows for an fsync's fd.
    let quoted = |l: &str| -> Vec<String> { l.split('"').skip(1).step_by(2).map(str::to_string).collect() };
    let synced = |l: &str| -> Option<String> {
        let call = l.find("fsync(").or_else(|| l.find("fdatasync("))?;
        let rest = &l[call..];
        Some(rest[rest.find('<')? + 1..rest.find(">)")?].to_string())
    };
    let entry = ws.store().keys().unwrap();
    let dest = ws.store().entry_dir(&entry[0]).canonicalize().unwrap();
    let dest = dest.to_str().unwrap();
    // The rename that makes the entry appear, and the working folder it came from.
    let appear = lines
        .iter()
        .position(|l| l.contains("rename") && quoted(l).last().is_some_and(|d| d == dest))
        .unwrap_or_else(|| panic!("no rename to {dest} in:\n{text}"));
    let source = quoted(lines[appear])[0].clone();
    let before: Vec<String> = lines[..appear].iter().filter_map(|l| synced(l)).collect();
    // Every file of the entry was flushed under its working name before the rename, entry.json included (it is
    // written under a temporary name and renamed to entry.json, flushed before that rename too).
    let mut files = Vec::new();
    let mut todo = vec![std::path::PathBuf::from(dest)];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() { todo.push(path) } else { files.push(path) }
        }
    }
    assert!(files.len() > 2, "{files:?}");
    for file in &files {
        let working = format!("{source}{}", &file.to_str().unwrap()[dest.len()..]);
        let flushed = if file.ends_with("entry.json") {
            let renamed = lines[..appear]
                .iter()
                .position(|l| l.contains("rename") && quoted(l).last() == Some(&working))
                .unwrap_or_else(|| panic!("entry.json was not renamed into {source} before the entry appeared"));
            let temporary = quoted(lines[renamed])[0].clone();
            lines[..renamed].iter().filter_map(|l| synced(l)).any(|p| p == temporary)
        } else {
            before.contains(&working)
        };
        assert!(flushed, "{working} was not flushed before the entry appeared:\n{text}");
    }
    // The working folder itself (its new names) before, and the folder holding the entry (the rename) after.
    assert!(before.contains(&source), "{source} not flushed before the rename:\n{text}");
    let parent = std::path::Path::new(dest).parent().unwrap().to_str().unwrap().to_string();
    assert!(
        lines[appear + 1..].iter().filter_map(|l| synced(l)).any(|p| p == parent),
        "{parent} not flushed after the rename:\n{text}"
    );
}

/// A report folder with `clusters` clusters of 20 images each, and the notes file it names.
fn report_with_clusters(ws: &Ws, clusters: usize) {
    let clusters: Vec<serde_json::Value> = (1..=clusters)
        .map(|id| {
            let members: Vec<String> = (0..20).map(|i| format!("test-{id:03}-{i:03}")).collect();
            serde_json::json!({ "id": id, "size": 20, "description": "night 0.62–0.98 share", "members": members })
        })
        .collect();
    let evidence = serde_json::json!({
        "schema": "hudd.evidence", "schema_version": 2, "annotations_file": "notes.toml", "clusters": clusters
    });
    ws.write("rep/evidence.json", &evidence.to_string());
}

#[test]
fn annotate_with_force_on_a_full_disk_leaves_the_old_notes_whole() {
    let ws = Ws::new();
    report_with_clusters(&ws, 30);
    let notes = "# the engineer's notes\n".to_string() + &"# reviewed by A. Engineer, 2026-11-30\n".repeat(160);
    ws.write("notes.toml", &notes);
    // A file-size limit of 2 KiB stands in for a full disk: the new notes (more than 2 KiB) cannot be written.
    let script =
        format!("ulimit -f 2; trap '' XFSZ; exec {} annotate rep -o notes.toml --force", env!("CARGO_BIN_EXE_hudd"));
    let out = Command::new("bash").arg("-c").arg(&script).current_dir(ws.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the file is as it was"), "{err}");
    assert_eq!(std::fs::read_to_string(ws.path().join("notes.toml")).unwrap(), notes, "the notes are intact");
    // Without the limit the file is replaced and its previous version kept beside it.
    let (code, _, err) = hudd(&ws, &["annotate", "rep", "-o", "notes.toml", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("kept the previous notes as notes.toml~"), "{err}");
    assert_eq!(std::fs::read_to_string(ws.path().join("notes.toml~")).unwrap(), notes);
    assert!(std::fs::read_to_string(ws.path().join("notes.toml")).unwrap().contains("[cluster.30]"));
    let leftovers: Vec<_> = std::fs::read_dir(ws.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left behind: {leftovers:?}");
}

#[test]
fn an_evidence_file_whose_clusters_have_wrong_types_is_refused_naming_the_field() {
    let ws = Ws::new();
    report_with_clusters(&ws, 2);
    for (clusters, named) in [
        (r#"[{"id": 1, "size": -1, "members": ["a"]}]"#, "`clusters[0].size`: expected a number of images, got -1"),
        (r#"[{"id": 1, "size": 2, "members": 5}]"#, "`clusters[0].members`: expected a list of image ids, got 5"),
        (r#""oops""#, "`clusters`: expected a list of clusters, got \"oops\""),
    ] {
        let text = format!(r#"{{"schema": "hudd.evidence", "schema_version": 2, "clusters": {clusters}}}"#);
        ws.write("bad/evidence.json", &text);
        for args in [&["diff", "rep", "bad"][..], &["annotate", "bad"][..]] {
            let (code, _, err) = hudd(&ws, args);
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(err.contains("bad/evidence.json") && err.contains(named), "{args:?}: {err}");
        }
    }
}

#[test]
fn the_binary_holds_libtorch_to_the_same_cpu_kernels_on_every_machine_unless_told_otherwise() {
    let ws = Ws::new();
    let doctor = |set: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hudd"));
        command.current_dir(ws.path()).arg("doctor");
        for (name, _) in hudd::runtime::CPU_KERNELS {
            command.env_remove(name);
        }
        command.envs(set.iter().copied());
        let out = command.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = |name: &str| text.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
        (line("CPU kernels"), line("CPU in keys"))
    };
    let (pinned, keyed) = doctor(&[]);
    assert!(pinned.contains("ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2"), "{pinned}");
    assert!(!keyed.contains("ATEN_CPU_CAPABILITY"), "{keyed}");
    // A kernel variable set otherwise computes other bytes, so the keys name it.
    let (chosen, keyed) = doctor(&[("ATEN_CPU_CAPABILITY", "default")]);
    assert!(chosen.contains("ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2"), "{chosen}");
    assert!(keyed.contains("cpu (x86-64, kernels 2, ATEN_CPU_CAPABILITY=default)"), "{keyed}");
}
