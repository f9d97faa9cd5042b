//! The deploy lock: one `coordination.k8s.io` Lease per environment.
//!
//! A deploy holds the Lease for a short duration and renews it while it runs,
//! so a deployer that dies (SIGKILL, lost laptop) leaves a lock that expires by
//! itself. A person can hold it for longer with `berth lock ENV acquire`.
//!
//! A deploy's hold is a scope ([`DeployLock::take`], then
//! [`DeployLock::hold`]): the lock is released however the work ends, and
//! the work learns through [`Lost`] when another holder took the lock, so it
//! stops before its next change.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{BerthError, kind_of};
use crate::identity::Deployer;
use crate::interrupt::{Interrupts, unless_interrupted};
use crate::output::Output;

/// Name of the Lease in the environment's namespace.
pub const LEASE_NAME: &str = "berth-deploy-lock";
/// How long a deploy's hold lasts without renewal.
pub const DEPLOY_HOLD: Duration = Duration::from_secs(15);
/// Annotation saying what the holder is doing.
const PURPOSE: &str = "berth.dev/purpose";
/// Annotation saying why a person holds the lock (`lock ENV acquire -m`).
const REASON: &str = "berth.dev/reason";
/// Annotation naming the terminal session (shell) that took the lock by hand.
const SESSION: &str = "berth.dev/session";

/// Who takes the lock, doing what, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// The holder's identity (`user@host`, `user@host (pid N)` or a CI run).
    pub identity: String,
    /// What the holder is doing, e.g. `deploy 3f2a9c1`.
    pub purpose: String,
    /// Why a person holds it (`lock ENV acquire -m`), shown to whoever it refuses.
    pub reason: Option<String>,
    /// The terminal session that took it by hand ([`this_session`]).
    pub session: Option<String>,
}

impl Claim {
    /// A deploy's claim: `identity` doing `purpose`, no reason, no session.
    pub fn deploy(identity: &str, purpose: &str) -> Claim {
        Claim {
            identity: identity.to_string(),
            purpose: purpose.to_string(),
            ..Claim::default()
        }
    }
}

/// This process's terminal session (the shell it was started from, as the
/// kernel's session id names it), recorded by `lock ENV acquire` so that
/// releasing there needs no confirmation.
///
/// Inside a container whose session was started outside its pid namespace
/// (a CI runner's), the kernel names that session 0: still one session, so
/// it is kept as `0`, not refused.
pub fn this_session() -> Option<String> {
    // SAFETY: getsid reads the caller's session id; it touches no memory.
    // (rustix's getsid panics on the 0 a foreign session reads as.)
    let sid = unsafe { libc::getsid(0) };
    (sid >= 0).then(|| sid.to_string())
}

/// Who holds a lock, since when, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// The holder's identity (`user@host (...)` or a CI run).
    pub identity: String,
    /// What the holder is doing, e.g. `deploy 3f2a9c1`.
    pub purpose: String,
    /// When the holder took the lock.
    pub since: Option<Timestamp>,
    /// When the hold was last taken or renewed.
    pub renewed: Timestamp,
    /// When the hold ends unless renewed.
    pub expires: Timestamp,
    /// Why a person holds it (`lock ENV acquire -m`).
    pub reason: Option<String>,
    /// The terminal session that took it by hand.
    pub session: Option<String>,
}

impl Holder {
    /// One line for people: who, doing what, since when, for how long yet.
    pub fn describe(&self, now: Timestamp) -> String {
        let between = |from: Timestamp, to: Timestamp| {
            crate::duration::display(Duration::from_secs(
                to.duration_since(from).as_secs().max(0).unsigned_abs(),
            ))
        };
        let left = between(now, self.expires);
        let taken = self.since.map_or_else(String::new, |since| {
            format!(", taken {} ago", between(since, now))
        });
        let reason = self
            .reason
            .as_ref()
            .map_or_else(String::new, |reason| format!("; reason: {reason:?}"));
        format!(
            "{}{taken}, for {left} more unless renewed{reason}",
            self.who()
        )
    }

    /// How many seconds ago the hold was taken or renewed, when that is
    /// recent enough ([`DEPLOY_HOLD`]) to say the holder is alive: a deploy
    /// renews its hold every few seconds while it works.
    pub fn renewed_recently(&self, now: Timestamp) -> Option<i64> {
        let ago = now.duration_since(self.renewed).as_secs().max(0);
        (ago <= DEPLOY_HOLD.as_secs() as i64).then_some(ago)
    }

    /// Who, doing what: `ada@box (pid 7) (deploy 3f2a9c1)`.
    pub fn who(&self) -> String {
        if self.purpose.is_empty() {
            self.identity.clone()
        } else {
            format!("{} ({})", self.identity, self.purpose)
        }
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

impl LockState {
    /// The holder's identity; `None` when free.
    pub fn identity(&self) -> Option<&str> {
        match self {
            LockState::Free => None,
            LockState::Held(holder) => Some(&holder.identity),
        }
    }
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
    let annotation = |key: &str| {
        lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key).cloned())
    };
    Some(Holder {
        identity,
        purpose: annotation(PURPOSE).unwrap_or_default(),
        since: spec.acquire_time.as_ref().map(|t| t.0),
        renewed,
        expires,
        reason: annotation(REASON),
        session: annotation(SESSION),
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

/// The Lease `claim` writes at `now`: a renewal of its own unexpired hold
/// moves only `renewTime`; taking it from somebody (or from nobody) also sets
/// `acquireTime` and counts a transition. The annotations are the claim's.
fn lease_for(claim: &Claim, hold: Duration, base: Option<&Lease>, now: Timestamp) -> Lease {
    let identity = claim.identity.as_str();
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
    let annotations = lease
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(PURPOSE.into(), claim.purpose.clone());
    for (key, value) in [(REASON, &claim.reason), (SESSION, &claim.session)] {
        match value {
            Some(value) => annotations.insert(key.into(), value.clone()),
            None => annotations.remove(key),
        };
    }
    let renewing = base
        .and_then(|l| holder_of(l, now))
        .is_some_and(|h| h.identity == identity);
    let previous = lease.spec.take().unwrap_or_default();
    let (acquire_time, lease_transitions) = if renewing {
        (previous.acquire_time, previous.lease_transitions)
    } else {
        let transitions = previous.lease_transitions.unwrap_or(0);
        (
            Some(MicroTime(now)),
            Some(transitions + i32::from(base.is_some())),
        )
    };
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(identity.into()),
        lease_duration_seconds: Some(i32::try_from(hold.as_secs()).unwrap_or(i32::MAX)),
        acquire_time,
        renew_time: Some(MicroTime(now)),
        lease_transitions,
        ..Default::default()
    });
    lease
}

/// Write the Lease `next` makes of the current one (`None`: there is none),
/// guarded by its resourceVersion and looked at again if somebody wrote it
/// in between. `Ok(Err(refusal))` when `next` refuses.
async fn write_lease<E>(
    api: &Api<Lease>,
    next: impl Fn(Option<&Lease>) -> Result<Lease, E>,
) -> anyhow::Result<Result<(), E>> {
    loop {
        let current = api
            .get_opt(LEASE_NAME)
            .await
            .context("reading the deploy lock")?;
        let lease = match next(current.as_ref()) {
            Ok(lease) => lease,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let params = PostParams::default();
        let written = match current {
            None => api.create(&params, &lease).await,
            Some(_) => api.replace(LEASE_NAME, &params, &lease).await,
        };
        match written {
            Ok(_) => return Ok(Ok(())),
            // Someone else created or replaced it first: read it again.
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                continue;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                anyhow::bail!(
                    "namespace {} does not exist, so there is no deploy lock to write there; \
                     the first `berth deploy` of this environment creates it",
                    api.namespace().unwrap_or("?")
                )
            }
            Err(e) => return Err(e).context("writing the deploy lock"),
        }
    }
}

/// Try once to take the lock for `claim`. `Ok(Err(holder))` when somebody
/// else holds it.
pub async fn try_acquire(
    client: &Client,
    namespace: &str,
    claim: &Claim,
    hold: Duration,
) -> anyhow::Result<Result<(), Holder>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let written = write_lease(&api, |current| {
        let now = Timestamp::now();
        match current.and_then(|l| holder_of(l, now)) {
            Some(holder) if holder.identity != claim.identity => Err(Box::new(holder)),
            // Free, expired or ours.
            _ => Ok(lease_for(claim, hold, current, now)),
        }
    })
    .await?;
    Ok(match written {
        Ok(()) => Ok(()),
        Err(holder) => Err(*holder),
    })
}

/// The renewal of `identity`'s hold on `current`, or who has the lock now
/// (and since when) when it is no longer ours: taken by another holder
/// (even one whose hold has since expired, who may have changed things),
/// or deleted.
fn renewal(claim: &Claim, current: Option<&Lease>) -> Result<Lease, Loss> {
    let identity = claim.identity.as_str();
    let now = Timestamp::now();
    let nobody = |why: String| Loss::Taken {
        holder: why,
        since: None,
    };
    let Some(lease) = current else {
        return Err(nobody(format!(
            "nobody: the Lease was deleted (`{} lock ENV release`?)",
            crate::program::name()
        )));
    };
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or_default();
    if holder == identity {
        return Ok(lease_for(claim, DEPLOY_HOLD, current, now));
    }
    Err(match holder_of(lease, now) {
        Some(holder) => Loss::Taken {
            holder: holder.who(),
            since: holder.since,
        },
        None if holder.is_empty() => nobody("nobody: the lock was released".into()),
        None => nobody(format!("{holder} (whose hold has expired since)")),
    })
}

/// Release the hold of `expected`, as `status` read it: renewals in
/// between are fine, but a lock that changed hands meanwhile is left alone
/// (exit 3, naming the new holder). `Ok(false)` when the hold had ended
/// by itself meanwhile.
pub async fn release(client: &Client, namespace: &str, expected: &Holder) -> anyhow::Result<bool> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    loop {
        let Some(lease) = api
            .get_opt(LEASE_NAME)
            .await
            .context("reading the deploy lock")?
        else {
            return Ok(false);
        };
        let Some(holder) = holder_of(&lease, Timestamp::now()) else {
            return Ok(false);
        };
        if holder.identity != expected.identity || holder.since != expected.since {
            return Err(BerthError::Locked(format!(
                "the lock changed hands meanwhile: it is now held by {}; nothing was released",
                holder.describe(Timestamp::now())
            ))
            .into());
        }
        match api.delete(LEASE_NAME, &exactly(&lease)).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(false),
            // Renewed in between: look again.
            Err(kube::Error::Api(s)) if s.is_conflict() => continue,
            Err(e) => return Err(e).context("releasing the deploy lock"),
        }
    }
}

/// A delete of `lease`'s version only: refused (409) once it was renewed
/// or replaced.
fn exactly(lease: &Lease) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: lease.metadata.uid.clone(),
            resource_version: lease.metadata.resource_version.clone(),
        }),
        ..Default::default()
    }
}

/// Delete this version of the Lease, and nothing newer.
async fn delete_exactly(api: &Api<Lease>, lease: &Lease) -> anyhow::Result<()> {
    match api.delete(LEASE_NAME, &exactly(lease)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Ok(()),
        Err(e) => Err(e).context("releasing the deploy lock"),
    }
}

/// A deploy's hold on the lock, renewed in the background until released.
/// Dropping it stops the renewals (the hold then expires by itself);
/// [`DeployLock::hold`] releases it.
pub struct DeployLock {
    client: Client,
    namespace: String,
    identity: String,
    renewer: JoinHandle<()>,
    lost: watch::Receiver<Option<Loss>>,
}

/// Why a hold ended while its holder still worked.
#[derive(Debug, Clone, PartialEq)]
enum Loss {
    /// Another holder has the lock: who, doing what, and since when
    /// (the Lease's `acquireTime`); `holder` says `nobody: …` for a lock
    /// released or deleted.
    Taken {
        holder: String,
        since: Option<Timestamp>,
    },
    /// The API server refused the renewal: the credentials were revoked
    /// (401) or lost the right to write the Lease (403). Retrying cannot help.
    Refused(String),
}

impl DeployLock {
    /// Take the lock for a deploy as `user@host (pid N)`, waiting up to
    /// `wait` for a holder to let go (saying so on `out`); exits 3 (Locked)
    /// naming the holder when it stays held.
    pub async fn take(
        client: &Client,
        namespace: &str,
        purpose: &str,
        wait: Option<Duration>,
        out: &Output,
    ) -> anyhow::Result<DeployLock> {
        out.step("lock");
        let identity = own_identity();
        let claim = Claim::deploy(&identity, purpose);
        let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
        loop {
            match try_acquire(client, namespace, &claim, DEPLOY_HOLD).await? {
                Ok(()) => break,
                Err(holder) => {
                    if tokio::time::Instant::now() >= deadline {
                        let hint = if wait.is_some() {
                            "it was still held when --lock-wait ran out".to_string()
                        } else {
                            format!(
                                "wait for it, pass --lock-wait 10m, or if it is stale run `{} lock ENV release` \
                                 (with --force if it is not yours)",
                                crate::program::name()
                            )
                        };
                        return Err(BerthError::Locked(format!(
                            "environment namespace {namespace} is locked by {}; {hint}",
                            holder.describe(Timestamp::now())
                        ))
                        .into());
                    }
                    out.info(&format!(
                        "waiting for the lock held by {}",
                        holder.describe(Timestamp::now())
                    ));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let (lost_tx, lost) = watch::channel(None);
        let renewer = tokio::spawn(renew(
            Api::namespaced(client.clone(), namespace),
            claim,
            lost_tx,
        ));
        Ok(DeployLock {
            client: client.clone(),
            namespace: namespace.to_string(),
            identity,
            renewer,
            lost,
        })
    }

    /// Run `work` under the lock, then release the lock however `work`
    /// ended. `work` gets the [`Lost`] signal to stop on. The result is the
    /// work's: a failure to release after the work failed is only a warning
    /// (the hold expires by itself, unrenewed).
    pub async fn hold<T, Work>(
        self,
        out: &Output,
        work: impl FnOnce(Lost) -> Work,
    ) -> anyhow::Result<T>
    where
        Work: Future<Output = anyhow::Result<T>>,
    {
        let lost = Lost {
            namespace: self.namespace.clone(),
            taken_by: self.lost.clone(),
        };
        let result = work(lost).await;
        out.step("unlock");
        let (result, warning) = settle(result, self.release().await);
        if let Some(warning) = warning {
            out.warn(&warning);
        }
        result
    }

    /// [`DeployLock::take`], stopped by Ctrl-C, SIGTERM or SIGHUP (exit 130). The
    /// request that takes the lock may reach the server just before the
    /// signal, so a stopped take releases a hold that turned out to be this
    /// process's: an interrupted deploy leaves no lock behind.
    pub async fn take_unless_interrupted(
        client: &Client,
        namespace: &str,
        purpose: &str,
        wait: Option<Duration>,
        interrupts: &mut Interrupts,
        out: &Output,
    ) -> anyhow::Result<DeployLock> {
        let taking = DeployLock::take(client, namespace, purpose, wait, out);
        let taken = unless_interrupted(interrupts, taking).await;
        if let Err(error) = &taken
            && matches!(kind_of(error), Some(BerthError::Interrupted))
            && let Err(release) = release_held_by(client, namespace, &own_identity()).await
        {
            out.warn(&format!(
                "{release:#}; if `{berth} lock ENV status` shows this process, run `{berth} lock ENV release`",
                berth = crate::program::name()
            ));
        }
        taken
    }

    /// Stop renewing and release the lock if we still hold it.
    async fn release(self) -> anyhow::Result<()> {
        self.renewer.abort();
        release_held_by(&self.client, &self.namespace, &self.identity).await
    }
}

/// This process as a lock holder: `user@host (pid N)`, as a deploy's
/// release record names its holder.
pub fn own_identity() -> String {
    format!(
        "{} (pid {})",
        Deployer::current().describe(),
        std::process::id()
    )
}

/// Release the lock if `identity` holds it; another holder's stays.
async fn release_held_by(client: &Client, namespace: &str, identity: &str) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    if let Some(lease) = api
        .get_opt(LEASE_NAME)
        .await
        .context("reading the deploy lock")?
    {
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(identity);
        if ours {
            delete_exactly(&api, &lease).await?;
        }
    }
    Ok(())
}

impl Drop for DeployLock {
    /// However the hold ends, the renewals stop with it.
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// The result of work done under the lock, given how releasing went: the
/// work's error first; a release failure after it becomes a warning.
fn settle<T>(
    result: anyhow::Result<T>,
    released: anyhow::Result<()>,
) -> (anyhow::Result<T>, Option<String>) {
    match (result, released) {
        (result, Ok(())) => (result, None),
        (Ok(_), Err(unreleased)) => (Err(unreleased), None),
        (Err(error), Err(unreleased)) => (
            Err(error),
            Some(format!(
                "{}; the lock expires by itself within {}",
                crate::error::brief(&unreleased),
                crate::duration::display(DEPLOY_HOLD)
            )),
        ),
    }
}

/// Tells work under the lock that another holder took the lock, so it stops
/// before its next change with [`BerthError::LockLost`] (exit 3).
#[derive(Clone)]
pub struct Lost {
    namespace: String,
    taken_by: watch::Receiver<Option<Loss>>,
}

impl Lost {
    /// `Err(LockLost)` once the lock is lost; `Ok` while it is ours.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.taken_by.borrow().as_ref() {
            Some(loss) => Err(self.error(loss)),
            None => Ok(()),
        }
    }

    /// Resolves with the `LockLost` error once the lock is lost; never
    /// while it is ours.
    pub async fn lost(&mut self) -> anyhow::Error {
        let loss = match self.taken_by.wait_for(Option::is_some).await {
            Ok(loss) => loss.clone(),
            // The renewer stopped (the hold is ending) without losing it.
            Err(_) => return std::future::pending().await,
        };
        self.error(loss.as_ref().expect("waited for a loss"))
    }

    /// Run `work`, or stop it with `LockLost` if the lock is lost first.
    pub async fn unless_lost<T>(
        mut self,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            result = work => result,
            lost = self.lost() => Err(lost),
        }
    }

    fn error(&self, loss: &Loss) -> anyhow::Error {
        match loss {
            Loss::Taken { holder, since } => BerthError::LockLost {
                namespace: self.namespace.clone(),
                holder: holder.clone(),
                since: since
                    .map(|since| crate::local_time::with_age(&since.to_string(), Timestamp::now())),
            },
            Loss::Refused(cause) => BerthError::CredentialsRefused {
                doing: "renewing the deploy lock".into(),
                cause: cause.clone(),
                hold: DEPLOY_HOLD.as_secs(),
            },
        }
        .into()
    }
}

/// Renew the hold every third of its duration; send who has the lock on
/// `lost` once it is no longer ours, or the refusal once the API server
/// refuses berth's credentials (a 401 or 403 is not retried: it stays).
async fn renew(api: Api<Lease>, claim: Claim, lost: watch::Sender<Option<Loss>>) {
    let mut tick = tokio::time::interval(DEPLOY_HOLD / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        match write_lease(&api, |current| renewal(&claim, current)).await {
            Ok(Ok(())) => {}
            Ok(Err(loss)) => {
                lost.send_replace(Some(loss));
                return;
            }
            Err(e) => match crate::error::credentials_refused(&e) {
                Some(cause) => {
                    lost.send_replace(Some(Loss::Refused(cause)));
                    return;
                }
                None => tracing::warn!("renewing the deploy lock failed (will retry): {e:#}"),
            },
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
            "ada@box (deploy 1a2b3c4), taken 5s ago, for 10s more unless renewed"
        );
        assert_eq!(holder_of(&l, t0 + SignedDuration::from_secs(15)), None);
    }

    #[test]
    fn an_empty_holder_is_free() {
        let t0: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        assert_eq!(holder_of(&lease("", t0, 15), t0), None);
        assert_eq!(holder_of(&Lease::default(), t0), None);
    }

    #[test]
    fn a_renewal_moves_only_the_renew_time() {
        let t0: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let mut held = lease("ada@box (pid 7)", t0, 15);
        held.spec.as_mut().unwrap().lease_transitions = Some(2);
        let t1 = t0 + SignedDuration::from_secs(5);
        let renewed = lease_for(
            &Claim::deploy("ada@box (pid 7)", "deploy 1a2b3c4"),
            DEPLOY_HOLD,
            Some(&held),
            t1,
        );
        let spec = renewed.spec.as_ref().unwrap();
        assert_eq!(spec.acquire_time, Some(MicroTime(t0)));
        assert_eq!(spec.lease_transitions, Some(2));
        assert_eq!(spec.renew_time, Some(MicroTime(t1)));
        assert_eq!(holder_of(&renewed, t1).unwrap().since, Some(t0));
    }

    #[test]
    fn taking_the_lock_from_somebody_sets_the_acquire_time_and_counts_a_transition() {
        let t0: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let mut expired = lease("ada@box (pid 7)", t0, 15);
        expired.spec.as_mut().unwrap().lease_transitions = Some(2);
        let t1 = t0 + SignedDuration::from_secs(60);
        let bob = Claim::deploy("bob@ci (pid 9)", "deploy 2b3c4d5");
        let taken = lease_for(&bob, DEPLOY_HOLD, Some(&expired), t1);
        let spec = taken.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("bob@ci (pid 9)"));
        assert_eq!(spec.acquire_time, Some(MicroTime(t1)));
        assert_eq!(spec.lease_transitions, Some(3));
        let fresh = lease_for(&bob, DEPLOY_HOLD, None, t1);
        assert_eq!(fresh.spec.unwrap().lease_transitions, Some(0));
    }

    #[test]
    fn a_lease_taken_by_another_or_deleted_is_lost_not_renewed() {
        let now = Timestamp::now();
        let ada = Claim::deploy("ada@box (pid 7)", "deploy 1a2b3c4");
        let ours = lease("ada@box (pid 7)", now, 15);
        assert!(renewal(&ada, Some(&ours)).is_ok());
        let taken = lease("bob@ci (pid 9)", now, 15);
        assert_eq!(
            renewal(&ada, Some(&taken)).unwrap_err(),
            Loss::Taken {
                holder: "bob@ci (pid 9) (deploy 1a2b3c4)".into(),
                since: Some(now),
            }
        );
        // Taken and expired since: bob may have changed things meanwhile.
        let expired = lease("bob@ci (pid 9)", now - SignedDuration::from_secs(60), 15);
        let lost_to = |current: Option<&Lease>| match renewal(&ada, current) {
            Err(Loss::Taken { holder, since }) => (holder, since),
            other => panic!("not lost: {other:?}"),
        };
        let (holder, since) = lost_to(Some(&expired));
        assert!(
            holder.starts_with("bob@ci (pid 9)") && since.is_none(),
            "{holder}"
        );
        assert!(lost_to(None).0.contains("deleted"));
    }

    #[test]
    fn a_persons_reason_and_session_are_kept_and_never_passed_on() {
        let t0: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let person = Claim {
            identity: "ada@box".into(),
            purpose: "held by hand".into(),
            reason: Some("restoring the database".into()),
            session: Some("4242".into()),
        };
        let held = lease_for(&person, Duration::from_secs(3600), None, t0);
        let holder = holder_of(&held, t0 + SignedDuration::from_secs(5)).unwrap();
        assert_eq!(holder.reason.as_deref(), Some("restoring the database"));
        assert_eq!(holder.session.as_deref(), Some("4242"));
        assert!(
            holder
                .describe(t0 + SignedDuration::from_secs(5))
                .ends_with("; reason: \"restoring the database\""),
            "{}",
            holder.describe(t0)
        );
        // A deploy taking the lock after the hold ends leaves no reason behind.
        let later = t0 + SignedDuration::from_secs(7200);
        let taken = lease_for(
            &Claim::deploy("bob@ci (pid 9)", "deploy 2b3c4d5"),
            DEPLOY_HOLD,
            Some(&held),
            later,
        );
        let holder = holder_of(&taken, later).unwrap();
        assert_eq!((holder.reason, holder.session), (None, None));
    }

    #[test]
    fn a_hold_renewed_within_a_deploys_hold_is_alive() {
        let t0: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let holder = holder_of(&lease("ada@box (pid 7)", t0, 15), t0).unwrap();
        assert_eq!(
            holder.renewed_recently(t0 + SignedDuration::from_secs(4)),
            Some(4)
        );
        assert_eq!(
            holder.renewed_recently(t0 + SignedDuration::from_secs(16)),
            None
        );
    }

    #[test]
    fn the_works_error_wins_over_a_failed_release() {
        let (result, warning) = settle::<()>(
            Err(anyhow::anyhow!("the rollout failed")),
            Err(anyhow::anyhow!(
                "releasing the deploy lock: connection refused"
            )),
        );
        assert_eq!(result.unwrap_err().to_string(), "the rollout failed");
        assert!(warning.unwrap().starts_with("releasing the deploy lock"));
        let (result, warning) = settle(Ok(()), Err(anyhow::anyhow!("releasing failed")));
        assert_eq!(result.unwrap_err().to_string(), "releasing failed");
        assert_eq!(warning, None);
    }

    #[tokio::test]
    async fn the_lost_signal_names_the_new_holder_and_stops_the_work() {
        let (taken_by, receiver) = watch::channel(None);
        let lost = Lost {
            namespace: "workbench-staging".into(),
            taken_by: receiver,
        };
        assert!(lost.check().is_ok());
        let since: Timestamp = "2026-12-07T08:40:12Z".parse().unwrap();
        taken_by.send_replace(Some(Loss::Taken {
            holder: "bob@ci (pid 9) (deploy 2b3c4d5)".into(),
            since: Some(since),
        }));
        drop(taken_by);
        let error = lost.check().unwrap_err();
        assert_eq!(crate::error::exit_code_number(&error), 3);
        let shown = crate::local_time::with_age(&since.to_string(), Timestamp::now());
        assert!(
            error.to_string().contains(&format!(
                "to bob@ci (pid 9) (deploy 2b3c4d5), holding it since {}",
                &shown[..19]
            )),
            "{error}"
        );
        let stopped = lost
            .unless_lost(std::future::pending::<anyhow::Result<()>>())
            .await;
        assert!(matches!(
            crate::error::kind_of(&stopped.unwrap_err()),
            Some(BerthError::LockLost { .. })
        ));
    }
}
