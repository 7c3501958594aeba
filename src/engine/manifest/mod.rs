//! TOML manifest → checked [`Workflow`]: matrix expansion, `--set` overrides, parameter checks, reference resolution.
//!
//! Checking runs in passes and collects every problem before it reports: TOML syntax; the shape of `[workflow]`
//! and each `[[stage]]`; each stage kind's parameters; then references between stages and cycles.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::engine::diagnostic::{Diagnostic, Sources, did_you_mean};
use crate::engine::graph::Dag;
use crate::engine::stage::{Registry, field_span};

mod matrix;

/// Keys of a `[[stage]]` table that belong to the engine, not to the stage kind.
const RESERVED: [&str; 3] = ["id", "kind", "matrix"];
const TOP_LEVEL: [&str; 3] = ["workflow", "stage", "executor"];

/// A checked workflow: every stage instance with canonical parameters and resolved references.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    pub seed: u64,
    /// The manifest as given on the command line.
    pub path: PathBuf,
    /// blake3 of the manifest's bytes.
    pub manifest_hash: String,
    pub stages: Vec<StageSpec>,
    pub dag: Dag,
    pub overrides: Vec<Override>,
    /// `[executor]`: where stages run and with which resources (Slurm).
    pub executor: crate::engine::executor::ExecutorConfig,
    /// The stages asked for on the command line (empty: all); `stages` then holds them and what they read.
    pub targets: Vec<String>,
    /// The kind of every stage instance the manifest declares, targets or not (how many deliverables it has
    /// decides where each is published).
    pub manifest_kinds: Vec<String>,
}

/// One stage instance (a matrix stage has one per combination of its values).
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// `train`, or `retrain[seed=1,strategy=hudd]` for a matrix instance.
    pub id: String,
    /// The id written in the manifest.
    pub base_id: String,
    pub kind: String,
    /// This instance's matrix values, as shown in its id.
    pub matrix: BTreeMap<String, String>,
    /// Canonical parameters: defaults filled in, keys sorted.
    pub params: serde_json::Value,
    /// Input slot → the artefacts it reads, in manifest order.
    pub inputs: BTreeMap<String, Vec<Reference>>,
    /// Files and folders outside the store that the stage reads.
    pub externals: Vec<PathBuf>,
}

/// A resolved `"<stage-id>.<output>"` reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Reference {
    /// Index of the producing stage instance in [`Workflow::stages`].
    pub stage: usize,
    pub output: String,
}

impl Workflow {
    pub fn stage_index(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.id == id)
    }
}

/// `--set <stage-id>.<param>=<value>`: a parameter override applied before checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub stage: String,
    /// Dotted path inside the stage table.
    pub key: String,
    /// The value as typed; read as TOML when it parses as a TOML value, as a string otherwise.
    pub value: String,
}

impl FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (lhs, value) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected <stage-id>.<param>=<value>"))?;
        let (stage, key) =
            lhs.trim().split_once('.').ok_or_else(|| format!("`{s}`: expected <stage-id>.<param>=<value>"))?;
        if stage.is_empty() || key.is_empty() {
            return Err(format!("`{s}`: expected <stage-id>.<param>=<value>"));
        }
        Ok(Override { stage: stage.to_string(), key: key.to_string(), value: value.trim().to_string() })
    }
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}={}", self.stage, self.key, self.value)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Every problem of the manifest, rendered with locations.
    #[error("{rendered}")]
    Invalid { rendered: String, diagnostics: Vec<Diagnostic> },
}

/// Reads and checks a manifest file.
pub fn load(path: &Path, overrides: &[Override], registry: &Registry) -> Result<Workflow, ManifestError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
    parse(path, &text, overrides, registry)
}

/// Checks a manifest's text; `path` names it in messages.
pub fn parse(path: &Path, text: &str, overrides: &[Override], registry: &Registry) -> Result<Workflow, ManifestError> {
    let mut sources = Sources::default();
    sources.add(path.display().to_string(), text);
    let mut checker = Checker { registry, diags: Vec::new(), matrix_keys: BTreeMap::new() };
    let result = checker.check(text, &mut sources, overrides);
    let mut diags = checker.diags;
    match result {
        Some((header, stages, dag, executor)) if diags.is_empty() => Ok(Workflow {
            name: header.name.into_inner(),
            description: header.description,
            seed: header.seed,
            path: path.to_path_buf(),
            manifest_hash: blake3::hash(text.as_bytes()).to_hex().to_string(),
            manifest_kinds: stages.iter().map(|s| s.kind.clone()).collect(),
            stages,
            dag,
            overrides: overrides.to_vec(),
            executor,
            targets: Vec::new(),
        }),
        _ => {
            diags.sort_by_key(|d| d.span.start);
            diags.dedup();
            Err(ManifestError::Invalid { rendered: sources.render(&diags), diagnostics: diags })
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: u64,
}

/// A `[[stage]]` table after the engine's keys are taken out.
struct RawStage<'i> {
    id: Spanned<String>,
    kind: Spanned<String>,
    matrix: Vec<(Spanned<String>, Vec<Spanned<DeValue<'i>>>)>,
    rest: DeTable<'i>,
    span: Range<usize>,
}

/// A stage instance before its references are resolved.
struct Instance {
    spec: StageSpec,
    refs: BTreeMap<String, Vec<Spanned<String>>>,
}

struct Checker<'r> {
    registry: &'r Registry,
    diags: Vec<Diagnostic>,
    /// How many stages use each matrix key (a key another stage uses may label instances of a kind without it).
    matrix_keys: BTreeMap<String, usize>,
}

impl Checker<'_> {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn check<'a>(
        &mut self,
        text: &'a str,
        sources: &mut Sources,
        overrides: &'a [Override],
    ) -> Option<(Header, Vec<StageSpec>, Dag, crate::engine::executor::ExecutorConfig)> {
        let (root, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            for e in errors {
                let span = e.span().unwrap_or(0..0);
                self.error(Diagnostic::new(format!("invalid TOML: {}", e.message().trim()), span));
            }
            return None;
        }
        let root_span = root.span();
        let mut root = root.into_inner();

        for (key, _) in root.iter() {
            if !TOP_LEVEL.contains(&key.get_ref().as_ref()) {
                let mut d = Diagnostic::new(format!("unknown top-level key `{}`", key.get_ref()), key.span());
                d = match did_you_mean(key.get_ref(), TOP_LEVEL) {
                    Some(s) => d.with_label(format!("did you mean `{s}`?")),
                    None => d.with_label("a manifest has `[workflow]` and `[[stage]]` tables"),
                };
                self.error(d);
            }
        }

        let header = match root.remove("workflow") {
            Some(value) => self.header(value),
            None => {
                self.error(Diagnostic::new("the manifest has no `[workflow]` table (name, description, seed)", 0..0));
                None
            }
        };

        let executor = root.remove("executor");
        let mut raw = match root.remove("stage") {
            Some(value) => self.raw_stages(value),
            None => {
                self.error(Diagnostic::new("the manifest declares no `[[stage]]`", root_span.start..root_span.start));
                Vec::new()
            }
        };
        self.apply_overrides(&mut raw, sources, overrides);
        for stage in &raw {
            for name in stage.matrix.iter().map(|(n, _)| n.get_ref().clone()) {
                *self.matrix_keys.entry(name).or_default() += 1;
            }
        }

        let mut instances = Vec::new();
        for stage in raw {
            self.expand(stage, &mut instances);
        }
        let dag = self.resolve(&mut instances);
        let stages: Vec<StageSpec> = instances.into_iter().map(|i| i.spec).collect();
        let executor = match executor {
            Some(value) => self.executor(value, &stages),
            None => Some(crate::engine::executor::ExecutorConfig::default()),
        };
        Some((header?, stages, dag?, executor?))
    }

    /// `[executor]`: resources for Slurm jobs, per kind and per stage id, each name checked.
    fn executor(
        &mut self,
        value: Spanned<DeValue<'_>>,
        stages: &[StageSpec],
    ) -> Option<crate::engine::executor::ExecutorConfig> {
        let span = value.span();
        let lookup = value.clone();
        if let DeValue::Table(table) = lookup.get_ref() {
            let known: Vec<&str> = crate::engine::executor::ExecutorConfig::OWN_KEYS
                .iter()
                .chain(crate::engine::stage::field_names::<crate::engine::executor::Resources>())
                .copied()
                .collect();
            for (key, _) in table.iter().filter(|(k, _)| !known.contains(&k.get_ref().as_ref())) {
                let mut d = Diagnostic::new(format!("[executor]: unknown key `{}`", key.get_ref()), key.span());
                if let Some(s) = did_you_mean(key.get_ref(), known.iter().copied()) {
                    d = d.with_label(format!("did you mean `{s}`?"));
                }
                self.error(d);
            }
        }
        let config = match crate::engine::executor::ExecutorConfig::deserialize(value.into_deserializer()) {
            Ok(c) => c,
            Err(e) => {
                self.error(Diagnostic::new(format!("[executor]: {}", e.message().trim()), e.span().unwrap_or(span)));
                return None;
            }
        };
        let at = |path: &str| field_span(&lookup, path).unwrap_or_else(|| span.clone());
        let before = self.diags.len();
        let check = |this: &mut Self, prefix: &str, r: &crate::engine::executor::Resources| {
            for (field, message) in r.validate() {
                let path = if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") };
                this.error(Diagnostic::new(format!("[executor] invalid `{path}`: {message}"), at(&path)));
            }
        };
        check(self, "", &config.defaults);
        let kinds: Vec<&str> = self.registry.names().collect();
        let ids: Vec<&str> = stages.iter().map(|s| s.base_id.as_str()).collect();
        for (table, known, what, entries) in
            [("kind", &kinds, "unknown stage kind", &config.kind), ("stage", &ids, "no stage id", &config.stage)]
        {
            for (name, r) in entries {
                if !known.contains(&name.as_str()) {
                    let mut d =
                        Diagnostic::new(format!("[executor.{table}]: {what} `{name}`"), at(&format!("{table}.{name}")));
                    if let Some(s) = did_you_mean(name, known.iter().copied()) {
                        d = d.with_label(format!("did you mean `{s}`?"));
                    }
                    self.error(d);
                }
                check(self, &format!("{table}.{name}"), r);
            }
        }
        (self.diags.len() == before).then_some(config)
    }

    fn header(&mut self, value: Spanned<DeValue<'_>>) -> Option<Header> {
        let span = value.span();
        if !value.get_ref().is_table() {
            self.error(Diagnostic::new("`workflow` must be a table: `[workflow]`", span));
            return None;
        }
        match Header::deserialize(value.into_deserializer()) {
            Ok(h) => {
                if !is_valid_id(h.name.get_ref()) {
                    self.error(
                        Diagnostic::new(format!("invalid workflow name `{}`", h.name.get_ref()), h.name.span())
                            .with_label(format!(
                                "names use letters, digits, `_` and `-`, at most {MAX_NAME} (they become folder names)"
                            )),
                    );
                }
                Some(h)
            }
            Err(e) => {
                self.error(Diagnostic::new(format!("[workflow]: {}", e.message().trim()), e.span().unwrap_or(span)));
                None
            }
        }
    }

    fn raw_stages<'i>(&mut self, value: Spanned<DeValue<'i>>) -> Vec<RawStage<'i>> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.error(Diagnostic::new("`stage` must be an array of tables: `[[stage]]`", span));
            return Vec::new();
        };
        let mut out: Vec<RawStage<'i>> = Vec::new();
        for item in items.iter().cloned() {
            let span = item.span();
            let DeValue::Table(mut table) = item.into_inner() else {
                self.error(Diagnostic::new("each `stage` must be a table: `[[stage]]`", span));
                continue;
            };
            let id = self.required_string(&mut table, "id", &span);
            let kind = self.required_string(&mut table, "kind", &span);
            let matrix = self.matrix(table.remove("matrix"));
            let (Some(id), Some(kind)) = (id, kind) else { continue };
            if !is_valid_id(id.get_ref()) {
                self.error(
                    Diagnostic::new(format!("invalid stage id `{}`", id.get_ref()), id.span())
                        .with_label(format!("ids use letters, digits, `_` and `-`, at most {MAX_NAME}")),
                );
                continue;
            }
            if let Some(first) = out.iter().find(|s| s.id.get_ref() == id.get_ref()) {
                self.error(
                    Diagnostic::new(format!("duplicate stage id `{}`", id.get_ref()), id.span())
                        .with_note("first defined here", first.id.span()),
                );
                continue;
            }
            if self.registry.get(kind.get_ref()).is_none() {
                let label = match did_you_mean(kind.get_ref(), self.registry.names()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known kinds: {}", self.registry.names().collect::<Vec<_>>().join(", ")),
                };
                self.error(
                    Diagnostic::new(format!("unknown stage kind `{}`", kind.get_ref()), kind.span()).with_label(label),
                );
                continue;
            }
            out.push(RawStage { id, kind, matrix: matrix.unwrap_or_default(), rest: table, span });
        }
        out
    }

    fn required_string(&mut self, table: &mut DeTable<'_>, key: &str, span: &Range<usize>) -> Option<Spanned<String>> {
        match table.remove(key) {
            Some(v) => match v.get_ref().as_str() {
                Some(s) => Some(Spanned::new(v.span(), s.to_string())),
                None => {
                    self.error(Diagnostic::new(
                        format!("stage `{key}` must be a string, found {}", v.get_ref().type_str()),
                        v.span(),
                    ));
                    None
                }
            },
            None => {
                self.error(Diagnostic::new(format!("stage without `{key}`"), span.start..span.start + 9));
                None
            }
        }
    }

    fn reference_list(&mut self, value: Spanned<DeValue<'_>>, slot: &str, many: bool) -> Option<Vec<Spanned<String>>> {
        match value.get_ref() {
            DeValue::String(s) => Some(vec![Spanned::new(value.span(), s.to_string())]),
            DeValue::Array(items) if many => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref().as_str() {
                        Some(s) => out.push(Spanned::new(item.span(), s.to_string())),
                        None => self.error(Diagnostic::new(
                            format!(
                                "input `{slot}` lists references \"<stage-id>.<output>\", found {}",
                                item.get_ref().type_str()
                            ),
                            item.span(),
                        )),
                    }
                }
                Some(out)
            }
            other => {
                let expected = if many {
                    "a reference \"<stage-id>.<output>\" or a list of them"
                } else {
                    "one reference \"<stage-id>.<output>\""
                };
                self.error(Diagnostic::new(
                    format!("input `{slot}` takes {expected}, found {}", other.type_str()),
                    value.span(),
                ));
                None
            }
        }
    }

    /// Resolves references to stage instances and builds the DAG: each reference in turn (its errors reported,
    /// the others still checked), then the graph, refused with every cycle spelled out.
    fn resolve(&mut self, instances: &mut [Instance]) -> Option<Dag> {
        let index = InstanceIndex::new(instances);
        let mut edges = Vec::new();
        let mut edge_spans: HashMap<(usize, usize), Range<usize>> = HashMap::new();
        let mut ok = true;
        for i in 0..instances.len() {
            let refs = std::mem::take(&mut instances[i].refs);
            for (slot_name, list) in &refs {
                let mut resolved = Vec::new();
                for text in list {
                    let Some((matching, output)) = self.reference(&index, instances, i, slot_name, text) else {
                        ok = false;
                        continue;
                    };
                    for j in matching {
                        edges.push((j, i));
                        edge_spans.entry((j, i)).or_insert_with(|| text.span());
                        resolved.push(Reference { stage: j, output: output.to_string() });
                    }
                }
                instances[i].spec.inputs.insert(slot_name.clone(), resolved);
            }
        }
        if !ok {
            return None;
        }
        match Dag::new(instances.len(), edges) {
            Ok(dag) => Some(dag),
            Err(cycles) => {
                for cycle in cycles {
                    let names: Vec<&str> = cycle.iter().map(|&i| instances[i].spec.id.as_str()).collect();
                    let span = edge_spans.get(&(cycle[0], cycle[1])).cloned().unwrap_or(0..0);
                    self.error(
                        Diagnostic::new(format!("dependency cycle: {}", names.join(" -> ")), span)
                            .with_label("stages cannot read their own outputs, directly or not"),
                    );
                }
                None
            }
        }
    }

    // Long: the reference's checks in the order a reader makes them (syntax, stage, output, kind, matching
    // instances), each reporting its own located diagnostic and stopping there.
    /// One reference `text` (`"<stage-id>.<output>"`) of input `slot_name` of instance `i`: the instances it reads
    /// (those of a matrix stage that agree on the matrix keys both share) and the output, or `None` with the
    /// problem reported (not a reference, an unknown stage or output, an artefact kind the input does not take, no
    /// or too many matching instances).
    fn reference<'t>(
        &mut self,
        index: &InstanceIndex,
        instances: &[Instance],
        i: usize,
        slot_name: &str,
        text: &'t Spanned<String>,
    ) -> Option<(Vec<usize>, &'t str)> {
        let kind = self.registry.get(&instances[i].spec.kind).expect("checked kind");
        let slot = kind.inputs().iter().find(|s| s.name == slot_name).expect("slot came from the kind");
        let Some((target, output)) = text.get_ref().rsplit_once('.') else {
            self.error(
                Diagnostic::new(format!("`{}` is not a reference", text.get_ref()), text.span())
                    .with_label("write \"<stage-id>.<output>\""),
            );
            return None;
        };
        let targets: Vec<usize> = if let Some(&j) = index.by_id.get(target) {
            vec![j]
        } else if let Some(js) = index.by_base.get(target) {
            js.clone()
        } else {
            let mut d = Diagnostic::new(format!("reference to unknown stage `{target}`"), text.span());
            if let Some(s) = did_you_mean(target, index.names.iter().map(String::as_str)) {
                d = d.with_label(format!("did you mean `{s}.{output}`?"));
            }
            self.error(d);
            return None;
        };
        let target_kind = self.registry.get(&instances[targets[0]].spec.kind).expect("checked kind");
        let Some(produced) = target_kind.outputs().iter().find(|o| o.name == output) else {
            let outputs: Vec<&str> = target_kind.outputs().iter().map(|o| o.name).collect();
            let label = match did_you_mean(output, outputs.iter().copied()) {
                Some(s) => format!("did you mean `{target}.{s}`?"),
                None => format!("its outputs: {}", outputs.join(", ")),
            };
            self.error(
                Diagnostic::new(
                    format!("stage `{target}` (kind `{}`) has no output `{output}`", target_kind.kind()),
                    text.span(),
                )
                .with_label(label),
            );
            return None;
        };
        if !slot.accepts.contains(&produced.kind) {
            let takes: Vec<String> = slot.accepts.iter().map(|k| format!("a {}", k.name)).collect();
            self.error(
                Diagnostic::new(
                    format!(
                        "`{slot_name}` takes {}; `{}` is a {}",
                        takes.join(" or "),
                        text.get_ref(),
                        produced.kind.name
                    ),
                    text.span(),
                )
                .with_label(format!("{}: {}", produced.kind.name, produced.kind.doc)),
            );
            return None;
        }
        // A reference to a matrix stage keeps the instances that agree on the matrix keys both share.
        let me = &instances[i].spec.matrix;
        let matching: Vec<usize> = if targets.len() > 1 {
            targets
                .into_iter()
                .filter(|&j| instances[j].spec.matrix.iter().all(|(k, v)| me.get(k).is_none_or(|mine| mine == v)))
                .collect()
        } else {
            targets
        };
        if matching.is_empty() {
            self.error(Diagnostic::new(
                format!("no instance of `{target}` matches the matrix values of `{}`", instances[i].spec.id),
                text.span(),
            ));
            return None;
        }
        if !slot.many && matching.len() > 1 {
            self.error(
                Diagnostic::new(
                    format!("`{target}` has {} instances and input `{slot_name}` takes one", matching.len()),
                    text.span(),
                )
                .with_label(format!(
                    "name one, e.g. `{}.{output}`, or give this stage the same matrix keys",
                    instances[matching[0]].spec.id
                )),
            );
            return None;
        }
        Some((matching, output))
    }
}

/// Stage instances by id (`retrain[seed=1]`) and by base id (`retrain`: every instance), and every name a
/// reference may use, sorted (for "did you mean").
struct InstanceIndex {
    by_id: HashMap<String, usize>,
    by_base: HashMap<String, Vec<usize>>,
    names: Vec<String>,
}

impl InstanceIndex {
    fn new(instances: &[Instance]) -> InstanceIndex {
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut by_base: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, inst) in instances.iter().enumerate() {
            by_id.insert(inst.spec.id.clone(), i);
            by_base.entry(inst.spec.base_id.clone()).or_default().push(i);
        }
        let mut names: Vec<String> = by_base.keys().cloned().collect();
        names.extend(by_id.keys().cloned());
        names.sort();
        names.dedup();
        InstanceIndex { by_id, by_base, names }
    }
}

/// Letters, digits, `_` and `-`: safe as folder names and in job scripts.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The longest id, workflow name or matrix value: ids become folder and file names (255 bytes on most file
/// systems), and an instance id joins a stage id with its matrix values.
pub const MAX_NAME: usize = 64;

/// Whether a matrix value may appear in an instance id (and so in folder names): letters, digits, `_`, `-`, `.`,
/// `+`, not only dots (`..` would climb out of `reports/`).
pub fn is_valid_matrix_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.+".contains(c))
        && !s.chars().all(|c| c == '.')
}

/// `retrain[seed=1,strategy=hudd]`: the id of one matrix instance, keys sorted.
pub fn instance_id(base: &str, matrix: &BTreeMap<String, String>) -> String {
    if matrix.is_empty() {
        return base.to_string();
    }
    let parts: Vec<String> = matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{base}[{}]", parts.join(","))
}

/// The text of a scalar as it appears in an instance id.
fn scalar_text(v: &DeValue<'_>) -> Option<String> {
    match v {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            i64::from_str_radix(&digits, i.radix()).ok().map(|n| n.to_string())
        }
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok().map(|x| x.to_string()),
        DeValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Inserts `value` at a dotted path inside a table, creating intermediate tables; `Err(part)` names a non-table.
fn insert_path<'a>(
    table: &mut DeTable<'a>,
    parts: &[&str],
    value: Spanned<DeValue<'a>>,
    span: &Range<usize>,
) -> Result<(), String> {
    let (first, rest) = parts.split_first().expect("a key has at least one part");
    let key = Spanned::new(span.clone(), Cow::Owned(first.to_string()));
    if rest.is_empty() {
        table.insert(key, value);
        return Ok(());
    }
    let entry = table.entry(key).or_insert_with(|| Spanned::new(span.clone(), DeValue::Table(DeTable::new())));
    match entry.get_mut() {
        DeValue::Table(t) => insert_path(t, rest, value, span),
        _ => Err(first.to_string()),
    }
}

/// Moves every span of a value parsed from an override's own text to its place in [`Sources`].
fn shift(v: Spanned<DeValue<'_>>, offset: usize) -> Spanned<DeValue<'_>> {
    let span = v.span();
    let span = span.start + offset..span.end + offset;
    let value = match v.into_inner() {
        DeValue::Array(items) => {
            let mut out = toml::de::DeArray::new();
            for item in items.iter().cloned() {
                out.push(shift(item, offset));
            }
            DeValue::Array(out)
        }
        DeValue::Table(table) => {
            let mut out = DeTable::new();
            for (k, val) in table {
                let ks = k.span();
                out.insert(Spanned::new(ks.start + offset..ks.end + offset, k.into_inner()), shift(val, offset));
            }
            DeValue::Table(out)
        }
        other => other,
    };
    Spanned::new(span, value)
}
