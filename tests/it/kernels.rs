//! The bytes libtorch's held CPU kernels compute, pinned: fixed computations of the kinds every model stage makes
//! (a linear layer and a convolution of the shapes the shipped models use, an eigendecomposition as the clustering
//! makes, a short training of the fixture model, LRP through it), their blake3 hashes committed in
//! `tests/fixtures/kernel-hashes.json`. The first five were computed on an AMD EPYC (2026-12-07) and computed again
//! on an Intel Xeon (2026-12-08); the square roots and the Adam epoch on that Xeon, and alike under QEMU's emulated
//! EPYC and Xeon (the second test here). On any other x86-64 CPU the test fails where a vendor's or an instruction
//! set's branch leaks into the bytes, naming the computation, which is what makes `cpu (x86-64, kernels 2)` one key
//! for every x86-64 machine. No blessing: a change of these bytes is a change of every key's meaning, written into
//! the fixture by hand with the reason.

use std::collections::BTreeMap;

use hudd::engine::progress::Progress;
use hudd::model::fit::{self, Data, FitConfig, Keep, OptimizerKind};
use hudd::model::ops::sqrt;
use tch::{Device, Kind, Tensor};

/// `n` values in [-0.5, 0.5) from an integer sequence (no random generator whose kernels could differ).
fn values(n: usize, salt: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| ((i.wrapping_mul(2_654_435_761).wrapping_add(salt * 97)) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

fn tensor(shape: &[i64], salt: u64) -> Tensor {
    let n = shape.iter().product::<i64>() as usize;
    Tensor::from_slice(&values(n, salt)).view(shape)
}

/// blake3 of a float tensor's bytes (little-endian float32), in row-major order.
fn hash(t: &Tensor) -> String {
    let t = t.to_kind(Kind::Float).contiguous().view([-1]);
    let v = Vec::<f32>::try_from(&t).unwrap();
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    blake3::hash(&bytes).to_hex().to_string()
}

fn computed() -> BTreeMap<String, String> {
    hudd::runtime::with_threads(1, || {
        let mut out = BTreeMap::new();
        // A fully connected layer of alexnet-small's classifier shape, and a 3×3 convolution.
        let x = tensor(&[64, 2304], 1);
        let w = tensor(&[256, 2304], 2);
        out.insert("linear 64x2304 by 2304x256".into(), hash(&x.linear(&w, Some(&tensor(&[256], 3)))));
        let img = tensor(&[8, 3, 32, 32], 4);
        let k = tensor(&[16, 3, 3, 3], 5);
        let conv = img.conv2d(&k, Some(&tensor(&[16], 6)), [1, 1], [1, 1], [1, 1], 1);
        out.insert("conv2d 8x3x32x32 by 16x3x3x3".into(), hash(&conv));
        // A symmetric eigendecomposition (MKL's LAPACK), as classical scaling and the spectral embedding make.
        let a = tensor(&[48, 48], 7);
        let sym = a.matmul(&a.tr()) / 48.0;
        let (eigenvalues, _) = sym.to_kind(Kind::Double).linalg_eigh("L");
        out.insert("eigh 48x48 (float64)".into(), hash(&eigenvalues));
        // One epoch of the fixture model on 32 images, then LRP with HUDD's composite through it.
        let mut model = crate::support::tiny_model();
        let pixels: Vec<u8> = (0..32 * 3 * 32 * 32u64).map(|i| (i.wrapping_mul(2_654_435_761) % 256) as u8).collect();
        let data = Data {
            pixels: Tensor::from_slice(&pixels).view([32, 3, 32, 32]),
            classes: Some(Tensor::from_slice(&(0..32).map(|i| i % 4).collect::<Vec<i64>>())),
            keypoints: None,
        };
        let empty = Data {
            pixels: Tensor::zeros([0, 3, 32, 32], (Kind::Uint8, Device::Cpu)),
            classes: Some(Tensor::zeros([0], (Kind::Int64, Device::Cpu))),
            keypoints: None,
        };
        let cfg = FitConfig {
            epochs: 1,
            batch_size: 8,
            optimizer: OptimizerKind::Sgd,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            augment: Default::default(),
            keep: Keep::Last,
            seed: 3,
        };
        fit::fit(&mut model, &data, &empty, &cfg, &Progress::hidden()).unwrap();
        out.insert("tiny model trained one epoch".into(), hash(&weights_of(&model)));
        let net = model.net("kernels").unwrap();
        let x = model.preprocess(&data.pixels.narrow(0, 0, 8));
        let y = tch::no_grad(|| net.forward(&x));
        let top = y.argmax(1, true);
        let seed = y.zeros_like().scatter(1, &top, &y.gather(1, &top, false));
        let params: hudd::stages::heatmaps::HeatmapParams = toml::from_str("preset = \"hudd\"").unwrap();
        let rules = hudd::stages::heatmaps::rules_for(net, &params).unwrap();
        let relevance = hudd::lrp::relevance(net, &x, &seed, &rules);
        let all = Tensor::cat(&relevance.iter().map(|r| r.view([-1])).collect::<Vec<_>>(), 0);
        out.insert("LRP through it, hudd composite".into(), hash(&all));
        // Square roots as hudd takes them (Adam's second moments, distances; a batch norm merged into its
        // convolution takes `rsqrt`): MKL's vector maths, which `Tensor::sqrt` calls, differs by vendor.
        let positive = (tensor(&[4096], 8).abs() + 0.01) * 37.0;
        out.insert(
            "rsqrt and model::ops::sqrt (float32)".into(),
            hash(&Tensor::cat(&[positive.rsqrt(), sqrt(&positive)], 0)),
        );
        let double = positive.to_kind(Kind::Double);
        let roots = Tensor::cat(&[double.rsqrt(), sqrt(&double)], 0);
        let bytes: Vec<u8> = Vec::<f64>::try_from(&roots).unwrap().iter().flat_map(|x| x.to_le_bytes()).collect();
        out.insert("rsqrt and model::ops::sqrt (float64)".into(), blake3::hash(&bytes).to_hex().to_string());
        // One epoch of Adam, the optimiser every shipped manifest trains with, on the same images.
        let mut model = crate::support::tiny_model();
        fit::fit(
            &mut model,
            &data,
            &empty,
            &FitConfig { optimizer: OptimizerKind::Adam, lr: 0.001, ..cfg },
            &Progress::hidden(),
        )
        .unwrap();
        out.insert("tiny model trained one epoch with Adam".into(), hash(&weights_of(&model)));
        out
    })
}

/// Every weight of a declared model, in the order of their names.
fn weights_of(model: &hudd::model::artefact::Model) -> Tensor {
    let mut weights: Vec<(String, Tensor)> = model.var_store().unwrap().variables().into_iter().collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::cat(&weights.iter().map(|(_, t)| t.detach().view([-1])).collect::<Vec<_>>(), 0)
}

#[test]
fn the_held_kernels_compute_the_committed_bytes_on_this_cpu() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kernel-hashes.json");
    let committed: BTreeMap<String, String> = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let here = computed();
    let differ: Vec<&String> = here.keys().filter(|k| committed.get(*k) != here.get(*k)).collect();
    assert!(
        differ.is_empty() && committed.len() == here.len(),
        "on this CPU ({}) the held kernels computed other bytes for {differ:?}: keys named `{}` would hold other \
         figures here than on the machine that wrote {}. Computed here:\n{}",
        hudd::runtime::doctor(std::path::Path::new("."))
            .into_iter()
            .find(|(k, _)| k == "CPU in keys")
            .map(|(_, v)| v)
            .unwrap_or_default(),
        hudd::runtime::cpu_kind(),
        file.display(),
        serde_json::to_string_pretty(&here).unwrap()
    );
}

/// The test above, run again under QEMU's emulation of other CPUs (`qemu-x86_64 -cpu`, Debian's `qemu-user`, which
/// scripts/deps.sh installs): an AMD EPYC (Milan) and an Intel Xeon (Ice Lake), each with its vendor string, its
/// caches and its instruction sets but QEMU's own arithmetic. A kernel that picks its code by vendor, cache size or
/// AVX-512, or that leans on an instruction whose result differs by chip (MKL's vector square root did, by way of
/// the reciprocal-square-root estimate), computes other bytes under one of them than on this CPU. It is not a real
/// AMD chip, whose estimates are its own; `scripts/vendor-check` on each vendor's machine remains the proof.
#[test]
fn the_held_kernels_compute_the_committed_bytes_under_emulated_cpus() {
    let exe = std::env::current_exe().unwrap();
    for cpu in ["EPYC-Milan", "Icelake-Server"] {
        let out = std::process::Command::new("qemu-x86_64")
            .args(["-cpu", cpu])
            .arg(&exe)
            .args(["--exact", "kernels::the_held_kernels_compute_the_committed_bytes_on_this_cpu", "--test-threads=1"])
            .output()
            .unwrap_or_else(|e| panic!("qemu-x86_64 did not start ({e}): install qemu-user (scripts/deps.sh does)"));
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        let said: String = said.lines().filter(|l| !l.contains("TCG doesn't support")).collect::<Vec<_>>().join("\n");
        assert!(out.status.success() && said.contains("1 passed"), "under qemu-x86_64 -cpu {cpu}:\n{said}");
    }
}
