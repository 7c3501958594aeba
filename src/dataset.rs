//! The dataset artefact every model stage reads: `images.npy` (uint8, N×C×H×W), `table.csv` and `meta.json`.
//!
//! The table has one row per image, in the images' order: `image` (id), `split`, the label (`label` and
//! `label_index` for classification, `target_<name>` columns for regression), then every simulator parameter.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::{Column, CsvWriter, DataFrame, SerWriter};
use serde::{Deserialize, Serialize};

use crate::npy::{NpyError, NpyWriter};

/// What a task asks the DNN to predict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Target {
    Classification { classes: Vec<String> },
    Regression { targets: Vec<String> },
}

/// The label of one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    Class(usize),
    Targets(Vec<f32>),
}

/// The kind of values a parameter takes, and its physical range.
#[derive(Debug, Clone, Copy)]
pub enum ParamKind {
    Real {
        min: f64,
        max: f64,
        unit: &'static str,
    },
    /// Degrees; analysed with circular statistics.
    Angle {
        min: f64,
        max: f64,
    },
    /// Degrees of an axis, a direction without sense (θ and θ + 180° are the same line, as a blur direction);
    /// analysed with axial statistics (period 180°).
    Axial {
        min: f64,
        max: f64,
    },
    Categorical(&'static [&'static str]),
    Bool,
}

impl ParamKind {
    /// The names of a categorical or boolean parameter's values, by index.
    pub fn categories(&self) -> Option<Vec<&'static str>> {
        match *self {
            ParamKind::Categorical(c) => Some(c.to_vec()),
            ParamKind::Bool => Some(vec!["false", "true"]),
            _ => None,
        }
    }

    /// A value as it appears in tables: the category name for categorical parameters.
    pub fn show(&self, v: f64) -> String {
        match self.categories() {
            Some(c) => c[v as usize].to_string(),
            None => format!("{}", (v * 1e4).round() / 1e4),
        }
    }

    /// The circle the parameter lives on: 360° for an angle and 180° for an axis whose range goes all the way round;
    /// none for one with a narrower range (yaw in [-75°, 75°] never wraps: it is an interval) or a number.
    pub fn period(&self) -> Option<f64> {
        match *self {
            ParamKind::Angle { min, max } if max - min >= 360.0 => Some(360.0),
            ParamKind::Axial { min, max } if max - min >= 180.0 => Some(180.0),
            _ => None,
        }
    }

    /// "real", "angle", "axial", "categorical" or "bool": how evaluation stages must measure spread.
    pub fn name(&self) -> &'static str {
        match self {
            ParamKind::Real { .. } => "real",
            ParamKind::Angle { .. } => "angle",
            ParamKind::Axial { .. } => "axial",
            ParamKind::Categorical(_) => "categorical",
            ParamKind::Bool => "bool",
        }
    }
}

/// A parameter column of a dataset's table: its name and the kind of its values.
#[derive(Debug, Clone, Copy)]
pub struct ParamColumn {
    pub name: &'static str,
    pub kind: ParamKind,
}

/// Colour policy of a dataset: grey (luminance) or RGB.
pub fn to_chw(rgb: &[u8], size: usize, channels: usize, out: &mut Vec<u8>) {
    let n = size * size;
    match channels {
        1 => out.extend((0..n).map(|i| {
            let p = &rgb[i * 3..i * 3 + 3];
            (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8
        })),
        _ => {
            for c in 0..3 {
                out.extend((0..n).map(|i| rgb[i * 3 + c]));
            }
        }
    }
}

/// A parameter column's description, so that evaluation stages know how to measure its spread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    /// `real`, `angle`, `axial`, `categorical` or `bool`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The task's label is made from this parameter (`Simulator::label_params`): it restates the label.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub label: bool,
    /// An angle or axis read on a circle of this many degrees: its declared range goes all the way round. Angles
    /// without it lie in a narrower range and are read as numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<f64>,
}

impl ParamInfo {
    pub fn of(spec: &ParamColumn) -> ParamInfo {
        let (unit, values) = match spec.kind {
            ParamKind::Real { unit, .. } => (Some(unit.to_string()), Vec::new()),
            ParamKind::Angle { .. } | ParamKind::Axial { .. } => (Some("degrees".to_string()), Vec::new()),
            ParamKind::Categorical(v) => (None, v.iter().map(|s| s.to_string()).collect()),
            ParamKind::Bool => (None, vec!["false".into(), "true".into()]),
        };
        ParamInfo {
            name: spec.name.to_string(),
            kind: spec.kind.name().to_string(),
            unit,
            values,
            label: false,
            period: spec.kind.period(),
        }
    }
}

/// A split's name and its images' content hashes, in row order.
pub type SplitHashes = (String, Vec<[u8; 16]>);

/// `meta.json` of a dataset artefact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetMeta {
    /// Where the images come from (`simulate:signs`, `idx:/usr/share/...`).
    pub source: String,
    pub task: String,
    pub target: Target,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub count: usize,
    /// Split name → number of images, in table order.
    pub splits: Vec<(String, usize)>,
    pub params: Vec<ParamInfo>,
    /// For a selection: the splits whose images chose which images it holds (HUDD's: the split whose failures
    /// were clustered). Subsets keep it; a model trained on the set records them as having chosen its data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chosen_by: Vec<String>,
    /// For a simulated dataset: each split's operational domain, the distribution its parameters were drawn from
    /// (what `confirm` and `generate` draw fresh images from, and what rates are stated inside).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, crate::domain::Domain>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Table { path: PathBuf, message: String },
}

impl From<DatasetError> for crate::engine::stage::StageError {
    fn from(e: DatasetError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// Writes a dataset artefact image by image.
pub struct DatasetWriter {
    dir: PathBuf,
    images: NpyWriter<u8>,
    meta: DatasetMeta,
    specs: Vec<ParamColumn>,
    ids: Vec<String>,
    splits: Vec<String>,
    labels: Vec<Label>,
    values: Vec<Vec<f64>>,
    chw: Vec<u8>,
}

impl DatasetWriter {
    /// Starts a dataset in `dir` (created); `meta.count` and `meta.splits` are filled in as images arrive.
    pub fn create(dir: &Path, meta: DatasetMeta, specs: Vec<ParamColumn>) -> Result<Self, DatasetError> {
        std::fs::create_dir_all(dir).map_err(|source| DatasetError::Io { path: dir.to_path_buf(), source })?;
        let images = NpyWriter::create(&dir.join("images.npy"), &[meta.channels, meta.height, meta.width])?;
        Ok(DatasetWriter {
            dir: dir.to_path_buf(),
            images,
            meta,
            specs,
            ids: Vec::new(),
            splits: Vec::new(),
            labels: Vec::new(),
            values: Vec::new(),
            chw: Vec::new(),
        })
    }

    /// Appends one image (interleaved RGB, `width × height`) with its row.
    pub fn push(
        &mut self,
        id: String,
        split: &str,
        rgb: &[u8],
        label: Label,
        values: Vec<f64>,
    ) -> Result<(), DatasetError> {
        let mut chw = std::mem::take(&mut self.chw);
        chw.clear();
        to_chw(rgb, self.meta.width, self.meta.channels, &mut chw);
        let pushed = self.push_chw(id, split, &chw, label, values);
        self.chw = chw;
        pushed
    }

    /// Appends one image as the dataset stores it (C×H×W bytes, already in the dataset's channels) with its row.
    pub fn push_chw(
        &mut self,
        id: String,
        split: &str,
        chw: &[u8],
        label: Label,
        values: Vec<f64>,
    ) -> Result<(), DatasetError> {
        self.images.append(chw)?;
        self.ids.push(id);
        self.splits.push(split.to_string());
        self.labels.push(label);
        self.values.push(values);
        count_split(&mut self.meta.splits, split);
        Ok(())
    }

    /// Writes `table.csv` and `meta.json` and closes `images.npy`.
    pub fn finish(self) -> Result<DatasetMeta, DatasetError> {
        self.finish_with(Vec::new())
    }

    /// As [`DatasetWriter::finish`], with `extra` columns (one value per image) after the parameters.
    pub fn finish_with(mut self, extra: Vec<Column>) -> Result<DatasetMeta, DatasetError> {
        self.meta.count = self.images.finish()?;
        let table_path = self.dir.join("table.csv");
        let table_err =
            |e: polars::error::PolarsError| DatasetError::Table { path: table_path.clone(), message: e.to_string() };
        let mut df =
            build_table(&self.ids, Some(&self.splits), &self.meta.target, &self.labels, &self.specs, &self.values)
                .map_err(table_err)?;
        for column in extra {
            df.with_column(column).map_err(table_err)?;
        }
        write_csv(&table_path, &mut df)?;
        let meta_path = self.dir.join("meta.json");
        std::fs::write(&meta_path, serde_json::to_vec_pretty(&self.meta).expect("meta serialises"))
            .map_err(|source| DatasetError::Io { path: meta_path, source })?;
        Ok(self.meta)
    }
}

/// The table of a set of images: `image`, `split` (when given), the label columns, then one column per parameter.
pub fn build_table(
    ids: &[String],
    splits: Option<&[String]>,
    target: &Target,
    labels: &[Label],
    specs: &[ParamColumn],
    values: &[Vec<f64>],
) -> polars::error::PolarsResult<DataFrame> {
    let mut columns = vec![Column::new("image".into(), ids)];
    if let Some(splits) = splits {
        columns.push(Column::new("split".into(), splits));
    }
    match target {
        Target::Classification { classes } => {
            let index: Vec<u32> = labels.iter().map(|l| if let Label::Class(c) = l { *c as u32 } else { 0 }).collect();
            let names: Vec<&str> = index.iter().map(|&c| classes[c as usize].as_str()).collect();
            columns.push(Column::new("label".into(), names));
            columns.push(Column::new("label_index".into(), index));
        }
        Target::Regression { targets } => {
            for (k, name) in targets.iter().enumerate() {
                let v: Vec<f32> =
                    labels.iter().map(|l| if let Label::Targets(t) = l { t[k] } else { f32::NAN }).collect();
                columns.push(Column::new(format!("target_{name}").into(), v));
            }
        }
    }
    for (k, spec) in specs.iter().enumerate() {
        let column = match spec.kind {
            ParamKind::Categorical(_) | ParamKind::Bool => {
                let v: Vec<String> = values.iter().map(|row| spec.kind.show(row[k])).collect();
                Column::new(spec.name.into(), v)
            }
            _ => {
                let v: Vec<f64> = values.iter().map(|row| (row[k] * 1e4).round() / 1e4).collect();
                Column::new(spec.name.into(), v)
            }
        };
        columns.push(column);
    }
    DataFrame::new(ids.len(), columns)
}

/// Writes a table as CSV.
pub fn write_csv(path: &Path, df: &mut DataFrame) -> Result<(), DatasetError> {
    let mut file = File::create(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
    CsvWriter::new(&mut file)
        .finish(df)
        .map_err(|e| DatasetError::Table { path: path.to_path_buf(), message: e.to_string() })
}

/// A dataset artefact opened for reading: its meta, its table, and its images on disk.
pub struct Dataset {
    pub dir: PathBuf,
    pub meta: DatasetMeta,
    pub table: DataFrame,
}

impl Dataset {
    /// Opens a dataset folder and checks that its three files agree.
    pub fn open(dir: &Path) -> Result<Dataset, DatasetError> {
        let bad = |path: PathBuf, message: String| DatasetError::Table { path, message };
        let meta_path = dir.join("meta.json");
        let bytes = std::fs::read(&meta_path).map_err(|source| DatasetError::Io { path: meta_path.clone(), source })?;
        let meta: DatasetMeta = serde_json::from_slice(&bytes)
            .map_err(|e| bad(meta_path.clone(), format!("not a dataset meta.json: {e}")))?;
        let table_path = dir.join("table.csv");
        let table = read_csv(&table_path)?;
        if table.height() != meta.count {
            return Err(bad(
                table_path,
                format!("{} rows where meta.json declares {} images", table.height(), meta.count),
            ));
        }
        let images = crate::npy::NpyReader::<u8>::open(&dir.join("images.npy"))?;
        let expected = vec![meta.count, meta.channels, meta.height, meta.width];
        if images.shape != expected {
            return Err(bad(
                dir.join("images.npy"),
                format!("shape {:?} where meta.json declares {expected:?}", images.shape),
            ));
        }
        Ok(Dataset { dir: dir.to_path_buf(), meta, table })
    }

    fn column_err(&self, e: polars::error::PolarsError) -> DatasetError {
        DatasetError::Table { path: self.dir.join("table.csv"), message: e.to_string() }
    }

    /// A string column.
    pub fn strings(&self, name: &str) -> Result<Vec<String>, DatasetError> {
        let col = self.table.column(name).map_err(|e| self.column_err(e))?;
        let col = col.cast(&polars::prelude::DataType::String).map_err(|e| self.column_err(e))?;
        let ca = col.str().map_err(|e| self.column_err(e))?;
        Ok(ca.iter().map(|v| v.unwrap_or_default().to_string()).collect())
    }

    /// A numeric column as f64 (missing values as NaN).
    pub fn numbers(&self, name: &str) -> Result<Vec<f64>, DatasetError> {
        let col = self.table.column(name).map_err(|e| self.column_err(e))?;
        let col = col.cast(&polars::prelude::DataType::Float64).map_err(|e| self.column_err(e))?;
        let ca = col.f64().map_err(|e| self.column_err(e))?;
        Ok(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }

    pub fn ids(&self) -> Result<Vec<String>, DatasetError> {
        self.strings("image")
    }

    /// Row numbers of a split, or an error naming the splits there are.
    pub fn split_rows(&self, split: &str) -> Result<Vec<usize>, DatasetError> {
        let splits = self.strings("split")?;
        let rows: Vec<usize> = splits.iter().enumerate().filter(|(_, s)| *s == split).map(|(i, _)| i).collect();
        if rows.is_empty() && !self.meta.splits.iter().any(|(s, _)| s == split) {
            let names: Vec<&str> = self.meta.splits.iter().map(|(s, _)| s.as_str()).collect();
            return Err(DatasetError::Table {
                path: self.dir.join("table.csv"),
                message: format!("no split `{split}` (splits: {})", names.join(", ")),
            });
        }
        Ok(rows)
    }

    /// The operational domain a split's parameters were drawn from, or an error saying why there is none.
    pub fn domain(&self, split: &str) -> Result<&crate::domain::Domain, DatasetError> {
        self.meta.domains.get(split).ok_or_else(|| DatasetError::Table {
            path: self.dir.join("meta.json"),
            message: if self.meta.domains.is_empty() {
                format!(
                    "records no split's declared distribution (it comes from `{}`; only a simulate stage's \
                     datasets, made by this version of hudd, do)",
                    self.meta.source
                )
            } else {
                let names: Vec<&str> = self.meta.domains.keys().map(String::as_str).collect();
                format!("records no declared distribution for split `{split}` (splits: {})", names.join(", "))
            },
        })
    }

    /// Class indices of every row (classification datasets).
    pub fn class_labels(&self) -> Result<Vec<i64>, DatasetError> {
        Ok(self.numbers("label_index")?.into_iter().map(|v| v as i64).collect())
    }

    /// Regression targets of every row, `targets` values each.
    pub fn targets(&self) -> Result<Vec<Vec<f32>>, DatasetError> {
        let Target::Regression { targets } = &self.meta.target else { return Ok(Vec::new()) };
        let cols: Vec<Vec<f64>> =
            targets.iter().map(|t| self.numbers(&format!("target_{t}"))).collect::<Result<_, _>>()?;
        Ok((0..self.meta.count).map(|i| cols.iter().map(|c| c[i] as f32).collect()).collect())
    }

    /// The images of the given rows, uint8 N×C×H×W, in the given order.
    pub fn images(&self, rows: &[usize]) -> Result<Vec<u8>, DatasetError> {
        let mut reader = crate::npy::NpyReader::<u8>::open(&self.dir.join("images.npy"))?;
        let mut out = Vec::with_capacity(rows.len() * reader.row_len());
        // Contiguous runs are read in one go.
        let mut i = 0;
        while i < rows.len() {
            let mut j = i + 1;
            while j < rows.len() && rows[j] == rows[j - 1] + 1 {
                j += 1;
            }
            out.extend(reader.read_rows(rows[i], j - i)?);
            i = j;
        }
        Ok(out)
    }

    /// Per split (in the table's order of first appearance): its images' content hashes (blake3 of each image's
    /// pixels, 16 bytes), in row order. What independence checks compare, by content rather than by id.
    pub fn image_hashes_by_split(&self) -> Result<Vec<SplitHashes>, DatasetError> {
        let splits = self.strings("split")?;
        let mut reader = crate::npy::NpyReader::<u8>::open(&self.dir.join("images.npy"))?;
        let width = reader.row_len();
        let mut out: Vec<SplitHashes> = Vec::new();
        let mut start = 0;
        while start < self.meta.count {
            let count = (self.meta.count - start).min(1024);
            let pixels = reader.read_rows(start, count)?;
            for (i, image) in pixels.chunks(width.max(1)).enumerate() {
                let hash: [u8; 16] = blake3::hash(image).as_bytes()[..16].try_into().expect("16 bytes");
                let split = &splits[start + i];
                match out.iter_mut().find(|(s, _)| s == split) {
                    Some((_, hashes)) => hashes.push(hash),
                    None => out.push((split.clone(), vec![hash])),
                }
            }
            start += count;
        }
        Ok(out)
    }

    /// The parameter columns (simulator parameters) present in the table.
    pub fn param_names(&self) -> Vec<String> {
        self.meta.params.iter().map(|p| p.name.clone()).collect()
    }

    /// Writes the given rows as a new dataset artefact in `dir` (same meta, counts and splits recomputed).
    pub fn write_subset(&self, rows: &[usize], dir: &Path) -> Result<DatasetMeta, DatasetError> {
        self.write_subset_with(rows, dir, Vec::new())
    }

    /// [`Dataset::write_subset`] with extra table columns (one value per written row), replacing any of the same name.
    pub fn write_subset_with(
        &self,
        rows: &[usize],
        dir: &Path,
        extra: Vec<Column>,
    ) -> Result<DatasetMeta, DatasetError> {
        self.write_subset_changed(rows, dir, extra, |_, _| {})
    }

    /// [`Dataset::write_subset_with`], each image (C×H×W) first given to `change` with its row to change in place.
    pub fn write_subset_changed(
        &self,
        rows: &[usize],
        dir: &Path,
        extra: Vec<Column>,
        mut change: impl FnMut(usize, &mut [u8]),
    ) -> Result<DatasetMeta, DatasetError> {
        std::fs::create_dir_all(dir).map_err(|source| DatasetError::Io { path: dir.to_path_buf(), source })?;
        let shape = [self.meta.channels, self.meta.height, self.meta.width];
        let mut writer = crate::npy::NpyWriter::<u8>::create(&dir.join("images.npy"), &shape)?;
        for chunk in rows.chunks(512) {
            let mut images = self.images(chunk)?;
            for (&row, img) in chunk.iter().zip(images.chunks_exact_mut(shape.iter().product())) {
                change(row, img);
            }
            writer.append(&images)?;
        }
        writer.finish()?;
        let idx: Vec<polars::prelude::IdxSize> = rows.iter().map(|&r| r as polars::prelude::IdxSize).collect();
        let idx = polars::prelude::IdxCa::from_vec("idx".into(), idx);
        let mut table = self.table.take(&idx).map_err(|e| self.column_err(e))?;
        for column in extra {
            table.with_column(column).map_err(|e| self.column_err(e))?;
        }
        write_csv(&dir.join("table.csv"), &mut table)?;
        let splits_all = self.strings("split")?;
        let mut meta = self.meta.clone();
        meta.count = rows.len();
        meta.splits = Vec::new();
        for &r in rows {
            count_split(&mut meta.splits, &splits_all[r]);
        }
        let meta_path = dir.join("meta.json");
        std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).expect("meta serialises"))
            .map_err(|source| DatasetError::Io { path: meta_path, source })?;
        Ok(meta)
    }
}

/// Counts one more image of `split`, keeping splits in the order they first appear.
pub fn count_split(splits: &mut Vec<(String, usize)>, split: &str) {
    match splits.iter_mut().find(|(name, _)| name == split) {
        Some((_, n)) => *n += 1,
        None => splits.push((split.to_string(), 1)),
    }
}

/// Writes a copy of a CSV table as Parquet (for readers such as pandas, polars or DuckDB).
pub fn csv_to_parquet(csv: &Path, parquet: &Path) -> Result<(), DatasetError> {
    use polars::prelude::ParquetWriter;
    let mut df = read_csv(csv)?;
    let file = File::create(parquet).map_err(|source| DatasetError::Io { path: parquet.to_path_buf(), source })?;
    ParquetWriter::new(file)
        .finish(&mut df)
        .map(|_| ())
        .map_err(|e| DatasetError::Table { path: parquet.to_path_buf(), message: e.to_string() })
}

/// Reads a CSV table with a header row.
pub fn read_csv(path: &Path) -> Result<DataFrame, DatasetError> {
    use polars::prelude::{CsvReadOptions, SerReader};
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(10_000))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| DatasetError::Table { path: path.to_path_buf(), message: e.to_string() })
}

impl From<polars::error::PolarsError> for crate::engine::stage::StageError {
    fn from(e: polars::error::PolarsError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}
