//! `berth db backups ENV`: the backups in the bucket, with their last drill.

use std::sync::Arc;

use crate::cli::{BackupsArgs, GlobalArgs};
use crate::error::BerthError;
use crate::output::Output;

/// Run `db backups`.
pub async fn run(
    _global: &GlobalArgs,
    _args: &BackupsArgs,
    _out: Arc<Output>,
) -> anyhow::Result<()> {
    Err(BerthError::NotBuilt {
        command: "db backups",
    }
    .into())
}
