//! Pixel operations the simulators share: a float RGB canvas, perspective mapping of a flat texture placed in 3D,
//! and the sensor and weather effects (blur, motion blur, noise, fog, brightness, contrast).

use rand_chacha::ChaCha8Rng;
use tiny_skia::Pixmap;

use rand::Rng;

/// Two independent standard normal draws (Box-Muller, single precision).
fn normal_pair(rng: &mut ChaCha8Rng) -> (f32, f32) {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random_range(0.0..1.0);
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// An RGB image with channels in `0..=1`, row-major.
#[derive(Clone)]
pub struct Canvas {
    pub w: usize,
    pub h: usize,
    pub px: Vec<[f32; 3]>,
}

impl Canvas {
    /// An opaque pixmap (premultiplied alpha of 1) as a canvas.
    pub fn from_pixmap(p: &Pixmap) -> Canvas {
        let px = p
            .pixels()
            .iter()
            .map(|c| [c.red() as f32 / 255.0, c.green() as f32 / 255.0, c.blue() as f32 / 255.0])
            .collect();
        Canvas { w: p.width() as usize, h: p.height() as usize, px }
    }

    /// Interleaved RGB bytes.
    pub fn to_rgb8(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.px.len() * 3);
        for p in &self.px {
            for c in p {
                out.push((c.clamp(0.0, 1.0) * 255.0 + 0.5) as u8);
            }
        }
        out
    }

    /// Multiplies every pixel by `gain`, scaled per pixel by `weight(i)` between `1` (full gain) and `0` (none).
    pub fn gain(&mut self, gain: [f32; 3], weight: impl Fn(usize) -> f32) {
        for (i, p) in self.px.iter_mut().enumerate() {
            let w = weight(i);
            for c in 0..3 {
                p[c] *= 1.0 + (gain[c] - 1.0) * w;
            }
        }
    }

    /// Pulls contrast towards the image mean: `1` keeps it, `0` makes the image flat.
    pub fn contrast(&mut self, amount: f32) {
        let n = self.px.len() as f32;
        let mean: [f32; 3] = std::array::from_fn(|c| self.px.iter().map(|p| p[c]).sum::<f32>() / n);
        for p in &mut self.px {
            for c in 0..3 {
                p[c] = mean[c] + (p[c] - mean[c]) * amount;
            }
        }
    }

    /// Blends towards `colour` by `amount` (fog, haze).
    pub fn fog(&mut self, amount: f32, colour: [f32; 3]) {
        for p in &mut self.px {
            for c in 0..3 {
                p[c] = p[c] * (1.0 - amount) + colour[c] * amount;
            }
        }
    }

    /// Gaussian sensor noise with standard deviation `sigma` (in 0..1 units).
    pub fn noise(&mut self, sigma: f32, rng: &mut ChaCha8Rng) {
        if sigma <= 0.0 {
            return;
        }
        let mut spare: Option<f32> = None;
        for p in &mut self.px {
            for c in p.iter_mut() {
                let z = match spare.take() {
                    Some(z) => z,
                    None => {
                        let (a, b) = normal_pair(rng);
                        spare = Some(b);
                        a
                    }
                };
                *c += sigma * z;
            }
        }
    }

    fn sample(&self, x: f32, y: f32) -> [f32; 3] {
        let x = x.clamp(0.0, (self.w - 1) as f32);
        let y = y.clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (x as usize, y as usize); // x, y >= 0 here: truncation is the floor
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let at = |xx: usize, yy: usize| self.px[yy * self.w + xx];
        std::array::from_fn(|c| {
            let top = at(x0, y0)[c] * (1.0 - fx) + at(x1, y0)[c] * fx;
            let bottom = at(x0, y1)[c] * (1.0 - fx) + at(x1, y1)[c] * fx;
            top * (1.0 - fy) + bottom * fy
        })
    }

    /// Motion blur: the mean along a line of `length` pixels at `angle_deg`.
    pub fn motion_blur(&mut self, length: f32, angle_deg: f32) {
        if length < 0.5 {
            return;
        }
        let taps = (length.ceil() as usize).max(1) * 2 + 1;
        let (dx, dy) = (angle_deg.to_radians().cos() * length, angle_deg.to_radians().sin() * length);
        let src = self.clone();
        for y in 0..self.h {
            for x in 0..self.w {
                let mut acc = [0.0f32; 3];
                for t in 0..taps {
                    let s = t as f32 / (taps - 1) as f32 - 0.5;
                    let v = src.sample(x as f32 + s * dx, y as f32 + s * dy);
                    for c in 0..3 {
                        acc[c] += v[c];
                    }
                }
                self.px[y * self.w + x] = acc.map(|a| a / taps as f32);
            }
        }
    }

    /// A separable box blur of the given radius in pixels (defocus).
    pub fn box_blur(&mut self, radius: usize) {
        if radius == 0 {
            return;
        }
        for horizontal in [true, false] {
            let src = self.px.clone();
            let (outer, inner) = if horizontal { (self.h, self.w) } else { (self.w, self.h) };
            for o in 0..outer {
                for i in 0..inner {
                    let lo = i.saturating_sub(radius);
                    let hi = (i + radius).min(inner - 1);
                    let mut acc = [0.0f32; 3];
                    for j in lo..=hi {
                        let idx = if horizontal { o * self.w + j } else { j * self.w + o };
                        for c in 0..3 {
                            acc[c] += src[idx][c];
                        }
                    }
                    let idx = if horizontal { o * self.w + i } else { i * self.w + o };
                    self.px[idx] = acc.map(|a| a / (hi - lo + 1) as f32);
                }
            }
        }
    }
}

/// A flat picture with premultiplied alpha, sampled bilinearly.
pub struct Texture {
    pub w: usize,
    pub h: usize,
    px: Vec<[f32; 4]>,
}

impl Texture {
    pub fn from_pixmap(p: &Pixmap) -> Texture {
        let px = p
            .pixels()
            .iter()
            .map(|c| {
                [c.red() as f32 / 255.0, c.green() as f32 / 255.0, c.blue() as f32 / 255.0, c.alpha() as f32 / 255.0]
            })
            .collect();
        Texture { w: p.width() as usize, h: p.height() as usize, px }
    }

    fn sample(&self, x: f32, y: f32) -> [f32; 4] {
        // Pixel centres sit at +0.5; outside the texture is transparent.
        let (x, y) = (x + 0.5, y + 0.5); // shifted by one pixel so that truncation is a floor for x >= -1
        let (x0, y0) = ((x as i32) as f32, (y as i32) as f32);
        let (fx, fy) = (x - x0, y - y0);
        let (x0, y0) = (x0 - 1.0, y0 - 1.0);
        let at = |xx: f32, yy: f32| -> [f32; 4] {
            if xx < 0.0 || yy < 0.0 || xx >= self.w as f32 || yy >= self.h as f32 {
                [0.0; 4]
            } else {
                self.px[yy as usize * self.w + xx as usize]
            }
        };
        let (a, b, c, d) = (at(x0, y0), at(x0 + 1.0, y0), at(x0, y0 + 1.0), at(x0 + 1.0, y0 + 1.0));
        std::array::from_fn(|k| (a[k] * (1.0 - fx) + b[k] * fx) * (1.0 - fy) + (c[k] * (1.0 - fx) + d[k] * fx) * fy)
    }
}

/// A pinhole camera: focal length and principal point in output pixels.
#[derive(Debug, Clone, Copy)]
pub struct Camera {
    pub f: f64,
    pub cx: f64,
    pub cy: f64,
}

/// A flat rectangle in camera space: `P(u, v) = centre + u·a + v·b` for `u, v` in `[-1, 1]`.
#[derive(Debug, Clone, Copy)]
pub struct Plane {
    pub centre: [f64; 3],
    pub a: [f64; 3],
    pub b: [f64; 3],
}

impl Plane {
    /// A plane of half-size `radius` at `centre`, turned by roll (in-plane), then pitch (about x), then yaw (about y).
    pub fn oriented(centre: [f64; 3], radius: f64, roll_deg: f64, pitch_deg: f64, yaw_deg: f64) -> Plane {
        let r = rotation(roll_deg, pitch_deg, yaw_deg);
        let apply = |v: [f64; 3]| -> [f64; 3] {
            std::array::from_fn(|i| radius * (r[i][0] * v[0] + r[i][1] * v[1] + r[i][2] * v[2]))
        };
        Plane { centre, a: apply([1.0, 0.0, 0.0]), b: apply([0.0, 1.0, 0.0]) }
    }

    /// Where a camera ray through output pixel `(x, y)` meets the plane, as `(u, v)`.
    pub fn hit(&self, cam: &Camera, x: f64, y: f64) -> Option<(f64, f64)> {
        self.mapping(cam).map(x, y)
    }

    /// The projective map from output pixels to plane coordinates, computed once per plane and camera.
    ///
    /// A ray `t·d` meets the plane where `t = n·C / n·d` (`n = a × b`); since `a ⊥ b`,
    /// `u = (t·d − C)·a / |a|² = ((n·C) a − (C·a) n)·d / (|a|² n·d)`, and likewise `v` with `b`:
    /// both are ratios of linear functions of `d`, so of the pixel `(x, y)`.
    pub fn mapping(&self, cam: &Camera) -> Mapping {
        let n = cross(self.a, self.b);
        let nc = dot(n, self.centre);
        let (ca, cb) = (dot(self.centre, self.a), dot(self.centre, self.b));
        let u: [f64; 3] = std::array::from_fn(|i| nc * self.a[i] - ca * n[i]);
        let v: [f64; 3] = std::array::from_fn(|i| nc * self.b[i] - cb * n[i]);
        Mapping { cam: *cam, u, v, n, nc, inv_a2: 1.0 / dot(self.a, self.a), inv_b2: 1.0 / dot(self.b, self.b) }
    }

    /// The output pixel a plane point projects to.
    pub fn project(&self, cam: &Camera, u: f64, v: f64) -> (f64, f64) {
        let p: [f64; 3] = std::array::from_fn(|i| self.centre[i] + u * self.a[i] + v * self.b[i]);
        (cam.f * p[0] / p[2] + cam.cx, cam.f * p[1] / p[2] + cam.cy)
    }
}

/// See [`Plane::mapping`].
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    cam: Camera,
    u: [f64; 3],
    v: [f64; 3],
    n: [f64; 3],
    nc: f64,
    inv_a2: f64,
    inv_b2: f64,
}

impl Mapping {
    #[inline]
    pub fn map(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let d = [(x - self.cam.cx) / self.cam.f, (y - self.cam.cy) / self.cam.f, 1.0];
        let nd = dot(self.n, d);
        // Parallel rays never meet the plane; a negative t means it lies behind the camera.
        if nd.abs() < 1e-12 || self.nc / nd <= 0.0 {
            return None;
        }
        Some((dot(self.u, d) * self.inv_a2 / nd, dot(self.v, d) * self.inv_b2 / nd))
    }
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// Rotation matrix: roll about z first, then pitch about x, then yaw about y.
pub fn rotation(roll_deg: f64, pitch_deg: f64, yaw_deg: f64) -> [[f64; 3]; 3] {
    let (sr, cr) = roll_deg.to_radians().sin_cos();
    let (sp, cp) = pitch_deg.to_radians().sin_cos();
    let (sy, cy) = yaw_deg.to_radians().sin_cos();
    let rz = [[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]];
    let rx = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
    let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    matmul(ry, matmul(rx, rz))
}

fn matmul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

/// Draws `tex` mapped onto `plane` over the canvas (2×2 samples per pixel); returns each pixel's coverage.
pub fn warp(canvas: &mut Canvas, tex: &Texture, cam: &Camera, plane: &Plane) -> Vec<f32> {
    let mut coverage = vec![0.0f32; canvas.px.len()];
    const OFFSETS: [(f64, f64); 4] = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    // Only pixels inside the projected corners' bounding box can see the plane (it lies in front of the camera).
    let corners = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)].map(|(u, v)| plane.project(cam, u, v));
    let clamp = |v: f64, hi: usize| (v.max(0.0) as usize).min(hi);
    let x0 = clamp(corners.iter().map(|c| c.0).fold(f64::INFINITY, f64::min).floor() - 1.0, canvas.w);
    let x1 = clamp(corners.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max).ceil() + 1.0, canvas.w);
    let y0 = clamp(corners.iter().map(|c| c.1).fold(f64::INFINITY, f64::min).floor() - 1.0, canvas.h);
    let y1 = clamp(corners.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max).ceil() + 1.0, canvas.h);
    let mapping = plane.mapping(cam);
    for y in y0..y1 {
        for x in x0..x1 {
            let mut acc = [0.0f32; 4];
            for (ox, oy) in OFFSETS {
                if let Some((u, v)) = mapping.map(x as f64 + ox, y as f64 + oy)
                    && (-1.0..=1.0).contains(&u)
                    && (-1.0..=1.0).contains(&v)
                {
                    let s =
                        tex.sample(((u + 1.0) * 0.5 * tex.w as f64) as f32, ((v + 1.0) * 0.5 * tex.h as f64) as f32);
                    for k in 0..4 {
                        acc[k] += s[k] * 0.25;
                    }
                }
            }
            let i = y * canvas.w + x;
            let dst = canvas.px[i];
            canvas.px[i] = std::array::from_fn(|c| acc[c] + dst[c] * (1.0 - acc[3]));
            coverage[i] = acc[3];
        }
    }
    coverage
}

/// Anti-aliased vector drawing on a pixmap, in pixel coordinates.
pub struct Pen<'a> {
    pub pixmap: &'a mut Pixmap,
}

/// An sRGB colour with channels in `0..=1`.
pub type Rgb = [f32; 3];

fn paint(rgb: Rgb, alpha: f32) -> tiny_skia::Paint<'static> {
    let mut p = tiny_skia::Paint::default();
    p.set_color(
        tiny_skia::Color::from_rgba(
            rgb[0].clamp(0.0, 1.0),
            rgb[1].clamp(0.0, 1.0),
            rgb[2].clamp(0.0, 1.0),
            alpha.clamp(0.0, 1.0),
        )
        .expect("clamped channels are valid"),
    );
    p.anti_alias = true;
    p
}

impl Pen<'_> {
    pub fn fill(&mut self, path: &tiny_skia::Path, rgb: Rgb, alpha: f32) {
        self.pixmap.fill_path(
            path,
            &paint(rgb, alpha),
            tiny_skia::FillRule::EvenOdd,
            tiny_skia::Transform::identity(),
            None,
        );
    }

    pub fn stroke(&mut self, path: &tiny_skia::Path, rgb: Rgb, width: f32) {
        let stroke = tiny_skia::Stroke {
            width,
            line_cap: tiny_skia::LineCap::Round,
            line_join: tiny_skia::LineJoin::Round,
            ..tiny_skia::Stroke::default()
        };
        self.pixmap.stroke_path(path, &paint(rgb, 1.0), &stroke, tiny_skia::Transform::identity(), None);
    }

    pub fn circle(&mut self, cx: f32, cy: f32, r: f32, rgb: Rgb, alpha: f32) {
        if let Some(path) = tiny_skia::PathBuilder::from_circle(cx, cy, r.max(0.01)) {
            self.fill(&path, rgb, alpha);
        }
    }

    pub fn polygon(&mut self, points: &[(f32, f32)], rgb: Rgb, alpha: f32) {
        if let Some(path) = polygon_path(points) {
            self.fill(&path, rgb, alpha);
        }
    }

    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, rgb: Rgb, alpha: f32) {
        if let Some(r) = tiny_skia::Rect::from_xywh(x, y, w.max(0.01), h.max(0.01)) {
            self.pixmap.fill_rect(r, &paint(rgb, alpha), tiny_skia::Transform::identity(), None);
        }
    }
}

/// A closed polygon path.
pub fn polygon_path(points: &[(f32, f32)]) -> Option<tiny_skia::Path> {
    let mut pb = tiny_skia::PathBuilder::new();
    let (&first, rest) = points.split_first()?;
    pb.move_to(first.0, first.1);
    for &(x, y) in rest {
        pb.line_to(x, y);
    }
    pb.close();
    pb.finish()
}

/// The vertices of a regular polygon of `n` sides around `(cx, cy)`, the first at angle `start_deg` (0 = right, y down).
pub fn regular_polygon(cx: f32, cy: f32, r: f32, n: usize, start_deg: f32) -> Vec<(f32, f32)> {
    (0..n)
        .map(|i| {
            let a = (start_deg + 360.0 * i as f32 / n as f32).to_radians();
            (cx + r * a.cos(), cy + r * a.sin())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_facing_plane_projects_its_centre_to_the_principal_point_and_back() {
        let cam = Camera { f: 100.0, cx: 32.0, cy: 32.0 };
        let plane = Plane::oriented([0.0, 0.0, 3.0], 1.0, 10.0, 20.0, 30.0);
        assert_eq!(plane.project(&cam, 0.0, 0.0), (32.0, 32.0));
        let (x, y) = plane.project(&cam, 0.4, -0.7);
        let (u, v) = plane.hit(&cam, x, y).unwrap();
        assert!((u - 0.4).abs() < 1e-9 && (v + 0.7).abs() < 1e-9);
    }

    #[test]
    fn yaw_foreshortens_the_width_by_its_cosine() {
        let cam = Camera { f: 1000.0, cx: 0.0, cy: 0.0 };
        let flat = Plane::oriented([0.0, 0.0, 100.0], 1.0, 0.0, 0.0, 0.0);
        let turned = Plane::oriented([0.0, 0.0, 100.0], 1.0, 0.0, 0.0, 60.0);
        let width = |p: &Plane| p.project(&cam, 1.0, 0.0).0 - p.project(&cam, -1.0, 0.0).0;
        assert!((width(&turned) / width(&flat) - 0.5).abs() < 0.01);
    }
}
