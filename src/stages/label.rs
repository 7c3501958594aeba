//! Stage `label` (HUDD Step 5): labels for the selected images, from the dataset itself (`oracle`, how the
//! evaluation runs) or from a person (`manual`: a labelling sheet to fill in; the run waits for it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::Column;
use serde::{Deserialize, Serialize};

use crate::artefact::SELECTION;
use crate::artefact::table::{self, Row};
use crate::dataset::Dataset;
use crate::dataset::Target;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::media::svg::escape;

pub struct Label;

/// Why a labelling sheet cannot be read: each names the sheet and the line.
#[derive(Debug, thiserror::Error)]
pub enum SheetError {
    #[error(
        "manual labelling covers classification; keypoint targets come from the dataset (mode = \"oracle\") or an \
         imported, labelled dataset"
    )]
    Keypoints,
    #[error("{}:1: the header must be `image,label`, found {found:?}", path.display())]
    Header { path: PathBuf, found: String },
    #[error("{}:{line}: {source}", path.display())]
    Csv { path: PathBuf, line: u64, source: csv::Error },
    #[error("{}:{line}: image `{id}` was not selected for labelling", path.display())]
    NotSelected { path: PathBuf, line: u64, id: String },
    #[error("{}:{line}: `{label}` is not a class (classes: {})", path.display(), classes.join(", "))]
    UnknownClass { path: PathBuf, line: u64, label: String, classes: Vec<String> },
    #[error("{}:{line}: image `{id}` is listed twice", path.display())]
    Twice { path: PathBuf, line: u64, id: String },
}

impl From<SheetError> for StageError {
    fn from(e: SheetError) -> Self {
        StageError::artefact(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LabelMode {
    /// The labels (or regression targets) the dataset already carries stand in for a person's.
    #[default]
    Oracle,
    /// A person fills in `labels` (CSV `image,label`); the run stops until it covers exactly the selected images.
    Manual,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelParams {
    #[serde(default)]
    pub mode: LabelMode,
    /// `manual`: the labelling sheet, relative to the workspace (written with an empty `label` column when absent).
    #[serde(default)]
    pub labels: Option<PathBuf>,
}

impl Params for LabelParams {
    fn validate(&self) -> Vec<Invalid> {
        match (self.mode, &self.labels) {
            (LabelMode::Manual, None) => vec![Invalid::new(
                "labels",
                "is required with mode = \"manual\": the CSV file a person fills in, e.g. \"labels/unsafe.csv\"",
            )],
            (LabelMode::Oracle, Some(_)) => vec![Invalid::new("labels", "is only read with mode = \"manual\"")],
            _ => Vec::new(),
        }
    }
}

impl Stage for Label {
    type Params = LabelParams;
    const KIND: &'static str = "label";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "selected",
        accepts: &[SELECTION],
        many: false,
        required: true,
        doc: "a select stage's selected images",
    }];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "labelled",
        kind: SELECTION,
        path: "labelled/",
        doc: "the selected images with their labels, as a dataset",
    }];
    const DOC: &'static str = "Labels the selected images.";

    fn optional_paths(p: &LabelParams) -> Vec<PathBuf> {
        p.labels.iter().cloned().collect()
    }

    fn run(&self, p: &LabelParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let ds = Dataset::open(&ctx.input("selected")?.path)?;
        let rows: Vec<usize> = (0..ds.meta.count).collect();
        let out = ctx.output("labelled")?;
        let Some(sheet) = &p.labels else {
            return Ok(ds.write_subset(&rows, &out).map(|_| ())?);
        };
        let Target::Classification { classes } = &ds.meta.target else {
            return Err(SheetError::Keypoints.into());
        };
        let ids = ds.ids()?;
        let path = ctx.resolve(sheet);
        if !path.exists() {
            write_sheet(&path, &ds, &ids, classes)?;
            return Err(StageError::Blocked {
                message: format!(
                    "{} images wait for labels: fill in the `label` column of {} (classes: {}; {} shows every image beside its row), then run again",
                    ids.len(),
                    path.display(),
                    classes.join(", "),
                    path.with_extension("html").display()
                ),
            });
        }
        let labels = read_sheet(&path, &ids, classes)?;
        let index: Vec<i64> =
            labels.iter().map(|l| classes.iter().position(|c| c == l).expect("checked") as i64).collect();
        let extra = vec![Column::new("label".into(), labels), Column::new("label_index".into(), index)];
        Ok(ds.write_subset_with(&rows, &out, extra).map(|_| ())?)
    }
}

/// The labelling sheet: `image,label` with the label empty, an HTML page showing each image beside its row, and the
/// images it shows (`<sheet stem>-images/`).
fn write_sheet(path: &Path, ds: &Dataset, ids: &[String], classes: &[String]) -> Result<(), StageError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "labels".into());
    let images = parent.join(format!("{stem}-images"));
    std::fs::create_dir_all(&images).map_err(|e| StageError::io(&images, e))?;
    let rows: Vec<usize> = (0..ids.len()).collect();
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (w, h, ch) = (ds.meta.width, ds.meta.height, ds.meta.channels);
    let chw = ds.images(&rows)?;
    let mut html = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Labelling sheet: {0}</title><style>body{{font-family:sans-serif}}td{{padding:4px 12px}}img{{image-rendering:pixelated}}</style>\
         <h1>Labelling sheet</h1><p>Fill in the <code>label</code> column of <code>{0}</code> with one of: {1}.</p><table><tr><th>image</th><th>id</th></tr>",
        escape(&path.display().to_string()),
        classes.iter().map(|c| format!("<code>{}</code>", escape(c))).collect::<Vec<_>>().join(", ")
    );
    let mut sheet = Vec::with_capacity(ids.len());
    for (i, img) in chw.chunks_exact(ch * w * h).enumerate() {
        let file = format!("{}.png", crate::media::file_name(names[i]));
        crate::media::write_png(
            &images.join(&file),
            &crate::media::chw_to_rgb(img, ch, w * h),
            w,
            h,
            (128 / w.max(1)).max(1),
        )?;
        let _ = write!(
            html,
            "<tr><td><img src=\"{}/{}\" alt=\"\"></td><td>{}</td></tr>",
            escape(&format!("{stem}-images")),
            escape(&file),
            escape(names[i])
        );
        sheet.push(SheetRow { image: names[i].to_string(), label: String::new() });
    }
    html.push_str("</table>\n");
    std::fs::write(path.with_extension("html"), html).map_err(|e| StageError::io(path.with_extension("html"), e))?;
    Ok(table::write(path, &sheet)?)
}

/// A row of the labelling sheet.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SheetRow {
    image: String,
    label: String,
}

impl Row for SheetRow {
    const COLUMNS: &'static [&'static str] = &["image", "label"];
}

/// Reads a filled-in sheet: exactly the selected images, each with a known class.
fn read_sheet(path: &Path, ids: &[String], classes: &[String]) -> Result<Vec<String>, StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
    // A person fills the sheet in, perhaps in a spreadsheet: rows may be short, fields padded.
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).has_headers(false).from_reader(&bytes[..]);
    let mut records = reader.records();
    let at = |r: &csv::StringRecord| r.position().map_or(0, csv::Position::line);
    match records.next() {
        Some(Ok(header)) if header.iter().eq(SheetRow::COLUMNS.iter().copied()) => {}
        other => {
            let found = match other {
                Some(Ok(h)) => h.iter().collect::<Vec<_>>().join(","),
                _ => String::new(),
            };
            return Err(SheetError::Header { path: path.into(), found }.into());
        }
    }
    let mut given: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for record in records {
        let record = record.map_err(|source| SheetError::Csv {
            path: path.into(),
            line: source.position().map_or(0, csv::Position::line),
            source,
        })?;
        let line = at(&record);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let (id, label) = (record.get(0).unwrap_or(""), record.get(1).unwrap_or(""));
        let i = line.saturating_sub(1);
        if !ids.iter().any(|x| x == id) {
            return Err(SheetError::NotSelected { path: path.into(), line: i + 1, id: id.into() }.into());
        }
        if !label.is_empty() && !classes.iter().any(|c| c == label) {
            let classes = classes.to_vec();
            return Err(
                SheetError::UnknownClass { path: path.into(), line: i + 1, label: label.into(), classes }.into()
            );
        }
        if given.insert(id.to_string(), label.to_string()).is_some() {
            return Err(SheetError::Twice { path: path.into(), line: i + 1, id: id.into() }.into());
        }
    }
    let missing: Vec<&str> =
        ids.iter().filter(|id| given.get(id.as_str()).is_none_or(String::is_empty)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(StageError::Blocked {
            message: format!(
                "{} of {} images in {} have no label yet ({}{}); fill them in, then run again",
                missing.len(),
                ids.len(),
                path.display(),
                missing.iter().take(5).copied().collect::<Vec<_>>().join(", "),
                if missing.len() > 5 { ", ..." } else { "" }
            ),
        });
    }
    Ok(ids.iter().map(|id| given[id.as_str()].clone()).collect())
}
