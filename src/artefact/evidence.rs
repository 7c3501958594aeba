//! `evidence.json`: every figure a report shows, in a versioned schema written beside the report (the templates
//! render from the same data), so audits and CI check figures without parsing HTML, and `hudd diff` compares runs.
//! Clusters carry a fingerprint of their members, by which annotations and diffs follow a cluster across
//! renumbering.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The report folder's files: the Markdown and HTML reports, the evidence, and the pictures they show.
pub const FILE: &str = "evidence.json";
pub const MARKDOWN: &str = "report.md";
pub const HTML: &str = "report.html";
pub const IMAGES: &str = "images";

/// The schema's name and version, written at the top of every `evidence.json`.
pub const SCHEMA: &str = "hudd.evidence";
/// Version 2 (issue 31): each cluster's `accuracy[]` holds every strategy's `after` with its interval over runs and
/// images, its `after` is the reference's (an object), `p_adjusted`, `verdict` and `small` are new; `too_small`,
/// `min_images`, `rq1_correction` and `rq2_correction` are new. `hudd diff` reads both versions (figures are
/// compared by path; a path only one side has is listed as added or removed). Version 3 (issue 33): `architecture`
/// (the network's layers, when the report reads the model) is new. Version 4 (issue 30): `clusterings` (the main
/// clustering and the alternatives as RQ1 judges them; empty without alternatives) is new. Version 5 (issue 35):
/// the scope is read from the dataset and the model, not the upstream stages' parameters: `scope.defaults` (the
/// simulator's default distributions) is new, `scope.splits[].count` is always a number, `scope.architecture` is
/// the network's name. Version 6 (issue 50): `interventions` (the `intervene` stage's figures over every failure) and
/// each cluster's `tested` (its intervention test against the sham) and `agreement` (where the tests and RQ1
/// disagree) are new. Version 7 (issue 53): `summary` (the executive summary: the criterion's verdict, the largest
/// clusters with their tests, what retraining changed, the open items) is new. Version 8 (issue 51): `roles` (the
/// clustering that names the causes against the one that selects the images: both described, their cross-table and
/// agreement, and each cause's held-out failures right after retraining) is new; null when one clustering plays both;
/// `map_shown` (the share of the failures' distance variance the report's map of them holds) is new. Version 9
/// (issue 50): `confirm_held_out` (the rules were confirmed on held-out images, real images having no simulator to
/// render from) and `descriptors` (the images' parameters, which RQ1 and the rules read, are pixel descriptors, not
/// simulator parameters) are new. Version 10 (issue 50): `interventions.image_space` (real images: the interventions
/// transform pixels and the sham adds noise, where simulated images are re-rendered) is new. Version 11:
/// `summary.by_cause` (the clusters counted under their tested causes, in a sentence) is new.
pub const VERSION: u32 = 11;

/// A root-cause cluster as every version of `evidence.json` holds it: what `hudd diff` matches and `hudd annotate`
/// binds notes to (the report writes more fields; a test in `stages::report` ties the two).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClusterRecord {
    pub id: usize,
    #[serde(default)]
    pub size: Option<usize>,
    pub members: Vec<String>,
}

/// A cluster's fingerprint: 16 hex digits of the blake3 hash of its member image ids, sorted (each prefixed by its
/// length, so no id can run into the next). The same members give the same fingerprint whatever the cluster's number.
pub fn fingerprint(members: &[String]) -> String {
    let mut ids: Vec<&str> = members.iter().map(String::as_str).collect();
    ids.sort_unstable();
    let mut h = blake3::Hasher::new();
    for id in ids {
        h.update(&(id.len() as u64).to_le_bytes());
        h.update(id.as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// Images two clusters share, and their Jaccard similarity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Overlap {
    pub shared: usize,
    pub jaccard: f64,
}

/// How two member sets overlap.
pub fn overlap(a: &[String], b: &[String]) -> Overlap {
    let a: BTreeSet<&str> = a.iter().map(String::as_str).collect();
    let shared = b.iter().map(String::as_str).collect::<BTreeSet<_>>().intersection(&a).count();
    let union = a.len() + b.len() - shared;
    Overlap { shared, jaccard: if union == 0 { 0.0 } else { shared as f64 / union as f64 } }
}

/// The current cluster closest to some members (the highest Jaccard similarity), if any shares an image.
pub fn closest<'a>(
    members: &[String],
    clusters: impl IntoIterator<Item = (usize, &'a [String])>,
) -> Option<(usize, Overlap)> {
    clusters
        .into_iter()
        .map(|(id, m)| (id, overlap(members, m)))
        .filter(|(_, o)| o.shared > 0)
        .max_by(|x, y| x.1.jaccard.total_cmp(&y.1.jaccard).then(y.0.cmp(&x.0)))
}

/// A share of a cluster's images at or above which it counts as a part of another cluster (for splits and merges).
pub const PART: f64 = 0.25;
/// Below this Jaccard similarity to every cluster of the other run, a cluster is new (or gone).
pub const UNMATCHED: f64 = 0.2;

/// Clusters of two runs matched by their members.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Matching {
    /// The same members (the same fingerprint): before → after, numbers possibly changed.
    pub same: Vec<(usize, usize)>,
    /// A cluster and its closest counterpart, with their overlap.
    pub changed: Vec<(usize, usize, Overlap)>,
    /// A cluster whose images went into several (each holding at least [`PART`] of them).
    pub split: Vec<(usize, Vec<usize>)>,
    /// Several clusters (each at least [`PART`] of the new one) that went into one.
    pub merged: Vec<(Vec<usize>, usize)>,
    /// Clusters of the first run with no counterpart (Jaccard below [`UNMATCHED`] with all).
    pub gone: Vec<usize>,
    /// Clusters of the second run with no counterpart.
    pub new: Vec<usize>,
}

/// Matches the clusters of two runs (id, members) by member overlap.
pub fn match_clusters(a: &[(usize, Vec<String>)], b: &[(usize, Vec<String>)]) -> Matching {
    let mut m = Matching::default();
    let (mut done_a, mut done_b) = (BTreeSet::new(), BTreeSet::new());
    let printed: Vec<String> = b.iter().map(|(_, mb)| fingerprint(mb)).collect();
    for (ia, ma) in a {
        let f = fingerprint(ma);
        if let Some(((ib, _), _)) = b.iter().zip(&printed).find(|(_, fb)| **fb == f) {
            m.same.push((*ia, *ib));
            done_a.insert(*ia);
            done_b.insert(*ib);
        }
    }
    // Parts: the clusters on the other side holding at least PART of a cluster's images.
    let part_of = |members: &[String], others: &[(usize, Vec<String>)], done: &BTreeSet<usize>| -> Vec<usize> {
        others
            .iter()
            .filter(|(id, _)| !done.contains(id))
            .filter(|(_, o)| overlap(members, o).shared as f64 >= PART * members.len() as f64)
            .map(|(id, _)| *id)
            .collect()
    };
    for (ia, ma) in a {
        if done_a.contains(ia) {
            continue;
        }
        let parts = part_of(ma, b, &done_b);
        if parts.len() >= 2 {
            m.split.push((*ia, parts.clone()));
            done_a.insert(*ia);
            done_b.extend(parts);
        }
    }
    for (ib, mb) in b {
        if done_b.contains(ib) {
            continue;
        }
        let parts = part_of(mb, a, &done_a);
        if parts.len() >= 2 {
            m.merged.push((parts.clone(), *ib));
            done_b.insert(*ib);
            done_a.extend(parts);
        }
    }
    for (ia, ma) in a {
        if done_a.contains(ia) {
            continue;
        }
        let rest = b.iter().filter(|(id, _)| !done_b.contains(id)).map(|(id, mb)| (*id, mb.as_slice()));
        match closest(ma, rest) {
            Some((ib, o)) if o.jaccard >= UNMATCHED => {
                m.changed.push((*ia, ib, o));
                done_b.insert(ib);
            }
            _ => m.gone.push(*ia),
        }
    }
    m.new = b.iter().map(|(id, _)| *id).filter(|id| !done_b.contains(id)).collect();
    m
}

/// One split's images, by content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitImages {
    pub split: String,
    pub images: usize,
    /// Images whose pixels no other image of the split repeats.
    pub distinct: usize,
    /// blake3 over the images' content hashes in row order: the split's content, in 16 hex digits.
    pub digest: String,
}

/// Two splits and the images (by content) they share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SharedImages {
    pub a: String,
    pub b: String,
    pub shared: usize,
    pub pass: bool,
}

/// Whether a data set's splits are independent: no image, by content, in two of them (ISO/PAS 8800 asks for the
/// independence of training, validation and test data).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Independence {
    pub splits: Vec<SplitImages>,
    pub pairs: Vec<SharedImages>,
    pub independent: bool,
}

/// The independence check over every pair of splits, from each split's image content hashes.
pub fn independence(by_split: &[crate::dataset::SplitHashes]) -> Independence {
    let sets: Vec<BTreeSet<[u8; 16]>> = by_split.iter().map(|(_, h)| h.iter().copied().collect()).collect();
    let splits = by_split
        .iter()
        .zip(&sets)
        .map(|((split, hashes), set)| {
            let mut h = blake3::Hasher::new();
            for x in hashes {
                h.update(x);
            }
            SplitImages {
                split: split.clone(),
                images: hashes.len(),
                distinct: set.len(),
                digest: h.finalize().to_hex()[..16].to_string(),
            }
        })
        .collect();
    let mut pairs = Vec::new();
    for i in 0..by_split.len() {
        for j in i + 1..by_split.len() {
            let shared = sets[i].intersection(&sets[j]).count();
            pairs.push(SharedImages { a: by_split[i].0.clone(), b: by_split[j].0.clone(), shared, pass: shared == 0 });
        }
    }
    let independent = pairs.iter().all(|p| p.pass);
    Independence { splits, pairs, independent }
}

/// A stage's parameters as readable `key = value` lines (nested tables as dotted keys, values as in TOML), with the
/// workspace's path taken off any path under it, so that no line names the machine that ran it.
pub fn key_values(params: &Value, workspace: &std::path::Path) -> Vec<String> {
    let prefixes: Vec<String> = [Some(workspace.to_path_buf()), std::fs::canonicalize(workspace).ok()]
        .into_iter()
        .flatten()
        .map(|p| format!("{}/", p.display().to_string().trim_end_matches('/')))
        .collect();
    let mut out = Vec::new();
    fn go(key: &str, v: &Value, prefixes: &[String], out: &mut Vec<String>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let k = if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        k.clone()
                    } else {
                        format!("{k:?}")
                    };
                    go(&if key.is_empty() { k } else { format!("{key}.{k}") }, v, prefixes, out);
                }
            }
            Value::Null => {}
            _ => {
                let mut v = v.clone();
                relative(&mut v, prefixes);
                out.push(format!("{key} = {v}"));
            }
        }
    }
    fn relative(v: &mut Value, prefixes: &[String]) {
        match v {
            Value::String(s) => {
                if let Some(rest) = prefixes.iter().find_map(|p| s.strip_prefix(p.as_str())) {
                    *s = rest.to_string();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|x| relative(x, prefixes)),
            Value::Object(map) => map.values_mut().for_each(|x| relative(x, prefixes)),
            _ => {}
        }
    }
    go("", params, &prefixes, &mut out);
    out
}

/// Sections of the evidence that are not figures: provenance, text, and the clusters (matched by members instead);
/// `machines` and `compute_seconds` are in evidence written before report version 8.
/// Per-cluster sections (`conditions`) go with the clusters: their numbers mean other images in another run.
const NOT_FIGURES: &[&str] = &[
    "schema",
    "schema_version",
    "clusters",
    "conditions",
    "lineage",
    "inputs",
    "manifest",
    "versions",
    "machines",
    "annotations",
    "compute_seconds",
    "params",
    "references",
    "residual",
    "too_small",
    "min_images",
    "unstable",
    "to_review",
];
/// Fields that name an element of a list (together, in this order), so that a figure keeps its name when the
/// list's order changes.
const NAMES: &[&str] = &["model", "split", "strategy", "baseline", "stage", "table", "layer", "a", "b", "id"];

/// Every figure of an evidence document as a flat map from a readable path (`test.accuracy`,
/// `rq2.protocols[split=holdout].strategies[strategy=hudd].mean`) to its number or truth value.
pub fn figures(evidence: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    if let Value::Object(map) = evidence {
        for (k, v) in map.iter().filter(|(k, _)| !NOT_FIGURES.contains(&k.as_str())) {
            walk(k, v, &mut out);
        }
    }
    out
}

fn walk(path: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Number(_) | Value::Bool(_) => {
            out.insert(path.to_string(), v.clone());
        }
        Value::Object(map) => {
            // Lists of clusters (a comparison's sizes and stabilities) go with the clusters too.
            for (k, v) in map.iter().filter(|(k, v)| !(k.as_str() == "clusters" && v.is_array())) {
                walk(&format!("{path}.{k}"), v, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let parts: Vec<String> = NAMES
                    .iter()
                    .filter_map(|n| {
                        let v = item.get(n).filter(|v| v.is_string() || v.is_number())?;
                        Some(format!("{n}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                    })
                    .collect();
                let name = if parts.is_empty() { i.to_string() } else { parts.join(",") };
                walk(&format!("{path}[{name}]"), item, out);
            }
        }
        Value::String(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("test-{i:06}")).collect()
    }

    #[test]
    fn a_fingerprint_depends_on_the_members_only() {
        let mut shuffled = ids(0..5);
        shuffled.reverse();
        assert_eq!(fingerprint(&ids(0..5)), fingerprint(&shuffled));
        assert_ne!(fingerprint(&ids(0..5)), fingerprint(&ids(0..6)));
        assert_eq!(fingerprint(&ids(0..5)).len(), 16);
        // Lengths are hashed: ["ab", "c"] and ["a", "bc"] differ.
        assert_ne!(fingerprint(&["ab".into(), "c".into()]), fingerprint(&["a".into(), "bc".into()]));
    }

    #[test]
    fn clusters_match_across_renumbering_splits_merges_and_new_ones() {
        let before = vec![(1, ids(0..10)), (2, ids(10..20)), (3, ids(20..30)), (4, ids(30..34)), (5, ids(40..50))];
        let after = vec![
            (1, ids(20..30)),                                          // was 3: same members
            (2, ids(0..5)),                                            // 1 split in two
            (3, ids(5..10)),                                           //
            (4, ids(10..20).into_iter().chain(ids(30..34)).collect()), // 2 and 4 merged
            (5, ids(40..48)),                                          // 5 lost two images
            (6, ids(60..70)),                                          // new
        ];
        let m = match_clusters(&before, &after);
        assert_eq!(m.same, vec![(3, 1)]);
        assert_eq!(m.split, vec![(1, vec![2, 3])]);
        assert_eq!(m.merged, vec![(vec![2, 4], 4)]);
        assert_eq!(m.changed, vec![(5, 5, Overlap { shared: 8, jaccard: 0.8 })]);
        assert_eq!((m.gone, m.new), (vec![], vec![6]));
    }

    #[test]
    fn independence_is_checked_by_content_and_parameters_read_as_lines() {
        let h = |i: u8| [i; 16];
        let check = independence(&[
            ("train".into(), vec![h(1), h(2), h(2)]),
            ("test".into(), vec![h(3), h(4)]),
            ("holdout".into(), vec![h(4), h(5)]),
        ]);
        assert_eq!((check.splits[0].images, check.splits[0].distinct), (3, 2));
        let shared: Vec<(&str, &str, usize)> =
            check.pairs.iter().map(|p| (p.a.as_str(), p.b.as_str(), p.shared)).collect();
        assert_eq!(shared, [("train", "test", 0), ("train", "holdout", 0), ("test", "holdout", 1)]);
        assert!(!check.independent);
        let ws = std::path::Path::new("/tmp/ws");
        let params = serde_json::json!({ "architecture": "/tmp/ws/models/a.toml", "epochs": 3, "seed": null,
            "splits": { "train": { "count": 10 } }, "layers": ["a", "b"] });
        assert_eq!(
            key_values(&params, ws),
            ["architecture = \"models/a.toml\"", "epochs = 3", "layers = [\"a\",\"b\"]", "splits.train.count = 10"]
        );
    }

    #[test]
    fn figures_are_named_by_what_they_are_not_where_they_sit() {
        let e = serde_json::json!({
            "schema": "hudd.evidence", "test": { "accuracy": 0.8, "errors": 20 },
            "rq2": { "protocols": [ { "split": "holdout", "strategies": [ { "strategy": "hudd", "mean": 0.9 } ] } ] },
            "clusters": [ { "id": 1, "size": 3 } ], "title": "text is no figure",
            "performance": [ { "model": "hudd", "split": "holdout", "value": 0.9 }, { "model": "original", "split": "holdout", "value": 0.8 } ],
        });
        let f = figures(&e);
        assert_eq!(f["test.accuracy"], 0.8);
        assert_eq!(f["rq2.protocols[split=holdout].strategies[strategy=hudd].mean"], 0.9);
        assert!(!f.keys().any(|k| k.starts_with("clusters") || k == "title" || k == "schema"), "{f:?}");
        // Elements named by every naming field they carry: two models on one split stay two figures.
        assert_eq!(f["performance[model=hudd,split=holdout].value"], 0.9);
        assert_eq!(f["performance[model=original,split=holdout].value"], 0.8);
    }
}
