//! Stage `corrupt`: known causes planted in real images, as ImageNet-C plants them, so that a clustering of the
//! failures on real images can be scored against the truth (`recovery`). A seeded share of one split's images gets
//! each corruption; the dataset is written again with those images changed and a column (`scenario` by default)
//! naming each image's corruption, `clean` for the others and for every other split.
//!
//! | corruption | what it does (severity s = 1–5) |
//! |---|---|
//! | `dark` | every grey level multiplied by 0.6 − 0.1·s |
//! | `blur` | the 3×3 binomial blur applied s + 1 times |
//! | `noise` | Gaussian noise of σ = 12·s grey levels, per pixel |
//! | `occlusion` | a square of side (0.2 + 0.06·s) of the image, at a seeded place inside it, set to the image's mean |
//! | `rotation` | turned by ±(10 + 10·s)° about the centre (bilinear, `0` where no pixel maps) |
//!
//! Each image's changes come from a stream of its own (the stage's seed and its id), so the result depends on
//! neither the order nor the threads.

use std::collections::BTreeMap;

use polars::prelude::Column;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::artefact::{ANY_DATASET, DATASET};
use crate::dataset::Dataset;
use crate::engine::diagnostic::did_you_mean;
use crate::engine::stage::{InputSlot, Invalid, OutputSpec, Params, Stage, StageContext, StageError};
use crate::imageops::{binomial, byte, planes, rotate};

/// The corruptions, in the order shares are taken from the shuffled split.
pub const CORRUPTIONS: [&str; 5] = ["dark", "blur", "noise", "occlusion", "rotation"];

pub struct Corrupt;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorruptParams {
    /// The split whose images are corrupted.
    #[serde(default = "default_split")]
    pub split: String,
    /// Share of the split's images given each corruption (the rest stay clean).
    pub corruptions: BTreeMap<String, f64>,
    /// 1 (mild) to 5 (severe), as ImageNet-C grades them.
    #[serde(default = "default_severity")]
    pub severity: u32,
    /// The column naming each image's corruption.
    #[serde(default = "default_column")]
    pub column: String,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_split() -> String {
    "test".into()
}
fn default_severity() -> u32 {
    3
}
fn default_column() -> String {
    "scenario".into()
}

impl Params for CorruptParams {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        for (name, share) in &self.corruptions {
            if !CORRUPTIONS.contains(&name.as_str()) {
                let hint = did_you_mean(name, CORRUPTIONS.iter().copied())
                    .map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"));
                out.push(Invalid::new(
                    format!("corruptions.{name}"),
                    format!("is not one of {}{hint}", CORRUPTIONS.join(", ")),
                ));
            }
            if !(*share > 0.0 && *share < 1.0) {
                out.push(Invalid::new(format!("corruptions.{name}"), format!("must be in (0, 1), got {share}")));
            }
        }
        let total: f64 = self.corruptions.values().sum();
        if total > 1.0 {
            out.push(Invalid::new("corruptions", format!("shares add up to {total}, more than the whole split")));
        }
        if self.corruptions.is_empty() {
            out.push(Invalid::new("corruptions", "names no corruption: give at least one, e.g. `{ dark = 0.1 }`"));
        }
        if !(1..=5).contains(&self.severity) {
            out.push(Invalid::new("severity", format!("must be 1 to 5, got {}", self.severity)));
        }
        out
    }
}

impl Stage for Corrupt {
    type Params = CorruptParams;
    const KIND: &'static str = "corrupt";
    const VERSION: u32 = 1;
    const INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "dataset",
        accepts: ANY_DATASET,
        many: false,
        required: true,
        doc: "the images to plant corruptions in",
    }];
    const OUTPUTS: &'static [OutputSpec] = &[OutputSpec {
        name: "dataset",
        kind: DATASET,
        path: "dataset/",
        doc: "the same images, a share of one split corrupted, with a column naming each image's corruption",
    }];
    const USES_SEED: bool = true;
    const DOC: &'static str = "Plants known corruptions (dark, blur, noise, occlusion, rotation) in a split's images.";

    fn run(&self, p: &CorruptParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let ds = Dataset::open(&ctx.input("dataset")?.path)?;
        let splits = ds.strings("split")?;
        let mut rows: Vec<usize> = (0..splits.len()).filter(|&r| splits[r] == p.split).collect();
        if rows.is_empty() {
            let available: Vec<&str> = ds.meta.splits.iter().map(|(s, _)| s.as_str()).collect();
            return Err(StageError::input(format!(
                "{} has no split `{}` to corrupt (splits: {})",
                ds.dir.display(),
                p.split,
                available.join(", ")
            )));
        }
        rows.shuffle(&mut ChaCha8Rng::seed_from_u64(ctx.seed));
        let mut planted = vec!["clean"; splits.len()];
        let mut start = 0;
        for name in CORRUPTIONS.iter().filter(|c| p.corruptions.contains_key(**c)) {
            let n = (rows.len() as f64 * p.corruptions[*name]).round() as usize;
            for &r in &rows[start..(start + n).min(rows.len())] {
                planted[r] = name;
            }
            start += n;
        }
        let ids = ds.ids()?;
        let shape = (ds.meta.height, ds.meta.width);
        let severity = f64::from(p.severity);
        let all: Vec<usize> = (0..splits.len()).collect();
        let column = Column::new(p.column.as_str().into(), &planted);
        ds.write_subset_changed(&all, &ctx.output("dataset")?, vec![column], |row, img| {
            if planted[row] != "clean" {
                let mut rng = image_rng(ctx.seed, &ids[row]);
                let changed = corrupt(planted[row], img, shape, severity, &mut rng);
                img.copy_from_slice(&changed);
            }
        })?;
        Ok(())
    }
}

/// The stream of one image's corruption: the seed and its id.
fn image_rng(seed: u64, id: &str) -> ChaCha8Rng {
    let hash = blake3::hash(format!("hudd/corrupt/{seed}/{id}").as_bytes());
    ChaCha8Rng::from_seed(*hash.as_bytes())
}

/// One image (C×H×W) with `name`'s corruption at `severity`.
fn corrupt(name: &str, img: &[u8], (h, w): (usize, usize), severity: f64, rng: &mut ChaCha8Rng) -> Vec<u8> {
    match name {
        "dark" => img.iter().map(|&v| byte(f64::from(v) * (0.6 - 0.1 * severity))).collect(),
        "blur" => {
            let mut out = img.to_vec();
            for _ in 0..=(severity as usize) {
                out = planes(&out, h, w, |p| binomial(p, h, w).into_iter().map(byte).collect());
            }
            out
        }
        "noise" => img
            .iter()
            .map(|&v| {
                // Box-Muller: one standard normal from two uniforms.
                let (u, t): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
                let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * t).cos();
                byte(f64::from(v) + 12.0 * severity * z)
            })
            .collect(),
        "occlusion" => {
            let side = (((0.2 + 0.06 * severity) * h.min(w) as f64).round() as usize).clamp(1, h.min(w));
            let (y0, x0) = (rng.random_range(0..=h - side), rng.random_range(0..=w - side));
            planes(img, h, w, |p| {
                let mean = byte(p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64);
                let mut out = p.to_vec();
                for y in y0..y0 + side {
                    out[y * w + x0..y * w + x0 + side].fill(mean);
                }
                out
            })
        }
        _ => {
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            planes(img, h, w, |p| rotate(p, h, w, sign * (10.0 + 10.0 * severity), 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_corruption_changes_an_image_as_it_says() {
        let img: Vec<u8> = (0..64).map(|v| (v * 4) as u8).collect();
        let rng = || ChaCha8Rng::seed_from_u64(1);
        let dark = corrupt("dark", &img, (8, 8), 3.0, &mut rng());
        assert!(dark.iter().zip(&img).all(|(d, v)| *d == byte(f64::from(*v) * 0.3)));
        let noisy = corrupt("noise", &img, (8, 8), 3.0, &mut rng());
        let diff: Vec<f64> = noisy.iter().zip(&img).map(|(a, b)| f64::from(*a) - f64::from(*b)).collect();
        let sd = (diff.iter().map(|d| d * d).sum::<f64>() / 64.0).sqrt();
        assert!(sd > 15.0 && sd < 60.0, "noise of σ 36, clipped at the ends: {sd}");
        let occluded = corrupt("occlusion", &img, (8, 8), 3.0, &mut rng());
        let side = (0.38f64 * 8.0).round() as usize;
        assert_eq!(occluded.iter().zip(&img).filter(|(a, b)| a != b).count(), side * side);
        assert_eq!(corrupt("noise", &img, (8, 8), 3.0, &mut rng()), noisy, "the same stream, the same image");
        let blurred = corrupt("blur", &[9u8; 16], (4, 4), 2.0, &mut rng());
        assert_eq!(blurred, vec![9u8; 16], "a flat image stays flat");
    }
}
