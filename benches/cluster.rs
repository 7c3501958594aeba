//! Clustering one layer of n = 2,000 heatmaps of 20,000 floats (issue 6):
//! - the distance matrix against the equivalent matrix product X·Xᵀ on the same machine (target ≤ 1.5×);
//! - the whole stage for one layer (distances streamed from the .npy file, HUDD's clustering space, Ward linkage,
//!   the WICD and silhouette sweep over k = 2..500, the knee, the partition, the layer's scores) against scipy +
//!   kneed doing HUDD's computation on the same file (target: hudd faster);
//! - peak memory of that stage against the n×n matrix (target: a small multiple).
//!
//! Run with `cargo bench --bench cluster`. The scipy side runs from the fixtures venv (`tests/fixtures/venv.sh`).

mod common;

use std::time::Instant;

use hudd::cluster;
use hudd::stages::cluster::{ClusterParams, Representation, layer_distances};
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

fn main() {
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
    let raw = layer_distances(dir.path(), "layer", &ids, Representation::HUDD).unwrap();
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
