//! `migrate.overlay`: the repository's own migration Pod, with a database
//! proxy sidecar that never exits, run as berth's migration Job. On kwok
//! (the plan, the deploy, the failure, and bad input that changes nothing)
//! and on the real node `real-0` (native sidecars, and sidecars berth ends
//! itself, each with a main container that succeeds and one that fails).

mod support;

use std::path::Path;
use std::process::Output;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use kube::api::ListParams;
use support::app::{Migration, TestApp};
use support::real_app::Release;
use support::*;

/// Standard output and error together.
fn all_output(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out))
}

/// `dir/migrate/`: a kustomization of `files` (name, YAML).
fn write_migrate_dir(dir: &Path, files: &[(&str, &str)]) {
    let migrate = dir.join("migrate");
    std::fs::create_dir_all(&migrate).unwrap();
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    std::fs::write(
        migrate.join("kustomization.yaml"),
        format!("resources: [{}]\n", names.join(", ")),
    )
    .unwrap();
    for (name, yaml) in files {
        std::fs::write(migrate.join(name), yaml).unwrap();
    }
}

/// The kwok repository's migration: a Pod with a proxy sidecar listed
/// first, beside a ConfigMap berth ignores.
const KWOK_PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: db-migrate
  labels: {app: db-migrate}
spec:
  restartPolicy: OnFailure
  serviceAccountName: default
  volumes: [{name: socket, emptyDir: {}}]
  containers:
    - name: cloud-sql-proxy
      image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.11.0
      args: ["--unix-socket=/cloudsql", "project:region:db"]
      volumeMounts: [{name: socket, mountPath: /cloudsql}]
    - name: migrate-main
      image: 127.0.0.1:25000/workbench/migrate:latest
      command: [python3, manage.py, migrate, --noinput]
      env:
        - name: DB_PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
      volumeMounts: [{name: socket, mountPath: /cloudsql}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: migrate-settings
data: {verbosity: "2"}
"#;

/// The asset-upload Pod beside each migration, which berth ignores (it
/// would exit 9 if it ran).
const UPLOAD_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: upload-assets
spec:
  containers:
    - name: upload
      image: 127.0.0.1:25000/workbench/migrate:latest
      command: [sh, -c, "exit 9"]
"#;

/// The keys that point `test` at `migrate/`.
const KWOK_MIGRATE: &str =
    "    migrate:\n      overlay: migrate\n      name: db-migrate\n      container: migrate-main\n";

/// The kwok app without its own migration Job, migrating from `migrate/`.
fn kwok_app(prefix: &str) -> TestApp {
    let app = TestApp::new(prefix, Migration::Deleted);
    write_migrate_dir(
        &app.dir,
        &[("pods.yaml", KWOK_PODS), ("upload.yaml", UPLOAD_POD)],
    );
    app.configure(KWOK_MIGRATE);
    app
}

#[tokio::test]
async fn the_plan_shows_the_migration_job_from_the_overlay_and_what_it_ignores() {
    let app = kwok_app("mo-plan");
    let out = app.ok(&["config", "validate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "test: migration Job from Pod/db-migrate in migrate (container migrate-main decides)"
        ),
        "{stdout}"
    );
    let out = app.ok(&["advanced-deploy", "test", "1a2b3c4", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "Migration, run to completion before the apply: Job/",
        "  from Pod/db-migrate in migrate (container migrate-main decides)",
        "sidecars cloud-sql-proxy made native sidecars; container migrate-main decides",
        "image migrate-main: 127.0.0.1:25000/workbench/migrate:latest -> 127.0.0.1:25000/workbench/migrate:1a2b3c4",
        "ignored (neither run nor applied): Pod/upload-assets, ConfigMap/migrate-settings",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    let plan = app.plan("1a2b3c4");
    let migration = &plan["migration"];
    assert_eq!(migration["from"], "Pod/db-migrate", "{plan}");
    assert!(
        migration["object"].as_str().unwrap().starts_with("Job/"),
        "{plan}"
    );
    assert_eq!(migration["container"], "migrate-main");
    assert_eq!(
        migration["native_sidecars"],
        serde_json::json!(["cloud-sql-proxy"])
    );
    assert_eq!(
        migration["ignored"],
        serde_json::json!(["Pod/upload-assets", "ConfigMap/migrate-settings"])
    );
    let objects = plan["objects"].to_string();
    assert!(
        !objects.contains("upload-assets") && !objects.contains("migrate-settings"),
        "ignored objects are not applied: {objects}"
    );
    let out = app.berth(&["diff", "test", "1a2b3c4"]);
    assert!(
        [0, 1].contains(&code(&out)),
        "diff does not fail on the migration overlay: {}",
        all_output(&out)
    );
}

#[tokio::test]
async fn a_migration_pod_with_a_sidecar_runs_on_kwok_and_its_main_container_decides() {
    let app = kwok_app("mo-kwok");
    let client = local_env().kube().await;
    let out = app.ok(&["advanced-deploy", "test", "1a2b3c4"]);
    let output = all_output(&out);
    assert!(
        output.contains("sidecars cloud-sql-proxy made native sidecars"),
        "{output}"
    );
    let release = &app.history()[0];
    assert_eq!(release["migration"]["status"], "succeeded", "{release}");
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client.clone(), &app.namespace);
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(
        !names.iter().any(|n| n == "upload-assets"),
        "the ignored Pod is not applied: {names:?}"
    );

    // kwok fails every container of a pod whose image is tagged fa11ed.
    let out = app.berth(&["advanced-deploy", "test", "fa11ed1", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let failure = &report(&out)["failure"];
    assert_eq!(failure["reason"], "ContainerFailed", "{failure}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("container \"migrate-main\" exited with code 1"),
        "{failure}"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &app.namespace);
    let kept = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(kept.len(), 1, "the failed migration Job is kept");
    let pod = kept[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let init = pod.init_containers.as_ref().unwrap();
    assert_eq!(init[0].name, "cloud-sql-proxy");
    assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
    assert_eq!(pod.containers.len(), 1);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("127.0.0.1:25000/workbench/migrate:fa11ed1")
    );
}

/// Run a deploy that must be refused as bad input before anything
/// changes: exit 2, every `expected` in its message, and still no
/// namespace.
async fn refused(app: &TestApp, expected: &[&str]) {
    let out = app.berth(&["advanced-deploy", "test", "1a2b3c4"]);
    let output = all_output(&out);
    assert_eq!(code(&out), 2, "{output}");
    for e in expected {
        assert!(output.contains(e), "{e:?} in:\n{output}");
    }
    let namespaces: Api<Namespace> = Api::all(local_env().kube().await);
    assert!(
        namespaces.get_opt(&app.namespace).await.unwrap().is_none(),
        "nothing was created: namespace {} exists",
        app.namespace
    );
}

#[tokio::test]
async fn bad_migration_overlays_are_refused_before_anything_changes() {
    let app = TestApp::new("mo-bad", Migration::Deleted);
    let config =
        |keys: &str| app.configure(&format!("    migrate:\n      overlay: migrate\n{keys}"));

    write_migrate_dir(
        &app.dir,
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: only-settings}\n",
        )],
    );
    config("");
    refused(
        &app,
        &["environments.test.migrate.overlay: migrate renders no Pod or Job (it renders ConfigMap/only-settings)"],
    )
    .await;

    write_migrate_dir(
        &app.dir,
        &[("pods.yaml", KWOK_PODS), ("upload.yaml", UPLOAD_POD)],
    );
    refused(
        &app,
        &["several Pods and Jobs (Pod/db-migrate, Pod/upload-assets); set environments.test.migrate.name"],
    )
    .await;

    config("      name: migration\n");
    refused(
        &app,
        &["no Pod or Job named \"migration\"; it renders Pod/db-migrate, Pod/upload-assets"],
    )
    .await;

    config("      name: db-migrate\n      container: main\n");
    let out = app.berth(&["config", "validate"]);
    assert_eq!(
        code(&out),
        2,
        "config validate finds it too: {}",
        all_output(&out)
    );
    refused(
        &app,
        &["environments.test.migrate.container: Pod/db-migrate in migrate has no container named \"main\"; its containers are cloud-sql-proxy, migrate-main"],
    )
    .await;

    std::fs::write(
        app.dir.join("migrate/kustomization.yaml"),
        "resources: [pods.yaml, upload.yaml, missing.yaml]\n",
    )
    .unwrap();
    config("      name: db-migrate\n");
    refused(&app, &["environments.test.migrate.overlay"]).await;
}

/// The real node's migration: a proxy sidecar that never exits (and
/// ignores SIGTERM: `sleep` as PID 1), listed first; the main container
/// waits for it through a shared volume, reads a secretKeyRef, and exits
/// with `exit_code`.
fn real_pods(exit_code: i32) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: db-migrate
spec:
  nodeSelector: {{berth.dev/real: "true"}}
  tolerations: [{{key: berth.dev/real, operator: Exists, effect: NoSchedule}}]
  volumes: [{{name: shared, emptyDir: {{}}}}]
  containers:
    - name: cloud-sql-proxy
      image: 127.0.0.1:25000/workbench/migrate:latest
      command: [sh, -c, "echo proxy up > /shared/proxy; exec sleep infinity"]
      volumeMounts: [{{name: shared, mountPath: /shared}}]
    - name: migrate-main
      image: 127.0.0.1:25000/workbench/migrate:latest
      command:
        - sh
        - -c
        - 'until [ -e /shared/proxy ]; do sleep 0.1; done; [ "$DB_PASSWORD" = s3cret ] && echo "migrated through the $(cat /shared/proxy)"; exit {exit_code}'
      env:
        - name: DB_PASSWORD
          valueFrom: {{secretKeyRef: {{name: db, key: password}}}}
      volumeMounts: [{{name: shared, mountPath: /shared}}]
"#
    )
}

/// A namespace with the `db` Secret, and berth.yaml whose overlay is one
/// ConfigMap and whose migration is `migrate/db-migrate`.
struct RealMigration {
    dir: std::path::PathBuf,
    namespace: String,
    _cleanup: [Cleanup; 2],
}

impl RealMigration {
    async fn new(client: &kube::Client, prefix: &str) -> RealMigration {
        let namespace = namespace(client, prefix).await;
        let dir = std::env::temp_dir().join(&namespace);
        let cleanup = [
            Cleanup::Namespace(namespace.clone()),
            Cleanup::Dir(dir.clone()),
        ];
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"}, "stringData": {"password": "s3cret"}
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .create(&Default::default(), &secret)
            .await
            .unwrap();
        let overlay = dir.join("overlay");
        std::fs::create_dir_all(&overlay).unwrap();
        std::fs::write(
            overlay.join("kustomization.yaml"),
            "resources: [settings.yaml]\n",
        )
        .unwrap();
        std::fs::write(
            overlay.join("settings.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
        )
        .unwrap();
        let config = test_config(&["migrate"], &namespace, &overlay, "90s");
        std::fs::write(
            dir.join("berth.yaml"),
            format!(
                "{config}    migrate:\n      overlay: migrate\n      name: db-migrate\n      container: migrate-main\n      deadline: 5m\n"
            ),
        )
        .unwrap();
        RealMigration {
            dir,
            namespace,
            _cleanup: cleanup,
        }
    }

    /// Deploy the example app's images with the main container exiting
    /// `exit_code`; `native: false` runs berth as on a cluster without
    /// native sidecars.
    fn deploy(&self, exit_code: i32, native: bool) -> Output {
        write_migrate_dir(
            &self.dir,
            &[
                ("pods.yaml", &real_pods(exit_code)),
                ("upload.yaml", UPLOAD_POD),
            ],
        );
        let mut command = berth_command(
            &self.dir.join("berth.yaml"),
            &repo_root(),
            &[
                "advanced-deploy",
                "test",
                Release::GoodA.sha(),
                "--output",
                "json",
            ],
        );
        if !native {
            command.env("BERTH_NATIVE_SIDECARS", "0");
        }
        command.output().unwrap()
    }
}

/// The migration output and the ConfigMap of a deploy that succeeded.
async fn proceeded(client: &kube::Client, ns: &str, out: &Output) {
    let output = all_output(out);
    assert_eq!(code(out), 0, "{output}");
    assert!(output.contains("migrated through the proxy up"), "{output}");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    assert!(
        maps.get_opt("settings").await.unwrap().is_some(),
        "the deploy went on"
    );
}

/// A deploy whose main container exited 3: failed on that, not at the
/// deadline, and the app not applied.
async fn failed_on_exit_3(client: &kube::Client, ns: &str, out: &Output) {
    let output = all_output(out);
    assert_eq!(code(out), 1, "{output}");
    let failure = &report(out)["failure"];
    assert_eq!(failure["reason"], "ContainerFailed", "{output}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("container \"migrate-main\" exited with code 3"),
        "{output}"
    );
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    assert!(
        maps.get_opt("settings").await.unwrap().is_none(),
        "nothing applied"
    );
}

#[tokio::test]
async fn on_the_real_node_native_sidecars_end_with_the_main_container() {
    let client = local_env().kube().await;
    let env = RealMigration::new(&client, "mo-native").await;
    let out = env.deploy(3, true);
    failed_on_exit_3(&client, &env.namespace, &out).await;
    assert!(
        all_output(&out).contains("sidecars cloud-sql-proxy made native sidecars"),
        "{}",
        all_output(&out)
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &env.namespace);
    assert_eq!(
        jobs.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "the failed Job is kept: its native sidecar ends with it"
    );

    let out = env.deploy(0, true);
    proceeded(&client, &env.namespace, &out).await;
}

#[tokio::test]
async fn on_a_cluster_without_native_sidecars_berth_ends_them() {
    let client = local_env().kube().await;
    let env = RealMigration::new(&client, "mo-ended").await;
    let out = env.deploy(3, false);
    failed_on_exit_3(&client, &env.namespace, &out).await;
    let output = all_output(&out);
    assert!(
        output.contains("ended sidecar cloud-sql-proxy after the migration exited"),
        "{output}"
    );
    assert!(
        output.contains("was deleted to end its sidecars"),
        "{output}"
    );

    let out = env.deploy(0, false);
    proceeded(&client, &env.namespace, &out).await;
    assert!(
        all_output(&out).contains("ended sidecar cloud-sql-proxy after the migration exited"),
        "{}",
        all_output(&out)
    );
}
