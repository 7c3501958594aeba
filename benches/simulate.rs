//! Generation speed of 64×64 images with their parameter rows, per simulator (target: 1,000 images/s on 2 cores).
//!
//! Run with `cargo bench --bench simulate`.

use std::time::Instant;

use hudd::sim::{self, Distributions, SplitPlan};

fn main() {
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    let n = 4000;
    for s in sim::simulators() {
        for task in s.tasks() {
            let dists = Distributions::new(s, &Default::default(), "params").unwrap();
            let plans = [SplitPlan::plain("bench".into(), n, dists)];
            let t = Instant::now();
            let mut bytes = 0usize;
            sim::generate(s, task, 64, 1, &plans, &pool, |g| {
                bytes += g.sample.rgb.len() + g.values.len() * 8;
                Ok::<(), ()>(())
            })
            .unwrap();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{:>8} / {:<10} {n} images 64x64 on {} threads: {:.2} s, {:.0} images/s (target 1000: {}), {} MB",
                s.name(),
                task,
                pool.current_num_threads(),
                secs,
                n as f64 / secs,
                if n as f64 / secs >= 1000.0 { "met" } else { "NOT met" },
                bytes / 1_000_000
            );
        }
    }
}
