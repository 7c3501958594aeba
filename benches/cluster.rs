//! Clustering one layer of n = 2,000 heatmaps of 20,000 floats (issue 6):
//! - the distance matrix against the equivalent matrix product X·Xᵀ on the same machine (target ≤ 1.5×);
//! - the whole stage for one layer (distances streamed from the .npy file, HUDD's clustering space, Ward linkage,
//!   the WICD and silhouette sweep over k = 2..500, the knee, the partition, the layer's scores) against scipy +
//!   kneed doing HUDD's computation on the same file (target: hudd faster);
//! - peak memory of that stage against the n×n matrix (target: a small multiple).
//!
//! Run with `cargo bench --bench cluster`. The scipy side runs from the fixtures venv (`tests/fixtures/venv.sh`).
//!
//! `HUDD_BENCH_GENERIC=8000 cargo bench --bench cluster` (issue 30): the `cluster` stage's work on n failing images
//! with the generic pipeline (three layers of per-channel means, 112, 1,280 and 1,280 channels as EfficientNet-Lite0
//! gives them; L1-normalised, centred on the class, 20 principal components, Ward, HUDD's knee, the layer by WICD,
//! 50 stability subsets) beside HUDD's own (three layers of flat heatmaps, 4,096, 2,048 and 1,024 values; HUDD's
//! clustering space, Ward, the knee, the same stability) on the same images, in one run (target: the generic
//! pipeline within 3 minutes).

mod common;

use std::time::Instant;

use hudd::artefact::heatmaps::Heatmaps;
use hudd::cluster;
use hudd::cluster::layer::Representation;
use hudd::stages::cluster::ClusterParams;
use tch::{Kind, Tensor};

/// Peak resident memory of this process so far, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// `HUDD_BENCH_PARTS=n,d`: the parts of clustering one layer of n random heatmaps of d floats, each timed.
fn parts(n: usize, d: usize) {
    let mut draws = hudd::model::draws::Draws::new(1, hudd::model::draws::Stream::Init);
    let x = Vec::<f32>::try_from(draws.normal(&[n as i64, d as i64]).flatten(0, -1)).unwrap();
    let time = |what: &str, t: Instant| println!("{what:<28} {:8.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let raw = cluster::distances_of(&x, n, d);
    time("distances", t);
    let t = Instant::now();
    let space = cluster::hudd_space(&raw);
    time("HUDD space", t);
    let t = Instant::now();
    let curve = cluster::hudd_curve_space(&raw);
    time("k-curve matrix", t);
    let t = Instant::now();
    let dendrogram = cluster::dendrogram(&space, cluster::Linkage::Ward);
    time("Ward", t);
    let t = Instant::now();
    let sweep = cluster::sweep(&dendrogram, cluster::default_max_k(n), &curve, &space);
    time("sweep k = 2..max", t);
    let t = Instant::now();
    let (k, _) = cluster::choose_k(&sweep, cluster::KRule::Knee, &[]);
    let labels = cluster::cut(&dendrogram, k);
    let _ = (cluster::wicd(&raw, &labels), cluster::silhouette(&raw, &labels));
    time("knee, cut, scores", t);
}

/// The `cluster` stage's numerics on three layers written to `dir` (each `name.npy`, n rows), as the stage runs
/// them: every layer read and clustered, the best by WICD (the first layer excluded, as the input layer is), then
/// the stability subsets; returns the seconds of each part and the clusters found.
fn stage_work(
    dir: &std::path::Path,
    layers: &[&str],
    ids: &[String],
    representation: Representation<'_>,
    params: &ClusterParams,
) -> (Vec<(String, f64)>, usize) {
    let n = ids.len();
    let pipeline = params.pipeline();
    let max_k = cluster::default_max_k(n);
    let mut parts = Vec::new();
    let mut best: Option<(f64, cluster::layer::Layer, Vec<usize>)> = None;
    for (i, name) in layers.iter().enumerate() {
        let t = Instant::now();
        let layer = cluster::layer::read(&Heatmaps::open(dir).layer_path(name), name, ids, representation).unwrap();
        parts.push((format!("{name}: read, distances"), t.elapsed().as_secs_f64()));
        let t = Instant::now();
        let (labels, _sweep, _) = cluster::pipeline::cluster(layer.points(), &pipeline, max_k);
        let wicd = cluster::wicd(&layer.distances, &labels);
        let _ = cluster::silhouette(&layer.distances, &labels);
        parts.push((format!("{name}: pipeline, scores"), t.elapsed().as_secs_f64()));
        if i > 0 && best.as_ref().is_none_or(|b| wicd < b.0) {
            best = Some((wicd, layer, labels));
        }
    }
    let (_, layer, labels) = best.expect("a layer");
    let t = Instant::now();
    let _ = cluster::stability(&labels, params.stability_draws, params.stability_share, 1, |rows| {
        layer.recluster(rows, &pipeline, cluster::default_max_k(rows.len()))
    });
    parts.push((format!("stability, {} subsets", params.stability_draws), t.elapsed().as_secs_f64()));
    (parts, cluster::members(&labels).len())
}

/// Writes `n` rows of `d` values to `dir/name.npy`: six planted causes and ten classes, each a direction of the
/// layer, plus noise; `positive` passes them through softplus (channel means of activations are mostly positive).
fn planted(dir: &std::path::Path, name: &str, n: usize, d: usize, causes: &Tensor, classes: &Tensor, positive: bool) {
    let opts = (Kind::Float, tch::Device::Cpu);
    let x = Tensor::randn([6, d as i64], opts).index_select(0, causes)
        + Tensor::randn([10, d as i64], opts).index_select(0, classes)
        + Tensor::randn([n as i64, d as i64], opts) * 0.7;
    let x = if positive { x.softplus() } else { x };
    let values = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
    hudd::npy::write(&Heatmaps::open(dir).layer_path(name), &[n, d], &values).unwrap();
}

/// The backbone's features as the `activations` stage computes them (`common::backbone_as_the_stage`: a batch per
/// thread at once, each on one libtorch thread) at each input size, 64×64 images resized, the manifests' batches of
/// 8: seconds per image over 16 batches.
fn forward_per_image(sizes: &[usize]) -> Vec<(usize, f64)> {
    let images = Tensor::randint(256, [128, 3, 64, 64], (Kind::Uint8, tch::Device::Cpu));
    let workers = tch::get_num_threads().max(1) as usize;
    let mut out = Vec::new();
    for &size in sizes {
        if common::backbone(size).is_none() {
            println!("backbone forward passes: no weights (run scripts/pretrained.sh)");
            return out;
        }
        out.push((size, common::backbone_as_the_stage(size, &images, 8, 16, workers)));
    }
    out
}

/// `HUDD_BENCH_GENERIC=n`: the generic pipeline beside HUDD's on the same n failing images, in one run.
fn generic(n: usize) {
    tch::manual_seed(0);
    let dir = tempfile::tempdir().unwrap();
    let causes = Tensor::randint(6, [n as i64], (Kind::Int64, tch::Device::Cpu));
    let classes = Tensor::randint(10, [n as i64], (Kind::Int64, tch::Device::Cpu));
    let class_of: Vec<usize> = Vec::<i64>::try_from(&classes).unwrap().iter().map(|&c| c as usize).collect();
    let generic_layers = [("_blocks.10.add", 112), ("_conv_head", 1280), ("_avg_pooling", 1280)];
    let hudd_layers = [("conv4", 4096), ("conv5", 2048), ("fc6", 1024)];
    for (name, d) in generic_layers {
        planted(dir.path(), name, n, d, &causes, &classes, true);
    }
    for (name, d) in hudd_layers {
        planted(dir.path(), name, n, d, &causes, &classes, false);
    }
    let ids: Vec<String> = (0..n).map(|i| format!("img-{i}")).collect();
    let threads = rayon::current_num_threads();
    println!("n = {n} failing images, {threads} threads; each pipeline's three layers, then 50 stability subsets");
    let run = |what: &str, layers: &[&str], representation: Representation<'_>, params: &str| {
        let params: ClusterParams = toml::from_str(params).unwrap();
        let t = Instant::now();
        let (parts, k) = stage_work(dir.path(), layers, &ids, representation, &params);
        let total = t.elapsed().as_secs_f64();
        println!("{what}: {total:.1} s, {k} clusters");
        for (part, seconds) in parts {
            println!("  {part:<36} {seconds:7.2} s");
        }
        total
    };
    let names = |l: &[(&'static str, usize)]| l.iter().map(|x| x.0).collect::<Vec<_>>();
    let theirs = run(
        "HUDD's pipeline (flat heatmaps, HUDD's space, Ward, knee)",
        &names(&hudd_layers),
        Representation::HUDD,
        "",
    );
    let channels = Representation { features: cluster::features::Features::Channels, classes: Some(&class_of) };
    let ours = run(
        "generic pipeline (channel means, centred, 20 PCs, Ward, knee)",
        &names(&generic_layers),
        channels,
        "mode = \"direct\"\nfeatures = \"channels\"\ncentre = \"class\"\npca = 20\n",
    );
    println!("clustering, generic / HUDD's: {:.2}", ours / theirs);
    // The features themselves: the backbone's forward passes (HUDD's counterpart is LRP, 9.4 s for 8,757 images of
    // the quickstart's network: README, benchmarks).
    for (size, per) in forward_per_image(&[224, 160, 128, 96]) {
        let total = ours + per * n as f64;
        println!(
            "backbone at {size}×{size}: {:.1} ms an image, {:.0} s for {n}; with the clustering {total:.0} s (3 minutes: {})",
            per * 1e3,
            per * n as f64,
            if total <= 180.0 { "met" } else { "NOT met" }
        );
    }
}

fn main() {
    if let Ok(n) = std::env::var("HUDD_BENCH_GENERIC") {
        return generic(n.parse().expect("HUDD_BENCH_GENERIC=n"));
    }
    if let Ok(spec) = std::env::var("HUDD_BENCH_PARTS") {
        let (n, d) = spec.split_once(',').expect("HUDD_BENCH_PARTS=n,d");
        return parts(n.parse().unwrap(), d.parse().unwrap());
    }
    let (n, d, threads) = (2000usize, 20000usize, 2);
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let dir = tempfile::tempdir().unwrap();
    // Twenty blobs of different spreads: heatmap-like data with structure to find.
    {
        let centres = Tensor::randn([20, d as i64], (Kind::Float, tch::Device::Cpu));
        let which = Tensor::randint(20, [n as i64], (Kind::Int64, tch::Device::Cpu));
        let spread = Tensor::rand([n as i64, 1], (Kind::Float, tch::Device::Cpu)) * 1.5 + 0.2;
        let x = centres.index_select(0, &which)
            + Tensor::randn([n as i64, d as i64], (Kind::Float, tch::Device::Cpu)) * spread;
        let values = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
        hudd::npy::write(&dir.path().join("layer.npy"), &[n, d], &values).unwrap();
    }
    let ids: Vec<String> = (0..n).map(|i| format!("img-{i}")).collect();
    let params: ClusterParams = serde_json::from_value(serde_json::json!({})).unwrap();
    // Reset the peak to the current use (Linux: writing 5 to clear_refs), so the peak below is the stage's own.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = peak_rss();
    let t = Instant::now();
    let raw =
        cluster::layer::read(&Heatmaps::open(dir.path()).layer_path("layer"), "layer", &ids, Representation::HUDD)
            .unwrap()
            .distances;
    let t_distances = t.elapsed().as_secs_f64();
    let (labels, _sweep, rule) = cluster::pipeline::cluster(&raw, &params.pipeline(), cluster::default_max_k(n));
    let (wicd, silhouette) = (cluster::wicd(&raw, &labels), cluster::silhouette(&raw, &labels));
    let t_stage = t.elapsed().as_secs_f64();
    let peak = peak_rss().saturating_sub(base);
    let k = cluster::members(&labels).len();
    drop(raw);

    let x = Tensor::from_slice(
        &hudd::npy::NpyReader::<f32>::open(&dir.path().join("layer.npy")).unwrap().read_all().unwrap(),
    )
    .view([n as i64, d as i64]);
    let mut products = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let g = x.matmul(&x.tr());
        assert_eq!(g.size(), [n as i64, n as i64]);
        products.push(t.elapsed().as_secs_f64());
    }
    let product = common::median(products);
    let values = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
    let mut in_memory = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let m = cluster::distances_of(&values, n, d);
        assert_eq!(m.nrows(), n);
        in_memory.push(t.elapsed().as_secs_f64());
    }
    let in_memory = common::median(in_memory);
    drop(values);

    println!("n = {n} heatmaps of {d} floats, {threads} threads");
    println!("X·Xᵀ (f32, libtorch):                   {:7.3} s", product);
    println!(
        "distances in memory:                    {:7.3} s = {:.2}x the product (target <= 1.5: {})",
        in_memory,
        in_memory / product,
        if in_memory / product <= 1.5 { "met" } else { "NOT met" }
    );
    println!(
        "distances streamed from the .npy file:  {:7.3} s = {:.2}x the product",
        t_distances,
        t_distances / product
    );
    println!(
        "hudd, one layer (distances, HUDD space, Ward, sweep k=2..{}, knee, scores): {:.3} s; k = {k} ({rule}); WICD {wicd:.4}, silhouette {silhouette:.4}",
        cluster::default_max_k(n),
        t_stage
    );
    let matrix = (n * n * 8) as f64;
    println!(
        "peak memory added by that stage: {:.0} MB = {:.1}x the n×n matrix of f64 ({:.0} MB)",
        peak as f64 / 1e6,
        peak as f64 / matrix,
        matrix / 1e6
    );

    let Some(python) = common::python() else {
        println!("scipy + kneed: (no fixtures venv: run tests/fixtures/venv.sh)");
        return;
    };
    let out = std::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/cluster_scipy.py"))
        .arg(dir.path().join("layer.npy"))
        .arg(threads.to_string())
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(theirs) = text.lines().find_map(|l| l.strip_prefix("seconds ")).and_then(|v| v.trim().parse::<f64>().ok())
    else {
        println!("scipy side failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
        return;
    };
    print!("{text}");
    println!(
        "ratio scipy + kneed / hudd: {:.1} (target > 1: {})",
        theirs / t_stage,
        if theirs > t_stage { "met" } else { "NOT met" }
    );
}
