//! The safety-analysis report: golden Markdown, escaping of user data, user templates, annotations.

use hudd::engine::manifest::Workflow;
use hudd::engine::progress::Reporter;
use hudd::engine::{RunOptions, RunReport};

fn run(ws: &crate::support::Ws, text: &str) -> (Workflow, RunReport) {
    let path = ws.write("w.toml", text);
    let registry = crate::support::registry_with_crafted();
    let w = hudd::engine::manifest::load(&path, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
    let report = hudd::engine::run(&ws.store(), &w, &registry, &RunOptions::default(), &Reporter::hidden()).unwrap();
    (w, report)
}

/// A stage writing `text` as its one output, named `output` (the test-only `crafted-<output>` kinds).
fn text_stage(id: &str, output: &str, text: &str) -> String {
    format!("[[stage]]\nid = \"{id}\"\nkind = \"crafted-{output}\"\ntext = {text:?}\n\n")
}

const TEST: &str = r#"{"split": "test", "images": 1000, "errors": 191, "accuracy": 0.809}"#;
const COMPARE: &str = r#"{"metric": "accuracy", "original": 0.809, "reference": "hudd", "judged_on": "holdout",
 "strategies": [{"strategy": "hudd", "runs": 2, "mean": 0.93, "min": 0.92, "max": 0.94, "fixed": 130.0, "broken": 14.0, "lo": 0.912, "hi": 0.946},
                {"strategy": "random", "runs": 2, "mean": 0.91, "min": 0.90, "max": 0.92, "fixed": 110.0, "broken": 12.0, "lo": 0.891, "hi": 0.928}],
 "tests": [{"baseline": "random", "u": 4.0, "p": 0.333, "a12": 1.0, "p_adjusted": 0.333}], "correction": "holm",
 "protocols": [
   {"split": "holdout", "held_out": true, "seen": [], "label": "held out: its images trained no model and chose no data or epoch", "images": 1000, "original": 0.809,
    "strategies": [{"strategy": "hudd", "runs": 2, "mean": 0.93, "min": 0.92, "max": 0.94, "fixed": 130.0, "broken": 14.0, "lo": 0.912, "hi": 0.946},
                   {"strategy": "random", "runs": 2, "mean": 0.91, "min": 0.90, "max": 0.92, "fixed": 110.0, "broken": 12.0, "lo": 0.891, "hi": 0.928}],
    "tests": [{"baseline": "random", "u": 4.0, "p": 0.333, "a12": 1.0, "p_adjusted": 0.333}]},
   {"split": "test", "held_out": false, "seen": [{"models": "hudd", "how": "chose-data"}], "label": "the paper's protocol: seen by hudd, whose training data its images chose", "original": 0.809,
    "strategies": [{"strategy": "hudd", "runs": 2, "mean": 0.95, "min": 0.94, "max": 0.96, "fixed": 150.0, "broken": 14.0},
                   {"strategy": "random", "runs": 2, "mean": 0.91, "min": 0.90, "max": 0.92, "fixed": 110.0, "broken": 12.0}],
    "tests": [{"baseline": "random", "u": 4.0, "p": 0.333, "a12": 1.0}]}],
 "rq1": {"failing": 191, "clusters": 2, "inspected": 10, "inspected_share": 0.0524, "assessed": 2, "explained": 1, "explained_share": 0.5, "threshold": 0.5,
   "chance": {"explained": 1, "explained_share": 0.5, "expected_by_chance": 0.31, "images_explained": 0.785, "images_explained_beyond_chance": 0.785, "permutations": 1000, "alpha": 0.05,
     "explained_uncorrected": 1, "expected_beyond_chance": 0.04, "correction": "benjamini-hochberg"}}}"#;
const RUNS: &str = "split,strategy,stage,score,fixed,broken\nholdout,hudd,\"t[seed=1]\",0.92,120,14\nholdout,hudd,\"t[seed=2]\",0.94,140,14\nholdout,random,\"b[seed=1]\",0.90,100,12\nholdout,random,\"b[seed=2]\",0.92,120,12\ntest,hudd,\"t[seed=1]\",0.99,120,14\n";
const RCC: &str = "split,strategy,cluster,images,before,after,runs,lo,hi\ntest,hudd,1,150,0,0.9,2,0.85,0.94\ntest,hudd,2,41,0,0.4,2,0.26,0.55\ntest,random,1,150,0,0.7,2,0.63,0.77\ntest,random,2,41,0,0.3,2,0.17,0.44\nholdout,hudd,1,140,0,0.8,2,0.73,0.86\nholdout,hudd,2,12,0,0.25,2,0.08,0.5\nholdout,random,1,140,0,0.78,2,0.7,0.85\nholdout,random,2,12,0,0.33,2,0.08,0.58\n";
const RULES: &str = r#"{"source": "simulate:signs", "task": "classification", "split": "test", "correct": 809, "rules": [
 {"cluster": 1, "size": 150, "text": "night 0.62–1.00 share", "covered": 140, "support": 0.933, "correct_covered": 60, "precision": 0.7,
  "conditions": [{"condition": {"type": "interval", "parameter": "night", "lo": 0.62, "hi": 1.0}, "text": "night 0.62–1.00 share", "kept": 0.38}]},
 {"cluster": 2, "size": 41, "text": "yaw 40.0° to 70.0°", "covered": 30, "support": 0.73, "correct_covered": 90, "precision": 0.25,
  "conditions": [{"condition": {"type": "arc", "parameter": "yaw", "from": 40.0, "to": 70.0, "period": 360.0}, "text": "yaw 40.0° to 70.0°", "kept": 0.2}]}]}"#;
const CONFIRM: &str = r#"{"learned_on": "test", "domain": "test", "images": 200, "alpha": 0.05, "rules": [
 {"cluster": 1, "rule": "night 0.62–1.00 share", "conditions": [], "confirmed": true, "coverage": {"drawn": 526, "inside": 200, "share": 0.38}, "recall": 0.82,
  "inside": {"images": 200, "failures": 124, "rate": 0.62, "lo": 0.549, "hi": 0.687}, "outside": {"images": 200, "failures": 18, "rate": 0.09, "lo": 0.054, "hi": 0.139}},
 {"cluster": 2, "rule": "yaw 40.0° to 70.0°", "conditions": [], "confirmed": false, "coverage": {"drawn": 1000, "inside": 200, "share": 0.2}, "recall": 0.24,
  "inside": {"images": 200, "failures": 30, "rate": 0.15, "lo": 0.104, "hi": 0.207}, "outside": {"images": 200, "failures": 24, "rate": 0.12, "lo": 0.079, "hi": 0.173}}]}"#;
const RECOVERY: &str = r#"{"cause": "scenario", "images": 191, "clusters": 2, "causes": 3, "purity": 0.81, "coverage": 0.67, "nmi": 0.42, "ari": 0.37,
 "random": {"permutations": 1000, "purity": [0.52, 0.55], "coverage": [0.6, 0.67], "nmi": [0.01, 0.02], "ari": [0.0, 0.01]}}"#;
const VARIANCE: &str = "cluster,size,explained,best_parameter,best_reduction,description,p,beats_chance,p_adjusted\n1,150,true,night,0.8,\"night 0.62–0.98 share\",0.001,true,0.002\n2,41,false,yaw,0.3,\"\",0.001,false,0.002\n";

fn manifest(ws: &crate::support::Ws, extra: &str) -> String {
    ws.write(
        "clusters/cluster.json",
        r#"{"images": 191, "layer": "classifier.4", "clusters": 2, "k_rule": "the knee", "layer_rule": "wicd", "mode": "hudd", "linkage": "ward", "layers": [], "stability": {"draws": 50, "share": 0.5, "threshold": 0.5, "unstable": 1}}"#,
    );
    let members: String = (0..191).map(|i| format!("test-{i:04},{},0.1\n", if i < 150 { 1 } else { 2 })).collect();
    ws.write("clusters/clusters.csv", &format!("image,cluster,distance_to_medoid\n{members}"));
    ws.write(
        "clusters/summary.csv",
        "cluster,size,share,mean_intra_distance,medoid,stability,stable\n1,150,0.785,0.2,test-1,0.91,true\n2,41,0.215,0.3,test-2,0.42,false\n",
    );
    format!(
        "[workflow]\nname = \"rep\"\n\n{}{}{}{}{}{}{}{}[[stage]]\nid = \"clusters\"\nkind = \"files\"\npath = \"clusters\"\n\n\
         [[stage]]\nid = \"report\"\nkind = \"report\"\ntest = \"test.summary\"\nclusters = \"clusters.clusters\"\nvariance = \"variance.explanations\"\n\
         compare = \"compare.compare\"\nruns = \"runs.runs\"\nrcc = \"rcc.rcc\"\nrules = \"rules.rules\"\nconfirm = \"confirm.confirmations\"\nrecovery = \"recovery-hudd.recovery\"\ntarget = \"accuracy >= 0.92\"\n{extra}",
        text_stage("test", "summary", TEST),
        text_stage("compare", "compare", COMPARE),
        text_stage("runs", "runs", RUNS),
        text_stage("rcc", "rcc", RCC),
        text_stage("variance", "explanations", VARIANCE),
        text_stage("rules", "rules", RULES),
        text_stage("confirm", "confirmations", CONFIRM),
        text_stage("recovery-hudd", "recovery", RECOVERY),
    )
}

fn output(ws: &crate::support::Ws, w: &Workflow, r: &RunReport, file: &str) -> String {
    let dir = ws.store().output_path(&r.keys[w.stage_index("report").unwrap()], "report").unwrap();
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// The member ids of the crafted clusters: 150 images in cluster 1, 41 in cluster 2.
fn members(cluster: usize) -> Vec<String> {
    let range = if cluster == 1 { 0..150 } else { 150..191 };
    range.map(|i| format!("test-{i:04}")).collect()
}

/// An annotation bound to some members by their fingerprint.
fn bound(table: usize, members: &[String], text: &str) -> String {
    format!(
        "[cluster.{table}]\nfingerprint = \"{}\"\nmembers = {members:?}\n{text}\n",
        hudd::artefact::evidence::fingerprint(members)
    )
}

/// The report with what differs between builds and machines masked: every word of 32 or more hexadecimal digits
/// (keys, hashes), the workspace's path, the versions of hudd, libtorch and the crates, and the reference packages'
/// versions.
fn masked(md: &str, workspace: &std::path::Path) -> String {
    let hex = |w: &str| w.len() >= 32 && w.chars().all(|c| c.is_ascii_hexdigit());
    let mut references = false;
    let mut out = String::new();
    for line in md.replace(workspace.to_str().unwrap(), "<workspace>").lines() {
        references = (references && line.starts_with('|')) || line == "| Package | Version | What it checks |";
        let line = if line.starts_with("Crates: ") {
            "Crates: <versions>".to_string()
        } else if let (true, Some((before, _)), Some((_, after))) =
            (line.contains(", libtorch "), line.split_once("hudd "), line.split_once(". The report"))
        {
            format!("{before}hudd <version>, libtorch <version>. The report{after}")
        } else if references && !line.starts_with("| Package") && !line.starts_with("|---") {
            let cells: Vec<&str> = line.split(" | ").collect();
            format!("{} | <version> | {}", cells[0], cells[2..].join(" | "))
        } else {
            line.to_string()
        };
        for w in line.split_inclusive(|c: char| !c.is_ascii_hexdigit()) {
            let (word, end) = w.split_at(w.trim_end_matches(|c: char| !c.is_ascii_hexdigit()).len());
            out.push_str(&if hex(word) { format!("<hash>{end}") } else { w.to_string() });
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_markdown_report_matches_its_golden_file() {
    let ws = crate::support::Ws::new();
    ws.write("notes.toml", &bound(1, &members(1), "triggering_condition = \"Night\"\nhazard = \"Misread speed limit\"\ncountermeasure = \"Night-time data\"\nreviewer = \"A. Engineer\"\nstatus = \"closed\""));
    let (w, r) = run(&ws, &manifest(&ws, "annotations = \"notes.toml\"\ndnn = \"A sign classifier.\"\n"));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    // The sections on the tool and traceability are compared too, with what changes from one build or machine to
    // the next masked: versions, hashes and keys, and the temporary workspace's path.
    let content = &masked(&md, ws.path());
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/report.md");
    let committed = std::fs::read_to_string(&golden).unwrap_or_default();
    if std::env::var_os("HUDD_UPDATE_GOLDEN").is_some() {
        // A blessing run writes the new file and fails, so that a run with the variable set never passes.
        std::fs::write(&golden, content).unwrap();
        panic!(
            "HUDD_UPDATE_GOLDEN is set: wrote {} ({}); review the diff and rerun without it",
            golden.display(),
            if committed == *content { "unchanged" } else { "changed" }
        );
    }
    assert_eq!(*content, committed, "rerun with HUDD_UPDATE_GOLDEN=1 to write the new report, then review the diff");
    assert!(md.contains("| test | `test` | summary |"), "{md}");
    let html = output(&ws, &w, &r, "report.html");
    assert!(html.contains("<h3>Cluster 2</h3>") && html.contains("accuracy (%) on split holdout"), "{html}");
    for section in
        ["summary", "scope", "data", "performance", "conditions", "measures", "residual", "confidence", "traceability"]
    {
        assert!(
            html.contains(&format!("<a href=\"#{section}\">")) && html.contains(&format!("id=\"{section}\"")),
            "{section}"
        );
    }
    // The summary comes first, before the scope, in both reports: the verdict, the causes, the open items.
    let first_h2 = |text: &str, tag: &str| text.split(tag).nth(1).map(|s| s.lines().next().unwrap_or("").to_string());
    assert_eq!(first_h2(&md, "\n## ").as_deref(), Some("Summary"), "{md}");
    assert_eq!(first_h2(&html, "<h2 ").as_deref().map(|l| l.starts_with("id=\"summary\"")), Some(true), "{html}");
    let summary = &md[md.find("## Summary").unwrap()..md.find("## 1. Scope").unwrap()];
    assert!(
        summary.contains(
            "Acceptance criterion `accuracy >= 0.92`. On held-out split holdout: not met by the original, 80.9%"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("- [Cluster 1](#cluster-1), 150 failures (78.5%): the model fails 62.0% inside"),
        "{summary}"
    );
    assert!(
        summary.contains("**Open items**: clusters with too few held-out images to judge: 2; unstable clusters: 2"),
        "{summary}"
    );
    assert!(html.contains("<svg") && html.contains("failure rate (%) on fresh images inside and outside the rule"));
}

#[test]
fn user_data_is_escaped_in_the_html_and_the_markdown() {
    let ws = crate::support::Ws::new();
    ws.write(
        "notes.toml",
        "[cluster.2]\ntriggering_condition = \"<script>alert(1)</script>\"\nhazard = '\"><img src=y onerror=alert(3)>'\n\
         countermeasure = \"a | b `c` **d**\"\n",
    );
    let (w, r) = run(&ws, &manifest(&ws, "annotations = \"notes.toml\"\ndnn = \"<img src=x onerror=alert(2)>\"\n"));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let html = output(&ws, &w, &r, "report.html");
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    // Markdown viewers render raw HTML too; the manifest's own text, in a code fence, is shown as it is.
    let md = output(&ws, &w, &r, "report.md");
    let (body, appendix) = md.split_once("## 8. Traceability").unwrap();
    assert!(!body.contains("<script>") && body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{md}");
    assert!(!body.contains("<img src=x") && body.contains("&lt;img src=x onerror=alert(2)&gt;"), "{md}");
    assert!(appendix.contains("```toml\n") && appendix.contains("dnn = \"<img src=x onerror=alert(2)>\""), "{md}");
    assert!(!html.contains("<img src=y") && !body.contains("<img src=y"), "{md}");
    // Pipes, backticks and emphasis in a table cell stay text: the annotation row keeps its five cells.
    let row = body.lines().find(|l| l.contains("&lt;script&gt;")).unwrap();
    assert!(row.contains(r"a \| b \`c\` \*\*d\*\*"), "{row}");
    assert_eq!(row.replace(r"\|", "").matches('|').count(), 6, "{row}");
    assert!(html.contains("a | b `c` **d**"), "{html}");
}

#[test]
fn editing_the_annotations_rerenders_only_the_report() {
    let ws = crate::support::Ws::new();
    let text = manifest(&ws, "annotations = \"notes.toml\"\n");
    let (w, r) = run(&ws, &text);
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    assert!(output(&ws, &w, &r, "report.md").contains("Clusters not yet reviewed: [1](#cluster-1), [2](#cluster-2)."));
    ws.write("notes.toml", "[cluster.1]\nstatus = \"open\"\n");
    let (w, r) = run(&ws, &text);
    assert_eq!(crate::support::Ws::ran(&w, &r), ["report"]);
    assert!(output(&ws, &w, &r, "report.md").contains("Clusters not yet reviewed: [2](#cluster-2)."));
}

#[test]
fn a_broken_user_template_is_named_with_its_line() {
    let ws = crate::support::Ws::new();
    ws.write("tpl/report.md.j2", "# {{ title }}\n\n{{ no_such_value }}\n");
    let (w, r) = run(&ws, &manifest(&ws, "template = \"tpl\"\n"));
    assert_eq!(r.exit_code(), 2);
    let hudd::engine::Outcome::Failed { error, .. } = &r.outcomes[w.stage_index("report").unwrap()] else {
        panic!("{}", crate::support::failures(&r))
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
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    assert!(md.contains("mean keypoint error 15.67 px"), "{md}");
    // An accuracy target cannot be judged on a keypoint error: no criterion column.
    assert!(md.contains("| Model | Split | Runs | Mean keypoint error (px) |"), "{md}");
    assert!(md.contains("| hudd | `holdout` (held out) | 2 | 12.98 |") && md.contains("| one model | – |"), "{md}");
}

#[test]
fn failure_rates_inside_each_rule_after_retraining_are_shown_per_strategy_with_intervals_over_runs_and_images() {
    let ws = crate::support::Ws::new();
    // Two runs per strategy, each on its own 200 fresh images inside cluster 1's rule.
    let after = |failures: [usize; 2]| -> Vec<String> {
        failures
            .iter()
            .map(|f| {
                CONFIRM.replacen(
                    r#""failures": 124, "rate": 0.62"#,
                    &format!(r#""failures": {f}, "rate": {}"#, *f as f64 / 200.0),
                    1,
                )
            })
            .collect()
    };
    let mut extra = String::new();
    let mut refs = Vec::new();
    for (strategy, failures) in [("hudd", [40, 50]), ("random", [70, 80])] {
        for (run, text) in after(failures).iter().enumerate() {
            let id = format!("after-{strategy}-{run}");
            extra += &text_stage(&id, "confirmations", text);
            refs.push(format!("{id}.confirmations"));
        }
    }
    let text = manifest(
        &ws,
        &format!(
            "confirm_after = {refs:?}
"
        ),
    ) + &extra;
    let (w, r) = run(&ws, &text);
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    // Without a matrix `strategy`, each confirmation is named by its stage: four "strategies" of one run each.
    let row = md.lines().find(|l| l.starts_with("| 1 | 150 | night")).unwrap_or_else(|| panic!("{md}"));
    assert!(row.contains("after-hudd-0 20% (") && row.contains("after-random-1 40% ("), "{row}");
    assert!(md.contains("two-level bootstrap 95% interval over runs and images"), "{md}");
}

#[test]
fn each_cluster_names_the_criterion_it_fails_shows_every_strategy_and_flags_too_few_images() {
    let ws = crate::support::Ws::new();
    let (w, r) = run(&ws, &manifest(&ws, ""));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    let cluster = |id: usize| md.split(&format!("### Cluster {id}\n")).nth(1).unwrap().split("\n### ").next().unwrap();
    // Cluster 2 has a tiny p-value but no parameter's spread halved: it fails the paper's criterion, not chance.
    assert!(
        cluster(2).contains(
            "Not explained: no parameter's spread drops by 50% (best: yaw, 30%), whatever chance says (p = 0.001, \
             adjusted 0.002)."
        ),
        "{md}"
    );
    assert!(!md.contains("Not beyond chance: random clusters of its size do as well"), "{md}");
    assert!(cluster(1).contains("Homogeneous beyond chance (RQ1): random clusters of its size rarely share"), "{md}");
    // Every strategy on the cluster's held-out images, with intervals; before is 0 by construction and said so.
    assert!(cluster(1).contains("failures of the original, so it gets 0% right by construction"), "{md}");
    assert!(cluster(1).contains("hudd 80% (73–86); random 78% (70–85)."), "{md}");
    // Twelve held-out images: flagged, and kept out of the residual risk whatever its rate.
    assert!(cluster(2).contains(": too few to judge a rate (fewer than 20)"), "{md}");
    assert!(md.contains("to judge (fewer than 20): [2](#cluster-2)."), "{md}");
    assert!(md.contains("wrong after retraining with hudd): none."), "{md}");
    // The strategies' interval covers runs and images; RQ1 and RQ2 say their corrections.
    assert!(md.contains("| 0.9120 – 0.9460 |") && md.contains("its 2 runs and the split's 1000 images"), "{md}");
    assert!(md.contains("Mann-Whitney p = 0.3330 (adjusted 0.3330)"), "{md}");
    assert!(
        md.contains(
            "1 beyond chance (explained, and a permutation p-value below 0.05 after Benjamini-Hochberg's correction \
             (false discovery rate); 0.04 expected if no cluster had a cause; 1 without the correction)"
        ),
        "{md}"
    );
    let html = output(&ws, &w, &r, "report.html");
    assert!(html.contains("whatever chance says (p = 0.001, adjusted 0.002)"), "{html}");
}

#[test]
fn a_recovery_with_nothing_to_score_is_shown_with_its_reason() {
    let ws = crate::support::Ws::new();
    let empty = r#"{"cause": "scenario", "images": 0, "unclustered": 0, "clusters": 0, "causes": 0, "purity": null,
 "coverage": null, "nmi": null, "ari": null, "random": null, "note": "the model fails on none of these images: no cluster to score"}"#;
    let (w, r) = run(&ws, &manifest(&ws, "").replace(&format!("{RECOVERY:?}"), &format!("{empty:?}")));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    assert!(
        md.contains("| 0 | 0 | 0 | 0 | the model fails on none of these images: no cluster to score | – |"),
        "{md}"
    );
    assert!(output(&ws, &w, &r, "report.html").contains("<td colspan=\"6\">the model fails on none"));
}

#[test]
fn how_many_failures_each_planted_cause_accounts_for_is_shown_beside_the_recovery() {
    let ws = crate::support::Ws::new();
    let exposure = r#", "exposure": {"nominal_rate": 0.2, "attributable": 0.47, "causes": [
 {"cause": "fog", "planted": true, "tested": 100, "failing": 60, "rate": 0.6, "attributable": 0.6667},
 {"cause": "hand", "planted": true, "tested": 50, "failing": 5, "rate": 0.1, "attributable": 0.0},
 {"cause": "nominal", "planted": false, "tested": 100, "failing": 20, "rate": 0.2, "attributable": 0.0}]}}"#;
    let with = RECOVERY.strip_suffix('}').unwrap().to_string() + exposure;
    let (w, r) = run(&ws, &manifest(&ws, "").replace(&format!("{RECOVERY:?}"), &format!("{with:?}")));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    assert!(md.contains("against the nominal scenario's (20.0%)"), "{md}");
    assert!(md.contains("The planted causes account for 47.0% of the\nfailing images."), "{md}");
    assert!(md.contains("| fog | 100 | 60 | 60.0% | 66.7% |"), "{md}");
    assert!(md.contains("| hand | 50 | 5 | 10.0% | 0.0% |"), "{md}");
    assert!(md.contains("| nominal (not planted) | 100 | 20 | 20.0% | – |"), "{md}");
    let html = output(&ws, &w, &r, "report.html");
    assert!(html.contains("<tr><td>fog</td><td>100</td><td>60</td><td>60.0%</td><td>66.7%</td></tr>"), "{html}");
}

#[test]
fn control_characters_and_bidi_overrides_in_notes_reach_neither_report() {
    let ws = crate::support::Ws::new();
    // TOML's basic strings carry them as escapes: a NUL, a terminal colour escape, a right-to-left override.
    ws.write("notes.toml", &bound(1, &members(1), r#"hazard = "a\u0000b \u001b[31mred\u001b[0m \u202egnp.exe""#));
    let (w, r) = run(&ws, &manifest(&ws, "annotations = \"notes.toml\"\n"));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    for file in ["report.md", "report.html"] {
        let text = output(&ws, &w, &r, file);
        assert!(!text.contains('\0') && !text.contains('\u{1b}') && !text.contains('\u{202e}'), "{file}");
        // Markdown escapes the brackets too.
        let shown = "a\u{fffd}b \u{fffd}[31mred\u{fffd}[0m \u{fffd}gnp.exe";
        assert!(text.contains(shown) || text.contains(&shown.replace('[', "\\[")), "{file}: {text}");
    }
}

#[test]
fn a_misspelt_annotations_file_is_said_in_the_report() {
    let ws = crate::support::Ws::new();
    let (w, r) = run(&ws, &manifest(&ws, "annotations = \"notse.toml\"\n"));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    assert!(md.contains("The annotations file `notse.toml` named by the manifest does not exist"), "{md}");
    let html = output(&ws, &w, &r, "report.html");
    assert!(html.contains("<code>notse.toml</code> named by the manifest does not exist"), "{html}");
}

#[test]
fn annotations_follow_their_members_across_renumbering_and_are_flagged_when_the_members_change() {
    let ws = crate::support::Ws::new();
    // Written when cluster 2's images were cluster 7; another note for a cluster that has since lost 10 images and
    // gained 5 that no cluster holds.
    let mut changed: Vec<String> = members(1)[10..].to_vec();
    changed.extend((900..905).map(|i| format!("test-{i:04}")));
    ws.write(
        "notes.toml",
        &format!(
            "{}{}",
            bound(7, &members(2), "hazard = \"Misread at an angle\"\nstatus = \"closed\""),
            bound(3, &changed, "hazard = \"Misread at night\"\nstatus = \"closed\"")
        ),
    );
    let (w, r) = run(&ws, &manifest(&ws, "annotations = \"notes.toml\"\n"));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    let cluster = |id: usize| md.split(&format!("### Cluster {id}\n")).nth(1).unwrap().split("\n### ").next().unwrap();
    assert!(cluster(2).contains("| Misread at an angle |"), "{md}");
    assert!(cluster(2).contains("written as cluster.7: the same members, renumbered"), "{md}");
    // The changed note is shown beside no cluster; section 6 names its closest cluster and the overlap.
    assert!(!md.contains("| Misread at night |") && cluster(1).contains("Annotation: to review."), "{md}");
    assert!(
        md.contains("| `cluster.3` | the cluster it was written for (145 images) changed its members | [1](#cluster-1) | 140 | 0.90 |"),
        "{md}"
    );
    let evidence: serde_json::Value = serde_json::from_str(&output(&ws, &w, &r, "evidence.json")).unwrap();
    assert_eq!(
        (evidence["schema"].as_str(), evidence["schema_version"].as_u64()),
        (Some("hudd.evidence"), Some(hudd::artefact::evidence::VERSION as u64))
    );
    assert_eq!(evidence["annotation_flags"][0]["overlap"]["shared"], 140);
    assert_eq!(evidence["clusters"][1]["members"].as_array().unwrap().len(), 41);
    assert!(evidence["clusters"][0]["sheet"].is_null() || evidence["clusters"][0]["sheet"].get("data").is_none());
}

/// A small real workflow: simulate, train for `epochs`, test, heatmaps, clusters and the report (`TINY` stands for
/// the architecture file).
pub(crate) const SMALL: &str = r#"[workflow]
name = "small"
seed = 4

[[stage]]
id = "data"
kind = "simulate"
simulator = "signs"
size = 32
params = { class = { weights = { stop = 1.0, yield = 1.0, parking = 1.0, no_entry = 1.0 } } }
splits = { train = { count = 60 }, test = { count = 40 } }

[[stage]]
id = "train"
kind = "train"
dataset = "data.dataset"
architecture = "TINY"
epochs = 1
batch_size = 8
optimizer = "adam"
lr = 0.003
validation = 0.0
device = "cpu"

[[stage]]
id = "test"
kind = "test"
model = "train.model"
dataset = "data.dataset"

[[stage]]
id = "heatmaps"
kind = "heatmaps"
model = "train.model"
images = "test.errors"

[[stage]]
id = "cluster"
kind = "cluster"
heatmaps = "heatmaps.heatmaps"
images = "test.errors"
stability_draws = 5

[[stage]]
id = "report"
kind = "report"
test = "test.summary"
clusters = "cluster.clusters"
data = "data.dataset"
heatmaps = "heatmaps.heatmaps"
annotations = "notes.toml"
"#;

/// The command line with the built-in stages: (exit code, stdout, stderr).
fn hudd(ws: &crate::support::Ws, args: &[&str]) -> (u8, String, String) {
    ws.cli_with(&hudd::stages::registry(), args)
}

#[test]
fn hudd_diff_shows_the_changed_parameter_and_figures_and_annotate_binds_notes_to_members() {
    let ws = crate::support::Ws::new();
    let tiny = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let m = ws.write("small.toml", &SMALL.replace("TINY", &tiny));
    let m = m.to_str().unwrap();
    for epochs in ["1", "3"] {
        let (code, _, err) = hudd(&ws, &["run", "--set", &format!("train.epochs={epochs}"), m]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, text, err) = hudd(&ws, &["diff", "--all", "small~1", "small"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("train.epochs: 1 → 3"), "{text}");
    assert!(text.contains("overrides: [train.epochs=1] → [train.epochs=3]"), "{text}");
    // Every stage after `train` reads its model: all five differ, the data alone is the same.
    assert!(
        text.contains(
            "\nstages: 5 with different artefacts, 1 the same\n  different: cluster, heatmaps, report, test, train\n"
        ),
        "{text}"
    );
    assert!(text.contains("\n  test.accuracy ") && text.contains("\n  test.errors "), "{text}");
    assert!(text.contains("clusters (matched by their members):"), "{text}");
    let (_, json, _) = hudd(&ws, &["diff", "--json", "small~1", "small"]);
    let d: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(d["params"][0]["param"], "epochs");
    assert!(d["differ"].as_array().unwrap().iter().any(|s| s == "train") && d["same"].as_u64() == Some(1), "{d}");
    let (_, md, _) = hudd(&ws, &["diff", "--md", "small~1", "small"]);
    assert!(md.contains("| train | epochs | 1 | 3 |"), "{md}");
    // The report's own independence check and conservation table.
    let report = ws.path().join("reports/small/report.md");
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("| `train` | `test` | 0 | pass |") && md.contains("The splits are independent."), "{md}");
    assert!(md.contains("| Layer | Rule | Worst relative deviation |"), "{md}");
    // A template for the current clusters; the report then binds it and flags nothing.
    let notes_path = ws.path().join("notes.toml");
    let notes_arg = notes_path.to_str().unwrap();
    let (code, _, err) = hudd(&ws, &["annotate", "small", "-o", notes_arg]);
    assert_eq!(code, 0, "{err}");
    let notes: hudd::artefact::annotations::Annotations =
        toml::from_str(&std::fs::read_to_string(ws.path().join("notes.toml")).unwrap()).unwrap();
    assert!(!notes.cluster.is_empty() && notes.cluster.values().all(|a| a.fingerprint.is_some()), "{notes:?}");
    let (code, _, err) = hudd(&ws, &["annotate", "small", "-o", notes_arg]);
    assert_eq!(code, 2, "an existing file is not overwritten without --force: {err}");
    let (code, _, err) = hudd(&ws, &["run", "--set", "train.epochs=3", m]);
    assert_eq!(code, 0, "{err}");
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("Annotations that no longer match their cluster: none."), "{md}");
    // Back to one epoch: other clusters, and the notes are flagged with their closest cluster, not reused.
    let (code, _, err) = hudd(&ws, &["run", "--set", "train.epochs=1", m]);
    assert_eq!(code, 0, "{err}");
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("changed its members") || md.contains("the cluster vanished"), "{md}");
    // A parameter that changes the heatmaps' key but not their bytes: recomputed, and said to be the same bytes.
    for tolerance in ["0.002", "0.003"] {
        let (code, _, err) =
            hudd(&ws, &["run", "--set", "train.epochs=1", "--set", &format!("heatmaps.tolerance={tolerance}"), m]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, text, err) = hudd(&ws, &["diff", "small~1", "small"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("heatmaps.tolerance: 0.002 → 0.003"), "{text}");
    assert!(text.contains("recomputed, same bytes: heatmaps") && !text.contains("different: heatmaps"), "{text}");
    // The clusters were kept (the heatmaps' bytes did not change), but the report states the lineage of this run.
    let evidence: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.path().join("reports/small/evidence.json")).unwrap()).unwrap();
    let heatmaps = evidence["lineage"].as_array().unwrap().iter().find(|a| a["stage"] == "heatmaps").unwrap();
    assert_eq!(heatmaps["params"]["tolerance"], 0.003, "{heatmaps}");
    let state = ws.store().read_state("small");
    assert_eq!(heatmaps["key"].as_str(), Some(state["heatmaps"].key.as_str()));
    // And a rerun with nothing changed computes nothing.
    let (code, _, err) = hudd(&ws, &["run", "--set", "train.epochs=1", "--set", "heatmaps.tolerance=0.003", m]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("small: 0 ran"), "{err}");
}

#[test]
fn a_model_that_fails_on_nothing_goes_through_every_stage_to_the_report() {
    let ws = crate::support::Ws::new();
    let tiny = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    // One class: whatever the model learns, it gets every image right.
    let text = SMALL
        .replace("TINY", &tiny)
        .replace("weights = { stop = 1.0, yield = 1.0, parking = 1.0, no_entry = 1.0 }", "weights = { stop = 1.0 }")
        .replace(
            "annotations = \"notes.toml\"\n",
            "variance = \"variance.clusters\"\nrecovery = [\"recovery.summary\"]\n",
        )
        + "\n[[stage]]\nid = \"variance\"\nkind = \"variance\"\nclusters = \"cluster.clusters\"\nimages = \"test.errors\"\n\n\
           [[stage]]\nid = \"recovery\"\nkind = \"recovery\"\nclusters = \"cluster.clusters\"\nimages = \"test.errors\"\ncause = \"class\"\n";
    let m = ws.write("none.toml", &text);
    let (code, _, err) = hudd(&ws, &["run", m.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let md = std::fs::read_to_string(ws.path().join("reports/small/report.md")).unwrap();
    assert!(md.contains("fails on 0 of the 40 images"), "{md}");
    assert!(md.contains("No root-cause clusters."), "{md}");
    assert!(md.contains("the model fails on none of these images: no cluster to score"), "{md}");
}

/// Object path (`clusters[].accuracy[]`) → the keys its objects have, over a whole `evidence.json`; the stages'
/// parameters in `lineage` are left out (their names are each stage kind's, documented in workflows/README.md).
fn evidence_shape(doc: &serde_json::Value) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    fn walk(
        v: &serde_json::Value,
        path: &str,
        out: &mut std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    ) {
        if path == "lineage[].params" || path == "lineage[].externals" {
            return;
        }
        match v {
            serde_json::Value::Object(map) => {
                out.entry(path.to_string()).or_default().extend(map.keys().cloned());
                for (k, x) in map {
                    walk(x, &if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|x| walk(x, &format!("{path}[]"), out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(doc, "", &mut out);
    out
}

/// `evidence.json`'s shape is tied to its schema version: every object a report writes has exactly the keys that
/// `tests/fixtures/evidence-schema.txt` lists for its path under the version it names (an object absent from this
/// report is not checked). A change of shape needs a new `evidence::VERSION`, said in its doc comment, and the file
/// written again: `HUDD_BLESS=1` writes it from this report (refused while the version is the committed one) and
/// fails the test, so a run with the variable set never passes.
pub fn assert_evidence_shape(evidence: &str) {
    let doc: serde_json::Value = serde_json::from_str(evidence).unwrap();
    let shape = evidence_shape(&doc);
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/evidence-schema.txt");
    let version = hudd::artefact::evidence::VERSION;
    // The committed file, read before anything is written: the version check compares against it.
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let mut lines = text.lines();
    let committed_version = lines.next().and_then(|l| l.strip_prefix("version ")).and_then(|v| v.parse::<u32>().ok());
    let recorded: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = lines
        .map(|l| {
            let (path, keys) = l.split_once(": ").unwrap_or((l.trim_end_matches(':'), ""));
            let path = if path == "." { "" } else { path };
            (path.to_string(), keys.split_whitespace().map(str::to_string).collect())
        })
        .collect();
    let changed: Vec<&String> =
        shape.iter().filter(|(path, keys)| recorded.get(*path) != Some(keys)).map(|(p, _)| p).collect();
    if std::env::var_os("HUDD_BLESS").is_some() {
        // A shape may change only with a new version: blessing under the committed version writes nothing.
        assert!(
            changed.is_empty() || committed_version != Some(version),
            "evidence.json's {changed:?} changed shape but evidence::VERSION is still the committed {version}: bump it, \
             say what changed in its doc comment, then bless again"
        );
        // Paths this report does not hold keep their committed lines (other reports' objects).
        let mut all = recorded.clone();
        all.extend(shape.iter().map(|(p, k)| (p.clone(), k.clone())));
        let lines: Vec<String> = all
            .iter()
            .map(|(path, keys)| {
                format!(
                    "{}: {}",
                    if path.is_empty() { "." } else { path },
                    keys.iter().cloned().collect::<Vec<_>>().join(" ")
                )
            })
            .collect();
        std::fs::write(&file, format!("version {version}\n{}\n", lines.join("\n"))).unwrap();
        panic!("HUDD_BLESS is set: wrote {}; review the diff and rerun without it", file.display());
    }
    assert_eq!(
        committed_version,
        Some(version),
        "evidence::VERSION is {version} but {} records another version's shape: write it again (HUDD_BLESS=1)",
        file.display()
    );
    assert!(
        changed.is_empty(),
        "evidence.json's {changed:?} changed shape without a new schema version: bump evidence::VERSION, say what \
         changed in its doc comment, and write {} again (HUDD_BLESS=1)",
        file.display()
    );
}

#[test]
fn other_clusterings_of_the_same_failures_are_shown_beside_the_main_one() {
    // The same 191 failing images clustered another way: two clusters, both explained beyond chance.
    let ws = crate::support::Ws::new();
    let other = "cluster,size,explained,best_parameter,best_reduction,description,p,beats_chance,p_adjusted\n\
                 1,120,true,night,0.9,\"night 0.7–1.0 share\",0.001,true,0.002\n\
                 2,70,true,fog,0.7,\"fog 0.5–0.9 share\",0.004,true,0.004\n3,1,,,,\"\",,,\n";
    let extra = format!(
        "alternatives = [\"variance-generic.explanations\"]\n\n{}",
        text_stage("variance-generic", "explanations", other)
    );
    let (w, r) = run(&ws, &manifest(&ws, &extra));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    assert!(md.contains("### The same failures clustered other ways"), "{md}");
    assert!(md.contains("| `variance` (main) | 2 | 191 | 2 | 1 | 1 | 150 (78.5%) |"), "{md}");
    assert!(md.contains("| `variance-generic` | 3 | 191 | 2 | 2 | 2 | 190 (99.5%) |"), "{md}");
    let html = output(&ws, &w, &r, "report.html");
    assert!(html.contains("<td><code>variance-generic</code></td><td>3</td><td>191</td>"), "{html}");
    let evidence: serde_json::Value = serde_json::from_str(&output(&ws, &w, &r, "evidence.json")).unwrap();
    assert_eq!(evidence["clusterings"][1]["images_beyond_chance"], 190);
    // Its shape is the one the schema file records (the quickstart, which checks the rest, has no alternatives).
    let shape = evidence_shape(&evidence);
    let schema = std::fs::read_to_string(format!("{}/tests/fixtures/evidence-schema.txt", env!("CARGO_MANIFEST_DIR")));
    let line = format!("clusterings[]: {}", shape["clusterings[]"].iter().cloned().collect::<Vec<_>>().join(" "));
    assert!(schema.unwrap().lines().any(|l| l == line), "{line}");
    // Without alternatives the section is not there.
    let ws = crate::support::Ws::new();
    let (w, r) = run(&ws, &manifest(&ws, ""));
    assert!(!output(&ws, &w, &r, "report.md").contains("clustered other ways"));
}

#[test]
fn a_selection_clustering_is_cross_tabulated_against_the_cause_clusters_with_the_residual_risk_by_cause() {
    let ws = crate::support::Ws::new();
    // HUDD's relevance clusters of the same 191 failures: cause 1's 150 images split 100/50 over selection clusters
    // 5 and 6, cause 2's 41 all in 7.
    ws.write(
        "selection/cluster.json",
        r#"{"images": 191, "layer": "features.3", "clusters": 3, "k_rule": "the knee", "layer_rule": "wicd", "mode": "hudd", "linkage": "ward", "layers": []}"#,
    );
    let members: String = (0..191)
        .map(|i| {
            format!(
                "test-{i:04},{},0.1\n",
                if i < 100 {
                    5
                } else if i < 150 {
                    6
                } else {
                    7
                }
            )
        })
        .collect();
    ws.write("selection/clusters.csv", &format!("image,cluster,distance_to_medoid\n{members}"));
    ws.write(
        "selection/summary.csv",
        "cluster,size,share,mean_intra_distance,medoid,stability,stable\n5,100,0.52,0.2,test-0,,\n6,50,0.26,0.2,test-100,,\n7,41,0.21,0.3,test-150,,\n",
    );
    let extra =
        "selection = \"selection.clusters\"\n\n[[stage]]\nid = \"selection\"\nkind = \"files\"\npath = \"selection\"\n";
    let (w, r) = run(&ws, &manifest(&ws, extra));
    assert_eq!(r.exit_code(), 0, "{}", crate::support::failures(&r));
    let md = output(&ws, &w, &r, "report.md");
    assert!(md.contains("### Causes against the clusters that select"), "{md}");
    assert!(md.contains("Stage `clusters` names the causes") && md.contains("Stage `selection` selects the images"));
    assert!(md.contains("HUDD's pipeline: the model's relevance heatmaps"), "{md}");
    // Cause 1: 100 in selection cluster 5, 50 in 6; 140 held-out failures assigned, hudd gets 80% (73–86) right.
    assert!(md.contains("| [1](#cluster-1) | 150 | – | 5 (100), 6 (50) | 66.7% | 140 | 80% (73–86) |"), "{md}");
    // Cause 2: all in 7, but only 12 held-out failures: too few to judge.
    assert!(md.contains("| [2](#cluster-2) | 41 | – | 7 (41) | 100.0% | 12 | 25% (8–50), too few to judge |"), "{md}");
    assert!(md.contains("selected by another clustering, stage `selection`"), "{md}");
    let html = output(&ws, &w, &r, "report.html");
    assert!(html.contains(r#"<h3 id="roles">"#) && html.contains("<td>5 (100), 6 (50)</td>"), "{html}");
    let evidence: serde_json::Value = serde_json::from_str(&output(&ws, &w, &r, "evidence.json")).unwrap();
    let roles = &evidence["roles"];
    assert_eq!((roles["images"].as_u64(), roles["selection"]["clusters"].as_u64()), (Some(191), Some(3)));
    // The selection refines the causes: every selection cluster lies within one cause, so the ARI is below 1 and
    // above 0; the cells in full.
    let ari = roles["ari"].as_f64().unwrap();
    assert!(ari > 0.0 && ari < 1.0, "{ari}");
    assert_eq!(
        roles["rows"][0]["cells"],
        serde_json::json!([{"cluster": 5, "images": 100}, {"cluster": 6, "images": 50}])
    );
    // Its shape is the one the schema file records (the crafted inputs' other objects are not the real ones).
    let shape = evidence_shape(&evidence);
    let schema = std::fs::read_to_string(format!("{}/tests/fixtures/evidence-schema.txt", env!("CARGO_MANIFEST_DIR")));
    let schema = schema.unwrap();
    for path in ["roles", "roles.causes", "roles.rows[]", "roles.rows[].after", "roles.rows[].cells[]"] {
        let line = format!("{path}: {}", shape[path].iter().cloned().collect::<Vec<_>>().join(" "));
        assert!(schema.lines().any(|l| l == line), "{line}");
    }
    // Without a selection clustering, one clustering plays both roles and the section is not there.
    let ws = crate::support::Ws::new();
    let (w, r) = run(&ws, &manifest(&ws, ""));
    let md = output(&ws, &w, &r, "report.md");
    assert!(!md.contains("clusters that select") && !md.contains("another clustering"));
}
