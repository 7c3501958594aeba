//! The dataset artefact every model stage reads: `images.npy` (uint8, N×C×H×W), `table.csv` and `meta.json`.
//!
//! The table has one row per image, in the images' order: `image` (id), `split`, the label (`label` and
//! `label_index` for classification, `target_<name>` columns for regression), then every simulator parameter.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::{Column, CsvWriter, DataFrame, SerWriter};
use serde::{Deserialize, Serialize};

use crate::npy::{NpyError, NpyWriter};
use crate::sim::{Label, ParamKind, ParamSpec, Target};

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
    /// `real`, `angle`, `categorical` or `bool`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl ParamInfo {
    pub fn of(spec: &ParamSpec) -> ParamInfo {
        let (unit, values) = match spec.kind {
            ParamKind::Real { unit, .. } => (Some(unit.to_string()), Vec::new()),
            ParamKind::Angle { .. } => (Some("degrees".to_string()), Vec::new()),
            ParamKind::Categorical(v) => (None, v.iter().map(|s| s.to_string()).collect()),
            ParamKind::Bool => (None, vec!["false".into(), "true".into()]),
        };
        ParamInfo { name: spec.name.to_string(), kind: spec.kind_name().to_string(), unit, values }
    }
}

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

/// Writes a dataset artefact image by image.
pub struct DatasetWriter {
    dir: PathBuf,
    images: NpyWriter<u8>,
    meta: DatasetMeta,
    specs: &'static [ParamSpec],
    ids: Vec<String>,
    splits: Vec<String>,
    labels: Vec<Label>,
    values: Vec<Vec<f64>>,
    chw: Vec<u8>,
}

impl DatasetWriter {
    /// Starts a dataset in `dir` (created); `meta.count` and `meta.splits` are filled in as images arrive.
    pub fn create(dir: &Path, meta: DatasetMeta, specs: &'static [ParamSpec]) -> Result<Self, DatasetError> {
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
    pub fn push(&mut self, id: String, split: &str, rgb: &[u8], label: Label, values: Vec<f64>) -> Result<(), DatasetError> {
        self.chw.clear();
        to_chw(rgb, self.meta.width, self.meta.channels, &mut self.chw);
        self.images.append(&self.chw)?;
        self.ids.push(id);
        self.splits.push(split.to_string());
        self.labels.push(label);
        self.values.push(values);
        match self.meta.splits.last_mut() {
            Some((name, n)) if name == split => *n += 1,
            _ => self.meta.splits.push((split.to_string(), 1)),
        }
        Ok(())
    }

    /// Writes `table.csv` and `meta.json` and closes `images.npy`.
    pub fn finish(mut self) -> Result<DatasetMeta, DatasetError> {
        self.meta.count = self.images.finish()?;
        let table_path = self.dir.join("table.csv");
        let table_err = |e: polars::error::PolarsError| DatasetError::Table { path: table_path.clone(), message: e.to_string() };
        let mut df = build_table(&self.ids, Some(&self.splits), &self.meta.target, &self.labels, self.specs, &self.values)
            .map_err(table_err)?;
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
    specs: &[ParamSpec],
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
                let v: Vec<String> = values.iter().map(|row| spec.show(row[k])).collect();
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
