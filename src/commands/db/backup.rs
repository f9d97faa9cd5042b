//! `berth db backup ENV`: a backup now, run in the cluster by berth's image.

use std::sync::Arc;

use crate::cli::GlobalArgs;
use crate::error::BerthError;
use crate::output::Output;

/// Back up `env`'s database now.
pub async fn run(
    _global: &GlobalArgs,
    _env: &str,
    _label: Option<&str>,
    _out: Arc<Output>,
) -> anyhow::Result<()> {
    Err(BerthError::NotBuilt {
        command: "db backup",
    }
    .into())
}
