//! The built-in stage kinds, one file each, gathered into the registry the `hudd` binary uses.

pub mod activations;
pub mod balance;
pub mod cluster;
pub mod compare;
pub mod confirm;
pub mod corrupt;
pub mod expand;
pub mod generate;
pub mod heatmaps;
pub mod import;
pub mod import_model;
pub mod intervene;
pub mod label;
pub mod recovery;
pub mod report;
pub mod retrain;
pub mod rules;
pub mod select;
pub mod signature;
pub mod simulate;
pub mod test;
pub mod train;
pub mod variance;

use crate::engine::stage::Registry;

/// Every stage kind this build of hudd knows.
pub fn registry() -> Registry {
    Registry::new()
        .with(simulate::Simulate)
        .with(import::Import)
        .with(corrupt::Corrupt)
        .with(import_model::ImportModel)
        .with(train::Train)
        .with(test::Test)
        .with(heatmaps::Heatmaps)
        .with(cluster::Cluster)
        .with(select::Select)
        .with(label::Label)
        .with(balance::Balance)
        .with(retrain::Retrain)
        .with(variance::Variance)
        .with(rules::RulesStage)
        .with(confirm::Confirm)
        .with(generate::Generate)
        .with(expand::Expand)
        .with(intervene::Intervene)
        .with(signature::Signature)
        .with(recovery::Recovery)
        .with(activations::Activations)
        .with(compare::Compare)
        .with(report::Report)
}
