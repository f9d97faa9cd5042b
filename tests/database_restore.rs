//! `berth db restore`, `db backups` and `db prune` against the local
//! environment: the real example app on the real node, its PostgreSQL
//! database, MinIO, and berth's image running the agent in Jobs.
//!
//! Berth's image is built once per run with packaging/build-image (as
//! tests/container_image.rs does: `$BERTH_STATIC_BINARY` when set), or
//! taken from `$BERTH_TEST_IMAGE` when set (an image already pushed to the
//! local registry, e.g. by another test run).

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::real_app::{RealApp, Release};
use support::{
    Cleanup, assert_refused, berth_command, code, create, interrupt, local_env, poll, repo_root,
    report, spawn_captured, stderr, unique_name,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The restore's record in the namespace.
const RECORD: &str = "berth-restore";
/// Rows of the test's own table when the backup is taken.
const ROWS: i64 = 100;

/// Berth's image with the PostgreSQL client, built once per test binary.
fn berth_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Ok(image) = std::env::var("BERTH_TEST_IMAGE") {
            return image;
        }
        let registry = format!(
            "{}/{}",
            local_env().var("BERTH_LOCAL_REGISTRY"),
            unique_name("restore-image")
        );
        let mut command = local_env().command("packaging/build-image");
        command.args(["--registry", &registry]);
        if let Some(binary) = std::env::var_os("BERTH_STATIC_BINARY") {
            command.arg("--binary").arg(binary);
        }
        let out = command
            .arg(VERSION)
            .output()
            .expect("run packaging/build-image");
        assert!(out.status.success(), "build-image: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// The example app with `backups:` configured: its bucket, the credentials
/// Secret the pods read, and a second environment `other` keeping its
/// backups in the same bucket under `other/`.
struct Restorable {
    app: RealApp,
    /// `backups.image`.
    image: String,
    client: Client,
    bucket: String,
    s3: aws_sdk_s3::Client,
    _bucket: Cleanup,
}

impl Restorable {
    /// The fixture; `jobs`: its tests run the agent in Jobs, so berth.yaml
    /// names berth's image built for this run (else a name that is never pulled).
    async fn new(prefix: &str, jobs: bool) -> Restorable {
        let env = local_env();
        let client = env.kube().await;
        let app = RealApp::new(&client, prefix).await;
        let bucket = unique_name(prefix);
        let s3 = env.s3().await;
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        // Pods reach MinIO on the bridge address, at MinIO's port.
        let port = env.var("AWS_ENDPOINT_URL").rsplit(':').next().unwrap();
        let pod_endpoint = std::env::var("BERTH_NODE_S3_URL")
            .unwrap_or_else(|_| format!("http://{}:{port}", env.var("BERTH_NODE_ADDRESS")));
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "backup-s3"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": env.var("AWS_ACCESS_KEY_ID"),
                "AWS_SECRET_ACCESS_KEY": env.var("AWS_SECRET_ACCESS_KEY"),
                "AWS_ENDPOINT_URL": pod_endpoint,
                "AWS_REGION": env.var("AWS_REGION"),
            }
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), &app.namespace)
            .create(&Default::default(), &secret)
            .await
            .unwrap();
        let image = if jobs {
            berth_image().to_owned()
        } else {
            format!("127.0.0.1:25000/berth:{VERSION}")
        };
        let restorable = Restorable {
            image,
            _bucket: Cleanup::Bucket(bucket.clone()),
            app,
            client,
            bucket,
            s3,
        };
        restorable.configure(&restorable.bucket.clone());
        restorable
    }

    /// The fixture with the app deployed ([`Restorable::deploy`]), its
    /// table seeded, and a backup of it: the backup's manifest.
    async fn backed_up(prefix: &str) -> (Restorable, Value) {
        let r = Restorable::new(prefix, true).await;
        r.deploy().await;
        r.seed().await;
        let backup = r.backup();
        (r, backup)
    }

    /// [`Restorable::backed_up`], then the data changed ([`Restorable::scribble`]):
    /// the fixture, the backup's manifest and id, and the replicas now.
    async fn changed_since_backup(
        prefix: &str,
    ) -> (Restorable, Value, String, BTreeMap<String, i32>) {
        let (r, backup) = Restorable::backed_up(prefix).await;
        let id = backup["id"].as_str().unwrap().to_owned();
        r.scribble().await;
        let before = r.replicas().await;
        (r, backup, id, before)
    }

    /// Rewrite berth.yaml with `backups:` in bucket `bucket`, and the
    /// environment `other` sharing it.
    fn configure(&self, bucket: &str) {
        let path = self.app.dir.join("berth.yaml");
        let config = std::fs::read_to_string(&path).unwrap();
        let config = match config.split_once("\n    backups:") {
            Some((before, _)) => before.to_owned() + "\n",
            None => config.split_once("tasks:\n").unwrap().0.to_owned(),
        };
        let endpoint = local_env().var("AWS_ENDPOINT_URL");
        let backups = format!(
            "    backups:\n      bucket: {bucket}\n      endpoint: {endpoint}\n      \
             credentials_secret: backup-s3\n      image: {image}\n      timeout: 5m\n",
            image = self.image,
        );
        let other = format!(
            "  other:\n    context: berth-local\n    namespace: {ns}-other\n    overlay: {overlay}\n    \
             database: {{ workload: frontend, secret: db-credentials }}\n    backups:\n      \
             bucket: {bucket}\n      endpoint: {endpoint}\n      credentials_secret: backup-s3\n",
            ns = self.app.namespace,
            overlay = self.app.dir.join("overlay").display(),
        );
        std::fs::write(&path, format!("{config}{backups}{other}")).unwrap();
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        berth_command(&self.app.dir.join("berth.yaml"), &repo_root(), args)
    }

    /// Write `value` as JSON at `key` in the bucket.
    async fn put(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    async fn exists(&self, key: &str) -> bool {
        self.s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }

    /// Every key under `prefix`.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// Back the database up now with the agent run here, as a pod runs it;
    /// the manifest.
    fn backup(&self) -> Value {
        let env = local_env();
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["db", "agent", "backup"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", "25432")
            .env("PGUSER", &self.app.database)
            .env("PGPASSWORD", format!("pw-{}", self.app.database))
            .env("PGDATABASE", &self.app.database)
            .env("AWS_ACCESS_KEY_ID", env.var("AWS_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", env.var("AWS_SECRET_ACCESS_KEY"))
            .env("AWS_ENDPOINT_URL", env.var("AWS_ENDPOINT_URL"))
            .env("AWS_REGION", env.var("AWS_REGION"))
            .env("BERTH_ENVIRONMENT", "test")
            .env("BERTH_BACKUP_BUCKET", &self.bucket)
            .env("BERTH_BACKUP_PREFIX", "test/")
            .env("BERTH_BACKUP_TRIGGER", "manual")
            .env("BERTH_WHO", "database_restore test")
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "db agent backup: {}", stderr(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        last["backup"].clone()
    }

    /// A connection as the app's own role, to its database.
    async fn as_app(&self) -> tokio_postgres::Client {
        let postgres = self.app.postgres().await;
        postgres
            .batch_execute(&format!("SET ROLE {}", self.app.database))
            .await
            .unwrap();
        postgres
    }

    /// The test's table `notes` with [`ROWS`] rows, owned by the app's role.
    async fn seed(&self) {
        self.as_app()
            .await
            .batch_execute(&format!(
                "CREATE TABLE notes (id int PRIMARY KEY, body text);
                 INSERT INTO notes SELECT n, 'note ' || n FROM generate_series(1, {ROWS}) n;"
            ))
            .await
            .unwrap();
    }

    /// Change the data after the backup.
    async fn scribble(&self) {
        self.as_app()
            .await
            .batch_execute(
                "DELETE FROM notes WHERE id > 50; INSERT INTO notes VALUES (1000, 'after');",
            )
            .await
            .unwrap();
    }

    /// `notes`' row count and whether the row written after the backup is there.
    async fn notes(&self) -> (i64, bool) {
        let db = self.app.postgres().await;
        let count: i64 = db
            .query_one("SELECT count(*) FROM notes", &[])
            .await
            .unwrap()
            .get(0);
        let after: bool = db
            .query_one("SELECT exists(SELECT 1 FROM notes WHERE id = 1000)", &[])
            .await
            .unwrap()
            .get(0);
        (count, after)
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.app.namespace)
    }

    /// Each Deployment's replicas, the maintenance server's left out.
    async fn replicas(&self) -> BTreeMap<String, i32> {
        self.deployments()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|d| d.metadata.name.as_deref() != Some("berth-maintenance"))
            .map(|d| {
                let n = d.spec.and_then(|s| s.replicas).unwrap_or(1);
                (d.metadata.name.unwrap(), n)
            })
            .collect()
    }

    /// CronJob name → suspended.
    async fn cron_jobs(&self) -> BTreeMap<String, bool> {
        Api::<CronJob>::namespaced(self.client.clone(), &self.app.namespace)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| (c.metadata.name.unwrap(), c.spec.suspend == Some(true)))
            .collect()
    }

    /// The restore record's JSON, if there is one.
    async fn record(&self) -> Option<Value> {
        let map = Api::<ConfigMap>::namespaced(self.client.clone(), &self.app.namespace)
            .get_opt(RECORD)
            .await
            .unwrap()?;
        Some(serde_json::from_str(&map.data.unwrap()["record.json"]).unwrap())
    }

    /// Whether the frontend Service selects the maintenance page.
    async fn in_maintenance(&self) -> bool {
        let service = Api::<Service>::namespaced(self.client.clone(), &self.app.namespace)
            .get("frontend")
            .await
            .unwrap();
        let selector = service.spec.unwrap().selector.unwrap_or_default();
        selector.values().any(|v| v.contains("maintenance"))
            || selector.keys().any(|k| k.contains("maintenance"))
    }

    /// Deploy the app, scale the worker to 2, and add two CronJobs: `nightly`
    /// (running) and `paused` (suspended before any restore).
    async fn deploy(&self) {
        self.app.deploy(Release::GoodA);
        self.deployments()
            .patch(
                "worker",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 2}})),
            )
            .await
            .unwrap();
        for (name, suspend) in [("nightly", false), ("paused", true)] {
            let _: CronJob = create(
                &self.client,
                &self.app.namespace,
                json!({
                    "apiVersion": "batch/v1", "kind": "CronJob",
                    "metadata": {"name": name},
                    "spec": {"schedule": "0 0 1 1 *", "suspend": suspend, "jobTemplate": {"spec": {"template": {"spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": local_env().var("BERTH_LOCAL_PAUSE_IMAGE")}]}}}}}
                }),
            )
            .await;
        }
    }

    /// Wait until the restore record is at one of `steps` with more than
    /// `after` steps begun (a resumed restore adds to those of the first run).
    async fn reach(&self, steps: &[&str], after: usize) -> Value {
        poll(Duration::from_secs(300), "the restore's step", async || {
            let record = self.record().await?;
            let begun = record["steps"].as_array().map_or(0, Vec::len);
            (begun > after && steps.contains(&record["step"].as_str().unwrap_or_default()))
                .then_some(record)
        })
        .await
    }
}

/// SIGKILL `child` and reap it.
fn kill(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Everything is as it was before the restore: the recorded replicas, the
/// CronJobs (`paused` still suspended), maintenance off, no record.
async fn assert_put_back(r: &Restorable, before: &BTreeMap<String, i32>) {
    assert_eq!(
        &r.replicas().await,
        before,
        "every workload back at its replicas"
    );
    let cron_jobs = r.cron_jobs().await;
    assert!(!cron_jobs["nightly"], "nightly resumed");
    assert!(
        cron_jobs["paused"],
        "paused was suspended before and stays so"
    );
    assert!(!r.in_maintenance().await, "maintenance is off");
    assert!(r.record().await.is_none(), "the record is gone");
}

#[tokio::test]
async fn a_restore_brings_the_data_back_and_puts_everything_back() {
    let (r, _, id, before) = Restorable::changed_since_backup("restore").await;
    assert_eq!(before["worker"], 2);

    let out = r.berth(&[
        "db",
        "restore",
        "test",
        &id,
        "--confirm",
        "test",
        "--output",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(r.notes().await, (ROWS, false), "the backup's data is back");
    assert_put_back(&r, &before).await;
    let restored = report(&out);
    let steps: Vec<&str> = restored["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "maintenance-on",
            "suspend-cron-jobs",
            "scale-down",
            "safety-backup",
            "restore",
            "put-back"
        ]
    );
    assert_eq!(restored["replicas"]["Deployment/worker"], 2);
    assert_eq!(restored["suspended_cron_jobs"], json!(["nightly"]));
    // The safety backup holds the data from before, and the restore is on record.
    let safety = restored["safety_backup"].as_str().unwrap();
    assert!(safety.contains("-pre-restore-"), "{safety}");
    assert!(r.exists(&format!("test/backups/{safety}.dump")).await);
    let record = restored["restore_record"].as_str().unwrap();
    assert!(r.exists(record).await, "{record}");

    // `db backups` lists both, newest first.
    let out = r.berth(&["db", "backups", "test", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let list = report(&out);
    let listed: Vec<&str> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [safety, id.as_str()]);
}

#[tokio::test]
async fn a_restore_whose_counts_differ_goes_back_to_the_safety_backup() {
    let (r, mut backup, id, before) = Restorable::changed_since_backup("restore-back").await;
    // The manifest promises rows the dump does not hold.
    backup["tables"]["public.notes"] = json!(999);
    let key = format!("test/backups/{id}.json");
    r.put(&key, serde_json::to_vec(&backup).unwrap()).await;

    let out = r.berth(&[
        "db",
        "restore",
        "test",
        &id,
        "--confirm",
        "test",
        "--output",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let restored = report(&out);
    let state = restored["database"].as_str().unwrap();
    assert!(
        state.contains("was restored: it holds the data it had before the restore"),
        "{state}"
    );
    assert!(state.contains("row counts differ"), "{state}");
    assert_eq!(r.notes().await, (51, true), "the data from before is back");
    assert_put_back(&r, &before).await;
}

#[tokio::test]
async fn a_restore_killed_midway_completes_when_run_again() {
    let (r, _, id, before) = Restorable::changed_since_backup("restore-kill").await;
    let args = [
        "db",
        "restore",
        "test",
        &id,
        "--confirm",
        "test",
        "--lock-wait",
        "1m",
    ];

    // Ctrl-C stops at a safe point, leaves the record and says what to do.
    let child = spawn_captured(&mut r.command(&args));
    r.reach(&["scale-down", "safety-backup"], 0).await;
    let out = interrupt(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("resumes it") && said.contains("--abort"),
        "{said}"
    );
    let begun = r.record().await.unwrap()["steps"].as_array().unwrap().len();

    // Resumed, then killed during the safety backup.
    let child = spawn_captured(&mut r.command(&args));
    let record = r.reach(&["safety-backup"], begun).await;
    kill(child);
    // The record says what to put back; the clients are down meanwhile.
    assert_eq!(record["replicas"]["Deployment/worker"], 2);
    assert_eq!(record["suspended_cron_jobs"], json!(["nightly"]));
    assert_eq!(r.replicas().await["worker"], 0);

    let out = r.berth(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming the restore"),
        "{}",
        stderr(&out)
    );
    assert_eq!(r.notes().await, (ROWS, false));
    assert_put_back(&r, &before).await;
}

#[tokio::test]
async fn abort_after_a_kill_puts_everything_back_and_leaves_the_data() {
    let (r, _, id, before) = Restorable::changed_since_backup("restore-abort").await;

    let args = ["db", "restore", "test", &id, "--confirm", "test"];
    let child = spawn_captured(&mut r.command(&args));
    r.reach(&["scale-down", "safety-backup"], 0).await;
    kill(child);
    assert!(r.record().await.is_some());

    // Another backup is refused while the record stands, naming both.
    let other = r.berth(&[
        "db",
        "restore",
        "test",
        "20261206T000000Z-manual-0000",
        "--confirm",
        "test",
    ]);
    assert_refused(&other, &[&id, "20261206T000000Z-manual-0000", "--abort"]);

    let out = r.berth(&["db", "restore", "test", "--abort", "--lock-wait", "1m"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("The database: it was not touched"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        r.notes().await,
        (51, true),
        "the data is as the restore found it"
    );
    assert_put_back(&r, &before).await;
}

#[tokio::test]
async fn bad_input_and_a_corrupt_dump_change_nothing() {
    let (r, good) = Restorable::backed_up("restore-bad").await;
    let id = good["id"].as_str().unwrap().to_owned();
    let before = r.replicas().await;
    let unchanged = async || {
        assert_eq!(r.replicas().await, before);
        assert!(!r.cron_jobs().await["nightly"]);
        assert!(!r.in_maintenance().await);
        assert!(r.record().await.is_none());
    };

    let restore = |id: &str| r.berth(&["db", "restore", "test", id, "--confirm", "test"]);
    assert_refused(
        &restore("20261206T000000Z-manual-0000"),
        &["no backup 20261206T000000Z-manual-0000"],
    );
    assert_refused(&restore("../../etc"), &["is not a backup id"]);

    // Another environment's backup, and a failed one.
    let mut theirs = good.clone();
    theirs["id"] = json!("20261206T010101Z-manual-aaaa");
    theirs["environment"] = json!("other");
    r.put(
        "other/backups/20261206T010101Z-manual-aaaa.json",
        serde_json::to_vec(&theirs).unwrap(),
    )
    .await;
    assert_refused(
        &restore("20261206T010101Z-manual-aaaa"),
        &["belongs to environment other"],
    );
    let mut failed = good.clone();
    failed["id"] = json!("20261206T020202Z-manual-bbbb");
    failed["status"] = json!("failed");
    failed["error"] = json!("pg_dump exited 1");
    r.put(
        "test/backups/20261206T020202Z-manual-bbbb.json",
        serde_json::to_vec(&failed).unwrap(),
    )
    .await;
    assert_refused(
        &restore("20261206T020202Z-manual-bbbb"),
        &["failed (pg_dump exited 1)"],
    );

    // Off a terminal, --confirm is required, and must name the environment.
    assert_refused(
        &r.berth(&["db", "restore", "test", &id]),
        &["--confirm test"],
    );
    assert_refused(
        &r.berth(&["db", "restore", "test", &id, "--confirm", "production"]),
        &["--confirm test"],
    );
    unchanged().await;

    // A missing credentials Secret and a missing bucket.
    r.configure("no-such-bucket-restore");
    assert_refused(
        &restore(&id),
        &["bucket no-such-bucket-restore does not exist"],
    );
    r.configure(&r.bucket);
    Api::<Secret>::namespaced(r.client.clone(), &r.app.namespace)
        .delete("backup-s3", &Default::default())
        .await
        .unwrap();
    assert_refused(
        &r.berth(&["db", "backups", "test"]),
        &["Secret backup-s3", "does not exist"],
    );

    // A corrupt dump stops at the verify Job, before anything is set aside.
    // (The Secret is back for the pods.)
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "backup-s3"}, "stringData": {
        "AWS_ACCESS_KEY_ID": local_env().var("AWS_ACCESS_KEY_ID"),
        "AWS_SECRET_ACCESS_KEY": local_env().var("AWS_SECRET_ACCESS_KEY"),
        "AWS_ENDPOINT_URL": format!("http://{}:{}", local_env().var("BERTH_NODE_ADDRESS"),
            local_env().var("AWS_ENDPOINT_URL").rsplit(':').next().unwrap()),
        "AWS_REGION": local_env().var("AWS_REGION")}}))
        .unwrap();
    Api::<Secret>::namespaced(r.client.clone(), &r.app.namespace)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    r.put(
        &format!("test/backups/{id}.dump"),
        b"not a dump at all".repeat(100),
    )
    .await;
    let out = restore(&id);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed its check"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    unchanged().await;
    let jobs = Api::<Job>::namespaced(r.client.clone(), &r.app.namespace)
        .list(&ListParams::default().labels("berth.dev/task=restore"))
        .await
        .unwrap();
    assert!(jobs.items.is_empty(), "no restore Job ran");
}

#[tokio::test]
async fn backups_are_listed_with_their_drills_and_pruned_by_retention() {
    let r = Restorable::new("restore-list", false).await;
    let manifest = |id: &str, trigger: &str, at: &str, status: &str| {
        json!({
            "schema": 1, "id": id, "environment": "test", "database": "app", "trigger": trigger,
            "who": "ci", "status": status, "started_at": at, "finished_at": at,
            "durations": {"dump_seconds": 1.0, "verify_seconds": 0.5, "total_seconds": 1.5},
            "size": 2048, "release": {"name": "3", "sha": "1a2b3c4d5e6f"},
            "error": if status == "failed" { json!("pg_dump exited 1") } else { Value::Null },
        })
    };
    let ids = [
        (
            "20261201T030000Z-manual-0001",
            "manual",
            "2026-12-01T03:00:00Z",
            "succeeded",
        ),
        (
            "20261202T030000Z-manual-0002",
            "manual",
            "2026-12-02T03:00:00Z",
            "succeeded",
        ),
        (
            "20261203T030000Z-manual-0003",
            "manual",
            "2026-12-03T03:00:00Z",
            "failed",
        ),
        (
            "20261204T030000Z-manual-0004",
            "manual",
            "2026-12-04T03:00:00Z",
            "succeeded",
        ),
    ];
    for (id, trigger, at, status) in ids {
        r.put(
            &format!("test/backups/{id}.json"),
            serde_json::to_vec(&manifest(id, trigger, at, status)).unwrap(),
        )
        .await;
        if status == "succeeded" {
            r.put(&format!("test/backups/{id}.dump"), b"dump".to_vec())
                .await;
        }
    }
    let drill = json!({"schema": 1, "id": "20261205T000000Z", "backup": ids[3].0, "environment": "test",
        "who": "ci", "started_at": "2026-12-05T00:00:00Z", "finished_at": "2026-12-05T00:01:00Z",
        "restore_seconds": 3.0, "data_age_seconds": 75600.0, "scratch_database": "scratch",
        "result": "passed"});
    let mut failed_drill = drill.clone();
    failed_drill["backup"] = json!(ids[0].0);
    failed_drill["result"] = json!("failed");
    for (backup, record) in [(ids[3].0, &drill), (ids[0].0, &failed_drill)] {
        let key = format!("test/drills/{backup}/20261205T000000Z.json");
        r.put(&key, serde_json::to_vec(record).unwrap()).await;
    }

    let out = r.berth(&["db", "backups", "test"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(
        lines[1].starts_with(ids[3].0) && lines[1].contains("passed"),
        "{table}"
    );
    assert!(
        lines[1].contains("3 (1a2b3c4d5e6f)") && lines[1].contains("2.00 KiB"),
        "{table}"
    );
    assert!(lines[2].contains("failed: pg_dump exited 1"), "{table}");
    assert!(
        lines[4].starts_with(ids[0].0) && lines[4].contains("failed"),
        "{table}"
    );
    let json = report(&r.berth(&["db", "backups", "test", "--output", "json"]));
    assert_eq!(json["backups"].as_array().unwrap().len(), 4);
    assert_eq!(json["backups"][0]["drills"][0]["result"], "passed");
    assert_eq!(json["backups"][0]["tables"], json!({}));

    // Retention keeps 2 manual backups: the oldest good one goes, dump,
    // drill and manifest; the failed record stays (and never counts).
    r.configure(&r.bucket);
    let path = r.app.dir.join("berth.yaml");
    let config = std::fs::read_to_string(&path).unwrap().replacen(
        "    backups:\n",
        "    backups:\n      retention: { manual: 2 }\n",
        1,
    );
    std::fs::write(&path, config).unwrap();
    let dry = r.berth(&["db", "prune", "test", "--dry-run", "--output", "json"]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let planned = report(&dry);
    assert_eq!(planned["deleted"][0]["id"], ids[0].0);
    assert_eq!(planned["deleted"].as_array().unwrap().len(), 1);
    assert!(
        r.exists(&format!("test/backups/{}.json", ids[0].0)).await,
        "a dry run deletes nothing"
    );
    let out = r.berth(&["db", "prune", "test", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let left = r.keys("test/").await;
    assert!(!left.iter().any(|k| k.contains(ids[0].0)), "{left:?}");
    assert!(
        left.iter().any(|k| k.contains(ids[2].0)),
        "the failed record stays: {left:?}"
    );
    assert!(left.contains(&format!("test/drills/{}/20261205T000000Z.json", ids[3].0)));

    // No `backups:` block.
    let text = std::fs::read_to_string(&path).unwrap();
    let bare = text.split_once("\n    backups:").unwrap().0.to_owned() + "\n";
    std::fs::write(&path, bare).unwrap();
    assert_refused(&r.berth(&["db", "backups", "test"]), &["has no `backups:`"]);
}
