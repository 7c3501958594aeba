//! Every manifest error, each as a TOML snippet and the message and `file:line:col` it must produce.

use crate::support::{Ws, registry};
use hudd::engine::manifest::{self, ManifestError, Override};

const HEAD: &str = "[workflow]\nname = \"w\"\n";

/// Checks a manifest and returns the rendered problems (panics if it is accepted).
fn problems(text: &str, overrides: &[&str]) -> String {
    let overrides: Vec<Override> = overrides.iter().map(|o| o.parse().unwrap()).collect();
    match manifest::parse(std::path::Path::new("w.toml"), text, &overrides, &registry()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(ManifestError::Invalid { rendered, .. }) => rendered,
        Err(e) => panic!("{e}"),
    }
}

fn check(text: &str, expected: &[&str]) {
    let got = problems(text, &[]);
    for e in expected {
        assert!(got.contains(e), "expected {e:?} in:\n{got}");
    }
}

#[test]
fn an_unknown_key_is_located_and_named() {
    check(
        &format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\ntxt = \"x\"\n"),
        &["stage kind `echo`: unknown field `txt`", "--> w.toml:6:1", "6 | txt = \"x\"", "  | ^^^"],
    );
}

#[test]
fn a_wrong_type_is_located_at_the_value() {
    check(
        &format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\nsleep_ms = \"long\"\n"),
        &["invalid type: string \"long\", expected u64", "--> w.toml:6:12"],
    );
}

#[test]
fn an_unknown_stage_kind_suggests_the_closest() {
    check(
        &format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"ecoh\"\n"),
        &["unknown stage kind `ecoh`", "--> w.toml:5:8", "^^^^^^ did you mean `echo`?"],
    );
}

#[test]
fn a_reference_to_an_unknown_stage_suggests_the_closest() {
    check(
        &format!(
            "{HEAD}[[stage]]\nid = \"train\"\nkind = \"echo\"\n[[stage]]\nid = \"b\"\nkind = \"echo\"\nfrom = \"trian.out\"\n"
        ),
        &["reference to unknown stage `trian`", "--> w.toml:9:8", "did you mean `train.out`?"],
    );
}

#[test]
fn a_reference_to_an_unknown_output_suggests_the_closest() {
    check(
        &format!(
            "{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\n[[stage]]\nid = \"b\"\nkind = \"echo\"\nfrom = \"a.outt\"\n"
        ),
        &["stage `a` (kind `echo`) has no output `outt`", "--> w.toml:9:8", "did you mean `a.out`?"],
    );
}

#[test]
fn a_duplicate_id_points_at_both_definitions() {
    check(
        &format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\n[[stage]]\nid = \"a\"\nkind = \"echo\"\n"),
        &["duplicate stage id `a`", "--> w.toml:7:6", "note: first defined here", "--> w.toml:4:6"],
    );
}

#[test]
fn a_cycle_is_spelled_out() {
    check(
        &format!(
            "{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\nfrom = \"c.out\"\n[[stage]]\nid = \"b\"\nkind = \"echo\"\nfrom = \"a.out\"\n[[stage]]\nid = \"c\"\nkind = \"echo\"\nfrom = \"b.out\"\n"
        ),
        &["dependency cycle: a -> b -> c -> a", "--> w.toml:10:8"],
    );
}

#[test]
fn an_invalid_value_states_the_rule_and_the_value() {
    check(
        &format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\nsleep_ms = 20000\n"),
        &["invalid `sleep_ms`: must be at most 10000, got 20000", "--> w.toml:6:12", "^^^^^"],
    );
}

#[test]
fn a_missing_required_input_is_named() {
    check(
        &format!("{HEAD}[[stage]]\nid = \"g\"\nkind = \"gate\"\npass = true\n"),
        &["stage `g` (kind `gate`) needs input `model`", "--> w.toml:4:6"],
    );
}

#[test]
fn a_single_input_given_a_whole_matrix_asks_for_one_instance() {
    check(
        &format!(
            "{HEAD}[[stage]]\nid = \"m\"\nkind = \"echo\"\nmatrix = {{ seed = [1, 2] }}\n[[stage]]\nid = \"g\"\nkind = \"gate\"\nmodel = \"m.out\"\npass = true\n"
        ),
        &["`m` has 2 instances and input `model` takes one", "name one, e.g. `m[seed=1].out`"],
    );
}

#[test]
fn matrix_mistakes_are_located() {
    check(
        &format!(
            "{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\ntext = \"x\"\nmatrix = {{ text = [\"p\", \"p\"], seed = [], id = [\"z\"] }}\n"
        ),
        &["matrix `text` repeats the value p", "matrix `seed` has no values", "`id` cannot vary in a matrix"],
    );
}

#[test]
fn invalid_toml_is_located() {
    check(&format!("{HEAD}[[stage]]\nid = \"a\nkind = \"echo\"\n"), &["invalid TOML", "--> w.toml:4:"]);
}

#[test]
fn unknown_top_level_and_workflow_keys_are_reported() {
    check(
        "[workflow]\nname = \"w\"\nseeed = 3\n[[stages]]\nid = \"a\"\n",
        &["[workflow]: unknown field `seeed`", "--> w.toml:3:1"],
    );
    check(
        "[workflow]\nname = \"w\"\n[[stages]]\nid = \"a\"\n",
        &["unknown top-level key `stages`", "did you mean `stage`?"],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = problems(
        &format!(
            "{HEAD}[[stage]]\nid = \"a\"\nkind = \"ecoh\"\n[[stage]]\nid = \"b\"\nkind = \"echo\"\nbad = 1\n[[stage]]\nid = \"b\"\nkind = \"echo\"\n"
        ),
        &[],
    );
    assert!(got.contains("3 problems found"), "{got}");
}

#[test]
fn a_bad_override_is_located_in_the_set_argument() {
    let got = problems(&format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\n"), &["a.sleep_ms=abc"]);
    assert!(got.contains("invalid type: string \"abc\", expected u64"), "{got}");
    assert!(got.contains("--> --set a.sleep_ms:1:1"), "{got}");
    let got = problems(&format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\n"), &["b.text=1"]);
    assert!(got.contains("--set names stage `b`, which the workflow does not declare"), "{got}");
}

#[test]
fn a_rejected_manifest_writes_nothing_and_exits_with_two() {
    let ws = Ws::new();
    let m = ws.write("bad.toml", &format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"ecoh\"\n"));
    let (code, out, err) = ws.cli(&["run", m.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("unknown stage kind `ecoh`"), "{err}");
    assert!(err.contains("bad.toml:5:8"), "{err}");
    assert!(!ws.path().join(".hudd").exists(), "nothing written to the store");
    let (code, _, err) = ws.cli(&["run", "missing.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read manifest missing.toml"), "{err}");
}

#[test]
fn a_matrix_key_a_kind_does_not_take_may_label_instances_only_when_another_stage_uses_it() {
    let ws = crate::support::Ws::new();
    let base = "[workflow]\nname = \"m\"\n[[stage]]\nid = \"a\"\nkind = \"echo\"\nmatrix = { seed = [1, 2] }\n[[stage]]\nid = \"b\"\nkind = \"files\"\npath = \"x\"\n";
    // `files` takes no `seed`: as a label it names b's instances (another stage has the key)...
    let path = ws.write("ok.toml", &format!("{base}matrix = {{ seed = [1, 2] }}\n"));
    let w = hudd::engine::manifest::load(&path, &[], &crate::support::registry()).unwrap();
    let ids: Vec<&str> = w.stages.iter().map(|s| s.id.as_str()).collect();
    assert!(ids.contains(&"b[seed=1]") && ids.contains(&"b[seed=2]"), "{ids:?}");
    assert!(w.stages.iter().filter(|s| s.base_id == "b").all(|s| s.params.get("seed").is_none()));
    // ...but a key no other stage has is a mistake, located.
    let path = ws.write("bad.toml", &format!("{base}matrix = {{ sed = [1, 2] }}\n"));
    let err = hudd::engine::manifest::load(&path, &[], &crate::support::registry()).unwrap_err().to_string();
    assert!(
        err.contains("matrix key `sed` is not a parameter or input of kind `files`") && err.contains("bad.toml:11:"),
        "{err}"
    );
}

#[test]
fn executor_mistakes_are_located_and_named() {
    let stage = "[[stage]]\nid = \"a\"\nkind = \"echo\"\n";
    check(
        &format!("{HEAD}[executor]\npartiton = \"gpu\"\n\n{stage}"),
        &["[executor]: unknown key `partiton`", "--> w.toml:4:1", "did you mean `partition`?"],
    );
    check(
        &format!(
            "{HEAD}[executor]\ntime = \"1h\"\n[executor.kind.echoo]\ncpus = 0\n[executor.stage.b]\nmemory = \"16GB\"\n\n{stage}"
        ),
        &[
            "[executor] invalid `time`: `1h` is not a Slurm time",
            "[executor.kind]: unknown stage kind `echoo`",
            "did you mean `echo`?",
            "[executor] invalid `kind.echoo.cpus`: must be at least 1",
            "[executor.stage]: no stage id `b`",
            "[executor] invalid `stage.b.memory`: `16GB` is not a Slurm memory size",
            "--> w.toml:8:10",
        ],
    );
    check(
        &format!("{HEAD}[executor]\ndefault = \"cloud\"\n\n{stage}"),
        &["unknown variant `cloud`", "--> w.toml:4:11"],
    );
}

#[test]
fn a_wrongly_wired_input_is_located_and_names_both_artefact_kinds() {
    let text = "[workflow]\nname = \"w\"\n\
                [[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"signs\"\n\
                [stage.splits.test]\ncount = 10\n\
                [[stage]]\nid = \"t\"\nkind = \"test\"\nmodel = \"data.dataset\"\ndataset = \"data.dataset\"\n";
    let got = match manifest::parse(std::path::Path::new("w.toml"), text, &[], &hudd::stages::registry()) {
        Ok(_) => panic!("a dataset wired into `model` was accepted"),
        Err(ManifestError::Invalid { rendered, .. }) => rendered,
        Err(e) => panic!("{e}"),
    };
    for e in ["`model` takes a model; `data.dataset` is a dataset", "--> w.toml:12:9", "^^^^^^^^^^^^^^"] {
        assert!(got.contains(e), "expected {e:?} in:\n{got}");
    }
    assert!(!got.contains("w.toml:13:"), "the dataset input is rightly wired:\n{got}");
}

#[test]
fn a_matrix_value_that_would_climb_out_of_reports_is_refused() {
    check(
        &format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\nmatrix = {{ text = [\"/../../victim/\", \"ok\"] }}\n"),
        &["matrix `text` has the value `/../../victim/`", "--> w.toml:6:20", "letters, digits, `_`, `-`, `.`, `+`"],
    );
    check(
        &format!("{HEAD}[[stage]]\nid = \"a\"\nkind = \"echo\"\nmatrix = {{ text = [\"..\"] }}\n"),
        &["matrix `text` has the value `..`"],
    );
}

#[test]
fn ids_too_long_for_a_file_name_are_refused_at_check_time() {
    let long = "a".repeat(65);
    check(&format!("{HEAD}[[stage]]\nid = \"{long}\"\nkind = \"echo\"\n"), &["invalid stage id", "at most 64"]);
    check(&format!("[workflow]\nname = \"{long}\"\n"), &["invalid workflow name", "at most 64"]);
}

#[test]
fn infinite_and_nan_parameters_are_refused_at_their_place() {
    let text = "[workflow]\nname = \"w\"\n[[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"signs\"\n\
                [stage.splits.train]\ncount = 10\n\
                [[stage]]\nid = \"train\"\nkind = \"train\"\ndataset = \"data.dataset\"\narchitecture = \"tiny\"\nlr = inf\n";
    let got = match manifest::parse(std::path::Path::new("w.toml"), text, &[], &hudd::stages::registry()) {
        Ok(_) => panic!("lr = inf was accepted"),
        Err(ManifestError::Invalid { rendered, .. }) => rendered,
        Err(e) => panic!("{e}"),
    };
    assert!(got.contains("`lr` must be a finite number, got inf") && got.contains("--> w.toml:14:6"), "{got}");
    let overrides: Vec<Override> = vec!["train.lr=nan".parse().unwrap()];
    let text = text.replace("lr = inf\n", "");
    let got = match manifest::parse(std::path::Path::new("w.toml"), &text, &overrides, &hudd::stages::registry()) {
        Ok(_) => panic!("--set train.lr=nan was accepted"),
        Err(ManifestError::Invalid { rendered, .. }) => rendered,
        Err(e) => panic!("{e}"),
    };
    assert!(got.contains("`lr` must be a finite number, got nan"), "{got}");
}
