//! The integration tests: one binary, one module per area, shared helpers in `support`.

mod binary;
mod browser;
mod cli;
mod cluster;
mod committed;
mod determinism;
mod engine;
mod evaluation;
mod fuzz;
mod hostile;
mod ids;
mod import;
mod kernels;
mod lrp;
mod manifest_errors;
mod model;
mod repair;
mod report;
mod settings;
mod simulate;
mod slurm;
mod stats;
mod support;
mod tidy;
mod trigger;
