//! `berth lock ENV status|acquire|release`: the deploy lock, by hand.

use k8s_openapi::jiff::Timestamp;

use crate::cli::{GlobalArgs, LockAction, LockArgs};
use crate::cluster::client;
use crate::cluster::lock::{self, LockState};
use crate::config::Config;
use crate::error::{BerthError, input_error};
use crate::identity::Deployer;
use crate::stdout;

/// Show, take or release an environment's deploy lock.
pub async fn run(global: &GlobalArgs, args: &LockArgs) -> anyhow::Result<()> {
    if args.action == LockAction::Acquire && args.ttl.is_zero() {
        return Err(input_error(
            "--ttl 0s would free the lock as soon as it is taken; say how long to hold it, \
             e.g. --ttl 1h",
        ));
    }
    let config = Config::load(&global.config)?;
    let env = config.environment(&args.env)?;
    let client = client::connect(env.context.as_deref()).await?;
    let ns = &env.namespace;
    let now = Timestamp::now();
    match args.action {
        LockAction::Status => match lock::status(&client, ns).await? {
            LockState::Free => stdout::line(format!("{}: unlocked", args.env))?,
            LockState::Held(holder) => {
                stdout::line(format!("{}: locked by {}", args.env, holder.describe(now)))?
            }
        },
        LockAction::Acquire => {
            let who = Deployer::current().describe();
            let purpose = format!("held by hand with `berth lock {} acquire`", args.env);
            match lock::try_acquire(&client, ns, &who, &purpose, args.ttl).await? {
                Ok(()) => stdout::line(format!(
                    "{}: locked by {who} for {}s; deploys wait or exit 3 until `berth lock {} release`",
                    args.env,
                    args.ttl.as_secs(),
                    args.env
                ))?,
                Err(holder) => {
                    return Err(BerthError::Locked(format!(
                        "{} is already locked by {}",
                        args.env,
                        holder.describe(now)
                    ))
                    .into());
                }
            }
        }
        LockAction::Release => match lock::release(&client, ns).await? {
            Some(holder) => stdout::line(format!(
                "{}: released the lock held by {}",
                args.env, holder.identity
            ))?,
            None => stdout::line(format!("{}: was not locked", args.env))?,
        },
    }
    Ok(())
}
