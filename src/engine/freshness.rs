//! Which stages are fresh, and why the others are stale: a pure function of key material and store states.

use std::fmt;

use serde::Serialize;

use crate::engine::store::{EntryState, InputKey, KeyMaterial, StateRecord};

/// Why a stage must run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// The stage has never run in this workspace.
    New,
    KindChanged {
        from: String,
        to: String,
    },
    ImplementationChanged {
        from: u32,
        to: u32,
    },
    ParamsChanged {
        params: Vec<String>,
    },
    SeedChanged {
        from: Option<u64>,
        to: Option<u64>,
    },
    InputChanged {
        inputs: Vec<String>,
    },
    /// An input runs first; the stage is kept (early cutoff) if that input's output comes out unchanged.
    InputPending {
        inputs: Vec<String>,
    },
    ExternalChanged {
        paths: Vec<String>,
    },
    /// A deliverable's lineage: stages upstream computed under other keys (their bytes may be the same).
    UpstreamChanged {
        stages: Vec<String>,
    },
    /// Same key as last time, but the entry is gone (deleted, or dropped by `hudd gc` or `hudd verify`).
    OutputMissing,
    OutputCorrupt {
        detail: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::New => write!(f, "new"),
            Reason::KindChanged { from, to } => write!(f, "kind changed: {from} -> {to}"),
            Reason::ImplementationChanged { from, to } => write!(f, "implementation version changed: {from} -> {to}"),
            Reason::ParamsChanged { params } => write!(f, "parameter changed: {}", params.join(", ")),
            Reason::SeedChanged { from, to } => {
                let show = |s: &Option<u64>| s.map_or("none".to_string(), |s| s.to_string());
                write!(f, "seed changed: {} -> {}", show(from), show(to))
            }
            Reason::InputChanged { inputs } => write!(f, "input changed: {}", inputs.join(", ")),
            Reason::InputPending { inputs } => {
                write!(f, "input to be recomputed first: {} (kept if it comes out unchanged)", inputs.join(", "))
            }
            Reason::ExternalChanged { paths } => write!(f, "external file changed: {}", paths.join(", ")),
            Reason::UpstreamChanged { stages } => {
                write!(f, "lineage changed: {} (the report states the current one)", stages.join(", "))
            }
            Reason::OutputMissing => write!(f, "output missing"),
            Reason::OutputCorrupt { detail } => write!(f, "output corrupt: {detail}"),
        }
    }
}

/// The decision for one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    Stale(Vec<Reason>),
}

impl Freshness {
    pub fn is_fresh(&self) -> bool {
        matches!(self, Freshness::Fresh)
    }
}

/// Fresh when the entry for `key` is intact; otherwise stale, with what changed since `previous`.
pub fn decide(material: &KeyMaterial, key: &str, previous: Option<&StateRecord>, entry: &EntryState) -> Freshness {
    match entry {
        EntryState::Intact => return Freshness::Fresh,
        EntryState::Corrupt(detail) => return Freshness::Stale(vec![Reason::OutputCorrupt { detail: detail.clone() }]),
        EntryState::Missing => {}
    }
    let Some(previous) = previous else { return Freshness::Stale(vec![Reason::New]) };
    if previous.key == key {
        return Freshness::Stale(vec![Reason::OutputMissing]);
    }
    let before = &previous.material;
    let mut reasons = Vec::new();
    if before.kind != material.kind {
        reasons.push(Reason::KindChanged { from: before.kind.clone(), to: material.kind.clone() });
    } else if before.version != material.version {
        reasons.push(Reason::ImplementationChanged { from: before.version, to: material.version });
    }
    let mut params = Vec::new();
    diff_json("", &before.params, &material.params, &mut params);
    if !params.is_empty() {
        reasons.push(Reason::ParamsChanged { params });
    }
    if before.seed != material.seed {
        reasons.push(Reason::SeedChanged { from: before.seed, to: material.seed });
    }
    // An input whose producer runs first is pending; the others changed if their contents (or, for an input
    // recorded before contents were, their producers) differ.
    let slots: std::collections::BTreeSet<&String> = before.inputs.keys().chain(material.inputs.keys()).collect();
    let (mut pending, mut changed) = (Vec::new(), Vec::new());
    for slot in slots {
        let now = material.inputs.get(slot);
        if now.is_some_and(|list| list.iter().any(|i| i.content.is_none())) {
            pending.push(slot.clone());
            continue;
        }
        let as_content = |list: Option<&Vec<InputKey>>| -> Vec<(String, Option<String>)> {
            list.into_iter().flatten().map(|i| (i.output.clone(), i.content.clone())).collect()
        };
        if as_content(before.inputs.get(slot)) != as_content(now) {
            changed.push(slot.clone());
        }
    }
    if !changed.is_empty() {
        reasons.push(Reason::InputChanged { inputs: changed });
    }
    if !pending.is_empty() {
        reasons.push(Reason::InputPending { inputs: pending });
    }
    let paths: std::collections::BTreeSet<&String> = before.externals.keys().chain(material.externals.keys()).collect();
    let paths: Vec<String> =
        paths.into_iter().filter(|p| before.externals.get(*p) != material.externals.get(*p)).cloned().collect();
    if !paths.is_empty() {
        reasons.push(Reason::ExternalChanged { paths });
    }
    let stages: std::collections::BTreeSet<&String> = before.upstream.keys().chain(material.upstream.keys()).collect();
    let stages: Vec<String> =
        stages.into_iter().filter(|s| before.upstream.get(*s) != material.upstream.get(*s)).cloned().collect();
    if !stages.is_empty() {
        reasons.push(Reason::UpstreamChanged { stages });
    }
    if reasons.is_empty() {
        // Same material, different key: the key's recipe itself changed (a newer hudd).
        reasons.push(Reason::New);
    }
    Freshness::Stale(reasons)
}

/// Dotted paths at which two JSON values differ.
fn diff_json(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => diff_json(&sub, p, q, out),
                    _ => out.push(sub),
                }
            }
        }
        _ if a != b => out.push(if path.is_empty() { "(all)".into() } else { path.to_string() }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn material(params: serde_json::Value) -> KeyMaterial {
        KeyMaterial {
            kind: "train".into(),
            version: 1,
            params,
            seed: Some(1),
            inputs: BTreeMap::new(),
            externals: BTreeMap::new(),
            upstream: BTreeMap::new(),
        }
    }

    fn record(m: &KeyMaterial) -> StateRecord {
        StateRecord { key: m.key(), material: m.clone() }
    }

    #[test]
    fn an_intact_entry_is_fresh_whatever_ran_before() {
        let m = material(json!({"lr": 0.1}));
        let other = record(&material(json!({"lr": 0.2})));
        assert_eq!(decide(&m, &m.key(), Some(&other), &EntryState::Intact), Freshness::Fresh);
    }

    #[test]
    fn a_changed_parameter_is_named_with_its_path() {
        let old = material(json!({"lr": 0.1, "opt": {"momentum": 0.9, "kind": "sgd"}}));
        let new = material(json!({"lr": 0.1, "opt": {"momentum": 0.5, "kind": "sgd"}}));
        assert_eq!(
            decide(&new, &new.key(), Some(&record(&old)), &EntryState::Missing),
            Freshness::Stale(vec![Reason::ParamsChanged { params: vec!["opt.momentum".into()] }])
        );
    }

    #[test]
    fn the_same_key_without_an_entry_means_the_output_went_missing() {
        let m = material(json!({}));
        assert_eq!(
            decide(&m, &m.key(), Some(&record(&m)), &EntryState::Missing),
            Freshness::Stale(vec![Reason::OutputMissing])
        );
        assert_eq!(decide(&m, &m.key(), None, &EntryState::Missing), Freshness::Stale(vec![Reason::New]));
    }

    #[test]
    fn a_version_bump_is_reported_as_an_implementation_change() {
        let old = material(json!({}));
        let mut new = old.clone();
        new.version = 2;
        assert_eq!(
            decide(&new, &new.key(), Some(&record(&old)), &EntryState::Missing),
            Freshness::Stale(vec![Reason::ImplementationChanged { from: 1, to: 2 }])
        );
    }
}
