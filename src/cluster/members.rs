//! The heatmaps of root-cause clusters' members at one layer, held to measure new images against: a new heatmap's
//! distance to a cluster is its distance to the cluster's closest member (single link, HUDD's AssignModule), and a
//! cluster's spread is the mean distance between its members. The products and sums run on one libtorch thread,
//! so that the distances (and what `select` and `expand` decide from them) do not depend on the stage's threads.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::model::ops::sqrt;
use crate::npy::{NpyError, NpyReader};

pub struct Members {
    /// Every member's heatmap, cluster after cluster (double precision).
    x: Tensor,
    norms: Tensor,
    /// Each cluster's rows in `x`.
    spans: Vec<(usize, usize)>,
}

impl Members {
    /// Reads the members' rows (`groups`: per cluster, rows of the layer's `.npy`) of a layer's heatmaps.
    pub fn load(layer: &Path, groups: &[Vec<usize>]) -> Result<Members, NpyError> {
        let mut reader = NpyReader::<f32>::open(layer)?;
        let d = reader.row_len();
        let rows: Vec<usize> = groups.iter().flatten().copied().collect();
        let mut values = Vec::with_capacity(rows.len() * d);
        for &r in &rows {
            values.extend(reader.read_rows(r, 1)?);
        }
        let x = Tensor::from_slice(&values).view([rows.len() as i64, d as i64]).to_kind(Kind::Double);
        let norms = one_thread(|| x.square().sum_dim_intlist([1i64].as_slice(), false, Kind::Double));
        let spans = groups
            .iter()
            .scan(0, |at, g| {
                let span = (*at, *at + g.len());
                *at += g.len();
                Some(span)
            })
            .collect();
        Ok(Members { x, norms, spans })
    }

    /// For every heatmap of a batch (N × anything, flattened), its distance to each cluster.
    pub fn nearest(&self, heatmaps: &Tensor) -> Vec<Vec<f64>> {
        let h = heatmaps.to_device(tch::Device::Cpu).flatten(1, -1).to_kind(Kind::Double);
        let cross = one_thread(|| {
            sqrt(
                &(h.square().sum_dim_intlist([1i64].as_slice(), true, Kind::Double) + self.norms.unsqueeze(0)
                    - h.matmul(&self.x.tr()) * 2.0)
                    .clamp_min(0.0),
            )
        });
        let cross = Vec::<f64>::try_from(cross.flatten(0, -1)).expect("a double tensor");
        let width = self.x.size()[0] as usize;
        cross
            .chunks(width.max(1))
            .map(|row| {
                self.spans.iter().map(|&(a, b)| row[a..b].iter().copied().fold(f64::INFINITY, f64::min)).collect()
            })
            .collect()
    }

    /// Each cluster's spread: the mean distance between its members (0 for a single member).
    pub fn spreads(&self) -> Vec<f64> {
        self.spans
            .iter()
            .map(|&(a, b)| {
                if b - a < 2 {
                    return 0.0;
                }
                let x = self.x.narrow(0, a as i64, (b - a) as i64);
                let total = one_thread(|| {
                    let sq = x.square().sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
                    let dist = sqrt(&(sq.unsqueeze(1) + sq.unsqueeze(0) - x.matmul(&x.tr()) * 2.0).clamp_min(0.0));
                    f64::try_from(dist.sum(Kind::Double)).unwrap_or(0.0)
                });
                total / ((b - a) * (b - a - 1)) as f64
            })
            .collect()
    }
}

/// Runs `f` on one libtorch thread: its sums are then the same whatever threads the stage was given.
fn one_thread<T>(f: impl FnOnce() -> T) -> T {
    crate::runtime::with_threads(1, f)
}
