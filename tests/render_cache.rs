//! `berth clear-render-cache` against the local cluster (port-forward through
//! the API server to a kwok pod, which reaches the local PostgreSQL), a
//! seeded cjworkbench-like schema, and cached objects in MinIO.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use kube::Client;
use support::*;

const WORKFLOWS: i64 = 24;
const STEPS_PER_WORKFLOW: i64 = 2;

/// A namespace with a Deployment whose pods reach the database, a Secret of
/// its credentials, a seeded database and a bucket of cached objects.
struct Fixture {
    dir: PathBuf,
    namespace: String,
    database: String,
    bucket: String,
    client: Client,
    /// The namespace, database, bucket and directory, removed when dropped.
    _cleanup: [Cleanup; 4],
}

impl Fixture {
    async fn new(prefix: &str) -> Fixture {
        let env = local_env();
        let client = env.kube().await;
        let namespace = namespace(&client, prefix).await;
        let url = env.database(prefix).await;
        let database = url.rsplit_once('/').unwrap().1.to_string();
        let bucket = unique_name("rc").to_lowercase();
        let dir = std::env::temp_dir().join(&namespace);
        let cleanup = [
            Cleanup::Namespace(namespace.clone()),
            Cleanup::Database(database.clone()),
            Cleanup::Bucket(bucket.clone()),
            Cleanup::Dir(dir.clone()),
        ];
        let db = connect_postgres(&url).await;
        db.batch_execute(
            "CREATE TABLE workflow (id serial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE step (
               id serial PRIMARY KEY,
               workflow_id integer NOT NULL REFERENCES workflow(id),
               slug text NOT NULL,
               cached_render_result_delta_id integer,
               cached_render_result_errors jsonb NOT NULL DEFAULT '[]',
               cached_render_result_json bytea NOT NULL DEFAULT 'null',
               cached_render_result_status text,
               cached_render_result_columns jsonb,
               cached_render_result_nrows integer);",
        )
        .await
        .unwrap();
        for w in 1..=WORKFLOWS {
            db.execute(
                "INSERT INTO workflow (name) VALUES ($1)",
                &[&format!("wf {w}")],
            )
            .await
            .unwrap();
            for s in 0..STEPS_PER_WORKFLOW {
                db.execute(
                    "INSERT INTO step (workflow_id, slug, cached_render_result_delta_id,
                       cached_render_result_errors, cached_render_result_json,
                       cached_render_result_status, cached_render_result_columns,
                       cached_render_result_nrows)
                     VALUES ($1, $2, 7, '[{\"message\": \"x\"}]', '\\x7b7d', 'ok', '[{\"name\": \"A\"}]', 10)",
                    &[&(w as i32), &format!("step-{w}-{s}")],
                )
                .await
                .unwrap();
            }
        }
        let s3 = env.s3().await;
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let mut keys = Vec::new();
        for w in 1..=WORKFLOWS {
            for s in 0..STEPS_PER_WORKFLOW {
                keys.push(format!("wf-{w}/wfm-{}/delta-7.dat", w * 10 + s));
            }
        }
        // Not the cache's: must survive.
        keys.extend(["wf-1-notes.txt".to_string(), "other/wf-1/x".to_string()]);
        for key in &keys {
            s3.put_object()
                .bucket(&bucket)
                .key(key)
                .body(ByteStream::from(key.as_bytes().to_vec()))
                .send()
                .await
                .unwrap();
        }
        create::<k8s_openapi::api::core::v1::Secret>(
            &client,
            &namespace,
            serde_json::json!({
                "metadata": {"name": "db-credentials"},
                "stringData": {"PGUSER": "postgres", "PGPASSWORD": "berthlocal", "PGDATABASE": database},
            }),
        )
        .await;
        create::<k8s_openapi::api::apps::v1::Deployment>(
            &client,
            &namespace,
            serde_json::json!({
                "metadata": {"name": "frontend"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "frontend"}},
                    "template": {
                        "metadata": {"labels": {"app": "frontend"}},
                        "spec": {"containers": [{"name": "frontend", "image": "127.0.0.1:25000/workbench/frontend:1a2b3c4"}]},
                    },
                },
            }),
        )
        .await;
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(client.clone(), &namespace);
        wait_for_pod(
            &pods,
            "app=frontend",
            Duration::from_secs(60),
            "a Ready frontend pod",
            berth::cluster::pods::is_ready,
        )
        .await;
        std::fs::create_dir_all(dir.join("overlay")).unwrap();
        std::fs::write(dir.join("overlay/kustomization.yaml"), "resources: []\n").unwrap();
        std::fs::write(
            dir.join("berth.yaml"),
            format!(
                r#"app: wb
images: [127.0.0.1:25000/workbench/frontend]
environments:
  test:
    context: berth-local
    namespace: {namespace}
    overlay: overlay
    database: {{ workload: frontend, secret: db-credentials }}
render_cache:
  workflow_table: workflow
  cache_table: step
  workflow_column: workflow_id
  lock_timeout: 1s
  clear:
    cached_render_result_delta_id: null
    cached_render_result_errors: "[]"
    cached_render_result_json: "null"
    cached_render_result_status: null
    cached_render_result_columns: null
    cached_render_result_nrows: null
  buckets: {{ test: {bucket} }}
  prefix: "wf-{{workflow}}/"
"#
            ),
        )
        .unwrap();
        Fixture {
            dir,
            namespace,
            database: url,
            bucket,
            client,
            _cleanup: cleanup,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        berth_command(&self.dir.join("berth.yaml"), &self.dir, args)
    }

    /// Steps whose cache is still set.
    async fn cached_steps(&self) -> i64 {
        let db = connect_postgres(&self.database).await;
        db.query_one(
            "SELECT count(*) FROM step WHERE cached_render_result_delta_id IS NOT NULL
               OR cached_render_result_status IS NOT NULL OR cached_render_result_errors <> '[]'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    }

    /// The last workflow the checkpoint says is done, once there is one.
    async fn done_through(&self) -> Option<i64> {
        let configmaps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(self.client.clone(), &self.namespace);
        let map = configmaps
            .get_opt("berth-clear-render-cache")
            .await
            .unwrap()?;
        let text = map.data?.remove("checkpoint.json")?;
        let checkpoint: serde_json::Value = serde_json::from_str(&text).unwrap();
        checkpoint["done_through"].as_i64()
    }

    async fn keys(&self) -> Vec<String> {
        let s3 = local_env().s3().await;
        let listed = s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }
}

#[tokio::test]
async fn a_busy_workflow_is_skipped_then_cleared_and_nothing_else_is_touched() {
    let fixture = Fixture::new("rc-busy").await;
    let dry = fixture
        .command(&[
            "clear-render-cache",
            "test",
            "--dry-run",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let counted = report(&dry);
    assert_eq!(counted["workflows"], WORKFLOWS);
    assert_eq!(counted["rows_cleared"], WORKFLOWS * STEPS_PER_WORKFLOW);
    assert_eq!(counted["objects_deleted"], WORKFLOWS * STEPS_PER_WORKFLOW);
    assert_eq!(
        fixture.cached_steps().await,
        WORKFLOWS * STEPS_PER_WORKFLOW,
        "a dry run changes nothing"
    );

    // Another session holds workflow 5's row lock until berth has waited
    // for it and given up (its lock_timeout): only then is it let go, so the
    // first try finds it busy and a retry clears it, however slow the start.
    let holder = connect_postgres(&fixture.database).await;
    holder
        .batch_execute("BEGIN; SELECT id FROM workflow WHERE id = 5 FOR UPDATE")
        .await
        .unwrap();
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let child = spawn_captured(&mut fixture.command(&[
        "clear-render-cache",
        "test",
        "--rate",
        "50",
        "--output",
        "json",
    ]));
    let watcher = connect_postgres(&fixture.database).await;
    let waiters = async || -> i64 {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                &[&holder_pid],
            )
            .await
            .unwrap()
            .get(0)
    };
    let limit = Duration::from_secs(120);
    poll(limit, "berth to wait for workflow 5's lock", async || {
        (waiters().await > 0).then_some(())
    })
    .await;
    poll(limit, "berth's lock_timeout on workflow 5", async || {
        (waiters().await == 0).then_some(())
    })
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        code(&output),
        0,
        "{}{}",
        stderr(&output),
        String::from_utf8_lossy(&output.stdout)
    );
    let summary = report(&output);
    assert_eq!(summary["cleared"], WORKFLOWS - 1);
    assert_eq!(summary["busy_then_cleared"], 1);
    assert_eq!(summary["failed"].as_array().unwrap().len(), 0);
    assert_eq!(summary["objects_deleted"], WORKFLOWS * STEPS_PER_WORKFLOW);
    assert_eq!(fixture.cached_steps().await, 0);
    assert_eq!(
        fixture.keys().await,
        ["other/wf-1/x", "wf-1-notes.txt"],
        "only the cache's objects are deleted"
    );
    let db = connect_postgres(&fixture.database).await;
    let slugs: i64 = db
        .query_one("SELECT count(*) FROM step WHERE slug LIKE 'step-%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slugs, WORKFLOWS * STEPS_PER_WORKFLOW, "no row is deleted");
}

#[tokio::test]
async fn a_run_killed_mid_way_resumes_from_its_checkpoint() {
    let fixture = Fixture::new("rc-resume").await;
    // At 2 workflows a second the run takes 12 s; its first checkpoint
    // comes after 2 s.
    let mut child = fixture
        .command(&["clear-render-cache", "test", "--rate", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once it has checkpointed some progress, kill it hard.
    let done_through = poll(
        Duration::from_secs(120),
        "a checkpoint with some progress",
        async || fixture.done_through().await,
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let left = fixture.cached_steps().await;
    assert!(
        left > 0 && left <= (WORKFLOWS - done_through) * STEPS_PER_WORKFLOW,
        "killed mid-way after workflow {done_through}: {left} cached steps left"
    );

    let output = fixture
        .command(&[
            "clear-render-cache",
            "test",
            "--rate",
            "100",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        code(&output),
        0,
        "{}{}",
        stderr(&output),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(report(&output)["resumed"].as_bool().unwrap());
    assert_eq!(fixture.cached_steps().await, 0);
    assert_eq!(fixture.keys().await, ["other/wf-1/x", "wf-1-notes.txt"]);
    let configmaps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(fixture.client.clone(), &fixture.namespace);
    assert!(
        configmaps
            .get_opt("berth-clear-render-cache")
            .await
            .unwrap()
            .is_none(),
        "a finished run leaves no checkpoint"
    );
}

#[tokio::test]
async fn bad_input_is_exit_2() {
    let fixture = Fixture::new("rc-bad").await;
    let unknown = fixture
        .command(&["clear-render-cache", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    let config = fixture.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    // berth.yaml with `from` replaced by `to`: refused, its stderr.
    let refused = |from: &str, to: &str| {
        std::fs::write(&config, text.replace(from, to)).unwrap();
        let out = fixture
            .command(&["clear-render-cache", "test"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        stderr(&out)
    };
    let missing = refused("secret: db-credentials", "secret: no-such-secret");
    assert!(missing.contains("no-such-secret"), "{missing}");
    let no_workload = refused("workload: frontend", "workload: nothing-here");
    assert!(no_workload.contains("nothing-here"), "{no_workload}");
    // a bucket that does not exist: the fix named is the render cache's key
    let no_bucket = refused(&format!("test: {}", fixture.bucket), "test: no-such-bucket");
    assert!(
        no_bucket.contains("bucket no-such-bucket does not exist")
            && no_bucket.contains("`render_cache.buckets`")
            && !no_bucket.contains("assets."),
        "{no_bucket}"
    );
    assert_eq!(fixture.cached_steps().await, WORKFLOWS * STEPS_PER_WORKFLOW);
}
