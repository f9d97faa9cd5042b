//! `berth lock ENV status|acquire|release`: the deploy lock, by hand. A
//! line for people on stdout; with `--output json`, only the report, which
//! says where the lock stands after the action.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::cli::{GlobalArgs, LockAction, LockArgs};
use crate::cluster::client;
use crate::cluster::lock::{self, LockState};
use crate::error::{BerthError, input_error};
use crate::identity::Deployer;
use crate::output::{Mode, Output};
use crate::stdout;

/// The report's fields: the environment, the action, and the lock after it.
#[derive(Debug, Serialize)]
struct LockReport {
    environment: String,
    /// `status`, `acquire` or `release`.
    action: &'static str,
    /// `free` or `held`, after the action.
    lock: &'static str,
    /// Who holds it, doing what, for how long yet (when held).
    holder: Option<String>,
    /// The hold `acquire` took, in seconds.
    ttl_s: Option<u64>,
    /// Whose hold `release` ended, if anybody's.
    released: Option<String>,
}

/// Show, take or release an environment's deploy lock.
pub async fn run(global: &GlobalArgs, args: &LockArgs, out: &Output) -> anyhow::Result<()> {
    if args.action == LockAction::Acquire && args.ttl.is_zero() {
        return Err(input_error(
            "--ttl 0s would free the lock as soon as it is taken; say how long to hold it, \
             e.g. --ttl 1h",
        ));
    }
    let config = crate::commands::load_config(global, &[&args.env], out)?;
    let env = config.environment(&args.env)?;
    let client = client::connect_multiplexed(env.context.as_deref()).await?;
    let ns = &env.namespace;
    let now = Timestamp::now();
    let mut report = LockReport {
        environment: args.env.clone(),
        action: match args.action {
            LockAction::Status => "status",
            LockAction::Acquire => "acquire",
            LockAction::Release => "release",
        },
        lock: "free",
        holder: None,
        ttl_s: None,
        released: None,
    };
    let line = match args.action {
        LockAction::Status => match lock::status(&client, ns).await? {
            LockState::Free => format!("{}: unlocked", args.env),
            LockState::Held(holder) => {
                report.lock = "held";
                let holder = report.holder.insert(holder.describe(now));
                format!("{}: locked by {holder}", args.env)
            }
        },
        LockAction::Acquire => {
            let who = Deployer::current().describe();
            let berth = crate::program::name();
            let purpose = format!("held by hand with `{berth} lock {} acquire`", args.env);
            report.lock = "held";
            match lock::try_acquire(&client, ns, &who, &purpose, args.ttl).await? {
                Ok(()) => {
                    report.ttl_s = Some(args.ttl.as_secs());
                    let line = format!(
                        "{}: locked by {who} for {}s; deploys wait or exit 3 until `{berth} lock {} release`",
                        args.env,
                        args.ttl.as_secs(),
                        args.env
                    );
                    report.holder = Some(who);
                    line
                }
                Err(holder) => {
                    let holder = report.holder.insert(holder.describe(now));
                    let message = format!("{} is already locked by {holder}", args.env);
                    out.json_report(&report);
                    return Err(BerthError::Locked(message).into());
                }
            }
        }
        LockAction::Release => match lock::release(&client, ns).await? {
            Some(holder) => {
                let line = format!(
                    "{}: released the lock held by {}",
                    args.env, holder.identity
                );
                report.released = Some(holder.identity);
                line
            }
            None => format!("{}: was not locked", args.env),
        },
    };
    out.json_report(&report);
    if out.mode() != Mode::Json {
        stdout::line(line)?;
    }
    Ok(())
}
