//! `berth db agent ...`: the work inside the cluster, in berth's image.

use std::sync::Arc;

use crate::cli::{AgentArgs, GlobalArgs};
use crate::error::BerthError;
use crate::output::Output;

/// Run `db agent`.
pub async fn run(_global: &GlobalArgs, _args: &AgentArgs, _out: Arc<Output>) -> anyhow::Result<()> {
    Err(BerthError::NotBuilt {
        command: "db agent",
    }
    .into())
}
