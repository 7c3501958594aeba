//! The built-in stage kinds, one file each, gathered into the registry the `hudd` binary uses.

pub mod simulate;

use crate::stage::Registry;

/// Every stage kind this build of hudd knows.
pub fn registry() -> Registry {
    Registry::new().with(simulate::Simulate)
}
