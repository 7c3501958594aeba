//! Cache behaviour of the engine, named as sentences, on fake stages.

use std::collections::BTreeSet;

use hudd::engine::{Outcome, RunOptions};
use proptest::prelude::*;

use crate::support::Ws;

const CHAIN: &str = r#"
[workflow]
name = "chain"
seed = 7

[[stage]]
id = "a"
kind = "echo"
text = "A"

[[stage]]
id = "b"
kind = "echo"
text = "B"
from = "a.out"

[[stage]]
id = "c"
kind = "echo"
from = ["b.out", "a.out"]

[[stage]]
id = "d"
kind = "echo"
text = "D"
"#;

#[test]
fn a_hit_skips_execution() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let (w, first) = ws.run(&m);
    assert_eq!(Ws::ran(&w, &first), ["a", "b", "c", "d"]);
    let (w, second) = ws.run(&m);
    assert!(Ws::ran(&w, &second).is_empty());
    assert_eq!(second.hits(), 4);
    assert_eq!(first.keys, second.keys);
    assert_eq!(ws.output(&w, &second, "c", "out"), " seed=7\n<b:B seed=7\n<a:A seed=7>>\n<a:A seed=7>");
}

#[test]
fn a_parameter_change_invalidates_that_stage_and_its_dependents_only() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    ws.run(&m);
    let m = ws.write("w.toml", &CHAIN.replace("text = \"B\"", "text = \"B2\""));
    let (w, report) = ws.run(&m);
    assert_eq!(Ws::ran(&w, &report), ["b", "c"]);
}

#[test]
fn plan_says_which_parameter_changed_and_which_input() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    ws.run(&m);
    ws.write("w.toml", &CHAIN.replace("text = \"B\"", "text = \"B2\""));
    let (code, out, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("fresh  a"), "{out}");
    assert!(out.contains("stale  b  parameter changed: text"), "{out}");
    assert!(out.contains("stale  c  input to be recomputed first: from (kept if it comes out unchanged)"), "{out}");
    assert!(out.contains("2 of 4 stages would run"), "{out}");
    let (_, json, _) = ws.cli(&["plan", "--json", m.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["stages"][1]["state"], "stale");
    assert_eq!(doc["stages"][1]["reasons"][0], serde_json::json!({"reason": "params_changed", "params": ["text"]}));
}

#[test]
fn the_key_ignores_toml_key_order_and_formatting() {
    let ws = Ws::new();
    let one = ws.write(
        "one.toml",
        "[workflow]\nname='x'\n[[stage]]\nid='a'\nkind='echo'\ntext='t'\nsleep_ms=0\ntags=['p','q']\n",
    );
    let two = ws.write(
        "two.toml",
        "# same stage, other order and spelling\n[workflow]\nname = \"x\"\n\n[[stage]]\ntags = [ \"p\", \"q\" ]\nkind = \"echo\"\ntext = \"\"\"t\"\"\"\nid = \"a\"\n",
    );
    let (_, r1) = ws.run(&one);
    let (w2, r2) = ws.run(&two);
    assert_eq!(r1.keys, r2.keys);
    assert!(Ws::ran(&w2, &r2).is_empty());
}

#[test]
fn a_default_written_out_does_not_change_the_key() {
    let ws = Ws::new();
    let plain = ws.write("a.toml", "[workflow]\nname='x'\n[[stage]]\nid='a'\nkind='echo'\n");
    let explicit = ws.write("b.toml", "[workflow]\nname='x'\n[[stage]]\nid='a'\nkind='echo'\nsleep_ms=0\nfail=false\n");
    assert_eq!(ws.run(&plain).1.keys, ws.run(&explicit).1.keys);
}

#[test]
fn a_missing_output_reruns_only_that_stage() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let (w, r) = ws.run(&m);
    let b = w.stage_index("b").unwrap();
    std::fs::remove_file(ws.store().output_path(&r.keys[b], "out").unwrap()).unwrap();
    let (_, plan, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert!(plan.contains("stale  b  output corrupt: output `out`: out.txt missing"), "{plan}");
    let (w, again) = ws.run(&m);
    assert_eq!(Ws::ran(&w, &again), ["b"]);
}

#[test]
fn a_removed_entry_reruns_and_says_the_output_is_missing() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let (w, r) = ws.run(&m);
    let d = w.stage_index("d").unwrap();
    ws.store().remove_entry(&r.keys[d]).unwrap();
    let (_, plan, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert!(plan.contains("stale  d  output missing"), "{plan}");
}

#[test]
fn a_corrupted_output_of_the_same_size_is_found_by_verify_and_recomputed() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let (w, r) = ws.run(&m);
    let a = w.stage_index("a").unwrap();
    let path = ws.store().output_path(&r.keys[a], "out").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace('A', "Z")).unwrap();
    // A stray folder and a stray file in the store are removed and named, not reported as dropped entries.
    let shard = ws.path().join(".hudd/store").join(&r.keys[a][..2]);
    std::fs::create_dir_all(shard.join("junk")).unwrap();
    std::fs::write(ws.path().join(".hudd/store/stray.txt"), "x").unwrap();
    let (code, out, _) = ws.cli(&["verify"]);
    assert_eq!(code, 1, "verify exits 1 when it dropped or removed something: {out}");
    assert!(out.contains(&format!("dropped {}", r.keys[a])), "{out}");
    assert!(out.contains("verified 4 entries, dropped 1 corrupt, removed 2 stray paths"), "{out}");
    assert!(!shard.join("junk").exists() && !ws.path().join(".hudd/store/stray.txt").exists());
    let (code, out, _) = ws.cli(&["verify"]);
    assert_eq!(code, 0, "{out}");
    let (w, again) = ws.run(&m);
    assert_eq!(Ws::ran(&w, &again), ["a"]);
    assert_eq!(ws.output(&w, &again, "a", "out"), "A seed=7");
}

#[test]
fn a_failing_stage_leaves_no_entry_and_stops_the_run() {
    let ws = Ws::new();
    let m = ws.write("w.toml", &CHAIN.replace("text = \"B\"", "text = \"B\"\nfail = true"));
    let (w, r) = ws.run(&m);
    let b = w.stage_index("b").unwrap();
    assert!(matches!(&r.outcomes[b], Outcome::Failed { error, exit_code: 2 } if error.contains("asked to fail")));
    assert!(ws.store().entry(&r.keys[b]).is_none());
    assert!(!ws.store().entry_dir(&r.keys[b]).exists());
    assert_eq!(std::fs::read_dir(ws.path().join(".hudd/tmp")).unwrap().count(), 0, "no temporary folder left");
    let c = w.stage_index("c").unwrap();
    assert!(matches!(&r.outcomes[c], Outcome::Skipped { because } if because.contains("`b`")));
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn keep_going_runs_everything_that_does_not_depend_on_the_failure() {
    let ws = Ws::new();
    let m = ws.write("w.toml", &CHAIN.replace("text = \"A\"", "text = \"A\"\nfail = true"));
    let options = RunOptions { keep_going: true, ..RunOptions::default() };
    let (w, r) = ws.run_with(&m, &[], options);
    assert_eq!(Ws::ran(&w, &r), ["d"]);
    let (code, _, err) = ws.cli(&["run", "--keep-going", m.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("skipped: b (needs `a`, which failed)"), "{err}");
    assert!(err.contains("skipped: c (needs `a`, which failed)"), "{err}");
}

#[test]
fn a_failed_quality_gate_exits_with_code_one() {
    let ws = Ws::new();
    let m = ws.write(
        "w.toml",
        "[workflow]\nname='g'\n[[stage]]\nid='m'\nkind='echo'\n[[stage]]\nid='g'\nkind='gate'\nmodel='m.out'\npass=false\n",
    );
    let (code, _, err) = ws.cli(&["run", m.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("accuracy 0.50 below the target 0.95"), "{err}");
}

const MATRIX: &str = r#"
[workflow]
name = "m"
seed = 1

[[stage]]
id = "data"
kind = "echo"
text = "data"

[[stage]]
id = "retrain"
kind = "echo"
from = "data.out"
matrix = { seed = [1, 2, 3], text = ["hudd", "random"] }

[[stage]]
id = "test"
kind = "echo"
from = "retrain.out"
matrix = { seed = [1, 2, 3], text = ["hudd", "random"] }

[[stage]]
id = "compare"
kind = "echo"
from = "test.out"
"#;

#[test]
fn a_matrix_expands_into_one_instance_per_combination_with_predictable_ids() {
    let ws = Ws::new();
    let m = ws.write("w.toml", MATRIX);
    let w = ws.workflow(&m, &[]);
    let ids: Vec<&str> = w.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), 1 + 6 + 6 + 1);
    assert!(ids.contains(&"retrain[seed=1,text=hudd]"));
    assert!(ids.contains(&"test[seed=3,text=random]"));
    // Each test instance reads the retrain instance with the same matrix values.
    let t = &w.stages[w.stage_index("test[seed=2,text=random]").unwrap()];
    let producer = t.inputs["from"][0].stage;
    assert_eq!(w.stages[producer].id, "retrain[seed=2,text=random]");
    // compare takes all six test instances as one collection.
    let c = &w.stages[w.stage_index("compare").unwrap()];
    assert_eq!(c.inputs["from"].len(), 6);
    let (w, r) = ws.run(&m);
    let out = ws.output(&w, &r, "compare", "out");
    assert_eq!(out.matches("<test[").count(), 6, "{out}");
    assert!(out.contains("<retrain[seed=3,text=hudd]:hudd seed=3"), "{out}");
}

#[test]
fn set_overrides_a_parameter_like_editing_the_file() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let edited = ws.write("edited.toml", &CHAIN.replace("text = \"B\"", "text = \"over\""));
    let (_, by_set) = ws.run_with(&m, &["b.text=over"], RunOptions::default());
    let (w, by_edit) = ws.run(&edited);
    assert_eq!(by_set.keys, by_edit.keys);
    assert!(Ws::ran(&w, &by_edit).is_empty());
    let (_, numeric) = ws.run_with(&m, &["b.sleep_ms=1"], RunOptions::default());
    assert_ne!(numeric.keys[1], by_set.keys[1]);
}

#[test]
fn the_seed_enters_the_key_of_stages_that_draw_random_numbers() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let (_, r7) = ws.run(&m);
    let m = ws.write("w.toml", &CHAIN.replace("seed = 7", "seed = 8"));
    let (w, r8) = ws.run(&m);
    assert_ne!(r7.keys, r8.keys);
    assert_eq!(ws.output(&w, &r8, "a", "out"), "A seed=8");
}

#[test]
fn an_external_folder_change_reruns_the_stage_that_reads_it() {
    let ws = Ws::new();
    ws.write("data/x.txt", "one");
    let m = ws.write("w.toml", "[workflow]\nname='f'\n[[stage]]\nid='files'\nkind='files'\npath='data'\n[[stage]]\nid='e'\nkind='echo'\nfrom='files.copy'\n");
    let (w, r) = ws.run(&m);
    assert_eq!(Ws::ran(&w, &r), ["files", "e"]);
    let (w, r) = ws.run(&m);
    assert!(Ws::ran(&w, &r).is_empty());
    assert!(ws.path().join(".hudd/statcache.json").exists());
    ws.write("data/x.txt", "two!");
    let (_, plan, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert!(plan.contains("stale  files  external file changed: data"), "{plan}");
    let (w, r) = ws.run(&m);
    assert_eq!(Ws::ran(&w, &r), ["files", "e"]);
}

#[test]
fn a_missing_external_path_is_an_error_naming_it() {
    let ws = Ws::new();
    let m = ws.write("w.toml", "[workflow]\nname='f'\n[[stage]]\nid='files'\nkind='files'\npath='nowhere'\n");
    let (code, _, err) = ws.cli(&["run", m.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("stage `files` reads nowhere"), "{err}");
}

#[test]
fn exec_runs_one_stage_from_its_key_in_another_process() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let w = ws.workflow(&m, &[]);
    let store = ws.store();
    let planned = hudd::engine::plan(&store, &w, &crate::support::registry()).unwrap();
    // A run writes the specs; here only `a` has its spec written and is executed by key.
    store.write_spec(&planned.specs[0]).unwrap();
    let (code, _, err) = ws.cli(&["exec", &planned.specs[0].key]);
    assert_eq!(code, 0, "{err}");
    let (w, r) = ws.run(&m);
    assert_eq!(Ws::ran(&w, &r), ["b", "c", "d"]);
    let unknown = "0123456789abcdef".repeat(4);
    let (code, _, err) = ws.cli(&["exec", &unknown]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("no stage spec for key `{unknown}`")), "{err}");
    // Not a key at all (and not ASCII): refused by name, no panic.
    let (code, _, err) = ws.cli(&["exec", "€abc"]);
    assert_eq!(code, 2);
    assert!(err.contains("`€abc` is not a key"), "{err}");
}

#[test]
fn outputs_are_browsable_under_reports() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    ws.run(&m);
    let view = ws.path().join("reports/chain/b/out.txt");
    assert!(std::fs::symlink_metadata(&view).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(view).unwrap(), "B seed=7\n<a:A seed=7>");
}

#[test]
fn provenance_records_keys_hits_and_versions() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let (_, r) = ws.run(&m);
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&r.provenance).unwrap()).unwrap();
    assert_eq!(record["workflow"], "chain");
    assert_eq!(record["ran"], 4);
    assert_eq!(record["stages"][0]["key"], r.keys[0].as_str());
    assert_eq!(record["stages"][0]["outcome"], "ran");
    assert_eq!(record["stages"][0]["reasons"][0], "new");
    assert!(record["libtorch_version"].as_str().unwrap().starts_with("2."));
}

#[test]
fn gc_drops_only_entries_no_manifest_reaches() {
    let ws = Ws::new();
    let m = ws.write("workflows/w.toml", CHAIN);
    let (_, old) = ws.run(&m);
    let m = ws.write("workflows/w.toml", &CHAIN.replace("text = \"D\"", "text = \"D2\""));
    let (_, new) = ws.run(&m);
    let (_, out, _) = ws.cli(&["gc", "--dry-run"]);
    assert!(out.contains(&format!("would drop {}", old.keys[3])), "{out}");
    assert!(out.contains("would drop 1 entries"), "{out}");
    let (code, out, _) = ws.cli(&["gc"]);
    assert_eq!(code, 0, "{out}");
    assert!(ws.store().entry(&old.keys[3]).is_none());
    for key in &new.keys {
        assert!(ws.store().entry(key).is_some());
    }
}

#[test]
fn gc_keeps_what_reports_shows_after_a_failed_run() {
    let ws = Ws::new();
    let m = ws.write("workflows/w.toml", CHAIN);
    ws.run(&m);
    // The next run fails where `d` changed: `reports/chain/` still shows the last good `d`.
    let m = ws.write("workflows/w.toml", &CHAIN.replace("text = \"D\"", "text = \"D2\"\nfail = true"));
    let (code, _, _) = ws.cli(&["run", m.to_str().unwrap()]);
    assert_ne!(code, 0);
    let (code, out, err) = ws.cli(&["gc"]);
    assert_eq!(code, 0, "{err}");
    let views = ws.store().read_views("chain");
    for (stage, key) in &views {
        assert!(ws.store().entry(key).is_some(), "the view of {stage} dangles after gc: {out}");
    }
    let shown = ws.path().join("reports/chain/d");
    assert!(std::fs::read_dir(&shown).is_ok_and(|mut d| d.next().is_some()), "{} readable", shown.display());
}

#[test]
fn gc_keeps_what_reports_shows_when_a_run_stopped_between_state_and_views() {
    let ws = Ws::new();
    let m = ws.write("workflows/w.toml", CHAIN);
    let (_, old) = ws.run(&m);
    let m = ws.write("workflows/w.toml", &CHAIN.replace("text = \"D\"", "text = \"D2\""));
    ws.run(&m);
    // A run killed after writing the state and before the views: `reports/chain/d` still shows the old `d`.
    let mut views = ws.store().read_views("chain");
    views.insert("d".into(), old.keys[3].clone());
    ws.store().write_views("chain", &views).unwrap();
    let (code, out, err) = ws.cli(&["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(ws.store().entry(&old.keys[3]).is_some(), "the view of d dangles after gc: {out}");
}

#[test]
fn a_second_run_waits_for_the_workspace_lock() {
    let ws = Ws::new();
    let store = ws.store();
    let held = store.lock(|_| panic!("the first lock does not wait")).unwrap();
    let path = ws.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        let store = hudd::engine::store::Store::open(&path).unwrap();
        let mut said = String::new();
        let _lock = store.lock(|m| said = m.to_string()).unwrap();
        said
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(held);
    let said = waiter.join().unwrap();
    assert!(said.contains("another hudd run holds this workspace"), "{said}");
}

/// Random DAGs: edges only from lower to higher index, so they are acyclic by construction.
fn dag_manifest(n: usize, edges: &BTreeSet<(usize, usize)>) -> String {
    let mut s = String::from("[workflow]\nname = \"p\"\n");
    for i in 0..n {
        // Distinct texts: two stages with equal inputs and parameters would share a key (one kept, not run).
        s.push_str(&format!(
            "[[stage]]\nid = \"s{i}\"\nkind = \"echo\"\ntext = \"s{i}\"\nsleep_ms = {}\n",
            (i * 7) % 5
        ));
        let parents: Vec<String> =
            edges.iter().filter(|(_, b)| *b == i).map(|(a, _)| format!("\"s{a}.out\"")).collect();
        if !parents.is_empty() {
            s.push_str(&format!("from = [{}]\n", parents.join(", ")));
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn parallel_runs_respect_every_edge(n in 2usize..9, raw in proptest::collection::vec((0usize..9, 0usize..9), 0..16)) {
        let edges: BTreeSet<(usize, usize)> = raw.into_iter().map(|(a, b)| (a % n, b % n)).filter(|(a, b)| a < b).collect();
        let ws = Ws::new();
        let m = ws.write("w.toml", &dag_manifest(n, &edges));
        let (w, r) = ws.run_with(&m, &[], RunOptions { jobs: Some(4), ..RunOptions::default() });
        prop_assert_eq!(r.ran(), n);
        let ticks = |i: usize| -> (u64, u64) {
            let t = ws.output(&w, &r, &format!("s{i}"), "ticks");
            let (a, b) = t.split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        };
        for &(a, b) in &edges {
            prop_assert!(ticks(a).1 < ticks(b).0, "s{} must end before s{} starts", a, b);
        }
    }
}

#[test]
fn stages_sharing_a_key_in_a_parallel_run_compute_it_once_and_all_succeed() {
    // Six stages with the same kind, parameters and inputs have the same key; -j 4 starts four at once.
    let ws = Ws::new();
    let log = ws.path().join("executions.log");
    let mut text = String::from("[workflow]\nname = \"twins\"\n");
    for i in 0..6 {
        text.push_str(&format!(
            "[[stage]]\nid = \"s{i}\"\nkind = \"echo\"\nsleep_ms = 50\ntext = \"same\"\nlog = \"{}\"\n",
            log.display()
        ));
    }
    let m = ws.write("w.toml", &text);
    let (_, r) = ws.run_with(&m, &[], RunOptions { jobs: Some(4), ..RunOptions::default() });
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    assert!(r.keys.iter().all(|k| *k == r.keys[0]));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1, "one execution for one key");
}

#[test]
fn an_entry_without_a_declared_output_is_recomputed() {
    // An implementation that added an output without a new version left entries without it: they are not reused.
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let (w, r) = ws.run(&m);
    let store = ws.store();
    let entry_path =
        store.output_path(&r.keys[0], "out").unwrap().parent().unwrap().parent().unwrap().join("entry.json");
    let mut entry: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&entry_path).unwrap()).unwrap();
    entry["outputs"].as_object_mut().unwrap().remove("ticks");
    std::fs::write(&entry_path, entry.to_string()).unwrap();
    let planned = hudd::engine::plan(&store, &w, &crate::support::registry()).unwrap();
    let reason = format!("{:?}", planned.decisions[0]);
    assert!(reason.contains("output `ticks` missing"), "{reason}");
}

#[test]
fn a_rerun_stage_that_writes_the_same_bytes_keeps_its_dependants() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    let (w, first) = ws.run(&m);
    let c = w.stage_index("c").unwrap();
    // `b` sleeps a millisecond longer: a new key, the same output. `c` reads it and is kept, not rerun.
    let slower = CHAIN.replace("text = \"B\"", "text = \"B\"\nsleep_ms = 1");
    let m = ws.write("w.toml", &slower);
    let (code, out, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("stale  c  input to be recomputed first: from (kept if it comes out unchanged)"), "{out}");
    let (w, r) = ws.run(&m);
    assert_eq!(Ws::ran(&w, &r), ["b"]);
    assert!(matches!(r.outcomes[c], hudd::engine::Outcome::Kept), "{}", crate::support::failures(&r));
    assert_eq!(r.kept(), 1);
    assert_eq!(r.keys[c], first.keys[c], "c keeps its key: its inputs' contents did not change");
    let (_, out, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert!(out.contains("0 of 4 stages would run"), "{out}");
    // A changed output still reruns its dependants.
    let m = ws.write("w.toml", &slower.replace("text = \"B\"", "text = \"B2\""));
    let (w, r) = ws.run(&m);
    assert_eq!(Ws::ran(&w, &r), ["b", "c"]);
    assert_ne!(r.keys[c], first.keys[c]);
}

#[test]
fn gc_removes_nothing_when_a_manifest_cannot_be_planned() {
    let ws = Ws::new();
    let m = ws.write("workflows/w.toml", CHAIN);
    let (_, old) = ws.run(&m);
    let m = ws.write("workflows/w.toml", &CHAIN.replace("text = \"D\"", "text = \"D2\""));
    ws.run(&m);
    ws.write("workflows/broken.toml", "[workflow]\nname = \"b\"\n[[stage]]\nid = \"x\"\nkind = \"no-such-kind\"\n");
    let (code, out, err) = ws.cli(&["gc"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("gc removed nothing") && err.contains("broken.toml"), "{err}");
    assert!(ws.store().entry(&old.keys[3]).is_some(), "nothing may go when a manifest cannot be planned");
}

#[test]
fn gc_passes_over_a_manifest_whose_inputs_are_absent_and_keeps_what_its_recorded_runs_used() {
    let ws = Ws::new();
    let m = ws.write("workflows/w.toml", CHAIN);
    let (_, old) = ws.run(&m);
    let m = ws.write("workflows/w.toml", &CHAIN.replace("text = \"D\"", "text = \"D2\""));
    let (_, new) = ws.run(&m);
    // A shipped study never run, whose data was never installed.
    let study = |name: &str, folder: &str| {
        format!("[workflow]\nname = \"{name}\"\n[[stage]]\nid = \"data\"\nkind = \"files\"\npath = \"{folder}\"\n")
    };
    ws.write("workflows/never.toml", &study("never", "absent"));
    // A study that ran, whose data was removed since: its run's entry stays.
    ws.write("gone/x.txt", "x");
    let (_, gone) = ws.run(&ws.write("workflows/gone.toml", &study("gone", "gone")));
    std::fs::remove_dir_all(ws.path().join("gone")).unwrap();
    let (code, out, err) = ws.cli(&["gc", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    for name in ["never.toml", "gone.toml"] {
        assert!(
            err.lines().any(|l| l.starts_with("warning: ") && l.contains(name) && l.contains("cannot be planned")),
            "{name}: {err}"
        );
    }
    assert!(out.contains(&format!("would drop {}", old.keys[3])) && out.contains("would drop 1 entries"), "{out}");
    let (code, out, err) = ws.cli(&["gc"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(ws.store().entry(&old.keys[3]).is_none(), "{out}");
    for key in new.keys.iter().chain(&gone.keys) {
        assert!(ws.store().entry(key).is_some(), "{key} dropped: {out}");
    }
    // An input that is there but cannot be read still stops the collection: what it reaches is unknown.
    ws.write("locked/x.txt", "x");
    ws.write("workflows/locked.toml", &study("locked", "locked/x.txt/inner"));
    let (code, _, err) = ws.cli(&["gc", "--dry-run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("gc removed nothing") && err.contains("locked.toml"), "{err}");
}

#[test]
fn gc_on_the_shipped_workflows_before_any_run_keeps_going_and_names_what_it_could_not_plan() {
    // A fresh clone after the quickstart: the shipped manifests, their data not installed (Fashion-MNIST's is a
    // Debian package) and nothing run.
    let ws = Ws::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["workflows", "models"] {
        copy_tree(&root.join(folder), &ws.path().join(folder));
    }
    let (code, out, err) = ws.cli_with(&hudd::stages::registry(), &["gc", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    let absent = std::path::Path::new("/usr/share/datasets/fashion-mnist").exists();
    assert_eq!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("fashion.toml") && l.contains("cannot be planned")),
        !absent,
        "{err}"
    );
    assert!(out.contains("would drop 0 entries"), "{out}");
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

#[test]
fn gc_waits_for_a_running_exec_and_leaves_its_working_folder() {
    let ws = Ws::new();
    let store = ws.store();
    let working = store.begin(&"e".repeat(64)).unwrap();
    let held = store.lock_exec(false, |_| panic!("nothing else holds it")).unwrap();
    let path = ws.path().to_path_buf();
    let gc = std::thread::spawn(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = ["hudd", "--workspace", path.to_str().unwrap(), "gc"];
        let code = hudd::cli::main_with(
            args.iter().map(Into::into),
            &crate::support::registry(),
            &mut out,
            &mut err,
            hudd::engine::progress::Reporter::hidden(),
        );
        (code, String::from_utf8(err).unwrap())
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!gc.is_finished(), "gc must wait for the exec");
    assert!(working.path().exists(), "gc removed the working folder of a running exec");
    drop(held);
    let (code, err) = gc.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("a stage runs through `hudd exec`"), "{err}");
}

#[test]
fn workspaces_sharing_a_store_reuse_each_others_entries_and_survive_gc_in_either() {
    let (a, b) = (Ws::new(), Ws::new());
    let shared = tempfile::tempdir().unwrap();
    let s = shared.path().to_str().unwrap();
    let ma = a.write("workflows/w.toml", CHAIN);
    let (code, _, err) = a.cli(&["--store", s, "run", ma.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("4 ran, 0 cached"), "{err}");
    // The same workflow in another workspace finds every entry.
    let mb = b.write("workflows/w.toml", CHAIN);
    let (code, _, err) = b.cli(&["--store", s, "run", mb.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("0 ran, 4 cached"), "{err}");
    // B moves on; gc from A keeps what B reaches, and what A reaches.
    let mb = b.write("workflows/w.toml", &CHAIN.replace("text = \"D\"", "text = \"D2\""));
    let (code, _, err) = b.cli(&["--store", s, "run", mb.to_str().unwrap()]);
    assert!(code == 0 && err.contains("1 ran, 3 cached"), "{err}");
    let (code, out, err) = a.cli(&["--store", s, "gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dropped 0 entries"), "{out}");
    let (_, out, _) = b.cli(&["--store", s, "plan", mb.to_str().unwrap()]);
    assert!(out.contains("0 of 4 stages would run"), "{out}");
    let (_, out, _) = a.cli(&["--store", s, "plan", ma.to_str().unwrap()]);
    assert!(out.contains("0 of 4 stages would run"), "{out}");
    let (code, out, err) = b.cli(&["--store", s, "gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dropped 0 entries"), "{out}");
    // Once B is gone, what only B reached goes too; A keeps everything it reaches.
    drop(b);
    let (code, out, err) = a.cli(&["--store", s, "gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dropped 1 entries"), "{out}");
    let (_, out, _) = a.cli(&["--store", s, "plan", ma.to_str().unwrap()]);
    assert!(out.contains("0 of 4 stages would run"), "{out}");
}

#[test]
fn gc_finishes_when_one_workspace_is_registered_twice_and_skips_a_registered_folder_without_a_store() {
    let a = Ws::new();
    let shared = tempfile::tempdir().unwrap();
    let s = shared.path().to_str().unwrap();
    let m = a.write("workflows/w.toml", CHAIN);
    let (code, _, err) = a.cli(&["--store", s, "run", m.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // The same folder by a second path (as a bind mount or another network path gives), and a folder that is no
    // workspace, both registered.
    let elsewhere = tempfile::tempdir().unwrap();
    let second = elsewhere.path().join("same-workspace");
    std::os::unix::fs::symlink(a.path(), &second).unwrap();
    let unrelated = elsewhere.path().join("unrelated");
    std::fs::create_dir(&unrelated).unwrap();
    for (name, dir) in [("twice", &second), ("unrelated", &unrelated)] {
        std::fs::write(shared.path().join("workspaces").join(name), dir.display().to_string()).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (ws_dir, store) = (a.path().to_path_buf(), s.to_string());
    std::thread::spawn(move || {
        let run = |args: &[&str]| {
            let mut argv = vec!["hudd", "--workspace", ws_dir.to_str().unwrap(), "--store", &store];
            argv.extend(args);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let registry = crate::support::registry();
            let reporter = hudd::engine::progress::Reporter::hidden();
            let code = hudd::cli::main_with(argv.iter().map(Into::into), &registry, &mut out, &mut err, reporter);
            (code, String::from_utf8_lossy(&out).to_string(), String::from_utf8_lossy(&err).to_string())
        };
        let _ = tx.send((run(&["gc", "--dry-run"]), run(&["gc"])));
    });
    let ((code, _, err), (code2, out2, err2)) =
        rx.recv_timeout(std::time::Duration::from_secs(60)).expect("gc finishes instead of waiting on its own lock");
    assert_eq!((code, code2), (0, 0), "{err}{err2}");
    assert!(err.contains("is the same folder as another registered path: skipped"), "{err}");
    assert!(err2.contains("holds no .hudd/ folder: skipped"), "{err2}");
    assert!(out2.contains("dropped 0 entries"), "{out2}");
    assert!(!unrelated.join(".hudd").exists(), "nothing written into a folder that is no workspace");
}

#[test]
fn a_named_pipe_or_a_device_as_an_input_file_is_refused_not_read_forever() {
    let ws = Ws::new();
    let fifo = ws.path().join("pipe");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for path in [fifo.to_str().unwrap(), "/dev/zero"] {
        let m =
            ws.write("w.toml", &format!("[workflow]\nname='f'\n[[stage]]\nid='files'\nkind='files'\npath='{path}'\n"));
        let (code, _, err) = ws.cli(&["plan", m.to_str().unwrap()]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("not a regular file or folder"), "{err}");
    }
}

#[test]
fn a_stage_stored_but_not_yet_shown_is_reported_by_plan_and_shown_by_the_next_run() {
    let ws = Ws::new();
    let m = ws.write("w.toml", CHAIN);
    ws.run(&m);
    // `d` is computed alone (as a run killed after storing it would leave it): stored, not shown.
    let m = ws.write("w.toml", &CHAIN.replace("text = \"D\"", "text = \"D2\""));
    let w = ws.workflow(&m, &[]);
    let store = ws.store();
    let planned = hudd::engine::plan(&store, &w, &crate::support::registry()).unwrap();
    let d = w.stage_index("d").unwrap();
    store.write_spec(&planned.specs[d]).unwrap();
    let (code, _, err) = ws.cli(&["exec", &planned.specs[d].key]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert!(out.contains("0 of 4 stages would run"), "{out}");
    assert!(out.contains("1 fresh stages are not shown under reports/ yet (d)"), "{out}");
    let shown = ws.path().join("reports/chain/d/out.txt");
    assert!(std::fs::read_to_string(&shown).unwrap().starts_with("D seed"), "the view still shows the old d");
    let (w, r) = ws.run(&m);
    assert!(Ws::ran(&w, &r).is_empty());
    assert!(std::fs::read_to_string(&shown).unwrap().starts_with("D2 seed"));
    let (_, out, _) = ws.cli(&["plan", m.to_str().unwrap()]);
    assert!(!out.contains("not shown"), "{out}");
}

#[test]
fn a_key_planned_for_another_device_is_refused_where_it_would_run() {
    // Planned on a CPU host (the spec a Slurm job or `hudd exec` would run), executed where the device differs.
    let ws = Ws::new();
    let m =
        ws.write("w.toml", "[workflow]\nname = \"machine\"\n[[stage]]\nid = \"m\"\nkind = \"machine\"\ntext = \"x\"\n");
    let w = ws.workflow(&m, &[]);
    let store = ws.store();
    let registry = crate::support::registry();
    *crate::support::MACHINE.lock().unwrap() = "cpu";
    let planned = hudd::engine::plan(&store, &w, &registry).unwrap();
    *crate::support::MACHINE.lock().unwrap() = "cuda";
    let Err(err) =
        hudd::engine::execute(&store, &registry, &planned.specs[0], 1, &hudd::engine::progress::Reporter::hidden())
    else {
        panic!("a key planned for the CPU ran where the device is CUDA")
    };
    *crate::support::MACHINE.lock().unwrap() = "cpu";
    let text = err.to_string();
    assert!(text.contains("planned with device = cpu, but here it is cuda"), "{text}");
    assert_eq!(err.exit_code(), 2);
    assert!(store.entry(&planned.specs[0].key).is_none(), "nothing is stored under the key");
}
