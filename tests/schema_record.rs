//! What a deploy records of its migrations (`migrate.framework: django`),
//! against the real example app on the real node: the adapter's Job run in
//! a copy of the migration Job, and the release record's schema part.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::config::Config;
use berth::migrate::{self, JobTask};
use berth::progress::{TaskEvent, TaskReporter};
use berth::render::{self, Pins};
use berth::rollout::Thresholds;
use berth::schema::adapter::Request;
use berth::schema::django::Django;
use berth::schema::jobs::{self, Spec};
use k8s_openapi::api::batch::v1::Job;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use support::backups::{bucket, credentials_secret, jobs, set_backups};
use support::real_app::{RealApp, Release};
use support::*;

/// The output lines a task printed.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl TaskReporter for Lines {
    fn task(&self, _: &str, event: TaskEvent<'_>) {
        if let TaskEvent::Output(line) = event {
            self.0.lock().unwrap().push(line.to_string());
        }
    }
}

/// The app's environment given a `migrate:` block of `lines` (YAML lines
/// indented for the block).
fn with_migrate(app: &RealApp, lines: &str) {
    let path = app.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        "    rollout:\n",
        &format!("    migrate:\n{lines}    rollout:\n"),
        1,
    );
    std::fs::write(&path, text).unwrap();
}

/// `migrate: { framework: django }` added to the app's environment.
fn with_framework(app: &RealApp) {
    with_migrate(app, "      framework: django\n");
}

/// The newest release's record.
async fn newest(client: &kube::Client, app: &RealApp) -> berth::cluster::release::Release {
    berth::cluster::release::list(client, &app.namespace)
        .await
        .unwrap()
        .remove(0)
}

/// The overlay's migration Job, rendered and pinned to `sha` as a deploy does.
async fn migration_template(config_path: &Path, sha: &str) -> (Job, Thresholds) {
    let config = Config::load(config_path).unwrap();
    let env = config.environment("test").unwrap().clone();
    let mut objects = render::render(&config, "test", &env, None).await.unwrap();
    render::label(&mut objects, &config.app, "test").unwrap();
    render::pin_images(&mut objects, &Pins::at_sha(&config.images, sha));
    let template = migrate::take_template(&mut objects).unwrap().unwrap();
    (template, Thresholds::from(&env.rollout))
}

fn id(text: &str) -> String {
    text.to_string()
}

#[tokio::test]
async fn the_adapter_reads_what_a_release_will_migrate_in_a_copy_of_its_migration_job() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "schema-jobs").await;
    let sha = Release::GoodA.sha();
    let (template, thresholds) = migration_template(&app.dir.join("berth.yaml"), sha).await;
    let spec = Spec {
        template: &template,
        task: JobTask::SchemaInspect,
        instance: "wb-test",
        number: 1,
        sha,
        image: None,
    };
    let lines = Arc::new(Lines::default());
    let started = Instant::now();
    let ran = jobs::run(
        &client,
        &app.namespace,
        &Django::new(vec![id("python3"), id("manage.py")]),
        &Request::Inspect,
        &spec,
        thresholds,
        Duration::from_secs(300),
        &CancellationToken::new(),
        &lines,
    )
    .await
    .unwrap();
    eprintln!(
        "the inspect Job took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(ran.failure.is_none(), "{:?}", ran.failure);
    assert!(ran.response.applied.is_empty(), "{:?}", ran.response);
    let pending: Vec<String> = ran
        .response
        .pending
        .iter()
        .filter(|s| s.migration.app == "workbench")
        .map(|s| s.migration.to_string())
        .collect();
    assert_eq!(
        pending,
        [
            "workbench.0001_initial",
            "workbench.0002_step_order",
            "workbench.0003_number_steps",
            "workbench.0004_module"
        ]
    );
    let irreversible: Vec<String> = ran
        .response
        .pending
        .iter()
        .filter(|s| s.irreversible())
        .map(|s| s.migration.to_string())
        .collect();
    assert_eq!(irreversible, ["workbench.0003_number_steps"]);
    let image = ran.image_id.expect("the pod's image by digest");
    assert!(
        image.starts_with("127.0.0.1:25000/workbench/migrate@sha256:"),
        "{image}"
    );
    let printed = lines.0.lock().unwrap().clone();
    assert!(
        !printed.iter().any(|l| l.contains("berth-schema-result")),
        "the result line is read, not shown: {printed:?}"
    );
    assert_eq!(
        jobs(&client, &app.namespace).await,
        Vec::<String>::new(),
        "a Job that changes nothing is deleted"
    );
    assert_eq!(
        ran.job,
        format!("wb-test-migration-inspect-1-{}", &sha[..12])
    );
}

/// The migration ids of a schema record's `migrated`, as `app.name`.
fn names(ids: &[berth::schema::adapter::MigrationId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn a_deploy_records_the_schema_its_migration_left_and_what_it_migrated() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "schema-record").await;
    with_framework(&app);

    let first = app.deploy(Release::GoodA);
    let said = stderr(&first);
    assert!(
        said.contains(
            "this release migrates: workbench.0001_initial, workbench.0002_step_order, \
             workbench.0003_number_steps, workbench.0004_module"
        ),
        "{said}"
    );
    assert!(
        said.contains(
            "this release's migrations cannot be undone by a rollback: \
             workbench.0003_number_steps ("
        ),
        "{said}"
    );
    assert!(
        !said.contains("berth-schema-result"),
        "the adapter's result line is read, not shown: {said}"
    );
    let releases = berth::cluster::release::list(&client, &app.namespace)
        .await
        .unwrap();
    let schema = releases[0]
        .schema
        .clone()
        .expect("release 1 records its schema");
    assert_eq!(schema.framework, "django");
    assert_eq!(schema.applied["workbench"], "0004_module");
    assert!(
        schema
            .image
            .starts_with("127.0.0.1:25000/workbench/migrate@sha256:"),
        "{}",
        schema.image
    );
    assert_eq!(
        names(&schema.migrated),
        [
            "workbench.0001_initial",
            "workbench.0002_step_order",
            "workbench.0003_number_steps",
            "workbench.0004_module"
        ]
    );
    let irreversible: Vec<String> = schema
        .irreversible
        .iter()
        .map(|i| i.migration.to_string())
        .collect();
    assert_eq!(irreversible, ["workbench.0003_number_steps"]);
    assert!(!schema.irreversible[0].operations.is_empty());
    let job = schema.job.job().expect("the migration Job as it ran");
    assert!(
        kube::ResourceExt::name_any(&job).starts_with("wb-test-migrate-1-"),
        "{job:?}"
    );
    assert_eq!(
        jobs(&client, &app.namespace).await,
        Vec::<String>::new(),
        "every Job that succeeded is deleted"
    );

    let history = app.ok(&["--output", "json", "history", "test"]);
    let printed = String::from_utf8_lossy(&history.stdout).into_owned();
    assert!(
        !printed.contains("db-credentials") && !printed.contains("envFrom"),
        "the recorded Job is never printed: {printed}"
    );
    let release: Value = printed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["event"] == "release")
        .unwrap_or_else(|| panic!("a release event: {printed}"));
    assert_eq!(release["schema"]["job"]["redacted"], true, "{release}");
    assert_eq!(release["schema"]["applied"]["workbench"], "0004_module");
    let table = String::from_utf8_lossy(&app.ok(&["history", "test"]).stdout).into_owned();
    assert!(
        table.contains("irreversible: workbench.0003_number_steps"),
        "{table}"
    );

    // The same migrations again: nothing migrated, the same state recorded.
    let second = app.deploy(Release::GoodB);
    assert!(
        stderr(&second).contains("this release migrates nothing"),
        "{}",
        stderr(&second)
    );
    let releases = berth::cluster::release::list(&client, &app.namespace)
        .await
        .unwrap();
    let again = releases[0]
        .schema
        .clone()
        .expect("release 2 records its schema");
    assert_eq!(again.applied, schema.applied);
    assert!(again.migrated.is_empty(), "{:?}", again.migrated);
    assert!(again.irreversible.is_empty());
    assert!(
        again
            .image
            .starts_with("127.0.0.1:25000/workbench/migrate@sha256:"),
        "{}",
        again.image
    );
}

#[tokio::test]
async fn with_before_migrate_pending_the_frameworks_read_decides_the_backup() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "schema-backup").await;
    let (bucket, _bucket) = bucket("schema-backup").await;
    credentials_secret(&client, &app.namespace).await;
    set_backups(&app, &bucket, "      before_migrate: pending\n");
    with_framework(&app);

    let sha = Release::GoodA.sha();
    let plan = app.ok(&["advanced-deploy", "test", sha, "--dry-run"]);
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        plan.contains(
            "Backup before the migration: if migrations are pending: migrate.framework reads \
             them first in a copy of the migration Job"
        ),
        "the framework's read replaces the template's pending check: {plan}"
    );
    assert!(
        plan.contains(
            "Migrations to apply, in order:\n  workbench.0001_initial\n  workbench.0002_step_order\n  \
             workbench.0003_number_steps  (a rollback cannot undo it)\n  workbench.0004_module\n"
        ),
        "the dry run reads what the migration would apply: {plan}"
    );
    assert_eq!(
        jobs(&client, &app.namespace).await,
        Vec::<String>::new(),
        "the dry run's Job is deleted"
    );
    let json = app.ok(&[
        "--output",
        "json",
        "advanced-deploy",
        "test",
        sha,
        "--dry-run",
    ]);
    let event: serde_json::Value = String::from_utf8_lossy(&json.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "plan")
        .expect("a plan event");
    assert_eq!(event["schema"]["pending"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        event["schema"]["irreversible"][0]["migration"]["name"],
        "0003_number_steps"
    );

    let first = app.deploy(Release::GoodA);
    let said = stderr(&first);
    assert!(
        said.contains("4 migrations are pending, so the database is backed up before they run"),
        "{said}"
    );
    assert!(
        !said.contains("[pending-check]"),
        "no pending check Job: {said}"
    );
    let release = newest(&client, &app).await;
    assert!(release.backup.is_some(), "a backup before the migration");
    assert_eq!(release.schema.unwrap().migrated.len(), 4);

    let second = app.deploy(Release::GoodB);
    let said = stderr(&second);
    assert!(
        said.contains("nothing is pending: no backup before the migration"),
        "{said}"
    );
    let release = newest(&client, &app).await;
    assert_eq!(release.backup, None);
    let schema = release.schema.expect("the state is recorded all the same");
    assert!(schema.migrated.is_empty());
    assert_eq!(schema.applied["workbench"], "0004_module");
}

#[tokio::test]
async fn a_framework_that_cannot_be_read_stops_the_deploy_before_anything_migrates() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "schema-unread").await;
    with_migrate(
        &app,
        "      framework: django\n      manage: [python3, no-such-manage.py]\n",
    );
    let out = app.berth(&["advanced-deploy", "test", Release::GoodA.sha()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("reading what this release will migrate failed, so nothing was migrated"),
        "{said}"
    );
    assert!(said.contains("no workload was changed"), "{said}");
    assert!(
        !said.contains("[migrate]"),
        "the migration never ran: {said}"
    );
    assert_eq!(deployment_count(&client, &app.namespace).await, 0);
    let tables = app
        .postgres()
        .await
        .query(
            "SELECT 1 FROM pg_tables WHERE tablename = 'django_migrations'",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.is_empty(), "nothing migrated");
    assert_eq!(
        jobs(&client, &app.namespace).await,
        Vec::<String>::new(),
        "the read-only Job is deleted even when it fails"
    );
    let release = newest(&client, &app).await;
    let failure = release.failure.expect("the failure is recorded");
    assert_eq!(
        (failure.workload.as_str(), failure.reason.as_str()),
        ("schema", "SchemaReadFailed")
    );
    assert_eq!(release.schema, None);
}

#[tokio::test]
async fn another_framework_deploys_as_before_with_no_extra_job() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "schema-rails").await;
    with_migrate(&app, "      framework: rails\n");
    let out = app.deploy(Release::GoodA);
    let said = stderr(&out);
    assert!(said.contains("[migrate]"), "{said}");
    assert!(
        !said.contains("[migration-inspect]") && !said.contains("[migration-state]"),
        "{said}"
    );
    assert_eq!(newest(&client, &app).await.schema, None);
}
