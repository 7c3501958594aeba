//! What ships agrees with the committed figures a newcomer's first run reproduces: every note of the quickstart's
//! shipped annotations is bound to a cluster of the committed quickstart report (same members, by fingerprint), so
//! the first report shows no "changed its members" warning.

use std::path::Path;

#[test]
fn the_quickstarts_shipped_annotations_are_bound_to_the_clusters_of_its_committed_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("workflows/annotations/quickstart.toml")).unwrap();
    let annotations: hudd::artefact::annotations::Annotations = toml::from_str(&text).unwrap();
    let evidence: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("reports/quickstart/tables/evidence.json")).unwrap())
            .unwrap();
    let clusters: Vec<hudd::artefact::annotations::Current> = evidence["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| hudd::artefact::annotations::Current {
            id: c["id"].as_u64().unwrap() as usize,
            fingerprint: c["fingerprint"].as_str().unwrap().to_string(),
            members: c["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect(),
        })
        .collect();
    assert!(!annotations.cluster.is_empty());
    let (bound, flags) = hudd::artefact::annotations::bind(&annotations, &clusters);
    assert!(flags.is_empty(), "notes not bound to the committed clusters: {flags:?}");
    assert_eq!(bound.len(), annotations.cluster.len());
    assert_eq!(evidence["annotation_flags"], serde_json::json!([]), "the committed report warned of drift");
    // The members the fingerprints stand for, recomputed: a fingerprint copied without its members proves nothing.
    for c in &clusters {
        assert_eq!(hudd::artefact::evidence::fingerprint(&c.members), c.fingerprint, "cluster {}", c.id);
    }
}

#[test]
fn diff_check_says_every_figure_equal_or_lists_those_that_differ_with_exit_1() {
    let ws = crate::support::Ws::new();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/quickstart/tables/evidence.json");
    let text = std::fs::read_to_string(&committed).unwrap();
    let same = ws.write("same/evidence.json", &text);
    let (code, out, err) = ws.cli(&["diff", "--check", committed.to_str().unwrap(), same.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    // It says how many it compared: a check that compared a handful proves little.
    let figures = hudd::artefact::evidence::figures(&doc).len();
    assert!(figures > 100, "{figures}");
    assert!(out.trim_end().ends_with(&format!("every figure equal ({figures} compared)")), "{out}");
    assert!(!out.contains("stages:"), "two evidence files have no stages to compare: {out}");
    let errors = doc["test"]["errors"].as_u64().unwrap();
    doc["test"]["errors"] = serde_json::json!(errors + 1);
    let other = ws.write("other/evidence.json", &serde_json::to_string(&doc).unwrap());
    let (code, out, _) = ws.cli(&["diff", "--check", committed.to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.trim_end().ends_with(&format!("1 figure differ (of {figures} compared)")), "{out}");
    let line = out.lines().find(|l| l.trim_start().starts_with("test.errors")).unwrap_or_default();
    assert!(line.contains(&format!("{errors} → {}", errors + 1)), "both values listed: {out}");
}

#[test]
fn diff_check_refuses_a_run_without_a_report_instead_of_calling_it_reproduced() {
    let ws = crate::support::Ws::new();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/quickstart/tables/evidence.json");
    // A run stopped before its report stage: its record names no report, so it has no figures.
    let record = ws.write(
        "partial-run.json",
        r#"{"workflow": "quickstart", "stages": [{"id": "data", "kind": "simulate", "key": "0", "outcome": "ran"}]}"#,
    );
    let (code, out, err) = ws.cli(&["diff", "--check", committed.to_str().unwrap(), record.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(!out.contains("every figure equal"), "{out}");
    assert!(err.contains("nothing to compare") && err.contains("partial-run.json` has no report"), "{err}");
}

#[test]
fn each_vendor_doctor_calls_checked_has_a_recorded_check_in_the_status_page() {
    // `hudd doctor` tells a replicator the committed figures were reproduced on their CPU's vendor: only a check
    // recorded in docs/status.md (a row of `scripts/vendor-check`'s table, every figure equal) may say so.
    let status = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status.md")).unwrap();
    // The latest row of each vendor under the kind the committed figures were computed under decides.
    let kind = format!("`{}`", hudd::runtime::COMMITTED_KIND);
    for vendor in hudd::runtime::CHECKED_VENDORS {
        let row = (status.lines())
            .rfind(|l| l.starts_with('|') && l.contains(&format!("(`{vendor}`)")) && l.contains(&kind))
            .unwrap_or_else(|| panic!("no check of {vendor} under {kind} recorded in docs/status.md"));
        assert_eq!(row.matches("every figure equal").count(), 2, "the quickstart and a study agreed: {row}");
        assert!(row.contains("| equal"), "the kernels' hashes agreed: {row}");
    }
}
