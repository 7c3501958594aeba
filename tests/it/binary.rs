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
