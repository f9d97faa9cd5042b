//! `berth rollback` bringing the database schema back (docs/rollback.md):
//! the real example app on the real node, its real Django migrations
//! against the local PostgreSQL, with the variants of example/variants as
//! the newer releases. Each test has its own namespace, role and database.
//!
//! Each rollback that unapplies migrations prints how long the berth
//! command took (`rollback with migrations: …`), for the closing note.

mod support;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};
use serde_json::{Value, json};
use support::backups::{bucket, credentials_secret, jobs, set_backups};
use support::real_app::{RealApp, Release, UNAPPLY_MARKER};
use support::*;

/// The app with `migrate: { framework: django }`, and a client.
async fn app(prefix: &str) -> (RealApp, Client) {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, prefix).await;
    app.set_django_migrations();
    (app, client)
}

/// Standard output and error together.
fn all_output(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out))
}

/// `berth ARGS`, timed; the time is printed for the closing note.
fn timed(app: &RealApp, what: &str, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = app.berth(args);
    eprintln!(
        "{what}: `berth {}` took {:.1}s (exit {})",
        args.join(" "),
        started.elapsed().as_secs_f64(),
        code(&out)
    );
    out
}

/// `django_migrations` as it is: id, app, name and when, in id order.
async fn migration_rows(app: &RealApp) -> Vec<(i32, String, String, String)> {
    app.postgres()
        .await
        .query(
            "SELECT id, app, name, applied::text FROM django_migrations ORDER BY id",
            &[],
        )
        .await
        .expect("django_migrations")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The tables of the app's database.
async fn tables(app: &RealApp) -> Vec<String> {
    names(
        app,
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY 1",
    )
    .await
}

/// The columns of `table`.
async fn columns(app: &RealApp, table: &str) -> Vec<String> {
    names(
        app,
        &format!(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = '{table}' ORDER BY 1"
        ),
    )
    .await
}

/// The indexes of the app's database.
async fn indexes(app: &RealApp) -> Vec<String> {
    names(
        app,
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    )
    .await
}

/// The workflows' names, in id order.
async fn workflow_names(app: &RealApp) -> Vec<String> {
    names(app, "SELECT name FROM workflow ORDER BY id").await
}

/// The first column of `query`'s rows.
async fn names(app: &RealApp, query: &str) -> Vec<String> {
    app.postgres()
        .await
        .query(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Run `sql` as the app's own role (the tables are its).
async fn as_app(app: &RealApp, sql: &str) {
    app.postgres()
        .await
        .batch_execute(&format!(
            "SET ROLE {role}; {sql}; RESET ROLE",
            role = app.database
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The releases as `history --output json` reports them, newest first.
fn releases(app: &RealApp) -> Vec<Value> {
    let out = app.ok(&["--output", "json", "history", "test"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "release")
        .collect()
}

/// Each of the app's Deployments' container images (not those of
/// berth's maintenance server, which a rollback that unapplies starts).
async fn images(client: &Client, namespace: &str) -> BTreeMap<String, Vec<String>> {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|d| d.metadata.name.as_deref() != Some("berth-maintenance"))
        .map(|d| {
            let containers = d.spec.unwrap().template.spec.unwrap().containers;
            let images = containers.into_iter().filter_map(|c| c.image).collect();
            (d.metadata.name.unwrap(), images)
        })
        .collect()
}

/// `on`, `partial` or `off`: whether the maintenance page is up.
fn maintenance(app: &RealApp) -> String {
    let out = app.ok(&["--output", "json", "maintenance", "test", "status"]);
    let state = &report(&out)["state"];
    state
        .as_str()
        .unwrap_or_else(|| panic!("{state}"))
        .to_owned()
}

/// Whether every workload runs `release`'s SHA.
fn all_at(images: &BTreeMap<String, Vec<String>>, release: Release) -> bool {
    images
        .values()
        .flatten()
        .filter(|i| i.contains("/workbench/"))
        .all(|i| i.ends_with(&format!(":{}", release.sha())))
}

/// Wait until the frontend's Service answers `release`'s version (the
/// newer release's pods drain for a few seconds after a rollout).
async fn serves(app: &RealApp, client: &Client, release: Release) {
    let url = app.serving(client).await;
    let sha = release.sha();
    poll(
        Duration::from_secs(60),
        &format!("the frontend to answer {sha}"),
        async || (load::once(&url).await.ok()? == sha).then_some(()),
    )
    .await;
}

/// What a rollback must leave as it was, when it refuses or fails early.
#[derive(Debug, PartialEq)]
struct Snapshot {
    releases: usize,
    images: BTreeMap<String, Vec<String>>,
    migrations: Vec<(i32, String, String, String)>,
    tables: Vec<String>,
    jobs: Vec<String>,
}

impl Snapshot {
    async fn take(app: &RealApp, client: &Client) -> Snapshot {
        let mut jobs = jobs(client, &app.namespace).await;
        jobs.sort();
        Snapshot {
            releases: releases(app).len(),
            images: images(client, &app.namespace).await,
            migrations: migration_rows(app).await,
            tables: tables(app).await,
            jobs,
        }
    }
}

/// The schema state a release record holds (`schema.applied`).
fn applied(release: &Value) -> &Value {
    &release["schema"]["applied"]
}

#[tokio::test]
async fn a_rollback_unapplies_reversible_migrations_and_the_old_code_serves() {
    let (app, client) = app("schema-reversible").await;
    app.deploy(Release::GoodA);
    let a_rows = migration_rows(&app).await;
    let a_tables = tables(&app).await;
    app.deploy(Release::Reversible);
    assert!(tables(&app).await.contains(&"tag".to_owned()));
    assert!(
        columns(&app, "module")
            .await
            .contains(&"description".to_owned())
    );
    let recorded = releases(&app);
    assert_eq!(
        applied(&recorded[1]),
        &json!({"workbench": "0004_module"}),
        "release 1's record: {}",
        recorded[1]
    );
    assert_eq!(
        applied(&recorded[0]),
        &json!({"workbench": "0006_tag"}),
        "{}",
        recorded[0]
    );
    assert_eq!(
        recorded[0]["schema"]["migrated"],
        json!([
            {"app": "workbench", "name": "0005_module_description"},
            {"app": "workbench", "name": "0006_tag"}
        ]),
        "{}",
        recorded[0]
    );
    assert_eq!(recorded[0]["schema"]["irreversible"], json!([]));

    let out = timed(&app, "rollback with migrations", &["rollback", "test"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(maintenance(&app), "off", "{}", all_output(&out));

    assert!(!tables(&app).await.contains(&"tag".to_owned()));
    assert!(
        !columns(&app, "module")
            .await
            .contains(&"description".to_owned())
    );
    assert_eq!(tables(&app).await, a_tables);
    assert_eq!(
        migration_rows(&app).await,
        a_rows,
        "django_migrations is A's again, row for row"
    );
    serves(&app, &client, Release::GoodA).await;
    assert!(all_at(
        &images(&client, &app.namespace).await,
        Release::GoodA
    ));
    let recorded = releases(&app);
    assert_eq!(recorded.len(), 3);
    let rollback = &recorded[0];
    assert_eq!(rollback["status"], "succeeded", "{rollback}");
    assert_eq!(rollback["sha"], Release::GoodA.sha());
    assert_eq!(rollback["rolled_back_to"], 1, "{rollback}");
    assert_eq!(applied(rollback), applied(&recorded[2]), "{rollback}");
}

#[tokio::test]
async fn an_irreversible_migration_is_refused_then_restore_backup_brings_the_old_data_back() {
    let (app, client) = app("schema-irreversible").await;
    let (bucket, _bucket) = bucket("schema-irreversible").await;
    credentials_secret(&client, &app.namespace).await;
    set_backups(&app, &bucket, "      before_migrate: always\n");
    app.deploy(Release::GoodA);
    as_app(
        &app,
        "INSERT INTO workflow (name) VALUES ('alpha'), ('beta')",
    )
    .await;
    let a_rows = migration_rows(&app).await;
    app.deploy(Release::Irreversible);
    assert_eq!(workflow_names(&app).await, ["ALPHA", "BETA"]);
    let recorded = releases(&app);
    let irreversible = &recorded[0]["schema"]["irreversible"];
    assert_eq!(
        irreversible[0]["migration"],
        json!({"app": "workbench", "name": "0005_uppercase_names"}),
        "the deploy recorded what cannot be undone: {}",
        recorded[0]
    );
    assert!(
        recorded[0]["backup"].is_string(),
        "release 2 names its pre-migration backup: {}",
        recorded[0]
    );

    let before = Snapshot::take(&app, &client).await;
    let out = app.berth(&["rollback", "test"]);
    let text = all_output(&out);
    assert_eq!(code(&out), 5, "{text}");
    assert!(text.contains("0005_uppercase_names"), "{text}");
    assert!(text.contains("--restore-backup"), "{text}");
    assert_eq!(
        Snapshot::take(&app, &client).await,
        before,
        "nothing changed"
    );
    assert_eq!(workflow_names(&app).await, ["ALPHA", "BETA"]);

    let out = timed(
        &app,
        "rollback with a restore",
        &["rollback", "test", "--restore-backup"],
    );
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(
        workflow_names(&app).await,
        ["alpha", "beta"],
        "the data of the backup taken before 0005 ran"
    );
    assert_eq!(migration_rows(&app).await, a_rows);
    serves(&app, &client, Release::GoodA).await;
    let recorded = releases(&app);
    assert_eq!(recorded[0]["rolled_back_to"], 1, "{}", recorded[0]);
    assert_eq!(applied(&recorded[0]), applied(&recorded[2]));
}

#[tokio::test]
async fn accept_data_loss_unapplies_an_irreversible_migration_as_a_no_op() {
    let (app, client) = app("schema-data-loss").await;
    app.deploy(Release::GoodA);
    as_app(&app, "INSERT INTO workflow (name) VALUES ('gamma')").await;
    let a_rows = migration_rows(&app).await;
    app.deploy(Release::Irreversible);
    assert_eq!(workflow_names(&app).await, ["GAMMA"]);

    let plan = app.berth(&["rollback", "test", "--accept-data-loss", "--dry-run"]);
    let text = all_output(&plan);
    assert_eq!(code(&plan), 0, "{text}");
    assert!(
        text.contains("IRREVERSIBLE"),
        "the plan still shows it: {text}"
    );

    let out = app.berth(&["rollback", "test", "--accept-data-loss"]);
    let text = all_output(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains("Unapplying workbench.0005_uppercase_names... OK"),
        "{text}"
    );
    assert_eq!(migration_rows(&app).await, a_rows, "the schema is A's");
    assert_eq!(
        workflow_names(&app).await,
        ["GAMMA"],
        "the data the irreversible operation changed stays changed"
    );
    serves(&app, &client, Release::GoodA).await;
    let recorded = releases(&app);
    assert_eq!(recorded[0]["rolled_back_to"], 1, "{}", recorded[0]);
    assert_eq!(applied(&recorded[0]), applied(&recorded[2]));
}

#[tokio::test]
async fn rollback_on_failure_unapplies_the_failed_releases_migrations() {
    let (app, client) = app("schema-on-failure").await;
    app.deploy(Release::GoodA);
    let a_rows = migration_rows(&app).await;
    let a_tables = tables(&app).await;

    // the migration succeeds, the rollout fails (/healthz answers 503)
    let out = timed(
        &app,
        "deploy with --rollback-on-failure",
        &[
            "advanced-deploy",
            "test",
            Release::ReversibleUnready.sha(),
            "--rollback-on-failure",
        ],
    );
    let text = all_output(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("ReadinessProbeFailed"), "{text}");
    assert_eq!(migration_rows(&app).await, a_rows, "{text}");
    assert_eq!(tables(&app).await, a_tables, "{text}");
    assert!(
        !columns(&app, "module")
            .await
            .contains(&"description".to_owned())
    );
    serves(&app, &client, Release::GoodA).await;
    let recorded = releases(&app);
    assert_eq!(recorded[0]["rollback_of"], 2, "{}", recorded[0]);
    assert_eq!(
        applied(&recorded[0]),
        applied(&recorded[2]),
        "{}",
        recorded[0]
    );
}

/// The first command the output quotes (`` `berth … rollback test …` ``)
/// that continues the rollback, as arguments after `berth`, without
/// `--config PATH`.
fn printed_command(text: &str) -> Vec<String> {
    let quoted = text
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|q| q.starts_with("berth ") && q.contains(" rollback test"))
        .unwrap_or_else(|| panic!("no `berth … rollback test` command printed:\n{text}"));
    let mut words = quoted.split_whitespace().skip(1);
    let mut args = Vec::new();
    while let Some(word) = words.next() {
        if word == "--config" {
            words.next();
        } else {
            args.push(word.to_owned());
        }
    }
    args
}

#[tokio::test]
async fn an_unapply_that_fails_midway_changes_no_workload_and_the_printed_command_continues() {
    let (app, client) = app("schema-midway").await;
    app.deploy(Release::GoodA);
    let a_rows = migration_rows(&app).await;
    let a_indexes = indexes(&app).await;
    app.deploy(Release::FailingUnapply);
    let d_images = images(&client, &app.namespace).await;
    assert!(all_at(&d_images, Release::FailingUnapply));
    app.postgres()
        .await
        .batch_execute(&format!("CREATE TABLE {UNAPPLY_MARKER} ()"))
        .await
        .unwrap();

    let out = timed(&app, "rollback stopped midway", &["rollback", "test"]);
    let text = all_output(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("unapply blocked on purpose"), "{text}");
    assert_eq!(maintenance(&app), "on", "the page stays up midway");
    assert_eq!(
        images(&client, &app.namespace).await,
        d_images,
        "no workload changed"
    );
    // 0006 was unapplied, 0005's unapply rolled back: the state is recorded
    let rows = migration_rows(&app).await;
    let names: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(names.last(), Some(&"0005_workflow_name_index"), "{rows:?}");
    assert_eq!(rows.len(), a_rows.len() + 1, "{rows:?}");
    assert!(!tables(&app).await.contains(&"workflow_note".to_owned()));
    assert!(
        indexes(&app)
            .await
            .contains(&"workflow_name_idx".to_owned())
    );
    let recorded = releases(&app);
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0]["status"], "failed", "{}", recorded[0]);
    assert_eq!(
        applied(&recorded[0]),
        &json!({"workbench": "0005_workflow_name_index"}),
        "{}",
        recorded[0]
    );

    let next = printed_command(&text);
    eprintln!("the printed command: berth {}", next.join(" "));
    app.postgres()
        .await
        .batch_execute(&format!("DROP TABLE {UNAPPLY_MARKER}"))
        .await
        .unwrap();
    let args: Vec<&str> = next.iter().map(String::as_str).collect();
    let out = timed(&app, "the continued rollback", &args);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(
        maintenance(&app),
        "off",
        "the rollback that finished ends the maintenance the stopped one began: {}",
        all_output(&out)
    );
    assert_eq!(migration_rows(&app).await, a_rows);
    assert_eq!(indexes(&app).await, a_indexes);
    serves(&app, &client, Release::GoodA).await;
    assert!(all_at(
        &images(&client, &app.namespace).await,
        Release::GoodA
    ));
}

#[tokio::test]
async fn a_rollback_and_a_deploy_never_run_at_once() {
    let (app, client) = app("schema-lock").await;
    app.deploy(Release::GoodA);
    app.deploy(Release::Reversible);

    // the lock is held: the rollback exits 3 and changes nothing
    app.ok(&["lock", "test", "acquire"]);
    let before = Snapshot::take(&app, &client).await;
    let out = app.berth(&["rollback", "test"]);
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    assert_eq!(
        Snapshot::take(&app, &client).await,
        before,
        "nothing changed"
    );
    app.ok(&["lock", "test", "release"]);

    // a rollback runs: a deploy meanwhile exits 3, and the rollback ends well
    let rollback = spawn_captured(&mut berth_command(
        &app.dir.join("berth.yaml"),
        &repo_root(),
        &["rollback", "test"],
    ));
    poll(
        Duration::from_secs(60),
        "the rollback to hold the lock",
        async || {
            let out = app.berth(&["--output", "json", "lock", "test", "status"]);
            (report(&out)["lock"] == "held").then_some(())
        },
    )
    .await;
    let out = app.berth(&["advanced-deploy", "test", Release::Reversible.sha()]);
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    let rolled = tokio::task::spawn_blocking(move || rollback.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(code(&rolled), 0, "the rollback: {}", all_output(&rolled));
    assert!(!tables(&app).await.contains(&"tag".to_owned()));
}

#[tokio::test]
async fn a_dry_run_shows_the_schema_plan_and_changes_nothing() {
    let (app, client) = app("schema-dry-run").await;
    app.deploy(Release::GoodA);
    app.deploy(Release::Reversible);
    let before = Snapshot::take(&app, &client).await;

    let out = app.berth(&["rollback", "test", "--dry-run"]);
    let text = all_output(&out);
    assert_eq!(code(&out), 0, "{text}");
    for part in [
        "workbench.0006_tag",
        "Undo Create model Tag",
        "workbench.0005_module_description",
        "Undo Add field description to module",
    ] {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
    assert_eq!(
        Snapshot::take(&app, &client).await,
        before,
        "nothing changed"
    );

    let out = app.berth(&["--output", "json", "rollback", "test", "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let plan = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["event"] == "plan")
        .unwrap_or_else(|| panic!("no plan event: {}", all_output(&out)));
    let schema = &plan["schema"];
    assert_eq!(
        schema["to"],
        json!({"workbench": "0004_module"}),
        "{schema}"
    );
    assert_eq!(schema["from"], json!({"workbench": "0006_tag"}), "{schema}");
    let steps: Vec<(&str, bool)> = schema["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("schema.steps: {schema}"))
        .iter()
        .map(|s| {
            (
                s["migration"]["name"].as_str().unwrap(),
                s["backwards"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [("0006_tag", true), ("0005_module_description", true)],
        "{schema}"
    );
    assert!(
        schema
            .to_string()
            .contains("Undo Add field description to module"),
        "{schema}"
    );
    assert_eq!(
        Snapshot::take(&app, &client).await,
        before,
        "nothing changed"
    );
}
