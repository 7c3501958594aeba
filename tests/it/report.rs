//! The safety-analysis report: golden Markdown, escaping of user data, user templates, annotations.

use hudd::engine::manifest::Workflow;
use hudd::engine::progress::Reporter;
use hudd::engine::{RunOptions, RunReport};

fn run(ws: &crate::support::Ws, text: &str) -> (Workflow, RunReport) {
    let path = ws.write("w.toml", text);
    let registry = hudd::stages::registry().with(crate::support::Files).with(crate::support::Text);
    let w = hudd::engine::manifest::load(&path, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
    let report = hudd::engine::run(&ws.store(), &w, &registry, &RunOptions::default(), &Reporter::hidden()).unwrap();
    (w, report)
}

/// A stage writing `text` as its output (the test-only `results` kind).
fn text_stage(id: &str, text: &str) -> String {
    format!("[[stage]]\nid = \"{id}\"\nkind = \"results\"\ntext = {text:?}\n\n")
}

const TEST: &str = r#"{"split": "test", "images": 1000, "errors": 191, "accuracy": 0.809}"#;
const COMPARE: &str = r#"{"metric": "accuracy", "original": 0.809, "reference": "hudd", "judged_on": "holdout",
 "strategies": [{"strategy": "hudd", "runs": 2, "mean": 0.93, "min": 0.92, "max": 0.94, "fixed": 130.0, "broken": 14.0},
                {"strategy": "random", "runs": 2, "mean": 0.91, "min": 0.90, "max": 0.92, "fixed": 110.0, "broken": 12.0}],
 "tests": [{"baseline": "random", "u": 4.0, "p": 0.333, "a12": 1.0}],
 "protocols": [
   {"split": "holdout", "held_out": true, "seen": [], "label": "held out: its images trained no model and chose no data or epoch", "original": 0.809,
    "strategies": [{"strategy": "hudd", "runs": 2, "mean": 0.93, "min": 0.92, "max": 0.94, "fixed": 130.0, "broken": 14.0},
                   {"strategy": "random", "runs": 2, "mean": 0.91, "min": 0.90, "max": 0.92, "fixed": 110.0, "broken": 12.0}],
    "tests": [{"baseline": "random", "u": 4.0, "p": 0.333, "a12": 1.0}]},
   {"split": "test", "held_out": false, "seen": [{"models": "hudd", "how": "chose-data"}], "label": "the paper's protocol: seen by hudd, whose training data its images chose", "original": 0.809,
    "strategies": [{"strategy": "hudd", "runs": 2, "mean": 0.95, "min": 0.94, "max": 0.96, "fixed": 150.0, "broken": 14.0},
                   {"strategy": "random", "runs": 2, "mean": 0.91, "min": 0.90, "max": 0.92, "fixed": 110.0, "broken": 12.0}],
    "tests": [{"baseline": "random", "u": 4.0, "p": 0.333, "a12": 1.0}]}],
 "rq1": {"failing": 191, "clusters": 2, "inspected": 10, "inspected_share": 0.0524, "assessed": 2, "explained": 1, "explained_share": 0.5, "threshold": 0.5,
   "chance": {"explained": 1, "explained_share": 0.5, "expected_by_chance": 0.31, "images_explained": 0.785, "images_explained_beyond_chance": 0.785, "permutations": 1000, "alpha": 0.05}}}"#;
const RUNS: &str = "split,strategy,stage,score,fixed,broken\nholdout,hudd,\"t[seed=1]\",0.92,120,14\nholdout,hudd,\"t[seed=2]\",0.94,140,14\nholdout,random,\"b[seed=1]\",0.90,100,12\nholdout,random,\"b[seed=2]\",0.92,120,12\ntest,hudd,\"t[seed=1]\",0.99,120,14\n";
const RCC: &str = "split,strategy,cluster,images,before,after\ntest,hudd,1,150,0,0.9\ntest,hudd,2,41,0,0.4\ntest,random,1,150,0,0.7\ntest,random,2,41,0,0.3\nholdout,hudd,1,140,0,0.8\nholdout,hudd,2,45,0,0.45\n";
const RULES: &str = r#"{"source": "simulate:signs", "task": "classification", "split": "test", "correct": 809, "rules": [
 {"cluster": 1, "size": 150, "text": "night 0.62–1.00 share", "covered": 140, "support": 0.933, "correct_covered": 60, "precision": 0.7,
  "conditions": [{"condition": {"type": "interval", "parameter": "night", "lo": 0.62, "hi": 1.0}, "text": "night 0.62–1.00 share", "kept": 0.38}]},
 {"cluster": 2, "size": 41, "text": "yaw 40.0° to 70.0°", "covered": 30, "support": 0.73, "correct_covered": 90, "precision": 0.25,
  "conditions": [{"condition": {"type": "arc", "parameter": "yaw", "from": 40.0, "to": 70.0, "period": 360.0}, "text": "yaw 40.0° to 70.0°", "kept": 0.2}]}]}"#;
const CONFIRM: &str = r#"{"learned_on": "test", "images": 200, "alpha": 0.05, "rules": [
 {"cluster": 1, "rule": "night 0.62–1.00 share", "conditions": [], "confirmed": true,
  "inside": {"images": 200, "failures": 124, "rate": 0.62, "lo": 0.549, "hi": 0.687}, "outside": {"images": 200, "failures": 18, "rate": 0.09, "lo": 0.054, "hi": 0.139}},
 {"cluster": 2, "rule": "yaw 40.0° to 70.0°", "conditions": [], "confirmed": false,
  "inside": {"images": 200, "failures": 30, "rate": 0.15, "lo": 0.104, "hi": 0.207}, "outside": {"images": 200, "failures": 24, "rate": 0.12, "lo": 0.079, "hi": 0.173}}]}"#;
const RECOVERY: &str = r#"{"cause": "scenario", "images": 191, "clusters": 2, "causes": 3, "purity": 0.81, "coverage": 0.67, "nmi": 0.42, "ari": 0.37,
 "random": {"permutations": 1000, "purity": [0.52, 0.55], "coverage": [0.6, 0.67], "nmi": [0.01, 0.02], "ari": [0.0, 0.01]}}"#;
const VARIANCE: &str = "cluster,size,explained,best_parameter,best_reduction,description,p,beats_chance\n1,150,true,night,0.8,\"night 0.62–0.98 share\",0.001,true\n2,41,false,yaw,0.3,\"\",0.4,false\n";

fn manifest(ws: &crate::support::Ws, extra: &str) -> String {
    ws.write(
        "clusters/cluster.json",
        r#"{"images": 191, "layer": "classifier.4", "clusters": 2, "k_rule": "the knee", "layer_rule": "wicd", "mode": "hudd", "linkage": "ward", "layers": [], "stability": {"draws": 50, "share": 0.5, "threshold": 0.5, "unstable": 1}}"#,
    );
    ws.write(
        "clusters/summary.csv",
        "cluster,size,share,mean_intra_distance,medoid,stability,stable\n1,150,0.785,0.2,test-1,0.91,true\n2,41,0.215,0.3,test-2,0.42,false\n",
    );
    format!(
        "[workflow]\nname = \"rep\"\n\n{}{}{}{}{}{}{}{}[[stage]]\nid = \"clusters\"\nkind = \"files\"\npath = \"clusters\"\n\n\
         [[stage]]\nid = \"report\"\nkind = \"report\"\ntest = \"test.summary\"\nclusters = \"clusters.clusters\"\nvariance = \"variance.explanations\"\n\
         compare = \"compare.compare\"\nruns = \"runs.runs\"\nrcc = \"rcc.rcc\"\nrules = \"rules.rules\"\nconfirm = \"confirm.confirmations\"\nrecovery = \"recovery-hudd.recovery\"\ntarget = \"accuracy >= 0.92\"\n{extra}",
        text_stage("test", TEST),
        text_stage("compare", COMPARE),
        text_stage("runs", RUNS),
        text_stage("rcc", RCC),
        text_stage("variance", VARIANCE),
        text_stage("rules", RULES),
        text_stage("confirm", CONFIRM),
        text_stage("recovery-hudd", RECOVERY),
    )
}

fn output(ws: &crate::support::Ws, w: &Workflow, r: &RunReport, file: &str) -> String {
    let dir = ws.store().output_path(&r.keys[w.stage_index("report").unwrap()], "report").unwrap();
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[test]
fn the_markdown_report_matches_its_golden_file() {
    let ws = crate::support::Ws::new();
    ws.write("notes.toml", "[cluster.1]\ntriggering_condition = \"Night\"\nhazard = \"Misread speed limit\"\ncountermeasure = \"Night-time data\"\nreviewer = \"A. Engineer\"\nstatus = \"closed\"\n");
    let (w, r) = run(&ws, &manifest(&ws, "annotations = \"notes.toml\"\ndnn = \"A sign classifier.\"\n"));
    assert_eq!(r.exit_code(), 0, "{:?}", r.outcomes);
    let md = output(&ws, &w, &r, "report.md");
    // The traceability block (versions, keys) is left out of the comparison.
    let content = md.split("## 5. Traceability").next().unwrap();
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/report.md");
    if std::env::var_os("HUDD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, content).unwrap();
    }
    assert_eq!(content, std::fs::read_to_string(&golden).unwrap(), "rerun with HUDD_UPDATE_GOLDEN=1 to accept");
    assert!(md.contains("| test | `test` | summary |"), "{md}");
    let html = output(&ws, &w, &r, "report.html");
    assert!(html.contains("<svg") && html.contains("Cluster 2: 41 images"), "{html}");
}

#[test]
fn user_data_is_escaped_in_the_html_and_the_markdown() {
    let ws = crate::support::Ws::new();
    ws.write("notes.toml", "[cluster.2]\ntriggering_condition = \"<script>alert(1)</script>\"\n");
    let (w, r) = run(&ws, &manifest(&ws, "annotations = \"notes.toml\"\ndnn = \"<img src=x onerror=alert(2)>\"\n"));
    assert_eq!(r.exit_code(), 0, "{:?}", r.outcomes);
    let html = output(&ws, &w, &r, "report.html");
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    // Markdown viewers render raw HTML too; the manifest's own text, in a code fence, is shown as it is.
    let md = output(&ws, &w, &r, "report.md");
    let (body, appendix) = md.split_once("## 5. Traceability").unwrap();
    assert!(!body.contains("<script>") && body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{md}");
    assert!(!body.contains("<img src=x") && body.contains("&lt;img src=x onerror=alert(2)&gt;"), "{md}");
    assert!(appendix.contains("```toml\n") && appendix.contains("dnn = \"<img src=x onerror=alert(2)>\""), "{md}");
}

#[test]
fn editing_the_annotations_rerenders_only_the_report() {
    let ws = crate::support::Ws::new();
    let text = manifest(&ws, "annotations = \"notes.toml\"\n");
    let (w, r) = run(&ws, &text);
    assert_eq!(r.exit_code(), 0, "{:?}", r.outcomes);
    assert!(output(&ws, &w, &r, "report.md").contains("Open items (clusters to review): 1, 2."));
    ws.write("notes.toml", "[cluster.1]\nstatus = \"open\"\n");
    let (w, r) = run(&ws, &text);
    assert_eq!(crate::support::Ws::ran(&w, &r), ["report"]);
    assert!(output(&ws, &w, &r, "report.md").contains("Open items (clusters to review): 2."));
}

#[test]
fn a_broken_user_template_is_named_with_its_line() {
    let ws = crate::support::Ws::new();
    ws.write("tpl/report.md.j2", "# {{ title }}\n\n{{ no_such_value }}\n");
    let (w, r) = run(&ws, &manifest(&ws, "template = \"tpl\"\n"));
    assert_eq!(r.exit_code(), 2);
    let hudd::engine::Outcome::Failed { error, .. } = &r.outcomes[w.stage_index("report").unwrap()] else {
        panic!("{:?}", r.outcomes)
    };
    assert!(error.contains("report.md.j2 line 3") && error.contains("tpl"), "{error}");
}

#[test]
fn a_keypoint_model_is_reported_by_its_mean_error_not_as_an_accuracy() {
    let ws = crate::support::Ws::new();
    let text = manifest(&ws, "")
        .replace(r#"\"accuracy\": 0.809}"#, r#"\"accuracy\": 0.2, \"mean_error\": 15.67}"#)
        .replace(r#"\"metric\": \"accuracy\""#, r#"\"metric\": \"mean keypoint error (px)\""#)
        .replace(r#"\"mean\": 0.93, \"min\": 0.92, \"max\": 0.94"#, r#"\"mean\": 12.98, \"min\": 12.5, \"max\": 13.4"#);
    let (w, r) = run(&ws, &text);
    assert_eq!(r.exit_code(), 0, "{:?}", r.outcomes);
    let md = output(&ws, &w, &r, "report.md");
    assert!(md.contains("| Mean keypoint error | 15.67 px |"), "{md}");
    assert!(
        md.contains("| Mean keypoint error (px) after HUDD's retraining (mean of 2 runs), held-out split `holdout` | 12.98 (12.50–13.40) |"),
        "{md}"
    );
    // An accuracy target cannot be judged on a keypoint error after retraining.
    assert!(md.contains("| Target `accuracy >= 0.92` | before: not met |"), "{md}");
}

#[test]
fn a_misspelt_annotations_file_is_said_in_the_report() {
    let ws = crate::support::Ws::new();
    let (w, r) = run(&ws, &manifest(&ws, "annotations = \"notse.toml\"\n"));
    assert_eq!(r.exit_code(), 0, "{:?}", r.outcomes);
    let md = output(&ws, &w, &r, "report.md");
    assert!(md.contains("The annotations file `notse.toml` named by the manifest does not exist"), "{md}");
    let html = output(&ws, &w, &r, "report.html");
    assert!(html.contains("<code>notse.toml</code> named by the manifest does not exist"), "{html}");
}
