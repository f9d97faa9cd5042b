//! The deploy lock: one `coordination.k8s.io` Lease per environment.
//!
//! A deploy holds the Lease for a short duration and renews it while it runs,
//! so a deployer that dies (SIGKILL, lost laptop) leaves a lock that expires by
//! itself. A person can hold it for longer with `berth lock ENV acquire`.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::BerthError;

/// Name of the Lease in the environment's namespace.
pub const LEASE_NAME: &str = "berth-deploy-lock";
/// How long a deploy's hold lasts without renewal.
pub const DEPLOY_HOLD: Duration = Duration::from_secs(15);
/// Annotation saying what the holder is doing.
const PURPOSE: &str = "berth.dev/purpose";

/// Who holds a lock, since when, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// The holder's identity (`user@host (...)` or a CI run).
    pub identity: String,
    /// What the holder is doing, e.g. `deploy 3f2a9c1`.
    pub purpose: String,
    /// When the holder took the lock.
    pub since: Option<Timestamp>,
    /// When the hold ends unless renewed.
    pub expires: Timestamp,
}

impl Holder {
    /// One line for people: who, doing what, for how long yet.
    pub fn describe(&self, now: Timestamp) -> String {
        let left = self.expires.duration_since(now).as_secs().max(0);
        format!(
            "{} ({}), for {left}s more unless renewed",
            self.identity, self.purpose
        )
    }
}

/// The state of an environment's lock.
#[derive(Debug, Clone, PartialEq)]
pub enum LockState {
    /// Nobody holds it.
    Free,
    /// Somebody holds it.
    Held(Holder),
}

/// Read the holder out of a Lease; `None` when free or expired at `now`.
pub fn holder_of(lease: &Lease, now: Timestamp) -> Option<Holder> {
    let spec = lease.spec.as_ref()?;
    let identity = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let expires = renewed
        .checked_add(SignedDuration::from_secs(seconds))
        .ok()?;
    if expires <= now {
        return None;
    }
    let purpose = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PURPOSE).cloned())
        .unwrap_or_default();
    Some(Holder {
        identity,
        purpose,
        since: spec.acquire_time.as_ref().map(|t| t.0),
        expires,
    })
}

/// The current state of the lock in `namespace`.
pub async fn status(client: &Client, namespace: &str) -> anyhow::Result<LockState> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = api
        .get_opt(LEASE_NAME)
        .await
        .context("reading the deploy lock")?;
    Ok(lease
        .and_then(|l| holder_of(&l, Timestamp::now()))
        .map_or(LockState::Free, LockState::Held))
}

fn lease_for(identity: &str, purpose: &str, hold: Duration, base: Option<&Lease>) -> Lease {
    let now = MicroTime(Timestamp::now());
    let mut lease = base.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(LEASE_NAME.into()),
            labels: Some(
                [crate::cluster::MANAGED_BY]
                    .map(|(k, v)| (k.into(), v.into()))
                    .into(),
            ),
            ..Default::default()
        },
        spec: None,
    });
    lease
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(PURPOSE.into(), purpose.into());
    let transitions = lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0);
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(identity.into()),
        lease_duration_seconds: Some(i32::try_from(hold.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(transitions + i32::from(base.is_some())),
        ..Default::default()
    });
    lease
}

/// Try once to take the lock. `Ok(Err(holder))` when somebody else holds it.
pub async fn try_acquire(
    client: &Client,
    namespace: &str,
    identity: &str,
    purpose: &str,
    hold: Duration,
) -> anyhow::Result<Result<(), Holder>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    loop {
        let current = api
            .get_opt(LEASE_NAME)
            .await
            .context("reading the deploy lock")?;
        let result = match &current {
            None => api
                .create(
                    &PostParams::default(),
                    &lease_for(identity, purpose, hold, None),
                )
                .await
                .map(drop),
            Some(lease) => {
                if let Some(holder) = holder_of(lease, Timestamp::now())
                    && holder.identity != identity
                {
                    return Ok(Err(holder));
                }
                // Free, expired or ours: replace it, guarded by resourceVersion.
                api.replace(
                    LEASE_NAME,
                    &PostParams::default(),
                    &lease_for(identity, purpose, hold, Some(lease)),
                )
                .await
                .map(drop)
            }
        };
        match result {
            Ok(()) => return Ok(Ok(())),
            // Somebody else wrote the Lease in between: look again.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(e).context("taking the deploy lock"),
        }
    }
}

/// Release the lock whoever holds it; returns who held it.
pub async fn release(client: &Client, namespace: &str) -> anyhow::Result<Option<Holder>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let Some(lease) = api
        .get_opt(LEASE_NAME)
        .await
        .context("reading the deploy lock")?
    else {
        return Ok(None);
    };
    let holder = holder_of(&lease, Timestamp::now());
    delete_exactly(&api, &lease).await?;
    Ok(holder)
}

/// Delete this version of the Lease, and nothing newer.
async fn delete_exactly(api: &Api<Lease>, lease: &Lease) -> anyhow::Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: lease.metadata.uid.clone(),
            resource_version: lease.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    match api.delete(LEASE_NAME, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e).context("releasing the deploy lock"),
    }
}

/// A deploy's hold on the lock, renewed in the background until released.
pub struct DeployLock {
    client: Client,
    namespace: String,
    identity: String,
    renewer: JoinHandle<()>,
    lost: watch::Receiver<bool>,
}

impl DeployLock {
    /// Take the lock for a deploy, waiting up to `wait` for a holder to let
    /// go; exits 3 (Locked) naming the holder when it stays held.
    pub async fn take(
        client: &Client,
        namespace: &str,
        identity: &str,
        purpose: &str,
        wait: Option<Duration>,
        mut on_wait: impl FnMut(&Holder),
    ) -> anyhow::Result<DeployLock> {
        let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
        loop {
            match try_acquire(client, namespace, identity, purpose, DEPLOY_HOLD).await? {
                Ok(()) => break,
                Err(holder) => {
                    if tokio::time::Instant::now() >= deadline {
                        let hint = if wait.is_some() {
                            "it was still held when --lock-wait ran out"
                        } else {
                            "wait for it, pass --lock-wait 10m, or if it is stale run `berth lock ENV release`"
                        };
                        return Err(BerthError::Locked(format!(
                            "environment namespace {namespace} is locked by {}; {hint}",
                            holder.describe(Timestamp::now())
                        ))
                        .into());
                    }
                    on_wait(&holder);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let (lost_tx, lost) = watch::channel(false);
        let renewer = tokio::spawn(renew(
            client.clone(),
            namespace.to_string(),
            identity.to_string(),
            purpose.to_string(),
            lost_tx,
        ));
        Ok(DeployLock {
            client: client.clone(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            renewer,
            lost,
        })
    }

    /// True once another holder took the lock (our renewals failed too long).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Stop renewing and release the lock if we still hold it.
    pub async fn release(self) -> anyhow::Result<()> {
        self.renewer.abort();
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Some(lease) = api
            .get_opt(LEASE_NAME)
            .await
            .context("reading the deploy lock")?
        {
            let ours = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.identity.as_str());
            if ours {
                delete_exactly(&api, &lease).await?;
            }
        }
        Ok(())
    }
}

/// Renew the hold every third of its duration; flag `lost` when another
/// holder has it.
async fn renew(
    client: Client,
    namespace: String,
    identity: String,
    purpose: String,
    lost: watch::Sender<bool>,
) {
    let mut tick = tokio::time::interval(DEPLOY_HOLD / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        match try_acquire(&client, &namespace, &identity, &purpose, DEPLOY_HOLD).await {
            Ok(Ok(())) => {}
            Ok(Err(holder)) => {
                tracing::error!("lost the deploy lock to {}", holder.identity);
                let _ = lost.send(true);
                return;
            }
            Err(e) => tracing::warn!("renewing the deploy lock failed (will retry): {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                annotations: Some([(PURPOSE.to_string(), "deploy 1a2b3c4".to_string())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed)),
                acquire_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(seconds),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_renewed_lease_is_held_until_its_duration_runs_out() {
        let t0: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let l = lease("ada@box", t0, 15);
        let held = holder_of(&l, t0 + SignedDuration::from_secs(14)).unwrap();
        assert_eq!(held.identity, "ada@box");
        assert_eq!(held.purpose, "deploy 1a2b3c4");
        assert_eq!(
            held.describe(t0 + SignedDuration::from_secs(5)),
            "ada@box (deploy 1a2b3c4), for 10s more unless renewed"
        );
        assert_eq!(holder_of(&l, t0 + SignedDuration::from_secs(15)), None);
    }

    #[test]
    fn an_empty_holder_is_free() {
        let t0: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        assert_eq!(holder_of(&lease("", t0, 15), t0), None);
        assert_eq!(holder_of(&Lease::default(), t0), None);
    }
}
