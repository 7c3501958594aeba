//! The `hudd` binary: parses arguments, runs the library, maps the result to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let registry = hudd::stages::registry();
    ExitCode::from(hudd::cli::main(std::env::args_os(), &registry))
}
