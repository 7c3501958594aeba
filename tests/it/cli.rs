//! The command line end to end, in-process: check, dag, status, doctor and argument errors.

use crate::support::Ws;

const TWO: &str = "[workflow]\nname = \"two\"\n[[stage]]\nid = \"a\"\nkind = \"echo\"\n[[stage]]\nid = \"b\"\nkind = \"echo\"\nfrom = \"a.out\"\n";

#[test]
fn check_accepts_a_good_manifest() {
    let ws = Ws::new();
    let m = ws.write("w.toml", TWO);
    let (code, out, _) = ws.cli(&["check", m.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("ok (2 stages)"), "{out}");
}

#[test]
fn dag_prints_dot_and_mermaid_with_labelled_edges() {
    let ws = Ws::new();
    let m = ws.write("w.toml", TWO);
    let (_, dot, _) = ws.cli(&["dag", m.to_str().unwrap()]);
    assert!(dot.starts_with("digraph \"two\""), "{dot}");
    assert!(dot.contains("\"a\" -> \"b\" [label=\"out -> from\"]"), "{dot}");
    let (_, mermaid, _) = ws.cli(&["dag", "--format", "mermaid", m.to_str().unwrap()]);
    assert!(mermaid.contains("s0 -->|out → from| s1"), "{mermaid}");
}

#[test]
fn status_lists_stages_and_recent_runs() {
    let ws = Ws::new();
    let m = ws.write("w.toml", TWO);
    let (_, before, _) = ws.cli(&["status"]);
    assert!(before.contains("no runs recorded"), "{before}");
    ws.run(&m);
    let (_, out, _) = ws.cli(&["status", m.to_str().unwrap()]);
    assert!(out.contains("fresh  a"), "{out}");
    assert!(out.contains("done 20"), "{out}");
    let (_, runs, _) = ws.cli(&["status"]);
    assert!(runs.contains("two"), "{runs}");
    assert!(runs.contains("2 ran, 0 cached"), "{runs}");
}

#[test]
fn doctor_names_libtorch_and_the_device() {
    let ws = Ws::new();
    let (code, out, _) = ws.cli(&["doctor"]);
    assert_eq!(code, 0);
    // The version is the one of the libtorch the binary runs with, read here from that libtorch's own version.py,
    // and the one scripts/libtorch.sh installs (torch 2.13.0, whatever its build: +cpu, +cu130).
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key).filter(|rest| rest.starts_with("  ")).map(str::trim))
            .unwrap_or_else(|| panic!("no `{key}` line: {out}"))
    };
    let version = value("libtorch");
    let version_py = std::path::Path::new(value("libtorch folder")).join("../version.py");
    let recorded = std::fs::read_to_string(&version_py).unwrap_or_else(|e| panic!("{}: {e}", version_py.display()));
    let recorded = recorded
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"'))
        .unwrap();
    assert_eq!(version, recorded, "{out}");
    assert!(version == "2.13.0" || version.starts_with("2.13.0+"), "{out}");
    assert!(out.contains("device (auto)"), "{out}");
    assert!(out.contains("libtorch threads"), "{out}");
}

#[test]
fn a_malformed_set_is_a_usage_error() {
    let ws = Ws::new();
    let m = ws.write("w.toml", TWO);
    let (code, _, err) = ws.cli(&["run", m.to_str().unwrap(), "--set", "novalue"]);
    assert_eq!(code, 2);
    assert!(err.contains("expected <stage-id>.<param>=<value>"), "{err}");
}

#[test]
fn every_shipped_workflow_passes_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            hudd::engine::manifest::load(&path, &[], &hudd::stages::registry())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

/// A reader that went away: every write fails with a broken pipe.
struct Closed;

impl std::io::Write for Closed {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let ws = crate::support::Ws::new();
    let m = ws.write("w.toml", "[workflow]\nname = \"p\"\n[[stage]]\nid = \"a\"\nkind = \"echo\"\n");
    let args = ["hudd", "--workspace", ws.path().to_str().unwrap(), "plan", m.to_str().unwrap()];
    let mut err = Vec::new();
    let code = hudd::cli::main_with(
        args.iter().map(Into::into),
        &crate::support::registry(),
        &mut Closed,
        &mut err,
        hudd::engine::progress::Reporter::hidden(),
    );
    assert_eq!(code, 0);
    assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
}

/// A workflow with a matrix stage and two branches: `a` → `b[seed=1]`, `b[seed=2]` → `c`; `a` → `d`.
const BRANCHES: &str = "[workflow]\nname = \"branches\"\n\
    [[stage]]\nid = \"a\"\nkind = \"echo\"\n\
    [[stage]]\nid = \"b\"\nkind = \"echo\"\nfrom = \"a.out\"\nmatrix = { seed = [1, 2] }\n\
    [[stage]]\nid = \"c\"\nkind = \"echo\"\nfrom = \"b.out\"\n\
    [[stage]]\nid = \"d\"\nkind = \"echo\"\nfrom = \"a.out\"\n";

#[test]
fn run_with_a_target_runs_it_and_what_it_reads_and_nothing_else() {
    let ws = Ws::new();
    let m = ws.write("w.toml", BRANCHES);
    let (code, _, err) = ws.cli(&["run", m.to_str().unwrap(), "d"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 ran, 0 cached"), "{err}");
    let (_, plan, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert!(plan.contains("fresh  a") && plan.contains("fresh  d"), "{plan}");
    assert!(plan.contains("stale  c") && plan.contains("stale  b[seed=1]"), "{plan}");
    // A matrix stage's id names all its instances; a full id one of them.
    let (_, plan, _) = ws.cli(&["plan", m.to_str().unwrap(), "b"]);
    assert!(plan.contains("b[seed=1]") && plan.contains("b[seed=2]"), "{plan}");
    assert!(!plan.lines().any(|l| l.contains("  c ") || l.contains("  d ")), "{plan}");
    assert!(plan.contains("of 3 stages would run"), "{plan}");
    let (code, _, err) = ws.cli(&["run", m.to_str().unwrap(), "b[seed=2]"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 ran, 1 cached"), "{err}");
    // The run record names the targets; the rest of the workflow keeps its state.
    let (_, plan, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert!(plan.contains("fresh  b[seed=2]") && plan.contains("fresh  d") && plan.contains("stale  b[seed=1]"));
}

#[test]
fn a_glob_target_names_every_matching_instance() {
    let ws = Ws::new();
    let m = ws.write("w.toml", BRANCHES);
    let (_, json, _) = ws.cli(&["plan", m.to_str().unwrap(), "--json", "*seed=1]", "d"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ids: Vec<&str> = doc["stages"].as_array().unwrap().iter().map(|r| r["stage"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b[seed=1]", "d"]);
}

#[test]
fn an_unknown_target_is_refused_with_a_suggestion_and_writes_nothing() {
    let ws = Ws::new();
    let m = ws.write("w.toml", BRANCHES);
    let (code, _, err) = ws.cli(&["run", m.to_str().unwrap(), "dd"]);
    assert_eq!(code, 2);
    assert!(err.contains("no stage of workflow `branches` is named `dd`; did you mean `d`?"), "{err}");
    assert!(err.contains("(stages: a, b, c, d)"), "{err}");
    assert!(!ws.path().join(".hudd").exists(), "a refused target writes nothing");
}

#[test]
fn reproduce_recomputes_an_entry_and_names_the_files_whose_bytes_differ() {
    let ws = Ws::new();
    let m = ws.write("w.toml", TWO);
    let (code, out, _) = ws.cli(&["reproduce", m.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("stale      a: run it first") && out.contains("0 reproduced with the same bytes"), "{out}");
    ws.run(&m);
    // `echo` writes the ticks of a process-wide clock: a recomputation gives other bytes there, and says so.
    let (code, out, _) = ws.cli(&["reproduce", m.to_str().unwrap(), "b"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIFFERENT  b: ticks.txt"), "{out}");
    assert!(!out.contains(" a"), "only the target is recomputed: {out}");
    let (_, plan, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert!(plan.contains("0 of 2 stages would run"), "the entries are left as they were: {plan}");
}

#[test]
fn reproduce_finds_the_same_bytes_for_a_simulation_at_another_thread_count() {
    let ws = Ws::new();
    let text = "[workflow]\nname = \"sim\"\nseed = 3\n[[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"signs\"\n\
        size = 16\nsplits = { train = { count = 40 } }\n";
    let m = ws.write("w.toml", text);
    let registry = hudd::stages::registry();
    let (code, _, err) = ws.cli_with(&registry, &["run", m.to_str().unwrap(), "--threads", "1"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = ws.cli_with(&registry, &["reproduce", m.to_str().unwrap(), "--threads", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("same bytes data") && out.contains("1 reproduced with the same bytes"), "{out}");
}
