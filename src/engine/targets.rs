//! Chosen targets (`hudd run <manifest> cluster 'retrain*'`): a workflow narrowed to the stages named and
//! everything they read, as `dvc repro <stage>` or `make <target>` do. A target is a stage instance's full id
//! (`retrain[seed=1,strategy=hudd]`), a manifest id (every instance of a matrix stage), or a glob over either
//! (`*` any run of characters, `?` one character).

use std::collections::{BTreeMap, BTreeSet};

use super::graph::Dag;
use super::manifest::{Reference, Workflow};

/// A target that names no stage.
#[derive(Debug, thiserror::Error)]
#[error("no stage of workflow `{workflow}` is named `{target}`{hint} (stages: {known})")]
pub struct UnknownTarget {
    pub workflow: String,
    pub target: String,
    hint: String,
    known: String,
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters and `?` exactly one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // The classic two-pointer match with backtracking to the last star.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// The stages each target names (by full id, manifest id, or a glob over either).
fn matches(workflow: &Workflow, target: &str) -> Vec<usize> {
    (0..workflow.stages.len())
        .filter(|&i| {
            let s = &workflow.stages[i];
            glob(target, &s.id) || glob(target, &s.base_id)
        })
        .collect()
}

impl Workflow {
    /// This workflow narrowed to `targets` and every stage they read from, directly or not, in the same order;
    /// references and the DAG renumbered. No targets: the whole workflow.
    pub fn restrict(&self, targets: &[String]) -> Result<Workflow, UnknownTarget> {
        if targets.is_empty() {
            return Ok(self.clone());
        }
        let mut keep = BTreeSet::new();
        for i in self.matching(targets)? {
            keep.insert(i);
            keep.extend(self.dag.ancestors(i));
        }
        let index: BTreeMap<usize, usize> = keep.iter().enumerate().map(|(new, &old)| (old, new)).collect();
        let stages: Vec<_> = keep
            .iter()
            .map(|&old| {
                let mut stage = self.stages[old].clone();
                for refs in stage.inputs.values_mut() {
                    for r in refs.iter_mut() {
                        *r = Reference { stage: index[&r.stage], output: r.output.clone() };
                    }
                }
                stage
            })
            .collect();
        let edges: Vec<(usize, usize)> = keep
            .iter()
            .flat_map(|&old| self.dag.parents(old).map(move |p| (p, old)))
            .map(|(p, c)| (index[&p], index[&c]))
            .collect();
        let dag = Dag::new(stages.len(), edges).expect("a subgraph of a DAG has no cycle");
        Ok(Workflow { stages, dag, targets: targets.to_vec(), ..self.clone() })
    }

    /// The stages the targets name themselves (not what they read), in workflow order; no targets: every stage.
    pub fn matching(&self, targets: &[String]) -> Result<Vec<usize>, UnknownTarget> {
        if targets.is_empty() {
            return Ok((0..self.stages.len()).collect());
        }
        let mut found = BTreeSet::new();
        for target in targets {
            let named = matches(self, target);
            if named.is_empty() {
                return Err(self.unknown(target));
            }
            found.extend(named);
        }
        Ok(found.into_iter().collect())
    }

    fn unknown(&self, target: &str) -> UnknownTarget {
        let ids: BTreeSet<&str> = self.stages.iter().map(|s| s.base_id.as_str()).collect();
        let best = ids
            .iter()
            .map(|id| (strsim::jaro_winkler(target, id), *id))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        UnknownTarget {
            workflow: self.name.clone(),
            target: target.to_string(),
            hint: best.map_or_else(String::new, |(_, id)| format!("; did you mean `{id}`?")),
            known: ids.into_iter().collect::<Vec<_>>().join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_stars_and_question_marks_and_nothing_else() {
        assert!(glob("cluster", "cluster"));
        assert!(!glob("cluster", "clusters"));
        assert!(glob("retrain*", "retrain[seed=1,strategy=hudd]"));
        assert!(glob("*strategy=hudd]", "retrain[seed=1,strategy=hudd]"));
        assert!(glob("test-?", "test-a"));
        assert!(!glob("test-?", "test-ab"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }
}
