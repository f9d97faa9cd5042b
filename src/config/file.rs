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
    /// Names of the check runs (or commit statuses) that must all have passed.
    #[schemars(length(min = 1), inner(length(min = 1)))]
    pub required_checks: Vec<String>,
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
    /// A kustomize directory, relative to berth.yaml's directory, rendered with `kubectl kustomize`.
    #[serde(default)]
    pub overlay: Option<PathBuf>,
    /// A helm chart, rendered with `helm template`.
    #[serde(default)]
    pub chart: Option<ChartFile>,
    /// The database migration, run as a Job before any workload changes.
    #[serde(default)]
    pub migrate: Option<MigrateFile>,
    /// How long the rollout may take, and when a stuck pod fails it early.
    #[serde(default)]
    pub rollout: RolloutFile,
}

/// A helm chart and its values files.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Chart")]
pub(super) struct ChartFile {
    /// The chart directory (containing Chart.yaml), relative to berth.yaml's directory.
    pub path: PathBuf,
    /// Values files, relative to berth.yaml's directory, passed to helm in this order.
    #[serde(default)]
    pub values: Vec<PathBuf>,
    /// The helm release name (default: `app`).
    #[serde(default)]
    #[schemars(regex(pattern = DNS_LABEL), length(max = 53))]
    pub release: Option<String>,
}

/// The migration Job.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Migrate")]
pub(super) struct MigrateFile {
    /// The image repository (no tag). It must be listed in `images`: the Job runs `<image>:<SHA>`.
    #[schemars(regex(pattern = REPOSITORY))]
    pub image: String,
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
}

impl Default for RolloutFile {
    fn default() -> Self {
        RolloutFile {
            timeout: default_timeout(),
            unschedulable_after: default_unschedulable_after(),
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
        crate::cli::parse_duration(text)
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
            "description": "A duration: whole numbers with units s, m, h or d, such as 90s, 10m or 1h30m.",
            "type": "string",
            "pattern": "^([0-9]+[smhd])+$"
        })
    }
}
