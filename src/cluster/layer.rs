//! One layer's images read for clustering: their features at the layer (HUDD's flat heatmaps or per-channel
//! totals, centred on the class or not), streamed from the layer's `.npy` file into their Euclidean distances, with
//! the vectors kept where they are small (per-channel totals), for PCA.

use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::Matrix;
use super::features::{Features, centre_by_class, channel_totals};
use super::pipeline::{Distances, Pipeline, Points};
use crate::npy::{NpyError, NpyReader};

/// How each image is described at a layer before distances: its features, centred on its class or not.
#[derive(Debug, Clone, Copy)]
pub struct Representation<'a> {
    pub features: Features,
    /// Each image's class (dense indices), to centre on; none: not centred.
    pub classes: Option<&'a [usize]>,
}

impl Representation<'_> {
    /// HUDD's: every value of the layer, as it is.
    pub const HUDD: Representation<'static> = Representation { features: Features::Flat, classes: None };
}

/// Why a layer's file cannot be clustered: each names the file, the layer or the image.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{}: {rows} rows where index.csv lists {images} images", path.display())]
    RowCount { path: PathBuf, rows: usize, images: usize },
    #[error("layer `{layer}`: the heatmap of image {image} holds {value} (at element {element})")]
    NotFinite { layer: String, image: String, value: f32, element: usize },
}

/// One layer's images: the distances between their representations and, for per-channel totals, the vectors
/// themselves (flat heatmaps are too large to keep; their distances are streamed).
#[derive(Debug, Clone)]
pub struct Layer {
    pub distances: Matrix,
    pub vectors: Option<Array2<f32>>,
}

impl Layer {
    /// What the clustering pipeline reads.
    pub fn points(&self) -> Points<'_> {
        Points { distances: Distances::Of(&self.distances), vectors: self.vectors.as_ref().map(|v| v.view()) }
    }

    /// The partition of a stability subset (`rows` of the layer, in increasing order), reclustered by `pipeline`:
    /// the subset's vectors are the layer's rows, so PCA refits on the subset as the pipeline would; their distances
    /// are restricted to the subset only if the pipeline reads them.
    pub fn recluster(&self, rows: &[usize], pipeline: &Pipeline, max_k: usize) -> Vec<usize> {
        let vectors = self.vectors.as_ref().map(|v| v.select(ndarray::Axis(0), rows));
        let points =
            Points { distances: Distances::Among(&self.distances, rows), vectors: vectors.as_ref().map(|v| v.view()) };
        super::pipeline::labels(points, pipeline, max_k)
    }
}

/// Reads layer `layer` of `ids` (one row each, in order) from `path` in the representation asked for.
pub fn read(path: &Path, layer: &str, ids: &[String], representation: Representation<'_>) -> Result<Layer, LayerError> {
    let mut reader = NpyReader::<f32>::open(path)?;
    let n = ids.len();
    if reader.rows() != n {
        return Err(LayerError::RowCount { path: path.to_path_buf(), rows: reader.rows(), images: n });
    }
    // `values` holds `width` columns from `column` on, of rows from `row` on.
    let finite =
        |values: &[f32], width: usize, row: usize, column: usize| match values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(LayerError::NotFinite {
                layer: layer.into(),
                image: ids[row + i / width].clone(),
                value: values[i],
                element: column + i % width,
            }),
            None => Ok(()),
        };
    let d = reader.row_len();
    match representation.features {
        Features::Flat => {
            let distances = super::distances(n, d, |start, width| {
                let mut values = reader.read_columns(start, width)?;
                finite(&values, width, 0, start)?;
                if let Some(classes) = representation.classes {
                    centre_by_class(&mut values, width, classes);
                }
                Ok::<_, LayerError>(values)
            })?;
            Ok(Layer { distances, vectors: None })
        }
        Features::Channels => {
            let channels = reader.shape.get(1).copied().unwrap_or(1).max(1);
            let mut totals = Vec::with_capacity(n * channels);
            const BATCH: usize = 64;
            for start in (0..n).step_by(BATCH) {
                let rows = reader.read_rows(start, BATCH.min(n - start))?;
                finite(&rows, d, start, 0)?;
                for row in rows.chunks_exact(d) {
                    totals.extend(channel_totals(row, channels));
                }
            }
            if let Some(classes) = representation.classes {
                centre_by_class(&mut totals, channels, classes);
            }
            let distances = super::distances_of(&totals, n, channels);
            let vectors = Array2::from_shape_vec((n, channels), totals).expect("n rows of the layer's channels");
            Ok(Layer { distances, vectors: Some(vectors) })
        }
    }
}
