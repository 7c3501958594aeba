//! Image-space interventions for real images, which no simulator can re-render: each moves a failing image's
//! pixels towards the training images' statistics (or removes a degradation), and the model is tested again.
//!
//! | intervention | what it does | its subject (how typical of training) |
//! |---|---|---|
//! | `brightness` | every channel scaled so the mean grey level is the training images' median | luminance |
//! | `contrast` | deviations from each channel's mean scaled so the RMS contrast is the training median | contrast |
//! | `gamma` | a power curve taking the mean grey level to the training median | luminance |
//! | `sharpen` | an unsharp mask (the image plus `a` times its difference from a 3×3 binomial blur), `a` per channel chosen so the variance of its Laplacian, relative to the channel's variance, reaches the training median of that ratio (at most 8; none for an image already as sharp) | relative sharpness |
//! | `denoise` | a 3×3 median filter per channel | noise |
//! | `derotate` | turned about the image's centre (as a camera's roll turns it) until the object's axis lies at its class's mean orientation in training | orientation |
//! | `recentre` | moved so its centroid lies at the training images' median centroid | centroid |
//!
//! Sharpness is read relative to contrast (the variance of the Laplacian over the variance of the grey levels):
//! darkening an image by a factor shrinks both alike, so a dark but sharp image is neither sharpened nor called
//! atypically blurred, and sharpening is not named for what brightening undoes.
//!
//! The geometric two read the object's [`Pose`](descriptors::Pose) (the moments of what stands out from the
//! background) and fill what they uncover with the background's grey level: they suit a task whose images show one
//! object (Fashion-MNIST's garments, a traffic sign cropped), and fix nothing where the pose of the whole scene means
//! nothing; `parameters` can leave them out. A class's mean orientation is the axial mean of its training images'
//! (their doubled angles' mean direction, halved: orientation is an axis, θ and θ + π the same); a regression task's
//! images form one class.
//! The sham adds ±1 grey level of seeded noise per pixel, a change no model should care about: what it fixes is
//! what chance fixes. A pair applies its two interventions in the table's order. Typicality is how central the
//! image's subject descriptor lies among the training images' ([`crate::descriptors`]): 2·min(F, 1 − F) of its
//! mid-rank in them, 0 beyond every training image.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::judge::Planted;
use super::{InterveneError, Intervener, Job, JobKind};
use crate::dataset::{Dataset, Label, Target};
use crate::descriptors;
use crate::engine::diagnostic::did_you_mean;
use crate::engine::stage::StageError;
use crate::imageops::{binomial, byte, median3, planes, warp};
use crate::trigger::Purpose;

/// The image-space interventions, in the order they are tried and composed.
pub(super) const TRANSFORMS: [&str; 7] =
    ["brightness", "contrast", "gamma", "sharpen", "denoise", "derotate", "recentre"];

/// Training images measured at most (evenly spaced over the split): enough for medians and mid-ranks.
const MEASURED: usize = 5_000;

/// The descriptor (index into [`descriptors::GREY`]) each photometric intervention acts on; for `sharpen` (2) read
/// relative to contrast ([`subjects`]).
fn subject(transform: usize) -> Option<usize> {
    [Some(0), Some(1), Some(0), Some(2), Some(3), None, None][transform]
}

/// An image's grey descriptors as the interventions read them: `sharpness` divided by the variance of the grey levels
/// (`contrast` in grey levels, squared), which a gain leaves unchanged; 0 for a flat image.
fn subjects(mut described: Vec<f64>) -> Vec<f64> {
    let variance = (255.0 * described[1]).powi(2);
    described[2] = if variance > 0.0 { described[2] / variance } else { 0.0 };
    described
}

/// The training images' poses: what the geometric interventions move towards, and how typical an image's pose is.
struct Poses {
    /// Each class's axial mean orientation (radians), by class index (one class for regression).
    orientation: Vec<f64>,
    /// Each class's training deviations from it, sorted.
    deviation: Vec<Vec<f64>>,
    /// The median centroid (row, column) and the training centroids' rows and columns, sorted.
    centroid: (f64, f64),
    rows: Vec<f64>,
    columns: Vec<f64>,
}

impl Poses {
    /// From the training images' poses and class indices.
    fn new(poses: &[(descriptors::Pose, usize)]) -> Poses {
        let classes = poses.iter().map(|p| p.1 + 1).max().unwrap_or(1);
        let mut sums = vec![(0.0, 0.0); classes];
        for (p, c) in poses {
            let (sin, cos) = (2.0 * p.orientation).sin_cos();
            sums[*c] = (sums[*c].0 + sin, sums[*c].1 + cos);
        }
        let orientation: Vec<f64> = sums.iter().map(|&(sin, cos)| 0.5 * sin.atan2(cos)).collect();
        let mut deviation = vec![Vec::new(); classes];
        for (p, c) in poses {
            deviation[*c].push(axial(p.orientation - orientation[*c]));
        }
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        let deviation = deviation.into_iter().map(sorted).collect();
        let rows = sorted(poses.iter().map(|p| p.0.centroid.0).collect());
        let columns = sorted(poses.iter().map(|p| p.0.centroid.1).collect());
        let median = |v: &[f64]| if v.is_empty() { 0.0 } else { v[v.len() / 2] };
        Poses { orientation, deviation, centroid: (median(&rows), median(&columns)), rows, columns }
    }

    /// The class's mean orientation (the first class's for a class training never showed).
    fn of(&self, class: usize) -> f64 {
        self.orientation.get(class).or(self.orientation.first()).copied().unwrap_or(0.0)
    }
}

/// An angle between two axes, in (−π/2, π/2].
fn axial(angle: f64) -> f64 {
    use std::f64::consts::PI;
    let a = angle.rem_euclid(PI);
    if a > PI / 2.0 { a - PI } else { a }
}

/// Makes the intervened images of real failing images.
pub(super) struct Transformer {
    /// Each failing image, C×H×W bytes, and its label.
    images: Vec<Vec<u8>>,
    labels: Vec<Label>,
    /// Each failing image's class index (0 for regression): whose training orientation `derotate` turns to.
    classes: Vec<usize>,
    /// Each failing image's planted corruption (a `corrupt` stage's column), if the images have one.
    scenarios: Option<Vec<String>>,
    ids: Vec<String>,
    shape: [usize; 3],
    /// Indices into [`TRANSFORMS`] of the interventions tried.
    tried: Vec<usize>,
    /// The training images' grey descriptors, each sorted.
    training: Vec<Vec<f64>>,
    /// The training medians of luminance, contrast and relative sharpness ([`subjects`]): the targets.
    luminance: f64,
    contrast: f64,
    sharpness: f64,
    poses: Poses,
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
        let all_classes = class_indices(all)?;
        let mut training = vec![Vec::with_capacity(rows.len()); descriptors::GREY.len()];
        let mut poses = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(512) {
            for (img, &r) in all.images(chunk)?.chunks_exact(size).zip(chunk) {
                let described = subjects(descriptors::describe(img, shape[0], shape[1], shape[2]));
                for (k, v) in described.into_iter().enumerate().take(descriptors::GREY.len()) {
                    training[k].push(v);
                }
                poses.push((descriptors::pose(img, shape[0], shape[1], shape[2]), all_classes[r]));
            }
        }
        for t in &mut training {
            t.sort_by(f64::total_cmp);
        }
        let median = |v: &[f64]| if v.is_empty() { 0.5 } else { v[v.len() / 2] };
        let (luminance, contrast, sharpness) = (median(&training[0]), median(&training[1]), median(&training[2]));
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
            classes: class_indices(images)?,
            scenarios: images.strings("scenario").ok(),
            ids: images.ids()?,
            shape,
            tried,
            training,
            luminance,
            contrast,
            sharpness,
            poses: Poses::new(&poses),
            seed,
        })
    }

    /// The interventions tried, by name.
    pub(super) fn names(&self) -> Vec<String> {
        self.tried.iter().map(|&t| TRANSFORMS[t].to_string()).collect()
    }

    /// Each image's planted corruption (a `corrupt` stage's `scenario` column) and the interventions tried that undo
    /// it ([`crate::imageops::remedies`]); `None` for an image without one.
    pub(super) fn planted(&self) -> Vec<Option<Planted>> {
        (0..self.ids.len())
            .map(|r| {
                let scenario = self.scenario(r)?;
                let names: Vec<String> = (crate::imageops::remedies(scenario).iter())
                    .filter(|name| self.tried.iter().any(|&t| TRANSFORMS[t] == **name))
                    .map(|name| name.to_string())
                    .collect();
                Some(Planted { scenario: scenario.to_string(), names, exact: 1 })
            })
            .collect()
    }

    fn apply(&self, transform: usize, img: &[u8], class: usize) -> Vec<u8> {
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
                let detail: Vec<f64> = p.iter().zip(binomial(p, h, w)).map(|(&v, b)| f64::from(v) - b).collect();
                let amount = unsharp_amount(p, &detail, h, w, self.sharpness);
                p.iter().zip(&detail).map(|(&v, d)| byte(f64::from(v) + amount * d)).collect()
            }),
            "denoise" => planes(img, h, w, |p| median3(p, h, w)),
            geometric => {
                let pose = descriptors::pose(img, c, h, w);
                let centre = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
                let (degrees, from, to) = if geometric == "derotate" {
                    (axial(self.poses.of(class) - pose.orientation).to_degrees(), centre, centre)
                } else {
                    (0.0, pose.centroid, self.poses.centroid)
                };
                planes(img, h, w, |p| {
                    let fill = byte(descriptors::border_mean(p, h, w));
                    warp(p, h, w, degrees, from, to, fill)
                })
            }
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
        let described = subjects(descriptors::describe(&self.images[row], c, h, w));
        let pose = descriptors::pose(&self.images[row], c, h, w);
        let class = self.classes[row];
        let poses = &self.poses;
        (self.tried.iter())
            .map(|&t| match (subject(t), TRANSFORMS[t]) {
                (Some(k), _) => typicality(&self.training[k], described[k]),
                (None, "derotate") => {
                    let deviation = axial(pose.orientation - poses.of(class));
                    typicality(poses.deviation.get(class).unwrap_or(&poses.deviation[0]), deviation)
                }
                // Typical only where both its row and its column are.
                _ => typicality(&poses.rows, pose.centroid.0).min(typicality(&poses.columns, pose.centroid.1)),
            })
            .collect()
    }

    fn image(&self, job: &Job) -> (Vec<u8>, Label) {
        let img = &self.images[job.row];
        let out = match job.kind {
            JobKind::Identity => img.clone(),
            JobKind::Sham => self.sham(job.row),
            JobKind::Restore(t) => self.apply(self.tried[t], img, self.classes[job.row]),
            JobKind::Pair(s, t) => {
                let class = self.classes[job.row];
                self.apply(self.tried[t], &self.apply(self.tried[s], img, class), class)
            }
        };
        (out, self.labels[job.row].clone())
    }

    fn scenario(&self, row: usize) -> Option<&str> {
        self.scenarios.as_ref().map(|s| s[row].as_str()).filter(|s| !s.is_empty())
    }
}

/// How much of its detail (`detail`: the plane minus its blur) a plane needs added for the variance of its
/// Laplacian, relative to the variance of its levels, to reach `ratio`. Both variances are quadratics in the amount
/// (the Laplacian is linear), so the gap `var(L(p + s·d)) − ratio · var(p + s·d)` is one too: negative at 0 for a
/// plane less sharp than the target, and crossing zero once on the way up; found by bisection on [0, 8] (8 when it
/// is still short of it there). 0 when the plane is already as sharp.
fn unsharp_amount(p: &[u8], detail: &[f64], h: usize, w: usize, ratio: f64) -> f64 {
    let levels: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
    let laplacian = covariances(&descriptors::laplacian(&levels, h, w), &descriptors::laplacian(detail, h, w));
    let plain = covariances(&levels, detail);
    let gap = |s: f64| {
        let at = |[a, ab, b]: [f64; 3]| a + 2.0 * ab * s + b * s * s;
        at(laplacian) - ratio * at(plain)
    };
    if gap(0.0) >= 0.0 {
        return 0.0;
    }
    if gap(8.0) < 0.0 {
        return 8.0;
    }
    let (mut low, mut high) = (0.0, 8.0);
    for _ in 0..60 {
        let mid = 0.5 * (low + high);
        if gap(mid) < 0.0 { low = mid } else { high = mid }
    }
    high
}

/// The variance of `a`, the covariance of `a` and `b`, the variance of `b` (population).
fn covariances(a: &[f64], b: &[f64]) -> [f64; 3] {
    let n = a.len().max(1) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let mut out = [0.0; 3];
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x - ma, y - mb);
        out = [out[0] + x * x / n, out[1] + x * y / n, out[2] + y * y / n];
    }
    out
}

/// Every image's class index, 0 for all images of a regression task.
fn class_indices(ds: &Dataset) -> Result<Vec<usize>, StageError> {
    Ok(match &ds.meta.target {
        Target::Classification { .. } => ds.class_labels()?.into_iter().map(|c| c.max(0) as usize).collect(),
        Target::Regression { .. } => vec![0; ds.meta.count],
    })
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

    /// A bar 200 grey levels bright on black, `rows` × `columns` of an h × w image, its top left at (top, left).
    fn bar(h: usize, w: usize, (top, left): (usize, usize), (rows, columns): (usize, usize)) -> Vec<u8> {
        (0..h * w)
            .map(|i| {
                if (top..top + rows).contains(&(i / w)) && (left..left + columns).contains(&(i % w)) { 200 } else { 0 }
            })
            .collect()
    }

    /// Grey images of `shape` (the first planted with a rotation, the others clean), every training descriptor 0.5,
    /// the relative sharpness target `sharpness`.
    fn transformer(images: Vec<Vec<u8>>, shape: [usize; 3], sharpness: f64, poses: Poses) -> Transformer {
        let n = images.len();
        Transformer {
            images,
            labels: vec![Label::Class(0); n],
            classes: vec![0; n],
            scenarios: Some((0..n).map(|i| if i == 0 { "rotation" } else { "clean" }.to_string()).collect()),
            ids: (0..n).map(|i| i.to_string()).collect(),
            shape,
            tried: (0..TRANSFORMS.len()).collect(),
            training: vec![vec![0.5]; descriptors::GREY.len()],
            luminance: 0.5,
            contrast: 0.2,
            sharpness,
            poses,
            seed: 1,
        }
    }

    #[test]
    fn derotate_turns_a_turned_object_back_and_recentre_moves_it_back() {
        let (h, w) = (33, 33);
        let level = bar(h, w, (14, 4), (5, 25));
        let pose = |img: &[u8]| descriptors::pose(img, 1, h, w);
        let training: Vec<_> = (0..8).map(|_| (pose(&level), 0)).collect();
        let transformer = transformer(
            vec![crate::imageops::rotate(&level, h, w, 40.0, 0), bar(h, w, (4, 2), (5, 25))],
            [1, h, w],
            100.0,
            Poses::new(&training),
        );
        let derotate = TRANSFORMS.iter().position(|&t| t == "derotate").unwrap();
        let recentre = TRANSFORMS.iter().position(|&t| t == "recentre").unwrap();
        assert!((pose(&transformer.images[0]).orientation.to_degrees() - 40.0).abs() < 1.0);
        let turned_back = pose(&transformer.apply(derotate, &transformer.images[0], 0));
        assert!(turned_back.orientation.to_degrees().abs() < 1.0, "{turned_back:?}");
        let moved_back = pose(&transformer.apply(recentre, &transformer.images[1], 0));
        assert!(
            (moved_back.centroid.0 - 16.0).abs() < 0.5 && (moved_back.centroid.1 - 16.0).abs() < 0.5,
            "{moved_back:?}"
        );
        // Training showed only level, centred bars: the turned bar's orientation and the shifted bar's centroid are
        // beyond every training image's.
        assert_eq!(transformer.typicality(0)[derotate], 0.0);
        assert_eq!(transformer.typicality(1)[recentre], 0.0);
        // The rotation's remedy is `derotate`; a clean image planted nothing.
        let planted = transformer.planted();
        assert_eq!(planted[0].as_ref().unwrap().names, ["derotate"]);
        assert!(planted[1].as_ref().unwrap().names.is_empty());
    }

    #[test]
    fn sharpen_reaches_the_training_relative_sharpness_and_leaves_a_darkened_image_alone() {
        let (h, w) = (16, 16);
        // A bar 160 grey levels bright on 60, so the sharpening's overshoot stays inside 0–255.
        let sharp: Vec<u8> = bar(h, w, (4, 4), (8, 8)).iter().map(|&v| if v > 0 { 160 } else { 60 }).collect();
        let dark: Vec<u8> = sharp.iter().map(|&v| byte(f64::from(v) * 0.4)).collect();
        let mut blurred = sharp.clone();
        for _ in 0..2 {
            blurred = binomial(&blurred, h, w).into_iter().map(byte).collect();
        }
        let relative = |p: &[u8]| subjects(descriptors::describe(p, 1, h, w))[2];
        // The gain shrinks the Laplacian's variance by 0.16 and the ratio not at all (but for rounding).
        assert!(
            (descriptors::describe(&dark, 1, h, w)[2] / descriptors::describe(&sharp, 1, h, w)[2] - 0.16).abs() < 0.01
        );
        assert!(
            (relative(&dark) / relative(&sharp) - 1.0).abs() < 0.01,
            "{} against {}",
            relative(&dark),
            relative(&sharp)
        );
        let sharpen = TRANSFORMS.iter().position(|&t| t == "sharpen").unwrap();
        let t = transformer(vec![dark.clone(), blurred.clone()], [1, h, w], 0.25 * relative(&sharp), Poses::new(&[]));
        assert_eq!(t.apply(sharpen, &dark, 0), dark, "a dark but sharp image is not sharpened");
        let sharpened = t.apply(sharpen, &blurred, 0);
        assert!(relative(&blurred) < 0.5 * t.sharpness, "{}", relative(&blurred));
        assert!(
            (relative(&sharpened) / t.sharpness - 1.0).abs() < 0.15,
            "{} against {}",
            relative(&sharpened),
            t.sharpness
        );
    }
}
