//! Typed progress of the steps that wait on the cluster, and the reporter
//! traits they send it through: [`crate::output::Output`] renders it, tests
//! record it.

/// How far a workload's rollout is: pods of the new revision ready, of desired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Ready pods of the new revision.
    pub ready: i32,
    /// Desired pods.
    pub desired: i32,
}

/// Where a workload's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadState {
    /// Still converging; what it waits for, e.g. "2/3 updated, 1/3 available".
    Progressing(String),
    /// Healthy.
    Healthy,
    /// Can never become healthy; the short reason, e.g. `ImagePullBackOff`.
    Failed(String),
}

impl WorkloadState {
    /// Healthy or failed: no further change is coming.
    pub fn is_settled(&self) -> bool {
        !matches!(self, WorkloadState::Progressing(_))
    }
}

/// Receives each change of a tracked workload while a rollout is waited on.
pub trait RolloutReporter {
    /// Workload `name` (`Kind/name`) is now at `progress` and `state`.
    fn workload(&self, name: &str, progress: Progress, state: &WorkloadState);
}

/// What a task that runs before the deploy (the migration) went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEvent<'a> {
    /// It started; what it runs.
    Started(&'a str),
    /// A line of its output.
    Output(&'a str),
    /// It succeeded; a summary.
    Succeeded(&'a str),
    /// It failed, or did not finish in time; why, and what was kept.
    Failed(&'a str),
    /// It was stopped; what was cleaned up.
    Cancelled(&'a str),
}

/// Receives the events of a pre-deploy task, from any thread.
pub trait TaskReporter: Send + Sync {
    /// Task `task` (e.g. `migrate`) went through `event`.
    fn task(&self, task: &str, event: TaskEvent<'_>);
}
