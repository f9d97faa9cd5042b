//! `berth db drill ENV [BACKUP]`: restore into a scratch database and record the evidence; `--check` for CI.

use std::sync::Arc;

use crate::cli::{DrillArgs, GlobalArgs};
use crate::error::BerthError;
use crate::output::Output;

/// Run `db drill`.
pub async fn run(_global: &GlobalArgs, _args: &DrillArgs, _out: Arc<Output>) -> anyhow::Result<()> {
    Err(BerthError::NotBuilt {
        command: "db drill",
    }
    .into())
}
