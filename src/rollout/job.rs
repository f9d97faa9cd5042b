//! Jobs: done when the Job completes; failed when the Job controller says so
//! (backoff limit, deadline), or when a pod can never start. A pod that ran
//! and failed is left to the Job, which retries it within its backoffLimit.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;

use super::{Failure, Thresholds, Verdict, first_doomed, owned_by, pod};

/// The verdict on `job`. `pods` may hold every pod in the namespace; only
/// those the Job owns count.
pub fn assess(
    job: &Job,
    pods: &[Pod],
    events: &[Event],
    now: Timestamp,
    thresholds: Thresholds,
) -> Verdict {
    let own_pods = || pods.iter().filter(|p| owned_by(&p.metadata, &job.metadata));
    if let Some(condition) = condition(job, "Failed") {
        let failed_pod = own_pods()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
            .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let mut message = condition
            .message
            .clone()
            .unwrap_or_else(|| "the Job failed".to_owned());
        if let Some(p) = failed_pod {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            let exit = pod::nonzero_exit(p)
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            message.push_str(&format!("; pod {name:?} failed{exit}"));
        }
        return Verdict::Failed(Failure {
            pod: failed_pod.and_then(|p| p.metadata.name.clone()),
            reason: condition
                .reason
                .clone()
                .unwrap_or_else(|| "Failed".to_owned()),
            message,
        });
    }
    if condition(job, "Complete").is_some() {
        return Verdict::Succeeded;
    }
    if let Some(verdict) = first_doomed(own_pods(), events, now, thresholds) {
        return verdict;
    }
    let empty = JobStatus::default();
    let status = job.status.as_ref().unwrap_or(&empty);
    let succeeded = status.succeeded.unwrap_or(0);
    let active = status.active.unwrap_or(0);
    let failed = status.failed.unwrap_or(0);
    let completions = completions(job);
    Verdict::Progressing(format!(
        "{succeeded}/{completions} succeeded, {active} running, {failed} failed"
    ))
}

/// (succeeded pods, completions wanted).
pub fn progress(job: &Job) -> (i32, i32) {
    let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
    (succeeded, completions(job))
}

fn completions(job: &Job) -> i32 {
    job.spec.as_ref().and_then(|s| s.completions).unwrap_or(1)
}

/// The Job's condition of this type, if it is True.
fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Objects, at};
    use super::*;

    fn verdict(objects: &Objects) -> Verdict {
        assess(
            &objects.job(),
            &objects.pods,
            &[],
            at("2026-11-21T22:56:30Z"),
            Thresholds::default(),
        )
    }

    #[test]
    fn complete_job_succeeds() {
        let objects = Objects::load(include_str!("fixtures/job-complete.json"));
        assert_eq!(verdict(&objects), Verdict::Succeeded);
        assert_eq!(progress(&objects.job()), (1, 1));
    }

    #[test]
    fn backoff_limit_fails_naming_the_pod_and_exit_code() {
        let objects = Objects::load(include_str!("fixtures/job-backoff-limit.json"));
        assert_eq!(
            verdict(&objects),
            Verdict::Failed(Failure {
                pod: Some("migrate-fail-k2ghs".into()),
                reason: "BackoffLimitExceeded".into(),
                message: r#"Job has reached the specified backoff limit; pod "migrate-fail-k2ghs" failed: container "migrate" exited with code 1 (Error: kwok fault: image tag fa11ed fails)"#.into(),
            })
        );
        assert_eq!(progress(&objects.job()), (0, 1));
    }

    #[test]
    fn deadline_exceeded_fails() {
        // The Job controller deleted the pod it was waiting on.
        let objects = Objects::load(include_str!("fixtures/job-deadline.json"));
        assert_eq!(
            verdict(&objects),
            Verdict::Failed(Failure {
                pod: None,
                reason: "DeadlineExceeded".into(),
                message: "Job was active longer than specified deadline".into(),
            })
        );
    }

    #[test]
    fn pod_that_cannot_start_fails_the_job_early() {
        let objects = Objects::load(include_str!("fixtures/job-image-pull.json"));
        match verdict(&objects) {
            Verdict::Failed(f) => assert_eq!(
                (f.pod.as_deref(), f.reason.as_str()),
                (Some("migrate-pull-5v6l2"), "ImagePullBackOff")
            ),
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn failed_pod_within_the_backoff_limit_is_retried_not_doomed() {
        let objects = Objects::load(include_str!("fixtures/job-retrying.json"));
        assert_eq!(
            verdict(&objects),
            Verdict::Progressing("0/1 succeeded, 0 running, 1 failed".into())
        );
    }

    #[test]
    fn pods_of_other_jobs_do_not_count() {
        let retrying = Objects::load(include_str!("fixtures/job-retrying.json"));
        let job = retrying.job();
        let namespace = retrying.and(Objects::load(include_str!("fixtures/job-image-pull.json")));
        let verdict = assess(
            &job,
            &namespace.pods,
            &[],
            at("2026-11-21T22:56:30Z"),
            Thresholds::default(),
        );
        assert!(matches!(verdict, Verdict::Progressing(_)), "{verdict:?}");
    }
}
