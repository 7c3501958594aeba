//! The built-in stage kinds, one file each, gathered into the registry the `hudd` binary uses.

pub mod cluster;
pub mod heatmaps;
pub mod import;
pub mod import_model;
pub mod simulate;
pub mod test;
pub mod train;

use crate::stage::Registry;

/// Every stage kind this build of hudd knows.
pub fn registry() -> Registry {
    Registry::new().with(simulate::Simulate).with(train::Train).with(test::Test).with(import::Import).with(import_model::ImportModel).with(heatmaps::Heatmaps)
        .with(cluster::Cluster)
}
