//! The pictures of the clustering itself: a map of every failing image (its distances at the clustered layer laid
//! out in two dimensions by classical multidimensional scaling, a point per image coloured by its cluster, each
//! cluster's medoid ringed and numbered, an image's id and cluster on hover), and the curve over k at that layer
//! with the chosen k (the cluster stage's own `knee.svg`). Drawn only: `evidence.json` holds the clusters, not the
//! coordinates.

use std::collections::BTreeMap;

use crate::artefact::clusters::Clusters;
use crate::cluster::map::classical_mds;
use crate::engine::stage::StageError;
use crate::media::svg::{MapPoint, scatter_map};
use crate::npy::NpyReader;

/// The map and the curve over k of a clustering, each when its files are there (a clustering of no layer, or of
/// one image, has neither).
pub(super) struct Pictures {
    pub(super) map: Option<String>,
    /// Share of the distances' total variance (the trace of B) that the map's two axes hold.
    pub(super) shown: Option<f64>,
    pub(super) knee: Option<String>,
}

pub(super) fn pictures(folder: &Clusters) -> Result<Pictures, StageError> {
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
    let title = format!("The {n} failures at layer {layer}, by their distances (classical MDS)");
    Ok(Pictures { map: Some(scatter_map(&title, &points)), shown, knee })
}
