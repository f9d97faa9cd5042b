//! `berth lock ENV status|acquire|release`: the deploy lock, by hand. A
//! line for people on stdout; with `--output json`, only the report, which
//! says where the lock stands after the action.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::cli::{GlobalArgs, LockAction, LockArgs};
use crate::cluster::client;
use crate::cluster::lock::{self, Claim, Holder, LockState};
use crate::confirm::{Question, confirm};
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
    /// Why the holder holds it (`acquire -m`), when held.
    reason: Option<String>,
    /// The hold `acquire` took, in seconds.
    ttl_s: Option<u64>,
    /// Whose hold `release` ended, if anybody's.
    released: Option<String>,
    /// When that hold was taken (RFC 3339).
    released_since: Option<String>,
}

/// The longest reason `acquire -m` records, in characters.
const MAX_REASON: usize = 500;

/// Show, take or release an environment's deploy lock.
pub async fn run(global: &GlobalArgs, args: &LockArgs, out: &Output) -> anyhow::Result<()> {
    if args.action == LockAction::Acquire && args.ttl.is_zero() {
        return Err(input_error(
            "--ttl 0s would free the lock as soon as it is taken; say how long to hold it, \
             e.g. --ttl 1h",
        ));
    }
    check_flags(args)?;
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
        reason: None,
        ttl_s: None,
        released: None,
        released_since: None,
    };
    let line = match args.action {
        LockAction::Status => match lock::status(&client, ns).await? {
            LockState::Free => format!("{}: unlocked", args.env),
            LockState::Held(holder) => {
                report.lock = "held";
                report.reason = holder.reason.clone();
                let holder = report.holder.insert(holder.describe(now));
                format!("{}: locked by {holder}", args.env)
            }
        },
        LockAction::Acquire => {
            let who = Deployer::current().describe();
            let berth = crate::program::name();
            let claim = Claim {
                identity: who.clone(),
                purpose: format!("held by hand with `{berth} lock {} acquire`", args.env),
                reason: args.message.as_ref().map(|m| m.trim().to_string()),
                session: lock::this_session(),
            };
            report.lock = "held";
            match lock::try_acquire(&client, ns, &claim, args.ttl).await? {
                Ok(()) => {
                    report.ttl_s = Some(args.ttl.as_secs());
                    report.reason = claim.reason.clone();
                    let reason = claim
                        .reason
                        .as_ref()
                        .map_or_else(String::new, |r| format!(" ({r})"));
                    let line = format!(
                        "{}: locked by {who}{reason} for {}; deploys wait or exit 3 until `{berth} lock {} release`",
                        args.env,
                        crate::duration::display(args.ttl),
                        args.env
                    );
                    report.holder = Some(who);
                    line
                }
                Err(holder) => {
                    report.reason = holder.reason.clone();
                    let holder = report.holder.insert(holder.describe(now));
                    let message = format!("{} is already locked by {holder}", args.env);
                    out.json_report(&report);
                    return Err(BerthError::Locked(message).into());
                }
            }
        }
        LockAction::Release => match lock::status(&client, ns).await? {
            LockState::Free => format!("{}: was not locked", args.env),
            LockState::Held(holder) => match release(&client, ns, args, &holder, out).await {
                Ok(line) => {
                    report.released = Some(holder.identity.clone());
                    report.released_since = holder.since.map(|t| t.to_string());
                    line
                }
                Err(error) => {
                    out.json_report(&report);
                    return Err(error);
                }
            },
        },
    };
    out.json_report(&report);
    if out.mode() != Mode::Json {
        stdout::line(line)?;
    }
    Ok(())
}

/// Flags that make no sense for the action, a zero TTL, an empty reason:
/// input errors before anything is read.
fn check_flags(args: &LockArgs) -> anyhow::Result<()> {
    if args.action == LockAction::Acquire && args.ttl.is_zero() {
        return Err(input_error(
            "--ttl 0s would free the lock as soon as it is taken; say how long to hold it, \
             e.g. --ttl 1h",
        ));
    }
    let berth = crate::program::name();
    let env = &args.env;
    match &args.message {
        Some(_) if args.action != LockAction::Acquire => {
            return Err(input_error(format!(
                "-m/--message records why a lock is taken; use it with `{berth} lock {env} acquire`"
            )));
        }
        Some(reason) if reason.trim().is_empty() => {
            return Err(input_error(
                "-m/--message is empty; say why you hold the lock, e.g. -m \"restoring the database\"",
            ));
        }
        Some(reason) if reason.chars().count() > MAX_REASON || reason.trim().contains('\n') => {
            return Err(input_error(format!(
                "-m/--message takes one line of at most {MAX_REASON} characters; shorten the reason"
            )));
        }
        _ => {}
    }
    if args.force && args.action != LockAction::Release {
        return Err(input_error(format!(
            "--force breaks someone else's lock; use it with `{berth} lock {env} release`"
        )));
    }
    Ok(())
}

/// Release `holder`'s lock: someone else's only with `--force`, saying so
/// loudly when its holder is alive; one not taken in this shell only once
/// confirmed. The line that says what was released.
async fn release(
    client: &kube::Client,
    ns: &str,
    args: &LockArgs,
    holder: &Holder,
    out: &Output,
) -> anyhow::Result<String> {
    let env = &args.env;
    let now = Timestamp::now();
    let mine = holder.identity == Deployer::current().describe();
    let berth = crate::program::name();
    if !mine && !args.force {
        return Err(input_error(format!(
            "{env}'s lock is held by {}, not by you; pass --force to break it (`{berth} lock {env} \
             release --force`), or wait for it",
            holder.describe(now)
        )));
    }
    let alive = holder.renewed_recently(now).filter(|_| !mine);
    if let Some(ago) = alive {
        out.warn(&format!(
            "THE HOLDER IS ALIVE: {} renewed this lock {} ago and is still working; breaking \
             it stops that work before its next change",
            holder.identity,
            crate::duration::display(Duration::from_secs(ago.unsigned_abs()))
        ));
    }
    let here = mine && holder.session.is_some() && holder.session == lock::this_session();
    if !here {
        confirm(&question(env, holder, mine, alive, now), args.confirm.yes).await?;
    }
    if !lock::release(client, ns, holder).await? {
        return Ok(format!(
            "{env}: the hold of {} ended by itself meanwhile; nothing left to release",
            holder.who()
        ));
    }
    let since = holder.since.map_or_else(String::new, |since| {
        format!(
            ", held since {} ({} ago)",
            since.strftime("%Y-%m-%d %H:%M:%S UTC"),
            crate::duration::display(Duration::from_secs(
                now.duration_since(since).as_secs().max(0).unsigned_abs()
            ))
        )
    });
    Ok(if mine {
        format!("{env}: released the lock held by {}{since}", holder.who())
    } else {
        format!("{env}: broke the lock of {}{since}", holder.who())
    })
}

/// What releasing `holder`'s lock asks when it was not taken in this shell.
fn question(
    env: &str,
    holder: &Holder,
    mine: bool,
    alive: Option<i64>,
    now: Timestamp,
) -> Question {
    let whose = if mine {
        "yours, taken in another shell"
    } else {
        "someone else's"
    };
    let mut facts = vec![
        format!("environment: {env}"),
        format!("holder:      {}", holder.describe(now)),
    ];
    if let Some(ago) = alive {
        facts.push(format!(
            "alive:       renewed {} ago",
            crate::duration::display(Duration::from_secs(ago.unsigned_abs()))
        ));
    }
    Question {
        action: format!("release {env}'s lock held by {}", holder.identity),
        why: format!("{env}'s lock is {whose}"),
        facts,
    }
}
