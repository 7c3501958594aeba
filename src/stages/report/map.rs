//! The pictures of the clustering itself: a map of every failing image (its distances at the clustered layer laid
//! out in two dimensions by classical multidimensional scaling, a point per image coloured by its cluster, each
//! cluster's medoid ringed and numbered, an image's id, cluster and picture on hover), and the curve over k at that
//! layer with the chosen k (the cluster stage's own `knee.svg`). Drawn only: `evidence.json` holds the clusters, not
//! the coordinates.

use std::collections::BTreeMap;

use crate::artefact::clusters::Clusters;
use crate::cluster::map::classical_mds;
use crate::dataset::Dataset;
use crate::engine::stage::StageError;
use crate::media::svg::Atlas;
use crate::media::svg::{MapPoint, scatter_map};
use crate::npy::NpyReader;

/// The most pixels the map's thumbnails hold together: a large clustering's thumbnails are shrunk to it (the
/// quickstart's 196 failures of 32×32 keep their size; 2,625 of them are shown at 19×19).
const ATLAS_PIXELS: usize = 1_000_000;

/// The map and the curve over k of a clustering, each when its files are there (a clustering of no layer, or of
/// one image, has neither).
pub(super) struct Pictures {
    pub(super) map: Option<String>,
    /// Share of the distances' total variance (the trace of B) that the map's two axes hold.
    pub(super) shown: Option<f64>,
    pub(super) knee: Option<String>,
}

/// The map and the curve over k of `folder`'s clustering; with the images' `data`, each point shows its image on
/// hover.
pub(super) fn pictures(folder: &Clusters, data: Option<&Dataset>) -> Result<Pictures, StageError> {
    let none = Pictures { map: None, shown: None, knee: None };
    let Some(layer) = folder.summary()?.layer else { return Ok(none) };
    let dir = folder.layer(&layer)?;
    let knee = std::fs::read_to_string(dir.knee_path()).ok();
    let path = dir.distances_path();
    if !path.is_file() {
        return Ok(Pictures { knee, ..none });
    }
    let order = dir.members()?;
    let mut reader = NpyReader::<f32>::open(&path)?;
    let n = reader.rows();
    if n < 3 || order.len() != n || reader.row_len() != n {
        return Ok(Pictures { knee, ..none });
    }
    let distances = reader.read_rows(0, n)?;
    let map = classical_mds(&distances, n);
    // The total variance: B's trace, the mean squared distance to the centroid times n.
    let squared: f64 = distances.iter().map(|&d| f64::from(d) * f64::from(d)).sum();
    let trace = squared / (2.0 * n as f64);
    let shown = (trace > 0.0).then(|| (map.eigenvalues[0].max(0.0) + map.eigenvalues[1].max(0.0)) / trace);
    // The report's clusters (numbered by decreasing size) and medoids, by image.
    let cluster_of: BTreeMap<String, usize> = folder.members()?.into_iter().map(|m| (m.image, m.cluster)).collect();
    let medoids: Vec<String> = folder.rows()?.into_iter().map(|r| r.medoid).collect();
    let points: Vec<MapPoint> = order
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let group = cluster_of.get(&m.image).copied().unwrap_or(0);
            let representative = medoids.contains(&m.image);
            let role = if representative { ", its medoid" } else { "" };
            MapPoint {
                x: map.x[i],
                y: map.y[i],
                group,
                text: format!("{} · cluster {group}{role}", m.image),
                representative,
            }
        })
        .collect();
    let ids: Vec<&str> = order.iter().map(|m| m.image.as_str()).collect();
    let atlas = data.map(|ds| atlas(ds, &ids)).transpose()?.flatten();
    let title = format!("The {n} failures at layer {layer}, by their distances (classical MDS)");
    Ok(Pictures { map: Some(scatter_map(&title, &points, atlas.as_ref())), shown, knee })
}

/// The images `ids` as one PNG of tiles, in their order, shrunk (by a triangle filter, keeping their aspect) so
/// that all of them hold at most [`ATLAS_PIXELS`]. `None` when an id is not in the dataset (a clustering of other
/// images than the report's data).
fn atlas(ds: &Dataset, ids: &[&str]) -> Result<Option<Atlas>, StageError> {
    let row_of: BTreeMap<String, usize> = ds.ids()?.into_iter().enumerate().map(|(i, id)| (id, i)).collect();
    let Some(rows) = ids.iter().map(|id| row_of.get(*id).copied()).collect::<Option<Vec<usize>>>() else {
        return Ok(None);
    };
    let (w, h, ch) = (ds.meta.width, ds.meta.height, ds.meta.channels);
    let shrink = (ATLAS_PIXELS as f64 / (ids.len() * w * h).max(1) as f64).sqrt().min(1.0);
    let (tw, th) = (((w as f64 * shrink) as usize).max(1), ((h as f64 * shrink) as usize).max(1));
    let columns = (ids.len() as f64).sqrt().ceil().max(1.0) as usize;
    let mut sheet = image::RgbImage::new((columns * tw) as u32, (ids.len().div_ceil(columns) * th) as u32);
    let chw = ds.images(&rows)?;
    for (i, img) in chw.chunks_exact(ch * w * h).enumerate() {
        let rgb = crate::media::chw_to_rgb(img, ch, w * h);
        let full = image::RgbImage::from_raw(w as u32, h as u32, rgb)
            .ok_or_else(|| StageError::failed(format!("the map's thumbnails: an image is not {w}×{h}")))?;
        let tile = if (tw, th) == (w, h) {
            full
        } else {
            image::imageops::resize(&full, tw as u32, th as u32, image::imageops::FilterType::Triangle)
        };
        image::imageops::replace(&mut sheet, &tile, ((i % columns) * tw) as i64, ((i / columns) * th) as i64);
    }
    let mut png = Vec::new();
    sheet
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| StageError::failed(format!("the map's thumbnails: {e}")))?;
    Ok(Some(Atlas { png, tile_w: tw, tile_h: th, columns }))
}
