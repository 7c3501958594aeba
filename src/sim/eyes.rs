//! `eyes`: a close-up of an eye, as HUDD's gaze (GD) and eye-openness (OC) case studies saw from a driver camera.
//!
//! The eye is drawn in a canonical frame (skin, socket shading, eyebrow, sclera between the lids, iris and pupil
//! moved by the gaze and clipped by the lids, a corneal highlight, eyelashes along the upper lid, an optional glasses
//! reflection), then foreshortened by the head's yaw and pitch, lit from a direction, blurred and made noisy.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tiny_skia::{FillRule, Mask, Paint, PathBuilder, Pixmap, Transform};

use super::raster::{Canvas, Pen, Rgb};
use super::{DefaultDist, Label, ParamKind, ParamSpec, Sample, Simulator, Target};

pub struct Eyes;

/// HUDD's eight gaze directions, in label order (a ninth, `MiddleCenter`, for task `gaze9`).
pub const GAZE: [&str; 9] = [
    "BottomCenter",
    "BottomLeft",
    "BottomRight",
    "MiddleLeft",
    "MiddleRight",
    "TopCenter",
    "TopLeft",
    "TopRight",
    "MiddleCenter",
];
pub const OPENNESS: [&str; 2] = ["closed", "open"];
const IRIS: [&str; 5] = ["brown", "blue", "green", "grey", "hazel"];
const IRIS_RGB: [Rgb; 5] =
    [[0.36, 0.22, 0.12], [0.3, 0.5, 0.75], [0.3, 0.55, 0.35], [0.5, 0.55, 0.58], [0.55, 0.42, 0.2]];

/// An eye counts as closed below this lid opening (task `openness`).
pub const CLOSED_BELOW: f64 = 0.2;
/// Task `gaze9`: gaze within this many degrees of straight ahead is `MiddleCenter`.
pub const CENTRE_WITHIN: f64 = 8.0;

use DefaultDist::{AnyCategory, Normal, Uniform};

const fn spec(name: &'static str, kind: ParamKind, default: DefaultDist, doc: &'static str) -> ParamSpec {
    ParamSpec { name, kind, default, doc }
}

const fn real(min: f64, max: f64, unit: &'static str) -> ParamKind {
    ParamKind::Real { min, max, unit }
}

static PARAMS: [ParamSpec; 15] = [
    spec("gaze_yaw", ParamKind::Angle { min: -45.0, max: 45.0 }, Uniform(-35.0, 35.0), "gaze left (−) or right (+)"),
    spec("gaze_pitch", ParamKind::Angle { min: -35.0, max: 35.0 }, Uniform(-25.0, 25.0), "gaze down (−) or up (+)"),
    spec("openness", real(0.0, 1.0, "share"), Uniform(0.0, 1.0), "eyelid opening; below 0.2 the eye counts as closed"),
    spec("pupil", real(0.2, 0.7, "share of the iris"), Uniform(0.3, 0.5), "pupil radius"),
    spec("iris_radius", real(0.1, 0.25, "image widths"), Uniform(0.14, 0.18), "iris radius"),
    spec("iris_colour", ParamKind::Categorical(&IRIS), AnyCategory, "iris colour"),
    spec(
        "head_yaw",
        ParamKind::Angle { min: -50.0, max: 50.0 },
        Normal(0.0, 10.0),
        "head turn: horizontal foreshortening",
    ),
    spec(
        "head_pitch",
        ParamKind::Angle { min: -40.0, max: 40.0 },
        Normal(0.0, 8.0),
        "head tilt: vertical foreshortening",
    ),
    spec("skin_tone", real(0.0, 1.0, "dark to light"), Uniform(0.0, 1.0), "skin tone"),
    spec(
        "light_angle",
        ParamKind::Angle { min: 0.0, max: 360.0 },
        Uniform(0.0, 360.0),
        "direction the light comes from",
    ),
    spec("light_intensity", real(0.1, 2.0, "gain"), Uniform(0.7, 1.2), "illumination"),
    spec("eyelashes", real(0.0, 1.0, "share"), Uniform(0.2, 0.8), "eyelash length and darkness"),
    spec("reflection", real(0.0, 1.0, "share"), Uniform(0.0, 0.15), "strength of a glasses reflection across the eye"),
    spec("blur", real(0.0, 4.0, "pixels at 64 px"), Uniform(0.0, 0.8), "defocus"),
    spec("noise", real(0.0, 0.2, "sd of 0..1 pixels"), Uniform(0.0, 0.02), "sensor noise"),
];

mod p {
    pub const GAZE_YAW: usize = 0;
    pub const GAZE_PITCH: usize = 1;
    pub const OPENNESS: usize = 2;
    pub const PUPIL: usize = 3;
    pub const IRIS_RADIUS: usize = 4;
    pub const IRIS_COLOUR: usize = 5;
    pub const HEAD_YAW: usize = 6;
    pub const HEAD_PITCH: usize = 7;
    pub const SKIN_TONE: usize = 8;
    pub const LIGHT_ANGLE: usize = 9;
    pub const LIGHT_INTENSITY: usize = 10;
    pub const EYELASHES: usize = 11;
    pub const REFLECTION: usize = 12;
    pub const BLUR: usize = 13;
    pub const NOISE: usize = 14;
}

/// The gaze class of a gaze direction: eight 45° sectors around the image plane (plus the centre for `gaze9`).
pub fn gaze_class(yaw: f64, pitch: f64, with_centre: bool) -> usize {
    if with_centre && yaw.hypot(pitch) < CENTRE_WITHIN {
        return 8;
    }
    // 0° is right, counter-clockwise (up is +pitch).
    let angle = pitch.atan2(yaw).to_degrees().rem_euclid(360.0);
    let sector = ((angle + 22.5) / 45.0).floor() as usize % 8;
    // Sectors from 0°: right, top-right, top, top-left, left, bottom-left, bottom, bottom-right.
    [4, 7, 5, 6, 3, 1, 0, 2][sector]
}

impl Simulator for Eyes {
    fn name(&self) -> &'static str {
        "eyes"
    }

    fn tasks(&self) -> &'static [&'static str] {
        &["gaze", "gaze9", "openness"]
    }

    fn label_params(&self, task: &str) -> &'static [&'static str] {
        match task {
            "openness" => &["openness"],
            _ => &["gaze_yaw", "gaze_pitch"],
        }
    }

    fn target(&self, task: &str) -> Target {
        let classes: Vec<String> = match task {
            "gaze" => GAZE[..8].iter().map(|s| s.to_string()).collect(),
            "gaze9" => GAZE.iter().map(|s| s.to_string()).collect(),
            _ => OPENNESS.iter().map(|s| s.to_string()).collect(),
        };
        Target::Classification { classes }
    }

    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }

    fn render(&self, task: &str, v: &[f64], size: u32, rng: &mut ChaCha8Rng) -> Sample {
        let label = match task {
            "gaze" => gaze_class(v[p::GAZE_YAW], v[p::GAZE_PITCH], false),
            "gaze9" => gaze_class(v[p::GAZE_YAW], v[p::GAZE_PITCH], true),
            _ => usize::from(v[p::OPENNESS] >= CLOSED_BELOW),
        };
        let s = size as f32;
        let mut pixmap = Pixmap::new(size, size).expect("size is positive");
        // Head pose foreshortens the whole eye region about the image centre.
        let (sx, sy) = ((v[p::HEAD_YAW] as f32).to_radians().cos(), (v[p::HEAD_PITCH] as f32).to_radians().cos());
        let shift_x = s * 0.25 * (v[p::HEAD_YAW] as f32).to_radians().sin();
        let shift_y = -s * 0.2 * (v[p::HEAD_PITCH] as f32).to_radians().sin();
        let t = Transform::from_row(sx, 0.0, 0.0, sy, s / 2.0 * (1.0 - sx) + shift_x, s / 2.0 * (1.0 - sy) + shift_y);
        draw(&mut pixmap, v, t, rng);
        let mut canvas = Canvas::from_pixmap(&pixmap);

        // Directional light: brighter on the side it comes from.
        let (lx, ly) = ((v[p::LIGHT_ANGLE] as f32).to_radians().cos(), -(v[p::LIGHT_ANGLE] as f32).to_radians().sin());
        let gain = v[p::LIGHT_INTENSITY] as f32;
        let w = canvas.w;
        canvas.gain([gain; 3], |_| 1.0);
        let side: Vec<f32> = (0..canvas.px.len())
            .map(|i| {
                let (x, y) = ((i % w) as f32 / s - 0.5, (i / w) as f32 / s - 0.5);
                (x * lx + y * ly) * 0.8
            })
            .collect();
        canvas.gain([1.6; 3], |i| side[i].max(0.0));
        canvas.gain([0.4; 3], |i| (-side[i]).max(0.0));
        canvas.box_blur((v[p::BLUR] * f64::from(s) / 64.0).round() as usize);
        canvas.noise(v[p::NOISE] as f32, rng);
        Sample { rgb: canvas.to_rgb8(), label: Label::Class(label) }
    }
}

fn skin(tone: f64) -> Rgb {
    let t = tone as f32;
    [0.35 + 0.55 * t, 0.22 + 0.5 * t, 0.15 + 0.45 * t]
}

/// The almond between the lids, in the canonical frame: corners at `(c ± w, c)`, upper lid raised by `open`.
fn lids(c: f32, w: f32, h: f32, open: f32) -> (tiny_skia::Path, tiny_skia::Path) {
    let upper_y = c - h * (0.15 + 1.2 * open);
    let lower_y = c + h * (0.15 + 0.5 * open.min(0.6));
    let mut almond = PathBuilder::new();
    almond.move_to(c - w, c);
    almond.quad_to(c, upper_y * 2.0 - c, c + w, c);
    almond.quad_to(c, lower_y * 2.0 - c, c - w, c);
    almond.close();
    let mut upper = PathBuilder::new();
    upper.move_to(c - w, c);
    upper.quad_to(c, upper_y * 2.0 - c, c + w, c);
    (almond.finish().expect("an almond has area"), upper.finish().expect("a lid has length"))
}

// Long: a painter's order, back to front (skin, socket and brow, sclera, iris, pupil, lids, lashes, a reflection); the
// layers share the eye's geometry, and the order is the drawing, so it reads as one sequence.
fn draw(pixmap: &mut Pixmap, v: &[f64], t: Transform, rng: &mut ChaCha8Rng) {
    let s = pixmap.width() as f32;
    let c = s / 2.0;
    let tone = skin(v[p::SKIN_TONE]);
    let mut pen = Pen { pixmap: &mut *pixmap };
    pen.rect(0.0, 0.0, s, s, tone, 1.0);
    // Socket shading and eyebrow.
    let shade = tone.map(|x| x * 0.8);
    let mut socket = PathBuilder::new();
    socket.push_oval(tiny_skia::Rect::from_xywh(c - s * 0.42, c - s * 0.3, s * 0.84, s * 0.55).expect("positive"));
    let mut eyebrow = PathBuilder::new();
    eyebrow.move_to(c - s * 0.42, c - s * 0.26);
    eyebrow.quad_to(c, c - s * 0.45, c + s * 0.42, c - s * 0.3);
    let dark = tone.map(|x| x * 0.25);
    let paint = |rgb: Rgb, alpha: f32| {
        let mut p = Paint::default();
        p.set_color(tiny_skia::Color::from_rgba(rgb[0], rgb[1], rgb[2], alpha).expect("valid colour"));
        p.anti_alias = true;
        p
    };
    let stroke = |width: f32| tiny_skia::Stroke { width, line_cap: tiny_skia::LineCap::Round, ..Default::default() };
    pen.pixmap.fill_path(&socket.finish().expect("oval"), &paint(shade, 0.6), FillRule::Winding, t, None);
    pen.pixmap.stroke_path(&eyebrow.finish().expect("brow"), &paint(dark, 0.9), &stroke(s * 0.06), t, None);

    // Sclera, iris and pupil, clipped to the opening between the lids.
    let open = v[p::OPENNESS] as f32;
    let (w, h) = (s * 0.36, s * 0.14);
    let (almond, upper) = lids(c, w, h, open);
    let mut mask = Mask::new(pen.pixmap.width(), pen.pixmap.height()).expect("size is positive");
    mask.fill_path(&almond, FillRule::Winding, true, t);
    pen.pixmap.fill_path(&almond, &paint([0.93, 0.9, 0.88], 1.0), FillRule::Winding, t, None);
    let iris_r = v[p::IRIS_RADIUS] as f32 * s;
    let ix = c + (v[p::GAZE_YAW] as f32).to_radians().sin() * w * 1.1;
    let iy = c - (v[p::GAZE_PITCH] as f32).to_radians().sin() * h * 2.2;
    let circle = |x: f32, y: f32, r: f32| PathBuilder::from_circle(x, y, r.max(0.1)).expect("positive radius");
    let iris = IRIS_RGB[v[p::IRIS_COLOUR] as usize];
    pen.pixmap.fill_path(&circle(ix, iy, iris_r), &paint(iris, 1.0), FillRule::Winding, t, Some(&mask));
    pen.pixmap.fill_path(
        &circle(ix, iy, iris_r * 0.85),
        &paint(iris.map(|x| x * 1.25), 0.5),
        FillRule::Winding,
        t,
        Some(&mask),
    );
    let pupil = v[p::PUPIL] as f32 * iris_r;
    pen.pixmap.fill_path(&circle(ix, iy, pupil), &paint([0.03, 0.03, 0.04], 1.0), FillRule::Winding, t, Some(&mask));
    pen.pixmap.fill_path(
        &circle(ix + iris_r * 0.3, iy - iris_r * 0.35, iris_r * 0.15),
        &paint([1.0; 3], 0.9),
        FillRule::Winding,
        t,
        Some(&mask),
    );

    // Lid line, lower lid, eyelashes along the upper lid.
    pen.pixmap.stroke_path(&upper, &paint(dark, 1.0), &stroke(s * 0.025), t, None);
    let lashes = v[p::EYELASHES] as f32;
    let upper_y = c - h * (0.15 + 1.2 * open);
    for k in 1..16 {
        let u = k as f32 / 16.0;
        // A point on the upper lid's quadratic curve and its outward direction.
        let x = (1.0 - u) * (1.0 - u) * (c - w) + 2.0 * u * (1.0 - u) * c + u * u * (c + w);
        let y = (1.0 - u) * (1.0 - u) * c + 2.0 * u * (1.0 - u) * (upper_y * 2.0 - c) + u * u * c;
        let len = s * 0.07 * lashes * (0.7 + 0.6 * rng.random_range(0.0..1.0f32));
        let dx = (u - 0.5) * len;
        let mut lash = PathBuilder::new();
        lash.move_to(x, y);
        lash.quad_to(x + dx * 0.3, y - len * 0.7, x + dx, y - len);
        if let Some(path) = lash.finish() {
            pen.pixmap.stroke_path(&path, &paint(dark, 0.4 + 0.6 * lashes), &stroke(s * 0.012), t, None);
        }
    }

    // A glasses reflection: a pale translucent band across the eye.
    let r = v[p::REFLECTION] as f32;
    if r > 0.0 {
        let x0 = rng.random_range(0.1..0.6f32) * s;
        if let Some(path) =
            super::raster::polygon_path(&[(x0, 0.0), (x0 + s * 0.18, 0.0), (x0 + s * 0.02, s), (x0 - s * 0.16, s)])
        {
            pen.pixmap.fill_path(&path, &paint([1.0; 3], 0.7 * r), FillRule::Winding, Transform::identity(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaze_classes_follow_the_direction_sectors() {
        let name = |yaw: f64, pitch: f64| GAZE[gaze_class(yaw, pitch, true)];
        assert_eq!(name(30.0, 0.0), "MiddleRight");
        assert_eq!(name(-30.0, 0.0), "MiddleLeft");
        assert_eq!(name(0.0, 20.0), "TopCenter");
        assert_eq!(name(0.0, -20.0), "BottomCenter");
        assert_eq!(name(20.0, 20.0), "TopRight");
        assert_eq!(name(-20.0, -20.0), "BottomLeft");
        assert_eq!(name(3.0, -2.0), "MiddleCenter");
        assert_eq!(GAZE[gaze_class(3.0, -2.0, false)], "BottomRight", "-34° is below the -22.5° boundary");
        assert_eq!(GAZE[gaze_class(3.0, -0.5, false)], "MiddleRight");
    }
}
