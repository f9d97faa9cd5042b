//! The pods that work on the data: a Job per `berth db` command and the
//! CronJobs a deploy applies (`berth-backup`, `berth-drill`), all running
//! `berth db agent <task>` in berth's image.
//!
//! Least privilege: the ServiceAccount `berth-backup` has no role and no
//! token (`automountServiceAccountToken: false`), since the agent never
//! talks to the Kubernetes API; it reads the database and S3 credentials
//! from its Secrets as environment variables (never argv), runs as uid
//! 65532 with a read-only root file system (an emptyDir at /tmp), no
//! privilege escalation and every capability dropped.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    LocalObjectReference, PodSpec, PodTemplateSpec, ServiceAccount, Toleration,
};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::manifest::{ReleaseRef, Trigger};
use crate::cluster::MANAGED_BY;
use crate::config::{Backups, Environment, Retention};

/// The ServiceAccount every backup pod runs as.
pub const SERVICE_ACCOUNT: &str = "berth-backup";
/// The scheduled backup's CronJob.
pub const BACKUP_CRON_JOB: &str = "berth-backup";
/// The scheduled drill's CronJob.
pub const DRILL_CRON_JOB: &str = "berth-drill";
/// The label naming the agent task of a backup Job, CronJob or pod.
pub const TASK_LABEL: &str = "berth.dev/task";
/// The uid (and gid) the agent runs as, as in berth's image.
const UID: i64 = 65532;
/// How long a finished Job stays for inspection.
const TTL_AFTER_FINISHED: i32 = 24 * 3600;
/// How late a scheduled run may start before it is skipped.
const STARTING_DEADLINE: i64 = 300;

/// What the agent does in the pod (`berth db agent <task>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTask {
    /// Dump the database to the bucket, with a manifest.
    Backup,
    /// Check a backup's dump against its manifest.
    Verify,
    /// Restore a backup into the live database.
    Restore,
    /// Restore a backup into a scratch database and check it.
    Drill,
    /// Delete the backups retention no longer keeps.
    Prune,
}

impl AgentTask {
    /// The task's name in the command line, Job names and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentTask::Backup => "backup",
            AgentTask::Verify => "verify",
            AgentTask::Restore => "restore",
            AgentTask::Drill => "drill",
            AgentTask::Prune => "prune",
        }
    }
}

/// One run of the agent: the environment, the task, and the task's own
/// `BERTH_*` variables (id, trigger, label, who, release...).
#[derive(Debug, Clone)]
pub struct AgentRun<'a> {
    /// The environment's name in berth.yaml.
    pub env_name: &'a str,
    /// The environment.
    pub env: &'a Environment,
    /// Its `backups:` block.
    pub backups: &'a Backups,
    /// What the agent does.
    pub task: AgentTask,
    /// Extra variables, e.g. `BERTH_BACKUP_ID`; they win over the ones
    /// berth.yaml gives.
    pub vars: Vec<(String, String)>,
}

/// Where pods of the environment may run: the node selector, tolerations
/// and image pull Secrets of the pod template of `database.workload`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// `nodeSelector`.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// `tolerations`.
    pub tolerations: Option<Vec<Toleration>>,
    /// `imagePullSecrets`.
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

impl Placement {
    /// The placement of `spec`'s pods.
    pub fn of(spec: &PodSpec) -> Placement {
        Placement {
            node_selector: spec.node_selector.clone(),
            tolerations: spec.tolerations.clone(),
            image_pull_secrets: spec.image_pull_secrets.clone(),
        }
    }

    /// The placement of the pods of `deployment`'s template.
    pub fn of_deployment(deployment: &Deployment) -> Placement {
        deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(Placement::of)
            .unwrap_or_default()
    }

    /// The placement of `env`'s `database.workload` as it runs now; none
    /// when the environment has no database or the Deployment is not there.
    pub async fn read(client: &Client, env: &Environment) -> anyhow::Result<Placement> {
        let Some(database) = &env.database else {
            return Ok(Placement::default());
        };
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &env.namespace);
        let found = deployments
            .get_opt(&database.workload)
            .await
            .with_context(|| format!("reading Deployment {}", database.workload))?;
        Ok(found
            .as_ref()
            .map(Placement::of_deployment)
            .unwrap_or_default())
    }

    /// Put this placement on `spec`.
    pub fn apply(&self, spec: &mut PodSpec) {
        spec.node_selector.clone_from(&self.node_selector);
        spec.tolerations.clone_from(&self.tolerations);
        spec.image_pull_secrets.clone_from(&self.image_pull_secrets);
    }
}

/// The Job that runs `run` once: named `berth-<task>-<random>`, one attempt,
/// `backups.timeout` to run, kept a day after it finishes.
pub fn job(run: &AgentRun<'_>, placement: &Placement) -> Job {
    let suffix: u32 = rand::random();
    let task = run.task.as_str();
    let name = format!("berth-{task}-{:06x}", suffix & 0xff_ffff);
    let template = pod_template(run, placement);
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels(task)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": run.backups.timeout.as_secs().max(1),
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
            "template": template,
        },
    });
    serde_json::from_value(job).expect("the agent's Job is well-formed")
}

/// The CronJobs of `env`'s `backups:` block, tagged with the deploying
/// `release`: `berth-backup` when `schedule` is set, `berth-drill` when
/// `drill.schedule` is. Scheduled runs never overlap (`Forbid`) and a run
/// more than five minutes late is skipped.
pub fn cron_jobs(
    env_name: &str,
    env: &Environment,
    backups: &Backups,
    release: Option<&ReleaseRef>,
    placement: &Placement,
) -> Vec<CronJob> {
    let mut release_vars = Vec::new();
    if let Some(release) = release {
        release_vars.push(("BERTH_RELEASE".to_string(), release.name.clone()));
        release_vars.push(("BERTH_SHA".to_string(), release.sha.clone()));
    }
    let scheduled = [
        (BACKUP_CRON_JOB, AgentTask::Backup, &backups.schedule),
        (DRILL_CRON_JOB, AgentTask::Drill, &backups.drill.schedule),
    ];
    scheduled
        .into_iter()
        .filter_map(|(name, task, schedule)| {
            let schedule = schedule.as_ref()?;
            let mut vars = vec![
                (
                    "BERTH_BACKUP_TRIGGER".to_string(),
                    Trigger::Schedule.as_str().to_string(),
                ),
                ("BERTH_WHO".to_string(), format!("cronjob/{name}")),
            ];
            vars.extend(release_vars.iter().cloned());
            let run = AgentRun {
                env_name,
                env,
                backups,
                task,
                vars,
            };
            let cron_job = json!({
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": name, "labels": labels(task.as_str())},
                "spec": {
                    "schedule": schedule,
                    "timeZone": backups.time_zone,
                    "concurrencyPolicy": "Forbid",
                    "startingDeadlineSeconds": STARTING_DEADLINE,
                    "successfulJobsHistoryLimit": 3,
                    "failedJobsHistoryLimit": 3,
                    "jobTemplate": {
                        "metadata": {"labels": labels(task.as_str())},
                        "spec": {
                            "backoffLimit": 0,
                            "activeDeadlineSeconds": backups.timeout.as_secs().max(1),
                            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
                            "template": pod_template(&run, placement),
                        },
                    },
                },
            });
            Some(serde_json::from_value(cron_job).expect("the agent's CronJob is well-formed"))
        })
        .collect()
}

/// The ServiceAccount the backup pods run as: no token, no role.
pub fn service_account() -> ServiceAccount {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": SERVICE_ACCOUNT, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "automountServiceAccountToken": false,
    }))
    .expect("the ServiceAccount is well-formed")
}

fn labels(task: &str) -> Value {
    json!({MANAGED_BY.0: MANAGED_BY.1, TASK_LABEL: task})
}

/// The agent's pod: its Secrets as environment, berth.yaml's settings as
/// `BERTH_*` variables, locked down, placed like the database's workload.
fn pod_template(run: &AgentRun<'_>, placement: &Placement) -> PodTemplateSpec {
    let task = run.task.as_str();
    let backups = run.backups;
    let mut env_from = Vec::new();
    if let Some(secret) = run.env.database.as_ref().and_then(|d| d.secret.as_ref()) {
        env_from.push(json!({"secretRef": {"name": secret}}));
    }
    env_from.push(json!({"secretRef": {"name": backups.credentials_secret}}));
    if let Some(secret) = &backups.drill.secret {
        // Only a drill needs it; other tasks must not fail for its absence.
        env_from.push(json!({
            "prefix": "DRILL_",
            "secretRef": {"name": secret, "optional": run.task != AgentTask::Drill},
        }));
    }
    let env: Vec<Value> = variables(run)
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let template = json!({
        "metadata": {"labels": labels(task)},
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "automountServiceAccountToken": false,
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": UID,
                "runAsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "agent",
                "image": backups.image,
                "command": ["berth", "db", "agent", task],
                "envFrom": env_from,
                "env": env,
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    });
    let mut template: PodTemplateSpec =
        serde_json::from_value(template).expect("the agent's pod template is well-formed");
    if let Some(spec) = template.spec.as_mut() {
        placement.apply(spec);
    }
    template
}

/// The `BERTH_*` variables of `run`: berth.yaml's, then the run's own
/// (which win).
fn variables(run: &AgentRun<'_>) -> Vec<(String, String)> {
    let backups = run.backups;
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |name: &str, value: String| {
        vars.insert(name.to_string(), value);
    };
    set("BERTH_ENVIRONMENT", run.env_name.to_string());
    set("BERTH_BACKUP_BUCKET", backups.bucket.clone());
    set("BERTH_BACKUP_PREFIX", backups.prefix.clone());
    if let Some(endpoint) = &backups.endpoint {
        set("BERTH_BACKUP_ENDPOINT", endpoint.clone());
    }
    if let Some(region) = &backups.region {
        set("BERTH_BACKUP_REGION", region.clone());
    }
    set("BERTH_RETENTION", retention_json(&backups.retention));
    if !backups.drill.smoke.is_empty() {
        set(
            "BERTH_DRILL_SMOKE",
            serde_json::to_string(&backups.drill.smoke).expect("strings encode"),
        );
    }
    for (name, value) in &run.vars {
        vars.insert(name.clone(), value.clone());
    }
    vars.into_iter().collect()
}

/// The retention counts as JSON, keys as in berth.yaml.
pub fn retention_json(retention: &Retention) -> String {
    json!({
        "daily": retention.daily,
        "weekly": retention.weekly,
        "monthly": retention.monthly,
        "manual": retention.manual,
        "pre_migrate": retention.pre_migrate,
        "pre_restore": retention.pre_restore,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> Config {
        Config::parse(
            "app: workbench\nimages: [registry.example.com/workbench/web]\n\
             environments:\n  staging:\n    namespace: wb-staging\n    overlay: overlays/staging\n\
             \x20   database: { workload: frontend, secret: db-credentials }\n\
             \x20   backups:\n      bucket: wb-backups\n      credentials_secret: backup-s3\n\
             \x20     image: 127.0.0.1:25000/berth:0.1.0\n      schedule: \"15 3 * * *\"\n\
             \x20     time_zone: Europe/Paris\n      timeout: 30m\n\
             \x20     drill: { schedule: \"0 5 * * 0\", smoke: [\"select true\"], secret: drill-pg }\n",
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("berth.yaml"),
        )
        .unwrap()
    }

    fn placement() -> Placement {
        serde_json::from_value::<PodSpec>(json!({
            "containers": [],
            "nodeSelector": {"berth.dev/real": "true"},
            "tolerations": [{"key": "berth.dev/real", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
            "imagePullSecrets": [{"name": "registry"}],
        }))
        .map(|spec| Placement::of(&spec))
        .unwrap()
    }

    fn env_of(spec: &PodSpec) -> BTreeMap<String, String> {
        spec.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    fn agent_run(config: &Config, task: AgentTask, vars: Vec<(String, String)>) -> AgentRun<'_> {
        let env = config.environment("staging").unwrap();
        AgentRun {
            env_name: "staging",
            env,
            backups: env.backups.as_ref().unwrap(),
            task,
            vars,
        }
    }

    #[test]
    fn the_backup_job_runs_the_agent_once_locked_down_with_its_secrets_and_settings() {
        let config = config();
        let run = agent_run(
            &config,
            AgentTask::Backup,
            vec![
                (
                    "BERTH_BACKUP_ID".into(),
                    "20261206T112233Z-manual-3fa9".into(),
                ),
                ("BERTH_BACKUP_TRIGGER".into(), "manual".into()),
            ],
        );
        let job = job(&run, &placement());
        let name = job.metadata.name.clone().unwrap();
        assert!(name.starts_with("berth-backup-"), "{name}");
        let labels = job.metadata.labels.clone().unwrap();
        assert_eq!(labels[MANAGED_BY.0], "berth");
        assert_eq!(labels[TASK_LABEL], "backup");
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(1800));
        assert_eq!(spec.ttl_seconds_after_finished, Some(86400));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let security = pod.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.run_as_user, Some(65532));
        assert_eq!(
            pod.node_selector.as_ref().unwrap()["berth.dev/real"],
            "true",
            "placed like database.workload"
        );
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "registry");
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("127.0.0.1:25000/berth:0.1.0")
        );
        assert_eq!(
            container.command.as_ref().unwrap(),
            &["berth", "db", "agent", "backup"]
        );
        let locked = container.security_context.as_ref().unwrap();
        assert_eq!(locked.allow_privilege_escalation, Some(false));
        assert_eq!(locked.read_only_root_filesystem, Some(true));
        assert_eq!(
            locked.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &["ALL"]
        );
        assert_eq!(
            container.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/tmp"
        );
        let env_from = container.env_from.as_ref().unwrap();
        let secrets: Vec<_> = env_from
            .iter()
            .map(|e| {
                let secret = e.secret_ref.as_ref().unwrap();
                (e.prefix.clone(), secret.name.clone(), secret.optional)
            })
            .collect();
        assert_eq!(
            secrets,
            [
                (None, "db-credentials".to_string(), None),
                (None, "backup-s3".to_string(), None),
                (
                    Some("DRILL_".to_string()),
                    "drill-pg".to_string(),
                    Some(true)
                ),
            ],
            "a backup must not need the drill's Secret"
        );
        let vars = env_of(&pod);
        assert_eq!(vars["BERTH_ENVIRONMENT"], "staging");
        assert_eq!(vars["BERTH_BACKUP_BUCKET"], "wb-backups");
        assert_eq!(vars["BERTH_BACKUP_PREFIX"], "staging/");
        assert_eq!(vars["BERTH_BACKUP_ID"], "20261206T112233Z-manual-3fa9");
        assert_eq!(vars["BERTH_BACKUP_TRIGGER"], "manual");
        assert_eq!(vars["BERTH_DRILL_SMOKE"], r#"["select true"]"#);
        let retention: Value = serde_json::from_str(&vars["BERTH_RETENTION"]).unwrap();
        assert_eq!(retention["daily"], 7);
        assert_eq!(retention["pre_migrate"], 10);
        assert!(!vars.contains_key("BERTH_BACKUP_ENDPOINT"));
    }

    #[test]
    fn a_drill_needs_its_secret() {
        let config = config();
        let run = agent_run(&config, AgentTask::Drill, vec![]);
        let pod = job(&run, &Placement::default())
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let drill = &pod.containers[0].env_from.as_ref().unwrap()[2];
        assert_eq!(drill.secret_ref.as_ref().unwrap().optional, Some(false));
        assert_eq!(pod.node_selector, None);
    }

    #[test]
    fn cron_jobs_are_scheduled_without_overlap_and_name_the_deploying_release() {
        let config = config();
        let env = config.environment("staging").unwrap();
        let backups = env.backups.as_ref().unwrap();
        let release = ReleaseRef {
            name: "7".into(),
            sha: "1a2b3c4".into(),
        };
        let cron_jobs = cron_jobs("staging", env, backups, Some(&release), &placement());
        let names: Vec<_> = cron_jobs
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["berth-backup", "berth-drill"]);
        let spec = cron_jobs[0].spec.clone();
        assert_eq!(spec.schedule, "15 3 * * *");
        assert_eq!(spec.time_zone.as_deref(), Some("Europe/Paris"));
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(spec.starting_deadline_seconds, Some(STARTING_DEADLINE));
        assert_eq!(spec.successful_jobs_history_limit, Some(3));
        assert_eq!(spec.failed_jobs_history_limit, Some(3));
        let job = spec.job_template.spec.unwrap();
        assert_eq!(job.backoff_limit, Some(0));
        let pod = job.template.spec.unwrap();
        assert_eq!(
            pod.node_selector.as_ref().unwrap()["berth.dev/real"],
            "true"
        );
        let vars = env_of(&pod);
        assert_eq!(vars["BERTH_BACKUP_TRIGGER"], "schedule");
        assert_eq!(vars["BERTH_WHO"], "cronjob/berth-backup");
        assert_eq!(vars["BERTH_RELEASE"], "7");
        assert_eq!(vars["BERTH_SHA"], "1a2b3c4");
        assert!(
            !vars.contains_key("BERTH_BACKUP_ID"),
            "each run makes its own id"
        );
        let drill = cron_jobs[1].spec.clone();
        assert_eq!(drill.schedule, "0 5 * * 0");
        let drill_pod = drill.job_template.spec.unwrap().template.spec.unwrap();
        assert_eq!(
            drill_pod.containers[0].command.as_ref().unwrap()[3],
            "drill"
        );
    }

    #[test]
    fn without_schedules_there_are_no_cron_jobs() {
        let config = config();
        let env = config.environment("staging").unwrap();
        let mut backups = env.backups.clone().unwrap();
        backups.schedule = None;
        backups.drill.schedule = None;
        assert!(cron_jobs("staging", env, &backups, None, &Placement::default()).is_empty());
        assert_eq!(
            service_account().automount_service_account_token,
            Some(false)
        );
    }
}
