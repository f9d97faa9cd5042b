//! What a release records of the database schema, for a later rollback.

use serde::{Deserialize, Serialize};

use super::adapter::{MigrationId, State, Step};
use crate::cluster::release::Manifest;

/// The schema as a release left it (part of the release record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaRecord {
    /// `migrate.framework`, e.g. `django`.
    pub framework: String,
    /// Per app, the last migration applied once the release's migration
    /// ran, read from the database (Django: `django_migrations`).
    pub applied: State,
    /// The migration image by digest (`repo@sha256:…`): it has the files of
    /// every migration in `applied`, so a later rollback can unapply them.
    pub image: String,
    /// The migrations this release applied, in order.
    #[serde(default)]
    pub migrated: Vec<MigrationId>,
    /// Those of `migrated` that cannot be unapplied, and why.
    #[serde(default)]
    pub irreversible: Vec<Irreversible>,
    /// The migration Job as it ran (one object), from which a rollback
    /// builds its Jobs: same pod, sidecars and credentials. Redacted in
    /// output like the manifest.
    #[serde(default)]
    pub job: Manifest,
}

/// A migration that cannot be unapplied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Irreversible {
    /// The migration.
    pub migration: MigrationId,
    /// Its operations that cannot be reversed, as the framework describes them.
    pub operations: Vec<String>,
}

impl Irreversible {
    /// Those of `steps` that cannot be reversed, with the operations that cannot.
    pub fn of(steps: &[Step]) -> Vec<Irreversible> {
        steps
            .iter()
            .filter(|s| s.irreversible())
            .map(|s| Irreversible {
                migration: s.migration.clone(),
                operations: s
                    .operations
                    .iter()
                    .filter(|o| o.irreversible)
                    .map(|o| o.description.clone())
                    .collect(),
            })
            .collect()
    }
}
