//! NumPy `.npy` files (format 1.0, C order): a streaming writer for arrays built batch by batch, and a reader.
//!
//! Written by hand because the crates that exist write whole in-memory arrays, while heatmaps and image sets are
//! appended as batches complete so memory stays bounded. Python opens the files with `numpy.load`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Element types we store.
pub trait Element: Copy + Default + 'static {
    /// NumPy's dtype string, little-endian.
    const DESCR: &'static str;
    const SIZE: usize;
    fn write_le(values: &[Self], out: &mut Vec<u8>);
    fn read_le(bytes: &[u8]) -> Self;
}

impl Element for u8 {
    const DESCR: &'static str = "|u1";
    const SIZE: usize = 1;
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        out.extend_from_slice(values);
    }
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0]
    }
}

impl Element for f32 {
    const DESCR: &'static str = "<f4";
    const SIZE: usize = 4;
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn read_le(bytes: &[u8]) -> Self {
        f32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"))
    }
}

impl Element for f64 {
    const DESCR: &'static str = "<f8";
    const SIZE: usize = 8;
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn read_le(bytes: &[u8]) -> Self {
        f64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a .npy file this reader understands: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: {wrote} rows written where {expected} were declared")]
    RowCount { path: PathBuf, wrote: usize, expected: usize },
}

impl From<NpyError> for crate::engine::stage::StageError {
    fn from(e: NpyError) -> Self {
        crate::engine::stage::StageError::artefact(e)
    }
}

/// Header with room for the final shape: the header is rewritten in place when the writer finishes.
fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + header length (2) + dict, padded with spaces to a multiple of 64, ending in \n.
    // A fixed 64-byte slack lets the row count grow from 0 to any size without moving the data.
    let unpadded = 10 + dict.len() + 1;
    let total = (unpadded + 64).div_ceil(64) * 64;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Appends rows of shape `row_shape` to a `.npy` file; the row count is fixed up when finished.
pub struct NpyWriter<T: Element> {
    path: PathBuf,
    file: BufWriter<File>,
    row_shape: Vec<usize>,
    row_len: usize,
    rows: usize,
    header_len: usize,
    buf: Vec<u8>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Element> NpyWriter<T> {
    pub fn create(path: &Path, row_shape: &[usize]) -> Result<Self, NpyError> {
        let io = |source| NpyError::Io { path: path.to_path_buf(), source };
        let mut file = BufWriter::new(File::create(path).map_err(io)?);
        let mut shape = vec![0];
        shape.extend_from_slice(row_shape);
        let h = header(T::DESCR, &shape);
        file.write_all(&h).map_err(io)?;
        Ok(NpyWriter {
            path: path.to_path_buf(),
            file,
            row_shape: row_shape.to_vec(),
            row_len: row_shape.iter().product(),
            rows: 0,
            header_len: h.len(),
            buf: Vec::new(),
            _t: std::marker::PhantomData,
        })
    }

    /// Appends whole rows; `values.len()` must be a multiple of the row length.
    pub fn append(&mut self, values: &[T]) -> Result<(), NpyError> {
        assert!(
            self.row_len == 0 || values.len().is_multiple_of(self.row_len),
            "append takes whole rows of {} values, got {}",
            self.row_len,
            values.len()
        );
        self.buf.clear();
        T::write_le(values, &mut self.buf);
        self.file.write_all(&self.buf).map_err(|source| NpyError::Io { path: self.path.clone(), source })?;
        self.rows += values.len().checked_div(self.row_len).unwrap_or(0);
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the final shape into the header and flushes.
    pub fn finish(mut self) -> Result<usize, NpyError> {
        let io = |source| NpyError::Io { path: self.path.clone(), source };
        let mut shape = vec![self.rows];
        shape.extend_from_slice(&self.row_shape);
        let h = header(T::DESCR, &shape);
        if h.len() != self.header_len {
            return Err(NpyError::Format { path: self.path.clone(), reason: "header outgrew its slack".into() });
        }
        self.file.flush().map_err(io)?;
        let mut file =
            self.file.into_inner().map_err(|e| NpyError::Io { path: self.path.clone(), source: e.into_error() })?;
        file.seek(SeekFrom::Start(0)).map_err(|source| NpyError::Io { path: self.path.clone(), source })?;
        file.write_all(&h).map_err(|source| NpyError::Io { path: self.path.clone(), source })?;
        file.sync_data().map_err(|source| NpyError::Io { path: self.path.clone(), source })?;
        Ok(self.rows)
    }
}

/// Writes a whole array at once.
pub fn write<T: Element>(path: &Path, shape: &[usize], values: &[T]) -> Result<(), NpyError> {
    let mut w = NpyWriter::<T>::create(path, &shape[1..])?;
    w.append(values)?;
    let rows = w.finish()?;
    if rows != shape[0] {
        return Err(NpyError::RowCount { path: path.to_path_buf(), wrote: rows, expected: shape[0] });
    }
    Ok(())
}

/// Reads rows `[start, start + count)` of a `.npy` file, or everything with `read_all`.
pub struct NpyReader<T: Element> {
    path: PathBuf,
    file: BufReader<File>,
    pub shape: Vec<usize>,
    data_start: u64,
    _t: std::marker::PhantomData<T>,
}

impl<T: Element> NpyReader<T> {
    pub fn open(path: &Path) -> Result<Self, NpyError> {
        let io = |source| NpyError::Io { path: path.to_path_buf(), source };
        let bad = |reason: &str| NpyError::Format { path: path.to_path_buf(), reason: reason.to_string() };
        let mut file = BufReader::new(File::open(path).map_err(io)?);
        let mut pre = [0u8; 10];
        file.read_exact(&mut pre).map_err(|_| bad("shorter than a header"))?;
        if &pre[..6] != b"\x93NUMPY" {
            return Err(bad("no NUMPY magic"));
        }
        let (len, skip) = match pre[6] {
            1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10),
            2 | 3 => {
                let mut more = [0u8; 2];
                file.read_exact(&mut more).map_err(|_| bad("truncated header"))?;
                (u32::from_le_bytes([pre[8], pre[9], more[0], more[1]]) as usize, 12)
            }
            v => return Err(bad(&format!("format version {v}"))),
        };
        let mut dict = vec![0u8; len];
        file.read_exact(&mut dict).map_err(|_| bad("truncated header"))?;
        let dict = String::from_utf8_lossy(&dict).to_string();
        if !dict.contains(&format!("'descr': '{}'", T::DESCR)) {
            return Err(bad(&format!("dtype is not {} ({})", T::DESCR, dict.trim())));
        }
        if dict.contains("'fortran_order': True") {
            return Err(bad("Fortran order"));
        }
        let shape_text =
            dict.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or_else(|| bad("no shape"))?;
        let shape: Vec<usize> = shape_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| bad("shape is not a tuple of integers")))
            .collect::<Result<_, _>>()?;
        let data_start = (skip + len) as u64;
        let expected = data_start + (shape.iter().product::<usize>() * T::SIZE) as u64;
        let actual = std::fs::metadata(path).map_err(io)?.len();
        if actual < expected {
            return Err(bad(&format!("truncated: {actual} bytes where the shape needs {expected}")));
        }
        Ok(NpyReader { path: path.to_path_buf(), file, shape, data_start, _t: std::marker::PhantomData })
    }

    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    pub fn read_rows(&mut self, start: usize, count: usize) -> Result<Vec<T>, NpyError> {
        let io = |source| NpyError::Io { path: self.path.clone(), source };
        let row_bytes = self.row_len() * T::SIZE;
        self.file.seek(SeekFrom::Start(self.data_start + (start * row_bytes) as u64)).map_err(io)?;
        let mut bytes = vec![0u8; count * row_bytes];
        self.file.read_exact(&mut bytes).map_err(|source| NpyError::Io { path: self.path.clone(), source })?;
        Ok(bytes.chunks_exact(T::SIZE).map(T::read_le).collect())
    }

    /// Columns `[start, start + width)` of every row (the row flattened), `rows × width` row-major: one seek and
    /// read per row, for streaming a wide array through memory in column chunks.
    pub fn read_columns(&mut self, start: usize, width: usize) -> Result<Vec<T>, NpyError> {
        let io = |source| NpyError::Io { path: self.path.clone(), source };
        let row_bytes = self.row_len() * T::SIZE;
        let mut bytes = vec![0u8; width * T::SIZE];
        let mut out = Vec::with_capacity(self.rows() * width);
        for row in 0..self.rows() {
            let at = self.data_start + (row * row_bytes + start * T::SIZE) as u64;
            self.file.seek(SeekFrom::Start(at)).map_err(io)?;
            self.file.read_exact(&mut bytes).map_err(io)?;
            out.extend(bytes.chunks_exact(T::SIZE).map(T::read_le));
        }
        Ok(out)
    }

    pub fn read_all(&mut self) -> Result<Vec<T>, NpyError> {
        let rows = self.rows();
        self.read_rows(0, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_array_reads_back_with_its_final_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let mut w = NpyWriter::<f32>::create(&path, &[2, 3]).unwrap();
        w.append(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        w.append(&[6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0]).unwrap();
        assert_eq!(w.finish().unwrap(), 3);
        let mut r = NpyReader::<f32>::open(&path).unwrap();
        assert_eq!(r.shape, vec![3, 2, 3]);
        assert_eq!(r.read_rows(1, 1).unwrap(), vec![6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(r.read_all().unwrap().len(), 18);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() - 18 * 4) % 64, 0, "header is padded to 64 bytes");
        assert!(String::from_utf8_lossy(&bytes[..128]).contains("'shape': (3, 2, 3)"));
    }

    #[test]
    fn a_truncated_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.npy");
        write::<u8>(&path, &[4, 2], &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = NpyReader::<u8>::open(&path).err().unwrap().to_string();
        assert!(err.contains("t.npy") && err.contains("truncated"), "{err}");
        let err = NpyReader::<f32>::open(&dir.path().join("t.npy")).err().unwrap().to_string();
        assert!(err.contains("dtype is not <f4"), "{err}");
    }
}
