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

/// The fixtures venv's python (`tests/fixtures/venv.sh` creates it), if it can be had.
pub fn python() -> Option<String> {
    std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/venv.sh"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The middle value.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
