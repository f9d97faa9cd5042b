//! Restore drills and pre-migration backups, with the real example app on
//! the real node, berth's own image (the static berth and PostgreSQL's
//! client) running the agent, the local PostgreSQL and MinIO. Each test has
//! its own namespace, database and bucket.

mod support;

use std::process::Output;

use serde_json::{Value, json};
use support::backups::{
    bucket, credentials_secret, jobs, json_object, keys, set_backups, write_backups,
};
use support::real_app::{RealApp, Release};
use support::{code, local_env, report, stderr};

/// The JSON lines of `out`'s stdout.
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// `db drill --check test --max-age 7d`: its exit code and report.
fn check(app: &RealApp) -> (i32, Value) {
    let out = app.berth(&[
        "--output",
        "json",
        "db",
        "drill",
        "--check",
        "test",
        "--max-age",
        "7d",
    ]);
    (code(&out), report(&out))
}

/// The drill scratch databases on the local PostgreSQL.
async fn scratch_databases(app: &RealApp) -> Vec<String> {
    app.postgres()
        .await
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'berth_drill_%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Drills need a role that may create the scratch database: the app's
/// own, given CREATEDB (`backups.drill.secret` defaults to `database.secret`).
async fn may_create_databases(app: &RealApp) {
    app.postgres()
        .await
        .batch_execute(&format!("ALTER ROLE {} CREATEDB", app.database))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_drill_of_a_real_backup_passes_and_a_false_smoke_query_fails_it() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "drill").await;
    let (bucket, _bucket) = bucket("drills").await;
    credentials_secret(&client, &app.namespace).await;
    may_create_databases(&app).await;
    let smoke = "SELECT count(*) > 0 FROM django_migrations";
    set_backups(
        &app,
        &bucket,
        &format!("      drill:\n        smoke: [\"{smoke}\"]\n"),
    );
    app.deploy(Release::GoodA);

    // no backup yet: --check fails, saying to take one
    let (exit, checked) = check(&app);
    assert_eq!((exit, &checked["ok"]), (1, &json!(false)), "{checked}");
    assert!(
        checked["message"]
            .as_str()
            .unwrap()
            .contains("db backup test"),
        "{checked}"
    );

    let out = app.berth(&["--output", "json", "db", "backup", "test"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = report(&out)["id"].as_str().unwrap().to_owned();

    // a backup never drilled: --check fails naming it and the command
    let (exit, checked) = check(&app);
    assert_eq!(exit, 1, "{checked}");
    assert_eq!(checked["newest_backup"], id.as_str());
    assert_eq!(checked["last_drill"], Value::Null);
    let message = checked["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("db drill test {id}")),
        "{message}"
    );

    // the drill of the newest backup (the default) passes, with its evidence
    let out = app.berth(&["db", "drill", "test"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let evidence = String::from_utf8_lossy(&out.stdout).into_owned();
    for fact in [
        format!("of backup {id} (test): passed"),
        "restore time".into(),
        "data age".into(),
        "compared with the manifest, all equal".into(),
        format!("smoke         true  {smoke}"),
        format!("s3://{bucket}/test/drills/{id}/"),
    ] {
        assert!(
            evidence.contains(&fact),
            "{fact:?} missing from\n{evidence}"
        );
    }
    let drill_keys: Vec<String> = keys(&bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&format!("test/drills/{id}/")))
        .collect();
    assert_eq!(drill_keys.len(), 1, "{drill_keys:?}");
    let record = json_object(&bucket, &drill_keys[0]).await.unwrap();
    assert_eq!(record["result"], "passed", "{record}");
    assert_eq!(record["backup"], id.as_str());
    assert!(
        record["tables"]["public.django_migrations"]
            .as_u64()
            .unwrap()
            > 0,
        "{record}"
    );
    assert_eq!(record["mismatches"], json!({}));
    assert_eq!(record["smoke"], json!([[smoke, true]]));
    assert!(scratch_databases(&app).await.is_empty());

    let (exit, checked) = check(&app);
    assert_eq!((exit, &checked["ok"]), (0, &json!(true)), "{checked}");

    // a smoke query that is false fails the drill, and the scratch
    // database is dropped all the same
    let wrong = "SELECT count(*) = 0 FROM django_migrations";
    set_backups(
        &app,
        &bucket,
        &format!("      drill:\n        smoke: [\"{smoke}\", \"{wrong}\"]\n"),
    );
    let out = app.berth(&["--output", "json", "db", "drill", "test", &id]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let failed = report(&out);
    assert_eq!(failed["result"], "failed", "{failed}");
    assert_eq!(
        failed["drill"]["smoke"],
        json!([[smoke, true], [wrong, false]])
    );
    assert!(
        failed["error"].as_str().unwrap().contains(wrong),
        "{failed}"
    );
    assert!(
        scratch_databases(&app).await.is_empty(),
        "the scratch database is dropped after a failed drill"
    );
    let records = keys(&bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&format!("test/drills/{id}/")))
        .count();
    assert_eq!(records, 2, "the failed drill is recorded too");
}

#[tokio::test]
async fn bad_input_exits_2_and_runs_nothing() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "drill-bad").await;
    let refused = |args: &[&str], words: &[&str]| {
        let out = app.berth(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        for word in words {
            assert!(stderr(&out).contains(word), "{args:?}: {}", stderr(&out));
        }
    };
    refused(&["db", "drill", "test"], &["has no `backups:` block"]);
    refused(
        &["db", "drill", "--check", "test", "--max-age", "7d"],
        &["has no `backups:` block"],
    );

    let (bucket, _bucket) = bucket("drills-bad").await;
    credentials_secret(&client, &app.namespace).await;
    // no pod runs: any image will do
    write_backups(&app, &bucket, "127.0.0.1:25000/berth-never-pulled:0", "");
    refused(
        &["db", "drill", "test"],
        &["no succeeded backup", "db backup test"],
    );
    refused(
        &["backup", "verify", "test", "latest; rm -rf /"],
        &["is not a backup id", "db backups test"],
    );
    refused(
        &["db", "verify", "test", "20261206T112233Z-manual-3fa9"],
        &["no backup 20261206T112233Z-manual-3fa9", "db backups test"],
    );

    // a failed backup, and another environment's, by their manifests
    let s3 = local_env().s3().await;
    let put = |id: &str, environment: &str, status: &str| {
        let manifest = json!({
            "schema": 1, "id": id, "environment": environment, "database": app.database,
            "trigger": "manual", "who": "test", "status": status,
            "error": "pg_dump exited 1",
            "started_at": "2026-12-06T11:22:33Z", "finished_at": "2026-12-06T11:22:40Z",
            "durations": {"dump_seconds": 1.0, "verify_seconds": 0.0, "total_seconds": 7.0},
        });
        s3.put_object()
            .bucket(&bucket)
            .key(format!("test/backups/{id}.json"))
            .body(serde_json::to_vec(&manifest).unwrap().into())
            .send()
    };
    put("20261206T112233Z-manual-0001", "test", "failed")
        .await
        .unwrap();
    put("20261206T112233Z-manual-0002", "production", "succeeded")
        .await
        .unwrap();
    refused(
        &["db", "drill", "test", "20261206T112233Z-manual-0001"],
        &["failed (pg_dump exited 1)", "no dump to drill"],
    );
    refused(
        &["db", "drill", "test", "20261206T112233Z-manual-0002"],
        &["of environment `production`, not `test`"],
    );
    assert!(
        jobs(&client, &app.namespace).await.is_empty(),
        "no Job was created"
    );
    let mut found = keys(&bucket).await;
    found.sort();
    assert_eq!(
        found,
        [
            "test/backups/20261206T112233Z-manual-0001.json",
            "test/backups/20261206T112233Z-manual-0002.json"
        ],
        "nothing was written"
    );
}

#[tokio::test]
async fn a_deploy_with_pending_migrations_backs_up_before_migrating_and_one_without_does_not() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "premigrate").await;
    let (bucket, _bucket) = bucket("premigrate").await;
    credentials_secret(&client, &app.namespace).await;
    set_backups(&app, &bucket, "      before_migrate: pending\n");
    // a database with data already, whose schema the app's migrations
    // have not touched yet
    app.postgres()
        .await
        .batch_execute(&format!(
            "SET ROLE {role}; CREATE TABLE ledger (id int); \
             INSERT INTO ledger VALUES (1), (2), (3); RESET ROLE",
            role = app.database
        ))
        .await
        .unwrap();

    let sha = Release::GoodA.sha();
    let out = app.berth(&["advanced-deploy", "test", sha, "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains(
            "Backup before the migration: if migrations are pending: \
             `python3 manage.py migrate --check`"
        ),
        "{plan}"
    );

    // the first deploy: every migration is pending, so a backup comes first
    let out = app.berth(&["advanced-deploy", "test", sha]);
    assert_eq!(
        code(&out),
        0,
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let history = app.berth(&["--output", "json", "history", "test"]);
    assert_eq!(code(&history), 0, "{}", stderr(&history));
    let releases: Vec<Value> = json_lines(&history)
        .into_iter()
        .filter(|l| l["event"] == "release")
        .collect();
    let id = releases[0]["backup"]
        .as_str()
        .unwrap_or_else(|| panic!("release 1 names its backup: {}", releases[0]))
        .to_owned();
    let manifest = json_object(&bucket, &format!("test/backups/{id}.json"))
        .await
        .expect("the pre-migration backup's manifest");
    assert_eq!(manifest["status"], "succeeded", "{manifest}");
    assert_eq!(manifest["trigger"], "pre-migrate");
    assert!(
        manifest["label"].as_str().unwrap().contains(sha),
        "{manifest}"
    );
    assert_eq!(
        manifest["tables"],
        json!({"public.ledger": 3}),
        "the backup holds the database from before the migration"
    );
    let backup_done: k8s_openapi::jiff::Timestamp =
        manifest["finished_at"].as_str().unwrap().parse().unwrap();
    let first_applied: f64 = app
        .postgres()
        .await
        .query_one(
            "SELECT extract(epoch FROM min(applied))::float8 FROM django_migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        first_applied >= backup_done.as_millisecond() as f64 / 1000.0,
        "the migration ran after the backup finished ({first_applied} < {backup_done})"
    );
    let human = app.berth(&["history", "test"]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains(&format!("backup {id}")),
        "{}",
        String::from_utf8_lossy(&human.stdout)
    );

    // the next deploy has nothing to migrate: no backup
    let out = app.berth(&["advanced-deploy", "test", Release::GoodB.sha()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing is pending: no backup"),
        "{}",
        stderr(&out)
    );
    let history = app.berth(&["--output", "json", "history", "test"]);
    let newest = json_lines(&history)
        .into_iter()
        .find(|l| l["event"] == "release")
        .unwrap();
    assert_eq!(newest["number"], 2);
    assert_eq!(newest["backup"], Value::Null, "{newest}");
    let manifests: Vec<String> = keys(&bucket)
        .await
        .into_iter()
        .filter(|k| k.ends_with(".json") && k.contains("/backups/"))
        .collect();
    assert_eq!(
        manifests,
        [format!("test/backups/{id}.json")],
        "one backup, before the first migration only"
    );
}
