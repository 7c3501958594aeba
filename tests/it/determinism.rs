//! One key, one set of bytes: the quickstart (shrunk to fit the suite) gives the same key for every stage and the
//! same bytes under every key whatever the number of stages run at once (`--jobs` 1, 2, 4) and the threads each
//! may use (`--threads` 1, 2), from empty stores, and while a neighbour in the same process reseeds and draws from
//! libtorch's process-wide generator (which no stage may use).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use hudd::engine::RunOptions;

use crate::support::Ws;

/// Stage id → (key, every output file with its blake3).
type Digests = BTreeMap<String, (String, Vec<(String, String)>)>;

fn quickstart(options: RunOptions) -> Digests {
    let ws = Ws::new();
    let (w, r) = crate::support::quickstart(&ws, 2, &options);
    let store = ws.store();
    w.stages
        .iter()
        .zip(&r.keys)
        .map(|(s, key)| {
            let entry = store.entry(key).unwrap_or_else(|| panic!("{}: no entry", s.id));
            let files = entry.outputs.values().flat_map(|o| o.files.iter().map(|f| (f.path.clone(), f.blake3.clone())));
            (s.id.clone(), (key.clone(), files.collect()))
        })
        .collect()
}

/// The first stages whose key or bytes differ, for a readable failure: those with the same key and other bytes
/// first (where a difference starts), then those whose key differs (stages downstream of one).
fn differences(a: &Digests, b: &Digests) -> Vec<String> {
    let (mut bytes, mut keys) = (Vec::new(), Vec::new());
    for (stage, (key, files)) in a {
        let (other_key, other_files) = &b[stage];
        if key != other_key {
            keys.push(format!("{stage}: key {key} against {other_key}"));
        } else if files != other_files {
            let file = files.iter().zip(other_files).find(|(x, y)| x != y).map(|(x, _)| x.0.clone());
            bytes.push(format!("{stage}: same key, other bytes ({})", file.unwrap_or_default()));
        }
    }
    bytes.into_iter().chain(keys).take(5).collect()
}

#[test]
fn jobs_threads_and_a_neighbour_drawing_from_libtorch_change_no_key_and_no_byte() {
    let one = quickstart(RunOptions { jobs: Some(1), threads: Some(1), ..RunOptions::default() });
    assert!(one.len() > 70, "the quickstart has its stages");

    // Beside the second run, a thread reseeds libtorch's generator with other seeds and draws from it.
    let stop = AtomicBool::new(false);
    let two = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut seed = 0i64;
            while !stop.load(Ordering::Relaxed) {
                seed += 7919;
                tch::manual_seed(seed);
                let _ = tch::Tensor::rand([256], (tch::Kind::Float, tch::Device::Cpu)).sum(tch::Kind::Float);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        let two = quickstart(RunOptions { jobs: Some(2), threads: Some(2), ..RunOptions::default() });
        stop.store(true, Ordering::Relaxed);
        two
    });
    assert_eq!(differences(&one, &two), Vec::<String>::new(), "-j 1 --threads 1 against -j 2 --threads 2");

    let four = quickstart(RunOptions { jobs: Some(4), threads: Some(1), ..RunOptions::default() });
    assert_eq!(differences(&one, &four), Vec::<String>::new(), "-j 1 against -j 4");
}
