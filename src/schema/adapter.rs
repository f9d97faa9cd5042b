//! The interface between berth and a migration framework: what berth asks
//! the framework to do inside the migration image, and what it reports.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{Framework, SchemaSettings};

/// Per app, the last migration applied; an app with none applied is absent.
pub type State = BTreeMap<String, String>;

/// One migration, `app.name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MigrationId {
    /// The app (Django app label).
    pub app: String,
    /// The migration's name, e.g. `0005_module_description`.
    pub name: String,
}

impl fmt::Display for MigrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.app, self.name)
    }
}

/// One operation of a planned migration, as the framework describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// E.g. `Undo Add field description to module`, `Raw Python operation -> IRREVERSIBLE`.
    pub description: String,
    /// The operation cannot be reversed (Django: `reversible` is false).
    pub irreversible: bool,
}

/// One migration a plan applies or unapplies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The migration.
    pub migration: MigrationId,
    /// True when the plan unapplies it.
    pub backwards: bool,
    /// Its operations, in the order they run.
    pub operations: Vec<Operation>,
}

impl Step {
    /// The migrations of `steps`, in order.
    pub fn ids(steps: &[Step]) -> Vec<MigrationId> {
        steps.iter().map(|s| s.migration.clone()).collect()
    }

    /// Whether any of its operations cannot be reversed.
    pub fn irreversible(&self) -> bool {
        self.operations.iter().any(|o| o.irreversible)
    }
}

/// What berth asks the adapter to do in the migration image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Request {
    /// Read the state, and the migrations a full migrate would apply
    /// (each with its operations, so irreversible ones are known before
    /// they run). Changes nothing.
    Inspect,
    /// Plan going from the live state to `target`. Changes nothing.
    Plan {
        /// The state to reach.
        target: State,
    },
    /// Go from the live state to `target`, then read the state.
    Migrate {
        /// The state to reach.
        target: State,
        /// The migrations of the plan that was shown, in order: when the
        /// live plan differs (someone migrated since), nothing is done.
        expected: Vec<MigrationId>,
        /// `--accept-data-loss`: irreversible operations pass as no-ops.
        accept_data_loss: bool,
    },
}

/// What the adapter reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The state read from the database (Django: `django_migrations`),
    /// after the request's work.
    pub applied: State,
    /// [`Request::Inspect`]: what a full migrate would apply, in order.
    #[serde(default)]
    pub pending: Vec<Step>,
    /// [`Request::Plan`] and [`Request::Migrate`]: the steps from the
    /// live state to the target, in order.
    #[serde(default)]
    pub plan: Vec<Step>,
    /// The framework's own plan text (Django: `migrate APP TARGET --plan`
    /// for each app that changes), to show as is.
    #[serde(default)]
    pub plan_text: String,
    /// Applied migrations this image has no file for.
    #[serde(default)]
    pub unknown: Vec<MigrationId>,
    /// [`Request::Migrate`]: what stopped it; `applied` is where it stopped.
    #[serde(default)]
    pub error: Option<String>,
}

/// How to carry out one request in the migration image's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The container's command (its args are cleared).
    pub command: Vec<String>,
    /// Environment variables added to the container.
    pub env: Vec<(String, String)>,
}

/// A migration framework whose schema berth can roll back.
pub trait Adapter: Send + Sync {
    /// The framework.
    fn framework(&self) -> Framework;
    /// How to carry out `request` in the migration image.
    fn invocation(&self, request: &Request) -> anyhow::Result<Invocation>;
    /// How the line carrying the response starts: it is read by
    /// [`Adapter::parse`], never shown as progress.
    fn result_prefix(&self) -> &'static str;
    /// The response, from the whole log of the pod that carried it out.
    fn parse(&self, log: &str) -> anyhow::Result<Response>;
}

/// Why a rollback cannot bring the schema back: shown, and the code is
/// rolled back alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The adapter for an environment's `migrate.framework`, or why there is
/// none (no framework named, or one berth cannot roll back yet).
pub fn for_settings(
    env_name: &str,
    settings: Option<&SchemaSettings>,
) -> Result<Box<dyn Adapter>, Unsupported> {
    match settings {
        Some(s) if s.framework == Framework::Django => {
            Ok(Box::new(super::django::Django::new(s.manage.clone())))
        }
        Some(s) => Err(Unsupported(format!(
            "schema rollback is not supported for {} (only django is, today); the code is \
             rolled back and the schema is not",
            s.framework.as_str()
        ))),
        None => Err(Unsupported(format!(
            "environments.{env_name}.migrate.framework is not set, so the schema is not rolled \
             back; set `framework: django` for a Django app (docs/rollback.md)"
        ))),
    }
}
