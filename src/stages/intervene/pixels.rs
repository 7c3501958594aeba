//! Image-space interventions for real images, which no simulator can re-render: each moves a failing image's
//! pixels towards the training images' statistics (or removes a degradation), and the model is tested again.
//!
//! | intervention | what it does | its subject (how typical of training) |
//! |---|---|---|
//! | `brightness` | every channel scaled so the mean grey level is the training images' median | luminance |
//! | `contrast` | deviations from each channel's mean scaled so the RMS contrast is the training median | contrast |
//! | `gamma` | a power curve taking the mean grey level to the training median | luminance |
//! | `sharpen` | an unsharp mask: the image plus its difference from a 3×3 binomial blur | sharpness |
//! | `denoise` | a 3×3 median filter per channel | noise |
//!
//! The sham adds ±1 grey level of seeded noise per pixel, a change no model should care about: what it fixes is
//! what chance fixes. A pair applies its two interventions in the table's order. Typicality is how central the
//! image's subject descriptor lies among the training images' ([`crate::descriptors`]): 2·min(F, 1 − F) of its
//! mid-rank in them, 0 beyond every training image.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{InterveneError, Intervener, Job, JobKind};
use crate::dataset::{Dataset, Label, Target};
use crate::descriptors;
use crate::engine::diagnostic::did_you_mean;
use crate::engine::stage::StageError;
use crate::imageops::{binomial, byte, median3, planes};
use crate::trigger::Purpose;

/// The image-space interventions, in the order they are tried and composed.
pub(super) const TRANSFORMS: [&str; 5] = ["brightness", "contrast", "gamma", "sharpen", "denoise"];

/// Training images measured at most (evenly spaced over the split): enough for medians and mid-ranks.
const MEASURED: usize = 5_000;

/// The descriptor (index into [`descriptors::GREY`]) each intervention acts on.
fn subject(transform: usize) -> usize {
    [0, 1, 0, 2, 3][transform]
}

/// Makes the intervened images of real failing images.
pub(super) struct Transformer {
    /// Each failing image, C×H×W bytes, and its label.
    images: Vec<Vec<u8>>,
    labels: Vec<Label>,
    ids: Vec<String>,
    shape: [usize; 3],
    /// Indices into [`TRANSFORMS`] of the interventions tried.
    tried: Vec<usize>,
    /// The training images' grey descriptors, each sorted.
    training: Vec<Vec<f64>>,
    /// The training medians of luminance and contrast: the targets.
    luminance: f64,
    contrast: f64,
    seed: u64,
}

impl Transformer {
    /// The failing `images` (a test stage's errors of `all`), moved towards the statistics of `all`'s split `towards`.
    pub(super) fn new(
        images: &Dataset,
        all: &Dataset,
        towards: &str,
        named: &[String],
        seed: u64,
    ) -> Result<Transformer, StageError> {
        let tried = named
            .iter()
            .map(|name| {
                TRANSFORMS.iter().position(|t| t == name).ok_or_else(|| InterveneError::UnknownTransform {
                    name: name.clone(),
                    hint: did_you_mean(name, TRANSFORMS.iter().copied())
                        .map_or_else(String::new, |s| format!(" (did you mean `{s}`?)")),
                })
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let mut tried = if tried.is_empty() { (0..TRANSFORMS.len()).collect() } else { tried };
        tried.sort_unstable();
        let m = &all.meta;
        let shape = [m.channels, m.height, m.width];
        if [images.meta.channels, images.meta.height, images.meta.width] != shape {
            return Err(StageError::input(format!(
                "{}: its images are not the {}×{}×{} images of {}",
                images.dir.display(),
                shape[0],
                shape[1],
                shape[2],
                all.dir.display()
            )));
        }
        if !m.splits.iter().any(|(s, _)| s == towards) {
            return Err(InterveneError::NoSplit {
                split: towards.to_string(),
                available: m.splits.iter().map(|(s, _)| s.clone()).collect(),
            }
            .into());
        }
        let rows = all.split_rows(towards)?;
        let step = rows.len().div_ceil(MEASURED).max(1);
        let rows: Vec<usize> = rows.into_iter().step_by(step).collect();
        let size = shape.iter().product::<usize>();
        let mut training = vec![Vec::with_capacity(rows.len()); descriptors::GREY.len()];
        for chunk in rows.chunks(512) {
            for img in all.images(chunk)?.chunks_exact(size) {
                let described = descriptors::describe(img, shape[0], shape[1], shape[2]);
                for (k, v) in described.into_iter().enumerate().take(descriptors::GREY.len()) {
                    training[k].push(v);
                }
            }
        }
        for t in &mut training {
            t.sort_by(f64::total_cmp);
        }
        let median = |v: &[f64]| if v.is_empty() { 0.5 } else { v[v.len() / 2] };
        let (luminance, contrast) = (median(&training[0]), median(&training[1]));
        let n = images.meta.count;
        let pixels = images.images(&(0..n).collect::<Vec<_>>())?;
        let labels = match &images.meta.target {
            Target::Classification { .. } => {
                images.class_labels()?.into_iter().map(|c| Label::Class(c as usize)).collect()
            }
            Target::Regression { .. } => images.targets()?.into_iter().map(Label::Targets).collect(),
        };
        Ok(Transformer {
            images: pixels.chunks_exact(size).map(<[u8]>::to_vec).collect(),
            labels,
            ids: images.ids()?,
            shape,
            tried,
            training,
            luminance,
            contrast,
            seed,
        })
    }

    /// The interventions tried, by name.
    pub(super) fn names(&self) -> Vec<String> {
        self.tried.iter().map(|&t| TRANSFORMS[t].to_string()).collect()
    }

    fn apply(&self, transform: usize, img: &[u8]) -> Vec<u8> {
        let [c, h, w] = self.shape;
        // Only the photometric interventions need the image's luminance and contrast.
        let measured = || descriptors::luminance_contrast(img, c, h, w);
        match TRANSFORMS[transform] {
            "brightness" => {
                let gain = (self.luminance / measured().0.max(1e-3)).clamp(0.125, 8.0);
                img.iter().map(|&v| byte(f64::from(v) * gain)).collect()
            }
            "contrast" => {
                let scale = (self.contrast / measured().1.max(1e-3)).clamp(0.125, 8.0);
                let plane = h * w;
                let mut out = Vec::with_capacity(img.len());
                for channel in img.chunks_exact(plane) {
                    let mean = channel.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64;
                    out.extend(channel.iter().map(|&v| byte(mean + (f64::from(v) - mean) * scale)));
                }
                out
            }
            "gamma" => {
                let (from, to) = (measured().0.clamp(1e-3, 0.999), self.luminance.clamp(1e-3, 0.999));
                let gamma = (to.ln() / from.ln()).clamp(0.125, 8.0);
                img.iter().map(|&v| byte(255.0 * (f64::from(v) / 255.0).powf(gamma))).collect()
            }
            "sharpen" => planes(img, h, w, |p| {
                let blurred = binomial(p, h, w);
                p.iter().zip(blurred).map(|(&v, b)| byte(2.0 * f64::from(v) - b)).collect()
            }),
            _ => planes(img, h, w, |p| median3(p, h, w)),
        }
    }

    /// ±1 grey level per pixel, from a stream of the image's own (its id and the seed).
    fn sham(&self, row: usize) -> Vec<u8> {
        let id = blake3::hash(self.ids[row].as_bytes());
        let salt = u64::from_le_bytes(id.as_bytes()[..8].try_into().expect("8 bytes"));
        let mut rng = ChaCha8Rng::seed_from_u64(Purpose::Sham.seed(self.seed) ^ salt);
        self.images[row].iter().map(|&v| byte(f64::from(v) + f64::from(rng.random_range(-1i8..=1)))).collect()
    }
}

impl Intervener for Transformer {
    fn typicality(&self, row: usize) -> Vec<f64> {
        let [c, h, w] = self.shape;
        let described = descriptors::describe(&self.images[row], c, h, w);
        self.tried.iter().map(|&t| typicality(&self.training[subject(t)], described[subject(t)])).collect()
    }

    fn image(&self, job: &Job) -> (Vec<u8>, Label) {
        let img = &self.images[job.row];
        let out = match job.kind {
            JobKind::Identity => img.clone(),
            JobKind::Sham => self.sham(job.row),
            JobKind::Restore(t) => self.apply(self.tried[t], img),
            JobKind::Pair(s, t) => self.apply(self.tried[t], &self.apply(self.tried[s], img)),
        };
        (out, self.labels[job.row].clone())
    }
}

/// 2·min(F, 1 − F) of `x`'s mid-rank F among the sorted `values`: 1 at their median, 0 beyond all of them.
fn typicality(values: &[f64], x: f64) -> f64 {
    if values.is_empty() {
        return 1.0;
    }
    let below = values.partition_point(|&v| v < x);
    let equal = values[below..].partition_point(|&v| v <= x);
    let f = (below as f64 + 0.5 * equal as f64) / values.len() as f64;
    2.0 * f.min(1.0 - f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typicality_is_one_at_the_median_and_zero_beyond_every_training_value() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(typicality(&v, 3.0), 1.0);
        assert_eq!(typicality(&v, 0.5), 0.0);
        assert_eq!(typicality(&v, 9.0), 0.0);
        assert!((typicality(&v, 1.0) - 0.2).abs() < 1e-12);
    }
}
