//! Build script: embeds an rpath to libtorch so `hudd` runs without LD_LIBRARY_PATH, and records libtorch's version.

use std::env;
use std::path::Path;

fn main() {
    // torch-sys (links = "tch") passes the libtorch lib folder it linked against.
    let lib = env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report its libtorch folder; build through ./hudd or scripts/test, which set LIBTORCH");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=HUDD_TORCH_LIB={lib}");
    let version_py = Path::new(&lib).join("..").join("version.py");
    println!("cargo:rerun-if-changed={}", version_py.display());
    let version = std::fs::read_to_string(&version_py)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__ = ").map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string()))
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=HUDD_LIBTORCH_VERSION={version}");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
}
