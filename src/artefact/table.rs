//! The one path for row tables and JSON files between stages: CSV through the `csv` crate (RFC 4180: a field is
//! quoted when it holds a comma, a quote or a line break), rows as serde types, errors that name the file and line.
//!
//! A table type implements [`Row`], which names its columns, so an empty table still has its header. Floats are
//! written as Rust's `Display` writes them ([`display`]: shortest round-trip text, never an exponent), which is
//! what every table has held since the first release, so the bytes of existing artefacts do not change.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A row that does not fit its table's schema; `line` counts from 1 and includes the header.
    #[error("{path}:{line}: {message}")]
    Row { path: PathBuf, line: u64, message: String },
    #[error("{path}: the header is `{found}`, expected `{expected}`")]
    Header { path: PathBuf, found: String, expected: String },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {message}")]
    Parquet { path: PathBuf, message: String },
}

impl From<TableError> for crate::engine::stage::StageError {
    fn from(e: TableError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// A row of a table: a serde struct whose fields are the table's columns, in order.
pub trait Row: Serialize + DeserializeOwned {
    /// The column names, as the header writes them.
    const COLUMNS: &'static [&'static str];
}

/// Writes a value with its `Display` text (for floats: the shortest text that reads back the same, no exponent).
pub fn display<T: Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Writes an optional float as `display` does, and nothing for none.
pub fn option_display<S: serde::Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_str(""),
    }
}

/// Writes a float with six decimals.
pub fn six_decimals<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{value:.6}"))
}

/// A whole table as CSV text: the header, then one line per row.
pub fn to_csv<R: Row>(rows: &[R]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    w.write_record(R::COLUMNS)?;
    for row in rows {
        w.serialize(row)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// Writes a table to `path`.
pub fn write<R: Row>(path: &Path, rows: &[R]) -> Result<(), TableError> {
    let bytes =
        to_csv(rows).map_err(|e| TableError::Row { path: path.to_path_buf(), line: 0, message: e.to_string() })?;
    std::fs::write(path, bytes).map_err(|source| TableError::Io { path: path.to_path_buf(), source })
}

/// Writes a table to `path` and its Parquet copy into `parquet_dir` (same stem), for analysis tools.
pub fn write_with_parquet<R: Row>(path: &Path, parquet_dir: &Path, rows: &[R]) -> Result<(), TableError> {
    write(path, rows)?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let parquet = parquet_dir.join(format!("{stem}.parquet"));
    crate::dataset::csv_to_parquet(path, &parquet)
        .map_err(|e| TableError::Parquet { path: parquet.clone(), message: e.to_string() })
}

/// Reads a table written by [`write`] (or by a person, as a labelling sheet): the header must name the row type's
/// columns in order; a row that does not fit names its line.
pub fn read<R: Row>(path: &Path) -> Result<Vec<R>, TableError> {
    let bytes = std::fs::read(path).map_err(|source| TableError::Io { path: path.to_path_buf(), source })?;
    parse(path, &bytes)
}

/// Parses CSV text as a table of `R` (`path` only names the source in errors).
pub fn parse<R: Row>(path: &Path, bytes: &[u8]) -> Result<Vec<R>, TableError> {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let row_error = |e: csv::Error| row_error(path, e);
    let header = r.headers().map_err(row_error)?.clone();
    if header.iter().ne(R::COLUMNS.iter().copied()) {
        return Err(TableError::Header {
            path: path.to_path_buf(),
            found: header.iter().collect::<Vec<_>>().join(","),
            expected: R::COLUMNS.join(","),
        });
    }
    r.deserialize().map(|row| row.map_err(row_error)).collect()
}

/// A csv error as a table error naming the file and line.
pub(crate) fn row_error(path: &Path, e: csv::Error) -> TableError {
    TableError::Row {
        path: path.to_path_buf(),
        line: e.position().map_or(0, |p| p.line()),
        message: match e.kind() {
            csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
            _ => e.to_string(),
        },
    }
}

/// Reads a JSON file of an artefact.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, TableError> {
    let bytes = std::fs::read(path).map_err(|source| TableError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| TableError::Json { path: path.to_path_buf(), source })
}

/// Writes a JSON file of an artefact, pretty-printed.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TableError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|source| TableError::Json { path: path.to_path_buf(), source })?;
    std::fs::write(path, bytes).map_err(|source| TableError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Member {
        image: String,
        cluster: usize,
        #[serde(serialize_with = "display")]
        distance: f64,
    }

    impl Row for Member {
        const COLUMNS: &'static [&'static str] = &["image", "cluster", "distance"];
    }

    #[test]
    fn ids_with_commas_quotes_newlines_and_accents_round_trip() {
        let rows = vec![
            Member { image: "img,12.png".into(), cluster: 1, distance: 0.5 },
            Member { image: "say \"cheese\".png".into(), cluster: 2, distance: 1e-7 },
            Member { image: "two\nlines.png".into(), cluster: 3, distance: 1.0 },
            Member { image: "é304.png".into(), cluster: 4, distance: 12345.678 },
        ];
        let bytes = to_csv(&rows).unwrap();
        assert_eq!(parse::<Member>(Path::new("t.csv"), &bytes).unwrap(), rows);
    }

    #[test]
    fn floats_are_written_as_display_writes_them() {
        let rows = vec![
            Member { image: "a".into(), cluster: 1, distance: 1.0 },
            Member { image: "b".into(), cluster: 2, distance: 1e-7 },
        ];
        let text = String::from_utf8(to_csv(&rows).unwrap()).unwrap();
        assert_eq!(text, "image,cluster,distance\na,1,1\nb,2,0.0000001\n");
    }

    #[test]
    fn an_empty_table_keeps_its_header() {
        assert_eq!(to_csv::<Member>(&[]).unwrap(), b"image,cluster,distance\n");
    }

    #[test]
    fn a_bad_row_names_its_line_and_a_wrong_header_both_headers() {
        let bad = b"image,cluster,distance\na,1,0.5\nb,two,0.5\n";
        let e = parse::<Member>(Path::new("x.csv"), bad).unwrap_err().to_string();
        assert!(e.starts_with("x.csv:3:"), "{e}");
        let e = parse::<Member>(Path::new("x.csv"), b"image,distance\n").unwrap_err().to_string();
        assert!(e.contains("`image,distance`") && e.contains("`image,cluster,distance`"), "{e}");
    }
}
