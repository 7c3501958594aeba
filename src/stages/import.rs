//! Stage `dataset`: real images imported into a dataset artefact, from HUDD's folder layout
//! (`{TrainingSet,TestSet,ImprovementSet}/<class>/<image>`), a CSV listing, or IDX files (MNIST, Fashion-MNIST).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use polars::prelude::Column;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::artefact::skipped::SkippedRow;
use crate::artefact::table;
use crate::artefact::{DATASET, SKIPPED_IMAGES};
use crate::dataset::{DatasetMeta, DatasetWriter, Label, ParamInfo, Target, to_chw};
use crate::engine::stage::{Invalid, OutputSpec, Params, Stage, StageContext, StageError};

pub struct Import;

/// Why a data set cannot be imported: each names the file (and line), the folder or the image.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{id}: label {index} has no name in `classes` ({names} names)")]
    UnnamedLabel { id: String, index: usize, names: usize },
    #[error("{id}: label `{label}` is not in the class list ({})", classes.join(", "))]
    UnknownLabel { id: String, label: String, classes: Vec<String> },
    #[error("{id}: {reason} (on_bad_image = \"skip\" skips such images)")]
    BadImage { id: String, reason: String },
    #[error("{}: no such folder (split `{split}` of `splits`)", dir.display())]
    MissingSplit { dir: PathBuf, split: String },
    #[error(
        "{}: no TrainingSet, TestSet or ImprovementSet folder (HUDD's layout: <path>/TrainingSet/<class>/<image>)",
        root.display()
    )]
    NotHuddLayout { root: PathBuf },
    #[error(
        "{}: needs a `path` column and a `label` column (or `target_<name>` columns); columns: {}",
        file.display(),
        columns.join(", ")
    )]
    ListingColumns { file: PathBuf, columns: Vec<String> },
    #[error("{}: target columns come in x, y pairs, got {count}", file.display())]
    OddTargets { file: PathBuf, count: usize },
    #[error("{}:{line}: `{column}` is `{text}`, not a finite number", file.display())]
    NotANumber { file: PathBuf, line: usize, column: String, text: String },
    #[error("{}: no images (only a header)", file.display())]
    EmptyListing { file: PathBuf },
    #[error("{}:{line}: empty `path`", file.display())]
    EmptyPath { file: PathBuf, line: usize },
    #[error("{}:{line}: empty `split` for {path}", file.display())]
    EmptySplit { file: PathBuf, line: usize, path: String },
    #[error("{}:{line}: {path} is listed twice (also at line {first}); an image id must be unique", file.display())]
    Duplicate { file: PathBuf, line: usize, path: String, first: usize },
    #[error("{prefix}-images: expected 3 dimensions, got {dims:?}")]
    IdxImageDims { prefix: String, dims: Vec<usize> },
    #[error("{prefix}: {n} images, so the labels must have dimensions [{n}], not {dims:?}")]
    IdxLabelDims { prefix: String, n: usize, dims: Vec<usize> },
    #[error("{}: no train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz]", root.display())]
    NoIdx { root: PathBuf },
    #[error("{}: {source}", path.display())]
    Gzip { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Idx { path: PathBuf, message: String },
}

impl From<ImportError> for StageError {
    fn from(e: ImportError) -> Self {
        StageError::artefact(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// HUDD's `DataSets/{TrainingSet,TestSet,ImprovementSet}/<class>/<image>`.
    Folders,
    /// A CSV with `path,label` (or `path,target_*`) and optional `split` and parameter columns.
    Csv,
    /// IDX files: `train-images-idx3-ubyte[.gz]` and friends.
    Idx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Scale to `size × size`, ignoring the aspect ratio.
    #[default]
    Stretch,
    /// Scale the shorter side to `size` and crop the centre.
    Crop,
    /// Refuse images that are not already `size × size`.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnBad {
    #[default]
    Error,
    Skip,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    pub format: SourceFormat,
    /// A folder (folders, idx) or a CSV file (csv), relative to the workspace.
    pub path: PathBuf,
    /// Output width and height.
    pub size: u32,
    /// 1 (grey) or 3 (RGB).
    #[serde(default = "three")]
    pub channels: usize,
    #[serde(default)]
    pub resize: Resize,
    #[serde(default)]
    pub on_bad_image: OnBad,
    /// The class names in label order; by default the sorted folder names (folders), the sorted labels (csv),
    /// or `0`..`9` (idx, where `classes` names the label indices in order).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Share of the training split moved, at random, to a split `improvement` (for sources without one).
    #[serde(default)]
    pub improvement: f64,
    /// Share of the test split moved, at random, to a split `holdout` (for sources without one): images that
    /// judge retraining and choose nothing.
    #[serde(default)]
    pub holdout: f64,
    /// At most this many images per split (all by default), taken in order.
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// `folders` only: each split's folder under `path`, holding `<class>/<image>` (torchvision's ImageFolder
    /// layout), e.g. `{ train = "train", test = "val" }`; by default HUDD's `TrainingSet`, `TestSet`,
    /// `ImprovementSet` and `HoldoutSet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splits: Option<BTreeMap<String, PathBuf>>,
    /// Measure each image's pixel descriptors (luminance, contrast, sharpness, noise, edges; saturation and
    /// colourfulness in colour) and store them as the dataset's parameters, so that RQ1, `rules` and a held-out
    /// `confirm` can state conditions over real images (`crate::descriptors`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub descriptors: bool,
}

fn three() -> usize {
    3
}

impl Params for ImportParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if !(8..=1024).contains(&self.size) {
            out.push(Invalid::new("size", format!("must be between 8 and 1024 pixels, got {}", self.size)));
        }
        if self.channels != 1 && self.channels != 3 {
            out.push(Invalid::new("channels", format!("must be 1 (grey) or 3 (RGB), got {}", self.channels)));
        }
        if !(0.0..1.0).contains(&self.improvement) {
            out.push(Invalid::new("improvement", format!("must be in [0, 1), got {}", self.improvement)));
        }
        if !(0.0..1.0).contains(&self.holdout) {
            out.push(Invalid::new("holdout", format!("must be in [0, 1), got {}", self.holdout)));
        }
        if let Some(splits) = &self.splits {
            if self.format != SourceFormat::Folders {
                out.push(Invalid::new("splits", "names split folders, so only `format = \"folders\"` takes it"));
            }
            if splits.is_empty() {
                out.push(Invalid::new("splits", "names no split: give at least one, e.g. `{ train = \"train\" }`"));
            }
            for (split, folder) in splits {
                let inside = folder.components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if !inside || folder.as_os_str().is_empty() {
                    out.push(Invalid::new(
                        "splits",
                        format!("split `{split}`: `{}` is not a folder inside `path`", folder.display()),
                    ));
                }
            }
        }
        if let Some(classes) = &self.classes {
            let mut seen = std::collections::BTreeSet::new();
            for c in classes {
                if !seen.insert(c) {
                    out.push(Invalid::new("classes", format!("`{c}` appears twice")));
                }
            }
        }
        out
    }
}

/// One image to import: where its pixels come from, its split and label, and any extra columns.
struct Item {
    id: String,
    split: String,
    /// The class name (classification) or empty (regression).
    label: String,
    /// Keypoint coordinates `x0, y0, x1, ...` in the source image's pixels (regression).
    targets: Vec<f32>,
    pixels: Pixels,
    extra: Vec<String>,
}

enum Pixels {
    File(PathBuf),
    /// A path that is no image file (a named pipe, a device): why, without opening it.
    Unreadable(String),
    /// Grey pixels already in memory (IDX), `rows × cols`.
    Grey {
        rows: usize,
        cols: usize,
        data: Vec<u8>,
    },
}

impl Stage for Import {
    type Params = ImportParams;
    const KIND: &'static str = "dataset";
    const VERSION: u32 = 1;
    const OUTPUTS: &'static [OutputSpec] = &[
        OutputSpec { name: "dataset", kind: DATASET, path: "dataset/", doc: "images.npy, table.csv, meta.json" },
        OutputSpec {
            name: "skipped",
            kind: SKIPPED_IMAGES,
            path: "skipped.csv",
            doc: "images skipped with on_bad_image = \"skip\", and why",
        },
    ];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Imports real images.";

    fn external_paths(p: &ImportParams) -> Vec<PathBuf> {
        vec![p.path.clone()]
    }

    /// The images a CSV listing names (a folder's images are hashed with the folder).
    fn named_paths(p: &ImportParams, workspace: &Path) -> Vec<PathBuf> {
        if p.format != SourceFormat::Csv {
            return Vec::new();
        }
        let Ok((items, _, _)) = csv(&workspace.join(&p.path)) else { return Vec::new() };
        (items.into_iter())
            .filter_map(|it| match it.pixels {
                Pixels::File(f) => Some(f.strip_prefix(workspace).map(Path::to_path_buf).unwrap_or(f)),
                _ => None,
            })
            .collect()
    }

    fn run(&self, p: &ImportParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let root = ctx.resolve(&p.path);
        // Entries of a folder that hold no image (listed first in `skipped.csv`).
        let mut skipped = Vec::new();
        let (mut items, extra_names, target_names) = match p.format {
            SourceFormat::Folders => {
                let (items, left) = folders(&root, p.splits.as_ref())?;
                skipped = left;
                (items, Vec::new(), Vec::new())
            }
            SourceFormat::Csv => csv(&root)?,
            SourceFormat::Idx => (idx(&root)?, Vec::new(), Vec::new()),
        };
        let regression = !target_names.is_empty();
        arrange(&mut items, p, ctx.seed);
        let classes = if regression { Vec::new() } else { class_names(&mut items, p)? };

        let size = p.size as usize;
        let meta = DatasetMeta {
            source: format!(
                "{}:{}",
                serde_json::to_value(p.format).expect("enum").as_str().unwrap_or(""),
                p.path.display()
            ),
            task: if regression { "keypoints".into() } else { "classification".into() },
            target: if regression {
                Target::Regression { targets: target_names.clone() }
            } else {
                Target::Classification { classes: classes.clone() }
            },
            channels: p.channels,
            height: size,
            width: size,
            count: 0,
            splits: Vec::new(),
            params: Vec::new(),
            chosen_by: Vec::new(),
            domains: Default::default(),
        };
        let described = if p.descriptors { crate::descriptors::columns(p.channels) } else { Vec::new() };
        let meta = DatasetMeta { params: described.iter().map(ParamInfo::of).collect(), ..meta };
        let mut writer = DatasetWriter::create(&ctx.output("dataset")?, meta, described)?;
        let mut chw = Vec::new();
        let mut extras: Vec<Vec<String>> = vec![Vec::new(); extra_names.len()];
        ctx.progress.start(items.len() as u64, "images");
        for it in &items {
            ctx.progress.inc(1);
            let (rgb, map) = match decode(&it.pixels, size, p.resize) {
                Ok(decoded) => decoded,
                Err(reason) if p.on_bad_image == OnBad::Skip => {
                    skipped.push(SkippedRow { image: it.id.clone(), reason });
                    continue;
                }
                Err(reason) => return Err(ImportError::BadImage { id: it.id.clone(), reason }.into()),
            };
            let label = if regression {
                let mapped = it.targets.iter().enumerate();
                Label::Targets(
                    mapped.map(|(k, &t)| if k % 2 == 0 { t * map.0 + map.2 } else { t * map.1 + map.3 }).collect(),
                )
            } else {
                Label::Class(classes.iter().position(|c| *c == it.label).expect("labels were checked"))
            };
            chw.clear();
            to_chw(&rgb, size, p.channels, &mut chw);
            let values =
                if p.descriptors { crate::descriptors::describe(&chw, p.channels, size, size) } else { Vec::new() };
            writer.push_chw(it.id.clone(), &it.split, &chw, label, values)?;
            for (k, v) in it.extra.iter().enumerate() {
                extras[k].push(v.clone());
            }
        }
        let extra = extra_names.iter().zip(&extras).map(|(name, values)| Column::new(name.as_str().into(), values));
        writer.finish_with(extra.collect())?;
        table::write(&ctx.output("skipped")?, &skipped)?;
        Ok(())
    }
}

/// Moves the asked shares of train and test images to `improvement` and `holdout` (seeded), orders the splits
/// (train, test, improvement, others; images in source order within each) and keeps at most `limit` of each.
fn arrange(items: &mut Vec<Item>, p: &ImportParams, seed: u64) {
    for (from, to, share, salt) in [("train", "improvement", p.improvement, 0), ("test", "holdout", p.holdout, 0x401d)]
    {
        if share > 0.0 {
            let mut rows: Vec<usize> =
                items.iter().enumerate().filter(|(_, it)| it.split == from).map(|(i, _)| i).collect();
            rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ salt));
            let moved = (rows.len() as f64 * share).round() as usize;
            for &i in &rows[..moved] {
                items[i].split = to.into();
            }
        }
    }
    let rank = |s: &str| ["train", "test", "improvement"].iter().position(|x| *x == s).unwrap_or(3);
    items.sort_by(|a, b| (rank(&a.split), &a.split).cmp(&(rank(&b.split), &b.split)));
    if let Some(limit) = p.limit {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        items.retain(|it| {
            let c = counts.entry(it.split.clone()).or_default();
            *c += 1;
            *c <= limit
        });
    }
}

/// A classifier's class names: the manifest's `classes` (which also name IDX label indices, in order), IDX's ten
/// digits, or the labels found, sorted; refused when an image's label is not one of them.
fn class_names(items: &mut [Item], p: &ImportParams) -> Result<Vec<String>, ImportError> {
    if let (SourceFormat::Idx, Some(names)) = (p.format, &p.classes) {
        for it in items.iter_mut() {
            let d: usize = it.label.parse().expect("IDX labels are numbers");
            it.label = names.get(d).cloned().ok_or_else(|| ImportError::UnnamedLabel {
                id: it.id.clone(),
                index: d,
                names: names.len(),
            })?;
        }
    }
    let classes: Vec<String> = match &p.classes {
        Some(c) => c.clone(),
        None if p.format == SourceFormat::Idx => (0..10).map(|d| d.to_string()).collect(),
        None => {
            let mut c: Vec<String> = items.iter().map(|it| it.label.clone()).collect();
            c.sort();
            c.dedup();
            c
        }
    };
    for it in items.iter() {
        if !classes.contains(&it.label) {
            return Err(ImportError::UnknownLabel {
                id: it.id.clone(),
                label: it.label.clone(),
                classes: classes.clone(),
            });
        }
    }
    Ok(classes)
}

/// The largest image file read (a 16k × 16k RGB PNG is about 800 MB uncompressed but far less on disk).
const MAX_IMAGE_BYTES: u64 = 512 << 20;

/// How source pixel coordinates map to the output: `(scale_x, scale_y, offset_x, offset_y)`.
type CoordMap = (f32, f32, f32, f32);

/// Decodes and resizes one image to interleaved RGB `size × size`, or says why it cannot.
fn decode(pixels: &Pixels, size: usize, resize: Resize) -> Result<(Vec<u8>, CoordMap), String> {
    let img: image::RgbImage = match pixels {
        Pixels::Unreadable(reason) => return Err(reason.clone()),
        Pixels::File(path) => {
            let bytes = crate::regular::read(path, MAX_IMAGE_BYTES).map_err(|e| format!("cannot read: {e}"))?;
            image::load_from_memory(&bytes).map_err(|e| format!("unreadable or truncated image: {e}"))?.to_rgb8()
        }
        Pixels::Grey { rows, cols, data } => {
            let grey =
                image::GrayImage::from_raw(*cols as u32, *rows as u32, data.clone()).ok_or("truncated IDX image")?;
            image::DynamicImage::ImageLuma8(grey).to_rgb8()
        }
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (out, map) = if w == size && h == size {
        (img, (1.0, 1.0, 0.0, 0.0))
    } else {
        match resize {
            Resize::None => return Err(format!("is {w}×{h}, not {size}×{size} (resize = \"none\")")),
            Resize::Stretch => (
                image::imageops::resize(&img, size as u32, size as u32, image::imageops::FilterType::Triangle),
                (size as f32 / w as f32, size as f32 / h as f32, 0.0, 0.0),
            ),
            Resize::Crop => {
                let scale = size as f64 / w.min(h) as f64;
                let (nw, nh) = (
                    ((w as f64 * scale).round() as u32).max(size as u32),
                    ((h as f64 * scale).round() as u32).max(size as u32),
                );
                let scaled = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
                let (ox, oy) = ((nw - size as u32) / 2, (nh - size as u32) / 2);
                let map = (nw as f32 / w as f32, nh as f32 / h as f32, -(ox as f32), -(oy as f32));
                (image::imageops::crop_imm(&scaled, ox, oy, size as u32, size as u32).to_image(), map)
            }
        }
    };
    Ok((out.into_raw(), map))
}

/// HUDD's layout: `<root>/{TrainingSet,TestSet,ImprovementSet}/<class>/<image>`, and `HoldoutSet` for a split
/// `holdout`; or each split's folder as `splits` names it (every one must exist). A class folder is walked as
/// torchvision's ImageFolder walks it, sub-folders included, through [`crate::regular::walk`] (what the key hashes):
/// a pipe or a device is a bad image (named, never opened); what holds no image of a class (a file beside the class
/// folders, an empty class folder, a link to a folder outside `root`, never entered) is returned as a row of
/// `skipped.csv`.
fn folders(
    root: &Path,
    splits: Option<&BTreeMap<String, PathBuf>>,
) -> Result<(Vec<Item>, Vec<SkippedRow>), StageError> {
    use crate::regular::Found;
    const HUDD: [(&str, &str); 4] =
        [("TrainingSet", "train"), ("TestSet", "test"), ("ImprovementSet", "improvement"), ("HoldoutSet", "holdout")];
    let named: Vec<(PathBuf, String)> = match splits {
        Some(splits) => {
            // In HUDD's order (training first), then any other split by name.
            let rank = |split: &str| HUDD.iter().position(|(_, s)| *s == split).unwrap_or(HUDD.len());
            let mut named: Vec<(PathBuf, String)> =
                splits.iter().map(|(split, folder)| (folder.clone(), split.clone())).collect();
            named.sort_by_key(|(_, split)| rank(split));
            named
        }
        None => HUDD.iter().map(|(folder, split)| (PathBuf::from(folder), split.to_string())).collect(),
    };
    let mut items = Vec::new();
    let mut left = Vec::new();
    let mut found_split = false;
    let id = |path: &Path| path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned();
    for (folder, split) in named {
        let dir = root.join(&folder);
        if !dir.is_dir() {
            if splits.is_some() {
                return Err(ImportError::MissingSplit { dir, split }.into());
            }
            continue;
        }
        found_split = true;
        let mut classes: BTreeMap<String, usize> = BTreeMap::new();
        for class in sorted_entries(&dir)? {
            if class.is_dir() {
                classes.insert(class.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), 0);
            }
        }
        for (path, found) in crate::regular::walk(&dir, root).map_err(|e| StageError::io(&dir, e))? {
            let rel = path.strip_prefix(&dir).unwrap_or(&path);
            let mut parts = rel.components();
            let class = parts.next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
            let in_class = parts.next().is_some();
            let pixels = match found {
                Found::Outside(target) => {
                    let reason =
                        format!("a link to the folder {}, outside {}: not followed", target.display(), root.display());
                    left.push(SkippedRow { image: id(&path), reason });
                    continue;
                }
                _ if !in_class => {
                    left.push(SkippedRow { image: id(&path), reason: "not in a class folder".into() });
                    continue;
                }
                Found::File | Found::Broken(_) => Pixels::File(path.clone()),
                Found::Special(what) => Pixels::Unreadable(format!("{what}, not an image file")),
            };
            *classes.entry(class.clone()).or_default() += 1;
            items.push(Item {
                id: id(&path),
                split: split.clone(),
                label: class,
                targets: Vec::new(),
                pixels,
                extra: Vec::new(),
            });
        }
        for (class, _) in classes.iter().filter(|(_, n)| **n == 0) {
            left.push(SkippedRow {
                image: format!("{}/", id(&dir.join(class))),
                reason: "an empty class folder: no images of this class in this split".into(),
            });
        }
    }
    if !found_split {
        return Err(ImportError::NotHuddLayout { root: root.into() }.into());
    }
    if !left.is_empty() {
        tracing::warn!("{}: {} entries hold no image of a class (listed in skipped.csv)", root.display(), left.len());
    }
    Ok((items, left))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, StageError> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| StageError::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// A CSV listing: `path` and either `label` (classification) or `target_<name>` columns (keypoints, `x0, y0, x1,
/// ...` in source pixels), optional `split` (default `train`), other columns kept. Returns the items, the extra
/// column names and the target names.
/// A CSV listing: its items, the names of its extra columns, and the names of its keypoint targets.
type Listing = (Vec<Item>, Vec<String>, Vec<String>);

fn csv(file: &Path) -> Result<Listing, StageError> {
    let df = crate::dataset::read_csv(file)?;
    let names: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
    let target_names: Vec<String> =
        names.iter().filter_map(|n| n.strip_prefix("target_").map(str::to_string)).collect();
    let has = |c: &str| names.iter().any(|n| n == c);
    if !has("path") || (!has("label") && target_names.is_empty()) {
        return Err(ImportError::ListingColumns { file: file.into(), columns: names }.into());
    }
    if target_names.len() % 2 == 1 {
        return Err(ImportError::OddTargets { file: file.into(), count: target_names.len() }.into());
    }
    let col = |name: &str| -> Result<Vec<String>, StageError> {
        let c = df.column(name)?;
        let c = c.cast(&polars::prelude::DataType::String)?;
        Ok(c.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
    };
    let paths = col("path")?;
    let labels = if has("label") { col("label")? } else { vec![String::new(); paths.len()] };
    // Rows are named by their line in the file (the header is line 1).
    let line = |i: usize| i + 2;
    let numbers = |name: &str| -> Result<Vec<f32>, StageError> {
        (col(name)?.iter().enumerate())
            .map(|(i, text)| match text.trim().parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(ImportError::NotANumber {
                    file: file.into(),
                    line: line(i),
                    column: name.into(),
                    text: text.clone(),
                }
                .into()),
            })
            .collect()
    };
    let target_cols: Vec<Vec<f32>> =
        target_names.iter().map(|t| numbers(&format!("target_{t}"))).collect::<Result<_, _>>()?;
    let splits =
        if names.iter().any(|n| n == "split") { col("split")? } else { vec!["train".to_string(); paths.len()] };
    let extra_names: Vec<String> = names
        .iter()
        .filter(|n| !["path", "label", "split"].contains(&n.as_str()) && !n.starts_with("target_"))
        .cloned()
        .collect();
    let extra_cols: Vec<Vec<String>> = extra_names.iter().map(|n| col(n)).collect::<Result<_, _>>()?;
    if paths.is_empty() {
        return Err(ImportError::EmptyListing { file: file.into() }.into());
    }
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, path) in paths.iter().enumerate() {
        if path.trim().is_empty() {
            return Err(ImportError::EmptyPath { file: file.into(), line: line(i) }.into());
        }
        if splits[i].trim().is_empty() {
            return Err(ImportError::EmptySplit { file: file.into(), line: line(i), path: path.clone() }.into());
        }
        if let Some(first) = seen.insert(path.as_str(), i) {
            let (line, first) = (line(i), line(first));
            return Err(ImportError::Duplicate { file: file.into(), line, path: path.clone(), first }.into());
        }
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let items = (0..paths.len())
        .map(|i| Item {
            id: paths[i].clone(),
            split: splits[i].clone(),
            label: labels[i].clone(),
            targets: target_cols.iter().map(|c| c[i]).collect(),
            pixels: Pixels::File(base.join(&paths[i])),
            extra: extra_cols.iter().map(|c| c[i].clone()).collect(),
        })
        .collect();
    Ok((items, extra_names, target_names))
}

/// IDX files (MNIST layout), gzipped or not: `train-*` become split `train`, `t10k-*` split `test`.
fn idx(root: &Path) -> Result<Vec<Item>, StageError> {
    let mut items = Vec::new();
    for (prefix, split) in [("train", "train"), ("t10k", "test")] {
        let images = read_idx(root, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels = read_idx(root, &format!("{prefix}-labels-idx1-ubyte"))?;
        let (Some((img_dims, img)), Some((lab_dims, lab))) = (images, labels) else { continue };
        let (n, rows, cols) = match img_dims.as_slice() {
            [n, r, c] => (*n, *r, *c),
            other => return Err(ImportError::IdxImageDims { prefix: prefix.into(), dims: other.to_vec() }.into()),
        };
        if lab_dims != [n] {
            return Err(ImportError::IdxLabelDims { prefix: prefix.into(), n, dims: lab_dims }.into());
        }
        for i in 0..n {
            items.push(Item {
                id: format!("{split}-{i:05}"),
                split: split.into(),
                label: lab[i].to_string(),
                targets: Vec::new(),
                pixels: Pixels::Grey { rows, cols, data: img[i * rows * cols..(i + 1) * rows * cols].to_vec() },
                extra: Vec::new(),
            });
        }
    }
    if items.is_empty() {
        return Err(ImportError::NoIdx { root: root.into() }.into());
    }
    Ok(items)
}

/// Reads `<root>/<name>` or `<root>/<name>.gz`: the dimensions and the unsigned-byte payload.
/// An IDX file's dimensions and bytes.
type Idx = (Vec<usize>, Vec<u8>);

fn read_idx(root: &Path, name: &str) -> Result<Option<Idx>, StageError> {
    let plain = root.join(name);
    let gz = root.join(format!("{name}.gz"));
    let (path, bytes) = if plain.is_file() {
        (plain.clone(), std::fs::read(&plain).map_err(|e| StageError::io(&plain, e))?)
    } else if gz.is_file() {
        let file = std::fs::File::open(&gz).map_err(|e| StageError::io(&gz, e))?;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut out)
            .map_err(|source| ImportError::Gzip { path: gz.clone(), source })?;
        (gz, out)
    } else {
        return Ok(None);
    };
    let bad = |m: &str| StageError::from(ImportError::Idx { path: path.clone(), message: m.into() });
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad("not an IDX file of unsigned bytes"));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(bad("truncated header"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize)
        .collect();
    if dims.contains(&0) {
        return Err(bad(&format!("dimensions {dims:?}: an IDX file of images or labels has none of size 0")));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_add(header))
        .ok_or_else(|| bad(&format!("dimensions {dims:?} describe more bytes than any file holds")))?;
    if bytes.len() < expected {
        return Err(bad(&format!("truncated: {} bytes where {dims:?} needs {expected}", bytes.len())));
    }
    Ok(Some((dims, bytes[header..expected].to_vec())))
}
