//! Failed migration Jobs are kept for inspection (their pods and logs), but
//! only the newest `migrate.keep_failed` per environment: each deploy
//! deletes older ones before it migrates.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};

use super::RELEASE_LABEL;
use crate::output::Output;

/// Delete the failed Jobs of `instance` in `ns` beyond the newest `keep`
/// (by release number, then creation time), with their pods; say each on
/// `out`. Returns the names deleted.
pub async fn prune(
    client: &Client,
    ns: &str,
    instance: &str,
    keep: u32,
    out: &Output,
) -> anyhow::Result<Vec<String>> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let listed = jobs
        .list(&ListParams::default().labels(&format!("{RELEASE_LABEL}={instance}")))
        .await
        .map_err(|e| anyhow::Error::from(e).context("listing the failed migration Jobs"))?;
    let doomed = beyond_newest(listed.items, keep);
    for job in &doomed {
        let name = job.name_any();
        crate::cluster::delete_if_present(&jobs, &name, &DeleteParams::background())
            .await
            .map_err(|e| anyhow::Error::from(e).context(format!("deleting failed Job {name}")))?;
        out.info(&format!(
            "deleted failed Job {name} of release {} with its pods: the newest {keep} \
             failed Jobs are kept (`migrate.keep_failed`)",
            release_of(job).unwrap_or_default()
        ));
    }
    Ok(doomed.iter().map(ResourceExt::name_any).collect())
}

/// The failed Jobs among `jobs` older than the newest `keep` failed ones.
fn beyond_newest(jobs: Vec<Job>, keep: u32) -> Vec<Job> {
    let mut failed: Vec<Job> = jobs.into_iter().filter(has_failed).collect();
    failed.sort_by_key(|job| {
        std::cmp::Reverse((release_of(job), job.metadata.creation_timestamp.clone()))
    });
    failed.split_off(failed.len().min(keep as usize))
}

/// The release number a Job of berth's carries.
fn release_of(job: &Job) -> Option<u64> {
    job.labels().get("berth.dev/release")?.parse().ok()
}

/// Whether the Job ended failed (its pod failed, or its deadline passed).
fn has_failed(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Failed" && c.status == "True")
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use kube::api::ObjectMeta;

    use super::*;

    fn job(release: u64, failed: bool) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(format!("migrate-{release}")),
                labels: Some([("berth.dev/release".to_string(), release.to_string())].into()),
                ..Default::default()
            },
            status: Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: if failed { "Failed" } else { "Complete" }.into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn names(jobs: Vec<Job>) -> Vec<String> {
        jobs.iter().map(ResourceExt::name_any).collect()
    }

    #[test]
    fn only_failed_jobs_older_than_the_newest_kept_go() {
        let jobs = vec![
            job(9, true),
            job(2, true),
            job(12, true),
            job(10, false),
            job(11, true),
            job(1, false),
        ];
        assert_eq!(names(beyond_newest(jobs.clone(), 3)), ["migrate-2"]);
        assert_eq!(
            names(beyond_newest(jobs.clone(), 1)),
            ["migrate-11", "migrate-9", "migrate-2"]
        );
        assert!(beyond_newest(jobs.clone(), 4).is_empty());
        assert_eq!(names(beyond_newest(jobs, 0)).len(), 4);
    }
}
