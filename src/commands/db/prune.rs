//! `berth db prune ENV`: delete what retention no longer keeps.

use std::sync::Arc;

use crate::cli::{GlobalArgs, PruneArgs};
use crate::error::BerthError;
use crate::output::Output;

/// Run `db prune`.
pub async fn run(_global: &GlobalArgs, _args: &PruneArgs, _out: Arc<Output>) -> anyhow::Result<()> {
    Err(BerthError::NotBuilt {
        command: "db prune",
    }
    .into())
}
