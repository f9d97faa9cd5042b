//! `berth db agent backup|verify|restore|drill`, the work berth's pods do,
//! run here as a process against the local PostgreSQL and MinIO with the
//! environment a pod template gives. Each test has its own role (with a
//! canary password), database and bucket.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{code, local_env, poll, stderr, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the test role's password starts with; it must never be shown.
const CANARY: &str = "berth-canary-pg";

/// One test's role, database and bucket.
struct Fixture {
    role: String,
    password: String,
    database: String,
    bucket: String,
    /// The superuser's URL of the test database.
    admin_url: String,
}

impl Fixture {
    /// A role with CREATEDB owning a fresh database holding `t` (100,000
    /// rows of hashes, about 2 MB dumped) and a `django_migrations` table,
    /// and an empty bucket.
    async fn new(prefix: &str) -> Fixture {
        let env = local_env();
        let name = unique_name(prefix).replace('-', "_");
        let (role, database) = (format!("{name}_role"), name.clone());
        let password = format!("{CANARY}-{name}");
        let postgres = env.postgres().await;
        for statement in [
            format!("CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'"),
            format!("CREATE DATABASE {database} OWNER {role}"),
        ] {
            postgres
                .batch_execute(&statement)
                .await
                .expect("create role and database");
        }
        let base = env.var("DATABASE_URL");
        let (server, _) = base.rsplit_once('/').unwrap();
        let fixture = Fixture {
            role,
            password,
            database: database.clone(),
            bucket: name.replace('_', "-"),
            admin_url: format!("{server}/{database}"),
        };
        fixture
            .as_role()
            .await
            .batch_execute(
                "CREATE TABLE t AS SELECT i, md5(i::text) AS s FROM generate_series(1, 100000) i; \
                 CREATE TABLE django_migrations (id serial PRIMARY KEY, app text NOT NULL, \
                   name text NOT NULL, applied timestamptz NOT NULL DEFAULT now()); \
                 INSERT INTO django_migrations (app, name) VALUES \
                   ('shop', '0001_initial'), ('auth', '0001_initial'), ('shop', '0002_price');",
            )
            .await
            .expect("fill the database");
        env.s3()
            .await
            .create_bucket()
            .bucket(&fixture.bucket)
            .send()
            .await
            .expect("create bucket");
        fixture
    }

    /// A connection as the test's role.
    async fn as_role(&self) -> tokio_postgres::Client {
        support::connect_postgres(&format!(
            "postgres://{}:{}@127.0.0.1:25432/{}",
            self.role, self.password, self.database
        ))
        .await
    }

    /// A superuser connection to the test database.
    async fn as_admin(&self) -> tokio_postgres::Client {
        support::connect_postgres(&self.admin_url).await
    }

    /// The agent's environment, as a pod template sets it.
    fn vars(&self) -> Vec<(String, String)> {
        let env = local_env();
        [
            ("BERTH_ENVIRONMENT", "staging"),
            ("BERTH_BACKUP_BUCKET", self.bucket.as_str()),
            ("BERTH_WHO", "test"),
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", "25432"),
            ("PGUSER", self.role.as_str()),
            ("PGPASSWORD", self.password.as_str()),
            ("PGDATABASE", self.database.as_str()),
            ("AWS_ENDPOINT_URL", env.var("AWS_ENDPOINT_URL")),
            ("AWS_ACCESS_KEY_ID", env.var("AWS_ACCESS_KEY_ID")),
            ("AWS_SECRET_ACCESS_KEY", env.var("AWS_SECRET_ACCESS_KEY")),
            ("AWS_REGION", env.var("AWS_REGION")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// `berth db agent TASK` with the pod's environment and `extra`.
    fn command(&self, task: &str, extra: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .args(["db", "agent", task])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.vars())
            .envs(extra.iter().copied())
            .stdin(Stdio::null());
        command
    }

    /// Run the agent and check that its output shows no password.
    fn agent(&self, task: &str, extra: &[(&str, &str)]) -> Output {
        let output = self.command(task, extra).output().expect("run berth");
        self.assert_secret_free(&output);
        output
    }

    fn assert_secret_free(&self, output: &Output) {
        for text in [
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ] {
            assert!(!text.contains(CANARY), "output shows the password: {text}");
        }
    }

    /// A succeeded backup's manifest.
    fn backup(&self) -> Value {
        let output = self.agent("backup", &[]);
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        result(&output, "backup")
    }

    /// The keys in the bucket.
    async fn keys(&self) -> Vec<String> {
        local_env()
            .s3()
            .await
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    async fn object(&self, key: &str) -> Vec<u8> {
        let got = local_env()
            .s3()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        got.body.collect().await.unwrap().into_bytes().to_vec()
    }

    async fn count(&self, sql: &str) -> i64 {
        self.as_admin()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// The `task` object of the agent's last stdout line.
fn result(output: &Output, task: &str) -> Value {
    let report = support::report(output);
    report
        .get(task)
        .unwrap_or_else(|| panic!("no {task:?} in {report}"))
        .clone()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_backup_records_counts_versions_and_migrations_and_reads_back() {
    let fixture = Fixture::new("agent-backup").await;
    let manifest = fixture.backup();
    assert_eq!(manifest["status"], "succeeded");
    assert_eq!(manifest["environment"], "staging");
    assert_eq!(manifest["trigger"], "manual");
    assert_eq!(manifest["who"], "test");
    let tables: BTreeMap<String, u64> = serde_json::from_value(manifest["tables"].clone()).unwrap();
    assert_eq!(
        tables,
        BTreeMap::from([
            ("public.django_migrations".to_owned(), 3),
            ("public.t".to_owned(), 100_000)
        ])
    );
    assert_eq!(
        manifest["migrations"],
        serde_json::json!({"shop": "0002_price", "auth": "0001_initial"})
    );
    assert!(
        manifest["postgres_version"]
            .as_str()
            .unwrap()
            .starts_with("15.")
    );
    assert!(
        manifest["pg_dump_version"]
            .as_str()
            .unwrap()
            .starts_with("pg_dump (PostgreSQL) 15.")
    );
    assert_eq!(manifest["part_size"], 8 * 1024 * 1024);
    assert!(manifest["database_size"].as_u64().unwrap() > 1_000_000);
    // The object is the dump the manifest describes, and the manifest sits beside it.
    let id = manifest["id"].as_str().unwrap();
    let key = manifest["object"].as_str().unwrap();
    assert_eq!(key, format!("staging/backups/{id}.dump"));
    let dump = fixture.object(key).await;
    assert!(dump.starts_with(b"PGDMP"), "not a custom-format dump");
    assert_eq!(dump.len() as u64, manifest["size"].as_u64().unwrap());
    assert_eq!(sha256_hex(&dump), manifest["sha256"]);
    let stored: Value =
        serde_json::from_slice(&fixture.object(&format!("staging/backups/{id}.json")).await)
            .unwrap();
    assert_eq!(stored, manifest);
    // pg_restore reads its table of contents.
    let path = std::env::temp_dir().join(format!("{id}.dump"));
    std::fs::write(&path, &dump).unwrap();
    let list = Command::new("pg_restore")
        .arg("--list")
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains("TABLE DATA public t "));
    // verify agrees.
    let output = fixture.agent("verify", &[("BERTH_BACKUP_ID", id)]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let verified = result(&output, "verify");
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["sha256"], manifest["sha256"]);
    assert!(verified["entries"].as_u64().unwrap() >= 5);
}

#[tokio::test]
async fn restore_brings_the_data_back_and_ends_other_sessions() {
    let fixture = Fixture::new("agent-restore").await;
    let manifest = fixture.backup();
    let id = manifest["id"].as_str().unwrap();
    let session = fixture.as_role().await;
    session
        .batch_execute(
            "DELETE FROM t WHERE i > 10; UPDATE t SET s = 'changed' WHERE i = 1; \
             INSERT INTO django_migrations (app, name) VALUES ('shop', '0003_later')",
        )
        .await
        .unwrap();
    let output = fixture.agent("restore", &[("BERTH_BACKUP_ID", id)]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let restored = result(&output, "restore");
    assert_eq!(restored["ok"], true, "{restored}");
    assert_eq!(restored["changed"], true);
    assert_eq!(restored["mismatches"], serde_json::json!({}));
    assert_eq!(restored["tables"], manifest["tables"]);
    assert_eq!(fixture.count("SELECT count(*) FROM t").await, 100_000);
    assert_eq!(
        fixture
            .count("SELECT count(*) FROM t WHERE i = 1 AND s = md5('1')")
            .await,
        1
    );
    assert_eq!(
        fixture
            .count("SELECT count(*) FROM django_migrations")
            .await,
        3
    );
    // The session open during the restore was ended.
    assert!(session.query_one("SELECT 1", &[]).await.is_err());
}

#[tokio::test]
async fn a_drill_restores_into_a_scratch_database_it_drops_and_records_the_evidence() {
    let fixture = Fixture::new("agent-drill").await;
    let manifest = fixture.backup();
    let id = manifest["id"].as_str().unwrap();
    let scratch_like = format!("berth_drill_{}%", id.rsplit('-').next().unwrap());
    let scratch_count =
        format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{scratch_like}'");

    let smoke = r#"["SELECT count(*) = 100000 FROM t", "SELECT EXISTS (SELECT 1 FROM django_migrations WHERE name = '0002_price')"]"#;
    let output = fixture.agent(
        "drill",
        &[
            ("BERTH_BACKUP_ID", id),
            ("BERTH_DRILL_SMOKE", smoke),
            ("BERTH_DRILL_ID", "drill-1"),
        ],
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let record = result(&output, "drill");
    assert_eq!(record["result"], "passed", "{record}");
    assert_eq!(record["backup"], id);
    assert_eq!(record["tables"], manifest["tables"]);
    assert_eq!(record["mismatches"], serde_json::json!({}));
    assert_eq!(record["smoke"].as_array().unwrap().len(), 2);
    assert!(record["data_age_seconds"].as_f64().unwrap() > 0.0);
    assert!(
        record["scratch_database"]
            .as_str()
            .unwrap()
            .starts_with("berth_drill_")
    );
    let stored: Value = serde_json::from_slice(
        &fixture
            .object(&format!("staging/drills/{id}/drill-1.json"))
            .await,
    )
    .unwrap();
    assert_eq!(stored, record);
    assert_eq!(
        fixture.count(&scratch_count).await,
        0,
        "the scratch database remains"
    );

    // A smoke query that is not true fails the drill; the scratch database still goes.
    let output = fixture.agent(
        "drill",
        &[
            ("BERTH_BACKUP_ID", id),
            ("BERTH_DRILL_SMOKE", r#"["SELECT count(*) = 5 FROM t"]"#),
        ],
    );
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let record = result(&output, "drill");
    assert_eq!(record["result"], "failed");
    assert!(record["error"].as_str().unwrap().contains("count(*) = 5"));
    assert_eq!(
        fixture.count(&scratch_count).await,
        0,
        "the scratch database remains"
    );
}

/// A TCP proxy in front of MinIO that cuts each connection once the client
/// has sent `limit` bytes through it: small requests pass, a part upload
/// never does. Its URL.
async fn cutting_proxy(limit: usize) -> String {
    let upstream = local_env()
        .var("AWS_ENDPOINT_URL")
        .trim_start_matches("http://")
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = async {
                    let mut sent = 0;
                    let mut buffer = vec![0; 16 * 1024];
                    loop {
                        let n = client_read.read(&mut buffer).await.unwrap_or(0);
                        if n == 0 || sent + n > limit {
                            return;
                        }
                        sent += n;
                        if server_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let down = tokio::io::copy(&mut server_read, &mut client_write);
                // Whichever side ends first ends the connection.
                tokio::select! {
                    () = up => {}
                    _ = down => {}
                }
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failing_mid_upload_leaves_no_dump_and_no_upload_and_records_the_failure() {
    let fixture = Fixture::new("agent-s3-cut").await;
    let proxy = cutting_proxy(256 * 1024).await;
    // The proxy runs on this test's runtime: run berth off it.
    let output =
        tokio::task::block_in_place(|| fixture.agent("backup", &[("AWS_ENDPOINT_URL", &proxy)]));
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let manifest = result(&output, "backup");
    assert_eq!(manifest["status"], "failed");
    assert!(manifest.get("object").is_none());
    assert!(
        manifest["error"].as_str().unwrap().contains("part 1"),
        "{manifest}"
    );
    let keys = fixture.keys().await;
    assert!(!keys.iter().any(|k| k.ends_with(".dump")), "{keys:?}");
    assert_eq!(
        keys,
        vec![format!(
            "staging/backups/{}.json",
            manifest["id"].as_str().unwrap()
        )]
    );
    let uploads = local_env()
        .s3()
        .await
        .list_multipart_uploads()
        .bucket(&fixture.bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

#[tokio::test]
async fn pg_dump_failing_is_a_failed_backup() {
    let fixture = Fixture::new("agent-dump-fails").await;
    fixture
        .as_admin()
        .await
        .batch_execute(
            "CREATE TABLE public.hidden (x int); REVOKE ALL ON public.hidden FROM PUBLIC",
        )
        .await
        .unwrap();
    let output = fixture.agent("backup", &[]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let manifest = result(&output, "backup");
    assert_eq!(manifest["status"], "failed");
    let error = manifest["error"].as_str().unwrap();
    assert!(error.contains("pg_dump failed"), "{error}");
    assert!(error.contains("permission denied"), "{error}");
    assert!(!fixture.keys().await.iter().any(|k| k.ends_with(".dump")));
}

#[tokio::test]
async fn a_corrupt_dump_fails_verify_and_restore_before_the_database_is_touched() {
    let fixture = Fixture::new("agent-corrupt").await;
    let manifest = fixture.backup();
    let id = manifest["id"].as_str().unwrap();
    let key = manifest["object"].as_str().unwrap();
    let mut dump = fixture.object(key).await;
    let middle = dump.len() / 2;
    dump[middle] ^= 0xff;
    local_env()
        .s3()
        .await
        .put_object()
        .bucket(&fixture.bucket)
        .key(key)
        .body(dump.into())
        .send()
        .await
        .unwrap();

    let output = fixture.agent("verify", &[("BERTH_BACKUP_ID", id)]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let verified = result(&output, "verify");
    assert_eq!(verified["ok"], false);
    assert!(
        verified["error"].as_str().unwrap().contains("SHA-256"),
        "{verified}"
    );

    let session = fixture.as_role().await;
    session
        .batch_execute("DELETE FROM t WHERE i > 10")
        .await
        .unwrap();
    let output = fixture.agent("restore", &[("BERTH_BACKUP_ID", id)]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let restored = result(&output, "restore");
    assert_eq!(restored["ok"], false);
    assert_eq!(restored["changed"], false);
    assert!(
        restored["error"].as_str().unwrap().contains("unchanged"),
        "{restored}"
    );
    assert!(
        !stderr(&output).contains("other sessions"),
        "{}",
        stderr(&output)
    );
    // Nothing touched: the data as it was, the open session still alive.
    let count: i64 = session
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 10);
}

#[tokio::test]
async fn missing_settings_and_unknown_backups_exit_2_naming_them() {
    let fixture = Fixture::new("agent-input").await;
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["db", "agent", "restore"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BERTH_ENVIRONMENT", "staging")
        .env("PGHOST", "127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let text = stderr(&output);
    for name in [
        "BERTH_BACKUP_BUCKET",
        "PGUSER",
        "PGDATABASE",
        "AWS_ACCESS_KEY_ID",
        "BERTH_BACKUP_ID",
    ] {
        assert!(text.contains(name), "{text}");
    }
    let output = fixture.agent(
        "restore",
        &[("BERTH_BACKUP_ID", "20261206T112233Z-manual-0000")],
    );
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("there is no backup 20261206T112233Z-manual-0000"));
    let output = fixture.agent("backup", &[("BERTH_BACKUP_BUCKET", "no-such-bucket-berth")]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("no-such-bucket-berth does not exist"));
    let output = fixture.agent("backup", &[("PGPORT", "1")]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        fixture.keys().await.is_empty(),
        "an unreachable database changed the bucket"
    );
    // A backup of another environment is refused, before anything is touched.
    let manifest = fixture.backup();
    let id = manifest["id"].as_str().unwrap();
    let elsewhere = [
        ("BERTH_ENVIRONMENT", "production"),
        ("BERTH_BACKUP_PREFIX", "staging/"),
        ("BERTH_BACKUP_ID", id),
    ];
    let output = fixture.agent("restore", &elsewhere);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is of environment staging, not production"),
        "{}",
        stderr(&output)
    );
}

/// The command line of process `pid`, NUL-separated arguments.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

/// The children of `pid`, whichever of its threads started them.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[tokio::test]
async fn the_password_is_in_no_process_list_nor_output() {
    let fixture = Fixture::new("agent-argv").await;
    // Hold the table so pg_dump waits for its lock while the test looks.
    let holder = fixture.as_admin().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let child = fixture
        .command("backup", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let berth = child.id();
    let pg_dump = poll(Duration::from_secs(30), "pg_dump to start", async || {
        children(berth)
            .into_iter()
            .find(|pid| cmdline(*pid).contains("pg_dump --format"))
    })
    .await;
    let berth_line = cmdline(berth);
    let dump_line = cmdline(pg_dump);
    assert!(dump_line.contains("--snapshot="), "{dump_line}");
    for line in [&berth_line, &dump_line] {
        assert!(
            !line.contains(CANARY),
            "the password is in a process list: {line}"
        );
    }
    holder.batch_execute("COMMIT").await.unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    fixture.assert_secret_free(&output);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    // A refused password is reported without it.
    let output = fixture.agent("backup", &[("PGPASSWORD", &format!("{CANARY}-wrong"))]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("password authentication failed"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn a_scheduled_backup_applies_retention_and_prune_says_why() {
    let fixture = Fixture::new("agent-retention").await;
    let retention =
        r#"{"daily":1,"weekly":0,"monthly":0,"manual":1,"pre_migrate":1,"pre_restore":1}"#;
    let scheduled = [
        ("BERTH_BACKUP_TRIGGER", "schedule"),
        ("BERTH_RETENTION", retention),
    ];
    let manual = fixture.backup();
    let output = fixture.agent("backup", &scheduled);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let first = result(&output, "backup");
    let output = fixture.agent("backup", &scheduled);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let second = result(&output, "backup");
    // One scheduled backup a day is kept: the newer of today's went on; the
    // manual one is counted apart and stays.
    let mut keys = fixture.keys().await;
    keys.sort();
    let mut expected: Vec<String> = [&manual, &second]
        .iter()
        .flat_map(|m| {
            let id = m["id"].as_str().unwrap();
            [
                format!("staging/backups/{id}.dump"),
                format!("staging/backups/{id}.json"),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(
        keys, expected,
        "the first scheduled backup {} should be gone",
        first["id"]
    );
    // prune alone deletes nothing more and says why each stays.
    let output = fixture.agent("prune", &[("BERTH_RETENTION", retention)]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let pruned = result(&output, "prune");
    assert_eq!(pruned["deleted"], serde_json::json!([]));
    let kept: Vec<&str> = pruned["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "{pruned}");
    assert!(kept.contains(&manual["id"].as_str().unwrap()));
    assert!(
        pruned["kept"][0]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
}
