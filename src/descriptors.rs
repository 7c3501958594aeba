//! Interpretable descriptors measured from an image's pixels: what a simulator parameter says of a simulated image,
//! said of any image (Fashion-MNIST, an ImageFolder a safety team brings). Stored per image like simulator
//! parameters, they let RQ1, `rules` and a held-out confirmation run on real images.
//!
//! Each follows a reference implementation, checked on fixture images against it (`tests/fixtures/descriptors_ref.py`):
//!
//! | descriptor | what | reference |
//! |---|---|---|
//! | `luminance` | mean grey level, 0–1 | `skimage.color.rgb2gray(img).mean()` |
//! | `contrast` | RMS contrast: the grey levels' standard deviation, 0–1 | `rgb2gray(img).std()` |
//! | `sharpness` | variance of the Laplacian, in grey levels² | `cv2.Laplacian(grey, cv2.CV_64F).var()` |
//! | `noise` | Immerkær's noise σ, in grey levels | `scipy.signal.convolve2d` with his mask |
//! | `edges` | mean Sobel gradient magnitude, 0–1 | `skimage.filters.sobel(grey).mean()` |
//! | `saturation` | mean HSV saturation, 0–1 (RGB only) | `skimage.color.rgb2hsv(img)[..., 1].mean()` |
//! | `colourfulness` | Hasler and Süsstrunk's M, in grey levels (RGB only) | their formula in NumPy |
//!
//! The grey image is ITU-R BT.709's luminance (scikit-image's weights 0.2125, 0.7154, 0.0721) of an RGB image, or
//! the image itself when it has one channel. Grey levels run 0–255.

use crate::dataset::{ParamColumn, ParamKind};

/// The descriptors of a grey image, in this order.
pub const GREY: [ParamColumn; 5] = [
    ParamColumn { name: "luminance", kind: ParamKind::Real { min: 0.0, max: 1.0, unit: "" } },
    ParamColumn { name: "contrast", kind: ParamKind::Real { min: 0.0, max: 0.5, unit: "" } },
    ParamColumn { name: "sharpness", kind: ParamKind::Real { min: 0.0, max: 1.0e6, unit: "grey levels²" } },
    ParamColumn { name: "noise", kind: ParamKind::Real { min: 0.0, max: 255.0, unit: "grey levels" } },
    ParamColumn { name: "edges", kind: ParamKind::Real { min: 0.0, max: 1.0, unit: "" } },
];

/// The descriptors of an RGB image: the grey ones, then colour.
pub const COLOUR: [ParamColumn; 2] = [
    ParamColumn { name: "saturation", kind: ParamKind::Real { min: 0.0, max: 1.0, unit: "" } },
    ParamColumn { name: "colourfulness", kind: ParamKind::Real { min: 0.0, max: 255.0, unit: "grey levels" } },
];

/// The descriptors an image of `channels` channels has.
pub fn columns(channels: usize) -> Vec<ParamColumn> {
    let mut out = GREY.to_vec();
    if channels == 3 {
        out.extend(COLOUR);
    }
    out
}

/// Every descriptor of one image (`chw`: C×H×W bytes, C 1 or 3), in the order of [`columns`].
pub fn describe(chw: &[u8], channels: usize, height: usize, width: usize) -> Vec<f64> {
    let n = height * width;
    let grey = grey(chw, channels, n);
    let image = Grey { v: &grey, height, width };
    let (mean, sd) = mean_sd(&grey);
    let levels: Vec<f64> = grey.iter().map(|v| v * 255.0).collect();
    let levels = Grey { v: &levels, height, width };
    let mut out = vec![mean, sd, laplacian_variance(&levels), immerkaer_noise(&levels), image.sobel_mean()];
    if channels == 3 {
        let (r, g, b) = (&chw[..n], &chw[n..2 * n], &chw[2 * n..3 * n]);
        out.push(saturation(r, g, b));
        out.push(colourfulness(r, g, b));
    }
    out
}

/// The first two descriptors alone, `luminance` and `contrast` (the mean grey level and its standard deviation, 0–1),
/// as [`describe`] gives them.
pub fn luminance_contrast(chw: &[u8], channels: usize, height: usize, width: usize) -> (f64, f64) {
    mean_sd(&grey(chw, channels, height * width))
}

/// Where an image's object lies and which way it points, from the image moments of its foreground: every pixel
/// weighted by how far its grey level is from the background's (the mean grey level of the border pixels), so an
/// object on black (Fashion-MNIST) and one on white are measured alike. What the geometric interventions move
/// towards the training images'; not a stored descriptor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// The weighted centroid, (row, column) in pixels (the image's centre when nothing stands out).
    pub centroid: (f64, f64),
    /// The major axis's angle in radians, counterclockwise from the rows' direction as the image is viewed, in
    /// (−π/2, π/2]: ½·atan2(−2μ₁₁, μ₂₀ − μ₀₂) of the central moments (x along columns, y along rows).
    pub orientation: f64,
    /// The background's grey level, 0–255.
    pub background: f64,
}

/// The [`Pose`] of a C×H×W image (its grey image, as [`describe`] reads it). Checked against scikit-image's
/// `measure.centroid` and `measure.moments_central` of the same weights (`tests/fixtures/descriptors_ref.py`).
pub fn pose(chw: &[u8], channels: usize, height: usize, width: usize) -> Pose {
    let levels: Vec<f64> = grey(chw, channels, height * width).iter().map(|v| v * 255.0).collect();
    let background = border_mean(&levels, height, width);
    let weight = |i: usize| (levels[i] - background).abs();
    let (mut m, mut my, mut mx) = (0.0, 0.0, 0.0);
    for y in 0..height {
        for x in 0..width {
            let w = weight(y * width + x);
            (m, my, mx) = (m + w, my + w * y as f64, mx + w * x as f64);
        }
    }
    if m <= 0.0 {
        let centre = ((height as f64 - 1.0) / 2.0, (width as f64 - 1.0) / 2.0);
        return Pose { centroid: centre, orientation: 0.0, background };
    }
    let (cy, cx) = (my / m, mx / m);
    let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
    for y in 0..height {
        for x in 0..width {
            let w = weight(y * width + x);
            let (dy, dx) = (y as f64 - cy, x as f64 - cx);
            (xx, yy, xy) = (xx + w * dx * dx, yy + w * dy * dy, xy + w * dx * dy);
        }
    }
    let mut orientation = 0.5 * (-2.0 * xy).atan2(xx - yy);
    if orientation <= -std::f64::consts::FRAC_PI_2 {
        orientation += std::f64::consts::PI;
    }
    Pose { centroid: (cy, cx), orientation, background }
}

/// The mean of a `height × width` plane's border pixels (row by row): its background, the level an object stands out
/// from and the level a geometric intervention fills what it uncovers with.
pub(crate) fn border_mean<T: Copy + Into<f64>>(plane: &[T], height: usize, width: usize) -> f64 {
    let border: Vec<f64> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (y, x)))
        .filter(|&(y, x)| y == 0 || x == 0 || y + 1 == height || x + 1 == width)
        .map(|(y, x)| plane[y * width + x].into())
        .collect();
    border.iter().sum::<f64>() / border.len().max(1) as f64
}

/// The grey image (0–1) of `n` pixels: BT.709 luminance of RGB, or the one channel.
fn grey(chw: &[u8], channels: usize, n: usize) -> Vec<f64> {
    debug_assert_eq!(chw.len(), channels * n);
    if channels == 3 {
        (0..n)
            .map(|i| {
                (0.2125 * f64::from(chw[i]) + 0.7154 * f64::from(chw[n + i]) + 0.0721 * f64::from(chw[2 * n + i]))
                    / 255.0
            })
            .collect()
    } else {
        chw[..n].iter().map(|&v| f64::from(v) / 255.0).collect()
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// A grey image, row-major.
struct Grey<'a> {
    v: &'a [f64],
    height: usize,
    width: usize,
}

/// How a filter reads beyond the border.
#[derive(Clone, Copy)]
pub(crate) enum Border {
    /// `gfedcb|abcdefgh|gfedcba`: OpenCV's default (`BORDER_REFLECT_101`).
    Reflect101,
    /// `dcba|abcd|dcba`: SciPy's `ndimage` mode `reflect` (half-sample symmetric).
    Symmetric,
}

impl Border {
    /// Where index `i` of a line of `n` reads from.
    pub(crate) fn index(self, i: isize, n: usize) -> usize {
        let n = n as isize;
        if n == 1 {
            return 0;
        }
        let period = match self {
            Border::Reflect101 => 2 * (n - 1),
            Border::Symmetric => 2 * n,
        };
        let m = i.rem_euclid(period);
        let folded = match self {
            Border::Reflect101 if m >= n => period - m,
            Border::Symmetric if m >= n => period - 1 - m,
            _ => m,
        };
        folded as usize
    }
}

impl Grey<'_> {
    fn at(&self, y: isize, x: isize, border: Border) -> f64 {
        self.v[border.index(y, self.height) * self.width + border.index(x, self.width)]
    }

    /// The 3×3 correlation of the image with `k` at every pixel.
    fn filter(&self, k: &[[f64; 3]; 3], border: Border) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.v.len());
        for y in 0..self.height as isize {
            for x in 0..self.width as isize {
                let mut s = 0.0;
                for (dy, row) in k.iter().enumerate() {
                    for (dx, w) in row.iter().enumerate() {
                        if *w != 0.0 {
                            s += w * self.at(y + dy as isize - 1, x + dx as isize - 1, border);
                        }
                    }
                }
                out.push(s);
            }
        }
        out
    }

    /// scikit-image's `sobel`: per axis a derivative `[1, 0, -1]` smoothed by `[1, 2, 1] / 4` across, the
    /// magnitude the root of the two squares' mean, SciPy's `reflect` border; its mean over the image.
    fn sobel_mean(&self) -> f64 {
        let h = [[0.25, 0.5, 0.25], [0.0, 0.0, 0.0], [-0.25, -0.5, -0.25]];
        let v = [[0.25, 0.0, -0.25], [0.5, 0.0, -0.5], [0.25, 0.0, -0.25]];
        let (gy, gx) = (self.filter(&h, Border::Symmetric), self.filter(&v, Border::Symmetric));
        let sum: f64 = gy.iter().zip(&gx).map(|(a, b)| ((a * a + b * b) / 2.0).sqrt()).sum();
        sum / self.v.len().max(1) as f64
    }
}

/// OpenCV's `Laplacian` (aperture 1: `[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`, border reflect-101), its variance.
fn laplacian_variance(image: &Grey<'_>) -> f64 {
    mean_sd(&laplacian_of(image)).1.powi(2)
}

fn laplacian_of(image: &Grey<'_>) -> Vec<f64> {
    let k = [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]];
    image.filter(&k, Border::Reflect101)
}

/// The Laplacian `sharpness` reads (OpenCV's, aperture 1, border reflect-101) of a plane of `height × width`
/// values in grey levels: linear, so an intervention can solve for the sharpening that reaches a given sharpness.
pub(crate) fn laplacian(levels: &[f64], height: usize, width: usize) -> Vec<f64> {
    laplacian_of(&Grey { v: levels, height, width })
}

/// Immerkær's fast noise estimate ("Fast noise variance estimation", 1996): the mean absolute response to the
/// difference of two Laplacians over the interior pixels, times √(π/2) / 6. Zero for an image under 3×3.
fn immerkaer_noise(image: &Grey<'_>) -> f64 {
    let (h, w) = (image.height, image.width);
    if h < 3 || w < 3 {
        return 0.0;
    }
    let k = [[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]];
    let mut sum = 0.0;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let mut s = 0.0;
            for (dy, row) in k.iter().enumerate() {
                for (dx, wt) in row.iter().enumerate() {
                    s += wt * image.v[(y + dy - 1) * w + x + dx - 1];
                }
            }
            sum += s.abs();
        }
    }
    sum * (std::f64::consts::PI / 2.0).sqrt() / (6.0 * ((w - 2) * (h - 2)) as f64)
}

/// scikit-image's `rgb2hsv` saturation, `(max - min) / max` (0 where max is 0), its mean.
fn saturation(r: &[u8], g: &[u8], b: &[u8]) -> f64 {
    let sum: f64 = (0..r.len())
        .map(|i| {
            let (hi, lo) = (r[i].max(g[i]).max(b[i]), r[i].min(g[i]).min(b[i]));
            if hi == 0 { 0.0 } else { f64::from(hi - lo) / f64::from(hi) }
        })
        .sum();
    sum / r.len().max(1) as f64
}

/// Hasler and Süsstrunk's colourfulness ("Measuring colourfulness in natural images", 2003): with rg = R − G and
/// yb = (R + G) / 2 − B, √(σ_rg² + σ_yb²) + 0.3 √(μ_rg² + μ_yb²).
fn colourfulness(r: &[u8], g: &[u8], b: &[u8]) -> f64 {
    let rg: Vec<f64> = (0..r.len()).map(|i| f64::from(r[i]) - f64::from(g[i])).collect();
    let yb: Vec<f64> = (0..r.len()).map(|i| 0.5 * (f64::from(r[i]) + f64::from(g[i])) - f64::from(b[i])).collect();
    let ((m_rg, s_rg), (m_yb, s_yb)) = (mean_sd(&rg), mean_sd(&yb));
    (s_rg * s_rg + s_yb * s_yb).sqrt() + 0.3 * (m_rg * m_rg + m_yb * m_yb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borders_fold_as_opencv_and_scipy_do() {
        let idx = |b: Border| (-3..7).map(|i| b.index(i, 4)).collect::<Vec<_>>();
        // OpenCV reflect-101 of abcd: ...d c b | a b c d | c b a...
        assert_eq!(idx(Border::Reflect101), [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        // SciPy reflect: ...c b a | a b c d | d c b...
        assert_eq!(idx(Border::Symmetric), [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
    }

    #[test]
    fn a_flat_grey_image_has_its_level_and_nothing_else() {
        let d = describe(&[51; 3 * 16], 3, 4, 4);
        assert!((d[0] - 0.2).abs() < 1e-12 && d[1..].iter().all(|v| v.abs() < 1e-12), "{d:?}");
    }

    /// The fixture images of `tests/fixtures/descriptors_ref.py`: each case's reference values, its C×H×W bytes
    /// and its channels, height and width.
    fn fixtures() -> Vec<(serde_json::Value, Vec<u8>, [usize; 3])> {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/descriptors_ref.json"))
            .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        (doc["cases"].as_array().unwrap().iter())
            .map(|case| {
                let dim = |k: &str| case[k].as_u64().unwrap() as usize;
                let chw = case["chw"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
                (case.clone(), chw, [dim("channels"), dim("height"), dim("width")])
            })
            .collect()
    }

    /// Against scikit-image, OpenCV, SciPy and NumPy on five fixture images, grey and RGB, square and not.
    #[test]
    fn the_descriptors_match_their_reference_implementations() {
        for (case, chw, [c, h, w]) in fixtures() {
            let got = describe(&chw, c, h, w);
            let names = columns(c);
            assert_eq!(got.len(), names.len());
            assert_eq!(names.len(), case["descriptors"].as_object().unwrap().len(), "{}", case["name"]);
            for (column, value) in names.iter().zip(&got) {
                let want = case["descriptors"][column.name].as_f64().unwrap();
                assert!(
                    (value - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{} of {}: {value}, reference {want}",
                    column.name,
                    case["name"]
                );
            }
        }
    }

    /// The pose against scikit-image's centroid and central moments of the same weights, on the same fixtures.
    #[test]
    fn the_pose_matches_scikit_image_moments() {
        for (case, chw, [c, h, w]) in fixtures() {
            let got = pose(&chw, c, h, w);
            let close = |a: f64, k: &str| {
                let b = case["pose"][k].as_f64().unwrap();
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{k} of {}: {a}, reference {b}", case["name"]);
            };
            close(got.centroid.0, "row");
            close(got.centroid.1, "column");
            close(got.orientation, "orientation");
            close(got.background, "background");
        }
    }

    #[test]
    fn a_bar_turned_counterclockwise_turns_its_orientation_by_as_much() {
        // A horizontal bar on black, then turned by 30° counterclockwise as the image is viewed.
        let (h, w) = (33, 33);
        let bar: Vec<u8> = (0..h * w)
            .map(|i| if (14..19).contains(&(i / w)) && (4..29).contains(&(i % w)) { 200 } else { 0 })
            .collect();
        let flat = pose(&bar, 1, h, w);
        assert!(flat.orientation.abs() < 1e-9 && (flat.centroid.0 - 16.0).abs() < 1e-9, "{flat:?}");
        let turned = pose(&crate::imageops::rotate(&bar, h, w, 30.0, 0), 1, h, w);
        assert!((turned.orientation.to_degrees() - 30.0).abs() < 1.0, "{turned:?}");
    }
}
