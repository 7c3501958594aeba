//! `faces`: a head and face from a small 3D model seen by a driver-monitoring camera, as HUDD's head-pose (HPD),
//! facial-landmark (FLD) and eyeglasses (OD) case studies saw them.
//!
//! The head is an ellipsoid (with a nose and two ears, also ellipsoids) turned by yaw, pitch and roll in front of a
//! pinhole camera. Every pixel casts a ray: the nearest surface hit gives the point on the head, whose angles on
//! the ellipsoid say what is painted there (skin, hair, brows, eyes, lips, nostrils) and whose normal says how it
//! is lit. Hidden surfaces are hidden because the nearest hit wins; a turned face shows its far eye foreshortened
//! or not at all. Glasses, a hand or a scarf are drawn over the head at projected 3D positions. The 27 landmarks
//! are 3D points of the same model projected with the same camera, so they are exact.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::raster::{Canvas, rotation};
use super::{DefaultDist, Label, ParamKind, ParamSpec, Sample, Simulator, Target};

pub struct Faces;

/// HUDD's nine head-pose classes, in label order.
pub const HEADPOSE: [&str; 9] = [
    "BottomCenter",
    "BottomLeft",
    "BottomRight",
    "MiddleCenter",
    "MiddleLeft",
    "MiddleRight",
    "TopCenter",
    "TopLeft",
    "TopRight",
];
pub const EYEGLASSES: [&str; 2] = ["no", "yes"];
const HAIR: [&str; 4] = ["short", "long", "bald", "cap"];
const HAIR_COLOUR: [&str; 5] = ["black", "brown", "blond", "grey", "red"];
const HAIR_RGB: [[f32; 3]; 5] =
    [[0.08, 0.07, 0.06], [0.3, 0.18, 0.1], [0.75, 0.62, 0.35], [0.62, 0.62, 0.6], [0.55, 0.22, 0.1]];
const GLASSES: [&str; 4] = ["none", "thin", "thick", "sunglasses"];
const BACKGROUND: [&str; 3] = ["plain", "car", "outdoor"];
const OCCLUSION: [&str; 3] = ["none", "hand", "scarf"];

/// The head turned more than this many degrees left or right is `Left` / `Right` (task `headpose`).
pub const SIDE_BEYOND: f64 = 20.0;
/// The head tilted more than this many degrees up or down is `Top` / `Bottom`.
pub const TILT_BEYOND: f64 = 15.0;

use DefaultDist::{AnyCategory, Normal, Uniform};

const fn spec(name: &'static str, kind: ParamKind, default: DefaultDist, doc: &'static str) -> ParamSpec {
    ParamSpec { name, kind, default, doc }
}

const fn real(min: f64, max: f64, unit: &'static str) -> ParamKind {
    ParamKind::Real { min, max, unit }
}

static PARAMS: [ParamSpec; 19] = [
    spec(
        "yaw",
        ParamKind::Angle { min: -70.0, max: 70.0 },
        Normal(0.0, 20.0),
        "head turned towards the image's left (−) or right (+)",
    ),
    spec("pitch", ParamKind::Angle { min: -45.0, max: 45.0 }, Normal(0.0, 12.0), "head tilted down (−) or up (+)"),
    spec("roll", ParamKind::Angle { min: -35.0, max: 35.0 }, Normal(0.0, 8.0), "head tilted sideways (clockwise +)"),
    spec("face_width", real(0.8, 1.2, "relative"), Uniform(0.88, 1.12), "face width"),
    spec("face_length", real(0.85, 1.15, "relative"), Uniform(0.9, 1.1), "face length"),
    spec("skin_tone", real(0.0, 1.0, "dark to light"), Uniform(0.0, 1.0), "skin tone"),
    spec("hair", ParamKind::Categorical(&HAIR), AnyCategory, "hair style"),
    spec("hair_colour", ParamKind::Categorical(&HAIR_COLOUR), AnyCategory, "hair (and brow) colour"),
    spec("glasses", ParamKind::Categorical(&GLASSES), AnyCategory, "eyeglasses"),
    spec("mouth_open", real(0.0, 1.0, "share"), Uniform(0.0, 0.4), "mouth opening"),
    spec(
        "light_angle",
        ParamKind::Angle { min: 0.0, max: 360.0 },
        Uniform(0.0, 360.0),
        "direction the light comes from",
    ),
    spec("light_intensity", real(0.1, 2.0, "gain"), Uniform(0.7, 1.2), "illumination"),
    spec("background", ParamKind::Categorical(&BACKGROUND), AnyCategory, "what is behind the head"),
    spec("occlusion", ParamKind::Categorical(&OCCLUSION), AnyCategory, "what covers part of the face"),
    spec(
        "occlusion_amount",
        real(0.0, 1.0, "share"),
        Uniform(0.2, 0.6),
        "how much of the lower face the occluder covers",
    ),
    spec("distance", real(0.7, 1.6, "relative"), Uniform(0.9, 1.15), "camera distance (larger: smaller head)"),
    spec(
        "gaze",
        ParamKind::Angle { min: -30.0, max: 30.0 },
        Uniform(-15.0, 15.0),
        "where the eyes look, left (−) or right (+)",
    ),
    spec("blur", real(0.0, 4.0, "pixels at 64 px"), Uniform(0.0, 0.6), "defocus"),
    spec("noise", real(0.0, 0.2, "sd of 0..1 pixels"), Uniform(0.0, 0.02), "sensor noise"),
];

mod p {
    pub const YAW: usize = 0;
    pub const PITCH: usize = 1;
    pub const ROLL: usize = 2;
    pub const FACE_WIDTH: usize = 3;
    pub const FACE_LENGTH: usize = 4;
    pub const SKIN_TONE: usize = 5;
    pub const HAIR: usize = 6;
    pub const HAIR_COLOUR: usize = 7;
    pub const GLASSES: usize = 8;
    pub const MOUTH_OPEN: usize = 9;
    pub const LIGHT_ANGLE: usize = 10;
    pub const LIGHT_INTENSITY: usize = 11;
    pub const BACKGROUND: usize = 12;
    pub const OCCLUSION: usize = 13;
    pub const OCCLUSION_AMOUNT: usize = 14;
    pub const DISTANCE: usize = 15;
    pub const GAZE: usize = 16;
    pub const BLUR: usize = 17;
    pub const NOISE: usize = 18;
}

/// The 27 landmarks as (name, θ, φ): degrees around (θ, + towards the image's right on a frontal face) and up (φ)
/// the head ellipsoid from the face's centre. `nose_tip` lies on the nose, `mouth_bottom` moves with the mouth.
pub const LANDMARKS: [(&str, f64, f64); 27] = [
    ("brow_left_outer", -34.0, 22.0),
    ("brow_left_middle", -22.0, 25.0),
    ("brow_left_inner", -9.0, 22.0),
    ("brow_right_inner", 9.0, 22.0),
    ("brow_right_middle", 22.0, 25.0),
    ("brow_right_outer", 34.0, 22.0),
    ("eye_left_outer", -32.0, 11.0),
    ("eye_left_top", -21.0, 14.0),
    ("eye_left_inner", -10.0, 11.0),
    ("eye_left_bottom", -21.0, 8.0),
    ("eye_right_inner", 10.0, 11.0),
    ("eye_right_top", 21.0, 14.0),
    ("eye_right_outer", 32.0, 11.0),
    ("eye_right_bottom", 21.0, 8.0),
    ("nose_bridge", 0.0, 9.0),
    ("nose_tip", 0.0, -6.0),
    ("nostril_left", -6.0, -13.0),
    ("nostril_right", 6.0, -13.0),
    ("mouth_left", -14.0, -26.0),
    ("mouth_top", 0.0, -22.0),
    ("mouth_right", 14.0, -26.0),
    ("mouth_bottom", 0.0, -29.0),
    ("jaw_left", -62.0, -28.0),
    ("jaw_left_lower", -38.0, -46.0),
    ("chin", 0.0, -58.0),
    ("jaw_right_lower", 38.0, -46.0),
    ("jaw_right", 62.0, -28.0),
];

/// The head-pose class of a pose: three columns by yaw, three rows by pitch.
pub fn headpose_class(yaw: f64, pitch: f64) -> usize {
    let column = if yaw < -SIDE_BEYOND {
        "Left"
    } else if yaw > SIDE_BEYOND {
        "Right"
    } else {
        "Center"
    };
    let row = if pitch < -TILT_BEYOND {
        "Bottom"
    } else if pitch > TILT_BEYOND {
        "Top"
    } else {
        "Middle"
    };
    HEADPOSE.iter().position(|c| *c == format!("{row}{column}")).expect("every row and column is a class")
}

type V3 = [f64; 3];

fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn apply(m: &[[f64; 3]; 3], v: V3) -> V3 {
    std::array::from_fn(|i| dot(m[i], v))
}

fn apply_t(m: &[[f64; 3]; 3], v: V3) -> V3 {
    std::array::from_fn(|i| m[0][i] * v[0] + m[1][i] * v[1] + m[2][i] * v[2])
}

/// An ellipsoid in head coordinates (x right, y down, z away from the camera; the face looks towards −z).
#[derive(Clone, Copy)]
struct Ellipsoid {
    centre: V3,
    radii: V3,
}

impl Ellipsoid {
    /// The nearest positive ray parameter where `o + t·d` meets the surface.
    fn hit(&self, o: V3, d: V3) -> Option<f64> {
        let oc: V3 = std::array::from_fn(|i| (o[i] - self.centre[i]) / self.radii[i]);
        let ds: V3 = std::array::from_fn(|i| d[i] / self.radii[i]);
        let (a, b, c) = (dot(ds, ds), dot(oc, ds), dot(oc, oc) - 1.0);
        let disc = b * b - a * c;
        if disc < 0.0 {
            return None;
        }
        let t = (-b - disc.sqrt()) / a;
        (t > 0.0).then_some(t)
    }

    fn normal(&self, p: V3) -> V3 {
        let n: V3 = std::array::from_fn(|i| (p[i] - self.centre[i]) / (self.radii[i] * self.radii[i]));
        let len = dot(n, n).sqrt();
        n.map(|x| x / len)
    }

    /// The surface point at angles θ (around, + towards +x) and φ (up) from the −z pole.
    fn at(&self, theta_deg: f64, phi_deg: f64) -> V3 {
        let (st, ct) = theta_deg.to_radians().sin_cos();
        let (sp, cp) = phi_deg.to_radians().sin_cos();
        [
            self.centre[0] + self.radii[0] * st * cp,
            self.centre[1] - self.radii[1] * sp,
            self.centre[2] - self.radii[2] * ct * cp,
        ]
    }

    /// The angles (θ, φ) in degrees of a surface point.
    fn angles(&self, p: V3) -> (f64, f64) {
        let u: V3 = std::array::from_fn(|i| (p[i] - self.centre[i]) / self.radii[i]);
        (u[0].atan2(-u[2]).to_degrees(), (-u[1]).clamp(-1.0, 1.0).asin().to_degrees())
    }
}

/// Everything one image's rendering needs: the model, the pose, the camera.
struct Scene {
    head: Ellipsoid,
    nose: Ellipsoid,
    ears: [Ellipsoid; 2],
    /// Head to camera: rotation, then the head's centre in camera coordinates.
    r: [[f64; 3]; 3],
    centre: V3,
    f: f64,
    c: f64,
}

impl Scene {
    fn new(v: &[f64], size: f64) -> Scene {
        let (a, b, c) = (0.5 * v[p::FACE_WIDTH], 0.66 * v[p::FACE_LENGTH], 0.56);
        let head = Ellipsoid { centre: [0.0; 3], radii: [a, b, c] };
        let tip = head.at(0.0, -4.0);
        let nose = Ellipsoid { centre: [0.0, tip[1], tip[2] + 0.02], radii: [0.075, 0.16, 0.13] };
        let ear = |side: f64| Ellipsoid { centre: [side * a * 0.97, -0.02, 0.04], radii: [0.05, 0.12, 0.08] };
        // Positive yaw turns the face towards the image's right; positive pitch lifts it.
        let r = rotation(v[p::ROLL], -v[p::PITCH], -v[p::YAW]);
        let distance = 3.2 * v[p::DISTANCE];
        Scene {
            head,
            nose,
            ears: [ear(-1.0), ear(1.0)],
            r,
            centre: [0.0, -0.05, distance],
            f: size * 1.55,
            c: size / 2.0,
        }
    }

    fn to_camera(&self, p: V3) -> V3 {
        add(apply(&self.r, p), self.centre)
    }

    /// The pixel a head point projects to.
    fn project(&self, p: V3) -> (f64, f64) {
        let q = self.to_camera(p);
        (self.f * q[0] / q[2] + self.c, self.f * q[1] / q[2] + self.c)
    }

    /// The landmarks' exact projections, as x0, y0, x1, y1, ... in pixels.
    fn landmarks(&self, mouth_open: f64) -> Vec<f32> {
        LANDMARKS
            .iter()
            .flat_map(|&(name, theta, phi)| {
                let point = match name {
                    "nose_tip" => self.nose.at(0.0, -25.0),
                    "mouth_bottom" => self.head.at(theta, phi - 9.0 * mouth_open),
                    _ => self.head.at(theta, phi),
                };
                let (x, y) = self.project(point);
                [x as f32, y as f32]
            })
            .collect()
    }
}

/// What a ray through a pixel hits first.
enum Hit {
    Head(V3),
    Nose(V3),
    Ear(usize, V3),
}

fn skin(tone: f64) -> [f32; 3] {
    let t = tone as f32;
    [0.36 + 0.56 * t, 0.22 + 0.52 * t, 0.14 + 0.46 * t]
}

fn mix(a: [f32; 3], b: [f32; 3], w: f32) -> [f32; 3] {
    std::array::from_fn(|i| a[i] * (1.0 - w) + b[i] * w)
}

/// Inside the ellipse with centre (cx, cy) and half-axes (rx, ry)? Returns the normalised radius².
fn ellipse(x: f64, y: f64, cx: f64, cy: f64, rx: f64, ry: f64) -> f64 {
    ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2)
}

impl Faces {
    /// The colour of the head surface at angles (θ, φ), before lighting.
    fn paint(v: &[f64], theta: f64, phi: f64) -> [f32; 3] {
        let skin = skin(v[p::SKIN_TONE]);
        let hair = HAIR_RGB[v[p::HAIR_COLOUR] as usize];
        let side = theta.abs();
        match HAIR[v[p::HAIR] as usize] {
            "cap" if phi > 34.0 - 6.0 * (side / 90.0).powi(2) => return [0.15, 0.25, 0.55],
            "short" | "long" | "cap" => {
                let hairline = 38.0 - 14.0 * (side / 90.0).powi(2);
                let sides = if HAIR[v[p::HAIR] as usize] == "long" { -70.0 } else { -8.0 };
                if phi > hairline || (side > 78.0 && phi > sides) || side > 110.0 {
                    return hair;
                }
            }
            _ => {}
        }
        // Brows: arcs above the eyes.
        for cx in [-22.0, 22.0] {
            let dx = (theta - cx) / 13.0;
            if dx.abs() < 1.0 && (phi - (22.0 + 3.0 * (1.0 - dx * dx))).abs() < 1.7 {
                return mix(hair, [0.05, 0.04, 0.03], 0.4);
            }
        }
        // Eyes: sclera, iris (moved by the gaze), pupil.
        for cx in [-21.0, 21.0] {
            let e = ellipse(theta, phi, cx, 11.0, 11.0, 3.4);
            if e < 1.0 {
                let iris = ellipse(theta, phi, cx + v[p::GAZE] * 0.25, 11.0, 3.6, 3.6);
                return if iris < 0.18 {
                    [0.03, 0.03, 0.03]
                } else if iris < 1.0 {
                    [0.3, 0.2, 0.12]
                } else {
                    [0.92, 0.9, 0.88]
                };
            }
            if e < 1.5 && phi > 11.0 {
                return mix(skin, [0.1, 0.07, 0.05], 0.6);
            }
        }
        // Nostrils and mouth.
        for cx in [-6.0, 6.0] {
            if ellipse(theta, phi, cx, -13.0, 2.6, 1.6) < 1.0 {
                return mix(skin, [0.1, 0.05, 0.04], 0.7);
            }
        }
        let open = v[p::MOUTH_OPEN];
        let lips = ellipse(theta, phi, 0.0, -25.5 - 4.5 * open, 14.0, 3.2 + 4.5 * open);
        if lips < 1.0 {
            let inside = open > 0.05 && ellipse(theta, phi, 0.0, -25.5 - 4.5 * open, 11.0, 4.5 * open) < 1.0;
            return if inside { [0.12, 0.03, 0.03] } else { mix(skin, [0.6, 0.2, 0.2], 0.55) };
        }
        skin
    }
}

impl Simulator for Faces {
    fn name(&self) -> &'static str {
        "faces"
    }

    fn tasks(&self) -> &'static [&'static str] {
        &["headpose", "landmarks", "eyeglasses"]
    }

    fn label_params(&self, task: &str) -> &'static [&'static str] {
        match task {
            "headpose" => &["yaw", "pitch"],
            "eyeglasses" => &["glasses"],
            // Keypoint targets are coordinates, not parameters.
            _ => &[],
        }
    }

    fn target(&self, task: &str) -> Target {
        match task {
            "landmarks" => Target::Regression {
                targets: LANDMARKS.iter().flat_map(|(n, ..)| [format!("{n}_x"), format!("{n}_y")]).collect(),
            },
            "eyeglasses" => Target::Classification { classes: EYEGLASSES.iter().map(|s| s.to_string()).collect() },
            _ => Target::Classification { classes: HEADPOSE.iter().map(|s| s.to_string()).collect() },
        }
    }

    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }

    fn render(&self, task: &str, v: &[f64], size: u32, rng: &mut ChaCha8Rng) -> Sample {
        let n = size as usize;
        let s = f64::from(size);
        let scene = Scene::new(v, s);
        let mut canvas = Canvas { w: n, h: n, px: vec![[0.0; 3]; n * n] };
        background(&mut canvas, v, &scene, rng);

        // Lighting: from the light's side and from the front.
        let (sa, ca) = v[p::LIGHT_ANGLE].to_radians().sin_cos();
        let light = {
            let l = [0.75 * ca, -0.75 * sa, -0.66];
            let len = dot(l, l).sqrt();
            l.map(|x| x / len)
        };
        let intensity = v[p::LIGHT_INTENSITY] as f32;
        // Rays in head coordinates: origin (the camera) and direction per pixel.
        let origin = apply_t(&scene.r, scene.centre.map(|x| -x));
        for y in 0..n {
            for x in 0..n {
                let d = apply_t(
                    &scene.r,
                    [(x as f64 + 0.5 - scene.c) / scene.f, (y as f64 + 0.5 - scene.c) / scene.f, 1.0],
                );
                let at = |t: f64| -> V3 { std::array::from_fn(|i| origin[i] + t * d[i]) };
                let mut best: Option<(f64, Hit)> = None;
                let mut consider = |t: Option<f64>, make: &dyn Fn(V3) -> Hit| {
                    if let Some(t) = t
                        && best.as_ref().is_none_or(|(b, _)| t < *b)
                    {
                        best = Some((t, make(at(t))));
                    }
                };
                consider(scene.head.hit(origin, d), &Hit::Head);
                consider(scene.nose.hit(origin, d), &Hit::Nose);
                for (i, ear) in scene.ears.iter().enumerate() {
                    consider(ear.hit(origin, d), &|q| Hit::Ear(i, q));
                }
                let Some((_, hit)) = best else { continue };
                let (colour, normal) = match hit {
                    Hit::Head(q) => {
                        let (theta, phi) = scene.head.angles(q);
                        (Faces::paint(v, theta, phi), scene.head.normal(q))
                    }
                    Hit::Nose(q) => (skin(v[p::SKIN_TONE]), scene.nose.normal(q)),
                    Hit::Ear(i, q) => (mix(skin(v[p::SKIN_TONE]), [0.5, 0.2, 0.15], 0.15), scene.ears[i].normal(q)),
                };
                let lambert = dot(apply(&scene.r, normal), light).max(0.0) as f32;
                let shade = intensity * (0.3 + 0.75 * lambert);
                canvas.px[y * n + x] = colour.map(|c| c * shade);
            }
        }
        glasses(&mut canvas, v, &scene);
        occlusion(&mut canvas, v, &scene);
        canvas.box_blur((v[p::BLUR] * s / 64.0).round() as usize);
        canvas.noise(v[p::NOISE] as f32, rng);
        let label = match task {
            "landmarks" => Label::Targets(scene.landmarks(v[p::MOUTH_OPEN])),
            "eyeglasses" => Label::Class(usize::from(v[p::GLASSES] >= 1.0)),
            _ => Label::Class(headpose_class(v[p::YAW], v[p::PITCH])),
        };
        Sample { rgb: canvas.to_rgb8(), label }
    }
}

/// Behind the head: a plain wall, a car's interior (headrest, window) or outdoors; then the neck and shoulders.
fn background(canvas: &mut Canvas, v: &[f64], scene: &Scene, rng: &mut ChaCha8Rng) {
    let n = canvas.w as f64;
    let tint: f32 = rng.random_range(0.8..1.2);
    let shirt = [rng.random_range(0.1..0.8f32), rng.random_range(0.1..0.8f32), rng.random_range(0.1..0.8f32)];
    let (neck_x, neck_y) = scene.project([0.0, 0.55 * scene.head.radii[1], 0.1]);
    let scale = scene.f / scene.centre[2];
    let skin = mix(skin(v[p::SKIN_TONE]), [0.0; 3], 0.25);
    for (i, px) in canvas.px.iter_mut().enumerate() {
        let (x, y) = ((i % canvas.w) as f64, (i / canvas.w) as f64);
        let (u, w) = (x / n, y / n);
        *px = match BACKGROUND[v[p::BACKGROUND] as usize] {
            "plain" => [0.55 * tint, 0.57 * tint, 0.6 * tint],
            "car" if u > 0.72 && w < 0.55 => [0.55 * tint, 0.65 * tint, 0.75 * tint],
            "car" if ellipse(u, w, 0.5, 0.35, 0.34, 0.42) < 1.0 => [0.16, 0.15, 0.15],
            "car" => [0.3 * tint, 0.3 * tint, 0.32 * tint],
            _ if w < 0.45 => mix([0.45, 0.6, 0.85], [0.8, 0.85, 0.9], w as f32 * 2.0),
            _ => [0.25 * tint, 0.45 * tint, 0.2 * tint],
        };
        let below = y - neck_y;
        if below > 0.0 && (x - neck_x).abs() < 0.17 * scale {
            *px = skin;
        }
        if below > 0.28 * scale && ellipse(x, y, neck_x, neck_y + 0.75 * scale, 0.75 * scale, 0.5 * scale) < 1.0 {
            *px = shirt;
        }
    }
}

/// Frames (thin or thick rings) or dark lenses in front of the eyes, with a bridge between them.
fn glasses(canvas: &mut Canvas, v: &[f64], scene: &Scene) {
    let kind = GLASSES[v[p::GLASSES] as usize];
    if kind == "none" {
        return;
    }
    let front = |theta: f64| {
        let e = scene.head.at(theta, 11.0);
        [e[0], e[1], e[2] - 0.09]
    };
    let (left, right) = (scene.project(front(-21.0)), scene.project(front(21.0)));
    let scale = scene.f / scene.centre[2];
    let (radius, width) = (0.125 * scale, if kind == "thin" { 0.012 * scale } else { 0.03 * scale });
    let frame = if kind == "thin" { [0.6, 0.6, 0.62] } else { [0.04, 0.04, 0.05] };
    for (i, px) in canvas.px.iter_mut().enumerate() {
        let (x, y) = ((i % canvas.w) as f64 + 0.5, (i / canvas.w) as f64 + 0.5);
        for (cx, cy) in [left, right] {
            let r = ((x - cx).powi(2) / 1.2 + (y - cy).powi(2)).sqrt();
            if kind == "sunglasses" && r < radius {
                *px = mix(*px, [0.02, 0.02, 0.03], 0.88);
            }
            if (r - radius).abs() < width.max(0.5) {
                *px = frame;
            }
        }
        // The bridge: a segment between the inner edges.
        let (ax, ay, bx, by) = (left.0 + radius, left.1, right.0 - radius, right.1);
        let t = (((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / ((bx - ax).powi(2) + (by - ay).powi(2)).max(1e-9))
            .clamp(0.0, 1.0);
        if bx > ax && ((x - ax - t * (bx - ax)).powi(2) + (y - ay - t * (by - ay)).powi(2)).sqrt() < width.max(0.5) {
            *px = frame;
        }
    }
}

/// A hand over the mouth and cheek, or a scarf up to the mouth, sized by `occlusion_amount`.
fn occlusion(canvas: &mut Canvas, v: &[f64], scene: &Scene) {
    let amount = v[p::OCCLUSION_AMOUNT];
    let scale = scene.f / scene.centre[2];
    match OCCLUSION[v[p::OCCLUSION] as usize] {
        "hand" => {
            let (mx, my) = scene.project(scene.head.at(-20.0, -30.0));
            let hand = mix(skin(v[p::SKIN_TONE]), [0.7, 0.45, 0.4], 0.2);
            let (rx, ry) = ((0.14 + 0.22 * amount) * scale, (0.12 + 0.2 * amount) * scale);
            for (i, px) in canvas.px.iter_mut().enumerate() {
                let (x, y) = ((i % canvas.w) as f64 + 0.5, (i / canvas.w) as f64 + 0.5);
                let e = ellipse(x, y, mx, my, rx, ry);
                if e < 1.0 {
                    // Finger creases: darker lines across the hand.
                    let crease = ((y - my) / ry * 4.0).fract().abs() < 0.08;
                    *px = if crease { mix(hand, [0.0; 3], 0.3) } else { hand };
                }
            }
        }
        "scarf" => {
            let (_, chin) = scene.project(scene.head.at(0.0, -58.0));
            let (_, mouth) = scene.project(scene.head.at(0.0, -25.0));
            let top = chin + (mouth - chin) * (0.2 + amount);
            let (cx, _) = scene.project(scene.head.at(0.0, -40.0));
            let half = 0.58 * scale;
            for (i, px) in canvas.px.iter_mut().enumerate() {
                let (x, y) = ((i % canvas.w) as f64 + 0.5, (i / canvas.w) as f64 + 0.5);
                if y > top && (x - cx).abs() < half * (1.0 + 0.4 * ((y - top) / scale).min(1.0)) {
                    let stripe = (((y - top) / scale) * 8.0).floor() as i64 % 2 == 0;
                    *px = if stripe { [0.6, 0.1, 0.12] } else { [0.85, 0.8, 0.7] };
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontal() -> Vec<f64> {
        let mut v: Vec<f64> = PARAMS.iter().map(|_| 0.0).collect();
        v[p::FACE_WIDTH] = 1.0;
        v[p::FACE_LENGTH] = 1.0;
        v[p::DISTANCE] = 1.0;
        v[p::LIGHT_INTENSITY] = 1.0;
        v
    }

    #[test]
    fn head_pose_classes_follow_yaw_and_pitch() {
        assert_eq!(HEADPOSE[headpose_class(0.0, 0.0)], "MiddleCenter");
        assert_eq!(HEADPOSE[headpose_class(-30.0, 0.0)], "MiddleLeft");
        assert_eq!(HEADPOSE[headpose_class(30.0, 20.0)], "TopRight");
        assert_eq!(HEADPOSE[headpose_class(10.0, -20.0)], "BottomCenter");
    }

    #[test]
    fn a_frontal_face_has_mirror_symmetric_landmarks() {
        let scene = Scene::new(&frontal(), 64.0);
        let kp = scene.landmarks(0.0);
        let at = |name: &str| {
            let i = LANDMARKS.iter().position(|(n, ..)| *n == name).unwrap();
            (kp[2 * i] as f64, kp[2 * i + 1] as f64)
        };
        for (l, r) in [("eye_left_outer", "eye_right_outer"), ("mouth_left", "mouth_right"), ("jaw_left", "jaw_right")]
        {
            let ((lx, ly), (rx, ry)) = (at(l), at(r));
            assert!((lx + rx - 64.0).abs() < 1e-4 && (ly - ry).abs() < 1e-4, "{l} {lx},{ly} and {r} {rx},{ry}");
            assert!(lx < 32.0);
        }
        let (cx, cy) = at("chin");
        assert!((cx - 32.0).abs() < 1e-4 && cy > at("mouth_bottom").1 && at("mouth_bottom").1 > at("nose_tip").1);
    }

    #[test]
    fn turning_the_head_right_moves_the_nose_right() {
        let mut v = frontal();
        let x0 = Scene::new(&v, 64.0).landmarks(0.0)[2 * 15];
        v[p::YAW] = 40.0;
        let x1 = Scene::new(&v, 64.0).landmarks(0.0)[2 * 15];
        v[p::PITCH] = 30.0;
        let y_up = Scene::new(&v, 64.0).landmarks(0.0)[2 * 15 + 1];
        assert!(x1 > x0 + 5.0, "nose tip {x0} -> {x1}");
        assert!(y_up < Scene::new(&frontal(), 64.0).landmarks(0.0)[2 * 15 + 1], "looking up lifts the nose");
    }
}
