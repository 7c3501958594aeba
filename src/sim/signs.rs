//! `signs`: traffic signs of 15 classes from real sign families, in a street scene, under weather and sensor effects.
//!
//! The sign face is drawn flat (shape, colours, pictogram or stroke-drawn digits and letters), aged (fading, dirt),
//! then placed in 3D (roll, pitch, yaw, distance, offset) and seen through a pinhole camera over a background with
//! clutter; occluders, night, fog, brightness, contrast, motion blur and noise follow.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tiny_skia::{PathBuilder, Pixmap};

use super::raster::{Camera, Canvas, Pen, Plane, Rgb, Texture, polygon_path, regular_polygon, warp};
use super::{DefaultDist, Label, ParamKind, ParamSpec, Sample, Simulator, Target};

pub struct Signs;

/// The classes, in label order.
pub const CLASSES: [&str; 15] = [
    "speed_30",
    "speed_50",
    "speed_70",
    "speed_100",
    "no_entry",
    "end_of_limits",
    "ahead_only",
    "keep_right",
    "roundabout",
    "general_caution",
    "bend_right",
    "yield",
    "stop",
    "priority_road",
    "parking",
];

const BACKGROUNDS: [&str; 3] = ["urban", "rural", "sky"];
const OCCLUDERS: [&str; 3] = ["foliage", "pole", "vehicle"];
const SIDES: [&str; 4] = ["left", "right", "top", "bottom"];

const fn real(
    name: &'static str,
    min: f64,
    max: f64,
    unit: &'static str,
    default: DefaultDist,
    doc: &'static str,
) -> ParamSpec {
    ParamSpec { name, kind: ParamKind::Real { min, max, unit }, default, doc }
}

const fn angle(name: &'static str, min: f64, max: f64, default: DefaultDist, doc: &'static str) -> ParamSpec {
    ParamSpec { name, kind: ParamKind::Angle { min, max }, default, doc }
}

const fn axial(name: &'static str, min: f64, max: f64, default: DefaultDist, doc: &'static str) -> ParamSpec {
    ParamSpec { name, kind: ParamKind::Axial { min, max }, default, doc }
}

const fn categorical(name: &'static str, values: &'static [&'static str], doc: &'static str) -> ParamSpec {
    ParamSpec { name, kind: ParamKind::Categorical(values), default: DefaultDist::AnyCategory, doc }
}

use DefaultDist::{Normal, Uniform};

const PARAMS: [ParamSpec; 20] = [
    categorical("class", &CLASSES, "the sign; the label of the `signs` task"),
    real("scale", 0.2, 1.0, "image widths", Uniform(0.55, 0.9), "sign diameter as a share of the image width"),
    real("offset_x", -0.35, 0.35, "image widths", Normal(0.0, 0.05), "horizontal offset of the sign centre"),
    real("offset_y", -0.35, 0.35, "image heights", Normal(0.0, 0.05), "vertical offset of the sign centre"),
    angle("rotation", -60.0, 60.0, Normal(0.0, 4.0), "in-plane rotation (a tilted pole)"),
    angle("yaw", -75.0, 75.0, Normal(0.0, 12.0), "out-of-plane turn about the vertical axis (perspective)"),
    angle("pitch", -50.0, 50.0, Normal(0.0, 6.0), "out-of-plane tilt about the horizontal axis"),
    real("brightness", 0.1, 2.0, "gain", Uniform(0.75, 1.2), "overall illumination gain"),
    real("contrast", 0.1, 1.5, "gain", Uniform(0.75, 1.1), "contrast around the image mean"),
    real("motion_blur", 0.0, 12.0, "pixels at 64 px", Uniform(0.0, 1.0), "length of the motion blur"),
    axial(
        "blur_angle",
        0.0,
        180.0,
        Uniform(0.0, 180.0),
        "direction of the motion blur (an axis: 0° and 180° are the same)",
    ),
    real("occlusion", 0.0, 0.8, "share of the sign", Uniform(0.0, 0.08), "how much of the sign an occluder hides"),
    categorical("occluder", &OCCLUDERS, "what hides the sign"),
    categorical("occlusion_side", &SIDES, "the side the occluder comes from"),
    real("fading", 0.0, 1.0, "share", Uniform(0.0, 0.3), "sun-bleached colours"),
    real("dirt", 0.0, 1.0, "share", Uniform(0.0, 0.2), "spots of dirt on the face"),
    real("clutter", 0.0, 1.0, "share", Uniform(0.0, 0.6), "density of objects in the background"),
    categorical("background", &BACKGROUNDS, "the kind of scene behind the sign"),
    real("fog", 0.0, 1.0, "share", Uniform(0.0, 0.15), "haze blended over the image"),
    real(
        "night",
        0.0,
        1.0,
        "share",
        Uniform(0.0, 0.15),
        "darkness; the retro-reflective sign stays brighter than the scene",
    ),
];

/// Noise is drawn with the other sensor effects; it is a parameter like any other.
const NOISE: ParamSpec = real("noise", 0.0, 0.2, "sd of 0..1 pixels", Uniform(0.0, 0.02), "Gaussian sensor noise");

static ALL_PARAMS: [ParamSpec; 21] = {
    let mut all = [NOISE; 21];
    let mut i = 0;
    while i < 20 {
        all[i] = PARAMS[i];
        i += 1;
    }
    all
};

/// Indices into the parameter row.
mod p {
    pub const CLASS: usize = 0;
    pub const SCALE: usize = 1;
    pub const OFFSET_X: usize = 2;
    pub const OFFSET_Y: usize = 3;
    pub const ROTATION: usize = 4;
    pub const YAW: usize = 5;
    pub const PITCH: usize = 6;
    pub const BRIGHTNESS: usize = 7;
    pub const CONTRAST: usize = 8;
    pub const MOTION_BLUR: usize = 9;
    pub const BLUR_ANGLE: usize = 10;
    pub const OCCLUSION: usize = 11;
    pub const OCCLUDER: usize = 12;
    pub const OCCLUSION_SIDE: usize = 13;
    pub const FADING: usize = 14;
    pub const DIRT: usize = 15;
    pub const CLUTTER: usize = 16;
    pub const BACKGROUND: usize = 17;
    pub const FOG: usize = 18;
    pub const NIGHT: usize = 19;
    pub const NOISE: usize = 20;
}

const RED: Rgb = [0.78, 0.06, 0.09];
const BLUE: Rgb = [0.05, 0.27, 0.66];
const WHITE: Rgb = [0.96, 0.96, 0.94];
const BLACK: Rgb = [0.06, 0.06, 0.07];
const YELLOW: Rgb = [0.98, 0.76, 0.05];
const GREY: Rgb = [0.45, 0.45, 0.47];

impl Simulator for Signs {
    fn name(&self) -> &'static str {
        "signs"
    }

    fn tasks(&self) -> &'static [&'static str] {
        &["signs"]
    }

    fn label_params(&self, _task: &str) -> &'static [&'static str] {
        &["class"]
    }

    fn target(&self, _task: &str) -> Target {
        Target::Classification { classes: CLASSES.iter().map(|c| c.to_string()).collect() }
    }

    fn params(&self) -> &'static [ParamSpec] {
        &ALL_PARAMS
    }

    fn render(&self, _task: &str, v: &[f64], size: u32, rng: &mut ChaCha8Rng) -> Sample {
        let class = v[p::CLASS] as usize;
        let s = size as f32;
        let face_px = (size * 2).max(64);

        // The scene behind the sign, with the pole.
        let mut scene = Pixmap::new(size, size).expect("size is positive");
        background(&mut scene, v[p::BACKGROUND] as usize, v[p::CLUTTER] as f32, rng);
        let radius_px = v[p::SCALE] as f32 * s / 2.0;
        let (cx, cy) = (s / 2.0 + v[p::OFFSET_X] as f32 * s, s / 2.0 + v[p::OFFSET_Y] as f32 * s);
        let tilt = (v[p::ROTATION] as f32).to_radians();
        let pole_w = (radius_px * 0.12).max(1.0);
        let pole_len = s * 1.5;
        let (dx, dy) = (-tilt.sin() * pole_len, tilt.cos() * pole_len);
        let pole = polygon_path(&[
            (cx - pole_w / 2.0, cy),
            (cx + pole_w / 2.0, cy),
            (cx + pole_w / 2.0 + dx, cy + dy),
            (cx - pole_w / 2.0 + dx, cy + dy),
        ]);
        let mut pen = Pen { pixmap: &mut scene };
        if let Some(pole) = pole {
            pen.fill(&pole, [0.38, 0.39, 0.41], 1.0);
        }
        let mut canvas = Canvas::from_pixmap(&scene);

        // The sign face, aged, then seen in perspective.
        let mut face = Pixmap::new(face_px, face_px).expect("size is positive");
        draw_face(&mut face, class);
        age(&mut face, v[p::FADING] as f32, v[p::DIRT] as f32, rng);
        let distance = 4.0;
        let cam = Camera { f: f64::from(radius_px) * distance, cx: f64::from(s) / 2.0, cy: f64::from(s) / 2.0 };
        let centre =
            [(f64::from(cx) - cam.cx) / cam.f * distance, (f64::from(cy) - cam.cy) / cam.f * distance, distance];
        let plane = Plane::oriented(centre, 1.0, v[p::ROTATION], v[p::PITCH], v[p::YAW]);
        let coverage = warp(&mut canvas, &Texture::from_pixmap(&face), &cam, &plane);

        occlude(&mut canvas, &coverage, (cx, cy, radius_px), v, rng);

        // Light: night darkens the scene more than the retro-reflective sign; brightness scales everything.
        let night = v[p::NIGHT] as f32;
        let brightness = v[p::BRIGHTNESS] as f32;
        let scene_gain = brightness * (1.0 - 0.88 * night);
        let sign_gain = brightness * (1.0 - 0.45 * night);
        let tint = [1.0 - 0.25 * night, 1.0 - 0.15 * night, 1.0];
        canvas.gain(std::array::from_fn(|c| scene_gain * tint[c]), |_| 1.0);
        canvas.gain([sign_gain / scene_gain.max(1e-3); 3], |i| coverage[i]);
        canvas.fog(v[p::FOG] as f32 * 0.85, [0.78, 0.8, 0.82]);
        canvas.contrast(v[p::CONTRAST] as f32);
        canvas.motion_blur(v[p::MOTION_BLUR] as f32 * s / 64.0, v[p::BLUR_ANGLE] as f32);
        canvas.noise(v[p::NOISE] as f32, rng);
        Sample { rgb: canvas.to_rgb8(), label: Label::Class(class) }
    }
}

/// Sky, ground and, with `clutter`, buildings, trees and poles.
fn background(pixmap: &mut Pixmap, kind: usize, clutter: f32, rng: &mut ChaCha8Rng) {
    let s = pixmap.width() as f32;
    let jitter = |rng: &mut ChaCha8Rng, c: Rgb, amount: f32| -> Rgb {
        c.map(|x| (x + rng.random_range(-amount..amount)).clamp(0.0, 1.0))
    };
    let (sky, ground) = match BACKGROUNDS[kind] {
        "urban" => ([0.62, 0.68, 0.74], [0.35, 0.34, 0.33]),
        "rural" => ([0.55, 0.7, 0.88], [0.3, 0.45, 0.2]),
        _ => ([0.45, 0.62, 0.9], [0.5, 0.6, 0.75]),
    };
    let horizon = s * rng.random_range(0.45..0.8);
    let mut pen = Pen { pixmap };
    pen.rect(0.0, 0.0, s, horizon, jitter(rng, sky, 0.06), 1.0);
    pen.rect(0.0, horizon, s, s - horizon, jitter(rng, ground, 0.06), 1.0);
    let objects = (clutter * 14.0).round() as usize;
    for _ in 0..objects {
        let x = rng.random_range(-0.1..1.0) * s;
        match (BACKGROUNDS[kind], rng.random_range(0..3)) {
            ("urban", 0 | 1) | ("sky", 0) => {
                let w = rng.random_range(0.1..0.35) * s;
                let h = rng.random_range(0.2..0.7) * s;
                let colour = jitter(rng, [0.55, 0.5, 0.47], 0.2);
                pen.rect(x, horizon - h, w, h + 2.0, colour, 1.0);
                for _ in 0..(w * h / (s * s) * 30.0) as usize {
                    let (wx, wy) = (x + rng.random_range(0.0..w), horizon - rng.random_range(0.0..h));
                    pen.rect(wx, wy, s * 0.03, s * 0.04, jitter(rng, [0.25, 0.3, 0.35], 0.1), 1.0);
                }
            }
            ("rural", _) | (_, 2) => {
                let r = rng.random_range(0.05..0.2) * s;
                let y = horizon - rng.random_range(0.0..0.3) * s;
                pen.rect(x - r * 0.1, y, r * 0.2, r * 1.5, [0.3, 0.22, 0.15], 1.0);
                pen.circle(x, y, r, jitter(rng, [0.2, 0.4, 0.15], 0.1), 1.0);
            }
            _ => {
                let w = rng.random_range(0.01..0.04) * s;
                pen.rect(x, rng.random_range(0.0..0.5) * s, w, s, jitter(rng, [0.3, 0.3, 0.3], 0.1), 1.0);
            }
        }
    }
}

/// Draws the sign face centred in a square pixmap, filling most of it. Long by design: one arm per sign class, each
/// its own drawing.
fn draw_face(pixmap: &mut Pixmap, class: usize) {
    let s = pixmap.width() as f32;
    let (c, r) = (s / 2.0, s * 0.48);
    let mut pen = Pen { pixmap };
    match CLASSES[class] {
        name @ ("speed_30" | "speed_50" | "speed_70" | "speed_100") => {
            prohibitory(&mut pen, c, r);
            let digits = &name["speed_".len()..];
            let height = r * if digits.len() == 3 { 0.7 } else { 0.85 };
            text(&mut pen, digits, c, c, height, BLACK, r * 0.13);
        }
        "no_entry" => {
            pen.circle(c, c, r, RED, 1.0);
            pen.rect(c - r * 0.7, c - r * 0.17, r * 1.4, r * 0.34, WHITE, 1.0);
        }
        "end_of_limits" => {
            pen.circle(c, c, r, WHITE, 1.0);
            ring(&mut pen, c, r, r * 0.05, GREY);
            for k in -2..=2 {
                let o = k as f32 * r * 0.16;
                let mut pb = PathBuilder::new();
                pb.move_to(c - r * 0.62 + o, c + r * 0.62 + o);
                pb.line_to(c + r * 0.62 + o, c - r * 0.62 + o);
                if let Some(path) = pb.finish() {
                    pen.stroke(&path, BLACK, r * 0.06);
                }
            }
        }
        "ahead_only" => {
            pen.circle(c, c, r, BLUE, 1.0);
            arrow(&mut pen, c, c, r * 0.62, 0.0, r);
        }
        "keep_right" => {
            pen.circle(c, c, r, BLUE, 1.0);
            arrow(&mut pen, c, c, r * 0.62, 135.0, r);
        }
        "roundabout" => {
            pen.circle(c, c, r, BLUE, 1.0);
            for k in 0..3 {
                let a0 = (k as f32 * 120.0 + 20.0).to_radians();
                let a1 = a0 + 85f32.to_radians();
                let am = (a0 + a1) / 2.0;
                let rr = r * 0.5;
                let mut pb = PathBuilder::new();
                pb.move_to(c + rr * a0.cos(), c + rr * a0.sin());
                pb.quad_to(c + rr * 1.25 * am.cos(), c + rr * 1.25 * am.sin(), c + rr * a1.cos(), c + rr * a1.sin());
                if let Some(path) = pb.finish() {
                    pen.stroke(&path, WHITE, r * 0.14);
                }
                let tip = (c + rr * (a1 + 0.35).cos(), c + rr * (a1 + 0.35).sin());
                let back_out = (c + rr * 1.35 * a1.cos(), c + rr * 1.35 * a1.sin());
                let back_in = (c + rr * 0.65 * a1.cos(), c + rr * 0.65 * a1.sin());
                pen.polygon(&[tip, back_out, back_in], WHITE, 1.0);
            }
        }
        "general_caution" => {
            warning(&mut pen, c, r);
            pen.rect(c - r * 0.07, c - r * 0.22, r * 0.14, r * 0.45, BLACK, 1.0);
            pen.circle(c, c + r * 0.38, r * 0.08, BLACK, 1.0);
        }
        "bend_right" => {
            warning(&mut pen, c, r);
            let mut pb = PathBuilder::new();
            pb.move_to(c - r * 0.12, c + r * 0.5);
            pb.quad_to(c - r * 0.12, c - r * 0.05, c + r * 0.12, c - r * 0.12);
            if let Some(path) = pb.finish() {
                pen.stroke(&path, BLACK, r * 0.1);
            }
            pen.polygon(
                &[(c + r * 0.3, c - r * 0.18), (c + r * 0.08, c - r * 0.3), (c + r * 0.13, c - r * 0.0)],
                BLACK,
                1.0,
            );
        }
        "yield" => {
            let outer = regular_polygon(c, c - r * 0.15, r * 1.15, 3, 90.0);
            pen.polygon(&outer, RED, 1.0);
            let inner = regular_polygon(c, c - r * 0.15, r * 0.62, 3, 90.0);
            pen.polygon(&inner, WHITE, 1.0);
        }
        "stop" => {
            let oct = regular_polygon(c, c, r, 8, 22.5);
            pen.polygon(&oct, WHITE, 1.0);
            let oct = regular_polygon(c, c, r * 0.92, 8, 22.5);
            pen.polygon(&oct, RED, 1.0);
            text(&mut pen, "STOP", c, c, r * 0.5, WHITE, r * 0.09);
        }
        "priority_road" => {
            pen.polygon(&regular_polygon(c, c, r, 4, 0.0), WHITE, 1.0);
            pen.polygon(&regular_polygon(c, c, r * 0.93, 4, 0.0), BLACK, 1.0);
            pen.polygon(&regular_polygon(c, c, r * 0.87, 4, 0.0), WHITE, 1.0);
            pen.polygon(&regular_polygon(c, c, r * 0.6, 4, 0.0), YELLOW, 1.0);
        }
        "parking" => {
            let h = r * 0.82;
            pen.rect(c - h, c - h, 2.0 * h, 2.0 * h, WHITE, 1.0);
            pen.rect(c - h * 0.93, c - h * 0.93, 1.86 * h, 1.86 * h, BLUE, 1.0);
            text(&mut pen, "P", c, c, r * 1.0, WHITE, r * 0.18);
        }
        other => unreachable!("no drawing for class {other}"),
    }
}

fn ring(pen: &mut Pen<'_>, c: f32, r: f32, width: f32, colour: Rgb) {
    if let Some(path) = PathBuilder::from_circle(c, c, r - width / 2.0) {
        pen.stroke(&path, colour, width);
    }
}

/// White disk with a red ring: the prohibitory family.
fn prohibitory(pen: &mut Pen<'_>, c: f32, r: f32) {
    pen.circle(c, c, r, WHITE, 1.0);
    ring(pen, c, r * 0.97, r * 0.2, RED);
}

/// Red-bordered white triangle, point up: the warning family.
fn warning(pen: &mut Pen<'_>, c: f32, r: f32) {
    pen.polygon(&regular_polygon(c, c + r * 0.15, r * 1.15, 3, -90.0), RED, 1.0);
    pen.polygon(&regular_polygon(c, c + r * 0.15, r * 0.78, 3, -90.0), WHITE, 1.0);
}

/// A white arrow of half-length `len` pointing at `deg` degrees clockwise from up.
fn arrow(pen: &mut Pen<'_>, cx: f32, cy: f32, len: f32, deg: f32, r: f32) {
    let (s, c) = deg.to_radians().sin_cos();
    let rot = |x: f32, y: f32| (cx + x * c - y * s, cy + x * s + y * c);
    let w = r * 0.09;
    let head = len * 0.45;
    let shaft = [rot(-w, len), rot(w, len), rot(w, -len + head), rot(-w, -len + head)];
    pen.polygon(&shaft, WHITE, 1.0);
    pen.polygon(&[rot(0.0, -len), rot(head * 0.75, -len + head), rot(-head * 0.75, -len + head)], WHITE, 1.0);
}

/// Stroke glyphs in a unit box (x right, y down): each a list of strokes, each a start point and segments
/// (a line to a point, or a quadratic curve through a control point to a point).
enum Seg {
    L(f32, f32),
    Q(f32, f32, f32, f32),
}

fn glyph(ch: char) -> Vec<((f32, f32), Vec<Seg>)> {
    use Seg::{L, Q};
    match ch {
        '0' | 'O' => vec![(
            (0.5, 0.0),
            vec![Q(0.0, 0.0, 0.0, 0.5), Q(0.0, 1.0, 0.5, 1.0), Q(1.0, 1.0, 1.0, 0.5), Q(1.0, 0.0, 0.5, 0.0)],
        )],
        '1' => vec![((0.2, 0.25), vec![L(0.6, 0.0), L(0.6, 1.0)])],
        '3' => vec![(
            (0.1, 0.15),
            vec![
                Q(0.5, -0.12, 0.85, 0.2),
                Q(0.9, 0.47, 0.42, 0.48),
                Q(0.95, 0.52, 0.9, 0.78),
                Q(0.5, 1.12, 0.08, 0.86),
            ],
        )],
        '5' => vec![(
            (0.85, 0.0),
            vec![
                L(0.2, 0.0),
                L(0.15, 0.45),
                Q(0.9, 0.25, 0.9, 0.68),
                Q(0.85, 1.05, 0.4, 1.0),
                Q(0.15, 0.97, 0.08, 0.85),
            ],
        )],
        '7' => vec![((0.08, 0.0), vec![L(0.92, 0.0), L(0.4, 1.0)])],
        'S' => vec![(
            (0.88, 0.15),
            vec![Q(0.5, -0.1, 0.15, 0.15), Q(0.0, 0.42, 0.5, 0.5), Q(1.0, 0.58, 0.85, 0.85), Q(0.5, 1.1, 0.1, 0.85)],
        )],
        'T' => vec![((0.0, 0.0), vec![L(1.0, 0.0)]), ((0.5, 0.0), vec![L(0.5, 1.0)])],
        'P' => vec![(
            (0.1, 1.0),
            vec![L(0.1, 0.0), L(0.5, 0.0), Q(0.95, 0.0, 0.95, 0.28), Q(0.95, 0.56, 0.5, 0.56), L(0.1, 0.56)],
        )],
        other => unreachable!("no glyph for {other:?}"),
    }
}

/// Draws `s` centred at `(cx, cy)` with glyphs `height` tall.
fn text(pen: &mut Pen<'_>, s: &str, cx: f32, cy: f32, height: f32, colour: Rgb, width: f32) {
    let gw = height * 0.55;
    let gap = height * 0.18;
    let n = s.chars().count() as f32;
    let total = n * gw + (n - 1.0) * gap;
    for (i, ch) in s.chars().enumerate() {
        let x0 = cx - total / 2.0 + i as f32 * (gw + gap);
        let y0 = cy - height / 2.0;
        let at = |x: f32, y: f32| (x0 + x * gw, y0 + y * height);
        for (start, segs) in glyph(ch) {
            let mut pb = PathBuilder::new();
            let (x, y) = at(start.0, start.1);
            pb.move_to(x, y);
            for seg in segs {
                match seg {
                    Seg::L(x, y) => {
                        let (x, y) = at(x, y);
                        pb.line_to(x, y);
                    }
                    Seg::Q(qx, qy, x, y) => {
                        let ((qx, qy), (x, y)) = (at(qx, qy), at(x, y));
                        pb.quad_to(qx, qy, x, y);
                    }
                }
            }
            if let Some(path) = pb.finish() {
                pen.stroke(&path, colour, width);
            }
        }
    }
}

/// Sun-bleaching (towards a pale grey) and dirt spots, on the face's opaque pixels.
fn age(face: &mut Pixmap, fading: f32, dirt: f32, rng: &mut ChaCha8Rng) {
    let s = face.width() as f32;
    let spots = (dirt * 40.0).round() as usize;
    {
        let mut pen = Pen { pixmap: &mut *face };
        for _ in 0..spots {
            let (x, y) = (rng.random_range(0.05..0.95) * s, rng.random_range(0.05..0.95) * s);
            let r = rng.random_range(0.02..0.08) * s;
            pen.circle(x, y, r, [0.35, 0.28, 0.2], 0.25 + 0.5 * dirt);
        }
    }
    if fading > 0.0 {
        for px in face.pixels_mut() {
            let a = px.alpha() as f32;
            if a == 0.0 {
                continue;
            }
            let pale = 0.8 * a;
            let mix = |c: u8| -> u8 { (c as f32 * (1.0 - fading * 0.8) + pale * fading * 0.8 + 0.5).min(a) as u8 };
            if let Some(p) =
                tiny_skia::PremultipliedColorU8::from_rgba(mix(px.red()), mix(px.green()), mix(px.blue()), px.alpha())
            {
                *px = p;
            }
        }
    }
}

/// Covers a share of the sign from one side with foliage, a pole or a vehicle.
fn occlude(canvas: &mut Canvas, coverage: &[f32], sign: (f32, f32, f32), v: &[f64], rng: &mut ChaCha8Rng) {
    let share = v[p::OCCLUSION] as f32;
    if share <= 0.0 {
        return;
    }
    let (w, h) = (canvas.w, canvas.h);
    // The sign's extent on screen from its coverage; fall back to its nominal circle.
    let (mut x0, mut x1, mut y0, mut y1) = (w as f32, 0.0f32, h as f32, 0.0f32);
    for (i, &c) in coverage.iter().enumerate() {
        if c > 0.5 {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x + 1.0), y0.min(y), y1.max(y + 1.0));
        }
    }
    if x1 <= x0 {
        let (cx, cy, r) = sign;
        (x0, x1, y0, y1) = (cx - r, cx + r, cy - r, cy + r);
    }
    let side = SIDES[v[p::OCCLUSION_SIDE] as usize];
    let (rx0, rx1, ry0, ry1) = match side {
        "left" => (0.0, x0 + (x1 - x0) * share, 0.0, h as f32),
        "right" => (x1 - (x1 - x0) * share, w as f32, 0.0, h as f32),
        "top" => (0.0, w as f32, 0.0, y0 + (y1 - y0) * share),
        _ => (0.0, w as f32, y1 - (y1 - y0) * share, h as f32),
    };
    let colour: Rgb = match OCCLUDERS[v[p::OCCLUDER] as usize] {
        "foliage" => [0.16 + rng.random_range(0.0..0.08), 0.32 + rng.random_range(0.0..0.12), 0.1],
        "pole" => [0.42, 0.42, 0.44],
        _ => [rng.random_range(0.1..0.8), rng.random_range(0.1..0.5), rng.random_range(0.1..0.5)],
    };
    let leafy = OCCLUDERS[v[p::OCCLUDER] as usize] == "foliage";
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            if fx < rx0 || fx > rx1 || fy < ry0 || fy > ry1 {
                continue;
            }
            // Foliage has ragged gaps; poles and vehicles are solid.
            if leafy && rng.random_range(0.0..1.0) < 0.15 {
                continue;
            }
            let shade = if leafy { rng.random_range(0.8..1.2) } else { 1.0 };
            canvas.px[y * w + x] = colour.map(|c| c * shade);
        }
    }
}
