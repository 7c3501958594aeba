//! The `hudd` binary: parses arguments, runs the library, maps the result to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    // MKL, libtorch's LAPACK, splits an eigendecomposition (classical scaling, PCA, the spectral embedding) across
    // its threads whatever libtorch's own thread count, in an order that changes from run to run: the same key gave
    // other last digits (`hudd reproduce` on `workflows/recovery.toml`'s PCA pipelines). One MKL thread keeps a
    // stage's bytes a function of its key; libtorch's own kernels keep the threads each stage is given.
    // SAFETY: no other thread runs yet, and libtorch has not read its environment.
    unsafe { std::env::set_var("MKL_NUM_THREADS", "1") };
    hudd::runtime::pin_cpu_kernels();
    let registry = hudd::stages::registry();
    ExitCode::from(hudd::cli::main(std::env::args_os(), &registry))
}
