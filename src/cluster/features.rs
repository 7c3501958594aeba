//! What a layer's heatmaps (or activations) become before their distances are taken: the layer as it is, or its
//! relevance per channel (the concept-level view that Concept Relevance Propagation and Reveal-to-Revise cluster);
//! either centred on each image's class, so that what the label explains does not drive the clusters (the planted
//! causes of failures cut across classes, while a late layer's relevance mostly encodes the class).

use serde::{Deserialize, Serialize};

/// The vector each image is described by at a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Features {
    /// Every value of the layer (HUDD's).
    #[default]
    Flat,
    /// The layer's values summed over the positions of each channel, L1-normalised per image: how much of the
    /// relevance each channel (concept) carries, wherever in the image. A dense layer's units are its channels.
    Channels,
}

impl Features {
    pub fn is_flat(&self) -> bool {
        *self == Features::Flat
    }
}

/// What the features are centred on before their distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Centre {
    /// Nothing (HUDD's): distances between the features as they are.
    #[default]
    None,
    /// Each image's features minus the mean of the clustered images of its class (its true label).
    Class,
}

impl Centre {
    pub fn is_none(&self) -> bool {
        *self == Centre::None
    }
}

/// One image's channel totals: `row` holds `channels` runs of equal length (channel-major, as a `C×H×W` layer is
/// stored), each summed, the totals divided by the sum of their magnitudes (all zeros stay zeros).
pub fn channel_totals(row: &[f32], channels: usize) -> Vec<f32> {
    let per = row.len() / channels.max(1);
    let totals: Vec<f64> =
        (0..channels).map(|c| row[c * per..(c + 1) * per].iter().map(|&v| f64::from(v)).sum()).collect();
    let norm: f64 = totals.iter().map(|v| v.abs()).sum();
    totals.iter().map(|&v| if norm > 0.0 { (v / norm) as f32 } else { 0.0 }).collect()
}

/// Centres a block of `classes.len()` rows × `width` columns (row-major) on each row's class: every column's mean
/// over the rows of a class is subtracted from those rows. A class with one row has no mean of its own to remove
/// (its own would make it the zero vector, at distance 0 from every other such image whatever its values): its row
/// is centred on the mean of every row instead, which keeps it in the space the others are in. The means are summed
/// in row order, in f64, so the block comes out the same whatever else runs.
pub fn centre_by_class(block: &mut [f32], width: usize, classes: &[usize]) {
    let k = classes.iter().max().map_or(0, |m| m + 1);
    let mut sums = vec![0.0f64; k * width];
    let mut counts = vec![0usize; k];
    let mut all = vec![0.0f64; width];
    for (row, &c) in block.chunks_exact(width).zip(classes) {
        counts[c] += 1;
        for ((s, a), &v) in sums[c * width..(c + 1) * width].iter_mut().zip(all.iter_mut()).zip(row) {
            *s += f64::from(v);
            *a += f64::from(v);
        }
    }
    let rows = classes.len().max(1) as f64;
    for (row, &c) in block.chunks_exact_mut(width).zip(classes) {
        let (mean, n): (&[f64], f64) = match counts[c] {
            1 => (&all, rows),
            n => (&sums[c * width..(c + 1) * width], n as f64),
        };
        for (v, s) in row.iter_mut().zip(mean) {
            *v = (f64::from(*v) - s / n) as f32;
        }
    }
}

/// Class labels as dense indices `0..k` in order of first appearance, whatever numbers they carry.
pub fn dense_classes(labels: &[i64]) -> Vec<usize> {
    let mut seen: Vec<i64> = Vec::new();
    labels
        .iter()
        .map(|l| match seen.iter().position(|s| s == l) {
            Some(i) => i,
            None => {
                seen.push(*l);
                seen.len() - 1
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_totals_sum_each_channel_and_normalise() {
        // Two channels of three positions: totals 6 and −2, magnitudes summing to 8.
        assert_eq!(channel_totals(&[1.0, 2.0, 3.0, -1.0, -1.0, 0.0], 2), vec![0.75, -0.25]);
        assert_eq!(channel_totals(&[0.0; 4], 2), vec![0.0, 0.0]);
    }

    #[test]
    fn an_image_alone_in_its_class_is_centred_on_every_image_not_made_zero() {
        // Rows 0 and 1 are each alone in their class; rows 2 and 3 share one. Centred on its own class, each lone
        // row would be zero and the two would sit at distance 0 whatever their values.
        let classes = dense_classes(&[5, 9, 2, 2]);
        let mut block = vec![1.0, 0.0, 0.0, 4.0, 2.0, 2.0, 4.0, 2.0];
        centre_by_class(&mut block, 2, &classes);
        // The mean of all four rows is (1.75, 2.0); the shared class's mean is (3.0, 2.0).
        assert_eq!(block, vec![-0.75, -2.0, -1.75, 2.0, -1.0, 0.0, 1.0, 0.0]);
        assert_ne!(block[0..2], block[2..4]);
    }

    #[test]
    fn centring_by_class_removes_what_the_class_explains() {
        // Two classes whose rows differ only by a class offset: centred, rows of one class equal the other's.
        let classes = dense_classes(&[7, 7, 3, 3]);
        assert_eq!(classes, vec![0, 0, 1, 1]);
        let mut block = vec![1.0, 0.0, 3.0, 0.0, 11.0, 10.0, 13.0, 10.0];
        centre_by_class(&mut block, 2, &classes);
        assert_eq!(block, vec![-1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0]);
    }
}
