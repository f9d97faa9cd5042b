//! The berth.yaml model, its JSON Schema, and validation.
//!
//! [`locate`] finds berth.yaml (from the current directory up to the
//! repository's root, like git); [`Config::load`] reads, parses and checks
//! all of it, [`Config::load_for`] the file and the environments a command
//! touches. Every error is an input error (exit 2) naming the file, the key
//! and the fix. Relative paths in the file resolve against berth.yaml's
//! directory.
//!
//! A migration's image must also be listed in `images`: `images` is the one
//! list of repositories CI builds and tags with the SHA, so the registry check
//! before a deploy covers the migration image too.

mod file;
mod locate;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::input_error;
use crate::output::Output;
use file::ConfigFile;
pub use locate::locate;
use validate::Problem;

/// Which environments loading berth.yaml checks.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every environment: a problem anywhere is an error (`berth config validate`).
    All,
    /// Only these (the ones a command touches): another environment with
    /// problems is left out of [`Config::environments`] and kept in
    /// [`Config::skipped`], so one environment's mistake never blocks
    /// another's commands.
    Environments(&'a [&'a str]),
}

impl Scope<'_> {
    /// Whether a problem of environment `name` is an error.
    fn checks(&self, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Environments(names) => names.contains(&name),
        }
    }
}

/// The app and its environments, as described by berth.yaml, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The application's name (a DNS label).
    pub app: String,
    /// Image repositories (no tag) whose tag becomes the SHA on deploy.
    pub images: Vec<String>,
    /// Where CI reports whether a commit passed, if configured.
    pub github: Option<GitHub>,
    /// How many release records to keep per environment.
    pub releases_kept: usize,
    /// The environments, by name.
    pub environments: BTreeMap<String, Environment>,
    /// The app's cached render results, if configured.
    pub render_cache: Option<RenderCache>,
    /// Named maintenance tasks, by name.
    pub tasks: BTreeMap<String, Task>,
    /// berth.yaml's directory (absolute); relative paths in berth.yaml resolve against it.
    pub dir: PathBuf,
    /// berth.yaml, as found or given (named in messages).
    pub path: PathBuf,
    /// Environments with problems that the [`Scope`] did not check, left out
    /// of `environments`: each problem as `key: what is wrong`.
    pub skipped: BTreeMap<String, Vec<String>>,
}

/// A named task from berth.yaml's `tasks:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Where the task runs.
    pub target: TaskTarget,
    /// The command and its arguments from `command` and `args`.
    pub command: Vec<String>,
    /// A file of more arguments (absolute once resolved), read when the task runs.
    pub args_file: Option<PathBuf>,
    /// How long the task may run.
    pub timeout: Duration,
}

/// Where a task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskTarget {
    /// exec in a Ready pod of a Deployment.
    Exec {
        /// The Deployment.
        workload: String,
        /// The container; `None`: the pod's first.
        container: Option<String>,
    },
    /// A one-off pod, as `berth run` starts.
    Pod,
}

/// Where `berth run` takes its one-off pod from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSettings {
    /// The Deployment whose pod template the one-off pod copies.
    pub workload: String,
    /// The container the command runs in; `None`: the template's first.
    pub container: Option<String>,
    /// How long a one-off command may run, pod start included.
    pub timeout: Duration,
}

/// The GitHub repository whose commit checks decide what may be deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHub {
    /// `owner/name`.
    pub repo: String,
    /// The branch whose newest passing commit goes to staging (default `master`).
    pub branch: String,
    /// Names of the checks that must all have passed; `None`: every check
    /// reported on the commit (and at least one).
    pub required_checks: Option<Vec<String>>,
    /// Checks whose failure does not block a commit (`allow_failures`).
    pub allow_failures: Vec<String>,
    /// Conclusions that count as passed besides `success`.
    pub also_passing: Vec<Conclusion>,
    /// How many of the branch's newest commits to consider.
    pub depth: usize,
}

/// A check conclusion berth may be told to count as passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    /// The check ran and chose not to pass or fail.
    Neutral,
    /// The check did not run.
    Skipped,
}

impl Conclusion {
    /// The name GitHub gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Neutral => "neutral",
            Conclusion::Skipped => "skipped",
        }
    }
}

/// One environment: where it runs and how its objects are rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The kubeconfig context; `None` means the current context.
    pub context: Option<String>,
    /// The namespace every namespaced object is applied to.
    pub namespace: String,
    /// Dangerous operations here ask first (`protected:`, default: true
    /// for `production`): see [`crate::confirm`].
    pub protected: bool,
    /// How the environment's objects are rendered.
    pub source: Source,
    /// The migration Job run before workloads change, if berth.yaml builds
    /// it (`migrate.image`) or names the repository's own manifests
    /// (`migrate.overlay`); else the overlay's template, if any.
    pub migrate: Option<MigrationSource>,
    /// The migration framework (`migrate.framework`), for schema rollback.
    pub schema: Option<SchemaSettings>,
    /// Rollout limits.
    pub rollout: RolloutSettings,
    /// Static assets uploaded at each deploy, if any.
    pub assets: Option<Assets>,
    /// How berth reaches the database, if configured.
    pub database: Option<Database>,
    /// The maintenance page and the Services switched to it.
    pub maintenance: Maintenance,
    /// Where `berth run` takes its one-off pod from, if configured.
    pub run: Option<RunSettings>,
    /// Database backups, if configured.
    pub backups: Option<Backups>,
    /// How many failed migration Jobs the next deploy keeps, newest first
    /// (`migrate.keep_failed`, default 3).
    pub failed_jobs_kept: u32,
}

/// How many failed migration Jobs are kept when berth.yaml does not say.
pub const DEFAULT_KEEP_FAILED: u32 = 3;

/// Where the app caches render results, and the lock its writers hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderCache {
    /// The SQL listing every workflow id, in order.
    pub list_sql: String,
    /// The SQL taking one workflow's lock (`$1`: its id).
    pub lock_sql: String,
    /// How long to wait for a workflow's lock before skipping it for now.
    pub lock_timeout: std::time::Duration,
    /// The SQL resetting one workflow's cache columns (`$1`: its id).
    pub clear_sql: String,
    /// The SQL counting one workflow's rows with a cached result (`$1`: its id).
    pub count_sql: String,
    /// The bucket per environment name.
    pub buckets: BTreeMap<String, String>,
    /// The per-workflow key prefix, `{workflow}` standing for the id.
    pub prefix: String,
    /// The S3 endpoint; `None`: `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// The region; `None`: the credential chain's.
    pub region: Option<String>,
    /// A Secret with S3 credentials, in the environment's namespace.
    pub credentials_secret: Option<String>,
}

impl RenderCache {
    /// The key prefix of workflow `id`'s objects.
    pub fn prefix_of(&self, id: i64) -> String {
        self.prefix.replace("{workflow}", &id.to_string())
    }
}

/// The pod berth reaches the database through, and its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// The Deployment whose Ready pod can reach the database.
    pub workload: String,
    /// The container `psql` runs in; `None`: the pod's first.
    pub container: Option<String>,
    /// A Secret of libpq variables (`PGUSER`, `PGPASSWORD`, ...); `None`:
    /// the container's own environment.
    pub secret: Option<String>,
    /// The pod's port that reaches PostgreSQL, for port-forwards.
    pub port: u16,
}

/// Database backups: the bucket, the image that runs them, the schedule,
/// retention and drills. Backups need `database.secret`, whose libpq
/// variables the backup pods read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backups {
    /// The bucket.
    pub bucket: String,
    /// The key prefix: empty, or ending in `/` (default: `<env>/`).
    pub prefix: String,
    /// The S3 endpoint as berth reaches it; `None`: `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// The region; `None`: the credential chain's, else us-east-1.
    pub region: Option<String>,
    /// The Secret with S3 credentials the backup pods use.
    pub credentials_secret: String,
    /// berth's image with the PostgreSQL client.
    pub image: String,
    /// The scheduled backup's cron expression, if any.
    pub schedule: Option<String>,
    /// The CronJobs' time zone, if set.
    pub time_zone: Option<String>,
    /// How many backups of each kind are kept.
    pub retention: Retention,
    /// When a deploy backs up before its migration.
    pub before_migrate: BeforeMigrate,
    /// How long one backup, restore or drill pod may run.
    pub timeout: Duration,
    /// Restore drills.
    pub drill: Drill,
}

/// Retention counts per kind of backup (see `backups.retention` in the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Scheduled backups kept one per day.
    pub daily: u32,
    /// Scheduled backups kept one per ISO week.
    pub weekly: u32,
    /// Scheduled backups kept one per calendar month.
    pub monthly: u32,
    /// Manual backups kept.
    pub manual: u32,
    /// Pre-migration backups kept.
    pub pre_migrate: u32,
    /// Pre-restore safety backups kept.
    pub pre_restore: u32,
}

/// The migration framework and how to reach it in the migration image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaSettings {
    /// The framework `migrate.framework` names.
    pub framework: Framework,
    /// How the migration image runs Django's manage.py (`migrate.manage`).
    pub manage: Vec<String>,
}

/// A migration framework, as `migrate.framework` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// Django: schema rollback supported.
    Django,
    /// Rails.
    Rails,
    /// Alembic.
    Alembic,
    /// Flyway.
    Flyway,
    /// Laravel.
    Laravel,
    /// Another framework.
    Other,
}

impl Framework {
    /// The name berth.yaml spells it with.
    pub fn as_str(self) -> &'static str {
        match self {
            Framework::Django => "django",
            Framework::Rails => "rails",
            Framework::Alembic => "alembic",
            Framework::Flyway => "flyway",
            Framework::Laravel => "laravel",
            Framework::Other => "other",
        }
    }
}

/// When a deploy backs the database up before its migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeMigrate {
    /// Before every migration.
    Always,
    /// Only when the migration has something to apply.
    Pending,
    /// Never.
    Never,
}

/// Restore drills.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drill {
    /// The scheduled drill's cron expression, if any.
    pub schedule: Option<String>,
    /// Smoke queries; each must return true in its first column.
    pub smoke: Vec<String>,
    /// The Secret for the scratch database's server; `None`: `database.secret`.
    pub secret: Option<String>,
}

/// The maintenance page (`berth maintenance ENV on`) and the Services switched to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    /// The Services to switch, by name; `None`: every Service of the
    /// environment that has a selector.
    pub services: Option<Vec<String>>,
    /// The maintenance server's image (nginx).
    pub image: String,
    /// The port served for Services whose `targetPort` is a name.
    pub port: u16,
    /// The `Retry-After` of every 503.
    pub retry_after: Duration,
    /// How long the maintenance server may take to become available.
    pub timeout: Duration,
    /// The page's title unless `--title` gives one.
    pub title: String,
    /// The page's message unless `--message` gives one.
    pub message: String,
}

impl Default for Maintenance {
    /// Every Service, served by nginx, with the default title and message.
    fn default() -> Self {
        let file = file::MaintenanceFile::default();
        Maintenance {
            services: file.services,
            image: file.image,
            port: file.port,
            retry_after: file.retry_after.0,
            timeout: file.timeout.0,
            title: file.title,
            message: file.message,
        }
    }
}

/// Static assets: where a SHA's files come from and the bucket they go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    /// Where the files come from.
    pub from: AssetSource,
    /// The destination bucket.
    pub bucket: String,
    /// The key prefix inside the bucket: empty, or ending in `/`.
    pub prefix: String,
    /// The S3 endpoint URL; `None` means `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// The region; `None` means the credential chain's, else us-east-1.
    pub region: Option<String>,
    /// A Secret in the environment's namespace with the S3 credentials.
    pub credentials_secret: Option<String>,
    /// Cache-Control of files without a content hash in their name.
    pub cache_control: String,
    /// Cache-Control of files with a content hash in their name.
    pub immutable_cache_control: String,
    /// Upload `NAME.gz` variants of text files.
    pub gzip: bool,
    /// Upload `NAME.br` variants of text files.
    pub brotli: bool,
    /// Requests to S3 in flight at once.
    pub concurrency: usize,
}

/// Where a SHA's static files come from. `{sha}` is substituted by [`AssetSource::for_sha`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetSource {
    /// The files under `path` in the image `<repository>:<SHA>`.
    Image {
        /// The image repository, without tag.
        repository: String,
        /// An absolute directory inside the image.
        path: String,
    },
    /// A local directory (absolute once resolved).
    Dir(PathBuf),
    /// A prefix in a build bucket, copied server-side.
    S3 {
        /// The build bucket.
        bucket: String,
        /// The key prefix: empty, or ending in `/`.
        prefix: String,
    },
}

impl AssetSource {
    /// The source with `{sha}` replaced by `sha`.
    pub fn for_sha(&self, sha: &str) -> AssetSource {
        match self {
            AssetSource::Image { .. } => self.clone(),
            AssetSource::Dir(dir) => {
                AssetSource::Dir(PathBuf::from(dir.to_string_lossy().replace("{sha}", sha)))
            }
            AssetSource::S3 { bucket, prefix } => AssetSource::S3 {
                bucket: bucket.replace("{sha}", sha),
                prefix: prefix.replace("{sha}", sha),
            },
        }
    }

    /// Where the files come from, for messages.
    pub fn describe(&self, sha: &str) -> String {
        match self.for_sha(sha) {
            AssetSource::Image { repository, path } => format!("{repository}:{sha} at {path}"),
            AssetSource::Dir(dir) => dir.display().to_string(),
            AssetSource::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

/// How an environment's objects are rendered. Paths are resolved (berth.yaml's directory joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A kustomize directory, rendered with `kubectl kustomize` or a
    /// standalone kustomize (`render.kustomize`).
    Kustomize {
        /// The directory holding kustomization.yaml.
        overlay: PathBuf,
        /// Which kustomize renders it.
        kustomize: Kustomize,
    },
    /// A helm chart, rendered with `helm template`.
    Helm {
        /// Where the chart comes from.
        chart: Chart,
        /// Values files, in the order helm receives them.
        values: Vec<PathBuf>,
        /// Single values (`set:`), by helm key path (`image.tag`), each
        /// passed as `--set-json KEY=JSON` after the values files.
        set: BTreeMap<String, serde_json::Value>,
        /// The release name (default: the app's name).
        release: String,
    },
}

/// Where a helm chart comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chart {
    /// A chart directory (holding Chart.yaml), resolved against berth.yaml's directory.
    Dir(PathBuf),
    /// A chart in an OCI registry, pulled once per version.
    Oci {
        /// `oci://REGISTRY/REPO/NAME`, without tag or digest.
        reference: String,
        /// The exact chart version.
        version: String,
        /// The registry is this machine (127.0.0.1, localhost): helm talks
        /// plain http to it (`--plain-http`), never to another host.
        plain_http: bool,
    },
    /// A chart in a chart repository (a server of index.yaml), pulled once per version.
    Repo {
        /// The repository's URL.
        url: String,
        /// The chart's name in the repository.
        name: String,
        /// The exact chart version.
        version: String,
    },
}

impl Chart {
    /// The chart as people name it: its directory (relative to `base`),
    /// `oci://REGISTRY/REPO/NAME 1.2.3`, or `NAME 1.2.3 from URL`.
    pub fn describe(&self, base: &Path) -> String {
        match self {
            Chart::Dir(dir) => dir.strip_prefix(base).unwrap_or(dir).display().to_string(),
            Chart::Oci {
                reference, version, ..
            } => format!("{reference} {version}"),
            Chart::Repo { url, name, version } => format!("{name} {version} from {url}"),
        }
    }
}

/// Which kustomize renders an environment's overlays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kustomize {
    /// The one embedded in kubectl: `kubectl kustomize DIR`.
    Kubectl,
    /// A standalone binary (`render.kustomize`): `<binary> build DIR`. A
    /// bare name is looked up in PATH; a path is resolved against
    /// berth.yaml's directory.
    Standalone(PathBuf),
}

/// Where an environment's migration Job comes from, when berth.yaml says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationSource {
    /// Built from `migrate.image`, `command`, `args`, ...
    Built(Migrate),
    /// The repository's own Pod or Job (`migrate.overlay`).
    Overlay(MigrateOverlay),
}

impl MigrationSource {
    /// The command whose non-zero exit says migrations are pending, if any.
    pub fn pending_check(&self) -> Option<&Vec<String>> {
        match self {
            MigrationSource::Built(built) => built.pending_check.as_ref(),
            MigrationSource::Overlay(overlay) => overlay.pending_check.as_ref(),
        }
    }
}

/// The migration as the repository's own manifests declare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateOverlay {
    /// The kustomize directory or chart that renders the migration.
    pub source: Source,
    /// The Pod or Job that migrates; `None`: the only one rendered.
    pub name: Option<String>,
    /// The container whose exit decides; `None`: the first.
    pub container: Option<String>,
    /// How long the migration may run (default 10 minutes).
    pub deadline: Duration,
    /// The command whose non-zero exit says migrations are pending, if any.
    pub pending_check: Option<Vec<String>>,
}

/// The database migration, run as a Job at `<image>:<SHA>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrate {
    /// The image repository (no tag); always one of [`Config::images`].
    pub image: String,
    /// The container's command; empty means the image's entrypoint.
    pub command: Vec<String>,
    /// The container's arguments.
    pub args: Vec<String>,
    /// How long the migration may run (default 10 minutes).
    pub deadline: Duration,
    /// Secrets whose keys become environment variables.
    pub env_from_secrets: Vec<String>,
    /// The ServiceAccount to run as; `None` means the namespace's default.
    pub service_account: Option<String>,
    /// The command whose non-zero exit says migrations are pending, if any.
    pub pending_check: Option<Vec<String>>,
}

/// Rollout limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutSettings {
    /// How long all workloads together may take to become healthy (default 10 minutes).
    pub timeout: Duration,
    /// A new pod unschedulable this long fails the deploy (default 5 minutes).
    pub unschedulable_after: Duration,
    /// A new pod running but failing its readiness probe this long fails the
    /// deploy (default 2 minutes).
    pub unready_after: Duration,
}

impl Config {
    /// Read, parse and check all of the berth.yaml at `path`.
    ///
    /// Every error is an input error naming the file, the key (with line and
    /// column where the YAML parser knows them) and the fix.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        Config::parse_in(&read(path)?, path, Scope::All)
    }

    /// Read berth.yaml at `path` for a command touching the environments
    /// `envs`: the whole file's syntax and keys are checked, and those
    /// environments; another environment's problems are one warning on
    /// `out` (`berth config validate` lists them), not an error.
    pub fn load_for(path: &Path, envs: &[&str], out: &Output) -> anyhow::Result<Config> {
        let config = Config::parse_in(&read(path)?, path, Scope::Environments(envs))?;
        // A command may load berth.yaml twice (a rollback, then its deploy):
        // the warning is said once.
        static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        if let Some(warning) = config.skipped_warning() {
            let mut said = SAID
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !said.contains(&warning) {
                out.warn(&warning);
                said.push(warning);
            }
        }
        Ok(config)
    }

    /// Parse and check all of berth.yaml's `text`, read from `path`: the
    /// path is named in messages, and overlays are found relative to its
    /// directory. Every error is an input error, as with [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        Config::parse_in(text, path, Scope::All)
    }

    /// Parse berth.yaml's `text`, read from `path`, checking the
    /// environments `scope` names, as [`Config::parse`] does.
    pub fn parse_in(text: &str, path: &Path, scope: Scope) -> anyhow::Result<Config> {
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|error| yaml_error(path, &error))?;
        if value.is_null() {
            return Err(input_error(format!(
                "{} is empty; describe the app and its environments \
                 (`app:`, `images:`, `environments:`); `{berth} config schema` describes every key",
                path.display(),
                berth = crate::program::name()
            )));
        }
        let file: ConfigFile =
            serde_norway::from_str(text).map_err(|error| yaml_error(path, &error))?;
        let dir = std::path::absolute(path)
            .ok()
            .and_then(|absolute| absolute.parent().map(Path::to_path_buf))
            .ok_or_else(|| {
                input_error(format!(
                    "cannot tell which directory {} is in",
                    path.display()
                ))
            })?;
        validate::validate(file, path, &dir, &scope)
            .map_err(|problems| problems_error(path, &problems))
    }

    /// The one warning line about [`Config::skipped`] environments, if any.
    pub fn skipped_warning(&self) -> Option<String> {
        let problems = self.skipped.values().next()?;
        let names: Vec<String> = self
            .skipped
            .keys()
            .map(|name| format!("`{name}`"))
            .collect();
        let count: usize = self.skipped.values().map(Vec::len).sum();
        let subject = if names.len() == 1 {
            format!("environment {} has", names[0])
        } else {
            format!("environments {} have", names.join(", "))
        };
        let more = match count {
            1 => String::new(),
            2 => "; and 1 more".to_owned(),
            n => format!("; and {} more", n - 1),
        };
        Some(format!(
            "{}: {subject} {} ({}{more}); `{berth} config validate` lists {}",
            self.path.display(),
            if count == 1 { "a problem" } else { "problems" },
            problems[0],
            if count == 1 { "it" } else { "them" },
            berth = crate::program::name()
        ))
    }

    /// The environment called `name`, or an input error listing the known ones.
    pub fn environment(&self, name: &str) -> anyhow::Result<&Environment> {
        if let Some(problems) = self.skipped.get(name) {
            return Err(input_error(format!(
                "{}: environment `{name}` has problems: {}; `{berth} config validate` says how \
                 to fix them",
                self.path.display(),
                problems.join("; "),
                berth = crate::program::name()
            )));
        }
        self.environments.get(name).ok_or_else(|| {
            let known: Vec<String> = self
                .environments
                .keys()
                .chain(self.skipped.keys())
                .map(|k| format!("`{k}`"))
                .collect();
            input_error(format!(
                "no environment `{name}` in berth.yaml (it has {}); use one of those, \
                 or add it under `environments:` in berth.yaml",
                known.join(", ")
            ))
        })
    }

    /// The task called `name`, or an input error showing how to declare it.
    pub fn task(&self, name: &str) -> anyhow::Result<&Task> {
        self.tasks.get(name).ok_or_else(|| {
            let known = if self.tasks.is_empty() {
                "it declares no task".to_owned()
            } else {
                let names: Vec<String> = self.tasks.keys().map(|k| format!("`{k}`")).collect();
                format!("it has {}", names.join(", "))
            };
            input_error(format!(
                "no task `{name}` in berth.yaml ({known}); declare it under `tasks:`, e.g.\n\n\
                 tasks:\n  {name}:\n    workload: frontend        # a Deployment whose Ready pod runs it (or `pod: true`)\n    \
                 command: [./manage.py, import-modules]\n    \
                 args_file: tasks/{name}.txt   # optional: one argument per line\n"
            ))
        })
    }

    /// berth.yaml's JSON Schema (draft-07, which editors support best).
    pub fn schema() -> serde_json::Value {
        let schema = schemars::generate::SchemaSettings::draft07()
            .into_generator()
            .into_root_schema_for::<ConfigFile>();
        schema.to_value()
    }
}

impl Environment {
    /// Where `berth run` takes its one-off pod from: `run:`, else the
    /// `database.workload` (and container), else an input error showing
    /// how to declare it. `env` is the environment's name, for the message.
    pub fn run_settings(&self, env: &str) -> anyhow::Result<RunSettings> {
        if let Some(run) = &self.run {
            return Ok(run.clone());
        }
        if let Some(database) = &self.database {
            return Ok(RunSettings {
                workload: database.workload.clone(),
                container: database.container.clone(),
                timeout: Duration::from_secs(3600),
            });
        }
        Err(input_error(format!(
            "environment `{env}` does not say which workload one-off pods copy; \
             pass --workload NAME, or add to berth.yaml:\n\n\
             environments:\n  {env}:\n    run:\n      workload: frontend   # a Deployment: its image, env, volumes\n      \
             container: frontend  # optional, default: the first\n"
        )))
    }
}

/// Parse a git SHA: 7 to 40 hexadecimal characters, returned lowercase.
/// An abbreviation is expanded to the full SHA by [`crate::commit::expand`].
pub fn parse_sha(text: &str) -> anyhow::Result<String> {
    let sha = text.trim();
    if (7..=40).contains(&sha.len()) && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(sha.to_ascii_lowercase())
    } else {
        Err(input_error(format!(
            "{text:?} is not a git commit SHA; give 7 to 40 hexadecimal characters, \
             e.g. the output of `git rev-parse HEAD` or its first 7 characters"
        )))
    }
}

/// How many characters of a SHA berth shows people: one length everywhere
/// in human output (JSON keeps the full SHA).
pub const SHORT_SHA_LEN: usize = 12;

/// The first [`SHORT_SHA_LEN`] characters of a SHA, as berth shows it to people.
pub fn short_sha(sha: &str) -> &str {
    sha_prefix(sha, SHORT_SHA_LEN)
}

/// At most the first `len` characters of `sha`. Counted in characters, not
/// bytes: a release record or a live image tag may hold anything someone
/// wrote there by hand.
pub fn sha_prefix(sha: &str, len: usize) -> &str {
    sha.char_indices()
        .nth(len)
        .map_or(sha, |(end, _)| &sha[..end])
}

/// An input error for YAML that serde could not read into [`ConfigFile`].
fn yaml_error(path: &Path, error: &serde_norway::Error) -> anyhow::Error {
    let mut message = error.to_string();
    let mut place = String::new();
    if let Some(location) = error.location() {
        let at = format!("line {} column {}", location.line(), location.column());
        message = message.replacen(&format!(" at {at}"), "", 1);
        place = format!(" {at}");
    }
    let berth = crate::program::name();
    let fix = if message.contains("is not a duration") || message.contains("longest duration") {
        // duration::parse's message already says how to write one.
        None
    } else if message.contains("unknown field") {
        Some(format!(
            "remove the key or fix its spelling; the keys allowed there are listed above, \
             and `{berth} config schema` prints them all"
        ))
    } else if message.contains("missing field") {
        Some(format!(
            "add the missing key; `{berth} config schema` describes every key"
        ))
    } else if message.contains("invalid type") || message.contains("invalid value") {
        Some(format!(
            "write a value of the expected type; `{berth} config schema` describes every key"
        ))
    } else {
        Some(
            "fix the YAML there (indentation, an unclosed quote or bracket, a stray character)"
                .to_string(),
        )
    };
    let mut text = format!("{}{place}: {message}", path.display());
    if let Some(fix) = fix {
        text.push_str("; ");
        text.push_str(&fix);
    }
    input_error(text)
}

/// The text of berth.yaml at `path`, or an input error saying how to point at it.
fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|error| {
        input_error(format!(
            "cannot read {}: {error}; point --config (or BERTH_CONFIG) at berth.yaml, \
             or leave both out to use the berth.yaml found from the current directory up",
            path.display()
        ))
    })
}

/// An input error listing every problem found in berth.yaml.
fn problems_error(path: &Path, problems: &[Problem]) -> anyhow::Error {
    let lines: Vec<String> = problems.iter().map(|p| p.line(path)).collect();
    input_error(lines.join("\n"))
}

#[cfg(test)]
mod tests;
