//! Build script: embeds an rpath to libtorch so `hudd` runs without LD_LIBRARY_PATH, and records libtorch's version.

use std::env;
use std::path::Path;

fn main() {
    // torch-sys (links = "tch") passes the libtorch lib folder it linked against.
    let lib = env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "torch-sys did not report its libtorch folder; build through ./hudd or scripts/test, which set LIBTORCH",
    );
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=HUDD_TORCH_LIB={lib}");
    let version_py = Path::new(&lib).join("..").join("version.py");
    println!("cargo:rerun-if-changed={}", version_py.display());
    let version = std::fs::read_to_string(&version_py)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("__version__ = ").map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=HUDD_LIBTORCH_VERSION={version}");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rustc-env=HUDD_CRATES={}", crate_versions());
}

/// The versions of the crates that compute results (for the report's traceability), from Cargo.lock.
fn crate_versions() -> String {
    const CRATES: [&str; 8] = ["tch", "polars", "kodama", "statrs", "minijinja", "image", "tiny-skia", "rand_chacha"];
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut found = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take())
            && CRATES.contains(&n.as_str())
        {
            found.push(format!("{n} {}", v.trim_matches('"')));
        }
    }
    found.sort();
    found.dedup();
    found.join(", ")
}
