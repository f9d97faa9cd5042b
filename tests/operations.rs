//! `berth psql`, `run`, `task` and `refresh-suggested-modules` against the
//! local cluster: kwok's exec runs commands on this machine and its psql
//! reaches the local PostgreSQL, with the settings from a Secret.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::ListParams;
use kube::{Api, Client};
use support::*;

/// The libpq settings of a fresh test database on the local PostgreSQL.
struct Database {
    user: String,
    password: String,
    name: String,
}

impl Database {
    async fn new() -> Database {
        let url = local_env().database("ops").await;
        // postgres://USER:PASSWORD@HOST[:PORT]/NAME
        let rest = url.strip_prefix("postgres://").expect("a postgres:// URL");
        let (credentials, place) = rest.split_once('@').expect("credentials in DATABASE_URL");
        let (user, password) = credentials
            .split_once(':')
            .expect("a password in DATABASE_URL");
        let (_, name) = place.split_once('/').expect("a database name");
        Database {
            user: user.into(),
            password: password.into(),
            name: name.into(),
        }
    }
}

/// A namespace with a Ready Deployment `db`, the Secret `pg` of libpq
/// settings, and a berth.yaml whose `test` environment points at them.
/// Dropping it deletes the namespace, the database and the directory.
struct Ops {
    client: Client,
    namespace: String,
    dir: PathBuf,
    database: Database,
    _cleanup: [Cleanup; 3],
}

impl Ops {
    async fn new(prefix: &str) -> Ops {
        Ops::with_database_block(
            prefix,
            "    database: { workload: db, container: app, secret: pg }\n",
        )
        .await
    }

    async fn with_database_block(prefix: &str, database_block: &str) -> Ops {
        let client = local_env().kube().await;
        let namespace = namespace(&client, prefix).await;
        let database = Database::new().await;
        let dir = std::env::temp_dir().join(&namespace);
        let cleanup = [
            Cleanup::Namespace(namespace.clone()),
            Cleanup::Database(database.name.clone()),
            Cleanup::Dir(dir.clone()),
        ];
        std::fs::create_dir_all(dir.join("tasks")).unwrap();
        std::fs::write(
            dir.join("tasks/greet.txt"),
            "# arguments, one per line\nloadurl\n\n  pastecsv\n# skipped\nfilter\n",
        )
        .unwrap();
        let config = format!(
            "{}{database_block}    run: {{ workload: db }}\n{}",
            example_config(&namespace, &kwok_app().join("overlays/staging")),
            r#"tasks:
  greet:
    workload: db
    command: [sh, -c, 'echo "args: $*"', greet]
    args_file: tasks/greet.txt
  refresh-suggested-modules:
    pod: true
    command: [echo, importing]
    args_file: tasks/greet.txt
"#
        );
        std::fs::write(dir.join("berth.yaml"), config).unwrap();
        create::<Secret>(
            &client,
            &namespace,
            serde_json::json!({
                "metadata": { "name": "pg" },
                "stringData": {
                    "PGHOST": "127.0.0.1", "PGPORT": "25432", "PGUSER": database.user,
                    "PGPASSWORD": database.password, "PGDATABASE": database.name,
                    "UNRELATED": "ignored"
                }
            }),
        )
        .await;
        let ops = Ops {
            client,
            namespace,
            dir,
            database,
            _cleanup: cleanup,
        };
        ops.deployment("db", "1a2b3c4").await;
        ops
    }

    /// A Deployment `name` with one pod of the frontend image at `tag`; waits
    /// until its pod is Ready unless the tag makes it fail.
    async fn deployment(&self, name: &str, tag: &str) {
        create::<Deployment>(
            &self.client,
            &self.namespace,
            serde_json::json!({
                "metadata": { "name": name },
                "spec": {
                    "replicas": 1,
                    "selector": { "matchLabels": { "app": name } },
                    "template": {
                        "metadata": { "labels": { "app": name } },
                        "spec": { "containers": [{
                            "name": "app",
                            "image": format!("127.0.0.1:25000/workbench/frontend:{tag}"),
                            "env": [{ "name": "MODE", "value": "one-off" }],
                            "readinessProbe": { "httpGet": { "path": "/", "port": 8080 } }
                        }] }
                    }
                }
            }),
        )
        .await;
        if !tag.starts_with("badbad") {
            wait_for_pod(
                &self.pods(),
                &format!("app={name}"),
                Duration::from_secs(60),
                "a Ready pod",
                berth::cluster::pods::is_ready,
            )
            .await;
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn command(&self, args: &[&str]) -> Command {
        berth_command(&self.dir.join("berth.yaml"), &self.dir, args)
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// berth with `input` on its standard input.
    fn berth_with_input(&self, args: &[&str], input: &str) -> Output {
        spawn_with_input(&mut self.command(args), input)
            .wait_with_output()
            .unwrap()
    }

    /// Assert the database password appears nowhere in `output`.
    fn assert_no_password(&self, output: &[u8]) {
        let text = String::from_utf8_lossy(output);
        assert!(
            !text.contains(&self.database.password),
            "the password leaked:\n{text}"
        );
    }

    async fn run_pods(&self) -> Vec<String> {
        self.pods()
            .list(&ListParams::default().labels("berth.dev/run"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter_map(|pod| pod.metadata.name)
            .collect()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn psql_through_pipes_prints_the_result_and_never_the_password() {
    let ops = Ops::new("psql-pipe").await;
    // kwok's exec never passes the end of standard input on to the command
    // (`kubectl exec -i` hangs the same way), so the input ends with \q; on
    // a real kubelet psql also stops at the end of its input.
    let output = ops.berth_with_input(
        &["psql", "test", "--", "-At"],
        "select 1;\nselect current_database();\n\\q\n",
    );
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), format!("1\n{}\n", ops.database.name));
    ops.assert_no_password(&output.stdout);
    ops.assert_no_password(&output.stderr);
}

#[tokio::test]
async fn psql_exit_codes_propagate_and_stderr_stays_separate() {
    let ops = Ops::new("psql-exit").await;
    let output = ops.berth(&[
        "psql",
        "test",
        "--",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        "select nonsense",
    ]);
    assert_eq!(code(&output), 1, "stdout: {}", stdout(&output));
    assert!(stderr(&output).contains("nonsense"), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("error: the command"),
        "berth adds nothing: {}",
        stderr(&output)
    );
    assert_eq!(stdout(&output), "");
    ops.assert_no_password(&output.stderr);
}

#[tokio::test]
async fn psql_picks_the_ready_pod_among_several() {
    let ops = Ops::new("psql-ready").await;
    // A newer pod with the same labels that never becomes Ready (its image
    // never pulls), owned by something else so the ReplicaSet leaves it be.
    let owner: ConfigMap = create(
        &ops.client,
        &ops.namespace,
        serde_json::json!({ "metadata": { "name": "owner" } }),
    )
    .await;
    create::<Pod>(
        &ops.client,
        &ops.namespace,
        serde_json::json!({
            "metadata": {
                "name": "aaa-unready", "labels": { "app": "db" },
                "ownerReferences": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                      "uid": owner.metadata.uid, "controller": true }]
            },
            "spec": { "containers": [{ "name": "app", "image": "127.0.0.1:25000/workbench/frontend:badbad1" }] }
        }),
    )
    .await;
    wait_for_pod(
        &ops.pods(),
        "app=db",
        Duration::from_secs(30),
        "the unready pod to fail",
        |pod| pod.metadata.name.as_deref() == Some("aaa-unready") && waiting_reason(pod).is_some(),
    )
    .await;
    let output = ops.berth(&["-v", "psql", "test", "--", "-At", "-c", "select 2"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "2\n");
    assert!(
        stderr(&output).contains("psql in pod db-"),
        "{}",
        stderr(&output)
    );
}

/// A pseudo-terminal: the parent's end and the path of the child's end.
fn open_pty() -> (OwnedFd, PathBuf) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let parent = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&parent).unwrap();
    unlockpt(&parent).unwrap();
    let child = ptsname(&parent, Vec::new()).unwrap();
    let size = rustix::termios::Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&parent, size).unwrap();
    (parent, PathBuf::from(child.to_str().unwrap()))
}

#[tokio::test]
async fn psql_under_a_terminal_gets_a_tty_and_echoes_no_settings() {
    let ops = Ops::new("psql-tty").await;
    let (parent, child_path) = open_pty();
    let terminal = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&child_path)
            .unwrap()
    };
    let mut child = ops
        .command(&["psql", "test", "--", "-X", "-v", "ON_ERROR_STOP=1"])
        .stdin(terminal())
        .stdout(terminal())
        .stderr(terminal())
        .spawn()
        .unwrap();
    let mut reader = std::fs::File::from(parent.as_fd().try_clone_to_owned().unwrap());
    let mut writer = std::fs::File::from(parent);
    let collected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = collected.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        // EIO once every holder of the child's end is gone.
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    });
    let seen = |text: &str| String::from_utf8_lossy(&collected.lock().unwrap()).contains(text);
    poll(Duration::from_secs(30), "psql's prompt", async || {
        (seen("=#") || seen("=>")).then_some(())
    })
    .await;
    writer.write_all(b"select 40 + 2 as answer, pg_catalog.current_setting('application_name') is not null;\r").unwrap();
    poll(Duration::from_secs(30), "the answer", async || {
        seen("42").then_some(())
    })
    .await;
    // psql on a TTY reads a Ctrl-D on an empty line as the end.
    writer.write_all(b"\\q\r").unwrap();
    let status = poll(Duration::from_secs(30), "berth to exit", async || {
        child.try_wait().unwrap()
    })
    .await;
    assert_eq!(status.code(), Some(0));
    let output = collected.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&output);
    assert!(text.contains("answer"), "{text}");
    assert!(
        !text.contains("PGUSER") && !text.contains("PGPASSWORD"),
        "settings echoed: {text}"
    );
    assert!(
        !text.contains("berth:ready"),
        "the handshake line is hidden: {text}"
    );
    ops.assert_no_password(&output);
}

#[tokio::test]
async fn run_streams_output_propagates_the_exit_code_and_deletes_the_pod() {
    let ops = Ops::new("run").await;
    let output = ops.berth(&[
        "run",
        "test",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(code(&output), 3, "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "out\n");
    assert!(stderr(&output).contains("err\n"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("starting pod wb-test-run-"),
        "{}",
        stderr(&output)
    );
    assert!(ops.run_pods().await.is_empty(), "the pod is deleted");

    let output = ops.berth(&["run", "test", "--keep", "--", "true"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let kept = ops.run_pods().await;
    assert_eq!(kept.len(), 1, "--keep keeps the pod");
    let pod = ops.pods().get(&kept[0]).await.unwrap();
    let labels = pod.metadata.labels.clone().unwrap();
    assert!(
        !labels.contains_key("app"),
        "not the app's selector labels: {labels:?}"
    );
    let spec = pod.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let container = &spec.containers[0];
    assert!(container.readiness_probe.is_none());
    assert_eq!(
        container.env.as_ref().unwrap()[0].name,
        "MODE",
        "the template's environment"
    );
    assert!(container.image.as_deref().unwrap().ends_with(":1a2b3c4"));
}

#[tokio::test]
async fn run_stops_at_its_timeout_with_exit_4_and_deletes_the_pod() {
    let ops = Ops::new("run-timeout").await;
    let output = ops.berth(&["run", "test", "--timeout", "3s", "--", "sleep", "30"]);
    assert_eq!(code(&output), 4, "stderr: {}", stderr(&output));
    assert!(
        stderr(&output).contains("did not finish within 3s"),
        "{}",
        stderr(&output)
    );
    assert!(ops.run_pods().await.is_empty(), "the pod is deleted");
}

#[tokio::test]
async fn tasks_read_their_arguments_from_a_file() {
    let ops = Ops::new("task").await;
    let output = ops.berth(&["task", "test", "greet"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "args: loadurl pastecsv filter\n");

    let output = ops.berth(&["refresh-suggested-modules", "test"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "importing loadurl pastecsv filter\n");
    assert!(ops.run_pods().await.is_empty(), "the task's pod is deleted");

    // no name: the declared tasks, none run
    let output = ops.berth(&["task", "test"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let listed = stdout(&output);
    for part in [
        "TASK",
        "greet",
        "db",
        "sh -c echo \"args: $*\" greet <arguments from tasks/greet.txt>",
        "refresh-suggested-modules",
        "one-off pod",
        "echo importing",
    ] {
        assert!(listed.contains(part), "{part:?} in {listed}");
    }
    assert!(!listed.contains("args: loadurl"), "nothing ran: {listed}");
    // the words swapped
    assert_refused(
        &ops.berth(&["task", "greet", "test"]),
        &["did you mean: berth task test greet"],
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_exit_2_and_the_fix() {
    let ops = Ops::new("ops-bad").await;
    assert_refused(
        &ops.berth(&["psql", "nope"]),
        &["no environment `nope`", "`test`"],
    );
    assert_refused(
        &ops.berth(&["task", "test", "nope"]),
        &["no task `nope`", "tasks:\n  nope:\n", "command:"],
    );
    assert_refused(
        &ops.berth(&["run", "test", "--workload", "nope", "--", "true"]),
        &["no Deployment nope", "--workload"],
    );

    let secrets: Api<Secret> = Api::namespaced(ops.client.clone(), &ops.namespace);
    secrets.delete("pg", &Default::default()).await.unwrap();
    assert_refused(
        &ops.berth(&["psql", "test"]),
        &[
            "no Secret pg",
            "kubectl",
            "environments.test.database.secret",
        ],
    );

    let no_block = Ops::with_database_block("ops-nodb", "").await;
    let output = no_block.berth(&["psql", "test"]);
    assert_refused(
        &output,
        &["has no `database:` block", "database:\n      workload:"],
    );

    let missing =
        Ops::with_database_block("ops-missing", "    database: { workload: gone }\n").await;
    assert_refused(
        &missing.berth(&["psql", "test"]),
        &["no Deployment gone", "environments.test.database.workload"],
    );

    let unready =
        Ops::with_database_block("ops-unready", "    database: { workload: broken }\n").await;
    unready.deployment("broken", "badbad2").await;
    assert_refused(
        &unready.berth(&["psql", "test"]),
        &["no Ready pod of Deployment broken", "kubectl"],
    );
}
