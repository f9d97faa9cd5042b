//! The shape of berth.yaml as written: what serde reads and what the JSON
//! Schema describes. [`super::validate`] turns it into the public model.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// A DNS-1123 label, as a JSON Schema pattern (the length limit is separate).
const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// An image repository without tag or digest; a registry `host:port` needs a path after it.
const REPOSITORY: &str = r"^[^/:@\s]+((:[0-9]+)?(/[^/:@\s]+)+)?$";

/// berth.yaml: the app, its images, and its environments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "berth.yaml")]
pub(super) struct ConfigFile {
    /// The application's name, a DNS label (lowercase letters, digits and '-').
    /// berth labels every object it applies `app.kubernetes.io/instance=<app>-<environment>`.
    #[schemars(regex(pattern = DNS_LABEL), length(max = 63))]
    pub app: String,
    /// Image repositories (no tag, no digest) that CI builds for every commit and tags
    /// with the commit's SHA. berth pins every container whose image repository is
    /// listed here to `<repository>:<SHA>`.
    #[schemars(length(min = 1), inner(regex(pattern = REPOSITORY)))]
    pub images: Vec<String>,
    /// Where CI reports whether a commit passed, for `update-staging-to-latest-passing-master`.
    #[serde(default)]
    pub github: Option<GitHubFile>,
    /// How many release records to keep per environment.
    #[serde(default = "default_releases_kept")]
    #[schemars(range(min = 1))]
    pub releases_kept: usize,
    /// The environments, by name (a DNS label such as `staging`).
    #[schemars(extend("minProperties" = 1, "propertyNames" = { "pattern": DNS_LABEL, "maxLength": 63 }))]
    pub environments: BTreeMap<String, EnvironmentFile>,
    /// How overlays are rendered, for every environment (an environment's
    /// own `render:` overrides it).
    #[serde(default)]
    pub render: Option<RenderFile>,
    /// The app's cached render results, for `clear-render-cache`.
    #[serde(default)]
    pub render_cache: Option<RenderCacheFile>,
    /// Named maintenance tasks, run in any environment with `berth task ENV NAME`
    /// (a DNS label such as `refresh-suggested-modules`).
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": DNS_LABEL, "maxLength": 63 }))]
    pub tasks: BTreeMap<String, TaskFile>,
}

/// Where the app caches render results (database rows and bucket objects),
/// and the lock its writers hold, for `clear-render-cache`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RenderCache")]
pub(super) struct RenderCacheFile {
    /// The table of workflows: one row per unit of work, cleared one at a time.
    #[schemars(regex(pattern = SQL_NAME))]
    pub workflow_table: String,
    /// The SQL that takes the app's lock on one workflow, `$1` being its id
    /// (default: `SELECT id FROM <workflow_table> WHERE id = $1 FOR UPDATE`).
    #[serde(default)]
    pub lock_sql: Option<String>,
    /// How long to wait for a busy workflow's lock before skipping it for now.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: DurationText,
    /// The table whose rows hold the cache columns.
    #[schemars(regex(pattern = SQL_NAME))]
    pub cache_table: String,
    /// The column of `cache_table` naming the row's workflow.
    #[schemars(regex(pattern = SQL_NAME))]
    pub workflow_column: String,
    /// Each cache column and the value it is reset to (null, a string, or a number).
    #[schemars(extend("minProperties" = 1))]
    pub clear: BTreeMap<String, serde_json::Value>,
    /// The bucket of cached objects, per environment name.
    #[schemars(extend("minProperties" = 1))]
    pub buckets: BTreeMap<String, String>,
    /// The key prefix of one workflow's objects, with `{workflow}` for its id,
    /// e.g. `wf-{workflow}/`.
    pub prefix: String,
    /// The S3 endpoint (default: `AWS_ENDPOINT_URL`, else AWS).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The buckets' region (default: the credential chain's, else us-east-1).
    #[serde(default)]
    pub region: Option<String>,
    /// A Secret in the environment's namespace with `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (default: the standard AWS credential chain).
    #[serde(default)]
    pub credentials_secret: Option<String>,
}

/// A SQL identifier berth accepts: lowercase, optionally schema-qualified.
const SQL_NAME: &str = r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$";

/// The default for `render_cache.lock_timeout`.
fn default_lock_timeout() -> DurationText {
    DurationText(Duration::from_secs(2))
}

/// A named task: a command run in a Ready pod of a workload, or in a one-off pod.
/// Exactly one of `workload` and `pod: true`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Task")]
pub(super) struct TaskFile {
    /// A Deployment: the task runs (exec) in one of its Ready pods.
    #[serde(default)]
    #[schemars(length(min = 1, max = 253))]
    pub workload: Option<String>,
    /// The container to run in (default: the pod's first).
    #[serde(default)]
    pub container: Option<String>,
    /// Run in a one-off pod built like `berth run`'s, from the environment's
    /// `run.workload`, deleted afterwards.
    #[serde(default)]
    pub pod: bool,
    /// The command and its first arguments, run without a shell.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// More arguments, after `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// A file, relative to berth.yaml's directory, of more arguments after
    /// `args`: one per line; blank lines and lines starting with `#` are skipped.
    #[serde(default)]
    pub args_file: Option<PathBuf>,
    /// How long the task may run (default 1h).
    #[serde(default = "default_run_timeout")]
    #[schemars(extend("default" = "1h"))]
    pub timeout: DurationText,
}

/// Where `berth run` (and tasks with `pod: true`) take their one-off pod from.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Run")]
pub(super) struct RunFile {
    /// The Deployment whose pod template (image, environment, volumes,
    /// service account) the one-off pod copies.
    #[schemars(length(min = 1, max = 253))]
    pub workload: String,
    /// The container the command runs in (default: the template's first).
    #[serde(default)]
    pub container: Option<String>,
    /// How long a one-off command may run, pod start included (default 1h).
    #[serde(default = "default_run_timeout")]
    #[schemars(extend("default" = "1h"))]
    pub timeout: DurationText,
}

/// The default for `run.timeout` and a task's `timeout`.
fn default_run_timeout() -> DurationText {
    DurationText(Duration::from_secs(3600))
}

/// The default for `releases_kept`.
fn default_releases_kept() -> usize {
    20
}

/// The GitHub repository whose commit checks decide what may be deployed.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "GitHub")]
pub(super) struct GitHubFile {
    /// `owner/name` of the application's repository.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"))]
    pub repo: String,
    /// The branch whose newest passing commit goes to staging.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Names of the check runs (or commit statuses) that must all have
    /// passed. Default: every check reported on the commit, and at least one.
    #[serde(default)]
    #[schemars(length(min = 1), inner(length(min = 1)))]
    pub required_checks: Option<Vec<String>>,
    /// Names of checks whose failure does not block a commit. Any other
    /// check that failed blocks it, required or not.
    #[serde(default)]
    #[schemars(inner(length(min = 1)))]
    pub allow_failures: Vec<String>,
    /// Check conclusions that count as passed besides `success`.
    #[serde(default)]
    #[schemars(inner(regex(pattern = "^(neutral|skipped)$")))]
    pub also_passing: Vec<String>,
    /// How many of the branch's newest commits to consider.
    #[serde(default = "default_depth")]
    #[schemars(range(min = 1, max = 1000))]
    pub depth: usize,
}

/// The default for `github.depth`.
fn default_depth() -> usize {
    50
}

/// The default for `github.branch`.
fn default_branch() -> String {
    "master".to_owned()
}

/// One environment: where it runs and how its objects are rendered.
/// Exactly one of `overlay` and `chart` is required.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Environment", extend("oneOf" = [{ "required": ["overlay"] }, { "required": ["chart"] }]))]
pub(super) struct EnvironmentFile {
    /// The kubeconfig context to use (default: the current context).
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub context: Option<String>,
    /// The namespace berth deploys into, a DNS label. berth creates it if missing.
    #[schemars(regex(pattern = DNS_LABEL), length(max = 63))]
    pub namespace: String,
    /// Ask before dangerous operations here (docs/operators.md): a deploy of
    /// a SHA no other environment ran successfully, `maintenance ENV on`.
    /// Default: true for an environment named `production`, else false.
    #[serde(default)]
    pub protected: Option<bool>,
    /// A kustomize directory, relative to berth.yaml's directory, rendered with `kubectl kustomize`.
    #[serde(default)]
    pub overlay: Option<PathBuf>,
    /// A helm chart, rendered with `helm template`.
    #[serde(default)]
    pub chart: Option<ChartFile>,
    /// How this environment's overlay is rendered (overrides the top-level `render:`).
    #[serde(default)]
    pub render: Option<RenderFile>,
    /// The database migration, run as a Job before any workload changes.
    #[serde(default)]
    pub migrate: Option<MigrateFile>,
    /// How long the rollout may take, and when a stuck pod fails it early.
    #[serde(default)]
    pub rollout: RolloutFile,
    /// Static assets uploaded to a bucket at each deploy, concurrently with the migration.
    #[serde(default)]
    pub assets: Option<AssetsFile>,
    /// How berth reaches the environment's database, always through the
    /// Kubernetes API (exec or port-forward), never an exposed port.
    #[serde(default)]
    pub database: Option<DatabaseFile>,
    /// The maintenance page: which Services `berth maintenance ENV on` and
    /// `advanced-deploy --maintenance` switch to it, and how it is served.
    #[serde(default)]
    pub maintenance: MaintenanceFile,
    /// The one-off pods of `berth run` and of tasks with `pod: true`
    /// (default: built from `database.workload`).
    #[serde(default)]
    pub run: Option<RunFile>,
    /// Database backups to S3: scheduled, manual and before migrations, with
    /// retention, restore and restore drills (`berth db ...`). Needs
    /// `database.secret` with PGHOST and PGPORT as pods reach the database.
    #[serde(default)]
    pub backups: Option<BackupsFile>,
}

/// The pod berth reaches the database through, and its credentials.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Database")]
pub(super) struct DatabaseFile {
    /// The Deployment whose Ready pod can reach the database: `psql` runs
    /// in it, and port-forwards go to it.
    #[schemars(length(min = 1, max = 253))]
    pub workload: String,
    /// The container `psql` runs in (default: the pod's first container).
    #[serde(default)]
    pub container: Option<String>,
    /// A Secret in the environment's namespace whose keys are libpq's
    /// variables: `PGUSER`, `PGPASSWORD`, `PGDATABASE`, and optionally
    /// `PGHOST` and `PGPORT`. Default: the container's own environment.
    #[serde(default)]
    pub secret: Option<String>,
    /// The pod's port that reaches PostgreSQL, for port-forwards (a
    /// cloud-sql-proxy sidecar's, say).
    #[serde(default = "default_database_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

/// The default for `database.port`.
fn default_database_port() -> u16 {
    5432
}

/// The maintenance page and the Services switched to it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Maintenance")]
pub(super) struct MaintenanceFile {
    /// Names of the Services to switch to the maintenance page. Default: every
    /// Service berth deployed to the environment (labelled
    /// `app.kubernetes.io/instance=<app>-<environment>`) that has a selector.
    #[serde(default)]
    #[schemars(length(min = 1), inner(regex(pattern = DNS_LABEL), length(max = 63)))]
    pub services: Option<Vec<String>>,
    /// The image of the maintenance server: any image with `nginx` on its PATH.
    #[serde(default = "default_maintenance_image")]
    #[schemars(extend("default" = "nginx:1.28-alpine"), length(min = 1))]
    pub image: String,
    /// The port the maintenance server answers on for Services whose
    /// `targetPort` is a name (numeric target ports are served as they are).
    #[serde(default = "default_maintenance_port")]
    #[schemars(range(min = 1), extend("default" = 8080))]
    pub port: u16,
    /// The `Retry-After` header sent with every 503.
    #[serde(default = "default_retry_after")]
    #[schemars(extend("default" = "5m"))]
    pub retry_after: DurationText,
    /// How long the maintenance server may take to become available before
    /// `on` gives up (the Services are switched only once it is).
    #[serde(default = "default_maintenance_timeout")]
    #[schemars(extend("default" = "2m"))]
    pub timeout: DurationText,
    /// The page's title, unless `--title` gives one.
    #[serde(default = "default_maintenance_title")]
    #[schemars(extend("default" = DEFAULT_TITLE), length(min = 1))]
    pub title: String,
    /// The page's message, unless `--message` gives one. A blank line starts a
    /// new paragraph.
    #[serde(default = "default_maintenance_message")]
    #[schemars(extend("default" = DEFAULT_MESSAGE))]
    pub message: String,
}

impl Default for MaintenanceFile {
    fn default() -> Self {
        MaintenanceFile {
            services: None,
            image: default_maintenance_image(),
            port: default_maintenance_port(),
            retry_after: default_retry_after(),
            timeout: default_maintenance_timeout(),
            title: default_maintenance_title(),
            message: default_maintenance_message(),
        }
    }
}

/// The default page title.
const DEFAULT_TITLE: &str = "Down for maintenance";

/// The default page message.
const DEFAULT_MESSAGE: &str =
    "We are working on the site and will be back shortly. Thank you for your patience.";

/// The default for `maintenance.image`.
fn default_maintenance_image() -> String {
    "nginx:1.28-alpine".to_owned()
}

/// The default for `maintenance.port`.
fn default_maintenance_port() -> u16 {
    8080
}

/// The default for `maintenance.retry_after`.
fn default_retry_after() -> DurationText {
    DurationText(Duration::from_secs(300))
}

/// The default for `maintenance.timeout`.
fn default_maintenance_timeout() -> DurationText {
    DurationText(Duration::from_secs(120))
}

/// The default for `maintenance.title`.
fn default_maintenance_title() -> String {
    DEFAULT_TITLE.to_owned()
}

/// The default for `maintenance.message`.
fn default_maintenance_message() -> String {
    DEFAULT_MESSAGE.to_owned()
}

/// Static assets: where a SHA's files come from and the bucket they go to.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Assets")]
pub(super) struct AssetsFile {
    /// Where the SHA's files come from: exactly one of `image` (with `path`), `dir` and `s3`.
    pub from: AssetSourceFile,
    /// The destination bucket.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// A key prefix inside the bucket, such as `static/` (default: the bucket's root).
    #[serde(default)]
    pub prefix: String,
    /// The S3 endpoint, for stores other than AWS: MinIO, or GCS's
    /// `https://storage.googleapis.com` with HMAC keys. Default: `AWS_ENDPOINT_URL`, else AWS.
    /// With an endpoint, berth addresses buckets path-style.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The bucket's region (default: the AWS credential chain's, else us-east-1).
    #[serde(default)]
    pub region: Option<String>,
    /// A Secret in the environment's namespace holding `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and optionally `AWS_SESSION_TOKEN`).
    /// Default: the standard AWS credential chain (environment, profile, web identity).
    #[serde(default)]
    pub credentials_secret: Option<String>,
    /// Cache-Control of files whose names carry no content hash.
    #[serde(default = "default_cache_control")]
    #[schemars(extend("default" = "public, max-age=300"))]
    pub cache_control: String,
    /// Cache-Control of files whose names carry a content hash, such as `app.3f2a9c1e.js`.
    #[serde(default = "default_immutable_cache_control")]
    #[schemars(extend("default" = "public, max-age=31536000, immutable"))]
    pub immutable_cache_control: String,
    /// Also upload precompressed variants of text files (`NAME.gz`, `NAME.br`),
    /// served with Content-Encoding, for a CDN or web server that picks them.
    #[serde(default)]
    pub precompress: Vec<EncodingFile>,
    /// How many requests to S3 may be in flight at once.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 512))]
    pub concurrency: usize,
}

/// The default for `assets.cache_control`.
fn default_cache_control() -> String {
    "public, max-age=300".to_owned()
}

/// The default for `assets.immutable_cache_control`.
fn default_immutable_cache_control() -> String {
    "public, max-age=31536000, immutable".to_owned()
}

/// The default for `assets.concurrency`.
fn default_concurrency() -> usize {
    64
}

/// Where a SHA's static files come from. `{sha}` in `dir` and `s3` is replaced by the SHA.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AssetSource", extend("oneOf" = [{ "required": ["image", "path"] }, { "required": ["dir"] }, { "required": ["s3"] }]))]
pub(super) struct AssetSourceFile {
    /// An image repository (no tag): the files come from `<image>:<SHA>`, read from the registry.
    #[serde(default)]
    #[schemars(regex(pattern = REPOSITORY))]
    pub image: Option<String>,
    /// With `image`: the absolute directory inside the image, such as `/app/static`.
    #[serde(default)]
    #[schemars(regex(pattern = "^/"))]
    pub path: Option<String>,
    /// A local directory, relative to berth.yaml's directory, such as `build/{sha}/static`.
    #[serde(default)]
    pub dir: Option<String>,
    /// A build bucket prefix, such as `s3://builds/{sha}/static/`, copied server-side.
    #[serde(default)]
    #[schemars(regex(pattern = "^s3://[^/]+/?"))]
    pub s3: Option<String>,
}

/// A precompressed variant.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Encoding")]
pub(super) enum EncodingFile {
    /// `NAME.gz`, `Content-Encoding: gzip`.
    Gzip,
    /// `NAME.br`, `Content-Encoding: br`.
    Br,
}

/// A helm chart: a directory in the repository (`path`), a chart in an OCI
/// registry (`path: oci://...` with `version`), or a chart in a chart
/// repository (`repo`, `name` and `version`); and its values.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    rename = "Chart",
    extend(
        "oneOf" = [{ "required": ["path"] }, { "required": ["repo", "name", "version"] }],
        "if" = { "required": ["path"], "properties": { "path": { "pattern": "^oci://" } } },
        "then" = { "required": ["version"] }
    )
)]
pub(super) struct ChartFile {
    /// The chart directory (containing Chart.yaml), relative to berth.yaml's
    /// directory; or a chart in an OCI registry, `oci://REGISTRY/REPO/NAME`
    /// (no tag: the version goes in `version`).
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub path: Option<String>,
    /// The URL of a chart repository (a server of `index.yaml`), with
    /// `name` and `version`. https, or http on 127.0.0.1/localhost only.
    #[serde(default)]
    #[schemars(regex(pattern = "^https?://"))]
    pub repo: Option<String>,
    /// The chart's name in `repo`.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: Option<String>,
    /// The exact version of a chart from a registry or repository, such as
    /// `1.2.3` (no range): pulled once into berth's cache, then rendered
    /// from there.
    #[serde(default)]
    #[schemars(regex(pattern = CHART_VERSION))]
    pub version: Option<String>,
    /// Values files, relative to berth.yaml's directory, passed to helm in this order.
    #[serde(default)]
    pub values: Vec<PathBuf>,
    /// Single values by helm key path (`image.tag`, `ingress.hosts[0].host`),
    /// any YAML value, as if written in a last values file (helm's
    /// `--set-json`): `"1.0"` stays a string, `3` a number.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": SET_KEY }))]
    pub set: BTreeMap<String, serde_json::Value>,
    /// The helm release name (default: `app`).
    #[serde(default)]
    #[schemars(regex(pattern = DNS_LABEL), length(max = 53))]
    pub release: Option<String>,
}

/// An exact chart version: semantic versioning, no range.
pub(super) const CHART_VERSION: &str =
    r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$";

/// A helm value's key path: names joined by dots, each with optional `[N]` indexes.
pub(super) const SET_KEY: &str = r"^[A-Za-z0-9_/-]+(\[[0-9]+\])*(\.[A-Za-z0-9_/-]+(\[[0-9]+\])*)*$";

/// How kustomize overlays are rendered.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Render")]
pub(super) struct RenderFile {
    /// A standalone kustomize to render overlays with (`<kustomize> build
    /// DIR`) instead of `kubectl kustomize DIR`: a name looked up in PATH
    /// (`kustomize`), or a path relative to berth.yaml's directory. For
    /// repositories written for kustomize v4, which kubectl's embedded v5
    /// rejects. `BERTH_KUSTOMIZE` overrides it for one run.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub kustomize: Option<String>,
}

/// The migration Job.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Migrate")]
pub(super) struct MigrateFile {
    /// The image repository (no tag). It must be listed in `images`: the Job
    /// runs `<image>:<SHA>`. Leave it out when the overlay holds the
    /// migration Job (a Job labelled `berth.dev/role: migration`) and this
    /// block only names its `framework`.
    #[serde(default)]
    #[schemars(regex(pattern = REPOSITORY))]
    pub image: Option<String>,
    /// The repository's own migration manifests: a kustomize directory (or a
    /// chart directory), relative to berth.yaml's directory, that renders the
    /// migration as a Pod or Job. berth runs it as its migration Job, pod
    /// spec kept whole (sidecars, volumes, env from Secrets), images pinned
    /// to the SHA. Instead of `image`.
    #[serde(default)]
    pub overlay: Option<PathBuf>,
    /// The Pod or Job in `overlay` that migrates; needed only when it
    /// renders several.
    #[serde(default)]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// The container whose exit ends the migration (default: the first);
    /// the others are sidecars, ended when it exits.
    #[serde(default)]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,
    /// The migration framework, for rollbacks that bring the schema back:
    /// `django` is supported (docs/rollback.md); any other is recorded, and
    /// its rollbacks roll the code back but not the schema.
    #[serde(default)]
    pub framework: Option<FrameworkFile>,
    /// How the migration image runs Django's manage.py (default:
    /// `[python3, manage.py]`, from the image's working directory).
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub manage: Option<Vec<String>>,
    /// The container's command (default: the image's entrypoint).
    #[serde(default)]
    pub command: Vec<String>,
    /// The container's arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// How long the migration may run before the deploy fails.
    #[serde(default = "default_deadline")]
    #[schemars(extend("default" = "10m"))]
    pub deadline: DurationText,
    /// Secrets whose keys become the container's environment variables.
    #[serde(default)]
    pub env_from: Vec<EnvFromFile>,
    /// The ServiceAccount the Job's pod runs as (default: the namespace's `default`).
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub service_account: Option<String>,
    /// A command that says whether the migration has anything to apply,
    /// for `backups.before_migrate: pending`: exit 0 when nothing is
    /// pending, non-zero when something is, e.g. `[python3, manage.py,
    /// migrate, --check]`. It runs in a copy of the migration Job before
    /// the backup (default: every migration counts as pending).
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub pending_check: Option<Vec<String>>,
    /// How many failed migration Jobs (with their pods and logs) stay for
    /// inspection; the next deploy deletes older ones.
    #[serde(default)]
    #[schemars(extend("default" = 3))]
    pub keep_failed: Option<u32>,
}

/// The default for `migrate.deadline`.
fn default_deadline() -> DurationText {
    DurationText(Duration::from_secs(600))
}

/// A source of environment variables for the migration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EnvFrom")]
pub(super) struct EnvFromFile {
    /// The name of a Secret in the environment's namespace.
    #[schemars(length(min = 1))]
    pub secret: String,
}

/// Rollout limits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rollout")]
pub(super) struct RolloutFile {
    /// How long every workload together may take to become healthy.
    #[serde(default = "default_timeout")]
    #[schemars(extend("default" = "10m"))]
    pub timeout: DurationText,
    /// A new pod unschedulable for this long fails the deploy. Long enough, by
    /// default, for a cluster autoscaler to add a node.
    #[serde(default = "default_unschedulable_after")]
    #[schemars(extend("default" = "5m"))]
    pub unschedulable_after: DurationText,
    /// A new pod whose containers run but whose readiness probe keeps failing
    /// for this long fails the deploy, with the probe's last failure. Four
    /// times the 30 s a default probe (3 failures, 10 s apart) takes to call a
    /// pod unready: room for a slow start; a fifth of the default timeout.
    #[serde(default = "default_unready_after")]
    #[schemars(extend("default" = "2m"))]
    pub unready_after: DurationText,
}

impl Default for RolloutFile {
    fn default() -> Self {
        RolloutFile {
            timeout: default_timeout(),
            unschedulable_after: default_unschedulable_after(),
            unready_after: default_unready_after(),
        }
    }
}

/// The default for `rollout.timeout`.
fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(600))
}

/// The default for `rollout.unschedulable_after`.
fn default_unschedulable_after() -> DurationText {
    DurationText(Duration::from_secs(300))
}

/// The default for `rollout.unready_after`.
fn default_unready_after() -> DurationText {
    DurationText(Duration::from_secs(120))
}

/// A duration written like `90s`, `10m`, `1h` or `1h30m`.
#[derive(Debug, Clone, Copy)]
pub(super) struct DurationText(pub Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor, so that the YAML parser places a bad duration at its own key and line.
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// Reads a [`DurationText`] from a string.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = DurationText;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a duration such as 90s, 10m or 1h30m")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationText, E> {
        crate::duration::parse(text)
            .map(DurationText)
            .map_err(E::custom)
    }
}

impl JsonSchema for DurationText {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: whole numbers with units s, m, h or d, such as 90s, 10m or 1h30m; at most 366d.",
            "type": "string",
            "pattern": "^([0-9]+[smhd])+$"
        })
    }
}

/// Database backups: where they go, when they are taken, how long they are kept.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Backups")]
pub(super) struct BackupsFile {
    /// The bucket backups, their manifests and drill evidence go to.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// A key prefix inside the bucket (default: the environment's name and `/`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The S3 endpoint as berth reaches it (default: `AWS_ENDPOINT_URL`, else
    /// AWS). Pods use `AWS_ENDPOINT_URL` from `credentials_secret` when it has
    /// that key, else this.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The bucket's region (default: the credential chain's, else us-east-1).
    #[serde(default)]
    pub region: Option<String>,
    /// A Secret in the environment's namespace with `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (optionally `AWS_ENDPOINT_URL`, `AWS_REGION`):
    /// the backup pods use it, and so does berth when the environment has no
    /// AWS credentials of its own.
    pub credentials_secret: String,
    /// berth's container image with the PostgreSQL client, which runs every
    /// backup, restore and drill in the cluster (default:
    /// `ghcr.io/berth-deploy/berth:<this berth's version>`).
    #[serde(default)]
    pub image: Option<String>,
    /// When the scheduled backup runs: a five-field cron expression, applied
    /// by deploys as the CronJob `berth-backup` (default: no schedule).
    #[serde(default)]
    pub schedule: Option<String>,
    /// The time zone of `schedule` and `drill.schedule` (default: the
    /// controller-manager's, usually UTC).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// How many backups of each kind are kept (grandfather-father-son).
    #[serde(default)]
    pub retention: RetentionFile,
    /// Whether a deploy takes a verified backup before its migration:
    /// `pending` (only when migrations are pending), `always` or `never`
    /// (default: `pending` for an environment named `production`, else `never`).
    #[serde(default)]
    pub before_migrate: Option<BeforeMigrateFile>,
    /// How long one backup, restore or drill pod may run.
    #[serde(default = "default_backup_timeout")]
    #[schemars(extend("default" = "2h"))]
    pub timeout: DurationText,
    /// Restore drills: smoke queries, and an optional schedule.
    #[serde(default)]
    pub drill: DrillFile,
}

/// The default for `backups.timeout`.
fn default_backup_timeout() -> DurationText {
    DurationText(Duration::from_secs(2 * 3600))
}

/// Retention counts (grandfather-father-son), in UTC: `daily: N` keeps the
/// newest scheduled backup of each of the N most recent days that have one,
/// `weekly` of each ISO week (Monday to Sunday), `monthly` of each calendar
/// month; a backup kept by any rule stays. The other counts keep the newest
/// N succeeded backups of their trigger, so they never evict scheduled ones.
/// The newest good backup always stays; failed backups never count.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Retention")]
pub(super) struct RetentionFile {
    /// Scheduled backups kept one per day, newest days.
    #[serde(default = "default_daily")]
    pub daily: u32,
    /// Scheduled backups kept one per ISO week, newest weeks.
    #[serde(default = "default_weekly")]
    pub weekly: u32,
    /// Scheduled backups kept one per calendar month, newest months.
    #[serde(default = "default_monthly")]
    pub monthly: u32,
    /// Manual backups (`berth db backup`) kept, newest first.
    #[serde(default = "default_manual")]
    pub manual: u32,
    /// Backups taken before migrations kept, newest first.
    #[serde(default = "default_manual")]
    pub pre_migrate: u32,
    /// Safety backups taken before restores kept, newest first.
    #[serde(default = "default_manual")]
    pub pre_restore: u32,
}

impl Default for RetentionFile {
    fn default() -> Self {
        RetentionFile {
            daily: default_daily(),
            weekly: default_weekly(),
            monthly: default_monthly(),
            manual: default_manual(),
            pre_migrate: default_manual(),
            pre_restore: default_manual(),
        }
    }
}

/// The default for `retention.daily`.
fn default_daily() -> u32 {
    7
}

/// The default for `retention.weekly`.
fn default_weekly() -> u32 {
    4
}

/// The default for `retention.monthly`.
fn default_monthly() -> u32 {
    12
}

/// The default for `retention.manual`, `pre_migrate` and `pre_restore`.
fn default_manual() -> u32 {
    10
}

/// The framework whose migrations the migration Job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum FrameworkFile {
    /// Django (`manage.py migrate`): schema rollback supported.
    Django,
    /// Rails (`db:migrate`): schema rollback not supported yet.
    Rails,
    /// Alembic: schema rollback not supported yet.
    Alembic,
    /// Flyway: forward-fix only.
    Flyway,
    /// Laravel: schema rollback not supported yet.
    Laravel,
    /// Anything else: schema rollback not supported.
    Other,
}

/// When a deploy backs the database up before its migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum BeforeMigrateFile {
    /// Before every deploy that runs a migration.
    Always,
    /// Only when the migration has something to apply.
    Pending,
    /// Never.
    Never,
}

/// Restore drills: restore a backup into a scratch database and check it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Drill")]
pub(super) struct DrillFile {
    /// When the scheduled drill of the newest backup runs, as the CronJob
    /// `berth-drill` (default: none).
    #[serde(default)]
    pub schedule: Option<String>,
    /// SQL queries run in the restored scratch database; each must return a
    /// row whose first column is true.
    #[serde(default)]
    pub smoke: Vec<String>,
    /// A Secret of libpq variables for the server scratch databases are
    /// created on, as a role with CREATEDB (default: `database.secret`).
    #[serde(default)]
    pub secret: Option<String>,
}
