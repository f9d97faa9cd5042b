//! The real example app (example/app) on the local cluster's real node, for
//! one test: its releases, built once per test binary by
//! `example/build-images`, and an environment of the test's own (namespace,
//! PostgreSQL role and database, the `db-credentials` Secret, a throw-away
//! berth.yaml whose overlay wraps the repo's `overlays/staging`).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::{Api, Client};

use super::{
    Cleanup, berth_command, code, load, local_env, namespace, poll, relative, repo_root, stderr,
    unique_name,
};

/// A release of the example app: its SHA, and how its source differs from
/// example/app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// example/app as it is.
    GoodA,
    /// example/app as it is, at another SHA: a new release to roll to.
    GoodB,
    /// gunicorn cannot read its configuration: the frontend exits non-zero.
    Crash,
    /// `/healthz` answers 503: the pods run and never become Ready.
    Unready,
    /// A new migration raises: the migration Job fails.
    FailedMigration,
    /// example/variants/reversible: `0005_module_description` (a column)
    /// and `0006_tag` (a table), both reversible.
    Reversible,
    /// example/variants/irreversible: `0005_uppercase_names`, a data
    /// migration with no reverse (workflow names in capitals).
    Irreversible,
    /// example/variants/failing-unapply: `0005_workflow_name_index`, whose
    /// unapply raises while the table [`UNAPPLY_MARKER`] exists, and
    /// `0006_workflow_note`.
    FailingUnapply,
    /// [`Release::Reversible`]'s migrations, and [`Release::Unready`]'s
    /// `/healthz`: the migration succeeds, the rollout fails.
    ReversibleUnready,
}

/// What the crash release's gunicorn configuration raises, and so prints.
pub const CRASH_MESSAGE: &str = "broken on purpose: the app cannot load";
/// What the failing migration raises.
pub const MIGRATION_MESSAGE: &str = "migration failed on purpose";
/// The table whose presence makes [`Release::FailingUnapply`]'s
/// `0005_workflow_name_index` fail to unapply.
pub const UNAPPLY_MARKER: &str = "berth_block_unapply";

impl Release {
    const ALL: [Release; 9] = [
        Release::GoodA,
        Release::GoodB,
        Release::Crash,
        Release::Unready,
        Release::FailedMigration,
        Release::Reversible,
        Release::Irreversible,
        Release::FailingUnapply,
        Release::ReversibleUnready,
    ];

    /// The commit SHA its images are tagged with (and `/version` answers);
    /// the first call for a release builds and pushes its images. SHAs are
    /// new for each test binary's run, so runs side by side never overwrite
    /// each other's tags.
    pub fn sha(self) -> &'static str {
        static BUILT: [OnceLock<String>; Release::ALL.len()] =
            [const { OnceLock::new() }; Release::ALL.len()];
        let index = Release::ALL.iter().position(|r| *r == self).unwrap();
        BUILT[index].get_or_init(|| {
            let sha = format!("{}{index:x}ee", run_id());
            build(self, &sha);
            sha
        })
    }

    /// The directory under example/variants whose files it adds to example/app.
    fn variant(self) -> Option<&'static str> {
        match self {
            Release::Reversible | Release::ReversibleUnready => Some("reversible"),
            Release::Irreversible => Some("irreversible"),
            Release::FailingUnapply => Some("failing-unapply"),
            _ => None,
        }
    }

    /// Change a copy of example/app at `dir` into this release's source.
    fn edit(self, dir: &Path) {
        let append = |file: &str, text: &str| {
            let path = dir.join(file);
            let mut source = std::fs::read_to_string(&path).unwrap();
            source.push_str(text);
            std::fs::write(path, source).unwrap();
        };
        if let Some(variant) = self.variant() {
            copy_tree(&repo_root().join("example/variants").join(variant), dir);
        }
        match self {
            Release::GoodA
            | Release::GoodB
            | Release::Reversible
            | Release::Irreversible
            | Release::FailingUnapply => {}
            // gunicorn reads ./gunicorn.conf.py (in /app) first: it prints
            // the traceback, the error last, and exits 1.
            Release::Crash => std::fs::write(
                dir.join("gunicorn.conf.py"),
                format!("raise RuntimeError({CRASH_MESSAGE:?})\n"),
            )
            .unwrap(),
            Release::Unready | Release::ReversibleUnready => append(
                "workbench/views.py",
                "\n\ndef healthz(request):\n    return HttpResponse(\"broken\", status=503)\n",
            ),
            Release::FailedMigration => std::fs::write(
                dir.join("workbench/migrations/0099_fail.py"),
                format!(
                    "from django.db import migrations\n\n\ndef fail(apps, schema_editor):\n    \
                     raise RuntimeError({MIGRATION_MESSAGE:?})\n\n\n\
                     class Migration(migrations.Migration):\n    \
                     dependencies = [(\"workbench\", \"{}\")]\n    \
                     operations = [migrations.RunPython(fail)]\n",
                    last_migration(dir)
                ),
            )
            .unwrap(),
        }
    }
}

/// The newest migration of the app at `dir` (by its number), e.g. `0004_module`.
fn last_migration(dir: &Path) -> String {
    std::fs::read_dir(dir.join("workbench/migrations"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".py") && n.as_bytes()[0].is_ascii_digit())
        .max()
        .expect("example/app has migrations")
        .trim_end_matches(".py")
        .to_owned()
}

/// This test binary's run: a prefix of hex digits for its releases' SHAs.
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{:08x}{:04x}", std::process::id(), nanos % 0x10000)
    })
}

/// Build `release`'s images at `sha` with example/build-images.
fn build(release: Release, sha: &str) {
    let source = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("example/app"), source.path());
    release.edit(source.path());
    let out = local_env()
        .command(repo_root().join("example/build-images"))
        .arg("--source")
        .arg(source.path())
        .arg(sha)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "example/build-images {release:?} {sha}: {}",
        stderr(&out)
    );
}

/// Copy the files under `from` to `to`, leaving out caches.
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let relative = entry.path().strip_prefix(from).unwrap();
        if relative
            .components()
            .any(|c| c.as_os_str() == "__pycache__")
        {
            continue;
        }
        let target = to.join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The example app in an environment `test` of the test's own.
pub struct RealApp {
    /// The directory holding berth.yaml and `overlay/`.
    pub dir: PathBuf,
    /// The environment's namespace.
    pub namespace: String,
    /// The app's database (its role has the same name).
    pub database: String,
    /// A superuser connection URL to the app's database, for checks.
    pub database_url: String,
    /// Removed in order when dropped: the namespace, the database, the role, the directory.
    _cleanup: [Cleanup; 4],
}

impl RealApp {
    /// A namespace, a role and database, the `db-credentials` Secret, and
    /// berth.yaml with `rollout.unready_after: 30s` (so an unready release
    /// fails well within the 5 minute timeout).
    pub async fn new(client: &Client, prefix: &str) -> RealApp {
        let namespace = namespace(client, prefix).await;
        let database = unique_name(prefix).replace('-', "_");
        let dir = std::env::temp_dir().join(&namespace);
        let cleanup = [
            Cleanup::Namespace(namespace.clone()),
            Cleanup::Database(database.clone()),
            Cleanup::Role(database.clone()),
            Cleanup::Dir(dir.clone()),
        ];
        let env = local_env();
        let password = format!("pw-{database}");
        let postgres = env.postgres().await;
        for statement in [
            format!("CREATE ROLE {database} LOGIN PASSWORD '{password}'"),
            format!("CREATE DATABASE {database} OWNER {database}"),
        ] {
            postgres
                .batch_execute(&statement)
                .await
                .expect("create the app's role and database");
        }
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-credentials"},
            "stringData": {
                "PGHOST": env.var("BERTH_NODE_ADDRESS"),
                "PGPORT": "25432",
                "PGUSER": database,
                "PGPASSWORD": password,
                "PGDATABASE": database,
            }
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .create(&Default::default(), &secret)
            .await
            .expect("create the db-credentials Secret");
        let overlay = dir.join("overlay");
        std::fs::create_dir_all(&overlay).unwrap();
        let staging = relative(&overlay, &repo_root().join("overlays/staging"));
        std::fs::write(
            overlay.join("kustomization.yaml"),
            format!("resources: [{}]\n", staging.display()),
        )
        .unwrap();
        std::fs::write(dir.join("berth.yaml"), config(&namespace, &overlay)).unwrap();
        let (server, _) = env.var("DATABASE_URL").rsplit_once('/').unwrap();
        RealApp {
            database_url: format!("{server}/{database}"),
            dir,
            namespace,
            database,
            _cleanup: cleanup,
        }
    }

    /// `berth --config berth.yaml ARGS`, run to its end from the repository root.
    pub fn berth(&self, args: &[&str]) -> Output {
        berth_command(&self.dir.join("berth.yaml"), &repo_root(), args)
            .output()
            .unwrap()
    }

    /// Like [`RealApp::berth`], off the async runtime (load keeps running meanwhile).
    pub async fn berth_async(&self, args: &[&str]) -> Output {
        let mut command = berth_command(&self.dir.join("berth.yaml"), &repo_root(), args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    /// Run berth and require exit 0; its output.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.berth(args);
        assert_eq!(code(&out), 0, "berth {args:?}: {}", stderr(&out));
        out
    }

    /// `berth advanced-deploy test SHA` of `release`, required to succeed.
    pub fn deploy(&self, release: Release) -> Output {
        self.ok(&["advanced-deploy", "test", release.sha()])
    }

    /// `http://CLUSTER-IP:PORT/version` of the frontend's Service, once it
    /// answers: after the Service is created, kube-proxy takes a moment to
    /// route its ClusterIP.
    pub async fn serving(&self, client: &Client) -> String {
        let url = self.version_url(client).await;
        poll(
            Duration::from_secs(60),
            "kube-proxy to route the frontend Service",
            async || load::once(&url).await.ok(),
        )
        .await;
        url
    }

    /// `http://CLUSTER-IP:PORT/version` of the frontend's Service.
    async fn version_url(&self, client: &Client) -> String {
        let service = Api::<Service>::namespaced(client.clone(), &self.namespace)
            .get("frontend")
            .await
            .expect("the frontend Service");
        let spec = service.spec.unwrap();
        let ip = spec.cluster_ip.expect("a ClusterIP");
        let port = spec.ports.unwrap()[0].port;
        format!("http://{ip}:{port}/version")
    }

    /// A superuser connection to the app's database.
    pub async fn postgres(&self) -> tokio_postgres::Client {
        super::connect_postgres(&self.database_url).await
    }

    /// Name the migration framework (`migrate: { framework: django }`, the
    /// overlay's own migration Job), so deploys record the schema and
    /// rollbacks bring it back.
    pub fn set_django_migrations(&self) {
        let path = self.dir.join("berth.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replacen(
            "\n    database:\n",
            "\n    migrate: { framework: django }\n    database:\n",
            1,
        );
        assert!(text.contains("framework: django"), "{text}");
        std::fs::write(path, text).unwrap();
    }
}

/// berth.yaml for the app in `namespace`, rendered from `overlay`: the
/// repo's images, database settings and task, a 5 minute rollout timeout.
fn config(namespace: &str, overlay: &Path) -> String {
    let tasks = repo_root().join("tasks/suggested-modules.txt");
    let environment = super::test_config(
        &["frontend", "worker", "cron", "migrate"],
        namespace,
        overlay,
        "5m",
    );
    format!(
        r#"{environment}      unready_after: 30s
    database:
      workload: frontend
      container: frontend
      secret: db-credentials
tasks:
  refresh-suggested-modules:
    workload: frontend
    container: frontend
    command: [python3, manage.py, import-modules]
    args_file: {tasks}
"#,
        tasks = tasks.display(),
    )
}
