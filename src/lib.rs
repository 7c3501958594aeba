//! hudd: Heatmap-based Unsupervised Debugging of DNNs as a declarative workflow engine with a content-addressed store.

pub mod cli;
pub mod cluster;
pub mod dataset;
pub mod diagnostic;
pub mod engine;
pub mod graph;
pub mod lrp;
pub mod manifest;
pub mod media;
pub mod model;
pub mod npy;
pub mod plan;
pub mod progress;
pub mod runtime;
pub mod sheet;
pub mod sim;
pub mod slurm;
pub mod stage;
pub mod stages;
pub mod stats;
pub mod store;
pub mod svg;
