//! Shared by the benches: the `alexnet-small` model they time, and the fixtures venv's Python for the reference side.
#![allow(dead_code)]

use hudd::model::Architecture;
use hudd::model::artefact::{Format, Model, ModelMeta};

/// `alexnet-small` for 15 classes of 3×64×64 images, freshly initialised from seed 0 (which also leaves libtorch's generator seeded with 0, for the bench's data).
pub fn alexnet_small() -> Model {
    shipped("alexnet-small")
}

/// A shipped architecture for 3×64×64 images and 15 classes, its weights drawn from seed 0.
pub fn shipped(name: &str) -> Model {
    let arch = Architecture::resolve(name.as_ref(), std::path::Path::new(".")).unwrap();
    let meta = ModelMeta {
        format: Format::Declared,
        architecture: Some(arch),
        input: [3, 64, 64],
        outputs: 15,
        target: hudd::dataset::Target::Classification { classes: (0..15).map(|i| i.to_string()).collect() },
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        seen: Vec::new(),
    };
    Model::init(meta, tch::Device::Cpu, 0).unwrap()
}

/// `n` random 3×64×64 images of 15 classes to train on, and an empty validation set.
pub fn training_data(n: usize) -> (hudd::model::fit::Data, hudd::model::fit::Data) {
    use tch::{Device, Kind, Tensor};
    let data = hudd::model::fit::Data {
        pixels: Tensor::randint(256, [n as i64, 3, 64, 64], (Kind::Uint8, Device::Cpu)),
        classes: Some(Tensor::randint(15, [n as i64], (Kind::Int64, Device::Cpu))),
        keypoints: None,
    };
    let empty = hudd::model::fit::Data {
        pixels: Tensor::zeros([0, 3, 64, 64], (Kind::Uint8, Device::Cpu)),
        classes: Some(Tensor::zeros([0], (Kind::Int64, Device::Cpu))),
        keypoints: None,
    };
    (data, empty)
}

/// Plain SGD with momentum and weight decay, as the studies train.
pub fn sgd(epochs: usize, batch_size: usize) -> hudd::model::fit::FitConfig {
    hudd::model::fit::FitConfig {
        epochs,
        batch_size,
        optimizer: hudd::model::fit::OptimizerKind::Sgd,
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 5e-4,
        augment: Default::default(),
        keep: hudd::model::fit::Keep::Last,
        seed: 0,
    }
}

/// The fixtures venv's python (`tests/fixtures/venv.sh` creates it), if it can be had.
pub fn python() -> Option<String> {
    std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/venv.sh"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Runs a reference script of the fixtures venv's `python` and reads the `name seconds` lines it prints, in order;
/// `Err` holds its stderr when it printed none.
pub fn reference_times(python: &str, script: &str, args: &[String]) -> Result<Vec<(String, f64)>, String> {
    let out = std::process::Command::new(python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join(script))
        .args(args)
        .output()
        .expect("python runs");
    let times: Vec<(String, f64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect();
    if times.is_empty() { Err(String::from_utf8_lossy(&out.stderr).into_owned()) } else { Ok(times) }
}

/// The middle value.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// EfficientNet-Lite0 with its ImageNet weights as an `activations` stage loads it (`size`×`size` input), and the
/// indices of the three layers the recovery manifests record; `None` without the weights (`scripts/pretrained.sh`).
pub fn backbone(size: usize) -> Option<(Model, Vec<usize>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let weights = root.join("models/pretrained/efficientnet-lite0.safetensors");
    if !weights.exists() {
        return None;
    }
    let backbone = hudd::model::backbone::Backbone {
        architecture: "efficientnet-lite0".into(),
        weights,
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
        size: Some([size, size]),
    };
    let model = backbone.load(root, tch::Device::Cpu, 3).unwrap();
    let net = model.net("bench").unwrap();
    let layers = BACKBONE_LAYERS.iter().map(|l| net.layers.iter().position(|(n, _)| n == l).unwrap()).collect();
    Some((model, layers))
}

/// The layers the recovery manifests' generic pipeline records.
pub const BACKBONE_LAYERS: [&str; 3] = ["_blocks.10.add", "_conv_head", "_avg_pooling"];

/// Seconds an image when the backbone's features are computed as the `activations` stage computes them on a CPU with
/// `workers` threads: each worker a copy of the model of its own on [`hudd::model::backbone::THREADS`] libtorch
/// thread, taking every `workers`-th batch of `rounds`. The wall time over all of them, divided by the images.
pub fn backbone_as_the_stage(size: usize, images: &tch::Tensor, batch: i64, rounds: i64, workers: usize) -> f64 {
    let n = images.size()[0];
    let chunks: Vec<tch::Tensor> =
        (0..rounds).map(|r| images.narrow(0, (r * batch) % n, batch.min(n - (r * batch) % n))).collect();
    let count: i64 = chunks.iter().map(|c| c.size()[0]).sum();
    let (start, done) = (std::sync::Barrier::new(workers + 1), std::sync::Barrier::new(workers + 1));
    let mut elapsed = 0.0;
    std::thread::scope(|scope| {
        for w in 0..workers {
            // Each worker its own handles on its batches (a tensor may move between threads, not be shared).
            let mine: Vec<tch::Tensor> = chunks.iter().skip(w).step_by(workers).map(|c| c.shallow_clone()).collect();
            let warm = chunks[0].shallow_clone();
            let (start, done) = (&start, &done);
            scope.spawn(move || {
                let (model, layers) = backbone(size).expect("the weights were found before");
                let net = model.net("bench").unwrap();
                hudd::runtime::with_threads(hudd::model::backbone::THREADS, || {
                    // One batch first, untimed, as a user's first batch warms the allocator.
                    hudd::model::predict::activations(&model, net, &warm, &layers);
                    start.wait();
                    for chunk in &mine {
                        for a in hudd::model::predict::activations(&model, net, chunk, &layers) {
                            assert_eq!(hudd::model::backbone::pool(a, hudd::model::backbone::Pool::Channels).dim(), 2);
                        }
                    }
                    done.wait();
                });
            });
        }
        start.wait();
        let t = std::time::Instant::now();
        done.wait();
        elapsed = t.elapsed().as_secs_f64();
    });
    elapsed / count as f64
}

/// Median seconds per image of the backbone's features as `activations` computes them (preprocessing, the resize,
/// the forward pass to the recorded layers, each channel's mean), over `rounds` batches of `batch` images from
/// `images` (N×3×H×W uint8), after one warm-up batch.
pub fn backbone_per_image(model: &Model, layers: &[usize], images: &tch::Tensor, batch: i64, rounds: i64) -> f64 {
    let net = model.net("bench").unwrap();
    let n = images.size()[0];
    let features = |r: i64| {
        let chunk = images.narrow(0, (r * batch) % n, batch.min(n - (r * batch) % n));
        let t = std::time::Instant::now();
        let acts = hudd::model::predict::activations(model, net, &chunk, layers);
        for a in acts {
            let pooled = hudd::model::backbone::pool(a, hudd::model::backbone::Pool::Channels);
            assert_eq!(pooled.dim(), 2);
        }
        t.elapsed().as_secs_f64() / chunk.size()[0] as f64
    };
    features(0);
    median((0..rounds).map(features).collect())
}
