//! hudd: Heatmap-based Unsupervised Debugging of DNNs as a declarative workflow engine with a content-addressed store.

pub mod artefact;
pub mod cli;
pub mod cluster;
pub mod dataset;
pub mod descriptors;
pub mod diff;
pub mod domain;
pub mod engine;
pub mod imageops;
pub mod lrp;
pub mod media;
pub mod model;
pub mod npy;
pub mod regular;
pub mod runtime;
pub mod sim;
pub mod stages;
pub mod stats;
pub mod trigger;
