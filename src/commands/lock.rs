//! `berth lock ENV status|acquire|release`: the deploy lock, by hand.

use k8s_openapi::jiff::Timestamp;

use crate::cli::{GlobalArgs, LockAction, LockArgs};
use crate::cluster::client;
use crate::cluster::lock::{self, LockState};
use crate::config::Config;
use crate::error::BerthError;
use crate::identity::Deployer;

/// Show, take or release an environment's deploy lock.
pub async fn run(global: &GlobalArgs, args: &LockArgs) -> anyhow::Result<()> {
    let config = Config::load(&global.config)?;
    let env = config.environment(&args.env)?;
    let client = client::connect(env.context.as_deref()).await?;
    let ns = &env.namespace;
    let now = Timestamp::now();
    match args.action {
        LockAction::Status => match lock::status(&client, ns).await? {
            LockState::Free => println!("{}: unlocked", args.env),
            LockState::Held(holder) => println!("{}: locked by {}", args.env, holder.describe(now)),
        },
        LockAction::Acquire => {
            let who = Deployer::current().describe();
            let purpose = format!("held by hand with `berth lock {} acquire`", args.env);
            match lock::try_acquire(&client, ns, &who, &purpose, args.ttl).await? {
                Ok(()) => println!(
                    "{}: locked by {who} for {}s; deploys wait or exit 3 until `berth lock {} release`",
                    args.env,
                    args.ttl.as_secs(),
                    args.env
                ),
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
            Some(holder) => println!(
                "{}: released the lock held by {}",
                args.env, holder.identity
            ),
            None => println!("{}: was not locked", args.env),
        },
    }
    Ok(())
}
