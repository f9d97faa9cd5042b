//! `berth db restore ENV BACKUP`: the guarded, recorded, resumable restore.

use std::sync::Arc;

use crate::cli::{GlobalArgs, RestoreArgs};
use crate::error::BerthError;
use crate::output::Output;

/// Run `db restore`.
pub async fn run(
    _global: &GlobalArgs,
    _args: &RestoreArgs,
    _out: Arc<Output>,
) -> anyhow::Result<()> {
    Err(BerthError::NotBuilt {
        command: "db restore",
    }
    .into())
}
