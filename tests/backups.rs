//! `berth db backup` and the backup CronJob deploys apply, with the real
//! example app on the real node, berth's own image (the static berth and
//! PostgreSQL's client) and the local MinIO, reached by pods through the
//! bridge address (`BERTH_NODE_S3_URL`). Each test has its own namespace,
//! database and bucket.
//!
//! Exit codes: what berth can check before anything runs (no `backups:`
//! block, a missing Secret, a missing bucket) is exit 2 with nothing
//! created; a database the agent cannot reach is also exit 2 (the agent's
//! bad input), its Job deleted and nothing written to the bucket; a backup
//! that started and failed is exit 1 with its manifest recording why.

mod support;

use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::backups::{bucket, credentials_secret, jobs, json_object, keys, set_backups};
use support::berth_image::berth_image;
use support::real_app::{RealApp, Release};
use support::{
    berth_command, code, create, interrupt, local_env, repo_root, report, spawn_captured, stderr,
    unique_name, within,
};

/// Neither the output nor the error of `out` holds a credential.
fn no_secrets_in(out: &std::process::Output, app: &RealApp) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [
        format!("pw-{}", app.database),
        local_env().var("AWS_SECRET_ACCESS_KEY").to_string(),
    ] {
        assert!(!text.contains(&secret), "a credential was printed:\n{text}");
    }
}

#[tokio::test]
async fn a_backup_of_the_real_app_lands_in_minio_and_the_cron_job_takes_its_own() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "backup").await;
    let (bucket, _bucket) = bucket("backups").await;
    credentials_secret(&client, &app.namespace).await;
    set_backups(&app, &bucket, "      schedule: \"* * * * *\"\n");
    app.deploy(Release::GoodA);

    // the deploy applied the CronJob, placed like the frontend, and its
    // ServiceAccount, which has no token
    let cron_job = Api::<CronJob>::namespaced(client.clone(), &app.namespace)
        .get("berth-backup")
        .await
        .expect("the deploy applies CronJob berth-backup");
    let spec = cron_job.spec.clone();
    assert_eq!(spec.schedule, "* * * * *");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let pod = spec.job_template.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some(berth_image()));
    assert_eq!(
        pod.node_selector
            .unwrap()
            .get("berth.dev/real")
            .map(String::as_str),
        Some("true")
    );
    let account = Api::<ServiceAccount>::namespaced(client.clone(), &app.namespace)
        .get("berth-backup")
        .await
        .unwrap();
    assert_eq!(account.automount_service_account_token, Some(false));

    // a manual backup: exit 0, the manifest in the bucket with the counts
    let out = app.berth(&[
        "--output", "json", "db", "backup", "test", "--label", "first",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    no_secrets_in(&out, &app);
    let summary = report(&out);
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["verified"], true);
    assert!(summary["tables"].as_u64().unwrap() > 0, "{summary}");
    let id = summary["id"].as_str().unwrap().to_string();
    assert!(id.contains("-manual-"), "{id}");
    let manifest = json_object(&bucket, &format!("test/backups/{id}.json"))
        .await
        .expect("the manifest is in the bucket");
    assert_eq!(manifest["status"], "succeeded");
    assert_eq!(manifest["label"], "first");
    assert_eq!(manifest["release"]["sha"], Release::GoodA.sha());
    assert!(
        manifest["tables"]["public.django_migrations"]
            .as_u64()
            .unwrap()
            > 0,
        "{manifest}"
    );
    assert!(manifest["size"].as_u64().unwrap() > 0);
    assert!(
        keys(&bucket)
            .await
            .contains(&format!("test/backups/{id}.dump"))
    );
    let human = app.berth(&["db", "backup", "test"]);
    assert_eq!(code(&human), 0, "{}", stderr(&human));
    assert!(stderr(&human).contains("verified"), "{}", stderr(&human));

    // the CronJob's own run, on the real node, lands a scheduled backup
    let jobs_api = Api::<Job>::namespaced(client.clone(), &app.namespace);
    let stream = watcher(jobs_api, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    within(
        Duration::from_secs(300),
        "a Job of CronJob berth-backup to succeed",
        async {
            let mut stream = std::pin::pin!(stream);
            while let Some(job) = stream.try_next().await.unwrap() {
                let scheduled = job
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "CronJob");
                let succeeded = job.status.as_ref().and_then(|s| s.succeeded) == Some(1);
                if scheduled && succeeded {
                    return;
                }
            }
        },
    )
    .await;
    let mut scheduled = Vec::new();
    for key in keys(&bucket).await {
        if key.contains("-schedule-") && key.ends_with(".json") {
            scheduled.push(json_object(&bucket, &key).await.unwrap());
        }
    }
    assert!(
        scheduled
            .iter()
            .any(|m| m["status"] == "succeeded" && m["who"] == "cronjob/berth-backup"),
        "{scheduled:?}"
    );

    // a rollback keeps today's schedule and tags it with the release it
    // makes (3), running the SHA it rolls back to
    app.deploy(Release::GoodB);
    app.ok(&["rollback", "test"]);
    let cron_job = Api::<CronJob>::namespaced(client.clone(), &app.namespace)
        .get("berth-backup")
        .await
        .expect("a rollback keeps CronJob berth-backup");
    let pod = cron_job
        .spec
        .job_template
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let vars: std::collections::BTreeMap<String, String> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(vars["BERTH_RELEASE"], "3", "{vars:?}");
    assert_eq!(vars["BERTH_SHA"], Release::GoodA.sha());

    // the schedule leaves berth.yaml: the next deploy deletes the CronJob
    set_backups(&app, &bucket, "");
    app.deploy(Release::GoodB);
    let gone = Api::<CronJob>::namespaced(client.clone(), &app.namespace)
        .get_opt("berth-backup")
        .await
        .unwrap();
    assert!(gone.is_none(), "CronJob berth-backup is still there");
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_changes() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "backup-bad").await;
    let ns = app.namespace.clone();
    // the database's workload, on the real node, where backup pods follow it
    let pause = local_env().var("BERTH_LOCAL_PAUSE_IMAGE");
    let _: k8s_openapi::api::apps::v1::Deployment = create(
        &client,
        &ns,
        json!({
            "metadata": {"name": "frontend"},
            "spec": {
                "selector": {"matchLabels": {"app": "frontend"}},
                "template": {
                    "metadata": {"labels": {"app": "frontend"}},
                    "spec": {
                        "nodeSelector": {"berth.dev/real": "true"},
                        "tolerations": [{"key": "berth.dev/real", "operator": "Exists", "effect": "NoSchedule"}],
                        "containers": [{"name": "frontend", "image": pause}]
                    }
                }
            }
        }),
    )
    .await;

    let refused = |args: &[&str], words: &[&str]| {
        let out = app.berth(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        for word in words {
            assert!(stderr(&out).contains(word), "{args:?}: {}", stderr(&out));
        }
        no_secrets_in(&out, &app);
    };
    refused(&["db", "backup", "test"], &["has no `backups:` block"]);

    let bucket_name = unique_name("backups-missing");
    set_backups(&app, &bucket_name, "");
    refused(
        &["db", "backup", "test"],
        &["backup-s3", "backups.credentials_secret", "does not exist"],
    );

    credentials_secret(&client, &ns).await;
    refused(
        &["db", "backup", "test"],
        &[&format!("bucket {bucket_name} does not exist")],
    );
    assert!(jobs(&client, &ns).await.is_empty(), "nothing runs");

    // a database nobody listens for: the agent says so, nothing is kept
    let (bucket, _bucket) = bucket("backups-bad").await;
    set_backups(&app, &bucket, "");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .patch(
            "db-credentials",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"stringData": {"PGPORT": "1"}})),
        )
        .await
        .unwrap();
    let out = app.berth(&["db", "backup", "test"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("PGPORT"), "{}", stderr(&out));
    no_secrets_in(&out, &app);
    assert!(jobs(&client, &ns).await.is_empty(), "the Job is deleted");
    assert!(keys(&bucket).await.is_empty(), "nothing is written");

    // Ctrl-C while the Job runs: exit 130 and the Job is deleted
    let mut command = berth_command(
        &app.dir.join("berth.yaml"),
        &repo_root(),
        &["db", "backup", "test"],
    );
    let child = spawn_captured(&mut command);
    let stream = watcher(
        Api::<Job>::namespaced(client.clone(), &ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects();
    within(Duration::from_secs(60), "the backup Job", async {
        std::pin::pin!(stream).try_next().await.unwrap();
    })
    .await;
    let out = interrupt(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(
        jobs(&client, &ns).await.is_empty(),
        "Ctrl-C deletes the Job"
    );

    // past backups.timeout: exit 4, saying which setting
    let path = app.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("timeout: 10m", "timeout: 1s")).unwrap();
    let out = app.berth(&["db", "backup", "test"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("backups.timeout"), "{}", stderr(&out));
}
