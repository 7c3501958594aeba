//! Small operations on images as datasets store them (C×H×W bytes, one plane per channel), shared by the
//! image-space interventions (`intervene` on real images) and the planted corruptions (`corrupt`).

use crate::descriptors::Border;

/// The image-space interventions of `intervene` that undo a corruption of `corrupt`: what naming it means when a test of the
/// failures names their cause. Darkening multiplies every grey level, so it lowers the RMS contrast by the same
/// factor: restoring the contrast undoes it as restoring the brightness does. Nothing undoes an occlusion, whose
/// pixels are gone.
pub fn remedies(corruption: &str) -> &'static [&'static str] {
    match corruption {
        "dark" => &["brightness", "contrast", "gamma"],
        "blur" => &["sharpen"],
        "noise" => &["denoise"],
        "rotation" => &["derotate"],
        _ => &[],
    }
}

/// A value rounded and clamped to a grey level.
pub fn byte(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// `f` applied to each channel plane of a C×H×W image.
pub fn planes(img: &[u8], h: usize, w: usize, f: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    img.chunks_exact(h * w).flat_map(f).collect()
}

/// The 3×3 binomial blur (`[1, 2, 1] / 4` both ways), SciPy's `reflect` border.
pub fn binomial(p: &[u8], h: usize, w: usize) -> Vec<f64> {
    let weights = [0.25, 0.5, 0.25];
    let at = |y: isize, x: isize| f64::from(p[Border::Symmetric.index(y, h) * w + Border::Symmetric.index(x, w)]);
    let mut out = Vec::with_capacity(p.len());
    for y in 0..h as isize {
        for x in 0..w as isize {
            let mut s = 0.0;
            for (dy, wy) in weights.iter().enumerate() {
                for (dx, wx) in weights.iter().enumerate() {
                    s += wy * wx * at(y + dy as isize - 1, x + dx as isize - 1);
                }
            }
            out.push(s);
        }
    }
    out
}

/// The 3×3 median, SciPy's `reflect` border (as `scipy.ndimage.median_filter(size=3)`).
pub fn median3(p: &[u8], h: usize, w: usize) -> Vec<u8> {
    let at = |y: isize, x: isize| p[Border::Symmetric.index(y, h) * w + Border::Symmetric.index(x, w)];
    let mut out = Vec::with_capacity(p.len());
    for y in 0..h as isize {
        for x in 0..w as isize {
            let mut v = [0u8; 9];
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = at(y + (i / 3) as isize - 1, x + (i % 3) as isize - 1);
            }
            v.sort_unstable();
            out.push(v[4]);
        }
    }
    out
}

/// Each plane rotated by `degrees` counterclockwise about the image's centre, bilinear, `fill` where the rotated
/// image has no source pixel (as `scipy.ndimage.rotate(reshape=False, order=1, mode="constant")` does).
pub fn rotate(p: &[u8], h: usize, w: usize, degrees: f64, fill: u8) -> Vec<u8> {
    let centre = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    warp(p, h, w, degrees, centre, centre, fill)
}

/// A plane turned by `degrees` counterclockwise about the point `from` (row, column) and moved so that `from` lands
/// on `to`, bilinear, `fill` where no source pixel maps: [`rotate`] when both are the centre, a shift when the angle
/// is 0.
pub fn warp(p: &[u8], h: usize, w: usize, degrees: f64, from: (f64, f64), to: (f64, f64), fill: u8) -> Vec<u8> {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let at = |y: isize, x: isize| {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            None
        } else {
            Some(f64::from(p[y as usize * w + x as usize]))
        }
    };
    let mut out = Vec::with_capacity(p.len());
    for y in 0..h {
        for x in 0..w {
            // The source of (y, x): the point the rotation takes there (rows grow downwards).
            let (dy, dx) = (y as f64 - to.0, x as f64 - to.1);
            let (sy, sx) = (from.0 + cos * dy + sin * dx, from.1 - sin * dy + cos * dx);
            // Outside the image (a point a hair beyond an edge still reads the edge).
            if sy < -1e-9 || sx < -1e-9 || sy > h as f64 - 1.0 + 1e-9 || sx > w as f64 - 1.0 + 1e-9 {
                out.push(fill);
                continue;
            }
            let (y0, x0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - y0, sx - x0);
            let (y0, x0) = (y0 as isize, x0 as isize);
            let corners = [at(y0, x0), at(y0, x0 + 1), at(y0 + 1, x0), at(y0 + 1, x0 + 1)];
            let weights = [(1.0 - fy) * (1.0 - fx), (1.0 - fy) * fx, fy * (1.0 - fx), fy * fx];
            let v: f64 = corners.iter().zip(weights).map(|(c, wt)| c.unwrap_or(f64::from(fill)) * wt).sum();
            out.push(byte(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_removes_an_isolated_speck_and_the_blur_keeps_a_flat_image() {
        let mut p = vec![10u8; 25];
        p[12] = 250;
        assert_eq!(median3(&p, 5, 5), vec![10u8; 25]);
        assert!(binomial(&[7u8; 12], 3, 4).iter().all(|&b| (b - 7.0).abs() < 1e-12));
    }

    #[test]
    fn a_quarter_turn_moves_each_pixel_where_numpy_rot90_puts_it() {
        let p: Vec<u8> = (0..9).map(|v| v * 20).collect();
        // numpy.rot90 of [[0, 20, 40], [60, 80, 100], [120, 140, 160]] (counterclockwise).
        assert_eq!(rotate(&p, 3, 3, 90.0, 0), [40, 100, 160, 20, 80, 140, 0, 60, 120]);
        assert_eq!(rotate(&p, 3, 3, 0.0, 0), p);
        // Half a turn of a 2×3 image about its centre.
        assert_eq!(rotate(&[1, 2, 3, 4, 5, 6], 2, 3, 180.0, 0), [6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn a_warp_without_a_turn_shifts_the_image() {
        let p: Vec<u8> = (1..=9).map(|v| v * 10).collect();
        // From (1, 1) to (1, 2): every column one to the right, the first filled.
        assert_eq!(warp(&p, 3, 3, 0.0, (1.0, 1.0), (1.0, 2.0), 0), [0, 10, 20, 0, 40, 50, 0, 70, 80]);
        let centre = (1.0, 1.0);
        assert_eq!(warp(&p, 3, 3, 90.0, centre, centre, 0), rotate(&p, 3, 3, 90.0, 0));
    }
}
