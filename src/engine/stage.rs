//! The contract between the engine and a stage kind: declared inputs and outputs, parameter checking, execution.
//!
//! A stage kind implements [`Stage`] with a typed parameter struct; the blanket [`StageKind`] impl turns it into
//! the object the engine and the manifest checker use. The engine knows no stage by name: it only sees a [`Registry`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::DeValue;

use crate::engine::diagnostic::Diagnostic;
use crate::engine::progress::Progress;

/// The type of an artefact: what a stage's output is and what an input accepts. The engine compares them by name
/// when it checks a manifest; the method declares them (`crate::artefact`) with the schema that goes with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtefactKind {
    pub name: &'static str,
    pub doc: &'static str,
}

/// A named input of a stage kind, filled in the manifest with `"<stage-id>.<output>"` references.
#[derive(Debug, Clone, Copy)]
pub struct InputSlot {
    pub name: &'static str,
    /// The artefact kinds the input takes.
    pub accepts: &'static [ArtefactKind],
    /// Takes any number of artefacts (all instances of a matrix stage, or a list of references).
    pub many: bool,
    pub required: bool,
    pub doc: &'static str,
}

/// A named output of a stage kind and the path it has inside the entry: a folder when it ends with `/`.
#[derive(Debug, Clone, Copy)]
pub struct OutputSpec {
    pub name: &'static str,
    /// The artefact kind of the output.
    pub kind: ArtefactKind,
    pub path: &'static str,
    pub doc: &'static str,
}

impl OutputSpec {
    pub fn is_dir(&self) -> bool {
        self.path.ends_with('/')
    }

    pub fn rel_path(&self) -> &'static str {
        self.path.trim_end_matches('/')
    }
}

/// A value rule broken by checked parameters: the dotted field path and a message stating the rule and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid { field: field.into(), message: message.into() }
    }
}

/// Typed stage parameters: serde gives the types, `validate` the value rules.
pub trait Params: DeserializeOwned + Serialize + Send + Sync + 'static {
    fn validate(&self) -> Vec<Invalid> {
        Vec::new()
    }
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The data handed to the stage is unusable (truncated image, wrong shape, missing file): exit code 2.
    #[error("{message}")]
    Input { message: String },
    /// A post-condition of the stage does not hold (a quality gate): exit code 1.
    #[error("{message}")]
    Gate { message: String },
    /// The stage waits for a person (for example a labelling sheet to fill in).
    #[error("{message}")]
    Blocked { message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// An artefact (or a file it names) could not be read or written; the error names the file, line or value.
    /// Exit code 2. The method's error types convert into it, so `?` keeps their source chain.
    #[error(transparent)]
    Artefact(Box<dyn std::error::Error + Send + Sync>),
    #[error("{message}")]
    Failed { message: String },
}

impl From<crate::runtime::NoCuda> for StageError {
    /// The manifest asks for what this host cannot give: an input error (exit 2), as a bad parameter is.
    fn from(e: crate::runtime::NoCuda) -> Self {
        StageError::input(e.to_string())
    }
}

impl StageError {
    pub fn input(message: impl Into<String>) -> Self {
        StageError::Input { message: message.into() }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        StageError::Failed { message: message.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io { path: path.into(), source }
    }

    /// An artefact error, with its source chain.
    pub fn artefact(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Artefact(Box::new(source))
    }
}

/// One artefact a stage reads: which stage instance produced it and where its output lies in the store.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InputArtefact {
    pub stage: String,
    pub output: String,
    pub key: String,
    pub path: PathBuf,
    /// The producing instance's matrix values (empty for a plain stage).
    pub matrix: BTreeMap<String, String>,
}

/// Everything a running stage may touch: its inputs, its output folder, its seed, its progress.
pub struct StageContext<'a> {
    pub stage_id: &'a str,
    pub workflow: &'a str,
    pub seed: u64,
    pub threads: usize,
    pub progress: &'a Progress,
    /// Relative paths in parameters are relative to this folder.
    pub workspace: &'a Path,
    pub(crate) inputs: &'a BTreeMap<String, Vec<InputArtefact>>,
    pub(crate) out_dir: &'a Path,
    pub(crate) outputs: &'static [OutputSpec],
    pub(crate) lineage: Vec<Ancestor>,
    /// The stage instances that computed this stage's inputs.
    pub(crate) producers: Vec<Ancestor>,
    /// The manifest, for deliverable kinds.
    pub manifest: Option<&'a ManifestRef>,
}

/// A manifest as a deliverable stage saw it at planning time.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ManifestRef {
    /// As given on the command line.
    pub path: String,
    /// blake3 of its bytes.
    pub hash: String,
}

/// One stage instance upstream of a running stage, as the store recorded it: what produced an artefact it reads.
/// Only what its key determines: when, where and how fast it ran live in its `entry.json` and the run records,
/// so that a deliverable built from the lineage is the same bytes in every store.
#[derive(Debug, Clone, Serialize)]
pub struct Ancestor {
    pub stage: String,
    pub kind: String,
    pub version: u32,
    pub key: String,
    /// Parameters with defaults filled in.
    pub params: serde_json::Value,
    pub seed: Option<u64>,
    /// External files and their content hashes.
    pub externals: BTreeMap<String, String>,
    /// Where its outputs lie in this store, by output name: what a deliverable reads its facts from (what a
    /// simulation drew, what a selection selected). Not stated in a deliverable: paths differ between stores.
    #[serde(skip)]
    pub outputs: BTreeMap<String, PathBuf>,
}

impl Ancestor {
    /// Where one of its outputs lies (none when the stage kind has no such output).
    pub fn output(&self, name: &str) -> Option<&Path> {
        self.outputs.get(name).map(PathBuf::as_path)
    }
}

impl<'a> StageContext<'a> {
    /// A path from the parameters, resolved against the workspace.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.workspace.join(path)
    }

    /// The single artefact of an input slot.
    pub fn input(&self, slot: &str) -> Result<&InputArtefact, StageError> {
        match self.inputs(slot) {
            [one] => Ok(one),
            [] => Err(StageError::failed(format!("stage `{}` has no input `{slot}`", self.stage_id))),
            many => Err(StageError::failed(format!(
                "stage `{}`: input `{slot}` holds {} artefacts where one was expected",
                self.stage_id,
                many.len()
            ))),
        }
    }

    /// The stage instance that computed the (first) artefact of an input slot, with its parameters: what a stage
    /// needs to know of how an input was made (as `select` reads the backbone an `activations` stage used).
    pub fn producer(&self, slot: &str) -> Option<&Ancestor> {
        let key = &self.inputs.get(slot)?.first()?.key;
        self.producers.iter().find(|a| &a.key == key)
    }

    /// Every stage instance upstream of this one (inputs, their inputs, ...), ordered by stage id;
    /// filled in by the engine for deliverable kinds only (empty otherwise).
    pub fn lineage(&self) -> &[Ancestor] {
        &self.lineage
    }

    /// All artefacts of an input slot, in manifest order (empty when an optional slot is not given).
    pub fn inputs(&self, slot: &str) -> &[InputArtefact] {
        self.inputs.get(slot).map_or(&[], Vec::as_slice)
    }

    /// Where to write a declared output; its parent folders (or the folder itself) exist.
    pub fn output(&self, name: &str) -> Result<PathBuf, StageError> {
        let spec = self
            .outputs
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| StageError::failed(format!("stage `{}` declares no output `{name}`", self.stage_id)))?;
        let path = self.out_dir.join(spec.rel_path());
        let dir = if spec.is_dir() { path.as_path() } else { path.parent().unwrap_or(self.out_dir) };
        std::fs::create_dir_all(dir).map_err(|e| StageError::io(dir, e))?;
        Ok(path)
    }
}

/// A stage kind with typed parameters. Implement this; the engine sees it through [`StageKind`].
pub trait Stage: Send + Sync + 'static {
    type Params: Params;
    const KIND: &'static str;
    /// Bump when the implementation changes what it writes: every cached entry of the kind goes stale.
    const VERSION: u32;
    const INPUTS: &'static [InputSlot] = &[];
    const OUTPUTS: &'static [OutputSpec];
    /// The stage draws random numbers: its effective seed (`seed` parameter, else the workflow's) enters its key.
    const USES_SEED: bool = false;
    /// The stage delivers the workflow's result (the report): the manifest's path and hash enter its key and its
    /// context, and its output folder is copied to `reports/<workflow>/` after a run.
    const DELIVERABLE: bool = false;
    /// Parameters that change how the stage runs, never what it writes (threads, inference batch sizes): they are
    /// kept out of its key, so changing one reruns nothing. Each is backed by a test that two values give the same
    /// bytes.
    const SETTINGS: &'static [&'static str] = &[];
    const DOC: &'static str = "";

    /// Files and folders outside the store that the stage reads; their content hashes enter its key.
    fn external_paths(_params: &Self::Params) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Content the stage reads that is no file of the workspace (an architecture compiled into the binary): a name
    /// and a hash each, entered into its key like external files.
    fn fingerprints(_params: &Self::Params) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Files outside the store that the stage reads when they exist (a sheet a person fills in): their content, or
    /// their absence, enters the key, so creating or editing one reruns the stage.
    fn optional_paths(_params: &Self::Params) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Files the stage reads that its external files name rather than its parameters (an ONNX model's external
    /// data, the images a CSV lists), relative to the workspace as the parameters' paths are: listed at plan time by
    /// reading the external files, each hashed into the key like them, so replacing one makes the stage stale. An
    /// external file that cannot be read for its names names none: the stage fails on it, naming why, when it runs.
    fn named_paths(_params: &Self::Params, _workspace: &Path) -> Vec<PathBuf> {
        Vec::new()
    }

    /// libtorch's threads while the stage runs: the engine sets them, on the thread that runs it, right before
    /// `run` (the one place a thread count reaches libtorch). By default the run's share of the cores
    /// (`ctx.threads`); a stage with a `threads` parameter says how it reads it.
    fn torch_threads(_params: &Self::Params, run: usize) -> usize {
        run
    }

    fn run(&self, params: &Self::Params, ctx: &mut StageContext<'_>) -> Result<(), StageError>;
}

/// The object-safe view of a stage kind used by the manifest checker and the engine.
pub trait StageKind: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn inputs(&self) -> &'static [InputSlot];
    fn outputs(&self) -> &'static [OutputSpec];
    fn uses_seed(&self) -> bool;
    fn deliverable(&self) -> bool;
    fn settings(&self) -> &'static [&'static str];
    /// The parameter names the kind takes (from its serde definition).
    fn param_names(&self) -> &'static [&'static str];
    fn doc(&self) -> &'static str;
    /// Checks a stage's parameter table and returns its canonical form (defaults filled in, keys sorted).
    fn check(&self, table: Spanned<DeValue<'_>>) -> Result<serde_json::Value, Vec<Diagnostic>>;
    fn external_paths(&self, params: &serde_json::Value) -> Vec<PathBuf>;
    fn fingerprints(&self, params: &serde_json::Value) -> Vec<(String, String)>;
    fn optional_paths(&self, params: &serde_json::Value) -> Vec<PathBuf>;
    fn named_paths(&self, params: &serde_json::Value, workspace: &Path) -> Vec<PathBuf>;
    fn run(&self, params: &serde_json::Value, ctx: &mut StageContext<'_>) -> Result<(), StageError>;
}

impl<S: Stage> StageKind for S {
    fn kind(&self) -> &'static str {
        S::KIND
    }

    fn version(&self) -> u32 {
        S::VERSION
    }

    fn inputs(&self) -> &'static [InputSlot] {
        S::INPUTS
    }

    fn outputs(&self) -> &'static [OutputSpec] {
        S::OUTPUTS
    }

    fn uses_seed(&self) -> bool {
        S::USES_SEED
    }

    fn deliverable(&self) -> bool {
        S::DELIVERABLE
    }

    fn settings(&self) -> &'static [&'static str] {
        S::SETTINGS
    }

    fn param_names(&self) -> &'static [&'static str] {
        field_names::<S::Params>()
    }

    fn doc(&self) -> &'static str {
        S::DOC
    }

    fn check(&self, table: Spanned<DeValue<'_>>) -> Result<serde_json::Value, Vec<Diagnostic>> {
        let span = table.span();
        let mut infinite = Vec::new();
        non_finite(&table, "", &mut infinite);
        if !infinite.is_empty() {
            return Err(infinite);
        }
        let lookup = table.clone();
        let params: S::Params = serde::Deserialize::deserialize(table.into_deserializer()).map_err(|e| {
            let at = e.span().unwrap_or_else(|| span.clone());
            vec![Diagnostic::new(format!("stage kind `{}`: {}", S::KIND, e.message().trim()), at)]
        })?;
        let invalid = params.validate();
        if !invalid.is_empty() {
            return Err(invalid
                .into_iter()
                .map(|i| {
                    let at = field_span(&lookup, &i.field).unwrap_or_else(|| span.clone());
                    Diagnostic::new(format!("invalid `{}`: {}", i.field, i.message), at)
                })
                .collect());
        }
        serde_json::to_value(&params).map_err(|e| vec![Diagnostic::new(e.to_string(), span)])
    }

    fn external_paths(&self, params: &serde_json::Value) -> Vec<PathBuf> {
        serde_json::from_value::<S::Params>(params.clone()).map(|p| S::external_paths(&p)).unwrap_or_default()
    }

    fn fingerprints(&self, params: &serde_json::Value) -> Vec<(String, String)> {
        serde_json::from_value::<S::Params>(params.clone()).map(|p| S::fingerprints(&p)).unwrap_or_default()
    }

    fn optional_paths(&self, params: &serde_json::Value) -> Vec<PathBuf> {
        serde_json::from_value::<S::Params>(params.clone()).map(|p| S::optional_paths(&p)).unwrap_or_default()
    }

    fn named_paths(&self, params: &serde_json::Value, workspace: &Path) -> Vec<PathBuf> {
        serde_json::from_value::<S::Params>(params.clone()).map(|p| S::named_paths(&p, workspace)).unwrap_or_default()
    }

    fn run(&self, params: &serde_json::Value, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let params: S::Params = serde_json::from_value(params.clone())
            .map_err(|e| StageError::failed(format!("stage kind `{}`: stored parameters unreadable: {e}", S::KIND)))?;
        crate::runtime::set_threads(S::torch_threads(&params, ctx.threads));
        Stage::run(self, &params, ctx)
    }
}

/// Every infinite or NaN float in a parameter table (TOML writes them `inf`, `nan`): no parameter takes one, and
/// JSON, which keys and specs are made of, cannot hold them.
fn non_finite(value: &Spanned<DeValue<'_>>, path: &str, out: &mut Vec<Diagnostic>) {
    match value.get_ref() {
        DeValue::Float(f) => {
            let text = f.as_str().replace('_', "");
            if !text.parse::<f64>().is_ok_and(f64::is_finite) {
                out.push(Diagnostic::new(format!("`{path}` must be a finite number, got {text}"), value.span()));
            }
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                non_finite(item, &format!("{path}.{i}"), out);
            }
        }
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                let key = if path.is_empty() { k.get_ref().to_string() } else { format!("{path}.{}", k.get_ref()) };
                non_finite(v, &key, out);
            }
        }
        _ => {}
    }
}

/// The span of a dotted field path inside a parameter table, for value-rule errors.
pub(crate) fn field_span(table: &Spanned<DeValue<'_>>, field: &str) -> Option<Range<usize>> {
    let mut at = table;
    for part in field.split('.') {
        at = match (at.get_ref(), part.parse::<usize>()) {
            (DeValue::Array(items), Ok(i)) => items.get(i)?,
            (DeValue::Table(t), _) => t.get(part)?,
            _ => return None,
        };
    }
    Some(at.span())
}

/// The stage kinds a workflow may use, by name.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Box<dyn StageKind>>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    pub fn with(mut self, kind: impl StageKind + 'static) -> Self {
        self.kinds.insert(kind.kind(), Box::new(kind));
        self
    }

    pub fn get(&self, kind: &str) -> Option<&dyn StageKind> {
        self.kinds.get(kind).map(|k| k.as_ref())
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}

/// The field names of a struct deserialised by serde's derive: it asks `deserialize_struct` for them, and this
/// deserializer records them and stops.
pub(crate) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor, value::Error};
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
            newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}
