//! The built-in stage kinds, one file each, gathered into the registry the `hudd` binary uses.

use crate::stage::Registry;

/// Every stage kind this build of hudd knows.
pub fn registry() -> Registry {
    Registry::new()
}
